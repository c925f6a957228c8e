//! The platform console's lists across tenants (PLAT-004): every tenant's runs (what failed
//! where, what is stuck, whose runs fill the queue) and every tenant's environments (which
//! instances are unreachable or refuse their keys, when each last synced). Platform admins only
//! (others get the console's 403 page). They read through the same engine and domain functions
//! as `GET /api/v1/platform/runs` and `/environments`, filtered and paged the same way; a run's
//! input and output and an environment's URL and key are never shown.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::environments::{self, AcrossFilter, HealthStatus, PlatformEnvironment};
use domain::page::{Page, PageRequest};
use domain::tenancy;
use engine::RunStatus;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::pages::failed;
use super::platform::{PLATFORM_ONLY, denied};
use super::support::Choice;
use super::{Nav, Viewer, page_of, render};
use crate::app::AppState;

/// Rows per page unless `?limit=` (1 to 200) says otherwise.
const PER_PAGE: u32 = 50;
/// The most of a run's error message a row shows (the rest is in its `title`).
const ERROR_SHOWN: usize = 200;
/// A tenant filter longer than this names no tenant.
const MAX_TENANT: usize = 200;

/// A moment as the pages show it.
fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn when_opt(at: Option<DateTime<Utc>>) -> String {
    at.map(when).unwrap_or_default()
}

/// The page request of `?cursor=&limit=` (a bad cursor is the first page).
fn page_request(cursor: Option<&str>, limit: Option<u32>) -> PageRequest {
    page_of(
        cursor,
        limit
            .filter(|l| (1..=domain::page::MAX_LIMIT).contains(l))
            .unwrap_or(PER_PAGE),
    )
}

/// A text filter as given: trimmed, empty when none.
fn text_of(q: Option<&str>) -> String {
    q.map(str::trim).unwrap_or_default().to_owned()
}

/// What the tenant filter (a tenant's slug or id) names.
enum TenantFilter {
    Any,
    One(Uuid),
    /// No tenant has that slug or id: nothing matches.
    Unknown,
}

impl TenantFilter {
    async fn resolve(state: &AppState, given: &str) -> Result<Self, domain::Error> {
        if given.is_empty() {
            return Ok(Self::Any);
        }
        if given.len() > MAX_TENANT {
            return Ok(Self::Unknown);
        }
        let found = match given.parse::<Uuid>() {
            Ok(id) => tenancy::tenant(&state.db, id).await,
            Err(_) => tenancy::tenant_by_slug(&state.db, given).await,
        };
        match found {
            Ok(t) => Ok(Self::One(t.id)),
            Err(domain::Error::NotFound { .. }) => Ok(Self::Unknown),
            Err(e) => Err(e),
        }
    }
}

/// `/platform/runs?tenant=&status=&kind=&cursor=&limit=`; `tenant` is a slug or an id.
#[derive(Debug, Default, Deserialize)]
pub struct RunsQuery {
    tenant: Option<String>,
    status: Option<String>,
    kind: Option<String>,
    cursor: Option<String>,
    #[serde(default, deserialize_with = "super::pages::empty_as_none")]
    limit: Option<u32>,
}

/// A run as the console lists it.
struct RunRow {
    id: Uuid,
    /// The tenant it belongs to; `None` for the platform's own runs (or a tenant that is gone).
    tenant_id: Option<Uuid>,
    /// The tenant's name, or the engine namespace when it is no tenant's (or the tenant is gone).
    tenant: String,
    tenant_slug: String,
    kind: String,
    status: &'static str,
    attempt: i32,
    max_attempts: i32,
    created_at: String,
    started_at: String,
    finished_at: String,
    /// The error's message, shortened; the whole of it in `error_full`.
    error: String,
    error_full: String,
}

/// The message of a run's error (`{"message": …}`), or the error as JSON.
fn error_message(error: Option<&Value>) -> String {
    error
        .map(|e| {
            e.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| e.to_string(), str::to_owned)
        })
        .unwrap_or_default()
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[derive(Template)]
#[template(path = "platform_runs.html")]
struct RunsPage {
    nav: Nav,
    runs: Vec<RunRow>,
    next_cursor: Option<String>,
    /// The filters as applied (empty: none), for the form and the next page's link.
    tenant: String,
    status: &'static str,
    kind: String,
    limit: u32,
    /// The tenant filter named no tenant.
    unknown_tenant: bool,
    status_choices: Vec<Choice>,
}

