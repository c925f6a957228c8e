//! The outside world behind traits.
//!
//! Providers (n8n, Make.com) behind one [`Provider`] trait and a registry keyed by provider
//! ([`connect`]); Git remotes through git2 ([`git`]: commits that always land, connection
//! tests that leave nothing behind); billing (async-stripe) and notifications (lettre SMTP,
//! Slack, webhooks) come with their issues. Every call to an address a tenant chose passes
//! [`net`]'s checks (which networks the server may reach; no redirects). Adapters classify
//! their errors at the boundary ([`ProviderError`]: auth, not found, validation with the
//! provider's message, rate limited with a delay, transient, permanent, refused destination)
//! so the engine's retry policy needs no knowledge of HTTP.

pub mod git;
mod http;
mod limiter;
pub mod make;
pub mod n8n;
pub mod net;
mod provider;

pub use limiter::Limits;
pub use provider::{
    Capabilities, Connection, CredentialMeta, Execution, ExecutionFilter, InstanceInfo, Page,
    Provider, ProviderError, ProviderKind, ProviderResult, ProviderUser, RawWorkflow, Tag, connect,
};
