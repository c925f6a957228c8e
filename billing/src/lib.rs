//! Billing for WorkflowOps: tenants subscribe to per-provider plans through Stripe.
//!
//! [`Stripe`] is a plain async client for the calls the product makes (customers, Checkout,
//! the billing portal, subscriptions, invoices), built on async-stripe; [`verify_webhook`]
//! checks the signature of the events Stripe sends back. No async-stripe type crosses this
//! crate's boundary: Stripe is about a third of a release build, and keeping its types here
//! means only this crate recompiles when Stripe code changes. Errors are classified at the
//! boundary ([`BillingError`]: refused, transient, invalid), so callers need no knowledge of
//! HTTP.

mod client;
mod error;
mod types;
mod webhook;

pub use client::{Stripe, StripeConfig};
pub use error::{BillingError, Result};
pub use types::{
    CheckoutRequest, CheckoutSession, CheckoutStatus, Invoice, InvoiceLine, InvoicePage,
    InvoicePreview, Subscription,
};
pub use webhook::{DEFAULT_TOLERANCE, WebhookEvent, signature_header, verify_webhook};
