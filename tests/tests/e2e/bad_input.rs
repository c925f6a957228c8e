//! Bad input of every class gets a clear 4xx with a stable code, and writes nothing.

use reqwest::Method;
use serde_json::json;
use workflowops_tests::TestApp;

async fn raw(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> workflowops_tests::app::Resp {
    let res = app
        .http
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    TestApp::read(res).await
}

#[tokio::test]
async fn malformed_json_non_utf8_and_wrong_content_type_are_refused_cleanly() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin.token;
    let res = raw(&app, t, "application/json", b"{\"name\": ".to_vec()).await;
    assert_eq!((res.status.as_u16(), res.code()), (400, "malformed_json"));
    assert_eq!(
        res.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let res = raw(
        &app,
        t,
        "application/json",
        b"{\"name\": \"\xff\xfe\"}".to_vec(),
    )
    .await;
    assert_eq!((res.status.as_u16(), res.code()), (400, "malformed_json"));
    let res = raw(&app, t, "text/plain", b"{\"name\": \"x\"}".to_vec()).await;
    assert_eq!(
        (res.status.as_u16(), res.code()),
        (415, "unsupported_media_type")
    );
    assert_eq!(app.count("api_keys").await, 0);
}

#[tokio::test]
async fn wrong_types_missing_and_unknown_fields_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let cases = [
        (json!({"name": 42}), "name"),
        (json!({}), ""),
        (json!({"name": "x", "role": "owner"}), "role"),
        (json!({"name": "x", "is_admin": true}), ""),
        (
            json!({"name": "x", "expires_in_days": -1}),
            "expires_in_days",
        ),
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(10_000)}), "name"),
        // serde would fill the fields from an array by position: only objects are bodies.
        (json!(["x", "viewer"]), ""),
        (json!("x"), ""),
        (json!(null), ""),
    ];
    for (body, field) in cases {
        let res = app.post("/api/v1/api-keys", &acme.admin, &body).await;
        assert_eq!(res.status, 422, "{body}: {:?}", res.body);
        assert_eq!(res.code(), "validation_failed");
        let reported = res.body["errors"][0]["field"].as_str().unwrap_or_default();
        if !field.is_empty() {
            assert_eq!(reported, field, "{body}");
        }
        assert!(!res.body["message"].as_str().unwrap_or_default().is_empty());
        assert!(
            !res.body.to_string().contains("struct"),
            "no internal type names: {}",
            res.body
        );
    }
    let missing = app.post("/api/v1/api-keys", &acme.admin, &json!({})).await;
    assert!(
        missing.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("name")
    );
    let unknown = app
        .post(
            "/api/v1/api-keys",
            &acme.admin,
            &json!({"name": "x", "is_admin": true}),
        )
        .await;
    assert!(
        unknown.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("is_admin")
    );
    assert_eq!(app.count("api_keys").await, 0);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 4096).await;
    let acme = app.tenant("acme").await;
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(10_000));
    let res = raw(
        &app,
        &acme.admin.token,
        "application/json",
        huge.into_bytes(),
    )
    .await;
    assert_eq!(
        (res.status.as_u16(), res.code()),
        (413, "payload_too_large")
    );
    assert_eq!(app.count("api_keys").await, 0);
}

#[tokio::test]
async fn sql_looking_strings_are_just_text() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let name = "x'; drop table users; --";
    let res = app
        .post("/api/v1/api-keys", &acme.admin, &json!({"name": name}))
        .await;
    assert_eq!(res.status, 201);
    assert_eq!(res.body["key"]["name"], name);
    let search = app
        .get("/api/v1/audit-logs?q=%25'%20or%201%3D1%20--", &acme.admin)
        .await;
    assert_eq!(search.status, 200);
    assert_eq!(search.body["items"].as_array().map(Vec::len), Some(0));
    assert!(app.count("users").await >= 1);
}

#[tokio::test]
async fn bad_ids_cursors_and_query_values_are_clear() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let res = app.get("/api/v1/api-keys/not-a-uuid", &acme.admin).await;
    assert_eq!((res.status.as_u16(), res.code()), (404, "not_found"));
    let res = app
        .get(
            &format!("/api/v1/api-keys/{}", uuid::Uuid::now_v7()),
            &acme.admin,
        )
        .await;
    assert_eq!((res.status.as_u16(), res.code()), (404, "not_found"));
    let res = app
        .get("/api/v1/team/members?cursor=garbage", &acme.admin)
        .await;
    assert_eq!(
        (res.status.as_u16(), res.code()),
        (422, "validation_failed")
    );
    assert_eq!(res.body["errors"][0]["field"], "cursor");
    let res = app
        .get("/api/v1/team/members?limit=100000", &acme.admin)
        .await;
    assert_eq!(res.status, 422);
    let res = app.get("/api/v1/team/members?limit=abc", &acme.admin).await;
    assert_eq!(res.status, 422);
    assert_eq!(res.body["errors"][0]["field"], "limit");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_problem_json() {
    let app = TestApp::spawn().await;
    let res = app.request(Method::GET, "/api/v1/nope", None, None).await;
    assert_eq!((res.status.as_u16(), res.code()), (404, "route_not_found"));
    let res = app.request(Method::PUT, "/api/v1/me", None, None).await;
    assert_eq!(
        (res.status.as_u16(), res.code()),
        (405, "method_not_allowed")
    );
}

