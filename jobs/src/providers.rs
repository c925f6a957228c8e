//! What jobs share to reach providers: the keyring that opens environments' API keys, one
//! HTTP client (connection pool) for every adapter, and which networks those calls and Git
//! may reach (`WFO_OUTBOUND_NETWORKS`).

use std::sync::Arc;

use adapters::net::{HttpClient, Outbound};
use adapters::{Connection, Limits, Provider, ProviderError, ProviderKind};
use domain::crypto::Keyring;
use engine::JobError;
use uuid::Uuid;

/// The dependencies of provider-facing jobs.
#[derive(Debug, Clone)]
pub struct Deps {
    pub keyring: Arc<Keyring>,
    /// For providers and the GitHub API: reaches only the networks `outbound` allows, follows
    /// no redirect.
    pub http: HttpClient,
    /// Where working copies of Git repositories are kept between backups (a cache: losing it
    /// costs one fresh fetch).
    pub git_cache: std::path::PathBuf,
    /// Outgoing email and where notifications may go.
    pub notify: crate::notify::Settings,
}

impl Deps {
    /// Dependencies with the default settings: outbound calls limited to public and private
    /// networks, notifications to public endpoints.
    pub fn new(keyring: Arc<Keyring>) -> Self {
        Self {
            keyring,
            http: http_client_for(Outbound::default()),
            git_cache: std::env::var_os("WFO_GIT_CACHE_DIR")
                .map_or_else(|| std::env::temp_dir().join("workflowops-git"), Into::into),
            notify: crate::notify::Settings::default(),
        }
    }

    /// These dependencies with `notify` as the notification settings.
    #[must_use]
    pub fn with_notify(mut self, notify: crate::notify::Settings) -> Self {
        self.notify = notify;
        self
    }

    /// These dependencies with calls to providers and Git limited to what `outbound` allows.
    #[must_use]
    pub fn with_outbound(mut self, outbound: Outbound) -> Self {
        self.http = http_client_for(outbound);
        self
    }

    /// Which networks calls to providers and Git may reach.
    pub fn outbound(&self) -> Outbound {
        self.http.outbound()
    }

    /// The adapter for an environment of `tenant_id`.
    pub async fn provider(
        &self,
        db: &sqlx::PgPool,
        tenant_id: Uuid,
        environment_id: Uuid,
    ) -> Result<Arc<dyn Provider>, JobError> {
        let mut conn = db.acquire().await?;
        let access =
            domain::environments::access(&mut conn, &self.keyring, tenant_id, environment_id)
                .await
                .map_err(domain_error)?;
        connect(&self.http, &access).map_err(provider_error)
    }
}

/// The adapter for `access` (also used by the API's connection tests).
pub fn connect(
    http: &HttpClient,
    access: &domain::environments::Access,
) -> Result<Arc<dyn Provider>, ProviderError> {
    let kind = ProviderKind::parse(&access.provider).ok_or_else(|| {
        ProviderError::Unsupported(format!("unknown provider `{}`", access.provider))
    })?;
    adapters::connect(
        http,
        Connection {
            kind,
            base_url: access.base_url.clone(),
            api_key: access.api_key.clone(),
            version: access.version.clone(),
            limits: Limits {
                per_second: access.rate_limit,
                concurrency: u32::try_from(access.max_concurrency).unwrap_or(1),
                ..Limits::default()
            },
        },
    )
}

/// The HTTP client adapters share, reaching what `outbound` allows and following no
/// redirect: rustls (with ring, installed here if the process has not chosen a provider yet),
/// bounded idle pool.
pub fn http_client_for(outbound: Outbound) -> HttpClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = || {
        reqwest::Client::builder()
            .user_agent(concat!("workflowops/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .pool_max_idle_per_host(8)
    };
    // Building fails only without a TLS provider, installed just above; a client without the
    // pool settings still has the guard and no redirects.
    HttpClient::build(builder(), outbound)
        .or_else(|_| HttpClient::build(reqwest::Client::builder(), outbound))
        .unwrap_or_else(|e| panic!("building the provider HTTP client: {e}"))
}

/// [`http_client_for`] with loopback allowed (`Outbound::Any`): for tools and tests whose
/// providers are loopback peers. The server's own calls use its setting (see [`Deps`]).
pub fn http_client() -> HttpClient {
    http_client_for(Outbound::Any)
}

/// A provider failure as the engine sees it: transient ones are retried (after the provider's
/// Retry-After when it gave one), the rest fail the run with the adapter's message. By value, to
/// fit `map_err`.
#[allow(clippy::needless_pass_by_value)]
pub fn provider_error(e: ProviderError) -> JobError {
    if e.is_transient() {
        JobError::Transient {
            message: e.to_string(),
            retry_after: e.retry_after(),
        }
    } else {
        JobError::permanent(e.to_string())
    }
}

pub fn domain_error(e: domain::Error) -> JobError {
    match e {
        domain::Error::Database(e) => JobError::transient(format!("database: {e}")),
        other => JobError::permanent(other.to_string()),
    }
}
