//! Authentication and authorisation, in one place.
//!
//! A request carries `Authorization: Bearer <token>`: a session token (`wfo_s_…`, from login) or
//! a tenant API key (`wfo_k_…`). The `authenticate` middleware resolves it to a [`Principal`]
//! (tenant, user or key, role) once per request; route handlers then name what they need with an
//! extractor: [`Authenticated`] (anyone signed in), [`TenantCtx<P>`] (a member of the current
//! tenant whose role holds permission `P`), or [`PlatformAdmin`].
//!
//! Resolved tokens are cached in memory so a request costs no database round trip. Every change
//! that could revoke access (logout, key revocation, role change, removal) publishes an
//! invalidation with `pg_notify` in the same transaction; every server process listens and evicts
//! at once, and the cache's TTL bounds staleness should a notification be lost.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::audit::Actor;
use domain::entitlements::{self, Feature};
use domain::{Permission, Role, keys, sessions, tokens};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;

pub const INVALIDATION_CHANNEL: &str = "wfo_auth_invalidate";

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Subject {
    User {
        user_id: Uuid,
        session_id: Uuid,
        email: String,
        name: String,
    },
    ApiKey {
        key_id: Uuid,
        prefix: String,
        name: String,
        /// The person who created the key: answerable for what it does.
        created_by: Option<Uuid>,
    },
}

/// The tenant a principal acts in, and its role there.
#[derive(Debug, Clone)]
pub struct TenantAccess {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: Subject,
    pub tenant: Option<TenantAccess>,
    pub platform_admin: bool,
    pub expires_at: Option<DateTime<Utc>>,
    /// The platform admin acting as this user (an impersonation session, PLAT-005).
    pub impersonator: Option<Impersonator>,
}

/// Who is behind an impersonation session.
#[derive(Debug, Clone)]
pub struct Impersonator {
    pub user_id: Uuid,
    pub email: String,
}

impl Principal {
    pub fn user_id(&self) -> Option<Uuid> {
        match &self.subject {
            Subject::User { user_id, .. } => Some(*user_id),
            Subject::ApiKey { .. } => None,
        }
    }

    /// When the API key making a call expires: nothing it creates may outlive it.
    pub fn key_expiry(&self) -> Option<DateTime<Utc>> {
        match &self.subject {
            Subject::ApiKey { .. } => self.expires_at,
            Subject::User { .. } => None,
        }
    }

    /// The person answerable for a call: the user, or the one who created the API key used. A
    /// request is recorded under this person, so that they cannot approve it themselves with
    /// another credential.
    pub fn accountable_user(&self) -> Option<Uuid> {
        match &self.subject {
            Subject::User { user_id, .. } => Some(*user_id),
            Subject::ApiKey { created_by, .. } => *created_by,
        }
    }

    /// Refuses what an impersonation must not do: anything that would outlive it or reach past
    /// the user it acts as (minting API keys, switching tenants).
    pub fn refuse_impersonation(&self, what: &str) -> Result<(), ApiError> {
        match &self.impersonator {
            Some(by) => Err(ApiError::forbidden(
                "impersonation_restricted",
                format!(
                    "{what} is not allowed while impersonating (started by {})",
                    by.email
                ),
            )),
            None => Ok(()),
        }
    }

    /// Whether `inv` revokes this principal (not a mere cache flush: `All` is not a revocation).
    pub fn revoked_by(&self, inv: Invalidation) -> bool {
        inv != Invalidation::All && self.matches(inv)
    }

    fn matches(&self, inv: Invalidation) -> bool {
        match (inv, &self.subject) {
            (Invalidation::All, _) => true,
            // An impersonation goes with its admin too (demoted, disabled, password reset).
            (Invalidation::User(id), Subject::User { user_id, .. }) => {
                *user_id == id || self.impersonator.as_ref().is_some_and(|i| i.user_id == id)
            }
            (Invalidation::Session(id), Subject::User { session_id, .. }) => *session_id == id,
            (Invalidation::ApiKey(id), Subject::ApiKey { key_id, .. }) => *key_id == id,
            (Invalidation::Tenant(id), _) => self.tenant.as_ref().is_some_and(|t| t.id == id),
            _ => false,
        }
    }
}

