//! The Approvals page: workflow actions that an environment's policy holds for another admin
//! (PRD 3.1.3, WF-007) — pending ones with Approve / Reject for those who may decide, decided
//! ones below. Decisions go through the API (`/api/v1/workflow-action-requests/{id}/approve` or
//! `/reject`), which refuses non-admins, API keys and the requester; the page says who may
//! decide before anyone tries. The nav's count of pending requests comes from
//! `/approvals/pending-count`, asked for by `team.js` on every page.

use std::collections::HashMap;

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use domain::Permission;
use domain::action_requests::{self, ActionRequest};
use domain::environments;
use uuid::Uuid;

use super::pages::failed;
use super::{Nav, Viewer, render};
use crate::app::AppState;

/// How many decided requests the page lists (newest first).
const DECIDED_SHOWN: usize = 100;

/// A request as the page lists it.
struct Row {
    r: ActionRequest,
    environment: String,
    /// The environment's class (`production`, …), for its badge.
    class: &'static str,
    /// Why the viewer cannot decide it (pending ones only); `None`: they may.
    blocked: Option<String>,
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage {
    nav: Nav,
    pending: Vec<Row>,
    decided: Vec<Row>,
}

/// Why `v` may not decide `r`, in the API's terms: admins decide, never their own requests (a
/// request an API key made is its creator's).
fn blocked(nav: &Nav, me: Option<Uuid>, r: &ActionRequest) -> Option<String> {
    if !nav.can(Permission::ManageEnvironments) {
        Some(format!(
            "your role ({}) cannot decide: an admin must",
            nav.role.as_str()
        ))
    } else if me.is_some() && r.requested_by == me {
        Some("you requested this; another admin must decide".to_owned())
    } else {
        None
    }
}

pub async fn approvals(State(state): State<AppState>, v: Viewer) -> Response {
    let requests = match action_requests::list(&state.db, v.tenant_id, None).await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    let envs: HashMap<Uuid, (String, &'static str)> =
        match environments::list(&state.db, v.tenant_id).await {
            Ok(list) => list
                .into_iter()
                .map(|e| (e.id, (e.name, e.class.as_str())))
                .collect(),
            Err(e) => return failed(&e),
        };
    let nav = v.nav("approvals");
    let me = v.principal.user_id();
    let (mut pending, mut decided) = (Vec::new(), Vec::new());
    for r in requests {
        let (environment, class) = envs
            .get(&r.environment_id)
            .cloned()
            .unwrap_or_else(|| ("(deleted environment)".to_owned(), ""));
        if r.status == "pending" {
            pending.push(Row {
                blocked: blocked(&nav, me, &r),
                r,
                environment,
                class,
            });
        } else if decided.len() < DECIDED_SHOWN {
            decided.push(Row {
                blocked: None,
                r,
                environment,
                class,
            });
        }
    }
    // Oldest pending first: the one waiting longest is decided first.
    pending.reverse();
    render(&ApprovalsPage {
        nav,
        pending,
        decided,
    })
}

/// `{"pending": n}`: the requests waiting for a decision in the viewer's tenant (the nav's count).
pub async fn pending_count(State(state): State<AppState>, v: Viewer) -> Response {
    let count: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "select count(*) from workflow_action_requests where tenant_id = $1 and status = 'pending'",
    )
    .bind(v.tenant_id)
    .fetch_one(&state.db)
    .await;
    match count {
        Ok(n) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(serde_json::json!({ "pending": n })),
        )
            .into_response(),
        Err(e) => crate::error::ApiError::from(e).into_response(),
    }
}
