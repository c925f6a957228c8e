//! Workflow operations under the environment-class policies (WF-006..015, PRD 3.1.3):
//! activate, deactivate, archive and restore, delete (with approval where policy says so), hard
//! delete with confirmation, upload, export; and the approval of held actions.

use std::sync::Arc;

use adapters::{Provider, ProviderError};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use domain::Role;
use domain::action_requests::{self, ActionRequest, NewRequest};
use domain::audit::Entry;
use domain::catalog;
use domain::environments::{self, Environment};
use domain::policy::{self, Action, Gate};
use domain::validate::Validator;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};

/// A provider's refusal or failure as an API error (the provider's own message kept).
fn provider_failed(e: &ProviderError) -> ApiError {
    let status = match e {
        // The environment's URL is what must change: the request's own data, not a gateway's.
        ProviderError::Validation(_)
        | ProviderError::Unsupported(_)
        | ProviderError::Refused(_)
        | ProviderError::Redirected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ProviderError::NotFound(_) => StatusCode::NOT_FOUND,
        ProviderError::RateLimited { .. } | ProviderError::Transient(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(status, e.code(), e.to_string())
}

async fn provider_for(
    state: &AppState,
    tenant_id: Uuid,
    environment_id: Uuid,
) -> ApiResult<Arc<dyn Provider>> {
    let mut conn = state.db.acquire().await?;
    let access = environments::access(&mut conn, &state.keyring, tenant_id, environment_id).await?;
    jobs::providers::connect(&state.jobs.http, &access).map_err(|e| provider_failed(&e))
}

/// Carries out `action` on the provider and brings the catalog up to date.
async fn carry_out(
    state: &AppState,
    provider: &dyn Provider,
    env: &Environment,
    workflow_id: &str,
    action: Action,
) -> Result<Option<Value>, ProviderError> {
    jobs::workflow_ops::carry_out(
        &state.db,
        provider,
        env.tenant_id,
        env.id,
        workflow_id,
        action,
    )
    .await
}

/// The actions a request or a bulk operation may ask for (the policy's other actions have
/// their own endpoints): the document's enum, the API's rule.
#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RequestableAction {
    Activate,
    Deactivate,
    Archive,
    Unarchive,
    Delete,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequestBody {
    /// `activate`, `deactivate`, `archive`, `unarchive` or `delete`.
    #[schema(value_type = RequestableAction)]
    pub action: Action,
    /// Why; shown to approvers.
    #[schema(max_length = 2000)]
    pub reason: Option<String>,
}

impl Validate for ActionRequestBody {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if matches!(
            self.action,
            Action::Upload | Action::DirectEdit | Action::HardDelete
        ) {
            v.error(
                "action",
                "must be activate, deactivate, archive, unarchive or delete",
            );
        }
        if let Some(r) = &self.reason {
            v.text("reason", r, 0, 2000);
        }
        v.finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionOutcome {
    /// `done`, or `pending_approval` when policy holds the action for another admin.
    pub status: &'static str,
    /// Policy warnings about what was done (staging deletes, …).
    pub warnings: Vec<String>,
    /// The workflow as the provider returned it, when it still exists.
    #[schema(value_type = Option<Object>)]
    pub workflow: Option<Value>,
    pub request: Option<ActionRequest>,
}

/// Act on a workflow under its environment's policy (WF-007, WF-010, WF-011, WF-015): done at
/// once, done with a warning, held for another admin's approval (202), or refused (403 with
/// `action_blocked` / `admin_only`).
#[utoipa::path(post, path = "/api/v1/environments/{environment_id}/workflows/{workflow_id}/actions", tag = "workflows", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id"),
           ("workflow_id" = String, Path, description = "The workflow's id in the provider")),
    request_body = ActionRequestBody,
    responses((status = 200, body = ActionOutcome), (status = 202, description = "Held for approval", body = ActionOutcome),
        (status = 403, description = "Blocked or admin only", body = Problem), (status = 404, body = Problem),
        (status = 422, description = "The provider refused (e.g. no trigger node)", body = Problem)))]
