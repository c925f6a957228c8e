//! Database set-up: connecting, creating the database for `dev`, and migrations (embedded in the
//! binary from `migrations/`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

pub fn options(url: &str) -> anyhow::Result<PgConnectOptions> {
    PgConnectOptions::from_str(url)
        .map(|o| o.application_name("workflowops"))
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))
}

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = options(url)?;
    let database = options.get_database().unwrap_or("(default)").to_owned();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to PostgreSQL database `{database}` (DATABASE_URL): {e}"
            )
        })
}

/// Creates the database named in `url` if it does not exist. Returns whether it created it.
pub async fn ensure_database(url: &str) -> anyhow::Result<bool> {
    let options = options(url)?;
    let name = options.get_database().unwrap_or("workflowops").to_owned();
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to PostgreSQL to create database `{name}` (DATABASE_URL): {e}"
            )
        })?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {quoted}")))
            .execute(&mut admin)
            .await?;
    }
    admin.close().await?;
    Ok(!exists)
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("applying migrations failed: {e}"))
}

/// Whether every migration this binary knows has been applied (for `/readyz`).
pub async fn migrations_current(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let applied: Vec<i64> = match sqlx::query_scalar(
        "select version from _sqlx_migrations where success order by version",
    )
    .fetch_all(pool)
    .await
    {
        Ok(v) => v,
        // No migrations table yet: nothing applied.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
}
