//! A GitHub REST API (v3) stand-in on a loopback port, for end-to-end tests of pull-request
//! promotions, plus the signature and payload of GitHub's `push` webhook.
//!
//! It serves the subset the product uses — create, get, list and merge pull requests, get a
//! repository — with GitHub's status codes and error bodies: 403 without a `User-Agent`, 401
//! `Requires authentication` / `Bad credentials`, 404 `Not Found`, 422 `Validation Failed` with
//! an `errors` list, 405 when a pull request cannot be merged. Every repository exists, has the
//! default branch `main` and may be administered by the token's user. Git itself is not modelled:
//! branches are taken on trust and commit SHAs are stable made-up values. State lives in memory;
//! tests inspect it, and merge pull requests as a person would, without going over HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The login of the token's user: author of pull requests, pusher of webhook pushes.
pub const LOGIN: &str = "workflowops-bot";
const DEFAULT_BRANCH: &str = "main";
const DOCS: &str = "https://docs.github.com/rest";
/// GitHub's answer (as plain text) to an API request without a `User-Agent`.
const NO_USER_AGENT: &str = "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.\n";
const PER_PAGE_DEFAULT: usize = 30;
const PER_PAGE_MAX: usize = 100;

// ---------------------------------------------------------------------------------------------
// Public interface
// ---------------------------------------------------------------------------------------------

/// A running stand-in. The server stops when this is dropped.
pub struct GitHubStandIn {
    addr: SocketAddr,
    ctx: Ctx,
    server: JoinHandle<()>,
}

impl Drop for GitHubStandIn {
    fn drop(&mut self) {
        // Aborting the accept loop also closes open connections once their current request is
        // answered, so a pooled client cannot keep talking to a dropped stand-in.
        self.server.abort();
    }
}

impl GitHubStandIn {
    /// Starts a stand-in that accepts `token` (as `Authorization: Bearer <token>` or
    /// `token <token>`).
    ///
    /// # Errors
    /// When the loopback port cannot be bound.
    pub async fn start(token: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("github stand-in: bind")?;
        let addr = listener
            .local_addr()
            .context("github stand-in: local address")?;
        let ctx = Ctx {
            inner: Arc::new(Mutex::new(Inner::default())),
            token: Arc::from(token),
            base: Arc::from(format!("http://{addr}").as_str()),
        };
        let app = router(ctx.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("github stand-in stopped: {e}");
            }
        });
        Ok(Self { addr, ctx, server })
    }

    /// The API base URL to configure in the product (like `https://api.github.com`):
    /// `http://127.0.0.1:PORT`, with no trailing slash.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Pull requests created so far, oldest first, as `GET …/pulls/{number}` returns them.
    pub fn pulls(&self) -> Vec<Value> {
        let inner = self.ctx.lock();
        inner
            .pulls
            .iter()
            .map(|p| p.to_json(&self.ctx.base))
            .collect()
    }

    /// Marks PR `number` of owner/repo merged (as if a person merged it in GitHub's UI): closed,
    /// `merged`, `merged_at` now, a merge commit SHA. A PR already closed is left alone.
    ///
    /// # Panics
    /// When there is no such pull request: the test is wrong.
    pub fn merge(&self, owner: &str, repo: &str, number: u64) {
        let mut inner = self.ctx.lock();
        let Some(pull) = inner.find_mut(owner, repo, number) else {
            panic!("github stand-in: merge: no pull request {owner}/{repo}#{number}");
        };
        if pull.is_open() {
            pull.mark_merged(Utc::now());
        }
    }
}

/// Signs a webhook body the way GitHub does: `sha256=<hex hmac-sha256(secret, body)>`, the value
/// of `X-Hub-Signature-256`.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), body)))
}

