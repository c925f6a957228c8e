//! Tenant isolation: walks every route in the OpenAPI document as tenant B, naming tenant A's
//! ids, and checks nothing of A's is ever returned or changed.

use std::collections::HashMap;

use domain::Role;
use reqwest::Method;
use serde_json::{Value, json};
use workflowops_tests::TestApp;

/// A body for every operation that takes one (valid in shape, so the id check is what answers).
fn body_for(method: &str, path: &str) -> Option<Value> {
    Some(match (method, path) {
        ("patch", "/api/v1/team/members/{user_id}") => json!({"role": "viewer"}),
        ("post", "/api/v1/api-keys/{key_id}/rotate") => json!({}),
        ("post", "/api/v1/runs/{run_id}/signals") => json!({"name": "approval"}),
        ("patch", "/api/v1/environments/{environment_id}") => json!({"name": "renamed"}),
        ("post", "/api/v1/environments/{environment_id}/sync") => json!({}),
        ("post", "/api/v1/environments/{environment_id}/workflows/{workflow_id}/actions") => {
            json!({"action": "deactivate"})
        }
        ("put", "/api/v1/environments/{environment_id}/workflows/{workflow_id}/tags") => {
            json!({"tags": ["x"]})
        }
        ("post", "/api/v1/environments/{environment_id}/workflows/zip") => json!({}),
        ("post", "/api/v1/environments/{environment_id}/restore") => json!({}),
        ("put", "/api/v1/environments/{environment_id}/git") => {
            json!({"url": "https://example.invalid/r.git", "auth": "none"})
        }
        ("post", "/api/v1/environments/{environment_id}/workflows/bulk-actions") => {
            json!({"action": "deactivate", "workflow_ids": ["wfacme1"]})
        }
        ("post", "/api/v1/environments/{environment_id}/workflows") => {
            json!({"workflows": [{"name": "x", "nodes": [], "connections": {}, "settings": {}}]})
        }
        ("put", "/api/v1/canonical/workflows/{canonical_id}/environments/{environment_id}") => {
            json!({"workflow_id": "wfacme1"})
        }
        ("put", "/api/v1/pipelines/{pipeline_id}") => {
            json!({"name": "x", "provider": "n8n", "stages": []})
        }
        ("patch", "/api/v1/incidents/{incident_id}") => json!({"ticket_ref": "X-1"}),
        ("post", "/api/v1/incidents/{incident_id}/transition") => json!({"to": "acknowledged"}),
        ("post", "/api/v1/incidents/{incident_id}/extend") => json!({"hours": 1}),
        ("post", "/api/v1/incidents/{incident_id}/reconcile") => json!({"resolution": "revert"}),
        ("post", "/api/v1/environments/{environment_id}/drift-check")
        | ("post", "/api/v1/drift-approvals/{approval_id}/approve")
        | ("post", "/api/v1/drift-approvals/{approval_id}/reject") => json!({}),
        ("post", "/api/v1/promotions/{promotion_id}/approve")
        | ("post", "/api/v1/promotions/{promotion_id}/reject") => json!({}),
        ("post", "/api/v1/environments/{environment_id}/snapshots")
        | ("post", "/api/v1/snapshots/{snapshot_id}/restore")
        | ("post", "/api/v1/webhooks/github/{tenant_id}") => json!({}),
        ("patch", "/api/v1/notifications/channels/{channel_id}") => json!({"enabled": false}),
        ("patch", "/api/v1/notifications/rules/{rule_id}") => json!({"enabled": false}),
        ("post", "/api/v1/platform/tenants/{tenant_id}/notes")
        | ("post", "/api/v1/support/tickets/{ticket_id}/messages")
        | ("post", "/api/v1/platform/support/tickets/{ticket_id}/messages") => json!({"body": "x"}),
        ("post", "/api/v1/support/tickets/{ticket_id}/attachments") => json!({}),
        ("patch", "/api/v1/platform/support/tickets/{ticket_id}") => json!({"status": "closed"}),
        ("patch", "/api/v1/platform/tenants/{tenant_id}") => json!({"name": "taken over"}),
        ("patch", "/api/v1/platform/providers/{provider}") => json!({"enabled": false}),
        ("post", "/api/v1/billing/subscriptions/{provider}/change") => json!({"plan": "pro"}),
        ("post", "/api/v1/billing/subscriptions/{provider}/cancel") => json!({}),
        ("patch", "/api/v1/platform/plans/{plan_id}") => json!({"features": {"members": 0}}),
        ("put", "/api/v1/platform/tenants/{tenant_id}/subscriptions/{provider}") => {
            json!({"plan": "free", "reason": "taking over"})
        }
        ("post", "/api/v1/platform/tenants/{tenant_id}/overrides") => {
            json!({"feature": "members", "value": 0, "reason": "taking over"})
        }
        ("post", "/api/v1/workflow-action-requests/{request_id}/approve")
        | ("post", "/api/v1/workflow-action-requests/{request_id}/reject") => json!({}),
        _ => return None,
    })
}

