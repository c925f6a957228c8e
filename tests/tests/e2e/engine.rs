//! The durable run engine against real PostgreSQL, with in-process workers.

use std::time::Duration;

use chrono::Utc;
use engine::{Job, JobError, NewRun, Registry, RetryPolicy, RunCtx, RunStatus};
use jobs::diagnostics::{Ledger, LedgerInput};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use workflowops_tests::TestDb;
use workflowops_tests::engine_support::{TestWorker, enqueue, eventually, status, wait_for};

async fn db() -> TestDb {
    TestDb::new().await.unwrap_or_else(|e| panic!("{e:#}"))
}

fn ledger(ns: &str, steps: u32) -> NewRun {
    slow_ledger(ns, steps, 0)
}

/// A ledger run whose every step takes `step_ms`.
fn slow_ledger(ns: &str, steps: u32, step_ms: u64) -> NewRun {
    NewRun::of::<Ledger>(
        ns,
        &LedgerInput {
            steps,
            step_ms,
            fail_attempts: 0,
            fail_permanently: false,
        },
    )
}

async fn ledger_rows(pool: &PgPool, run: Uuid) -> Vec<(String, i32)> {
    sqlx::query_as("select step, attempt from diagnostics_ledger where run_id = $1 order by id")
        .bind(run)
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

async fn events(pool: &PgPool, run: Uuid) -> Vec<(String, Value)> {
    sqlx::query_as("select kind, data from engine_events where run_id = $1 order by id")
        .bind(run)
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

fn registry() -> Registry {
    jobs::registry(&jobs::Deps::new(std::sync::Arc::new(
        domain::crypto::Keyring::new(&domain::crypto::Keyring::generate(), &[])
            .unwrap_or_else(|e| panic!("keyring: {e}")),
    )))
    .register(FailOnce)
    .register(AlwaysBusy)
    .register(Approval)
    .register(Nap)
    .register(Fanout)
    .register(Slow)
    .register(Overlapped)
    .register(Panics)
}

#[tokio::test]
async fn a_multi_step_run_succeeds_with_each_step_checkpointed_and_evented() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 4);
    let run = enqueue(&db.pool, &ledger("t1", 3)).await;
    wait_for(&db.pool, run, RunStatus::Succeeded).await;
    assert_eq!(ledger_rows(&db.pool, run).await.len(), 3);
    let steps: i64 = sqlx::query_scalar("select count(*) from engine_steps where run_id = $1")
        .bind(run)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(steps, 3);
    let evs = events(&db.pool, run).await;
    let states: Vec<&str> = evs
        .iter()
        .filter(|(k, _)| k == "state")
        .filter_map(|(_, d)| d["status"].as_str())
        .collect();
    assert_eq!(states, ["queued", "running", "succeeded"]);
    let progress: Vec<i64> = evs
        .iter()
        .filter(|(k, _)| k == "progress")
        .filter_map(|(_, d)| d["done"].as_i64())
        .collect();
    assert_eq!(progress, [1, 2, 3]);
    let output: Value = sqlx::query_scalar("select output from engine_runs where id = $1")
        .bind(run)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(output, json!({"steps": 3}));
    worker.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_returns_the_existing_run() {
    let db = db().await;
    let first = enqueue(&db.pool, &ledger("t1", 1).idempotency_key("sync-1")).await;
    let second = enqueue(&db.pool, &ledger("t1", 1).idempotency_key("sync-1")).await;
    let other_namespace = enqueue(&db.pool, &ledger("t2", 1).idempotency_key("sync-1")).await;
    assert_eq!(first, second);
    assert_ne!(first, other_namespace);
    let count: i64 = sqlx::query_scalar("select count(*) from engine_runs")
        .fetch_one(&db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn enqueueing_in_a_rolled_back_transaction_leaves_no_run() {
    let db = db().await;
    let mut tx = db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    engine::queue::enqueue(&mut tx, &ledger("t1", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tx.rollback().await.unwrap_or_else(|e| panic!("{e}"));
    let count: i64 = sqlx::query_scalar("select count(*) from engine_runs")
        .fetch_one(&db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_and_permanent_ones_fail_at_once() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 4);
    let flaky = enqueue(
        &db.pool,
        &NewRun::of::<Ledger>(
            "t1",
            &LedgerInput {
                steps: 1,
                step_ms: 0,
                fail_attempts: 2,
                fail_permanently: false,
            },
        ),
    )
    .await;
    let doomed = enqueue(
        &db.pool,
        &NewRun::of::<Ledger>(
            "t1",
            &LedgerInput {
                steps: 1,
                step_ms: 0,
                fail_attempts: 0,
                fail_permanently: true,
            },
        ),
    )
    .await;
    let budget = enqueue(
        &db.pool,
        &NewRun::of::<Ledger>(
            "t1",
            &LedgerInput {
                steps: 1,
                step_ms: 0,
                fail_attempts: 9,
                fail_permanently: false,
            },
        )
        .max_attempts(2),
    )
    .await;
    // A kind's retry policy sets its runs' attempts.
    let by_kind = NewRun::of::<AlwaysBusy>("t1", &json!({}));
    assert_eq!(by_kind.max_attempts, 2);
    let by_kind = enqueue(&db.pool, &by_kind).await;
    wait_for(&db.pool, flaky, RunStatus::Succeeded).await;
    wait_for(&db.pool, doomed, RunStatus::Failed).await;
    wait_for(&db.pool, budget, RunStatus::Failed).await;
    wait_for(&db.pool, by_kind, RunStatus::Failed).await;
    let attempts = |id| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, (i32, i32)>(
                "select attempt, failures from engine_runs where id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap_or_default()
        }
    };
    assert_eq!(attempts(flaky).await, (3, 2));
    assert_eq!(attempts(doomed).await, (1, 1));
    assert_eq!(attempts(budget).await, (2, 2));
    assert_eq!(attempts(by_kind).await, (2, 2));
    let error: Value = sqlx::query_scalar("select error from engine_runs where id = $1")
        .bind(budget)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_default();
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("gave up after 2 attempts"),
        "{error}"
    );
    // Each retry left `running` for a later attempt (persisted backoff), as its events show.
    let states: Vec<(String, bool)> = events(&db.pool, flaky)
        .await
        .into_iter()
        .filter(|(k, _)| k == "state")
        .map(|(_, d)| {
            (
                d["status"].as_str().unwrap_or_default().to_owned(),
                !d["error"].is_null(),
            )
        })
        .collect();
    let retried = states
        .windows(2)
        .filter(|w| w[0].0 == "running" && (w[1].0 == "queued" || w[1].0 == "waiting") && w[1].1)
        .count();
    assert_eq!(retried, 2, "{states:?}");
    worker.stop().await;
}

/// Always busy (a transient failure); its kind allows two attempts.
struct AlwaysBusy;
impl Job for AlwaysBusy {
    const KIND: &'static str = "test.always_busy";
    type Input = Value;
    type Output = Value;
    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        }
    }
    async fn run(&self, _ctx: &mut RunCtx, _input: Value) -> Result<Value, JobError> {
        Err(JobError::transient("busy"))
    }
}

/// Step one, then a permanent failure on the first attempt only.
/// Checkpoints one step, then panics (a bug in a job).
struct Panics;
impl Job for Panics {
    const KIND: &'static str = "test.panics";
    type Input = Value;
    type Output = Value;
    async fn run(&self, ctx: &mut RunCtx, _input: Value) -> Result<Value, JobError> {
        let (db, run, attempt) = (ctx.db().clone(), ctx.run_id, ctx.attempt);
        ctx.step(
            "one",
            || async move { record(&db, run, "one", attempt).await },
        )
        .await?;
        let index: usize = ctx.attempt.try_into().unwrap_or(0) + 7;
        let nothing: Vec<u8> = Vec::new();
        Ok(json!(nothing[index]))
    }
}

// A job that panics fails its run with the panic's message, frees the slot and the run, and
// the worker goes on with other runs.
#[tokio::test]
async fn a_job_that_panics_fails_its_run_and_the_worker_goes_on() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 1);
    let bad = enqueue(&db.pool, &NewRun::new("acme", "test.panics", json!({}))).await;
    wait_for(&db.pool, bad, RunStatus::Failed).await;
    let error: Value = sqlx::query_scalar("select error from engine_runs where id = $1")
        .bind(bad)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        error.to_string().contains("the job panicked")
            && error.to_string().contains("index out of bounds"),
        "{error}"
    );
    assert_eq!(
        ledger_rows(&db.pool, bad).await,
        [("one".to_owned(), 1)],
        "one attempt"
    );
    let (worker_id,): (Option<Uuid>,) =
        sqlx::query_as("select worker_id from engine_runs where id = $1")
            .bind(bad)
            .fetch_one(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(worker_id, None, "nothing stays claimed");
    // The single slot is free again.
    let good = enqueue(&db.pool, &ledger("acme", 2)).await;
    wait_for(&db.pool, good, RunStatus::Succeeded).await;
    drop(worker);
}

