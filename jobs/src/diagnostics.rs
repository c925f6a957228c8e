//! `diagnostics.ledger`: a self-test job for operators, benchmarks and chaos tests. Each of its
//! steps appends one row to `diagnostics_ledger` (deliberately not idempotent, so a step that
//! ran twice shows), then optionally sleeps; it can fail transiently on its first attempts.

use std::time::Duration;

use engine::{Job, JobError, RetryPolicy, RunCtx};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default)]
pub struct Ledger;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerInput {
    /// Steps to run (1-1000).
    pub steps: u32,
    /// How long each step takes, in milliseconds.
    #[serde(default)]
    pub step_ms: u64,
    /// Fail transiently on this many first attempts (before any step).
    #[serde(default)]
    pub fail_attempts: u32,
    /// Fail permanently instead of succeeding.
    #[serde(default)]
    pub fail_permanently: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerOutput {
    pub steps: u32,
}

async fn record(
    db: &sqlx::PgPool,
    run_id: uuid::Uuid,
    attempt: i32,
    step: &str,
) -> Result<(), JobError> {
    sqlx::query("insert into diagnostics_ledger (run_id, step, attempt) values ($1, $2, $3)")
        .bind(run_id)
        .bind(step)
        .bind(attempt)
        .execute(db)
        .await?;
    Ok(())
}

impl Job for Ledger {
    const KIND: &'static str = "diagnostics.ledger";
    type Input = LedgerInput;
    type Output = LedgerOutput;

    /// A diagnostic kind: any signal may reach it (it never waits for one).
    fn accepts_api_signal(_name: &str) -> bool {
        true
    }

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 100,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }

    async fn run(&self, ctx: &mut RunCtx, input: LedgerInput) -> Result<LedgerOutput, JobError> {
        if !(1..=1000).contains(&input.steps) || input.step_ms > 60_000 {
            return Err(JobError::permanent(
                "steps must be 1-1000 and step_ms at most 60000",
            ));
        }
        if u32::try_from(ctx.attempt).unwrap_or(0) <= input.fail_attempts {
            return Err(JobError::transient(format!(
                "failing attempt {} on purpose",
                ctx.attempt
            )));
        }
        for i in 0..input.steps {
            let name = format!("step-{i}");
            let step_ms = input.step_ms;
            let (run_id, attempt, db) = (ctx.run_id, ctx.attempt, ctx.db().clone());
            ctx.step(&name, || async move {
                record(&db, run_id, attempt, &format!("step-{i}")).await?;
                if step_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(step_ms)).await;
                }
                Ok(i)
            })
            .await?;
            ctx.progress(i64::from(i) + 1, i64::from(input.steps))
                .await?;
        }
        if input.fail_permanently {
            return Err(JobError::permanent("failing permanently on purpose"));
        }
        ctx.log("info", format!("all {} steps done", input.steps))
            .await?;
        Ok(LedgerOutput { steps: input.steps })
    }

    async fn compensate(&self, ctx: &mut RunCtx, _input: LedgerInput) -> Result<(), JobError> {
        record(ctx.db(), ctx.run_id, ctx.attempt, "compensate").await
    }
}

/// `diagnostics.steps`: N checkpointed steps with no side effect (engine benchmarks).
#[derive(Debug, Clone, Copy, Default)]
pub struct Steps;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepsInput {
    pub steps: u32,
    /// How long each step sleeps, in milliseconds.
    #[serde(default)]
    pub step_ms: u64,
}

impl Job for Steps {
    const KIND: &'static str = "diagnostics.steps";
    type Input = StepsInput;
    type Output = u32;

    async fn run(&self, ctx: &mut RunCtx, input: StepsInput) -> Result<u32, JobError> {
        if input.steps > 1000 || input.step_ms > 3_600_000 {
            return Err(JobError::permanent(
                "steps must be at most 1000 and step_ms at most an hour",
            ));
        }
        for i in 0..input.steps {
            let step_ms = input.step_ms;
            let cancel = ctx.cancellation().clone();
            ctx.step(&format!("step-{i}"), || async move {
                if step_ms > 0 {
                    tokio::select! {
                        () = cancel.cancelled() => return Err(JobError::Cancelled),
                        () = tokio::time::sleep(Duration::from_millis(step_ms)) => {}
                    }
                }
                Ok(i)
            })
            .await?;
        }
        Ok(input.steps)
    }
}
