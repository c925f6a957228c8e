//! Snapshots (SNAP-001..012): an environment's workflows at a moment, stored in Git (the commit
//! a backup made or found current) and indexed here with each workflow's hashes, so snapshots are
//! listed, compared and previewed without reading Git; restores are tracked against them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::page::{Page, PageRequest};

text_enum! {
    /// Why a snapshot was taken (PRD 3.7.1).
    pub enum SnapshotKind {
        ManualBackup = "manual_backup",
        AutoBackup = "auto_backup",
        PrePromotion = "pre_promotion",
        PostPromotion = "post_promotion",
        PreRestore = "pre_restore",
    }
}

/// One workflow in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotWorkflow {
    pub id: String,
    pub name: String,
    /// Content hash (what the workflow does).
    pub hash: String,
    /// Hash of the stored form (also node ids, positions, webhook ids).
    pub storage_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Snapshot {
    pub id: Uuid,
    pub environment_id: Uuid,
    /// `manual_backup`, `auto_backup`, `pre_promotion`, `post_promotion` or `pre_restore`.
    pub kind: String,
    pub reason: Option<String>,
    pub run_id: Uuid,
    pub created_by: Option<Uuid>,
    pub triggered_by: String,
    pub promotion_id: Option<Uuid>,
    pub git_commit: String,
    pub git_path: String,
    pub workflow_count: i32,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, environment_id, kind, reason, run_id, created_by, triggered_by, promotion_id, \
     git_commit, git_path, workflow_count, created_at";

pub struct NewSnapshot<'a> {
    pub environment_id: Uuid,
    pub kind: SnapshotKind,
    pub reason: Option<&'a str>,
    pub run_id: Uuid,
    pub created_by: Option<Uuid>,
    pub triggered_by: &'a str,
    pub promotion_id: Option<Uuid>,
    pub git_commit: &'a str,
    pub git_path: &'a str,
    pub workflows: &'a [SnapshotWorkflow],
}

/// Records a snapshot; a run records at most one (a retried run gets the first one back).
pub async fn record(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    new: &NewSnapshot<'_>,
) -> Result<Snapshot> {
    let workflows = serde_json::to_value(new.workflows).unwrap_or(Value::Array(Vec::new()));
    Ok(sqlx::query_as(sqlf!(
        "with ins as ( \
             insert into snapshots (id, tenant_id, environment_id, kind, reason, run_id, created_by, triggered_by, \
                                    promotion_id, git_commit, git_path, workflow_count, workflows) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             on conflict (run_id, kind) do nothing returning {COLUMNS}) \
         select {COLUMNS} from ins union all select {COLUMNS} from snapshots where run_id = $6 and kind = $4 limit 1"
    ))
    .bind(crate::ids::new_id())
    .bind(tenant_id)
    .bind(new.environment_id)
    .bind(new.kind.as_str())
    .bind(new.reason)
    .bind(new.run_id)
    .bind(new.created_by)
    .bind(new.triggered_by)
    .bind(new.promotion_id)
    .bind(new.git_commit)
    .bind(new.git_path)
    .bind(i32::try_from(new.workflows.len()).unwrap_or(i32::MAX))
    .bind(workflows)
    .fetch_one(db)
    .await?)
}

