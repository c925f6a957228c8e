//! Snapshots and restores (SNAP-001..012, BULK-003, WF-018, scheduled backups) against the n8n
//! emulator and real (local, bare) Git repositories.

use domain::Role;
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::engine_support::TestWorker;
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};
use workflowops_tests::{TenantFixture, TestApp};

use super::git::{Repo, bare_repo, run, setup};

async fn connect(app: &TestApp, t: &TenantFixture, env: Uuid, repo: &Repo, extra: Value) {
    let mut body = json!({"url": repo.0.display().to_string(), "auth": "none"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let put = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{env}/git"),
            Some(&t.admin.token),
            Some(&body),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
}

async fn sync(app: &TestApp, t: &TenantFixture, env: Uuid) {
    run(
        app,
        t,
        &format!("/api/v1/environments/{env}/sync"),
        Some(&json!({"scope": "workflows"})),
    )
    .await;
}

async fn snapshot(app: &TestApp, t: &TenantFixture, env: Uuid, reason: &str) -> Value {
    run(
        app,
        t,
        &format!("/api/v1/environments/{env}/snapshots"),
        Some(&json!({"reason": reason})),
    )
    .await
}

fn commit_exists(repo: &Repo, commit: &str) -> bool {
    git2::Repository::open_bare(&repo.0)
        .ok()
        .and_then(|r| {
            let oid = git2::Oid::from_str(commit).ok()?;
            r.find_commit(oid).ok().map(|_| ())
        })
        .is_some()
}

// SNAP-001, SNAP-003, SNAP-004, SNAP-005, SNAP-007..012
#[tokio::test]
async fn snapshots_are_compared_previewed_restored_and_tracked() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let ids = n8n.seed_workflows(6, 4);
    let env = setup(&app, &acme, &n8n).await;
    let repo = bare_repo();
    connect(&app, &acme, env, &repo, json!({})).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    sync(&app, &acme, env).await;

    // SNAP-001/005: a manual snapshot is a commit in the repository, indexed with its workflows.
    let first = snapshot(&app, &acme, env, "before the release").await;
    assert_eq!(first["kind"], "manual_backup", "{first}");
    assert_eq!(first["workflow_count"], 6);
    assert_eq!(first["reason"], "before the release");
    let first_commit = first["git_commit"].as_str().unwrap_or_default().to_owned();
    assert!(commit_exists(&repo, &first_commit), "{first}");
    let first_id = first["id"].as_str().unwrap_or_default().to_owned();
    let hash = |id: &str| {
        n8n.workflow(id)
            .map(|w| domain::workflow::content_hash(&w))
            .unwrap_or_default()
    };
    let original = hash(&ids[0]);
    let original_wf = n8n
        .workflow(&ids[0])
        .map(|w| domain::workflow::normalize(&w))
        .unwrap_or_default();

    // Production changes: one edited, one deleted, one added.
    n8n.modify_workflow(&ids[0], |wf| {
        wf["nodes"][1]["parameters"] = json!({"url": "https://new.example", "hotfix": true});
    });
    n8n.remove_workflow(&ids[5]);
    let added = n8n.seed_workflows(1, 3);
    sync(&app, &acme, env).await;
    let second = snapshot(&app, &acme, env, "after the hotfix").await;
    let second_id = second["id"].as_str().unwrap_or_default().to_owned();
    assert_ne!(second["git_commit"], first["git_commit"]);

    // SNAP-003/004: listed newest first; details carry every workflow's hashes.
    let list = app
        .get(
            &format!("/api/v1/environments/{env}/snapshots"),
            &acme.admin,
        )
        .await;
    let listed: Vec<&str> = list.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        listed,
        [second_id.as_str(), first_id.as_str()],
        "{}",
        list.body
    );
    let detail = app
        .get(&format!("/api/v1/snapshots/{first_id}"), &acme.admin)
        .await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert_eq!(detail.body["workflows"].as_array().map(Vec::len), Some(6));
    assert_eq!(detail.body["triggered_by"], acme.admin.email);

    // SNAP-012: compare.
    let cmp = app
        .get(
            &format!("/api/v1/snapshots/compare?from={first_id}&to={second_id}"),
            &acme.admin,
        )
        .await;
    assert_eq!(cmp.status, 200, "{}", cmp.body);
    assert_eq!(
        cmp.body["added"][0]["id"],
        added[0].as_str(),
        "{}",
        cmp.body
    );
    assert_eq!(cmp.body["removed"][0]["id"], ids[5].as_str());
    assert_eq!(cmp.body["changed"][0]["id"], ids[0].as_str());
    assert_eq!(cmp.body["unchanged"], 4);
    let d = &cmp.body["diffs"][0];
    assert_eq!(d["id"], ids[0].as_str());
    let paths: Vec<&str> = d["diff"]["nodes_changed"][0]["changes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["path"].as_str()).collect())
        .unwrap_or_default();
    assert!(paths.contains(&"parameters.url"), "{d}");

    // SNAP-010: the preview of restoring the first snapshot.
    let preview = app
        .get(
            &format!("/api/v1/snapshots/{first_id}/preview"),
            &acme.admin,
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(
        (
            preview.body["update"].as_i64(),
            preview.body["create"].as_i64(),
            preview.body["unchanged"].as_i64()
        ),
        (Some(1), Some(1), Some(4)),
        "{}",
        preview.body
    );
    assert_eq!(preview.body["not_in_snapshot"], json!([added[0]]));
    let update = preview.body["changes"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["action"] == "update"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(update["id"], ids[0].as_str());
    assert!(update["diff"]["nodes_changed"].is_array(), "{update}");

    // Only admins restore production.
    let dev = app.member(&acme, Role::Developer).await;
    let refused = app
        .post(
            &format!("/api/v1/snapshots/{first_id}/restore"),
            &dev,
            &json!({}),
        )
        .await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (403, "admin_only")
    );

    // SNAP-007: one workflow.
    let one = run(
        &app,
        &acme,
        &format!("/api/v1/snapshots/{first_id}/restore"),
        Some(&json!({"workflow_ids": [ids[0]]})),
    )
    .await;
    assert_eq!(one["updated"], 1, "{one}");
    let now = n8n
        .workflow(&ids[0])
        .map(|w| domain::workflow::normalize(&w))
        .unwrap_or_default();
    assert_eq!(now, original_wf, "the snapshot's content is back");
    assert_eq!(hash(&ids[0]), original, "the snapshot's content is back");

    // SNAP-009: the whole environment; the deleted workflow comes back under a new id.
    let all = run(
        &app,
        &acme,
        &format!("/api/v1/snapshots/{first_id}/restore"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        (
            all["created"].as_i64(),
            all["unchanged"].as_i64(),
            all["failed"].as_i64()
        ),
        (Some(1), Some(5), Some(0)),
        "{all}"
    );
    let recreated = all["workflows"][&ids[5]]["id"].as_str().unwrap_or_default();
    let taken = detail.body["workflows"]
        .as_array()
        .and_then(|a| a.iter().find(|w| w["id"] == ids[5].as_str()))
        .map(|w| w["hash"].clone())
        .unwrap_or_default();
    assert_eq!(
        json!(hash(recreated)),
        taken,
        "the exact content hash of the snapshot"
    );

    // SNAP-011: both restores are tracked, each with the snapshot taken just before it.
    let restores = app
        .get(&format!("/api/v1/environments/{env}/restores"), &acme.admin)
        .await;
    let items = restores.body["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(items.len(), 2, "{}", restores.body);
    for r in &items {
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["snapshot_id"], first_id.as_str());
        assert!(r["pre_restore_snapshot_id"].is_string(), "{r}");
    }
    let pre = app
        .get(
            &format!("/api/v1/environments/{env}/snapshots?kind=pre_restore"),
            &acme.admin,
        )
        .await;
    assert_eq!(
        pre.body["items"].as_array().map(Vec::len),
        Some(2),
        "{}",
        pre.body
    );

    // Another tenant sees none of it.
    let other = app.tenant("other").await;
    for path in [
        format!("/api/v1/snapshots/{first_id}"),
        format!("/api/v1/snapshots/{first_id}/preview"),
        format!("/api/v1/environments/{env}/snapshots"),
        format!("/api/v1/environments/{env}/restores"),
    ] {
        assert_eq!(app.get(&path, &other.admin).await.status, 404, "{path}");
    }
    let cross = app
        .post(
            &format!("/api/v1/snapshots/{first_id}/restore"),
            &other.admin,
            &json!({}),
        )
        .await;
    assert_eq!(cross.status, 404);
}

// Scheduled backups (PRD 3.7.1 auto_backup) with retention
#[tokio::test]
async fn scheduled_backups_take_auto_snapshots_that_expire() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    n8n.seed_workflows(3, 3);
    let env = setup(&app, &acme, &n8n).await;
    let repo = bare_repo();
    let bad = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{env}/git"),
            Some(&acme.admin.token),
            Some(&json!({"url": repo.0.display().to_string(), "auth": "none", "backup_schedule": "every day"})),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    connect(
        &app,
        &acme,
        env,
        &repo,
        json!({"backup_schedule": "0 3 * * *", "backup_timezone": "Europe/Berlin"}),
    )
    .await;
    let (kind, input): (String, Value) =
        sqlx::query_as("select kind, input from engine_schedules where name = $1")
            .bind(format!("environment:{env}:backup"))
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kind, "environment.snapshot");
    assert_eq!(input["kind"], "auto_backup");

    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    sync(&app, &acme, env).await;
    // The tick comes due (as at 03:00 Berlin) and the scheduler fires it once.
    sqlx::query(
        "update engine_schedules set next_fire_at = now() - interval '1 second' where name = $1",
    )
    .bind(format!("environment:{env}:backup"))
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    engine::schedule::fire_due(&app.db.pool, 10, &jobs::registry(&app.state.jobs))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    workflowops_tests::engine_support::eventually(
        "the auto snapshot",
        std::time::Duration::from_secs(20),
        || async {
            let n: i64 =
                sqlx::query_scalar("select count(*) from snapshots where kind = 'auto_backup'")
                    .fetch_one(&app.db.pool)
                    .await
                    .unwrap_or(0);
            (n == 1).then_some(())
        },
    )
    .await;

    // Older than the retention: pruned (the commit stays in Git); a manual one is kept.
    snapshot(&app, &acme, env, "keep me").await;
    sqlx::query("update snapshots set created_at = now() - interval '100 days'")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        domain::snapshots::prune_auto(&app.db.pool, 120).await.ok(),
        Some(0)
    );
    assert_eq!(
        domain::snapshots::prune_auto(&app.db.pool, 90).await.ok(),
        Some(1)
    );
    assert_eq!(app.count("snapshots").await, 1, "the manual snapshot stays");

    // Removing the schedule.
    connect(&app, &acme, env, &repo, json!({})).await;
    let left: i64 = sqlx::query_scalar("select count(*) from engine_schedules where name = $1")
        .bind(format!("environment:{env}:backup"))
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or(-1);
    assert_eq!(left, 0);
}

