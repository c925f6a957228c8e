//! The Stripe API calls WorkflowOps makes, over async-stripe's typed requests and its own HTTP
//! client (pointed at `api_base` in tests). Every async-stripe type stays in this file: callers
//! see only the plain types of [`crate::types`], so changing Stripe code recompiles one crate.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use stripe::{IdempotencyKey, RequestStrategy, StripeRequest as _};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::{CreatePreviewInvoice, ListInvoice};
use stripe_billing::subscription::{
    CancelSubscription, RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
    UpdateSubscriptionProrationBehavior,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
    ExpireCheckoutSession, RetrieveCheckoutSession,
};
use stripe_core::customer::CreateCustomer;
use uuid::Uuid;

use crate::error::{BillingError, Result};
use crate::types::{
    CheckoutRequest, CheckoutSession, CheckoutStatus, Invoice, InvoiceLine, InvoicePage,
    InvoicePreview, Subscription,
};
use crate::webhook::{DEFAULT_TOLERANCE, WebhookEvent, verify_webhook};

/// How long one request may take. Stripe answers in well under a second; a minute covers its
/// slowest calls (invoice previews of large subscriptions) without holding a job forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where billing finds Stripe, and the secrets it needs. Loaded once with the rest of the
/// settings.
#[derive(Clone)]
pub struct StripeConfig {
    /// `sk_live_...`, `sk_test_...` or a restricted `rk_...` key.
    pub secret_key: SecretString,
    /// `https://api.stripe.com/` when `None`; a loopback stand-in in tests. Requests go to
    /// `<api_base>/v1/...`.
    pub api_base: Option<String>,
    /// `whsec_...`, the endpoint's signing secret, for [`Stripe::verify_webhook`].
    pub webhook_secret: Option<SecretString>,
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("secret_key", &"[redacted]")
            .field("api_base", &self.api_base)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// A Stripe client. Cheap to clone; clones share the configuration.
///
/// No call retries by itself: a [`BillingError::Transient`] goes back to the caller, whose job
/// runner retries (with the same idempotency key where the call takes one).
#[derive(Clone)]
pub struct Stripe {
    inner: Arc<Inner>,
}

struct Inner {
    client: stripe::Client,
    /// Kept to scrub it from any error text.
    secret_key: SecretString,
    webhook_secret: Option<SecretString>,
    api_base: String,
}

impl fmt::Debug for Stripe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stripe")
            .field("api_base", &self.inner.api_base)
            .finish_non_exhaustive()
    }
}

