//! Drift as runs: `drift.check` (DRIFT-001..007, INC-001/002/008/009: compare an environment's
//! workflows with their canonical versions, open or update incidents), `drift.reconcile`
//! (promote / revert / replace / acknowledge, recorded as a reconciliation artifact) and
//! `drift.sla` (POL-002/007..010: expiry, escalation, warnings, retention).
//!
//! Detection is in every plan; the tenant's drift policy is not (ENT-001). A check applies the
//! stored policy only while the plan of the environment's provider grants `drift_policies`, and
//! its SLA part (the TTLs by severity, SLA enforcement, the expiration warning) only while it
//! also grants `drift_sla`; otherwise the environment is handled as if no policy were set
//! (`domain::drift::Policy::default`: TTLs of 24/48/72/168 hours, incidents opened
//! automatically, notifications from `high` up, SLAs enforced with a 12-hour warning,
//! promotions blocked by expired incidents only, a year's retention). A downgraded tenant keeps
//! its policy for when it upgrades again, but it stops governing at once. A check that set a
//! stored policy aside logs one refusal (`feature_denials`, action `drift.check`, the first
//! feature missing, by no user), once per run however many workflows it compares. `drift.sla`
//! (escalation, warnings, retention) and the promotion gate follow the same rule
//! (`domain::drift::governed`, `domain::drift::blocking`) without logging: they run for every
//! tenant every few minutes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use adapters::ProviderError;
use adapters::git::{Checkout, GitError};
use domain::audit::{Actor, Entry};
use domain::diff::{self, RiskLevel};
use domain::drift::{self, Check, NewIncident, Resolution, Severity};
use domain::environments::{self, EnvironmentClass};
use domain::make::KnownConnection;
use domain::notifications::{Alert, EventType};
use domain::remap::{self, CredentialTarget, TargetTeam};
use domain::{canonical, catalog, workflow};
use engine::{Job, JobError, NewRun, RetryPolicy, RunCtx};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::providers::{Deps, domain_error, provider_error};

fn system() -> Actor {
    Actor {
        user_id: None,
        api_key_id: None,
        label: "drift".into(),
        impersonator_user_id: None,
        ip: None,
        request_id: None,
    }
}

// ---- the check -------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckInput {
    pub tenant_id: Uuid,
    pub environment_id: Uuid,
    /// `scheduled` or `manual`.
    pub trigger: String,
    /// Sync the environment's workflows first (a child run); otherwise compare the catalog as
    /// last synced.
    #[serde(default)]
    pub refresh: bool,
}

#[derive(Debug, Clone)]
pub struct DriftCheck {
    pub deps: Deps,
}

/// The schedule's name within the tenant's namespace.
pub fn schedule_name(environment_id: Uuid) -> String {
    format!("environment:{environment_id}:drift")
}

/// How often scheduled checks run.
pub const SCHEDULE_CRON: &str = "*/30 * * * *";

pub fn new_check(input: &CheckInput) -> NewRun {
    NewRun::of::<DriftCheck>(input.tenant_id.to_string(), input)
        .concurrency(format!("environment:{}:drift", input.environment_id), 1)
        .labels(json!({"environment_id": input.environment_id}))
}

/// One workflow as the check compares it.
#[derive(Debug, sqlx::FromRow)]
struct Row {
    provider_id: String,
    name: String,
    env_hash: String,
    canonical_id: Option<String>,
    canonical_hash: Option<String>,
    linked_hash: Option<String>,
    accepted_hash: Option<String>,
}

/// What the check found, before incidents.
#[derive(Debug, Default)]
pub struct Findings {
    pub workflows: i32,
    pub in_sync: i32,
    pub out_of_date: i32,
    pub missing: i32,
    pub untracked: i32,
    /// Drifted workflows and (in production) untracked ones: (affected entry, payload entry, risk).
    pub affected: Vec<(Value, Value, RiskLevel)>,
}

