//! Platform administration (PLAT-001..004, PLAT-011): tenants across the platform, and who the
//! platform admins are. Only platform admins reach these routes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Duration;
use domain::audit::{Actor, Entry};
use domain::page::Page;
use domain::tenancy::{self, Tenant, User};
use domain::validate::Validator;
use domain::{Role, invitations};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{Invalidation, PlatformAdmin, publish};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// Search by name, slug or id.
    pub q: Option<String>,
    /// Only tenants with a subscription to this plan (a plan key: free, pro, …) for any provider.
    pub plan: Option<String>,
    /// Only tenants with a subscription in this status (active, past_due, canceled, …).
    pub status: Option<String>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Every tenant, newest first, searchable and filtered by plan and subscription status
/// (PLAT-004, PLAT-011, ADMIN-001).
#[utoipa::path(get, path = "/api/v1/platform/tenants", tag = "platform", security(("bearer" = [])), params(TenantQuery),
    responses((status = 200, body = Page<Tenant>), (status = 403, body = Problem)))]
pub async fn list_tenants(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> ApiResult<Json<Page<Tenant>>> {
    let page = domain::page::PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let query = non_empty(q.q.as_deref());
    Ok(Json(
        tenancy::list_tenants_filtered(
            &state.db,
            query,
            non_empty(q.plan.as_deref()),
            non_empty(q.status.as_deref()),
            page,
        )
        .await?,
    ))
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|s| !s.is_empty())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantDetail {
    #[serde(flatten)]
    pub tenant: Tenant,
    pub member_count: i64,
    /// One per provider (ADMIN-002, ADMIN-005).
    pub subscriptions: Vec<domain::entitlements::Subscription>,
}

/// One tenant with its member count and subscriptions (usage: `…/usage`; entitlements:
/// `…/entitlements`).
#[utoipa::path(get, path = "/api/v1/platform/tenants/{tenant_id}", tag = "platform", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "The tenant's id")),
    responses((status = 200, body = TenantDetail), (status = 404, body = Problem)))]
