//! Environments, syncs and the catalog, against the n8n emulator on loopback.

use std::time::Duration;

use domain::Role;
use engine::RunStatus;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::engine_support::{TestWorker, eventually, status, wait_for};
use workflowops_tests::n8n::{EmulatorConfig, Fault, N8nEmulator};
use workflowops_tests::sse::read_events;
use workflowops_tests::{TenantFixture, TestApp};

async fn emulator(version: &str) -> N8nEmulator {
    N8nEmulator::start(EmulatorConfig {
        version: version.into(),
        ..EmulatorConfig::default()
    })
    .await
}

fn worker(app: &TestApp, slots: u32) -> TestWorker {
    TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), slots)
}

async fn connect(
    app: &TestApp,
    t: &TenantFixture,
    n8n: &N8nEmulator,
    name: &str,
    class: &str,
) -> Uuid {
    let res = app
        .post(
            "/api/v1/environments",
            &t.admin,
            &json!({"name": name, "provider": "n8n", "base_url": n8n.base_url(),
                    "api_key": n8n.api_key(), "class": class}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", res.body))
}

async fn sync(app: &TestApp, t: &TenantFixture, env: Uuid, scope: &str) -> Uuid {
    let res = app
        .post(
            &format!("/api/v1/environments/{env}/sync"),
            &t.admin,
            &json!({"scope": scope}),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", res.body))
}

async fn wait_done(app: &TestApp, run: Uuid) -> Value {
    eventually(
        &format!("run {run} to finish"),
        Duration::from_secs(60),
        || async {
            let s = status(&app.db.pool, run).await;
            matches!(
                s,
                RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
            )
            .then_some(())
        },
    )
    .await;
    let r: (String, Option<Value>, Option<Value>) =
        sqlx::query_as("select status, output, error from engine_runs where id = $1")
            .bind(run)
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    json!({"status": r.0, "output": r.1, "error": r.2})
}

async fn scalar(app: &TestApp, sql: &str, env: Uuid) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(env)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

// ENV-001, ENV-002, ENV-005, ENV-009, PROV-005, SEC (keys at rest)
#[tokio::test]
async fn an_environment_is_saved_only_after_its_connection_test_passes() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;

    let bad = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "prod", "provider": "n8n", "base_url": n8n.base_url(),
                    "api_key": "wrong-key", "class": "production"}),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.code(), "connection_failed");
    assert!(
        bad.body["detail"].to_string().contains("API key")
            || bad.body.to_string().contains("refused"),
        "{}",
        bad.body
    );
    assert_eq!(app.count("environments").await, 0, "nothing saved");
    // Credentials go in api_key (sealed), never in the URL (shown and logged).
    let in_url = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "prod", "provider": "n8n",
                    "base_url": n8n.base_url().replacen("://", "://ops:secret@", 1),
                    "api_key": n8n.api_key(), "class": "production"}),
        )
        .await;
    assert_eq!(
        (in_url.status.as_u16(), in_url.code()),
        (422, "validation_failed"),
        "{}",
        in_url.body
    );
    assert!(
        !in_url.body.to_string().contains("secret"),
        "{}",
        in_url.body
    );
    assert_eq!(app.count("secrets").await, 0, "no key stored");

    let tested = app
        .post(
            "/api/v1/environments/test-connection",
            &acme.admin,
            &json!({"provider": "n8n", "base_url": n8n.base_url(), "api_key": n8n.api_key()}),
        )
        .await;
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert_eq!(tested.body["version"], "2.41.1");
    assert_eq!(tested.body["capabilities"]["list_credentials"], true);
    assert_eq!(app.count("environments").await, 0, "a test saves nothing");

    let id = connect(&app, &acme, &n8n, "prod", "production").await;
    let env = app
        .get(&format!("/api/v1/environments/{id}"), &acme.admin)
        .await;
    assert_eq!(env.body["class"], "production");
    assert_eq!(env.body["provider_version"], "2.41.1");
    assert_eq!(env.body["drift_mode"], "warn_only");
    assert!(
        !env.body.to_string().contains(&n8n.api_key()),
        "the key is never returned"
    );
    let leaked: i64 = sqlx::query_scalar(
        "select count(*) from secrets s where encode(ciphertext, 'escape') like '%' || $1 || '%'",
    )
    .bind(n8n.api_key())
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or(-1);
    assert_eq!(leaked, 0, "the key is stored encrypted");

    let unknown_provider = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "x", "provider": "zapier", "base_url": n8n.base_url(), "api_key": "k", "class": "dev"}),
        )
        .await;
    assert_eq!(unknown_provider.status, 422);
    let dup = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "prod", "provider": "n8n", "base_url": n8n.base_url(), "api_key": n8n.api_key(), "class": "dev"}),
        )
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(dup.code(), "environment_name_taken");
    let audit: i64 =
        sqlx::query_scalar("select count(*) from audit_logs where action = 'environment.created'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or(-1);
    assert_eq!(audit, 1);
}