pub async fn workflow_action(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UploadWorkflows>,
    ApiPath((environment_id, workflow_id)): ApiPath<(Uuid, String)>,
    ApiJson(req): ApiJson<ActionRequestBody>,
) -> ApiResult<(StatusCode, Json<ActionOutcome>)> {
    let tenant_id = ctx.tenant_id();
    let env = environments::get(&state.db, tenant_id, environment_id).await?;
    let wf = catalog::get_workflow(&state.db, tenant_id, environment_id, &workflow_id).await?;
    let gate = policy::check(env.class, req.action, ctx.tenant.role)?;
    let actor = ctx.actor();
    if gate == Gate::NeedsApproval {
        let mut tx = state.db.begin().await?;
        let request = action_requests::create(
            &mut *tx,
            NewRequest {
                tenant_id,
                environment_id,
                workflow_id: &workflow_id,
                workflow_name: &wf.name,
                action: req.action,
                reason: req.reason.as_deref(),
                requested_by: ctx.principal.accountable_user(),
                requested_by_label: &actor.label,
            },
        )
        .await?;
        Entry::new(
            Some(tenant_id),
            &actor,
            "workflow.action_requested",
            "workflow",
        )
        .target(&workflow_id)
        .provider(&env.provider)
        .new_value(&request)
        .record(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(ActionOutcome {
                status: "pending_approval",
                warnings: vec![],
                workflow: None,
                request: Some(request),
            }),
        ));
    }
    let Gate::Proceed { warning } = gate else {
        unreachable!("handled above")
    };
    let provider = provider_for(&state, tenant_id, environment_id).await?;
    let result = carry_out(&state, &*provider, &env, &workflow_id, req.action).await;
    let mut entry = Entry::new(Some(tenant_id), &actor, "workflow.action", "workflow")
        .target(&workflow_id)
        .provider(&env.provider);
    entry = entry.new_value(&serde_json::json!({
        "environment_id": environment_id, "action": req.action, "reason": req.reason,
        "ok": result.is_ok(), "error": result.as_ref().err().map(ToString::to_string),
    }));
    entry.record(&state.db).await?;
    let workflow = result.map_err(|e| provider_failed(&e))?;
    Ok((
        StatusCode::OK,
        Json(ActionOutcome {
            status: "done",
            warnings: warning.into_iter().collect(),
            workflow,
            request: None,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfirmQuery {
    /// The workflow's exact name, as confirmation.
    pub confirm: Option<String>,
}

/// Hard-delete a workflow: removed from the provider and from WorkflowOps' catalog (WF-012).
/// Admins only, production only by policy, with `?confirm=<its name>`.
#[utoipa::path(delete, path = "/api/v1/environments/{environment_id}/workflows/{workflow_id}", tag = "workflows", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id"),
           ("workflow_id" = String, Path, description = "The workflow's id in the provider"), ConfirmQuery),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn hard_delete_workflow(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::HardDeleteWorkflows>,
    ApiPath((environment_id, workflow_id)): ApiPath<(Uuid, String)>,
    ApiQuery(q): ApiQuery<ConfirmQuery>,
) -> ApiResult<StatusCode> {
    let tenant_id = ctx.tenant_id();
    let env = environments::get(&state.db, tenant_id, environment_id).await?;
    let wf = catalog::get_workflow(&state.db, tenant_id, environment_id, &workflow_id).await?;
    policy::check(env.class, Action::HardDelete, ctx.tenant.role)?;
    if q.confirm.as_deref() != Some(wf.name.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "confirmation_required",
            format!(
                "to delete this workflow for good, pass ?confirm= with its exact name (`{}`)",
                wf.name
            ),
        ));
    }
    let provider = provider_for(&state, tenant_id, environment_id).await?;
    match carry_out(&state, &*provider, &env, &workflow_id, Action::HardDelete).await {
        Ok(_) | Err(ProviderError::NotFound(_)) => {}
        Err(e) => return Err(provider_failed(&e)),
    }
    Entry::new(Some(tenant_id), &ctx.actor(), "workflow.hard_deleted", "workflow")
        .target(&workflow_id)
        .provider(&env.provider)
        .old(&serde_json::json!({"environment_id": environment_id, "name": wf.name, "content_hash": wf.content_hash}))
        .record(&state.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// Workflow JSON as n8n exports it (fields the instance does not accept are left out).
    #[schema(schema_with = upload_workflows_schema)]
    pub workflows: Vec<Value>,
}

/// The schema of [`UploadRequest::workflows`]: 1-100 workflow objects, each with a name of 1-200
/// characters and a list of nodes (and, when given, connections as an object); any other field
/// n8n exports is accepted.
fn upload_workflows_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, Type};
    let workflow = ObjectBuilder::new()
        .property(
            "name",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(200)),
        )
        .required("name")
        .property(
            "nodes",
            ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object)),
        )
        .required("nodes")
        .property(
            "connections",
            ObjectBuilder::new().schema_type(Type::Object),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(true)));
    ArrayBuilder::new()
        .items(workflow)
        .min_items(Some(1))
        .max_items(Some(100))
        .description(Some(
            "Workflow JSON as n8n exports it (fields the instance does not accept are left out).",
        ))
        .build()
}

