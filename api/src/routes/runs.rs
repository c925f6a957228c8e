//! Runs of the durable engine, as a tenant sees them: list, detail, cancel, retry, signal, and
//! live event streams (SSE-001..005, SSE-007).

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::audit::Entry;
use domain::page::{Page, PageRequest};
use domain::validate::Validator;
use engine::read::{self, RunFilter};
use engine::{RunStatus, queue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use crate::events::Message;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};
use crate::read_audit::Pending;

/// A run as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: Uuid,
    pub kind: String,
    /// `queued`, `running`, `waiting`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = Option<Value>)]
    pub output: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    pub attempt: i32,
    pub failures: i32,
    pub max_attempts: i32,
    pub priority: i16,
    pub progress_done: Option<i64>,
    pub progress_total: Option<i64>,
    #[schema(value_type = Object)]
    pub labels: Value,
    pub parent_id: Option<Uuid>,
    pub concurrency_key: Option<String>,
    pub wait_signal: Option<String>,
    pub waiting_for_children: bool,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<engine::Run> for RunView {
    fn from(r: engine::Run) -> Self {
        Self {
            id: r.id,
            status: r.status().to_string(),
            kind: r.kind,
            input: r.input,
            output: r.output,
            error: r.error,
            attempt: r.attempt,
            failures: r.failures,
            max_attempts: r.max_attempts,
            priority: r.priority,
            progress_done: r.progress_done,
            progress_total: r.progress_total,
            labels: r.labels,
            parent_id: r.parent_id,
            concurrency_key: r.concurrency_key,
            wait_signal: r.wait_signal,
            waiting_for_children: r.wait_children,
            cancel_requested_at: r.cancel_requested_at,
            created_by: r.created_by,
            run_at: r.run_at,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

/// Enqueues `run` for the tenant (created by the caller), audits `action` with `details` in the
/// same transaction, and returns the run as the API shows it.
pub(crate) async fn start_run(
    state: &AppState,
    actor: &domain::audit::Actor,
    tenant_id: Uuid,
    run: engine::NewRun,
    action: &str,
    details: serde_json::Value,
) -> ApiResult<RunView> {
    let mut tx = state.db.begin().await?;
    let run = run.created_by(actor.label.clone());
    let enqueued = queue::enqueue(&mut tx, &run).await.map_err(queue_error)?;
    let view = queue::get(&mut *tx, &tenant_id.to_string(), enqueued.id)
        .await
        .map_err(queue_error)?;
    Entry::new(Some(tenant_id), actor, action, "run")
        .target(enqueued.id)
        .new_value(&details)
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(view.into())
}

pub(crate) fn queue_error(e: queue::Error) -> ApiError {
    match e {
        queue::Error::NotFound => ApiError::not_found("run not found"),
        queue::Error::Conflict(message) => {
            ApiError::new(StatusCode::CONFLICT, "run_state_conflict", message)
        }
        queue::Error::Fenced => ApiError::new(
            StatusCode::CONFLICT,
            "run_state_conflict",
            "the run changed meanwhile; retry",
        ),
        queue::Error::Database(db) => db.into(),
    }
}

#[derive(Debug, Deserialize, Serialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    pub kind: Option<String>,
    /// One of queued, running, waiting, succeeded, failed, cancelled.
    #[param(pattern = "^(queued|running|waiting|succeeded|failed|cancelled)$")]
    pub status: Option<String>,
    /// Created at or after (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// `key:value` label to match (e.g. `environment:prod`).
    pub label: Option<String>,
    /// Only the children of this run.
    pub parent_id: Option<Uuid>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The tenant's runs, newest first, filtered.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", security(("bearer" = [])), params(RunQuery),
    responses((status = 200, body = Page<RunView>), (status = 422, body = Problem)))]
pub async fn list_runs(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> ApiResult<Json<Page<RunView>>> {
    let asked = serde_json::json!({ "query": &q });
    let audit = audit_read(&state, &ctx, "run.listed", None, &asked).await;
    let result = runs_page(&state, ctx.tenant_id(), q).await;
    audit.finish(|d| {
        ended(&result, d);
        if let Ok(page) = &result {
            d["returned"] = page.items.len().into();
        }
    });
    result.map(Json)
}

async fn runs_page(state: &AppState, tenant_id: Uuid, q: RunQuery) -> ApiResult<Page<RunView>> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let status = match q.status.as_deref() {
        Some(s) => Some(
            s.parse::<RunStatus>()
                .map_err(|e| domain::Error::invalid("status", e))?,
        ),
        None => None,
    };
    let labels = match q.label.as_deref() {
        Some(l) => {
            let (k, v) = l
                .split_once(':')
                .ok_or_else(|| domain::Error::invalid("label", "must be key:value"))?;
            Some(serde_json::json!({ k: v }))
        }
        None => None,
    };
    let filter = RunFilter {
        kind: q.kind,
        status,
        since: q.since,
        until: q.until,
        labels,
        parent_id: q.parent_id,
    };
    let rows = read::list(
        &state.db,
        &tenant_id.to_string(),
        &filter,
        page.after,
        page.fetch_limit(),
    )
    .await
    .map_err(queue_error)?;
    Ok(Page::from_rows(rows, page, |r: &engine::Run| r.id).map(RunView::from))
}

/// Starts the audit of a read of the runs API (every call its handlers see is audited): what
/// was asked now; how it ended with [`Pending::finish`] and [`ended`]. The entry goes through
/// the batched writer of reads, so the response never waits for an insert.
async fn audit_read(
    state: &AppState,
    ctx: &TenantCtx<perm::ViewObservability>,
    action: &str,
    target: Option<Uuid>,
    asked: &Value,
) -> Pending {
    let actor = ctx.actor();
    let mut entry = Entry::new(Some(ctx.tenant_id()), &actor, action, "run").new_value(asked);
    if let Some(id) = target {
        entry = entry.target(id);
    }
    state.read_audit.begin(entry.capture()).await
}

/// How a call ended, for its audit entry: `status`, and the error's `code`.
fn ended<T>(result: &ApiResult<T>, details: &mut Value) {
    match result {
        Ok(_) => details["status"] = 200.into(),
        Err(e) => {
            details["status"] = e.status.as_u16().into();
            details["error"] = e.code.as_ref().into();
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepView {
    pub name: String,
    pub attempt: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    /// When it left `running` (absent while it runs).
    pub ended_at: Option<DateTime<Utc>>,
    /// `running`, `succeeded`, `failed`, `cancelled`, `retried` (failed or lost its worker, then
    /// queued again: see `error`), `parked` (waits for a signal, a time or its children) or
    /// `released` (given back unfinished by a draining worker).
    pub outcome: String,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunView,
    /// Completed (checkpointed) steps, in order.
    pub steps: Vec<StepView>,
    /// Every attempt so far, oldest first, with its outcome and error.
    pub attempts: Vec<AttemptView>,
    /// Children by status (a bulk operation's per-child outcome summary).
    pub children: std::collections::BTreeMap<String, i64>,
}

/// One run with its steps, attempts (outcome and error of each) and children.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "runs", security(("bearer" = [])),
    params(("run_id" = Uuid, Path, description = "The run's id")),
    responses((status = 200, body = RunDetail), (status = 404, body = Problem)))]
pub async fn get_run(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiPath(run_id): ApiPath<Uuid>,
) -> ApiResult<Json<RunDetail>> {
    let asked = serde_json::json!({});
    let audit = audit_read(&state, &ctx, "run.viewed", Some(run_id), &asked).await;
    let result = run_detail(&state, ctx.tenant_id(), run_id).await;
    audit.finish(|d| ended(&result, d));
    result.map(Json)
}

async fn run_detail(state: &AppState, tenant_id: Uuid, run_id: Uuid) -> ApiResult<RunDetail> {
    let run = queue::get(&state.db, &tenant_id.to_string(), run_id)
        .await
        .map_err(queue_error)?;
    let steps = read::steps(&state.db, run_id).await.map_err(queue_error)?;
    let attempts = read::attempts(&state.db, run_id)
        .await
        .map_err(queue_error)?;
    let children = read::children(&state.db, run_id)
        .await
        .map_err(queue_error)?;
    Ok(RunDetail {
        run: run.into(),
        steps: steps
            .into_iter()
            .map(|s| StepView {
                name: s.name,
                attempt: s.attempt,
                started_at: s.started_at,
                completed_at: s.completed_at,
            })
            .collect(),
        attempts: attempts
            .into_iter()
            .map(|a| AttemptView {
                attempt: a.attempt,
                started_at: a.started_at,
                ended_at: a.ended_at,
                outcome: a.outcome,
                error: a.error,
            })
            .collect(),
        children: children.into_iter().collect(),
    })
}

/// Request cancellation. A run that has not started is cancelled at once; a running one stops
/// between steps (long steps watch for it) and runs its compensation.
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/cancel", tag = "runs", security(("bearer" = [])),
    params(("run_id" = Uuid, Path, description = "The run's id")),
    responses((status = 202, body = RunView), (status = 403, description = "The run's kind is cancelled through its own API (`cancel_not_accepted`)", body = Problem), (status = 404, body = Problem),
        (status = 409, description = "Already finished", body = Problem)))]