/// A `push` event payload for `owner/repo` on `branch` with commit `after`, shaped like the
/// body GitHub posts with `X-GitHub-Event: push` (the fields consumers read; `commits` empty).
pub fn push_event(owner: &str, repo: &str, branch: &str, after: &str) -> Value {
    let html_url = format!("https://github.com/{owner}/{repo}");
    let before = fake_sha(&format!("before {after}"));
    let now = Utc::now();
    json!({
        "ref": format!("refs/heads/{branch}"),
        "before": before,
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": format!("{html_url}/compare/{}...{}", short(&before), short(after)),
        "commits": [],
        "head_commit": {
            "id": after,
            "tree_id": fake_sha(&format!("tree {after}")),
            "distinct": true,
            "message": "Update workflows",
            "timestamp": now.to_rfc3339_opts(SecondsFormat::Secs, false),
            "url": format!("{html_url}/commit/{after}"),
            "author": {"name": LOGIN, "email": format!("{LOGIN}@users.noreply.github.com"), "username": LOGIN},
            "committer": {"name": LOGIN, "email": format!("{LOGIN}@users.noreply.github.com"), "username": LOGIN},
            "added": [],
            "removed": [],
            "modified": [],
        },
        "repository": {
            "id": repo_id(owner, repo),
            "name": repo,
            "full_name": format!("{owner}/{repo}"),
            "private": true,
            "owner": {"name": owner, "login": owner, "type": "User"},
            "html_url": html_url,
            "url": html_url,
            "clone_url": format!("{html_url}.git"),
            "ssh_url": format!("git@github.com:{owner}/{repo}.git"),
            "default_branch": DEFAULT_BRANCH,
            "master_branch": DEFAULT_BRANCH,
            "pushed_at": now.timestamp(),
        },
        "pusher": {"name": LOGIN, "email": format!("{LOGIN}@users.noreply.github.com")},
        "sender": {"login": LOGIN, "type": "User"},
    })
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Ctx {
    inner: Arc<Mutex<Inner>>,
    token: Arc<str>,
    /// `http://127.0.0.1:PORT`, for the URLs in answers.
    base: Arc<str>,
}

impl Ctx {
    /// A panicking test must not wedge every other request, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Inner {
    /// In creation order.
    pulls: Vec<Pull>,
    /// The last number given out per `owner/repo`.
    numbers: HashMap<String, u64>,
}

impl Inner {
    fn find_mut(&mut self, owner: &str, repo: &str, number: u64) -> Option<&mut Pull> {
        self.pulls
            .iter_mut()
            .find(|p| p.owner == owner && p.repo == repo && p.number == number)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PullState {
    Open,
    Closed,
}

struct Pull {
    /// Global, as GitHub's ids are.
    id: u64,
    /// Per repository, from 1.
    number: u64,
    owner: String,
    repo: String,
    title: String,
    body: Option<String>,
    /// The owner of the head branch's repository (`owner:branch` in `head`).
    head_owner: String,
    head_ref: String,
    head_sha: String,
    base_ref: String,
    draft: bool,
    state: PullState,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
    merged_at: Option<DateTime<Utc>>,
    merge_commit_sha: Option<String>,
}

impl Pull {
    fn is_open(&self) -> bool {
        self.state == PullState::Open
    }

    fn mark_merged(&mut self, at: DateTime<Utc>) {
        self.state = PullState::Closed;
        self.closed_at = Some(at);
        self.merged_at = Some(at);
        self.updated_at = at;
        self.merge_commit_sha = Some(fake_sha(&format!(
            "merge {}/{}#{} {}",
            self.owner, self.repo, self.number, self.head_sha
        )));
    }

    fn to_json(&self, base: &str) -> Value {
        let (owner, repo, number) = (&self.owner, &self.repo, self.number);
        let api = format!("{base}/repos/{owner}/{repo}");
        let html = format!("{base}/{owner}/{repo}/pull/{number}");
        let state = match self.state {
            PullState::Open => "open",
            PullState::Closed => "closed",
        };
        let merged = self.merged_at.is_some();
        json!({
            "url": format!("{api}/pulls/{number}"),
            "id": self.id,
            "node_id": format!("PR_{}", self.id),
            "html_url": html,
            "diff_url": format!("{html}.diff"),
            "patch_url": format!("{html}.patch"),
            "issue_url": format!("{api}/issues/{number}"),
            "commits_url": format!("{api}/pulls/{number}/commits"),
            "number": number,
            "state": state,
            "locked": false,
            "title": self.title,
            "body": self.body,
            "user": user_json(base, LOGIN),
            "labels": [],
            "assignees": [],
            "requested_reviewers": [],
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
            "closed_at": self.closed_at.map(timestamp),
            "merged_at": self.merged_at.map(timestamp),
            "merge_commit_sha": self.merge_commit_sha,
            "head": {
                "label": format!("{}:{}", self.head_owner, self.head_ref),
                "ref": self.head_ref,
                "sha": self.head_sha,
                "user": user_json(base, &self.head_owner),
                "repo": repo_json(base, &self.head_owner, repo),
            },
            "base": {
                "label": format!("{owner}:{}", self.base_ref),
                "ref": self.base_ref,
                "sha": fake_sha(&format!("branch {owner}/{repo} {}", self.base_ref)),
                "user": user_json(base, owner),
                "repo": repo_json(base, owner, repo),
            },
            "author_association": "OWNER",
            "draft": self.draft,
            "merged": merged,
            "mergeable": if merged { Value::Null } else { Value::Bool(self.is_open()) },
            "mergeable_state": if self.is_open() { "clean" } else { "unknown" },
            "merged_by": if merged { user_json(base, LOGIN) } else { Value::Null },
            "comments": 0,
            "commits": 1,
        })
    }
}

fn user_json(base: &str, login: &str) -> Value {
    json!({
        "login": login,
        "type": "User",
        "url": format!("{base}/users/{login}"),
        "html_url": format!("{base}/{login}"),
    })
}

fn repo_json(base: &str, owner: &str, repo: &str) -> Value {
    json!({
        "id": repo_id(owner, repo),
        "node_id": format!("R_{}", repo_id(owner, repo)),
        "name": repo,
        "full_name": format!("{owner}/{repo}"),
        "private": true,
        "owner": user_json(base, owner),
        "html_url": format!("{base}/{owner}/{repo}"),
        "url": format!("{base}/repos/{owner}/{repo}"),
        "clone_url": format!("{base}/{owner}/{repo}.git"),
        "default_branch": DEFAULT_BRANCH,
        "visibility": "private",
        "archived": false,
        "permissions": {"admin": true, "maintain": true, "push": true, "triage": true, "pull": true},
    })
}

/// A stable id per repository name.
fn repo_id(owner: &str, repo: &str) -> u64 {
    let digest = Sha256::digest(format!("{owner}/{repo}").as_bytes());
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&digest[..4]);
    u64::from(u32::from_be_bytes(bytes))
}

/// A made-up but stable 40-hex-digit commit SHA.
fn fake_sha(seed: &str) -> String {
    let mut out = hex(&Sha256::digest(seed.as_bytes()));
    out.truncate(40);
    out
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// HMAC (RFC 2104) over SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer);
    out
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// An answer other than success, with GitHub's JSON error body.
struct ApiError {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

fn error(status: StatusCode, message: &str, documentation_url: &str) -> ApiError {
    ApiError {
        status,
        body: json!({
            "message": message,
            "documentation_url": documentation_url,
            "status": status.as_str(),
        }),
    }
}

fn not_found() -> ApiError {
    error(StatusCode::NOT_FOUND, "Not Found", DOCS)
}

/// 422 `Validation Failed` with GitHub's `errors` list.
fn validation_failed(errors: Vec<Value>, documentation_url: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body: json!({
            "message": "Validation Failed",
            "errors": Value::Array(errors),
            "documentation_url": documentation_url,
            "status": "422",
        }),
    }
}

fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/repos/{owner}/{repo}", get(get_repo))
        .route(
            "/repos/{owner}/{repo}/pulls",
            get(list_pulls).post(create_pull),
        )
        .route("/repos/{owner}/{repo}/pulls/{number}", get(get_pull))
        .route(
            "/repos/{owner}/{repo}/pulls/{number}/merge",
            put(merge_pull),
        )
        // GitHub answers unknown routes and unsupported methods alike with 404.
        .fallback(async || not_found())
        .method_not_allowed_fallback(async || not_found())
        .layer(middleware::from_fn_with_state(ctx.clone(), gate))
        .with_state(ctx)
}

/// Checks what GitHub checks before routing: a `User-Agent`, then the token. Any `Accept` is
/// fine.
async fn gate(State(ctx): State<Ctx>, request: Request, next: Next) -> Response {
    if !request.headers().contains_key(header::USER_AGENT) {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            NO_USER_AGENT,
        )
            .into_response();
    }
    match presented_token(request.headers()) {
        None if !request.headers().contains_key(header::AUTHORIZATION) => {
            error(StatusCode::UNAUTHORIZED, "Requires authentication", DOCS).into_response()
        }
        Some(token) if token == &*ctx.token => {
            let mut response = next.run(request).await;
            response.headers_mut().insert(
                "x-github-media-type",
                HeaderValue::from_static("github.v3; format=json"),
            );
            response
        }
        _ => error(StatusCode::UNAUTHORIZED, "Bad credentials", DOCS).into_response(),
    }
}

/// The token of `Authorization: Bearer <token>` or `Authorization: token <token>`.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| token.trim())
}

