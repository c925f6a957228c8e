//! Notifications (PRD 3.15, NOTIF-001..009): channels (Slack, email, custom webhooks), rules that
//! send events of a type to channels, the event catalog, the alert history and what became of
//! each delivery.
//!
//! Slack and webhook URLs, and a webhook's signing secret, are sealed in `secrets`; a channel as
//! read here carries only what may be shown (recipients, the target's host). Delivery itself is a
//! background run (`jobs::notify`); raising an alert here only records it and names the channels
//! its rules select, in the caller's transaction.
//!
//! Delivering to channels is the plan's `alerting` feature (ENT-001): channels and rules made
//! while the plan had it stay, but once it no longer does, an alert is still recorded in the
//! tenant's alert history (the in-app record) and sent nowhere; each channel its rules selected
//! shows a skipped delivery saying why, and the refusal is logged once per alert
//! (`feature_denials`, action `alert.deliver`). Deliveries queued before a downgrade are checked
//! again when they run (`jobs::notify`).

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::entitlements::{self, Feature};
use crate::error::{Error, Result};
use crate::ids::new_id;
use crate::page::{Page, PageRequest};
use crate::secrets;

text_enum! {
    /// How a channel delivers (NOTIF-001..003).
    pub enum ChannelKind { Slack = "slack", Email = "email", Webhook = "webhook" }
}

text_enum! {
    /// The events a rule can select (NOTIF-009: the catalog).
    pub enum EventType {
        DeploymentStarted = "deployment.started",
        DeploymentCompleted = "deployment.completed",
        DeploymentFailed = "deployment.failed",
        DriftDetected = "drift.detected",
        DriftResolved = "drift.resolved",
        IncidentCreated = "incident.created",
        IncidentAcknowledged = "incident.acknowledged",
        IncidentResolved = "incident.resolved",
        IncidentExpiring = "incident.expiring",
        SystemError = "system.error",
        BackupCompleted = "backup.completed",
        BackupFailed = "backup.failed",
    }
}

impl EventType {
    pub fn category(self) -> &'static str {
        match self {
            Self::DeploymentStarted | Self::DeploymentCompleted | Self::DeploymentFailed => {
                "deployments"
            }
            Self::DriftDetected | Self::DriftResolved => "drift",
            Self::IncidentCreated
            | Self::IncidentAcknowledged
            | Self::IncidentResolved
            | Self::IncidentExpiring => "incidents",
            Self::SystemError => "system",
            Self::BackupCompleted | Self::BackupFailed => "backups",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::DeploymentStarted => "A promotion started deploying to its target environment.",
            Self::DeploymentCompleted => "A promotion finished: every workflow was deployed.",
            Self::DeploymentFailed => {
                "A promotion failed or was cancelled (what it had deployed was rolled back)."
            }
            Self::DriftDetected => {
                "A drift check found workflows that differ from their Git or promoted state."
            }
            Self::DriftResolved => "An environment's drift was reconciled or has gone away.",
            Self::IncidentCreated => {
                "A drift incident was opened (at or above the policy's notification severity)."
            }
            Self::IncidentAcknowledged => "Someone acknowledged a drift incident.",
            Self::IncidentResolved => "A drift incident was resolved or closed.",
            Self::IncidentExpiring => {
                "A drift incident entered its policy's expiration-warning window."
            }
            Self::SystemError => {
                "A background run (sync, backup, drift check, promotion) failed for good."
            }
            Self::BackupCompleted => "An environment's workflows were backed up to Git.",
            Self::BackupFailed => "A backup to Git failed.",
        }
    }
}

/// One entry of the event catalog (NOTIF-009).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CatalogEntry {
    pub event_type: EventType,
    pub category: &'static str,
    pub description: &'static str,
}

/// Every event type a rule can select, in catalog order.
pub fn catalog() -> Vec<CatalogEntry> {
    EventType::ALL
        .iter()
        .map(|&event_type| CatalogEntry {
            event_type,
            category: event_type.category(),
            description: event_type.description(),
        })
        .collect()
}

