//! Signing in and out, switching tenant, the current caller, and accepting invitations.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use domain::audit::{Actor, Entry};
use domain::validate::Validator;
use domain::{Permission, Role, invitations, password, sessions, tenancy, throttle};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::TenantView;
use crate::app::AppState;
use crate::auth::{Authenticated, ClientMeta, Invalidation, Subject, publish};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, Validate};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 320)]
    pub email: String,
    #[schema(min_length = 1, max_length = 256)]
    pub password: String,
    /// Slug of the tenant to act in; defaults to the user's first tenant.
    pub tenant: Option<String>,
}

impl Validate for LoginRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("email", &self.email, 1, 320);
        v.text("password", &self.password, 1, password::MAX_LEN);
        v.finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub token_type: &'static str,
    pub expires_at: DateTime<Utc>,
    pub user: tenancy::User,
    /// The tenant the session acts in; null for a user without memberships.
    pub tenant: Option<TenantView>,
    pub platform_admin: bool,
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthenticated("invalid_credentials", "the email or password is wrong")
}

/// Refuses a sign-in whose account or address failed too often lately (see
/// [`domain::throttle`]), before its password is checked.
async fn refuse_if_throttled(state: &AppState, meta: &ClientMeta, email: &str) -> ApiResult<()> {
    match throttle::locked(&state.db, email, meta.ip.as_deref()).await? {
        Some(wait) => Err(ApiError::too_many(
            "too_many_attempts",
            format!(
                "too many failed sign-ins; try again in {} seconds",
                wait.as_secs().max(1)
            ),
            wait,
        )),
        None => Ok(()),
    }
}

async fn count_failure(state: &AppState, meta: &ClientMeta, email: &str) -> ApiResult<()> {
    let mut db = state.db.acquire().await?;
    throttle::failed(&mut db, email, meta.ip.as_deref()).await?;
    Ok(())
}

/// Checks a password off the async runtime: argon2 is deliberately slow.
async fn verify_password(candidate: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match stored {
        Some(stored) => password::verify(&candidate, &stored),
        None => {
            password::verify_dummy(&candidate);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// The audit actor for a user acting on their own behalf before they hold a session.
fn self_actor(user: &tenancy::User, meta: &ClientMeta) -> Actor {
    Actor {
        user_id: Some(user.id),
        label: user.email.clone(),
        ip: meta.ip.clone(),
        request_id: meta.request_id.clone(),
        ..Actor::default()
    }
}

/// Opens a session for `user` acting in `tenant_id`.
async fn open_session(
    db: &mut sqlx::PgConnection,
    state: &AppState,
    meta: &ClientMeta,
    user_id: Uuid,
    tenant_id: Option<Uuid>,
) -> Result<sessions::CreatedSession, domain::Error> {
    sessions::create(
        db,
        sessions::NewSession {
            user_id,
            tenant_id,
            ttl: chrono::Duration::from_std(state.config.session_ttl)
                .unwrap_or(chrono::Duration::hours(12)),
            ip: meta.ip.as_deref(),
            user_agent: meta.user_agent.as_deref(),
        },
    )
    .await
}

/// Sign in with email and password; returns a session token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = LoginResponse),
    (status = 401, description = "Wrong email or password", body = Problem),
    (status = 403, description = "Not a member of the requested tenant", body = Problem),
    (status = 422, body = Problem),
    (status = 429, description = "Too many failed sign-ins lately: wait `Retry-After` seconds", body = Problem),
))]
pub async fn login(
    State(state): State<AppState>,
    meta: axum::Extension<ClientMeta>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    Ok(Json(sign_in(&state, &meta, req).await?))
}