/// Where a request came from, for the audit trail and the session record.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientMeta {
    fn from_request(req: &Request, trust_forwarded_for: bool) -> Self {
        let headers = req.headers();
        let forwarded = trust_forwarded_for
            .then(|| header_str(headers, "x-forwarded-for"))
            .flatten()
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_owned())
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok());
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        Self {
            ip: forwarded.or(peer),
            request_id: header_str(headers, "x-request-id").map(str::to_owned),
            user_agent: header_str(headers, header::USER_AGENT.as_str())
                .map(|ua| ua.chars().take(500).collect()),
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Something whose cached authorisations must be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    User(Uuid),
    Session(Uuid),
    ApiKey(Uuid),
    Tenant(Uuid),
    All,
}

impl Invalidation {
    fn payload(self) -> String {
        match self {
            Self::User(id) => format!("user:{id}"),
            Self::Session(id) => format!("session:{id}"),
            Self::ApiKey(id) => format!("key:{id}"),
            Self::Tenant(id) => format!("tenant:{id}"),
            Self::All => "all".into(),
        }
    }

    fn parse(payload: &str) -> Self {
        let parsed = payload.split_once(':').and_then(|(kind, id)| {
            let id = id.parse().ok()?;
            match kind {
                "user" => Some(Self::User(id)),
                "session" => Some(Self::Session(id)),
                "key" => Some(Self::ApiKey(id)),
                "tenant" => Some(Self::Tenant(id)),
                _ => None,
            }
        });
        // Anything unreadable drops everything: safe, if briefly slower.
        parsed.unwrap_or(Self::All)
    }
}

/// Tells every server process (including this one, once committed) to drop cached
/// authorisations. Call inside the transaction that makes the change.
pub async fn publish(db: impl PgExecutor<'_>, inv: Invalidation) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_notify($1, $2)")
        .bind(INVALIDATION_CHANNEL)
        .bind(inv.payload())
        .execute(db)
        .await?;
    Ok(())
}

struct CacheEntry {
    principal: Arc<Principal>,
    fresh_until: Instant,
}

/// Resolved tokens by hash.
pub struct AuthCache {
    entries: RwLock<HashMap<[u8; 32], CacheEntry>>,
    ttl: Duration,
    capacity: usize,
    /// Every invalidation, for what outlives a request: live streams end when theirs is revoked.
    revocations: tokio::sync::broadcast::Sender<Invalidation>,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            ttl,
            capacity: 100_000,
            revocations: tokio::sync::broadcast::channel(1024).0,
        }
    }

    /// The invalidations from now on (local and from other processes).
    pub fn revocations(&self) -> tokio::sync::broadcast::Receiver<Invalidation> {
        self.revocations.subscribe()
    }

    fn get(&self, hash: &[u8; 32]) -> Option<Arc<Principal>> {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(hash)
            .filter(|e| e.fresh_until > Instant::now())
            .map(|e| Arc::clone(&e.principal))
    }

    fn insert(&self, hash: [u8; 32], principal: Arc<Principal>) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= self.capacity {
            let now = Instant::now();
            entries.retain(|_, e| e.fresh_until > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            hash,
            CacheEntry {
                principal,
                fresh_until: Instant::now() + self.ttl,
            },
        );
    }

    /// Drops every cached principal the invalidation covers.
    pub fn evict(&self, inv: Invalidation) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|_, e| !e.principal.matches(inv));
        drop(entries);
        let _ = self.revocations.send(inv);
    }
}