pub async fn cancel_run(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::OperateRuns>,
    ApiPath(run_id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let current = queue::get(&state.db, &ctx.tenant_id().to_string(), run_id)
        .await
        .map_err(queue_error)?;
    if !jobs::registry(&state.jobs).accepts_api_cancel(&current.kind) {
        return Err(ApiError::forbidden(
            "cancel_not_accepted",
            format!(
                "runs of kind `{}` are cancelled through their own API{}",
                current.kind,
                own_api(&current.kind)
            ),
        ));
    }
    let mut tx = state.db.begin().await?;
    let run = queue::request_cancel(&mut tx, &ctx.tenant_id().to_string(), run_id)
        .await
        .map_err(queue_error)?;
    Entry::new(
        Some(ctx.tenant_id()),
        &ctx.actor(),
        "run.cancel_requested",
        "run",
    )
    .target(run_id)
    .new_value(&serde_json::json!({"kind": run.kind, "status": run.status()}))
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(run.into())))
}

/// Retry a failed run: it resumes from its checkpoints with a fresh retry budget.
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/retry", tag = "runs", security(("bearer" = [])),
    params(("run_id" = Uuid, Path, description = "The run's id")),
    responses((status = 202, body = RunView), (status = 403, description = "A production restore: admins only", body = Problem),
        (status = 404, body = Problem), (status = 409, description = "Not failed", body = Problem)))]
