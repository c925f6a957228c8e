//! Running engine workers in tests and waiting on conditions (never fixed sleeps).

use std::future::Future;
use std::time::Duration;

use engine::{Registry, RunStatus, WorkerConfig};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// An in-process worker, stopped (drained) on drop or `stop`.
pub struct TestWorker {
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<engine::worker::Result<()>>>,
}

impl TestWorker {
    pub fn start(pool: &PgPool, registry: Registry, concurrency: u32) -> Self {
        let mut config = WorkerConfig::new("test-worker", concurrency);
        config.poll_every = Duration::from_millis(100);
        config.heartbeat_every = Duration::from_millis(500);
        config.drain_timeout = Duration::from_secs(5);
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(engine::run_worker(
            pool.clone(),
            config,
            registry,
            shutdown.clone(),
        ));
        Self {
            shutdown,
            handle: Some(handle),
        }
    }

    /// Kills the worker as a crash would: its tasks and connections are dropped mid-step, so
    /// PostgreSQL releases its liveness lock and other workers take its runs back.
    pub async fn kill(mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
            let _ = h.await;
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `check` every 20 ms until it yields Some, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn status(pool: &PgPool, run: Uuid) -> RunStatus {
    let s: String = sqlx::query_scalar("select status from engine_runs where id = $1")
        .bind(run)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until the run has `wanted` status.
pub async fn wait_for(pool: &PgPool, run: Uuid, wanted: RunStatus) {
    eventually(
        &format!("run {run} to be {wanted}"),
        Duration::from_secs(20),
        || async { (status(pool, run).await == wanted).then_some(()) },
    )
    .await;
}

/// Enqueues in a transaction of its own.
pub async fn enqueue(pool: &PgPool, new: &engine::NewRun) -> Uuid {
    let mut tx = pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let id = engine::queue::enqueue(&mut tx, new)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    id
}
