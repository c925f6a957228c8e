//! What billing hands to the rest of WorkflowOps: plain structs with only the fields it uses.
//! Amounts are in the currency's minor unit (cents), as Stripe counts them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// A Checkout Session to open for a subscription to one price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// `cus_...`
    pub customer: String,
    /// `price_...`: the plan, bought once (quantity 1).
    pub price_id: String,
    /// Where Stripe sends the browser after payment. Stripe replaces `{CHECKOUT_SESSION_ID}`.
    pub success_url: String,
    pub cancel_url: String,
    /// Comes back on `checkout.session.completed` (we put the tenant id here).
    pub client_reference_id: String,
    /// Set on the session and on the subscription it creates.
    pub metadata: Vec<(String, String)>,
    /// Retrying with the same key cannot open a second session.
    pub idempotency_key: String,
}

/// Where a Checkout Session stands (Stripe's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutStatus {
    /// It can still be paid.
    Open,
    /// It was paid: its subscription exists (or is being made).
    Complete,
    /// It can no longer be paid (expired by Stripe's clock or by a request).
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    /// `cs_...`
    pub id: String,
    /// The hosted payment page to send the browser to.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// `sub_...`
    pub id: String,
    /// `cus_...`
    pub customer: String,
    /// `active`, `trialing`, `past_due`, `canceled`, `incomplete`, `incomplete_expired`,
    /// `unpaid` or `paused` (or a status Stripe added since).
    pub status: String,
    /// The price of the first item (our subscriptions have exactly one).
    pub price_id: Option<String>,
    /// `si_...`, needed to change the price.
    pub item_id: Option<String>,
    /// Stripe keeps billing periods on the items (since API version 2025-03-31): this is the
    /// first item's.
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoicePage {
    /// Newest first.
    pub invoices: Vec<Invoice>,
    /// Whether a page after the last invoice of this one exists.
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// `in_...`
    pub id: String,
    /// The number printed on the invoice, once it is finalized.
    pub number: Option<String>,
    /// `draft`, `open`, `paid`, `uncollectible` or `void`.
    pub status: Option<String>,
    /// Lowercase ISO code (`eur`).
    pub currency: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub total: i64,
    pub created: DateTime<Utc>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// Stripe's page for the invoice (pay, download), once it is finalized.
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
}

/// The invoice Stripe would issue next for a subscription, as it stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoicePreview {
    pub currency: String,
    pub amount_due: i64,
    pub total: i64,
    /// When Stripe will try to charge it.
    pub next_payment_attempt: Option<DateTime<Utc>>,
    /// The end of the invoice's own period (Stripe's `period_end`); what each line bills for is
    /// in the line's period.
    pub period_end: Option<DateTime<Utc>>,
    /// The first page of lines (up to Stripe's default of ten).
    pub lines: Vec<InvoiceLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    pub description: Option<String>,
    pub amount: i64,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
}
