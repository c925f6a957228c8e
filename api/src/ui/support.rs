//! The support pages (PRD 3.18, SUPP-001..005): a tenant's tickets with a form to open one, and
//! a ticket's conversation and files with reply, upload and close controls. Every member may use
//! them (`UseSupport`); pages read through the domain with the session's tenant, like the API,
//! and act through the JSON API. The rows and helpers here are shared with the platform's support
//! console (`support_console.rs`).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use domain::Permission;
use domain::support::{
    self, Attachment, Filter, Message, Ticket, TicketKind, TicketPriority, TicketStatus,
};
use serde::Deserialize;
use uuid::Uuid;

use super::pages::{PagePath, failed, not_found};
use super::{Nav, Viewer, page_of, render};
use crate::app::AppState;

/// How many tickets a list page shows.
pub(super) const TICKETS_PER_PAGE: u32 = 50;

/// How the UI writes a time.
const TIME: &str = "%Y-%m-%d %H:%M";

/// A status or kind as people read it: `waiting_on_customer` → "waiting on customer".
fn label(text: &str) -> String {
    text.replace('_', " ")
}

/// A size in bytes as people read it.
fn size_label(bytes: i32) -> String {
    let b = f64::from(bytes);
    if b < 1024.0 {
        format!("{bytes} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

/// A `<select>` option: its value, its text, and whether it is the current one.
pub(super) struct Choice {
    pub value: &'static str,
    pub text: String,
    pub selected: bool,
}

impl Choice {
    /// One option per value, `current` selected.
    pub(super) fn all(values: &[&'static str], current: Option<&str>) -> Vec<Self> {
        values
            .iter()
            .map(|&value| Self {
                value,
                text: label(value),
                selected: current == Some(value),
            })
            .collect()
    }
}

pub(super) fn statuses() -> Vec<&'static str> {
    TicketStatus::ALL.iter().map(|s| s.as_str()).collect()
}

pub(super) fn priorities() -> Vec<&'static str> {
    TicketPriority::ALL.iter().map(|p| p.as_str()).collect()
}

pub(super) fn kinds() -> Vec<&'static str> {
    TicketKind::ALL.iter().map(|k| k.as_str()).collect()
}

/// The `open` filter's choices: any, open only, resolved or closed only.
pub(super) fn open_choices(current: Option<bool>) -> Vec<Choice> {
    [
        ("true", "open (not resolved or closed)", Some(true)),
        ("false", "resolved or closed", Some(false)),
    ]
    .into_iter()
    .map(|(value, text, open)| Choice {
        value,
        text: text.to_owned(),
        selected: current.is_some() && current == open,
    })
    .collect()
}

/// `?open=true|false`; anything else is no filter.
pub(super) fn open_of(q: Option<&str>) -> Option<bool> {
    match q {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

/// A ticket as pages show it.
pub(super) struct TicketRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: &'static str,
    pub title: String,
    /// The status's text, also its CSS class.
    pub status: &'static str,
    pub status_label: String,
    pub priority: &'static str,
    pub requester: String,
    pub assignee_user_id: Option<Uuid>,
    pub messages: i64,
    pub attachments: i64,
    pub created: String,
    pub updated: String,
    pub closed: bool,
}

impl TicketRow {
    pub(super) fn of(t: Ticket) -> Self {
        Self {
            id: t.id,
            tenant_id: t.tenant_id,
            kind: t.kind.as_str(),
            status: t.status.as_str(),
            status_label: label(t.status.as_str()),
            priority: t.priority.as_str(),
            requester: t.requester_email,
            assignee_user_id: t.assignee_user_id,
            messages: t.messages,
            attachments: t.attachments,
            created: t.created_at.format(TIME).to_string(),
            updated: t.updated_at.format(TIME).to_string(),
            closed: t.status == TicketStatus::Closed,
            title: t.title,
        }
    }
}

/// One message of a conversation.
pub(super) struct MessageRow {
    pub author: String,
    pub from_support: bool,
    pub body: String,
    pub time: String,
}

impl MessageRow {
    pub(super) fn of(m: Message) -> Self {
        Self {
            time: m.created_at.format(TIME).to_string(),
            author: m.author_email,
            from_support: m.from_support,
            body: m.body,
        }
    }
}

/// An attachment, linked to its download.
pub(super) struct FileRow {
    pub id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size: String,
    pub sha256: String,
    pub uploaded_by: String,
    pub time: String,
}

impl FileRow {
    pub(super) fn of(a: Attachment) -> Self {
        Self {
            id: a.id,
            size: size_label(a.size),
            time: a.created_at.format(TIME).to_string(),
            filename: a.filename,
            content_type: a.content_type,
            sha256: a.sha256,
            uploaded_by: a.uploaded_by,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    open: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "support.html")]
struct SupportPage {
    nav: Nav,
    allowed: bool,
    tickets: Vec<TicketRow>,
    next_cursor: Option<String>,
    /// The filters as given (empty: none), for the next page's link.
    status: &'static str,
    open: &'static str,
    status_choices: Vec<Choice>,
    open_choices: Vec<Choice>,
    kinds: Vec<Choice>,
    priorities: Vec<Choice>,
}

/// `/support`: the tenant's tickets, newest first, and the form to open one.
pub async fn tickets(
    State(state): State<AppState>,
    v: Viewer,
    super::pages::PageQuery(q): super::pages::PageQuery<ListQuery>,
) -> Response {
    let nav = v.nav("support");
    let status = q.status.as_deref().and_then(TicketStatus::parse);
    let open = open_of(q.open.as_deref());
    let mut page = SupportPage {
        allowed: nav.can(Permission::UseSupport),
        nav,
        tickets: Vec::new(),
        next_cursor: None,
        status: status.map_or("", TicketStatus::as_str),
        open: match open {
            Some(true) => "true",
            Some(false) => "false",
            None => "",
        },
        status_choices: Choice::all(&statuses(), status.map(TicketStatus::as_str)),
        open_choices: open_choices(open),
        kinds: Choice::all(&kinds(), Some(TicketKind::Bug.as_str())),
        priorities: Choice::all(&priorities(), Some(TicketPriority::Normal.as_str())),
    };
    if !page.allowed {
        return render(&page);
    }
    let filter = Filter {
        tenant_id: Some(v.tenant_id),
        status,
        open,
        ..Filter::default()
    };
    match support::list(
        &state.db,
        &filter,
        page_of(q.cursor.as_deref(), TICKETS_PER_PAGE),
    )
    .await
    {
        Ok(list) => {
            page.next_cursor = list.next_cursor;
            page.tickets = list.items.into_iter().map(TicketRow::of).collect();
            render(&page)
        }
        Err(e) => failed(&e),
    }
}

#[derive(Template)]
#[template(path = "support_ticket.html")]
struct TicketPage {
    nav: Nav,
    ticket: TicketRow,
    conversation: Vec<MessageRow>,
    files: Vec<FileRow>,
    /// Where the files download from (the API, with the session cookie).
    files_base: String,
    /// The largest upload the API takes, as people read it.
    max_upload: String,
    /// The ticket holds as many files as it may.
    full: bool,
}

/// `/support/{id}`: one of the tenant's tickets (404 for anyone else's).
pub async fn ticket(
    State(state): State<AppState>,
    v: Viewer,
    PagePath(id): PagePath<Uuid>,
) -> Response {
    let nav = v.nav("support");
    if !nav.can(Permission::UseSupport) {
        return not_found(nav, "ticket");
    }
    let mut conn = match state.db.acquire().await {
        Ok(c) => c,
        Err(e) => return failed(&e),
    };
    let detail = match support::detail(&mut conn, Some(v.tenant_id), id).await {
        Ok(d) => d,
        Err(domain::Error::NotFound { .. }) => return not_found(nav, "ticket"),
        Err(e) => return failed(&e),
    };
    render(&TicketPage {
        nav,
        full: detail.ticket.attachments >= support::MAX_ATTACHMENTS,
        files_base: format!("/api/v1/support/tickets/{id}/attachments"),
        max_upload: size_label(i32::try_from(state.config.max_body_bytes).unwrap_or(i32::MAX)),
        ticket: TicketRow::of(detail.ticket),
        conversation: detail
            .conversation
            .into_iter()
            .map(MessageRow::of)
            .collect(),
        files: detail.files.into_iter().map(FileRow::of).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_the_largest_fitting_unit() {
        assert_eq!(size_label(512), "512 B");
        assert_eq!(size_label(1536), "1.5 KiB");
        assert_eq!(size_label(1024 * 1024), "1.0 MiB");
    }

    #[test]
    fn only_true_or_false_filter_on_openness() {
        assert_eq!(open_of(Some("true")), Some(true));
        assert_eq!(open_of(Some("false")), Some(false));
        assert_eq!(open_of(Some("yes")), None);
        assert_eq!(open_of(None), None);
    }
}
