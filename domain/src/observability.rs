//! Observability (OBS-001..024): execution KPIs with per-bucket series for sparklines and the
//! change from the previous period, error groups, the system status with insights, and each
//! environment's health — all from what syncs and health checks recorded.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgExecutor, PgPool};
use uuid::Uuid;

use crate::error::{Error, Result};

/// The time ranges a dashboard offers (OBS-011).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Range {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "6h")]
    SixHours,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
    #[serde(rename = "90d")]
    Quarter,
}

impl Range {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "1h" => Self::Hour,
            "6h" => Self::SixHours,
            "24h" => Self::Day,
            "7d" => Self::Week,
            "30d" => Self::Month,
            "90d" => Self::Quarter,
            _ => {
                return Err(Error::invalid(
                    "range",
                    "must be 1h, 6h, 24h, 7d, 30d or 90d",
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::SixHours => "6h",
            Self::Day => "24h",
            Self::Week => "7d",
            Self::Month => "30d",
            Self::Quarter => "90d",
        }
    }

    pub fn duration(self) -> Duration {
        match self {
            Self::Hour => Duration::hours(1),
            Self::SixHours => Duration::hours(6),
            Self::Day => Duration::hours(24),
            Self::Week => Duration::days(7),
            Self::Month => Duration::days(30),
            Self::Quarter => Duration::days(90),
        }
    }
}

/// Buckets in a series (sparkline points).
const BUCKETS: i32 = 24;

#[derive(Debug, Clone, Default, Serialize, FromRow, utoipa::ToSchema)]
pub struct Totals {
    pub executions: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Succeeded / finished, 0–1 (null without finished executions).
    pub success_rate: Option<f64>,
    pub avg_duration_ms: Option<f64>,
    pub p95_duration_ms: Option<f64>,
    /// Workflows with at least one failed execution.
    pub failing_workflows: i64,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub executions: i64,
    pub succeeded: i64,
    pub avg_duration_ms: Option<f64>,
}

/// KPIs of a range (OBS-006..010): totals now and in the previous period of the same length,
/// and a series of buckets for sparklines.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Kpis {
    pub range: Range,
    pub since: DateTime<Utc>,
    pub current: Totals,
    pub previous: Totals,
    /// Change of the failure rate from the previous period, in percent (OBS-003).
    pub failure_delta_pct: Option<f64>,
    pub series: Vec<Bucket>,
}

async fn totals(
    db: impl PgExecutor<'_>,
    tenant: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Totals> {
    let mut t: Totals = sqlx::query_as(
        "select count(*) as executions, count(*) filter (where status = 'success') as succeeded, \
                count(*) filter (where status in ('error', 'crashed', 'failed')) as failed, \
                null::float8 as success_rate, \
                avg(extract(epoch from stopped_at - started_at) * 1000)::float8 as avg_duration_ms, \
                (percentile_cont(0.95) within group (order by extract(epoch from stopped_at - started_at) * 1000))::float8 as p95_duration_ms, \
                count(distinct (environment_id, workflow_id)) filter (where status in ('error', 'crashed', 'failed')) as failing_workflows \
         from env_executions where tenant_id = $1 and started_at >= $2 and started_at < $3",
    )
    .bind(tenant)
    .bind(from)
    .bind(to)
    .fetch_one(db)
    .await?;
    let finished = t.succeeded + t.failed;
    t.success_rate = (finished > 0).then(|| t.succeeded as f64 / finished as f64);
    Ok(t)
}

pub async fn kpis(db: &PgPool, tenant: Uuid, range: Range, now: DateTime<Utc>) -> Result<Kpis> {
    let since = now - range.duration();
    let current = totals(db, tenant, since, now).await?;
    let previous = totals(db, tenant, since - range.duration(), since).await?;
    let failure = |t: &Totals| t.success_rate.map(|r| 1.0 - r);
    let failure_delta_pct = match (failure(&current), failure(&previous)) {
        (Some(c), Some(p)) if p > 0.0 => Some((c - p) / p * 100.0),
        _ => None,
    };
    let step = range.duration() / BUCKETS;
    let series: Vec<Bucket> = sqlx::query_as(
        "with b as (select generate_series(0, $4 - 1) as i) \
         select $2 + b.i * $3 as start, count(e.provider_id) as executions, \
                count(e.provider_id) filter (where e.status = 'success') as succeeded, \
                avg(extract(epoch from e.stopped_at - e.started_at) * 1000)::float8 as avg_duration_ms \
         from b left join env_executions e on e.tenant_id = $1 \
              and e.started_at >= $2 + b.i * $3 and e.started_at < $2 + (b.i + 1) * $3 \
         group by b.i order by b.i",
    )
    .bind(tenant)
    .bind(since)
    .bind(step)
    .bind(BUCKETS)
    .fetch_all(db)
    .await?;
    Ok(Kpis {
        range,
        since,
        current,
        previous,
        failure_delta_pct,
        series,
    })
}

/// Failed executions grouped by their error (OBS-012..016).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct ErrorGroup {
    /// The error's first line with numbers and ids masked: what makes errors "the same".
    pub key: String,
    pub count: i64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub workflows: i64,
    pub sample: Option<String>,
}

