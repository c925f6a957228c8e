//! What syncs copy from environments (workflows, credentials' metadata, tags, users,
//! executions) and the catalog queries over it (WF-001..008, CRED-001..006, EXEC-001..005).
//!
//! Sync writes are idempotent upserts stamped with the sync run's id; after a complete walk,
//! rows the run did not see are marked deleted in the provider (and revived if they reappear).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::workflow;

/// Upserts one page of workflows (provider JSON) and their credential references; returns how
/// many were new or changed.
pub async fn upsert_workflows(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    environment_id: Uuid,
    run_id: Uuid,
    page: &[Value],
) -> Result<u64> {
    let summarized: Vec<Summarized> = page
        .iter()
        .filter_map(|w| {
            let text = serde_json::value::to_raw_value(w).ok()?;
            Summarized::new(w, text)
        })
        .collect();
    upsert_summarized(tx, tenant_id, environment_id, run_id, &summarized).await
}

/// A workflow ready to store: its summary, its JSON text and the credentials it references
/// (what storing needs of it, so the parsed value can go before the page is written).
#[derive(Debug)]
pub struct Summarized {
    pub summary: workflow::Summary,
    pub text: Box<RawValue>,
    pub credentials: Vec<workflow::CredentialRef>,
}

impl Summarized {
    /// `None` for a workflow without an id. `text` is `workflow` as JSON.
    pub fn new(workflow: &Value, text: Box<RawValue>) -> Option<Self> {
        Some(Self {
            summary: workflow::summarize(workflow)?,
            credentials: workflow::credential_refs(workflow),
            text,
        })
    }

    /// [`Summarized::new`] from the text alone, read in place ([`crate::json::Json`]).
    pub fn from_text(text: Box<RawValue>) -> serde_json::Result<Option<Self>> {
        let doc = crate::json::Json::parse(text.get())?;
        let Some(summary) = workflow::summarize_doc(&doc) else {
            return Ok(None);
        };
        let credentials = workflow::credential_refs(&doc);
        drop(doc);
        Ok(Some(Self {
            summary,
            credentials,
            text,
        }))
    }
}

/// Each workflow of a page (as the provider's text) summarised: the CPU part of storing a
/// page (reading, normalising and hashing), so a caller can do it off the async threads.
/// Workflows without an id are left out; text that is not JSON is an error.
pub fn summarize_page(page: Vec<Box<RawValue>>) -> serde_json::Result<Vec<Summarized>> {
    let mut out = Vec::with_capacity(page.len());
    for text in page {
        if let Some(s) = Summarized::from_text(text)? {
            out.push(s);
        }
    }
    Ok(out)
}

