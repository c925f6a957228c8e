//! Test support for WorkflowOps' end-to-end tests: a fresh PostgreSQL database per test (cloned
//! from a migrated template, so each costs milliseconds), the real application served on a
//! loopback port, fixtures, and an HTTP client. The loopback peers (n8n, Make, Stripe, SMTP
//! emulators) will live beside this.
//!
//! The server is `WFO_TEST_DATABASE_URL` (default: the local server as `postgres`).

pub mod app;
pub mod bench;
#[cfg(feature = "browser")]
pub mod browser;
pub mod db;

pub use app::{Caller, TenantFixture, TestApp};
pub use db::TestDb;

pub mod engine_support;
pub mod faults;
pub mod git_http;
pub mod github;
pub mod hooks;
pub mod mail;
pub mod make;
pub mod n8n;
pub mod sse;
pub mod stripe;
