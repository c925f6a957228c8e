//! Git: connecting an environment to a repository and backing it up, against real (local,
//! bare) repositories.

use std::path::PathBuf;
use std::time::Duration;

use domain::Role;
use engine::RunStatus;
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::engine_support::{TestWorker, wait_for};
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};
use workflowops_tests::{TenantFixture, TestApp, sse};

pub(crate) struct Repo(pub(crate) PathBuf);

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn bare_repo() -> Repo {
    let dir = std::env::temp_dir().join(format!("wfo-e2e-repo-{}", Uuid::now_v7().simple()));
    git2::Repository::init_bare(&dir).unwrap_or_else(|e| panic!("{e}"));
    Repo(dir)
}

/// A bare repository connected as `env`'s Git backup, then a sync of its workflows and a
/// backup into it (a worker must be running).
pub(crate) async fn backed_up(app: &TestApp, t: &TenantFixture, env: Uuid) -> Repo {
    let repo = bare_repo();
    let put = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{env}/git"),
            Some(&t.admin.token),
            Some(&json!({"url": repo.0.display().to_string(), "auth": "none"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    run(
        app,
        t,
        &format!("/api/v1/environments/{env}/sync"),
        Some(&json!({"scope": "workflows"})),
    )
    .await;
    run(app, t, &format!("/api/v1/environments/{env}/backup"), None).await;
    repo
}

/// Files the head commit touched, and the head's file list.
pub(crate) fn head_files(repo: &Repo) -> (Vec<String>, Vec<String>) {
    let r = git2::Repository::open_bare(&repo.0).unwrap_or_else(|e| panic!("{e}"));
    let head = r
        .find_reference("refs/heads/main")
        .and_then(|h| h.peel_to_commit())
        .unwrap_or_else(|e| panic!("{e}"));
    let tree = head.tree().unwrap_or_else(|e| panic!("{e}"));
    let parent_tree = head.parent(0).ok().and_then(|p| p.tree().ok());
    let diff = r
        .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)
        .unwrap_or_else(|e| panic!("{e}"));
    let touched = diff
        .deltas()
        .filter_map(|d| {
            d.new_file()
                .path()
                .or(d.old_file().path())
                .map(|p| p.display().to_string())
        })
        .collect();
    let mut all = Vec::new();
    let _ = tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            all.push(format!("{dir}{}", e.name().unwrap_or("")));
        }
        git2::TreeWalkResult::Ok
    });
    (touched, all)
}

