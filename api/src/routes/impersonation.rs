//! Impersonation and the support console (PLAT-005..010, PLAT-012..014): a platform admin finds
//! a tenant's user and acts as them, for a stated reason and a bounded time, every step audited.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use domain::audit::Entry;
use domain::impersonation::{self, Filter, Impersonation, NewImpersonation, TenantUser};
use domain::page::{Page, PageRequest};
use domain::tenancy;
use domain::validate::Validator;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{Invalidation, PlatformAdmin, publish};
use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};

const DEFAULT_MINUTES: u32 = 60;
const MAX_MINUTES: u32 = 240;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// A substring of the email or name, or a user id.
    pub q: Option<String>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// A tenant's users with their roles, searchable (PLAT-012, PLAT-014); each says whether it can
/// be impersonated (PLAT-013).
#[utoipa::path(get, path = "/api/v1/platform/tenants/{tenant_id}/users", tag = "platform", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "The tenant's id"), UserQuery),
    responses((status = 200, body = Page<TenantUser>), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn tenant_users(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiPath(tenant_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult<Json<Page<TenantUser>>> {
    tenancy::tenant(&state.db, tenant_id).await?;
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let query = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    Ok(Json(
        impersonation::tenant_users(&state.db, tenant_id, query, page).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartImpersonationRequest {
    pub tenant_id: Uuid,
    /// A member of that tenant who is not a platform admin.
    pub user_id: Uuid,
    /// Why (a ticket, what the customer asked): kept with the impersonation and in the
    /// tenant's audit log.
    #[schema(min_length = 10, max_length = 500)]
    pub reason: String,
    /// How long the impersonation lasts: 5-240 minutes (default 60).
    #[schema(minimum = 5, maximum = 240)]
    pub minutes: Option<u32>,
}

impl Validate for StartImpersonationRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("reason", self.reason.trim(), 10, 500);
        if self
            .minutes
            .is_some_and(|m| !(5..=MAX_MINUTES).contains(&m))
        {
            v.error("minutes", format!("must be between 5 and {MAX_MINUTES}"));
        }
        v.finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImpersonationStarted {
    pub impersonation: Impersonation,
    /// A session token acting as the user in the tenant (their role, no platform rights); shown
    /// once. `POST /api/v1/auth/logout` with it, or `…/end`, ends the impersonation.
    pub token: String,
}

/// Start impersonating a tenant's user (PLAT-005). Platform admins cannot be impersonated
/// (PLAT-009). The start is audited in the tenant's log, with the reason (PLAT-007); every change
/// made with the token names the admin as impersonator (PLAT-008).
#[utoipa::path(post, path = "/api/v1/platform/impersonations", tag = "platform", security(("bearer" = [])),
    request_body = StartImpersonationRequest,
    responses((status = 201, body = ImpersonationStarted), (status = 403, body = Problem),
        (status = 404, description = "No such tenant, or the user is not its member", body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn start_impersonation(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiJson(req): ApiJson<StartImpersonationRequest>,
) -> ApiResult<(StatusCode, Json<ImpersonationStarted>)> {
    let minutes = req.minutes.unwrap_or(DEFAULT_MINUTES);
    let mut tx = state.db.begin().await?;
    tenancy::tenant(&mut *tx, req.tenant_id).await?;
    let (token, started) = impersonation::start(
        &mut tx,
        NewImpersonation {
            admin_user_id: admin.user_id,
            target_user_id: req.user_id,
            tenant_id: req.tenant_id,
            reason: req.reason.trim(),
            ttl: chrono::Duration::minutes(i64::from(minutes)),
            ip: admin.meta.ip.as_deref(),
            user_agent: admin.meta.user_agent.as_deref(),
        },
    )
    .await?;
    Entry::new(
        Some(req.tenant_id),
        &admin.actor(),
        "platform.impersonation_started",
        "user",
    )
    .target(req.user_id)
    .new_value(
        &json!({"impersonation_id": started.id, "user": started.target_email,
        "reason": started.reason, "expires_at": started.expires_at}),
    )
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(ImpersonationStarted {
            impersonation: started,
            token: token.plaintext,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImpersonationQuery {
    /// Only running (true) or only ended or expired (false) ones.
    pub active: Option<bool>,
    pub admin_user_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Impersonations, newest first: who, as whom, why, since when, and how each ended (PLAT-010).
#[utoipa::path(get, path = "/api/v1/platform/impersonations", tag = "platform", security(("bearer" = [])),
    params(ImpersonationQuery),
    responses((status = 200, body = Page<Impersonation>), (status = 403, body = Problem)))]
pub async fn list_impersonations(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiQuery(q): ApiQuery<ImpersonationQuery>,
) -> ApiResult<Json<Page<Impersonation>>> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let filter = Filter {
        active: q.active,
        admin_user_id: q.admin_user_id,
        target_user_id: q.user_id,
        tenant_id: q.tenant_id,
    };
    Ok(Json(impersonation::list(&state.db, &filter, page).await?))
}

/// One impersonation.
#[utoipa::path(get, path = "/api/v1/platform/impersonations/{impersonation_id}", tag = "platform", security(("bearer" = [])),
    params(("impersonation_id" = Uuid, Path, description = "The impersonation's id")),
    responses((status = 200, body = Impersonation), (status = 404, body = Problem)))]
pub async fn get_impersonation(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Impersonation>> {
    Ok(Json(impersonation::get(&state.db, id).await?))
}

/// End an impersonation now (PLAT-006): its token stops working on every server at once. Any
/// platform admin may end any impersonation; ending one that has ended is a no-op.
#[utoipa::path(post, path = "/api/v1/platform/impersonations/{impersonation_id}/end", tag = "platform", security(("bearer" = [])),
    params(("impersonation_id" = Uuid, Path, description = "The impersonation's id")),
    responses((status = 200, body = Impersonation), (status = 404, body = Problem)))]
pub async fn end_impersonation(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Impersonation>> {
    let label = admin.actor().label;
    let ended = end(&state, id, &label, &admin.actor()).await?;
    Ok(Json(ended))
}

/// Ends impersonation `id` (by `ended_by`), revokes its session everywhere and audits it in
/// the tenant's log. Also the sign-out path of an impersonation token.
pub(crate) async fn end(
    state: &AppState,
    id: Uuid,
    ended_by: &str,
    actor: &domain::audit::Actor,
) -> ApiResult<Impersonation> {
    let mut tx = state.db.begin().await?;
    let (before, ended, session) = impersonation::end(&mut tx, id, ended_by).await?;
    if ended {
        Entry::new(
            Some(before.tenant_id),
            actor,
            "platform.impersonation_ended",
            "user",
        )
        .target(before.target_user_id)
        .new_value(&json!({"impersonation_id": id, "user": before.target_email,
            "ended_by": ended_by}))
        .record(&mut *tx)
        .await?;
    }
    publish(&mut *tx, Invalidation::Session(session)).await?;
    let after = impersonation::get(&mut *tx, id).await?;
    tx.commit().await?;
    state.auth_cache.evict(Invalidation::Session(session));
    Ok(after)
}