/// Verifies the credentials and opens a session (the API's login and the web UI's).
pub(crate) async fn sign_in(
    state: &AppState,
    meta: &ClientMeta,
    req: LoginRequest,
) -> ApiResult<LoginResponse> {
    refuse_if_throttled(state, meta, &req.email).await?;
    let found = tenancy::user_with_password(&state.db, &req.email).await?;
    let (user, stored) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    if !verify_password(req.password, stored).await {
        count_failure(state, meta, &req.email).await?;
        // Failed sign-ins are security events: kept at platform level (no tenant is known).
        let actor = Actor {
            user_id: user.as_ref().map(|u| u.id),
            label: req.email.chars().take(320).collect(),
            ip: meta.ip.clone(),
            request_id: meta.request_id.clone(),
            ..Actor::default()
        };
        Entry::new(None, &actor, "auth.login_failed", "user")
            .record(&state.db)
            .await?;
        return Err(invalid_credentials());
    }
    let user = user.ok_or_else(invalid_credentials)?;
    throttle::succeeded(&state.db, &req.email, meta.ip.as_deref()).await?;
    let memberships = tenancy::memberships_of(&state.db, user.id).await?;
    let tenant = match &req.tenant {
        Some(slug) => Some(
            memberships
                .iter()
                .find(|m| &m.slug == slug)
                .ok_or_else(|| {
                    ApiError::forbidden(
                        "not_a_member",
                        format!("you are not a member of tenant `{slug}`"),
                    )
                })?,
        ),
        None => memberships.first(),
    };
    let platform_admin = tenancy::is_platform_admin(&state.db, user.id).await?;
    let mut tx = state.db.begin().await?;
    let session = open_session(&mut tx, state, meta, user.id, tenant.map(|t| t.tenant_id)).await?;
    let actor = self_actor(&user, meta);
    Entry::new(tenant.map(|t| t.tenant_id), &actor, "auth.login", "session")
        .target(session.id)
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(LoginResponse {
        token: session.token.plaintext,
        token_type: "Bearer",
        expires_at: session.expires_at,
        user,
        tenant: tenant.map(|t| TenantView {
            id: t.tenant_id,
            slug: t.slug.clone(),
            name: t.name.clone(),
            role: t.role,
        }),
        platform_admin,
    })
}

