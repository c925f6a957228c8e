//! `notification.deliver` (NOTIF-001..008): sends one alert to the channels its rules selected,
//! each channel a checkpointed step, so a retry never sends twice to a channel that took it.
//!
//! Failures are sorted per channel: a peer that is down, slow or rate-limited (connection errors,
//! 408, 429 with its Retry-After, 5xx; SMTP 4xx) is retried with backoff, the run's later
//! attempts skipping the channels already done; a refusal (Slack's `no_service`, a 404, SMTP 5xx)
//! fails that channel at once and the others still get the alert. Every outcome is recorded in
//! `notification_deliveries`. Delivery is at least once: a worker that dies between sending and
//! checkpointing sends again; webhooks carry the alert id (`X-WorkflowOps-Delivery`) for
//! receivers that must not act twice.
//!
//! Delivery needs the plan's `alerting` (ENT-001), checked when the alert is raised and again at
//! the start of every attempt: a delivery queued or waiting to retry when the tenant lost it
//! sends nothing more; the channels not yet done are recorded as skipped
//! ([`notifications::NOT_IN_PLAN`]) and the refusal is logged once for the run.

use std::sync::Arc;
use std::time::Duration;

use adapters::net::{DestinationError, Guard};
use chrono::Utc;
use domain::notifications::{self, Alert, ChannelKind, DeliveryStatus, Target};
use engine::{Job, JobError, NewRun, RetryPolicy, RunCtx};
use hmac::{KeyInit, Mac};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::providers::Deps;

/// Outgoing email: an SMTP server and the sender's address (`WFO_SMTP_URL`, `WFO_SMTP_FROM`).
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// `url`: `smtp://[user:password@]host[:port]` (plain; add `?tls=required` for STARTTLS) or
    /// `smtps://…` (TLS from the start).
    pub fn new(url: &str, from: &str) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("WFO_SMTP_URL is not a valid SMTP URL: {e}"))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = from
            .parse()
            .map_err(|e| format!("WFO_SMTP_FROM is not an email address: {e}"))?;
        Ok(Self { transport, from })
    }
}

/// What notification delivery needs from the process's configuration.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// None: email channels cannot deliver (their deliveries fail with a clear error).
    pub mailer: Option<Arc<Mailer>>,
    /// Let Slack and webhook channels reach loopback, private and link-local addresses
    /// (`WFO_NOTIFY_ALLOW_PRIVATE`; tests and single-network installations). Off: a URL that
    /// names or resolves to one is refused, so a tenant cannot make the server call into its
    /// own network.
    pub allow_private: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverInput {
    pub tenant_id: Uuid,
    pub event_id: Uuid,
    pub channel_ids: Vec<Uuid>,
    pub alert: Alert,
}

/// Per channel, what became of the alert.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelOutcome {
    pub channel_id: Uuid,
    pub status: DeliveryStatus,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliverOutput {
    pub sent: usize,
    pub failed: usize,
    pub skipped: usize,
    pub channels: Vec<ChannelOutcome>,
}

#[derive(Debug, Clone)]
pub struct Deliver {
    pub deps: Deps,
}

const MAX_ATTEMPTS: u32 = 8;

/// Records `alert` and, when its rules select channels and the tenant's plan includes alerting,
/// enqueues its delivery in the same transaction (so an alert of a change that rolls back is
/// never sent). Without alerting it is only recorded (see [`notifications::raise`]). Returns the
/// alert's id.
pub async fn raise(db: &mut sqlx::PgConnection, alert: Alert) -> Result<Uuid, domain::Error> {
    let raised = notifications::raise(&mut *db, &alert).await?;
    if !raised.channel_ids.is_empty() {
        let input = DeliverInput {
            tenant_id: alert.tenant_id,
            event_id: raised.event_id,
            channel_ids: raised.channel_ids,
            alert,
        };
        let run = NewRun::of::<Deliver>(input.tenant_id.to_string(), &input)
            .idempotency_key(format!("alert:{}", raised.event_id));
        let enqueued = engine::queue::enqueue(&mut *db, &run)
            .await
            .map_err(|e| match e {
                engine::queue::Error::Database(e) => domain::Error::Database(e),
                other => domain::Error::conflict("notification_not_enqueued", other.to_string()),
            })?;
        notifications::set_delivery_run(&mut *db, raised.event_id, enqueued.id).await?;
    }
    Ok(raised.event_id)
}

