//! Drift benchmark (the drift issue's figure): a drift check of N workflows in one production
//! environment (the catalog as last synced, `refresh: false`; 1% of them drifted, so incidents
//! and structural diffs are part of it), compared with a baseline measured in the same run: a
//! plain hash-only comparison of the same data (read both hash sets, compare in memory).
//!
//! `cargo bench -p workflowops-tests --bench drift [-- WORKFLOWS NODES]` (defaults 10000 20).

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::TestApp;
use workflowops_tests::bench;
use workflowops_tests::engine_support::TestWorker;

async fn sync(app: &TestApp, tenant: &workflowops_tests::TenantFixture, env_id: Uuid) {
    let res = app
        .post(
            &format!("/api/v1/environments/{env_id}/sync"),
            &tenant.admin,
            &json!({"scope": "workflows"}),
        )
        .await;
    let run: Uuid = res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    bench::run_seconds(&app.db.pool, run).await;
}

#[tokio::main]
async fn main() {
    workflowops_tests::bench::check_build();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let workflows = args.first().copied().unwrap_or(10_000);
    let nodes = args.get(1).copied().unwrap_or(20);
    println!("drift bench: {workflows} workflows x {nodes} nodes, one production environment");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n8n = bench::emulator(env!("CARGO_BIN_EXE_n8n-emulator"), workflows, nodes).await;
    let app = TestApp::spawn().await;
    let tenant = app.tenant("bench").await;
    let env = app
        .post(
            "/api/v1/environments",
            &tenant.admin,
            &json!({"name": "prod", "provider": "n8n", "base_url": n8n.base, "api_key": n8n.key, "class": "production", "rate_limit": 10000.0}),
        )
        .await;
    assert_eq!(env.status, 201, "{}", env.body);
    let env_id: Uuid = env.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 4);
    sync(&app, &tenant, env_id).await;
    // Every workflow tracked: its canonical version is what the environment has now.
    for sql in [
        "insert into canonical_workflows (tenant_id, id, provider, name, content_hash, definition) \
         select tenant_id, 'wf-' || provider_id, 'n8n', name, content_hash, definition from env_workflows where environment_id = $1",
        "insert into workflow_env_map (tenant_id, canonical_id, environment_id, provider_id, linked_hash) \
         select tenant_id, 'wf-' || provider_id, environment_id, provider_id, content_hash from env_workflows where environment_id = $1",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(env_id)
            .execute(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // 1% drifts: edited in n8n directly, then synced.
    let http = reqwest::Client::new();
    let page: Value = http
        .get(format!(
            "{}/api/v1/workflows?limit={}",
            n8n.base,
            (workflows / 100).clamp(1, 250)
        ))
        .header("X-N8N-API-KEY", &n8n.key)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let drifted = page["data"].as_array().cloned().unwrap_or_default();
    for wf in &drifted {
        let mut body = json!({"name": wf["name"], "nodes": wf["nodes"], "connections": wf["connections"], "settings": {}});
        body["nodes"][1]["parameters"] = json!({"hotfix": true});
        http.put(format!(
            "{}/api/v1/workflows/{}",
            n8n.base,
            wf["id"].as_str().unwrap_or_default()
        ))
        .header("X-N8N-API-KEY", &n8n.key)
        .json(&body)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("{e}"));
    }
    sync(&app, &tenant, env_id).await;

    // Baseline: the same hashes, compared in memory.
    let started = Instant::now();
    let env_hashes: HashMap<String, String> = sqlx::query_as(
        "select provider_id, content_hash from env_workflows where environment_id = $1 and deleted_at is null",
    )
    .bind(env_id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_default()
    .into_iter()
    .collect();
    let canonical: Vec<(String, String)> = sqlx::query_as(
        "select m.provider_id, c.content_hash from workflow_env_map m join canonical_workflows c \
         on c.tenant_id = m.tenant_id and c.id = m.canonical_id where m.environment_id = $1",
    )
    .bind(env_id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_default();
    let differing = canonical
        .iter()
        .filter(|(id, h)| env_hashes.get(id) != Some(h))
        .count();
    let baseline = started.elapsed().as_secs_f64();
    assert_eq!(differing, drifted.len());
    println!(
        "baseline  hash-only comparison of {} workflows: {baseline:.3} s ({differing} differ)",
        env_hashes.len()
    );

    let res = app
        .post(
            &format!("/api/v1/environments/{env_id}/drift-check"),
            &tenant.admin,
            &json!({"refresh": false}),
        )
        .await;
    let run: Uuid = res.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let seconds = bench::run_seconds(&app.db.pool, run).await;
    let out = app
        .get(&format!("/api/v1/runs/{run}"), &tenant.admin)
        .await
        .body["output"]
        .clone();
    assert_eq!(out["drifted"].as_u64(), Some(drifted.len() as u64), "{out}");
    println!(
        "drift     check of {} workflows ({} drifted, diffs and one incident): {seconds:.2} s (target <= 5 s); analysis {} ms; ratio to baseline {:.1}",
        out["workflows"],
        out["drifted"],
        out["duration_ms"],
        seconds / baseline.max(1e-6)
    );
}
