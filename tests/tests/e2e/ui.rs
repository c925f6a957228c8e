//! The web UI in real headless Chromium (WebDriver) against the real server and emulated n8n:
//! sign in, connect an environment, a sync's progress bar reaching 100% live, a promotion
//! approved and completing, an incident acknowledged, a viewer's actions disabled. Screenshots
//! of the main pages go to `WFO_SCREENSHOTS` (see the README).

use domain::Role;
use engine::RunStatus;
use serde_json::json;
use thirtyfour::prelude::*;
use uuid::Uuid;
use workflowops_tests::app::FIXTURE_PASSWORD;
use workflowops_tests::browser::Browser;
use workflowops_tests::engine_support::{TestWorker, wait_for};
use workflowops_tests::hooks::HookPeer;
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};
use workflowops_tests::{Caller, TestApp};

use super::canonical::{environment, sync};

async fn sign_in(b: &Browser, app: &TestApp, who: &Caller) -> WebDriverResult<()> {
    b.sign_in(app, &who.email)
        .await
        .map_err(|e| WebDriverError::FatalError(e.to_string()))
}

async fn sign_out(b: &Browser) -> WebDriverResult<()> {
    b.driver
        .find(By::Css("form[action='/logout'] button"))
        .await?
        .click()
        .await?;
    b.until("the sign-in page", || async {
        b.driver.find(By::Id("sign-in")).await.is_ok()
    })
    .await
    .map_err(|e| WebDriverError::FatalError(e.to_string()))
}

async fn enabled(b: &Browser, id: &str) -> bool {
    match b.driver.find(By::Id(id)).await {
        Ok(el) => el.is_enabled().await.unwrap_or(false),
        Err(_) => false,
    }
}