impl Validate for UploadRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if self.workflows.is_empty() || self.workflows.len() > 100 {
            v.error("workflows", "must hold 1 to 100 workflows");
        }
        for (i, wf) in self.workflows.iter().enumerate() {
            let name = wf.get("name").and_then(Value::as_str).unwrap_or("");
            if name.trim().is_empty() || name.chars().count() > 200 {
                v.error(
                    &format!("workflows[{i}].name"),
                    "must be a name of 1-200 characters",
                );
            }
            if !wf.get("nodes").is_some_and(Value::is_array) {
                v.error(&format!("workflows[{i}].nodes"), "must be a list of nodes");
            }
            if wf.get("connections").is_some_and(|c| !c.is_object()) {
                v.error(&format!("workflows[{i}].connections"), "must be an object");
            }
        }
        v.finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadResult {
    /// Per workflow, in order: the new id, or why the provider refused it.
    pub results: Vec<UploadItem>,
    pub created: usize,
    pub failed: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadItem {
    pub name: String,
    pub id: Option<String>,
    pub error: Option<String>,
}

/// Upload workflows into an environment (WF-009; blocked in production by policy). Each is
/// created inactive; a refusal of one does not stop the others.
#[utoipa::path(post, path = "/api/v1/environments/{environment_id}/workflows", tag = "workflows", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    request_body = UploadRequest,
    responses((status = 200, body = UploadResult), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn upload_workflows(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UploadWorkflows>,
    ApiPath(environment_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UploadRequest>,
) -> ApiResult<Json<UploadResult>> {
    let env = environments::get(&state.db, ctx.tenant_id(), environment_id).await?;
    Ok(Json(upload(&state, &ctx, &env, &req.workflows).await?))
}

/// Upload a ZIP of workflow JSON files, as n8n exports them (WF-009): every `.json` entry is a
/// workflow or a list of them; at most 100, bounded in size. Otherwise as the JSON upload.
#[utoipa::path(post, path = "/api/v1/environments/{environment_id}/workflows/zip", tag = "workflows", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    request_body(content = Vec<u8>, content_type = "application/zip"),
    responses((status = 200, body = UploadResult), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem), (status = 422, description = "Not a ZIP, or its workflows are invalid", body = Problem)))]
pub async fn upload_workflows_zip(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UploadWorkflows>,
    ApiPath(environment_id): ApiPath<Uuid>,
    body: axum::body::Bytes,
) -> ApiResult<Json<UploadResult>> {
    let env = environments::get(&state.db, ctx.tenant_id(), environment_id).await?;
    let req = UploadRequest {
        workflows: domain::bundle::from_zip(&body)?,
    };
    req.validate()?;
    Ok(Json(upload(&state, &ctx, &env, &req.workflows).await?))
}

