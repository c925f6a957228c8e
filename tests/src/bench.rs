//! Shared by the benchmarks: the n8n emulator as its own process, and waiting for a run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

/// Says so when this benchmark was built with serde_json's `preserve_order` (the browser
/// tests' WebDriver client switches it on): JSON objects are then slower to build than in the
/// `workflowops` binary, so the figures understate the product.
pub fn check_build() {
    let probe: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": 2}"#).unwrap_or_default();
    let first = probe.as_object().and_then(|o| o.keys().next().cloned());
    if first.as_deref() == Some("b") {
        println!(
            "note      built with serde_json preserve_order, unlike the product binary: \
             run `cargo bench -p workflowops-tests --no-default-features --bench …` to measure what ships"
        );
    }
}

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
