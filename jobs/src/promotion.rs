//! `promotion.execute` (PROMO-001..009, CRED-007, credential remapping): a promotion as a run.
//!
//! preflight (diff, risk, gates — against live data) → approvals (an engine signal; the run
//! holds no worker while it waits) → the scheduled time and the stage's window (timers) →
//! pre-promotion snapshot → each workflow written to the target, credentials and sub-workflow
//! references remapped (a checkpointed step each; a Make connection with no counterpart is never
//! written with the source team's id: the module keeps the target copy's own or is left without
//! one, and the item's `warnings` say which) → on a failure, every workflow already
//! written is put back as it was (PROMO-007) → the catalog, deployments and canonical links
//! recorded → post-promotion snapshot.
//!
//! Never applied twice: an update writes the same content again; a create that may have
//! happened before a crash (a retried attempt) first looks for its own copy in the target.

use std::collections::{BTreeMap, HashMap, HashSet};

use adapters::{Provider, ProviderError};
use domain::diff::{self, RiskLevel};
use domain::make::KnownConnection;
use domain::notifications::{Alert, EventType};
use domain::pipelines::{self, Stage};
use domain::promotions::{self, DiffStatus, PromotionStatus};
use domain::remap::{
    self, CredentialTarget, Remapped, TargetTeam, UnmappedCredential, UnmappedSubworkflow,
};
use domain::snapshots::SnapshotKind;
use domain::{catalog, git_config, workflow};
use engine::{Job, JobError, NewRun, RetryPolicy, RunCtx};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::providers::{Deps, domain_error, provider_error};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionInput {
    pub tenant_id: Uuid,
    pub promotion_id: Uuid,
}

/// The run of a promotion: one at a time per target environment (with other mutations of it).
pub fn new_run(input: &PromotionInput, target_environment_id: Uuid) -> NewRun {
    NewRun::of::<Promote>(input.tenant_id.to_string(), input)
        .concurrency(format!("environment:{target_environment_id}:mutate"), 1)
        .idempotency_key(format!("promotion:{}", input.promotion_id))
        .labels(
            json!({"promotion_id": input.promotion_id, "environment_id": target_environment_id}),
        )
}

