//! Pipelines (PIPE-001..007), credential mappings (credential remapping, CRED-007), promotions
//! and their history as deployments (PROMO-001..009, DEP-001..008).

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use domain::audit::Entry;
use domain::entitlements::Feature;
use domain::page::Page;
use domain::pipelines::{self, NewPipeline, Pipeline, Stage};
use domain::promotions::{
    self, Approval, CredentialMapping, NewMapping, NewPromotion, Promotion, PromotionFilter,
    PromotionStatus,
};
use domain::validate::Validator;
use domain::{environments, workflow};
use engine::queue;
use jobs::promotion::{self as promotion_job, Preflight, PromotionInput};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};
use crate::routes::runs::queue_error;

// ---- pipelines -------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// `n8n` or `make`: every stage's environments must be of this provider (PIPE-007).
    #[schema(pattern = "^(n8n|make)$")]
    pub provider: String,
    /// Ordered stages, source → target (PIPE-002..005): 1 to 10.
    #[schema(min_items = 1, max_items = 10)]
    pub stages: Vec<Stage>,
    /// Default true; inactive pipelines accept no promotions.
    pub active: Option<bool>,
}

impl Validate for PipelineRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("name", &self.name, 1, 200);
        if let Some(d) = &self.description {
            v.text("description", d, 0, 2000);
        }
        if !["n8n", "make"].contains(&self.provider.as_str()) {
            v.error("provider", "must be n8n or make");
        }
        v.finish()
    }
}

async fn checked(state: &AppState, tenant_id: Uuid, req: &PipelineRequest) -> ApiResult<()> {
    let envs: HashMap<Uuid, String> = environments::list(&state.db, tenant_id)
        .await?
        .into_iter()
        .map(|e| (e.id, e.provider))
        .collect();
    pipelines::check(&req.provider, &req.stages, &envs)?;
    Ok(())
}

/// Create a pipeline (PIPE-001..007): impossible ones — unknown environments, another
/// provider's environment, a stage onto itself, cycles, bad windows — are refused with the field.
#[utoipa::path(post, path = "/api/v1/pipelines", tag = "promotions", security(("bearer" = [])),
    request_body = PipelineRequest,
    responses((status = 201, body = Pipeline), (status = 409, description = "Name taken", body = Problem), (status = 422, body = Problem)))]
pub async fn create_pipeline(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ConfigurePipelines>,
    ApiJson(req): ApiJson<PipelineRequest>,
) -> ApiResult<(StatusCode, Json<Pipeline>)> {
    let tenant_id = ctx.tenant_id();
    ctx.require(
        &state.db,
        Feature::Promotions,
        Some(req.provider.as_str()),
        "pipeline.create",
    )
    .await?;
    checked(&state, tenant_id, &req).await?;
    let mut tx = state.db.begin().await?;
    let pipeline = pipelines::create(
        &mut *tx,
        tenant_id,
        ctx.principal.user_id(),
        &NewPipeline {
            name: &req.name,
            description: req.description.as_deref(),
            provider: &req.provider,
            stages: &req.stages,
            active: req.active.unwrap_or(true),
        },
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "pipeline.created",
        "pipeline",
    )
    .target(pipeline.id)
    .new_value(&pipeline)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(pipeline)))
}

/// Replace a pipeline's definition (same checks as creating one).
#[utoipa::path(put, path = "/api/v1/pipelines/{pipeline_id}", tag = "promotions", security(("bearer" = [])),
    params(("pipeline_id" = Uuid, Path, description = "The pipeline's id")),
    request_body = PipelineRequest,
    responses((status = 200, body = Pipeline), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update_pipeline(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ConfigurePipelines>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<PipelineRequest>,
) -> ApiResult<Json<Pipeline>> {
    let tenant_id = ctx.tenant_id();
    let old = pipelines::get(&state.db, tenant_id, id).await?;
    checked(&state, tenant_id, &req).await?;
    ctx.require(
        &state.db,
        Feature::Promotions,
        Some(req.provider.as_str()),
        "pipeline.update",
    )
    .await?;
    let mut tx = state.db.begin().await?;
    let pipeline = pipelines::update(
        &mut *tx,
        tenant_id,
        id,
        &NewPipeline {
            name: &req.name,
            description: req.description.as_deref(),
            provider: &req.provider,
            stages: &req.stages,
            active: req.active.unwrap_or(true),
        },
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "pipeline.updated",
        "pipeline",
    )
    .target(id)
    .old(&old)
    .new_value(&pipeline)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(pipeline))
}

