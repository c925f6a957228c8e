//! Drift: checks (DRIFT-001..007), incidents (INC-001..011), the drift policy (POL-001..010),
//! approvals (APPR-001..005) and reconciliation runs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use domain::audit::Entry;
use domain::drift::{
    self, Approval, ApprovalAction, Artifact, Check, Incident, IncidentFilter, IncidentStatus,
    Policy, Resolution, Severity,
};
use domain::entitlements::{self, Feature};
use domain::environments;
use domain::notifications::{Alert, EventType};
use domain::page::Page;
use domain::validate::Validator;
use jobs::drift::{CheckInput, ReconcileInput};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};
use crate::routes::PageQuery;
use crate::routes::runs::{RunView, start_run};

/// The tenant's drift policy (POL-001..010): defaults until set.
#[utoipa::path(get, path = "/api/v1/drift/policy", tag = "drift", security(("bearer" = [])),
    responses((status = 200, body = Policy)))]
pub async fn get_policy(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
) -> ApiResult<Json<Policy>> {
    Ok(Json(drift::policy(&state.db, ctx.tenant_id()).await?))
}

/// Set the drift policy: TTL per severity, SLA enforcement, auto-create, deployment blocking,
/// notification threshold and warning hours, retention, approvals.
#[utoipa::path(put, path = "/api/v1/drift/policy", tag = "drift", security(("bearer" = [])),
    request_body = Policy,
    responses((status = 200, body = Policy), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn put_policy(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ConfigureDriftPolicies>,
    ApiJson(req): ApiJson<Policy>,
) -> ApiResult<Json<Policy>> {
    let tenant_id = ctx.tenant_id();
    ctx.require(
        &state.db,
        Feature::DriftPolicies,
        None,
        "drift.policy_update",
    )
    .await?;
    let mut tx = state.db.begin().await?;
    let old = drift::policy(&mut *tx, tenant_id).await?;
    let policy = drift::put_policy(&mut *tx, tenant_id, &req).await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "drift.policy_updated",
        "tenant",
    )
    .target(tenant_id)
    .old(&old)
    .new_value(&policy)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(policy))
}

impl Validate for Policy {
    fn validate(&self) -> Result<(), domain::Error> {
        self.check()
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// Sync the environment's workflows first (default true); false compares the catalog as
    /// last synced.
    pub refresh: Option<bool>,
}

impl Validate for CheckRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        Ok(())
    }
}

/// Check an environment for drift now (DRIFT-002) as a run.
#[utoipa::path(post, path = "/api/v1/environments/{environment_id}/drift-check", tag = "drift", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    request_body = CheckRequest,
    responses((status = 202, body = RunView), (status = 404, body = Problem)))]
pub async fn check_now(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiPath(environment_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<CheckRequest>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    environments::get(&state.db, tenant_id, environment_id).await?;
    let input = CheckInput {
        tenant_id,
        environment_id,
        trigger: "manual".into(),
        refresh: req.refresh.unwrap_or(true),
    };
    let view = start_run(
        &state,
        &ctx.actor(),
        tenant_id,
        jobs::drift::new_check(&input),
        "drift.check_started",
        json!({"environment_id": environment_id, "refresh": input.refresh}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// An environment's drift checks, newest first, with counts and duration (DRIFT-007).
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}/drift-checks", tag = "drift", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id"), PageQuery),
    responses((status = 200, body = Page<Check>), (status = 404, body = Problem)))]
