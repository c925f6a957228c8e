use domain::Role;
use reqwest::Method;
use serde_json::json;
use workflowops_tests::{Caller, TestApp};

// SEC-001
#[tokio::test]
async fn a_new_key_is_shown_once_listed_by_prefix_and_acts_with_its_role() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let res = app
        .post(
            "/api/v1/api-keys",
            &acme.admin,
            &json!({"name": "CI", "role": "viewer"}),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let secret = res.body["secret"].as_str().unwrap_or_default().to_owned();
    let prefix = res.body["key"]["prefix"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(secret.starts_with(&format!("{prefix}_")));

    let list = app.get("/api/v1/api-keys", &acme.admin).await;
    let listed = serde_json::to_string(&list.body).unwrap_or_default();
    assert!(listed.contains(&prefix));
    assert!(!listed.contains(&secret), "the secret must never be listed");

    let key = Caller::bearer(&secret);
    let me = app.get("/api/v1/me", &key).await;
    assert_eq!(me.body["kind"], "api_key");
    assert_eq!(me.body["tenant"]["role"], "viewer");
    assert_eq!(app.get("/api/v1/team/members", &key).await.status, 200);
    assert_eq!(app.get("/api/v1/audit-logs", &key).await.status, 403);

    // Stored as a hash only.
    let leaked: i64 = sqlx::query_scalar(
        "select count(*) from api_keys k where row_to_json(k)::text like '%' || $1 || '%'",
    )
    .bind(&secret)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or(-1);
    assert_eq!(leaked, 0);
    let hash: Vec<u8> = sqlx::query_scalar("select secret_hash from api_keys where prefix = $1")
        .bind(&prefix)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_default();
    assert_eq!(hash, domain::tokens::hash(&secret).to_vec());
    // Last use is recorded.
    let mut used = false;
    for _ in 0..50 {
        let last: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("select last_used_at from api_keys where prefix = $1")
                .bind(&prefix)
                .fetch_one(&app.db.pool)
                .await
                .unwrap_or_default();
        if last.is_some() {
            used = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(used, "last_used_at was never recorded");
}

// SEC-001
#[tokio::test]
async fn a_revoked_key_stops_working_at_once() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let key = app.api_key(&acme, Role::Developer).await;
    assert_eq!(app.get("/api/v1/me", &key).await.status, 200);
    let id = key.key_id.unwrap_or_default();
    assert_eq!(
        app.delete(&format!("/api/v1/api-keys/{id}"), &acme.admin)
            .await
            .status,
        204
    );
    let res = app.get("/api/v1/me", &key).await;
    assert_eq!((res.status.as_u16(), res.code()), (401, "token_revoked"));
    let listed = app.get("/api/v1/api-keys", &acme.admin).await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(0));
    let all = app
        .get("/api/v1/api-keys?include_revoked=true", &acme.admin)
        .await;
    assert_eq!(all.body["items"].as_array().map(Vec::len), Some(1));
}

// SEC-002
#[tokio::test]
async fn rotation_issues_a_new_key_and_retires_the_old_one() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let old = app.api_key(&acme, Role::Developer).await;
    assert_eq!(app.get("/api/v1/me", &old).await.status, 200);
    let id = old.key_id.unwrap_or_default();
    let res = app
        .request(
            Method::POST,
            &format!("/api/v1/api-keys/{id}/rotate"),
            Some(&acme.admin.token),
            None,
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert_eq!(res.body["key"]["role"], "developer");
    assert_eq!(res.body["key"]["rotated_from"], id.to_string());
    let new = Caller::bearer(res.body["secret"].as_str().unwrap_or_default());
    assert_eq!(app.get("/api/v1/me", &new).await.status, 200);
    assert_eq!(app.get("/api/v1/me", &old).await.code(), "token_revoked");
    let again = app
        .request(
            Method::POST,
            &format!("/api/v1/api-keys/{id}/rotate"),
            Some(&acme.admin.token),
            None,
        )
        .await;
    assert_eq!(
        (again.status.as_u16(), again.code()),
        (409, "api_key_revoked")
    );
    // A JSON `null` body is the optional body left out: the defaults.
    let other = app.api_key(&acme, Role::Viewer).await;
    let res = app
        .request(
            Method::POST,
            &format!(
                "/api/v1/api-keys/{}/rotate",
                other.key_id.unwrap_or_default()
            ),
            Some(&acme.admin.token),
            Some(&serde_json::Value::Null),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert_eq!(res.body["key"]["role"], "viewer");
}

// SEC-002
#[tokio::test]
async fn rotation_with_overlap_keeps_the_old_key_until_it_expires() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let old = app.api_key(&acme, Role::Developer).await;
    let id = old.key_id.unwrap_or_default();
    let res = app
        .post(
            &format!("/api/v1/api-keys/{id}/rotate"),
            &acme.admin,
            &json!({"overlap_seconds": 3600}),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert!(res.body["previous"]["expires_at"].is_string());
    assert_eq!(app.get("/api/v1/me", &old).await.status, 200);
    // Past the overlap the old key is expired.
    sqlx::query("update api_keys set expires_at = now() - interval '1 second' where id = $1")
        .bind(id)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.state
        .auth_cache
        .evict(api::auth::Invalidation::ApiKey(id));
    assert_eq!(app.get("/api/v1/me", &old).await.code(), "token_expired");
    let too_long = app
        .post(
            &format!("/api/v1/api-keys/{id}/rotate"),
            &acme.admin,
            &json!({"overlap_seconds": 99_999_999}),
        )
        .await;
    assert_eq!(too_long.status, 422);
}

#[tokio::test]
async fn a_key_created_with_an_expiry_carries_it() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let res = app
        .post(
            "/api/v1/api-keys",
            &acme.admin,
            &json!({"name": "short", "expires_in_days": 1}),
        )
        .await;
    assert_eq!(res.status, 201);
    assert!(res.body["key"]["expires_at"].is_string());
    let bad = app
        .post(
            "/api/v1/api-keys",
            &acme.admin,
            &json!({"name": "bad", "expires_in_days": 0}),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.body["errors"][0]["field"], "expires_in_days");
}

// SEC-001: a key cannot mint or rotate its way past its own expiry
#[tokio::test]
async fn what_a_key_creates_or_rotates_expires_no_later_than_the_key() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let res = app
        .post(
            "/api/v1/api-keys",
            &acme.admin,
            &json!({"name": "short-lived admin", "role": "admin", "expires_in_days": 1}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let expiry = res.body["key"]["expires_at"].clone();
    let short = Caller::bearer(res.body["secret"].as_str().unwrap_or_default());

    for body in [
        json!({"name": "forever"}),
        json!({"name": "a year", "expires_in_days": 365}),
    ] {
        let minted = app.post("/api/v1/api-keys", &short, &body).await;
        assert_eq!(minted.status, 201, "{}", minted.body);
        assert_eq!(minted.body["key"]["expires_at"], expiry, "{body}");
        assert_eq!(minted.body["key"]["created_by"], json!(acme.admin.user_id));
    }
    let sooner = app
        .post(
            "/api/v1/api-keys",
            &short,
            &json!({"name": "an hour", "expires_in_days": 1}),
        )
        .await;
    assert!(
        sooner.body["key"]["expires_at"].as_str() <= expiry.as_str(),
        "{}",
        sooner.body
    );

    // Rotating a key that never expires, with the short-lived one, gives one that expires.
    let forever = app
        .post("/api/v1/api-keys", &acme.admin, &json!({"name": "forever"}))
        .await;
    assert!(
        forever.body["key"]["expires_at"].is_null(),
        "{}",
        forever.body
    );
    let rotated = app
        .post(
            &format!(
                "/api/v1/api-keys/{}/rotate",
                forever.body["key"]["id"].as_str().unwrap_or_default()
            ),
            &short,
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    assert_eq!(rotated.body["key"]["expires_at"], expiry);
}
