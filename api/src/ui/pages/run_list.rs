//! Runs as pages list them: the runs page (`/runs`, filtered and paged like the API's list,
//! through `engine::read::list`) and the short lists of the dashboard and an environment. Each
//! run says what it is for (its environment or promotion) and who started it, in words.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use domain::page::Page;
use engine::RunStatus;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::query::{PageQuery, empty_as_none};
use super::{env_names, failed};
use crate::app::AppState;
use crate::ui::{Nav, Viewer, page_of, render};

/// Runs per page of `/runs`.
const PER_PAGE: u32 = 50;
/// How many pages back "previous" can go (the trail rides in the links).
const MAX_TRAIL: usize = 50;

/// A run as pages list it.
pub struct RunRow {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub progress: Option<(i64, i64)>,
    pub created_at: String,
    /// Who or what started it, in words.
    pub created_by: String,
    /// What it is for, as (text, link): its promotion or its environment, when it says.
    pub about: Option<(String, String)>,
    /// The run that started it (a bulk run's parts, a drift check's sync).
    pub parent_id: Option<Uuid>,
}

impl RunRow {
    /// `names`: the tenant's environments by id.
    pub fn of(run: &engine::Run, names: &HashMap<Uuid, String>) -> Self {
        Self {
            id: run.id,
            kind: run.kind.clone(),
            status: run.status().as_str().to_owned(),
            progress: run.progress_done.zip(run.progress_total),
            created_at: run.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            created_by: started_by(run.created_by.as_deref().unwrap_or_default(), names),
            about: about(&run.labels, &run.input, names),
            parent_id: run.parent_id,
        }
    }
}

/// An id the run names under `key`, in its labels or else its input.
fn named_id(labels: &Value, input: &Value, key: &str) -> Option<Uuid> {
    [labels, input]
        .into_iter()
        .find_map(|v| v.get(key)?.as_str()?.parse().ok())
}

fn about(labels: &Value, input: &Value, names: &HashMap<Uuid, String>) -> Option<(String, String)> {
    let env = named_id(labels, input, "environment_id");
    let env_name = env.map(|e| {
        names
            .get(&e)
            .map_or("an environment that is gone", String::as_str)
    });
    if let Some(p) = named_id(labels, input, "promotion_id") {
        let text = match env_name {
            Some(name) => format!("promotion → {name}"),
            None => "promotion".to_owned(),
        };
        return Some((text, format!("/promotions/{p}")));
    }
    Some((env_name?.to_owned(), format!("/environments/{}", env?)))
}

/// `created_by` in words: the engine's scheduler writes `schedule:<schedule name>`, and the
/// environments' schedules are named `environment:<id>:<what>`.
fn started_by(created_by: &str, names: &HashMap<Uuid, String>) -> String {
    let Some(schedule) = created_by.strip_prefix("schedule:") else {
        return created_by.to_owned();
    };
    let mut parts = schedule.splitn(3, ':');
    if let (Some("environment"), Some(id), Some(what)) = (parts.next(), parts.next(), parts.next())
        && let Ok(id) = id.parse::<Uuid>()
    {
        let what = match what {
            "health" => "health check",
            "drift" => "drift check",
            "backup" => "scheduled backup",
            other => other,
        };
        let env = names
            .get(&id)
            .map_or("an environment that is gone", String::as_str);
        return format!("schedule: {what} ({env})");
    }
    format!("schedule: {schedule}")
}

/// The newest top-level runs of the tenant (of one environment, by its label), for the short
/// lists of the dashboard and an environment's page.
pub async fn recent_runs(
    state: &AppState,
    tenant_id: Uuid,
    label_env: Option<Uuid>,
    limit: i64,
) -> Result<Vec<RunRow>, domain::Error> {
    // `*`: every column `engine::Run` reads, whatever the engine adds.
    let runs: Vec<engine::Run> = sqlx::query_as(
        "select * from engine_runs \
         where namespace = $1 and parent_id is null and ($2::text is null or labels->>'environment_id' = $2) \
         order by id desc limit $3",
    )
    .bind(tenant_id.to_string())
    .bind(label_env.map(|e| e.to_string()))
    .bind(limit)
    .fetch_all(&state.db)
    .await?;
    let names = env_names(state, tenant_id).await?;
    Ok(runs.iter().map(|r| RunRow::of(r, &names)).collect())
}

