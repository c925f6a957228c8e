//! Group commit: the writes of every run in flight on this worker (step checkpoints, progress
//! and log events, attempt outcomes) are gathered into one transaction, so many runs share one
//! commit (the commit rate is what bounds a durable queue); the worker's claims go through the
//! same committer, each alone in its transaction on a lane of its own. Writes are
//! applied in the order they were submitted; a caller learns its write's fate only once it is
//! durable, exactly as if it had committed alone; a fenced write is refused on its own without
//! failing the others.

use std::collections::{HashSet, VecDeque};

use serde_json::Value;
use sqlx::{Acquire, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::model::Decision;
use crate::queue::{self, Attempt};

/// Most writes per transaction.
const MAX_BATCH: usize = 256;

pub(crate) enum Write {
    Checkpoint {
        fence: Attempt,
        name: String,
        output: Value,
        started_at: chrono::DateTime<chrono::Utc>,
    },
    Finish {
        fence: Attempt,
        decision: Decision,
    },
    /// A progress or log event (`kind` is `progress` or `log`); a progress also updates the
    /// run's counters.
    Event {
        fence: Attempt,
        namespace: String,
        kind: &'static str,
        data: Value,
        progress: Option<(i64, i64)>,
    },
    /// Claims runs for the worker's free slots and its buffer, alone in its transaction on the
    /// claim lane (so the runs start as soon as it commits, not after a batch of outcomes).
    Claim(ClaimRequest),
}

/// What a worker claims with (see `queue::claim`).
pub(crate) struct ClaimRequest {
    pub(crate) worker: Uuid,
    pub(crate) kinds: Vec<String>,
    /// What the worker wants, counted when the claim runs (slots freed by the finishes
    /// gathered in the same commit count too).
    pub(crate) demand: std::sync::Arc<crate::worker::Demand>,
    pub(crate) lease: std::time::Duration,
    pub(crate) recent: Vec<String>,
}

/// How a write ended: for a claim, the runs it took (empty for every other write).
pub(crate) type Outcome = Result<Vec<queue::Run>, queue::Error>;
type Reply = oneshot::Sender<Outcome>;

#[derive(Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<(Write, Reply)>,
}

impl Committer {
    pub(crate) fn start(pool: PgPool) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        (Self { tx }, tokio::spawn(run(pool, rx)))
    }

    /// Submits a write without waiting for its commit; the receiver tells how it ended. None
    /// when the committer has stopped.
    pub(crate) async fn submit(&self, write: Write) -> Option<oneshot::Receiver<Outcome>> {
        let (reply, done) = oneshot::channel();
        self.tx.send((write, reply)).await.ok()?;
        Some(done)
    }

    /// Claims runs with the next commit (see `Write::Claim`).
    pub(crate) async fn claim(&self, request: ClaimRequest) -> Outcome {
        let stopped = || queue::Error::Conflict("the worker is shutting down".into());
        self.submit(Write::Claim(request))
            .await
            .ok_or_else(stopped)?
            .await
            .map_err(|_| stopped())?
    }
}

/// How many batches a worker commits at once, each on its own connection: one lane for claims
/// and one for the rest (a third lane for the rest was measured: with the database's CPU shared
/// by more backends, it lost 5-10%). A run's writes stay in order: a write whose run has a write
/// in a batch still being applied waits for that batch.
const LANES: usize = 2;
/// The lane that commits claims, each alone.
const CLAIM_LANE: usize = 0;

type Batch = Vec<(Write, Reply)>;

impl Write {
    /// What kind of write this is, for metrics.
    fn label(&self) -> &'static str {
        match self {
            Self::Checkpoint { .. } => "checkpoint",
            Self::Finish { .. } => "outcome",
            Self::Event { .. } => "event",
            Self::Claim(_) => "claim",
        }
    }

    /// The run this write belongs to (None for a claim).
    fn run_id(&self) -> Option<Uuid> {
        match self {
            Self::Checkpoint { fence, .. }
            | Self::Finish { fence, .. }
            | Self::Event { fence, .. } => Some(fence.run_id),
            Self::Claim(_) => None,
        }
    }
}

