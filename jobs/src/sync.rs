//! `environment.sync` (ENV-013..019, CRED-004, EXEC-005): copies an environment's workflows,
//! credentials' metadata, tags, users and executions into the catalog, one checkpointed step per
//! provider page, so a sync killed anywhere resumes at the page it was on. `environment.sync_bulk`
//! (BULK-001) syncs several environments as child runs of one parent.

use std::sync::Arc;

use adapters::{ExecutionFilter, Page, Provider, ProviderError, ProviderKind, ProviderResult};
use domain::catalog::{self, CredentialRow, ExecutionRow, ProviderUserRow, Synced};
use domain::environments;
use engine::{Job, JobError, NewRun, RetryPolicy, RunCtx};
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::providers::{Deps, domain_error, provider_error};

/// How many transactions store a page of workflows at once (see `Sync::workflows`).
const STORE_PARTS: usize = 2;

/// A transaction storing a page inside a page's step. Its commit does not wait for the WAL
/// flush: the step's checkpoint commits after it and PostgreSQL's log is sequential, so the
/// checkpoint's flush makes this page durable too. A crash before the checkpoint can lose the
/// page's rows, but then the checkpoint is lost with them and the resumed sync stores the page
/// again (the upserts are idempotent). One fsync less per page: 400 pages of executions took
/// ~1.5 ms more each with it.
async fn page_transaction(
    db: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    db.begin_with("begin; set local synchronous_commit = off")
        .await
}

/// Stores a page in `STORE_PARTS` parts, each in its own page transaction on its own
/// connection, at the same time: storing (PostgreSQL checking, indexing and compressing the
/// rows) is a sync's bottleneck, and one backend uses one core. Upserts are idempotent, so a
/// part stored before a crash is simply stored again when the page is resumed (as a whole page
/// would be). The parts' results, in order.
async fn store_in_parts<T: std::marker::Sync, R>(
    db: &sqlx::PgPool,
    items: &[T],
    store: impl for<'a> Fn(&'a mut sqlx::PgConnection, &'a [T]) -> BoxFuture<'a, Result<R, JobError>>,
) -> Result<Vec<R>, JobError> {
    let per_part = items.len().div_ceil(STORE_PARTS).max(1);
    futures::future::try_join_all(items.chunks(per_part).map(|part| {
        let store = &store;
        async move {
            let mut tx = page_transaction(db).await?;
            let result = store(&mut tx, part).await?;
            tx.commit().await?;
            Ok(result)
        }
    }))
    .await
}

/// What a sync copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = SyncScope)]
pub enum Scope {
    /// Workflows, credentials, tags, users and executions.
    Full,
    Workflows,
    Credentials,
    Tags,
    Users,
    Executions,
}