/// End the current session. Its token stops working at once, on every server.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])), responses(
    (status = 204, description = "Signed out"),
    (status = 400, description = "Called with an API key", body = Problem),
    (status = 401, body = Problem),
))]
pub async fn logout(State(state): State<AppState>, caller: Authenticated) -> ApiResult<StatusCode> {
    let Subject::User { session_id, .. } = &caller.principal.subject else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_session",
            "API keys do not sign out; revoke the key instead",
        ));
    };
    // Signing out of an impersonation ends it (PLAT-006).
    if caller.principal.impersonator.is_some()
        && let Some(id) = domain::impersonation::of_session(&state.db, *session_id).await?
    {
        crate::routes::impersonation::end(&state, id, "logout", &caller.actor()).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    end_session(&state, &caller, *session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends a user's session (the API's and the web UI's sign-out): revoked, every server told (its
/// cache and open streams), audited.
pub async fn end_session(
    state: &AppState,
    caller: &Authenticated,
    session_id: Uuid,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin().await?;
    sessions::revoke(&mut *tx, session_id).await?;
    publish(&mut *tx, Invalidation::Session(session_id)).await?;
    Entry::new(
        caller.principal.tenant.as_ref().map(|t| t.id),
        &caller.actor(),
        "auth.logout",
        "session",
    )
    .target(session_id)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    state.auth_cache.evict(Invalidation::Session(session_id));
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchTenantRequest {
    /// Slug or id of one of the caller's tenants.
    pub tenant: String,
}

impl Validate for SwitchTenantRequest {}

/// Make the current session act in another of the user's tenants.
#[utoipa::path(post, path = "/api/v1/auth/switch-tenant", tag = "auth", security(("bearer" = [])),
    request_body = SwitchTenantRequest, responses(
    (status = 200, body = TenantView),
    (status = 400, description = "Called with an API key", body = Problem),
    (status = 404, description = "Not one of the caller's tenants", body = Problem),
))]
pub async fn switch_tenant(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(req): ApiJson<SwitchTenantRequest>,
) -> ApiResult<Json<TenantView>> {
    caller.principal.refuse_impersonation("switching tenants")?;
    let Subject::User {
        user_id,
        session_id,
        ..
    } = &caller.principal.subject
    else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_session",
            "an API key belongs to one tenant and cannot switch",
        ));
    };
    let memberships = tenancy::memberships_of(&state.db, *user_id).await?;
    let target = memberships
        .iter()
        .find(|m| m.slug == req.tenant || m.tenant_id.to_string() == req.tenant)
        .ok_or_else(|| ApiError::not_found("tenant not found among your memberships"))?;
    let mut tx = state.db.begin().await?;
    sessions::switch_tenant(&mut *tx, *session_id, target.tenant_id).await?;
    publish(&mut *tx, Invalidation::Session(*session_id)).await?;
    tx.commit().await?;
    state.auth_cache.evict(Invalidation::Session(*session_id));
    Ok(Json(TenantView {
        id: target.tenant_id,
        slug: target.slug.clone(),
        name: target.name.clone(),
        role: target.role,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallerKind {
    User,
    ApiKey,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeUser {
    pub id: Uuid,
    pub email: String,
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeKey {
    pub id: Uuid,
    pub prefix: String,
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeResponse {
    pub kind: CallerKind,
    pub user: Option<MeUser>,
    pub api_key: Option<MeKey>,
    pub tenant: Option<TenantView>,
    pub platform_admin: bool,
    /// What the caller's role allows in the current tenant.
    pub permissions: Vec<Permission>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The platform admin acting as this user, when this is an impersonation session.
    pub impersonated_by: Option<String>,
}

/// Who the caller is, where it acts, and what it may do there.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = MeResponse),
    (status = 401, body = Problem),
))]
pub async fn me(caller: Authenticated) -> Json<MeResponse> {
    let p = &caller.principal;
    let role: Option<Role> = p.tenant.as_ref().map(|t| t.role);
    let (kind, user, api_key) = match &p.subject {
        Subject::User {
            user_id,
            email,
            name,
            ..
        } => (
            CallerKind::User,
            Some(MeUser {
                id: *user_id,
                email: email.clone(),
                name: name.clone(),
            }),
            None,
        ),
        Subject::ApiKey {
            key_id,
            prefix,
            name,
            ..
        } => (
            CallerKind::ApiKey,
            None,
            Some(MeKey {
                id: *key_id,
                prefix: prefix.clone(),
                name: name.clone(),
            }),
        ),
    };
    Json(MeResponse {
        kind,
        user,
        api_key,
        tenant: p.tenant.as_ref().map(TenantView::from),
        platform_admin: p.platform_admin,
        permissions: role
            .map(|r| {
                Permission::ALL
                    .into_iter()
                    .filter(|perm| r.allows(*perm))
                    .collect()
            })
            .unwrap_or_default(),
        expires_at: p.expires_at,
        impersonated_by: p.impersonator.as_ref().map(|i| i.email.clone()),
    })
}

/// The tenants the caller can act in, with its role in each.
#[utoipa::path(get, path = "/api/v1/me/tenants", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, body = Vec<tenancy::TenantMembership>),
    (status = 401, body = Problem),
))]
pub async fn my_tenants(
    State(state): State<AppState>,
    caller: Authenticated,
) -> ApiResult<Json<Vec<tenancy::TenantMembership>>> {
    match (caller.principal.user_id(), &caller.principal.tenant) {
        (Some(user_id), _) => Ok(Json(tenancy::memberships_of(&state.db, user_id).await?)),
        (None, Some(t)) => Ok(Json(vec![tenancy::TenantMembership {
            tenant_id: t.id,
            slug: t.slug.clone(),
            name: t.name.clone(),
            role: t.role,
        }])),
        (None, None) => Ok(Json(Vec::new())),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitationRequest {
    /// The invitation token (`wfo_i_…`) from the invitation link.
    #[schema(min_length = 1, max_length = 200)]
    pub token: String,
    /// Your name, when the invitation creates your account.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// A new password (at least 12 characters) when the invitation creates your account;
    /// your current password when you already have one.
    #[schema(min_length = 1, max_length = 256)]
    pub password: String,
}

impl Validate for AcceptInvitationRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("token", &self.token, 1, 200);
        v.text("password", &self.password, 1, password::MAX_LEN);
        if let Some(name) = &self.name {
            v.text("name", name, 1, 200);
        }
        v.finish()
    }
}

/// Accept an invitation: joins the tenant (creating the account if the email has none) and
/// signs in to it. The token works once.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "team", request_body = AcceptInvitationRequest,
    responses(
    (status = 201, body = LoginResponse),
    (status = 401, description = "Existing account, wrong password", body = Problem),
    (status = 404, description = "Unknown token", body = Problem),
    (status = 409, description = "Already a member, or the seat limit is reached", body = Problem),
    (status = 410, description = "Expired, revoked or already used", body = Problem),
    (status = 422, body = Problem),
    (status = 429, description = "Too many failed sign-ins lately: wait `Retry-After` seconds", body = Problem),
))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    meta: axum::Extension<ClientMeta>,
    ApiJson(req): ApiJson<AcceptInvitationRequest>,
) -> ApiResult<(StatusCode, Json<LoginResponse>)> {
    Ok((StatusCode::CREATED, Json(accept(&state, &meta, req).await?)))
}