/// `upsert_workflows` for a page already summarised.
pub async fn upsert_summarized(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    environment_id: Uuid,
    run_id: Uuid,
    page: &[Summarized],
) -> Result<u64> {
    if page.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = page.iter().map(|w| w.summary.id.as_str()).collect();
    // What is stored now, to tell new and changed workflows from unchanged ones.
    let stored: std::collections::HashMap<String, String> = sqlx::query_as(
        "select provider_id, content_hash from env_workflows where environment_id = $1 and provider_id = any($2) \
         and deleted_at is null",
    )
    .bind(environment_id)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .collect();
    let changed: Vec<&Summarized> = page
        .iter()
        .filter(|w| stored.get(&w.summary.id) != Some(&w.summary.content_hash))
        .collect();
    let written: i64 = sqlx::query_scalar(
        "with u as (select * from unnest($3::text[], $4::text[], $5::bool[], $6::bool[], $7::text[], $8::int[], \
                                          $9::text[], $10::text[], $11::timestamptz[], $13::text[]) \
                      as u(provider_id, name, active, archived, tags, node_count, content_hash, definition, updated_at, storage_hash)), \
              up as ( \
             insert into env_workflows (environment_id, tenant_id, provider_id, name, active, archived, tags, node_count, \
                                        content_hash, definition, provider_updated_at, seen_by_run, deleted_at, synced_at, storage_hash) \
             select $1, $2, u.provider_id, u.name, u.active, u.archived, \
                    coalesce((select array_agg(t) from jsonb_array_elements_text(u.tags::jsonb) t), '{}'), \
                    u.node_count, u.content_hash, u.definition::json, u.updated_at, $12, null, now(), u.storage_hash from u \
             where exists (select from environments where id = $1 for key share) \
             on conflict (environment_id, provider_id) do update set name = excluded.name, active = excluded.active, \
                 archived = excluded.archived, tags = excluded.tags, node_count = excluded.node_count, \
                 content_hash = excluded.content_hash, definition = excluded.definition, storage_hash = excluded.storage_hash, \
                 provider_updated_at = excluded.provider_updated_at, seen_by_run = excluded.seen_by_run, \
                 deleted_at = null, synced_at = now() \
             returning 1) \
         select count(*) from up",
    )
    .bind(environment_id)
    .bind(tenant_id)
    .bind(&ids)
    .bind(page.iter().map(|w| w.summary.name.as_str()).collect::<Vec<_>>())
    .bind(page.iter().map(|w| w.summary.active).collect::<Vec<_>>())
    .bind(page.iter().map(|w| w.summary.archived).collect::<Vec<_>>())
    .bind(
        page.iter()
            .map(|w| serde_json::to_string(&w.summary.tags).unwrap_or_else(|_| "[]".into()))
            .collect::<Vec<_>>(),
    )
    .bind(page.iter().map(|w| w.summary.node_count).collect::<Vec<_>>())
    .bind(page.iter().map(|w| w.summary.content_hash.as_str()).collect::<Vec<_>>())
    // The provider's text as it came: `json` checks it without rebuilding it.
    .bind(page.iter().map(|w| w.text.get()).collect::<Vec<_>>())
    .bind(page.iter().map(|w| w.summary.updated_at).collect::<Vec<_>>())
    .bind(run_id)
    .bind(page.iter().map(|w| w.summary.storage_hash.as_str()).collect::<Vec<_>>())
    .fetch_one(&mut *tx)
    .await?;
    environment_held(written)?;
    if changed.is_empty() {
        return Ok(0);
    }
    // Credential references, rewritten for the workflows whose content changed (new ones have
    // none stored).
    let replaced: Vec<&str> = changed
        .iter()
        .map(|w| w.summary.id.as_str())
        .filter(|id| stored.contains_key(*id))
        .collect();
    if !replaced.is_empty() {
        sqlx::query(
            "delete from env_workflow_credentials where environment_id = $1 and workflow_id = any($2)",
        )
        .bind(environment_id)
        .bind(&replaced)
        .execute(&mut *tx)
        .await?;
    }
    let mut refs = (vec![], vec![], vec![], vec![], vec![]);
    for w in &changed {
        for r in &w.credentials {
            refs.0.push(w.summary.id.as_str());
            refs.1.push(r.node.as_str());
            refs.2.push(r.cred_type.as_str());
            refs.3.push(r.name.as_str());
            refs.4.push(r.id.as_deref());
        }
    }
    if !refs.0.is_empty() {
        sqlx::query(
            "insert into env_workflow_credentials (environment_id, tenant_id, workflow_id, node, cred_type, cred_name, cred_id) \
             select $1, $2, u.* from unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) as u \
             on conflict do nothing",
        )
        .bind(environment_id)
        .bind(tenant_id)
        .bind(refs.0)
        .bind(refs.1)
        .bind(refs.2)
        .bind(refs.3)
        .bind(refs.4)
        .execute(&mut *tx)
        .await?;
    }
    Ok(changed.len() as u64)
}

/// The synced tables have no foreign key to `environments` (a per-row check cost a fifth of a
/// sync's database time; migration 0015): each write of a page locks the environment once, and
/// writes nothing when it is gone. Nothing written from a non-empty page means it was deleted.
fn environment_held(written: impl TryInto<u64>) -> Result<()> {
    match written.try_into() {
        Ok(0) => Err(Error::NotFound {
            entity: "environment",
        }),
        _ => Ok(()),
    }
}