/// Compares the environment's workflows (as in the catalog) with their canonical versions:
/// hashes first, a structural diff for the drifted ones only.
pub async fn analyze(
    db: &PgPool,
    tenant: Uuid,
    env: &environments::Environment,
) -> Result<Findings, JobError> {
    let rows: Vec<Row> = sqlx::query_as(
        "select w.provider_id, w.name, w.content_hash as env_hash, m.canonical_id, c.content_hash as canonical_hash, \
                m.linked_hash, a.content_hash as accepted_hash \
         from env_workflows w \
         left join workflow_env_map m on m.environment_id = w.environment_id and m.provider_id = w.provider_id \
         left join canonical_workflows c on c.tenant_id = m.tenant_id and c.id = m.canonical_id and c.deleted_at is null \
         left join drift_accepted a on a.environment_id = w.environment_id and a.provider_id = w.provider_id \
         where w.environment_id = $1 and w.deleted_at is null",
    )
    .bind(env.id)
    .fetch_all(db)
    .await?;
    let missing: i64 = sqlx::query_scalar(
        "select count(*) from canonical_workflows c where c.tenant_id = $1 and c.provider = $2 and c.deleted_at is null \
         and exists (select 1 from workflow_env_map m where m.tenant_id = c.tenant_id and m.canonical_id = c.id and m.environment_id = $3 \
             and not exists (select 1 from env_workflows w where w.environment_id = m.environment_id and w.provider_id = m.provider_id and w.deleted_at is null))",
    )
    .bind(tenant)
    .bind(&env.provider)
    .bind(env.id)
    .fetch_one(db)
    .await?;
    let mut out = Findings {
        workflows: i32::try_from(rows.len()).unwrap_or(i32::MAX),
        missing: i32::try_from(missing).unwrap_or(i32::MAX),
        ..Findings::default()
    };
    let mut drifted = Vec::new();
    for r in &rows {
        match (&r.canonical_id, &r.canonical_hash) {
            (Some(_), Some(c)) if *c == r.env_hash => out.in_sync += 1,
            _ if r.accepted_hash.as_ref() == Some(&r.env_hash) => out.in_sync += 1,
            (Some(_), Some(_)) if r.linked_hash.as_ref() == Some(&r.env_hash) => {
                out.out_of_date += 1;
            }
            (Some(_), Some(_)) => drifted.push(r),
            _ => {
                out.untracked += 1;
                // DRIFT-004: a workflow nobody tracks, changed directly in production.
                if env.class == EnvironmentClass::Production {
                    out.affected.push((
                        json!({"workflow_id": r.provider_id, "name": r.name, "canonical_id": null, "kind": "untracked",
                               "risk": "high", "summary": "not tracked in Git"}),
                        json!({"env_hash": r.env_hash}),
                        RiskLevel::High,
                    ));
                }
            }
        }
    }
    if !drifted.is_empty() {
        let ids: Vec<String> = drifted.iter().map(|r| r.provider_id.clone()).collect();
        let current: HashMap<String, Value> = catalog::definitions(db, tenant, env.id, Some(&ids))
            .await
            .map_err(domain_error)?
            .into_iter()
            .filter_map(|d| Some((d.get("id")?.as_str()?.to_owned(), d)))
            .collect();
        for r in drifted {
            let cid = r.canonical_id.clone().unwrap_or_default();
            let canonical_def = canonical::definition(db, tenant, &cid)
                .await
                .map_err(domain_error)?;
            let d = diff::diff(
                &canonical_def,
                current.get(&r.provider_id).unwrap_or(&Value::Null),
            );
            let risk = diff::risk(&d);
            out.affected.push((
                json!({"workflow_id": r.provider_id, "name": r.name, "canonical_id": cid, "kind": "drift",
                       "risk": risk.level, "reasons": risk.reasons, "summary": diff::render_summary(&d)}),
                json!({"canonical_hash": r.canonical_hash, "env_hash": r.env_hash, "diff": d}),
                risk.level,
            ));
        }
    }
    Ok(out)
}

impl Job for DriftCheck {
    const KIND: &'static str = "drift.check";
    type Input = CheckInput;
    type Output = Check;

