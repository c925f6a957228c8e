//! Environments (ENV-001..019, BULK-001, HEALTH-002/005/006): connect a provider instance after
//! a successful connection test, list with sync status and health, change, delete with
//! confirmation, sync (whole or in part, one or many), check health.

use std::sync::Arc;

use adapters::{InstanceInfo, Provider, ProviderError, ProviderKind};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use domain::audit::Entry;
use domain::entitlements;
use domain::environments::{
    self, Access, Changes, DriftMode, Environment, EnvironmentClass, EnvironmentType, HealthCheck,
    NewEnvironment, Reconnect,
};
use domain::validate::Validator;
use jobs::health::{self, HealthInput};
use jobs::sync::{self, BulkSyncInput, Scope, SyncInput};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};
use crate::routes::runs::{RunView, start_run};

fn connection_failed(e: &ProviderError) -> ApiError {
    if let ProviderError::Refused(message) = e {
        return ApiError::destination_refused(message.clone());
    }
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "connection_failed",
        format!("the connection test failed ({}): {e}", e.code()),
    )
}

/// A base URL's form. Adapters append their API paths to it, so nothing may follow the
/// address that would swallow them: never a fragment; for n8n no query; for Make exactly its
/// `teamId`. `provider` is None where it is not known yet (checked again once it is).
fn validate_url(v: &mut Validator, field: &str, url: &str, provider: Option<ProviderKind>) {
    let url = url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2000 {
        v.error(
            field,
            "must be an http:// or https:// URL of at most 2000 characters",
        );
        return;
    }
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => {
            v.error(field, format!("is not a URL: {e}"));
            return;
        }
    };
    // Credentials belong in `api_key`, which is sealed; a URL is shown and logged.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        v.error(
            field,
            "must not carry credentials (user:password@): put the key in api_key",
        );
    } else if parsed.host_str().is_none_or(str::is_empty) {
        v.error(field, "must name a host");
    } else if parsed.fragment().is_some() {
        v.error(field, "must not have a `#` part");
    } else {
        match provider {
            Some(ProviderKind::N8n) if parsed.query().is_some() => {
                v.error(
                    field,
                    "must not have a `?` part: an n8n base URL is the instance's address, e.g. \
                     `https://n8n.example.com`",
                );
            }
            Some(ProviderKind::Make) => {
                let pairs: Vec<_> = parsed.query_pairs().collect();
                if !(pairs.len() == 1 && pairs[0].0 == "teamId") {
                    v.error(
                        field,
                        format!(
                            "{}; nothing but `?teamId=` may follow the address",
                            adapters::make::EXPECTED_BASE_URL
                        ),
                    );
                }
            }
            Some(ProviderKind::N8n) | None => {}
        }
    }
}

fn parse_provider(v: &mut Validator, provider: &str) -> Option<ProviderKind> {
    let kind = ProviderKind::parse(provider);
    if kind.is_none() {
        v.error("provider", "must be `n8n` or `make`");
    }
    kind
}

/// Tests a connection: the instance's version and capabilities, or why it failed.
async fn test(
    state: &AppState,
    provider: &str,
    base_url: &str,
    api_key: &SecretString,
    limits: (f64, i32),
) -> Result<InstanceInfo, ProviderError> {
    let access = Access {
        environment_id: Uuid::nil(),
        provider: provider.to_owned(),
        base_url: base_url.to_owned(),
        api_key: api_key.clone(),
        version: None,
        rate_limit: limits.0,
        max_concurrency: limits.1,
    };
    let adapter: Arc<dyn Provider> = jobs::providers::connect(&state.jobs.http, &access)?;
    adapter.test_connection().await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestConnectionRequest {
    /// `n8n` or `make`.
    #[schema(pattern = "^(n8n|make)$")]
    pub provider: String,
    /// n8n: the instance's base URL, e.g. `https://n8n.example.com`. Make.com: the zone's address
    /// with the team, e.g. `https://eu1.make.com?teamId=42`.
    #[schema(max_length = 2000, pattern = "^https?://")]
    pub base_url: String,
    /// The instance's API key. Used for the test only; never stored by this call.
    #[schema(value_type = String)]
    pub api_key: SecretString,
}

impl Validate for TestConnectionRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        let kind = parse_provider(&mut v, &self.provider);
        validate_url(&mut v, "base_url", &self.base_url, kind);
        v.finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionTested {
    pub ok: bool,
    pub version: Option<String>,
    #[schema(value_type = Object)]
    pub capabilities: adapters::Capabilities,
}

/// Test a connection without saving anything (ENV-002).
#[utoipa::path(post, path = "/api/v1/environments/test-connection", tag = "environments", security(("bearer" = [])),
    request_body = TestConnectionRequest,
    responses((status = 200, body = ConnectionTested), (status = 422, description = "The test failed: the provider's reason", body = Problem)))]
