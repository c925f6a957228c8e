//! The platform's support console (SUPP-006): every tenant's tickets with filters, and a ticket's
//! conversation and files with the controls to answer, change status and priority, and take it
//! or give it back. Platform admins only (others get the console's 403 page); pages read through
//! the domain as the console's API does and act through the JSON API.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use domain::support::{self, Filter, TicketKind, TicketStatus};
use domain::tenancy;
use serde::Deserialize;
use uuid::Uuid;

use super::pages::{PagePath, failed, not_found};
use super::platform::{PLATFORM_ONLY, denied};
use super::support::{
    Choice, FileRow, MessageRow, TICKETS_PER_PAGE, TicketRow, kinds, open_choices, open_of,
    priorities, statuses,
};
use super::{Nav, Viewer, page_of, render};
use crate::app::AppState;

/// A tenant as the console names it.
struct TenantName {
    name: String,
    slug: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    open: Option<String>,
    cursor: Option<String>,
}

/// A ticket listed with its tenant's slug.
struct ConsoleRow {
    ticket: TicketRow,
    tenant_slug: String,
}

#[derive(Template)]
#[template(path = "platform_support.html")]
struct ListPage {
    nav: Nav,
    tickets: Vec<ConsoleRow>,
    next_cursor: Option<String>,
    /// The filters as given (empty: none), for the next page's link.
    status: &'static str,
    kind: &'static str,
    open: &'static str,
    status_choices: Vec<Choice>,
    kind_choices: Vec<Choice>,
    open_choices: Vec<Choice>,
}

/// The tenants of `ids`, by id (a tenant that is gone is left out).
async fn tenant_names(
    state: &AppState,
    ids: Vec<Uuid>,
) -> Result<HashMap<Uuid, TenantName>, domain::Error> {
    let mut names = HashMap::new();
    for id in ids {
        if names.contains_key(&id) {
            continue;
        }
        match tenancy::tenant(&state.db, id).await {
            Ok(t) => {
                names.insert(
                    id,
                    TenantName {
                        name: t.name,
                        slug: t.slug,
                    },
                );
            }
            Err(domain::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(names)
}

/// `/platform/support`: every tenant's tickets, newest first.
pub async fn tickets(
    State(state): State<AppState>,
    v: Viewer,
    super::pages::PageQuery(q): super::pages::PageQuery<ListQuery>,
) -> Response {
    let nav = v.nav("platform");
    if !v.principal.platform_admin {
        return denied(nav, PLATFORM_ONLY);
    }
    let status = q.status.as_deref().and_then(TicketStatus::parse);
    let kind = q.kind.as_deref().and_then(TicketKind::parse);
    let open = open_of(q.open.as_deref());
    let filter = Filter {
        tenant_id: None,
        status,
        kind,
        open,
    };
    let loaded: Result<_, domain::Error> = async {
        let list = support::list(
            &state.db,
            &filter,
            page_of(q.cursor.as_deref(), TICKETS_PER_PAGE),
        )
        .await?;
        let names = tenant_names(&state, list.items.iter().map(|t| t.tenant_id).collect()).await?;
        Ok((list, names))
    }
    .await;
    let (list, names) = match loaded {
        Ok(l) => l,
        Err(e) => return failed(&e),
    };
    render(&ListPage {
        nav,
        tickets: list
            .items
            .into_iter()
            .map(|t| ConsoleRow {
                tenant_slug: names
                    .get(&t.tenant_id)
                    .map_or_else(|| "?".to_owned(), |n| n.slug.clone()),
                ticket: TicketRow::of(t),
            })
            .collect(),
        next_cursor: list.next_cursor,
        status: status.map_or("", TicketStatus::as_str),
        kind: kind.map_or("", TicketKind::as_str),
        open: match open {
            Some(true) => "true",
            Some(false) => "false",
            None => "",
        },
        status_choices: Choice::all(&statuses(), status.map(TicketStatus::as_str)),
        kind_choices: Choice::all(&kinds(), kind.map(TicketKind::as_str)),
        open_choices: open_choices(open),
    })
}

#[derive(Template)]
#[template(path = "platform_support_ticket.html")]
struct TicketPage {
    nav: Nav,
    ticket: TicketRow,
    tenant: TenantName,
    conversation: Vec<MessageRow>,
    files: Vec<FileRow>,
    /// Where the files download from (the console's API, with the session cookie).
    files_base: String,
    /// The signed-in admin, for "assign to me".
    me: Uuid,
    /// Who has the ticket: "you", an email, or nobody.
    assignee: Option<String>,
    status_choices: Vec<Choice>,
    priority_choices: Vec<Choice>,
}

impl TicketPage {
    fn mine(&self) -> bool {
        self.ticket.assignee_user_id == Some(self.me)
    }
}

/// `/platform/support/{id}`: one ticket, for support.
pub async fn ticket(
    State(state): State<AppState>,
    v: Viewer,
    PagePath(id): PagePath<Uuid>,
) -> Response {
    let nav = v.nav("platform");
    let (true, Some(me)) = (v.principal.platform_admin, v.principal.user_id()) else {
        return denied(nav, PLATFORM_ONLY);
    };
    let mut conn = match state.db.acquire().await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let detail = match support::detail(&mut conn, None, id).await {
        Ok(d) => d,
        Err(domain::Error::NotFound { .. }) => return not_found(nav, "ticket"),
        Err(e) => return failed(&e),
    };
    let assignee = match detail.ticket.assignee_user_id {
        None => None,
        Some(a) if a == me => Some("you".to_owned()),
        Some(a) => match tenancy::user(&mut *conn, a).await {
            Ok(u) => Some(u.email),
            Err(domain::Error::NotFound { .. }) => Some("a removed user".to_owned()),
            Err(e) => return failed(&e),
        },
    };
    let tenant = match tenant_names(&state, vec![detail.ticket.tenant_id]).await {
        Ok(mut names) => names
            .remove(&detail.ticket.tenant_id)
            .unwrap_or_else(|| TenantName {
                name: "a deleted tenant".to_owned(),
                slug: "?".to_owned(),
            }),
        Err(e) => return failed(&e),
    };
    render(&TicketPage {
        nav,
        tenant,
        files_base: format!("/api/v1/platform/support/tickets/{id}/attachments"),
        me,
        assignee,
        status_choices: Choice::all(&statuses(), Some(detail.ticket.status.as_str())),
        priority_choices: Choice::all(&priorities(), Some(detail.ticket.priority.as_str())),
        ticket: TicketRow::of(detail.ticket),
        conversation: detail
            .conversation
            .into_iter()
            .map(MessageRow::of)
            .collect(),
        files: detail.files.into_iter().map(FileRow::of).collect(),
    })
}