    async fn run(&self, ctx: &mut RunCtx, input: CheckInput) -> Result<Check, JobError> {
        let db = ctx.db().clone();
        let env = environments::get(&db, input.tenant_id, input.environment_id)
            .await
            .map_err(domain_error)?;
        let run_id = ctx.run_id;
        // DRIFT-005: dev environments are where changes are made.
        if env.class == EnvironmentClass::Dev {
            return drift::record_check(
                &db,
                input.tenant_id,
                &Check {
                    environment_id: env.id,
                    run_id,
                    trigger: input.trigger.clone(),
                    status: "skipped".into(),
                    note: Some("dev environments are not checked for drift".into()),
                    details: json!([]),
                    ..Check::default()
                },
            )
            .await
            .map_err(domain_error);
        }
        if input.refresh {
            ctx.spawn_children(
                "refresh",
                vec![crate::sync::new_run(&crate::sync::SyncInput {
                    tenant_id: input.tenant_id,
                    environment_id: env.id,
                    scope: crate::sync::Scope::Workflows,
                    execution_retention_seconds: None,
                })],
            )
            .await?;
            let children = ctx.join_children().await?;
            if let Some(failed) = children.iter().find(|c| c.status != "succeeded") {
                return Err(JobError::permanent(format!(
                    "the workflow sync before the check {}: {}",
                    failed.status,
                    failed.error.clone().unwrap_or(Value::Null)
                )));
            }
        }
        // Asked on every attempt: the plan may have changed since the last one.
        let in_force = {
            let mut conn = db.acquire().await?;
            drift::policy_in_force(&mut conn, input.tenant_id, &env.provider)
                .await
                .map_err(domain_error)?
        };
        if let Some(feature) = in_force.withheld {
            // A step, so the refusal is logged once for the run, not per attempt or workflow.
            let (db, tenant_id, provider) = (db.clone(), input.tenant_id, env.provider.clone());
            ctx.step("policy_withheld", || async move {
                drift::record_withheld(&db, tenant_id, feature, &provider)
                    .await
                    .map_err(domain_error)
            })
            .await?;
        }
        let policy = in_force.policy;
        let check = ctx
            .step("analyze", || async {
                let started = Instant::now();
                let found = analyze(&db, input.tenant_id, &env).await?;
                let mut tx = db.begin().await?;
                let check_id = Uuid::now_v7();
                let (mut opened, mut updated) = (0, 0);
                let drifted = found.affected.iter().filter(|a| a.0["kind"] == "drift").count();
                // drift.detected / drift.resolved on a change from the environment's last check.
                let was_drifted: Option<bool> = sqlx::query_scalar(
                    "select drifted + untracked > 0 from drift_checks \
                     where tenant_id = $1 and environment_id = $2 and status = 'completed' order by id desc limit 1",
                )
                .bind(input.tenant_id)
                .bind(env.id)
                .fetch_optional(&mut *tx)
                .await?;
                let untracked = found.untracked;
                let is_drifted = drifted > 0 || untracked > 0;
                if is_drifted != was_drifted.unwrap_or(false) {
                    let (event_type, title) = if is_drifted {
                        (EventType::DriftDetected, format!("Drift detected in {}", env.name))
                    } else {
                        (EventType::DriftResolved, format!("{} is back in sync", env.name))
                    };
                    crate::notify::raise(&mut tx, Alert {
                        tenant_id: input.tenant_id,
                        event_type,
                        environment_id: Some(env.id),
                        title,
                        data: json!({"environment": env.name, "drifted": drifted, "untracked": untracked,
                            "check_id": check_id}),
                    })
                    .await
                    .map_err(domain_error)?;
                }
                if !found.affected.is_empty() && policy.auto_create_incidents {
                    // Drift: from the class and the highest risk; untracked production
                    // workflows: at least high.
                    let risk = found.affected.iter().filter(|a| a.0["kind"] == "drift").map(|a| a.2).max();
                    let untracked_prod = found.affected.iter().any(|a| a.0["kind"] == "untracked");
                    let mut severity = risk.map_or(Severity::Low, |r| Severity::of(env.class, r));
                    if untracked_prod && severity.rank() < Severity::High.rank() {
                        severity = Severity::High;
                    }
                    let affected = Value::Array(found.affected.iter().map(|a| a.0.clone()).collect());
                    let payload: BTreeMap<String, Value> = found
                        .affected
                        .iter()
                        .map(|a| (a.0["workflow_id"].as_str().unwrap_or_default().to_owned(), a.1.clone()))
                        .collect();
                    let payload = json!(payload);
                    let ids: Vec<String> = payload.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
                    // Untracked workflows are not changes to governed ones: counted apart.
                    let untracked_affected = found.affected.len() - drifted;
                    let title = drift::incident_title(&env.name, drifted, untracked_affected);
                    match drift::open_covering(&mut *tx, env.id, &ids).await.map_err(domain_error)? {
                        Some(incident) => {
                            drift::redetected(&mut *tx, incident.id, severity, &title, &affected, &payload, check_id)
                                .await
                                .map_err(domain_error)?;
                            updated += 1;
                        }
                        None => {
                            let incident = drift::create_incident(
                                &mut *tx,
                                input.tenant_id,
                                &NewIncident {
                                    environment_id: env.id,
                                    severity,
                                    title: &title,
                                    ttl_hours: policy.ttl_hours(severity),
                                    affected: &affected,
                                    payload: &payload,
                                    check_id,
                                },
                            )
                            .await
                            .map_err(domain_error)?;
                            opened += 1;
                            // POL-006: an event for the notifications to pick up.
                            let notify = Severity::parse(&policy.notify_min_severity)
                                .is_none_or(|min| severity.rank() >= min.rank());
                            Entry::new(Some(input.tenant_id), &system(), "drift.incident_opened", "incident")
                                .target(incident.id)
                                .new_value(&json!({"environment_id": env.id, "severity": severity, "notify": notify,
                                    "workflows": found.affected.len(), "changed": drifted, "untracked": untracked_affected}))
                                .record(&mut *tx)
                                .await
                                .map_err(domain_error)?;
                            if notify {
                                crate::notify::raise(&mut tx, Alert {
                                    tenant_id: input.tenant_id,
                                    event_type: EventType::IncidentCreated,
                                    environment_id: Some(env.id),
                                    title: title.clone(),
                                    data: json!({"incident_id": incident.id, "environment": env.name,
                                        "severity": severity, "workflows": found.affected.len(), "changed": drifted,
                                        "untracked": untracked_affected}),
                                })
                                .await
                                .map_err(domain_error)?;
                            }
                        }
                    }
                }
                // POL-003: the check still reports what it found; it says why no incident.
                let note = (!found.affected.is_empty() && !policy.auto_create_incidents).then(|| {
                    format!(
                        "no incident opened: the drift policy turns off automatic incidents \
                         (auto_create_incidents); {} workflow(s) affected",
                        found.affected.len()
                    )
                });
                let details = Value::Array(found.affected.iter().map(|a| a.0.clone()).collect());
                let check = drift::record_check(
                    &mut *tx,
                    input.tenant_id,
                    &Check {
                        id: check_id,
                        environment_id: env.id,
                        run_id,
                        trigger: input.trigger.clone(),
                        status: "completed".into(),
                        workflows: found.workflows,
                        in_sync: found.in_sync,
                        drifted: i32::try_from(drifted).unwrap_or(i32::MAX),
                        out_of_date: found.out_of_date,
                        missing: found.missing,
                        untracked: found.untracked,
                        incidents_opened: opened,
                        incidents_updated: updated,
                        duration_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
                        note,
                        details,
                        created_at: chrono::Utc::now(),
                    },
                )
                .await
                .map_err(domain_error)?;
                tx.commit().await?;
                Ok(check)
            })
            .await?;
        ctx.log(
            "info",
            format!(
                "drift check of {}: {} workflows, {} in sync, {} drifted, {} untracked; {} incident(s) opened, {} updated",
                env.name, check.workflows, check.in_sync, check.drifted, check.untracked, check.incidents_opened, check.incidents_updated
            ),
        )
        .await?;
        Ok(check)
    }
}