/// A channel as shown: never its URL or signing secret.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = NotificationChannel)]
pub struct Channel {
    pub id: Uuid,
    pub name: String,
    pub kind: ChannelKind,
    pub enabled: bool,
    /// Email: `{"recipients": [...]}`. Slack and webhooks: `{"target": "<host>"}` (the URL is
    /// sealed) and, for webhooks, `"signed": true|false`.
    pub config: Value,
    pub last_tested_at: Option<DateTime<Utc>>,
    pub last_test_ok: Option<bool>,
    pub last_test_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub secret_id: Option<Uuid>,
}

const CHANNEL_COLUMNS: &str = "id, name, kind, enabled, config, last_tested_at, last_test_ok, \
     last_test_error, created_at, updated_at, secret_id";

/// Where a channel delivers, secrets opened (for delivery and tests only).
pub enum Target {
    Slack {
        url: SecretString,
    },
    Email {
        recipients: Vec<String>,
    },
    Webhook {
        url: SecretString,
        signing_secret: Option<SecretString>,
    },
}

/// What a Slack or webhook channel keeps sealed.
#[derive(Serialize, Deserialize)]
struct Sealed {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signing_secret: Option<String>,
}

const SECRET_PURPOSE: &str = "notification_channel";

/// A new channel's settings, validated by the caller.
pub struct NewChannel<'a> {
    pub tenant_id: Uuid,
    pub name: &'a str,
    pub kind: ChannelKind,
    pub enabled: bool,
    pub recipients: Vec<String>,
    pub url: Option<SecretString>,
    pub signing_secret: Option<SecretString>,
    pub created_by: Option<Uuid>,
}

/// The host of `url`, for display (the URL itself may carry a token: Slack's does).
fn host_of(url: &str) -> String {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn shown_config(
    kind: ChannelKind,
    recipients: &[String],
    url: Option<&SecretString>,
    signed: bool,
) -> Value {
    match kind {
        ChannelKind::Email => json!({ "recipients": recipients }),
        ChannelKind::Slack => json!({ "target": url.map(|u| host_of(u.expose_secret())) }),
        ChannelKind::Webhook => json!({
            "target": url.map(|u| host_of(u.expose_secret())),
            "signed": signed,
        }),
    }
}

async fn seal(
    db: &mut PgConnection,
    keyring: &Keyring,
    tenant_id: Uuid,
    url: &SecretString,
    signing_secret: Option<&SecretString>,
) -> Result<Uuid> {
    let sealed = Sealed {
        url: url.expose_secret().to_owned(),
        signing_secret: signing_secret.map(|s| s.expose_secret().to_owned()),
    };
    let text = serde_json::to_string(&sealed).map_err(|e| Error::Crypto(e.to_string()))?;
    secrets::put(
        &mut *db,
        keyring,
        Some(tenant_id),
        SECRET_PURPOSE,
        &SecretString::from(text),
    )
    .await
}

async fn unseal(
    db: &mut PgConnection,
    keyring: &Keyring,
    tenant_id: Uuid,
    secret_id: Uuid,
) -> Result<Sealed> {
    let text = secrets::get(&mut *db, keyring, Some(tenant_id), secret_id).await?;
    serde_json::from_str(text.expose_secret())
        .map_err(|e| Error::Crypto(format!("notification channel secret: {e}")))
}

fn name_taken(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(d)
            if d.constraint() == Some("notification_channels_tenant_id_name_key") =>
        {
            Error::conflict(
                "channel_name_taken",
                "a notification channel with this name already exists",
            )
        }
        _ => e.into(),
    }
}

