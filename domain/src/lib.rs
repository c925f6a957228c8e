//! The WorkflowOps model and its rules.
//!
//! Types (tenants, users, roles, API keys, audit entries, ...), the PostgreSQL store for them
//! (every function takes an executor so a caller can compose one transaction), and pure logic
//! (RBAC, validation, secrets encryption). Knows nothing of HTTP or of job execution: `api` and
//! `jobs` build on it; it depends on none of our other crates.

/// `format!` for SQL assembled only from compile-time constants (column lists, fixed clauses),
/// never from input: values always travel as bind parameters.
macro_rules! sqlf {
    ($($arg:tt)*) => {
        sqlx::AssertSqlSafe(format!($($arg)*))
    };
}

#[macro_use]
mod text_enum;

pub mod action_requests;
pub mod audit;
pub mod bundle;
pub mod canonical;
pub mod catalog;
pub mod crypto;
pub mod diff;
pub mod drift;
pub mod entitlements;
pub mod environments;
pub mod error;
pub mod git_config;
pub mod ids;
pub mod impersonation;
pub mod invitations;
pub mod json;
pub mod keys;
pub mod make;
pub mod notifications;
pub mod observability;
pub mod page;
pub mod password;
pub mod pipelines;
pub mod policy;
pub mod promotions;
pub mod rbac;
pub mod remap;
pub mod secrets;
pub mod sessions;
pub mod snapshots;
pub mod support;
pub mod tenancy;
pub mod throttle;
pub mod tokens;
pub mod usage;
pub mod validate;
pub mod workflow;

pub use error::{Error, FieldError, Result};
pub use rbac::{Permission, Role};