pub(crate) fn read(repo: &Repo, path: &str) -> Value {
    let r = git2::Repository::open_bare(&repo.0).unwrap_or_else(|e| panic!("{e}"));
    let tree = r
        .find_reference("refs/heads/main")
        .and_then(|h| h.peel_to_tree())
        .unwrap_or_else(|e| panic!("{e}"));
    let entry = tree
        .get_path(std::path::Path::new(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let blob = r.find_blob(entry.id()).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_slice(blob.content()).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) async fn setup(app: &TestApp, t: &TenantFixture, n8n: &N8nEmulator) -> Uuid {
    let res = app
        .post(
            "/api/v1/environments",
            &t.admin,
            &json!({"name": "Prod", "provider": "n8n", "base_url": n8n.base_url(), "api_key": n8n.api_key(), "class": "production"}),
        )
        .await;
    res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", res.body))
}

pub(crate) async fn run(
    app: &TestApp,
    t: &TenantFixture,
    path: &str,
    body: Option<&Value>,
) -> Value {
    run_with_id(app, t, path, body).await.1
}

/// As [`run`], also returning the run's id.
pub(crate) async fn run_with_id(
    app: &TestApp,
    t: &TenantFixture,
    path: &str,
    body: Option<&Value>,
) -> (Uuid, Value) {
    let res = app
        .request(reqwest::Method::POST, path, Some(&t.admin.token), body)
        .await;
    assert_eq!(res.status, 202, "{path}: {}", res.body);
    let id: Uuid = res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, id, RunStatus::Succeeded).await;
    let output = app.get(&format!("/api/v1/runs/{id}"), &t.admin).await.body["output"].clone();
    (id, output)
}

// ENV-003, ENV-004
#[tokio::test]
async fn a_repository_is_saved_only_after_read_and_write_access_are_proven() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let env = setup(&app, &acme, &n8n).await;

    let missing = std::env::temp_dir().join(format!("wfo-nowhere-{}", Uuid::now_v7().simple()));
    let bad = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{env}/git"),
            Some(&acme.admin.token),
            Some(&json!({"url": missing.display().to_string(), "auth": "none"})),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.code(), "git_connection_failed");
    assert_eq!(app.count("environment_git").await, 0, "nothing saved");
    let no_secret = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{env}/git"),
            Some(&acme.admin.token),
            Some(&json!({"url": "https://example.invalid/r.git", "auth": "token"})),
        )
        .await;
    assert_eq!(no_secret.status, 422);

    let repo = bare_repo();
    let ok = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{env}/git"),
            Some(&acme.admin.token),
            Some(&json!({"url": repo.0.display().to_string(), "auth": "none"})),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["path"], "environments/prod");
    let r = git2::Repository::open_bare(&repo.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.references().map(|refs| refs.count()).unwrap_or(99),
        0,
        "the probe left nothing behind"
    );

    let dev = app.member(&acme, Role::Developer).await;
    let refused = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{env}/git"),
            Some(&dev.token),
            Some(&json!({"url": repo.0.display().to_string(), "auth": "none"})),
        )
        .await;
    assert_eq!(refused.status, 403);
}

#[tokio::test]
async fn local_paths_are_refused_unless_allowed() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let env = setup(&app, &acme, &n8n).await;
    let res = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{env}/git"),
            Some(&acme.admin.token),
            Some(&json!({"url": "/etc", "auth": "none"})),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.body);
}

