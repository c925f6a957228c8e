//! Group commit: the writes that end a step or an attempt, from every run in flight on this
//! worker, are gathered into one transaction, so many runs share one commit (the commit rate is
//! what bounds a durable queue). A caller's write returns only once it is durable, exactly as if
//! it had committed alone; a fenced write is refused on its own without failing the others.

use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

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
}

type Reply = oneshot::Sender<Result<(), queue::Error>>;

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
    pub(crate) async fn submit(
        &self,
        write: Write,
    ) -> Option<oneshot::Receiver<Result<(), queue::Error>>> {
        let (reply, done) = oneshot::channel();
        self.tx.send((write, reply)).await.ok()?;
        Some(done)
    }

    /// Submits a write and waits until it is committed (or refused).
    pub(crate) async fn write(&self, write: Write) -> Result<(), queue::Error> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send((write, reply))
            .await
            .map_err(|_| queue::Error::Conflict("the worker is shutting down".into()))?;
        done.await
            .map_err(|_| queue::Error::Conflict("the worker is shutting down".into()))?
    }
}

async fn run(pool: PgPool, mut rx: mpsc::Receiver<(Write, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut attempts = 0;
        let results = loop {
            attempts += 1;
            match apply(&pool, &batch).await {
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

/// Applies every write in one transaction: all checkpoints in one statement, then each finish.
/// A fenced write gets its own `Fenced` (fenced writes change nothing, so the rest stands);
/// any other error aborts the batch.
async fn apply(
    pool: &PgPool,
    batch: &[(Write, Reply)],
) -> Result<Vec<Result<(), queue::Error>>, queue::Error> {
    let mut tx = pool.begin().await?;
    let mut results: Vec<Result<(), queue::Error>> = Vec::with_capacity(batch.len());
    let checkpoints: Vec<(&Attempt, &String, &Value, &chrono::DateTime<chrono::Utc>)> = batch
        .iter()
        .filter_map(|(w, _)| match w {
            Write::Checkpoint {
                fence,
                name,
                output,
                started_at,
            } => Some((fence, name, output, started_at)),
            Write::Finish { .. } => None,
        })
        .collect();
    let mut written = std::collections::HashSet::new();
    if !checkpoints.is_empty() {
        let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as(
            "insert into engine_steps (run_id, name, output, attempt, started_at) \
             select u.run_id, u.name, u.output, u.attempt, u.started_at \
             from unnest($1::uuid[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[], $6::uuid[]) \
                  as u(run_id, name, output, attempt, started_at, worker_id) \
             join engine_runs r on r.id = u.run_id and r.attempt = u.attempt and r.worker_id = u.worker_id \
                  and r.status = 'running' \
             on conflict (run_id, name) do nothing returning run_id, name",
        )
        .bind(checkpoints.iter().map(|c| c.0.run_id).collect::<Vec<_>>())
        .bind(checkpoints.iter().map(|c| c.1.clone()).collect::<Vec<_>>())
        .bind(checkpoints.iter().map(|c| c.2.clone()).collect::<Vec<_>>())
        .bind(checkpoints.iter().map(|c| c.0.attempt).collect::<Vec<_>>())
        .bind(checkpoints.iter().map(|c| *c.3).collect::<Vec<_>>())
        .bind(checkpoints.iter().map(|c| c.0.worker_id).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        written.extend(rows);
    }
    // Successes, the common case, in one statement too; the rest one by one.
    let successes: Vec<(&Attempt, &Value)> = batch
        .iter()
        .filter_map(|(w, _)| match w {
            Write::Finish {
                fence,
                decision: Decision::Succeed(output),
            } => Some((fence, output)),
            _ => None,
        })
        .collect();
    let mut succeeded = std::collections::HashSet::new();
    if !successes.is_empty() {
        let rows: Vec<(uuid::Uuid, Option<uuid::Uuid>)> = sqlx::query_as(
            "update engine_runs r set status = 'succeeded', output = u.output, error = null, finished_at = now(), \
                 worker_id = null, lease_expires_at = null, updated_at = now() \
             from unnest($1::uuid[], $2::int[], $3::uuid[], $4::jsonb[]) as u(id, attempt, worker_id, output) \
             where r.id = u.id and r.attempt = u.attempt and r.worker_id = u.worker_id and r.status = 'running' \
             returning r.id, r.parent_id",
        )
        .bind(successes.iter().map(|s| s.0.run_id).collect::<Vec<_>>())
        .bind(successes.iter().map(|s| s.0.attempt).collect::<Vec<_>>())
        .bind(successes.iter().map(|s| s.0.worker_id).collect::<Vec<_>>())
        .bind(successes.iter().map(|s| s.1.clone()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        for (id, parent) in rows {
            if let Some(parent) = parent {
                queue::wake_parent(&mut tx, parent).await?;
            }
            succeeded.insert(id);
        }
    }
    for (write, _) in batch {
        let result = match write {
            Write::Finish {
                fence,
                decision: Decision::Succeed(_),
            } => {
                if succeeded.contains(&fence.run_id) {
                    Ok(())
                } else {
                    Err(queue::Error::Fenced)
                }
            }
            Write::Checkpoint { fence, name, .. } => {
                if written.contains(&(fence.run_id, name.clone())) {
                    Ok(())
                } else {
                    Err(queue::Error::Fenced)
                }
            }
            Write::Finish { fence, decision } => match finish(&mut tx, *fence, decision).await {
                Err(queue::Error::Fenced) => Err(queue::Error::Fenced),
                Err(e) => return Err(e),
                Ok(()) => Ok(()),
            },
        };
        results.push(result);
    }
    tx.commit().await?;
    Ok(results)
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
