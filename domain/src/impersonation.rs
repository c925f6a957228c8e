//! Impersonation (PRD 3.17.2, PLAT-005..010) and the support console's user search
//! (PLAT-012..014).
//!
//! A platform admin starts an impersonation of a tenant member for a stated reason: it gets a
//! session token of its own, bound to that tenant, acting with the member's role (never the
//! admin's platform rights), for at most a few hours. The session names the admin, so every
//! change made through it is audited with the admin as impersonator. Platform admins cannot be
//! impersonated; ending the impersonation (or signing out of it) revokes its session at once.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::page::{Page, PageRequest};
use crate::rbac::Role;
use crate::tokens::{self, Minted};

/// An impersonation as listed (PLAT-010).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Impersonation {
    pub id: Uuid,
    pub admin_user_id: Uuid,
    pub admin_email: String,
    pub target_user_id: Uuid,
    pub target_email: String,
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub reason: String,
    pub ip: Option<String>,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<String>,
    /// Neither ended nor past its expiry.
    pub active: bool,
}

const SELECT: &str = "select i.id, i.admin_user_id, a.email as admin_email, i.target_user_id, \
     u.email as target_email, i.tenant_id, t.slug as tenant_slug, i.reason, i.ip, i.started_at, \
     i.expires_at, i.ended_at, i.ended_by, (i.ended_at is null and i.expires_at > now()) as active \
     from impersonations i join users a on a.id = i.admin_user_id join users u on u.id = i.target_user_id \
     join tenants t on t.id = i.tenant_id";

pub struct NewImpersonation<'a> {
    pub admin_user_id: Uuid,
    pub target_user_id: Uuid,
    pub tenant_id: Uuid,
    pub reason: &'a str,
    pub ttl: Duration,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// Starts an impersonation: checks the target (a member of the tenant, not a platform admin,
