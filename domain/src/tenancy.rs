//! Tenants, users, memberships and platform admins (PRD 2, 3.12.1, 3.17.1).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result, unique_violation};
use crate::ids::new_id;
use crate::page::{Page, PageRequest};
use crate::rbac::Role;
use crate::validate::normalize_email;

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    /// Seat limit (members + open invitations); null = unlimited (TEAM-005).
    pub member_limit: Option<i32>,
    /// Environments this tenant may connect; null: the server's default (`WFO_MAX_ENVIRONMENTS`).
    pub environment_limit: Option<i32>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A user as a member of one tenant.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

/// One of a user's tenants, with the role held there.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct TenantMembership {
    pub tenant_id: Uuid,
    pub slug: String,
    pub name: String,
    pub role: Role,
}

const TENANT_COLUMNS: &str = "id, name, slug, member_limit, environment_limit, created_at";

/// Creates a tenant, subscribed to every provider's default (free) plan (PROV-010), with the
/// platform's environment types (ADMIN-015).
pub async fn create_tenant(db: impl PgExecutor<'_>, name: &str, slug: &str) -> Result<Tenant> {
    sqlx::query_as(sqlf!(
        "with t as (insert into tenants (id, name, slug) values ($1, $2, $3) \
                    returning {TENANT_COLUMNS}), \
              s as (insert into tenant_subscriptions (id, tenant_id, provider, plan_id, status, source) \
                    select gen_random_uuid(), t.id, p.provider, p.id, 'active', 'auto' \
                    from t, plans p where p.is_default and p.active), \
              e as (insert into environment_types (id, tenant_id, key, label, class, sort_order) \
                    select gen_random_uuid(), t.id, x.key, x.label, x.class, x.sort_order \
                    from t, platform_environment_types x) \
         select * from t"
    ))
    .bind(new_id())
    .bind(name.trim())
    .bind(slug)
    .fetch_one(db)
    .await
    .map_err(|e| match unique_violation(&e) {
        Some(_) => Error::conflict(
            "slug_taken",
            format!("a tenant with slug `{slug}` already exists"),
        ),
        None => e.into(),
    })
}

/// A platform admin's change to a tenant's settings (ADMIN-006); `None` leaves one as it is,
/// `Some(None)` clears a limit.
#[derive(Debug, Default)]
pub struct TenantChange {
    pub name: Option<String>,
    pub member_limit: Option<Option<i32>>,
    pub environment_limit: Option<Option<i32>>,
}

/// Applies `change`; returns the tenant before and after.
pub async fn update_tenant(
    db: &mut sqlx::PgConnection,
    id: Uuid,
    change: &TenantChange,
) -> Result<(Tenant, Tenant)> {
    let before = lock_tenant(&mut *db, id).await?;
    let after = sqlx::query_as(sqlf!(
        "update tenants set name = coalesce($2, name), \
         member_limit = case when $3 then $4 else member_limit end, \
         environment_limit = case when $5 then $6 else environment_limit end \
         where id = $1 returning {TENANT_COLUMNS}"
    ))
    .bind(id)
    .bind(change.name.as_deref())
    .bind(change.member_limit.is_some())
    .bind(change.member_limit.flatten())
    .bind(change.environment_limit.is_some())
    .bind(change.environment_limit.flatten())
    .fetch_one(&mut *db)
    .await?;
    Ok((before, after))
}