impl Stripe {
    /// # Errors
    /// [`BillingError::Invalid`] for an empty key, a key that cannot be sent in a header, or an
    /// `api_base` that is not an http(s) URL.
    pub fn new(config: StripeConfig) -> Result<Self> {
        let secret = config.secret_key.expose_secret();
        if secret.trim().is_empty() {
            return Err(BillingError::Invalid(
                "the Stripe secret key is empty".to_owned(),
            ));
        }
        let api_base = match config.api_base {
            None => "https://api.stripe.com/".to_owned(),
            Some(base) if base.starts_with("http://") || base.starts_with("https://") => {
                // async-stripe appends `v1/...` to the base as given.
                if base.ends_with('/') {
                    base
                } else {
                    format!("{base}/")
                }
            }
            Some(base) => {
                return Err(BillingError::Invalid(format!(
                    "the Stripe API base {base:?} is not an http(s) URL"
                )));
            }
        };
        let client = stripe::ClientBuilder::new(secret)
            .url(api_base.clone())
            .timeout(REQUEST_TIMEOUT)
            .app_info(
                "WorkflowOps",
                Some(env!("CARGO_PKG_VERSION").to_owned()),
                None,
            )
            // Each call is one attempt: retrying is the caller's decision (see `Stripe`).
            .request_strategy(RequestStrategy::Once)
            .build()
            .map_err(|e| BillingError::from_stripe(e, secret))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                secret_key: config.secret_key,
                webhook_secret: config.webhook_secret,
                api_base,
            }),
        })
    }

    /// Creates a customer for a tenant (`metadata[tenant_id]`), returning its `cus_...` id.
    ///
    /// # Errors
    /// See [`BillingError`].
    pub async fn create_customer(
        &self,
        name: &str,
        email: Option<&str>,
        tenant_id: Uuid,
        idempotency_key: &str,
    ) -> Result<String> {
        let mut request = CreateCustomer::new().name(name).metadata(HashMap::from([(
            "tenant_id".to_owned(),
            tenant_id.to_string(),
        )]));
        if let Some(email) = email {
            request = request.email(email);
        }
        let customer = request
            .customize()
            .request_strategy(idempotent(idempotency_key)?)
            .send(&self.inner.client)
            .await
            .map_err(|e| self.error(e))?;
        Ok(customer.id.as_str().to_owned())
    }

    /// Opens a Checkout Session that subscribes `req.customer` to `req.price_id`.
    ///
    /// # Errors
    /// See [`BillingError`]; an unknown price is `Refused` with code `resource_missing`.
    pub async fn create_checkout_session(&self, req: &CheckoutRequest) -> Result<CheckoutSession> {
        let metadata: HashMap<String, String> = req.metadata.iter().cloned().collect();
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(req.price_id.clone());
        item.quantity = Some(1);
        let mut subscription_data = CreateCheckoutSessionSubscriptionData::new();
        subscription_data.metadata = Some(metadata.clone());
        let session = CreateCheckoutSession::new()
            .mode(stripe_checkout::CheckoutSessionMode::Subscription)
            .customer(req.customer.as_str())
            .line_items(vec![item])
            .success_url(req.success_url.as_str())
            .cancel_url(req.cancel_url.as_str())
            .client_reference_id(req.client_reference_id.as_str())
            .metadata(metadata)
            .subscription_data(subscription_data)
            .customize()
            .request_strategy(idempotent(&req.idempotency_key)?)
            .send(&self.inner.client)
            .await
            .map_err(|e| self.error(e))?;
        let url = session.url.ok_or_else(|| {
            BillingError::Invalid(format!(
                "Stripe returned Checkout Session {} without a url",
                session.id.as_str()
            ))
        })?;
        Ok(CheckoutSession {
            id: session.id.as_str().to_owned(),
            url,
        })
    }

    /// Expires an open Checkout Session (`POST /v1/checkout/sessions/{id}/expire`) so that it
    /// can no longer be paid, and returns where it stands now: `Expired`, or, when it was not
    /// open any more, what Stripe says it is (`Complete` when it was paid meanwhile). A session
    /// Stripe does not know is `Expired`: nobody can pay it.
    ///
    /// # Errors
    /// See [`BillingError`].
    pub async fn expire_checkout_session(&self, id: &str) -> Result<CheckoutStatus> {
        let refused = match ExpireCheckoutSession::new(id)
            .send(&self.inner.client)
            .await
        {
            Ok(session) => return checkout_status(id, session.status.as_ref()),
            Err(e) => self.error(e),
        };
        match &refused {
            BillingError::Refused { code, .. } if code.as_deref() == Some("resource_missing") => {
                Ok(CheckoutStatus::Expired)
            }
            // Only open sessions can be expired: Stripe says so in prose only, so ask it what the
            // session is instead of reading the message.
            BillingError::Refused { status: 400, .. } => {
                match self.checkout_session_status(id).await? {
                    CheckoutStatus::Open => Err(refused),
                    done => Ok(done),
                }
            }
            _ => Err(refused),
        }
    }

    /// Where a Checkout Session stands.
    ///
    /// # Errors
    /// See [`BillingError`]; an unknown id is `Refused` with code `resource_missing`.
    pub async fn checkout_session_status(&self, id: &str) -> Result<CheckoutStatus> {
        let session = RetrieveCheckoutSession::new(id)
            .send(&self.inner.client)
            .await
            .map_err(|e| self.error(e))?;
        checkout_status(id, session.status.as_ref())
    }

    /// Opens a billing portal session for the customer and returns its URL (valid for a few
    /// minutes, so it is made when the user asks, not stored).
    ///
    /// # Errors
    /// See [`BillingError`].
    pub async fn create_portal_session(&self, customer: &str, return_url: &str) -> Result<String> {
        let session = CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url)
            .send(&self.inner.client)
            .await
            .map_err(|e| self.error(e))?;
        Ok(session.url)
    }

    /// # Errors
    /// See [`BillingError`]; an unknown id is `Refused` with code `resource_missing`.
    pub async fn subscription(&self, id: &str) -> Result<Subscription> {
        let subscription = RetrieveSubscription::new(id)
            .send(&self.inner.client)
            .await
            .map_err(|e| self.error(e))?;
        subscription_from(&subscription)
    }

    /// Moves the subscription item to another price, prorating the rest of the period.
    ///
    /// # Errors
    /// See [`BillingError`].
    pub async fn change_price(
        &self,
        subscription_id: &str,
        item_id: &str,
        new_price_id: &str,
        idempotency_key: &str,
    ) -> Result<Subscription> {
        let mut item = UpdateSubscriptionItems::new();
        item.id = Some(item_id.to_owned());
        item.price = Some(new_price_id.to_owned());
        let subscription = UpdateSubscription::new(subscription_id)
            .items(vec![item])
            .proration_behavior(UpdateSubscriptionProrationBehavior::CreateProrations)
            .customize()
            .request_strategy(idempotent(idempotency_key)?)
            .send(&self.inner.client)
            .await
            .map_err(|e| self.error(e))?;
        subscription_from(&subscription)
    }

    /// Schedules cancellation at the end of the period (`true`) or takes it back (`false`).
    /// Setting a flag is idempotent by nature, so no key is needed.
    ///
    /// # Errors
    /// See [`BillingError`].
    pub async fn set_cancel_at_period_end(
        &self,
        subscription_id: &str,
        cancel: bool,
    ) -> Result<Subscription> {
        let subscription = UpdateSubscription::new(subscription_id)
            .cancel_at_period_end(cancel)
            .send(&self.inner.client)
            .await
            .map_err(|e| self.error(e))?;
        subscription_from(&subscription)
    }

    /// Cancels the subscription now (Stripe's `DELETE /v1/subscriptions/{id}`), without a
    /// final invoice or proration.
    ///
    /// # Errors
    /// See [`BillingError`]; an already canceled subscription is `Refused`.
    pub async fn cancel_now(&self, subscription_id: &str) -> Result<Subscription> {
        let subscription = CancelSubscription::new(subscription_id)
            .send(&self.inner.client)
            .await
            .map_err(|e| self.error(e))?;
        subscription_from(&subscription)
    }

    /// One page of the customer's invoices, newest first. `limit` is capped at Stripe's 100;
    /// pass the last id of a page as `starting_after` for the next.
    ///
    /// # Errors
    /// See [`BillingError`].
    pub async fn invoices(
        &self,
        customer: &str,
        limit: u8,
        starting_after: Option<&str>,
    ) -> Result<InvoicePage> {
        let mut request = ListInvoice::new()
            .customer(customer)
            .limit(i64::from(limit.clamp(1, 100)));
        if let Some(after) = starting_after {
            request = request.starting_after(after);
        }
        let list = request
            .send(&self.inner.client)
            .await
            .map_err(|e| self.error(e))?;
        Ok(InvoicePage {
            invoices: list.data.iter().map(invoice_from).collect::<Result<_>>()?,
            has_more: list.has_more,
        })
    }

    /// The invoice Stripe would issue next for the subscription.
    ///
    /// # Errors
    /// See [`BillingError`]; a canceled subscription has no next invoice (`Refused`,
    /// `invoice_upcoming_none`).
    pub async fn preview_invoice(
        &self,
        customer: &str,
        subscription: &str,
    ) -> Result<InvoicePreview> {
        let invoice = CreatePreviewInvoice::new()
            .customer(customer)
            .subscription(subscription)
            .send(&self.inner.client)
            .await
            .map_err(|e| self.error(e))?;
        Ok(InvoicePreview {
            currency: invoice.currency.to_string(),
            amount_due: invoice.amount_due,
            total: invoice.total,
            next_payment_attempt: invoice.next_payment_attempt.map(time).transpose()?,
            period_end: Some(time(invoice.period_end)?),
            lines: invoice
                .lines
                .data
                .iter()
                .map(|line| {
                    Ok(InvoiceLine {
                        description: line.description.clone(),
                        amount: line.amount,
                        period_start: Some(time(line.period.start)?),
                        period_end: Some(time(line.period.end)?),
                    })
                })
                .collect::<Result<_>>()?,
        })
    }

    /// [`verify_webhook`] with the configured signing secret, the clock and Stripe's
    /// five-minute tolerance.
    ///
    /// # Errors
    /// [`BillingError::Invalid`] when no signing secret is configured or the event does not
    /// verify.
    pub fn verify_webhook(&self, payload: &[u8], signature_header: &str) -> Result<WebhookEvent> {
        let secret = self.inner.webhook_secret.as_ref().ok_or_else(|| {
            BillingError::Invalid("no Stripe webhook signing secret is configured".to_owned())
        })?;
        verify_webhook(
            payload,
            signature_header,
            secret.expose_secret(),
            Utc::now(),
            DEFAULT_TOLERANCE,
        )
    }

    fn error(&self, err: stripe::StripeError) -> BillingError {
        BillingError::from_stripe(err, self.inner.secret_key.expose_secret())
    }
}

