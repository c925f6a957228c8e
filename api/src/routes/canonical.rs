//! Canonical workflows (CAN-001..019) and the GitHub push webhook (WF-020): the canonical
//! repository, Git → canonical sync, the matrix, untracked workflows, links, onboarding
//! (preflight, inventory, onboarding runs with optional pull requests, completion).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use domain::audit::{Actor, Entry};
use domain::canonical::{
    self, CanonicalRepo, CanonicalWorkflow, Completion, Mapping, Matrix, MatrixFilter,
    NewCanonicalRepo, UntrackedPage,
};
use domain::diff::{self, RiskAssessment, WorkflowDiff};
use domain::entitlements::Feature;
use domain::git_config::GitAccess;
use domain::validate::Validator;
use domain::{catalog, environments};
use hmac::{KeyInit, Mac};
use jobs::canonical::{GitSyncInput, OnboardInput, OnboardItem};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};
use crate::routes::runs::{RunView, start_run};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanonicalRepoRequest {
    /// `https://…`, `http://…` or `ssh://…` / `git@host:owner/repo.git`; no password or token
    /// in it (see `secret`).
    #[schema(min_length = 1, max_length = 2000)]
    pub url: String,
    /// Default `main`.
    #[schema(min_length = 1, max_length = 200)]
    pub branch: Option<String>,
    /// The folder of the canonical files (default `canonical`).
    #[schema(max_length = 300)]
    pub path: Option<String>,
    /// `none`, `token` (HTTPS) or `ssh_key` (deploy key).
    #[schema(pattern = "^(none|token|ssh_key)$")]
    pub auth: String,
    pub username: Option<String>,
    /// The token or private key; never returned.
    #[schema(value_type = Option<String>)]
    pub secret: Option<SecretString>,
    /// The secret GitHub signs push webhooks with (WF-020); never returned.
    #[schema(value_type = Option<String>, min_length = 16, max_length = 256)]
    pub webhook_secret: Option<SecretString>,
    /// GitHub's REST API for onboarding pull requests, e.g. `https://api.github.com`.
    pub github_api_url: Option<String>,
}

impl Validate for CanonicalRepoRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("url", &self.url, 1, 2000);
        crate::routes::git::validate_remote(&mut v, &self.url);
        crate::routes::git::check_branch_and_path(
            &mut v,
            self.branch.as_deref(),
            self.path.as_deref(),
        );
        crate::routes::git::check_auth(&mut v, &self.auth, self.secret.is_some());
        if let Some(s) = &self.webhook_secret
            && !(16..=256).contains(&s.expose_secret().chars().count())
        {
            v.error("webhook_secret", "must be 16 to 256 characters");
        }
        if let Some(u) = &self.github_api_url {
            validate_github_api_url(&mut v, u);
        }
        v.finish()
    }
}

/// GitHub's API URL carries the repository's token on every request: an http(s) address and
/// path only (no credentials, query or fragment, which the request paths appended to it would
/// land in).
fn validate_github_api_url(v: &mut Validator, url: &str) {
    let fine = reqwest::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some_and(|h| !h.is_empty())
            && u.username().is_empty()
            && u.password().is_none()
            && u.query().is_none()
            && u.fragment().is_none()
    });
    if !fine {
        v.error(
            "github_api_url",
            "must be an http(s) URL without credentials, `?` or `#`, e.g. `https://api.github.com`",
        );
    }
}

/// Connect the tenant's canonical repository (the source of truth for workflows): read and
/// write access are proven first, nothing is saved if that fails.
#[utoipa::path(put, path = "/api/v1/canonical/repository", tag = "canonical", security(("bearer" = [])),
    request_body = CanonicalRepoRequest,
    responses((status = 200, body = CanonicalRepo), (status = 422, description = "Invalid, or the connection test failed", body = Problem)))]
