//! Billing through Stripe (BILL-001..010, PROV-006/008, ADMIN-007).
//!
//! A tenant buys a plan with Stripe Checkout; Stripe's webhooks are the only source of a paid
//! subscription (a returning browser proves nothing). Each subscription event is applied by
//! reading the subscription back from Stripe, so events arriving late, twice or out of order all
//! end in Stripe's current state; each event id is processed once. Plan changes, cancellation
//! and resumption call Stripe and store what it answers; the portal handles payment methods.
//!
//! One live subscription per tenant and provider: starting a checkout expires the tenant's
//! earlier open sessions for that provider (so two cannot both be paid), and a second live
//! subscription that still reaches the webhook is canceled in Stripe at once and audited.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use billing::{BillingError, CheckoutRequest, CheckoutStatus, Stripe};
use chrono::{DateTime, Utc};
use domain::audit::{Actor, Entry};
use domain::entitlements::{self, Plan, Subscription, SubscriptionChange, SubscriptionSource};
use domain::validate::Validator;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::FromRow;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{PlatformAdmin, TenantCtx, perm};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};

fn stripe(state: &AppState) -> ApiResult<&Stripe> {
    state.config.stripe.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "billing_not_configured",
            "paid plans are not sold on this server (no Stripe key is configured); a platform admin can assign plans",
        )
    })
}

/// Stripe's refusal or outage as an API error: 502 with Stripe's message for a refusal (it is
/// about our request, not the caller's), 503 for an outage; never the key.
fn stripe_error(err: BillingError) -> ApiError {
    match err {
        BillingError::Transient { .. } => ApiError::unavailable(err),
        BillingError::Refused { .. } | BillingError::Invalid(_) => {
            tracing::warn!(error = %err, "Stripe refused a request");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "stripe_refused",
                "Stripe refused the request; it has been logged. Try again, or contact support",
            )
        }
    }
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct InvoiceRecord {
    pub stripe_invoice_id: String,
    pub number: Option<String>,
    pub status: Option<String>,
    pub currency: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub hosted_invoice_url: Option<String>,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
}

async fn invoices(
    db: &sqlx::PgPool,
    tenant_id: Uuid,
    limit: i64,
    before: Option<DateTime<Utc>>,
) -> Result<Vec<InvoiceRecord>, sqlx::Error> {
    sqlx::query_as(
        "select stripe_invoice_id, number, status, currency, amount_due, amount_paid, \
         hosted_invoice_url, period_start, period_end, created from billing_invoices \
         where tenant_id = $1 and ($3::timestamptz is null or created < $3) \
         order by created desc limit $2",
    )
    .bind(tenant_id)
    .bind(limit)
    .bind(before)
    .fetch_all(db)
    .await
}

async fn customer_of(db: &sqlx::PgPool, tenant_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("select stripe_customer_id from billing_customers where tenant_id = $1")
        .bind(tenant_id)
        .fetch_optional(db)
        .await
}

/// The tenant's billing at a glance (BILL-001).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BillingOverview {
    /// Whether paid plans are sold here (a Stripe key is configured).
    pub stripe_enabled: bool,
    /// Whether the tenant has a Stripe customer (bought something once).
    pub has_customer: bool,
    pub subscriptions: Vec<Subscription>,
    /// The latest ten invoices.
    pub invoices: Vec<InvoiceRecord>,
}

#[utoipa::path(get, path = "/api/v1/billing", tag = "billing", security(("bearer" = [])),
    responses((status = 200, body = BillingOverview), (status = 403, body = Problem)))]