/// The tables a sync walks completely, and so can mark rows missing from.
#[derive(Debug, Clone, Copy)]
pub enum Synced {
    Workflows,
    Credentials,
    Tags,
    Users,
}

impl Synced {
    /// Lowercase, for step and log names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Workflows => "workflows",
            Self::Credentials => "credentials",
            Self::Tags => "tags",
            Self::Users => "users",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Self::Workflows => "env_workflows",
            Self::Credentials => "env_credentials",
            Self::Tags => "env_tags",
            Self::Users => "env_users",
        }
    }
}

/// After a complete walk: rows this run did not see are gone from the provider.
pub async fn mark_missing(
    db: impl PgExecutor<'_>,
    what: Synced,
    environment_id: Uuid,
    run_id: Uuid,
) -> Result<u64> {
    let table = what.table();
    Ok(sqlx::query(sqlf!(
        "update {table} set deleted_at = now() where environment_id = $1 \
         and seen_by_run is distinct from $2 and deleted_at is null"
    ))
    .bind(environment_id)
    .bind(run_id)
    .execute(db)
    .await?
    .rows_affected())
}

/// One credential's metadata, as listed by the provider or derived from references.
#[derive(Debug, Clone)]
pub struct CredentialRow {
    pub id: String,
    pub name: String,
    pub cred_type: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub async fn upsert_credentials(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    run_id: Uuid,
    source: &str,
    rows: &[CredentialRow],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into env_credentials (environment_id, tenant_id, provider_id, name, type, source, \
                                      provider_created_at, provider_updated_at, seen_by_run) \
         select $1, $2, u.id, u.name, u.type, $3, u.created_at, u.updated_at, $4 \
         from unnest($5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[]) as u(id, name, type, created_at, updated_at) \
         on conflict (environment_id, provider_id) do update set name = excluded.name, type = excluded.type, \
             source = excluded.source, provider_created_at = excluded.provider_created_at, \
             provider_updated_at = excluded.provider_updated_at, seen_by_run = excluded.seen_by_run, \
             deleted_at = null, synced_at = now()",
    )
    .bind(environment_id)
    .bind(tenant_id)
    .bind(source)
    .bind(run_id)
    .bind(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.cred_type.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(())
}

/// On instances that cannot list credentials: the distinct credentials the environment's
/// workflows reference become its credential list (source `derived`).
pub async fn derive_credentials(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    run_id: Uuid,
) -> Result<u64> {
    Ok(sqlx::query(
        "insert into env_credentials (environment_id, tenant_id, provider_id, name, type, source, seen_by_run) \
         select distinct on (coalesce(c.cred_id, c.cred_type || ':' || c.cred_name)) $1, $2, \
                coalesce(c.cred_id, c.cred_type || ':' || c.cred_name), c.cred_name, c.cred_type, 'derived', $3 \
         from env_workflow_credentials c join env_workflows w \
              on w.environment_id = c.environment_id and w.provider_id = c.workflow_id and w.deleted_at is null \
         where c.environment_id = $1 \
         on conflict (environment_id, provider_id) do update set name = excluded.name, type = excluded.type, \
             seen_by_run = excluded.seen_by_run, deleted_at = null, synced_at = now()",
    )
    .bind(environment_id)
    .bind(tenant_id)
    .bind(run_id)
    .execute(db)
    .await?
    .rows_affected())
}

pub async fn upsert_tags(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    run_id: Uuid,
    tags: &[(String, String)],
) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into env_tags (environment_id, tenant_id, provider_id, name, seen_by_run) \
         select $1, $2, u.id, u.name, $3 from unnest($4::text[], $5::text[]) as u(id, name) \
         on conflict (environment_id, provider_id) do update set name = excluded.name, \
             seen_by_run = excluded.seen_by_run, deleted_at = null, synced_at = now()",
    )
    .bind(environment_id)
    .bind(tenant_id)
    .bind(run_id)
    .bind(tags.iter().map(|t| t.0.clone()).collect::<Vec<_>>())
    .bind(tags.iter().map(|t| t.1.clone()).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(())
}

