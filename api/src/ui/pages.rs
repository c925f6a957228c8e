//! The pages: each reads through the domain (tenant-scoped, like the API) and renders a template.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::catalog::{self, WorkflowFilter, WorkflowItem};
use domain::drift::{self, Incident, IncidentFilter, IncidentStatus};
use domain::environments::{self, Environment};
use domain::promotions::{self, Approval, Promotion, PromotionFilter};
use serde::Deserialize;
use uuid::Uuid;

use super::{Nav, Viewer, page_of, render};
use crate::app::AppState;

mod executions;
mod live;
mod path;
mod query;
mod run_list;

pub use executions::executions;
use live::{LiveRun, last_event};
pub(super) use path::PagePath;
pub(super) use query::{PageQuery, empty_as_none};
use run_list::recent_runs;
pub use run_list::{RunRow, runs};

#[derive(Template)]
#[template(path = "missing.html")]
struct Missing<'a> {
    nav: Nav,
    /// What the link named ("run", "environment"…), or `None` for a path no page has.
    what: Option<&'a str>,
    path: &'a str,
}

/// The 404 page in the layout: the link's `what` (a run, an environment…) does not exist, or
/// is not this tenant's.
pub(super) fn not_found(nav: Nav, what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        render(&Missing {
            nav,
            what: Some(what),
            path: "",
        }),
    )
        .into_response()
}

/// The 404 page in the layout for a path no page has (signed-in browsers; see `not_found_page`).
pub(super) fn no_such_page(nav: Nav, path: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        render(&Missing {
            nav,
            what: None,
            path,
        }),
    )
        .into_response()
}

pub(super) fn failed(e: &impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "a page's query failed");
    super::difficulties()
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    nav: Nav,
    environments: Vec<Environment>,
    runs: Vec<RunRow>,
    incidents: Vec<Incident>,
    promotions: Vec<Promotion>,
    /// The observability overview; `None` when the plan leaves execution metrics out.
    metrics: Option<Metrics>,
    /// Shown instead of the metrics (ENT-005), as the API refuses the overview.
    metrics_upgrade: Option<super::billing::Upgrade>,
    /// A `?range=` the dashboard does not know, shown as the 24 hours it falls back to.
    unknown_range: Option<String>,
}

/// The dashboard's execution metrics: status, insights, KPIs, errors, environment health.
struct Metrics {
    overview: domain::observability::Overview,
}

impl Metrics {
    fn spark(&self, which: &str) -> String {
        let values: Vec<f64> = self
            .overview
            .kpis
            .series
            .iter()
            .map(|b| match which {
                "executions" => b.executions as f64,
                "success" => {
                    if b.executions > 0 {
                        b.succeeded as f64 / b.executions as f64
                    } else {
                        0.0
                    }
                }
                _ => b.avg_duration_ms.unwrap_or(0.0),
            })
            .collect();
        domain::observability::sparkline(&values, 160.0, 32.0)
    }

    fn pct(&self, v: &Option<f64>) -> String {
        v.map_or_else(|| "—".to_owned(), |r| format!("{:.1}%", r * 100.0))
    }

    fn ms(&self, v: &Option<f64>) -> String {
        v.map_or_else(|| "—".to_owned(), |m| format!("{m:.0} ms"))
    }

