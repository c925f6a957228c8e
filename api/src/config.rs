//! The one typed configuration: command-line flags, each with a `WFO_*` environment variable
//! (and `DATABASE_URL`). Nothing else in the code base reads the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

/// WorkflowOps governs n8n and Make.com workflows across dev, staging and production: sync,
/// promotions with gates and approvals, snapshots, drift detection, Git backups, audit.
#[derive(Debug, Parser)]
#[command(
    name = "workflowops",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "New here? `workflowops dev` starts everything on a local PostgreSQL.\n\
Every flag can also be set through the environment variable shown beside it."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        default_value = "postgres://localhost:5432/workflowops",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Maximum connections in this process's database pool.
    #[arg(long, env = "WFO_DB_MAX_CONNECTIONS", global = true, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,
    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info`, `workflowops_api=debug,info`).
    #[arg(
        long,
        env = "WFO_LOG",
        global = true,
        default_value = "info,sqlx::postgres::notice=warn"
    )]
    pub log: String,
    /// Log format: `json` for machines, `pretty` for people, `auto` = pretty on a terminal.
    #[arg(long, env = "WFO_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (REST, SSE, OpenAPI and web UI).
    Serve(ServeArgs),
    /// Run a worker process that executes queued runs.
    Worker(WorkerArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Run everything locally for development: creates the database, migrates, starts the API with
    /// in-process workers and a demo tenant, and prints how to log in.
    Dev(DevArgs),
    /// Print a new random master key for WFO_MASTER_KEY.
    Keygen,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Grant or revoke platform administration (cross-tenant support access).
    #[command(subcommand, name = "platform-admin")]
    PlatformAdmin(PlatformAdminCommand),
    /// Manage stored secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Measure this machine: engine throughput, latency and recovery against same-run baselines.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The durable run engine (scratch databases on DATABASE_URL's server; needs pgbench).
    Engine(BenchArgs),
    /// Live event delivery to many SSE subscribers on one API process.
    Sse(SseBenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SseBenchArgs {
    /// Concurrent subscribers of the tenant event stream.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Runs to execute while they listen (each makes three state events).
    #[arg(long, default_value_t = 1000)]
    pub runs: usize,
    /// Milliseconds between two runs' enqueues (20: 150 state events a second, each to every
    /// subscriber).
    #[arg(long, default_value_t = 20)]
    pub every_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Runs per throughput figure (20,000 last a second or two: with fewer, the figure is mostly
    /// the worker processes starting up).
    #[arg(long, default_value_t = 20_000)]
    pub runs: usize,
    /// Slots per worker process.
    #[arg(long, default_value_t = 32)]
    pub concurrency: u32,
    /// Rounds of the 1-step figures: each round measures ours and the apalis baseline back to
    /// back (1 worker, then 2), and the bench prints the medians (a machine's speed drifts by
    /// ±10% within minutes; one measurement each can land on either side of a target).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of pgbench for the commit-rate baseline.
    #[arg(long, default_value_t = 15)]
    pub pgbench_seconds: u64,
    /// Sequential runs for the enqueue-to-start latency.
    #[arg(long, default_value_t = 1000)]
    pub latency_runs: usize,
    /// Finished runs to preload for the large-table figure (a tenth as many future runs); 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    pub history: i64,
    /// The apalis-postgres baseline binary (build `bench/apalis-baseline`); measured in the same
    /// run with the same job count and concurrency when given.
    #[arg(long)]
    pub apalis: Option<std::path::PathBuf>,
    /// Jobs apalis fetches per query (its best setting here was 100).
    #[arg(long, default_value_t = 100)]
    pub apalis_batch: u32,
}

/// The master key that encrypts stored secrets.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Master key for secrets at rest: 32 random bytes, base64 (`workflowops keygen` makes one).
    #[arg(long, env = "WFO_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<SecretString>,
    /// Previous master keys, comma-separated, still accepted for reading until `secrets rotate` ran.
    #[arg(
        long,
        env = "WFO_MASTER_KEY_PREVIOUS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub master_key_previous: Vec<SecretString>,
}

/// Email and where notifications may go (serve, worker and dev).
#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    /// SMTP server for email notifications: `smtp://[user:password@]host[:port]` (add
    /// `?tls=required` for STARTTLS) or `smtps://…`; unset, email channels cannot deliver.
    #[arg(long, env = "WFO_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SecretString>,
    /// Sender of notification emails.
    #[arg(
        long,
        env = "WFO_SMTP_FROM",
        default_value = "WorkflowOps <workflowops@localhost>"
    )]
    pub smtp_from: String,
    /// Let Slack and webhook channels reach loopback and private addresses (a single-network
    /// installation; otherwise tenants could make the server call into its network). Link-local
    /// (cloud metadata), multicast, documentation and reserved addresses stay refused.
    #[arg(long, env = "WFO_NOTIFY_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub notify_allow_private: bool,
}