/// A user of the provider instance.
#[derive(Debug, Clone, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct ProviderUserRow {
    pub provider_id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: Option<String>,
    pub is_pending: bool,
}

pub async fn upsert_users(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    run_id: Uuid,
    users: &[ProviderUserRow],
) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into env_users (environment_id, tenant_id, provider_id, email, first_name, last_name, role, is_pending, seen_by_run) \
         select $1, $2, u.*, $3 from unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bool[]) as u \
         on conflict (environment_id, provider_id) do update set email = excluded.email, first_name = excluded.first_name, \
             last_name = excluded.last_name, role = excluded.role, is_pending = excluded.is_pending, \
             seen_by_run = excluded.seen_by_run, deleted_at = null, synced_at = now()",
    )
    .bind(environment_id)
    .bind(tenant_id)
    .bind(run_id)
    .bind(users.iter().map(|u| u.provider_id.clone()).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.email.clone()).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.first_name.clone()).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.last_name.clone()).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.role.clone()).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.is_pending).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(())
}

/// An execution as stored (EXEC-001..004).
#[derive(Debug, Clone, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct ExecutionRow {
    pub environment_id: Uuid,
    pub provider_id: String,
    pub workflow_id: Option<String>,
    pub workflow_name: Option<String>,
    pub status: String,
    pub mode: Option<String>,
    pub finished: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub error_message: Option<String>,
}

/// Upserts a page of executions; returns the highest numeric id in it.
/// Whether any of these executions is already in the catalog (an incremental walk over ids
/// that are not numbers stops there).
pub async fn any_execution_stored(
    db: &mut PgConnection,
    environment_id: Uuid,
    provider_ids: &[&str],
) -> Result<bool> {
    if provider_ids.is_empty() {
        return Ok(false);
    }
    Ok(sqlx::query_scalar(
        "select exists (select 1 from env_executions where environment_id = $1 and provider_id = any ($2))",
    )
    .bind(environment_id)
    .bind(provider_ids)
    .fetch_one(db)
    .await?)
}

/// Up to `limit` of an environment's live workflows a walk (`run_id`) did not see: what
/// [`mark_missing`] would mark deleted.
pub async fn unseen_workflow_ids(
    db: impl PgExecutor<'_>,
    environment_id: Uuid,
    run_id: Uuid,
    limit: i64,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "select provider_id from env_workflows where environment_id = $1 \
           and seen_by_run is distinct from $2 and deleted_at is null order by provider_id limit $3",
    )
    .bind(environment_id)
    .bind(run_id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// The provider ids of an environment's workflows that are not deleted, in id order.
pub async fn live_workflow_ids(
    db: impl PgExecutor<'_>,
    environment_id: Uuid,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "select provider_id from env_workflows where environment_id = $1 and deleted_at is null order by provider_id",
    )
    .bind(environment_id)
    .fetch_all(db)
    .await?)
}

pub async fn upsert_executions(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    environment_id: Uuid,
    rows: &[ExecutionRow],
) -> Result<Option<i64>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let seqs: Vec<Option<i64>> = rows.iter().map(|r| r.provider_id.parse().ok()).collect();
    let written = sqlx::query(
        "insert into env_executions (environment_id, tenant_id, provider_id, seq, workflow_id, status, mode, finished, \
                                     started_at, stopped_at, error_message) \
         select $1, $2, u.* from unnest($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::bool[], \
                                        $9::timestamptz[], $10::timestamptz[], $11::text[]) as u \
         where exists (select from environments where id = $1 for key share) \
         on conflict (environment_id, provider_id) do update set status = excluded.status, finished = excluded.finished, \
             stopped_at = excluded.stopped_at, error_message = excluded.error_message, synced_at = now()",
    )
    .bind(environment_id)
    .bind(tenant_id)
    .bind(rows.iter().map(|r| r.provider_id.clone()).collect::<Vec<_>>())
    .bind(&seqs)
    .bind(rows.iter().map(|r| r.workflow_id.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.mode.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.finished).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.started_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.stopped_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.error_message.clone()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    environment_held(written.rows_affected())?;
    Ok(seqs.into_iter().flatten().max())
}