pub async fn test_connection(
    State(state): State<AppState>,
    _ctx: TenantCtx<perm::ManageEnvironments>,
    ApiJson(req): ApiJson<TestConnectionRequest>,
) -> ApiResult<Json<ConnectionTested>> {
    let info = test(
        &state,
        &req.provider,
        &req.base_url,
        &req.api_key,
        (10.0, 2),
    )
    .await
    .map_err(|e| connection_failed(&e))?;
    Ok(Json(ConnectionTested {
        ok: true,
        version: info.version,
        capabilities: info.capabilities,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironmentRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// `n8n` or `make` (ENV-009).
    #[schema(pattern = "^(n8n|make)$")]
    pub provider: String,
    /// n8n: the instance's base URL. Make.com: the zone's address with the team, e.g.
    /// `https://eu1.make.com?teamId=42`.
    #[schema(max_length = 2000, pattern = "^https?://")]
    pub base_url: String,
    #[schema(value_type = String)]
    pub api_key: SecretString,
    /// `dev`, `staging` or `production` (ENV-005).
    pub class: EnvironmentClass,
    /// A tenant-defined type's key (ENV-010).
    pub env_type: Option<String>,
    /// ENV-011 (default `warn_only`).
    pub drift_mode: Option<DriftMode>,
    /// Requests per second to this instance (default 100).
    #[schema(minimum = 0.1, maximum = 10000.0)]
    pub rate_limit: Option<f64>,
    /// Requests in flight to this instance (default 4).
    #[schema(minimum = 1, maximum = 64)]
    pub max_concurrency: Option<i32>,
}

fn validate_limits(v: &mut Validator, rate: Option<f64>, concurrency: Option<i32>) {
    if rate.is_some_and(|r| !(0.1..=10_000.0).contains(&r)) {
        v.error(
            "rate_limit",
            "must be between 0.1 and 10000 requests per second",
        );
    }
    if concurrency.is_some_and(|c| !(1..=64).contains(&c)) {
        v.error("max_concurrency", "must be between 1 and 64");
    }
}

impl Validate for CreateEnvironmentRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("name", &self.name, 1, 100);
        let kind = parse_provider(&mut v, &self.provider);
        validate_url(&mut v, "base_url", &self.base_url, kind);
        validate_limits(&mut v, self.rate_limit, self.max_concurrency);
        v.finish()
    }
}

/// Connect an environment: the connection is tested first and nothing is saved if it fails
/// (ENV-001, ENV-002). A health check is scheduled every five minutes (HEALTH-005).
#[utoipa::path(post, path = "/api/v1/environments", tag = "environments", security(("bearer" = [])),
    request_body = CreateEnvironmentRequest,
    responses((status = 201, body = Environment), (status = 409, description = "Name taken or environment limit reached", body = Problem),
        (status = 422, description = "Invalid input or the connection test failed", body = Problem)))]
