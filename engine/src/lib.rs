//! Generic durable execution on PostgreSQL.
//!
//! Runs with checkpointed steps, a queue claimed with `for update skip locked`, leases and
//! fencing, retries, signals, timers, child runs, cron and event streams live here (the engine
//! issue). It knows nothing of n8n, tenants or WorkflowOps' business and depends on none of our
//! crates, so it could be published on its own.
//!
//! Today it holds the worker registry: a worker process registers itself, heartbeats, and marks
//! itself stopped when it drains, so operators can see the pool.

pub mod worker;

pub use worker::{WorkerConfig, WorkerInfo, run_worker};
