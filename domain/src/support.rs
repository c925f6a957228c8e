//! Support tickets (PRD 3.18, SUPP-001..006): bug reports, feature requests and help requests
//! from a tenant's members, a conversation with platform support, attachments, and a status
//! the requester can follow.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::page::{Page, PageRequest};

text_enum! {
    /// What a ticket is about (SUPP-001..003).
    pub enum TicketKind { Bug = "bug", Feature = "feature", Help = "help" }
}

text_enum! {
    /// Where a ticket stands (SUPP-005).
    pub enum TicketStatus {
        Open = "open",
        InProgress = "in_progress",
        WaitingOnCustomer = "waiting_on_customer",
        Resolved = "resolved",
        Closed = "closed",
    }
}

text_enum! {
    pub enum TicketPriority { Low = "low", Normal = "normal", High = "high", Urgent = "urgent" }
}

/// A ticket as listed.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Ticket {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: TicketKind,
    pub title: String,
    pub status: TicketStatus,
    pub priority: TicketPriority,
    pub requester_user_id: Option<Uuid>,
    pub requester_email: String,
    pub assignee_user_id: Option<Uuid>,
    pub messages: i64,
    pub attachments: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "select t.id, t.tenant_id, t.kind, t.title, t.status, t.priority, t.requester_user_id, \
     t.requester_email, t.assignee_user_id, \
     (select count(*) from support_messages m where m.ticket_id = t.id) as messages, \
     (select count(*) from support_attachments a where a.ticket_id = t.id) as attachments, \
     t.created_at, t.updated_at, t.closed_at from support_tickets t";

#[derive(Debug, Clone, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
#[schema(as = SupportMessage)]
pub struct Message {
    pub id: Uuid,
    pub author_email: String,
    pub from_support: bool,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// An attachment as listed (its bytes are downloaded separately).
#[derive(Debug, Clone, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Attachment {
    pub id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size: i32,
    pub sha256: String,
    pub uploaded_by: String,
    pub created_at: DateTime<Utc>,
}

const ATTACHMENT_COLUMNS: &str =
    "id, filename, content_type, size, sha256, uploaded_by, created_at";

/// A ticket with its conversation and attachments.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TicketDetail {
    #[serde(flatten)]
    pub ticket: Ticket,
    pub conversation: Vec<Message>,
    pub files: Vec<Attachment>,
}

/// Who writes: a tenant member or platform support.
pub struct Author<'a> {
    pub user_id: Option<Uuid>,
    pub email: &'a str,
    pub support: bool,
}

pub struct NewTicket<'a> {
    pub tenant_id: Uuid,
    pub kind: TicketKind,
    pub title: &'a str,
    pub description: &'a str,
    pub priority: TicketPriority,
    pub requester_user_id: Option<Uuid>,
    pub requester_email: &'a str,
}