// ---- reconciliation --------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileInput {
    pub tenant_id: Uuid,
    pub incident_id: Uuid,
    pub resolution: Resolution,
    /// Only these affected workflows; all when None.
    #[serde(default)]
    pub workflow_ids: Option<Vec<String>>,
    pub triggered_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reconciled {
    pub workflow_id: String,
    /// `written` (the canonical version put back), `created`, `promoted` (taken into Git),
    /// `accepted`, `skipped` or `failed`.
    pub action: String,
    pub content_hash: Option<String>,
    pub note: Option<String>,
    /// What was written but needs a hand in the environment: Make modules left without a
    /// connection (the canonical version's has no counterpart in the environment's team).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Reconcile {
    pub deps: Deps,
}

pub fn new_reconcile(input: &ReconcileInput, environment_id: Uuid) -> NewRun {
    NewRun::of::<Reconcile>(input.tenant_id.to_string(), input)
        .concurrency(format!("environment:{environment_id}:mutate"), 1)
        .labels(json!({"incident_id": input.incident_id, "environment_id": environment_id}))
}

/// The connections a canonical Make scenario's ids may name, by id: those of every environment
/// its copies are linked in (it was taken from one of them), the reverted environment's own
/// first. What a module's designer did not cache about its connection (type, label) is read
/// here, as a promotion reads it from the source team's ([`workflow::credential_refs_in`]).
async fn known_connections(
    db: &PgPool,
    tenant: Uuid,
    canonical_id: &str,
    env: Uuid,
) -> Result<HashMap<String, KnownConnection>, JobError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select distinct on (c.provider_id) c.provider_id, c.type, c.name from env_credentials c \
         where c.deleted_at is null and (c.environment_id = $3 or c.environment_id in \
             (select m.environment_id from workflow_env_map m where m.tenant_id = $1 and m.canonical_id = $2)) \
         order by c.provider_id, (c.environment_id = $3) desc",
    )
    .bind(tenant)
    .bind(canonical_id)
    .bind(env)
    .fetch_all(db)
    .await?;
    Ok(domain::make::known_by_id(rows))
}