pub async fn list_checks(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(environment_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Check>>> {
    let tenant_id = ctx.tenant_id();
    environments::get(&state.db, tenant_id, environment_id).await?;
    Ok(Json(
        drift::checks(&state.db, tenant_id, environment_id, q.page()?).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentQuery {
    pub status: Option<IncidentStatus>,
    /// Only open (not closed) or only closed ones.
    pub open: Option<bool>,
    #[param(inline)]
    pub severity: Option<Severity>,
    pub environment_id: Option<Uuid>,
    /// Only ones past their TTL.
    pub expired: Option<bool>,
    pub owner_user_id: Option<Uuid>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The incident dashboard (INC-007): newest first, filtered.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "drift", security(("bearer" = [])),
    params(IncidentQuery),
    responses((status = 200, body = Page<Incident>), (status = 422, body = Problem)))]
pub async fn list_incidents(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiQuery(q): ApiQuery<IncidentQuery>,
) -> ApiResult<Json<Page<Incident>>> {
    let filter = IncidentFilter {
        status: q.status,
        open: q.open,
        severity: q.severity,
        environment_id: q.environment_id,
        expired: q.expired,
        owner_user_id: q.owner_user_id,
    };
    let page = domain::page::PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let mut page = drift::list(&state.db, ctx.tenant_id(), &filter, page).await?;
    let providers: Vec<(Uuid, String)> =
        sqlx::query_as("select id, provider from environments where tenant_id = $1")
            .bind(ctx.tenant_id())
            .fetch_all(&state.db)
            .await?;
    let mut conn = state.db.acquire().await?;
    let ent = entitlements::entitlements(&mut conn, ctx.tenant_id()).await?;
    for incident in &mut page.items {
        let provider = providers
            .iter()
            .find(|(id, _)| *id == incident.environment_id)
            .map(|(_, p)| p.as_str());
        if !ent.allows(Feature::DriftFullDiff, provider) {
            strip_diffs(&mut incident.payload);
        }
    }
    Ok(Json(page))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: Incident,
    /// The states it may move to next.
    pub allowed_next: Vec<IncidentStatus>,
    pub approvals: Vec<Approval>,
    pub artifacts: Vec<Artifact>,
    /// Whether `payload` carries the field-level diffs; false when the plan does not include the
    /// full drift diff (they are left out; hashes, summaries and risk stay).
    pub full_diff: bool,
}

async fn view(
    state: &AppState,
    tenant_id: Uuid,
    mut incident: Incident,
) -> ApiResult<IncidentView> {
    let status = IncidentStatus::parse(&incident.status).unwrap_or(IncidentStatus::Closed);
    let provider = provider_of(state, tenant_id, incident.environment_id).await?;
    let mut conn = state.db.acquire().await?;
    let full_diff = entitlements::entitlements(&mut conn, tenant_id)
        .await?
        .allows(Feature::DriftFullDiff, Some(&provider));
    drop(conn);
    if !full_diff {
        strip_diffs(&mut incident.payload);
    }
    Ok(IncidentView {
        approvals: drift::approvals(&state.db, tenant_id, incident.id).await?,
        artifacts: drift::artifacts(&state.db, tenant_id, incident.id).await?,
        allowed_next: status.next().to_vec(),
        incident,
        full_diff,
    })
}

/// Removes every `diff` member, at any depth (plans without the full drift diff).
pub(crate) fn strip_diffs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("diff");
            map.values_mut().for_each(strip_diffs);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_diffs),
        _ => {}
    }
}

/// An incident (INC-008/009): affected workflows, the drift as found (hashes and diffs), the
/// allowed next states, approvals and reconciliation artifacts.
#[utoipa::path(get, path = "/api/v1/incidents/{incident_id}", tag = "drift", security(("bearer" = [])),
    params(("incident_id" = Uuid, Path, description = "The incident's id")),
    responses((status = 200, body = IncidentView), (status = 404, body = Problem)))]