struct FailOnce;
impl Job for FailOnce {
    const KIND: &'static str = "test.fail_once";
    type Input = Value;
    type Output = Value;
    async fn run(&self, ctx: &mut RunCtx, _input: Value) -> Result<Value, JobError> {
        let (db, run, attempt) = (ctx.db().clone(), ctx.run_id, ctx.attempt);
        ctx.step(
            "one",
            || async move { record(&db, run, "one", attempt).await },
        )
        .await?;
        if ctx.attempt == 1 {
            return Err(JobError::permanent("first attempt always fails"));
        }
        let (db, run, attempt) = (ctx.db().clone(), ctx.run_id, ctx.attempt);
        ctx.step(
            "two",
            || async move { record(&db, run, "two", attempt).await },
        )
        .await?;
        Ok(json!("done"))
    }
}

async fn record(db: &PgPool, run: Uuid, step: &str, attempt: i32) -> Result<(), JobError> {
    sqlx::query("insert into diagnostics_ledger (run_id, step, attempt) values ($1, $2, $3)")
        .bind(run)
        .bind(step)
        .bind(attempt)
        .execute(db)
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_user_retry_of_a_failed_run_resumes_from_its_checkpoints() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 2);
    let run = enqueue(&db.pool, &NewRun::new("t1", FailOnce::KIND, json!({}))).await;
    wait_for(&db.pool, run, RunStatus::Failed).await;
    let mut conn = db.pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        engine::queue::retry(&mut conn, "other-namespace", run).await,
        Err(engine::queue::Error::NotFound)
    ));
    engine::queue::retry(&mut conn, "t1", run)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(&db.pool, run, RunStatus::Succeeded).await;
    assert_eq!(
        ledger_rows(&db.pool, run).await,
        [("one".to_owned(), 1), ("two".to_owned(), 2)]
    );
    assert!(matches!(
        engine::queue::retry(&mut conn, "t1", run).await,
        Err(engine::queue::Error::Conflict(_))
    ));
    worker.stop().await;
}

/// Three overlapped steps, then (on a second attempt) a fourth: what is checkpointed of
/// overlapped steps is not run again.
struct Overlapped;
impl Job for Overlapped {
    const KIND: &'static str = "test.overlapped";
    type Input = Value;
    type Output = Value;
    async fn run(&self, ctx: &mut RunCtx, _input: Value) -> Result<Value, JobError> {
        let mut outputs = Vec::new();
        for step in ["a", "b", "c"] {
            let (db, run, attempt) = (ctx.db().clone(), ctx.run_id, ctx.attempt);
            let out: String = ctx
                .step_overlapped(step, || async move {
                    record(&db, run, step, attempt).await?;
                    Ok(format!("{step}{attempt}"))
                })
                .await?;
            outputs.push(out);
        }
        if ctx.attempt == 1 {
            // Fails after the last step's checkpoint was handed over: failing waits for it.
            return Err(JobError::permanent("first attempt always fails"));
        }
        let (db, run, attempt) = (ctx.db().clone(), ctx.run_id, ctx.attempt);
        ctx.step("d", || async move { record(&db, run, "d", attempt).await })
            .await?;
        Ok(json!(outputs))
    }
}