/// Credential references of a canonical version (a Make connection typed and named through
/// `known` where the designer did not cache it), pointed at the environment's credentials of
/// the same type and name, else at the environment's own credential of that id (the version
/// was taken from this environment).
async fn credentials_in(
    db: &PgPool,
    env: Uuid,
    wf: &Value,
    known: &HashMap<String, KnownConnection>,
) -> Result<HashMap<(String, String), CredentialTarget>, JobError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select type, name, provider_id from env_credentials where environment_id = $1 and deleted_at is null",
    )
    .bind(env)
    .fetch_all(db)
    .await?;
    let by_name: HashMap<(String, String), String> = rows
        .iter()
        .map(|(t, n, id)| ((t.clone(), n.clone()), id.clone()))
        .collect();
    let by_id: HashMap<(String, String), String> =
        rows.into_iter().map(|(t, n, id)| ((t, id), n)).collect();
    let mut out = HashMap::new();
    for r in workflow::credential_refs_in(wf, known) {
        let named = by_name
            .get(&(r.cred_type.clone(), r.name.clone()))
            .map(|id| CredentialTarget {
                id: id.clone(),
                name: r.name.clone(),
            });
        let own = || {
            let id = r.id.clone()?;
            let name = by_id.get(&(r.cred_type.clone(), id.clone()))?;
            Some(CredentialTarget {
                id,
                name: name.clone(),
            })
        };
        if let Some(target) = named.or_else(own) {
            if let Some(source) = &r.id {
                out.insert((r.cred_type.clone(), source.clone()), target.clone());
            }
            out.insert((r.cred_type.clone(), r.name.clone()), target);
        }
    }
    Ok(out)
}

/// What a revert's result says about Make modules written without a connection.
fn connection_warnings(left: &[remap::UnmappedCredential]) -> Vec<String> {
    left.iter()
        .map(|c| {
            format!(
                "module `{}` was left without a connection: the canonical version's connection `{}` ({}) has no counterpart in this team; choose one in Make",
                c.node,
                c.name.as_deref().or(c.id.as_deref()).unwrap_or_default(),
                c.credential_type
            )
        })
        .collect()
}