pub async fn tenant(db: impl PgExecutor<'_>, id: Uuid) -> Result<Tenant> {
    sqlx::query_as(sqlf!("select {TENANT_COLUMNS} from tenants where id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(Error::not_found("tenant"))
}

pub async fn tenant_by_slug(db: impl PgExecutor<'_>, slug: &str) -> Result<Tenant> {
    sqlx::query_as(sqlf!(
        "select {TENANT_COLUMNS} from tenants where slug = $1"
    ))
    .bind(slug)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("tenant"))
}

/// Every tenant, newest first, optionally filtered by a substring of name or slug (platform admins).
pub async fn list_tenants(
    db: impl PgExecutor<'_>,
    query: Option<&str>,
    page: PageRequest,
) -> Result<Page<Tenant>> {
    list_tenants_filtered(db, query, None, None, page).await
}

/// [`list_tenants`], also filtered by a plan key and a subscription status held for any
/// provider (ADMIN-001).
pub async fn list_tenants_filtered(
    db: impl PgExecutor<'_>,
    query: Option<&str>,
    plan: Option<&str>,
    status: Option<&str>,
    page: PageRequest,
) -> Result<Page<Tenant>> {
    let pattern = query.map(|q| format!("%{}%", escape_like(q)));
    let rows = sqlx::query_as(sqlf!(
        "select {TENANT_COLUMNS} from tenants t \
         where ($1::uuid is null or id < $1) \
           and ($2::text is null or name ilike $2 or slug ilike $2 or id::text = $3) \
           and ($5::text is null and $6::text is null or exists ( \
                select 1 from tenant_subscriptions s join plans p on p.id = s.plan_id \
                where s.tenant_id = t.id and ($5::text is null or p.key = $5) \
                  and ($6::text is null or s.status = $6))) \
         order by id desc limit $4"
    ))
    .bind(page.after)
    .bind(pattern)
    .bind(query)
    .bind(page.fetch_limit())
    .bind(plan)
    .bind(status)
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |t: &Tenant| t.id))
}

/// Escapes LIKE wildcards so a search for `50%` finds `50%`, not everything.
pub fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub async fn create_user(
    db: impl PgExecutor<'_>,
    email: &str,
    name: &str,
    password_hash: &str,
) -> Result<User> {
    let email = normalize_email(email);
    sqlx::query_as(
        "insert into users (id, email, name, password_hash) values ($1, $2, $3, $4) \
         returning id, email, name, created_at",
    )
    .bind(new_id())
    .bind(&email)
    .bind(name.trim())
    .bind(password_hash)
    .fetch_one(db)
    .await
    .map_err(|e| match unique_violation(&e) {
        Some(_) => Error::conflict(
            "email_taken",
            format!("a user with email `{email}` already exists"),
        ),
        None => e.into(),
    })
}

pub async fn user(db: impl PgExecutor<'_>, id: Uuid) -> Result<User> {
    sqlx::query_as("select id, email, name, created_at from users where id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(Error::not_found("user"))
}

/// The user with this email and their password hash, for login.
pub async fn user_with_password(
    db: impl PgExecutor<'_>,
    email: &str,
) -> Result<Option<(User, String)>> {
    #[derive(FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: User,
        password_hash: String,
    }
    let row: Option<Row> = sqlx::query_as(
        "select id, email, name, created_at, password_hash from users \
         where lower(email) = $1 and disabled_at is null",
    )
    .bind(normalize_email(email))
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.user, r.password_hash)))
}

pub async fn user_by_email(db: impl PgExecutor<'_>, email: &str) -> Result<Option<User>> {
    Ok(
        sqlx::query_as("select id, email, name, created_at from users where lower(email) = $1")
            .bind(normalize_email(email))
            .fetch_optional(db)
            .await?,
    )
}

pub async fn set_password(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    password_hash: &str,
) -> Result<()> {
    let done = sqlx::query("update users set password_hash = $2, updated_at = now() where id = $1")
        .bind(user_id)
        .bind(password_hash)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("user"));
    }
    Ok(())
}