pub async fn error_groups(
    db: &PgPool,
    tenant: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<ErrorGroup>> {
    Ok(sqlx::query_as(
        "select key, count(*) as count, min(started_at) as first_seen, max(started_at) as last_seen, \
                count(distinct (environment_id, workflow_id)) as workflows, min(error_message) as sample \
         from (select e.*, regexp_replace(split_part(coalesce(e.error_message, 'failed without a message'), E'\\n', 1), \
                      '[0-9a-f]{8,}|[0-9]+', '#', 'g') as key \
               from env_executions e where e.tenant_id = $1 and e.started_at >= $2 \
                 and e.status in ('error', 'crashed', 'failed')) x \
         group by key order by count(*) desc, key limit 20",
    )
    .bind(tenant)
    .bind(since)
    .fetch_all(db)
    .await?)
}

/// One thing worth acting on (OBS-002).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Insight {
    /// `critical`, `warning` or `info`.
    pub severity: &'static str,
    pub message: String,
}

/// An environment's health at a glance (OBS-017..023).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct EnvironmentHealth {
    pub environment_id: Uuid,
    pub name: String,
    pub class: String,
    /// `healthy`, `degraded` (drift not yet reconciled), `unreachable`, or `unknown` (never
    /// checked yet).
    pub status: String,
    pub health_status: String,
    pub last_latency_ms: Option<i32>,
    /// Healthy checks / checks in the last 24 h, in percent.
    pub uptime_pct: Option<f64>,
    pub active_workflows: i64,
    pub total_workflows: i64,
    pub last_deployment_status: Option<String>,
    /// Drift incidents not yet reconciled (a reconciled one waits only to be closed).
    pub open_incidents: i64,
    /// Credentials referenced by workflows but unknown to the instance.
    pub missing_credentials: i64,
}

pub async fn environment_health(db: &PgPool, tenant: Uuid) -> Result<Vec<EnvironmentHealth>> {
    Ok(sqlx::query_as(
        "select e.id as environment_id, e.name, e.class, \
                case when e.health_status in ('unreachable', 'auth_failed', 'error') then 'unreachable' \
                     when exists (select 1 from drift_incidents i where i.environment_id = e.id and i.status not in ('reconciled', 'closed')) then 'degraded' \
                     when e.health_status = 'unknown' then 'unknown' \
                     else 'healthy' end as status, \
                e.health_status, e.last_latency_ms, \
                (select 100.0 * count(*) filter (where h.status = 'healthy') / nullif(count(*), 0) \
                   from environment_health_checks h where h.environment_id = e.id and h.checked_at > now() - interval '24 hours')::float8 as uptime_pct, \
                (select count(*) from env_workflows w where w.environment_id = e.id and w.deleted_at is null and w.active) as active_workflows, \
                (select count(*) from env_workflows w where w.environment_id = e.id and w.deleted_at is null) as total_workflows, \
                (select p.status from promotions p where p.target_environment_id = e.id and p.deleted_at is null order by p.id desc limit 1) as last_deployment_status, \
                (select count(*) from drift_incidents i where i.environment_id = e.id and i.status not in ('reconciled', 'closed')) as open_incidents, \
                (select count(*) from env_credentials c where c.environment_id = e.id and c.source = 'derived' and c.deleted_at is null) as missing_credentials \
         from environments e where e.tenant_id = $1 order by case e.class when 'dev' then 0 when 'staging' then 1 else 2 end, lower(e.name)",
    )
    .bind(tenant)
    .fetch_all(db)
    .await?)
}

