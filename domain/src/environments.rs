//! Environments (ENV-001..012): a tenant's provider instances, with their class (which drives
//! action policies), tenant-defined type, drift handling mode, sync status and health. The
//! provider API key is sealed in `secrets`; nothing here ever returns it.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::error::{Error, Result, unique_violation};
use crate::ids::new_id;
use crate::secrets;

text_enum! {
    /// Deterministic for policy enforcement (PRD 3.1.1).
    pub enum EnvironmentClass { Dev = "dev", Staging = "staging", Production = "production" }
}

text_enum! {
    /// What drift in this environment leads to (ENV-011, DRIFT-005).
    pub enum DriftMode {
        WarnOnly = "warn_only",
        ManualOverride = "manual_override",
        RequireAttestation = "require_attestation",
    }
}

text_enum! {
    pub enum HealthStatus {
        Unknown = "unknown",
        Healthy = "healthy",
        Unreachable = "unreachable",
        AuthFailed = "auth_failed",
        Error = "error",
    }
}

const SECRET_PURPOSE: &str = "environment.api_key";

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Environment {
    pub id: Uuid,
    #[serde(skip)]
    pub tenant_id: Uuid,
    pub name: String,
    /// `n8n` or `make`.
    pub provider: String,
    pub base_url: String,
    pub class: EnvironmentClass,
    /// A tenant-defined environment type's key (ENV-010).
    pub env_type: Option<String>,
    pub drift_mode: DriftMode,
    /// The provider's version found by the last connection test.
    pub provider_version: Option<String>,
    #[schema(value_type = Object)]
    pub capabilities: Value,
    /// Requests per second WorkflowOps sends to this instance, and at most this many at once.
    pub rate_limit: f64,
    pub max_concurrency: i32,
    pub last_sync_run_id: Option<Uuid>,
    pub last_sync_at: Option<DateTime<Utc>>,
    /// `running`, `succeeded`, `failed` or `cancelled`; null before the first sync.
    pub last_sync_status: Option<String>,
    pub last_sync_error: Option<String>,
    pub health_status: HealthStatus,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub last_latency_ms: Option<i32>,
    /// Workflows currently in the environment (as last synced).
    pub workflow_count: i64,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "e.id, e.tenant_id, e.name, e.provider, e.base_url, e.class, e.env_type, e.drift_mode, \
    e.provider_version, e.capabilities, e.rate_limit, e.max_concurrency, e.last_sync_run_id, e.last_sync_at, \
    e.last_sync_status, e.last_sync_error, e.health_status, e.last_heartbeat_at, e.last_latency_ms, \
    (select count(*) from env_workflows w where w.environment_id = e.id and w.deleted_at is null) as workflow_count, \
    e.created_by, e.created_at, e.updated_at";

pub struct NewEnvironment<'a> {
    pub tenant_id: Uuid,
    pub name: &'a str,
    pub provider: &'a str,
    pub base_url: &'a str,
    pub api_key: &'a SecretString,
    pub class: EnvironmentClass,
    pub env_type: Option<&'a str>,
    pub drift_mode: DriftMode,
    pub provider_version: Option<&'a str>,
    pub capabilities: &'a Value,
    pub rate_limit: f64,
    pub max_concurrency: i32,
    pub created_by: Option<Uuid>,
    /// Most environments a tenant may have (ENV-008).
    pub limit: i64,
}

/// How to reach an environment's provider (for adapters): never serialised.
#[derive(Debug, Clone)]
pub struct Access {
    pub environment_id: Uuid,
    pub provider: String,
    pub base_url: String,
    pub api_key: SecretString,
    pub version: Option<String>,
    pub rate_limit: f64,
    pub max_concurrency: i32,
}