pub async fn create(db: &mut PgConnection, new: NewTicket<'_>) -> Result<TicketDetail> {
    let id = new_id();
    sqlx::query(
        "insert into support_tickets (id, tenant_id, kind, title, priority, requester_user_id, requester_email) \
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(new.tenant_id)
    .bind(new.kind)
    .bind(new.title)
    .bind(new.priority)
    .bind(new.requester_user_id)
    .bind(new.requester_email)
    .execute(&mut *db)
    .await?;
    insert_message(
        &mut *db,
        id,
        &Author {
            user_id: new.requester_user_id,
            email: new.requester_email,
            support: false,
        },
        new.description,
    )
    .await?;
    detail(&mut *db, Some(new.tenant_id), id).await
}

async fn insert_message(
    db: &mut PgConnection,
    ticket_id: Uuid,
    author: &Author<'_>,
    body: &str,
) -> Result<Message> {
    Ok(sqlx::query_as(
        "insert into support_messages (id, ticket_id, author_user_id, author_email, from_support, body) \
         values ($1, $2, $3, $4, $5, $6) returning id, author_email, from_support, body, created_at",
    )
    .bind(new_id())
    .bind(ticket_id)
    .bind(author.user_id)
    .bind(author.email)
    .bind(author.support)
    .bind(body)
    .fetch_one(&mut *db)
    .await?)
}

/// The ticket `id`, of `tenant_id` (None: any tenant, for platform support).
pub async fn get(db: impl PgExecutor<'_>, tenant_id: Option<Uuid>, id: Uuid) -> Result<Ticket> {
    sqlx::query_as(sqlf!(
        "{SELECT} where t.id = $1 and ($2::uuid is null or t.tenant_id = $2)"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("ticket"))
}

pub async fn detail(
    db: &mut PgConnection,
    tenant_id: Option<Uuid>,
    id: Uuid,
) -> Result<TicketDetail> {
    let ticket = get(&mut *db, tenant_id, id).await?;
    let conversation = sqlx::query_as(
        "select id, author_email, from_support, body, created_at from support_messages \
         where ticket_id = $1 order by id",
    )
    .bind(id)
    .fetch_all(&mut *db)
    .await?;
    let files = sqlx::query_as(sqlf!(
        "select {ATTACHMENT_COLUMNS} from support_attachments where ticket_id = $1 order by id"
    ))
    .bind(id)
    .fetch_all(&mut *db)
    .await?;
    Ok(TicketDetail {
        ticket,
        conversation,
        files,
    })
}

#[derive(Debug, Default)]
pub struct Filter {
    /// None: every tenant (platform support).
    pub tenant_id: Option<Uuid>,
    pub status: Option<TicketStatus>,
    pub kind: Option<TicketKind>,
    /// Not resolved or closed.
    pub open: Option<bool>,
}

/// Tickets, newest first.
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page<Ticket>> {
    let rows = sqlx::query_as(sqlf!(
        "{SELECT} where ($1::uuid is null or t.tenant_id = $1) and ($2::text is null or t.status = $2) \
         and ($3::text is null or t.kind = $3) \
         and ($4::boolean is null or (t.status not in ('resolved', 'closed')) = $4) \
         and ($5::uuid is null or t.id < $5) order by t.id desc limit $6"
    ))
    .bind(filter.tenant_id)
    .bind(filter.status)
    .bind(filter.kind)
    .bind(filter.open)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |t: &Ticket| t.id))
}

/// Adds a message. A customer's reply reopens a ticket that waited on them or was resolved; a
/// closed ticket takes no more messages.
pub async fn reply(
    db: &mut PgConnection,
    tenant_id: Option<Uuid>,
    id: Uuid,
    author: &Author<'_>,
    body: &str,
) -> Result<(Ticket, Message)> {
    let ticket = lock(&mut *db, tenant_id, id).await?;
    if ticket.status == TicketStatus::Closed {
        return Err(Error::conflict(
            "ticket_closed",
            "this ticket is closed: open a new one",
        ));
    }
    let message = insert_message(&mut *db, id, author, body).await?;
    let reopened = !author.support
        && matches!(
            ticket.status,
            TicketStatus::WaitingOnCustomer | TicketStatus::Resolved
        );
    sqlx::query(
        "update support_tickets set updated_at = now(), \
         status = case when $2 then 'open' else status end where id = $1",
    )
    .bind(id)
    .bind(reopened)
    .execute(&mut *db)
    .await?;
    Ok((get(&mut *db, tenant_id, id).await?, message))
}

async fn lock(db: &mut PgConnection, tenant_id: Option<Uuid>, id: Uuid) -> Result<Ticket> {
    let found: Option<Uuid> = sqlx::query_scalar(
        "select id from support_tickets where id = $1 and ($2::uuid is null or tenant_id = $2) for update",
    )
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(&mut *db)
    .await?;
    found.ok_or(Error::not_found("ticket"))?;
    get(&mut *db, tenant_id, id).await
}

/// Support's changes to a ticket (SUPP-006); `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct Change {
    pub status: Option<TicketStatus>,
    pub priority: Option<TicketPriority>,
    /// `Some(None)` unassigns.
    pub assignee_user_id: Option<Option<Uuid>>,
}

