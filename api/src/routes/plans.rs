//! Providers, plans and entitlements (PROV-003/006/007/009/010, ENT-001..011, ADMIN-005/008/013/014).
//!
//! Tenants read what they may do (`/entitlements`) and which plans exist (`/plans`); platform
//! admins manage the providers, the plans and their features (the feature matrix), assign plans,
//! and grant tenants time-limited overrides. Every change is in the platform's audit trail.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use domain::audit::Entry;
use domain::entitlements::{
    self, Denial, Entitlements, Feature, FeatureInfo, Override, OverrideInput, Plan, ProviderInfo,
    Subscription, SubscriptionChange,
};
use domain::validate::Validator;
use domain::{ids::new_id, tenancy};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{PlatformAdmin, TenantCtx, perm};
use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};
use crate::routes::environments::serde_with_null;

const PROVIDERS: [&str; 2] = ["n8n", "make"];

fn check_provider(v: &mut Validator, field: &str, provider: &str) {
    if !PROVIDERS.contains(&provider) {
        v.error(field, format!("must be one of: {}", PROVIDERS.join(", ")));
    }
}

// ---------------------------------------------------------------------------------------------
// Tenant side
// ---------------------------------------------------------------------------------------------

/// The providers this platform offers.
#[utoipa::path(get, path = "/api/v1/providers", tag = "plans", security(("bearer" = [])),
    responses((status = 200, body = Vec<ProviderInfo>)))]
pub async fn list_providers(
    State(state): State<AppState>,
    _ctx: TenantCtx<perm::ViewWorkflows>,
) -> ApiResult<Json<Vec<ProviderInfo>>> {
    Ok(Json(entitlements::providers(&state.db).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlansQuery {
    /// Only this provider's plans.
    pub provider: Option<String>,
}

/// The plans on offer, cheapest first, with what each grants (PROV-007, ENT-005: which plan a
/// feature needs).
#[utoipa::path(get, path = "/api/v1/plans", tag = "plans", security(("bearer" = [])),
    params(PlansQuery),
    responses((status = 200, body = Vec<Plan>)))]
pub async fn list_plans(
    State(state): State<AppState>,
    _ctx: TenantCtx<perm::ViewWorkflows>,
    ApiQuery(q): ApiQuery<PlansQuery>,
) -> ApiResult<Json<Vec<Plan>>> {
    let mut plans = entitlements::plans(&state.db, true).await?;
    if let Some(p) = q.provider {
        plans.retain(|plan| plan.provider == p);
    }
    Ok(Json(plans))
}

/// What the tenant may do (ENT-003, PROV-009): per provider the plan in force, its
/// subscription and each feature's effective value with where it comes from; tenant-wide
/// features apart.
#[utoipa::path(get, path = "/api/v1/entitlements", tag = "plans", security(("bearer" = [])),
    responses((status = 200, body = Entitlements)))]
pub async fn my_entitlements(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
) -> ApiResult<Json<Entitlements>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(
        entitlements::entitlements(&mut conn, ctx.tenant_id()).await?,
    ))
}

/// The tenant's subscriptions, one per provider (BILL-001, PROV-006).
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "plans", security(("bearer" = [])),
    responses((status = 200, body = Vec<Subscription>)))]
