//! An environment's Git repository (ENV-003, ENV-004) and backups to it (WF-016).

use std::path::Path;

use adapters::git::{self, GitError, RemoteUrl, RemoteUrlError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::audit::Entry;
use domain::entitlements::Feature;
use domain::environments;
use domain::git_config::{self, GitAccess, GitConfig, NewGitConfig};
use domain::validate::Validator;
use jobs::backup::{self, BackupInput};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, Validate};
use crate::routes::runs::{RunView, start_run};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GitRequest {
    /// `https://…`, `http://…` or `ssh://…` / `git@host:owner/repo.git`; no password or token
    /// in it (see `secret`).
    #[schema(min_length = 1, max_length = 2000)]
    pub url: String,
    /// Default `main`.
    #[schema(min_length = 1, max_length = 200)]
    pub branch: Option<String>,
    /// The folder for this environment's files (default: `environments/<environment name>`).
    #[schema(max_length = 300)]
    pub path: Option<String>,
    /// `none`, `token` (HTTPS) or `ssh_key` (deploy key).
    #[schema(pattern = "^(none|token|ssh_key)$")]
    pub auth: String,
    /// For `token`: the user name (default `x-access-token`).
    pub username: Option<String>,
    /// The token, or the private key; never returned.
    #[schema(value_type = Option<String>)]
    pub secret: Option<SecretString>,
    /// Scheduled backups: a cron expression (e.g. `0 2 * * *`), in `backup_timezone` (default
    /// UTC). Omit for none; a backup that was missed while nothing ran fires once.
    pub backup_schedule: Option<String>,
    pub backup_timezone: Option<String>,
    /// Days to keep scheduled (`auto_backup`) snapshots (1-3650; default `WFO_SNAPSHOT_RETENTION_DAYS`).
    #[schema(minimum = 1, maximum = 3650)]
    pub snapshot_retention_days: Option<i32>,
}

/// The name of an environment's backup schedule in its tenant's namespace.
pub(crate) fn schedule_name(environment_id: Uuid) -> String {
    format!("environment:{environment_id}:backup")
}

/// A remote URL's form, read as libgit2 will reach it ([`git::parse_remote`]): `https://`,
/// `http://`, `ssh://`, scp-like `user@host:path`, or a local path; never `..` segments, never
/// a password or token (shown to viewers, in preflight messages and the audit log).
pub(crate) fn validate_remote(v: &mut Validator, url: &str) {
    match git::parse_remote(url.trim()) {
        Ok(_) => {}
        Err(RemoteUrlError::Credentials) => {
            v.error(
                "url",
                "must not carry a password or token (user:token@): set `auth` to `token`, put \
                 the token in `secret` and the user name in `username`",
            );
        }
        Err(e) => {
            v.error("url", e.to_string());
        }
    }
}

/// Refuses a local remote (`file://` or a path) unless local remotes are allowed
/// (`WFO_GIT_ALLOW_LOCAL`), and always one inside the server's Git cache: that holds every
/// environment's working copy, and libgit2 opens any directory there as a repository.
pub(crate) fn check_local(state: &AppState, url: &str) -> ApiResult<()> {
    let Ok(RemoteUrl::Local(path)) = git::parse_remote(url.trim()) else {
        return Ok(());
    };
    if !state.config.allow_local_git {
        return Err(domain::Error::invalid(
            "url",
            "must be an https://, http:// or ssh:// remote, or user@host:path (local paths need \
             WFO_GIT_ALLOW_LOCAL)",
        )
        .into());
    }
    let cache = &state.jobs.git_cache;
    let resolved = |p: &Path| std::fs::canonicalize(p).ok();
    let in_cache = path.starts_with(cache)
        || matches!((resolved(&path), resolved(cache)), (Some(p), Some(c)) if p.starts_with(&c));
    if in_cache {
        return Err(domain::Error::invalid(
            "url",
            "must not be inside the server's Git cache (other environments' working copies)",
        )
        .into());
    }
    Ok(())
}