struct SeededEnvironment {
    environment: uuid::Uuid,
    workflow: String,
    credential: String,
    execution: String,
    env_type: uuid::Uuid,
    request: uuid::Uuid,
    canonical: String,
    snapshot: uuid::Uuid,
    pipeline: uuid::Uuid,
    promotion: uuid::Uuid,
    incident: uuid::Uuid,
    approval: uuid::Uuid,
}

/// An environment of `tenant` with a synced workflow, credential and execution, written
/// straight to the store (no provider needed: nothing here reaches it).
async fn seed_environment(app: &TestApp, tenant: uuid::Uuid) -> SeededEnvironment {
    use domain::environments::{self, DriftMode, EnvironmentClass, NewEnvironment};
    let mut tx = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let t = environments::create_type(&mut *tx, tenant, "uat", "UAT", EnvironmentClass::Staging, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let env = environments::create(
        &mut tx,
        &app.state.keyring,
        NewEnvironment {
            tenant_id: tenant,
            name: "acme-prod",
            provider: "n8n",
            base_url: "http://127.0.0.1:9",
            api_key: &secrecy::SecretString::from("k".to_owned()),
            class: EnvironmentClass::Production,
            env_type: None,
            drift_mode: DriftMode::WarnOnly,
            provider_version: Some("2.41.1"),
            capabilities: &json!({}),
            rate_limit: 10.0,
            max_concurrency: 1,
            created_by: None,
            limit: 10,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let workflow = json!({"id": "wfacme1", "name": "Orders", "nodes": [
        {"name": "Call", "type": "n8n-nodes-base.httpRequest", "typeVersion": 4, "position": [0, 0],
         "parameters": {}, "credentials": {"httpBasicAuth": {"id": "credacme1", "name": "Shop"}}}],
        "connections": {}, "settings": {}});
    domain::catalog::upsert_workflows(&mut tx, tenant, env.id, uuid::Uuid::nil(), &[workflow])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    domain::catalog::derive_credentials(&mut *tx, tenant, env.id, uuid::Uuid::nil())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    domain::catalog::upsert_executions(
        &mut tx,
        tenant,
        env.id,
        &[domain::catalog::ExecutionRow {
            environment_id: env.id,
            // Long enough never to turn up by chance in another tenant's ids, stamps or tokens
            // (the four-digit id it had once turned up in an unrelated response: a flaky failure).
            provider_id: "730004242417".into(),
            workflow_id: Some("wfacme1".into()),
            workflow_name: None,
            status: "error".into(),
            mode: None,
            finished: true,
            started_at: Some(chrono::Utc::now()),
            stopped_at: None,
            error_message: Some("boom".into()),
        }],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let request = domain::action_requests::create(
        &mut *tx,
        domain::action_requests::NewRequest {
            tenant_id: tenant,
            environment_id: env.id,
            workflow_id: "wfacme1",
            workflow_name: "Orders",
            action: domain::policy::Action::Activate,
            reason: None,
            requested_by: None,
            requested_by_label: "fixture",
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    domain::canonical::record_onboarded(
        &mut tx,
        tenant,
        None,
        Some("0000000000000000000000000000000000000001"),
        &[domain::canonical::Onboarded {
            canonical_id: "orders-acme01".into(),
            environment_id: env.id,
            provider_id: "wfacme1".into(),
            provider: "n8n".into(),
            name: "Orders".into(),
            definition: json!({"name": "Orders", "nodes": [], "connections": {}}),
        }],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let snapshot = domain::snapshots::record(
        &mut *tx,
        tenant,
        &domain::snapshots::NewSnapshot {
            environment_id: env.id,
            kind: domain::snapshots::SnapshotKind::ManualBackup,
            reason: None,
            run_id: uuid::Uuid::now_v7(),
            created_by: None,
            triggered_by: "fixture",
            promotion_id: None,
            git_commit: "0000000000000000000000000000000000000001",
            git_path: "environments/acme-prod",
            workflows: &[],
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stages = [domain::pipelines::Stage {
        source_environment_id: env.id,
        target_environment_id: env.id,
        gates: Default::default(),
        policy: Default::default(),
        approvals: Default::default(),
        window: None,
    }];
    let pipeline = domain::pipelines::create(
        &mut *tx,
        tenant,
        None,
        &domain::pipelines::NewPipeline {
            name: "Release",
            description: None,
            provider: "n8n",
            stages: &stages,
            active: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let promotion = domain::promotions::create(
        &mut *tx,
        tenant,
        &domain::promotions::NewPromotion {
            id: uuid::Uuid::now_v7(),
            pipeline_id: pipeline.id,
            stage_index: 0,
            source_environment_id: env.id,
            target_environment_id: env.id,
            workflow_ids: &["wfacme1".to_owned()],
            requested_by: None,
            requested_by_label: "fixture",
            note: None,
            force: false,
            scheduled_at: None,
            run_id: uuid::Uuid::now_v7(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let incident = domain::drift::create_incident(
        &mut *tx,
        tenant,
        &domain::drift::NewIncident {
            environment_id: env.id,
            severity: domain::drift::Severity::High,
            title: "drift",
            ttl_hours: 48,
            affected: &json!([{"workflow_id": "wfacme1", "kind": "drift"}]),
            payload: &json!({}),
            check_id: uuid::Uuid::now_v7(),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let approval = domain::drift::request_approval(
        &mut *tx,
        tenant,
        incident.id,
        domain::drift::ApprovalAction::ExtendTtl,
        &json!({"hours": 1}),
        None,
        "fixture",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    SeededEnvironment {
        incident: incident.id,
        approval: approval.id,
        pipeline: pipeline.id,
        promotion: promotion.id,
        canonical: "orders-acme01".into(),
        snapshot: snapshot.id,
        request: request.id,
        environment: env.id,
        workflow: "wfacme1".into(),
        credential: "credacme1".into(),
        execution: "730004242417".into(),
        env_type: t.id,
    }
}

#[tokio::test]
async fn another_tenants_ids_get_404_on_every_route_and_change_nothing() {
    let app = TestApp::spawn().await;
    let a = app.tenant("acme").await;
    let a_member = app.member(&a, Role::Developer).await;
    let a_key = app.api_key(&a, Role::Developer).await;
    let invite = app
        .post(
            "/api/v1/team/invitations",
            &a.admin,
            &json!({"email": "pending@acme.example", "role": "viewer"}),
        )
        .await;
    let a_invitation = invite.body["invitation"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let a_run = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::new(a.id.to_string(), "diagnostics.ledger", json!({"steps": 1}))
            .run_at(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    let a_env = seed_environment(&app, a.id).await;
    let a_channel = app
        .post(
            "/api/v1/notifications/channels",
            &a.admin,
            &json!({"name": "Ops", "kind": "webhook", "url": "https://hooks.acme.example/x"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let a_rule = app
        .post(
            "/api/v1/notifications/rules",
            &a.admin,
            &json!({"event_type": "backup.failed", "channel_ids": [a_channel]}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let a_alert = {
        let mut tx = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let id = domain::notifications::raise(
            &mut tx,
            &domain::notifications::Alert {
                tenant_id: a.id,
                event_type: domain::notifications::EventType::SystemError,
                environment_id: None,
                title: "fixture".into(),
                data: json!({}),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .event_id;
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        id
    };
    let a_impersonation = {
        let mut tx = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let (_, started) = domain::impersonation::start(
            &mut tx,
            domain::impersonation::NewImpersonation {
                admin_user_id: a_member.user_id.unwrap_or_default(),
                target_user_id: a.admin.user_id.unwrap_or_default(),
                tenant_id: a.id,
                reason: "fixture for the walk",
                ttl: chrono::Duration::minutes(5),
                ip: None,
                user_agent: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        started.id
    };
    let a_note = domain::usage::add_note(
        &app.db.pool,
        a.id,
        "fixture",
        a.admin.user_id.unwrap_or_default(),
        "fixture",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .id;
    let (a_ticket, a_attachment) = {
        let mut tx = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let ticket = domain::support::create(
            &mut tx,
            domain::support::NewTicket {
                tenant_id: a.id,
                kind: domain::support::TicketKind::Bug,
                title: "fixture",
                description: "fixture",
                priority: domain::support::TicketPriority::Normal,
                requester_user_id: None,
                requester_email: "fixture@acme.example",
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .ticket
        .id;
        let file = domain::support::attach(
            &mut tx,
            Some(a.id),
            ticket,
            domain::support::NewAttachment {
                filename: "a.txt",
                content_type: "text/plain",
                data: b"x",
                uploaded_by: "fixture",
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        (ticket, file)
    };
    let a_override = {
        let mut conn = app
            .db
            .pool
            .acquire()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        domain::entitlements::put_override(
            &mut conn,
            a.id,
            &domain::entitlements::OverrideInput {
                provider: None,
                feature: domain::entitlements::Feature::Members,
                value: &json!(40),
                reason: "fixture",
                expires_at: None,
                created_by: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .1
        .id
    };
    // A private plan, so that no list tenant B may read names it.
    let a_plan: uuid::Uuid = sqlx::query_scalar(
        "insert into plans (id, provider, key, name, public) \
         values (gen_random_uuid(), 'n8n', 'acme-custom', 'Acme custom', false) returning id",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let b = app.tenant("globex").await;

    let ids: HashMap<&str, String> = HashMap::from([
        ("provider", "n8n".to_owned()),
        ("key", "fixture-type".to_owned()),
        ("plan_id", a_plan.to_string()),
        ("override_id", a_override.to_string()),
        (
            "user_id",
            a_member.user_id.map(|u| u.to_string()).unwrap_or_default(),
        ),
        (
            "key_id",
            a_key.key_id.map(|k| k.to_string()).unwrap_or_default(),
        ),
        ("invitation_id", a_invitation.clone()),
        ("tenant_id", a.id.to_string()),
        ("run_id", a_run.to_string()),
        ("environment_id", a_env.environment.to_string()),
        ("workflow_id", a_env.workflow.clone()),
        ("credential_id", a_env.credential.clone()),
        ("execution_id", a_env.execution.clone()),
        ("type_id", a_env.env_type.to_string()),
        ("request_id", a_env.request.to_string()),
        ("canonical_id", a_env.canonical.clone()),
        ("snapshot_id", a_env.snapshot.to_string()),
        ("pipeline_id", a_env.pipeline.to_string()),
        ("promotion_id", a_env.promotion.to_string()),
        ("incident_id", a_env.incident.to_string()),
        ("approval_id", a_env.approval.to_string()),
        ("channel_id", a_channel.clone()),
        ("rule_id", a_rule.clone()),
        ("alert_id", a_alert.to_string()),
        ("impersonation_id", a_impersonation.to_string()),
        ("note_id", a_note.to_string()),
        ("ticket_id", a_ticket.to_string()),
        ("attachment_id", a_attachment.to_string()),
    ]);

    let doc = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .body;
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    let mut walked = 0;
    for (template, item) in &paths {
        for (method, op) in item.as_object().cloned().unwrap_or_default() {
            if template == "/api/v1/auth/logout" || template == "/api/v1/events" {
                continue; // names no ids, and would end the walking session / never end
            }
            let mut path = template.clone();
            for (name, id) in &ids {
                path = path.replace(&format!("{{{name}}}"), id);
            }
            assert!(
                !path.contains('{'),
                "isolation walk: no id of tenant A for a parameter of {template}"
            );
            let takes_body = op.get("requestBody").is_some();
            let body = body_for(&method, template);
            if template.contains('{') && takes_body {
                assert!(
                    body.is_some(),
                    "isolation walk: add a body for {method} {template}"
                );
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap_or(Method::GET);
            let res = app
                .request(m, &path, Some(&b.admin.token), body.as_ref())
                .await;
            let text = res.body.to_string();
            for id in ids
                .iter()
                // a provider's name and a platform type's key are no secrets
                .filter(|(name, _)| **name != "provider" && **name != "key")
                .map(|(_, id)| id)
                .filter(|_| template.contains('{') || method == "get")
            {
                assert!(
                    !text.contains(id.as_str()) || template.starts_with("/api/v1/openapi"),
                    "{method} {template} leaked tenant A's id {id}: {text}"
                );
            }
            // Paths whose only parameter is a provider name own no tenant's ids: what they
            // answer is the caller's own business (no paid subscription, …).
            let names_an_id = template.replace("{provider}", "").contains('{');
            if names_an_id || (template.contains('{') && template.starts_with("/api/v1/platform/"))
            {
                let expected = if template.starts_with("/api/v1/platform/") {
                    403
                } else if template == "/api/v1/webhooks/github/{tenant_id}" {
                    // Unauthenticated: its answer never depends on the tenant (an unsigned
                    // delivery is 401 whether or not the tenant has a webhook).
                    401
                } else {
                    404
                };
                assert_eq!(
                    res.status.as_u16(),
                    expected,
                    "{method} {template} as another tenant: {text}"
                );
                walked += 1;
            }
        }
    }
    assert!(walked >= 8, "walked only {walked} routes with ids");

    // Tenant A is untouched.
    let plan: (String, i64) = sqlx::query_as(
        "select p.key, (select count(*) from tenant_feature_overrides where tenant_id = $1) \
         from tenant_subscriptions s join plans p on p.id = s.plan_id \
         where s.tenant_id = $1 and s.provider = 'n8n'",
    )
    .bind(a.id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        plan,
        ("enterprise".to_owned(), 1),
        "plan and override untouched"
    );
    let member = app
        .get(
            &format!("/api/v1/team/members/{}", ids["user_id"]),
            &a.admin,
        )
        .await;
    assert_eq!(member.body["role"], "developer");
    assert_eq!(app.get("/api/v1/me", &a_key).await.status, 200);
    let pending = app
        .get("/api/v1/team/invitations?status=pending", &a.admin)
        .await;
    assert_eq!(pending.body["items"][0]["id"], a_invitation.as_str());
    let run = app.get(&format!("/api/v1/runs/{a_run}"), &a.admin).await;
    assert_eq!(
        run.body["status"], "waiting",
        "another tenant's calls left the run alone"
    );
    let env = app
        .get(
            &format!("/api/v1/environments/{}", a_env.environment),
            &a.admin,
        )
        .await;
    assert_eq!(
        env.body["name"], "acme-prod",
        "another tenant's calls left the environment alone"
    );
    let pending: String = sqlx::query_scalar("select status from workflow_action_requests")
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(
        pending, "pending",
        "another tenant cannot decide tenant A's requests"
    );
    let signals: i64 = sqlx::query_scalar("select count(*) from engine_signals")
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or(-1);
    assert_eq!(signals, 0);
    let channel = app
        .get(
            &format!("/api/v1/notifications/channels/{a_channel}"),
            &a.admin,
        )
        .await;
    assert_eq!(
        channel.body["enabled"], true,
        "another tenant cannot switch tenant A's channel off"
    );
    let rule = app
        .get(&format!("/api/v1/notifications/rules/{a_rule}"), &a.admin)
        .await;
    assert_eq!(rule.body["enabled"], true);
    let ticket = app
        .get(&format!("/api/v1/support/tickets/{a_ticket}"), &a.admin)
        .await;
    assert_eq!(
        (
            ticket.body["status"].clone(),
            ticket.body["conversation"].as_array().map(Vec::len)
        ),
        (json!("open"), Some(1)),
        "another tenant cannot close or answer tenant A's ticket"
    );
}
