//! A worker process: registers itself, proves it is alive through a session-level advisory
//! lock, claims runs in batches up to its free slots, executes them, keeps their leases, reaps
//! the runs of dead workers, and drains on shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgListener;
use sqlx::{Connection, FromRow, PgConnection, PgExecutor, PgPool};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::commit::{ClaimRequest, Committer, Write};
use crate::context::RunCtx;
use crate::job::{JobError, Registry};
use crate::model::{Decision, Outcome, decide};
use crate::queue::{self, Attempt, Run};

/// The advisory lock class of worker liveness locks (`pg_advisory_lock(LOCK_CLASS, lock_key)`).
pub const LOCK_CLASS: i32 = 0x5746_4f45;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("queue: {0}")]
    Queue(#[from] queue::Error),
    #[error("the worker lost its database session; its runs are being handed to other workers")]
    LostLiveness,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Shown to operators; defaults to `host:pid`.
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// How many runs this worker executes at once.
    pub concurrency: u32,
    /// How many claimed runs may wait in this worker for a slot to free (see [`Demand`]): a
    /// slot that frees starts the next run at once instead of waiting for a claim to commit.
    /// Never more than the worker finished in the last quarter second (so a large value costs
    /// nothing when runs are long); default: eight times the concurrency; 0 claims only for
    /// free slots.
    pub prefetch: u32,
    /// Only these kinds (None: every kind the registry has).
    pub kinds: Option<Vec<String>>,
    pub heartbeat_every: Duration,
    /// How long a claimed run stays ours without a heartbeat (the fallback for lost machines;
    /// dead processes are noticed through their session at once).
    pub lease: Duration,
    /// How often to look for work and dead workers when nothing wakes us.
    pub poll_every: Duration,
    /// On shutdown, how long running steps may take to finish before their runs are released.
    pub drain_timeout: Duration,
}

