//! The runs API and its event streams.

use std::time::Duration;

use domain::Role;
use engine::{NewRun, RunStatus};
use jobs::diagnostics::{Ledger, LedgerInput};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::engine_support::{TestWorker, enqueue, eventually, wait_for};
use workflowops_tests::sse::read_events;
use workflowops_tests::{TenantFixture, TestApp};

fn ledger(tenant: &TenantFixture, steps: u32, step_ms: u64) -> NewRun {
    NewRun::of::<Ledger>(
        tenant.id.to_string(),
        &LedgerInput {
            steps,
            step_ms,
            fail_attempts: 0,
            fail_permanently: false,
        },
    )
    .labels(json!({"environment": "prod"}))
}

/// Opens the tenant's live stream (`GET /api/v1/events`) as its admin.
async fn tenant_stream(app: &TestApp, tenant: &TenantFixture) -> reqwest::Response {
    app.http
        .get(app.url("/api/v1/events"))
        .bearer_auth(&tenant.admin.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

// SSE-001, SSE-002, SSE-004, SSE-005
#[tokio::test]
async fn a_client_that_reconnects_with_last_event_id_gets_every_event_exactly_once() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let run = enqueue(&app.db.pool, &ledger(&acme, 12, 60)).await;
    let path = format!("/api/v1/runs/{run}/events");

    let res = app
        .http
        .get(app.url(&path))
        .bearer_auth(&acme.admin.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut seen = 0;
    let first = read_events(res, Duration::from_secs(20), |_| {
        seen += 1;
        seen == 4
    })
    .await;
    // Disconnected mid-run (the response is dropped); reconnect where we left off.
    let last_id = first.last().and_then(|m| m.id.clone()).unwrap_or_default();
    let res = app
        .http
        .get(app.url(&path))
        .bearer_auth(&acme.admin.token)
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let rest = read_events(res, Duration::from_secs(30), |m| m.event == "end").await;
    assert_eq!(rest.last().map(|m| m.event.as_str()), Some("end"));

    let received: Vec<String> = first
        .iter()
        .chain(&rest)
        .filter_map(|m| m.id.clone())
        .collect();
    let stored: Vec<String> = sqlx::query_scalar(
        "select tx_id || '-' || id from engine_events where run_id = $1 order by tx_id, id",
    )
    .bind(run)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_default();
    assert_eq!(received, stored, "every event once, in order");
    let progress = first
        .iter()
        .chain(&rest)
        .filter(|m| m.event == "progress")
        .count();
    assert_eq!(progress, 12);
    let log = first
        .iter()
        .chain(&rest)
        .find(|m| m.event == "log")
        .map(|m| m.data.clone())
        .unwrap_or_default();
    assert!(
        log.contains("all 12 steps done"),
        "no log line streamed: {log}"
    );
    worker.stop().await;
}

// SSE-007
#[tokio::test]
async fn the_tenant_stream_carries_state_changes_and_counts_of_its_own_runs_only() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let res = tenant_stream(&app, &acme).await;
    let theirs = enqueue(&app.db.pool, &ledger(&globex, 1, 0)).await;
    let ours = enqueue(&app.db.pool, &ledger(&acme, 1, 0)).await;
    let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let events = read_events(res, Duration::from_secs(20), |m| {
        m.event == "state" && m.data.contains("succeeded")
    })
    .await;
    assert!(events.iter().any(|m| m.event == "counts"));
    for m in events.iter().filter(|m| m.event == "state") {
        assert!(
            m.data.contains(&ours.to_string()),
            "another tenant's run leaked: {}",
            m.data
        );
        assert!(!m.data.contains(&theirs.to_string()));
    }
    worker.stop().await;
}

// A transaction whose event trigger looked for live subscribers just before the first one
// registered sends no notification, and may commit only later: the API reads a newly watched
// namespace again until every such transaction has ended, instead of leaving its events to the
// next poll (a minute here, so only that re-reading can deliver within the test's bound).
#[tokio::test]
async fn events_of_a_transaction_racing_the_first_subscriber_are_not_left_to_the_poll() {
    let app = TestApp::spawn_with(|c| c.event_poll = Duration::from_secs(60)).await;
    let acme = app.tenant("acme").await;
    let mut racing = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let run = engine::queue::enqueue(&mut racing, &ledger(&acme, 1, 0))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    let stream = tenant_stream(&app, &acme).await;
    assert_eq!(stream.status(), 200);
    eventually("acme to be watched", Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, bool>(
            "select exists (select 1 from engine_watched_namespaces where namespace = $1)",
        )
        .bind(acme.id.to_string())
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_default()
        .then_some(())
    })
    .await;
    racing.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let events = read_events(stream, Duration::from_secs(20), |m| {
        m.event == "state" && m.data.contains(&run.to_string())
    })
    .await;
    assert!(
        events
            .iter()
            .any(|m| m.event == "state" && m.data.contains(&run.to_string())),
        "the racing run's `queued` event was not delivered: {events:?}"
    );
}

