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

/// A high-severity drift incident on `environment` with one drifted workflow (`wf1`, Orders).
async fn high_drift_incident(
    app: &TestApp,
    tenant: Uuid,
    environment: Uuid,
    title: &str,
) -> domain::drift::Incident {
    domain::drift::create_incident(
        &app.db.pool,
        tenant,
        &domain::drift::NewIncident {
            environment_id: environment,
            severity: domain::drift::Severity::High,
            title,
            ttl_hours: 24,
            affected: &json!([{"workflow_id": "wf1", "name": "Orders", "kind": "drift", "risk": "high", "summary": "1 changed"}]),
            payload: &json!({}),
            check_id: Uuid::now_v7(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
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
    let incident = high_drift_incident(&app, acme.id, prod, "Drift in Prod").await;
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

/// Inserts an execution of `env` as a sync would have stored it.
async fn execution(
    app: &TestApp,
    t: &TenantFixture,
    env: Uuid,
    (id, workflow, status): (&str, &str, &str),
    minutes_ago: i64,
) {
    sqlx::query(
        "insert into env_executions (environment_id, tenant_id, provider_id, workflow_id, status, mode, finished, started_at, stopped_at, error_message) \
         values ($1, $2, $3, $4, $5, 'trigger', true, now() - make_interval(mins => $6::int), now() - make_interval(mins => $6::int) + interval '1500 milliseconds', $7)",
    )
    .bind(env)
    .bind(t.id)
    .bind(id)
    .bind(workflow)
    .bind(status)
    .bind(i32::try_from(minutes_ago).unwrap_or(i32::MAX))
    .bind((status == "error").then_some("Boom: the node failed"))
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The opening tag of the element with `id` ("" when absent).
fn tag_of<'a>(html: &'a str, id: &str) -> &'a str {
    let Some(at) = html.find(&format!("id=\"{id}\"")) else {
        return "";
    };
    let start = html[..at].rfind('<').unwrap_or(at);
    let end = html[at..].find('>').map_or(html.len(), |e| at + e);
    &html[start..end]
}

/// The execution ids a page lists, in order.
fn listed_executions(html: &str) -> Vec<String> {
    html.split("<tr><td><code>")
        .skip(1)
        .filter_map(|row| row.split('<').next().map(str::to_owned))
        .collect()
}

// The walkthrough: executions were synced but no page listed them.
#[tokio::test]
async fn the_executions_page_lists_filters_and_pages_the_synced_executions() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let (dev_n8n, prod_n8n, other_n8n) = (
        N8nEmulator::start(EmulatorConfig::default()).await,
        N8nEmulator::start(EmulatorConfig::default()).await,
        N8nEmulator::start(EmulatorConfig::default()).await,
    );
    let dev = environment(&app, &acme, "Dev", "dev", &dev_n8n).await;
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    let theirs = environment(&app, &globex, "Theirs", "dev", &other_n8n).await;
    // 60 in Dev (every fifth an error of workflow wf-b), 3 in Prod, 1 of another tenant.
    for i in 0..60 {
        let (workflow, status) = if i % 5 == 0 {
            ("wf-b", "error")
        } else {
            ("wf-a", "success")
        };
        execution(&app, &acme, dev, (&format!("d{i:03}"), workflow, status), i).await;
    }
    for i in 0..3 {
        execution(
            &app,
            &acme,
            prod,
            (&format!("p{i}"), "wf-a", "success"),
            100 + i,
        )
        .await;
    }
    execution(&app, &globex, theirs, ("g0", "wf-a", "success"), 1).await;

    let (status, first) = page(&app, "/executions", &acme.admin).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first.contains("id=\"nav-executions\""), "in the nav");
    let page1 = listed_executions(&first);
    assert_eq!(page1.len(), 50);
    assert_eq!(page1[0], "d000", "newest first");
    assert!(!page1.contains(&"g0".to_owned()), "another tenant's");
    assert!(href_of(&first, "previous-page").is_none());
    let next = href_of(&first, "next-page").unwrap_or_else(|| panic!("a next page"));
    let (_, second) = page(&app, &next, &acme.admin).await;
    let page2 = listed_executions(&second);
    assert_eq!(page2.len(), 13);
    assert_eq!(page2.last().map(String::as_str), Some("p2"));
    assert!(href_of(&second, "next-page").is_none(), "the last page");
    let back = href_of(&second, "previous-page").unwrap_or_else(|| panic!("a previous page"));
    assert_eq!(back, "/executions");
    // What each row says: its workflow and environment linked, status, duration, error.
    assert!(
        first.contains(&format!("href=\"/environments/{dev}\">Dev</a>"))
            && first.contains(&format!("href=\"/environments/{dev}/workflows/wf-b\">")),
        "{first}"
    );
    assert!(first.contains("1.5 s") && first.contains("Boom: the node failed"));

    // Filters as the API's: environment, workflow, status; they ride along in the page links.
    let (_, html) = page(
        &app,
        &format!("/executions?environment_id={prod}&workflow_id=&status="),
        &acme.admin,
    )
    .await;
    assert_eq!(listed_executions(&html), ["p0", "p1", "p2"]);
    let (_, html) = page(&app, "/executions?status=error", &acme.admin).await;
    assert_eq!(listed_executions(&html).len(), 12);
    let (_, html) = page(
        &app,
        &format!("/executions?environment_id={dev}&workflow_id=wf-a&status=success"),
        &acme.admin,
    )
    .await;
    let listed = listed_executions(&html);
    assert_eq!(listed.len(), 48);
    assert!(listed.iter().all(|x| x.starts_with('d')));
    let (_, html) = page(&app, "/executions?status=waiting", &acme.admin).await;
    assert!(
        html.contains("No execution matches these filters."),
        "{html}"
    );
    // A status the API does not know is a bad link, named; a stale cursor is the first page.
    let (status, html) = page(&app, "/executions?status=exploded", &acme.admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("<code>status</code>"), "{html}");
    let (status, html) = page(&app, "/executions?cursor=garbage", &acme.admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed_executions(&html), page1);
    // The environment's page links to its executions.
    let (_, html) = page(&app, &format!("/environments/{dev}"), &acme.admin).await;
    assert!(html.contains(&format!("href=\"/executions?environment_id={dev}\"")));
    // So does a workflow's page, to the workflow's.
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let wf = n8n.seed_workflows(1, 1).remove(0);
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let synced_env = environment(&app, &acme, "Synced", "dev", &n8n).await;
    sync(&app, &acme, synced_env).await;
    let (_, html) = page(
        &app,
        &format!("/environments/{synced_env}/workflows/{wf}"),
        &acme.admin,
    )
    .await;
    let link = href_of(&html, "workflow-executions").unwrap_or_else(|| panic!("{html}"));
    assert_eq!(
        link,
        format!("/executions?environment_id={synced_env}&workflow_id={wf}")
    );
    // Viewers see them too (the API lets every role list executions).
    let viewer = app.member(&acme, Role::Viewer).await;
    let (status, html) = page(&app, "/executions", &viewer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed_executions(&html).len(), 50);
}

// The walkthrough: `/runs/xyz` answered a plain-text 400, and not-found pages had no layout.
#[tokio::test]
async fn a_bad_or_unknown_id_in_a_page_link_gets_the_not_found_page_in_the_layout() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let nobody = Uuid::now_v7();
    for (path, what) in [
        ("/runs/xyz".to_owned(), "run"),
        (format!("/runs/{nobody}"), "run"),
        ("/environments/nope".to_owned(), "environment"),
        (format!("/environments/{nobody}"), "environment"),
        ("/environments/nope/workflows/1".to_owned(), "workflow"),
        ("/promotions/12".to_owned(), "promotion"),
        (format!("/promotions/{nobody}"), "promotion"),
        ("/incidents/x".to_owned(), "incident"),
        ("/support/x".to_owned(), "ticket"),
    ] {
        let (status, html) = page(&app, &path, &acme.admin).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {html}");
        assert!(html.contains("id=\"not-found\""), "{path}: {html}");
        assert!(
            html.contains(&format!("There is no such {what} here.")),
            "{path}: {html}"
        );
        assert!(
            html.contains(&acme.admin.email) && html.contains("id=\"main-nav\""),
            "{path}: in the layout"
        );
        assert!(!html.contains("Invalid URL"), "{path}: axum's text");
    }
    // Signed out, a bad link is the sign-in page, as any page.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .get(app.url("/runs/xyz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // A path no page has: in the layout when signed in, the bare page when not.
    let browse = |who: Option<String>| {
        let url = app.url("/no-such-page");
        async move {
            let mut req = reqwest::Client::new()
                .get(url)
                .header("accept", "text/html");
            if let Some(token) = who {
                req = req.header("cookie", format!("wfo_session={token}"));
            }
            let res = req.send().await.unwrap_or_else(|e| panic!("{e}"));
            (res.status(), res.text().await.unwrap_or_default())
        }
    };
    let (status, html) = browse(Some(acme.admin.token.clone())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        html.contains("Page not found") && html.contains("id=\"main-nav\""),
        "{html}"
    );
    assert!(html.contains("<code id=\"missing-path\">/no-such-page</code>"));
    let (status, html) = browse(None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("Page not found") && !html.contains("id=\"main-nav\""));
}

