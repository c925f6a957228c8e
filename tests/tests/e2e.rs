//! End-to-end tests: the real application over HTTP, a fresh PostgreSQL database per test.

mod e2e {
    mod api_keys;
    mod audit;
    mod auth;
    mod bad_input;
    mod billing;
    mod billing_ui;
    mod canonical;
    mod catalog;
    mod cli;
    mod console_ui;
    mod drift;
    mod engine;
    mod environments;
    mod git;
    mod health;
    mod idempotency;
    mod isolation;
    mod make_adapter;
    mod make_environments;
    mod n8n_adapter;
    mod notifications;
    mod observability;
    mod openapi;
    mod plans;
    mod platform;
    mod promotions;
    mod rbac;
    mod runs;
    mod secrets;
    mod snapshots;
    mod support;
    mod support_ui;
    mod team;
    #[cfg(feature = "browser")]
    mod ui;
    mod ui_pages;
    mod ui_team;
    mod workflows;
}
