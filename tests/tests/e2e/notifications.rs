//! Notifications (NOTIF-001..009): channels and rules managed over the API, alerts delivered by
//! a background run to a Slack stand-in, a customer webhook and a real SMTP listener (all on
//! loopback), with retries that never resend to a channel that took the alert.

use std::sync::Arc;
use std::time::Duration;

use domain::Role;
use domain::notifications::{Alert, EventType};
use engine::RunStatus;
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::engine_support::{TestWorker, eventually, wait_for};
use workflowops_tests::hooks::HookPeer;
use workflowops_tests::mail::{SmtpPeer, Stage};
use workflowops_tests::{TenantFixture, TestApp};

fn notify_settings(smtp: &SmtpPeer) -> jobs::notify::Settings {
    jobs::notify::Settings {
        mailer: Some(Arc::new(
            jobs::notify::Mailer::new(
                &format!("smtp://{}:{}", smtp.host(), smtp.port()),
                "WorkflowOps <alerts@workflowops.test>",
            )
            .unwrap_or_else(|e| panic!("{e}")),
        )),
        allow_private: true,
    }
}

async fn channel(app: &TestApp, t: &TenantFixture, body: Value) -> Value {
    let res = app
        .post("/api/v1/notifications/channels", &t.admin, &body)
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body
}