pub async fn executions_high_water(
    db: impl PgExecutor<'_>,
    environment_id: Uuid,
) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("select executions_high_water from environments where id = $1")
            .bind(environment_id)
            .fetch_optional(db)
            .await?
            .flatten(),
    )
}

pub async fn set_executions_high_water(
    db: impl PgExecutor<'_>,
    environment_id: Uuid,
    high: i64,
) -> Result<()> {
    sqlx::query(
        "update environments set executions_high_water = greatest(coalesce(executions_high_water, 0), $2) where id = $1",
    )
    .bind(environment_id)
    .bind(high)
    .execute(db)
    .await?;
    Ok(())
}

// ---- catalog queries -------------------------------------------------------------------------

/// An opaque keyset cursor: the sort key of the last row of a page.
pub(crate) fn encode_key(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(parts).unwrap_or_default())
}

pub(crate) fn decode_key(cursor: &str, n: usize) -> Result<Vec<String>> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
        .filter(|p| p.len() == n)
        .ok_or_else(|| Error::invalid("cursor", "is not a cursor this API issued"))
}

/// A workflow in the catalog list.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct WorkflowItem {
    pub environment_id: Uuid,
    pub environment_name: String,
    /// The workflow's id in its environment's provider.
    pub id: String,
    pub name: String,
    pub active: bool,
    pub archived: bool,
    pub tags: Vec<String>,
    pub node_count: i32,
    pub content_hash: String,
    pub provider_updated_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub synced_at: DateTime<Utc>,
    /// WF-008, against the workflow's canonical (Git) version: `in_sync`, `local_changes`
    /// (changed in the environment since it last matched Git), `update_available` (Git moved
    /// on, the environment did not), `untracked` (linked to no canonical workflow) or `deleted`
    /// (deleted in the provider). The cell statuses of `domain::canonical`, per workflow.
    pub sync_status: String,
    /// The canonical workflow it is linked to.
    pub canonical_id: Option<String>,
}

/// [`WorkflowItem::sync_status`] over `w` (env_workflows), `m` (workflow_env_map) and `c`
/// (canonical_workflows), the last two left-joined.
const SYNC_STATUS: &str = "case when w.deleted_at is not null then 'deleted' \
     when m.provider_id is null then 'untracked' \
     when w.content_hash = c.content_hash then 'in_sync' \
     when w.content_hash = m.linked_hash then 'update_available' \
     else 'local_changes' end";

