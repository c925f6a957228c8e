//! Plans in the platform console (ENT-006/007/008/009/011, ADMIN-005/007/008/013/014): the
//! feature matrix at `/platform/plans` (every plan of every provider, its offer and what it
//! grants, editable per plan; new plans; providers switched on and off), and what the tenant
//! page and the front page show of plans: a tenant's subscriptions with the form assigning a
//! plan, its overrides, its refused features, and the platform's billing summary.
//!
//! Platform admins only. Pages read through the domain (and the billing tables); changes go
//! through the JSON API like every page's.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use domain::entitlements::{self, Denial, FeatureInfo, FeatureKind, Plan, ProviderInfo};
use serde_json::Value;
use uuid::Uuid;

use super::billing::{date, money, source_text, value_text};
use super::pages::failed;
use super::platform::{PLATFORM_ONLY, denied};
use super::{Nav, Viewer, render};
use crate::app::AppState;

/// How many refusals the tenant page lists.
const DENIALS_SHOWN: i64 = 20;

// ---------------------------------------------------------------------------------------------
// The feature matrix
// ---------------------------------------------------------------------------------------------

/// A plan's column: its offer, as the form's fields show it.
struct PlanColumn {
    id: Uuid,
    provider: String,
    key: String,
    name: String,
    description: String,
    /// In currency units for the form (`299.00`); empty: custom pricing.
    price: String,
    currency: String,
    interval: String,
    stripe_price_id: String,
    public: bool,
    active: bool,
    is_default: bool,
    rank: i32,
}

impl PlanColumn {
    fn of(p: &Plan) -> Self {
        Self {
            id: p.id,
            provider: p.provider.clone(),
            key: p.key.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            price: p
                .price_cents
                .map(|c| format!("{}.{:02}", c / 100, c % 100))
                .unwrap_or_default(),
            currency: p.currency.to_ascii_uppercase(),
            interval: p.billing_interval.clone(),
            stripe_price_id: p.stripe_price_id.clone().unwrap_or_default(),
            public: p.public,
            active: p.active,
            is_default: p.is_default,
            rank: p.rank,
        }
    }

    /// The id prefix of this plan's fields: `plan-n8n-free`.
    fn dom(&self) -> String {
        format!("plan-{}-{}", self.provider, self.key)
    }
}

/// A provider and how many plan columns it heads.
struct ProviderGroup {
    key: String,
    name: String,
    plans: usize,
}

/// One feature's value in one plan.
struct Cell {
    /// The id of the plan's form (the field sits in the plan's column, outside the form).
    form: String,
    /// The field's id: `plan-n8n-free-promotions`.
    dom: String,
    /// "Free (n8n): Environment promotion", for screen readers.
    label: String,
    checked: bool,
    /// A limit's value; empty: unlimited.
    number: String,
}

struct MatrixRow {
    key: String,
    name: String,
    description: String,
    limit: bool,
    tenant_wide: bool,
    cells: Vec<Cell>,
}

#[derive(Template)]
#[template(path = "platform_plans.html")]
struct PlansPage {
    nav: Nav,
    providers: Vec<ProviderInfo>,
    groups: Vec<ProviderGroup>,
    plans: Vec<PlanColumn>,
    rows: Vec<MatrixRow>,
}

fn matrix_rows(features: &[FeatureInfo], plans: &[Plan]) -> Vec<MatrixRow> {
    features
        .iter()
        .map(|f| {
            let limit = f.kind == FeatureKind::Limit;
            MatrixRow {
                key: f.key.clone(),
                name: f.name.clone(),
                description: super::billing::described(&f.description, "empty"),
                limit,
                tenant_wide: f.scope == entitlements::FeatureScope::Tenant,
                cells: plans
                    .iter()
                    .map(|p| {
                        let value = p.features.get(&f.key);
                        Cell {
                            form: format!("form-plan-{}-{}", p.provider, p.key),
                            dom: format!("plan-{}-{}-{}", p.provider, p.key, f.key),
                            label: format!("{} ({}): {}", p.name, p.provider, f.name),
                            checked: value == Some(&Value::Bool(true)),
                            number: match value {
                                Some(Value::Null) => String::new(),
                                Some(v) => v.as_i64().unwrap_or(0).to_string(),
                                None => "0".to_owned(),
                            },
                        }
                    })
                    .collect(),
            }
        })
        .collect()
}