async fn rule(app: &TestApp, t: &TenantFixture, body: Value) -> Value {
    let res = app
        .post("/api/v1/notifications/rules", &t.admin, &body)
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

async fn raise(app: &TestApp, alert: Alert) -> Uuid {
    let mut tx = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let event = jobs::notify::raise(&mut tx, alert)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    event
}

// NOTIF-001..009
#[tokio::test]
async fn channels_and_rules_are_managed_by_admins_validated_and_audited() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let developer = app.member(&acme, Role::Developer).await;
    let viewer = app.member(&acme, Role::Viewer).await;

    // NOTIF-009: the catalog, for every member.
    let catalog = app.get("/api/v1/notifications/catalog", &viewer).await;
    assert_eq!(catalog.status, 200);
    let types: Vec<&str> = catalog.body.as_array().map_or_else(Vec::new, |a| {
        a.iter().filter_map(|e| e["event_type"].as_str()).collect()
    });
    for wanted in [
        "deployment.started",
        "deployment.completed",
        "deployment.failed",
        "drift.detected",
        "drift.resolved",
        "incident.created",
        "incident.acknowledged",
        "incident.resolved",
        "system.error",
        "backup.completed",
        "backup.failed",
    ] {
        assert!(types.contains(&wanted), "{wanted} missing from {types:?}");
    }

    // NOTIF-001..003: one channel of each kind; URLs are sealed and never shown.
    let slack_url = "https://hooks.slack.com/services/T000/B000/very-secret-token";
    let slack = channel(
        &app,
        &acme,
        json!({"name": "Ops Slack", "kind": "slack", "url": slack_url}),
    )
    .await;
    assert_eq!(slack["config"]["target"], "hooks.slack.com");
    assert_eq!(slack["enabled"], true);
    assert!(!slack.to_string().contains("very-secret-token"), "{slack}");
    let email = channel(
        &app,
        &acme,
        json!({"name": "On-call", "kind": "email", "recipients": ["oncall@example.com", "lead@example.com"]}),
    )
    .await;
    assert_eq!(
        email["config"]["recipients"],
        json!(["oncall@example.com", "lead@example.com"])
    );
    let hook = channel(
        &app,
        &acme,
        json!({"name": "CI", "kind": "webhook", "url": "https://ci.example.com/hooks/wfo",
               "signing_secret": "0123456789abcdef-signing"}),
    )
    .await;
    assert_eq!(hook["config"]["signed"], true);
    let stored: String = sqlx::query_scalar(
        "select encode(ciphertext, 'escape') from secrets s join notification_channels c on c.secret_id = s.id \
         where c.id = $1::uuid",
    )
    .bind(id(&slack))
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!stored.contains("very-secret-token"), "stored in clear");

    // Bad input: each a 422 naming the field, or a 409 for a duplicate name.
    for (body, field) in [
        (json!({"name": "x", "kind": "email"}), "recipients"),
        (
            json!({"name": "x", "kind": "email", "recipients": ["not-an-address"]}),
            "recipients[0]",
        ),
        (
            json!({"name": "x", "kind": "email", "recipients": ["a@example.com", "A@example.com"]}),
            "recipients[1]",
        ),
        (json!({"name": "x", "kind": "slack"}), "url"),
        (
            json!({"name": "x", "kind": "slack", "url": "ftp://example.com/x"}),
            "url",
        ),
        (
            json!({"name": "x", "kind": "webhook", "url": "https://e.com", "signing_secret": "short"}),
            "signing_secret",
        ),
        (
            json!({"name": "x", "kind": "slack", "url": "https://e.com", "signing_secret": "0123456789abcdef-x"}),
            "signing_secret",
        ),
        (
            json!({"name": "", "kind": "slack", "url": "https://e.com"}),
            "name",
        ),
    ] {
        let res = app
            .post("/api/v1/notifications/channels", &acme.admin, &body)
            .await;
        assert_eq!(res.status, 422, "{body}: {}", res.body);
        assert!(
            res.body.to_string().contains(field),
            "{field}: {}",
            res.body
        );
    }
    let kind = app
        .post(
            "/api/v1/notifications/channels",
            &acme.admin,
            &json!({"name": "x", "kind": "pager", "url": "https://e.com"}),
        )
        .await;
    assert_eq!(kind.status, 422, "{}", kind.body);
    let duplicate = app
        .post(
            "/api/v1/notifications/channels",
            &acme.admin,
            &json!({"name": "Ops Slack", "kind": "slack", "url": slack_url}),
        )
        .await;
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    assert_eq!(duplicate.code(), "channel_name_taken");

    // Admins only change; members read.
    let denied = app
        .post(
            "/api/v1/notifications/channels",
            &developer,
            &json!({"name": "Dev", "kind": "slack", "url": slack_url}),
        )
        .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    let listed = app.get("/api/v1/notifications/channels", &viewer).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(3));

    // NOTIF-006/007: rules name an event type and the tenant's own channels.
    let deploys = rule(
        &app,
        &acme,
        json!({"event_type": "deployment.failed", "channel_ids": [id(&slack), id(&email)]}),
    )
    .await;
    assert_eq!(deploys["enabled"], true);
    assert_eq!(
        deploys["channel_ids"].as_array().map(Vec::len),
        Some(2),
        "{deploys}"
    );
    let foreign = channel(
        &app,
        &other,
        json!({"name": "Theirs", "kind": "slack", "url": slack_url}),
    )
    .await;
    for (body, field) in [
        (
            json!({"event_type": "deployment.failed", "channel_ids": [id(&foreign)]}),
            "channel_ids",
        ),
        (
            json!({"event_type": "deployment.failed", "channel_ids": []}),
            "channel_ids",
        ),
        (
            json!({"event_type": "deployment.failed", "channel_ids": [id(&slack), id(&slack)]}),
            "channel_ids",
        ),
        (
            json!({"event_type": "deployment.failed", "channel_ids": [id(&slack)], "environment_id": Uuid::now_v7()}),
            "environment_id",
        ),
    ] {
        let res = app
            .post("/api/v1/notifications/rules", &acme.admin, &body)
            .await;
        assert_eq!(res.status, 422, "{body}: {}", res.body);
        assert!(
            res.body.to_string().contains(field),
            "{field}: {}",
            res.body
        );
    }
    let unknown_type = app
        .post(
            "/api/v1/notifications/rules",
            &acme.admin,
            &json!({"event_type": "deployment.exploded", "channel_ids": [id(&slack)]}),
        )
        .await;
    assert_eq!(unknown_type.status, 422, "{}", unknown_type.body);

    // NOTIF-004 / NOTIF-008: channels and rules are switched off and on.
    let off = app
        .patch(
            &format!("/api/v1/notifications/channels/{}", id(&slack)),
            &acme.admin,
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.body["enabled"], false);
    let rule_off = app
        .patch(
            &format!("/api/v1/notifications/rules/{}", id(&deploys)),
            &acme.admin,
            &json!({"enabled": false, "channel_ids": [id(&hook)]}),
        )
        .await;
    assert_eq!(rule_off.status, 200, "{}", rule_off.body);
    assert_eq!(rule_off.body["enabled"], false);
    assert_eq!(rule_off.body["channel_ids"], json!([id(&hook)]));
    let wrong_kind = app
        .patch(
            &format!("/api/v1/notifications/channels/{}", id(&email)),
            &acme.admin,
            &json!({"url": "https://e.com"}),
        )
        .await;
    assert_eq!(wrong_kind.status, 422, "{}", wrong_kind.body);
    let rotated = app
        .patch(
            &format!("/api/v1/notifications/channels/{}", id(&hook)),
            &acme.admin,
            &json!({"url": "https://ci2.example.com/x", "signing_secret": null}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body["config"]["target"], "ci2.example.com");
    assert_eq!(rotated.body["config"]["signed"], false);

    // Another tenant's ids are unknown here.
    let probe = app
        .get(
            &format!("/api/v1/notifications/channels/{}", id(&foreign)),
            &acme.admin,
        )
        .await;
    assert_eq!(probe.status, 404);
    let probe = app
        .delete(
            &format!("/api/v1/notifications/channels/{}", id(&foreign)),
            &acme.admin,
        )
        .await;
    assert_eq!(probe.status, 404);

    // Deleting a channel takes it out of every rule and erases its sealed URL.
    let secrets_before = app.count("secrets").await;
    let gone = app
        .delete(
            &format!("/api/v1/notifications/channels/{}", id(&hook)),
            &acme.admin,
        )
        .await;
    assert_eq!(gone.status, 204);
    assert_eq!(app.count("secrets").await, secrets_before - 1);
    let after = app
        .get(
            &format!("/api/v1/notifications/rules/{}", id(&deploys)),
            &acme.admin,
        )
        .await;
    assert_eq!(after.body["channel_ids"], json!([]));

    let actions: Vec<String> = sqlx::query_scalar(
        "select action from audit_logs where tenant_id = $1 and action like 'notification.%' order by id",
    )
    .bind(acme.id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for wanted in [
        "notification.channel_created",
        "notification.channel_updated",
        "notification.channel_deleted",
        "notification.rule_created",
        "notification.rule_updated",
    ] {
        assert!(actions.iter().any(|a| a == wanted), "{wanted}: {actions:?}");
    }
    let logged: String = sqlx::query_scalar(
        "select string_agg(coalesce(old_value::text, '') || coalesce(new_value::text, ''), ' ') \
         from audit_logs where tenant_id = $1",
    )
    .bind(acme.id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !logged.contains("very-secret-token") && !logged.contains("signing"),
        "secrets in the audit trail"
    );
}

// NOTIF-001..008
#[tokio::test]
async fn an_alert_reaches_each_selected_channel_once_with_retries_and_refusals_recorded() {
    let smtp = SmtpPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let hooks = HookPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let settings = notify_settings(&smtp);
    let app = TestApp::spawn_with(|c| c.notify = settings).await;
    let acme = app.tenant("acme").await;
    // Created in this order, delivered in this order (channel ids are time-ordered).
    let slack = channel(
        &app,
        &acme,
        json!({"name": "Slack", "kind": "slack", "url": hooks.url("/slack/T1/B1/ok")}),
    )
    .await;
    let secret = "whsec-0123456789abcdef";
    let hook = channel(
        &app,
        &acme,
        json!({"name": "CI", "kind": "webhook", "url": hooks.url("/hook/ci"), "signing_secret": secret}),
    )
    .await;
    let email = channel(
        &app,
        &acme,
        json!({"name": "Mail", "kind": "email", "recipients": ["oncall@example.com", "lead@example.com"]}),
    )
    .await;
    let revoked = channel(
        &app,
        &acme,
        json!({"name": "Old Slack", "kind": "slack", "url": hooks.url("/slack/T1/B1/revoked")}),
    )
    .await;
    let disabled = channel(
        &app,
        &acme,
        json!({"name": "Off", "kind": "webhook", "url": hooks.url("/hook/off"), "enabled": false}),
    )
    .await;
    let unruled = channel(
        &app,
        &acme,
        json!({"name": "Unruled", "kind": "webhook", "url": hooks.url("/hook/unruled")}),
    )
    .await;
    rule(
        &app,
        &acme,
        json!({"event_type": "backup.failed",
               "channel_ids": [id(&slack), id(&hook), id(&email), id(&revoked), id(&disabled)]}),
    )
    .await;
    rule(
        &app,
        &acme,
        json!({"event_type": "backup.failed", "channel_ids": [id(&unruled)], "enabled": false}),
    )
    .await;

    // The Slack stand-in rate-limits the first request; the run retries after its Retry-After.
    hooks.respond_next(429, &[("retry-after", "1")], "rate_limited", 1);
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    let event = raise(
        &app,
        Alert {
            tenant_id: acme.id,
            event_type: EventType::BackupFailed,
            environment_id: None,
            title: "Production backup to Git failed".into(),
            data: json!({"environment": "Production", "error": "remote rejected <main>"}),
        },
    )
    .await;
    let run: Uuid = sqlx::query_scalar("select run_id from alert_events where id = $1")
        .bind(event)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for(&app.db.pool, run, RunStatus::Succeeded).await;

    // Slack: refused once (429), then delivered; its message is Slack's format.
    let received = hooks.requests();
    let slack_posts: Vec<_> = received
        .iter()
        .filter(|r| r.path == "/slack/T1/B1/ok")
        .collect();
    assert_eq!(slack_posts.len(), 2, "{received:?}");
    let message = slack_posts[1].json();
    assert_eq!(message["text"], "Production backup to Git failed");
    assert!(
        message["blocks"]
            .to_string()
            .contains("remote rejected &lt;main&gt;"),
        "{message}"
    );
    // The webhook: once (not again on the retry), signed, with the alert's id.
    let ci: Vec<_> = received.iter().filter(|r| r.path == "/hook/ci").collect();
    assert_eq!(ci.len(), 1, "{received:?}");
    let body = ci[0].json();
    assert_eq!(body["type"], "backup.failed");
    assert_eq!(body["id"], json!(event));
    assert_eq!(body["data"]["environment"], "Production");
    assert_eq!(
        ci[0].header("x-workflowops-delivery"),
        Some(event.to_string().as_str())
    );
    let signature = ci[0].header("x-workflowops-signature").unwrap_or_default();
    let t: i64 = signature
        .strip_prefix("t=")
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in {signature}"));
    assert_eq!(signature, jobs::notify::signature(secret, t, &ci[0].body));
    // Email: one message to both recipients.
    let mails = smtp.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].to, vec!["oncall@example.com", "lead@example.com"]);
    assert!(
        mails[0]
            .data
            .contains("Subject: [WorkflowOps] Production backup to Git failed")
    );
    assert!(mails[0].data.contains("alerts@workflowops.test"));
    // The disabled channel and the disabled rule's channel got nothing.
    assert!(
        !received
            .iter()
            .any(|r| r.path == "/hook/off" || r.path == "/hook/unruled"),
        "{received:?}"
    );

    // What became of it, per channel, in the alert history.
    let alert = app
        .get(
            &format!("/api/v1/notifications/alerts/{event}"),
            &acme.admin,
        )
        .await;
    assert_eq!(alert.status, 200, "{}", alert.body);
    let deliveries = alert.body["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let of = |c: &Value| {
        deliveries
            .iter()
            .find(|d| d["channel_id"] == c["id"])
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(of(&slack)["status"], "sent");
    assert_eq!(of(&slack)["attempts"], 2, "{}", of(&slack));
    assert_eq!(of(&hook)["status"], "sent");
    assert_eq!(of(&hook)["attempts"], 1);
    assert_eq!(of(&email)["status"], "sent");
    assert_eq!(of(&revoked)["status"], "failed");
    assert!(
        of(&revoked)["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no_service"),
        "{}",
        of(&revoked)
    );
    assert_eq!(of(&revoked)["attempts"], 1);
    // The disabled channel was not selected at all.
    assert_eq!(of(&disabled), Value::Null);
    assert_eq!(deliveries.len(), 4, "{deliveries:?}");
    let output: Value = sqlx::query_scalar("select output from engine_runs where id = $1")
        .bind(run)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (output["sent"].clone(), output["failed"].clone()),
        (json!(3), json!(1))
    );
    // Each channel attempt is counted for operators (`/metrics`).
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_default();
    for line in [
        "workflowops_notifications_total{outcome=\"sent\"} 3",
        "workflowops_notifications_total{outcome=\"failed\"} 1",
        "workflowops_notifications_total{outcome=\"retrying\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing");
    }

    // An alert no rule selects is recorded, without a run.
    let quiet = raise(
        &app,
        Alert {
            tenant_id: acme.id,
            event_type: EventType::DriftResolved,
            environment_id: None,
            title: "Prod is back in sync".into(),
            data: json!({}),
        },
    )
    .await;
    let listed = app
        .get("/api/v1/notifications/alerts?limit=1", &acme.admin)
        .await;
    assert_eq!(listed.body["items"][0]["id"], json!(quiet));
    assert_eq!(listed.body["items"][0]["run_id"], Value::Null);
    let next = listed.body["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let page2 = app
        .get(
            &format!("/api/v1/notifications/alerts?limit=1&cursor={next}"),
            &acme.admin,
        )
        .await;
    assert_eq!(page2.body["items"][0]["id"], json!(event));
    let filtered = app
        .get(
            "/api/v1/notifications/alerts?event_type=backup.failed",
            &acme.admin,
        )
        .await;
    assert_eq!(filtered.body["items"].as_array().map(Vec::len), Some(1));

    // A mail server that refuses a recipient for good: that channel fails, without retries.
    smtp.fail_next(Stage::Rcpt, 550, "5.1.1 no such user", 1);
    let refused = raise(
        &app,
        Alert {
            tenant_id: acme.id,
            event_type: EventType::BackupFailed,
            environment_id: None,
            title: "Again".into(),
            data: json!({}),
        },
    )
    .await;
    let alert = eventually(
        "the second alert's deliveries",
        Duration::from_secs(20),
        || async {
            let a = app
                .get(
                    &format!("/api/v1/notifications/alerts/{refused}"),
                    &acme.admin,
                )
                .await;
            (a.body["deliveries"].as_array().map(Vec::len) == Some(4)).then_some(a.body)
        },
    )
    .await;
    let mail = alert["deliveries"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["channel_id"] == email["id"]).cloned())
        .unwrap_or(Value::Null);
    assert_eq!(mail["status"], "failed", "{alert}");
    assert!(
        mail["error"].as_str().unwrap_or_default().contains("550"),
        "{mail}"
    );
}

