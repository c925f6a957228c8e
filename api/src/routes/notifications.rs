//! Notifications (PRD 3.15, NOTIF-001..009): channels, rules, the event catalog, connectivity
//! tests and the alert history. Members read; admins change (`ManageNotifications`).

use adapters::net::{DestinationError, Guard};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use domain::audit::Entry;
use domain::entitlements::Feature;
use domain::notifications::{
    self as notif, Alert, AlertEvent, CatalogEntry, Channel, ChannelChange, ChannelKind, EventType,
    Rule, RuleChange,
};
use domain::page::{Page, PageRequest};
use domain::validate::Validator;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{TenantCtx, perm};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Validate};
use crate::routes::environments::serde_with_null;

const MAX_RECIPIENTS: usize = 50;
const MAX_RULE_CHANNELS: usize = 20;

/// The event types rules can select, with what each means (NOTIF-009).
#[utoipa::path(get, path = "/api/v1/notifications/catalog", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, body = Vec<CatalogEntry>)))]
pub async fn event_catalog(_ctx: TenantCtx<perm::ViewObservability>) -> Json<Vec<CatalogEntry>> {
    Json(notif::catalog())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannelRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub kind: ChannelKind,
    /// Default true (NOTIF-004).
    pub enabled: Option<bool>,
    /// Email channels: 1-50 addresses.
    #[schema(max_items = 50)]
    pub recipients: Option<Vec<String>>,
    /// Slack (an incoming-webhook URL) and webhook channels: http(s), at most 2,048 characters.
    /// Stored encrypted; never shown again (only its host).
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// Webhook channels: signs each delivery (`X-WorkflowOps-Signature`); 16-256 characters.
    #[schema(min_length = 16, max_length = 256)]
    pub signing_secret: Option<String>,
}

fn check_url(v: &mut Validator, field: &str, url: &str) {
    if url.len() > 2048 {
        v.error(field, "must be at most 2048 characters");
        return;
    }
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        Ok(_) => {
            v.error(field, "must be an http or https URL with a host");
        }
        Err(e) => {
            v.error(field, format!("is not a URL: {e}"));
        }
    }
}

/// How long a Slack or webhook URL's name may take to resolve when a channel is saved.
const RESOLVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Refuses (422 `destination_refused`, as for environments) a Slack or webhook URL that
/// delivery would refuse, when the channel is saved rather than at its first test or alert:
/// a host that is, or resolves to, an address outside public networks — or, with
/// `WFO_NOTIFY_ALLOW_PRIVATE`, outside public, private and loopback networks (link-local
/// addresses, where cloud metadata services answer, are refused whatever the setting). As at
/// delivery, one refused address refuses a name (a name that also points inside is never
/// called). A name that does not resolve now, or not within [`RESOLVE_WITHIN`], is saved:
/// it may resolve later, and every delivery checks the addresses it connects to.
async fn refuse_internal_destination(state: &AppState, url: &str) -> ApiResult<()> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        // Validation has answered already.
        return Ok(());
    };
    let guard = Guard::notifications(state.config.notify.allow_private);
    match tokio::time::timeout(RESOLVE_WITHIN, guard.check_url(&parsed)).await {
        // The refusal names the host and the address, never the path (a Slack URL's path is
        // its credential).
        Ok(Err(DestinationError::Refused(refused))) => {
            Err(ApiError::destination_refused(refused.to_string()))
        }
        Ok(Ok(()) | Err(DestinationError::Unresolved { .. } | DestinationError::NoHost))
        | Err(_) => Ok(()),
    }
}

