//! `workflowops bench engine`: measures the durable engine on this machine, each figure next to
//! a baseline measured in the same run (never against a fixed number). Works in scratch
//! databases on the server of DATABASE_URL and drops them afterwards.

use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use engine::NewRun;
use jobs::diagnostics::{Steps, StepsInput};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};

use secrecy::ExposeSecret;
use tokio::process::{Child, Command};

use crate::config::BenchArgs;
use crate::db;

/// `base` with its database replaced by `name`, keeping everything else (credentials, options)
/// as the user wrote it, so libpq (pgbench) reads it too.
fn with_database(base: &str, name: &str) -> String {
    let (main, query) = base
        .split_once('?')
        .map_or((base, None), |(m, q)| (m, Some(q)));
    let authority_end = main.find("://").map_or(0, |i| i + 3);
    let root = match main[authority_end..].find('/') {
        Some(i) => &main[..authority_end + i],
        None => main,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

struct Scratch {
    url: String,
    name: String,
    admin: PgConnectOptions,
}

impl Scratch {
    async fn create(base: &str, suffix: &str) -> anyhow::Result<Self> {
        let opts = PgConnectOptions::from_str(base)?;
        let name = format!("wfo_bench_{}_{suffix}", std::process::id());
        let admin = opts.clone().database("postgres");
        let mut conn = admin.connect().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database if exists \"{name}\" with (force)"
        )))
        .execute(&mut conn)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("create database \"{name}\"")))
            .execute(&mut conn)
            .await?;
        Ok(Self {
            url: with_database(base, &name),
            name,
            admin,
        })
    }

    async fn drop(self) -> anyhow::Result<()> {
        let mut conn = self.admin.connect().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database if exists \"{}\" with (force)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

fn worker(url: &str, concurrency: u32) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating this binary")?;
    Command::new(exe)
        .args([
            "worker",
            "--concurrency",
            &concurrency.to_string(),
            "--heartbeat",
            "1s",
        ])
        .env("DATABASE_URL", url)
        .env(
            "WFO_MASTER_KEY",
            domain::crypto::Keyring::generate().expose_secret(),
        )
        .env("WFO_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting a worker process")
}

/// Polls the count `sql` returns every `every` until it equals `want`, or fails after `limit`.
async fn await_count(
    pool: &PgPool,
    sql: &'static str,
    want: i64,
    every: Duration,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(pool).await?;
        if n == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("waited {limit:?} for `{sql}` to reach {want}; it is {n}");
        }
        tokio::time::sleep(every).await;
    }
}

async fn enqueue_steps(pool: &PgPool, n: usize, steps: u32) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for i in 0..n {
        let run = NewRun::of::<Steps>(
            format!("bench-{}", i % 8),
            &StepsInput { steps, step_ms: 0 },
        );
        engine::queue::enqueue(&mut tx, &run).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The middle of some measurements (the mean of the two middle ones for an even count).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => f64::midpoint(v[n / 2 - 1], v[n / 2]),
    }
}

/// Asks the server for a checkpoint before a timed measurement, so each starts from the same
/// write-ahead-log state: one the server starts by itself in the middle of a measurement (every
/// gigabyte of WAL, here every minute or two of benchmarking) slows that measurement alone, by
/// the full-page images that follow it. Needs a superuser or the `pg_checkpoint` role; without
/// them the measurements go on as they are.
async fn checkpoint(pool: &PgPool) {
    if let Err(e) = sqlx::query("checkpoint").execute(pool).await {
        tracing::debug!(error = %e, "no checkpoint before the measurement");
    }
}

async fn scalar_f64(pool: &PgPool, sql: &'static str) -> anyhow::Result<f64> {
    Ok(sqlx::query_scalar::<_, f64>(sql).fetch_one(pool).await?)
}

/// Runs `n` runs of `steps` steps with `processes` worker processes; returns runs per second,
/// from the first start to the last finish as the database recorded them.
async fn throughput(
    pool: &PgPool,
    url: &str,
    n: usize,
    steps: u32,
    processes: usize,
    concurrency: u32,
) -> anyhow::Result<f64> {
    sqlx::query("truncate engine_runs, engine_steps, engine_events cascade")
        .execute(pool)
        .await?;
    enqueue_steps(pool, n, steps).await?;
    let mut workers = Vec::new();
    for _ in 0..processes {
        workers.push(worker(url, concurrency)?);
    }
    await_count(
        pool,
        "select count(*) from engine_runs where status <> 'succeeded'",
        0,
        Duration::from_millis(50),
        Duration::from_secs(600),
    )
    .await?;
    for mut w in workers {
        let _ = w.kill().await;
    }
    let seconds = scalar_f64(
        pool,
        "select extract(epoch from max(finished_at) - min(started_at))::float8 from engine_runs",
    )
    .await?;
    #[allow(clippy::cast_precision_loss)]
    Ok(n as f64 / seconds.max(1e-6))
}

