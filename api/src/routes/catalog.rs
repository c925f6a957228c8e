//! The catalog: workflows (WF-001..005, WF-008), credentials (CRED-001..006) and executions
//! (EXEC-001..004) as the last syncs saw them.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use domain::catalog::{
    self, CredentialItem, ExecutionPage, ExecutionRow, MissingCredential, WorkflowFilter,
    WorkflowPage,
};
use domain::workflow::{self, Complexity, CredentialRef, Graph};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiPath, ApiQuery};

/// A list's `?limit=`: 1-200, default 50.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(domain::Error::invalid("limit", "must be between 1 and 200").into())
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkflowQuery {
    pub environment_id: Option<Uuid>,
    /// Matches names and tags (substring, case-insensitive).
    pub search: Option<String>,
    /// Only workflows with this tag.
    pub tag: Option<String>,
    pub active: Option<bool>,
    pub archived: Option<bool>,
    /// Include workflows deleted in their provider (default false).
    #[serde(default)]
    pub include_deleted: bool,
    pub cursor: Option<String>,
    /// 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Search and filter workflows across environments, by name (WF-001, WF-002).
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows", security(("bearer" = [])), params(WorkflowQuery),
    responses((status = 200, body = WorkflowPage), (status = 422, body = Problem)))]
pub async fn list_workflows(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiQuery(q): ApiQuery<WorkflowQuery>,
) -> ApiResult<Json<WorkflowPage>> {
    if q.search.as_ref().is_some_and(|s| s.len() > 200) {
        return Err(domain::Error::invalid("search", "must be at most 200 characters").into());
    }
    let filter = WorkflowFilter {
        environment_id: q.environment_id,
        search: q.search.filter(|s| !s.trim().is_empty()),
        tag: q.tag,
        active: q.active,
        archived: q.archived,
        include_deleted: q.include_deleted,
    };
    Ok(Json(
        catalog::list_workflows(
            &state.db,
            ctx.tenant_id(),
            &filter,
            q.cursor.as_deref(),
            page_limit(q.limit)?,
        )
        .await?,
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowDetail {
    pub environment_id: Uuid,
    pub environment_name: String,
    pub environment_class: String,
    pub id: String,
    pub name: String,
    pub active: bool,
    pub archived: bool,
    pub tags: Vec<String>,
    /// SHA-256 of the normalised workflow (what drift and diff compare).
    pub content_hash: String,
    pub provider_updated_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub synced_at: DateTime<Utc>,
    /// The workflow as the provider returned it (nodes, connections, settings).
    #[schema(value_type = Object)]
    pub definition: Value,
    /// Nodes with positions and edges, for drawing (WF-004).
    pub graph: Graph,
    pub complexity: Complexity,
    pub credentials: Vec<CredentialRef>,
}

/// One workflow with its definition, graph, complexity and credentials (WF-003..005).
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}/workflows/{workflow_id}", tag = "workflows", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id"),
           ("workflow_id" = String, Path, description = "The workflow's id in the provider")),
    responses((status = 200, body = WorkflowDetail), (status = 404, body = Problem)))]
pub async fn get_workflow(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath((environment_id, workflow_id)): ApiPath<(Uuid, String)>,
) -> ApiResult<Json<WorkflowDetail>> {
    let w = catalog::get_workflow(&state.db, ctx.tenant_id(), environment_id, &workflow_id).await?;
    Ok(Json(WorkflowDetail {
        graph: workflow::graph(&w.definition),
        complexity: workflow::complexity(&w.definition),
        credentials: workflow::credential_refs(&w.definition),
        environment_id: w.environment_id,
        environment_name: w.environment_name,
        environment_class: w.environment_class,
        id: w.id,
        name: w.name,
        active: w.active,
        archived: w.archived,
        tags: w.tags,
        content_hash: w.content_hash,
        provider_updated_at: w.provider_updated_at,
        deleted_at: w.deleted_at,
        synced_at: w.synced_at,
        definition: w.definition,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CredentialQuery {
    pub environment_id: Option<Uuid>,
}

/// Credentials by environment, with type, usage and health; never secrets (CRED-001, -002,
/// -005). Compare environments by name and type for the cross-environment matrix (CRED-006).
#[utoipa::path(get, path = "/api/v1/credentials", tag = "credentials", security(("bearer" = [])), params(CredentialQuery),
    responses((status = 200, body = Vec<CredentialItem>)))]
pub async fn list_credentials(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiQuery(q): ApiQuery<CredentialQuery>,
) -> ApiResult<Json<Vec<CredentialItem>>> {
    Ok(Json(
        catalog::list_credentials(&state.db, ctx.tenant_id(), q.environment_id).await?,
    ))
}

/// Credential references the environment cannot satisfy (CRED-005).
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}/credentials/missing", tag = "credentials", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    responses((status = 200, body = Vec<MissingCredential>), (status = 404, body = Problem)))]
pub async fn missing_credentials(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(environment_id): ApiPath<Uuid>,
) -> ApiResult<Json<Vec<MissingCredential>>> {
    domain::environments::get(&state.db, ctx.tenant_id(), environment_id).await?;
    Ok(Json(
        catalog::missing_credentials(&state.db, ctx.tenant_id(), environment_id).await?,
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialUse {
    pub workflow_id: String,
    pub workflow_name: String,
    pub node: String,
}

/// The workflows (and nodes) using one credential (CRED-003).
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}/credentials/{credential_id}/usage", tag = "credentials", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id"),
           ("credential_id" = String, Path, description = "The credential's id in the provider")),
    responses((status = 200, body = Vec<CredentialUse>), (status = 404, body = Problem)))]
