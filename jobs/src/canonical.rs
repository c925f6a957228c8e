//! Canonical workflows as runs: `canonical.sync_git` (CAN-003, Git → canonical, then every
//! environment reconciled) and `canonical.onboard` (CAN-009/010/018: untracked workflows
//! written to the canonical repository — committed, or on a branch with a GitHub pull request —
//! and linked).
//!
//! Canonical repository layout (under its folder): `workflows/<canonical id>.json`, the
//! workflow's storage form (pretty, keys sorted), and `index.json` listing each canonical
//! workflow's id, name, provider and file. A file a person adds in Git without an index entry is
//! an n8n workflow named by its `name`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use adapters::git::{Checkout, GitError};
use domain::canonical::{self, GitWorkflow, Onboarded};
use domain::{catalog, environments, workflow};
use engine::{Job, JobError, NewRun, RetryPolicy, RunCtx};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::backup::{git_error, remote};
use crate::providers::{Deps, domain_error};

fn folder_prefix(path: &str) -> String {
    let folder = path.trim_matches('/');
    if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    }
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    text
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        initial_backoff: std::time::Duration::from_secs(2),
        max_backoff: std::time::Duration::from_secs(60),
    }
}

/// The concurrency key of everything that writes the tenant's canonical state.
fn canonical_key(tenant_id: Uuid) -> String {
    format!("tenant:{tenant_id}:canonical")
}

// ---- Git → canonical -------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSyncInput {
    pub tenant_id: Uuid,
    pub triggered_by: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitSyncOutput {
    pub commit: Option<String>,
    pub files: usize,
    /// Files new or changed since the last sync.
    pub changed: usize,
    /// Canonical workflows whose file is gone.
    pub removed: u64,
    /// Files that could not be read as workflows, with why.
    pub invalid: BTreeMap<String, String>,
    /// Per environment: its statuses after reconciliation.
    pub environments: BTreeMap<Uuid, canonical::Reconciled>,
}

#[derive(Debug, Clone)]
pub struct GitSync {
    pub deps: Deps,
}

pub fn new_git_sync(input: &GitSyncInput) -> NewRun {
    NewRun::of::<GitSync>(input.tenant_id.to_string(), input)
        .concurrency(canonical_key(input.tenant_id), 1)
}

/// What a read of the canonical repository found.
struct Read {
    commit: Option<String>,
    files: usize,
    changed: Vec<GitWorkflow>,
    present: Vec<String>,
    invalid: BTreeMap<String, String>,
}

fn read_repository(
    checkout: &Checkout,
    folder: &str,
    known: &HashMap<String, String>,
) -> Result<Read, GitError> {
    let prefix = folder_prefix(folder);
    let dir = format!("{prefix}workflows/");
    let index: HashMap<String, (String, Option<String>)> = checkout
        .read(&format!("{prefix}index.json"))?
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|v| v.get("workflows").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let id = e.get("id")?.as_str()?.to_owned();
            let provider = e.get("provider").and_then(Value::as_str).unwrap_or("n8n");
            let name = e.get("name").and_then(Value::as_str).map(str::to_owned);
            Some((id, (provider.to_owned(), name)))
        })
        .collect();
    let mut out = Read {
        commit: checkout.head().map(|c| c.to_string()),
        files: 0,
        changed: Vec::new(),
        present: Vec::new(),
        invalid: BTreeMap::new(),
    };
    let mut blobs: Vec<(String, adapters::git::Oid)> =
        checkout.blob_ids(&dir)?.into_iter().collect();
    blobs.sort();
    for (path, blob) in blobs {
        let Some(id) = path
            .strip_prefix(&dir)
            .and_then(|p| p.strip_suffix(".json"))
            .map(str::to_owned)
        else {
            continue;
        };
        if !canonical::valid_canonical_id(&id) {
            out.invalid
                .insert(path, "the file name is not a valid canonical id".into());
            continue;
        }
        out.files += 1;
        out.present.push(id.clone());
        let oid = blob;
        let blob = oid.to_string();
        if known.get(&id) == Some(&blob) {
            continue;
        }
        let parsed = serde_json::from_slice::<Value>(&checkout.blob(oid)?);
        let definition = match parsed {
            Ok(v) if v.get("nodes").is_some_and(Value::is_array) => v,
            Ok(_) => {
                out.invalid
                    .insert(path, "not a workflow: it has no `nodes` list".into());
                continue;
            }
            Err(e) => {
                out.invalid.insert(path, format!("not JSON: {e}"));
                continue;
            }
        };
        let (provider, indexed_name) = index
            .get(&id)
            .cloned()
            .unwrap_or_else(|| ("n8n".to_owned(), None));
        let name = definition
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(indexed_name)
            .unwrap_or_else(|| id.clone());
        out.changed.push(GitWorkflow {
            id,
            provider,
            name,
            definition: workflow::storage_form(&definition),
            blob,
        });
    }
    Ok(out)
}

