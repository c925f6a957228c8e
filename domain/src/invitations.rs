//! Team invitations (TEAM-001, TEAM-006): a pending invitation carries a single-use token; accepting
//! it creates the membership.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result, unique_violation};
use crate::ids::new_id;
use crate::page::{Page, PageRequest};
use crate::rbac::Role;
use crate::tokens::{self, Minted};
use crate::validate::normalize_email;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub role: Role,
    pub invited_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Invitation {
    pub fn status(&self, now: DateTime<Utc>) -> InvitationStatus {
        if self.accepted_at.is_some() {
            InvitationStatus::Accepted
        } else if self.revoked_at.is_some() {
            InvitationStatus::Revoked
        } else if self.expires_at <= now {
            InvitationStatus::Expired
        } else {
            InvitationStatus::Pending
        }
    }
}

const COLUMNS: &str =
    "id, tenant_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at";

pub async fn create(
    db: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    email: &str,
    role: Role,
    invited_by: Option<Uuid>,
    ttl: Duration,
) -> Result<(Minted, Invitation)> {
    let email = normalize_email(email);
    // An expired invitation no longer blocks a new one for the same address.
    sqlx::query(
        "update invitations set revoked_at = now() where tenant_id = $1 and lower(email) = $2 \
         and accepted_at is null and revoked_at is null and expires_at <= now()",
    )
    .bind(tenant_id)
    .bind(&email)
    .execute(&mut *db)
    .await?;
    let token = tokens::invitation();
    let invitation = sqlx::query_as(sqlf!(
        "insert into invitations (id, tenant_id, email, role, token_hash, invited_by, expires_at) \
         values ($1, $2, $3, $4, $5, $6, $7) returning {COLUMNS}"
    ))
    .bind(new_id())
    .bind(tenant_id)
    .bind(&email)
    .bind(role)
    .bind(token.hash.as_slice())
    .bind(invited_by)
    .bind(Utc::now() + ttl)
    .fetch_one(&mut *db)
    .await
    .map_err(|e| match unique_violation(&e) {
        Some(_) => Error::conflict(
            "invitation_pending",
            format!(
                "`{email}` already has a pending invitation; revoke it first to send a new one"
            ),
        ),
        None => e.into(),
    })?;
    Ok((token, invitation))
}

pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    status: Option<InvitationStatus>,
    page: PageRequest,
) -> Result<Page<Invitation>> {
    let status_sql = match status {
        None => "true",
        Some(InvitationStatus::Pending) => {
            "accepted_at is null and revoked_at is null and expires_at > now()"
        }
        Some(InvitationStatus::Accepted) => "accepted_at is not null",
        Some(InvitationStatus::Revoked) => "revoked_at is not null and accepted_at is null",
        Some(InvitationStatus::Expired) => {
            "accepted_at is null and revoked_at is null and expires_at <= now()"
        }
    };
    let rows = sqlx::query_as(sqlf!(
        "select {COLUMNS} from invitations where tenant_id = $1 and ($2::uuid is null or id < $2) \
         and {status_sql} order by id desc limit $3"
    ))
    .bind(tenant_id)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |i: &Invitation| i.id))
}

pub async fn get(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Invitation> {
    sqlx::query_as(sqlf!(
        "select {COLUMNS} from invitations where tenant_id = $1 and id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("invitation"))
}

/// Revokes a pending invitation; accepted ones cannot be revoked (remove the member instead).
pub async fn revoke(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Invitation> {
    let row: Option<Invitation> = sqlx::query_as(sqlf!(
        "update invitations set revoked_at = coalesce(revoked_at, now()) \
         where tenant_id = $1 and id = $2 and accepted_at is null returning {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.ok_or(Error::conflict(
        "invitation_not_pending",
        "no pending invitation with this id (it may have been accepted; remove the member instead)",
    ))
}

/// Finds the invitation a token names and checks that it is still pending, without locking it:
/// what an invitation offers, and the checks acceptance makes before its slow work (a password
/// hash), which [`claim`] then repeats under the lock.
pub async fn pending(db: impl PgExecutor<'_>, token: &str) -> Result<Invitation> {
    let invitation: Option<Invitation> = sqlx::query_as(sqlf!(
        "select {COLUMNS} from invitations where token_hash = $1"
    ))
    .bind(tokens::hash(token).as_slice())
    .fetch_optional(db)
    .await?;
    still_pending(invitation)
}

/// Finds the invitation a token names and locks it for acceptance; checks it is still pending.
pub async fn claim(db: &mut sqlx::PgConnection, token: &str) -> Result<Invitation> {
    let invitation: Option<Invitation> = sqlx::query_as(sqlf!(
        "select {COLUMNS} from invitations where token_hash = $1 for update"
    ))
    .bind(tokens::hash(token).as_slice())
    .fetch_optional(&mut *db)
    .await?;
    still_pending(invitation)
}

/// The invitation if it can be accepted now: 404 when the token names none, 410 when it was
/// used, revoked or has expired.
fn still_pending(invitation: Option<Invitation>) -> Result<Invitation> {
    let invitation = invitation.ok_or(Error::not_found("invitation"))?;
    match invitation.status(Utc::now()) {
        InvitationStatus::Pending => Ok(invitation),
        InvitationStatus::Accepted => Err(Error::Gone {
            code: "invitation_used",
            message: "this invitation has already been accepted".into(),
        }),
        InvitationStatus::Revoked => Err(Error::Gone {
            code: "invitation_revoked",
            message: "this invitation was revoked; ask an admin for a new one".into(),
        }),
        InvitationStatus::Expired => Err(Error::Gone {
            code: "invitation_expired",
            message: "this invitation has expired; ask an admin for a new one".into(),
        }),
    }
}

/// Marks a pending invitation accepted; fenced on its still being pending, so an invitation
/// is never accepted twice (the caller holds its lock from [`claim`]; this is the last guard).
pub async fn mark_accepted(db: impl PgExecutor<'_>, id: Uuid, user_id: Uuid) -> Result<()> {
    let done = sqlx::query(
        "update invitations set accepted_at = now(), accepted_by = $2 \
         where id = $1 and accepted_at is null and revoked_at is null",
    )
    .bind(id)
    .bind(user_id)
    .execute(db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::Gone {
            code: "invitation_used",
            message: "this invitation is no longer pending".into(),
        });
    }
    Ok(())
}
