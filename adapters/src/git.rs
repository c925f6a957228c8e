//! Git remotes through libgit2 (git2): a working copy that follows one branch of a remote, and
//! commits that always land. A commit is built from a set of file changes on top of the
//! remote's head; if another writer pushed first (non-fast-forward), the changes are applied
//! again on the new head and pushed again, so concurrent writers never lose a commit.
//!
//! Remote URLs are read here as libgit2 will use them ([`parse_remote`]): a network remote's
//! host is checked against the server's setting ([`crate::net::Outbound`]) before every fetch
//! and push, and libgit2 follows no redirect to another host.
//!
//! Everything here blocks (libgit2 is synchronous): call it from `spawn_blocking`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use git2::Oid;
use git2::{
    Cred, FetchOptions, IndexEntry, IndexTime, PushOptions, RemoteCallbacks, RemoteRedirect,
    Repository,
};
use secrecy::{ExposeSecret, SecretString};

use crate::net::{DestinationError, Guard, Outbound};

/// Where the repository is and how to authenticate.
#[derive(Debug, Clone)]
pub struct GitRemote {
    /// `https://…`, `ssh://…` / `git@host:path`, or a local path (tests).
    pub url: String,
    pub branch: String,
    pub auth: GitAuth,
}

#[derive(Debug, Clone)]
pub enum GitAuth {
    None,
    /// HTTPS: a token (GitHub: any username with a personal access token).
    Token {
        username: String,
        token: SecretString,
    },
    /// SSH with a deploy key (PEM / OpenSSH private key text).
    SshKey {
        private_key: SecretString,
        passphrase: Option<SecretString>,
    },
}

/// A failure, classified: `Display` says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error("the Git remote refused the credentials: {0}")]
    Auth(String),
    #[error("the Git remote cannot be reached or does not exist: {0}")]
    Unreachable(String),
    #[error("the Git remote kept moving; gave up after {0} attempts to land the commit")]
    Contended(u32),
    #[error("Git: {0}")]
    Other(String),
    /// The remote may not be reached from this server (its address is outside
    /// `WFO_OUTBOUND_NETWORKS`, or its URL is not one a remote may have). Never retried.
    #[error("{0}")]
    Refused(String),
}

/// What a remote URL names, as libgit2 reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteUrl {
    /// `https://`, `http://`, `ssh://` or scp-like `[user@]host:path`: a host on the network.
    Network { host: String, port: u16 },
    /// `file://…` or an absolute path: the server's own file system.
    Local(PathBuf),
}

/// Why a string is not a remote URL WorkflowOps uses. `Display` completes "the URL …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteUrlError {
    #[error(
        "must be an https://, http:// or ssh:// URL, or `user@host:path` (a host name, then the \
         path after `:`)"
    )]
    Form,
    #[error("must not use `{0}://`; use https://, http:// or ssh://")]
    Scheme(String),
    #[error("must not contain `..` path segments")]
    DotDot,
    #[error("must not carry a password or token (`user:token@`)")]
    Credentials,
    #[error("must be an absolute path when it is a local path")]
    Relative,
}