// NOTIF-005
#[tokio::test]
async fn a_channel_test_sends_now_and_reports_what_the_peer_said() {
    let smtp = SmtpPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let hooks = HookPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let settings = notify_settings(&smtp);
    let app = TestApp::spawn_with(|c| c.notify = settings).await;
    let acme = app.tenant("acme").await;
    let slack = channel(
        &app,
        &acme,
        json!({"name": "Slack", "kind": "slack", "url": hooks.url("/slack/T/B/ok"), "enabled": false}),
    )
    .await;
    let test = app
        .post(
            &format!("/api/v1/notifications/channels/{}/test", id(&slack)),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(test.status, 200, "{}", test.body);
    assert_eq!(test.body["ok"], true, "{}", test.body);
    assert_eq!(test.body["channel"]["last_test_ok"], true);
    let got = hooks.wait_for(1, Duration::from_secs(5)).await;
    assert!(
        got[0].json()["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Test message"),
        "{:?}",
        got[0]
    );

    let archived = channel(
        &app,
        &acme,
        json!({"name": "Archived", "kind": "slack", "url": hooks.url("/slack/T/B/archived")}),
    )
    .await;
    let test = app
        .post(
            &format!("/api/v1/notifications/channels/{}/test", id(&archived)),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(test.body["ok"], false, "{}", test.body);
    assert_eq!(test.body["transient"], false);
    assert!(
        test.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("channel_is_archived"),
        "{}",
        test.body
    );
    assert_eq!(test.body["channel"]["last_test_ok"], false);

    let email = channel(
        &app,
        &acme,
        json!({"name": "Mail", "kind": "email", "recipients": ["ops@example.com"]}),
    )
    .await;
    let test = app
        .post(
            &format!("/api/v1/notifications/channels/{}/test", id(&email)),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(test.body["ok"], true, "{}", test.body);
    assert_eq!(
        smtp.wait_for(1, Duration::from_secs(5)).await[0].to,
        vec!["ops@example.com"]
    );

    // A mail server that says "try later": transient.
    smtp.fail_next(Stage::Mail, 451, "4.3.0 try again later", 1);
    let test = app
        .post(
            &format!("/api/v1/notifications/channels/{}/test", id(&email)),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(test.body["ok"], false, "{}", test.body);
    assert_eq!(test.body["transient"], true, "{}", test.body);

    // An endpoint that cannot be reached: the error never carries the URL (a Slack URL is a
    // credential, and errors are shown to every member and kept in the audit log).
    let down = channel(
        &app,
        &acme,
        json!({"name": "Down", "kind": "slack", "url": "http://127.0.0.1:1/services/T0/B0/the-secret-token"}),
    )
    .await;
    let test = app
        .post(
            &format!("/api/v1/notifications/channels/{}/test", id(&down)),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(test.body["ok"], false, "{}", test.body);
    assert_eq!(test.body["transient"], true, "{}", test.body);
    assert!(
        !test.body.to_string().contains("the-secret-token"),
        "the URL leaked: {}",
        test.body
    );
    let trail: String = sqlx::query_scalar(
        "select coalesce(string_agg(coalesce(new_value::text, ''), ' '), '') from audit_logs",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !trail.contains("the-secret-token"),
        "the URL leaked into the audit log"
    );

    // A redirect is the endpoint's answer, never followed (it could point anywhere).
    let hook = channel(
        &app,
        &acme,
        json!({"name": "Moved", "kind": "webhook", "url": hooks.url("/hook/moved")}),
    )
    .await;
    let location = hooks.url("/hook/internal");
    hooks.respond_next(302, &[("location", location.as_str())], "", 1);
    let test = app
        .post(
            &format!("/api/v1/notifications/channels/{}/test", id(&hook)),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert_eq!(test.body["ok"], false, "{}", test.body);
    assert!(
        test.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("302"),
        "{}",
        test.body
    );
    assert!(
        !hooks.requests().iter().any(|r| r.path == "/hook/internal"),
        "the redirect was followed"
    );

    let developer = app.member(&acme, Role::Developer).await;
    let denied = app
        .post(
            &format!("/api/v1/notifications/channels/{}/test", id(&email)),
            &developer,
            &json!({}),
        )
        .await;
    assert_eq!(denied.status, 403);
}

/// Without `WFO_NOTIFY_ALLOW_PRIVATE`, Slack and webhook channels cannot reach the server's own
/// networks: a tenant cannot use them to probe internal services. Such a URL is refused when
/// the channel is saved, and delivery checks again (a name may resolve inside later).
#[tokio::test]
async fn channels_do_not_reach_private_addresses_unless_allowed() {
    let hooks = HookPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    for (url, says) in [
        (hooks.url("/hook/internal"), "a loopback address"),
        ("http://localhost:9/x".to_owned(), "a loopback address"),
        (
            "http://169.254.169.254/latest/meta-data".to_owned(),
            "a link-local address",
        ),
        ("http://[::1]:9/x".to_owned(), "a loopback address"),
        ("http://10.1.2.3/x".to_owned(), "a private address"),
    ] {
        let res = app
            .post(
                "/api/v1/notifications/channels",
                &acme.admin,
                &json!({"name": format!("Internal {url}"), "kind": "webhook", "url": url}),
            )
            .await;
        assert_eq!(
            (res.status.as_u16(), res.code()),
            (422, "destination_refused"),
            "{url}: {}",
            res.body
        );
        let message = res.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says) && message.contains("WFO_NOTIFY_ALLOW_PRIVATE"),
            "{url}: {message}"
        );
        assert!(
            !message.contains("/x") && !message.contains("meta-data"),
            "{message}"
        );
    }
    assert_eq!(app.count("notification_channels").await, 0);

    // A channel cannot be moved inside either.
    let public = channel(
        &app,
        &acme,
        json!({"name": "Public", "kind": "webhook", "url": "https://8.8.8.8/hook"}),
    )
    .await;
    let moved = app
        .patch(
            &format!("/api/v1/notifications/channels/{}", id(&public)),
            &acme.admin,
            &json!({"url": hooks.url("/hook/internal")}),
        )
        .await;
    assert_eq!(
        (moved.status.as_u16(), moved.code()),
        (422, "destination_refused"),
        "{}",
        moved.body
    );
    let kept = app
        .get(
            &format!("/api/v1/notifications/channels/{}", id(&public)),
            &acme.admin,
        )
        .await;
    assert_eq!(kept.body["config"]["target"], "8.8.8.8");
    assert!(hooks.requests().is_empty());

    // Email without an SMTP server configured: a clear refusal.
    let email = channel(
        &app,
        &acme,
        json!({"name": "Mail", "kind": "email", "recipients": ["ops@example.com"]}),
    )
    .await;
    let test = app
        .post(
            &format!("/api/v1/notifications/channels/{}/test", id(&email)),
            &acme.admin,
            &json!({}),
        )
        .await;
    assert!(
        test.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("WFO_SMTP_URL"),
        "{}",
        test.body
    );
}

/// Delivery keeps its own check: a channel whose address is no longer allowed (saved while
/// private addresses were, or a name that now resolves inside) is refused when sent to.
#[tokio::test]
async fn delivery_refuses_a_private_address_whatever_was_allowed_when_the_channel_was_saved() {
    let hooks = HookPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::spawn_with(|c| c.notify.allow_private = true).await;
    let acme = app.tenant("acme").await;
    let hook = channel(
        &app,
        &acme,
        json!({"name": "Internal", "kind": "webhook", "url": hooks.url("/hook/internal")}),
    )
    .await;
    let channel_id: Uuid = id(&hook).parse().unwrap_or_else(|e| panic!("{e}"));
    let mut conn = app
        .db
        .pool
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, target) =
        domain::notifications::target(&mut conn, &app.state.keyring, acme.id, channel_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let mut deps = app.state.jobs.clone();
    deps.notify.allow_private = false;
    let alert = Alert {
        tenant_id: acme.id,
        event_type: EventType::SystemError,
        environment_id: None,
        title: "internal".into(),
        data: json!({}),
    };
    let sent = jobs::notify::send(&deps, &target, Uuid::now_v7(), &alert).await;
    assert!(
        matches!(&sent, Err(jobs::notify::Failure::Refused(m))
            if m.contains("is a loopback address") && m.ends_with("public endpoints only (WFO_NOTIFY_ALLOW_PRIVATE)")),
        "{sent:?}"
    );
    assert!(hooks.requests().is_empty());
}

/// With `WFO_NOTIFY_ALLOW_PRIVATE`, channels may point at private and loopback addresses, but
/// never at link-local ones (cloud metadata services): refused under every setting.
#[tokio::test]
async fn a_link_local_channel_url_is_refused_under_every_setting() {
    let hooks = HookPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
    for allow_private in [false, true] {
        let app = TestApp::spawn_with(|c| c.notify.allow_private = allow_private).await;
        let acme = app.tenant("acme").await;
        for url in [
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:169.254.169.254]/latest/meta-data",
            "http://[fe80::1]/x",
        ] {
            for kind in ["webhook", "slack"] {
                let res = app
                    .post(
                        "/api/v1/notifications/channels",
                        &acme.admin,
                        &json!({"name": "Metadata", "kind": kind, "url": url}),
                    )
                    .await;
                assert_eq!(
                    (res.status.as_u16(), res.code()),
                    (422, "destination_refused"),
                    "allow_private={allow_private} {kind} {url}: {}",
                    res.body
                );
                assert!(
                    res.body["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("a link-local address"),
                    "{}",
                    res.body
                );
            }
        }
        assert_eq!(app.count("notification_channels").await, 0);
        let audited: i64 = sqlx::query_scalar(
            "select count(*) from audit_logs where action = 'notification.channel_created'",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(audited, 0);
        // Loopback: refused unless allowed.
        let loopback = app
            .post(
                "/api/v1/notifications/channels",
                &acme.admin,
                &json!({"name": "Local", "kind": "webhook", "url": hooks.url("/hook/local")}),
            )
            .await;
        let expected = if allow_private { 201 } else { 422 };
        assert_eq!(loopback.status, expected, "{}", loopback.body);
    }
}

// NOTIF-001..009: the web UI's notifications page, for an admin and for a viewer.
#[tokio::test]
async fn the_notifications_page_lists_everything_escaped_and_shows_controls_to_admins_only() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let viewer = app.member(&acme, Role::Viewer).await;
    let slack = channel(
        &app,
        &acme,
        json!({"name": "Ops Slack", "kind": "slack",
               "url": "https://hooks.slack.com/services/T0/B0/page-secret-token"}),
    )
    .await;
    let hostile = channel(
        &app,
        &acme,
        json!({"name": "<script>x</script>", "kind": "email", "recipients": ["oncall@example.com"],
               "enabled": false}),
    )
    .await;
    let backups = rule(
        &app,
        &acme,
        json!({"event_type": "backup.failed", "channel_ids": [id(&slack), id(&hostile)]}),
    )
    .await;
    let event = raise(
        &app,
        Alert {
            tenant_id: acme.id,
            event_type: EventType::BackupFailed,
            environment_id: None,
            title: "Nightly backup of Production failed".into(),
            data: json!({}),
        },
    )
    .await;
    let run: Uuid = sqlx::query_scalar("select run_id from alert_events where id = $1")
        .bind(event)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let page = |token: String| {
        let url = app.url("/notifications");
        async move {
            let res = reqwest::Client::new()
                .get(url)
                .header("cookie", format!("wfo_session={token}"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (res.status().as_u16(), res.text().await.unwrap_or_default())
        }
    };
    let (status, html) = page(acme.admin.token.clone()).await;
    assert_eq!(status, 200, "{html}");
    for wanted in [
        "href=\"/notifications\" aria-current=\"page\"",
        "Ops Slack",
        "hooks.slack.com",
        "oncall@example.com",
        "backup.failed",
        "A backup to Git failed.",
        "Nightly backup of Production failed",
        &format!("href=\"/runs/{run}\""),
        &format!(
            "data-api=\"PATCH /api/v1/notifications/rules/{}\"",
            id(&backups)
        ),
        &format!(
            "data-api=\"POST /api/v1/notifications/channels/{}/test\"",
            id(&slack)
        ),
        &format!(
            "data-api=\"DELETE /api/v1/notifications/channels/{}\"",
            id(&hostile)
        ),
        "id=\"new-channel\"",
        "id=\"new-rule\"",
    ] {
        assert!(html.contains(wanted), "{wanted} missing: {html}");
    }
    assert!(!html.contains("page-secret-token"), "the sealed URL shown");
    assert!(
        !html.contains("<script>x</script>") && html.contains("&#60;script&#62;x&#60;/script&#62;"),
        "the channel's name not escaped: {html}"
    );

    // A viewer reads the same lists, without a single control.
    let (status, html) = page(viewer.token.clone()).await;
    assert_eq!(status, 200, "{html}");
    for wanted in [
        "href=\"/notifications\"",
        "Ops Slack",
        "backup.failed",
        "Nightly backup of Production failed",
    ] {
        assert!(html.contains(wanted), "{wanted} missing: {html}");
    }
    for admin_only in ["data-api", "Send test", "new-channel", "new-rule", "Delete"] {
        assert!(
            !html.contains(admin_only),
            "a viewer sees {admin_only}: {html}"
        );
    }
}

/// Puts every provider of `t` on the free plan (no alerting), as a platform admin would.
async fn downgrade_to_free(app: &TestApp, t: &TenantFixture) {
    let admin = app.platform_admin().await;
    for provider in ["n8n", "make"] {
        let res = app
            .put(
                &format!("/api/v1/platform/tenants/{}/subscriptions/{provider}", t.id),
                &admin,
                &json!({"plan": "free", "reason": "downgraded"}),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
}

/// Two webhook channels a `backup.failed` rule sends to, made while the plan has alerting.
async fn two_hooks(app: &TestApp, t: &TenantFixture, hooks: &HookPeer) -> [String; 2] {
    let a = channel(
        app,
        t,
        json!({"name": "CI", "kind": "webhook", "url": hooks.url("/hook/a")}),
    )
    .await;
    let b = channel(
        app,
        t,
        json!({"name": "Ops", "kind": "webhook", "url": hooks.url("/hook/b")}),
    )
    .await;
    rule(
        app,
        t,
        json!({"event_type": "backup.failed", "channel_ids": [id(&a), id(&b)]}),
    )
    .await;
    [id(&a), id(&b)]
}

fn backup_failed(t: &TenantFixture, title: &str) -> Alert {
    Alert {
        tenant_id: t.id,
        event_type: EventType::BackupFailed,
        environment_id: None,
        title: title.into(),
        data: json!({}),
    }
}

async fn alert_denials(app: &TestApp, t: &TenantFixture) -> Vec<(String, Option<Uuid>)> {
    sqlx::query_as(
        "select feature, user_id from feature_denials where tenant_id = $1 and action = 'alert.deliver'",
    )
    .bind(t.id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn skipped_for_the_plan(alert: &Value, channels: &[String]) {
    let deliveries = alert["deliveries"].as_array().cloned().unwrap_or_default();
    assert_eq!(deliveries.len(), channels.len(), "{alert}");
    for d in &deliveries {
        assert!(
            channels.iter().any(|c| d["channel_id"] == c.as_str()),
            "{d}"
        );
        assert_eq!(d["status"], "skipped", "{d}");
        assert_eq!(d["error"], domain::notifications::NOT_IN_PLAN, "{d}");
    }
}

// ENT-001, NOTIF-001..008 after a downgrade: channels and rules made on a plan with alerting stay,
// but an alert raised once the plan lost it is kept in the alert history and sent nowhere; the
// refusal is logged once per alert, not per channel.
#[tokio::test]
async fn an_alert_raised_without_alerting_is_recorded_but_sent_to_no_channel() {
    let hooks = HookPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::spawn_with(|c| {
        c.notify = jobs::notify::Settings {
            mailer: None,
            allow_private: true,
        };
    })
    .await;
    let acme = app.tenant("acme").await;
    let channels = two_hooks(&app, &acme, &hooks).await;
    downgrade_to_free(&app, &acme).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);

    let first = raise(&app, backup_failed(&acme, "Backup failed")).await;
    let second = raise(&app, backup_failed(&acme, "Backup failed again")).await;
    for event in [first, second] {
        let alert = app
            .get(
                &format!("/api/v1/notifications/alerts/{event}"),
                &acme.admin,
            )
            .await;
        assert_eq!(alert.status, 200, "{}", alert.body);
        assert_eq!(alert.body["run_id"], Value::Null, "no delivery run");
        skipped_for_the_plan(&alert.body, &channels);
    }
    let runs: i64 =
        sqlx::query_scalar("select count(*) from engine_runs where kind = 'notification.deliver'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(runs, 0);
    assert_eq!(hooks.requests(), [], "nothing was sent");
    // One refusal per alert (two channels each), by no person.
    assert_eq!(
        alert_denials(&app, &acme).await,
        [("alerting".to_owned(), None), ("alerting".to_owned(), None)]
    );
}

// ENT-001: a delivery queued while the plan had alerting sends nothing once the plan lost it.
#[tokio::test]
async fn a_delivery_queued_before_a_downgrade_sends_nothing_after_it() {
    let hooks = HookPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::spawn_with(|c| {
        c.notify = jobs::notify::Settings {
            mailer: None,
            allow_private: true,
        };
    })
    .await;
    let acme = app.tenant("acme").await;
    let channels = two_hooks(&app, &acme, &hooks).await;
    // Raised while the plan includes alerting: its delivery is queued (no worker yet).
    let event = raise(&app, backup_failed(&acme, "Backup failed")).await;
    let run: Option<Uuid> = sqlx::query_scalar("select run_id from alert_events where id = $1")
        .bind(event)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let run = run.unwrap_or_else(|| panic!("no delivery run was queued"));

    downgrade_to_free(&app, &acme).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    wait_for(&app.db.pool, run, RunStatus::Succeeded).await;

    assert_eq!(hooks.requests(), [], "nothing was sent after the downgrade");
    let alert = app
        .get(
            &format!("/api/v1/notifications/alerts/{event}"),
            &acme.admin,
        )
        .await;
    skipped_for_the_plan(&alert.body, &channels);
    let output: Value = sqlx::query_scalar("select output from engine_runs where id = $1")
        .bind(run)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (output["sent"].clone(), output["skipped"].clone()),
        (json!(0), json!(2))
    );
    assert_eq!(
        alert_denials(&app, &acme).await,
        [("alerting".to_owned(), None)],
        "logged once for the run"
    );
}
