//! A fresh database per test, cloned from a template that holds the current migrations.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, PgPool};

/// The server tests run against (tests may read the environment; the product does not).
pub fn server_url() -> String {
    std::env::var("WFO_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn options(database: &str) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(&server_url())?.database(database))
}

/// Every test database's name starts with this; `.ci/run` drops leftovers.
pub const PREFIX: &str = "wfo_t_";

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn new() -> anyhow::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let template = ensure_template().await?;
        let name = format!(
            "{PREFIX}{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::now_v7()
                .simple()
                .to_string()
                .get(20..)
                .unwrap_or_default()
        );
        let mut admin = options("postgres")?.connect().await?;
        // Cloning a template fails if anyone else is connected to it: retry briefly.
        let mut attempt = 0;
        loop {
            let created = sqlx::query(AssertSqlSafe(format!(
                "create database \"{name}\" template \"{template}\""
            )))
            .execute(&mut admin)
            .await;
            match created {
                Ok(_) => break,
                Err(e)
                    if attempt < 50 && e.to_string().contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        admin.close().await?;
        let connect = options(&name)?;
        let pool = api::db::pool_options()
            .max_connections(10)
            .connect_with(connect)
            .await?;
        let url = format!("{}", options(&name)?.to_url_lossy());
        Ok(Self { name, url, pool })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's (often single-threaded, now blocked) runtime, which also
        // drives the pool: so leave the pool alone and drop the database from a thread of its
        // own; `with (force)` ends the pool's connections server-side.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(opts) = options("postgres")
                    && let Ok(mut admin) = opts.connect().await
                {
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "drop database if exists \"{name}\" with (force)"
                    )))
                    .execute(&mut admin)
                    .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// The template database for the current migration set, created once per migration set by
/// whichever test gets there first (serialised with an advisory lock).
async fn ensure_template() -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    for m in api::db::MIGRATOR.iter() {
        hasher.update(m.version.to_le_bytes());
        hasher.update(&*m.checksum);
    }
    let digest = hasher.finalize();
    let name = format!(
        "wfo_tpl_{}",
        digest
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut admin: PgConnection = options("postgres")?.connect().await?;
    sqlx::query("select pg_advisory_lock(727274)")
        .execute(&mut admin)
        .await?;
    let result = async {
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
                .bind(&name)
                .fetch_one(&mut admin)
                .await?;
        if !exists {
            let building = format!("{name}_building");
            sqlx::query(AssertSqlSafe(format!(
                "drop database if exists \"{building}\" with (force)"
            )))
            .execute(&mut admin)
            .await?;
            sqlx::query(AssertSqlSafe(format!("create database \"{building}\"")))
                .execute(&mut admin)
                .await?;
            let mut conn = options(&building)?.connect().await?;
            api::db::MIGRATOR.run(&mut conn).await?;
            conn.close().await?;
            sqlx::query(AssertSqlSafe(format!(
                "alter database \"{building}\" rename to \"{name}\""
            )))
            .execute(&mut admin)
            .await?;
        }
        anyhow::Ok(())
    }
    .await;
    sqlx::query("select pg_advisory_unlock(727274)")
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    result.map(|()| name)
}

/// The URL of database `name` on the test server (it need not exist).
pub fn url_for(name: &str) -> anyhow::Result<String> {
    Ok(options(name)?.to_url_lossy().to_string())
}

/// Drops database `name` if it exists.
pub async fn drop_database(name: &str) -> anyhow::Result<()> {
    let mut admin = options("postgres")?.connect().await?;
    sqlx::query(AssertSqlSafe(format!(
        "drop database if exists \"{name}\" with (force)"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    Ok(())
}
