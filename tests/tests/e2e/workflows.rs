//! Workflow operations under the environment-class policies (PRD 3.1.3), against the emulator.

use std::time::Duration;

use domain::Role;
use engine::RunStatus;
use serde_json::json;
use uuid::Uuid;
use workflowops_tests::engine_support::{TestWorker, wait_for};
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};
use workflowops_tests::{TenantFixture, TestApp};

struct Fixture {
    app: TestApp,
    acme: TenantFixture,
    n8n: N8nEmulator,
    dev: Uuid,
    staging: Uuid,
    prod: Uuid,
    _worker: TestWorker,
}

/// Three environments on one emulator (ten workflows), synced.
async fn fixture() -> Fixture {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    n8n.seed_workflows(10, 4);
    let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    let mut ids = vec![];
    for (name, class) in [
        ("dev", "dev"),
        ("staging", "staging"),
        ("prod", "production"),
    ] {
        let res = app
            .post(
                "/api/v1/environments",
                &acme.admin,
                &json!({"name": name, "provider": "n8n", "base_url": n8n.base_url(), "api_key": n8n.api_key(), "class": class}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        let id: Uuid = res.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        let run = app
            .post(
                &format!("/api/v1/environments/{id}/sync"),
                &acme.admin,
                &json!({"scope": "workflows"}),
            )
            .await;
        let run: Uuid = run.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        wait_for(&app.db.pool, run, RunStatus::Succeeded).await;
        ids.push(id);
    }
    Fixture {
        app,
        acme,
        n8n,
        dev: ids[0],
        staging: ids[1],
        prod: ids[2],
        _worker: worker,
    }
}

/// The `n`-th workflow of an environment by name. The environments share one emulator, so
/// tests that change workflows in two of them pick different `n`.
async fn nth_workflow(f: &Fixture, env: Uuid, n: usize) -> (String, String) {
    let list = f
        .app
        .get(
            &format!("/api/v1/workflows?environment_id={env}&limit=10"),
            &f.acme.admin,
        )
        .await;
    let w = &list.body["items"][n];
    (
        w["id"].as_str().unwrap_or_default().to_owned(),
        w["name"].as_str().unwrap_or_default().to_owned(),
    )
}

// WF-007, WF-010: allowed in dev, the provider's refusal passed on
#[tokio::test]
async fn dev_workflows_activate_at_once_and_provider_refusals_are_clear() {
    let f = fixture().await;
    let dev = f.app.member(&f.acme, Role::Developer).await;
    let (id, _) = nth_workflow(&f, f.dev, 0).await;
    let res = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/{id}/actions", f.dev),
            &dev,
            &json!({"action": "activate"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["status"], "done");
    assert_eq!(
        f.n8n.workflow(&id).map(|w| w["active"].clone()),
        Some(json!(true))
    );
    let detail = f
        .app
        .get(
            &format!("/api/v1/environments/{}/workflows/{id}", f.dev),
            &dev,
        )
        .await;
    assert_eq!(detail.body["active"], true, "the catalog follows");

    let no_trigger = f.n8n.insert_workflow(json!({"name": "Manual only", "nodes": [
        {"name": "Set", "type": "n8n-nodes-base.set", "typeVersion": 3, "position": [0, 0], "parameters": {}}],
        "connections": {}, "settings": {}}));
    let run = f
        .app
        .post(
            &format!("/api/v1/environments/{}/sync", f.dev),
            &f.acme.admin,
            &json!({"scope": "workflows"}),
        )
        .await;
    let run: Uuid = run.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&f.app.db.pool, run, RunStatus::Succeeded).await;
    let refused = f
        .app
        .post(
            &format!(
                "/api/v1/environments/{}/workflows/{no_trigger}/actions",
                f.dev
            ),
            &dev,
            &json!({"action": "activate"}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.code(), "provider_rejected");
    assert!(
        refused.body.to_string().contains("trigger"),
        "n8n's reason is kept: {}",
        refused.body
    );

    let viewer = f.app.member(&f.acme, Role::Viewer).await;
    let forbidden = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/{id}/actions", f.dev),
            &viewer,
            &json!({"action": "deactivate"}),
        )
        .await;
    assert_eq!(forbidden.status, 403);
}

// WF-007: warnings in staging, approvals in production (never self-approved)
#[tokio::test]
async fn production_activation_waits_for_another_admins_approval() {
    let f = fixture().await;
    let (id, _) = nth_workflow(&f, f.staging, 0).await;
    let staged = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/{id}/actions", f.staging),
            &f.acme.admin,
            &json!({"action": "delete"}),
        )
        .await;
    assert_eq!(staged.status, 200, "{}", staged.body);
    assert!(
        staged.body["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("staging")),
        "{}",
        staged.body
    );
    assert!(f.n8n.workflow(&id).is_none(), "deleted in the provider");

    let (id, _) = nth_workflow(&f, f.prod, 1).await;
    let dev = f.app.member(&f.acme, Role::Developer).await;
    let held = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/{id}/actions", f.prod),
            &dev,
            &json!({"action": "activate", "reason": "go live"}),
        )
        .await;
    assert_eq!(held.status, 202, "{}", held.body);
    assert_eq!(held.body["status"], "pending_approval");
    assert_eq!(
        f.n8n.workflow(&id).map(|w| w["active"].clone()),
        Some(json!(false)),
        "nothing happened yet"
    );
    let request = held.body["request"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let by_dev = f
        .app
        .post(
            &format!("/api/v1/workflow-action-requests/{request}/approve"),
            &dev,
            &json!({}),
        )
        .await;
    assert_eq!(by_dev.status, 403, "developers cannot approve");
    let approved = f
        .app
        .post(
            &format!("/api/v1/workflow-action-requests/{request}/approve"),
            &f.acme.admin,
            &json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["status"], "approved");
    assert_eq!(
        f.n8n.workflow(&id).map(|w| w["active"].clone()),
        Some(json!(true)),
        "carried out on approval"
    );
    let again = f
        .app
        .post(
            &format!("/api/v1/workflow-action-requests/{request}/reject"),
            &f.acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 409);

    // An admin's own request needs another admin.
    let own = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/{id}/actions", f.prod),
            &f.acme.admin,
            &json!({"action": "deactivate"}),
        )
        .await;
    let own_id = own.body["request"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let self_approved = f
        .app
        .post(
            &format!("/api/v1/workflow-action-requests/{own_id}/approve"),
            &f.acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(self_approved.status, 403);
    assert_eq!(self_approved.code(), "self_approval");
    let other_admin = f.app.member(&f.acme, Role::Admin).await;
    let rejected = f
        .app
        .post(
            &format!("/api/v1/workflow-action-requests/{own_id}/reject"),
            &other_admin,
            &json!({"comment": "not now"}),
        )
        .await;
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(
        f.n8n.workflow(&id).map(|w| w["active"].clone()),
        Some(json!(true)),
        "a rejected request changes nothing"
    );
    let pending = f
        .app
        .get(
            "/api/v1/workflow-action-requests?status=pending",
            &f.acme.admin,
        )
        .await;
    assert_eq!(pending.body.as_array().map(Vec::len), Some(0));
    let audit: i64 =
        sqlx::query_scalar("select count(*) from audit_logs where action like 'workflow.action_%'")
            .fetch_one(&f.app.db.pool)
            .await
            .unwrap_or(-1);
    assert!(audit >= 4, "requests and decisions are audited ({audit})");
}

// WF-007, SEC-001: a request made with an API key is its creator's: neither the key nor its
// creator can approve it, and keys never decide
#[tokio::test]
async fn an_api_key_cannot_approve_its_own_request_nor_its_creators() {
    let f = fixture().await;
    let (id, _) = nth_workflow(&f, f.prod, 2).await;
    let minted = f
        .app
        .post(
            "/api/v1/api-keys",
            &f.acme.admin,
            &json!({"name": "ops bot", "role": "admin"}),
        )
        .await;
    assert_eq!(minted.status, 201, "{}", minted.body);
    let key = workflowops_tests::Caller::bearer(minted.body["secret"].as_str().unwrap_or_default());
    let held = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/{id}/actions", f.prod),
            &key,
            &json!({"action": "activate"}),
        )
        .await;
    assert_eq!(held.status, 202, "{}", held.body);
    assert_eq!(
        held.body["request"]["requested_by"],
        json!(f.acme.admin.user_id),
        "{}",
        held.body
    );
    let approve = format!(
        "/api/v1/workflow-action-requests/{}/approve",
        held.body["request"]["id"].as_str().unwrap_or_default()
    );

    let by_key = f.app.post(&approve, &key, &json!({})).await;
    assert_eq!(
        (by_key.status.as_u16(), by_key.code()),
        (403, "user_required"),
        "{}",
        by_key.body
    );
    let by_creator = f.app.post(&approve, &f.acme.admin, &json!({})).await;
    assert_eq!(
        (by_creator.status.as_u16(), by_creator.code()),
        (403, "self_approval"),
        "{}",
        by_creator.body
    );
    assert_eq!(
        f.n8n.workflow(&id).map(|w| w["active"].clone()),
        Some(json!(false)),
        "nothing happened"
    );
    let other_admin = f.app.member(&f.acme, Role::Admin).await;
    let approved = f.app.post(&approve, &other_admin, &json!({})).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(
        f.n8n.workflow(&id).map(|w| w["active"].clone()),
        Some(json!(true))
    );
}

// WF-009, WF-011, WF-012, WF-013, WF-015: upload, archive and restore, hard delete, export
#[tokio::test]
async fn upload_archive_hard_delete_and_export_follow_the_policy() {
    let f = fixture().await;
    let dev = f.app.member(&f.acme, Role::Developer).await;
    let wf = json!({"name": "Uploaded", "active": true, "id": "ignored", "nodes": [
        {"name": "Hook", "type": "n8n-nodes-base.webhook", "typeVersion": 2, "position": [0, 0], "parameters": {"path": "up"}}],
        "connections": {}, "settings": {"executionOrder": "v1"}});
    let blocked = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows", f.prod),
            &f.acme.admin,
            &json!({"workflows": [wf]}),
        )
        .await;
    assert_eq!(blocked.status, 403);
    assert_eq!(blocked.code(), "action_blocked");
    let bad = json!({"name": "", "nodes": "x"});
    let invalid = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows", f.dev),
            &dev,
            &json!({"workflows": [bad]}),
        )
        .await;
    assert_eq!(invalid.status, 422);
    let up = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows", f.dev),
            &dev,
            &json!({"workflows": [wf]}),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(up.body["created"], 1);
    let new_id = up.body["results"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        f.n8n.workflow(&new_id).map(|w| w["active"].clone()),
        Some(json!(false)),
        "uploads arrive inactive"
    );
    let listed = f
        .app
        .get(
            &format!("/api/v1/workflows?environment_id={}&search=uploaded", f.dev),
            &dev,
        )
        .await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));

    let (id, name) = nth_workflow(&f, f.prod, 1).await;
    let not_admin = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/{id}/actions", f.prod),
            &dev,
            &json!({"action": "archive"}),
        )
        .await;
    assert_eq!(not_admin.code(), "admin_only");
    let archived = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/{id}/actions", f.prod),
            &f.acme.admin,
            &json!({"action": "archive"}),
        )
        .await;
    assert_eq!(archived.status, 200, "{}", archived.body);
    assert_eq!(
        f.n8n.workflow(&id).map(|w| w["isArchived"].clone()),
        Some(json!(true))
    );
    let restored = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/{id}/actions", f.prod),
            &f.acme.admin,
            &json!({"action": "unarchive"}),
        )
        .await;
    assert_eq!(restored.status, 200);
    assert_eq!(
        f.n8n.workflow(&id).map(|w| w["isArchived"].clone()),
        Some(json!(false))
    );

    let (dev_wf, _) = nth_workflow(&f, f.dev, 0).await;
    let dev_hard = f
        .app
        .delete(
            &format!(
                "/api/v1/environments/{}/workflows/{dev_wf}?confirm=x",
                f.dev
            ),
            &f.acme.admin,
        )
        .await;
    assert_eq!(
        dev_hard.code(),
        "action_blocked",
        "hard delete is blocked outside production"
    );
    let unconfirmed = f
        .app
        .delete(
            &format!("/api/v1/environments/{}/workflows/{id}", f.prod),
            &f.acme.admin,
        )
        .await;
    assert_eq!(unconfirmed.code(), "confirmation_required");
    let gone = f
        .app
        .delete(
            &format!(
                "/api/v1/environments/{}/workflows/{id}?confirm={}",
                f.prod,
                name.replace(' ', "%20")
            ),
            &f.acme.admin,
        )
        .await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    assert!(f.n8n.workflow(&id).is_none());
    assert_eq!(
        f.app
            .get(
                &format!("/api/v1/environments/{}/workflows/{id}", f.prod),
                &f.acme.admin
            )
            .await
            .status,
        404
    );

    let download = |format: &'static str| {
        f.app
            .http
            .get(f.app.url(&format!(
                "/api/v1/environments/{}/workflows/export{format}",
                f.dev
            )))
            .bearer_auth(&dev.token)
            .timeout(Duration::from_secs(10))
            .send()
    };
    let export = download("?format=json")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        export
            .headers()
            .get("content-disposition")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("attachment"))
    );
    let body: serde_json::Value = export.json().await.unwrap_or_default();
    assert_eq!(body["workflows"].as_array().map(Vec::len), Some(11));

    // WF-013 / WF-009: the ZIP download uploads again as it is.
    let zip = download("").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        zip.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/zip")
    );
    let bytes = zip.bytes().await.unwrap_or_default();
    let reupload = f
        .app
        .http
        .post(
            f.app
                .url(&format!("/api/v1/environments/{}/workflows/zip", f.staging)),
        )
        .bearer_auth(&dev.token)
        .header("content-type", "application/zip")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reupload = TestApp::read(reupload).await;
    assert_eq!(reupload.status, 200, "{}", reupload.body);
    assert_eq!(reupload.body["created"], 11);
    let not_zip = f
        .app
        .http
        .post(
            f.app
                .url(&format!("/api/v1/environments/{}/workflows/zip", f.staging)),
        )
        .bearer_auth(&dev.token)
        .body("definitely not a zip")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let not_zip = TestApp::read(not_zip).await;
    assert_eq!(not_zip.status, 422, "{}", not_zip.body);
}

