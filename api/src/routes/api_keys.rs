//! Tenant API keys (SEC-001, SEC-002): create (shown once), list by prefix, revoke, rotate.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{Duration, Utc};
use domain::Role;
use domain::audit::Entry;
use domain::keys::{self, ApiKey};
use domain::page::Page;
use domain::validate::Validator;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{Invalidation, TenantCtx, perm, publish};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate, parse_json};

const MAX_EXPIRY_DAYS: u32 = 3650;
const MAX_OVERLAP_SECONDS: u32 = 7 * 86_400;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// What the key is for, e.g. "CI pipeline".
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// The key's role; at most the creator's own (default developer).
    pub role: Option<Role>,
    /// Days until the key expires; omit for a key that does not expire.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
}

impl Validate for CreateApiKeyRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("name", &self.name, 1, 200);
        if self
            .expires_in_days
            .is_some_and(|d| d == 0 || d > MAX_EXPIRY_DAYS)
        {
            v.error(
                "expires_in_days",
                format!("must be between 1 and {MAX_EXPIRY_DAYS}"),
            );
        }
        v.finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyCreated {
    pub key: ApiKey,
    /// The key itself. Shown once: store it now; only its hash is kept.
    pub secret: String,
    /// For a rotation: the key it replaces, now revoked or expiring.
    pub previous: Option<ApiKey>,
}

/// Create an API key. The response carries the secret, shown once. A key created with an API
/// key expires no later than that key.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    request_body = CreateApiKeyRequest,
    responses((status = 201, body = ApiKeyCreated), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageApiKeys>,
    ApiJson(req): ApiJson<CreateApiKeyRequest>,
) -> ApiResult<(StatusCode, Json<ApiKeyCreated>)> {
    // A key would outlive the impersonation that minted it.
    ctx.principal.refuse_impersonation("creating API keys")?;
    let role = req.role.unwrap_or(Role::Developer);
    if role > ctx.tenant.role {
        return Err(ApiError::forbidden(
            "role_too_high",
            "a key cannot have a higher role than its creator",
        ));
    }
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    let (minted, key) = keys::create(
        &mut *tx,
        keys::NewKey {
            tenant_id,
            name: &req.name,
            role,
            created_by: ctx.principal.accountable_user(),
            expires_at: keys::earlier(
                req.expires_in_days
                    .map(|d| Utc::now() + Duration::days(i64::from(d))),
                ctx.principal.key_expiry(),
            ),
            rotated_from: None,
        },
    )
    .await?;
    Entry::new(Some(tenant_id), &ctx.actor(), "api_key.created", "api_key")
        .target(key.id)
        .new_value(&key)
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreated {
            key,
            secret: minted.token.plaintext,
            previous: None,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApiKeyQuery {
    /// Include revoked keys (default false).
    #[serde(default)]
    pub include_revoked: bool,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The tenant's API keys, newest first (never their secrets).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", security(("bearer" = [])), params(ApiKeyQuery),
    responses((status = 200, body = Page<ApiKey>), (status = 403, body = Problem)))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageApiKeys>,
    ApiQuery(q): ApiQuery<ApiKeyQuery>,
) -> ApiResult<Json<Page<ApiKey>>> {
    let page = domain::page::PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    Ok(Json(
        keys::list(&state.db, ctx.tenant_id(), q.include_revoked, page).await?,
    ))
}

/// One API key.
#[utoipa::path(get, path = "/api/v1/api-keys/{key_id}", tag = "api-keys", security(("bearer" = [])),
    params(("key_id" = Uuid, Path, description = "The key's id")),
    responses((status = 200, body = ApiKey), (status = 404, body = Problem)))]
pub async fn get_api_key(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageApiKeys>,
    ApiPath(key_id): ApiPath<Uuid>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(keys::get(&state.db, ctx.tenant_id(), key_id).await?))
}

/// Revoke an API key. It stops working at once, on every server.
#[utoipa::path(delete, path = "/api/v1/api-keys/{key_id}", tag = "api-keys", security(("bearer" = [])),
    params(("key_id" = Uuid, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = Problem)))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageApiKeys>,
    ApiPath(key_id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    let before = keys::get(&mut *tx, tenant_id, key_id).await?;
    let after = keys::revoke(&mut *tx, tenant_id, key_id).await?;
    if before.revoked_at.is_none() {
        Entry::new(Some(tenant_id), &ctx.actor(), "api_key.revoked", "api_key")
            .target(key_id)
            .old(&before)
            .new_value(&after)
            .record(&mut *tx)
            .await?;
    }
    publish(&mut *tx, Invalidation::ApiKey(key_id)).await?;
    tx.commit().await?;
    state.auth_cache.evict(Invalidation::ApiKey(key_id));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKeyRequest {
    /// Keep the old key working this many seconds (at most 7 days) so clients can switch over;
    /// omit to revoke it at once.
    #[schema(maximum = 604_800)]
    pub overlap_seconds: Option<u32>,
}

/// Replace a key with a new one of the same name and role (SEC-002). The body is optional.
#[utoipa::path(post, path = "/api/v1/api-keys/{key_id}/rotate", tag = "api-keys", security(("bearer" = [])),
    params(("key_id" = Uuid, Path, description = "The key's id")),
    request_body(content = Option<RotateApiKeyRequest>, content_type = "application/json"),
    responses((status = 201, body = ApiKeyCreated), (status = 404, body = Problem),
        (status = 409, description = "The key is revoked", body = Problem)))]
pub async fn rotate_api_key(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageApiKeys>,
    ApiPath(key_id): ApiPath<Uuid>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<ApiKeyCreated>)> {
    ctx.principal.refuse_impersonation("rotating API keys")?;
    // No body, or JSON `null` (what the document allows: the body is optional): the defaults.
    let req: RotateApiKeyRequest = if body.trim_ascii().is_empty() || body.trim_ascii() == b"null" {
        RotateApiKeyRequest::default()
    } else {
        parse_json(&body)?
    };
    if req.overlap_seconds.is_some_and(|s| s > MAX_OVERLAP_SECONDS) {
        return Err(domain::Error::invalid(
            "overlap_seconds",
            format!("must be at most {MAX_OVERLAP_SECONDS}"),
        )
        .into());
    }
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    let (minted, key, previous) = keys::rotate(
        &mut tx,
        tenant_id,
        key_id,
        req.overlap_seconds.map(|s| Duration::seconds(i64::from(s))),
        ctx.principal.accountable_user(),
        ctx.principal.key_expiry(),
    )
    .await?;
    Entry::new(Some(tenant_id), &ctx.actor(), "api_key.rotated", "api_key")
        .target(key_id)
        .old(&previous)
        .new_value(&key)
        .record(&mut *tx)
        .await?;
    publish(&mut *tx, Invalidation::ApiKey(key_id)).await?;
    tx.commit().await?;
    state.auth_cache.evict(Invalidation::ApiKey(key_id));
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreated {
            key,
            secret: minted.token.plaintext,
            previous: Some(previous),
        }),
    ))
}
