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

fn time(v: &serde_json::Value) -> Option<chrono::DateTime<chrono::Utc>> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

// OBS-002, OBS-017: an environment whose health check fails is `unreachable`, with a critical
// insight; one never checked is `unknown`. OBS-007/008: each bucket's succeeded count and
// average duration. OBS-014: an error group's first and last seen.
#[tokio::test]
async fn unreachable_environments_are_critical_and_buckets_and_error_groups_carry_their_numbers() {
    use chrono::{DateTime, Duration, Utc};
    use workflowops_tests::n8n::NewExecution;

    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let prod_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let dev_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let staging_n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let wf = prod_n8n.insert_workflow(json!({
        "name": "Orders", "nodes": [], "connections": {}, "settings": {},
    }));
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now);
    let (early, middle, late) = (
        now - Duration::minutes(50),
        now - Duration::minutes(20),
        now - Duration::minutes(10),
    );
    for (started_at, ms, status, error) in [
        (early, 100, "success", None),
        (early, 300, "success", None),
        (
            early,
            500,
            "error",
            Some("Request timed out after 30000 ms"),
        ),
        (
            middle,
            800,
            "error",
            Some("Request timed out after 45000 ms"),
        ),
        (late, 1000, "success", None),
    ] {
        prod_n8n.add_execution(&NewExecution {
            workflow_id: &wf,
            status,
            started_at,
            duration: Duration::milliseconds(ms),
            error,
        });
    }
    let prod = environment(&app, &acme, "Prod", "production", &prod_n8n).await;
    let dev = environment(&app, &acme, "Dev", "dev", &dev_n8n).await;
    environment(&app, &acme, "Staging", "staging", &staging_n8n).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/sync"),
        Some(&json!({"scope": "full"})),
    )
    .await;
    run(
        &app,
        &acme,
        &format!("/api/v1/environments/{prod}/health-check"),
        None,
    )
    .await;
    drop(dev_n8n);
    let checked = run(
        &app,
        &acme,
        &format!("/api/v1/environments/{dev}/health-check"),
        None,
    )
    .await;
    assert_eq!(checked["status"], "unreachable", "{checked}");

    let o = app
        .get("/api/v1/observability/overview?range=1h", &acme.admin)
        .await;
    assert_eq!(o.status, 200, "{}", o.body);
    let envs = o.body["environments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let of = |name: &str| {
        envs.iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name}: {}", o.body["environments"]))
    };
    let d = of("Dev");
    assert_eq!(
        (d["status"].as_str(), d["health_status"].as_str()),
        (Some("unreachable"), Some("unreachable")),
        "OBS-017: {d}"
    );
    assert_eq!(d["uptime_pct"].as_f64(), Some(0.0), "{d}");
    assert_eq!(of("Prod")["status"], "healthy");
    assert_eq!(of("Staging")["status"], "unknown", "never checked");
    let insights = o.body["insights"].as_array().cloned().unwrap_or_default();
    assert!(
        insights.iter().any(|i| i["severity"] == "critical"
            && i["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Dev is not reachable"))),
        "OBS-002: {insights:?}"
    );
    assert!(
        !insights.iter().any(|i| i["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Prod is not"))),
        "{insights:?}"
    );
    assert_eq!(o.body["status"], "critical", "OBS-001");

    // OBS-006..008: 24 buckets of 2.5 minutes; each cluster of executions in the one bucket
    // holding its start, with its count, successes and average duration.
    let series = o.body["kpis"]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(series.len(), 24);
    let step = Duration::seconds(150);
    let starts: Vec<DateTime<Utc>> = series
        .iter()
        .map(|b| time(&b["start"]).unwrap_or_else(|| panic!("{b}")))
        .collect();
    assert!(starts.windows(2).all(|w| w[1] - w[0] == step), "{starts:?}");
    let bucket_of = |t: DateTime<Utc>| {
        starts
            .iter()
            .position(|s| *s <= t && t < *s + step)
            .unwrap_or_else(|| panic!("no bucket holds {t}: {starts:?}"))
    };
    let expected = [
        (bucket_of(early), 3, 2, Some(300.0)),
        (bucket_of(middle), 1, 0, Some(800.0)),
        (bucket_of(late), 1, 1, Some(1000.0)),
    ];
    for (i, b) in series.iter().enumerate() {
        let want = expected
            .iter()
            .find(|e| e.0 == i)
            .map_or((0, 0, None), |e| (e.1, e.2, e.3));
        assert_eq!(
            (
                b["executions"].as_i64().unwrap_or(-1),
                b["succeeded"].as_i64().unwrap_or(-1),
                b["avg_duration_ms"].as_f64()
            ),
            want,
            "OBS-007/008: bucket {i}: {b}"
        );
    }

    // OBS-012..014: both time-outs are one group, first and last seen at their starts.
    let errors = o.body["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let g = &errors[0];
    assert_eq!(g["key"], "Request timed out after # ms", "{g}");
    assert_eq!(g["count"], 2);
    assert_eq!(time(&g["first_seen"]), Some(early), "OBS-014: {g}");
    assert_eq!(time(&g["last_seen"]), Some(middle), "OBS-014: {g}");
    assert_eq!(g["workflows"], 1);
}

// OBS-011: the overview's ranges, 90d included (the dashboard offers it); anything else is 422.
#[tokio::test]
async fn the_overview_accepts_its_ranges_and_refuses_others() {
    use chrono::{Duration, Utc};

    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    for (query, range, length) in [
        ("", "24h", Duration::hours(24)),
        ("?range=1h", "1h", Duration::hours(1)),
        ("?range=6h", "6h", Duration::hours(6)),
        ("?range=24h", "24h", Duration::hours(24)),
        ("?range=7d", "7d", Duration::days(7)),
        ("?range=30d", "30d", Duration::days(30)),
        ("?range=90d", "90d", Duration::days(90)),
    ] {
        let o = app
            .get(
                &format!("/api/v1/observability/overview{query}"),
                &acme.admin,
            )
            .await;
        assert_eq!(o.status, 200, "{query}: {}", o.body);
        assert_eq!(o.body["kpis"]["range"], range, "{query}");
        let since = time(&o.body["kpis"]["since"]).unwrap_or_else(|| panic!("{}", o.body));
        assert!(
            (Utc::now() - length - since).num_seconds().abs() < 60,
            "{query}: since {since}"
        );
        let series = o.body["kpis"]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(series.len(), 24, "{query}");
        let second = time(&series[1]["start"]).unwrap_or(since);
        // `since` has nanoseconds, the buckets PostgreSQL's microseconds.
        assert!(
            (second - since - length / 24).num_milliseconds().abs() <= 1,
            "{query}: bucket length {}",
            second - since
        );
    }
    for bad in ["2w", "7D", "", "1d", "90"] {
        let res = app
            .get(
                &format!("/api/v1/observability/overview?range={bad}"),
                &acme.admin,
            )
            .await;
        assert_eq!(
            (res.status.as_u16(), res.code()),
            (422, "validation_failed"),
            "range={bad}: {}",
            res.body
        );
    }
}
