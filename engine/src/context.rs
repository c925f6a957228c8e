//! What a running job sees: checkpointed steps, progress and log lines, signals, timers, child
//! runs and cancellation.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::commit::{Committer, Write};
use crate::job::JobError;
use crate::model::Wait;
use crate::queue::{self, Attempt, NewRun};

/// The context of one attempt of one run.
pub struct RunCtx {
    pub run_id: Uuid,
    pub namespace: String,
    pub kind: String,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    db: PgPool,
    fence: Attempt,
    completed: HashMap<String, Value>,
    cancel: CancellationToken,
    /// Cancelled when the worker drains: no new step starts, the run goes back to the queue.
    draining: CancellationToken,
    committer: Committer,
    /// The last step's checkpoint, handed to the committer but not yet known to be durable:
    /// the next step (or any other ordered operation) waits for it first, so at most one
    /// step is ever un-checkpointed, while the attempt's final write can share its commit.
    pending: Option<Pending>,
}

struct Pending {
    name: String,
    output: Value,
    done: tokio::sync::oneshot::Receiver<crate::commit::Outcome>,
}

impl std::fmt::Debug for RunCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCtx")
            .field("run_id", &self.run_id)
            .field("kind", &self.kind)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

fn fenced_or(e: queue::Error) -> JobError {
    match e {
        queue::Error::Fenced => JobError::Fenced,
        other => JobError::transient(other.to_string()),
    }
}

impl RunCtx {
    pub(crate) async fn load(
        committer: Committer,
        db: PgPool,
        run: &queue::Run,
        fence: Attempt,
        cancel: CancellationToken,
        draining: CancellationToken,
    ) -> Result<Self, sqlx::Error> {
        // A first attempt has no checkpoints yet: spare the query.
        let rows: Vec<(String, Value)> = if run.attempt <= 1 {
            Vec::new()
        } else {
            sqlx::query_as("select name, output from engine_steps where run_id = $1")
                .bind(run.id)
                .fetch_all(&db)
                .await?
        };
        Ok(Self {
            run_id: run.id,
            namespace: run.namespace.clone(),
            kind: run.kind.clone(),
            attempt: run.attempt,
            db,
            fence,
            completed: rows.into_iter().collect(),
            cancel,
            draining,
            committer,
            pending: None,
        })
    }

    /// The database, for steps that read or write the application's own tables.
    pub fn db(&self) -> &PgPool {
        &self.db
    }

    /// Compensation runs once the run was cancelled, and its own steps must run: it gets a
    /// token of its own.
    pub(crate) fn begin_compensation(&mut self) {
        self.cancel = CancellationToken::new();
        // Compensation finishes what cancellation started, draining or not.
        self.draining = CancellationToken::new();
    }

    /// Cancelled when cancellation of this run was requested: long steps should watch it.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Runs `f` once: its output is stored with the step's completion, and on any later attempt
    /// the stored output is returned without running `f` again. Steps are at-least-once (a crash
    /// after `f` and before the checkpoint runs it again), so side effects must be idempotent.
    pub async fn step<T, F, Fut>(&mut self, name: &str, f: F) -> Result<T, JobError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, JobError>>,
    {
        self.settle().await?;
        if let Some(stored) = self.completed.get(name) {
            return serde_json::from_value(stored.clone()).map_err(|e| {
                JobError::permanent(format!("step `{name}`: stored output no longer fits: {e}"))
            });
        }
        if self.cancel.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        if self.draining.is_cancelled() {
            // The steps before are checkpointed (settled above): another worker goes on here.
            return Err(JobError::Released);
        }
        let started = Utc::now();
        let timer = std::time::Instant::now();
        let output = f().await?;
        self.completed_step(name, output, started, timer).await
    }