/// Applies `change`; returns the ticket before and after.
pub async fn update(
    db: &mut PgConnection,
    tenant_id: Option<Uuid>,
    id: Uuid,
    change: &Change,
) -> Result<(Ticket, Ticket)> {
    let before = lock(&mut *db, tenant_id, id).await?;
    if let Some(Some(assignee)) = change.assignee_user_id {
        let admin: bool =
            sqlx::query_scalar("select exists (select 1 from platform_admins where user_id = $1)")
                .bind(assignee)
                .fetch_one(&mut *db)
                .await?;
        if !admin {
            return Err(Error::invalid(
                "assignee_user_id",
                "must be a platform admin",
            ));
        }
    }
    sqlx::query(
        "update support_tickets set status = coalesce($2, status), priority = coalesce($3, priority), \
         assignee_user_id = case when $4 then $5 else assignee_user_id end, updated_at = now(), \
         closed_at = case when coalesce($2, status) = 'closed' then coalesce(closed_at, now()) \
                          else null end \
         where id = $1",
    )
    .bind(id)
    .bind(change.status)
    .bind(change.priority)
    .bind(change.assignee_user_id.is_some())
    .bind(change.assignee_user_id.flatten())
    .execute(&mut *db)
    .await?;
    let after = get(&mut *db, tenant_id, id).await?;
    Ok((before, after))
}

/// An attachment's bytes, checked by the caller (size, name, type).
pub struct NewAttachment<'a> {
    pub filename: &'a str,
    pub content_type: &'a str,
    pub data: &'a [u8],
    pub uploaded_by: &'a str,
}

/// The most attachments one ticket holds.
pub const MAX_ATTACHMENTS: i64 = 10;

pub async fn attach(
    db: &mut PgConnection,
    tenant_id: Option<Uuid>,
    id: Uuid,
    new: NewAttachment<'_>,
) -> Result<Attachment> {
    let ticket = lock(&mut *db, tenant_id, id).await?;
    if ticket.status == TicketStatus::Closed {
        return Err(Error::conflict(
            "ticket_closed",
            "this ticket is closed: open a new one",
        ));
    }
    if ticket.attachments >= MAX_ATTACHMENTS {
        return Err(Error::conflict(
            "too_many_attachments",
            format!("a ticket holds at most {MAX_ATTACHMENTS} attachments"),
        ));
    }
    let sha = Sha256::digest(new.data);
    let sha256: String = sha.iter().map(|b| format!("{b:02x}")).collect();
    let attachment = sqlx::query_as(sqlf!(
        "insert into support_attachments (id, ticket_id, filename, content_type, size, sha256, data, uploaded_by) \
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning {ATTACHMENT_COLUMNS}"
    ))
    .bind(new_id())
    .bind(id)
    .bind(new.filename)
    .bind(new.content_type)
    .bind(i32::try_from(new.data.len()).unwrap_or(i32::MAX))
    .bind(&sha256)
    .bind(new.data)
    .bind(new.uploaded_by)
    .fetch_one(&mut *db)
    .await?;
    sqlx::query("update support_tickets set updated_at = now() where id = $1")
        .bind(id)
        .execute(&mut *db)
        .await?;
    Ok(attachment)
}

/// An attachment and its bytes.
pub async fn download(
    db: impl PgExecutor<'_>,
    tenant_id: Option<Uuid>,
    ticket_id: Uuid,
    id: Uuid,
) -> Result<(Attachment, Vec<u8>)> {
    #[derive(FromRow)]
    struct Row {
        #[sqlx(flatten)]
        attachment: Attachment,
        data: Vec<u8>,
    }
    let row: Row = sqlx::query_as(
        "select a.id, a.filename, a.content_type, a.size, a.sha256, a.uploaded_by, a.created_at, a.data \
         from support_attachments a join support_tickets t on t.id = a.ticket_id \
         where a.id = $1 and a.ticket_id = $2 and ($3::uuid is null or t.tenant_id = $3)",
    )
    .bind(id)
    .bind(ticket_id)
    .bind(tenant_id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("attachment"))?;
    Ok((row.attachment, row.data))
}
