use serde_json::Value;
use workflowops_tests::TestApp;

// HEALTH-001
#[tokio::test]
async fn healthz_answers_without_authentication() {
    let app = TestApp::spawn().await;
    let res = app
        .request(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["status"], "ok");
    assert!(res.headers.contains_key("x-request-id"));
}

// HEALTH-001
#[tokio::test]
async fn readyz_reports_pending_migrations_as_not_ready() {
    let app = TestApp::spawn().await;
    let res = app
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["migrations"], "current");

    sqlx::query("delete from _sqlx_migrations")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let res = app
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(res.status, 503);
    assert_eq!(res.body["status"], "not_ready");
    assert_eq!(res.body["migrations"], "pending");
    assert_eq!(res.body["database"], Value::from("ok"));
}
