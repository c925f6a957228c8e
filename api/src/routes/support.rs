//! Support tickets (SUPP-001..006): a tenant's members open and follow tickets; platform admins
//! answer them from the support console (`/api/v1/platform/support/…`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::audit::{Actor, Entry};
use domain::page::{Page, PageRequest};
use domain::support::{
    self, Attachment, Author, Change, Filter, NewAttachment, NewTicket, Ticket, TicketDetail,
    TicketKind, TicketPriority, TicketStatus,
};
use domain::validate::Validator;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{PlatformAdmin, Subject, TenantCtx, perm};
use crate::error::{ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};
use crate::routes::environments::serde_with_null;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTicketRequest {
    /// `bug` (SUPP-001), `feature` (SUPP-002) or `help` (SUPP-003).
    pub kind: TicketKind,
    #[schema(min_length = 3, max_length = 200)]
    pub title: String,
    /// What happened, what was expected, steps; the first message of the conversation.
    #[schema(min_length = 1, max_length = 20000)]
    pub description: String,
    /// Default `normal`.
    pub priority: Option<TicketPriority>,
}

impl Validate for CreateTicketRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("title", self.title.trim(), 3, 200);
        v.multiline("description", self.description.trim(), 1, 20_000);
        v.finish()
    }
}

/// Who the ticket is from: the user's email (also under impersonation: the ticket is theirs),
/// or an API key's prefix.
fn requester_email<P>(ctx: &TenantCtx<P>) -> String {
    match &ctx.principal.subject {
        Subject::User { email, .. } => email.clone(),
        Subject::ApiKey { prefix, .. } => prefix.clone(),
    }
}

fn requester<'a>(actor: &Actor, email: &'a str) -> Author<'a> {
    Author {
        user_id: actor.user_id,
        email,
        support: false,
    }
}

/// Open a ticket: a bug report, a feature request or a question (SUPP-001..003).
#[utoipa::path(post, path = "/api/v1/support/tickets", tag = "support", security(("bearer" = [])),
    request_body = CreateTicketRequest,
    responses((status = 201, body = TicketDetail), (status = 422, body = Problem)))]
pub async fn create_ticket(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UseSupport>,
    ApiJson(req): ApiJson<CreateTicketRequest>,
) -> ApiResult<(StatusCode, Json<TicketDetail>)> {
    let tenant_id = ctx.tenant_id();
    let actor = ctx.actor();
    let mut tx = state.db.begin().await?;
    let ticket = support::create(
        &mut tx,
        NewTicket {
            tenant_id,
            kind: req.kind,
            title: req.title.trim(),
            description: req.description.trim(),
            priority: req.priority.unwrap_or(TicketPriority::Normal),
            requester_user_id: actor.user_id,
            requester_email: &requester_email(&ctx),
        },
    )
    .await?;
    Entry::new(Some(tenant_id), &actor, "support.ticket_opened", "ticket")
        .target(ticket.ticket.id)
        .new_value(
            &json!({"kind": ticket.ticket.kind, "title": ticket.ticket.title,
            "priority": ticket.ticket.priority}),
        )
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(ticket)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketQuery {
    #[param(inline)]
    pub status: Option<TicketStatus>,
    #[param(inline)]
    pub kind: Option<TicketKind>,
    /// Only unresolved (true) or only resolved and closed (false) tickets.
    pub open: Option<bool>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The tenant's tickets, newest first (SUPP-005).
#[utoipa::path(get, path = "/api/v1/support/tickets", tag = "support", security(("bearer" = [])),
    params(TicketQuery), responses((status = 200, body = Page<Ticket>)))]
pub async fn list_tickets(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UseSupport>,
    ApiQuery(q): ApiQuery<TicketQuery>,
) -> ApiResult<Json<Page<Ticket>>> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let filter = Filter {
        tenant_id: Some(ctx.tenant_id()),
        status: q.status,
        kind: q.kind,
        open: q.open,
    };
    Ok(Json(support::list(&state.db, &filter, page).await?))
}

/// One ticket with its conversation and attachments (SUPP-005).
#[utoipa::path(get, path = "/api/v1/support/tickets/{ticket_id}", tag = "support", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path, description = "The ticket's id")),
    responses((status = 200, body = TicketDetail), (status = 404, body = Problem)))]