fn checkout_status(
    id: &str,
    status: Option<&stripe_checkout::CheckoutSessionStatus>,
) -> Result<CheckoutStatus> {
    use stripe_checkout::CheckoutSessionStatus as S;
    match status {
        Some(S::Open) => Ok(CheckoutStatus::Open),
        Some(S::Complete) => Ok(CheckoutStatus::Complete),
        Some(S::Expired) => Ok(CheckoutStatus::Expired),
        other => Err(BillingError::Invalid(format!(
            "Stripe returned Checkout Session {id} with status {other:?}"
        ))),
    }
}

fn idempotent(key: &str) -> Result<RequestStrategy> {
    let key = IdempotencyKey::new(key)
        .map_err(|e| BillingError::Invalid(format!("idempotency key {key:?}: {e}")))?;
    Ok(RequestStrategy::Idempotent(key))
}

fn time(unix: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(unix, 0)
        .ok_or_else(|| BillingError::Invalid(format!("Stripe timestamp {unix} is out of range")))
}

fn subscription_from(subscription: &stripe_billing::Subscription) -> Result<Subscription> {
    let item = subscription.items.data.first();
    Ok(Subscription {
        id: subscription.id.as_str().to_owned(),
        customer: subscription.customer.id().as_str().to_owned(),
        status: subscription.status.as_str().to_owned(),
        price_id: item.map(|item| item.price.id.as_str().to_owned()),
        item_id: item.map(|item| item.id.as_str().to_owned()),
        // The API version async-stripe speaks has the period on items only.
        current_period_end: item.map(|item| time(item.current_period_end)).transpose()?,
        cancel_at_period_end: subscription.cancel_at_period_end,
        metadata: subscription
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    })
}

