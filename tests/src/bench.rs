//! Shared by the benchmarks: the n8n emulator as its own process, and waiting for a run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

/// An n8n emulator process (killed when dropped).
pub struct EmulatorProcess {
    _child: tokio::process::Child,
    pub base: String,
    pub key: String,
}

/// Starts `program` (the `n8n-emulator` binary) seeded with `workflows` of `nodes` nodes.
pub async fn emulator(program: &str, workflows: usize, nodes: usize) -> EmulatorProcess {
    let mut child = tokio::process::Command::new(program)
        .args([
            "--workflows",
            &workflows.to_string(),
            "--nodes",
            &nodes.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting the emulator: {e}"));
    let line = BufReader::new(child.stdout.take().unwrap_or_else(|| panic!("no stdout")))
        .lines()
        .next_line()
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the emulator said nothing"));
    let mut words = line.split_whitespace().skip(2);
    let base = words.next().unwrap_or_default().to_owned();
    let key = words.nth(1).unwrap_or_default().to_owned();
    EmulatorProcess {
        _child: child,
        base,
        key,
    }
}

/// Waits for a run to succeed; its seconds from creation to the end.
pub async fn run_seconds(pool: &sqlx::PgPool, run: Uuid) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let (status, seconds): (String, Option<f64>) = sqlx::query_as(
            "select status, extract(epoch from finished_at - created_at)::float8 from engine_runs where id = $1",
        )
        .bind(run)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        match status.as_str() {
            "succeeded" => return seconds.unwrap_or(0.0),
            "failed" | "cancelled" => panic!("run {run} {status}"),
            _ if Instant::now() > deadline => panic!("run {run} did not finish"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