/// `/platform/plans`: the feature matrix.
pub async fn plans(State(state): State<AppState>, v: Viewer) -> Response {
    let nav = v.nav("platform");
    if !v.principal.platform_admin {
        return denied(nav, PLATFORM_ONLY);
    }
    let loaded: Result<_, domain::Error> = async {
        Ok((
            entitlements::providers(&state.db).await?,
            entitlements::features(&state.db).await?,
            entitlements::plans(&state.db, false).await?,
        ))
    }
    .await;
    let (providers, features, mut plans) = match loaded {
        Ok(l) => l,
        Err(e) => return failed(&e),
    };
    // Grouped by provider in the providers' order, then each provider's plans by rank.
    plans.sort_by_key(|p| {
        (
            providers
                .iter()
                .position(|i| i.key == p.provider)
                .unwrap_or(usize::MAX),
            p.rank,
            p.key.clone(),
        )
    });
    let groups = providers
        .iter()
        .map(|i| ProviderGroup {
            key: i.key.clone(),
            name: i.name.clone(),
            plans: plans.iter().filter(|p| p.provider == i.key).count(),
        })
        .filter(|g| g.plans > 0)
        .collect();
    render(&PlansPage {
        nav,
        rows: matrix_rows(&features, &plans),
        groups,
        plans: plans.iter().map(PlanColumn::of).collect(),
        providers,
    })
}

// ---------------------------------------------------------------------------------------------
// A tenant's plans, overrides and refusals (on /platform/tenants/{id})
// ---------------------------------------------------------------------------------------------

/// A tenant's subscription to one provider, with the plans that can be assigned.
pub struct TenantProvider {
    pub key: String,
    pub name: String,
    /// The plan in force.
    pub plan_name: String,
    pub status: Option<String>,
    pub source: &'static str,
    pub period: Option<String>,
    pub cancel_at_period_end: bool,
    /// A Stripe subscription runs: assigning by hand does not stop it.
    pub stripe: bool,
    /// (key, name, the subscription's plan) of every active plan of the provider.
    pub options: Vec<(String, String, bool)>,
}

pub struct OverrideRow {
    pub id: Uuid,
    pub feature: String,
    pub provider: String,
    pub value: String,
    pub reason: String,
    pub expires: String,
    pub expired: bool,
    pub created: String,
}