/// The outcome of reading the Authorization header, left in the request's extensions for the
/// extractors: public routes ignore it, protected ones turn a failure into its 401.
#[derive(Clone)]
pub(crate) struct AuthOutcome(pub(crate) Result<Arc<Principal>, AuthFailure>);

#[derive(Debug, Clone)]
pub(crate) struct AuthFailure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AuthFailure {
    /// The store could not be asked (not the caller's fault).
    pub(crate) fn is_unavailable(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
    }

    fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code,
            message: message.into(),
        }
    }
}

impl From<AuthFailure> for ApiError {
    fn from(f: AuthFailure) -> Self {
        ApiError::new(f.status, f.code, f.message)
    }
}

/// Middleware: records where the request came from and resolves its bearer token, if any.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let meta = ClientMeta::from_request(&req, state.config.trust_forwarded_for);
    req.extensions_mut().insert(meta);
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let outcome = match token {
            Some(token) => resolve(&state, token).await,
            None => Err(AuthFailure::unauthenticated(
                "invalid_authorization",
                "the Authorization header must be `Bearer <token>`",
            )),
        };
        if let Ok(p) = &outcome {
            let span = tracing::Span::current();
            if let Some(t) = &p.tenant {
                span.record("tenant", tracing::field::display(&t.slug));
            }
        }
        req.extensions_mut().insert(AuthOutcome(outcome));
    } else if let Some(token) = session_cookie(req.headers()) {
        // The web UI's session cookie. A state-changing API call made with it must also carry
        // `X-CSRF-Token` (the page's token, which another origin cannot read).
        let safe = matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        let outcome = if !safe
            && req.uri().path().starts_with("/api/")
            && req
                .headers()
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                != Some(csrf_token(&token).as_str())
        {
            Err(AuthFailure {
                status: StatusCode::FORBIDDEN,
                code: "csrf_failed",
                message: "a request signed in by cookie needs the page's X-CSRF-Token header"
                    .into(),
            })
        } else {
            resolve(&state, &token).await
        };
        req.extensions_mut().insert(AuthOutcome(outcome));
    }
    next.run(req).await
}

/// The web UI's session cookie name.
pub const SESSION_COOKIE: &str = "wfo_session";