impl RunsPage {
    /// The page with its filters and no rows yet.
    fn new(nav: Nav, tenant: String, status: Option<RunStatus>, kind: String, limit: u32) -> Self {
        Self {
            nav,
            runs: Vec::new(),
            next_cursor: None,
            tenant,
            status: status.map_or("", RunStatus::as_str),
            kind,
            limit,
            unknown_tenant: false,
            status_choices: Choice::all(
                &RunStatus::ALL.map(RunStatus::as_str),
                status.map(RunStatus::as_str),
            ),
        }
    }

    fn filtered(&self) -> bool {
        !(self.tenant.is_empty() && self.status.is_empty() && self.kind.is_empty())
    }
}

/// Names and slugs of the tenants among `ids` (one query; tenants that are gone are left out).
async fn tenant_names(
    state: &AppState,
    ids: Vec<Uuid>,
) -> Result<HashMap<Uuid, (String, String)>, sqlx::Error> {
    let rows: Vec<(Uuid, String, String)> =
        sqlx::query_as("select id, name, slug from tenants where id = any($1)")
            .bind(ids)
            .fetch_all(&state.db)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, slug)| (id, (name, slug)))
        .collect())
}

/// `/platform/runs`: every tenant's runs, newest first.
pub async fn runs(
    State(state): State<AppState>,
    v: Viewer,
    super::pages::PageQuery(q): super::pages::PageQuery<RunsQuery>,
) -> Response {
    let nav = v.nav("platform");
    if !v.principal.platform_admin {
        return denied(nav, PLATFORM_ONLY);
    }
    let tenant = text_of(q.tenant.as_deref());
    let kind = text_of(q.kind.as_deref());
    // An unknown status is no filter (the form offers only the real ones).
    let status = q
        .status
        .as_deref()
        .and_then(|s| s.parse::<RunStatus>().ok());
    let page = page_request(q.cursor.as_deref(), q.limit);
    let namespace = match TenantFilter::resolve(&state, &tenant).await {
        Ok(TenantFilter::Any) => None,
        Ok(TenantFilter::One(id)) => Some(id.to_string()),
        Ok(TenantFilter::Unknown) => {
            return render(&RunsPage {
                unknown_tenant: true,
                ..RunsPage::new(nav, tenant, status, kind, page.limit)
            });
        }
        Err(e) => return failed(&e),
    };
    // Across every tenant, the last 30 days (as the API): a filter that matches little would
    // otherwise read all history.
    let since = namespace
        .is_none()
        .then(|| chrono::Utc::now() - chrono::Duration::days(30));
    let filter = engine::read::RunFilter {
        kind: (!kind.is_empty()).then(|| kind.clone()),
        status,
        since,
        ..engine::read::RunFilter::default()
    };
    let rows = match engine::read::list_in(
        &state.db,
        namespace.as_deref(),
        &filter,
        page.after,
        page.fetch_limit(),
    )
    .await
    {
        Ok(rows) => rows,
        Err(e) => return failed(&e),
    };
    let list = Page::from_rows(rows, page, |r: &engine::Run| r.id);
    let ids = list
        .items
        .iter()
        .filter_map(|r| r.namespace.parse().ok())
        .collect();
    let names = match tenant_names(&state, ids).await {
        Ok(n) => n,
        Err(e) => return failed(&e),
    };
    render(&RunsPage {
        next_cursor: list.next_cursor,
        runs: list
            .items
            .into_iter()
            .map(|r| {
                let known = r
                    .namespace
                    .parse::<Uuid>()
                    .ok()
                    .and_then(|t| Some((t, names.get(&t)?.clone())));
                let (tenant_id, (tenant, tenant_slug)) = match known {
                    Some((id, name)) => (Some(id), name),
                    None => (None, (r.namespace.clone(), String::new())),
                };
                let error_full = error_message(r.error.as_ref());
                RunRow {
                    id: r.id,
                    tenant_id,
                    tenant,
                    tenant_slug,
                    status: r.status().as_str(),
                    attempt: r.attempt,
                    max_attempts: r.max_attempts,
                    created_at: when(r.created_at),
                    started_at: when_opt(r.started_at),
                    finished_at: when_opt(r.finished_at),
                    error: shortened(&error_full, ERROR_SHOWN),
                    error_full,
                    kind: r.kind,
                }
            })
            .collect(),
        ..RunsPage::new(nav, tenant, status, kind, page.limit)
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct EnvironmentsQuery {
    tenant: Option<String>,
    provider: Option<String>,
    health: Option<String>,
    cursor: Option<String>,
    #[serde(default, deserialize_with = "super::pages::empty_as_none")]
    limit: Option<u32>,
}

/// An environment as the console lists it (no URL, no key).
struct EnvironmentRow {
    id: Uuid,
    tenant_id: Uuid,
    tenant: String,
    name: String,
    provider: String,
    class: &'static str,
    health: &'static str,
    last_sync_status: Option<String>,
    last_sync_at: String,
    workflows: i64,
}

impl EnvironmentRow {
    fn of(e: PlatformEnvironment) -> Self {
        let env = e.environment;
        Self {
            id: env.id,
            tenant_id: e.tenant_id,
            tenant: e.tenant_name,
            name: env.name,
            provider: env.provider,
            class: env.class.as_str(),
            health: env.health_status.as_str(),
            last_sync_status: env.last_sync_status,
            last_sync_at: when_opt(env.last_sync_at),
            workflows: env.workflow_count,
        }
    }
}

#[derive(Template)]
#[template(path = "platform_environments.html")]
struct EnvironmentsPage {
    nav: Nav,
    environments: Vec<EnvironmentRow>,
    next_cursor: Option<String>,
    /// The filters as applied (empty: none).
    tenant: String,
    provider: &'static str,
    health: &'static str,
    limit: u32,
    unknown_tenant: bool,
    provider_choices: Vec<Choice>,
    health_choices: Vec<Choice>,
}

impl EnvironmentsPage {
    fn filtered(&self) -> bool {
        !(self.tenant.is_empty() && self.provider.is_empty() && self.health.is_empty())
    }
}

/// `/platform/environments`: every tenant's environments, newest first.
pub async fn environments(
    State(state): State<AppState>,
    v: Viewer,
    super::pages::PageQuery(q): super::pages::PageQuery<EnvironmentsQuery>,
) -> Response {
    let nav = v.nav("platform");
    if !v.principal.platform_admin {
        return denied(nav, PLATFORM_ONLY);
    }
    let tenant = text_of(q.tenant.as_deref());
    // Unknown values are no filter (the form offers only the real ones).
    let provider = q
        .provider
        .as_deref()
        .and_then(adapters::ProviderKind::parse)
        .map(adapters::ProviderKind::as_str);
    let health = q.health.as_deref().and_then(HealthStatus::parse);
    let page = page_request(q.cursor.as_deref(), q.limit);
    let filters = EnvironmentsPage {
        nav,
        environments: Vec::new(),
        next_cursor: None,
        tenant,
        provider: provider.unwrap_or_default(),
        health: health.map_or("", HealthStatus::as_str),
        limit: page.limit,
        unknown_tenant: false,
        provider_choices: Choice::all(
            &adapters::ProviderKind::ALL.map(adapters::ProviderKind::as_str),
            provider,
        ),
        health_choices: Choice::all(
            &HealthStatus::ALL
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>(),
            health.map(HealthStatus::as_str),
        ),
    };
    let tenant_id = match TenantFilter::resolve(&state, &filters.tenant).await {
        Ok(TenantFilter::Any) => None,
        Ok(TenantFilter::One(id)) => Some(id),
        Ok(TenantFilter::Unknown) => {
            return render(&EnvironmentsPage {
                unknown_tenant: true,
                ..filters
            });
        }
        Err(e) => return failed(&e),
    };
    let filter = AcrossFilter {
        tenant_id,
        provider,
        health,
    };
    let list =
        match environments::list_across(&state.db, &filter, page.after, page.fetch_limit()).await {
            Ok(rows) => Page::from_rows(rows, page, |e: &PlatformEnvironment| e.environment.id),
            Err(e) => return failed(&e),
        };
    render(&EnvironmentsPage {
        environments: list.items.into_iter().map(EnvironmentRow::of).collect(),
        next_cursor: list.next_cursor,
        ..filters
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        assert_eq!(shortened("short", 10), "short");
        assert_eq!(shortened("ééééé", 3), "ééé…");
        assert_eq!(
            error_message(Some(&serde_json::json!({"message": "boom", "kind": "x"}))),
            "boom"
        );
        assert_eq!(
            error_message(Some(&serde_json::json!("plain"))),
            "\"plain\""
        );
        assert_eq!(error_message(None), "");
    }
}
