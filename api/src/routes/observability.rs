//! Observability (OBS-001..024): the tenant's status, insights, execution KPIs with series,
//! error groups and environment health.

use axum::Json;
use axum::extract::State;
use domain::observability::{self, Overview, Range};
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiResult, Problem};
use crate::extract::ApiQuery;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OverviewQuery {
    /// 1h, 6h, 24h (default), 7d or 30d.
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
    Ok(Json(
        observability::overview(&state.db, ctx.tenant_id(), range, chrono::Utc::now()).await?,
    ))
}