pub async fn overview(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::AccessBilling>,
) -> ApiResult<Json<BillingOverview>> {
    let tenant_id = ctx.tenant_id();
    Ok(Json(BillingOverview {
        stripe_enabled: state.config.stripe.is_some(),
        has_customer: customer_of(&state.db, tenant_id).await?.is_some(),
        subscriptions: entitlements::subscriptions(&state.db, tenant_id).await?,
        invoices: invoices(&state.db, tenant_id, 10, None).await?,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// n8n or make.
    #[schema(pattern = "^(n8n|make)$")]
    pub provider: String,
    /// The plan's key (e.g. `pro`); it must be sold by checkout.
    #[schema(min_length = 1, max_length = 40)]
    pub plan: String,
}

impl Validate for CheckoutBody {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if self.provider != "n8n" && self.provider != "make" {
            v.error("provider", "must be n8n or make");
        }
        v.text("plan", &self.plan, 1, 40);
        v.finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckoutStarted {
    pub session_id: String,
    /// Stripe's payment page: send the browser there.
    pub url: String,
}

async fn purchasable(state: &AppState, provider: &str, key: &str) -> ApiResult<(Plan, String)> {
    let plan = entitlements::plan_by_key(&state.db, provider, key).await?;
    match (&plan.stripe_price_id, plan.active && plan.public) {
        (Some(price), true) => {
            let price = price.clone();
            Ok((plan, price))
        }
        _ => Err(domain::Error::conflict(
            "plan_not_purchasable",
            format!(
                "the {} plan is not sold online: contact us for it",
                plan.name
            ),
        )
        .into()),
    }
}

/// The tenant's paid subscription to `provider`, if it has one in good standing.
fn paid(subscriptions: &[Subscription], provider: &str) -> Option<Subscription> {
    subscriptions
        .iter()
        .find(|s| {
            s.provider == provider && s.stripe_subscription_id.is_some() && s.in_good_standing()
        })
        .cloned()
}

/// Start buying a plan: opens a Stripe Checkout session (BILL-002, BILL-007, PROV-008). The
/// subscription takes effect when Stripe confirms the payment (webhook), not before. The
/// tenant's earlier sessions for the provider that are still open are expired first (they can
/// no longer be paid); if one of them was paid meanwhile, 409 `checkout_already_paid`.
#[utoipa::path(post, path = "/api/v1/billing/checkout", tag = "billing", security(("bearer" = [])),
    request_body = CheckoutBody,
    responses((status = 201, body = CheckoutStarted), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "Billing not configured, plan not sold online, already subscribed, or an earlier checkout was just paid", body = Problem),
        (status = 422, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn checkout(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::AccessBilling>,
    ApiJson(req): ApiJson<CheckoutBody>,
) -> ApiResult<(StatusCode, Json<CheckoutStarted>)> {
    refuse_keys(&ctx, "buying a plan")?;
    let stripe = stripe(&state)?;
    let tenant_id = ctx.tenant_id();
    let (plan, price) = purchasable(&state, &req.provider, &req.plan).await?;
    let subscriptions = entitlements::subscriptions(&state.db, tenant_id).await?;
    // A plan given by the platform (custom pricing, or kept from before plans) is not replaced
    // by buying a smaller one online.
    if let Some(given) = subscriptions.iter().find(|s| {
        s.provider == req.provider
            && matches!(
                s.source,
                SubscriptionSource::Manual | SubscriptionSource::Grandfathered
            )
            && s.plan_key != "free"
    }) && let Some(rank) = entitlements::plans(&state.db, false)
        .await?
        .iter()
        .find(|p| p.id == given.plan_id)
        .map(|p| p.rank)
        && rank >= plan.rank
    {
        return Err(domain::Error::conflict(
            "plan_assigned",
            format!(
                "this tenant's {} plan was set up by WorkflowOps: contact support to change it",
                given.plan_name
            ),
        )
        .into());
    }
    let customer = ensure_customer(&state, stripe, &ctx).await?;
    // Under the tenant's billing lock, so that the webhook cannot apply a payment between the
    // checks and the new session, nor two checkouts interleave.
    let mut tx = state.db.begin().await?;
    lock_billing(&mut tx, tenant_id).await?;
    let subscriptions = entitlements::subscriptions(&mut *tx, tenant_id).await?;
    if let Some(current) = paid(&subscriptions, &req.provider) {
        return Err(domain::Error::conflict(
            "already_subscribed",
            format!(
                "this tenant already pays for {} on {}: change the plan instead (POST /api/v1/billing/subscriptions/{}/change)",
                current.plan_name, req.provider, req.provider
            ),
        )
        .into());
    }
    if expire_open_sessions(&mut tx, stripe, &ctx, &plan.provider).await? == Earlier::Paid {
        // What was expired before finding the paid one stays recorded.
        tx.commit().await?;
        return Err(domain::Error::conflict(
            "checkout_already_paid",
            format!(
                "a checkout for {} was paid a moment ago: its plan applies as soon as Stripe confirms the payment",
                plan.provider
            ),
        )
        .into());
    }
    let base = &state.config.public_url;
    let session = stripe
        .create_checkout_session(&CheckoutRequest {
            customer,
            price_id: price,
            success_url: format!("{base}/billing?checkout=success"),
            cancel_url: format!("{base}/billing?checkout=cancelled"),
            client_reference_id: tenant_id.to_string(),
            metadata: vec![
                ("tenant_id".into(), tenant_id.to_string()),
                ("provider".into(), plan.provider.clone()),
                ("plan".into(), plan.key.clone()),
            ],
            // A new session per attempt: a retried click must not hand back an expired one.
            idempotency_key: format!("checkout-{}", Uuid::now_v7()),
        })
        .await
        .map_err(stripe_error)?;
    // Kept so that the next checkout for this provider can expire it.
    sqlx::query(
        "insert into billing_checkout_sessions (id, tenant_id, provider, plan, created_by) \
         values ($1, $2, $3, $4, $5)",
    )
    .bind(&session.id)
    .bind(tenant_id)
    .bind(&plan.provider)
    .bind(&plan.key)
    .bind(ctx.principal.user_id())
    .execute(&mut *tx)
    .await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "billing.checkout_started",
        "subscription",
    )
    .provider(&plan.provider)
    .new_value(&json!({"plan": plan.key, "session_id": session.id}))
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CheckoutStarted {
            session_id: session.id,
            url: session.url,
        }),
    ))
}

/// What became of the tenant's earlier Checkout Sessions for a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Earlier {
    /// None is open any more: none can be paid.
    Closed,
    /// One was paid meanwhile (its webhook has not been applied yet).
    Paid,
}

