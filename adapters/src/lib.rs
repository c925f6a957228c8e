//! The outside world behind traits.
//!
//! Providers (n8n, Make.com) behind one `Provider` trait and a registry keyed by provider; git
//! (git2); billing (async-stripe); notifications (lettre SMTP, Slack, webhooks). Adapters
//! classify their errors at the boundary (retryable, permanent, auth, not found, rate limited
//! with a delay) so the engine's retry policy needs no knowledge of HTTP.
//!
//! Empty until the n8n/sync issue: the foundation only fixes where these live.
