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

/// The title of the environment's one open incident.
async fn open_title(app: &TestApp, t: &TenantFixture) -> String {
    let open = incidents(app, t, "?open=true").await;
    assert_eq!(open.len(), 1, "one open incident: {open:?}");
    open[0]["title"].as_str().unwrap_or_default().to_owned()
}

// DRIFT-004, INC-001, INC-008
#[tokio::test]
async fn incident_titles_count_untracked_workflows_apart_and_follow_redetection() {
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
    let check = || async {
        run(
            &app,
            &acme,
            &format!("/api/v1/environments/{prod}/drift-check"),
            Some(&json!({"refresh": true})),
        )
        .await
    };

    // Two workflows made in production that nobody tracks, and one hotfix of a tracked one.
    for name in ["Prod-only export", "Prod-only cleanup"] {
        prod_n8n.insert_workflow(json!({"name": name, "nodes": [
            {"name": "Set", "type": "n8n-nodes-base.set", "typeVersion": 3, "position": [0, 0], "parameters": {}}],
            "connections": {}, "settings": {}}));
    }
    prod_n8n.modify_workflow(&prod_ids[0], |wf| {
        wf["nodes"][0]["name"] = json!("Renamed in production");
    });
    let first = check().await;
    assert_eq!(
        (first["drifted"].as_i64(), first["untracked"].as_i64()),
        (Some(1), Some(2)),
        "{first}"
    );
    assert_eq!(
        open_title(&app, &acme).await,
        "Drift in Prod: 1 workflow(s) changed outside WorkflowOps, 2 untracked"
    );

    // A second hotfix: the same incident, its title follows what the check found.
    prod_n8n.modify_workflow(&prod_ids[1], |wf| {
        wf["nodes"][0]["name"] = json!("Also renamed in production");
    });
    let second = check().await;
    assert_eq!(
        (
            second["incidents_opened"].as_i64(),
            second["incidents_updated"].as_i64()
        ),
        (Some(0), Some(1)),
        "{second}"
    );
    assert_eq!(
        open_title(&app, &acme).await,
        "Drift in Prod: 2 workflow(s) changed outside WorkflowOps, 2 untracked"
    );
}

