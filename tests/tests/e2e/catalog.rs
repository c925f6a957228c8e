//! The catalog read from providers: workflow, execution and credential lists, their filters and
//! paging, tags, scoped syncs and execution analytics.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::engine_support::TestWorker;
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator, NewExecution};
use workflowops_tests::{TenantFixture, TestApp};

use super::canonical::environment;
use super::git::run;

fn worker(app: &TestApp, slots: u32) -> TestWorker {
    TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), slots)
}

/// Syncs `scope` of the environment and waits for the run to succeed; its output.
async fn sync(app: &TestApp, t: &TenantFixture, env: Uuid, scope: &str) -> Value {
    run(
        app,
        t,
        &format!("/api/v1/environments/{env}/sync"),
        Some(&json!({"scope": scope})),
    )
    .await
}

/// A one-node workflow (a schedule trigger, so it can be active) with these fields on top.
fn workflow(id: &str, name: &str, extra: &Value) -> Value {
    let mut wf = json!({
        "id": id, "name": name,
        "nodes": [{"id": format!("{id}-trigger"), "name": "Schedule Trigger",
                   "type": "n8n-nodes-base.scheduleTrigger", "typeVersion": 1.2,
                   "position": [0, 0], "parameters": {}}],
        "connections": {}, "settings": {"executionOrder": "v1"},
    });
    if let (Some(wf), Some(extra)) = (wf.as_object_mut(), extra.as_object()) {
        wf.extend(extra.clone());
    }
    wf
}

fn approx(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 0.01)
}

fn items(body: &Value) -> Vec<Value> {
    body["items"].as_array().cloned().unwrap_or_default()
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Executions with known workflows, statuses, starts and durations, in two environments.
///
/// Prod (`ZETA` is executed most but sorts last by name and id; `ABLE` second):
///
/// | workflow | status   | started      | ms    | error                 |
/// |----------|----------|--------------|-------|-----------------------|
/// | ZETA     | error    | now - 5 h    | 400   | boom: older           |
/// | ZETA     | error    | now - 30 min | 1000  | boom: latest          |
/// | ZETA     | success  | now - 1 h    | 100   |                       |
/// | ZETA     | success  | now - 2 h    | 200   |                       |
/// | ZETA     | success  | now - 3 h    | 300   |                       |
/// | ABLE     | success  | now - 26 h   | 500   |                       |
/// | ABLE     | canceled | now - 2 d    | 50    |                       |
/// | ZETA     | error    | now - 10 d   | 10000 | boom: ancient         |
/// | ABLE     | error    | now - 60 d   | 2000  | beta failed long ago  |
///
/// (in this order: the latest failure of ZETA has neither the lowest nor the highest id.)
///
/// Staging (`GAMMA`): success now - 20 min 700 ms; error now - 40 min 900 ms "gamma broke".
struct Executions {
    app: TestApp,
    acme: TenantFixture,
    prod: Uuid,
    staging: Uuid,
    now: DateTime<Utc>,
    /// Every execution as (environment, provider id, started), in insertion order.
    all: Vec<Seeded>,
    /// The prod and staging emulators, and the worker.
    peers: (N8nEmulator, N8nEmulator, TestWorker),
}

/// An execution to seed: workflow, status, start, milliseconds, error.
type Planned = (
    &'static str,
    &'static str,
    DateTime<Utc>,
    i64,
    Option<&'static str>,
);

/// A seeded execution: environment, provider id, start.
type Seeded = (Uuid, String, DateTime<Utc>);

const ABLE: &str = "wf00000000000001";
const ZETA: &str = "wf00000000000002";
const GAMMA: &str = "wf00000000000003";

async fn executions() -> Executions {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let staging_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    prod_n8n.insert_workflow(workflow(ABLE, "Able invoices", &json!({})));
    prod_n8n.insert_workflow(workflow(ZETA, "Zeta orders", &json!({})));
    staging_n8n.insert_workflow(workflow(GAMMA, "Gamma reports", &json!({})));
    // Whole seconds: what the emulator and the catalog store is then exactly this.
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now);
    let ago = |minutes: i64| now - Duration::minutes(minutes);
    let prod_runs: [Planned; 9] = [
        // ZETA's latest failure has neither the lowest nor the highest id of its failures, so
        // "last" cannot be read off ids.
        (ZETA, "error", ago(300), 400, Some("boom: older")),
        (ZETA, "error", ago(30), 1000, Some("boom: latest")),
        (ZETA, "success", ago(60), 100, None),
        (ZETA, "success", ago(120), 200, None),
        (ZETA, "success", ago(180), 300, None),
        (ABLE, "success", ago(26 * 60), 500, None),
        (ABLE, "canceled", ago(2 * 24 * 60), 50, None),
        (
            ZETA,
            "error",
            ago(10 * 24 * 60),
            10_000,
            Some("boom: ancient"),
        ),
        (
            ABLE,
            "error",
            ago(60 * 24 * 60),
            2000,
            Some("beta failed long ago"),
        ),
    ];
    let staging_runs: [Planned; 2] = [
        (GAMMA, "success", ago(20), 700, None),
        (GAMMA, "error", ago(40), 900, Some("gamma broke")),
    ];
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    let staging = environment(&app, &acme, "Staging", "staging", &staging_n8n).await;
    let mut all = Vec::new();
    for (env, n8n, runs) in [
        (prod, &prod_n8n, &prod_runs[..]),
        (staging, &staging_n8n, &staging_runs[..]),
    ] {
        for &(workflow_id, status, started_at, ms, error) in runs {
            let id = n8n.add_execution(&NewExecution {
                workflow_id,
                status,
                started_at,
                duration: Duration::milliseconds(ms),
                error,
            });
            all.push((env, id, started_at));
        }
    }
    let w = worker(&app, 2);
    sync(&app, &acme, prod, "full").await;
    sync(&app, &acme, staging, "full").await;
    Executions {
        app,
        acme,
        prod,
        staging,
        now,
        all,
        peers: (prod_n8n, staging_n8n, w),
    }
}

