//! Plans, subscriptions and entitlements: what a plan grants is enforced, refusals name the plan
//! that would allow it and are logged, and platform admins manage plans, assignments and
//! overrides with an audit trail (PROV-003/006/007/009/010, ENT-001..011, ADMIN-005/008/013/014,
//! TEAM-005, ENV-008, SEC-009).

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};
use workflowops_tests::{TenantFixture, TestApp};

fn feature<'a>(features: &'a Value, key: &str) -> &'a Value {
    features
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["feature"] == key))
        .map_or(&Value::Null, |f| &f["value"])
}

fn n8n_of(ent: &Value) -> &Value {
    ent["providers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["provider"] == "n8n"))
        .unwrap_or_else(|| panic!("no n8n in {ent}"))
}

async fn pipeline(app: &TestApp, t: &TenantFixture) -> workflowops_tests::app::Resp {
    app.post(
        "/api/v1/pipelines",
        &t.admin,
        &json!({"name": "Release", "provider": "n8n", "stages": [
            {"source_environment_id": Uuid::now_v7(), "target_environment_id": Uuid::now_v7()}]}),
    )
    .await
}

async fn drift_policy(app: &TestApp, t: &TenantFixture) -> workflowops_tests::app::Resp {
    let policy = app.get("/api/v1/drift/policy", &t.admin).await.body;
    app.put("/api/v1/drift/policy", &t.admin, &policy).await
}

// PROV-010, PROV-007, ENT-003, PROV-009, BILL-001
#[tokio::test]
async fn a_new_tenant_is_on_every_providers_free_plan_and_its_entitlements_say_so() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let created = app
        .post(
            "/api/v1/platform/tenants",
            &admin,
            &json!({"name": "Initech", "slug": "initech"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let tenant_id: Uuid = created.body["tenant"]["id"]
        .as_str()
        .or(created.body["id"].as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}", created.body));
    let subs: Vec<(String, String, String)> = sqlx::query_as(
        "select s.provider, p.key, s.source from tenant_subscriptions s join plans p on p.id = s.plan_id \
         where s.tenant_id = $1 order by s.provider",
    )
    .bind(tenant_id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        subs,
        vec![
            ("make".into(), "free".into(), "auto".into()),
            ("n8n".into(), "free".into(), "auto".into())
        ]
    );

    let free = app.tenant_on("freeco", "free").await;
    let ent = app.get("/api/v1/entitlements", &free.admin).await;
    assert_eq!(ent.status, 200, "{}", ent.body);
    let n8n = n8n_of(&ent.body);
    assert_eq!(n8n["plan_key"], "free");
    assert_eq!(feature(&n8n["features"], "environments"), 2);
    assert_eq!(feature(&n8n["features"], "promotions"), false);
    assert_eq!(feature(&ent.body["tenant"], "members"), 3);
    assert_eq!(feature(&ent.body["tenant"], "audit_logs"), false);

    let plans = app.get("/api/v1/plans?provider=n8n", &free.admin).await;
    assert_eq!(plans.status, 200, "{}", plans.body);
    let keys: Vec<&str> = plans
        .body
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["key"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["free", "pro", "agency", "enterprise"]);
    assert_eq!(plans.body[1]["price_cents"], 29900);
    assert_eq!(plans.body[1]["features"]["promotions"], true);
    assert_eq!(plans.body[3]["features"]["environments"], Value::Null);

    let subs = app.get("/api/v1/subscriptions", &free.admin).await;
    assert_eq!(subs.status, 200, "{}", subs.body);
    assert_eq!(subs.body.as_array().map(Vec::len), Some(2), "{}", subs.body);
}

// ENT-001, ENT-005, ENT-011, PROV-003
#[tokio::test]
async fn the_free_plan_refuses_paid_features_naming_the_plan_that_has_them_and_logs_each_refusal() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let free = app.tenant_on("freeco", "free").await;

    let refused = pipeline(&app, &free).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.code(), "feature_not_in_plan");
    let message = refused.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Free") && message.contains("the Pro plan includes it"),
        "{message}"
    );
    for (path, code) in [
        ("/api/v1/audit-logs", 403),
        ("/api/v1/observability/overview", 403),
        ("/api/v1/executions/analytics", 403),
    ] {
        let res = app.get(path, &free.admin).await;
        assert_eq!(res.status, code, "{path}: {}", res.body);
        assert_eq!(res.code(), "feature_not_in_plan", "{path}");
        if path == "/api/v1/audit-logs" {
            // A tenant-wide feature names every provider's plan.
            let message = res.body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("current plans: Free for n8n, Free for make"),
                "{message}"
            );
        }
    }
    let channel = app
        .post(
            "/api/v1/notifications/channels",
            &free.admin,
            &json!({"name": "ops", "kind": "slack", "url": "https://hooks.slack.com/services/T/B/x"}),
        )
        .await;
    assert_eq!(channel.status, 403, "{}", channel.body);
    let policy = drift_policy(&app, &free).await;
    assert_eq!(policy.status, 403, "{}", policy.body);
    assert!(
        policy.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Enterprise")),
        "{}",
        policy.body
    );

    // The same calls pass on a plan that has them.
    let pro = app.tenant_on("proco", "pro").await;
    assert_eq!(app.get("/api/v1/audit-logs", &pro.admin).await.status, 200);
    assert_eq!(
        app.get("/api/v1/observability/overview", &pro.admin)
            .await
            .status,
        200
    );
    // Pro has promotions: the request gets as far as checking the stages.
    assert_eq!(pipeline(&app, &pro).await.code(), "validation_failed");
    assert_eq!(
        drift_policy(&app, &pro).await.status,
        403,
        "drift policies are Enterprise"
    );

    let denials = app
        .get(
            &format!("/api/v1/platform/feature-denials?tenant_id={}", free.id),
            &admin,
        )
        .await;
    assert_eq!(denials.status, 200, "{}", denials.body);
    let mut features: Vec<&str> = denials
        .body
        .as_array()
        .map(|ds| ds.iter().filter_map(|d| d["feature"].as_str()).collect())
        .unwrap_or_default();
    features.sort_unstable();
    assert_eq!(
        features,
        [
            "alerting",
            "audit_logs",
            "drift_policies",
            "execution_metrics",
            "execution_metrics",
            "promotions"
        ]
    );
    assert_eq!(denials.body[0]["action"], "drift.policy_update");
    assert_eq!(
        denials.body[0]["user_email"].as_str(),
        Some(free.admin.email.as_str())
    );
    let forbidden = app
        .get("/api/v1/platform/feature-denials", &free.admin)
        .await;
    assert_eq!(forbidden.status, 403);
}