// BULK-003, WF-018
#[tokio::test]
async fn a_bulk_restore_restores_each_environment_and_git_status_follows() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    let mut envs = vec![];
    let mut emulators = vec![];
    let repos = [bare_repo(), bare_repo()];
    for (i, repo) in repos.iter().enumerate() {
        let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
        let ids = n8n.seed_workflows(3, 3);
        let res = app
            .post(
                "/api/v1/environments",
                &acme.admin,
                &json!({"name": format!("env{i}"), "provider": "n8n", "base_url": n8n.base_url(),
                        "api_key": n8n.api_key(), "class": "staging"}),
            )
            .await;
        let env: Uuid = res.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        connect(&app, &acme, env, repo, json!({})).await;
        sync(&app, &acme, env).await;
        // WF-018: nothing backed up yet.
        let status = app
            .get(
                &format!("/api/v1/environments/{env}/git/status"),
                &acme.admin,
            )
            .await;
        assert_eq!(status.body["status"], "changed", "{}", status.body);
        assert_eq!(
            status.body["not_backed_up"].as_array().map(Vec::len),
            Some(3)
        );
        let snap = snapshot(&app, &acme, env, "baseline").await;
        let status = app
            .get(
                &format!("/api/v1/environments/{env}/git/status"),
                &acme.admin,
            )
            .await;
        assert_eq!(status.body["status"], "in_sync", "{}", status.body);
        n8n.modify_workflow(&ids[0], |wf| wf["nodes"][0]["parameters"] = json!({"x": i}));
        sync(&app, &acme, env).await;
        let status = app
            .get(
                &format!("/api/v1/environments/{env}/git/status"),
                &acme.admin,
            )
            .await;
        assert_eq!(
            status.body["changed"][0]["id"],
            ids[0].as_str(),
            "{}",
            status.body
        );
        envs.push((env, snap["id"].clone(), ids));
        emulators.push(n8n);
    }
    let out = run(
        &app,
        &acme,
        "/api/v1/environments/restore",
        Some(&json!({"items": envs.iter().map(|(e, s, _)| json!({"environment_id": e, "snapshot_id": s})).collect::<Vec<_>>()})),
    )
    .await;
    assert_eq!(
        (out["succeeded"].as_i64(), out["failed"].as_i64()),
        (Some(2), Some(0)),
        "{out}"
    );
    for ((_, _, ids), n8n) in envs.iter().zip(&emulators) {
        let wf = n8n.workflow(&ids[0]).unwrap_or_default();
        assert!(
            wf["nodes"][0]["parameters"].get("x").is_none(),
            "restored: {wf}"
        );
    }
    // A snapshot of another environment is refused up front.
    let mixed = app
        .post(
            "/api/v1/environments/restore",
            &acme.admin,
            &json!({"items": [{"environment_id": envs[0].0, "snapshot_id": envs[1].1}]}),
        )
        .await;
    assert_eq!(mixed.status, 422, "{}", mixed.body);
}