#[utoipa::path(get, path = "/api/v1/pipelines", tag = "promotions", security(("bearer" = [])),
    params(crate::routes::PageQuery),
    responses((status = 200, body = Page<Pipeline>)))]
pub async fn list_pipelines(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiQuery(q): ApiQuery<crate::routes::PageQuery>,
) -> ApiResult<Json<Page<Pipeline>>> {
    Ok(Json(
        pipelines::list(&state.db, ctx.tenant_id(), q.page()?).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{pipeline_id}", tag = "promotions", security(("bearer" = [])),
    params(("pipeline_id" = Uuid, Path, description = "The pipeline's id")),
    responses((status = 200, body = Pipeline), (status = 404, body = Problem)))]
pub async fn get_pipeline(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Pipeline>> {
    Ok(Json(pipelines::get(&state.db, ctx.tenant_id(), id).await?))
}

#[utoipa::path(delete, path = "/api/v1/pipelines/{pipeline_id}", tag = "promotions", security(("bearer" = [])),
    params(("pipeline_id" = Uuid, Path, description = "The pipeline's id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_pipeline(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ConfigurePipelines>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    pipelines::delete(&mut *tx, tenant_id, id).await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "pipeline.deleted",
        "pipeline",
    )
    .target(id)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- credential mappings ---------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PairQuery {
    pub source_environment_id: Uuid,
    pub target_environment_id: Uuid,
}

/// A credential the source's workflows use, and what it becomes in the target.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialRow {
    pub credential_type: String,
    pub source_credential_id: String,
    pub source_name: String,
    /// How many source workflows use it.
    pub workflows: usize,
    /// `mapped` (a user's mapping), `suggested` (same name and type in the target) or `missing`.
    pub state: String,
    pub target_credential_id: Option<String>,
    pub target_name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialMappingView {
    pub source_environment_id: Uuid,
    pub target_environment_id: Uuid,
    pub credentials: Vec<CredentialRow>,
}

/// Credential remapping between two environments: every credential the source's workflows use,
/// with the user's mapping, a suggestion (same name and type in the target) or `missing`.
#[utoipa::path(get, path = "/api/v1/credential-mappings", tag = "promotions", security(("bearer" = [])),
    params(PairQuery),
    responses((status = 200, body = CredentialMappingView), (status = 404, body = Problem)))]
pub async fn get_mappings(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiQuery(q): ApiQuery<PairQuery>,
) -> ApiResult<Json<CredentialMappingView>> {
    let tenant_id = ctx.tenant_id();
    environments::get(&state.db, tenant_id, q.source_environment_id).await?;
    environments::get(&state.db, tenant_id, q.target_environment_id).await?;
    let mapped: HashMap<(String, String), CredentialMapping> = promotions::mappings(
        &state.db,
        tenant_id,
        q.source_environment_id,
        q.target_environment_id,
    )
    .await?
    .into_iter()
    .map(|m| {
        (
            (m.credential_type.clone(), m.source_credential_id.clone()),
            m,
        )
    })
    .collect();
    let target: HashMap<(String, String), String> = sqlx::query_as::<_, (String, String, String)>(
        "select type, name, provider_id from env_credentials where environment_id = $1 and deleted_at is null",
    )
    .bind(q.target_environment_id)
    .fetch_all(&state.db)
    .await?
    .into_iter()
    .map(|(t, n, id)| ((t, n), id))
    .collect();
    // A Make module's connection is typed and named as promotion types it: from the designer's
    // cache, else from the source team's synced connection of that id (not the module's app,
    // which would never match a mapping or a target connection).
    let source_connections =
        domain::catalog::known_connections(&state.db, q.source_environment_id).await?;
    let mut used: std::collections::BTreeMap<(String, String), (String, usize)> =
        Default::default();
    for def in
        domain::catalog::definitions(&state.db, tenant_id, q.source_environment_id, None).await?
    {
        let mut seen = std::collections::HashSet::new();
        for r in workflow::credential_refs_in(&def, &source_connections) {
            let key = (
                r.cred_type.clone(),
                r.id.clone().unwrap_or_else(|| r.name.clone()),
            );
            if seen.insert(key.clone()) {
                used.entry(key).or_insert_with(|| (r.name.clone(), 0)).1 += 1;
            }
        }
    }
    let credentials = used
        .into_iter()
        .map(
            |((credential_type, source_credential_id), (source_name, workflows))| {
                let (state, target_credential_id, target_name) =
                    match mapped.get(&(credential_type.clone(), source_credential_id.clone())) {
                        Some(m) => (
                            "mapped",
                            Some(m.target_credential_id.clone()),
                            Some(m.target_name.clone()),
                        ),
                        None => match target.get(&(credential_type.clone(), source_name.clone())) {
                            Some(id) => ("suggested", Some(id.clone()), Some(source_name.clone())),
                            None => ("missing", None, None),
                        },
                    };
                CredentialRow {
                    credential_type,
                    source_credential_id,
                    source_name,
                    workflows,
                    state: state.to_owned(),
                    target_credential_id,
                    target_name,
                }
            },
        )
        .collect();
    Ok(Json(CredentialMappingView {
        source_environment_id: q.source_environment_id,
        target_environment_id: q.target_environment_id,
        credentials,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingRequest {
    pub source_environment_id: Uuid,
    pub target_environment_id: Uuid,
    #[schema(min_length = 1, max_length = 200)]
    pub credential_type: String,
    #[schema(min_length = 1, max_length = 200)]
    pub source_credential_id: String,
    /// A credential of the same type in the target.
    #[schema(min_length = 1, max_length = 200)]
    pub target_credential_id: String,
}

impl Validate for MappingRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("credential_type", &self.credential_type, 1, 200);
        v.text("source_credential_id", &self.source_credential_id, 1, 200);
        v.text("target_credential_id", &self.target_credential_id, 1, 200);
        if self.source_environment_id == self.target_environment_id {
            v.error("target_environment_id", "must differ from the source");
        }
        v.finish()
    }
}

async fn credential_name(state: &AppState, env: Uuid, id: &str, ty: &str) -> ApiResult<String> {
    sqlx::query_scalar::<_, String>(
        "select name from env_credentials where environment_id = $1 and provider_id = $2 and type = $3 and deleted_at is null",
    )
    .bind(env)
    .bind(id)
    .bind(ty)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::not_found(format!("no {ty} credential {id} in that environment")))
}

/// Map a source credential to a target credential (audited with the previous mapping).
#[utoipa::path(put, path = "/api/v1/credential-mappings", tag = "promotions", security(("bearer" = [])),
    request_body = MappingRequest,
    responses((status = 200, body = CredentialMapping), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn put_mapping(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ConfigurePipelines>,
    ApiJson(req): ApiJson<MappingRequest>,
) -> ApiResult<Json<CredentialMapping>> {
    let tenant_id = ctx.tenant_id();
    let source = environments::get(&state.db, tenant_id, req.source_environment_id).await?;
    environments::get(&state.db, tenant_id, req.target_environment_id).await?;
    ctx.require(
        &state.db,
        Feature::CredentialRemapping,
        Some(source.provider.as_str()),
        "credential_mapping.put",
    )
    .await?;
    let source_name = credential_name(
        &state,
        req.source_environment_id,
        &req.source_credential_id,
        &req.credential_type,
    )
    .await?;
    let target_name = credential_name(
        &state,
        req.target_environment_id,
        &req.target_credential_id,
        &req.credential_type,
    )
    .await?;
    let mut tx = state.db.begin().await?;
    let old = promotions::put_mapping(
        &mut tx,
        tenant_id,
        req.source_environment_id,
        req.target_environment_id,
        ctx.principal.user_id(),
        &NewMapping {
            credential_type: &req.credential_type,
            source_credential_id: &req.source_credential_id,
            source_name: &source_name,
            target_credential_id: &req.target_credential_id,
            target_name: &target_name,
        },
    )
    .await?;
    let now = promotions::mappings(
        &mut *tx,
        tenant_id,
        req.source_environment_id,
        req.target_environment_id,
    )
    .await?
    .into_iter()
    .find(|m| {
        m.credential_type == req.credential_type
            && m.source_credential_id == req.source_credential_id
    })
    .ok_or_else(|| ApiError::internal("the mapping just written is missing"))?;
    let actor = ctx.actor();
    let mut entry = Entry::new(
        Some(tenant_id),
        &actor,
        "credential_mapping.set",
        "credential_mapping",
    )
    .new_value(&json!({"source_environment_id": req.source_environment_id,
            "target_environment_id": req.target_environment_id, "mapping": now}));
    if let Some(old) = &old {
        entry = entry.old(old);
    }
    entry.record(&mut *tx).await?;
    tx.commit().await?;
    Ok(Json(now))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MappingKey {
    pub source_environment_id: Uuid,
    pub target_environment_id: Uuid,
    pub credential_type: String,
    pub source_credential_id: String,
}

#[utoipa::path(delete, path = "/api/v1/credential-mappings", tag = "promotions", security(("bearer" = [])),
    params(MappingKey),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_mapping(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ConfigurePipelines>,
    ApiQuery(q): ApiQuery<MappingKey>,
) -> ApiResult<StatusCode> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    promotions::delete_mapping(
        &mut *tx,
        tenant_id,
        q.source_environment_id,
        q.target_environment_id,
        &q.credential_type,
        &q.source_credential_id,
    )
    .await?;
    Entry::new(Some(tenant_id), &ctx.actor(), "credential_mapping.deleted", "credential_mapping")
        .new_value(&json!({"source_environment_id": q.source_environment_id, "target_environment_id": q.target_environment_id,
            "credential_type": q.credential_type, "source_credential_id": q.source_credential_id}))
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- promotions ------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionRequest {
    pub pipeline_id: Uuid,
    /// Which stage (0-based).
    pub stage_index: usize,
    /// Source workflow ids (1-1000), none twice.
    #[schema(value_type = BTreeSet<String>, min_items = 1, max_items = 1000)]
    pub workflow_ids: Vec<String>,
    #[schema(max_length = 2000)]
    pub note: Option<String>,
    /// Override conflicts where the stage allows it (`allowForcePromotionOnConflicts`).
    #[serde(default)]
    pub force: bool,
    /// Run no earlier than this (DEP-004).
    pub scheduled_at: Option<DateTime<Utc>>,
}

impl Validate for PromotionRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if self.workflow_ids.is_empty() || self.workflow_ids.len() > 1000 {
            v.error("workflow_ids", "must name 1 to 1000 workflows");
        }
        let mut seen = std::collections::HashSet::new();
        if !self.workflow_ids.iter().all(|w| seen.insert(w)) {
            v.error("workflow_ids", "must not repeat a workflow");
        }
        if let Some(n) = &self.note {
            v.text("note", n, 0, 2000);
        }
        v.finish()
    }
}

async fn stage_of(
    state: &AppState,
    tenant_id: Uuid,
    pipeline_id: Uuid,
    index: usize,
) -> ApiResult<(Pipeline, Stage)> {
    let pipeline = pipelines::get(&state.db, tenant_id, pipeline_id).await?;
    let stage = pipeline.stages.get(index).cloned().ok_or_else(|| {
        domain::Error::invalid(
            "stage_index",
            format!("the pipeline has {} stage(s)", pipeline.stages.len()),
        )
    })?;
    environments::get(&state.db, tenant_id, stage.source_environment_id).await?;
    environments::get(&state.db, tenant_id, stage.target_environment_id).await?;
    Ok((pipeline, stage))
}

/// Preview a promotion (PROMO-002/003/009): per workflow its diff status (ADDED, MODIFIED,
/// UNCHANGED, TARGET_HOTFIX), structural summary, risk with reasons and unmapped credentials;
/// TARGET_ONLY workflows; and each gate's result — from the catalog as last synced.
#[utoipa::path(post, path = "/api/v1/promotions/preview", tag = "promotions", security(("bearer" = [])),
    request_body = PromotionRequest,
    responses((status = 200, body = Preflight), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn preview_promotion(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiJson(req): ApiJson<PromotionRequest>,
) -> ApiResult<Json<Preflight>> {
    let tenant_id = ctx.tenant_id();
    let (pipeline, stage) = stage_of(&state, tenant_id, req.pipeline_id, req.stage_index).await?;
    ctx.require(
        &state.db,
        Feature::Promotions,
        Some(pipeline.provider.as_str()),
        "promotion.preview",
    )
    .await?;
    Ok(Json(
        promotion_job::preview(&state.db, tenant_id, &stage, &req.workflow_ids, req.force).await?,
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PromotionView {
    #[serde(flatten)]
    pub promotion: Promotion,
    pub approvals: Vec<Approval>,
    /// Approvals the stage requires.
    pub approvals_required: u32,
}

async fn view(state: &AppState, promotion: Promotion) -> ApiResult<PromotionView> {
    let approvals = promotions::approvals(&state.db, promotion.id).await?;
    let required = pipelines::get(
        &state.db,
        tenant_of(state, promotion.id).await?,
        promotion.pipeline_id,
    )
    .await
    .ok()
    .and_then(|p| {
        p.stages
            .get(usize::try_from(promotion.stage_index).unwrap_or(usize::MAX))
            .map(|s| s.approvals.required)
    })
    .unwrap_or(0);
    Ok(PromotionView {
        promotion,
        approvals,
        approvals_required: required,
    })
}

async fn tenant_of(state: &AppState, promotion_id: Uuid) -> ApiResult<Uuid> {
    Ok(
        sqlx::query_scalar("select tenant_id from promotions where id = $1")
            .bind(promotion_id)
            .fetch_one(&state.db)
            .await?,
    )
}

/// Start a promotion (PROMO-001) as a run: preflight, approvals if the stage needs them
/// (PROMO-004), the scheduled time and window, a pre-promotion snapshot (PROMO-006), the
/// workflows written with credentials remapped, rollback on failure (PROMO-007).
#[utoipa::path(post, path = "/api/v1/promotions", tag = "promotions", security(("bearer" = [])),
    request_body = PromotionRequest,
    responses((status = 202, body = PromotionView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "The pipeline is inactive", body = Problem), (status = 422, body = Problem)))]
pub async fn create_promotion(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ExecutePromotions>,
    ApiJson(req): ApiJson<PromotionRequest>,
) -> ApiResult<(StatusCode, Json<PromotionView>)> {
    let tenant_id = ctx.tenant_id();
    let (pipeline, stage) = stage_of(&state, tenant_id, req.pipeline_id, req.stage_index).await?;
    ctx.require(
        &state.db,
        Feature::Promotions,
        Some(pipeline.provider.as_str()),
        "promotion.create",
    )
    .await?;
    if !pipeline.active {
        return Err(
            domain::Error::conflict("pipeline_inactive", "the pipeline is inactive").into(),
        );
    }
    let known: Vec<String> = sqlx::query_scalar(
        "select provider_id from env_workflows where environment_id = $1 and provider_id = any ($2) and deleted_at is null",
    )
    .bind(stage.source_environment_id)
    .bind(&req.workflow_ids)
    .fetch_all(&state.db)
    .await?;
    if let Some(missing) = req.workflow_ids.iter().find(|w| !known.contains(w)) {
        return Err(domain::Error::invalid(
            "workflow_ids",
            format!("no workflow {missing} in the source environment (sync it first?)"),
        )
        .into());
    }
    let actor = ctx.actor();
    let id = domain::ids::new_id();
    let input = PromotionInput {
        tenant_id,
        promotion_id: id,
    };
    let mut tx = state.db.begin().await?;
    let run =
        promotion_job::new_run(&input, stage.target_environment_id).created_by(actor.label.clone());
    let enqueued = queue::enqueue(&mut tx, &run).await.map_err(queue_error)?;
    let promotion = promotions::create(
        &mut *tx,
        tenant_id,
        &NewPromotion {
            id,
            pipeline_id: pipeline.id,
            stage_index: i32::try_from(req.stage_index).unwrap_or(i32::MAX),
            source_environment_id: stage.source_environment_id,
            target_environment_id: stage.target_environment_id,
            workflow_ids: &req.workflow_ids,
            requested_by: ctx.principal.accountable_user(),
            requested_by_label: &actor.label,
            note: req.note.as_deref(),
            force: req.force,
            scheduled_at: req.scheduled_at,
            run_id: enqueued.id,
        },
    )
    .await?;
    Entry::new(Some(tenant_id), &actor, "promotion.requested", "promotion")
        .target(id)
        .new_value(
            &json!({"pipeline_id": pipeline.id, "stage_index": req.stage_index,
            "workflow_ids": req.workflow_ids, "force": req.force, "run_id": enqueued.id}),
        )
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(view(&state, promotion).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PromotionQuery {
    #[param(inline)]
    pub status: Option<PromotionStatus>,
    pub pipeline_id: Option<Uuid>,
    /// Source or target environment.
    pub environment_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Promotions, i.e. deployments (DEP-001), newest first, filtered.
#[utoipa::path(get, path = "/api/v1/promotions", tag = "promotions", security(("bearer" = [])),
    params(PromotionQuery),
    responses((status = 200, body = Page<Promotion>), (status = 422, body = Problem)))]
pub async fn list_promotions(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiQuery(q): ApiQuery<PromotionQuery>,
) -> ApiResult<Json<Page<Promotion>>> {
    let filter = PromotionFilter {
        status: q.status,
        pipeline_id: q.pipeline_id,
        environment_id: q.environment_id,
        since: q.since,
        until: q.until,
    };
    let page = domain::page::PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    Ok(Json(
        promotions::list(&state.db, ctx.tenant_id(), &filter, page).await?,
    ))
}

/// A promotion (DEP-002): state, preflight (diff, risk, gates), approvals, per-workflow results
/// (DEP-003), rollback, snapshots; its run streams live progress at `/runs/{run_id}/events`
/// (DEP-008).
#[utoipa::path(get, path = "/api/v1/promotions/{promotion_id}", tag = "promotions", security(("bearer" = [])),
    params(("promotion_id" = Uuid, Path, description = "The promotion's id")),
    responses((status = 200, body = PromotionView), (status = 404, body = Problem)))]
pub async fn get_promotion(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<PromotionView>> {
    let p = promotions::get(&state.db, ctx.tenant_id(), id).await?;
    Ok(Json(view(&state, p).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

impl Validate for DecisionRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if let Some(c) = &self.comment {
            v.text("comment", c, 0, 2000);
        }
        v.finish()
    }
}

async fn decide(
    state: &AppState,
    ctx: &TenantCtx<perm::ViewWorkflows>,
    id: Uuid,
    approve: bool,
    comment: Option<&str>,
) -> ApiResult<PromotionView> {
    let tenant_id = ctx.tenant_id();
    let user = ctx.principal.user_id().ok_or_else(|| {
        ApiError::forbidden(
            "user_required",
            "approvals are given by people, not API keys",
        )
    })?;
    let mut tx = state.db.begin().await?;
    let p = promotions::lock(&mut tx, tenant_id, id).await?;
    if p.status != PromotionStatus::PendingApproval.as_str() {
        return Err(domain::Error::conflict(
            "not_awaiting_approval",
            format!("the promotion is {}, not pending_approval", p.status),
        )
        .into());
    }
    let pipeline = pipelines::get(&mut *tx, tenant_id, p.pipeline_id).await?;
    if approve {
        // The plan of the pipeline's provider: another provider's plan says nothing about it.
        ctx.require(
            &state.db,
            Feature::Promotions,
            Some(pipeline.provider.as_str()),
            "promotion.approve",
        )
        .await?;
    }
    let stage = pipeline
        .stages
        .get(usize::try_from(p.stage_index).unwrap_or(usize::MAX))
        .ok_or_else(|| ApiError::internal("a promotion's stage is gone"))?;
    if !stage.approvals.roles.contains(&ctx.tenant.role) {
        return Err(ApiError::forbidden(
            "not_an_approver",
            format!(
                "this stage is approved by: {}",
                stage
                    .approvals
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if p.requested_by == Some(user) && !stage.approvals.allow_self_approval {
        return Err(ApiError::forbidden(
            "self_approval",
            "you cannot approve or reject your own promotion",
        ));
    }
    let actor = ctx.actor();
    let approvals =
        promotions::decide(&mut tx, tenant_id, id, user, &actor.label, approve, comment).await?;
    let decided = if !approve {
        Some(false)
    } else if approvals >= i64::from(stage.approvals.required) {
        Some(true)
    } else {
        None
    };
    if let Some(approved) = decided {
        let status = if approved {
            PromotionStatus::Approved
        } else {
            PromotionStatus::Rejected
        };
        promotions::set_status(&mut *tx, id, status, None).await?;
        if let Some(run) = p.run_id {
            queue::signal(
                &mut tx,
                &tenant_id.to_string(),
                run,
                "decision",
                &json!({"approved": approved}),
            )
            .await
            .map_err(queue_error)?;
        }
    }
    Entry::new(
        Some(tenant_id),
        &actor,
        if approve {
            "promotion.approved"
        } else {
            "promotion.rejected"
        },
        "promotion",
    )
    .target(id)
    .new_value(
        &json!({"comment": comment, "approvals": approvals, "required": stage.approvals.required}),
    )
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    let p = promotions::get(&state.db, tenant_id, id).await?;
    view(state, p).await
}

/// Approve a promotion (PROMO-004): by a role the stage names, never the requester unless the
/// stage allows it; when enough approvals are in, the run continues.
#[utoipa::path(post, path = "/api/v1/promotions/{promotion_id}/approve", tag = "promotions", security(("bearer" = [])),
    params(("promotion_id" = Uuid, Path, description = "The promotion's id")),
    request_body = DecisionRequest,
    responses((status = 200, body = PromotionView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn approve_promotion(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> ApiResult<Json<PromotionView>> {
    Ok(Json(
        decide(&state, &ctx, id, true, req.comment.as_deref()).await?,
    ))
}

/// Reject a promotion: it ends `rejected` and changes nothing.
#[utoipa::path(post, path = "/api/v1/promotions/{promotion_id}/reject", tag = "promotions", security(("bearer" = [])),
    params(("promotion_id" = Uuid, Path, description = "The promotion's id")),
    request_body = DecisionRequest,
    responses((status = 200, body = PromotionView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reject_promotion(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> ApiResult<Json<PromotionView>> {
    Ok(Json(
        decide(&state, &ctx, id, false, req.comment.as_deref()).await?,
    ))
}

/// Cancel a promotion that has not started writing (DEP-005): pending, awaiting approval,
/// approved but waiting for its time or window.
#[utoipa::path(post, path = "/api/v1/promotions/{promotion_id}/cancel", tag = "promotions", security(("bearer" = [])),
    params(("promotion_id" = Uuid, Path, description = "The promotion's id")),
    responses((status = 200, body = PromotionView), (status = 404, body = Problem), (status = 409, description = "Already running or finished", body = Problem)))]
pub async fn cancel_promotion(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ExecutePromotions>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<PromotionView>> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    let p = promotions::lock(&mut tx, tenant_id, id).await?;
    let cancellable = [
        PromotionStatus::Pending,
        PromotionStatus::PendingApproval,
        PromotionStatus::Approved,
    ]
    .iter()
    .any(|s| s.as_str() == p.status);
    if !cancellable {
        return Err(domain::Error::conflict(
            "not_cancellable",
            format!("the promotion is {}; only pending, pending_approval or approved ones can be cancelled", p.status),
        )
        .into());
    }
    promotions::set_status(
        &mut *tx,
        id,
        PromotionStatus::Cancelled,
        Some("cancelled by a user"),
    )
    .await?;
    if let Some(run) = p.run_id {
        match queue::request_cancel(&mut tx, &tenant_id.to_string(), run).await {
            Ok(_) | Err(queue::Error::Conflict(_)) => {}
            Err(e) => return Err(queue_error(e)),
        }
    }
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "promotion.cancelled",
        "promotion",
    )
    .target(id)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    let p = promotions::get(&state.db, tenant_id, id).await?;
    Ok(Json(view(&state, p).await?))
}

/// Soft-delete a finished promotion (DEP-006): hidden from lists, kept for the audit trail.
#[utoipa::path(delete, path = "/api/v1/promotions/{promotion_id}", tag = "promotions", security(("bearer" = [])),
    params(("promotion_id" = Uuid, Path, description = "The promotion's id")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, description = "Still in progress", body = Problem)))]
pub async fn delete_promotion(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ExecutePromotions>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    let old = promotions::soft_delete(&mut tx, tenant_id, id).await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "promotion.deleted",
        "promotion",
    )
    .target(id)
    .old(&old)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
