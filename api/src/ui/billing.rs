//! The tenant's Plans & billing page (PROV-003/006/007/009, ENT-003/005, BILL-001..010): per
//! provider the plan in force and its subscription, the features it grants (and which come from
//! an override), the plans on offer side by side, and for billing admins the actions (checkout,
//! switching, cancelling, the Stripe portal), the invoices and the upcoming invoice.
//!
//! Every member reads what the tenant may do; invoices and actions are for the roles with
//! `AccessBilling`, as the billing API is. Like every page it reads through the domain and the
//! database and acts through the JSON API (`data-api`); a checkout or portal answer sends the
//! browser to Stripe's page (`data-then="redirect-url"`).
//!
//! Also the upgrade notice of pages whose feature the tenant's plan leaves out ([`upgrade`]).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::Permission;
use domain::entitlements::{
    self, EffectiveFeature, Entitlements, Feature, FeatureInfo, FeatureKind, FeatureScope,
    GrantSource, Plan, SubscriptionSource,
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::pages::failed;
use super::{Nav, Viewer, render};
use crate::app::AppState;

/// How many of the newest invoices the page lists.
const INVOICES_SHOWN: i64 = 10;

// ---------------------------------------------------------------------------------------------
// Formatting shared with the platform's plan pages
// ---------------------------------------------------------------------------------------------

/// An amount in minor units as people read it: `$299`, `€12.50`, `1,200 CHF`.
pub(super) fn money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let units = group_thousands(cents / 100);
    let amount = if cents.is_multiple_of(100) {
        units
    } else {
        format!("{units}.{:02}", cents % 100)
    };
    match currency.to_ascii_lowercase().as_str() {
        "usd" => format!("{sign}${amount}"),
        "eur" => format!("{sign}€{amount}"),
        "gbp" => format!("{sign}£{amount}"),
        other => format!("{sign}{amount} {}", other.to_ascii_uppercase()),
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A plan's price as the comparison shows it.
pub(super) fn price_text(plan: &Plan) -> String {
    match plan.price_cents {
        None => "Custom — contact us".to_owned(),
        Some(cents) => format!(
            "{} / {}",
            money(i64::from(cents), &plan.currency),
            plan.billing_interval
        ),
    }
}

/// A feature's value as text, and whether it grants anything (for its badge).
pub(super) fn value_text(kind: FeatureKind, value: Option<&Value>) -> (String, bool) {
    match (kind, value) {
        (FeatureKind::Flag, Some(Value::Bool(true))) => ("included".to_owned(), true),
        (FeatureKind::Flag, _) => ("not included".to_owned(), false),
        (FeatureKind::Limit, Some(Value::Null)) => ("unlimited".to_owned(), true),
        (FeatureKind::Limit, Some(v)) => match v.as_i64() {
            Some(n) => (n.to_string(), n != 0),
            None => ("0".to_owned(), false),
        },
        // A limit the plan does not list is 0, as the resolution reads it.
        (FeatureKind::Limit, None) => ("0".to_owned(), false),
    }
}

/// How a subscription came to be, for people.
pub(super) fn source_text(source: SubscriptionSource) -> &'static str {
    match source {
        SubscriptionSource::Auto => "automatic (the free plan)",
        SubscriptionSource::Checkout => "paid by card through Stripe",
        SubscriptionSource::Manual => "assigned by WorkflowOps",
        SubscriptionSource::Grandfathered => "kept from before plans existed",
    }
}

pub(super) fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// A catalog feature's display name (the key when the catalog row is missing).
fn feature_name(catalog: &[FeatureInfo], key: &str) -> (String, String) {
    catalog.iter().find(|f| f.key == key).map_or_else(
        || (key.to_owned(), String::new()),
        |f| (f.name.clone(), described(&f.description, "no limit")),
    )
}

/// A catalog feature's description for a page: the catalog speaks of limits as the API sends
/// them ("(null: forever)"); a page says what `null` is there (`unset`: "no limit" for
/// customers, "empty" beside the platform's inputs).
pub(super) fn described(description: &str, unset: &str) -> String {
    description.replace("(null: ", &format!("({unset}: "))
}

// ---------------------------------------------------------------------------------------------
// The upgrade notice
// ---------------------------------------------------------------------------------------------

/// What a page says in place of a feature the tenant's plan leaves out (ENT-005).
pub struct Upgrade {
    /// The feature's name, e.g. "Audit logs".
    pub feature: String,
    /// The plan(s) in force, e.g. "Free".
    pub current: String,
    /// The cheapest plan on offer that includes it.
    pub plan: Option<String>,
}

/// `None` when `feature` is granted as a check without a provider grants it (for a
/// provider-scoped feature: by the plan of every provider the tenant has environments with, see
/// `Entitlements::grant`); else the notice, naming the plan(s) that leave it out and the
/// cheapest public plan that includes it, as the API's refusal does. Showing the notice is not
/// a refusal: a page view asks for nothing, so nothing is logged (the API's calls are).
pub(super) async fn upgrade(
    db: &sqlx::PgPool,
    ent: &Entitlements,
    feature: Feature,
) -> Result<Option<Upgrade>, sqlx::Error> {
    if ent.allows(feature, None) {
        return Ok(None);
    }
    let (name, plan): (Option<String>, Option<String>) = sqlx::query_as(
        "select (select name from features where key = $1), \
           (select p.name from plans p join plan_features f on f.plan_id = p.id \
            where f.feature = $1 and p.active and p.public \
              and (f.value = 'true'::jsonb or f.value = 'null'::jsonb \
                   or (jsonb_typeof(f.value) = 'number' and f.value::text ~ '^[1-9][0-9]*$')) \
            order by p.rank, p.price_cents nulls last limit 1)",
    )
    .bind(feature.as_str())
    .fetch_one(db)
    .await?;
    // A provider-scoped feature names whose plan it is ("Free for n8n").
    let per_provider = feature.scope() == FeatureScope::Provider;
    let mut current: Vec<String> = ent
        .withholding(feature, None)
        .into_iter()
        .filter(|p| !p.plan_name.is_empty())
        .map(|p| {
            if per_provider {
                format!("{} for {}", p.plan_name, p.provider)
            } else {
                p.plan_name.clone()
            }
        })
        .collect();
    current.dedup();
    Ok(Some(Upgrade {
        feature: name.unwrap_or_else(|| feature.as_str().to_owned()),
        current: current.join(" / "),
        plan,
    }))
}

// ---------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------

/// One effective feature.
struct FeatureRow {
    name: String,
    description: String,
    value: String,
    on: bool,
    /// The override's expiry ("until …" or "no expiry") when an override sets it.
    from_override: Option<String>,
}

impl FeatureRow {
    fn of(f: &EffectiveFeature, catalog: &[FeatureInfo]) -> Self {
        let (name, description) = feature_name(catalog, f.feature.as_str());
        let (value, on) = value_text(f.kind, Some(&f.value));
        Self {
            name,
            description,
            value,
            on,
            from_override: (f.source == GrantSource::Override).then(|| {
                f.override_expires_at.map_or_else(
                    || "no expiry".to_owned(),
                    |t| format!("until {}", t.format("%Y-%m-%d %H:%M UTC")),
                )
            }),
        }
    }
}

/// What a plan's column offers the viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// Nothing to do (no billing rights, or nothing sellable).
    Nothing,
    /// The plan in force.
    Current,
    /// Stripe Checkout: "Upgrade" to a higher-ranked plan, else "Choose".
    Checkout { upgrade: bool },
    /// A price change of the running Stripe subscription.
    Switch,
    /// Custom pricing, or a price Stripe does not sell: talk to us.
    Contact,
    /// The free plan while a paid one runs: cancelling returns to it.
    ByCancelling,
}

