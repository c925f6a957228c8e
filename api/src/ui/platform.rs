//! The platform admin console (PLAT-003, PLAT-012..014, ADMIN-003..011):
//! the platform in numbers, the heaviest tenants by a metric, tenants at a limit, tenant search,
//! the running impersonations and the billing summary; per tenant its usage, plans, overrides,
//! refused features, support notes and users, each with an Impersonate button where that is
//! allowed (the plan parts are read in `plans.rs`). Platform admins only (others get a 403 page).
//! Pages read through the domain as the console's API does; notes and ending an impersonation
//! act through the JSON API, starting one through the UI's own route (it switches cookies).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::impersonation::{self, Filter, Impersonation, TenantUser};
use domain::tenancy::{self, Tenant};
use domain::usage::{self, AtLimit, Metric, PlatformUsage, TenantNote, TenantUsage};
use serde::Deserialize;
use uuid::Uuid;

use super::pages::{PagePath, failed, not_found};
use super::{Nav, Viewer, page_of, render};
use crate::app::AppState;

/// What a non-admin is told.
pub const PLATFORM_ONLY: &str = "The platform console is for platform administrators.";

/// How many tenants the top list shows (ADMIN-010).
const TOP: i64 = 10;
/// Page sizes of the lists.
const TENANTS_PER_PAGE: u32 = 50;
const USERS_PER_PAGE: u32 = 50;
const NOTES_SHOWN: u32 = 100;
const IMPERSONATIONS_SHOWN: u32 = 50;
/// Searches longer than this are ignored (the API has no use for them either).
const MAX_SEARCH: usize = 200;

#[derive(Template)]
#[template(path = "denied.html")]
struct Denied<'a> {
    nav: Nav,
    message: &'a str,
}

/// A 403 page in the layout, saying why.
pub fn denied(nav: Nav, message: &str) -> Response {
    (StatusCode::FORBIDDEN, render(&Denied { nav, message })).into_response()
}

/// A search box's text, trimmed; `None` when empty or absurdly long.
fn search_of(q: Option<&str>) -> Option<&str> {
    q.map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= MAX_SEARCH)
}

#[derive(Debug, Default, Deserialize)]
pub struct ConsoleQuery {
    metric: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "platform.html")]
struct ConsolePage {
    nav: Nav,
    overview: PlatformUsage,
    metric: Metric,
    top: Vec<TenantUsage>,
    at_limit: Vec<AtLimit>,
    max_environments: i64,
    search: String,
    tenants: Vec<Tenant>,
    next_cursor: Option<String>,
    impersonations: Vec<Impersonation>,
    more_impersonations: bool,
    retention: crate::routes::console::Retention,
    /// Subscriptions by plan, past due and canceling (ADMIN-005, ADMIN-007).
    billing: super::plans::BillingSummary,
}

/// A retention field's value for the form: the override, or empty (the server's setting).
fn days_value(d: Option<i32>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

impl ConsolePage {
    fn retention_fields(&self) -> Vec<(&'static str, &'static str, String, String)> {
        let (o, d) = (&self.retention.overrides, &self.retention.defaults);
        vec![
            (
                "runs_days",
                "Finished runs and alerts",
                days_value(o.runs_days),
                days_value(d.runs_days),
            ),
            (
                "executions_days",
                "Synced executions",
                days_value(o.executions_days),
                days_value(d.executions_days),
            ),
            (
                "snapshots_days",
                "Scheduled snapshots",
                days_value(o.snapshots_days),
                days_value(d.snapshots_days),
            ),
            (
                "read_audit_days",
                "Audited reads",
                days_value(o.read_audit_days),
                days_value(d.read_audit_days),
            ),
        ]
    }

    fn metrics(&self) -> &'static [Metric] {
        Metric::ALL
    }

    fn is_metric(&self, m: &Metric) -> bool {
        *m == self.metric
    }
}