pub async fn my_subscriptions(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewWorkflows>,
) -> ApiResult<Json<Vec<Subscription>>> {
    Ok(Json(
        entitlements::subscriptions(&state.db, ctx.tenant_id()).await?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Platform: providers, plans, the feature matrix
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderPatch {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Disabled: no new environments of this provider.
    pub enabled: Option<bool>,
}

impl Validate for ProviderPatch {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if let Some(n) = &self.name {
            v.text("name", n, 1, 100);
        }
        if let Some(d) = &self.description {
            v.text("description", d, 0, 500);
        }
        v.finish()
    }
}

/// Change a provider's name, description or availability (ADMIN-013).
#[utoipa::path(patch, path = "/api/v1/platform/providers/{provider}", tag = "platform", security(("bearer" = [])),
    params(("provider" = String, Path, description = "n8n or make")),
    request_body = ProviderPatch,
    responses((status = 200, body = ProviderInfo), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update_provider(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(key): ApiPath<String>,
    ApiJson(req): ApiJson<ProviderPatch>,
) -> ApiResult<Json<ProviderInfo>> {
    let mut tx = state.db.begin().await?;
    let before: ProviderInfo = sqlx::query_as(
        "select key, name, description, enabled, sort, updated_at from providers where key = $1 for update",
    )
    .bind(&key)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(domain::Error::not_found("provider"))?;
    let after: ProviderInfo = sqlx::query_as(
        "update providers set name = coalesce($2, name), description = coalesce($3, description), \
         enabled = coalesce($4, enabled), updated_at = now() where key = $1 \
         returning key, name, description, enabled, sort, updated_at",
    )
    .bind(&key)
    .bind(req.name.as_deref().map(str::trim))
    .bind(req.description.as_deref().map(str::trim))
    .bind(req.enabled)
    .fetch_one(&mut *tx)
    .await?;
    Entry::new(
        None,
        &admin.actor(),
        "platform.provider_updated",
        "provider",
    )
    .target(&key)
    .old(&before)
    .new_value(&after)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// The feature matrix (ENT-006): every feature, every plan (active or not) with its values.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeatureMatrix {
    pub providers: Vec<ProviderInfo>,
    pub features: Vec<FeatureInfo>,
    pub plans: Vec<Plan>,
}

#[utoipa::path(get, path = "/api/v1/platform/plans", tag = "platform", security(("bearer" = [])),
    responses((status = 200, body = FeatureMatrix), (status = 403, body = Problem)))]
pub async fn feature_matrix(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<FeatureMatrix>> {
    Ok(Json(FeatureMatrix {
        providers: entitlements::providers(&state.db).await?,
        features: entitlements::features(&state.db).await?,
        plans: entitlements::plans(&state.db, false).await?,
    }))
}

fn check_features(v: &mut Validator, features: &BTreeMap<String, Value>) {
    for (key, value) in features {
        let field = format!("features.{key}");
        match Feature::parse(key) {
            None => {
                v.error(
                    &field,
                    format!("unknown feature; expected one of: {}", Feature::expected()),
                );
            }
            Some(f) => {
                if let Err(domain::Error::Validation(errors)) = f.check_value(&field, value) {
                    for e in errors {
                        v.error(&e.field, e.message);
                    }
                }
            }
        }
    }
}

fn check_plan_fields(
    v: &mut Validator,
    name: Option<&str>,
    description: Option<&str>,
    price: Option<i32>,
    stripe_price_id: Option<&str>,
    rank: Option<i32>,
) {
    if let Some(n) = name {
        v.text("name", n, 1, 100);
    }
    if let Some(d) = description {
        v.text("description", d, 0, 500);
    }
    if price.is_some_and(|p| !(0..=100_000_000).contains(&p)) {
        v.error("price_cents", "must be between 0 and 100000000");
    }
    if let Some(id) = stripe_price_id
        && (!id.starts_with("price_")
            || id.len() > 255
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        v.error("stripe_price_id", "must be a Stripe price id (price_…)");
    }
    if rank.is_some_and(|r| !(0..=1000).contains(&r)) {
        v.error("rank", "must be between 0 and 1000");
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlanRequest {
    /// n8n or make.
    #[schema(pattern = "^(n8n|make)$")]
    pub provider: String,
    /// Lowercase letters, digits, `-` and `_`, 2-40 characters; unique per provider.
    #[schema(pattern = "^[a-z][a-z0-9_-]{1,39}$")]
    pub key: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Minor units per interval; null: custom pricing.
    #[schema(minimum = 0, maximum = 100_000_000)]
    pub price_cents: Option<i32>,
    /// Lowercase ISO 4217 (default usd).
    #[schema(pattern = "^[a-z]{3}$")]
    pub currency: Option<String>,
    /// month (default) or year.
    #[schema(pattern = "^(month|year)$")]
    pub billing_interval: Option<String>,
    /// A Stripe price id (`price_…`).
    #[schema(pattern = "^price_[A-Za-z0-9_]+$", max_length = 255)]
    pub stripe_price_id: Option<String>,
    pub public: Option<bool>,
    #[schema(minimum = 0, maximum = 1000)]
    pub rank: Option<i32>,
    /// Feature → value; features left out are off (flags) or 0 (limits).
    #[schema(value_type = Object)]
    #[serde(default)]
    pub features: BTreeMap<String, Value>,
}

impl Validate for CreatePlanRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        check_provider(&mut v, "provider", &self.provider);
        let key_ok = (2..=40).contains(&self.key.len())
            && self.key.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !key_ok {
            v.error(
                "key",
                "2-40 lowercase letters, digits, `-` or `_`, starting with a letter",
            );
        }
        check_plan_fields(
            &mut v,
            Some(&self.name),
            self.description.as_deref(),
            self.price_cents,
            self.stripe_price_id.as_deref(),
            self.rank,
        );
        if let Some(c) = &self.currency
            && (c.len() != 3 || !c.chars().all(|c| c.is_ascii_lowercase()))
        {
            v.error("currency", "must be a lowercase ISO 4217 code such as usd");
        }
        if let Some(i) = &self.billing_interval
            && i != "month"
            && i != "year"
        {
            v.error("billing_interval", "must be month or year");
        }
        check_features(&mut v, &self.features);
        v.finish()
    }
}

/// Create a plan for a provider (ENT-007, ADMIN-008, ADMIN-014).
#[utoipa::path(post, path = "/api/v1/platform/plans", tag = "platform", security(("bearer" = [])),
    request_body = CreatePlanRequest,
    responses((status = 201, body = Plan), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_plan(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiJson(req): ApiJson<CreatePlanRequest>,
) -> ApiResult<(StatusCode, Json<Plan>)> {
    let mut tx = state.db.begin().await?;
    let id = new_id();
    sqlx::query(
        "insert into plans (id, provider, key, name, description, price_cents, currency, \
            billing_interval, stripe_price_id, public, rank) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(&req.provider)
    .bind(&req.key)
    .bind(req.name.trim())
    .bind(req.description.as_deref().map_or("", str::trim))
    .bind(req.price_cents)
    .bind(req.currency.as_deref().unwrap_or("usd"))
    .bind(req.billing_interval.as_deref().unwrap_or("month"))
    .bind(req.stripe_price_id.as_deref())
    .bind(req.public.unwrap_or(true))
    .bind(req.rank.unwrap_or(0))
    .execute(&mut *tx)
    .await
    .map_err(|e| match domain::error::unique_violation(&e) {
        Some(c) if c.contains("stripe_price") => domain::Error::conflict(
            "stripe_price_taken",
            "another plan already sells this Stripe price",
        ),
        Some(_) => domain::Error::conflict(
            "plan_key_taken",
            format!("{} already has a plan `{}`", req.provider, req.key),
        ),
        None => e.into(),
    })?;
    for feature in Feature::ALL {
        // Left out: off, or none; but the audit log is kept (null) rather than pruned.
        let value = req.features.get(feature.as_str()).cloned().unwrap_or(
            match (feature, feature.kind()) {
                (Feature::AuditRetentionDays, _) => Value::Null,
                (_, entitlements::FeatureKind::Flag) => Value::Bool(false),
                (_, entitlements::FeatureKind::Limit) => Value::from(0),
            },
        );
        set_feature(&mut tx, id, *feature, &value).await?;
    }
    let plan = entitlements::plan(&mut *tx, id).await?;
    Entry::new(None, &admin.actor(), "platform.plan_created", "plan")
        .target(id)
        .provider(&plan.provider)
        .new_value(&plan)
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(plan)))
}

async fn set_feature(
    tx: &mut sqlx::PgConnection,
    plan_id: Uuid,
    feature: Feature,
    value: &Value,
) -> Result<(), domain::Error> {
    sqlx::query(
        "insert into plan_features (plan_id, feature, value) values ($1, $2, $3) \
         on conflict (plan_id, feature) do update set value = excluded.value",
    )
    .bind(plan_id)
    .bind(feature.as_str())
    .bind(value)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanPatch {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Minor units per interval; null: custom pricing.
    #[serde(default, with = "serde_with_null")]
    #[schema(value_type = Option<i32>, minimum = 0, maximum = 100_000_000)]
    pub price_cents: Option<Option<i32>>,
    /// A Stripe price id (`price_…`); null: not sold by checkout.
    #[serde(default, with = "serde_with_null")]
    #[schema(value_type = Option<String>, pattern = "^price_[A-Za-z0-9_]+$", max_length = 255)]
    pub stripe_price_id: Option<Option<String>>,
    pub public: Option<bool>,
    /// false: can no longer be bought or assigned; subscriptions on it keep it.
    pub active: Option<bool>,
    #[schema(minimum = 0, maximum = 1000)]
    pub rank: Option<i32>,
    /// true: the provider's plan for tenants without a subscription (the previous default stops
    /// being one).
    pub is_default: Option<bool>,
    /// Features to change (feature → value); others stay.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub features: BTreeMap<String, Value>,
}

impl Validate for PlanPatch {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        check_plan_fields(
            &mut v,
            self.name.as_deref(),
            self.description.as_deref(),
            self.price_cents.flatten(),
            self.stripe_price_id.as_ref().and_then(|p| p.as_deref()),
            self.rank,
        );
        if self.is_default == Some(false) {
            v.error(
                "is_default",
                "make another plan the default instead (every provider has one)",
            );
        }
        check_features(&mut v, &self.features);
        v.finish()
    }
}

/// Change a plan: its offer, its price and Stripe price, and its features (ENT-007, ADMIN-008,
/// ADMIN-014). Audited with the plan before and after (ENT-010).
#[utoipa::path(patch, path = "/api/v1/platform/plans/{plan_id}", tag = "platform", security(("bearer" = [])),
    params(("plan_id" = Uuid, Path, description = "The plan's id")),
    request_body = PlanPatch,
    responses((status = 200, body = Plan), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn update_plan(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<PlanPatch>,
) -> ApiResult<Json<Plan>> {
    let mut tx = state.db.begin().await?;
    sqlx::query("select 1 from plans where id = $1 for update")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(domain::Error::not_found("plan"))?;
    let before = entitlements::plan(&mut *tx, id).await?;
    if req.active == Some(false) && before.is_default && req.is_default.is_none() {
        return Err(domain::Error::conflict(
            "default_plan",
            "the default plan cannot be deactivated: make another plan the default first",
        )
        .into());
    }
    if req.is_default == Some(true) {
        sqlx::query("update plans set is_default = false where provider = $1 and id <> $2")
            .bind(&before.provider)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(
        "update plans set name = coalesce($2, name), description = coalesce($3, description), \
         price_cents = case when $4 then $5 else price_cents end, \
         stripe_price_id = case when $6 then $7 else stripe_price_id end, \
         public = coalesce($8, public), active = coalesce($9, active), rank = coalesce($10, rank), \
         is_default = coalesce($11, is_default), updated_at = now() where id = $1",
    )
    .bind(id)
    .bind(req.name.as_deref().map(str::trim))
    .bind(req.description.as_deref().map(str::trim))
    .bind(req.price_cents.is_some())
    .bind(req.price_cents.flatten())
    .bind(req.stripe_price_id.is_some())
    .bind(req.stripe_price_id.clone().flatten())
    .bind(req.public)
    .bind(req.active)
    .bind(req.rank)
    .bind(req.is_default)
    .execute(&mut *tx)
    .await
    .map_err(|e| match domain::error::unique_violation(&e) {
        Some(_) => domain::Error::conflict(
            "stripe_price_taken",
            "another plan already sells this Stripe price",
        ),
        None => e.into(),
    })?;
    for (key, value) in &req.features {
        if let Some(feature) = Feature::parse(key) {
            set_feature(&mut tx, id, feature, value).await?;
        }
    }
    let after = entitlements::plan(&mut *tx, id).await?;
    if after.is_default && !after.active {
        return Err(
            domain::Error::conflict("default_plan", "the default plan must be active").into(),
        );
    }
    Entry::new(None, &admin.actor(), "platform.plan_updated", "plan")
        .target(id)
        .provider(&after.provider)
        .old(&before)
        .new_value(&after)
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(after))
}

// ---------------------------------------------------------------------------------------------
// Platform: a tenant's plans and overrides
// ---------------------------------------------------------------------------------------------

/// A tenant's entitlements, subscriptions and overrides, as support sees them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantPlans {
    pub entitlements: Entitlements,
    pub overrides: Vec<Override>,
}

#[utoipa::path(get, path = "/api/v1/platform/tenants/{tenant_id}/entitlements", tag = "platform", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "The tenant's id")),
    responses((status = 200, body = TenantPlans), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn tenant_entitlements(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiPath(tenant_id): ApiPath<Uuid>,
) -> ApiResult<Json<TenantPlans>> {
    let mut conn = state.db.acquire().await?;
    tenancy::tenant(&mut *conn, tenant_id).await?;
    Ok(Json(TenantPlans {
        entitlements: entitlements::entitlements(&mut conn, tenant_id).await?,
        overrides: entitlements::overrides(&mut *conn, tenant_id).await?,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignPlanRequest {
    /// The plan's key for this provider (e.g. `enterprise`).
    #[schema(min_length = 1, max_length = 40)]
    pub plan: String,
    /// Why (kept in the audit trail), 3-500 characters.
    #[schema(min_length = 3, max_length = 500)]
    pub reason: String,
}

impl Validate for AssignPlanRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("plan", &self.plan, 1, 40);
        v.text("reason", &self.reason, 3, 500);
        v.finish()
    }
}

/// Put a tenant on a plan by hand (custom-priced plans such as Agency and Enterprise, or a
/// courtesy) (ADMIN-014, PROV-006). Refused (409) while the tenant pays for that provider
/// through Stripe: cancel that subscription first.
#[utoipa::path(put, path = "/api/v1/platform/tenants/{tenant_id}/subscriptions/{provider}", tag = "platform", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "The tenant's id"), ("provider" = String, Path, description = "n8n or make")),
    request_body = AssignPlanRequest,
    responses((status = 200, body = Subscription), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn assign_plan(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath((tenant_id, provider)): ApiPath<(Uuid, String)>,
    ApiJson(req): ApiJson<AssignPlanRequest>,
) -> ApiResult<Json<Subscription>> {
    let mut tx = state.db.begin().await?;
    tenancy::tenant(&mut *tx, tenant_id).await?;
    let plan = entitlements::plan_by_key(&mut *tx, &provider, &req.plan).await?;
    let paying = entitlements::subscriptions(&mut *tx, tenant_id)
        .await?
        .into_iter()
        .any(|s| {
            s.provider == provider && s.stripe_subscription_id.is_some() && s.in_good_standing()
        });
    if paying {
        return Err(domain::Error::conflict(
            "stripe_subscription_active",
            "the tenant pays for this provider through Stripe: cancel that subscription first, or it would go on billing a plan the tenant no longer has",
        )
        .into());
    }
    if !plan.active {
        return Err(
            domain::Error::conflict("plan_inactive", "the plan is no longer offered").into(),
        );
    }
    let (before, after) =
        entitlements::set_subscription(&mut tx, tenant_id, &plan, &SubscriptionChange::manual())
            .await?;
    let actor = admin.actor();
    for tenant in [None, Some(tenant_id)] {
        Entry::new(tenant, &actor, "subscription.assigned", "subscription")
            .target(after.id)
            .provider(&provider)
            .old(&before)
            .new_value(&json!({"subscription": after, "reason": req.reason}))
            .record(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Json(after))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    #[schema(value_type = Feature)]
    pub feature: String,
    /// n8n or make; omitted or null: every provider (tenant-wide features: leave it out).
    #[schema(pattern = "^(n8n|make)$")]
    pub provider: Option<String>,
    /// true/false for flags; a number, or null for unlimited, for limits.
    #[schema(value_type = Value)]
    pub value: Value,
    /// Why (kept with it and in the audit trail), 3-500 characters.
    #[schema(min_length = 3, max_length = 500)]
    pub reason: String,
    /// When it lapses (ENT-009); omitted: until removed. Must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Validate for OverrideRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        match Feature::parse(&self.feature) {
            None => {
                v.error(
                    "feature",
                    format!("unknown feature; expected one of: {}", Feature::expected()),
                );
            }
            Some(f) => {
                if let Err(domain::Error::Validation(errors)) = f.check_value("value", &self.value)
                {
                    for e in errors {
                        v.error(&e.field, e.message);
                    }
                }
                if let Some(p) = &self.provider {
                    check_provider(&mut v, "provider", p);
                    if f.scope() == entitlements::FeatureScope::Tenant {
                        v.error(
                            "provider",
                            format!("`{f}` is tenant-wide: leave provider out"),
                        );
                    }
                }
            }
        }
        v.text("reason", &self.reason, 3, 500);
        if self.expires_at.is_some_and(|at| at <= Utc::now()) {
            v.error("expires_at", "must be in the future");
        }
        v.finish()
    }
}

/// Grant or restrict one feature for a tenant, optionally until a time (ENT-008, ENT-009);
/// replaces an override of the same feature and provider.
#[utoipa::path(post, path = "/api/v1/platform/tenants/{tenant_id}/overrides", tag = "platform", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "The tenant's id")),
    request_body = OverrideRequest,
    responses((status = 201, body = Override), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn put_override(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(tenant_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<OverrideRequest>,
) -> ApiResult<(StatusCode, Json<Override>)> {
    let feature = Feature::parse(&req.feature).ok_or(domain::Error::not_found("feature"))?;
    let mut tx = state.db.begin().await?;
    tenancy::tenant(&mut *tx, tenant_id).await?;
    let (before, after) = entitlements::put_override(
        &mut tx,
        tenant_id,
        &OverrideInput {
            provider: req.provider.as_deref(),
            feature,
            value: &req.value,
            reason: req.reason.trim(),
            expires_at: req.expires_at,
            created_by: Some(admin.user_id),
        },
    )
    .await?;
    let actor = admin.actor();
    for tenant in [None, Some(tenant_id)] {
        let mut entry = Entry::new(tenant, &actor, "entitlement.override_set", "override")
            .target(after.id)
            .old(&before)
            .new_value(&after);
        if let Some(p) = req.provider.as_deref() {
            entry = entry.provider(p);
        }
        entry.record(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(after)))
}

/// Remove an override: the plan's value applies again.
#[utoipa::path(delete, path = "/api/v1/platform/tenants/{tenant_id}/overrides/{override_id}", tag = "platform", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "The tenant's id"), ("override_id" = Uuid, Path, description = "The override's id")),
    responses((status = 204, description = "Removed"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_override(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath((tenant_id, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let removed = entitlements::delete_override(&mut *tx, tenant_id, id).await?;
    let actor = admin.actor();
    for tenant in [None, Some(tenant_id)] {
        Entry::new(tenant, &actor, "entitlement.override_removed", "override")
            .target(id)
            .old(&removed)
            .record(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionsQuery {
    pub provider: Option<String>,
    /// A plan key (free, pro, …).
    pub plan: Option<String>,
    pub status: Option<String>,
    /// 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    #[param(minimum = 0, maximum = 2_147_483_647)]
    pub offset: Option<u32>,
}

/// Every tenant's subscriptions, filtered (ADMIN-005).
#[utoipa::path(get, path = "/api/v1/platform/subscriptions", tag = "platform", security(("bearer" = [])),
    params(SubscriptionsQuery),
    responses((status = 200, body = Vec<Subscription>), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn all_subscriptions(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiQuery(q): ApiQuery<SubscriptionsQuery>,
) -> ApiResult<Json<Vec<Subscription>>> {
    let limit = crate::routes::catalog::page_limit(q.limit)?;
    Ok(Json(
        entitlements::all_subscriptions(
            &state.db,
            q.provider.as_deref(),
            q.plan.as_deref(),
            q.status.as_deref(),
            i64::from(limit),
            i64::from(q.offset.unwrap_or(0)),
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DenialsQuery {
    pub tenant_id: Option<Uuid>,
    pub feature: Option<String>,
    /// 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Only refusals older than this id (the last one of the previous page).
    pub before: Option<i64>,
}

/// Refused feature access, newest first (ENT-011): who asked for what their plan lacks.
#[utoipa::path(get, path = "/api/v1/platform/feature-denials", tag = "platform", security(("bearer" = [])),
    params(DenialsQuery),
    responses((status = 200, body = Vec<Denial>), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn denials(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiQuery(q): ApiQuery<DenialsQuery>,
) -> ApiResult<Json<Vec<Denial>>> {
    let limit = crate::routes::catalog::page_limit(q.limit)?;
    Ok(Json(
        entitlements::denials(
            &state.db,
            q.tenant_id,
            q.feature.as_deref(),
            i64::from(limit),
            q.before,
        )
        .await?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Platform: environment types every tenant starts with (ADMIN-015)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformTypeRequest {
    /// A short key, e.g. `uat`.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{1,62}$")]
    pub key: String,
    #[schema(min_length = 1, max_length = 100)]
    pub label: String,
    /// The class that decides this type's policies.
    pub class: domain::environments::EnvironmentClass,
    #[serde(default)]
    pub sort_order: i32,
    /// Also add it to every existing tenant that has no type with this key (default false: new
    /// tenants only).
    #[serde(default)]
    pub apply_to_existing: bool,
}

impl Validate for PlatformTypeRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.slug("key", &self.key);
        v.text("label", &self.label, 1, 100);
        v.finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlatformTypeCreated {
    #[serde(flatten)]
    pub environment_type: domain::environments::PlatformType,
    /// Existing tenants it was added to.
    pub tenants_updated: u64,
}

/// The environment types every new tenant starts with.
#[utoipa::path(get, path = "/api/v1/platform/environment-types", tag = "platform", security(("bearer" = [])),
    responses((status = 200, body = Vec<domain::environments::PlatformType>), (status = 403, body = Problem)))]
pub async fn list_platform_types(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<Vec<domain::environments::PlatformType>>> {
    Ok(Json(domain::environments::platform_types(&state.db).await?))
}

/// Add an environment type for every new tenant, and optionally every existing one (ADMIN-015).
#[utoipa::path(post, path = "/api/v1/platform/environment-types", tag = "platform", security(("bearer" = [])),
    request_body = PlatformTypeRequest,
    responses((status = 201, body = PlatformTypeCreated), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_platform_type(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiJson(req): ApiJson<PlatformTypeRequest>,
) -> ApiResult<(StatusCode, Json<PlatformTypeCreated>)> {
    let mut tx = state.db.begin().await?;
    let (created, tenants_updated) = domain::environments::create_platform_type(
        &mut tx,
        &req.key,
        req.label.trim(),
        req.class,
        req.sort_order,
        req.apply_to_existing,
    )
    .await?;
    Entry::new(
        None,
        &admin.actor(),
        "platform.environment_type_created",
        "environment_type",
    )
    .target(&created.key)
    .new_value(&json!({"type": created, "tenants_updated": tenants_updated}))
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(PlatformTypeCreated {
            environment_type: created,
            tenants_updated,
        }),
    ))
}

/// Stop giving new tenants a type (tenants keep theirs).
#[utoipa::path(delete, path = "/api/v1/platform/environment-types/{key}", tag = "platform", security(("bearer" = [])),
    params(("key" = String, Path, description = "The type's key")),
    responses((status = 204, description = "Removed"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_platform_type(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(key): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let removed = domain::environments::delete_platform_type(&mut *tx, &key).await?;
    Entry::new(
        None,
        &admin.actor(),
        "platform.environment_type_removed",
        "environment_type",
    )
    .target(&key)
    .old(&removed)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
