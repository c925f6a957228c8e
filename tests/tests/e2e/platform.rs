use domain::Role;
use serde_json::json;
use workflowops_tests::{Caller, TestApp};

async fn platform_admin(app: &TestApp) -> Caller {
    let ops = app.tenant("ops").await;
    domain::tenancy::add_platform_admin(&app.db.pool, ops.admin.user_id.unwrap_or_default(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ops.admin
}

// PLAT-004, PLAT-011
#[tokio::test]
async fn a_platform_admin_lists_and_searches_every_tenant() {
    let app = TestApp::spawn().await;
    let admin = platform_admin(&app).await;
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
    let wildcard = app.get("/api/v1/platform/tenants?q=%25", &admin).await;
    assert_eq!(wildcard.body["items"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn a_platform_admin_creates_a_tenant_with_its_first_admin() {
    let app = TestApp::spawn().await;
    let admin = platform_admin(&app).await;
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
    let admin = platform_admin(&app).await;
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
