//! Promotions (PIPE-*, PROMO-*, DEP-*, CRED-007, credential remapping) across three emulated
//! n8n instances: dev → staging → prod.

use std::time::Duration;

use domain::Role;
use engine::RunStatus;
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::engine_support::{TestWorker, eventually, wait_for};
use workflowops_tests::faults::Fault;
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

/// A fixed-offset time zone (`Etc/GMT±N`) where the local time at `now` is between 12:00 and
/// 13:00, and its offset from UTC in hours: windows relative to it are far from midnight.
fn zone_at_noon(now: chrono::DateTime<chrono::Utc>) -> (String, i64) {
    use chrono::Timelike;
    let offset = 12 - i64::from(now.hour());
    // The sign of `Etc/GMT` names is inverted: `Etc/GMT-3` is UTC+3.
    let zone = match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    (zone, offset)
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
    // PIPE-005: a window open all day, in a zone where it is about noon now (a window of
    // 00:00-23:59 UTC would make a run in the day's last minute wait for the next day).
    let (zone, _) = zone_at_noon(chrono::Utc::now());
    let pipeline_id = pipeline(
        &l,
        json!([
            {"source_environment_id": dev, "target_environment_id": staging,
             "gates": {"credentialsExistInTarget": true, "runPreFlightValidation": true, "targetEnvironmentHealthy": true}},
            {"source_environment_id": staging, "target_environment_id": prod,
             "gates": {"credentialsExistInTarget": true, "nodesSupportedInTarget": true, "webhooksAvailable": true,
                       "maxAllowedRiskLevel": "high"},
             "approvals": {"required": 1, "roles": ["admin"], "allow_self_approval": false},
             "window": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59",
                        "timezone": zone}}
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

/// The preview's diff status of each item, in order.
async fn preview_statuses(app: &TestApp, caller: &Caller, body: &Value) -> Vec<String> {
    let preview = app.post("/api/v1/promotions/preview", caller, body).await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    preview.body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["status"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// PROMO-003, SNAP-008: a rollback to the pre-promotion snapshot is WorkflowOps' own write, not
// a hotfix in the target; a change by hand after it still is.
#[tokio::test]
async fn a_rollback_to_the_pre_promotion_snapshot_is_not_a_target_hotfix() {
    let l = landscape(2).await;
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
    let pipeline_id = pipeline(
        &l,
        json!([{"source_environment_id": dev, "target_environment_id": staging}]),
    )
    .await;
    let body = json!({"pipeline_id": pipeline_id, "stage_index": 0, "workflow_ids": l.dev_ids});
    let first = promote(app, &acme.admin, &body, RunStatus::Succeeded).await;
    assert_eq!(first["status"], "completed", "{first}");
    let targets: Vec<String> = first["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["target_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(targets.len(), 2, "{first}");

    // A second release, then rolled back to the snapshot taken just before it.
    for i in &l.dev_ids {
        l.dev
            .1
            .modify_workflow(i, |wf| wf["nodes"][1]["parameters"]["release"] = json!(2));
    }
    full_sync(app, acme, dev).await;
    let released = hashes(&l.staging.1, &targets);
    let second = promote(app, &acme.admin, &body, RunStatus::Succeeded).await;
    assert_eq!(second["status"], "completed", "{second}");
    assert_ne!(hashes(&l.staging.1, &targets), released);
    let pre = second["pre_snapshot_id"].as_str().unwrap_or_default();
    let restored = run(
        app,
        acme,
        &format!("/api/v1/snapshots/{pre}/restore"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(restored["updated"], 2, "{restored}");
    assert_eq!(hashes(&l.staging.1, &targets), released, "rolled back");
    full_sync(app, acme, staging).await;

    // Promoting the second release again is a plain modification.
    assert_eq!(
        preview_statuses(app, &acme.admin, &body).await,
        ["MODIFIED", "MODIFIED"]
    );
    // A change by hand after the rollback is a hotfix again.
    l.staging.1.modify_workflow(&targets[0], |wf| {
        wf["nodes"][1]["parameters"]["hotfix"] = json!(true);
    });
    full_sync(app, acme, staging).await;
    assert_eq!(
        preview_statuses(app, &acme.admin, &body).await,
        ["TARGET_HOTFIX", "MODIFIED"]
    );
}

/// The preview's `targetEnvironmentHealthy` gate: (status, message).
async fn health_gate(app: &TestApp, caller: &Caller, body: &Value) -> (String, String) {
    let preview = app.post("/api/v1/promotions/preview", caller, body).await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    preview.body["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["gate"] == "targetEnvironmentHealthy"))
        .map(|g| {
            (
                g["status"].as_str().unwrap_or_default().to_owned(),
                g["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .unwrap_or_else(|| panic!("no health gate: {}", preview.body))
}

// PROMO-009, HEALTH-006: a preview judges the healthy-target gate by the target's last health
// check; it never fails the gate without one.
#[tokio::test]
async fn a_preview_judges_the_target_by_its_last_health_check() {
    let l = landscape(1).await;
    let (app, acme) = (&l.app, &l.acme);
    let (dev, staging) = (l.dev.0, l.staging.0);
    let pipeline_id = pipeline(
        &l,
        json!([{"source_environment_id": dev, "target_environment_id": staging,
            "gates": {"targetEnvironmentHealthy": true}}]),
    )
    .await;
    let body = json!({"pipeline_id": pipeline_id, "stage_index": 0, "workflow_ids": l.dev_ids});

    // Never checked: not measured, so not a failure.
    let (status, message) = health_gate(app, &acme.admin, &body).await;
    assert_eq!(status, "warn", "{message}");
    assert!(
        message.starts_with("not measured") && message.contains("never checked"),
        "{message}"
    );

    // The target answers its health check: the gate passes, saying what it judged by.
    let check = format!("/api/v1/environments/{staging}/health-check");
    let healthy = run(app, acme, &check, None).await;
    assert_eq!(healthy["status"], "healthy", "{healthy}");
    let (status, message) = health_gate(app, &acme.admin, &body).await;
    assert_eq!(status, "pass", "{message}");
    assert!(message.contains("last health check"), "{message}");

    // It stops answering: the next check records it and the gate fails, saying why.
    l.staging.1.inject(Fault::DropConnection { times: 1000 });
    let down = run(app, acme, &check, None).await;
    assert_eq!(down["status"], "unreachable", "{down}");
    let (status, message) = health_gate(app, &acme.admin, &body).await;
    assert_eq!(status, "fail", "{message}");
    assert!(
        message.contains("last health check") && message.contains("found it unreachable"),
        "{message}"
    );
    let preview = app
        .post("/api/v1/promotions/preview", &acme.admin, &body)
        .await;
    assert_eq!(preview.body["blocked"], true, "{}", preview.body);
}

/// A landscape of `workflows` whose staging has the credentials dev's workflows use, and a
/// pipeline dev → staging with `stage` merged into its one stage.
async fn staging_ready(workflows: usize, stage: Value) -> (Landscape, Uuid) {
    let l = landscape(workflows).await;
    for i in 1..=3 {
        l.staging
            .1
            .add_credential(&format!("Seed basic auth {i}"), "httpBasicAuth");
    }
    full_sync(&l.app, &l.acme, l.staging.0).await;
    let mut one = json!({"source_environment_id": l.dev.0, "target_environment_id": l.staging.0});
    if let (Some(o), Some(extra)) = (one.as_object_mut(), stage.as_object()) {
        o.extend(extra.clone());
    }
    let pipeline_id = pipeline(&l, json!([one])).await;
    (l, pipeline_id)
}

/// The run of a promotion answer (`run_id`).
fn run_of(v: &Value) -> Uuid {
    v["run_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// The audit actions recorded on `target`, oldest first.
async fn audit_actions(app: &TestApp, tenant: Uuid, target: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "select action from audit_logs where tenant_id = $1 and target_id = $2 order by occurred_at, id",
    )
    .bind(tenant)
    .bind(target.to_string())
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

// DEP-006: a promotion still under way is not deleted (409); a finished one is hidden from the
// history and its audit rows stay.
#[tokio::test]
async fn an_unfinished_promotion_cannot_be_deleted_and_a_deleted_one_keeps_its_audit_trail() {
    let (l, pipeline_id) = staging_ready(1, json!({})).await;
    let (app, acme) = (&l.app, &l.acme);
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let body = json!({"pipeline_id": pipeline_id, "stage_index": 0, "workflow_ids": l.dev_ids,
        "scheduled_at": later});
    let res = app.post("/api/v1/promotions", &acme.admin, &body).await;
    assert_eq!(res.status, 202, "{}", res.body);
    let pid = id(&res.body);
    wait_for(&app.db.pool, run_of(&res.body), RunStatus::Waiting).await;
    promotion_status(app, &acme.admin, pid, "approved").await;

    let refused = app
        .delete(&format!("/api/v1/promotions/{pid}"), &acme.admin)
        .await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (409, "promotion_in_progress"),
        "{}",
        refused.body
    );
    let listed = || async {
        app.get("/api/v1/promotions", &acme.admin).await.body["items"]
            .as_array()
            .map(|a| a.iter().map(id).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(listed().await.contains(&pid), "still listed");
    assert_eq!(
        app.get(&format!("/api/v1/promotions/{pid}"), &acme.admin)
            .await
            .body["status"],
        "approved"
    );

    let cancelled = app
        .post(
            &format!("/api/v1/promotions/{pid}/cancel"),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    let deleted = app
        .delete(&format!("/api/v1/promotions/{pid}"), &acme.admin)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(
        app.get(&format!("/api/v1/promotions/{pid}"), &acme.admin)
            .await
            .status,
        404
    );
    assert!(!listed().await.contains(&pid), "hidden from the history");
    assert_eq!(
        app.delete(&format!("/api/v1/promotions/{pid}"), &acme.admin)
            .await
            .status,
        404
    );
    let kept: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select deleted_at from promotions where id = $1")
            .bind(pid)
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(kept.is_some(), "soft-deleted, not removed");
    assert_eq!(
        audit_actions(app, acme.id, pid).await,
        [
            "promotion.requested",
            "promotion.cancelled",
            "promotion.deleted"
        ]
    );
}

// DEP-007: a promotion left unfinished by a process that died (its run ended, the row did not
// follow) is settled by the hourly maintenance run, taking its run's outcome.
#[tokio::test]
async fn stale_promotions_are_settled_by_the_maintenance_run() {
    let l = landscape(1).await;
    let (app, acme) = (&l.app, &l.acme);
    // Without the credentials in staging the gate fails the first run.
    let gated = pipeline(
        &l,
        json!([{"source_environment_id": l.dev.0, "target_environment_id": l.staging.0,
            "gates": {"credentialsExistInTarget": true}}]),
    )
    .await;
    let body = json!({"pipeline_id": gated, "stage_index": 0, "workflow_ids": l.dev_ids});
    let failed = promote(app, &acme.admin, &body, RunStatus::Failed).await;
    for i in 1..=3 {
        l.staging
            .1
            .add_credential(&format!("Seed basic auth {i}"), "httpBasicAuth");
    }
    full_sync(app, acme, l.staging.0).await;
    let done = promote(app, &acme.admin, &body, RunStatus::Succeeded).await;

    // As a process that died would leave them: the rows say running / approved, their runs
    // have ended.
    let mut stale = Vec::new();
    for (from, status) in [(id(&failed), "running"), (id(&done), "approved")] {
        let copy = Uuid::now_v7();
        sqlx::query(
            "insert into promotions (id, tenant_id, pipeline_id, stage_index, source_environment_id, target_environment_id, \
             workflow_ids, status, run_id, requested_by_label) \
             select $1, tenant_id, pipeline_id, stage_index, source_environment_id, target_environment_id, workflow_ids, \
                    $3, run_id, 'fixture' from promotions where id = $2",
        )
        .bind(copy)
        .bind(from)
        .bind(status)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        stale.push(copy);
    }

    let prune = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::of::<jobs::maintenance::Prune>(
            jobs::maintenance::SYSTEM_NAMESPACE.to_owned(),
            &jobs::maintenance::PruneInput {
                retention_seconds: 86_400,
                execution_retention_seconds: None,
                snapshot_retention_days: None,
            },
        ),
    )
    .await;
    wait_for(&app.db.pool, prune, RunStatus::Succeeded).await;
    // A system run: no tenant sees it through the API.
    let output: Value = sqlx::query_scalar("select output from engine_runs where id = $1")
        .bind(prune)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(output["promotions_settled"], 2, "{output}");
    let settled = |p: Uuid| async move {
        app.get(&format!("/api/v1/promotions/{p}"), &acme.admin)
            .await
            .body
    };
    let from_failed = settled(stale[0]).await;
    assert_eq!(from_failed["status"], "failed", "{from_failed}");
    assert!(
        from_failed["error"].is_string() && from_failed["finished_at"].is_string(),
        "{from_failed}"
    );
    let from_done = settled(stale[1]).await;
    assert_eq!(from_done["status"], "completed", "{from_done}");
    // The promotions that finished normally are left as they were.
    assert_eq!(settled(id(&failed)).await["status"], "failed");
    assert_eq!(settled(id(&done)).await["status"], "completed");
}

// PIPE-005: a promotion approved outside its stage's window waits (holding no worker) for the
// window's next opening, and says so with the opening time.
#[tokio::test]
async fn a_promotion_outside_its_window_waits_for_the_opening() {
    let now = chrono::Utc::now();
    let (zone, offset) = zone_at_noon(now);
    // Local time is about noon: 23:00-23:30 today has not opened yet.
    let (l, pipeline_id) = staging_ready(
        1,
        json!({"window": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "23:00", "end": "23:30", "timezone": zone}}),
    )
    .await;
    let (app, acme) = (&l.app, &l.acme);
    let local_date = (now + chrono::Duration::hours(offset)).date_naive();
    let opens = local_date
        .and_hms_opt(23, 0, 0)
        .map(|t| t.and_utc() - chrono::Duration::hours(offset))
        .unwrap_or_default();
    assert!(opens > now + chrono::Duration::hours(10), "{opens}");

    let body = json!({"pipeline_id": pipeline_id, "stage_index": 0, "workflow_ids": l.dev_ids});
    let res = app.post("/api/v1/promotions", &acme.admin, &body).await;
    assert_eq!(res.status, 202, "{}", res.body);
    let (pid, run) = (id(&res.body), run_of(&res.body));
    wait_for(&app.db.pool, run, RunStatus::Waiting).await;
    let waiting = app.get(&format!("/api/v1/runs/{run}"), &acme.admin).await;
    assert_eq!(
        (
            waiting.body["status"].as_str(),
            waiting.body["run_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
        ),
        (Some("waiting"), Some(opens)),
        "waits until the window opens: {}",
        waiting.body
    );
    let said: Vec<String> = sqlx::query_scalar(
        "select data->>'message' from engine_events where run_id = $1 and kind = 'log' order by id",
    )
    .bind(run)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let opening = opens.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(
        said.iter().any(
            |m| m.contains("waiting for the stage's deployment window") && m.contains(&opening)
        ),
        "{opening}: {said:?}"
    );
    let p = app
        .get(&format!("/api/v1/promotions/{pid}"), &acme.admin)
        .await
        .body;
    assert_eq!(p["status"], "approved", "{p}");
    assert_eq!(
        p["waiting_until"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc)),
        Some(opens),
        "the promotion says when it starts: {p}"
    );
    // So does its page.
    let html = reqwest::Client::new()
        .get(app.url(&format!("/promotions/{pid}")))
        .header("cookie", format!("wfo_session={}", acme.admin.token))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    let starts = format!("starts {}", opens.format("%Y-%m-%d %H:%M UTC"));
    assert!(
        html.contains("id=\"waiting-until\"") && html.contains(&starts),
        "{starts}: {html}"
    );
    assert_eq!(l.staging.1.workflow_count(), 0, "nothing before the window");
    let cancelled = app
        .post(
            &format!("/api/v1/promotions/{pid}/cancel"),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.body);
    wait_for(&app.db.pool, run, RunStatus::Cancelled).await;
}

// WF-019, SNAP-006: the post-promotion snapshot is a commit of the target's repository that
// holds the promoted workflows as they are in the target.
#[tokio::test]
async fn the_post_promotion_snapshot_commit_holds_the_promoted_workflows() {
    let (l, pipeline_id) = staging_ready(2, json!({})).await;
    let (app, acme) = (&l.app, &l.acme);
    let repo = bare_repo();
    let git = app
        .put(
            &format!("/api/v1/environments/{}/git", l.staging.0),
            &acme.admin,
            &json!({"url": repo.0.display().to_string(), "auth": "none"}),
        )
        .await;
    assert_eq!(git.status, 200, "{}", git.body);
    let body = json!({"pipeline_id": pipeline_id, "stage_index": 0, "workflow_ids": l.dev_ids});
    let done = promote(app, &acme.admin, &body, RunStatus::Succeeded).await;
    let snapshot = |key: &'static str| {
        let sid = done[key].as_str().unwrap_or_default().to_owned();
        async move {
            let res = app
                .get(&format!("/api/v1/snapshots/{sid}"), &acme.admin)
                .await;
            assert_eq!(res.status, 200, "{key}: {}", res.body);
            res.body
        }
    };
    let post = snapshot("post_snapshot_id").await;
    let pre = snapshot("pre_snapshot_id").await;
    assert_eq!(post["kind"], "post_promotion", "{post}");
    assert_eq!(post["promotion_id"], done["id"], "{post}");
    let commit = post["git_commit"].as_str().unwrap_or_default();
    assert_ne!(
        Some(commit),
        pre["git_commit"].as_str(),
        "a commit of its own"
    );

    let r = git2::Repository::open_bare(&repo.0).unwrap_or_else(|e| panic!("{e}"));
    let tree = git2::Oid::from_str(commit)
        .and_then(|oid| r.find_commit(oid))
        .and_then(|c| c.tree())
        .unwrap_or_else(|e| panic!("commit {commit}: {e}"));
    let folder = post["git_path"]
        .as_str()
        .unwrap_or_default()
        .trim_matches('/');
    let results = done["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 2, "{done}");
    for result in &results {
        let target = result["target_id"].as_str().unwrap_or_default();
        let path = if folder.is_empty() {
            format!("workflows/{target}.json")
        } else {
            format!("{folder}/workflows/{target}.json")
        };
        let stored: Value = tree
            .get_path(std::path::Path::new(&path))
            .and_then(|e| r.find_blob(e.id()))
            .map(|b| serde_json::from_slice(b.content()).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{path} in {commit}: {e}"));
        let live = l
            .staging
            .1
            .workflow(target)
            .unwrap_or_else(|| panic!("{target} is not in staging"));
        assert_eq!(
            domain::workflow::content_hash(&stored),
            domain::workflow::content_hash(&live),
            "{path}: the promoted content"
        );
        let source = result["source_id"].as_str().unwrap_or_default();
        let dev = l.dev.1.workflow(source).unwrap_or_default();
        assert_eq!(stored["name"], dev["name"], "{path}: {result}");
        let indexed = post["workflows"]
            .as_array()
            .and_then(|w| w.iter().find(|w| w["id"] == target))
            .map(|w| w["hash"].clone())
            .unwrap_or_default();
        assert_eq!(
            indexed,
            json!(domain::workflow::content_hash(&stored)),
            "{post}"
        );
    }
}