// Transaction ids are server-wide, and a snapshot's horizon waits for every database's
// transactions: a write transaction another application holds open on the same server must not
// hold WorkflowOps' live streams back until it ends.
#[tokio::test]
async fn a_transaction_held_open_in_another_database_does_not_hold_live_streams_back() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let elsewhere = workflowops_tests::TestDb::new()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut held = elsewhere
        .pool
        .begin()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut *held)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stream = tenant_stream(&app, &acme).await;
    let run = enqueue(&app.db.pool, &ledger(&acme, 1, 0)).await;
    let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 1);
    let events = read_events(stream, Duration::from_secs(20), |m| {
        m.event == "state" && m.data.contains("succeeded")
    })
    .await;
    assert!(
        events
            .iter()
            .any(|m| m.event == "state" && m.data.contains(&run.to_string())),
        "{events:?}"
    );
    held.rollback().await.unwrap_or_else(|e| panic!("{e}"));
    worker.stop().await;
}

// Events notify only namespaces an API process streams live (a NOTIFY serialises commits).
#[tokio::test]
async fn only_namespaces_with_live_subscribers_notify_their_events() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    listener
        .listen("engine_events")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Nobody streams globex: its run's events send no notification.
    enqueue(&app.db.pool, &ledger(&globex, 1, 0)).await;
    let stream = tenant_stream(&app, &acme).await;
    assert_eq!(stream.status(), 200);
    let watched = |ns: String| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "select exists (select 1 from engine_watched_namespaces \
                 where namespace = $1 and until > now())",
            )
            .bind(ns)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    eventually("acme to be watched", Duration::from_secs(10), || async {
        watched(acme.id.to_string()).await.then_some(())
    })
    .await;
    assert!(!watched(globex.id.to_string()).await);
    // acme has a subscriber: its run's events notify, and that is the first notification of all.
    enqueue(&app.db.pool, &ledger(&acme, 1, 0)).await;
    let first = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .unwrap_or_else(|_| panic!("no notification for the watched namespace"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.payload(), acme.id.to_string());
    drop(stream);
}

