//! `workflowops dev`: the newcomer's one command. Creates the database if missing, migrates,
//! generates a master key into a local file, creates (once) a demo tenant with an admin, then
//! runs the API with an in-process worker and prints how to sign in.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use domain::audit::{Actor, Entry};
use domain::crypto::Keyring;
use domain::{Role, password, tenancy, tokens};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{AppConfig, AppState};
use crate::config::{DevArgs, GlobalArgs};
use crate::{cli, db, server};

pub const DEMO_TENANT_SLUG: &str = "demo";
pub const DEMO_ADMIN_EMAIL: &str = "admin@demo.local";

pub async fn run(
    global: &GlobalArgs,
    args: DevArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {} (WFO_DEV_DIR)", args.dir.display()))?;
    let keyring = Keyring::new(&master_key(&args.dir)?, &[])
        .map_err(|e| anyhow::anyhow!("the dev master key {e}"))?;
    if db::ensure_database(&global.database_url).await? {
        println!("created the database named in DATABASE_URL");
    }
    let pool = db::connect(&global.database_url, global.db_max_connections).await?;
    db::migrate(&pool).await?;
    let login = demo_tenant(&pool, &args.dir).await?;
    jobs::maintenance::ensure_schedule(
        &pool,
        Duration::from_secs(30 * 86_400),
        Duration::from_secs(90 * 86_400),
        Duration::from_secs(90 * 86_400),
    )
    .await?;
    let listener = TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {} (WFO_BIND)", args.bind))?;
    let url = format!("http://{}", listener.local_addr()?);
    let mut config = AppConfig::new(url.clone());
    config.notify = args.notify.settings()?;
    config.outbound = args.outbound_networks.into();
    config.allow_local_git = args.git_allow_local;
    config.stripe = args.stripe.client()?;
    let state = AppState::new(pool.clone(), keyring, config);
    let registry = jobs::registry(&state.jobs);
    let worker = tokio::spawn(engine::run_worker(
        pool,
        cli::worker_config(
            Some("dev-worker".into()),
            args.concurrency,
            Duration::from_secs(5),
            None,
        ),
        registry,
        shutdown.clone(),
    ));
    println!();
    println!("WorkflowOps is running at {url}");
    println!("  Web UI: {url}/ (sign in below)");
    println!("  API description: {url}/api/v1/openapi.json");
    match &login {
        Some(pw) => println!(
            "  Sign in as {DEMO_ADMIN_EMAIL} with password {pw} (tenant `{DEMO_TENANT_SLUG}`)"
        ),
        None => println!(
            "  Sign in as {DEMO_ADMIN_EMAIL}; its password was printed at first start. Reset it with \
             `workflowops user set-password --email {DEMO_ADMIN_EMAIL}`"
        ),
    }
    if let Some(pw) = &login {
        println!(
            "  curl -s {url}/api/v1/auth/login -H 'content-type: application/json' \
             -d '{{\"email\":\"{DEMO_ADMIN_EMAIL}\",\"password\":\"{pw}\"}}'"
        );
    }
    println!("Press Ctrl-C to stop.");
    server::run(state, listener, shutdown.clone()).await?;
    shutdown.cancel();
    worker.await.context("the dev worker panicked")??;
    Ok(())
}

/// The dev master key from `<dir>/master.key`, generated on first use.
fn master_key(dir: &Path) -> anyhow::Result<SecretString> {
    let path = dir.join("master.key");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(SecretString::from(existing.trim().to_owned()));
    }
    let key = Keyring::generate();
    write_private(&path, key.expose_secret())?;
    println!(
        "generated a master key for secrets into {} (for production set WFO_MASTER_KEY)",
        path.display()
    );
    Ok(key)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// Creates the demo tenant and its admin (a platform admin too) once. Returns the admin's
/// password when it is known (just created, or saved by an earlier run).
async fn demo_tenant(pool: &sqlx::PgPool, dir: &Path) -> anyhow::Result<Option<String>> {
    let saved = dir.join("demo-login.txt");
    if tenancy::user_by_email(pool, DEMO_ADMIN_EMAIL)
        .await?
        .is_some()
    {
        return Ok(std::fs::read_to_string(&saved)
            .ok()
            .map(|s| s.trim().to_owned()));
    }
    let plain = tokens::password();
    let hash = password::hash(&plain)?;
    let actor = Actor::cli();
    let mut tx = pool.begin().await?;
    let tenant = match tenancy::tenant_by_slug(&mut *tx, DEMO_TENANT_SLUG).await {
        Ok(t) => t,
        Err(_) => tenancy::create_tenant(&mut *tx, "Demo", DEMO_TENANT_SLUG).await?,
    };
    // The demo shows every feature: Enterprise on every provider, assigned as by a platform admin.
    for provider in domain::entitlements::providers(&mut *tx).await? {
        let plan = domain::entitlements::plan_by_key(&mut *tx, &provider.key, "enterprise").await?;
        domain::entitlements::set_subscription(
            &mut tx,
            tenant.id,
            &plan,
            &domain::entitlements::SubscriptionChange::manual(),
        )
        .await?;
    }
    let user = tenancy::create_user(&mut *tx, DEMO_ADMIN_EMAIL, "Demo Admin", &hash).await?;
    tenancy::add_member(&mut *tx, tenant.id, user.id, Role::Admin).await?;
    tenancy::add_platform_admin(&mut *tx, user.id, None).await?;
    Entry::new(Some(tenant.id), &actor, "member.added", "member")
        .target(user.id)
        .new_value(&serde_json::json!({"email": user.email, "role": Role::Admin}))
        .record(&mut *tx)
        .await?;
    tx.commit().await?;
    write_private(&saved, &plain)?;
    println!(
        "created the demo tenant `{DEMO_TENANT_SLUG}` with admin {DEMO_ADMIN_EMAIL} (password saved in {})",
        saved.display()
    );
    Ok(Some(plain))
}