/// Whether the server may reach a stored remote now (its name may resolve elsewhere than when
/// it was saved): before the API itself reads from it. 422 `destination_refused`, or 502
/// `git_unavailable` when the name does not resolve.
pub(crate) async fn check_reachable(state: &AppState, url: &str) -> ApiResult<()> {
    let url = url.to_owned();
    let outbound = state.jobs.outbound();
    tokio::task::spawn_blocking(move || git::check_remote(&url, outbound))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            GitError::Refused(message) => ApiError::destination_refused(message),
            other => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "git_unavailable",
                other.to_string(),
            ),
        })
}

/// Branch and folder rules shared by every repository setting.
pub(crate) fn check_branch_and_path(v: &mut Validator, branch: Option<&str>, path: Option<&str>) {
    if let Some(b) = branch
        && (b.is_empty()
            || b.len() > 200
            || b.contains("..")
            || b.starts_with('-')
            || b.contains(' '))
    {
        v.error("branch", "must be a valid branch name");
    }
    if let Some(p) = path
        && (p.len() > 300 || p.split('/').any(|s| s == ".." || s == ".git"))
    {
        v.error("path", "must be a folder inside the repository");
    }
}

/// `auth` and `secret` go together.
pub(crate) fn check_auth(v: &mut Validator, auth: &str, has_secret: bool) {
    match (auth, has_secret) {
        ("none", false) | ("token" | "ssh_key", true) => {}
        ("none", true) => {
            v.error("secret", "must be omitted when auth is none");
        }
        ("token" | "ssh_key", false) => {
            v.error("secret", "is required for token and ssh_key");
        }
        _ => {
            v.error("auth", "must be none, token or ssh_key");
        }
    }
}

impl Validate for GitRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("url", &self.url, 1, 2000);
        validate_remote(&mut v, &self.url);
        check_branch_and_path(&mut v, self.branch.as_deref(), self.path.as_deref());
        if let Some(cron) = &self.backup_schedule
            && let Err(e) = engine::schedule::Timetable::new(
                cron,
                self.backup_timezone.as_deref().unwrap_or("UTC"),
            )
        {
            v.error("backup_schedule", e.to_string());
        }
        if self
            .snapshot_retention_days
            .is_some_and(|d| !(1..=3650).contains(&d))
        {
            v.error("snapshot_retention_days", "must be between 1 and 3650");
        }
        check_auth(&mut v, &self.auth, self.secret.is_some());
        v.finish()
    }
}

/// Proves read and write access to a repository (a probe ref pushed and deleted) or answers
/// 422 `git_connection_failed` with what went wrong (`destination_refused` for a remote outside
/// `WFO_OUTBOUND_NETWORKS`).
pub(crate) async fn prove_access(state: &AppState, access: &GitAccess) -> ApiResult<()> {
    let remote = backup::remote(access);
    let scratch = state
        .jobs
        .git_cache
        .join(format!("probe-{}", Uuid::now_v7()));
    let outbound = state.jobs.outbound();
    let tested = tokio::task::spawn_blocking(move || {
        let result = git::test_connection(&remote, &scratch, outbound);
        let _ = std::fs::remove_dir_all(&scratch);
        result
    })
    .await
    .map_err(ApiError::internal)?;
    tested.map_err(|e| git_failed(&e))
}

fn git_failed(e: &GitError) -> ApiError {
    if let GitError::Refused(message) = e {
        return ApiError::destination_refused(message.clone());
    }
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "git_connection_failed",
        e.to_string(),
    )
}

/// Connect the environment to a Git repository: read and write access are proven first (a probe
/// ref is pushed and deleted) and nothing is saved if that fails (ENV-003, ENV-004).
#[utoipa::path(put, path = "/api/v1/environments/{environment_id}/git", tag = "git", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    request_body = GitRequest,
    responses((status = 200, body = GitConfig), (status = 404, body = Problem),
        (status = 422, description = "Invalid, or the connection test failed", body = Problem)))]