pub async fn get_ticket(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UseSupport>,
    ApiPath(ticket_id): ApiPath<Uuid>,
) -> ApiResult<Json<TicketDetail>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(
        support::detail(&mut conn, Some(ctx.tenant_id()), ticket_id).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    #[schema(min_length = 1, max_length = 20000)]
    pub body: String,
}

impl Validate for MessageRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.multiline("body", self.body.trim(), 1, 20_000);
        v.finish()
    }
}

/// Add to the conversation. A reply to a ticket that waited on the customer, or was resolved,
/// opens it again; a closed ticket is a 409.
#[utoipa::path(post, path = "/api/v1/support/tickets/{ticket_id}/messages", tag = "support", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path, description = "The ticket's id")),
    request_body = MessageRequest,
    responses((status = 201, body = TicketDetail), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reply(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UseSupport>,
    ApiPath(ticket_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<MessageRequest>,
) -> ApiResult<(StatusCode, Json<TicketDetail>)> {
    let tenant_id = ctx.tenant_id();
    let actor = ctx.actor();
    let mut tx = state.db.begin().await?;
    let (ticket, _) = support::reply(
        &mut tx,
        Some(tenant_id),
        ticket_id,
        &requester(&actor, &requester_email(&ctx)),
        req.body.trim(),
    )
    .await?;
    Entry::new(Some(tenant_id), &actor, "support.ticket_replied", "ticket")
        .target(ticket_id)
        .new_value(&json!({"status": ticket.status}))
        .record(&mut *tx)
        .await?;
    let detail = support::detail(&mut tx, Some(tenant_id), ticket_id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

/// Close a ticket (the requester's side: solved, or no longer needed).
#[utoipa::path(post, path = "/api/v1/support/tickets/{ticket_id}/close", tag = "support", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path, description = "The ticket's id")),
    responses((status = 200, body = Ticket), (status = 404, body = Problem)))]
pub async fn close_ticket(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UseSupport>,
    ApiPath(ticket_id): ApiPath<Uuid>,
) -> ApiResult<Json<Ticket>> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    let (before, after) = support::update(
        &mut tx,
        Some(tenant_id),
        ticket_id,
        &Change {
            status: Some(TicketStatus::Closed),
            ..Change::default()
        },
    )
    .await?;
    if before.status != after.status {
        Entry::new(
            Some(tenant_id),
            &ctx.actor(),
            "support.ticket_closed",
            "ticket",
        )
        .target(ticket_id)
        .old(&json!({"status": before.status}))
        .new_value(&json!({"status": after.status}))
        .record(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Json(after))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file's name as shown (1-200 characters, no path); default `attachment`.
    #[param(min_length = 1, max_length = 200)]
    pub filename: Option<String>,
}

/// Types served as themselves on download; anything else (HTML, SVG, scripts) is served as
/// `application/octet-stream`, so an attachment never runs in the API's origin.
const INLINE_SAFE: [&str; 8] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "text/plain",
    "application/pdf",
    "application/json",
    "application/zip",
];

fn check_upload(filename: &str, content_type: &str, data: &[u8]) -> Result<(), domain::Error> {
    let mut v = Validator::new();
    v.text("filename", filename, 1, 200);
    if filename.contains(['/', '\\']) || filename.chars().any(char::is_control) {
        v.error(
            "filename",
            "must be a file name, without a path or control characters",
        );
    }
    let (kind, sub) = content_type.split_once('/').unwrap_or_default();
    if content_type.len() > 100 || kind.is_empty() || sub.is_empty() {
        v.error(
            "content-type",
            "the Content-Type header must be a media type, e.g. image/png",
        );
    }
    if data.is_empty() {
        v.error("body", "the file is empty");
    }
    v.finish()
}

/// Attach a file (SUPP-004): the raw bytes as the body, its media type as `Content-Type`, its
/// name as `?filename=`. Up to `WFO_MAX_BODY_BYTES` (default 1 MiB) and 10 files per ticket.
#[utoipa::path(post, path = "/api/v1/support/tickets/{ticket_id}/attachments", tag = "support", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path, description = "The ticket's id"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Attachment), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn upload(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UseSupport>,
    ApiPath(ticket_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Attachment>)> {
    let tenant_id = ctx.tenant_id();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let filename = q.filename.as_deref().unwrap_or("attachment").trim();
    check_upload(filename, &content_type, &body)?;
    let actor = ctx.actor();
    let mut tx = state.db.begin().await?;
    let attachment = support::attach(
        &mut tx,
        Some(tenant_id),
        ticket_id,
        NewAttachment {
            filename,
            content_type: &content_type,
            data: &body,
            uploaded_by: &actor.label,
        },
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &actor,
        "support.attachment_added",
        "ticket",
    )
    .target(ticket_id)
    .new_value(
        &json!({"attachment_id": attachment.id, "filename": attachment.filename,
            "size": attachment.size, "sha256": attachment.sha256}),
    )
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(attachment)))
}