/// not the admin), creates its session. Returns the session token (shown once) and the record.
pub async fn start(
    db: &mut PgConnection,
    new: NewImpersonation<'_>,
) -> Result<(Minted, Impersonation)> {
    if new.target_user_id == new.admin_user_id {
        return Err(Error::conflict(
            "cannot_impersonate_self",
            "you cannot impersonate yourself",
        ));
    }
    // Locks the target's row against a grant of platform admin (which locks it for update, see
    // `end_all_of`): one of the two waits for the other.
    let target: Option<(bool, bool)> = sqlx::query_as(
        "select exists (select 1 from platform_admins p where p.user_id = u.id), u.disabled_at is not null \
         from users u where u.id = $1 for share",
    )
    .bind(new.target_user_id)
    .fetch_optional(&mut *db)
    .await?;
    let (platform_admin, disabled) = target.ok_or(Error::not_found("user"))?;
    if platform_admin {
        return Err(Error::Forbidden {
            code: "cannot_impersonate_platform_admin",
            message: "platform admins cannot be impersonated".into(),
        });
    }
    if disabled {
        return Err(Error::conflict(
            "account_disabled",
            "this account is disabled",
        ));
    }
    let member: bool = sqlx::query_scalar(
        "select exists (select 1 from memberships where tenant_id = $1 and user_id = $2)",
    )
    .bind(new.tenant_id)
    .bind(new.target_user_id)
    .fetch_one(&mut *db)
    .await?;
    if !member {
        return Err(Error::not_found("member"));
    }
    let session_id = new_id();
    let token = tokens::session();
    let expires_at = Utc::now() + new.ttl;
    let user_agent = new
        .user_agent
        .map(|ua| ua.chars().take(500).collect::<String>());
    sqlx::query(
        "insert into sessions (id, user_id, tenant_id, token_hash, ip, user_agent, expires_at, impersonator_user_id) \
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(session_id)
    .bind(new.target_user_id)
    .bind(new.tenant_id)
    .bind(token.hash.as_slice())
    .bind(new.ip)
    .bind(&user_agent)
    .bind(expires_at)
    .bind(new.admin_user_id)
    .execute(&mut *db)
    .await?;
    let id = new_id();
    sqlx::query(
        "insert into impersonations (id, session_id, admin_user_id, target_user_id, tenant_id, reason, ip, user_agent, expires_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(session_id)
    .bind(new.admin_user_id)
    .bind(new.target_user_id)
    .bind(new.tenant_id)
    .bind(new.reason)
    .bind(new.ip)
    .bind(&user_agent)
    .bind(expires_at)
    .execute(&mut *db)
    .await?;
    Ok((token, get(&mut *db, id).await?))
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Impersonation> {
    sqlx::query_as(sqlf!("{SELECT} where i.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(Error::not_found("impersonation"))
}

/// Filters of the impersonation list.
#[derive(Debug, Default)]
pub struct Filter {
    pub active: Option<bool>,
    pub admin_user_id: Option<Uuid>,
    pub target_user_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
}

/// Impersonations, newest first (PLAT-010).
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page<Impersonation>> {
    let rows = sqlx::query_as(sqlf!(
        "{SELECT} where ($1::boolean is null or (i.ended_at is null and i.expires_at > now()) = $1) \
         and ($2::uuid is null or i.admin_user_id = $2) and ($3::uuid is null or i.target_user_id = $3) \
         and ($4::uuid is null or i.tenant_id = $4) and ($5::uuid is null or i.id < $5) \
         order by i.id desc limit $6"
    ))
    .bind(filter.active)
    .bind(filter.admin_user_id)
    .bind(filter.target_user_id)
    .bind(filter.tenant_id)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |i: &Impersonation| i.id))
}

/// Ends an impersonation and revokes its session. Returns it as it was before, whether this
/// call ended it (false: it had ended or run out already), and its session (for cache
/// invalidation).
pub async fn end(
    db: &mut PgConnection,
    id: Uuid,
    ended_by: &str,
) -> Result<(Impersonation, bool, Uuid)> {
    let before = get(&mut *db, id).await?;
    let ended = sqlx::query(
        "update impersonations set ended_at = now(), ended_by = $2 where id = $1 and ended_at is null",
    )
    .bind(id)
    .bind(ended_by)
    .execute(&mut *db)
    .await?
    .rows_affected()
        == 1;
    let session: Uuid = sqlx::query_scalar(
        "update sessions set revoked_at = coalesce(revoked_at, now()) \
         where id = (select session_id from impersonations where id = $1) returning id",
    )
    .bind(id)
    .fetch_one(&mut *db)
    .await?;
    let was_active = before.active;
    Ok((before, ended && was_active, session))
}

/// The impersonation a session belongs to, if any.
pub async fn of_session(db: impl PgExecutor<'_>, session_id: Uuid) -> Result<Option<Uuid>> {
    Ok(
        sqlx::query_scalar("select id from impersonations where session_id = $1")
            .bind(session_id)
            .fetch_optional(db)
            .await?,
    )
}

/// A tenant member as the support console shows it (PLAT-012, PLAT-014).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct TenantUser {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
    pub platform_admin: bool,
    pub disabled: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Whether a platform admin may impersonate this user (PLAT-009, PLAT-013).
    pub can_impersonate: bool,
}

/// A tenant's members matching `q` (a substring of email or name, or a user id), by email.
pub async fn tenant_users(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    q: Option<&str>,
    page: PageRequest,
) -> Result<Page<TenantUser>> {
    let pattern = q.map(|q| format!("%{}%", crate::tenancy::escape_like(q)));
    let rows = sqlx::query_as(
        "select u.id as user_id, u.email, u.name, m.role, m.created_at as joined_at, \
                exists (select 1 from platform_admins p where p.user_id = u.id) as platform_admin, \
                u.disabled_at is not null as disabled, \
                (select max(s.created_at) from sessions s where s.user_id = u.id and s.impersonator_user_id is null) as last_seen_at, \
                not exists (select 1 from platform_admins p where p.user_id = u.id) and u.disabled_at is null as can_impersonate \
         from memberships m join users u on u.id = m.user_id \
         where m.tenant_id = $1 \
           and ($2::text is null or u.email ilike $2 or u.name ilike $2 or u.id::text = $3) \
           and ($4::uuid is null or u.id < $4) \
         order by u.id desc limit $5",
    )
    .bind(tenant_id)
    .bind(pattern)
    .bind(q.map(str::trim))
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |u: &TenantUser| u.user_id))
}

/// Ends every running impersonation of `target_user_id` (it is becoming a platform admin,
/// PLAT-009) and revokes their sessions; returns those sessions, for cache invalidation. Locks
/// the user's row first, so an impersonation being started meanwhile waits and then sees the
/// grant.
pub async fn end_all_of(
    db: &mut PgConnection,
    target_user_id: Uuid,
    ended_by: &str,
) -> Result<Vec<Uuid>> {
    sqlx::query("select 1 from users where id = $1 for update")
        .bind(target_user_id)
        .execute(&mut *db)
        .await?;
    let sessions: Vec<Uuid> = sqlx::query_scalar(
        "update impersonations set ended_at = now(), ended_by = $2 \
         where target_user_id = $1 and ended_at is null returning session_id",
    )
    .bind(target_user_id)
    .bind(ended_by)
    .fetch_all(&mut *db)
    .await?;
    sqlx::query("update sessions set revoked_at = coalesce(revoked_at, now()) where id = any ($1)")
        .bind(&sessions)
        .execute(&mut *db)
        .await?;
    Ok(sessions)
}
