//! The audit log query (SEC-010), for tenant admins.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use domain::audit::{self, Record};
use domain::entitlements::Feature;
use domain::page::Page;
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiResult, Problem};
use crate::extract::ApiQuery;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Exact action, e.g. `member.role_changed`.
    pub action: Option<String>,
    /// Actions starting with this, e.g. `api_key.`.
    pub action_prefix: Option<String>,
    pub actor_user_id: Option<Uuid>,
    pub actor_api_key_id: Option<Uuid>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Provider context, e.g. `n8n`.
    pub provider: Option<String>,
    /// From this instant (inclusive), RFC 3339.
    pub since: Option<DateTime<Utc>>,
    /// Until this instant (exclusive), RFC 3339.
    pub until: Option<DateTime<Utc>>,
    /// Free text matched against actor, action and target.
    pub q: Option<String>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The tenant's audit trail, newest first, filtered.
#[utoipa::path(get, path = "/api/v1/audit-logs", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = Page<Record>), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn list_audit_logs(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewAuditLogs>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<Record>>> {
    ctx.require(&state.db, Feature::AuditLogs, None, "audit_log.list")
        .await?;
    let page = domain::page::PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let filter = audit::Filter {
        action: q.action,
        action_prefix: q.action_prefix,
        actor_user_id: q.actor_user_id,
        actor_api_key_id: q.actor_api_key_id,
        target_type: q.target_type,
        target_id: q.target_id,
        provider: q.provider,
        since: q.since,
        until: q.until,
        search: q.q,
    };
    Ok(Json(
        audit::list(&state.db, ctx.tenant_id(), &filter, page).await?,
    ))
}