fn file_response(attachment: &Attachment, data: Vec<u8>) -> Response {
    let content_type = if INLINE_SAFE.contains(&attachment.content_type.as_str()) {
        attachment.content_type.as_str()
    } else {
        "application/octet-stream"
    };
    // The name travels percent-encoded (RFC 6266 filename*), never as raw header text.
    let encoded: String = attachment
        .filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let disposition = HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type)
                    .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox"),
            ),
        ],
        data,
    )
        .into_response()
}

/// Download an attachment (always as a download, never rendered in the API's origin).
#[utoipa::path(get, path = "/api/v1/support/tickets/{ticket_id}/attachments/{attachment_id}", tag = "support", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path, description = "The ticket's id"),
        ("attachment_id" = Uuid, Path, description = "The attachment's id")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 404, body = Problem)))]
pub async fn download(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::UseSupport>,
    ApiPath((ticket_id, attachment_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Response> {
    let (attachment, data) =
        support::download(&state.db, Some(ctx.tenant_id()), ticket_id, attachment_id).await?;
    Ok(file_response(&attachment, data))
}

// ---- The support console (SUPP-006) -------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    pub tenant_id: Option<Uuid>,
    #[param(inline)]
    pub status: Option<TicketStatus>,
    #[param(inline)]
    pub kind: Option<TicketKind>,
    /// Only unresolved (true) or only resolved and closed (false) tickets.
    pub open: Option<bool>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Every tenant's tickets, newest first (SUPP-006).
#[utoipa::path(get, path = "/api/v1/platform/support/tickets", tag = "platform", security(("bearer" = [])),
    params(ConsoleQuery), responses((status = 200, body = Page<Ticket>), (status = 403, body = Problem)))]
pub async fn console_tickets(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiQuery(q): ApiQuery<ConsoleQuery>,
) -> ApiResult<Json<Page<Ticket>>> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let filter = Filter {
        tenant_id: q.tenant_id,
        status: q.status,
        kind: q.kind,
        open: q.open,
    };
    Ok(Json(support::list(&state.db, &filter, page).await?))
}

/// One ticket, for support.
#[utoipa::path(get, path = "/api/v1/platform/support/tickets/{ticket_id}", tag = "platform", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path, description = "The ticket's id")),
    responses((status = 200, body = TicketDetail), (status = 404, body = Problem)))]
