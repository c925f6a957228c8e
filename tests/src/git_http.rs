//! A git smart-HTTP server on a loopback port, for end-to-end tests of everything that talks to a
//! Git remote over HTTPS (backups, promotions).
//!
//! Every request runs the real `git http-backend` as a CGI program over the bare repositories
//! under one root directory, so clients (libgit2 through `git2`, or the git CLI) talk to real git:
//! fetch and clone through `git-upload-pack`, push through `git-receive-pack`. Like hosted git
//! servers serving HTTPS with a token, it can require basic authentication and count refusals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::task::JoinHandle;

/// Request bodies (pushed packs) above this are refused; test repositories are far smaller.
const BODY_LIMIT: usize = 256 * 1024 * 1024;

/// A running server. It stops when this is dropped; the repositories stay on disk.
pub struct GitHttpServer {
    addr: SocketAddr,
    ctx: Arc<Ctx>,
    server: JoinHandle<()>,
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        // Aborting the accept loop also closes open connections once their current request is
        // answered, so a client cannot keep pushing to a dropped server.
        self.server.abort();
    }
}

impl GitHttpServer {
    /// Serves bare repos under `root` (created if missing); `credentials` = Some((user, token))
    /// to require basic auth on every request.
    ///
    /// # Errors
    /// When `root` cannot be created or the loopback port cannot be bound.
    pub async fn start(
        root: PathBuf,
        credentials: Option<(String, String)>,
    ) -> anyhow::Result<Self> {
        tokio::fs::create_dir_all(&root)
            .await
            .with_context(|| format!("git http server: create {}", root.display()))?;
        // `git http-backend` wants an absolute project root.
        let root = tokio::fs::canonicalize(&root)
            .await
            .with_context(|| format!("git http server: resolve {}", root.display()))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("git http server: bind")?;
        let addr = listener
            .local_addr()
            .context("git http server: local address")?;
        let ctx = Arc::new(Ctx {
            root,
            credentials,
            unauthorized: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
        });
        let app = Router::new().fallback(serve).with_state(Arc::clone(&ctx));
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, service).await {
                eprintln!("git http server stopped: {e}");
            }
        });
        Ok(Self { addr, ctx, server })
    }

    /// `http://127.0.0.1:PORT/<name>` for a repository directory `root/<name>`.
    pub fn repo_url(&self, name: &str) -> String {
        format!("http://{}/{}", self.addr, name.trim_start_matches('/'))
    }

    /// Creates an empty bare repository `root/<name>` whose HEAD is `refs/heads/main`, and
    /// returns its URL.
    ///
    /// # Errors
    /// When libgit2 cannot create the repository.
    pub fn create_repo(&self, name: &str) -> anyhow::Result<String> {
        let path = self.ctx.root.join(name.trim_start_matches('/'));
        // `init_bare` with a fixed initial branch, so that the result does not depend on the
        // machine's `init.defaultBranch`.
        let mut options = git2::RepositoryInitOptions::new();
        options.bare(true).initial_head("main");
        git2::Repository::init_opts(&path, &options)
            .with_context(|| format!("git http server: init {}", path.display()))?;
        Ok(self.repo_url(name))
    }

    /// The directory the repositories live in.
    pub fn root(&self) -> PathBuf {
        self.ctx.root.clone()
    }

    /// Number of requests answered 401 so far. This includes the challenge a client such as
    /// libgit2 gets before it sends any credentials; [`Self::rejected`] counts only requests
    /// that carried wrong ones.
    pub fn unauthorized(&self) -> usize {
        self.ctx.unauthorized.load(Ordering::SeqCst)
    }

    /// Number of requests answered 401 although they carried an `Authorization` header: a
    /// wrong user name or token (tests assert a bad token was rejected).
    pub fn rejected(&self) -> usize {
        self.ctx.rejected.load(Ordering::SeqCst)
    }
}

struct Ctx {
    root: PathBuf,
    credentials: Option<(String, String)>,
    unauthorized: AtomicUsize,
    rejected: AtomicUsize,
}

/// What a request's credentials allow.
enum Access {
    /// Served; the user name goes to the CGI as `REMOTE_USER`.
    Granted(Option<String>),
    /// 401: no credentials yet (a challenge) or wrong ones.
    Denied { presented: bool },
}

