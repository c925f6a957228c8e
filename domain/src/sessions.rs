//! Login sessions: an opaque bearer token per login, bound to the tenant the user acts in.

use chrono::{DateTime, Duration, Utc};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::rbac::Role;
use crate::tokens::{self, Minted};

/// What a session token resolves to. Revoked and expired sessions resolve too, so the caller can
/// tell the client which it was.
#[derive(Debug, Clone, FromRow)]
pub struct SessionAuth {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub tenant_id: Option<Uuid>,
    pub tenant_slug: Option<String>,
    pub tenant_name: Option<String>,
    /// The user's role in `tenant_id`; None when the membership is gone.
    pub role: Option<Role>,
    pub platform_admin: bool,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub user_disabled: bool,
    /// The platform admin acting through this session (an impersonation, PLAT-005).
    pub impersonator_user_id: Option<Uuid>,
    pub impersonator_email: Option<String>,
    /// For an impersonation: whether its admin is still an enabled platform admin (an
    /// impersonation ends with its admin's authority).
    pub impersonator_valid: bool,
}

pub struct NewSession<'a> {
    pub user_id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub ttl: Duration,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

#[derive(Debug)]
pub struct CreatedSession {
    pub id: Uuid,
    pub token: Minted,
    pub expires_at: DateTime<Utc>,
}

pub async fn create(db: impl PgExecutor<'_>, new: NewSession<'_>) -> Result<CreatedSession> {
    let id = new_id();
    let token = tokens::session();
    let expires_at = Utc::now() + new.ttl;
    sqlx::query(
        "insert into sessions (id, user_id, tenant_id, token_hash, ip, user_agent, expires_at) \
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(new.user_id)
    .bind(new.tenant_id)
    .bind(token.hash.as_slice())
    .bind(new.ip)
    .bind(
        new.user_agent
            .map(|ua| ua.chars().take(500).collect::<String>()),
    )
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(CreatedSession {
        id,
        token,
        expires_at,
    })
}

pub async fn resolve(
    db: impl PgExecutor<'_>,
    token_hash: &[u8; 32],
) -> Result<Option<SessionAuth>> {
    Ok(sqlx::query_as(
        "select s.id as session_id, u.id as user_id, u.email, u.name, \
                t.id as tenant_id, t.slug as tenant_slug, t.name as tenant_name, m.role, \
                s.impersonator_user_id is null \
                  and exists (select 1 from platform_admins p where p.user_id = u.id) as platform_admin, \
                s.expires_at, s.revoked_at, u.disabled_at is not null as user_disabled, \
                s.impersonator_user_id, (select a.email from users a where a.id = s.impersonator_user_id) as impersonator_email, \
                s.impersonator_user_id is null or exists (select 1 from platform_admins p join users a on a.id = p.user_id \
                    where p.user_id = s.impersonator_user_id and a.disabled_at is null) as impersonator_valid \
         from sessions s join users u on u.id = s.user_id \
         left join memberships m on m.user_id = s.user_id and m.tenant_id = s.tenant_id \
         left join tenants t on t.id = m.tenant_id \
         where s.token_hash = $1",
    )
    .bind(token_hash.as_slice())
    .fetch_optional(db)
    .await?)
}

pub async fn revoke(db: impl PgExecutor<'_>, session_id: Uuid) -> Result<()> {
    sqlx::query("update sessions set revoked_at = coalesce(revoked_at, now()) where id = $1")
        .bind(session_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Revokes every live session of a user (password change, account removal).
pub async fn revoke_all_for_user(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<u64> {
    Ok(sqlx::query(
        "update sessions set revoked_at = now() where user_id = $1 and revoked_at is null",
    )
    .bind(user_id)
    .execute(db)
    .await?
    .rows_affected())
}

pub async fn switch_tenant(
    db: impl PgExecutor<'_>,
    session_id: Uuid,
    tenant_id: Uuid,
) -> Result<()> {
    let done =
        sqlx::query("update sessions set tenant_id = $2 where id = $1 and revoked_at is null")
            .bind(session_id)
            .bind(tenant_id)
            .execute(db)
            .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("session"));
    }
    Ok(())
}