    fn delta(&self) -> String {
        self.overview
            .kpis
            .failure_delta_pct
            .map_or_else(|| "—".to_owned(), |d| format!("{d:+.0}%"))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    range: Option<String>,
}

/// The dashboard. Its metrics are the observability overview, so they need the plan's
/// `execution_metrics` as the API's overview does (for every provider the tenant has
/// environments with); without it the page shows the upgrade notice in their place. Viewing
/// the page is not asking for the feature: nothing is logged as a refusal.
pub async fn dashboard(
    State(state): State<AppState>,
    v: Viewer,
    PageQuery(q): PageQuery<DashboardQuery>,
) -> Response {
    let asked = q.range.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let parsed = domain::observability::Range::parse(asked.unwrap_or("24h"));
    let unknown_range = asked.filter(|_| parsed.is_err()).map(str::to_owned);
    let range = parsed.unwrap_or(domain::observability::Range::Day);
    let result: Result<Dashboard, domain::Error> = async {
        let mut conn = state.db.acquire().await?;
        let ent = domain::entitlements::entitlements(&mut conn, v.tenant_id).await?;
        drop(conn);
        let metrics_upgrade = super::billing::upgrade(
            &state.db,
            &ent,
            domain::entitlements::Feature::ExecutionMetrics,
        )
        .await?;
        let metrics = match metrics_upgrade {
            Some(_) => None,
            None => Some(Metrics {
                overview: domain::observability::overview(
                    &state.db,
                    v.tenant_id,
                    range,
                    chrono::Utc::now(),
                )
                .await?,
            }),
        };
        Ok(Dashboard {
            metrics,
            metrics_upgrade,
            unknown_range,
            environments: environments::list(&state.db, v.tenant_id).await?,
            runs: recent_runs(&state, v.tenant_id, None, 10).await?,
            incidents: drift::list(
                &state.db,
                v.tenant_id,
                &IncidentFilter {
                    open: Some(true),
                    ..Default::default()
                },
                page_of(None, 10),
            )
            .await?
            .items,
            promotions: promotions::list(
                &state.db,
                v.tenant_id,
                &PromotionFilter::default(),
                page_of(None, 5),
            )
            .await?
            .items,
            nav: v.nav("dashboard"),
        })
    }
    .await;
    match result {
        Ok(page) => render(&page),
        Err(e) => failed(&e),
    }
}

#[derive(Template)]
#[template(path = "environments.html")]
struct Environments {
    nav: Nav,
    environments: Vec<Environment>,
}

pub async fn environments(State(state): State<AppState>, v: Viewer) -> Response {
    match environments::list(&state.db, v.tenant_id).await {
        Ok(environments) => render(&Environments {
            nav: v.nav("environments"),
            environments,
        }),
        Err(e) => failed(&e),
    }
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    nav: Nav,
    policy: drift::Policy,
    repo: Option<domain::canonical::CanonicalRepo>,
}

impl SettingsPage {
    fn needs(&self, action: &str) -> bool {
        self.policy
            .approval_required_for
            .iter()
            .any(|a| a == action)
    }
}

/// Tenant settings: the canonical repository and the drift policy.
pub async fn settings(State(state): State<AppState>, v: Viewer) -> Response {
    let policy = match drift::policy(&state.db, v.tenant_id).await {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    let repo = domain::canonical::get_repo(&state.db, v.tenant_id)
        .await
        .ok();
    render(&SettingsPage {
        nav: v.nav("settings"),
        policy,
        repo,
    })
}

#[derive(Template)]
#[template(path = "environment.html")]
struct EnvironmentPage {
    nav: Nav,
    env: Environment,
    workflows: i64,
    runs: Vec<RunRow>,
    /// The newest of its runs in progress (a sync, a backup, a drift check…), to follow live.
    running: Option<LiveRun>,
    /// Its Git repository, if connected.
    git: Option<domain::git_config::GitConfig>,
    snapshots: Vec<domain::snapshots::Snapshot>,
}

impl EnvironmentPage {
    /// Changing and deleting environments is for roles that manage them; others see it disabled.
    fn can_manage(&self) -> bool {
        self.nav.can(domain::Permission::ManageEnvironments)
    }

    /// The snapshot before the one at `i` in the (newest-first) list, to compare with.
    fn previous(&self, i: &usize) -> String {
        self.snapshots
            .get(i + 1)
            .map(|s| s.id.to_string())
            .unwrap_or_default()
    }
}

pub async fn environment(
    State(state): State<AppState>,
    v: Viewer,
    PagePath(id): PagePath<Uuid>,
) -> Response {
    let env = match environments::get(&state.db, v.tenant_id, id).await {
        Ok(env) => env,
        Err(domain::Error::NotFound { .. }) => {
            return not_found(v.nav("environments"), "environment");
        }
        Err(e) => return failed(&e),
    };
    let workflows: i64 = match sqlx::query_scalar(
        "select count(*) from env_workflows where environment_id = $1 and deleted_at is null",
    )
    .bind(id)
    .fetch_one(&state.db)
    .await
    {
        Ok(n) => n,
        Err(e) => return failed(&e),
    };
    let runs = match recent_runs(&state, v.tenant_id, Some(id), 10).await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    // Its events are read after the list: a change in between may be taken for history, and a
    // run waiting for an approval is not one this page refreshes for; its end always refreshes.
    let running = match runs
        .iter()
        .find(|r| ["queued", "running"].contains(&r.status.as_str()))
    {
        Some(r) => match last_event(&state.db, &v.tenant_id.to_string(), r.id).await {
            Ok(since) => Some(LiveRun::new(r.id, &r.status, since)),
            Err(e) => return failed(&e),
        },
        None => None,
    };
    let git = domain::git_config::get(&state.db, v.tenant_id, id)
        .await
        .ok();
    let snapshots =
        match domain::snapshots::list(&state.db, v.tenant_id, id, None, page_of(None, 20)).await {
            Ok(p) => p.items,
            Err(e) => return failed(&e),
        };
    render(&EnvironmentPage {
        nav: v.nav("environments"),
        env,
        workflows,
        runs,
        running,
        git,
        snapshots,
    })
}

/// Searches are cut to this many characters (the API refuses longer ones).
const MAX_SEARCH: usize = 200;

/// A search box's text as a page uses it: trimmed, cut to [`MAX_SEARCH`] characters.
#[derive(Debug, Default, PartialEq)]
struct Search {
    text: String,
    /// It was cut: the page says it searched for less than was typed.
    shortened: bool,
}

impl Search {
    fn of(q: Option<&str>) -> Self {
        let text = q.map(str::trim).unwrap_or_default();
        match text.char_indices().nth(MAX_SEARCH) {
            Some((at, _)) => Self {
                text: text[..at].trim_end().to_owned(),
                shortened: true,
            },
            None => Self {
                text: text.to_owned(),
                shortened: false,
            },
        }
    }

    /// The filter: `None` for an empty box.
    fn filter(&self) -> Option<String> {
        Some(self.text.clone()).filter(|t| !t.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    search: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    environment_id: Option<Uuid>,
    cursor: Option<String>,
    status: Option<String>,
}

#[derive(Template)]
#[template(path = "workflows.html")]
struct Workflows {
    nav: Nav,
    items: Vec<WorkflowItem>,
    next_cursor: Option<String>,
    search: Search,
    environments: Vec<Environment>,
    environment_id: Option<Uuid>,
}

pub async fn workflows(
    State(state): State<AppState>,
    v: Viewer,
    PageQuery(q): PageQuery<ListQuery>,
) -> Response {
    let search = Search::of(q.search.as_deref());
    let filter = WorkflowFilter {
        environment_id: q.environment_id,
        search: search.filter(),
        ..WorkflowFilter::default()
    };
    let page =
        match catalog::list_workflows(&state.db, v.tenant_id, &filter, q.cursor.as_deref(), 50)
            .await
        {
            Ok(p) => p,
            Err(domain::Error::Validation(_)) => {
                match catalog::list_workflows(&state.db, v.tenant_id, &filter, None, 50).await {
                    Ok(p) => p,
                    Err(e) => return failed(&e),
                }
            }
            Err(e) => return failed(&e),
        };
    let environments = match environments::list(&state.db, v.tenant_id).await {
        Ok(e) => e,
        Err(e) => return failed(&e),
    };
    render(&Workflows {
        nav: v.nav("workflows"),
        items: page.items,
        next_cursor: page.next_cursor,
        search,
        environments,
        environment_id: q.environment_id,
    })
}

#[derive(Template)]
#[template(path = "matrix.html")]
struct MatrixPage {
    nav: Nav,
    matrix: domain::canonical::Matrix,
    untracked: Vec<domain::canonical::UntrackedWorkflow>,
    repository: bool,
}

pub async fn matrix(
    State(state): State<AppState>,
    v: Viewer,
    PageQuery(q): PageQuery<ListQuery>,
) -> Response {
    let mut conn = match state.db.acquire().await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let filter = domain::canonical::MatrixFilter {
        search: q.search.filter(|s| !s.trim().is_empty()),
        ..Default::default()
    };
    let matrix =
        match domain::canonical::matrix(&mut conn, v.tenant_id, &filter, q.cursor.as_deref(), 50)
            .await
        {
            Ok(m) => m,
            Err(e) => return failed(&e),
        };
    let untracked =
        match domain::canonical::untracked(&mut *conn, v.tenant_id, None, None, 100).await {
            Ok(p) => p.items,
            Err(e) => return failed(&e),
        };
    let repository = domain::canonical::get_repo(&mut *conn, v.tenant_id)
        .await
        .is_ok();
    render(&MatrixPage {
        nav: v.nav("matrix"),
        matrix,
        untracked,
        repository,
    })
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    nav: Nav,
    run: RunRow,
    live: LiveRun,
    error: String,
    steps: Vec<(String, i32, String)>,
}

pub async fn run(
    State(state): State<AppState>,
    v: Viewer,
    PagePath(id): PagePath<Uuid>,
) -> Response {
    let namespace = v.tenant_id.to_string();
    let since = match last_event(&state.db, &namespace, id).await {
        Ok(since) => since,
        Err(e) => return failed(&e),
    };
    let run = match engine::queue::get(&state.db, &namespace, id).await {
        Ok(r) => r,
        Err(engine::queue::Error::NotFound) => return not_found(v.nav("runs"), "run"),
        Err(e) => return failed(&e),
    };
    let names = match env_names(&state, v.tenant_id).await {
        Ok(n) => n,
        Err(e) => return failed(&e),
    };
    let steps: Vec<(String, i32, String)> = match sqlx::query_as(
        "select name, attempt, to_char(completed_at, 'HH24:MI:SS') from engine_steps where run_id = $1 order by completed_at",
    )
    .bind(id)
    .fetch_all(&state.db)
    .await
    {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    render(&RunPage {
        nav: v.nav("runs"),
        error: run
            .error
            .as_ref()
            .map(|e| {
                e.get("message")
                    .and_then(|m| m.as_str())
                    .map_or_else(|| e.to_string(), str::to_owned)
            })
            .unwrap_or_default(),
        live: LiveRun::new(run.id, run.status().as_str(), since),
        run: RunRow::of(&run, &names),
        steps,
    })
}

#[derive(Template)]
#[template(path = "promotions.html")]
struct Promotions {
    nav: Nav,
    promotions: Vec<Promotion>,
    names: std::collections::HashMap<Uuid, String>,
    status: String,
    next_cursor: Option<String>,
    /// Whether the tenant has a pipeline to promote through (the empty state says what next).
    has_pipeline: bool,
}

async fn env_names(
    state: &AppState,
    tenant: Uuid,
) -> Result<std::collections::HashMap<Uuid, String>, domain::Error> {
    Ok(environments::list(&state.db, tenant)
        .await?
        .into_iter()
        .map(|e| (e.id, e.name))
        .collect())
}

pub async fn promotions(
    State(state): State<AppState>,
    v: Viewer,
    PageQuery(q): PageQuery<ListQuery>,
) -> Response {
    let status = q
        .status
        .as_deref()
        .and_then(promotions::PromotionStatus::parse);
    let filter = PromotionFilter {
        status,
        environment_id: q.environment_id,
        ..PromotionFilter::default()
    };
    let result: Result<Promotions, domain::Error> = async {
        let page = promotions::list(
            &state.db,
            v.tenant_id,
            &filter,
            page_of(q.cursor.as_deref(), 50),
        )
        .await?;
        let has_pipeline = !page.items.is_empty()
            || !domain::pipelines::list(&state.db, v.tenant_id, page_of(None, 1))
                .await?
                .items
                .is_empty();
        Ok(Promotions {
            status: status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
            next_cursor: page.next_cursor,
            has_pipeline,
            promotions: page.items,
            names: env_names(&state, v.tenant_id).await?,
            nav: v.nav("promotions"),
        })
    }
    .await;
    match result {
        Ok(p) => render(&p),
        Err(e) => failed(&e),
    }
}

#[derive(Template)]
#[template(path = "promotion.html")]
struct PromotionPage {
    nav: Nav,
    p: Promotion,
    approvals: Vec<Approval>,
    items: Vec<serde_json::Value>,
    gates: Vec<serde_json::Value>,
    results: Vec<serde_json::Value>,
    rollback: Vec<serde_json::Value>,
    names: std::collections::HashMap<Uuid, String>,
    can_decide: bool,
    /// Its run, as the page follows it.
    live: Option<LiveRun>,
}

pub async fn promotion(
    State(state): State<AppState>,
    v: Viewer,
    PagePath(id): PagePath<Uuid>,
) -> Response {
    // How its run stands is read before the promotion the page shows (see `last_event`): if the
    // run had finished then, the page shows it finished and never refreshes.
    let namespace = v.tenant_id.to_string();
    let (run_id, live) = match promotions::get(&state.db, v.tenant_id, id).await {
        Ok(Promotion {
            run_id: Some(run), ..
        }) => {
            let since = match last_event(&state.db, &namespace, run).await {
                Ok(since) => since,
                Err(e) => return failed(&e),
            };
            match engine::queue::get(&state.db, &namespace, run).await {
                Ok(r) => (
                    Some(run),
                    Some(LiveRun::new(run, r.status().as_str(), since)),
                ),
                // Pruned long after it finished: nothing to follow.
                Err(engine::queue::Error::NotFound) => (Some(run), None),
                Err(e) => return failed(&e),
            }
        }
        Ok(_) => (None, None),
        Err(domain::Error::NotFound { .. }) => return not_found(v.nav("promotions"), "promotion"),
        Err(e) => return failed(&e),
    };
    let p = match promotions::get(&state.db, v.tenant_id, id).await {
        Ok(p) => p,
        Err(domain::Error::NotFound { .. }) => return not_found(v.nav("promotions"), "promotion"),
        Err(e) => return failed(&e),
    };
    // A run given to it meanwhile has just started.
    let live = if p.run_id == run_id {
        live
    } else {
        p.run_id
            .map(|run| LiveRun::new(run, "queued", String::new()))
    };
    let approvals = match promotions::approvals(&state.db, id).await {
        Ok(a) => a,
        Err(e) => return failed(&e),
    };
    let names = match env_names(&state, v.tenant_id).await {
        Ok(n) => n,
        Err(e) => return failed(&e),
    };
    let arr = |x: &Option<serde_json::Value>| {
        x.as_ref()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    let gates = p
        .gates
        .as_ref()
        .and_then(|g| g.get("gates"))
        .and_then(|g| g.as_array().cloned())
        .unwrap_or_default();
    let nav = v.nav("promotions");
    let can_decide = p.status == "pending_approval" && p.requested_by != v.principal.user_id();
    render(&PromotionPage {
        items: arr(&p.diff),
        results: arr(&p.results),
        rollback: arr(&p.rollback),
        gates,
        approvals,
        names,
        can_decide,
        live,
        nav,
        p,
    })
}

#[derive(Template)]
#[template(path = "incidents.html")]
struct Incidents {
    nav: Nav,
    incidents: Vec<Incident>,
    names: std::collections::HashMap<Uuid, String>,
    status: String,
    next_cursor: Option<String>,
}

pub async fn incidents(
    State(state): State<AppState>,
    v: Viewer,
    PageQuery(q): PageQuery<ListQuery>,
) -> Response {
    let status = q.status.clone().unwrap_or_else(|| "open".into());
    let filter = IncidentFilter {
        open: match status.as_str() {
            "open" => Some(true),
            "closed" => Some(false),
            _ => None,
        },
        ..Default::default()
    };
    let result: Result<Incidents, domain::Error> = async {
        let page = drift::list(
            &state.db,
            v.tenant_id,
            &filter,
            page_of(q.cursor.as_deref(), 50),
        )
        .await?;
        Ok(Incidents {
            incidents: page.items,
            next_cursor: page.next_cursor,
            names: env_names(&state, v.tenant_id).await?,
            nav: v.nav("incidents"),
            status,
        })
    }
    .await;
    match result {
        Ok(p) => render(&p),
        Err(e) => failed(&e),
    }
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    nav: Nav,
    i: Incident,
    env: String,
    next: Vec<IncidentStatus>,
    affected: Vec<serde_json::Value>,
    approvals: Vec<drift::Approval>,
    /// Side by side: (workflow, what, Git's version, the environment's).
    changes: Vec<(String, String, String, String)>,
}

/// The drift payload's structural diffs as rows: canonical (Git) value beside the environment's.
fn change_rows(
    payload: &serde_json::Value,
    affected: &[serde_json::Value],
) -> Vec<(String, String, String, String)> {
    let show = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => "—".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let mut rows = Vec::new();
    for a in affected {
        let id = field(a, "workflow_id");
        let name = field(a, "name");
        let Some(d) = payload.get(&id).and_then(|p| p.get("diff")) else {
            continue;
        };
        for n in d
            .get("nodes_added")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            rows.push((
                name.clone(),
                format!("node {}", field(n, "name")),
                "—".into(),
                format!("added ({})", field(n, "type")),
            ));
        }
        for n in d
            .get("nodes_removed")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            rows.push((
                name.clone(),
                format!("node {}", field(n, "name")),
                format!("present ({})", field(n, "type")),
                "removed".into(),
            ));
        }
        for n in d
            .get("nodes_changed")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            for c in n
                .get("changes")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                rows.push((
                    name.clone(),
                    format!("{} · {}", field(n, "name"), field(c, "path")),
                    show(c.get("old")),
                    show(c.get("new")),
                ));
            }
        }
        for c in d
            .get("settings_changed")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            rows.push((
                name.clone(),
                format!("settings · {}", field(c, "path")),
                show(c.get("old")),
                show(c.get("new")),
            ));
        }
        for (key, label) in [
            ("connections_added", "added"),
            ("connections_removed", "removed"),
        ] {
            for c in d.get(key).and_then(|v| v.as_array()).into_iter().flatten() {
                let text = format!("{} → {}", field(c, "from"), field(c, "to"));
                let (old, new) = if label == "added" {
                    ("—".to_owned(), text)
                } else {
                    (text, "—".to_owned())
                };
                rows.push((name.clone(), "connection".into(), old, new));
            }
        }
    }
    rows
}

pub async fn incident(
    State(state): State<AppState>,
    v: Viewer,
    PagePath(id): PagePath<Uuid>,
) -> Response {
    let mut i = match drift::get(&state.db, v.tenant_id, id).await {
        Ok(i) => i,
        Err(domain::Error::NotFound { .. }) => return not_found(v.nav("incidents"), "incident"),
        Err(e) => return failed(&e),
    };
    let (env, provider) = environments::get(&state.db, v.tenant_id, i.environment_id)
        .await
        .map(|e| (e.name, e.provider))
        .unwrap_or_default();
    // The field-level diff is the full drift diff: only plans that include it see it.
    let full_diff = match state.db.acquire().await {
        Ok(mut conn) => domain::entitlements::entitlements(&mut conn, v.tenant_id)
            .await
            .is_ok_and(|e| {
                e.allows(
                    domain::entitlements::Feature::DriftFullDiff,
                    Some(&provider),
                )
            }),
        Err(_) => false,
    };
    if !full_diff {
        crate::routes::drift::strip_diffs(&mut i.payload);
    }
    // Reconciled is reached only by reconciling (the Revert to Git button), never by a plain
    // transition (409 `reconcile_required`).
    let next: Vec<IncidentStatus> = IncidentStatus::parse(&i.status)
        .map(|s| s.next().to_vec())
        .unwrap_or_default()
        .into_iter()
        .filter(|s| *s != IncidentStatus::Reconciled)
        .collect();
    let affected = i.affected.as_array().cloned().unwrap_or_default();
    let approvals = match drift::approvals(&state.db, v.tenant_id, i.id).await {
        Ok(a) => a,
        Err(e) => return failed(&e),
    };
    render(&IncidentPage {
        approvals,
        nav: v.nav("incidents"),
        changes: change_rows(&i.payload, &affected),
        affected,
        env,
        next,
        i,
    })
}

impl PromotionPage {
    fn field(&self, v: &serde_json::Value, key: &str) -> String {
        field(v, key)
    }

