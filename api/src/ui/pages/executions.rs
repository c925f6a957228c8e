//! `/executions`: the provider executions synced into the catalog, newest first, as the API's
//! `GET /api/v1/executions` lists them (`domain::catalog::list_executions`): by environment,
//! workflow and status, a page at a time, with a way back to the pages before.

use std::fmt;
use std::str::FromStr;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use domain::catalog::{self, ExecutionFilter, ExecutionRow};
use domain::environments::{self, Environment};
use serde::Deserialize;
use uuid::Uuid;

use super::failed;
use super::query::{PageQuery, empty_as_none};
use crate::app::AppState;
use crate::ui::{Nav, Viewer, render};

/// Executions per page.
const PER_PAGE: u32 = 50;
/// How many pages back "previous" can go (the trail rides in the links).
const MAX_TRAIL: usize = 50;
/// The statuses the API filters by.
const STATUSES: [&str; 8] = [
    "success", "error", "running", "waiting", "canceled", "crashed", "new", "unknown",
];

/// A status filter the API accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionStatus(String);

impl FromStr for ExecutionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if STATUSES.contains(&s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("must be one of {}", STATUSES.join(", ")))
        }
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ExecutionsQuery {
    #[serde(default, deserialize_with = "empty_as_none")]
    environment_id: Option<Uuid>,
    /// The workflow's id in its provider.
    workflow_id: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    status: Option<ExecutionStatus>,
    cursor: Option<String>,
    /// The cursors of the pages before this one, `.`-separated: where "previous" goes.
    back: Option<String>,
}

/// An execution as the page lists it.
pub struct ExecutionItem {
    pub row: ExecutionRow,
    pub environment: String,
    pub started: String,
    pub duration: String,
}

impl ExecutionItem {
    fn of(row: ExecutionRow, names: &std::collections::HashMap<Uuid, String>) -> Self {
        let started = row.started_at.map_or_else(
            || "—".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        );
        let duration = match (row.started_at, row.stopped_at) {
            (Some(a), Some(b)) if b >= a => duration_text((b - a).num_milliseconds()),
            _ => String::new(),
        };
        Self {
            environment: names
                .get(&row.environment_id)
                .cloned()
                .unwrap_or_else(|| "an environment that is gone".to_owned()),
            started,
            duration,
            row,
        }
    }
}

/// A duration in words a list can show: `850 ms`, `12.4 s`, `3 min 5 s`.
fn duration_text(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        #[allow(clippy::cast_precision_loss)]
        let s = ms as f64 / 1000.0;
        format!("{s:.1} s")
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

#[derive(Template)]
#[template(path = "executions.html")]
struct Executions {
    nav: Nav,
    items: Vec<ExecutionItem>,
    environments: Vec<Environment>,
    environment_id: Option<Uuid>,
    workflow_id: String,
    status: String,
    statuses: [&'static str; 8],
    /// The query of the next page's link, and of the previous page's.
    next: Option<String>,
    previous: Option<String>,
}

impl Executions {
    fn selected(&self, id: &Uuid) -> bool {
        self.environment_id.as_ref() == Some(id)
    }

    fn filtered(&self) -> bool {
        self.environment_id.is_some() || !self.workflow_id.is_empty() || !self.status.is_empty()
    }
}

/// The filters of an `/executions` link, in the order the form sends them.
struct Filters<'a> {
    environment_id: Option<Uuid>,
    workflow_id: &'a str,
    status: &'a str,
}

impl Filters<'_> {
    /// An `/executions` query string: these filters, a page's cursor and the trail before it.
    fn query(&self, cursor: Option<&str>, back: &[&str]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(e) = self.environment_id {
            q.append_pair("environment_id", &e.to_string());
        }
        if !self.workflow_id.is_empty() {
            q.append_pair("workflow_id", self.workflow_id);
        }
        if !self.status.is_empty() {
            q.append_pair("status", self.status);
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        if !back.is_empty() {
            q.append_pair("back", &back.join("."));
        }
        q.finish()
    }
}

/// `/executions`: the tenant's executions, newest first, filtered, a page at a time.
pub async fn executions(
    State(state): State<AppState>,
    v: Viewer,
    PageQuery(q): PageQuery<ExecutionsQuery>,
) -> Response {
    let workflow_id = q
        .workflow_id
        .as_deref()
        .map(str::trim)
        .filter(|w| !w.is_empty());
    let filter = ExecutionFilter {
        environment_id: q.environment_id,
        workflow_id: workflow_id.map(str::to_owned),
        status: q.status.as_ref().map(ToString::to_string),
    };
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    // A cursor we did not issue (a hand-edited link) is the first page.
    let (page, cursor) =
        match catalog::list_executions(&state.db, v.tenant_id, &filter, cursor, PER_PAGE).await {
            Ok(p) => (p, cursor),
            Err(domain::Error::Validation(_)) => {
                match catalog::list_executions(&state.db, v.tenant_id, &filter, None, PER_PAGE)
                    .await
                {
                    Ok(p) => (p, None),
                    Err(e) => return failed(&e),
                }
            }
            Err(e) => return failed(&e),
        };
    let environments = match environments::list(&state.db, v.tenant_id).await {
        Ok(e) => e,
        Err(e) => return failed(&e),
    };
    let names = environments
        .iter()
        .map(|e| (e.id, e.name.clone()))
        .collect();
    let status = q.status.map(|s| s.0).unwrap_or_default();
    let workflow_id = workflow_id.unwrap_or_default().to_owned();
    let filters = Filters {
        environment_id: q.environment_id,
        workflow_id: &workflow_id,
        status: &status,
    };
    let back: Vec<&str> = q
        .back
        .as_deref()
        .unwrap_or_default()
        .split('.')
        .filter(|c| !c.is_empty())
        .collect();
    let back = if cursor.is_some() {
        &back[back.len().saturating_sub(MAX_TRAIL)..]
    } else {
        &[][..]
    };
    let next = page.next_cursor.as_deref().map(|next| {
        let trail: Vec<&str> = back.iter().copied().chain(cursor).collect();
        filters.query(Some(next), &trail)
    });
    let previous = cursor.map(|_| match back.split_last() {
        Some((prev, earlier)) => filters.query(Some(prev), earlier),
        None => filters.query(None, &[]),
    });
    render(&Executions {
        nav: v.nav("executions"),
        items: page
            .items
            .into_iter()
            .map(|r| ExecutionItem::of(r, &names))
            .collect(),
        environment_id: q.environment_id,
        environments,
        workflow_id,
        status,
        statuses: STATUSES,
        next,
        previous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_words() {
        assert_eq!(duration_text(850), "850 ms");
        assert_eq!(duration_text(12_400), "12.4 s");
        assert_eq!(duration_text(185_000), "3 min 5 s");
    }

    #[test]
    fn links_keep_the_filters_and_the_trail() {
        let f = Filters {
            environment_id: None,
            workflow_id: "wf 1",
            status: "error",
        };
        assert_eq!(
            f.query(Some("c3"), &["c1", "c2"]),
            "workflow_id=wf+1&status=error&cursor=c3&back=c1.c2"
        );
        assert_eq!(f.query(None, &[]), "workflow_id=wf+1&status=error");
        assert!("exploded".parse::<ExecutionStatus>().is_err());
    }
}
