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

/// Applies every write in one transaction. A fenced write gets its own `Fenced`; any other
/// error aborts the batch.
async fn apply(
    pool: &PgPool,
    batch: &[(Write, Reply)],
) -> Result<Vec<Result<(), queue::Error>>, queue::Error> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for (write, _) in batch {
        let result = match write {
            Write::Checkpoint {
                fence,
                name,
                output,
                started_at,
            } => checkpoint(&mut tx, *fence, name, output, *started_at).await,
            Write::Finish { fence, decision } => finish(&mut tx, *fence, decision).await,
        };
        match result {
            Ok(()) => results.push(Ok(())),
            Err(queue::Error::Fenced) => results.push(Err(queue::Error::Fenced)),
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(results)
}

async fn checkpoint(
    db: &mut sqlx::PgConnection,
    fence: Attempt,
    name: &str,
    output: &Value,
    started_at: chrono::DateTime<chrono::Utc>,
) -> Result<(), queue::Error> {
    let written = sqlx::query(
        "insert into engine_steps (run_id, name, output, attempt, started_at) \
         select $1, $2, $3, $4, $5 where exists (select 1 from engine_runs \
           where id = $1 and attempt = $4 and worker_id = $6 and status = 'running') \
         on conflict (run_id, name) do nothing",
    )
    .bind(fence.run_id)
    .bind(name)
    .bind(output)
    .bind(fence.attempt)
    .bind(started_at)
    .bind(fence.worker_id)
    .execute(&mut *db)
    .await?;
    if written.rows_affected() == 0 {
        return Err(queue::Error::Fenced);
    }
    Ok(())
}

/// Records what became of an attempt (see `queue`). Savepointed, so a fenced finish leaves the
/// rest of the batch intact.
async fn finish(
    db: &mut sqlx::PgConnection,
    fence: Attempt,
    decision: &Decision,
) -> Result<(), queue::Error> {
    sqlx::query("savepoint finish").execute(&mut *db).await?;
    let result = match decision {
        Decision::Succeed(output) => queue::succeed(db, fence, output).await,
        Decision::RetryAt { at, error } => queue::retry_at(db, fence, *at, error).await,
        Decision::Fail { error } => queue::fail(db, fence, error).await,
        Decision::Cancel => queue::cancelled(db, fence).await,
        Decision::Park(wait) => queue::park(db, fence, wait).await,
    };
    match result {
        Ok(()) => {
            sqlx::query("release savepoint finish")
                .execute(&mut *db)
                .await?;
            Ok(())
        }
        Err(queue::Error::Fenced) => {
            sqlx::query("rollback to savepoint finish")
                .execute(&mut *db)
                .await?;
            Err(queue::Error::Fenced)
        }
        Err(e) => Err(e),
    }
}