    /// [`RunCtx::step`] for a step that may run again together with the one before it: it
    /// starts while the previous step's checkpoint is still being committed instead of after,
    /// so a chain of short steps (a sync's pages) does not wait for a commit between steps. Its
    /// output still counts only once that checkpoint is durable (if it fails, so does this
    /// step). The price: a crash can re-run this step *and* its predecessor, where a plain step
    /// re-runs at most the step in flight — so both must be idempotent.
    pub async fn step_overlapped<T, F, Fut>(&mut self, name: &str, f: F) -> Result<T, JobError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, JobError>>,
    {
        let Some(pending) = self.pending.take() else {
            return self.step(name, f).await;
        };
        if self.completed.contains_key(name)
            || self.cancel.is_cancelled()
            || self.draining.is_cancelled()
        {
            self.pending = Some(pending);
            return self.step(name, f).await;
        }
        let started = Utc::now();
        let timer = std::time::Instant::now();
        let (settled, output) = tokio::join!(pending.done, f());
        match settled {
            Ok(Ok(_)) => {
                self.completed.insert(pending.name, pending.output);
            }
            Ok(Err(e)) => return Err(fenced_or(e)),
            Err(_) => return Err(JobError::transient("the worker is shutting down")),
        }
        self.completed_step(name, output?, started, timer).await
    }

    async fn completed_step<T: Serialize>(
        &mut self,
        name: &str,
        output: T,
        started: DateTime<Utc>,
        timer: std::time::Instant,
    ) -> Result<T, JobError> {
        metrics::histogram!("workflowops_engine_step_seconds", "kind" => self.kind.clone())
            .record(timer.elapsed());
        let value = serde_json::to_value(&output).map_err(|e| {
            JobError::permanent(format!("step `{name}`: output cannot be stored: {e}"))
        })?;
        self.checkpoint(name, &value, started).await?;
        Ok(output)
    }

    /// Hands a step's checkpoint to the committer without waiting for it (see `pending`).
    async fn checkpoint(
        &mut self,
        name: &str,
        value: &Value,
        started: DateTime<Utc>,
    ) -> Result<(), JobError> {
        self.settle().await?;
        let done = self
            .committer
            .submit(Write::Checkpoint {
                fence: self.fence,
                name: name.to_owned(),
                output: value.clone(),
                started_at: started,
            })
            .await
            .ok_or_else(|| JobError::transient("the worker is shutting down"))?;
        self.pending = Some(Pending {
            name: name.to_owned(),
            output: value.clone(),
            done,
        });
        Ok(())
    }