fn check_recipients(v: &mut Validator, recipients: &[String]) {
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        v.error(
            "recipients",
            format!("must list 1 to {MAX_RECIPIENTS} addresses"),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (i, r) in recipients.iter().enumerate() {
        v.email(&format!("recipients[{i}]"), r);
        if !seen.insert(r.to_lowercase()) {
            v.error(&format!("recipients[{i}]"), "is listed twice");
        }
    }
}

fn check_signing_secret(v: &mut Validator, secret: &str) {
    if !(16..=256).contains(&secret.chars().count()) {
        v.error("signing_secret", "must be 16 to 256 characters");
    }
}

impl Validate for CreateChannelRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        v.text("name", &self.name, 1, 100);
        match self.kind {
            ChannelKind::Email => {
                match &self.recipients {
                    Some(r) => check_recipients(&mut v, r),
                    None => {
                        v.error("recipients", "is required for an email channel");
                    }
                }
                if self.url.is_some() {
                    v.error("url", "an email channel has recipients, not a URL");
                }
                if self.signing_secret.is_some() {
                    v.error("signing_secret", "only webhook channels are signed");
                }
            }
            kind => {
                match &self.url {
                    Some(url) => check_url(&mut v, "url", url),
                    None => {
                        v.error("url", "is required for a Slack or webhook channel");
                    }
                }
                if self.recipients.is_some() {
                    v.error("recipients", "only email channels have recipients");
                }
                match (&self.signing_secret, kind) {
                    (Some(_), ChannelKind::Slack) => {
                        v.error("signing_secret", "only webhook channels are signed");
                    }
                    (Some(s), _) => check_signing_secret(&mut v, s),
                    (None, _) => {}
                }
            }
        }
        v.finish()
    }
}

/// Create a notification channel (NOTIF-001..003). A Slack or webhook URL whose host is, or
/// resolves to, an address delivery may not call is refused here (422 `destination_refused`).
#[utoipa::path(post, path = "/api/v1/notifications/channels", tag = "notifications", security(("bearer" = [])),
    request_body = CreateChannelRequest,
    responses((status = 201, body = Channel), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 422, description = "Invalid input, or a URL delivery may not call (`destination_refused`)", body = Problem)))]
pub async fn create_channel(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageNotifications>,
    ApiJson(req): ApiJson<CreateChannelRequest>,
) -> ApiResult<(StatusCode, Json<Channel>)> {
    let tenant_id = ctx.tenant_id();
    ctx.require(
        &state.db,
        Feature::Alerting,
        None,
        "notification_channel.create",
    )
    .await?;
    if let Some(url) = &req.url {
        refuse_internal_destination(&state, url).await?;
    }
    let mut tx = state.db.begin().await?;
    let channel = notif::create_channel(
        &mut tx,
        &state.keyring,
        notif::NewChannel {
            tenant_id,
            name: req.name.trim(),
            kind: req.kind,
            enabled: req.enabled.unwrap_or(true),
            recipients: req.recipients.unwrap_or_default(),
            url: req.url.map(SecretString::from),
            signing_secret: req.signing_secret.map(SecretString::from),
            created_by: ctx.principal.user_id(),
        },
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "notification.channel_created",
        "notification_channel",
    )
    .target(channel.id)
    .new_value(&channel)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(channel)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The tenant's notification channels, newest first (never their URLs or secrets).
#[utoipa::path(get, path = "/api/v1/notifications/channels", tag = "notifications", security(("bearer" = [])),
    params(PageQuery), responses((status = 200, body = Page<Channel>)))]
pub async fn list_channels(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Channel>>> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    Ok(Json(
        notif::list_channels(&state.db, ctx.tenant_id(), page).await?,
    ))
}

/// One notification channel.
#[utoipa::path(get, path = "/api/v1/notifications/channels/{channel_id}", tag = "notifications", security(("bearer" = [])),
    params(("channel_id" = Uuid, Path, description = "The channel's id")),
    responses((status = 200, body = Channel), (status = 404, body = Problem)))]
pub async fn get_channel(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiPath(channel_id): ApiPath<Uuid>,
) -> ApiResult<Json<Channel>> {
    Ok(Json(
        notif::get_channel(&state.db, ctx.tenant_id(), channel_id).await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannelRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// Turn the channel on or off (NOTIF-004); rules keep naming it.
    pub enabled: Option<bool>,
    #[schema(max_items = 50)]
    pub recipients: Option<Vec<String>>,
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    /// A new signing secret, or null to stop signing (webhook channels).
    #[serde(default, with = "serde_with_null")]
    #[schema(value_type = Option<String>, min_length = 16, max_length = 256)]
    pub signing_secret: Option<Option<String>>,
}

impl Validate for UpdateChannelRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if let Some(name) = &self.name {
            v.text("name", name, 1, 100);
        }
        if let Some(r) = &self.recipients {
            check_recipients(&mut v, r);
        }
        if let Some(url) = &self.url {
            check_url(&mut v, "url", url);
        }
        if let Some(Some(s)) = &self.signing_secret {
            check_signing_secret(&mut v, s);
        }
        v.finish()
    }
}

