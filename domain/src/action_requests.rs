//! Requests for workflow actions that policy puts behind an approval (PRD 3.1.3): who asked,
//! for what, and who decided. The requester can never approve their own request.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::policy::Action;

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct ActionRequest {
    pub id: Uuid,
    pub environment_id: Uuid,
    pub workflow_id: String,
    pub workflow_name: String,
    pub action: Action,
    /// `pending`, `approved` (and carried out), `rejected`, or `failed` (approved, but the
    /// provider refused; `error` says why).
    pub status: String,
    pub reason: Option<String>,
    pub requested_by: Option<Uuid>,
    pub requested_by_label: String,
    pub decided_by: Option<Uuid>,
    pub decided_by_label: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub comment: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, environment_id, workflow_id, workflow_name, action, status, reason, requested_by, \
    requested_by_label, decided_by, decided_by_label, decided_at, comment, error, created_at";

pub struct NewRequest<'a> {
    pub tenant_id: Uuid,
    pub environment_id: Uuid,
    pub workflow_id: &'a str,
    pub workflow_name: &'a str,
    pub action: Action,
    pub reason: Option<&'a str>,
    pub requested_by: Option<Uuid>,
    pub requested_by_label: &'a str,
}

pub async fn create(db: impl PgExecutor<'_>, new: NewRequest<'_>) -> Result<ActionRequest> {
    Ok(sqlx::query_as(sqlf!(
        "insert into workflow_action_requests (id, tenant_id, environment_id, workflow_id, workflow_name, action, \
         reason, requested_by, requested_by_label) values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning {COLUMNS}"
    ))
    .bind(new_id())
    .bind(new.tenant_id)
    .bind(new.environment_id)
    .bind(new.workflow_id)
    .bind(new.workflow_name)
    .bind(new.action)
    .bind(new.reason)
    .bind(new.requested_by)
    .bind(new.requested_by_label)
    .fetch_one(db)
    .await?)
}

pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    status: Option<&str>,
) -> Result<Vec<ActionRequest>> {
    Ok(sqlx::query_as(sqlf!(
        "select {COLUMNS} from workflow_action_requests where tenant_id = $1 and ($2::text is null or status = $2) \
         order by created_at desc limit 500"
    ))
    .bind(tenant_id)
    .bind(status)
    .fetch_all(db)
    .await?)
}

/// Locks a pending request for a decision; refuses decided ones and the requester's own.
pub async fn lock_pending(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    decider: Uuid,
) -> Result<ActionRequest> {
    let req: ActionRequest = sqlx::query_as(sqlf!(
        "select {COLUMNS} from workflow_action_requests where tenant_id = $1 and id = $2 for update"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::not_found("action request"))?;
    if req.status != "pending" {
        return Err(Error::conflict(
            "request_decided",
            format!("this request is already {}", req.status),
        ));
    }
    if req.requested_by == Some(decider) {
        return Err(Error::Forbidden {
            code: "self_approval",
            message: "a request must be decided by someone other than its requester".into(),
        });
    }
    Ok(req)
}

pub async fn decide(
    db: impl PgExecutor<'_>,
    id: Uuid,
    status: &str,
    decided_by: Option<Uuid>,
    decided_by_label: &str,
    comment: Option<&str>,
    error: Option<&str>,
) -> Result<ActionRequest> {
    Ok(sqlx::query_as(sqlf!(
        "update workflow_action_requests set status = $2, decided_by = $3, decided_by_label = $4, decided_at = now(), \
         comment = $5, error = $6 where id = $1 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(status)
    .bind(decided_by)
    .bind(decided_by_label)
    .bind(comment)
    .bind(error)
    .fetch_one(db)
    .await?)
}
