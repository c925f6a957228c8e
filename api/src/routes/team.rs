//! Team management (TEAM-001..006): members, roles, invitations.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use domain::audit::Entry;
use domain::entitlements::Feature;
use domain::invitations::{Invitation, InvitationStatus};
use domain::page::Page;
use domain::tenancy::Member;
use domain::validate::Validator;
use domain::{Role, invitations, tenancy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::PageQuery;
use crate::app::AppState;
use crate::auth::{Invalidation, TenantCtx, perm, publish};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};

/// The tenant's members, newest first.
#[utoipa::path(get, path = "/api/v1/team/members", tag = "team", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<Member>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_members(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewTeam>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Member>>> {
    Ok(Json(
        tenancy::list_members(&state.db, ctx.tenant_id(), q.page()?).await?,
    ))
}

/// One member.
#[utoipa::path(get, path = "/api/v1/team/members/{user_id}", tag = "team", security(("bearer" = [])),
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses((status = 200, body = Member), (status = 404, body = Problem)))]
pub async fn get_member(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewTeam>,
    ApiPath(user_id): ApiPath<Uuid>,
) -> ApiResult<Json<Member>> {
    Ok(Json(
        tenancy::member(&state.db, ctx.tenant_id(), user_id).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    pub role: Role,
}

impl Validate for UpdateMemberRequest {}

fn last_admin() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "last_admin",
        "a tenant needs at least one admin: make someone else admin first",
    )
}

/// The refusal of someone who already is a member (409 `already_member`).
pub(crate) fn already_member(email: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "already_member",
        format!("`{email}` is already a member of this tenant"),
    )
}

/// The refusal of a member beyond the plan's seats (409 `member_limit_reached`, TEAM-005),
/// logged as a refused feature (ENT-011). `tx`, which counted the seats, is rolled back first: it
/// holds the tenant's lock, which the log's foreign key would wait for.
pub(crate) async fn no_seat_left(
    state: &AppState,
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    asker: domain::entitlements::Asker<'_>,
    message: String,
) -> ApiResult<ApiError> {
    tx.rollback().await?;
    domain::entitlements::record_denial(&state.db, asker, Feature::Members, None).await?;
    Ok(ApiError::new(
        StatusCode::CONFLICT,
        "member_limit_reached",
        message,
    ))
}

/// Refuses (403 `feature_not_in_plan`, logged) giving someone `role` unless it is admin or the
/// tenant's plan includes role-based access (the PRD's plan table: not on Free, where every
/// member is an admin).
async fn require_roles<P>(
    state: &AppState,
    ctx: &TenantCtx<P>,
    role: Role,
    action: &str,
) -> ApiResult<()> {
    if role == Role::Admin {
        return Ok(());
    }
    ctx.require(&state.db, Feature::RoleBasedAccess, None, action)
        .await
}

/// Change a member's role (TEAM-002). Roles other than admin need a plan with role-based
/// access (403 `feature_not_in_plan`); members keep the roles they hold after a downgrade.
#[utoipa::path(patch, path = "/api/v1/team/members/{user_id}", tag = "team", security(("bearer" = [])),
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    request_body = UpdateMemberRequest,
    responses((status = 200, body = Member), (status = 404, body = Problem),
        (status = 403, description = "A role other than admin on a plan without role-based access", body = Problem),
        (status = 409, description = "Would leave the tenant without an admin", body = Problem)))]
pub async fn update_member(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageTeam>,
    ApiPath(user_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateMemberRequest>,
) -> ApiResult<Json<Member>> {
    let tenant_id = ctx.tenant_id();
    // Checked before the tenant is locked: a refusal is logged from another connection.
    let current = tenancy::member(&state.db, tenant_id, user_id).await?;
    if current.role != req.role {
        require_roles(&state, &ctx, req.role, "member.role_change").await?;
    }
    let mut tx = state.db.begin().await?;
    tenancy::lock_tenant(&mut *tx, tenant_id).await?;
    let before = tenancy::member(&mut *tx, tenant_id, user_id).await?;
    if before.role == Role::Admin
        && req.role != Role::Admin
        && tenancy::count_admins(&mut *tx, tenant_id).await? <= 1
    {
        return Err(last_admin());
    }
    tenancy::set_role(&mut *tx, tenant_id, user_id, req.role).await?;
    let after = tenancy::member(&mut *tx, tenant_id, user_id).await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "member.role_changed",
        "member",
    )
    .target(user_id)
    .old(&serde_json::json!({"role": before.role}))
    .new_value(&serde_json::json!({"role": after.role}))
    .record(&mut *tx)
    .await?;
    publish(&mut *tx, Invalidation::User(user_id)).await?;
    tx.commit().await?;
    state.auth_cache.evict(Invalidation::User(user_id));
    Ok(Json(after))
}

