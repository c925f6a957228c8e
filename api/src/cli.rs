//! The command line: parses [`Cli`], sets up logging, and runs the chosen command. Errors end
//! the process with one clear line.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use domain::audit::{Actor, Entry};
use domain::crypto::Keyring;
use domain::{password, secrets, sessions, tenancy, tokens};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{AppConfig, AppState};
use crate::config::{
    Cli, Command, GlobalArgs, KeyArgs, PlatformAdminCommand, SecretsCommand, ServeArgs,
    TenantCommand, UserCommand, WorkerArgs,
};
use crate::routes::platform::{FirstAdmin, create_tenant_with_admin};
use crate::{db, dev, server, telemetry};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS backend across the tree (ring); reqwest is built without one of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if !matches!(cli.command, Command::Keygen) {
            telemetry::init(&cli.global)?;
        }
        run(cli, server::shutdown_on_signals()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line until it is done or `shutdown` is cancelled (logging must already
/// be set up).
pub async fn run(cli: Cli, shutdown: CancellationToken) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Keygen => {
            println!("{}", Keyring::generate().expose_secret());
            Ok(())
        }
        Command::Dev(args) => dev::run(&global, args, shutdown).await,
        Command::Serve(args) => serve(&global, args, shutdown).await,
        Command::Worker(args) => worker(&global, args, shutdown).await,
        Command::Migrate => {
            let pool = db::connect(&global.database_url, 2).await?;
            db::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Tenant(cmd) => tenant(&global, cmd).await,
        Command::User(cmd) => user(&global, cmd).await,
        Command::PlatformAdmin(cmd) => platform_admin(&global, cmd).await,
        Command::Bench(crate::config::BenchCommand::Engine(args)) => {
            crate::bench::run(&global.database_url, args).await
        }
        Command::Bench(crate::config::BenchCommand::Sse(args)) => {
            crate::bench::run_sse(&global.database_url, args).await
        }
        Command::Secrets(SecretsCommand::Rotate { keys }) => {
            let keyring = keyring(&keys, "secrets rotate")?;
            let pool = db::connect(&global.database_url, 2).await?;
            let n = secrets::rotate(&pool, &keyring, 200).await?;
            println!(
                "re-encrypted {n} secrets with master key {}",
                keyring.current_key_id()
            );
            Ok(())
        }
    }
}

/// The keyring from WFO_MASTER_KEY (+ WFO_MASTER_KEY_PREVIOUS), or one clear line saying why not.
pub fn keyring(keys: &KeyArgs, command: &str) -> anyhow::Result<Keyring> {
    let Some(current) = &keys.master_key else {
        bail!(
            "WFO_MASTER_KEY is required for `{command}`: 32 random bytes, base64-encoded \
             (make one with `workflowops keygen`)"
        );
    };
    let current_ring = Keyring::new(current, &[]).map_err(|e| anyhow!("WFO_MASTER_KEY {e}"))?;
    drop(current_ring);
    Keyring::new(current, &keys.master_key_previous)
        .map_err(|e| anyhow!("WFO_MASTER_KEY_PREVIOUS: a key {e}"))
}

fn app_config(args: &ServeArgs) -> anyhow::Result<AppConfig> {
    Ok(AppConfig {
        public_url: args
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", args.bind))
            .trim_end_matches('/')
            .to_owned(),
        session_ttl: args.session_ttl,
        invitation_ttl: args.invitation_ttl,
        auth_cache_ttl: args.auth_cache_ttl,
        max_body_bytes: args.max_body_bytes,
        request_timeout: args.request_timeout,
        trust_forwarded_for: args.trust_forwarded_for,
        max_environments: args.max_environments,
        execution_retention: args.execution_retention,
        read_audit_retention: args.read_audit_retention,
        run_retention: args.run_retention,
        snapshot_retention: args.snapshot_retention,
        allow_local_git: args.git_allow_local,
        event_poll: args.event_poll,
        notify: args.notify.settings()?,
        outbound: args.outbound.outbound_networks.into(),
        stripe: args.stripe.client()?,
    })
}

async fn serve(
    global: &GlobalArgs,
    args: ServeArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let keyring = keyring(&args.keys, "serve")?;
    let pool = db::connect(&global.database_url, global.db_max_connections).await?;
    if args.migrate_on_start {
        db::migrate(&pool).await?;
    } else if !db::migrations_current(&pool).await? {
        bail!(
            "the database schema is behind this binary: run `workflowops migrate` (or set WFO_MIGRATE_ON_START=true)"
        );
    }
    jobs::maintenance::ensure_schedule(
        &pool,
        args.run_retention,
        args.execution_retention,
        args.snapshot_retention,
    )
    .await?;
    // DEP-007: promotions whose run ended while no process was watching take its outcome.
    let settled = domain::promotions::settle_stale(&pool).await?;
    if settled > 0 {
        tracing::info!(settled, "settled stale promotions");
    }
    let listener = TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {} (WFO_BIND)", args.bind))?;
    let state = AppState::new(pool, keyring, app_config(&args)?);
    tracing::info!(address = %args.bind, "API listening");
    server::run(state, listener, shutdown).await?;
    tracing::info!("API stopped");
    Ok(())
}

pub fn worker_config(
    name: Option<String>,
    concurrency: u32,
    heartbeat: Duration,
    kinds: Option<Vec<String>>,
) -> engine::WorkerConfig {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let pid = std::process::id();
    let mut config =
        engine::WorkerConfig::new(name.unwrap_or_else(|| format!("{host}:{pid}")), concurrency);
    config.host = host;
    config.heartbeat_every = heartbeat;
    config.kinds = kinds;
    config
}

async fn worker(
    global: &GlobalArgs,
    args: WorkerArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Workers will open provider credentials; refuse to start without the key to read them.
    let keyring = std::sync::Arc::new(keyring(&args.keys, "worker")?);
    let pool = db::connect(&global.database_url, global.db_max_connections).await?;
    if !db::migrations_current(&pool).await? {
        bail!("the database schema is behind this binary: run `workflowops migrate` first");
    }
    let deps = jobs::Deps::new(keyring)
        .with_notify(args.notify.settings()?)
        .with_outbound(args.outbound.outbound_networks.into());
    let registry = jobs::registry(&deps);
    if let Some(unknown) = args
        .kinds
        .as_ref()
        .and_then(|k| k.iter().find(|k| !registry.kinds().contains(k)))
    {
        bail!(
            "--kinds (WFO_WORKER_KINDS): this binary has no job kind `{unknown}`; it knows {}",
            registry.kinds().join(", ")
        );
    }
    crate::metrics::handle();
    if let Some(addr) = args.metrics_bind {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (WFO_WORKER_METRICS_BIND)"))?;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(|| async { crate::metrics::render_process() }),
        );
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
    }
    if args.lease < args.heartbeat * 2 {
        bail!(
            "--lease ({:?}) must be at least twice --heartbeat ({:?}): leases are extended by heartbeats",
            args.lease,
            args.heartbeat
        );
    }
    let mut config = worker_config(args.name, args.concurrency, args.heartbeat, args.kinds);
    config.lease = args.lease;
    if let Some(prefetch) = args.prefetch {
        config.prefetch = prefetch;
    }
    engine::run_worker(pool, config, registry, shutdown).await?;
    Ok(())
}

