use serde_json::json;
use workflowops_tests::TestApp;

async fn create_key(
    app: &TestApp,
    token: &str,
    key: &str,
    name: &str,
) -> workflowops_tests::app::Resp {
    let res = app
        .http
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    TestApp::read(res).await
}

#[tokio::test]
async fn a_retried_post_with_the_same_key_replays_the_first_response() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let first = create_key(&app, &acme.admin.token, "retry-1", "deploy").await;
    assert_eq!(first.status, 201);
    assert_eq!(
        first
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("false")
    );
    let second = create_key(&app, &acme.admin.token, "retry-1", "deploy").await;
    assert_eq!(second.status, 201);
    assert_eq!(
        second
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(first.body, second.body);
    assert_eq!(app.count("api_keys").await, 1);

    // The stored response holds the key's secret: it must be sealed, not plain.
    let secret = first.body["secret"].as_str().unwrap_or_default();
    let leaked: i64 = sqlx::query_scalar(
        "select count(*) from idempotency_keys where position(convert_to($1, 'UTF8') in response_body) > 0",
    )
    .bind(secret)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or(-1);
    assert_eq!(leaked, 0);
}

#[tokio::test]
async fn the_same_key_for_a_different_request_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    assert_eq!(
        create_key(&app, &acme.admin.token, "k", "one").await.status,
        201
    );
    let res = create_key(&app, &acme.admin.token, "k", "two").await;
    assert_eq!(
        (res.status.as_u16(), res.code()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(app.count("api_keys").await, 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_caller() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    assert_eq!(
        create_key(&app, &acme.admin.token, "shared", "x")
            .await
            .status,
        201
    );
    let theirs = create_key(&app, &globex.admin.token, "shared", "x").await;
    assert_eq!(theirs.status, 201);
    assert_eq!(
        theirs
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("false")
    );
    assert_eq!(app.count("api_keys").await, 2);
}

#[tokio::test]
async fn a_refused_request_is_replayed_as_refused_and_bad_keys_are_400() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let first = create_key(&app, &acme.admin.token, "bad", "").await;
    assert_eq!(first.status, 422);
    let again = create_key(&app, &acme.admin.token, "bad", "").await;
    assert_eq!(again.status, 422);
    assert_eq!(
        again
            .headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let res = create_key(&app, &acme.admin.token, &"x".repeat(300), "y").await;
    assert_eq!(
        (res.status.as_u16(), res.code()),
        (400, "invalid_idempotency_key")
    );
}

// SEC-001, PLAT-005: a replay skips the handler's checks, so it is only for the caller as it
// was: an admin impersonating the user, or the user after a demotion, gets no stored answer
#[tokio::test]
async fn a_replay_is_not_given_to_an_impersonator_or_to_the_caller_after_a_demotion() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let admin2 = app.member(&acme, domain::Role::Admin).await;
    let first = create_key(&app, &admin2.token, "ci-key-1", "deploy").await;
    assert_eq!(first.status, 201, "{}", first.body);

    let platform = app.platform_admin().await;
    let started = app
        .post(
            "/api/v1/platform/impersonations",
            &platform,
            &json!({"tenant_id": acme.id, "user_id": admin2.user_id, "reason": "ticket SUP-7: key rotation", "minutes": 30}),
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.body);
    let token = started.body["token"].as_str().unwrap_or_default();
    let as_admin2 = create_key(&app, token, "ci-key-1", "deploy").await;
    assert_eq!(as_admin2.status, 403, "{}", as_admin2.body);
    assert!(as_admin2.body.get("secret").is_none());

    let demoted = app
        .patch(
            &format!(
                "/api/v1/team/members/{}",
                admin2.user_id.unwrap_or_default()
            ),
            &acme.admin,
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(demoted.status, 200, "{}", demoted.body);
    let after = create_key(&app, &admin2.token, "ci-key-1", "deploy").await;
    assert_eq!(after.status, 403, "{}", after.body);
    assert!(after.body.get("secret").is_none());
    assert_eq!(app.count("api_keys").await, 1);
}
