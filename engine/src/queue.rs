//! The queue: enqueueing, claiming, and every state change of a run, in SQL.
//!
//! Every change a worker makes is fenced by `(id, attempt, worker_id, status = 'running')`: zero
//! rows affected means another worker owns the run now, and the change is refused
//! ([`Error::Fenced`]). State events are written by a trigger on the runs table, so no code path
//! can change a run's status without its event.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::model::{RunStatus, Wait};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("run not found")]
    NotFound,
    /// The request does not fit the run's state (e.g. cancelling a finished run).
    #[error("{0}")]
    Conflict(String),
    /// This worker no longer owns the run.
    #[error("lost ownership of the run")]
    Fenced,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A run as stored (and as `engine_commit` returns claimed runs, in JSON).
#[derive(Debug, Clone, Serialize, Deserialize, FromRow)]
pub struct Run {
    pub id: Uuid,
    pub namespace: String,
    pub kind: String,
    pub input: Value,
    pub output: Option<Value>,
    #[sqlx(try_from = "String")]
    pub status: RunStatusColumn,
    pub attempt: i32,
    pub failures: i32,
    pub max_attempts: i32,
    pub priority: i16,
    pub run_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub concurrency_key: Option<String>,
    pub concurrency_limit: Option<i32>,
    pub parent_id: Option<Uuid>,
    pub labels: Value,
    pub progress_done: Option<i64>,
    pub progress_total: Option<i64>,
    pub error: Option<Value>,
    pub worker_id: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub wait_signal: Option<String>,
    pub wait_children: bool,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Run {
    pub fn status(&self) -> RunStatus {
        self.status.0
    }
}

/// A status read from its text column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunStatusColumn(pub RunStatus);

impl TryFrom<String> for RunStatusColumn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse().map(Self)
    }
}

/// A run to enqueue. Build with [`NewRun::new`] and the setters.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub namespace: String,
    pub kind: String,
    pub input: Value,
    pub priority: i16,
    pub run_at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub concurrency_key: Option<String>,
    pub concurrency_limit: Option<i32>,
    pub labels: Value,
    pub max_attempts: i32,
    pub parent_id: Option<Uuid>,
    pub created_by: Option<String>,
}

impl NewRun {
    pub fn new(namespace: impl Into<String>, kind: impl Into<String>, input: Value) -> Self {
        Self {
            namespace: namespace.into(),
            kind: kind.into(),
            input,
            priority: 0,
            run_at: None,
            idempotency_key: None,
            concurrency_key: None,
            concurrency_limit: None,
            labels: json!({}),
            max_attempts: 5,
            parent_id: None,
            created_by: None,
        }
    }

    /// A run of job `J` with typed input, allowed the attempts of `J`'s retry policy.
    pub fn of<J: crate::Job>(namespace: impl Into<String>, input: &J::Input) -> Self {
        let mut run = Self::new(
            namespace,
            J::KIND,
            serde_json::to_value(input).unwrap_or(Value::Null),
        );
        run.max_attempts = i32::try_from(J::retry_policy().max_attempts).unwrap_or(i32::MAX);
        run
    }

    #[must_use]
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }
    #[must_use]
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
    /// At most `limit` runs with this key run at once (e.g. one mutating run per environment).
    #[must_use]
    pub fn concurrency(mut self, key: impl Into<String>, limit: i32) -> Self {
        self.concurrency_key = Some(key.into());
        self.concurrency_limit = Some(limit.max(1));
        self
    }
    #[must_use]
    pub fn labels(mut self, labels: Value) -> Self {
        self.labels = labels;
        self
    }
    #[must_use]
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    #[must_use]
    pub fn created_by(mut self, who: impl Into<String>) -> Self {
        self.created_by = Some(who.into());
        self
    }
    #[must_use]
    pub fn parent(mut self, parent: Uuid) -> Self {
        self.parent_id = Some(parent);
        self
    }
}

/// The result of enqueueing: the run, and whether this call created it (false when an existing
/// run with the same idempotency key was returned).
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub id: Uuid,
    pub created: bool,
}

