//! The real application on a loopback port, over a fresh database, with fixtures and a client.

use std::sync::OnceLock;

use api::app::{AppConfig, AppState};
use domain::crypto::Keyring;
use domain::{Role, keys, password, sessions, tenancy};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::TestDb;

/// Every fixture user's password.
pub const FIXTURE_PASSWORD: &str = "fixture-password-123";

fn fixture_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| password::hash(FIXTURE_PASSWORD).unwrap_or_default())
}

/// Someone who can call the API: a signed-in user or an API key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: String,
    pub user_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub email: String,
}

impl Caller {
    /// A caller known only by its token (a token an answer handed out, e.g. a rotated key or an
    /// impersonation session).
    pub fn bearer(token: &str) -> Self {
        Self {
            token: token.to_owned(),
            user_id: None,
            key_id: None,
            email: String::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TenantFixture {
    pub id: Uuid,
    pub slug: String,
    pub admin: Caller,
}

/// A response, with its body parsed as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The problem `code` of an error response.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    // Dropped last: the server must stop before its database goes.
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut AppConfig)) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = TestDb::new()
            .await
            .unwrap_or_else(|e| panic!("test database: {e:#}"));
        let keyring =
            Keyring::new(&Keyring::generate(), &[]).unwrap_or_else(|e| panic!("keyring: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local addr: {e}"));
        let base = format!("http://{addr}");
        let mut config = AppConfig::new(base.clone());
        // Every peer of these tests (providers, Git, GitHub) listens on loopback; a test of the
        // outbound checks sets its own `outbound` in `configure`.
        config.outbound = adapters::net::Outbound::Any;
        configure(&mut config);
        let state = AppState::new(db.pool.clone(), keyring, config);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(api::server::run(state.clone(), listener, shutdown.clone()));
        Self {
            base,
            state,
            http: reqwest::Client::new(),
            shutdown,
            server: Some(server),
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and waits for it (tests of shutdown; otherwise Drop does it).
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// A tenant with an admin who is signed in.
    /// A platform admin: the admin of a new tenant `ops`, granted platform admin.
    pub async fn platform_admin(&self) -> Caller {
        let ops = self.tenant("ops").await;
        tenancy::add_platform_admin(&self.db.pool, ops.admin.user_id.unwrap_or_default(), None)
            .await
            .unwrap_or_else(|e| panic!("add platform admin: {e}"));
        ops.admin
    }

    /// A tenant on the Enterprise plan of every provider (everything allowed, no limits but the
    /// server's), with an admin who is signed in.
    pub async fn tenant(&self, slug: &str) -> TenantFixture {
        self.tenant_on(slug, "enterprise").await
    }

    /// A tenant on the plan `plan` (free, pro, agency, enterprise) of every provider.
    pub async fn tenant_on(&self, slug: &str, plan: &str) -> TenantFixture {
        let tenant = tenancy::create_tenant(&self.db.pool, &format!("Tenant {slug}"), slug)
            .await
            .unwrap_or_else(|e| panic!("create tenant: {e}"));
        sqlx::query(
            "update tenant_subscriptions s set plan_id = p.id, source = 'manual' from plans p \
             where s.tenant_id = $1 and p.provider = s.provider and p.key = $2",
        )
        .bind(tenant.id)
        .bind(plan)
        .execute(&self.db.pool)
        .await
        .unwrap_or_else(|e| panic!("put the tenant on {plan}: {e}"));
        let admin = self.user_in(tenant.id, slug, Role::Admin).await;
        TenantFixture {
            id: tenant.id,
            slug: slug.to_owned(),
            admin,
        }
    }

    /// A new user with `role` in the tenant, signed in there.
    pub async fn member(&self, tenant: &TenantFixture, role: Role) -> Caller {
        self.user_in(tenant.id, &tenant.slug, role).await
    }

    async fn user_in(&self, tenant_id: Uuid, slug: &str, role: Role) -> Caller {
        let email = format!("{role}-{}@{slug}.example", Uuid::now_v7().simple());
        let user = tenancy::create_user(
            &self.db.pool,
            &email,
            &format!("{role} of {slug}"),
            fixture_hash(),
        )
        .await
        .unwrap_or_else(|e| panic!("create user: {e}"));
        tenancy::add_member(&self.db.pool, tenant_id, user.id, role)
            .await
            .unwrap_or_else(|e| panic!("add member: {e}"));
        let session = sessions::create(
            &self.db.pool,
            sessions::NewSession {
                user_id: user.id,
                tenant_id: Some(tenant_id),
                ttl: chrono::Duration::hours(1),
                ip: None,
                user_agent: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("create session: {e}"));
        Caller {
            token: session.token.plaintext,
            user_id: Some(user.id),
            key_id: None,
            email,
        }
    }

    /// An API key with `role` in the tenant.
    pub async fn api_key(&self, tenant: &TenantFixture, role: Role) -> Caller {
        let (minted, key) = keys::create(
            &self.db.pool,
            keys::NewKey {
                tenant_id: tenant.id,
                name: "fixture key",
                role,
                created_by: None,
                expires_at: None,
                rotated_from: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("create key: {e}"));
        Caller {
            token: minted.token.plaintext,
            user_id: None,
            key_id: Some(key.id),
            email: minted.prefix,
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        Self::read(res).await
    }

    pub async fn read(res: reqwest::Response) -> Resp {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, caller: &Caller) -> Resp {
        self.request(Method::GET, path, Some(&caller.token), None)
            .await
    }

    pub async fn post(&self, path: &str, caller: &Caller, body: &Value) -> Resp {
        self.request(Method::POST, path, Some(&caller.token), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, caller: &Caller, body: &Value) -> Resp {
        self.request(Method::PUT, path, Some(&caller.token), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, caller: &Caller, body: &Value) -> Resp {
        self.request(Method::PATCH, path, Some(&caller.token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, caller: &Caller) -> Resp {
        self.request(Method::DELETE, path, Some(&caller.token), None)
            .await
    }

    /// How many rows a table has (for "nothing was half-written" checks).
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .fetch_one(&self.db.pool)
            .await
            .unwrap_or_else(|e| panic!("count {table}: {e}"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
