//! The web UI's pages as a UX audit in Chromium found them wanting, and as they are now: a
//! finished run's page never reloads itself; pages follow their run to its end (a promotion also
//! to its approval) and show the outcome without a reload; a filter left at "all" is no filter
//! and a bad link gets a page; the runs page pages; the pipeline editor keeps what it does not
//! show; errors clear after a later success; the nav offers what the role can use; empty states
//! point to pages, not the API; narrow screens fit. Plain HTTP where the HTML says it all,
//! headless Chromium (`tests/src/browser.rs`) where the script matters.

use domain::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;
use workflowops_tests::engine_support::{TestWorker, enqueue};
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};
use workflowops_tests::{Caller, TenantFixture, TestApp};

use super::canonical::{environment, sync};

/// A page as the signed-in `who` gets it, without following redirects.
async fn page(app: &TestApp, path: &str, who: &Caller) -> (StatusCode, String) {
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .get(app.url(path))
        .header("cookie", format!("wfo_session={}", who.token))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (res.status(), res.text().await.unwrap_or_default())
}

/// The `href` of the link with `id`, its `&` unescaped as a browser does.
fn href_of(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[at..];
    let start = rest.find("href=\"")? + 6;
    let end = rest[start..].find('"')?;
    Some(
        rest[start..start + end]
            .replace("&#38;", "&")
            .replace("&amp;", "&"),
    )
}

/// The runs a runs list shows, by the short id each row links with.
fn listed_runs(html: &str) -> Vec<String> {
    html.split("<tr><td><a href=\"/runs/")
        .skip(1)
        .filter_map(|row| row.split('"').next().map(str::to_owned))
        .collect()
}

/// An n8n environment of `t` with `n` one-node workflows (no credentials), synced (a worker must
/// be running).
async fn synced(
    app: &TestApp,
    t: &TenantFixture,
    name: &str,
    class: &str,
    n: usize,
) -> (N8nEmulator, Uuid) {
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    n8n.seed_workflows(n, 1);
    let env = environment(app, t, name, class, &n8n).await;
    sync(app, t, env).await;
    (n8n, env)
}