/// The Plans, Overrides and Refused features sections of the tenant page.
pub struct TenantPlans {
    pub providers: Vec<TenantProvider>,
    pub overrides: Vec<OverrideRow>,
    /// (key, name, kind, tenant-wide) for the override form.
    pub features: Vec<(String, String, &'static str, bool)>,
    pub denials: Vec<Denial>,
}

/// What the tenant page shows of `tenant_id`'s plans.
pub async fn tenant_plans(state: &AppState, tenant_id: Uuid) -> Result<TenantPlans, domain::Error> {
    let mut conn = state.db.acquire().await?;
    let ent = entitlements::entitlements(&mut conn, tenant_id).await?;
    let providers = entitlements::providers(&mut *conn).await?;
    let catalog = entitlements::features(&mut *conn).await?;
    let plans = entitlements::plans(&mut *conn, false).await?;
    let overrides = entitlements::overrides(&mut *conn, tenant_id).await?;
    let denials =
        entitlements::denials(&mut *conn, Some(tenant_id), None, DENIALS_SHOWN, None).await?;
    let now = chrono::Utc::now();
    let name_of = |key: &str| {
        catalog
            .iter()
            .find(|f| f.key == key)
            .map_or_else(|| key.to_owned(), |f| f.name.clone())
    };
    let kind_of = |key: &str| {
        catalog
            .iter()
            .find(|f| f.key == key)
            .map_or(FeatureKind::Flag, |f| f.kind)
    };
    Ok(TenantPlans {
        providers: ent
            .providers
            .iter()
            .map(|p| {
                let sub = p.subscription.as_ref();
                TenantProvider {
                    key: p.provider.clone(),
                    name: providers
                        .iter()
                        .find(|i| i.key == p.provider)
                        .map_or_else(|| p.provider.clone(), |i| i.name.clone()),
                    plan_name: p.plan_name.clone(),
                    status: sub.map(|s| s.status.clone()),
                    source: sub
                        .map_or("none (the default plan applies)", |s| source_text(s.source)),
                    period: sub.and_then(|s| s.current_period_end).map(date),
                    cancel_at_period_end: sub.is_some_and(|s| s.cancel_at_period_end),
                    stripe: sub.is_some_and(|s| {
                        s.stripe_subscription_id.is_some() && s.in_good_standing()
                    }),
                    options: plans
                        .iter()
                        .filter(|plan| plan.provider == p.provider && plan.active)
                        .map(|plan| {
                            (
                                plan.key.clone(),
                                plan.name.clone(),
                                sub.is_some_and(|s| s.plan_id == plan.id),
                            )
                        })
                        .collect(),
                }
            })
            .collect(),
        overrides: overrides
            .iter()
            .map(|o| OverrideRow {
                id: o.id,
                feature: name_of(&o.feature),
                provider: o.provider.clone().unwrap_or_else(|| "all".to_owned()),
                value: value_text(
                    kind_of(&o.feature),
                    Some(o.value.as_ref().unwrap_or(&Value::Null)),
                )
                .0,
                reason: o.reason.clone(),
                expires: o.expires_at.map_or_else(
                    || "never".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
                ),
                expired: !o.active_at(now),
                created: o.created_at.format("%Y-%m-%d %H:%M").to_string(),
            })
            .collect(),
        features: catalog
            .iter()
            .map(|f| {
                (
                    f.key.clone(),
                    f.name.clone(),
                    f.kind.as_str(),
                    f.scope == entitlements::FeatureScope::Tenant,
                )
            })
            .collect(),
        denials,
    })
}

// ---------------------------------------------------------------------------------------------
// The billing summary (on /platform)
// ---------------------------------------------------------------------------------------------

/// Subscriptions by plan, and what needs attention (ADMIN-005, ADMIN-007). "In good standing"
/// is `active`, `trialing` or `past_due`, as `Subscription::in_good_standing` says.
pub struct BillingSummary {
    /// (provider, plan, subscriptions in good standing).
    pub by_plan: Vec<(String, String, i64)>,
    pub past_due: i64,
    /// Paid subscriptions set to end with their period.
    pub canceling: i64,
    /// Monthly recurring revenue of the Stripe subscriptions, per currency (`$598`).
    pub mrr: Vec<String>,
}

pub async fn billing_summary(db: &sqlx::PgPool) -> Result<BillingSummary, sqlx::Error> {
    let by_plan: Vec<(String, String, i64)> = sqlx::query_as(
        "select pv.name, p.name, count(s.id) from plans p \
         join providers pv on pv.key = p.provider \
         left join tenant_subscriptions s on s.plan_id = p.id and s.status in ('active', 'trialing', 'past_due') \
         group by pv.name, pv.sort, p.name, p.rank having count(s.id) > 0 or bool_or(p.active) \
         order by pv.sort, p.rank"
    )
    .fetch_all(db)
    .await?;
    let (past_due, canceling): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where status = 'past_due'), \
                count(*) filter (where cancel_at_period_end and status in ('active', 'trialing', 'past_due')) \
         from tenant_subscriptions"
    )
    .fetch_one(db)
    .await?;
    let mrr: Vec<(String, i64)> = sqlx::query_as(
        "select p.currency, round(sum(case p.billing_interval when 'year' then p.price_cents / 12.0 \
                                      else p.price_cents end))::bigint \
         from tenant_subscriptions s join plans p on p.id = s.plan_id \
         where s.source = 'checkout' and s.status in ('active', 'trialing', 'past_due') and p.price_cents is not null \
         group by p.currency order by p.currency"
    )
    .fetch_all(db)
    .await?;
    Ok(BillingSummary {
        by_plan,
        past_due,
        canceling,
        mrr: mrr.iter().map(|(c, cents)| money(*cents, c)).collect(),
    })
}