#[tokio::test]
async fn overlapped_steps_are_checkpointed_and_not_run_again() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 2);
    let run = enqueue(&db.pool, &NewRun::new("t1", Overlapped::KIND, json!({}))).await;
    wait_for(&db.pool, run, RunStatus::Failed).await;
    let steps: Vec<String> =
        sqlx::query_scalar("select name from engine_steps where run_id = $1 order by completed_at")
            .bind(run)
            .fetch_all(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(steps, ["a", "b", "c"]);
    let mut conn = db.pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    engine::queue::retry(&mut conn, "t1", run)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(&db.pool, run, RunStatus::Succeeded).await;
    let rows = ledger_rows(&db.pool, run).await;
    let rows: Vec<(&str, i32)> = rows.iter().map(|(s, a)| (s.as_str(), *a)).collect();
    assert_eq!(rows, [("a", 1), ("b", 1), ("c", 1), ("d", 2)]);
    let output: Value = sqlx::query_scalar("select output from engine_runs where id = $1")
        .bind(run)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        output,
        json!(["a1", "b1", "c1"]),
        "stored outputs returned on the retry"
    );
    worker.stop().await;
}

/// Waits for an approval signal, then returns its payload.
struct Approval;
impl Job for Approval {
    const KIND: &'static str = "test.approval";
    type Input = Value;
    type Output = Value;
    async fn run(&self, ctx: &mut RunCtx, _input: Value) -> Result<Value, JobError> {
        let decision: Value = ctx.wait_signal("approval").await?;
        Ok(decision)
    }
}

#[tokio::test]
async fn a_waiting_run_holds_no_worker_and_a_signal_wakes_it() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 1);
    let waiting = enqueue(&db.pool, &NewRun::new("t1", Approval::KIND, json!({}))).await;
    wait_for(&db.pool, waiting, RunStatus::Waiting).await;
    // With one slot, another run still gets through while the first waits.
    let other = enqueue(&db.pool, &ledger("t1", 1)).await;
    wait_for(&db.pool, other, RunStatus::Succeeded).await;
    let mut conn = db.pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    engine::queue::signal(
        &mut conn,
        "t1",
        waiting,
        "approval",
        &json!({"approved_by": "ops"}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    wait_for(&db.pool, waiting, RunStatus::Succeeded).await;
    let output: Value = sqlx::query_scalar("select output from engine_runs where id = $1")
        .bind(waiting)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(output["approved_by"], "ops");
    let refused = engine::queue::signal(&mut conn, "t1", waiting, "approval", &json!(null)).await;
    assert!(matches!(refused, Err(engine::queue::Error::Conflict(_))));
    worker.stop().await;
}

#[tokio::test]
async fn a_signal_sent_before_the_run_waits_is_not_lost() {
    let db = db().await;
    let run = enqueue(&db.pool, &NewRun::new("t1", Approval::KIND, json!({}))).await;
    let mut conn = db.pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    engine::queue::signal(&mut conn, "t1", run, "approval", &json!({"early": true}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let worker = TestWorker::start(&db.pool, registry(), 1);
    wait_for(&db.pool, run, RunStatus::Succeeded).await;
    let output: Value = sqlx::query_scalar("select output from engine_runs where id = $1")
        .bind(run)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(output["early"], true);
    worker.stop().await;
}

/// Sleeps until a time in its input (a deployment window), holding no worker.
struct Nap;
impl Job for Nap {
    const KIND: &'static str = "test.nap";
    type Input = Value;
    type Output = Value;
    async fn run(&self, ctx: &mut RunCtx, input: Value) -> Result<Value, JobError> {
        let until = input["until"]
            .as_str()
            .and_then(|s| s.parse::<chrono::DateTime<Utc>>().ok())
            .unwrap_or_else(Utc::now);
        ctx.sleep_until("window", until).await?;
        Ok(json!(Utc::now()))
    }
}

#[tokio::test]
async fn a_timer_parks_the_run_until_its_time() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 1);
    let until = Utc::now() + chrono::Duration::milliseconds(700);
    let run = enqueue(
        &db.pool,
        &NewRun::new("t1", Nap::KIND, json!({"until": until})),
    )
    .await;
    wait_for(&db.pool, run, RunStatus::Waiting).await;
    wait_for(&db.pool, run, RunStatus::Succeeded).await;
    let finished: chrono::DateTime<Utc> =
        sqlx::query_scalar("select finished_at from engine_runs where id = $1")
            .bind(run)
            .fetch_one(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(finished >= until);
    worker.stop().await;
}

/// Fans out ledger children (one of them failing) and joins them.
struct Fanout;
impl Job for Fanout {
    const KIND: &'static str = "test.fanout";
    type Input = Value;
    type Output = Value;
    async fn run(&self, ctx: &mut RunCtx, input: Value) -> Result<Value, JobError> {
        let n = u32::try_from(input["children"].as_u64().unwrap_or(3)).unwrap_or(3);
        let ns = ctx.namespace.clone();
        let children = (0..n)
            .map(|i| {
                NewRun::of::<Ledger>(
                    ns.clone(),
                    &LedgerInput {
                        steps: 2,
                        step_ms: 10,
                        fail_attempts: 0,
                        fail_permanently: i == 0,
                    },
                )
            })
            .collect();
        ctx.spawn_children("batch", children).await?;
        let outcomes = ctx.join_children().await?;
        let failed = outcomes.iter().filter(|c| c.status == "failed").count();
        Ok(json!({"total": outcomes.len(), "failed": failed, "succeeded": outcomes.len() - failed}))
    }
}

#[tokio::test]
async fn a_parent_fans_out_children_and_joins_them_with_a_partial_failure_summary() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 4);
    let parent = enqueue(
        &db.pool,
        &NewRun::new("t1", Fanout::KIND, json!({"children": 4})),
    )
    .await;
    wait_for(&db.pool, parent, RunStatus::Succeeded).await;
    let output: Value = sqlx::query_scalar("select output from engine_runs where id = $1")
        .bind(parent)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(output, json!({"total": 4, "failed": 1, "succeeded": 3}));
    let children: i64 = sqlx::query_scalar("select count(*) from engine_runs where parent_id = $1")
        .bind(parent)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(
        children, 4,
        "children are spawned once, even though the parent ran again to join"
    );
    worker.stop().await;
}