pub async fn create_environment(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageEnvironments>,
    ApiJson(req): ApiJson<CreateEnvironmentRequest>,
) -> ApiResult<(StatusCode, Json<Environment>)> {
    let enabled: Option<bool> = sqlx::query_scalar("select enabled from providers where key = $1")
        .bind(req.provider.as_str())
        .fetch_optional(&state.db)
        .await?;
    if enabled == Some(false) {
        return Err(domain::Error::conflict(
            "provider_disabled",
            format!(
                "{} environments cannot be added at the moment",
                req.provider
            ),
        )
        .into());
    }
    let limits = (
        req.rate_limit.unwrap_or(100.0),
        req.max_concurrency.unwrap_or(4),
    );
    let info = test(&state, &req.provider, &req.base_url, &req.api_key, limits)
        .await
        .map_err(|e| connection_failed(&e))?;
    let tenant_id = ctx.tenant_id();
    let capabilities = serde_json::to_value(&info.capabilities).unwrap_or_default();
    let mut tx = state.db.begin().await?;
    // The tenant's own limit (ADMIN-006), or its plan's for this provider (ENV-008).
    let limit =
        entitlements::EnvironmentLimits::load(&mut tx, tenant_id, state.config.max_environments)
            .await?
            .of(req.provider.as_str());
    let env = environments::create(
        &mut tx,
        &state.keyring,
        NewEnvironment {
            tenant_id,
            name: &req.name,
            provider: &req.provider,
            base_url: &req.base_url,
            api_key: &req.api_key,
            class: req.class,
            env_type: req.env_type.as_deref(),
            drift_mode: req.drift_mode.unwrap_or(DriftMode::WarnOnly),
            provider_version: info.version.as_deref(),
            capabilities: &capabilities,
            rate_limit: limits.0,
            max_concurrency: limits.1,
            created_by: ctx.principal.user_id(),
            limit,
        },
    )
    .await?;
    engine::schedule::upsert(
        &mut *tx,
        engine::schedule::NewSchedule {
            namespace: &tenant_id.to_string(),
            name: &health::schedule_name(env.id),
            cron: health::SCHEDULE_CRON,
            timezone: "UTC",
            kind: <health::HealthCheck as engine::Job>::KIND,
            input: serde_json::json!(HealthInput {
                tenant_id,
                environment_id: env.id
            }),
            enabled: true,
            missed: engine::schedule::Missed::Skip,
        },
    )
    .await
    .map_err(ApiError::internal)?;
    // Scheduled drift checks (DRIFT-001); dev environments record a skipped check.
    engine::schedule::upsert(
        &mut *tx,
        engine::schedule::NewSchedule {
            namespace: &tenant_id.to_string(),
            name: &jobs::drift::schedule_name(env.id),
            cron: jobs::drift::SCHEDULE_CRON,
            timezone: "UTC",
            kind: <jobs::drift::DriftCheck as engine::Job>::KIND,
            input: serde_json::json!(jobs::drift::CheckInput {
                tenant_id,
                environment_id: env.id,
                trigger: "scheduled".into(),
                refresh: true,
            }),
            enabled: true,
            missed: engine::schedule::Missed::Skip,
        },
    )
    .await
    .map_err(ApiError::internal)?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "environment.created",
        "environment",
    )
    .target(env.id)
    .provider(&req.provider)
    .new_value(&env)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(env)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnvironmentList {
    pub items: Vec<Environment>,
    /// How many n8n environments this tenant may have (ENV-008); `limits` has every provider's.
    pub limit: i64,
    /// n8n environments connected.
    pub used: usize,
    /// Per provider: the plan's (or the tenant's own) limit and the environments connected.
    pub limits: Vec<ProviderLimit>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProviderLimit {
    pub provider: String,
    pub limit: i64,
    pub used: usize,
}

/// Every environment, with sync status and health (ENV-006, ENV-008, ENV-012).
#[utoipa::path(get, path = "/api/v1/environments", tag = "environments", security(("bearer" = [])),
    responses((status = 200, body = EnvironmentList)))]