    /// What an applied item says needs a hand in the target (its `warnings`, e.g. Make modules
    /// left without a connection).
    fn warnings(&self, item: &serde_json::Value) -> Vec<String> {
        item.get("warnings")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect()
    }

    /// How many applied items carry warnings.
    fn warned(&self) -> usize {
        self.results
            .iter()
            .filter(|r| !self.warnings(r).is_empty())
            .count()
    }

    fn env_name(&self, id: &Uuid) -> &str {
        self.names.get(id).map_or("?", String::as_str)
    }
}

impl Promotions {
    fn env_name(&self, id: &Uuid) -> &str {
        self.names.get(id).map_or("?", String::as_str)
    }
}

impl Incidents {
    fn env_name(&self, id: &Uuid) -> &str {
        self.names.get(id).map_or("?", String::as_str)
    }
}

impl Workflows {
    fn selected(&self, id: &Uuid) -> bool {
        self.environment_id.as_ref() == Some(id)
    }
}

impl IncidentPage {
    fn field(&self, v: &serde_json::Value, key: &str) -> String {
        field(v, key)
    }

    /// The button that moves the incident to `to`, as a verb.
    fn verb(&self, to: &IncidentStatus) -> &'static str {
        match to {
            IncidentStatus::Detected => "Reopen",
            IncidentStatus::Acknowledged => "Acknowledge",
            IncidentStatus::Stabilized => "Mark stabilized",
            IncidentStatus::Reconciled => "Mark reconciled",
            IncidentStatus::Closed => "Close",
        }
    }
}