pub async fn get_tenant(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiPath(tenant_id): ApiPath<Uuid>,
) -> ApiResult<Json<TenantDetail>> {
    let tenant = tenancy::tenant(&state.db, tenant_id).await?;
    let member_count = sqlx::query_scalar("select count(*) from memberships where tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(&state.db)
        .await?;
    Ok(Json(TenantDetail {
        tenant,
        member_count,
        subscriptions: domain::entitlements::subscriptions(&state.db, tenant_id).await?,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Seats (members and open invitations), 1-100,000; null for no limit.
    #[serde(default, with = "crate::routes::environments::serde_with_null")]
    #[schema(value_type = Option<i32>, minimum = 1, maximum = 100000)]
    pub member_limit: Option<Option<i32>>,
    /// Environments, 1-10,000; null for the server's default (`WFO_MAX_ENVIRONMENTS`).
    #[serde(default, with = "crate::routes::environments::serde_with_null")]
    #[schema(value_type = Option<i32>, minimum = 1, maximum = 10000)]
    pub environment_limit: Option<Option<i32>>,
}

impl Validate for UpdateTenantRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if let Some(name) = &self.name {
            v.text("name", name, 1, 200);
        }
        if let Some(Some(n)) = self.member_limit
            && !(1..=100_000).contains(&n)
        {
            v.error("member_limit", "must be between 1 and 100000, or null");
        }
        if let Some(Some(n)) = self.environment_limit
            && !(1..=10_000).contains(&n)
        {
            v.error("environment_limit", "must be between 1 and 10000, or null");
        }
        v.finish()
    }
}

/// Change a tenant's settings: its name, seat limit and environment limit (ADMIN-006). Lowering
/// a limit below what the tenant uses keeps what it has and refuses new members or
/// environments. Audited in the tenant's log and the platform's.
#[utoipa::path(patch, path = "/api/v1/platform/tenants/{tenant_id}", tag = "platform", security(("bearer" = [])),
    params(("tenant_id" = Uuid, Path, description = "The tenant's id")),
    request_body = UpdateTenantRequest,
    responses((status = 200, body = Tenant), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update_tenant(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(tenant_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateTenantRequest>,
) -> ApiResult<Json<Tenant>> {
    let mut tx = state.db.begin().await?;
    let (before, after) = tenancy::update_tenant(
        &mut tx,
        tenant_id,
        &tenancy::TenantChange {
            name: req.name.map(|n| n.trim().to_owned()),
            member_limit: req.member_limit,
            environment_limit: req.environment_limit,
        },
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &admin.actor(),
        "platform.tenant_updated",
        "tenant",
    )
    .target(tenant_id)
    .old(&before)
    .new_value(&after)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// URL-safe identifier: 2-63 lowercase letters, digits, dashes.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{1,62}$")]
    pub slug: String,
    /// The tenant's first admin: added at once if the account exists, invited otherwise.
    #[schema(format = Email)]
    pub admin_email: Option<String>,
}

impl Validate for CreateTenantRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("name", &self.name, 1, 200).slug("slug", &self.slug);
        if let Some(email) = &self.admin_email {
            v.email("admin_email", email.trim());
        }
        v.finish()
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantCreated {
    pub tenant: Tenant,
    /// Set when `admin_email` named an existing user, who is now the admin.
    pub admin_user_id: Option<Uuid>,
    /// Set when `admin_email` had no account: the invitation token (shown once).
    pub admin_invitation_token: Option<String>,
}

/// What creating a tenant did about its first admin.
pub enum FirstAdmin {
    None,
    Added(Uuid),
    Invited(String),
}

/// Creates a tenant and its first admin, audited; shared by the API and the CLI.
pub async fn create_tenant_with_admin(
    tx: &mut sqlx::PgConnection,
    actor: &Actor,
    name: &str,
    slug: &str,
    admin_email: Option<&str>,
    invitation_ttl: Duration,
) -> Result<(Tenant, FirstAdmin), domain::Error> {
    let tenant = tenancy::create_tenant(&mut *tx, name, slug).await?;
    Entry::new(Some(tenant.id), actor, "tenant.created", "tenant")
        .target(tenant.id)
        .new_value(&tenant)
        .record(&mut *tx)
        .await?;
    let first = match admin_email {
        None => FirstAdmin::None,
        Some(email) => {
            match tenancy::user_by_email(&mut *tx, email).await? {
                Some(user) => {
                    tenancy::add_member(&mut *tx, tenant.id, user.id, Role::Admin).await?;
                    Entry::new(Some(tenant.id), actor, "member.added", "member")
                        .target(user.id)
                        .new_value(&serde_json::json!({"email": user.email, "role": Role::Admin}))
                        .record(&mut *tx)
                        .await?;
                    FirstAdmin::Added(user.id)
                }
                None => {
                    let (token, invitation) = invitations::create(
                        &mut *tx,
                        tenant.id,
                        email,
                        Role::Admin,
                        actor.user_id,
                        invitation_ttl,
                    )
                    .await?;
                    Entry::new(Some(tenant.id), actor, "invitation.created", "invitation")
                    .target(invitation.id)
                    .new_value(&serde_json::json!({"email": invitation.email, "role": invitation.role}))
                    .record(&mut *tx)
                    .await?;
                    FirstAdmin::Invited(token.plaintext)
                }
            }
        }
    };
    Ok((tenant, first))
}

/// Create a tenant, optionally with its first admin.
#[utoipa::path(post, path = "/api/v1/platform/tenants", tag = "platform", security(("bearer" = [])),
    request_body = CreateTenantRequest,
    responses((status = 201, body = TenantCreated), (status = 403, body = Problem),
        (status = 409, description = "Slug taken", body = Problem), (status = 422, body = Problem)))]
pub async fn create_tenant(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiJson(req): ApiJson<CreateTenantRequest>,
) -> ApiResult<(StatusCode, Json<TenantCreated>)> {
    let ttl = Duration::from_std(state.config.invitation_ttl).unwrap_or(Duration::days(7));
    let mut tx = state.db.begin().await?;
    let (tenant, first) = create_tenant_with_admin(
        &mut tx,
        &admin.actor(),
        &req.name,
        &req.slug,
        req.admin_email.as_deref(),
        ttl,
    )
    .await?;
    tx.commit().await?;
    let (admin_user_id, admin_invitation_token) = match first {
        FirstAdmin::None => (None, None),
        FirstAdmin::Added(id) => (Some(id), None),
        FirstAdmin::Invited(token) => (None, Some(token)),
    };
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            tenant,
            admin_user_id,
            admin_invitation_token,
        }),
    ))
}

/// The platform admins (PLAT-001).
#[utoipa::path(get, path = "/api/v1/platform/admins", tag = "platform", security(("bearer" = [])),
    responses((status = 200, body = Vec<User>), (status = 403, body = Problem)))]
pub async fn list_platform_admins(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(tenancy::list_platform_admins(&state.db).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPlatformAdminRequest {
    /// Email of an existing user.
    #[schema(format = Email)]
    pub email: String,
}

impl Validate for AddPlatformAdminRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        Validator::new().email("email", self.email.trim()).finish()
    }
}

/// Make an existing user a platform admin (PLAT-002).
#[utoipa::path(post, path = "/api/v1/platform/admins", tag = "platform", security(("bearer" = [])),
    request_body = AddPlatformAdminRequest,
    responses((status = 201, body = User), (status = 403, body = Problem),
        (status = 404, description = "No such user", body = Problem),
        (status = 409, description = "Already a platform admin", body = Problem)))]