// ENV-007, ENV-008, ENV-010, ENV-011
#[tokio::test]
async fn limits_types_drift_modes_and_confirmed_deletion() {
    let app = TestApp::spawn_with(|c| c.max_environments = 2).await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;
    let t = app
        .post(
            "/api/v1/environment-types",
            &acme.admin,
            &json!({"key": "uat", "label": "User acceptance", "class": "staging"}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let a = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "uat", "provider": "n8n", "base_url": n8n.base_url(), "api_key": n8n.api_key(),
                    "class": "staging", "env_type": "uat", "drift_mode": "require_attestation"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["env_type"], "uat");
    assert_eq!(a.body["drift_mode"], "require_attestation");
    let unknown_type = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "qa", "provider": "n8n", "base_url": n8n.base_url(), "api_key": n8n.api_key(),
                    "class": "staging", "env_type": "nope"}),
        )
        .await;
    assert_eq!(unknown_type.status, 422, "{}", unknown_type.body);
    connect(&app, &acme, &n8n, "dev", "dev").await;
    let over = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "third", "provider": "n8n", "base_url": n8n.base_url(), "api_key": n8n.api_key(), "class": "dev"}),
        )
        .await;
    assert_eq!(over.status, 409);
    assert_eq!(over.code(), "environment_limit_reached");
    let list = app.get("/api/v1/environments", &acme.admin).await;
    assert_eq!(
        (list.body["limit"].as_i64(), list.body["used"].as_i64()),
        (Some(2), Some(2))
    );

    let id = a.body["id"].as_str().unwrap_or_default();
    let env: Uuid = id.parse().unwrap_or_else(|e| panic!("{e}"));
    // Synced rows to go with the environment (they have no foreign key: migration 0015).
    n8n.seed_workflows(3, 6);
    n8n.seed_executions(5);
    let _worker = worker(&app, 2);
    let run = sync(&app, &acme, env, "full").await;
    assert_eq!(wait_done(&app, run).await["status"], "succeeded");
    let synced = "select (select count(*) from env_workflows where environment_id = $1) \
                  + (select count(*) from env_workflow_credentials where environment_id = $1) \
                  + (select count(*) from env_executions where environment_id = $1)";
    assert!(scalar(&app, synced, env).await >= 3 + 3 + 5);
    let in_use = app
        .delete(
            &format!(
                "/api/v1/environment-types/{}",
                t.body["id"].as_str().unwrap_or_default()
            ),
            &acme.admin,
        )
        .await;
    assert_eq!(in_use.status, 409);
    let unconfirmed = app
        .delete(&format!("/api/v1/environments/{id}"), &acme.admin)
        .await;
    assert_eq!(unconfirmed.status, 422);
    assert_eq!(unconfirmed.code(), "confirmation_required");
    let wrong = app
        .delete(
            &format!("/api/v1/environments/{id}?confirm=UAT"),
            &acme.admin,
        )
        .await;
    assert_eq!(wrong.status, 422);
    let gone = app
        .delete(
            &format!("/api/v1/environments/{id}?confirm=uat"),
            &acme.admin,
        )
        .await;
    assert_eq!(gone.status, 204);
    assert_eq!(
        app.get(&format!("/api/v1/environments/{id}"), &acme.admin)
            .await
            .status,
        404
    );
    assert_eq!(
        app.count("secrets").await,
        1,
        "the deleted environment's key went with it"
    );
    assert_eq!(
        scalar(&app, synced, env).await,
        0,
        "synced rows went with it"
    );
    // A sync page written after the deletion (a run that was mid-way) writes nothing.
    let mut tx = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let late = domain::catalog::upsert_workflows(
        &mut tx,
        acme.id,
        env,
        Uuid::nil(),
        &[json!({"id": "late", "name": "late", "nodes": []})],
    )
    .await;
    assert!(
        matches!(
            late,
            Err(domain::Error::NotFound {
                entity: "environment"
            })
        ),
        "{late:?}"
    );
    let late = domain::catalog::upsert_executions(
        &mut tx,
        acme.id,
        env,
        &[domain::catalog::ExecutionRow {
            environment_id: env,
            provider_id: "1".into(),
            workflow_id: None,
            workflow_name: None,
            status: "success".into(),
            mode: None,
            finished: true,
            started_at: None,
            stopped_at: None,
            error_message: None,
        }],
    )
    .await;
    assert!(
        matches!(late, Err(domain::Error::NotFound { .. })),
        "{late:?}"
    );
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scalar(&app, synced, env).await, 0);

    let dev = app.member(&acme, Role::Developer).await;
    let refused = app
        .post(
            "/api/v1/environment-types",
            &dev,
            &json!({"key": "x", "label": "x", "class": "dev"}),
        )
        .await;
    assert_eq!(refused.status, 403, "environments are an admin's to manage");
}