// ENV-008, TEAM-005
#[tokio::test]
async fn environment_and_seat_limits_come_from_the_plan() {
    let app = TestApp::spawn().await;
    let free = app.tenant_on("freeco", "free").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let create = |name: &'static str| {
        let body = json!({"name": name, "provider": "n8n", "base_url": n8n.base_url(),
                          "api_key": n8n.api_key(), "class": "dev"});
        let app = &app;
        let caller = &free.admin;
        async move { app.post("/api/v1/environments", caller, &body).await }
    };
    assert_eq!(create("one").await.status, 201);
    assert_eq!(create("two").await.status, 201);
    let third = create("three").await;
    assert_eq!(third.status, 409, "{}", third.body);
    assert_eq!(third.code(), "environment_limit_reached");
    assert!(
        third.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("2 n8n environments")),
        "{}",
        third.body
    );
    let list = app.get("/api/v1/environments", &free.admin).await;
    assert_eq!(
        (list.body["limit"].as_i64(), list.body["used"].as_i64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        list.body["limits"],
        json!([{"provider": "n8n", "limit": 2, "used": 2}, {"provider": "make", "limit": 2, "used": 0}])
    );

    // Three seats: the admin and two invitations; the fourth is refused and logged.
    for n in 0..2 {
        let res = app
            .post(
                "/api/v1/team/invitations",
                &free.admin,
                &json!({"email": format!("p{n}@freeco.example"), "role": "admin"}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
    }
    let over = app
        .post(
            "/api/v1/team/invitations",
            &free.admin,
            &json!({"email": "p3@freeco.example", "role": "admin"}),
        )
        .await;
    assert_eq!(over.status, 409, "{}", over.body);
    assert_eq!(over.code(), "member_limit_reached");
    let logged: Vec<String> =
        sqlx::query_scalar("select feature from feature_denials where tenant_id = $1")
            .bind(free.id)
            .fetch_all(&app.db.pool)
            .await
            .unwrap_or_default();
    assert_eq!(logged, ["members"]);
}

// ENT-006, ENT-007, ENT-010, ADMIN-008, ADMIN-014, ADMIN-005, ADMIN-013, PROV-006
#[tokio::test]
async fn platform_admins_change_plans_assign_them_and_every_change_is_audited() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let free = app.tenant_on("freeco", "free").await;

    let matrix = app.get("/api/v1/platform/plans", &admin).await;
    assert_eq!(matrix.status, 200, "{}", matrix.body);
    assert_eq!(matrix.body["features"].as_array().map(Vec::len), Some(15));
    assert_eq!(matrix.body["plans"].as_array().map(Vec::len), Some(8));
    assert_eq!(
        app.get("/api/v1/platform/plans", &free.admin).await.status,
        403
    );
    let free_plan = matrix.body["plans"]
        .as_array()
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["provider"] == "n8n" && p["key"] == "free")
        })
        .cloned()
        .unwrap_or_default();
    let free_plan_id = free_plan["id"].as_str().unwrap_or_default();

    // Bad changes are refused field by field and change nothing.
    for (body, field) in [
        (
            json!({"features": {"promotions": 3}}),
            "features.promotions",
        ),
        (
            json!({"features": {"environments": -1}}),
            "features.environments",
        ),
        (
            json!({"features": {"teleportation": true}}),
            "features.teleportation",
        ),
        (json!({"stripe_price_id": "prod_123"}), "stripe_price_id"),
        (json!({"is_default": false}), "is_default"),
    ] {
        let res = app
            .patch(
                &format!("/api/v1/platform/plans/{free_plan_id}"),
                &admin,
                &body,
            )
            .await;
        assert_eq!(res.status, 422, "{body}: {}", res.body);
        assert!(
            res.body.to_string().contains(field),
            "{field}: {}",
            res.body
        );
    }
    let deactivate = app
        .patch(
            &format!("/api/v1/platform/plans/{free_plan_id}"),
            &admin,
            &json!({"active": false}),
        )
        .await;
    assert_eq!(deactivate.status, 409, "{}", deactivate.body);
    assert_eq!(pipeline(&app, &free).await.status, 403);

    // Giving the free plan promotions lets its tenants in at once.
    let changed = app
        .patch(
            &format!("/api/v1/platform/plans/{free_plan_id}"),
            &admin,
            &json!({"features": {"promotions": true}, "description": "Now with promotions"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["features"]["promotions"], true);
    assert_eq!(changed.body["features"]["git_backup"], false, "others stay");
    assert_eq!(
        pipeline(&app, &free).await.code(),
        "validation_failed",
        "past the plan check"
    );
    let trail = app
        .get(
            "/api/v1/platform/audit-logs?action=platform.plan_updated",
            &admin,
        )
        .await;
    assert_eq!(trail.status, 200, "{}", trail.body);
    let entry = &trail.body["items"][0];
    assert_eq!(
        entry["old_value"]["features"]["promotions"], false,
        "{entry}"
    );
    assert_eq!(entry["new_value"]["features"]["promotions"], true);

    // A new plan, then a duplicate key.
    let starter = json!({"provider": "n8n", "key": "starter", "name": "Starter", "price_cents": 4900,
                         "rank": 5, "features": {"environments": 3, "members": 5, "workflow_diff": true}});
    let created = app.post("/api/v1/platform/plans", &admin, &starter).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["features"]["environments"], 3);
    assert_eq!(
        created.body["features"]["promotions"], false,
        "left out: off"
    );
    let again = app.post("/api/v1/platform/plans", &admin, &starter).await;
    assert_eq!(
        (again.status.as_u16(), again.code()),
        (409, "plan_key_taken")
    );

    // Assigning Agency by hand (custom pricing).
    let assigned = app
        .put(
            &format!("/api/v1/platform/tenants/{}/subscriptions/n8n", free.id),
            &admin,
            &json!({"plan": "agency", "reason": "signed the agency contract"}),
        )
        .await;
    assert_eq!(assigned.status, 200, "{}", assigned.body);
    assert_eq!(
        (
            assigned.body["plan_key"].as_str(),
            assigned.body["source"].as_str()
        ),
        (Some("agency"), Some("manual"))
    );
    let ent = app.get("/api/v1/entitlements", &free.admin).await;
    assert_eq!(n8n_of(&ent.body)["plan_key"], "agency");
    assert_eq!(
        feature(&n8n_of(&ent.body)["features"], "environments"),
        &Value::Null
    );
    let own_trail = app
        .get(
            "/api/v1/audit-logs?action=subscription.assigned",
            &free.admin,
        )
        .await;
    assert_eq!(own_trail.status, 200, "{}", own_trail.body);
    assert_eq!(
        own_trail.body["items"][0]["new_value"]["reason"],
        "signed the agency contract"
    );
    let unknown = app
        .put(
            &format!("/api/v1/platform/tenants/{}/subscriptions/n8n", free.id),
            &admin,
            &json!({"plan": "platinum", "reason": "typo"}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    let listed = app
        .get("/api/v1/platform/subscriptions?plan=agency", &admin)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.body.as_array().map(|s| s
            .iter()
            .map(|s| s["tenant_id"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()),
        Some(vec![free.id.to_string()])
    );

    // A disabled provider takes no new environments.
    let off = app
        .patch(
            "/api/v1/platform/providers/make",
            &admin,
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.body["enabled"], false);
    let make = app
        .post(
            "/api/v1/environments",
            &free.admin,
            &json!({"name": "m", "provider": "make", "base_url": "https://eu1.make.com?teamId=1",
                    "api_key": "k", "class": "dev"}),
        )
        .await;
    assert_eq!(
        (make.status.as_u16(), make.code()),
        (409, "provider_disabled")
    );
    let providers = app.get("/api/v1/providers", &free.admin).await;
    assert_eq!(providers.body[1]["enabled"], false, "{}", providers.body);
}

// ENT-008, ENT-009, ENT-010
#[tokio::test]
async fn overrides_grant_a_feature_until_they_expire_and_are_audited() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let free = app.tenant_on("freeco", "free").await;
    let path = format!("/api/v1/platform/tenants/{}/overrides", free.id);
    for (body, field) in [
        (
            json!({"feature": "drift_policies", "value": 1, "reason": "trial"}),
            "value",
        ),
        (
            json!({"feature": "nope", "value": true, "reason": "trial"}),
            "feature",
        ),
        (
            json!({"feature": "members", "provider": "n8n", "value": 5, "reason": "trial"}),
            "provider",
        ),
        (
            json!({"feature": "drift_policies", "value": true, "reason": "trial",
                "expires_at": (Utc::now() - Duration::hours(1)).to_rfc3339()}),
            "expires_at",
        ),
    ] {
        let res = app.post(&path, &admin, &body).await;
        assert_eq!(res.status, 422, "{body}: {}", res.body);
        assert!(
            res.body.to_string().contains(field),
            "{field}: {}",
            res.body
        );
    }
    let granted = app
        .post(
            &path,
            &admin,
            &json!({"feature": "drift_policies", "value": true, "reason": "two-week trial",
                    "expires_at": (Utc::now() + Duration::days(14)).to_rfc3339()}),
        )
        .await;
    assert_eq!(granted.status, 201, "{}", granted.body);
    assert_eq!(drift_policy(&app, &free).await.status, 200);
    let seats = app
        .post(
            &path,
            &admin,
            &json!({"feature": "members", "value": 50, "reason": "migration help"}),
        )
        .await;
    assert_eq!(seats.status, 201, "{}", seats.body);
    let ent = app.get("/api/v1/entitlements", &free.admin).await;
    assert_eq!(feature(&ent.body["tenant"], "members"), 50);
    let policies = n8n_of(&ent.body)["features"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["feature"] == "drift_policies"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(policies["source"], "override");
    assert!(policies["override_expires_at"].is_string());

    // It lapses: the plan applies again, and the hourly prune removes it with an audit entry.
    sqlx::query("update tenant_feature_overrides set expires_at = now() - interval '1 second' where feature = 'drift_policies'")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(drift_policy(&app, &free).await.status, 403);
    let _worker = workflowops_tests::engine_support::TestWorker::start(
        &app.db.pool,
        jobs::registry(&app.state.jobs),
        2,
    );
    let run = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::of::<jobs::maintenance::Prune>(
            jobs::maintenance::SYSTEM_NAMESPACE.to_owned(),
            &jobs::maintenance::PruneInput {
                retention_seconds: 86_400,
                execution_retention_seconds: None,
                snapshot_retention_days: None,
            },
        ),
    )
    .await;
    workflowops_tests::engine_support::wait_for(&app.db.pool, run, engine::RunStatus::Succeeded)
        .await;
    let expired: Vec<String> = sqlx::query_scalar(
        "select action from audit_logs where action = 'entitlement.override_expired' and tenant_id = $1",
    )
    .bind(free.id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_default();
    assert_eq!(expired.len(), 1);
    let left = app
        .get(
            &format!("/api/v1/platform/tenants/{}/entitlements", free.id),
            &admin,
        )
        .await;
    assert_eq!(left.body["overrides"].as_array().map(Vec::len), Some(1));

    // Removing the other one; then it is gone, and another tenant's id is not found.
    let id = seats.body["id"].as_str().unwrap_or_default();
    let other = app.tenant("other").await;
    let wrong = app
        .delete(
            &format!("/api/v1/platform/tenants/{}/overrides/{id}", other.id),
            &admin,
        )
        .await;
    assert_eq!(wrong.status, 404);
    let removed = app.delete(&format!("{path}/{id}"), &admin).await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    let actions: Vec<String> = sqlx::query_scalar(
        "select action from audit_logs where tenant_id is null and action like 'entitlement.%' order by occurred_at, id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_default();
    assert_eq!(
        actions,
        [
            "entitlement.override_set",
            "entitlement.override_set",
            "entitlement.override_expired",
            "entitlement.override_removed"
        ]
    );
}

// SEC-009
#[tokio::test]
async fn the_audit_log_is_kept_as_long_as_the_plan_says() {
    let app = TestApp::spawn().await;
    let free = app.tenant_on("freeco", "free").await;
    let pro = app.tenant_on("proco", "pro").await;
    let ent = app.tenant("bigco").await;
    for (tenant, days) in [
        (free.id, 10),
        (free.id, 40),
        (pro.id, 40),
        (pro.id, 100),
        (ent.id, 1000),
    ] {
        sqlx::query(
            "insert into audit_logs (id, tenant_id, actor_label, action, target_type, occurred_at) \
             values ($1, $2, 'test', 'test.old', 'tenant', now() - make_interval(days => $3))",
        )
        .bind(Uuid::now_v7())
        .bind(tenant)
        .bind(days)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // Plans that changed in the last 30 days are left alone (a downgrade erases nothing at once).
    let recent = domain::entitlements::prune_audit_by_plan(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recent, 0);
    sqlx::query("update tenant_subscriptions set updated_at = now() - interval '31 days'")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deleted = domain::entitlements::prune_audit_by_plan(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deleted, 2, "free's 40-day and pro's 100-day entries");
    let left: Vec<(Uuid, i32)> = sqlx::query_as(
        "select tenant_id, extract(day from now() - occurred_at)::int from audit_logs \
         where action = 'test.old' order by tenant_id, occurred_at desc",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_default();
    let mut expected = vec![(free.id, 10), (pro.id, 40), (ent.id, 1000)];
    expected.sort();
    let mut left = left;
    left.sort();
    assert_eq!(left, expected);
}

// ADMIN-015
#[tokio::test]
async fn platform_environment_types_reach_new_tenants_and_optionally_existing_ones() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let old = app.tenant("oldco").await;
    let path = "/api/v1/platform/environment-types";
    for (body, field) in [
        (
            json!({"key": "UAT!", "label": "UAT", "class": "staging"}),
            "key",
        ),
        (
            json!({"key": "uat", "label": "", "class": "staging"}),
            "label",
        ),
    ] {
        let res = app.post(path, &admin, &body).await;
        assert_eq!(res.status, 422, "{body}: {}", res.body);
        assert!(res.body.to_string().contains(field), "{}", res.body);
    }
    let wrong_class = app
        .post(
            path,
            &admin,
            &json!({"key": "uat", "label": "UAT", "class": "qa"}),
        )
        .await;
    assert_eq!(wrong_class.status, 422, "{}", wrong_class.body);
    assert_eq!(
        app.post(
            path,
            &old.admin,
            &json!({"key": "uat", "label": "UAT", "class": "staging"})
        )
        .await
        .status,
        403
    );

    let new_only = app
        .post(
            path,
            &admin,
            &json!({"key": "uat", "label": "User acceptance", "class": "staging", "sort_order": 2}),
        )
        .await;
    assert_eq!(new_only.status, 201, "{}", new_only.body);
    assert_eq!(new_only.body["tenants_updated"], 0);
    let everyone = app
        .post(
            path,
            &admin,
            &json!({"key": "hotfix", "label": "Hotfix", "class": "production", "apply_to_existing": true}),
        )
        .await;
    assert_eq!(everyone.status, 201, "{}", everyone.body);
    assert!(
        everyone.body["tenants_updated"].as_u64() >= Some(2),
        "{}",
        everyone.body
    );
    let again = app
        .post(
            path,
            &admin,
            &json!({"key": "uat", "label": "x", "class": "dev"}),
        )
        .await;
    assert_eq!((again.status.as_u16(), again.code()), (409, "type_exists"));

    let keys = |body: &Value| -> Vec<String> {
        body.as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t["key"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let old_types = app.get("/api/v1/environment-types", &old.admin).await;
    assert_eq!(keys(&old_types.body), ["hotfix"]);
    let new = app.tenant("newco").await;
    let new_types = app.get("/api/v1/environment-types", &new.admin).await;
    assert_eq!(keys(&new_types.body), ["hotfix", "uat"]);
    assert_eq!(new_types.body[1]["class"], "staging");

    let removed = app.delete(&format!("{path}/uat"), &admin).await;
    assert_eq!(removed.status, 204);
    assert_eq!(app.delete(&format!("{path}/uat"), &admin).await.status, 404);
    let listed = app.get(path, &admin).await;
    assert_eq!(keys(&listed.body), ["hotfix"]);
    let kept = app.get("/api/v1/environment-types", &new.admin).await;
    assert_eq!(
        keys(&kept.body),
        ["hotfix", "uat"],
        "tenants keep their copies"
    );
}

// ENT-001 after a downgrade: a backup schedule set up on a paid plan stops backing up
#[tokio::test]
async fn a_scheduled_backup_fails_saying_why_once_the_plan_no_longer_has_it() {
    let app = TestApp::spawn().await;
    let free = app.tenant_on("freeco", "free").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let env = app
        .post(
            "/api/v1/environments",
            &free.admin,
            &json!({"name": "prod", "provider": "n8n", "base_url": n8n.base_url(),
                    "api_key": n8n.api_key(), "class": "production"}),
        )
        .await;
    assert_eq!(env.status, 201, "{}", env.body);
    let environment_id: Uuid = env.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let _worker = workflowops_tests::engine_support::TestWorker::start(
        &app.db.pool,
        jobs::registry(&app.state.jobs),
        2,
    );
    let run = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::of::<jobs::snapshot::TakeSnapshot>(
            free.id.to_string(),
            &jobs::snapshot::SnapshotInput {
                tenant_id: free.id,
                environment_id,
                kind: domain::snapshots::SnapshotKind::AutoBackup,
                reason: Some("scheduled backup".into()),
                triggered_by: "schedule".into(),
                created_by: None,
                promotion_id: None,
            },
        ),
    )
    .await;
    workflowops_tests::engine_support::wait_for(&app.db.pool, run, engine::RunStatus::Failed).await;
    let view = app.get(&format!("/api/v1/runs/{run}"), &free.admin).await;
    assert!(
        view.body["error"]
            .to_string()
            .contains("no longer includes scheduled backups"),
        "{}",
        view.body
    );
}

// ENT-001: the full drift diff (Agency and up) is left out of incidents everywhere else; Git
// backup through the snapshot routes needs the plan too
#[tokio::test]
async fn incidents_leave_out_the_full_diff_and_snapshots_need_git_backup_on_lower_plans() {
    let app = TestApp::spawn().await;
    let pro = app.tenant_on("proco", "pro").await;
    let agency = app.tenant_on("agencyco", "agency").await;
    let free = app.tenant_on("freeco", "free").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    let mut incidents = Vec::new();
    for t in [&pro, &agency, &free] {
        let env = app
            .post(
                "/api/v1/environments",
                &t.admin,
                &json!({"name": "prod", "provider": "n8n", "base_url": n8n.base_url(),
                        "api_key": n8n.api_key(), "class": "production"}),
            )
            .await;
        assert_eq!(env.status, 201, "{}", env.body);
        let env: Uuid = env.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        let incident = Uuid::now_v7();
        sqlx::query(
            "insert into drift_incidents (id, tenant_id, environment_id, status, severity, title, expires_at, payload) \
             values ($1, $2, $3, 'detected', 'high', 'drift', now() + interval '1 day', $4)",
        )
        .bind(incident)
        .bind(t.id)
        .bind(env)
        .bind(json!({"wf1": {"canonical_hash": "a", "env_hash": "b", "diff": {"changes": ["secret detail"]}}}))
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        incidents.push((env, incident));
    }
    let (pro_env, pro_incident) = incidents[0];
    let (_, agency_incident) = incidents[1];
    let listed = app.get("/api/v1/incidents", &pro.admin).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(
        !listed.body.to_string().contains("secret detail"),
        "{}",
        listed.body
    );
    assert_eq!(listed.body["items"][0]["payload"]["wf1"]["env_hash"], "b");
    let one = app
        .get(&format!("/api/v1/incidents/{pro_incident}"), &pro.admin)
        .await;
    assert_eq!(one.body["full_diff"], false, "{}", one.body);
    assert!(!one.body.to_string().contains("secret detail"));
    let full = app
        .get(
            &format!("/api/v1/incidents/{agency_incident}"),
            &agency.admin,
        )
        .await;
    assert_eq!(full.body["full_diff"], true, "{}", full.body);
    assert!(full.body.to_string().contains("secret detail"));
    let listed = app.get("/api/v1/incidents", &agency.admin).await;
    assert!(listed.body.to_string().contains("secret detail"));

    // The snapshot routes back up to Git: the plan must include it.
    let (free_env, _) = incidents[2];
    let refused = app
        .post(
            &format!("/api/v1/environments/{free_env}/snapshots"),
            &free.admin,
            &json!({"reason": "manual"}),
        )
        .await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (403, "feature_not_in_plan")
    );
    let allowed = app
        .post(
            &format!("/api/v1/environments/{pro_env}/snapshots"),
            &pro.admin,
            &json!({"reason": "manual"}),
        )
        .await;
    assert_ne!(allowed.code(), "feature_not_in_plan", "{}", allowed.body);
}

/// An environment of `provider` stored directly (Make environments cannot be connected in
/// tests yet; the gates only look at the provider).
async fn stored_environment(app: &TestApp, t: &TenantFixture, provider: &str) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into environments (id, tenant_id, name, provider, base_url, api_key_secret_id, class) \
         values ($1, $2, $3, $4, 'https://example.invalid', $5, 'production')",
    )
    .bind(id)
    .bind(t.id)
    .bind(format!("{provider} production"))
    .bind(provider)
    .bind(Uuid::now_v7())
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    id
}

// L4, ENT-001, PROV-003: what spans every environment (the overview, analytics over all of
// them, the drift policy) needs the plan of every provider the tenant has environments with: a
// Make subscription does not open n8n environments' data.
#[tokio::test]
async fn views_spanning_every_environment_need_the_plan_of_each_environments_provider() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let mixed = app.tenant_on("mixed", "free").await;
    let assigned = app
        .put(
            &format!("/api/v1/platform/tenants/{}/subscriptions/make", mixed.id),
            &admin,
            &json!({"plan": "enterprise", "reason": "Make contract"}),
        )
        .await;
    assert_eq!(assigned.status, 200, "{}", assigned.body);
    let make_env = stored_environment(&app, &mixed, "make").await;

    // Only Make environments: Make's plan decides.
    for path in [
        "/api/v1/observability/overview".to_owned(),
        "/api/v1/executions/analytics".to_owned(),
        format!("/api/v1/executions/analytics?environment_id={make_env}"),
    ] {
        let res = app.get(&path, &mixed.admin).await;
        assert_eq!(res.status, 200, "{path}: {}", res.body);
    }
    assert_eq!(drift_policy(&app, &mixed).await.status, 200);

    // An n8n environment on n8n's free plan: whatever spans it is refused, naming n8n's plan.
    let n8n_env = stored_environment(&app, &mixed, "n8n").await;
    let overview = app
        .get("/api/v1/observability/overview", &mixed.admin)
        .await;
    assert_eq!(
        (overview.status.as_u16(), overview.code()),
        (403, "feature_not_in_plan"),
        "{}",
        overview.body
    );
    let message = overview.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("your n8n plan (current plan: Free)")
            && message.contains("the Pro plan includes it"),
        "{message}"
    );
    for path in [
        "/api/v1/executions/analytics".to_owned(),
        format!("/api/v1/executions/analytics?environment_id={n8n_env}"),
    ] {
        let res = app.get(&path, &mixed.admin).await;
        assert_eq!(
            (res.status.as_u16(), res.code()),
            (403, "feature_not_in_plan"),
            "{path}"
        );
    }
    // One Make environment is still Make's plan's.
    let make_only = app
        .get(
            &format!("/api/v1/executions/analytics?environment_id={make_env}"),
            &mixed.admin,
        )
        .await;
    assert_eq!(make_only.status, 200, "{}", make_only.body);
    let policy = drift_policy(&app, &mixed).await;
    assert_eq!(
        (policy.status.as_u16(), policy.code()),
        (403, "feature_not_in_plan"),
        "{}",
        policy.body
    );
    // Each refusal is logged against the provider whose plan refused.
    let logged: Vec<(String, Option<String>)> = sqlx::query_as(
        "select feature, provider from feature_denials where tenant_id = $1 order by id",
    )
    .bind(mixed.id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        logged,
        [
            ("execution_metrics".to_owned(), Some("n8n".to_owned())),
            ("execution_metrics".to_owned(), Some("n8n".to_owned())),
            ("execution_metrics".to_owned(), Some("n8n".to_owned())),
            ("drift_policies".to_owned(), Some("n8n".to_owned())),
        ]
    );
}
