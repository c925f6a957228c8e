//! A Stripe stand-in on a loopback port, for end-to-end tests of billing.
//!
//! It speaks Stripe's HTTP API for the calls WorkflowOps makes: form-encoded requests with
//! bracket notation (`line_items[0][price]=price_x`), JSON answers whose objects carry their
//! `"object"` type and every field async-stripe's types require (API version [`API_VERSION`],
//! the one `billing` sends), Stripe's error body `{"error": {"type", "code", "message",
//! "param"}}`, `Request-Id` on every answer, and idempotency keys (a repeated key on the same
//! endpoint with the same parameters replays the first answer with `Idempotent-Replayed: true`;
//! other parameters or another endpoint get 400 `idempotency_error`; only successes are kept, as
//! Stripe keeps no result for a request that failed validation). Unknown parameters are refused
//! (`parameter_unknown`) as Stripe does, which catches a client sending what it should not.
//!
//! Served: `POST /v1/customers`, `GET /v1/customers/{id}`, `POST /v1/checkout/sessions` (mode
//! `subscription`, one line item), `GET /v1/checkout/sessions/{id}`,
//! `POST /v1/checkout/sessions/{id}/expire` (an open session only, as Stripe: it cannot be paid
//! afterwards, and `checkout.session.expired` goes out), `POST /v1/billing_portal/sessions`, `GET|POST|DELETE /v1/subscriptions/{id}`,
//! `GET /v1/invoices`, `POST /v1/invoices/create_preview`; and for a browser, the hosted
//! Checkout page `GET /checkout/{id}` whose Pay button completes the session and redirects (303)
//! to its `success_url`, and a bare portal page `GET /portal/{id}`.
//!
//! What a customer or Stripe's clock does is done by test controls instead:
//! [`StripePeer::complete_checkout`], [`StripePeer::portal_cancel`],
//! [`StripePeer::fail_payment`], [`StripePeer::renew`]. They send signed webhook events (made
//! with `billing::signature_header`) to the webhook URL and return once each was answered;
//! events caused by API calls go out right after the answer, one at a time in the order they
//! happened, so tests wait for them with [`StripePeer::wait_for_events`].
//!
//! Simplifications, on purpose: prices are fixed at start, a subscription has one item, a price
//! change prorates nothing (no proration lines), taxes, discounts and trials do not exist, and
//! a period is a day, a week, 30 days or 365 days.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The API version async-stripe 1.0.0-rc.10 (and so `billing`) sends as `Stripe-Version`; the
/// objects here have its shape (billing periods on subscription items, an invoice's
/// subscription under `parent.subscription_details`).
pub const API_VERSION: &str = "2026-09-30.endive";
/// Bodies above this get 413.
const BODY_LIMIT: usize = 1024 * 1024;
const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------------------
// Public interface
// ---------------------------------------------------------------------------------------------

/// A recurring price the stand-in knows (Stripe's prices are made in the dashboard, not by
/// WorkflowOps, so they are fixed at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPrice {
    /// `price_...`
    pub id: String,
    /// Minor units per period.
    pub unit_amount: i64,
    /// Lowercase ISO code (`eur`).
    pub currency: String,
    /// `day`, `week`, `month` or `year`.
    pub interval: String,
    /// The product's name, shown on invoice lines. Defaults to the price id.
    pub product_name: String,
}

impl PeerPrice {
    pub fn new(id: &str, unit_amount: i64, currency: &str, interval: &str) -> Self {
        Self {
            id: id.to_owned(),
            unit_amount,
            currency: currency.to_owned(),
            interval: interval.to_owned(),
            product_name: id.to_owned(),
        }
    }

    fn product(&self) -> String {
        format!(
            "prod_{}",
            self.id.strip_prefix("price_").unwrap_or(&self.id)
        )
    }

    fn period_secs(&self) -> i64 {
        match self.interval.as_str() {
            "day" => DAY,
            "week" => 7 * DAY,
            "year" => 365 * DAY,
            _ => 30 * DAY,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StripePeerConfig {
    /// The only key accepted as `Authorization: Bearer <key>`.
    pub secret_key: String,
    /// Signs webhook events (`Stripe-Signature`).
    pub webhook_secret: String,
    /// Where events are POSTed; can be set later with [`StripePeer::set_webhook_url`]. Events
    /// raised while it is unset are recorded as undelivered (and can be resent).
    pub webhook_url: Option<String>,
    pub prices: Vec<PeerPrice>,
}

impl Default for StripePeerConfig {
    fn default() -> Self {
        Self {
            secret_key: "sk_test_workflowops_peer_4242".to_owned(),
            webhook_secret: "whsec_workflowops_peer".to_owned(),
            webhook_url: None,
            prices: Vec::new(),
        }
    }
}

/// One request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: String,
    /// In arrival order, names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The parameters: the form body of a POST, the query string otherwise.
    pub fn params(&self) -> Vec<(String, String)> {
        let raw = if self.method == "POST" {
            self.body.as_slice()
        } else {
            self.query.as_bytes()
        };
        form_urlencoded::parse(raw).into_owned().collect()
    }

    /// The first value of the parameter `name` (`line_items[0][price]`).
    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveredEvent {
    /// `evt_...` (the same for a resent event).
    pub id: String,
    /// The event's `type`.
    pub kind: String,
    pub event: Value,
    /// The body as sent, byte for byte (what the signature covers).
    pub body: Vec<u8>,
    /// The `Stripe-Signature` header sent.
    pub signature: String,
    /// The receiver's status, `None` when there was no answer.
    pub status: Option<u16>,
    /// Why there was no answer (no webhook URL, connection refused, timeout).
    pub error: Option<String>,
}

/// What completing a Checkout Session created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedCheckout {
    pub customer: String,
    pub subscription: String,
    /// The paid first invoice.
    pub invoice: String,
}

/// A running stand-in. The server stops when this is dropped.
pub struct StripePeer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
    courier: JoinHandle<()>,
}

impl Drop for StripePeer {
    fn drop(&mut self) {
        self.server.abort();
        self.courier.abort();
    }
}

impl StripePeer {
    /// # Errors
    /// When a price has an unknown interval or a duplicate id, or the port cannot be bound.
    pub async fn start(config: StripePeerConfig) -> anyhow::Result<Self> {
        let mut prices = BTreeMap::new();
        for price in config.prices {
            if !["day", "week", "month", "year"].contains(&price.interval.as_str()) {
                bail!(
                    "Stripe peer: price {} has interval {:?}",
                    price.id,
                    price.interval
                );
            }
            if prices.insert(price.id.clone(), price).is_some() {
                bail!("Stripe peer: a price id is given twice");
            }
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("Stripe peer: bind")?;
        let addr = listener
            .local_addr()
            .context("Stripe peer: local address")?;
        // reqwest is built without a default crypto provider (one TLS backend for the tree).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("Stripe peer: HTTP client")?;
        let (outbox, inbox) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            secret_key: config.secret_key,
            webhook_secret: config.webhook_secret,
            http,
            outbox,
            delivered: watch::Sender::new(0),
            state: Mutex::new(Books {
                prices,
                created: now(),
                webhook_url: config.webhook_url,
                ..Books::default()
            }),
        });
        let courier = tokio::spawn(courier(Arc::clone(&shared), inbox));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("Stripe peer stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            shared,
            server,
            courier,
        })
    }

    /// `http://127.0.0.1:PORT`: `billing::StripeConfig::api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn secret_key(&self) -> &str {
        &self.shared.secret_key
    }

    pub fn webhook_secret(&self) -> &str {
        &self.shared.webhook_secret
    }

    pub fn set_webhook_url(&self, url: &str) {
        self.shared.lock().webhook_url = Some(url.to_owned());
    }

    /// Every request so far, in arrival order (checkout pages included).
    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().requests.clone()
    }

    /// Every delivery attempt so far, in order.
    pub fn events(&self) -> Vec<DeliveredEvent> {
        self.shared.lock().deliveries.clone()
    }

    /// Waits until at least `n` delivery attempts were made and returns all of them.
    ///
    /// # Panics
    /// When fewer than `n` were made within `timeout`; the message says which were.
    pub async fn wait_for_events(&self, n: usize, timeout: Duration) -> Vec<DeliveredEvent> {
        let mut delivered = self.shared.delivered.subscribe();
        let done = tokio::time::timeout(timeout, delivered.wait_for(|&count| count >= n)).await;
        let events = self.events();
        if !matches!(done, Ok(Ok(_))) {
            let seen: Vec<String> = events
                .iter()
                .map(|e| format!("{} {:?}", e.kind, e.status))
                .collect();
            panic!(
                "Stripe peer: waited {timeout:?} for {n} event(s), {} went out: {seen:?}",
                events.len()
            );
        }
        events
    }

    /// The object with this id as the API would return it now (customer, Checkout Session,
    /// subscription or invoice).
    pub fn object(&self, id: &str) -> Option<Value> {
        let books = self.shared.lock();
        let base = &self.shared.base_url;
        if let Some(customer) = books.customers.get(id) {
            return Some(books.customer_json(customer));
        }
        if let Some(session) = books.sessions.get(id) {
            return Some(books.session_json(session, base));
        }
        if let Some(sub) = books.subscriptions.get(id) {
            return Some(books.subscription_json(sub));
        }
        books
            .invoices
            .iter()
            .find(|invoice| invoice.id == id)
            .map(|invoice| books.invoice_json(invoice, base))
    }

    /// Makes the next `n` API requests (`/v1/...`) answer `status` with Stripe's error body:
    /// `api_error` for 5xx, `rate_limit` (no `Retry-After`, as Stripe) for 429, a plain
    /// `invalid_request_error` otherwise. They are still recorded.
    ///
    /// # Panics
    /// When `status` is not 4xx or 5xx.
    pub fn fail_next(&self, n: usize, status: u16) {
        assert!(
            (400..600).contains(&status),
            "Stripe peer: fail_next needs a 4xx or 5xx status, not {status}"
        );
        if n > 0 {
            self.shared.lock().faults.push_back((status, n));
        }
    }

    /// The customer pays on the hosted page: the subscription starts (active, one period from
    /// now, metadata from `subscription_data[metadata]`) with a paid first invoice, and
    /// `checkout.session.completed`, `customer.subscription.created` and `invoice.paid` are
    /// delivered before this returns.
    ///
    /// # Errors
    /// When the session does not exist or is not open.
    pub async fn complete_checkout(&self, session_id: &str) -> anyhow::Result<CompletedCheckout> {
        let (completed, waits) = {
            let mut books = self.shared.lock();
            let (completed, events) = books.complete_checkout(session_id, &self.shared.base_url)?;
            (completed, self.shared.send(events, true))
        };
        collect(waits).await;
        Ok(completed)
    }

    /// The customer cancels in the billing portal: `cancel_at_period_end` becomes true and
    /// `customer.subscription.updated` is delivered before this returns.
    ///
    /// # Errors
    /// When the subscription does not exist or is canceled.
    pub async fn portal_cancel(&self, subscription_id: &str) -> anyhow::Result<()> {
        let waits = {
            let mut books = self.shared.lock();
            let mut after = books.live_subscription(subscription_id)?;
            let before = books.subscription_json(&after);
            after.schedule_cancel(true, now());
            let event = books.updated_event(&before, after, &Cause::default());
            self.shared.send(event.into_iter().collect(), true)
        };
        collect(waits).await;
        Ok(())
    }

    /// The renewal payment fails: the period moves on, an open invoice for it is created, the
    /// subscription becomes `past_due`, and `invoice.payment_failed` then
    /// `customer.subscription.updated` are delivered before this returns. Returns the invoice.
    ///
    /// # Errors
    /// When the subscription does not exist or is canceled.
    pub async fn fail_payment(&self, subscription_id: &str) -> anyhow::Result<String> {
        self.renewal(subscription_id, false).await
    }

    /// The subscription renews and the payment succeeds: the period moves on, a paid invoice
    /// is created (status back to `active`), and `invoice.paid` then
    /// `customer.subscription.updated` are delivered before this returns. Returns the invoice.
    ///
    /// # Errors
    /// When the subscription does not exist or is canceled.
    pub async fn renew(&self, subscription_id: &str) -> anyhow::Result<String> {
        self.renewal(subscription_id, true).await
    }

    /// Delivers an event that already went out (or failed to) once more, unchanged but for a
    /// fresh signature, as Stripe's retries and the dashboard's "Resend" do.
    ///
    /// # Errors
    /// When no event has this id.
    pub async fn resend(&self, event_id: &str) -> anyhow::Result<DeliveredEvent> {
        let waits = {
            let books = self.shared.lock();
            let event = books
                .events
                .get(event_id)
                .with_context(|| format!("Stripe peer: no event {event_id}"))?
                .clone();
            self.shared.send(vec![event], true)
        };
        collect(waits)
            .await
            .pop()
            .context("Stripe peer: the courier stopped")
    }

    async fn renewal(&self, subscription_id: &str, paid: bool) -> anyhow::Result<String> {
        let (invoice, waits) = {
            let mut books = self.shared.lock();
            let (invoice, events) = books.renew(subscription_id, paid, &self.shared.base_url)?;
            (invoice, self.shared.send(events, true))
        };
        collect(waits).await;
        Ok(invoice)
    }
}