impl Executions {
    async fn analytics(&self, query: &str) -> Value {
        let res = self
            .app
            .get(
                &format!("/api/v1/executions/analytics{query}"),
                &self.acme.admin,
            )
            .await;
        assert_eq!(res.status, 200, "{query}: {}", res.body);
        res.body
    }

    /// The rows of a list of executions as (environment, provider id), every page walked with
    /// `limit` per page.
    async fn walk(&self, query: &str, limit: u32) -> Vec<(Uuid, String)> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let after = cursor
                .as_deref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default();
            let res = self
                .app
                .get(
                    &format!("/api/v1/executions?limit={limit}{query}{after}"),
                    &self.acme.admin,
                )
                .await;
            assert_eq!(res.status, 200, "{query}: {}", res.body);
            let page = items(&res.body);
            assert!(page.len() <= limit as usize, "{}", res.body);
            out.extend(page.iter().map(|x| {
                (
                    x["environment_id"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_default(),
                    x["provider_id"].as_str().unwrap_or_default().to_owned(),
                )
            }));
            cursor = res.body["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                return out;
            }
        }
        panic!("{query}: paging never ended");
    }
}

/// The workflow row of an analytics answer.
fn row<'a>(body: &'a Value, env: Uuid, workflow_id: &str) -> &'a Value {
    body["workflows"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["workflow_id"] == workflow_id && r["environment_id"] == env.to_string())
        })
        .unwrap_or_else(|| panic!("no row for {workflow_id}: {body}"))
}