/// A JSON field as text, for templates.
pub fn field(v: &serde_json::Value, key: &str) -> String {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The workflow drawn as SVG from its nodes' canvas positions and its connections (WF-004).
pub fn graph_svg(g: &domain::workflow::Graph) -> String {
    const W: f64 = 170.0;
    const H: f64 = 46.0;
    const PAD: f64 = 30.0;
    if g.nodes.is_empty() {
        return "<p class=\"muted\">No nodes.</p>".to_owned();
    }
    let min_x = g.nodes.iter().map(|n| n.x).fold(f64::INFINITY, f64::min);
    let min_y = g.nodes.iter().map(|n| n.y).fold(f64::INFINITY, f64::min);
    let max_x = g
        .nodes
        .iter()
        .map(|n| n.x)
        .fold(f64::NEG_INFINITY, f64::max);
    let max_y = g
        .nodes
        .iter()
        .map(|n| n.y)
        .fold(f64::NEG_INFINITY, f64::max);
    let at = |name: &str| {
        g.nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| (n.x - min_x + PAD, n.y - min_y + PAD))
    };
    let (width, height) = (max_x - min_x + W + 2.0 * PAD, max_y - min_y + H + 2.0 * PAD);
    let mut out = format!(
        "<svg class=\"graph\" role=\"img\" aria-label=\"workflow graph\" viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" height=\"{height:.0}\">"
    );
    for e in &g.edges {
        if let (Some((x1, y1)), Some((x2, y2))) = (at(&e.from), at(&e.to)) {
            let (sx, sy, tx, ty) = (
                x1 + W,
                y1 + H / 2.0 + e.output as f64 * 8.0,
                x2,
                y2 + H / 2.0,
            );
            let mid = (sx + tx) / 2.0;
            out.push_str(&format!(
                "<path class=\"edge {}\" d=\"M{sx:.0},{sy:.0} C{mid:.0},{sy:.0} {mid:.0},{ty:.0} {tx:.0},{ty:.0}\"/>",
                escape(&e.kind)
            ));
        }
    }
    for n in &g.nodes {
        let (x, y) = (n.x - min_x + PAD, n.y - min_y + PAD);
        let class = if n.disabled {
            "node disabled"
        } else if n.trigger {
            "node trigger"
        } else {
            "node"
        };
        let short = n.node_type.rsplit('.').next().unwrap_or_default();
        let name: String = n.name.chars().take(22).collect();
        out.push_str(&format!(
            "<g class=\"{class}\"><title>{}</title><rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{W}\" height=\"{H}\" rx=\"8\"/>\
             <text x=\"{:.0}\" y=\"{:.0}\">{}</text><text class=\"type\" x=\"{:.0}\" y=\"{:.0}\">{}</text></g>",
            escape(&format!("{} ({})", n.name, n.node_type)),
            x + 10.0,
            y + 20.0,
            escape(&name),
            x + 10.0,
            y + 36.0,
            escape(short)
        ));
    }
    out.push_str("</svg>");
    out
}