/// Creates a channel, its URL sealed in the same transaction.
pub async fn create_channel(
    db: &mut PgConnection,
    keyring: &Keyring,
    new: NewChannel<'_>,
) -> Result<Channel> {
    let secret_id = match &new.url {
        Some(url) => Some(
            seal(
                &mut *db,
                keyring,
                new.tenant_id,
                url,
                new.signing_secret.as_ref(),
            )
            .await?,
        ),
        None => None,
    };
    let config = shown_config(
        new.kind,
        &new.recipients,
        new.url.as_ref(),
        new.signing_secret.is_some(),
    );
    sqlx::query_as(sqlf!(
        "insert into notification_channels (id, tenant_id, name, kind, enabled, config, secret_id, created_by) \
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning {CHANNEL_COLUMNS}"
    ))
    .bind(new_id())
    .bind(new.tenant_id)
    .bind(new.name)
    .bind(new.kind)
    .bind(new.enabled)
    .bind(config)
    .bind(secret_id)
    .bind(new.created_by)
    .fetch_one(&mut *db)
    .await
    .map_err(name_taken)
}

pub async fn list_channels(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    page: PageRequest,
) -> Result<Page<Channel>> {
    let rows = sqlx::query_as(sqlf!(
        "select {CHANNEL_COLUMNS} from notification_channels \
         where tenant_id = $1 and ($2::uuid is null or id < $2) order by id desc limit $3"
    ))
    .bind(tenant_id)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |c: &Channel| c.id))
}