pub async fn retry_run(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::OperateRuns>,
    ApiPath(run_id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let current = queue::get(&state.db, &ctx.tenant_id().to_string(), run_id)
        .await
        .map_err(queue_error)?;
    check_retry_allowed(&state, &ctx.tenant, &current).await?;
    let mut tx = state.db.begin().await?;
    let run = queue::retry(&mut tx, &ctx.tenant_id().to_string(), run_id)
        .await
        .map_err(queue_error)?;
    Entry::new(Some(ctx.tenant_id()), &ctx.actor(), "run.retried", "run")
        .target(run_id)
        .new_value(&serde_json::json!({"kind": run.kind}))
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(run.into())))
}

/// Where a kind's own API does what the generic runs API refuses for it (the end of an error
/// message; empty when there is nothing to point to).
fn own_api(kind: &str) -> &'static str {
    if kind == <jobs::promotion::Promote as engine::Job>::KIND {
        ": use POST /api/v1/promotions/{id}/approve, /reject or /cancel (which applies before the promotion starts writing)"
    } else {
        ""
    }
}

/// What retrying a run takes beyond `OperateRuns`: a restore writes into environments, and only
/// an admin restores production (the restore endpoints' rule, which a retry must not get around).
async fn check_retry_allowed(
    state: &AppState,
    tenant: &crate::auth::TenantAccess,
    run: &queue::Run,
) -> ApiResult<()> {
    use engine::Job;
    let targets: Vec<&Value> = match run.kind.as_str() {
        jobs::backup::Restore::KIND => vec![&run.input["environment_id"]],
        jobs::snapshot::BulkRestore::KIND => run.input["items"]
            .as_array()
            .map(|items| items.iter().map(|i| &i["environment_id"]).collect())
            .unwrap_or_default(),
        _ => return Ok(()),
    };
    for target in targets {
        let env = match target.as_str().and_then(|s| s.parse::<Uuid>().ok()) {
            Some(id) => domain::environments::get(&state.db, tenant.id, id)
                .await
                .ok(),
            None => None,
        };
        match env {
            Some(env) => crate::routes::snapshots::check_restore_allowed(&env, tenant.role)?,
            // Gone or unreadable: only an admin may decide.
            None if tenant.role != domain::Role::Admin => {
                return Err(ApiError::forbidden(
                    "admin_only",
                    "only an admin may retry this restore",
                ));
            }
            None => {}
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    /// The signal's name, e.g. `approval`.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Any JSON the waiting run receives.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub payload: Value,
}

impl Validate for SignalRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        Validator::new().text("name", &self.name, 1, 100).finish()
    }
}