// PROMO-003, DRIFT reconciliation: a revert is WorkflowOps' own write to the target; the next
// promotion into it does not take it for a hotfix.
#[tokio::test]
async fn a_drift_revert_is_not_a_target_hotfix_for_the_next_promotion() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let dev_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let dev_ids = dev_n8n.seed_workflows(1, 4);
    for i in 1..=3 {
        prod_n8n.add_credential(&format!("Seed basic auth {i}"), "httpBasicAuth");
    }
    let dev = environment(&app, &acme, "Dev", "dev", &dev_n8n).await;
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    let repo = bare_repo();
    let url = repo.0.display().to_string();
    let put = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/canonical/repository",
            Some(&acme.admin.token),
            Some(&json!({"url": url, "auth": "none"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    sync(&app, &acme, dev).await;
    sync(&app, &acme, prod).await;
    let onboarded = run(
        &app,
        &acme,
        "/api/v1/canonical/onboard",
        Some(&json!({"items": [{"environment_id": dev, "workflow_id": dev_ids[0]}]})),
    )
    .await;
    let canonical = onboarded["onboarded"][0]["canonical_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Released to prod, which is then linked to the canonical workflow.
    let pipeline = app
        .post(
            "/api/v1/pipelines",
            &acme.admin,
            &json!({"name": "release", "provider": "n8n", "stages": [
                {"source_environment_id": dev, "target_environment_id": prod}]}),
        )
        .await;
    assert_eq!(pipeline.status, 201, "{}", pipeline.body);
    let body =
        json!({"pipeline_id": pipeline.body["id"], "stage_index": 0, "workflow_ids": dev_ids});
    let started = app.post("/api/v1/promotions", &acme.admin, &body).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let promotion_run: Uuid = started.body["run_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, promotion_run, RunStatus::Succeeded).await;
    let copy = app
        .get(
            &format!(
                "/api/v1/promotions/{}",
                started.body["id"].as_str().unwrap_or_default()
            ),
            &acme.admin,
        )
        .await
        .body["results"][0]["target_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // The canonical version moves on in Git; prod is hotfixed by hand, then reverted to it.
    let path = format!("canonical/workflows/{canonical}.json");
    let mut file = super::git::read(&repo, &path);
    file["nodes"][1]["parameters"]["release"] = json!("from git");
    super::canonical::commit_file(&url, &path, &file);
    run(&app, &acme, "/api/v1/canonical/sync", None).await;
    prod_n8n.modify_workflow(&copy, |wf| {
        wf["nodes"][1]["parameters"]["hotfix"] = json!(true);
    });
    let checked = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/drift-check"),
        Some(&json!({"refresh": true})),
    )
    .await;
    assert_eq!(checked["drifted"], 1, "{checked}");
    let incident = incidents(&app, &acme, "?open=true").await[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let acked = transition(&app, &acme.admin, &incident, json!({"to": "acknowledged"})).await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    let revert = app
        .post(
            &format!("/api/v1/incidents/{incident}/reconcile"),
            &acme.admin,
            &json!({"resolution": "revert"}),
        )
        .await;
    assert!(revert.status.is_success(), "{}", revert.body);
    let revert_run: Uuid = revert.body["run"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", revert.body));
    wait_for(&app.db.pool, revert_run, RunStatus::Succeeded).await;
    assert_eq!(
        prod_n8n
            .workflow(&copy)
            .map(|w| w["nodes"][1]["parameters"]["release"].clone()),
        Some(json!("from git"))
    );

    // Releasing dev's version again replaces what the revert wrote: a plain modification.
    let preview = app
        .post("/api/v1/promotions/preview", &acme.admin, &body)
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(
        preview.body["items"][0]["status"], "MODIFIED",
        "{}",
        preview.body
    );
}

/// A production environment whose workflows nobody tracks, with the one incident a drift check
/// opened for them (DRIFT-004), and a worker to run what the tests start.
struct UntrackedIncident {
    acme: TenantFixture,
    id: String,
    _n8n: N8nEmulator,
    _worker: TestWorker,
}

/// Stores the tenant's drift policy with `change` applied to the current one.
async fn set_policy(app: &TestApp, t: &TenantFixture, change: impl FnOnce(&mut Value)) {
    let mut policy = app.get("/api/v1/drift/policy", &t.admin).await.body;
    change(&mut policy);
    let set = app.put("/api/v1/drift/policy", &t.admin, &policy).await;
    assert_eq!(set.status, 200, "{}", set.body);
}

/// Production with two untracked workflows, the policy changed by `policy`, then checked.
async fn untracked_incident(app: &TestApp, policy: impl FnOnce(&mut Value)) -> UntrackedIncident {
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    n8n.seed_workflows(2, 3);
    let prod = environment(app, &acme, "Prod", "production", &n8n).await;
    let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    sync(app, &acme, prod).await;
    set_policy(app, &acme, policy).await;
    let found = run(
        app,
        &acme,
        &format!("/api/v1/environments/{prod}/drift-check"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(found["untracked"], 2, "{found}");
    let id = incidents(app, &acme, "?open=true")
        .await
        .first()
        .and_then(|i| i["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    UntrackedIncident {
        acme,
        id,
        _n8n: n8n,
        _worker: worker,
    }
}

async fn incident(app: &TestApp, t: &TenantFixture, id: &str) -> Value {
    let res = app.get(&format!("/api/v1/incidents/{id}"), &t.admin).await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
}

/// The tenant's `drift.*` audit rows whose action starts with `prefix`: (action, target id).
async fn drift_audit(app: &TestApp, t: &TenantFixture, prefix: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "select action, coalesce(target_id, '') from audit_logs \
         where tenant_id = $1 and starts_with(action, $2) order by occurred_at, id",
    )
    .bind(t.id)
    .bind(prefix)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

// INC-004, INC-005: an acknowledged incident is stabilized; `reconciled` is not a transition
// (it would skip the approval the policy requires for `reconcile` and the artifact), only the
// reconcile endpoint gets there, from stabilized too.
#[tokio::test]
async fn a_stabilized_incident_is_reconciled_only_through_the_reconcile_endpoint() {
    let app = TestApp::spawn().await;
    let s = untracked_incident(&app, |p| {
        p["approval_required_for"] = json!(["reconcile"]);
    })
    .await;
    let (acme, id) = (&s.acme, s.id.as_str());
    let acked = transition(&app, &acme.admin, id, json!({"to": "acknowledged"})).await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    let early = transition(&app, &acme.admin, id, json!({"to": "reconciled"})).await;
    assert_eq!(
        (early.status.as_u16(), early.code()),
        (409, "reconcile_required"),
        "{}",
        early.body
    );

    // INC-004: stabilized.
    let stabilized = transition(&app, &acme.admin, id, json!({"to": "stabilized"})).await;
    assert_eq!(
        (
            stabilized.status.as_u16(),
            stabilized.body["result"].as_str()
        ),
        (200, Some("done")),
        "{}",
        stabilized.body
    );
    let now = &stabilized.body["incident"];
    assert_eq!(now["status"], "stabilized", "{now}");
    assert!(now["stabilized_at"].is_string(), "{now}");
    assert_eq!(now["allowed_next"], json!(["reconciled"]), "{now}");

    // The loophole: straight to reconciled, then closed with any resolution.
    let skipped = transition(&app, &acme.admin, id, json!({"to": "reconciled"})).await;
    assert_eq!(
        (skipped.status.as_u16(), skipped.code()),
        (409, "reconcile_required"),
        "{}",
        skipped.body
    );
    let message = skipped.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("POST /api/v1/incidents/{id}/reconcile")),
        "{message}"
    );
    let after = incident(&app, acme, id).await;
    assert_eq!(after["status"], "stabilized", "{after}");
    assert_eq!(after["artifacts"], json!([]), "{after}");
    assert_eq!(after["approvals"], json!([]), "{after}");
    let closed = transition(
        &app,
        &acme.admin,
        id,
        json!({"to": "closed", "resolution_type": "promote"}),
    )
    .await;
    assert_eq!(closed.status, 409, "{}", closed.body);

    // The reconcile endpoint still works from stabilized: approval, run, artifact.
    let asked = app
        .post(
            &format!("/api/v1/incidents/{id}/reconcile"),
            &acme.admin,
            &json!({"resolution": "acknowledge"}),
        )
        .await;
    assert_eq!(
        (asked.status.as_u16(), asked.body["result"].as_str()),
        (202, Some("approval_required")),
        "{}",
        asked.body
    );
    let approver = app.member(acme, Role::Admin).await;
    let approved = app
        .post(
            &format!(
                "/api/v1/drift-approvals/{}/approve",
                asked.body["approval"]["id"].as_str().unwrap_or_default()
            ),
            &approver,
            &json!({}),
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let run_id: Uuid = approved.body["run"]["id"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, run_id, RunStatus::Succeeded).await;
    let reconciled = incident(&app, acme, id).await;
    assert_eq!(
        (
            reconciled["status"].as_str(),
            reconciled["resolution_type"].as_str(),
            reconciled["artifacts"][0]["resolution"].as_str()
        ),
        (Some("reconciled"), Some("acknowledge"), Some("acknowledge")),
        "{reconciled}"
    );
    let closed = transition(&app, &acme.admin, id, json!({"to": "closed"})).await;
    assert_eq!(
        closed.body["incident"]["status"], "closed",
        "{}",
        closed.body
    );
}

// APPR-002, APPR-003, APPR-005: acknowledge, extend_ttl and close behind approvals; an approved
// request is carried out, a rejected one is not; nobody decides their own request; each step
// is in the audit trail under its own action.
#[tokio::test]
async fn approved_drift_actions_are_carried_out_and_rejected_ones_are_not() {
    let app = TestApp::spawn().await;
    let s = untracked_incident(&app, |p| {
        p["approval_required_for"] = json!(["acknowledge", "extend_ttl", "close"]);
        p["approver_roles"] = json!(["admin"]);
    })
    .await;
    let (acme, id) = (&s.acme, s.id.as_str());
    let developer = app.member(acme, Role::Developer).await;
    let approver = app.member(acme, Role::Admin).await;
    let approval_id = |r: &workflowops_tests::app::Resp| {
        r.body["approval"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let decide = |approval: String, verdict: &'static str, who: workflowops_tests::Caller| {
        let app = &app;
        async move {
            app.post(
                &format!("/api/v1/drift-approvals/{approval}/{verdict}"),
                &who,
                &json!({}),
            )
            .await
        }
    };

    // Acknowledge: asked by an admin, who cannot approve it; another admin does.
    let asked = transition(&app, &acme.admin, id, json!({"to": "acknowledged"})).await;
    assert_eq!(
        (asked.status.as_u16(), asked.body["result"].as_str()),
        (202, Some("approval_required")),
        "{}",
        asked.body
    );
    assert_eq!(asked.body["approval"]["action"], "acknowledge");
    let ack = approval_id(&asked);
    let own = decide(ack.clone(), "approve", acme.admin.clone()).await;
    assert_eq!(
        (own.status.as_u16(), own.code()),
        (403, "self_approval"),
        "{}",
        own.body
    );
    assert_eq!(incident(&app, acme, id).await["status"], "detected");
    let done = decide(ack.clone(), "approve", approver.clone()).await;
    assert_eq!(
        (
            done.status.as_u16(),
            done.body["result"].as_str(),
            done.body["approval"]["status"].as_str(),
            done.body["incident"]["status"].as_str()
        ),
        (200, Some("done"), Some("approved"), Some("acknowledged")),
        "{}",
        done.body
    );

    // Extend the TTL: rejected first (nothing changes), approved the second time.
    let before = incident(&app, acme, id).await["expires_at"].clone();
    let asked = app
        .post(
            &format!("/api/v1/incidents/{id}/extend"),
            &developer,
            &json!({"hours": 12}),
        )
        .await;
    assert_eq!(asked.status, 202, "{}", asked.body);
    let refused = approval_id(&asked);
    let rejected = decide(refused.clone(), "reject", approver.clone()).await;
    assert_eq!(
        (
            rejected.status.as_u16(),
            rejected.body["result"].as_str(),
            rejected.body["approval"]["status"].as_str()
        ),
        (200, Some("rejected"), Some("rejected")),
        "{}",
        rejected.body
    );
    assert_eq!(rejected.body["run"], Value::Null);
    assert_eq!(incident(&app, acme, id).await["expires_at"], before);
    let late = decide(refused.clone(), "approve", approver.clone()).await;
    assert_eq!(late.status, 409, "a rejected request stays rejected");
    assert_eq!(incident(&app, acme, id).await["expires_at"], before);
    let asked = app
        .post(
            &format!("/api/v1/incidents/{id}/extend"),
            &developer,
            &json!({"hours": 12}),
        )
        .await;
    let extend = approval_id(&asked);
    let done = decide(extend.clone(), "approve", approver.clone()).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let parse = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{v}: {e}"))
    };
    assert_eq!(
        (parse(&done.body["incident"]["expires_at"]) - parse(&before)).num_hours(),
        12,
        "{}",
        done.body
    );

    // Close: asked, not carried out until approved.
    let asked = transition(
        &app,
        &developer,
        id,
        json!({"to": "closed", "resolution_type": "acknowledge", "resolution_notes": "accepted"}),
    )
    .await;
    assert_eq!(
        (
            asked.status.as_u16(),
            asked.body["approval"]["action"].as_str()
        ),
        (202, Some("close")),
        "{}",
        asked.body
    );
    assert_eq!(incident(&app, acme, id).await["status"], "acknowledged");
    let close = approval_id(&asked);
    let done = decide(close.clone(), "approve", approver.clone()).await;
    assert_eq!(
        (
            done.body["incident"]["status"].as_str(),
            done.body["incident"]["resolution_type"].as_str()
        ),
        (Some("closed"), Some("acknowledge")),
        "{}",
        done.body
    );
    let statuses: Vec<(String, String)> = incident(&app, acme, id).await["approvals"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["id"].as_str().unwrap_or_default().to_owned(),
                a["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (approval, status) in [
        (&ack, "approved"),
        (&refused, "rejected"),
        (&extend, "approved"),
        (&close, "approved"),
    ] {
        assert!(
            statuses.contains(&(approval.clone(), status.to_owned())),
            "{approval} {status}: {statuses:?}"
        );
    }

    // APPR-005: the trail, step by step, each on the incident.
    let target = |action: &str| (action.to_owned(), id.to_owned());
    assert_eq!(
        drift_audit(&app, acme, "drift.approval_").await,
        [
            target("drift.approval_requested"),
            target("drift.approval_approved"),
            target("drift.approval_requested"),
            target("drift.approval_rejected"),
            target("drift.approval_requested"),
            target("drift.approval_approved"),
            target("drift.approval_requested"),
            target("drift.approval_approved"),
        ]
    );
    // What the approvals carried out, once each (nothing for the rejected one).
    let carried: Vec<(String, String)> = drift_audit(&app, acme, "drift.")
        .await
        .into_iter()
        .filter(|(a, t)| {
            t == id && !a.starts_with("drift.approval_") && a != "drift.incident_opened"
        })
        .collect();
    assert_eq!(
        carried,
        [
            target("drift.incident_transitioned"),
            target("drift.ttl_extended"),
            target("drift.incident_transitioned"),
        ]
    );
}

// POL-003: with automatic incidents off, a check still finds the drift, opens no incident and
// says so.
#[tokio::test]
async fn a_drift_check_opens_no_incident_when_the_policy_turns_them_off() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    n8n.seed_workflows(2, 3);
    let prod = environment(&app, &acme, "Prod", "production", &n8n).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    sync(&app, &acme, prod).await;
    set_policy(&app, &acme, |p| p["auto_create_incidents"] = json!(false)).await;
    let found = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/drift-check"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        (
            found["untracked"].as_i64(),
            found["incidents_opened"].as_i64(),
            found["incidents_updated"].as_i64()
        ),
        (Some(2), Some(0), Some(0)),
        "{found}"
    );
    assert_eq!(
        found["details"].as_array().map(Vec::len),
        Some(2),
        "{found}"
    );
    let note = found["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("no incident opened") && note.contains("auto_create_incidents"),
        "{found}"
    );
    assert!(incidents(&app, &acme, "").await.is_empty());
    let history = app
        .get(
            &format!("/api/v1/environments/{prod}/drift-checks"),
            &acme.admin,
        )
        .await;
    assert_eq!(history.body["items"][0]["note"], note, "{}", history.body);

    // Turned back on, the same drift opens one.
    set_policy(&app, &acme, |p| p["auto_create_incidents"] = json!(true)).await;
    let found = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/drift-check"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        (found["incidents_opened"].as_i64(), found["note"].clone()),
        (Some(1), Value::Null),
        "{found}"
    );
}

// POL-010: decided approvals older than the policy's retention are pruned; recent and pending
// ones are kept.
#[tokio::test]
async fn approvals_past_their_retention_are_pruned_and_recent_ones_kept() {
    let app = TestApp::spawn().await;
    let s = untracked_incident(&app, |p| {
        p["approval_required_for"] = json!(["acknowledge"]);
        p["approval_retention_days"] = json!(30);
    })
    .await;
    let (acme, id) = (&s.acme, s.id.as_str());
    let approver = app.member(acme, Role::Admin).await;
    let mut ids = Vec::new();
    for verdict in ["reject", "reject", "pending"] {
        let asked = transition(&app, &acme.admin, id, json!({"to": "acknowledged"})).await;
        assert_eq!(asked.status, 202, "{}", asked.body);
        let approval: Uuid = asked.body["approval"]["id"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_default();
        if verdict == "reject" {
            let decided = app
                .post(
                    &format!("/api/v1/drift-approvals/{approval}/reject"),
                    &approver,
                    &json!({}),
                )
                .await;
            assert_eq!(decided.status, 200, "{}", decided.body);
        }
        ids.push(approval);
    }
    let (old, recent, pending) = (ids[0], ids[1], ids[2]);
    // `old` was decided 31 days ago; the pending one was asked as long ago.
    sqlx::query("update drift_approvals set decided_at = now() - interval '31 days' where id = $1")
        .bind(old)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("update drift_approvals set created_at = now() - interval '31 days' where id = $1")
        .bind(pending)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut conn = app
        .db
        .pool
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pruned = domain::drift::prune(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pruned, 1);
    let left: Vec<Uuid> =
        sqlx::query_scalar("select id from drift_approvals where incident_id = $1 order by id")
            .bind(id.parse::<Uuid>().unwrap_or_default())
            .fetch_all(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(left, [recent, pending]);
}