#[derive(Debug, Default, Clone)]
pub struct WorkflowFilter {
    pub environment_id: Option<Uuid>,
    /// Words matched against names (substring) and tags.
    pub search: Option<String>,
    pub tag: Option<String>,
    pub active: Option<bool>,
    pub archived: Option<bool>,
    /// Include workflows deleted in their provider.
    pub include_deleted: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowPage {
    pub items: Vec<WorkflowItem>,
    pub next_cursor: Option<String>,
}

/// WF-001/002: search and filter, by name, keyset-paginated.
pub async fn list_workflows(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    filter: &WorkflowFilter,
    cursor: Option<&str>,
    limit: u32,
) -> Result<WorkflowPage> {
    let after = cursor.map(|c| decode_key(c, 3)).transpose()?;
    let after_env = after
        .as_ref()
        .map(|a| a[1].parse::<Uuid>())
        .transpose()
        .map_err(|_| Error::invalid("cursor", "is not a cursor this API issued"))?;
    let pattern = filter.search.as_deref().map(|s| {
        format!(
            "%{}%",
            s.trim()
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let mut rows: Vec<WorkflowItem> = sqlx::query_as(sqlf!(
        "select w.environment_id, e.name as environment_name, w.provider_id as id, w.name, w.active, w.archived, \
                w.tags, w.node_count, w.content_hash, w.provider_updated_at, w.deleted_at, w.synced_at, \
                {SYNC_STATUS} as sync_status, m.canonical_id \
         from env_workflows w join environments e on e.id = w.environment_id \
         left join workflow_env_map m on m.environment_id = w.environment_id and m.provider_id = w.provider_id \
         left join canonical_workflows c on c.tenant_id = m.tenant_id and c.id = m.canonical_id \
         where w.tenant_id = $1 \
           and ($2::uuid is null or w.environment_id = $2) \
           and ($3::text is null or lower(w.name) like $3 or exists (select 1 from unnest(w.tags) t where lower(t) like $3)) \
           and ($4::text is null or $4 = any (w.tags)) \
           and ($5::bool is null or w.active = $5) \
           and ($6::bool is null or w.archived = $6) \
           and ($7 or w.deleted_at is null) \
           and ($8::text is null or (lower(w.name), w.environment_id, w.provider_id) > ($8, $9, $10)) \
         order by lower(w.name), w.environment_id, w.provider_id \
         limit $11",
    ))
    .bind(tenant_id)
    .bind(filter.environment_id)
    .bind(pattern)
    .bind(filter.tag.as_deref())
    .bind(filter.active)
    .bind(filter.archived)
    .bind(filter.include_deleted)
    .bind(after.as_ref().map(|a| a[0].clone()))
    .bind(after_env)
    .bind(after.as_ref().map(|a| a[2].clone()))
    .bind(i64::from(limit) + 1)
    .fetch_all(db)
    .await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last()
            .map(|w| encode_key(&[&w.name.to_lowercase(), &w.environment_id.to_string(), &w.id]))
    } else {
        None
    };
    Ok(WorkflowPage {
        items: rows,
        next_cursor,
    })
}

/// One workflow with its definition.
#[derive(Debug, Clone, FromRow)]
pub struct WorkflowRecord {
    pub environment_id: Uuid,
    pub environment_name: String,
    pub environment_class: String,
    pub id: String,
    pub name: String,
    pub active: bool,
    pub archived: bool,
    pub tags: Vec<String>,
    pub content_hash: String,
    pub definition: Value,
    pub provider_updated_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub synced_at: DateTime<Utc>,
}

pub async fn get_workflow(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    id: &str,
) -> Result<WorkflowRecord> {
    sqlx::query_as(
        "select w.environment_id, e.name as environment_name, e.class as environment_class, w.provider_id as id, \
                w.name, w.active, w.archived, w.tags, w.content_hash, w.definition, w.provider_updated_at, \
                w.deleted_at, w.synced_at \
         from env_workflows w join environments e on e.id = w.environment_id \
         where w.tenant_id = $1 and w.environment_id = $2 and w.provider_id = $3",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("workflow"))
}

/// A credential with its usage and health (CRED-001..005).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct CredentialItem {
    pub environment_id: Uuid,
    pub environment_name: String,
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub cred_type: String,
    /// `provider` (listed by the instance) or `derived` (only known from workflows).
    pub source: String,
    /// Live workflows whose nodes use it.
    pub used_by: i64,
    /// `ok`, `unused` (no workflow uses it), or `deleted` (gone from the provider).
    pub health: String,
    pub synced_at: DateTime<Utc>,
}

pub async fn list_credentials(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Option<Uuid>,
) -> Result<Vec<CredentialItem>> {
    Ok(sqlx::query_as(
        "select c.environment_id, e.name as environment_name, c.provider_id as id, c.name, c.type, c.source, \
                u.used_by, \
                case when c.deleted_at is not null then 'deleted' when u.used_by = 0 then 'unused' else 'ok' end as health, \
                c.synced_at \
         from env_credentials c join environments e on e.id = c.environment_id \
         cross join lateral (select count(distinct r.workflow_id) as used_by from env_workflow_credentials r \
                             join env_workflows w on w.environment_id = r.environment_id and w.provider_id = r.workflow_id \
                                  and w.deleted_at is null \
                             where r.environment_id = c.environment_id and r.cred_type = c.type \
                               and (r.cred_id = c.provider_id or r.cred_name = c.name)) u \
         where c.tenant_id = $1 and ($2::uuid is null or c.environment_id = $2) \
         order by e.name, c.type, c.name",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .fetch_all(db)
    .await?)
}

/// A reference to a credential that the environment does not have (CRED-005).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct MissingCredential {
    pub environment_id: Uuid,
    pub workflow_id: String,
    pub workflow_name: String,
    pub node: String,
    pub cred_type: String,
    pub cred_name: String,
}

pub async fn missing_credentials(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
) -> Result<Vec<MissingCredential>> {
    Ok(sqlx::query_as(
        "select r.environment_id, r.workflow_id, w.name as workflow_name, r.node, r.cred_type, r.cred_name \
         from env_workflow_credentials r \
         join env_workflows w on w.environment_id = r.environment_id and w.provider_id = r.workflow_id and w.deleted_at is null \
         where r.tenant_id = $1 and r.environment_id = $2 and not exists ( \
             select 1 from env_credentials c where c.environment_id = r.environment_id and c.deleted_at is null \
               and c.type = r.cred_type and (c.provider_id = r.cred_id or c.name = r.cred_name)) \
         order by w.name, r.node",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .fetch_all(db)
    .await?)
}

/// The workflows using one credential (CRED-003).
pub async fn credential_usage(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    credential_id: &str,
) -> Result<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "select distinct w.provider_id, w.name, r.node from env_credentials c \
         join env_workflow_credentials r on r.environment_id = c.environment_id and r.cred_type = c.type \
              and (r.cred_id = c.provider_id or r.cred_name = c.name) \
         join env_workflows w on w.environment_id = r.environment_id and w.provider_id = r.workflow_id and w.deleted_at is null \
         where c.tenant_id = $1 and c.environment_id = $2 and c.provider_id = $3 order by w.name, r.node",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .bind(credential_id)
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Default, Clone)]
pub struct ExecutionFilter {
    pub environment_id: Option<Uuid>,
    pub workflow_id: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionPage {
    pub items: Vec<ExecutionRow>,
    pub next_cursor: Option<String>,
}

/// EXEC-001/002: newest first, keyset-paginated.
pub async fn list_executions(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    filter: &ExecutionFilter,
    cursor: Option<&str>,
    limit: u32,
) -> Result<ExecutionPage> {
    let after = cursor.map(|c| decode_key(c, 3)).transpose()?;
    let bad = || Error::invalid("cursor", "is not a cursor this API issued");
    let (after_time, after_env, after_id) = match &after {
        Some(a) => (
            Some(
                DateTime::parse_from_rfc3339(&a[0])
                    .map_err(|_| bad())?
                    .with_timezone(&Utc),
            ),
            Some(a[1].parse::<Uuid>().map_err(|_| bad())?),
            Some(a[2].clone()),
        ),
        None => (None, None, None),
    };
    let mut rows: Vec<ExecutionRow> = sqlx::query_as(
        "select x.environment_id, x.provider_id, x.workflow_id, w.name as workflow_name, x.status, x.mode, x.finished, \
                x.started_at, x.stopped_at, x.error_message \
         from env_executions x \
         left join env_workflows w on w.environment_id = x.environment_id and w.provider_id = x.workflow_id \
         where x.tenant_id = $1 and ($2::uuid is null or x.environment_id = $2) \
           and ($3::text is null or x.workflow_id = $3) and ($4::text is null or x.status = $4) \
           and ($5::timestamptz is null or (coalesce(x.started_at, 'epoch'), x.environment_id, x.provider_id) < ($5, $6, $7)) \
         order by coalesce(x.started_at, 'epoch') desc, x.environment_id desc, x.provider_id desc limit $8",
    )
    .bind(tenant_id)
    .bind(filter.environment_id)
    .bind(filter.workflow_id.as_deref())
    .bind(filter.status.as_deref())
    .bind(after_time)
    .bind(after_env)
    .bind(after_id)
    .bind(i64::from(limit) + 1)
    .fetch_all(db)
    .await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|x| {
            let t = x.started_at.unwrap_or(DateTime::UNIX_EPOCH).to_rfc3339();
            encode_key(&[&t, &x.environment_id.to_string(), &x.provider_id])
        })
    } else {
        None
    };
    Ok(ExecutionPage {
        items: rows,
        next_cursor,
    })
}