// WF-016: readable, normalised files; incremental commits touch only what changed
#[tokio::test]
async fn backups_commit_readable_files_and_only_what_changed() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let ids = n8n.seed_workflows(20, 5);
    let env = setup(&app, &acme, &n8n).await;
    let repo = bare_repo();
    let put = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{env}/git"),
            Some(&acme.admin.token),
            Some(&json!({"url": repo.0.display().to_string(), "auth": "none", "path": "prod"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    run(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/sync"),
        Some(&json!({"scope": "workflows"})),
    )
    .await;

    let (backup, first) = run_with_id(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/backup"),
        None,
    )
    .await;
    assert_eq!(
        (first["added"].as_i64(), first["changed"].as_i64()),
        (Some(20), Some(0)),
        "{first}"
    );
    // SSE-006: the backup streamed its stages and what it did.
    let events = sse::run_stream(&app, &acme.admin.token, backup, Duration::from_secs(30)).await;
    assert_eq!(
        sse::progress(&events),
        [(1, 3), (2, 3), (3, 3)],
        "{events:?}"
    );
    assert_eq!(
        sse::statuses(&events).last().map(String::as_str),
        Some("succeeded")
    );
    let logs: Vec<String> = events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| {
            e.json()["data"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        logs.iter()
            .any(|l| l == "20 of 20 workflows changed since the last backup")
            && logs
                .iter()
                .any(|l| l.starts_with("committed ")
                    && l.ends_with("20 added, 0 changed, 0 removed")),
        "{logs:?}"
    );
    let (_, files) = head_files(&repo);
    assert_eq!(files.len(), 21, "20 workflows and the manifest: {files:?}");
    let file = read(&repo, &format!("prod/workflows/{}.json", ids[0]));
    let stored: String =
        sqlx::query_scalar("select content_hash from env_workflows where provider_id = $1")
            .bind(&ids[0])
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_default();
    assert_eq!(
        domain::workflow::content_hash(&file),
        stored,
        "the file is the normalised workflow"
    );
    assert!(
        file.get("id").is_none() && file.get("versionId").is_none(),
        "no volatile fields"
    );
    let manifest = read(&repo, "prod/manifest.json");
    assert_eq!(manifest["workflows"].as_array().map(Vec::len), Some(20));

    // Nothing changed: no commit.
    let again = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/backup"),
        None,
    )
    .await;
    assert_eq!(again["commit"], Value::Null, "{again}");

    // A moved node changes the file (a restore must put it back), a parameter too.
    n8n.modify_workflow(&ids[1], |wf| wf["nodes"][0]["position"] = json!([5, 5]));
    for id in &ids[2..4] {
        n8n.modify_workflow(id, |wf| {
            wf["nodes"][1]["parameters"] = json!({"changed": true});
        });
    }
    n8n.remove_workflow(&ids[4]);
    run(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/sync"),
        Some(&json!({"scope": "workflows"})),
    )
    .await;
    let third = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/backup"),
        None,
    )
    .await;
    assert_eq!(
        (third["changed"].as_i64(), third["removed"].as_i64()),
        (Some(3), Some(1)),
        "{third}"
    );
    let (mut touched, _) = head_files(&repo);
    touched.sort();
    let mut expected = vec![
        format!("prod/workflows/{}.json", ids[1]),
        format!("prod/workflows/{}.json", ids[2]),
        format!("prod/workflows/{}.json", ids[3]),
        format!("prod/workflows/{}.json", ids[4]),
        "prod/manifest.json".to_owned(),
    ];
    expected.sort();
    assert_eq!(
        touched, expected,
        "the commit touches the changed and removed files (and the manifest for the removal)"
    );
    let git = app
        .get(&format!("/api/v1/environments/{env}/git"), &acme.admin)
        .await;
    assert!(git.body["last_commit"].is_string(), "{}", git.body);
    // Each backup is a `backup.completed` alert for the notification rules (NOTIF-009).
    let alerts = app
        .get(
            "/api/v1/notifications/alerts?event_type=backup.completed",
            &acme.admin,
        )
        .await
        .body;
    assert_eq!(
        alerts["items"].as_array().map(Vec::len),
        Some(3),
        "{alerts}"
    );
    assert_eq!(alerts["items"][0]["data"]["removed"], 1, "{alerts}");
    assert_eq!(alerts["items"][0]["environment_id"], json!(env), "{alerts}");
}

// BULK-002
#[tokio::test]
async fn a_bulk_backup_backs_each_environment_up() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    n8n.seed_workflows(4, 3);
    let mut envs = vec![];
    let repos = [bare_repo(), bare_repo()];
    for (i, repo) in repos.iter().enumerate() {
        let res = app
            .post(
                "/api/v1/environments",
                &acme.admin,
                &json!({"name": format!("env{i}"), "provider": "n8n", "base_url": n8n.base_url(),
                        "api_key": n8n.api_key(), "class": "dev"}),
            )
            .await;
        let env: Uuid = res.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        let put = app
            .request(
                reqwest::Method::PUT,
                &format!("/api/v1/environments/{env}/git"),
                Some(&acme.admin.token),
                Some(&json!({"url": repo.0.display().to_string(), "auth": "none"})),
            )
            .await;
        assert_eq!(put.status, 200, "{}", put.body);
        envs.push(env);
    }
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    for env in &envs {
        run(
            &app,
            &acme,
            &format!("/api/v1/environments/{env}/sync"),
            Some(&json!({"scope": "workflows"})),
        )
        .await;
    }
    let out = run(
        &app,
        &acme,
        "/api/v1/environments/backup",
        Some(&json!({"environment_ids": envs})),
    )
    .await;
    assert_eq!(
        (out["succeeded"].as_i64(), out["failed"].as_i64()),
        (Some(2), Some(0)),
        "{out}"
    );
    for (i, repo) in repos.iter().enumerate() {
        let (_, files) = head_files(repo);
        assert_eq!(
            files.len(),
            5,
            "env{i}: four workflows and the manifest: {files:?}"
        );
    }
    let without_git = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "bare", "provider": "n8n", "base_url": n8n.base_url(), "api_key": n8n.api_key(), "class": "dev"}),
        )
        .await;
    let res = app
        .post(
            "/api/v1/environments/backup",
            &acme.admin,
            &json!({"environment_ids": [without_git.body["id"]]}),
        )
        .await;
    assert_eq!(res.status, 404, "{}", res.body);
}