/// Change a channel: rename, enable or disable (NOTIF-004), new recipients, URL or signing
/// secret. Settings not given stay as they are. A new URL is checked as at creation.
#[utoipa::path(patch, path = "/api/v1/notifications/channels/{channel_id}", tag = "notifications", security(("bearer" = [])),
    params(("channel_id" = Uuid, Path, description = "The channel's id")),
    request_body = UpdateChannelRequest,
    responses((status = 200, body = Channel), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, description = "Invalid input, or a URL delivery may not call (`destination_refused`)", body = Problem)))]
pub async fn update_channel(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageNotifications>,
    ApiPath(channel_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateChannelRequest>,
) -> ApiResult<Json<Channel>> {
    let tenant_id = ctx.tenant_id();
    // Switching a channel off is always allowed (a downgraded tenant silences what it had).
    let only_disables = req.enabled == Some(false)
        && req.name.is_none()
        && req.recipients.is_none()
        && req.url.is_none()
        && req.signing_secret.is_none();
    if !only_disables {
        ctx.require(
            &state.db,
            Feature::Alerting,
            None,
            "notification_channel.update",
        )
        .await?;
    }
    if let Some(url) = &req.url {
        refuse_internal_destination(&state, url).await?;
    }
    let mut tx = state.db.begin().await?;
    let (old, new) = notif::update_channel(
        &mut tx,
        &state.keyring,
        tenant_id,
        channel_id,
        ChannelChange {
            name: req.name.map(|n| n.trim().to_owned()),
            enabled: req.enabled,
            recipients: req.recipients,
            url: req.url.map(SecretString::from),
            signing_secret: req.signing_secret.map(|s| s.map(SecretString::from)),
        },
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "notification.channel_updated",
        "notification_channel",
    )
    .target(channel_id)
    .old(&old)
    .new_value(&new)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(new))
}

/// Delete a channel (and its place in every rule; its sealed URL is erased).
#[utoipa::path(delete, path = "/api/v1/notifications/channels/{channel_id}", tag = "notifications", security(("bearer" = [])),
    params(("channel_id" = Uuid, Path, description = "The channel's id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)))]
pub async fn delete_channel(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageNotifications>,
    ApiPath(channel_id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    let old = notif::delete_channel(&mut tx, tenant_id, channel_id).await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "notification.channel_deleted",
        "notification_channel",
    )
    .target(channel_id)
    .old(&old)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelTestResult {
    /// Whether the test message was accepted by the channel's endpoint or mail server.
    pub ok: bool,
    /// What went wrong, in the peer's words where it gave any.
    pub error: Option<String>,
    /// Whether trying again later could succeed (the peer was down or rate-limiting).
    pub transient: bool,
    pub channel: Channel,
}

/// Send a test message through a channel now and report what happened (NOTIF-005). Works on a
/// disabled channel too (to check it before enabling it); the result is kept on the channel.
#[utoipa::path(post, path = "/api/v1/notifications/channels/{channel_id}/test", tag = "notifications", security(("bearer" = [])),
    params(("channel_id" = Uuid, Path, description = "The channel's id")),
    responses((status = 200, body = ChannelTestResult), (status = 404, body = Problem)))]
pub async fn test_channel(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageNotifications>,
    ApiPath(channel_id): ApiPath<Uuid>,
) -> ApiResult<Json<ChannelTestResult>> {
    let tenant_id = ctx.tenant_id();
    ctx.require(
        &state.db,
        Feature::Alerting,
        None,
        "notification_channel.test",
    )
    .await?;
    let mut conn = state.db.acquire().await?;
    let (channel, target) = notif::target(&mut conn, &state.keyring, tenant_id, channel_id).await?;
    drop(conn);
    let alert = Alert {
        tenant_id,
        event_type: EventType::SystemError,
        environment_id: None,
        title: format!("Test message for the channel “{}”", channel.name),
        data: json!({"test": true, "sent_by": ctx.actor().label}),
    };
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(25),
        jobs::notify::send(&state.jobs, &target, Uuid::now_v7(), &alert),
    )
    .await
    .unwrap_or_else(|_| {
        Err(jobs::notify::Failure::Transient(
            "no answer within 25 seconds".into(),
            None,
        ))
    });
    let (error, transient) = match &sent {
        Ok(()) => (None, false),
        Err(e @ jobs::notify::Failure::Transient(..)) => (Some(e.to_string()), true),
        Err(e) => (Some(e.to_string()), false),
    };
    let mut tx = state.db.begin().await?;
    let channel = notif::record_test(&mut *tx, tenant_id, channel_id, error.as_deref()).await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "notification.channel_tested",
        "notification_channel",
    )
    .target(channel_id)
    .new_value(&json!({"ok": error.is_none(), "error": error}))
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(ChannelTestResult {
        ok: error.is_none(),
        error,
        transient,
        channel,
    }))
}

