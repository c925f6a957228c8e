//! The web UI: server-rendered pages (askama templates in `api/templates/`) under `/`, signed in
//! by an HttpOnly session cookie, served by the same process with the same domain services and
//! RBAC as the API. Pages render what the domain returns; actions go through the JSON API from a
//! small script of our own (`api/static/app.js`), which sends the page's CSRF token, shows the
//! API's error messages inline, and follows runs live over their SSE stream (one connection per
//! page).
//!
//! Platform admins also get the console (`/platform`) and may impersonate a tenant's user; the
//! browser then keeps the admin's own session in a second cookie (see `impersonation.rs`).
//!
//! Every HTML page is sent with `Cache-Control: no-store`, so that Back after signing out cannot
//! show a signed-in page from the browser's cache; a path no route knows gets an HTML 404 page
//! when a browser asks for one, in the layout when signed in (the API's paths always answer
//! JSON), and so does a page link whose id does not parse (`/runs/xyz`, see `pages/path.rs`).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Router, middleware};
use domain::page::PageRequest;
use domain::{Permission, Role};
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{
    AuthOutcome, Authenticated, ClientMeta, Principal, SESSION_COOKIE, Subject, csrf_token,
    session_cookie,
};

mod approvals;
mod billing;
mod impersonation;
mod invitations;
mod notifications;
mod pages;
mod plans;
mod platform;
mod platform_lists;
mod support;
mod support_console;
mod team;

pub use impersonation::ADMIN_SESSION_COOKIE;

pub fn router() -> Router<AppState> {
    let assets = Router::new()
        .route("/static/app.js", get(script))
        .route("/static/team.js", get(team_script))
        .route("/static/app.css", get(style))
        .route("/static/favicon.svg", get(favicon))
        .route("/favicon.ico", get(favicon));
    pages()
        // Any other path: an HTML 404 for a browser, the API's JSON problem for the rest.
        .route("/{*path}", any(not_found_page))
        .layer(middleware::map_response(no_store))
        .merge(assets)
}

fn pages() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route(
            "/invitations/accept",
            get(invitations::page).post(invitations::accept),
        )
        .route("/approvals", get(approvals::approvals))
        .route("/approvals/pending-count", get(approvals::pending_count))
        .route("/", get(pages::dashboard))
        .route("/environments", get(pages::environments))
        .route("/environments/{id}", get(pages::environment))
        .route("/workflows", get(pages::workflows))
        .route("/environments/{id}/workflows/{wid}", get(pages::workflow))
        .route("/matrix", get(pages::matrix))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/executions", get(pages::executions))
        .route("/promotions", get(pages::promotions))
        .route("/promotions/new", get(pages::promotion_new))
        .route("/pipelines", get(pages::pipelines))
        .route("/promotions/{id}", get(pages::promotion))
        .route("/incidents", get(pages::incidents))
        .route("/incidents/{id}", get(pages::incident))
        .route("/team", get(team::team))
        .route("/settings", get(pages::settings))
        .route("/notifications", get(notifications::notifications))
        .route("/billing", get(billing::billing))
        .route("/support", get(support::tickets))
        .route("/support/{id}", get(support::ticket))
        .route("/switch", get(pages::switch_tenant))
        .route("/audit", get(pages::audit))
        .route("/workers", get(pages::workers))
        .route("/platform", get(platform::console))
        .route("/platform/tenants/{id}", get(platform::tenant))
        .route("/platform/runs", get(platform_lists::runs))
        .route("/platform/environments", get(platform_lists::environments))
        .route("/platform/plans", get(plans::plans))
        .route("/platform/support", get(support_console::tickets))
        .route("/platform/support/{id}", get(support_console::ticket))
        .route("/platform/impersonate", post(impersonation::start))
        .route("/platform/impersonation/end", post(impersonation::end))
}

/// What every page's layout shows: who is signed in, where, and what they may do.
pub struct Nav {
    pub user: String,
    pub tenant: String,
    pub role: Role,
    pub csrf: String,
    pub current: &'static str,
    /// Shows the console's link (never true in an impersonation: it has no platform rights).
    pub platform_admin: bool,
    /// The platform admin's email when this session is an impersonation: every page says so.
    pub impersonator: Option<String>,
}

