//! Snapshots and restores (SNAP-001..012, BULK-003): take, list, inspect, compare, preview a
//! restore, restore, and the restore history.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use domain::diff::{self, RiskAssessment, WorkflowDiff};
use domain::entitlements::Feature;
use domain::page::Page;
use domain::snapshots::{
    self, Comparison, RestoreRecord, Snapshot, SnapshotKind, SnapshotWorkflow,
};
use domain::validate::Validator;
use domain::{environments, git_config};
use jobs::backup::{self, RestoreInput};
use jobs::snapshot::{self as snapshot_job, BulkRestoreInput, SnapshotInput};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};
use crate::routes::PageQuery;
use crate::routes::runs::{RunView, start_run};

/// At most this many per-workflow diffs in one preview or comparison.
const MAX_DIFFS: usize = 100;

fn git_unavailable(e: &adapters::git::GitError) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "git_unavailable", e.to_string())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// Why (shown in the list and the commit message).
    #[schema(min_length = 1, max_length = 500)]
    pub reason: Option<String>,
}

impl Validate for SnapshotRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if let Some(r) = &self.reason {
            v.text("reason", r, 1, 500);
        }
        v.finish()
    }
}

/// Take a manual snapshot (SNAP-001): the environment as last synced is backed up to its
/// repository and the commit recorded with every workflow's hashes (SNAP-005).
#[utoipa::path(post, path = "/api/v1/environments/{environment_id}/snapshots", tag = "snapshots", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    request_body = SnapshotRequest,
    responses((status = 202, body = RunView), (status = 404, description = "Unknown environment, or no Git configured", body = Problem)))]
pub async fn create_snapshot(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiPath(environment_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<SnapshotRequest>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    let env = environments::get(&state.db, tenant_id, environment_id).await?;
    ctx.require(
        &state.db,
        Feature::GitBackup,
        Some(env.provider.as_str()),
        "snapshot.create",
    )
    .await?;
    git_config::get(&state.db, tenant_id, environment_id).await?;
    let actor = ctx.actor();
    let input = SnapshotInput {
        tenant_id,
        environment_id,
        kind: SnapshotKind::ManualBackup,
        reason: req.reason,
        triggered_by: actor.label.clone(),
        created_by: actor.user_id,
        promotion_id: None,
    };
    let view = start_run(
        &state,
        &actor,
        tenant_id,
        snapshot_job::new_run(&input),
        "snapshot.requested",
        serde_json::json!({"environment_id": environment_id, "reason": input.reason}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    /// Only this kind: manual_backup, auto_backup, pre_promotion, post_promotion, pre_restore.
    #[param(inline)]
    pub kind: Option<SnapshotKind>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// An environment's snapshots, newest first (SNAP-003).
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}/snapshots", tag = "snapshots", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id"), SnapshotQuery),
    responses((status = 200, body = Page<Snapshot>), (status = 404, body = Problem)))]