fn check_channel_ids(v: &mut Validator, ids: &[Uuid]) {
    if ids.is_empty() || ids.len() > MAX_RULE_CHANNELS {
        v.error(
            "channel_ids",
            format!("must list 1 to {MAX_RULE_CHANNELS} channels"),
        );
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    if distinct.len() != ids.len() {
        v.error("channel_ids", "lists a channel twice");
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRuleRequest {
    /// An event type of the catalog (NOTIF-006).
    pub event_type: EventType,
    /// The channels that get these events (NOTIF-007): 1-20, the tenant's own.
    #[schema(min_items = 1, max_items = 20)]
    pub channel_ids: Vec<Uuid>,
    /// Only events of this environment; omit for all.
    pub environment_id: Option<Uuid>,
    /// Default true (NOTIF-008).
    pub enabled: Option<bool>,
}

impl Validate for CreateRuleRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        check_channel_ids(&mut v, &self.channel_ids);
        v.finish()
    }
}

/// Create a rule: events of one type go to the channels it names (NOTIF-006, NOTIF-007).
#[utoipa::path(post, path = "/api/v1/notifications/rules", tag = "notifications", security(("bearer" = [])),
    request_body = CreateRuleRequest,
    responses((status = 201, body = Rule), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create_rule(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageNotifications>,
    ApiJson(req): ApiJson<CreateRuleRequest>,
) -> ApiResult<(StatusCode, Json<Rule>)> {
    let tenant_id = ctx.tenant_id();
    ctx.require(
        &state.db,
        Feature::Alerting,
        None,
        "notification_rule.create",
    )
    .await?;
    let mut tx = state.db.begin().await?;
    let rule = notif::create_rule(
        &mut tx,
        notif::NewRule {
            tenant_id,
            event_type: req.event_type,
            environment_id: req.environment_id,
            channel_ids: &req.channel_ids,
            enabled: req.enabled.unwrap_or(true),
            created_by: ctx.principal.user_id(),
        },
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "notification.rule_created",
        "notification_rule",
    )
    .target(rule.id)
    .new_value(&rule)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RuleQuery {
    /// Only rules (or alerts) of this event type.
    #[param(inline)]
    pub event_type: Option<EventType>,
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The tenant's notification rules, newest first.
#[utoipa::path(get, path = "/api/v1/notifications/rules", tag = "notifications", security(("bearer" = [])),
    params(RuleQuery), responses((status = 200, body = Page<Rule>)))]
pub async fn list_rules(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiQuery(q): ApiQuery<RuleQuery>,
) -> ApiResult<Json<Page<Rule>>> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    Ok(Json(
        notif::list_rules(&state.db, ctx.tenant_id(), q.event_type, page).await?,
    ))
}

/// One notification rule.
#[utoipa::path(get, path = "/api/v1/notifications/rules/{rule_id}", tag = "notifications", security(("bearer" = [])),
    params(("rule_id" = Uuid, Path, description = "The rule's id")),
    responses((status = 200, body = Rule), (status = 404, body = Problem)))]