struct PlanColumn {
    key: String,
    name: String,
    description: String,
    price: String,
    offer: Offer,
}

impl PlanColumn {
    fn offer_is(&self, what: &str) -> bool {
        matches!(
            (self.offer, what),
            (Offer::Nothing, "nothing")
                | (Offer::Current, "current")
                | (Offer::Checkout { .. }, "checkout")
                | (Offer::Switch, "switch")
                | (Offer::Contact, "contact")
                | (Offer::ByCancelling, "by-cancelling")
        )
    }

    fn checkout_label(&self) -> &'static str {
        match self.offer {
            Offer::Checkout { upgrade: true } => "Upgrade",
            _ => "Choose",
        }
    }
}

/// A feature across the plans on offer.
struct ComparisonRow {
    name: String,
    description: String,
    cells: Vec<(String, bool)>,
}

/// One provider: the plan in force, its subscription, what it grants and what else is offered.
struct ProviderView {
    key: String,
    name: String,
    enabled: bool,
    plan_name: String,
    /// `active`, `past_due`, …; `None`: no subscription (the default plan applies).
    status: Option<String>,
    source: &'static str,
    /// "Renews on …" / "Cancels on …".
    period: Option<String>,
    /// A Stripe subscription in good standing: switch, cancel, resume and preview apply.
    paid: bool,
    cancel_at_period_end: bool,
    past_due: bool,
    /// The subscription's plan when the subscription is not in good standing (the default plan
    /// applies meanwhile).
    lapsed: Option<String>,
    features: Vec<FeatureRow>,
    plans: Vec<PlanColumn>,
    comparison: Vec<ComparisonRow>,
}

struct InvoiceRow {
    number: String,
    status: String,
    created: String,
    period: String,
    amount_due: String,
    amount_paid: String,
    url: Option<String>,
}

