//! Observability (OBS-001..024): the tenant's status, insights, execution KPIs with series,
//! error groups and environment health.

use axum::Json;
use axum::extract::State;
use domain::entitlements::Feature;
use domain::observability::{self, ExecutionAnalytics, Overview, Range};
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiResult, Problem};
use crate::extract::ApiQuery;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// 1h, 6h, 24h (default), 7d, 30d or 90d; any other value is refused with 422
    /// (`validation_failed`).
    #[param(value_type = Option<Range>, inline)]
    pub range: Option<String>,
}

/// The overview: status (healthy / degraded / critical) with insights, KPIs of the range and the
/// previous one (executions, success rate, average and p95 duration, failing workflows, failure
/// delta) with 24-point series for sparklines, error groups, each environment's health.
#[utoipa::path(get, path = "/api/v1/observability/overview", tag = "observability", security(("bearer" = [])),
    params(OverviewQuery),
    responses((status = 200, body = Overview), (status = 422, body = Problem)))]
pub async fn overview(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiQuery(q): ApiQuery<OverviewQuery>,
) -> ApiResult<Json<Overview>> {
    let range = Range::parse(q.range.as_deref().unwrap_or("24h"))?;
    ctx.require(
        &state.db,
        Feature::ExecutionMetrics,
        None,
        "observability.overview",
    )
    .await?;
    Ok(Json(
        observability::overview(&state.db, ctx.tenant_id(), range, chrono::Utc::now()).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// 24h, 7d (default), 30d or 90d (also 1h, 6h); any other value is refused with 422
    /// (`validation_failed`).
    #[param(value_type = Option<Range>, inline)]
    pub range: Option<String>,
    pub environment_id: Option<Uuid>,
}

/// Execution analytics (EXEC-006..012): totals (count, success rate, average, p50 and p95
/// duration) and per workflow the same with its last failure, for a time window.
#[utoipa::path(get, path = "/api/v1/executions/analytics", tag = "observability", security(("bearer" = [])),
    params(AnalyticsQuery),
    responses((status = 200, body = ExecutionAnalytics), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn execution_analytics(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewExecutions>,
    ApiQuery(q): ApiQuery<AnalyticsQuery>,
) -> ApiResult<Json<ExecutionAnalytics>> {
    let range = Range::parse(q.range.as_deref().unwrap_or("7d"))?;
    let provider = match q.environment_id {
        Some(env) => Some(
            domain::environments::get(&state.db, ctx.tenant_id(), env)
                .await?
                .provider,
        ),
        None => None,
    };
    ctx.require(
        &state.db,
        Feature::ExecutionMetrics,
        provider.as_deref(),
        "executions.analytics",
    )
    .await?;
    Ok(Json(
        observability::execution_analytics(
            &state.db,
            ctx.tenant_id(),
            q.environment_id,
            range,
            chrono::Utc::now(),
        )
        .await?,
    ))
}