impl Scope {
    fn includes(self, part: Scope) -> bool {
        self == Scope::Full || self == part
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncInput {
    pub tenant_id: Uuid,
    pub environment_id: Uuid,
    pub scope: Scope,
    /// Executions older than this many seconds are neither fetched nor kept (EXEC-005).
    #[serde(default)]
    pub execution_retention_seconds: Option<u64>,
}

/// Counts per part, as the run's output.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SyncOutput {
    pub workflows: u64,
    pub workflows_changed: u64,
    pub workflows_deleted: u64,
    pub credentials: u64,
    pub credentials_derived: bool,
    pub tags: u64,
    pub users: u64,
    pub executions: u64,
}

impl SyncOutput {
    /// The run log's last line: what was synced, counted in words that agree with the numbers.
    fn summary(&self) -> String {
        format!(
            "sync done: {} ({} new or changed, {} deleted in the provider), {}, {}, {}, {}",
            counted(self.workflows, "workflow"),
            self.workflows_changed,
            self.workflows_deleted,
            counted(self.credentials, "credential"),
            counted(self.tags, "tag"),
            counted(self.users, "user"),
            counted(self.executions, "execution"),
        )
    }
}

/// `1 workflow`, `0 workflows`, `2 workflows`.
fn counted(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// One page's checkpoint: where the next page starts and what this one held.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PageDone {
    next: Option<String>,
    items: u64,
    changed: u64,
    /// Executions: the page reached what an earlier sync already has.
    #[serde(default)]
    caught_up: bool,
    #[serde(default)]
    high: Option<i64>,
}

/// Fetches the page at a cursor, as a task-safe future.
type Fetch<T> = Box<
    dyn Fn(Option<String>) -> BoxFuture<'static, ProviderResult<Page<T>>>
        + Send
        + std::marker::Sync,
>;

/// A `Fetch` that calls `list` on the provider.
fn fetcher<T, L>(provider: &Arc<dyn Provider>, list: L) -> Fetch<T>
where
    L: Fn(Arc<dyn Provider>, Option<String>) -> BoxFuture<'static, ProviderResult<Page<T>>>
        + Send
        + std::marker::Sync
        + 'static,
{
    let provider = Arc::clone(provider);
    Box::new(move |cursor| list(Arc::clone(&provider), cursor))
}

/// The next page, being fetched in the background; aborted if it is never used.
struct Prefetch<T> {
    cursor: Option<String>,
    task: tokio::task::JoinHandle<ProviderResult<Page<T>>>,
}

impl<T: Send + 'static> Prefetch<T> {
    fn start(fetch: &Fetch<T>, cursor: String) -> Self {
        Self {
            task: tokio::spawn(fetch(Some(cursor.clone()))),
            cursor: Some(cursor),
        }
    }

