//! Fan-out over environments (BULK-001..005): a parent run starts one child run per
//! environment, waits for all of them (holding no worker meanwhile), and reports each
//! environment's outcome with a partial-failure summary.

use std::collections::BTreeMap;

use engine::{ChildOutcome, JobError, NewRun, RunCtx};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Per-environment outcomes and the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkOutcome {
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub environments: BTreeMap<Uuid, ChildOutcome>,
}

/// Starts `children` (one per environment, in the order of `environments`) and joins them.
pub async fn fan_out(
    ctx: &mut RunCtx,
    what: &str,
    environments: &[Uuid],
    children: Vec<NewRun>,
) -> Result<BulkOutcome, JobError> {
    let ids = ctx.spawn_children(what, children).await?;
    ctx.log("info", format!("started {} {what}", ids.len()))
        .await?;
    let outcomes = ctx.join_children().await?;
    let by_child: BTreeMap<Uuid, Uuid> = ids
        .iter()
        .copied()
        .zip(environments.iter().copied())
        .collect();
    let mut out = BulkOutcome {
        succeeded: 0,
        failed: 0,
        cancelled: 0,
        environments: BTreeMap::new(),
    };
    for child in outcomes {
        match child.status.as_str() {
            "succeeded" => out.succeeded += 1,
            "cancelled" => out.cancelled += 1,
            _ => out.failed += 1,
        }
        if let Some(env) = by_child.get(&child.id) {
            out.environments.insert(*env, child);
        }
    }
    ctx.log(
        "info",
        format!(
            "{what}: {} succeeded, {} failed, {} cancelled",
            out.succeeded, out.failed, out.cancelled
        ),
    )
    .await?;
    Ok(out)
}
