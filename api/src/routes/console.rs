//! The platform admin console's numbers and notes (PLAT-003, ADMIN-003, ADMIN-004,
//! ADMIN-009..012): the platform in numbers, each tenant's usage, the heaviest tenants, tenants
//! at their limits, support notes, and the audit trail across tenants.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use domain::audit::{self, Entry, Record};
use domain::page::{Page, PageRequest};
use domain::tenancy;
use domain::usage::{
    self, AtLimit, Metric, PlatformUsage, RetentionOverrides, TenantNote, TenantUsage,
};
use domain::validate::Validator;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::PlatformAdmin;
use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};

/// The platform in numbers (PLAT-003, ADMIN-009).
#[utoipa::path(get, path = "/api/v1/platform/overview", tag = "platform", security(("bearer" = [])),
    responses((status = 200, body = PlatformUsage), (status = 403, body = Problem)))]
pub async fn overview(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<PlatformUsage>> {
    Ok(Json(usage::platform(&state.db).await?))
}

/// One tenant's usage: what it holds and what it did in the last 30 days (ADMIN-004).
#[utoipa::path(get, path = "/api/v1/platform/tenants/{tenant_id}/usage", tag = "platform", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "The tenant's id")),
    responses((status = 200, body = TenantUsage), (status = 404, body = Problem)))]
