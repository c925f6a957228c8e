//! Job kinds: a trait with a stable name, typed input and output, a retry policy, a timeout and
//! an optional compensation; and the registry a worker runs them from.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::context::RunCtx;
use crate::model::{RetryPolicy, Wait};

/// How a job (or one of its steps) failed, decided where the failure happened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// Worth retrying: network errors, 5xx, 429 (with the peer's Retry-After), lock timeouts.
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help.
    #[error("{message}")]
    Permanent { message: String },
    /// Cancellation was requested; stop and let compensation run.
    #[error("cancelled")]
    Cancelled,
    /// The run parked itself (signal, timer, children); the engine resumes it later. Propagate
    /// with `?`; never handle.
    #[error("suspended")]
    Suspended(Wait),
    /// This worker no longer owns the run (its lease was lost); another worker has it. Propagate.
    #[error("lost ownership of the run")]
    Fenced,
    /// The worker is shutting down: the run stops at this step boundary and goes back to the
    /// queue, where another worker resumes it from its checkpoints at once. Propagate with `?`;
    /// never handle.
    #[error("released: the worker is shutting down")]
    Released,
}

impl JobError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        // The database failing under a step is almost always transient (restart, failover).
        Self::transient(format!("database: {e}"))
    }
}

/// A kind of job. `KIND` is stored with every run: never rename it once runs exist.
pub trait Job: Send + Sync + 'static {
    const KIND: &'static str;
    type Input: Serialize + DeserializeOwned + Send + Sync;
    type Output: Serialize + DeserializeOwned + Send;

    /// How the kind retries; its `max_attempts` is what [`crate::queue::NewRun::of`] gives a
    /// new run of the kind (a run may still set its own).
    fn retry_policy() -> RetryPolicy
    where
        Self: Sized,
    {
        RetryPolicy::default()
    }

    /// Whether the generic runs API (`POST /runs/{id}/signals`) may deliver the signal `name` to
    /// runs of this kind. No by default: a kind whose signal carries a decision with checks of
    /// its own (who may approve, how many must) takes it only through the API that checks them.
    fn accepts_api_signal(name: &str) -> bool
    where
        Self: Sized,
    {
        let _ = name;
        false
    }

    /// Whether the generic runs API (`POST /runs/{id}/cancel`) may cancel runs of this kind. Yes
    /// by default; a kind whose own API decides when it may stop (a deployment is not stopped
    /// half-way) answers no.
    fn accepts_api_cancel() -> bool
    where
        Self: Sized,
    {
        true
    }

    /// Longest one attempt may take before it counts as a transient failure.
    fn timeout(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn run(
        &self,
        ctx: &mut RunCtx,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, JobError>> + Send;

    /// Undoes what the run did, when it is cancelled after it started. Steps work here too.
    fn compensate(
        &self,
        _ctx: &mut RunCtx,
        _input: Self::Input,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        async { Ok(()) }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A job with its types erased, as the registry stores it.
pub(crate) trait ErasedJob: Send + Sync {
    fn retry_policy(&self) -> RetryPolicy;
    fn accepts_api_signal(&self, name: &str) -> bool;
    fn accepts_api_cancel(&self) -> bool;
    fn timeout(&self) -> Duration;
    fn run<'a>(
        &'a self,
        ctx: &'a mut RunCtx,
        input: Value,
    ) -> BoxFuture<'a, Result<Value, JobError>>;
    fn compensate<'a>(
        &'a self,
        ctx: &'a mut RunCtx,
        input: Value,
    ) -> BoxFuture<'a, Result<(), JobError>>;
}

fn bad_input(e: &serde_json::Error) -> JobError {
    JobError::permanent(format!("the run's input does not fit its kind: {e}"))
}

impl<J: Job> ErasedJob for J {
    fn retry_policy(&self) -> RetryPolicy {
        J::retry_policy()
    }

    fn accepts_api_signal(&self, name: &str) -> bool {
        J::accepts_api_signal(name)
    }

    fn accepts_api_cancel(&self) -> bool {
        J::accepts_api_cancel()
    }

    fn timeout(&self) -> Duration {
        Job::timeout(self)
    }

    fn run<'a>(
        &'a self,
        ctx: &'a mut RunCtx,
        input: Value,
    ) -> BoxFuture<'a, Result<Value, JobError>> {
        Box::pin(async move {
            let input: J::Input = serde_json::from_value(input).map_err(|e| bad_input(&e))?;
            let output = Job::run(self, ctx, input).await?;
            serde_json::to_value(output)
                .map_err(|e| JobError::permanent(format!("the run's output cannot be stored: {e}")))
        })
    }

    fn compensate<'a>(
        &'a self,
        ctx: &'a mut RunCtx,
        input: Value,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let input: J::Input = serde_json::from_value(input).map_err(|e| bad_input(&e))?;
            Job::compensate(self, ctx, input).await
        })
    }
}

/// The job kinds a worker can run, by kind name.
#[derive(Clone, Default)]
pub struct Registry {
    jobs: HashMap<&'static str, Arc<dyn ErasedJob>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds())
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn register<J: Job>(mut self, job: J) -> Self {
        self.jobs.insert(J::KIND, Arc::new(job));
        self
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.jobs.keys().map(|k| (*k).to_owned()).collect();
        kinds.sort();
        kinds
    }

    pub(crate) fn get(&self, kind: &str) -> Option<Arc<dyn ErasedJob>> {
        self.jobs.get(kind).cloned()
    }

    /// Whether the generic runs API may deliver the signal `name` to runs of `kind` (never for
    /// kinds unknown here).
    pub fn accepts_api_signal(&self, kind: &str, name: &str) -> bool {
        self.jobs
            .get(kind)
            .is_some_and(|j| j.accepts_api_signal(name))
    }

    /// Whether the generic runs API may cancel runs of `kind` (yes for kinds unknown here: a
    /// run nobody can execute should be cancellable).
    pub fn accepts_api_cancel(&self, kind: &str) -> bool {
        self.jobs.get(kind).is_none_or(|j| j.accepts_api_cancel())
    }

    /// The retry policy of a kind, for enqueueing (default when unknown here).
    pub fn policy(&self, kind: &str) -> RetryPolicy {
        self.jobs
            .get(kind)
            .map(|j| j.retry_policy())
            .unwrap_or_default()
    }
}
