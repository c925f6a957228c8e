//! Route handlers, one module per area. Each handler names the permission it needs through its
//! extractor (see [`crate::auth`]) and is annotated for the OpenAPI document.

use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::TenantAccess;

pub mod api_keys;
pub mod audit_logs;
pub mod auth;
pub mod billing;
pub mod canonical;
pub mod catalog;
pub mod console;
pub mod drift;
pub mod environments;
pub mod git;
pub mod health;
pub mod impersonation;
pub mod notifications;
pub mod observability;
pub mod plans;
pub mod platform;
pub mod promotions;
pub mod runs;
pub mod snapshots;
pub mod support;
pub mod team;
pub mod workflows;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::switch_tenant))
        .routes(routes!(auth::me))
        .routes(routes!(auth::my_tenants))
        .routes(routes!(auth::accept_invitation))
        .routes(routes!(team::list_members))
        .routes(routes!(
            team::get_member,
            team::update_member,
            team::remove_member
        ))
        .routes(routes!(team::create_invitation, team::list_invitations))
        .routes(routes!(team::revoke_invitation))
        .routes(routes!(api_keys::create_api_key, api_keys::list_api_keys))
        .routes(routes!(api_keys::get_api_key, api_keys::revoke_api_key))
        .routes(routes!(api_keys::rotate_api_key))
        .routes(routes!(audit_logs::list_audit_logs))
        .routes(routes!(platform::list_tenants, platform::create_tenant))
        .routes(routes!(platform::get_tenant, platform::update_tenant))
        .routes(routes!(
            platform::list_platform_admins,
            platform::add_platform_admin
        ))
        .routes(routes!(platform::remove_platform_admin))
        .routes(routes!(platform::list_workers))
        .routes(routes!(platform::list_runs))
        .routes(routes!(platform::list_environments))
        .routes(routes!(impersonation::tenant_users))
        .routes(routes!(console::overview))
        .routes(routes!(console::tenant_usage))
        .routes(routes!(console::top_tenants))
        .routes(routes!(console::at_limit))
        .routes(routes!(console::list_notes, console::add_note))
        .routes(routes!(console::delete_note))
        .routes(routes!(console::platform_audit_logs))
        .routes(routes!(console::get_retention, console::put_retention))
        .routes(routes!(billing::overview))
        .routes(routes!(billing::checkout))
        .routes(routes!(billing::portal))
        .routes(routes!(billing::change))
        .routes(routes!(billing::cancel))
        .routes(routes!(billing::resume))
        .routes(routes!(billing::upcoming_invoice))
        .routes(routes!(billing::list_invoices))
        .routes(routes!(billing::webhook))
        .routes(routes!(billing::platform_summary))
        .routes(routes!(plans::list_providers))
        .routes(routes!(plans::list_plans))
        .routes(routes!(plans::my_entitlements))
        .routes(routes!(plans::my_subscriptions))
        .routes(routes!(plans::update_provider))
        .routes(routes!(plans::feature_matrix, plans::create_plan))
        .routes(routes!(plans::update_plan))
        .routes(routes!(plans::tenant_entitlements))
        .routes(routes!(plans::assign_plan))
        .routes(routes!(plans::put_override))
        .routes(routes!(plans::delete_override))
        .routes(routes!(plans::all_subscriptions))
        .routes(routes!(plans::denials))
        .routes(routes!(
            plans::list_platform_types,
            plans::create_platform_type
        ))
        .routes(routes!(plans::delete_platform_type))
        .routes(routes!(support::list_tickets, support::create_ticket))
        .routes(routes!(support::get_ticket))
        .routes(routes!(support::reply))
        .routes(routes!(support::close_ticket))
        .routes(routes!(support::upload))
        .routes(routes!(support::download))
        .routes(routes!(support::console_tickets))
        .routes(routes!(support::console_ticket, support::console_update))
        .routes(routes!(support::console_reply))
        .routes(routes!(support::console_download))
        .routes(routes!(
            impersonation::list_impersonations,
            impersonation::start_impersonation
        ))
        .routes(routes!(impersonation::get_impersonation))
        .routes(routes!(impersonation::end_impersonation))
        .routes(routes!(notifications::event_catalog))
        .routes(routes!(
            notifications::list_channels,
            notifications::create_channel
        ))
        .routes(routes!(
            notifications::get_channel,
            notifications::update_channel,
            notifications::delete_channel
        ))
        .routes(routes!(notifications::test_channel))
        .routes(routes!(
            notifications::list_rules,
            notifications::create_rule
        ))
        .routes(routes!(
            notifications::get_rule,
            notifications::update_rule,
            notifications::delete_rule
        ))
        .routes(routes!(notifications::list_alerts))
        .routes(routes!(notifications::get_alert))
        .routes(routes!(runs::list_runs))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(runs::retry_run))
        .routes(routes!(runs::signal_run))
        .routes(routes!(runs::run_events))
        .routes(routes!(runs::tenant_events))
        .routes(routes!(
            environments::list_environments,
            environments::create_environment
        ))
        .routes(routes!(environments::test_connection))
        .routes(routes!(environments::bulk_sync))
        .routes(routes!(
            environments::get_environment,
            environments::update_environment,
            environments::delete_environment
        ))
        .routes(routes!(environments::sync_environment))
        .routes(routes!(git::get_git, git::put_git))
        .routes(routes!(git::backup_environment))
        .routes(routes!(git::bulk_backup))
        .routes(routes!(git::restore_environment))
        .routes(routes!(snapshots::git_status))
        .routes(routes!(
            snapshots::list_snapshots,
            snapshots::create_snapshot
        ))
        .routes(routes!(snapshots::compare_snapshots))
        .routes(routes!(snapshots::get_snapshot))
        .routes(routes!(snapshots::preview_restore))
        .routes(routes!(snapshots::restore_snapshot))
        .routes(routes!(snapshots::list_restores))
        .routes(routes!(snapshots::bulk_restore))
        .routes(routes!(
            canonical::get_repository,
            canonical::put_repository
        ))
        .routes(routes!(canonical::sync_canonical))
        .routes(routes!(canonical::scan))
        .routes(routes!(canonical::matrix))
        .routes(routes!(canonical::untracked))
        .routes(routes!(canonical::get_canonical))
        .routes(routes!(canonical::diff_canonical))
        .routes(routes!(canonical::link, canonical::unlink))
        .routes(routes!(canonical::onboard))
        .routes(routes!(canonical::preflight))
        .routes(routes!(canonical::inventory))
        .routes(routes!(canonical::completion))
        .routes(routes!(canonical::github_webhook))
        .routes(routes!(
            promotions::list_pipelines,
            promotions::create_pipeline
        ))
        .routes(routes!(
            promotions::get_pipeline,
            promotions::update_pipeline,
            promotions::delete_pipeline
        ))
        .routes(routes!(
            promotions::get_mappings,
            promotions::put_mapping,
            promotions::delete_mapping
        ))
        .routes(routes!(promotions::preview_promotion))
        .routes(routes!(
            promotions::list_promotions,
            promotions::create_promotion
        ))
        .routes(routes!(
            promotions::get_promotion,
            promotions::delete_promotion
        ))
        .routes(routes!(promotions::approve_promotion))
        .routes(routes!(promotions::reject_promotion))
        .routes(routes!(promotions::cancel_promotion))
        .routes(routes!(observability::overview))
        .routes(routes!(observability::execution_analytics))
        .routes(routes!(drift::get_policy, drift::put_policy))
        .routes(routes!(drift::check_now))
        .routes(routes!(drift::list_checks))
        .routes(routes!(drift::list_incidents))
        .routes(routes!(drift::get_incident, drift::patch_incident))
        .routes(routes!(drift::transition))
        .routes(routes!(drift::extend))
        .routes(routes!(drift::reconcile))
        .routes(routes!(drift::approve))
        .routes(routes!(drift::reject))
        .routes(routes!(environments::check_health))
        .routes(routes!(environments::health_history))
        .routes(routes!(environments::list_types, environments::create_type))
        .routes(routes!(environments::delete_type))
        .routes(routes!(catalog::list_workflows))
        .routes(routes!(
            catalog::get_workflow,
            workflows::hard_delete_workflow
        ))
        .routes(routes!(workflows::workflow_action))
        .routes(routes!(workflows::bulk_action))
        .routes(routes!(workflows::set_workflow_tags))
        .routes(routes!(workflows::upload_workflows))
        .routes(routes!(workflows::upload_workflows_zip))
        .routes(routes!(workflows::export_workflows))
        .routes(routes!(workflows::list_action_requests))
        .routes(routes!(workflows::approve_action))
        .routes(routes!(workflows::reject_action))
        .routes(routes!(catalog::list_credentials))
        .routes(routes!(catalog::credential_matrix))
        .routes(routes!(catalog::missing_credentials))
        .routes(routes!(catalog::credential_usage))
        .routes(routes!(catalog::list_executions))
        .routes(routes!(catalog::get_execution))
}

/// `?cursor=&limit=` on every list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` from the previous page; omit for the first page.
    pub cursor: Option<String>,
    /// Page size, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

impl PageQuery {
    pub fn page(&self) -> Result<domain::page::PageRequest, domain::Error> {
        domain::page::PageRequest::parse(self.cursor.as_deref(), self.limit)
    }
}

/// A tenant as seen by one of its members.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub role: domain::Role,
}

impl From<&TenantAccess> for TenantView {
    fn from(t: &TenantAccess) -> Self {
        Self {
            id: t.id,
            slug: t.slug.clone(),
            name: t.name.clone(),
            role: t.role,
        }
    }
}
