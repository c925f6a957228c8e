//! `maintenance.prune`: deletes finished runs (with their steps and events) older than the
//! retention setting, and forgets workers stopped long ago. Scheduled hourly by
//! [`ensure_schedule`], which `serve` calls at start with the configured retention.

use std::time::Duration;

use chrono::Utc;
use engine::schedule::{Missed, NewSchedule};
use engine::{Job, JobError, RunCtx};
use serde::{Deserialize, Serialize};

/// The namespace of the product's own housekeeping runs.
pub const SYSTEM_NAMESPACE: &str = "system";

#[derive(Debug, Clone, Copy, Default)]
pub struct Prune;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneInput {
    /// Keep finished runs this many seconds.
    pub retention_seconds: u64,
    /// Keep synced executions this many seconds (by their start); None keeps them.
    #[serde(default)]
    pub execution_retention_seconds: Option<u64>,
    /// Keep scheduled (`auto_backup`) snapshots this many days unless their environment says
    /// otherwise; None keeps them.
    #[serde(default)]
    pub snapshot_retention_days: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneOutput {
    pub runs_deleted: u64,
    pub workers_forgotten: u64,
    #[serde(default)]
    pub executions_deleted: u64,
    #[serde(default)]
    pub snapshots_deleted: u64,
    /// Promotions left unfinished by a run that ended anyway (DEP-007).
    #[serde(default)]
    pub promotions_settled: u64,
    /// Alerts (and their deliveries) older than the run retention.
    #[serde(default)]
    pub alerts_deleted: u64,
    /// Tenant audit entries past their plan's retention (SEC-009).
    #[serde(default)]
    pub audit_entries_deleted: u64,
    /// Feature overrides that lapsed (ENT-009), each audited as it goes.
    #[serde(default)]
    pub overrides_expired: u64,
}

impl Job for Prune {
    const KIND: &'static str = "maintenance.prune";
    type Input = PruneInput;
    type Output = PruneOutput;