// ENV-006, ENV-013, ENV-017, ENV-018, WF-001..005, CRED-001..004, EXEC-001..005, PROV-004
#[tokio::test]
async fn a_full_sync_fills_the_catalog_and_streams_its_progress() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;
    n8n.seed_workflows(600, 8);
    n8n.add_tag("billing");
    n8n.add_user("ops@acme.example", "global:admin");
    n8n.seed_executions(700);
    let env = connect(&app, &acme, &n8n, "prod", "production").await;
    let w = worker(&app, 4);
    let run = sync(&app, &acme, env, "full").await;

    let res = app
        .http
        .get(app.url(&format!("/api/v1/runs/{run}/events")))
        .bearer_auth(&acme.admin.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = read_events(res, Duration::from_secs(60), |m| m.event == "end").await;
    let logs: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "log")
        .map(|e| e.data.as_str())
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("syncing workflows")),
        "{logs:?}"
    );
    assert!(logs.iter().any(|l| l.contains("sync done")), "{logs:?}");
    assert!(
        events.iter().any(|e| e.event == "progress"),
        "progress is streamed"
    );
    let done = wait_done(&app, run).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"]["workflows"], 600);
    assert_eq!(done["output"]["executions"], 700);

    assert_eq!(
        scalar(
            &app,
            "select count(*) from env_workflows where environment_id = $1",
            env
        )
        .await,
        600
    );
    assert_eq!(
        scalar(
            &app,
            "select count(*) from env_executions where environment_id = $1",
            env
        )
        .await,
        700
    );
    assert!(scalar(&app, "select count(*) from env_credentials where environment_id = $1 and source = 'provider'", env).await > 0);
    assert!(
        scalar(
            &app,
            "select count(*) from env_tags where environment_id = $1",
            env
        )
        .await
            > 0
    );
    assert!(
        scalar(
            &app,
            "select count(*) from env_users where environment_id = $1",
            env
        )
        .await
            > 0
    );
    // Three pages of workflows, one step each.
    assert_eq!(scalar(&app, "select count(*) from engine_steps s join engine_runs r on r.id = s.run_id where r.labels->>'environment_id' = $1::text and s.name like 'workflows:page:%'", env).await, 3);

    // SEC-008: provider actions carry their provider in the audit log, and it filters.
    let n8n_entries = app
        .get("/api/v1/audit-logs?provider=n8n", &acme.admin)
        .await;
    assert_eq!(n8n_entries.status, 200, "{}", n8n_entries.body);
    let actions: Vec<&str> = n8n_entries.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert!(actions.contains(&"environment.created"), "{actions:?}");
    assert!(
        n8n_entries.body["items"]
            .as_array()
            .is_some_and(|a| a.iter().all(|e| e["provider"] == "n8n")),
        "{}",
        n8n_entries.body
    );
    let make_entries = app
        .get("/api/v1/audit-logs?provider=make", &acme.admin)
        .await;
    assert_eq!(
        make_entries.body["items"],
        json!([]),
        "{}",
        make_entries.body
    );

    let envs = app.get("/api/v1/environments", &acme.admin).await;
    assert_eq!(envs.body["items"][0]["last_sync_status"], "succeeded");
    assert_eq!(envs.body["items"][0]["workflow_count"], 600);

    // WF-001/002: search and paging.
    let first = app.get("/api/v1/workflows?limit=200", &acme.admin).await;
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(200));
    let mut seen = 200;
    let mut cursor = first.body["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page = app
            .get(
                &format!("/api/v1/workflows?limit=200&cursor={c}"),
                &acme.admin,
            )
            .await;
        seen += page.body["items"].as_array().map_or(0, Vec::len);
        cursor = page.body["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, 600);
    let some = first.body["items"][7].clone();
    let name = some["name"].as_str().unwrap_or_default().to_owned();
    let found = app
        .get(
            &format!(
                "/api/v1/workflows?search={}",
                urlencode(&name[..name.len().min(12)])
            ),
            &acme.admin,
        )
        .await;
    assert!(
        found.body["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|w| w["name"] == name.as_str())),
        "{}",
        found.body
    );
    let by_env = app
        .get(
            &format!("/api/v1/workflows?environment_id={env}&active=true"),
            &acme.admin,
        )
        .await;
    assert_eq!(by_env.status, 200);

    // WF-003..005
    let id = some["id"].as_str().unwrap_or_default();
    let detail = app
        .get(
            &format!("/api/v1/environments/{env}/workflows/{id}"),
            &acme.admin,
        )
        .await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert_eq!(
        detail.body["graph"]["nodes"].as_array().map(Vec::len),
        Some(8)
    );
    assert!(
        detail.body["graph"]["edges"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    );
    assert_eq!(detail.body["complexity"]["node_count"], 8);
    assert_eq!(detail.body["content_hash"].as_str().map(str::len), Some(64));

    // CRED-001..003
    let creds = app
        .get(
            &format!("/api/v1/credentials?environment_id={env}"),
            &acme.admin,
        )
        .await;
    let cred = creds
        .body
        .as_array()
        .and_then(|c| c.iter().find(|c| c["used_by"].as_i64() > Some(0)).cloned())
        .unwrap_or_default();
    assert!(cred["id"].is_string(), "{}", creds.body);
    assert!(!creds.body.to_string().contains("\"data\""), "no secrets");
    let usage = app
        .get(
            &format!(
                "/api/v1/environments/{env}/credentials/{}/usage",
                cred["id"].as_str().unwrap_or_default()
            ),
            &acme.admin,
        )
        .await;
    assert!(
        usage.body.as_array().is_some_and(|u| !u.is_empty()),
        "{}",
        usage.body
    );

    // EXEC-001..004
    let errors = app
        .get(
            &format!("/api/v1/executions?environment_id={env}&status=error&limit=5"),
            &acme.admin,
        )
        .await;
    let failed = errors.body["items"][0].clone();
    assert_eq!(failed["status"], "error", "{}", errors.body);
    let one = app
        .get(
            &format!(
                "/api/v1/environments/{env}/executions/{}",
                failed["provider_id"].as_str().unwrap_or_default()
            ),
            &acme.admin,
        )
        .await;
    assert!(one.body["error_message"].is_string(), "{}", one.body);
    let bad_status = app
        .get("/api/v1/executions?status=exploded", &acme.admin)
        .await;
    assert_eq!(bad_status.status, 422);

    // A viewer reads the catalog but cannot sync.
    let viewer = app.member(&acme, Role::Viewer).await;
    assert_eq!(app.get("/api/v1/workflows", &viewer).await.status, 200);
    let refused = app
        .post(
            &format!("/api/v1/environments/{env}/sync"),
            &viewer,
            &json!({}),
        )
        .await;
    assert_eq!(refused.status, 403);
    w.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ENV-013 (resumable), engine checkpoints per page
#[tokio::test]
async fn a_sync_killed_mid_way_resumes_from_its_last_page_without_duplicates() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;
    // Eight pages of 250: the kill lands after two, with six (about two seconds) still to go, so
    // a test task starved under load still kills mid-way.
    n8n.seed_workflows(2000, 5);
    let env = connect(&app, &acme, &n8n, "prod", "production").await;
    n8n.inject(Fault::Slow {
        times: 1000,
        delay_ms: 300,
    });
    let first = worker(&app, 2);
    let run = sync(&app, &acme, env, "workflows").await;
    eventually("two pages checkpointed", Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from engine_steps where run_id = $1 and name like 'workflows:page:%'")
            .bind(run)
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or(0);
        (n >= 2).then_some(())
    })
    .await;
    first.kill().await;
    n8n.clear_faults();
    let second = worker(&app, 2);
    let done = wait_done(&app, run).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let steps: Vec<(String, i32)> = sqlx::query_as("select name, attempt from engine_steps where run_id = $1 and name like 'workflows:page:%' order by name")
        .bind(run)
        .fetch_all(&app.db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(steps.len(), 8, "2000 workflows are eight pages: {steps:?}");
    assert!(
        steps.iter().filter(|s| s.1 == 1).count() >= 2,
        "pages done before the kill were not fetched again: {steps:?}"
    );
    assert!(
        steps.iter().any(|s| s.1 == 2),
        "the rest ran on the second attempt: {steps:?}"
    );
    assert_eq!(
        scalar(
            &app,
            "select count(*) from env_workflows where environment_id = $1",
            env
        )
        .await,
        2000
    );
    second.stop().await;
}

// ENV-013 (deleted workflows), ENV-014, WF-008 basis
#[tokio::test]
async fn workflows_deleted_in_the_provider_are_marked_and_changes_rehash() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;
    let ids = n8n.seed_workflows(5, 4);
    let env = connect(&app, &acme, &n8n, "dev", "dev").await;
    let w = worker(&app, 2);
    assert_eq!(
        wait_done(&app, sync(&app, &acme, env, "workflows").await).await["status"],
        "succeeded"
    );
    let hash_before: String =
        sqlx::query_scalar("select content_hash from env_workflows where provider_id = $1")
            .bind(&ids[1])
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_default();
    n8n.remove_workflow(&ids[0]);
    n8n.modify_workflow(&ids[1], |wf| {
        wf["nodes"][1]["parameters"] = json!({"changed": true});
    });
    n8n.modify_workflow(&ids[2], |wf| wf["nodes"][1]["position"] = json!([999, 999]));
    n8n.modify_workflow(&ids[3], |wf| {
        wf["nodes"][0]["credentials"] = json!({"slackApi": {"id": "ghost1", "name": "Ghost"}});
    });
    let done = wait_done(&app, sync(&app, &acme, env, "full").await).await;
    assert_eq!(done["output"]["workflows_deleted"], 1, "{done}");
    assert_eq!(
        done["output"]["workflows_changed"], 2,
        "a parameter and a credential change count; a moved node does not: {done}"
    );
    let deleted: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select deleted_at from env_workflows where provider_id = $1")
            .bind(&ids[0])
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_default();
    assert!(deleted.is_some());
    let hash_after: String =
        sqlx::query_scalar("select content_hash from env_workflows where provider_id = $1")
            .bind(&ids[1])
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_default();
    assert_ne!(
        hash_before, hash_after,
        "a parameter change changes the content hash"
    );
    let listed = app.get("/api/v1/workflows", &acme.admin).await;
    assert_eq!(
        listed.body["items"].as_array().map(Vec::len),
        Some(4),
        "deleted ones are hidden by default"
    );
    let all = app
        .get("/api/v1/workflows?include_deleted=true", &acme.admin)
        .await;
    assert_eq!(all.body["items"].as_array().map(Vec::len), Some(5));
    w.stop().await;
}

// EXEC-005 (incremental), ENV-016
#[tokio::test]
async fn executions_sync_incrementally() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;
    n8n.seed_workflows(3, 3);
    n8n.seed_executions(1200);
    let env = connect(&app, &acme, &n8n, "prod", "production").await;
    let w = worker(&app, 2);
    let first = wait_done(&app, sync(&app, &acme, env, "executions").await).await;
    assert_eq!(first["output"]["executions"], 1200, "{first}");
    n8n.seed_executions(10);
    let before = n8n.requests();
    let second = wait_done(&app, sync(&app, &acme, env, "executions").await).await;
    assert_eq!(second["status"], "succeeded");
    assert!(
        n8n.requests() - before <= 2,
        "only the newest page is fetched again: {} requests",
        n8n.requests() - before
    );
    assert_eq!(
        scalar(
            &app,
            "select count(*) from env_executions where environment_id = $1",
            env
        )
        .await,
        1210
    );
    w.stop().await;
}

// EXEC-005: the retention applies to what is fetched and to what is kept
#[tokio::test]
async fn executions_older_than_the_retention_are_neither_fetched_nor_kept() {
    let app = TestApp::spawn_with(|c| c.execution_retention = Duration::from_secs(600)).await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;
    n8n.seed_workflows(3, 3);
    n8n.seed_executions(1500); // one a second, the newest now
    let env = connect(&app, &acme, &n8n, "prod", "production").await;
    let w = worker(&app, 2);
    let before = n8n.requests();
    let done = wait_done(&app, sync(&app, &acme, env, "executions").await).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let kept = scalar(
        &app,
        "select count(*) from env_executions where environment_id = $1",
        env,
    )
    .await;
    assert!(
        (590..=610).contains(&kept),
        "about ten minutes of executions kept: {kept}"
    );
    assert!(
        n8n.requests() - before <= 5,
        "the walk stopped at the cutoff: {} requests",
        n8n.requests() - before
    );

    // The hourly prune deletes what has expired since.
    sqlx::query(
        "update env_executions set started_at = started_at - interval '1 day' where seq % 2 = 0",
    )
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let prune = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::new(
            "system",
            "maintenance.prune",
            json!({"retention_seconds": 86_400, "execution_retention_seconds": 600}),
        ),
    )
    .await;
    wait_for(&app.db.pool, prune, RunStatus::Succeeded).await;
    let left = scalar(
        &app,
        "select count(*) from env_executions where environment_id = $1",
        env,
    )
    .await;
    assert!(
        (kept / 2 - 1..=kept / 2 + 1).contains(&left),
        "expired executions pruned: {kept} -> {left}"
    );
    w.stop().await;
}