// The walkthrough: a promotion's result carried warnings (Make modules left without a
// connection) that its page did not show.
#[tokio::test]
async fn the_promotion_page_shows_the_warnings_of_its_results() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    let (_dev_n8n, dev) = synced(&app, &acme, "Dev", "dev", 2).await;
    let (_prod_n8n, prod) = synced(&app, &acme, "Prod", "production", 0).await;
    let release = pipeline(&app, &acme, dev, prod, 0).await;
    let (promotion, run) =
        promote(&app, &acme, release, &workflow_ids(&app, &acme, dev).await).await;
    workflowops_tests::engine_support::wait_for(&app.db.pool, run, engine::RunStatus::Succeeded)
        .await;
    let path = format!("/promotions/{promotion}");
    let (_, html) = page(&app, &path, &acme.admin).await;
    assert!(html.contains("id=\"results\"") && !html.contains("result-warnings-summary"));
    // The first item as a Make promotion writes one whose connection has no counterpart
    // (the n8n emulator has no such thing; the result is what the promotion job stores).
    let warning = "module `Slack` was left without a connection: its source connection `Team <Slack>` (slack) has no counterpart in the target; choose one in Make";
    sqlx::query(
        "update promotions set results = jsonb_set(results, '{0,warnings}', jsonb_build_array($2::text)) where id = $1",
    )
    .bind(promotion)
    .bind(warning)
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (_, html) = page(&app, &path, &acme.admin).await;
    assert!(
        html.contains("id=\"result-warnings-summary\"")
            && html.contains("1 workflow(s) were written but need a hand in Prod"),
        "{html}"
    );
    assert!(
        html.contains("module `Slack` was left without a connection: its source connection `Team &#60;Slack&#62;`")
            || html.contains("module `Slack` was left without a connection: its source connection `Team &lt;Slack&gt;`"),
        "the warning, escaped: {html}"
    );
}

