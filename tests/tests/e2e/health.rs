use serde_json::Value;
use workflowops_tests::TestApp;

// HEALTH-001
#[tokio::test]
async fn healthz_answers_without_authentication() {
    let app = TestApp::spawn().await;
    let res = app
        .request(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["status"], "ok");
    assert!(res.headers.contains_key("x-request-id"));
}

// HEALTH-001
#[tokio::test]
async fn readyz_reports_pending_migrations_as_not_ready() {
    let app = TestApp::spawn().await;
    let res = app
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["migrations"], "current");

    sqlx::query("delete from _sqlx_migrations")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let res = app
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(res.status, 503);
    assert_eq!(res.body["status"], "not_ready");
    assert_eq!(res.body["migrations"], "pending");
    assert_eq!(res.body["database"], Value::from("ok"));
}

// Every pooled connection to PostgreSQL over TCP has Nagle's algorithm off (sqlx 0.9.0 no
// longer sets TCP_NODELAY; without it, statements with large bind data wait ~40 ms for a
// delayed ACK). A bare sqlx connection is the control.
#[tokio::test]
async fn database_connections_over_tcp_have_nodelay() {
    use sqlx::{ConnectOptions, Connection};
    let app = TestApp::spawn().await;
    async fn ports(conn: &mut sqlx::PgConnection) -> (u16, u16) {
        let (client, server): (Option<i32>, Option<i32>) =
            sqlx::query_as("select inet_client_port(), inet_server_port()")
                .fetch_one(conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        let port = |p: Option<i32>| {
            p.and_then(|p| u16::try_from(p).ok())
                .unwrap_or_else(|| panic!("the tests' server is reached over TCP"))
        };
        (port(client), port(server))
    }
    let mut pooled = app
        .db
        .pool
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (client, server) = ports(&mut pooled).await;
    assert_eq!(
        api::db::nodelay_of(client, server).unwrap_or_else(|e| panic!("{e}")),
        Some(true),
        "a pooled connection"
    );
    let mut bare = app
        .db
        .pool
        .connect_options()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (client, server) = ports(&mut bare).await;
    assert_eq!(
        api::db::nodelay_of(client, server).unwrap_or_else(|e| panic!("{e}")),
        Some(false),
        "sqlx sets TCP_NODELAY itself now: remove api::db::tcp_nodelay"
    );
    bare.close().await.unwrap_or_else(|e| panic!("{e}"));
}

// HEALTH-005, OBS-024: every environment gets a health-check schedule every five minutes; a
// tick of it runs a check that lands in the environment's health history; the schedule goes
// with its environment.
#[tokio::test]
async fn a_scheduled_tick_checks_the_environments_health_and_the_schedule_goes_with_it() {
    use chrono::{Timelike, Utc};
    use serde_json::json;
    use uuid::Uuid;
    use workflowops_tests::engine_support::{TestWorker, wait_for};
    use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};

    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let before_creation = Utc::now();
    let created = app
        .post(
            "/api/v1/environments",
            &acme.admin,
            &json!({"name": "Prod", "provider": "n8n", "base_url": n8n.base_url(),
                    "api_key": n8n.api_key(), "class": "production"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let env: Uuid = created.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let schedule = |pool: &sqlx::PgPool| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, String, bool, chrono::DateTime<Utc>)>(
                "select name, cron, enabled, next_fire_at from engine_schedules \
                 where kind = 'environment.health_check' and input->>'environment_id' = $1::text",
            )
            .bind(env)
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let rows = schedule(&app.db.pool).await;
    assert_eq!(rows.len(), 1, "one schedule per environment: {rows:?}");
    let (name, cron, enabled, next) = rows[0].clone();
    assert_eq!(name, jobs::health::schedule_name(env));
    assert_eq!(cron, "*/5 * * * *", "every five minutes");
    assert!(enabled);
    assert!(
        next > before_creation && next.minute() % 5 == 0 && next.second() == 0,
        "the next tick is on a five-minute boundary: {next}"
    );
    let table = engine::schedule::Timetable::new(&cron, "UTC").unwrap_or_else(|e| panic!("{e}"));
    let after = table.next_after(next).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after - next, chrono::Duration::minutes(5));
    let history = app
        .get(&format!("/api/v1/environments/{env}/health"), &acme.admin)
        .await;
    assert_eq!(history.body["checks"], json!([]), "{}", history.body);

    // The tick comes due: the scheduler fires it once, and a worker runs the check.
    sqlx::query(
        "update engine_schedules set next_fire_at = now() - interval '1 second' where name = $1",
    )
    .bind(&name)
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let registry = jobs::registry(&app.state.jobs);
    let fired_at = Utc::now();
    let fired = engine::schedule::fire_due(&app.db.pool, 100, &registry)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fired, 1);
    let runs: Vec<Uuid> = sqlx::query_scalar(
        "select id from engine_runs where kind = 'environment.health_check' \
         and input->>'environment_id' = $1::text",
    )
    .bind(env)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runs.len(), 1, "{runs:?}");
    let rows = schedule(&app.db.pool).await;
    assert!(
        rows[0].3 > fired_at && rows[0].3.minute() % 5 == 0 && rows[0].3.second() == 0,
        "the schedule moved on to its next tick: {rows:?}"
    );
    // No further tick may add a check while this one is looked at.
    sqlx::query("update engine_schedules set enabled = false where name = $1")
        .bind(&name)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let worker = TestWorker::start(&app.db.pool, registry, 2);
    wait_for(&app.db.pool, runs[0], engine::RunStatus::Succeeded).await;
    let history = app
        .get(&format!("/api/v1/environments/{env}/health"), &acme.admin)
        .await;
    let checks = history.body["checks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(checks.len(), 1, "{}", history.body);
    assert_eq!(checks[0]["status"], "healthy");
    assert_eq!(checks[0]["version"], n8n.version().as_str());

    // Deleting the environment removes its schedule.
    let deleted = app
        .delete(
            &format!("/api/v1/environments/{env}?confirm=Prod"),
            &acme.admin,
        )
        .await;
    assert!(deleted.status.is_success(), "{}", deleted.body);
    assert_eq!(schedule(&app.db.pool).await, vec![]);
    worker.stop().await;
}