// WF-006, BULK-004, BULK-005: bulk actions as one run with an outcome per workflow
#[tokio::test]
async fn bulk_actions_report_each_workflow_and_respect_approvals() {
    let f = fixture().await;
    let dev = f.app.member(&f.acme, Role::Developer).await;
    let list = f
        .app
        .get(
            &format!("/api/v1/workflows?environment_id={}&limit=3", f.dev),
            &dev,
        )
        .await;
    let mut ids: Vec<String> = list.body["items"]
        .as_array()
        .map(|i| {
            i.iter()
                .filter_map(|w| w["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let manual = f.n8n.insert_workflow(json!({"name": "Manual only", "nodes": [
        {"name": "Set", "type": "n8n-nodes-base.set", "typeVersion": 3, "position": [0, 0], "parameters": {}}],
        "connections": {}, "settings": {}}));
    let run = f
        .app
        .post(
            &format!("/api/v1/environments/{}/sync", f.dev),
            &dev,
            &json!({"scope": "workflows"}),
        )
        .await;
    let run: Uuid = run.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&f.app.db.pool, run, RunStatus::Succeeded).await;
    ids.push(manual.clone());

    let unknown = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/bulk-actions", f.dev),
            &dev,
            &json!({"action": "activate", "workflow_ids": ["nope"]}),
        )
        .await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);

    let started = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/bulk-actions", f.dev),
            &dev,
            &json!({"action": "activate", "workflow_ids": ids}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    assert_eq!(started.body["status"], "started");
    let run: Uuid = started.body["run"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&f.app.db.pool, run, RunStatus::Succeeded).await;
    let done = f.app.get(&format!("/api/v1/runs/{run}"), &dev).await;
    let out = &done.body["output"];
    assert_eq!(
        (out["succeeded"].as_i64(), out["failed"].as_i64()),
        (Some(3), Some(1)),
        "{}",
        done.body
    );
    assert!(
        out["workflows"][manual.as_str()]["error"]
            .as_str()
            .is_some_and(|e| e.contains("trigger")),
        "{}",
        done.body
    );
    assert_eq!(done.body["progress_done"], 4);
    for id in &ids[..3] {
        assert_eq!(
            f.n8n.workflow(id).map(|w| w["active"].clone()),
            Some(json!(true))
        );
    }

    let held = f
        .app
        .post(
            &format!("/api/v1/environments/{}/workflows/bulk-actions", f.prod),
            &dev,
            &json!({"action": "deactivate", "workflow_ids": &ids[..2]}),
        )
        .await;
    assert_eq!(held.status, 202, "{}", held.body);
    assert_eq!(held.body["status"], "pending_approval");
    assert_eq!(held.body["requests"].as_array().map(Vec::len), Some(2));
}