/// Reads a remote URL the way libgit2 picks its transport, so what is checked is what is
/// reached: `https://`, `http://` and `ssh://` URLs, scp-like `[user@]host:path` (libgit2
/// takes any other string with a `:` for ssh), and local paths (`file://` or absolute; libgit2
/// opens any existing directory as a repository, so a string that is neither must never pass
/// for a network remote). `..` segments are refused in every form, and so is a password (a
/// bare user such as `git@` is fine).
pub fn parse_remote(url: &str) -> Result<RemoteUrl, RemoteUrlError> {
    if url.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RemoteUrlError::Form);
    }
    if url.split(['/', '\\', ':']).any(is_dot_dot) {
        return Err(RemoteUrlError::DotDot);
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return parse_with_scheme(url, &scheme.to_ascii_lowercase());
    }
    // scp-like: the host ends at the first `:` (after a bracketed IPv6 address).
    let split = match url.find("]:") {
        Some(i) if url[..i].contains('[') => Some(i + 1),
        _ => url.find(':'),
    };
    let Some(at) = split else {
        let path = Path::new(url);
        return if path.is_absolute() {
            Ok(RemoteUrl::Local(path.to_path_buf()))
        } else {
            Err(RemoteUrlError::Relative)
        };
    };
    let (head, path) = (&url[..at], &url[at + 1..]);
    if head.contains('/') {
        // A path with a `:` in it: libgit2 would take it for an ssh remote.
        return Err(RemoteUrlError::Form);
    }
    if let Some((before, _)) = path.split_once('@') {
        // `user:token@host:path` reads as host `user`, path `token@host:path`.
        return Err(if before.contains('/') {
            RemoteUrlError::Form
        } else {
            RemoteUrlError::Credentials
        });
    }
    let (user, host) = match head.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, head),
    };
    let user_ok = user.is_none_or(|u| {
        !u.is_empty()
            && u.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
    });
    let bracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .filter(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
    let host = match bracketed {
        Some(v6) => v6,
        None if is_host_name(host) => host,
        None => return Err(RemoteUrlError::Form),
    };
    if !user_ok || path.is_empty() {
        return Err(RemoteUrlError::Form);
    }
    Ok(RemoteUrl::Network {
        host: host.to_owned(),
        port: 22,
    })
}

/// `scheme://…`: https, http and ssh on the network, file on this machine, nothing else.
fn parse_with_scheme(url: &str, scheme: &str) -> Result<RemoteUrl, RemoteUrlError> {
    // libgit2 and libssh2 read the authority with parsers of their own: anything the two could
    // read differently (a `\`, escapes, several `@`, non-ASCII) could make the host checked
    // here differ from the host reached.
    let authority = url[scheme.len() + 3..]
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if scheme != "file"
        && (authority.is_empty()
            || url.contains('\\')
            || authority.contains('%')
            || !authority.is_ascii()
            || authority.matches('@').count() > 1)
    {
        return Err(RemoteUrlError::Form);
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| RemoteUrlError::Form)?;
    match scheme {
        "https" | "http" | "ssh" => {
            if parsed.password().is_some() {
                return Err(RemoteUrlError::Credentials);
            }
            let host = parsed
                .host_str()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                .filter(|h| is_host_name(h) || h.parse::<IpAddr>().is_ok())
                .ok_or(RemoteUrlError::Form)?;
            Ok(RemoteUrl::Network {
                host: host.to_owned(),
                port: parsed.port_or_known_default().unwrap_or(22),
            })
        }
        "file" => parsed
            .to_file_path()
            .map(RemoteUrl::Local)
            .map_err(|()| RemoteUrlError::Form),
        other => Err(RemoteUrlError::Scheme(other.to_owned())),
    }
}

/// A `..` segment, percent-encoded or not.
fn is_dot_dot(segment: &str) -> bool {
    segment.to_ascii_lowercase().replace("%2e", ".") == ".."
}

/// A DNS name (or dotted IPv4 address): letters, digits, `-` and `.`, not starting with `-`.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with(['-', '.'])
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
}

/// Refuses a remote that `outbound` does not let this server reach: a network remote whose
/// host is or resolves to a refused address, or a string that is no remote URL at all (as may
/// have been stored before these rules). Whether local paths are allowed is for the API to
/// say when the URL is saved.
///
/// libgit2 resolves the host again when it connects, and has no hook to be handed checked
/// addresses: a name that changes its answer in the milliseconds between this check and that
/// connection (DNS rebinding) is not caught. That window is accepted; the check is repeated
/// before every fetch and push, and redirects to other hosts are not followed.
pub fn check_remote(url: &str, outbound: Outbound) -> Result<(), GitError> {
    match parse_remote(url) {
        Ok(RemoteUrl::Local(_)) => Ok(()),
        Ok(RemoteUrl::Network { host, port }) => Guard::new(outbound)
            .lookup_blocking(&host, port)
            .map(drop)
            .map_err(|e| match e {
                DestinationError::Refused(r) => GitError::Refused(r.to_string()),
                other => GitError::Unreachable(other.to_string()),
            }),
        Err(e) => Err(GitError::Refused(format!("the remote URL {e}"))),
    }
}