/// Send a signal to a run. Stored: a run that waits for it later still receives it.
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/signals", tag = "runs", security(("bearer" = [])),
    params(("run_id" = Uuid, Path, description = "The run's id")),
    request_body = SignalRequest,
    responses((status = 202, description = "Delivered"), (status = 404, body = Problem),
        (status = 403, description = "The run's kind does not take this signal here (`signal_not_accepted`)", body = Problem),
        (status = 409, description = "The run has finished", body = Problem), (status = 422, body = Problem)))]
pub async fn signal_run(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::OperateRuns>,
    ApiPath(run_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<SignalRequest>,
) -> ApiResult<StatusCode> {
    let run = queue::get(&state.db, &ctx.tenant_id().to_string(), run_id)
        .await
        .map_err(queue_error)?;
    if !jobs::registry(&state.jobs).accepts_api_signal(&run.kind, &req.name) {
        // Refused, and recorded: someone tried to decide a run's wait without its own checks.
        let mut tx = state.db.begin().await?;
        Entry::new(
            Some(ctx.tenant_id()),
            &ctx.actor(),
            "run.signal_refused",
            "run",
        )
        .target(run_id)
        .new_value(&serde_json::json!({"signal": req.name, "kind": run.kind}))
        .record(&mut *tx)
        .await?;
        tx.commit().await?;
        return Err(ApiError::forbidden(
            "signal_not_accepted",
            format!(
                "runs of kind `{}` do not take the signal `{}` through this API{}",
                run.kind,
                req.name,
                own_api(&run.kind)
            ),
        ));
    }
    let mut tx = state.db.begin().await?;
    queue::signal(
        &mut tx,
        &ctx.tenant_id().to_string(),
        run_id,
        &req.name,
        &req.payload,
    )
    .await
    .map_err(queue_error)?;
    Entry::new(Some(ctx.tenant_id()), &ctx.actor(), "run.signalled", "run")
        .target(run_id)
        .new_value(&serde_json::json!({"signal": req.name}))
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::ACCEPTED)
}

/// The resume position a stream request names, as sent, with the field that carried it:
/// `Last-Event-ID` (what browsers send when they reconnect) when present, else `?after=`.
fn resume_source<'a>(
    headers: &'a HeaderMap,
    after: Option<&'a str>,
) -> Option<(&'static str, Cow<'a, str>)> {
    match headers.get("last-event-id") {
        Some(v) => Some(("Last-Event-ID", String::from_utf8_lossy(v.as_bytes()))),
        None => after.map(|a| ("after", Cow::Borrowed(a))),
    }
}

