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

// Every pooled connection to PostgreSQL over TCP has Nagle's algorithm off (sqlx 0.9.0 no
// longer sets TCP_NODELAY; without it, statements with large bind data wait ~40 ms for a
// delayed ACK). A bare sqlx connection is the control.
#[tokio::test]
async fn database_connections_over_tcp_have_nodelay() {
    use sqlx::{ConnectOptions, Connection};
    let app = TestApp::spawn().await;
    async fn ports(conn: &mut sqlx::PgConnection) -> (u16, u16) {
        let (client, server): (Option<i32>, Option<i32>) =
            sqlx::query_as("select inet_client_port(), inet_server_port()")
                .fetch_one(conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        let port = |p: Option<i32>| {
            p.and_then(|p| u16::try_from(p).ok())
                .unwrap_or_else(|| panic!("the tests' server is reached over TCP"))
        };
        (port(client), port(server))
    }
    let mut pooled = app
        .db
        .pool
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (client, server) = ports(&mut pooled).await;
    assert_eq!(
        api::db::nodelay_of(client, server).unwrap_or_else(|e| panic!("{e}")),
        Some(true),
        "a pooled connection"
    );
    let mut bare = app
        .db
        .pool
        .connect_options()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (client, server) = ports(&mut bare).await;
    assert_eq!(
        api::db::nodelay_of(client, server).unwrap_or_else(|e| panic!("{e}")),
        Some(false),
        "sqlx sets TCP_NODELAY itself now: remove api::db::tcp_nodelay"
    );
    bare.close().await.unwrap_or_else(|e| panic!("{e}"));
}