#[tokio::test]
async fn the_web_ui_signs_in_syncs_live_promotes_and_acknowledges() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    let dev_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    dev_n8n.seed_workflows(60, 4);
    dev_n8n.seed_executions(300);
    for i in 1..=3 {
        prod_n8n.add_credential(&format!("Seed basic auth {i}"), "httpBasicAuth");
    }
    let b = Browser::start().await.unwrap_or_else(|e| panic!("{e:#}"));

    // Sign in: a wrong password is refused on the page, the right one lands on the dashboard.
    b.driver
        .goto(app.url("/login"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("email"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .send_keys(&acme.admin.email)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("password"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .send_keys("wrong")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("sign-in"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The form posts with fetch: the API's message appears when its answer has come.
    b.until("the API's message on the sign-in page", || async {
        !b.text("login-error").await.is_empty()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sign_in(&b, &app, &acme.admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(b.text("who").await.contains(&acme.admin.email));
    // HEALTH-003: the header shows the connection once /readyz answered.
    b.until("the connection indicator", || async {
        b.text("connection").await.contains("connected")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let source = b.driver.source().await.unwrap_or_default();
    assert!(
        source.contains("Connect your first environment"),
        "the empty state"
    );
    b.screenshot("dashboard-empty")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Connect an environment through the form (tested before saving).
    b.driver
        .goto(app.url("/environments"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let form = b
        .driver
        .find(By::Id("create-environment"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (name, value) in [
        ("name", "Dev".to_owned()),
        ("base_url", dev_n8n.base_url()),
        ("api_key", dev_n8n.api_key()),
    ] {
        form.find(By::Name(name))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    form.find(By::Css("button[type=submit]"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the new environment's page", || async {
        b.driver
            .current_url()
            .await
            .map(|u| u.path().starts_with("/environments/"))
            .unwrap_or(false)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Sync and watch the progress bar reach 100% without the page reloading.
    b.driver
        .execute("window.__stay = 42;", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("sync"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = b
        .until("the progress bar at 100%", || async {
            b.text("progress-text").await.starts_with("100%")
        })
        .await
    {
        let _ = b.screenshot("failed-sync").await;
        let logs = b
            .driver
            .execute("return document.getElementById('live').outerHTML;", vec![])
            .await
            .map(|v| v.json().clone());
        panic!("{e}: {:?} / {:?}", b.text("progress-text").await, logs);
    }
    b.until("the run to succeed", || async {
        b.text("run-status").await == "succeeded"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stayed = b
        .driver
        .execute("return window.__stay;", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stayed.json(), &json!(42), "no reload");
    assert!(!b.text("log").await.is_empty(), "log lines streamed");
    let streams = b
        .driver
        .execute(
            "return performance.getEntriesByType('resource').filter(e => e.name.includes('/events')).length;",
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(streams.json(), &json!(1), "one SSE connection for the page");
    b.screenshot("environment-sync")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // WF-009: upload a workflow file from the page.
    let file = std::env::temp_dir().join(format!("wfo-upload-{}.json", Uuid::now_v7().simple()));
    std::fs::write(
        &file,
        json!({"name": "Uploaded from the browser", "nodes": [{"name": "Start", "type": "n8n-nodes-base.manualTrigger",
            "typeVersion": 1, "position": [0, 0], "parameters": {}}], "connections": {}, "settings": {}})
        .to_string(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .execute(
            "document.querySelector('input[data-upload]').hidden = false;",
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Css("input[data-upload]"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .send_keys(file.display().to_string())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the uploaded workflow", || async {
        dev_n8n.workflow_count() == 61
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&file);
    b.until("the page reloaded", || async {
        b.driver.find(By::Id("git-form")).await.is_ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Snapshots: take one from the page, then preview restoring it.
    let repo = super::git::bare_repo();
    let env_path = b
        .driver
        .current_url()
        .await
        .map(|u| u.path().to_owned())
        .unwrap_or_default();
    let _ = &env_path;
    // Connect its Git repository through the form (tested before saving).
    let git_form = b
        .driver
        .find(By::Id("git-form"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    git_form
        .find(By::Name("url"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .send_keys(repo.0.display().to_string())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .execute(
            "document.querySelector('#git-form [name=auth]').value = 'none';",
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    git_form
        .find(By::Css("button[type=submit]"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the snapshot button", || async {
        b.driver.find(By::Id("take-snapshot")).await.is_ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("take-snapshot"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the snapshot run", || async {
        b.text("run-status").await == "succeeded"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.driver.refresh().await.unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Css("#snapshots button[data-show]"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the restore preview", || async {
        b.text("shown").await.contains("61 unchanged")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.screenshot("snapshots")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url("/workflows"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listed = b.text("workflows").await;
    assert!(listed.contains("Seeded workflow 00000"));
    assert!(
        listed.contains("untracked"),
        "WF-008: each workflow's Git status"
    );
    b.screenshot("workflows")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Paginated: the next page holds the rest.
    b.driver
        .find(By::Id("next-page"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("page two", || async {
        b.text("workflows").await.contains("Seeded workflow 00059")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // WF-004: a workflow's graph, drawn from its nodes' positions and connections.
    b.driver
        .find(By::Css("#workflows tbody a"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the graph", || async {
        b.driver.find(By::Css("#graph svg rect")).await.is_ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let rects = b
        .driver
        .find_all(By::Css("#graph svg rect"))
        .await
        .map(|v| v.len())
        .unwrap_or(0);
    assert_eq!(rects, 4, "one box per node");
    // Actions the environment's policy allows (dev: activation at once).
    b.driver
        .find(By::Id("action-activate"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the workflow active", || async {
        b.driver.find(By::Id("action-deactivate")).await.is_ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.screenshot("workflow-graph")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // A promotion into production, waiting for a second admin's approval.
    let dev: Uuid = sqlx::query_scalar("select id from environments where name = 'Dev'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    sync(&app, &acme, prod).await;
    let full = app
        .post(
            &format!("/api/v1/environments/{prod}/sync"),
            &acme.admin,
            &json!({"scope": "credentials"}),
        )
        .await;
    let full_run: Uuid = full.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    wait_for(&app.db.pool, full_run, RunStatus::Succeeded).await;
    // PIPE-006: the pipeline drawn in the stage editor.
    b.driver
        .goto(app.url("/pipelines"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let editor = b
        .driver
        .find(By::Id("pipeline-editor"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    editor
        .find(By::Name("name"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .send_keys("release")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .execute(
            &format!(
                "const f = document.querySelector('#stages fieldset'); \
                 f.querySelector('[data-field=source_environment_id]').value = '{dev}'; \
                 f.querySelector('[data-field=target_environment_id]').value = '{prod}'; \
                 f.querySelector('[data-field=approvals]').value = '1'; \
                 f.querySelector('[data-gate=credentialsExistInTarget]').checked = true;"
            ),
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("save-pipeline"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the saved pipeline", || async {
        b.driver
            .find(By::Css("section.pipeline .flow-env"))
            .await
            .is_ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.screenshot("pipelines")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The promotion wizard: stage, workflows, preview, submit.
    b.driver
        .goto(app.url("/promotions/new"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Css("a.stage-link"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the workflow picker", || async {
        b.driver.find(By::Id("wizard")).await.is_ok()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let boxes = b
        .driver
        .find_all(By::Css("input[name=workflow_ids]"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for checkbox in boxes.iter().take(3) {
        checkbox.click().await.unwrap_or_else(|e| panic!("{e}"));
    }
    b.driver
        .find(By::Name("note"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .send_keys("release 7")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("preview"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the preview", || async {
        b.text("preview-table").await.contains("ADDED")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        b.text("preview-gates")
            .await
            .contains("credentialsExistInTarget")
    );
    b.screenshot("promotion-preview")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("submit-promotion"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the promotion's page", || async {
        b.driver
            .current_url()
            .await
            .map(|u| u.path().starts_with("/promotions/0"))
            .unwrap_or(false)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let pid = b
        .driver
        .current_url()
        .await
        .map(|u| u.path().trim_start_matches("/promotions/").to_owned())
        .unwrap_or_default();
    b.until("pending approval", || async {
        app.get(&format!("/api/v1/promotions/{pid}"), &acme.admin)
            .await
            .body["status"]
            == "pending_approval"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url(&format!("/promotions/{pid}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !enabled(&b, "approve").await,
        "the requester cannot approve their own promotion"
    );
    sign_out(&b).await.unwrap_or_else(|e| panic!("{e}"));
    let admin2 = app.member(&acme, Role::Admin).await;
    sign_in(&b, &app, &admin2)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url(&format!("/promotions/{pid}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.screenshot("promotion-approval")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("comment"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .send_keys("ship it")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("approve"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the promotion to complete on the page", || async {
        b.text("promotion-status").await == "completed"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(b.text("results").await.contains("created"));
    assert_eq!(prod_n8n.workflow_count(), 3);
    b.screenshot("promotion-completed")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // An incident, acknowledged from its page.
    let incident = domain::drift::create_incident(
        &app.db.pool,
        acme.id,
        &domain::drift::NewIncident {
            environment_id: prod,
            severity: domain::drift::Severity::Critical,
            title: "Drift in Prod: 1 workflow(s) changed outside WorkflowOps",
            ttl_hours: 24,
            affected: &json!([{"workflow_id": "x", "name": "Orders", "kind": "drift", "risk": "high", "summary": "1 changed"}]),
            payload: &json!({"x": {"diff": {"nodes_changed": [{"name": "Call", "type": "n8n-nodes-base.httpRequest",
                "changes": [{"path": "parameters.url", "old": "https://api.example.com", "new": "https://hotfix.example.com"}]}]}}}),
            check_id: Uuid::now_v7(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url("/incidents"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.screenshot("incidents")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url(&format!("/incidents/{}", incident.id)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("to-acknowledged"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("acknowledged", || async {
        b.text("incident-status").await == "acknowledged"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        b.text("changes")
            .await
            .contains("https://hotfix.example.com"),
        "Git beside the environment"
    );
    b.screenshot("incident")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url("/"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.screenshot("dashboard")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Bulk actions on one environment's workflows, watched live; the ZIP download link.
    b.driver
        .goto(app.url(&format!("/workflows?environment_id={dev}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let boxes = b
        .driver
        .find_all(By::Css("input[name=workflow_ids]"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for checkbox in boxes.iter().take(2) {
        checkbox.click().await.unwrap_or_else(|e| panic!("{e}"));
    }
    b.driver
        .find(By::Id("bulk-apply"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the bulk run", || async {
        b.text("run-status").await == "succeeded"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url(&format!("/environments/{dev}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let href = b
        .driver
        .find(By::Id("download"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .attr("href")
        .await
        .unwrap_or_default()
        .unwrap_or_default();
    assert!(href.ends_with("/workflows/export"), "{href}");

    // Switch tenant.
    let globex = domain::tenancy::create_tenant(&app.db.pool, "Globex", "globex")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    domain::tenancy::add_member(
        &app.db.pool,
        globex.id,
        admin2.user_id.unwrap_or_default(),
        Role::Viewer,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url("/switch"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Css("#tenants button"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the other tenant", || async {
        b.text("who").await.contains("Globex")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url("/switch"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Css("#tenants button"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("back", || async {
        b.text("who").await.contains("Tenant acme")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // The matrix: onboard two untracked workflows into the canonical repository.
    let canonical_repo = super::git::bare_repo();
    // The canonical repository and the drift policy, through the settings page.
    b.driver
        .goto(app.url("/settings"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let repo_form = b
        .driver
        .find(By::Id("canonical-repo"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    repo_form
        .find(By::Name("url"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .send_keys(canonical_repo.0.display().to_string())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .execute(
            "document.querySelector('#canonical-repo [name=auth]').value = 'none';",
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("save-repo"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the saved repository", || async {
        b.driver
            .source()
            .await
            .unwrap_or_default()
            .contains("(main, folder canonical)")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let ttl = b
        .driver
        .find(By::Name("ttl_critical_hours"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ttl.clear().await.unwrap_or_else(|e| panic!("{e}"));
    ttl.send_keys("12").await.unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id("save-policy"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("saved", || async {
        b.driver
            .find(By::Id("policy-saved"))
            .await
            .map(|_| ())
            .is_ok()
            && app.get("/api/v1/drift/policy", &acme.admin).await.body["ttl_critical_hours"] == 12
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.screenshot("settings")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url("/matrix"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let boxes = b
        .driver
        .find_all(By::Css("#untracked input[name=workflow_ids]"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for checkbox in boxes.iter().take(2) {
        checkbox.click().await.unwrap_or_else(|e| panic!("{e}"));
    }
    b.driver
        .find(By::Id("onboard-selected"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Both are the same workflow (prod's copy was promoted from dev): one canonical workflow,
    // linked in both environments.
    b.until("the onboarded workflow", || async {
        b.driver
            .find_all(By::Css("#matrix tbody tr"))
            .await
            .map(|r| r.len() == 1)
            .unwrap_or(false)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        b.text("matrix").await.matches("linked").count(),
        2,
        "{}",
        b.text("matrix").await
    );
    assert!(b.text("matrix").await.contains("linked"));
    b.driver
        .execute("window.scrollTo(0, 0);", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.screenshot("matrix")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Runs, filtered.
    b.driver
        .goto(app.url("/runs?status=succeeded&search=environment.sync"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listed = b.driver.source().await.unwrap_or_default();
    assert!(
        listed.contains("environment.sync") && !listed.contains("promotion.execute</td>"),
        "filtered"
    );

    // Team: an API key is shown once; the audit log lists what happened.
    b.driver
        .goto(app.url("/team"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key_form = b
        .driver
        .find(By::Id("new-key"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    key_form
        .find(By::Name("name"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .send_keys("CI pipeline")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    key_form
        .find(By::Css("button[type=submit]"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the new key", || async {
        b.text("secret-value").await.starts_with("wfo_k_")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.screenshot("team").await.unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url("/audit"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        b.text("audit").await.contains("api_key.created"),
        "{}",
        b.text("audit").await
    );
    b.screenshot("audit")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // A viewer sees the actions, disabled.
    sign_out(&b).await.unwrap_or_else(|e| panic!("{e}"));
    let viewer = app.member(&acme, Role::Viewer).await;
    sign_in(&b, &app, &viewer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url(&format!("/environments/{dev}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!enabled(&b, "sync").await, "a viewer cannot sync");
    b.driver
        .goto(app.url(&format!("/incidents/{}", incident.id)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !enabled(&b, "to-stabilized").await,
        "a viewer cannot move incidents"
    );
    b.driver
        .goto(app.url("/audit"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        b.driver
            .source()
            .await
            .unwrap_or_default()
            .contains("Only admins see the audit log")
    );
    // Signed out, pages lead to the sign-in page.
    sign_out(&b).await.unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .goto(app.url("/environments"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = b
        .driver
        .current_url()
        .await
        .map(|u| u.path().to_owned())
        .unwrap_or_default();
    assert_eq!(url, "/login");
    // The web UI's sign-out is the API's: audited, and every server told.
    let logged_out: i64 = sqlx::query_scalar(
        "select count(*) from audit_logs where action = 'auth.logout' and actor_user_id = $1",
    )
    .bind(viewer.user_id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or(-1);
    assert_eq!(logged_out, 1, "the viewer's sign-out is audited");
    // HEALTH-003: when the service cannot reach its database, the indicator says so.
    sign_in(&b, &app, &acme.admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.db.pool.close().await;
    b.driver
        .execute("checkConnection()", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the indicator to show the lost connection", || async {
        b.text("connection").await.contains("connection lost")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    b.close().await;
}

// Cookie-authenticated API calls need the page's CSRF token; pages need a session.
#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_for_changes() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let anonymous = http
        .get(app.url("/workflows"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(anonymous.status(), 303, "pages send strangers to sign in");
    let login = http
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "email={}&password={FIXTURE_PASSWORD}",
            acme.admin.email.replace('@', "%40")
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(login.status(), 303);
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap_or_default().to_owned();
    let token = session.trim_start_matches("wfo_session=");
    let page = http
        .get(app.url("/workflows"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap_or_default();
    let csrf = api::auth::csrf_token(token);
    assert!(html.contains(&csrf), "the page carries its CSRF token");
    let body = json!({"name": "x", "provider": "n8n", "stages": []});
    let forged = http
        .post(app.url("/api/v1/pipelines"))
        .header("cookie", &session)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forged.status(), 403);
    let forged = TestApp::read(forged).await;
    assert_eq!(forged.code(), "csrf_failed");
    let allowed = http
        .post(app.url("/api/v1/pipelines"))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        allowed.status(),
        422,
        "past the CSRF check, the request is judged on its content"
    );
    for query in [
        "",
        "?search=seeded",
        "?search=00037",
        "?cursor=garbage",
        "?search=%25_%5C",
    ] {
        let page = http
            .get(app.url(&format!("/workflows{query}")))
            .header("cookie", &session)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            page.status(),
            200,
            "/workflows{query}: {}",
            page.text().await.unwrap_or_default()
        );
    }
    let reads = http
        .get(app.url("/api/v1/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reads.status(), 200, "GETs need no token");
}

// Pages never show another tenant's objects: its ids are "not found".
#[tokio::test]
async fn pages_answer_404_for_another_tenants_ids() {
    use domain::environments::{self, DriftMode, EnvironmentClass, NewEnvironment};
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let mut tx = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let env = environments::create(
        &mut tx,
        &app.state.keyring,
        NewEnvironment {
            tenant_id: acme.id,
            name: "acme-prod",
            provider: "n8n",
            base_url: "http://127.0.0.1:9",
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
    domain::catalog::upsert_workflows(
        &mut tx,
        acme.id,
        env.id,
        Uuid::nil(),
        &[json!({"id": "wf1", "name": "Orders", "nodes": [], "connections": {}})],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let incident = domain::drift::create_incident(
        &mut *tx,
        acme.id,
        &domain::drift::NewIncident {
            environment_id: env.id,
            severity: domain::drift::Severity::Low,
            title: "acme's drift",
            ttl_hours: 1,
            affected: &json!([]),
            payload: &json!({}),
            check_id: Uuid::now_v7(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let run = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::new(
            acme.id.to_string(),
            "diagnostics.ledger",
            json!({"steps": 1}),
        )
        .run_at(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    let http = reqwest::Client::new();
    for path in [
        format!("/environments/{}", env.id),
        format!("/environments/{}/workflows/wf1", env.id),
        format!("/incidents/{}", incident.id),
        format!("/runs/{run}"),
        format!("/promotions/{}", Uuid::now_v7()),
    ] {
        let get = |caller: &Caller| {
            http.get(app.url(&path))
                .header("cookie", format!("wfo_session={}", caller.token))
                .send()
        };
        let own = get(&acme.admin).await.unwrap_or_else(|e| panic!("{e}"));
        let other = get(&globex.admin).await.unwrap_or_else(|e| panic!("{e}"));
        let body = other.text().await.unwrap_or_default();
        assert!(
            !body.contains("acme-prod") && !body.contains("acme's drift"),
            "{path} leaked: {body}"
        );
        if !path.starts_with("/promotions/") {
            assert_eq!(own.status(), 200, "{path} for its tenant");
        }
        let other_status = get(&globex.admin)
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert_eq!(other_status, 404, "{path} for another tenant");
    }
    let list = http
        .get(app.url("/incidents?status=all"))
        .header("cookie", format!("wfo_session={}", globex.admin.token))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    assert!(!list.contains("acme's drift"));
}

// HEALTH-004: with the database out of reach, pages answer 503 with a page that retries by
// itself (not the sign-in page, no internals); the API answers a stable JSON code.
#[tokio::test]
async fn pages_show_technical_difficulties_when_the_database_is_down() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let http = reqwest::Client::new();
    let page = |path: &'static str| {
        http.get(app.url(path))
            .header("cookie", format!("wfo_session={}", acme.admin.token))
            .send()
    };
    let up = page("/environments")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(up.status(), 200);
    app.db.pool.close().await;
    for path in ["/", "/environments", "/runs"] {
        let down = page(path).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(down.status(), 503, "{path}");
        assert_eq!(
            down.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("15"),
            "{path}"
        );
        let body = down.text().await.unwrap_or_default();
        assert!(body.contains("technical difficulties"), "{path}: {body}");
        assert!(body.contains("http-equiv=\"refresh\""), "{path} retries");
        assert!(
            !body.to_lowercase().contains("pool") && !body.contains("sqlx"),
            "{path} leaks internals: {body}"
        );
    }
    let api = http
        .get(app.url("/api/v1/environments"))
        .bearer_auth(&acme.admin.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(api.status(), 503);
    let body: serde_json::Value = api.json().await.unwrap_or_default();
    assert_eq!(body["code"], "unavailable", "{body}");
}

// NOTIF-005: "Send test" on the notifications page tests a disabled channel and shows what the
// peer said in the channel's row, without reloading the page.
#[tokio::test]
async fn the_notifications_page_tests_a_channel_in_place() {
    let hooks = HookPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::spawn_with(|c| c.notify.allow_private = true).await;
    let acme = app.tenant("acme").await;
    let created = app
        .post(
            "/api/v1/notifications/channels",
            &acme.admin,
            &json!({"name": "Ops Slack", "kind": "slack", "url": hooks.url("/slack/T/B/ok"), "enabled": false}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let channel = created.body["id"].as_str().unwrap_or_default().to_owned();
    let b = Browser::signed_in(&app, &acme.admin.email)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    b.driver
        .goto(app.url("/notifications"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let result = format!("test-result-{channel}");
    assert_eq!(b.text(&result).await, "never");
    b.driver
        .execute("window.__stay = 42;", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.driver
        .find(By::Id(format!("test-{channel}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.until("the test's answer in the row", || async {
        b.text(&result).await == "ok"
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stayed = b
        .driver
        .execute("return window.__stay;", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stayed.json(), &json!(42), "no reload");
    assert_eq!(hooks.requests().len(), 1, "one test message");
    b.screenshot("notifications")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    b.close().await;
}
