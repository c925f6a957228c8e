//! Tenant API keys for machine clients (SEC-001, SEC-002): shown once, stored hashed, listed by
//! their public prefix, revocable, and rotatable with an optional overlap window.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::page::{Page, PageRequest};
use crate::rbac::Role;
use crate::tokens::{self, MintedKey};

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// The public part of the key (`wfo_k_…`), enough to recognise it, useless to authenticate.
    pub prefix: String,
    pub role: Role,
    pub created_by: Option<Uuid>,
    pub rotated_from: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, name, prefix, role, created_by, rotated_from, created_at, expires_at, last_used_at, revoked_at";

/// What an API key resolves to. Revoked and expired keys resolve too, so callers can say which.
#[derive(Debug, Clone, FromRow)]
pub struct KeyAuth {
    pub key_id: Uuid,
    pub prefix: String,
    pub name: String,
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub tenant_name: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who created the key (gone once they are deleted).
    pub created_by: Option<Uuid>,
}

pub struct NewKey<'a> {
    pub tenant_id: Uuid,
    pub name: &'a str,
    pub role: Role,
    pub created_by: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    pub rotated_from: Option<Uuid>,
}

pub async fn create(db: impl PgExecutor<'_>, new: NewKey<'_>) -> Result<(MintedKey, ApiKey)> {
    let minted = tokens::api_key();
    let key = sqlx::query_as(sqlf!(
        "insert into api_keys (id, tenant_id, name, prefix, secret_hash, role, created_by, expires_at, rotated_from) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning {COLUMNS}"
    ))
    .bind(new_id())
    .bind(new.tenant_id)
    .bind(new.name.trim())
    .bind(&minted.prefix)
    .bind(minted.token.hash.as_slice())
    .bind(new.role)
    .bind(new.created_by)
    .bind(new.expires_at)
    .bind(new.rotated_from)
    .fetch_one(db)
    .await?;
    Ok((minted, key))
}

pub async fn get(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<ApiKey> {
    sqlx::query_as(sqlf!(
        "select {COLUMNS} from api_keys where tenant_id = $1 and id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("api key"))
}

pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    include_revoked: bool,
    page: PageRequest,
) -> Result<Page<ApiKey>> {
    let rows = sqlx::query_as(sqlf!(
        "select {COLUMNS} from api_keys where tenant_id = $1 and ($2::uuid is null or id < $2) \
         and ($3 or revoked_at is null) order by id desc limit $4"
    ))
    .bind(tenant_id)
    .bind(page.after)
    .bind(include_revoked)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |k: &ApiKey| k.id))
}

/// Revokes a key now. Revoking a revoked key is a no-op that returns it unchanged.
pub async fn revoke(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<ApiKey> {
    sqlx::query_as(sqlf!(
        "update api_keys set revoked_at = coalesce(revoked_at, now()) \
         where tenant_id = $1 and id = $2 returning {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("api key"))
}

/// The earlier of two expiries (`None` = never).
pub fn earlier(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Issues a replacement for key `id` with the same name, role and expiry (at the latest
/// `not_after`: the expiry of the key asking for the rotation). The old key stops working now,
/// or after `overlap` so clients can switch over without downtime.
pub async fn rotate(
    db: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    overlap: Option<Duration>,
    rotated_by: Option<Uuid>,
    not_after: Option<DateTime<Utc>>,
) -> Result<(MintedKey, ApiKey, ApiKey)> {
    let old: ApiKey = sqlx::query_as(sqlf!(
        "select {COLUMNS} from api_keys where tenant_id = $1 and id = $2 for update"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *db)
    .await?
    .ok_or(Error::not_found("api key"))?;
    if old.revoked_at.is_some() {
        return Err(Error::conflict(
            "api_key_revoked",
            "a revoked key cannot be rotated; create a new one",
        ));
    }
    let (minted, new) = create(
        &mut *db,
        NewKey {
            tenant_id,
            name: &old.name,
            role: old.role,
            created_by: rotated_by,
            expires_at: earlier(old.expires_at, not_after),
            rotated_from: Some(old.id),
        },
    )
    .await?;
    let old_after: ApiKey = match overlap {
        Some(overlap) => sqlx::query_as(sqlf!(
            "update api_keys set expires_at = least(coalesce(expires_at, 'infinity'), $2) \
             where id = $1 returning {COLUMNS}"
        ))
        .bind(id)
        .bind(Utc::now() + overlap),
        None => sqlx::query_as(sqlf!(
            "update api_keys set revoked_at = now() where id = $1 returning {COLUMNS}"
        ))
        .bind(id),
    }
    .fetch_one(&mut *db)
    .await?;
    Ok((minted, new, old_after))
}

pub async fn resolve(db: impl PgExecutor<'_>, secret_hash: &[u8; 32]) -> Result<Option<KeyAuth>> {
    Ok(sqlx::query_as(
        "select k.id as key_id, k.prefix, k.name, t.id as tenant_id, t.slug as tenant_slug, \
                t.name as tenant_name, k.role, k.expires_at, k.revoked_at, k.created_by \
         from api_keys k join tenants t on t.id = k.tenant_id where k.secret_hash = $1",
    )
    .bind(secret_hash.as_slice())
    .fetch_optional(db)
    .await?)
}

pub async fn touch(db: impl PgExecutor<'_>, id: Uuid) -> Result<()> {
    sqlx::query("update api_keys set last_used_at = now() where id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}
