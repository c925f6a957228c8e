//! Canonical workflows (CAN-001..019): the tenant's Git repository is the source of truth for
//! what each workflow should be; `workflow_env_map` links a canonical workflow to its copy in
//! each environment.
//!
//! A cell of the matrix (canonical workflow × environment) has one status, computed from three
//! content hashes — the canonical (Git) version's `C`, the environment copy's `E`, and `L`, the
//! canonical hash the copy last matched (recorded at linking, deployment and reconciliation):
//!
//! | status        | when                                                   |
//! |---------------|--------------------------------------------------------|
//! | `linked`      | `E = C`: the environment runs the canonical version     |
//! | `out_of_date` | `E = L ≠ C`: Git moved on, the environment did not      |
//! | `drift`       | `E ≠ L` and `E ≠ C`: the environment was changed itself |
//! | `missing`     | no copy in the environment (never deployed, or deleted) |
//!
//! Workflows of an environment linked to no canonical workflow are `untracked` (CAN-007).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::catalog::{decode_key, encode_key};
use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::git_config::GitAccess;
use crate::{secrets, workflow};

const SECRET_PURPOSE: &str = "canonical.git";
const WEBHOOK_PURPOSE: &str = "canonical.webhook";

// ---- the canonical repository ----------------------------------------------------------------

/// The tenant's canonical repository (its secrets never returned).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct CanonicalRepo {
    pub url: String,
    pub branch: String,
    /// The folder of the canonical files inside the repository.
    pub path: String,
    /// `none`, `token` or `ssh_key`.
    pub auth_kind: String,
    pub username: Option<String>,
    /// Whether a push-webhook secret is set (WF-020).
    pub webhook_configured: bool,
    /// GitHub's REST API, for onboarding pull requests.
    pub github_api_url: Option<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_commit: Option<String>,
    pub updated_at: DateTime<Utc>,
}

const REPO_COLUMNS: &str = "url, branch, path, auth_kind, username, webhook_secret_id is not null as webhook_configured, \
     github_api_url, last_sync_at, last_commit, updated_at";

pub struct NewCanonicalRepo<'a> {
    pub url: &'a str,
    pub branch: &'a str,
    pub path: &'a str,
    pub auth_kind: &'a str,
    pub username: Option<&'a str>,
    pub secret: Option<&'a SecretString>,
    pub webhook_secret: Option<&'a SecretString>,
    pub github_api_url: Option<&'a str>,
}

