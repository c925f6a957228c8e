//! Make.com through the product (ENV-009, PROV-001): a team connected as an environment, its
//! scenarios synced into the catalog with hashes, graphs and connection references, promoted to
//! another team with their connections remapped (never with the source team's ids), a change
//! made in Make found as drift, and backups restored into the team they came from or, after the
//! environment moved, into another without the old team's ids.

use engine::RunStatus;
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::TestApp;
use workflowops_tests::engine_support::{TestWorker, eventually, wait_for};
use workflowops_tests::make::{MakeConfig, MakePeer};

use super::git::{backed_up, bare_repo, head_files, read, run};

/// A webhook feeding a Google Sheets row through `connection`, as Make's designer saves it.
fn blueprint(name: &str, connection: u64) -> Value {
    let hook = json!({
        "id": 1, "module": "gateway:CustomWebHook", "version": 1,
        "parameters": {"hook": 10, "maxResults": 1}, "mapper": {},
        "metadata": {"designer": {"x": 0, "y": 0}}
    });
    let sheets = json!({
        "id": 2, "module": "google-sheets:addRow", "version": 2,
        "parameters": {"__IMTCONN__": connection, "mode": "select"},
        "mapper": {"values": {"0": "{{1.order}}"}},
        "metadata": {
            "designer": {"x": 300, "y": 0},
            "restore": {"parameters": {"__IMTCONN__": {
                "label": "Sales Google", "data": {"scoped": "true", "connection": "google"}}}}
        }
    });
    json!({
        "name": name,
        "flow": [hook, sheets],
        "metadata": {"instant": true, "version": 1,
                     "scenario": {"roundtrips": 1, "maxErrors": 3, "autoCommit": true},
                     "designer": {"orphans": []}, "zone": "eu1.make.com"}
    })
}

fn id(v: &Value) -> Uuid {
    v["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no id in {v}"))
}