// WF-017: a restore reproduces the backed-up content, resuming per workflow
#[tokio::test]
async fn a_restore_brings_back_the_backed_up_workflows() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let ids = n8n.seed_workflows(6, 4);
    let env = setup(&app, &acme, &n8n).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let _repo = backed_up(&app, &acme, env).await;
    let hash = |id: &str| {
        n8n.workflow(id)
            .map(|w| domain::workflow::content_hash(&w))
            .unwrap_or_default()
    };
    let before = (
        hash(&ids[0]),
        n8n.workflow(&ids[0])
            .map(|w| w["nodes"][0]["position"].clone()),
    );

    // Someone edits production by hand, moves a node, and deletes another workflow.
    n8n.modify_workflow(&ids[0], |wf| {
        wf["nodes"][1]["parameters"] = json!({"hotfix": true});
        wf["nodes"][0]["position"] = json!([777, 777]);
    });
    n8n.remove_workflow(&ids[1]);

    let dev = app.member(&acme, Role::Developer).await;
    let refused = app
        .post(
            &format!("/api/v1/environments/{env}/restore"),
            &dev,
            &json!({}),
        )
        .await;
    assert_eq!(refused.status, 403, "production restores are for admins");
    let out = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/restore"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        (
            out["updated"].as_i64(),
            out["created"].as_i64(),
            out["unchanged"].as_i64(),
            out["failed"].as_i64()
        ),
        (Some(1), Some(1), Some(4), Some(0)),
        "{out}"
    );
    assert_eq!(
        (
            hash(&ids[0]),
            n8n.workflow(&ids[0])
                .map(|w| w["nodes"][0]["position"].clone())
        ),
        before,
        "content and layout are back"
    );
    let recreated = out["workflows"][ids[1].as_str()]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        n8n.workflow(&recreated).is_some(),
        "the deleted workflow exists again: {out}"
    );
}

// WF-016: a backup retried after its commit landed (a crash before the checkpoint) makes no
// second commit; two environments backing up into one repository at once both land.
#[tokio::test]
async fn a_retried_backup_commits_nothing_twice_and_concurrent_backups_both_land() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let repo = bare_repo();
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    let mut envs = vec![];
    let mut emulators = vec![];
    for i in 0..2 {
        let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
        n8n.seed_workflows(5, 3);
        let res = app
            .post(
                "/api/v1/environments",
                &acme.admin,
                &json!({"name": format!("team{i}"), "provider": "n8n", "base_url": n8n.base_url(),
                        "api_key": n8n.api_key(), "class": "staging"}),
            )
            .await;
        let env: Uuid = res.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        let put = app
            .request(
                reqwest::Method::PUT,
                &format!("/api/v1/environments/{env}/git"),
                Some(&acme.admin.token),
                Some(&json!({"url": repo.0.display().to_string(), "auth": "none"})),
            )
            .await;
        assert_eq!(put.status, 200, "{}", put.body);
        run(
            &app,
            &acme,
            &format!("/api/v1/environments/{env}/sync"),
            Some(&json!({"scope": "workflows"})),
        )
        .await;
        envs.push(env);
        emulators.push(n8n);
    }
    // Both at once, into the same branch: each lands (one re-applied on the other's head).
    let out = run(
        &app,
        &acme,
        "/api/v1/environments/backup",
        Some(&json!({"environment_ids": envs})),
    )
    .await;
    assert_eq!(out["succeeded"], 2, "{out}");
    let (_, files) = head_files(&repo);
    for name in ["team0", "team1"] {
        let n = files
            .iter()
            .filter(|f| f.starts_with(&format!("environments/{name}/")))
            .count();
        assert_eq!(n, 6, "{name}: five workflows and the manifest: {files:?}");
    }
    let head = |repo: &Repo| {
        git2::Repository::open_bare(&repo.0)
            .and_then(|r| r.refname_to_id("refs/heads/main"))
            .map(|id| id.to_string())
            .unwrap_or_default()
    };
    let before = head(&repo);
    // The crash: the commit is pushed but the run never recorded it, so a retry starts over.
    sqlx::query("update env_workflows set backed_up_hash = null")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let again = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{}/backup", envs[0]),
        None,
    )
    .await;
    assert_eq!(again["commit"], Value::Null, "{again}");
    assert_eq!(head(&repo), before, "no duplicate commit");
}

