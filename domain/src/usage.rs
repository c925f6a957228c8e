//! Usage across the platform (ADMIN-004, ADMIN-009..011, PLAT-003): what each tenant holds and
//! does, totals, the heaviest tenants by a metric, tenants at their limits, and support notes on
//! tenants (ADMIN-003). For platform admins.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::page::{Page, PageRequest};

text_enum! {
    /// What a tenant can be ranked by (ADMIN-010).
    pub enum Metric {
        Members = "members",
        Environments = "environments",
        Workflows = "workflows",
        Runs = "runs",
        Executions = "executions",
        Promotions = "promotions",
    }
}

/// One tenant's usage (ADMIN-004): what it holds now, and what it did in the last 30 days.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct TenantUsage {
    pub tenant_id: Uuid,
    pub slug: String,
    pub name: String,
    pub members: i64,
    /// Null: no seat limit.
    pub member_limit: Option<i32>,
    /// Null: the server's default environment limit.
    pub environment_limit: Option<i32>,
    pub open_invitations: i64,
    pub environments: i64,
    pub workflows: i64,
    /// Background runs created in the last 30 days.
    pub runs: i64,
    /// Of those, the ones that failed.
    pub failed_runs: i64,
    /// Executions synced from providers that started in the last 30 days.
    pub executions: i64,
    /// Promotions requested in the last 30 days.
    pub promotions: i64,
    pub open_incidents: i64,
    pub last_activity_at: Option<DateTime<Utc>>,
}

/// Per tenant, each metric as a subquery over the tenant's own indexed rows.
const USAGE: &str = "select t.id as tenant_id, t.slug, t.name, \
     (select count(*) from memberships m where m.tenant_id = t.id) as members, t.member_limit, t.environment_limit, \
     (select count(*) from invitations i where i.tenant_id = t.id and i.accepted_at is null \
        and i.revoked_at is null and i.expires_at > now()) as open_invitations, \
     (select count(*) from environments e where e.tenant_id = t.id) as environments, \
     (select count(*) from env_workflows w where w.tenant_id = t.id) as workflows, \
     (select count(*) from engine_runs r where r.namespace = t.id::text and r.created_at > now() - interval '30 days') as runs, \
     (select count(*) from engine_runs r where r.namespace = t.id::text and r.created_at > now() - interval '30 days' \
        and r.status = 'failed') as failed_runs, \
     (select count(*) from env_executions x where x.tenant_id = t.id and x.started_at > now() - interval '30 days') as executions, \
     (select count(*) from promotions p where p.tenant_id = t.id and p.created_at > now() - interval '30 days') as promotions, \
     (select count(*) from drift_incidents d where d.tenant_id = t.id and d.status <> 'closed') as open_incidents, \
     (select max(a.occurred_at) from audit_logs a where a.tenant_id = t.id) as last_activity_at \
     from tenants t";

pub async fn tenant(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<TenantUsage> {
    sqlx::query_as(sqlf!("{USAGE} where t.id = $1"))
        .bind(tenant_id)
        .fetch_optional(db)
        .await?
        .ok_or(Error::not_found("tenant"))
}

/// The `limit` heaviest tenants by `metric` (ADMIN-010).
pub async fn top(db: impl PgExecutor<'_>, metric: Metric, limit: i64) -> Result<Vec<TenantUsage>> {
    Ok(sqlx::query_as(sqlf!(
        "select * from ({USAGE}) u order by {} desc, tenant_id limit $1",
        metric.as_str()
    ))
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Tenants at or over a limit (ADMIN-011): seats (members + open invitations) and environments.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct AtLimit {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub usage: TenantUsage,
    /// Which limits: `members`, `environments`.
    pub limits: Vec<String>,
}

/// Tenants at a limit (ADMIN-011): seats against the tenant's own limit or its plan's, and
/// each provider's environments against the tenant's own limit or its plan's (an unlimited plan
/// capped at the server's `max_environments`). Six queries for the whole platform; the plans
/// are resolved in memory as [`entitlements::resolve`] does for one tenant.
pub async fn at_limit(db: &mut sqlx::PgConnection, max_environments: i64) -> Result<Vec<AtLimit>> {
    use crate::entitlements::{self, Feature};

    let usages: Vec<TenantUsage> = sqlx::query_as(sqlf!("{USAGE} order by t.slug"))
        .fetch_all(&mut *db)
        .await?;
    let per_provider: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "select tenant_id, provider, count(*) from environments group by tenant_id, provider",
    )
    .fetch_all(&mut *db)
    .await?;
    let tenants: Vec<Uuid> = usages.iter().map(|u| u.tenant_id).collect();
    let mut inputs = entitlements::load_many(&mut *db, &tenants).await?;
    let now = Utc::now();
    let mut out = Vec::new();
    for usage in usages {
        let Some(inputs) = inputs.remove(&usage.tenant_id) else {
            continue;
        };
        let ent = entitlements::resolve(usage.tenant_id, &inputs, now);
        let mut limits = Vec::new();
        let seats = usage
            .member_limit
            .map(i64::from)
            .or_else(|| ent.limit(Feature::Members, None));
        if seats.is_some_and(|n| usage.members + usage.open_invitations >= n) {
            limits.push("members".to_owned());
        }
        let full = inputs.providers.iter().any(|p| {
            let used = per_provider
                .iter()
                .find(|(t, provider, _)| *t == usage.tenant_id && *provider == p.key)
                .map_or(0, |(_, _, n)| *n);
            let limit = usage.environment_limit.map_or_else(
                || {
                    ent.limit(Feature::Environments, Some(&p.key))
                        .map_or(max_environments, |n| n.min(max_environments))
                },
                i64::from,
            );
            used > 0 && used >= limit
        });
        if full {
            limits.push("environments".to_owned());
        }
        if !limits.is_empty() {
            out.push(AtLimit { usage, limits });
        }
    }
    Ok(out)
}

/// The platform in numbers (ADMIN-009, PLAT-003).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct PlatformUsage {
    pub tenants: i64,
    pub users: i64,
    pub platform_admins: i64,
    pub environments: i64,
    pub workflows: i64,
    /// Runs created in the last 24 hours, and of those the failed ones.
    pub runs_24h: i64,
    pub failed_runs_24h: i64,
    /// Runs waiting to start or running now.
    pub queued_runs: i64,
    pub running_runs: i64,
    /// Worker processes alive now (heartbeat within a minute).
    pub workers: i64,
    pub open_incidents: i64,
    pub active_impersonations: i64,
    pub alerts_24h: i64,
}

pub async fn platform(db: impl PgExecutor<'_>) -> Result<PlatformUsage> {
    Ok(sqlx::query_as(
        "select (select count(*) from tenants) as tenants, \
                (select count(*) from users) as users, \
                (select count(*) from platform_admins) as platform_admins, \
                (select count(*) from environments) as environments, \
                (select count(*) from env_workflows) as workflows, \
                (select count(*) from engine_runs where created_at > now() - interval '24 hours') as runs_24h, \
                (select count(*) from engine_runs where created_at > now() - interval '24 hours' and status = 'failed') as failed_runs_24h, \
                (select count(*) from engine_runs where status = 'queued') as queued_runs, \
                (select count(*) from engine_runs where status = 'running') as running_runs, \
                (select count(*) from engine_workers where stopped_at is null and heartbeat_at > now() - interval '1 minute') as workers, \
                (select count(*) from drift_incidents where status <> 'closed') as open_incidents, \
                (select count(*) from impersonations where ended_at is null and expires_at > now()) as active_impersonations, \
                (select count(*) from alert_events where created_at > now() - interval '24 hours') as alerts_24h",
    )
    .fetch_one(db)
    .await?)
}

/// A support note on a tenant (ADMIN-003), visible to platform admins only.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct TenantNote {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub body: String,
    pub author_user_id: Option<Uuid>,
    pub author_email: String,
    pub created_at: DateTime<Utc>,
}

