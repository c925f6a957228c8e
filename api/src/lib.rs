//! The `workflowops` binary as a library: the axum API (REST, SSE, OpenAPI, web UI), the command
//! line (`serve`, `worker`, `migrate`, `dev`, admin commands), configuration and start-up.
//!
//! Thin by design: rules and storage live in `domain`, execution in `engine` and `jobs`. This
//! crate authenticates, authorises, validates, calls them, and renders the result.

pub mod app;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod db;
pub mod dev;
pub mod error;
pub mod events;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod read_audit;
pub mod routes;
pub mod server;
pub mod telemetry;
pub mod ui;