/// Parses a JSON request body as GitHub does: 400 `Problems parsing JSON` when it is not JSON,
/// and an empty body counts as `{}`.
fn parse_body(
    body: &Bytes,
    documentation_url: &str,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "Invalid request.\n\nInvalid input: object is expected",
            documentation_url,
        )),
        Err(_) => Err(error(
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
            documentation_url,
        )),
    }
}

async fn get_repo(State(ctx): State<Ctx>, Path((owner, repo)): Path<(String, String)>) -> Response {
    axum::Json(repo_json(&ctx.base, &owner, &repo)).into_response()
}

async fn create_pull(
    State(ctx): State<Ctx>,
    Path((owner, repo)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    const DOC: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";
    let body = parse_body(&body, DOC)?;
    let mut errors = Vec::new();
    let mut text = |field: &str| match body.get(field) {
        None | Some(Value::Null) => {
            errors
                .push(json!({"resource": "PullRequest", "code": "missing_field", "field": field}));
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors
                .push(json!({"resource": "PullRequest", "code": "missing_field", "field": field}));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(json!({"resource": "PullRequest", "code": "invalid", "field": field}));
            None
        }
    };
    let (title, head, base) = (text("title"), text("head"), text("base"));
    let (Some(title), Some(head), Some(base)) = (title, head, base) else {
        return Err(validation_failed(errors, DOC));
    };
    let pr_body = body.get("body").and_then(Value::as_str).map(str::to_owned);
    let draft = body.get("draft").and_then(Value::as_bool).unwrap_or(false);
    let (head_owner, head_ref) = match head.split_once(':') {
        Some((o, r)) => (o.to_owned(), r.to_owned()),
        None => (owner.clone(), head.clone()),
    };
    if head_owner == owner && head_ref == base {
        return Err(validation_failed(
            vec![json!({
                "resource": "PullRequest",
                "code": "custom",
                "message": format!("No commits between {base} and {head_ref}"),
            })],
            DOC,
        ));
    }

    let mut inner = ctx.lock();
    let duplicate = inner.pulls.iter().any(|p| {
        p.owner == owner
            && p.repo == repo
            && p.is_open()
            && p.head_owner == head_owner
            && p.head_ref == head_ref
            && p.base_ref == base
    });
    if duplicate {
        return Err(validation_failed(
            vec![json!({
                "resource": "PullRequest",
                "code": "custom",
                "message": format!("A pull request already exists for {head_owner}:{head_ref}."),
            })],
            DOC,
        ));
    }
    let number = {
        let last = inner.numbers.entry(format!("{owner}/{repo}")).or_insert(0);
        *last += 1;
        *last
    };
    let id = 1_000_000 + inner.pulls.len() as u64 + 1;
    let now = Utc::now();
    let pull = Pull {
        id,
        number,
        head_sha: fake_sha(&format!("branch {head_owner}/{repo} {head_ref} {id}")),
        owner,
        repo,
        title,
        body: pr_body,
        head_owner,
        head_ref,
        base_ref: base,
        draft,
        state: PullState::Open,
        created_at: now,
        updated_at: now,
        closed_at: None,
        merged_at: None,
        merge_commit_sha: None,
    };
    let rendered = pull.to_json(&ctx.base);
    inner.pulls.push(pull);
    let location = rendered["url"].as_str().unwrap_or_default().to_owned();
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(rendered),
    )
        .into_response())
}