/// Creates or replaces the tenant's canonical repository (old secrets are deleted). Canonical
/// workflows already known stay; the next Git sync reconciles them with the new repository.
pub async fn put_repo(
    tx: &mut PgConnection,
    keyring: &Keyring,
    tenant_id: Uuid,
    new: &NewCanonicalRepo<'_>,
) -> Result<CanonicalRepo> {
    let old: Option<(Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
        "select secret_id, webhook_secret_id from canonical_repos where tenant_id = $1 for update",
    )
    .bind(tenant_id)
    .fetch_optional(&mut *tx)
    .await?;
    let secret = match new.secret {
        Some(s) => Some(secrets::put(&mut *tx, keyring, Some(tenant_id), SECRET_PURPOSE, s).await?),
        None => None,
    };
    let webhook = match new.webhook_secret {
        Some(s) => {
            Some(secrets::put(&mut *tx, keyring, Some(tenant_id), WEBHOOK_PURPOSE, s).await?)
        }
        None => None,
    };
    for id in old.into_iter().flat_map(|(a, b)| [a, b]).flatten() {
        secrets::delete(&mut *tx, Some(tenant_id), id).await?;
    }
    // A different repository: every file is new to it.
    sqlx::query("update canonical_workflows set git_blob = null where tenant_id = $1")
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    Ok(sqlx::query_as(sqlf!(
        "insert into canonical_repos (tenant_id, url, branch, path, auth_kind, username, secret_id, webhook_secret_id, github_api_url) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         on conflict (tenant_id) do update set url = excluded.url, branch = excluded.branch, path = excluded.path, \
             auth_kind = excluded.auth_kind, username = excluded.username, secret_id = excluded.secret_id, \
             webhook_secret_id = excluded.webhook_secret_id, github_api_url = excluded.github_api_url, \
             last_commit = null, updated_at = now() \
         returning {REPO_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(new.url.trim())
    .bind(new.branch)
    .bind(new.path)
    .bind(new.auth_kind)
    .bind(new.username)
    .bind(secret)
    .bind(webhook)
    .bind(new.github_api_url)
    .fetch_one(&mut *tx)
    .await?)
}

pub async fn get_repo(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<CanonicalRepo> {
    sqlx::query_as(sqlf!(
        "select {REPO_COLUMNS} from canonical_repos where tenant_id = $1"
    ))
    .bind(tenant_id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("canonical repository"))
}

/// What the Git adapter needs to reach the canonical repository, the secret unsealed.
pub async fn repo_access(
    db: &mut PgConnection,
    keyring: &Keyring,
    tenant_id: Uuid,
) -> Result<GitAccess> {
    type Row = (String, String, String, String, Option<String>, Option<Uuid>);
    let row: Option<Row> = sqlx::query_as(
        "select url, branch, path, auth_kind, username, secret_id from canonical_repos where tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(&mut *db)
    .await?;
    let (url, branch, path, auth_kind, username, secret_id) =
        row.ok_or(Error::not_found("canonical repository"))?;
    let secret = match secret_id {
        Some(id) => Some(secrets::get(&mut *db, keyring, Some(tenant_id), id).await?),
        None => None,
    };
    Ok(GitAccess {
        url,
        branch,
        path,
        auth_kind,
        username,
        secret,
    })
}

/// The secret the tenant's push webhooks are signed with, if set.
pub async fn webhook_secret(
    db: &mut PgConnection,
    keyring: &Keyring,
    tenant_id: Uuid,
) -> Result<Option<SecretString>> {
    let id: Option<Option<Uuid>> =
        sqlx::query_scalar("select webhook_secret_id from canonical_repos where tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&mut *db)
            .await?;
    match id.flatten() {
        Some(id) => Ok(Some(
            secrets::get(&mut *db, keyring, Some(tenant_id), id).await?,
        )),
        None => Ok(None),
    }
}

/// How often a rejected webhook delivery is audited per tenant: the endpoint answers anyone, so
/// a flood of forged deliveries must not become a flood of audit rows.
pub const WEBHOOK_REJECTION_AUDIT_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Counts a rejected delivery to the tenant's push webhook. Returns `Some(n)` when this one is
/// to be audited, `n` being how many were rejected without an audit row since the last one;
/// `None` when one was audited less than [`WEBHOOK_REJECTION_AUDIT_EVERY`] ago (this one is
/// counted for the next). Call it in the transaction that writes the audit row.
pub async fn webhook_rejected(tx: &mut PgConnection, tenant_id: Uuid) -> Result<Option<i32>> {
    sqlx::query(
        "insert into webhook_rejections (tenant_id, last_audited_at) values ($1, '-infinity') \
         on conflict (tenant_id) do nothing",
    )
    .bind(tenant_id)
    .execute(&mut *tx)
    .await?;
    let (recent, suppressed): (bool, i32) = sqlx::query_as(
        "select last_audited_at > now() - $2, suppressed from webhook_rejections \
         where tenant_id = $1 for update",
    )
    .bind(tenant_id)
    .bind(WEBHOOK_REJECTION_AUDIT_EVERY)
    .fetch_one(&mut *tx)
    .await?;
    if recent {
        sqlx::query(
            "update webhook_rejections set suppressed = suppressed + 1 where tenant_id = $1",
        )
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
        return Ok(None);
    }
    sqlx::query(
        "update webhook_rejections set last_audited_at = now(), suppressed = 0 where tenant_id = $1",
    )
    .bind(tenant_id)
    .execute(&mut *tx)
    .await?;
    Ok(Some(suppressed))
}

pub async fn record_git_sync(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    commit: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "update canonical_repos set last_sync_at = now(), last_commit = coalesce($2, last_commit) where tenant_id = $1",
    )
    .bind(tenant_id)
    .bind(commit)
    .execute(db)
    .await?;
    Ok(())
}

// ---- canonical workflows ---------------------------------------------------------------------

/// A canonical id from a workflow's name: a readable slug and a random suffix
/// (`order-sync-3fa2c1`), valid as a file name.
pub fn new_canonical_id(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 48 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let suffix = &Uuid::new_v4().simple().to_string()[..6];
    if slug.is_empty() {
        format!("workflow-{suffix}")
    } else {
        format!("{slug}-{suffix}")
    }
}

/// Whether `id` can be a canonical id (a file name without surprises).
pub fn valid_canonical_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !id.starts_with('.')
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct CanonicalWorkflow {
    pub id: String,
    pub provider: String,
    pub name: String,
    pub content_hash: String,
    pub git_commit: Option<String>,
    /// `committed` or `pending` (on an onboarding branch not merged yet).
    pub git_state: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

const WORKFLOW_COLUMNS: &str =
    "id, provider, name, content_hash, git_commit, git_state, created_at, updated_at, deleted_at";

pub async fn get(db: impl PgExecutor<'_>, tenant_id: Uuid, id: &str) -> Result<CanonicalWorkflow> {
    sqlx::query_as(sqlf!(
        "select {WORKFLOW_COLUMNS} from canonical_workflows where tenant_id = $1 and id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("canonical workflow"))
}

/// The canonical version's definition (its storage form, as in Git).
pub async fn definition(db: impl PgExecutor<'_>, tenant_id: Uuid, id: &str) -> Result<Value> {
    sqlx::query_scalar(
        "select definition from canonical_workflows where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("canonical workflow"))
}

/// The Git blob id of every committed canonical file: a Git sync parses only files whose blob
/// changed.
pub async fn git_blobs(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
) -> Result<HashMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select id, git_blob from canonical_workflows \
         where tenant_id = $1 and git_blob is not null and deleted_at is null and git_state = 'committed'",
    )
    .bind(tenant_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A workflow file read from the canonical repository.
#[derive(Debug, Clone)]
pub struct GitWorkflow {
    pub id: String,
    pub provider: String,
    pub name: String,
    pub definition: Value,
    pub blob: String,
}

/// CAN-003: the canonical state takes these files' content (new ones are created, a removed
/// one comes back). Returns how many rows changed.
pub async fn upsert_from_git(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    commit: &str,
    items: &[GitWorkflow],
) -> Result<u64> {
    if items.is_empty() {
        return Ok(0);
    }
    let hashes: Vec<String> = items
        .iter()
        .map(|w| workflow::content_hash(&w.definition))
        .collect();
    let done = sqlx::query(
        "insert into canonical_workflows (tenant_id, id, provider, name, content_hash, git_blob, git_commit, definition) \
         select $1, u.id, u.provider, u.name, u.hash, u.blob, $2, u.definition \
         from unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[]) \
              as u(id, provider, name, hash, blob, definition) \
         on conflict (tenant_id, id) do update set provider = excluded.provider, name = excluded.name, \
             content_hash = excluded.content_hash, git_blob = excluded.git_blob, definition = excluded.definition, \
             git_commit = excluded.git_commit, git_state = 'committed', deleted_at = null, \
             updated_at = case when canonical_workflows.content_hash is distinct from excluded.content_hash \
                               or canonical_workflows.deleted_at is not null then now() \
                               else canonical_workflows.updated_at end",
    )
    .bind(tenant_id)
    .bind(commit)
    .bind(items.iter().map(|w| w.id.clone()).collect::<Vec<_>>())
    .bind(items.iter().map(|w| w.provider.clone()).collect::<Vec<_>>())
    .bind(items.iter().map(|w| w.name.clone()).collect::<Vec<_>>())
    .bind(&hashes)
    .bind(items.iter().map(|w| w.blob.clone()).collect::<Vec<_>>())
    .bind(items.iter().map(|w| w.definition.clone()).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected())
}

/// Committed canonical workflows whose file is no longer in Git are marked deleted (pending
/// ones, on an unmerged onboarding branch, are not). Returns how many.
pub async fn mark_removed_from_git(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    present: &[String],
) -> Result<u64> {
    Ok(sqlx::query(
        "update canonical_workflows set deleted_at = now(), updated_at = now() \
         where tenant_id = $1 and deleted_at is null and git_state = 'committed' and id <> all ($2)",
    )
    .bind(tenant_id)
    .bind(present)
    .execute(db)
    .await?
    .rows_affected())
}

/// A workflow being onboarded: its environment copy becomes a canonical workflow.
#[derive(Debug, Clone)]
pub struct Onboarded {
    pub canonical_id: String,
    pub environment_id: Uuid,
    pub provider_id: String,
    pub provider: String,
    pub name: String,
    /// The storage form written to Git.
    pub definition: Value,
}

/// CAN-009/010: records onboarded workflows as canonical (state `committed` at `commit`, or
/// `pending` for a pull request) and links each to its environment copy. Idempotent: onboarding
/// the same ids again changes nothing.
pub async fn record_onboarded(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    by: Option<Uuid>,
    commit: Option<&str>,
    items: &[Onboarded],
) -> Result<()> {
    for item in items {
        let hash = workflow::content_hash(&item.definition);
        sqlx::query(
            "insert into canonical_workflows (tenant_id, id, provider, name, content_hash, git_commit, git_state, definition, created_by) \
             values ($1, $2, $3, $4, $5, $6, case when $6::text is null then 'pending' else 'committed' end, $7, $8) \
             on conflict (tenant_id, id) do update set git_commit = coalesce(excluded.git_commit, canonical_workflows.git_commit), \
                 git_state = case when canonical_workflows.git_state = 'committed' then 'committed' else excluded.git_state end",
        )
        .bind(tenant_id)
        .bind(&item.canonical_id)
        .bind(&item.provider)
        .bind(&item.name)
        .bind(&hash)
        .bind(commit)
        .bind(&item.definition)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        link(
            &mut *tx,
            tenant_id,
            &item.canonical_id,
            item.environment_id,
            &item.provider_id,
            &hash,
            by,
        )
        .await?;
    }
    Ok(())
}

/// Onboarded copies of canonical workflows that already exist (or that an earlier item of the
/// same onboarding creates): each is only linked, at its own hash, so a copy that differs from
/// the canonical version is `out_of_date` (the next promotion brings it up to date), never a
/// second canonical workflow, and the canonical content and Git state stay as they were.
pub async fn record_onboarded_links(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    by: Option<Uuid>,
    items: &[Onboarded],
) -> Result<()> {
    for item in items {
        let hash = workflow::content_hash(&item.definition);
        link(
            &mut *tx,
            tenant_id,
            &item.canonical_id,
            item.environment_id,
            &item.provider_id,
            &hash,
            by,
        )
        .await?;
    }
    Ok(())
}

/// A canonical workflow as onboarding matches environment copies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    pub provider: String,
    pub name: String,
    pub content_hash: String,
    /// Environments where it already has a copy linked.
    pub linked: Vec<Uuid>,
}

/// How an onboarded workflow was found to be a copy of a canonical workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// The same content (as reconciliation links copies, CAN-005).
    Content,
    /// The only one of the same name (case-insensitive), as promotions find counterparts.
    Name,
}

/// The tenant's canonical workflows (not deleted) with where each is linked: what onboarding
/// matches workflows to.
pub async fn known(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<Vec<Known>> {
    let rows: Vec<(String, String, String, String, Vec<Uuid>)> = sqlx::query_as(
        "select c.id, c.provider, c.name, c.content_hash, \
                coalesce(array_agg(m.environment_id) filter (where m.environment_id is not null), '{}') \
         from canonical_workflows c \
         left join workflow_env_map m on m.tenant_id = c.tenant_id and m.canonical_id = c.id \
         where c.tenant_id = $1 and c.deleted_at is null \
         group by c.id, c.provider, c.name, c.content_hash order by c.id",
    )
    .bind(tenant_id)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, provider, name, content_hash, linked)| Known {
            id,
            provider,
            name,
            content_hash,
            linked,
        })
        .collect())
}

/// CAN-010: the canonical workflow an untracked workflow of `environment_id` (its provider,
/// name and content hash) is a copy of, if any: among those of the provider not yet linked in
/// that environment, the only one of the same content, else the only one of the same name
/// (case-insensitive). Several of either is no answer: two distinct workflows may share a
/// name, and a guess would link one to the other's canonical version.
pub fn copy_of<'a>(
    known: &'a [Known],
    environment_id: Uuid,
    provider: &str,
    name: &str,
    content_hash: &str,
) -> Option<(&'a Known, MatchedBy)> {
    let free: Vec<&Known> = known
        .iter()
        .filter(|k| k.provider == provider && !k.linked.contains(&environment_id))
        .collect();
    let only = |hits: Vec<&'a Known>| match hits.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    only(
        free.iter()
            .copied()
            .filter(|k| k.content_hash == content_hash)
            .collect(),
    )
    .map(|k| (k, MatchedBy::Content))
    .or_else(|| {
        only(
            free.iter()
                .copied()
                .filter(|k| k.name.to_lowercase() == name.to_lowercase())
                .collect(),
        )
        .map(|k| (k, MatchedBy::Name))
    })
}

/// Links a canonical workflow to its copy in an environment, recording `linked_hash` as the
/// canonical hash the copy matches (a copy already linked elsewhere is moved).
pub async fn link(
    db: &mut PgConnection,
    tenant_id: Uuid,
    canonical_id: &str,
    environment_id: Uuid,
    provider_id: &str,
    linked_hash: &str,
    by: Option<Uuid>,
) -> Result<()> {
    sqlx::query(
        "delete from workflow_env_map where tenant_id = $1 and environment_id = $3 \
         and (canonical_id = $2) <> (provider_id = $4)",
    )
    .bind(tenant_id)
    .bind(canonical_id)
    .bind(environment_id)
    .bind(provider_id)
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "insert into workflow_env_map (tenant_id, canonical_id, environment_id, provider_id, linked_hash, linked_by) \
         values ($1, $2, $3, $4, $5, $6) \
         on conflict (environment_id, provider_id) do update set linked_hash = excluded.linked_hash, \
             linked_by = excluded.linked_by, updated_at = now()",
    )
    .bind(tenant_id)
    .bind(canonical_id)
    .bind(environment_id)
    .bind(provider_id)
    .bind(linked_hash)
    .bind(by)
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// Removes the link of a canonical workflow in an environment.
pub async fn unlink(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    canonical_id: &str,
    environment_id: Uuid,
) -> Result<()> {
    let done = sqlx::query(
        "delete from workflow_env_map where tenant_id = $1 and canonical_id = $2 and environment_id = $3",
    )
    .bind(tenant_id)
    .bind(canonical_id)
    .bind(environment_id)
    .execute(db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("link"));
    }
    Ok(())
}

/// What a reconciliation of one environment found (CAN-005).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Reconciled {
    /// Untracked workflows linked now because their content equals a canonical workflow's.
    pub linked_now: i64,
    pub linked: i64,
    pub out_of_date: i64,
    pub drift: i64,
    pub missing: i64,
    pub untracked: i64,
}