impl Job for GitSync {
    const KIND: &'static str = "canonical.sync_git";
    type Input = GitSyncInput;
    type Output = GitSyncOutput;

    fn retry_policy() -> RetryPolicy {
        retry()
    }

    async fn run(&self, ctx: &mut RunCtx, input: GitSyncInput) -> Result<GitSyncOutput, JobError> {
        let db = ctx.db().clone();
        let tenant = input.tenant_id;
        let deps = self.deps.clone();
        // Read and apply in one step: applying the same files again changes nothing.
        let mut out = ctx
            .step("apply", || async move {
                let access = {
                    let mut conn = db.acquire().await?;
                    canonical::repo_access(&mut conn, &deps.keyring, tenant)
                        .await
                        .map_err(domain_error)?
                };
                let known = canonical::git_blobs(&db, tenant)
                    .await
                    .map_err(domain_error)?;
                let cache: PathBuf = deps.git_cache.join(format!("canonical-{tenant}"));
                let folder = access.path.clone();
                let remote = remote(&access);
                let outbound = deps.outbound();
                let read = tokio::task::spawn_blocking(move || {
                    let checkout = Checkout::open_within(&remote, &cache, outbound)?;
                    read_repository(&checkout, &folder, &known)
                })
                .await
                .map_err(|e| JobError::transient(format!("reading the repository failed: {e}")))?
                .map_err(git_error)?;
                let mut tx = db.begin().await?;
                let commit = read.commit.clone().unwrap_or_default();
                for chunk in read.changed.chunks(500) {
                    canonical::upsert_from_git(&mut tx, tenant, &commit, chunk)
                        .await
                        .map_err(domain_error)?;
                }
                let removed = canonical::mark_removed_from_git(&mut *tx, tenant, &read.present)
                    .await
                    .map_err(domain_error)?;
                canonical::record_git_sync(&mut *tx, tenant, read.commit.as_deref())
                    .await
                    .map_err(domain_error)?;
                canonical::settle_pulls(&mut *tx, tenant)
                    .await
                    .map_err(domain_error)?;
                tx.commit().await?;
                Ok(GitSyncOutput {
                    commit: read.commit,
                    files: read.files,
                    changed: read.changed.len(),
                    removed,
                    invalid: read.invalid,
                    environments: BTreeMap::new(),
                })
            })
            .await?;
        for (path, why) in &out.invalid {
            ctx.log("warn", format!("skipped `{path}`: {why}")).await?;
        }
        out.environments = reconcile_all(ctx, tenant).await?;
        ctx.log(
            "info",
            format!(
                "canonical sync: {} files, {} new or changed, {} removed, {} invalid",
                out.files,
                out.changed,
                out.removed,
                out.invalid.len()
            ),
        )
        .await?;
        Ok(out)
    }
}

/// Every environment of the tenant reconciled with the canonical state (one step).
async fn reconcile_all(
    ctx: &mut RunCtx,
    tenant: Uuid,
) -> Result<BTreeMap<Uuid, canonical::Reconciled>, JobError> {
    let db = ctx.db().clone();
    ctx.step("reconcile", || async move {
        let mut out = BTreeMap::new();
        for env in environments::list(&db, tenant)
            .await
            .map_err(domain_error)?
        {
            let mut conn = db.acquire().await?;
            let counts = canonical::reconcile(&mut conn, tenant, env.id)
                .await
                .map_err(domain_error)?;
            out.insert(env.id, counts);
        }
        Ok(out)
    })
    .await
}