fn new_password(given: Option<SecretString>) -> anyhow::Result<(String, bool)> {
    match given {
        Some(p) => {
            let p = p.expose_secret().to_owned();
            let mut v = domain::validate::Validator::new();
            password::check_policy(&mut v, "password", &p);
            v.finish().map_err(|_| {
                anyhow!(
                    "the password must be {}-{} characters",
                    password::MIN_LEN,
                    password::MAX_LEN
                )
            })?;
            Ok((p, false))
        }
        None => Ok((tokens::password(), true)),
    }
}

async fn tenant(global: &GlobalArgs, cmd: TenantCommand) -> anyhow::Result<()> {
    let pool = db::connect(&global.database_url, 2).await?;
    match cmd {
        TenantCommand::Create {
            name,
            slug,
            admin_email,
        } => {
            let mut v = domain::validate::Validator::new();
            v.text("name", &name, 1, 200).slug("slug", &slug);
            v.finish().map_err(|e| anyhow!("{}", describe(&e)))?;
            let mut tx = pool.begin().await?;
            let (tenant, first) = create_tenant_with_admin(
                &mut tx,
                &Actor::cli(),
                &name,
                &slug,
                admin_email.as_deref(),
                chrono::Duration::days(7),
            )
            .await
            .map_err(|e| anyhow!("{}", describe(&e)))?;
            tx.commit().await?;
            println!(
                "created tenant {} ({}) id {}",
                tenant.name, tenant.slug, tenant.id
            );
            match first {
                FirstAdmin::None => {}
                FirstAdmin::Added(_) => {
                    println!("{} is its admin", admin_email.unwrap_or_default());
                }
                FirstAdmin::Invited(token) => println!(
                    "no account for {} yet: invitation token (valid 7 days, shown once): {token}",
                    admin_email.unwrap_or_default()
                ),
            }
        }
        TenantCommand::List => {
            let mut cursor = None;
            loop {
                let page = domain::page::PageRequest::parse(cursor.as_deref(), Some(200))?;
                let list = tenancy::list_tenants(&pool, None, page).await?;
                for t in &list.items {
                    println!("{}\t{}\t{}", t.id, t.slug, t.name);
                }
                match list.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
    }
    Ok(())
}

async fn user(global: &GlobalArgs, cmd: UserCommand) -> anyhow::Result<()> {
    let pool = db::connect(&global.database_url, 2).await?;
    match cmd {
        UserCommand::Create {
            email,
            name,
            password: given,
            tenant,
            role,
        } => {
            let mut v = domain::validate::Validator::new();
            v.email("email", email.trim()).text("name", &name, 1, 200);
            v.finish().map_err(|e| anyhow!("{}", describe(&e)))?;
            let (plain, generated) = new_password(given)?;
            let hash = password::hash(&plain)?;
            let mut tx = pool.begin().await?;
            let user = tenancy::create_user(&mut *tx, &email, &name, &hash)
                .await
                .map_err(|e| anyhow!("{}", describe(&e)))?;
            Entry::new(None, &Actor::cli(), "user.created", "user")
                .target(user.id)
                .new_value(&serde_json::json!({"email": user.email, "name": user.name}))
                .record(&mut *tx)
                .await?;
            if let Some(slug) = &tenant {
                let t = tenancy::tenant_by_slug(&mut *tx, slug)
                    .await
                    .map_err(|_| anyhow!("no tenant with slug `{slug}`"))?;
                tenancy::add_member(&mut *tx, t.id, user.id, role).await?;
                Entry::new(Some(t.id), &Actor::cli(), "member.added", "member")
                    .target(user.id)
                    .new_value(&serde_json::json!({"email": user.email, "role": role}))
                    .record(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            println!("created user {} id {}", user.email, user.id);
            if let Some(slug) = tenant {
                println!("member of {slug} as {role}");
            }
            if generated {
                println!("generated password (shown once): {plain}");
            }
        }
        UserCommand::SetPassword {
            email,
            password: given,
        } => {
            let (plain, generated) = new_password(given)?;
            let hash = password::hash(&plain)?;
            let mut tx = pool.begin().await?;
            let user = tenancy::user_by_email(&mut *tx, &email)
                .await?
                .ok_or_else(|| anyhow!("no user with email `{email}`"))?;
            tenancy::set_password(&mut *tx, user.id, &hash).await?;
            let ended = sessions::revoke_all_for_user(&mut *tx, user.id).await?;
            crate::auth::publish(&mut *tx, crate::auth::Invalidation::User(user.id)).await?;
            Entry::new(None, &Actor::cli(), "user.password_set", "user")
                .target(user.id)
                .record(&mut *tx)
                .await?;
            tx.commit().await?;
            println!("password set for {}; {ended} sessions ended", user.email);
            if generated {
                println!("generated password (shown once): {plain}");
            }
        }
    }
    Ok(())
}

async fn platform_admin(global: &GlobalArgs, cmd: PlatformAdminCommand) -> anyhow::Result<()> {
    let pool = db::connect(&global.database_url, 2).await?;
    match cmd {
        PlatformAdminCommand::Add { email } => {
            let mut tx = pool.begin().await?;
            let user = tenancy::user_by_email(&mut *tx, &email)
                .await?
                .ok_or_else(|| {
                    anyhow!(
                        "no user with email `{email}`: create it with `workflowops user create`"
                    )
                })?;
            if tenancy::add_platform_admin(&mut *tx, user.id, None).await? {
                Entry::new(None, &Actor::cli(), "platform_admin.added", "user")
                    .target(user.id)
                    .new_value(&serde_json::json!({"email": user.email}))
                    .record(&mut *tx)
                    .await?;
                crate::auth::publish(&mut *tx, crate::auth::Invalidation::User(user.id)).await?;
                println!("{} is now a platform admin", user.email);
            } else {
                println!("{} already was a platform admin", user.email);
            }
            tx.commit().await?;
        }
        PlatformAdminCommand::Remove { email } => {
            let mut tx = pool.begin().await?;
            let user = tenancy::user_by_email(&mut *tx, &email)
                .await?
                .ok_or_else(|| anyhow!("no user with email `{email}`"))?;
            if tenancy::remove_platform_admin(&mut *tx, user.id).await? {
                Entry::new(None, &Actor::cli(), "platform_admin.removed", "user")
                    .target(user.id)
                    .record(&mut *tx)
                    .await?;
                crate::auth::publish(&mut *tx, crate::auth::Invalidation::User(user.id)).await?;
                println!("{} is no longer a platform admin", user.email);
            } else {
                println!("{} was not a platform admin", user.email);
            }
            tx.commit().await?;
        }
        PlatformAdminCommand::List => {
            for u in tenancy::list_platform_admins(&pool).await? {
                println!("{}\t{}\t{}", u.id, u.email, u.name);
            }
        }
    }
    Ok(())
}

/// One line for a domain error on the command line.
fn describe(e: &domain::Error) -> String {
    match e {
        domain::Error::Validation(fields) => fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}