/// The tenant's status (OBS-001) with insights (OBS-002), the failing workflows (OBS-004) and
/// the last failed deployment (OBS-005).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// `healthy`, `degraded` or `critical`.
    pub status: &'static str,
    pub insights: Vec<Insight>,
    pub kpis: Kpis,
    pub errors: Vec<ErrorGroup>,
    pub environments: Vec<EnvironmentHealth>,
    pub last_failed_deployment: Option<LastFailed>,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct LastFailed {
    pub promotion_id: Uuid,
    pub target_environment_id: Uuid,
    pub error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn overview(
    db: &PgPool,
    tenant: Uuid,
    range: Range,
    now: DateTime<Utc>,
) -> Result<Overview> {
    let kpis = kpis(db, tenant, range, now).await?;
    let errors = error_groups(db, tenant, kpis.since).await?;
    let environments = environment_health(db, tenant).await?;
    let last_failed_deployment: Option<LastFailed> = sqlx::query_as(
        "select id as promotion_id, target_environment_id, error, finished_at from promotions \
         where tenant_id = $1 and status = 'failed' and deleted_at is null order by id desc limit 1",
    )
    .bind(tenant)
    .fetch_optional(db)
    .await?;
    let mut insights = Vec::new();
    for e in &environments {
        if e.status == "unreachable" {
            insights.push(Insight {
                severity: "critical",
                message: format!("{} is not reachable ({})", e.name, e.health_status),
            });
        }
        if e.open_incidents > 0 {
            insights.push(Insight {
                severity: if e.class == "production" {
                    "critical"
                } else {
                    "warning"
                },
                message: format!("{} has {} open drift incident(s)", e.name, e.open_incidents),
            });
        }
        if e.missing_credentials > 0 {
            insights.push(Insight {
                severity: "warning",
                message: format!(
                    "{} has {} credential(s) its workflows use but the instance lacks",
                    e.name, e.missing_credentials
                ),
            });
        }
    }
    if let Some(rate) = kpis.current.success_rate
        && rate < 0.95
    {
        insights.push(Insight {
            severity: if rate < 0.8 { "critical" } else { "warning" },
            message: format!(
                "{:.1}% of executions failed in the last {} ({} workflow(s) failing)",
                (1.0 - rate) * 100.0,
                range.as_str(),
                kpis.current.failing_workflows
            ),
        });
    }
    if let Some(d) = kpis.failure_delta_pct
        && d > 20.0
    {
        insights.push(Insight {
            severity: "warning",
            message: format!(
                "the failure rate rose {d:.0}% from the previous {}",
                range.as_str()
            ),
        });
    }
    if let Some(f) = &last_failed_deployment {
        insights.push(Insight {
            severity: "info",
            message: format!(
                "the last failed deployment: {}",
                f.error
                    .clone()
                    .unwrap_or_else(|| "no reason recorded".into())
            ),
        });
    }
    let status = if insights.iter().any(|i| i.severity == "critical") {
        "critical"
    } else if insights.iter().any(|i| i.severity == "warning") {
        "degraded"
    } else {
        "healthy"
    };
    Ok(Overview {
        status,
        insights,
        kpis,
        errors,
        environments,
        last_failed_deployment,
    })
}

/// One workflow's executions in a range (EXEC-010/011).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct WorkflowStats {
    pub environment_id: Uuid,
    pub environment_name: String,
    pub workflow_id: String,
    pub workflow_name: Option<String>,
    pub executions: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub success_rate: Option<f64>,
    pub avg_duration_ms: Option<f64>,
    pub p50_duration_ms: Option<f64>,
    pub p95_duration_ms: Option<f64>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_failure_message: Option<String>,
}

/// Execution analytics (EXEC-006..012): totals with p50/p95 and per-workflow rows, most
/// executed first, optionally for one environment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExecutionAnalytics {
    pub range: Range,
    pub since: DateTime<Utc>,
    pub totals: Totals,
    pub p50_duration_ms: Option<f64>,
    pub workflows: Vec<WorkflowStats>,
}