/// The session token in the `wfo_session` cookie, if any.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of a session: derived from the session token, so only a page that could read
/// it (served to the session's own browser) can send it.
pub fn csrf_token(session_token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(format!("wfo-csrf:{session_token}").as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn resolve(state: &AppState, token: &str) -> Result<Arc<Principal>, AuthFailure> {
    let hash = tokens::hash(token);
    if let Some(principal) = state.auth_cache.get(&hash) {
        if principal.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(expired(&principal.subject));
        }
        return Ok(principal);
    }
    let principal = if token.starts_with(tokens::SESSION_PREFIX) {
        resolve_session(state, &hash).await?
    } else if token.starts_with(tokens::API_KEY_PREFIX) {
        resolve_key(state, &hash).await?
    } else {
        return Err(invalid_token());
    };
    let principal = Arc::new(principal);
    state.auth_cache.insert(hash, Arc::clone(&principal));
    Ok(principal)
}

fn invalid_token() -> AuthFailure {
    AuthFailure::unauthenticated(
        "invalid_token",
        "the bearer token is not valid: sign in again (POST /api/v1/auth/login) or use a current API key",
    )
}

fn expired(subject: &Subject) -> AuthFailure {
    match subject {
        Subject::User { .. } => {
            AuthFailure::unauthenticated("token_expired", "the session has expired: sign in again")
        }
        Subject::ApiKey { .. } => {
            AuthFailure::unauthenticated("token_expired", "the API key has expired")
        }
    }
}

fn db_failure(e: &domain::Error) -> AuthFailure {
    tracing::error!(error = %e, "resolving a bearer token failed");
    AuthFailure {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "unavailable",
        message: "authentication is temporarily unavailable; retry shortly".into(),
    }
}

async fn resolve_session(state: &AppState, hash: &[u8; 32]) -> Result<Principal, AuthFailure> {
    let s = sessions::resolve(&state.db, hash)
        .await
        .map_err(|e| db_failure(&e))?
        .ok_or_else(invalid_token)?;
    if s.revoked_at.is_some() {
        return Err(AuthFailure::unauthenticated(
            "token_revoked",
            "this session has been signed out: sign in again",
        ));
    }
    if !s.impersonator_valid {
        return Err(AuthFailure::unauthenticated(
            "token_revoked",
            "this impersonation ended: its platform admin no longer has that role",
        ));
    }
    if s.user_disabled {
        return Err(AuthFailure::unauthenticated(
            "account_disabled",
            "this account is disabled",
        ));
    }
    let subject = Subject::User {
        user_id: s.user_id,
        session_id: s.session_id,
        email: s.email,
        name: s.name,
    };
    if s.expires_at <= Utc::now() {
        return Err(expired(&subject));
    }
    let tenant = match (s.tenant_id, s.tenant_slug, s.tenant_name, s.role) {
        (Some(id), Some(slug), Some(name), Some(role)) => Some(TenantAccess {
            id,
            slug,
            name,
            role,
        }),
        _ => None,
    };
    let impersonator = s.impersonator_user_id.map(|user_id| Impersonator {
        user_id,
        email: s.impersonator_email.unwrap_or_default(),
    });
    Ok(Principal {
        subject,
        tenant,
        platform_admin: s.platform_admin,
        expires_at: Some(s.expires_at),
        impersonator,
    })
}

async fn resolve_key(state: &AppState, hash: &[u8; 32]) -> Result<Principal, AuthFailure> {
    let k = keys::resolve(&state.db, hash)
        .await
        .map_err(|e| db_failure(&e))?
        .ok_or_else(invalid_token)?;
    if k.revoked_at.is_some() {
        return Err(AuthFailure::unauthenticated(
            "token_revoked",
            "this API key has been revoked",
        ));
    }
    let subject = Subject::ApiKey {
        key_id: k.key_id,
        prefix: k.prefix,
        name: k.name,
        created_by: k.created_by,
    };
    if k.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(expired(&subject));
    }
    // Last use is recorded on each resolution, i.e. at most once per cache TTL per key.
    let db = state.db.clone();
    let key_id = k.key_id;
    tokio::spawn(async move {
        if let Err(e) = keys::touch(&db, key_id).await {
            tracing::warn!(error = %e, "recording an API key's last use failed");
        }
    });
    Ok(Principal {
        subject,
        tenant: Some(TenantAccess {
            id: k.tenant_id,
            slug: k.tenant_slug,
            name: k.tenant_name,
            role: k.role,
        }),
        platform_admin: false,
        expires_at: k.expires_at,
        impersonator: None,
    })
}

/// Any signed-in caller.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Arc<Principal>,
    pub meta: ClientMeta,
}

impl Authenticated {
    pub fn actor(&self) -> Actor {
        actor(&self.principal, &self.meta)
    }
}

fn actor(principal: &Principal, meta: &ClientMeta) -> Actor {
    let (user_id, api_key_id, label) = match &principal.subject {
        Subject::User { user_id, email, .. } => (Some(*user_id), None, email.clone()),
        Subject::ApiKey { key_id, prefix, .. } => (None, Some(*key_id), prefix.clone()),
    };
    // An impersonation: the trail names both (PLAT-008).
    let label = match &principal.impersonator {
        Some(by) => format!("{label} (impersonated by {})", by.email),
        None => label,
    };
    Actor {
        user_id,
        api_key_id,
        label,
        impersonator_user_id: principal.impersonator.as_ref().map(|i| i.user_id),
        ip: meta.ip.clone(),
        request_id: meta.request_id.clone(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let meta = parts
            .extensions
            .get::<ClientMeta>()
            .cloned()
            .unwrap_or_default();
        match parts.extensions.get::<AuthOutcome>() {
            Some(AuthOutcome(Ok(principal))) => Ok(Self {
                principal: Arc::clone(principal),
                meta,
            }),
            Some(AuthOutcome(Err(failure))) => Err(failure.clone().into()),
            None => Err(ApiError::unauthenticated(
                "unauthenticated",
                "this endpoint needs `Authorization: Bearer <token>`: a session token from \
                 POST /api/v1/auth/login, or a tenant API key",
            )),
        }
    }
}

/// A permission, named at the type level so each route's extractor says what it needs.
pub trait Perm: Send + Sync + 'static {
    const PERMISSION: Permission;
}

