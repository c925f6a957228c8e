//! Liveness and readiness (HEALTH-001).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::app::AppState;
use crate::db;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// Alive: the process answers. Says nothing about its dependencies.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// `ok` or `unreachable`.
    pub database: &'static str,
    /// `current`, `pending` (this binary knows migrations the database lacks) or `unknown`.
    pub migrations: &'static str,
}

/// Ready: the database answers and every migration this binary knows is applied.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready to serve", body = Readiness),
    (status = 503, description = "Not ready", body = Readiness),
))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let (database, migrations) = match db::migrations_current(&state.db).await {
        Ok(true) => ("ok", "current"),
        Ok(false) => ("ok", "pending"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            ("unreachable", "unknown")
        }
    };
    let ready = database == "ok" && migrations == "current";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ready { "ready" } else { "not_ready" },
            database,
            migrations,
        }),
    )
}