// WF-017: a restore whose create was carried out but whose answer was lost adopts the copy on
// its next attempt instead of creating the workflow twice
#[tokio::test]
async fn a_restore_that_lost_a_creates_answer_does_not_create_it_twice() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let ids = n8n.seed_workflows(2, 3);
    let env = setup(&app, &acme, &n8n).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let _repo = backed_up(&app, &acme, env).await;
    n8n.remove_workflow(&ids[1]);
    // The restore's one write (recreating the removed workflow) happens, its answer is cut.
    n8n.truncate_write_after(0);
    let (restore, out) = run_with_id(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/restore"),
        Some(&json!({})),
    )
    .await;
    let attempts: i32 = sqlx::query_scalar("select attempt from engine_runs where id = $1")
        .bind(restore)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(attempts, 2, "the lost answer made the first attempt fail");
    assert_eq!(
        (
            out["created"].as_i64(),
            out["unchanged"].as_i64(),
            out["failed"].as_i64()
        ),
        (Some(1), Some(1), Some(0)),
        "{out}"
    );
    assert_eq!(n8n.workflow_count(), 2, "one copy, not two");
}

/// An environment written straight to the store (its provider is never called), for apps
/// whose outbound setting would refuse the loopback emulator.
async fn stored_environment(app: &TestApp, t: &TenantFixture, name: &str) -> Uuid {
    use domain::environments::{self, DriftMode, EnvironmentClass, NewEnvironment};
    let mut tx = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let env = environments::create(
        &mut tx,
        &app.state.keyring,
        NewEnvironment {
            tenant_id: t.id,
            name,
            provider: "n8n",
            base_url: "https://n8n.example.invalid",
            api_key: &secrecy::SecretString::from("k".to_owned()),
            class: EnvironmentClass::Production,
            env_type: None,
            drift_mode: DriftMode::WarnOnly,
            provider_version: Some("2.41.1"),
            capabilities: &json!({}),
            rate_limit: 10.0,
            max_concurrency: 1,
            created_by: None,
            limit: 10,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    env.id
}

async fn put_git(
    app: &TestApp,
    t: &TenantFixture,
    env: Uuid,
    url: &str,
) -> workflowops_tests::app::Resp {
    app.request(
        reqwest::Method::PUT,
        &format!("/api/v1/environments/{env}/git"),
        Some(&t.admin.token),
        Some(&json!({"url": url, "auth": "none"})),
    )
    .await
}

// SSRF: a Git remote cannot make the server call its own networks
#[tokio::test]
async fn git_remotes_outside_the_allowed_networks_are_refused_with_a_stable_code() {
    let app = TestApp::spawn_with(|c| c.outbound = adapters::net::Outbound::Private).await;
    let acme = app.tenant("acme").await;
    let env = stored_environment(&app, &acme, "prod").await;
    for (url, class) in [
        (
            "http://169.254.169.254/latest/r.git",
            "`169.254.169.254` is a link-local address",
        ),
        (
            "http://127.0.0.1:9/r.git",
            "`127.0.0.1` is a loopback address",
        ),
        ("ssh://git@localhost/r.git", "`localhost` resolves to `"),
        ("git@[::ffff:169.254.169.254]:r.git", "a link-local address"),
    ] {
        let res = put_git(&app, &acme, env, url).await;
        assert_eq!(
            (res.status.as_u16(), res.code()),
            (422, "destination_refused"),
            "{url}: {}",
            res.body
        );
        let message = res.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(class)
                && message
                    .ends_with("limited to public and private networks (WFO_OUTBOUND_NETWORKS)"),
            "{url}: {message}"
        );
    }
    assert_eq!(app.count("environment_git").await, 0, "nothing saved");

    let saas = TestApp::spawn_with(|c| c.outbound = adapters::net::Outbound::Public).await;
    let tenant = saas.tenant("acme").await;
    let env = stored_environment(&saas, &tenant, "prod").await;
    let res = put_git(&saas, &tenant, env, "http://10.0.0.1/r.git").await;
    assert_eq!(
        (res.status.as_u16(), res.code()),
        (422, "destination_refused"),
        "{}",
        res.body
    );
    assert!(
        res.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("`10.0.0.1` is a private address")),
        "{}",
        res.body
    );
}