// The walkthrough: environments could not be changed or deleted, nor pipelines deleted, from
// the UI; what is offered follows the role.
#[tokio::test]
async fn environment_and_pipeline_changes_are_offered_to_the_roles_that_may_make_them() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let (dev_n8n, prod_n8n) = (
        N8nEmulator::start(EmulatorConfig::default()).await,
        N8nEmulator::start(EmulatorConfig::default()).await,
    );
    let dev = environment(&app, &acme, "Dev", "dev", &dev_n8n).await;
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    let release = pipeline(&app, &acme, dev, prod, 0).await;
    let env_page = format!("/environments/{dev}");

    let (_, html) = page(&app, &env_page, &acme.admin).await;
    assert!(html.contains("id=\"edit-environment\"") && html.contains("id=\"delete-environment\""));
    assert!(!html.contains("id=\"settings-denied\""));
    assert!(
        html.contains(&format!("value=\"{}\"", dev_n8n.base_url())),
        "the URL to edit"
    );
    assert!(
        !html.contains(&dev_n8n.api_key()),
        "the stored key is never shown"
    );
    assert!(html.contains("id=\"check-health\""));
    let (_, html) = page(&app, "/pipelines", &acme.admin).await;
    let delete = format!("delete-pipeline-{release}");
    assert!(tag_of(&html, &delete).contains("data-confirm"), "{html}");
    assert!(!tag_of(&html, &delete).contains("disabled"));

    // A developer may check health but neither change nor delete the environment.
    let developer = app.member(&acme, Role::Developer).await;
    let (_, html) = page(&app, &env_page, &developer).await;
    assert!(
        html.contains("Your role (developer) cannot change or delete environments."),
        "{html}"
    );
    assert_eq!(
        html.matches("<fieldset class=\"editor\" disabled>").count(),
        2
    );
    assert!(!tag_of(&html, "check-health").is_empty());
    assert!(!tag_of(&html, "check-health").contains("disabled"));
    // A viewer cannot delete a pipeline.
    let viewer = app.member(&acme, Role::Viewer).await;
    let (_, html) = page(&app, "/pipelines", &viewer).await;
    assert!(
        tag_of(&html, &delete).contains("disabled title=\"your role (viewer) cannot do this\""),
        "{html}"
    );
    let (_, html) = page(&app, &env_page, &viewer).await;
    assert!(tag_of(&html, "check-health").contains("disabled"));
}