impl NotifyArgs {
    pub fn settings(&self) -> anyhow::Result<jobs::notify::Settings> {
        use secrecy::ExposeSecret;
        let mailer = match &self.smtp_url {
            Some(url) => Some(std::sync::Arc::new(
                jobs::notify::Mailer::new(url.expose_secret(), &self.smtp_from)
                    .map_err(|e| anyhow::anyhow!(e))?,
            )),
            None => None,
        };
        Ok(jobs::notify::Settings {
            mailer,
            allow_private: self.notify_allow_private,
        })
    }
}

/// Which networks calls to providers and Git may reach (`WFO_OUTBOUND_NETWORKS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutboundNetworks {
    /// Public addresses only (multi-tenant installations).
    Public,
    /// Public and private addresses: RFC 1918, unique local fc00::/7, CGNAT 100.64/10
    /// (self-hosted n8n and Git servers).
    Private,
    /// Public, private and loopback addresses (everything on one machine).
    Any,
}

impl From<OutboundNetworks> for adapters::net::Outbound {
    fn from(value: OutboundNetworks) -> Self {
        match value {
            OutboundNetworks::Public => Self::Public,
            OutboundNetworks::Private => Self::Private,
            OutboundNetworks::Any => Self::Any,
        }
    }
}

/// Where calls to providers (n8n, Make), Git remotes and the GitHub API may go (serve, worker).
#[derive(Debug, Clone, Args)]
pub struct OutboundArgs {
    /// Networks that calls to providers, Git remotes and the GitHub API may reach: `public`,
    /// `private` (also RFC 1918, fc00::/7, CGNAT) or `any` (also loopback). Link-local (cloud
    /// metadata), unspecified, multicast, broadcast and reserved addresses are always refused.
    #[arg(long, env = "WFO_OUTBOUND_NETWORKS", value_enum, default_value_t = OutboundNetworks::Private)]
    pub outbound_networks: OutboundNetworks,
}

/// Stripe, for paid plans (BILL-*). Unset: plans are assigned by platform admins only.
#[derive(Debug, Clone, Args)]
pub struct StripeArgs {
    /// Stripe secret key (`sk_live_…`, `sk_test_…` or a restricted `rk_…` key).
    #[arg(long, env = "WFO_STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<SecretString>,
    /// Signing secret of the webhook endpoint `<public URL>/api/v1/billing/webhook` (`whsec_…`).
    #[arg(long, env = "WFO_STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<SecretString>,
    /// Stripe's API base URL (default https://api.stripe.com/; a stand-in for tests).
    #[arg(long, env = "WFO_STRIPE_API_BASE", hide = true)]
    pub stripe_api_base: Option<String>,
}

