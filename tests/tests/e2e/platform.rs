use domain::Role;
use serde_json::{Value, json};
use workflowops_tests::{Caller, TestApp};

// PLAT-004, PLAT-011
#[tokio::test]
async fn a_platform_admin_lists_and_searches_every_tenant() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    app.tenant("acme").await;
    app.tenant("globex").await;
    let all = app.get("/api/v1/platform/tenants", &admin).await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    assert_eq!(all.body["items"].as_array().map(Vec::len), Some(3));
    let found = app.get("/api/v1/platform/tenants?q=glob", &admin).await;
    assert_eq!(found.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(found.body["items"][0]["slug"], "globex");
    let id = found.body["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let detail = app
        .get(&format!("/api/v1/platform/tenants/{id}"), &admin)
        .await;
    assert_eq!(detail.body["member_count"], 1);
    assert_eq!(detail.body["subscriptions"][0]["plan_key"], "enterprise");
    let wildcard = app.get("/api/v1/platform/tenants?q=%25", &admin).await;
    assert_eq!(wildcard.body["items"].as_array().map(Vec::len), Some(0));

    // ADMIN-001: by plan and by subscription status.
    app.tenant_on("initech", "pro").await;
    let pro = app.get("/api/v1/platform/tenants?plan=pro", &admin).await;
    assert_eq!(pro.status, 200, "{}", pro.body);
    let slugs: Vec<&str> = pro.body["items"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["slug"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(slugs, ["initech"]);
    sqlx::query("update tenant_subscriptions s set status = 'past_due' from tenants t where t.id = s.tenant_id and t.slug = 'acme' and s.provider = 'n8n'")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let late = app
        .get(
            "/api/v1/platform/tenants?status=past_due&plan=enterprise",
            &admin,
        )
        .await;
    assert_eq!(late.body["items"][0]["slug"], "acme", "{}", late.body);
    assert_eq!(late.body["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_platform_admin_creates_a_tenant_with_its_first_admin() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    // An existing user becomes admin at once.
    let res = app
        .post(
            "/api/v1/platform/tenants",
            &admin,
            &json!({"name": "Initech", "slug": "initech", "admin_email": acme.admin.email}),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert_eq!(
        res.body["admin_user_id"],
        acme.admin
            .user_id
            .map(|u| u.to_string())
            .unwrap_or_default()
    );
    // Someone without an account is invited.
    let res = app
        .post(
            "/api/v1/platform/tenants",
            &admin,
            &json!({"name": "Hooli", "slug": "hooli", "admin_email": "gavin@hooli.example"}),
        )
        .await;
    assert_eq!(res.status, 201);
    assert!(
        res.body["admin_invitation_token"]
            .as_str()
            .unwrap_or_default()
            .starts_with("wfo_i_")
    );
    let dup = app
        .post(
            "/api/v1/platform/tenants",
            &admin,
            &json!({"name": "Again", "slug": "hooli"}),
        )
        .await;
    assert_eq!((dup.status.as_u16(), dup.code()), (409, "slug_taken"));
    let bad = app
        .post(
            "/api/v1/platform/tenants",
            &admin,
            &json!({"name": "Bad", "slug": "Not A Slug"}),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["errors"][0]["field"], "slug");
}

// PLAT-002
#[tokio::test]
async fn platform_admins_are_added_and_removed_but_never_the_last() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let other = app.member(&acme, Role::Viewer).await;
    assert_eq!(
        app.get("/api/v1/platform/tenants", &other).await.status,
        403
    );
    let res = app
        .post(
            "/api/v1/platform/admins",
            &admin,
            &json!({"email": other.email}),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    // Takes effect on the next request.
    assert_eq!(
        app.get("/api/v1/platform/tenants", &other).await.status,
        200
    );
    let again = app
        .post(
            "/api/v1/platform/admins",
            &admin,
            &json!({"email": other.email}),
        )
        .await;
    assert_eq!(again.status, 409);
    let list = app.get("/api/v1/platform/admins", &admin).await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(2));

    let other_id = other.user_id.unwrap_or_default();
    assert_eq!(
        app.delete(&format!("/api/v1/platform/admins/{other_id}"), &admin)
            .await
            .status,
        204
    );
    assert_eq!(
        app.get("/api/v1/platform/tenants", &other).await.status,
        403
    );
    let me = admin.user_id.unwrap_or_default();
    let last = app
        .delete(&format!("/api/v1/platform/admins/{me}"), &admin)
        .await;
    assert_eq!(
        (last.status.as_u16(), last.code()),
        (409, "last_platform_admin")
    );
    let logged: i64 =
        sqlx::query_scalar("select count(*) from audit_logs where action like 'platform_admin.%'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_default();
    assert_eq!(logged, 2);
}

// PLAT-005..010, PLAT-012..014
#[tokio::test]
async fn a_platform_admin_impersonates_a_member_for_a_reason_and_every_step_is_audited() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let developer = app.member(&acme, Role::Developer).await;
    let dev_id = developer.user_id.unwrap_or_default();

    // PLAT-012/014: the support console finds the tenant's users with their roles.
    let users = app
        .get(
            &format!("/api/v1/platform/tenants/{}/users?q=developer", acme.id),
            &admin,
        )
        .await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert_eq!(users.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(users.body["items"][0]["role"], "developer");
    assert_eq!(users.body["items"][0]["can_impersonate"], true);
    let all = app
        .get(
            &format!("/api/v1/platform/tenants/{}/users", acme.id),
            &admin,
        )
        .await;
    assert_eq!(all.body["items"].as_array().map(Vec::len), Some(2));
    // Tenant members cannot use the console.
    let denied = app
        .get(
            &format!("/api/v1/platform/tenants/{}/users", acme.id),
            &acme.admin,
        )
        .await;
    assert_eq!(denied.status, 403);

    // Bad requests: no reason, too long, not a member, a platform admin, oneself.
    for (body, status) in [
        (
            json!({"tenant_id": acme.id, "user_id": dev_id, "reason": "short"}),
            422,
        ),
        (
            json!({"tenant_id": acme.id, "user_id": dev_id, "reason": "ticket SUP-1 export", "minutes": 600}),
            422,
        ),
        (
            json!({"tenant_id": acme.id, "user_id": admin.user_id, "reason": "ticket SUP-1 export"}),
            409,
        ),
        (
            json!({"tenant_id": acme.id, "user_id": uuid::Uuid::now_v7(), "reason": "ticket SUP-1 export"}),
            404,
        ),
    ] {
        let res = app
            .post("/api/v1/platform/impersonations", &admin, &body)
            .await;
        assert_eq!(res.status.as_u16(), status, "{body}: {}", res.body);
    }
    // PLAT-009: another platform admin, even one who is a tenant member, cannot be impersonated.
    let other_admin = app.member(&acme, Role::Admin).await;
    domain::tenancy::add_platform_admin(
        &app.db.pool,
        other_admin.user_id.unwrap_or_default(),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let refused = app
        .post(
            "/api/v1/platform/impersonations",
            &admin,
            &json!({"tenant_id": acme.id, "user_id": other_admin.user_id, "reason": "ticket SUP-1 export"}),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.code(), "cannot_impersonate_platform_admin");

    // PLAT-005: start.
    let started = app
        .post(
            "/api/v1/platform/impersonations",
            &admin,
            &json!({"tenant_id": acme.id, "user_id": dev_id, "reason": "ticket SUP-42: sync fails", "minutes": 30}),
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.body);
    let id = started.body["impersonation"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(started.body["impersonation"]["active"], true);
    assert_eq!(
        started.body["impersonation"]["reason"],
        "ticket SUP-42: sync fails"
    );
    let as_dev = Caller::bearer(started.body["token"].as_str().unwrap_or_default());

    // The session acts as the developer, in acme, without platform rights.
    let me = app.get("/api/v1/me", &as_dev).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["user"]["id"], json!(dev_id));
    assert_eq!(me.body["tenant"]["role"], "developer");
    assert_eq!(me.body["platform_admin"], false);
    assert_eq!(me.body["impersonated_by"], json!(admin.email));
    assert_eq!(
        app.get("/api/v1/platform/tenants", &as_dev).await.status,
        403
    );
    // It cannot wander to other tenants.
    let switch = app
        .post(
            "/api/v1/auth/switch-tenant",
            &as_dev,
            &json!({"tenant": "ops"}),
        )
        .await;
    assert_eq!(switch.status, 403, "{}", switch.body);
    assert_eq!(switch.code(), "impersonation_restricted");

    // PLAT-008: a change made while impersonating names the admin.
    let channel = app
        .post(
            "/api/v1/notifications/channels",
            &as_dev,
            &json!({"name": "x", "kind": "email", "recipients": ["a@b.example"]}),
        )
        .await;
    assert_eq!(channel.status, 403, "a developer cannot: {}", channel.body);
    let run = app
        .post(
            "/api/v1/runs/00000000-0000-0000-0000-000000000000/cancel",
            &as_dev,
            &json!({}),
        )
        .await;
    assert_eq!(run.status, 404);
    let invite_as_admin = {
        // Impersonating the tenant's admin to make a change that is audited.
        let target = acme.admin.user_id.unwrap_or_default();
        let res = app
            .post(
                "/api/v1/platform/impersonations",
                &admin,
                &json!({"tenant_id": acme.id, "user_id": target, "reason": "ticket SUP-43: invite a colleague"}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        Caller::bearer(res.body["token"].as_str().unwrap_or_default())
    };
    // Even as an admin, it cannot mint credentials that would outlive it.
    let key = app
        .post(
            "/api/v1/api-keys",
            &invite_as_admin,
            &json!({"name": "backdoor"}),
        )
        .await;
    assert_eq!(key.status, 403, "{}", key.body);
    assert_eq!(key.code(), "impersonation_restricted");
    // Nor let anyone in who would stay after it ends.
    let invited = app
        .post(
            "/api/v1/team/invitations",
            &invite_as_admin,
            &json!({"email": "colleague@acme.example", "role": "viewer"}),
        )
        .await;
    assert_eq!(invited.status, 403, "{}", invited.body);
    assert_eq!(invited.code(), "impersonation_restricted");
    let changed = app
        .post(
            "/api/v1/notifications/channels",
            &invite_as_admin,
            &json!({"name": "Ops mail", "kind": "email", "recipients": ["ops@acme.example"]}),
        )
        .await;
    assert_eq!(changed.status, 201, "{}", changed.body);
    let row: (Option<uuid::Uuid>, Option<uuid::Uuid>, String) = sqlx::query_as(
        "select actor_user_id, impersonator_user_id, actor_label from audit_logs \
         where action = 'notification.channel_created'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row.0, acme.admin.user_id);
    assert_eq!(row.1, admin.user_id);
    assert!(row.2.contains("impersonated by"), "{}", row.2);

    // PLAT-010: the sessions are listed, active ones first by default order (newest first).
    let active = app
        .get("/api/v1/platform/impersonations?active=true", &admin)
        .await;
    assert_eq!(active.body["items"].as_array().map(Vec::len), Some(2));
    let mine = app
        .get(
            &format!("/api/v1/platform/impersonations?user_id={dev_id}"),
            &admin,
        )
        .await;
    assert_eq!(mine.body["items"][0]["id"], json!(id));
    assert_eq!(mine.body["items"][0]["admin_email"], json!(admin.email));

    // PLAT-006: ending it stops the token at once; ending again changes nothing.
    let ended = app
        .post(
            &format!("/api/v1/platform/impersonations/{id}/end"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(ended.body["active"], false);
    assert_eq!(ended.body["ended_by"], json!(admin.email));
    assert_eq!(app.get("/api/v1/me", &as_dev).await.status, 401);
    let again = app
        .post(
            &format!("/api/v1/platform/impersonations/{id}/end"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 200);
    // Signing out of an impersonation ends it too.
    assert_eq!(
        app.request(
            reqwest::Method::POST,
            "/api/v1/auth/logout",
            Some(&invite_as_admin.token),
            None
        )
        .await
        .status,
        204
    );
    let none = app
        .get("/api/v1/platform/impersonations?active=true", &admin)
        .await;
    assert_eq!(none.body["items"].as_array().map(Vec::len), Some(0));
    let by_logout = app
        .get(
            &format!(
                "/api/v1/platform/impersonations?user_id={}",
                acme.admin.user_id.unwrap_or_default()
            ),
            &admin,
        )
        .await;
    assert_eq!(by_logout.body["items"][0]["ended_by"], "logout");

    // PLAT-007: the tenant's own audit log shows each start and end, with the reason.
    let trail = app
        .get(
            "/api/v1/audit-logs?action_prefix=platform.impersonation",
            &acme.admin,
        )
        .await;
    assert_eq!(trail.status, 200, "{}", trail.body);
    let actions: Vec<&str> = trail.body["items"].as_array().map_or_else(Vec::new, |a| {
        a.iter().filter_map(|e| e["action"].as_str()).collect()
    });
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "platform.impersonation_started")
            .count(),
        2,
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "platform.impersonation_ended")
            .count(),
        2,
        "{actions:?}"
    );
    assert!(
        trail.body.to_string().contains("ticket SUP-42"),
        "{}",
        trail.body
    );
}

// PLAT-005: an impersonation runs out by itself.
#[tokio::test]
async fn an_impersonation_expires_on_its_own() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let viewer = app.member(&acme, Role::Viewer).await;
    let started = app
        .post(
            "/api/v1/platform/impersonations",
            &admin,
            &json!({"tenant_id": acme.id, "user_id": viewer.user_id, "reason": "ticket SUP-7: dashboard empty", "minutes": 5}),
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.body);
    let token = Caller::bearer(started.body["token"].as_str().unwrap_or_default());
    assert_eq!(app.get("/api/v1/me", &token).await.status, 200);
    sqlx::query("update sessions set expires_at = now() - interval '1 second' where impersonator_user_id is not null")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("update impersonations set expires_at = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.state.auth_cache.evict(api::auth::Invalidation::All);
    let me = app.get("/api/v1/me", &token).await;
    assert_eq!(me.status, 401);
    assert_eq!(me.code(), "token_expired");
    let listed = app
        .get("/api/v1/platform/impersonations?active=false", &admin)
        .await;
    assert_eq!(listed.body["items"][0]["active"], false);
    assert_eq!(listed.body["items"][0]["ended_by"], json!(null));
}

// PLAT-003, ADMIN-003, ADMIN-004, ADMIN-009..012
#[tokio::test]
async fn the_console_shows_usage_limits_notes_and_the_audit_trail_across_tenants() {
    let app = TestApp::spawn_with(|c| c.max_environments = 1).await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    app.member(&acme, Role::Developer).await;
    app.member(&acme, Role::Viewer).await;
    // Globex fills its seats (limit 2: its admin and one invitation).
    sqlx::query("update tenants set member_limit = 2 where id = $1")
        .bind(globex.id)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let invited = app
        .post(
            "/api/v1/team/invitations",
            &globex.admin,
            &json!({"email": "x@globex.example", "role": "viewer"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.body);
    for n in 0..3 {
        workflowops_tests::engine_support::enqueue(
            &app.db.pool,
            &engine::NewRun::new(
                acme.id.to_string(),
                "diagnostics.ledger",
                json!({"steps": n}),
            )
            .run_at(chrono::Utc::now() + chrono::Duration::hours(1)),
        )
        .await;
    }

    // ADMIN-009 / PLAT-003: the platform in numbers.
    let overview = app.get("/api/v1/platform/overview", &admin).await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert_eq!(overview.body["tenants"], 3);
    assert_eq!(overview.body["users"], 5);
    assert_eq!(overview.body["platform_admins"], 1);
    assert_eq!(overview.body["runs_24h"], 3);
    assert_eq!(overview.body["active_impersonations"], 0);

    // ADMIN-004: one tenant's usage.
    let usage = app
        .get(
            &format!("/api/v1/platform/tenants/{}/usage", acme.id),
            &admin,
        )
        .await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    assert_eq!(usage.body["members"], 3);
    assert_eq!(usage.body["runs"], 3);
    assert_eq!(usage.body["environments"], 0);

    // ADMIN-010: the heaviest tenants by a metric; an unknown metric is a 422.
    let top = app
        .get("/api/v1/platform/usage/top?metric=members&limit=2", &admin)
        .await;
    assert_eq!(top.status, 200, "{}", top.body);
    assert_eq!(top.body.as_array().map(Vec::len), Some(2));
    assert_eq!(top.body[0]["slug"], "acme");
    let runs = app
        .get("/api/v1/platform/usage/top?metric=runs", &admin)
        .await;
    assert_eq!(runs.body[0]["runs"], 3);
    for bad in [
        "metric=height",
        "metric=runs&limit=0",
        "metric=runs&limit=101",
        "",
    ] {
        let res = app
            .get(&format!("/api/v1/platform/usage/top?{bad}"), &admin)
            .await;
        assert_eq!(res.status, 422, "{bad}: {}", res.body);
    }

    // ADMIN-011: tenants at a limit, and which.
    let at_limit = app.get("/api/v1/platform/usage/at-limit", &admin).await;
    assert_eq!(at_limit.status, 200, "{}", at_limit.body);
    let slugs: Vec<&str> = at_limit.body.as_array().map_or_else(Vec::new, |a| {
        a.iter().filter_map(|t| t["slug"].as_str()).collect()
    });
    assert_eq!(slugs, ["globex"], "{}", at_limit.body);
    assert_eq!(at_limit.body[0]["limits"], json!(["members"]));

    // ADMIN-006: a tenant's settings.
    let changed = app
        .patch(
            &format!("/api/v1/platform/tenants/{}", globex.id),
            &admin,
            &json!({"name": "Globex Corp", "member_limit": null}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["name"], "Globex Corp");
    assert_eq!(changed.body["member_limit"], Value::Null);
    let at_limit = app.get("/api/v1/platform/usage/at-limit", &admin).await;
    assert_eq!(at_limit.body, json!([]), "no seat limit any more");
    let raised = app
        .patch(
            &format!("/api/v1/platform/tenants/{}", acme.id),
            &admin,
            &json!({"environment_limit": 5}),
        )
        .await;
    assert_eq!(raised.body["environment_limit"], 5, "{}", raised.body);
    let envs = app.get("/api/v1/environments", &acme.admin).await;
    assert_eq!(envs.body["limit"], 5, "{}", envs.body);
    let others = app.get("/api/v1/environments", &globex.admin).await;
    assert_eq!(
        others.body["limit"], 1,
        "the server's default: {}",
        others.body
    );
    for bad in [
        json!({"member_limit": 0}),
        json!({"environment_limit": 10001}),
        json!({"name": ""}),
        json!({"plan": "gold"}),
    ] {
        let res = app
            .patch(
                &format!("/api/v1/platform/tenants/{}", acme.id),
                &admin,
                &bad,
            )
            .await;
        assert_eq!(res.status, 422, "{bad}: {}", res.body);
    }
    assert_eq!(
        app.patch(
            &format!("/api/v1/platform/tenants/{}", acme.id),
            &acme.admin,
            &json!({"member_limit": null}),
        )
        .await
        .status,
        403
    );
    let trail = app
        .get(
            "/api/v1/audit-logs?action=platform.tenant_updated",
            &acme.admin,
        )
        .await;
    assert_eq!(trail.body["items"].as_array().map(Vec::len), Some(1));

    // ADMIN-003: notes, for platform admins only.
    let note = app
        .post(
            &format!("/api/v1/platform/tenants/{}/notes", acme.id),
            &admin,
            &json!({"body": "Renewal call on the 12th; asked about SSO."}),
        )
        .await;
    assert_eq!(note.status, 201, "{}", note.body);
    assert_eq!(note.body["author_email"], json!(admin.email));
    let empty = app
        .post(
            &format!("/api/v1/platform/tenants/{}/notes", acme.id),
            &admin,
            &json!({"body": "   "}),
        )
        .await;
    assert_eq!(empty.status, 422);
    let notes = app
        .get(
            &format!("/api/v1/platform/tenants/{}/notes", acme.id),
            &admin,
        )
        .await;
    assert_eq!(notes.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.get(
            &format!("/api/v1/platform/tenants/{}/notes", acme.id),
            &acme.admin
        )
        .await
        .status,
        403
    );
    // The tenant's own trail does not mention the note.
    let own = app.get("/api/v1/audit-logs", &acme.admin).await;
    assert!(
        !own.body.to_string().contains("tenant_note"),
        "{}",
        own.body
    );
    let note_id = note.body["id"].as_str().unwrap_or_default().to_owned();
    let wrong_tenant = app
        .delete(
            &format!("/api/v1/platform/tenants/{}/notes/{note_id}", globex.id),
            &admin,
        )
        .await;
    assert_eq!(wrong_tenant.status, 404);
    let deleted = app
        .delete(
            &format!("/api/v1/platform/tenants/{}/notes/{note_id}", acme.id),
            &admin,
        )
        .await;
    assert_eq!(deleted.status, 204);

    // ADMIN-012: the trail across tenants, or one tenant's.
    let all = app
        .get("/api/v1/platform/audit-logs?limit=200", &admin)
        .await;
    assert_eq!(all.status, 200, "{}", all.body);
    let tenants: std::collections::HashSet<String> = all.body["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["tenant_id"].as_str().unwrap_or("platform").to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(tenants.contains(&globex.id.to_string()), "{tenants:?}");
    assert!(tenants.contains("platform"), "{tenants:?}");
    let one = app
        .get(
            &format!("/api/v1/platform/audit-logs?tenant_id={}", globex.id),
            &admin,
        )
        .await;
    assert!(
        one.body["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|e| e["tenant_id"] == json!(globex.id))),
        "{}",
        one.body
    );
    let notes_trail = app
        .get(
            "/api/v1/platform/audit-logs?action_prefix=platform.tenant_note",
            &admin,
        )
        .await;
    assert_eq!(notes_trail.body["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        app.get("/api/v1/platform/audit-logs", &acme.admin)
            .await
            .status,
        403
    );
}

// PLAT-006, PLAT-009: an impersonation ends with its admin's authority, and when its user
// becomes a platform admin.
#[tokio::test]
async fn an_impersonation_ends_when_its_admin_is_demoted_or_its_user_promoted() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let second = app.tenant("ops2").await.admin;
    domain::tenancy::add_platform_admin(&app.db.pool, second.user_id.unwrap_or_default(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let acme = app.tenant("acme").await;
    let dev = app.member(&acme, Role::Developer).await;
    let viewer = app.member(&acme, Role::Viewer).await;
    let start = |user: Option<uuid::Uuid>, by: &Caller| {
        let body =
            json!({"tenant_id": acme.id, "user_id": user, "reason": "ticket SUP-9: checking"});
        let by = by.clone();
        let app = &app;
        async move {
            let res = app
                .post("/api/v1/platform/impersonations", &by, &body)
                .await;
            assert_eq!(res.status, 201, "{}", res.body);
            Caller::bearer(res.body["token"].as_str().unwrap_or_default())
        }
    };
    // The second admin impersonates the developer, then loses the platform role.
    let as_dev = start(dev.user_id, &second).await;
    assert_eq!(app.get("/api/v1/me", &as_dev).await.status, 200);
    let demoted = app
        .delete(
            &format!(
                "/api/v1/platform/admins/{}",
                second.user_id.unwrap_or_default()
            ),
            &admin,
        )
        .await;
    assert_eq!(demoted.status, 204, "{}", demoted.body);
    let me = app.get("/api/v1/me", &as_dev).await;
    assert_eq!(me.status, 401, "{}", me.body);
    assert_eq!(me.code(), "token_revoked");

    // The viewer, being impersonated, is made a platform admin: the impersonation ends.
    let as_viewer = start(viewer.user_id, &admin).await;
    assert_eq!(app.get("/api/v1/me", &as_viewer).await.status, 200);
    let promoted = app
        .post(
            "/api/v1/platform/admins",
            &admin,
            &json!({"email": viewer.email}),
        )
        .await;
    assert_eq!(promoted.status, 201, "{}", promoted.body);
    assert_eq!(app.get("/api/v1/me", &as_viewer).await.status, 401);
    let listed = app
        .get(
            &format!(
                "/api/v1/platform/impersonations?user_id={}",
                viewer.user_id.unwrap_or_default()
            ),
            &admin,
        )
        .await;
    assert_eq!(
        listed.body["items"][0]["ended_by"],
        "the user became a platform admin"
    );
}

// ADMIN-016: platform admins set how long data is kept; the hourly prune applies it.
#[tokio::test]
async fn platform_admins_set_data_retention_and_the_prune_applies_it() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let shown = app.get("/api/v1/platform/retention", &admin).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(
        shown.body["effective"],
        json!({"runs_days": 30, "executions_days": 90, "snapshots_days": 90, "read_audit_days": 90})
    );
    // A run created and finished two days ago, kept under the default 30 days.
    let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
    let old_run = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        u64::try_from(two_days_ago.timestamp()).unwrap_or_default(),
        0,
    ));
    sqlx::query(
        "insert into engine_runs (id, namespace, kind, input, status, max_attempts, created_at, finished_at) \
         values ($1, $2, 'diagnostics.ledger', '{\"steps\": 1}', 'succeeded', 3, $3, $3)",
    )
    .bind(old_run)
    .bind(acme.id.to_string())
    .bind(two_days_ago)
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let prune = |key: &'static str| {
        let app = &app;
        async move {
            let run = workflowops_tests::engine_support::enqueue(
                &app.db.pool,
                &engine::NewRun::of::<jobs::maintenance::Prune>(
                    "system".to_owned(),
                    &jobs::maintenance::PruneInput {
                        retention_seconds: 30 * 86_400,
                        execution_retention_seconds: None,
                        snapshot_retention_days: None,
                    },
                )
                .idempotency_key(key),
            )
            .await;
            workflowops_tests::engine_support::wait_for(
                &app.db.pool,
                run,
                engine::RunStatus::Succeeded,
            )
            .await;
        }
    };
    let _worker = workflowops_tests::engine_support::TestWorker::start(
        &app.db.pool,
        jobs::registry(&app.state.jobs),
        2,
    );
    prune("first").await;
    let exists = |id: uuid::Uuid| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>("select exists (select 1 from engine_runs where id = $1)")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    assert!(exists(old_run).await, "kept under the server's 30 days");

    let set = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/platform/retention",
            Some(&admin.token),
            Some(&json!({"runs_days": 1, "read_audit_days": 30})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["effective"]["runs_days"], 1);
    assert_eq!(
        set.body["effective"]["executions_days"], 90,
        "the rest stays"
    );
    prune("second").await;
    assert!(!exists(old_run).await, "pruned under the platform's 1 day");

    for bad in [
        json!({"runs_days": 0}),
        json!({"runs_days": 4000}),
        json!({"keep_forever": true}),
    ] {
        let res = app
            .request(
                reqwest::Method::PUT,
                "/api/v1/platform/retention",
                Some(&admin.token),
                Some(&bad),
            )
            .await;
        assert_eq!(res.status, 422, "{bad}: {}", res.body);
    }
    assert_eq!(
        app.get("/api/v1/platform/retention", &acme.admin)
            .await
            .status,
        403
    );
    let trail = app
        .get(
            "/api/v1/platform/audit-logs?action=platform.retention_changed",
            &admin,
        )
        .await;
    assert_eq!(trail.body["items"].as_array().map(Vec::len), Some(1));
}

// PLAT-004: runs and environments across tenants
#[tokio::test]
async fn a_platform_admin_sees_every_tenants_runs_and_environments() {
    use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    for (t, name) in [(&acme, "Acme dev"), (&globex, "Globex prod")] {
        let res = app
            .post(
                "/api/v1/environments",
                &t.admin,
                &json!({"name": name, "provider": "n8n", "base_url": n8n.base_url(), "api_key": n8n.api_key(), "class": "dev"}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
    }
    let mut tx = app.db.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    for (t, n) in [(&acme, 3), (&globex, 1)] {
        for i in 0..n {
            let run = engine::NewRun::of::<jobs::diagnostics::Steps>(
                t.id.to_string(),
                &jobs::diagnostics::StepsInput {
                    steps: i,
                    step_ms: 0,
                },
            );
            engine::queue::enqueue(&mut tx, &run)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));

    // Runs: every tenant's, newest first, paged; by tenant; by status.
    let first = app.get("/api/v1/platform/runs?limit=2", &admin).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(2));
    let cursor = first.body["next_cursor"].as_str().unwrap_or_default();
    let rest = app
        .get(
            &format!("/api/v1/platform/runs?limit=10&cursor={cursor}"),
            &admin,
        )
        .await;
    let mut tenants: Vec<String> = [&first, &rest]
        .iter()
        .flat_map(|p| p.body["items"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["kind"] == "diagnostics.steps")
        .map(|r| r["tenant_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    tenants.sort();
    let mut want = vec![acme.id.to_string(); 3];
    want.push(globex.id.to_string());
    want.sort();
    assert_eq!(tenants, want);
    let globex_runs = app
        .get(
            &format!(
                "/api/v1/platform/runs?tenant_id={}&status=queued",
                globex.id
            ),
            &admin,
        )
        .await;
    assert_eq!(
        globex_runs.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        globex_runs.body
    );
    assert_eq!(globex_runs.body["items"][0]["status"], "queued");
    assert_eq!(
        globex_runs.body["items"][0]["namespace"],
        globex.id.to_string()
    );
    assert!(
        first.body["items"][0].get("input").is_none()
            && first.body["items"][0].get("output").is_none(),
        "a tenant's data stays with its own API: {}",
        first.body
    );
    // Across tenants the window is the last 30 days unless asked otherwise; ids bound the scan.
    sqlx::query(
        "update engine_runs set created_at = now() - interval '40 days' where namespace = $1",
    )
    .bind(globex.id.to_string())
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let recent = app
        .get("/api/v1/platform/runs?kind=diagnostics.steps", &admin)
        .await;
    assert_eq!(
        recent.body["items"].as_array().map(Vec::len),
        Some(3),
        "{}",
        recent.body
    );
    let by_tenant = app
        .get(
            &format!("/api/v1/platform/runs?tenant_id={}", globex.id),
            &admin,
        )
        .await;
    assert_eq!(
        by_tenant.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        by_tenant.body
    );
    let old = app
        .get(
            "/api/v1/platform/runs?kind=diagnostics.steps&since=2020-01-01T00:00:00Z",
            &admin,
        )
        .await;
    assert_eq!(
        old.body["items"].as_array().map(Vec::len),
        Some(4),
        "{}",
        old.body
    );
    let bad = app.get("/api/v1/platform/runs?status=stuck", &admin).await;
    assert_eq!(
        (bad.status.as_u16(), bad.code()),
        (422, "validation_failed"),
        "{}",
        bad.body
    );

    // Environments: with their tenant, never their keys; filtered by tenant, provider, health.
    let envs = app.get("/api/v1/platform/environments", &admin).await;
    assert_eq!(envs.status, 200, "{}", envs.body);
    let names: Vec<(&str, &str)> = envs.body["items"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap_or(""),
                        e["tenant_name"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            ("Globex prod", "Tenant globex"),
            ("Acme dev", "Tenant acme")
        ]
    );
    assert!(
        !envs.body.to_string().contains(&n8n.api_key()),
        "no API key leaves"
    );
    assert_eq!(envs.body["items"][0]["tenant_id"], globex.id.to_string());
    let acme_envs = app
        .get(
            &format!(
                "/api/v1/platform/environments?tenant_id={}&provider=n8n&health=unknown",
                acme.id
            ),
            &admin,
        )
        .await;
    assert_eq!(
        acme_envs.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        acme_envs.body
    );
    let make = app
        .get("/api/v1/platform/environments?provider=make", &admin)
        .await;
    assert_eq!(make.body["items"].as_array().map(Vec::len), Some(0));
    let bad = app
        .get(
            "/api/v1/platform/environments?provider=zapier&health=sick",
            &admin,
        )
        .await;
    assert_eq!(
        (bad.status.as_u16(), bad.code()),
        (422, "validation_failed"),
        "{}",
        bad.body
    );
    assert!(bad.body.to_string().contains("health"), "{}", bad.body);

    // Tenants' own admins are not platform admins.
    for path in ["/api/v1/platform/runs", "/api/v1/platform/environments"] {
        let refused = app.get(path, &acme.admin).await;
        assert_eq!(
            (refused.status.as_u16(), refused.code()),
            (403, "platform_admin_required")
        );
    }
}
