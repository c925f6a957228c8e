//! The support pages of the web UI over plain HTTP with the session cookie: a member's tickets
//! and one ticket's conversation (escaped), files (downloadable with the cookie) and controls,
//! never another tenant's; the platform's support console across tenants, refused to others.
//! The actions the pages' script takes (a reply, an upload) are made the way it makes them: with
//! the cookie and the page's CSRF token.

use domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use workflowops_tests::{Caller, TestApp};

fn cookie(caller: &Caller) -> String {
    format!("wfo_session={}", caller.token)
}

/// A page (or a download) fetched by a browser holding `caller`'s session cookie only.
async fn page(app: &TestApp, path: &str, caller: &Caller) -> (StatusCode, String) {
    let res = app
        .http
        .get(app.url(path))
        .header("cookie", cookie(caller))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (res.status(), res.text().await.unwrap_or_default())
}

/// The page's CSRF token, as the script reads it from the `<meta>` tag.
fn csrf(html: &str) -> String {
    html.split("<meta name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// Sends what the ticket page's script sends: the cookie, the page's CSRF token, and a body.
async fn as_the_page(
    app: &TestApp,
    path: &str,
    caller: &Caller,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let res = app
        .http
        .post(app.url(path))
        .header("cookie", cookie(caller))
        .header("x-csrf-token", token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn open_ticket(app: &TestApp, caller: &Caller, kind: &str, title: &str) -> String {
    let res = app
        .post(
            "/api/v1/support/tickets",
            caller,
            &json!({"kind": kind, "title": title, "description": "First line\nsecond line"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body["id"].as_str().unwrap_or_default().to_owned()
}

// SUPP-001..005: the member's pages.
#[tokio::test]
async fn a_member_follows_their_tenants_tickets_escaped_with_files_and_never_another_tenants() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 64 * 1024).await;
    let acme = app.tenant("acme").await;
    let viewer = app.member(&acme, Role::Viewer).await;
    let globex = app.tenant("globex").await;
    let id = open_ticket(&app, &viewer, "bug", "Sync stops at page 3").await;
    let hostile = app
        .post(
            &format!("/api/v1/support/tickets/{id}/messages"),
            &acme.admin,
            &json!({"body": "<script>x</script>"}),
        )
        .await;
    assert_eq!(hostile.status, 201, "{}", hostile.body);
    let theirs = open_ticket(&app, &globex.admin, "help", "Globex private question").await;

    // The list: the tenant's tickets (whoever opened them), the filters and the form.
    let (status, html) = page(&app, "/support", &viewer).await;
    assert_eq!(status, 200, "{html}");
    for wanted in [
        "href=\"/support\" id=\"nav-support\" aria-current=\"page\"",
        &format!("href=\"/support/{id}\""),
        "Sync stops at page 3",
        "id=\"ticket-filters\"",
        "data-api=\"POST /api/v1/support/tickets\"",
        "<textarea name=\"description\"",
    ] {
        assert!(html.contains(wanted), "{wanted} missing: {html}");
    }
    assert!(!html.contains("Globex private question"), "{html}");
    let (status, html) = page(&app, "/support?open=false", &viewer).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        !html.contains("Sync stops at page 3") && html.contains("No ticket matches."),
        "an open ticket among the closed ones: {html}"
    );

    // Another tenant's ticket does not exist for this member.
    let (status, html) = page(&app, &format!("/support/{theirs}"), &viewer).await;
    assert_eq!(status, 404, "{html}");
    assert!(!html.contains("Globex private question"), "{html}");

    // The ticket: the conversation escaped, and the controls, which act as the script does.
    let (status, html) = page(&app, &format!("/support/{id}"), &viewer).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        !html.contains("<script>x</script>") && html.contains("&#60;script&#62;x&#60;/script&#62;"),
        "the message not escaped: {html}"
    );
    for wanted in [
        "First line\nsecond line",
        &format!("data-api=\"POST /api/v1/support/tickets/{id}/messages\""),
        &format!("data-attach=\"/api/v1/support/tickets/{id}/attachments\""),
        &format!("data-api=\"POST /api/v1/support/tickets/{id}/close\""),
        "up to 64.0 KiB",
    ] {
        assert!(html.contains(wanted), "{wanted} missing: {html}");
    }
    let token = csrf(&html);
    let (status, body) = as_the_page(
        &app,
        &format!("/api/v1/support/tickets/{id}/messages"),
        &viewer,
        &token,
        "application/json",
        br#"{"body":"Still broken\nafter a retry"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let upload = format!("/api/v1/support/tickets/{id}/attachments?filename=trace.txt");
    let (status, file) = as_the_page(
        &app,
        &upload,
        &viewer,
        &token,
        "text/plain",
        b"line 1\nline 2\n".to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{file}");
    let (status, body) = as_the_page(
        &app,
        &upload,
        &viewer,
        &token,
        "text/plain",
        vec![b'x'; 65 * 1024],
    )
    .await;
    assert_eq!(status, 413, "an oversized file: {body}");
    let (status, body) = as_the_page(&app, &upload, &viewer, "", "text/plain", b"x".to_vec()).await;
    assert_eq!(status, 403, "an upload without the page's token: {body}");

    let download = format!(
        "/api/v1/support/tickets/{id}/attachments/{}",
        file["id"].as_str().unwrap_or_default()
    );
    let (status, html) = page(&app, &format!("/support/{id}"), &viewer).await;
    assert_eq!(status, 200, "{html}");
    for wanted in [
        &format!("href=\"{download}\""),
        "trace.txt",
        "Still broken\nafter a retry",
    ] {
        assert!(html.contains(wanted), "{wanted} missing: {html}");
    }
    // The link works in the browser: the API takes the session cookie for the download.
    let (status, bytes) = page(&app, &download, &viewer).await;
    assert_eq!(
        (status, bytes.as_str()),
        (StatusCode::OK, "line 1\nline 2\n")
    );
    let (status, _) = page(&app, &download, &globex.admin).await;
    assert_eq!(status, 404, "another tenant downloads the file");

    // Closed: the conversation stays, the controls go.
    let closed = app
        .post(
            &format!("/api/v1/support/tickets/{id}/close"),
            &viewer,
            &json!({}),
        )
        .await;
    assert_eq!(closed.status, 200, "{}", closed.body);
    let (status, html) = page(&app, &format!("/support/{id}"), &viewer).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("id=\"closed-note\"") && html.contains("trace.txt"),
        "{html}"
    );
    for gone in ["id=\"reply\"", "data-attach", "id=\"close-ticket\""] {
        assert!(!html.contains(gone), "{gone} on a closed ticket: {html}");
    }
}

// SUPP-006: the platform's support console.
#[tokio::test]
async fn the_support_console_lists_every_tenants_tickets_for_platform_admins_only() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let admin_id = admin.user_id.unwrap_or_default();
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let first = open_ticket(&app, &acme.admin, "bug", "Acme cannot sync").await;
    let hostile = app
        .post(
            &format!("/api/v1/support/tickets/{first}/messages"),
            &acme.admin,
            &json!({"body": "<script>x</script>"}),
        )
        .await;
    assert_eq!(hostile.status, 201, "{}", hostile.body);
    let res = app
        .http
        .post(app.url(&format!(
            "/api/v1/support/tickets/{first}/attachments?filename=shot.png"
        )))
        .bearer_auth(&acme.admin.token)
        .header("content-type", "image/png")
        .body(b"\x89PNG fake".to_vec())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let file: Value = res.json().await.unwrap_or(Value::Null);
    let second = open_ticket(&app, &globex.admin, "feature", "Globex wants dark mode").await;

    let (status, html) = page(&app, "/platform", &admin).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("href=\"/platform/support\""), "{html}");

    // Both tenants' tickets, newest first, with their tenants' slugs; the filters apply.
    let (status, html) = page(&app, "/platform/support", &admin).await;
    assert_eq!(status, 200, "{html}");
    for wanted in [
        &format!("href=\"/platform/support/{first}\""),
        &format!("href=\"/platform/support/{second}\""),
        &format!("href=\"/platform/tenants/{}\">acme</a>", acme.id),
        &format!("href=\"/platform/tenants/{}\">globex</a>", globex.id),
    ] {
        assert!(html.contains(wanted), "{wanted} missing: {html}");
    }
    let at = |t: &str| html.find(t).unwrap_or(usize::MAX);
    assert!(
        at("Globex wants dark mode") < at("Acme cannot sync"),
        "not newest first: {html}"
    );
    let (status, html) = page(&app, "/platform/support?kind=feature&open=true", &admin).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("Globex wants dark mode") && !html.contains("Acme cannot sync"),
        "the kind filter: {html}"
    );

    // A ticket: conversation escaped, the files from the console's API, and the controls.
    let (status, html) = page(&app, &format!("/platform/support/{first}"), &admin).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        !html.contains("<script>x</script>") && html.contains("&#60;script&#62;x&#60;/script&#62;"),
        "the message not escaped: {html}"
    );
    let download = format!(
        "/api/v1/platform/support/tickets/{first}/attachments/{}",
        file["id"].as_str().unwrap_or_default()
    );
    for wanted in [
        &format!("href=\"{download}\""),
        &format!("data-api=\"POST /api/v1/platform/support/tickets/{first}/messages\""),
        &format!("data-api=\"PATCH /api/v1/platform/support/tickets/{first}\""),
        &format!("\"assignee_user_id\":\"{admin_id}\""),
        "no change",
    ] {
        assert!(html.contains(wanted), "{wanted} missing: {html}");
    }
    let (status, bytes) = page(&app, &download, &admin).await;
    assert_eq!(
        status, 200,
        "the console's download with the cookie: {bytes}"
    );

    // Answering the way the page does, with a status, shows as support's message.
    let (status, body) = as_the_page(
        &app,
        &format!("/api/v1/platform/support/tickets/{first}/messages"),
        &admin,
        &csrf(&html),
        "application/json",
        br#"{"body":"Fixed in 1.2","status":"resolved"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, html) = page(&app, &format!("/support/{first}"), &acme.admin).await;
    assert!(
        html.contains("<li class=\"message support\">") && html.contains("Fixed in 1.2"),
        "support's answer not marked: {html}"
    );
    assert!(html.contains("id=\"ticket-status\">resolved<"), "{html}");

    // A tenant admin is refused the console, and reads none of it.
    for path in [
        "/platform/support".to_owned(),
        format!("/platform/support/{first}"),
    ] {
        let (status, html) = page(&app, &path, &acme.admin).await;
        assert_eq!(status, 403, "{path}: {html}");
        assert!(html.contains("id=\"denied\""), "{html}");
        assert!(!html.contains("Globex wants dark mode"), "{html}");
    }
}

// SUPP-001, SUPP-004 in real headless Chromium: the form opens a ticket and goes to it, a reply
// keeps its line breaks, a chosen file is uploaded as it is, and a file over the limit is
// refused with the reason shown.
#[cfg(feature = "browser")]
#[tokio::test]
async fn in_a_browser_a_member_opens_a_ticket_replies_and_attaches_files() {
    use thirtyfour::prelude::*;
    use workflowops_tests::browser::Browser;

    let app = TestApp::spawn_with(|c| c.max_body_bytes = 16 * 1024).await;
    let acme = app.tenant("acme").await;
    let member = app.member(&acme, Role::Developer).await;
    let dir = std::env::temp_dir().join(format!("wfo-support-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let small = dir.join("trace.txt");
    let large = dir.join("huge.log");
    std::fs::write(&small, "line 1\nline 2\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&large, vec![b'x'; 20 * 1024]).unwrap_or_else(|e| panic!("{e}"));
    let b = Browser::signed_in(&app, &member.email)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let steps = async {
        b.driver.find(By::Id("nav-support")).await?.click().await?;
        let form = b.driver.find(By::Id("new-ticket")).await?;
        form.find(By::Name("title"))
            .await?
            .send_keys("Sync stops at page 3")
            .await?;
        form.find(By::Name("description"))
            .await?
            .send_keys("Steps:\n1. sync prod")
            .await?;
        form.find(By::Id("open-ticket")).await?.click().await?;
        b.until("the new ticket's page", || async {
            b.text("ticket-title").await == "Sync stops at page 3"
        })
        .await?;
        b.driver
            .find(By::Css("#reply textarea"))
            .await?
            .send_keys("Still broken\nafter a retry")
            .await?;
        b.driver.find(By::Id("send-reply")).await?.click().await?;
        b.until("the reply", || async {
            b.text("conversation")
                .await
                .contains("Still broken\nafter a retry")
        })
        .await?;
        b.driver
            .find(By::Id("attach-file"))
            .await?
            .send_keys(small.to_string_lossy())
            .await?;
        b.until("the file", || async {
            b.text("files").await.contains("trace.txt")
        })
        .await?;
        b.driver
            .find(By::Id("attach-file"))
            .await?
            .send_keys(large.to_string_lossy())
            .await?;
        b.until("the refusal", || async {
            let upload = b.text("upload").await;
            upload.contains("huge.log") && upload.contains("413")
        })
        .await?;
        b.screenshot("support-ticket").await?;
        b.driver.find(By::Id("nav-support")).await?.click().await?;
        b.until("the list", || async {
            b.text("ticket-list").await.contains("Sync stops at page 3")
        })
        .await?;
        b.screenshot("support-list").await?;
        anyhow::Ok(())
    };
    let outcome = steps.await;
    let _ = std::fs::remove_dir_all(&dir);
    b.finish("support", outcome).await;
    let tickets = app.get("/api/v1/support/tickets", &member).await;
    assert_eq!(
        tickets.body["items"][0]["attachments"], 1,
        "{}",
        tickets.body
    );
}