impl Nav {
    pub fn can(&self, p: Permission) -> bool {
        self.role.allows(p)
    }

    /// Attributes for a control that needs to sync/act on environments (developers, admins).
    pub fn sync_gate(&self) -> String {
        self.gate(Permission::SyncEnvironments)
    }

    /// … to promote.
    pub fn promote_gate(&self) -> String {
        self.gate(Permission::ExecutePromotions)
    }

    /// … to cancel or retry runs.
    pub fn run_gate(&self) -> String {
        self.gate(Permission::OperateRuns)
    }

    /// … to configure pipelines.
    pub fn pipeline_gate(&self) -> String {
        self.gate(Permission::ConfigurePipelines)
    }

    /// … to set the drift policy.
    pub fn drift_gate(&self) -> String {
        self.gate(Permission::ConfigureDriftPolicies)
    }

    /// … to connect environments.
    pub fn manage_gate(&self) -> String {
        self.gate(Permission::ManageEnvironments)
    }

    /// `disabled title="…"` for a control the role may not use, else nothing.
    pub fn gate(&self, p: Permission) -> String {
        if self.can(p) {
            String::new()
        } else {
            format!(
                "disabled title=\"your role ({}) cannot do this\"",
                self.role.as_str()
            )
        }
    }
}

/// A signed-in user in a tenant, from the session cookie; pages redirect to `/login` otherwise.
pub struct Viewer {
    pub principal: Arc<Principal>,
    pub tenant_id: Uuid,
    pub nav_base: (String, String, Role, String),
}

impl Viewer {
    pub fn nav(&self, current: &'static str) -> Nav {
        let (user, tenant, role, csrf) = self.nav_base.clone();
        Nav {
            user,
            tenant,
            role,
            csrf,
            current,
            platform_admin: self.principal.platform_admin,
            impersonator: self
                .principal
                .impersonator
                .as_ref()
                .map(|i| i.email.clone()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/login").into_response();
        let token = session_cookie(&parts.headers).ok_or_else(to_login)?;
        let principal = match parts.extensions.get::<AuthOutcome>() {
            Some(AuthOutcome(Ok(principal))) => principal,
            Some(AuthOutcome(Err(failure))) if failure.is_unavailable() => {
                return Err(difficulties());
            }
            _ => return Err(to_login()),
        };
        let (Subject::User { email, .. }, Some(tenant)) = (&principal.subject, &principal.tenant)
        else {
            return Err(to_login());
        };
        Ok(Self {
            tenant_id: tenant.id,
            nav_base: (
                email.clone(),
                tenant.name.clone(),
                tenant.role,
                csrf_token(&token),
            ),
            principal: Arc::clone(principal),
        })
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Viewer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Self as FromRequestParts<S>>::from_request_parts(parts, state)
                .await
                .ok(),
        )
    }
}

/// The technical-difficulties page (HEALTH-004): 503 with `Retry-After`, refreshing itself,
/// no internals (they go to the log).
pub fn difficulties() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "15")],
        Html(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"15\">\
             <title>Technical difficulties · WorkflowOps</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
             <body><main><section class=\"card empty\" id=\"difficulties\"><h1>WorkflowOps is having technical difficulties</h1>\
             <p>We could not reach what this page needs. Your work is safe: runs continue on the workers and pick up where they were.</p>\
             <p class=\"muted\">This page tries again every 15 seconds.</p></section></main></body></html>",
        ),
    )
        .into_response()
}

/// Renders a template, or a plain 500 page whose details go to the log only.
pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<h1>Something went wrong</h1><p>It has been logged.</p>"),
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
    email: String,
    /// The CSRF token for returning to the admin's own session, when this browser still holds
    /// it after an impersonation ran out or was ended elsewhere.
    restore: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    error: Option<String>,
}