/// One long step that watches for cancellation; compensation records itself.
struct Slow;
impl Job for Slow {
    const KIND: &'static str = "test.slow";
    type Input = Value;
    type Output = Value;
    async fn run(&self, ctx: &mut RunCtx, _input: Value) -> Result<Value, JobError> {
        let (db, run, attempt) = (ctx.db().clone(), ctx.run_id, ctx.attempt);
        ctx.step("started", || async move {
            record(&db, run, "started", attempt).await
        })
        .await?;
        let cancel = ctx.cancellation().clone();
        ctx.step("long", || async move {
            tokio::select! {
                () = cancel.cancelled() => Err(JobError::Cancelled),
                () = tokio::time::sleep(Duration::from_secs(60)) => Ok(()),
            }
        })
        .await?;
        Ok(json!("finished"))
    }
    async fn compensate(&self, ctx: &mut RunCtx, _input: Value) -> Result<(), JobError> {
        // A checkpointed step, as compensation may take several.
        let (db, run, attempt) = (ctx.db().clone(), ctx.run_id, ctx.attempt);
        ctx.step("compensate", || async move {
            record(&db, run, "compensated", attempt).await
        })
        .await
    }
}

#[tokio::test]
async fn cancelling_a_running_run_stops_its_long_step_and_runs_compensation() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 2);
    let run = enqueue(&db.pool, &NewRun::new("t1", Slow::KIND, json!({}))).await;
    eventually(
        "the long step to start",
        Duration::from_secs(10),
        || async { (ledger_rows(&db.pool, run).await.len() == 1).then_some(()) },
    )
    .await;
    let mut conn = db.pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    engine::queue::request_cancel(&mut conn, "t1", run)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(&db.pool, run, RunStatus::Cancelled).await;
    let steps: Vec<String> = ledger_rows(&db.pool, run)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, ["started", "compensated"]);
    let again = engine::queue::request_cancel(&mut conn, "t1", run).await;
    assert!(matches!(again, Err(engine::queue::Error::Conflict(_))));
    worker.stop().await;
}

#[tokio::test]
async fn cancelling_a_run_that_never_started_cancels_it_at_once() {
    let db = db().await;
    let run = enqueue(
        &db.pool,
        &ledger("t1", 1).run_at(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    let mut conn = db.pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    let after = engine::queue::request_cancel(&mut conn, "t1", run)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.status(), RunStatus::Cancelled);
    assert!(matches!(
        engine::queue::request_cancel(&mut conn, "t2", run).await,
        Err(engine::queue::Error::NotFound)
    ));
}

#[tokio::test]
async fn a_concurrency_key_limits_how_many_runs_run_at_once() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 8);
    let mut runs = Vec::new();
    for _ in 0..4 {
        let new = slow_ledger("t1", 1, 150).concurrency("env:prod", 1);
        runs.push(enqueue(&db.pool, &new).await);
    }
    let mut max_running = 0;
    loop {
        let running: i64 = sqlx::query_scalar("select count(*) from engine_runs where concurrency_key = 'env:prod' and status = 'running'")
            .fetch_one(&db.pool)
            .await
            .unwrap_or_default();
        max_running = max_running.max(running);
        let done: i64 =
            sqlx::query_scalar("select count(*) from engine_runs where status = 'succeeded'")
                .fetch_one(&db.pool)
                .await
                .unwrap_or_default();
        if done == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(max_running, 1);
    worker.stop().await;
}

#[tokio::test]
async fn one_namespaces_backlog_does_not_starve_another() {
    let db = db().await;
    for _ in 0..30 {
        enqueue(&db.pool, &slow_ledger("busy-tenant", 1, 20)).await;
    }
    let small = enqueue(&db.pool, &ledger("small-tenant", 1)).await;
    let worker = TestWorker::start(&db.pool, registry(), 1);
    wait_for(&db.pool, small, RunStatus::Succeeded).await;
    let busy_done_before: i64 = sqlx::query_scalar(
        "select count(*) from engine_runs where namespace = 'busy-tenant' and status = 'succeeded' \
         and finished_at <= (select started_at from engine_runs where id = $1)",
    )
    .bind(small)
    .fetch_one(&db.pool)
    .await
    .unwrap_or_default();
    assert!(
        busy_done_before <= 1,
        "the small tenant's run waited behind {busy_done_before} of the busy tenant's"
    );
    worker.stop().await;
}

#[tokio::test]
async fn the_runs_of_a_dead_worker_are_taken_back_and_finished() {
    let db = db().await;
    let run = enqueue(&db.pool, &ledger("t1", 2)).await;
    // A worker that claimed the run and died: no liveness lock, an unexpired lease.
    let ghost = Uuid::now_v7();
    sqlx::query("insert into engine_workers (id, name, host, pid, version, concurrency, lock_key) values ($1, 'ghost', 'h', 1, 'v', 1, 42)")
        .bind(ghost)
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let claimed = engine::queue::claim(&db.pool, ghost, None, 1, Duration::from_secs(3600), &[])
        .await
        .unwrap_or_default();
    assert_eq!(claimed.len(), 1);
    let worker = TestWorker::start(&db.pool, registry(), 1);
    wait_for(&db.pool, run, RunStatus::Succeeded).await;
    let (attempt, failures): (i32, i32) =
        sqlx::query_as("select attempt, failures from engine_runs where id = $1")
            .bind(run)
            .fetch_one(&db.pool)
            .await
            .unwrap_or_default();
    // The first loss is free: the run may have been waiting in the dead worker's memory.
    assert_eq!((attempt, failures), (2, 0));
    let ghost_stopped: bool =
        sqlx::query_scalar("select stopped_at is not null from engine_workers where id = $1")
            .bind(ghost)
            .fetch_one(&db.pool)
            .await
            .unwrap_or_default();
    assert!(ghost_stopped);
    worker.stop().await;
}

