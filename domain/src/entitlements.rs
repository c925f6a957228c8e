//! Plans, subscriptions and entitlements (PROV-003/006/007/009/010, ENT-001..011, SEC-009).
//!
//! A tenant holds one subscription per provider; a plan grants features, either flags (on/off) or
//! limits (a number; `None` is unlimited). What a tenant may do with a provider is resolved here,
//! first match wins:
//!
//! 1. an unexpired override for that provider, then one for every provider (ENT-008/009);
//! 2. the plan of the tenant's subscription to that provider while the subscription is in good
//!    standing (active, trialing, past due);
//! 3. the provider's default plan (Free) otherwise: no subscription, or a canceled or unpaid one.
//!
//! Tenant-wide features (seats, alerting, the audit log) take the best value across providers.
//! A provider-scoped feature asked for without a provider (a view or setting that spans every
//! environment) needs the plan of every provider the tenant has environments with: see
//! [`Entitlements::grant`]. A stored value that does not fit its feature (a string, a negative
//! or fractional limit) grants nothing and is logged: entitlements fail closed.
//! The resolution is a pure function ([`resolve`]) over rows loaded in one go ([`load`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::new_id;

text_enum! {
    /// A feature a plan grants. Must match the `features` table (a test checks).
    pub enum Feature {
        Environments = "environments",
        Members = "members",
        AuditRetentionDays = "audit_retention_days",
        AuditLogs = "audit_logs",
        GitBackup = "git_backup",
        ScheduledBackups = "scheduled_backups",
        Promotions = "promotions",
        WorkflowDiff = "workflow_diff",
        DriftFullDiff = "drift_full_diff",
        DriftSla = "drift_sla",
        DriftPolicies = "drift_policies",
        ExecutionMetrics = "execution_metrics",
        Alerting = "alerting",
        CredentialRemapping = "credential_remapping",
        RoleBasedAccess = "role_based_access",
    }
}

text_enum! {
    pub enum FeatureKind { Flag = "flag", Limit = "limit" }
}

text_enum! {
    /// Whether a feature is granted per provider or once for the whole tenant.
    pub enum FeatureScope { Provider = "provider", Tenant = "tenant" }
}

text_enum! {
    pub enum SubscriptionSource {
        Auto = "auto",
        Checkout = "checkout",
        Manual = "manual",
        Grandfathered = "grandfathered",
    }
}

impl Feature {
    pub fn kind(self) -> FeatureKind {
        match self {
            Self::Environments | Self::Members | Self::AuditRetentionDays => FeatureKind::Limit,
            _ => FeatureKind::Flag,
        }
    }

    pub fn scope(self) -> FeatureScope {
        match self {
            Self::Members
            | Self::AuditRetentionDays
            | Self::AuditLogs
            | Self::Alerting
            | Self::RoleBasedAccess => FeatureScope::Tenant,
            _ => FeatureScope::Provider,
        }
    }

    /// Checks a value given for this feature: a boolean for flags, a whole number ≥ 0 or null
    /// (unlimited) for limits.
    pub fn check_value(self, field: &str, value: &Value) -> Result<()> {
        let ok = match self.kind() {
            FeatureKind::Flag => value.is_boolean(),
            FeatureKind::Limit => {
                value.is_null() || value.as_i64().is_some_and(|n| (0..=1_000_000).contains(&n))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(
                field,
                match self.kind() {
                    FeatureKind::Flag => format!("`{self}` is a flag: true or false"),
                    FeatureKind::Limit => format!(
                        "`{self}` is a limit: a whole number from 0 to 1000000, or null for unlimited"
                    ),
                },
            ))
        }
    }
}

/// A granted value: a flag, or a limit (`None` = unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Flag(bool),
    Limit(Option<i64>),
}

impl Grant {
    /// Reads a stored value: a boolean for flags; a whole number from 0, or null (unlimited),
    /// for limits. Anything else is malformed, and the reason says why.
    pub fn parse(feature: Feature, value: &Value) -> Result<Self, &'static str> {
        match (feature.kind(), value) {
            (FeatureKind::Flag, Value::Bool(on)) => Ok(Self::Flag(*on)),
            (FeatureKind::Flag, _) => Err("a flag must be true or false"),
            (FeatureKind::Limit, Value::Null) => Ok(Self::Limit(None)),
            (FeatureKind::Limit, Value::Number(n)) => match n.as_i64() {
                Some(n) if n >= 0 => Ok(Self::Limit(Some(n))),
                Some(_) => Err("a limit cannot be negative"),
                None => Err("a limit must be a whole number"),
            },
            (FeatureKind::Limit, _) => Err("a limit must be a whole number or null (unlimited)"),
        }
    }

    /// What grants nothing: a flag off, a limit of zero.
    fn nothing(feature: Feature) -> Self {
        match feature.kind() {
            FeatureKind::Flag => Self::Flag(false),
            FeatureKind::Limit => Self::Limit(Some(0)),
        }
    }

    /// [`Grant::parse`] of a value stored in a plan or an override, failing closed: a malformed
    /// value grants nothing (a limit of 0, a flag off) rather than everything, and is logged
    /// with where it is stored so that a platform admin can fix it.
    fn stored(feature: Feature, value: &Value, origin: &Origin<'_>) -> Self {
        Self::parse(feature, value).unwrap_or_else(|why| {
            tracing::warn!(
                feature = %feature, value = %value, origin = %origin,
                "a malformed entitlement value grants nothing: {why}; fix it in the {origin}"
            );
            Self::nothing(feature)
        })
    }

    /// A value [`resolve`] produced (always well formed).
    fn resolved(feature: Feature, value: &Value) -> Self {
        Self::parse(feature, value).unwrap_or_else(|_| Self::nothing(feature))
    }

    pub fn to_json(self) -> Value {
        match self {
            Self::Flag(on) => Value::Bool(on),
            Self::Limit(Some(n)) => Value::from(n),
            Self::Limit(None) => Value::Null,
        }
    }

    /// The more generous of two grants of the same feature.
    fn best(self, other: Self) -> Self {
        match (self, other) {
            (Self::Flag(a), Self::Flag(b)) => Self::Flag(a || b),
            (Self::Limit(None), _) | (_, Self::Limit(None)) => Self::Limit(None),
            (Self::Limit(Some(a)), Self::Limit(Some(b))) => Self::Limit(Some(a.max(b))),
            (a, _) => a,
        }
    }

    /// The less generous of two grants of the same feature.
    fn least(self, other: Self) -> Self {
        match (self, other) {
            (Self::Flag(a), Self::Flag(b)) => Self::Flag(a && b),
            (Self::Limit(None), b) => b,
            (a, Self::Limit(None)) => a,
            (Self::Limit(Some(a)), Self::Limit(Some(b))) => Self::Limit(Some(a.min(b))),
            (a, _) => a,
        }
    }

    fn allows(self) -> bool {
        match self {
            Self::Flag(on) => on,
            Self::Limit(n) => n != Some(0),
        }
    }
}