// Another tenant's cached repository through a path libgit2 opens as local (`@` bypass)
#[tokio::test]
async fn a_path_into_another_environments_git_cache_is_refused() {
    for allow_local in [false, true] {
        let app = TestApp::spawn_with(|c| c.allow_local_git = allow_local).await;
        let acme = app.tenant("acme").await;
        let victim = app.tenant("victim").await;
        let own = stored_environment(&app, &acme, "own").await;
        let theirs = stored_environment(&app, &victim, "theirs").await;
        let cache = app.state.jobs.git_cache.clone();
        std::fs::create_dir_all(cache.join(theirs.to_string())).unwrap_or_else(|e| panic!("{e}"));
        let bypass = format!(
            "{}/{own}/refs/remotes/origin/x@y/../../../{theirs}",
            cache.display()
        );
        let res = put_git(&app, &acme, own, &bypass).await;
        assert_eq!(
            (res.status.as_u16(), res.code()),
            (422, "validation_failed"),
            "{}",
            res.body
        );
        assert!(
            res.body["message"].to_string().contains("`..`"),
            "{}",
            res.body
        );
        let direct = put_git(
            &app,
            &acme,
            own,
            &cache.join(theirs.to_string()).display().to_string(),
        )
        .await;
        assert_eq!(
            (direct.status.as_u16(), direct.code()),
            (422, "validation_failed"),
            "{}",
            direct.body
        );
        let says = if allow_local {
            "Git cache"
        } else {
            "WFO_GIT_ALLOW_LOCAL"
        };
        assert!(
            direct.body["message"].to_string().contains(says),
            "{}",
            direct.body
        );
        let file = put_git(
            &app,
            &acme,
            own,
            &format!("file://{}/{theirs}", cache.display()),
        )
        .await;
        assert_eq!(file.status, 422, "{}", file.body);
        assert_eq!(app.count("environment_git").await, 0, "nothing saved");
        let _ = std::fs::remove_dir_all(cache.join(theirs.to_string()));
    }
}

// A token belongs in `secret` (sealed), never in the URL (shown to viewers and audited)
#[tokio::test]
async fn a_remote_url_carrying_a_token_is_refused_and_points_to_the_secret() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let env = stored_environment(&app, &acme, "prod").await;
    for url in [
        "https://x-access-token:ghp_secret@github.example/acme/flows.git",
        "ssh://git:ghp_secret@github.example/acme/flows.git",
    ] {
        let res = put_git(&app, &acme, env, url).await;
        assert_eq!(
            (res.status.as_u16(), res.code()),
            (422, "validation_failed"),
            "{}",
            res.body
        );
        let message = res.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`secret`") && !message.contains("ghp_secret"),
            "{message}"
        );
    }
    assert_eq!(app.count("environment_git").await, 0, "nothing saved");
}