pub async fn add_note(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    body: &str,
    author_user_id: Uuid,
    author_email: &str,
) -> Result<TenantNote> {
    Ok(sqlx::query_as(
        "insert into tenant_notes (id, tenant_id, body, author_user_id, author_email) \
         values ($1, $2, $3, $4, $5) \
         returning id, tenant_id, body, author_user_id, author_email, created_at",
    )
    .bind(new_id())
    .bind(tenant_id)
    .bind(body)
    .bind(author_user_id)
    .bind(author_email)
    .fetch_one(db)
    .await?)
}

/// A tenant's notes, newest first.
pub async fn notes(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    page: PageRequest,
) -> Result<Page<TenantNote>> {
    let rows = sqlx::query_as(
        "select id, tenant_id, body, author_user_id, author_email, created_at from tenant_notes \
         where tenant_id = $1 and ($2::uuid is null or id < $2) order by id desc limit $3",
    )
    .bind(tenant_id)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |n: &TenantNote| n.id))
}

pub async fn delete_note(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<TenantNote> {
    sqlx::query_as(
        "delete from tenant_notes where tenant_id = $1 and id = $2 \
         returning id, tenant_id, body, author_user_id, author_email, created_at",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("note"))
}

/// Data retention set by platform admins (ADMIN-016), in days; `None` leaves the server's
/// configuration (`WFO_RUN_RETENTION`, `WFO_EXECUTION_RETENTION`, `WFO_SNAPSHOT_RETENTION`,
/// `WFO_READ_AUDIT_RETENTION`) in force.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
pub struct RetentionOverrides {
    /// Finished runs, their steps and events, and alerts.
    #[schema(minimum = 1, maximum = 3650)]
    pub runs_days: Option<i32>,
    /// Executions synced from providers.
    #[schema(minimum = 1, maximum = 3650)]
    pub executions_days: Option<i32>,
    /// Scheduled (`auto_backup`) snapshots, unless an environment says otherwise.
    #[schema(minimum = 1, maximum = 3650)]
    pub snapshots_days: Option<i32>,
    /// Audited reads of the runs API (audited changes are kept).
    #[schema(minimum = 1, maximum = 3650)]
    pub read_audit_days: Option<i32>,
}

const RETENTION_KEY: &str = "retention";

pub async fn retention(db: impl PgExecutor<'_>) -> Result<RetentionOverrides> {
    let value: Option<serde_json::Value> =
        sqlx::query_scalar("select value from platform_settings where key = $1")
            .bind(RETENTION_KEY)
            .fetch_optional(db)
            .await?;
    Ok(value
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default())
}

pub async fn set_retention(
    db: impl PgExecutor<'_>,
    overrides: &RetentionOverrides,
    updated_by: &str,
) -> Result<()> {
    sqlx::query(
        "insert into platform_settings (key, value, updated_by) values ($1, $2, $3) \
         on conflict (key) do update set value = excluded.value, updated_by = excluded.updated_by, \
         updated_at = now()",
    )
    .bind(RETENTION_KEY)
    .bind(serde_json::to_value(overrides).unwrap_or_default())
    .bind(updated_by)
    .execute(db)
    .await?;
    Ok(())
}
