//! `environment.health_check` (HEALTH-002, -005, -006): one connection test per run, its
//! reachability, latency and version recorded in the environment's health history. Scheduled
//! per environment (every five minutes) when the environment is created.

use std::time::Instant;

use adapters::ProviderError;
use domain::environments::{self, HealthStatus};
use engine::{Job, JobError, NewRun, RetryPolicy, RunCtx};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::providers::{Deps, domain_error};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthInput {
    pub tenant_id: Uuid,
    pub environment_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthOutput {
    pub status: HealthStatus,
    pub latency_ms: Option<i32>,
    pub version: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub deps: Deps,
}

/// How often scheduled checks run.
pub const SCHEDULE_CRON: &str = "*/5 * * * *";

/// The schedule's name within the tenant's namespace.
pub fn schedule_name(environment_id: Uuid) -> String {
    format!("environment:{environment_id}:health")
}

pub fn new_run(input: &HealthInput) -> NewRun {
    NewRun::of::<HealthCheck>(input.tenant_id.to_string(), input)
        .concurrency(format!("environment:{}:health", input.environment_id), 1)
}

impl Job for HealthCheck {
    const KIND: &'static str = "environment.health_check";
    type Input = HealthInput;
    type Output = HealthOutput;

    fn retry_policy() -> RetryPolicy {
        // A failed check is a result, not an error: record it and move on.
        RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        }
    }

    async fn run(&self, ctx: &mut RunCtx, input: HealthInput) -> Result<HealthOutput, JobError> {
        let db = ctx.db().clone();
        let deps = self.deps.clone();
        ctx.step("check", || async move {
            let provider = deps
                .provider(&db, input.tenant_id, input.environment_id)
                .await?;
            let started = Instant::now();
            let result = provider.test_connection().await;
            let latency = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
            let out = match result {
                Ok(info) => HealthOutput {
                    status: HealthStatus::Healthy,
                    latency_ms: Some(latency),
                    version: info.version,
                    error: None,
                },
                Err(e) => HealthOutput {
                    status: match e {
                        ProviderError::Auth(_) => HealthStatus::AuthFailed,
                        ProviderError::Transient(_) | ProviderError::RateLimited { .. } => {
                            HealthStatus::Unreachable
                        }
                        _ => HealthStatus::Error,
                    },
                    latency_ms: None,
                    version: None,
                    error: Some(e.to_string()),
                },
            };
            let mut tx = db.begin().await?;
            environments::record_health(
                &mut tx,
                input.tenant_id,
                input.environment_id,
                out.status,
                out.latency_ms,
                out.version.as_deref(),
                out.error.as_deref(),
            )
            .await
            .map_err(domain_error)?;
            tx.commit().await?;
            Ok(out)
        })
        .await
    }
}
