//! RBAC over HTTP: every role against one route per permission that has routes today. The full
//! (role × permission) matrix is checked in `domain::rbac`; this proves the routes use it.

use domain::{Permission, Role};
use reqwest::Method;
use serde_json::json;
use workflowops_tests::TestApp;

/// (permission, method, path, body) — a route guarded by exactly that permission.
fn guarded_routes() -> Vec<(Permission, Method, &'static str, Option<serde_json::Value>)> {
    vec![
        (
            Permission::ViewTeam,
            Method::GET,
            "/api/v1/team/members",
            None,
        ),
        (
            Permission::ManageTeam,
            Method::GET,
            "/api/v1/team/invitations",
            None,
        ),
        (
            Permission::ManageTeam,
            Method::POST,
            "/api/v1/team/invitations",
            Some(json!({"email": "rbac@acme.example", "role": "viewer"})),
        ),
        (
            Permission::ManageApiKeys,
            Method::GET,
            "/api/v1/api-keys",
            None,
        ),
        (
            Permission::ManageApiKeys,
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "rbac"})),
        ),
        (
            Permission::ViewAuditLogs,
            Method::GET,
            "/api/v1/audit-logs",
            None,
        ),
    ]
}

// TEAM-002
#[tokio::test]
async fn each_role_reaches_exactly_the_routes_its_permissions_allow() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    for role in Role::ALL {
        for caller in [
            app.member(&acme, role).await,
            app.api_key(&acme, role).await,
        ] {
            for (permission, method, path, body) in guarded_routes() {
                // A fresh invitation address per call keeps POSTs from conflicting.
                let body = body.map(|mut b| {
                    if b.get("email").is_some() {
                        b["email"] =
                            json!(format!("{}@acme.example", uuid::Uuid::now_v7().simple()));
                    }
                    b
                });
                let res = app
                    .request(method.clone(), path, Some(&caller.token), body.as_ref())
                    .await;
                if role.allows(permission) {
                    assert!(
                        res.status.is_success(),
                        "{role} {method} {path}: {} {:?}",
                        res.status,
                        res.body
                    );
                } else {
                    assert_eq!(res.status, 403, "{role} {method} {path}");
                    assert_eq!(res.code(), "forbidden");
                }
            }
        }
    }
}

// PLAT-001
#[tokio::test]
async fn platform_routes_need_a_platform_admin_whatever_the_tenant_role() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let key = app.api_key(&acme, Role::Admin).await;
    for caller in [&acme.admin, &key] {
        let res = app.get("/api/v1/platform/tenants", caller).await;
        assert_eq!(
            (res.status.as_u16(), res.code()),
            (403, "platform_admin_required")
        );
    }
}