/// One workflow of a promotion, as the preflight saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PlanItem {
    /// The workflow's id in the source.
    pub source_id: String,
    pub name: String,
    pub status: DiffStatus,
    /// Its counterpart in the target, if any.
    pub target_id: Option<String>,
    /// Content hash of the source as it will be written (credentials remapped).
    pub source_hash: String,
    pub target_hash: Option<String>,
    pub risk: RiskLevel,
    pub reasons: Vec<String>,
    pub summary: String,
    pub unmapped_credentials: Vec<UnmappedCredential>,
    pub unmapped_subworkflows: Vec<UnmappedSubworkflow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct GateResult {
    /// The gate (`requireCleanDrift`, …) or `conflicts` / `credentials`.
    pub gate: String,
    /// `pass`, `warn` or `fail`.
    pub status: String,
    pub message: String,
    /// The workflows (source ids) concerned.
    pub workflows: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Preflight {
    pub items: Vec<PlanItem>,
    /// Workflows only in the target (id, name): left alone.
    pub target_only: Vec<(String, String)>,
    pub gates: Vec<GateResult>,
    /// The highest risk of the items.
    pub risk: RiskLevel,
    /// A gate failed: the promotion cannot proceed.
    pub blocked: bool,
}

/// What the planner knows about the two environments.
pub struct Context {
    /// Source workflows (id → definition) chosen for the promotion.
    sources: Vec<Value>,
    /// Every live source workflow: id → name (for sub-workflow references).
    source_names: HashMap<String, String>,
    /// Every live target workflow: id → definition.
    targets: HashMap<String, Value>,
    target_hashes: HashMap<String, String>,
    /// Target credentials (type, name) → id.
    target_credentials: HashMap<(String, String), String>,
    /// Source credentials by id (type, name): what a Make module's designer cache does not say
    /// about its connection.
    source_connections: HashMap<String, KnownConnection>,
    /// User mappings (type, source id) → target.
    mappings: HashMap<(String, String), CredentialTarget>,
    deployed: HashMap<String, promotions::Deployed>,
    /// Source workflow id → canonical id; canonical id → (target id, drifted).
    source_canonical: HashMap<String, String>,
    target_canonical: HashMap<String, (String, bool)>,
    /// What is known of the target's health (`targetEnvironmentHealthy`).
    target_healthy: TargetHealth,
    /// Why drift policy blocks promotions into the target (POL-004/005, DRIFT-006).
    drift_blocking: Vec<String>,
    /// Open drift incidents in the target.
    open_incidents: i64,
}

/// What the `targetEnvironmentHealthy` gate judges by: a connection test made now (a
/// promotion's run), or in a preview, which makes no call to the target, the environment's last
/// recorded health check while it is recent ([`RECORDED_HEALTH_MAX_AGE`]); an older or missing
/// one is not a measurement, and the gate says so without failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHealth {
    /// No measurement: the time of the last recorded check, if any.
    Unknown {
        last_checked_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// A connection test made for this preflight.
    Tested(Result<(), String>),
    /// The environment's last recorded health check, recent enough to judge by.
    Recorded {
        checked_at: chrono::DateTime<chrono::Utc>,
        /// `healthy`, `unreachable`, `auth_failed` or `error`.
        status: String,
        error: Option<String>,
    },
}

/// How old a recorded health check a preview still judges the target by: three of the
/// scheduled checks (every five minutes).
pub const RECORDED_HEALTH_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

impl TargetHealth {
    /// From the environment's last recorded health check (`checked_at`, `status`, `error`), as
    /// of `now`.
    pub fn from_recorded(
        last: Option<(chrono::DateTime<chrono::Utc>, String, Option<String>)>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        match last {
            Some((checked_at, status, error)) if now - checked_at <= RECORDED_HEALTH_MAX_AGE => {
                Self::Recorded {
                    checked_at,
                    status,
                    error,
                }
            }
            last => Self::Unknown {
                last_checked_at: last.map(|l| l.0),
            },
        }
    }

    /// The gate's verdict: (failed, whether a failure blocks, message when it passes, message
    /// when it does not).
    fn verdict(&self) -> (bool, bool, String, String) {
        const AGAIN: &str = "the promotion tests the connection again before writing";
        match self {
            Self::Tested(Ok(())) => (
                false,
                true,
                "the target answered a connection test".to_owned(),
                String::new(),
            ),
            Self::Tested(Err(e)) => (
                true,
                true,
                String::new(),
                format!("the target is not reachable: a connection test failed: {e}"),
            ),
            Self::Recorded {
                checked_at,
                status,
                error,
            } => {
                let at = checked_at.format("%Y-%m-%d %H:%M:%S UTC");
                (
                    status != "healthy",
                    true,
                    format!("the target's last health check, at {at}, passed; {AGAIN}"),
                    format!(
                        "the target's last health check, at {at}, found it {}{}; {AGAIN}",
                        status.replace('_', " "),
                        error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                    ),
                )
            }
            Self::Unknown { last_checked_at } => (
                true,
                false,
                String::new(),
                format!(
                    "not measured: the target has no health check in the last {} minutes ({}); {AGAIN}; \
                     run a health check of the target to see it now",
                    RECORDED_HEALTH_MAX_AGE.num_minutes(),
                    last_checked_at.map_or_else(
                        || "never checked".to_owned(),
                        |at| format!("last checked at {}", at.format("%Y-%m-%d %H:%M:%S UTC"))
                    )
                ),
            ),
        }
    }
}

fn id_of(wf: &Value) -> String {
    wf.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn name_of(wf: &Value) -> String {
    wf.get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Loads what the planner needs from the catalog; `sources` are the chosen source workflows
/// (live in a run, as last synced in a preview).
pub async fn load_context(
    db: &PgPool,
    tenant_id: Uuid,
    source_env: Uuid,
    target_env: Uuid,
    sources: Vec<Value>,
) -> domain::Result<Context> {
    let source_names: HashMap<String, String> = sqlx::query_as(
        "select provider_id, name from env_workflows where environment_id = $1 and deleted_at is null",
    )
    .bind(source_env)
    .fetch_all(db)
    .await?
    .into_iter()
    .collect();
    let targets: HashMap<String, Value> = catalog::definitions(db, tenant_id, target_env, None)
        .await?
        .into_iter()
        .map(|d| (id_of(&d), d))
        .collect();
    let target_hashes = targets
        .iter()
        .map(|(id, d)| (id.clone(), workflow::content_hash(d)))
        .collect();
    let target_credentials: HashMap<(String, String), String> = sqlx::query_as::<_, (String, String, String)>(
        "select type, name, provider_id from env_credentials where environment_id = $1 and deleted_at is null",
    )
    .bind(target_env)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|(t, n, id)| ((t, n), id))
    .collect();
    let source_connections = domain::catalog::known_connections(db, source_env).await?;
    let mappings = promotions::mappings(db, tenant_id, source_env, target_env)
        .await?
        .into_iter()
        .map(|m| {
            (
                (m.credential_type, m.source_credential_id),
                CredentialTarget {
                    id: m.target_credential_id,
                    name: m.target_name,
                },
            )
        })
        .collect();
    let deployed = promotions::deployed(db, source_env, target_env).await?;
    let source_canonical: HashMap<String, String> = sqlx::query_as(
        "select provider_id, canonical_id from workflow_env_map where environment_id = $1",
    )
    .bind(source_env)
    .fetch_all(db)
    .await?
    .into_iter()
    .collect();
    let target_canonical: HashMap<String, (String, bool)> = sqlx::query_as::<_, (String, String, bool)>(
        "select m.canonical_id, m.provider_id, \
                (w.content_hash <> c.content_hash and w.content_hash <> m.linked_hash) as drifted \
         from workflow_env_map m join canonical_workflows c on c.tenant_id = m.tenant_id and c.id = m.canonical_id \
         join env_workflows w on w.environment_id = m.environment_id and w.provider_id = m.provider_id and w.deleted_at is null \
         where m.environment_id = $1",
    )
    .bind(target_env)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|(c, p, d)| (c, (p, d)))
    .collect();
    let drift_blocking = domain::drift::blocking(db, tenant_id, target_env).await?;
    let open_incidents: i64 = sqlx::query_scalar(
        // A reconciled incident's drift is gone: it waits only to be closed.
        "select count(*) from drift_incidents where environment_id = $1 and status not in ('reconciled', 'closed')",
    )
    .bind(target_env)
    .fetch_one(db)
    .await?;
    Ok(Context {
        drift_blocking,
        open_incidents,
        sources,
        source_names,
        targets,
        target_hashes,
        target_credentials,
        source_connections,
        mappings,
        deployed,
        source_canonical,
        target_canonical,
        target_healthy: TargetHealth::Unknown {
            last_checked_at: None,
        },
    })
}

impl Context {
    /// The target copy of a source workflow: where it was last deployed, else its canonical
    /// workflow's copy, else the one target workflow of the same name.
    fn counterpart(&self, source_id: &str, name: &str) -> Option<String> {
        if let Some(d) = self.deployed.get(source_id)
            && self.targets.contains_key(&d.target_workflow_id)
        {
            return Some(d.target_workflow_id.clone());
        }
        if let Some((target, _)) = self
            .source_canonical
            .get(source_id)
            .and_then(|c| self.target_canonical.get(c))
        {
            return Some(target.clone());
        }
        let mut same = self
            .targets
            .values()
            .filter(|t| name_of(t).eq_ignore_ascii_case(name));
        match (same.next(), same.next()) {
            (Some(one), None) => Some(id_of(one)),
            _ => None,
        }
    }

    /// Credential targets for every reference: the user's mapping, else a target credential
    /// of the same type and name. A Make connection's type and name are the source team's
    /// connection's where the designer did not cache them.
    fn credential_map(&self, wf: &Value) -> HashMap<(String, String), CredentialTarget> {
        let mut out = HashMap::new();
        for r in workflow::credential_refs_in(wf, &self.source_connections) {
            let key_id = (r.cred_type.clone(), r.id.clone().unwrap_or_default());
            let target = self.mappings.get(&key_id).cloned().or_else(|| {
                self.target_credentials
                    .get(&(r.cred_type.clone(), r.name.clone()))
                    .map(|id| CredentialTarget {
                        id: id.clone(),
                        name: r.name.clone(),
                    })
            });
            if let Some(t) = target {
                if let Some(id) = &r.id {
                    out.insert((r.cred_type.clone(), id.clone()), t.clone());
                }
                out.insert((r.cred_type.clone(), r.name.clone()), t);
            }
        }
        out
    }

    fn subworkflow_map(&self, wf: &Value) -> HashMap<String, (String, String)> {
        remap::subworkflow_refs(wf)
            .into_iter()
            .filter_map(|id| {
                let name = self.source_names.get(&id)?;
                let target = self.counterpart(&id, name)?;
                let target_name = self.targets.get(&target).map(name_of)?;
                Some((id, (target, target_name)))
            })
            .collect()
    }

    /// The source workflow as it will be written over `target` (the copy it replaces, if
    /// any), and what could not be mapped.
    pub fn remapped(
        &self,
        wf: &Value,
        target: Option<&Value>,
    ) -> (Value, Remapped, Vec<UnmappedSubworkflow>) {
        let mut out = wf.clone();
        let team = TargetTeam {
            source_connections: Some(&self.source_connections),
            target_copy: target,
        };
        let creds = remap::remap_credentials_for_target(&mut out, &self.credential_map(wf), &team);
        let subs = remap::remap_subworkflows(&mut out, &self.subworkflow_map(wf));
        (out, creds, subs)
    }

    fn item(&self, wf: &Value) -> PlanItem {
        let (source_id, name) = (id_of(wf), name_of(wf));
        let target_id = self.counterpart(&source_id, &name);
        let target = target_id.as_ref().and_then(|t| self.targets.get(t));
        let (written, credentials, unmapped_subworkflows) = self.remapped(wf, target);
        let source_hash = workflow::content_hash(&written);
        let target_hash = target_id
            .as_ref()
            .and_then(|t| self.target_hashes.get(t))
            .cloned();
        let d = diff::diff(target.unwrap_or(&json!({})), &written);
        let assessed = diff::risk(&d);
        let status = match (&target_id, &target_hash) {
            (None, _) => DiffStatus::Added,
            (Some(_), Some(h)) if *h == source_hash => DiffStatus::Unchanged,
            (Some(t), Some(h)) => {
                let changed_since_deployed = self
                    .deployed
                    .get(&source_id)
                    .filter(|d| d.target_workflow_id == *t)
                    .map(|d| d.target_hash != *h);
                let drifted = self
                    .target_canonical
                    .values()
                    .any(|(id, drifted)| id == t && *drifted);
                if changed_since_deployed.unwrap_or(drifted) {
                    DiffStatus::TargetHotfix
                } else {
                    DiffStatus::Modified
                }
            }
            (Some(_), None) => DiffStatus::Modified,
        };
        PlanItem {
            source_id,
            name,
            status,
            target_id,
            source_hash,
            target_hash,
            risk: if status == DiffStatus::Unchanged {
                RiskLevel::Low
            } else {
                assessed.level
            },
            reasons: if status == DiffStatus::Unchanged {
                Vec::new()
            } else {
                assessed.reasons
            },
            summary: if target.is_none() {
                "new in the target".to_owned()
            } else {
                diff::render_summary(&d)
            },
            unmapped_credentials: credentials.unmapped,
            unmapped_subworkflows,
        }
    }

    /// The diff, risk and gates of promoting the sources under `stage` (PROMO-002/003/008/009).
    pub fn preflight(&self, stage: &Stage, force: bool) -> Preflight {
        let items: Vec<PlanItem> = self.sources.iter().map(|wf| self.item(wf)).collect();
        let counterparts: HashSet<&String> =
            items.iter().filter_map(|i| i.target_id.as_ref()).collect();
        let mut target_only: Vec<(String, String)> = self
            .targets
            .iter()
            .filter(|(id, _)| !counterparts.contains(id))
            .map(|(id, d)| (id.clone(), name_of(d)))
            .collect();
        target_only.sort_by(|a, b| {
            a.1.to_lowercase()
                .cmp(&b.1.to_lowercase())
                .then(a.0.cmp(&b.0))
        });
        let risk = items
            .iter()
            .filter(|i| i.status != DiffStatus::Unchanged)
            .map(|i| i.risk)
            .max()
            .unwrap_or(RiskLevel::Low);
        let gates = self.gates(stage, force, &items, risk);
        Preflight {
            blocked: gates.iter().any(|g| g.status == "fail"),
            items,
            target_only,
            gates,
            risk,
        }
    }

    fn gates(
        &self,
        stage: &Stage,
        force: bool,
        items: &[PlanItem],
        risk: RiskLevel,
    ) -> Vec<GateResult> {
        let g = &stage.gates;
        let mut out = Vec::new();
        let result = |gate: &str,
                      fail: bool,
                      strict: bool,
                      ok: &str,
                      bad: String,
                      workflows: Vec<String>| GateResult {
            gate: gate.to_owned(),
            status: if !fail {
                "pass"
            } else if strict {
                "fail"
            } else {
                "warn"
            }
            .to_owned(),
            message: if fail { bad } else { ok.to_owned() },
            workflows,
        };
        let changing: Vec<&PlanItem> = items
            .iter()
            .filter(|i| i.status != DiffStatus::Unchanged)
            .collect();
        // Conflicts: the target changed since the last promotion.
        let hotfixes: Vec<String> = changing
            .iter()
            .filter(|i| i.status == DiffStatus::TargetHotfix)
            .map(|i| i.source_id.clone())
            .collect();
        let overridable = stage.policy.allow_overwriting_hotfixes
            || (force && stage.policy.allow_force_promotion_on_conflicts);
        out.push(result(
            "conflicts",
            !hotfixes.is_empty(),
            !overridable,
            "no workflow was changed in the target since it was last promoted",
            format!(
                "{} workflow(s) were changed in the target since the last promotion (TARGET_HOTFIX){}",
                hotfixes.len(),
                if overridable { "; they will be overwritten" } else { "; allow overwriting hotfixes or force the promotion" }
            ),
            hotfixes,
        ));
        // CRED-007: credentials missing in the target.
        let missing: Vec<&PlanItem> = changing
            .iter()
            .filter(|i| !i.unmapped_credentials.is_empty())
            .copied()
            .collect();
        let names: Vec<String> = missing
            .iter()
            .flat_map(|i| {
                i.unmapped_credentials.iter().map(|c| {
                    format!(
                        "{} ({})",
                        c.name.clone().or(c.id.clone()).unwrap_or_default(),
                        c.credential_type
                    )
                })
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // A Make connection id is never written into another team (see `remap`).
        let scenarios = self.sources.iter().any(|wf| {
            domain::make::is_scenario(wf) && missing.iter().any(|i| i.source_id == id_of(wf))
        });
        out.push(result(
            "credentialsExistInTarget",
            !missing.is_empty(),
            g.credentials_exist_in_target && !stage.policy.allow_placeholder_credentials,
            "every credential exists in the target or is mapped",
            format!(
                "credentials missing in the target: {}{}",
                names.join(", "),
                match (stage.policy.allow_placeholder_credentials, scenarios) {
                    (false, _) => "",
                    (true, false) => " (placeholders allowed: references kept)",
                    (true, true) => {
                        " (placeholders allowed: those modules keep the target copy's own connection or are left without one, to be chosen in Make)"
                    }
                }
            ),
            missing.iter().map(|i| i.source_id.clone()).collect(),
        ));
        if g.run_pre_flight_validation {
            let mut bad = Vec::new();
            let mut problems = Vec::new();
            for wf in &self.sources {
                let id = id_of(wf);
                let mut p = remap::preflight_problems(wf);
                if let Some(item) = items.iter().find(|i| i.source_id == id) {
                    p.extend(item.unmapped_subworkflows.iter().map(|s| {
                        format!(
                            "node `{}` calls workflow {} which is not in the target",
                            s.node, s.workflow_id
                        )
                    }));
                }
                if !p.is_empty() {
                    problems.push(format!("{}: {}", name_of(wf), p.join("; ")));
                    bad.push(id);
                }
            }
            out.push(result(
                "runPreFlightValidation",
                !bad.is_empty(),
                true,
                "every workflow is structurally valid",
                problems.join(" | "),
                bad,
            ));
        }
        // PROMO-008: the drift policy of the target (always evaluated).
        out.push(result(
            "driftPolicy",
            !self.drift_blocking.is_empty(),
            true,
            "no drift incident blocks promotions into the target",
            format!(
                "drift policy blocks the target: {}",
                self.drift_blocking.join("; ")
            ),
            Vec::new(),
        ));
        if g.require_clean_drift {
            let drifted: Vec<String> = changing
                .iter()
                .filter(|i| {
                    i.target_id.as_ref().is_some_and(|t| {
                        self.target_canonical.values().any(|(id, d)| id == t && *d)
                    })
                })
                .map(|i| i.source_id.clone())
                .collect();
            out.push(result(
                "requireCleanDrift",
                !drifted.is_empty() || self.open_incidents > 0,
                true,
                "no open drift incident and no drifted workflow in the target",
                format!(
                    "the target has {} open drift incident(s) and {} drifted workflow(s) being promoted: reconcile them first",
                    self.open_incidents,
                    drifted.len()
                ),
                drifted,
            ));
        }
        if g.nodes_supported_in_target {
            let present: HashSet<String> =
                self.targets.values().flat_map(remap::node_types).collect();
            let mut missing = BTreeMap::<String, Vec<String>>::new();
            for wf in &self.sources {
                for t in remap::node_types(wf) {
                    if !remap::is_builtin_node_type(&t) && !present.contains(&t) {
                        missing.entry(t).or_default().push(id_of(wf));
                    }
                }
            }
            out.push(result(
                "nodesSupportedInTarget",
                !missing.is_empty(),
                true,
                "every node type is available in the target",
                format!(
                    "node types not found on the target instance: {}",
                    missing.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                missing
                    .into_values()
                    .flatten()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            ));
        }
        if g.webhooks_available {
            let mut in_use: HashMap<(String, String), String> = HashMap::new();
            for (id, t) in &self.targets {
                if t.get("active").and_then(Value::as_bool) == Some(true)
                    && !counterparts_of(items).contains(id)
                {
                    for p in remap::webhook_paths(t) {
                        in_use.insert(p, name_of(t));
                    }
                }
            }
            let mut clashes = Vec::new();
            let mut which = Vec::new();
            for wf in &self.sources {
                for p in remap::webhook_paths(wf) {
                    if let Some(owner) = in_use.get(&p) {
                        clashes.push(format!("{} /{} (used by `{owner}`)", p.0, p.1));
                        which.push(id_of(wf));
                    }
                }
            }
            out.push(result(
                "webhooksAvailable",
                !clashes.is_empty(),
                true,
                "every webhook path is free in the target",
                format!(
                    "webhook paths already in use in the target: {}",
                    clashes.join(", ")
                ),
                which,
            ));
        }
        if g.target_environment_healthy {
            let (fail, strict, ok, bad) = self.target_healthy.verdict();
            out.push(result(
                "targetEnvironmentHealthy",
                fail,
                strict,
                &ok,
                bad,
                Vec::new(),
            ));
        }
        if let Some(max) = g.max_allowed_risk_level {
            let over: Vec<String> = changing
                .iter()
                .filter(|i| i.risk > max)
                .map(|i| i.source_id.clone())
                .collect();
            out.push(result(
                "maxAllowedRiskLevel",
                !over.is_empty(),
                true,
                &format!("risk {risk} is within {max}"),
                format!("risk {risk} exceeds the allowed {max}"),
                over,
            ));
        }
        out
    }

    /// The result of a connection test of the target made for this preflight.
    pub fn set_target_health(&mut self, health: Result<(), String>) {
        self.target_healthy = TargetHealth::Tested(health);
    }

    /// Replaces catalog definitions of the chosen counterparts with live ones.
    pub fn set_live_target(&mut self, id: String, definition: Option<Value>) {
        match definition {
            Some(d) => {
                self.target_hashes
                    .insert(id.clone(), workflow::content_hash(&d));
                self.targets.insert(id, d);
            }
            None => {
                self.target_hashes.remove(&id);
                self.targets.remove(&id);
            }
        }
    }

    pub fn counterpart_of(&self, wf: &Value) -> Option<String> {
        self.counterpart(&id_of(wf), &name_of(wf))
    }
}

fn counterparts_of(items: &[PlanItem]) -> HashSet<String> {
    items.iter().filter_map(|i| i.target_id.clone()).collect()
}

// ---- the run ---------------------------------------------------------------------------------

/// What happened to one workflow in the target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AppliedItem {
    pub source_id: String,
    pub name: String,
    /// `created`, `updated`, `unchanged` or `failed`.
    pub action: String,
    pub target_id: Option<String>,
    /// The target's content hash after the write.
    pub target_hash: Option<String>,
    pub error: Option<String>,
    /// What was written but needs a hand in the target: Make modules left without a
    /// connection (their source connection has no counterpart there).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The target workflow before the write (to roll back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RolledBack {
    pub target_id: String,
    /// `restored` (the previous version written back) or `deleted` (it was created).
    pub action: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromotionOutput {
    pub status: PromotionStatus,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub rolled_back: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Decision {
    approved: bool,
}

#[derive(Debug, Clone)]
pub struct Promote {
    pub deps: Deps,
}

impl Job for Promote {
    const KIND: &'static str = "promotion.execute";
    type Input = PromotionInput;
    type Output = PromotionOutput;

    /// A promotion is cancelled through its own API, and only before it writes anything
    /// (`POST /promotions/{id}/cancel`): never half-way through a deployment.
    fn accepts_api_cancel() -> bool {
        false
    }

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: std::time::Duration::from_secs(1),
            max_backoff: std::time::Duration::from_secs(60),
        }
    }

    async fn run(
        &self,
        ctx: &mut RunCtx,
        input: PromotionInput,
    ) -> Result<PromotionOutput, JobError> {
        // Approved, scheduled or retried after a downgrade: the plan decides when it runs.
        let target: Option<Uuid> =
            sqlx::query_scalar("select target_environment_id from promotions where id = $1")
                .bind(input.promotion_id)
                .fetch_optional(ctx.db())
                .await?;
        let allowed = match target {
            Some(env) => {
                crate::snapshot::require_plan(
                    ctx,
                    input.tenant_id,
                    env,
                    &[domain::entitlements::Feature::Promotions],
                    "environment promotion",
                )
                .await
            }
            None => Ok(()),
        };
        let result = match allowed {
            Ok(()) => self.execute(ctx, &input).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result
            && !matches!(
                e,
                JobError::Transient { .. }
                    | JobError::Suspended(_)
                    | JobError::Fenced
                    | JobError::Released
            )
        {
            let status = if *e == JobError::Cancelled {
                PromotionStatus::Cancelled
            } else {
                PromotionStatus::Failed
            };
            let mut tx = ctx.db().begin().await?;
            promotions::set_status(&mut *tx, input.promotion_id, status, Some(&e.to_string()))
                .await
                .map_err(domain_error)?;
            deployment_alert(
                &mut tx,
                &input,
                EventType::DeploymentFailed,
                json!({"status": status, "error": e.to_string()}),
            )
            .await?;
            tx.commit().await?;
        }
        result
    }
}

/// Raises a `deployment.*` alert for the promotion (in the caller's transaction).
async fn deployment_alert(
    tx: &mut sqlx::PgConnection,
    input: &PromotionInput,
    event_type: EventType,
    mut data: Value,
) -> Result<(), JobError> {
    let p = promotions::get(&mut *tx, input.tenant_id, input.promotion_id)
        .await
        .map_err(domain_error)?;
    let source = domain::environments::get(&mut *tx, input.tenant_id, p.source_environment_id)
        .await
        .map_err(domain_error)?;
    let target = domain::environments::get(&mut *tx, input.tenant_id, p.target_environment_id)
        .await
        .map_err(domain_error)?;
    let verb = match event_type {
        EventType::DeploymentStarted => "started",
        EventType::DeploymentCompleted => "completed",
        _ => "failed",
    };
    if let Some(o) = data.as_object_mut() {
        o.insert("promotion_id".into(), json!(p.id));
        o.insert("source".into(), json!(source.name));
        o.insert("target".into(), json!(target.name));
        o.insert("workflows".into(), json!(p.workflow_ids.len()));
        o.insert("requested_by".into(), json!(p.requested_by_label));
    }
    crate::notify::raise(
        &mut *tx,
        Alert {
            tenant_id: input.tenant_id,
            event_type,
            environment_id: Some(target.id),
            title: format!("Deployment {} → {} {verb}", source.name, target.name),
            data,
        },
    )
    .await
    .map_err(domain_error)?;
    Ok(())
}

fn is_final(status: &str) -> bool {
    PromotionStatus::parse(status).is_some_and(PromotionStatus::is_final)
}

impl Promote {
    async fn execute(
        &self,
        ctx: &mut RunCtx,
        input: &PromotionInput,
    ) -> Result<PromotionOutput, JobError> {
        let db = ctx.db().clone();
        let (tenant, id) = (input.tenant_id, input.promotion_id);
        let p = promotions::get(&db, tenant, id)
            .await
            .map_err(domain_error)?;
        if is_final(&p.status) {
            return Err(JobError::permanent(format!(
                "the promotion is already {}",
                p.status
            )));
        }
        let pipeline = pipelines::get(&db, tenant, p.pipeline_id)
            .await
            .map_err(domain_error)?;
        let stage = pipeline
            .stages
            .get(usize::try_from(p.stage_index).unwrap_or(usize::MAX))
            .cloned()
            .ok_or_else(|| JobError::permanent("the pipeline no longer has this stage"))?;
        let source = self
            .deps
            .provider(&db, tenant, p.source_environment_id)
            .await?;
        let target = self
            .deps
            .provider(&db, tenant, p.target_environment_id)
            .await?;

        // 1. Preflight against live data.
        let pre: Preflight = ctx
            .step("preflight", || async {
                let mut sources = Vec::new();
                for wid in &p.workflow_ids {
                    sources.push(source.get_workflow(wid).await.map_err(|e| match e {
                        ProviderError::NotFound(_) => {
                            JobError::permanent(format!("workflow {wid} is not in the source"))
                        }
                        e => provider_error(e),
                    })?);
                }
                let mut context = load_context(
                    &db,
                    tenant,
                    p.source_environment_id,
                    p.target_environment_id,
                    sources,
                )
                .await
                .map_err(domain_error)?;
                let counterparts: Vec<String> = context
                    .sources
                    .iter()
                    .filter_map(|wf| context.counterpart_of(wf))
                    .collect();
                for t in counterparts {
                    match target.get_workflow(&t).await {
                        Ok(wf) => context.set_live_target(t, Some(wf)),
                        Err(ProviderError::NotFound(_)) => context.set_live_target(t, None),
                        Err(e) => return Err(provider_error(e)),
                    }
                }
                if stage.gates.target_environment_healthy {
                    context.set_target_health(
                        target
                            .test_connection()
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string()),
                    );
                }
                let pre = context.preflight(&stage, p.force);
                let mut tx = db.begin().await?;
                promotions::record_preflight(
                    &mut *tx,
                    id,
                    &serde_json::to_value(&pre.items).unwrap_or_default(),
                    &json!({"gates": pre.gates, "target_only": pre.target_only}),
                    pre.risk.as_str(),
                )
                .await
                .map_err(domain_error)?;
                if !pre.blocked {
                    let next = if stage.approvals.required > 0 {
                        PromotionStatus::PendingApproval
                    } else {
                        PromotionStatus::Approved
                    };
                    promotions::set_status(&mut *tx, id, next, None)
                        .await
                        .map_err(domain_error)?;
                }
                tx.commit().await?;
                Ok(pre)
            })
            .await?;
        if pre.blocked {
            let failed: Vec<String> = pre
                .gates
                .iter()
                .filter(|g| g.status == "fail")
                .map(|g| format!("{}: {}", g.gate, g.message))
                .collect();
            return Err(JobError::permanent(format!(
                "blocked by gates — {}",
                failed.join("; ")
            )));
        }
        ctx.log(
            "info",
            format!(
                "preflight passed: {} workflow(s), risk {}",
                pre.items.len(),
                pre.risk
            ),
        )
        .await?;

        // 2. Approvals (PROMO-004).
        if stage.approvals.required > 0 {
            ctx.log(
                "info",
                format!("waiting for {} approval(s)", stage.approvals.required),
            )
            .await?;
            let decision: Decision = ctx.wait_signal("decision").await?;
            if !decision.approved {
                ctx.log("info", "rejected").await?;
                return Ok(PromotionOutput {
                    status: PromotionStatus::Rejected,
                    created: 0,
                    updated: 0,
                    unchanged: 0,
                    rolled_back: 0,
                });
            }
        }
        // 3. The scheduled time (DEP-004) and the stage's window (PIPE-005).
        if let Some(at) = p.scheduled_at {
            ctx.sleep_until("scheduled", at).await?;
        }
        if let Some(window) = &stage.window {
            let open: chrono::DateTime<chrono::Utc> = ctx
                .step("window", || async {
                    window
                        .next_open(chrono::Utc::now())
                        .ok_or_else(|| JobError::permanent("the stage's window never opens"))
                })
                .await?;
            // PIPE-005: say what the run waits for and until when (not again once it woke).
            if chrono::Utc::now() < open {
                ctx.log(
                    "info",
                    format!(
                        "waiting for the stage's deployment window: it opens at {} ({} {}-{} {})",
                        open.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        window.days.join(","),
                        window.start,
                        window.end,
                        window.timezone
                    ),
                )
                .await?;
            }
            ctx.sleep_until("window", open).await?;
        }
        // The promotion may have been cancelled while it waited.
        let now = promotions::get(&db, tenant, id)
            .await
            .map_err(domain_error)?;
        if is_final(&now.status) {
            return Err(JobError::permanent(format!(
                "the promotion is {}",
                now.status
            )));
        }
        ctx.step("running", || async {
            let mut tx = db.begin().await?;
            promotions::set_status(&mut *tx, id, PromotionStatus::Running, None)
                .await
                .map_err(domain_error)?;
            deployment_alert(&mut tx, input, EventType::DeploymentStarted, json!({})).await?;
            tx.commit().await?;
            Ok(())
        })
        .await?;

        // 4. Pre-promotion snapshot (PROMO-006, SNAP-002) when the target has Git.
        let has_git = git_config::get(&db, tenant, p.target_environment_id)
            .await
            .is_ok();
        if has_git {
            let snap = crate::snapshot::take(
                &self.deps,
                ctx,
                &crate::snapshot::SnapshotInput {
                    tenant_id: tenant,
                    environment_id: p.target_environment_id,
                    kind: SnapshotKind::PrePromotion,
                    reason: Some(format!("before promotion {id}")),
                    triggered_by: p.requested_by_label.clone(),
                    created_by: p.requested_by,
                    promotion_id: Some(id),
                },
                "pre-snapshot",
            )
            .await?;
            promotions::set_snapshot(&db, id, Some(snap.id), None)
                .await
                .map_err(domain_error)?;
        } else {
            ctx.log("warn", "the target has no Git repository: no pre-promotion snapshot; the previous versions are kept in the promotion for rollback").await?;
        }

        // 5. Apply, a checkpointed step per workflow. The target's workflows before any write
        // are checkpointed: a later attempt knows which workflows it may have created itself.
        let before_ids: HashSet<String> = ctx
            .step("target-before", || async {
                Ok(
                    catalog::definitions(&db, tenant, p.target_environment_id, None)
                        .await
                        .map_err(domain_error)?
                        .iter()
                        .map(id_of)
                        .collect::<Vec<String>>(),
                )
            })
            .await?
            .into_iter()
            .collect();
        let mut applied: Vec<AppliedItem> = Vec::new();
        let mut existing: Option<HashMap<String, Vec<String>>> = None;
        let total = i64::try_from(pre.items.len()).unwrap_or(i64::MAX);
        let mut failure: Option<String> = None;
        let context = load_context(
            &db,
            tenant,
            p.source_environment_id,
            p.target_environment_id,
            Vec::new(),
        )
        .await
        .map_err(domain_error)?;
        for (i, item) in pre.items.iter().enumerate() {
            if item.status == DiffStatus::Unchanged {
                applied.push(AppliedItem {
                    source_id: item.source_id.clone(),
                    name: item.name.clone(),
                    action: "unchanged".into(),
                    target_id: item.target_id.clone(),
                    target_hash: item.target_hash.clone(),
                    error: None,
                    warnings: Vec::new(),
                    before: None,
                });
                continue;
            }
            // A retried attempt may have created workflows it did not record: index the target once.
            if ctx.attempt > 1 && item.target_id.is_none() && existing.is_none() {
                existing = Some(live_index(target.as_ref()).await?);
            }
            let index = existing.as_ref();
            let result = ctx
                .step(&format!("apply:{}", item.source_id), || async {
                    apply_one(
                        &db,
                        tenant,
                        p.target_environment_id,
                        source.as_ref(),
                        target.as_ref(),
                        &context,
                        item,
                        index,
                        &before_ids,
                    )
                    .await
                })
                .await?;
            if !result.warnings.is_empty() {
                ctx.log(
                    "warn",
                    format!("`{}`: {}", result.name, result.warnings.join("; ")),
                )
                .await?;
            }
            let failed = result.action == "failed";
            if failed {
                failure = Some(format!(
                    "`{}`: {}",
                    result.name,
                    result.error.clone().unwrap_or_default()
                ));
            }
            applied.push(result);
            ctx.progress(i64::try_from(i).unwrap_or(0) + 1, total)
                .await?;
            if failed {
                break;
            }
        }

        // 6. Rollback on failure (PROMO-005/007).
        if let Some(why) = failure {
            ctx.log("error", format!("promotion failed at {why}; rolling back"))
                .await?;
            let rolled: Vec<RolledBack> = ctx
                .step("rollback", || async {
                    rollback(
                        &db,
                        tenant,
                        p.target_environment_id,
                        target.as_ref(),
                        &applied,
                    )
                    .await
                })
                .await?;
            let stripped: Vec<AppliedItem> = applied
                .iter()
                .cloned()
                .map(|mut a| {
                    a.before = None;
                    a
                })
                .collect();
            promotions::record_outcome(
                &db,
                id,
                Some(&serde_json::to_value(&stripped).unwrap_or_default()),
                Some(&serde_json::to_value(&rolled).unwrap_or_default()),
            )
            .await
            .map_err(domain_error)?;
            promotions::forget_deployed(&db, id)
                .await
                .map_err(domain_error)?;
            return Err(JobError::permanent(format!(
                "promotion failed at {why}; {} workflow(s) rolled back",
                rolled.len()
            )));
        }

        // 7. Record: deployments, canonical links, results.
        let stripped: Vec<AppliedItem> = applied
            .iter()
            .cloned()
            .map(|mut a| {
                a.before = None;
                a
            })
            .collect();
        ctx.step("record", || async {
            let mut tx = db.begin().await?;
            for (a, item) in stripped.iter().zip(&pre.items) {
                let (Some(target_id), Some(target_hash)) = (&a.target_id, &a.target_hash) else { continue };
                promotions::record_deployed(
                    &mut *tx, tenant, p.source_environment_id, &a.source_id, p.target_environment_id,
                    target_id, target_hash, &item.source_hash, id,
                )
                .await
                .map_err(domain_error)?;
                let canonical: Option<(String, String)> = sqlx::query_as(
                    "select m.canonical_id, c.content_hash from workflow_env_map m \
                     join canonical_workflows c on c.tenant_id = m.tenant_id and c.id = m.canonical_id \
                     where m.environment_id = $1 and m.provider_id = $2",
                )
                .bind(p.source_environment_id)
                .bind(&a.source_id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((cid, chash)) = canonical {
                    domain::canonical::link(&mut tx, tenant, &cid, p.target_environment_id, target_id, &chash, p.requested_by)
                        .await
                        .map_err(domain_error)?;
                }
            }
            promotions::record_outcome(&mut *tx, id, Some(&serde_json::to_value(&stripped).unwrap_or_default()), None)
                .await
                .map_err(domain_error)?;
            tx.commit().await?;
            Ok(())
        })
        .await?;

        // 8. Post-promotion snapshot and backup (SNAP-006, WF-019).
        if has_git {
            let snap = crate::snapshot::take(
                &self.deps,
                ctx,
                &crate::snapshot::SnapshotInput {
                    tenant_id: tenant,
                    environment_id: p.target_environment_id,
                    kind: SnapshotKind::PostPromotion,
                    reason: Some(format!("after promotion {id}")),
                    triggered_by: p.requested_by_label.clone(),
                    created_by: p.requested_by,
                    promotion_id: Some(id),
                },
                "post-snapshot",
            )
            .await?;
            promotions::set_snapshot(&db, id, None, Some(snap.id))
                .await
                .map_err(domain_error)?;
        }
        let count = |a: &str| applied.iter().filter(|x| x.action == a).count();
        let mut tx = db.begin().await?;
        promotions::set_status(&mut *tx, id, PromotionStatus::Completed, None)
            .await
            .map_err(domain_error)?;
        deployment_alert(
            &mut tx,
            input,
            EventType::DeploymentCompleted,
            json!({"created": count("created"), "updated": count("updated"),
                "unchanged": count("unchanged")}),
        )
        .await?;
        tx.commit().await?;
        let out = PromotionOutput {
            status: PromotionStatus::Completed,
            created: count("created"),
            updated: count("updated"),
            unchanged: count("unchanged"),
            rolled_back: 0,
        };
        ctx.log(
            "info",
            format!(
                "promotion completed: {} created, {} updated, {} unchanged",
                out.created, out.updated, out.unchanged
            ),
        )
        .await?;
        Ok(out)
    }
}

/// Every live workflow of the target by name: their ids.
async fn live_index(target: &dyn Provider) -> Result<HashMap<String, Vec<String>>, JobError> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = target
            .list_workflows(cursor.as_deref())
            .await
            .map_err(provider_error)?;
        for wf in &page.items {
            out.entry(name_of(wf)).or_default().push(id_of(wf));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(out)
}

async fn upsert_target(db: &PgPool, tenant: Uuid, env: Uuid, wf: &Value) -> Result<(), JobError> {
    let mut tx = db.begin().await?;
    catalog::upsert_workflows(&mut tx, tenant, env, Uuid::nil(), std::slice::from_ref(wf))
        .await
        .map_err(domain_error)?;
    tx.commit().await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn apply_one(
    db: &PgPool,
    tenant: Uuid,
    target_env: Uuid,
    source: &dyn Provider,
    target: &dyn Provider,
    context: &Context,
    item: &PlanItem,
    existing: Option<&HashMap<String, Vec<String>>>,
    before_ids: &HashSet<String>,
) -> Result<AppliedItem, JobError> {
    let mut out = AppliedItem {
        source_id: item.source_id.clone(),
        name: item.name.clone(),
        action: "failed".into(),
        target_id: item.target_id.clone(),
        target_hash: None,
        error: None,
        warnings: Vec::new(),
        before: None,
    };
    let wf = match source.get_workflow(&item.source_id).await {
        Ok(wf) => wf,
        Err(e) if e.is_transient() => return Err(provider_error(e)),
        Err(e) => {
            out.error = Some(format!("reading it from the source: {e}"));
            return Ok(out);
        }
    };
    // The copy it replaces first: a Make module whose connection has no counterpart keeps the
    // one that copy's module has in the target team.
    let before = match &item.target_id {
        Some(tid) => match target.get_workflow(tid).await {
            Ok(b) => Some(b),
            Err(e) if e.is_transient() => return Err(provider_error(e)),
            Err(e) => {
                out.error = Some(format!("reading the target copy: {e}"));
                return Ok(out);
            }
        },
        None => None,
    };
    let (body, credentials, _) = context.remapped(&wf, before.as_ref());
    let warnings = connection_warnings(&credentials.without_connection);
    let hash = workflow::content_hash(&body);
    let written = match (&item.target_id, before) {
        (Some(tid), Some(before)) => {
            let was_active = before.get("active").and_then(Value::as_bool) == Some(true);
            let unchanged = workflow::content_hash(&before) == hash;
            out.before = Some(before);
            if unchanged {
                out.action = "unchanged".into();
                out.target_hash = Some(hash);
                out.warnings = warnings;
                return Ok(out);
            }
            // A Make scenario keeps the target team's own webhooks and keys.
            let body = match &out.before {
                Some(before) if domain::make::is_scenario(&body) => {
                    domain::make::with_team_references_of(&body, before)
                }
                _ => body.clone(),
            };
            match target.update_workflow(tid, &body).await {
                Ok(mut w) => {
                    // Activation is preserved.
                    if was_active && w.get("active").and_then(Value::as_bool) != Some(true) {
                        match target.set_active(tid, true).await {
                            Ok(a) => w = a,
                            Err(e) if e.is_transient() => return Err(provider_error(e)),
                            Err(e) => {
                                out.error = Some(format!("re-activating it: {e}"));
                                return Ok(out);
                            }
                        }
                    }
                    out.action = "updated".into();
                    w
                }
                // Writing the same content again is harmless: retry.
                Err(e) if e.is_transient() || matches!(e, ProviderError::InvalidResponse(_)) => {
                    return Err(provider_error(e));
                }
                Err(e) => {
                    out.error = Some(e.to_string());
                    return Ok(out);
                }
            }
        }
        _ => {
            // A create from an earlier attempt that died before its checkpoint is adopted: a
            // workflow of that name the target did not have when the promotion started.
            if let Some(tid) = existing
                .and_then(|idx| idx.get(&item.name))
                .and_then(|copies| copies.iter().find(|id| !before_ids.contains(*id)))
            {
                let w = target.get_workflow(tid).await.map_err(provider_error)?;
                out.action = "created".into();
                out.target_id = Some(tid.clone());
                out.target_hash = Some(hash);
                out.warnings = warnings;
                upsert_target(db, tenant, target_env, &w).await?;
                return Ok(out);
            }
            // A new Make scenario in another team cannot use the source team's webhooks and
            // keys: they are left unset, to be chosen in the target.
            let body = if domain::make::is_scenario(&body) {
                domain::make::without_team_references(&body)
            } else {
                body.clone()
            };
            match target.create_workflow(&body).await {
                Ok(w) => {
                    out.action = "created".into();
                    out.target_id = Some(id_of(&w));
                    w
                }
                // The answer was lost or garbled: the create may have happened. The next
                // attempt looks for the copy before creating again.
                Err(e) if e.is_transient() || matches!(e, ProviderError::InvalidResponse(_)) => {
                    return Err(JobError::transient(format!(
                        "creating `{}` in the target: {e}; the outcome is unknown and is checked on the next attempt",
                        item.name
                    )));
                }
                Err(e) => {
                    out.error = Some(e.to_string());
                    return Ok(out);
                }
            }
        }
    };
    out.target_hash = Some(workflow::content_hash(&written));
    out.warnings = warnings;
    upsert_target(db, tenant, target_env, &written).await?;
    Ok(out)
}

/// What an item's result says about Make modules written without a connection.
fn connection_warnings(left: &[UnmappedCredential]) -> Vec<String> {
    left.iter()
        .map(|c| {
            format!(
                "module `{}` was left without a connection: its source connection `{}` ({}) has no counterpart in the target; choose one in Make",
                c.node,
                c.name.as_deref().or(c.id.as_deref()).unwrap_or_default(),
                c.credential_type
            )
        })
        .collect()
}

async fn rollback(
    db: &PgPool,
    tenant: Uuid,
    target_env: Uuid,
    target: &dyn Provider,
    applied: &[AppliedItem],
) -> Result<Vec<RolledBack>, JobError> {
    let mut out = Vec::new();
    for a in applied.iter().rev() {
        let Some(tid) = &a.target_id else { continue };
        match (a.action.as_str(), &a.before) {
            ("updated", Some(before)) => {
                let result = target.update_workflow(tid, before).await;
                let error = match result {
                    Ok(w) => {
                        upsert_target(db, tenant, target_env, &w).await?;
                        None
                    }
                    Err(e) if e.is_transient() => return Err(provider_error(e)),
                    Err(e) => Some(e.to_string()),
                };
                out.push(RolledBack {
                    target_id: tid.clone(),
                    action: "restored".into(),
                    error,
                });
            }
            ("created", _) => {
                let error = match target.delete_workflow(tid).await {
                    Ok(()) | Err(ProviderError::NotFound(_)) => {
                        catalog::mark_deleted(db, target_env, tid, false)
                            .await
                            .map_err(domain_error)?;
                        None
                    }
                    Err(e) if e.is_transient() => return Err(provider_error(e)),
                    Err(e) => Some(e.to_string()),
                };
                out.push(RolledBack {
                    target_id: tid.clone(),
                    action: "deleted".into(),
                    error,
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Shared by the API's preview: the preflight from the catalog as last synced.
pub async fn preview(
    db: &PgPool,
    tenant: Uuid,
    stage: &Stage,
    workflow_ids: &[String],
    force: bool,
) -> domain::Result<Preflight> {
    let sources =
        catalog::definitions(db, tenant, stage.source_environment_id, Some(workflow_ids)).await?;
    let found: HashSet<String> = sources.iter().map(id_of).collect();
    if let Some(missing) = workflow_ids.iter().find(|w| !found.contains(*w)) {
        return Err(domain::Error::invalid(
            "workflow_ids",
            format!("no workflow {missing} in the source environment"),
        ));
    }
    let mut context = load_context(
        db,
        tenant,
        stage.source_environment_id,
        stage.target_environment_id,
        sources,
    )
    .await?;
    if stage.gates.target_environment_healthy {
        // A preview calls no provider: the target's last recorded health check, if recent.
        let last: Option<(chrono::DateTime<chrono::Utc>, String, Option<String>)> = sqlx::query_as(
            "select checked_at, status, error from environment_health_checks \
                 where tenant_id = $1 and environment_id = $2 order by checked_at desc limit 1",
        )
        .bind(tenant)
        .bind(stage.target_environment_id)
        .fetch_optional(db)
        .await?;
        context.target_healthy = TargetHealth::from_recorded(last, chrono::Utc::now());
    }
    Ok(context.preflight(stage, force))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::pipelines::{Approvals, Gates, StagePolicy};

    fn wf(id: &str, name: &str, nodes: &Value, active: bool) -> Value {
        json!({"id": id, "name": name, "active": active, "nodes": nodes, "connections": {}, "settings": {}})
    }

    fn context(sources: Vec<Value>, targets: Vec<Value>) -> Context {
        let targets: HashMap<String, Value> = targets.into_iter().map(|t| (id_of(&t), t)).collect();
        Context {
            source_names: sources.iter().map(|s| (id_of(s), name_of(s))).collect(),
            target_hashes: targets
                .iter()
                .map(|(k, v)| (k.clone(), workflow::content_hash(v)))
                .collect(),
            sources,
            targets,
            target_credentials: HashMap::from([(
                ("postgres".to_owned(), "Main DB".to_owned()),
                "tc1".to_owned(),
            )]),
            source_connections: HashMap::new(),
            mappings: HashMap::new(),
            deployed: HashMap::new(),
            source_canonical: HashMap::new(),
            target_canonical: HashMap::new(),
            target_healthy: TargetHealth::Tested(Err("connection refused".into())),
            drift_blocking: Vec::new(),
            open_incidents: 0,
        }
    }

    fn stage(gates: Gates, policy: StagePolicy) -> Stage {
        Stage {
            source_environment_id: Uuid::nil(),
            target_environment_id: Uuid::nil(),
            gates,
            policy,
            approvals: Approvals::default(),
            window: None,
        }
    }

    fn status<'a>(pre: &'a Preflight, gate: &str) -> &'a str {
        pre.gates
            .iter()
            .find(|g| g.gate == gate)
            .map_or("absent", |g| g.status.as_str())
    }

    // PROMO-002, PROMO-009, CRED-007
    #[test]
    fn gates_judge_webhooks_nodes_risk_health_and_credentials_from_the_data() {
        let hook = json!([{"name": "Hook", "type": "n8n-nodes-base.webhook", "typeVersion": 2, "webhookId": "w1",
            "parameters": {"path": "orders", "httpMethod": "POST"}}]);
        let source = wf(
            "s1",
            "Orders",
            &json!([
                {"name": "Hook", "type": "n8n-nodes-base.webhook", "typeVersion": 2, "webhookId": "w9",
                 "parameters": {"path": "orders", "httpMethod": "POST"}},
                {"name": "Magic", "type": "n8n-nodes-acme.magic", "typeVersion": 1, "parameters": {}},
                {"name": "DB", "type": "n8n-nodes-base.postgres", "typeVersion": 2, "parameters": {},
                 "credentials": {"postgres": {"id": "sc1", "name": "Main DB"}, "slackApi": {"id": "sc2", "name": "Alerts"}}}
            ]),
            false,
        );
        let other = wf("t7", "Legacy intake", &hook, true);
        let ctx = context(vec![source], vec![other]);
        let strict = Gates {
            webhooks_available: true,
            nodes_supported_in_target: true,
            target_environment_healthy: true,
            credentials_exist_in_target: true,
            max_allowed_risk_level: Some(RiskLevel::Medium),
            ..Gates::default()
        };
        let pre = ctx.preflight(&stage(strict.clone(), StagePolicy::default()), false);
        assert!(pre.blocked);
        assert_eq!(pre.items[0].status, DiffStatus::Added);
        assert_eq!(pre.items[0].risk, RiskLevel::High, "a trigger is added");
        for gate in [
            "webhooksAvailable",
            "nodesSupportedInTarget",
            "targetEnvironmentHealthy",
            "credentialsExistInTarget",
            "maxAllowedRiskLevel",
        ] {
            assert_eq!(status(&pre, gate), "fail", "{gate}: {:?}", pre.gates);
        }
        let creds = pre
            .gates
            .iter()
            .find(|g| g.gate == "credentialsExistInTarget")
            .map(|g| g.message.clone())
            .unwrap_or_default();
        assert!(
            creds.contains("Alerts (slackApi)") && !creds.contains("Main DB"),
            "matched by name and type: {creds}"
        );
        // Placeholders allowed: missing credentials only warn.
        let lenient = StagePolicy {
            allow_placeholder_credentials: true,
            ..StagePolicy::default()
        };
        let pre = ctx.preflight(&stage(strict, lenient), false);
        assert_eq!(status(&pre, "credentialsExistInTarget"), "warn");
        // No gates configured: only conflicts and credentials are reported, neither blocks.
        let pre = ctx.preflight(&stage(Gates::default(), StagePolicy::default()), false);
        assert!(!pre.blocked, "{:?}", pre.gates);
        assert_eq!(
            pre.target_only,
            vec![("t7".to_owned(), "Legacy intake".to_owned())],
            "TARGET_ONLY"
        );
    }

    // PROMO-009: a preview judges the target's health by a recent recorded check only.
    #[test]
    fn a_preview_fails_the_health_gate_only_on_a_recent_failed_check() {
        let now = chrono::Utc::now();
        let gated = stage(
            Gates {
                target_environment_healthy: true,
                ..Gates::default()
            },
            StagePolicy::default(),
        );
        let mut ctx = context(Vec::new(), Vec::new());
        let gate = |ctx: &Context| {
            ctx.preflight(&gated, false)
                .gates
                .into_iter()
                .find(|g| g.gate == "targetEnvironmentHealthy")
                .map(|g| (g.status, g.message))
                .unwrap_or_default()
        };
        let recent = now - chrono::TimeDelta::minutes(4);
        ctx.target_healthy =
            TargetHealth::from_recorded(Some((recent, "healthy".into(), None)), now);
        let (status, message) = gate(&ctx);
        assert_eq!(status, "pass", "{message}");
        assert!(message.contains("last health check"), "{message}");
        ctx.target_healthy = TargetHealth::from_recorded(
            Some((
                recent,
                "unreachable".into(),
                Some("connection refused".into()),
            )),
            now,
        );
        let (status, message) = gate(&ctx);
        assert_eq!(status, "fail");
        assert!(
            message.contains("found it unreachable: connection refused"),
            "{message}"
        );
        // Too old, or never: not measured, so not a failure.
        let old = now - RECORDED_HEALTH_MAX_AGE - chrono::TimeDelta::minutes(1);
        ctx.target_healthy =
            TargetHealth::from_recorded(Some((old, "unreachable".into(), None)), now);
        let (status, message) = gate(&ctx);
        assert_eq!(status, "warn");
        assert!(message.starts_with("not measured"), "{message}");
        ctx.target_healthy = TargetHealth::from_recorded(None, now);
        assert_eq!(gate(&ctx).0, "warn");
        assert!(!ctx.preflight(&gated, false).blocked);
    }

    // PROMO-003: UNCHANGED after remapping; TARGET_HOTFIX when the target moved since deployed.
    #[test]
    fn diff_statuses_follow_the_remapped_content_and_the_last_deployment() {
        let nodes = |x: i64| {
            json!([{"name": "DB", "type": "n8n-nodes-base.postgres", "typeVersion": 2,
            "parameters": {"limit": x}, "credentials": {"postgres": {"id": "sc1", "name": "Main DB"}}}])
        };
        let source = wf("s1", "Orders", &nodes(1), false);
        let same = wf(
            "t1",
            "Orders",
            &json!([{"name": "DB", "type": "n8n-nodes-base.postgres", "typeVersion": 2,
            "parameters": {"limit": 1}, "credentials": {"postgres": {"id": "tc1", "name": "Main DB"}}}]),
            true,
        );
        let ctx = context(vec![source], vec![same.clone()]);
        let pre = ctx.preflight(&stage(Gates::default(), StagePolicy::default()), false);
        assert_eq!(pre.items[0].status, DiffStatus::Unchanged);
        assert_eq!(pre.items[0].target_id.as_deref(), Some("t1"));

        let changed_source = wf("s1", "Orders", &nodes(2), false);
        let mut ctx = context(vec![changed_source], vec![same.clone()]);
        ctx.deployed.insert(
            "s1".into(),
            promotions::Deployed {
                source_workflow_id: "s1".into(),
                target_workflow_id: "t1".into(),
                source_hash: String::new(),
                target_hash: workflow::content_hash(&same),
            },
        );
        let pre = ctx.preflight(&stage(Gates::default(), StagePolicy::default()), false);
        assert_eq!(pre.items[0].status, DiffStatus::Modified);
        assert_eq!(status(&pre, "conflicts"), "pass");
        if let Some(d) = ctx.deployed.get_mut("s1") {
            d.target_hash = "something else".into();
        }
        let pre = ctx.preflight(&stage(Gates::default(), StagePolicy::default()), false);
        assert_eq!(pre.items[0].status, DiffStatus::TargetHotfix);
        assert_eq!(status(&pre, "conflicts"), "fail");
        let force = StagePolicy {
            allow_force_promotion_on_conflicts: true,
            ..StagePolicy::default()
        };
        assert_eq!(
            status(
                &ctx.preflight(&stage(Gates::default(), force.clone()), false),
                "conflicts"
            ),
            "fail"
        );
        assert_eq!(
            status(
                &ctx.preflight(&stage(Gates::default(), force), true),
                "conflicts"
            ),
            "warn"
        );
    }
}