/// Enqueues a run, inside the caller's transaction so it commits (or not) with the caller's
/// change. With an idempotency key, an existing run with that key is returned instead. A run
/// due later waits (`waiting`, woken at `run_at`), so only due runs sit in the claim index.
pub async fn enqueue(db: &mut PgConnection, new: &NewRun) -> Result<Enqueued> {
    let id = Uuid::now_v7();
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "insert into engine_runs (id, namespace, kind, input, status, max_attempts, priority, run_at, \
         idempotency_key, concurrency_key, concurrency_limit, parent_id, labels, created_by) \
         values ($1, $2, $3, $4, case when $7 > now() then 'waiting' else 'queued' end, $5, $6, coalesce($7, now()), \
                 $8, $9, $10, $11, $12, $13) \
         on conflict (namespace, kind, idempotency_key) where idempotency_key is not null do nothing \
         returning id",
    )
    .bind(id)
    .bind(&new.namespace)
    .bind(&new.kind)
    .bind(&new.input)
    .bind(new.max_attempts)
    .bind(new.priority)
    .bind(new.run_at)
    .bind(&new.idempotency_key)
    .bind(&new.concurrency_key)
    .bind(new.concurrency_limit)
    .bind(new.parent_id)
    .bind(&new.labels)
    .bind(&new.created_by)
    .fetch_optional(&mut *db)
    .await?;
    if let Some(id) = inserted {
        return Ok(Enqueued { id, created: true });
    }
    let existing: Uuid = sqlx::query_scalar(
        "select id from engine_runs where namespace = $1 and kind = $2 and idempotency_key = $3",
    )
    .bind(&new.namespace)
    .bind(&new.kind)
    .bind(&new.idempotency_key)
    .fetch_one(&mut *db)
    .await?;
    Ok(Enqueued {
        id: existing,
        created: false,
    })
}

pub(crate) const RUN_COLUMNS: &str = "id, namespace, kind, input, output, status, attempt, failures, max_attempts, priority, run_at, \
     idempotency_key, concurrency_key, concurrency_limit, parent_id, labels, progress_done, progress_total, error, \
     worker_id, lease_expires_at, cancel_requested_at, wait_signal, wait_children, created_by, created_at, \
     started_at, finished_at, updated_at";

/// Claims up to `limit` runnable runs of `kinds` (all kinds when None) for `worker`.
/// `recent` lists the namespaces this worker served, least recent first (see [`Fairness`]).
pub async fn claim(
    db: impl PgExecutor<'_>,
    worker: Uuid,
    kinds: Option<&[String]>,
    limit: u32,
    lease: Duration,
    recent: &[String],
) -> Result<Vec<Run>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {RUN_COLUMNS} from engine_claim($1, $2, $3, make_interval(secs => $4), $5)"
    )))
    .bind(worker)
    .bind(kinds)
    .bind(i32::try_from(limit).unwrap_or(i32::MAX))
    .bind(lease.as_secs_f64())
    .bind(recent)
    .fetch_all(db)
    .await?)
}

/// The order in which a worker last served namespaces, least recent first: passed to each claim
/// so turns rotate between namespaces across claims, without shared state to contend on.
#[derive(Debug, Default)]
pub struct Fairness {
    order: Vec<String>,
}

impl Fairness {
    const MAX: usize = 1024;

    pub fn served(&mut self, namespace: &str) {
        if let Some(i) = self.order.iter().position(|n| n == namespace) {
            self.order.remove(i);
        } else if self.order.len() >= Self::MAX {
            self.order.remove(0);
        }
        self.order.push(namespace.to_owned());
    }

    pub fn recent(&self) -> &[String] {
        &self.order
    }
}

pub async fn get(db: impl PgExecutor<'_>, namespace: &str, id: Uuid) -> Result<Run> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {RUN_COLUMNS} from engine_runs where id = $1 and namespace = $2"
    )))
    .bind(id)
    .bind(namespace)
    .fetch_optional(db)
    .await?
    .ok_or(Error::NotFound)
}

/// The identity of one attempt: what every worker-side change is fenced on.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub run_id: Uuid,
    pub attempt: i32,
    pub worker_id: Uuid,
}

fn fenced(rows: u64) -> Result<()> {
    if rows == 0 {
        Err(Error::Fenced)
    } else {
        Ok(())
    }
}