pub async fn add_platform_admin(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiJson(req): ApiJson<AddPlatformAdminRequest>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let mut tx = state.db.begin().await?;
    let user = tenancy::user_by_email(&mut *tx, &req.email)
        .await?
        .ok_or_else(|| ApiError::not_found("no user with this email"))?;
    let ended =
        domain::impersonation::end_all_of(&mut tx, user.id, "the user became a platform admin")
            .await?;
    for session in &ended {
        publish(&mut *tx, Invalidation::Session(*session)).await?;
    }
    if !tenancy::add_platform_admin(&mut *tx, user.id, Some(admin.user_id)).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_platform_admin",
            "this user is already a platform admin",
        ));
    }
    Entry::new(None, &admin.actor(), "platform_admin.added", "user")
        .target(user.id)
        .new_value(&serde_json::json!({"email": user.email}))
        .record(&mut *tx)
        .await?;
    publish(&mut *tx, Invalidation::User(user.id)).await?;
    tx.commit().await?;
    state.auth_cache.evict(Invalidation::User(user.id));
    for session in ended {
        state.auth_cache.evict(Invalidation::Session(session));
    }
    Ok((StatusCode::CREATED, Json(user)))
}

/// Revoke a platform admin (PLAT-002). The last one cannot be removed.
#[utoipa::path(delete, path = "/api/v1/platform/admins/{user_id}", tag = "platform", security(("bearer" = [])),
    params(("user_id" = Uuid, Path, description = "The admin's user id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = Problem),
        (status = 409, description = "The last platform admin", body = Problem)))]
pub async fn remove_platform_admin(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    ApiPath(user_id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    // Serialise concurrent removals so two cannot both pass the last-admin check.
    sqlx::query("lock table platform_admins in share row exclusive mode")
        .execute(&mut *tx)
        .await?;
    if !tenancy::is_platform_admin(&mut *tx, user_id).await? {
        return Err(ApiError::not_found("no platform admin with this id"));
    }
    if tenancy::count_platform_admins(&mut *tx).await? <= 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "last_platform_admin",
            "the last platform admin cannot be removed",
        ));
    }
    tenancy::remove_platform_admin(&mut *tx, user_id).await?;
    Entry::new(None, &admin.actor(), "platform_admin.removed", "user")
        .target(user_id)
        .record(&mut *tx)
        .await?;
    publish(&mut *tx, Invalidation::User(user_id)).await?;
    tx.commit().await?;
    state.auth_cache.evict(Invalidation::User(user_id));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkerView {
    pub id: Uuid,
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub kinds: Option<Vec<String>>,
    pub concurrency: i32,
    pub busy_slots: i32,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub heartbeat_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueDepth {
    pub kind: String,
    pub status: String,
    pub runs: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkerPool {
    pub workers: Vec<WorkerView>,
    /// Slots across live workers.
    pub total_slots: i64,
    pub busy_slots: i64,
    /// Unfinished runs by kind and status, across tenants.
    pub queue: Vec<QueueDepth>,
}

/// The worker pool: live workers with their heartbeats and busy slots, and the queue depth.
#[utoipa::path(get, path = "/api/v1/platform/workers", tag = "platform", security(("bearer" = [])),
    responses((status = 200, body = WorkerPool), (status = 403, body = Problem)))]