pub async fn execution_analytics(
    db: &PgPool,
    tenant: Uuid,
    environment_id: Option<Uuid>,
    range: Range,
    now: DateTime<Utc>,
) -> Result<ExecutionAnalytics> {
    let since = now - range.duration();
    let mut workflows: Vec<WorkflowStats> = sqlx::query_as(
        "select e.environment_id, env.name as environment_name, e.workflow_id,                 (select w.name from env_workflows w where w.environment_id = e.environment_id and w.provider_id = e.workflow_id) as workflow_name,                 count(*) as executions, count(*) filter (where e.status = 'success') as succeeded,                 count(*) filter (where e.status in ('error', 'crashed', 'failed')) as failed, null::float8 as success_rate,                 avg(extract(epoch from e.stopped_at - e.started_at) * 1000)::float8 as avg_duration_ms,                 (percentile_cont(0.5) within group (order by extract(epoch from e.stopped_at - e.started_at) * 1000))::float8 as p50_duration_ms,                 (percentile_cont(0.95) within group (order by extract(epoch from e.stopped_at - e.started_at) * 1000))::float8 as p95_duration_ms,                 max(e.started_at) filter (where e.status in ('error', 'crashed', 'failed')) as last_failure_at,                 (array_agg(e.error_message order by e.started_at desc) filter (where e.status in ('error', 'crashed', 'failed')))[1] as last_failure_message          from env_executions e join environments env on env.id = e.environment_id          where e.tenant_id = $1 and e.started_at >= $2 and ($3::uuid is null or e.environment_id = $3) and e.workflow_id is not null          group by e.environment_id, env.name, e.workflow_id order by count(*) desc, e.workflow_id limit 500",
    )
    .bind(tenant)
    .bind(since)
    .bind(environment_id)
    .fetch_all(db)
    .await?;
    for w in &mut workflows {
        let finished = w.succeeded + w.failed;
        w.success_rate = (finished > 0).then(|| w.succeeded as f64 / finished as f64);
    }
    let mut totals: Totals = sqlx::query_as(
        "select count(*) as executions, count(*) filter (where status = 'success') as succeeded,                 count(*) filter (where status in ('error', 'crashed', 'failed')) as failed, null::float8 as success_rate,                 avg(extract(epoch from stopped_at - started_at) * 1000)::float8 as avg_duration_ms,                 (percentile_cont(0.95) within group (order by extract(epoch from stopped_at - started_at) * 1000))::float8 as p95_duration_ms,                 count(distinct (environment_id, workflow_id)) filter (where status in ('error', 'crashed', 'failed')) as failing_workflows          from env_executions where tenant_id = $1 and started_at >= $2 and ($3::uuid is null or environment_id = $3)",
    )
    .bind(tenant)
    .bind(since)
    .bind(environment_id)
    .fetch_one(db)
    .await?;
    let finished = totals.succeeded + totals.failed;
    totals.success_rate = (finished > 0).then(|| totals.succeeded as f64 / finished as f64);
    let p50_duration_ms: Option<f64> = sqlx::query_scalar(
        "select (percentile_cont(0.5) within group (order by extract(epoch from stopped_at - started_at) * 1000))::float8          from env_executions where tenant_id = $1 and started_at >= $2 and ($3::uuid is null or environment_id = $3)",
    )
    .bind(tenant)
    .bind(since)
    .bind(environment_id)
    .fetch_one(db)
    .await?;
    Ok(ExecutionAnalytics {
        range,
        since,
        totals,
        p50_duration_ms,
        workflows,
    })
}

/// Points of a sparkline (`x,y …`) for values in a `width`×`height` box; empty for no data.
pub fn sparkline(values: &[f64], width: f64, height: f64) -> String {
    if values.is_empty() {
        return String::new();
    }
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let step = if values.len() > 1 {
        width / (values.len() - 1) as f64
    } else {
        0.0
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let y = if max > 0.0 {
                height - v / max * height
            } else {
                height
            };
            format!("{:.1},{:.1}", i as f64 * step, y)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_sparklines_scale() {
        assert_eq!(Range::parse("7d").ok(), Some(Range::Week));
        assert!(Range::parse("2w").is_err());
        assert_eq!(
            sparkline(&[0.0, 5.0, 10.0], 100.0, 20.0),
            "0.0,20.0 50.0,10.0 100.0,0.0"
        );
        assert_eq!(sparkline(&[0.0, 0.0], 10.0, 5.0), "0.0,5.0 10.0,5.0");
        assert_eq!(sparkline(&[], 10.0, 5.0), "");
    }
}