async fn login_page(headers: HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    render(&LoginPage {
        error: q.error,
        email: String::new(),
        restore: read_cookie(&headers, ADMIN_SESSION_COOKIE).map(|t| csrf_token(&t)),
    })
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    Extension(meta): Extension<ClientMeta>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(e) = refuse_cross_site(&headers, &uri, &state.config.public_url) {
        // Nothing of the other site's post is echoed back (not even the email it chose).
        return (
            e.status,
            render(&LoginPage {
                error: Some(e.message),
                email: String::new(),
                restore: None,
            }),
        )
            .into_response();
    }
    let req = crate::routes::auth::LoginRequest {
        email: form.email.clone(),
        password: form.password,
        tenant: None,
    };
    match crate::routes::auth::sign_in(&state, &meta, req).await {
        Ok(session) => {
            let mut resp = Redirect::to("/").into_response();
            set_cookie(&mut resp, &state, SESSION_COOKIE, &session.token);
            // A fresh sign-in leaves no earlier impersonation to return from.
            clear_cookie(&mut resp, ADMIN_SESSION_COOKIE);
            resp
        }
        Err(e) => {
            let status = if e.status == StatusCode::UNAUTHORIZED {
                StatusCode::UNAUTHORIZED
            } else {
                e.status
            };
            (
                status,
                render(&LoginPage {
                    error: Some(e.message),
                    email: form.email,
                    restore: None,
                }),
            )
                .into_response()
        }
    }
}

/// Refuses a form post that another site made the browser send (403 `cross_site_request`).
///
/// The sign-in and invitation forms are posted before anyone is signed in, so they carry no
/// CSRF token; without this, a page elsewhere could post its own credentials through a
/// visitor's browser and leave it signed in to the other site's account (login CSRF), where
/// whatever the visitor then types lands. A browser says where a post comes from, in headers
/// no page can set:
/// - `Sec-Fetch-Site`, when sent, decides: `same-origin` (a page of this server) and `none`
///   (the visitor's own doing: the address bar, a bookmark) pass; `cross-site` and
///   `same-site` (a sibling subdomain is another origin) are refused. It is asked first
///   because a page with `Referrer-Policy: no-referrer` (the invitation page) makes the
///   browser send `Origin: null` even for its own posts.
/// - Otherwise (an older browser) `Origin` must be this server's: the origin of its public
///   URL (`WFO_PUBLIC_URL`), or the host the request was addressed to (its `Host`, which the
///   browser sets), so that an installation reached under another name than its public URL
///   still works. `Origin: null` (a sandboxed frame, a redirect across sites) is refused.
/// - A request with neither passes: every current browser sends `Origin` with a form post, so
///   such a request is a script's or curl's, which signs nobody's browser in.
pub(crate) fn refuse_cross_site(
    headers: &HeaderMap,
    uri: &Uri,
    public_url: &str,
) -> Result<(), crate::error::ApiError> {
    let refused = || {
        crate::error::ApiError::forbidden(
            "cross_site_request",
            "this form was sent from another website, so it was not accepted: open the page at \
             WorkflowOps's own address and send the form from there",
        )
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default().trim();
        return if site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none") {
            Ok(())
        } else {
            Err(refused())
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let Some(origin) = origin
        .to_str()
        .ok()
        .and_then(|o| reqwest::Url::parse(o.trim()).ok())
        .filter(|o| matches!(o.scheme(), "http" | "https"))
    else {
        return Err(refused());
    };
    let ours = reqwest::Url::parse(public_url).is_ok_and(|u| u.origin() == origin.origin());
    // The host the browser addressed, with the origin's scheme: the server cannot tell the
    // scheme behind a proxy that ends TLS, and the host is what another site cannot forge.
    let addressed = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(axum::http::uri::Authority::as_str))
        .and_then(|host| {
            reqwest::Url::parse(&format!("{}://{}", origin.scheme(), host.trim())).ok()
        })
        .is_some_and(|u| u.origin() == origin.origin());
    if ours || addressed {
        Ok(())
    } else {
        Err(refused())
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    Extension(meta): Extension<ClientMeta>,
    headers: HeaderMap,
    viewer: Option<Viewer>,
    Form(form): Form<LogoutForm>,
) -> Response {
    if let Some(v) = viewer
        && form.csrf == v.nav_base.3
        && let Subject::User { session_id, .. } = &v.principal.subject
    {
        if v.principal.impersonator.is_some() {
            // Signing out of an impersonation ends it, as the API's sign-out does (PLAT-006),
            // and signs the admin behind it out too: "Sign out" leaves nobody signed in.
            let actor = Authenticated {
                principal: Arc::clone(&v.principal),
                meta,
            }
            .actor();
            if let Err(e) =
                impersonation::end_of_session(&state, *session_id, "logout", &actor).await
            {
                tracing::warn!(error = ?e, "ending an impersonation at sign-out failed");
            }
            if let Some(admin) = read_cookie(&headers, ADMIN_SESSION_COOKIE) {
                impersonation::revoke_token(&state, &admin).await;
            }
        } else {
            let caller = Authenticated {
                principal: Arc::clone(&v.principal),
                meta,
            };
            if let Err(e) = crate::routes::auth::end_session(&state, &caller, *session_id).await {
                tracing::warn!(error = ?e, "ending a session at sign-out failed");
            }
        }
    }
    let mut resp = Redirect::to("/login").into_response();
    clear_cookie(&mut resp, SESSION_COOKIE);
    clear_cookie(&mut resp, ADMIN_SESSION_COOKIE);
    resp
}

/// Adds a `Set-Cookie` for one of the UI's session cookies: HttpOnly, `SameSite=Lax`, and
/// `Secure` when the server is reached over HTTPS.
fn set_cookie(resp: &mut Response, state: &AppState, name: &str, value: &str) {
    let secure = state.config.public_url.starts_with("https://");
    let cookie = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Adds a `Set-Cookie` that deletes the cookie `name`.
fn clear_cookie(resp: &mut Response, name: &str) {
    let cookie = format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The value of cookie `name`, if set and not empty.
fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../static/app.js"),
    )
        .into_response()
}

/// The team, approvals and invitation pages' script (kept apart from `app.js`).
async fn team_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../static/team.js"),
    )
        .into_response()
}

