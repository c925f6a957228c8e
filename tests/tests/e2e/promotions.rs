//! Promotions (PIPE-*, PROMO-*, DEP-*, CRED-007, credential remapping) across three emulated
//! n8n instances: dev → staging → prod.

use std::time::Duration;

use domain::Role;
use engine::RunStatus;
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::engine_support::{TestWorker, eventually, wait_for};
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};
use workflowops_tests::{Caller, TenantFixture, TestApp, sse};

use super::canonical::environment;
use super::git::{bare_repo, run};

async fn full_sync(app: &TestApp, t: &TenantFixture, env: Uuid) {
    run(
        app,
        t,
        &format!("/api/v1/environments/{env}/sync"),
        Some(&json!({"scope": "full"})),
    )
    .await;
}

fn id(v: &Value) -> Uuid {
    v["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// Starts a promotion and waits for its run to reach `status`; returns the promotion.
async fn promote(app: &TestApp, caller: &Caller, body: &Value, status: RunStatus) -> Value {
    let res = app.post("/api/v1/promotions", caller, body).await;
    assert_eq!(res.status, 202, "{}", res.body);
    let run: Uuid = res.body["run_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, run, status).await;
    app.get(&format!("/api/v1/promotions/{}", id(&res.body)), caller)
        .await
        .body
}

async fn promotion_status(app: &TestApp, caller: &Caller, promotion: Uuid, wanted: &str) -> Value {
    eventually(
        &format!("promotion {promotion} {wanted}"),
        std::time::Duration::from_secs(20),
        || async {
            let p = app
                .get(&format!("/api/v1/promotions/{promotion}"), caller)
                .await
                .body;
            (p["status"] == wanted).then_some(p)
        },
    )
    .await
}

fn hashes(n8n: &N8nEmulator, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|i| {
            n8n.workflow(i)
                .map(|w| domain::workflow::content_hash(&w))
                .unwrap_or_default()
        })
        .collect()
}

fn credential_ids(wf: &Value) -> Vec<String> {
    domain::workflow::credential_refs(wf)
        .into_iter()
        .filter_map(|r| r.id)
        .collect()
}

struct Landscape {
    app: TestApp,
    acme: TenantFixture,
    dev: (Uuid, N8nEmulator),
    staging: (Uuid, N8nEmulator),
    prod: (Uuid, N8nEmulator),
    dev_ids: Vec<String>,
    _worker: TestWorker,
}

async fn landscape(workflows: usize) -> Landscape {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let dev_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let staging_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let dev_ids = dev_n8n.seed_workflows(workflows, 4);
    for i in 1..=3 {
        staging_n8n.add_credential(&format!("Staging basic auth {i}"), "httpBasicAuth");
        prod_n8n.add_credential(&format!("Staging basic auth {i}"), "httpBasicAuth");
    }
    let dev = environment(&app, &acme, "Dev", "dev", &dev_n8n).await;
    let staging = environment(&app, &acme, "Staging", "staging", &staging_n8n).await;
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    for env in [dev, staging, prod] {
        full_sync(&app, &acme, env).await;
    }
    Landscape {
        app,
        acme,
        dev: (dev, dev_n8n),
        staging: (staging, staging_n8n),
        prod: (prod, prod_n8n),
        dev_ids,
        _worker: worker,
    }
}

async fn pipeline(l: &Landscape, stages: Value) -> Uuid {
    let res = l
        .app
        .post(
            "/api/v1/pipelines",
            &l.acme.admin,
            &json!({"name": format!("Release {}", Uuid::now_v7().simple()), "provider": "n8n", "stages": stages}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    id(&res.body)
}

// PIPE-001..005, PIPE-007, PROMO-001..004, PROMO-009, DEP-001..003, CRED-007, credential remapping
#[tokio::test]
async fn promotions_flow_dev_to_staging_to_prod_with_gates_approvals_and_remapping() {
    let l = landscape(4).await;
    let (app, acme) = (&l.app, &l.acme);
    let (dev, staging, prod) = (l.dev.0, l.staging.0, l.prod.0);

    // PIPE-*: impossible pipelines are refused; only admins configure them.
    let cycle = app
        .post(
            "/api/v1/pipelines",
            &acme.admin,
            &json!({"name": "loop", "provider": "n8n", "stages": [
                {"source_environment_id": dev, "target_environment_id": staging},
                {"source_environment_id": staging, "target_environment_id": dev}]}),
        )
        .await;
    assert_eq!(cycle.status, 422, "{}", cycle.body);
    assert!(cycle.body.to_string().contains("cycle"), "{}", cycle.body);
    let wrong_provider = app
        .post(
            "/api/v1/pipelines",
            &acme.admin,
            &json!({"name": "make", "provider": "make", "stages": [{"source_environment_id": dev, "target_environment_id": staging}]}),
        )
        .await;
    assert_eq!(wrong_provider.status, 422);
    let developer = app.member(acme, Role::Developer).await;
    let forbidden = app
        .post(
            "/api/v1/pipelines",
            &developer,
            &json!({"name": "x", "provider": "n8n", "stages": []}),
        )
        .await;
    assert_eq!(forbidden.status, 403);
    let pipeline_id = pipeline(
        &l,
        json!([
            {"source_environment_id": dev, "target_environment_id": staging,
             "gates": {"credentialsExistInTarget": true, "runPreFlightValidation": true, "targetEnvironmentHealthy": true}},
            {"source_environment_id": staging, "target_environment_id": prod,
             "gates": {"credentialsExistInTarget": true, "nodesSupportedInTarget": true, "webhooksAvailable": true,
                       "maxAllowedRiskLevel": "high"},
             "approvals": {"required": 1, "roles": ["admin"], "allow_self_approval": false},
             "window": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59"}}
        ]),
    )
    .await;

    // CRED-007: staging's credentials have other names: nothing maps, the gate blocks.
    let body = json!({"pipeline_id": pipeline_id, "stage_index": 0, "workflow_ids": l.dev_ids});
    let preview = app
        .post("/api/v1/promotions/preview", &acme.admin, &body)
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    let statuses: Vec<&str> = preview.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, ["ADDED"; 4], "PROMO-003");
    assert_eq!(preview.body["blocked"], true);
    let blocked = promote(app, &acme.admin, &body, RunStatus::Failed).await;
    assert_eq!(blocked["status"], "failed", "{blocked}");
    assert!(
        blocked["error"]
            .as_str()
            .unwrap_or_default()
            .contains("credentialsExistInTarget"),
        "{blocked}"
    );
    assert_eq!(l.staging.1.workflow_count(), 0, "nothing written");

    // Credential remapping: map each dev credential to its staging counterpart.
    let mappings = app
        .get(
            &format!("/api/v1/credential-mappings?source_environment_id={dev}&target_environment_id={staging}"),
            &acme.admin,
        )
        .await;
    let rows = mappings.body["credentials"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rows.len(), 3, "{}", mappings.body);
    assert!(rows.iter().all(|r| r["state"] == "missing"));
    let staging_creds: Vec<(String, String)> = sqlx::query_as(
        "select name, provider_id from env_credentials where environment_id = $1 order by name",
    )
    .bind(staging)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_default();
    for row in &rows {
        let n = row["source_name"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("Seed basic auth ");
        let target = staging_creds
            .iter()
            .find(|(name, _)| name.ends_with(n))
            .map(|(_, id)| id.clone())
            .unwrap_or_default();
        let put = app
            .request(
                reqwest::Method::PUT,
                "/api/v1/credential-mappings",
                Some(&acme.admin.token),
                Some(&json!({"source_environment_id": dev, "target_environment_id": staging,
                    "credential_type": "httpBasicAuth", "source_credential_id": row["source_credential_id"],
                    "target_credential_id": target})),
            )
            .await;
        assert_eq!(put.status, 200, "{}", put.body);
    }
    let audited: i64 = sqlx::query_scalar(
        "select count(*) from audit_logs where action = 'credential_mapping.set'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or(0);
    assert_eq!(audited, 3);

    // PROMO-001: a viewer cannot promote; a developer can.
    let viewer = app.member(acme, Role::Viewer).await;
    assert_eq!(
        app.post("/api/v1/promotions", &viewer, &body).await.status,
        403
    );
    let done = promote(app, &developer, &body, RunStatus::Succeeded).await;
    assert_eq!(done["status"], "completed", "{done}");
    let results = done["results"].as_array().cloned().unwrap_or_default();
    assert!(results.iter().all(|r| r["action"] == "created"), "{done}");
    // The staging copies reference staging's credentials.
    let staging_ids: Vec<String> = staging_creds.iter().map(|(_, id)| id.clone()).collect();
    for r in &results {
        let copy = l
            .staging
            .1
            .workflow(r["target_id"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let used = credential_ids(&copy);
        assert!(
            !used.is_empty() && used.iter().all(|c| staging_ids.contains(c)),
            "remapped: {used:?} of {staging_ids:?}"
        );
    }

    // PROMO-004: staging → prod needs an admin's approval, never the requester's own.
    full_sync(app, acme, staging).await;
    let staging_wf: Vec<String> = results
        .iter()
        .filter_map(|r| r["target_id"].as_str().map(str::to_owned))
        .collect();
    let body = json!({"pipeline_id": pipeline_id, "stage_index": 1, "workflow_ids": staging_wf, "note": "release 42"});
    let res = app.post("/api/v1/promotions", &acme.admin, &body).await;
    assert_eq!(res.status, 202, "{}", res.body);
    let pid = id(&res.body);
    let waiting = promotion_status(app, &acme.admin, pid, "pending_approval").await;
    assert_eq!(waiting["approvals_required"], 1);
    let own = app
        .post(
            &format!("/api/v1/promotions/{pid}/approve"),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!((own.status.as_u16(), own.code()), (403, "self_approval"));
    let not_approver = app
        .post(
            &format!("/api/v1/promotions/{pid}/approve"),
            &developer,
            &json!({}),
        )
        .await;
    assert_eq!(
        (not_approver.status.as_u16(), not_approver.code()),
        (403, "not_an_approver")
    );
    // Nor can the generic runs API decide it: the run's own signal is not for it.
    let run_id = waiting["run_id"].as_str().unwrap_or_default();
    let forged = app
        .post(
            &format!("/api/v1/runs/{run_id}/signals"),
            &developer,
            &json!({"name": "decision", "payload": {"approved": true}}),
        )
        .await;
    assert_eq!(
        (forged.status.as_u16(), forged.code()),
        (403, "signal_not_accepted"),
        "{}",
        forged.body
    );
    let refused: i64 = sqlx::query_scalar(
        "select count(*) from audit_logs where action = 'run.signal_refused' and target_id = $1",
    )
    .bind(run_id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_default();
    assert_eq!(refused, 1, "the refusal is audited");
    let pending: i64 =
        sqlx::query_scalar("select count(*) from engine_signals where run_id = $1::uuid")
            .bind(run_id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_default();
    assert_eq!(pending, 0, "no signal was stored");
    // A promotion is cancelled through its own API only.
    let cancel = app
        .post(
            &format!("/api/v1/runs/{run_id}/cancel"),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(
        (cancel.status.as_u16(), cancel.code()),
        (403, "cancel_not_accepted"),
        "{}",
        cancel.body
    );
    assert_eq!(
        promotion_status(app, &acme.admin, pid, "pending_approval").await["status"],
        "pending_approval"
    );
    let admin2 = app.member(acme, Role::Admin).await;
    let approved = app
        .post(
            &format!("/api/v1/promotions/{pid}/approve"),
            &admin2,
            &json!({"comment": "LGTM"}),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let again = app
        .post(
            &format!("/api/v1/promotions/{pid}/approve"),
            &admin2,
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 409);
    let done = promotion_status(app, &acme.admin, pid, "completed").await;
    assert_eq!(done["approvals"][0]["comment"], "LGTM");
    assert_eq!(
        done["risk"], "high",
        "HTTP nodes and triggers added: {done}"
    );
    assert_eq!(l.prod.1.workflow_count(), 4);

    // A second promotion of the same content: everything UNCHANGED.
    full_sync(app, acme, prod).await;
    let preview = app
        .post("/api/v1/promotions/preview", &acme.admin, &body)
        .await;
    let statuses: Vec<&str> = preview.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, ["UNCHANGED"; 4], "{}", preview.body);

    // Reject: ends rejected, nothing changes.
    let res = app.post("/api/v1/promotions", &developer, &body).await;
    let rid = id(&res.body);
    promotion_status(app, &acme.admin, rid, "pending_approval").await;
    let rejected = app
        .post(
            &format!("/api/v1/promotions/{rid}/reject"),
            &acme.admin,
            &json!({"comment": "not today"}),
        )
        .await;
    assert_eq!(rejected.status, 200, "{}", rejected.body);
    promotion_status(app, &acme.admin, rid, "rejected").await;

    // DEP-005: cancel one awaiting approval; DEP-006: soft-delete a finished one.
    let res = app.post("/api/v1/promotions", &developer, &body).await;
    let cid = id(&res.body);
    promotion_status(app, &acme.admin, cid, "pending_approval").await;
    let cancelled = app
        .post(
            &format!("/api/v1/promotions/{cid}/cancel"),
            &developer,
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    let running = app
        .delete(&format!("/api/v1/promotions/{cid}"), &developer)
        .await;
    assert_eq!(running.status, 204);
    assert_eq!(
        app.get(&format!("/api/v1/promotions/{cid}"), &developer)
            .await
            .status,
        404
    );

    // DEP-001: the history, filtered.
    let list = app
        .get(
            &format!("/api/v1/promotions?environment_id={prod}&status=completed"),
            &acme.admin,
        )
        .await;
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        list.body
    );
    let other = app.tenant("other").await;
    assert_eq!(
        app.get(&format!("/api/v1/promotions/{pid}"), &other.admin)
            .await
            .status,
        404
    );
}

// TARGET_HOTFIX (PROMO-003) blocks unless overwriting is allowed or a forced promotion is
// permitted; PROMO-005/006/007: a failure mid-way restores the target's exact content.
#[tokio::test]
async fn hotfixes_block_and_a_failure_mid_way_rolls_the_target_back() {
    let l = landscape(5).await;
    let (app, acme) = (&l.app, &l.acme);
    let (dev, staging) = (l.dev.0, l.staging.0);
    for i in 1..=3 {
        l.staging
            .1
            .add_credential(&format!("Seed basic auth {i}"), "httpBasicAuth");
    }
    full_sync(app, acme, staging).await;
    let repo = bare_repo();
    let git = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{staging}/git"),
            Some(&acme.admin.token),
            Some(&json!({"url": repo.0.display().to_string(), "auth": "none"})),
        )
        .await;
    assert_eq!(git.status, 200, "{}", git.body);
    let stage = json!({"source_environment_id": dev, "target_environment_id": staging});
    let pipeline_id = pipeline(&l, json!([stage])).await;
    let body = json!({"pipeline_id": pipeline_id, "stage_index": 0, "workflow_ids": l.dev_ids});
    let first = promote(app, &acme.admin, &body, RunStatus::Succeeded).await;
    assert!(
        first["pre_snapshot_id"].is_string() && first["post_snapshot_id"].is_string(),
        "SNAP-002/006: {first}"
    );
    let targets: Vec<String> = first["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["target_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();

    // Someone hotfixes staging by hand; dev moves on too.
    l.staging.1.modify_workflow(&targets[0], |wf| {
        wf["nodes"][1]["parameters"]["hotfix"] = json!(true);
    });
    for i in &l.dev_ids {
        l.dev
            .1
            .modify_workflow(i, |wf| wf["nodes"][1]["parameters"]["release"] = json!(2));
    }
    full_sync(app, acme, staging).await;
    full_sync(app, acme, dev).await;
    let preview = app
        .post("/api/v1/promotions/preview", &acme.admin, &body)
        .await;
    assert_eq!(
        preview.body["items"][0]["status"], "TARGET_HOTFIX",
        "{}",
        preview.body
    );
    assert_eq!(preview.body["items"][1]["status"], "MODIFIED");
    let blocked = promote(app, &acme.admin, &body, RunStatus::Failed).await;
    assert!(
        blocked["error"]
            .as_str()
            .unwrap_or_default()
            .contains("conflicts"),
        "{blocked}"
    );
    // Forcing needs the stage to allow it.
    let forced = json!({"pipeline_id": pipeline_id, "stage_index": 0, "workflow_ids": l.dev_ids, "force": true});
    let still = promote(app, &acme.admin, &forced, RunStatus::Failed).await;
    assert_eq!(still["status"], "failed");
    let update = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/pipelines/{pipeline_id}"),
            Some(&acme.admin.token),
            Some(&json!({"name": "Release", "provider": "n8n", "stages": [
                {"source_environment_id": dev, "target_environment_id": staging,
                 "policy": {"allowForcePromotionOnConflicts": true}}]})),
        )
        .await;
    assert_eq!(update.status, 200, "{}", update.body);

    // The forced promotion fails at its third write: the two written are put back exactly.
    let before = hashes(&l.staging.1, &targets);
    let count = l.staging.1.workflow_count();
    l.staging.1.reject_write_after(2);
    let failed = promote(app, &acme.admin, &forced, RunStatus::Failed).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let rolled = failed["rollback"].as_array().cloned().unwrap_or_default();
    assert_eq!(rolled.len(), 2, "{failed}");
    assert!(
        rolled
            .iter()
            .all(|r| r["action"] == "restored" && r["error"].is_null()),
        "{failed}"
    );
    assert_eq!(
        hashes(&l.staging.1, &targets),
        before,
        "PROMO-007: exact content hashes"
    );
    assert_eq!(l.staging.1.workflow_count(), count);
    // The web UI shows the rollback and filters the history by status.
    let page = |path: String| {
        let token = acme.admin.token.clone();
        let url = app.url(&path);
        async move {
            reqwest::Client::new()
                .get(url)
                .header("cookie", format!("wfo_session={token}"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .text()
                .await
                .unwrap_or_default()
        }
    };
    let html = page(format!(
        "/promotions/{}",
        failed["id"].as_str().unwrap_or_default()
    ))
    .await;
    assert!(
        html.contains("Rolled back") && html.matches("restored").count() >= 2,
        "{html}"
    );
    let html = page("/promotions?status=failed".into()).await;
    assert!(
        html.contains("status failed") && !html.contains("status completed"),
        "filtered"
    );

    // With nothing in the way, the forced promotion lands.
    let landed = promote(app, &acme.admin, &forced, RunStatus::Succeeded).await;
    assert_eq!(landed["status"], "completed", "{landed}");
    let updated = landed["results"]
        .as_array()
        .map(|a| a.iter().filter(|r| r["action"] == "updated").count());
    assert_eq!(updated, Some(5), "{landed}");
    let snapshots: i64 = sqlx::query_scalar(
        "select count(*) from snapshots where kind in ('pre_promotion', 'post_promotion')",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or(0);
    assert!(snapshots >= 4, "{snapshots}");
    // The failed and the landed deployment are alerts for the notification rules (NOTIF-009).
    let alerts = app
        .get("/api/v1/notifications/alerts?limit=200", &acme.admin)
        .await
        .body;
    let of = |id: &Value| -> Vec<String> {
        let mut v: Vec<String> = alerts["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["data"]["promotion_id"] == *id)
                    .filter_map(|e| e["event_type"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        v.reverse();
        v
    };
    assert_eq!(
        of(&failed["id"]),
        ["deployment.started", "deployment.failed"],
        "{alerts}"
    );
    assert_eq!(
        of(&landed["id"]),
        ["deployment.started", "deployment.completed"],
        "{alerts}"
    );
    let completed = alerts["items"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|e| {
                    e["event_type"] == "deployment.completed"
                        && e["data"]["promotion_id"] == landed["id"]
                })
                .cloned()
        })
        .unwrap_or_default();
    assert_eq!(completed["data"]["updated"], 5, "{completed}");
    assert_eq!(completed["data"]["target"], "Staging", "{completed}");
}

// A write that happened but whose answer was lost (as when the worker dies right after it): the
// retried attempt adopts the copy instead of creating a second one.
#[tokio::test]
async fn a_lost_create_response_never_makes_a_second_copy() {
    let l = landscape(3).await;
    let (app, acme) = (&l.app, &l.acme);
    for i in 1..=3 {
        l.staging
            .1
            .add_credential(&format!("Seed basic auth {i}"), "httpBasicAuth");
    }
    full_sync(app, acme, l.staging.0).await;
    let pipeline_id = pipeline(
        &l,
        json!([{"source_environment_id": l.dev.0, "target_environment_id": l.staging.0}]),
    )
    .await;
    l.staging.1.truncate_write_after(1);
    let body = json!({"pipeline_id": pipeline_id, "stage_index": 0, "workflow_ids": l.dev_ids});
    let done = promote(app, &acme.admin, &body, RunStatus::Succeeded).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(l.staging.1.workflow_count(), 3, "exactly one copy of each");
    let attempts: i32 = sqlx::query_scalar("select attempt from engine_runs where id = $1")
        .bind(done["run_id"].as_str().and_then(|s| s.parse::<Uuid>().ok()))
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or(0);
    assert!(attempts >= 2, "the lost answer cost a retry");
}

// DEP-004 scheduled, DEP-005 cancel while waiting, DEP-007 stale settlement, DEP-008 progress
#[tokio::test]
async fn scheduled_promotions_wait_and_stale_ones_are_settled() {
    let l = landscape(2).await;
    let (app, acme) = (&l.app, &l.acme);
    for i in 1..=3 {
        l.staging
            .1
            .add_credential(&format!("Seed basic auth {i}"), "httpBasicAuth");
    }
    full_sync(app, acme, l.staging.0).await;
    let pipeline_id = pipeline(
        &l,
        json!([{"source_environment_id": l.dev.0, "target_environment_id": l.staging.0}]),
    )
    .await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let body = json!({"pipeline_id": pipeline_id, "stage_index": 0, "workflow_ids": l.dev_ids, "scheduled_at": later});
    let res = app.post("/api/v1/promotions", &acme.admin, &body).await;
    assert_eq!(res.status, 202, "{}", res.body);
    let pid = id(&res.body);
    let run = res.body["run_id"]
        .as_str()
        .and_then(|s| s.parse::<Uuid>().ok())
        .unwrap_or_default();
    promotion_status(app, &acme.admin, pid, "approved").await;
    wait_for(&app.db.pool, run, RunStatus::Waiting).await;
    assert_eq!(l.staging.1.workflow_count(), 0, "nothing before its time");
    let cancelled = app
        .post(
            &format!("/api/v1/promotions/{pid}/cancel"),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    wait_for(&app.db.pool, run, RunStatus::Cancelled).await;
    let again = app
        .post(
            &format!("/api/v1/promotions/{pid}/cancel"),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 409);

    // DEP-008: a promotion's run reports progress per workflow.
    let now = json!({"pipeline_id": pipeline_id, "stage_index": 0, "workflow_ids": l.dev_ids});
    let done = promote(app, &acme.admin, &now, RunStatus::Succeeded).await;
    let run = app
        .get(
            &format!(
                "/api/v1/runs/{}",
                done["run_id"].as_str().unwrap_or_default()
            ),
            &acme.admin,
        )
        .await;
    assert_eq!(
        (
            run.body["progress_done"].as_i64(),
            run.body["progress_total"].as_i64()
        ),
        (Some(2), Some(2)),
        "{}",
        run.body
    );
    // SSE-003: the deployment's status changes and its progress reach the run's event stream.
    let run_id = done["run_id"]
        .as_str()
        .and_then(|s| s.parse::<Uuid>().ok())
        .unwrap_or_default();
    let events = sse::run_stream(app, &acme.admin.token, run_id, Duration::from_secs(30)).await;
    let states = sse::statuses(&events);
    assert!(
        states.first().map(String::as_str) == Some("queued")
            && states.iter().any(|s| s == "running")
            && states.last().map(String::as_str) == Some("succeeded"),
        "{states:?}"
    );
    assert_eq!(sse::progress(&events), [(1, 2), (2, 2)], "{events:?}");

    // DEP-007: a promotion left `running` by a run that ended for good is settled.
    let stale = Uuid::now_v7();
    sqlx::query(
        "insert into promotions (id, tenant_id, pipeline_id, stage_index, source_environment_id, target_environment_id, \
         workflow_ids, status, run_id, requested_by_label) \
         select $1, tenant_id, pipeline_id, stage_index, source_environment_id, target_environment_id, workflow_ids, \
                'running', run_id, 'fixture' from promotions where id = $2",
    )
    .bind(stale)
    .bind(pid)
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        domain::promotions::settle_stale(&app.db.pool).await.ok(),
        Some(1)
    );
    let settled = app
        .get(&format!("/api/v1/promotions/{stale}"), &acme.admin)
        .await;
    assert_eq!(
        settled.body["status"], "cancelled",
        "takes its run's outcome: {}",
        settled.body
    );
}