/// Where a stored value comes from, named when it is malformed.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    Plan(&'a Plan),
    Override(&'a Override),
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plan(p) => write!(f, "plan {}/{} ({})", p.provider, p.key, p.id),
            Self::Override(o) => write!(
                f,
                "override {} of tenant {} ({})",
                o.id,
                o.tenant_id,
                o.provider.as_deref().unwrap_or("every provider")
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct ProviderInfo {
    pub key: String,
    pub name: String,
    pub description: String,
    /// Disabled providers cannot be chosen for new environments (ADMIN-013).
    pub enabled: bool,
    pub sort: i32,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct FeatureInfo {
    pub key: String,
    pub kind: FeatureKind,
    pub scope: FeatureScope,
    pub name: String,
    pub description: String,
}

/// A plan with what it grants (`features`: feature → true/false, or a number/null for limits).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Plan {
    pub id: Uuid,
    pub provider: String,
    pub key: String,
    pub name: String,
    pub description: String,
    /// Price in minor units per interval; null: custom pricing (assigned by the platform).
    pub price_cents: Option<i32>,
    pub currency: String,
    pub billing_interval: String,
    /// The Stripe price checkout sells; null: not purchasable by checkout.
    pub stripe_price_id: Option<String>,
    /// The plan of tenants without a subscription in good standing (PROV-010).
    pub is_default: bool,
    /// Shown to tenants as an option.
    pub public: bool,
    pub active: bool,
    /// Order from cheapest to most capable.
    pub rank: i32,
    #[sqlx(json)]
    #[schema(value_type = Object)]
    pub features: BTreeMap<String, Value>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Subscription {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub provider: String,
    pub plan_id: Uuid,
    pub plan_key: String,
    pub plan_name: String,
    pub status: String,
    pub source: SubscriptionSource,
    pub stripe_subscription_id: Option<String>,
    #[serde(skip)]
    pub stripe_item_id: Option<String>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
    /// Whether the subscription's plan applies (a past-due one keeps it while Stripe retries).
    pub fn in_good_standing(&self) -> bool {
        matches!(self.status.as_str(), "active" | "trialing" | "past_due")
    }
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Override {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Null: every provider.
    pub provider: Option<String>,
    pub feature: String,
    #[schema(value_type = Value)]
    pub value: Option<Value>,
    pub reason: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl Override {
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------------------------

/// Where an effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantSource {
    Plan,
    Override,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EffectiveFeature {
    pub feature: Feature,
    pub kind: FeatureKind,
    /// true/false for flags; a number, or null for unlimited, for limits.
    #[schema(value_type = Value)]
    pub value: Value,
    pub source: GrantSource,
    pub override_expires_at: Option<DateTime<Utc>>,
}

/// What a tenant may do with one provider (PROV-003, PROV-009).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderEntitlements {
    pub provider: String,
    pub provider_enabled: bool,
    /// The plan in force (the subscription's, or the default plan).
    pub plan_key: String,
    pub plan_name: String,
    pub subscription: Option<Subscription>,
    pub features: Vec<EffectiveFeature>,
}

/// A tenant's entitlements (ENT-003): per provider, and tenant-wide.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Entitlements {
    pub tenant_id: Uuid,
    pub providers: Vec<ProviderEntitlements>,
    /// Tenant-scoped features: the best value across providers, or a tenant-wide override.
    pub tenant: Vec<EffectiveFeature>,
    /// The providers the tenant has environments with: what a check without a provider spans
    /// (see [`Entitlements::grant`]). `None` when they were not loaded ([`resolve`] alone):
    /// then such a check spans every provider.
    #[serde(skip)]
    pub environment_providers: Option<Vec<String>>,
}

impl Entitlements {
    /// These entitlements with the providers the tenant has environments with (what
    /// [`entitlements`] loads), for checks without a provider.
    #[must_use]
    pub fn spanning(mut self, environment_providers: Vec<String>) -> Self {
        self.environment_providers = Some(environment_providers);
        self
    }

    fn provider(&self, provider: &str) -> Option<&ProviderEntitlements> {
        self.providers.iter().find(|p| p.provider == provider)
    }

    fn value(features: &[EffectiveFeature], feature: Feature) -> Option<Grant> {
        features
            .iter()
            .find(|f| f.feature == feature)
            .map(|f| Grant::resolved(feature, &f.value))
    }

    /// The providers a provider-scoped check without a provider covers, and whether it needs
    /// all of them (`true`) or any one (`false`): see [`Entitlements::grant`].
    fn spanned(&self) -> (Vec<&ProviderEntitlements>, bool) {
        match &self.environment_providers {
            Some(used) if !used.is_empty() => (
                self.providers
                    .iter()
                    .filter(|p| used.contains(&p.provider))
                    .collect(),
                true,
            ),
            Some(_) => (self.providers.iter().collect(), false),
            None => (self.providers.iter().collect(), true),
        }
    }

    /// The grant of `feature` (ENT-001, PROV-003). The rule:
    ///
    /// - a tenant-wide feature (seats, alerting, the audit log): the tenant-wide value, whatever
    ///   `provider` says;
    /// - a provider-scoped feature for `Some(provider)`: that provider's plan (or override);
    /// - a provider-scoped feature for `None` — a view or a setting that spans every environment
    ///   (the observability overview, analytics over all environments, the drift policy):
    ///   the least generous grant among the providers the tenant has environments with. The
    ///   data or setting concerns each of those environments, so each one's plan must include
    ///   it: a Make Pro subscription does not open n8n environments' metrics. A tenant without
    ///   environments has nothing such a view could show or such a setting could govern yet,
    ///   so there the best plan across providers counts (a paying customer's first screens are
    ///   not refused for the free plan of a provider it does not use). When the environments
    ///   were not loaded (`environment_providers` is `None`), every provider's plan must grant
    ///   it.
    ///
    /// A caller that can name the provider (one environment, one pipeline) must pass it.
    pub fn grant(&self, feature: Feature, provider: Option<&str>) -> Grant {
        let none = Grant::nothing(feature);
        if feature.scope() == FeatureScope::Tenant {
            return Self::value(&self.tenant, feature).unwrap_or(none);
        }
        match provider {
            Some(p) => self
                .provider(p)
                .and_then(|e| Self::value(&e.features, feature))
                .unwrap_or(none),
            None => {
                let (spanned, all) = self.spanned();
                let grants = spanned
                    .iter()
                    .map(|e| Self::value(&e.features, feature).unwrap_or(none));
                if all {
                    grants.reduce(Grant::least)
                } else {
                    grants.reduce(Grant::best)
                }
                .unwrap_or(none)
            }
        }
    }

    pub fn allows(&self, feature: Feature, provider: Option<&str>) -> bool {
        self.grant(feature, provider).allows()
    }

    /// The limit of a limit feature (`None`: unlimited).
    pub fn limit(&self, feature: Feature, provider: Option<&str>) -> Option<i64> {
        match self.grant(feature, provider) {
            Grant::Limit(n) => n,
            Grant::Flag(_) => None,
        }
    }

    /// The providers whose plan leaves `feature` out, among those a check for `provider` covers
    /// (to name them when refusing): every provider for a tenant-wide feature that is not
    /// granted, none when it is granted.
    pub fn withholding(
        &self,
        feature: Feature,
        provider: Option<&str>,
    ) -> Vec<&ProviderEntitlements> {
        if self.allows(feature, provider) {
            return Vec::new();
        }
        if feature.scope() == FeatureScope::Tenant {
            return self.providers.iter().collect();
        }
        let covered = match provider {
            Some(p) => self.provider(p).into_iter().collect(),
            None => self.spanned().0,
        };
        covered
            .into_iter()
            .filter(|e| {
                !Self::value(&e.features, feature)
                    .unwrap_or(Grant::nothing(feature))
                    .allows()
            })
            .collect()
    }

    fn plan_of(&self, provider: Option<&str>) -> Option<&str> {
        match provider {
            Some(p) => self.provider(p).map(|e| e.plan_name.as_str()),
            None => None,
        }
    }
}

/// Everything [`resolve`] needs, loaded by [`load`].
#[derive(Debug, Clone)]
pub struct Inputs {
    pub providers: Vec<ProviderInfo>,
    pub plans: Vec<Plan>,
    pub subscriptions: Vec<Subscription>,
    pub overrides: Vec<Override>,
}

/// Resolves a tenant's entitlements at `now` (pure: see the module's rules).
pub fn resolve(tenant_id: Uuid, inputs: &Inputs, now: DateTime<Utc>) -> Entitlements {
    let active: Vec<&Override> = inputs
        .overrides
        .iter()
        .filter(|o| o.active_at(now))
        .collect();
    let override_for = |feature: Feature, provider: Option<&str>| {
        active
            .iter()
            .find(|o| o.feature == feature.as_str() && o.provider.as_deref() == provider)
            .or_else(|| {
                active
                    .iter()
                    .find(|o| o.feature == feature.as_str() && o.provider.is_none())
            })
            .copied()
    };
    let effective = |feature: Feature, plan: Option<&Plan>, provider: Option<&str>| {
        if let Some(o) = override_for(feature, provider) {
            let value = o.value.clone().unwrap_or(Value::Null);
            return EffectiveFeature {
                feature,
                kind: feature.kind(),
                value: Grant::stored(feature, &value, &Origin::Override(o)).to_json(),
                source: GrantSource::Override,
                override_expires_at: o.expires_at,
            };
        }
        let value = plan
            .and_then(|p| Some((p, p.features.get(feature.as_str())?)))
            .map_or(Grant::nothing(feature), |(p, v)| {
                Grant::stored(feature, v, &Origin::Plan(p))
            });
        EffectiveFeature {
            feature,
            kind: feature.kind(),
            value: value.to_json(),
            source: GrantSource::Plan,
            override_expires_at: None,
        }
    };

    let mut providers = Vec::new();
    let mut tenant_best: BTreeMap<&'static str, Grant> = BTreeMap::new();
    for provider in &inputs.providers {
        let subscription = inputs
            .subscriptions
            .iter()
            .find(|s| s.provider == provider.key)
            .cloned();
        let plan = subscription
            .as_ref()
            .filter(|s| s.in_good_standing())
            .and_then(|s| inputs.plans.iter().find(|p| p.id == s.plan_id))
            .or_else(|| {
                inputs
                    .plans
                    .iter()
                    .find(|p| p.provider == provider.key && p.is_default)
            });
        let features = Feature::ALL
            .iter()
            .filter(|f| f.scope() == FeatureScope::Provider)
            .map(|&f| effective(f, plan, Some(&provider.key)))
            .collect();
        for &f in Feature::ALL
            .iter()
            .filter(|f| f.scope() == FeatureScope::Tenant)
        {
            let grant = plan
                .and_then(|p| Some((p, p.features.get(f.as_str())?)))
                .map(|(p, v)| Grant::stored(f, v, &Origin::Plan(p)));
            if let Some(grant) = grant {
                tenant_best
                    .entry(f.as_str())
                    .and_modify(|g| *g = g.best(grant))
                    .or_insert(grant);
            }
        }
        providers.push(ProviderEntitlements {
            provider: provider.key.clone(),
            provider_enabled: provider.enabled,
            plan_key: plan.map(|p| p.key.clone()).unwrap_or_default(),
            plan_name: plan.map(|p| p.name.clone()).unwrap_or_default(),
            subscription,
            features,
        });
    }
    let tenant = Feature::ALL
        .iter()
        .filter(|f| f.scope() == FeatureScope::Tenant)
        .map(|&f| match override_for(f, None) {
            Some(_) => effective(f, None, None),
            None => EffectiveFeature {
                feature: f,
                kind: f.kind(),
                value: tenant_best
                    .get(f.as_str())
                    .copied()
                    .unwrap_or(Grant::nothing(f))
                    .to_json(),
                source: GrantSource::Plan,
                override_expires_at: None,
            },
        })
        .collect();
    Entitlements {
        tenant_id,
        providers,
        tenant,
        environment_providers: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

const PLAN_SELECT: &str = "select p.id, p.provider, p.key, p.name, p.description, p.price_cents, \
     p.currency, p.billing_interval, p.stripe_price_id, p.is_default, p.public, p.active, p.rank, \
     coalesce((select jsonb_object_agg(f.feature, f.value) from plan_features f where f.plan_id = p.id), \
              '{}'::jsonb) as features, p.updated_at \
     from plans p";

const SUBSCRIPTION_SELECT: &str = "select s.id, s.tenant_id, s.provider, s.plan_id, \
     p.key as plan_key, p.name as plan_name, s.status, s.source, s.stripe_subscription_id, \
     s.stripe_item_id, s.current_period_end, s.cancel_at_period_end, s.created_at, s.updated_at \
     from tenant_subscriptions s join plans p on p.id = s.plan_id";

const OVERRIDE_COLUMNS: &str =
    "id, tenant_id, provider, feature, value, reason, expires_at, created_by, created_at";

pub async fn providers(db: impl PgExecutor<'_>) -> Result<Vec<ProviderInfo>> {
    Ok(sqlx::query_as(
        "select key, name, description, enabled, sort, updated_at from providers order by sort, key",
    )
    .fetch_all(db)
    .await?)
}

pub async fn features(db: impl PgExecutor<'_>) -> Result<Vec<FeatureInfo>> {
    Ok(
        sqlx::query_as("select key, kind, scope, name, description from features order by sort")
            .fetch_all(db)
            .await?,
    )
}

/// Every plan (platform view), or only the active public ones of a provider (tenant view).
pub async fn plans(db: impl PgExecutor<'_>, public_only: bool) -> Result<Vec<Plan>> {
    Ok(sqlx::query_as(sqlf!(
        "{PLAN_SELECT} where not $1 or (p.public and p.active) order by p.provider, p.rank, p.key"
    ))
    .bind(public_only)
    .fetch_all(db)
    .await?)
}

pub async fn plan(db: impl PgExecutor<'_>, id: Uuid) -> Result<Plan> {
    sqlx::query_as(sqlf!("{PLAN_SELECT} where p.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(Error::not_found("plan"))
}

pub async fn plan_by_key(db: impl PgExecutor<'_>, provider: &str, key: &str) -> Result<Plan> {
    sqlx::query_as(sqlf!("{PLAN_SELECT} where p.provider = $1 and p.key = $2"))
        .bind(provider)
        .bind(key)
        .fetch_optional(db)
        .await?
        .ok_or(Error::not_found("plan"))
}

pub async fn plan_by_stripe_price(db: impl PgExecutor<'_>, price: &str) -> Result<Option<Plan>> {
    Ok(
        sqlx::query_as(sqlf!("{PLAN_SELECT} where p.stripe_price_id = $1"))
            .bind(price)
            .fetch_optional(db)
            .await?,
    )
}

pub async fn subscriptions(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<Vec<Subscription>> {
    Ok(sqlx::query_as(sqlf!(
        "{SUBSCRIPTION_SELECT} where s.tenant_id = $1 order by s.provider"
    ))
    .bind(tenant_id)
    .fetch_all(db)
    .await?)
}

pub async fn subscription_by_stripe_id(
    db: impl PgExecutor<'_>,
    stripe_subscription_id: &str,
) -> Result<Option<Subscription>> {
    Ok(sqlx::query_as(sqlf!(
        "{SUBSCRIPTION_SELECT} where s.stripe_subscription_id = $1"
    ))
    .bind(stripe_subscription_id)
    .fetch_optional(db)
    .await?)
}

/// Every subscription on the platform, filtered by provider, plan key and status (ADMIN-005).
pub async fn all_subscriptions(
    db: impl PgExecutor<'_>,
    provider: Option<&str>,
    plan_key: Option<&str>,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Subscription>> {
    Ok(sqlx::query_as(sqlf!(
        "{SUBSCRIPTION_SELECT} where ($1::text is null or s.provider = $1) \
         and ($2::text is null or p.key = $2) and ($3::text is null or s.status = $3) \
         order by s.updated_at desc, s.id limit $4 offset $5"
    ))
    .bind(provider)
    .bind(plan_key)
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?)
}

pub async fn overrides(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<Vec<Override>> {
    Ok(sqlx::query_as(sqlf!(
        "select {OVERRIDE_COLUMNS} from tenant_feature_overrides where tenant_id = $1 \
         order by feature, provider nulls first"
    ))
    .bind(tenant_id)
    .fetch_all(db)
    .await?)
}

/// Every override of every tenant (the platform's views resolve many tenants at once).
pub async fn all_overrides(db: impl PgExecutor<'_>) -> Result<Vec<Override>> {
    Ok(sqlx::query_as(sqlf!(
        "select {OVERRIDE_COLUMNS} from tenant_feature_overrides"
    ))
    .fetch_all(db)
    .await?)
}

/// Loads what [`resolve`] needs for one tenant (four small queries on one connection).
pub async fn load(db: &mut sqlx::PgConnection, tenant_id: Uuid) -> Result<Inputs> {
    let providers = providers(&mut *db).await?;
    let subscriptions = subscriptions(&mut *db, tenant_id).await?;
    let plans: Vec<Plan> = sqlx::query_as(sqlf!(
        "{PLAN_SELECT} where p.is_default or p.id in \
         (select plan_id from tenant_subscriptions where tenant_id = $1)"
    ))
    .bind(tenant_id)
    .fetch_all(&mut *db)
    .await?;
    let overrides = overrides(&mut *db, tenant_id).await?;
    Ok(Inputs {
        providers,
        plans,
        subscriptions,
        overrides,
    })
}

/// Loads what [`resolve`] needs for many tenants at once, in four queries however many there
/// are (the sweeps that judge every tenant): each of `tenants` gets its own subscriptions and
/// overrides, and every plan (resolution only looks at the ones it subscribes to and the
/// defaults).
pub async fn load_many(
    db: &mut sqlx::PgConnection,
    tenants: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Inputs>> {
    let providers = providers(&mut *db).await?;
    let plans = plans(&mut *db, false).await?;
    let subscriptions: Vec<Subscription> = sqlx::query_as(sqlf!(
        "{SUBSCRIPTION_SELECT} where s.tenant_id = any($1) order by s.provider"
    ))
    .bind(tenants)
    .fetch_all(&mut *db)
    .await?;
    let overrides: Vec<Override> = sqlx::query_as(sqlf!(
        "select {OVERRIDE_COLUMNS} from tenant_feature_overrides where tenant_id = any($1) \
         order by feature, provider nulls first"
    ))
    .bind(tenants)
    .fetch_all(&mut *db)
    .await?;
    let mut out: std::collections::HashMap<Uuid, Inputs> = tenants
        .iter()
        .map(|t| {
            let inputs = Inputs {
                providers: providers.clone(),
                plans: plans.clone(),
                subscriptions: Vec::new(),
                overrides: Vec::new(),
            };
            (*t, inputs)
        })
        .collect();
    for s in subscriptions {
        if let Some(inputs) = out.get_mut(&s.tenant_id) {
            inputs.subscriptions.push(s);
        }
    }
    for o in overrides {
        if let Some(inputs) = out.get_mut(&o.tenant_id) {
            inputs.overrides.push(o);
        }
    }
    Ok(out)
}

/// The providers `tenant_id` has environments with, in no particular order.
pub async fn environment_providers(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("select distinct provider from environments where tenant_id = $1")
            .bind(tenant_id)
            .fetch_all(db)
            .await?,
    )
}

/// A tenant's entitlements now, with the providers it has environments with (for checks
/// without a provider, see [`Entitlements::grant`]): five small queries on one connection.
pub async fn entitlements(db: &mut sqlx::PgConnection, tenant_id: Uuid) -> Result<Entitlements> {
    let inputs = load(db, tenant_id).await?;
    let used = environment_providers(&mut *db, tenant_id).await?;
    Ok(resolve(tenant_id, &inputs, Utc::now()).spanning(used))
}

/// How many environments a tenant may connect per provider (ENV-008), loaded once for a whole
/// request: the tenant's own limit set by a platform admin (ADMIN-006) for every provider, else
/// the plan's (or an override's) for each; an unlimited plan is capped at the server's `cap`
/// (`WFO_MAX_ENVIRONMENTS`).
#[derive(Debug, Clone)]
pub struct EnvironmentLimits {
    own: Option<i64>,
    entitlements: Entitlements,
    cap: i64,
}

impl EnvironmentLimits {
    /// One look at the tenant's own limit and one resolution of its plans (five queries), however
    /// many providers are asked about afterwards.
    pub async fn load(db: &mut sqlx::PgConnection, tenant_id: Uuid, cap: i64) -> Result<Self> {
        let own: Option<i32> =
            sqlx::query_scalar("select environment_limit from tenants where id = $1")
                .bind(tenant_id)
                .fetch_optional(&mut *db)
                .await?
                .flatten();
        // Limits are asked per provider: the tenant's environments are not needed.
        let inputs = load(&mut *db, tenant_id).await?;
        Ok(Self::new(
            own.map(i64::from),
            resolve(tenant_id, &inputs, Utc::now()),
            cap,
        ))
    }

    /// From values already at hand (`own`: the tenant's own limit, ADMIN-006).
    pub fn new(own: Option<i64>, entitlements: Entitlements, cap: i64) -> Self {
        Self {
            own,
            entitlements,
            cap,
        }
    }

    /// The limit for `provider`.
    pub fn of(&self, provider: &str) -> i64 {
        self.own.unwrap_or_else(|| {
            self.entitlements
                .limit(Feature::Environments, Some(provider))
                .map_or(self.cap, |n| n.min(self.cap))
        })
    }

    /// Every provider, in the platform's order.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.entitlements
            .providers
            .iter()
            .map(|p| p.provider.as_str())
    }
}

/// How many seats (members + open invitations) `tenant_id` has (TEAM-005): the tenant's own
/// limit (ADMIN-006), else the best plan's; `None` = unlimited.
pub async fn member_limit(db: &mut sqlx::PgConnection, tenant_id: Uuid) -> Result<Option<i64>> {
    let own: Option<i32> = sqlx::query_scalar("select member_limit from tenants where id = $1")
        .bind(tenant_id)
        .fetch_optional(&mut *db)
        .await?
        .flatten();
    if let Some(own) = own {
        return Ok(Some(i64::from(own)));
    }
    Ok(entitlements(&mut *db, tenant_id)
        .await?
        .limit(Feature::Members, None))
}

/// Who asked for what, for the refusal log (ENT-011).
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub tenant_id: Uuid,
    pub user_id: Option<Uuid>,
    pub action: &'a str,
}

/// Refuses (403 `feature_not_in_plan`, logged in `feature_denials`) unless the tenant's plan for
/// `provider` grants `feature`; for `None`, see [`Entitlements::grant`] (every provider the
/// tenant has environments with). The message names the plan in force of the provider that
/// refuses, and the cheapest plan that includes it (ENT-005); the refusal is logged against
/// that provider.
pub async fn require(
    db: &mut sqlx::PgConnection,
    asker: Asker<'_>,
    feature: Feature,
    provider: Option<&str>,
) -> Result<()> {
    let ent = entitlements(&mut *db, asker.tenant_id).await?;
    if ent.allows(feature, provider) {
        return Ok(());
    }
    let refusing: Option<String> = match (provider, feature.scope()) {
        (Some(p), _) => Some(p.to_owned()),
        (None, FeatureScope::Provider) => ent
            .withholding(feature, None)
            .first()
            .map(|p| p.provider.clone()),
        (None, FeatureScope::Tenant) => None,
    };
    let refusing = refusing.as_deref();
    record_denial(&mut *db, asker, feature, refusing).await?;
    let needed: Option<String> = sqlx::query_scalar(
        "select p.name from plans p join plan_features f on f.plan_id = p.id \
         where f.feature = $1 and ($2::text is null or p.provider = $2) and p.active and p.public \
           and (f.value = 'true'::jsonb or (jsonb_typeof(f.value) = 'number' and f.value::text ~ '^[1-9][0-9]*$') \
                or f.value = 'null'::jsonb) \
         order by p.rank limit 1",
    )
    .bind(feature.as_str())
    .bind(refusing)
    .fetch_optional(&mut *db)
    .await?;
    let current = match refusing {
        Some(_) => ent
            .plan_of(refusing)
            .map(|p| format!(" (current plan: {p})"))
            .unwrap_or_default(),
        // A tenant-wide feature: every provider's plan, none of which includes it.
        None => {
            let plans: Vec<String> = ent
                .providers
                .iter()
                .filter(|p| p.provider_enabled)
                .map(|p| format!("{} for {}", p.plan_name, p.provider))
                .collect();
            if plans.is_empty() {
                String::new()
            } else {
                format!(" (current plans: {})", plans.join(", "))
            }
            // e.g. "your plan (current plans: Free for n8n, Free for make) does not include …"
        }
    };
    // A check spanning several providers names the one whose plan refuses.
    let whose = match (provider, refusing) {
        (None, Some(p)) => format!("{p} "),
        _ => String::new(),
    };
    let upgrade = needed
        .map(|p| format!("; the {p} plan includes it"))
        .unwrap_or_default();
    Err(Error::Forbidden {
        code: "feature_not_in_plan",
        message: format!(
            "your {whose}plan{current} does not include {}{upgrade}",
            feature_label(feature)
        ),
    })
}

fn feature_label(feature: Feature) -> &'static str {
    match feature {
        Feature::Environments => "more environments",
        Feature::Members => "more team members",
        Feature::AuditRetentionDays => "longer audit retention",
        Feature::AuditLogs => "audit logs",
        Feature::GitBackup => "Git backup and restore",
        Feature::ScheduledBackups => "scheduled backups",
        Feature::Promotions => "environment promotion",
        Feature::WorkflowDiff => "workflow diff",
        Feature::DriftFullDiff => "the full drift diff",
        Feature::DriftSla => "drift TTL/SLA",
        Feature::DriftPolicies => "drift policies",
        Feature::ExecutionMetrics => "execution metrics",
        Feature::Alerting => "alerting",
        Feature::CredentialRemapping => "credential remapping",
        Feature::RoleBasedAccess => "role-based access (viewer and developer roles)",
    }
}

/// Logs a refused feature (ENT-011); also used for limits reached.
pub async fn record_denial(
    db: impl PgExecutor<'_>,
    asker: Asker<'_>,
    feature: Feature,
    provider: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "insert into feature_denials (tenant_id, user_id, feature, provider, action) \
         values ($1, $2, $3, $4, $5)",
    )
    .bind(asker.tenant_id)
    .bind(asker.user_id)
    .bind(feature.as_str())
    .bind(provider)
    .bind(asker.action)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Denial {
    pub id: i64,
    pub tenant_id: Uuid,
    pub user_id: Option<Uuid>,
    pub user_email: Option<String>,
    pub feature: String,
    pub provider: Option<String>,
    pub action: String,
    pub at: DateTime<Utc>,
}

/// Refusals, newest first, for one tenant or all (ENT-011).
pub async fn denials(
    db: impl PgExecutor<'_>,
    tenant_id: Option<Uuid>,
    feature: Option<&str>,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<Denial>> {
    Ok(sqlx::query_as(
        "select d.id, d.tenant_id, d.user_id, u.email as user_email, d.feature, d.provider, \
         d.action, d.at from feature_denials d left join users u on u.id = d.user_id \
         where ($1::uuid is null or d.tenant_id = $1) and ($2::text is null or d.feature = $2) \
           and ($4::bigint is null or d.id < $4) \
         order by d.id desc limit $3",
    )
    .bind(tenant_id)
    .bind(feature)
    .bind(limit)
    .bind(before)
    .fetch_all(db)
    .await?)
}

// ---------------------------------------------------------------------------------------------
// Changes
// ---------------------------------------------------------------------------------------------

/// Puts `tenant_id` on `plan` for its provider (a manual assignment, a checkout, or a webhook's
/// change); returns the subscription before (if any) and after.
pub async fn set_subscription(
    db: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    plan: &Plan,
    change: &SubscriptionChange<'_>,
) -> Result<(Option<Subscription>, Subscription)> {
    let before: Option<Subscription> = sqlx::query_as(sqlf!(
        "{SUBSCRIPTION_SELECT} where s.tenant_id = $1 and s.provider = $2 for update of s"
    ))
    .bind(tenant_id)
    .bind(&plan.provider)
    .fetch_optional(&mut *db)
    .await?;
    sqlx::query(
        "insert into tenant_subscriptions (id, tenant_id, provider, plan_id, status, source, \
            stripe_subscription_id, stripe_item_id, current_period_end, cancel_at_period_end) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         on conflict (tenant_id, provider) do update set plan_id = excluded.plan_id, \
            status = excluded.status, source = excluded.source, \
            stripe_subscription_id = excluded.stripe_subscription_id, \
            stripe_item_id = excluded.stripe_item_id, \
            current_period_end = excluded.current_period_end, \
            cancel_at_period_end = excluded.cancel_at_period_end, updated_at = now()",
    )
    .bind(new_id())
    .bind(tenant_id)
    .bind(&plan.provider)
    .bind(plan.id)
    .bind(change.status)
    .bind(change.source)
    .bind(change.stripe_subscription_id)
    .bind(change.stripe_item_id)
    .bind(change.current_period_end)
    .bind(change.cancel_at_period_end)
    .execute(&mut *db)
    .await?;
    let after = sqlx::query_as(sqlf!(
        "{SUBSCRIPTION_SELECT} where s.tenant_id = $1 and s.provider = $2"
    ))
    .bind(tenant_id)
    .bind(&plan.provider)
    .fetch_one(&mut *db)
    .await?;
    Ok((before, after))
}

#[derive(Debug, Clone, Copy)]
pub struct SubscriptionChange<'a> {
    pub status: &'a str,
    pub source: SubscriptionSource,
    pub stripe_subscription_id: Option<&'a str>,
    pub stripe_item_id: Option<&'a str>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
}

impl SubscriptionChange<'static> {
    pub fn manual() -> Self {
        Self {
            status: "active",
            source: SubscriptionSource::Manual,
            stripe_subscription_id: None,
            stripe_item_id: None,
            current_period_end: None,
            cancel_at_period_end: false,
        }
    }
}

/// Sets (or replaces) an override; returns it with the one it replaced.
pub async fn put_override(
    db: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    input: &OverrideInput<'_>,
) -> Result<(Option<Override>, Override)> {
    let before: Option<Override> = sqlx::query_as(sqlf!(
        "delete from tenant_feature_overrides where tenant_id = $1 \
         and coalesce(provider, '') = coalesce($2, '') and feature = $3 returning {OVERRIDE_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(input.provider)
    .bind(input.feature.as_str())
    .fetch_optional(&mut *db)
    .await?;
    let after = sqlx::query_as(sqlf!(
        "insert into tenant_feature_overrides (id, tenant_id, provider, feature, value, reason, \
            expires_at, created_by) values ($1, $2, $3, $4, $5, $6, $7, $8) \
         returning {OVERRIDE_COLUMNS}"
    ))
    .bind(new_id())
    .bind(tenant_id)
    .bind(input.provider)
    .bind(input.feature.as_str())
    .bind(input.value)
    .bind(input.reason)
    .bind(input.expires_at)
    .bind(input.created_by)
    .fetch_one(&mut *db)
    .await?;
    Ok((before, after))
}

#[derive(Debug, Clone, Copy)]
pub struct OverrideInput<'a> {
    pub provider: Option<&'a str>,
    pub feature: Feature,
    pub value: &'a Value,
    pub reason: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
}

pub async fn delete_override(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Override> {
    sqlx::query_as(sqlf!(
        "delete from tenant_feature_overrides where tenant_id = $1 and id = $2 \
         returning {OVERRIDE_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("override"))
}

/// Removes overrides that expired (ENT-009) and returns them, for the audit trail.
pub async fn expire_overrides(db: impl PgExecutor<'_>) -> Result<Vec<Override>> {
    Ok(sqlx::query_as(sqlf!(
        "delete from tenant_feature_overrides where expires_at <= now() returning {OVERRIDE_COLUMNS}"
    ))
    .fetch_all(db)
    .await?)
}

/// Prunes each tenant's audit log to its plan's retention (SEC-009): the best
/// `audit_retention_days` across its subscriptions in good standing (or the default plans), a
/// tenant-wide override first; never fewer than seven days. A tenant whose subscriptions changed
/// in the last 30 days is left alone for now: a downgrade (or a cancellation) does not erase its
/// history at once, and an upgrade back within the month finds it whole. Returns the rows
/// deleted.
pub async fn prune_audit_by_plan(db: &sqlx::PgPool) -> Result<u64> {
    let tenants: Vec<Uuid> = sqlx::query_scalar(
        "select id from tenants t where not exists (select 1 from tenant_subscriptions s \
         where s.tenant_id = t.id and s.updated_at > now() - interval '30 days')",
    )
    .fetch_all(db)
    .await?;
    let mut deleted = 0;
    for tenant_id in tenants {
        let mut conn = db.acquire().await?;
        let ent = entitlements(&mut conn, tenant_id).await?;
        if let Some(days) = ent.limit(Feature::AuditRetentionDays, None) {
            deleted += sqlx::query(
                "delete from audit_logs where tenant_id = $1 \
                 and occurred_at < now() - make_interval(days => $2)",
            )
            .bind(tenant_id)
            .bind(i32::try_from(days.max(7)).unwrap_or(i32::MAX))
            .execute(&mut *conn)
            .await?
            .rows_affected();
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(provider: &str, key: &str, default: bool, features: Value) -> Plan {
        Plan {
            id: Uuid::new_v4(),
            provider: provider.into(),
            key: key.into(),
            name: key.to_uppercase(),
            description: String::new(),
            price_cents: None,
            currency: "usd".into(),
            billing_interval: "month".into(),
            stripe_price_id: None,
            is_default: default,
            public: true,
            active: true,
            rank: 0,
            features: serde_json::from_value(features).expect("features"),
            updated_at: Utc::now(),
        }
    }

    fn provider(key: &str) -> ProviderInfo {
        ProviderInfo {
            key: key.into(),
            name: key.into(),
            description: String::new(),
            enabled: true,
            sort: 0,
            updated_at: Utc::now(),
        }
    }

    fn subscription(tenant: Uuid, plan: &Plan, status: &str) -> Subscription {
        Subscription {
            id: Uuid::new_v4(),
            tenant_id: tenant,
            provider: plan.provider.clone(),
            plan_id: plan.id,
            plan_key: plan.key.clone(),
            plan_name: plan.name.clone(),
            status: status.into(),
            source: SubscriptionSource::Checkout,
            stripe_subscription_id: None,
            stripe_item_id: None,
            current_period_end: None,
            cancel_at_period_end: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn over(
        tenant: Uuid,
        provider: Option<&str>,
        feature: Feature,
        value: Value,
        expires: Option<DateTime<Utc>>,
    ) -> Override {
        Override {
            id: Uuid::new_v4(),
            tenant_id: tenant,
            provider: provider.map(Into::into),
            feature: feature.as_str().into(),
            value: Some(value),
            reason: "test".into(),
            expires_at: expires,
            created_by: None,
            created_at: Utc::now(),
        }
    }

    fn fixture() -> (Uuid, Inputs, Plan) {
        let tenant = Uuid::new_v4();
        let free = plan(
            "n8n",
            "free",
            true,
            json!({"environments": 2, "members": 3, "promotions": false, "audit_retention_days": 30}),
        );
        let pro = plan(
            "n8n",
            "pro",
            false,
            json!({"environments": 10, "members": 10, "promotions": true, "audit_retention_days": 90}),
        );
        let make_free = plan(
            "make",
            "free",
            true,
            json!({"environments": 1, "members": 5, "promotions": false, "audit_retention_days": null}),
        );
        let inputs = Inputs {
            providers: vec![provider("n8n"), provider("make")],
            plans: vec![free, pro.clone(), make_free],
            subscriptions: vec![],
            overrides: vec![],
        };
        (tenant, inputs, pro)
    }

    #[test]
    fn without_a_subscription_the_default_plan_applies() {
        let (tenant, inputs, _) = fixture();
        let ent = resolve(tenant, &inputs, Utc::now());
        assert_eq!(ent.limit(Feature::Environments, Some("n8n")), Some(2));
        assert!(!ent.allows(Feature::Promotions, Some("n8n")));
        assert_eq!(ent.providers[0].plan_key, "free");
    }

    #[test]
    fn a_subscription_in_good_standing_grants_its_plan_and_a_canceled_one_does_not() {
        let (tenant, mut inputs, pro) = fixture();
        inputs.subscriptions = vec![subscription(tenant, &pro, "past_due")];
        let ent = resolve(tenant, &inputs, Utc::now());
        assert!(ent.allows(Feature::Promotions, Some("n8n")));
        assert_eq!(ent.limit(Feature::Environments, Some("n8n")), Some(10));
        assert!(
            !ent.allows(Feature::Promotions, Some("make")),
            "another provider's plan"
        );
        inputs.subscriptions = vec![subscription(tenant, &pro, "canceled")];
        let ent = resolve(tenant, &inputs, Utc::now());
        assert!(!ent.allows(Feature::Promotions, Some("n8n")));
        assert_eq!(ent.providers[0].plan_key, "free");
    }

    #[test]
    fn tenant_features_take_the_best_value_across_providers() {
        let (tenant, mut inputs, pro) = fixture();
        inputs.subscriptions = vec![subscription(tenant, &pro, "active")];
        let ent = resolve(tenant, &inputs, Utc::now());
        assert_eq!(ent.limit(Feature::Members, None), Some(10));
        assert_eq!(
            ent.limit(Feature::AuditRetentionDays, None),
            None,
            "make's free is unlimited"
        );
    }

    // L4: a Pro subscription to one provider does not open views spanning another's environments.
    #[test]
    fn a_check_without_a_provider_needs_the_plan_of_every_provider_with_environments() {
        let (tenant, mut inputs, pro) = fixture();
        inputs.subscriptions = vec![subscription(tenant, &pro, "active")];
        let resolved = resolve(tenant, &inputs, Utc::now());
        assert!(resolved.allows(Feature::Promotions, Some("n8n")));

        let n8n_only = resolved.clone().spanning(vec!["n8n".into()]);
        assert!(n8n_only.allows(Feature::Promotions, None));
        assert!(n8n_only.withholding(Feature::Promotions, None).is_empty());

        let both = resolved.clone().spanning(vec!["make".into(), "n8n".into()]);
        assert!(
            !both.allows(Feature::Promotions, None),
            "make's environments are on its free plan"
        );
        let refusing: Vec<&str> = both
            .withholding(Feature::Promotions, None)
            .iter()
            .map(|p| p.provider.as_str())
            .collect();
        assert_eq!(refusing, ["make"]);
        assert_eq!(
            both.limit(Feature::Environments, None),
            Some(1),
            "the least generous"
        );

        let make_only = resolved.clone().spanning(vec!["make".into()]);
        assert!(!make_only.allows(Feature::Promotions, None));

        let no_environments = resolved.clone().spanning(Vec::new());
        assert!(
            no_environments.allows(Feature::Promotions, None),
            "nothing to span yet: the best plan"
        );

        assert!(
            !resolved.allows(Feature::Promotions, None),
            "environments unknown: every provider"
        );
        // Tenant-wide features do not depend on environments.
        assert_eq!(both.limit(Feature::Members, None), Some(10));
    }

    // L5: a stored value that does not fit its feature grants nothing.
    #[test]
    fn malformed_stored_values_grant_nothing() {
        let (tenant, mut inputs, _) = fixture();
        for (value, why) in [
            (json!("10"), "a string"),
            (json!(-1), "negative"),
            (json!(2.5), "fractional"),
            (json!(3.0), "a float"),
            (json!({"n": 3}), "an object"),
        ] {
            inputs.plans[0]
                .features
                .insert("environments".into(), value.clone());
            inputs.plans[0]
                .features
                .insert("promotions".into(), json!("yes"));
            let ent = resolve(tenant, &inputs, Utc::now());
            assert_eq!(
                ent.limit(Feature::Environments, Some("n8n")),
                Some(0),
                "{why}: {value}"
            );
            assert!(!ent.allows(Feature::Environments, Some("n8n")), "{why}");
            assert!(
                !ent.allows(Feature::Promotions, Some("n8n")),
                "a string flag"
            );
        }
        inputs.plans[0]
            .features
            .insert("environments".into(), json!(4));
        inputs.overrides = vec![
            over(tenant, Some("n8n"), Feature::Environments, json!(-5), None),
            over(tenant, None, Feature::Members, json!("many"), None),
        ];
        let ent = resolve(tenant, &inputs, Utc::now());
        assert_eq!(
            ent.limit(Feature::Environments, Some("n8n")),
            Some(0),
            "a malformed override does not fall back to anything more generous"
        );
        assert_eq!(ent.limit(Feature::Members, None), Some(0));

        assert_eq!(
            Grant::parse(Feature::Environments, &json!(null)),
            Ok(Grant::Limit(None))
        );
        assert_eq!(
            Grant::parse(Feature::Environments, &json!(0)),
            Ok(Grant::Limit(Some(0)))
        );
        assert!(Grant::parse(Feature::Environments, &json!(-1)).is_err());
        assert!(Grant::parse(Feature::Environments, &json!(1.5)).is_err());
        assert!(Grant::parse(Feature::Promotions, &json!(1)).is_err());
        assert!(Grant::parse(Feature::Promotions, &json!(null)).is_err());
    }

    #[test]
    fn a_malformed_value_is_logged_naming_the_plan_or_override_it_is_stored_in() {
        let (tenant, inputs, _) = fixture();
        let plan = &inputs.plans[0];
        assert_eq!(
            Origin::Plan(plan).to_string(),
            format!("plan n8n/free ({})", plan.id)
        );
        let o = over(tenant, Some("make"), Feature::Environments, json!(-1), None);
        assert_eq!(
            Origin::Override(&o).to_string(),
            format!("override {} of tenant {tenant} (make)", o.id)
        );
        let everywhere = over(tenant, None, Feature::Members, json!("x"), None);
        assert!(
            Origin::Override(&everywhere)
                .to_string()
                .ends_with("(every provider)")
        );
    }

    // Efficiency: one resolution answers every provider's environment limit.
    #[test]
    fn environment_limits_of_every_provider_come_from_one_resolution() {
        let (tenant, mut inputs, pro) = fixture();
        inputs.subscriptions = vec![subscription(tenant, &pro, "active")];
        let ent = resolve(tenant, &inputs, Utc::now());
        let limits = EnvironmentLimits::new(None, ent.clone(), 5);
        let all: Vec<(&str, i64)> = limits.providers().map(|p| (p, limits.of(p))).collect();
        assert_eq!(all, [("n8n", 5), ("make", 1)], "pro's 10 capped at 5");
        let own = EnvironmentLimits::new(Some(7), ent, 5);
        assert_eq!((own.of("n8n"), own.of("make")), (7, 7), "the tenant's own");
    }

    #[test]
    fn overrides_win_per_provider_then_everywhere_until_they_expire() {
        let (tenant, mut inputs, _) = fixture();
        let now = Utc::now();
        inputs.overrides = vec![
            over(tenant, None, Feature::Promotions, json!(true), None),
            over(
                tenant,
                Some("make"),
                Feature::Promotions,
                json!(false),
                None,
            ),
            over(
                tenant,
                Some("n8n"),
                Feature::Environments,
                json!(null),
                Some(now - chrono::Duration::seconds(1)),
            ),
            over(
                tenant,
                None,
                Feature::Members,
                json!(50),
                Some(now + chrono::Duration::days(1)),
            ),
        ];
        let ent = resolve(tenant, &inputs, now);
        assert!(ent.allows(Feature::Promotions, Some("n8n")));
        assert!(
            !ent.allows(Feature::Promotions, Some("make")),
            "a provider's own override first"
        );
        assert_eq!(
            ent.limit(Feature::Environments, Some("n8n")),
            Some(2),
            "expired"
        );
        assert_eq!(ent.limit(Feature::Members, None), Some(50));
        let promotions = ent.providers[0]
            .features
            .iter()
            .find(|f| f.feature == Feature::Promotions)
            .expect("listed");
        assert_eq!(promotions.source, GrantSource::Override);
    }

    #[test]
    fn values_are_checked_by_kind() {
        assert!(Feature::Promotions.check_value("v", &json!(true)).is_ok());
        assert!(Feature::Promotions.check_value("v", &json!(1)).is_err());
        assert!(Feature::Environments.check_value("v", &json!(null)).is_ok());
        assert!(Feature::Environments.check_value("v", &json!(3)).is_ok());
        assert!(Feature::Environments.check_value("v", &json!(-1)).is_err());
        assert!(Feature::Environments.check_value("v", &json!(2.5)).is_err());
        assert!(Feature::Environments.check_value("v", &json!("3")).is_err());
    }
}
