//! Chaos: real `workflowops worker` processes run hundreds of multi-step runs while the test
//! kills them with SIGKILL at random moments and starts new ones. Every run must succeed, no
//! completed step may run again, each kill may cost at most one re-execution of the steps in
//! flight, and nothing may stay claimed by a dead worker.
//!
//! Size: `WFO_CHAOS_RUNS` (default 500) runs, `WFO_CHAOS_KILLS` (default 8) kills; the
//! benchmark section of the README gives a larger setting.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine::NewRun;
use jobs::diagnostics::{Ledger, LedgerInput};
use workflowops_tests::TestDb;
use workflowops_tests::engine_support::eventually;

const CONCURRENCY: u32 = 8;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn start_worker(url: &str, key: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_workflowops"))
        .args([
            "worker",
            "--concurrency",
            &CONCURRENCY.to_string(),
            "--heartbeat",
            "1s",
            // Far longer than the test: only the death of a worker's database session (its
            // advisory lock) can hand its runs to another in time.
            "--lease",
            "1h",
        ])
        .env("DATABASE_URL", url)
        .env("WFO_MASTER_KEY", key)
        .env("WFO_LOG", "warn")
        // The n8n emulator listens on loopback.
        .env("WFO_OUTBOUND_NETWORKS", "any")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start a worker: {e}"))
}

async fn scalar(pool: &sqlx::PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_no_run_and_repeat_no_completed_step() {
    let runs = setting("WFO_CHAOS_RUNS", 500);
    let kills = setting("WFO_CHAOS_KILLS", 8);
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e:#}"));
    let key = domain::crypto::Keyring::generate();
    let key = secrecy::ExposeSecret::expose_secret(&key).to_owned();

    let mut tx = db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    for i in 0..runs {
        let input = LedgerInput {
            steps: 3,
            // Enough work (500 runs x 150 ms on 24 slots: ~3 s) that kills keep landing on runs.
            step_ms: 50,
            fail_attempts: 0,
            fail_permanently: false,
        };
        let new = NewRun::of::<Ledger>(format!("tenant-{}", i % 5), &input).max_attempts(100);
        engine::queue::enqueue(&mut tx, &new)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));

    let mut workers: Vec<Child> = (0..3).map(|_| start_worker(&db.url, &key)).collect();
    let started = Instant::now();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(150 + fastrand::u64(0..450))).await;
        let victim = fastrand::usize(0..workers.len());
        let mut dead = workers.swap_remove(victim);
        dead.kill().unwrap_or_else(|e| panic!("SIGKILL: {e}"));
        let _ = dead.wait();
        workers.push(start_worker(&db.url, &key));
    }

    eventually("every run to finish", Duration::from_secs(180), || async {
        (scalar(
            &db.pool,
            "select count(*) from engine_runs where status <> 'succeeded'",
        )
        .await
            == 0)
            .then_some(())
    })
    .await;
    let elapsed = started.elapsed();

    // Nothing left claimed; every killed worker noticed as dead.
    assert_eq!(
        scalar(
            &db.pool,
            "select count(*) from engine_runs where status = 'running' or worker_id is not null"
        )
        .await,
        0
    );
    // Every killed worker that had registered is marked stopped; only the live ones remain.
    let live = i64::try_from(workers.len()).unwrap_or(0);
    eventually(
        "killed workers to be marked stopped",
        Duration::from_secs(20),
        || async {
            (scalar(
                &db.pool,
                "select count(*) from engine_workers where stopped_at is null",
            )
            .await
                == live)
                .then_some(())
        },
    )
    .await;
    // No completed step ever ran again: every execution precedes or is the checkpointed one.
    assert_eq!(
        scalar(
            &db.pool,
            "select count(*) from diagnostics_ledger l join engine_steps s on s.run_id = l.run_id and s.name = l.step \
             where l.attempt > s.attempt"
        )
        .await,
        0
    );
    // Every step of every run ran and was checkpointed.
    assert_eq!(
        scalar(&db.pool, "select count(*) from engine_steps").await,
        i64::try_from(runs * 3).unwrap_or(0)
    );
    // The kills did land on runs: runs were taken back from dead workers.
    let hit = scalar(
        &db.pool,
        "select count(*) from engine_runs where losses > 0",
    )
    .await;
    assert!(
        hit > 0,
        "no kill interrupted a run: the test proved nothing"
    );
    // Every run's state events, in the order its streams deliver them, are a path of the
    // engine's transition table (`RunStatus::can_become`) from `queued` to `succeeded`.
    let states: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "select run_id, data->>'status' from engine_events where kind = 'state' order by run_id, tx_id, id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let mut paths: std::collections::HashMap<uuid::Uuid, Vec<engine::RunStatus>> =
        std::collections::HashMap::new();
    for (run, status) in states {
        let status = status
            .parse::<engine::RunStatus>()
            .unwrap_or_else(|e| panic!("{e}"));
        paths.entry(run).or_default().push(status);
    }
    assert_eq!(paths.len(), runs);
    for (run, path) in &paths {
        assert_eq!(
            path.first(),
            Some(&engine::RunStatus::Queued),
            "{run}: {path:?}"
        );
        assert_eq!(
            path.last(),
            Some(&engine::RunStatus::Succeeded),
            "{run}: {path:?}"
        );
        assert!(
            path.windows(2).all(|w| w[0].can_become(w[1])),
            "{run} made a transition the engine does not make: {path:?}"
        );
    }
    // Re-executions only come from kills: at most one per step in flight at each kill.
    let extra = scalar(&db.pool, "select coalesce(sum(n - 1), 0)::bigint from (select count(*) as n from diagnostics_ledger group by run_id, step) t").await;
    let bound = i64::try_from(kills * CONCURRENCY as usize).unwrap_or(0);
    assert!(
        extra <= bound,
        "{extra} re-executed steps for {kills} kills (at most {bound})"
    );
    let worst = scalar(&db.pool, "select coalesce(max(n), 0)::bigint from (select count(*) as n from diagnostics_ledger group by run_id, step) t").await;
    assert!(worst <= 1 + i64::try_from(kills).unwrap_or(0));
    eprintln!(
        "chaos: {runs} runs, {kills} kills, {hit} runs taken back, {extra} re-executed steps, {:.1}s",
        elapsed.as_secs_f64()
    );

    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
}