    async fn run(&self, ctx: &mut RunCtx, input: PruneInput) -> Result<PruneOutput, JobError> {
        // What platform admins set at run time wins over the schedule's (server configuration).
        let overrides = domain::usage::retention(ctx.db())
            .await
            .map_err(crate::providers::domain_error)?;
        let days = |d: i32| u64::try_from(d).unwrap_or(1).max(1) * 86_400;
        let input = PruneInput {
            retention_seconds: overrides.runs_days.map_or(input.retention_seconds, days),
            execution_retention_seconds: overrides
                .executions_days
                .map(days)
                .or(input.execution_retention_seconds),
            snapshot_retention_days: overrides.snapshots_days.or(input.snapshot_retention_days),
        };
        let retention = chrono::Duration::from_std(Duration::from_secs(input.retention_seconds))
            .map_err(|_| JobError::permanent("retention_seconds is out of range"))?;
        let cutoff = Utc::now() - retention;
        let mut runs_deleted = 0;
        loop {
            let n = engine::queue::prune(ctx.db(), cutoff, 1000)
                .await
                .map_err(|e| JobError::transient(e.to_string()))?;
            runs_deleted += n;
            if n == 0 || ctx.is_cancelled() {
                break;
            }
        }
        let workers_forgotten = sqlx::query("delete from engine_workers where stopped_at < $1")
            .bind(cutoff)
            .execute(ctx.db())
            .await?
            .rows_affected();
        // Registrations for live event notifications that lapsed long ago (no API process has
        // streamed those namespaces since).
        sqlx::query("delete from engine_watched_namespaces where until < $1")
            .bind(cutoff)
            .execute(ctx.db())
            .await?;
        let alerts_deleted = domain::notifications::prune_alerts(
            ctx.db(),
            Duration::from_secs(input.retention_seconds),
        )
        .await
        .map_err(crate::providers::domain_error)?;
        let mut executions_deleted = 0;
        if let Some(seconds) = input.execution_retention_seconds {
            let retention = chrono::Duration::from_std(Duration::from_secs(seconds))
                .map_err(|_| JobError::permanent("execution_retention_seconds is out of range"))?;
            loop {
                let n = sqlx::query(
                    "delete from env_executions where ctid = any (array(select ctid from env_executions \
                     where started_at < $1 limit 5000))",
                )
                .bind(Utc::now() - retention)
                .execute(ctx.db())
                .await?
                .rows_affected();
                executions_deleted += n;
                if n == 0 || ctx.is_cancelled() {
                    break;
                }
            }
        }
        // Refused-feature records go with the run retention (ENT-011).
        sqlx::query("delete from feature_denials where at < $1")
            .bind(cutoff)
            .execute(ctx.db())
            .await?;
        let overrides_expired = expire_overrides(ctx.db()).await?;
        domain::throttle::prune(ctx.db())
            .await
            .map_err(crate::providers::domain_error)?;
        let audit_entries_deleted = domain::entitlements::prune_audit_by_plan(ctx.db())
            .await
            .map_err(crate::providers::domain_error)?;
        let promotions_settled = domain::promotions::settle_stale(ctx.db())
            .await
            .map_err(crate::providers::domain_error)?;
        let snapshots_deleted = match input.snapshot_retention_days {
            Some(days) => domain::snapshots::prune_auto(ctx.db(), days)
                .await
                .map_err(crate::providers::domain_error)?,
            None => 0,
        };
        ctx.log(
            "info",
            format!(
                "deleted {runs_deleted} runs finished before {cutoff}, {executions_deleted} expired executions \
                 and {snapshots_deleted} expired scheduled snapshots; settled {promotions_settled} stale promotions"
            ),
        )
        .await?;
        Ok(PruneOutput {
            runs_deleted,
            workers_forgotten,
            executions_deleted,
            snapshots_deleted,
            promotions_settled,
            alerts_deleted,
            audit_entries_deleted,
            overrides_expired,
        })
    }
}

/// Removes lapsed overrides, each with an entry in the tenant's and the platform's trail.
async fn expire_overrides(db: &sqlx::PgPool) -> Result<u64, JobError> {
    let mut tx = db.begin().await?;
    let expired = domain::entitlements::expire_overrides(&mut *tx)
        .await
        .map_err(crate::providers::domain_error)?;
    let actor = domain::audit::Actor::system();
    for o in &expired {
        for tenant in [None, Some(o.tenant_id)] {
            domain::audit::Entry::new(tenant, &actor, "entitlement.override_expired", "override")
                .target(o.id)
                .old(o)
                .record(&mut *tx)
                .await
                .map_err(crate::providers::domain_error)?;
        }
    }
    tx.commit().await?;
    Ok(expired.len() as u64)
}

/// Creates or updates the hourly prune schedule with the run, execution and snapshot retentions.
pub async fn ensure_schedule(
    db: &sqlx::PgPool,
    retention: Duration,
    execution_retention: Duration,
    snapshot_retention: Duration,
) -> Result<(), engine::schedule::Error> {
    engine::schedule::upsert(
        db,
        NewSchedule {
            namespace: SYSTEM_NAMESPACE,
            name: "prune-finished-runs",
            cron: "17 * * * *",
            timezone: "UTC",
            kind: Prune::KIND,
            input: serde_json::json!({
                "retention_seconds": retention.as_secs(),
                "execution_retention_seconds": execution_retention.as_secs(),
                "snapshot_retention_days": (snapshot_retention.as_secs() / 86_400).max(1),
            }),
            enabled: true,
            missed: Missed::FireOnce,
        },
    )
    .await?;
    // Drift SLAs: expiry, escalation, warnings, retention (POL-002, POL-007..010).
    engine::schedule::upsert(
        db,
        NewSchedule {
            namespace: SYSTEM_NAMESPACE,
            name: "drift-sla",
            cron: "*/5 * * * *",
            timezone: "UTC",
            kind: <crate::drift::Sla as Job>::KIND,
            input: serde_json::json!({}),
            enabled: true,
            missed: Missed::Skip,
        },
    )
    .await
    .map(|_| ())
}