pub async fn put_git(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageEnvironments>,
    ApiPath(environment_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<GitRequest>,
) -> ApiResult<Json<GitConfig>> {
    let tenant_id = ctx.tenant_id();
    let env = environments::get(&state.db, tenant_id, environment_id).await?;
    ctx.require(
        &state.db,
        Feature::GitBackup,
        Some(env.provider.as_str()),
        "git.configure",
    )
    .await?;
    if req.backup_schedule.is_some() {
        ctx.require(
            &state.db,
            Feature::ScheduledBackups,
            Some(env.provider.as_str()),
            "git.schedule_backups",
        )
        .await?;
    }
    check_local(&state, &req.url)?;
    let access = GitAccess {
        url: req.url.trim().to_owned(),
        branch: req.branch.clone().unwrap_or_else(|| "main".into()),
        path: req.path.clone().unwrap_or_else(|| {
            let slug: String = env
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("environments/{slug}")
        }),
        auth_kind: req.auth.clone(),
        username: req.username.clone(),
        secret: req.secret.clone(),
    };
    prove_access(&state, &access).await?;
    let mut tx = state.db.begin().await?;
    let mut config = git_config::put(
        &mut tx,
        &state.keyring,
        tenant_id,
        environment_id,
        &NewGitConfig {
            url: &access.url,
            branch: &access.branch,
            path: &access.path,
            auth_kind: &access.auth_kind,
            username: access.username.as_deref(),
            secret: access.secret.as_ref(),
        },
    )
    .await?;
    // Scheduled backups (auto_backup snapshots), or none.
    let namespace = tenant_id.to_string();
    match &req.backup_schedule {
        Some(cron) => {
            engine::schedule::upsert(
                &mut *tx,
                engine::schedule::NewSchedule {
                    namespace: &namespace,
                    name: &schedule_name(environment_id),
                    cron,
                    timezone: req.backup_timezone.as_deref().unwrap_or("UTC"),
                    kind: <jobs::snapshot::TakeSnapshot as engine::Job>::KIND,
                    input: serde_json::json!(jobs::snapshot::SnapshotInput {
                        tenant_id,
                        environment_id,
                        kind: domain::snapshots::SnapshotKind::AutoBackup,
                        reason: Some("scheduled backup".into()),
                        triggered_by: "schedule".into(),
                        created_by: None,
                        promotion_id: None,
                    }),
                    enabled: true,
                    missed: engine::schedule::Missed::FireOnce,
                },
            )
            .await
            .map_err(ApiError::internal)?;
        }
        None => {
            match engine::schedule::delete(&mut *tx, &namespace, &schedule_name(environment_id))
                .await
            {
                Ok(()) | Err(engine::schedule::Error::NotFound) => {}
                Err(e) => return Err(ApiError::internal(e)),
            }
        }
    }
    if let Some(days) = req.snapshot_retention_days {
        sqlx::query(
            "update environment_git set snapshot_retention_days = $2 where environment_id = $1",
        )
        .bind(environment_id)
        .bind(days)
        .execute(&mut *tx)
        .await?;
        config.snapshot_retention_days = Some(days);
    }
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "environment.git_configured",
        "environment",
    )
    .target(environment_id)
    .new_value(&config)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(config))
}

/// The environment's Git configuration (never its secret).
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}/git", tag = "git", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    responses((status = 200, body = GitConfig), (status = 404, body = Problem)))]
pub async fn get_git(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(environment_id): ApiPath<Uuid>,
) -> ApiResult<Json<GitConfig>> {
    Ok(Json(
        git_config::get(&state.db, ctx.tenant_id(), environment_id).await?,
    ))
}