/// Takes the tenant's row lock so that team changes (last-admin and seat checks) serialise.
pub async fn lock_tenant(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<Tenant> {
    sqlx::query_as(sqlf!(
        "select {TENANT_COLUMNS} from tenants where id = $1 for update"
    ))
    .bind(tenant_id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("tenant"))
}

pub async fn add_member(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<()> {
    sqlx::query("insert into memberships (tenant_id, user_id, role) values ($1, $2, $3)")
        .bind(tenant_id)
        .bind(user_id)
        .bind(role)
        .execute(db)
        .await
        .map_err(|e| match unique_violation(&e) {
            Some(_) => Error::conflict(
                "already_member",
                "the user is already a member of this tenant",
            ),
            None => e.into(),
        })?;
    Ok(())
}

pub async fn member(db: impl PgExecutor<'_>, tenant_id: Uuid, user_id: Uuid) -> Result<Member> {
    sqlx::query_as(
        "select u.id as user_id, u.email, u.name, m.role, m.created_at as joined_at \
         from memberships m join users u on u.id = m.user_id \
         where m.tenant_id = $1 and m.user_id = $2",
    )
    .bind(tenant_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("member"))
}

pub async fn list_members(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    page: PageRequest,
) -> Result<Page<Member>> {
    let rows = sqlx::query_as(
        "select u.id as user_id, u.email, u.name, m.role, m.created_at as joined_at \
         from memberships m join users u on u.id = m.user_id \
         where m.tenant_id = $1 and ($2::uuid is null or u.id < $2) \
         order by u.id desc limit $3",
    )
    .bind(tenant_id)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |m: &Member| m.user_id))
}

pub async fn set_role(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<()> {
    sqlx::query("update memberships set role = $3, updated_at = now() where tenant_id = $1 and user_id = $2")
        .bind(tenant_id)
        .bind(user_id)
        .bind(role)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn remove_member(db: impl PgExecutor<'_>, tenant_id: Uuid, user_id: Uuid) -> Result<()> {
    sqlx::query("delete from memberships where tenant_id = $1 and user_id = $2")
        .bind(tenant_id)
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn count_admins(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "select count(*) from memberships where tenant_id = $1 and role = 'admin'",
    )
    .bind(tenant_id)
    .fetch_one(db)
    .await?)
}

/// Members of the tenant (the seats taken for good; [`seats_used`] adds open invitations).
pub async fn member_count(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<i64> {
    Ok(
        sqlx::query_scalar("select count(*) from memberships where tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(db)
            .await?,
    )
}

/// Seats in use: members plus open, unexpired invitations.
pub async fn seats_used(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "select (select count(*) from memberships where tenant_id = $1) + \
                (select count(*) from invitations where tenant_id = $1 and accepted_at is null \
                   and revoked_at is null and expires_at > now())",
    )
    .bind(tenant_id)
    .fetch_one(db)
    .await?)
}

pub async fn memberships_of(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Vec<TenantMembership>> {
    Ok(sqlx::query_as(
        "select t.id as tenant_id, t.slug, t.name, m.role from memberships m \
         join tenants t on t.id = m.tenant_id where m.user_id = $1 order by t.name, t.id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

pub async fn is_platform_admin(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<bool> {
    Ok(
        sqlx::query_scalar("select exists (select 1 from platform_admins where user_id = $1)")
            .bind(user_id)
            .fetch_one(db)
            .await?,
    )
}

/// Grants platform admin (PLAT-001/002). Returns false when the user already was one.
pub async fn add_platform_admin(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    granted_by: Option<Uuid>,
) -> Result<bool> {
    let done = sqlx::query(
        "insert into platform_admins (user_id, granted_by) values ($1, $2) on conflict (user_id) do nothing",
    )
    .bind(user_id)
    .bind(granted_by)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes platform admin. Returns false when the user was not one.
pub async fn remove_platform_admin(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<bool> {
    let done = sqlx::query("delete from platform_admins where user_id = $1")
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list_platform_admins(db: impl PgExecutor<'_>) -> Result<Vec<User>> {
    Ok(sqlx::query_as(
        "select u.id, u.email, u.name, u.created_at from platform_admins p \
         join users u on u.id = p.user_id order by u.email",
    )
    .fetch_all(db)
    .await?)
}

pub async fn count_platform_admins(db: impl PgExecutor<'_>) -> Result<i64> {
    Ok(sqlx::query_scalar("select count(*) from platform_admins")
        .fetch_one(db)
        .await?)
}