// CRED-006
#[tokio::test]
async fn the_credential_matrix_lines_environments_up_by_type_and_name() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let a = emulator("2.41.1").await;
    a.add_credential("Shop", "httpBasicAuth");
    a.add_credential("Alerts", "slackApi");
    let b = emulator("2.41.1").await;
    b.add_credential("Shop", "httpBasicAuth");
    let dev = connect(&app, &acme, &a, "dev", "dev").await;
    let prod = connect(&app, &acme, &b, "prod", "production").await;
    let w = worker(&app, 2);
    for env in [dev, prod] {
        assert_eq!(
            wait_done(&app, sync(&app, &acme, env, "credentials").await).await["status"],
            "succeeded"
        );
    }
    let matrix = app.get("/api/v1/credentials/matrix", &acme.admin).await;
    assert_eq!(matrix.status, 200, "{}", matrix.body);
    assert_eq!(
        matrix.body["environments"].as_array().map(Vec::len),
        Some(2)
    );
    let rows = matrix.body["rows"].as_array().cloned().unwrap_or_default();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert!(row("Shop")["environments"][dev.to_string()]["id"].is_string());
    assert!(row("Shop")["environments"][prod.to_string()]["id"].is_string());
    assert!(row("Alerts")["environments"][dev.to_string()]["id"].is_string());
    assert!(
        row("Alerts")["environments"]
            .get(prod.to_string())
            .is_none(),
        "missing in prod: {}",
        matrix.body
    );
    w.stop().await;
}