/// [`raise`] in a transaction of its own, for code that noticed something outside one. An alert
/// that cannot be recorded is logged, never an error of the work that raised it.
pub async fn raise_now(db: &sqlx::PgPool, alert: Alert) {
    let kind = alert.event_type;
    let result = async {
        let mut tx = db.begin().await?;
        raise(&mut tx, alert).await?;
        tx.commit().await?;
        Ok::<_, domain::Error>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(event_type = %kind, error = %e, "could not raise an alert");
    }
}

/// Whether `e` ends the run for good: a permanent failure, or a transient one on the kind's last
/// attempt (`max_attempts`). Cancellation, suspension and lost ownership are not failures.
pub fn is_final_failure(e: &JobError, attempt: i32, max_attempts: u32) -> bool {
    match e {
        JobError::Permanent { .. } => true,
        JobError::Transient { .. } => attempt >= i32::try_from(max_attempts).unwrap_or(i32::MAX),
        _ => false,
    }
}

impl Job for Deliver {
    const KIND: &'static str = "notification.deliver";
    type Input = DeliverInput;
    type Output = DeliverOutput;

    fn retry_policy() -> RetryPolicy {
        // About half an hour of retries for a peer that is down or rate-limiting.
        RetryPolicy {
            max_attempts: MAX_ATTEMPTS,
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(600),
        }
    }