pub async fn tenant_usage(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiPath(tenant_id): ApiPath<Uuid>,
) -> ApiResult<Json<TenantUsage>> {
    Ok(Json(usage::tenant(&state.db, tenant_id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopQuery {
    #[param(inline)]
    pub metric: Metric,
    /// 1-100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// The heaviest tenants by a metric (ADMIN-010).
#[utoipa::path(get, path = "/api/v1/platform/usage/top", tag = "platform", security(("bearer" = [])),
    params(TopQuery),
    responses((status = 200, body = Vec<TenantUsage>), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn top_tenants(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiQuery(q): ApiQuery<TopQuery>,
) -> ApiResult<Json<Vec<TenantUsage>>> {
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(domain::Error::invalid("limit", "must be between 1 and 100").into());
    }
    Ok(Json(
        usage::top(&state.db, q.metric, i64::from(limit)).await?,
    ))
}

/// Tenants at or over a limit: seats (members and open invitations against the tenant's own
/// seat limit or its plan's) or environments (per provider, against the tenant's own limit or its
/// plan's) (ADMIN-011).
#[utoipa::path(get, path = "/api/v1/platform/usage/at-limit", tag = "platform", security(("bearer" = [])),
    responses((status = 200, body = Vec<AtLimit>), (status = 403, body = Problem)))]
pub async fn at_limit(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<Vec<AtLimit>>> {
    Ok(Json(
        usage::at_limit(
            &mut *state.db.acquire().await?,
            state.config.max_environments,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotesQuery {
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// A tenant's support notes, newest first (ADMIN-003). Platform admins only: tenants never
/// see them.
#[utoipa::path(get, path = "/api/v1/platform/tenants/{tenant_id}/notes", tag = "platform", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "The tenant's id"), NotesQuery),
    responses((status = 200, body = Page<TenantNote>), (status = 404, body = Problem)))]
pub async fn list_notes(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiPath(tenant_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<NotesQuery>,
) -> ApiResult<Json<Page<TenantNote>>> {
    tenancy::tenant(&state.db, tenant_id).await?;
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    Ok(Json(usage::notes(&state.db, tenant_id, page).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    #[schema(min_length = 1, max_length = 5000)]
    pub body: String,
}

impl Validate for NoteRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.multiline("body", self.body.trim(), 1, 5000);
        v.finish()
    }
}

/// Add a support note to a tenant (ADMIN-003).
#[utoipa::path(post, path = "/api/v1/platform/tenants/{tenant_id}/notes", tag = "platform", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "The tenant's id")),
    request_body = NoteRequest,
    responses((status = 201, body = TenantNote), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn add_note(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(tenant_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<NoteRequest>,
) -> ApiResult<(StatusCode, Json<TenantNote>)> {
    let actor = admin.actor();
    let mut tx = state.db.begin().await?;
    tenancy::tenant(&mut *tx, tenant_id).await?;
    let note = usage::add_note(
        &mut *tx,
        tenant_id,
        req.body.trim(),
        admin.user_id,
        &actor.label,
    )
    .await?;
    // In the platform's trail, not the tenant's: the notes are internal.
    Entry::new(None, &actor, "platform.tenant_note_added", "tenant")
        .target(tenant_id)
        .new_value(&json!({"note_id": note.id}))
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(note)))
}

/// Delete a support note.
#[utoipa::path(delete, path = "/api/v1/platform/tenants/{tenant_id}/notes/{note_id}", tag = "platform", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "The tenant's id"),
        ("note_id" = Uuid, Path, description = "The note's id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)))]
pub async fn delete_note(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath((tenant_id, note_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let note = usage::delete_note(&mut *tx, tenant_id, note_id).await?;
    Entry::new(
        None,
        &admin.actor(),
        "platform.tenant_note_deleted",
        "tenant",
    )
    .target(tenant_id)
    .old(&note)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlatformAuditQuery {
    /// One tenant's entries; omit for every tenant's and the platform's own.
    pub tenant_id: Option<Uuid>,
    pub action: Option<String>,
    pub action_prefix: Option<String>,
    pub actor_user_id: Option<Uuid>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Free text matched against actor, action and target.
    pub q: Option<String>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The audit trail across tenants, newest first (ADMIN-012).
#[utoipa::path(get, path = "/api/v1/platform/audit-logs", tag = "platform", security(("bearer" = [])),
    params(PlatformAuditQuery),
    responses((status = 200, body = Page<Record>), (status = 403, body = Problem)))]
pub async fn platform_audit_logs(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiQuery(q): ApiQuery<PlatformAuditQuery>,
) -> ApiResult<Json<Page<Record>>> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let filter = audit::Filter {
        action: q.action,
        action_prefix: q.action_prefix,
        actor_user_id: q.actor_user_id,
        actor_api_key_id: None,
        target_type: q.target_type,
        target_id: q.target_id,
        provider: None,
        since: q.since,
        until: q.until,
        search: q.q,
    };
    Ok(Json(
        audit::list_platform(&state.db, q.tenant_id, &filter, page).await?,
    ))
}

/// The retention in force, in days: a platform admin's override, else the server's setting.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Retention {
    /// What platform admins set (null: the server's setting applies).
    pub overrides: RetentionOverrides,
    /// The server's configuration (`WFO_RUN_RETENTION`, `WFO_EXECUTION_RETENTION`,
    /// `WFO_SNAPSHOT_RETENTION`, `WFO_READ_AUDIT_RETENTION`).
    pub defaults: RetentionOverrides,
    /// What applies.
    pub effective: RetentionOverrides,
}

fn days(d: std::time::Duration) -> Option<i32> {
    i32::try_from(d.as_secs() / 86_400).ok()
}

pub(crate) fn retention_view(state: &AppState, overrides: RetentionOverrides) -> Retention {
    let c = &state.config;
    let defaults = RetentionOverrides {
        runs_days: days(c.run_retention),
        executions_days: days(c.execution_retention),
        snapshots_days: days(c.snapshot_retention),
        read_audit_days: days(c.read_audit_retention),
    };
    Retention {
        overrides,
        defaults,
        effective: RetentionOverrides {
            runs_days: overrides.runs_days.or(defaults.runs_days),
            executions_days: overrides.executions_days.or(defaults.executions_days),
            snapshots_days: overrides.snapshots_days.or(defaults.snapshots_days),
            read_audit_days: overrides.read_audit_days.or(defaults.read_audit_days),
        },
    }
}

/// How long data is kept, platform-wide (ADMIN-016).
#[utoipa::path(get, path = "/api/v1/platform/retention", tag = "platform", security(("bearer" = [])),
    responses((status = 200, body = Retention), (status = 403, body = Problem)))]
pub async fn get_retention(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<Retention>> {
    let overrides = usage::retention(&state.db).await?;
    Ok(Json(retention_view(&state, overrides)))
}

impl Validate for RetentionOverrides {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        for (field, value) in [
            ("runs_days", self.runs_days),
            ("executions_days", self.executions_days),
            ("snapshots_days", self.snapshots_days),
            ("read_audit_days", self.read_audit_days),
        ] {
            if value.is_some_and(|d| !(1..=3650).contains(&d)) {
                v.error(field, "must be between 1 and 3650 days, or null");
            }
        }
        v.finish()
    }
}

/// Set how long data is kept (ADMIN-016): each field in days (1-3650), or null for the server's
/// setting. Applied by the next hourly prune. Audited in the platform's trail.
#[utoipa::path(put, path = "/api/v1/platform/retention", tag = "platform", security(("bearer" = [])),
    request_body = RetentionOverrides,
    responses((status = 200, body = Retention), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn put_retention(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiJson(req): ApiJson<RetentionOverrides>,
) -> ApiResult<Json<Retention>> {
    let actor = admin.actor();
    let mut tx = state.db.begin().await?;
    let before = usage::retention(&mut *tx).await?;
    usage::set_retention(&mut *tx, &req, &actor.label).await?;
    Entry::new(None, &actor, "platform.retention_changed", "platform")
        .old(&before)
        .new_value(&req)
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(retention_view(&state, req)))
}