// ENV-009, PROV-001, PROMO-001, CRED-007, DRIFT-003 on Make
#[tokio::test]
async fn a_make_team_is_synced_promoted_to_another_team_and_checked_for_drift() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let make = MakePeer::start(MakeConfig::default()).await;
    let dev_team = make.team();
    let prod_team = make.add_team("Production");
    let dev_google = make.add_connection(dev_team, "Sales Google", "google", "oauth");
    let prod_google = make.add_connection(prod_team, "Sales Google", "google", "oauth");
    let scenario = make.add_scenario(dev_team, blueprint("Orders", dev_google));
    make.add_log(scenario, 1);
    make.add_log(scenario, 3);

    // A Make URL names the team; without one nothing is saved and the error says what to add.
    let no_team = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "Dev", "provider": "make", "base_url": make.origin(), "api_key": make.api_key(), "class": "dev"}),
        )
        .await;
    assert!(no_team.status.is_client_error(), "{}", no_team.body);
    assert!(
        no_team.body.to_string().contains("teamId"),
        "{}",
        no_team.body
    );
    let bad_key = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "Dev", "provider": "make", "base_url": make.base_url(dev_team), "api_key": "wrong", "class": "dev"}),
        )
        .await;
    assert!(bad_key.status.is_client_error(), "{}", bad_key.body);
    assert_eq!(app.count("environments").await, 0);

    let mut envs = Vec::new();
    for (name, team, class) in [("Dev", dev_team, "dev"), ("Prod", prod_team, "production")] {
        let res = app
            .post(
                "/api/v1/environments",
                &acme.admin,
                &json!({"name": name, "provider": "make", "base_url": make.base_url(team), "api_key": make.api_key(), "class": class}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        assert_eq!(res.body["provider"], "make");
        envs.push(id(&res.body));
    }
    let (dev, prod) = (envs[0], envs[1]);
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    for env in [dev, prod] {
        run(
            &app,
            &acme,
            &format!("/api/v1/environments/{env}/sync"),
            Some(&json!({"scope": "full"})),
        )
        .await;
    }

    // The catalog: the scenario with its modules counted and its hash; the team's connections.
    let listed = app
        .get(
            &format!("/api/v1/workflows?environment_id={dev}"),
            &acme.admin,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let item = listed.body["items"][0].clone();
    assert_eq!(item["name"], "Orders", "{}", listed.body);
    assert_eq!(item["id"], scenario.to_string());
    assert_eq!(item["node_count"], 2);
    let stored = make
        .scenario(scenario)
        .unwrap_or_else(|| panic!("no scenario"));
    assert!(!stored.is_null());
    let creds = app
        .get(
            &format!("/api/v1/credentials?environment_id={prod}"),
            &acme.admin,
        )
        .await;
    assert!(
        creds.body.to_string().contains("Sales Google"),
        "{}",
        creds.body
    );

    // Executions come from each scenario's log; a later sync adds the new run and repeats none.
    let executions = |env: Uuid| {
        let app = &app;
        let acme = &acme;
        async move {
            app.get(
                &format!("/api/v1/executions?environment_id={env}"),
                &acme.admin,
            )
            .await
            .body["items"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x["status"].as_str().unwrap_or("").to_owned())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    assert_eq!(executions(dev).await, ["error", "success"]);
    make.add_log(scenario, 2);
    run(
        &app,
        &acme,
        &format!("/api/v1/environments/{dev}/sync"),
        Some(&json!({"scope": "executions"})),
    )
    .await;
    assert_eq!(executions(dev).await, ["warning", "error", "success"]);

    // Promote dev → prod: the connection is remapped to prod's of the same type and name.
    let pipeline = app
        .post(
            "/api/v1/pipelines",
            &acme.admin,
            &json!({"name": "Make release", "provider": "make", "stages": [
                {"source_environment_id": dev, "target_environment_id": prod,
                 "gates": {"credentialsExistInTarget": true, "runPreFlightValidation": true}}]}),
        )
        .await;
    assert_eq!(pipeline.status, 201, "{}", pipeline.body);
    let body = json!({"pipeline_id": id(&pipeline.body), "stage_index": 0,
                      "workflow_ids": [scenario.to_string()]});
    let preview = app
        .post("/api/v1/promotions/preview", &acme.admin, &body)
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(preview.body["blocked"], false, "{}", preview.body);
    let started = app.post("/api/v1/promotions", &acme.admin, &body).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let run_id: Uuid = started.body["run_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, run_id, RunStatus::Succeeded).await;
    assert_eq!(make.scenario_count(prod_team), 1);
    let listed = app
        .get(
            &format!("/api/v1/workflows?environment_id={prod}"),
            &acme.admin,
        )
        .await;
    let prod_id: u64 = listed.body["items"][0]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", listed.body));
    let written = make
        .blueprint(prod_id)
        .unwrap_or_else(|| panic!("no blueprint"));
    assert_eq!(
        written["flow"][1]["parameters"]["__IMTCONN__"],
        json!(prod_google),
        "{written}"
    );
    assert!(
        written["flow"][0]["parameters"].get("hook").is_none(),
        "dev's webhook is not prod's: {written}"
    );
    assert_eq!(
        written["flow"][1]["mapper"],
        json!({"values": {"0": "{{1.order}}"}})
    );
    assert_eq!(
        listed.body["items"][0]["content_hash"], item["content_hash"],
        "the same scenario: connection ids are not content"
    );

    // Drift: prod against the canonical version (from dev), in sync; then edited in Make.
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
    run(
        &app,
        &acme,
        "/api/v1/canonical/onboard",
        Some(&json!({"items": [{"environment_id": dev, "workflow_id": scenario.to_string()}]})),
    )
    .await;
    run(&app, &acme, "/api/v1/canonical/sync", None).await;
    let check = |refresh: bool| {
        let app = &app;
        let acme = &acme;
        async move {
            run(
                app,
                acme,
                &format!("/api/v1/environments/{prod}/drift-check"),
                Some(&json!({"refresh": refresh})),
            )
            .await
        }
    };
    let clean = check(true).await;
    assert_eq!(clean["drifted"], 0, "{clean}");
    // Prod's own webhook, chosen in Make after the promotion (not content).
    let mut hooked = make
        .blueprint(prod_id)
        .unwrap_or_else(|| panic!("no blueprint"));
    hooked["flow"][0]["parameters"]["hook"] = json!(77);
    hooked["flow"][1]["mapper"]["values"]["0"] = json!("{{1.total}}");
    patch_blueprint(&make, prod_id, &hooked).await;
    let drifted = check(true).await;
    assert_eq!(drifted["drifted"], 1, "{drifted}");
    let incidents = app.get("/api/v1/incidents?open=true", &acme.admin).await;
    let incident = incidents.body["items"][0].clone();
    let change = &incident["payload"][prod_id.to_string()]["diff"]["nodes_changed"][0];
    assert_eq!(change["name"], "google-sheets:addRow [2]", "{incident}");
    assert_eq!(
        change["changes"][0]["path"], "mapper.values.0",
        "{incident}"
    );

    // Reverting writes the canonical content back and keeps prod's own webhook.
    let id = incident["id"].as_str().unwrap_or_default();
    let ack = app
        .post(
            &format!("/api/v1/incidents/{id}/transition"),
            &acme.admin,
            &json!({"to": "acknowledged"}),
        )
        .await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    let revert = app
        .post(
            &format!("/api/v1/incidents/{id}/reconcile"),
            &acme.admin,
            &json!({"resolution": "revert"}),
        )
        .await;
    assert!(revert.status.is_success(), "{}", revert.body);
    let run_id: Uuid = revert.body["run"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", revert.body));
    wait_for(&app.db.pool, run_id, RunStatus::Succeeded).await;
    let reverted = make
        .blueprint(prod_id)
        .unwrap_or_else(|| panic!("no blueprint"));
    assert_eq!(reverted["flow"][1]["mapper"]["values"]["0"], "{{1.order}}");
    assert_eq!(
        reverted["flow"][0]["parameters"]["hook"], 77,
        "prod's webhook, not dev's: {reverted}"
    );
    assert_eq!(
        reverted["flow"][1]["parameters"]["__IMTCONN__"],
        json!(prod_google)
    );
}

async fn make_environment(
    app: &TestApp,
    t: &workflowops_tests::TenantFixture,
    make: &MakePeer,
    team: u64,
) -> Uuid {
    let res = app
        .post(
            "/api/v1/environments",
            &t.admin,
            &json!({"name": format!("Team {team}"), "provider": "make", "base_url": make.base_url(team), "api_key": make.api_key(), "class": "production"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    id(&res.body)
}

async fn patch_blueprint(make: &MakePeer, scenario: u64, blueprint: &Value) {
    let res = reqwest::Client::new()
        .patch(format!("{}/api/v2/scenarios/{scenario}", make.origin()))
        .header("Authorization", format!("Token {}", make.api_key()))
        .json(&json!({"blueprint": blueprint.to_string()}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(res.status().is_success(), "{}", res.status());
}

// WF-016, WF-017 on Make: backups are the scenarios' storage form; a restore brings back content
// and layout, and recreates a deleted scenario
#[tokio::test]
async fn a_make_teams_scenarios_are_backed_up_to_git_and_restored() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let make = MakePeer::start(MakeConfig::default()).await;
    let team = make.team();
    let google = make.add_connection(team, "Sales Google", "google", "oauth");
    let orders = make.add_scenario(team, blueprint("Orders", google));
    let refunds = make.add_scenario(team, blueprint("Refunds", google));
    let env = make_environment(&app, &acme, &make, team).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let _repo = backed_up(&app, &acme, env).await;
    let original = make
        .blueprint(orders)
        .unwrap_or_else(|| panic!("no blueprint"));

    // Edited by hand in Make (a mapping, and a module moved on the canvas); another deleted.
    let mut edited = original.clone();
    edited["flow"][1]["mapper"]["values"]["0"] = json!("{{1.total}}");
    edited["flow"][1]["metadata"]["designer"] = json!({"x": 900, "y": 900});
    patch_blueprint(&make, orders, &edited).await;
    let deleted = reqwest::Client::new()
        .delete(format!("{}/api/v2/scenarios/{refunds}", make.origin()))
        .header("Authorization", format!("Token {}", make.api_key()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(deleted.status().is_success(), "{}", deleted.status());

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
        (Some(1), Some(1), Some(0), Some(0)),
        "{out}"
    );
    let restored = make
        .blueprint(orders)
        .unwrap_or_else(|| panic!("no blueprint"));
    assert_eq!(
        restored["flow"], original["flow"],
        "content and layout are back"
    );
    let recreated: u64 = out["workflows"][refunds.to_string()]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert_ne!(recreated, refunds);
    let copy = make
        .blueprint(recreated)
        .unwrap_or_else(|| panic!("no copy"));
    assert_eq!(copy["flow"][1]["parameters"]["__IMTCONN__"], json!(google));
    assert_eq!(make.scenario_count(team), 2);
}

// ENV-017 on Make: a scenario deleted between the workflow walk and its log's does not fail
// the sync
#[tokio::test]
async fn a_scenario_deleted_during_a_sync_does_not_fail_it() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let make = MakePeer::start(MakeConfig::default()).await;
    let team = make.team();
    let google = make.add_connection(team, "Sales Google", "google", "oauth");
    let kept = make.add_scenario(team, blueprint("Kept", google));
    let gone = make.add_scenario(team, blueprint("Gone", google));
    make.add_log(kept, 1);
    let env = make_environment(&app, &acme, &make, team).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    run(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/sync"),
        Some(&json!({"scope": "workflows"})),
    )
    .await;
    let deleted = reqwest::Client::new()
        .delete(format!("{}/api/v2/scenarios/{gone}", make.origin()))
        .header("Authorization", format!("Token {}", make.api_key()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let out = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/sync"),
        Some(&json!({"scope": "executions"})),
    )
    .await;
    assert_eq!(out["executions"], 1, "{out}");
}

// ENV-017 on Make: a scenario a listing skipped (as an offset shifted by a deletion during the
// walk does) is read by id before it is called deleted; a real deletion still is one
#[tokio::test]
async fn a_scenario_a_listing_skipped_is_not_marked_deleted() {
    use workflowops_tests::make::Quirk;
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let make = MakePeer::start(MakeConfig::default()).await;
    let team = make.team();
    let google = make.add_connection(team, "Sales Google", "google", "oauth");
    let skipped = make.add_scenario(team, blueprint("Skipped", google));
    let gone = make.add_scenario(team, blueprint("Gone", google));
    let env = make_environment(&app, &acme, &make, team).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let sync = || {
        let (app, acme) = (&app, &acme);
        async move {
            run(
                app,
                acme,
                &format!("/api/v1/environments/{env}/sync"),
                Some(&json!({"scope": "workflows"})),
            )
            .await
        }
    };
    assert_eq!(sync().await["workflows"], 2);
    make.set_quirk(Quirk::ListsSkipScenario(skipped));
    let out = sync().await;
    assert_eq!(
        (out["workflows"].as_i64(), out["workflows_deleted"].as_i64()),
        (Some(1), Some(0)),
        "{out}"
    );
    let deleted = reqwest::Client::new()
        .delete(format!("{}/api/v2/scenarios/{gone}", make.origin()))
        .header("Authorization", format!("Token {}", make.api_key()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(deleted.status().is_success(), "{}", deleted.status());
    let out = sync().await;
    assert_eq!(out["workflows_deleted"], 1, "{out}");
    let listed = app
        .get(
            &format!("/api/v1/workflows?environment_id={env}"),
            &acme.admin,
        )
        .await;
    let names: Vec<&str> = listed.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|w| w["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["Skipped"], "{}", listed.body);
}

/// A webhook and two Google Sheets modules as a scenario built through Make's API saves them:
/// no designer cache (`metadata.restore`), so nothing in the blueprint says a module's
/// connection is a `google` one or what it is called.
fn uncached_blueprint(name: &str, sales: u64, ops: u64) -> Value {
    json!({
        "name": name,
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "version": 1,
             "parameters": {"hook": 10, "maxResults": 1}, "mapper": {},
             "metadata": {"designer": {"x": 0, "y": 0}}},
            {"id": 2, "module": "google-sheets:addRow", "version": 2,
             "parameters": {"__IMTCONN__": sales},
             "mapper": {"spreadsheetId": "sales", "values": {"0": "{{1.order}}"}},
             "metadata": {"designer": {"x": 300, "y": 0}}},
            {"id": 3, "module": "google-sheets:updateRow", "version": 2,
             "parameters": {"__IMTCONN__": ops},
             "mapper": {"spreadsheetId": "ops", "rowNumber": "1", "values": {"0": "{{1.order}}"}},
             "metadata": {"designer": {"x": 600, "y": 0}}}
        ],
        "metadata": {"instant": true, "version": 1,
                     "scenario": {"roundtrips": 1, "maxErrors": 3, "autoCommit": true},
                     "designer": {"orphans": []}, "zone": "eu1.make.com"}
    })
}

/// Two Make environments of `tenant` (dev and prod teams), synced, and a one-stage pipeline
/// between them with `stage`'s gates and policy; returns (dev, prod, pipeline).
async fn dev_and_prod(
    app: &TestApp,
    t: &workflowops_tests::TenantFixture,
    make: &MakePeer,
    (dev_team, prod_team): (u64, u64),
    stage: &Value,
) -> (Uuid, Uuid, Uuid) {
    let dev = make_environment(app, t, make, dev_team).await;
    let prod = make_environment(app, t, make, prod_team).await;
    for env in [dev, prod] {
        run(
            app,
            t,
            &format!("/api/v1/environments/{env}/sync"),
            Some(&json!({"scope": "full"})),
        )
        .await;
    }
    let mut stage = stage.clone();
    stage["source_environment_id"] = json!(dev);
    stage["target_environment_id"] = json!(prod);
    let pipeline = app
        .post(
            "/api/v1/pipelines",
            &t.admin,
            &json!({"name": "Make release", "provider": "make", "stages": [stage]}),
        )
        .await;
    assert_eq!(pipeline.status, 201, "{}", pipeline.body);
    (dev, prod, id(&pipeline.body))
}

/// Promotes `scenario` through the pipeline's first stage and waits for the run to succeed;
/// returns the promotion as the API shows it.
async fn promote(
    app: &TestApp,
    t: &workflowops_tests::TenantFixture,
    pipeline: Uuid,
    scenario: u64,
) -> Value {
    let body = json!({"pipeline_id": pipeline, "stage_index": 0,
                      "workflow_ids": [scenario.to_string()]});
    let started = app.post("/api/v1/promotions", &t.admin, &body).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let run_id: Uuid = started.body["run_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let finished = eventually(
        &format!("promotion run {run_id} to finish"),
        std::time::Duration::from_secs(20),
        || async {
            let run = app
                .get(&format!("/api/v1/runs/{run_id}"), &t.admin)
                .await
                .body;
            ["succeeded", "failed", "cancelled"]
                .contains(&run["status"].as_str().unwrap_or_default())
                .then_some(run)
        },
    )
    .await;
    let promotion = app
        .get(
            &format!("/api/v1/promotions/{}", id(&started.body)),
            &t.admin,
        )
        .await
        .body;
    assert_eq!(finished["status"], "succeeded", "{finished}\n{promotion}");
    promotion
}

/// The one scenario of a Make environment's catalog.
async fn only_scenario(app: &TestApp, t: &workflowops_tests::TenantFixture, env: Uuid) -> u64 {
    let listed = app
        .get(&format!("/api/v1/workflows?environment_id={env}"), &t.admin)
        .await;
    assert_eq!(
        listed.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.body
    );
    listed.body["items"][0]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", listed.body))
}

// CRED-007, PROMO-001 on Make: a module without the designer's cache still names a `google`
// connection (the source team's connection of that id says so), so the user's mapping and the
// same-type-and-name match both apply and the credential gate passes
#[tokio::test]
async fn a_connection_the_designer_did_not_cache_is_typed_by_the_source_teams_connections() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let make = MakePeer::start(MakeConfig::default()).await;
    let dev_team = make.team();
    let prod_team = make.add_team("Production");
    let dev_sales = make.add_connection(dev_team, "Sales Google", "google", "oauth");
    let dev_ops = make.add_connection(dev_team, "Ops Google", "google", "oauth");
    let prod_sales = make.add_connection(prod_team, "Sales Google", "google", "oauth");
    let prod_shared = make.add_connection(prod_team, "Shared Google", "google", "oauth");
    let scenario = make.add_scenario(dev_team, uncached_blueprint("Orders", dev_sales, dev_ops));
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let stage = json!({"gates": {"credentialsExistInTarget": true}});
    let (dev, prod, pipeline) =
        dev_and_prod(&app, &acme, &make, (dev_team, prod_team), &stage).await;

    // Ops Google is mapped by hand (its name differs in prod), under the connection's type.
    let put = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/credential-mappings",
            Some(&acme.admin.token),
            Some(
                &json!({"source_environment_id": dev, "target_environment_id": prod,
                "credential_type": "google", "source_credential_id": dev_ops.to_string(),
                "target_credential_id": prod_shared.to_string()}),
            ),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);

    let body = json!({"pipeline_id": pipeline, "stage_index": 0,
                      "workflow_ids": [scenario.to_string()]});
    let preview = app
        .post("/api/v1/promotions/preview", &acme.admin, &body)
        .await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(preview.body["blocked"], false, "{}", preview.body);
    assert_eq!(
        preview.body["items"][0]["unmapped_credentials"],
        json!([]),
        "{}",
        preview.body
    );
    let done = promote(&app, &acme, pipeline, scenario).await;
    assert_eq!(done["status"], "completed", "{done}");
    let copy = only_scenario(&app, &acme, prod).await;
    let written = make
        .blueprint(copy)
        .unwrap_or_else(|| panic!("no blueprint"));
    assert_eq!(
        written["flow"][1]["parameters"]["__IMTCONN__"],
        json!(prod_sales),
        "same type and name: {written}"
    );
    assert_eq!(
        written["flow"][2]["parameters"]["__IMTCONN__"],
        json!(prod_shared),
        "the user's mapping: {written}"
    );
}

// PROMO-001, CRED-007 on Make: a connection with no counterpart in the target team is never
// written there with the source team's id; the module is left without one (the result says
// which), and once a connection is chosen in Make a later promotion keeps it
#[tokio::test]
async fn an_unmapped_connection_is_left_unset_in_the_target_team_and_the_result_says_so() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let make = MakePeer::start(MakeConfig::default()).await;
    let dev_team = make.team();
    let prod_team = make.add_team("Production");
    let dev_google = make.add_connection(dev_team, "Sales Google", "google", "oauth");
    let prod_personal = make.add_connection(prod_team, "Personal Google", "google", "oauth");
    let scenario = make.add_scenario(dev_team, blueprint("Orders", dev_google));
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    // No credential gate; choosing a connection in prod is a change there, overwritten on
    // purpose by the second promotion.
    let stage = json!({"policy": {"allowOverwritingHotfixes": true}});
    let (_, prod, pipeline) = dev_and_prod(&app, &acme, &make, (dev_team, prod_team), &stage).await;

    let done = promote(&app, &acme, pipeline, scenario).await;
    assert_eq!(done["status"], "completed", "{done}");
    let result = &done["results"][0];
    assert_eq!(result["action"], "created", "{done}");
    assert_eq!(
        result["warnings"],
        json!([
            "module `google-sheets:addRow [2]` was left without a connection: its source connection `Sales Google` (google) has no counterpart in the target; choose one in Make"
        ]),
        "{done}"
    );
    let copy = only_scenario(&app, &acme, prod).await;
    let written = make
        .blueprint(copy)
        .unwrap_or_else(|| panic!("no blueprint"));
    assert_eq!(
        written["flow"][1]["parameters"],
        json!({"mode": "select"}),
        "not dev's connection id: {written}"
    );
    assert!(
        written["flow"][1]["metadata"]["restore"]["parameters"]
            .get("__IMTCONN__")
            .is_none(),
        "no label of a connection it does not have: {written}"
    );
    assert_eq!(
        written["flow"][1]["mapper"],
        json!({"values": {"0": "{{1.order}}"}})
    );

    // Prod's own connection, chosen in Make; then dev changes and is promoted again.
    let mut chosen = written.clone();
    chosen["flow"][1]["parameters"]["__IMTCONN__"] = json!(prod_personal);
    patch_blueprint(&make, copy, &chosen).await;
    let mut changed = make
        .blueprint(scenario)
        .unwrap_or_else(|| panic!("no blueprint"));
    changed["flow"][1]["mapper"]["values"]["0"] = json!("{{1.total}}");
    patch_blueprint(&make, scenario, &changed).await;
    let again = promote(&app, &acme, pipeline, scenario).await;
    let result = &again["results"][0];
    assert_eq!(result["action"], "updated", "{again}");
    assert_eq!(result["warnings"], json!([]), "{again}");
    let updated = make
        .blueprint(copy)
        .unwrap_or_else(|| panic!("no blueprint"));
    assert_eq!(updated["flow"][1]["mapper"]["values"]["0"], "{{1.total}}");
    assert_eq!(
        updated["flow"][1]["parameters"]["__IMTCONN__"],
        json!(prod_personal),
        "the target's own connection is kept: {updated}"
    );
}

// WF-016, WF-017 on Make: a backup says which team it was taken from; restored after the
// environment's URL moved to another team, the scenario is recreated there without the old
// team's connection and webhook ids, and the result says so
#[tokio::test]
async fn a_backup_restored_into_another_team_leaves_the_old_teams_ids_behind() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let make = MakePeer::start(MakeConfig::default()).await;
    let old_team = make.team();
    let new_team = make.add_team("Reorganised");
    let google = make.add_connection(old_team, "Sales Google", "google", "oauth");
    let orders = make.add_scenario(old_team, blueprint("Orders", google));
    let env = make_environment(&app, &acme, &make, old_team).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let repo = backed_up(&app, &acme, env).await;
    let (_, files) = head_files(&repo);
    let file = files
        .iter()
        .find(|f| f.ends_with(&format!("workflows/{orders}.json")))
        .unwrap_or_else(|| panic!("{files:?}"));
    assert_eq!(read(&repo, file)["teamId"], json!(old_team));
    let original = make
        .blueprint(orders)
        .unwrap_or_else(|| panic!("no blueprint"));

    let moved = app
        .patch(
            &format!("/api/v1/environments/{env}"),
            &acme.admin,
            &json!({"base_url": make.base_url(new_team)}),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    let out = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/restore"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        (out["created"].as_i64(), out["failed"].as_i64()),
        (Some(1), Some(0)),
        "{out}"
    );
    let item = &out["workflows"][orders.to_string()];
    assert_eq!(
        item["warnings"],
        json!([
            format!(
                "backed up from Make team {old_team}, not this environment's team {new_team}: written without that team's connections, webhooks and keys; choose them in Make"
            ),
            "module `google-sheets:addRow [2]` was left without a connection"
        ]),
        "{out}"
    );
    let copy: u64 = item["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(make.scenario_count(new_team), 1);
    let written = make.blueprint(copy).unwrap_or_else(|| panic!("no copy"));
    assert_eq!(
        written["flow"][0]["parameters"],
        json!({"maxResults": 1}),
        "not the old team's webhook: {written}"
    );
    assert_eq!(
        written["flow"][1]["parameters"],
        json!({"mode": "select"}),
        "not the old team's connection: {written}"
    );
    assert_eq!(written["flow"][1]["mapper"], original["flow"][1]["mapper"]);
    assert_eq!(
        make.blueprint(orders),
        Some(original),
        "the old team's scenario is not touched"
    );
}

// DRIFT-003, CRED-007 on Make: reverting a scenario writes the canonical version with this
// team's connections (typed by the connections of the team it was taken from where the designer
// cached nothing), never another team's ids; a module whose connection has no counterpart keeps
// the one it has here or is left without one, and the result names it
#[tokio::test]
async fn a_make_revert_never_writes_another_teams_connection_ids() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let make = MakePeer::start(MakeConfig::default()).await;
    let dev_team = make.team();
    let prod_team = make.add_team("Production");
    let dev_sales = make.add_connection(dev_team, "Sales Google", "google", "oauth");
    let dev_ops = make.add_connection(dev_team, "Ops Google", "google", "oauth");
    let prod_sales = make.add_connection(prod_team, "Sales Google", "google", "oauth");
    let scenario = make.add_scenario(dev_team, uncached_blueprint("Orders", dev_sales, dev_ops));
    // Prod's copy, edited there: another mapping, and no connection on the third module.
    let mut edited = uncached_blueprint("Orders", prod_sales, prod_sales);
    edited["flow"][1]["mapper"]["values"]["0"] = json!("{{1.total}}");
    if let Some(params) = edited["flow"][2]["parameters"].as_object_mut() {
        params.remove("__IMTCONN__");
    }
    let copy = make.add_scenario(prod_team, edited);
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let (dev, prod, _) = dev_and_prod(&app, &acme, &make, (dev_team, prod_team), &json!({})).await;
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
    let onboarded = run(
        &app,
        &acme,
        "/api/v1/canonical/onboard",
        Some(&json!({"items": [{"environment_id": dev, "workflow_id": scenario.to_string()}]})),
    )
    .await;
    let canonical = onboarded["onboarded"][0]["canonical_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let linked = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/canonical/workflows/{canonical}/environments/{prod}"),
            Some(&acme.admin.token),
            Some(&json!({"workflow_id": copy.to_string()})),
        )
        .await;
    assert_eq!(linked.status, 200, "{}", linked.body);
    let checked = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/drift-check"),
        Some(&json!({"refresh": true})),
    )
    .await;
    assert_eq!(checked["drifted"], 1, "{checked}");
    let incidents = app
        .get(
            &format!("/api/v1/incidents?open=true&environment_id={prod}"),
            &acme.admin,
        )
        .await;
    let incident = incidents.body["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ack = app
        .post(
            &format!("/api/v1/incidents/{incident}/transition"),
            &acme.admin,
            &json!({"to": "acknowledged"}),
        )
        .await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    let revert = app
        .post(
            &format!("/api/v1/incidents/{incident}/reconcile"),
            &acme.admin,
            &json!({"resolution": "revert"}),
        )
        .await;
    assert!(revert.status.is_success(), "{}", revert.body);
    let run_id: Uuid = revert.body["run"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", revert.body));
    wait_for(&app.db.pool, run_id, RunStatus::Succeeded).await;
    let out = app
        .get(&format!("/api/v1/runs/{run_id}"), &acme.admin)
        .await
        .body["output"]
        .clone();
    assert_eq!(
        out[0]["warnings"],
        json!([
            "module `google-sheets:updateRow [3]` was left without a connection: the canonical version's connection `Ops Google` (google) has no counterpart in this team; choose one in Make"
        ]),
        "{out}"
    );

    let reverted = make
        .blueprint(copy)
        .unwrap_or_else(|| panic!("no blueprint"));
    assert_eq!(reverted["flow"][1]["mapper"]["values"]["0"], "{{1.order}}");
    assert_eq!(
        reverted["flow"][1]["parameters"]["__IMTCONN__"],
        json!(prod_sales),
        "typed by dev's connection of that id, found by type and name: {reverted}"
    );
    assert!(
        reverted["flow"][2]["parameters"]
            .get("__IMTCONN__")
            .is_none(),
        "not dev's connection id: {reverted}"
    );
}