pub async fn list_environments(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
) -> ApiResult<Json<EnvironmentList>> {
    let items = environments::list(&state.db, ctx.tenant_id()).await?;
    // One resolution of the tenant's plans serves every provider.
    let mut conn = state.db.acquire().await?;
    let resolved = entitlements::EnvironmentLimits::load(
        &mut conn,
        ctx.tenant_id(),
        state.config.max_environments,
    )
    .await?;
    drop(conn);
    let limits: Vec<ProviderLimit> = resolved
        .providers()
        .map(|provider| ProviderLimit {
            limit: resolved.of(provider),
            used: items.iter().filter(|e| e.provider == provider).count(),
            provider: provider.to_owned(),
        })
        .collect();
    let n8n = limits.iter().find(|l| l.provider == "n8n");
    Ok(Json(EnvironmentList {
        limit: n8n.map_or(0, |l| l.limit),
        used: n8n.map_or(0, |l| l.used),
        limits,
        items,
    }))
}

/// One environment.
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}", tag = "environments", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    responses((status = 200, body = Environment), (status = 404, body = Problem)))]
pub async fn get_environment(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Environment>> {
    Ok(Json(
        environments::get(&state.db, ctx.tenant_id(), id).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironmentRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    pub class: Option<EnvironmentClass>,
    /// A type key, or null to clear it.
    #[serde(default, with = "serde_with_null")]
    #[schema(value_type = Option<String>)]
    pub env_type: Option<Option<String>>,
    pub drift_mode: Option<DriftMode>,
    #[schema(minimum = 0.1, maximum = 10000.0)]
    pub rate_limit: Option<f64>,
    #[schema(minimum = 1, maximum = 64)]
    pub max_concurrency: Option<i32>,
    /// A new URL and/or key: tested before anything changes.
    #[schema(max_length = 2000, pattern = "^https?://")]
    pub base_url: Option<String>,
    #[schema(value_type = Option<String>)]
    pub api_key: Option<SecretString>,
}

/// `Some(None)` for an explicit null, `None` when the field is absent.
pub(crate) mod serde_with_null {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Ok(Some(Option::<T>::deserialize(d)?))
    }
}

impl Validate for UpdateEnvironmentRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if let Some(name) = &self.name {
            v.text("name", name, 1, 100);
        }
        if let Some(url) = &self.base_url {
            validate_url(&mut v, "base_url", url, None);
        }
        validate_limits(&mut v, self.rate_limit, self.max_concurrency);
        v.finish()
    }
}

/// Change an environment. A new URL or key is tested first (ENV-002); audited with old and new.
///
/// The connection test is a call to the provider that can take seconds, so it runs before
/// anything is locked: the change is validated and tested, then one transaction locks the
/// environment, applies the change to it as it is then, and audits it (the old value in the
/// audit entry is the one replaced). Settings that need no test (name, class, type, drift
/// mode, limits) are applied to the current row, as a PATCH does. A new URL or key, though,
/// was tested in combination with the connection in place when the test started (the current
/// key with a new URL, or the current URL with a new key): when someone else replaced the
/// URL or key meanwhile, that combination is not what would be stored, so nothing is changed
/// and the answer is 409 `environment_changed` — reload and decide again.
#[utoipa::path(patch, path = "/api/v1/environments/{environment_id}", tag = "environments", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    request_body = UpdateEnvironmentRequest,
    responses((status = 200, body = Environment), (status = 404, body = Problem),
        (status = 409, description = "Name taken, or the URL or key was replaced while the new one was being tested", body = Problem),
        (status = 422, description = "Invalid input or the connection test failed", body = Problem)))]