/// CAN-004/005: reconciles an environment with the canonical state after either side moved.
/// Copies equal to their canonical version record that hash as the one they match; an untracked
/// workflow whose content equals exactly one canonical workflow not yet present in the
/// environment is linked to it. Returns the environment's status counts.
pub async fn reconcile(
    db: &mut PgConnection,
    tenant_id: Uuid,
    environment_id: Uuid,
) -> Result<Reconciled> {
    sqlx::query(
        "update workflow_env_map m set linked_hash = c.content_hash, updated_at = now() \
         from env_workflows w, canonical_workflows c \
         where m.tenant_id = $1 and m.environment_id = $2 \
           and w.environment_id = m.environment_id and w.provider_id = m.provider_id and w.deleted_at is null \
           and c.tenant_id = m.tenant_id and c.id = m.canonical_id \
           and w.content_hash = c.content_hash and m.linked_hash <> c.content_hash",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .execute(&mut *db)
    .await?;
    let linked_now = sqlx::query(
        "with env as (select provider from environments where id = $2 and tenant_id = $1), \
         candidates as ( \
             select w.provider_id, c.id as canonical_id, c.content_hash, \
                    count(*) over (partition by w.provider_id) as per_workflow, \
                    count(*) over (partition by c.id) as per_canonical \
             from env_workflows w \
             join env on true \
             join canonical_workflows c on c.tenant_id = $1 and c.provider = env.provider \
                  and c.content_hash = w.content_hash and c.deleted_at is null \
             where w.environment_id = $2 and w.deleted_at is null \
               and not exists (select 1 from workflow_env_map m where m.environment_id = $2 and m.provider_id = w.provider_id) \
               and not exists (select 1 from workflow_env_map m where m.environment_id = $2 and m.tenant_id = $1 and m.canonical_id = c.id)) \
         insert into workflow_env_map (tenant_id, canonical_id, environment_id, provider_id, linked_hash) \
         select $1, canonical_id, $2, provider_id, content_hash from candidates \
         where per_workflow = 1 and per_canonical = 1 \
         on conflict do nothing",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .execute(&mut *db)
    .await?
    .rows_affected();
    let mut counts = status_counts(&mut *db, tenant_id, environment_id).await?;
    counts.linked_now = i64::try_from(linked_now).unwrap_or(i64::MAX);
    Ok(counts)
}

/// An environment's cell statuses, counted.
pub async fn status_counts(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
) -> Result<Reconciled> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlf!(
        "select status, count(*) from ( \
             select {CELL_STATUS} as status \
             from canonical_workflows c \
             join environments e on e.id = $2 and e.tenant_id = $1 and e.provider = c.provider \
             left join workflow_env_map m on m.tenant_id = c.tenant_id and m.canonical_id = c.id and m.environment_id = e.id \
             left join env_workflows w on w.environment_id = m.environment_id and w.provider_id = m.provider_id \
             where c.tenant_id = $1 and c.deleted_at is null \
             union all \
             select 'untracked' from env_workflows w \
             where w.environment_id = $2 and w.tenant_id = $1 and w.deleted_at is null \
               and not exists (select 1 from workflow_env_map m where m.environment_id = w.environment_id and m.provider_id = w.provider_id) \
         ) s group by status"
    ))
    .bind(tenant_id)
    .bind(environment_id)
    .fetch_all(db)
    .await?;
    let mut out = Reconciled::default();
    for (status, n) in rows {
        match status.as_str() {
            "linked" => out.linked = n,
            "out_of_date" => out.out_of_date = n,
            "drift" => out.drift = n,
            "missing" => out.missing = n,
            _ => out.untracked = n,
        }
    }
    Ok(out)
}