/// A one-stage n8n pipeline `source → target` needing `approvals` admin approvals.
async fn pipeline(
    app: &TestApp,
    t: &TenantFixture,
    source: Uuid,
    target: Uuid,
    approvals: u32,
) -> Uuid {
    let res = app
        .post(
            "/api/v1/pipelines",
            &t.admin,
            &json!({"name": format!("release {approvals}"), "provider": "n8n", "stages": [{
                "source_environment_id": source, "target_environment_id": target,
                "policy": {"allowPlaceholderCredentials": true},
                "approvals": {"required": approvals, "roles": ["admin"], "allow_self_approval": false}}]}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// The ids of an environment's workflows in the catalog.
async fn workflow_ids(app: &TestApp, t: &TenantFixture, env: Uuid) -> Vec<String> {
    let res = app
        .get(&format!("/api/v1/workflows?environment_id={env}"), &t.admin)
        .await;
    res.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["id"].as_str().map(str::to_owned))
        .collect()
}

/// Requests a promotion through stage 0 of `pipeline`: (promotion, its run).
async fn promote(
    app: &TestApp,
    t: &TenantFixture,
    pipeline: Uuid,
    workflows: &[String],
) -> (Uuid, Uuid) {
    let res = app
        .post(
            "/api/v1/promotions",
            &t.admin,
            &json!({"pipeline_id": pipeline, "stage_index": 0, "workflow_ids": workflows}),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    let id = |key: &str| -> Uuid {
        res.body[key]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    };
    (id("id"), id("run_id"))
}

#[tokio::test]
async fn a_filter_left_at_all_is_no_filter_and_a_bad_link_gets_a_page() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let (_dev, _) = synced(&app, &acme, "Dev", "dev", 3).await;

    // The Workflows form with Environment "all" sends `environment_id=`.
    let (status, html) = page(
        &app,
        "/workflows?search=Seeded+workflow+00001&environment_id=",
        &acme.admin,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("Seeded workflow 00001") && !html.contains("Seeded workflow 00002"),
        "searched across every environment"
    );
    // Blank fields wherever a page reads an id or a number.
    for path in [
        "/promotions/new?pipeline_id=&stage=",
        "/promotions?environment_id=&status=",
        "/matrix?environment_id=",
        "/runs?status=&kind=&cursor=",
        "/?range=",
    ] {
        let (status, html) = page(&app, path, &acme.admin).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
    }
    // A value a page cannot read: a page in the layout naming it, not axum's plain text.
    for (path, field) in [
        ("/promotions/new?pipeline_id=x", "pipeline_id"),
        ("/workflows?environment_id=nope", "environment_id"),
        ("/runs?status=exploded", "status"),
        ("/promotions/new?stage=-1", "stage"),
    ] {
        let (status, html) = page(&app, path, &acme.admin).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            html.contains("id=\"bad-request\"") && html.contains(&format!("<code>{field}</code>")),
            "{path}: {html}"
        );
        assert!(html.contains(&acme.admin.email), "{path}: in the layout");
        assert!(!html.contains("Failed to deserialize"), "{path}");
    }
    // The platform's lists read their numbers the same way.
    let ops = app.platform_admin().await;
    let (status, html) = page(&app, "/platform/runs?limit=&tenant=", &ops).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let (status, _) = page(&app, "/platform/environments?limit=many", &ops).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_search_longer_than_the_limit_is_shortened_and_says_so() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let long = "x".repeat(250);
    for path in ["/workflows", "/audit"] {
        let (status, html) = page(&app, &format!("{path}?search={long}"), &acme.admin).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(html.contains("id=\"search-shortened\""), "{path}: says so");
        assert!(
            html.contains(&format!("value=\"{}\"", "x".repeat(200))),
            "{path}: the box shows what was searched for"
        );
        assert!(!html.contains(&"x".repeat(201)), "{path}");
    }
    let (_, html) = page(&app, "/workflows?search=xyz", &acme.admin).await;
    assert!(!html.contains("search-shortened"));
    assert!(html.contains("No workflow matches these filters."));
}

#[tokio::test]
async fn the_runs_page_pages_through_the_runs_and_says_what_each_is_for() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let env = environment(&app, &acme, "Prod", "production", &n8n).await;
    let ns = acme.id.to_string();
    // No worker runs: the runs stay queued, newest last.
    let mut ids = Vec::new();
    for i in 0..120 {
        ids.push(
            enqueue(
                &app.db.pool,
                &engine::NewRun::new(&ns, "test.noop", json!({"i": i}))
                    .labels(json!({"environment_id": env}))
                    .created_by(acme.admin.email.clone()),
            )
            .await,
        );
    }
    let health = enqueue(
        &app.db.pool,
        &engine::NewRun::new(
            &ns,
            "environment.health_check",
            json!({"environment_id": env}),
        )
        .created_by(format!("schedule:environment:{env}:health")),
    )
    .await;
    let short = |id: &Uuid| id.to_string();

    let (status, first) = page(&app, "/runs?kind=test.noop", &acme.admin).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let page1 = listed_runs(&first);
    assert_eq!(page1.len(), 50);
    assert!(href_of(&first, "previous-page").is_none());
    assert!(
        first.contains(&format!("href=\"/environments/{env}\">Prod</a>")),
        "what it is for"
    );
    let next = href_of(&first, "next-page").unwrap_or_else(|| panic!("a next page"));
    let (_, second) = page(&app, &next, &acme.admin).await;
    let page2 = listed_runs(&second);
    assert_eq!(page2.len(), 50);
    let next = href_of(&second, "next-page").unwrap_or_else(|| panic!("a third page"));
    let (_, third) = page(&app, &next, &acme.admin).await;
    let page3 = listed_runs(&third);
    assert_eq!(page3.len(), 20, "{next}");
    // Every run once, newest first (ids are UUIDv7: their order is creation order).
    let all: Vec<String> = [page1.clone(), page2.clone(), page3].concat();
    let mut expected: Vec<String> = ids.iter().map(short).collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(all, expected);
    assert!(href_of(&third, "next-page").is_none(), "the last page");
    // Previous goes back the way it came, to the first page.
    let back = href_of(&third, "previous-page").unwrap_or_else(|| panic!("a previous page"));
    let (_, again) = page(&app, &back, &acme.admin).await;
    assert_eq!(listed_runs(&again), page2);
    let back = href_of(&again, "previous-page").unwrap_or_else(|| panic!("a previous page"));
    assert_eq!(back, "/runs?kind=test.noop");

    // Filters as the API's: kind and status; the schedule named in words.
    let (_, html) = page(&app, "/runs?kind=environment.health_check", &acme.admin).await;
    assert_eq!(listed_runs(&html), vec![short(&health)]);
    assert!(html.contains("schedule: health check (Prod)"), "{html}");
    assert!(!html.contains("schedule:environment:"));
    let (_, html) = page(&app, "/runs?status=failed", &acme.admin).await;
    assert!(html.contains("No run matches these filters."));
    // Earlier links called the kind `search`.
    let (_, html) = page(
        &app,
        "/runs?status=queued&search=environment.health_check",
        &acme.admin,
    )
    .await;
    assert_eq!(listed_runs(&html).len(), 1);
}