/// Gathers writes into batches and hands each to an idle lane.
async fn run(pool: PgPool, mut rx: mpsc::Receiver<(Write, Reply)>) {
    let (done_tx, mut done_rx) = mpsc::channel::<(usize, Vec<Uuid>)>(LANES);
    let mut lanes = Vec::with_capacity(LANES);
    for id in 0..LANES {
        let (batch_tx, batch_rx) = mpsc::channel::<Batch>(1);
        tokio::spawn(lane(pool.clone(), id, batch_rx, done_tx.clone()));
        lanes.push(batch_tx);
    }
    let mut idle: Vec<usize> = (0..LANES).rev().collect();
    // Runs with writes in a batch being applied, by lane.
    let mut held: HashSet<Uuid> = HashSet::new();
    let mut pending: VecDeque<(Write, Reply)> = VecDeque::new();
    let mut open = true;
    let release =
        |held: &mut HashSet<Uuid>, idle: &mut Vec<usize>, (id, runs): (usize, Vec<Uuid>)| {
            for r in runs {
                held.remove(&r);
            }
            idle.push(id);
        };
    loop {
        while let Ok(d) = done_rx.try_recv() {
            release(&mut held, &mut idle, d);
        }
        if idle.is_empty() || (pending.is_empty() && !open) {
            if !open && pending.is_empty() && idle.len() == LANES {
                return;
            }
            match done_rx.recv().await {
                Some(d) => release(&mut held, &mut idle, d),
                None => return,
            }
            continue;
        }
        if pending.is_empty() {
            tokio::select! {
                w = rx.recv() => match w {
                    Some(w) => pending.push_back(w),
                    None => open = false,
                },
                Some(d) = done_rx.recv() => release(&mut held, &mut idle, d),
            }
            continue;
        }
        // Gather what is ready, then give the tasks that are about to write (runs just claimed
        // or woken by the previous commit) a turn, while that keeps adding writes: a commit
        // started with the first write alone would split every wave of runs in two.
        for _ in 0..16 {
            let before = pending.len();
            while open && pending.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => pending.push_back(next),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            if pending.len() >= MAX_BATCH || (pending.len() == before && before > 1) {
                break;
            }
            tokio::task::yield_now().await;
        }
        // A claim goes out alone on the claim lane, so the runs it takes start as soon as it
        // commits, not after a batch of outcomes; everything else goes out on the others.
        let claim = pending
            .iter()
            .position(|(w, _)| matches!(w, Write::Claim(_)));
        let lane = match claim {
            Some(_) if idle.contains(&CLAIM_LANE) => Some(CLAIM_LANE),
            _ => idle.iter().copied().find(|&l| l != CLAIM_LANE),
        };
        let Some(id) = lane else {
            // Only the claim lane is idle and no claim waits: wait for another lane, or for a
            // claim to arrive.
            tokio::select! {
                w = rx.recv(), if open => match w {
                    Some(w) => pending.push_back(w),
                    None => open = false,
                },
                d = done_rx.recv() => match d {
                    Some(d) => release(&mut held, &mut idle, d),
                    None => return,
                },
            }
            continue;
        };
        idle.retain(|&l| l != id);
        let mut batch = Vec::with_capacity(pending.len().min(MAX_BATCH));
        let mut kept = VecDeque::new();
        if id == CLAIM_LANE {
            batch.extend(claim.and_then(|i| pending.remove(i)));
            kept = std::mem::take(&mut pending);
        }
        // The batch: pending writes in order, except claims and those of runs another lane is
        // applying (and, to keep each run's order, every later write of those runs).
        let mut blocked: HashSet<Uuid> = HashSet::new();
        while let Some(item) = pending.pop_front() {
            let waits = match item.0.run_id() {
                Some(r) => held.contains(&r) || blocked.contains(&r),
                None => true,
            };
            if waits || batch.len() >= MAX_BATCH {
                if let Some(r) = item.0.run_id() {
                    blocked.insert(r);
                }
                kept.push_back(item);
            } else {
                batch.push(item);
            }
        }
        pending = kept;
        if batch.is_empty() {
            // Everything waiting belongs to runs in flight: wait for a lane to finish.
            idle.push(id);
            match done_rx.recv().await {
                Some(d) => release(&mut held, &mut idle, d),
                None => return,
            }
            continue;
        }
        for (w, _) in &batch {
            if let Some(r) = w.run_id() {
                held.insert(r);
            }
        }
        if let Err(mpsc::error::SendError(batch)) = lanes[id].send(batch).await {
            for (_, reply) in batch {
                let _ = reply.send(Err(queue::Error::Conflict("the committer stopped".into())));
            }
            return;
        }
    }
}