/// Back the environment's workflows (as last synced) up to its repository as a run (WF-016).
#[utoipa::path(post, path = "/api/v1/environments/{environment_id}/backup", tag = "git", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    responses((status = 202, body = RunView), (status = 404, description = "Unknown environment, or no Git configured", body = Problem)))]
pub async fn backup_environment(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiPath(environment_id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    let env = environments::get(&state.db, tenant_id, environment_id).await?;
    ctx.require(
        &state.db,
        Feature::GitBackup,
        Some(env.provider.as_str()),
        "git.backup",
    )
    .await?;
    git_config::get(&state.db, tenant_id, environment_id).await?;
    let actor = ctx.actor();
    let input = BackupInput {
        tenant_id,
        environment_id,
        triggered_by: actor.label.clone(),
    };
    let view = start_run(
        &state,
        &actor,
        tenant_id,
        backup::new_run(&input),
        "environment.backup_started",
        serde_json::json!({"environment_id": environment_id}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBackupRequest {
    /// 1-100 environments, none twice.
    #[schema(value_type = BTreeSet<Uuid>, min_items = 1, max_items = 100)]
    pub environment_ids: Vec<Uuid>,
}

impl Validate for BulkBackupRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        crate::routes::environments::validate_environment_ids(&mut v, &self.environment_ids);
        v.finish()
    }
}

/// Back several environments up as one parent run with a child backup each (BULK-002), with
/// per-environment outcomes and a partial-failure summary.
#[utoipa::path(post, path = "/api/v1/environments/backup", tag = "git", security(("bearer" = [])),
    request_body = BulkBackupRequest,
    responses((status = 202, body = RunView), (status = 404, description = "An unknown environment, or one without Git", body = Problem)))]
pub async fn bulk_backup(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiJson(req): ApiJson<BulkBackupRequest>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    for id in &req.environment_ids {
        let env = environments::get(&state.db, tenant_id, *id).await?;
        ctx.require(
            &state.db,
            Feature::GitBackup,
            Some(env.provider.as_str()),
            "git.backup",
        )
        .await?;
        git_config::get(&state.db, tenant_id, *id).await?;
    }
    let actor = ctx.actor();
    let input = backup::BulkBackupInput {
        tenant_id,
        environment_ids: req.environment_ids,
        triggered_by: actor.label.clone(),
    };
    let view = start_run(
        &state,
        &actor,
        tenant_id,
        engine::NewRun::of::<backup::BulkBackup>(tenant_id.to_string(), &input),
        "environment.bulk_backup_started",
        serde_json::json!({"environment_ids": input.environment_ids}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Workflow ids as in the backup; the whole backup when omitted.
    #[schema(min_items = 1, max_items = 1000)]
    pub workflow_ids: Option<Vec<String>>,
    /// Only say what the restore would do, per workflow (200); nothing is written
    /// and no run is started.
    #[serde(default)]
    pub dry_run: bool,
}

impl Validate for RestoreRequest {
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

/// What a restore would do to one workflow of the backup.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GitRestorePreviewItem {
    /// The workflow's id as in the backup.
    pub id: String,
    pub name: String,
    /// `update`, `create` (the environment has no workflow of this id) or `unchanged`, against
    /// the environment as last synced.
    pub action: String,
    /// A Make scenario backed up from another team than the environment's now: that team's
    /// connection, webhook and key ids are not written (the scenario's own in this team where
    /// it has one, else none, to be chosen in Make). Absent when written as backed up.
    pub team_references: Option<TeamReferencesPreview>,
}

/// The old team's references a restore leaves out of one Make scenario.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TeamReferencesPreview {
    /// The warnings the restore's result will carry for the scenario.
    pub warnings: Vec<String>,
    /// Each reference not written as backed up, module by module.
    pub stripped: Vec<backup::StrippedReference>,
}

/// A restore's dry run (`dry_run`): per workflow of the backup that it would restore, what it
/// would do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GitRestorePreview {
    pub environment_id: Uuid,
    pub update: usize,
    pub create: usize,
    pub unchanged: usize,
    /// How many Make scenarios would be written without some of their backed-up team
    /// references (`team_references`).
    pub stripped: usize,
    pub workflows: Vec<GitRestorePreviewItem>,
}