/// Where a stream resumes: an event id this API sent (`<transaction>-<sequence>`), refused when
/// it names a position this server has not reached (an id from before the database was
/// restored into another server): a stream resumed there would wait forever.
async fn resume_point(
    db: &sqlx::PgPool,
    headers: &HeaderMap,
    after: Option<&str>,
) -> Result<Option<read::Cursor>, ApiError> {
    let Some((field, raw)) = resume_source(headers, after) else {
        return Ok(None);
    };
    let cursor = raw
        .parse::<read::Cursor>()
        .map_err(|()| domain::Error::invalid(field, "must be an event id this API sent"))?;
    if cursor.tx >= read::unassigned(db).await.map_err(queue_error)? {
        return Err(domain::Error::invalid(
            field,
            "names a position this server has not reached (an id from before a restore?): reconnect without it",
        )
        .into());
    }
    Ok(Some(cursor))
}

#[derive(Debug, Deserialize, Serialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this event id (the `Last-Event-ID` header takes precedence).
    pub after: Option<String>,
}

const BATCH: i64 = 500;

/// A comment line sent when a stream has been quiet this long, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The SSE response for a subscriber's channel of frames. Frames are written as the follower
/// sends them (each send is one chunk: all a batch holds for this subscriber).
fn stream_of(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let chunk = match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return None,
            Err(_) => Bytes::from_static(b":keep-alive\n\n"),
        };
        Some((Ok::<_, Infallible>(chunk), rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// How a follower's read of the table ended.
enum Read {
    /// Everything up to the bound was sent.
    Done,
    /// The database did not answer; nothing past our position was assumed.
    Failed,
    /// The client left.
    ClientGone,
}

/// What a stream delivers: one run's events, or a namespace's state changes (with counts).
#[derive(Clone, Copy)]
enum Scope {
    Run(Uuid),
    Tenant,
}

impl Scope {
    fn wants(self, e: &read::Event) -> bool {
        match self {
            Scope::Run(run) => e.run_id == run,
            Scope::Tenant => e.kind == "state",
        }
    }
}

/// Feeds one subscriber: catches up from the table, then follows the hub's batches, re-reading
/// the table whenever it finds a gap. Ends when the client leaves, or (run streams) once the
/// run has finished and everything was sent.
/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

struct Follower {
    db: sqlx::PgPool,
    namespace: String,
    scope: Scope,
    last: read::Cursor,
    finished: bool,
    tx: mpsc::Sender<Bytes>,
    /// Safety net: the subscriber re-reads its position this often even without news.
    poll: Duration,
    /// Who opened the stream: it ends when their session or key is revoked or expires.
    principal: Arc<crate::auth::Principal>,
    revocations: tokio::sync::broadcast::Receiver<crate::auth::Invalidation>,
}

impl Follower {
    /// Sends the frames of `events` not yet sent (`frames`: theirs, when already built) as one
    /// chunk; false when the client has left.
    async fn send(&mut self, events: &[read::Event], frames: Option<&[Bytes]>) -> bool {
        let mut parts = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if e.cursor() <= self.last || !self.scope.wants(e) {
                continue;
            }
            if e.kind == "state" && matches!(self.scope, Scope::Run(_)) {
                self.finished = e.data["status"]
                    .as_str()
                    .and_then(|s| s.parse::<RunStatus>().ok())
                    .is_some_and(RunStatus::is_terminal);
            }
            parts.push(
                frames
                    .and_then(|f| f.get(i))
                    .cloned()
                    .unwrap_or_else(|| crate::events::frame(e)),
            );
            self.last = e.cursor();
        }
        let chunk = match parts.len() {
            0 => return true,
            1 => parts.swap_remove(0),
            _ => Bytes::from(parts.concat()),
        };
        self.tx.send(chunk).await.is_ok()
    }

    /// Sends the tenant stream's counts (`frame`: the batch's, else read now).
    async fn counts(&self, frame: Option<&Bytes>) -> bool {
        if !matches!(self.scope, Scope::Tenant) {
            return true;
        }
        let frame = match frame {
            Some(f) => f.clone(),
            None => crate::events::counts_frame(
                &read::active_counts(&self.db, &self.namespace)
                    .await
                    .map(|c| c.into_iter().collect())
                    .unwrap_or_default(),
            ),
        };
        self.tx.send(frame).await.is_ok()
    }

    /// Reads the table from our position until it has nothing more settled.
    async fn catch_up(&mut self) -> bool {
        // A failed read is tried again on the next wake-up.
        !matches!(self.read_on(read::Upto::Settled).await, Read::ClientGone)
    }

    /// Sends what the table holds from our position up to `upto`.
    async fn read_on(&mut self, upto: read::Upto) -> Read {
        loop {
            let batch = match self.scope {
                Scope::Run(run) => {
                    read::run_events(&self.db, &self.namespace, run, self.last, upto, BATCH).await
                }
                Scope::Tenant => {
                    read::namespace_events(&self.db, &self.namespace, self.last, upto, true, BATCH)
                        .await
                }
            };
            let Ok(batch) = batch else {
                return Read::Failed;
            };
            if !self.send(&batch, None).await {
                return Read::ClientGone;
            }
            if i64::try_from(batch.len()).unwrap_or(0) < BATCH {
                return Read::Done;
            }
        }
    }

    /// Ends the stream because its credentials no longer hold: the client must sign in again
    /// (and can resume from its last event id).
    async fn end_because(&self, reason: &str) {
        let frame = format!("event: end\ndata: {{\"reason\":\"{reason}\"}}\n\n");
        let _ = self.tx.send(Bytes::from(frame)).await;
    }

    async fn run(mut self, mut sub: crate::events::Subscription) {
        if !self.catch_up().await || !self.counts(None).await {
            return;
        }
        loop {
            if self.finished {
                let _ = self
                    .tx
                    .send(Bytes::from_static(b"event: end\ndata: {}\n\n"))
                    .await;
                return;
            }
            let expires = self.principal.expires_at.map(|at| {
                let left = (at - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::time::Instant::now() + left
            });
            let msg = tokio::select! {
                () = self.tx.closed() => return,
                () = tokio::time::sleep(self.poll) => None,
                m = sub.rx.recv() => Some(m),
                () = sleep_until_some(expires) => {
                    self.end_because("expired").await;
                    return;
                }
                r = self.revocations.recv() => {
                    match r {
                        Ok(inv) if self.principal.revoked_by(inv) => {
                            self.end_because("revoked").await;
                            return;
                        }
                        _ => continue,
                    }
                }
            };
            let ok = match msg {
                Some(Ok(Message::Batch(b))) if b.ns == self.namespace => {
                    if b.from == self.last && matches!(self.scope, Scope::Tenant) {
                        // Right where we are (the common case): the batch's own chunk.
                        self.last = b.to;
                        match &b.tenant {
                            Some(chunk) => self.tx.send(chunk.clone()).await.is_ok(),
                            None => true,
                        }
                    } else if b.from <= self.last {
                        let sent = self.send(&b.events, Some(&b.frames)).await;
                        if b.to > self.last {
                            self.last = b.to;
                        }
                        sent && (b.counts.is_none() || self.counts(b.counts.as_ref()).await)
                    } else {
                        // A gap between our position and this batch: read it from the table up
                        // to the batch's start (final: the hub read past it), then take the
                        // batch. If the read fails, our position stays where it is and the
                        // next read resumes there: later, never skipped.
                        match self.read_on(read::Upto::Cursor(b.from)).await {
                            Read::ClientGone => false,
                            Read::Failed => true,
                            Read::Done => {
                                let sent = self.send(&b.events, Some(&b.frames)).await;
                                if b.to > self.last {
                                    self.last = b.to;
                                }
                                sent && self.counts(b.counts.as_ref()).await
                            }
                        }
                    }
                }
                Some(Ok(Message::Batch(_))) => true,
                Some(Ok(Message::Reread(ns))) => ns != self.namespace || self.catch_up().await,
                Some(Ok(Message::Resync) | Err(broadcast::error::RecvError::Lagged(_))) | None => {
                    self.catch_up().await
                }
                Some(Err(broadcast::error::RecvError::Closed)) => return,
            };
            if !ok {
                return;
            }
        }
    }
}

/// A run's events as Server-Sent Events (`state`, `progress`, `log`), each with its id.
/// Reconnecting with `Last-Event-ID` resumes exactly after that event. The stream ends with an
/// `end` event once the run has finished and every event was sent.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/events", tag = "runs", security(("bearer" = [])),
    params(("run_id" = Uuid, Path, description = "The run's id"), StreamQuery),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 404, body = Problem)))]