impl WorkerConfig {
    pub fn new(name: impl Into<String>, concurrency: u32) -> Self {
        Self {
            name: name.into(),
            host: "localhost".into(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            concurrency: concurrency.max(1),
            prefetch: concurrency.max(1).saturating_mul(8),
            kinds: None,
            heartbeat_every: Duration::from_secs(5),
            lease: Duration::from_secs(30),
            poll_every: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// A registered worker as operators see it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct WorkerInfo {
    pub id: Uuid,
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub kinds: Option<Vec<String>>,
    pub concurrency: i32,
    pub busy_slots: i32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
}

/// Live workers, newest first.
pub async fn list_live(db: impl PgExecutor<'_>) -> Result<Vec<WorkerInfo>> {
    Ok(sqlx::query_as(
        "select id, name, host, pid, version, kinds, concurrency, busy_slots, started_at, heartbeat_at, stopped_at \
         from engine_workers where stopped_at is null order by started_at desc",
    )
    .fetch_all(db)
    .await?)
}

/// Runs this worker holds (running or claimed and waiting for a slot): their cancellation
/// tokens, for cancel requests and draining.
type InFlight = Arc<Mutex<HashMap<Uuid, (Attempt, CancellationToken)>>>;

/// What the next claim asks for: the worker's slots, and the claimed runs waiting for one.
///
/// A claim takes a run for every free slot and tops the buffer up to `prefetch`, so in a busy
/// worker a slot that frees starts a waiting run at once: no run waits for a claim's commit
/// (the claim commits in the background). Waiting runs are claimed (`running`,
/// leased and fenced like the rest); a draining worker gives them back untouched, and a dead
/// worker's are taken back with its running ones.
///
/// The buffer never holds more than the worker finished in the last [`RECENT`] window, so a run
/// waits in a worker about that long at most, and a worker busy with long runs (syncs,
/// promotions) prefetches nothing: the queue stays with the workers that have free slots.
pub(crate) struct Demand {
    slots: Arc<Semaphore>,
    buffer: Mutex<VecDeque<(Run, CancellationToken)>>,
    prefetch: usize,
    ended: Mutex<Ended>,
    /// Signalled when a slot frees or a waiting run starts.
    changed: Notify,
}

/// How long the runs a worker finished count towards what it may prefetch.
const RECENT: Duration = Duration::from_millis(250);

/// Runs finished in the current and the previous [`RECENT`] window.
struct Ended {
    since: std::time::Instant,
    current: usize,
    previous: usize,
}

impl Ended {
    fn roll(&mut self, now: std::time::Instant) {
        let age = now.duration_since(self.since);
        if age >= RECENT {
            self.previous = if age >= 2 * RECENT { 0 } else { self.current };
            self.current = 0;
            self.since = now;
        }
    }
}

impl Demand {
    fn new(concurrency: u32, prefetch: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(concurrency as usize)),
            buffer: Mutex::new(VecDeque::new()),
            prefetch: prefetch as usize,
            ended: Mutex::new(Ended {
                since: std::time::Instant::now(),
                current: 0,
                previous: 0,
            }),
            changed: Notify::new(),
        }
    }

    /// How many runs to claim now: one per free slot, and those that fill the buffer (up to
    /// `prefetch`, and no more than the runs finished in the last window).
    pub(crate) fn wanted(&self) -> usize {
        let buffered = self.buffer.lock().map(|b| b.len()).unwrap_or(usize::MAX);
        let recent = self
            .ended
            .lock()
            .map(|mut e| {
                e.roll(std::time::Instant::now());
                e.current.max(e.previous)
            })
            .unwrap_or(0);
        self.slots.available_permits() + self.prefetch.min(recent).saturating_sub(buffered)
    }

    /// Counts a run this worker finished.
    fn finished(&self) {
        if let Ok(mut e) = self.ended.lock() {
            e.roll(std::time::Instant::now());
            e.current += 1;
        }
    }

    fn push(&self, run: Run, cancel: CancellationToken) {
        if let Ok(mut b) = self.buffer.lock() {
            b.push_back((run, cancel));
        }
    }

    fn pop(&self) -> Option<(Run, CancellationToken)> {
        self.buffer.lock().ok()?.pop_front()
    }

    fn take_all(&self) -> Vec<(Run, CancellationToken)> {
        self.buffer
            .lock()
            .map(|mut b| b.drain(..).collect())
            .unwrap_or_default()
    }
}

struct Shared {
    pool: PgPool,
    committer: Committer,
    /// Waiters for outcomes handed to the committer (drained before liveness is given up).
    finishing: tokio_util::task::TaskTracker,
    registry: Registry,
    worker_id: Uuid,
    in_flight: InFlight,
    demand: Arc<Demand>,
    /// Cancelled when the worker stops taking runs: no waiting run starts after it.
    draining: CancellationToken,
}

/// Runs a worker until `shutdown` is cancelled, then drains.
pub async fn run_worker(
    pool: PgPool,
    config: WorkerConfig,
    registry: Registry,
    shutdown: CancellationToken,
) -> Result<()> {
    let kinds = config.kinds.clone().unwrap_or_else(|| registry.kinds());
    let worker_id = Uuid::now_v7();
    // Liveness: a session-level advisory lock on a connection of its own. PostgreSQL releases
    // it the moment this process dies, and other workers' reapers see that.
    let mut lock_conn: PgConnection = PgConnection::connect_with(&pool.connect_options()).await?;
    let lock_key = loop {
        let key = fastrand::i32(1..i32::MAX);
        let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(key)
            .fetch_one(&mut lock_conn)
            .await?;
        if got {
            break key;
        }
    };
    sqlx::query(
        "insert into engine_workers (id, name, host, pid, version, concurrency, kinds, lock_key) \
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(worker_id)
    .bind(&config.name)
    .bind(&config.host)
    .bind(i32::try_from(config.pid).unwrap_or(i32::MAX))
    .bind(&config.version)
    .bind(i32::try_from(config.concurrency).unwrap_or(i32::MAX))
    .bind(&kinds)
    .bind(lock_key)
    .execute(&pool)
    .await?;
    tracing::info!(worker_id = %worker_id, name = %config.name, concurrency = config.concurrency, ?kinds, "worker registered");

    let (committer, commit_task) = Committer::start(pool.clone());
    let shared = Arc::new(Shared {
        pool: pool.clone(),
        committer,
        finishing: tokio_util::task::TaskTracker::new(),
        registry,
        worker_id,
        in_flight: Arc::default(),
        demand: Arc::new(Demand::new(config.concurrency, config.prefetch)),
        draining: CancellationToken::new(),
    });
    let wake = Arc::new(Notify::new());
    let stop_claiming = shutdown.child_token();
    // Liveness, leases and housekeeping outlive the drain: they stop only once every run this
    // worker held is finished and recorded, or released.
    let stop_background = CancellationToken::new();
    let lost = CancellationToken::new();

    let mut background = JoinSet::new();
    let (subscribed, listening) = tokio::sync::oneshot::channel();
    background.spawn(listen(
        pool.clone(),
        Arc::clone(&wake),
        Arc::clone(&shared.in_flight),
        stop_background.clone(),
        subscribed,
    ));
    background.spawn(heartbeat(
        Arc::clone(&shared),
        lock_conn,
        config.clone(),
        stop_background.clone(),
        lost.clone(),
    ));
    background.spawn(housekeeping(
        pool.clone(),
        shared.registry.clone(),
        config.poll_every,
        Arc::clone(&wake),
        stop_background.clone(),
    ));

    // Claim only once cancel requests can reach us (the heartbeat also polls for them).
    let _ = tokio::time::timeout(Duration::from_secs(5), listening).await;
    let mut fairness = queue::Fairness::default();
    let mut running = JoinSet::new();
    loop {
        if stop_claiming.is_cancelled() || lost.is_cancelled() {
            break;
        }
        dispatch(&shared, &mut running);
        // Reap finished tasks so the set does not grow.
        while running.try_join_next().is_some() {}
        let wanted = shared.demand.wanted();
        let mut claimed_any = false;
        if wanted > 0 {
            let claim_started = std::time::Instant::now();
            let claimed = shared
                .committer
                .claim(ClaimRequest {
                    worker: worker_id,
                    kinds: kinds.clone(),
                    demand: Arc::clone(&shared.demand),
                    lease: config.lease,
                    recent: fairness.recent().to_vec(),
                })
                .await;
            metrics::histogram!("workflowops_engine_claim_seconds").record(claim_started.elapsed());
            match claimed {
                Ok(runs) => {
                    // Work was there: claim again for what is still wanted (the next claim joins
                    // the next commit); an empty claim means the queue is drained, so wait.
                    claimed_any = !runs.is_empty();
                    for run in runs {
                        metrics::counter!("workflowops_engine_runs_claimed_total", "kind" => run.kind.clone()).increment(1);
                        fairness.served(&run.namespace);
                        hold(&shared, run);
                    }
                    dispatch(&shared, &mut running);
                }
                Err(e) => tracing::warn!(error = %e, "claiming runs failed"),
            }
        }
        if claimed_any {
            continue;
        }
        tokio::select! {
            () = stop_claiming.cancelled() => break,
            () = lost.cancelled() => break,
            () = wake.notified() => {}
            () = shared.demand.changed.notified(), if wanted == 0 => {}
            () = tokio::time::sleep(config.poll_every) => {}
        }
    }

    // Drain: runs claimed but never started go back to the queue at once; running steps may
    // finish for a while, then what is left is released too.
    shared.draining.cancel();
    for (run, _) in shared.demand.take_all() {
        let a = forget(&shared, run.id, run.attempt);
        if let Err(e) = queue::release(&pool, a).await {
            tracing::warn!(run_id = %a.run_id, error = %e, "releasing a waiting run failed; its lease will expire");
        }
    }
    let busy = running.len();
    if busy > 0 {
        tracing::info!(running = busy, "draining: waiting for running steps");
    }
    let drained = tokio::time::timeout(config.drain_timeout, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        running.abort_all();
        while running.join_next().await.is_some() {}
        let left: Vec<Attempt> = shared
            .in_flight
            .lock()
            .map(|m| m.values().map(|(a, _)| *a).collect())
            .unwrap_or_default();
        for a in left {
            match queue::release(&pool, a).await {
                Ok(()) => {
                    tracing::info!(run_id = %a.run_id, "released an unfinished run for another worker");
                }
                Err(e) => {
                    tracing::warn!(run_id = %a.run_id, error = %e, "releasing a run failed; its lease will expire");
                }
            }
        }
    }
    // Wait until the outcomes handed to the committer are written, then stop the rest.
    shared.finishing.close();
    if tokio::time::timeout(Duration::from_secs(10), shared.finishing.wait())
        .await
        .is_err()
    {
        tracing::warn!("the last outcomes were not written in time; their runs will be taken back");
    }
    stop_claiming.cancel();
    stop_background.cancel();
    while background.join_next().await.is_some() {}
    // Everything handed to the committer is written; let it end.
    drop(shared);
    let _ = tokio::time::timeout(Duration::from_secs(10), commit_task).await;
    sqlx::query("update engine_workers set stopped_at = now(), busy_slots = 0 where id = $1")
        .bind(worker_id)
        .execute(&pool)
        .await?;
    tracing::info!(worker_id = %worker_id, "worker drained and stopped");
    if lost.is_cancelled() {
        return Err(Error::LostLiveness);
    }
    Ok(())
}

/// Takes a claimed run in: cancellable from now on, it waits for a slot.
fn hold(shared: &Shared, run: Run) {
    let fence = Attempt {
        run_id: run.id,
        attempt: run.attempt,
        worker_id: shared.worker_id,
    };
    let cancel = CancellationToken::new();
    if run.cancel_requested_at.is_some() {
        cancel.cancel();
    }
    if let Ok(mut map) = shared.in_flight.lock() {
        map.insert(run.id, (fence, cancel.clone()));
    }
    shared.demand.push(run, cancel);
}

/// Stops tracking a run this worker held; returns its fence.
fn forget(shared: &Shared, run_id: Uuid, attempt: i32) -> Attempt {
    if let Ok(mut map) = shared.in_flight.lock() {
        map.remove(&run_id);
    }
    Attempt {
        run_id,
        attempt,
        worker_id: shared.worker_id,
    }
}

/// Starts waiting runs on free slots. A slot's task goes on with the next waiting run when its
/// run ends, and gives the slot back once none waits.
fn dispatch(shared: &Arc<Shared>, running: &mut JoinSet<()>) {
    while !shared.draining.is_cancelled() {
        let Ok(permit) = Arc::clone(&shared.demand.slots).try_acquire_owned() else {
            return;
        };
        let Some(first) = shared.demand.pop() else {
            return;
        };
        let shared = Arc::clone(shared);
        running.spawn(async move {
            let mut next = Some(first);
                        while let Some((run, cancel)) = next.take() {
                let span = tracing::info_span!("run", run_id = %run.id, kind = %run.kind, attempt = run.attempt, namespace = %run.namespace);
                execute(&shared, run, cancel).instrument(span).await;
                shared.demand.finished();
                if !shared.draining.is_cancelled() {
                    next = shared.demand.pop();
                }
                if next.is_none() {
                    drop(permit);
                    shared.demand.changed.notify_one();
                    return;
                }
                shared.demand.changed.notify_one();
            }
        });
    }
}

/// Executes one attempt of a claimed run and records what became of it.
async fn execute(shared: &Shared, run: Run, cancel: CancellationToken) {
    let fence = Attempt {
        run_id: run.id,
        attempt: run.attempt,
        worker_id: shared.worker_id,
    };
    let started = std::time::Instant::now();
    let outcome = attempt(shared, &run, fence, cancel).await;
    metrics::histogram!("workflowops_engine_attempt_seconds", "kind" => run.kind.clone())
        .record(started.elapsed());
    forget(shared, run.id, run.attempt);
    let Some(outcome) = outcome else { return };
    let policy = shared.registry.policy(&run.kind);
    let failures = u32::try_from(run.failures).unwrap_or(0);
    let max_attempts = u32::try_from(run.max_attempts).unwrap_or(1);
    let decision = decide(
        outcome,
        failures + 1,
        max_attempts,
        &policy,
        Utc::now(),
        fastrand::f64(),
    );
    let outcome_label = match &decision {
        Decision::Succeed(_) => "succeeded",
        Decision::RetryAt { .. } => "retried",
        Decision::Fail { .. } => "failed",
        Decision::Cancel => "cancelled",
        Decision::Park(_) => "parked",
    };
    metrics::counter!("workflowops_engine_attempts_total", "kind" => run.kind.clone(), "outcome" => outcome_label).increment(1);
    if matches!(
        decision,
        Decision::Succeed(_) | Decision::Fail { .. } | Decision::Cancel
    ) {
        // The whole run, from its first start (over every attempt, retry waits included).
        let since = run.started_at.unwrap_or(run.created_at);
        let seconds = (Utc::now() - since).to_std().unwrap_or_default();
        metrics::histogram!("workflowops_engine_run_seconds", "kind" => run.kind.clone(), "outcome" => outcome_label)
            .record(seconds);
    }
    // The slot frees as soon as the outcome is handed to the committer: a crash before it
    // commits only means the run is taken back and replays from its (durable) checkpoints.
    let run_id = run.id;
    let Some(done) = shared
        .committer
        .submit(Write::Finish { fence, decision })
        .await
    else {
        tracing::error!(run_id = %run_id, "the committer has stopped; the run will be taken back and retried");
        return;
    };
    shared.finishing.spawn(async move {
        match done.await {
            Ok(Ok(_)) => {}
            Ok(Err(queue::Error::Fenced)) => {
                tracing::warn!(run_id = %run_id, "another worker owns this run now; dropping this attempt's result");
            }
            Ok(Err(e)) => {
                tracing::error!(run_id = %run_id, error = %e, "recording a run's outcome failed; its lease will expire and it will be retried");
            }
            Err(_) => {
                tracing::error!(run_id = %run_id, "the committer stopped before recording a run's outcome; it will be retried");
            }
        }
    });
}

/// Runs the job (or its compensation when cancelled). None when there is nothing to record
/// (the run was taken over by another worker).
async fn attempt(
    shared: &Shared,
    run: &Run,
    fence: Attempt,
    cancel: CancellationToken,
) -> Option<Outcome> {
    let Some(job) = shared.registry.get(&run.kind) else {
        return Some(Outcome::Permanent {
            message: format!("no worker knows how to run kind `{}`", run.kind),
        });
    };
    let mut ctx = match RunCtx::load(
        shared.committer.clone(),
        shared.pool.clone(),
        run,
        fence,
        cancel.clone(),
        shared.draining.clone(),
    )
    .await
    {
        Ok(ctx) => ctx,
        Err(e) => {
            return Some(Outcome::Transient {
                message: format!("loading checkpoints: {e}"),
                retry_after: None,
            });
        }
    };
    let result = if cancel.is_cancelled() {
        Err(JobError::Cancelled)
    } else {
        // A panic in a job is a bug in it: the attempt fails permanently (a retry would panic
        // again) instead of taking the slot's task down with the run still held, its lease
        // renewed by the heartbeat until the process ends.
        let running = std::panic::AssertUnwindSafe(job.run(&mut ctx, run.input.clone()));
        match tokio::time::timeout(job.timeout(), futures::FutureExt::catch_unwind(running)).await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                tracing::error!(run_id = %run.id, kind = %run.kind, panic = %what, "a job panicked");
                Err(JobError::permanent(format!("the job panicked: {what}")))
            }
            Err(_) => Err(JobError::transient(format!(
                "timed out after {:?}",
                job.timeout()
            ))),
        }
    };
    Some(match result {
        Ok(output) => Outcome::Succeeded(output),
        Err(JobError::Transient {
            message,
            retry_after,
        }) => Outcome::Transient {
            message,
            retry_after,
        },
        Err(JobError::Permanent { message }) => Outcome::Permanent { message },
        Err(JobError::Suspended(wait)) => Outcome::Parked(wait),
        Err(JobError::Fenced) => return None,
        Err(JobError::Released) => {
            if let Err(e) = queue::release(&shared.pool, fence).await {
                tracing::warn!(run_id = %run.id, error = %e, "releasing a run failed; its lease will expire");
            } else {
                tracing::info!(run_id = %run.id, "draining: released the run at a step boundary");
            }
            return None;
        }
        Err(JobError::Cancelled) => {
            ctx.begin_compensation();
            if let Err(e) = job.compensate(&mut ctx, run.input.clone()).await {
                if e == JobError::Fenced {
                    return None;
                }
                let _ = ctx.log("error", format!("compensation failed: {e}")).await;
            }
            Outcome::Cancelled
        }
    })
}