// CRED-004 on instances before 2.8: credentials derived from workflows
#[tokio::test]
async fn an_instance_that_cannot_list_credentials_gets_them_derived_from_workflows() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("1.123.81").await;
    n8n.seed_workflows(20, 6);
    let env = connect(&app, &acme, &n8n, "legacy", "staging").await;
    let created = app
        .get(&format!("/api/v1/environments/{env}"), &acme.admin)
        .await;
    assert_eq!(created.body["capabilities"]["list_credentials"], false);
    let w = worker(&app, 2);
    let done = wait_done(&app, sync(&app, &acme, env, "full").await).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"]["credentials_derived"], true);
    assert!(
        scalar(
            &app,
            "select count(*) from env_credentials where environment_id = $1 and source = 'derived'",
            env
        )
        .await
            > 0
    );
    w.stop().await;
}

// A provider that answers garbage fails the run with a readable error
#[tokio::test]
async fn a_provider_answering_garbage_fails_the_sync_readably() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;
    n8n.seed_workflows(3, 3);
    let env = connect(&app, &acme, &n8n, "prod", "production").await;
    n8n.inject(Fault::Garbage { times: 1000 });
    let w = worker(&app, 2);
    let done = wait_done(&app, sync(&app, &acme, env, "workflows").await).await;
    assert_eq!(done["status"], "failed", "{done}");
    let message = done["error"].to_string();
    assert!(
        message.contains("unreadable") && message.contains("not valid JSON"),
        "{message}"
    );
    let env_row = app
        .get(&format!("/api/v1/environments/{env}"), &acme.admin)
        .await;
    assert_eq!(env_row.body["last_sync_status"], "failed");
    assert!(
        env_row.body["last_sync_error"]
            .as_str()
            .is_some_and(|e| e.contains("unreadable"))
    );
    w.stop().await;
}

// BULK-001, BULK-004, BULK-005
#[tokio::test]
async fn a_bulk_sync_reports_each_environment_and_partial_failure() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let good = emulator("2.41.1").await;
    good.seed_workflows(10, 3);
    let broken = emulator("2.41.1").await;
    let a = connect(&app, &acme, &good, "dev", "dev").await;
    let b = connect(&app, &acme, &broken, "prod", "production").await;
    broken.inject(Fault::Garbage { times: 1000 });
    let w = worker(&app, 4);
    let res = app
        .post(
            "/api/v1/environments/sync",
            &acme.admin,
            &json!({"environment_ids": [a, b], "scope": "workflows"}),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    let parent: Uuid = res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, parent, RunStatus::Succeeded).await;
    let out = app
        .get(&format!("/api/v1/runs/{parent}"), &acme.admin)
        .await;
    let output = &out.body["output"];
    assert_eq!(
        (output["succeeded"].as_i64(), output["failed"].as_i64()),
        (Some(1), Some(1)),
        "{}",
        out.body
    );
    assert_eq!(output["environments"][a.to_string()]["status"], "succeeded");
    assert_eq!(output["environments"][b.to_string()]["status"], "failed");
    let dup = app
        .post(
            "/api/v1/environments/sync",
            &acme.admin,
            &json!({"environment_ids": [a, a]}),
        )
        .await;
    assert_eq!(dup.status, 422);
    w.stop().await;
}

