//! Support tickets (SUPP-001..006): members open and follow tickets with attachments; platform
//! support answers, changes status, and the requester hears about it by email.

use std::time::Duration;

use domain::Role;
use reqwest::Method;
use serde_json::{Value, json};
use workflowops_tests::mail::SmtpPeer;
use workflowops_tests::{Caller, TestApp};

async fn upload(
    app: &TestApp,
    caller: &Caller,
    ticket: &str,
    filename: &str,
    content_type: &str,
    data: Vec<u8>,
) -> (u16, Value) {
    let res = app
        .http
        .post(app.url(&format!(
            "/api/v1/support/tickets/{ticket}/attachments?filename={filename}"
        )))
        .bearer_auth(&caller.token)
        .header("content-type", content_type)
        .body(data)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = res.status().as_u16();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body)
}

// SUPP-001..006
#[tokio::test]
async fn a_ticket_goes_from_a_member_to_support_and_back_with_files_and_email() {
    let smtp = SmtpPeer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let mailer = jobs::notify::Mailer::new(
        &format!("smtp://{}:{}", smtp.host(), smtp.port()),
        "WorkflowOps <support@workflowops.test>",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::spawn_with(|c| {
        c.notify.mailer = Some(std::sync::Arc::new(mailer));
    })
    .await;
    let support = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let viewer = app.member(&acme, Role::Viewer).await;
    let other = app.tenant("globex").await;

    // SUPP-001..003: any member opens a ticket of each kind.
    let bug = app
        .post(
            "/api/v1/support/tickets",
            &viewer,
            &json!({"kind": "bug", "title": "Sync stops at page 3",
                    "description": "Steps:\n1. connect prod\n2. sync\n\tit stops at page 3.", "priority": "high"}),
        )
        .await;
    assert_eq!(bug.status, 201, "{}", bug.body);
    assert_eq!(bug.body["status"], "open");
    assert_eq!(bug.body["requester_email"], json!(viewer.email));
    assert_eq!(bug.body["conversation"][0]["from_support"], false);
    assert!(
        bug.body["conversation"][0]["body"]
            .as_str()
            .unwrap_or_default()
            .contains("\n2. sync\n"),
        "line breaks are kept: {}",
        bug.body
    );
    let id = bug.body["id"].as_str().unwrap_or_default().to_owned();
    for kind in ["feature", "help"] {
        let res = app
            .post(
                "/api/v1/support/tickets",
                &acme.admin,
                &json!({"kind": kind, "title": format!("A {kind} ticket"), "description": "details"}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
    }
    for (body, field) in [
        (
            json!({"kind": "bug", "title": "ab", "description": "x"}),
            "title",
        ),
        (
            json!({"kind": "bug", "title": "A title", "description": "  "}),
            "description",
        ),
        (
            json!({"kind": "praise", "title": "A title", "description": "x"}),
            "",
        ),
        (
            json!({"kind": "bug", "title": "A title", "description": "bell\u{7}"}),
            "description",
        ),
        (
            json!({"kind": "bug", "title": "Two\nlines", "description": "x"}),
            "title",
        ),
    ] {
        let res = app.post("/api/v1/support/tickets", &viewer, &body).await;
        assert_eq!(res.status, 422, "{body}: {}", res.body);
        assert!(res.body.to_string().contains(field), "{}", res.body);
    }

    // SUPP-004: attachments, bounded, served only as downloads.
    let (status, file) = upload(
        &app,
        &viewer,
        &id,
        "sync%20log.txt",
        "text/plain",
        b"page 3: timeout".to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{file}");
    assert_eq!(file["filename"], "sync log.txt");
    assert_eq!(file["size"], 15);
    let (status, html) = upload(
        &app,
        &viewer,
        &id,
        "evil.html",
        "text/html",
        b"<script>alert(1)</script>".to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{html}");
    for (name, ctype, data, code) in [
        ("..%2Fetc%2Fpasswd", "text/plain", b"x".to_vec(), 422),
        ("empty.txt", "text/plain", Vec::new(), 422),
        (
            "big.bin",
            "application/octet-stream",
            vec![0u8; 1024 * 1024 + 1],
            413,
        ),
    ] {
        let (status, body) = upload(&app, &viewer, &id, name, ctype, data).await;
        assert_eq!(status, code, "{name}: {body}");
    }
    let download = app
        .http
        .get(app.url(&format!(
            "/api/v1/support/tickets/{id}/attachments/{}",
            html["id"].as_str().unwrap_or_default()
        )))
        .bearer_auth(&viewer.token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(download.status(), 200);
    let header = |n: &str| {
        download
            .headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/octet-stream");
    assert!(header("content-disposition").starts_with("attachment"));
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(
        download.bytes().await.unwrap_or_default().as_ref(),
        b"<script>alert(1)</script>"
    );

    // Another tenant sees nothing of it.
    assert_eq!(
        app.get(&format!("/api/v1/support/tickets/{id}"), &other.admin)
            .await
            .status,
        404
    );
    assert_eq!(
        app.get("/api/v1/support/tickets", &other.admin).await.body["items"],
        json!([])
    );

    // SUPP-006: support sees every tenant's tickets, answers and asks back.
    let console = app
        .get(
            "/api/v1/platform/support/tickets?open=true&kind=bug",
            &support,
        )
        .await;
    assert_eq!(console.status, 200, "{}", console.body);
    assert_eq!(console.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.get("/api/v1/platform/support/tickets", &acme.admin)
            .await
            .status,
        403
    );
    let answered = app
        .post(
            &format!("/api/v1/platform/support/tickets/{id}/messages"),
            &support,
            &json!({"body": "Which n8n version is prod on?", "status": "waiting_on_customer"}),
        )
        .await;
    assert_eq!(answered.status, 201, "{}", answered.body);
    assert_eq!(answered.body["status"], "waiting_on_customer");
    assert_eq!(answered.body["conversation"][1]["from_support"], true);
    let mails = smtp.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(mails[0].to, vec![viewer.email.clone()]);
    assert!(
        mails[0].data.contains("Which n8n version"),
        "{}",
        mails[0].data
    );

    // SUPP-005: the member follows it; their reply opens it again.
    let seen = app
        .get(&format!("/api/v1/support/tickets/{id}"), &viewer)
        .await;
    assert_eq!(seen.body["status"], "waiting_on_customer");
    assert_eq!(seen.body["files"].as_array().map(Vec::len), Some(2));
    let replied = app
        .post(
            &format!("/api/v1/support/tickets/{id}/messages"),
            &viewer,
            &json!({"body": "1.80.2"}),
        )
        .await;
    assert_eq!(replied.status, 201, "{}", replied.body);
    assert_eq!(replied.body["status"], "open");
    let open_only = app
        .get("/api/v1/support/tickets?status=open", &viewer)
        .await;
    assert_eq!(open_only.body["items"].as_array().map(Vec::len), Some(3));

    // Support resolves (the requester is told), the requester closes; a closed ticket takes no
    // more messages.
    let resolved = app
        .patch(
            &format!("/api/v1/platform/support/tickets/{id}"),
            &support,
            &json!({"status": "resolved", "priority": "urgent", "assignee_user_id": support.user_id}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    assert_eq!(resolved.body["priority"], "urgent");
    assert_eq!(resolved.body["assignee_user_id"], json!(support.user_id));
    let mails = smtp.wait_for(2, Duration::from_secs(5)).await;
    assert!(mails[1].data.contains("resolved"), "{}", mails[1].data);
    let bad_assignee = app
        .patch(
            &format!("/api/v1/platform/support/tickets/{id}"),
            &support,
            &json!({"assignee_user_id": viewer.user_id}),
        )
        .await;
    assert_eq!(bad_assignee.status, 422, "{}", bad_assignee.body);
    let closed = app
        .post(
            &format!("/api/v1/support/tickets/{id}/close"),
            &viewer,
            &json!({}),
        )
        .await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    assert_eq!(closed.body["status"], "closed");
    assert!(closed.body["closed_at"].is_string());
    let late = app
        .post(
            &format!("/api/v1/support/tickets/{id}/messages"),
            &viewer,
            &json!({"body": "one more thing"}),
        )
        .await;
    assert_eq!(late.status, 409, "{}", late.body);
    assert_eq!(late.code(), "ticket_closed");

    // The tenant's audit log tells the story.
    let trail = app
        .get("/api/v1/audit-logs?action_prefix=support.", &acme.admin)
        .await;
    let actions: Vec<&str> = trail.body["items"].as_array().map_or_else(Vec::new, |a| {
        a.iter().filter_map(|e| e["action"].as_str()).collect()
    });
    for wanted in [
        "support.ticket_opened",
        "support.attachment_added",
        "support.ticket_answered",
        "support.ticket_replied",
        "support.ticket_updated",
        "support.ticket_closed",
    ] {
        assert!(actions.contains(&wanted), "{wanted}: {actions:?}");
    }
    // An API key can file tickets too (its prefix stands for the requester).
    let key = app.api_key(&acme, Role::Developer).await;
    let res = app
        .request(
            Method::POST,
            "/api/v1/support/tickets",
            Some(&key.token),
            Some(&json!({"kind": "help", "title": "From CI", "description": "hello"})),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
}