/// Accepts an invitation (the API's and the web UI's): joins its tenant, creating the account
/// when the invited email has none (else checking that account's password), and opens a session
/// there. The token works once.
///
/// The slow part — argon2, to check the account's password or hash the new one — runs before
/// any lock is taken: the invitation is looked at without locking it first. Then one
/// transaction locks the invitation and the tenant, checks again that the invitation is still
/// pending and that the tenant has a seat for one more member (TEAM-005), and writes. A refusal
/// there (already a member, no seat left) writes nothing: the invitation stays pending.
///
/// The seat check counts members only: the invitation being accepted holds one of the seats
/// that invitations are counted against, and other open invitations do not stand in its way.
/// A tenant whose limit was lowered below its members and invitations lets invitees in until
/// its members reach the limit; the next one is refused (409 `member_limit_reached`).
pub(crate) async fn accept(
    state: &AppState,
    meta: &ClientMeta,
    req: AcceptInvitationRequest,
) -> ApiResult<LoginResponse> {
    let seen = invitations::pending(&state.db, &req.token).await?;
    let account = match tenancy::user_with_password(&state.db, &seen.email).await? {
        Some((user, stored)) => {
            refuse_if_throttled(state, meta, &seen.email).await?;
            if !verify_password(req.password, Some(stored)).await {
                count_failure(state, meta, &seen.email).await?;
                return Err(ApiError::unauthenticated(
                    "invalid_credentials",
                    "an account with this email exists: give its current password to accept",
                ));
            }
            Account::Existing(user)
        }
        None => {
            let mut v = Validator::new();
            password::check_policy(&mut v, "password", &req.password);
            let name = req.name.as_deref().map(str::trim).unwrap_or_default();
            if name.is_empty() {
                v.error("name", "is required to create your account");
            }
            v.finish()?;
            let candidate = req.password;
            let hash = tokio::task::spawn_blocking(move || password::hash(&candidate))
                .await
                .map_err(ApiError::internal)??;
            Account::New {
                name: name.to_owned(),
                hash,
            }
        }
    };

    let mut tx = state.db.begin().await?;
    // Used, revoked or expired while the password was being checked: 410 as before.
    let invitation = invitations::claim(&mut tx, &req.token).await?;
    let tenant = tenancy::lock_tenant(&mut *tx, invitation.tenant_id).await?;
    if let Account::Existing(user) = &account
        && tenancy::member(&mut *tx, tenant.id, user.id).await.is_ok()
    {
        return Err(crate::routes::team::already_member(&user.email));
    }
    if let Some(limit) = domain::entitlements::member_limit(&mut tx, tenant.id).await?
        && tenancy::member_count(&mut *tx, tenant.id).await? >= limit
    {
        let asker = domain::entitlements::Asker {
            tenant_id: tenant.id,
            user_id: match &account {
                Account::Existing(user) => Some(user.id),
                Account::New { .. } => None,
            },
            action: "invitation.accept",
        };
        let message = format!(
            "{} has no seat left: its plan allows {limit} members and all are taken. \
             The invitation is still open; ask an admin of the team to free a seat or upgrade, \
             then accept it again",
            tenant.name
        );
        return Err(crate::routes::team::no_seat_left(state, tx, asker, message).await?);
    }
    let user = match account {
        Account::Existing(user) => user,
        Account::New { name, hash } => {
            tenancy::create_user(&mut *tx, &invitation.email, &name, &hash).await?
        }
    };
    tenancy::add_member(&mut *tx, tenant.id, user.id, invitation.role).await?;
    invitations::mark_accepted(&mut *tx, invitation.id, user.id).await?;
    let session = open_session(&mut tx, state, meta, user.id, Some(tenant.id)).await?;
    let actor = self_actor(&user, meta);
    Entry::new(Some(tenant.id), &actor, "invitation.accepted", "invitation")
        .target(invitation.id)
        .new_value(
            &serde_json::json!({"user_id": user.id, "email": user.email, "role": invitation.role}),
        )
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    let platform_admin = tenancy::is_platform_admin(&state.db, user.id).await?;
    Ok(LoginResponse {
        token: session.token.plaintext,
        token_type: "Bearer",
        expires_at: session.expires_at,
        tenant: Some(TenantView {
            id: tenant.id,
            slug: tenant.slug,
            name: tenant.name,
            role: invitation.role,
        }),
        user,
        platform_admin,
    })
}

/// Who accepts an invitation, as found (and their password checked or hashed) before the
/// acceptance's transaction.
enum Account {
    /// The invited email's account, its password checked.
    Existing(tenancy::User),
    /// No account yet: created in the transaction, with this name and password hash.
    New { name: String, hash: String },
}
