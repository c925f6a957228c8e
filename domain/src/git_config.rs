//! An environment's Git repository for backups (ENV-003): where, which branch, which folder,
//! and the credentials (sealed; never returned).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::secrets;

const PURPOSE: &str = "environment.git";

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct GitConfig {
    pub environment_id: Uuid,
    pub url: String,
    pub branch: String,
    /// The folder of this environment's files inside the repository.
    pub path: String,
    /// `none`, `token` or `ssh_key`.
    pub auth_kind: String,
    pub username: Option<String>,
    pub last_backup_at: Option<DateTime<Utc>>,
    pub last_commit: Option<String>,
    /// Days scheduled snapshots are kept (null: the server's default).
    pub snapshot_retention_days: Option<i32>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "environment_id, url, branch, path, auth_kind, username, last_backup_at, last_commit, \
     snapshot_retention_days, updated_at";

/// What the Git adapter needs, the secret unsealed.
#[derive(Debug, Clone)]
pub struct GitAccess {
    pub url: String,
    pub branch: String,
    pub path: String,
    pub auth_kind: String,
    pub username: Option<String>,
    pub secret: Option<SecretString>,
}

pub struct NewGitConfig<'a> {
    pub url: &'a str,
    pub branch: &'a str,
    pub path: &'a str,
    pub auth_kind: &'a str,
    pub username: Option<&'a str>,
    pub secret: Option<&'a SecretString>,
}

/// Creates or replaces the environment's Git configuration (its old secret is deleted).
pub async fn put(
    tx: &mut PgConnection,
    keyring: &Keyring,
    tenant_id: Uuid,
    environment_id: Uuid,
    new: &NewGitConfig<'_>,
) -> Result<GitConfig> {
    let old: Option<Option<Uuid>> = sqlx::query_scalar(
        "select secret_id from environment_git where tenant_id = $1 and environment_id = $2 for update",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .fetch_optional(&mut *tx)
    .await?;
    let secret = match new.secret {
        Some(s) => Some(secrets::put(&mut *tx, keyring, Some(tenant_id), PURPOSE, s).await?),
        None => None,
    };
    if let Some(Some(old)) = old {
        secrets::delete(&mut *tx, Some(tenant_id), old).await?;
    }
    // A new repository (or folder) has none of the files: the next backup writes everything.
    sqlx::query("update env_workflows set backed_up_hash = null where environment_id = $1")
        .bind(environment_id)
        .execute(&mut *tx)
        .await?;
    Ok(sqlx::query_as(sqlf!(
        "insert into environment_git (environment_id, tenant_id, url, branch, path, auth_kind, username, secret_id) \
         values ($1, $2, $3, $4, $5, $6, $7, $8) \
         on conflict (environment_id) do update set url = excluded.url, branch = excluded.branch, path = excluded.path, \
             auth_kind = excluded.auth_kind, username = excluded.username, secret_id = excluded.secret_id, updated_at = now() \
         returning {COLUMNS}"
    ))
    .bind(environment_id)
    .bind(tenant_id)
    .bind(new.url.trim())
    .bind(new.branch)
    .bind(new.path)
    .bind(new.auth_kind)
    .bind(new.username)
    .bind(secret)
    .fetch_one(&mut *tx)
    .await?)
}

pub async fn get(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
) -> Result<GitConfig> {
    sqlx::query_as(sqlf!(
        "select {COLUMNS} from environment_git where tenant_id = $1 and environment_id = $2"
    ))
    .bind(tenant_id)
    .bind(environment_id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("Git configuration"))
}

pub async fn access(
    db: &mut PgConnection,
    keyring: &Keyring,
    tenant_id: Uuid,
    environment_id: Uuid,
) -> Result<GitAccess> {
    type Row = (String, String, String, String, Option<String>, Option<Uuid>);
    let row: Option<Row> = sqlx::query_as(
        "select url, branch, path, auth_kind, username, secret_id from environment_git \
         where tenant_id = $1 and environment_id = $2",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .fetch_optional(&mut *db)
    .await?;
    let (url, branch, path, auth_kind, username, secret_id) =
        row.ok_or(Error::not_found("Git configuration"))?;
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

/// A live workflow of an environment as a backup sees it.
#[derive(Debug, Clone, FromRow)]
pub struct BackupItem {
    pub id: String,
    pub name: String,
    pub content_hash: String,
    /// The hash of what a backup writes (falls back to the content hash for rows synced before
    /// storage hashes existed).
    pub storage_hash: String,
    /// The storage hash at the last backup.
    pub backed_up_hash: Option<String>,
}

/// Each live workflow of the environment, by id.
pub async fn backup_state(
    db: impl PgExecutor<'_>,
    environment_id: Uuid,
) -> Result<Vec<BackupItem>> {
    Ok(sqlx::query_as(
        "select provider_id as id, name, content_hash, coalesce(storage_hash, content_hash) as storage_hash, backed_up_hash \
         from env_workflows where environment_id = $1 and deleted_at is null order by provider_id",
    )
    .bind(environment_id)
    .fetch_all(db)
    .await?)
}

/// Marks these workflows as backed up at these hashes.
pub async fn mark_backed_up(
    db: impl PgExecutor<'_>,
    environment_id: Uuid,
    hashes: &[(String, String)],
) -> Result<()> {
    sqlx::query(
        "update env_workflows w set backed_up_hash = u.hash from unnest($2::text[], $3::text[]) as u(id, hash) \
         where w.environment_id = $1 and w.provider_id = u.id",
    )
    .bind(environment_id)
    .bind(hashes.iter().map(|h| h.0.clone()).collect::<Vec<_>>())
    .bind(hashes.iter().map(|h| h.1.clone()).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(())
}

pub async fn record_backup(
    db: impl PgExecutor<'_>,
    environment_id: Uuid,
    commit: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "update environment_git set last_backup_at = now(), last_commit = coalesce($2, last_commit) \
         where environment_id = $1",
    )
    .bind(environment_id)
    .bind(commit)
    .execute(db)
    .await?;
    Ok(())
}