fn invoice_from(invoice: &stripe_billing::Invoice) -> Result<Invoice> {
    let id = invoice.id.as_ref().ok_or_else(|| {
        BillingError::Invalid("Stripe listed an invoice without an id".to_owned())
    })?;
    Ok(Invoice {
        id: id.as_str().to_owned(),
        number: invoice.number.clone(),
        status: invoice.status.as_ref().map(|s| s.as_str().to_owned()),
        currency: invoice.currency.to_string(),
        amount_due: invoice.amount_due,
        amount_paid: invoice.amount_paid,
        total: invoice.total,
        created: time(invoice.created)?,
        period_start: time(invoice.period_start)?,
        period_end: time(invoice.period_end)?,
        hosted_invoice_url: invoice.hosted_invoice_url.clone(),
        invoice_pdf: invoice.invoice_pdf.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk_test_never_shown_4242";

    fn config(api_base: Option<&str>) -> StripeConfig {
        StripeConfig {
            secret_key: SecretString::from(KEY),
            api_base: api_base.map(str::to_owned),
            webhook_secret: None,
        }
    }

    #[test]
    fn configuration_is_checked_and_debug_hides_the_secrets() {
        let stripe =
            Stripe::new(config(Some("http://127.0.0.1:9"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stripe.inner.api_base, "http://127.0.0.1:9/");
        assert!(!format!("{stripe:?}").contains(KEY));
        assert!(!format!("{:?}", config(None)).contains(KEY));

        let err = Stripe::new(config(Some("127.0.0.1:9"))).expect_err("no scheme");
        assert!(err.to_string().contains("not an http(s) URL"), "{err}");
        let mut empty = config(None);
        empty.secret_key = SecretString::from(" ");
        assert!(Stripe::new(empty).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_stripe_is_transient_and_the_error_hides_the_key() {
        // Bound and dropped at once: nothing listens there now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .unwrap_or_else(|e| panic!("{e}"));
        let stripe = Stripe::new(config(Some(&format!("http://127.0.0.1:{port}"))))
            .unwrap_or_else(|e| panic!("{e}"));
        let err = stripe
            .subscription("sub_1")
            .await
            .expect_err("nobody listens");
        assert!(err.is_transient(), "{err:?}");
        assert!(!format!("{err} {err:?}").contains(KEY));
    }

    #[test]
    fn webhook_verification_needs_a_configured_secret() {
        let stripe = Stripe::new(config(None)).unwrap_or_else(|e| panic!("{e}"));
        let err = stripe
            .verify_webhook(b"{}", "t=1,v1=00")
            .expect_err("no secret");
        assert!(
            err.to_string().contains("no Stripe webhook signing secret"),
            "{err}"
        );

        let mut with_secret = config(None);
        with_secret.webhook_secret = Some(SecretString::from("whsec_1"));
        let stripe = Stripe::new(with_secret).unwrap_or_else(|e| panic!("{e}"));
        let body =
            br#"{"id":"evt_1","type":"invoice.paid","created":1700000000,"data":{"object":{}}}"#;
        let header = crate::signature_header(body, "whsec_1", Utc::now().timestamp());
        let event = stripe
            .verify_webhook(body, &header)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.kind, "invoice.paid");
    }
}