#[derive(Template)]
#[template(path = "billing.html")]
struct BillingPage {
    nav: Nav,
    /// After Stripe Checkout: (status class, text).
    notice: Option<(&'static str, &'static str)>,
    stripe_enabled: bool,
    /// The viewer's role may act (`AccessBilling`): actions, invoices.
    can_bill: bool,
    /// The tenant has a Stripe customer: the portal applies.
    has_customer: bool,
    providers: Vec<ProviderView>,
    tenant_features: Vec<FeatureRow>,
    invoices: Vec<InvoiceRow>,
}

#[derive(Debug, Default, Deserialize)]
pub struct BillingQuery {
    /// `success` or `cancelled`: back from Stripe Checkout.
    checkout: Option<String>,
}

fn checkout_notice(q: Option<&str>) -> Option<(&'static str, &'static str)> {
    match q? {
        "success" => Some((
            "completed",
            "Thank you: your payment went through. The new plan applies as soon as Stripe \
             confirms the subscription, usually within seconds: if it is not shown below yet, \
             reload this page in a moment.",
        )),
        "cancelled" | "canceled" => Some((
            "waiting",
            "Checkout was cancelled: nothing was charged and your plan is unchanged.",
        )),
        _ => None,
    }
}

/// What the viewer may do with `plan`, given the provider's state.
struct OfferContext<'a> {
    can_bill: bool,
    stripe_enabled: bool,
    current_key: &'a str,
    current_rank: Option<i32>,
    paid: bool,
}

impl OfferContext<'_> {
    fn offer(&self, plan: &Plan) -> Offer {
        if plan.key == self.current_key {
            return Offer::Current;
        }
        if !self.can_bill {
            return Offer::Nothing;
        }
        match (plan.price_cents, plan.stripe_price_id.as_deref()) {
            (None, _) => Offer::Contact,
            (Some(_), Some(_)) if self.stripe_enabled => {
                if self.paid {
                    Offer::Switch
                } else {
                    Offer::Checkout {
                        upgrade: self.current_rank.is_none_or(|r| plan.rank > r),
                    }
                }
            }
            (Some(0), None) if self.paid => Offer::ByCancelling,
            (Some(0), _) => Offer::Nothing,
            // A price Stripe does not sell here (or no Stripe at all).
            (Some(_), _) => Offer::Contact,
        }
    }
}

fn provider_view(
    p: &entitlements::ProviderEntitlements,
    info: Option<&entitlements::ProviderInfo>,
    offered: &[Plan],
    catalog: &[FeatureInfo],
    can_bill: bool,
    stripe_enabled: bool,
) -> ProviderView {
    let sub = p.subscription.as_ref();
    // As the billing API decides: a Stripe subscription in good standing.
    let paid = sub.is_some_and(|s| s.stripe_subscription_id.is_some() && s.in_good_standing());
    let mut plans: Vec<&Plan> = offered
        .iter()
        .filter(|plan| plan.provider == p.provider)
        .collect();
    // Cheapest first; custom prices last; then the plans' own order.
    plans.sort_by_key(|plan| (plan.price_cents.is_none(), plan.price_cents, plan.rank));
    let ctx = OfferContext {
        can_bill,
        stripe_enabled,
        current_key: &p.plan_key,
        current_rank: plans
            .iter()
            .find(|plan| plan.key == p.plan_key)
            .map(|plan| plan.rank),
        paid,
    };
    let comparison = catalog
        .iter()
        .map(|f| {
            let kind = Feature::parse(&f.key).map_or(FeatureKind::Flag, Feature::kind);
            ComparisonRow {
                name: f.name.clone(),
                description: described(&f.description, "no limit"),
                cells: plans
                    .iter()
                    .map(|plan| value_text(kind, plan.features.get(&f.key)))
                    .collect(),
            }
        })
        .collect();
    ProviderView {
        key: p.provider.clone(),
        name: info.map_or_else(|| p.provider.clone(), |i| i.name.clone()),
        enabled: p.provider_enabled,
        plan_name: p.plan_name.clone(),
        status: sub.map(|s| s.status.clone()),
        source: sub.map_or("automatic (the free plan)", |s| source_text(s.source)),
        period: sub.and_then(|s| {
            s.current_period_end.map(|end| {
                if s.cancel_at_period_end {
                    format!("Cancels on {}", date(end))
                } else {
                    format!("Renews on {}", date(end))
                }
            })
        }),
        paid,
        cancel_at_period_end: sub.is_some_and(|s| s.cancel_at_period_end),
        past_due: sub.is_some_and(|s| s.status == "past_due"),
        lapsed: sub
            .filter(|s| !s.in_good_standing())
            .map(|s| s.plan_name.clone()),
        features: p
            .features
            .iter()
            .map(|f| FeatureRow::of(f, catalog))
            .collect(),
        plans: plans
            .iter()
            .map(|plan| PlanColumn {
                key: plan.key.clone(),
                name: plan.name.clone(),
                description: plan.description.clone(),
                price: price_text(plan),
                offer: ctx.offer(plan),
            })
            .collect(),
        comparison,
    }
}