pub async fn update_environment(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageEnvironments>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateEnvironmentRequest>,
) -> ApiResult<Json<Environment>> {
    let tenant_id = ctx.tenant_id();
    let seen = environments::get(&state.db, tenant_id, id).await?;
    if let Some(url) = &req.base_url {
        let mut v = Validator::new();
        validate_url(&mut v, "base_url", url, ProviderKind::parse(&seen.provider));
        v.finish()?;
    }
    // The new connection, tested with no transaction open.
    let tested = if req.base_url.is_some() || req.api_key.is_some() {
        let mut conn = state.db.acquire().await?;
        // Read before the URL and key it stamps, so a change between the two reads is seen
        // as a change (never the other way round).
        let stamp = environments::connection_stamp(&mut *conn, tenant_id, id).await?;
        let current = environments::access(&mut conn, &state.keyring, tenant_id, id).await?;
        drop(conn);
        let base_url = req.base_url.clone().unwrap_or(current.base_url);
        let key = req.api_key.clone().unwrap_or(current.api_key);
        let info = test(
            &state,
            &seen.provider,
            &base_url,
            &key,
            (seen.rate_limit, seen.max_concurrency),
        )
        .await
        .map_err(|e| connection_failed(&e))?;
        Some((stamp, base_url, info))
    } else {
        None
    };
    let mut tx = state.db.begin().await?;
    let (old, connection) = environments::lock(&mut tx, tenant_id, id).await?;
    if let Some((stamp, base_url, info)) = &tested {
        if *stamp != connection {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "environment_changed",
                "the environment's URL or API key was replaced by someone else while the new \
                 connection was being tested, so nothing was changed: reload the environment \
                 and make the change again",
            ));
        }
        let capabilities = serde_json::to_value(&info.capabilities).unwrap_or_default();
        environments::reconnect(
            &mut tx,
            &state.keyring,
            tenant_id,
            id,
            &Reconnect {
                base_url,
                api_key: req.api_key.as_ref(),
                version: info.version.as_deref(),
                capabilities: &capabilities,
            },
        )
        .await?;
    }
    let env = environments::update(
        &mut tx,
        tenant_id,
        id,
        &Changes {
            name: req.name.as_deref(),
            class: req.class,
            env_type: req.env_type.as_ref().map(|t| t.as_deref()),
            drift_mode: req.drift_mode,
            rate_limit: req.rate_limit,
            max_concurrency: req.max_concurrency,
        },
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "environment.updated",
        "environment",
    )
    .target(id)
    .provider(&env.provider)
    .old(&old)
    .new_value(&env)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(env))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// The environment's exact name, as confirmation (ENV-007).
    pub confirm: Option<String>,
}

/// Delete an environment and everything synced from it. Needs `?confirm=<its name>`.
#[utoipa::path(delete, path = "/api/v1/environments/{environment_id}", tag = "environments", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id"), DeleteQuery),
    responses((status = 204), (status = 404, body = Problem), (status = 422, description = "Missing or wrong confirmation", body = Problem)))]
pub async fn delete_environment(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageEnvironments>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    let env = environments::get(&mut *tx, tenant_id, id).await?;
    if q.confirm.as_deref() != Some(env.name.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "confirmation_required",
            format!(
                "to delete this environment, pass ?confirm= with its exact name (`{}`)",
                env.name
            ),
        ));
    }
    environments::delete(&mut tx, tenant_id, id).await?;
    for schedule in [
        health::schedule_name(id),
        crate::routes::git::schedule_name(id),
        jobs::drift::schedule_name(id),
    ] {
        match engine::schedule::delete(&mut *tx, &tenant_id.to_string(), &schedule).await {
            Ok(()) | Err(engine::schedule::Error::NotFound) => {}
            Err(e) => return Err(ApiError::internal(e)),
        }
    }
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "environment.deleted",
        "environment",
    )
    .target(id)
    .provider(&env.provider)
    .old(&env)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// `full` (default), `workflows`, `credentials`, `tags`, `users` or `executions`
    /// (ENV-013..016).
    pub scope: Option<Scope>,
}

impl Validate for SyncRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        Ok(())
    }
}

/// Start a sync of one environment as a background run; watch it at `/api/v1/runs/{id}/events`
/// (ENV-017, ENV-018). One sync per environment runs at a time; others queue.
#[utoipa::path(post, path = "/api/v1/environments/{environment_id}/sync", tag = "environments", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    request_body = SyncRequest,
    responses((status = 202, body = RunView), (status = 404, body = Problem)))]