    async fn run(&self, ctx: &mut RunCtx, input: DeliverInput) -> Result<DeliverOutput, JobError> {
        let last_attempt = ctx.attempt >= i32::try_from(MAX_ATTEMPTS).unwrap_or(i32::MAX);
        // Every attempt asks again: the plan may have lost alerting since the alert was raised
        // (or since the last attempt).
        let allowed = {
            let mut conn = ctx.db().acquire().await?;
            notifications::delivery_allowed(&mut conn, input.tenant_id)
                .await
                .map_err(crate::providers::domain_error)?
        };
        if !allowed {
            // A step, so the refusal is logged once for the run, not once per attempt.
            let db = ctx.db().clone();
            let tenant_id = input.tenant_id;
            ctx.step("alerting_withheld", || async move {
                notifications::record_withheld(&db, tenant_id)
                    .await
                    .map_err(crate::providers::domain_error)
            })
            .await?;
        }
        let mut outcomes = Vec::new();
        // The first transient failure's message, and the longest Retry-After any peer asked for.
        let mut retry: Option<(String, Option<Duration>)> = None;
        for &channel_id in &input.channel_ids {
            let db = ctx.db().clone();
            let deps = self.deps.clone();
            let input = &input;
            let step = ctx
                .step(&format!("channel:{channel_id}"), || async move {
                    let sent = if allowed {
                        deliver_one(&db, &deps, input, channel_id).await
                    } else {
                        Ok(Sent::Skipped(notifications::NOT_IN_PLAN.to_owned()))
                    };
                    let (status, error) = match sent {
                        Ok(Sent::Delivered) => (DeliveryStatus::Sent, None),
                        Ok(Sent::Skipped(why)) => (DeliveryStatus::Skipped, Some(why)),
                        Err(Failure::Refused(e)) => (DeliveryStatus::Failed, Some(e)),
                        Err(Failure::Transient(e, _)) if last_attempt => (
                            DeliveryStatus::Failed,
                            Some(format!("{e} (gave up retrying)")),
                        ),
                        Err(Failure::Transient(e, after)) => {
                            notifications::record_delivery(
                                &db,
                                input.tenant_id,
                                input.event_id,
                                channel_id,
                                DeliveryStatus::Retrying,
                                Some(&e),
                            )
                            .await
                            .map_err(crate::providers::domain_error)?;
                            metrics::counter!("workflowops_notifications_total", "outcome" => "retrying")
                                .increment(1);
                            return Err(JobError::Transient {
                                message: e,
                                retry_after: after,
                            });
                        }
                    };
                    notifications::record_delivery(
                        &db,
                        input.tenant_id,
                        input.event_id,
                        channel_id,
                        status,
                        error.as_deref(),
                    )
                    .await
                    .map_err(crate::providers::domain_error)?;
                    metrics::counter!("workflowops_notifications_total", "outcome" => status.as_str())
                        .increment(1);
                    Ok(ChannelOutcome {
                        channel_id,
                        status,
                        error,
                    })
                })
                .await;
            match step {
                Ok(outcome) => outcomes.push(outcome),
                // The other channels still get the alert now; this one on the next attempt.
                Err(JobError::Transient {
                    message,
                    retry_after,
                }) => {
                    let (_, wait) = retry.get_or_insert((message, retry_after));
                    *wait = (*wait).max(retry_after);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some((message, retry_after)) = retry {
            return Err(JobError::Transient {
                message,
                retry_after,
            });
        }
        let count = |s| outcomes.iter().filter(|o| o.status == s).count();
        Ok(DeliverOutput {
            sent: count(DeliveryStatus::Sent),
            failed: count(DeliveryStatus::Failed),
            skipped: count(DeliveryStatus::Skipped),
            channels: outcomes,
        })
    }
}

enum Sent {
    Delivered,
    /// The channel was deleted or disabled after the alert was raised, or the plan no longer
    /// includes alerting.
    Skipped(String),
}

/// Why a delivery did not happen: worth retrying (with the peer's Retry-After), or not.
#[derive(Debug)]
pub enum Failure {
    Transient(String, Option<Duration>),
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transient(e, _) | Self::Refused(e) => f.write_str(e),
        }
    }
}

async fn deliver_one(
    db: &sqlx::PgPool,
    deps: &Deps,
    input: &DeliverInput,
    channel_id: Uuid,
) -> Result<Sent, Failure> {
    let mut conn = db
        .acquire()
        .await
        .map_err(|e| Failure::Transient(format!("database: {e}"), None))?;
    let (channel, target) =
        match notifications::target(&mut conn, &deps.keyring, input.tenant_id, channel_id).await {
            Ok(found) => found,
            Err(domain::Error::NotFound { .. }) => {
                return Ok(Sent::Skipped("the channel was deleted".into()));
            }
            Err(e) => return Err(Failure::Transient(e.to_string(), None)),
        };
    drop(conn);
    if !channel.enabled {
        return Ok(Sent::Skipped("the channel is disabled".into()));
    }
    send(deps, &target, input.event_id, &input.alert)
        .await
        .map(|()| Sent::Delivered)
}

/// Sends `alert` to `target` once (also the connectivity test, NOTIF-005).
pub async fn send(
    deps: &Deps,
    target: &Target,
    event_id: Uuid,
    alert: &Alert,
) -> Result<(), Failure> {
    match target {
        Target::Slack { url } => {
            let body = slack_message(alert);
            post(deps, url.expose_secret(), &body, &[]).await
        }
        Target::Webhook {
            url,
            signing_secret,
        } => {
            let body = serde_json::to_vec(&json!({
                "id": event_id,
                "type": alert.event_type,
                "tenant_id": alert.tenant_id,
                "environment_id": alert.environment_id,
                "title": alert.title,
                "data": alert.data,
                "sent_at": Utc::now(),
            }))
            .map_err(|e| Failure::Refused(e.to_string()))?;
            let mut headers = vec![
                ("x-workflowops-event", alert.event_type.as_str().to_owned()),
                ("x-workflowops-delivery", event_id.to_string()),
            ];
            if let Some(secret) = signing_secret {
                headers.push((
                    "x-workflowops-signature",
                    signature(secret.expose_secret(), Utc::now().timestamp(), &body),
                ));
            }
            post(deps, url.expose_secret(), &body, &headers).await
        }
        Target::Email { recipients } => email(deps, recipients, event_id, alert).await,
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: receivers recompute it with the
/// channel's signing secret and refuse old timestamps (replays).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

fn slack_message(alert: &Alert) -> Vec<u8> {
    let emoji = match alert.event_type.as_str() {
        t if t.ends_with("failed") || t == "system.error" => ":red_circle:",
        t if t.ends_with("completed") || t.ends_with("resolved") => ":large_green_circle:",
        _ => ":large_yellow_circle:",
    };
    let details = details_text(&alert.data);
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("{emoji} *{}*", slack_escape(&alert.title))}
    })];
    if !details.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": slack_escape(&details)}
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!("`{}` · WorkflowOps", alert.event_type)}]
    }));
    serde_json::to_vec(&json!({ "text": alert.title, "blocks": blocks })).unwrap_or_default()
}