fn workflow_order(body: &Value) -> Vec<String> {
    body["workflows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r["workflow_id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// EXEC-006, EXEC-007, EXEC-008, EXEC-009, EXEC-010, EXEC-011, EXEC-012
#[tokio::test]
async fn execution_analytics_computes_totals_percentiles_and_per_workflow_rows_per_range() {
    let f = executions().await;
    let prod = f.prod;

    // The default range (7d), one environment.
    let a = f.analytics(&format!("?environment_id={prod}")).await;
    assert_eq!(a["range"], "7d", "{a}");
    let since = time(&a["since"]).unwrap_or(f.now);
    assert!(
        (f.now - Duration::days(7) - since).num_seconds().abs() < 60,
        "the window is the last 7 days: {a}"
    );
    let t = &a["totals"];
    assert_eq!(
        (
            t["executions"].as_i64(),
            t["succeeded"].as_i64(),
            t["failed"].as_i64()
        ),
        (Some(7), Some(4), Some(2)),
        "EXEC-006: the 10- and 60-day-old executions are outside 7d: {t}"
    );
    assert!(
        approx(&t["success_rate"], 4.0 / 6.0),
        "EXEC-007: succeeded / finished (the canceled one is not finished): {t}"
    );
    assert!(approx(&t["avg_duration_ms"], 2550.0 / 7.0), "EXEC-008: {t}");
    assert!(approx(&a["p50_duration_ms"], 300.0), "EXEC-009 p50: {a}");
    assert!(approx(&t["p95_duration_ms"], 850.0), "EXEC-009 p95: {t}");
    assert_eq!(t["failing_workflows"], 1, "{t}");

    // EXEC-010: most executed first (ZETA sorts after ABLE by name and by id).
    assert_eq!(workflow_order(&a), [ZETA, ABLE], "{a}");
    let zeta = row(&a, prod, ZETA);
    assert_eq!(zeta["workflow_name"], "Zeta orders");
    assert_eq!(zeta["environment_name"], "Prod");
    assert_eq!(
        (
            zeta["executions"].as_i64(),
            zeta["succeeded"].as_i64(),
            zeta["failed"].as_i64()
        ),
        (Some(5), Some(3), Some(2)),
        "{zeta}"
    );
    assert!(approx(&zeta["success_rate"], 0.6), "{zeta}");
    assert!(approx(&zeta["avg_duration_ms"], 400.0), "{zeta}");
    assert!(approx(&zeta["p50_duration_ms"], 300.0), "{zeta}");
    assert!(approx(&zeta["p95_duration_ms"], 880.0), "{zeta}");
    // EXEC-011: the latest failure, by time.
    assert_eq!(
        time(&zeta["last_failure_at"]),
        Some(f.now - Duration::minutes(30)),
        "{zeta}"
    );
    assert_eq!(zeta["last_failure_message"], "boom: latest", "{zeta}");
    let able = row(&a, prod, ABLE);
    assert_eq!(
        (able["executions"].as_i64(), able["failed"].as_i64()),
        (Some(2), Some(0)),
        "{able}"
    );
    assert!(approx(&able["success_rate"], 1.0), "{able}");
    assert!(approx(&able["avg_duration_ms"], 275.0), "{able}");
    assert!(
        able["last_failure_at"].is_null() && able["last_failure_message"].is_null(),
        "no failure in 7d: {able}"
    );

    // EXEC-006: every environment when none is named.
    let every = f.analytics("").await;
    let t = &every["totals"];
    assert_eq!(
        (
            t["executions"].as_i64(),
            t["succeeded"].as_i64(),
            t["failed"].as_i64()
        ),
        (Some(9), Some(5), Some(3)),
        "{t}"
    );
    assert!(approx(&t["success_rate"], 5.0 / 8.0), "{t}");
    assert!(approx(&t["avg_duration_ms"], 4150.0 / 9.0), "{t}");
    assert!(approx(&every["p50_duration_ms"], 400.0), "{every}");
    assert!(approx(&t["p95_duration_ms"], 960.0), "{t}");
    assert_eq!(
        workflow_order(&every).first().map(String::as_str),
        Some(ZETA)
    );
    let gamma = row(&every, f.staging, GAMMA);
    assert_eq!(gamma["environment_name"], "Staging");
    assert_eq!(gamma["last_failure_message"], "gamma broke", "{gamma}");
    let staging_only = f.analytics(&format!("?environment_id={}", f.staging)).await;
    assert_eq!(staging_only["totals"]["executions"], 2, "{staging_only}");
    assert_eq!(workflow_order(&staging_only), [GAMMA]);

    // EXEC-012: ranges.
    let day = f
        .analytics(&format!("?environment_id={prod}&range=24h"))
        .await;
    assert_eq!(day["totals"]["executions"], 5, "{day}");
    assert_eq!(workflow_order(&day), [ZETA], "ABLE last ran 26 h ago");
    let month = f
        .analytics(&format!("?environment_id={prod}&range=30d"))
        .await;
    assert_eq!(month["range"], "30d");
    assert_eq!(month["totals"]["executions"], 8, "{month}");
    let zeta = row(&month, prod, ZETA);
    assert_eq!(zeta["executions"], 6, "the 10-day-old run counts in 30d");
    assert_eq!(zeta["failed"], 3, "{zeta}");
    assert_eq!(zeta["last_failure_message"], "boom: latest", "{zeta}");
    assert_eq!(
        time(&zeta["last_failure_at"]),
        Some(f.now - Duration::minutes(30))
    );
    assert!(approx(&zeta["avg_duration_ms"], 12_000.0 / 6.0), "{zeta}");
    assert!(row(&month, prod, ABLE)["last_failure_at"].is_null());
    let quarter = f
        .analytics(&format!("?environment_id={prod}&range=90d"))
        .await;
    assert_eq!(quarter["range"], "90d");
    assert_eq!(quarter["totals"]["executions"], 9, "{quarter}");
    assert_eq!(workflow_order(&quarter), [ZETA, ABLE]);
    let able = row(&quarter, prod, ABLE);
    assert_eq!(
        (able["executions"].as_i64(), able["failed"].as_i64()),
        (Some(3), Some(1)),
        "{able}"
    );
    assert!(approx(&able["success_rate"], 0.5), "{able}");
    assert_eq!(able["last_failure_message"], "beta failed long ago");
    assert_eq!(
        time(&able["last_failure_at"]),
        Some(f.now - Duration::days(60))
    );

    for bad in ["2w", "7D", "", "365d"] {
        let res = f
            .app
            .get(
                &format!("/api/v1/executions/analytics?range={bad}"),
                &f.acme.admin,
            )
            .await;
        assert_eq!(
            (res.status.as_u16(), res.code()),
            (422, "validation_failed"),
            "range={bad}: {}",
            res.body
        );
    }
    let unknown = f
        .app
        .get(
            &format!(
                "/api/v1/executions/analytics?environment_id={}",
                Uuid::now_v7()
            ),
            &f.acme.admin,
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    // Another tenant sees none of it.
    let other = f.app.tenant("other").await;
    let theirs = f
        .app
        .get("/api/v1/executions/analytics?range=90d", &other.admin)
        .await;
    assert_eq!(theirs.body["totals"]["executions"], 0, "{}", theirs.body);
    assert_eq!(theirs.body["workflows"], json!([]));
}

// EXEC-001, EXEC-002
#[tokio::test]
async fn the_execution_list_filters_by_workflow_environment_and_status_and_pages_to_the_end() {
    let f = executions().await;
    let (prod, staging) = (f.prod, f.staging);
    let mut newest_first = f.all.clone();
    newest_first.sort_by_key(|x| std::cmp::Reverse(x.2));
    let expected = |keep: &dyn Fn(&Seeded) -> bool| -> Vec<(Uuid, String)> {
        newest_first
            .iter()
            .filter(|x| keep(x))
            .map(|x| (x.0, x.1.clone()))
            .collect()
    };

    // EXEC-001: every execution, newest first, in pages of 2: no duplicate, no gap.
    let walked = f.walk("", 2).await;
    assert_eq!(walked, expected(&|_| true), "newest first, every page");
    assert_eq!(
        walked.iter().collect::<HashSet<_>>().len(),
        11,
        "no duplicates"
    );
    // Pages of 1 and of 4 see the same list.
    assert_eq!(f.walk("", 1).await, walked);
    assert_eq!(f.walk("", 4).await, walked);

    // EXEC-002: each filter, with an answer the unfiltered list would not give.
    assert_eq!(
        f.walk(&format!("&environment_id={staging}"), 2).await,
        expected(&|x| x.0 == staging)
    );
    let zeta_ids: HashSet<String> = {
        let res = f
            .app
            .get(
                &format!("/api/v1/executions?workflow_id={ZETA}&limit=200"),
                &f.acme.admin,
            )
            .await;
        let rows = items(&res.body);
        assert!(
            rows.iter().all(|x| x["workflow_id"] == ZETA
                && x["workflow_name"] == "Zeta orders"
                && x["environment_id"] == prod.to_string()),
            "{}",
            res.body
        );
        rows.iter()
            .filter_map(|x| x["provider_id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(zeta_ids.len(), 6, "ZETA ran six times");
    let errors = f.walk("&status=error", 2).await;
    assert_eq!(errors.len(), 5, "{errors:?}");
    let res = f
        .app
        .get("/api/v1/executions?status=error&limit=200", &f.acme.admin)
        .await;
    let rows = items(&res.body);
    assert!(
        rows.iter()
            .all(|x| x["status"] == "error" && x["error_message"].is_string()),
        "{}",
        res.body
    );
    let canceled = f.walk("&status=canceled", 5).await;
    assert_eq!(canceled.len(), 1, "{canceled:?}");
    // Filters combine.
    let prod_errors = f
        .walk(&format!("&environment_id={prod}&status=error"), 1)
        .await;
    assert_eq!(prod_errors.len(), 4);
    assert!(prod_errors.iter().all(|x| x.0 == prod));
    let zeta_successes = f
        .walk(&format!("&workflow_id={ZETA}&status=success"), 3)
        .await;
    assert_eq!(zeta_successes.len(), 3);
    assert!(zeta_successes.iter().all(|x| zeta_ids.contains(&x.1)));
    assert_eq!(
        f.walk(&format!("&environment_id={staging}&workflow_id={ZETA}"), 5)
            .await,
        vec![],
        "ZETA is not in staging"
    );

    // Ties: three more executions starting in the same second as one in staging (ids 10-12,
    // which sort before 9 as text). Pages of any size still see each exactly once.
    let tie = f.now - Duration::minutes(20);
    for _ in 0..3 {
        f.peers.0.add_execution(&NewExecution {
            workflow_id: ZETA,
            status: "success",
            started_at: tie,
            duration: Duration::milliseconds(10),
            error: None,
        });
    }
    sync(&f.app, &f.acme, prod, "executions").await;
    let all = f.walk("", 200).await;
    assert_eq!(all.len(), 14, "{all:?}");
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 14);
    for limit in [1, 2, 3] {
        assert_eq!(f.walk("", limit).await, all, "pages of {limit}");
    }
    assert_eq!(f.walk(&format!("&workflow_id={ZETA}"), 2).await.len(), 9);

    // Every status the list accepts is named by its refusal.
    let refused = f
        .app
        .get("/api/v1/executions?status=exploded", &f.acme.admin)
        .await;
    let message = refused.body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    for status in [
        "success", "error", "running", "waiting", "canceled", "crashed", "new", "unknown",
    ] {
        assert!(message.contains(status), "{status}: {}", refused.body);
        let res = f
            .app
            .get(
                &format!("/api/v1/executions?status={status}"),
                &f.acme.admin,
            )
            .await;
        assert_eq!(res.status, 200, "{status}: {}", res.body);
    }
    for bad in [
        "status=exploded",
        "cursor=not-a-cursor",
        "limit=0",
        "limit=201",
    ] {
        let res = f
            .app
            .get(&format!("/api/v1/executions?{bad}"), &f.acme.admin)
            .await;
        assert_eq!(res.status, 422, "{bad}: {}", res.body);
    }
}

/// Names of a workflow list, in order.
fn names(body: &Value) -> Vec<String> {
    items(body)
        .iter()
        .map(|w| {
            format!(
                "{}/{}",
                w["environment_name"].as_str().unwrap_or_default(),
                w["name"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

// WF-002
#[tokio::test]
async fn the_workflow_list_filters_by_environment_tag_activity_and_archival() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let staging_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    prod_n8n.insert_workflow(workflow(
        "p1",
        "Invoice sync",
        &json!({"tags": ["finance", "nightly"], "active": true}),
    ));
    let lead = prod_n8n.insert_workflow(workflow(
        "p2",
        "Lead import",
        &json!({"tags": ["marketing"]}),
    ));
    prod_n8n.insert_workflow(workflow(
        "p3",
        "Old export",
        &json!({"tags": ["finance"], "isArchived": true}),
    ));
    staging_n8n.insert_workflow(workflow(
        "s1",
        "Invoice sync",
        &json!({"tags": ["finance"]}),
    ));
    staging_n8n.insert_workflow(workflow("s2", "Report mailer", &json!({"active": true})));
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    let staging = environment(&app, &acme, "Staging", "staging", &staging_n8n).await;
    let _w = worker(&app, 2);
    sync(&app, &acme, prod, "workflows").await;
    sync(&app, &acme, staging, "workflows").await;

    let list = |query: String| {
        let (app, acme) = (&app, &acme);
        async move {
            let res = app
                .get(&format!("/api/v1/workflows?{query}"), &acme.admin)
                .await;
            assert_eq!(res.status, 200, "{query}: {}", res.body);
            let mut got = names(&res.body);
            got.sort();
            got
        }
    };
    assert_eq!(
        list(String::new()).await,
        [
            "Prod/Invoice sync",
            "Prod/Lead import",
            "Prod/Old export",
            "Staging/Invoice sync",
            "Staging/Report mailer"
        ]
    );
    assert_eq!(
        list(format!("environment_id={prod}")).await,
        ["Prod/Invoice sync", "Prod/Lead import", "Prod/Old export"]
    );
    assert_eq!(
        list(format!("environment_id={staging}")).await,
        ["Staging/Invoice sync", "Staging/Report mailer"]
    );
    assert_eq!(
        list("tag=finance".into()).await,
        [
            "Prod/Invoice sync",
            "Prod/Old export",
            "Staging/Invoice sync"
        ]
    );
    assert_eq!(
        list(format!("tag=finance&environment_id={staging}")).await,
        ["Staging/Invoice sync"]
    );
    assert_eq!(list("tag=nightly".into()).await, ["Prod/Invoice sync"]);
    assert_eq!(
        list("tag=fin".into()).await,
        Vec::<String>::new(),
        "a tag filter is the whole tag"
    );
    assert_eq!(
        list("active=true".into()).await,
        ["Prod/Invoice sync", "Staging/Report mailer"]
    );
    assert_eq!(
        list("active=false".into()).await,
        [
            "Prod/Lead import",
            "Prod/Old export",
            "Staging/Invoice sync"
        ]
    );
    assert_eq!(list("archived=true".into()).await, ["Prod/Old export"]);
    assert_eq!(
        list("archived=false".into()).await,
        [
            "Prod/Invoice sync",
            "Prod/Lead import",
            "Staging/Invoice sync",
            "Staging/Report mailer"
        ]
    );
    assert_eq!(
        list(format!("tag=finance&active=false&environment_id={prod}")).await,
        ["Prod/Old export"]
    );
    // A filter pages like the whole list: one item per page, every match once.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let res = app
            .get(
                &format!("/api/v1/workflows?tag=finance&limit=1{cursor}"),
                &acme.admin,
            )
            .await;
        paged.extend(names(&res.body));
        match res.body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
        assert!(paged.len() <= 3, "paging never ends: {paged:?}");
    }
    assert_eq!(
        paged,
        [
            "Prod/Invoice sync",
            "Staging/Invoice sync",
            "Prod/Old export"
        ],
        "by name, then environment"
    );

    // Deleted in the provider: hidden unless asked for.
    prod_n8n.remove_workflow(&lead);
    sync(&app, &acme, prod, "workflows").await;
    assert_eq!(
        list(format!("environment_id={prod}")).await,
        ["Prod/Invoice sync", "Prod/Old export"]
    );
    let with_deleted = app
        .get(
            &format!("/api/v1/workflows?environment_id={prod}&include_deleted=true&tag=marketing"),
            &acme.admin,
        )
        .await;
    assert_eq!(names(&with_deleted.body), ["Prod/Lead import"]);
    assert!(
        with_deleted.body["items"][0]["deleted_at"].is_string(),
        "{}",
        with_deleted.body
    );
    assert_eq!(
        app.get("/api/v1/workflows?active=maybe", &acme.admin)
            .await
            .status,
        422
    );
}

// WF-014
#[tokio::test]
async fn tags_set_by_name_are_created_in_the_provider_and_the_catalog_and_audit_follow() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    n8n.add_tag("finance");
    let id = n8n.insert_workflow(workflow(
        "w1",
        "Invoice sync",
        &json!({"tags": ["marketing"]}),
    ));
    let env = environment(&app, &acme, "Dev", "dev", &n8n).await;
    let _w = worker(&app, 2);
    sync(&app, &acme, env, "workflows").await;

    let developer = app.member(&acme, domain::Role::Developer).await;
    let res = app
        .put(
            &format!("/api/v1/environments/{env}/workflows/{id}/tags"),
            &developer,
            &json!({"tags": ["finance", " brand-new ", "finance"]}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body, json!(["finance", "brand-new"]));

    // The provider: the missing tag was created (once), the existing one reused.
    let mut tags = n8n.tag_names();
    tags.sort();
    assert_eq!(tags, ["brand-new", "finance", "marketing"]);
    let in_n8n: Vec<String> = n8n
        .workflow(&id)
        .and_then(|w| w["tags"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(in_n8n, ["finance", "brand-new"]);

    // The catalog, at once (no sync in between).
    let detail = app
        .get(
            &format!("/api/v1/environments/{env}/workflows/{id}"),
            &acme.admin,
        )
        .await;
    assert_eq!(detail.body["tags"], json!(["finance", "brand-new"]));
    let by_tag = app
        .get("/api/v1/workflows?tag=brand-new", &acme.admin)
        .await;
    assert_eq!(names(&by_tag.body), ["Dev/Invoice sync"]);
    let by_old_tag = app
        .get("/api/v1/workflows?tag=marketing", &acme.admin)
        .await;
    assert_eq!(names(&by_old_tag.body), Vec::<String>::new());

    // The audit log: who, what, before and after.
    let logs = app
        .get("/api/v1/audit-logs?action=workflow.tags_set", &acme.admin)
        .await;
    let entries = items(&logs.body);
    assert_eq!(entries.len(), 1, "{}", logs.body);
    let e = &entries[0];
    assert_eq!(e["target_id"], id.as_str());
    assert_eq!(e["provider"], "n8n");
    assert_eq!(
        e["actor_user_id"],
        developer.user_id.map(|u| u.to_string()).unwrap_or_default()
    );
    assert_eq!(e["old_value"], json!(["marketing"]), "{e}");
    assert_eq!(e["new_value"], json!(["finance", "brand-new"]), "{e}");

    // Clearing them; the next sync agrees with what was written.
    let cleared = app
        .put(
            &format!("/api/v1/environments/{env}/workflows/{id}/tags"),
            &developer,
            &json!({"tags": []}),
        )
        .await;
    assert_eq!(cleared.body, json!([]), "{}", cleared.body);
    sync(&app, &acme, env, "workflows").await;
    let detail = app
        .get(
            &format!("/api/v1/environments/{env}/workflows/{id}"),
            &acme.admin,
        )
        .await;
    assert_eq!(detail.body["tags"], json!([]));
    // A viewer may not; an unknown workflow is 404.
    let viewer = app.member(&acme, domain::Role::Viewer).await;
    let refused = app
        .put(
            &format!("/api/v1/environments/{env}/workflows/{id}/tags"),
            &viewer,
            &json!({"tags": ["x"]}),
        )
        .await;
    assert_eq!(refused.status, 403);
    let unknown = app
        .put(
            &format!("/api/v1/environments/{env}/workflows/nope/tags"),
            &developer,
            &json!({"tags": ["x"]}),
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert!(
        !n8n.tag_names().contains(&"x".to_owned()),
        "nothing created for refused requests"
    );
}

/// A workflow whose one node uses a credential of `cred_type` (by id and name).
fn using(id: &str, name: &str, cred_type: &str, cred_id: &str, cred_name: &str) -> Value {
    let mut wf = workflow(id, name, &json!({}));
    if let Some(nodes) = wf["nodes"].as_array_mut() {
        nodes.push(json!({
            "id": format!("{id}-use"), "name": "Use credential", "type": "n8n-nodes-base.httpRequest",
            "typeVersion": 4.2, "position": [200, 0], "parameters": {},
            "credentials": {cred_type: {"id": cred_id, "name": cred_name}},
        }));
    }
    wf["connections"] = json!({"Schedule Trigger": {"main": [[{"node": "Use credential", "type": "main", "index": 0}]]}});
    wf
}

/// `name -> (health, used_by)` of an environment's credentials.
async fn credential_health(
    app: &TestApp,
    t: &TenantFixture,
    env: Uuid,
) -> std::collections::BTreeMap<String, (String, i64)> {
    let res = app
        .get(
            &format!("/api/v1/credentials?environment_id={env}"),
            &t.admin,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                (
                    c["health"].as_str().unwrap_or_default().to_owned(),
                    c["used_by"].as_i64().unwrap_or(-1),
                ),
            )
        })
        .collect()
}

/// `(workflow name, credential type, credential name)` of the environment's missing references.
async fn missing(app: &TestApp, t: &TenantFixture, env: Uuid) -> Vec<(String, String, String)> {
    let res = app
        .get(
            &format!("/api/v1/environments/{env}/credentials/missing"),
            &t.admin,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["workflow_name"].as_str().unwrap_or_default().to_owned(),
                m["cred_type"].as_str().unwrap_or_default().to_owned(),
                m["cred_name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn health(h: &str, used_by: i64) -> (String, i64) {
    (h.to_owned(), used_by)
}

// CRED-005
#[tokio::test]
async fn credential_health_is_ok_unused_or_deleted_and_missing_references_are_listed() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let billing = n8n.add_credential("Billing DB", "postgres");
    n8n.add_credential("Spare SMTP", "smtp");
    let old_api = n8n.add_credential("Old API", "httpHeaderAuth");
    let invoices = n8n.insert_workflow(using("w1", "Invoices", "postgres", &billing, "Billing DB"));
    n8n.insert_workflow(using("w2", "Ledger", "postgres", &billing, "Billing DB"));
    n8n.insert_workflow(using("w3", "Pinger", "httpHeaderAuth", &old_api, "Old API"));
    n8n.insert_workflow(using(
        "w4",
        "Slack alerts",
        "slackApi",
        "never-existed",
        "Ghost",
    ));
    let env = environment(&app, &acme, "Prod", "production", &n8n).await;
    let _w = worker(&app, 2);
    sync(&app, &acme, env, "full").await;

    let creds = credential_health(&app, &acme, env).await;
    assert_eq!(
        creds,
        [
            ("Billing DB".to_owned(), health("ok", 2)),
            ("Old API".to_owned(), health("ok", 1)),
            ("Spare SMTP".to_owned(), health("unused", 0)),
        ]
        .into_iter()
        .collect(),
    );
    assert_eq!(
        missing(&app, &acme, env).await,
        [("Slack alerts".into(), "slackApi".into(), "Ghost".into())]
    );

    // Deleted in n8n: `deleted`, and the workflow using it now misses it.
    n8n.remove_credential(&old_api);
    sync(&app, &acme, env, "credentials").await;
    let creds = credential_health(&app, &acme, env).await;
    assert_eq!(creds["Old API"].0, "deleted", "{creds:?}");
    assert_eq!(
        missing(&app, &acme, env).await,
        [
            ("Pinger".into(), "httpHeaderAuth".into(), "Old API".into()),
            ("Slack alerts".into(), "slackApi".into(), "Ghost".into()),
        ]
    );
    // A workflow deleted in n8n no longer uses anything.
    n8n.remove_workflow(&invoices);
    sync(&app, &acme, env, "workflows").await;
    assert_eq!(
        credential_health(&app, &acme, env).await["Billing DB"],
        health("ok", 1)
    );
    n8n.remove_workflow("w2");
    sync(&app, &acme, env, "workflows").await;
    assert_eq!(
        credential_health(&app, &acme, env).await["Billing DB"],
        health("unused", 0)
    );
    // Another tenant's environment is not found.
    let other = app.tenant("other").await;
    assert_eq!(
        app.get(
            &format!("/api/v1/environments/{env}/credentials/missing"),
            &other.admin
        )
        .await
        .status,
        404
    );
}

/// Live catalog rows of an environment: (workflow name → hash), credential names, execution ids.
async fn catalog_state(
    app: &TestApp,
    env: Uuid,
) -> (Vec<(String, String)>, Vec<String>, Vec<String>) {
    let pool = &app.db.pool;
    let workflows = sqlx::query_as(
        "select name, content_hash from env_workflows where environment_id = $1 and deleted_at is null order by name",
    )
    .bind(env)
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let credentials = sqlx::query_scalar(
        "select name from env_credentials where environment_id = $1 and deleted_at is null order by name",
    )
    .bind(env)
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let executions = sqlx::query_scalar(
        "select provider_id from env_executions where environment_id = $1 order by provider_id::bigint",
    )
    .bind(env)
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (workflows, credentials, executions)
}

// ENV-014, ENV-015, ENV-016
#[tokio::test]
async fn a_scoped_sync_moves_only_its_part_of_the_catalog() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let first = n8n.insert_workflow(workflow("w1", "First", &json!({})));
    n8n.add_credential("Cred one", "postgres");
    let run_one = |n8n: &N8nEmulator, minutes: i64| {
        n8n.add_execution(&NewExecution {
            workflow_id: "w1",
            status: "success",
            started_at: Utc::now() - Duration::minutes(minutes),
            duration: Duration::milliseconds(100),
            error: None,
        })
    };
    let e1 = run_one(&n8n, 30);
    let env = environment(&app, &acme, "Prod", "production", &n8n).await;
    let _w = worker(&app, 2);
    sync(&app, &acme, env, "full").await;
    let initial = catalog_state(&app, env).await;
    assert_eq!(initial.0.len(), 1);
    assert_eq!(
        (initial.1.clone(), initial.2.clone()),
        (vec!["Cred one".to_owned()], vec![e1.clone()])
    );

    // Every part changes in n8n.
    n8n.modify_workflow(&first, |wf| {
        wf["name"] = json!("First, renamed");
    });
    n8n.insert_workflow(workflow("w2", "Second", &json!({})));
    n8n.add_credential("Cred two", "smtp");
    let e2 = run_one(&n8n, 20);

    // ENV-016: executions only.
    let out = sync(&app, &acme, env, "executions").await;
    assert_eq!(
        (out["workflows"].as_u64(), out["credentials"].as_u64()),
        (Some(0), Some(0)),
        "{out}"
    );
    let after = catalog_state(&app, env).await;
    assert_eq!(after.2, [e1.clone(), e2.clone()], "executions moved");
    assert_eq!(
        (&after.0, &after.1),
        (&initial.0, &initial.1),
        "workflows and credentials did not"
    );

    // ENV-015: credentials only.
    let out = sync(&app, &acme, env, "credentials").await;
    assert_eq!(out["credentials"], 2, "{out}");
    let after = catalog_state(&app, env).await;
    assert_eq!(after.1, ["Cred one", "Cred two"], "credentials moved");
    assert_eq!(after.0, initial.0, "workflows did not");

    // ENV-014: workflows only, with new credentials and executions waiting in n8n.
    n8n.add_credential("Cred three", "smtp");
    let _e3 = run_one(&n8n, 10);
    let out = sync(&app, &acme, env, "workflows").await;
    assert_eq!(
        (out["workflows"].as_u64(), out["workflows_changed"].as_u64()),
        (Some(2), Some(2)),
        "{out}"
    );
    let after = catalog_state(&app, env).await;
    assert_eq!(
        after.0.iter().map(|w| w.0.as_str()).collect::<Vec<_>>(),
        ["First, renamed", "Second"],
        "workflows moved"
    );
    assert_ne!(after.0[0].1, initial.0[0].1, "and were rehashed");
    assert_eq!(after.1, ["Cred one", "Cred two"], "credentials did not");
    assert_eq!(after.2, [e1, e2], "executions did not");
}

/// A run as the runs API shows it.
async fn run_view(app: &TestApp, t: &TenantFixture, id: &str) -> Value {
    let res = app.get(&format!("/api/v1/runs/{id}"), &t.admin).await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body
}

// ENV-017
#[tokio::test]
async fn a_sync_reports_progress_to_its_total_and_two_syncs_of_one_environment_never_overlap() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    n8n.seed_workflows(20, 3);
    n8n.seed_executions(30);
    let env = environment(&app, &acme, "Prod", "production", &n8n).await;
    // Every provider call takes a while, so two syncs running side by side would overlap.
    n8n.inject(workflowops_tests::n8n::Fault::Slow {
        times: 10_000,
        delay_ms: 60,
    });
    let start = |scope: &'static str| {
        let (app, acme) = (&app, &acme);
        async move {
            let res = app
                .post(
                    &format!("/api/v1/environments/{env}/sync"),
                    &acme.admin,
                    &json!({"scope": scope}),
                )
                .await;
            assert_eq!(res.status, 202, "{}", res.body);
            res.body["id"].as_str().unwrap_or_default().to_owned()
        }
    };
    // Both queued before any worker runs, so a worker with free slots could take both at once.
    let full = start("full").await;
    let workflows = start("workflows").await;
    let w = worker(&app, 4);
    for id in [&full, &workflows] {
        workflowops_tests::engine_support::wait_for(
            &app.db.pool,
            id.parse().unwrap_or_default(),
            engine::RunStatus::Succeeded,
        )
        .await;
    }
    let a = run_view(&app, &acme, &full).await;
    let b = run_view(&app, &acme, &workflows).await;
    let key = format!("environment:{env}:sync");
    assert_eq!(a["concurrency_key"], key.as_str(), "{a}");
    assert_eq!(b["concurrency_key"], key.as_str(), "{b}");
    let interval = |r: &Value| {
        (
            time(&r["started_at"]).unwrap_or_else(|| panic!("{r}")),
            time(&r["finished_at"]).unwrap_or_else(|| panic!("{r}")),
        )
    };
    let (a_start, a_end) = interval(&a);
    let (b_start, b_end) = interval(&b);
    assert!(
        a_end <= b_start || b_end <= a_start,
        "the two syncs ran at the same time: {a_start}..{a_end} and {b_start}..{b_end}"
    );

    // Progress: done/total on the run, reaching the total (five parts, or the one part).
    assert_eq!(
        (a["progress_done"].as_i64(), a["progress_total"].as_i64()),
        (Some(5), Some(5)),
        "{a}"
    );
    assert_eq!(
        (b["progress_done"].as_i64(), b["progress_total"].as_i64()),
        (Some(1), Some(1)),
        "{b}"
    );
    // …and as events, one per part, in order.
    let res = app
        .http
        .get(app.url(&format!("/api/v1/runs/{full}/events")))
        .bearer_auth(&acme.admin.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events =
        workflowops_tests::sse::read_events(res, std::time::Duration::from_secs(30), |m| {
            m.event == "end"
        })
        .await;
    let progress: Vec<(i64, i64)> = events
        .iter()
        .filter(|e| e.event == "progress")
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .map(|v| {
            (
                v["data"]["done"].as_i64().unwrap_or(-1),
                v["data"]["total"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(progress, [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]);
    n8n.clear_faults();
    w.stop().await;
}

/// Commits `content` at `path` to the repository's main branch, as a person would.
fn commit_file(url: &str, path: &str, content: &Value) {
    let cache = std::env::temp_dir().join(format!("wfo-e2e-person-{}", Uuid::now_v7().simple()));
    let remote = adapters::git::GitRemote {
        url: url.to_owned(),
        branch: "main".into(),
        auth: adapters::git::GitAuth::None,
    };
    let mut checkout =
        adapters::git::Checkout::open(&remote, &cache).unwrap_or_else(|e| panic!("{e}"));
    let mut bytes = serde_json::to_vec_pretty(content).unwrap_or_default();
    bytes.push(b'\n');
    checkout
        .commit_and_push(
            &[(path.to_owned(), Some(bytes))],
            "edit by hand",
            ("Person", "p@example.com"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(cache);
}

/// The matrix cell statuses of one canonical workflow, in column order.
async fn cells(app: &TestApp, t: &TenantFixture, canonical_id: &str) -> Vec<String> {
    let res = app
        .get(
            &format!("/api/v1/canonical/matrix?search={canonical_id}"),
            &t.admin,
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    res.body["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["canonical_id"] == canonical_id))
        .and_then(|r| r["cells"].as_array())
        .map(|c| {
            c.iter()
                .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_else(|| panic!("{canonical_id} not in {}", res.body))
}

async fn linked_hash(app: &TestApp, env: Uuid, provider_id: &str) -> Option<String> {
    sqlx::query_scalar(
        "select linked_hash from workflow_env_map where environment_id = $1 and provider_id = $2",
    )
    .bind(env)
    .bind(provider_id)
    .fetch_optional(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn canonical_hash(app: &TestApp, canonical_id: &str) -> Option<String> {
    sqlx::query_scalar("select content_hash from canonical_workflows where id = $1")
        .bind(canonical_id)
        .fetch_optional(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

// ENV-019, CAN-004
#[tokio::test]
async fn a_workflow_sync_alone_reconciles_the_environment_with_the_canonical_state() {
    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let acme = app.tenant("acme").await;
    let dev_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let dev_ids = dev_n8n.seed_workflows(2, 4);
    let prod_ids = prod_n8n.seed_workflows(2, 4);
    let dev = environment(&app, &acme, "Dev", "dev", &dev_n8n).await;
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    let repo = super::git::bare_repo();
    let put = app
        .put(
            "/api/v1/canonical/repository",
            &acme.admin,
            &json!({"url": repo.0.display().to_string(), "auth": "none"}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let _w = worker(&app, 2);
    sync(&app, &acme, dev, "workflows").await;
    let out = run(
        &app,
        &acme,
        "/api/v1/canonical/onboard",
        Some(&json!({"items": [
            {"environment_id": dev, "workflow_id": dev_ids[0], "canonical_id": "order-sync"},
        ]})),
    )
    .await;
    assert_eq!(out["onboarded"].as_array().map(Vec::len), Some(1), "{out}");
    // Prod was never synced: its copy is not known yet.
    assert_eq!(
        cells(&app, &acme, "order-sync").await,
        ["linked", "missing"]
    );

    // A workflow sync of prod, and nothing else: its untracked copy equal to the canonical
    // workflow is linked; the copy of a workflow nobody onboarded stays untracked.
    sync(&app, &acme, prod, "workflows").await;
    assert_eq!(cells(&app, &acme, "order-sync").await, ["linked", "linked"]);
    let hash = canonical_hash(&app, "order-sync").await;
    assert!(hash.is_some());
    assert_eq!(linked_hash(&app, prod, &prod_ids[0]).await, hash);
    assert_eq!(linked_hash(&app, prod, &prod_ids[1]).await, None);
    let untracked = app
        .get(
            &format!("/api/v1/canonical/untracked?environment_id={prod}"),
            &acme.admin,
        )
        .await;
    let untracked: Vec<&str> = untracked.body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|w| w["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(untracked, [prod_ids[1].as_str()]);

    // The canonical version moves on in Git; prod lags behind, then is edited by hand to the
    // new version: its next workflow sync records the new hash as the one it is linked at.
    let path = "canonical/workflows/order-sync.json";
    let mut edited = super::git::read(&repo, path);
    edited["settings"] = json!({"executionTimeout": 120});
    commit_file(&repo.0.display().to_string(), path, &edited);
    run(&app, &acme, "/api/v1/canonical/sync", None).await;
    assert_eq!(
        cells(&app, &acme, "order-sync").await,
        ["out_of_date", "out_of_date"]
    );
    let new_hash = canonical_hash(&app, "order-sync").await;
    assert_ne!(new_hash, hash);
    assert_eq!(linked_hash(&app, prod, &prod_ids[0]).await, hash);
    prod_n8n.modify_workflow(&prod_ids[0], |wf| {
        wf["settings"] = json!({"executionTimeout": 120});
    });
    // A credentials sync does not reconcile workflows.
    sync(&app, &acme, prod, "credentials").await;
    assert_eq!(linked_hash(&app, prod, &prod_ids[0]).await, hash);
    sync(&app, &acme, prod, "workflows").await;
    assert_eq!(linked_hash(&app, prod, &prod_ids[0]).await, new_hash);
    assert_eq!(
        cells(&app, &acme, "order-sync").await,
        ["out_of_date", "linked"]
    );
}