/// Workers running a promotion are killed with SIGKILL again and again, mid-write: the promotion
/// still completes with exactly one copy of each workflow in the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_never_make_a_promotion_write_twice() {
    use domain::environments::{self, DriftMode, EnvironmentClass, NewEnvironment};
    use workflowops_tests::n8n::{EmulatorConfig, Fault, N8nEmulator};

    let workflows = setting("WFO_CHAOS_PROMOTED", 250);
    let kills = setting("WFO_CHAOS_KILLS", 8);
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e:#}"));
    let key = domain::crypto::Keyring::generate();
    let keyring = domain::crypto::Keyring::new(&key, &[]).unwrap_or_else(|e| panic!("{e}"));
    let key = secrecy::ExposeSecret::expose_secret(&key).to_owned();
    let dev = N8nEmulator::start(EmulatorConfig::default()).await;
    let prod = N8nEmulator::start(EmulatorConfig::default()).await;
    let ids = dev.seed_workflows(workflows, 4);
    // Every request to the target takes a few milliseconds, so kills land mid-promotion.
    prod.inject(Fault::Slow {
        times: 100_000,
        delay_ms: 4,
    });

    let mut tx = db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let tenant = domain::tenancy::create_tenant(&mut *tx, "Chaos", "chaos")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Promotions are a paid feature: the tenant is on Enterprise, as by a platform admin.
    let enterprise = domain::entitlements::plan_by_key(&mut *tx, "n8n", "enterprise")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    domain::entitlements::set_subscription(
        &mut tx,
        tenant.id,
        &enterprise,
        &domain::entitlements::SubscriptionChange::manual(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let env = |name: &'static str, n8n: &N8nEmulator, class| {
        let (base, api_key) = (n8n.base_url(), secrecy::SecretString::from(n8n.api_key()));
        (name, base, api_key, class)
    };
    let specs = [
        env("dev", &dev, EnvironmentClass::Dev),
        env("prod", &prod, EnvironmentClass::Production),
    ];
    let mut created = Vec::new();
    for (name, base, api_key, class) in &specs {
        let e = environments::create(
            &mut tx,
            &keyring,
            NewEnvironment {
                tenant_id: tenant.id,
                name,
                provider: "n8n",
                base_url: base,
                api_key,
                class: *class,
                env_type: None,
                drift_mode: DriftMode::WarnOnly,
                provider_version: Some("2.41.1"),
                capabilities: &serde_json::json!({}),
                rate_limit: 10_000.0,
                max_concurrency: 8,
                created_by: None,
                limit: 10,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        created.push(e.id);
    }
    let stages = [domain::pipelines::Stage {
        source_environment_id: created[0],
        target_environment_id: created[1],
        gates: Default::default(),
        policy: Default::default(),
        approvals: Default::default(),
        window: None,
    }];
    let pipeline = domain::pipelines::create(
        &mut *tx,
        tenant.id,
        None,
        &domain::pipelines::NewPipeline {
            name: "chaos",
            description: None,
            provider: "n8n",
            stages: &stages,
            active: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let promotion_id = domain::ids::new_id();
    let input = jobs::promotion::PromotionInput {
        tenant_id: tenant.id,
        promotion_id,
    };
    let run = jobs::promotion::new_run(&input, created[1]).max_attempts(100);
    let enqueued = engine::queue::enqueue(&mut tx, &run)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    domain::promotions::create(
        &mut *tx,
        tenant.id,
        &domain::promotions::NewPromotion {
            id: promotion_id,
            pipeline_id: pipeline.id,
            stage_index: 0,
            source_environment_id: created[0],
            target_environment_id: created[1],
            workflow_ids: &ids,
            requested_by: None,
            requested_by_label: "chaos",
            note: None,
            force: false,
            scheduled_at: None,
            run_id: enqueued.id,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));

    let mut workers: Vec<Child> = (0..2).map(|_| start_worker(&db.url, &key)).collect();
    let mut hits = 0;
    for _ in 0..kills {
        // The worker running the promotion, once it has one.
        let owner: Option<i32> = eventually("the promotion to be claimed", Duration::from_secs(30), || async {
            let row: Option<(String, Option<i32>)> = sqlx::query_as(
                "select r.status, w.pid from engine_runs r left join engine_workers w on w.id = r.worker_id where r.id = $1",
            )
            .bind(enqueued.id)
            .fetch_optional(&db.pool)
            .await
            .unwrap_or(None);
            match row {
                Some((status, _)) if status != "running" && status != "queued" => Some(None),
                Some((_, Some(pid))) => Some(Some(pid)),
                _ => None,
            }
        })
        .await;
        let Some(pid) = owner else { break };
        tokio::time::sleep(Duration::from_millis(50 + fastrand::u64(0..200))).await;
        let Some(victim) = workers
            .iter()
            .position(|w| i64::from(w.id()) == i64::from(pid))
        else {
            continue;
        };
        let mut dead = workers.swap_remove(victim);
        dead.kill().unwrap_or_else(|e| panic!("SIGKILL: {e}"));
        let _ = dead.wait();
        hits += 1;
        workers.push(start_worker(&db.url, &key));
    }
    let status: String = eventually(
        "the promotion to finish",
        Duration::from_secs(180),
        || async {
            let s: String = sqlx::query_scalar("select status from promotions where id = $1")
                .bind(promotion_id)
                .fetch_one(&db.pool)
                .await
                .unwrap_or_default();
            ["completed", "failed"].contains(&s.as_str()).then_some(s)
        },
    )
    .await;
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let attempts: i32 = sqlx::query_scalar("select attempt from engine_runs where id = $1")
        .bind(enqueued.id)
        .fetch_one(&db.pool)
        .await
        .unwrap_or(0);
    assert_eq!(status, "completed");
    assert_eq!(
        prod.workflow_count(),
        workflows,
        "exactly one copy of each workflow"
    );
    assert!(hits > 0, "no kill landed on the promotion's worker");
    eprintln!(
        "chaos: promotion of {workflows} workflows completed in {attempts} attempts; {hits} kills hit its worker"
    );
}