pub async fn put_repository(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageEnvironments>,
    ApiJson(req): ApiJson<CanonicalRepoRequest>,
) -> ApiResult<Json<CanonicalRepo>> {
    let tenant_id = ctx.tenant_id();
    crate::routes::git::check_local(&state, &req.url)?;
    if let Some(api) = &req.github_api_url {
        check_github_api_url(&state, api).await?;
    }
    let access = GitAccess {
        url: req.url.trim().to_owned(),
        branch: req.branch.clone().unwrap_or_else(|| "main".into()),
        path: req.path.clone().unwrap_or_else(|| "canonical".into()),
        auth_kind: req.auth.clone(),
        username: req.username.clone(),
        secret: req.secret.clone(),
    };
    crate::routes::git::prove_access(&state, &access).await?;
    let mut tx = state.db.begin().await?;
    let repo = canonical::put_repo(
        &mut tx,
        &state.keyring,
        tenant_id,
        &NewCanonicalRepo {
            url: &access.url,
            branch: &access.branch,
            path: &access.path,
            auth_kind: &access.auth_kind,
            username: access.username.as_deref(),
            secret: access.secret.as_ref(),
            webhook_secret: req.webhook_secret.as_ref(),
            github_api_url: req.github_api_url.as_deref(),
        },
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "canonical.repository_configured",
        "tenant",
    )
    .target(tenant_id)
    .new_value(&repo)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(repo))
}

/// Refuses a GitHub API URL whose host is or resolves to an address outside
/// `WFO_OUTBOUND_NETWORKS` (it is called later, from onboarding runs, which check again). A
/// name that does not resolve now is left to that later check.
async fn check_github_api_url(state: &AppState, url: &str) -> ApiResult<()> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Ok(());
    };
    match state.jobs.http.guard().check_url(&parsed).await {
        Err(adapters::net::DestinationError::Refused(refused)) => Err(
            ApiError::destination_refused(format!("github_api_url: {refused}")),
        ),
        Ok(()) | Err(_) => Ok(()),
    }
}

/// The canonical repository (never its secrets).
#[utoipa::path(get, path = "/api/v1/canonical/repository", tag = "canonical", security(("bearer" = [])),
    responses((status = 200, body = CanonicalRepo), (status = 404, body = Problem)))]
pub async fn get_repository(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
) -> ApiResult<Json<CanonicalRepo>> {
    Ok(Json(canonical::get_repo(&state.db, ctx.tenant_id()).await?))
}

async fn start_git_sync(
    state: &AppState,
    actor: &Actor,
    tenant_id: Uuid,
    idempotency: Option<String>,
) -> ApiResult<RunView> {
    let input = GitSyncInput {
        tenant_id,
        triggered_by: actor.label.clone(),
    };
    let mut run = jobs::canonical::new_git_sync(&input);
    if let Some(key) = idempotency {
        run = run.idempotency_key(key);
    }
    start_run(
        state,
        actor,
        tenant_id,
        run,
        "canonical.sync_started",
        serde_json::json!({}),
    )
    .await
}

/// Sync the canonical state from Git (CAN-003), then reconcile every environment with it
/// (CAN-005), as a run.
#[utoipa::path(post, path = "/api/v1/canonical/sync", tag = "canonical", security(("bearer" = [])),
    responses((status = 202, body = RunView), (status = 404, description = "No canonical repository", body = Problem)))]
pub async fn sync_canonical(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    canonical::get_repo(&state.db, tenant_id).await?;
    let view = start_git_sync(&state, &ctx.actor(), tenant_id, None).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// The environments to scan; all of the tenant's when omitted.
    pub environment_ids: Option<Vec<Uuid>>,
}

impl Validate for ScanRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if let Some(ids) = &self.environment_ids {
            crate::routes::environments::validate_environment_ids(&mut v, ids);
        }
        v.finish()
    }
}