impl From<git2::Error> for GitError {
    fn from(e: git2::Error) -> Self {
        let message = e.message().to_owned();
        match (e.class(), e.code()) {
            (_, git2::ErrorCode::Auth) | (git2::ErrorClass::Ssh, _) => Self::Auth(message),
            (git2::ErrorClass::Net | git2::ErrorClass::Http | git2::ErrorClass::Os, _)
            | (_, git2::ErrorCode::NotFound) => Self::Unreachable(message),
            _ => Self::Other(message),
        }
    }
}

/// One file change: the new content, or None to delete the file.
pub type Change = (String, Option<Vec<u8>>);

/// How many times a commit is re-applied on a moved remote head before giving up.
const LANDING_ATTEMPTS: u32 = 8;

fn callbacks(auth: &GitAuth) -> RemoteCallbacks<'_> {
    let mut cb = RemoteCallbacks::new();
    let mut tries = 0;
    cb.credentials(move |_url, username, _allowed| {
        // libgit2 asks again after a refusal; answer once, then let it fail with Auth.
        tries += 1;
        if tries > 1 {
            return Err(git2::Error::new(
                git2::ErrorCode::Auth,
                git2::ErrorClass::Http,
                "the credentials were refused",
            ));
        }
        match auth {
            GitAuth::None => Cred::default(),
            GitAuth::Token { username, token } => {
                Cred::userpass_plaintext(username, token.expose_secret())
            }
            GitAuth::SshKey {
                private_key,
                passphrase,
            } => Cred::ssh_key_from_memory(
                username.unwrap_or("git"),
                None,
                private_key.expose_secret(),
                passphrase.as_ref().map(ExposeSecret::expose_secret),
            ),
        }
    });
    cb
}

fn fetch_options(auth: &GitAuth) -> FetchOptions<'_> {
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks(auth));
    fo.follow_redirects(RemoteRedirect::None);
    fo
}