pub async fn list_workers(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<WorkerPool>> {
    let workers = engine::worker::list_live(&state.db)
        .await
        .map_err(ApiError::internal)?;
    let queue: Vec<(String, String, i64)> = sqlx::query_as(
        "select kind, status, count(*) from engine_runs where status in ('queued', 'running', 'waiting') \
         group by kind, status order by kind, status",
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(WorkerPool {
        total_slots: workers.iter().map(|w| i64::from(w.concurrency)).sum(),
        busy_slots: workers.iter().map(|w| i64::from(w.busy_slots)).sum(),
        workers: workers
            .into_iter()
            .map(|w| WorkerView {
                id: w.id,
                name: w.name,
                host: w.host,
                pid: w.pid,
                version: w.version,
                kinds: w.kinds,
                concurrency: w.concurrency,
                busy_slots: w.busy_slots,
                started_at: w.started_at,
                heartbeat_at: w.heartbeat_at,
            })
            .collect(),
        queue: queue
            .into_iter()
            .map(|(kind, status, runs)| QueueDepth { kind, status, runs })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlatformRunQuery {
    /// Only this tenant's runs.
    pub tenant_id: Option<Uuid>,
    pub kind: Option<String>,
    /// One of queued, running, waiting, succeeded, failed, cancelled.
    #[param(pattern = "^(queued|running|waiting|succeeded|failed|cancelled)$")]
    pub status: Option<String>,
    /// Created at or after (RFC 3339); without `tenant_id`, defaults to 30 days ago.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Created before (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// A run seen across tenants: its state, not its tenant's data (input, output and labels stay
/// with the tenant's own runs API, which audits its reads).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlatformRun {
    pub id: Uuid,
    /// The tenant the run belongs to (null for the platform's own housekeeping runs).
    pub tenant_id: Option<Uuid>,
    /// The engine namespace (the tenant id, or the platform's own).
    pub namespace: String,
    pub kind: String,
    /// `queued`, `running`, `waiting`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub progress_done: Option<i64>,
    pub progress_total: Option<i64>,
    pub parent_id: Option<Uuid>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<engine::Run> for PlatformRun {
    fn from(r: engine::Run) -> Self {
        Self {
            id: r.id,
            tenant_id: r.namespace.parse().ok(),
            status: r.status().to_string(),
            namespace: r.namespace,
            kind: r.kind,
            error: r.error,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            progress_done: r.progress_done,
            progress_total: r.progress_total,
            parent_id: r.parent_id,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

/// Runs of every tenant, newest first (PLAT-004): what failed where, what is stuck, which tenant
/// fills the queue. Filtered like a tenant's run list, and by tenant.
#[utoipa::path(get, path = "/api/v1/platform/runs", tag = "platform", security(("bearer" = [])), params(PlatformRunQuery),
    responses((status = 200, body = Page<PlatformRun>), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn list_runs(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiQuery(q): ApiQuery<PlatformRunQuery>,
) -> ApiResult<Json<Page<PlatformRun>>> {
    let page = domain::page::PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let status = match non_empty(q.status.as_deref()) {
        Some(s) => Some(
            s.parse::<engine::RunStatus>()
                .map_err(|e| domain::Error::invalid("status", e))?,
        ),
        None => None,
    };
    // Across every tenant a filter that matches little would otherwise read all history: without
    // a tenant, the window defaults to the last 30 days.
    let since = q.since.or_else(|| {
        q.tenant_id
            .is_none()
            .then(|| chrono::Utc::now() - chrono::Duration::days(30))
    });
    let filter = engine::read::RunFilter {
        kind: non_empty(q.kind.as_deref()).map(str::to_owned),
        status,
        since,
        until: q.until,
        ..engine::read::RunFilter::default()
    };
    let namespace = q.tenant_id.map(|t| t.to_string());
    let rows = engine::read::list_in(
        &state.db,
        namespace.as_deref(),
        &filter,
        page.after,
        page.fetch_limit(),
    )
    .await
    .map_err(super::runs::queue_error)?;
    Ok(Json(
        Page::from_rows(rows, page, |r: &engine::Run| r.id).map(PlatformRun::from),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlatformEnvironmentQuery {
    /// Only this tenant's environments.
    pub tenant_id: Option<Uuid>,
    /// `n8n` or `make`.
    #[param(pattern = "^(n8n|make)$")]
    pub provider: Option<String>,
    /// One of unknown, healthy, unreachable, auth_failed, error.
    #[param(pattern = "^(unknown|healthy|unreachable|auth_failed|error)$")]
    pub health: Option<String>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Every tenant's environments, newest first (PLAT-004): which instances are unreachable or
/// refuse their keys, and when each last synced. API keys are never part of it.
#[utoipa::path(get, path = "/api/v1/platform/environments", tag = "platform", security(("bearer" = [])), params(PlatformEnvironmentQuery),
    responses((status = 200, body = Page<domain::environments::PlatformEnvironment>), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn list_environments(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    ApiQuery(q): ApiQuery<PlatformEnvironmentQuery>,
) -> ApiResult<Json<Page<domain::environments::PlatformEnvironment>>> {
    let page = domain::page::PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    let mut v = Validator::new();
    let provider = non_empty(q.provider.as_deref());
    if provider.is_some_and(|p| adapters::ProviderKind::parse(p).is_none()) {
        v.error("provider", "must be `n8n` or `make`");
    }
    let health = non_empty(q.health.as_deref()).and_then(|h| {
        let parsed = domain::environments::HealthStatus::parse(h);
        if parsed.is_none() {
            v.error(
                "health",
                format!(
                    "must be one of {}",
                    domain::environments::HealthStatus::expected()
                ),
            );
        }
        parsed
    });
    v.finish()?;
    let filter = domain::environments::AcrossFilter {
        tenant_id: q.tenant_id,
        provider,
        health,
    };
    let rows =
        domain::environments::list_across(&state.db, &filter, page.after, page.fetch_limit())
            .await?;
    Ok(Json(Page::from_rows(rows, page, |e| e.environment.id)))
}