async fn pgbench_tps(base: &str, seconds: u64) -> anyhow::Result<f64> {
    let scratch = Scratch::create(base, "pgbench").await?;
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "10", &scratch.url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .context("running pgbench (install postgresql-contrib / the pgbench package)")?;
    if !init.success() {
        bail!("pgbench -i failed");
    }
    let out = Command::new("pgbench")
        .args([
            "-N",
            "-c",
            "32",
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            &scratch.url,
        ])
        .output()
        .await?;
    scratch.drop().await?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| {
            l.trim_start_matches("tps = ")
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .ok_or_else(|| anyhow!("cannot read pgbench's tps from: {text}"))
}

/// Runs the apalis baseline binary in a scratch database; returns its jobs per second.
async fn apalis_rate(
    base: &str,
    binary: &std::path::Path,
    jobs: usize,
    concurrency: u32,
    workers: u32,
    batch: u32,
) -> anyhow::Result<f64> {
    let scratch = Scratch::create(base, "apalis").await?;
    let out = Command::new(binary)
        .args([
            "--database-url",
            &scratch.url,
            "--jobs",
            &jobs.to_string(),
            "--concurrency",
            &concurrency.to_string(),
            "--workers",
            &workers.to_string(),
            "--buffer-size",
            &batch.to_string(),
        ])
        .output()
        .await
        .with_context(|| format!("running {}", binary.display()))?;
    scratch.drop().await?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.starts_with("apalis-postgres:"))
        .find_map(|l| {
            l.rsplit_once(": ")?
                .1
                .split(" jobs/s")
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| anyhow!("cannot read the apalis baseline's rate from: {text}"))
}

/// Enqueue→start latency over `n` sequential runs with one idle worker: (p50, p99) in ms.
async fn idle_latency(pool: &PgPool, url: &str, n: usize) -> anyhow::Result<(f64, f64)> {
    sqlx::query("truncate engine_runs, engine_steps, engine_events cascade")
        .execute(pool)
        .await?;
    let mut w = worker(url, 4)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..n {
        let mut tx = pool.begin().await?;
        let id = engine::queue::enqueue(
            &mut tx,
            &NewRun::of::<Steps>(
                "latency",
                &StepsInput {
                    steps: 1,
                    step_ms: 0,
                },
            ),
        )
        .await?
        .id;
        tx.commit().await?;
        loop {
            let done: bool =
                sqlx::query_scalar("select status = 'succeeded' from engine_runs where id = $1")
                    .bind(id)
                    .fetch_one(pool)
                    .await?;
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let _ = w.kill().await;
    let (p50, p99): (f64, f64) = sqlx::query_as(
        "select percentile_cont(0.5) within group (order by ms), percentile_cont(0.99) within group (order by ms) \
         from (select extract(epoch from started_at - created_at) * 1000 as ms from engine_runs) t",
    )
    .fetch_one(pool)
    .await?;
    Ok((p50, p99))
}

/// kill -9 of a worker holding runs → seconds until another worker has resumed all of them.
async fn recovery(pool: &PgPool, url: &str) -> anyhow::Result<f64> {
    sqlx::query("truncate engine_runs, engine_steps, engine_events cascade")
        .execute(pool)
        .await?;
    let mut victim = worker(url, 4)?;
    let mut tx = pool.begin().await?;
    for _ in 0..4 {
        engine::queue::enqueue(
            &mut tx,
            &NewRun::of::<Steps>(
                "recovery",
                &StepsInput {
                    steps: 1,
                    step_ms: 60_000,
                },
            ),
        )
        .await?;
    }
    tx.commit().await?;
    await_count(
        pool,
        "select count(*) from engine_runs where status = 'running'",
        4,
        Duration::from_millis(20),
        Duration::from_secs(60),
    )
    .await?;
    let mut rescuer = worker(url, 4)?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select now()").fetch_one(pool).await?;
    victim.kill().await?;
    await_count(
        pool,
        "select count(*) from engine_runs where status = 'running' and attempt = 2",
        4,
        Duration::from_millis(10),
        Duration::from_secs(60),
    )
    .await?;
    let _ = rescuer.kill().await;
    // started_at is kept from the first attempt; the resume time is the last state change.
    let resumed_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "select max(e.created_at) from engine_events e where e.kind = 'state' and e.data->>'status' = 'running' and (e.data->>'attempt')::int = 2",
    )
    .fetch_one(pool)
    .await?;
    #[allow(clippy::cast_precision_loss)]
    Ok((resumed_at - killed_at).num_milliseconds() as f64 / 1000.0)
}

async fn fill_history(pool: &PgPool, finished: i64, future: i64) -> anyhow::Result<()> {
    sqlx::query("truncate engine_runs, engine_steps, engine_events cascade")
        .execute(pool)
        .await?;
    sqlx::query("alter table engine_runs disable trigger engine_runs_inserted")
        .execute(pool)
        .await?;
    sqlx::query(
        "insert into engine_runs (id, namespace, kind, input, status, attempt, max_attempts, run_at, created_at, started_at, finished_at) \
         select gen_random_uuid(), 'history-' || (g % 50), 'diagnostics.steps', '{\"steps\":1}', 'succeeded', 1, 5, \
                now() - interval '1 day', now() - interval '1 day', now() - interval '1 day', now() - interval '1 day' \
         from generate_series(1, $1) g",
    )
    .bind(finished)
    .execute(pool)
    .await?;
    sqlx::query(
        "insert into engine_runs (id, namespace, kind, input, status, max_attempts, run_at) \
         select gen_random_uuid(), 'future-' || (g % 50), 'diagnostics.steps', '{\"steps\":1}', 'waiting', 5, now() + interval '30 days' \
         from generate_series(1, $1) g",
    )
    .bind(future)
    .execute(pool)
    .await?;
    sqlx::query("alter table engine_runs enable trigger engine_runs_inserted")
        .execute(pool)
        .await?;
    // Measure steady state, not the autovacuum pass a fresh bulk load sets off.
    sqlx::query("vacuum (analyze) engine_runs")
        .execute(pool)
        .await?;
    Ok(())
}

/// Throughput of `n` new 1-step runs with the history tables full (the history is kept).
async fn throughput_with_history(
    pool: &PgPool,
    url: &str,
    n: usize,
    concurrency: u32,
) -> anyhow::Result<f64> {
    // The previous round's runs go, and vacuum clears what they left (autovacuum would, in
    // steady state; it may be off on a benchmark server), so every round sees the same tables.
    sqlx::query("delete from engine_runs where namespace like 'bench-%'")
        .execute(pool)
        .await?;
    sqlx::query("vacuum engine_runs, engine_steps, engine_events")
        .execute(pool)
        .await?;
    enqueue_steps(pool, n, 1).await?;
    let mut w = worker(url, concurrency)?;
    // Indexed (partial indexes over unfinished runs): the harness must not scan the history.
    await_count(
        pool,
        "select (select count(*) from engine_runs where status = 'queued') \
              + (select count(*) from engine_runs where status = 'running')",
        0,
        Duration::from_millis(50),
        Duration::from_secs(600),
    )
    .await?;
    let _ = w.kill().await;
    let seconds = scalar_f64(
        pool,
        "select extract(epoch from max(finished_at) - min(started_at))::float8 from engine_runs where namespace like 'bench-%'",
    )
    .await?;
    #[allow(clippy::cast_precision_loss)]
    Ok(n as f64 / seconds.max(1e-6))
}

pub async fn run(database_url: &str, args: BenchArgs) -> anyhow::Result<()> {
    println!(
        "workflowops bench engine: {} runs per throughput figure, {} s of pgbench",
        args.runs, args.pgbench_seconds
    );
    let tps = pgbench_tps(database_url, args.pgbench_seconds).await?;
    println!(
        "baseline  pgbench -N -c 32 -T {}: {tps:.0} TPS (the server's commit rate)",
        args.pgbench_seconds
    );

    let scratch = Scratch::create(database_url, "engine").await?;
    let pool = db::connect(&scratch.url, 8).await?;
    db::migrate(&pool).await?;
    let c = args.concurrency;

    let three = throughput(&pool, &scratch.url, args.runs, 3, 2, c).await?;
    println!(
        "durable 3-step runs/s, 2 workers x {c}: {three:.0}  ratio to pgbench TPS: {:.2} (target >= 1.0)",
        three / tps
    );
    // The 1-step figures and their apalis baselines, measured back to back in rounds; the
    // figures are the rounds' medians (the ratios: the median of each round's own ratio).
    let rounds = args.rounds.max(1);
    let mut ours: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut apalis: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut ratios: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        let mut line = format!("round {round}/{rounds}:");
        for (i, workers) in [1u32, 2].into_iter().enumerate() {
            checkpoint(&pool).await;
            let rate = throughput(&pool, &scratch.url, args.runs, 1, workers as usize, c).await?;
            ours[i].push(rate);
            line.push_str(&format!(" {workers} worker(s) {rate:.0} runs/s"));
            if let Some(binary) = &args.apalis {
                checkpoint(&pool).await;
                let base = apalis_rate(
                    database_url,
                    binary,
                    args.runs,
                    c,
                    workers,
                    args.apalis_batch,
                )
                .await?;
                apalis[i].push(base);
                ratios[i].push(rate / base);
                line.push_str(&format!(" (apalis {base:.0} jobs/s: {:.2})", rate / base));
            }
            line.push(if i == 0 { ';' } else { '.' });
        }
        println!("{line}");
    }
    for (i, workers) in [1u32, 2].into_iter().enumerate() {
        println!(
            "1-step runs/s, {workers} worker(s) x {c}: {:.0} (median of {rounds} rounds)",
            median(&ours[i])
        );
        if args.apalis.is_some() {
            println!(
                "apalis-postgres baseline, {workers} worker(s) x {c}, batch {}: {:.0} jobs/s  ratio ours/apalis: {:.2} (median of the rounds' ratios; target >= 2.0)",
                args.apalis_batch,
                median(&apalis[i]),
                median(&ratios[i])
            );
        }
    }
    let (p50, p99) = idle_latency(&pool, &scratch.url, args.latency_runs).await?;
    println!(
        "idle enqueue->start over {} sequential runs: p50 {p50:.2} ms, p99 {p99:.2} ms (target p50 <= 3, p99 <= 10)",
        args.latency_runs
    );
    let rec = recovery(&pool, &scratch.url).await?;
    println!(
        "kill -9 of a worker holding 4 runs -> all resumed elsewhere in {rec:.2} s (target <= 2)"
    );
    if args.history > 0 {
        // A second scratch database holds the history; each round measures the empty one and
        // the loaded one back to back, so the ratio does not depend on when it was measured.
        let loaded_db = Scratch::create(database_url, "history").await?;
        let loaded_pool = db::connect(&loaded_db.url, 8).await?;
        db::migrate(&loaded_pool).await?;
        fill_history(&loaded_pool, args.history, args.history / 10).await?;
        let (mut empty, mut loaded, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            checkpoint(&pool).await;
            let e = throughput(&pool, &scratch.url, args.runs, 1, 1, c).await?;
            checkpoint(&pool).await;
            let l = throughput_with_history(&loaded_pool, &loaded_db.url, args.runs, c).await?;
            empty.push(e);
            loaded.push(l);
            ratios.push(l / e);
        }
        println!(
            "1-step runs/s, 1 worker x {c}, with {} finished and {} future runs in the table: {:.0} (empty table, same rounds: {:.0})  ratio to empty: {:.2} (median of {rounds} rounds' ratios; target >= 0.8)",
            args.history,
            args.history / 10,
            median(&loaded),
            median(&empty),
            median(&ratios)
        );
        loaded_pool.close().await;
        loaded_db.drop().await?;
    }
    pool.close().await;
    scratch.drop().await?;
    Ok(())
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The commit-time stamp (`"at"`) of an SSE frame that is a state event.
fn state_stamp(frame: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    find(frame, b"event: state\n")?;
    let from = find(frame, b"\"at\":\"")? + 6;
    let len = frame[from..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&frame[from..from + len])
        .ok()?
        .parse()
        .ok()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// `bench sse`: N subscribers on one `workflowops serve` process; runs executed meanwhile; the
/// delay from each state event's commit-time stamp to its arrival at each subscriber.
pub async fn run_sse(database_url: &str, args: crate::config::SseBenchArgs) -> anyhow::Result<()> {
    let scratch = Scratch::create(database_url, "sse").await?;
    let pool = db::connect(&scratch.url, 8).await?;
    db::migrate(&pool).await?;
    let tenant = domain::tenancy::create_tenant(&pool, "Bench", "bench").await?;
    let user =
        domain::tenancy::create_user(&pool, "bench@bench.example", "Bench", "unused").await?;
    domain::tenancy::add_member(&pool, tenant.id, user.id, domain::Role::Viewer).await?;
    let session = domain::sessions::create(
        &pool,
        domain::sessions::NewSession {
            user_id: user.id,
            tenant_id: Some(tenant.id),
            ttl: chrono::Duration::hours(1),
            ip: None,
            user_agent: None,
        },
    )
    .await?;
    let token = session.token.plaintext;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe()?;
    let mut server = Command::new(&exe)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &scratch.url)
        .env(
            "WFO_MASTER_KEY",
            domain::crypto::Keyring::generate().expose_secret(),
        )
        .env("WFO_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let server_pid = server.id().unwrap_or(0);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_idle = rss_kib(server_pid);

    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    let connected = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut subscribers = Vec::with_capacity(args.subscribers);
    let request = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    for _ in 0..args.subscribers {
        let (request, lat_tx, connected) = (
            request.clone(),
            lat_tx.clone(),
            std::sync::Arc::clone(&connected),
        );
        subscribers.push(tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            // A lean client on a plain socket (no HTTP client, no allocation per event, only
            // the stamp parsed): the 1,000 clients share the machine's cores with the API,
            // and their own cost is not what is measured. The response is chunked; a chunk
            // holds whole frames, so its size line only ever sits between two frames.
            let Ok(mut socket) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                return;
            };
            if socket.write_all(request.as_bytes()).await.is_err() {
                return;
            }
            let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
            let mut chunk = vec![0u8; 64 * 1024];
            let mut headers = true;
            loop {
                let n = match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut start = 0;
                if headers {
                    let Some(end) = find(&buf, b"\r\n\r\n") else {
                        continue;
                    };
                    if !buf.starts_with(b"HTTP/1.1 200") {
                        return;
                    }
                    headers = false;
                    start = end + 4;
                    connected.add_permits(1);
                }
                while let Some(end) = find(&buf[start..], b"\n\n") {
                    let block = &buf[start..start + end];
                    start += end + 2;
                    if let Some(at) = state_stamp(block) {
                        #[allow(clippy::cast_precision_loss)]
                        let ms = (chrono::Utc::now() - at).num_microseconds().unwrap_or(0) as f64
                            / 1000.0;
                        let _ = lat_tx.send(ms);
                    }
                }
                buf.drain(..start);
            }
        }));
    }
    drop(lat_tx);
    let n = u32::try_from(args.subscribers).unwrap_or(u32::MAX);
    tokio::time::timeout(Duration::from_secs(60), connected.acquire_many(n))
        .await
        .context("subscribers did not all connect within a minute")??
        .forget();
    let rss_subscribed = rss_kib(server_pid);

    let mut worker = worker(&scratch.url, 8)?;
    for _ in 0..args.runs {
        let mut tx = pool.begin().await?;
        engine::queue::enqueue(
            &mut tx,
            &NewRun::of::<Steps>(
                tenant.id.to_string(),
                &StepsInput {
                    steps: 1,
                    step_ms: 0,
                },
            ),
        )
        .await?;
        tx.commit().await?;
        tokio::time::sleep(Duration::from_millis(args.every_ms)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: i64 =
            sqlx::query_scalar("select count(*) from engine_runs where status <> 'succeeded'")
                .fetch_one(&pool)
                .await?;
        if left == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_busy = rss_kib(server_pid);
    for s in &subscribers {
        s.abort();
    }
    let _ = worker.kill().await;
    let _ = server.kill().await;
    let mut samples = Vec::new();
    while let Ok(ms) = lat_rx.try_recv() {
        samples.push(ms);
    }
    samples.sort_by(f64::total_cmp);
    let expected = args.subscribers * args.runs * 3;
    let pct = |p: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples.get(i).copied().unwrap_or(f64::NAN)
    };
    println!(
        "{} subscribers, {} runs one every {} ms: {} of {expected} state deliveries; latency p50 {:.1} ms, p99 {:.1} ms (target p99 <= 100)",
        args.subscribers,
        args.runs,
        args.every_ms,
        samples.len(),
        pct(0.5),
        pct(0.99)
    );
    println!(
        "API RSS: {} MiB idle, {} MiB with subscribers, {} MiB after delivery",
        rss_idle.unwrap_or(0) / 1024,
        rss_subscribed.unwrap_or(0) / 1024,
        rss_busy.unwrap_or(0) / 1024
    );
    pool.close().await;
    scratch.drop().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_sse_bench_reads_the_stamp_of_state_frames_only() {
        let state = b"id: 7-9\nevent: state\ndata: {\"at\":\"2026-12-06T19:00:00.5Z\",\"data\":{\"run_at\":\"2020-01-01T00:00:00Z\"}}";
        assert_eq!(
            super::state_stamp(state).map(|t| t.to_rfc3339()),
            Some("2026-12-06T19:00:00.500+00:00".to_owned())
        );
        let log = b"id: 7-10\nevent: log\ndata: {\"at\":\"2026-12-06T19:00:00Z\"}";
        assert_eq!(super::state_stamp(log), None);
        assert_eq!(super::state_stamp(b":keep-alive"), None);
    }

    #[test]
    fn swapping_the_database_keeps_credentials_and_options() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/app?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://localhost", "x"),
            "postgres://localhost/x"
        );
    }
}