/// A restore's dry run: the backup's workflows (`ids`, or all) read from Git and set against the
/// environment as last synced; a Make scenario backed up from another team is flagged with the
/// references it would lose.
async fn preview_restore(
    state: &AppState,
    tenant_id: Uuid,
    env: &environments::Environment,
    ids: Option<Vec<String>>,
) -> ApiResult<GitRestorePreview> {
    let access = {
        let mut conn = state.db.acquire().await?;
        git_config::access(&mut conn, &state.keyring, tenant_id, env.id).await?
    };
    check_reachable(state, &access.url).await?;
    let files = backup::read_files(&state.jobs, &access, env.id, None, &access.path, ids)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "git_unavailable", e.to_string()))?;
    let team = if env.provider == "make" {
        Some(
            adapters::make::parse_base_url(&env.base_url)
                .map_err(|e| domain::Error::invalid("base_url", e.to_string()))?
                .team_id,
        )
    } else {
        None
    };
    let wanted: Vec<String> = files.iter().map(|(id, _)| id.clone()).collect();
    let current: std::collections::HashMap<String, serde_json::Value> =
        domain::catalog::definitions(&state.db, tenant_id, env.id, Some(&wanted))
            .await?
            .into_iter()
            .filter_map(|d| Some((d.get("id")?.as_str()?.to_owned(), d)))
            .collect();
    let mut preview = GitRestorePreview {
        environment_id: env.id,
        update: 0,
        create: 0,
        unchanged: 0,
        stripped: 0,
        workflows: Vec::with_capacity(files.len()),
    };
    for (id, stored) in &files {
        let (action, plan) = backup::restore_preview(stored, current.get(id), team);
        match action {
            "create" => preview.create += 1,
            "update" => preview.update += 1,
            _ => preview.unchanged += 1,
        }
        if plan.is_some() {
            preview.stripped += 1;
        }
        preview.workflows.push(GitRestorePreviewItem {
            id: id.clone(),
            name: stored
                .get("name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            action: action.to_owned(),
            team_references: plan.map(|p| TeamReferencesPreview {
                warnings: p.warnings,
                stripped: p.stripped,
            }),
        });
    }
    Ok(preview)
}

/// Restore workflows from the environment's Git backup as a run (WF-017): each is updated in
/// place (or created again if it was deleted); one already matching is left alone. In a
/// production environment only admins may restore. With `dry_run`, only what the restore
/// would do, per workflow (200): a Make scenario backed up from another team than the
/// environment's now is flagged with the connection, webhook and key ids it would lose.
#[utoipa::path(post, path = "/api/v1/environments/{environment_id}/restore", tag = "git", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "`dry_run`: what the restore would do", body = GitRestorePreview),
        (status = 202, body = RunView),
        (status = 403, body = Problem),
        (status = 404, description = "Unknown environment, or no Git configured", body = Problem),
        (status = 502, description = "`dry_run`: Git unreachable", body = Problem)))]
pub async fn restore_environment(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UploadWorkflows>,
    ApiPath(environment_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<RestoreRequest>,
) -> ApiResult<Response> {
    let tenant_id = ctx.tenant_id();
    let env = environments::get(&state.db, tenant_id, environment_id).await?;
    ctx.require(
        &state.db,
        Feature::GitBackup,
        Some(env.provider.as_str()),
        "git.restore",
    )
    .await?;
    git_config::get(&state.db, tenant_id, environment_id).await?;
    crate::routes::snapshots::check_restore_allowed(&env, ctx.tenant.role)?;
    if req.dry_run {
        let preview = preview_restore(&state, tenant_id, &env, req.workflow_ids).await?;
        return Ok(Json(preview).into_response());
    }
    let actor = ctx.actor();
    let input = backup::RestoreInput {
        tenant_id,
        environment_id,
        workflow_ids: req.workflow_ids,
        snapshot_id: None,
        triggered_by: actor.label.clone(),
        requested_by: actor.user_id,
    };
    let view = start_run(
        &state,
        &actor,
        tenant_id,
        backup::new_restore_run(&input),
        "environment.restore_started",
        serde_json::json!({"environment_id": environment_id, "workflow_ids": input.workflow_ids}),
    )
    .await?;
    domain::snapshots::record_restore(
        &state.db,
        tenant_id,
        view.id,
        environment_id,
        None,
        input.workflow_ids.as_deref(),
        actor.user_id,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}