// ---- onboarding ------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OnboardItem {
    pub environment_id: Uuid,
    /// The workflow's id in the environment.
    pub workflow_id: String,
    /// The canonical id to give it (default: a slug of its name and a random suffix).
    #[serde(default)]
    pub canonical_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardInput {
    pub tenant_id: Uuid,
    pub items: Vec<OnboardItem>,
    /// Open a pull request (CAN-018) instead of committing to the canonical branch.
    #[serde(default)]
    pub pull_request: bool,
    pub triggered_by: String,
    #[serde(default)]
    pub requested_by: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlannedItem {
    pub canonical_id: String,
    pub environment_id: Uuid,
    pub workflow_id: String,
    pub name: String,
    pub provider: String,
    /// Set when the workflow is a copy of a canonical workflow that exists, or that another
    /// item of this onboarding creates: it is only linked to it (CAN-010), at its own content.
    #[serde(default)]
    pub matched_by: Option<canonical::MatchedBy>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OnboardOutput {
    pub onboarded: Vec<PlannedItem>,
    /// Items skipped, with why (already tracked, unknown workflow).
    pub skipped: BTreeMap<String, String>,
    pub commit: Option<String>,
    /// The branch of the pull request, when one was asked for.
    pub branch: Option<String>,
    pub pull_request: Option<PullRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PullRequest {
    pub number: i64,
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct Onboard {
    pub deps: Deps,
}

pub fn new_onboard(input: &OnboardInput) -> NewRun {
    NewRun::of::<Onboard>(input.tenant_id.to_string(), input)
        .concurrency(canonical_key(input.tenant_id), 1)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Plan {
    items: Vec<PlannedItem>,
    skipped: BTreeMap<String, String>,
}

/// Which of `items` are onboarded, under which canonical ids. A workflow that is a copy of a
/// canonical workflow ([`canonical::copy_of`]: not yet linked in its environment, the same
/// content, else the only one of the same name) is linked to it rather than made a second
/// one; that includes one that another item of the same onboarding creates, so dev and
/// production onboarded together, or one after the other, give one canonical workflow. Items
/// are considered dev first, then staging, then production, so a new canonical workflow takes
/// the dev copy's content; the plan keeps the order of `items`.
///
/// Onboarding runs one at a time per tenant, with Git syncs (`canonical_key`), so what this
/// reads is not changed under it before the run records its result.
async fn plan(db: &sqlx::PgPool, tenant: Uuid, items: &[OnboardItem]) -> Result<Plan, JobError> {
    let mut plan = Plan {
        items: Vec::new(),
        skipped: BTreeMap::new(),
    };
    let mut known = canonical::known(db, tenant).await.map_err(domain_error)?;
    let mut candidates = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, item) in items.iter().enumerate() {
        let key = format!("{}/{}", item.environment_id, item.workflow_id);
        let record =
            match catalog::get_workflow(db, tenant, item.environment_id, &item.workflow_id).await {
                Ok(r) => r,
                Err(domain::Error::NotFound { .. }) => {
                    plan.skipped
                        .insert(key, "no such workflow in the catalog".into());
                    continue;
                }
                Err(e) => return Err(domain_error(e)),
            };
        if record.deleted_at.is_some() {
            plan.skipped
                .insert(key, "deleted in the environment".into());
            continue;
        }
        let tracked: Option<String> = sqlx::query_scalar(
            "select canonical_id from workflow_env_map where environment_id = $1 and provider_id = $2",
        )
        .bind(item.environment_id)
        .bind(&item.workflow_id)
        .fetch_optional(db)
        .await?;
        if let Some(c) = tracked {
            plan.skipped
                .insert(key, format!("already tracked as `{c}`"));
            continue;
        }
        if !seen.insert((item.environment_id, item.workflow_id.as_str())) {
            plan.skipped.insert(key, "listed twice".into());
            continue;
        }
        let env = environments::get(db, tenant, item.environment_id)
            .await
            .map_err(domain_error)?;
        candidates.push((index, env, record, item));
    }
    let rank = |class: environments::EnvironmentClass| match class {
        environments::EnvironmentClass::Dev => 0,
        environments::EnvironmentClass::Staging => 1,
        environments::EnvironmentClass::Production => 2,
    };
    candidates.sort_by_key(|(index, env, _, _)| (rank(env.class), *index));
    let mut planned = Vec::new();
    for (index, env, record, item) in candidates {
        let copy = match &item.canonical_id {
            Some(_) => None,
            None => canonical::copy_of(
                &known,
                env.id,
                &env.provider,
                &record.name,
                &record.content_hash,
            )
            .map(|(k, by)| (k.id.clone(), by)),
        };
        let (canonical_id, matched_by) = match (copy, &item.canonical_id) {
            (Some((id, by)), _) => (id, Some(by)),
            (None, Some(chosen)) => (chosen.clone(), None),
            (None, None) => (canonical::new_canonical_id(&record.name), None),
        };
        // Linked in this environment now, a match for the other environments' copies.
        match known.iter_mut().find(|k| k.id == canonical_id) {
            Some(k) => k.linked.push(env.id),
            None => known.push(canonical::Known {
                id: canonical_id.clone(),
                provider: env.provider.clone(),
                name: record.name.clone(),
                content_hash: record.content_hash.clone(),
                linked: vec![env.id],
            }),
        }
        planned.push((
            index,
            PlannedItem {
                canonical_id,
                environment_id: item.environment_id,
                workflow_id: item.workflow_id.clone(),
                name: record.name,
                provider: env.provider,
                matched_by,
            },
        ));
    }
    planned.sort_by_key(|(index, _)| *index);
    plan.items = planned.into_iter().map(|(_, p)| p).collect();
    Ok(plan)
}

impl Job for Onboard {
    const KIND: &'static str = "canonical.onboard";
    type Input = OnboardInput;
    type Output = OnboardOutput;

    fn retry_policy() -> RetryPolicy {
        retry()
    }

    async fn run(&self, ctx: &mut RunCtx, input: OnboardInput) -> Result<OnboardOutput, JobError> {
        let db = ctx.db().clone();
        let tenant = input.tenant_id;
        // 1. Which workflows, under which canonical ids (checkpointed: ids stay on a retry).
        let plan: Plan = ctx
            .step("plan", || async { plan(&db, tenant, &input.items).await })
            .await?;
        let mut out = OnboardOutput {
            skipped: plan.skipped.clone(),
            ..OnboardOutput::default()
        };
        if plan.items.is_empty() {
            ctx.log("info", "nothing to onboard").await?;
            return Ok(out);
        }
        // 2. The new canonical workflows' files, committed (or pushed to the onboarding
        // branch); copies of canonical workflows are only linked.
        let (mut onboarded, mut links) = (Vec::new(), Vec::new());
        for item in &plan.items {
            let record = catalog::get_workflow(&db, tenant, item.environment_id, &item.workflow_id)
                .await
                .map_err(domain_error)?;
            let o = Onboarded {
                canonical_id: item.canonical_id.clone(),
                environment_id: item.environment_id,
                provider_id: item.workflow_id.clone(),
                provider: item.provider.clone(),
                name: item.name.clone(),
                definition: workflow::storage_form(&record.definition),
            };
            if item.matched_by.is_some() {
                links.push(o);
            } else {
                onboarded.push(o);
            }
        }
        if onboarded.is_empty() {
            let db2 = db.clone();
            let by = input.requested_by;
            ctx.step("record", || async move {
                let mut tx = db2.begin().await?;
                canonical::record_onboarded_links(&mut tx, tenant, by, &links)
                    .await
                    .map_err(domain_error)?;
                tx.commit().await?;
                Ok(())
            })
            .await?;
            out.onboarded = plan.items;
            ctx.log(
                "info",
                format!(
                    "linked {} workflow(s) to existing canonical workflows, skipped {}",
                    out.onboarded.len(),
                    out.skipped.len()
                ),
            )
            .await?;
            return Ok(out);
        }
        let access = {
            let mut conn = db.acquire().await?;
            canonical::repo_access(&mut conn, &self.deps.keyring, tenant)
                .await
                .map_err(domain_error)?
        };
        let branch = input.pull_request.then(|| {
            format!(
                "workflowops/onboarding-{}",
                &ctx.run_id.simple().to_string()[..12]
            )
        });
        let cache: PathBuf = self.deps.git_cache.join(format!("canonical-{tenant}"));
        let message = format!(
            "Onboard {} workflow(s) into the canonical repository\n\n{}\n\nTriggered by {}\nRun {}\n",
            onboarded.len(),
            onboarded
                .iter()
                .map(|o| format!("- {} ({})", o.canonical_id, o.name))
                .collect::<Vec<_>>()
                .join("\n"),
            input.triggered_by,
            ctx.run_id
        );
        let files: Vec<(String, Value, String, String)> = onboarded
            .iter()
            .map(|o| {
                (
                    o.canonical_id.clone(),
                    o.definition.clone(),
                    o.name.clone(),
                    o.provider.clone(),
                )
            })
            .collect();
        let folder = access.path.clone();
        let target = branch.clone();
        let git_remote = remote(&access);
        let outbound = self.deps.outbound();
        let commit: Option<String> = ctx
            .step("commit", || async move {
                tokio::task::spawn_blocking(move || {
                    let mut checkout = Checkout::open_within(&git_remote, &cache, outbound)?;
                    let prefix = folder_prefix(&folder);
                    let index_path = format!("{prefix}index.json");
                    let mut index: BTreeMap<String, Value> = checkout
                        .read(&index_path)?
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                        .and_then(|v| v.get("workflows").and_then(Value::as_array).cloned())
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|e| Some((e.get("id")?.as_str()?.to_owned(), e)))
                        .collect();
                    let mut changes = Vec::new();
                    for (id, definition, name, provider) in &files {
                        changes.push((format!("{prefix}workflows/{id}.json"), Some(pretty(definition))));
                        index.insert(
                            id.clone(),
                            json!({"id": id, "name": name, "provider": provider, "file": format!("workflows/{id}.json")}),
                        );
                    }
                    let index = json!({"workflows": index.into_values().collect::<Vec<_>>()});
                    changes.push((index_path, Some(pretty(&index))));
                    let author = ("WorkflowOps", "canonical@workflowops.invalid");
                    let commit = match &target {
                        Some(branch) => checkout.push_branch(branch, &changes, &message, author)?,
                        None => checkout.commit_and_push(&changes, &message, author)?,
                    };
                    Ok::<_, GitError>(commit.or_else(|| checkout.head()).map(|c| c.to_string()))
                })
                .await
                .map_err(|e| JobError::transient(format!("the commit task failed: {e}")))?
                .map_err(git_error)
            })
            .await?;
        // 3. The pull request (CAN-018).
        if let Some(branch) = &branch {
            let repo = canonical::get_repo(&db, tenant)
                .await
                .map_err(domain_error)?;
            let deps = self.deps.clone();
            let title = format!("Onboard {} workflow(s) into WorkflowOps", onboarded.len());
            let body = format!(
                "Opened by WorkflowOps run {} for {}.\n\n{}",
                ctx.run_id,
                input.triggered_by,
                onboarded
                    .iter()
                    .map(|o| format!("- `{}`: {}", o.canonical_id, o.name))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let pr = ctx
                .step("pull_request", || async {
                    let api = repo.github_api_url.clone().ok_or_else(|| {
                        JobError::permanent(
                            "pull requests need the repository's GitHub API URL (github_api_url)",
                        )
                    })?;
                    let token = access.secret.as_ref().map(|s| s.expose_secret().to_owned());
                    crate::github::open_pull_request(
                        &deps.http,
                        &crate::github::PullRequestSpec {
                            api_url: &api,
                            repo_url: &access.url,
                            token: token.as_deref(),
                            title: &title,
                            body: &body,
                            head: branch,
                            base: &access.branch,
                        },
                    )
                    .await
                })
                .await?;
            out.pull_request = Some(pr);
        }
        // 4. Recorded and linked.
        let ids: Vec<String> = onboarded.iter().map(|o| o.canonical_id.clone()).collect();
        let run_id = ctx.run_id;
        let committed = if branch.is_some() {
            None
        } else {
            commit.clone()
        };
        let pr = out.pull_request.clone();
        let by = input.requested_by;
        let record_branch = branch.clone();
        ctx.step("record", || async {
            let mut tx = db.begin().await?;
            canonical::record_onboarded(&mut tx, tenant, by, committed.as_deref(), &onboarded)
                .await
                .map_err(domain_error)?;
            canonical::record_onboarded_links(&mut tx, tenant, by, &links)
                .await
                .map_err(domain_error)?;
            if let Some(branch) = &record_branch {
                canonical::record_pull(
                    &mut *tx,
                    tenant,
                    run_id,
                    branch,
                    pr.as_ref().map(|p| p.number),
                    pr.as_ref().map(|p| p.url.as_str()),
                    &ids,
                )
                .await
                .map_err(domain_error)?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await?;
        out.onboarded = plan.items;
        out.commit = commit;
        out.branch = branch;
        ctx.log(
            "info",
            format!(
                "onboarded {} workflow(s), skipped {}{}",
                out.onboarded.len(),
                out.skipped.len(),
                out.pull_request
                    .as_ref()
                    .map(|p| format!("; pull request {}", p.url))
                    .unwrap_or_default()
            ),
        )
        .await?;
        Ok(out)
    }
}