    async fn wait(mut self) -> ProviderResult<Page<T>> {
        (&mut self.task).await.unwrap_or_else(|e| {
            Err(ProviderError::Transient(format!(
                "fetching a page failed: {e}"
            )))
        })
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PageDone {
    /// A page of a complete walk: stored, nothing more to report.
    fn stored(next: Option<String>, items: usize) -> Self {
        Self {
            next,
            items: items as u64,
            changed: 0,
            caught_up: false,
            high: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sync {
    pub deps: Deps,
}

/// The run's namespace (tenant) and concurrency key: one sync per environment at a time.
pub fn new_run(input: &SyncInput) -> NewRun {
    NewRun::of::<Sync>(input.tenant_id.to_string(), input)
        .concurrency(format!("environment:{}:sync", input.environment_id), 1)
        .labels(serde_json::json!({
            "environment_id": input.environment_id,
            "scope": input.scope,
        }))
}

impl Job for Sync {
    const KIND: &'static str = "environment.sync";
    type Input = SyncInput;
    type Output = SyncOutput;

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: std::time::Duration::from_secs(1),
            max_backoff: std::time::Duration::from_secs(60),
        }
    }

    async fn run(&self, ctx: &mut RunCtx, input: SyncInput) -> Result<SyncOutput, JobError> {
        let result = self.sync(ctx, &input).await;
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
                "cancelled"
            } else {
                "failed"
            };
            environments::sync_finished(
                ctx.db(),
                input.tenant_id,
                input.environment_id,
                ctx.run_id,
                status,
                Some(&e.to_string()),
            )
            .await
            .map_err(domain_error)?;
            if status == "failed" {
                let name = environments::get(ctx.db(), input.tenant_id, input.environment_id)
                    .await
                    .map_or_else(|_| input.environment_id.to_string(), |e| e.name);
                crate::notify::raise_now(
                    ctx.db(),
                    domain::notifications::Alert {
                        tenant_id: input.tenant_id,
                        event_type: domain::notifications::EventType::SystemError,
                        environment_id: Some(input.environment_id),
                        title: format!("Sync of {name} failed"),
                        data: serde_json::json!({"run_id": ctx.run_id, "environment": name,
                            "error": e.to_string()}),
                    },
                )
                .await;
            }
        }
        result
    }
}

impl Sync {
    async fn sync(&self, ctx: &mut RunCtx, input: &SyncInput) -> Result<SyncOutput, JobError> {
        let (tenant, env, run_id) = (input.tenant_id, input.environment_id, ctx.run_id);
        let db = ctx.db().clone();
        ctx.step("start", || async {
            environments::sync_started(&db, tenant, env, run_id)
                .await
                .map_err(domain_error)
        })
        .await?;
        let provider = self.deps.provider(&db, tenant, env).await?;
        let mut out = SyncOutput::default();
        let mut parts = vec![];
        for (part, name) in [
            (Scope::Workflows, "workflows"),
            (Scope::Credentials, "credentials"),
            (Scope::Tags, "tags"),
            (Scope::Users, "users"),
            (Scope::Executions, "executions"),
        ] {
            if input.scope.includes(part) {
                parts.push((part, name));
            }
        }
        let total = i64::try_from(parts.len()).unwrap_or(1);
        for (i, (part, name)) in parts.into_iter().enumerate() {
            ctx.log("info", format!("syncing {name}")).await?;
            match part {
                Scope::Workflows => self.workflows(ctx, &provider, input, &mut out).await?,
                Scope::Credentials => self.credentials(ctx, &provider, input, &mut out).await?,
                Scope::Tags => self.tags(ctx, &provider, input, &mut out).await?,
                Scope::Users => self.users(ctx, &provider, input, &mut out).await?,
                Scope::Executions => self.executions(ctx, &provider, input, &mut out).await?,
                Scope::Full => {}
            }
            ctx.progress(i64::try_from(i).unwrap_or(0) + 1, total)
                .await?;
        }
        let workflows_synced = input.scope.includes(Scope::Workflows);
        ctx.step("finish", || async {
            let mut tx = db.begin().await?;
            environments::sync_finished(&mut *tx, tenant, env, run_id, "succeeded", None)
                .await
                .map_err(domain_error)?;
            // The environment's side of the canonical state moved (CAN-004, ENV-019).
            if workflows_synced {
                domain::canonical::reconcile(&mut tx, tenant, env)
                    .await
                    .map_err(domain_error)?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await?;
        ctx.log("info", out.summary()).await?;
        Ok(out)
    }

    /// After a complete walk: what the provider no longer has is marked deleted (one step).
    async fn mark_missing(ctx: &mut RunCtx, what: Synced, env: Uuid) -> Result<u64, JobError> {
        let (db, run_id) = (ctx.db().clone(), ctx.run_id);
        ctx.step(&format!("{}:deleted", what.name()), || async {
            catalog::mark_missing(&db, what, env, run_id)
                .await
                .map_err(domain_error)
        })
        .await
    }

    /// Walks a list a page at a time, each page a step (fetch, then `store`); returns the pages'
    /// checkpoints. While a page is being stored the next one is already being fetched, so the
    /// provider's latency and our writes overlap; a resumed walk starts without a prefetch. A
    /// crash re-runs at most the page in flight and the one before it (`step_overlapped`).
    async fn walk<T, S, SFut>(
        ctx: &mut RunCtx,
        name: &str,
        fetch: Fetch<T>,
        mut store: S,
    ) -> Result<Vec<PageDone>, JobError>
    where
        T: Send + 'static,
        S: FnMut(Page<T>) -> SFut,
        SFut: Future<Output = Result<PageDone, JobError>>,
    {
        let mut done = Vec::new();
        let mut cursor: Option<String> = None;
        let mut prefetched: Option<Prefetch<T>> = None;
        for n in 0.. {
            let ready = prefetched.take().filter(|p| p.cursor == cursor);
            let mut next_prefetch = None;
            let (fetch, store, current) = (&fetch, &mut store, cursor.clone());
            let result: PageDone = ctx
                .step_overlapped(&format!("{name}:page:{n}"), || async {
                    let page = match ready {
                        Some(p) => p.wait().await,
                        None => fetch(current).await,
                    }
                    .map_err(provider_error)?;
                    if let Some(next) = &page.next_cursor {
                        next_prefetch = Some(Prefetch::start(fetch, next.clone()));
                    }
                    store(page).await
                })
                .await?;
            prefetched = next_prefetch;
            let items: u64 = done.iter().map(|p: &PageDone| p.items).sum::<u64>() + result.items;
            if n % 4 == 3 {
                ctx.log("info", format!("{name}: {items} so far")).await?;
            }
            cursor = result.next.clone();
            let last = cursor.is_none() || result.caught_up;
            done.push(result);
            if last {
                break;
            }
        }
        Ok(done)
    }

    async fn workflows(
        &self,
        ctx: &mut RunCtx,
        provider: &Arc<dyn Provider>,
        input: &SyncInput,
        out: &mut SyncOutput,
    ) -> Result<(), JobError> {
        let (tenant, env, run_id) = (input.tenant_id, input.environment_id, ctx.run_id);
        let db = ctx.db().clone();
        let pages = Self::walk(
            ctx,
            "workflows",
            // Normalising and hashing happen with the (pre)fetch, on a blocking thread, so
            // they overlap the previous page's writes.
            fetcher(provider, |p, c| {
                async move {
                    let page = p.list_workflows_raw(c.as_deref()).await?;
                    let items = page.items.into_iter().map(|w| w.text).collect();
                    let items = tokio::task::spawn_blocking(move || catalog::summarize_page(items))
                        .await
                        .map_err(|e| {
                            ProviderError::Transient(format!("hashing a page failed: {e}"))
                        })?
                        .map_err(|e| {
                            ProviderError::InvalidResponse(format!("a workflow's JSON: {e}"))
                        })?;
                    Ok(Page {
                        items,
                        next_cursor: page.next_cursor,
                    })
                }
                .boxed()
            }),
            |page| {
                let db = db.clone();
                async move {
                    let changed: u64 = store_in_parts(&db, &page.items, |tx, part| {
                        catalog::upsert_summarized(tx, tenant, env, run_id, part)
                            .map_err(domain_error)
                            .boxed()
                    })
                    .await?
                    .into_iter()
                    .sum();
                    Ok(PageDone {
                        next: page.next_cursor,
                        items: page.items.len() as u64,
                        changed,
                        caught_up: false,
                        high: None,
                    })
                }
            },
        )
        .await?;
        out.workflows = pages.iter().map(|p| p.items).sum();
        out.workflows_changed = pages.iter().map(|p| p.changed).sum();
        if provider.kind() == ProviderKind::Make {
            // Make pages by offset: a scenario deleted during the walk shifts the next page,
            // and one scenario is skipped. What the walk did not see is read by id before it
            // is called deleted (a few at most; beyond that, deletions are real).
            let provider = Arc::clone(provider);
            let db = db.clone();
            ctx.step("workflows:confirm", || async move {
                let unseen = catalog::unseen_workflow_ids(&db, env, run_id, 50)
                    .await
                    .map_err(domain_error)?;
                let mut confirmed = 0u64;
                for id in unseen {
                    match provider.get_workflow(&id).await {
                        Ok(wf) => {
                            let mut tx = db.begin().await?;
                            catalog::upsert_workflows(
                                &mut tx,
                                tenant,
                                env,
                                run_id,
                                std::slice::from_ref(&wf),
                            )
                            .await
                            .map_err(domain_error)?;
                            tx.commit().await?;
                            confirmed += 1;
                        }
                        Err(ProviderError::NotFound(_)) => {}
                        Err(e) => return Err(provider_error(e)),
                    }
                }
                Ok(confirmed)
            })
            .await?;
        }
        out.workflows_deleted = Self::mark_missing(ctx, Synced::Workflows, env).await?;
        Ok(())
    }

    async fn credentials(
        &self,
        ctx: &mut RunCtx,
        provider: &Arc<dyn Provider>,
        input: &SyncInput,
        out: &mut SyncOutput,
    ) -> Result<(), JobError> {
        let (tenant, env, run_id) = (input.tenant_id, input.environment_id, ctx.run_id);
        let db = ctx.db().clone();
        // Older instances cannot list credentials: derive them from the workflows' references.
        let listable = ctx
            .step("credentials:listable", || async {
                match provider.list_credentials(None).await {
                    Ok(_) => Ok(true),
                    Err(ProviderError::Unsupported(_)) => Ok(false),
                    Err(e) => Err(provider_error(e)),
                }
            })
            .await?;
        if listable {
            let pages = Self::walk(
                ctx,
                "credentials",
                fetcher(provider, |p, c| {
                    async move { p.list_credentials(c.as_deref()).await }.boxed()
                }),
                |page| {
                    let db = db.clone();
                    async move {
                        let rows: Vec<CredentialRow> = page
                            .items
                            .iter()
                            .map(|c| CredentialRow {
                                id: c.id.clone(),
                                name: c.name.clone(),
                                cred_type: c.cred_type.clone(),
                                created_at: c.created_at,
                                updated_at: c.updated_at,
                            })
                            .collect();
                        catalog::upsert_credentials(&db, tenant, env, run_id, "provider", &rows)
                            .await
                            .map_err(domain_error)?;
                        Ok(PageDone::stored(page.next_cursor, rows.len()))
                    }
                },
            )
            .await?;
            out.credentials = pages.iter().map(|p| p.items).sum();
        } else {
            ctx.log(
                "info",
                "this instance cannot list credentials; deriving them from workflows' references",
            )
            .await?;
            out.credentials = ctx
                .step("credentials:derived", || async {
                    catalog::derive_credentials(&db, tenant, env, run_id)
                        .await
                        .map_err(domain_error)
                })
                .await?;
            out.credentials_derived = true;
        }
        Self::mark_missing(ctx, Synced::Credentials, env).await?;
        Ok(())
    }

    async fn tags(
        &self,
        ctx: &mut RunCtx,
        provider: &Arc<dyn Provider>,
        input: &SyncInput,
        out: &mut SyncOutput,
    ) -> Result<(), JobError> {
        let (tenant, env, run_id) = (input.tenant_id, input.environment_id, ctx.run_id);
        let db = ctx.db().clone();
        let pages = Self::walk(
            ctx,
            "tags",
            fetcher(provider, |p, c| {
                async move { p.list_tags(c.as_deref()).await }.boxed()
            }),
            |page| {
                let db = db.clone();
                async move {
                    let rows: Vec<(String, String)> = page
                        .items
                        .iter()
                        .map(|t| (t.id.clone(), t.name.clone()))
                        .collect();
                    catalog::upsert_tags(&db, tenant, env, run_id, &rows)
                        .await
                        .map_err(domain_error)?;
                    Ok(PageDone::stored(page.next_cursor, rows.len()))
                }
            },
        )
        .await?;
        out.tags = pages.iter().map(|p| p.items).sum();
        Self::mark_missing(ctx, Synced::Tags, env).await?;
        Ok(())
    }

    async fn users(
        &self,
        ctx: &mut RunCtx,
        provider: &Arc<dyn Provider>,
        input: &SyncInput,
        out: &mut SyncOutput,
    ) -> Result<(), JobError> {
        let (tenant, env, run_id) = (input.tenant_id, input.environment_id, ctx.run_id);
        let db = ctx.db().clone();
        let pages = Self::walk(
            ctx,
            "users",
            fetcher(provider, |p, c| {
                async move { p.list_users(c.as_deref()).await }.boxed()
            }),
            |page| {
                let db = db.clone();
                async move {
                    let rows: Vec<ProviderUserRow> = page
                        .items
                        .iter()
                        .map(|u| ProviderUserRow {
                            provider_id: u.id.clone(),
                            email: u.email.clone(),
                            first_name: u.first_name.clone(),
                            last_name: u.last_name.clone(),
                            role: u.role.clone(),
                            is_pending: u.is_pending,
                        })
                        .collect();
                    catalog::upsert_users(&db, tenant, env, run_id, &rows)
                        .await
                        .map_err(domain_error)?;
                    Ok(PageDone::stored(page.next_cursor, rows.len()))
                }
            },
        )
        .await?;
        out.users = pages.iter().map(|p| p.items).sum();
        Self::mark_missing(ctx, Synced::Users, env).await?;
        Ok(())
    }

    /// Newest first, stopping at the first page that reaches what an earlier sync stored.
    async fn executions(
        &self,
        ctx: &mut RunCtx,
        provider: &Arc<dyn Provider>,
        input: &SyncInput,
        out: &mut SyncOutput,
    ) -> Result<(), JobError> {
        let env = input.environment_id;
        let db = ctx.db().clone();
        // What earlier syncs stored, and the retention cutoff, fixed once for every attempt.
        let retention = input.execution_retention_seconds;
        let (known, cutoff): (Option<i64>, Option<chrono::DateTime<chrono::Utc>>) = ctx
            .step("executions:known", || async {
                let known = catalog::executions_high_water(&db, env)
                    .await
                    .map_err(domain_error)?;
                let cutoff = retention
                    .and_then(|s| chrono::Duration::try_seconds(i64::try_from(s).ok()?))
                    .map(|r| chrono::Utc::now() - r);
                Ok((known, cutoff))
            })
            .await?;
        let scope = ExecutionScope {
            tenant: input.tenant_id,
            env,
            known,
            cutoff,
        };
        let pages = if provider.kind() == ProviderKind::Make {
            // Make lists runs per scenario only: walk each synced scenario's log, newest first,
            // down to what an earlier sync stored.
            let scenarios: Vec<String> = ctx
                .step("executions:workflows", || async {
                    catalog::live_workflow_ids(&db, env)
                        .await
                        .map_err(domain_error)
                })
                .await?;
            let mut pages = Vec::new();
            for workflow_id in scenarios {
                let filter = ExecutionFilter {
                    workflow_id: Some(workflow_id.clone()),
                    include_data: true,
                    ..ExecutionFilter::default()
                };
                // A scenario deleted (or moved to another team) since the workflows were walked
                // has no log to read: the next sync marks it deleted.
                let fetch: Fetch<adapters::Execution> = fetcher(provider, move |p, c| {
                    let f = filter.clone();
                    async move {
                        match p.list_executions(c.as_deref(), &f).await {
                            Err(ProviderError::NotFound(_)) => Ok(Page {
                                items: Vec::new(),
                                next_cursor: None,
                            }),
                            other => other,
                        }
                    }
                    .boxed()
                });
                pages.extend(
                    Self::walk(ctx, &format!("executions:{workflow_id}"), fetch, |page| {
                        scope.store(db.clone(), page)
                    })
                    .await?,
                );
            }
            pages
        } else {
            let filter = ExecutionFilter {
                include_data: true,
                ..ExecutionFilter::default()
            };
            Self::walk(
                ctx,
                "executions",
                executions_fetcher(provider, filter),
                |page| scope.store(db.clone(), page),
            )
            .await?
        };
        out.executions = pages.iter().map(|p| p.items).sum();
        if let Some(high) = pages.iter().filter_map(|p| p.high).max() {
            ctx.step("executions:high_water", || async {
                catalog::set_executions_high_water(&db, env, high)
                    .await
                    .map_err(domain_error)
            })
            .await?;
        }
        Ok(())
    }
}

fn executions_fetcher(
    provider: &Arc<dyn Provider>,
    filter: ExecutionFilter,
) -> Fetch<adapters::Execution> {
    fetcher(provider, move |p, c| {
        let f = filter.clone();
        async move { p.list_executions(c.as_deref(), &f).await }.boxed()
    })
}

/// Where a sync's executions go and where an incremental walk may stop.
#[derive(Debug, Clone, Copy)]
struct ExecutionScope {
    tenant: Uuid,
    env: Uuid,
    /// The highest numeric execution id stored before this sync (n8n's ids are numbers).
    known: Option<i64>,
    /// Executions that started before this are not kept.
    cutoff: Option<chrono::DateTime<chrono::Utc>>,
}

impl ExecutionScope {
    /// Stores a page (newest first) and says whether the walk has caught up: the page reached
    /// the retention cutoff, or an execution an earlier sync stored (by numeric id where the
    /// provider's ids are numbers, else by id already in the catalog).
    async fn store(
        self,
        db: sqlx::PgPool,
        page: Page<adapters::Execution>,
    ) -> Result<PageDone, JobError> {
        let expired = |x: &adapters::Execution| {
            self.cutoff
                .is_some_and(|c| x.started_at.is_some_and(|t| t < c))
        };
        let reached_cutoff = page.items.iter().any(expired);
        let rows: Vec<ExecutionRow> = page
            .items
            .iter()
            .filter(|x| !expired(x))
            .map(|x| ExecutionRow {
                environment_id: self.env,
                provider_id: x.id.clone(),
                workflow_id: x.workflow_id.clone(),
                workflow_name: None,
                status: x.status.clone(),
                mode: x.mode.clone(),
                finished: x.finished,
                started_at: x.started_at,
                stopped_at: x.stopped_at,
                error_message: x.error_message.clone(),
            })
            .collect();
        let numeric = rows.iter().all(|r| r.provider_id.parse::<i64>().is_ok());
        // One transaction: a page of executions is small, two would cost more.
        let mut tx = page_transaction(&db).await?;
        let seen_before = if numeric {
            false
        } else {
            let ids: Vec<&str> = rows.iter().map(|r| r.provider_id.as_str()).collect();
            catalog::any_execution_stored(&mut tx, self.env, &ids)
                .await
                .map_err(domain_error)?
        };
        let high = catalog::upsert_executions(&mut tx, self.tenant, self.env, &rows)
            .await
            .map_err(domain_error)?;
        tx.commit().await?;
        let caught_up = reached_cutoff
            || seen_before
            || self.known.is_some_and(|k| {
                rows.iter()
                    .filter_map(|r| r.provider_id.parse::<i64>().ok())
                    .any(|id| id <= k)
            });
        Ok(PageDone {
            next: page.next_cursor,
            items: rows.len() as u64,
            changed: 0,
            caught_up,
            high,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkSyncInput {
    pub tenant_id: Uuid,
    pub environment_ids: Vec<Uuid>,
    pub scope: Scope,
    #[serde(default)]
    pub execution_retention_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BulkSync;

impl Job for BulkSync {
    const KIND: &'static str = "environment.sync_bulk";
    type Input = BulkSyncInput;
    type Output = crate::bulk::BulkOutcome;

    async fn run(&self, ctx: &mut RunCtx, input: BulkSyncInput) -> Result<Self::Output, JobError> {
        let children: Vec<NewRun> = input
            .environment_ids
            .iter()
            .map(|&environment_id| {
                new_run(&SyncInput {
                    tenant_id: input.tenant_id,
                    environment_id,
                    scope: input.scope,
                    execution_retention_seconds: input.execution_retention_seconds,
                })
            })
            .collect();
        crate::bulk::fan_out(ctx, "environment syncs", &input.environment_ids, children).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_includes_every_part_and_a_part_only_itself() {
        assert!(Scope::Full.includes(Scope::Executions));
        assert!(Scope::Workflows.includes(Scope::Workflows));
        assert!(!Scope::Workflows.includes(Scope::Credentials));
    }

    #[test]
    fn the_summary_counts_in_the_singular_only_for_one() {
        let out = SyncOutput {
            workflows: 1,
            workflows_changed: 1,
            workflows_deleted: 0,
            credentials: 0,
            credentials_derived: false,
            tags: 2,
            users: 1,
            executions: 1,
        };
        assert_eq!(
            out.summary(),
            "sync done: 1 workflow (1 new or changed, 0 deleted in the provider), 0 credentials, \
             2 tags, 1 user, 1 execution"
        );
    }
}