/// Creates an environment (its key sealed in the same transaction); refuses a duplicate name,
/// an unknown environment type and a tenant at its limit.
pub async fn create(
    tx: &mut PgConnection,
    keyring: &Keyring,
    new: NewEnvironment<'_>,
) -> Result<Environment> {
    // Serialise creations per tenant so two concurrent requests cannot both pass the limit.
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('environments:' || $1::text, 0))")
        .bind(new.tenant_id)
        .execute(&mut *tx)
        .await?;
    let existing: i64 = sqlx::query_scalar(
        "select count(*) from environments where tenant_id = $1 and provider = $2",
    )
    .bind(new.tenant_id)
    .bind(new.provider)
    .fetch_one(&mut *tx)
    .await?;
    if existing >= new.limit {
        return Err(Error::conflict(
            "environment_limit_reached",
            format!(
                "this tenant's plan allows {} {} environments; delete one or upgrade the plan",
                new.limit, new.provider
            ),
        ));
    }
    if let Some(key) = new.env_type {
        type_exists(&mut *tx, new.tenant_id, key).await?;
    }
    let id = new_id();
    let secret = secrets::put(
        &mut *tx,
        keyring,
        Some(new.tenant_id),
        SECRET_PURPOSE,
        new.api_key,
    )
    .await?;
    let inserted = sqlx::query(
        "insert into environments (id, tenant_id, name, provider, base_url, api_key_secret_id, class, env_type, \
         drift_mode, provider_version, capabilities, rate_limit, max_concurrency, created_by) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(id)
    .bind(new.tenant_id)
    .bind(new.name.trim())
    .bind(new.provider)
    .bind(new.base_url.trim().trim_end_matches('/'))
    .bind(secret)
    .bind(new.class)
    .bind(new.env_type)
    .bind(new.drift_mode)
    .bind(new.provider_version)
    .bind(new.capabilities)
    .bind(new.rate_limit)
    .bind(new.max_concurrency)
    .bind(new.created_by)
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        return Err(match unique_violation(&e) {
            Some(_) => Error::conflict(
                "environment_name_taken",
                format!("an environment named `{}` already exists", new.name.trim()),
            ),
            None => e.into(),
        });
    }
    get(&mut *tx, new.tenant_id, id).await
}

async fn type_exists(db: impl PgExecutor<'_>, tenant_id: Uuid, key: &str) -> Result<()> {
    let found: Option<i32> =
        sqlx::query_scalar("select 1 from environment_types where tenant_id = $1 and key = $2")
            .bind(tenant_id)
            .bind(key)
            .fetch_optional(db)
            .await?;
    found
        .map(drop)
        .ok_or_else(|| Error::invalid("env_type", format!("no environment type `{key}` exists")))
}