#[derive(Template)]
#[template(path = "workflow.html")]
struct WorkflowPage {
    nav: Nav,
    env: Environment,
    w: catalog::WorkflowRecord,
    svg: String,
    complexity: domain::workflow::Complexity,
    credentials: Vec<domain::workflow::CredentialRef>,
    /// (action, allowed, note): what the environment's policy says of each action (PRD 3.1.3).
    actions: Vec<(&'static str, bool, String)>,
    /// This workflow's actions waiting for an admin's decision.
    pending: Vec<domain::action_requests::ActionRequest>,
}

/// The policy's answer for each workflow action in this environment, for this role.
fn policy_actions(
    class: domain::environments::EnvironmentClass,
    role: domain::Role,
    w: &catalog::WorkflowRecord,
) -> Vec<(&'static str, bool, String)> {
    use domain::policy::{Action, Gate, check};
    let mut wanted = vec![if w.active {
        Action::Deactivate
    } else {
        Action::Activate
    }];
    wanted.push(if w.archived {
        Action::Unarchive
    } else {
        Action::Archive
    });
    wanted
        .into_iter()
        .map(|a| match check(class, a, role) {
            Ok(Gate::Proceed { warning }) => (a.as_str(), true, warning.unwrap_or_default()),
            Ok(Gate::NeedsApproval) => (
                a.as_str(),
                true,
                "needs another admin's approval".to_owned(),
            ),
            Err(e) => (a.as_str(), false, e.to_string()),
        })
        .collect()
}

pub async fn workflow(
    State(state): State<AppState>,
    v: Viewer,
    PagePath((env_id, wid)): PagePath<(Uuid, String)>,
) -> Response {
    let env = match environments::get(&state.db, v.tenant_id, env_id).await {
        Ok(e) => e,
        Err(domain::Error::NotFound { .. }) => return not_found(v.nav("workflows"), "environment"),
        Err(e) => return failed(&e),
    };
    let w = match catalog::get_workflow(&state.db, v.tenant_id, env_id, &wid).await {
        Ok(w) => w,
        Err(domain::Error::NotFound { .. }) => return not_found(v.nav("workflows"), "workflow"),
        Err(e) => return failed(&e),
    };
    let pending = domain::action_requests::list(&state.db, v.tenant_id, Some("pending")).await;
    let pending = match pending {
        Ok(list) => list
            .into_iter()
            .filter(|r| r.environment_id == env_id && r.workflow_id == wid)
            .collect(),
        Err(e) => return failed(&e),
    };
    let nav = v.nav("workflows");
    let actions = policy_actions(env.class, nav.role, &w);
    render(&WorkflowPage {
        actions,
        pending,
        nav,
        svg: graph_svg(&domain::workflow::graph(&w.definition)),
        complexity: domain::workflow::complexity(&w.definition),
        credentials: domain::workflow::credential_refs(&w.definition),
        env,
        w,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_is_drawn_with_escaped_names() {
        let wf = serde_json::json!({"nodes": [
            {"name": "Start <x>", "type": "n8n-nodes-base.manualTrigger", "position": [0, 0], "parameters": {}},
            {"name": "Call \"API\"", "type": "n8n-nodes-base.httpRequest", "position": [220, 0], "parameters": {}}],
            "connections": {"Start <x>": {"main": [[{"node": "Call \"API\"", "type": "main", "index": 0}]]}}});
        let svg = graph_svg(&domain::workflow::graph(&wf));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert_eq!(svg.matches("<path").count(), 1);
        assert!(svg.contains("Start &lt;x&gt;") && svg.contains("Call &quot;API&quot;"));
        assert!(!svg.contains("<x>"));
    }

    #[test]
    fn a_long_search_is_cut_on_a_character_and_says_so() {
        let typed = "é".repeat(MAX_SEARCH + 5);
        let s = Search::of(Some(&typed));
        assert!(s.shortened);
        assert_eq!(s.text.chars().count(), MAX_SEARCH);
        assert_eq!(
            Search::of(Some("  orders ")),
            Search {
                text: "orders".into(),
                shortened: false
            }
        );
        assert_eq!(Search::of(Some("   ")).filter(), None);
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct WizardQuery {
    #[serde(default, deserialize_with = "empty_as_none")]
    pipeline_id: Option<Uuid>,
    #[serde(default, deserialize_with = "empty_as_none")]
    stage: Option<usize>,
    search: Option<String>,
}

#[derive(Template)]
#[template(path = "promotion_new.html")]
struct PromotionWizard {
    nav: Nav,
    pipelines: Vec<domain::pipelines::Pipeline>,
    names: std::collections::HashMap<Uuid, String>,
    chosen: Option<(domain::pipelines::Pipeline, usize)>,
    workflows: Vec<WorkflowItem>,
    search: String,
}

impl PromotionWizard {
    fn env_name(&self, id: &Uuid) -> &str {
        self.names.get(id).map_or("?", String::as_str)
    }
}

/// The promotion wizard: pick a stage and workflows, preview diff, risk and gates, submit.
pub async fn promotion_new(
    State(state): State<AppState>,
    v: Viewer,
    PageQuery(q): PageQuery<WizardQuery>,
) -> Response {
    let pipelines = match domain::pipelines::list(&state.db, v.tenant_id, page_of(None, 200)).await
    {
        Ok(p) => p.items,
        Err(e) => return failed(&e),
    };
    let names = match env_names(&state, v.tenant_id).await {
        Ok(n) => n,
        Err(e) => return failed(&e),
    };
    let chosen = q.pipeline_id.and_then(|id| {
        let p = pipelines.iter().find(|p| p.id == id)?.clone();
        let stage = q.stage.unwrap_or(0);
        (stage < p.stages.len()).then_some((p, stage))
    });
    let search = Search::of(q.search.as_deref());
    let mut workflows = Vec::new();
    if let Some((p, stage)) = &chosen {
        let filter = WorkflowFilter {
            environment_id: Some(p.stages[*stage].source_environment_id),
            search: search.filter(),
            ..WorkflowFilter::default()
        };
        workflows = match catalog::list_workflows(&state.db, v.tenant_id, &filter, None, 200).await
        {
            Ok(page) => page.items,
            Err(e) => return failed(&e),
        };
    }
    render(&PromotionWizard {
        nav: v.nav("promotions"),
        pipelines,
        names,
        chosen,
        workflows,
        search: search.text,
    })
}

#[derive(Template)]
#[template(path = "pipelines.html")]
struct Pipelines {
    nav: Nav,
    pipelines: Vec<domain::pipelines::Pipeline>,
    environments: Vec<Environment>,
    names: std::collections::HashMap<Uuid, String>,
    /// Each pipeline as the JSON the editor starts from.
    json: std::collections::HashMap<Uuid, String>,
    /// The roles a stage may let approve.
    roles: Vec<&'static str>,
}

impl Pipelines {
    fn env_name(&self, id: &Uuid) -> &str {
        self.names.get(id).map_or("?", String::as_str)
    }

    /// The editor is for roles that configure pipelines; others see it disabled.
    fn can_edit(&self) -> bool {
        self.nav.can(domain::Permission::ConfigurePipelines)
    }

    /// Who may approve promotions through a stage, in words ("" when none are needed).
    fn approvals_of(&self, s: &domain::pipelines::Stage) -> String {
        let a = &s.approvals;
        if a.required == 0 {
            return String::new();
        }
        let roles: Vec<&str> = a.roles.iter().map(|r| r.as_str()).collect();
        format!(
            "{} approval{} by {}{}",
            a.required,
            if a.required == 1 { "" } else { "s" },
            roles.join(" or "),
            if a.allow_self_approval {
                ", the requester may approve"
            } else {
                ""
            }
        )
    }

    fn json_of(&self, id: &Uuid) -> &str {
        self.json.get(id).map_or("{}", String::as_str)
    }

    fn gates_of(&self, s: &domain::pipelines::Stage) -> String {
        let g = &s.gates;
        let mut on: Vec<String> = [
            (g.require_clean_drift, "clean drift"),
            (g.run_pre_flight_validation, "preflight"),
            (g.credentials_exist_in_target, "credentials"),
            (g.nodes_supported_in_target, "nodes"),
            (g.webhooks_available, "webhooks"),
            (g.target_environment_healthy, "healthy target"),
        ]
        .iter()
        .filter(|(b, _)| *b)
        .map(|(_, n)| (*n).to_owned())
        .collect();
        if let Some(r) = g.max_allowed_risk_level {
            on.push(format!("risk ≤ {r}"));
        }
        if on.is_empty() {
            "no gates".to_owned()
        } else {
            on.join(" · ")
        }
    }
}

/// Pipelines with their stages drawn as a flow, and the stage editor (PIPE-006).
pub async fn pipelines(State(state): State<AppState>, v: Viewer) -> Response {
    let pipelines = match domain::pipelines::list(&state.db, v.tenant_id, page_of(None, 200)).await
    {
        Ok(p) => p.items,
        Err(e) => return failed(&e),
    };
    let mut environments = match environments::list(&state.db, v.tenant_id).await {
        Ok(e) => e,
        Err(e) => return failed(&e),
    };
    // In the order promotions go, so a new stage's default "To" is the next one.
    environments.sort_by_cached_key(|e| {
        let rank = match e.class {
            environments::EnvironmentClass::Dev => 0,
            environments::EnvironmentClass::Staging => 1,
            environments::EnvironmentClass::Production => 2,
        };
        (rank, e.name.to_lowercase())
    });
    let json = pipelines
        .iter()
        .map(|p| {
            let doc = serde_json::json!({"name": p.name, "description": p.description, "provider": p.provider,
                "stages": p.stages, "active": p.active});
            (p.id, doc.to_string())
        })
        .collect();
    render(&Pipelines {
        nav: v.nav("pipelines"),
        names: environments
            .iter()
            .map(|e| (e.id, e.name.clone()))
            .collect(),
        environments,
        pipelines,
        json,
        roles: domain::Role::ALL.iter().map(|r| r.as_str()).collect(),
    })
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Nav,
    entries: Vec<domain::audit::Record>,
    search: Search,
    allowed: bool,
    next_cursor: Option<String>,
    /// The tenant's plan leaves the audit log out: this instead of entries (ENT-005).
    upgrade: Option<super::billing::Upgrade>,
}

/// The audit log (admins whose plan includes it).
pub async fn audit(
    State(state): State<AppState>,
    v: Viewer,
    PageQuery(q): PageQuery<ListQuery>,
) -> Response {
    let nav = v.nav("audit");
    if !nav.can(domain::Permission::ViewAuditLogs) {
        return render(&AuditPage {
            nav,
            entries: Vec::new(),
            search: Search::default(),
            allowed: false,
            next_cursor: None,
            upgrade: None,
        });
    }
    // Without the feature the page shows the upgrade notice. Viewing it is not a refusal of
    // anything asked for, so nothing is logged (ENT-011 logs the API's refusals).
    let gate: Result<_, domain::Error> = async {
        let mut conn = state.db.acquire().await?;
        let ent = domain::entitlements::entitlements(&mut conn, v.tenant_id).await?;
        drop(conn);
        Ok(
            super::billing::upgrade(&state.db, &ent, domain::entitlements::Feature::AuditLogs)
                .await?,
        )
    }
    .await;
    match gate {
        Ok(None) => {}
        Ok(upgrade) => {
            return render(&AuditPage {
                nav,
                entries: Vec::new(),
                search: Search::default(),
                allowed: true,
                next_cursor: None,
                upgrade,
            });
        }
        Err(e) => return failed(&e),
    }
    let search = Search::of(q.search.as_deref());
    let filter = domain::audit::Filter {
        search: search.filter(),
        ..Default::default()
    };
    match domain::audit::list(
        &state.db,
        v.tenant_id,
        &filter,
        page_of(q.cursor.as_deref(), 100),
    )
    .await
    {
        Ok(p) => render(&AuditPage {
            nav,
            next_cursor: p.next_cursor,
            entries: p.items,
            search,
            allowed: true,
            upgrade: None,
        }),
        Err(e) => failed(&e),
    }
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    nav: Nav,
    workers: Vec<engine::worker::WorkerInfo>,
    queue: Vec<(String, String, i64)>,
    allowed: bool,
}

/// The worker pool and queue depth (platform admins).
pub async fn workers(State(state): State<AppState>, v: Viewer) -> Response {
    let nav = v.nav("workers");
    if !v.principal.platform_admin {
        return render(&WorkersPage {
            nav,
            workers: Vec::new(),
            queue: Vec::new(),
            allowed: false,
        });
    }
    let workers = match engine::worker::list_live(&state.db).await {
        Ok(w) => w,
        Err(e) => return failed(&e),
    };
    let queue: Vec<(String, String, i64)> = match sqlx::query_as(
        "select kind, status, count(*) from engine_runs where status in ('queued', 'running', 'waiting') \
         group by kind, status order by kind, status",
    )
    .fetch_all(&state.db)
    .await
    {
        Ok(q) => q,
        Err(e) => return failed(&e),
    };
    render(&WorkersPage {
        nav,
        workers,
        queue,
        allowed: true,
    })
}

#[derive(Template)]
#[template(path = "switch.html")]
struct SwitchPage {
    nav: Nav,
    tenants: Vec<domain::tenancy::TenantMembership>,
    current: Uuid,
}

/// Switch tenant: the signed-in user's memberships.
pub async fn switch_tenant(State(state): State<AppState>, v: Viewer) -> Response {
    let Some(user) = v.principal.user_id() else {
        return not_found(v.nav("switch"), "user");
    };
    match domain::tenancy::memberships_of(&state.db, user).await {
        Ok(tenants) => render(&SwitchPage {
            nav: v.nav("switch"),
            current: v.tenant_id,
            tenants,
        }),
        Err(e) => failed(&e),
    }
}
