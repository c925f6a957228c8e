//! Drift (DRIFT-*, INC-*, POL-*, APPR-*): a change made directly in an emulated production n8n
//! is found by the scheduled check, opens one incident, blocks promotions, and is reconciled.

use domain::Role;
use engine::RunStatus;
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::engine_support::{TestWorker, eventually, wait_for};
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};
use workflowops_tests::{TenantFixture, TestApp};

use super::canonical::{environment, sync};
use super::git::{bare_repo, run};

async fn fire_schedule(app: &TestApp, name: &str) -> Uuid {
    sqlx::query(
        "update engine_schedules set next_fire_at = now() - interval '1 second' where name = $1",
    )
    .bind(name)
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    engine::schedule::fire_due(&app.db.pool, 10, &jobs::registry(&app.state.jobs))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run: Uuid = sqlx::query_scalar(
        "select id from engine_runs where kind = 'drift.check' and parent_id is null order by id desc limit 1",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    wait_for(&app.db.pool, run, RunStatus::Succeeded).await;
    run
}

async fn incidents(app: &TestApp, t: &TenantFixture, query: &str) -> Vec<Value> {
    app.get(&format!("/api/v1/incidents{query}"), &t.admin)
        .await
        .body["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn transition(
    app: &TestApp,
    caller: &workflowops_tests::Caller,
    id: &str,
    body: Value,
) -> workflowops_tests::app::Resp {
    app.post(&format!("/api/v1/incidents/{id}/transition"), caller, &body)
        .await
}

// DRIFT-001..007, INC-001..011, POL-001..007, APPR-001..005, PROMO-008
#[tokio::test]
async fn production_drift_is_found_blocks_promotions_and_is_reverted() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let dev_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let dev_ids = dev_n8n.seed_workflows(3, 4);
    let prod_ids = prod_n8n.seed_workflows(3, 4);
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
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    sync(&app, &acme, dev).await;
    sync(&app, &acme, prod).await;
    run(
        &app,
        &acme,
        "/api/v1/canonical/onboard",
        Some(&json!({"items": dev_ids.iter().map(|w| json!({"environment_id": dev, "workflow_id": w})).collect::<Vec<_>>()})),
    )
    .await;
    run(&app, &acme, "/api/v1/canonical/sync", None).await;

    // DRIFT-001: environments get a scheduled check; nothing has drifted yet.
    let first = fire_schedule(&app, &format!("environment:{prod}:drift")).await;
    let out = app
        .get(&format!("/api/v1/runs/{first}"), &acme.admin)
        .await
        .body["output"]
        .clone();
    assert_eq!(
        (out["in_sync"].as_i64(), out["drifted"].as_i64()),
        (Some(3), Some(0)),
        "{out}"
    );
    assert!(incidents(&app, &acme, "").await.is_empty());

    // A hotfix straight in production: an HTTP node's URL.
    prod_n8n.modify_workflow(&prod_ids[0], |wf| {
        for node in wf["nodes"].as_array_mut().into_iter().flatten() {
            if node["type"] == "n8n-nodes-base.httpRequest" {
                node["parameters"]["url"] = json!("https://hotfix.example/items");
            }
        }
    });
    let canonical_hash = dev_n8n
        .workflow(&dev_ids[0])
        .map(|w| domain::workflow::content_hash(&w))
        .unwrap_or_default();
    fire_schedule(&app, &format!("environment:{prod}:drift")).await;
    let open = incidents(&app, &acme, "?open=true").await;
    assert_eq!(open.len(), 1, "INC-001: one incident");
    let incident = open[0].clone();
    let id = incident["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        incident["severity"], "critical",
        "INC-002: HTTP change in production: {incident}"
    );
    let created =
        chrono::DateTime::parse_from_rfc3339(incident["created_at"].as_str().unwrap_or_default())
            .ok();
    let expires =
        chrono::DateTime::parse_from_rfc3339(incident["expires_at"].as_str().unwrap_or_default())
            .ok();
    let ttl = created.zip(expires).map(|(c, e)| (e - c).num_minutes());
    assert!(
        ttl.is_some_and(|m| (24 * 60 - 1..=24 * 60 + 1).contains(&m)),
        "POL-001: 24 h for critical: {ttl:?}"
    );
    assert_eq!(
        incident["affected"][0]["workflow_id"],
        prod_ids[0].as_str(),
        "INC-008"
    );
    assert_eq!(incident["affected"][0]["kind"], "drift");
    let paths =
        incident["payload"][&prod_ids[0]]["diff"]["nodes_changed"][0]["changes"][0]["path"].clone();
    assert_eq!(paths, "parameters.url", "DRIFT-003, INC-009: {incident}");
    // The same drift again updates that incident.
    let again = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/drift-check"),
        Some(&json!({"refresh": false})),
    )
    .await;
    assert_eq!(
        (
            again["incidents_opened"].as_i64(),
            again["incidents_updated"].as_i64()
        ),
        (Some(0), Some(1)),
        "{again}"
    );
    assert_eq!(incidents(&app, &acme, "").await.len(), 1);
    // DRIFT-005: dev is not checked.
    let skipped = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{dev}/drift-check"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(skipped["status"], "skipped");
    // DRIFT-007: the history.
    let history = app
        .get(
            &format!("/api/v1/environments/{prod}/drift-checks"),
            &acme.admin,
        )
        .await;
    assert_eq!(
        history.body["items"].as_array().map(Vec::len),
        Some(3),
        "{}",
        history.body
    );

    // PROMO-008: promotions into prod are blocked while the incident is open.
    let pipeline = app
        .post(
            "/api/v1/pipelines",
            &acme.admin,
            &json!({"name": "release", "provider": "n8n", "stages": [{"source_environment_id": dev, "target_environment_id": prod,
                "gates": {"requireCleanDrift": true}}]}),
        )
        .await;
    assert_eq!(pipeline.status, 201, "{}", pipeline.body);
    let preview = app
        .post(
            "/api/v1/promotions/preview",
            &acme.admin,
            &json!({"pipeline_id": pipeline.body["id"], "stage_index": 0, "workflow_ids": [dev_ids[1]]}),
        )
        .await;
    let gate = preview.body["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["gate"] == "requireCleanDrift"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(gate["status"], "fail", "{}", preview.body);
    // POL-005: with blocking on active drift, the policy gate blocks too.
    let mut policy = app.get("/api/v1/drift/policy", &acme.admin).await.body;
    policy["block_on_active_drift"] = json!(true);
    policy["approval_required_for"] = json!(["reconcile"]);
    let set = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/drift/policy",
            Some(&acme.admin.token),
            Some(&policy),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let preview = app
        .post(
            "/api/v1/promotions/preview",
            &acme.admin,
            &json!({"pipeline_id": pipeline.body["id"], "stage_index": 0, "workflow_ids": [dev_ids[1]]}),
        )
        .await;
    assert!(
        preview.body["gates"].to_string().contains("driftPolicy"),
        "{}",
        preview.body
    );
    assert_eq!(preview.body["blocked"], true);
    let developer = app.member(&acme, Role::Developer).await;
    let bad_policy = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/drift/policy",
            Some(&developer.token),
            Some(&policy),
        )
        .await;
    assert_eq!(bad_policy.status, 403);

    // INC-003..006: only legal moves.
    let illegal = transition(
        &app,
        &acme.admin,
        &id,
        json!({"to": "closed", "resolution_type": "revert"}),
    )
    .await;
    assert_eq!(
        (illegal.status.as_u16(), illegal.code()),
        (409, "illegal_transition")
    );
    assert!(
        illegal.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("acknowledged"),
        "{}",
        illegal.body
    );
    // INC-010/011.
    let patched = app
        .patch(
            &format!("/api/v1/incidents/{id}"),
            &acme.admin,
            &json!({"owner_user_id": developer.user_id, "ticket_ref": "OPS-42"}),
        )
        .await;
    assert_eq!(
        (
            patched.body["owner_user_id"].as_str(),
            patched.body["ticket_ref"].as_str()
        ),
        (
            developer.user_id.map(|u| u.to_string()).as_deref(),
            Some("OPS-42")
        ),
        "{}",
        patched.body
    );
    let acked = transition(&app, &developer, &id, json!({"to": "acknowledged"})).await;
    assert_eq!(
        acked.body["incident"]["status"], "acknowledged",
        "{}",
        acked.body
    );
    // APPR-004: a TTL extension.
    let extended = app
        .post(
            &format!("/api/v1/incidents/{id}/extend"),
            &developer,
            &json!({"hours": 12}),
        )
        .await;
    assert_eq!(extended.status, 200, "{}", extended.body);
    assert!(extended.body["incident"]["expires_at"].as_str() > incident["expires_at"].as_str());

    // APPR-001..003: reconciling needs an approval; never the requester's own.
    let asked = app
        .post(
            &format!("/api/v1/incidents/{id}/reconcile"),
            &developer,
            &json!({"resolution": "revert"}),
        )
        .await;
    assert_eq!(
        (asked.status.as_u16(), asked.body["result"].as_str()),
        (202, Some("approval_required")),
        "{}",
        asked.body
    );
    let approval = asked.body["approval"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let not_approver = app
        .post(
            &format!("/api/v1/drift-approvals/{approval}/approve"),
            &developer,
            &json!({}),
        )
        .await;
    assert_eq!(
        (not_approver.status.as_u16(), not_approver.code()),
        (403, "not_an_approver")
    );
    let approved = app
        .post(
            &format!("/api/v1/drift-approvals/{approval}/approve"),
            &acme.admin,
            &json!({"comment": "revert it"}),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let run_id: Uuid = approved.body["run"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, run_id, RunStatus::Succeeded).await;
    let twice = app
        .post(
            &format!("/api/v1/drift-approvals/{approval}/approve"),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(twice.status, 409);
    // The revert put the canonical content back.
    let now = prod_n8n
        .workflow(&prod_ids[0])
        .map(|w| domain::workflow::content_hash(&w))
        .unwrap_or_default();
    assert_eq!(
        now, canonical_hash,
        "revert restores the canonical content hash"
    );
    let reconciled = app
        .get(&format!("/api/v1/incidents/{id}"), &acme.admin)
        .await
        .body;
    assert_eq!(reconciled["status"], "reconciled", "{reconciled}");
    assert_eq!(reconciled["artifacts"][0]["resolution"], "revert");
    assert_eq!(reconciled["approvals"][0]["status"], "approved");
    // A reconciled incident's drift is gone: the environment is no longer degraded by it, and
    // the dashboard no longer counts it (it waits only to be closed).
    let overview = app
        .get("/api/v1/observability/overview", &acme.admin)
        .await
        .body;
    let prod_health = overview["environments"]
        .as_array()
        .and_then(|envs| envs.iter().find(|e| e["environment_id"] == json!(prod)))
        .cloned()
        .unwrap_or_default();
    assert_eq!(prod_health["open_incidents"], 0, "{prod_health}");
    assert_ne!(prod_health["status"], "degraded", "{prod_health}");
    // … nor does it hold promotions back ("reconcile them first" was done).
    let preview = app
        .post(
            "/api/v1/promotions/preview",
            &acme.admin,
            &json!({"pipeline_id": pipeline.body["id"], "stage_index": 0, "workflow_ids": [dev_ids[1]]}),
        )
        .await;
    let gates = preview.body["gates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let gate = |name: &str| {
        gates
            .iter()
            .find(|g| g["gate"] == name)
            .map(|g| g["status"].clone())
            .unwrap_or_default()
    };
    assert_eq!(gate("requireCleanDrift"), "pass", "{}", preview.body);
    assert!(
        gate("driftPolicy").is_null() || gate("driftPolicy") == "pass",
        "{}",
        preview.body
    );
    let closed = transition(
        &app,
        &acme.admin,
        &id,
        json!({"to": "closed", "resolution_notes": "reverted"}),
    )
    .await;
    assert_eq!(
        closed.body["incident"]["status"], "closed",
        "{}",
        closed.body
    );
    assert_eq!(closed.body["incident"]["resolution_type"], "revert");
    let audit: i64 =
        sqlx::query_scalar("select count(*) from audit_logs where action like 'drift.%'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or(0);
    assert!(audit >= 6, "APPR-005: {audit}");
    let clean = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/drift-check"),
        Some(&json!({"refresh": false})),
    )
    .await;
    assert_eq!(clean["drifted"], 0, "{clean}");
    // Each step of the story became an alert for the notification rules (NOTIF-009), oldest
    // first: drift found, an incident, acknowledged, reconciled, closed, and back in sync.
    let alerts: Vec<String> = alert_types(&app, &acme).await;
    assert_eq!(
        alerts,
        [
            "drift.detected",
            "incident.created",
            "incident.acknowledged",
            "incident.resolved",
            "drift.resolved"
        ],
        "{alerts:?}"
    );
}

/// The tenant's alert history, oldest first.
async fn alert_types(app: &TestApp, t: &TenantFixture) -> Vec<String> {
    let mut types: Vec<String> = app
        .get("/api/v1/notifications/alerts?limit=200", &t.admin)
        .await
        .body["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["event_type"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    types.reverse();
    types
}

// POL-002 SLA: an expired incident is flagged and escalated; POL-004 blocks promotions then;
// DRIFT-004 untracked production workflows; the `acknowledge` resolution accepts the drift.
#[tokio::test]
async fn expired_incidents_escalate_and_accepted_drift_stays_quiet() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let prod_ids = prod_n8n.seed_workflows(2, 3);
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
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    sync(&app, &acme, prod).await;
    run(
        &app,
        &acme,
        "/api/v1/canonical/onboard",
        Some(&json!({"items": [{"environment_id": prod, "workflow_id": prod_ids[0]}]})),
    )
    .await;
    // prod_ids[1] is untracked in production.
    let found = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/drift-check"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(found["untracked"], 1, "{found}");
    let open = incidents(&app, &acme, "?open=true").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["affected"][0]["kind"], "untracked", "DRIFT-004");
    assert_eq!(open[0]["severity"], "high");
    let id = open[0]["id"].as_str().unwrap_or_default().to_owned();

    // Past its TTL: the SLA sweep flags and escalates it, once.
    sqlx::query(
        "update drift_incidents set expires_at = now() - interval '1 minute' where id = $1",
    )
    .bind(id.parse::<Uuid>().unwrap_or_default())
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let sla = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::of::<jobs::drift::Sla>(
            "system".to_owned(),
            &jobs::drift::SlaInput::default(),
        ),
    )
    .await;
    wait_for(&app.db.pool, sla, RunStatus::Succeeded).await;
    let escalated = app
        .get(&format!("/api/v1/incidents/{id}"), &acme.admin)
        .await
        .body;
    assert_eq!(
        (
            escalated["expired"].as_bool(),
            escalated["severity"].as_str()
        ),
        (Some(true), Some("critical")),
        "{escalated}"
    );
    let expired = incidents(&app, &acme, "?expired=true&severity=critical").await;
    assert_eq!(expired.len(), 1, "INC-007 filters");
    // POL-004: the expired incident blocks promotions into prod.
    let blocked = domain::drift::blocking(&app.db.pool, acme.id, prod)
        .await
        .unwrap_or_default();
    assert!(blocked.iter().any(|b| b.contains("TTL")), "{blocked:?}");

    // Accept the drift as it is: acknowledged, reconciled by `acknowledge`, closed.
    let acked = transition(&app, &acme.admin, &id, json!({"to": "acknowledged"})).await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    let started = app
        .post(
            &format!("/api/v1/incidents/{id}/reconcile"),
            &acme.admin,
            &json!({"resolution": "acknowledge"}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.body);
    let rid: Uuid = started.body["run"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, rid, RunStatus::Succeeded).await;
    let closed = transition(&app, &acme.admin, &id, json!({"to": "closed"})).await;
    assert_eq!(
        closed.body["incident"]["status"], "closed",
        "{}",
        closed.body
    );
    let quiet = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/drift-check"),
        Some(&json!({"refresh": false})),
    )
    .await;
    assert_eq!(
        quiet["incidents_opened"], 0,
        "accepted drift is not reported again: {quiet}"
    );
    eventually(
        "no open incident",
        std::time::Duration::from_secs(5),
        || async {
            incidents(&app, &acme, "?open=true")
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    // POL-007: a warning before expiry; POL-008..010: retention of closed incidents, artifacts
    // and decided approvals.
    let reopened = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/drift-check"),
        Some(&json!({"refresh": false})),
    )
    .await;
    assert_eq!(reopened["incidents_opened"], 0, "{reopened}");
    sqlx::query("update drift_incidents set closed_at = now() - interval '400 days' where id = $1")
        .bind(id.parse::<Uuid>().unwrap_or_default())
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("update reconciliation_artifacts set created_at = now() - interval '400 days'")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    prod_n8n.modify_workflow(&prod_ids[0], |wf| {
        wf["settings"] = json!({"executionTimeout": 60});
    });
    sync(&app, &acme, prod).await;
    run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/drift-check"),
        Some(&json!({"refresh": false})),
    )
    .await;
    let fresh = incidents(&app, &acme, "?open=true").await;
    assert_eq!(fresh.len(), 1, "a new drift opens a new incident");
    sqlx::query("update drift_incidents set expires_at = now() + interval '1 hour' where status <> 'closed'")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sla = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::of::<jobs::drift::Sla>(
            "system".to_owned(),
            &jobs::drift::SlaInput::default(),
        )
        .idempotency_key("second"),
    )
    .await;
    wait_for(&app.db.pool, sla, RunStatus::Succeeded).await;
    let out: Value = sqlx::query_scalar("select output from engine_runs where id = $1")
        .bind(sla)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(
        (out["warned"].as_i64(), out["pruned"].as_i64()),
        (Some(1), Some(2)),
        "{out}"
    );
    // POL-007: the warning is an alert for the notification rules.
    assert_eq!(
        alert_types(&app, &acme).await.last().map(String::as_str),
        Some("incident.expiring")
    );
    assert_eq!(
        app.get(&format!("/api/v1/incidents/{id}"), &acme.admin)
            .await
            .status,
        404,
        "pruned"
    );

    // Another tenant sees none of it.
    let other = app.tenant("other").await;
    assert_eq!(
        app.get(&format!("/api/v1/incidents/{id}"), &other.admin)
            .await
            .status,
        404
    );
}