pub async fn get_incident(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<IncidentView>> {
    let tenant_id = ctx.tenant_id();
    let incident = drift::get(&state.db, tenant_id, id).await?;
    Ok(Json(view(&state, tenant_id, incident).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentPatch {
    /// A member of the tenant, or null to clear (INC-010).
    #[serde(default, with = "crate::routes::environments::serde_with_null")]
    #[schema(value_type = Option<Uuid>)]
    pub owner_user_id: Option<Option<Uuid>>,
    /// A ticket reference such as `OPS-1234` or a URL, or null to clear (INC-011).
    #[serde(default, with = "crate::routes::environments::serde_with_null")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 500)]
    pub ticket_ref: Option<Option<String>>,
}

impl Validate for IncidentPatch {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if let Some(Some(t)) = &self.ticket_ref {
            v.text("ticket_ref", t, 1, 500);
        }
        v.finish()
    }
}

/// Set an incident's owner and ticket reference (INC-010, INC-011).
#[utoipa::path(patch, path = "/api/v1/incidents/{incident_id}", tag = "drift", security(("bearer" = [])),
    params(("incident_id" = Uuid, Path, description = "The incident's id")),
    request_body = IncidentPatch,
    responses((status = 200, body = IncidentView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn patch_incident(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<IncidentPatch>,
) -> ApiResult<Json<IncidentView>> {
    let tenant_id = ctx.tenant_id();
    let old = drift::get(&state.db, tenant_id, id).await?;
    if let Some(Some(owner)) = req.owner_user_id {
        let member: bool = sqlx::query_scalar(
            "select exists (select 1 from memberships where tenant_id = $1 and user_id = $2)",
        )
        .bind(tenant_id)
        .bind(owner)
        .fetch_one(&state.db)
        .await?;
        if !member {
            return Err(
                domain::Error::invalid("owner_user_id", "is not a member of this tenant").into(),
            );
        }
    }
    let mut tx = state.db.begin().await?;
    let incident = drift::update_details(
        &mut *tx,
        tenant_id,
        id,
        req.owner_user_id,
        req.ticket_ref.as_ref().map(|t| t.as_deref()),
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "drift.incident_updated",
        "incident",
    )
    .target(id)
    .old(&json!({"owner_user_id": old.owner_user_id, "ticket_ref": old.ticket_ref}))
    .new_value(&json!({"owner_user_id": incident.owner_user_id, "ticket_ref": incident.ticket_ref}))
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(view(&state, tenant_id, incident).await?))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    /// `acknowledged`, `stabilized` or `closed`. `reconciled` is reached only by
    /// `POST /incidents/{id}/reconcile` (409 `reconcile_required` here).
    pub to: IncidentStatus,
    /// Needed to close: promote, revert, replace or acknowledge.
    pub resolution_type: Option<Resolution>,
    #[schema(max_length = 5000)]
    pub resolution_notes: Option<String>,
}

impl Validate for TransitionRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if let Some(n) = &self.resolution_notes {
            v.text("resolution_notes", n, 0, 5000);
        }
        v.finish()
    }
}

/// What an action answers: the incident as it is now, or the approval it now waits for.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DriftActionOutcome)]
pub struct ActionOutcome {
    /// `done`, `approval_required` or `run_started`.
    pub result: String,
    pub incident: IncidentView,
    pub approval: Option<Approval>,
    pub run: Option<RunView>,
}

async fn apply_transition(
    state: &AppState,
    tenant_id: Uuid,
    actor: &domain::audit::Actor,
    id: Uuid,
    req: &TransitionRequest,
) -> ApiResult<Incident> {
    let incident = drift::get(&state.db, tenant_id, id).await?;
    let env = environments::get(&state.db, tenant_id, incident.environment_id).await?;
    let mut tx = state.db.begin().await?;
    let from = incident.status.clone();
    let updated = drift::transition(
        &mut tx,
        tenant_id,
        id,
        req.to,
        req.resolution_type,
        req.resolution_notes.as_deref(),
        env.drift_mode,
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        actor,
        "drift.incident_transitioned",
        "incident",
    )
    .target(id)
    .old(&json!({"status": from}))
    .new_value(
        &json!({"status": updated.status, "resolution_type": updated.resolution_type,
            "resolution_notes": updated.resolution_notes}),
    )
    .record(&mut *tx)
    .await?;
    let event = match updated.status.as_str() {
        "acknowledged" => Some(EventType::IncidentAcknowledged),
        "reconciled" => Some(EventType::IncidentResolved),
        "closed" if from != "reconciled" => Some(EventType::IncidentResolved),
        _ => None,
    };
    if let Some(event_type) = event {
        jobs::notify::raise(
            &mut tx,
            Alert {
                tenant_id,
                event_type,
                environment_id: Some(env.id),
                title: format!("Incident {}: {}", updated.status, updated.title),
                data: json!({"incident_id": id, "environment": env.name, "status": updated.status,
                    "by": actor.label, "resolution_type": updated.resolution_type}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(updated)
}

fn action_of(to: IncidentStatus) -> Option<ApprovalAction> {
    match to {
        IncidentStatus::Acknowledged => Some(ApprovalAction::Acknowledge),
        IncidentStatus::Closed => Some(ApprovalAction::Close),
        _ => None,
    }
}

async fn request_approval(
    state: &AppState,
    tenant_id: Uuid,
    actor: &domain::audit::Actor,
    requested_by: Option<Uuid>,
    id: Uuid,
    action: ApprovalAction,
    payload: &Value,
) -> ApiResult<Approval> {
    let mut tx = state.db.begin().await?;
    let approval = drift::request_approval(
        &mut *tx,
        tenant_id,
        id,
        action,
        payload,
        requested_by,
        &actor.label,
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        actor,
        "drift.approval_requested",
        "incident",
    )
    .target(id)
    .new_value(&approval)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(approval)
}

/// Move an incident along its lifecycle (INC-003..006): detected → acknowledged → stabilized →
/// reconciled → closed (or acknowledged → closed as `acknowledge`). An illegal move is a 409
/// naming the allowed states. `reconciled` is refused (409 `reconcile_required`): only the
/// reconcile endpoint records the artifact and honours an approval required for `reconcile`.
/// Where the policy puts the action behind an approval, an approval request is created instead
/// (202).
#[utoipa::path(post, path = "/api/v1/incidents/{incident_id}/transition", tag = "drift", security(("bearer" = [])),
    params(("incident_id" = Uuid, Path, description = "The incident's id")),
    request_body = TransitionRequest,
    responses((status = 200, body = ActionOutcome), (status = 202, description = "Waits for an approval", body = ActionOutcome),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn transition(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<TransitionRequest>,
) -> ApiResult<(StatusCode, Json<ActionOutcome>)> {
    let tenant_id = ctx.tenant_id();
    let actor = ctx.actor();
    let incident = drift::get(&state.db, tenant_id, id).await?;
    let policy = policy_of(&state, tenant_id, incident.environment_id).await?;
    let from = IncidentStatus::parse(&incident.status).unwrap_or(IncidentStatus::Closed);
    if !from.next().contains(&req.to) {
        // Same answer as the store would give, before any approval is requested.
        let env = environments::get(&state.db, tenant_id, incident.environment_id).await?;
        let mut tx = state.db.begin().await?;
        drift::transition(
            &mut tx,
            tenant_id,
            id,
            req.to,
            req.resolution_type,
            req.resolution_notes.as_deref(),
            env.drift_mode,
        )
        .await?;
    }
    if let Some(action) = action_of(req.to)
        && policy.needs_approval(action)
    {
        let approval = request_approval(
            &state,
            tenant_id,
            &actor,
            ctx.principal.accountable_user(),
            id,
            action,
            &json!(req),
        )
        .await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(ActionOutcome {
                result: "approval_required".into(),
                incident: view(&state, tenant_id, incident).await?,
                approval: Some(approval),
                run: None,
            }),
        ));
    }
    let updated = apply_transition(&state, tenant_id, &actor, id, &req).await?;
    Ok((
        StatusCode::OK,
        Json(ActionOutcome {
            result: "done".into(),
            incident: view(&state, tenant_id, updated).await?,
            approval: None,
            run: None,
        }),
    ))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// 1 to 720 hours.
    #[schema(minimum = 1, maximum = 720)]
    pub hours: i32,
    pub reason: Option<String>,
}

impl Validate for ExtendRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if !(1..=720).contains(&self.hours) {
            v.error("hours", "must be 1 to 720");
        }
        v.finish()
    }
}

async fn apply_extend(
    state: &AppState,
    tenant_id: Uuid,
    actor: &domain::audit::Actor,
    id: Uuid,
    hours: i32,
) -> ApiResult<Incident> {
    let mut tx = state.db.begin().await?;
    let old = drift::lock(&mut tx, tenant_id, id).await?;
    if old.status == "closed" {
        return Err(domain::Error::conflict(
            "incident_closed",
            "a closed incident has no TTL to extend",
        )
        .into());
    }
    drift::extend_ttl(&mut *tx, id, hours).await?;
    Entry::new(Some(tenant_id), actor, "drift.ttl_extended", "incident")
        .target(id)
        .old(&json!({"expires_at": old.expires_at}))
        .new_value(&json!({"hours": hours}))
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(drift::get(&state.db, tenant_id, id).await?)
}

/// Extend an incident's TTL (APPR-004); behind an approval where the policy says so.
#[utoipa::path(post, path = "/api/v1/incidents/{incident_id}/extend", tag = "drift", security(("bearer" = [])),
    params(("incident_id" = Uuid, Path, description = "The incident's id")),
    request_body = ExtendRequest,
    responses((status = 200, body = ActionOutcome), (status = 202, body = ActionOutcome), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn extend(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<ExtendRequest>,
) -> ApiResult<(StatusCode, Json<ActionOutcome>)> {
    let tenant_id = ctx.tenant_id();
    let actor = ctx.actor();
    let incident = drift::get(&state.db, tenant_id, id).await?;
    let provider = provider_of(&state, tenant_id, incident.environment_id).await?;
    ctx.require(
        &state.db,
        Feature::DriftSla,
        Some(&provider),
        "incident.extend",
    )
    .await?;
    if policy_in(&state, tenant_id, &provider)
        .await?
        .needs_approval(ApprovalAction::ExtendTtl)
    {
        let approval = request_approval(
            &state,
            tenant_id,
            &actor,
            ctx.principal.accountable_user(),
            id,
            ApprovalAction::ExtendTtl,
            &json!(req),
        )
        .await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(ActionOutcome {
                result: "approval_required".into(),
                incident: view(&state, tenant_id, incident).await?,
                approval: Some(approval),
                run: None,
            }),
        ));
    }
    let updated = apply_extend(&state, tenant_id, &actor, id, req.hours).await?;
    Ok((
        StatusCode::OK,
        Json(ActionOutcome {
            result: "done".into(),
            incident: view(&state, tenant_id, updated).await?,
            approval: None,
            run: None,
        }),
    ))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// `promote` (the environment's version into Git), `revert` (the canonical version back),
    /// `replace` (the canonical version, recreated where missing) or `acknowledge` (accepted).
    pub resolution: Resolution,
    /// Only these affected workflows; all when omitted.
    #[schema(min_items = 1, max_items = 1000)]
    pub workflow_ids: Option<Vec<String>>,
}

impl Validate for ReconcileRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if self
            .workflow_ids
            .as_ref()
            .is_some_and(|w| w.is_empty() || w.len() > 1000)
        {
            v.error(
                "workflow_ids",
                "must name 1 to 1000 workflows, or be omitted",
            );
        }
        v.finish()
    }
}