async fn collect(waits: Vec<oneshot::Receiver<DeliveredEvent>>) -> Vec<DeliveredEvent> {
    let mut delivered = Vec::with_capacity(waits.len());
    for wait in waits {
        if let Ok(event) = wait.await {
            delivered.push(event);
        }
    }
    delivered
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// `prefix_` and 24 random characters, as Stripe's ids look.
fn new_id(prefix: &str) -> String {
    let random = Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &random[..24])
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

struct Shared {
    base_url: String,
    secret_key: String,
    webhook_secret: String,
    http: reqwest::Client,
    /// Events for the courier, in the order they happened.
    outbox: mpsc::UnboundedSender<Outbound>,
    /// How many delivery attempts were made; wakes `wait_for_events`.
    delivered: watch::Sender<usize>,
    state: Mutex<Books>,
}

impl Shared {
    /// A panicking test must not wedge every other request, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Books> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues events for delivery, in order. With `wait`, returns a receiver per event that
    /// answers once it was delivered. Called with the books locked, so that events leave in
    /// the order the changes were made.
    fn send(&self, events: Vec<Value>, wait: bool) -> Vec<oneshot::Receiver<DeliveredEvent>> {
        let mut waits = Vec::new();
        for event in events {
            let done = wait.then(|| {
                let (done, receiver) = oneshot::channel();
                waits.push(receiver);
                done
            });
            // The courier lives as long as the peer; if it is gone, nobody is waiting either.
            let _ = self.outbox.send(Outbound { event, done });
        }
        waits
    }

    async fn deliver(&self, event: &Value) -> DeliveredEvent {
        // Stripe sends events pretty-printed; verifying against the raw body is the point.
        let body = serde_json::to_vec_pretty(event).unwrap_or_default();
        let signature = billing::signature_header(&body, &self.webhook_secret, now());
        let url = self.lock().webhook_url.clone();
        let (status, error) = match url {
            None => (None, Some("no webhook URL is set".to_owned())),
            Some(url) => {
                let sent = self
                    .http
                    .post(url)
                    .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                    .header(
                        header::USER_AGENT,
                        "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    )
                    .header("stripe-signature", &signature)
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(response) => (Some(response.status().as_u16()), None),
                    Err(e) => (None, Some(e.to_string())),
                }
            }
        };
        let delivered = DeliveredEvent {
            id: event["id"].as_str().unwrap_or_default().to_owned(),
            kind: event["type"].as_str().unwrap_or_default().to_owned(),
            event: event.clone(),
            body,
            signature,
            status,
            error,
        };
        self.lock().deliveries.push(delivered.clone());
        self.delivered.send_modify(|count| *count += 1);
        delivered
    }
}

struct Outbound {
    event: Value,
    done: Option<oneshot::Sender<DeliveredEvent>>,
}

/// Delivers events one at a time, in the order they were queued.
async fn courier(shared: Arc<Shared>, mut inbox: mpsc::UnboundedReceiver<Outbound>) {
    while let Some(outbound) = inbox.recv().await {
        let delivered = shared.deliver(&outbound.event).await;
        if let Some(done) = outbound.done {
            let _ = done.send(delivered);
        }
    }
}

/// Everything the stand-in knows: Stripe's objects, the requests, the events.
#[derive(Default)]
struct Books {
    prices: BTreeMap<String, PeerPrice>,
    /// When the stand-in started (the prices' creation time).
    created: i64,
    webhook_url: Option<String>,
    customers: BTreeMap<String, Customer>,
    sessions: BTreeMap<String, Session>,
    portal_sessions: BTreeMap<String, PortalSession>,
    subscriptions: BTreeMap<String, Sub>,
    /// In creation order.
    invoices: Vec<Invoice>,
    /// By id, for resending.
    events: BTreeMap<String, Value>,
    deliveries: Vec<DeliveredEvent>,
    /// By idempotency key.
    idempotent: HashMap<String, Saved>,
    /// `(status, how many more)`, used in order.
    faults: VecDeque<(u16, usize)>,
    requests: Vec<Received>,
}

#[derive(Clone)]
struct Customer {
    id: String,
    created: i64,
    name: Option<String>,
    email: Option<String>,
    description: Option<String>,
    metadata: BTreeMap<String, String>,
    invoice_prefix: String,
    next_invoice_sequence: u32,
}

#[derive(Clone)]
struct Session {
    id: String,
    created: i64,
    customer: Option<String>,
    customer_email: Option<String>,
    price: String,
    quantity: u64,
    success_url: Option<String>,
    cancel_url: Option<String>,
    client_reference_id: Option<String>,
    metadata: BTreeMap<String, String>,
    subscription_metadata: BTreeMap<String, String>,
    /// `open`, `complete`, `expired`.
    status: &'static str,
    subscription: Option<String>,
}

struct PortalSession {
    return_url: Option<String>,
}

#[derive(Clone)]
struct Sub {
    id: String,
    created: i64,
    customer: String,
    item_id: String,
    item_created: i64,
    price: String,
    quantity: u64,
    period_start: i64,
    period_end: i64,
    status: &'static str,
    cancel_at_period_end: bool,
    cancel_at: Option<i64>,
    canceled_at: Option<i64>,
    ended_at: Option<i64>,
    cancellation_reason: Option<&'static str>,
    metadata: BTreeMap<String, String>,
    latest_invoice: Option<String>,
}

impl Sub {
    fn schedule_cancel(&mut self, cancel: bool, at: i64) {
        self.cancel_at_period_end = cancel;
        // Since API version 2025-03-31 Stripe shows a period-end cancellation as `cancel_at`
        // too; `canceled_at` is the time of the request that scheduled it.
        if cancel {
            self.cancel_at = Some(self.period_end);
            self.canceled_at = Some(at);
            self.cancellation_reason = Some("cancellation_requested");
        } else {
            self.cancel_at = None;
            self.canceled_at = None;
            self.cancellation_reason = None;
        }
    }
}

#[derive(Clone)]
struct Invoice {
    id: String,
    number: Option<String>,
    customer: String,
    subscription: Option<String>,
    subscription_item: Option<String>,
    subscription_metadata: BTreeMap<String, String>,
    price: String,
    quantity: u64,
    created: i64,
    /// `draft`, `open`, `paid`.
    status: &'static str,
    billing_reason: &'static str,
    period_start: i64,
    period_end: i64,
    line_id: String,
    line_start: i64,
    line_end: i64,
    attempt_count: u32,
    next_payment_attempt: Option<i64>,
    paid_at: Option<i64>,
    finalized_at: Option<i64>,
}

/// A successful answer kept for its idempotency key.
#[derive(Clone)]
struct Saved {
    endpoint: String,
    params: Vec<u8>,
    status: u16,
    body: Value,
}

/// The API request an event comes from (`event.request`), if any.
#[derive(Default)]
struct Cause {
    request_id: Option<String>,
    idempotency_key: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Errors in Stripe's shape
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct ApiError {
    status: u16,
    kind: &'static str,
    code: Option<&'static str>,
    message: String,
    param: Option<String>,
}

impl ApiError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            kind: "invalid_request_error",
            code: None,
            message: message.into(),
            param: None,
        }
    }

    fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// `No such customer: 'cus_x'`, 404 for the object in the path, 400 for one in a parameter.
    fn no_such(what: &str, id: &str, param: &str, status: u16) -> Self {
        Self {
            status,
            ..Self::invalid(format!("No such {what}: '{id}'"))
        }
        .code("resource_missing")
        .param(param)
    }

    fn missing_param(name: &str) -> Self {
        Self::invalid(format!("Missing required param: {name}."))
            .code("parameter_missing")
            .param(name)
    }

    fn body(&self) -> Value {
        let mut error = json!({"type": self.kind, "message": self.message});
        if let Some(code) = self.code {
            error["code"] = json!(code);
            error["doc_url"] = json!(format!(
                "https://stripe.com/docs/error-codes/{}",
                code.replace('_', "-")
            ));
        }
        if let Some(param) = &self.param {
            error["param"] = json!(param);
        }
        json!({ "error": error })
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The canned answer of `fail_next`.
fn injected(status: u16) -> ApiError {
    match status {
        429 => ApiError {
            status,
            ..ApiError::invalid(
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
            )
        }
        .code("rate_limit"),
        500.. => ApiError {
            status,
            kind: "api_error",
            code: None,
            message: "An unknown error occurred".to_owned(),
            param: None,
        },
        _ => ApiError {
            status,
            ..ApiError::invalid("Request refused by the Stripe peer's fault injection.")
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

type Params = Vec<(String, String)>;

fn get<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `prefix[key]=value` pairs as a map (`metadata`, `subscription_data[metadata]`).
fn hash(params: &Params, prefix: &str) -> BTreeMap<String, String> {
    params
        .iter()
        .filter_map(|(k, v)| {
            let key = k
                .strip_prefix(prefix)?
                .strip_prefix('[')?
                .strip_suffix(']')?;
            (!key.contains('[')).then(|| (key.to_owned(), v.clone()))
        })
        .collect()
}

/// Refuses a parameter whose name (before any `[`) is not in `allowed`, as Stripe does.
fn allow(params: &Params, allowed: &[&str]) -> ApiResult<()> {
    for (key, _) in params {
        let root = key.split('[').next().unwrap_or(key);
        if root != "expand" && !allowed.contains(&root) {
            return Err(
                ApiError::invalid(format!("Received unknown parameter: {root}"))
                    .code("parameter_unknown")
                    .param(key),
            );
        }
    }
    Ok(())
}

fn boolean(params: &Params, key: &str) -> ApiResult<Option<bool>> {
    match get(params, key) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(ApiError::invalid(format!("Invalid boolean: {other}")).param(key)),
    }
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, BODY_LIMIT).await;
    let received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.as_ref().map(|b| b.to_vec()).unwrap_or_default(),
    };
    let api = received.path.starts_with("/v1/");
    let fault = {
        let mut books = shared.lock();
        books.requests.push(received.clone());
        if api {
            take_fault(&mut books.faults)
        } else {
            None
        }
    };
    let request_id = new_id("req");
    if body.is_err() {
        return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
    }
    if let Some(status) = fault {
        return stripe_response(status, &injected(status).body(), &request_id, false);
    }
    if api {
        api_request(&shared, &received, &request_id)
    } else {
        page(&shared, &received).await
    }
}

fn take_fault(faults: &mut VecDeque<(u16, usize)>) -> Option<u16> {
    let (status, left) = faults.front_mut()?;
    let status = *status;
    *left -= 1;
    if *left == 0 {
        faults.pop_front();
    }
    Some(status)
}

fn stripe_response(status: u16, body: &Value, request_id: &str, replayed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body.clone())).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(HeaderName::from_static("request-id"), value);
    }
    headers.insert(
        HeaderName::from_static("stripe-version"),
        HeaderValue::from_static(API_VERSION),
    );
    if replayed {
        headers.insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// `sk_test_****abcd`: how Stripe shows a key it refuses.
fn masked(key: &str) -> String {
    let prefix: String = key.chars().take(8).collect();
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!(
        "{prefix}{}{tail}",
        "*".repeat(key.chars().count().saturating_sub(12))
    )
}

fn authenticate(shared: &Shared, req: &Received) -> ApiResult<()> {
    let refused = |message: String| ApiError {
        status: 401,
        ..ApiError::invalid(message)
    };
    let Some(key) = req
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .filter(|key| !key.is_empty())
    else {
        return Err(refused(
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.".to_owned(),
        ));
    };
    if key != shared.secret_key {
        return Err(refused(format!(
            "Invalid API Key provided: {}",
            masked(key)
        )));
    }
    Ok(())
}

fn api_request(shared: &Shared, req: &Received, request_id: &str) -> Response {
    if let Err(e) = authenticate(shared, req) {
        return stripe_response(e.status, &e.body(), request_id, false);
    }
    let endpoint = format!("{} {}", req.method, req.path);
    let key = if req.method == "POST" {
        req.header("idempotency-key").map(str::to_owned)
    } else {
        // Stripe ignores keys on GET and DELETE.
        None
    };
    let mut books = shared.lock();
    if let Some(key) = &key
        && let Some(saved) = books.idempotent.get(key)
    {
        if saved.endpoint != endpoint {
            let e = ApiError::invalid(format!(
                "Keys for idempotent requests can only be used for the same endpoint they were first used for ('{}' vs '{endpoint}'). Try using a key other than '{key}' if you meant to execute a different request.",
                saved.endpoint
            ))
            .code("idempotency_key_in_use");
            let e = ApiError {
                kind: "idempotency_error",
                ..e
            };
            return stripe_response(e.status, &e.body(), request_id, false);
        }
        if saved.params != req.body {
            let e = ApiError {
                kind: "idempotency_error",
                ..ApiError::invalid(format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                ))
            };
            return stripe_response(e.status, &e.body(), request_id, false);
        }
        return stripe_response(saved.status, &saved.body, request_id, true);
    }
    let cause = Cause {
        request_id: Some(request_id.to_owned()),
        idempotency_key: key.clone(),
    };
    match books.route(req, &cause, &shared.base_url) {
        Ok((body, events)) => {
            if let Some(key) = key {
                books.idempotent.insert(
                    key,
                    Saved {
                        endpoint,
                        params: req.body.clone(),
                        status: 200,
                        body: body.clone(),
                    },
                );
            }
            // Sent after the answer is built but before the lock is let go, so that events
            // leave in the order of the changes; nobody waits for them here.
            shared.send(events, false);
            stripe_response(200, &body, request_id, false)
        }
        Err(e) => stripe_response(e.status, &e.body(), request_id, false),
    }
}