impl Job for Reconcile {
    const KIND: &'static str = "drift.reconcile";
    type Input = ReconcileInput;
    type Output = Vec<Reconciled>;

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: std::time::Duration::from_secs(1),
            max_backoff: std::time::Duration::from_secs(60),
        }
    }

    async fn run(
        &self,
        ctx: &mut RunCtx,
        input: ReconcileInput,
    ) -> Result<Vec<Reconciled>, JobError> {
        let db = ctx.db().clone();
        let tenant = input.tenant_id;
        let incident = drift::get(&db, tenant, input.incident_id)
            .await
            .map_err(domain_error)?;
        let env_id = incident.environment_id;
        let affected: Vec<Value> = incident
            .affected
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| {
                input.workflow_ids.as_ref().is_none_or(|ids| {
                    a["workflow_id"]
                        .as_str()
                        .is_some_and(|w| ids.iter().any(|i| i == w))
                })
            })
            .collect();
        let mut results = Vec::new();
        match input.resolution {
            Resolution::Revert | Resolution::Replace => {
                let provider = self.deps.provider(&db, tenant, env_id).await?;
                for a in &affected {
                    let wid = a["workflow_id"].as_str().unwrap_or_default().to_owned();
                    let Some(cid) = a["canonical_id"].as_str().map(str::to_owned) else {
                        results.push(Reconciled {
                            workflow_id: wid,
                            action: "skipped".into(),
                            content_hash: None,
                            note: Some(
                                "untracked: onboard it, there is no canonical version to put back"
                                    .into(),
                            ),
                            warnings: Vec::new(),
                        });
                        continue;
                    };
                    let (db2, provider2) = (db.clone(), provider.clone());
                    let replace = input.resolution == Resolution::Replace;
                    let item = ctx
                        .step(&format!("write:{wid}"), || async move {
                            let mut body = canonical::definition(&db2, tenant, &cid)
                                .await
                                .map_err(domain_error)?;
                            // The canonical copy of a Make scenario carries the connections,
                            // webhooks and keys of the team it was taken from: the environment
                            // keeps its own (a recreated scenario gets none, to be chosen in
                            // Make), as a promotion into another team does.
                            let scenario = domain::make::is_scenario(&body);
                            let (live, known) = if scenario {
                                let live = match provider2.get_workflow(&wid).await {
                                    Ok(live) => Some(live),
                                    Err(e) if e.is_transient() => return Err(provider_error(e)),
                                    Err(_) => None,
                                };
                                (live, known_connections(&db2, tenant, &cid, env_id).await?)
                            } else {
                                (None, HashMap::new())
                            };
                            let map = credentials_in(&db2, env_id, &body, &known).await?;
                            let remapped = remap::remap_credentials_for_target(
                                &mut body,
                                &map,
                                &TargetTeam {
                                    source_connections: Some(&known),
                                    target_copy: live.as_ref(),
                                },
                            );
                            let warnings = connection_warnings(&remapped.without_connection);
                            let update = match &live {
                                Some(live) => domain::make::with_team_references_of(&body, live),
                                None if scenario => domain::make::without_team_references(&body),
                                None => body.clone(),
                            };
                            let written = match provider2.update_workflow(&wid, &update).await {
                                Ok(w) => Ok(("written", w)),
                                Err(ProviderError::NotFound(_)) if replace => {
                                    let create = if scenario {
                                        domain::make::without_team_references(&body)
                                    } else {
                                        body.clone()
                                    };
                                    provider2
                                        .create_workflow(&create)
                                        .await
                                        .map(|w| ("created", w))
                                }
                                Err(e) => Err(e),
                            };
                            match written {
                                Ok((action, w)) => {
                                    let hash = workflow::content_hash(&w);
                                    let written_id = w
                                        .get("id")
                                        .and_then(Value::as_str)
                                        .unwrap_or(&wid)
                                        .to_owned();
                                    let mut tx = db2.begin().await?;
                                    catalog::upsert_workflows(
                                        &mut tx,
                                        tenant,
                                        env_id,
                                        Uuid::nil(),
                                        std::slice::from_ref(&w),
                                    )
                                    .await
                                    .map_err(domain_error)?;
                                    // Written by WorkflowOps: not a hotfix for the next promotion.
                                    domain::promotions::record_written(
                                        &mut *tx,
                                        env_id,
                                        &wid,
                                        &written_id,
                                        &hash,
                                    )
                                    .await
                                    .map_err(domain_error)?;
                                    tx.commit().await?;
                                    Ok(Reconciled {
                                        workflow_id: wid,
                                        action: action.into(),
                                        content_hash: Some(hash),
                                        note: None,
                                        warnings,
                                    })
                                }
                                Err(e) if e.is_transient() => Err(provider_error(e)),
                                Err(e) => Ok(Reconciled {
                                    workflow_id: wid,
                                    action: "failed".into(),
                                    content_hash: None,
                                    note: Some(e.to_string()),
                                    warnings: Vec::new(),
                                }),
                            }
                        })
                        .await?;
                    if !item.warnings.is_empty() {
                        ctx.log(
                            "warn",
                            format!(
                                "workflow {}: {}",
                                item.workflow_id,
                                item.warnings.join("; ")
                            ),
                        )
                        .await?;
                    }
                    results.push(item);
                }
            }
            Resolution::Promote => {
                results = self.promote(ctx, &input, env_id, &affected).await?;
            }
            Resolution::Acknowledge => {
                let db2 = db.clone();
                results = ctx
                    .step("accept", || async move {
                        let mut out = Vec::new();
                        for a in &affected {
                            let wid = a["workflow_id"].as_str().unwrap_or_default();
                            let hash: Option<String> = sqlx::query_scalar(
                                "select content_hash from env_workflows where environment_id = $1 and provider_id = $2",
                            )
                            .bind(env_id)
                            .bind(wid)
                            .fetch_optional(&db2)
                            .await?;
                            if let Some(h) = &hash {
                                drift::accept(&db2, env_id, wid, h, input.incident_id).await.map_err(domain_error)?;
                            }
                            out.push(Reconciled {
                                workflow_id: wid.to_owned(),
                                action: "accepted".into(),
                                content_hash: hash,
                                note: None,
                                warnings: Vec::new(),
                            });
                        }
                        Ok(out)
                    })
                    .await?;
            }
        }
        let failed = results.iter().filter(|r| r.action == "failed").count();
        let run_id = ctx.run_id;
        let resolution = input.resolution;
        let results_json = serde_json::to_value(&results).unwrap_or_default();
        ctx.step("record", || async {
            let mut tx = db.begin().await?;
            canonical::reconcile(&mut tx, tenant, env_id)
                .await
                .map_err(domain_error)?;
            drift::record_artifact(
                &mut *tx,
                tenant,
                input.incident_id,
                run_id,
                resolution,
                &results_json,
            )
            .await
            .map_err(domain_error)?;
            if failed == 0 {
                drift::mark_reconciled(&mut *tx, input.incident_id, resolution)
                    .await
                    .map_err(domain_error)?;
                let incident = drift::get(&mut *tx, tenant, input.incident_id)
                    .await
                    .map_err(domain_error)?;
                crate::notify::raise(
                    &mut tx,
                    Alert {
                        tenant_id: tenant,
                        event_type: EventType::IncidentResolved,
                        environment_id: Some(env_id),
                        title: format!("Incident reconciled: {}", incident.title),
                        data: json!({"incident_id": input.incident_id,
                            "resolution": resolution.as_str(), "workflows": results_json}),
                    },
                )
                .await
                .map_err(domain_error)?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await?;
        if failed > 0 {
            return Err(JobError::permanent(format!(
                "{failed} workflow(s) could not be reconciled; see the artifact"
            )));
        }
        ctx.log(
            "info",
            format!(
                "reconciled {} workflow(s) by {}",
                results.len(),
                resolution.as_str()
            ),
        )
        .await?;
        Ok(results)
    }
}

impl Reconcile {
    /// `promote`: the environment's versions become the canonical ones (one commit).
    async fn promote(
        &self,
        ctx: &mut RunCtx,
        input: &ReconcileInput,
        env_id: Uuid,
        affected: &[Value],
    ) -> Result<Vec<Reconciled>, JobError> {
        let db = ctx.db().clone();
        let tenant = input.tenant_id;
        let chosen: Vec<(String, String)> = affected
            .iter()
            .filter_map(|a| {
                Some((
                    a["workflow_id"].as_str()?.to_owned(),
                    a["canonical_id"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let ids: Vec<String> = chosen.iter().map(|c| c.0.clone()).collect();
        let defs: HashMap<String, Value> = catalog::definitions(&db, tenant, env_id, Some(&ids))
            .await
            .map_err(domain_error)?
            .into_iter()
            .filter_map(|d| Some((d.get("id")?.as_str()?.to_owned(), d)))
            .collect();
        let access = {
            let mut conn = db.acquire().await?;
            canonical::repo_access(&mut conn, &self.deps.keyring, tenant)
                .await
                .map_err(domain_error)?
        };
        let files: Vec<(String, String, Value)> = chosen
            .iter()
            .filter_map(|(w, c)| Some((w.clone(), c.clone(), workflow::storage_form(defs.get(w)?))))
            .collect();
        let cache: PathBuf = self.deps.git_cache.join(format!("canonical-{tenant}"));
        let folder = access.path.trim_matches('/').to_owned();
        let message = format!(
            "Take {} workflow(s) from the environment into the canonical repository (incident {})\n\nTriggered by {}\nRun {}\n",
            files.len(),
            input.incident_id,
            input.triggered_by,
            ctx.run_id
        );
        let remote = crate::backup::remote(&access);
        let outbound = self.deps.outbound();
        let to_write = files.clone();
        let commit: Option<String> = ctx
            .step("commit", || async move {
                tokio::task::spawn_blocking(move || {
                    let mut checkout = Checkout::open_within(&remote, &cache, outbound)?;
                    let prefix = if folder.is_empty() {
                        String::new()
                    } else {
                        format!("{folder}/")
                    };
                    let changes: Vec<adapters::git::Change> = to_write
                        .iter()
                        .map(|(_, c, def)| {
                            let mut text = serde_json::to_vec_pretty(def).unwrap_or_default();
                            text.push(b'\n');
                            (format!("{prefix}workflows/{c}.json"), Some(text))
                        })
                        .collect();
                    let commit = checkout.commit_and_push(
                        &changes,
                        &message,
                        ("WorkflowOps", "drift@workflowops.invalid"),
                    )?;
                    Ok::<_, GitError>(commit.or_else(|| checkout.head()).map(|c| c.to_string()))
                })
                .await
                .map_err(|e| JobError::transient(format!("the commit task failed: {e}")))?
                .map_err(crate::backup::git_error)
            })
            .await?;
        let mut out = Vec::new();
        let mut tx = db.begin().await?;
        for (w, c, def) in &files {
            let hash = workflow::content_hash(def);
            sqlx::query(
                "update canonical_workflows set definition = $3, content_hash = $4, git_commit = $5, git_blob = null, updated_at = now() \
                 where tenant_id = $1 and id = $2",
            )
            .bind(tenant)
            .bind(c)
            .bind(def)
            .bind(&hash)
            .bind(&commit)
            .execute(&mut *tx)
            .await?;
            canonical::link(&mut tx, tenant, c, env_id, w, &hash, None)
                .await
                .map_err(domain_error)?;
            out.push(Reconciled {
                workflow_id: w.clone(),
                action: "promoted".into(),
                content_hash: Some(hash),
                note: commit.clone(),
                warnings: Vec::new(),
            });
        }
        tx.commit().await?;
        Ok(out)
    }
}

// ---- SLA -------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SlaInput {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlaOutput {
    pub expired: usize,
    pub warned: usize,
    pub pruned: u64,
}

/// `drift.sla`: expired incidents flagged and escalated, warnings, retention (every 5 minutes).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sla;

impl Job for Sla {
    const KIND: &'static str = "drift.sla";
    type Input = SlaInput;
    type Output = SlaOutput;

    async fn run(&self, ctx: &mut RunCtx, _input: SlaInput) -> Result<SlaOutput, JobError> {
        let db = ctx.db().clone();
        let mut tx = db.begin().await?;
        // Whose stored policy the plans still grant (ENT-001): the defaults elsewhere.
        let governed = drift::governed(&mut tx).await.map_err(domain_error)?;
        let sweep = drift::sla_sweep(&mut tx, &governed)
            .await
            .map_err(domain_error)?;
        for (tenant, id, severity) in &sweep.expired {
            Entry::new(
                Some(*tenant),
                &system(),
                "drift.incident_escalated",
                "incident",
            )
            .target(id)
            .new_value(&json!({"severity": severity, "reason": "past its TTL"}))
            .record(&mut *tx)
            .await
            .map_err(domain_error)?;
        }
        for (tenant, id) in &sweep.warned {
            Entry::new(
                Some(*tenant),
                &system(),
                "drift.incident_expiring",
                "incident",
            )
            .target(id)
            .record(&mut *tx)
            .await
            .map_err(domain_error)?;
            // POL-007: the warning goes to whoever listens for it.
            let incident = drift::get(&mut *tx, *tenant, *id)
                .await
                .map_err(domain_error)?;
            crate::notify::raise(
                &mut tx,
                Alert {
                    tenant_id: *tenant,
                    event_type: EventType::IncidentExpiring,
                    environment_id: Some(incident.environment_id),
                    title: format!("Incident expiring soon: {}", incident.title),
                    data: json!({"incident_id": id, "severity": incident.severity,
                        "expires_at": incident.expires_at}),
                },
            )
            .await
            .map_err(domain_error)?;
        }
        let pruned = drift::prune(&mut tx).await.map_err(domain_error)?;
        tx.commit().await?;
        Ok(SlaOutput {
            expired: sweep.expired.len(),
            warned: sweep.warned.len(),
            pruned,
        })
    }
}