/// Remove a member from the tenant (TEAM-003). Their access ends at once.
#[utoipa::path(delete, path = "/api/v1/team/members/{user_id}", tag = "team", security(("bearer" = [])),
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem),
        (status = 409, description = "Would leave the tenant without an admin", body = Problem)))]
pub async fn remove_member(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageTeam>,
    ApiPath(user_id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    tenancy::lock_tenant(&mut *tx, tenant_id).await?;
    let before = tenancy::member(&mut *tx, tenant_id, user_id).await?;
    if before.role == Role::Admin && tenancy::count_admins(&mut *tx, tenant_id).await? <= 1 {
        return Err(last_admin());
    }
    tenancy::remove_member(&mut *tx, tenant_id, user_id).await?;
    Entry::new(Some(tenant_id), &ctx.actor(), "member.removed", "member")
        .target(user_id)
        .old(&before)
        .record(&mut *tx)
        .await?;
    publish(&mut *tx, Invalidation::User(user_id)).await?;
    tx.commit().await?;
    state.auth_cache.evict(Invalidation::User(user_id));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitationRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    pub role: Role,
}

/// The longest address mail can be delivered to (RFC 5321: a 256-character path less its angle
/// brackets), and the longest part before its `@`. The shared email check allows 320 (the
/// sign-in form's limit); an invitation is meant to be emailed, so it holds to these.
const MAX_EMAIL_LEN: usize = 254;
const MAX_LOCAL_PART_LEN: usize = 64;

impl Validate for CreateInvitationRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let email = self.email.trim();
        let mut v = Validator::new();
        v.email("email", email);
        let local = email.split_once('@').map_or(email, |(local, _)| local);
        // Past 320 the shared check has refused it already.
        if email.len() <= 320 && (email.len() > MAX_EMAIL_LEN || local.len() > MAX_LOCAL_PART_LEN) {
            v.error(
                "email",
                format!(
                    "must be at most {MAX_EMAIL_LEN} characters, at most {MAX_LOCAL_PART_LEN} before the @ (longer addresses cannot receive mail)"
                ),
            );
        }
        v.finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    #[serde(flatten)]
    pub invitation: Invitation,
    pub status: InvitationStatus,
}

