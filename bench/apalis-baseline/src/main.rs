//! Bench-only throughput baseline for apalis-postgres 1.0.
//!
//! Enqueues N no-op jobs with one bulk insert (not timed), then starts W
//! workers with a concurrency limit of C each and waits (polling every 50 ms)
//! until all N jobs have status `Done` in `apalis.jobs`. The rate is measured
//! the way `workflowops bench engine` measures its own runs: from the first
//! job's start (`lock_at`) to the last one's end (`done_at`) as the database
//! recorded them; the wall time from worker start is printed beside it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use clap::Parser;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;

const QUEUE: &str = "apalis-baseline-noop";

#[derive(Parser, Debug)]
#[command(about = "Measure apalis-postgres 1.0 throughput with no-op jobs")]
struct Args {
    /// Scratch database URL (apalis migrations are applied to it).
    #[arg(long)]
    database_url: String,
    /// Number of jobs to enqueue and process.
    #[arg(long, default_value_t = 5000)]
    jobs: usize,
    /// Concurrency limit per worker (tower ConcurrencyLimit via `.concurrency(C)`).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Number of apalis workers (each has its own backend/fetch loop).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// apalis-postgres `Config::batch_size`: jobs fetched per `get_jobs` call
    /// (also sizes the ack channel to 4x this value). Crate default is 10.
    #[arg(long, default_value_t = 10)]
    buffer_size: usize,
    /// Max connections of the pool shared by all workers (sqlx default is 10).
    #[arg(long, default_value_t = 10)]
    pool_size: u32,
    /// Give up if the jobs are not all done after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
}

/// A trivial job: the handler does nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NoopJob {
    n: u32,
}

async fn noop(_job: NoopJob) -> Result<(), BoxDynError> {
    Ok(())
}

#[derive(Debug, Default)]
struct Counts {
    done: i64,
    failed: i64,
    killed: i64,
    total: i64,
}

async fn counts(pool: &sqlx::PgPool) -> anyhow::Result<Counts> {
    let (done, failed, killed, total): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'Done'), \
                count(*) FILTER (WHERE status = 'Failed'), \
                count(*) FILTER (WHERE status = 'Killed'), \
                count(*) \
         FROM apalis.jobs WHERE job_type = $1",
    )
    .bind(QUEUE)
    .fetch_one(pool)
    .await?;
    Ok(Counts { done, failed, killed, total })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.jobs == 0 || args.concurrency == 0 || args.workers == 0 || args.buffer_size == 0 {
        bail!("--jobs, --concurrency, --workers and --buffer-size must all be > 0");
    }

    let pool = PgPoolOptions::new()
        .max_connections(args.pool_size)
        .connect(&args.database_url)
        .await
        .context("connecting worker pool")?;
    // Separate single connection for completion polling so it never competes
    // with the workers for pool slots.
    let monitor = PgPoolOptions::new()
        .max_connections(1)
        .connect(&args.database_url)
        .await
        .context("connecting monitor pool")?;

    PostgresStorage::setup(&pool).await.context("apalis-postgres setup (migrations)")?;

    let config = Config::default().queue(QUEUE).batch_size(args.buffer_size);
    let storage: PostgresStorage<NoopJob> = PostgresStorage::new(&pool).with_config(config);

    // Enqueue (not timed): `push_bulk` encodes all jobs and flushes them as one
    // multi-row INSERT ... SELECT unnest(...) per call. Chunked to bound array size.
    let enqueue_start = Instant::now();
    let mut sink = storage.clone();
    let mut next = 0u32;
    while (next as usize) < args.jobs {
        let end = (next as usize + 10_000).min(args.jobs) as u32;
        let chunk: Vec<NoopJob> = (next..end).map(|n| NoopJob { n }).collect();
        sink.push_bulk(chunk).await.map_err(|e| anyhow::anyhow!("push_bulk: {e}"))?;
        next = end;
    }
    let enqueued = counts(&monitor).await?;
    if enqueued.total != args.jobs as i64 {
        bail!("expected {} jobs enqueued, found {}", args.jobs, enqueued.total);
    }
    eprintln!(
        "enqueued {} jobs in {:.3} s (not timed); pool_size {}",
        enqueued.total,
        enqueue_start.elapsed().as_secs_f64(),
        args.pool_size
    );

    // Timed section: start workers, poll until all jobs are Done.
    let start = Instant::now();
    let mut contexts = Vec::with_capacity(args.workers);
    let mut handles = Vec::with_capacity(args.workers);
    for i in 0..args.workers {
        let ctx = WorkerContext::new(format!("apalis-baseline-{i}").as_str());
        let worker = WorkerBuilder::new(&ctx)
            .backend(storage.clone())
            .concurrency(args.concurrency)
            .parallelize(tokio::spawn)
            .build(noop);
        contexts.push(ctx);
        handles.push(tokio::spawn(worker.run()));
    }

    let deadline = start + Duration::from_secs(args.timeout_secs);
    let finished = loop {
        let c = counts(&monitor).await?;
        if c.done >= args.jobs as i64 {
            break c;
        }
        if handles.iter().any(|h| h.is_finished()) {
            bail!("a worker exited before all jobs were done: {c:?}");
        }
        if Instant::now() > deadline {
            bail!("timed out after {} s: {c:?}", args.timeout_secs);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = start.elapsed();

    for ctx in &contexts {
        let _ = ctx.stop();
    }
    for h in handles {
        match tokio::time::timeout(Duration::from_secs(10), h).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("worker error on shutdown: {e}"),
            Ok(Err(e)) => eprintln!("worker task panicked: {e}"),
            Err(_) => eprintln!("worker did not stop within 10 s"),
        }
    }

    if finished.failed + finished.killed > 0 {
        eprintln!(
            "warning: {} Failed / {} Killed rows seen at completion",
            finished.failed, finished.killed
        );
    }
    let wall = elapsed.as_secs_f64();
    let secs: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(done_at) - min(lock_at))::float8 \
         FROM apalis.jobs WHERE job_type = $1",
    )
    .bind(QUEUE)
    .fetch_one(&monitor)
    .await
    .context("reading the jobs' start and end times")?;
    println!(
        "apalis-postgres: {} jobs, {} worker(s) x {} concurrency, buffer {}, wall {:.3} s ({:.0} jobs/s from worker start): {:.0} jobs/s",
        args.jobs,
        args.workers,
        args.concurrency,
        args.buffer_size,
        wall,
        args.jobs as f64 / wall,
        args.jobs as f64 / secs.max(1e-6)
    );
    Ok(())
}