pub async fn sync_environment(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<SyncRequest>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    let env = environments::get(&state.db, tenant_id, id).await?;
    let input = SyncInput {
        tenant_id,
        environment_id: env.id,
        scope: req.scope.unwrap_or(Scope::Full),
        execution_retention_seconds: Some(state.config.execution_retention.as_secs()),
    };
    let view = start_run(
        &state,
        &ctx.actor(),
        tenant_id,
        sync::new_run(&input),
        "environment.sync_started",
        serde_json::json!({"environment_id": env.id, "scope": input.scope}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkSyncRequest {
    #[schema(min_items = 1, max_items = 100)]
    pub environment_ids: Vec<Uuid>,
    pub scope: Option<Scope>,
}

/// 1-100 distinct environments, for bulk operations.
pub(crate) fn validate_environment_ids(v: &mut Validator, ids: &[Uuid]) {
    if ids.is_empty() || ids.len() > 100 {
        v.error("environment_ids", "must name 1 to 100 environments");
    }
    let mut seen = std::collections::HashSet::new();
    if !ids.iter().all(|id| seen.insert(id)) {
        v.error("environment_ids", "must not repeat an environment");
    }
}

impl Validate for BulkSyncRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        validate_environment_ids(&mut v, &self.environment_ids);
        v.finish()
    }
}

/// Sync several environments as one parent run with a child per environment (BULK-001,
/// BULK-004, BULK-005: per-environment outcome and a partial-failure summary).
#[utoipa::path(post, path = "/api/v1/environments/sync", tag = "environments", security(("bearer" = [])),
    request_body = BulkSyncRequest,
    responses((status = 202, body = RunView), (status = 404, description = "An unknown environment", body = Problem)))]