/// Extends the leases of the runs `worker` holds in memory (`held`): a run the database still
/// shows as this worker's but that the worker let go (a write of it was fenced) is not kept
/// alive, so its lease runs out and the reaper queues it again. Runs locked at that moment
/// (their outcome or a checkpoint being committed) are skipped rather than waited for: waiting
/// would hold the other runs' rows locked against the worker's own commits meanwhile, and the
/// next heartbeat extends what this one skipped, long before a lease runs out.
pub async fn extend_leases(
    db: impl PgExecutor<'_>,
    worker: Uuid,
    held: &[Uuid],
    lease: Duration,
) -> Result<u64> {
    if held.is_empty() {
        return Ok(0);
    }
    Ok(sqlx::query(
        "update engine_runs set lease_expires_at = now() + make_interval(secs => $2) \
         where id in (select id from engine_runs where id = any ($3) and worker_id = $1 \
                        and status = 'running' for update skip locked)",
    )
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(held)
    .execute(db)
    .await?
    .rows_affected())
}

/// Whether this attempt still owns its run (for long steps that want to stop early).
pub async fn still_owned(db: impl PgExecutor<'_>, a: Attempt) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "select exists (select 1 from engine_runs where id = $1 and attempt = $2 and worker_id = $3 and status = 'running')",
    )
    .bind(a.run_id)
    .bind(a.attempt)
    .bind(a.worker_id)
    .fetch_one(db)
    .await?)
}

pub async fn succeed(db: &mut PgConnection, a: Attempt, output: &Value) -> Result<()> {
    let parent: Option<Option<Uuid>> = sqlx::query_scalar(
        "update engine_runs set status = 'succeeded', output = $4, error = null, finished_at = now(), \
         worker_id = null, lease_expires_at = null, updated_at = now() \
         where id = $1 and attempt = $2 and worker_id = $3 and status = 'running' returning parent_id",
    )
    .bind(a.run_id)
    .bind(a.attempt)
    .bind(a.worker_id)
    .bind(output)
    .fetch_optional(&mut *db)
    .await?;
    match parent {
        None => Err(Error::Fenced),
        Some(None) => Ok(()),
        Some(Some(parent)) => wake_parent(db, parent).await,
    }
}

pub async fn fail(db: &mut PgConnection, a: Attempt, error: &str) -> Result<()> {
    let done = sqlx::query(
        "update engine_runs set status = 'failed', failures = failures + 1, error = $4, finished_at = now(), \
         worker_id = null, lease_expires_at = null, updated_at = now() \
         where id = $1 and attempt = $2 and worker_id = $3 and status = 'running'",
    )
    .bind(a.run_id)
    .bind(a.attempt)
    .bind(a.worker_id)
    .bind(json!({"message": error, "attempt": a.attempt}))
    .execute(&mut *db)
    .await?;
    fenced(done.rows_affected())?;
    wake_parent_of(db, a.run_id).await
}

pub async fn retry_at(
    db: &mut PgConnection,
    a: Attempt,
    at: DateTime<Utc>,
    error: &str,
) -> Result<()> {
    let done = sqlx::query(
        "update engine_runs set status = case when $4 > now() then 'waiting' else 'queued' end, \
         failures = failures + 1, run_at = $4, error = $5, worker_id = null, lease_expires_at = null, updated_at = now() \
         where id = $1 and attempt = $2 and worker_id = $3 and status = 'running'",
    )
    .bind(a.run_id)
    .bind(a.attempt)
    .bind(a.worker_id)
    .bind(at)
    .bind(json!({"message": error, "attempt": a.attempt, "retry_at": at}))
    .execute(&mut *db)
    .await?;
    fenced(done.rows_affected())
}

pub async fn cancelled(db: &mut PgConnection, a: Attempt) -> Result<()> {
    let done = sqlx::query(
        "update engine_runs set status = 'cancelled', finished_at = now(), worker_id = null, \
         lease_expires_at = null, updated_at = now() \
         where id = $1 and attempt = $2 and worker_id = $3 and status = 'running'",
    )
    .bind(a.run_id)
    .bind(a.attempt)
    .bind(a.worker_id)
    .execute(&mut *db)
    .await?;
    fenced(done.rows_affected())?;
    wake_parent_of(db, a.run_id).await
}

/// Gives a run back to the queue untouched (a draining worker), without spending its budget.
pub async fn release(db: impl PgExecutor<'_>, a: Attempt) -> Result<()> {
    let done = sqlx::query(
        "update engine_runs set status = 'queued', run_at = now(), worker_id = null, lease_expires_at = null, \
         updated_at = now() where id = $1 and attempt = $2 and worker_id = $3 and status = 'running'",
    )
    .bind(a.run_id)
    .bind(a.attempt)
    .bind(a.worker_id)
    .execute(db)
    .await?;
    fenced(done.rows_affected())
}