/// Claims `run` for a worker that then vanishes (its lease lapses) and reaps it.
async fn lose(pool: &PgPool, run: Uuid) {
    let claimed = engine::queue::claim(pool, Uuid::now_v7(), None, 1, Duration::from_secs(60), &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(claimed.first().map(|r| r.id), Some(run));
    sqlx::query(
        "update engine_runs set lease_expires_at = now() - interval '1 second' where id = $1",
    )
    .bind(run)
    .execute(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut conn = pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        engine::queue::reap(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        [run]
    );
}

#[tokio::test]
async fn a_runs_first_loss_with_its_worker_is_free_and_later_ones_count() {
    let db = db().await;
    let run = enqueue(&db.pool, &ledger("t1", 1).max_attempts(1)).await;
    let state = || async {
        sqlx::query_as::<_, (String, i32, i32)>(
            "select status, failures, losses from engine_runs where id = $1",
        )
        .bind(run)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    };
    // A run with a single attempt survives its worker dying once (it may never have started)...
    lose(&db.pool, run).await;
    assert_eq!(state().await, ("queued".to_owned(), 0, 1));
    // ...but not twice: a run that keeps losing its workers is failed in the end.
    lose(&db.pool, run).await;
    assert_eq!(state().await, ("failed".to_owned(), 1, 2));
    // A user's retry gives a fresh budget, the free loss included.
    let mut conn = db.pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    engine::queue::retry(&mut conn, "t1", run)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state().await, ("queued".to_owned(), 0, 0));
    lose(&db.pool, run).await;
    assert_eq!(state().await, ("queued".to_owned(), 0, 1));
}

#[tokio::test]
async fn a_stale_attempt_can_never_overwrite_the_new_owners_work() {
    let db = db().await;
    let run = enqueue(&db.pool, &ledger("t1", 1)).await;
    let (w1, w2) = (Uuid::now_v7(), Uuid::now_v7());
    let first = engine::queue::claim(&db.pool, w1, None, 1, Duration::from_secs(60), &[])
        .await
        .unwrap_or_default();
    // w1's lease lapses; the run is taken back and claimed by w2.
    sqlx::query(
        "update engine_runs set lease_expires_at = now() - interval '1 second' where id = $1",
    )
    .bind(run)
    .execute(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut conn = db.pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        engine::queue::reap(&mut conn).await.unwrap_or_default(),
        [run]
    );
    let second = engine::queue::claim(&db.pool, w2, None, 1, Duration::from_secs(60), &[])
        .await
        .unwrap_or_default();
    assert_eq!(second[0].attempt, first[0].attempt + 1);
    let stale = engine::queue::Attempt {
        run_id: run,
        attempt: first[0].attempt,
        worker_id: w1,
    };
    let mut tx = db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        engine::queue::succeed(&mut tx, stale, &json!("stale")).await,
        Err(engine::queue::Error::Fenced)
    ));
    assert!(matches!(
        engine::queue::fail(&mut tx, stale, "stale").await,
        Err(engine::queue::Error::Fenced)
    ));
    drop(tx);
    assert_eq!(status(&db.pool, run).await, RunStatus::Running);
}

#[tokio::test]
async fn a_worker_that_lost_its_runs_commits_nothing_more_for_them() {
    let db = db().await;
    // The worker counts the writes refused to it: the test waits for those instead of a time.
    let metrics = api::metrics::handle().unwrap_or_else(|| panic!("a metrics recorder"));
    let worker = TestWorker::start(&db.pool, registry(), 2);
    // One run would checkpoint a step and go on; the other would checkpoint and succeed in the
    // same group commit.
    let two = enqueue(&db.pool, &slow_ledger("t1", 2, 400)).await;
    let one = enqueue(&db.pool, &slow_ledger("t1", 1, 400)).await;
    wait_for(&db.pool, two, RunStatus::Running).await;
    wait_for(&db.pool, one, RunStatus::Running).await;
    // Another worker owns both now (as the reaper and a new claim would make it): a live one,
    // holding its liveness lock, so the reaper leaves its runs alone.
    let other = Uuid::now_v7();
    let mut alive = db.pool.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("select pg_advisory_lock($1, 4242)")
        .bind(engine::worker::LOCK_CLASS)
        .execute(&mut *alive)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("insert into engine_workers (id, name, host, pid, version, concurrency, lock_key) values ($1, 'other', 'h', 1, 'v', 1, 4242)")
        .bind(other)
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(
        "update engine_runs set attempt = attempt + 1, worker_id = $1 where id in ($2, $3)",
    )
    .bind(other)
    .bind(two)
    .bind(one)
    .execute(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Each run's step ends, its checkpoint is refused, and the attempt stops there.
    eventually(
        "both checkpoints refused",
        Duration::from_secs(20),
        || async {
            let text = metrics.render();
            let refused: f64 = text
                .lines()
                .filter(|l| {
                    l.starts_with("workflowops_engine_writes_fenced_total{write=\"checkpoint\"}")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            (refused >= 2.0).then_some(())
        },
    )
    .await;
    for run in [two, one] {
        let (status, worker_id, output, steps): (String, Option<Uuid>, Option<Value>, i64) =
            sqlx::query_as(
                "select status, worker_id, output, (select count(*) from engine_steps where run_id = $1) \
                 from engine_runs where id = $1",
            )
            .bind(run)
            .fetch_one(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (status.as_str(), worker_id, output, steps),
            ("running", Some(other), None, 0),
            "the old attempt's checkpoint and outcome were refused"
        );
    }
    // The step in flight ran (its side effect is in the ledger); the refused checkpoint stopped
    // the run there, so the second step never ran.
    assert_eq!(ledger_rows(&db.pool, two).await.len(), 1);
    worker.stop().await;
    drop(alive);
}

#[tokio::test]
async fn a_worker_busy_with_a_long_run_leaves_the_queue_to_others() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 1);
    let long = enqueue(&db.pool, &slow_ledger("t1", 1, 1500)).await;
    wait_for(&db.pool, long, RunStatus::Running).await;
    // Its only slot is busy and it finished nothing lately: it claims nothing ahead (a run it
    // held in memory would wait for the long one while another worker could run it).
    let next = enqueue(&db.pool, &ledger("t1", 1)).await;
    wait_for(&db.pool, next, RunStatus::Succeeded).await;
    // A run's `started_at` is its claim: the next one was claimed only once the long one's
    // step (1.5 s) had ended and given its slot back.
    let (long_started, next_started): (chrono::DateTime<Utc>, chrono::DateTime<Utc>) =
        sqlx::query_as(
            "select (select started_at from engine_runs where id = $1), (select started_at from engine_runs where id = $2)",
        )
        .bind(long)
        .bind(next)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        next_started - long_started >= chrono::Duration::milliseconds(1500),
        "the next run was claimed {} ms after the long one started, while its only slot was busy",
        (next_started - long_started).num_milliseconds()
    );
    worker.stop().await;
}