pub async fn list_snapshots(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(environment_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<SnapshotQuery>,
) -> ApiResult<Json<Page<Snapshot>>> {
    let tenant_id = ctx.tenant_id();
    environments::get(&state.db, tenant_id, environment_id).await?;
    let page = domain::page::PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    Ok(Json(
        snapshots::list(&state.db, tenant_id, environment_id, q.kind, page).await?,
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SnapshotDetail {
    #[serde(flatten)]
    pub snapshot: Snapshot,
    pub workflows: Vec<SnapshotWorkflow>,
}

/// A snapshot's metadata and its workflows (SNAP-004).
#[utoipa::path(get, path = "/api/v1/snapshots/{snapshot_id}", tag = "snapshots", security(("bearer" = [])),
    params(("snapshot_id" = Uuid, Path, description = "The snapshot's id")),
    responses((status = 200, body = SnapshotDetail), (status = 404, body = Problem)))]
pub async fn get_snapshot(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(snapshot_id): ApiPath<Uuid>,
) -> ApiResult<Json<SnapshotDetail>> {
    let tenant_id = ctx.tenant_id();
    let snapshot = snapshots::get(&state.db, tenant_id, snapshot_id).await?;
    let workflows = snapshots::workflows(&state.db, tenant_id, snapshot_id)
        .await?
        .into_values()
        .collect();
    Ok(Json(SnapshotDetail {
        snapshot,
        workflows,
    }))
}

/// One workflow's change, with its structural diff and risk when read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowChange {
    pub id: String,
    pub name: String,
    /// Restore preview: `update`, `create` or `unchanged`. Comparison: `changed`.
    pub action: String,
    /// Only node ids, positions or webhook ids differ.
    pub layout_only: bool,
    pub summary: Option<String>,
    pub diff: Option<WorkflowDiff>,
    pub risk: Option<RiskAssessment>,
}

fn describe(
    id: &str,
    name: &str,
    action: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> WorkflowChange {
    let d = match (old, new) {
        (Some(a), Some(b)) => Some(diff::diff(a, b)),
        _ => None,
    };
    WorkflowChange {
        id: id.to_owned(),
        name: name.to_owned(),
        action: action.to_owned(),
        layout_only: d.as_ref().is_some_and(WorkflowDiff::is_empty),
        summary: d.as_ref().map(diff::render_summary),
        risk: d.as_ref().map(diff::risk),
        diff: d,
    }
}

/// Reads workflows of a snapshot from Git.
async fn snapshot_files(
    state: &AppState,
    tenant_id: Uuid,
    snapshot: &Snapshot,
    ids: Vec<String>,
) -> ApiResult<HashMap<String, Value>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let access = {
        let mut conn = state.db.acquire().await?;
        git_config::access(
            &mut conn,
            &state.keyring,
            tenant_id,
            snapshot.environment_id,
        )
        .await?
    };
    crate::routes::git::check_reachable(state, &access.url).await?;
    Ok(backup::read_files(
        &state.jobs,
        &access,
        snapshot.environment_id,
        Some(snapshot.git_commit.clone()),
        &snapshot.git_path,
        Some(ids),
    )
    .await
    .map_err(|e| git_unavailable(&e))?
    .into_iter()
    .collect())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// Comma-separated workflow ids to preview; the whole snapshot when omitted.
    pub workflow_ids: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RestorePreview {
    pub snapshot_id: Uuid,
    pub environment_id: Uuid,
    pub update: usize,
    pub create: usize,
    pub unchanged: usize,
    /// Per workflow that a restore would write, with its diff (current → snapshot); at most 100
    /// diffs are computed (`diffs_truncated`).
    pub changes: Vec<WorkflowChange>,
    pub diffs_truncated: bool,
    /// Workflows in the environment now that the snapshot does not have (a restore leaves them).
    pub not_in_snapshot: Vec<String>,
}

/// Preview a restore (SNAP-010): what restoring the snapshot would change in the environment as
/// last synced, per workflow, with structural diffs and risk.
#[utoipa::path(get, path = "/api/v1/snapshots/{snapshot_id}/preview", tag = "snapshots", security(("bearer" = [])),
    params(("snapshot_id" = Uuid, Path, description = "The snapshot's id"), PreviewQuery),
    responses((status = 200, body = RestorePreview), (status = 404, body = Problem), (status = 502, description = "Git unreachable", body = Problem)))]
