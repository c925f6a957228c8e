//! Observability (OBS-001..024): KPIs with series, error groups, status and insights,
//! environment health — from synced executions and health checks.

use serde_json::json;
use workflowops_tests::TestApp;
use workflowops_tests::engine_support::TestWorker;
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};

use super::canonical::environment;
use super::git::run;

// OBS-001..011, OBS-012..016, OBS-017..023
#[tokio::test]
async fn the_overview_reports_kpis_errors_and_environment_health() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    n8n.seed_workflows(10, 3);
    n8n.seed_executions(100);
    let env = environment(&app, &acme, "Prod", "production", &n8n).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    run(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/sync"),
        Some(&json!({"scope": "full"})),
    )
    .await;
    run(
        &app,
        &acme,
        &format!("/api/v1/environments/{env}/health-check"),
        None,
    )
    .await;

    let o = app
        .get("/api/v1/observability/overview?range=1h", &acme.admin)
        .await;
    assert_eq!(o.status, 200, "{}", o.body);
    let k = &o.body["kpis"]["current"];
    assert_eq!(
        (
            k["executions"].as_i64(),
            k["succeeded"].as_i64(),
            k["failed"].as_i64()
        ),
        (Some(100), Some(80), Some(20)),
        "{k}"
    );
    assert_eq!(k["success_rate"].as_f64(), Some(0.8), "OBS-007");
    assert_eq!(
        k["failing_workflows"], 2,
        "OBS-004: every fifth execution fails, on two workflows"
    );
    assert!(
        k["avg_duration_ms"].as_f64().is_some_and(|d| d > 100.0)
            && k["p95_duration_ms"].as_f64().is_some(),
        "OBS-008/009: {k}"
    );
    assert_eq!(o.body["kpis"]["previous"]["executions"], 0, "OBS-010");
    let series = o.body["kpis"]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(series.len(), 24, "OBS-006: a sparkline's points");
    assert_eq!(
        series
            .iter()
            .map(|b| b["executions"].as_i64().unwrap_or(0))
            .sum::<i64>(),
        100
    );
    let errors = o.body["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        errors
            .iter()
            .map(|g| g["count"].as_i64().unwrap_or(0))
            .sum::<i64>(),
        20,
        "OBS-012/013: {errors:?}"
    );
    assert!(
        errors[0]["first_seen"].is_string()
            && errors[0]["sample"].is_string()
            && errors[0]["workflows"].as_i64() >= Some(1)
    );
    assert_eq!(o.body["status"], "degraded", "OBS-001: 20% failures");
    assert!(
        o.body["insights"]
            .to_string()
            .contains("20.0% of executions failed"),
        "OBS-002: {}",
        o.body["insights"]
    );
    let e = &o.body["environments"][0];
    assert_eq!(
        (e["name"].as_str(), e["status"].as_str()),
        (Some("Prod"), Some("healthy")),
        "OBS-017: {e}"
    );
    assert_eq!(e["uptime_pct"].as_f64(), Some(100.0), "OBS-019");
    assert_eq!(e["total_workflows"], 10, "OBS-020");
    assert!(e["last_latency_ms"].is_number(), "OBS-018");
    assert_eq!(
        app.get("/api/v1/observability/overview?range=2w", &acme.admin)
            .await
            .status,
        422,
        "OBS-011"
    );

    // OBS-003: a failed execution in the previous hour makes the failure rate's change -80%.
    // OBS-005/021: a failed deployment. OBS-022: an open drift incident. OBS-023: a credential
    // the workflows use that the instance lacks.
    let env_id: uuid::Uuid = env;
    sqlx::query(
        "insert into env_executions (environment_id, tenant_id, provider_id, workflow_id, status, finished, started_at, stopped_at)          values ($1, $2, 'old-1', 'x', 'error', true, now() - interval '90 minutes', now() - interval '89 minutes')",
    )
    .bind(env_id)
    .bind(acme.id)
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("insert into env_credentials (environment_id, tenant_id, provider_id, name, type, source) values ($1, $2, 'gone', 'Old DB', 'postgres', 'derived')")
        .bind(env_id)
        .bind(acme.id)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stages = [domain::pipelines::Stage {
        source_environment_id: env_id,
        target_environment_id: env_id,
        gates: Default::default(),
        policy: Default::default(),
        approvals: Default::default(),
        window: None,
    }];
    let pipeline = domain::pipelines::create(
        &app.db.pool,
        acme.id,
        None,
        &domain::pipelines::NewPipeline {
            name: "p",
            description: None,
            provider: "n8n",
            stages: &stages,
            active: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let promotion = domain::promotions::create(
        &app.db.pool,
        acme.id,
        &domain::promotions::NewPromotion {
            id: uuid::Uuid::now_v7(),
            pipeline_id: pipeline.id,
            stage_index: 0,
            source_environment_id: env_id,
            target_environment_id: env_id,
            workflow_ids: &["x".to_owned()],
            requested_by: None,
            requested_by_label: "fixture",
            note: None,
            force: false,
            scheduled_at: None,
            run_id: uuid::Uuid::now_v7(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    domain::promotions::set_status(
        &app.db.pool,
        promotion.id,
        domain::promotions::PromotionStatus::Failed,
        Some("a write failed"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    domain::drift::create_incident(
        &app.db.pool,
        acme.id,
        &domain::drift::NewIncident {
            environment_id: env_id,
            severity: domain::drift::Severity::High,
            title: "drift",
            ttl_hours: 48,
            affected: &json!([]),
            payload: &json!({}),
            check_id: uuid::Uuid::now_v7(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let o = app
        .get("/api/v1/observability/overview?range=1h", &acme.admin)
        .await;
    assert_eq!(
        o.body["kpis"]["failure_delta_pct"].as_f64().map(f64::round),
        Some(-80.0),
        "OBS-003: {}",
        o.body["kpis"]
    );
    assert_eq!(
        o.body["last_failed_deployment"]["error"], "a write failed",
        "OBS-005"
    );
    let e = &o.body["environments"][0];
    assert_eq!(e["last_deployment_status"], "failed", "OBS-021");
    assert_eq!(
        (e["status"].as_str(), e["open_incidents"].as_i64()),
        (Some("degraded"), Some(1)),
        "OBS-022"
    );
    assert_eq!(e["missing_credentials"], 1, "OBS-023");
    assert_eq!(
        o.body["status"], "critical",
        "an open incident in production"
    );
    for r in ["6h", "24h", "7d", "30d"] {
        assert_eq!(
            app.get(
                &format!("/api/v1/observability/overview?range={r}"),
                &acme.admin
            )
            .await
            .status,
            200
        );
    }
    let other = app.tenant("other").await;
    let empty = app
        .get("/api/v1/observability/overview", &other.admin)
        .await;
    assert_eq!(
        (
            empty.body["kpis"]["current"]["executions"].as_i64(),
            empty.body["status"].as_str()
        ),
        (Some(0), Some("healthy"))
    );
}