/// The icon browsers show in tabs, also answering their automatic `/favicon.ico` request.
async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../static/favicon.svg"),
    )
        .into_response()
}

/// `Cache-Control: no-store` on every HTML page: a page shows one signed-in user's data, and
/// Back after signing out must ask the server again (which sends the browser to sign in) rather
/// than show it from the cache.
async fn no_store(mut res: Response) -> Response {
    let html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html && !res.headers().contains_key(header::CACHE_CONTROL) {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage {
    path: String,
}

/// The API's answer to a path no route knows: the one `route_not_found` problem, whoever serves
/// it (this catch-all answers every path outside the pages, so the API's unknown paths too).
pub(crate) const ROUTE_NOT_FOUND: (&str, &str) = (
    "route_not_found",
    "no such endpoint; the API is described at /api/v1/openapi.json",
);

/// [`ROUTE_NOT_FOUND`] as the API's error.
pub(crate) fn route_not_found() -> crate::error::ApiError {
    let (code, message) = ROUTE_NOT_FOUND;
    crate::error::ApiError::new(StatusCode::NOT_FOUND, code, message)
}

/// A path no route knows. A browser's page request (outside `/api/`, accepting HTML) gets a page
/// to find its way back from, in the layout when signed in; anything else the API's JSON
/// problem, as every unknown API path.
async fn not_found_page(viewer: Option<Viewer>, req: Request) -> Response {
    let wants_html = matches!(*req.method(), Method::GET | Method::HEAD)
        && !req.uri().path().starts_with("/api/")
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    if !wants_html {
        return route_not_found().into_response();
    }
    let path = req.uri().path();
    match viewer {
        Some(v) => pages::no_such_page(v.nav(""), path),
        None => (
            StatusCode::NOT_FOUND,
            render(&NotFoundPage {
                path: path.to_owned(),
            }),
        )
            .into_response(),
    }
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

/// A `?cursor=&limit=` page request for lists, falling back to the first page on garbage.
pub fn page_of(cursor: Option<&str>, limit: u32) -> PageRequest {
    PageRequest::parse(cursor, Some(limit)).unwrap_or(PageRequest { after: None, limit })
}