/// Slack's control characters in text (`&`, `<`, `>`).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `key: value` lines of an alert's details (nested values as JSON).
fn details_text(data: &Value) -> String {
    data.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

async fn post(
    deps: &Deps,
    url: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> Result<(), Failure> {
    let parsed = reqwest::Url::parse(url).map_err(|e| Failure::Refused(format!("bad URL: {e}")))?;
    check_destination(&parsed, deps.notify.allow_private).await?;
    let mut request = client(deps.notify.allow_private)
        .post(parsed)
        .timeout(Duration::from_secs(15))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    // reqwest names the URL in its errors: a Slack URL is a credential, so it is taken out
    // before the error is kept anywhere (deliveries, the channel's last test, the audit log).
    let response = request.send().await.map_err(|e| {
        if let Some(refused) = adapters::net::refusal(&e) {
            return Failure::Refused(refused.to_string());
        }
        Failure::Transient(
            format!(
                "could not reach the endpoint: {}",
                error_chain(&e.without_url())
            ),
            None,
        )
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(3600)));
    let text = head_of(response, 4096).await;
    let said: String = text.chars().take(200).collect();
    let message = if said.trim().is_empty() {
        format!("the endpoint answered {status}")
    } else {
        format!("the endpoint answered {status}: {}", said.trim())
    };
    if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
        Err(Failure::Transient(message, retry_after))
    } else {
        Err(Failure::Refused(message))
    }
}

/// The first `limit` bytes of a response's body, as text: an endpoint answering an error with
/// an endless body costs at most that much.
async fn head_of(mut response: reqwest::Response, limit: usize) -> String {
    let mut head = Vec::new();
    while head.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                head.extend_from_slice(&chunk[..chunk.len().min(limit - head.len())]);
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The clients for Slack and webhook deliveries: they never follow redirects (a public endpoint
/// answering 30x to an internal address would walk around the address check; a redirect is
/// reported as the endpoint's answer instead), and they connect only to addresses
/// [`Guard::notifications`] allows (it is their resolver), so a name that answers differently
/// between the check and the connection (DNS rebinding) gets nowhere, and link-local addresses
/// (cloud metadata) are never reached, whatever `WFO_NOTIFY_ALLOW_PRIVATE` says.
fn client(allow_private: bool) -> &'static reqwest::Client {
    static PUBLIC: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    static PRIVATE: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let build = || {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .user_agent(concat!("workflowops/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(2)
            .dns_resolver(Arc::new(Guard::notifications(allow_private)))
            .build()
            .unwrap_or_else(|e| panic!("building the notification HTTP client: {e}"))
    };
    if allow_private {
        PRIVATE.get_or_init(build)
    } else {
        PUBLIC.get_or_init(build)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Refuses a URL that is not http(s), or whose host is (or resolves to) an address
/// [`Guard::notifications`] refuses, with a clear answer (the client's resolver enforces the
/// same at connection time, see [`client`]).
async fn check_destination(url: &reqwest::Url, allow_private: bool) -> Result<(), Failure> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure::Refused("the URL must be http or https".into()));
    }
    match Guard::notifications(allow_private).check_url(url).await {
        Ok(()) => Ok(()),
        Err(DestinationError::Refused(refused)) => Err(Failure::Refused(refused.to_string())),
        Err(DestinationError::NoHost) => Err(Failure::Refused("the URL has no host".into())),
        Err(e @ DestinationError::Unresolved { .. }) => {
            Err(Failure::Transient(e.to_string(), None))
        }
    }
}

async fn email(
    deps: &Deps,
    recipients: &[String],
    event_id: Uuid,
    alert: &Alert,
) -> Result<(), Failure> {
    let details = details_text(&alert.data);
    let body = format!(
        "{}\n\n{}{}Event: {}\nAlert id: {event_id}\n",
        alert.title,
        details,
        if details.is_empty() { "" } else { "\n\n" },
        alert.event_type
    );
    send_email(
        deps,
        recipients,
        &format!("[WorkflowOps] {}", alert.title),
        body,
        Some(&format!("<{event_id}@workflowops>")),
    )
    .await
}

/// Sends a plain-text email through the configured SMTP server (notifications, invitations).
pub async fn send_email(
    deps: &Deps,
    recipients: &[String],
    subject: &str,
    body: String,
    message_id: Option<&str>,
) -> Result<(), Failure> {
    let Some(mailer) = &deps.notify.mailer else {
        return Err(Failure::Refused(
            "email is not configured on this server (WFO_SMTP_URL, WFO_SMTP_FROM)".into(),
        ));
    };
    let mut builder = Message::builder()
        .from(mailer.from.clone())
        .subject(subject)
        .message_id(message_id.map(str::to_owned))
        .header(ContentType::TEXT_PLAIN);
    for to in recipients {
        let mailbox: Mailbox = to
            .parse()
            .map_err(|e| Failure::Refused(format!("recipient {to}: {e}")))?;
        builder = builder.to(mailbox);
    }
    let message = builder
        .body(body)
        .map_err(|e| Failure::Refused(format!("cannot build the email: {e}")))?;
    match mailer.transport.send(message).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(Failure::Refused(format!(
            "the mail server refused the message: {}",
            error_chain(&e)
        ))),
        Err(e) => Err(Failure::Transient(
            format!(
                "the mail server did not take the message: {}",
                error_chain(&e)
            ),
            None,
        )),
    }
}

/// A channel's kind as people say it.
pub fn kind_label(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Slack => "Slack",
        ChannelKind::Email => "email",
        ChannelKind::Webhook => "webhook",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slack_and_webhook_urls_must_be_public() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        for private in [
            "http://127.0.0.1/x",
            "http://10.1.2.3/x",
            "http://100.64.0.1/x",
            "http://169.254.169.254/latest/meta-data",
            "http://[fd00::1]/x",
            "http://[::ffff:10.0.0.1]/x",
            "http://localhost:9/x",
        ] {
            let refused = check_destination(&url(private), false).await;
            assert!(
                matches!(&refused, Err(Failure::Refused(m)) if m.ends_with("notifications go to public endpoints only (WFO_NOTIFY_ALLOW_PRIVATE)")),
                "{private}: {refused:?}"
            );
            let allowed = check_destination(&url(private), true).await;
            if private.contains("169.254.") {
                // Cloud metadata stays out of reach whatever the setting.
                assert!(
                    matches!(&allowed, Err(Failure::Refused(m)) if m.contains("link-local")),
                    "{private}: {allowed:?}"
                );
            } else {
                assert!(allowed.is_ok(), "{private}: {allowed:?}");
            }
        }
        assert!(
            check_destination(&url("http://8.8.8.8/x"), false)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_guarded_resolver_never_answers_a_private_address() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap_or_else(|e| panic!("{e:?}"));
        let refused = Guard::notifications(false)
            .resolve(name)
            .await
            .err()
            .map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|r| r.starts_with("`localhost` resolves to `")
                    && r.ends_with(
                        "notifications go to public endpoints only (WFO_NOTIFY_ALLOW_PRIVATE)"
                    )),
            "{refused:?}"
        );
    }

    #[test]
    fn the_signature_is_an_hmac_of_the_timestamp_and_body() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        let sig = signature("secret", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }
}