/// The SQL of a cell's status over `c` (canonical), `m` (map, may be null) and `w` (the
/// environment copy, may be null).
const CELL_STATUS: &str = "case when w.provider_id is null or w.deleted_at is not null then 'missing' \
     when w.content_hash = c.content_hash then 'linked' \
     when w.content_hash = m.linked_hash then 'out_of_date' \
     else 'drift' end";

// ---- untracked workflows ---------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct UntrackedWorkflow {
    pub environment_id: Uuid,
    pub environment_name: String,
    /// The workflow's id in the environment.
    pub id: String,
    pub name: String,
    pub active: bool,
    pub content_hash: String,
    pub synced_at: DateTime<Utc>,
    /// A canonical workflow of the same name (case-insensitive), which it may be a copy of.
    pub same_name_canonical_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UntrackedPage {
    pub items: Vec<UntrackedWorkflow>,
    pub next_cursor: Option<String>,
}

/// CAN-007/008: workflows linked to no canonical workflow, by environment and name.
pub async fn untracked(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Option<Uuid>,
    cursor: Option<&str>,
    limit: u32,
) -> Result<UntrackedPage> {
    let after = cursor.map(|c| decode_key(c, 3)).transpose()?;
    let after_env = after
        .as_ref()
        .map(|a| a[1].parse::<Uuid>())
        .transpose()
        .map_err(|_| Error::invalid("cursor", "is not a cursor this API issued"))?;
    let mut rows: Vec<UntrackedWorkflow> = sqlx::query_as(
        "select w.environment_id, e.name as environment_name, w.provider_id as id, w.name, w.active, \
                w.content_hash, w.synced_at, \
                (select c.id from canonical_workflows c where c.tenant_id = w.tenant_id and c.provider = e.provider \
                   and lower(c.name) = lower(w.name) and c.deleted_at is null order by c.id limit 1) as same_name_canonical_id \
         from env_workflows w join environments e on e.id = w.environment_id \
         where w.tenant_id = $1 and w.deleted_at is null and ($2::uuid is null or w.environment_id = $2) \
           and not exists (select 1 from workflow_env_map m where m.environment_id = w.environment_id and m.provider_id = w.provider_id) \
           and ($3::text is null or (lower(w.name), w.environment_id, w.provider_id) > ($3, $4, $5)) \
         order by lower(w.name), w.environment_id, w.provider_id limit $6",
    )
    .bind(tenant_id)
    .bind(environment_id)
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
    Ok(UntrackedPage {
        items: rows,
        next_cursor,
    })
}