async fn get_pull(
    State(ctx): State<Ctx>,
    Path((owner, repo, number)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let number: u64 = number.parse().map_err(|_| not_found())?;
    let mut inner = ctx.lock();
    let pull = inner
        .find_mut(&owner, &repo, number)
        .ok_or_else(not_found)?;
    Ok(axum::Json(pull.to_json(&ctx.base)).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    head: Option<String>,
    base: Option<String>,
    direction: Option<String>,
    per_page: Option<usize>,
    page: Option<usize>,
}

async fn list_pulls(
    State(ctx): State<Ctx>,
    Path((owner, repo)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    const DOC: &str = "https://docs.github.com/rest/pulls/pulls#list-pull-requests";
    let state = query.state.as_deref().unwrap_or("open");
    if !matches!(state, "open" | "closed" | "all") {
        return Err(validation_failed(
            vec![json!({"resource": "PullRequest", "code": "invalid", "field": "state"})],
            DOC,
        ));
    }
    // `head` is `user:ref`; GitHub ignores a value without the user part.
    let head = query.head.as_deref().and_then(|h| h.split_once(':'));
    let per_page = query
        .per_page
        .unwrap_or(PER_PAGE_DEFAULT)
        .clamp(1, PER_PAGE_MAX);
    let page = query.page.unwrap_or(1).max(1);

    let inner = ctx.lock();
    let mut matching: Vec<&Pull> = inner
        .pulls
        .iter()
        .filter(|p| p.owner == owner && p.repo == repo)
        .filter(|p| match state {
            "open" => p.is_open(),
            "closed" => !p.is_open(),
            _ => true,
        })
        .filter(|p| head.is_none_or(|(o, r)| p.head_owner == o && p.head_ref == r))
        .filter(|p| query.base.as_ref().is_none_or(|b| &p.base_ref == b))
        .collect();
    // Newest first unless asked otherwise, as GitHub sorts by creation descending.
    if query.direction.as_deref() != Some("asc") {
        matching.reverse();
    }
    let total = matching.len();
    let items: Vec<Value> = matching
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|p| p.to_json(&ctx.base))
        .collect();
    let mut response = axum::Json(items).into_response();
    if page * per_page < total {
        let next = format!(
            "<{}/repos/{owner}/{repo}/pulls?state={state}&per_page={per_page}&page={}>; rel=\"next\"",
            ctx.base,
            page + 1
        );
        if let Ok(value) = HeaderValue::from_str(&next) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

async fn merge_pull(
    State(ctx): State<Ctx>,
    Path((owner, repo, number)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    const DOC: &str = "https://docs.github.com/rest/pulls/pulls#merge-a-pull-request";
    let number: u64 = number.parse().map_err(|_| not_found())?;
    let body = parse_body(&body, DOC)?;
    let mut inner = ctx.lock();
    let pull = inner
        .find_mut(&owner, &repo, number)
        .ok_or_else(not_found)?;
    if !pull.is_open() || pull.draft {
        return Err(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Pull Request is not mergeable",
            DOC,
        ));
    }
    // `sha` guards against merging a head the caller has not seen.
    if let Some(sha) = body.get("sha").and_then(Value::as_str)
        && sha != pull.head_sha
    {
        return Err(error(
            StatusCode::CONFLICT,
            "Head branch was modified. Review and try the merge again.",
            DOC,
        ));
    }
    pull.mark_merged(Utc::now());
    Ok(axum::Json(json!({
        "sha": pull.merge_commit_sha,
        "merged": true,
        "message": "Pull Request successfully merged",
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use reqwest::{Method, StatusCode};
    use serde_json::{Value, json};

    use super::{GitHubStandIn, hex, hmac_sha256, push_event, webhook_signature};

    const TOKEN: &str = "ghp_stand-in-token";

    async fn stand_in() -> GitHubStandIn {
        GitHubStandIn::start(TOKEN)
            .await
            .unwrap_or_else(|e| panic!("start: {e:#}"))
    }

    fn http() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .user_agent("workflowops-tests")
            .build()
            .unwrap_or_else(|e| panic!("client: {e}"))
    }

    /// A call with `Authorization: Bearer <token>`; the body is Null when the answer is not JSON.
    async fn call(
        gh: &GitHubStandIn,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = http()
            .request(method, format!("{}{path}", gh.api_url()))
            .bearer_auth(token)
            .header("Accept", "application/vnd.github+json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path}: {e}"));
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn pr(head: &str) -> Value {
        json!({"title": "Promote to production", "head": head, "base": "main", "body": "2 workflows"})
    }

    #[tokio::test]
    async fn creating_a_pull_request_numbers_it_and_refuses_a_duplicate() {
        let gh = stand_in().await;
        let path = "/repos/acme/flows/pulls";

        let (status, created) = call(&gh, Method::POST, path, TOKEN, Some(&pr("promote-1"))).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["number"], 1);
        assert_eq!(created["state"], "open");
        assert_eq!(created["merged"], false);
        assert_eq!(created["merged_at"], Value::Null);
        assert_eq!(created["draft"], false);
        assert_eq!(created["head"]["ref"], "promote-1");
        assert_eq!(created["base"]["ref"], "main");
        assert_eq!(created["body"], "2 workflows");
        assert_eq!(
            created["html_url"],
            format!("{}/acme/flows/pull/1", gh.api_url())
        );

        let (status, dup) = call(&gh, Method::POST, path, TOKEN, Some(&pr("acme:promote-1"))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(dup["message"], "Validation Failed");
        assert_eq!(
            dup["errors"][0]["message"],
            "A pull request already exists for acme:promote-1."
        );

        let (status, second) = call(&gh, Method::POST, path, TOKEN, Some(&pr("promote-2"))).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(second["number"], 2);
        assert_eq!(gh.pulls().len(), 2);

        let (status, listed) = call(
            &gh,
            Method::GET,
            "/repos/acme/flows/pulls?state=open&head=acme:promote-2",
            TOKEN,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed.as_array().map(Vec::len), Some(1));
        assert_eq!(listed[0]["number"], 2);
    }

    #[tokio::test]
    async fn invalid_pull_requests_are_422() {
        let gh = stand_in().await;
        let path = "/repos/acme/flows/pulls";
        let (status, missing) =
            call(&gh, Method::POST, path, TOKEN, Some(&json!({"title": "x"}))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<&str> = missing["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(fields, ["head", "base"]);

        let (status, same) = call(&gh, Method::POST, path, TOKEN, Some(&pr("main"))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(same["message"], "Validation Failed");
        assert!(gh.pulls().is_empty());
    }

    #[tokio::test]
    async fn bad_token_is_401_and_missing_user_agent_is_403() {
        let gh = stand_in().await;
        let (status, body) = call(&gh, Method::GET, "/repos/acme/flows", "wrong", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["message"], "Bad credentials");

        let (status, repo) = call(&gh, Method::GET, "/repos/acme/flows", TOKEN, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(repo["full_name"], "acme/flows");
        assert_eq!(repo["default_branch"], "main");
        assert_eq!(repo["permissions"]["push"], true);

        let (status, body) = call(&gh, Method::GET, "/repos/acme/flows/pulls/7", TOKEN, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["message"], "Not Found");

        // reqwest sends no User-Agent unless told to.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let response = reqwest::Client::new()
            .get(format!("{}/repos/acme/flows", gh.api_url()))
            .header("Authorization", format!("token {TOKEN}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request: {e}"));
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn merging_closes_the_pull_request_once() {
        let gh = stand_in().await;
        let path = "/repos/acme/flows/pulls";
        call(&gh, Method::POST, path, TOKEN, Some(&pr("promote-1"))).await;
        call(&gh, Method::POST, path, TOKEN, Some(&pr("promote-2"))).await;

        let (status, merged) = call(
            &gh,
            Method::PUT,
            "/repos/acme/flows/pulls/1/merge",
            TOKEN,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{merged}");
        assert_eq!(merged["merged"], true);
        assert_eq!(merged["message"], "Pull Request successfully merged");
        assert_eq!(merged["sha"].as_str().map(str::len), Some(40));

        let (status, again) = call(
            &gh,
            Method::PUT,
            "/repos/acme/flows/pulls/1/merge",
            TOKEN,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{again}");

        let (_, pull) = call(&gh, Method::GET, "/repos/acme/flows/pulls/1", TOKEN, None).await;
        assert_eq!(pull["state"], "closed");
        assert_eq!(pull["merged"], true);
        assert!(pull["merged_at"].is_string());

        // As if a person merged #2 in the UI.
        gh.merge("acme", "flows", 2);
        let (_, pull) = call(&gh, Method::GET, "/repos/acme/flows/pulls/2", TOKEN, None).await;
        assert_eq!(pull["merged"], true);
        let (_, open) = call(&gh, Method::GET, "/repos/acme/flows/pulls", TOKEN, None).await;
        assert_eq!(open, json!([]));
    }

    #[test]
    fn webhook_signature_matches_githubs_documented_example() {
        assert_eq!(
            webhook_signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_vectors() {
        // Test case 2 (a short key) and test case 6 (a key longer than SHA-256's block).
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn push_event_names_branch_commit_and_repository() {
        let event = push_event(
            "acme",
            "flows",
            "main",
            "0123456789abcdef0123456789abcdef01234567",
        );
        assert_eq!(event["ref"], "refs/heads/main");
        assert_eq!(event["after"], "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(event["head_commit"]["id"], event["after"]);
        assert_eq!(event["repository"]["full_name"], "acme/flows");
        assert_eq!(event["repository"]["owner"]["login"], "acme");
        assert_eq!(
            event["repository"]["clone_url"],
            "https://github.com/acme/flows.git"
        );
        assert_eq!(event["commits"], json!([]));
    }
}