pub async fn console_ticket(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiPath(ticket_id): ApiPath<Uuid>,
) -> ApiResult<Json<TicketDetail>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(support::detail(&mut conn, None, ticket_id).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketPatch {
    pub status: Option<TicketStatus>,
    pub priority: Option<TicketPriority>,
    /// A platform admin, or null to unassign.
    #[serde(default, with = "serde_with_null")]
    #[schema(value_type = Option<Uuid>)]
    pub assignee_user_id: Option<Option<Uuid>>,
}

impl Validate for TicketPatch {
    fn validate(&self) -> Result<(), domain::Error> {
        Ok(())
    }
}

/// Change a ticket's status, priority or assignee (SUPP-006); the requester is emailed a status
/// change when email is configured.
#[utoipa::path(patch, path = "/api/v1/platform/support/tickets/{ticket_id}", tag = "platform", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path, description = "The ticket's id")),
    request_body = TicketPatch,
    responses((status = 200, body = Ticket), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn console_update(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(ticket_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<TicketPatch>,
) -> ApiResult<Json<Ticket>> {
    let mut tx = state.db.begin().await?;
    let (before, after) = support::update(
        &mut tx,
        None,
        ticket_id,
        &Change {
            status: req.status,
            priority: req.priority,
            assignee_user_id: req.assignee_user_id,
        },
    )
    .await?;
    Entry::new(
        Some(after.tenant_id),
        &admin.actor(),
        "support.ticket_updated",
        "ticket",
    )
    .target(ticket_id)
    .old(
        &json!({"status": before.status, "priority": before.priority,
        "assignee_user_id": before.assignee_user_id}),
    )
    .new_value(&json!({"status": after.status, "priority": after.priority,
        "assignee_user_id": after.assignee_user_id}))
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    if before.status != after.status {
        tell_requester(
            &state,
            &after,
            &format!(
                "Its status is now: {}.",
                after.status.as_str().replace('_', " ")
            ),
        )
        .await;
    }
    Ok(Json(after))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupportReplyRequest {
    #[schema(min_length = 1, max_length = 20000)]
    pub body: String,
    /// The status to set with the reply (e.g. `waiting_on_customer`, `resolved`); default
    /// `in_progress` for an open ticket, unchanged otherwise.
    pub status: Option<TicketStatus>,
}

impl Validate for SupportReplyRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.multiline("body", self.body.trim(), 1, 20_000);
        v.finish()
    }
}

/// Answer a ticket as support; the requester is emailed the answer when email is configured.
#[utoipa::path(post, path = "/api/v1/platform/support/tickets/{ticket_id}/messages", tag = "platform", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path, description = "The ticket's id")),
    request_body = SupportReplyRequest,
    responses((status = 201, body = TicketDetail), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn console_reply(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(ticket_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<SupportReplyRequest>,
) -> ApiResult<(StatusCode, Json<TicketDetail>)> {
    let actor = admin.actor();
    let mut tx = state.db.begin().await?;
    let author = Author {
        user_id: Some(admin.user_id),
        email: &actor.label,
        support: true,
    };
    let (ticket, _) = support::reply(&mut tx, None, ticket_id, &author, req.body.trim()).await?;
    let status = req
        .status
        .or((ticket.status == TicketStatus::Open).then_some(TicketStatus::InProgress));
    let (_, ticket) = support::update(
        &mut tx,
        None,
        ticket_id,
        &Change {
            status,
            ..Change::default()
        },
    )
    .await?;
    Entry::new(
        Some(ticket.tenant_id),
        &actor,
        "support.ticket_answered",
        "ticket",
    )
    .target(ticket_id)
    .new_value(&json!({"status": ticket.status}))
    .record(&mut *tx)
    .await?;
    let detail = support::detail(&mut tx, None, ticket_id).await?;
    tx.commit().await?;
    tell_requester(&state, &ticket, req.body.trim()).await;
    Ok((StatusCode::CREATED, Json(detail)))
}

/// An attachment, for support.
#[utoipa::path(get, path = "/api/v1/platform/support/tickets/{ticket_id}/attachments/{attachment_id}", tag = "platform", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path, description = "The ticket's id"),
        ("attachment_id" = Uuid, Path, description = "The attachment's id")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 404, body = Problem)))]
pub async fn console_download(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiPath((ticket_id, attachment_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Response> {
    let (attachment, data) = support::download(&state.db, None, ticket_id, attachment_id).await?;
    Ok(file_response(&attachment, data))
}

/// Emails the requester about their ticket, when email is configured (best effort: the answer
/// is in the ticket either way).
async fn tell_requester(state: &AppState, ticket: &Ticket, text: &str) {
    if state.jobs.notify.mailer.is_none() {
        return;
    }
    let body = format!(
        "Support answered your ticket “{}”:\n\n{text}\n\nFollow it in WorkflowOps: {}/support/{}\n",
        ticket.title, state.config.public_url, ticket.id
    );
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        jobs::notify::send_email(
            &state.jobs,
            std::slice::from_ref(&ticket.requester_email),
            &format!("[WorkflowOps support] {}", ticket.title),
            body,
            None,
        ),
    )
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::warn!(ticket = %ticket.id, "the requester could not be emailed about their ticket");
    }
}