/// Push options: `callbacks`, and no redirect to another host (see [`fetch_options`]).
fn push_options(callbacks: RemoteCallbacks<'_>) -> PushOptions<'_> {
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    options.follow_redirects(RemoteRedirect::None);
    options
}

/// A working copy following `remote.branch`. The cache directory is locked (an exclusive
/// file lock, so across processes too) while the checkout is open: two runs sharing it wait for
/// each other instead of racing on libgit2's ref locks.
pub struct Checkout {
    repo: Repository,
    remote: GitRemote,
    /// Which networks the remote may be on: checked before every fetch and push.
    outbound: Outbound,
    dir: PathBuf,
    _lock: std::fs::File,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("url", &self.remote.url)
            .field("branch", &self.remote.branch)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Checkout {
    /// [`Checkout::open_within`] with the checks every setting makes: whatever
    /// `WFO_OUTBOUND_NETWORKS` says, a remote on a link-local (cloud metadata), unspecified,
    /// multicast, broadcast or reserved address is refused. Callers that know the server's
    /// setting pass it to `open_within`.
    pub fn open(remote: &GitRemote, dir: &Path) -> Result<Self, GitError> {
        Self::open_within(remote, dir, Outbound::Any)
    }

    /// Opens the repository kept at `dir` (initialising it the first time) and fetches the
    /// remote branch, if `outbound` lets this server reach the remote ([`check_remote`]). An
    /// empty remote is fine: the first commit creates the branch.
    pub fn open_within(
        remote: &GitRemote,
        dir: &Path,
        outbound: Outbound,
    ) -> Result<Self, GitError> {
        check_remote(&remote.url, outbound)?;
        let lock = lock_dir(dir)?;
        let repo = match Repository::open_bare(dir) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    GitError::Other(format!("cannot create {}: {e}", dir.display()))
                })?;
                Repository::init_bare(dir)?
            }
        };
        if repo.find_remote("origin").is_err() {
            repo.remote("origin", &remote.url)?;
        } else {
            repo.remote_set_url("origin", &remote.url)?;
        }
        let checkout = Self {
            repo,
            remote: remote.clone(),
            outbound,
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        checkout.fetch()?;
        Ok(checkout)
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.remote.branch)
    }

    fn fetch(&self) -> Result<(), GitError> {
        check_remote(&self.remote.url, self.outbound)?;
        let mut origin = self.repo.find_remote("origin")?;
        let refspec = format!(
            "+refs/heads/{0}:{1}",
            self.remote.branch,
            self.tracking_ref()
        );
        origin.fetch(
            &[&refspec],
            Some(&mut fetch_options(&self.remote.auth)),
            None,
        )?;
        Ok(())
    }

    /// The remote branch's head as last fetched (None while the remote has no commit).
    pub fn head(&self) -> Option<git2::Oid> {
        self.repo.refname_to_id(&self.tracking_ref()).ok()
    }

    /// The tree at `at` (a commit id), or at the head when None; None while the remote is empty.
    fn tree(&self, at: Option<git2::Oid>) -> Result<Option<git2::Tree<'_>>, GitError> {
        let Some(commit) = at.or_else(|| self.head()) else {
            return Ok(None);
        };
        match self.repo.find_commit(commit) {
            Ok(c) => Ok(Some(c.tree()?)),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Err(GitError::Other(format!(
                "commit {commit} is not in the repository (was the branch rewritten?)"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// A file's content at the head.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        self.read_at(None, path)
    }

    /// A file's content at commit `at` (the head when None).
    pub fn read_at(&self, at: Option<git2::Oid>, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        let Some(tree) = self.tree(at)? else {
            return Ok(None);
        };
        match tree.get_path(Path::new(path)) {
            Ok(entry) => Ok(Some(self.repo.find_blob(entry.id())?.content().to_vec())),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every file under `prefix` at the head with its blob id, in one walk of the tree (compare
    /// with [`blob_id`] to find what changed without reading each file).
    pub fn blob_ids(
        &self,
        prefix: &str,
    ) -> Result<std::collections::HashMap<String, git2::Oid>, GitError> {
        self.blob_ids_at(None, prefix)
    }

    /// [`Checkout::blob_ids`] at commit `at` (the head when None).
    pub fn blob_ids_at(
        &self,
        at: Option<git2::Oid>,
        prefix: &str,
    ) -> Result<std::collections::HashMap<String, git2::Oid>, GitError> {
        let Some(tree) = self.tree(at)? else {
            return Ok(std::collections::HashMap::new());
        };
        let mut out = std::collections::HashMap::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(git2::ObjectType::Blob) {
                let path = format!("{dir}{}", entry.name().unwrap_or(""));
                if path.starts_with(prefix) {
                    out.insert(path, entry.id());
                }
            }
            git2::TreeWalkResult::Ok
        })?;
        Ok(out)
    }

    /// Every file path at the head under `prefix` (empty: all).
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, GitError> {
        let mut out: Vec<String> = self.blob_ids(prefix)?.into_keys().collect();
        out.sort();
        Ok(out)
    }

    /// The content of a blob by id (from [`Checkout::blob_ids`]).
    pub fn blob(&self, id: git2::Oid) -> Result<Vec<u8>, GitError> {
        Ok(self.repo.find_blob(id)?.content().to_vec())
    }

    /// Applies `changes` on the remote head as one commit and force-pushes it to `branch` (a
    /// branch of our own, e.g. for a pull request; pushing again replaces it). None when the
    /// changes change nothing.
    pub fn push_branch(
        &mut self,
        branch: &str,
        changes: &[Change],
        message: &str,
        author: (&str, &str),
    ) -> Result<Option<git2::Oid>, GitError> {
        let Some(commit) = self.build_commit(changes, message, author)? else {
            return Ok(None);
        };
        let local = format!("refs/heads/{branch}");
        self.repo
            .reference(&local, commit, true, "branch to push")?;
        check_remote(&self.remote.url, self.outbound)?;
        let mut origin = self.repo.find_remote("origin")?;
        let mut rejected: Option<String> = None;
        let mut cb = callbacks(&self.remote.auth);
        cb.push_update_reference(|_refname, status| {
            if let Some(s) = status {
                rejected = Some(s.to_owned());
            }
            Ok(())
        });
        let mut options = push_options(cb);
        origin.push(&[format!("+{local}:{local}")], Some(&mut options))?;
        drop(options);
        match rejected {
            None => Ok(Some(commit)),
            Some(why) => Err(GitError::Other(format!(
                "the remote refused branch `{branch}`: {why}"
            ))),
        }
    }

    /// Applies `changes` as one commit on the remote head and pushes it; on a non-fast-forward
    /// fetches and applies them again on the new head. None when the changes change nothing.
    pub fn commit_and_push(
        &mut self,
        changes: &[Change],
        message: &str,
        author: (&str, &str),
    ) -> Result<Option<git2::Oid>, GitError> {
        for attempt in 1..=LANDING_ATTEMPTS {
            if attempt > 1 {
                self.fetch()?;
            }
            let Some(commit) = self.build_commit(changes, message, author)? else {
                return Ok(None);
            };
            match self.push(commit) {
                Ok(()) => {
                    self.repo
                        .reference(&self.tracking_ref(), commit, true, "pushed")?;
                    return Ok(Some(commit));
                }
                Err(PushError::Rejected) => {
                    tracing::debug!(attempt, "the remote moved; applying the changes again");
                }
                Err(PushError::Git(e)) => return Err(e),
            }
        }
        Err(GitError::Contended(LANDING_ATTEMPTS))
    }

    fn build_commit(
        &self,
        changes: &[Change],
        message: &str,
        (name, email): (&str, &str),
    ) -> Result<Option<git2::Oid>, GitError> {
        let parent = match self.head() {
            Some(id) => Some(self.repo.find_commit(id)?),
            None => None,
        };
        let mut index = git2::Index::new()?;
        if let Some(p) = &parent {
            index.read_tree(&p.tree()?)?;
        }
        for (path, content) in changes {
            match content {
                Some(bytes) => {
                    let blob = self.repo.blob(bytes)?;
                    let entry = IndexEntry {
                        ctime: IndexTime::new(0, 0),
                        mtime: IndexTime::new(0, 0),
                        dev: 0,
                        ino: 0,
                        mode: 0o100_644,
                        uid: 0,
                        gid: 0,
                        file_size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                        id: blob,
                        flags: 0,
                        flags_extended: 0,
                        path: path.as_bytes().to_vec(),
                    };
                    index.add(&entry)?;
                }
                None => {
                    let _ = index.remove_path(Path::new(path));
                }
            }
        }
        let tree_id = index.write_tree_to(&self.repo)?;
        if parent.as_ref().is_some_and(|p| p.tree_id() == tree_id) {
            return Ok(None);
        }
        if parent.is_none() && changes.iter().all(|(_, c)| c.is_none()) {
            return Ok(None);
        }
        let tree = self.repo.find_tree(tree_id)?;
        let signature = git2::Signature::now(name, email)?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        Ok(Some(self.repo.commit(
            None, &signature, &signature, message, &tree, &parents,
        )?))
    }

    fn push(&self, commit: git2::Oid) -> Result<(), PushError> {
        check_remote(&self.remote.url, self.outbound).map_err(PushError::Git)?;
        let local = format!("refs/heads/{}", self.remote.branch);
        self.repo
            .reference(&local, commit, true, "commit to push")
            .map_err(|e| PushError::Git(e.into()))?;
        let mut origin = self
            .repo
            .find_remote("origin")
            .map_err(|e| PushError::Git(e.into()))?;
        let mut rejected: Option<String> = None;
        let mut cb = callbacks(&self.remote.auth);
        cb.push_update_reference(|_refname, status| {
            if let Some(s) = status {
                rejected = Some(s.to_owned());
            }
            Ok(())
        });
        let mut options = push_options(cb);
        let result = origin.push(&[format!("{local}:{local}")], Some(&mut options));
        drop(options);
        match result {
            Ok(()) if rejected.is_none() => Ok(()),
            Ok(()) => Err(PushError::Rejected),
            Err(e) if e.code() == git2::ErrorCode::NotFastForward => Err(PushError::Rejected),
            Err(e) => Err(PushError::Git(e.into())),
        }
    }
}

enum PushError {
    Rejected,
    Git(GitError),
}

/// Takes the exclusive lock of a cache directory (`<dir>/workflowops.lock`, created with the
/// directory), waiting for its holder.
fn lock_dir(dir: &Path) -> Result<std::fs::File, GitError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| GitError::Other(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join("workflowops.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| GitError::Other(format!("cannot open {}: {e}", path.display())))?;
    file.lock()
        .map_err(|e| GitError::Other(format!("cannot lock {}: {e}", path.display())))?;
    Ok(file)
}

/// The id Git gives `content` as a file (no repository needed).
pub fn blob_id(content: &[u8]) -> Result<git2::Oid, GitError> {
    Ok(git2::Oid::hash_object(git2::ObjectType::Blob, content)?)
}

/// Proves read and write access (ENV-004) without leaving anything behind: lists the remote's
/// refs, pushes a probe ref and deletes it again, if `outbound` lets this server reach it.
/// `scratch` is a directory this may use.
pub fn test_connection(
    remote: &GitRemote,
    scratch: &Path,
    outbound: Outbound,
) -> Result<(), GitError> {
    let checkout = Checkout::open_within(remote, scratch, outbound)?;
    let probe = format!(
        "refs/workflowops-probe/{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let commit = match checkout.head() {
        Some(head) => head,
        None => {
            let tree = checkout
                .repo
                .find_tree(git2::Index::new()?.write_tree_to(&checkout.repo)?)?;
            let sig = git2::Signature::now("WorkflowOps", "probe@workflowops.invalid")?;
            checkout
                .repo
                .commit(None, &sig, &sig, "connection test", &tree, &[])?
        }
    };
    checkout.repo.reference(&probe, commit, true, "probe")?;
    let mut origin = checkout.repo.find_remote("origin")?;
    let push = |origin: &mut git2::Remote<'_>, spec: &str| -> Result<(), GitError> {
        check_remote(&remote.url, outbound)?;
        let mut rejected = None;
        let mut cb = callbacks(&remote.auth);
        cb.push_update_reference(|_r, status| {
            if let Some(s) = status {
                rejected = Some(s.to_owned());
            }
            Ok(())
        });
        let mut options = push_options(cb);
        origin.push(&[spec], Some(&mut options))?;
        drop(options);
        match rejected {
            None => Ok(()),
            Some(why) => Err(GitError::Auth(format!("the remote refused a write: {why}"))),
        }
    };
    push(&mut origin, &format!("{probe}:{probe}"))?;
    push(&mut origin, &format!(":{probe}"))?;
    let _ = checkout
        .repo
        .find_reference(&probe)
        .and_then(|mut r| r.delete());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory removed when the test ends.
    struct Temp(PathBuf);

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl std::ops::Deref for Temp {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    fn temp(name: &str) -> Temp {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("wfo-git-{name}-{}-{nanos}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Temp(dir)
    }

    fn bare() -> (Temp, GitRemote) {
        let dir = temp("remote");
        Repository::init_bare(&*dir).unwrap_or_else(|e| panic!("{e}"));
        let remote = GitRemote {
            url: dir.display().to_string(),
            branch: "main".into(),
            auth: GitAuth::None,
        };
        (dir, remote)
    }

    const AUTHOR: (&str, &str) = ("Test", "test@example.invalid");

    #[test]
    fn a_commit_lands_and_an_unchanged_one_is_skipped() {
        let (_dir, remote) = bare();
        let dir_a = temp("a");
        let mut a = Checkout::open(&remote, &dir_a).unwrap_or_else(|e| panic!("{e}"));
        let first = a
            .commit_and_push(
                &[("env/dev/w1.json".into(), Some(b"{}\n".to_vec()))],
                "add w1",
                AUTHOR,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(first.is_some());
        let again = a
            .commit_and_push(
                &[("env/dev/w1.json".into(), Some(b"{}\n".to_vec()))],
                "same",
                AUTHOR,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, None, "an unchanged file makes no commit");
        let dir_b = temp("b");
        let b = Checkout::open(&remote, &dir_b).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            b.read("env/dev/w1.json").ok().flatten(),
            Some(b"{}\n".to_vec())
        );
        assert_eq!(b.list("env/").unwrap_or_default(), ["env/dev/w1.json"]);
    }

    #[test]
    fn concurrent_writers_both_land() {
        let (_dir, remote) = bare();
        let dir_a = temp("a");
        let mut a = Checkout::open(&remote, &dir_a).unwrap_or_else(|e| panic!("{e}"));
        let dir_b = temp("b");
        let mut b = Checkout::open(&remote, &dir_b).unwrap_or_else(|e| panic!("{e}"));
        a.commit_and_push(&[("a.json".into(), Some(b"1".to_vec()))], "a", AUTHOR)
            .unwrap_or_else(|e| panic!("{e}"));
        // b has not seen a's commit: its push is rejected, then re-applied on top.
        b.commit_and_push(&[("b.json".into(), Some(b"2".to_vec()))], "b", AUTHOR)
            .unwrap_or_else(|e| panic!("{e}"));
        let dir_c = temp("c");
        let c = Checkout::open(&remote, &dir_c).unwrap_or_else(|e| panic!("{e}"));
        let mut files = c.list("").unwrap_or_default();
        files.sort();
        assert_eq!(files, ["a.json", "b.json"]);
        let head = c
            .repo
            .find_commit(c.head().unwrap_or(git2::Oid::ZERO_SHA1))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(head.parent_count(), 1, "linear history, no merge");
    }

    #[test]
    fn deletes_remove_files() {
        let (_dir, remote) = bare();
        let dir_a = temp("a");
        let mut a = Checkout::open(&remote, &dir_a).unwrap_or_else(|e| panic!("{e}"));
        a.commit_and_push(
            &[
                ("x.json".into(), Some(b"1".to_vec())),
                ("y.json".into(), Some(b"2".to_vec())),
            ],
            "two",
            AUTHOR,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        a.commit_and_push(&[("x.json".into(), None)], "drop x", AUTHOR)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.list("").unwrap_or_default(), ["y.json"]);
    }

    #[test]
    fn the_connection_test_writes_nothing_that_stays() {
        let (dir, remote) = bare();
        let probe = temp("probe");
        test_connection(&remote, &probe, Outbound::Public).unwrap_or_else(|e| panic!("{e}"));
        let bare = Repository::open_bare(&*dir).unwrap_or_else(|e| panic!("{e}"));
        let refs: Vec<String> = bare
            .references()
            .map(|r| {
                r.filter_map(|r| r.ok()?.name().ok().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        assert!(refs.is_empty(), "no refs left behind: {refs:?}");

        let nowhere = temp("nowhere");
        let missing = GitRemote {
            url: nowhere.display().to_string(),
            ..remote
        };
        let probe2 = temp("probe2");
        let e = test_connection(&missing, &probe2, Outbound::Public);
        assert!(
            matches!(e, Err(GitError::Unreachable(_) | GitError::Other(_))),
            "{e:?}"
        );
    }

    #[test]
    fn remote_urls_are_read_as_libgit2_reaches_them() {
        let network = |host: &str, port: u16| {
            Ok(RemoteUrl::Network {
                host: host.to_owned(),
                port,
            })
        };
        for (url, expected) in [
            (
                "https://github.com/acme/flows.git",
                network("github.com", 443),
            ),
            (
                "http://git.internal:8080/r.git",
                network("git.internal", 8080),
            ),
            (
                "https://x-access-token@github.com/a/b",
                network("github.com", 443),
            ),
            (
                "ssh://git@github.com/acme/flows.git",
                network("github.com", 22),
            ),
            ("ssh://git@[::1]:2222/r.git", network("::1", 2222)),
            ("git@github.com:acme/flows.git", network("github.com", 22)),
            ("github.com:acme/flows.git", network("github.com", 22)),
            ("git@[fd00::1]:r.git", network("fd00::1", 22)),
            ("git@10.0.0.5:/srv/r.git", network("10.0.0.5", 22)),
            (
                "/srv/git/flows.git",
                Ok(RemoteUrl::Local("/srv/git/flows.git".into())),
            ),
            (
                "file:///srv/git/flows.git",
                Ok(RemoteUrl::Local("/srv/git/flows.git".into())),
            ),
        ] {
            assert_eq!(parse_remote(url), expected, "{url}");
        }
    }

    #[test]
    fn remote_urls_that_could_reach_elsewhere_are_refused() {
        use RemoteUrlError as E;
        for (url, expected) in [
            // The `@` bypass: a path libgit2 would open as another environment's cache.
            (
                "/tmp/workflowops-git/0190-own/refs/remotes/origin/x@y/../../../0190-victim",
                E::DotDot,
            ),
            ("https://github.com/a/../../b", E::DotDot),
            ("https://github.com/a/%2e%2e/b", E::DotDot),
            ("git@github.com:../b", E::DotDot),
            ("relative/path@x", E::Relative),
            ("x@y", E::Relative),
            ("https://user:token@github.com/a/b.git", E::Credentials),
            ("ssh://git:secret@github.com/a/b.git", E::Credentials),
            ("user:token@github.com:a/b.git", E::Credentials),
            ("git://github.com/a/b.git", E::Scheme("git".into())),
            ("ext::sh -c touch% /tmp/x", E::Form),
            ("/tmp/a:b", E::Form),
            ("-oProxyCommand=x:y", E::Form),
            ("git@:repo", E::Form),
            ("git@host:", E::Form),
            ("bad user@host:repo", E::Form),
            ("https:///repo", E::Form),
            ("https://evil.example\\@127.0.0.1/r.git", E::Form),
            ("https://a@b@127.0.0.1/r.git", E::Form),
            ("https://%31%32%37.0.0.1/r.git", E::Form),
            ("", E::Form),
        ] {
            assert_eq!(parse_remote(url), Err(expected), "{url}");
        }
    }

    #[test]
    fn a_remote_outside_the_allowed_networks_is_refused_before_libgit2_sees_it() {
        let dir = temp("refused");
        let remote = |url: &str| GitRemote {
            url: url.to_owned(),
            branch: "main".into(),
            auth: GitAuth::None,
        };
        for (url, outbound, class) in [
            ("http://169.254.169.254/r.git", Outbound::Any, "link-local"),
            ("ssh://git@127.0.0.1/r.git", Outbound::Private, "loopback"),
            ("git@10.0.0.1:r.git", Outbound::Public, "private"),
            (
                "https://[::ffff:169.254.169.254]/r.git",
                Outbound::Any,
                "link-local",
            ),
        ] {
            let e = Checkout::open_within(&remote(url), &dir, outbound).err();
            assert!(
                matches!(&e, Some(GitError::Refused(m)) if m.contains(class) && m.contains("WFO_OUTBOUND_NETWORKS")),
                "{url}: {e:?}"
            );
        }
        assert!(!dir.exists(), "nothing was created for a refused remote");
        let e = Checkout::open(&remote("/srv/../etc"), &dir).err();
        assert!(matches!(e, Some(GitError::Refused(_))), "{e:?}");
    }
}
