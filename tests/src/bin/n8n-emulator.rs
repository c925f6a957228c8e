//! The n8n emulator as a process: for benchmarks (so WorkflowOps' memory is measured apart from
//! the emulator's) and for trying WorkflowOps without an n8n instance.
//!
//! `cargo run -p workflowops-tests --bin n8n-emulator -- --workflows 200 --executions 1000`
//! prints `listening on http://127.0.0.1:PORT key KEY` and serves until stdin closes or Ctrl-C.

use clap::Parser;
use tokio::io::AsyncReadExt;
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};

#[derive(Debug, Parser)]
#[command(about = "An n8n public API emulator on loopback")]
struct Args {
    /// The n8n version to emulate (1.x and 2.x rules differ).
    #[arg(long, default_value = "2.41.1")]
    version: String,
    #[arg(long, default_value = "n8n-test-key")]
    api_key: String,
    /// Workflows to seed.
    #[arg(long, default_value_t = 0)]
    workflows: usize,
    /// Nodes per seeded workflow.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Executions to seed (spread over the workflows).
    #[arg(long, default_value_t = 0)]
    executions: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let n8n = N8nEmulator::start(EmulatorConfig {
        version: args.version,
        api_key: args.api_key,
    })
    .await;
    if args.workflows > 0 {
        n8n.seed_workflows(args.workflows, args.nodes);
    }
    if args.executions > 0 {
        n8n.seed_executions(args.executions);
    }
    println!("listening on {} key {}", n8n.base_url(), n8n.api_key());
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { while stdin.read(&mut buf).await.is_ok_and(|n| n > 0) {} } => {}
    }
    drop(n8n);
}