/// Wakes the claim loop on new work, and cancels runs whose cancellation was requested.
async fn listen(
    pool: PgPool,
    wake: Arc<Notify>,
    in_flight: InFlight,
    stop: CancellationToken,
    subscribed: tokio::sync::oneshot::Sender<()>,
) {
    let mut subscribed = Some(subscribed);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "worker listener cannot connect; polling meanwhile");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(e) = listener
            .listen_all(["engine_wakeup", "engine_cancel"])
            .await
        {
            tracing::warn!(error = %e, "worker listener cannot subscribe");
            continue;
        }
        if let Some(tx) = subscribed.take() {
            let _ = tx.send(());
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                msg = listener.recv() => match msg {
                    Ok(n) if n.channel() == "engine_cancel" => {
                        if let Ok(id) = n.payload().parse::<Uuid>()
                            && let Some((_, token)) = in_flight.lock().ok().and_then(|m| m.get(&id).cloned()) {
                                token.cancel();
                            }
                    }
                    Ok(_) => wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "worker listener lost its connection; reconnecting");
                        wake.notify_one();
                        break;
                    }
                },
            }
        }
    }
}

/// Extends leases, reports the worker alive and busy, and checks the liveness session.
async fn heartbeat(
    shared: Arc<Shared>,
    mut lock_conn: PgConnection,
    config: WorkerConfig,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    let mut ticker = tokio::time::interval(config.heartbeat_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if sqlx::query("select 1")
            .execute(&mut lock_conn)
            .await
            .is_err()
        {
            tracing::error!(
                "the worker's liveness session is gone; stopping so its runs move to other workers"
            );
            lost.cancel();
            break;
        }
        // The runs held in memory: their leases are the ones to extend.
        let held: Vec<Uuid> = shared
            .in_flight
            .lock()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        let busy =
            (config.concurrency as usize).saturating_sub(shared.demand.slots.available_permits());
        // Cancel requests whose notification was missed.
        if !held.is_empty() {
            let asked: Vec<Uuid> = sqlx::query_scalar(
                "select id from engine_runs where worker_id = $1 and status = 'running' and cancel_requested_at is not null",
            )
            .bind(shared.worker_id)
            .fetch_all(&shared.pool)
            .await
            .unwrap_or_default();
            if let Ok(map) = shared.in_flight.lock() {
                for id in asked {
                    if let Some((_, token)) = map.get(&id) {
                        token.cancel();
                    }
                }
            }
        }
        if let Err(e) =
            queue::extend_leases(&shared.pool, shared.worker_id, &held, config.lease).await
        {
            tracing::warn!(error = %e, "extending leases failed");
        }
        if let Err(e) = sqlx::query(
            "update engine_workers set heartbeat_at = now(), busy_slots = $2 where id = $1",
        )
        .bind(shared.worker_id)
        .bind(i32::try_from(busy).unwrap_or(i32::MAX))
        .execute(&shared.pool)
        .await
        {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
    let _ = lock_conn.close().await;
}

/// Takes back the runs of dead workers and wakes timers, on every worker (cheap, idempotent).
async fn housekeeping(
    pool: PgPool,
    registry: Registry,
    every: Duration,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let jitter = every.mul_f64(fastrand::f64() * 0.5);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every + jitter) => {}
        }
        let reaped = async {
            let mut conn = pool.acquire().await?;
            let reaped = queue::reap(&mut conn).await?;
            let woken = queue::wake_timers(&mut *conn).await?;
            drop(conn);
            let fired = match crate::schedule::fire_due(&pool, 100, &registry).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "firing schedules failed");
                    0
                }
            };
            Ok::<_, queue::Error>((reaped, woken + u64::try_from(fired).unwrap_or(0)))
        }
        .await;
        match reaped {
            Ok((reaped, woken)) => {
                if !reaped.is_empty() {
                    metrics::counter!("workflowops_engine_runs_reaped_total")
                        .increment(reaped.len() as u64);
                    tracing::info!(runs = reaped.len(), "took back the runs of lost workers");
                }
                if !reaped.is_empty() || woken > 0 {
                    wake.notify_one();
                }
            }
            Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
        }
    }
}
