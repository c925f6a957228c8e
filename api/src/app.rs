//! The HTTP application: shared state, the router with every route, and the layers around it
//! (request ids, tracing, panics, timeouts, body limits, authentication, idempotency).

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use domain::crypto::Keyring;
use sqlx::PgPool;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{self, AuthCache};
use crate::error::ApiError;
use crate::events::EventHub;
use crate::read_audit::ReadAudit;
use crate::{idempotency, openapi, routes};

/// Settings the request handlers need (a subset of the command line).
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Base URL for links people follow (invitations), without a trailing slash.
    pub public_url: String,
    pub session_ttl: Duration,
    pub invitation_ttl: Duration,
    pub auth_cache_ttl: Duration,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub trust_forwarded_for: bool,
    /// Most environments of one provider per tenant when its plan sets no limit (ENV-008).
    pub max_environments: i64,
    /// How long synced executions are kept (EXEC-005): older ones are not fetched, and pruned.
    pub execution_retention: Duration,
    /// How long audited reads are kept (changes are kept): pruned hourly.
    pub read_audit_retention: Duration,
    /// How long finished runs are kept (the hourly prune's default; platform admins may override).
    pub run_retention: Duration,
    /// How long scheduled snapshots are listed (likewise).
    pub snapshot_retention: Duration,
    /// Accept local paths as Git remotes (tests and single-machine setups only: a local path
    /// lets API callers reach the server's file system).
    pub allow_local_git: bool,
    /// Live streams without a notification: the API re-reads the namespaces it streams this
    /// often, and each subscriber its own position every 2.5 times as long (safety nets: events
    /// are delivered on their notification).
    pub event_poll: Duration,
    /// Outgoing email and where notifications may go.
    pub notify: jobs::notify::Settings,
    /// Which networks calls to providers, Git remotes and the GitHub API may reach
    /// (`WFO_OUTBOUND_NETWORKS`).
    pub outbound: adapters::net::Outbound,
    /// Stripe, when paid plans are sold (BILL-*); `None`: plans are assigned by platform admins.
    pub stripe: Option<billing::Stripe>,
}

impl AppConfig {
    /// Defaults matching the command line's, for tests and embedding.
    pub fn new(public_url: impl Into<String>) -> Self {
        Self {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            session_ttl: Duration::from_secs(12 * 3600),
            invitation_ttl: Duration::from_secs(7 * 86_400),
            auth_cache_ttl: Duration::from_secs(60),
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            trust_forwarded_for: false,
            max_environments: 10,
            execution_retention: Duration::from_secs(90 * 86_400),
            read_audit_retention: Duration::from_secs(90 * 86_400),
            run_retention: Duration::from_secs(30 * 86_400),
            snapshot_retention: Duration::from_secs(90 * 86_400),
            allow_local_git: false,
            event_poll: Duration::from_secs(2),
            notify: jobs::notify::Settings::default(),
            outbound: adapters::net::Outbound::default(),
            stripe: None,
        }
    }
}

pub struct Inner {
    pub db: PgPool,
    pub keyring: Arc<Keyring>,
    /// What provider-facing work needs (the same keyring, one HTTP client for adapters).
    pub jobs: jobs::Deps,
    pub auth_cache: AuthCache,
    pub events: EventHub,
    /// Writes the audit entries of reads in batches (see [`ReadAudit`]).
    pub read_audit: ReadAudit,
    pub config: AppConfig,
}

/// Cheap to clone; shared by every request.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(db: PgPool, keyring: impl Into<Arc<Keyring>>, config: AppConfig) -> Self {
        crate::metrics::handle();
        let keyring = keyring.into();
        let read_audit = ReadAudit::start(db.clone());
        Self(Arc::new(Inner {
            db,
            jobs: jobs::Deps::new(Arc::clone(&keyring))
                .with_notify(config.notify.clone())
                .with_outbound(config.outbound),
            keyring,
            auth_cache: AuthCache::new(config.auth_cache_ttl),
            events: EventHub::new(),
            read_audit,
            config,
        }))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Every API route, with its OpenAPI description.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base()).merge(routes::router())
}

/// The OpenAPI document of every route (served at `/api/v1/openapi.json`).
pub fn openapi_document() -> OpenApi {
    let mut document = api_routes().split_for_parts().1;
    openapi::conclude(&mut document);
    document
}

/// The complete application.
pub fn router(state: AppState) -> Router {
    let (routes, mut document) = api_routes().split_for_parts();
    openapi::conclude(&mut document);
    let document = Arc::new(document);
    let request_id = HeaderName::from_static("x-request-id");
    let max_body = state.config.max_body_bytes;
    routes
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let document = Arc::clone(&document);
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .route("/metrics", axum::routing::get(crate::metrics::scrape))
        .merge(crate::ui::router())
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::middleware,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("a request handler panicked").into_response()
            },
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .make_span_with(|req: &Request| {
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        request_id = %request_id,
                        tenant = tracing::field::Empty,
                    )
                }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

async fn time_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long and was abandoned; retry, or narrow it",
        )
        .into_response(),
    }
}

async fn route_not_found() -> ApiError {
    crate::ui::route_not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not support that method; see /api/v1/openapi.json",
    )
}