async fn start_reconcile(
    state: &AppState,
    tenant_id: Uuid,
    actor: &domain::audit::Actor,
    id: Uuid,
    req: &ReconcileRequest,
) -> ApiResult<RunView> {
    let incident = drift::get(&state.db, tenant_id, id).await?;
    if !["acknowledged", "stabilized"].contains(&incident.status.as_str()) {
        return Err(domain::Error::conflict(
            "illegal_transition",
            format!(
                "an incident that is {} cannot be reconciled; acknowledge it first",
                incident.status
            ),
        )
        .into());
    }
    let input = ReconcileInput {
        tenant_id,
        incident_id: id,
        resolution: req.resolution,
        workflow_ids: req.workflow_ids.clone(),
        triggered_by: actor.label.clone(),
    };
    start_run(
        state,
        actor,
        tenant_id,
        jobs::drift::new_reconcile(&input, incident.environment_id),
        "drift.reconcile_started",
        json!({"incident_id": id, "resolution": req.resolution, "workflow_ids": req.workflow_ids}),
    )
    .await
}

/// Reconcile an acknowledged or stabilized incident as a run (INC-005); behind an approval
/// where the policy says so. The run records a reconciliation artifact and moves the incident
/// to `reconciled`.
#[utoipa::path(post, path = "/api/v1/incidents/{incident_id}/reconcile", tag = "drift", security(("bearer" = [])),
    params(("incident_id" = Uuid, Path, description = "The incident's id")),
    request_body = ReconcileRequest,
    responses((status = 202, body = ActionOutcome), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reconcile(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<ReconcileRequest>,
) -> ApiResult<(StatusCode, Json<ActionOutcome>)> {
    let tenant_id = ctx.tenant_id();
    let actor = ctx.actor();
    let incident = drift::get(&state.db, tenant_id, id).await?;
    if policy_of(&state, tenant_id, incident.environment_id)
        .await?
        .needs_approval(ApprovalAction::Reconcile)
    {
        if !["acknowledged", "stabilized"].contains(&incident.status.as_str()) {
            return Err(domain::Error::conflict(
                "illegal_transition",
                "acknowledge the incident first",
            )
            .into());
        }
        let approval = request_approval(
            &state,
            tenant_id,
            &actor,
            ctx.principal.accountable_user(),
            id,
            ApprovalAction::Reconcile,
            &json!(req),
        )
        .await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(ActionOutcome {
                result: "approval_required".into(),
                incident: view(&state, tenant_id, incident).await?,
                approval: Some(approval),
                run: None,
            }),
        ));
    }
    let run = start_reconcile(&state, tenant_id, &actor, id, &req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ActionOutcome {
            result: "run_started".into(),
            incident: view(&state, tenant_id, incident).await?,
            approval: None,
            run: Some(run),
        }),
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DriftDecisionRequest)]
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

