//! Prometheus metrics: the process-wide recorder, and `/metrics` (engine counters and
//! histograms of this process, plus the queue depth read from the database at scrape time).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::app::AppState;

const SECONDS_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
    300.0,
];

/// Installs the recorder on first use; None if another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// Renders this process's metrics.
pub fn render_process() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// `GET /metrics`: Prometheus text format.
pub async fn scrape(State(state): State<AppState>) -> Response {
    let depth: Result<Vec<(String, String, i64)>, sqlx::Error> = sqlx::query_as(
        "select kind, status, count(*) from engine_runs where status in ('queued', 'running', 'waiting') group by kind, status",
    )
    .fetch_all(&state.db)
    .await;
    match depth {
        Ok(rows) => {
            // A (kind, status) with no runs left has no row: its gauge goes to zero rather than
            // keep its last count.
            static SEEN: std::sync::Mutex<std::collections::BTreeSet<(String, String)>> =
                std::sync::Mutex::new(std::collections::BTreeSet::new());
            let mut seen = SEEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now: std::collections::BTreeSet<(String, String)> = rows
                .iter()
                .map(|(kind, status, _)| (kind.clone(), status.clone()))
                .collect();
            for (kind, status) in seen.difference(&now) {
                metrics::gauge!("workflowops_engine_queue_runs", "kind" => kind.clone(), "status" => status.clone()).set(0.0);
            }
            seen.extend(now);
            for (kind, status, n) in rows {
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!("workflowops_engine_queue_runs", "kind" => kind, "status" => status).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: reading the queue depth failed"),
    }
    let live: Result<(i64, i64, i64), sqlx::Error> = sqlx::query_as(
        "select count(*), coalesce(sum(concurrency), 0)::bigint, coalesce(sum(busy_slots), 0)::bigint \
         from engine_workers where stopped_at is null",
    )
    .fetch_one(&state.db)
    .await;
    if let Ok((workers, slots, busy)) = live {
        #[allow(clippy::cast_precision_loss)]
        {
            metrics::gauge!("workflowops_engine_workers").set(workers as f64);
            metrics::gauge!("workflowops_engine_worker_slots").set(slots as f64);
            metrics::gauge!("workflowops_engine_worker_busy_slots").set(busy as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_process(),
    )
        .into_response()
}