impl Ctx {
    fn access(&self, headers: &HeaderMap) -> Access {
        let Some((user, token)) = &self.credentials else {
            return Access::Granted(None);
        };
        let presented = headers.contains_key(header::AUTHORIZATION);
        match basic_credentials(headers) {
            Some((u, t)) if &u == user && &t == token => Access::Granted(Some(u)),
            _ => Access::Denied { presented },
        }
    }
}

/// The user name and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

async fn serve(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let user = match ctx.access(request.headers()) {
        Access::Granted(user) => user,
        Access::Denied { presented } => {
            ctx.unauthorized.fetch_add(1, Ordering::SeqCst);
            if presented {
                ctx.rejected.fetch_add(1, Ordering::SeqCst);
            }
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, r#"Basic realm="git""#)],
                "Authentication required\n",
            )
                .into_response();
        }
    };
    match run_backend(&ctx, peer, user, request).await {
        Ok(response) => response,
        Err(e) => {
            eprintln!("git http server: {e:#}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "git http-backend failed\n",
            )
                .into_response()
        }
    }
}

/// Runs `git http-backend` for one request: the request becomes CGI environment variables and
/// stdin, the program's output becomes the response.
async fn run_backend(
    ctx: &Ctx,
    peer: SocketAddr,
    user: Option<String>,
    request: Request,
) -> anyhow::Result<Response> {
    let (parts, body) = request.into_parts();
    // Buffered rather than streamed so that CONTENT_LENGTH is always known, chunked uploads
    // included: http-backend then reads exactly that many bytes.
    let body = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .context("read the request body")?;
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());

    let mut command = Command::new("git");
    command
        .arg("http-backend")
        // A caller's own repository settings must not leak into the server.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env("GIT_PROJECT_ROOT", &ctx.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        // http-backend allows receive-pack only to authenticated users unless told otherwise;
        // authentication is decided here, before it runs.
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", peer.ip().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(content_type) = header("content-type") {
        command.env("CONTENT_TYPE", content_type);
    }
    // http-backend inflates gzip bodies itself (the git CLI gzips large fetch negotiations).
    if let Some(encoding) = header("content-encoding") {
        command.env("HTTP_CONTENT_ENCODING", encoding);
    }
    // Protocol v2 is negotiated through this header.
    if let Some(protocol) = header("git-protocol") {
        command
            .env("HTTP_GIT_PROTOCOL", protocol)
            .env("GIT_PROTOCOL", protocol);
    }
    if let Some(user) = &user {
        command.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }

    let mut child = command.spawn().context("spawn git http-backend")?;
    let mut stdin = child.stdin.take().context("git http-backend: no stdin")?;
    // Written concurrently with reading stdout: a large pack would otherwise fill both pipes.
    let writer = tokio::spawn(async move {
        // http-backend may stop reading early (it answers errors without the body); the broken
        // pipe is not this request's failure.
        let _ = stdin.write_all(&body).await;
    });
    let output = child
        .wait_with_output()
        .await
        .context("run git http-backend")?;
    let _ = writer.await;
    if !output.stderr.is_empty() {
        eprintln!(
            "git http-backend ({} {}): {}",
            parts.method,
            parts.uri,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    if output.stdout.is_empty() {
        bail!("git http-backend answered nothing ({})", output.status);
    }
    cgi_response(output.stdout)
}

/// Turns a CGI program's output (headers, a blank line, the body) into a response; a `Status:`
/// header gives the status code.
fn cgi_response(mut output: Vec<u8>) -> anyhow::Result<Response> {
    let (head_end, body_start) = header_end(&output).context("CGI output without headers")?;
    let head = std::str::from_utf8(&output[..head_end]).context("CGI headers are not UTF-8")?;
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in head.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("bad CGI header line {line:?}"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or_default();
            status = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .with_context(|| format!("bad CGI status {value:?}"))?;
        } else {
            headers.append(
                HeaderName::from_bytes(name.as_bytes())
                    .with_context(|| format!("bad CGI header name {name:?}"))?,
                HeaderValue::from_str(value)
                    .with_context(|| format!("bad CGI header value {value:?}"))?,
            );
        }
    }
    let body = output.split_off(body_start);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// Where the CGI headers end and the body starts: the first empty line, `\n\n` or `\r\n\r\n`.
fn header_end(output: &[u8]) -> Option<(usize, usize)> {
    output
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .find_map(|(i, _)| match &output[i + 1..] {
            [b'\n', ..] => Some((i, i + 2)),
            [b'\r', b'\n', ..] => Some((i, i + 3)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command as StdCommand;

    use git2::{Cred, FetchOptions, PushOptions, RemoteCallbacks, Repository, Signature};
    use reqwest::StatusCode;

    use super::GitHttpServer;

    const USER: &str = "alice";
    const TOKEN: &str = "ghp_right-token";

    /// A directory removed when the test ends, passed or not.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("wfo-{label}-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
            Self(dir)
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Callbacks answering one credential request, then giving up (libgit2 asks again after
    /// each refusal), and failing the push when the server refuses a ref update.
    fn callbacks(token: &str) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        let mut tries = 0;
        cb.credentials(move |_url, _user, _allowed| {
            tries += 1;
            if tries > 1 {
                return Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Http,
                    "credentials refused",
                ));
            }
            Cred::userpass_plaintext(USER, token)
        });
        cb.push_update_reference(|name, status| match status {
            Some(message) => Err(git2::Error::from_str(&format!("{name}: {message}"))),
            None => Ok(()),
        });
        cb
    }

    fn clone(url: &str, into: &Path, token: &str) -> Result<Repository, git2::Error> {
        let mut fetch = FetchOptions::new();
        fetch.remote_callbacks(callbacks(token));
        git2::build::RepoBuilder::new()
            .fetch_options(fetch)
            .clone(url, into)
    }

    /// Commits `file` with `content` on `refs/heads/main` (the branch's first commit or not).
    fn commit(repo: &Repository, file: &str, content: &str) -> Result<git2::Oid, git2::Error> {
        let workdir = repo
            .workdir()
            .ok_or_else(|| git2::Error::from_str("bare"))?;
        std::fs::write(workdir.join(file), content)
            .map_err(|e| git2::Error::from_str(&e.to_string()))?;
        let mut index = repo.index()?;
        index.add_path(Path::new(file))?;
        index.write()?;
        let tree = repo.find_tree(index.write_tree()?)?;
        let me = Signature::now("Test", "test@example.com")?;
        let parent = repo
            .find_reference("refs/heads/main")
            .ok()
            .and_then(|r| r.peel_to_commit().ok());
        let parents: Vec<_> = parent.iter().collect();
        repo.commit(
            Some("refs/heads/main"),
            &me,
            &me,
            "add file",
            &tree,
            &parents,
        )
    }

    fn push(repo: &Repository, token: &str) -> Result<(), git2::Error> {
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks(token));
        repo.find_remote("origin")?
            .push(&["refs/heads/main:refs/heads/main"], Some(&mut options))
    }

    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f)
            .await
            .unwrap_or_else(|e| panic!("blocking task: {e}"))
    }

    async fn server(dir: &TempDir) -> GitHttpServer {
        GitHttpServer::start(dir.path("repos"), Some((USER.to_owned(), TOKEN.to_owned())))
            .await
            .unwrap_or_else(|e| panic!("start: {e:#}"))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn git2_clones_empty_repo_pushes_with_token_and_clones_the_commit() {
        let dir = TempDir::new("git-http");
        let server = server(&dir).await;
        let url = server
            .create_repo("backups.git")
            .unwrap_or_else(|e| panic!("create repo: {e:#}"));
        let (first, second) = (dir.path("first"), dir.path("second"));

        let pushed = blocking({
            let url = url.clone();
            move || -> Result<git2::Oid, git2::Error> {
                let repo = clone(&url, &first, TOKEN)?;
                let oid = commit(&repo, "workflow.json", "{\"name\":\"a\"}")?;
                push(&repo, TOKEN)?;
                Ok(oid)
            }
        })
        .await
        .unwrap_or_else(|e| panic!("clone, commit, push: {e}"));

        let (head, content) = blocking(move || -> Result<_, git2::Error> {
            let repo = clone(&url, &second, TOKEN)?;
            let head = repo.head()?.peel_to_commit()?.id();
            let content = std::fs::read_to_string(second.join("workflow.json"))
                .map_err(|e| git2::Error::from_str(&e.to_string()))?;
            Ok((head, content))
        })
        .await
        .unwrap_or_else(|e| panic!("second clone: {e}"));

        assert_eq!(head, pushed);
        assert_eq!(content, "{\"name\":\"a\"}");
        assert_eq!(server.rejected(), 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn wrong_token_is_refused_with_401() {
        let dir = TempDir::new("git-http");
        let server = server(&dir).await;
        let url = server
            .create_repo("team/repo.git")
            .unwrap_or_else(|e| panic!("create repo: {e:#}"));

        let into = dir.path("clone");
        let cloned = blocking({
            let url = url.clone();
            move || clone(&url, &into, "wrong-token").map(|_| ())
        })
        .await;
        let error = cloned
            .err()
            .unwrap_or_else(|| panic!("clone with a wrong token succeeded"));
        assert_eq!(error.code(), git2::ErrorCode::Auth, "{error}");
        assert!(server.rejected() >= 1);

        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let info_refs = format!("{url}/info/refs?service=git-upload-pack");
        let anonymous = http
            .get(&info_refs)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET info/refs: {e}"));
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            anonymous
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some(r#"Basic realm="git""#)
        );
        let rejected_before = server.rejected();
        let wrong = http
            .get(&info_refs)
            .basic_auth(USER, Some("wrong-token"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET info/refs: {e}"));
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(server.rejected(), rejected_before + 1);
        let right = http
            .get(&info_refs)
            .basic_auth(USER, Some(TOKEN))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET info/refs: {e}"));
        assert_eq!(right.status(), StatusCode::OK);
        assert_eq!(
            right
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/x-git-upload-pack-advertisement")
        );
    }

    /// The git CLI speaks protocol v2 and gzips fetch requests over 1 KiB (here: the clone's
    /// `want`s for 41 branches), which libgit2 does not.
    #[tokio::test(flavor = "multi_thread")]
    async fn git_cli_pushes_and_clones_over_protocol_v2_with_gzip_requests() {
        let dir = TempDir::new("git-http");
        let server = server(&dir).await;
        server
            .create_repo("cli.git")
            .unwrap_or_else(|e| panic!("create repo: {e:#}"));
        let url =
            server
                .repo_url("cli.git")
                .replacen("http://", &format!("http://{USER}:{TOKEN}@"), 1);
        let work = dir.path("work");
        let again = dir.path("again");

        let git = |cwd: &Path, args: &[&str]| -> String {
            let out = StdCommand::new("git")
                .args(["-c", "protocol.version=2", "-c", "credential.helper="])
                .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
                .args(args)
                .current_dir(cwd)
                .env("GIT_TERMINAL_PROMPT", "0")
                .output()
                .unwrap_or_else(|e| panic!("run git {args:?}: {e}"));
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let root = dir.0.clone();
        let (content, branches) = blocking(move || {
            git(&root, &["clone", &url, &work.to_string_lossy()]);
            std::fs::write(work.join("README.md"), "hello\n")
                .unwrap_or_else(|e| panic!("write: {e}"));
            git(&work, &["add", "README.md"]);
            git(&work, &["commit", "-m", "first"]);
            git(&work, &["push", "origin", "HEAD:refs/heads/main"]);
            for i in 0..40 {
                git(&work, &["commit", "--allow-empty", "-m", &format!("c{i}")]);
                git(&work, &["branch", &format!("b{i}")]);
            }
            git(&work, &["push", "origin", "refs/heads/b*:refs/heads/b*"]);
            git(&root, &["clone", &url, &again.to_string_lossy()]);
            let content = std::fs::read_to_string(again.join("README.md"))
                .unwrap_or_else(|e| panic!("read: {e}"));
            let branches = git(&again, &["branch", "-r"]).lines().count();
            (content, branches)
        })
        .await;

        assert_eq!(content, "hello\n");
        // 41 branches and `origin/HEAD`.
        assert_eq!(branches, 42);
    }
}
