//! Group commit: the writes of every run in flight on this worker (step checkpoints, progress
//! and log events, attempt outcomes) and the worker's next claim are gathered into one
//! transaction, so many runs share one commit (the commit rate is what bounds a durable queue)
//! and, in a busy worker, the commit that ends runs also starts their successors. Writes are
//! applied in the order they were submitted; a caller learns its write's fate only once it is
//! durable, exactly as if it had committed alone; a fenced write is refused on its own without
//! failing the others.

use std::collections::HashSet;

use serde_json::Value;
use sqlx::PgPool;
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
    /// Claims runs for the worker's free slots in the same transaction as the batch's finishes:
    /// in a busy worker, one commit both ends runs and starts the next ones.
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

async fn run(pool: PgPool, mut rx: mpsc::Receiver<(Write, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        // Gather what is ready, then give the tasks that are about to write (runs just claimed
        // by the previous commit, steps just finished) a turn, while that keeps adding writes:
        // a commit started with the first write alone would split every wave of runs in two.
        for _ in 0..16 {
            let before = batch.len();
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            if batch.len() == MAX_BATCH || (batch.len() == before && before > 1) {
                break;
            }
            tokio::task::yield_now().await;
        }
        let mut attempts = 0;
        let results = loop {
            attempts += 1;
            let started = std::time::Instant::now();
            let r = apply(&pool, &batch).await;
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
        for ((_, reply), result) in batch.drain(..).zip(results) {
            let _ = reply.send(result);
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

/// Applies every write in one transaction: each kind of write in one statement where it can
/// be (checkpoints, then events, then successes; other outcomes one by one), claims last so the
/// slots and concurrency keys this batch's outcomes freed count. A run's checkpoints and events
/// thus always precede its outcome. A fenced write gets its own `Fenced` (fenced writes change
/// nothing, so the rest stands); any other error aborts the batch.
async fn apply(pool: &PgPool, batch: &[(Write, Reply)]) -> Result<Vec<Outcome>, queue::Error> {
    let mut tx = pool.begin().await?;
    let checkpointed = insert_checkpoints(&mut tx, batch).await?;
    let evented = insert_events(&mut tx, batch).await?;
    let succeeded = record_successes(&mut tx, batch).await?;
    let fenced_unless = |ok: bool| {
        if ok {
            Ok(Vec::new())
        } else {
            Err(queue::Error::Fenced)
        }
    };
    let mut results: Vec<Outcome> = Vec::with_capacity(batch.len());
    for (i, (write, _)) in batch.iter().enumerate() {
        let result = match write {
            Write::Checkpoint { fence, name, .. } => {
                fenced_unless(checkpointed.contains(&(fence.run_id, name.clone())))
            }
            Write::Event { .. } => fenced_unless(evented.contains(&i)),
            Write::Finish {
                fence,
                decision: Decision::Succeed(_),
            } => fenced_unless(succeeded.contains(&fence.run_id)),
            Write::Finish { fence, decision } => match finish(&mut tx, *fence, decision).await {
                Err(queue::Error::Fenced) => Err(queue::Error::Fenced),
                Err(e) => return Err(e),
                Ok(()) => Ok(Vec::new()),
            },
            Write::Claim(_) => Ok(Vec::new()),
        };
        results.push(result);
    }
    for (i, (write, _)) in batch.iter().enumerate() {
        if let Write::Claim(c) = write {
            let free = c.demand.wanted();
            if free > 0 {
                let runs = queue::claim(
                    &mut *tx,
                    c.worker,
                    Some(&c.kinds),
                    u32::try_from(free).unwrap_or(u32::MAX),
                    c.lease,
                    &c.recent,
                )
                .await?;
                results[i] = Ok(runs);
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// Every checkpoint of the batch in one statement; returns the (run, step) pairs written.
async fn insert_checkpoints(
    tx: &mut sqlx::PgConnection,
    batch: &[(Write, Reply)],
) -> Result<HashSet<(Uuid, String)>, queue::Error> {
    let mut columns = (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (write, _) in batch {
        if let Write::Checkpoint {
            fence,
            name,
            output,
            started_at,
        } = write
        {
            columns.0.push(fence.run_id);
            columns.1.push(name.clone());
            columns.2.push(output.clone());
            columns.3.push(fence.attempt);
            columns.4.push(*started_at);
            columns.5.push(fence.worker_id);
        }
    }
    if columns.0.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "insert into engine_steps (run_id, name, output, attempt, started_at) \
         select u.run_id, u.name, u.output, u.attempt, u.started_at \
         from unnest($1::uuid[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[], $6::uuid[]) \
              as u(run_id, name, output, attempt, started_at, worker_id) \
         join engine_runs r on r.id = u.run_id and r.attempt = u.attempt and r.worker_id = u.worker_id \
              and r.status = 'running' \
         on conflict (run_id, name) do nothing returning run_id, name",
    )
    .bind(columns.0)
    .bind(columns.1)
    .bind(columns.2)
    .bind(columns.3)
    .bind(columns.4)
    .bind(columns.5)
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Every progress and log event of the batch, in submission order, in one statement (a
/// progress also updates its run's counters, to the run's latest); returns the batch positions
/// written.
async fn insert_events(
    tx: &mut sqlx::PgConnection,
    batch: &[(Write, Reply)],
) -> Result<HashSet<usize>, queue::Error> {
    let mut positions = vec![];
    let mut fences = (vec![], vec![], vec![]);
    let mut events = (vec![], vec![], vec![], vec![], vec![]);
    for (i, (write, _)) in batch.iter().enumerate() {
        if let Write::Event {
            fence,
            namespace,
            kind,
            data,
            progress,
        } = write
        {
            positions.push(i64::try_from(i).unwrap_or(i64::MAX));
            fences.0.push(fence.run_id);
            fences.1.push(fence.attempt);
            fences.2.push(fence.worker_id);
            events.0.push(namespace.clone());
            events.1.push(*kind);
            events.2.push(data.clone());
            events.3.push(progress.map(|p| p.0));
            events.4.push(progress.map(|p| p.1));
        }
    }
    if positions.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<i64> = sqlx::query_scalar(
        "with u as ( \
             select * from unnest($1::bigint[], $2::uuid[], $3::int[], $4::uuid[], $5::text[], $6::text[], \
                                  $7::jsonb[], $8::bigint[], $9::bigint[]) \
                 as u(pos, run_id, attempt, worker_id, namespace, kind, data, done, total) \
             where exists (select 1 from engine_runs r where r.id = u.run_id and r.attempt = u.attempt \
                           and r.worker_id = u.worker_id and r.status = 'running') \
         ), progressed as ( \
             update engine_runs r set progress_done = p.done, progress_total = p.total, updated_at = now() \
             from (select distinct on (run_id) run_id, done, total from u where kind = 'progress' \
                   order by run_id, pos desc) p \
             where r.id = p.run_id \
         ), inserted as ( \
             insert into engine_events (run_id, namespace, kind, data) \
             select run_id, namespace, kind, data from u order by pos \
         ) select pos from u",
    )
    .bind(positions)
    .bind(fences.0)
    .bind(fences.1)
    .bind(fences.2)
    .bind(events.0)
    .bind(events.1)
    .bind(events.2)
    .bind(events.3)
    .bind(events.4)
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|pos| usize::try_from(pos).ok())
        .collect())
}

/// Every success of the batch (the common outcome) in one statement, waking parents whose
/// children are all done; returns the runs recorded.
async fn record_successes(
    tx: &mut sqlx::PgConnection,
    batch: &[(Write, Reply)],
) -> Result<HashSet<Uuid>, queue::Error> {
    let mut columns = (vec![], vec![], vec![], vec![]);
    for (write, _) in batch {
        if let Write::Finish {
            fence,
            decision: Decision::Succeed(output),
        } = write
        {
            columns.0.push(fence.run_id);
            columns.1.push(fence.attempt);
            columns.2.push(fence.worker_id);
            columns.3.push(output.clone());
        }
    }
    if columns.0.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "update engine_runs r set status = 'succeeded', output = u.output, error = null, finished_at = now(), \
             worker_id = null, lease_expires_at = null, updated_at = now() \
         from unnest($1::uuid[], $2::int[], $3::uuid[], $4::jsonb[]) as u(id, attempt, worker_id, output) \
         where r.id = u.id and r.attempt = u.attempt and r.worker_id = u.worker_id and r.status = 'running' \
         returning r.id, r.parent_id",
    )
    .bind(columns.0)
    .bind(columns.1)
    .bind(columns.2)
    .bind(columns.3)
    .fetch_all(&mut *tx)
    .await?;
    let mut succeeded = HashSet::with_capacity(rows.len());
    for (id, parent) in rows {
        if let Some(parent) = parent {
            queue::wake_parent(&mut *tx, parent).await?;
        }
        succeeded.insert(id);
    }
    Ok(succeeded)
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