impl From<Invitation> for InvitationView {
    fn from(invitation: Invitation) -> Self {
        Self {
            status: invitation.status(Utc::now()),
            invitation,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitationCreated {
    pub invitation: InvitationView,
    /// The single-use token; shown once.
    pub token: String,
    pub accept_url: String,
    /// Whether the link was emailed to the invitee (needs `WFO_SMTP_URL`); when not, hand the
    /// link over yourself.
    pub email_sent: bool,
    /// Why it was not emailed: email not configured, or what the mail server said.
    pub email_error: Option<String>,
}

/// Invite someone by email (TEAM-001). Returns the single-use link, shown once.
#[utoipa::path(post, path = "/api/v1/team/invitations", tag = "team", security(("bearer" = [])),
    request_body = CreateInvitationRequest,
    responses((status = 201, body = InvitationCreated),
        (status = 403, description = "A role other than admin on a plan without role-based access", body = Problem),
        (status = 409, description = "Already a member, already invited, or no seats left", body = Problem),
        (status = 422, body = Problem)))]
pub async fn create_invitation(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageTeam>,
    ApiJson(req): ApiJson<CreateInvitationRequest>,
) -> ApiResult<(StatusCode, Json<InvitationCreated>)> {
    // An invitation would let someone in after the impersonation ended.
    ctx.principal.refuse_impersonation("inviting people")?;
    require_roles(&state, &ctx, req.role, "invitation.create").await?;
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    let tenant = tenancy::lock_tenant(&mut *tx, tenant_id).await?;
    if let Some(user) = tenancy::user_by_email(&mut *tx, &req.email).await?
        && tenancy::member(&mut *tx, tenant_id, user.id).await.is_ok()
    {
        return Err(already_member(&user.email));
    }
    if let Some(limit) = domain::entitlements::member_limit(&mut tx, tenant_id).await?
        && tenancy::seats_used(&mut *tx, tenant_id).await? >= limit
    {
        let message = format!(
            "this tenant's plan allows {limit} members (invitations included): remove someone or upgrade"
        );
        return Err(no_seat_left(&state, tx, ctx.asker("invitation.create"), message).await?);
    }
    let ttl = chrono::Duration::from_std(state.config.invitation_ttl)
        .unwrap_or(chrono::Duration::days(7));
    let (token, invitation) = invitations::create(
        &mut tx,
        tenant_id,
        &req.email,
        req.role,
        ctx.principal.user_id(),
        ttl,
    )
    .await?;
    Entry::new(Some(tenant_id), &ctx.actor(), "invitation.created", "invitation")
        .target(invitation.id)
        .new_value(&serde_json::json!({"email": invitation.email, "role": invitation.role, "expires_at": invitation.expires_at}))
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    let accept_url = format!(
        "{}/invitations/accept#{}",
        state.config.public_url, token.plaintext
    );
    let email_error = email_invitation(
        &state,
        &tenant.name,
        &ctx.actor().label,
        &invitation,
        &accept_url,
    )
    .await
    .err();
    Ok((
        StatusCode::CREATED,
        Json(InvitationCreated {
            invitation: invitation.into(),
            token: token.plaintext,
            accept_url,
            email_sent: email_error.is_none(),
            email_error,
        }),
    ))
}

/// Emails the invitation link (TEAM-001) when email is configured; the link is never stored or
/// logged, so a failure here only means the admin hands it over.
async fn email_invitation(
    state: &AppState,
    tenant: &str,
    inviter: &str,
    invitation: &Invitation,
    accept_url: &str,
) -> Result<(), String> {
    if state.jobs.notify.mailer.is_none() {
        return Err("email is not configured on this server (WFO_SMTP_URL)".into());
    }
    let body = format!(
        "{inviter} invited you to join {tenant} on WorkflowOps as {role}.\n\n\
         Accept the invitation (the link works once, until {expires}):\n{accept_url}\n\n\
         If you did not expect this, ignore this email.\n",
        role = invitation.role,
        expires = invitation.expires_at.format("%Y-%m-%d %H:%M UTC"),
    );
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        jobs::notify::send_email(
            &state.jobs,
            std::slice::from_ref(&invitation.email),
            &format!("You are invited to {tenant} on WorkflowOps"),
            body,
            None,
        ),
    )
    .await;
    match sent {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(invitation = %invitation.id, error = %e, "invitation email not sent");
            Err(e.to_string())
        }
        Err(_) => Err("the mail server did not answer within 15 seconds".into()),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvitationQuery {
    /// Only invitations in this state (TEAM-006).
    pub status: Option<InvitationStatus>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Invitations, newest first, optionally by status.
#[utoipa::path(get, path = "/api/v1/team/invitations", tag = "team", security(("bearer" = [])), params(InvitationQuery),
    responses((status = 200, body = Page<InvitationView>), (status = 403, body = Problem)))]
pub async fn list_invitations(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageTeam>,
    ApiQuery(q): ApiQuery<InvitationQuery>,
) -> ApiResult<Json<Page<InvitationView>>> {
    let page = domain::page::PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let list = invitations::list(&state.db, ctx.tenant_id(), q.status, page).await?;
    Ok(Json(list.map(InvitationView::from)))
}

/// Revoke a pending invitation; its link stops working.
#[utoipa::path(delete, path = "/api/v1/team/invitations/{invitation_id}", tag = "team", security(("bearer" = [])),
    params(("invitation_id" = Uuid, Path, description = "The invitation's id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = Problem),
        (status = 409, description = "Already accepted", body = Problem)))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageTeam>,
    ApiPath(invitation_id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    let before = invitations::get(&mut *tx, tenant_id, invitation_id).await?;
    let after = invitations::revoke(&mut *tx, tenant_id, invitation_id).await?;
    if before.revoked_at.is_none() {
        Entry::new(
            Some(tenant_id),
            &ctx.actor(),
            "invitation.revoked",
            "invitation",
        )
        .target(invitation_id)
        .old(&serde_json::json!({"email": before.email, "role": before.role}))
        .new_value(&serde_json::json!({"revoked_at": after.revoked_at}))
        .record(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