#[tokio::test]
async fn empty_states_point_to_the_pages_that_fill_them() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let (_, html) = page(&app, "/promotions", &acme.admin).await;
    assert!(
        html.contains("href=\"/pipelines\">define a pipeline</a>"),
        "{html}"
    );
    let (_, html) = page(&app, "/matrix", &acme.admin).await;
    assert!(html.contains("href=\"/settings#canonical-repo\""), "{html}");
    for path in ["/promotions", "/matrix"] {
        let (_, html) = page(&app, path, &acme.admin).await;
        assert!(
            !html.contains("API:") && !html.contains("/api/v1/pipelines"),
            "{path}"
        );
    }
    // With a pipeline, the promotions page says to start one instead.
    let (dev, prod) = (
        N8nEmulator::start(EmulatorConfig::default()).await,
        N8nEmulator::start(EmulatorConfig::default()).await,
    );
    let (dev, prod) = (
        environment(&app, &acme, "Dev", "dev", &dev).await,
        environment(&app, &acme, "Prod", "production", &prod).await,
    );
    pipeline(&app, &acme, dev, prod, 0).await;
    let (_, html) = page(&app, "/promotions", &acme.admin).await;
    assert!(!html.contains("define a pipeline"), "{html}");
    assert!(html.contains("href=\"/promotions/new\">start one</a>"));
    let (_, html) = page(&app, "/promotions?status=failed", &acme.admin).await;
    assert!(html.contains("No promotion is failed."));
}

#[tokio::test]
async fn the_nav_offers_the_pages_a_role_can_use_and_a_viewer_cannot_edit_pipelines() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let viewer = app.member(&acme, Role::Viewer).await;
    let (_, html) = page(&app, "/pipelines", &viewer).await;
    assert!(!html.contains("href=\"/audit\"") && !html.contains("href=\"/workers\""));
    assert!(
        html.contains("<fieldset class=\"editor\" disabled>"),
        "{html}"
    );
    assert!(html.contains("Your role (viewer) cannot change pipelines."));
    let (_, html) = page(&app, "/pipelines", &acme.admin).await;
    assert!(html.contains("href=\"/audit\"") && !html.contains("href=\"/workers\""));
    assert!(html.contains("<fieldset class=\"editor\" >"), "{html}");
    let ops = app.platform_admin().await;
    let (_, html) = page(&app, "/", &ops).await;
    assert!(html.contains("href=\"/workers\""));
}