/// The drift policy governing an incident's environment: the stored one as far as the plan of
/// the environment's provider grants it (a downgrade sets approvals it required aside).
async fn policy_of(
    state: &AppState,
    tenant_id: Uuid,
    environment_id: Uuid,
) -> ApiResult<drift::Policy> {
    let provider = provider_of(state, tenant_id, environment_id).await?;
    policy_in(state, tenant_id, &provider).await
}

/// [`policy_of`] an environment of `provider`.
async fn policy_in(state: &AppState, tenant_id: Uuid, provider: &str) -> ApiResult<drift::Policy> {
    let mut conn = state.db.acquire().await?;
    Ok(drift::policy_in_force(&mut conn, tenant_id, provider)
        .await?
        .policy)
}

/// The provider of one of the tenant's environments.
async fn provider_of(state: &AppState, tenant_id: Uuid, environment_id: Uuid) -> ApiResult<String> {
    Ok(
        sqlx::query_scalar("select provider from environments where tenant_id = $1 and id = $2")
            .bind(tenant_id)
            .bind(environment_id)
            .fetch_one(&state.db)
            .await?,
    )
}

async fn decide(
    state: &AppState,
    ctx: &TenantCtx<perm::ViewWorkflows>,
    id: Uuid,
    approve: bool,
    comment: Option<&str>,
) -> ApiResult<ActionOutcome> {
    let tenant_id = ctx.tenant_id();
    let actor = ctx.actor();
    let user = ctx.principal.user_id().ok_or_else(|| {
        ApiError::forbidden(
            "user_required",
            "approvals are given by people, not API keys",
        )
    })?;
    // Who approves is the policy in force for the incident's environment; extending a TTL still
    // needs the plan's drift SLA when the approval is given (the plan may have changed since).
    let asked: Option<(String, String)> = sqlx::query_as(
        "select e.provider, a.action from drift_approvals a \
         join drift_incidents i on i.id = a.incident_id join environments e on e.id = i.environment_id \
         where a.tenant_id = $1 and a.id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&state.db)
    .await?;
    let Some((provider, action)) = asked else {
        return Err(ApiError::not_found("approval not found"));
    };
    if approve && action == ApprovalAction::ExtendTtl.as_str() {
        ctx.require(
            &state.db,
            Feature::DriftSla,
            Some(&provider),
            "incident.extend",
        )
        .await?;
    }
    let policy = policy_in(state, tenant_id, &provider).await?;
    if !policy
        .approver_roles
        .iter()
        .any(|r| r == ctx.tenant.role.as_str())
    {
        return Err(ApiError::forbidden(
            "not_an_approver",
            format!(
                "drift approvals are given by: {}",
                policy.approver_roles.join(", ")
            ),
        ));
    }
    let mut tx = state.db.begin().await?;
    let pending: Option<(Option<Uuid>,)> =
        sqlx::query_as("select requested_by from drift_approvals where tenant_id = $1 and id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((requested_by,)) = pending else {
        return Err(ApiError::not_found("approval not found"));
    };
    if requested_by == Some(user) {
        return Err(ApiError::forbidden(
            "self_approval",
            "you cannot decide your own request",
        ));
    }
    let approval =
        drift::decide_approval(&mut tx, tenant_id, id, approve, user, &actor.label, comment)
            .await?;
    Entry::new(
        Some(tenant_id),
        &actor,
        if approve {
            "drift.approval_approved"
        } else {
            "drift.approval_rejected"
        },
        "incident",
    )
    .target(approval.incident_id)
    .new_value(&approval)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut run = None;
    if approve {
        let action = ApprovalAction::parse(&approval.action).unwrap_or(ApprovalAction::Acknowledge);
        let bad =
            |e: serde_json::Error| ApiError::internal(format!("a stored approval payload: {e}"));
        match action {
            ApprovalAction::Acknowledge | ApprovalAction::Close => {
                let req: TransitionRequest =
                    serde_json::from_value(approval.payload.clone()).map_err(bad)?;
                apply_transition(state, tenant_id, &actor, approval.incident_id, &req).await?;
            }
            ApprovalAction::ExtendTtl => {
                let req: ExtendRequest =
                    serde_json::from_value(approval.payload.clone()).map_err(bad)?;
                apply_extend(state, tenant_id, &actor, approval.incident_id, req.hours).await?;
            }
            ApprovalAction::Reconcile => {
                let req: ReconcileRequest =
                    serde_json::from_value(approval.payload.clone()).map_err(bad)?;
                run = Some(
                    start_reconcile(state, tenant_id, &actor, approval.incident_id, &req).await?,
                );
            }
        }
    }
    let incident = drift::get(&state.db, tenant_id, approval.incident_id).await?;
    Ok(ActionOutcome {
        result: if approve {
            "done".into()
        } else {
            "rejected".into()
        },
        incident: view(state, tenant_id, incident).await?,
        approval: Some(approval),
        run,
    })
}

/// Approve a drift action (APPR-003): by a role the policy names, never the requester; the
/// action is carried out then.
#[utoipa::path(post, path = "/api/v1/drift-approvals/{approval_id}/approve", tag = "drift", security(("bearer" = [])),
    params(("approval_id" = Uuid, Path, description = "The approval's id")),
    request_body = DecisionRequest,
    responses((status = 200, body = ActionOutcome), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn approve(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> ApiResult<Json<ActionOutcome>> {
    Ok(Json(
        decide(&state, &ctx, id, true, req.comment.as_deref()).await?,
    ))
}

/// Reject a drift action request.
#[utoipa::path(post, path = "/api/v1/drift-approvals/{approval_id}/reject", tag = "drift", security(("bearer" = [])),
    params(("approval_id" = Uuid, Path, description = "The approval's id")),
    request_body = DecisionRequest,
    responses((status = 200, body = ActionOutcome), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reject(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> ApiResult<Json<ActionOutcome>> {
    Ok(Json(
        decide(&state, &ctx, id, false, req.comment.as_deref()).await?,
    ))
}