#[derive(Debug, Default, Deserialize)]
pub struct RunsQuery {
    #[serde(default, deserialize_with = "empty_as_none")]
    status: Option<RunStatus>,
    /// Exactly, as the API filters (`search`: what earlier links called it).
    #[serde(alias = "search")]
    kind: Option<String>,
    cursor: Option<String>,
    /// The cursors of the pages before this one (the first page has none), `.`-separated: where
    /// "previous" goes.
    back: Option<String>,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct Runs {
    nav: Nav,
    runs: Vec<RunRow>,
    status: String,
    kind: String,
    kinds: Vec<String>,
    /// The query of the next page's link, and of the previous page's.
    next: Option<String>,
    previous: Option<String>,
}

impl Runs {
    /// Whether the kind asked for is one of the select's (else it gets an option of its own).
    fn kind_listed(&self) -> bool {
        self.kind.is_empty() || self.kinds.contains(&self.kind)
    }
}

/// A `/runs` query string.
fn runs_query(status: &str, kind: &str, cursor: Option<&str>, back: &[&str]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if !status.is_empty() {
        q.append_pair("status", status);
    }
    if !kind.is_empty() {
        q.append_pair("kind", kind);
    }
    if let Some(c) = cursor {
        q.append_pair("cursor", c);
    }
    if !back.is_empty() {
        q.append_pair("back", &back.join("."));
    }
    q.finish()
}

/// `/runs`: the tenant's runs, newest first, by status and kind, a page at a time.
pub async fn runs(
    State(state): State<AppState>,
    v: Viewer,
    PageQuery(q): PageQuery<RunsQuery>,
) -> Response {
    let kind = q.kind.as_deref().map(str::trim).filter(|k| !k.is_empty());
    let mut kinds = jobs::registry(&state.jobs).kinds();
    kinds.sort();
    // A cursor we did not issue is the first page.
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    let page = page_of(cursor, PER_PAGE);
    let cursor = cursor.filter(|_| page.after.is_some());
    let filter = engine::read::RunFilter {
        kind: kind.map(str::to_owned),
        status: q.status,
        ..engine::read::RunFilter::default()
    };
    let namespace = v.tenant_id.to_string();
    let rows = match engine::read::list(
        &state.db,
        &namespace,
        &filter,
        page.after,
        page.fetch_limit(),
    )
    .await
    {
        Ok(rows) => rows,
        Err(e) => return failed(&e),
    };
    let names = match env_names(&state, v.tenant_id).await {
        Ok(n) => n,
        Err(e) => return failed(&e),
    };
    let listed = Page::from_rows(rows, page, |r: &engine::Run| r.id);
    let status = q.status.map(|s| s.as_str().to_owned()).unwrap_or_default();
    let kind = kind.unwrap_or_default().to_owned();
    let back: Vec<&str> = q
        .back
        .as_deref()
        .unwrap_or_default()
        .split('.')
        .filter(|c| !c.is_empty())
        .collect();
    let back = &back[back.len().saturating_sub(MAX_TRAIL)..];
    let next = listed.next_cursor.as_deref().map(|next| {
        let trail: Vec<&str> = back.iter().copied().chain(cursor).collect();
        runs_query(&status, &kind, Some(next), &trail)
    });
    let previous = cursor.map(|_| match back.split_last() {
        Some((prev, earlier)) => runs_query(&status, &kind, Some(prev), earlier),
        None => runs_query(&status, &kind, None, &[]),
    });
    render(&Runs {
        nav: v.nav("runs"),
        runs: listed.items.iter().map(|r| RunRow::of(r, &names)).collect(),
        status,
        kind,
        kinds,
        next,
        previous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schedules_are_named_in_words() {
        let prod = Uuid::now_v7();
        let names = HashMap::from([(prod, "prod".to_owned())]);
        assert_eq!(
            started_by(&format!("schedule:environment:{prod}:health"), &names),
            "schedule: health check (prod)"
        );
        assert_eq!(
            started_by(&format!("schedule:environment:{prod}:drift"), &names),
            "schedule: drift check (prod)"
        );
        assert_eq!(
            started_by("schedule:drift-sla", &names),
            "schedule: drift-sla"
        );
        assert_eq!(started_by("ada@example.com", &names), "ada@example.com");
    }

    #[test]
    fn a_run_names_its_promotion_before_its_environment() {
        let (env, promo) = (Uuid::now_v7(), Uuid::now_v7());
        let names = HashMap::from([(env, "prod".to_owned())]);
        let labels = json!({"promotion_id": promo, "environment_id": env});
        assert_eq!(
            about(&labels, &json!({}), &names),
            Some((
                "promotion → prod".to_owned(),
                format!("/promotions/{promo}")
            ))
        );
        assert_eq!(
            about(&json!({}), &json!({"environment_id": env}), &names),
            Some(("prod".to_owned(), format!("/environments/{env}")))
        );
        assert_eq!(about(&json!({}), &json!({}), &names), None);
    }

    #[test]
    fn previous_goes_back_along_the_trail() {
        assert_eq!(
            runs_query("failed", "", Some("c3"), &["c1", "c2"]),
            "status=failed&cursor=c3&back=c1.c2"
        );
        assert_eq!(runs_query("", "", None, &[]), "");
    }
}