/// Permission markers for [`TenantCtx`], one per [`Permission`].
pub mod perm {
    use super::{Perm, Permission};

    macro_rules! markers {
        ($($name:ident),* $(,)?) => {$(
            #[derive(Debug)]
            pub struct $name;
            impl Perm for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*};
    }

    markers!(
        ViewWorkflows,
        ViewExecutions,
        ViewObservability,
        UploadWorkflows,
        ExecutePromotions,
        ConfigurePipelines,
        ManageTeam,
        AccessBilling,
        ViewAuditLogs,
        ConfigureDriftPolicies,
        HardDeleteWorkflows,
        ViewTeam,
        ManageApiKeys,
        OperateRuns,
        ManageEnvironments,
        SyncEnvironments,
        ManageNotifications,
        UseSupport,
    );
}

/// A caller acting in its current tenant with a role that holds permission `P`.
#[derive(Debug)]
pub struct TenantCtx<P> {
    pub principal: Arc<Principal>,
    pub tenant: TenantAccess,
    pub meta: ClientMeta,
    _permission: PhantomData<P>,
}

impl<P> TenantCtx<P> {
    pub fn tenant_id(&self) -> Uuid {
        self.tenant.id
    }

    pub fn actor(&self) -> Actor {
        actor(&self.principal, &self.meta)
    }

    /// Refuses (403 `feature_not_in_plan`, logged for ENT-011) unless the tenant's plan grants
    /// `feature` for `provider` (ENT-001, PROV-003). `None` is for what spans every environment
    /// (an overview, a tenant-wide policy): then the plan of every provider the tenant has
    /// environments with must grant it (`domain::entitlements::Entitlements::grant`); pass the
    /// provider whenever the request concerns one environment or pipeline.
    pub async fn require(
        &self,
        db: &sqlx::PgPool,
        feature: Feature,
        provider: Option<&str>,
        action: &str,
    ) -> Result<(), ApiError> {
        let mut conn = db.acquire().await?;
        let asker = self.asker(action);
        Ok(entitlements::require(&mut conn, asker, feature, provider).await?)
    }

    /// This caller, for the refusal log.
    pub fn asker<'a>(&self, action: &'a str) -> entitlements::Asker<'a> {
        entitlements::Asker {
            tenant_id: self.tenant.id,
            user_id: self.principal.user_id(),
            action,
        }
    }
}

impl<S: Send + Sync, P: Perm> FromRequestParts<S> for TenantCtx<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated { principal, meta } =
            Authenticated::from_request_parts(parts, state).await?;
        let tenant = principal.tenant.clone().ok_or_else(|| {
            ApiError::forbidden(
                "no_tenant",
                "you are not acting in a tenant: choose one with POST /api/v1/auth/switch-tenant",
            )
        })?;
        if !tenant.role.allows(P::PERMISSION) {
            let permission = serde_json::to_value(P::PERMISSION)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(ApiError::forbidden(
                "forbidden",
                format!(
                    "your role `{}` does not have the `{permission}` permission",
                    tenant.role
                ),
            ));
        }
        Ok(Self {
            principal,
            tenant,
            meta,
            _permission: PhantomData,
        })
    }
}