#[cfg(feature = "browser")]
mod browser {
    use std::time::Duration;

    use domain::Role;
    use engine::RunStatus;
    use serde_json::json;
    use thirtyfour::prelude::*;
    use uuid::Uuid;
    use workflowops_tests::TestApp;
    use workflowops_tests::browser::Browser;
    use workflowops_tests::engine_support::{TestWorker, eventually, wait_for};

    use super::{pipeline, promote, synced, workflow_ids};
    use crate::e2e::canonical::environment;

    /// Marks the page: a reload loses the mark (see [`stayed`]).
    async fn mark(b: &Browser) -> anyhow::Result<()> {
        b.js("window.__stay = 42; return true;").await?;
        Ok(())
    }

    async fn stayed(b: &Browser) -> anyhow::Result<bool> {
        Ok(b.js("return window.__stay === 42;").await? == json!(true))
    }

    /// How many times the page swapped in fresh parts after its run changed.
    async fn refreshes(b: &Browser) -> anyhow::Result<i64> {
        Ok(
            b.js("return Number(document.documentElement.dataset.refreshed ?? 0);")
                .await?
                .as_i64()
                .unwrap_or(-1),
        )
    }

    /// The pipeline editor's error, as shown ("" when hidden).
    async fn editor_error(b: &Browser) -> String {
        b.js("const e = document.querySelector('#pipeline-editor [data-error]'); return e.hidden ? '' : e.textContent;",
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
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.driver
                .goto(app.url(&format!("/promotions/{promotion}")))
                .await?;
            mark(&b).await?;
            assert_eq!(b.text("promotion-status").await, "completed");
            // The stream replays the run's history (its log, its last state) and ends.
            b.until_text("run-status", "succeeded").await?;
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
                b.js("return document.getElementById('live').dataset.refreshOnEnd === undefined;")
                    .await?
                    == json!(true)
            );
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("finished-promotion", steps).await;
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
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
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
            b.until_text("promotion-status", "pending_approval").await?;
            b.until_text("diff", "ADDED").await?;
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
            b.until_text("promotion-status", "completed").await?;
            b.until_text("results", "created").await?;
            wait_for(&app.db.pool, run, RunStatus::Succeeded).await;
            assert!(stayed(&b).await?, "without a reload");
            assert!(refreshes(&b).await? >= 2, "the approval, then the end");
            assert_eq!(events_opened(&app, run).await, 1, "one stream for the page");
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("new-promotion", steps).await;
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
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.driver
                .goto(app.url(&format!("/environments/{env}")))
                .await?;
            assert!(b.text("last-sync").await.contains("never"));
            assert!(b.text("env-runs").await.contains("Nothing has run yet"));
            // The file input of "Upload JSON" stays hidden (`input {display: block}` showed it).
            let display = b.js("return getComputedStyle(document.querySelector('input[data-upload]')).display;",
            )
            .await?;
            assert_eq!(display, json!("none"));
            mark(&b).await?;
            b.driver.find(By::Id("sync")).await?.click().await?;
            b.until_text("last-sync", "succeeded").await?;
            b.until_text("env-summary", "3 workflows").await?;
            b.until_text("env-runs", "environment.sync").await?;
            assert!(stayed(&b).await?, "without a reload");
            assert!(!b.text("log").await.is_empty(), "the live log stays");
            let cancel_hidden = b
                .js("return document.getElementById('cancel').hidden;")
                .await?;
            assert_eq!(cancel_hidden, json!(true), "no Cancel for a finished run");
            // Opened again, the finished sync is no longer followed.
            b.driver.refresh().await?;
            assert!(b.text("last-sync").await.contains("succeeded"));
            let live = b
                .js("return document.getElementById('live').hidden;")
                .await?;
            assert_eq!(live, json!(true));
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("environment-sync", steps).await;
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
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
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
            b.until_text("workflows", "Seeded workflow 00001").await?;
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
        b.finish("workflows-filter", steps).await;
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
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let stage_value = |i: usize, field: &str| {
            format!(
                "return document.querySelectorAll('#stages fieldset.stage')[{i}].querySelector('[data-field={field}]').value;"
            )
        };
        let steps = async {
            b.driver.goto(app.url("/pipelines")).await?;
            assert_eq!(
                b.js(&stage_value(0, "source_environment_id")).await?,
                json!(dev.to_string())
            );
            assert_eq!(
                b.js(&stage_value(0, "target_environment_id")).await?,
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
                b.js(&stage_value(1, "source_environment_id")).await?,
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
            b.js("document.querySelectorAll('#stages .remove-stage')[1].click(); return true;")
                .await?;
            // Same From and To: said before asking the API, with the name.
            b.js(&format!("document.querySelector('#stages [data-field=target_environment_id]').value = '{dev}'; return true;"),
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
            b.js(&format!(
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
            let provider_kept = b.js("const p = document.getElementById('pipeline-provider'); return [p.value, p.disabled];").await?;
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
        b.finish("pipeline-editor", steps).await;
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
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let visible = |form: &'static str| {
            format!(
                "const e = document.querySelector('{form} [data-error]'); return e.hidden ? '' : e.textContent;"
            )
        };
        let steps = async {
            b.driver.goto(app.url("/settings")).await?;
            let ttl = b.driver.find(By::Name("ttl_low_hours")).await?;
            ttl.clear().await?;
            ttl.send_keys("99999").await?;
            b.driver.find(By::Id("save-policy")).await?.click().await?;
            b.until("the refusal", || async {
                b.js(&visible("#drift-policy"))
                    .await
                    .is_ok_and(|t| t.as_str().is_some_and(|t| !t.is_empty()))
            })
            .await?;
            ttl.clear().await?;
            ttl.send_keys("48").await?;
            b.driver.find(By::Id("save-policy")).await?.click().await?;
            b.until("saved", || async {
                b.js("return !document.getElementById('policy-saved').hidden;")
                    .await
                    .is_ok_and(|v| v == json!(true))
            })
            .await?;
            assert_eq!(
                b.js(&visible("#drift-policy")).await?,
                json!(""),
                "the old error is gone"
            );

            b.driver
                .goto(app.url(&format!("/promotions/new?pipeline_id={release}&stage=0")))
                .await?;
            b.driver.find(By::Id("preview")).await?.click().await?;
            b.until("the refusal", || async {
                b.js(&visible("#wizard"))
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
            b.until_text("preview-table", "ADDED").await?;
            assert_eq!(
                b.js(&visible("#wizard")).await?,
                json!(""),
                "the old error is gone"
            );
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("errors-clear", steps).await;
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
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
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
                let size = b
                    .js(
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
            assert_eq!(b.js(nav).await?, json!("none"));
            b.js("document.getElementById('phone').contentDocument.getElementById('menu-toggle').click(); return true;",
            )
            .await?;
            assert_eq!(b.js(nav).await?, json!("flex"));
            b.screenshot("narrow-menu").await?;
            // The long name breaks inside its heading.
            phone(&b, &format!("/environments/{env}")).await?;
            let fits = b.js("const h = document.getElementById('phone').contentDocument.querySelector('h1'); \
                 return h.scrollWidth <= h.clientWidth;",
            )
            .await?;
            assert_eq!(fits, json!(true));
            b.screenshot("narrow-environment").await?;
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("narrow", steps).await;
    }

    /// Opens `path` in a 390 × 844 frame (`#phone`) of the current page, and waits for it.
    async fn phone(b: &Browser, path: &str) -> anyhow::Result<()> {
        b.js(&format!(
            "document.getElementById('phone')?.remove(); \
                 const f = document.createElement('iframe'); f.id = 'phone'; \
                 f.style.cssText = 'width: 390px; height: 844px; border: 0; display: block'; \
                 f.src = {path:?}; document.body.prepend(f); return true;"
        ))
        .await?;
        b.until(&format!("{path} in the frame"), || async {
            b.js(&format!(
                "const f = document.getElementById('phone'); \
                     return !!f && f.contentWindow.location.pathname === {path:?} \
                       && f.contentDocument.readyState === 'complete';"
            ))
            .await
            .is_ok_and(|v| v == json!(true))
        })
        .await
    }

    /// Whether the element `id` is shown and wholly inside the browser's window.
    async fn in_view(b: &Browser, id: &str) -> anyhow::Result<bool> {
        Ok(b.js(&format!(
            "const e = document.getElementById({id:?}); if (!e || e.hidden) return false; \
             const r = e.getBoundingClientRect(); \
             return r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 \
               && r.bottom <= window.innerHeight && r.right <= window.innerWidth;"
        ))
        .await?
            == json!(true))
    }

    // The walkthrough: the environment page had no way to check health now.
    #[tokio::test]
    async fn check_health_now_shows_the_result_beside_its_button() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let n8n = workflowops_tests::n8n::N8nEmulator::start(Default::default()).await;
        let env = environment(&app, &acme, "Dev", "dev", &n8n).await;
        let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.driver
                .goto(app.url(&format!("/environments/{env}")))
                .await?;
            assert!(b.text("env-summary").await.contains("health unknown"));
            b.driver.find(By::Id("check-health")).await?.click().await?;
            b.until_text("health-result", "Health: healthy").await?;
            assert!(b.text("health-result").await.contains(" ms"));
            assert!(in_view(&b, "health-result").await?, "where the user is");
            // The page's summary follows, without a reload.
            b.until_text("env-summary", "health healthy").await?;
            let checks = app
                .get(&format!("/api/v1/environments/{env}/health"), &acme.admin)
                .await;
            assert_eq!(checks.body["checks"].as_array().map(Vec::len), Some(1));

            // An instance that fails: the result says so.
            n8n.inject(workflowops_tests::faults::Fault::ServerError { times: 100 });
            b.driver.find(By::Id("check-health")).await?.click().await?;
            b.until("the failed check's result", || async {
                let t = b.text("health-result").await;
                t.starts_with("Health: ") && !t.contains("healthy")
            })
            .await?;
            assert!(in_view(&b, "health-result").await?);
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("check-health", steps).await;
    }

    // The walkthrough: environments could be connected but not changed or deleted in the UI.
    #[tokio::test]
    async fn an_environment_is_changed_and_deleted_from_its_page() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let n8n = workflowops_tests::n8n::N8nEmulator::start(Default::default()).await;
        let env = environment(&app, &acme, "Dev", "dev", &n8n).await;
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            let path = format!("/environments/{env}");
            b.driver.goto(app.url(&path)).await?;
            assert!(!b.driver.source().await?.contains(&n8n.api_key()));
            let form = b.driver.find(By::Id("edit-environment")).await?;
            form.scroll_into_view().await?;
            // A key the instance refuses: tested first, refused, nothing changed.
            let name = form.find(By::Name("name")).await?;
            name.clear().await?;
            name.send_keys("Development").await?;
            form.find(By::Name("api_key"))
                .await?
                .send_keys("not-the-key")
                .await?;
            b.driver
                .find(By::Id("save-environment"))
                .await?
                .click()
                .await?;
            b.until("the refusal", || async {
                b.js("return document.querySelector('#edit-environment [data-error]').textContent;")
                    .await
                    .is_ok_and(|t| t.as_str().is_some_and(|t| !t.is_empty()))
            })
            .await?;
            let unchanged = app.get(&format!("/api/v1{path}"), &acme.admin).await;
            assert_eq!(unchanged.body["name"], "Dev", "{}", unchanged.body);
            // Without the key: the name and class change; the URL, unchanged, is not sent
            // (with it, an unreachable instance would refuse the change).
            b.driver.refresh().await?;
            let form = b.driver.find(By::Id("edit-environment")).await?;
            let name = form.find(By::Name("name")).await?;
            name.clear().await?;
            name.send_keys("Development").await?;
            b.js("document.querySelector('#edit-environment [name=class]').value = 'staging'; return true;")
                .await?;
            n8n.inject(workflowops_tests::faults::Fault::ServerError { times: 100 });
            b.driver
                .find(By::Id("save-environment"))
                .await?
                .click()
                .await?;
            b.until("the page with its new name", || async {
                b.driver.find(By::Css("h1")).await.ok().is_some()
                    && b.js("return document.querySelector('h1').textContent;")
                        .await
                        .is_ok_and(|t| t.as_str().is_some_and(|t| t.contains("Development")))
            })
            .await?;
            let changed = app.get(&format!("/api/v1{path}"), &acme.admin).await;
            assert_eq!(changed.body["name"], "Development");
            assert_eq!(changed.body["class"], "staging");

            // Delete: the name typed wrong is refused by the API, shown; typed right and
            // confirmed, it is gone and the list is shown.
            let confirm = b.driver.find(By::Id("delete-confirm")).await?;
            confirm.scroll_into_view().await?;
            confirm.send_keys("Dev").await?;
            b.driver
                .find(By::Id("delete-environment-button"))
                .await?
                .click()
                .await?;
            b.driver.accept_alert().await?;
            b.until("the refusal", || async {
                b.js("return document.querySelector('#delete-environment [data-error]').textContent;")
                    .await
                    .is_ok_and(|t| t.as_str().is_some_and(|t| t.contains("exact name")))
            })
            .await?;
            // Dismissing the confirmation deletes nothing.
            confirm.clear().await?;
            confirm.send_keys("Development").await?;
            let button = b.driver.find(By::Id("delete-environment-button")).await?;
            button.click().await?;
            b.driver.dismiss_alert().await?;
            assert_eq!(
                app.get(&format!("/api/v1{path}"), &acme.admin).await.status,
                200
            );
            button.click().await?;
            b.driver.accept_alert().await?;
            b.until("the environments page", || async {
                b.driver
                    .current_url()
                    .await
                    .is_ok_and(|u| u.path() == "/environments")
            })
            .await?;
            assert_eq!(
                app.get(&format!("/api/v1{path}"), &acme.admin).await.status,
                404
            );
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("environment-edit", steps).await;
    }

    // The walkthrough: a pipeline could not be deleted in the UI.
    #[tokio::test]
    async fn a_pipeline_is_deleted_from_its_page_once_confirmed() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let (dev_n8n, prod_n8n) = (
            workflowops_tests::n8n::N8nEmulator::start(Default::default()).await,
            workflowops_tests::n8n::N8nEmulator::start(Default::default()).await,
        );
        let dev = environment(&app, &acme, "Dev", "dev", &dev_n8n).await;
        let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
        let release = pipeline(&app, &acme, dev, prod, 0).await;
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.driver.goto(app.url("/pipelines")).await?;
            let delete = b
                .driver
                .find(By::Id(format!("delete-pipeline-{release}")))
                .await?;
            delete.click().await?;
            assert!(b.driver.get_alert_text().await?.contains("release 0"));
            b.driver.dismiss_alert().await?;
            let kept = app
                .get(&format!("/api/v1/pipelines/{release}"), &acme.admin)
                .await;
            assert_eq!(kept.status, 200);
            delete.click().await?;
            b.driver.accept_alert().await?;
            b.until("the pipeline gone from the page", || async {
                b.driver
                    .find(By::Id(format!("pipeline-{release}")))
                    .await
                    .is_err()
            })
            .await?;
            let gone = app
                .get(&format!("/api/v1/pipelines/{release}"), &acme.admin)
                .await;
            assert_eq!(gone.status, 404);
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("pipeline-delete", steps).await;
    }

    async fn promotions_made(app: &TestApp) -> i64 {
        app.count("promotions").await
    }

    /// Ticks every workflow of the wizard (a Back may have kept them ticked), then Promote;
    /// the promotion page it lands on.
    async fn promote_in_wizard(b: &Browser) -> anyhow::Result<String> {
        b.until("the wizard", || async {
            b.driver.find(By::Id("submit-promotion")).await.is_ok()
        })
        .await?;
        b.js("for (const c of document.querySelectorAll('input[name=workflow_ids]')) c.checked = true; return true;")
            .await?;
        let before = b.driver.current_url().await?.to_string();
        b.driver
            .find(By::Id("submit-promotion"))
            .await?
            .click()
            .await?;
        b.until("the promotion's page", || async {
            b.driver.current_url().await.is_ok_and(|u| {
                u.as_str() != before
                    && u.path().starts_with("/promotions/")
                    && u.path() != "/promotions/new"
            })
        })
        .await?;
        Ok(b.driver.current_url().await?.path().to_owned())
    }

    // The walkthrough: Promote, Back, Promote made the same promotion twice.
    #[tokio::test]
    async fn back_then_promote_again_opens_the_promotion_already_made() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
        let (_dev_n8n, dev) = synced(&app, &acme, "Dev", "dev", 2).await;
        let (_prod_n8n, prod) = synced(&app, &acme, "Prod", "production", 0).await;
        let release = pipeline(&app, &acme, dev, prod, 1).await;
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            let wizard = app.url(&format!("/promotions/new?pipeline_id={release}&stage=0"));
            b.driver.goto(&wizard).await?;
            let first = promote_in_wizard(&b).await?;
            assert_eq!(promotions_made(&app).await, 1);
            b.driver.back().await?;
            let again = promote_in_wizard(&b).await?;
            assert_eq!(again, first, "the same promotion");
            assert_eq!(promotions_made(&app).await, 1, "not a second one");
            // Back again, another choice of workflows is another promotion.
            b.driver.back().await?;
            b.until("the wizard", || async {
                b.driver.find(By::Id("submit-promotion")).await.is_ok()
            })
            .await?;
            b.js(
                "const boxes = document.querySelectorAll('input[name=workflow_ids]'); \
                  boxes.forEach((c, i) => { c.checked = i === 0; }); return true;",
            )
            .await?;
            b.driver
                .find(By::Id("submit-promotion"))
                .await?
                .click()
                .await?;
            b.until("another promotion's page", || async {
                b.driver.current_url().await.is_ok_and(|u| {
                    u.path().starts_with("/promotions/")
                        && u.path() != "/promotions/new"
                        && u.path() != first
                })
            })
            .await?;
            assert_eq!(promotions_made(&app).await, 2);
            // The wizard opened anew is a new request, even for the same workflows.
            b.driver.goto(&wizard).await?;
            let fresh = promote_in_wizard(&b).await?;
            assert_ne!(fresh, first);
            assert_eq!(promotions_made(&app).await, 3);
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("wizard-back", steps).await;
    }

    // The walkthrough: a restore's progress and outcome showed at the top of the page, out of
    // sight of its button at the bottom; an incident's revert reloaded with no word of its run.
    #[tokio::test]
    async fn restore_and_revert_outcomes_show_in_the_window_where_the_user_is() {
        let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
        let acme = app.tenant("acme").await;
        let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
        let n8n = workflowops_tests::n8n::N8nEmulator::start(Default::default()).await;
        n8n.seed_workflows(3, 1);
        let env = environment(&app, &acme, "Dev", "dev", &n8n).await;
        let _repo = crate::e2e::git::backed_up(&app, &acme, env).await;
        crate::e2e::git::run(
            &app,
            &acme,
            &format!("/api/v1/environments/{env}/snapshots"),
            Some(&json!({"reason": "before"})),
        )
        .await;
        let incident = super::high_drift_incident(&app, acme.id, env, "Drift in Dev").await;
        let acknowledged = app
            .post(
                &format!("/api/v1/incidents/{}/transition", incident.id),
                &acme.admin,
                &json!({"to": "acknowledged"}),
            )
            .await;
        assert_eq!(acknowledged.status, 200, "{}", acknowledged.body);
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.driver
                .goto(app.url(&format!("/environments/{env}")))
                .await?;
            let restore = b
                .driver
                .find(By::Css("#snapshots button.danger[data-api$='/restore']"))
                .await?;
            restore.scroll_into_view().await?;
            restore.click().await?;
            b.driver.accept_alert().await?;
            b.until_text("notice", "The restore into Dev").await?;
            assert!(in_view(&b, "notice").await?, "the notice where the user is");
            b.until_text("notice", "succeeded").await?;
            assert!(in_view(&b, "notice").await?);
            let link = b
                .js("return document.getElementById('notice-link').getAttribute('href');")
                .await?;
            assert!(
                link.as_str().is_some_and(|l| l.starts_with("/runs/")),
                "{link}"
            );
            b.driver.find(By::Id("notice-close")).await?.click().await?;
            assert!(!in_view(&b, "notice").await?, "dismissed");

            // Revert to Git: its run followed on the page, its outcome in the notice.
            b.driver
                .goto(app.url(&format!("/incidents/{}", incident.id)))
                .await?;
            b.driver.find(By::Id("revert")).await?.click().await?;
            // It starts (the run may end before the notice is read: then it says how).
            b.until_text("notice", "Revert to Git").await?;
            assert!(in_view(&b, "notice").await?);
            b.until("the revert's outcome", || async {
                let t = b.text("notice").await;
                t.contains("Revert to Git succeeded") || t.contains("Revert to Git failed")
            })
            .await?;
            assert!(in_view(&b, "notice").await?);
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("restore-revert", steps).await;
    }
}
