//! Reading runs for people and streams: filtered lists, steps, children, ordered events.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::model::RunStatus;
use crate::queue::{Result, Run};

/// Filters for [`list`]; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub kind: Option<String>,
    pub status: Option<RunStatus>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Runs whose labels contain this JSON object (e.g. `{"environment": "prod"}`).
    pub labels: Option<Value>,
    pub parent_id: Option<Uuid>,
}

/// Runs of a namespace, newest first, strictly older than `after`.
pub async fn list(
    db: impl PgExecutor<'_>,
    namespace: &str,
    filter: &RunFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Run>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {} from engine_runs where namespace = $1 and ($2::uuid is null or id < $2) \
           and ($3::text is null or kind = $3) and ($4::text is null or status = $4) \
           and ($5::timestamptz is null or created_at >= $5) and ($6::timestamptz is null or created_at < $6) \
           and ($7::jsonb is null or labels @> $7) and ($8::uuid is null or parent_id = $8) \
         order by id desc limit $9",
        crate::queue::RUN_COLUMNS
    )))
    .bind(namespace)
    .bind(after)
    .bind(&filter.kind)
    .bind(filter.status.map(RunStatus::as_str))
    .bind(filter.since)
    .bind(filter.until)
    .bind(&filter.labels)
    .bind(filter.parent_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct StepInfo {
    pub name: String,
    /// The attempt that completed it.
    pub attempt: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: DateTime<Utc>,
}

pub async fn steps(db: impl PgExecutor<'_>, run_id: Uuid) -> Result<Vec<StepInfo>> {
    Ok(sqlx::query_as(
        "select name, attempt, started_at, completed_at from engine_steps where run_id = $1 order by completed_at, name",
    )
    .bind(run_id)
    .fetch_all(db)
    .await?)
}

/// How many children a run has in each status.
pub async fn children(db: impl PgExecutor<'_>, run_id: Uuid) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as("select status, count(*) from engine_runs where parent_id = $1 group by status order by status")
        .bind(run_id)
        .fetch_all(db)
        .await?)
}

/// One event of a run's ordered log.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Event {
    pub id: i64,
    pub run_id: Uuid,
    /// `state`, `progress` or `log`.
    pub kind: String,
    pub data: Value,
    pub created_at: DateTime<Utc>,
}

/// A run's events after event `after`, in order.
pub async fn run_events(
    db: impl PgExecutor<'_>,
    namespace: &str,
    run_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>> {
    Ok(sqlx::query_as(
        "select id, run_id, kind, data, created_at from engine_events \
         where run_id = $1 and namespace = $2 and id > $3 order by id limit $4",
    )
    .bind(run_id)
    .bind(namespace)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// A namespace's state changes after event `after`, in order (for dashboards).
pub async fn state_events(
    db: impl PgExecutor<'_>,
    namespace: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<Event>> {
    Ok(sqlx::query_as(
        "select id, run_id, kind, data, created_at from engine_events \
         where namespace = $1 and id > $2 and kind = 'state' order by id limit $3",
    )
    .bind(namespace)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// The newest event id of a namespace (where a live stream starts).
pub async fn last_event_id(db: impl PgExecutor<'_>, namespace: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar("select coalesce(max(id), 0) from engine_events where namespace = $1")
            .bind(namespace)
            .fetch_one(db)
            .await?,
    )
}

/// Unfinished runs of a namespace by status (for dashboard counters).
pub async fn active_counts(db: impl PgExecutor<'_>, namespace: &str) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "select status, count(*) from engine_runs where namespace = $1 and status in ('queued', 'running', 'waiting') \
         group by status order by status",
    )
    .bind(namespace)
    .fetch_all(db)
    .await?)
}
