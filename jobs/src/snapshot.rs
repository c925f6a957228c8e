//! `environment.snapshot` (SNAP-001..006): a backup whose commit is recorded as a snapshot of
//! the environment, with each workflow's hashes; promotion takes `pre_promotion` and
//! `post_promotion` ones through [`new_run`], schedules take `auto_backup` ones.
//! `environment.restore_bulk` (BULK-003): restores into several environments as child runs.

use domain::snapshots::{self, NewSnapshot, Snapshot, SnapshotKind};
use engine::{Job, JobError, NewRun, RetryPolicy, RunCtx};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::backup::{RestoreInput, back_up, new_restore_run};
use crate::providers::{Deps, domain_error};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotInput {
    pub tenant_id: Uuid,
    pub environment_id: Uuid,
    pub kind: SnapshotKind,
    pub reason: Option<String>,
    /// Who asked, in words (commit messages).
    pub triggered_by: String,
    /// The user who asked, if a user did.
    #[serde(default)]
    pub created_by: Option<Uuid>,
    /// The promotion it belongs to (pre/post-promotion snapshots).
    #[serde(default)]
    pub promotion_id: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct TakeSnapshot {
    pub deps: Deps,
}

/// A snapshot run; it shares the backup's concurrency key (one writer per environment folder).
pub fn new_run(input: &SnapshotInput) -> NewRun {
    NewRun::of::<TakeSnapshot>(input.tenant_id.to_string(), input)
        .concurrency(format!("environment:{}:backup", input.environment_id), 1)
        .labels(json!({"environment_id": input.environment_id, "snapshot_kind": input.kind}))
}

/// Takes a snapshot inside the current run (its steps are `<prefix>:commit` and
/// `<prefix>:record`): used by the snapshot job and before restores.
pub async fn take(
    deps: &Deps,
    ctx: &mut RunCtx,
    input: &SnapshotInput,
    prefix: &str,
) -> Result<Snapshot, JobError> {
    let backed = back_up(
        deps,
        ctx,
        input.tenant_id,
        input.environment_id,
        &input.triggered_by,
        &format!("{prefix}:commit"),
    )
    .await?;
    let Some(commit) = backed.output.head.clone() else {
        return Err(JobError::permanent(
            "the backup left no commit to take a snapshot of",
        ));
    };
    let db = ctx.db().clone();
    let run_id = ctx.run_id;
    let snapshot = ctx
        .step(&format!("{prefix}:record"), || async {
            snapshots::record(
                &db,
                input.tenant_id,
                &NewSnapshot {
                    environment_id: input.environment_id,
                    kind: input.kind,
                    reason: input.reason.as_deref(),
                    run_id,
                    created_by: input.created_by,
                    triggered_by: &input.triggered_by,
                    promotion_id: input.promotion_id,
                    git_commit: &commit,
                    git_path: &backed.path,
                    workflows: &backed.workflows,
                },
            )
            .await
            .map_err(domain_error)
            .map(|s| s.id)
        })
        .await?;
    snapshots::get(&db, input.tenant_id, snapshot)
        .await
        .map_err(domain_error)
}

impl Job for TakeSnapshot {
    const KIND: &'static str = "environment.snapshot";
    type Input = SnapshotInput;
    type Output = Snapshot;

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: std::time::Duration::from_secs(2),
            max_backoff: std::time::Duration::from_secs(60),
        }
    }

    async fn run(&self, ctx: &mut RunCtx, input: SnapshotInput) -> Result<Snapshot, JobError> {
        if input.kind == domain::snapshots::SnapshotKind::AutoBackup {
            refuse_without_scheduled_backups(ctx, &input).await?;
        }
        let snapshot = take(&self.deps, ctx, &input, "snapshot").await?;
        ctx.log(
            "info",
            format!(
                "snapshot {} ({}) of {} workflows at {}",
                snapshot.id, snapshot.kind, snapshot.workflow_count, snapshot.git_commit
            ),
        )
        .await?;
        Ok(snapshot)
    }
}

/// A schedule set up while the plan had scheduled backups keeps firing after a downgrade; its
/// runs then fail at once, saying why, instead of backing up what the plan no longer includes.
async fn refuse_without_scheduled_backups(
    ctx: &RunCtx,
    input: &SnapshotInput,
) -> Result<(), JobError> {
    use domain::entitlements::Feature;
    require_plan(
        ctx,
        input.tenant_id,
        input.environment_id,
        &[Feature::ScheduledBackups, Feature::GitBackup],
        "scheduled backups: upgrade, or remove the schedule from the environment's Git settings",
    )
    .await
}

/// Fails the run for good unless the tenant's plan for the environment's provider grants every
/// one of `features` (a run started, scheduled or retried after a downgrade).
pub(crate) async fn require_plan(
    ctx: &RunCtx,
    tenant_id: Uuid,
    environment_id: Uuid,
    features: &[domain::entitlements::Feature],
    what: &str,
) -> Result<(), JobError> {
    let env = domain::environments::get(ctx.db(), tenant_id, environment_id)
        .await
        .map_err(crate::providers::domain_error)?;
    let mut conn = ctx.db().acquire().await?;
    let ent = domain::entitlements::entitlements(&mut conn, tenant_id)
        .await
        .map_err(crate::providers::domain_error)?;
    if features.iter().all(|&f| ent.allows(f, Some(&env.provider))) {
        return Ok(());
    }
    Err(JobError::permanent(format!(
        "the tenant's plan no longer includes {what}"
    )))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRestoreItem {
    pub environment_id: Uuid,
    /// The snapshot to restore; the latest backup when omitted.
    pub snapshot_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRestoreInput {
    pub tenant_id: Uuid,
    pub items: Vec<BulkRestoreItem>,
    pub triggered_by: String,
    #[serde(default)]
    pub requested_by: Option<Uuid>,
}

/// `environment.restore_bulk` (BULK-003): a restore per environment as child runs, with
/// per-environment outcomes and a partial-failure summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct BulkRestore;

impl Job for BulkRestore {
    const KIND: &'static str = "environment.restore_bulk";
    type Input = BulkRestoreInput;
    type Output = crate::bulk::BulkOutcome;

    async fn run(
        &self,
        ctx: &mut RunCtx,
        input: BulkRestoreInput,
    ) -> Result<Self::Output, JobError> {
        let ids: Vec<Uuid> = input.items.iter().map(|i| i.environment_id).collect();
        let children = input
            .items
            .iter()
            .map(|item| {
                new_restore_run(&RestoreInput {
                    tenant_id: input.tenant_id,
                    environment_id: item.environment_id,
                    workflow_ids: None,
                    snapshot_id: item.snapshot_id,
                    triggered_by: input.triggered_by.clone(),
                    requested_by: input.requested_by,
                })
            })
            .collect();
        crate::bulk::fan_out(ctx, "environment restores", &ids, children).await
    }
}