pub async fn get_channel(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Channel> {
    sqlx::query_as(sqlf!(
        "select {CHANNEL_COLUMNS} from notification_channels where tenant_id = $1 and id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("notification channel"))
}

/// A change to a channel; `None` leaves a setting as it is.
#[derive(Default)]
pub struct ChannelChange {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub recipients: Option<Vec<String>>,
    pub url: Option<SecretString>,
    /// `Some(None)` removes the signing secret.
    pub signing_secret: Option<Option<SecretString>>,
}

/// Applies `change` (a new URL or signing secret is sealed anew and the old secret deleted);
/// returns the channel before and after. Refuses settings of another kind.
pub async fn update_channel(
    db: &mut PgConnection,
    keyring: &Keyring,
    tenant_id: Uuid,
    id: Uuid,
    change: ChannelChange,
) -> Result<(Channel, Channel)> {
    let old: Channel = sqlx::query_as(sqlf!(
        "select {CHANNEL_COLUMNS} from notification_channels where tenant_id = $1 and id = $2 for update"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *db)
    .await?
    .ok_or(Error::not_found("notification channel"))?;
    match old.kind {
        ChannelKind::Email if change.url.is_some() || change.signing_secret.is_some() => {
            return Err(Error::invalid(
                "url",
                "an email channel has recipients, not a URL",
            ));
        }
        ChannelKind::Slack | ChannelKind::Webhook if change.recipients.is_some() => {
            return Err(Error::invalid(
                "recipients",
                "only email channels have recipients",
            ));
        }
        ChannelKind::Slack if change.signing_secret.is_some() => {
            return Err(Error::invalid(
                "signing_secret",
                "only webhook channels are signed",
            ));
        }
        _ => {}
    }
    let mut secret_id = old.secret_id;
    let mut config = old.config.clone();
    if change.url.is_some() || change.signing_secret.is_some() {
        let current = match old.secret_id {
            Some(s) => Some(unseal(&mut *db, keyring, tenant_id, s).await?),
            None => None,
        };
        let url = match (&change.url, &current) {
            (Some(u), _) => u.clone(),
            (None, Some(c)) => SecretString::from(c.url.clone()),
            (None, None) => return Err(Error::invalid("url", "is required")),
        };
        let signing = match &change.signing_secret {
            Some(s) => s.clone(),
            None => current
                .as_ref()
                .and_then(|c| c.signing_secret.clone())
                .map(SecretString::from),
        };
        secret_id = Some(seal(&mut *db, keyring, tenant_id, &url, signing.as_ref()).await?);
        if let Some(s) = old.secret_id {
            secrets::delete(&mut *db, Some(tenant_id), s).await?;
        }
        config = shown_config(old.kind, &[], Some(&url), signing.is_some());
    }
    if let Some(recipients) = &change.recipients {
        config = shown_config(old.kind, recipients, None, false);
    }
    let new: Channel = sqlx::query_as(sqlf!(
        "update notification_channels set name = coalesce($3, name), enabled = coalesce($4, enabled), \
         config = $5, secret_id = $6, updated_at = now() \
         where tenant_id = $1 and id = $2 returning {CHANNEL_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .bind(change.name.as_deref())
    .bind(change.enabled)
    .bind(config)
    .bind(secret_id)
    .fetch_one(&mut *db)
    .await
    .map_err(name_taken)?;
    Ok((old, new))
}

/// Deletes a channel, its sealed secret, and its place in every rule.
pub async fn delete_channel(db: &mut PgConnection, tenant_id: Uuid, id: Uuid) -> Result<Channel> {
    let old: Channel = sqlx::query_as(sqlf!(
        "delete from notification_channels where tenant_id = $1 and id = $2 returning {CHANNEL_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *db)
    .await?
    .ok_or(Error::not_found("notification channel"))?;
    if let Some(s) = old.secret_id {
        secrets::delete(&mut *db, Some(tenant_id), s).await?;
    }
    Ok(old)
}

/// The channel and where it delivers, its secrets opened.
pub async fn target(
    db: &mut PgConnection,
    keyring: &Keyring,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<(Channel, Target)> {
    let channel = get_channel(&mut *db, tenant_id, id).await?;
    let target = match channel.kind {
        ChannelKind::Email => Target::Email {
            recipients: channel
                .config
                .get("recipients")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        },
        kind => {
            let secret_id = channel
                .secret_id
                .ok_or_else(|| Error::Crypto("channel has no sealed URL".into()))?;
            let sealed = unseal(&mut *db, keyring, tenant_id, secret_id).await?;
            let url = SecretString::from(sealed.url);
            if kind == ChannelKind::Slack {
                Target::Slack { url }
            } else {
                Target::Webhook {
                    url,
                    signing_secret: sealed.signing_secret.map(SecretString::from),
                }
            }
        }
    };
    Ok((channel, target))
}

/// Records the result of a connectivity test (NOTIF-005).
pub async fn record_test(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
    error: Option<&str>,
) -> Result<Channel> {
    sqlx::query_as(sqlf!(
        "update notification_channels set last_tested_at = now(), last_test_ok = $3 is null, \
         last_test_error = $3 where tenant_id = $1 and id = $2 returning {CHANNEL_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .bind(error)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("notification channel"))
}

/// A rule: events of `event_type` (of one environment, or any) go to `channel_ids`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = NotificationRule)]
pub struct Rule {
    pub id: Uuid,
    pub event_type: EventType,
    /// Only events of this environment; null for every event of the type.
    pub environment_id: Option<Uuid>,
    pub channel_ids: Vec<Uuid>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const RULE_SELECT: &str = "select r.id, r.event_type, r.environment_id, \
     coalesce((select array_agg(c.channel_id order by c.channel_id) from notification_rule_channels c \
               where c.rule_id = r.id), '{}') as channel_ids, \
     r.enabled, r.created_at, r.updated_at from notification_rules r";

/// Refuses channels or an environment that are not the tenant's.
async fn check_refs(
    db: &mut PgConnection,
    tenant_id: Uuid,
    channel_ids: &[Uuid],
    environment_id: Option<Uuid>,
) -> Result<()> {
    let known: i64 = sqlx::query_scalar(
        "select count(*) from notification_channels where tenant_id = $1 and id = any ($2)",
    )
    .bind(tenant_id)
    .bind(channel_ids)
    .fetch_one(&mut *db)
    .await?;
    if usize::try_from(known).unwrap_or(0) != channel_ids.len() {
        return Err(Error::invalid(
            "channel_ids",
            "names a channel this tenant does not have",
        ));
    }
    if let Some(env) = environment_id {
        let exists: bool = sqlx::query_scalar(
            "select exists (select 1 from environments where tenant_id = $1 and id = $2)",
        )
        .bind(tenant_id)
        .bind(env)
        .fetch_one(&mut *db)
        .await?;
        if !exists {
            return Err(Error::invalid(
                "environment_id",
                "names an environment this tenant does not have",
            ));
        }
    }
    Ok(())
}

async fn set_rule_channels(
    db: &mut PgConnection,
    rule_id: Uuid,
    channel_ids: &[Uuid],
) -> Result<()> {
    sqlx::query("delete from notification_rule_channels where rule_id = $1")
        .bind(rule_id)
        .execute(&mut *db)
        .await?;
    sqlx::query(
        "insert into notification_rule_channels (rule_id, channel_id) select $1, unnest($2::uuid[])",
    )
    .bind(rule_id)
    .bind(channel_ids)
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// A new rule's settings; `channel_ids` distinct and non-empty (validated by the caller).
pub struct NewRule<'a> {
    pub tenant_id: Uuid,
    pub event_type: EventType,
    pub environment_id: Option<Uuid>,
    pub channel_ids: &'a [Uuid],
    pub enabled: bool,
    pub created_by: Option<Uuid>,
}

pub async fn create_rule(db: &mut PgConnection, new: NewRule<'_>) -> Result<Rule> {
    check_refs(&mut *db, new.tenant_id, new.channel_ids, new.environment_id).await?;
    let id = new_id();
    sqlx::query(
        "insert into notification_rules (id, tenant_id, event_type, environment_id, enabled, created_by) \
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(new.tenant_id)
    .bind(new.event_type)
    .bind(new.environment_id)
    .bind(new.enabled)
    .bind(new.created_by)
    .execute(&mut *db)
    .await?;
    set_rule_channels(&mut *db, id, new.channel_ids).await?;
    get_rule(&mut *db, new.tenant_id, id).await
}

pub async fn get_rule(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Rule> {
    sqlx::query_as(sqlf!("{RULE_SELECT} where r.tenant_id = $1 and r.id = $2"))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(Error::not_found("notification rule"))
}

pub async fn list_rules(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    event_type: Option<EventType>,
    page: PageRequest,
) -> Result<Page<Rule>> {
    let rows = sqlx::query_as(sqlf!(
        "{RULE_SELECT} where r.tenant_id = $1 and ($2::text is null or r.event_type = $2) \
         and ($3::uuid is null or r.id < $3) order by r.id desc limit $4"
    ))
    .bind(tenant_id)
    .bind(event_type)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |r: &Rule| r.id))
}

/// A change to a rule; `None` leaves a setting as it is.
#[derive(Default)]
pub struct RuleChange {
    pub event_type: Option<EventType>,
    /// `Some(None)`: every environment.
    pub environment_id: Option<Option<Uuid>>,
    pub channel_ids: Option<Vec<Uuid>>,
    pub enabled: Option<bool>,
}

/// Applies `change`; returns the rule before and after.
pub async fn update_rule(
    db: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    change: RuleChange,
) -> Result<(Rule, Rule)> {
    let locked: Option<Uuid> = sqlx::query_scalar(
        "select id from notification_rules where tenant_id = $1 and id = $2 for update",
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *db)
    .await?;
    locked.ok_or(Error::not_found("notification rule"))?;
    let old = get_rule(&mut *db, tenant_id, id).await?;
    let channels = change.channel_ids.as_deref().unwrap_or(&old.channel_ids);
    let environment = change.environment_id.unwrap_or(old.environment_id);
    check_refs(&mut *db, tenant_id, channels, environment).await?;
    sqlx::query(
        "update notification_rules set event_type = $3, environment_id = $4, enabled = coalesce($5, enabled), \
         updated_at = now() where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(change.event_type.unwrap_or(old.event_type))
    .bind(environment)
    .bind(change.enabled)
    .execute(&mut *db)
    .await?;
    if let Some(ids) = &change.channel_ids {
        set_rule_channels(&mut *db, id, ids).await?;
    }
    let new = get_rule(&mut *db, tenant_id, id).await?;
    Ok((old, new))
}

pub async fn delete_rule(db: &mut PgConnection, tenant_id: Uuid, id: Uuid) -> Result<Rule> {
    let old = get_rule(&mut *db, tenant_id, id).await?;
    sqlx::query("delete from notification_rules where tenant_id = $1 and id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(&mut *db)
        .await?;
    Ok(old)
}

/// Something worth telling people about, as the code that noticed it describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub tenant_id: Uuid,
    pub event_type: EventType,
    pub environment_id: Option<Uuid>,
    /// One line for people ("Promotion to production failed").
    pub title: String,
    /// The details, as JSON (ids, names, counts).
    pub data: Value,
}

/// A raised alert: its id and the channels to deliver it to (those its enabled rules select,
/// enabled; none when the tenant's plan leaves alerting out).
#[derive(Debug, Clone)]
pub struct Raised {
    pub event_id: Uuid,
    pub channel_ids: Vec<Uuid>,
    /// Channels its rules selected that the plan kept it from (recorded as skipped).
    pub withheld: Vec<Uuid>,
}

/// Why an alert was not sent to a channel whose rule selected it.
pub const NOT_IN_PLAN: &str = "not delivered: the tenant's plan does not include alerting";

/// Whether `tenant_id`'s plan lets alerts reach its channels (ENT-001).
pub async fn delivery_allowed(db: &mut PgConnection, tenant_id: Uuid) -> Result<bool> {
    Ok(entitlements::entitlements(&mut *db, tenant_id)
        .await?
        .allows(Feature::Alerting, None))
}

/// Logs that an alert of `tenant_id` was kept from its channels (ENT-011): by the system, not a
/// person.
pub async fn record_withheld(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<()> {
    entitlements::record_denial(
        db,
        entitlements::Asker {
            tenant_id,
            user_id: None,
            action: "alert.deliver",
        },
        Feature::Alerting,
        None,
    )
    .await
}

/// Records `alert` in the tenant's alert history and selects its channels. When the rules
/// select some but the tenant's plan no longer includes alerting, none is returned to deliver
/// to: each gets a skipped delivery ([`NOT_IN_PLAN`]) and the refusal is logged once.
pub async fn raise(db: &mut PgConnection, alert: &Alert) -> Result<Raised> {
    let event_id = new_id();
    sqlx::query(
        "insert into alert_events (id, tenant_id, event_type, environment_id, title, data) \
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event_id)
    .bind(alert.tenant_id)
    .bind(alert.event_type)
    .bind(alert.environment_id)
    .bind(&alert.title)
    .bind(&alert.data)
    .execute(&mut *db)
    .await?;
    let channel_ids = sqlx::query_scalar(
        "select distinct c.id from notification_rules r \
         join notification_rule_channels rc on rc.rule_id = r.id \
         join notification_channels c on c.id = rc.channel_id and c.enabled \
         where r.tenant_id = $1 and r.event_type = $2 and r.enabled \
           and (r.environment_id is null or r.environment_id = $3) \
         order by c.id",
    )
    .bind(alert.tenant_id)
    .bind(alert.event_type)
    .bind(alert.environment_id)
    .fetch_all(&mut *db)
    .await?;
    if channel_ids.is_empty() || delivery_allowed(&mut *db, alert.tenant_id).await? {
        return Ok(Raised {
            event_id,
            channel_ids,
            withheld: Vec::new(),
        });
    }
    record_withheld(&mut *db, alert.tenant_id).await?;
    for &channel_id in &channel_ids {
        record_delivery(
            &mut *db,
            alert.tenant_id,
            event_id,
            channel_id,
            DeliveryStatus::Skipped,
            Some(NOT_IN_PLAN),
        )
        .await?;
    }
    Ok(Raised {
        event_id,
        channel_ids: Vec::new(),
        withheld: channel_ids,
    })
}

/// Links an alert to the run that delivers it.
pub async fn set_delivery_run(db: impl PgExecutor<'_>, event_id: Uuid, run_id: Uuid) -> Result<()> {
    sqlx::query("update alert_events set run_id = $2 where id = $1")
        .bind(event_id)
        .bind(run_id)
        .execute(db)
        .await?;
    Ok(())
}

text_enum! {
    /// What became of an alert on one channel.
    pub enum DeliveryStatus {
        Sent = "sent",
        Failed = "failed",
        Retrying = "retrying",
        Skipped = "skipped",
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = NotificationDelivery)]
pub struct Delivery {
    pub channel_id: Uuid,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// An alert of the history, with its deliveries.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AlertEvent {
    pub id: Uuid,
    pub event_type: EventType,
    pub environment_id: Option<Uuid>,
    pub title: String,
    pub data: Value,
    /// The run delivering it, when some rule selected a channel.
    pub run_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    #[sqlx(json)]
    pub deliveries: Vec<Delivery>,
}

const ALERT_SELECT: &str = "select a.id, a.event_type, a.environment_id, a.title, a.data, a.run_id, a.created_at, \
     coalesce((select json_agg(json_build_object('channel_id', d.channel_id, 'status', d.status, \
               'attempts', d.attempts, 'error', d.error, 'updated_at', d.updated_at) order by d.channel_id) \
               from notification_deliveries d where d.event_id = a.id), '[]') as deliveries \
     from alert_events a";

pub async fn get_alert(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<AlertEvent> {
    sqlx::query_as(sqlf!("{ALERT_SELECT} where a.tenant_id = $1 and a.id = $2"))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(db)
        .await?
        .ok_or(Error::not_found("alert"))
}

/// The tenant's alerts, newest first.
pub async fn list_alerts(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    event_type: Option<EventType>,
    page: PageRequest,
) -> Result<Page<AlertEvent>> {
    let rows = sqlx::query_as(sqlf!(
        "{ALERT_SELECT} where a.tenant_id = $1 and ($2::text is null or a.event_type = $2) \
         and ($3::uuid is null or a.id < $3) order by a.id desc limit $4"
    ))
    .bind(tenant_id)
    .bind(event_type)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |a: &AlertEvent| a.id))
}

/// Records what became of `event_id` on `channel_id` (each call one more attempt).
pub async fn record_delivery(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    event_id: Uuid,
    channel_id: Uuid,
    status: DeliveryStatus,
    error: Option<&str>,
) -> Result<()> {
    // The channel may have been deleted since: then there is nothing to record it against.
    sqlx::query(
        "insert into notification_deliveries (event_id, channel_id, tenant_id, status, error) \
         select $2, $3, $1, $4, $5 where exists (select 1 from notification_channels where id = $3) \
         on conflict (event_id, channel_id) do update set status = excluded.status, error = excluded.error, \
         attempts = notification_deliveries.attempts + 1, updated_at = now()",
    )
    .bind(tenant_id)
    .bind(event_id)
    .bind(channel_id)
    .bind(status)
    .bind(error)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes alerts older than `keep` (their deliveries with them), in bounded batches.
pub async fn prune_alerts(db: &sqlx::PgPool, keep: std::time::Duration) -> Result<u64> {
    let mut total = 0;
    loop {
        let done = sqlx::query(
            "delete from alert_events where id in (select id from alert_events \
             where created_at < now() - make_interval(secs => $1) limit 10000)",
        )
        .bind(keep.as_secs_f64())
        .execute(db)
        .await?
        .rows_affected();
        total += done;
        if done < 10_000 {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_shown_by_its_host_only() {
        assert_eq!(
            host_of("https://hooks.slack.com/services/T0/B0/secret"),
            "hooks.slack.com"
        );
        assert_eq!(
            host_of("https://user:pw@example.com:8443/x?y"),
            "example.com:8443"
        );
        assert_eq!(host_of("http://127.0.0.1:9000"), "127.0.0.1:9000");
    }

    #[test]
    fn the_catalog_lists_every_event_type_once_with_a_description() {
        let catalog = catalog();
        assert_eq!(catalog.len(), EventType::ALL.len());
        for entry in &catalog {
            assert!(!entry.description.is_empty());
            assert_eq!(
                EventType::parse(entry.event_type.as_str()),
                Some(entry.event_type)
            );
        }
    }
}
