//! Promotions (PROMO-001..009, DEP-001..008): the record of each promotion — its state, the
//! preflight's diff, risk and gate results, per-workflow results, rollback — its approvals, what
//! was deployed where, and the credential mappings between environments.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::page::{Page, PageRequest};

text_enum! {
    /// PRD 3.5.2: `pending → pending_approval → approved → running → completed | failed`, plus
    /// `rejected` and `cancelled`.
    pub enum PromotionStatus {
        Pending = "pending",
        PendingApproval = "pending_approval",
        Approved = "approved",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Rejected = "rejected",
        Cancelled = "cancelled",
    }
}

impl PromotionStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Rejected | Self::Cancelled
        )
    }
}

text_enum! {
    /// How a workflow of the source compares with the target (PRD 3.5.2).
    pub enum DiffStatus {
        /// Only in the source.
        Added = "ADDED",
        /// In both; the source differs.
        Modified = "MODIFIED",
        /// Only in the target.
        TargetOnly = "TARGET_ONLY",
        /// The same content (after credential remapping).
        Unchanged = "UNCHANGED",
        /// The target was changed since the last promotion: a conflict.
        TargetHotfix = "TARGET_HOTFIX",
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Promotion {
    pub id: Uuid,
    pub pipeline_id: Uuid,
    pub stage_index: i32,
    pub source_environment_id: Uuid,
    pub target_environment_id: Uuid,
    pub workflow_ids: Vec<String>,
    /// `pending`, `pending_approval`, `approved`, `running`, `completed`, `failed`, `rejected`, `cancelled`.
    pub status: String,
    pub run_id: Option<Uuid>,
    pub requested_by: Option<Uuid>,
    pub requested_by_label: String,
    pub note: Option<String>,
    pub force: bool,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// While its run waits for a time (the scheduled time or the stage's deployment window, not
    /// an approval): when it will start.
    #[serde(default)]
    pub waiting_until: Option<DateTime<Utc>>,
    /// Per workflow: diff status, risk, reasons, counterpart in the target.
    #[schema(value_type = Option<Value>)]
    pub diff: Option<Value>,
    /// Each gate's result.
    #[schema(value_type = Option<Object>)]
    pub gates: Option<Value>,
    pub risk: Option<String>,
    /// Per workflow: what was done in the target.
    #[schema(value_type = Option<Value>)]
    pub results: Option<Value>,
    /// What a rollback put back, when one ran.
    #[schema(value_type = Option<Object>)]
    pub rollback: Option<Value>,
    pub pre_snapshot_id: Option<Uuid>,
    pub post_snapshot_id: Option<Uuid>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, pipeline_id, stage_index, source_environment_id, target_environment_id, workflow_ids, \
     status, run_id, requested_by, requested_by_label, note, force, scheduled_at, \
     (select r.run_at from engine_runs r where r.id = run_id and r.status = 'waiting' \
         and r.wait_signal is null and not r.wait_children) as waiting_until, \
     diff, gates, risk, results, rollback, \
     pre_snapshot_id, post_snapshot_id, error, created_at, updated_at, started_at, finished_at";

pub struct NewPromotion<'a> {
    pub id: Uuid,
    pub pipeline_id: Uuid,
    pub stage_index: i32,
    pub source_environment_id: Uuid,
    pub target_environment_id: Uuid,
    pub workflow_ids: &'a [String],
    pub requested_by: Option<Uuid>,
    pub requested_by_label: &'a str,
    pub note: Option<&'a str>,
    pub force: bool,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub run_id: Uuid,
}

pub async fn create(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    new: &NewPromotion<'_>,
) -> Result<Promotion> {
    Ok(sqlx::query_as(sqlf!(
        "insert into promotions (id, tenant_id, pipeline_id, stage_index, source_environment_id, target_environment_id, \
             workflow_ids, status, run_id, requested_by, requested_by_label, note, force, scheduled_at) \
         values ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11, $12, $13) returning {COLUMNS}"
    ))
    .bind(new.id)
    .bind(tenant_id)
    .bind(new.pipeline_id)
    .bind(new.stage_index)
    .bind(new.source_environment_id)
    .bind(new.target_environment_id)
    .bind(new.workflow_ids)
    .bind(new.run_id)
    .bind(new.requested_by)
    .bind(new.requested_by_label)
    .bind(new.note)
    .bind(new.force)
    .bind(new.scheduled_at)
    .fetch_one(db)
    .await?)
}

pub async fn get(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Promotion> {
    sqlx::query_as(sqlf!(
        "select {COLUMNS} from promotions where tenant_id = $1 and id = $2 and deleted_at is null"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("promotion"))
}

/// Locks the promotion row for a state change.
pub async fn lock(db: &mut PgConnection, tenant_id: Uuid, id: Uuid) -> Result<Promotion> {
    sqlx::query_as(sqlf!(
        "select {COLUMNS} from promotions where tenant_id = $1 and id = $2 and deleted_at is null for update"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("promotion"))
}

#[derive(Debug, Default, Clone)]
pub struct PromotionFilter {
    pub status: Option<PromotionStatus>,
    pub pipeline_id: Option<Uuid>,
    /// Source or target.
    pub environment_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// DEP-001: promotions (deployments), newest first, filtered.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    filter: &PromotionFilter,
    page: PageRequest,
) -> Result<Page<Promotion>> {
    let rows = sqlx::query_as(sqlf!(
        "select {COLUMNS} from promotions where tenant_id = $1 and deleted_at is null \
         and ($2::text is null or status = $2) and ($3::uuid is null or pipeline_id = $3) \
         and ($4::uuid is null or source_environment_id = $4 or target_environment_id = $4) \
         and ($5::timestamptz is null or created_at >= $5) and ($6::timestamptz is null or created_at < $6) \
         and ($7::uuid is null or id < $7) order by id desc limit $8"
    ))
    .bind(tenant_id)
    .bind(filter.status.map(|s| s.as_str()))
    .bind(filter.pipeline_id)
    .bind(filter.environment_id)
    .bind(filter.since)
    .bind(filter.until)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |p: &Promotion| p.id))
}

/// Moves a promotion to `status` (timestamps follow: started at `running`, finished at a final
/// state). A final promotion never changes again.
pub async fn set_status(
    db: impl PgExecutor<'_>,
    id: Uuid,
    status: PromotionStatus,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "update promotions set status = $2, error = coalesce($3, error), updated_at = now(), \
             started_at = case when $2 = 'running' then coalesce(started_at, now()) else started_at end, \
             finished_at = case when $2 in ('completed', 'failed', 'rejected', 'cancelled') then now() else finished_at end \
         where id = $1 and status not in ('completed', 'failed', 'rejected', 'cancelled')",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn record_preflight(
    db: impl PgExecutor<'_>,
    id: Uuid,
    diff: &Value,
    gates: &Value,
    risk: &str,
) -> Result<()> {
    sqlx::query(
        "update promotions set diff = $2, gates = $3, risk = $4, updated_at = now() where id = $1",
    )
    .bind(id)
    .bind(diff)
    .bind(gates)
    .bind(risk)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn record_outcome(
    db: impl PgExecutor<'_>,
    id: Uuid,
    results: Option<&Value>,
    rollback: Option<&Value>,
) -> Result<()> {
    sqlx::query(
        "update promotions set results = coalesce($2, results), rollback = coalesce($3, rollback), updated_at = now() where id = $1",
    )
    .bind(id)
    .bind(results)
    .bind(rollback)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn set_snapshot(
    db: impl PgExecutor<'_>,
    id: Uuid,
    pre: Option<Uuid>,
    post: Option<Uuid>,
) -> Result<()> {
    sqlx::query(
        "update promotions set pre_snapshot_id = coalesce($2, pre_snapshot_id), post_snapshot_id = coalesce($3, post_snapshot_id), \
         updated_at = now() where id = $1",
    )
    .bind(id)
    .bind(pre)
    .bind(post)
    .execute(db)
    .await?;
    Ok(())
}

/// DEP-006: hides a finished promotion from lists (kept for the audit trail); one still in
/// progress must be cancelled first.
pub async fn soft_delete(db: &mut PgConnection, tenant_id: Uuid, id: Uuid) -> Result<Promotion> {
    let p = lock(&mut *db, tenant_id, id).await?;
    if !PromotionStatus::parse(&p.status).is_some_and(PromotionStatus::is_final) {
        return Err(Error::conflict(
            "promotion_in_progress",
            format!(
                "the promotion is {}; cancel it before deleting it",
                p.status
            ),
        ));
    }
    sqlx::query("update promotions set deleted_at = now(), updated_at = now() where id = $1")
        .bind(id)
        .execute(&mut *db)
        .await?;
    Ok(p)
}

/// DEP-007: promotions left in a non-final state by a run that ended anyway (a run failed for
/// good or was cancelled while its worker was gone) take the run's outcome.
pub async fn settle_stale(db: impl PgExecutor<'_>) -> Result<u64> {
    Ok(sqlx::query(
        "update promotions p set status = case r.status when 'cancelled' then 'cancelled' when 'succeeded' then 'completed' else 'failed' end, \
             error = coalesce(p.error, r.error->>'message', 'the run ended without finishing the promotion'), \
             finished_at = coalesce(r.finished_at, now()), updated_at = now() \
         from engine_runs r where r.id = p.run_id and r.status in ('succeeded', 'failed', 'cancelled') \
           and p.status not in ('completed', 'failed', 'rejected', 'cancelled')",
    )
    .execute(db)
    .await?
    .rows_affected())
}

// ---- approvals -------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Approval {
    pub user_id: Uuid,
    pub user_label: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn approvals(db: impl PgExecutor<'_>, promotion_id: Uuid) -> Result<Vec<Approval>> {
    Ok(sqlx::query_as(
        "select user_id, user_label, decision, comment, created_at from promotion_approvals \
         where promotion_id = $1 order by created_at",
    )
    .bind(promotion_id)
    .fetch_all(db)
    .await?)
}

/// Records a decision; one per user and promotion (a second one is a conflict). Returns how
/// many approvals the promotion has now.
pub async fn decide(
    db: &mut PgConnection,
    tenant_id: Uuid,
    promotion_id: Uuid,
    user_id: Uuid,
    user_label: &str,
    approve: bool,
    comment: Option<&str>,
) -> Result<i64> {
    let done = sqlx::query(
        "insert into promotion_approvals (promotion_id, tenant_id, user_id, user_label, decision, comment) \
         values ($1, $2, $3, $4, $5, $6) on conflict do nothing",
    )
    .bind(promotion_id)
    .bind(tenant_id)
    .bind(user_id)
    .bind(user_label)
    .bind(if approve { "approve" } else { "reject" })
    .bind(comment)
    .execute(&mut *db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::conflict(
            "already_decided",
            "you have already approved or rejected this promotion",
        ));
    }
    Ok(sqlx::query_scalar(
        "select count(*) from promotion_approvals where promotion_id = $1 and decision = 'approve'",
    )
    .bind(promotion_id)
    .fetch_one(&mut *db)
    .await?)
}

// ---- deployed workflows ----------------------------------------------------------------------

/// Where a source workflow was last deployed in a target, and the hash of the copy WorkflowOps
/// last wrote there: the deployment's, or a later restore's or drift revert's.
#[derive(Debug, Clone, FromRow)]
pub struct Deployed {
    pub source_workflow_id: String,
    pub target_workflow_id: String,
    pub source_hash: String,
    pub target_hash: String,
}

/// The deployments from a source into a target. A target copy that differs from `target_hash`
/// was changed outside WorkflowOps (PROMO-003, `TARGET_HOTFIX`), so `target_hash` follows every
/// write WorkflowOps made to the copy since: a drift revert records its own
/// ([`record_written`]); a restore of a snapshot (a rollback) wrote the snapshot's content of
/// every workflow its outcome says it updated or found unchanged, whose hash the snapshot holds.
pub async fn deployed(
    db: impl PgExecutor<'_>,
    source_environment_id: Uuid,
    target_environment_id: Uuid,
) -> Result<HashMap<String, Deployed>> {
    let rows: Vec<Deployed> = sqlx::query_as(
        "select d.source_workflow_id, d.target_workflow_id, d.source_hash, coalesce(r.hash, d.target_hash) as target_hash \
         from deployed_workflows d \
         left join lateral ( \
             select w->>'hash' as hash from restores r \
             join engine_runs x on x.id = r.run_id \
             join snapshots s on s.id = r.snapshot_id \
             cross join lateral jsonb_array_elements(s.workflows) w \
             where r.tenant_id = d.tenant_id and r.environment_id = d.target_environment_id and r.created_at > d.deployed_at \
               and w->>'id' = d.target_workflow_id \
               and x.output->'workflows'->d.target_workflow_id->>'result' in ('updated', 'unchanged') \
             order by r.created_at desc limit 1) r on true \
         where d.source_environment_id = $1 and d.target_environment_id = $2",
    )
    .bind(source_environment_id)
    .bind(target_environment_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|d| (d.source_workflow_id.clone(), d))
        .collect())
}

#[allow(clippy::too_many_arguments)]
pub async fn record_deployed(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    source_environment_id: Uuid,
    source_workflow_id: &str,
    target_environment_id: Uuid,
    target_workflow_id: &str,
    source_hash: &str,
    target_hash: &str,
    promotion_id: Uuid,
) -> Result<()> {
    sqlx::query(
        "insert into deployed_workflows (tenant_id, source_environment_id, source_workflow_id, target_environment_id, \
             target_workflow_id, source_hash, target_hash, promotion_id) values ($1, $2, $3, $4, $5, $6, $7, $8) \
         on conflict (source_environment_id, source_workflow_id, target_environment_id) do update set \
             target_workflow_id = excluded.target_workflow_id, source_hash = excluded.source_hash, \
             target_hash = excluded.target_hash, promotion_id = excluded.promotion_id, deployed_at = now()",
    )
    .bind(tenant_id)
    .bind(source_environment_id)
    .bind(source_workflow_id)
    .bind(target_environment_id)
    .bind(target_workflow_id)
    .bind(source_hash)
    .bind(target_hash)
    .bind(promotion_id)
    .execute(db)
    .await?;
    Ok(())
}

/// WorkflowOps wrote `hash` over the target copy `target_workflow_id` (a drift revert), or
/// replaced it with `written_workflow_id` (a drift replace recreating a deleted copy): the
/// deployments of that copy take it as theirs, so the next promotion does not mistake it for a
/// hotfix. `deployed_at` moves too: it orders this write against later restores.
pub async fn record_written(
    db: impl PgExecutor<'_>,
    target_environment_id: Uuid,
    target_workflow_id: &str,
    written_workflow_id: &str,
    hash: &str,
) -> Result<u64> {
    Ok(sqlx::query(
        "update deployed_workflows set target_workflow_id = $3, target_hash = $4, deployed_at = now() \
         where target_environment_id = $1 and target_workflow_id = $2",
    )
    .bind(target_environment_id)
    .bind(target_workflow_id)
    .bind(written_workflow_id)
    .bind(hash)
    .execute(db)
    .await?
    .rows_affected())
}

/// Forgets deployments of a promotion (after it was rolled back).
pub async fn forget_deployed(db: impl PgExecutor<'_>, promotion_id: Uuid) -> Result<()> {
    sqlx::query("delete from deployed_workflows where promotion_id = $1")
        .bind(promotion_id)
        .execute(db)
        .await?;
    Ok(())
}

// ---- credential mappings ---------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct CredentialMapping {
    pub credential_type: String,
    pub source_credential_id: String,
    pub source_name: String,
    pub target_credential_id: String,
    pub target_name: String,
    pub updated_by: Option<Uuid>,
    pub updated_at: DateTime<Utc>,
}

pub async fn mappings(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    source: Uuid,
    target: Uuid,
) -> Result<Vec<CredentialMapping>> {
    Ok(sqlx::query_as(
        "select credential_type, source_credential_id, source_name, target_credential_id, target_name, updated_by, updated_at \
         from credential_mappings where tenant_id = $1 and source_environment_id = $2 and target_environment_id = $3 \
         order by credential_type, source_name",
    )
    .bind(tenant_id)
    .bind(source)
    .bind(target)
    .fetch_all(db)
    .await?)
}

pub struct NewMapping<'a> {
    pub credential_type: &'a str,
    pub source_credential_id: &'a str,
    pub source_name: &'a str,
    pub target_credential_id: &'a str,
    pub target_name: &'a str,
}

/// Sets (or replaces) one mapping; returns the previous one for the audit trail.
pub async fn put_mapping(
    db: &mut PgConnection,
    tenant_id: Uuid,
    source: Uuid,
    target: Uuid,
    by: Option<Uuid>,
    m: &NewMapping<'_>,
) -> Result<Option<CredentialMapping>> {
    let old: Option<CredentialMapping> = sqlx::query_as(
        "select credential_type, source_credential_id, source_name, target_credential_id, target_name, updated_by, updated_at \
         from credential_mappings where source_environment_id = $1 and target_environment_id = $2 \
         and credential_type = $3 and source_credential_id = $4",
    )
    .bind(source)
    .bind(target)
    .bind(m.credential_type)
    .bind(m.source_credential_id)
    .fetch_optional(&mut *db)
    .await?;
    sqlx::query(
        "insert into credential_mappings (tenant_id, source_environment_id, target_environment_id, credential_type, \
             source_credential_id, source_name, target_credential_id, target_name, updated_by) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         on conflict (source_environment_id, target_environment_id, credential_type, source_credential_id) do update set \
             source_name = excluded.source_name, target_credential_id = excluded.target_credential_id, \
             target_name = excluded.target_name, updated_by = excluded.updated_by, updated_at = now()",
    )
    .bind(tenant_id)
    .bind(source)
    .bind(target)
    .bind(m.credential_type)
    .bind(m.source_credential_id)
    .bind(m.source_name)
    .bind(m.target_credential_id)
    .bind(m.target_name)
    .bind(by)
    .execute(&mut *db)
    .await?;
    Ok(old)
}

pub async fn delete_mapping(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    source: Uuid,
    target: Uuid,
    credential_type: &str,
    source_credential_id: &str,
) -> Result<()> {
    let done = sqlx::query(
        "delete from credential_mappings where tenant_id = $1 and source_environment_id = $2 and target_environment_id = $3 \
         and credential_type = $4 and source_credential_id = $5",
    )
    .bind(tenant_id)
    .bind(source)
    .bind(target)
    .bind(credential_type)
    .bind(source_credential_id)
    .execute(db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("credential mapping"));
    }
    Ok(())
}
