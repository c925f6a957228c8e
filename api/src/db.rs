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

/// Pool options every WorkflowOps pool uses: each new connection gets `TCP_NODELAY`
/// (see [`tcp_nodelay`]).
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new().after_connect(|conn, _meta| Box::pin(tcp_nodelay(conn)))
}

pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = options(url)?;
    let database = options.get_database().unwrap_or("(default)").to_owned();
    let pool = pool_options()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to PostgreSQL database `{database}` (DATABASE_URL): {e}"
            )
        })?;
    refuse_read_only(&pool, &database).await?;
    Ok(pool)
}

/// Refuses a database WorkflowOps cannot write to. Every command writes (the engine, audit,
/// sessions, migrations), and live event streams order events by the primary's transaction
/// horizon, which a hot-standby replica does not share: started against one, the API would
/// answer reads and then fail every write and stall every stream. Said once, at start-up.
async fn refuse_read_only(pool: &PgPool, database: &str) -> anyhow::Result<()> {
    let (standby, read_only): (bool, bool) = sqlx::query_as(
        "select pg_is_in_recovery(), current_setting('default_transaction_read_only')::boolean",
    )
    .fetch_one(pool)
    .await
    .map_err(|e| anyhow::anyhow!("cannot query PostgreSQL database `{database}`: {e}"))?;
    if standby {
        anyhow::bail!(
            "DATABASE_URL names a hot-standby replica (database `{database}` is in recovery): \
             WorkflowOps needs the primary server"
        );
    }
    if read_only {
        anyhow::bail!(
            "database `{database}` (DATABASE_URL) is read-only (default_transaction_read_only \
             is on): WorkflowOps writes on every path; connect as a role and database that can write"
        );
    }
    Ok(())
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

/// Turns Nagle's algorithm off on a TCP connection to PostgreSQL.
///
/// sqlx 0.9.0 stopped setting `TCP_NODELAY` (transact-rs/sqlx#4335; the fix, #4336, is not in a
/// release yet). Without it, every statement whose bind data spans more than one TCP segment
/// waits for PostgreSQL's delayed ACK (~40 ms): a sync page of executions took 48 ms instead of
/// 8. sqlx does not hand out its socket, so this finds it: the server tells the connection's
/// client port, and the process's socket with that local port and the server's port as its peer
/// is this connection's. The descriptor is borrowed through a pidfd (a duplicate refers to the
/// same socket, so the option applies to it). Unix-socket connections have no port and need
/// nothing; where the socket cannot be found the connection works as before, only slower.
/// Remove when a sqlx release sets the option itself.
pub async fn tcp_nodelay(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let (client, server): (Option<i32>, Option<i32>) =
        sqlx::query_as("select inet_client_port(), inet_server_port()")
            .fetch_one(&mut *conn)
            .await?;
    let (Some(client), Some(server)) = (client, server) else {
        return Ok(());
    };
    let (Ok(client), Ok(server)) = (u16::try_from(client), u16::try_from(server)) else {
        return Ok(());
    };
    // Not fatal: the connection works, only large statements are slower (so say it loudly).
    match tokio::task::spawn_blocking(move || nodelay_on(client, server)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            tracing::warn!(client, "no socket found to set TCP_NODELAY on");
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on a PostgreSQL connection");
        }
        Err(e) => tracing::warn!(error = %e, "setting TCP_NODELAY stopped"),
    }
    Ok(())
}

/// Sets `TCP_NODELAY` on this process's TCP socket from local port `client` to peer port
/// `server`; whether it found one.
fn nodelay_on(client: u16, server: u16) -> std::io::Result<bool> {
    Ok(with_socket(client, server, |s| s.set_tcp_nodelay(true))?.is_some())
}

/// Whether this process's TCP socket from local port `client` to peer port `server` has
/// `TCP_NODELAY` (`None`: no such socket). For tests and diagnostics.
pub fn nodelay_of(client: u16, server: u16) -> std::io::Result<Option<bool>> {
    with_socket(client, server, |s| s.tcp_nodelay())
}

/// Runs `f` on this process's TCP socket from local port `client` to peer port `server`.
#[cfg(target_os = "linux")]
fn with_socket<T>(
    client: u16,
    server: u16,
    f: impl FnOnce(socket2::SockRef<'_>) -> std::io::Result<T>,
) -> std::io::Result<Option<T>> {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    let me = pidfd_open(getpid(), PidfdFlags::empty())?;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Ok(entry) = entry else { continue };
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|target| {
            target
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b"socket:")
        });
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // The descriptor may have been closed (or reused) since it was listed: the ports tell.
        let Ok(dup) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let socket = socket2::SockRef::from(&dup);
        let port = |a: std::io::Result<socket2::SockAddr>| {
            a.ok().and_then(|a| a.as_socket()).map(|a| a.port())
        };
        if port(socket.local_addr()) == Some(client) && port(socket.peer_addr()) == Some(server) {
            return f(socket).map(Some);
        }
    }
    Ok(None)
}

#[cfg(not(target_os = "linux"))]
fn with_socket<T>(
    _client: u16,
    _server: u16,
    _f: impl FnOnce(socket2::SockRef<'_>) -> std::io::Result<T>,
) -> std::io::Result<Option<T>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    /// A URL without a user connects as the OS user (libpq's default); sqlx 0.9.0 alone
    /// made that "anonymous" (see the workspace's `whoami` dependency).
    #[test]
    fn a_url_without_a_user_means_the_os_user() {
        let default = super::options("postgres://localhost:5432/workflowops")
            .unwrap_or_else(|e| panic!("{e}"));
        let expected = std::env::var("PGUSER")
            .ok()
            .or_else(|| whoami::username().ok())
            .unwrap_or_default();
        assert_ne!(default.get_username(), "anonymous");
        assert_eq!(default.get_username(), expected);
        let explicit = super::options("postgres://wfo@localhost/workflowops")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(explicit.get_username(), "wfo");
    }
}