#[tokio::test]
async fn invitation_acceptance_with_a_weak_password_writes_nothing() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let invite = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": "weak@acme.example", "role": "viewer"}),
        )
        .await;
    let users = app.count("users").await;
    let res = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&json!({"token": invite.body["token"], "name": "Weak", "password": "short"})),
        )
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(res.body["errors"][0]["field"], "password");
    assert_eq!(app.count("users").await, users);
    assert_eq!(app.count("memberships").await, 1);
    let pending = app
        .get("/api/v1/team/invitations?status=pending", &acme.admin)
        .await;
    assert_eq!(pending.body["items"].as_array().map(Vec::len), Some(1));
    let unknown = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&json!({"token": "wfo_i_nope", "password": "x"})),
        )
        .await;
    assert_eq!(unknown.status, 404);
}

// PostgreSQL stores no NUL in text or jsonb: a NUL in a query value or a JSON string is a 422 at
// the door, never a 500 from the database, and writes nothing.
#[tokio::test]
async fn a_nul_character_in_a_query_or_a_json_string_is_422_not_500() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    for path in [
        "/api/v1/runs?kind=a%00b",
        "/api/v1/audit-logs?q=%00",
        "/api/v1/workflows?search=x%00",
    ] {
        let res = app.get(path, &acme.admin).await;
        assert_eq!(
            (res.status.as_u16(), res.code()),
            (422, "validation_failed"),
            "{path}: {}",
            res.body
        );
    }
    let keys = app.count("api_keys").await;
    let res = raw(
        &app,
        &acme.admin.token,
        "application/json",
        br#"{"name": "a\u0000b"}"#.to_vec(),
    )
    .await;
    assert_eq!(
        (res.status.as_u16(), res.code()),
        (422, "validation_failed")
    );
    assert_eq!(app.count("api_keys").await, keys, "nothing written");
    // An escaped backslash followed by "u0000" is ordinary text.
    let res = raw(
        &app,
        &acme.admin.token,
        "application/json",
        br#"{"name": "a\\u0000b"}"#.to_vec(),
    )
    .await;
    assert_eq!(res.status, 201, "{}", res.body);
    assert_eq!(res.body["key"]["name"], "a\\u0000b");
}

// API-wide: dates at the ends of what a client can write are a 422 or simply bound nothing —
// never a panic or a database error (schemathesis found both)
#[tokio::test]
async fn dates_out_of_the_stored_range_are_422_or_bound_nothing() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let platform = app.platform_admin().await;
    for (path, caller) in [
        ("/api/v1/runs?since=-262143-01-01T00:00:00Z", &acme.admin),
        ("/api/v1/runs?until=%2B262142-12-31T23:59:59Z", &acme.admin),
        (
            "/api/v1/platform/runs?since=-262143-01-01T00:00:00Z",
            &platform,
        ),
        (
            "/api/v1/platform/runs?until=%2B262142-12-31T23:59:59Z",
            &platform,
        ),
        (
            "/api/v1/audit-logs?since=-009999-01-01T00:00:00Z",
            &acme.admin,
        ),
        (
            "/api/v1/audit-logs?until=%2B200000-01-01T00:00:00Z",
            &acme.admin,
        ),
    ] {
        let res = app.get(path, caller).await;
        assert!(
            res.status == 200 || (res.status == 422 && res.code() == "out_of_range"),
            "{path}: {} {}",
            res.status,
            res.body
        );
    }
    // A run listed with a far-future `until` is still there (the id bound does not wrap).
    let run = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::of::<jobs::diagnostics::Ledger>(
            acme.id.to_string(),
            &jobs::diagnostics::LedgerInput {
                steps: 1,
                step_ms: 0,
                fail_attempts: 0,
                fail_permanently: false,
            },
        ),
    )
    .await;
    let listed = app
        .get("/api/v1/runs?until=%2B20000-01-01T00:00:00Z", &acme.admin)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(
        listed.body.to_string().contains(&run.to_string()),
        "{}",
        listed.body
    );
}

// Bad input: serde fills a struct's fields from an array by position, so `[true]` for a
// stage's gates would switch on whichever gate happens to be declared first; an array where an
// object is expected is refused at any depth, naming the field, and nothing is written
#[tokio::test]
async fn an_array_where_a_nested_object_is_expected_is_422_naming_its_path() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let (dev, prod) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let pipeline =
        |stages: serde_json::Value| json!({"name": "Release", "provider": "n8n", "stages": stages});
    let cases = [
        (pipeline(json!([[dev, prod]])), "stages[0]"),
        (
            pipeline(
                json!([{"source_environment_id": dev, "target_environment_id": prod,
                             "gates": [true]}]),
            ),
            "stages[0].gates",
        ),
        (
            pipeline(
                json!([{"source_environment_id": dev, "target_environment_id": prod,
                             "approvals": [true, 2]}]),
            ),
            "stages[0].approvals",
        ),
    ];
    for (body, field) in cases {
        let res = app.post("/api/v1/pipelines", &acme.admin, &body).await;
        assert_eq!(res.status, 422, "{body}: {}", res.body);
        assert_eq!(res.code(), "validation_failed");
        assert_eq!(
            res.body["errors"],
            json!([{"field": field, "message": "invalid type: sequence, expected an object"}]),
            "{body}: {}",
            res.body
        );
        assert!(
            !res.body.to_string().contains("struct"),
            "no internal type names: {}",
            res.body
        );
    }
    assert_eq!(app.count("pipelines").await, 0);
}