// HEALTH-002, HEALTH-005, HEALTH-006, ENV-012
#[tokio::test]
async fn health_checks_record_reachability_latency_and_version() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;
    let env = connect(&app, &acme, &n8n, "prod", "production").await;
    let scheduled: i64 = sqlx::query_scalar("select count(*) from engine_schedules where kind = 'environment.health_check' and input->>'environment_id' = $1::text")
        .bind(env)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or(-1);
    assert_eq!(scheduled, 1, "a health check is scheduled per environment");
    // Only the checks this test starts (a scheduled tick could land mid-test).
    sqlx::query("update engine_schedules set enabled = false")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let w = worker(&app, 2);
    let res = app
        .request(
            Method::POST,
            &format!("/api/v1/environments/{env}/health-check"),
            Some(&acme.admin.token),
            None,
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    let run: Uuid = res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, run, RunStatus::Succeeded).await;
    drop(n8n);
    let res = app
        .request(
            Method::POST,
            &format!("/api/v1/environments/{env}/health-check"),
            Some(&acme.admin.token),
            None,
        )
        .await;
    let run: Uuid = res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, run, RunStatus::Succeeded).await;
    let history = app
        .get(&format!("/api/v1/environments/{env}/health"), &acme.admin)
        .await;
    let checks = history.body["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(checks.len(), 2, "{}", history.body);
    assert_eq!(checks[0]["status"], "unreachable");
    assert_eq!(checks[1]["status"], "healthy");
    assert_eq!(checks[1]["version"], "2.41.1");
    assert!(checks[1]["latency_ms"].is_number());
    assert_eq!(history.body["uptime"], 0.5);
    let env_row = app
        .get(&format!("/api/v1/environments/{env}"), &acme.admin)
        .await;
    assert_eq!(env_row.body["health_status"], "unreachable");
    assert!(env_row.body["last_heartbeat_at"].is_string());
    w.stop().await;
}

