//! A worker process: registers in `engine_workers`, heartbeats, and drains on cancellation.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
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
    pub heartbeat_every: Duration,
}

/// A registered worker as operators see it.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct WorkerInfo {
    pub id: Uuid,
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub concurrency: i32,
    pub busy_slots: i32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
}

pub async fn register(db: impl PgExecutor<'_>, config: &WorkerConfig) -> Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into engine_workers (id, name, host, pid, version, concurrency) values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(&config.name)
    .bind(&config.host)
    .bind(i32::try_from(config.pid).unwrap_or(i32::MAX))
    .bind(&config.version)
    .bind(i32::try_from(config.concurrency).unwrap_or(i32::MAX))
    .execute(db)
    .await?;
    Ok(id)
}

pub async fn heartbeat(db: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    sqlx::query(
        "update engine_workers set heartbeat_at = now() where id = $1 and stopped_at is null",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn mark_stopped(db: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    sqlx::query("update engine_workers set stopped_at = now(), busy_slots = 0 where id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Live workers (heartbeat within `stale_after`), newest first.
pub async fn list_live(db: impl PgExecutor<'_>, stale_after: Duration) -> Result<Vec<WorkerInfo>> {
    Ok(sqlx::query_as(
        "select id, name, host, pid, version, concurrency, busy_slots, started_at, heartbeat_at, stopped_at \
         from engine_workers where stopped_at is null and heartbeat_at > now() - make_interval(secs => $1) \
         order by started_at desc",
    )
    .bind(stale_after.as_secs_f64())
    .fetch_all(db)
    .await?)
}

/// Registers, heartbeats until `shutdown` is cancelled, then marks the worker stopped.
pub async fn run_worker(
    pool: PgPool,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let id = register(&pool, &config).await?;
    tracing::info!(worker_id = %id, name = %config.name, concurrency = config.concurrency, "worker registered");
    let mut ticker = tokio::time::interval(config.heartbeat_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {
                if let Err(e) = heartbeat(&pool, id).await {
                    // A missed heartbeat is survivable; the next tick tries again.
                    tracing::warn!(worker_id = %id, error = %e, "heartbeat failed");
                }
            }
        }
    }
    mark_stopped(&pool, id).await?;
    tracing::info!(worker_id = %id, "worker drained and stopped");
    Ok(())
}