pub async fn get_execution(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    id: &str,
) -> Result<ExecutionRow> {
    sqlx::query_as(
        "select x.environment_id, x.provider_id, x.workflow_id, w.name as workflow_name, x.status, x.mode, x.finished, \
                x.started_at, x.stopped_at, x.error_message \
         from env_executions x \
         left join env_workflows w on w.environment_id = x.environment_id and w.provider_id = x.workflow_id \
         where x.tenant_id = $1 and x.environment_id = $2 and x.provider_id = $3",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("execution"))
}

/// A workflow deleted through WorkflowOps: marked deleted, or with `purge` removed from the
/// catalog altogether (hard delete).
pub async fn mark_deleted(
    db: impl PgExecutor<'_>,
    environment_id: Uuid,
    id: &str,
    purge: bool,
) -> Result<()> {
    let sql = if purge {
        "delete from env_workflows where environment_id = $1 and provider_id = $2"
    } else {
        "update env_workflows set deleted_at = now() where environment_id = $1 and provider_id = $2"
    };
    sqlx::query(sql)
        .bind(environment_id)
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// The stored definitions of an environment's live workflows (all, or these ids), by name.
pub async fn definitions(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    ids: Option<&[String]>,
) -> Result<Vec<Value>> {
    Ok(sqlx::query_scalar(
        "select definition from env_workflows where tenant_id = $1 and environment_id = $2 and deleted_at is null \
         and ($3::text[] is null or provider_id = any ($3)) order by lower(name), provider_id",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .bind(ids)
    .fetch_all(db)
    .await?)
}

/// One credential (by type and name) across the tenant's environments (CRED-006).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CredentialMatrixRow {
    #[serde(rename = "type")]
    pub cred_type: String,
    pub name: String,
    /// Per environment id: the credential there (id and health), absent where it is missing.
    pub environments: std::collections::BTreeMap<Uuid, CredentialCell>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CredentialCell {
    pub id: String,
    pub health: String,
}

/// Credentials by type and name × environments.
pub async fn credential_matrix(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
) -> Result<Vec<CredentialMatrixRow>> {
    let items = list_credentials(db, tenant_id, None).await?;
    let mut rows: std::collections::BTreeMap<(String, String), CredentialMatrixRow> =
        std::collections::BTreeMap::new();
    for c in items.into_iter().filter(|c| c.health != "deleted") {
        rows.entry((c.cred_type.clone(), c.name.clone()))
            .or_insert_with(|| CredentialMatrixRow {
                cred_type: c.cred_type.clone(),
                name: c.name.clone(),
                environments: std::collections::BTreeMap::new(),
            })
            .environments
            .insert(
                c.environment_id,
                CredentialCell {
                    id: c.id,
                    health: c.health,
                },
            );
    }
    Ok(rows.into_values().collect())
}

/// The names of these workflows of an environment (live ones), by id.
pub async fn names(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    ids: &[String],
) -> Result<std::collections::HashMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select provider_id, name from env_workflows where tenant_id = $1 and environment_id = $2 \
         and provider_id = any ($3) and deleted_at is null",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

/// An environment's synced connections (credentials) by provider id: what a Make module's
/// designer did not cache about its connection (type, label) is read from them
/// ([`workflow::credential_refs_in`]).
pub async fn known_connections(
    db: impl PgExecutor<'_>,
    environment_id: Uuid,
) -> Result<std::collections::HashMap<String, crate::make::KnownConnection>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select provider_id, type, name from env_credentials \
         where environment_id = $1 and deleted_at is null",
    )
    .bind(environment_id)
    .fetch_all(db)
    .await?;
    Ok(crate::make::known_by_id(rows))
}