/// Parks a run until what it waits for happens. The run's row is locked first, and signal
/// senders and finishing children lock it too, so a wake-up can never slip between the check
/// and the park: if what it waits for is already there, the run is queued again at once.
pub async fn park(db: &mut PgConnection, a: Attempt, wait: &Wait) -> Result<()> {
    let owned: Option<Uuid> = sqlx::query_scalar(
        "select id from engine_runs where id = $1 and attempt = $2 and worker_id = $3 and status = 'running' for update",
    )
    .bind(a.run_id)
    .bind(a.attempt)
    .bind(a.worker_id)
    .fetch_optional(&mut *db)
    .await?;
    if owned.is_none() {
        return Err(Error::Fenced);
    }
    let (ready, signal, children, run_at): (bool, Option<&str>, bool, Option<DateTime<Utc>>) =
        match wait {
            Wait::Signal(name) => {
                let pending: bool = sqlx::query_scalar(
                "select exists (select 1 from engine_signals where run_id = $1 and name = $2 and consumed_at is null)",
            )
            .bind(a.run_id)
            .bind(name)
            .fetch_one(&mut *db)
            .await?;
                (pending, Some(name.as_str()), false, None)
            }
            Wait::Children => {
                let open: bool = sqlx::query_scalar(
                "select exists (select 1 from engine_runs where parent_id = $1 and status not in ('succeeded', 'failed', 'cancelled'))",
            )
            .bind(a.run_id)
            .fetch_one(&mut *db)
            .await?;
                (!open, None, true, None)
            }
            Wait::Until(at) => (*at <= Utc::now(), None, false, Some(*at)),
        };
    let status = if ready { "queued" } else { "waiting" };
    sqlx::query(
        "update engine_runs set status = $2, wait_signal = $3, wait_children = $4, run_at = coalesce($5, now()), \
         worker_id = null, lease_expires_at = null, updated_at = now() where id = $1",
    )
    .bind(a.run_id)
    .bind(status)
    .bind(if ready { None } else { signal })
    .bind(children && !ready)
    .bind(run_at)
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// When a child finishes: if its parent waits for its children and none is left open, queue it.
async fn wake_parent_of(db: &mut PgConnection, child: Uuid) -> Result<()> {
    let parent: Option<Uuid> =
        sqlx::query_scalar("select parent_id from engine_runs where id = $1")
            .bind(child)
            .fetch_one(&mut *db)
            .await?;
    match parent {
        Some(parent) => wake_parent(db, parent).await,
        None => Ok(()),
    }
}

pub(crate) async fn wake_parent(db: &mut PgConnection, parent: Uuid) -> Result<()> {
    // Locks the parent first (see `park`); the same function wakes parents in group commits.
    sqlx::query("select engine_wake_parent($1)")
        .bind(parent)
        .execute(&mut *db)
        .await?;
    Ok(())
}

/// Delivers a signal. Stored first, so a run that waits for it later still gets it.
pub async fn signal(
    db: &mut PgConnection,
    namespace: &str,
    run_id: Uuid,
    name: &str,
    payload: &Value,
) -> Result<()> {
    let status: Option<String> = sqlx::query_scalar(
        "select status from engine_runs where id = $1 and namespace = $2 for update",
    )
    .bind(run_id)
    .bind(namespace)
    .fetch_optional(&mut *db)
    .await?;
    let status: RunStatus = status
        .ok_or(Error::NotFound)?
        .parse()
        .map_err(Error::Conflict)?;
    if status.is_terminal() {
        return Err(Error::Conflict(format!(
            "the run is {status}; it takes no more signals"
        )));
    }
    sqlx::query("insert into engine_signals (run_id, name, payload) values ($1, $2, $3)")
        .bind(run_id)
        .bind(name)
        .bind(payload)
        .execute(&mut *db)
        .await?;
    sqlx::query(
        "update engine_runs set status = 'queued', wait_signal = null, run_at = now(), updated_at = now() \
         where id = $1 and status = 'waiting' and wait_signal = $2",
    )
    .bind(run_id)
    .bind(name)
    .execute(&mut *db)
    .await?;
    log(
        &mut *db,
        run_id,
        namespace,
        "info",
        &format!("signal `{name}` received"),
    )
    .await
}

/// Requests cancellation. A run that never started is cancelled at once; one that did is handed
/// to a worker to stop between steps and run its compensation.
pub async fn request_cancel(db: &mut PgConnection, namespace: &str, run_id: Uuid) -> Result<Run> {
    let run = sqlx::query_as::<_, Run>(sqlx::AssertSqlSafe(format!(
        "select {RUN_COLUMNS} from engine_runs where id = $1 and namespace = $2 for update"
    )))
    .bind(run_id)
    .bind(namespace)
    .fetch_optional(&mut *db)
    .await?
    .ok_or(Error::NotFound)?;
    if run.status().is_terminal() {
        return Err(Error::Conflict(format!(
            "the run has already finished ({})",
            run.status()
        )));
    }
    let next = match run.status() {
        RunStatus::Queued | RunStatus::Waiting if run.attempt == 0 => "cancelled",
        RunStatus::Queued | RunStatus::Waiting => "queued",
        _ => "running",
    };
    sqlx::query(
        "update engine_runs set cancel_requested_at = coalesce(cancel_requested_at, now()), status = $2, \
         finished_at = case when $2 = 'cancelled' then now() else finished_at end, \
         wait_signal = case when $2 = 'queued' then null else wait_signal end, \
         wait_children = case when $2 = 'queued' then false else wait_children end, \
         run_at = case when $2 = 'queued' then now() else run_at end, updated_at = now() where id = $1",
    )
    .bind(run_id)
    .bind(next)
    .execute(&mut *db)
    .await?;
    if next == "running" {
        sqlx::query("select pg_notify('engine_cancel', $1)")
            .bind(run_id.to_string())
            .execute(&mut *db)
            .await?;
    }
    if next == "cancelled" {
        wake_parent_of(db, run_id).await?;
    }
    get(&mut *db, namespace, run_id).await
}

/// Retries a failed run from its checkpoints, with a fresh retry budget.
pub async fn retry(db: &mut PgConnection, namespace: &str, run_id: Uuid) -> Result<Run> {
    let done = sqlx::query(
        "update engine_runs set status = 'queued', failures = 0, losses = 0, error = null, run_at = now(), finished_at = null, \
         cancel_requested_at = null, updated_at = now() where id = $1 and namespace = $2 and status = 'failed'",
    )
    .bind(run_id)
    .bind(namespace)
    .execute(&mut *db)
    .await?;
    if done.rows_affected() == 0 {
        let run = get(&mut *db, namespace, run_id).await?;
        return Err(Error::Conflict(format!(
            "only failed runs can be retried; this one is {}",
            run.status()
        )));
    }
    get(&mut *db, namespace, run_id).await
}

/// Appends a log line to a run's events. The run is key-share locked, so a run being deleted
/// meanwhile (there is no foreign key) cannot be left with an orphan event: NotFound instead.
pub async fn log(
    db: impl PgExecutor<'_>,
    run_id: Uuid,
    namespace: &str,
    level: &str,
    message: &str,
) -> Result<()> {
    let written = sqlx::query(
        "insert into engine_events (run_id, namespace, kind, data) select $1, $2, 'log', $3 \
         where exists (select from engine_runs where id = $1 and namespace = $2 for key share)",
    )
    .bind(run_id)
    .bind(namespace)
    .bind(json!({"level": level, "message": message}))
    .execute(db)
    .await?;
    if written.rows_affected() == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// Records progress (`done` of `total`) on the run and as an event. Fenced.
pub async fn progress(
    db: &mut PgConnection,
    a: Attempt,
    namespace: &str,
    done: i64,
    total: i64,
) -> Result<()> {
    let updated = sqlx::query(
        "update engine_runs set progress_done = $4, progress_total = $5, updated_at = now() \
         where id = $1 and attempt = $2 and worker_id = $3 and status = 'running'",
    )
    .bind(a.run_id)
    .bind(a.attempt)
    .bind(a.worker_id)
    .bind(done)
    .bind(total)
    .execute(&mut *db)
    .await?;
    fenced(updated.rows_affected())?;
    sqlx::query(
        "insert into engine_events (run_id, namespace, kind, data) values ($1, $2, 'progress', $3)",
    )
    .bind(a.run_id)
    .bind(namespace)
    .bind(json!({"done": done, "total": total}))
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// Requeues runs whose worker died (its session advisory lock is gone) or whose lease lapsed.
/// A run's first loss is free (it may have been waiting in the worker's memory, never started);
/// each later one counts against its budget, and a run out of budget fails. Also marks dead
/// workers stopped. Returns the ids of the runs taken back.
pub async fn reap(db: &mut PgConnection) -> Result<Vec<Uuid>> {
    let orphans: Vec<(Uuid, String, bool)> = sqlx::query_as(
        "with dead as ( \
             select r.id from engine_runs r \
             where r.status = 'running' and (r.lease_expires_at < now() or r.worker_id is null or not exists ( \
                 select 1 from engine_workers w join pg_locks l on l.locktype = 'advisory' and l.granted \
                   and l.database = (select oid from pg_database where datname = current_database()) \
                   and l.classid = $1 and l.objid = w.lock_key::oid and l.objsubid = 2 \
                 where w.id = r.worker_id)) \
             for update of r skip locked) \
         update engine_runs r set \
             status = case when r.losses > 0 and r.failures + 1 >= r.max_attempts then 'failed' else 'queued' end, \
             failures = r.failures + (r.losses > 0)::int, \
             losses = r.losses + 1, \
             error = jsonb_build_object('message', 'the worker running this attempt was lost', 'attempt', r.attempt), \
             finished_at = case when r.losses > 0 and r.failures + 1 >= r.max_attempts then now() else null end, \
             run_at = now(), worker_id = null, lease_expires_at = null, updated_at = now() \
         from dead where r.id = dead.id returning r.id, r.kind, r.status = 'failed'",
    )
    .bind(crate::worker::LOCK_CLASS)
    .fetch_all(&mut *db)
    .await?;
    for (id, kind, failed) in &orphans {
        // The attempt the lost worker held ends here: lost (queued again) or failed (budget
        // spent), counted with the attempts workers record themselves.
        let outcome = if *failed { "failed" } else { "lost" };
        metrics::counter!("workflowops_engine_attempts_total", "kind" => kind.clone(), "outcome" => outcome)
            .increment(1);
        if *failed {
            wake_parent_of(db, *id).await?;
        }
    }
    sqlx::query(
        "update engine_workers w set stopped_at = now(), busy_slots = 0 where w.stopped_at is null and not exists ( \
             select 1 from pg_locks l where l.locktype = 'advisory' and l.granted \
               and l.database = (select oid from pg_database where datname = current_database()) \
               and l.classid = $1 and l.objid = w.lock_key::oid and l.objsubid = 2)",
    )
    .bind(crate::worker::LOCK_CLASS)
    .execute(&mut *db)
    .await?;
    Ok(orphans.into_iter().map(|(id, _, _)| id).collect())
}

/// Queues parked runs whose time has come.
pub async fn wake_timers(db: impl PgExecutor<'_>) -> Result<u64> {
    Ok(sqlx::query(
        "update engine_runs set status = 'queued', updated_at = now() \
         where status = 'waiting' and wait_signal is null and not wait_children and run_at <= now()",
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// Deletes up to `limit` finished top-level runs that finished before `cutoff`, with their
/// steps, events, signals and children. Returns how many runs were deleted (0 = done).
///
/// Run ids are UUIDv7, ordered by creation time, and a run that finished before the cutoff was
/// created before it: the primary key's range below the cutoff's id is all there is to read
/// (what is left there once pruned is only runs still open), so a batch never reads the
/// millions of newer finished runs and `finished_at` needs no index of its own (one more index
/// written with every finished run).
pub async fn prune(db: impl PgExecutor<'_>, cutoff: DateTime<Utc>, limit: i64) -> Result<u64> {
    Ok(sqlx::query(
        "delete from engine_runs where id in (select id from engine_runs \
           where id < $3 and parent_id is null and status in ('succeeded', 'failed', 'cancelled') \
             and finished_at < $1 \
           order by id limit $2 for update skip locked)",
    )
    .bind(cutoff)
    .bind(limit)
    .bind(v7_floor(cutoff))
    .execute(db)
    .await?
    .rows_affected())
}

/// The smallest UUIDv7 of the millisecond `at`: every v7 id created before `at` sorts below it.
fn v7_floor(at: DateTime<Utc>) -> Uuid {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    Uuid::from_u128(u128::from(ms) << 80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v7_floor_of_a_moment_sorts_between_ids_made_before_and_after_it() {
        let before = Uuid::now_v7();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let at = Utc::now();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let after = Uuid::now_v7();
        let floor = v7_floor(at);
        assert!(before < floor, "{before} < {floor}");
        assert!(floor < after, "{floor} < {after}");
    }
}