/// Worker liveness locks held now in this database (one per live worker).
async fn liveness_locks(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_locks l join engine_workers w \
         on l.locktype = 'advisory' and l.classid = $1::oid and l.objid = w.lock_key::oid and l.objsubid = 2 \
         where l.granted and l.database = (select oid from pg_database where datname = current_database())",
    )
    .bind(i64::from(engine::worker::LOCK_CLASS))
    .fetch_one(pool)
    .await
    .unwrap_or(-1)
}

#[tokio::test]
async fn a_draining_worker_finishes_its_steps_releases_its_runs_and_stops_claiming() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 1);
    let run = enqueue(&db.pool, &slow_ledger("t1", 3, 300)).await;
    wait_for(&db.pool, run, RunStatus::Running).await;
    assert_eq!(liveness_locks(&db.pool).await, 1, "alive: its lock is held");
    worker.stop().await;
    // The step in flight finished and was checkpointed; at the next step boundary the run went
    // back to the queue (uncharged) instead of starting more steps on a worker going away.
    let (status_now, failures): (String, i32) =
        sqlx::query_as("select status, failures from engine_runs where id = $1")
            .bind(run)
            .fetch_one(&db.pool)
            .await
            .unwrap_or_default();
    assert_eq!((status_now.as_str(), failures), ("queued", 0));
    let steps: i64 = sqlx::query_scalar("select count(*) from engine_steps where run_id = $1")
        .bind(run)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_default();
    assert!(
        steps <= 1,
        "{steps} steps: no new step started while draining"
    );
    // Stopped for good: deregistered, and its liveness lock (held by a session of its own)
    // released, so nothing of it is left to claim with.
    let stopped: bool =
        sqlx::query_scalar("select bool_and(stopped_at is not null) from engine_workers")
            .fetch_one(&db.pool)
            .await
            .unwrap_or_default();
    assert!(stopped);
    assert_eq!(
        liveness_locks(&db.pool).await,
        0,
        "the stopped worker's liveness lock is released"
    );
    // Another worker resumes the released run from its checkpoint: no step ran twice.
    let next = TestWorker::start(&db.pool, registry(), 1);
    wait_for(&db.pool, run, RunStatus::Succeeded).await;
    let ran: (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct step) from diagnostics_ledger where run_id = $1",
    )
    .bind(run)
    .fetch_one(&db.pool)
    .await
    .unwrap_or_default();
    assert_eq!(ran, (3, 3), "each step ran exactly once");
    next.stop().await;
}

fn schedule<'a>(
    ns: &'a str,
    name: &'a str,
    cron: &'a str,
    missed: engine::schedule::Missed,
) -> engine::schedule::NewSchedule<'a> {
    engine::schedule::NewSchedule {
        namespace: ns,
        name,
        cron,
        timezone: "UTC",
        kind: Ledger::KIND,
        input: json!({"steps": 1}),
        enabled: true,
        missed,
    }
}

#[tokio::test]
async fn a_schedule_fires_exactly_once_per_tick_however_many_workers_run() {
    let db = db().await;
    engine::schedule::upsert(
        &db.pool,
        schedule(
            "t1",
            "every-second",
            "* * * * * *",
            engine::schedule::Missed::Skip,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let workers: Vec<TestWorker> = (0..3)
        .map(|_| TestWorker::start(&db.pool, registry(), 2))
        .collect();
    eventually("four ticks to fire", Duration::from_secs(15), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from engine_runs")
            .fetch_one(&db.pool)
            .await
            .unwrap_or_default();
        (n >= 4).then_some(())
    })
    .await;
    for w in workers {
        w.stop().await;
    }
    let mut ticks: Vec<chrono::DateTime<Utc>> =
        sqlx::query_scalar::<_, String>("select idempotency_key from engine_runs")
            .fetch_all(&db.pool)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|k| k.splitn(3, ':').nth(2)?.parse().ok())
            .collect();
    ticks.sort();
    assert!(ticks.len() >= 4);
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "a tick fired twice or was skipped: {ticks:?}"
        );
    }
    let labelled: i64 = sqlx::query_scalar(
        "select count(*) from engine_runs where labels->>'schedule' = 'every-second'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap_or_default();
    assert_eq!(labelled, i64::try_from(ticks.len()).unwrap_or(0));
}