// ENV-013, ENV-018, WF-001, WF-008 against a real n8n when N8N_URL and N8N_API_KEY are set (else
// the emulator): workflows created through n8n's public API are synced, hashed as read back, and
// marked deleted once deleted there. Only the test's own workflows are looked at.
#[tokio::test]
async fn a_sync_catalogs_workflows_created_through_the_public_api() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let peer = workflowops_tests::n8n::Peer::real_or(EmulatorConfig::default()).await;
    let http = reqwest::Client::new();
    // A request to the peer's public API, authenticated.
    let n8n = |method: Method, path: &str| {
        http.request(
            method,
            format!("{}/api/v1{path}", peer.base_url.trim_end_matches('/')),
        )
        .header("X-N8N-API-KEY", &peer.api_key)
    };
    let run = Uuid::new_v4().simple().to_string();
    let mut created = Vec::new();
    for i in 0..3 {
        let body = json!({
            "name": format!("wfo-test {run} {i}"),
            "nodes": [
                {"id": Uuid::new_v4(), "name": "Start", "type": "n8n-nodes-base.manualTrigger",
                 "typeVersion": 1, "position": [0, 0], "parameters": {}},
                {"id": Uuid::new_v4(), "name": "Set", "type": "n8n-nodes-base.set", "typeVersion": 3.4,
                 "position": [220, 0], "parameters": {"assignments": {"assignments": [
                     {"id": Uuid::new_v4(), "name": "n", "value": i, "type": "number"}]}, "options": {}}}
            ],
            "connections": {"Start": {"main": [[{"node": "Set", "type": "main", "index": 0}]]}},
            "settings": {"executionOrder": "v1"}
        });
        let res = n8n(Method::POST, "/workflows")
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(res.status().is_success(), "{}", res.status());
        let wf: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
        created.push(wf["id"].as_str().unwrap_or_default().to_owned());
    }
    let res = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "peer", "provider": "n8n", "base_url": peer.base_url,
                    "api_key": peer.api_key, "class": "dev"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let env: Uuid = res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let _worker = worker(&app, 2);
    let first = sync(&app, &acme, env, "workflows").await;
    assert_eq!(wait_done(&app, first).await["status"], "succeeded");
    let listed = app
        .get(
            &format!("/api/v1/workflows?environment_id={env}&search={run}"),
            &acme.admin,
        )
        .await;
    let items = listed.body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 3, "{}", listed.body);
    for item in &items {
        let id = item["id"].as_str().unwrap_or_default();
        assert!(created.iter().any(|c| c == id), "{id}");
        let read: Value = n8n(Method::GET, &format!("/workflows/{id}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(item["content_hash"], domain::workflow::content_hash(&read));
        assert_eq!(item["node_count"], 2);
        assert_eq!(item["sync_status"], "untracked");
    }

    for id in &created {
        let res = n8n(Method::DELETE, &format!("/workflows/{id}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(res.status().is_success(), "{}", res.status());
    }
    let second = sync(&app, &acme, env, "workflows").await;
    assert_eq!(wait_done(&app, second).await["status"], "succeeded");
    let listed = app
        .get(
            &format!("/api/v1/workflows?environment_id={env}&search={run}&include_deleted=true"),
            &acme.admin,
        )
        .await;
    let statuses: Vec<&str> = listed.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|w| w["sync_status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, ["deleted"; 3], "{}", listed.body);
}

/// A test-connection answer's status, code and message.
async fn test_connection(
    app: &TestApp,
    t: &TenantFixture,
    provider: &str,
    base_url: &str,
) -> (u16, String, String) {
    let res = app
        .post(
            "/api/v1/environments/test-connection",
            &t.admin,
            &json!({"provider": provider, "base_url": base_url, "api_key": "k"}),
        )
        .await;
    (
        res.status.as_u16(),
        res.code().to_owned(),
        res.body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

// SSRF: an environment's URL cannot make the server call its own networks
#[tokio::test]
async fn provider_urls_outside_the_allowed_networks_are_refused_with_a_stable_code() {
    let app = TestApp::spawn_with(|c| c.outbound = adapters::net::Outbound::Private).await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;
    for (url, class) in [
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "a link-local address",
        ),
        (
            "http://[::ffff:169.254.169.254]/".to_owned(),
            "a link-local address",
        ),
        ("http://0.0.0.0:5678".to_owned(), "the unspecified address"),
        (n8n.base_url(), "a loopback address"),
    ] {
        let (status, code, message) = test_connection(&app, &acme, "n8n", &url).await;
        assert_eq!(
            (status, code.as_str()),
            (422, "destination_refused"),
            "{url}: {message}"
        );
        assert!(
            message.contains(class)
                && message
                    .contains("limited to public and private networks (WFO_OUTBOUND_NETWORKS)"),
            "{url}: {message}"
        );
    }
    assert_eq!(
        test_connection(
            &app,
            &acme,
            "n8n",
            "http://169.254.169.254/latest/meta-data"
        )
        .await
        .2,
        "`169.254.169.254` is a link-local address; outbound calls to providers and Git are \
         limited to public and private networks (WFO_OUTBOUND_NETWORKS)"
    );
    let (status, code, _) =
        test_connection(&app, &acme, "make", "http://169.254.169.254/?teamId=1").await;
    assert_eq!((status, code.as_str()), (422, "destination_refused"));
    let create = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "meta", "provider": "n8n", "base_url": "http://169.254.169.254",
                    "api_key": "k", "class": "dev"}),
        )
        .await;
    assert_eq!(
        (create.status.as_u16(), create.code()),
        (422, "destination_refused")
    );
    assert_eq!(app.count("environments").await, 0, "nothing saved");
    assert_eq!(n8n.requests(), 0, "the loopback peer was never called");

    // Multi-tenant installations: private networks are refused too.
    let saas = TestApp::spawn_with(|c| c.outbound = adapters::net::Outbound::Public).await;
    let tenant = saas.tenant("acme").await;
    let (status, code, message) = test_connection(&saas, &tenant, "n8n", "http://10.0.0.1").await;
    assert_eq!(
        (status, code.as_str()),
        (422, "destination_refused"),
        "{message}"
    );
    assert!(
        message.contains("`10.0.0.1` is a private address")
            && message.contains("limited to public networks"),
        "{message}"
    );
}

// SSRF: a `#` or `?` in a base URL would swallow the API path the adapter appends
#[tokio::test]
async fn a_base_url_with_a_part_that_would_swallow_the_api_path_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;
    for (provider, url) in [
        ("n8n", "http://169.254.169.254/latest/meta-data#".to_owned()),
        ("n8n", format!("{}/rest/settings#", n8n.base_url())),
        ("n8n", format!("{}/rest/settings?", n8n.base_url())),
        ("make", format!("{}?teamId=1#x", n8n.base_url())),
        ("make", format!("{}?teamId=1&limit=1", n8n.base_url())),
    ] {
        let (status, code, message) = test_connection(&app, &acme, provider, &url).await;
        assert_eq!(
            (status, code.as_str()),
            (422, "validation_failed"),
            "{url}: {message}"
        );
    }
    let env = connect(&app, &acme, &n8n, "prod", "production").await;
    let patched = app
        .patch(
            &format!("/api/v1/environments/{env}"),
            &acme.admin,
            &json!({"base_url": format!("{}/?x=1", n8n.base_url())}),
        )
        .await;
    assert_eq!(
        (patched.status.as_u16(), patched.code()),
        (422, "validation_failed")
    );
    assert!(
        patched.body["message"].to_string().contains("`?`"),
        "{}",
        patched.body
    );
}

// SSRF: a name is checked as it resolves, when the call is made (also for a stored environment)
#[tokio::test]
async fn an_environment_whose_name_resolves_to_loopback_is_refused_when_called() {
    let app = TestApp::spawn_with(|c| c.outbound = adapters::net::Outbound::Private).await;
    let acme = app.tenant("acme").await;
    let n8n = emulator("2.41.1").await;
    let by_name = n8n.base_url().replace("127.0.0.1", "localhost");
    let (status, code, message) = test_connection(&app, &acme, "n8n", &by_name).await;
    assert_eq!(
        (status, code.as_str()),
        (422, "destination_refused"),
        "{message}"
    );
    assert!(
        message.starts_with("`localhost` resolves to `")
            && message.contains("a loopback address")
            && message.contains("WFO_OUTBOUND_NETWORKS"),
        "{message}"
    );

    // Saved while it pointed elsewhere (or before the setting): the sync fails for good.
    let env = {
        use domain::environments::{self, DriftMode, EnvironmentClass, NewEnvironment};
        let mut tx = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let env = environments::create(
            &mut tx,
            &app.state.keyring,
            NewEnvironment {
                tenant_id: acme.id,
                name: "rebound",
                provider: "n8n",
                base_url: &by_name,
                api_key: &secrecy::SecretString::from(n8n.api_key()),
                class: EnvironmentClass::Dev,
                env_type: None,
                drift_mode: DriftMode::WarnOnly,
                provider_version: Some("2.41.1"),
                capabilities: &json!({}),
                rate_limit: 100.0,
                max_concurrency: 2,
                created_by: None,
                limit: 10,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        env.id
    };
    let w = worker(&app, 2);
    let run = sync(&app, &acme, env, "workflows").await;
    let done = wait_done(&app, run).await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].to_string();
    assert!(
        error.contains("a loopback address") && error.contains("WFO_OUTBOUND_NETWORKS"),
        "{error}"
    );
    let attempts: i32 = sqlx::query_scalar("select attempt from engine_runs where id = $1")
        .bind(run)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(attempts, 1, "a refused destination is not retried");
    assert_eq!(n8n.requests(), 0, "the loopback peer was never called");
    w.stop().await;
}

/// A loopback server that answers every request with a 302 to `target` (same path and
/// query), recording the API keys it was sent.
async fn redirector(target: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, StatusCode, Uri, header};
    let keys = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&keys);
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let seen = std::sync::Arc::clone(&seen);
        let target = target.clone();
        async move {
            if let Some(key) = headers.get("x-n8n-api-key").and_then(|k| k.to_str().ok()) {
                seen.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(key.to_owned());
            }
            let to = format!(
                "{target}{}",
                uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
            );
            (StatusCode::FOUND, [(header::LOCATION, to)])
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), keys)
}

