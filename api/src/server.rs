//! Running the HTTP server and its background tasks until shutdown, and the shutdown signal.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{self, AppState};
use crate::{auth, idempotency};

/// Serves `state` on `listener` until `shutdown` is cancelled, then finishes in-flight requests.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let background = tokio_util::task::TaskTracker::new();
    background.spawn(auth::listen_for_invalidations(
        state.clone(),
        shutdown.clone(),
    ));
    background.spawn(purge_idempotency_keys(state.clone(), shutdown.clone()));
    background.spawn(prune_read_audit(state.clone(), shutdown.clone()));
    background.spawn(crate::events::listen(
        state.db.clone(),
        state.events.clone(),
        state.config.event_poll,
        shutdown.clone(),
    ));
    background.close();
    let read_audit = state.read_audit.clone();
    let app = app::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    background.wait().await;
    // Reads audited by the last requests.
    read_audit.flush(Duration::from_secs(10)).await;
    result
}

async fn purge_idempotency_keys(state: AppState, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => match idempotency::purge(&state.db).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "purged expired idempotency keys"),
                Err(e) => tracing::warn!(error = %e, "purging idempotency keys failed"),
            },
        }
    }
}

/// Hourly: audited reads past `read_audit_retention` (every API process may run it: the deletes
/// are idempotent and bounded).
async fn prune_read_audit(state: AppState, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                // A platform admin's setting (ADMIN-016) wins over the server's configuration.
                let keep = match domain::usage::retention(&state.db).await {
                    Ok(o) => o.read_audit_days.map_or(state.config.read_audit_retention, |d| {
                        Duration::from_secs(u64::try_from(d).unwrap_or(1).max(1) * 86_400)
                    }),
                    Err(_) => state.config.read_audit_retention,
                };
                match domain::audit::prune_reads(&state.db, keep).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(pruned = n, "pruned audited reads past their retention"),
                    Err(e) => tracing::warn!(error = %e, "pruning audited reads failed"),
                }
            }
        }
    }
}

/// A token cancelled on SIGINT or SIGTERM: the API stops accepting, workers stop claiming.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            () = term => {}
        }
        tracing::info!("shutdown requested: draining");
        cancel.cancel();
    });
    token
}