/// Scan environments for new workflows (CAN-011): a workflow sync of each (one parent run);
/// each sync ends by reconciling its environment, so new workflows show up as untracked.
#[utoipa::path(post, path = "/api/v1/canonical/scan", tag = "canonical", security(("bearer" = [])),
    request_body = ScanRequest,
    responses((status = 202, body = RunView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn scan(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiJson(req): ApiJson<ScanRequest>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    let ids = match req.environment_ids {
        Some(ids) => {
            for id in &ids {
                environments::get(&state.db, tenant_id, *id).await?;
            }
            ids
        }
        None => environments::list(&state.db, tenant_id)
            .await?
            .into_iter()
            .map(|e| e.id)
            .take(100)
            .collect(),
    };
    if ids.is_empty() {
        return Err(domain::Error::invalid(
            "environment_ids",
            "the tenant has no environments to scan",
        )
        .into());
    }
    let input = jobs::sync::BulkSyncInput {
        tenant_id,
        environment_ids: ids,
        scope: jobs::sync::Scope::Workflows,
        execution_retention_seconds: None,
    };
    let view = start_run(
        &state,
        &ctx.actor(),
        tenant_id,
        engine::NewRun::of::<jobs::sync::BulkSync>(tenant_id.to_string(), &input),
        "canonical.scan_started",
        serde_json::json!({"environment_ids": input.environment_ids}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MatrixQuery {
    /// Comma-separated environment ids (columns); all environments when omitted.
    pub environment_ids: Option<String>,
    /// Matches canonical names and ids (substring, case-insensitive).
    pub search: Option<String>,
    /// Only rows with a cell of this status: linked, out_of_date, drift, missing.
    pub status: Option<String>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

fn limit(limit: Option<u32>) -> Result<u32, domain::Error> {
    let limit = limit.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(domain::Error::invalid("limit", "must be between 1 and 200"))
    }
}

/// The matrix (CAN-012..015): canonical workflows × environments, each cell with its status
/// (`linked`, `out_of_date`, `drift`, `missing`) and the requests it allows; each column with
/// its count of untracked workflows.
#[utoipa::path(get, path = "/api/v1/canonical/matrix", tag = "canonical", security(("bearer" = [])),
    params(MatrixQuery),
    responses((status = 200, body = Matrix), (status = 422, body = Problem)))]
pub async fn matrix(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiQuery(q): ApiQuery<MatrixQuery>,
) -> ApiResult<Json<Matrix>> {
    let environment_ids = q
        .environment_ids
        .as_deref()
        .map(|s| {
            s.split(',')
                .map(|id| id.trim().parse::<Uuid>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    domain::Error::invalid("environment_ids", "must be comma-separated UUIDs")
                })
        })
        .transpose()?;
    if let Some(status) = &q.status
        && !["linked", "out_of_date", "drift", "missing"].contains(&status.as_str())
    {
        return Err(domain::Error::invalid(
            "status",
            "must be linked, out_of_date, drift or missing",
        )
        .into());
    }
    if q.search.as_ref().is_some_and(|s| s.len() > 200) {
        return Err(domain::Error::invalid("search", "must be at most 200 characters").into());
    }
    let filter = MatrixFilter {
        environment_ids,
        search: q.search,
        status: q.status,
    };
    let mut conn = state.db.acquire().await?;
    Ok(Json(
        canonical::matrix(
            &mut conn,
            ctx.tenant_id(),
            &filter,
            q.cursor.as_deref(),
            limit(q.limit)?,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UntrackedQuery {
    pub environment_id: Option<Uuid>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Workflows linked to no canonical workflow (CAN-007/008), by environment and name, each with
/// a same-name canonical workflow when there is one.
#[utoipa::path(get, path = "/api/v1/canonical/untracked", tag = "canonical", security(("bearer" = [])),
    params(UntrackedQuery),
    responses((status = 200, body = UntrackedPage), (status = 422, body = Problem)))]
pub async fn untracked(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiQuery(q): ApiQuery<UntrackedQuery>,
) -> ApiResult<Json<UntrackedPage>> {
    if let Some(env) = q.environment_id {
        environments::get(&state.db, ctx.tenant_id(), env).await?;
    }
    Ok(Json(
        canonical::untracked(
            &state.db,
            ctx.tenant_id(),
            q.environment_id,
            q.cursor.as_deref(),
            limit(q.limit)?,
        )
        .await?,
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CanonicalDetail {
    #[serde(flatten)]
    pub workflow: CanonicalWorkflow,
    /// Its storage form, as in Git.
    #[schema(value_type = Object)]
    pub definition: Value,
    pub environments: Vec<Mapping>,
}

fn canonical_id(id: &str) -> Result<(), ApiError> {
    if canonical::valid_canonical_id(id) {
        Ok(())
    } else {
        Err(ApiError::not_found("canonical workflow not found"))
    }
}

/// A canonical workflow, its definition and where it is deployed (CAN-001/002).
#[utoipa::path(get, path = "/api/v1/canonical/workflows/{canonical_id}", tag = "canonical", security(("bearer" = [])),
    params(("canonical_id" = String, Path, description = "The canonical id")),
    responses((status = 200, body = CanonicalDetail), (status = 404, body = Problem)))]
pub async fn get_canonical(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<CanonicalDetail>> {
    canonical_id(&id)?;
    let tenant_id = ctx.tenant_id();
    Ok(Json(CanonicalDetail {
        workflow: canonical::get(&state.db, tenant_id, &id).await?,
        definition: canonical::definition(&state.db, tenant_id, &id).await?,
        environments: canonical::mappings(&state.db, tenant_id, &id).await?,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The environment whose copy to compare (required).
    pub environment_id: Option<Uuid>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CanonicalDiff {
    pub canonical_id: String,
    pub environment_id: Uuid,
    pub workflow_id: String,
    pub status: String,
    pub summary: String,
    /// From the canonical (Git) version to the environment's copy.
    pub diff: WorkflowDiff,
    pub risk: RiskAssessment,
}

/// How an environment's copy differs from the canonical version (a drift or out-of-date cell).
#[utoipa::path(get, path = "/api/v1/canonical/workflows/{canonical_id}/diff", tag = "canonical", security(("bearer" = [])),
    params(("canonical_id" = String, Path, description = "The canonical id"), DiffQuery),
    responses((status = 200, body = CanonicalDiff), (status = 404, description = "Unknown, or not in that environment", body = Problem)))]
pub async fn diff_canonical(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> ApiResult<Json<CanonicalDiff>> {
    canonical_id(&id)?;
    let tenant_id = ctx.tenant_id();
    let mappings = canonical::mappings(&state.db, tenant_id, &id).await?;
    canonical::get(&state.db, tenant_id, &id).await?;
    let environment_id = q
        .environment_id
        .ok_or_else(|| domain::Error::invalid("environment_id", "is required"))?;
    let mapping = mappings
        .into_iter()
        .find(|m| m.environment_id == environment_id)
        .ok_or_else(|| ApiError::not_found("the workflow is not in that environment"))?;
    let env = domain::environments::get(&state.db, tenant_id, environment_id).await?;
    ctx.require(
        &state.db,
        Feature::WorkflowDiff,
        Some(env.provider.as_str()),
        "canonical.diff",
    )
    .await?;
    let canonical_def = canonical::definition(&state.db, tenant_id, &id).await?;
    let record =
        catalog::get_workflow(&state.db, tenant_id, environment_id, &mapping.workflow_id).await?;
    let d = diff::diff(&canonical_def, &record.definition);
    Ok(Json(CanonicalDiff {
        canonical_id: id,
        environment_id,
        workflow_id: mapping.workflow_id,
        status: mapping.status,
        summary: diff::render_summary(&d),
        risk: diff::risk(&d),
        diff: d,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The workflow's id in the environment.
    #[schema(min_length = 1, max_length = 200)]
    pub workflow_id: String,
}

impl Validate for LinkRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("workflow_id", &self.workflow_id, 1, 200);
        v.finish()
    }
}

/// Link a canonical workflow to a workflow of an environment by hand (CAN-002); a copy that
/// differs from the canonical version shows as drift.
#[utoipa::path(put, path = "/api/v1/canonical/workflows/{canonical_id}/environments/{environment_id}", tag = "canonical", security(("bearer" = [])),
    params(("canonical_id" = String, Path, description = "The canonical id"), ("environment_id" = Uuid, Path, description = "The environment's id")),
    request_body = LinkRequest,
    responses((status = 200, body = Vec<Mapping>), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn link(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UploadWorkflows>,
    ApiPath((id, environment_id)): ApiPath<(String, Uuid)>,
    ApiJson(req): ApiJson<LinkRequest>,
) -> ApiResult<Json<Vec<Mapping>>> {
    canonical_id(&id)?;
    let tenant_id = ctx.tenant_id();
    let c = canonical::get(&state.db, tenant_id, &id).await?;
    let env = environments::get(&state.db, tenant_id, environment_id).await?;
    if env.provider != c.provider {
        return Err(domain::Error::invalid(
            "environment_id",
            "is an environment of another provider",
        )
        .into());
    }
    let record =
        catalog::get_workflow(&state.db, tenant_id, environment_id, &req.workflow_id).await?;
    let mut tx = state.db.begin().await?;
    canonical::link(
        &mut tx,
        tenant_id,
        &id,
        environment_id,
        &req.workflow_id,
        &c.content_hash,
        ctx.principal.user_id(),
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "canonical.linked",
        "canonical_workflow",
    )
    .new_value(
        &serde_json::json!({"canonical_id": id, "environment_id": environment_id,
            "workflow_id": req.workflow_id, "workflow_name": record.name}),
    )
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(canonical::mappings(&state.db, tenant_id, &id).await?))
}

/// Remove a canonical workflow's link to an environment (its copy becomes untracked).
#[utoipa::path(delete, path = "/api/v1/canonical/workflows/{canonical_id}/environments/{environment_id}", tag = "canonical", security(("bearer" = [])),
    params(("canonical_id" = String, Path, description = "The canonical id"), ("environment_id" = Uuid, Path, description = "The environment's id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn unlink(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UploadWorkflows>,
    ApiPath((id, environment_id)): ApiPath<(String, Uuid)>,
) -> ApiResult<StatusCode> {
    canonical_id(&id)?;
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    canonical::unlink(&mut *tx, tenant_id, &id, environment_id).await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "canonical.unlinked",
        "canonical_workflow",
    )
    .new_value(&serde_json::json!({"canonical_id": id, "environment_id": environment_id}))
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardItemRequest {
    pub environment_id: Uuid,
    pub workflow_id: String,
    /// The canonical id to give it (letters, digits, `-`, `_`, `.`; default: from its name).
    pub canonical_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardRequest {
    /// 1 to 1000 untracked workflows.
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<OnboardItemRequest>,
    /// Push a branch and open a GitHub pull request instead of committing to the canonical
    /// branch (CAN-018); the workflows stay `pending` until it is merged and synced.
    #[serde(default)]
    pub pull_request: bool,
}

impl Validate for OnboardRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if self.items.is_empty() || self.items.len() > 1000 {
            v.error("items", "must name 1 to 1000 workflows");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, item) in self.items.iter().enumerate() {
            if !seen.insert((item.environment_id, item.workflow_id.as_str())) {
                v.error(&format!("items[{i}]"), "repeats a workflow");
            }
            if let Some(c) = &item.canonical_id
                && !canonical::valid_canonical_id(c)
            {
                v.error(
                    &format!("items[{i}].canonical_id"),
                    "must be 1-100 letters, digits, '-', '_' or '.', not starting with '.'",
                );
            }
        }
        v.finish()
    }
}

/// Onboard untracked workflows (CAN-009, CAN-010 in bulk) as a run: each is written to the
/// canonical repository (one commit, or a branch and pull request) and linked.
#[utoipa::path(post, path = "/api/v1/canonical/onboard", tag = "canonical", security(("bearer" = [])),
    request_body = OnboardRequest,
    responses((status = 202, body = RunView), (status = 404, description = "No canonical repository, or an unknown environment", body = Problem), (status = 422, body = Problem)))]
pub async fn onboard(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UploadWorkflows>,
    ApiJson(req): ApiJson<OnboardRequest>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    let repo = canonical::get_repo(&state.db, tenant_id).await?;
    if req.pull_request && repo.github_api_url.is_none() {
        return Err(domain::Error::invalid(
            "pull_request",
            "the canonical repository has no github_api_url to open pull requests with",
        )
        .into());
    }
    let mut envs = std::collections::HashSet::new();
    for item in &req.items {
        if envs.insert(item.environment_id) {
            environments::get(&state.db, tenant_id, item.environment_id).await?;
        }
    }
    let actor = ctx.actor();
    let input = OnboardInput {
        tenant_id,
        items: req
            .items
            .into_iter()
            .map(|i| OnboardItem {
                environment_id: i.environment_id,
                workflow_id: i.workflow_id,
                canonical_id: i.canonical_id,
            })
            .collect(),
        pull_request: req.pull_request,
        triggered_by: actor.label.clone(),
        requested_by: actor.user_id,
    };
    let view = start_run(
        &state,
        &actor,
        tenant_id,
        jobs::canonical::new_onboard(&input),
        "canonical.onboard_started",
        serde_json::json!({"workflows": input.items.len(), "pull_request": input.pull_request}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OnboardingCheck)]
pub struct Check {
    pub name: String,
    /// `pass`, `warn` or `fail`.
    pub status: String,
    pub message: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OnboardingPreflight)]
pub struct Preflight {
    /// No check failed.
    pub ready: bool,
    pub checks: Vec<Check>,
}

fn check(name: &str, status: &str, message: impl Into<String>) -> Check {
    Check {
        name: name.to_owned(),
        status: status.to_owned(),
        message: message.into(),
    }
}

/// Onboarding preflight (CAN-016): is everything in place to onboard — the canonical
/// repository, environments that are healthy and synced?
#[utoipa::path(get, path = "/api/v1/canonical/onboarding/preflight", tag = "canonical", security(("bearer" = [])),
    responses((status = 200, body = Preflight)))]
pub async fn preflight(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
) -> ApiResult<Json<Preflight>> {
    let tenant_id = ctx.tenant_id();
    let mut checks = Vec::new();
    match canonical::get_repo(&state.db, tenant_id).await {
        Ok(repo) => {
            checks.push(check(
                "canonical_repository",
                "pass",
                format!("{} ({})", repo.url, repo.branch),
            ));
            checks.push(match repo.github_api_url {
                Some(u) => check(
                    "pull_requests",
                    "pass",
                    format!("pull requests through {u}"),
                ),
                None => check(
                    "pull_requests",
                    "warn",
                    "no github_api_url: onboarding commits directly",
                ),
            });
            checks.push(match repo.last_sync_at {
                Some(at) => check("canonical_sync", "pass", format!("last synced from Git at {at}")),
                None => check("canonical_sync", "warn", "never synced from Git: run POST /canonical/sync first to pick up existing files"),
            });
        }
        Err(domain::Error::NotFound { .. }) => checks.push(check(
            "canonical_repository",
            "fail",
            "no canonical repository: PUT /canonical/repository",
        )),
        Err(e) => return Err(e.into()),
    }
    let envs = environments::list(&state.db, tenant_id).await?;
    if envs.is_empty() {
        checks.push(check(
            "environments",
            "fail",
            "no environments: connect one first",
        ));
    }
    for env in envs {
        let name = format!("environment:{}", env.name);
        let health = env.health_status.as_str();
        checks.push(match (env.last_sync_status.as_deref(), health) {
            (Some("succeeded"), "healthy" | "unknown") => {
                check(&name, "pass", "synced and reachable")
            }
            (Some("succeeded"), other) => {
                check(&name, "warn", format!("synced, but health is {other}"))
            }
            (None, _) => check(
                &name,
                "fail",
                "never synced: sync it so its workflows are known",
            ),
            (Some(status), _) => check(
                &name,
                "fail",
                format!(
                    "the last sync {status}: {}",
                    env.last_sync_error.unwrap_or_default()
                ),
            ),
        });
    }
    Ok(Json(Preflight {
        ready: checks.iter().all(|c| c.status != "fail"),
        checks,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InventoryEnvironment {
    pub environment_id: Uuid,
    pub name: String,
    pub class: String,
    pub workflows: i64,
    pub linked: i64,
    pub out_of_date: i64,
    pub drift: i64,
    pub missing: i64,
    pub untracked: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NameGroup {
    pub name: String,
    /// How many untracked copies across environments carry this name.
    pub copies: i64,
    /// How many distinct contents they have (1 = the same workflow everywhere).
    pub distinct_contents: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Inventory {
    pub canonical_workflows: i64,
    pub environments: Vec<InventoryEnvironment>,
    /// Untracked workflows sharing a name across environments: onboard one, link the others.
    pub shared_names: Vec<NameGroup>,
}

/// Onboarding inventory (CAN-017): a read-only scan of what is tracked, untracked and shared
/// across environments, from the catalog (nothing is written).
#[utoipa::path(get, path = "/api/v1/canonical/onboarding/inventory", tag = "canonical", security(("bearer" = [])),
    responses((status = 200, body = Inventory)))]
pub async fn inventory(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
) -> ApiResult<Json<Inventory>> {
    let tenant_id = ctx.tenant_id();
    let mut out = Inventory {
        canonical_workflows: sqlx::query_scalar(
            "select count(*) from canonical_workflows where tenant_id = $1 and deleted_at is null",
        )
        .bind(tenant_id)
        .fetch_one(&state.db)
        .await?,
        environments: Vec::new(),
        shared_names: Vec::new(),
    };
    for env in environments::list(&state.db, tenant_id).await? {
        let counts = canonical::status_counts(&state.db, tenant_id, env.id).await?;
        let workflows: i64 = sqlx::query_scalar(
            "select count(*) from env_workflows where environment_id = $1 and deleted_at is null",
        )
        .bind(env.id)
        .fetch_one(&state.db)
        .await?;
        out.environments.push(InventoryEnvironment {
            environment_id: env.id,
            name: env.name,
            class: env.class.as_str().to_owned(),
            workflows,
            linked: counts.linked,
            out_of_date: counts.out_of_date,
            drift: counts.drift,
            missing: counts.missing,
            untracked: counts.untracked,
        });
    }
    let groups: Vec<(String, i64, i64)> = sqlx::query_as(
        "select min(w.name), count(*), count(distinct w.content_hash) from env_workflows w \
         where w.tenant_id = $1 and w.deleted_at is null \
           and not exists (select 1 from workflow_env_map m where m.environment_id = w.environment_id and m.provider_id = w.provider_id) \
         group by lower(w.name) having count(distinct w.environment_id) > 1 order by lower(min(w.name)) limit 500",
    )
    .bind(tenant_id)
    .fetch_all(&state.db)
    .await?;
    out.shared_names = groups
        .into_iter()
        .map(|(name, copies, distinct_contents)| NameGroup {
            name,
            copies,
            distinct_contents,
        })
        .collect();
    Ok(Json(out))
}

/// Onboarding completion (CAN-019): is every workflow tracked and every canonical workflow
/// committed, and if not, what remains.
#[utoipa::path(get, path = "/api/v1/canonical/onboarding/completion", tag = "canonical", security(("bearer" = [])),
    responses((status = 200, body = Completion)))]
pub async fn completion(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
) -> ApiResult<Json<Completion>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(
        canonical::completion(&mut conn, ctx.tenant_id()).await?,
    ))
}

fn verify_signature(secret: &SecretString, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose_secret().as_bytes())
    else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookAccepted {
    /// `sync_started`, `ignored` (another branch, or not a push) or `pong`.
    pub result: String,
    pub run_id: Option<Uuid>,
}

/// GitHub push webhook (WF-020): configure `…/api/v1/webhooks/github/{tenant_id}` with content
/// type `application/json` and the repository's webhook secret. A signed push to the canonical
/// branch starts a canonical sync (once per pushed commit). Anything else is refused with the
/// same 401 whether or not the tenant has a webhook configured (the answer reveals nothing
/// about the tenant); a refused delivery to a configured webhook is audited, at most once a
/// minute per tenant, with the count of those refused since the last audit row.
#[utoipa::path(post, path = "/api/v1/webhooks/github/{tenant_id}", tag = "canonical",
    params(("tenant_id" = Uuid, Path, description = "The tenant's id")),
    request_body(content = Object, content_type = "application/json", description = "GitHub's event payload, signed in X-Hub-Signature-256"),
    responses((status = 202, body = WebhookAccepted), (status = 200, body = WebhookAccepted),
        (status = 401, description = "Missing or bad X-Hub-Signature-256, or no webhook configured", body = Problem)))]
pub async fn github_webhook(
    State(state): State<AppState>,
    ApiPath(tenant_id): ApiPath<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<WebhookAccepted>)> {
    let refused = || {
        ApiError::unauthenticated(
            "invalid_signature",
            "X-Hub-Signature-256 is missing or does not match the body",
        )
    };
    let secret = {
        let mut conn = state.db.acquire().await?;
        canonical::webhook_secret(&mut conn, &state.keyring, tenant_id).await?
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let actor = Actor {
        user_id: None,
        api_key_id: None,
        label: "github-webhook".into(),
        impersonator_user_id: None,
        ip: None,
        request_id: header("x-github-delivery").map(str::to_owned),
    };
    let Some(secret) = secret else {
        // The same work and answer as a bad signature: no oracle for which tenants have one.
        let unset = SecretString::from(Uuid::new_v4().to_string());
        std::hint::black_box(verify_signature(
            &unset,
            &body,
            header("x-hub-signature-256"),
        ));
        return Err(refused());
    };
    if !verify_signature(&secret, &body, header("x-hub-signature-256")) {
        let mut tx = state.db.begin().await?;
        if let Some(suppressed) = canonical::webhook_rejected(&mut tx, tenant_id).await? {
            Entry::new(
                Some(tenant_id),
                &actor,
                "canonical.webhook_rejected",
                "tenant",
            )
            .target(tenant_id)
            .new_value(
                &serde_json::json!({"reason": "bad or missing X-Hub-Signature-256",
                "event": header("x-github-event"),
                "suppressed_since_last": suppressed}),
            )
            .record(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        return Err(refused());
    }
    let event = header("x-github-event").unwrap_or_default();
    if event == "ping" {
        return Ok((
            StatusCode::OK,
            Json(WebhookAccepted {
                result: "pong".into(),
                run_id: None,
            }),
        ));
    }
    let payload: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let repo = canonical::get_repo(&state.db, tenant_id).await?;
    let pushed_ref = payload
        .get("ref")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if event != "push" || pushed_ref != format!("refs/heads/{}", repo.branch) {
        return Ok((
            StatusCode::OK,
            Json(WebhookAccepted {
                result: "ignored".into(),
                run_id: None,
            }),
        ));
    }
    let after = payload
        .get("after")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let view = start_git_sync(
        &state,
        &actor,
        tenant_id,
        Some(format!("github-push:{after}")),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(WebhookAccepted {
            result: "sync_started".into(),
            run_id: Some(view.id),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signatures_verify_as_documented() {
        // GitHub's documented example (Validating webhook deliveries).
        let secret = SecretString::from("It's a Secret to Everybody".to_owned());
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify_signature(&secret, b"Hello, World!", Some(good)));
        assert!(!verify_signature(&secret, b"Hello, World?", Some(good)));
        assert!(!verify_signature(&secret, b"Hello, World!", None));
        assert!(!verify_signature(
            &secret,
            b"Hello, World!",
            Some("sha256=zz")
        ));
        assert!(!verify_signature(
            &secret,
            b"Hello, World!",
            Some("sha1=757107ea")
        ));
    }

    #[test]
    fn the_storage_form_keeps_the_content_hash() {
        use domain::workflow;
        let wf = serde_json::json!({"name": "a", "nodes": [], "connections": {}});
        assert_eq!(
            workflow::content_hash(&workflow::storage_form(&wf)),
            workflow::content_hash(&wf)
        );
    }
}