// SSRF: a provider's redirect is reported with where it pointed, never followed with the key
#[tokio::test]
async fn a_provider_redirect_is_reported_and_the_key_is_not_sent_to_its_location() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let elsewhere = workflowops_tests::hooks::HookPeer::start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let target = elsewhere.url("").trim_end_matches('/').to_owned();
    let (moved, keys) = redirector(target.clone()).await;
    let res = app
        .post(
            "/api/v1/environments/test-connection",
            &acme.admin,
            &json!({"provider": "n8n", "base_url": moved, "api_key": "the-key"}),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.body);
    assert_eq!(res.code(), "connection_failed");
    let message = res.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "the server redirected to `{target}`; use that URL as the environment's URL"
        )) && message.contains("provider_redirected"),
        "{message}"
    );
    let keys = keys
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert_eq!(
        keys,
        ["the-key"],
        "the server the URL names got its key, once"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "nothing reached the redirect's location: {:?}",
        elsewhere.requests()
    );
}

/// The environment's `environment.updated` audit entries: (old base_url, new base_url, new name).
async fn update_audits(app: &TestApp, env: Uuid) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "select old_value->>'base_url', new_value->>'base_url', new_value->>'name' from audit_logs \
         where action = 'environment.updated' and target_id = $1 order by id",
    )
    .bind(env.to_string())
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

// ENV-002: a new URL and key are tested first, then applied together with the other changes,
// and audited with the old and new values.
#[tokio::test]
async fn an_environment_moved_to_another_instance_is_tested_then_updated_and_audited() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let old = emulator("2.41.1").await;
    let new = N8nEmulator::start(EmulatorConfig {
        version: "1.123.81".into(),
        api_key: "the-new-instance-key".into(),
    })
    .await;
    let id = connect(&app, &acme, &old, "prod", "production").await;

    // A key the new instance refuses: nothing changes, not even the name sent with it.
    let refused = app
        .patch(
            &format!("/api/v1/environments/{id}"),
            &acme.admin,
            &json!({"name": "prod-eu", "base_url": new.base_url(), "api_key": "wrong-key"}),
        )
        .await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (422, "connection_failed"),
        "{}",
        refused.body
    );
    let env = app
        .get(&format!("/api/v1/environments/{id}"), &acme.admin)
        .await;
    assert_eq!(env.body["name"], "prod");
    assert_eq!(env.body["base_url"], old.base_url().as_str());

    let moved = app
        .patch(
            &format!("/api/v1/environments/{id}"),
            &acme.admin,
            &json!({"name": "prod-eu", "base_url": new.base_url(), "api_key": new.api_key(),
                    "drift_mode": "require_attestation"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(moved.body["name"], "prod-eu");
    assert_eq!(moved.body["base_url"], new.base_url().as_str());
    assert_eq!(moved.body["provider_version"], "1.123.81");
    assert_eq!(moved.body["drift_mode"], "require_attestation");
    assert!(new.requests() > 0, "the new instance was tested");
    assert_eq!(
        update_audits(&app, id).await,
        [(old.base_url(), new.base_url(), "prod-eu".to_owned())]
    );
    // The new key is the one in use: a sync reaches the new instance.
    let before = new.requests();
    let _worker = worker(&app, 2);
    let run = sync(&app, &acme, id, "workflows").await;
    assert_eq!(wait_done(&app, run).await["status"], "succeeded");
    assert!(new.requests() > before);
}

// ENV-002: the connection test runs with no transaction open; a URL or key replaced by someone
// else meanwhile is not overwritten by a combination that was never tested.
#[tokio::test]
async fn a_new_connection_is_not_applied_over_one_replaced_while_it_was_being_tested() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let current = emulator("2.41.1").await;
    let slow = N8nEmulator::start(EmulatorConfig {
        version: "2.41.1".into(),
        api_key: "the-slow-instance-key".into(),
    })
    .await;
    let id = connect(&app, &acme, &current, "prod", "production").await;
    slow.inject(Fault::Slow {
        times: 1,
        delay_ms: 3_000,
    });
    let first = {
        let url = app.url(&format!("/api/v1/environments/{id}"));
        let token = acme.admin.token.clone();
        let body = json!({"base_url": slow.base_url(), "api_key": slow.api_key()});
        let http = app.http.clone();
        tokio::spawn(async move {
            let res = http
                .patch(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            TestApp::read(res).await
        })
    };
    // The first change is in its connection test: another one (a new key for the current
    // instance) goes through meanwhile, unhindered.
    eventually(
        "the first change's connection test",
        Duration::from_secs(10),
        || async { (slow.requests() > 0).then_some(()) },
    )
    .await;
    let second = app
        .patch(
            &format!("/api/v1/environments/{id}"),
            &acme.admin,
            &json!({"api_key": current.api_key(), "name": "prod-rotated"}),
        )
        .await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert!(
        !first.is_finished(),
        "the first change was not slow enough to overlap"
    );

    let first = first.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (first.status.as_u16(), first.code()),
        (409, "environment_changed"),
        "{}",
        first.body
    );
    let env = app
        .get(&format!("/api/v1/environments/{id}"), &acme.admin)
        .await;
    assert_eq!(env.body["base_url"], current.base_url().as_str());
    assert_eq!(env.body["name"], "prod-rotated");
    assert_eq!(update_audits(&app, id).await.len(), 1, "one change applied");

    // Tried again, against what is in place now: applied.
    let again = app
        .patch(
            &format!("/api/v1/environments/{id}"),
            &acme.admin,
            &json!({"base_url": slow.base_url(), "api_key": slow.api_key()}),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["base_url"], slow.base_url().as_str());
}
