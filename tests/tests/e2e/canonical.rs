//! Canonical workflows (CAN-001..019, WF-020): onboarding, the matrix and its statuses, links,
//! Git → canonical sync, pull requests through a GitHub stand-in, the push webhook, over a local
//! bare repository and over git's smart HTTP.

use std::path::Path;

use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::engine_support::{TestWorker, wait_for};
use workflowops_tests::git_http::GitHttpServer;
use workflowops_tests::github::{GitHubStandIn, push_event, webhook_signature};
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};
use workflowops_tests::{TenantFixture, TestApp};

use super::git::{Repo, bare_repo, read, run};

pub(crate) async fn environment(
    app: &TestApp,
    t: &TenantFixture,
    name: &str,
    class: &str,
    n8n: &N8nEmulator,
) -> Uuid {
    let res = app
        .post(
            "/api/v1/environments",
            &t.admin,
            &json!({"name": name, "provider": "n8n", "base_url": n8n.base_url(), "api_key": n8n.api_key(), "class": class}),
        )
        .await;
    res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", res.body))
}

pub(crate) async fn sync(app: &TestApp, t: &TenantFixture, env: Uuid) {
    run(
        app,
        t,
        &format!("/api/v1/environments/{env}/sync"),
        Some(&json!({"scope": "workflows"})),
    )
    .await;
}