#[tokio::test]
async fn incident_buttons_say_what_they_do_and_affected_workflows_link_to_their_pages() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let prod = environment(&app, &acme, "Prod", "production", &n8n).await;
    let incident = domain::drift::create_incident(
        &app.db.pool,
        acme.id,
        &domain::drift::NewIncident {
            environment_id: prod,
            severity: domain::drift::Severity::High,
            title: "Drift in Prod",
            ttl_hours: 24,
            affected: &json!([{"workflow_id": "wf1", "name": "Orders", "kind": "drift", "risk": "high", "summary": "1 changed"}]),
            payload: &json!({}),
            check_id: Uuid::now_v7(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let path = format!("/incidents/{}", incident.id);
    let (_, html) = page(&app, &path, &acme.admin).await;
    assert!(html.contains(">Acknowledge</button>"), "{html}");
    assert!(html.contains(&format!(
        "href=\"/environments/{prod}/workflows/wf1\">Orders</a>"
    )));
    let to = |status: &str| json!({"to": status});
    let res = app
        .post(
            &format!("/api/v1/incidents/{}/transition", incident.id),
            &acme.admin,
            &to("acknowledged"),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let (_, html) = page(&app, &path, &acme.admin).await;
    assert!(
        html.contains(">Mark stabilized</button>") && html.contains(">Close</button>"),
        "{html}"
    );
    assert!(!html.contains(">stabilized</button>"));
}

#[tokio::test]
async fn the_dashboard_marks_its_range_and_says_when_it_does_not_know_one() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let (_, html) = page(&app, "/?range=7d", &acme.admin).await;
    assert!(
        html.contains("<a href=\"/?range=7d\" aria-current=\"page\">7d</a>"),
        "{html}"
    );
    assert!(!html.contains("range-notice"));
    let (_, html) = page(&app, "/?range=bogus", &acme.admin).await;
    assert!(html.contains("<a href=\"/?range=24h\" aria-current=\"page\">24h</a>"));
    assert!(
        html.contains("id=\"range-notice\"") && html.contains("“bogus”"),
        "{html}"
    );
}

#[cfg(feature = "browser")]
mod browser {
    use std::time::Duration;

    use domain::Role;
    use engine::RunStatus;
    use serde_json::{Value, json};
    use thirtyfour::prelude::*;
    use uuid::Uuid;
    use workflowops_tests::TestApp;
    use workflowops_tests::browser::Browser;
    use workflowops_tests::engine_support::{TestWorker, eventually, wait_for};

    use super::{pipeline, promote, synced, workflow_ids};
    use crate::e2e::canonical::environment;

    /// Closes the browser; a failed `steps` first leaves a screenshot, then fails the test.
    async fn finish(b: Browser, name: &str, steps: anyhow::Result<()>) {
        if let Err(e) = steps {
            let _ = b.screenshot(&format!("{name}-failed")).await;
            b.close().await;
            panic!("{e:#}");
        }
        b.close().await;
    }

    async fn js(b: &Browser, script: &str) -> anyhow::Result<Value> {
        Ok(b.driver.execute(script, vec![]).await?.json().clone())
    }

    /// Marks the page: a reload loses the mark (see [`stayed`]).
    async fn mark(b: &Browser) -> anyhow::Result<()> {
        js(b, "window.__stay = 42; return true;").await?;
        Ok(())
    }

    async fn stayed(b: &Browser) -> anyhow::Result<bool> {
        Ok(js(b, "return window.__stay === 42;").await? == json!(true))
    }

    /// How many times the page swapped in fresh parts after its run changed.
    async fn refreshes(b: &Browser) -> anyhow::Result<i64> {
        Ok(js(
            b,
            "return Number(document.documentElement.dataset.refreshed ?? 0);",
        )
        .await?
        .as_i64()
        .unwrap_or(-1))
    }

    async fn until_text(b: &Browser, id: &str, needle: &str) -> anyhow::Result<()> {
        let what = format!("#{id} to show {needle:?}");
        match b
            .until(&what, || async { b.text(id).await.contains(needle) })
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("{e}; it shows {:?}", b.text(id).await)),
        }
    }

    /// The pipeline editor's error, as shown ("" when hidden).
    async fn editor_error(b: &Browser) -> String {
        js(
            b,
            "const e = document.querySelector('#pipeline-editor [data-error]'); return e.hidden ? '' : e.textContent;",
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
    }

    async fn events_opened(app: &TestApp, run: Uuid) -> i64 {
        sqlx::query_scalar(
            "select count(*) from audit_logs where action = 'run.events_opened' and target_id = $1",
        )
        .bind(run.to_string())
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or(-1)
    }

    // The audit: a finished promotion's page reloaded itself ~2.5 times a second, forever, each
    // time opening the run's stream again (an audit row each).
    #[tokio::test]
    async fn a_finished_promotions_page_opens_its_run_once_and_never_reloads() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
        let (_dev_n8n, dev) = synced(&app, &acme, "Dev", "dev", 2).await;
        let (_prod_n8n, prod) = synced(&app, &acme, "Prod", "production", 0).await;
        let release = pipeline(&app, &acme, dev, prod, 0).await;
        let (promotion, run) =
            promote(&app, &acme, release, &workflow_ids(&app, &acme, dev).await).await;
        wait_for(&app.db.pool, run, RunStatus::Succeeded).await;
        let b = Browser::start().await.unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.sign_in(&app, &acme.admin.email).await?;
            b.driver
                .goto(app.url(&format!("/promotions/{promotion}")))
                .await?;
            mark(&b).await?;
            assert_eq!(b.text("promotion-status").await, "completed");
            // The stream replays the run's history (its log, its last state) and ends.
            until_text(&b, "run-status", "succeeded").await?;
            eventually(
                "the stream's audit entry",
                Duration::from_secs(10),
                || async { (events_opened(&app, run).await >= 1).then_some(()) },
            )
            .await;
            // Nothing more happens: no reload, no refresh, no second stream. (A window of
            // time is the only way to see that something does not happen; the loop the audit
            // found repeated every 400 ms.)
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert!(stayed(&b).await?, "the page reloaded");
            assert_eq!(refreshes(&b).await?, 0, "a finished run's page refreshed");
            assert_eq!(
                events_opened(&app, run).await,
                1,
                "the stream was opened again"
            );
            assert!(
                js(
                    &b,
                    "return document.getElementById('live').dataset.refreshOnEnd === undefined;"
                )
                .await?
                    == json!(true)
            );
            anyhow::Ok(())
        };
        let steps = steps.await;
        finish(b, "finished-promotion", steps).await;
    }

    // The audit: a new promotion's page stayed `pending` with empty diff and gates, and never
    // showed the approval its run waited for.
    #[tokio::test]
    async fn a_new_promotions_page_shows_its_approval_and_its_outcome_without_a_reload() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
        let (_dev_n8n, dev) = synced(&app, &acme, "Dev", "dev", 2).await;
        let (_prod_n8n, prod) = synced(&app, &acme, "Prod", "production", 0).await;
        let release = pipeline(&app, &acme, dev, prod, 1).await;
        let workflows = workflow_ids(&app, &acme, dev).await;
        // The page opens before the run has compared anything: no worker for now.
        worker.stop().await;
        let (promotion, run) = promote(&app, &acme, release, &workflows).await;
        let admin2 = app.member(&acme, Role::Admin).await;
        let b = Browser::start().await.unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.sign_in(&app, &acme.admin.email).await?;
            b.driver
                .goto(app.url(&format!("/promotions/{promotion}")))
                .await?;
            mark(&b).await?;
            assert!(b.driver.find(By::Id("approval")).await.is_err());
            assert!(b.driver.source().await?.contains("Not computed yet"));
            let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
            // The run compares, checks the gates and waits for the approval: the page shows it.
            b.until("the approval section", || async {
                b.driver.find(By::Id("approval")).await.is_ok()
            })
            .await?;
            until_text(&b, "promotion-status", "pending_approval").await?;
            until_text(&b, "diff", "ADDED").await?;
            b.screenshot("promotion-waiting").await?;
            assert!(stayed(&b).await?, "without a reload");
            let decided = app
                .post(
                    &format!("/api/v1/promotions/{promotion}/approve"),
                    &admin2,
                    &json!({"comment": "ship it"}),
                )
                .await;
            anyhow::ensure!(decided.status == 200, "{}", decided.body);
            // The run goes on and ends: the page shows the outcome, once.
            until_text(&b, "promotion-status", "completed").await?;
            until_text(&b, "results", "created").await?;
            wait_for(&app.db.pool, run, RunStatus::Succeeded).await;
            assert!(stayed(&b).await?, "without a reload");
            assert!(refreshes(&b).await? >= 2, "the approval, then the end");
            assert_eq!(events_opened(&app, run).await, 1, "one stream for the page");
            anyhow::Ok(())
        };
        let steps = steps.await;
        finish(b, "new-promotion", steps).await;
    }

    // The audit: after a successful sync the page still said "Last sync: never · 0 workflows",
    // "Nothing has run yet", and kept a Cancel button that the API refused.
    #[tokio::test]
    async fn the_environment_page_shows_the_sync_result_when_the_run_ends() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let n8n = workflowops_tests::n8n::N8nEmulator::start(Default::default()).await;
        n8n.seed_workflows(3, 1);
        let env = environment(&app, &acme, "Dev", "dev", &n8n).await;
        let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
        let b = Browser::start().await.unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.sign_in(&app, &acme.admin.email).await?;
            b.driver
                .goto(app.url(&format!("/environments/{env}")))
                .await?;
            assert!(b.text("last-sync").await.contains("never"));
            assert!(b.text("env-runs").await.contains("Nothing has run yet"));
            // The file input of "Upload JSON" stays hidden (`input {display: block}` showed it).
            let display = js(
                &b,
                "return getComputedStyle(document.querySelector('input[data-upload]')).display;",
            )
            .await?;
            assert_eq!(display, json!("none"));
            mark(&b).await?;
            b.driver.find(By::Id("sync")).await?.click().await?;
            until_text(&b, "last-sync", "succeeded").await?;
            until_text(&b, "env-summary", "3 workflows").await?;
            until_text(&b, "env-runs", "environment.sync").await?;
            assert!(stayed(&b).await?, "without a reload");
            assert!(!b.text("log").await.is_empty(), "the live log stays");
            let cancel_hidden = js(&b, "return document.getElementById('cancel').hidden;").await?;
            assert_eq!(cancel_hidden, json!(true), "no Cancel for a finished run");
            // Opened again, the finished sync is no longer followed.
            b.driver.refresh().await?;
            assert!(b.text("last-sync").await.contains("succeeded"));
            let live = js(&b, "return document.getElementById('live').hidden;").await?;
            assert_eq!(live, json!(true));
            anyhow::Ok(())
        };
        let steps = steps.await;
        finish(b, "environment-sync", steps).await;
    }

    // The audit: with Environment "all" the Workflows form sent `environment_id=`, answered by
    // a plain-text 400.
    #[tokio::test]
    async fn the_workflows_form_searches_every_environment() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
        let (_dev, _) = synced(&app, &acme, "Dev", "dev", 3).await;
        let (_prod, _) = synced(&app, &acme, "Prod", "production", 2).await;
        let b = Browser::start().await.unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.sign_in(&app, &acme.admin.email).await?;
            b.driver.goto(app.url("/workflows")).await?;
            let search = b.driver.find(By::Name("search")).await?;
            search.send_keys("Seeded workflow 00001").await?;
            b.driver
                .find(By::Css("form.filters button[type=submit]"))
                .await?
                .click()
                .await?;
            b.until("the filtered list", || async {
                b.driver
                    .current_url()
                    .await
                    .is_ok_and(|u| u.query().is_some_and(|q| q.contains("environment_id=")))
            })
            .await?;
            until_text(&b, "workflows", "Seeded workflow 00001").await?;
            let listed = b.text("workflows").await;
            // Both environments have a workflow of that name; nothing else matches.
            assert!(
                listed.contains("Dev") && listed.contains("Prod"),
                "{listed}"
            );
            assert!(!listed.contains("Seeded workflow 00002"), "{listed}");
            anyhow::Ok(())
        };
        let steps = steps.await;
        finish(b, "workflows-filter", steps).await;
    }

    // The audit: a new stage went dev → dev; the editor sent n8n and admin-only approvals
    // whatever the pipeline had; the API's errors named environments by id.
    #[tokio::test]
    async fn the_pipeline_editor_starts_from_the_next_environment_and_keeps_what_it_does_not_show()
    {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let (dev_n8n, prod_n8n) = (
            workflowops_tests::n8n::N8nEmulator::start(Default::default()).await,
            workflowops_tests::n8n::N8nEmulator::start(Default::default()).await,
        );
        // Created production first: the editor still lists them in promotion order.
        let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
        let dev = environment(&app, &acme, "Dev", "dev", &dev_n8n).await;
        let b = Browser::start().await.unwrap_or_else(|e| panic!("{e:#}"));
        let stage_value = |i: usize, field: &str| {
            format!(
                "return document.querySelectorAll('#stages fieldset.stage')[{i}].querySelector('[data-field={field}]').value;"
            )
        };
        let steps = async {
            b.sign_in(&app, &acme.admin.email).await?;
            b.driver.goto(app.url("/pipelines")).await?;
            assert_eq!(
                js(&b, &stage_value(0, "source_environment_id")).await?,
                json!(dev.to_string())
            );
            assert_eq!(
                js(&b, &stage_value(0, "target_environment_id")).await?,
                json!(prod.to_string())
            );
            b.driver
                .find(By::Name("name"))
                .await?
                .send_keys("release")
                .await?;
            // A second stage starts where the first ends; back to Dev makes a cycle, which the
            // API refuses: its message names the environment.
            b.driver.find(By::Id("add-stage")).await?.click().await?;
            assert_eq!(
                js(&b, &stage_value(1, "source_environment_id")).await?,
                json!(prod.to_string())
            );
            b.driver
                .find(By::Id("save-pipeline"))
                .await?
                .click()
                .await?;
            b.until("the cycle refused", || async {
                editor_error(&b).await.contains("cycle")
            })
            .await?;
            let message = editor_error(&b).await;
            assert!(
                message.contains("environment Dev") || message.contains("environment Prod"),
                "{message}"
            );
            assert!(
                !message.contains(&dev.to_string()) && !message.contains(&prod.to_string()),
                "{message}"
            );
            js(
                &b,
                "document.querySelectorAll('#stages .remove-stage')[1].click(); return true;",
            )
            .await?;
            // Same From and To: said before asking the API, with the name.
            js(
                &b,
                &format!("document.querySelector('#stages [data-field=target_environment_id]').value = '{dev}'; return true;"),
            )
            .await?;
            b.driver
                .find(By::Id("save-pipeline"))
                .await?
                .click()
                .await?;
            let message = editor_error(&b).await;
            assert!(
                message.contains("stage 1: From and To are both Dev"),
                "{message}"
            );
            // Two approvals by developers or admins, the requester allowed.
            js(
                &b,
                &format!(
                    "const f = document.querySelector('#stages fieldset.stage'); \
                     f.querySelector('[data-field=target_environment_id]').value = '{prod}'; \
                     f.querySelector('[data-field=approvals]').value = '2'; \
                     f.querySelector('[data-approval-role=developer]').checked = true; \
                     f.querySelector('[data-field=allow_self_approval]').checked = true; return true;"
                ),
            )
            .await?;
            b.driver
                .find(By::Id("save-pipeline"))
                .await?
                .click()
                .await?;
            b.until("the saved pipeline", || async {
                b.driver.find(By::Css("section.pipeline")).await.is_ok()
            })
            .await?;
            let stored = app.get("/api/v1/pipelines", &acme.admin).await.body["items"][0].clone();
            let approvals = json!({"required": 2, "roles": ["developer", "admin"], "allow_self_approval": true});
            assert_eq!(stored["stages"][0]["approvals"], approvals, "{stored}");
            assert_eq!(stored["provider"], "n8n");
            assert!(
                b.text(&format!(
                    "pipeline-{}",
                    stored["id"].as_str().unwrap_or_default()
                ))
                .await
                .contains("2 approvals by developer or admin")
            );
            // What the editor does not show: made inactive, with a promotion window, by the API.
            let id = stored["id"].as_str().unwrap_or_default().to_owned();
            let mut changed = stored.clone();
            changed["active"] = json!(false);
            changed["stages"][0]["window"] = json!({"days": ["mon", "tue"], "start": "09:00", "end": "17:00", "timezone": "UTC"});
            let body = json!({"name": changed["name"], "provider": changed["provider"], "stages": changed["stages"], "active": false});
            let put = app
                .put(&format!("/api/v1/pipelines/{id}"), &acme.admin, &body)
                .await;
            anyhow::ensure!(put.status == 200, "{}", put.body);
            // Edited in the page: the description changes, nothing else.
            b.driver.refresh().await?;
            b.driver
                .find(By::Css("button[data-edit-pipeline]"))
                .await?
                .click()
                .await?;
            let provider_kept = js(&b, "const p = document.getElementById('pipeline-provider'); return [p.value, p.disabled];").await?;
            assert_eq!(provider_kept, json!(["n8n", true]));
            b.screenshot("pipeline-editor").await?;
            b.driver
                .find(By::Name("description"))
                .await?
                .send_keys("dev to prod")
                .await?;
            b.driver
                .find(By::Id("save-pipeline"))
                .await?
                .click()
                .await?;
            b.until("the description saved", || async {
                app.get("/api/v1/pipelines", &acme.admin).await.body["items"][0]["description"]
                    == "dev to prod"
            })
            .await?;
            let edited = app.get("/api/v1/pipelines", &acme.admin).await.body["items"][0].clone();
            assert_eq!(edited["stages"][0]["approvals"], approvals, "{edited}");
            assert_eq!(
                edited["stages"][0]["window"], changed["stages"][0]["window"],
                "{edited}"
            );
            assert_eq!(edited["active"], json!(false), "{edited}");
            assert_eq!(edited["provider"], "n8n");
            anyhow::Ok(())
        };
        let steps = steps.await;
        finish(b, "pipeline-editor", steps).await;
    }

    // The audit: the drift policy showed an old error beside "Saved."; the promotion wizard kept
    // "workflow_ids: …" above a good preview.
    #[tokio::test]
    async fn an_error_clears_when_a_later_attempt_succeeds() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
        let (_dev_n8n, dev) = synced(&app, &acme, "Dev", "dev", 2).await;
        let (_prod_n8n, prod) = synced(&app, &acme, "Prod", "production", 0).await;
        let release = pipeline(&app, &acme, dev, prod, 0).await;
        let b = Browser::start().await.unwrap_or_else(|e| panic!("{e:#}"));
        let visible = |form: &'static str| {
            format!(
                "const e = document.querySelector('{form} [data-error]'); return e.hidden ? '' : e.textContent;"
            )
        };
        let steps = async {
            b.sign_in(&app, &acme.admin.email).await?;
            b.driver.goto(app.url("/settings")).await?;
            let ttl = b.driver.find(By::Name("ttl_low_hours")).await?;
            ttl.clear().await?;
            ttl.send_keys("99999").await?;
            b.driver.find(By::Id("save-policy")).await?.click().await?;
            b.until("the refusal", || async {
                js(&b, &visible("#drift-policy"))
                    .await
                    .is_ok_and(|t| t.as_str().is_some_and(|t| !t.is_empty()))
            })
            .await?;
            ttl.clear().await?;
            ttl.send_keys("48").await?;
            b.driver.find(By::Id("save-policy")).await?.click().await?;
            b.until("saved", || async {
                js(
                    &b,
                    "return !document.getElementById('policy-saved').hidden;",
                )
                .await
                .is_ok_and(|v| v == json!(true))
            })
            .await?;
            assert_eq!(
                js(&b, &visible("#drift-policy")).await?,
                json!(""),
                "the old error is gone"
            );

            b.driver
                .goto(app.url(&format!("/promotions/new?pipeline_id={release}&stage=0")))
                .await?;
            b.driver.find(By::Id("preview")).await?.click().await?;
            b.until("the refusal", || async {
                js(&b, &visible("#wizard"))
                    .await
                    .is_ok_and(|t| t.as_str().is_some_and(|t| t.contains("workflow_ids")))
            })
            .await?;
            b.driver
                .find(By::Css("input[name=workflow_ids]"))
                .await?
                .click()
                .await?;
            b.driver.find(By::Id("preview")).await?.click().await?;
            until_text(&b, "preview-table", "ADDED").await?;
            assert_eq!(
                js(&b, &visible("#wizard")).await?,
                json!(""),
                "the old error is gone"
            );
            anyhow::Ok(())
        };
        let steps = steps.await;
        finish(b, "errors-clear", steps).await;
    }

    // The audit, at 390 px: a 303 px header of 16 links; pages 669–908 px wide; a long
    // environment name past its heading. Each page is opened in a 390 px frame of a page (the
    // browser window cannot be made that narrow everywhere); the media queries see its width.
    #[tokio::test]
    async fn pages_fit_a_phone_and_the_links_fold_behind_a_menu() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
        let long_name = format!("Environment-{}", "x".repeat(88));
        let (_n8n, env) = synced(&app, &acme, &long_name, "dev", 3).await;
        let b = Browser::start().await.unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.sign_in(&app, &acme.admin.email).await?;
            for path in [
                "/".to_owned(),
                format!("/environments/{env}"),
                "/environments".to_owned(),
                "/workflows".to_owned(),
                "/runs".to_owned(),
                "/promotions".to_owned(),
                "/pipelines".to_owned(),
                "/incidents".to_owned(),
                "/matrix".to_owned(),
                "/settings".to_owned(),
            ] {
                phone(&b, &path).await?;
                let size = js(
                    &b,
                    "const d = document.getElementById('phone').contentDocument; \
                     return [d.documentElement.scrollWidth, d.documentElement.clientWidth, \
                     d.querySelector('header.top').getBoundingClientRect().height];",
                )
                .await?;
                let n = |i: usize| size[i].as_f64().unwrap_or(f64::MAX);
                assert!(n(1) <= 390.0, "{path}: the frame is {} px wide", n(1));
                assert!(n(0) <= n(1), "{path} scrolls sideways: {size}");
                assert!(n(2) <= 150.0, "{path}: a {} px header", n(2));
            }
            // The links behind the Menu button.
            let nav = "const f = document.getElementById('phone'); \
                       return f.contentWindow.getComputedStyle(f.contentDocument.getElementById('main-nav')).display;";
            assert_eq!(js(&b, nav).await?, json!("none"));
            js(
                &b,
                "document.getElementById('phone').contentDocument.getElementById('menu-toggle').click(); return true;",
            )
            .await?;
            assert_eq!(js(&b, nav).await?, json!("flex"));
            b.screenshot("narrow-menu").await?;
            // The long name breaks inside its heading.
            phone(&b, &format!("/environments/{env}")).await?;
            let fits = js(
                &b,
                "const h = document.getElementById('phone').contentDocument.querySelector('h1'); \
                 return h.scrollWidth <= h.clientWidth;",
            )
            .await?;
            assert_eq!(fits, json!(true));
            b.screenshot("narrow-environment").await?;
            anyhow::Ok(())
        };
        let steps = steps.await;
        finish(b, "narrow", steps).await;
    }

    /// Opens `path` in a 390 × 844 frame (`#phone`) of the current page, and waits for it.
    async fn phone(b: &Browser, path: &str) -> anyhow::Result<()> {
        js(
            b,
            &format!(
                "document.getElementById('phone')?.remove(); \
                 const f = document.createElement('iframe'); f.id = 'phone'; \
                 f.style.cssText = 'width: 390px; height: 844px; border: 0; display: block'; \
                 f.src = {path:?}; document.body.prepend(f); return true;"
            ),
        )
        .await?;
        b.until(&format!("{path} in the frame"), || async {
            js(
                b,
                &format!(
                    "const f = document.getElementById('phone'); \
                     return !!f && f.contentWindow.location.pathname === {path:?} \
                       && f.contentDocument.readyState === 'complete';"
                ),
            )
            .await
            .is_ok_and(|v| v == json!(true))
        })
        .await
    }
}
