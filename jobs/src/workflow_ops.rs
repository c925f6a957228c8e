//! Workflow actions on a provider, with the catalog kept in step: used by the API for single
//! actions and approvals, and by `workflow.bulk_action` (WF-006, BULK-004/005), which acts on
//! many workflows as one run with a checkpointed step per workflow.

use std::collections::BTreeMap;

use adapters::{Provider, ProviderError};
use domain::catalog;
use domain::policy::Action;
use engine::{Job, JobError, NewRun, RetryPolicy, RunCtx};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::providers::Deps;

/// Carries out `action` on the provider and brings the catalog up to date. The workflow as the
/// provider returned it, or None when it was deleted.
pub async fn carry_out(
    db: &PgPool,
    provider: &dyn Provider,
    tenant_id: Uuid,
    environment_id: Uuid,
    workflow_id: &str,
    action: Action,
) -> Result<Option<Value>, ProviderError> {
    let updated = match action {
        Action::Activate => Some(provider.set_active(workflow_id, true).await?),
        Action::Deactivate => Some(provider.set_active(workflow_id, false).await?),
        Action::Archive => Some(provider.set_archived(workflow_id, true).await?),
        Action::Unarchive => Some(provider.set_archived(workflow_id, false).await?),
        Action::Delete | Action::HardDelete => {
            provider.delete_workflow(workflow_id).await?;
            None
        }
        Action::Upload | Action::DirectEdit => {
            return Err(ProviderError::Permanent(format!(
                "`{action}` is not an action on an existing workflow"
            )));
        }
    };
    let stored = async {
        let mut tx = db.begin().await?;
        match &updated {
            Some(wf) => {
                catalog::upsert_workflows(
                    &mut tx,
                    tenant_id,
                    environment_id,
                    Uuid::nil(),
                    std::slice::from_ref(wf),
                )
                .await?;
            }
            None => {
                catalog::mark_deleted(
                    &mut *tx,
                    environment_id,
                    workflow_id,
                    action == Action::HardDelete,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok::<_, domain::Error>(())
    };
    if let Err(e) = stored.await {
        // The provider changed; the next sync records it.
        tracing::warn!(error = %e, "recording a workflow action in the catalog failed");
    }
    Ok(updated)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkActionInput {
    pub tenant_id: Uuid,
    pub environment_id: Uuid,
    pub action: Action,
    pub workflow_ids: Vec<String>,
}

/// One workflow's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemOutcome {
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulkActionOutput {
    pub succeeded: usize,
    pub failed: usize,
    pub workflows: BTreeMap<String, ItemOutcome>,
}

#[derive(Debug, Clone)]
pub struct BulkAction {
    pub deps: Deps,
}

/// One mutating bulk run per environment at a time.
pub fn new_run(input: &BulkActionInput) -> NewRun {
    NewRun::of::<BulkAction>(input.tenant_id.to_string(), input)
        .concurrency(format!("environment:{}:bulk", input.environment_id), 1)
        .labels(serde_json::json!({"environment_id": input.environment_id, "action": input.action}))
}

impl Job for BulkAction {
    const KIND: &'static str = "workflow.bulk_action";
    type Input = BulkActionInput;
    type Output = BulkActionOutput;

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            ..RetryPolicy::default()
        }
    }

    async fn run(
        &self,
        ctx: &mut RunCtx,
        input: BulkActionInput,
    ) -> Result<BulkActionOutput, JobError> {
        let db = ctx.db().clone();
        let provider = self
            .deps
            .provider(&db, input.tenant_id, input.environment_id)
            .await?;
        let total = i64::try_from(input.workflow_ids.len()).unwrap_or(i64::MAX);
        let mut out = BulkActionOutput {
            succeeded: 0,
            failed: 0,
            workflows: BTreeMap::new(),
        };
        for (i, id) in input.workflow_ids.iter().enumerate() {
            // A provider's refusal of one workflow is that workflow's outcome, not the run's
            // failure; a transient failure retries the run, which resumes here.
            let outcome = ctx
                .step(&format!("workflow:{id}"), || async {
                    match carry_out(
                        &db,
                        &*provider,
                        input.tenant_id,
                        input.environment_id,
                        id,
                        input.action,
                    )
                    .await
                    {
                        Ok(_) => Ok(ItemOutcome {
                            ok: true,
                            error: None,
                        }),
                        Err(e) if e.is_transient() => Err(crate::providers::provider_error(e)),
                        Err(e) => Ok(ItemOutcome {
                            ok: false,
                            error: Some(e.to_string()),
                        }),
                    }
                })
                .await?;
            if outcome.ok {
                out.succeeded += 1;
            } else {
                out.failed += 1;
            }
            out.workflows.insert(id.clone(), outcome);
            ctx.progress(i64::try_from(i).unwrap_or(0) + 1, total)
                .await?;
        }
        ctx.log(
            "info",
            format!(
                "{} on {} workflows: {} succeeded, {} failed",
                input.action, total, out.succeeded, out.failed
            ),
        )
        .await?;
        Ok(out)
    }
}