pub async fn preview_restore(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(snapshot_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> ApiResult<Json<RestorePreview>> {
    let tenant_id = ctx.tenant_id();
    let snapshot = snapshots::get(&state.db, tenant_id, snapshot_id).await?;
    let mut taken = snapshots::workflows(&state.db, tenant_id, snapshot_id).await?;
    if let Some(ids) = &q.workflow_ids {
        let wanted: std::collections::HashSet<&str> = ids.split(',').map(str::trim).collect();
        taken.retain(|id, _| wanted.contains(id.as_str()));
    }
    let now: BTreeMap<String, (String, String)> =
        git_config::backup_state(&state.db, snapshot.environment_id)
            .await?
            .into_iter()
            .map(|w| (w.id, (w.name, w.storage_hash)))
            .collect();
    let mut preview = RestorePreview {
        snapshot_id,
        environment_id: snapshot.environment_id,
        update: 0,
        create: 0,
        unchanged: 0,
        changes: Vec::new(),
        diffs_truncated: false,
        not_in_snapshot: now
            .keys()
            .filter(|id| q.workflow_ids.is_none() && !taken.contains_key(*id))
            .cloned()
            .collect(),
    };
    let mut to_read = Vec::new();
    for (id, w) in &taken {
        match now.get(id) {
            Some((_, hash)) if *hash == w.storage_hash => preview.unchanged += 1,
            Some(_) => {
                preview.update += 1;
                to_read.push(id.clone());
            }
            None => {
                preview.create += 1;
                preview
                    .changes
                    .push(describe(id, &w.name, "create", None, None));
            }
        }
    }
    preview.diffs_truncated = to_read.len() > MAX_DIFFS;
    let shown: Vec<String> = to_read.iter().take(MAX_DIFFS).cloned().collect();
    let stored = snapshot_files(&state, tenant_id, &snapshot, shown.clone()).await?;
    let current: HashMap<String, Value> =
        domain::catalog::definitions(&state.db, tenant_id, snapshot.environment_id, Some(&shown))
            .await?
            .into_iter()
            .filter_map(|d| Some((d.get("id")?.as_str()?.to_owned(), d)))
            .collect();
    for id in &to_read {
        let name = taken.get(id).map(|w| w.name.as_str()).unwrap_or_default();
        preview.changes.push(describe(
            id,
            name,
            "update",
            current.get(id),
            stored.get(id),
        ));
    }
    Ok(Json(preview))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompareQuery {
    pub from: Uuid,
    pub to: Uuid,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SnapshotComparison {
    pub from: Snapshot,
    pub to: Snapshot,
    #[serde(flatten)]
    pub comparison: Comparison,
    /// Per changed workflow, its diff (from → to); at most 100 (`diffs_truncated`).
    pub diffs: Vec<WorkflowChange>,
    pub diffs_truncated: bool,
}

/// Compare two snapshots of an environment (SNAP-012): added, removed, changed (with
/// structural diffs and risk) and how many are unchanged.
#[utoipa::path(get, path = "/api/v1/snapshots/compare", tag = "snapshots", security(("bearer" = [])),
    params(CompareQuery),
    responses((status = 200, body = SnapshotComparison), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn compare_snapshots(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiQuery(q): ApiQuery<CompareQuery>,
) -> ApiResult<Json<SnapshotComparison>> {
    let tenant_id = ctx.tenant_id();
    let from = snapshots::get(&state.db, tenant_id, q.from).await?;
    let to = snapshots::get(&state.db, tenant_id, q.to).await?;
    let env = domain::environments::get(&state.db, tenant_id, from.environment_id).await?;
    ctx.require(
        &state.db,
        Feature::WorkflowDiff,
        Some(env.provider.as_str()),
        "snapshot.compare",
    )
    .await?;
    if from.environment_id != to.environment_id {
        return Err(
            domain::Error::invalid("to", "must be a snapshot of the same environment").into(),
        );
    }
    let comparison = snapshots::compare(
        &snapshots::workflows(&state.db, tenant_id, q.from).await?,
        &snapshots::workflows(&state.db, tenant_id, q.to).await?,
    );
    let changed: Vec<String> = comparison
        .changed
        .iter()
        .take(MAX_DIFFS)
        .map(|c| c.id.clone())
        .collect();
    let old = snapshot_files(&state, tenant_id, &from, changed.clone()).await?;
    let new = snapshot_files(&state, tenant_id, &to, changed.clone()).await?;
    let diffs = comparison
        .changed
        .iter()
        .take(MAX_DIFFS)
        .map(|c| describe(&c.id, &c.to.name, "changed", old.get(&c.id), new.get(&c.id)))
        .collect();
    Ok(Json(SnapshotComparison {
        diffs_truncated: comparison.changed.len() > MAX_DIFFS,
        from,
        to,
        comparison,
        diffs,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRestoreRequest {
    /// Workflow ids as in the snapshot; all of it when omitted (SNAP-009).
    #[schema(min_items = 1, max_items = 1000)]
    pub workflow_ids: Option<Vec<String>>,
}

impl Validate for SnapshotRestoreRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if self
            .workflow_ids
            .as_ref()
            .is_some_and(|ids| ids.is_empty() || ids.len() > 1000)
        {
            v.error(
                "workflow_ids",
                "must name 1 to 1000 workflows, or be omitted",
            );
        }
        v.finish()
    }
}

/// Only admins restore into production.
pub(crate) fn check_restore_allowed(
    env: &environments::Environment,
    role: domain::Role,
) -> Result<(), ApiError> {
    if env.class == environments::EnvironmentClass::Production && role != domain::Role::Admin {
        return Err(ApiError::forbidden(
            "admin_only",
            "only an admin may restore a production environment",
        ));
    }
    Ok(())
}

/// Restore one, several or all workflows of a snapshot (SNAP-007..009) as a run: a
/// `pre_restore` snapshot is taken first, then each workflow is written back (a checkpointed
/// step each). Tracked in the environment's restore history (SNAP-011).
#[utoipa::path(post, path = "/api/v1/snapshots/{snapshot_id}/restore", tag = "snapshots", security(("bearer" = [])),
    params(("snapshot_id" = Uuid, Path, description = "The snapshot's id")),
    request_body = SnapshotRestoreRequest,
    responses((status = 202, body = RunView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn restore_snapshot(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UploadWorkflows>,
    ApiPath(snapshot_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<SnapshotRestoreRequest>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    let snapshot = snapshots::get(&state.db, tenant_id, snapshot_id).await?;
    let env = environments::get(&state.db, tenant_id, snapshot.environment_id).await?;
    ctx.require(
        &state.db,
        Feature::GitBackup,
        Some(env.provider.as_str()),
        "snapshot.restore",
    )
    .await?;
    check_restore_allowed(&env, ctx.tenant.role)?;
    git_config::get(&state.db, tenant_id, env.id).await?;
    let actor = ctx.actor();
    let input = RestoreInput {
        tenant_id,
        environment_id: env.id,
        workflow_ids: req.workflow_ids,
        snapshot_id: Some(snapshot_id),
        triggered_by: actor.label.clone(),
        requested_by: actor.user_id,
    };
    let view = start_run(
        &state,
        &actor,
        tenant_id,
        backup::new_restore_run(&input),
        "snapshot.restore_started",
        serde_json::json!({"environment_id": env.id, "snapshot_id": snapshot_id, "workflow_ids": input.workflow_ids}),
    )
    .await?;
    snapshots::record_restore(
        &state.db,
        tenant_id,
        view.id,
        env.id,
        Some(snapshot_id),
        input.workflow_ids.as_deref(),
        actor.user_id,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// An environment's restores, newest first, with each run's status and outcome and the
/// snapshot taken just before it (SNAP-011: what was rolled back, and how to undo it).
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}/restores", tag = "snapshots", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id"), PageQuery),
    responses((status = 200, body = Page<RestoreRecord>), (status = 404, body = Problem)))]
pub async fn list_restores(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(environment_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<RestoreRecord>>> {
    let tenant_id = ctx.tenant_id();
    environments::get(&state.db, tenant_id, environment_id).await?;
    Ok(Json(
        snapshots::restores(&state.db, tenant_id, environment_id, q.page()?).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRestoreItemRequest {
    pub environment_id: Uuid,
    /// The snapshot to restore (of that environment); its latest backup when omitted.
    pub snapshot_id: Option<Uuid>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRestoreRequest {
    /// 1 to 100 distinct environments.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<BulkRestoreItemRequest>,
}

impl Validate for BulkRestoreRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        let ids: Vec<Uuid> = self.items.iter().map(|i| i.environment_id).collect();
        crate::routes::environments::validate_environment_ids(&mut v, &ids);
        v.finish()
    }
}

/// Restore several environments as one parent run with a child restore each (BULK-003), with
/// per-environment outcomes and a partial-failure summary.
#[utoipa::path(post, path = "/api/v1/environments/restore", tag = "snapshots", security(("bearer" = [])),
    request_body = BulkRestoreRequest,
    responses((status = 202, body = RunView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn bulk_restore(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UploadWorkflows>,
    ApiJson(req): ApiJson<BulkRestoreRequest>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    for item in &req.items {
        let env = environments::get(&state.db, tenant_id, item.environment_id).await?;
        ctx.require(
            &state.db,
            Feature::GitBackup,
            Some(env.provider.as_str()),
            "snapshot.restore",
        )
        .await?;
        check_restore_allowed(&env, ctx.tenant.role)?;
        git_config::get(&state.db, tenant_id, env.id).await?;
        if let Some(sid) = item.snapshot_id {
            let s = snapshots::get(&state.db, tenant_id, sid).await?;
            if s.environment_id != env.id {
                return Err(domain::Error::invalid(
                    "items",
                    format!("snapshot {sid} is not of environment {}", env.id),
                )
                .into());
            }
        }
    }
    let actor = ctx.actor();
    let input = BulkRestoreInput {
        tenant_id,
        items: req
            .items
            .iter()
            .map(|i| jobs::snapshot::BulkRestoreItem {
                environment_id: i.environment_id,
                snapshot_id: i.snapshot_id,
            })
            .collect(),
        triggered_by: actor.label.clone(),
        requested_by: actor.user_id,
    };
    let view = start_run(
        &state,
        &actor,
        tenant_id,
        engine::NewRun::of::<jobs::snapshot::BulkRestore>(tenant_id.to_string(), &input),
        "environment.bulk_restore_started",
        serde_json::to_value(&input.items).unwrap_or_default(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Which workflows changed since the environment's last backup (WF-018).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GitStatus {
    pub environment_id: Uuid,
    pub last_backup_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_commit: Option<String>,
    /// `in_sync` when every workflow is backed up as it is now, otherwise `changed`.
    pub status: String,
    pub workflows: usize,
    /// Changed since their last backup.
    pub changed: Vec<GitStatusItem>,
    /// Never backed up.
    pub not_backed_up: Vec<GitStatusItem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GitStatusItem {
    pub id: String,
    pub name: String,
}

/// The environment's Git drift status (WF-018): what a backup now would write.
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}/git/status", tag = "git", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    responses((status = 200, body = GitStatus), (status = 404, description = "Unknown environment, or no Git configured", body = Problem)))]
pub async fn git_status(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(environment_id): ApiPath<Uuid>,
) -> ApiResult<Json<GitStatus>> {
    let tenant_id = ctx.tenant_id();
    let config = git_config::get(&state.db, tenant_id, environment_id).await?;
    let items = git_config::backup_state(&state.db, environment_id).await?;
    let mut status = GitStatus {
        environment_id,
        last_backup_at: config.last_backup_at,
        last_commit: config.last_commit,
        status: "in_sync".into(),
        workflows: items.len(),
        changed: Vec::new(),
        not_backed_up: Vec::new(),
    };
    for w in items {
        let item = GitStatusItem {
            id: w.id,
            name: w.name,
        };
        match w.backed_up_hash {
            None => status.not_backed_up.push(item),
            Some(h) if h != w.storage_hash => status.changed.push(item),
            Some(_) => {}
        }
    }
    if !status.changed.is_empty() || !status.not_backed_up.is_empty() {
        status.status = "changed".into();
    }
    Ok(Json(status))
}