// ---- the matrix ------------------------------------------------------------------------------

/// An environment column of the matrix.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct MatrixColumn {
    pub environment_id: Uuid,
    pub name: String,
    pub class: String,
    pub provider: String,
    /// Workflows of the environment linked to nothing.
    pub untracked: i64,
}

/// Something a cell lets you do, and the request that does it (CAN-015).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CellAction {
    pub action: &'static str,
    pub method: &'static str,
    pub href: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MatrixCell {
    pub environment_id: Uuid,
    /// `linked`, `out_of_date`, `drift` or `missing` (see the module docs).
    pub status: String,
    /// The workflow's id in the environment, when it has a copy.
    pub workflow_id: Option<String>,
    pub content_hash: Option<String>,
    pub actions: Vec<CellAction>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MatrixRow {
    pub canonical_id: String,
    pub name: String,
    pub provider: String,
    pub content_hash: String,
    pub git_state: String,
    /// One per column, in the columns' order; none for an environment of another provider.
    pub cells: Vec<MatrixCell>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Matrix {
    pub environments: Vec<MatrixColumn>,
    pub rows: Vec<MatrixRow>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct MatrixFilter {
    pub environment_ids: Option<Vec<Uuid>>,
    pub search: Option<String>,
    /// Only rows with at least one cell of this status.
    pub status: Option<String>,
}

fn cell_actions(
    status: &str,
    canonical_id: &str,
    environment_id: Uuid,
    workflow_id: Option<&str>,
) -> Vec<CellAction> {
    let mut out = Vec::new();
    if let Some(wid) = workflow_id {
        out.push(CellAction {
            action: "view",
            method: "GET",
            href: format!("/api/v1/environments/{environment_id}/workflows/{wid}"),
        });
    }
    if matches!(status, "drift" | "out_of_date") {
        out.push(CellAction {
            action: "diff",
            method: "GET",
            href: format!(
                "/api/v1/canonical/workflows/{canonical_id}/diff?environment_id={environment_id}"
            ),
        });
    }
    out.push(CellAction {
        action: "sync",
        method: "POST",
        href: format!("/api/v1/environments/{environment_id}/sync"),
    });
    out
}

/// CAN-012..015: canonical workflows × environments, a page of rows ordered by name.
pub async fn matrix(
    db: &mut PgConnection,
    tenant_id: Uuid,
    filter: &MatrixFilter,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Matrix> {
    let environments: Vec<MatrixColumn> = sqlx::query_as(
        "select e.id as environment_id, e.name, e.class, e.provider, \
                (select count(*) from env_workflows w where w.environment_id = e.id and w.deleted_at is null \
                   and not exists (select 1 from workflow_env_map m where m.environment_id = w.environment_id and m.provider_id = w.provider_id)) as untracked \
         from environments e where e.tenant_id = $1 and ($2::uuid[] is null or e.id = any ($2)) \
         order by case e.class when 'dev' then 0 when 'staging' then 1 else 2 end, lower(e.name), e.id",
    )
    .bind(tenant_id)
    .bind(filter.environment_ids.as_deref())
    .fetch_all(&mut *db)
    .await?;
    let after = cursor.map(|c| decode_key(c, 2)).transpose()?;
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
    let env_ids: Vec<Uuid> = environments.iter().map(|e| e.environment_id).collect();
    type Head = (String, String, String, String, String);
    let heads: Vec<Head> = sqlx::query_as(sqlf!(
        "select c.id, c.name, c.provider, c.content_hash, c.git_state from canonical_workflows c \
         where c.tenant_id = $1 and c.deleted_at is null \
           and ($2::text is null or lower(c.name) like $2 or lower(c.id) like $2) \
           and ($3::text is null or (lower(c.name), c.id) > ($3, $4)) \
           and ($5::text is null or exists ( \
                select 1 from environments e \
                left join workflow_env_map m on m.tenant_id = c.tenant_id and m.canonical_id = c.id and m.environment_id = e.id \
                left join env_workflows w on w.environment_id = m.environment_id and w.provider_id = m.provider_id \
                where e.id = any ($6) and e.provider = c.provider and {CELL_STATUS} = $5)) \
         order by lower(c.name), c.id limit $7"
    ))
    .bind(tenant_id)
    .bind(pattern)
    .bind(after.as_ref().map(|a| a[0].clone()))
    .bind(after.as_ref().map(|a| a[1].clone()))
    .bind(filter.status.as_deref())
    .bind(&env_ids)
    .bind(i64::from(limit) + 1)
    .fetch_all(&mut *db)
    .await?;
    let mut heads = heads;
    let next_cursor = if heads.len() > limit as usize {
        heads.truncate(limit as usize);
        heads
            .last()
            .map(|h| encode_key(&[&h.1.to_lowercase(), &h.0]))
    } else {
        None
    };
    let ids: Vec<String> = heads.iter().map(|h| h.0.clone()).collect();
    type CellRow = (String, Uuid, String, Option<String>, Option<String>);
    let cells: Vec<CellRow> = sqlx::query_as(sqlf!(
        "select c.id, e.id, {CELL_STATUS}, case when w.deleted_at is null then w.provider_id end, \
                case when w.deleted_at is null then w.content_hash end \
         from canonical_workflows c \
         join environments e on e.id = any ($3) and e.provider = c.provider \
         left join workflow_env_map m on m.tenant_id = c.tenant_id and m.canonical_id = c.id and m.environment_id = e.id \
         left join env_workflows w on w.environment_id = m.environment_id and w.provider_id = m.provider_id \
         where c.tenant_id = $1 and c.id = any ($2)"
    ))
    .bind(tenant_id)
    .bind(&ids)
    .bind(&env_ids)
    .fetch_all(&mut *db)
    .await?;
    type Cell = (String, Option<String>, Option<String>);
    let mut by_key: HashMap<(String, Uuid), Cell> = cells
        .into_iter()
        .map(|(c, e, s, w, h)| ((c, e), (s, w, h)))
        .collect();
    let rows = heads
        .into_iter()
        .map(|(id, name, provider, content_hash, git_state)| {
            let cells = environments
                .iter()
                .filter_map(|col| {
                    let (status, workflow_id, hash) =
                        by_key.remove(&(id.clone(), col.environment_id))?;
                    Some(MatrixCell {
                        environment_id: col.environment_id,
                        actions: cell_actions(
                            &status,
                            &id,
                            col.environment_id,
                            workflow_id.as_deref(),
                        ),
                        status,
                        workflow_id,
                        content_hash: hash,
                    })
                })
                .collect();
            MatrixRow {
                canonical_id: id,
                name,
                provider,
                content_hash,
                git_state,
                cells,
            }
        })
        .collect();
    Ok(Matrix {
        environments,
        rows,
        next_cursor,
    })
}

/// Where a canonical workflow is, per environment.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Mapping {
    pub environment_id: Uuid,
    pub environment_name: String,
    pub workflow_id: String,
    pub linked_hash: String,
    pub linked_at: DateTime<Utc>,
    pub status: String,
}

pub async fn mappings(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    canonical_id: &str,
) -> Result<Vec<Mapping>> {
    Ok(sqlx::query_as(sqlf!(
        "select m.environment_id, e.name as environment_name, m.provider_id as workflow_id, m.linked_hash, m.linked_at, \
                {CELL_STATUS} as status \
         from workflow_env_map m join canonical_workflows c on c.tenant_id = m.tenant_id and c.id = m.canonical_id \
         join environments e on e.id = m.environment_id \
         left join env_workflows w on w.environment_id = m.environment_id and w.provider_id = m.provider_id \
         where m.tenant_id = $1 and m.canonical_id = $2 order by lower(e.name)"
    ))
    .bind(tenant_id)
    .bind(canonical_id)
    .fetch_all(db)
    .await?)
}

/// CAN-019: is onboarding complete? Every environment's workflows tracked, every canonical
/// workflow committed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Completion {
    pub complete: bool,
    pub repository_configured: bool,
    pub canonical_workflows: i64,
    /// Canonical workflows on an onboarding branch whose pull request is not merged yet.
    pub pending: i64,
    pub untracked: i64,
    /// Open onboarding pull requests.
    pub open_pull_requests: Vec<String>,
    /// What still has to happen, in words.
    pub remaining: Vec<String>,
}

pub async fn completion(db: &mut PgConnection, tenant_id: Uuid) -> Result<Completion> {
    let repository_configured: bool =
        sqlx::query_scalar("select exists (select 1 from canonical_repos where tenant_id = $1)")
            .bind(tenant_id)
            .fetch_one(&mut *db)
            .await?;
    let (canonical_workflows, pending): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where git_state = 'pending') from canonical_workflows \
         where tenant_id = $1 and deleted_at is null",
    )
    .bind(tenant_id)
    .fetch_one(&mut *db)
    .await?;
    let untracked: i64 = sqlx::query_scalar(
        "select count(*) from env_workflows w where w.tenant_id = $1 and w.deleted_at is null \
         and not exists (select 1 from workflow_env_map m where m.environment_id = w.environment_id and m.provider_id = w.provider_id)",
    )
    .bind(tenant_id)
    .fetch_one(&mut *db)
    .await?;
    let open_pull_requests: Vec<String> = sqlx::query_scalar(
        "select coalesce(url, branch) from onboarding_pulls where tenant_id = $1 and not merged order by created_at",
    )
    .bind(tenant_id)
    .fetch_all(&mut *db)
    .await?;
    let mut remaining = Vec::new();
    if !repository_configured {
        remaining.push("connect the canonical Git repository".to_owned());
    }
    if untracked > 0 {
        remaining.push(format!("onboard or link {untracked} untracked workflows"));
    }
    if pending > 0 {
        remaining.push(format!(
            "merge the onboarding pull request(s) holding {pending} canonical workflows, then sync from Git"
        ));
    }
    Ok(Completion {
        complete: remaining.is_empty(),
        repository_configured,
        canonical_workflows,
        pending,
        untracked,
        open_pull_requests,
        remaining,
    })
}