// SNAP-008: a restore of several chosen workflows restores those, and leaves the others as
// they are now.
#[tokio::test]
async fn restoring_chosen_workflows_leaves_the_others_untouched() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let ids = n8n.seed_workflows(4, 3);
    let env = setup(&app, &acme, &n8n).await;
    let repo = bare_repo();
    connect(&app, &acme, env, &repo, json!({})).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    sync(&app, &acme, env).await;
    let normalized = |id: &str| {
        n8n.workflow(id)
            .map(|w| domain::workflow::normalize(&w))
            .unwrap_or_else(|| panic!("workflow {id} is gone"))
    };
    let taken: Vec<Value> = ids.iter().map(|id| normalized(id)).collect();
    let snap = snapshot(&app, &acme, env, "before the edits").await;
    let snap_id = snap["id"].as_str().unwrap_or_default().to_owned();

    // Every workflow is edited afterwards.
    for id in &ids {
        n8n.modify_workflow(id, |wf| {
            wf["nodes"][0]["name"] = json!("Edited after the snapshot");
        });
    }
    sync(&app, &acme, env).await;
    let edited: Vec<Value> = ids.iter().map(|id| normalized(id)).collect();
    assert!(taken.iter().zip(&edited).all(|(a, b)| a != b));

    let chosen = [ids[0].clone(), ids[2].clone()];
    let restored = run(
        &app,
        &acme,
        &format!("/api/v1/snapshots/{snap_id}/restore"),
        Some(&json!({"workflow_ids": chosen})),
    )
    .await;
    assert_eq!(
        (
            restored["updated"].as_i64(),
            restored["created"].as_i64(),
            restored["failed"].as_i64()
        ),
        (Some(2), Some(0), Some(0)),
        "{restored}"
    );
    let mut touched: Vec<&str> = restored["workflows"]
        .as_object()
        .map(|w| w.keys().map(String::as_str).collect())
        .unwrap_or_default();
    touched.sort_unstable();
    let mut expected = vec![ids[0].as_str(), ids[2].as_str()];
    expected.sort_unstable();
    assert_eq!(touched, expected, "{restored}");
    for (i, id) in ids.iter().enumerate() {
        let want = if chosen.contains(id) {
            &taken[i]
        } else {
            &edited[i]
        };
        assert_eq!(&normalized(id), want, "workflow {id}");
    }
}