// ENV-011: an environment's drift handling mode decides what an open incident blocks and what
// closing it needs
#[tokio::test]
async fn drift_modes_decide_what_blocks_promotions_and_what_closing_needs() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let mut incidents = Vec::new();
    for mode in ["warn_only", "manual_override", "require_attestation"] {
        let env = environment(&app, &acme, mode, "production", &n8n).await;
        let changed = app
            .patch(
                &format!("/api/v1/environments/{env}"),
                &acme.admin,
                &json!({"drift_mode": mode}),
            )
            .await;
        assert_eq!(changed.status, 200, "{}", changed.body);
        assert_eq!(changed.body["drift_mode"], mode);
        let id: Uuid = sqlx::query_scalar(
            "insert into drift_incidents (id, tenant_id, environment_id, status, severity, title, expires_at) \
             values (gen_random_uuid(), $1, $2, 'detected', 'medium', 'changed in production', now() + interval '1 day') \
             returning id",
        )
        .bind(acme.id)
        .bind(env)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        incidents.push((mode, env, id));
    }
    let blocking = |env: Uuid| {
        let pool = app.db.pool.clone();
        async move {
            domain::drift::blocking(&pool, acme.id, env)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let [
        (_, warn, _),
        (_, manual, manual_incident),
        (_, attest, attest_incident),
    ] = incidents[..]
    else {
        panic!("three environments");
    };
    assert!(blocking(warn).await.is_empty(), "warn_only only warns");
    let reasons = blocking(manual).await;
    assert!(
        reasons.len() == 1 && reasons[0].contains("manual override"),
        "{reasons:?}"
    );
    let reasons = blocking(attest).await;
    assert!(
        reasons.len() == 1 && reasons[0].contains("attestation"),
        "{reasons:?}"
    );

    // manual_override: acknowledging lifts the block.
    let acked = transition(
        &app,
        &acme.admin,
        &manual_incident.to_string(),
        json!({"to": "acknowledged"}),
    )
    .await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    assert!(blocking(manual).await.is_empty());

    // require_attestation: acknowledging does not; closing needs notes, and then it is lifted.
    let id = attest_incident.to_string();
    let acked = transition(&app, &acme.admin, &id, json!({"to": "acknowledged"})).await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    assert_eq!(blocking(attest).await.len(), 1);
    let bare = transition(
        &app,
        &acme.admin,
        &id,
        json!({"to": "closed", "resolution_type": "acknowledge"}),
    )
    .await;
    assert_eq!(bare.status, 422, "{}", bare.body);
    assert!(
        bare.body.to_string().contains("resolution_notes"),
        "{}",
        bare.body
    );
    let attested = transition(
        &app,
        &acme.admin,
        &id,
        json!({"to": "closed", "resolution_type": "acknowledge",
               "resolution_notes": "hotfix applied by on-call, ticket OPS-12"}),
    )
    .await;
    assert_eq!(attested.status, 200, "{}", attested.body);
    assert!(blocking(attest).await.is_empty());
}

/// Puts every provider of `t` on `plan`, as a platform admin's manual assignment would.
async fn put_on_plan(app: &TestApp, t: &TenantFixture, plan: &str) {
    let moved = sqlx::query(
        "update tenant_subscriptions s set plan_id = p.id, source = 'manual', updated_at = now() \
         from plans p where s.tenant_id = $1 and p.provider = s.provider and p.key = $2",
    )
    .bind(t.id)
    .bind(plan)
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .rows_affected();
    assert!(moved > 0, "no subscription moved to {plan}");
}

/// The one open incident of `env`: (severity, TTL in minutes from its creation, expired).
async fn open_incident(app: &TestApp, env: Uuid) -> (String, i64, bool) {
    let rows: Vec<(String, i64, bool)> = sqlx::query_as(
        "select severity, (extract(epoch from expires_at - created_at) / 60)::bigint, expired \
         from drift_incidents where environment_id = $1 and status <> 'closed'",
    )
    .bind(env)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let [row] = &rows[..] else {
        panic!("one open incident in {env}: {rows:?}");
    };
    row.clone()
}

/// The alerts raised for `env`, oldest first.
async fn env_alerts(app: &TestApp, env: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "select event_type from alert_events where environment_id = $1 order by created_at, id",
    )
    .bind(env)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The tenant's logged refusals: (feature, provider, user, action).
async fn denials(
    app: &TestApp,
    t: &TenantFixture,
) -> Vec<(String, Option<String>, Option<Uuid>, String)> {
    sqlx::query_as(
        "select feature, provider, user_id, action from feature_denials where tenant_id = $1 order by id",
    )
    .bind(t.id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

// ENT-001, ENT-011, POL-001..005 after a downgrade: a drift policy set on Enterprise stops
// governing once the plan no longer includes it (the defaults apply, as if none were set);
// detection goes on, and the refusal is logged once per check, not per workflow.
#[tokio::test]
async fn a_drift_policy_stops_governing_once_the_plan_no_longer_includes_it() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    // Three workflows nobody tracks, in production (DRIFT-004): each check finds them.
    n8n.seed_workflows(3, 3);
    let before = environment(&app, &acme, "Prod A", "production", &n8n).await;
    let after = environment(&app, &acme, "Prod B", "production", &n8n).await;
    let mut policy = app.get("/api/v1/drift/policy", &acme.admin).await.body;
    policy["ttl_high_hours"] = json!(2);
    policy["notify_min_severity"] = json!("critical");
    policy["block_on_active_drift"] = json!(true);
    policy["sla_enforcement"] = json!(false);
    policy["approval_required_for"] = json!(["acknowledge", "extend_ttl"]);
    let set = app.put("/api/v1/drift/policy", &acme.admin, &policy).await;
    assert_eq!(set.status, 200, "{}", set.body);
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    let check = |env: Uuid| {
        let (app, acme) = (&app, &acme);
        async move {
            run(
                app,
                acme,
                &format!("/api/v1/environments/{env}/drift-check"),
                Some(&json!({})),
            )
            .await
        }
    };

    // On Enterprise the policy governs: a 2-hour TTL, no incident.created below critical,
    // promotions blocked by active drift.
    let found = check(before).await;
    assert_eq!(
        (
            found["untracked"].as_i64(),
            found["incidents_opened"].as_i64()
        ),
        (Some(3), Some(1)),
        "{found}"
    );
    let (severity, ttl, _) = open_incident(&app, before).await;
    assert_eq!((severity.as_str(), ttl), ("high", 2 * 60));
    assert_eq!(env_alerts(&app, before).await, ["drift.detected"]);
    let blocked = domain::drift::blocking(&app.db.pool, acme.id, before)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        blocked.len() == 1 && blocked[0].contains("is active"),
        "{blocked:?}"
    );
    assert_eq!(denials(&app, &acme).await, []);

    // An extension asked for (and waiting for its approval) on Enterprise…
    let incident_before: Uuid = sqlx::query_scalar(
        "select id from drift_incidents where environment_id = $1 order by created_at limit 1",
    )
    .bind(before)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let asked = app
        .post(
            &format!("/api/v1/incidents/{incident_before}/extend"),
            &acme.admin,
            &json!({"hours": 12}),
        )
        .await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    let approval = asked.body["approval"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Downgraded to Pro (no drift policies, no drift SLA): the policy is kept but governs nothing.
    put_on_plan(&app, &acme, "pro").await;
    // …is not granted once the plan has no drift SLA.
    let approver = app.member(&acme, Role::Admin).await;
    let granted = app
        .post(
            &format!("/api/v1/drift-approvals/{approval}/approve"),
            &approver,
            &json!({}),
        )
        .await;
    assert_eq!(
        (granted.status.as_u16(), granted.code()),
        (403, "feature_not_in_plan"),
        "{}",
        granted.body
    );
    let found = check(after).await;
    assert_eq!(
        (
            found["workflows"].as_i64(),
            found["untracked"].as_i64(),
            found["incidents_opened"].as_i64()
        ),
        (Some(3), Some(3), Some(1)),
        "detection is in every plan: {found}"
    );
    let (severity, ttl, _) = open_incident(&app, after).await;
    assert_eq!(
        (severity.as_str(), ttl),
        ("high", 48 * 60),
        "POL-001: the default TTL of a high incident"
    );
    assert_eq!(
        env_alerts(&app, after).await,
        ["drift.detected", "incident.created"],
        "POL-006: the default threshold (high) notifies"
    );
    for env in [before, after] {
        let blocked = domain::drift::blocking(&app.db.pool, acme.id, env)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(blocked, Vec::<String>::new(), "POL-005 is the policy's");
    }
    assert_eq!(
        denials(&app, &acme).await,
        [
            (
                "drift_sla".to_owned(),
                Some("n8n".to_owned()),
                approver.user_id,
                "incident.extend".to_owned()
            ),
            (
                "drift_policies".to_owned(),
                Some("n8n".to_owned()),
                None,
                "drift.check".to_owned()
            )
        ],
        "the refused approval, and one refusal for the check of three workflows, by no person"
    );
    // APPR-001: acknowledging needed an approval under the policy; on Pro it does not.
    let incident_of = |env: Uuid| {
        let app = &app;
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "select id from drift_incidents where environment_id = $1 order by created_at limit 1",
            )
            .bind(env)
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string()
        }
    };
    let ack = transition(
        &app,
        &acme.admin,
        &incident_of(after).await,
        json!({"to": "acknowledged"}),
    )
    .await;
    assert_eq!(ack.status, 200, "no approval asked on Pro: {}", ack.body);
    put_on_plan(&app, &acme, "enterprise").await;
    let ack = transition(
        &app,
        &acme.admin,
        &incident_of(before).await,
        json!({"to": "acknowledged"}),
    )
    .await;
    assert_eq!(ack.status, 202, "the policy's approval again: {}", ack.body);
    put_on_plan(&app, &acme, "pro").await;

    // POL-002: the SLA sweep escalates expired incidents, as the defaults do, though the stored
    // policy turned enforcement off; it logs nothing (it runs for every tenant).
    sqlx::query(
        "update drift_incidents set expires_at = now() - interval '1 minute' where tenant_id = $1",
    )
    .bind(acme.id)
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let sla = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::of::<jobs::drift::Sla>(
            "system".to_owned(),
            &jobs::drift::SlaInput::default(),
        ),
    )
    .await;
    wait_for(&app.db.pool, sla, RunStatus::Succeeded).await;
    for env in [before, after] {
        let (severity, _, expired) = open_incident(&app, env).await;
        assert_eq!((severity.as_str(), expired), ("critical", true), "{env}");
    }
    assert_eq!(denials(&app, &acme).await.len(), 2);

    // Back on Enterprise, the kept policy governs again: no SLA enforcement, and the check logs
    // nothing.
    put_on_plan(&app, &acme, "enterprise").await;
    assert_eq!(
        app.get("/api/v1/drift/policy", &acme.admin).await.body["ttl_high_hours"],
        2
    );
    check(after).await;
    assert_eq!(denials(&app, &acme).await.len(), 2);
    sqlx::query(
        "update drift_incidents set expired = false, severity = 'high', \
         expires_at = now() - interval '1 minute' where environment_id = $1",
    )
    .bind(after)
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let sla = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::of::<jobs::drift::Sla>(
            "system".to_owned(),
            &jobs::drift::SlaInput::default(),
        )
        .idempotency_key("after the upgrade"),
    )
    .await;
    wait_for(&app.db.pool, sla, RunStatus::Succeeded).await;
    let (severity, _, expired) = open_incident(&app, after).await;
    assert_eq!(
        (severity.as_str(), expired),
        ("high", false),
        "POL-002 off, as the policy says"
    );
}