/// Expires the tenant's open Checkout Sessions for `provider` (BILL-002): two open sessions
/// could both be paid, and the second payment would make a second live subscription. Each one
/// expired is audited; one found paid stops there ([`Earlier::Paid`]). Holds the caller's
/// billing lock across the calls to Stripe, as every change of paid subscriptions does.
async fn expire_open_sessions(
    tx: &mut sqlx::PgConnection,
    stripe: &Stripe,
    ctx: &TenantCtx<perm::AccessBilling>,
    provider: &str,
) -> ApiResult<Earlier> {
    let tenant_id = ctx.tenant_id();
    let open: Vec<(String, String)> = sqlx::query_as(
        "select id, plan from billing_checkout_sessions \
         where tenant_id = $1 and provider = $2 and status = 'open' order by created_at, id",
    )
    .bind(tenant_id)
    .bind(provider)
    .fetch_all(&mut *tx)
    .await?;
    for (id, plan) in open {
        let status = stripe
            .expire_checkout_session(&id)
            .await
            .map_err(stripe_error)?;
        let (stored, earlier) = match status {
            CheckoutStatus::Expired => ("expired", Earlier::Closed),
            CheckoutStatus::Complete => ("complete", Earlier::Paid),
            CheckoutStatus::Open => {
                return Err(ApiError::internal(format!(
                    "Stripe left Checkout Session {id} open when asked to expire it"
                )));
            }
        };
        sqlx::query(
            "update billing_checkout_sessions set status = $2, updated_at = now() where id = $1",
        )
        .bind(&id)
        .bind(stored)
        .execute(&mut *tx)
        .await?;
        if earlier == Earlier::Paid {
            return Ok(Earlier::Paid);
        }
        Entry::new(
            Some(tenant_id),
            &ctx.actor(),
            "billing.checkout_expired",
            "subscription",
        )
        .provider(provider)
        .new_value(&json!({"plan": plan, "session_id": id, "reason": "a new checkout was started"}))
        .record(&mut *tx)
        .await?;
    }
    Ok(Earlier::Closed)
}

/// The tenant's Stripe customer, made once (an advisory lock keeps two first purchases from
/// making two).
async fn ensure_customer(
    state: &AppState,
    stripe: &Stripe,
    ctx: &TenantCtx<perm::AccessBilling>,
) -> ApiResult<String> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "select pg_advisory_xact_lock(hashtextextended('billing-customer:' || $1::text, 0))",
    )
    .bind(tenant_id)
    .execute(&mut *tx)
    .await?;
    if let Some(id) = sqlx::query_scalar::<_, String>(
        "select stripe_customer_id from billing_customers where tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(&mut *tx)
    .await?
    {
        return Ok(id);
    }
    let email = match &ctx.principal.subject {
        crate::auth::Subject::User { email, .. } => Some(email.clone()),
        crate::auth::Subject::ApiKey { .. } => None,
    };
    let id = stripe
        .create_customer(
            &ctx.tenant.name,
            email.as_deref(),
            tenant_id,
            &format!("customer-{tenant_id}"),
        )
        .await
        .map_err(stripe_error)?;
    sqlx::query("insert into billing_customers (tenant_id, stripe_customer_id) values ($1, $2)")
        .bind(tenant_id)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PortalSession {
    /// Stripe's customer portal (payment methods, invoices): send the browser there.
    pub url: String,
}

/// Open Stripe's customer portal: update the payment method, download invoices (BILL-004,
/// BILL-009).
#[utoipa::path(post, path = "/api/v1/billing/portal", tag = "billing", security(("bearer" = [])),
    responses((status = 201, body = PortalSession), (status = 403, body = Problem),
        (status = 409, description = "Billing not configured, or nothing bought yet", body = Problem), (status = 503, body = Problem)))]
pub async fn portal(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::AccessBilling>,
) -> ApiResult<(StatusCode, Json<PortalSession>)> {
    refuse_keys(&ctx, "opening the billing portal")?;
    let stripe = stripe(&state)?;
    let customer = customer_of(&state.db, ctx.tenant_id())
        .await?
        .ok_or_else(|| {
            domain::Error::conflict(
                "no_billing_account",
                "this tenant has not bought a plan yet: there is nothing to manage",
            )
        })?;
    let url = stripe
        .create_portal_session(&customer, &format!("{}/billing", state.config.public_url))
        .await
        .map_err(stripe_error)?;
    Ok((StatusCode::CREATED, Json(PortalSession { url })))
}

async fn paid_subscription(
    db: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    provider: &str,
) -> ApiResult<Subscription> {
    if provider != "n8n" && provider != "make" {
        return Err(ApiError::not_found(format!("no provider `{provider}`")));
    }
    let subscriptions = entitlements::subscriptions(&mut *db, tenant_id).await?;
    paid(&subscriptions, provider).ok_or_else(|| {
        domain::Error::conflict(
            "no_paid_subscription",
            format!("this tenant does not pay for a {provider} plan: buy one with POST /api/v1/billing/checkout"),
        )
        .into()
    })
}