/// Creates each workflow (inactive) in the environment's provider under the upload policy.
async fn upload(
    state: &AppState,
    ctx: &TenantCtx<perm::UploadWorkflows>,
    env: &Environment,
    workflows: &[Value],
) -> ApiResult<UploadResult> {
    let tenant_id = ctx.tenant_id();
    policy::check(env.class, Action::Upload, ctx.tenant.role)?;
    let provider = provider_for(state, tenant_id, env.id).await?;
    let mut results = Vec::with_capacity(workflows.len());
    let mut created = Vec::new();
    for wf in workflows {
        let name = wf
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match provider.create_workflow(wf).await {
            Ok(new) => {
                results.push(UploadItem {
                    name,
                    id: new.get("id").and_then(Value::as_str).map(str::to_owned),
                    error: None,
                });
                created.push(new);
            }
            Err(e) => results.push(UploadItem {
                name,
                id: None,
                error: Some(e.to_string()),
            }),
        }
    }
    let mut tx = state.db.begin().await?;
    catalog::upsert_workflows(&mut tx, tenant_id, env.id, Uuid::nil(), &created).await?;
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "workflow.uploaded",
        "environment",
    )
    .target(env.id)
    .provider(&env.provider)
    .new_value(&serde_json::json!({
        "created": results.iter().filter_map(|r| r.id.clone()).collect::<Vec<_>>(),
        "failed": failed,
    }))
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(UploadResult {
        created: results.len() - failed,
        failed,
        results,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Only these workflow ids (comma-separated); all live workflows when omitted.
    pub ids: Option<String>,
    /// `zip` (default: one JSON file per workflow) or `json` (one bundle document).
    #[param(pattern = "^(zip|json)$")]
    pub format: Option<String>,
}

/// Download an environment's workflows as last synced (WF-013): a ZIP with one JSON file per
/// workflow, or with `format=json` one bundle document.
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}/workflows/export", tag = "workflows", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id"), ExportQuery),
    responses((status = 200, description = "An attachment: a ZIP, or {environment, exported_at, workflows: [...]}"), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn export_workflows(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(environment_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<impl IntoResponse> {
    let tenant_id = ctx.tenant_id();
    let env = environments::get(&state.db, tenant_id, environment_id).await?;
    let ids: Option<Vec<String>> = q.ids.map(|s| {
        s.split(',')
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty())
            .collect()
    });
    let zip = match q.format.as_deref() {
        None | Some("zip") => true,
        Some("json") => false,
        Some(_) => return Err(domain::Error::invalid("format", "must be zip or json").into()),
    };
    let workflows =
        catalog::definitions(&state.db, tenant_id, environment_id, ids.as_deref()).await?;
    let stem: String = env
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let (content_type, filename, body) = if zip {
        (
            "application/zip",
            format!("{stem}-workflows.zip"),
            domain::bundle::to_zip(&workflows)?,
        )
    } else {
        let doc = serde_json::json!({
            "environment": env.name, "provider": env.provider, "exported_at": chrono::Utc::now(),
            "workflows": workflows,
        });
        let bytes = serde_json::to_vec(&doc).map_err(ApiError::internal)?;
        ("application/json", format!("{stem}-workflows.json"), bytes)
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestQuery {
    /// `pending`, `approved`, `rejected` or `failed`.
    pub status: Option<String>,
}

/// Workflow actions held for approval, newest first.
#[utoipa::path(get, path = "/api/v1/workflow-action-requests", tag = "workflows", security(("bearer" = [])), params(RequestQuery),
    responses((status = 200, body = Vec<ActionRequest>)))]
pub async fn list_action_requests(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiQuery(q): ApiQuery<RequestQuery>,
) -> ApiResult<Json<Vec<ActionRequest>>> {
    Ok(Json(
        action_requests::list(&state.db, ctx.tenant_id(), q.status.as_deref()).await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

impl Validate for DecisionBody {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if let Some(c) = &self.comment {
            v.text("comment", c, 0, 2000);
        }
        v.finish()
    }
}

/// Approve a held action: it is carried out now. Admins only, never the requester.
#[utoipa::path(post, path = "/api/v1/workflow-action-requests/{request_id}/approve", tag = "workflows", security(("bearer" = [])),
    params(("request_id" = Uuid, Path, description = "The request's id")),
    request_body = DecisionBody,
    responses((status = 200, body = ActionRequest), (status = 403, description = "Not an admin, or the requester", body = Problem),
        (status = 404, body = Problem), (status = 409, description = "Already decided", body = Problem)))]
pub async fn approve_action(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageEnvironments>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> ApiResult<Json<ActionRequest>> {
    decide(&state, &ctx, id, true, body.comment.as_deref()).await
}

/// Reject a held action. Admins only, never the requester.
#[utoipa::path(post, path = "/api/v1/workflow-action-requests/{request_id}/reject", tag = "workflows", security(("bearer" = [])),
    params(("request_id" = Uuid, Path, description = "The request's id")),
    request_body = DecisionBody,
    responses((status = 200, body = ActionRequest), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reject_action(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageEnvironments>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> ApiResult<Json<ActionRequest>> {
    decide(&state, &ctx, id, false, body.comment.as_deref()).await
}

async fn decide(
    state: &AppState,
    ctx: &TenantCtx<perm::ManageEnvironments>,
    id: Uuid,
    approve: bool,
    comment: Option<&str>,
) -> ApiResult<Json<ActionRequest>> {
    let tenant_id = ctx.tenant_id();
    let actor = ctx.actor();
    debug_assert!(ctx.tenant.role == Role::Admin);
    // "Another admin": a person, or a key could decide its own creator's request.
    let user = ctx.principal.user_id().ok_or_else(|| {
        ApiError::forbidden(
            "user_required",
            "approvals are given by people, not API keys",
        )
    })?;
    let mut tx = state.db.begin().await?;
    let req = action_requests::lock_pending(&mut tx, tenant_id, id, user).await?;
    let (status, error) = if approve {
        let env = environments::get(&mut *tx, tenant_id, req.environment_id).await?;
        let provider = provider_for(state, tenant_id, env.id).await?;
        match carry_out(state, &*provider, &env, &req.workflow_id, req.action).await {
            Ok(_) => ("approved", None),
            Err(e) => ("failed", Some(e.to_string())),
        }
    } else {
        ("rejected", None)
    };
    let decided = action_requests::decide(
        &mut *tx,
        id,
        status,
        Some(user),
        &actor.label,
        comment,
        error.as_deref(),
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &actor,
        if approve {
            "workflow.action_approved"
        } else {
            "workflow.action_rejected"
        },
        "workflow",
    )
    .target(&req.workflow_id)
    .old(&req)
    .new_value(&decided)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(decided))
}

/// A tag name.
#[derive(utoipa::ToSchema)]
#[schema(min_length = 1, max_length = 100)]
#[allow(dead_code)]
pub struct TagName(String);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    /// Tag names (1-100 characters each); missing tags are created in the provider.
    #[schema(max_items = 50, inline, value_type = Vec<TagName>)]
    pub tags: Vec<String>,
}

impl Validate for TagsBody {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if self.tags.len() > 50 {
            v.error("tags", "at most 50 tags");
        }
        for (i, t) in self.tags.iter().enumerate() {
            v.text(&format!("tags[{i}]"), t, 1, 100);
        }
        v.finish()
    }
}

/// Set a workflow's tags by name, creating missing ones in the provider (WF-014). Tags are not
/// part of a workflow's content, so every class allows it to developers.
#[utoipa::path(put, path = "/api/v1/environments/{environment_id}/workflows/{workflow_id}/tags", tag = "workflows", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id"),
           ("workflow_id" = String, Path, description = "The workflow's id in the provider")),
    request_body = TagsBody,
    responses((status = 200, body = Vec<String>), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_workflow_tags(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UploadWorkflows>,
    ApiPath((environment_id, workflow_id)): ApiPath<(Uuid, String)>,
    ApiJson(body): ApiJson<TagsBody>,
) -> ApiResult<Json<Vec<String>>> {
    let tenant_id = ctx.tenant_id();
    let env = environments::get(&state.db, tenant_id, environment_id).await?;
    let old = catalog::get_workflow(&state.db, tenant_id, environment_id, &workflow_id).await?;
    let provider = provider_for(&state, tenant_id, environment_id).await?;
    let mut known = std::collections::HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = provider
            .list_tags(cursor.as_deref())
            .await
            .map_err(|e| provider_failed(&e))?;
        known.extend(page.items.into_iter().map(|t| (t.name, t.id)));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let mut ids = Vec::with_capacity(body.tags.len());
    for name in &body.tags {
        let name = name.trim();
        let id = match known.get(name) {
            Some(id) => id.clone(),
            None => {
                let created = provider
                    .create_tag(name)
                    .await
                    .map_err(|e| provider_failed(&e))?;
                known.insert(created.name.clone(), created.id.clone());
                created.id
            }
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    provider
        .set_workflow_tags(&workflow_id, &ids)
        .await
        .map_err(|e| provider_failed(&e))?;
    let updated = provider
        .get_workflow(&workflow_id)
        .await
        .map_err(|e| provider_failed(&e))?;
    let mut tx = state.db.begin().await?;
    catalog::upsert_workflows(
        &mut tx,
        tenant_id,
        environment_id,
        Uuid::nil(),
        std::slice::from_ref(&updated),
    )
    .await?;
    let now = catalog::get_workflow(&mut *tx, tenant_id, environment_id, &workflow_id).await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "workflow.tags_set",
        "workflow",
    )
    .target(&workflow_id)
    .provider(&env.provider)
    .old(&old.tags)
    .new_value(&now.tags)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(now.tags))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkActionBody {
    /// `activate`, `deactivate`, `archive`, `unarchive` or `delete`.
    #[schema(value_type = RequestableAction)]
    pub action: Action,
    /// 1-200 workflow ids of this environment, none twice.
    #[schema(value_type = BTreeSet<String>, min_items = 1, max_items = 200)]
    pub workflow_ids: Vec<String>,
    #[schema(max_length = 2000)]
    pub reason: Option<String>,
}

impl Validate for BulkActionBody {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if matches!(
            self.action,
            Action::Upload | Action::DirectEdit | Action::HardDelete
        ) {
            v.error(
                "action",
                "must be activate, deactivate, archive, unarchive or delete",
            );
        }
        if self.workflow_ids.is_empty() || self.workflow_ids.len() > 200 {
            v.error("workflow_ids", "must name 1 to 200 workflows");
        }
        let mut seen = std::collections::HashSet::new();
        if !self.workflow_ids.iter().all(|id| seen.insert(id)) {
            v.error("workflow_ids", "must not repeat a workflow");
        }
        if let Some(r) = &self.reason {
            v.text("reason", r, 0, 2000);
        }
        v.finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkActionOutcome {
    /// `started` (a run acts on every workflow; watch it live) or `pending_approval` (one
    /// request per workflow, for another admin).
    pub status: &'static str,
    pub warnings: Vec<String>,
    pub run: Option<crate::routes::runs::RunView>,
    pub requests: Vec<ActionRequest>,
}

/// Act on many workflows at once under the environment's policy (WF-006): one run with a
/// checkpointed step and an outcome per workflow (BULK-004, BULK-005), or, where policy
/// requires approval, one request per workflow.
#[utoipa::path(post, path = "/api/v1/environments/{environment_id}/workflows/bulk-actions", tag = "workflows", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    request_body = BulkActionBody,
    responses((status = 202, body = BulkActionOutcome), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, description = "Invalid, or names workflows the environment does not have", body = Problem)))]
pub async fn bulk_action(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UploadWorkflows>,
    ApiPath(environment_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<BulkActionBody>,
) -> ApiResult<(StatusCode, Json<BulkActionOutcome>)> {
    let tenant_id = ctx.tenant_id();
    let env = environments::get(&state.db, tenant_id, environment_id).await?;
    let known = catalog::names(&state.db, tenant_id, environment_id, &req.workflow_ids).await?;
    let unknown: Vec<&String> = req
        .workflow_ids
        .iter()
        .filter(|id| !known.contains_key(*id))
        .collect();
    if !unknown.is_empty() {
        return Err(domain::Error::invalid(
            "workflow_ids",
            format!(
                "the environment has no workflow {}",
                unknown
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .into());
    }
    let gate = policy::check(env.class, req.action, ctx.tenant.role)?;
    let actor = ctx.actor();
    let mut tx = state.db.begin().await?;
    let outcome = match gate {
        Gate::NeedsApproval => {
            let mut requests = Vec::with_capacity(req.workflow_ids.len());
            for id in &req.workflow_ids {
                requests.push(
                    action_requests::create(
                        &mut *tx,
                        NewRequest {
                            tenant_id,
                            environment_id,
                            workflow_id: id,
                            workflow_name: known.get(id).map_or("", String::as_str),
                            action: req.action,
                            reason: req.reason.as_deref(),
                            requested_by: ctx.principal.accountable_user(),
                            requested_by_label: &actor.label,
                        },
                    )
                    .await?,
                );
            }
            BulkActionOutcome {
                status: "pending_approval",
                warnings: vec![],
                run: None,
                requests,
            }
        }
        Gate::Proceed { warning } => {
            let input = jobs::workflow_ops::BulkActionInput {
                tenant_id,
                environment_id,
                action: req.action,
                workflow_ids: req.workflow_ids.clone(),
            };
            let new = jobs::workflow_ops::new_run(&input).created_by(actor.label.clone());
            let enqueued = engine::queue::enqueue(&mut tx, &new)
                .await
                .map_err(crate::routes::runs::queue_error)?;
            let run = engine::queue::get(&mut *tx, &tenant_id.to_string(), enqueued.id)
                .await
                .map_err(crate::routes::runs::queue_error)?;
            BulkActionOutcome {
                status: "started",
                warnings: warning.into_iter().collect(),
                run: Some(run.into()),
                requests: vec![],
            }
        }
    };
    Entry::new(Some(tenant_id), &actor, "workflow.bulk_action", "environment")
        .target(environment_id)
        .provider(&env.provider)
        .new_value(&serde_json::json!({"action": req.action, "workflow_ids": req.workflow_ids, "status": outcome.status}))
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(outcome)))
}