#[tokio::test]
async fn runs_are_listed_filtered_and_shown_with_their_steps() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let viewer = app.member(&acme, Role::Viewer).await;
    let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let done = enqueue(&app.db.pool, &ledger(&acme, 2, 0)).await;
    wait_for(&app.db.pool, done, RunStatus::Succeeded).await;
    let later = enqueue(
        &app.db.pool,
        &ledger(&acme, 1, 0).run_at(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await;

    let all = app.get("/api/v1/runs", &viewer).await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    assert_eq!(all.body["items"].as_array().map(Vec::len), Some(2));
    let queued = app.get("/api/v1/runs?status=waiting", &viewer).await;
    assert_eq!(queued.body["items"][0]["id"], later.to_string());
    let labelled = app
        .get(
            "/api/v1/runs?label=environment:prod&kind=diagnostics.ledger",
            &viewer,
        )
        .await;
    assert_eq!(labelled.body["items"].as_array().map(Vec::len), Some(2));
    let none = app.get("/api/v1/runs?label=environment:dev", &viewer).await;
    assert_eq!(none.body["items"].as_array().map(Vec::len), Some(0));
    let bad = app.get("/api/v1/runs?status=finished", &viewer).await;
    assert_eq!(bad.status, 422);

    let detail = app.get(&format!("/api/v1/runs/{done}"), &viewer).await;
    assert_eq!(detail.body["status"], "succeeded");
    assert_eq!(detail.body["steps"].as_array().map(Vec::len), Some(2));
    assert_eq!(detail.body["progress_done"], 2);
    assert_eq!(detail.body["attempts"][0]["outcome"], "succeeded");

    // A run that failed once: each attempt with its outcome and error.
    let flaky = enqueue(
        &app.db.pool,
        &NewRun::of::<Ledger>(
            acme.id.to_string(),
            &LedgerInput {
                steps: 1,
                step_ms: 0,
                fail_attempts: 1,
                fail_permanently: false,
            },
        ),
    )
    .await;
    wait_for(&app.db.pool, flaky, RunStatus::Succeeded).await;
    let detail = app.get(&format!("/api/v1/runs/{flaky}"), &viewer).await;
    let attempts: Vec<(i64, String)> = detail.body["attempts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| {
                    (
                        a["attempt"].as_i64().unwrap_or(0),
                        a["outcome"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        attempts,
        [(1, "retried".to_owned()), (2, "succeeded".to_owned())],
        "{}",
        detail.body
    );
    assert!(
        detail.body["attempts"][0]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("on purpose")),
        "{}",
        detail.body
    );
    worker.stop().await;
}

#[tokio::test]
async fn cancel_retry_and_signal_go_through_the_api_audited_and_by_role() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let viewer = app.member(&acme, Role::Viewer).await;
    let dev = app.member(&acme, Role::Developer).await;
    let later = enqueue(
        &app.db.pool,
        &ledger(&acme, 1, 0).run_at(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await;

    let refused = app
        .request(
            Method::POST,
            &format!("/api/v1/runs/{later}/cancel"),
            Some(&viewer.token),
            None,
        )
        .await;
    assert_eq!(refused.status, 403);
    let cancelled = app
        .request(
            Method::POST,
            &format!("/api/v1/runs/{later}/cancel"),
            Some(&dev.token),
            None,
        )
        .await;
    assert_eq!(cancelled.status, 202, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    let again = app
        .request(
            Method::POST,
            &format!("/api/v1/runs/{later}/cancel"),
            Some(&dev.token),
            None,
        )
        .await;
    assert_eq!(
        (again.status.as_u16(), again.code()),
        (409, "run_state_conflict")
    );

    let failing = NewRun::of::<Ledger>(
        acme.id.to_string(),
        &LedgerInput {
            steps: 1,
            step_ms: 0,
            fail_attempts: 0,
            fail_permanently: true,
        },
    );
    let failed = enqueue(&app.db.pool, &failing).await;
    let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 1);
    wait_for(&app.db.pool, failed, RunStatus::Failed).await;
    let retried = app
        .request(
            Method::POST,
            &format!("/api/v1/runs/{failed}/retry"),
            Some(&dev.token),
            None,
        )
        .await;
    assert_eq!(retried.status, 202);
    wait_for(&app.db.pool, failed, RunStatus::Failed).await;

    let signal = app
        .post(
            &format!("/api/v1/runs/{failed}/signals"),
            &dev,
            &json!({"name": "approval"}),
        )
        .await;
    assert_eq!(signal.status, 409, "a finished run takes no signals");
    let bad = app
        .post(
            &format!("/api/v1/runs/{}/signals", Uuid::now_v7()),
            &dev,
            &json!({"name": ""}),
        )
        .await;
    assert_eq!(bad.status, 422);

    // Changes only (reads are audited too, see every_runs_api_call_is_audited_reads_included).
    let audited: Vec<String> = sqlx::query_scalar(
        "select action from audit_logs where target_type = 'run' and action <> all($1) order by id",
    )
    .bind(domain::audit::READ_ACTIONS)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_default();
    assert_eq!(audited, ["run.cancel_requested", "run.retried"]);
    worker.stop().await;
}

#[tokio::test]
async fn operators_see_the_worker_pool_and_queue_depth() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    domain::tenancy::add_platform_admin(&app.db.pool, acme.admin.user_id.unwrap_or_default(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 3);
    enqueue(
        &app.db.pool,
        &ledger(&acme, 1, 0).run_at(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    let pool = workflowops_tests::engine_support::eventually(
        "the worker to register",
        Duration::from_secs(10),
        || async {
            let res = app.get("/api/v1/platform/workers", &acme.admin).await;
            (res.body["workers"].as_array().map(Vec::len) == Some(1)).then_some(res)
        },
    )
    .await;
    assert_eq!(pool.body["total_slots"], 3);
    assert_eq!(pool.body["queue"][0]["status"], "waiting");
    let member = app.member(&acme, Role::Admin).await;
    assert_eq!(
        app.get("/api/v1/platform/workers", &member).await.status,
        403
    );
    worker.stop().await;
}

#[tokio::test]
async fn metrics_expose_engine_counters_and_the_queue_depth() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let done = enqueue(&app.db.pool, &ledger(&acme, 2, 0)).await;
    wait_for(&app.db.pool, done, RunStatus::Succeeded).await;
    enqueue(
        &app.db.pool,
        &ledger(&acme, 1, 0).run_at(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    let res = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap_or_default();
    for metric in [
        "workflowops_engine_attempts_total{kind=\"diagnostics.ledger\",outcome=\"succeeded\"}",
        "workflowops_engine_queue_runs{kind=\"diagnostics.ledger\",status=\"waiting\"} 1",
        "workflowops_engine_claim_seconds_bucket",
        "workflowops_engine_step_seconds_bucket{kind=\"diagnostics.ledger\"",
        "workflowops_engine_run_seconds_bucket{kind=\"diagnostics.ledger\",outcome=\"succeeded\"",
        "workflowops_engine_worker_slots 2",
    ] {
        assert!(text.contains(metric), "/metrics lacks {metric}:\n{text}");
    }
    // Once nothing waits, the gauge says so (it does not keep its last count).
    sqlx::query(
        "update engine_runs set status = 'cancelled', finished_at = now() where status = 'waiting'",
    )
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    let gauge = "workflowops_engine_queue_runs{kind=\"diagnostics.ledger\",status=\"waiting\"} 0";
    assert!(text.contains(gauge), "/metrics lacks {gauge}:\n{text}");
    worker.stop().await;
}

/// A parked run of `tenant` with a log line ("slow") written by a transaction left open, and a
/// later one ("quick", a higher event id) committed: the open transaction is returned.
async fn slow_log_under_a_quick_one(
    app: &TestApp,
    tenant: &TenantFixture,
) -> (Uuid, sqlx::Transaction<'static, sqlx::Postgres>) {
    let run = enqueue(
        &app.db.pool,
        &ledger(tenant, 1, 0).run_at(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    let ns = tenant.id.to_string();
    // A slow transaction takes the next event id and stays open...
    let mut slow = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    engine::queue::log(&mut *slow, run, &ns, "info", "slow")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // ...while a quick one, with a higher id, commits first.
    engine::queue::log(&app.db.pool, run, &ns, "info", "quick")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (run, slow)
}

// SSE-004
#[tokio::test]
async fn an_event_committed_late_with_a_lower_id_is_still_delivered_in_its_place() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let (run, slow) = slow_log_under_a_quick_one(&app, &acme).await;
    let res = app
        .http
        .get(app.url(&format!("/api/v1/runs/{run}/events")))
        .bearer_auth(&acme.admin.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut logs_seen = 0;
    let (first_tx, first) = tokio::sync::oneshot::channel();
    let mut first_tx = Some(first_tx);
    let reader = tokio::spawn(read_events(res, Duration::from_secs(20), move |m| {
        if let Some(tx) = first_tx.take() {
            let _ = tx.send(());
        }
        logs_seen += usize::from(m.event == "log");
        logs_seen == 2
    }));
    // The stream has read the table once (the run's state event came) while "quick" was
    // committed but held back behind the open transaction; only now does "slow" commit.
    first.await.unwrap_or_else(|e| panic!("{e}"));
    slow.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let events = reader.await.unwrap_or_else(|e| panic!("{e}"));
    let logs: Vec<&str> = events
        .iter()
        .filter(|m| m.event == "log")
        .map(|m| {
            if m.data.contains("slow") {
                "slow"
            } else {
                "quick"
            }
        })
        .collect();
    assert_eq!(
        logs,
        ["slow", "quick"],
        "both delivered, the late one not skipped"
    );
}

// A stretch of events already known to be final (a live stream's source read past it) is read
// up to its end even while an older transaction holds the settled horizon back; a settled read
// stops below that transaction. (Followers read a gap this way, never jumping past it.)
#[tokio::test]
async fn a_final_stretch_of_events_is_read_to_its_end_while_the_horizon_waits() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let ns = acme.id.to_string();
    let (run, slow) = slow_log_under_a_quick_one(&app, &acme).await;
    let read = |upto| {
        let pool = app.db.pool.clone();
        let ns = ns.clone();
        async move {
            engine::read::run_events(&pool, &ns, run, engine::read::Cursor::default(), upto, 100)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let everything = engine::read::Upto::Cursor(engine::read::Cursor {
        tx: i64::MAX,
        id: i64::MAX,
    });
    let all = read(everything).await;
    let quick = all
        .iter()
        .find(|e| e.data.to_string().contains("quick"))
        .unwrap_or_else(|| panic!("the committed event: {all:?}"))
        .cursor();
    // The settled read stops below the open transaction: the committed "quick" is not in it.
    let settled = read(engine::read::Upto::Settled).await;
    assert!(
        settled.iter().all(|e| e.cursor() < quick),
        "a settled read waits for the open transaction"
    );
    // The stretch up to "quick" is read to its end.
    let stretch = read(engine::read::Upto::Cursor(quick)).await;
    assert_eq!(stretch.last().map(engine::read::Event::cursor), Some(quick));
    assert_eq!(
        stretch.len(),
        settled.len() + 1,
        "everything settled, and quick"
    );
    slow.rollback().await.unwrap_or_else(|e| panic!("{e}"));
}

// Retrying a restore takes what restoring takes: a generic retry must not get around the
// restore endpoints' rule (admins only for production, and for targets it cannot read).
#[tokio::test]
async fn a_restore_is_retried_only_by_whom_may_restore() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let dev = app.member(&acme, Role::Developer).await;
    let run = Uuid::now_v7();
    sqlx::query(
        "insert into engine_runs (id, namespace, kind, input, status, attempt, failures, max_attempts, run_at, finished_at) \
         values ($1, $2, 'environment.restore', $3, 'failed', 1, 1, 6, now(), now())",
    )
    .bind(run)
    .bind(acme.id.to_string())
    .bind(json!({"tenant_id": acme.id, "environment_id": Uuid::now_v7()}))
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let refused = app
        .post(&format!("/api/v1/runs/{run}/retry"), &dev, &json!({}))
        .await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (403, "admin_only"),
        "{}",
        refused.body
    );
    let status: String = sqlx::query_scalar("select status from engine_runs where id = $1")
        .bind(run)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(status, "failed", "the refused retry changed nothing");
    let retried = app
        .post(
            &format!("/api/v1/runs/{run}/retry"),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(retried.status, 202, "{}", retried.body);
}

// The runs API audits every call: reads go through the batched writer, with what was asked and
// how it ended, refusals included.
#[tokio::test]
async fn every_runs_api_call_is_audited_reads_included() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let viewer = app.member(&acme, Role::Viewer).await;
    let run = enqueue(&app.db.pool, &ledger(&acme, 1, 0)).await;
    let theirs = enqueue(&app.db.pool, &ledger(&other, 1, 0)).await;

    let listed = app
        .get("/api/v1/runs?kind=diagnostics.ledger&limit=5", &viewer)
        .await;
    assert_eq!(listed.status, 200);
    let request_id = listed
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        app.get(&format!("/api/v1/runs/{run}"), &viewer)
            .await
            .status,
        200
    );
    assert_eq!(
        app.get(&format!("/api/v1/runs/{theirs}"), &viewer)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get("/api/v1/runs?status=bogus", &viewer).await.status,
        422
    );
    let stream = app
        .http
        .get(app.url(&format!("/api/v1/runs/{run}/events")))
        .bearer_auth(&viewer.token)
        .header("last-event-id", "garbage")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stream.status(), 422);
    // A position this server never reached (an id from before a restore elsewhere) is refused,
    // not waited for forever.
    let future = app
        .http
        .get(app.url("/api/v1/events?after=999999999999-1"))
        .bearer_auth(&viewer.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(future.status(), 422);
    let feed = tenant_stream(&app, &acme).await;
    assert_eq!(feed.status(), 200);
    drop(feed);
    // What the caller chose is stored bounded: long strings cut (a NUL is refused before: 422).
    let odd = app
        .get(&format!("/api/v1/runs?kind={}", "k".repeat(1000)), &viewer)
        .await;
    assert_eq!(odd.status, 200, "{}", odd.body);

    // Every entry was handed to the writer before its response went out.
    app.state.read_audit.flush(Duration::from_secs(30)).await;
    // (action, target_id, actor_label, request_id, new_value)
    type Row = (String, Option<String>, String, Option<String>, Value);
    let rows: Vec<Row> = sqlx::query_as(
        "select action, target_id, actor_label, request_id, new_value from audit_logs \
         where tenant_id = $1 and target_type = 'run' order by id",
    )
    .bind(acme.id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let summary: Vec<(&str, Option<&str>, &str, Value)> = rows
        .iter()
        .map(|(action, target, actor, _, details)| {
            (
                action.as_str(),
                target.as_deref(),
                actor.as_str(),
                details.clone(),
            )
        })
        .collect();
    let run = run.to_string();
    let theirs = theirs.to_string();
    assert_eq!(
        summary,
        [
            (
                "run.listed",
                None,
                viewer.email.as_str(),
                json!({"query": {"kind": "diagnostics.ledger", "status": null, "since": null, "until": null,
                                 "label": null, "parent_id": null, "cursor": null, "limit": 5},
                       "status": 200, "returned": 1})
            ),
            (
                "run.viewed",
                Some(run.as_str()),
                viewer.email.as_str(),
                json!({"status": 200})
            ),
            (
                "run.viewed",
                Some(theirs.as_str()),
                viewer.email.as_str(),
                json!({"status": 404, "error": "not_found"})
            ),
            (
                "run.listed",
                None,
                viewer.email.as_str(),
                json!({"query": {"kind": null, "status": "bogus", "since": null, "until": null,
                                 "label": null, "parent_id": null, "cursor": null, "limit": null},
                       "status": 422, "error": "validation_failed"})
            ),
            (
                "run.events_opened",
                Some(run.as_str()),
                viewer.email.as_str(),
                json!({"after": "garbage", "status": 422, "error": "validation_failed"})
            ),
            (
                "run.feed_opened",
                None,
                viewer.email.as_str(),
                json!({"after": "999999999999-1", "status": 422, "error": "validation_failed"})
            ),
            (
                "run.feed_opened",
                None,
                acme.admin.email.as_str(),
                json!({"after": null, "status": 200})
            ),
            (
                "run.listed",
                None,
                viewer.email.as_str(),
                json!({"query": {"kind": format!("{}…", "k".repeat(256)), "status": null, "since": null,
                                 "until": null, "label": null, "parent_id": null, "cursor": null, "limit": null},
                       "status": 200, "returned": 0})
            ),
        ]
    );
    assert_eq!(
        rows[0].3.as_deref(),
        Some(request_id.as_str()),
        "the call's request id"
    );
    // Nothing of acme's reads lands in the other tenant's trail.
    let leaked: i64 = sqlx::query_scalar(
        "select count(*) from audit_logs where tenant_id = $1 and target_type = 'run'",
    )
    .bind(other.id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(leaked, 0);
}

// SSE-001: a live stream ends when the session that opened it is signed out, not only when the
// client leaves; other subscribers go on.
#[tokio::test]
async fn a_live_stream_ends_when_the_session_that_opened_it_is_signed_out() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let leaving = app.member(&acme, Role::Viewer).await;
    let staying = app.member(&acme, Role::Viewer).await;
    let open = |token: String| {
        let app = &app;
        async move {
            let res = app
                .http
                .get(app.url("/api/v1/events"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(res.status(), 200);
            res
        }
    };
    let leaving_stream = open(leaving.token.clone()).await;
    let staying_stream = open(staying.token.clone()).await;
    let out = app
        .request(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&leaving.token),
            None,
        )
        .await;
    assert_eq!(out.status, 204);
    let events = read_events(leaving_stream, Duration::from_secs(10), |m| {
        m.event == "end"
    })
    .await;
    let end = events
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("no end event"));
    assert_eq!(end.event, "end");
    assert_eq!(end.json()["reason"], "revoked");
    // The other subscriber's stream still delivers: a run's state change reaches it.
    let run = enqueue(&app.db.pool, &ledger(&acme, 1, 0)).await;
    let seen = read_events(staying_stream, Duration::from_secs(10), |m| {
        m.event == "state" && m.json()["run_id"] == json!(run)
    })
    .await;
    assert!(seen.iter().all(|m| m.event != "end"), "{seen:?}");
}