    /// Waits until the last step's checkpoint is durable.
    async fn settle(&mut self) -> Result<(), JobError> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        match pending.done.await {
            Ok(Ok(_)) => {
                self.completed.insert(pending.name, pending.output);
                Ok(())
            }
            Ok(Err(e)) => Err(fenced_or(e)),
            Err(_) => Err(JobError::transient("the worker is shutting down")),
        }
    }

    /// Appends a log line to the run's events. It is written with the run's next commit, in
    /// order with its steps and outcome; this does not wait for it.
    pub async fn log(&self, level: &str, message: impl AsRef<str>) -> Result<(), JobError> {
        self.event(
            "log",
            json!({"level": level, "message": message.as_ref()}),
            None,
        )
        .await
    }

    /// Records progress: `done` of `total` units (written like `log`).
    pub async fn progress(&self, done: i64, total: i64) -> Result<(), JobError> {
        self.event(
            "progress",
            json!({"done": done, "total": total}),
            Some((done, total)),
        )
        .await
    }

    async fn event(
        &self,
        kind: &'static str,
        data: Value,
        progress: Option<(i64, i64)>,
    ) -> Result<(), JobError> {
        self.committer
            .submit(Write::Event {
                fence: self.fence,
                namespace: self.namespace.clone(),
                kind,
                data,
                progress,
            })
            .await
            .map(drop)
            .ok_or_else(|| JobError::transient("the worker is shutting down"))
    }

    /// Waits for the signal `name` and returns its payload. The run holds no worker while it
    /// waits; a signal sent earlier is delivered at once. The receipt is checkpointed.
    pub async fn wait_signal<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, JobError> {
        self.settle().await?;
        let step = format!("signal:{name}");
        if let Some(stored) = self.completed.get(&step) {
            return serde_json::from_value(stored.clone())
                .map_err(|e| JobError::permanent(format!("signal `{name}`: {e}")));
        }
        // Consume and checkpoint in one transaction: a signal is received exactly once.
        let mut tx = self.db.begin().await?;
        let payload: Option<Value> = sqlx::query_scalar(
            "update engine_signals set consumed_at = now() where id = (select id from engine_signals \
             where run_id = $1 and name = $2 and consumed_at is null order by id limit 1 for update) returning payload",
        )
        .bind(self.run_id)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(payload) = payload else {
            return Err(JobError::Suspended(Wait::Signal(name.to_owned())));
        };
        checkpoint_in(&mut tx, self.fence, &step, &payload).await?;
        tx.commit().await?;
        self.completed.insert(step, payload.clone());
        serde_json::from_value(payload)
            .map_err(|e| JobError::permanent(format!("signal `{name}`: {e}")))
    }

    /// Sleeps until `at` without holding a worker (a deployment window, a TTL). `name` makes
    /// the timer a checkpoint, so a resumed run does not wait again.
    pub async fn sleep_until(&mut self, name: &str, at: DateTime<Utc>) -> Result<(), JobError> {
        self.settle().await?;
        let step = format!("timer:{name}");
        if self.completed.contains_key(&step) {
            return Ok(());
        }
        if Utc::now() < at {
            return Err(JobError::Suspended(Wait::Until(at)));
        }
        self.checkpoint(&step, &json!(at), Utc::now()).await
    }

    /// Starts child runs (once: checkpointed) and returns their ids.
    pub async fn spawn_children(
        &mut self,
        name: &str,
        children: Vec<NewRun>,
    ) -> Result<Vec<Uuid>, JobError> {
        self.settle().await?;
        let step = format!("children:{name}");
        if let Some(stored) = self.completed.get(&step) {
            return serde_json::from_value(stored.clone())
                .map_err(|e| JobError::permanent(e.to_string()));
        }
        let mut tx = self.db.begin().await?;
        let mut ids = Vec::with_capacity(children.len());
        for (i, child) in children.into_iter().enumerate() {
            let child = child
                .parent(self.run_id)
                .idempotency_key(format!("child:{}:{name}:{i}", self.run_id));
            ids.push(queue::enqueue(&mut tx, &child).await.map_err(fenced_or)?.id);
        }
        let value = json!(ids);
        checkpoint_in(&mut tx, self.fence, &step, &value).await?;
        tx.commit().await?;
        self.completed.insert(step, value);
        Ok(ids)
    }

    /// Waits (without holding a worker) until every child has finished, then returns each
    /// child's outcome.
    pub async fn join_children(&mut self) -> Result<Vec<ChildOutcome>, JobError> {
        self.settle().await?;
        let children: Vec<ChildOutcome> = sqlx::query_as(
            "select id, kind, status, output, error from engine_runs where parent_id = $1 order by id",
        )
        .bind(self.run_id)
        .fetch_all(&self.db)
        .await?;
        if children
            .iter()
            .any(|c| !matches!(c.status.as_str(), "succeeded" | "failed" | "cancelled"))
        {
            return Err(JobError::Suspended(Wait::Children));
        }
        Ok(children)
    }
}

/// Checkpoints a step inside the caller's transaction (for steps whose effect is itself a
/// database write that must commit with the checkpoint: receiving a signal, spawning children).
async fn checkpoint_in(
    tx: &mut sqlx::PgConnection,
    fence: Attempt,
    step: &str,
    output: &Value,
) -> Result<(), JobError> {
    let written = sqlx::query(
        "insert into engine_steps (run_id, name, output, attempt) select $1, $2, $3, $4 \
         where exists (select 1 from engine_runs where id = $1 and attempt = $4 and worker_id = $5 and status = 'running')",
    )
    .bind(fence.run_id)
    .bind(step)
    .bind(output)
    .bind(fence.attempt)
    .bind(fence.worker_id)
    .execute(tx)
    .await?;
    if written.rows_affected() == 0 {
        return Err(JobError::Fenced);
    }
    Ok(())
}

/// How one child run ended.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct ChildOutcome {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<Value>,
}