pub async fn get(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Environment> {
    sqlx::query_as(sqlf!(
        "select {COLUMNS} from environments e where e.tenant_id = $1 and e.id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("environment"))
}

/// Every environment of the tenant, by name (a tenant has a handful).
pub async fn list(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<Vec<Environment>> {
    Ok(sqlx::query_as(sqlf!(
        "select {COLUMNS} from environments e where e.tenant_id = $1 order by lower(e.name), e.id"
    ))
    .bind(tenant_id)
    .fetch_all(db)
    .await?)
}

/// An environment seen across tenants (PLAT-004), with its tenant.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct PlatformEnvironment {
    pub tenant_id: Uuid,
    pub tenant_name: String,
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub environment: Environment,
}

/// Filters of [`list_across`]; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct AcrossFilter<'a> {
    pub tenant_id: Option<Uuid>,
    pub provider: Option<&'a str>,
    pub health: Option<HealthStatus>,
}

/// Every tenant's environments, newest first, strictly older than `after` (ids are time-ordered).
pub async fn list_across(
    db: impl PgExecutor<'_>,
    filter: &AcrossFilter<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<PlatformEnvironment>> {
    Ok(sqlx::query_as(sqlf!(
        "select {COLUMNS}, t.name as tenant_name from environments e join tenants t on t.id = e.tenant_id \
         where ($1::uuid is null or e.tenant_id = $1) and ($2::text is null or e.provider = $2) \
           and ($3::text is null or e.health_status = $3) and ($4::uuid is null or e.id < $4) \
         order by e.id desc limit $5"
    ))
    .bind(filter.tenant_id)
    .bind(filter.provider)
    .bind(filter.health.map(|h| h.as_str()))
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// What may change without a new connection test.
#[derive(Debug, Default)]
pub struct Changes<'a> {
    pub name: Option<&'a str>,
    pub class: Option<EnvironmentClass>,
    /// Some(None) clears the type.
    pub env_type: Option<Option<&'a str>>,
    pub drift_mode: Option<DriftMode>,
    pub rate_limit: Option<f64>,
    pub max_concurrency: Option<i32>,
}

pub async fn update(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    changes: &Changes<'_>,
) -> Result<Environment> {
    if let Some(Some(key)) = changes.env_type {
        type_exists(&mut *tx, tenant_id, key).await?;
    }
    let updated = sqlx::query(
        "update environments set name = coalesce($3, name), class = coalesce($4, class), \
         env_type = case when $5 then $6 else env_type end, drift_mode = coalesce($7, drift_mode), \
         rate_limit = coalesce($8, rate_limit), max_concurrency = coalesce($9, max_concurrency), updated_at = now() \
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(changes.name.map(str::trim))
    .bind(changes.class)
    .bind(changes.env_type.is_some())
    .bind(changes.env_type.flatten())
    .bind(changes.drift_mode)
    .bind(changes.rate_limit)
    .bind(changes.max_concurrency)
    .execute(&mut *tx)
    .await;
    match updated {
        Ok(r) if r.rows_affected() == 0 => return Err(Error::not_found("environment")),
        Ok(_) => {}
        Err(e) => {
            return Err(match unique_violation(&e) {
                Some(_) => Error::conflict(
                    "environment_name_taken",
                    "another environment already has this name",
                ),
                None => e.into(),
            });
        }
    }
    get(&mut *tx, tenant_id, id).await
}

/// Which connection an environment has: its URL and sealed key. Replacing either changes it,
/// so a change that was tested against one connection can tell whether it is still the one
/// in place when it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStamp {
    base_url: String,
    api_key_secret_id: Uuid,
}

/// The environment's connection as it is now (no lock).
pub async fn connection_stamp(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<ConnectionStamp> {
    let row: Option<(String, Uuid)> = sqlx::query_as(
        "select base_url, api_key_secret_id from environments where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?;
    let (base_url, api_key_secret_id) = row.ok_or(Error::not_found("environment"))?;
    Ok(ConnectionStamp {
        base_url,
        api_key_secret_id,
    })
}

/// Locks the environment's row for a change (until the transaction ends) and returns it as it
/// is now, with its connection.
pub async fn lock(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<(Environment, ConnectionStamp)> {
    let row: Option<(String, Uuid)> = sqlx::query_as(
        "select base_url, api_key_secret_id from environments where tenant_id = $1 and id = $2 \
         for update",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let (base_url, api_key_secret_id) = row.ok_or(Error::not_found("environment"))?;
    let env = get(&mut *tx, tenant_id, id).await?;
    Ok((
        env,
        ConnectionStamp {
            base_url,
            api_key_secret_id,
        },
    ))
}

/// A new connection for an environment, after a successful test.
pub struct Reconnect<'a> {
    pub base_url: &'a str,
    /// None keeps the current key.
    pub api_key: Option<&'a SecretString>,
    pub version: Option<&'a str>,
    pub capabilities: &'a Value,
}

/// Replaces the connection: URL, key, version and capabilities.
pub async fn reconnect(
    tx: &mut PgConnection,
    keyring: &Keyring,
    tenant_id: Uuid,
    id: Uuid,
    to: &Reconnect<'_>,
) -> Result<Environment> {
    let old_secret: Uuid = sqlx::query_scalar(
        "select api_key_secret_id from environments where tenant_id = $1 and id = $2 for update",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::not_found("environment"))?;
    let secret = match to.api_key {
        Some(key) => {
            let new = secrets::put(&mut *tx, keyring, Some(tenant_id), SECRET_PURPOSE, key).await?;
            secrets::delete(&mut *tx, Some(tenant_id), old_secret).await?;
            new
        }
        None => old_secret,
    };
    sqlx::query(
        "update environments set base_url = $3, api_key_secret_id = $4, provider_version = $5, capabilities = $6, \
         updated_at = now() where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(to.base_url.trim().trim_end_matches('/'))
    .bind(secret)
    .bind(to.version)
    .bind(to.capabilities)
    .execute(&mut *tx)
    .await?;
    get(&mut *tx, tenant_id, id).await
}

/// Deletes the environment, everything synced from it and its sealed key.
pub async fn delete(tx: &mut PgConnection, tenant_id: Uuid, id: Uuid) -> Result<Environment> {
    let env = get(&mut *tx, tenant_id, id).await?;
    let secret: Option<Uuid> = sqlx::query_scalar(
        "delete from environments where tenant_id = $1 and id = $2 returning api_key_secret_id",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(secret) = secret {
        secrets::delete(&mut *tx, Some(tenant_id), secret).await?;
    }
    Ok(env)
}

/// How to reach the environment's provider, key unsealed.
pub async fn access(
    db: &mut PgConnection,
    keyring: &Keyring,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Access> {
    let row: Option<(String, String, Uuid, Option<String>, f64, i32)> = sqlx::query_as(
        "select provider, base_url, api_key_secret_id, provider_version, rate_limit, max_concurrency \
         from environments where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *db)
    .await?;
    let (provider, base_url, secret, version, rate_limit, max_concurrency) =
        row.ok_or(Error::not_found("environment"))?;
    let api_key = secrets::get(&mut *db, keyring, Some(tenant_id), secret).await?;
    Ok(Access {
        environment_id: id,
        provider,
        base_url,
        api_key,
        version,
        rate_limit,
        max_concurrency,
    })
}

pub async fn sync_started(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
    run_id: Uuid,
) -> Result<()> {
    sqlx::query(
        "update environments set last_sync_run_id = $3, last_sync_status = 'running', last_sync_error = null \
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(run_id)
    .execute(db)
    .await?;
    Ok(())
}

/// Records how a sync ended (only if it is still the environment's latest sync).
pub async fn sync_finished(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
    run_id: Uuid,
    status: &str,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "update environments set last_sync_status = $4, last_sync_error = $5, \
         last_sync_at = case when $4 = 'succeeded' then now() else last_sync_at end \
         where tenant_id = $1 and id = $2 and last_sync_run_id = $3",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(run_id)
    .bind(status)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// One health check's result (HEALTH-002/006): the history row and the environment's status.
pub async fn record_health(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    status: HealthStatus,
    latency_ms: Option<i32>,
    version: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "insert into environment_health_checks (environment_id, tenant_id, status, latency_ms, version, error) \
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(status)
    .bind(latency_ms)
    .bind(version)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "update environments set health_status = $3, last_latency_ms = $4, \
         last_heartbeat_at = case when $3 = 'healthy' then now() else last_heartbeat_at end, \
         provider_version = coalesce($5, provider_version) where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(status)
    .bind(latency_ms)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct HealthCheck {
    pub checked_at: DateTime<Utc>,
    pub status: HealthStatus,
    pub latency_ms: Option<i32>,
    pub version: Option<String>,
    pub error: Option<String>,
}

/// Health history, newest first, with the share of healthy checks (uptime) over it.
pub async fn health_history(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
    limit: i64,
) -> Result<Vec<HealthCheck>> {
    Ok(sqlx::query_as(
        "select checked_at, status, latency_ms, version, error from environment_health_checks \
         where tenant_id = $1 and environment_id = $2 order by checked_at desc, id desc limit $3",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// A tenant-defined environment type (ENV-010).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct EnvironmentType {
    pub id: Uuid,
    pub key: String,
    pub label: String,
    pub class: EnvironmentClass,
    pub sort_order: i32,
    pub created_at: DateTime<Utc>,
}

/// A type every new tenant starts with (ADMIN-015).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct PlatformType {
    pub key: String,
    pub label: String,
    pub class: EnvironmentClass,
    pub sort_order: i32,
    pub created_at: DateTime<Utc>,
}

pub async fn platform_types(db: impl PgExecutor<'_>) -> Result<Vec<PlatformType>> {
    Ok(sqlx::query_as(
        "select key, label, class, sort_order, created_at from platform_environment_types \
         order by sort_order, key",
    )
    .fetch_all(db)
    .await?)
}

/// Adds a platform type (409 `type_exists` for a key in use); with `to_existing`, also to every
/// tenant without a type of that key. Returns it and how many tenants got it.
pub async fn create_platform_type(
    db: &mut PgConnection,
    key: &str,
    label: &str,
    class: EnvironmentClass,
    sort_order: i32,
    to_existing: bool,
) -> Result<(PlatformType, u64)> {
    let created: PlatformType = sqlx::query_as(
        "insert into platform_environment_types (key, label, class, sort_order) \
         values ($1, $2, $3, $4) returning key, label, class, sort_order, created_at",
    )
    .bind(key)
    .bind(label)
    .bind(class)
    .bind(sort_order)
    .fetch_one(&mut *db)
    .await
    .map_err(|e| match unique_violation(&e) {
        Some(_) => Error::conflict("type_exists", format!("a platform type `{key}` exists")),
        None => e.into(),
    })?;
    let copied = if to_existing {
        sqlx::query(
            "insert into environment_types (id, tenant_id, key, label, class, sort_order) \
             select gen_random_uuid(), t.id, $1, $2, $3, $4 from tenants t \
             on conflict (tenant_id, key) do nothing",
        )
        .bind(key)
        .bind(label)
        .bind(class)
        .bind(sort_order)
        .execute(&mut *db)
        .await?
        .rows_affected()
    } else {
        0
    };
    Ok((created, copied))
}

/// Removes a platform type; tenants keep their copies.
pub async fn delete_platform_type(db: impl PgExecutor<'_>, key: &str) -> Result<PlatformType> {
    sqlx::query_as(
        "delete from platform_environment_types where key = $1 \
         returning key, label, class, sort_order, created_at",
    )
    .bind(key)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("environment type"))
}

pub async fn list_types(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<Vec<EnvironmentType>> {
    Ok(sqlx::query_as(
        "select id, key, label, class, sort_order, created_at from environment_types \
         where tenant_id = $1 order by sort_order, key",
    )
    .bind(tenant_id)
    .fetch_all(db)
    .await?)
}

pub async fn create_type(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    key: &str,
    label: &str,
    class: EnvironmentClass,
    sort_order: i32,
) -> Result<EnvironmentType> {
    sqlx::query_as(
        "insert into environment_types (id, tenant_id, key, label, class, sort_order) values ($1, $2, $3, $4, $5, $6) \
         returning id, key, label, class, sort_order, created_at",
    )
    .bind(new_id())
    .bind(tenant_id)
    .bind(key)
    .bind(label.trim())
    .bind(class)
    .bind(sort_order)
    .fetch_one(db)
    .await
    .map_err(|e| match unique_violation(&e) {
        Some(_) => Error::conflict("environment_type_exists", format!("the type `{key}` already exists")),
        None => e.into(),
    })
}

/// Deletes a type no environment uses.
pub async fn delete_type(
    tx: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<EnvironmentType> {
    let t: EnvironmentType = sqlx::query_as(
        "select id, key, label, class, sort_order, created_at from environment_types where tenant_id = $1 and id = $2 for update",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::not_found("environment type"))?;
    let used: i64 = sqlx::query_scalar(
        "select count(*) from environments where tenant_id = $1 and env_type = $2",
    )
    .bind(tenant_id)
    .bind(&t.key)
    .fetch_one(&mut *tx)
    .await?;
    if used > 0 {
        return Err(Error::conflict(
            "environment_type_in_use",
            format!("{used} environment(s) use the type `{}`", t.key),
        ));
    }
    sqlx::query("delete from environment_types where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(t)
}
