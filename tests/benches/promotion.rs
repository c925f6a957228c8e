//! Promotion benchmark (the promotion issue's figure): N workflows promoted dev → prod on the
//! emulator, pre- and post-promotion snapshots included, compared with a baseline measured in
//! the same run: the same count of raw writes (one request after the other, as the promotion
//! writes them) to a scratch emulator.
//!
//! `cargo bench -p workflowops-tests --bench promotion [-- WORKFLOWS NODES]` (defaults 1000 20).
//! The emulators run as their own processes.

use std::time::Instant;

use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::TestApp;
use workflowops_tests::bench::{self, EmulatorProcess as Emulator};
use workflowops_tests::engine_support::TestWorker;

async fn emulator(workflows: usize, nodes: usize) -> Emulator {
    bench::emulator(env!("CARGO_BIN_EXE_n8n-emulator"), workflows, nodes).await
}

async fn all_workflows(http: &reqwest::Client, e: &Emulator) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/api/v1/workflows?limit=250", e.base);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http
            .get(&url)
            .header("X-N8N-API-KEY", &e.key)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        out.extend(page["data"].as_array().cloned().unwrap_or_default());
        cursor = page["nextCursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return out;
        }
    }
}

async fn environment(
    app: &TestApp,
    t: &workflowops_tests::TenantFixture,
    name: &str,
    class: &str,
    e: &Emulator,
) -> String {
    let res = app
        .post(
            "/api/v1/environments",
            &t.admin,
            &json!({"name": name, "provider": "n8n", "base_url": e.base, "api_key": e.key, "class": class, "rate_limit": 10000.0}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body["id"].as_str().unwrap_or_default().to_owned()
}

async fn finished(app: &TestApp, run: Uuid) -> f64 {
    bench::run_seconds(&app.db.pool, run).await
}

#[tokio::main]
async fn main() {
    workflowops_tests::bench::check_build();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let workflows = args.first().copied().unwrap_or(1000);
    let nodes = args.get(1).copied().unwrap_or(20);
    println!("promotion bench: {workflows} workflows x {nodes} nodes, dev -> prod");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dev = emulator(workflows, nodes).await;
    let prod = emulator(0, nodes).await;
    let scratch = emulator(0, nodes).await;
    let http = reqwest::Client::new();

    // Baseline: the same writes, raw, one after the other.
    let sources = all_workflows(&http, &dev).await;
    assert_eq!(sources.len(), workflows);
    let started = Instant::now();
    for wf in &sources {
        let body = json!({"name": wf["name"], "nodes": wf["nodes"], "connections": wf["connections"], "settings": {}});
        let res = http
            .post(format!("{}/api/v1/workflows", scratch.base))
            .header("X-N8N-API-KEY", &scratch.key)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(res.status().is_success(), "{}", res.status());
    }
    let raw = started.elapsed().as_secs_f64();
    println!("baseline  {workflows} raw workflow writes: {raw:.2} s");

    let app = TestApp::spawn_with(|c| c.allow_local_git = true).await;
    let tenant = app.tenant("bench").await;
    let dev_env = environment(&app, &tenant, "dev", "dev", &dev).await;
    let prod_env = environment(&app, &tenant, "prod", "production", &prod).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    for env in [&dev_env, &prod_env] {
        let res = app
            .post(
                &format!("/api/v1/environments/{env}/sync"),
                &tenant.admin,
                &json!({"scope": "full"}),
            )
            .await;
        let run: Uuid = res.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        finished(&app, run).await;
    }
    let repo = std::env::temp_dir().join(format!("wfo-bench-promo-{}", Uuid::now_v7().simple()));
    git2::Repository::init_bare(&repo).unwrap_or_else(|e| panic!("{e}"));
    let put = app
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/{prod_env}/git"),
            Some(&tenant.admin.token),
            Some(&json!({"url": repo.display().to_string(), "auth": "none"})),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let pipeline = app
        .post(
            "/api/v1/pipelines",
            &tenant.admin,
            &json!({"name": "bench", "provider": "n8n", "stages": [{"source_environment_id": dev_env, "target_environment_id": prod_env}]}),
        )
        .await;
    assert_eq!(pipeline.status, 201, "{}", pipeline.body);
    let ids: Vec<String> = sources
        .iter()
        .filter_map(|w| w["id"].as_str().map(str::to_owned))
        .collect();
    let res = app
        .post(
            "/api/v1/promotions",
            &tenant.admin,
            &json!({"pipeline_id": pipeline.body["id"], "stage_index": 0, "workflow_ids": ids}),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.body);
    let run: Uuid = res.body["run_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let seconds = finished(&app, run).await;
    let promotion = app
        .get(
            &format!(
                "/api/v1/promotions/{}",
                res.body["id"].as_str().unwrap_or_default()
            ),
            &tenant.admin,
        )
        .await
        .body;
    assert_eq!(promotion["status"], "completed", "{promotion}");
    let steps: Vec<(String, f64)> = sqlx::query_as(
        "select case when name like 'apply:%' then 'apply (all workflows)' else name end, \
                sum(extract(epoch from completed_at - started_at))::float8 \
         from engine_steps where run_id = $1 group by 1 order by 2 desc limit 6",
    )
    .bind(run)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_default();
    println!(
        "promotion {workflows} workflows dev -> prod with pre/post snapshots: {seconds:.2} s (target <= 20 s); ratio to raw writes {:.1}",
        seconds / raw
    );
    for (step, s) in steps {
        println!("          {step}: {s:.2} s");
    }
    let _ = std::fs::remove_dir_all(repo);
}
