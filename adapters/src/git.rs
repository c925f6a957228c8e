//! Git remotes through libgit2 (git2): a working copy that follows one branch of a remote, and
//! commits that always land. A commit is built from a set of file changes on top of the
//! remote's head; if another writer pushed first (non-fast-forward), the changes are applied
//! again on the new head and pushed again, so concurrent writers never lose a commit.
//!
//! Everything here blocks (libgit2 is synchronous): call it from `spawn_blocking`.

use std::path::{Path, PathBuf};

pub use git2::Oid;
use git2::{Cred, FetchOptions, IndexEntry, IndexTime, PushOptions, RemoteCallbacks, Repository};
use secrecy::{ExposeSecret, SecretString};

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
    fo
}

/// A working copy following `remote.branch`. The cache directory is locked (an exclusive
/// file lock, so across processes too) while the checkout is open: two runs sharing it wait for
/// each other instead of racing on libgit2's ref locks.
pub struct Checkout {
    repo: Repository,
    remote: GitRemote,
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
    /// Opens the repository kept at `dir` (initialising it the first time) and fetches the
    /// remote branch. An empty remote is fine: the first commit creates the branch.
    pub fn open(remote: &GitRemote, dir: &Path) -> Result<Self, GitError> {
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
        let mut origin = self.repo.find_remote("origin")?;
        let mut rejected: Option<String> = None;
        let mut cb = callbacks(&self.remote.auth);
        cb.push_update_reference(|_refname, status| {
            if let Some(s) = status {
                rejected = Some(s.to_owned());
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(cb);
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
        let mut options = PushOptions::new();
        options.remote_callbacks(cb);
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
/// refs, pushes a probe ref and deletes it again. `scratch` is a directory this may use.
pub fn test_connection(remote: &GitRemote, scratch: &Path) -> Result<(), GitError> {
    let checkout = Checkout::open(remote, scratch)?;
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
        let mut rejected = None;
        let mut cb = callbacks(&remote.auth);
        cb.push_update_reference(|_r, status| {
            if let Some(s) = status {
                rejected = Some(s.to_owned());
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(cb);
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
        test_connection(&remote, &probe).unwrap_or_else(|e| panic!("{e}"));
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
        let e = test_connection(&missing, &probe2);
        assert!(
            matches!(e, Err(GitError::Unreachable(_) | GitError::Other(_))),
            "{e:?}"
        );
    }
}