/// Records an onboarding pull request (CAN-018).
pub async fn record_pull(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    run_id: Uuid,
    branch: &str,
    number: Option<i64>,
    url: Option<&str>,
    canonical_ids: &[String],
) -> Result<()> {
    sqlx::query(
        "insert into onboarding_pulls (tenant_id, run_id, branch, number, url, canonical_ids) values ($1, $2, $3, $4, $5, $6) \
         on conflict (run_id) do update set number = excluded.number, url = excluded.url",
    )
    .bind(tenant_id)
    .bind(run_id)
    .bind(branch)
    .bind(number)
    .bind(url)
    .bind(canonical_ids)
    .execute(db)
    .await?;
    Ok(())
}

/// After a Git sync: pull requests whose canonical workflows are all committed now are merged.
pub async fn settle_pulls(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<u64> {
    Ok(sqlx::query(
        "update onboarding_pulls p set merged = true where p.tenant_id = $1 and not p.merged \
         and not exists (select 1 from canonical_workflows c where c.tenant_id = p.tenant_id \
                         and c.id = any (p.canonical_ids) and c.git_state = 'pending')",
    )
    .bind(tenant_id)
    .execute(db)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    // CAN-010
    #[test]
    fn an_onboarded_copy_matches_one_canonical_workflow_by_content_then_by_name() {
        let (dev, prod) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let k = |id: &str, name: &str, hash: &str, linked: Vec<Uuid>| Known {
            id: id.into(),
            provider: "n8n".into(),
            name: name.into(),
            content_hash: hash.into(),
            linked,
        };
        let known = vec![
            k("orders-1", "Orders", "h1", vec![dev]),
            k("billing-1", "Billing", "h2", vec![dev]),
            k("twin-a", "Twin", "h3", vec![dev]),
            k("twin-b", "Twin", "h4", vec![dev]),
        ];
        let id = |m: Option<(&Known, MatchedBy)>| m.map(|(k, by)| (k.id.clone(), by));
        assert_eq!(
            id(copy_of(&known, prod, "n8n", "Renamed", "h1")),
            Some(("orders-1".into(), MatchedBy::Content))
        );
        assert_eq!(
            id(copy_of(&known, prod, "n8n", "orders", "changed")),
            Some(("orders-1".into(), MatchedBy::Name)),
            "a copy changed in production is still the same workflow"
        );
        assert_eq!(
            id(copy_of(&known, prod, "n8n", "Twin", "h9")),
            None,
            "ambiguous"
        );
        assert_eq!(
            id(copy_of(&known, dev, "n8n", "Orders", "h1")),
            None,
            "already linked in that environment: another workflow"
        );
        assert_eq!(id(copy_of(&known, prod, "make", "Orders", "h1")), None);
    }

    #[test]
    fn canonical_ids_are_readable_slugs_and_valid_file_names() {
        let id = new_canonical_id("Order Sync → ERP (v2)");
        assert!(id.starts_with("order-sync-erp-v2-"), "{id}");
        assert!(valid_canonical_id(&id));
        assert!(new_canonical_id("→→").starts_with("workflow-"));
        assert!(!valid_canonical_id("../etc"));
        assert!(!valid_canonical_id(".hidden"));
        assert!(!valid_canonical_id(""));
    }
}