/// Applies the batches it is handed on its own connection, one at a time.
async fn lane(
    pool: PgPool,
    id: usize,
    mut batches: mpsc::Receiver<Batch>,
    done: mpsc::Sender<(usize, Vec<Uuid>)>,
) {
    // The lane's own connection, kept between batches (taken again after a failure). It is
    // detached from the pool: the pool opens another in its place, and closing the pool (an API
    // process shutting down) does not wait for a worker that is still committing.
    let mut conn: Option<PgConnection> = None;
    while let Some(mut batch) = batches.recv().await {
        let runs: Vec<Uuid> = batch.iter().filter_map(|(w, _)| w.run_id()).collect();
        let mut attempts = 0;
        let results = loop {
            attempts += 1;
            let started = std::time::Instant::now();
            let r = apply(&pool, &mut conn, &batch).await;
            metrics::histogram!("workflowops_engine_commit_seconds").record(started.elapsed());
            match r {
                Ok(results) => break results,
                // A deadlock or serialization failure aborts the whole batch: try once more.
                Err(e) if attempts < 3 && retryable(&e) => continue,
                Err(e) => {
                    break batch
                        .iter()
                        .map(|_| Err(queue::Error::Conflict(e.to_string())))
                        .collect();
                }
            }
        };
        metrics::histogram!("workflowops_engine_commit_batch_size").record(batch.len() as f64);
        for ((write, reply), result) in batch.drain(..).zip(results) {
            if matches!(result, Err(queue::Error::Fenced)) {
                // Work of an attempt that lost its run (another worker owns it now).
                metrics::counter!("workflowops_engine_writes_fenced_total", "write" => write.label())
                    .increment(1);
            }
            let _ = reply.send(result);
        }
        if done.send((id, runs)).await.is_err() {
            return;
        }
    }
}

fn retryable(e: &queue::Error) -> bool {
    match e {
        queue::Error::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

/// Applies a batch on the committer's connection, connecting first if it has none; a
/// connection that failed (not a statement that did) is dropped, to be replaced next time.
async fn apply(
    pool: &PgPool,
    conn: &mut Option<PgConnection>,
    batch: &[(Write, Reply)],
) -> Result<Vec<Outcome>, queue::Error> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(pool.acquire().await?.detach()),
    };
    let result = apply_on(c, batch).await;
    if let Err(queue::Error::Database(e)) = &result
        && !matches!(e, sqlx::Error::Database(_))
    {
        *conn = None;
    }
    result
}