/// A signed-in platform admin (a user, never an API key).
#[derive(Debug)]
pub struct PlatformAdmin {
    pub user_id: Uuid,
    pub principal: Arc<Principal>,
    pub meta: ClientMeta,
}

impl PlatformAdmin {
    pub fn actor(&self) -> Actor {
        actor(&self.principal, &self.meta)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PlatformAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated { principal, meta } =
            Authenticated::from_request_parts(parts, state).await?;
        match principal.user_id() {
            Some(user_id) if principal.platform_admin => Ok(Self {
                user_id,
                principal,
                meta,
            }),
            _ => Err(ApiError::forbidden(
                "platform_admin_required",
                "this endpoint is for platform administrators",
            )),
        }
    }
}

/// Keeps every process's cache in step: evicts on each notification, and drops everything when
/// the listening connection was lost (notifications may have been missed meanwhile).
pub async fn listen_for_invalidations(
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&state.db).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "auth invalidation listener cannot connect; retrying");
                state.auth_cache.evict(Invalidation::All);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(e) = listener.listen(INVALIDATION_CHANNEL).await {
            tracing::warn!(error = %e, "auth invalidation listener cannot subscribe; retrying");
            continue;
        }
        // Anything cached before we were listening may be stale.
        state.auth_cache.evict(Invalidation::All);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                msg = listener.try_recv() => match msg {
                    Ok(Some(n)) => state.auth_cache.evict(Invalidation::parse(n.payload())),
                    Ok(None) => {
                        tracing::warn!("auth invalidation listener reconnected; dropping the auth cache");
                        state.auth_cache.evict(Invalidation::All);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "auth invalidation listener failed; reconnecting");
                        state.auth_cache.evict(Invalidation::All);
                        break;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(user: Uuid, session: Uuid, tenant: Uuid) -> Arc<Principal> {
        Arc::new(Principal {
            subject: Subject::User {
                user_id: user,
                session_id: session,
                email: "a@b.example".into(),
                name: "A".into(),
            },
            tenant: Some(TenantAccess {
                id: tenant,
                slug: "t".into(),
                name: "T".into(),
                role: Role::Admin,
            }),
            platform_admin: false,
            expires_at: None,
            impersonator: None,
        })
    }

    #[test]
    fn only_a_matching_invalidation_revokes_a_principal_a_cache_flush_does_not() {
        let (user, session, tenant) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let p = principal(user, session, tenant);
        assert!(p.revoked_by(Invalidation::Session(session)));
        assert!(p.revoked_by(Invalidation::User(user)));
        assert!(p.revoked_by(Invalidation::Tenant(tenant)));
        assert!(!p.revoked_by(Invalidation::Session(Uuid::now_v7())));
        assert!(
            !p.revoked_by(Invalidation::All),
            "a cache flush is not a revocation"
        );
    }

    #[test]
    fn eviction_drops_exactly_the_matching_principals() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let (u1, u2, s1, s2, t) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        cache.insert([1; 32], principal(u1, s1, t));
        cache.insert([2; 32], principal(u2, s2, t));
        cache.evict(Invalidation::Session(s1));
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[2; 32]).is_some());
        cache.evict(Invalidation::Tenant(t));
        assert!(cache.get(&[2; 32]).is_none());
    }

    #[test]
    fn invalidations_round_trip_and_garbage_means_all() {
        let id = Uuid::now_v7();
        for inv in [
            Invalidation::User(id),
            Invalidation::Session(id),
            Invalidation::ApiKey(id),
            Invalidation::Tenant(id),
            Invalidation::All,
        ] {
            assert_eq!(Invalidation::parse(&inv.payload()), inv);
        }
        assert_eq!(Invalidation::parse("user:nonsense"), Invalidation::All);
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = AuthCache::new(Duration::ZERO);
        cache.insert(
            [3; 32],
            principal(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()),
        );
        assert!(cache.get(&[3; 32]).is_none());
    }
}