/// The matrix as `canonical id -> [status per environment, in column order]`.
async fn matrix(
    app: &TestApp,
    t: &TenantFixture,
    query: &str,
) -> (Value, Vec<(String, Vec<String>)>) {
    let res = app
        .get(&format!("/api/v1/canonical/matrix{query}"), &t.admin)
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let rows = res.body["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["canonical_id"].as_str().unwrap_or_default().to_owned(),
                        r["cells"]
                            .as_array()
                            .map(|c| {
                                c.iter()
                                    .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
                                    .collect()
                            })
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (res.body, rows)
}

/// Commits `content` at `path` to the repository's main branch, as a person would.
pub(crate) fn commit_file(url: &str, path: &str, content: &Value) {
    let cache = std::env::temp_dir().join(format!("wfo-e2e-person-{}", Uuid::now_v7().simple()));
    let remote = adapters::git::GitRemote {
        url: url.to_owned(),
        branch: "main".into(),
        auth: adapters::git::GitAuth::None,
    };
    let mut checkout =
        adapters::git::Checkout::open(&remote, &cache).unwrap_or_else(|e| panic!("{e}"));
    let mut bytes = serde_json::to_vec_pretty(content).unwrap_or_default();
    bytes.push(b'\n');
    checkout
        .commit_and_push(
            &[(path.to_owned(), Some(bytes))],
            "edit by hand",
            ("Person", "p@example.com"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(cache);
}

// CAN-001..015, CAN-019
#[tokio::test]
async fn onboarding_links_workflows_and_the_matrix_tracks_each_side() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let dev_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let dev_ids = dev_n8n.seed_workflows(3, 4);
    let prod_ids = prod_n8n.seed_workflows(3, 4);
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    let dev = environment(&app, &acme, "Dev", "dev", &dev_n8n).await;
    let repo: Repo = bare_repo();
    let put = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/canonical/repository",
            Some(&acme.admin.token),
            Some(&json!({"url": repo.0.display().to_string(), "auth": "none"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["path"], "canonical");
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    sync(&app, &acme, dev).await;
    sync(&app, &acme, prod).await;

    // CAN-007/008: everything is untracked at first.
    let untracked = app.get("/api/v1/canonical/untracked", &acme.admin).await;
    assert_eq!(
        untracked.body["items"].as_array().map(Vec::len),
        Some(6),
        "{}",
        untracked.body
    );
    let dev_only = app
        .get(
            &format!("/api/v1/canonical/untracked?environment_id={dev}&limit=2"),
            &acme.admin,
        )
        .await;
    assert_eq!(dev_only.body["items"].as_array().map(Vec::len), Some(2));
    assert!(
        dev_only.body["next_cursor"].is_string(),
        "paginated: {}",
        dev_only.body
    );
    let completion = app
        .get("/api/v1/canonical/onboarding/completion", &acme.admin)
        .await;
    assert_eq!(completion.body["complete"], false);
    assert_eq!(completion.body["untracked"], 6);

    // CAN-009/010: onboard dev's workflows in one run (one with a chosen id).
    let out = run(
        &app,
        &acme,
        "/api/v1/canonical/onboard",
        Some(&json!({"items": [
            {"environment_id": dev, "workflow_id": dev_ids[0], "canonical_id": "order-sync"},
            {"environment_id": dev, "workflow_id": dev_ids[1]},
            {"environment_id": dev, "workflow_id": dev_ids[2]},
        ]})),
    )
    .await;
    assert_eq!(out["onboarded"].as_array().map(Vec::len), Some(3), "{out}");
    assert!(out["commit"].is_string());
    let file = read(&repo, "canonical/workflows/order-sync.json");
    let dev_hash = dev_n8n
        .workflow(&dev_ids[0])
        .map(|w| domain::workflow::content_hash(&w))
        .unwrap_or_default();
    assert_eq!(
        domain::workflow::content_hash(&file),
        dev_hash,
        "CAN-006: the file is the workflow"
    );
    assert_eq!(
        read(&repo, "canonical/index.json")["workflows"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let again = run(
        &app,
        &acme,
        "/api/v1/canonical/onboard",
        Some(&json!({"items": [{"environment_id": dev, "workflow_id": dev_ids[0]}]})),
    )
    .await;
    assert_eq!(again["onboarded"], json!([]), "already tracked: {again}");
    assert!(
        again["skipped"].to_string().contains("order-sync"),
        "{again}"
    );

    // CAN-003/005: a Git sync reconciles prod, whose copies have the same content: linked.
    let synced = run(&app, &acme, "/api/v1/canonical/sync", None).await;
    assert_eq!(synced["files"], 3, "{synced}");
    assert_eq!(
        synced["environments"][prod.to_string()]["linked_now"],
        3,
        "{synced}"
    );
    let (body, rows) = matrix(&app, &acme, "").await;
    let columns: Vec<&str> = body["environments"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(columns, ["Dev", "Prod"], "dev before production");
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter().all(|(_, cells)| cells == &["linked", "linked"]),
        "{rows:?}"
    );
    let completion = app
        .get("/api/v1/canonical/onboarding/completion", &acme.admin)
        .await;
    assert_eq!(completion.body["complete"], true, "{}", completion.body);

    // CAN-013 drift: production edited by hand.
    prod_n8n.modify_workflow(&prod_ids[0], |wf| {
        wf["nodes"][1]["parameters"] = json!({"url": "https://hotfix.example"});
    });
    sync(&app, &acme, prod).await;
    let (body, rows) = matrix(&app, &acme, "?status=drift").await;
    assert_eq!(
        rows,
        [(
            "order-sync".to_owned(),
            vec!["linked".to_owned(), "drift".to_owned()]
        )]
    );
    // WF-008: the catalog says the same per workflow.
    let listed = app
        .get(
            &format!("/api/v1/workflows?environment_id={prod}"),
            &acme.admin,
        )
        .await;
    let status_of = |id: &str| {
        listed.body["items"]
            .as_array()
            .and_then(|items| items.iter().find(|w| w["id"] == id))
            .map(|w| (w["sync_status"].clone(), w["canonical_id"].clone()))
    };
    assert_eq!(
        status_of(&prod_ids[0]),
        Some((json!("local_changes"), json!("order-sync"))),
        "{}",
        listed.body
    );
    let statuses: Vec<&str> = listed.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|w| w["sync_status"].as_str()).collect())
        .unwrap_or_default();
    assert!(statuses.contains(&"in_sync"), "{statuses:?}");
    let actions: Vec<&str> = body["rows"][0]["cells"][1]["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["action"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(actions, ["view", "diff", "sync"], "CAN-015");
    let diff_href = body["rows"][0]["cells"][1]["actions"][1]["href"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let diff = app.get(&diff_href, &acme.admin).await;
    assert_eq!(diff.status, 200, "{}", diff.body);
    assert_eq!(diff.body["status"], "drift");
    assert!(
        !diff.body["diff"]["nodes_changed"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{}",
        diff.body
    );

    // CAN-013 out of date: the canonical version moves on in Git; both copies lag behind.
    let second = out["onboarded"][1]["canonical_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let path = format!("canonical/workflows/{second}.json");
    let mut edited = read(&repo, &path);
    edited["settings"] = json!({"executionTimeout": 120});
    commit_file(&repo.0.display().to_string(), &path, &edited);
    let synced = run(&app, &acme, "/api/v1/canonical/sync", None).await;
    assert_eq!(
        synced["changed"], 1,
        "only the edited file is read again: {synced}"
    );
    let (_, rows) = matrix(&app, &acme, &format!("?search={second}")).await;
    assert_eq!(
        rows,
        [(
            second.clone(),
            vec!["out_of_date".to_owned(), "out_of_date".to_owned()]
        )]
    );
    let listed = app
        .get(
            &format!("/api/v1/workflows?environment_id={dev}"),
            &acme.admin,
        )
        .await;
    let lagging: Vec<&Value> = listed.body["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|w| w["canonical_id"] == second.as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(lagging.len(), 1, "{}", listed.body);
    assert_eq!(lagging[0]["sync_status"], "update_available");

    // CAN-014 missing: deleted in dev.
    let third = out["onboarded"][2]["canonical_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    dev_n8n.remove_workflow(&dev_ids[2]);
    sync(&app, &acme, dev).await;
    let (_, rows) = matrix(&app, &acme, "?status=missing").await;
    assert_eq!(
        rows,
        [(
            third.clone(),
            vec!["missing".to_owned(), "linked".to_owned()]
        )]
    );

    // CAN-002: unlink and link by hand.
    let unlinked = app
        .delete(
            &format!("/api/v1/canonical/workflows/{third}/environments/{prod}"),
            &acme.admin,
        )
        .await;
    assert_eq!(unlinked.status, 204);
    let untracked = app
        .get(
            &format!("/api/v1/canonical/untracked?environment_id={prod}"),
            &acme.admin,
        )
        .await;
    assert_eq!(
        untracked.body["items"][0]["id"],
        prod_ids[2].as_str(),
        "{}",
        untracked.body
    );
    assert_eq!(
        untracked.body["items"][0]["same_name_canonical_id"],
        third.as_str()
    );
    let linked = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/canonical/workflows/{third}/environments/{prod}"),
            Some(&acme.admin.token),
            Some(&json!({"workflow_id": prod_ids[2]})),
        )
        .await;
    assert_eq!(linked.status, 200, "{}", linked.body);
    let detail = app
        .get(&format!("/api/v1/canonical/workflows/{third}"), &acme.admin)
        .await;
    let statuses: Vec<(&str, &str)> = detail.body["environments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| Some((m["environment_name"].as_str()?, m["status"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        statuses,
        [("Dev", "missing"), ("Prod", "linked")],
        "{}",
        detail.body
    );
    assert!(detail.body["definition"]["nodes"].is_array());

    // CAN-011: a scan finds a workflow created in dev since.
    let fresh = dev_n8n.seed_workflows(1, 2);
    let scan = run(
        &app,
        &acme,
        "/api/v1/canonical/scan",
        Some(&json!({"environment_ids": [dev]})),
    )
    .await;
    assert_eq!(scan["succeeded"], 1, "{scan}");
    let untracked = app
        .get(
            &format!("/api/v1/canonical/untracked?environment_id={dev}"),
            &acme.admin,
        )
        .await;
    let found: Vec<&str> = untracked.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|w| w["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(found, [fresh[0].as_str()], "{}", untracked.body);

    // Bad input and other tenants.
    let bad_id = app
        .post(
            "/api/v1/canonical/onboard",
            &acme.admin,
            &json!({"items": [{"environment_id": dev, "workflow_id": "x", "canonical_id": "../etc"}]}),
        )
        .await;
    assert_eq!(bad_id.status, 422, "{}", bad_id.body);
    let unknown_env = app
        .post(
            "/api/v1/canonical/onboard",
            &acme.admin,
            &json!({"items": [{"environment_id": Uuid::now_v7(), "workflow_id": "x"}]}),
        )
        .await;
    assert_eq!(unknown_env.status, 404);
    let bad_status = app
        .get("/api/v1/canonical/matrix?status=weird", &acme.admin)
        .await;
    assert_eq!(bad_status.status, 422);
    let other = app.tenant("other").await;
    assert_eq!(
        app.get(
            &format!("/api/v1/canonical/workflows/{third}"),
            &other.admin
        )
        .await
        .status,
        404
    );
    let (_, rows) = matrix(&app, &other, "").await;
    assert!(rows.is_empty());
    let viewer = app.member(&acme, domain::Role::Viewer).await;
    let refused = app
        .post(
            "/api/v1/canonical/onboard",
            &viewer,
            &json!({"items": [{"environment_id": dev, "workflow_id": dev_ids[0]}]}),
        )
        .await;
    assert_eq!(refused.status, 403);
}

/// Fast-forwards `main` of a bare repository to `branch`, as merging a pull request does.
fn merge_branch(repo: &Path, branch: &str) {
    let r = git2::Repository::open_bare(repo).unwrap_or_else(|e| panic!("{e}"));
    let target = r
        .refname_to_id(&format!("refs/heads/{branch}"))
        .unwrap_or_else(|e| panic!("{e}"));
    r.reference("refs/heads/main", target, true, "merge")
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn webhook(
    app: &TestApp,
    tenant: Uuid,
    event: &str,
    body: &Value,
    secret: &str,
) -> workflowops_tests::app::Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let res = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/webhooks/github/{tenant}")))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", Uuid::now_v7().to_string())
        .header("x-hub-signature-256", webhook_signature(secret, &bytes))
        .body(bytes)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    TestApp::read(res).await
}

// CAN-016..019, WF-020; the canonical repository over git's smart HTTP with a token
#[tokio::test]
async fn pull_request_onboarding_completes_after_the_merge_and_its_webhook() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let root = std::env::temp_dir().join(format!("wfo-e2e-http-{}", Uuid::now_v7().simple()));
    let git = GitHttpServer::start(
        root.clone(),
        Some(("x-access-token".into(), "s3cret-token".into())),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let url = git
        .create_repo("acme/flows.git")
        .unwrap_or_else(|e| panic!("{e}"));
    let github = GitHubStandIn::start("s3cret-token")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let ids = n8n.seed_workflows(2, 3);
    let env = environment(&app, &acme, "Dev", "dev", &n8n).await;

    // CAN-016: not ready without a repository.
    let preflight = app
        .get("/api/v1/canonical/onboarding/preflight", &acme.admin)
        .await;
    assert_eq!(preflight.body["ready"], false, "{}", preflight.body);

    // A bad token: a clear error and nothing saved.
    let secret = "a-webhook-secret-of-some-length";
    let mut body = json!({"url": url, "auth": "token", "secret": "wrong", "github_api_url": github.api_url(),
                          "webhook_secret": secret});
    let bad = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/canonical/repository",
            Some(&acme.admin.token),
            Some(&body),
        )
        .await;
    assert_eq!(
        (bad.status.as_u16(), bad.code()),
        (422, "git_connection_failed"),
        "{}",
        bad.body
    );
    assert!(
        bad.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("credentials"),
        "{}",
        bad.body
    );
    assert!(git.rejected() >= 1);
    assert_eq!(app.count("canonical_repos").await, 0);
    body["secret"] = json!("s3cret-token");
    let put = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/canonical/repository",
            Some(&acme.admin.token),
            Some(&body),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["webhook_configured"], true);
    assert!(put.body.get("secret").is_none() && put.body.get("webhook_secret").is_none());

    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    sync(&app, &acme, env).await;
    let preflight = app
        .get("/api/v1/canonical/onboarding/preflight", &acme.admin)
        .await;
    assert_eq!(preflight.body["ready"], true, "{}", preflight.body);
    // CAN-017: the inventory, read-only. (The sync's run reads are audited in the background:
    // written before the count is taken.)
    app.state
        .read_audit
        .flush(std::time::Duration::from_secs(30))
        .await;
    let audit_before = app.count("audit_logs").await;
    let inventory = app
        .get("/api/v1/canonical/onboarding/inventory", &acme.admin)
        .await;
    assert_eq!(
        inventory.body["environments"][0]["untracked"], 2,
        "{}",
        inventory.body
    );
    assert_eq!(
        app.count("audit_logs").await,
        audit_before,
        "nothing written"
    );

    // CAN-018: onboarding through a pull request.
    let out = run(
        &app,
        &acme,
        "/api/v1/canonical/onboard",
        Some(&json!({"pull_request": true, "items": ids.iter().map(|id| json!({"environment_id": env, "workflow_id": id})).collect::<Vec<_>>()})),
    )
    .await;
    assert_eq!(out["pull_request"]["number"], 1, "{out}");
    let branch = out["branch"].as_str().unwrap_or_default().to_owned();
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0]["head"]["ref"], branch.as_str());
    assert_eq!(pulls[0]["base"]["ref"], "main");
    let completion = app
        .get("/api/v1/canonical/onboarding/completion", &acme.admin)
        .await;
    assert_eq!(
        (
            completion.body["complete"].as_bool(),
            completion.body["pending"].as_i64()
        ),
        (Some(false), Some(2)),
        "{}",
        completion.body
    );
    assert_eq!(
        completion.body["open_pull_requests"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let repo_dir = root.join("acme/flows.git");
    let main_missing = git2::Repository::open_bare(&repo_dir)
        .map(|r| r.refname_to_id("refs/heads/main").is_err())
        .unwrap_or(false);
    assert!(
        main_missing,
        "nothing on the canonical branch before the merge"
    );

    // WF-020: unsigned or mis-signed deliveries are refused and audited.
    let push = push_event(
        "acme",
        "flows",
        "main",
        "0123456789abcdef0123456789abcdef01234567",
    );
    let forged = webhook(&app, acme.id, "push", &push, "not-the-secret").await;
    assert_eq!(
        (forged.status.as_u16(), forged.code()),
        (401, "invalid_signature")
    );
    let rejected: i64 = sqlx::query_scalar(
        "select count(*) from audit_logs where action = 'canonical.webhook_rejected'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or(0);
    assert_eq!(rejected, 1);
    let ping = webhook(
        &app,
        acme.id,
        "ping",
        &json!({"zen": "Keep it logically awesome."}),
        secret,
    )
    .await;
    assert_eq!(ping.body["result"], "pong");
    let elsewhere = webhook(
        &app,
        acme.id,
        "push",
        &push_event("acme", "flows", "feature", "ab"),
        secret,
    )
    .await;
    assert_eq!(elsewhere.body["result"], "ignored");
    assert_eq!(
        webhook(&app, Uuid::now_v7(), "push", &push, secret)
            .await
            .status,
        401,
        "no webhook there: the same answer as a bad signature"
    );

    // The pull request is merged; GitHub's push webhook starts the canonical sync.
    merge_branch(&repo_dir, &branch);
    github.merge("acme", "flows", 1);
    let hook = webhook(&app, acme.id, "push", &push, secret).await;
    assert_eq!(
        (hook.status.as_u16(), hook.body["result"].as_str()),
        (202, Some("sync_started")),
        "{}",
        hook.body
    );
    let run_id: Uuid = hook.body["run_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, run_id, engine::RunStatus::Succeeded).await;
    let redelivered = webhook(&app, acme.id, "push", &push, secret).await;
    assert_eq!(
        redelivered.body["run_id"], hook.body["run_id"],
        "one sync per pushed commit"
    );

    // CAN-019: complete.
    let completion = app
        .get("/api/v1/canonical/onboarding/completion", &acme.admin)
        .await;
    assert_eq!(completion.body["complete"], true, "{}", completion.body);
    assert_eq!(completion.body["open_pull_requests"], json!([]));
    let (_, rows) = matrix(&app, &acme, "").await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(_, c)| c == &["linked"]), "{rows:?}");
    let _ = std::fs::remove_dir_all(root);
}

// CAN-010: the same workflow onboarded from two environments in one batch is one canonical
// workflow, linked in both.
#[tokio::test]
async fn the_same_workflow_from_two_environments_is_onboarded_once() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let dev_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let dev_ids = dev_n8n.seed_workflows(2, 3);
    let prod_ids = prod_n8n.seed_workflows(2, 3);
    let dev = environment(&app, &acme, "Dev", "dev", &dev_n8n).await;
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    let repo = bare_repo();
    let put = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/canonical/repository",
            Some(&acme.admin.token),
            Some(&json!({"url": repo.0.display().to_string(), "auth": "none"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    sync(&app, &acme, dev).await;
    sync(&app, &acme, prod).await;
    let out = run(
        &app,
        &acme,
        "/api/v1/canonical/onboard",
        Some(&json!({"items": [
            {"environment_id": dev, "workflow_id": dev_ids[0]},
            {"environment_id": prod, "workflow_id": prod_ids[0]},
            {"environment_id": dev, "workflow_id": dev_ids[1]},
        ]})),
    )
    .await;
    assert_eq!(
        out["onboarded"][0]["canonical_id"], out["onboarded"][1]["canonical_id"],
        "{out}"
    );
    let (_, rows) = matrix(&app, &acme, "").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter().any(|(_, cells)| cells == &["linked", "linked"]),
        "{rows:?}"
    );
}

// CAN-010: dev and production onboarded in two runs started together (the engine runs them one
// after the other) still give one canonical workflow per workflow, linked in both; a copy
// changed in production is matched by its name and is out of date, not a second workflow.
#[tokio::test]
async fn dev_and_prod_onboarded_in_separate_runs_share_one_canonical_workflow_each() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let dev_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let dev_ids = dev_n8n.seed_workflows(3, 3);
    let prod_ids = prod_n8n.seed_workflows(3, 3);
    prod_n8n.modify_workflow(&prod_ids[1], |wf| {
        wf["nodes"][0]["name"] = json!("Changed in production");
    });
    let dev = environment(&app, &acme, "Dev", "dev", &dev_n8n).await;
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    let repo = bare_repo();
    let put = put_repository(
        &app,
        &acme,
        &json!({"url": repo.0.display().to_string(), "auth": "none"}),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    sync(&app, &acme, dev).await;
    sync(&app, &acme, prod).await;

    let mut runs = Vec::new();
    for (env, ids) in [(dev, &dev_ids), (prod, &prod_ids)] {
        let res = app
            .post(
                "/api/v1/canonical/onboard",
                &acme.admin,
                &json!({"items": ids.iter().map(|w| json!({"environment_id": env, "workflow_id": w})).collect::<Vec<_>>()}),
            )
            .await;
        assert_eq!(res.status, 202, "{}", res.body);
        runs.push(
            res.body["id"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok())
                .unwrap_or_default(),
        );
    }
    let mut matched = Vec::new();
    for run in runs {
        wait_for(&app.db.pool, run, engine::RunStatus::Succeeded).await;
        let out = app
            .get(&format!("/api/v1/runs/{run}"), &acme.admin)
            .await
            .body["output"]
            .clone();
        let mut by: Vec<String> = out["onboarded"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|o| o["matched_by"].as_str().unwrap_or("new").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        by.sort();
        matched.push(by);
    }
    matched.sort();
    assert_eq!(
        matched,
        [
            vec!["content", "content", "name"],
            vec!["new", "new", "new"]
        ],
        "the second run links to what the first created"
    );

    let canonical: i64 = sqlx::query_scalar("select count(*) from canonical_workflows")
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(canonical, 3, "one canonical row per workflow");
    assert_eq!(
        read(&repo, "canonical/index.json")["workflows"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let (_, rows) = matrix(&app, &acme, "").await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    let mut cells: Vec<Vec<String>> = rows.into_iter().map(|(_, c)| c).collect();
    cells.sort();
    assert_eq!(
        cells,
        [
            vec!["linked", "linked"],
            vec!["linked", "linked"],
            // Whichever environment ran first made the canonical version; the other's copy of
            // the workflow changed in production is behind it.
            if cells.iter().any(|c| c[0] == "out_of_date") {
                vec!["out_of_date", "linked"]
            } else {
                vec!["linked", "out_of_date"]
            }
        ]
    );
}

/// The `canonical.webhook_rejected` audit rows of a tenant, oldest first: their details.
async fn webhook_rejections(app: &TestApp, tenant: Uuid) -> Vec<Value> {
    sqlx::query_scalar(
        "select coalesce(new_value, 'null') from audit_logs \
         where tenant_id = $1 and action = 'canonical.webhook_rejected' order by occurred_at, id",
    )
    .bind(tenant)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

// WF-020: the push webhook answers anyone, so a refusal says nothing about whether a tenant has
// a webhook, and forged deliveries cost at most one audit row a minute per tenant.
#[tokio::test]
async fn refused_webhook_deliveries_reveal_nothing_and_are_audited_once_a_minute() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let repo = bare_repo();
    let put = put_repository(
        &app,
        &acme,
        &json!({"url": repo.0.display().to_string(), "auth": "none",
                "webhook_secret": "a-webhook-secret-of-some-length"}),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let push = push_event(
        "acme",
        "flows",
        "main",
        "0123456789abcdef0123456789abcdef01234567",
    );

    // A bad signature, a tenant without a webhook, no tenant at all: one answer.
    let forged = webhook(&app, acme.id, "push", &push, "not-the-secret").await;
    let unconfigured = webhook(&app, globex.id, "push", &push, "not-the-secret").await;
    let nobody = webhook(&app, Uuid::now_v7(), "push", &push, "not-the-secret").await;
    for res in [&forged, &unconfigured, &nobody] {
        assert_eq!(
            (
                res.status.as_u16(),
                res.code(),
                res.body["message"].as_str()
            ),
            (401, "invalid_signature", forged.body["message"].as_str()),
            "{}",
            res.body
        );
    }
    assert!(webhook_rejections(&app, globex.id).await.is_empty());

    // A flood within the minute: still one row.
    for _ in 0..4 {
        let again = webhook(&app, acme.id, "push", &push, "not-the-secret").await;
        assert_eq!(again.status, 401);
    }
    let rows = webhook_rejections(&app, acme.id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["suppressed_since_last"], 0, "{rows:?}");
    // A minute later the next refusal is audited, with the count of those in between.
    sqlx::query(
        "update webhook_rejections set last_audited_at = last_audited_at - interval '61 seconds' \
         where tenant_id = $1",
    )
    .bind(acme.id)
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let later = webhook(&app, acme.id, "push", &push, "not-the-secret").await;
    assert_eq!(later.code(), "invalid_signature");
    let rows = webhook_rejections(&app, acme.id).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1]["suppressed_since_last"], 4, "{rows:?}");
}

async fn put_repository(
    app: &TestApp,
    t: &TenantFixture,
    body: &Value,
) -> workflowops_tests::app::Resp {
    app.request(
        reqwest::Method::PUT,
        "/api/v1/canonical/repository",
        Some(&t.admin.token),
        Some(body),
    )
    .await
}

// SSRF and credentials: the canonical repository's URL and its GitHub API URL are checked like
// an environment's remote
#[tokio::test]
async fn canonical_repository_urls_are_checked_like_environment_remotes() {
    let app = TestApp::spawn_with(|c| {
        c.outbound = adapters::net::Outbound::Private;
        c.allow_local_git = true;
    })
    .await;
    let acme = app.tenant("acme").await;
    let repo = bare_repo();
    let local = repo.0.display().to_string();

    let loopback = put_repository(
        &app,
        &acme,
        &json!({"url": "http://127.0.0.1:9/r.git", "auth": "none"}),
    )
    .await;
    assert_eq!(
        (loopback.status.as_u16(), loopback.code()),
        (422, "destination_refused"),
        "{}",
        loopback.body
    );
    assert!(
        loopback.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("`127.0.0.1` is a loopback address")
                && m.contains("WFO_OUTBOUND_NETWORKS")),
        "{}",
        loopback.body
    );
    let token = put_repository(
        &app,
        &acme,
        &json!({"url": "https://bot:ghp_secret@github.example/acme/flows.git", "auth": "none"}),
    )
    .await;
    assert_eq!(
        (token.status.as_u16(), token.code()),
        (422, "validation_failed"),
        "{}",
        token.body
    );
    assert!(
        token.body["message"].to_string().contains("`secret`"),
        "{}",
        token.body
    );
    let bypass = put_repository(
        &app,
        &acme,
        &json!({"url": format!("{local}/x@y/../../other"), "auth": "none"}),
    )
    .await;
    assert_eq!(
        (bypass.status.as_u16(), bypass.code()),
        (422, "validation_failed"),
        "{}",
        bypass.body
    );

    // The GitHub API URL gets the repository's token: checked before anything is saved.
    let metadata = put_repository(
        &app,
        &acme,
        &json!({"url": local, "auth": "none", "github_api_url": "http://169.254.169.254/latest"}),
    )
    .await;
    assert_eq!(
        (metadata.status.as_u16(), metadata.code()),
        (422, "destination_refused"),
        "{}",
        metadata.body
    );
    assert!(
        metadata.body["message"].as_str().is_some_and(
            |m| m.starts_with("github_api_url: `169.254.169.254` is a link-local address")
        ),
        "{}",
        metadata.body
    );
    for bad in [
        "https://api.github.com/#",
        "https://api.github.com/?x=1",
        "https://u:p@api.github.com",
    ] {
        let res = put_repository(
            &app,
            &acme,
            &json!({"url": local, "auth": "none", "github_api_url": bad}),
        )
        .await;
        assert_eq!(
            (res.status.as_u16(), res.code()),
            (422, "validation_failed"),
            "{bad}: {}",
            res.body
        );
    }
    assert_eq!(app.count("canonical_repos").await, 0, "nothing saved");
    let fine = put_repository(&app, &acme, &json!({"url": local, "auth": "none"})).await;
    assert_eq!(fine.status, 200, "{}", fine.body);
}