#[tokio::test]
async fn ticks_missed_during_downtime_fire_once_or_are_skipped_by_policy() {
    let db = db().await;
    for (name, missed) in [
        ("once", engine::schedule::Missed::FireOnce),
        ("skip", engine::schedule::Missed::Skip),
    ] {
        // Yearly, so the latest tick is never fresh enough to count as on time.
        engine::schedule::upsert(&db.pool, schedule("t1", name, "0 0 1 1 *", missed))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Everything was down for three hours.
    sqlx::query("update engine_schedules set next_fire_at = now() - interval '3 hours'")
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A process that starts replaces its schedules unchanged: the missed tick stays due.
    for (name, missed) in [
        ("once", engine::schedule::Missed::FireOnce),
        ("skip", engine::schedule::Missed::Skip),
    ] {
        engine::schedule::upsert(&db.pool, schedule("t1", name, "0 0 1 1 *", missed))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let due: i64 =
        sqlx::query_scalar("select count(*) from engine_schedules where next_fire_at < now()")
            .fetch_one(&db.pool)
            .await
            .unwrap_or_default();
    assert_eq!(
        due, 2,
        "replacing a schedule unchanged keeps its missed tick"
    );
    assert_eq!(
        engine::schedule::fire_due(&db.pool, 100, &registry())
            .await
            .unwrap_or(99),
        1
    );
    let fired: Vec<String> = sqlx::query_scalar("select labels->>'schedule' from engine_runs")
        .fetch_all(&db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(fired, ["once"]);
    let future: bool =
        sqlx::query_scalar("select bool_and(next_fire_at > now()) from engine_schedules")
            .fetch_one(&db.pool)
            .await
            .unwrap_or_default();
    assert!(future);
    assert_eq!(
        engine::schedule::fire_due(&db.pool, 100, &registry())
            .await
            .unwrap_or(99),
        0,
        "nothing due twice"
    );
    // A new timetable starts from now.
    sqlx::query("update engine_schedules set next_fire_at = now() - interval '3 hours'")
        .execute(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let moved = engine::schedule::upsert(
        &db.pool,
        schedule(
            "t1",
            "once",
            "0 0 1 2 *",
            engine::schedule::Missed::FireOnce,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(moved.next_fire_at > Utc::now(), "{:?}", moved.next_fire_at);
}

#[tokio::test]
async fn a_bad_cron_expression_or_time_zone_is_refused() {
    let db = db().await;
    let bad = engine::schedule::upsert(
        &db.pool,
        schedule("t1", "x", "every day", engine::schedule::Missed::Skip),
    )
    .await;
    assert!(bad.is_err());
    let mut tz = schedule("t1", "x", "0 9 * * *", engine::schedule::Missed::Skip);
    tz.timezone = "Mars/Olympus";
    assert!(engine::schedule::upsert(&db.pool, tz).await.is_err());
}

#[tokio::test]
async fn the_prune_job_deletes_old_finished_runs_with_their_events_and_keeps_the_rest() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 2);
    let old = enqueue(&db.pool, &ledger("t1", 1)).await;
    let recent = enqueue(&db.pool, &ledger("t1", 1)).await;
    wait_for(&db.pool, old, RunStatus::Succeeded).await;
    wait_for(&db.pool, recent, RunStatus::Succeeded).await;
    let pending = enqueue(
        &db.pool,
        &ledger("t1", 1).run_at(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    // The old run as it would be: created 41 days ago (its UUIDv7 id says so too), finished 40.
    let created = Utc::now() - chrono::Duration::days(41);
    let aged = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(created.timestamp()).unwrap_or(0),
        created.timestamp_subsec_nanos(),
    ));
    for sql in [
        "update engine_runs set id = $2, created_at = now() - interval '41 days', \
           finished_at = now() - interval '40 days' where id = $1",
        "update engine_steps set run_id = $2 where run_id = $1",
        "update engine_events set run_id = $2 where run_id = $1",
    ] {
        sqlx::query(sql)
            .bind(old)
            .bind(aged)
            .execute(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let old = aged;
    // A child of the old run (still waiting) goes with it, with its own events.
    let child = enqueue(
        &db.pool,
        &ledger("t1", 1)
            .parent(old)
            .run_at(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    // Live-notification registrations: one lapsed long ago, one current.
    sqlx::query(
        "insert into engine_watched_namespaces (namespace, until) \
         values ('gone', now() - interval '40 days'), ('t1', now() + interval '30 seconds')",
    )
    .execute(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    jobs::maintenance::ensure_schedule(
        &db.pool,
        Duration::from_secs(30 * 86_400),
        Duration::from_secs(90 * 86_400),
        Duration::from_secs(90 * 86_400),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let prune = enqueue(
        &db.pool,
        &NewRun::new(
            jobs::maintenance::SYSTEM_NAMESPACE,
            jobs::maintenance::Prune::KIND,
            json!({"retention_seconds": 30 * 86_400}),
        ),
    )
    .await;
    wait_for(&db.pool, prune, RunStatus::Succeeded).await;
    let left: Vec<Uuid> =
        sqlx::query_scalar("select id from engine_runs where namespace = 't1' order by id")
            .fetch_all(&db.pool)
            .await
            .unwrap_or_default();
    assert_eq!(left, [recent, pending]);
    // Steps and events have no foreign key: the runs table's delete trigger takes them along.
    let rows_of = |run: Uuid| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, (i64, i64)>(
                "select (select count(*) from engine_steps where run_id = $1), \
                        (select count(*) from engine_events where run_id = $1)",
            )
            .bind(run)
            .fetch_one(&pool)
            .await
            .unwrap_or((-1, -1))
        }
    };
    assert_eq!(rows_of(old).await, (0, 0));
    assert_eq!(rows_of(child).await, (0, 0));
    let (steps, events) = rows_of(recent).await;
    assert!(steps == 1 && events >= 3, "{steps} steps, {events} events");
    let scheduled: Vec<String> = sqlx::query_scalar(
        "select name from engine_schedules where namespace = 'system' and enabled order by name",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap_or_default();
    assert_eq!(scheduled, ["drift-sla", "prune-finished-runs"]);
    let watched: Vec<String> =
        sqlx::query_scalar("select namespace from engine_watched_namespaces order by namespace")
            .fetch_all(&db.pool)
            .await
            .unwrap_or_default();
    assert_eq!(watched, ["t1"]);
    worker.stop().await;
}

// A run the database shows as a live worker's but that the worker does not hold (it let it go
// when a write was fenced) is not kept alive by the worker's heartbeats: its lease runs out and
// it is queued again, while the runs the worker does hold keep theirs.
#[tokio::test]
async fn heartbeats_keep_only_the_leases_of_runs_the_worker_holds() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 2);
    let held = enqueue(&db.pool, &NewRun::new("t1", Slow::KIND, json!({}))).await;
    wait_for(&db.pool, held, RunStatus::Running).await;
    let stray = enqueue(
        &db.pool,
        &ledger("t1", 1).run_at(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    sqlx::query(
        "update engine_runs set status = 'running', attempt = 1, started_at = now(), \
           lease_expires_at = now() + interval '2 seconds', \
           worker_id = (select worker_id from engine_runs where id = $2) \
         where id = $1",
    )
    .bind(stray)
    .bind(held)
    .execute(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    wait_for(&db.pool, stray, RunStatus::Succeeded).await;
    let (losses, held_lease_ahead): (i32, bool) = sqlx::query_as(
        "select (select losses from engine_runs where id = $1), \
                (select lease_expires_at > now() + interval '5 seconds' from engine_runs where id = $2)",
    )
    .bind(stray)
    .bind(held)
    .fetch_one(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(losses, 1, "the stray run was taken back once");
    assert!(held_lease_ahead, "the held run's lease is still kept");
    assert_eq!(status(&db.pool, held).await, RunStatus::Running);
    worker.stop().await;
}

// A tenant's backlog on one busy concurrency key does not hold up its runs with other keys.
#[tokio::test]
async fn runs_behind_a_backlog_on_a_busy_key_start_with_other_keys() {
    let db = db().await;
    // More runs on key A than a claim reads per namespace, each holding the key for a while.
    let mut tx = db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..120 {
        engine::queue::enqueue(&mut tx, &slow_ledger("t1", 1, 3000).concurrency("env-a", 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let other = enqueue(&db.pool, &ledger("t1", 1).concurrency("env-b", 1)).await;
    let worker = TestWorker::start(&db.pool, registry(), 2);
    wait_for(&db.pool, other, RunStatus::Succeeded).await;
    let (running, done): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where status = 'running'), count(*) filter (where status = 'succeeded') \
         from engine_runs where concurrency_key = 'env-a'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap_or_default();
    assert!(
        running <= 1 && done <= 2,
        "key A's runs go one at a time ({running} running, {done} done)"
    );
    worker.kill().await;
}

// An owner that lost its run can still write a step it ran, if its statement saw the run just
// before the reaper took it back. The new owner's checkpoint of that step then finds it written:
// that is not a fence (the new owner still owns the run), and the run goes on to finish.
#[tokio::test]
async fn a_step_already_checkpointed_by_a_lost_owner_does_not_fence_the_new_one() {
    let db = db().await;
    let worker = TestWorker::start(&db.pool, registry(), 1);
    let run = enqueue(&db.pool, &slow_ledger("t1", 2, 800)).await;
    eventually("step-0 to start", Duration::from_secs(10), || async {
        let started: bool = sqlx::query_scalar(
            "select exists (select 1 from diagnostics_ledger where run_id = $1 and step = 'step-0')",
        )
        .bind(run)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_default();
        started.then_some(())
    })
    .await;
    // The lost owner's checkpoint of the same step lands first.
    sqlx::query(
        "insert into engine_steps (run_id, name, output, attempt) values ($1, 'step-0', 'null', 0)",
    )
    .bind(run)
    .execute(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Before, the worker took its own checkpoint's conflict for a fence, dropped the run and left
    // it `running` until its lease (30 s) ran out.
    wait_for(&db.pool, run, RunStatus::Succeeded).await;
    worker.stop().await;
}

/// `engine_commit` with only progress events (and no claim), as a worker's committer calls it.
async fn commit_progress(
    pool: &PgPool,
    run: Uuid,
    attempt: i32,
    worker: Uuid,
    done: i64,
) -> Vec<i32> {
    let none_i32: Vec<i32> = Vec::new();
    let none_uuid: Vec<Uuid> = Vec::new();
    let none_text: Vec<String> = Vec::new();
    let none_json: Vec<Value> = Vec::new();
    let none_time: Vec<chrono::DateTime<Utc>> = Vec::new();
    sqlx::query_scalar(
        "select fenced from engine_commit($1, $2, $3, $4, $5, $6, $7, \
         array[0], array[$8::uuid], array[$9::int], array[$10::uuid], array['t1'], array['progress'], \
         array[jsonb_build_object('done', $11::bigint, 'total', 10)], array[$11::bigint], array[10::bigint], \
         $1, $2, $3, $4, $6, null, null, 0, interval '30 seconds', null)",
    )
    .bind(&none_i32)
    .bind(&none_uuid)
    .bind(&none_i32)
    .bind(&none_uuid)
    .bind(&none_text)
    .bind(&none_json)
    .bind(&none_time)
    .bind(run)
    .bind(attempt)
    .bind(worker)
    .bind(done)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|e| panic!("engine_commit: {e}"))
}

// A worker's progress report that waits for its run's row while the run changes hands must not
// write its numbers over the new owner's: the ownership test of the statement's snapshot is not
// enough, the update itself must be fenced.
#[tokio::test]
async fn a_lost_owners_progress_report_does_not_overwrite_the_new_owners() {
    let db = db().await;
    let (old_owner, new_owner) = (Uuid::new_v4(), Uuid::new_v4());
    let run = Uuid::now_v7();
    sqlx::query(
        "insert into engine_runs (id, namespace, kind, input, status, attempt, max_attempts, worker_id, lease_expires_at) \
         values ($1, 't1', 'diagnostics.ledger', '{}', 'running', 1, 5, $2, now() + interval '30 seconds')",
    )
    .bind(run)
    .bind(old_owner)
    .execute(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // The reaper (here: this transaction) holds the run while the old owner's commit starts.
    let mut reaper = db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("select 1 from engine_runs where id = $1 for update")
        .bind(run)
        .execute(&mut *reaper)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pool = db.pool.clone();
    let report = tokio::spawn(async move { commit_progress(&pool, run, 1, old_owner, 9).await });
    eventually(
        "the old owner's commit to wait for the row",
        Duration::from_secs(10),
        || async {
            let waiting: bool = sqlx::query_scalar(
                "select exists (select 1 from pg_stat_activity where datname = current_database() \
             and wait_event_type = 'Lock' and query like '%engine_commit%')",
            )
            .fetch_one(&db.pool)
            .await
            .unwrap_or_default();
            waiting.then_some(())
        },
    )
    .await;
    // The run changes hands (taken back and claimed again) and the new owner reports progress.
    sqlx::query(
        "update engine_runs set attempt = 2, worker_id = $2, progress_done = 1, progress_total = 10 where id = $1",
    )
    .bind(run)
    .bind(new_owner)
    .execute(&mut *reaper)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    reaper.commit().await.unwrap_or_else(|e| panic!("{e}"));
    report.await.unwrap_or_else(|e| panic!("{e}"));
    let progress_done = || async {
        sqlx::query_scalar::<_, Option<i64>>("select progress_done from engine_runs where id = $1")
            .bind(run)
            .fetch_one(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(
        progress_done().await,
        Some(1),
        "the new owner's progress stands"
    );
    // The new owner's own reports still land.
    assert!(
        commit_progress(&db.pool, run, 2, new_owner, 2)
            .await
            .is_empty()
    );
    assert_eq!(progress_done().await, Some(2));
}

// Claims and commits reach runs by id or through the partial indexes; on a table without fresh
// statistics the planner chose to hash the whole table instead (migration 0024). A replaced
// function keeps no settings, so this guards every later migration that replaces one (it must
// repeat them).
#[tokio::test]
async fn the_engines_batch_functions_never_plan_a_sequential_scan() {
    let db = db().await;
    let settings: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "select proname::text, proconfig from pg_proc where proname in ('engine_claim', 'engine_commit') order by proname",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.len(), 2);
    for (name, config) in settings {
        let config = config.unwrap_or_default();
        // And never compile a plan (0026): a scan left without an index would cost ten billion.
        for setting in ["enable_seqscan=off", "jit=off"] {
            assert!(
                config.contains(&setting.to_owned()),
                "{name} must run with {setting}: {config:?}"
            );
        }
    }
}