pub async fn get_rule(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiPath(rule_id): ApiPath<Uuid>,
) -> ApiResult<Json<Rule>> {
    Ok(Json(
        notif::get_rule(&state.db, ctx.tenant_id(), rule_id).await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRuleRequest {
    pub event_type: Option<EventType>,
    #[schema(min_items = 1, max_items = 20)]
    pub channel_ids: Option<Vec<Uuid>>,
    /// An environment, or null for every environment.
    #[serde(default, with = "serde_with_null")]
    #[schema(value_type = Option<Uuid>)]
    pub environment_id: Option<Option<Uuid>>,
    /// Turn the rule on or off (NOTIF-008).
    pub enabled: Option<bool>,
}

impl Validate for UpdateRuleRequest {
    fn validate(&self) -> Result<(), domain::Error> {
        let mut v = Validator::new();
        if let Some(ids) = &self.channel_ids {
            check_channel_ids(&mut v, ids);
        }
        v.finish()
    }
}

/// Change a rule: its event type, channels, environment, or whether it is on (NOTIF-008).
#[utoipa::path(patch, path = "/api/v1/notifications/rules/{rule_id}", tag = "notifications", security(("bearer" = [])),
    params(("rule_id" = Uuid, Path, description = "The rule's id")),
    request_body = UpdateRuleRequest,
    responses((status = 200, body = Rule), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update_rule(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageNotifications>,
    ApiPath(rule_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateRuleRequest>,
) -> ApiResult<Json<Rule>> {
    let tenant_id = ctx.tenant_id();
    let only_disables = req.enabled == Some(false)
        && req.event_type.is_none()
        && req.channel_ids.is_none()
        && req.environment_id.is_none();
    if !only_disables {
        ctx.require(
            &state.db,
            Feature::Alerting,
            None,
            "notification_rule.update",
        )
        .await?;
    }
    let mut tx = state.db.begin().await?;
    let (old, new) = notif::update_rule(
        &mut tx,
        tenant_id,
        rule_id,
        RuleChange {
            event_type: req.event_type,
            environment_id: req.environment_id,
            channel_ids: req.channel_ids,
            enabled: req.enabled,
        },
    )
    .await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "notification.rule_updated",
        "notification_rule",
    )
    .target(rule_id)
    .old(&old)
    .new_value(&new)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(new))
}

/// Delete a rule.
#[utoipa::path(delete, path = "/api/v1/notifications/rules/{rule_id}", tag = "notifications", security(("bearer" = [])),
    params(("rule_id" = Uuid, Path, description = "The rule's id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)))]
pub async fn delete_rule(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ManageNotifications>,
    ApiPath(rule_id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let tenant_id = ctx.tenant_id();
    let mut tx = state.db.begin().await?;
    let old = notif::delete_rule(&mut tx, tenant_id, rule_id).await?;
    Entry::new(
        Some(tenant_id),
        &ctx.actor(),
        "notification.rule_deleted",
        "notification_rule",
    )
    .target(rule_id)
    .old(&old)
    .record(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's alerts, newest first, each with what became of it on every channel.
#[utoipa::path(get, path = "/api/v1/notifications/alerts", tag = "notifications", security(("bearer" = [])),
    params(RuleQuery), responses((status = 200, body = Page<AlertEvent>)))]
pub async fn list_alerts(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiQuery(q): ApiQuery<RuleQuery>,
) -> ApiResult<Json<Page<AlertEvent>>> {
    let page = PageRequest::parse(q.cursor.as_deref(), q.limit)?;
    Ok(Json(
        notif::list_alerts(&state.db, ctx.tenant_id(), q.event_type, page).await?,
    ))
}

/// One alert with its deliveries.
#[utoipa::path(get, path = "/api/v1/notifications/alerts/{alert_id}", tag = "notifications", security(("bearer" = [])),
    params(("alert_id" = Uuid, Path, description = "The alert's id")),
    responses((status = 200, body = AlertEvent), (status = 404, body = Problem)))]
pub async fn get_alert(
    State(state): State<AppState>,
    ctx: TenantCtx<perm::ViewObservability>,
    ApiPath(alert_id): ApiPath<Uuid>,
) -> ApiResult<Json<AlertEvent>> {
    Ok(Json(
        notif::get_alert(&state.db, ctx.tenant_id(), alert_id).await?,
    ))
}