pub async fn bulk_sync(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiJson(req): ApiJson<BulkSyncRequest>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    for id in &req.environment_ids {
        environments::get(&state.db, tenant_id, *id).await?;
    }
    let input = BulkSyncInput {
        tenant_id,
        environment_ids: req.environment_ids,
        scope: req.scope.unwrap_or(Scope::Full),
        execution_retention_seconds: Some(state.config.execution_retention.as_secs()),
    };
    let run = engine::NewRun::of::<sync::BulkSync>(tenant_id.to_string(), &input);
    let view = start_run(
        &state,
        &ctx.actor(),
        tenant_id,
        run,
        "environment.bulk_sync_started",
        serde_json::json!({"environment_ids": input.environment_ids, "scope": input.scope}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Check an environment's health now (HEALTH-006); scheduled checks run every five minutes.
#[utoipa::path(post, path = "/api/v1/environments/{environment_id}/health-check", tag = "environments", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    responses((status = 202, body = RunView), (status = 404, body = Problem)))]
pub async fn check_health(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::SyncEnvironments>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let tenant_id = ctx.tenant_id();
    environments::get(&state.db, tenant_id, id).await?;
    let input = HealthInput {
        tenant_id,
        environment_id: id,
    };
    let view = start_run(
        &state,
        &ctx.actor(),
        tenant_id,
        health::new_run(&input),
        "environment.health_check_started",
        serde_json::json!({"environment_id": id}),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthHistory {
    pub checks: Vec<HealthCheck>,
    /// Share of healthy checks among these, 0-1 (null without checks).
    pub uptime: Option<f64>,
}

/// The last 100 health checks and the uptime over them (HEALTH-002).
#[utoipa::path(get, path = "/api/v1/environments/{environment_id}/health", tag = "environments", security(("bearer" = [])),
    params(("environment_id" = Uuid, Path, description = "The environment's id")),
    responses((status = 200, body = HealthHistory), (status = 404, body = Problem)))]
pub async fn health_history(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<HealthHistory>> {
    environments::get(&state.db, ctx.tenant_id(), id).await?;
    let checks = environments::health_history(&state.db, ctx.tenant_id(), id, 100).await?;
    #[allow(clippy::cast_precision_loss)]
    let uptime = (!checks.is_empty()).then(|| {
        checks
            .iter()
            .filter(|c| c.status == environments::HealthStatus::Healthy)
            .count() as f64
            / checks.len() as f64
    });
    Ok(Json(HealthHistory { checks, uptime }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTypeRequest {
    /// A short key, e.g. `uat`.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{1,62}$")]
    pub key: String,
    #[schema(min_length = 1, max_length = 100)]
    pub label: String,
    /// The class that decides this type's policies.
    pub class: EnvironmentClass,
    #[serde(default)]
    pub sort_order: i32,
}

impl Validate for CreateTypeRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.slug("key", &self.key);
        v.text("label", &self.label, 1, 100);
        v.finish()
    }
}

/// The tenant's environment types (ENV-010).
#[utoipa::path(get, path = "/api/v1/environment-types", tag = "environments", security(("bearer" = [])),
    responses((status = 200, body = Vec<EnvironmentType>)))]
pub async fn list_types(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
) -> ApiResult<Json<Vec<EnvironmentType>>> {
    Ok(Json(
        environments::list_types(&state.db, ctx.tenant_id()).await?,
    ))
}

/// Define an environment type (ENV-010).
#[utoipa::path(post, path = "/api/v1/environment-types", tag = "environments", security(("bearer" = [])),
    request_body = CreateTypeRequest,
    responses((status = 201, body = EnvironmentType), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_type(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageEnvironments>,
    ApiJson(req): ApiJson<CreateTypeRequest>,
) -> ApiResult<(StatusCode, Json<EnvironmentType>)> {
    let mut tx = state.db.begin().await?;
    let t = environments::create_type(
        &mut *tx,
        ctx.tenant_id(),
        &req.key,
        &req.label,
        req.class,
        req.sort_order,
    )
    .await?;
    Entry::new(
        Some(ctx.tenant_id()),
        &ctx.actor(),
        "environment_type.created",
        "environment_type",
    )
    .target(t.id)
    .new_value(&t)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// Delete an environment type no environment uses.
#[utoipa::path(delete, path = "/api/v1/environment-types/{type_id}", tag = "environments", security(("bearer" = [])),
    params(("type_id" = Uuid, Path, description = "The type's id")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, description = "In use", body = Problem)))]
pub async fn delete_type(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageEnvironments>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let t = environments::delete_type(&mut tx, ctx.tenant_id(), id).await?;
    Entry::new(
        Some(ctx.tenant_id()),
        &ctx.actor(),
        "environment_type.deleted",
        "environment_type",
    )
    .target(id)
    .old(&t)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(url: &str, provider: Option<ProviderKind>) -> Vec<String> {
        let mut v = Validator::new();
        validate_url(&mut v, "base_url", url, provider);
        match v.finish() {
            Ok(()) => Vec::new(),
            Err(domain::Error::Validation(fields)) => {
                fields.into_iter().map(|f| f.message).collect()
            }
            Err(other) => vec![other.to_string()],
        }
    }

    #[test]
    fn base_urls_leave_nothing_after_the_address_that_would_swallow_api_paths() {
        let n8n = Some(ProviderKind::N8n);
        let make = Some(ProviderKind::Make);
        for (url, provider) in [
            ("https://n8n.example.com", n8n),
            ("http://10.0.0.5:5678/n8n/", n8n),
            ("https://eu1.make.com?teamId=42", make),
            ("https://eu1.make.com/api/v2/?teamId=42", make),
            ("https://n8n.example.com", None),
        ] {
            assert_eq!(problems(url, provider), Vec::<String>::new(), "{url}");
        }
        for (url, provider, says) in [
            ("http://169.254.169.254/latest/meta-data#", n8n, "`#`"),
            ("http://169.254.169.254/x#", None, "`#`"),
            ("https://eu1.make.com?teamId=42#x", make, "`#`"),
            ("http://internal.example/secret?", n8n, "`?`"),
            ("https://n8n.example.com/?teamId=1", n8n, "`?`"),
            ("https://eu1.make.com", make, "teamId"),
            (
                "https://eu1.make.com?teamId=42&x=1",
                make,
                "nothing but `?teamId=`",
            ),
            ("https://eu1.make.com?x=1", make, "teamId"),
            ("https://user:pw@n8n.example.com", n8n, "credentials"),
            ("ftp://n8n.example.com", n8n, "http://"),
        ] {
            let found = problems(url, provider);
            assert!(
                found.len() == 1 && found[0].contains(says),
                "{url}: {found:?}"
            );
        }
    }
}