pub async fn run_events(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiPath(run_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let asked = serde_json::json!({ "after": asked_resume(&headers, &q) });
    let audit = audit_read(&state, &ctx, "run.events_opened", Some(run_id), &asked).await;
    let result = open_run_events(
        &state,
        &ctx.principal,
        ctx.tenant_id(),
        run_id,
        &q,
        &headers,
    )
    .await;
    audit.finish(|d| ended(&result, d));
    result
}

/// Where a stream request asked to resume, as it asked (for the audit).
fn asked_resume(headers: &HeaderMap, q: &StreamQuery) -> Option<String> {
    resume_source(headers, q.after.as_deref()).map(|(_, raw)| raw.into_owned())
}

async fn open_run_events(
    state: &AppState,
    principal: &Arc<crate::auth::Principal>,
    tenant_id: Uuid,
    run_id: Uuid,
    q: &StreamQuery,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let namespace = tenant_id.to_string();
    queue::get(&state.db, &namespace, run_id)
        .await
        .map_err(queue_error)?;
    let last = resume_point(&state.db, headers, q.after.as_deref())
        .await?
        .unwrap_or_default();
    // Subscribe before reading, so nothing committed in between is missed.
    let sub = state.events.subscribe(&namespace);
    let (tx, rx) = mpsc::channel(64);
    let follower = Follower {
        db: state.db.clone(),
        namespace,
        scope: Scope::Run(run_id),
        last,
        finished: false,
        tx,
        poll: state.config.event_poll * 5 / 2,
        principal: Arc::clone(principal),
        revocations: state.auth_cache.revocations(),
    };
    tokio::spawn(follower.run(sub));
    Ok(stream_of(rx))
}

/// The tenant's run state changes as Server-Sent Events (`state`, with ids), each burst followed
/// by a `counts` event with the unfinished runs by status (SSE-007). Without `Last-Event-ID`
/// the stream starts now.
#[utoipa::path(get, path = "/api/v1/events", tag = "runs", security(("bearer" = [])), params(StreamQuery),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream")))]
pub async fn tenant_events(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiQuery(q): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let asked = serde_json::json!({ "after": asked_resume(&headers, &q) });
    let audit = audit_read(&state, &ctx, "run.feed_opened", None, &asked).await;
    let result = open_tenant_events(&state, &ctx.principal, ctx.tenant_id(), &q, &headers).await;
    audit.finish(|d| ended(&result, d));
    result
}

async fn open_tenant_events(
    state: &AppState,
    principal: &Arc<crate::auth::Principal>,
    tenant_id: Uuid,
    q: &StreamQuery,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let namespace = tenant_id.to_string();
    let sub = state.events.subscribe(&namespace);
    let last = match resume_point(&state.db, headers, q.after.as_deref()).await? {
        Some(c) => c,
        None => read::last_cursor(&state.db, &namespace)
            .await
            .map_err(queue_error)?,
    };
    let (tx, rx) = mpsc::channel(64);
    let follower = Follower {
        db: state.db.clone(),
        namespace,
        scope: Scope::Tenant,
        last,
        finished: false,
        tx,
        poll: state.config.event_poll * 5 / 2,
        principal: Arc::clone(principal),
        revocations: state.auth_cache.revocations(),
    };
    tokio::spawn(follower.run(sub));
    Ok(stream_of(rx))
}