/// Serialises every change of a tenant's paid subscriptions, from the call to Stripe to the
/// write: a webhook that read Stripe before a cancellation cannot commit after it.
async fn lock_billing(tx: &mut sqlx::PgConnection, tenant_id: Uuid) -> ApiResult<()> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('billing:' || $1::text, 0))")
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Only people change what a tenant pays (a leaked API key is no way to cancel it), and not
/// while impersonated.
fn refuse_keys(ctx: &TenantCtx<perm::AccessBilling>, what: &str) -> ApiResult<()> {
    ctx.principal.refuse_impersonation(what)?;
    match ctx.principal.subject {
        crate::auth::Subject::User { .. } => Ok(()),
        crate::auth::Subject::ApiKey { .. } => Err(ApiError::forbidden(
            "user_required",
            format!("{what} needs a signed-in user, not an API key"),
        )),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    /// The new plan's key; it must be sold by checkout.
    #[schema(min_length = 1, max_length = 40)]
    pub plan: String,
}

impl Validate for ChangeBody {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("plan", &self.plan, 1, 40);
        v.finish()
    }
}

/// Move a paid subscription to another paid plan, prorated (BILL-003). To go back to the free
/// plan, cancel.
#[utoipa::path(post, path = "/api/v1/billing/subscriptions/{provider}/change", tag = "billing", security(("bearer" = [])),
    params(("provider" = String, Path, description = "n8n or make")),
    request_body = ChangeBody,
    responses((status = 200, body = Subscription), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn change(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::AccessBilling>,
    ApiPath(provider): ApiPath<String>,
    ApiJson(req): ApiJson<ChangeBody>,
) -> ApiResult<Json<Subscription>> {
    refuse_keys(&ctx, "changing the plan")?;
    let stripe = stripe(&state)?;
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    lock_billing(&mut tx, tenant_id).await?;
    let current = paid_subscription(&mut tx, tenant_id, &provider).await?;
    let (plan, price) = purchasable(&state, &provider, &req.plan).await?;
    if plan.id == current.plan_id {
        return Err(
            domain::Error::conflict("same_plan", "the tenant is already on this plan").into(),
        );
    }
    let (Some(sub_id), Some(item_id)) = (&current.stripe_subscription_id, &current.stripe_item_id)
    else {
        return Err(domain::Error::conflict(
            "no_paid_subscription",
            "the subscription is not known to Stripe yet; try again in a minute",
        )
        .into());
    };
    let remote = stripe
        .change_price(
            sub_id,
            item_id,
            &price,
            &format!("change-{}", Uuid::now_v7()),
        )
        .await
        .map_err(stripe_error)?;
    answered(
        tx,
        tenant_id,
        &remote,
        current,
        &ctx.actor(),
        "subscription.changed",
    )
    .await
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// true (default): keep the plan until the period paid for ends; false: end it now.
    pub at_period_end: Option<bool>,
}

impl Validate for CancelBody {}

/// Cancel a paid subscription (BILL-006): at the period's end (default), or now. The tenant
/// returns to the free plan when it ends.
#[utoipa::path(post, path = "/api/v1/billing/subscriptions/{provider}/cancel", tag = "billing", security(("bearer" = [])),
    params(("provider" = String, Path, description = "n8n or make")),
    request_body = CancelBody,
    responses((status = 200, body = Subscription), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::AccessBilling>,
    ApiPath(provider): ApiPath<String>,
    ApiJson(req): ApiJson<CancelBody>,
) -> ApiResult<Json<Subscription>> {
    refuse_keys(&ctx, "cancelling the plan")?;
    let stripe = stripe(&state)?;
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    lock_billing(&mut tx, tenant_id).await?;
    let current = paid_subscription(&mut tx, tenant_id, &provider).await?;
    let sub_id = current.stripe_subscription_id.clone().unwrap_or_default();
    let remote = if req.at_period_end.unwrap_or(true) {
        stripe.set_cancel_at_period_end(&sub_id, true).await
    } else {
        stripe.cancel_now(&sub_id).await
    }
    .map_err(stripe_error)?;
    answered(
        tx,
        tenant_id,
        &remote,
        current,
        &ctx.actor(),
        "subscription.cancelled",
    )
    .await
}

/// Take back a cancellation at the period's end.
#[utoipa::path(post, path = "/api/v1/billing/subscriptions/{provider}/resume", tag = "billing", security(("bearer" = [])),
    params(("provider" = String, Path, description = "n8n or make")),
    responses((status = 200, body = Subscription), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn resume(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::AccessBilling>,
    ApiPath(provider): ApiPath<String>,
) -> ApiResult<Json<Subscription>> {
    refuse_keys(&ctx, "resuming the plan")?;
    let stripe = stripe(&state)?;
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    lock_billing(&mut tx, tenant_id).await?;
    let current = paid_subscription(&mut tx, tenant_id, &provider).await?;
    if !current.cancel_at_period_end {
        return Err(domain::Error::conflict(
            "not_cancelling",
            "the subscription is not being cancelled",
        )
        .into());
    }
    let sub_id = current.stripe_subscription_id.clone().unwrap_or_default();
    let remote = stripe
        .set_cancel_at_period_end(&sub_id, false)
        .await
        .map_err(stripe_error)?;
    answered(
        tx,
        tenant_id,
        &remote,
        current,
        &ctx.actor(),
        "subscription.resumed",
    )
    .await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpcomingInvoice {
    pub currency: String,
    pub amount_due: i64,
    pub total: i64,
    pub next_payment_attempt: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub lines: Vec<UpcomingLine>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpcomingLine {
    pub description: Option<String>,
    pub amount: i64,
}

/// What Stripe will charge next for a paid subscription (BILL-010).
#[utoipa::path(get, path = "/api/v1/billing/subscriptions/{provider}/upcoming-invoice", tag = "billing", security(("bearer" = [])),
    params(("provider" = String, Path, description = "n8n or make")),
    responses((status = 200, body = UpcomingInvoice), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn upcoming_invoice(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::AccessBilling>,
    ApiPath(provider): ApiPath<String>,
) -> ApiResult<Json<UpcomingInvoice>> {
    let stripe = stripe(&state)?;
    let tenant_id = ctx.tenant_id();
    let current = paid_subscription(&mut *state.db.acquire().await?, tenant_id, &provider).await?;
    let customer = customer_of(&state.db, tenant_id)
        .await?
        .ok_or_else(|| domain::Error::conflict("no_billing_account", "no Stripe customer"))?;
    let preview = stripe
        .preview_invoice(
            &customer,
            current
                .stripe_subscription_id
                .as_deref()
                .unwrap_or_default(),
        )
        .await
        .map_err(stripe_error)?;
    Ok(Json(UpcomingInvoice {
        currency: preview.currency,
        amount_due: preview.amount_due,
        total: preview.total,
        next_payment_attempt: preview.next_payment_attempt,
        period_end: preview.period_end,
        lines: preview
            .lines
            .into_iter()
            .map(|l| UpcomingLine {
                description: l.description,
                amount: l.amount,
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvoicesQuery {
    /// 1-100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Only invoices created before this time (the last one of the previous page).
    pub before: Option<DateTime<Utc>>,
}

/// The tenant's invoices, newest first, as Stripe reported them (BILL-005).
#[utoipa::path(get, path = "/api/v1/billing/invoices", tag = "billing", security(("bearer" = [])),
    params(InvoicesQuery),
    responses((status = 200, body = Vec<InvoiceRecord>), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn list_invoices(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::AccessBilling>,
    ApiQuery(q): ApiQuery<InvoicesQuery>,
) -> ApiResult<Json<Vec<InvoiceRecord>>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(domain::Error::invalid("limit", "must be between 1 and 100").into());
    }
    Ok(Json(
        invoices(&state.db, ctx.tenant_id(), i64::from(limit), q.before).await?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Applying Stripe's state
// ---------------------------------------------------------------------------------------------

/// What [`apply`] did with Stripe's view of a subscription.
enum Applied {
    /// Stored as the tenant's subscription to its provider.
    Stored(Subscription),
    /// Nothing stored: a stale subscription, or a price no plan sells (logged).
    Skipped,
    /// A second live subscription for a provider the tenant already pays for through another
    /// (the one on file, kept).
    Duplicate(Subscription),
    /// Such a second subscription, already ended (canceled by us, its audit entry possibly lost
    /// with a transaction that failed after Stripe's answer; or by anyone else).
    DuplicateEnded(Subscription),
}

/// Stores Stripe's answer to a change the tenant asked for and commits: the subscription as
/// now on file (as it was, if the answer was not applied).
async fn answered(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: Uuid,
    remote: &billing::Subscription,
    current: Subscription,
    actor: &Actor,
    action: &str,
) -> ApiResult<Json<Subscription>> {
    let after = apply(&mut tx, tenant_id, remote, actor, action)
        .await?
        .stored()
        .unwrap_or(current);
    tx.commit().await?;
    Ok(Json(after))
}

impl Applied {
    fn stored(self) -> Option<Subscription> {
        match self {
            Self::Stored(s) => Some(s),
            Self::Skipped | Self::Duplicate(_) | Self::DuplicateEnded(_) => None,
        }
    }
}

/// Stores Stripe's view of a subscription (read while holding [`lock_billing`]) as the
/// tenant's subscription to the plan its price sells; one that ended puts the tenant back on
/// the provider's default plan if it is still the one on file.
async fn apply(
    tx: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    remote: &billing::Subscription,
    actor: &Actor,
    action: &str,
) -> ApiResult<Applied> {
    let ended = matches!(
        remote.status.as_str(),
        "canceled" | "incomplete_expired" | "unpaid"
    );
    let on_file = entitlements::subscription_by_stripe_id(&mut *tx, &remote.id)
        .await?
        .filter(|s| s.tenant_id == tenant_id);
    let (before, after) = if ended {
        // Only the subscription on file ends the plan: a late `deleted` of an older one must not
        // undo a newer one.
        let Some(on_file) = on_file else {
            if let Some(kept) = live_other(&mut *tx, tenant_id, remote).await? {
                return Ok(Applied::DuplicateEnded(kept));
            }
            return Ok(Applied::Skipped);
        };
        let default = entitlements::plans(&mut *tx, false)
            .await?
            .into_iter()
            .find(|p| p.provider == on_file.provider && p.is_default)
            .ok_or_else(|| {
                ApiError::internal(format!("{} has no default plan", on_file.provider))
            })?;
        entitlements::set_subscription(
            &mut *tx,
            tenant_id,
            &default,
            &SubscriptionChange {
                status: "active",
                source: SubscriptionSource::Auto,
                stripe_subscription_id: None,
                stripe_item_id: None,
                current_period_end: None,
                cancel_at_period_end: false,
            },
        )
        .await?
    } else {
        let price = remote.price_id.as_deref().unwrap_or_default();
        let Some(plan) = entitlements::plan_by_stripe_price(&mut *tx, price).await? else {
            tracing::error!(
                subscription = %remote.id, price, tenant = %tenant_id,
                "a Stripe subscription sells a price no plan sells: set the plan's stripe_price_id"
            );
            return Ok(Applied::Skipped);
        };
        let current = entitlements::subscriptions(&mut *tx, tenant_id)
            .await?
            .into_iter()
            .find(|s| s.provider == plan.provider);
        if let Some(c) = current
            && c.in_good_standing()
            && c.stripe_subscription_id
                .as_deref()
                .is_some_and(|id| id != remote.id)
        {
            return Ok(Applied::Duplicate(c));
        }
        entitlements::set_subscription(
            &mut *tx,
            tenant_id,
            &plan,
            &SubscriptionChange {
                status: &remote.status,
                source: SubscriptionSource::Checkout,
                stripe_subscription_id: Some(&remote.id),
                stripe_item_id: remote.item_id.as_deref(),
                current_period_end: remote.current_period_end,
                cancel_at_period_end: remote.cancel_at_period_end,
            },
        )
        .await?
    };
    let changed = before.as_ref().is_none_or(|b| {
        b.plan_id != after.plan_id
            || b.status != after.status
            || b.cancel_at_period_end != after.cancel_at_period_end
            || b.stripe_subscription_id != after.stripe_subscription_id
    });
    if changed {
        Entry::new(Some(tenant_id), actor, action, "subscription")
            .target(after.id)
            .provider(&after.provider)
            .old(&before)
            .new_value(&after)
            .record(&mut *tx)
            .await?;
    }
    Ok(Applied::Stored(after))
}

/// A second live subscription for a provider the tenant already pays for (two checkouts both
/// paid, e.g. one paid before opening the other could expire it): canceled in Stripe at once,
/// so the tenant is not billed twice, and audited for the tenant and the platform. The one on
/// file stays. Stripe refunds nothing by itself: the audit entry names the canceled
/// subscription so that its first payment can be refunded.
/// The tenant's subscription in good standing to the provider `remote` sells, when it is
/// another Stripe subscription than `remote`.
async fn live_other(
    tx: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    remote: &billing::Subscription,
) -> ApiResult<Option<Subscription>> {
    let price = remote.price_id.as_deref().unwrap_or_default();
    let Some(plan) = entitlements::plan_by_stripe_price(&mut *tx, price).await? else {
        return Ok(None);
    };
    Ok(entitlements::subscriptions(&mut *tx, tenant_id)
        .await?
        .into_iter()
        .find(|s| {
            s.provider == plan.provider
                && s.in_good_standing()
                && s.stripe_subscription_id
                    .as_deref()
                    .is_some_and(|id| id != remote.id)
        }))
}

async fn cancel_duplicate(
    tx: &mut sqlx::PgConnection,
    stripe: &Stripe,
    tenant_id: Uuid,
    remote: &billing::Subscription,
    kept: &Subscription,
    actor: &Actor,
) -> ApiResult<()> {
    tracing::warn!(
        subscription = %remote.id, kept = ?kept.stripe_subscription_id, tenant = %tenant_id,
        "a second live Stripe subscription for one provider: canceling it"
    );
    let canceled = stripe.cancel_now(&remote.id).await.map_err(stripe_error)?;
    audit_duplicate(tx, tenant_id, &canceled, kept, actor).await
}

/// Records a canceled second subscription, for the tenant and the platform, once per Stripe
/// subscription: a later event about it (its `deleted`, or the retry of an event whose
/// transaction failed after Stripe canceled it) finds the entry or writes the missing one.
async fn audit_duplicate(
    tx: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    canceled: &billing::Subscription,
    kept: &Subscription,
    actor: &Actor,
) -> ApiResult<()> {
    let recorded: bool = sqlx::query_scalar(
        "select exists (select 1 from audit_logs where tenant_id = $1 \
           and action = 'subscription.duplicate_canceled' \
           and new_value->>'canceled_stripe_subscription_id' = $2)",
    )
    .bind(tenant_id)
    .bind(&canceled.id)
    .fetch_one(&mut *tx)
    .await?;
    if recorded {
        return Ok(());
    }
    let record = json!({
        "canceled_stripe_subscription_id": canceled.id,
        "canceled_price_id": canceled.price_id,
        "status": canceled.status,
        "kept_stripe_subscription_id": kept.stripe_subscription_id,
        "kept_plan": kept.plan_key,
    });
    for tenant in [Some(tenant_id), None] {
        Entry::new(
            tenant,
            actor,
            "subscription.duplicate_canceled",
            "subscription",
        )
        .target(kept.id)
        .provider(&kept.provider)
        .new_value(&record)
        .record(&mut *tx)
        .await?;
    }
    Ok(())
}

fn stripe_actor(event_id: &str) -> Actor {
    Actor {
        label: "stripe".into(),
        request_id: Some(event_id.to_owned()),
        ..Actor::default()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookOutcome {
    /// applied, duplicate or ignored.
    pub result: String,
}

/// Stripe's webhook (BILL-008): configure `<public URL>/api/v1/billing/webhook` with the events
/// `checkout.session.completed`, `checkout.session.expired`, `customer.subscription.created`,
/// `.updated`, `.deleted`,
/// `invoice.paid`, `invoice.payment_failed`, `invoice.finalized` and `invoice.updated`. Signed
/// with `Stripe-Signature`; each event is applied once. A Stripe outage while applying answers
/// 503 so that Stripe sends the event again.
#[utoipa::path(post, path = "/api/v1/billing/webhook", tag = "billing",
    request_body(content = Object, content_type = "application/json", description = "A Stripe event, signed in Stripe-Signature"),
    responses((status = 200, body = WebhookOutcome),
        (status = 400, description = "Missing or bad Stripe-Signature", body = Problem),
        (status = 404, description = "Billing is not configured", body = Problem), (status = 503, body = Problem)))]
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookOutcome>> {
    let stripe = state
        .config
        .stripe
        .as_ref()
        .ok_or_else(|| ApiError::not_found("billing is not configured on this server"))?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let event = stripe.verify_webhook(&body, signature).map_err(|e| {
        tracing::warn!(error = %e, "a Stripe webhook failed verification");
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_signature",
            "Stripe-Signature is missing, stale or does not match the body",
        )
    })?;
    let actor = stripe_actor(&event.id);
    let tenant_id = tenant_of(&state, &event.object).await?;
    let mut tx = state.db.begin().await?;
    if let Some(tenant_id) = tenant_id {
        lock_billing(&mut tx, tenant_id).await?;
    }
    // The event's id first: a second delivery waits here for the first to commit, then finds
    // it; a crash before the commit leaves nothing, so Stripe's retry applies it.
    let fresh = sqlx::query(
        "insert into stripe_events (id, kind, tenant_id, outcome) values ($1, $2, $3, 'applying') \
         on conflict (id) do nothing",
    )
    .bind(&event.id)
    .bind(&event.kind)
    .bind(tenant_id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        return Ok(Json(WebhookOutcome {
            result: "duplicate".into(),
        }));
    }
    let outcome = match tenant_id {
        Some(tenant_id) => handle(&mut tx, stripe, &event, tenant_id, &actor).await?,
        None => {
            tracing::warn!(event = %event.id, kind = %event.kind, "a Stripe event names no tenant of ours");
            "ignored"
        }
    };
    sqlx::query("update stripe_events set outcome = $2 where id = $1")
        .bind(&event.id)
        .bind(outcome)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(WebhookOutcome {
        result: outcome.into(),
    }))
}

/// The tenant an event is about: by our metadata, else by its Stripe customer.
async fn tenant_of(state: &AppState, object: &Value) -> ApiResult<Option<Uuid>> {
    let by_metadata = object["metadata"]["tenant_id"]
        .as_str()
        .or(object["client_reference_id"].as_str())
        .and_then(|s| s.parse::<Uuid>().ok());
    if let Some(id) = by_metadata {
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from tenants where id = $1)")
                .bind(id)
                .fetch_one(&state.db)
                .await?;
        if exists {
            return Ok(Some(id));
        }
    }
    let customer = object["customer"].as_str().unwrap_or_default();
    Ok(
        sqlx::query_scalar("select tenant_id from billing_customers where stripe_customer_id = $1")
            .bind(customer)
            .fetch_optional(&state.db)
            .await?,
    )
}

async fn handle(
    tx: &mut sqlx::PgConnection,
    stripe: &Stripe,
    event: &billing::WebhookEvent,
    tenant_id: Uuid,
    actor: &Actor,
) -> ApiResult<&'static str> {
    let object = &event.object;
    let subscription_id = match event.kind.as_str() {
        "checkout.session.completed" => {
            set_session_status(&mut *tx, tenant_id, object, "complete").await?;
            if let Some(customer) = object["customer"].as_str() {
                sqlx::query(
                    "insert into billing_customers (tenant_id, stripe_customer_id) values ($1, $2) \
                     on conflict do nothing",
                )
                .bind(tenant_id)
                .bind(customer)
                .execute(&mut *tx)
                .await?;
            }
            object["subscription"].as_str()
        }
        "checkout.session.expired" => {
            set_session_status(&mut *tx, tenant_id, object, "expired").await?;
            None
        }
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => object["id"].as_str(),
        "invoice.paid"
        | "invoice.payment_failed"
        | "invoice.finalized"
        | "invoice.updated"
        | "invoice.created"
        | "invoice.voided" => {
            store_invoice(&mut *tx, tenant_id, object).await?;
            None
        }
        _ => return Ok("ignored"),
    };
    if let Some(id) = subscription_id {
        // Stripe's state now, not the event's: late, repeated and reordered events all end in it.
        let remote = stripe.subscription(id).await.map_err(stripe_error)?;
        match apply(tx, tenant_id, &remote, actor, "subscription.synced").await? {
            Applied::Stored(_) => {}
            Applied::Skipped => return Ok("not_applied"),
            Applied::Duplicate(kept) => {
                cancel_duplicate(tx, stripe, tenant_id, &remote, &kept, actor).await?;
                return Ok("duplicate_canceled");
            }
            Applied::DuplicateEnded(kept) => {
                audit_duplicate(tx, tenant_id, &remote, &kept, actor).await?;
                return Ok("duplicate_canceled");
            }
        }
    }
    Ok("applied")
}

/// Records what became of a Checkout Session we opened (others are not on file).
async fn set_session_status(
    db: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    session: &Value,
    status: &str,
) -> ApiResult<()> {
    if let Some(id) = session["id"].as_str() {
        sqlx::query(
            "update billing_checkout_sessions set status = $3, updated_at = now() \
             where id = $1 and tenant_id = $2 and status = 'open'",
        )
        .bind(id)
        .bind(tenant_id)
        .bind(status)
        .execute(&mut *db)
        .await?;
    }
    Ok(())
}

fn stamp(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_i64()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
}

async fn store_invoice(
    db: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    invoice: &Value,
) -> ApiResult<()> {
    let Some(id) = invoice["id"].as_str() else {
        return Ok(());
    };
    sqlx::query(
        "insert into billing_invoices (stripe_invoice_id, tenant_id, number, status, currency, \
            amount_due, amount_paid, hosted_invoice_url, period_start, period_end, created) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         on conflict (stripe_invoice_id) do update set number = excluded.number, \
            status = excluded.status, amount_due = excluded.amount_due, \
            amount_paid = excluded.amount_paid, hosted_invoice_url = excluded.hosted_invoice_url, \
            updated_at = now() \
         where billing_invoices.tenant_id = excluded.tenant_id",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(invoice["number"].as_str())
    .bind(invoice["status"].as_str())
    .bind(invoice["currency"].as_str().unwrap_or("usd"))
    .bind(invoice["amount_due"].as_i64().unwrap_or(0))
    .bind(invoice["amount_paid"].as_i64().unwrap_or(0))
    .bind(invoice["hosted_invoice_url"].as_str())
    .bind(stamp(&invoice["period_start"]))
    .bind(stamp(&invoice["period_end"]))
    .bind(stamp(&invoice["created"]).unwrap_or_else(Utc::now))
    .execute(&mut *db)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Platform
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, FromRow, utoipa::ToSchema)]
pub struct PlanCount {
    pub provider: String,
    pub plan_key: String,
    pub plan_name: String,
    pub status: String,
    pub count: i64,
}

#[derive(Debug, Serialize, FromRow, utoipa::ToSchema)]
pub struct Revenue {
    pub currency: String,
    /// Monthly recurring revenue of paid subscriptions in good standing (yearly prices / 12).
    pub cents: i64,
}

#[derive(Debug, Serialize, FromRow, utoipa::ToSchema)]
pub struct InvoiceTotals {
    pub count: i64,
    pub paid_cents: i64,
    pub open_cents: i64,
}

/// The platform's billing (ADMIN-007).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BillingSummary {
    pub subscriptions_by_plan: Vec<PlanCount>,
    pub mrr: Vec<Revenue>,
    pub past_due: i64,
    /// Paid subscriptions that end at the period's end.
    pub canceling: i64,
    /// Invoices created in the last 30 days.
    pub invoices_30d: InvoiceTotals,
}

#[utoipa::path(get, path = "/api/v1/platform/billing", tag = "platform", security(("bearer" = [])),
    responses((status = 200, body = BillingSummary), (status = 403, body = Problem)))]
pub async fn platform_summary(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<BillingSummary>> {
    let db = &state.db;
    Ok(Json(BillingSummary {
        subscriptions_by_plan: sqlx::query_as(
            "select s.provider, p.key as plan_key, p.name as plan_name, s.status, count(*) as count \
             from tenant_subscriptions s join plans p on p.id = s.plan_id \
             group by s.provider, p.key, p.name, p.rank, s.status order by s.provider, p.rank, s.status",
        )
        .fetch_all(db)
        .await?,
        mrr: sqlx::query_as(
            "select p.currency, sum(case p.billing_interval when 'year' then p.price_cents / 12 \
                                     else p.price_cents end)::bigint as cents \
             from tenant_subscriptions s join plans p on p.id = s.plan_id \
             where s.source = 'checkout' and s.status in ('active', 'trialing', 'past_due') \
               and p.price_cents is not null \
             group by p.currency order by p.currency",
        )
        .fetch_all(db)
        .await?,
        past_due: sqlx::query_scalar(
            "select count(*) from tenant_subscriptions where status = 'past_due'",
        )
        .fetch_one(db)
        .await?,
        canceling: sqlx::query_scalar(
            "select count(*) from tenant_subscriptions where cancel_at_period_end",
        )
        .fetch_one(db)
        .await?,
        invoices_30d: sqlx::query_as(
            "select count(*) as count, \
                    coalesce(sum(amount_paid), 0)::bigint as paid_cents, \
                    coalesce(sum(amount_due - amount_paid) filter (where status = 'open'), 0)::bigint as open_cents \
             from billing_invoices where created > now() - interval '30 days'",
        )
        .fetch_one(db)
        .await?,
    }))
}