impl StripeArgs {
    pub fn client(&self) -> anyhow::Result<Option<billing::Stripe>> {
        let Some(key) = &self.stripe_secret_key else {
            return Ok(None);
        };
        if self.stripe_webhook_secret.is_none() {
            anyhow::bail!(
                "WFO_STRIPE_WEBHOOK_SECRET is required with WFO_STRIPE_SECRET_KEY: without it no subscription would ever become active"
            );
        }
        Ok(Some(
            billing::Stripe::new(billing::StripeConfig {
                secret_key: key.clone(),
                api_base: self.stripe_api_base.clone(),
                webhook_secret: self.stripe_webhook_secret.clone(),
            })
            .map_err(|e| anyhow::anyhow!("Stripe: {e}"))?,
        ))
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WFO_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// The URL people reach this server at, used in links (invitations); defaults to http://<bind>.
    #[arg(long, env = "WFO_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Apply pending migrations at start-up (turn off to migrate separately with `migrate`).
    #[arg(long, env = "WFO_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    /// How long a login session lasts (e.g. 30m, 12h, 7d).
    #[arg(long, env = "WFO_SESSION_TTL", default_value = "12h", value_parser = parse_duration)]
    pub session_ttl: Duration,
    /// How long an invitation can be accepted.
    #[arg(long, env = "WFO_INVITATION_TTL", default_value = "7d", value_parser = parse_duration)]
    pub invitation_ttl: Duration,
    /// How long a resolved token is trusted without asking the database; revocations are pushed to
    /// every server at once, so this only bounds staleness if that push is lost.
    #[arg(long, env = "WFO_AUTH_CACHE_TTL", default_value = "60s", value_parser = parse_duration)]
    pub auth_cache_ttl: Duration,
    /// Live event streams are delivered on PostgreSQL notifications; as a safety net the API
    /// re-reads the namespaces it streams this often, and each subscriber its own position every
    /// 2.5 times as long.
    #[arg(long, env = "WFO_EVENT_POLL", default_value = "2s", value_parser = parse_duration)]
    pub event_poll: Duration,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "WFO_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Time limit for one request (streams excepted).
    #[arg(long, env = "WFO_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// How long finished runs (and their steps and events) are kept before the hourly prune.
    #[arg(long, env = "WFO_RUN_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub run_retention: Duration,
    /// How long audited reads of the runs API are kept before the hourly prune (changes are kept).
    #[arg(long, env = "WFO_READ_AUDIT_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub read_audit_retention: Duration,
    /// How long executions synced from providers are kept.
    #[arg(long, env = "WFO_EXECUTION_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub execution_retention: Duration,
    /// How long scheduled (`auto_backup`) snapshots are listed (whole days; an environment's
    /// Git setting `snapshot_retention_days` overrides it). The commits stay in Git.
    #[arg(long, env = "WFO_SNAPSHOT_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub snapshot_retention: Duration,
    /// Accept local paths as Git remotes (single-machine setups; never on shared servers).
    #[arg(long, env = "WFO_GIT_ALLOW_LOCAL", default_value_t = false, action = clap::ArgAction::Set)]
    pub git_allow_local: bool,
    /// Take the client address from X-Forwarded-For (only behind a proxy you control).
    #[arg(long, env = "WFO_TRUST_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded_for: bool,
    /// Most environments of one provider a tenant may connect when its plan has no limit (plans
    /// with a limit, and a tenant's own limit set by a platform admin, apply as they are).
    #[arg(long, env = "WFO_MAX_ENVIRONMENTS", default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub max_environments: i64,
    #[command(flatten)]
    pub notify: NotifyArgs,
    #[command(flatten)]
    pub outbound: OutboundArgs,
    #[command(flatten)]
    pub stripe: StripeArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Runs this worker executes at once.
    #[arg(long, env = "WFO_WORKER_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Claimed runs kept waiting for a slot, so a slot that frees starts the next run at once
    /// (default: eight times --concurrency; never more than the worker finished in the last
    /// quarter second; 0 claims only for free slots).
    #[arg(long, env = "WFO_WORKER_PREFETCH", value_parser = clap::value_parser!(u32).range(0..=4096))]
    pub prefetch: Option<u32>,
    /// Name shown to operators (default: host:pid).
    #[arg(long, env = "WFO_WORKER_NAME")]
    pub name: Option<String>,
    /// How often the worker reports it is alive and extends its leases.
    #[arg(long, env = "WFO_WORKER_HEARTBEAT", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// How long a claimed run stays this worker's without a heartbeat: the fallback that frees
    /// the runs of a machine that vanished without its database session ending (a dead process
    /// is noticed at once, by its session). At least twice --heartbeat.
    #[arg(long, env = "WFO_WORKER_LEASE", default_value = "30s", value_parser = parse_duration)]
    pub lease: Duration,
    /// Only run these job kinds (comma-separated); default: every kind.
    #[arg(long, env = "WFO_WORKER_KINDS", value_delimiter = ',')]
    pub kinds: Option<Vec<String>>,
    /// Serve this worker's Prometheus metrics at http://<address>/metrics.
    #[arg(long, env = "WFO_WORKER_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    #[command(flatten)]
    pub notify: NotifyArgs,
    #[command(flatten)]
    pub outbound: OutboundArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Address to listen on.
    #[arg(long, env = "WFO_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Folder for the generated master key and demo login.
    #[arg(long, env = "WFO_DEV_DIR", default_value = ".workflowops")]
    pub dir: PathBuf,
    /// In-process worker slots.
    #[arg(long, env = "WFO_WORKER_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u32,
    /// Networks that calls to providers, Git remotes and the GitHub API may reach; `any` here
    /// (a development machine calls emulators and servers on 127.0.0.1), see `serve --help`.
    #[arg(long, env = "WFO_OUTBOUND_NETWORKS", value_enum, default_value_t = OutboundNetworks::Any)]
    pub outbound_networks: OutboundNetworks,
    /// Accept local paths as Git remotes (a bare repository on this machine).
    #[arg(long, env = "WFO_GIT_ALLOW_LOCAL", default_value_t = false, action = clap::ArgAction::Set)]
    pub git_allow_local: bool,
    #[command(flatten)]
    pub notify: NotifyArgs,
    #[command(flatten)]
    pub stripe: StripeArgs,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant, optionally with its first admin.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// URL-safe identifier (lowercase letters, digits, dashes).
        #[arg(long)]
        slug: String,
        /// Email of an existing user to make the tenant's admin.
        #[arg(long)]
        admin_email: Option<String>,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints a generated password unless one is given.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Password (at least 12 characters); read from WFO_NEW_PASSWORD, or generated.
        #[arg(long, env = "WFO_NEW_PASSWORD", hide_env_values = true)]
        password: Option<SecretString>,
        /// Add the user to this tenant (slug)...
        #[arg(long)]
        tenant: Option<String>,
        /// ...with this role.
        #[arg(long, default_value = "viewer", requires = "tenant", value_parser = parse_role)]
        role: domain::Role,
    },
    /// Set a user's password and end their sessions; prints a generated one unless given.
    SetPassword {
        #[arg(long)]
        email: String,
        #[arg(long, env = "WFO_NEW_PASSWORD", hide_env_values = true)]
        password: Option<SecretString>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlatformAdminCommand {
    /// Make an existing user a platform admin.
    Add {
        #[arg(long)]
        email: String,
    },
    /// Revoke a platform admin.
    Remove {
        #[arg(long)]
        email: String,
    },
    /// List platform admins.
    List,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every stored secret with the current master key (after changing WFO_MASTER_KEY
    /// and moving the old one to WFO_MASTER_KEY_PREVIOUS).
    Rotate {
        #[command(flatten)]
        keys: KeyArgs,
    },
}

fn parse_role(s: &str) -> Result<domain::Role, String> {
    s.parse()
        .map_err(|e: domain::rbac::UnknownRole| e.to_string())
}

/// Parses `90s`, `15m`, `12h`, `7d` (or plain seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (use e.g. 90s, 15m, 12h, 7d)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}` has an unknown unit (use s, m, h or d)")),
    };
    if secs == 0 {
        return Err("must be longer than zero".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn outbound_networks_default_to_private_and_to_any_for_dev() {
        let parse =
            |args: &[&str]| Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Command::Serve(serve) = parse(&["workflowops", "serve"]).command else {
            panic!("serve");
        };
        assert_eq!(serve.outbound.outbound_networks, OutboundNetworks::Private);
        let Command::Worker(worker) =
            parse(&["workflowops", "worker", "--outbound-networks", "public"]).command
        else {
            panic!("worker");
        };
        assert_eq!(worker.outbound.outbound_networks, OutboundNetworks::Public);
        let Command::Dev(dev) = parse(&["workflowops", "dev"]).command else {
            panic!("dev");
        };
        assert_eq!(dev.outbound_networks, OutboundNetworks::Any);
        assert!(
            Cli::try_parse_from(["workflowops", "serve", "--outbound-networks", "all"]).is_err()
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