pub async fn credential_usage(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath((environment_id, credential_id)): ApiPath<(Uuid, String)>,
) -> ApiResult<Json<Vec<CredentialUse>>> {
    domain::environments::get(&state.db, ctx.tenant_id(), environment_id).await?;
    let rows =
        catalog::credential_usage(&state.db, ctx.tenant_id(), environment_id, &credential_id)
            .await?;
    Ok(Json(
        rows.into_iter()
            .map(|(workflow_id, workflow_name, node)| CredentialUse {
                workflow_id,
                workflow_name,
                node,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionQuery {
    pub environment_id: Option<Uuid>,
    pub workflow_id: Option<String>,
    /// `success`, `error`, `running`, `waiting`, `canceled`, `crashed`, `new` or `unknown`.
    #[param(pattern = "^(success|error|running|waiting|canceled|crashed|new|unknown)$")]
    pub status: Option<String>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Executions, newest first, filtered by environment, workflow and status (EXEC-001, -002).
#[utoipa::path(get, path = "/api/v1/executions", tag = "executions", security(("bearer" = [])), params(ExecutionQuery),
    responses((status = 200, body = ExecutionPage), (status = 422, body = Problem)))]
pub async fn list_executions(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewExecutions>,
    ApiQuery(q): ApiQuery<ExecutionQuery>,
) -> ApiResult<Json<ExecutionPage>> {
    if let Some(s) = &q.status
        && ![
            "success", "error", "running", "waiting", "canceled", "crashed", "new", "unknown",
        ]
        .contains(&s.as_str())
    {
        return Err(domain::Error::invalid(
            "status",
            "must be success, error, running, waiting, canceled, crashed, new or unknown",
        )
        .into());
    }
    let filter = catalog::ExecutionFilter {
        environment_id: q.environment_id,
        workflow_id: q.workflow_id,
        status: q.status,
    };
    Ok(Json(
        catalog::list_executions(
            &state.db,
            ctx.tenant_id(),
            &filter,
            q.cursor.as_deref(),
            page_limit(q.limit)?,
        )
        .await?,
    ))
}

/// One execution with its error message (EXEC-003, EXEC-004).
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}/executions/{execution_id}", tag = "executions", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id"),
           ("execution_id" = String, Path, description = "The execution's id in the provider")),
    responses((status = 200, body = ExecutionRow), (status = 404, body = Problem)))]
pub async fn get_execution(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewExecutions>,
    ApiPath((environment_id, execution_id)): ApiPath<(Uuid, String)>,
) -> ApiResult<Json<ExecutionRow>> {
    Ok(Json(
        catalog::get_execution(&state.db, ctx.tenant_id(), environment_id, &execution_id).await?,
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialMatrix {
    /// The columns: every environment of the tenant.
    pub environments: Vec<MatrixEnvironment>,
    pub rows: Vec<domain::catalog::CredentialMatrixRow>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MatrixEnvironment {
    pub id: Uuid,
    pub name: String,
    pub class: domain::environments::EnvironmentClass,
}

/// Credentials (by type and name) × environments: which environment has which (CRED-006).
#[utoipa::path(get, path = "/api/v1/credentials/matrix", tag = "credentials", security(("bearer" = [])),
    responses((status = 200, body = CredentialMatrix)))]
pub async fn credential_matrix(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
) -> ApiResult<Json<CredentialMatrix>> {
    let environments = domain::environments::list(&state.db, ctx.tenant_id())
        .await?
        .into_iter()
        .map(|e| MatrixEnvironment {
            id: e.id,
            name: e.name,
            class: e.class,
        })
        .collect();
    Ok(Json(CredentialMatrix {
        environments,
        rows: catalog::credential_matrix(&state.db, ctx.tenant_id()).await?,
    }))
}