/// A webhook feeding a Google Sheets row through `connection`, as Make's designer saves it.
fn make_blueprint(name: &str, connection: u64) -> Value {
    json!({
        "name": name,
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "version": 1,
             "parameters": {"hook": 10, "maxResults": 1}, "mapper": {},
             "metadata": {"designer": {"x": 0, "y": 0}}},
            {"id": 2, "module": "google-sheets:addRow", "version": 2,
             "parameters": {"__IMTCONN__": connection, "mode": "select"},
             "mapper": {"values": {"0": "{{1.order}}"}},
             "metadata": {"designer": {"x": 300, "y": 0},
                          "restore": {"parameters": {"__IMTCONN__": {
                              "label": "Sales Google",
                              "data": {"scoped": "true", "connection": "google"}}}}}}
        ],
        "metadata": {"instant": true, "version": 1,
                     "scenario": {"roundtrips": 1, "maxErrors": 3, "autoCommit": true},
                     "designer": {"orphans": []}, "zone": "eu1.make.com"}
    })
}

// WF-017 on Make: a restore's dry run says, before anything is written, which scenarios a
// restore into another team than the backup's would write without the old team's connection,
// webhook and key ids (which ones, and what replaces them); into the backup's own team none is
// flagged
#[tokio::test]
async fn a_restore_dry_run_flags_the_scenarios_that_would_lose_another_teams_ids() {
    use workflowops_tests::make::{MakeConfig, MakePeer};

    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let make = MakePeer::start(MakeConfig::default()).await;
    let old_team = make.team();
    let new_team = make.add_team("Reorganised");
    let google = make.add_connection(old_team, "Sales Google", "google", "oauth");
    let orders = make.add_scenario(old_team, make_blueprint("Orders", google));
    let created = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "Make", "provider": "make", "base_url": make.base_url(old_team),
                    "api_key": make.api_key(), "class": "dev"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let env: Uuid = created.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", created.body));
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let _repo = backed_up(&app, &acme, env).await;
    let restore = format!("/api/v1/environments/{env}/restore");
    let dry_run = json!({"dry_run": true});

    let same_team = app.post(&restore, &acme.admin, &dry_run).await;
    assert_eq!(same_team.status, 200, "{}", same_team.body);
    assert_eq!(
        same_team.body["workflows"],
        json!([{"id": orders.to_string(), "name": "Orders", "action": "unchanged",
                "team_references": null}]),
        "{}",
        same_team.body
    );
    assert_eq!(same_team.body["stripped"], 0);

    let moved = app
        .patch(
            &format!("/api/v1/environments/{env}"),
            &acme.admin,
            &json!({"base_url": make.base_url(new_team)}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    let runs_before = app.count("engine_runs").await;
    let other_team = app.post(&restore, &acme.admin, &dry_run).await;
    assert_eq!(other_team.status, 200, "{}", other_team.body);
    assert_eq!(
        (
            other_team.body["create"].as_u64(),
            other_team.body["stripped"].as_u64()
        ),
        (Some(1), Some(1)),
        "{}",
        other_team.body
    );
    let item = &other_team.body["workflows"][0];
    assert_eq!(
        item["action"], "create",
        "the old team's synced copy is not this team's"
    );
    assert_eq!(
        item["team_references"],
        json!({
            "warnings": [
                format!("backed up from Make team {old_team}, not this environment's team {new_team}: written without that team's connections, webhooks and keys; choose them in Make"),
                "module `google-sheets:addRow [2]` was left without a connection"
            ],
            "stripped": [
                {"module": "gateway:CustomWebHook [1]", "kind": "webhook", "parameter": "hook",
                 "backed_up": "10", "written": null},
                {"module": "google-sheets:addRow [2]", "kind": "connection",
                 "parameter": "__IMTCONN__", "backed_up": google.to_string(), "written": null}
            ]
        }),
        "{}",
        other_team.body
    );
    assert_eq!(
        app.count("engine_runs").await,
        runs_before,
        "a dry run starts no run"
    );
    assert_eq!(make.scenario_count(new_team), 0, "nothing written");

    let unknown = app
        .post(
            &restore,
            &acme.admin,
            &json!({"dry_run": true, "workflow_ids": ["404"]}),
        )
        .await;
    assert_eq!(unknown.status, 200, "{}", unknown.body);
    assert_eq!(unknown.body["workflows"], json!([]), "{}", unknown.body);
}

/// Migration 0039, run again over whatever the tables hold now (it only rewrites URLs that
/// still carry a password, so running it twice changes nothing more).
const STRIP_PASSWORDS: &str =
    include_str!("../../../migrations/0039_git_urls_without_passwords.sql");

// ENV-003, CAN-001: Git URLs saved with a password before such URLs were refused lose the
// password (the user name stays); URLs without one are left exactly as they were
#[tokio::test]
async fn stored_git_urls_lose_their_passwords_and_keep_their_user_names() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let env = setup(&app, &acme, &n8n).await;
    let pool = &app.db.pool;
    sqlx::query(
        "insert into environment_git (environment_id, tenant_id, url, path, auth_kind) \
         values ($1, $2, 'https://github.com/acme/flows.git', 'environments/prod', 'none')",
    )
    .bind(env)
    .bind(acme.id)
    .execute(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stored = || async {
        sqlx::query_scalar::<_, String>("select url from environment_git where environment_id = $1")
            .bind(env)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    for (before, after) in [
        (
            "https://user:token@github.com/a/b.git",
            "https://user@github.com/a/b.git",
        ),
        (
            "https://:token@github.com/a/b.git",
            "https://github.com/a/b.git",
        ),
        (
            "HTTP://ci-bot:p@ss@git.example.com:8443/r.git",
            "HTTP://ci-bot@git.example.com:8443/r.git",
        ),
        (
            "ssh://git:secret@github.com/a/b.git",
            "ssh://git@github.com/a/b.git",
        ),
        ("user:token@github.com:a/b.git", "user@github.com:a/b.git"),
        ("https://github.com/a/b.git", "https://github.com/a/b.git"),
        (
            "https://x-access-token@github.com/a/b.git",
            "https://x-access-token@github.com/a/b.git",
        ),
        (
            "https://git.example.com:8443/r@v1.git",
            "https://git.example.com:8443/r@v1.git",
        ),
        ("git@github.com:a/b@v2.git", "git@github.com:a/b@v2.git"),
        ("/srv/git/flows@2.git", "/srv/git/flows@2.git"),
    ] {
        sqlx::query("update environment_git set url = $1 where environment_id = $2")
            .bind(before)
            .bind(env)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sqlx::raw_sql(STRIP_PASSWORDS)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored().await, after, "{before}");
    }

    sqlx::query("update environment_git set url = 'https://ops:hunter2@github.com/acme/flows.git'")
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(
        "insert into canonical_repos (tenant_id, url, auth_kind) \
         values ($1, 'https://ops:hunter2@github.com/acme/canonical.git', 'none')",
    )
    .bind(acme.id)
    .execute(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sqlx::raw_sql(STRIP_PASSWORDS)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let git = app
        .get(&format!("/api/v1/environments/{env}/git"), &acme.admin)
        .await;
    assert_eq!(git.status, 200, "{}", git.body);
    assert_eq!(git.body["url"], "https://ops@github.com/acme/flows.git");
    let canonical = app.get("/api/v1/canonical/repository", &acme.admin).await;
    assert_eq!(canonical.status, 200, "{}", canonical.body);
    assert_eq!(
        canonical.body["url"],
        "https://ops@github.com/acme/canonical.git"
    );
    assert!(
        !format!("{}{}", git.body, canonical.body).contains("hunter2"),
        "{git:?} {canonical:?}",
        git = git.body,
        canonical = canonical.body
    );
}