/// `/platform`: the console's front page.
pub async fn console(
    State(state): State<AppState>,
    v: Viewer,
    super::pages::PageQuery(q): super::pages::PageQuery<ConsoleQuery>,
) -> Response {
    let nav = v.nav("platform");
    if !v.principal.platform_admin {
        return denied(nav, PLATFORM_ONLY);
    }
    let metric = q
        .metric
        .as_deref()
        .and_then(Metric::parse)
        .unwrap_or(Metric::Runs);
    let search = search_of(q.q.as_deref());
    let loaded: Result<_, domain::Error> = async {
        Ok((
            usage::platform(&state.db).await?,
            usage::top(&state.db, metric, TOP).await?,
            usage::at_limit(
                &mut *state.db.acquire().await?,
                state.config.max_environments,
            )
            .await?,
            tenancy::list_tenants(
                &state.db,
                search,
                page_of(q.cursor.as_deref(), TENANTS_PER_PAGE),
            )
            .await?,
            impersonation::list(
                &state.db,
                &Filter {
                    active: Some(true),
                    ..Filter::default()
                },
                page_of(None, IMPERSONATIONS_SHOWN),
            )
            .await?,
            usage::retention(&state.db).await?,
            super::plans::billing_summary(&state.db).await?,
        ))
    }
    .await;
    let (overview, top, at_limit, tenants, impersonations, retention, billing) = match loaded {
        Ok(l) => l,
        Err(e) => return failed(&e),
    };
    render(&ConsolePage {
        nav,
        overview,
        metric,
        top,
        at_limit,
        max_environments: state.config.max_environments,
        search: search.unwrap_or_default().to_owned(),
        next_cursor: tenants.next_cursor,
        tenants: tenants.items,
        more_impersonations: impersonations.next_cursor.is_some(),
        impersonations: impersonations.items,
        retention: crate::routes::console::retention_view(&state, retention),
        billing,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct TenantQuery {
    q: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "platform_tenant.html")]
struct TenantPage {
    nav: Nav,
    usage: TenantUsage,
    max_environments: i64,
    notes: Vec<TenantNote>,
    more_notes: bool,
    search: String,
    users: Vec<TenantUser>,
    next_cursor: Option<String>,
    /// The tenant's impersonations, newest first (PLAT-010).
    impersonations: Vec<Impersonation>,
    /// Why an impersonation just failed to start.
    error: Option<String>,
    /// Its subscriptions, overrides and refused features.
    plans: super::plans::TenantPlans,
}

/// `/platform/tenants/{id}`: one tenant for support.
pub async fn tenant(
    State(state): State<AppState>,
    v: Viewer,
    PagePath(id): PagePath<Uuid>,
    super::pages::PageQuery(q): super::pages::PageQuery<TenantQuery>,
) -> Response {
    tenant_page(&state, &v, id, &q, None).await
}

/// The tenant page, with `error` shown by the users (a refused impersonation).
pub(super) async fn tenant_page(
    state: &AppState,
    v: &Viewer,
    id: Uuid,
    q: &TenantQuery,
    error: Option<String>,
) -> Response {
    let nav = v.nav("platform");
    if !v.principal.platform_admin {
        return denied(nav, PLATFORM_ONLY);
    }
    let usage = match usage::tenant(&state.db, id).await {
        Ok(u) => u,
        Err(domain::Error::NotFound { .. }) => return not_found(nav, "tenant"),
        Err(e) => return failed(&e),
    };
    let search = search_of(q.q.as_deref());
    let loaded: Result<_, domain::Error> = async {
        Ok((
            usage::notes(&state.db, id, page_of(None, NOTES_SHOWN)).await?,
            impersonation::tenant_users(
                &state.db,
                id,
                search,
                page_of(q.cursor.as_deref(), USERS_PER_PAGE),
            )
            .await?,
            impersonation::list(
                &state.db,
                &Filter {
                    tenant_id: Some(id),
                    ..Filter::default()
                },
                page_of(None, IMPERSONATIONS_SHOWN),
            )
            .await?,
            super::plans::tenant_plans(state, id).await?,
        ))
    }
    .await;
    let (notes, users, impersonations, plans) = match loaded {
        Ok(l) => l,
        Err(e) => return failed(&e),
    };
    render(&TenantPage {
        nav,
        usage,
        max_environments: state.config.max_environments,
        more_notes: notes.next_cursor.is_some(),
        notes: notes.items,
        search: search.unwrap_or_default().to_owned(),
        next_cursor: users.next_cursor,
        users: users.items,
        impersonations: impersonations.items,
        error,
        plans,
    })
}
