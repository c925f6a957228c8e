//! Generic durable execution on PostgreSQL.
//!
//! A **run** is one execution of a job kind: a row with typed input, status, attempt, progress,
//! parent, idempotency and concurrency keys. A job's **steps** (`ctx.step(name, …)`) are
//! checkpointed: on a later attempt a completed step returns its stored output without running.
//! Workers claim runs with `for update skip locked` (round-robin between namespaces, honouring
//! concurrency keys), prove they are alive with a session advisory lock, keep leases as the
//! fallback, and every change they make is fenced by run id + attempt + owner. Runs can wait for
//! signals, timers and child runs without holding a worker, be cancelled (with compensation),
//! and are retried with persisted exponential backoff. Every state change, progress report and
//! log line is an ordered event, announced with `pg_notify`.
//!
//! Knows nothing of n8n, tenants or WorkflowOps' business (a namespace is an opaque string) and
//! depends on none of our crates.

mod commit;
pub mod context;
pub mod job;
pub mod model;
pub mod queue;
pub mod read;
pub mod schedule;
pub mod worker;

pub use context::{ChildOutcome, RunCtx};
pub use job::{Job, JobError, Registry};
pub use model::{RetryPolicy, RunStatus, Wait};
pub use queue::{NewRun, Run};
pub use worker::{WorkerConfig, WorkerInfo, run_worker};