/// The pages a browser sees: hosted Checkout and the billing portal.
async fn page(shared: &Arc<Shared>, req: &Received) -> Response {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["checkout", id]) => checkout_page(shared, id),
        ("POST", ["checkout", id]) => {
            let completed = {
                let mut books = shared.lock();
                books
                    .complete_checkout(id, &shared.base_url)
                    .map(|(completed, events)| (completed, shared.send(events, true)))
            };
            match completed {
                // Delivered before the redirect, so the success page can already see the
                // subscription; real Stripe promises no such order.
                Ok((_, waits)) => {
                    collect(waits).await;
                    let success_url = shared
                        .lock()
                        .sessions
                        .get(*id)
                        .and_then(|s| s.success_url.clone());
                    match success_url {
                        Some(url) => {
                            Redirect::to(&url.replace("{CHECKOUT_SESSION_ID}", id)).into_response()
                        }
                        None => {
                            Html(page_html("Payment complete", "<p>Thanks!</p>")).into_response()
                        }
                    }
                }
                Err(e) => (
                    StatusCode::CONFLICT,
                    Html(page_html("Checkout", &escape(&e.to_string()))),
                )
                    .into_response(),
            }
        }
        ("GET", ["portal", id]) => {
            let return_url = shared
                .lock()
                .portal_sessions
                .get(*id)
                .map(|p| p.return_url.clone());
            match return_url {
                Some(url) => {
                    let back = url
                        .map(|url| format!(r#"<a id="return" href="{}">Return</a>"#, escape(&url)))
                        .unwrap_or_default();
                    Html(page_html("Billing portal", &back)).into_response()
                }
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn checkout_page(shared: &Shared, id: &str) -> Response {
    let books = shared.lock();
    let Some(session) = books.sessions.get(id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if session.status != "open" {
        // What Stripe's page says: an expired session is said to be expired.
        let said = if session.status == "expired" {
            "<p id=\"expired\">This Checkout Session has expired.</p>"
        } else {
            "<p>This Checkout Session is no longer active.</p>"
        };
        return (StatusCode::GONE, Html(page_html("Checkout", said))).into_response();
    }
    let Some(price) = books.prices.get(&session.price) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cancel = session
        .cancel_url
        .as_deref()
        .map(|url| format!(r#"<a id="cancel" href="{}">Back</a>"#, escape(url)))
        .unwrap_or_default();
    let body = format!(
        r#"<p id="line">{}</p><p id="total">{}</p><form method="post" action="/checkout/{}"><button type="submit" id="pay">Pay</button></form>{cancel}"#,
        escape(&line_description(price, session.quantity)),
        escape(&money(
            price.unit_amount * quantity_i64(session.quantity),
            &price.currency
        )),
        escape(id),
    );
    Html(page_html("Subscribe", &body)).into_response()
}

fn page_html(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} (Stripe stand-in)</title></head><body><h1>{title}</h1>{body}</body></html>"
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `19.00 EUR` (every currency here has two decimals).
fn money(amount: i64, currency: &str) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02} {}",
        amount.abs() / 100,
        amount.abs() % 100,
        currency.to_uppercase()
    )
}

/// `1 × n8n Pro (at 19.00 EUR / month)`, as Stripe words subscription lines.
fn line_description(price: &PeerPrice, quantity: u64) -> String {
    format!(
        "{quantity} × {} (at {} / {})",
        price.product_name,
        money(price.unit_amount, &price.currency),
        price.interval
    )
}

/// Joins objects made by several `json!` literals: one literal with all of a Stripe object's
/// fields goes past the macro's recursion limit.
fn object(parts: Vec<Value>) -> Value {
    let mut merged = serde_json::Map::new();
    for part in parts {
        if let Value::Object(fields) = part {
            merged.extend(fields);
        }
    }
    Value::Object(merged)
}

fn quantity_i64(quantity: u64) -> i64 {
    i64::try_from(quantity).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------------

type Answer = (Value, Vec<Value>);

impl Books {
    fn route(&mut self, req: &Received, cause: &Cause, base: &str) -> ApiResult<Answer> {
        let params = req.params();
        let path = req.path.trim_start_matches("/v1/").trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("POST", ["customers"]) => self.create_customer(&params),
            ("GET", ["customers", id]) => {
                allow(&params, &[])?;
                let customer = self
                    .customers
                    .get(*id)
                    .ok_or_else(|| ApiError::no_such("customer", id, "id", 404))?;
                Ok((self.customer_json(customer), vec![]))
            }
            ("POST", ["checkout", "sessions"]) => self.create_session(&params, base),
            ("GET", ["checkout", "sessions", id]) => {
                allow(&params, &[])?;
                let session = self
                    .sessions
                    .get(*id)
                    .ok_or_else(|| ApiError::no_such("checkout.session", id, "session", 404))?;
                Ok((self.session_json(session, base), vec![]))
            }
            ("POST", ["checkout", "sessions", id, "expire"]) => {
                self.expire_session(id, &params, cause, base)
            }
            ("POST", ["billing_portal", "sessions"]) => self.create_portal_session(&params, base),
            ("GET", ["subscriptions", id]) => {
                allow(&params, &[])?;
                let sub = self.subscription(id, 404)?;
                Ok((self.subscription_json(sub), vec![]))
            }
            ("POST", ["subscriptions", id]) => self.update_subscription(id, &params, cause),
            ("DELETE", ["subscriptions", id]) => self.cancel_subscription(id, &params, cause),
            ("GET", ["invoices"]) => self.list_invoices(&params, base),
            ("POST", ["invoices", "create_preview"]) => self.preview_invoice(&params, base),
            _ => Err(ApiError {
                status: 404,
                ..ApiError::invalid(format!(
                    "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
                    req.method, req.path
                ))
            }),
        }
    }

    fn subscription(&self, id: &str, status: u16) -> ApiResult<&Sub> {
        self.subscriptions
            .get(id)
            .ok_or_else(|| ApiError::no_such("subscription", id, "id", status))
    }

    fn price(&self, id: &str, param: &str) -> ApiResult<&PeerPrice> {
        self.prices
            .get(id)
            .ok_or_else(|| ApiError::no_such("price", id, param, 400))
    }

    fn create_customer(&mut self, params: &Params) -> ApiResult<Answer> {
        allow(
            params,
            &[
                "name",
                "email",
                "description",
                "metadata",
                "phone",
                "preferred_locales",
            ],
        )?;
        let id = new_id("cus");
        let prefix = Uuid::new_v4().simple().to_string()[..8].to_uppercase();
        let customer = Customer {
            id: id.clone(),
            created: now(),
            name: non_empty(get(params, "name")),
            email: non_empty(get(params, "email")),
            description: non_empty(get(params, "description")),
            metadata: hash(params, "metadata"),
            invoice_prefix: prefix,
            next_invoice_sequence: 1,
        };
        let body = self.customer_json(&customer);
        self.customers.insert(id, customer);
        Ok((body, vec![]))
    }

    fn create_session(&mut self, params: &Params, base: &str) -> ApiResult<Answer> {
        allow(
            params,
            &[
                "mode",
                "customer",
                "customer_email",
                "line_items",
                "success_url",
                "cancel_url",
                "client_reference_id",
                "metadata",
                "subscription_data",
                "allow_promotion_codes",
                "billing_address_collection",
                "locale",
                "payment_method_types",
                "ui_mode",
            ],
        )?;
        match get(params, "mode") {
            None => return Err(ApiError::missing_param("mode")),
            Some("subscription") => {}
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "The Stripe peer serves only mode=subscription, not {other:?}."
                ))
                .param("mode"));
            }
        }
        let customer = non_empty(get(params, "customer"));
        if let Some(customer) = &customer
            && !self.customers.contains_key(customer)
        {
            return Err(ApiError::no_such("customer", customer, "customer", 400));
        }
        let items: Vec<&str> = params
            .iter()
            .filter_map(|(k, _)| k.strip_prefix("line_items[")?.split(']').next())
            .collect();
        if items.is_empty() {
            return Err(ApiError::invalid(
                "You must provide at least one recurring price in `subscription` mode when using prices.",
            )
            .param("line_items"));
        }
        if items.iter().any(|index| *index != "0") {
            return Err(
                ApiError::invalid("The Stripe peer serves one line item.").param("line_items")
            );
        }
        let price_id = get(params, "line_items[0][price]")
            .ok_or_else(|| ApiError::missing_param("line_items[0][price]"))?;
        self.price(price_id, "line_items[0][price]")?;
        let quantity = match get(params, "line_items[0][quantity]") {
            None => 1,
            Some(q) => q.parse::<u64>().ok().filter(|q| *q > 0).ok_or_else(|| {
                ApiError::invalid(format!("Invalid positive integer: {q}"))
                    .param("line_items[0][quantity]")
            })?,
        };
        let session = Session {
            id: new_id("cs_test"),
            created: now(),
            customer,
            customer_email: non_empty(get(params, "customer_email")),
            price: price_id.to_owned(),
            quantity,
            success_url: non_empty(get(params, "success_url")),
            cancel_url: non_empty(get(params, "cancel_url")),
            client_reference_id: non_empty(get(params, "client_reference_id")),
            metadata: hash(params, "metadata"),
            subscription_metadata: hash(params, "subscription_data[metadata]"),
            status: "open",
            subscription: None,
        };
        let body = self.session_json(&session, base);
        self.sessions.insert(session.id.clone(), session);
        Ok((body, vec![]))
    }

    /// Stripe's `expire`: only an open session can be expired (else 400 with Stripe's words);
    /// it can no longer be paid, its `url` is gone, and `checkout.session.expired` goes out.
    fn expire_session(
        &mut self,
        id: &str,
        params: &Params,
        cause: &Cause,
        base: &str,
    ) -> ApiResult<Answer> {
        allow(params, &[])?;
        let session = self
            .sessions
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such("checkout.session", id, "session", 404))?;
        if session.status != "open" {
            return Err(ApiError::invalid(format!(
                "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of `{}`.",
                session.status
            )));
        }
        session.status = "expired";
        let session = session.clone();
        let body = self.session_json(&session, base);
        let event = self.event("checkout.session.expired", body.clone(), None, cause);
        Ok((body, vec![event]))
    }

    fn create_portal_session(&mut self, params: &Params, base: &str) -> ApiResult<Answer> {
        allow(
            params,
            &[
                "customer",
                "return_url",
                "configuration",
                "locale",
                "flow_data",
                "on_behalf_of",
            ],
        )?;
        let customer =
            get(params, "customer").ok_or_else(|| ApiError::missing_param("customer"))?;
        if !self.customers.contains_key(customer) {
            return Err(ApiError::no_such("customer", customer, "customer", 400));
        }
        let id = new_id("bps");
        let return_url = non_empty(get(params, "return_url"));
        let body = json!({
            "id": id,
            "object": "billing_portal.session",
            "configuration": "bpc_workflowops_default",
            "created": now(),
            "customer": customer,
            "customer_account": null,
            "flow": null,
            "livemode": false,
            "locale": null,
            "on_behalf_of": null,
            "return_url": return_url,
            "url": format!("{base}/portal/{id}"),
        });
        self.portal_sessions
            .insert(id, PortalSession { return_url });
        Ok((body, vec![]))
    }

    fn update_subscription(
        &mut self,
        id: &str,
        params: &Params,
        cause: &Cause,
    ) -> ApiResult<Answer> {
        allow(
            params,
            &[
                "items",
                "proration_behavior",
                "cancel_at_period_end",
                "metadata",
                "cancellation_details",
                "description",
                "payment_behavior",
                "proration_date",
            ],
        )?;
        let sub = self.subscription(id, 404)?.clone();
        let before = self.subscription_json(&sub);
        let mut after = sub.clone();
        if sub.status == "canceled"
            && params.iter().any(|(k, _)| {
                !k.starts_with("metadata")
                    && !k.starts_with("cancellation_details")
                    && k != "expand"
            })
        {
            return Err(ApiError::invalid(
                "A canceled subscription can only update its cancellation_details and metadata.",
            ));
        }
        if let Some(behavior) = get(params, "proration_behavior")
            && !["create_prorations", "none", "always_invoice"].contains(&behavior)
        {
            return Err(ApiError::invalid(
                "Invalid proration_behavior: must be one of create_prorations, none, or always_invoice",
            )
            .param("proration_behavior"));
        }
        let items: Vec<&str> = params
            .iter()
            .filter_map(|(k, _)| k.strip_prefix("items[")?.split(']').next())
            .collect();
        if items.iter().any(|index| *index != "0") {
            return Err(
                ApiError::invalid("The Stripe peer serves one subscription item.").param("items"),
            );
        }
        if !items.is_empty() {
            let item = get(params, "items[0][id]").ok_or_else(|| {
                ApiError::invalid(
                    "The Stripe peer changes an existing item only: pass items[0][id].",
                )
                .param("items[0][id]")
            })?;
            if item != sub.item_id {
                return Err(ApiError::no_such(
                    "subscription item",
                    item,
                    "items[0][id]",
                    400,
                ));
            }
            if let Some(price_id) = get(params, "items[0][price]") {
                let price = self.price(price_id, "items[0][price]")?;
                let current = self.price(&sub.price, "items[0][price]")?;
                if price.currency != current.currency {
                    return Err(ApiError::invalid(format!(
                        "The price specified has currency {} but the subscription is in {}.",
                        price.currency, current.currency
                    ))
                    .param("items[0][price]"));
                }
                after.price = price_id.to_owned();
            }
        }
        if let Some(cancel) = boolean(params, "cancel_at_period_end")? {
            after.schedule_cancel(cancel, now());
        }
        for (key, value) in hash(params, "metadata") {
            // An empty value unsets the key, as in Stripe.
            if value.is_empty() {
                after.metadata.remove(&key);
            } else {
                after.metadata.insert(key, value);
            }
        }
        let body = self.subscription_json(&after);
        let event = self.updated_event(&before, after, cause);
        Ok((body, event.into_iter().collect()))
    }

    /// Stores `after` and returns `customer.subscription.updated` with the top-level fields
    /// that changed in `previous_attributes`, or nothing when nothing changed (Stripe sends no
    /// event then either).
    fn updated_event(&mut self, before: &Value, after: Sub, cause: &Cause) -> Option<Value> {
        let object = self.subscription_json(&after);
        self.subscriptions.insert(after.id.clone(), after);
        let (Value::Object(old), Value::Object(new)) = (before, &object) else {
            return None;
        };
        let previous: serde_json::Map<String, Value> = old
            .iter()
            .filter(|(key, value)| new.get(*key) != Some(value))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if previous.is_empty() {
            return None;
        }
        Some(self.event(
            "customer.subscription.updated",
            object,
            Some(Value::Object(previous)),
            cause,
        ))
    }

    fn cancel_subscription(
        &mut self,
        id: &str,
        params: &Params,
        cause: &Cause,
    ) -> ApiResult<Answer> {
        allow(params, &["invoice_now", "prorate", "cancellation_details"])?;
        let mut sub = self.subscription(id, 404)?.clone();
        if sub.status == "canceled" {
            return Err(ApiError::invalid(format!(
                "The subscription {id} has already been canceled."
            )));
        }
        let at = now();
        sub.status = "canceled";
        sub.canceled_at = Some(at);
        sub.ended_at = Some(at);
        sub.cancellation_reason = Some("cancellation_requested");
        let body = self.subscription_json(&sub);
        self.subscriptions.insert(sub.id.clone(), sub);
        let event = self.event("customer.subscription.deleted", body.clone(), None, cause);
        Ok((body, vec![event]))
    }

    fn list_invoices(&self, params: &Params, base: &str) -> ApiResult<Answer> {
        allow(
            params,
            &[
                "customer",
                "subscription",
                "status",
                "limit",
                "starting_after",
                "ending_before",
                "created",
            ],
        )?;
        let limit = match get(params, "limit") {
            None => 10,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "Invalid integer: {raw}; limit must be between 1 and 100"
                    ))
                    .param("limit")
                })?,
        };
        let customer = get(params, "customer");
        if let Some(customer) = customer
            && !self.customers.contains_key(customer)
        {
            return Err(ApiError::no_such("customer", customer, "customer", 400));
        }
        let subscription = get(params, "subscription");
        let status = get(params, "status");
        // Newest first: created, then the order they were made in.
        let matching: Vec<&Invoice> = self
            .invoices
            .iter()
            .rev()
            .filter(|i| customer.is_none_or(|c| i.customer == c))
            .filter(|i| subscription.is_none_or(|s| i.subscription.as_deref() == Some(s)))
            .filter(|i| status.is_none_or(|s| i.status == s))
            .collect();
        let start = match get(params, "starting_after") {
            None => 0,
            Some(after) => {
                matching
                    .iter()
                    .position(|i| i.id == after)
                    .ok_or_else(|| ApiError::no_such("invoice", after, "starting_after", 400))?
                    + 1
            }
        };
        let page: Vec<Value> = matching
            .iter()
            .skip(start)
            .take(limit)
            .map(|i| self.invoice_json(i, base))
            .collect();
        let has_more = matching.len() > start + page.len();
        Ok((
            json!({"object": "list", "data": page, "has_more": has_more, "url": "/v1/invoices"}),
            vec![],
        ))
    }

    fn preview_invoice(&self, params: &Params, base: &str) -> ApiResult<Answer> {
        allow(
            params,
            &[
                "customer",
                "subscription",
                "subscription_details",
                "automatic_tax",
                "preview_mode",
            ],
        )?;
        let id = get(params, "subscription").ok_or_else(|| {
            ApiError::invalid(
                "The Stripe peer previews a subscription's next invoice: pass subscription.",
            )
            .param("subscription")
        })?;
        let sub = self
            .subscriptions
            .get(id)
            .ok_or_else(|| ApiError::no_such("subscription", id, "subscription", 400))?;
        if let Some(customer) = get(params, "customer")
            && customer != sub.customer
        {
            return Err(ApiError::invalid(format!(
                "The subscription {id} does not belong to customer {customer}."
            ))
            .param("customer"));
        }
        if sub.status == "canceled" || sub.cancel_at_period_end {
            return Err(ApiError::invalid(format!(
                "No upcoming invoices for customer: {}",
                sub.customer
            ))
            .code("invoice_upcoming_none"));
        }
        let price = self.price(&sub.price, "subscription")?;
        let invoice = Invoice {
            id: format!("upcoming_{}", new_id("in")),
            number: None,
            customer: sub.customer.clone(),
            subscription: Some(sub.id.clone()),
            subscription_item: Some(sub.item_id.clone()),
            subscription_metadata: sub.metadata.clone(),
            price: sub.price.clone(),
            quantity: sub.quantity,
            created: sub.period_end,
            status: "draft",
            billing_reason: "upcoming",
            period_start: sub.period_start,
            period_end: sub.period_end,
            line_id: new_id("il_tmp"),
            line_start: sub.period_end,
            line_end: sub.period_end + price.period_secs(),
            attempt_count: 0,
            next_payment_attempt: Some(sub.period_end),
            paid_at: None,
            finalized_at: None,
        };
        Ok((self.invoice_json(&invoice, base), vec![]))
    }

    // -- what customers and Stripe's clock do ------------------------------------------------

    fn complete_checkout(
        &mut self,
        session_id: &str,
        base: &str,
    ) -> anyhow::Result<(CompletedCheckout, Vec<Value>)> {
        let mut session = self
            .sessions
            .get(session_id)
            .with_context(|| format!("Stripe peer: no Checkout Session {session_id}"))?
            .clone();
        if session.status != "open" {
            bail!(
                "Stripe peer: Checkout Session {session_id} is {}",
                session.status
            );
        }
        let at = now();
        let customer = match &session.customer {
            Some(customer) => customer.clone(),
            None => {
                let id = new_id("cus");
                self.customers.insert(
                    id.clone(),
                    Customer {
                        id: id.clone(),
                        created: at,
                        name: None,
                        email: session.customer_email.clone(),
                        description: None,
                        metadata: BTreeMap::new(),
                        invoice_prefix: Uuid::new_v4().simple().to_string()[..8].to_uppercase(),
                        next_invoice_sequence: 1,
                    },
                );
                id
            }
        };
        let price = self
            .prices
            .get(&session.price)
            .context("Stripe peer: the session's price is gone")?
            .clone();
        let mut sub = Sub {
            id: new_id("sub"),
            created: at,
            customer: customer.clone(),
            item_id: new_id("si"),
            item_created: at,
            price: price.id.clone(),
            quantity: session.quantity,
            period_start: at,
            period_end: at + price.period_secs(),
            status: "active",
            cancel_at_period_end: false,
            cancel_at: None,
            canceled_at: None,
            ended_at: None,
            cancellation_reason: None,
            metadata: session.subscription_metadata.clone(),
            latest_invoice: None,
        };
        let invoice = self.issue_invoice(&sub, "subscription_create", true, at);
        sub.latest_invoice = Some(invoice.id.clone());
        session.status = "complete";
        session.customer = Some(customer.clone());
        session.subscription = Some(sub.id.clone());
        let completed = CompletedCheckout {
            customer,
            subscription: sub.id.clone(),
            invoice: invoice.id.clone(),
        };
        let cause = Cause::default();
        let objects = [
            (
                "checkout.session.completed",
                self.session_json(&session, base),
            ),
            (
                "customer.subscription.created",
                self.subscription_json(&sub),
            ),
            ("invoice.paid", self.invoice_json(&invoice, base)),
        ];
        let events = objects
            .into_iter()
            .map(|(kind, object)| self.event(kind, object, None, &cause))
            .collect();
        self.sessions.insert(session.id.clone(), session);
        self.subscriptions.insert(sub.id.clone(), sub);
        self.invoices.push(invoice);
        Ok((completed, events))
    }

    fn live_subscription(&self, id: &str) -> anyhow::Result<Sub> {
        let sub = self
            .subscriptions
            .get(id)
            .with_context(|| format!("Stripe peer: no subscription {id}"))?;
        if sub.status == "canceled" {
            bail!("Stripe peer: subscription {id} is canceled");
        }
        Ok(sub.clone())
    }

    fn renew(&mut self, id: &str, paid: bool, base: &str) -> anyhow::Result<(String, Vec<Value>)> {
        let sub = self.live_subscription(id)?;
        let period = self
            .prices
            .get(&sub.price)
            .context("Stripe peer: the subscription's price is gone")?
            .period_secs();
        let before = self.subscription_json(&sub);
        let mut after = sub.clone();
        after.period_start = sub.period_end;
        after.period_end = sub.period_end + period;
        after.status = if paid { "active" } else { "past_due" };
        let invoice = self.issue_invoice(&after, "subscription_cycle", paid, now());
        after.latest_invoice = Some(invoice.id.clone());
        let cause = Cause::default();
        let kind = if paid {
            "invoice.paid"
        } else {
            "invoice.payment_failed"
        };
        let object = self.invoice_json(&invoice, base);
        let mut events = vec![self.event(kind, object, None, &cause)];
        let invoice_id = invoice.id.clone();
        self.invoices.push(invoice);
        events.extend(self.updated_event(&before, after, &cause));
        Ok((invoice_id, events))
    }

    /// A finalized invoice for the subscription's current period: paid, or open with a retry
    /// planned in three days.
    fn issue_invoice(
        &mut self,
        sub: &Sub,
        billing_reason: &'static str,
        paid: bool,
        at: i64,
    ) -> Invoice {
        let number = self.customers.get_mut(&sub.customer).map(|customer| {
            let number = format!(
                "{}-{:04}",
                customer.invoice_prefix, customer.next_invoice_sequence
            );
            customer.next_invoice_sequence += 1;
            number
        });
        Invoice {
            id: new_id("in"),
            number,
            customer: sub.customer.clone(),
            subscription: Some(sub.id.clone()),
            subscription_item: Some(sub.item_id.clone()),
            subscription_metadata: sub.metadata.clone(),
            price: sub.price.clone(),
            quantity: sub.quantity,
            created: at,
            status: if paid { "paid" } else { "open" },
            billing_reason,
            // A subscription invoice's own period is the one before it (where pending items
            // were collected); the first invoice's is the moment it was made.
            period_start: if billing_reason == "subscription_create" {
                at
            } else {
                sub.period_start
            },
            period_end: if billing_reason == "subscription_create" {
                at
            } else {
                sub.period_start
            },
            line_id: new_id("il"),
            line_start: sub.period_start,
            line_end: sub.period_end,
            attempt_count: 1,
            next_payment_attempt: (!paid).then_some(at + 3 * DAY),
            paid_at: paid.then_some(at),
            finalized_at: Some(at),
        }
    }

    fn event(
        &mut self,
        kind: &str,
        object: Value,
        previous: Option<Value>,
        cause: &Cause,
    ) -> Value {
        let mut data = serde_json::Map::new();
        data.insert("object".to_owned(), object);
        if let Some(previous) = previous {
            data.insert("previous_attributes".to_owned(), previous);
        }
        let id = new_id("evt");
        let event = json!({
            "id": id,
            "object": "event",
            "api_version": API_VERSION,
            "created": now(),
            "data": data,
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": cause.request_id, "idempotency_key": cause.idempotency_key},
            "type": kind,
        });
        self.events.insert(id, event.clone());
        event
    }

    // -- objects as Stripe renders them -----------------------------------------------------

    fn customer_json(&self, c: &Customer) -> Value {
        json!({
            "id": c.id,
            "object": "customer",
            "address": null,
            "balance": 0,
            "created": c.created,
            "currency": null,
            "default_source": null,
            "delinquent": false,
            "description": c.description,
            "discount": null,
            "email": c.email,
            "invoice_prefix": c.invoice_prefix,
            "invoice_settings": {
                "custom_fields": null,
                "default_payment_method": null,
                "footer": null,
                "rendering_options": null,
            },
            "livemode": false,
            "metadata": c.metadata,
            "name": c.name,
            "next_invoice_sequence": c.next_invoice_sequence,
            "phone": null,
            "preferred_locales": [],
            "shipping": null,
            "tax_exempt": "none",
            "test_clock": null,
        })
    }

    fn session_json(&self, s: &Session, base: &str) -> Value {
        let price = self.prices.get(&s.price);
        let amount = price.map(|p| p.unit_amount * quantity_i64(s.quantity));
        let complete = s.status == "complete";
        let customer_details = if complete {
            let customer = s.customer.as_ref().and_then(|id| self.customers.get(id));
            json!({
                "address": null,
                "email": customer.and_then(|c| c.email.clone()).or_else(|| s.customer_email.clone()),
                "name": customer.and_then(|c| c.name.clone()),
                "phone": null,
                "tax_exempt": "none",
                "tax_ids": [],
            })
        } else {
            Value::Null
        };
        object(vec![
            json!({
            "id": s.id,
            "object": "checkout.session",
            "adaptive_pricing": null,
            "after_expiration": null,
            "allow_promotion_codes": null,
            "amount_subtotal": amount,
            "amount_total": amount,
            "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
            "billing_address_collection": null,
            "cancel_url": s.cancel_url,
            "client_reference_id": s.client_reference_id,
            "client_secret": null,
            "consent": null,
            "consent_collection": null,
            }),
            json!({
            "created": s.created,
            "currency": price.map(|p| p.currency.clone()),
            "custom_fields": [],
            "custom_text": {
                "after_submit": null,
                "shipping_address": null,
                "submit": null,
                "terms_of_service_acceptance": null,
            },
            "customer": s.customer,
            "customer_creation": if s.customer.is_some() && !complete { Value::Null } else { json!("always") },
            "customer_details": customer_details,
            "customer_email": s.customer_email,
            "discounts": [],
            }),
            json!({
            "expires_at": s.created + DAY,
            "invoice": null,
            "invoice_creation": null,
            "livemode": false,
            "locale": null,
            "metadata": s.metadata,
            "mode": "subscription",
            "payment_intent": null,
            "payment_link": null,
            "payment_method_collection": "always",
            "payment_method_types": ["card"],
            "payment_status": if complete { "paid" } else { "unpaid" },
            }),
            json!({
            "phone_number_collection": {"enabled": false},
            "recovered_from": null,
            "setup_intent": null,
            "shipping_address_collection": null,
            "shipping_cost": null,
            "shipping_options": [],
            "status": s.status,
            "submit_type": null,
            "subscription": s.subscription,
            "success_url": s.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": if s.status == "open" { json!(format!("{base}/checkout/{}", s.id)) } else { Value::Null },
            }),
        ])
    }

    fn price_json(&self, p: &PeerPrice) -> Value {
        json!({
            "id": p.id,
            "object": "price",
            "active": true,
            "billing_scheme": "per_unit",
            "created": self.created,
            "currency": p.currency,
            "custom_unit_amount": null,
            "livemode": false,
            "lookup_key": null,
            "metadata": {},
            "nickname": null,
            "product": p.product(),
            "recurring": {
                "interval": p.interval,
                "interval_count": 1,
                "meter": null,
                "trial_period_days": null,
                "usage_type": "licensed",
            },
            "tax_behavior": "unspecified",
            "tiers_mode": null,
            "transform_quantity": null,
            "type": "recurring",
            "unit_amount": p.unit_amount,
            "unit_amount_decimal": p.unit_amount.to_string(),
        })
    }

    /// The legacy `plan` Stripe still puts beside `price` on subscription items.
    fn plan_json(&self, p: &PeerPrice) -> Value {
        json!({
            "id": p.id,
            "object": "plan",
            "active": true,
            "amount": p.unit_amount,
            "amount_decimal": p.unit_amount.to_string(),
            "billing_scheme": "per_unit",
            "created": self.created,
            "currency": p.currency,
            "interval": p.interval,
            "interval_count": 1,
            "livemode": false,
            "metadata": {},
            "meter": null,
            "nickname": null,
            "product": p.product(),
            "tiers_mode": null,
            "transform_usage": null,
            "trial_period_days": null,
            "usage_type": "licensed",
        })
    }

    fn subscription_json(&self, s: &Sub) -> Value {
        let price = self.prices.get(&s.price);
        let item = json!({
            "id": s.item_id,
            "object": "subscription_item",
            "billing_thresholds": null,
            "created": s.item_created,
            "current_period_end": s.period_end,
            "current_period_start": s.period_start,
            "discounts": [],
            "metadata": {},
            "plan": price.map(|p| self.plan_json(p)),
            "price": price.map(|p| self.price_json(p)),
            "quantity": s.quantity,
            "subscription": s.id,
            "tax_rates": [],
        });
        object(vec![
            json!({
            "id": s.id,
            "object": "subscription",
            "application": null,
            "application_fee_percent": null,
            "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
            "billing_cycle_anchor": s.created,
            "billing_cycle_anchor_config": null,
            "billing_mode": {"flexible": null, "type": "classic", "updated_at": null},
            "billing_schedules": [],
            "billing_thresholds": null,
            "cancel_at": s.cancel_at,
            "cancel_at_period_end": s.cancel_at_period_end,
            "canceled_at": s.canceled_at,
            }),
            json!({
            "cancellation_details": {
                "comment": null,
                "feedback": null,
                "reason": s.cancellation_reason,
            },
            "collection_method": "charge_automatically",
            "created": s.created,
            "currency": price.map(|p| p.currency.clone()),
            "customer": s.customer,
            "customer_account": null,
            "days_until_due": null,
            "default_payment_method": null,
            "default_source": null,
            "default_tax_rates": [],
            "description": null,
            "discounts": [],
            }),
            json!({
            "ended_at": s.ended_at,
            "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": [item],
                "has_more": false,
                "total_count": 1,
                "url": format!("/v1/subscription_items?subscription={}", s.id),
            },
            "latest_invoice": s.latest_invoice,
            "livemode": false,
            "metadata": s.metadata,
            }),
            json!({
            "next_pending_invoice_item_invoice": null,
            "on_behalf_of": null,
            "pause_collection": null,
            "payment_settings": {
                "payment_method_options": null,
                "payment_method_types": null,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": null,
            "pending_setup_intent": null,
            "pending_update": null,
            "schedule": null,
            "start_date": s.created,
            "status": s.status,
            "test_clock": null,
            "transfer_data": null,
            "trial_end": null,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": null,
            }),
        ])
    }

    fn invoice_json(&self, i: &Invoice, base: &str) -> Value {
        let price = self.prices.get(&i.price);
        let amount = price.map_or(0, |p| p.unit_amount * quantity_i64(i.quantity));
        let currency = price.map(|p| p.currency.clone());
        let customer = self.customers.get(&i.customer);
        let finalized = i.finalized_at.is_some();
        let paid = i.status == "paid";
        let line = json!({
            "id": i.line_id,
            "object": "line_item",
            "amount": amount,
            "currency": currency,
            "description": price.map(|p| line_description(p, i.quantity)),
            "discount_amounts": [],
            "discountable": true,
            "discounts": [],
            "invoice": i.id,
            "livemode": false,
            "metadata": i.subscription_metadata,
            "parent": {
                "invoice_item_details": null,
                "subscription_item_details": {
                    "invoice_item": null,
                    "proration": false,
                    "proration_details": {"credited_items": null},
                    "subscription": i.subscription,
                    "subscription_item": i.subscription_item,
                },
                "type": "subscription_item_details",
            },
            "period": {"end": i.line_end, "start": i.line_start},
            "pretax_credit_amounts": [],
            "pricing": {
                "price_details": price.map(|p| json!({"price": p.id, "product": p.product()})),
                "type": "price_details",
                "unit_amount_decimal": price.map(|p| p.unit_amount.to_string()),
            },
            "quantity": i.quantity,
            "subtotal": amount,
            "taxes": [],
        });
        object(vec![
            json!({
            "id": i.id,
            "object": "invoice",
            "account_country": "DE",
            "account_name": "WorkflowOps (Stripe peer)",
            "account_tax_ids": null,
            "amount_due": amount,
            "amount_overpaid": 0,
            "amount_paid": if paid { amount } else { 0 },
            "amount_remaining": if paid { 0 } else { amount },
            "amount_shipping": 0,
            "application": null,
            "attempt_count": i.attempt_count,
            "attempted": i.attempt_count > 0,
            "auto_advance": !paid,
            }),
            json!({
            "automatic_tax": {
                "disabled_reason": null,
                "enabled": false,
                "liability": null,
                "provider": null,
                "status": null,
            },
            "automatically_finalizes_at": null,
            "billing_reason": i.billing_reason,
            "collection_method": "charge_automatically",
            "created": i.created,
            "currency": currency,
            "custom_fields": null,
            }),
            json!({
            "customer": i.customer,
            "customer_account": null,
            "customer_address": null,
            "customer_email": customer.and_then(|c| c.email.clone()),
            "customer_name": customer.and_then(|c| c.name.clone()),
            "customer_phone": null,
            "customer_shipping": null,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": null,
            "default_source": null,
            "default_tax_rates": [],
            "description": null,
            "discounts": [],
            "due_date": null,
            "effective_at": i.finalized_at,
            "ending_balance": if finalized { json!(0) } else { Value::Null },
            "footer": null,
            "from_invoice": null,
            }),
            json!({
            "hosted_invoice_url": finalized.then(|| format!("{base}/i/{}", i.id)),
            "invoice_pdf": finalized.then(|| format!("{base}/i/{}/pdf", i.id)),
            "issuer": {"type": "self"},
            "last_finalization_error": null,
            "latest_revision": null,
            "lines": {
                "object": "list",
                "data": [line],
                "has_more": false,
                "total_count": 1,
                "url": format!("/v1/invoices/{}/lines", i.id),
            },
            "livemode": false,
            "metadata": {},
            "next_payment_attempt": i.next_payment_attempt,
            }),
            json!({
            "number": i.number,
            "on_behalf_of": null,
            "parent": {
                "quote_details": null,
                "subscription_details": i.subscription.as_ref().map(|sub| json!({
                    "metadata": i.subscription_metadata,
                    "subscription": sub,
                })),
                "type": "subscription_details",
            },
            "payment_settings": {
                "default_mandate": null,
                "payment_method_options": null,
                "payment_method_types": null,
            },
            "period_end": i.period_end,
            "period_start": i.period_start,
            }),
            json!({
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": null,
            "rendering": null,
            "shipping_cost": null,
            "shipping_details": null,
            "starting_balance": 0,
            "statement_descriptor": null,
            "status": i.status,
            "status_transitions": {
                "finalized_at": i.finalized_at,
                "marked_uncollectible_at": null,
                "paid_at": i.paid_at,
                "voided_at": null,
            },
            "subtotal": amount,
            "subtotal_excluding_tax": amount,
            "test_clock": null,
            "total": amount,
            "total_discount_amounts": [],
            "total_excluding_tax": amount,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": i.finalized_at,
            }),
        ])
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use billing::{BillingError, CheckoutRequest, CheckoutStatus, Stripe, StripeConfig};
    use chrono::Utc;
    use secrecy::SecretString;
    use serde_json::Value;
    use uuid::Uuid;

    use super::{API_VERSION, PeerPrice, StripePeer, StripePeerConfig};
    use crate::hooks::HookPeer;

    const WAIT: Duration = Duration::from_secs(5);
    const PRO: &str = "price_n8n_pro";
    const TEAM: &str = "price_n8n_team";

    struct Setup {
        peer: StripePeer,
        hooks: HookPeer,
        stripe: Stripe,
    }

    async fn setup() -> Setup {
        let hooks = HookPeer::start()
            .await
            .unwrap_or_else(|e| panic!("start hook peer: {e}"));
        let peer = StripePeer::start(StripePeerConfig {
            webhook_url: Some(hooks.url("/webhooks/stripe")),
            prices: vec![
                PeerPrice::new(PRO, 1900, "eur", "month"),
                PeerPrice::new(TEAM, 4900, "eur", "month"),
                PeerPrice::new("price_usd", 1000, "usd", "month"),
            ],
            ..StripePeerConfig::default()
        })
        .await
        .unwrap_or_else(|e| panic!("start Stripe peer: {e}"));
        let stripe = client(&peer, peer.secret_key());
        Setup {
            peer,
            hooks,
            stripe,
        }
    }

    fn client(peer: &StripePeer, key: &str) -> Stripe {
        Stripe::new(StripeConfig {
            secret_key: SecretString::from(key.to_owned()),
            api_base: Some(peer.base_url()),
            webhook_secret: Some(SecretString::from(peer.webhook_secret().to_owned())),
        })
        .unwrap_or_else(|e| panic!("billing client: {e}"))
    }

    fn checkout(customer: &str, price: &str, tenant: Uuid, key: &str) -> CheckoutRequest {
        CheckoutRequest {
            customer: customer.to_owned(),
            price_id: price.to_owned(),
            success_url: "http://app.test/billing/done?session={CHECKOUT_SESSION_ID}".to_owned(),
            cancel_url: "http://app.test/billing".to_owned(),
            client_reference_id: tenant.to_string(),
            metadata: vec![
                ("tenant_id".to_owned(), tenant.to_string()),
                ("provider".to_owned(), "n8n".to_owned()),
            ],
            idempotency_key: key.to_owned(),
        }
    }

    /// A customer with an active subscription to `PRO`, its three events delivered.
    async fn subscribed(s: &Setup) -> (String, super::CompletedCheckout) {
        let tenant = Uuid::new_v4();
        let customer = s
            .stripe
            .create_customer(
                "Acme",
                Some("billing@acme.test"),
                tenant,
                &format!("cus-{tenant}"),
            )
            .await
            .unwrap_or_else(|e| panic!("create customer: {e}"));
        let session = s
            .stripe
            .create_checkout_session(&checkout(&customer, PRO, tenant, &format!("co-{tenant}")))
            .await
            .unwrap_or_else(|e| panic!("checkout: {e}"));
        let completed = s
            .peer
            .complete_checkout(&session.id)
            .await
            .unwrap_or_else(|e| panic!("complete: {e}"));
        (session.id, completed)
    }

    fn kinds(peer: &StripePeer) -> Vec<String> {
        peer.events().into_iter().map(|e| e.kind).collect()
    }

    fn http() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("HTTP client: {e}"))
    }

    fn form(pairs: &[(&str, &str)]) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    }

    async fn send(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
        let resp = req.send().await.unwrap_or_else(|e| panic!("request: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    // BILL-002, BILL-003, BILL-005, BILL-006, BILL-007, BILL-010 (the client's side): the whole
    // path a tenant takes, driven through the product's client.
    #[tokio::test]
    async fn stripe_subscription_lifecycle_through_the_billing_client() {
        let s = setup().await;
        let tenant = Uuid::new_v4();
        let customer = s
            .stripe
            .create_customer("Acme GmbH", Some("billing@acme.test"), tenant, "cus-1")
            .await
            .unwrap_or_else(|e| panic!("create customer: {e}"));
        assert!(customer.starts_with("cus_"), "{customer}");
        let stored = s
            .peer
            .object(&customer)
            .unwrap_or_else(|| panic!("no {customer}"));
        assert_eq!(stored["metadata"]["tenant_id"], tenant.to_string());
        assert_eq!(stored["email"], "billing@acme.test");

        let session = s
            .stripe
            .create_checkout_session(&checkout(&customer, PRO, tenant, "co-1"))
            .await
            .unwrap_or_else(|e| panic!("checkout: {e}"));
        assert_eq!(
            session.url,
            format!("{}/checkout/{}", s.peer.base_url(), session.id)
        );
        let sent = s
            .peer
            .requests()
            .into_iter()
            .rfind(|r| r.path == "/v1/checkout/sessions")
            .unwrap_or_else(|| panic!("no checkout request"));
        assert_eq!(sent.param("mode").as_deref(), Some("subscription"));
        assert_eq!(sent.param("line_items[0][price]").as_deref(), Some(PRO));
        assert_eq!(sent.param("line_items[0][quantity]").as_deref(), Some("1"));
        assert_eq!(
            sent.param("subscription_data[metadata][provider]")
                .as_deref(),
            Some("n8n")
        );
        assert_eq!(sent.param("client_reference_id"), Some(tenant.to_string()));
        assert_eq!(sent.header("idempotency-key"), Some("co-1"));
        assert_eq!(sent.header("stripe-version"), Some(API_VERSION));

        let completed = s
            .peer
            .complete_checkout(&session.id)
            .await
            .unwrap_or_else(|e| panic!("complete: {e}"));
        assert_eq!(completed.customer, customer);
        assert_eq!(
            kinds(&s.peer),
            [
                "checkout.session.completed",
                "customer.subscription.created",
                "invoice.paid"
            ]
        );
        assert!(s.peer.events().iter().all(|e| e.status == Some(200)));

        let sub = s
            .stripe
            .subscription(&completed.subscription)
            .await
            .unwrap_or_else(|e| panic!("subscription: {e}"));
        assert_eq!(sub.status, "active");
        assert_eq!(sub.customer, customer);
        assert_eq!(sub.price_id.as_deref(), Some(PRO));
        assert_eq!(
            sub.metadata.get("provider").map(String::as_str),
            Some("n8n")
        );
        assert!(!sub.cancel_at_period_end);
        let period_end = sub
            .current_period_end
            .unwrap_or_else(|| panic!("no period end"));
        let days = (period_end - Utc::now()).num_hours() as f64 / 24.0;
        assert!((29.9..=30.0).contains(&days), "{days} days");
        let item = sub.item_id.clone().unwrap_or_else(|| panic!("no item"));

        let changed = s
            .stripe
            .change_price(&sub.id, &item, TEAM, "chg-1")
            .await
            .unwrap_or_else(|e| panic!("change price: {e}"));
        assert_eq!(changed.price_id.as_deref(), Some(TEAM));
        assert_eq!(changed.item_id.as_deref(), Some(item.as_str()));
        let events = s.peer.wait_for_events(4, WAIT).await;
        assert_eq!(events[3].kind, "customer.subscription.updated");
        let update = &events[3].event;
        assert_eq!(
            update["data"]["object"]["items"]["data"][0]["price"]["id"],
            TEAM
        );
        assert_eq!(
            update["data"]["previous_attributes"]["items"]["data"][0]["price"]["id"],
            PRO
        );
        assert_eq!(update["request"]["idempotency_key"], "chg-1");
        let change = s
            .peer
            .requests()
            .into_iter()
            .rfind(|r| r.method == "POST" && r.path == format!("/v1/subscriptions/{}", sub.id))
            .unwrap_or_else(|| panic!("no update request"));
        assert_eq!(
            change.param("proration_behavior").as_deref(),
            Some("create_prorations")
        );
        assert_eq!(change.param("items[0][id]"), Some(item.clone()));

        let page = s
            .stripe
            .invoices(&customer, 10, None)
            .await
            .unwrap_or_else(|e| panic!("invoices: {e}"));
        assert!(!page.has_more);
        assert_eq!(page.invoices.len(), 1);
        let first = &page.invoices[0];
        assert_eq!(first.id, completed.invoice);
        assert_eq!(first.status.as_deref(), Some("paid"));
        assert_eq!((first.amount_paid, first.total), (1900, 1900));
        assert_eq!(first.currency, "eur");
        assert!(first.number.is_some() && first.hosted_invoice_url.is_some());

        let preview = s
            .stripe
            .preview_invoice(&customer, &sub.id)
            .await
            .unwrap_or_else(|e| panic!("preview: {e}"));
        assert_eq!((preview.amount_due, preview.total), (4900, 4900));
        assert_eq!(preview.next_payment_attempt, Some(period_end));
        assert_eq!(preview.lines.len(), 1);
        assert_eq!(preview.lines[0].amount, 4900);
        assert_eq!(preview.lines[0].period_start, Some(period_end));
        assert!(
            preview.lines[0]
                .description
                .as_deref()
                .is_some_and(|d| d.contains(TEAM)),
            "{:?}",
            preview.lines[0]
        );

        let canceling = s
            .stripe
            .set_cancel_at_period_end(&sub.id, true)
            .await
            .unwrap_or_else(|e| panic!("cancel at period end: {e}"));
        assert!(canceling.cancel_at_period_end);
        assert_eq!(canceling.status, "active");
        let no_next = s
            .stripe
            .preview_invoice(&customer, &sub.id)
            .await
            .expect_err("no upcoming invoice");
        assert_eq!(no_next.code(), Some("invoice_upcoming_none"));
        let resumed = s
            .stripe
            .set_cancel_at_period_end(&sub.id, false)
            .await
            .unwrap_or_else(|e| panic!("resume: {e}"));
        assert!(!resumed.cancel_at_period_end);

        let canceled = s
            .stripe
            .cancel_now(&sub.id)
            .await
            .unwrap_or_else(|e| panic!("cancel now: {e}"));
        assert_eq!(canceled.status, "canceled");
        let events = s.peer.wait_for_events(7, WAIT).await;
        assert_eq!(
            kinds(&s.peer)[4..],
            [
                "customer.subscription.updated",
                "customer.subscription.updated",
                "customer.subscription.deleted"
            ]
        );
        assert_eq!(
            events[4].event["data"]["previous_attributes"]["cancel_at_period_end"],
            false
        );
        let again = s
            .stripe
            .cancel_now(&sub.id)
            .await
            .expect_err("canceled twice");
        assert!(
            matches!(again, BillingError::Refused { status: 400, .. }),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn stripe_wrong_key_is_refused_with_401_and_never_shown_whole() {
        let s = setup().await;
        let wrong = "sk_test_not_the_right_key_9999";
        let err = client(&s.peer, wrong)
            .create_customer("Acme", None, Uuid::new_v4(), "k1")
            .await
            .expect_err("wrong key");
        let BillingError::Refused {
            status,
            code,
            message,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!((*status, code.as_deref()), (401, None));
        assert!(
            message.starts_with("Invalid API Key provided: sk_test_"),
            "{message}"
        );
        assert!(message.ends_with("9999"), "{message}");
        assert!(!format!("{err} {err:?}").contains(wrong));

        let (status, _, body) =
            send(http().get(format!("{}/v1/customers/cus_x", s.peer.base_url()))).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("You did not provide an API key")),
            "{body}"
        );
    }

    #[tokio::test]
    async fn stripe_unknown_price_is_refused_with_resource_missing() {
        let s = setup().await;
        let customer = s
            .stripe
            .create_customer("Acme", None, Uuid::new_v4(), "k1")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let err = s
            .stripe
            .create_checkout_session(&checkout(&customer, "price_gone", Uuid::new_v4(), "k2"))
            .await
            .expect_err("unknown price");
        assert_eq!(
            err,
            BillingError::Refused {
                status: 400,
                code: Some("resource_missing".to_owned()),
                message: "No such price: 'price_gone'".to_owned(),
            }
        );
        assert!(!err.is_transient());

        // The same in Stripe's wire shape, with the parameter named.
        let (status, _, body) = send(
            http()
                .post(format!("{}/v1/checkout/sessions", s.peer.base_url()))
                .bearer_auth(s.peer.secret_key())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[
                    ("mode", "subscription"),
                    ("line_items[0][price]", "price_gone"),
                    ("line_items[0][quantity]", "1"),
                ])),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "resource_missing");
        assert_eq!(body["error"]["param"], "line_items[0][price]");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }

    #[tokio::test]
    async fn stripe_server_errors_and_rate_limits_are_transient_and_a_retry_with_the_same_key_creates_once()
     {
        let s = setup().await;
        let tenant = Uuid::new_v4();
        s.peer.fail_next(1, 500);
        let err = s
            .stripe
            .create_customer("Acme", None, tenant, "retry-me")
            .await
            .expect_err("500");
        assert!(err.is_transient(), "{err:?}");
        assert!(
            err.to_string().contains("An unknown error occurred"),
            "{err}"
        );

        s.peer.fail_next(1, 429);
        let err = s
            .stripe
            .create_customer("Acme", None, tenant, "retry-me")
            .await
            .expect_err("429");
        assert!(
            matches!(&err, BillingError::Transient { retry_after: None, message } if message.starts_with("429")),
            "{err:?}"
        );

        let first = s
            .stripe
            .create_customer("Acme", None, tenant, "retry-me")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let again = s
            .stripe
            .create_customer("Acme", None, tenant, "retry-me")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, again, "the same key gets the first answer");
        assert_eq!(
            s.peer.requests().len(),
            4,
            "faulted requests are recorded too"
        );
    }

    #[tokio::test]
    async fn stripe_idempotency_keys_replay_and_refuse_other_parameters_or_endpoints() {
        let s = setup().await;
        let url = format!("{}/v1/customers", s.peer.base_url());
        let post = |name: &str| {
            http()
                .post(&url)
                .bearer_auth(s.peer.secret_key())
                .header("Idempotency-Key", "same")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[("name", name)]))
        };
        let (status, headers, first) = send(post("A")).await;
        assert_eq!(status, 200);
        assert!(headers.get("request-id").is_some());
        assert!(headers.get("idempotent-replayed").is_none());
        let (status, headers, replay) = send(post("A")).await;
        assert_eq!((status, &replay), (200, &first));
        assert_eq!(
            headers
                .get("idempotent-replayed")
                .and_then(|v| v.to_str().ok()),
            Some("true")
        );
        let (status, _, body) = send(post("B")).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["type"], "idempotency_error");
        let (status, _, body) = send(
            http()
                .post(format!("{}/v1/billing_portal/sessions", s.peer.base_url()))
                .bearer_auth(s.peer.secret_key())
                .header("Idempotency-Key", "same")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[(
                    "customer",
                    first["id"].as_str().unwrap_or_default(),
                )])),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["type"], "idempotency_error");
    }

    #[tokio::test]
    async fn stripe_unknown_parameters_objects_and_urls_answer_in_stripes_error_shape() {
        let s = setup().await;
        let base = s.peer.base_url();
        let key = s.peer.secret_key();
        let (status, _, body) = send(
            http()
                .post(format!("{base}/v1/customers"))
                .bearer_auth(key)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[("name", "A"), ("nickname", "B")])),
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "parameter_unknown");
        assert_eq!(body["error"]["param"], "nickname");

        let (status, _, body) = send(
            http()
                .get(format!("{base}/v1/subscriptions/sub_nope"))
                .bearer_auth(key),
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "resource_missing");
        assert_eq!(body["error"]["param"], "id");
        assert_eq!(body["error"]["message"], "No such subscription: 'sub_nope'");

        let (status, _, body) =
            send(http().get(format!("{base}/v1/charges")).bearer_auth(key)).await;
        assert_eq!(status, 404);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Unrecognized request URL (GET: /v1/charges)")),
            "{body}"
        );
        let err = s
            .stripe
            .subscription("sub_nope")
            .await
            .expect_err("missing");
        assert!(
            matches!(&err, BillingError::Refused { status: 404, code: Some(c), .. } if c == "resource_missing"),
            "{err:?}"
        );
    }

    // BILL-008 (signatures)
    #[tokio::test]
    async fn stripe_webhooks_verify_with_billing_and_resend_delivers_the_same_event() {
        let s = setup().await;
        let (session, completed) = subscribed(&s).await;
        let received = s.hooks.wait_for(3, WAIT).await;
        assert!(received.iter().all(|r| r.path == "/webhooks/stripe"));
        let mut ids = Vec::new();
        for request in &received {
            let signature = request
                .header("stripe-signature")
                .unwrap_or_else(|| panic!("unsigned"));
            let event = billing::verify_webhook(
                &request.body,
                signature,
                s.peer.webhook_secret(),
                Utc::now(),
                billing::DEFAULT_TOLERANCE,
            )
            .unwrap_or_else(|e| panic!("verify: {e}"));
            assert!(event.id.starts_with("evt_"), "{}", event.id);
            // The product's own entry point verifies it too.
            let same = s
                .stripe
                .verify_webhook(&request.body, signature)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(same, event);
            let wrong = billing::verify_webhook(
                &request.body,
                signature,
                "whsec_other",
                Utc::now(),
                billing::DEFAULT_TOLERANCE,
            );
            assert!(wrong.is_err());
            ids.push(event);
        }
        let checkout = &ids[0];
        assert_eq!(checkout.kind, "checkout.session.completed");
        assert_eq!(checkout.object["id"], session);
        assert_eq!(checkout.object["object"], "checkout.session");
        assert_eq!(checkout.object["status"], "complete");
        assert_eq!(
            checkout.object["subscription"],
            completed.subscription.as_str()
        );
        assert_eq!(checkout.object["customer"], completed.customer.as_str());
        assert_eq!(checkout.object["metadata"]["provider"], "n8n");
        assert!(checkout.object["client_reference_id"].is_string());
        assert_eq!(ids[1].object["metadata"]["provider"], "n8n");
        assert_eq!(ids[1].object["status"], "active");
        assert_eq!(ids[2].object["id"], completed.invoice.as_str());
        assert_eq!(
            ids[2].object["parent"]["subscription_details"]["subscription"],
            completed.subscription.as_str()
        );
        let raw: Value = received[0].json();
        assert_eq!(raw["object"], "event");
        assert_eq!(raw["api_version"], API_VERSION);
        assert_eq!(raw["livemode"], false);

        s.hooks.set_default_status(500);
        let resent = s
            .peer
            .resend(&checkout.id)
            .await
            .unwrap_or_else(|e| panic!("resend: {e}"));
        assert_eq!(resent.id, checkout.id);
        assert_eq!(resent.status, Some(500));
        let again = s.hooks.wait_for(4, WAIT).await;
        let event = billing::verify_webhook(
            &again[3].body,
            again[3].header("stripe-signature").unwrap_or_default(),
            s.peer.webhook_secret(),
            Utc::now(),
            billing::DEFAULT_TOLERANCE,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&event, checkout);
        assert_eq!(
            s.peer.events().iter().map(|e| e.status).collect::<Vec<_>>(),
            [Some(200), Some(200), Some(200), Some(500)]
        );
        assert!(s.peer.resend("evt_unknown").await.is_err());
    }

    #[tokio::test]
    async fn stripe_failed_renewal_makes_the_subscription_past_due_until_one_is_paid() {
        let s = setup().await;
        let (_, completed) = subscribed(&s).await;
        let before = s
            .stripe
            .subscription(&completed.subscription)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let open = s
            .peer
            .fail_payment(&completed.subscription)
            .await
            .unwrap_or_else(|e| panic!("fail payment: {e}"));
        assert_eq!(
            kinds(&s.peer)[3..],
            ["invoice.payment_failed", "customer.subscription.updated"]
        );
        let update = &s.peer.events()[4].event;
        assert_eq!(update["data"]["previous_attributes"]["status"], "active");
        let sub = s
            .stripe
            .subscription(&completed.subscription)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sub.status, "past_due");
        assert!(sub.current_period_end > before.current_period_end);

        let page = s
            .stripe
            .invoices(&completed.customer, 10, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.invoices.len(), 2);
        assert_eq!(page.invoices[0].id, open, "newest first");
        assert_eq!(page.invoices[0].status.as_deref(), Some("open"));
        assert_eq!(
            (page.invoices[0].amount_due, page.invoices[0].amount_paid),
            (1900, 0)
        );

        let paid = s
            .peer
            .renew(&completed.subscription)
            .await
            .unwrap_or_else(|e| panic!("renew: {e}"));
        let sub = s
            .stripe
            .subscription(&completed.subscription)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sub.status, "active");

        let first = s
            .stripe
            .invoices(&completed.customer, 2, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(first.has_more);
        assert_eq!(
            first
                .invoices
                .iter()
                .map(|i| i.id.as_str())
                .collect::<Vec<_>>(),
            [paid.as_str(), open.as_str()]
        );
        let rest = s
            .stripe
            .invoices(&completed.customer, 2, Some(&open))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!rest.has_more);
        assert_eq!(rest.invoices.len(), 1);
        assert_eq!(rest.invoices[0].id, completed.invoice);
    }

    // BILL-009
    #[tokio::test]
    async fn stripe_portal_session_and_portal_cancel() {
        let s = setup().await;
        let (_, completed) = subscribed(&s).await;
        let url = s
            .stripe
            .create_portal_session(&completed.customer, "http://app.test/billing")
            .await
            .unwrap_or_else(|e| panic!("portal: {e}"));
        assert!(
            url.starts_with(&format!("{}/portal/bps_", s.peer.base_url())),
            "{url}"
        );
        let (status, _, page) = send(http().get(&url)).await;
        assert_eq!(status, 200);
        assert!(
            page.as_str()
                .is_some_and(|p| p.contains("http://app.test/billing"))
        );

        s.peer
            .portal_cancel(&completed.subscription)
            .await
            .unwrap_or_else(|e| panic!("portal cancel: {e}"));
        let sub = s
            .stripe
            .subscription(&completed.subscription)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(sub.cancel_at_period_end);
        let event = &s.peer.events()[3];
        assert_eq!(event.kind, "customer.subscription.updated");
        assert_eq!(event.event["data"]["object"]["cancel_at_period_end"], true);
        assert_eq!(
            event.event["data"]["previous_attributes"]["cancel_at_period_end"],
            false
        );
        assert!(
            event.event["request"]["id"].is_null(),
            "a customer's action, not an API call"
        );
    }

    #[tokio::test]
    async fn stripe_hosted_checkout_page_pays_and_redirects_to_the_success_url() {
        let s = setup().await;
        let customer = s
            .stripe
            .create_customer("Acme", None, Uuid::new_v4(), "k1")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let session = s
            .stripe
            .create_checkout_session(&checkout(&customer, PRO, Uuid::new_v4(), "k2"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (status, _, page) = send(http().get(&session.url)).await;
        assert_eq!(status, 200);
        let page = page.as_str().unwrap_or_default().to_owned();
        assert!(
            page.contains(r#"id="pay""#) && page.contains("19.00 EUR"),
            "{page}"
        );

        let (status, headers, _) = send(http().post(&session.url)).await;
        assert_eq!(status, 303);
        assert_eq!(
            headers.get("location").and_then(|v| v.to_str().ok()),
            Some(format!("http://app.test/billing/done?session={}", session.id).as_str())
        );
        // Delivered before the redirect.
        assert_eq!(kinds(&s.peer).len(), 3);
        let stored = s
            .peer
            .object(&session.id)
            .unwrap_or_else(|| panic!("no session"));
        assert_eq!(stored["status"], "complete");
        assert_eq!(stored["payment_status"], "paid");

        let (status, _, _) = send(http().get(&session.url)).await;
        assert_eq!(status, 410);
        assert!(s.peer.complete_checkout(&session.id).await.is_err());
    }

    #[tokio::test]
    async fn stripe_an_expired_checkout_session_cannot_be_paid_and_only_open_ones_expire() {
        let s = setup().await;
        let customer = s
            .stripe
            .create_customer("Acme", None, Uuid::new_v4(), "k1")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let session = s
            .stripe
            .create_checkout_session(&checkout(&customer, PRO, Uuid::new_v4(), "k2"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.stripe.checkout_session_status(&session.id).await.ok(),
            Some(CheckoutStatus::Open)
        );
        let expired = s
            .stripe
            .expire_checkout_session(&session.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(expired, CheckoutStatus::Expired);
        let stored = s
            .peer
            .object(&session.id)
            .unwrap_or_else(|| panic!("no session"));
        assert_eq!(
            (&stored["status"], &stored["url"], &stored["payment_status"]),
            (
                &Value::from("expired"),
                &Value::Null,
                &Value::from("unpaid")
            )
        );
        let event = s.hooks.wait_for(1, WAIT).await;
        assert_eq!(event[0].json()["type"], "checkout.session.expired");
        assert_eq!(event[0].json()["data"]["object"]["id"], session.id.as_str());

        // Nobody can pay it any more: not on the hosted page, not by the test control.
        let (status, _, page) = send(http().get(&session.url)).await;
        assert_eq!(status, 410);
        assert!(
            page.as_str().unwrap_or_default().contains("has expired"),
            "{page}"
        );
        let (status, _, _) = send(http().post(&session.url)).await;
        assert_eq!(status, 409);
        assert!(s.peer.complete_checkout(&session.id).await.is_err());
        assert!(
            s.peer
                .events()
                .iter()
                .all(|e| e.kind != "checkout.session.completed")
        );

        // Expiring again is refused in Stripe's words and shape (the billing client then asks
        // what the session is and reports it).
        let url = format!(
            "{}/v1/checkout/sessions/{}/expire",
            s.peer.base_url(),
            session.id
        );
        let (status, _, body) = send(http().post(&url).bearer_auth(s.peer.secret_key())).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(
            body["error"]["message"],
            "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of `expired`."
        );
        assert_eq!(
            s.stripe.expire_checkout_session(&session.id).await.ok(),
            Some(CheckoutStatus::Expired)
        );
        // A paid session is not expired: it is reported complete.
        let (paid, _) = subscribed(&s).await;
        let (status, _, body) = send(
            http()
                .post(format!(
                    "{}/v1/checkout/sessions/{paid}/expire",
                    s.peer.base_url()
                ))
                .bearer_auth(s.peer.secret_key()),
        )
        .await;
        assert_eq!(status, 400);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.ends_with("has a status of `complete`.")),
            "{body}"
        );
        assert_eq!(
            s.stripe.expire_checkout_session(&paid).await.ok(),
            Some(CheckoutStatus::Complete)
        );
        // An unknown one: Stripe's 404, which the client reads as nothing left to pay.
        let (status, _, body) = send(
            http()
                .post(format!(
                    "{}/v1/checkout/sessions/cs_test_nope/expire",
                    s.peer.base_url()
                ))
                .bearer_auth(s.peer.secret_key()),
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "resource_missing");
        assert_eq!(
            s.stripe.expire_checkout_session("cs_test_nope").await.ok(),
            Some(CheckoutStatus::Expired)
        );
    }

    #[tokio::test]
    async fn stripe_events_without_a_webhook_url_are_kept_for_resending() {
        let hooks = HookPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
        let peer = StripePeer::start(StripePeerConfig {
            prices: vec![PeerPrice::new(PRO, 1900, "eur", "month")],
            ..StripePeerConfig::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let stripe = client(&peer, peer.secret_key());
        let customer = stripe
            .create_customer("Acme", None, Uuid::new_v4(), "k1")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let session = stripe
            .create_checkout_session(&checkout(&customer, PRO, Uuid::new_v4(), "k2"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        peer.complete_checkout(&session.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let events = peer.events();
        assert_eq!(events.len(), 3);
        assert!(
            events
                .iter()
                .all(|e| e.status.is_none() && e.error.is_some())
        );

        peer.set_webhook_url(&hooks.url("/late"));
        let resent = peer
            .resend(&events[0].id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resent.status, Some(200));
        let received = hooks.wait_for(1, WAIT).await;
        assert_eq!(received[0].json()["id"], events[0].id.as_str());
    }
}