pub async fn get(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Snapshot> {
    sqlx::query_as(sqlf!(
        "select {COLUMNS} from snapshots where tenant_id = $1 and id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("snapshot"))
}

/// The snapshot's workflows, by id.
pub async fn workflows(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<BTreeMap<String, SnapshotWorkflow>> {
    let value: Option<Value> =
        sqlx::query_scalar("select workflows from snapshots where tenant_id = $1 and id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(db)
            .await?;
    let list: Vec<SnapshotWorkflow> = value
        .ok_or(Error::not_found("snapshot"))
        .map(|v| serde_json::from_value(v).unwrap_or_default())?;
    Ok(list.into_iter().map(|w| (w.id.clone(), w)).collect())
}

/// SNAP-003: an environment's snapshots, newest first (ids are UUIDv7: creation order).
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    kind: Option<SnapshotKind>,
    page: PageRequest,
) -> Result<Page<Snapshot>> {
    let rows: Vec<Snapshot> = sqlx::query_as(sqlf!(
        "select {COLUMNS} from snapshots where tenant_id = $1 and environment_id = $2 \
         and ($3::text is null or kind = $3) and ($4::uuid is null or id < $4) \
         order by id desc limit $5"
    ))
    .bind(tenant_id)
    .bind(environment_id)
    .bind(kind.map(|k| k.as_str()))
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |s| s.id))
}

/// What differs between two snapshots of workflows (SNAP-012), or a snapshot and the present.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    /// In `to`, not in `from`.
    pub added: Vec<SnapshotWorkflow>,
    /// In `from`, not in `to`.
    pub removed: Vec<SnapshotWorkflow>,
    /// In both with different content: (from, to).
    pub changed: Vec<ChangedWorkflow>,
    /// In both with the same content (only the count).
    pub unchanged: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChangedWorkflow {
    pub id: String,
    pub from: SnapshotWorkflow,
    pub to: SnapshotWorkflow,
    /// Node ids, positions or webhook ids moved but the content did not.
    pub layout_only: bool,
}

/// Compares two sets of workflows by id; "changed" means the storage form differs (a
/// layout-only change is flagged as such).
pub fn compare(
    from: &BTreeMap<String, SnapshotWorkflow>,
    to: &BTreeMap<String, SnapshotWorkflow>,
) -> Comparison {
    let mut out = Comparison::default();
    for (id, a) in from {
        match to.get(id) {
            None => out.removed.push(a.clone()),
            Some(b) if a.storage_hash == b.storage_hash => out.unchanged += 1,
            Some(b) => out.changed.push(ChangedWorkflow {
                id: id.clone(),
                from: a.clone(),
                to: b.clone(),
                layout_only: a.hash == b.hash,
            }),
        }
    }
    out.added = to
        .iter()
        .filter(|(id, _)| !from.contains_key(*id))
        .map(|(_, w)| w.clone())
        .collect();
    out
}

/// Deletes automatic snapshots older than their environment's retention (or `default_days`).
/// The commits stay in the repository's history; only the index entries go.
pub async fn prune_auto(db: impl PgExecutor<'_>, default_days: i32) -> Result<u64> {
    Ok(sqlx::query(
        "delete from snapshots s using environments e left join environment_git g on g.environment_id = e.id \
         where s.environment_id = e.id and s.kind = 'auto_backup' \
           and s.created_at < now() - make_interval(days => coalesce(g.snapshot_retention_days, $1))",
    )
    .bind(default_days)
    .execute(db)
    .await?
    .rows_affected())
}

/// A restore, as tracked (SNAP-011): what was restored where, by which run; the run's status
/// and output are its outcome.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct RestoreRecord {
    pub run_id: Uuid,
    pub environment_id: Uuid,
    pub snapshot_id: Option<Uuid>,
    pub workflow_ids: Option<Vec<String>>,
    pub requested_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// The run's status (`queued`, `running`, `succeeded`, `failed`, ...).
    pub status: String,
    /// The run's output when it finished: counts and per-workflow results.
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<Value>,
    /// The snapshot taken just before the restore (to roll the restore itself back).
    pub pre_restore_snapshot_id: Option<Uuid>,
}

pub async fn record_restore(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    run_id: Uuid,
    environment_id: Uuid,
    snapshot_id: Option<Uuid>,
    workflow_ids: Option<&[String]>,
    requested_by: Option<Uuid>,
) -> Result<()> {
    sqlx::query(
        "insert into restores (run_id, tenant_id, environment_id, snapshot_id, workflow_ids, requested_by) \
         values ($1, $2, $3, $4, $5, $6) on conflict (run_id) do nothing",
    )
    .bind(run_id)
    .bind(tenant_id)
    .bind(environment_id)
    .bind(snapshot_id)
    .bind(workflow_ids)
    .bind(requested_by)
    .execute(db)
    .await?;
    Ok(())
}

/// SNAP-011: an environment's restores, newest first, with their runs' outcome.
pub async fn restores(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    page: PageRequest,
) -> Result<Page<RestoreRecord>> {
    let rows: Vec<RestoreRecord> = sqlx::query_as(
        "select r.run_id, r.environment_id, r.snapshot_id, r.workflow_ids, r.requested_by, r.created_at, \
                coalesce(x.status, 'pruned') as status, x.output as outcome, \
                (select s.id from snapshots s where s.run_id = r.run_id and s.kind = 'pre_restore') as pre_restore_snapshot_id \
         from restores r left join engine_runs x on x.id = r.run_id \
         where r.tenant_id = $1 and r.environment_id = $2 and ($3::uuid is null or r.run_id < $3) \
         order by r.run_id desc limit $4",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |r| r.run_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf(id: &str, hash: &str, storage: &str) -> (String, SnapshotWorkflow) {
        (
            id.to_owned(),
            SnapshotWorkflow {
                id: id.to_owned(),
                name: format!("wf {id}"),
                hash: hash.to_owned(),
                storage_hash: storage.to_owned(),
            },
        )
    }

    #[test]
    fn comparison_sorts_added_removed_changed_and_layout_only() {
        let from: BTreeMap<_, _> = [
            wf("a", "1", "1"),
            wf("b", "2", "2"),
            wf("c", "3", "3"),
            wf("d", "4", "4"),
        ]
        .into_iter()
        .collect();
        let to: BTreeMap<_, _> = [
            wf("a", "1", "1"),
            wf("b", "2", "2x"),
            wf("c", "3y", "3y"),
            wf("e", "5", "5"),
        ]
        .into_iter()
        .collect();
        let c = compare(&from, &to);
        assert_eq!(c.unchanged, 1);
        assert_eq!(
            c.added.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
            ["e"]
        );
        assert_eq!(
            c.removed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
            ["d"]
        );
        let changed: Vec<(&str, bool)> = c
            .changed
            .iter()
            .map(|w| (w.id.as_str(), w.layout_only))
            .collect();
        assert_eq!(changed, [("b", true), ("c", false)]);
    }
}