/// Applies every write of the batch in one transaction: checkpoints, then events, then
/// successes (each one statement for the whole batch, in `engine_commit`), then other outcomes
/// one by one. A run's checkpoints and events thus always precede its outcome. A fenced write
/// gets its own `Fenced` (fenced writes change nothing, so the rest stands); any other error
/// aborts the batch. A batch without rarer outcomes (checkpoints, events, successes), and a
/// claim, which the dispatcher always commits alone, is a single statement, so a single round
/// trip.
async fn apply_on(
    conn: &mut PgConnection,
    batch: &[(Write, Reply)],
) -> Result<Vec<Outcome>, queue::Error> {
    let claim = batch.iter().enumerate().find_map(|(i, (w, _))| match w {
        Write::Claim(c) => Some((i, c)),
        _ => None,
    });
    let rare = batch.iter().any(|(w, _)| {
        matches!(w, Write::Finish { decision, .. } if !matches!(decision, Decision::Succeed(_)))
    });
    if !rare {
        let (fenced, claimed) = commit_call(&mut *conn, batch, claim.map(|(_, c)| c)).await?;
        let mut results = outcomes(batch, &fenced);
        if let (Some((i, _)), Some(runs)) = (claim, claimed) {
            results[i] = Ok(runs);
        }
        return Ok(results);
    }
    debug_assert!(claim.is_none(), "claims are committed alone");
    let mut tx = conn.begin().await?;
    let (fenced, _) = commit_call(&mut tx, batch, None).await?;
    let mut results = outcomes(batch, &fenced);
    for (i, (write, _)) in batch.iter().enumerate() {
        if let Write::Finish { fence, decision } = write
            && !matches!(decision, Decision::Succeed(_))
        {
            results[i] = match finish(&mut tx, *fence, decision).await {
                Err(queue::Error::Fenced) => Err(queue::Error::Fenced),
                Err(e) => return Err(e),
                Ok(()) => Ok(Vec::new()),
            };
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// Each write's result once the batch committed: `Fenced` for those `engine_commit` refused,
/// success for the rest (other outcomes and claims are filled in by the caller).
fn outcomes(batch: &[(Write, Reply)], fenced: &HashSet<usize>) -> Vec<Outcome> {
    (0..batch.len())
        .map(|i| {
            if fenced.contains(&i) {
                Err(queue::Error::Fenced)
            } else {
                Ok(Vec::new())
            }
        })
        .collect()
}

/// Column-wise arrays of the batch's checkpoints, events and successes, as `engine_commit`
/// takes them.
#[derive(Default)]
struct Columns {
    c: Fences,
    c_name: Vec<String>,
    c_output: Vec<Value>,
    c_started: Vec<chrono::DateTime<chrono::Utc>>,
    e: Fences,
    e_namespace: Vec<String>,
    e_kind: Vec<&'static str>,
    e_data: Vec<Value>,
    e_done: Vec<Option<i64>>,
    e_total: Vec<Option<i64>>,
    s: Fences,
    s_output: Vec<Value>,
}

/// Batch positions and fences of one kind of write, column-wise.
#[derive(Default)]
struct Fences {
    pos: Vec<i32>,
    run: Vec<Uuid>,
    attempt: Vec<i32>,
    worker: Vec<Uuid>,
}

type CommitQuery<'q, O> = sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

impl Fences {
    /// Binds the four columns, in this order, as the next parameters of `query`.
    fn bind<O>(self, query: CommitQuery<'_, O>) -> CommitQuery<'_, O> {
        query
            .bind(self.pos)
            .bind(self.run)
            .bind(self.attempt)
            .bind(self.worker)
    }

    fn push(&mut self, pos: i32, fence: &Attempt) {
        self.pos.push(pos);
        self.run.push(fence.run_id);
        self.attempt.push(fence.attempt);
        self.worker.push(fence.worker_id);
    }
}

impl Columns {
    fn of(batch: &[(Write, Reply)]) -> Self {
        let mut c = Self::default();
        for (i, (write, _)) in batch.iter().enumerate() {
            let pos = i32::try_from(i).unwrap_or(i32::MAX);
            match write {
                Write::Checkpoint {
                    fence,
                    name,
                    output,
                    started_at,
                } => {
                    c.c.push(pos, fence);
                    c.c_name.push(name.clone());
                    c.c_output.push(output.clone());
                    c.c_started.push(*started_at);
                }
                Write::Event {
                    fence,
                    namespace,
                    kind,
                    data,
                    progress,
                } => {
                    c.e.push(pos, fence);
                    c.e_namespace.push(namespace.clone());
                    c.e_kind.push(kind);
                    c.e_data.push(data.clone());
                    c.e_done.push(progress.map(|p| p.0));
                    c.e_total.push(progress.map(|p| p.1));
                }
                Write::Finish {
                    fence,
                    decision: Decision::Succeed(output),
                } => {
                    c.s.push(pos, fence);
                    c.s_output.push(output.clone());
                }
                Write::Finish { .. } | Write::Claim(_) => {}
            }
        }
        c
    }
}

/// Runs `engine_commit` for the batch's checkpoints, events and successes and, when given, the
/// claim; returns the batch positions of fenced writes and the claimed runs.
async fn commit_call(
    conn: &mut PgConnection,
    batch: &[(Write, Reply)],
    claim: Option<&ClaimRequest>,
) -> Result<(HashSet<usize>, Option<Vec<queue::Run>>), queue::Error> {
    let c = Columns::of(batch);
    let wanted = claim.map_or(0, |c| c.demand.wanted());
    let query = sqlx::query_as(
        "select fenced, claimed from engine_commit(\
             $1, $2, $3, $4, $5, $6, $7, \
             $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, $21, \
             $22, $23, $24, make_interval(secs => $25), $26)",
    );
    let query =
        c.c.bind(query)
            .bind(c.c_name)
            .bind(c.c_output)
            .bind(c.c_started);
    let query =
        c.e.bind(query)
            .bind(c.e_namespace)
            .bind(c.e_kind)
            .bind(c.e_data)
            .bind(c.e_done)
            .bind(c.e_total);
    let (fenced, claimed): (Vec<i32>, Option<sqlx::types::Json<Vec<queue::Run>>>) =
        c.s.bind(query)
            .bind(c.s_output)
            .bind(claim.map(|c| c.worker))
            .bind(claim.map(|c| c.kinds.clone()))
            .bind(i32::try_from(wanted).unwrap_or(i32::MAX))
            .bind(claim.map_or(0.0, |c| c.lease.as_secs_f64()))
            .bind(claim.map(|c| c.recent.clone()))
            .fetch_one(conn)
            .await?;
    let fenced = fenced
        .into_iter()
        .filter_map(|p| usize::try_from(p).ok())
        .collect();
    let claimed = claim.map(|_| claimed.map(|j| j.0).unwrap_or_default());
    Ok((fenced, claimed))
}

/// Records what became of an attempt (see `queue`). A fenced finish has written nothing: each
/// of these refuses before its first change.
async fn finish(
    db: &mut sqlx::PgConnection,
    fence: Attempt,
    decision: &Decision,
) -> Result<(), queue::Error> {
    match decision {
        Decision::Succeed(output) => queue::succeed(db, fence, output).await,
        Decision::RetryAt { at, error } => queue::retry_at(db, fence, *at, error).await,
        Decision::Fail { error } => queue::fail(db, fence, error).await,
        Decision::Cancel => queue::cancelled(db, fence).await,
        Decision::Park(wait) => queue::park(db, fence, wait).await,
    }
}
