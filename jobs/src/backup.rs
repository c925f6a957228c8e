//! `environment.backup` (WF-016): the environment's workflows, as last synced, written to its Git
//! repository as one readable commit.
//!
//! Layout (under the configured folder): `manifest.json` (environment, provider, class, and per
//! workflow its id, name and file) and `workflows/<id>.json` — the workflow's storage form
//! (`domain::workflow::storage_form`: what a restore needs — node ids, positions, webhook ids,
//! credential references — and nothing instance-volatile), pretty-printed with sorted keys, so an
//! unchanged workflow never produces a diff and a changed one shows exactly what changed. Files of
//! workflows gone from the environment are removed. A backup with nothing new makes no commit;
//! a backup killed after its push and retried finds nothing new, so there is never a duplicate.
//! A Make scenario's file also says which team it was taken from (`teamId`): its connection,
//! webhook and key ids are that team's, and a restore into another team must not write them.

use std::path::PathBuf;

use adapters::git::{Checkout, GitAuth, GitError, GitRemote};
use domain::git_config::{self, GitAccess};
use domain::notifications::{Alert, EventType};
use domain::remap::{self, TargetTeam};
use domain::snapshots::SnapshotWorkflow;
use domain::{environments, make, workflow};
use engine::{Job, JobError, NewRun, RetryPolicy, RunCtx};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::providers::{Deps, domain_error};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupInput {
    pub tenant_id: Uuid,
    pub environment_id: Uuid,
    /// Who asked (for the commit message).
    pub triggered_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupOutput {
    /// The new commit, or None when nothing had changed.
    pub commit: Option<String>,
    /// The commit holding the backed-up state (the new one, or the head that already had it).
    #[serde(default)]
    pub head: Option<String>,
    pub workflows: usize,
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
}

#[derive(Debug, Clone)]
pub struct Backup {
    pub deps: Deps,
}

pub fn new_run(input: &BackupInput) -> NewRun {
    NewRun::of::<Backup>(input.tenant_id.to_string(), input)
        .concurrency(format!("environment:{}:backup", input.environment_id), 1)
        .labels(json!({"environment_id": input.environment_id}))
}

/// The Git remote for an environment's stored configuration.
pub fn remote(access: &GitAccess) -> GitRemote {
    let secret = access
        .secret
        .clone()
        .unwrap_or_else(|| SecretString::from(String::new()));
    GitRemote {
        url: access.url.clone(),
        branch: access.branch.clone(),
        auth: match access.auth_kind.as_str() {
            "token" => GitAuth::Token {
                username: access
                    .username
                    .clone()
                    .unwrap_or_else(|| "x-access-token".into()),
                token: secret,
            },
            "ssh_key" => GitAuth::SshKey {
                private_key: secret,
                passphrase: None,
            },
            _ => GitAuth::None,
        },
    }
}

/// A Git failure as the engine sees it: unreachable remotes are retried, the rest fail the run.
pub fn git_error(e: GitError) -> JobError {
    match e {
        GitError::Unreachable(_) | GitError::Contended(_) => JobError::transient(e.to_string()),
        other => JobError::permanent(other.to_string()),
    }
}

/// The files of a backup: path → content. `definitions` are the workflows to (re)write;
/// `all` is every live workflow (id, name), for the manifest.
fn files(
    folder: &str,
    env: &environments::Environment,
    all: &[(String, String)],
    definitions: &[Value],
) -> Vec<(String, Vec<u8>)> {
    let folder = folder.trim_matches('/');
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    let mut out = Vec::new();
    for def in definitions {
        let Some(summary) = workflow::summarize(def) else {
            continue;
        };
        let mut text = serde_json::to_vec_pretty(&workflow::storage_form(def)).unwrap_or_default();
        text.push(b'\n');
        out.push((format!("{prefix}workflows/{}.json", summary.id), text));
    }
    let entries: Vec<Value> = all
        .iter()
        .map(|(id, name)| json!({"id": id, "name": name, "file": format!("workflows/{id}.json")}))
        .collect();
    let manifest = json!({
        "environment": env.name, "provider": env.provider, "class": env.class, "workflows": entries,
    });
    let mut text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    text.push(b'\n');
    out.push((format!("{prefix}manifest.json"), text));
    out
}

/// What a backup wrote, and the state it captured (for snapshots).
#[derive(Debug, Clone)]
pub struct BackedUp {
    pub output: BackupOutput,
    /// The repository folder of the environment's files.
    pub path: String,
    /// Every live workflow, as backed up.
    pub workflows: Vec<SnapshotWorkflow>,
}

/// Backs the environment up (the body of `environment.backup`, also used by snapshots and
/// before restores); its checkpointed step is `<step>`.
pub async fn back_up(
    deps: &Deps,
    ctx: &mut RunCtx,
    tenant_id: Uuid,
    environment_id: Uuid,
    triggered_by: &str,
    step: &str,
) -> Result<BackedUp, JobError> {
    let db = ctx.db().clone();
    let env = environments::get(&db, tenant_id, environment_id)
        .await
        .map_err(domain_error)?;
    let access = {
        let mut conn = db.acquire().await?;
        git_config::access(&mut conn, &deps.keyring, tenant_id, environment_id)
            .await
            .map_err(domain_error)?
    };
    // Only workflows whose content moved since the last backup are read and written.
    let state = git_config::backup_state(&db, environment_id)
        .await
        .map_err(domain_error)?;
    let moved: Vec<(String, String)> = state
        .iter()
        .filter(|w| w.backed_up_hash.as_ref() != Some(&w.storage_hash))
        .map(|w| (w.id.clone(), w.storage_hash.clone()))
        .collect();
    let moved_ids: Vec<String> = moved.iter().map(|(id, _)| id.clone()).collect();
    let definitions = if moved_ids.is_empty() {
        Vec::new()
    } else {
        domain::catalog::definitions(&db, tenant_id, environment_id, Some(&moved_ids))
            .await
            .map_err(domain_error)?
    };
    let all: Vec<(String, String)> = state
        .iter()
        .map(|w| (w.id.clone(), w.name.clone()))
        .collect();
    let live: std::collections::HashSet<String> = all.iter().map(|(id, _)| id.clone()).collect();
    let files = files(&access.path, &env, &all, &definitions);
    let workflows = all.len();
    // Three stages: read what changed, commit and push, record the backup.
    ctx.log(
        "info",
        format!(
            "{} of {workflows} workflows changed since the last backup",
            moved.len()
        ),
    )
    .await?;
    ctx.progress(1, 3).await?;
    let cache: PathBuf = deps.git_cache.join(environment_id.to_string());
    let message_head = format!("Back up {} ({})", env.name, env.class);
    let trailer = format!("Triggered by {triggered_by}\nRun {}", ctx.run_id);
    let path = access.path.clone();
    let outbound = deps.outbound();
    let out = ctx
        .step(step, || async move {
            let remote = remote(&access);
            tokio::task::spawn_blocking(move || {
                let mut checkout = Checkout::open_within(&remote, &cache, outbound)?;
                let folder = access.path.trim_matches('/').to_owned();
                let workflows_dir = if folder.is_empty() {
                    "workflows/".to_owned()
                } else {
                    format!("{folder}/workflows/")
                };
                let folder_prefix = if folder.is_empty() {
                    String::new()
                } else {
                    format!("{folder}/")
                };
                let stored = checkout.blob_ids(&folder_prefix)?;
                let existing: Vec<String> = stored
                    .keys()
                    .filter(|p| p.starts_with(&workflows_dir))
                    .cloned()
                    .collect();
                let (mut added, mut changed) = (0, 0);
                let mut changes = Vec::new();
                for (path, content) in &files {
                    let old = stored.get(path);
                    if old == Some(&adapters::git::blob_id(content)?) {
                        continue;
                    }
                    if !path.ends_with("manifest.json") {
                        if old.is_some() {
                            changed += 1;
                        } else {
                            added += 1;
                        }
                    }
                    changes.push((path.clone(), Some(content.clone())));
                }
                // Files of workflows no longer in the environment.
                let removed: Vec<String> = existing
                    .into_iter()
                    .filter(|p| {
                        let id = p
                            .trim_start_matches(&workflows_dir)
                            .trim_end_matches(".json");
                        !live.contains(id)
                    })
                    .collect();
                changes.extend(removed.iter().map(|p| (p.clone(), None)));
                let message = format!(
                    "{message_head}: {added} added, {changed} changed, {} removed\n\n{trailer}\n",
                    removed.len()
                );
                let commit = checkout.commit_and_push(
                    &changes,
                    &message,
                    ("WorkflowOps", "backup@workflowops.invalid"),
                )?;
                Ok::<_, GitError>(BackupOutput {
                    commit: commit.map(|c| c.to_string()),
                    head: checkout.head().map(|c| c.to_string()),
                    workflows,
                    added,
                    changed,
                    removed: removed.len(),
                })
            })
            .await
            .map_err(|e| JobError::transient(format!("the backup task failed: {e}")))?
            .map_err(git_error)
        })
        .await?;
    ctx.progress(2, 3).await?;
    git_config::mark_backed_up(&db, environment_id, &moved)
        .await
        .map_err(domain_error)?;
    git_config::record_backup(&db, environment_id, out.commit.as_deref())
        .await
        .map_err(domain_error)?;
    ctx.log(
        "info",
        match &out.commit {
            Some(c) => format!(
                "committed {c}: {} added, {} changed, {} removed",
                out.added, out.changed, out.removed
            ),
            None => "nothing changed since the last backup".to_owned(),
        },
    )
    .await?;
    ctx.progress(3, 3).await?;
    Ok(BackedUp {
        output: out,
        path,
        workflows: state
            .into_iter()
            .map(|w| SnapshotWorkflow {
                id: w.id,
                name: w.name,
                hash: w.content_hash,
                storage_hash: w.storage_hash,
            })
            .collect(),
    })
}

impl Job for Backup {
    const KIND: &'static str = "environment.backup";
    type Input = BackupInput;
    type Output = BackupOutput;

    fn retry_policy() -> RetryPolicy {
        backup_retry_policy()
    }

    async fn run(&self, ctx: &mut RunCtx, input: BackupInput) -> Result<BackupOutput, JobError> {
        crate::snapshot::require_plan(
            ctx,
            input.tenant_id,
            input.environment_id,
            &[domain::entitlements::Feature::GitBackup],
            "Git backup and restore",
        )
        .await?;
        let result = back_up(
            &self.deps,
            ctx,
            input.tenant_id,
            input.environment_id,
            &input.triggered_by,
            "commit",
        )
        .await
        .map(|b| b.output);
        let outcome = match &result {
            Ok(out) => Some((
                EventType::BackupCompleted,
                "backed up to Git",
                json!({"commit": out.commit, "workflows": out.workflows, "added": out.added,
                    "changed": out.changed, "removed": out.removed}),
            )),
            Err(e) if crate::notify::is_final_failure(e, ctx.attempt, MAX_BACKUP_ATTEMPTS) => {
                Some((
                    EventType::BackupFailed,
                    "backup to Git failed",
                    json!({"error": e.to_string()}),
                ))
            }
            Err(_) => None,
        };
        if let Some((event_type, what, mut data)) = outcome {
            let name = domain::environments::get(ctx.db(), input.tenant_id, input.environment_id)
                .await
                .map_or_else(|_| input.environment_id.to_string(), |e| e.name);
            if let Some(o) = data.as_object_mut() {
                o.insert("environment".into(), json!(name));
                o.insert("run_id".into(), json!(ctx.run_id));
                o.insert("triggered_by".into(), json!(input.triggered_by));
            }
            crate::notify::raise_now(
                ctx.db(),
                Alert {
                    tenant_id: input.tenant_id,
                    event_type,
                    environment_id: Some(input.environment_id),
                    title: format!("{name} {what}"),
                    data,
                },
            )
            .await;
        }
        result
    }
}

const MAX_BACKUP_ATTEMPTS: u32 = 6;

fn backup_retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: MAX_BACKUP_ATTEMPTS,
        initial_backoff: std::time::Duration::from_secs(2),
        max_backoff: std::time::Duration::from_secs(60),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBackupInput {
    pub tenant_id: Uuid,
    pub environment_ids: Vec<Uuid>,
    pub triggered_by: String,
}

/// `environment.backup_bulk` (BULK-002): a backup per environment as child runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct BulkBackup;

impl Job for BulkBackup {
    const KIND: &'static str = "environment.backup_bulk";
    type Input = BulkBackupInput;
    type Output = crate::bulk::BulkOutcome;

    async fn run(
        &self,
        ctx: &mut RunCtx,
        input: BulkBackupInput,
    ) -> Result<Self::Output, JobError> {
        let children = input
            .environment_ids
            .iter()
            .map(|&environment_id| {
                new_run(&BackupInput {
                    tenant_id: input.tenant_id,
                    environment_id,
                    triggered_by: input.triggered_by.clone(),
                })
            })
            .collect();
        crate::bulk::fan_out(ctx, "environment backups", &input.environment_ids, children).await
    }
}

/// The workflow files of an environment's backup at commit `at` (the latest when None) in
/// `folder`, by id; only `ids` when given. Reads through the environment's Git cache.
pub async fn read_files(
    deps: &Deps,
    access: &GitAccess,
    environment_id: Uuid,
    at: Option<String>,
    folder: &str,
    ids: Option<Vec<String>>,
) -> Result<Vec<(String, Value)>, GitError> {
    let folder = folder.trim_matches('/').to_owned();
    let dir = if folder.is_empty() {
        "workflows/".to_owned()
    } else {
        format!("{folder}/workflows/")
    };
    let at = at
        .map(|c| adapters::git::Oid::from_str(&c))
        .transpose()
        .map_err(|e| GitError::Other(format!("bad commit id: {e}")))?;
    let cache: PathBuf = deps.git_cache.join(environment_id.to_string());
    let remote = remote(access);
    let outbound = deps.outbound();
    tokio::task::spawn_blocking(move || {
        let checkout = Checkout::open_within(&remote, &cache, outbound)?;
        let wanted: Option<std::collections::HashSet<String>> =
            ids.map(|ids| ids.into_iter().collect());
        let mut blobs: Vec<(String, adapters::git::Oid)> =
            checkout.blob_ids_at(at, &dir)?.into_iter().collect();
        blobs.sort();
        let mut out = Vec::new();
        for (path, blob) in blobs {
            let id = path
                .trim_start_matches(&dir)
                .trim_end_matches(".json")
                .to_owned();
            if wanted.as_ref().is_some_and(|w| !w.contains(&id)) {
                continue;
            }
            let value: Value = serde_json::from_slice(&checkout.blob(blob)?)
                .map_err(|e| GitError::Other(format!("`{path}` is not JSON: {e}")))?;
            out.push((id, value));
        }
        Ok(out)
    })
    .await
    .map_err(|e| GitError::Other(format!("reading the backup failed: {e}")))?
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreInput {
    pub tenant_id: Uuid,
    pub environment_id: Uuid,
    /// These workflows (ids as in the repository); all of the backup when None.
    pub workflow_ids: Option<Vec<String>>,
    /// Restore this snapshot (SNAP-007..009); the latest backup when None.
    #[serde(default)]
    pub snapshot_id: Option<Uuid>,
    #[serde(default)]
    pub triggered_by: String,
    #[serde(default)]
    pub requested_by: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoredItem {
    /// `updated`, `created` (the workflow no longer existed; it has a new id) or `unchanged`.
    pub result: String,
    pub id: Option<String>,
    pub error: Option<String>,
    /// How the workflow was restored other than exactly as backed up: a Make scenario backed
    /// up from another team, written without that team's connections, webhooks and keys, and
    /// each module left without a connection.
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreOutput {
    pub updated: usize,
    pub created: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub workflows: std::collections::BTreeMap<String, RestoredItem>,
}

/// `environment.restore` (WF-017): workflows written back to the environment from its Git
/// backup, a checkpointed step per workflow (so a resumed restore does not write twice); a
/// workflow whose content already matches is left alone. A Make scenario is written as stored
/// only into the team it was backed up from ([`make_restore`]).
#[derive(Debug, Clone)]
pub struct Restore {
    pub deps: Deps,
}

pub fn new_restore_run(input: &RestoreInput) -> NewRun {
    NewRun::of::<Restore>(input.tenant_id.to_string(), input)
        .concurrency(format!("environment:{}:mutate", input.environment_id), 1)
        .labels(json!({"environment_id": input.environment_id}))
}

impl Job for Restore {
    const KIND: &'static str = "environment.restore";
    type Input = RestoreInput;
    type Output = RestoreOutput;

    async fn run(&self, ctx: &mut RunCtx, input: RestoreInput) -> Result<RestoreOutput, JobError> {
        crate::snapshot::require_plan(
            ctx,
            input.tenant_id,
            input.environment_id,
            &[domain::entitlements::Feature::GitBackup],
            "Git backup and restore",
        )
        .await?;
        let db = ctx.db().clone();
        let run_id = ctx.run_id;
        ctx.step("record", || async {
            domain::snapshots::record_restore(
                &db,
                input.tenant_id,
                run_id,
                input.environment_id,
                input.snapshot_id,
                input.workflow_ids.as_deref(),
                input.requested_by,
            )
            .await
            .map_err(domain_error)
        })
        .await?;
        let access = {
            let mut conn = db.acquire().await?;
            git_config::access(
                &mut conn,
                &self.deps.keyring,
                input.tenant_id,
                input.environment_id,
            )
            .await
            .map_err(domain_error)?
        };
        // The snapshot's commit and folder, or the latest backup.
        let (at, folder): (Option<adapters::git::Oid>, String) = match input.snapshot_id {
            Some(id) => {
                let snapshot = domain::snapshots::get(&db, input.tenant_id, id)
                    .await
                    .map_err(domain_error)?;
                if snapshot.environment_id != input.environment_id {
                    return Err(JobError::permanent(
                        "the snapshot is of another environment",
                    ));
                }
                let oid = adapters::git::Oid::from_str(&snapshot.git_commit)
                    .map_err(|e| JobError::permanent(format!("bad snapshot commit: {e}")))?;
                (Some(oid), snapshot.git_path)
            }
            None => (None, access.path.clone()),
        };
        // The present state first, so the restore itself can be rolled back (SNAP-011).
        crate::snapshot::take(
            &self.deps,
            ctx,
            &crate::snapshot::SnapshotInput {
                tenant_id: input.tenant_id,
                environment_id: input.environment_id,
                kind: domain::snapshots::SnapshotKind::PreRestore,
                reason: Some(format!("before restore run {run_id}")),
                triggered_by: if input.triggered_by.is_empty() {
                    "restore".to_owned()
                } else {
                    input.triggered_by.clone()
                },
                created_by: input.requested_by,
                promotion_id: None,
            },
            "pre-restore",
        )
        .await?;
        let at = at.map(|c| c.to_string());
        let files = read_files(&self.deps, &access, input.environment_id, at, &folder, None)
            .await
            .map_err(git_error)?;
        let wanted: Option<std::collections::HashSet<&String>> =
            input.workflow_ids.as_ref().map(|ids| ids.iter().collect());
        let provider = self
            .deps
            .provider(&db, input.tenant_id, input.environment_id)
            .await?;
        // The team a Make environment is now (its URL may have moved to another since the
        // backup).
        let env = environments::get(&db, input.tenant_id, input.environment_id)
            .await
            .map_err(domain_error)?;
        let team = if env.provider == "make" {
            let target = adapters::make::parse_base_url(&env.base_url)
                .map_err(|e| JobError::permanent(e.to_string()))?;
            Some(target.team_id)
        } else {
            None
        };
        let mut out = RestoreOutput {
            updated: 0,
            created: 0,
            unchanged: 0,
            failed: 0,
            workflows: std::collections::BTreeMap::new(),
        };
        let chosen: Vec<&(String, Value)> = files
            .iter()
            .filter(|(id, _)| wanted.as_ref().is_none_or(|w| w.contains(id)))
            .collect();
        let total = i64::try_from(chosen.len()).unwrap_or(i64::MAX);
        let retrying = ctx.attempt > 1;
        for (i, (id, stored)) in chosen.into_iter().enumerate() {
            let item = ctx
                .step(&format!("workflow:{id}"), || async {
                    let current = match provider.get_workflow(id).await {
                        Ok(wf) => Some(wf),
                        Err(adapters::ProviderError::NotFound(_)) => None,
                        Err(e) if e.is_transient() => {
                            return Err(crate::providers::provider_error(e));
                        }
                        Err(e) => {
                            return Ok(RestoredItem {
                                result: "failed".into(),
                                id: None,
                                error: Some(e.to_string()),
                                warnings: Vec::new(),
                            });
                        }
                    };
                    let (body, warnings) = match team {
                        Some(team) if make::is_scenario(stored) => {
                            let plan = make_restore(stored, current.as_ref(), team);
                            (plan.body, plan.warnings)
                        }
                        _ => (stored.clone(), Vec::new()),
                    };
                    let written = match &current {
                        Some(wf) if is_stored(wf, &body) => {
                            return Ok(RestoredItem {
                                result: "unchanged".into(),
                                id: Some(id.clone()),
                                error: None,
                                warnings,
                            });
                        }
                        Some(_) => provider
                            .update_workflow(id, &body)
                            .await
                            .map(|w| ("updated", w)),
                        // A create whose answer an earlier attempt lost may have happened: the
                        // copy it made (same name, same stored content) is adopted, not made twice.
                        None => match adoptable(provider.as_ref(), &body, retrying).await {
                            Err(e) => Err(e),
                            Ok(Some(wf)) => Ok(("created", wf)),
                            Ok(None) => match provider.create_workflow(&body).await {
                                Ok(w) => Ok(("created", w)),
                                Err(e)
                                    if e.is_transient()
                                        || matches!(
                                            e,
                                            adapters::ProviderError::InvalidResponse(_)
                                        ) =>
                                {
                                    return Err(JobError::transient(format!(
                                        "recreating workflow {id}: {e}; whether it was created is checked on the next attempt"
                                    )));
                                }
                                Err(e) => Err(e),
                            },
                        },
                    };
                    match written {
                        Ok((result, wf)) => {
                            let mut tx = db.begin().await?;
                            domain::catalog::upsert_workflows(
                                &mut tx,
                                input.tenant_id,
                                input.environment_id,
                                Uuid::nil(),
                                std::slice::from_ref(&wf),
                            )
                            .await
                            .map_err(domain_error)?;
                            tx.commit().await?;
                            Ok(RestoredItem {
                                result: result.into(),
                                id: wf.get("id").and_then(Value::as_str).map(str::to_owned),
                                error: None,
                                warnings,
                            })
                        }
                        Err(e) if e.is_transient() => Err(crate::providers::provider_error(e)),
                        Err(e) => Ok(RestoredItem {
                            result: "failed".into(),
                            id: None,
                            error: Some(e.to_string()),
                            warnings: Vec::new(),
                        }),
                    }
                })
                .await?;
            if !item.warnings.is_empty() {
                ctx.log(
                    "warn",
                    format!("workflow {id}: {}", item.warnings.join("; ")),
                )
                .await?;
            }
            match item.result.as_str() {
                "updated" => out.updated += 1,
                "created" => out.created += 1,
                "unchanged" => out.unchanged += 1,
                _ => out.failed += 1,
            }
            out.workflows.insert(id.clone(), item);
            ctx.progress(i64::try_from(i).unwrap_or(0) + 1, total)
                .await?;
        }
        ctx.log(
            "info",
            format!(
                "restore: {} updated, {} created, {} unchanged, {} failed",
                out.updated, out.created, out.unchanged, out.failed
            ),
        )
        .await?;
        Ok(out)
    }
}

/// A connection, webhook or key id of a backed-up Make scenario's module that a restore into
/// another team does not write as backed up (it names the old team's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StrippedReference {
    /// The module, as reports name it (`google-sheets:addRow [2]`).
    pub module: String,
    /// `connection`, `webhook` or `key`.
    pub kind: String,
    /// The module's parameter that holds it (`__IMTCONN__`, `hook`, …).
    pub parameter: String,
    /// The id in the backup (the old team's).
    pub backed_up: String,
    /// What is written instead: the id the scenario of this id already has in this team, else
    /// none (to be chosen in Make).
    pub written: Option<String>,
}

/// How a backed-up Make scenario is restored into a team ([`make_restore`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MakeRestore {
    /// What is written.
    pub body: Value,
    /// The restore result's warnings; empty when the scenario is written as backed up.
    pub warnings: Vec<String>,
    /// Every team reference not written as backed up, in module order.
    pub stripped: Vec<StrippedReference>,
}

/// What restoring `stored`, a backed-up Make scenario, writes into `team` over `current` (the
/// scenario of its id in that team, if there is one): the body, the warnings of the item's
/// result and the old team's references left out (what a restore preview shows).
///
/// A scenario backed up from this team is written as stored, ids and all: the restore is exact.
/// One backed up from another team (the environment's URL was changed since) carries that
/// team's connection, webhook and key ids, meaningless here or, worse, naming another team's:
/// it is written with this team's own where `current`'s module of the same id and kind has them
/// and without them otherwise, to be chosen in Make, and the result says so and names every
/// module left without a connection. A backup from before files recorded their team is this
/// team's when the team has the scenario (Make never moves one to another team); otherwise it
/// cannot be told, and is treated as another team's.
pub fn make_restore(stored: &Value, current: Option<&Value>, team: u64) -> MakeRestore {
    let exact = || MakeRestore {
        body: stored.clone(),
        warnings: Vec::new(),
        stripped: Vec::new(),
    };
    let why = match make::team_id(stored) {
        Some(from) if from == team => return exact(),
        Some(from) => {
            format!("backed up from Make team {from}, not this environment's team {team}")
        }
        None if current.is_some() => return exact(),
        None => format!(
            "the backup does not say which Make team it was taken from and team {team} has no scenario of its id"
        ),
    };
    let mut body = stored.clone();
    let team_copy = TargetTeam {
        source_connections: None,
        target_copy: current,
    };
    let remapped = remap::remap_credentials_for_target(
        &mut body,
        &std::collections::HashMap::new(),
        &team_copy,
    );
    let mut body = match current {
        Some(current) => make::with_team_references_of(&body, current),
        None => make::without_team_references(&body),
    };
    if let Some(o) = body.as_object_mut() {
        o.insert("teamId".to_owned(), team.into());
    }
    let kept = if current.is_some() {
        " (the scenario's own in this team kept)"
    } else {
        ""
    };
    let mut warnings = vec![format!(
        "{why}: written without that team's connections, webhooks and keys{kept}; choose them in Make"
    )];
    warnings.extend(
        remapped
            .without_connection
            .iter()
            .map(|c| format!("module `{}` was left without a connection", c.node)),
    );
    let stripped = stripped_references(stored, &body);
    MakeRestore {
        body,
        warnings,
        stripped,
    }
}

/// The module parameters of `stored` that `written` (the same scenario with another team's
/// references) does not carry as they were. A restore changes nothing else in a module's
/// parameters, so each is a team reference: a connection, a webhook or a key.
fn stripped_references(stored: &Value, written: &Value) -> Vec<StrippedReference> {
    let written_params: std::collections::HashMap<
        (String, String),
        &serde_json::Map<String, Value>,
    > = make::modules(written)
        .into_iter()
        .filter_map(|m| Some((make::module_key(m), m.get("parameters")?.as_object()?)))
        .collect();
    let id_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = Vec::new();
    for module in make::modules(stored) {
        let Some(params) = module.get("parameters").and_then(Value::as_object) else {
            continue;
        };
        let now = written_params.get(&make::module_key(module));
        for (parameter, backed_up) in params {
            let written = now.and_then(|p| p.get(parameter));
            if written == Some(backed_up) || backed_up.is_null() {
                continue;
            }
            let kind = match parameter.as_str() {
                make::CONNECTION_PARAM => "connection",
                "hook" | "__IMTHOOK__" => "webhook",
                _ => "key",
            };
            out.push(StrippedReference {
                module: make::module_label(module),
                kind: kind.to_owned(),
                parameter: parameter.clone(),
                backed_up: id_text(backed_up),
                written: written.filter(|w| !w.is_null()).map(id_text),
            });
        }
    }
    out
}

/// What a restore of `stored` (a workflow file of the backup) does to the environment whose
/// workflow of that id is `current` (as last synced): `create`, `update` or `unchanged`, and
/// for a Make scenario what is not written as backed up. `team` is a Make environment's team.
/// A synced copy of another team (the environment's URL moved since its last sync) is not
/// there any more: Make never moves a scenario between teams.
pub fn restore_preview(
    stored: &Value,
    current: Option<&Value>,
    team: Option<u64>,
) -> (&'static str, Option<MakeRestore>) {
    let current = current
        .filter(|c| team.is_none_or(|team| make::team_id(c).is_none_or(|their| their == team)));
    let plan = match team {
        Some(team) if make::is_scenario(stored) => Some(make_restore(stored, current, team)),
        _ => None,
    };
    let body = plan.as_ref().map_or(stored, |p| &p.body);
    let action = match current {
        None => "create",
        Some(c) if is_stored(c, body) => "unchanged",
        Some(_) => "update",
    };
    (action, plan.filter(|p| !p.warnings.is_empty()))
}

/// Whether `current` (as the provider returns it) already is `stored`. A Make scenario backed
/// up before files recorded their team has no `teamId`; its team is then not compared.
fn is_stored(current: &Value, stored: &Value) -> bool {
    let mut form = workflow::storage_form(current);
    if make::is_scenario(stored)
        && stored.get("teamId").is_none()
        && let Some(o) = form.as_object_mut()
    {
        o.remove("teamId");
    }
    form == *stored
}

/// On a retried restore, a workflow of the environment with `stored`'s name and the same stored
/// content: the copy an earlier attempt created before its answer was lost. Listing costs a walk
/// of the environment, so a first attempt does not look.
async fn adoptable(
    provider: &dyn adapters::Provider,
    stored: &Value,
    retrying: bool,
) -> Result<Option<Value>, adapters::ProviderError> {
    if !retrying {
        return Ok(None);
    }
    let name = stored.get("name").and_then(Value::as_str).unwrap_or("");
    let mut cursor: Option<String> = None;
    loop {
        let page = provider.list_workflows(cursor.as_deref()).await?;
        if let Some(found) = page
            .items
            .into_iter()
            .find(|w| w.get("name").and_then(Value::as_str) == Some(name) && is_stored(w, stored))
        {
            return Ok(Some(found));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A backed-up scenario of team 41: a webhook, and a Sheets row through connection 5501.
    fn stored(team: Option<u64>) -> Value {
        let mut s = json!({
            "name": "Orders", "scheduling": {"type": "immediately"},
            "blueprint": {"name": "Orders", "flow": [
                {"id": 1, "module": "gateway:CustomWebHook", "parameters": {"hook": 10, "maxResults": 1}},
                {"id": 2, "module": "google-sheets:addRow", "parameters": {"__IMTCONN__": 5501, "mode": "select"},
                 "metadata": {"designer": {"x": 300, "y": 0}}}
            ]}
        });
        if let Some(team) = team {
            s["teamId"] = json!(team);
        }
        s
    }

    #[test]
    fn a_scenario_backed_up_from_this_team_is_restored_exactly() {
        let plan = make_restore(&stored(Some(41)), None, 41);
        assert_eq!(plan.body, stored(Some(41)));
        assert!(plan.warnings.is_empty());
        assert!(plan.stripped.is_empty());
    }

    #[test]
    fn a_scenario_from_another_team_is_restored_without_that_teams_ids() {
        let MakeRestore {
            body,
            warnings,
            stripped,
        } = make_restore(&stored(Some(41)), None, 42);
        assert_eq!(body["teamId"], 42);
        let flow = &body["blueprint"]["flow"];
        assert_eq!(flow[0]["parameters"], json!({"maxResults": 1}));
        assert_eq!(flow[1]["parameters"], json!({"mode": "select"}));
        assert_eq!(
            warnings,
            vec![
                "backed up from Make team 41, not this environment's team 42: written without that team's connections, webhooks and keys; choose them in Make".to_owned(),
                "module `google-sheets:addRow [2]` was left without a connection".to_owned(),
            ]
        );
        assert_eq!(
            stripped,
            vec![
                StrippedReference {
                    module: "gateway:CustomWebHook [1]".into(),
                    kind: "webhook".into(),
                    parameter: "hook".into(),
                    backed_up: "10".into(),
                    written: None,
                },
                StrippedReference {
                    module: "google-sheets:addRow [2]".into(),
                    kind: "connection".into(),
                    parameter: "__IMTCONN__".into(),
                    backed_up: "5501".into(),
                    written: None,
                },
            ]
        );
        // Over the scenario this team has: its own connection and webhook are kept.
        let mut current = stored(Some(42));
        current["id"] = json!("77");
        current["blueprint"]["flow"][0]["parameters"]["hook"] = json!(99);
        current["blueprint"]["flow"][1]["parameters"]["__IMTCONN__"] = json!(6601);
        let MakeRestore {
            body,
            warnings,
            stripped,
        } = make_restore(&stored(Some(41)), Some(&current), 42);
        assert_eq!(body["blueprint"]["flow"][0]["parameters"]["hook"], 99);
        assert_eq!(
            stripped
                .iter()
                .map(|r| (r.kind.as_str(), r.written.as_deref()))
                .collect::<Vec<_>>(),
            [("webhook", Some("99")), ("connection", Some("6601"))]
        );
        assert_eq!(
            body["blueprint"]["flow"][1]["parameters"]["__IMTCONN__"],
            6601
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(is_stored(&current, &body), "nothing left to write");
    }

    #[test]
    fn a_backup_that_does_not_name_its_team_is_trusted_only_for_a_scenario_the_team_has() {
        let legacy = stored(None);
        let mut current = stored(Some(42));
        current["id"] = json!("77");
        let plan = make_restore(&legacy, Some(&current), 42);
        assert_eq!(
            plan.body, legacy,
            "Make never moves a scenario to another team"
        );
        assert!(plan.warnings.is_empty());
        assert!(is_stored(&current, &legacy), "the team is not compared");
        assert!(!is_stored(&current, &stored(Some(41))));
        let MakeRestore { body, warnings, .. } = make_restore(&legacy, None, 42);
        assert!(
            body["blueprint"]["flow"][1]["parameters"]
                .get("__IMTCONN__")
                .is_none()
        );
        assert!(
            warnings[0].starts_with("the backup does not say which Make team"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_restore_preview_ignores_a_synced_copy_of_another_team() {
        // The catalog still holds team 41's scenario after the environment moved to team 42.
        let mut synced = stored(Some(41));
        synced["id"] = json!("77");
        let (action, plan) = restore_preview(&stored(Some(41)), Some(&synced), Some(42));
        assert_eq!(action, "create");
        let plan = plan.unwrap_or_else(|| panic!("a plan"));
        assert_eq!(plan.stripped.len(), 2, "{:?}", plan.stripped);
        assert!(plan.stripped.iter().all(|r| r.written.is_none()));
        // In the team it came from, nothing is stripped (and the copy already is the backup).
        let (action, plan) = restore_preview(&stored(Some(41)), Some(&synced), Some(41));
        assert_eq!((action, plan), ("unchanged", None));
        synced["name"] = json!("Orders (renamed)");
        assert_eq!(
            restore_preview(&stored(Some(41)), Some(&synced), Some(41)),
            ("update", None)
        );
        // An n8n workflow is never planned.
        let n8n = json!({"id": "1", "name": "Flow", "nodes": [], "connections": {}});
        assert_eq!(restore_preview(&n8n, None, None), ("create", None));
    }
}