type InvoiceDbRow = (
    Option<String>,
    Option<String>,
    String,
    i64,
    i64,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

async fn invoices(db: &sqlx::PgPool, tenant_id: Uuid) -> Result<Vec<InvoiceRow>, sqlx::Error> {
    let rows: Vec<InvoiceDbRow> = sqlx::query_as(
        "select number, status, currency, amount_due, amount_paid, hosted_invoice_url, \
                period_start, period_end, created \
         from billing_invoices where tenant_id = $1 order by created desc limit $2",
    )
    .bind(tenant_id)
    .bind(INVOICES_SHOWN)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(number, status, currency, due, paid, url, start, end, created)| InvoiceRow {
                number: number.unwrap_or_else(|| "draft".to_owned()),
                status: status.unwrap_or_default(),
                created: date(created),
                period: match (start, end) {
                    (Some(s), Some(e)) => format!("{} – {}", date(s), date(e)),
                    _ => String::new(),
                },
                amount_due: money(due, &currency),
                amount_paid: money(paid, &currency),
                url: url.filter(|u| u.starts_with("https://") || u.starts_with("http://")),
            },
        )
        .collect())
}

/// `/billing`: what the tenant has, what it could have, and (for billing admins) paying for it.
pub async fn billing(
    State(state): State<AppState>,
    v: Viewer,
    super::pages::PageQuery(q): super::pages::PageQuery<BillingQuery>,
) -> Response {
    let nav = v.nav("billing");
    let can_bill = nav.can(Permission::AccessBilling);
    let stripe_enabled = state.config.stripe.is_some();
    let loaded: Result<_, domain::Error> = async {
        let mut conn = state.db.acquire().await?;
        let ent = entitlements::entitlements(&mut conn, v.tenant_id).await?;
        let providers = entitlements::providers(&mut *conn).await?;
        let catalog = entitlements::features(&mut *conn).await?;
        let offered = entitlements::plans(&mut *conn, true).await?;
        let has_customer: bool = sqlx::query_scalar(
            "select exists (select 1 from billing_customers where tenant_id = $1)",
        )
        .bind(v.tenant_id)
        .fetch_one(&mut *conn)
        .await?;
        Ok((ent, providers, catalog, offered, has_customer))
    }
    .await;
    let (ent, providers, catalog, offered, has_customer) = match loaded {
        Ok(l) => l,
        Err(e) => return failed(&e),
    };
    let invoices = if can_bill {
        match invoices(&state.db, v.tenant_id).await {
            Ok(i) => i,
            Err(e) => return failed(&e),
        }
    } else {
        Vec::new()
    };
    let views = ent
        .providers
        .iter()
        .map(|p| {
            provider_view(
                p,
                providers.iter().find(|i| i.key == p.provider),
                &offered,
                &catalog,
                can_bill,
                stripe_enabled,
            )
        })
        .collect();
    render(&BillingPage {
        nav,
        notice: checkout_notice(q.checkout.as_deref()),
        stripe_enabled,
        can_bill,
        has_customer,
        providers: views,
        tenant_features: ent
            .tenant
            .iter()
            .map(|f| FeatureRow::of(f, &catalog))
            .collect(),
        invoices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_say_what_null_means_on_the_page() {
        assert_eq!(
            described("Days the audit log is kept (null: forever)", "no limit"),
            "Days the audit log is kept (no limit: forever)"
        );
        assert_eq!(described("Workflows synced", "empty"), "Workflows synced");
    }

    #[test]
    fn money_reads_like_a_price() {
        assert_eq!(money(29_900, "usd"), "$299");
        assert_eq!(money(1_250, "eur"), "€12.50");
        assert_eq!(money(120_000, "chf"), "1,200 CHF");
        assert_eq!(money(-505, "gbp"), "-£5.05");
        assert_eq!(money(0, "usd"), "$0");
    }

    #[test]
    fn values_read_by_kind() {
        let t = |k, v: Value| value_text(k, Some(&v));
        assert_eq!(t(FeatureKind::Flag, Value::Bool(true)).0, "included");
        assert_eq!(t(FeatureKind::Flag, Value::Bool(false)).0, "not included");
        assert_eq!(t(FeatureKind::Limit, Value::Null).0, "unlimited");
        assert_eq!(
            t(FeatureKind::Limit, Value::from(10)),
            ("10".to_owned(), true)
        );
        assert_eq!(
            t(FeatureKind::Limit, Value::from(0)),
            ("0".to_owned(), false)
        );
    }
}
