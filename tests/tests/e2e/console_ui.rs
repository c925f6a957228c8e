//! The platform admin console in the web UI over plain HTTP with cookies: the numbers, tenant
//! search, usage, notes and users; who is refused; and impersonating from the UI, with the
//! banner on every page and the admin's own session restored when it ends, even when the
//! impersonation was ended elsewhere.

use domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;
use workflowops_tests::{Caller, TestApp};

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The `Cookie` header of a browser holding `session` (and the admin's kept session).
fn cookies(session: &str, admin: Option<&str>) -> String {
    match admin {
        Some(a) => format!("wfo_session={session}; wfo_admin_session={a}"),
        None => format!("wfo_session={session}"),
    }
}

async fn page(app: &TestApp, path: &str, cookie: &str) -> (StatusCode, String) {
    let res = client()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (res.status(), res.text().await.unwrap_or_default())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Posts an HTML form the way a browser does.
async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    client()
        .post(app.url(path))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `Set-Cookie` headers of a response.
fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

/// The value a response sets cookie `name` to (empty when it deletes it).
fn cookie_set(set: &[String], name: &str) -> Option<String> {
    set.iter().find_map(|c| {
        c.split(';')
            .next()
            .and_then(|pair| pair.split_once('='))
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.to_owned())
    })
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The part of a page from the element with `id` on.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    html.find(&marker)
        .map_or("", |at| &html[at..])
        .split("</section>")
        .next()
        .unwrap_or_default()
}

// PLAT-003, ADMIN-009, ADMIN-010, ADMIN-011, PLAT-004
#[tokio::test]
async fn a_platform_admin_sees_the_numbers_top_tenants_limits_and_finds_tenants() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let evil = domain::tenancy::create_tenant(&app.db.pool, "<b>Evil</b> Corp", "evil")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::new(
            acme.id.to_string(),
            "diagnostics.ledger",
            json!({"steps": 1}),
        ),
    )
    .await;
    sqlx::query("update tenants set member_limit = 1 where id = $1")
        .bind(acme.id)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let overview = app.get("/api/v1/platform/overview", &admin).await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert_eq!(overview.body["tenants"], 3);
    assert_eq!(overview.body["runs_24h"], 1);

    let cookie = cookies(&admin.token, None);
    let (status, html) = page(&app, "/platform", &cookie).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("id=\"nav-platform\""),
        "the nav links the console"
    );
    // The numbers are the API's.
    for (id, field) in [
        ("n-tenants", "tenants"),
        ("n-users", "users"),
        ("n-runs", "runs_24h"),
        ("n-failed", "failed_runs_24h"),
        ("n-queued", "queued_runs"),
        ("n-running", "running_runs"),
        ("n-workers", "workers"),
        ("n-incidents", "open_incidents"),
        ("n-impersonations", "active_impersonations"),
        ("n-alerts", "alerts_24h"),
    ] {
        let wanted = format!("id=\"{id}\">{}<", overview.body[field]);
        assert!(html.contains(&wanted), "{wanted} missing: {html}");
    }
    // The top tenants by runs (the default), acme first with its run.
    let top = section(&html, "top");
    assert!(top.contains("Top 3 tenants by runs"), "{top}");
    let first_row = top.split("<tbody>").nth(1).unwrap_or_default();
    assert!(
        first_row
            .split("</tr>")
            .next()
            .unwrap_or_default()
            .contains(&format!("/platform/tenants/{}", acme.id)),
        "{top}"
    );
    assert!(top.contains("<option value=\"runs\" selected>"), "{top}");
    // Acme is at its seat limit; the others are not.
    let at_limit = section(&html, "at-limit");
    assert!(
        at_limit.contains(&format!("/platform/tenants/{}", acme.id))
            && at_limit.contains("members"),
        "{at_limit}"
    );
    assert!(!at_limit.contains("evil"), "{at_limit}");
    // Every tenant is listed, names escaped.
    let list = section(&html, "tenants");
    for id in [acme.id, evil.id] {
        assert!(
            list.contains(&format!("href=\"/platform/tenants/{id}\"")),
            "{list}"
        );
    }
    assert!(
        !html.contains("<b>Evil</b>") && html.contains("&#60;b&#62;Evil&#60;/b&#62; Corp"),
        "a tenant's name not escaped: {html}"
    );

    // Another metric; a search by name, slug and id.
    let (_, html) = page(&app, "/platform?metric=members", &cookie).await;
    assert!(html.contains("Top 3 tenants by members"));
    assert!(html.contains("<option value=\"members\" selected>"));
    for q in ["acm", "ACME", &acme.id.to_string()] {
        let (status, html) = page(&app, &format!("/platform?q={q}"), &cookie).await;
        assert_eq!(status, 200);
        let list = section(&html, "tenants");
        assert!(
            list.contains(&format!("/platform/tenants/{}", acme.id)),
            "{q}: {list}"
        );
        assert!(
            !list.contains(&format!("/platform/tenants/{}", evil.id)),
            "{q}: {list}"
        );
    }
    let (status, html) = page(&app, "/platform?q=nothing-like-it&metric=bogus", &cookie).await;
    assert_eq!(status, 200, "an unknown metric falls back to runs");
    assert!(html.contains("No tenant matches."), "{html}");
}

// PLAT-001: the console is for platform admins only, and an impersonation is not one.
#[tokio::test]
async fn tenant_admins_are_refused_the_console_and_its_actions() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let developer = app.member(&acme, Role::Developer).await;
    let cookie = cookies(&acme.admin.token, None);
    for path in [
        "/platform".to_owned(),
        format!("/platform/tenants/{}", acme.id),
    ] {
        let (status, html) = page(&app, &path, &cookie).await;
        assert_eq!(status, 403, "{path}: {html}");
        assert!(html.contains("for platform administrators"), "{html}");
        assert!(!html.contains("tenant-list") && !html.contains("user-list"));
    }
    let (_, html) = page(&app, "/", &cookie).await;
    assert!(!html.contains("id=\"nav-platform\""), "no console link");
    let csrf = api::auth::csrf_token(&acme.admin.token);
    let tried = post_form(
        &app,
        "/platform/impersonate",
        &cookie,
        &[
            ("csrf", &csrf),
            ("tenant_id", &acme.id.to_string()),
            (
                "user_id",
                &developer.user_id.unwrap_or_default().to_string(),
            ),
            ("reason", "I would like to look around"),
        ],
    )
    .await;
    assert_eq!(tried.status(), 403);
    assert!(cookie_set(&set_cookies(&tried), "wfo_session").is_none());
    assert_eq!(app.count("impersonations").await, 0);
    let (status, _) = page(&app, "/platform", "").await;
    assert_eq!(status, 303, "strangers are sent to sign in");
}

// ADMIN-003, ADMIN-004, PLAT-012, PLAT-013, PLAT-014
#[tokio::test]
async fn the_tenant_page_shows_usage_notes_and_users_with_impersonate_where_allowed() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let developer = app.member(&acme, Role::Developer).await;
    let other_admin = app.member(&acme, Role::Admin).await;
    domain::tenancy::add_platform_admin(
        &app.db.pool,
        other_admin.user_id.unwrap_or_default(),
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let note = app
        .post(
            &format!("/api/v1/platform/tenants/{}/notes", acme.id),
            &admin,
            &json!({"body": "Renewal in May <script>x</script>"}),
        )
        .await;
    assert_eq!(note.status, 201, "{}", note.body);
    let note_id = note.body["id"].as_str().unwrap_or_default().to_owned();

    let cookie = cookies(&admin.token, None);
    let path = format!("/platform/tenants/{}", acme.id);
    let (status, html) = page(&app, &path, &cookie).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("id=\"u-members\">3<"), "usage: {html}");
    let notes = section(&html, "notes");
    assert!(
        notes.contains("Renewal in May &#60;script&#62;x&#60;/script&#62;")
            && !notes.contains("<script>x"),
        "{notes}"
    );
    assert!(notes.contains(&admin.email), "the note's author: {notes}");
    assert!(
        notes.contains(&format!(
            "DELETE /api/v1/platform/tenants/{}/notes/{note_id}",
            acme.id
        )),
        "{notes}"
    );
    let users = section(&html, "users");
    for who in [&developer, &other_admin, &acme.admin] {
        assert!(users.contains(&who.email), "{} missing: {users}", who.email);
    }
    let dev_id = developer.user_id.unwrap_or_default();
    let other_id = other_admin.user_id.unwrap_or_default();
    assert!(
        users.contains(&format!("data-impersonate=\"{dev_id}\"")),
        "{users}"
    );
    assert!(
        !users.contains(&format!("data-impersonate=\"{other_id}\"")),
        "a platform admin cannot be impersonated (PLAT-009): {users}"
    );
    let other_row = users
        .split(&format!("id=\"user-{other_id}\""))
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_default();
    assert!(
        other_row.contains("platform admin") && other_row.contains(">admin<"),
        "{other_row}"
    );
    let dev_row = users
        .split(&format!("id=\"user-{dev_id}\""))
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_default();
    assert!(
        dev_row.contains(">developer<") && dev_row.contains("Impersonate"),
        "{dev_row}"
    );
    assert!(html.contains("action=\"/platform/impersonate\""));

    // The user search narrows to matching members.
    let (_, html) = page(&app, &format!("{path}?q=developer"), &cookie).await;
    let users = section(&html, "users");
    assert!(users.contains(&developer.email) && !users.contains(&other_admin.email));

    // The page's Delete button is the API with the page's CSRF token.
    let csrf = api::auth::csrf_token(&admin.token);
    assert!(html.contains(&csrf));
    let deleted = client()
        .delete(app.url(&format!(
            "/api/v1/platform/tenants/{}/notes/{note_id}",
            acme.id
        )))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deleted.status(), 204);
    let (_, html) = page(&app, &path, &cookie).await;
    assert!(section(&html, "notes").contains("No notes yet."));

    let (status, _) = page(
        &app,
        &format!("/platform/tenants/{}", Uuid::now_v7()),
        &cookie,
    )
    .await;
    assert_eq!(status, 404);
}

/// Starts impersonating `user` through the UI's form; returns the response.
async fn impersonate(
    app: &TestApp,
    admin: &Caller,
    tenant: Uuid,
    user: Uuid,
    reason: &str,
) -> reqwest::Response {
    post_form(
        app,
        "/platform/impersonate",
        &cookies(&admin.token, None),
        &[
            ("csrf", &api::auth::csrf_token(&admin.token)),
            ("tenant_id", &tenant.to_string()),
            ("user_id", &user.to_string()),
            ("reason", reason),
            ("minutes", "30"),
        ],
    )
    .await
}

// PLAT-005, PLAT-006, PLAT-007, PLAT-013
#[tokio::test]
async fn an_admin_impersonates_from_the_ui_sees_the_banner_and_ends_back_in_their_session() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let developer = app.member(&acme, Role::Developer).await;
    let dev_id = developer.user_id.unwrap_or_default();

    // Refused: a forged form, a reason too short (the API's rule, shown on the page).
    let forged = post_form(
        &app,
        "/platform/impersonate",
        &cookies(&admin.token, None),
        &[
            ("csrf", "forged"),
            ("tenant_id", &acme.id.to_string()),
            ("user_id", &dev_id.to_string()),
            ("reason", "ticket SUP-7: cannot see runs"),
        ],
    )
    .await;
    assert_eq!(forged.status(), 403);
    let short = impersonate(&app, &admin, acme.id, dev_id, "short").await;
    assert_eq!(short.status(), 422);
    assert!(set_cookies(&short).is_empty());
    let html = short.text().await.unwrap_or_default();
    assert!(html.contains("id=\"impersonate-error\""), "{html}");
    assert!(html.contains("reason"), "{html}");
    assert_eq!(app.count("impersonations").await, 0);

    // Start: the browser now holds the impersonation, the admin's session kept aside.
    let started = impersonate(
        &app,
        &admin,
        acme.id,
        dev_id,
        "ticket SUP-7: cannot see runs",
    )
    .await;
    assert_eq!(started.status(), 303);
    assert_eq!(location(&started), "/");
    let set = set_cookies(&started);
    assert!(
        set.iter()
            .all(|c| c.contains("HttpOnly") && c.contains("SameSite=Lax")),
        "{set:?}"
    );
    assert_eq!(
        cookie_set(&set, "wfo_admin_session").as_deref(),
        Some(admin.token.as_str())
    );
    let token = cookie_set(&set, "wfo_session").unwrap_or_default();
    assert!(
        token.starts_with("wfo_s_") && token != admin.token,
        "{set:?}"
    );
    let browser = cookies(&token, Some(&admin.token));

    // Every page says who is impersonated, where, and by whom.
    for path in ["/", "/workflows", "/team"] {
        let (status, html) = page(&app, path, &browser).await;
        assert_eq!(status, 200, "{path}: {html}");
        let banner = html
            .split("id=\"impersonation-banner\"")
            .nth(1)
            .and_then(|b| b.split("</div>").next())
            .unwrap_or_default();
        assert!(
            banner.contains("You are impersonating")
                && banner.contains(&developer.email)
                && banner.contains("Tenant acme")
                && banner.contains(&admin.email)
                && banner.contains("action=\"/platform/impersonation/end\""),
            "{path}: {banner}"
        );
        assert!(
            !html.contains("id=\"nav-platform\""),
            "{path}: no console link"
        );
    }
    let me = client()
        .get(app.url("/api/v1/me"))
        .header("cookie", &browser)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let me: Value = me.json().await.unwrap_or_default();
    assert_eq!(me["user"]["email"], json!(developer.email));
    assert_eq!(me["tenant"]["role"], "developer");
    assert_eq!(me["platform_admin"], false);
    assert_eq!(me["impersonated_by"], json!(admin.email));
    let (status, _) = page(&app, "/platform", &browser).await;
    assert_eq!(status, 403, "an impersonation has no platform rights");

    let listed = app.get("/api/v1/platform/impersonations", &admin).await;
    let id = listed.body["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(listed.body["items"][0]["active"], true);
    assert_eq!(
        listed.body["items"][0]["reason"],
        "ticket SUP-7: cannot see runs"
    );
    let (_, console) = page(&app, "/platform", &cookies(&admin.token, None)).await;
    assert!(
        section(&console, "impersonations")
            .contains(&format!("POST /api/v1/platform/impersonations/{id}/end")),
        "the running impersonation with its End button: {console}"
    );

    // End: back in the admin's session, on the console; the impersonation's token is dead.
    let ended = post_form(
        &app,
        "/platform/impersonation/end",
        &browser,
        &[("csrf", &api::auth::csrf_token(&token))],
    )
    .await;
    assert_eq!(ended.status(), 303);
    assert_eq!(location(&ended), "/platform");
    let set = set_cookies(&ended);
    assert_eq!(
        cookie_set(&set, "wfo_session").as_deref(),
        Some(admin.token.as_str())
    );
    assert!(
        set.iter()
            .any(|c| c.starts_with("wfo_admin_session=;") && c.contains("Max-Age=0")),
        "{set:?}"
    );
    let (status, html) = page(&app, "/platform", &cookies(&admin.token, None)).await;
    assert_eq!(status, 200);
    assert!(!html.contains("impersonation-banner"));
    assert!(section(&html, "impersonations").contains("Nobody is impersonating anyone."));
    let after = app
        .get(&format!("/api/v1/platform/impersonations/{id}"), &admin)
        .await;
    assert_eq!(after.body["active"], false, "{}", after.body);
    assert_eq!(after.body["ended_by"], json!(admin.email));
    let dead = client()
        .get(app.url("/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dead.status(), 401);
    let actions: Vec<String> = sqlx::query_scalar(
        "select action from audit_logs where tenant_id = $1 and action like 'platform.impersonation_%' order by occurred_at",
    )
    .bind(acme.id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        actions,
        [
            "platform.impersonation_started",
            "platform.impersonation_ended"
        ]
    );
}

// PLAT-006: an impersonation ended elsewhere still lets the admin back into their session.
#[tokio::test]
async fn the_admin_gets_their_session_back_after_the_impersonation_was_ended_elsewhere() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let developer = app.member(&acme, Role::Developer).await;
    let started = impersonate(
        &app,
        &admin,
        acme.id,
        developer.user_id.unwrap_or_default(),
        "ticket SUP-8: webhook errors",
    )
    .await;
    assert_eq!(started.status(), 303);
    let token = cookie_set(&set_cookies(&started), "wfo_session").unwrap_or_default();
    let browser = cookies(&token, Some(&admin.token));
    let listed = app.get("/api/v1/platform/impersonations", &admin).await;
    let id = listed.body["items"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let ended = app
        .post(
            &format!("/api/v1/platform/impersonations/{id}/end"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(ended.status, 200, "{}", ended.body);

    // The dead impersonation sends the browser to sign in, which offers the way back.
    let (status, _) = page(&app, "/", &browser).await;
    assert_eq!(status, 303);
    let (status, html) = page(&app, "/login", &browser).await;
    assert_eq!(status, 200);
    let admin_csrf = api::auth::csrf_token(&admin.token);
    assert!(
        html.contains("id=\"restore\"") && html.contains(&admin_csrf),
        "{html}"
    );
    let back = post_form(
        &app,
        "/platform/impersonation/end",
        &browser,
        &[("csrf", &admin_csrf)],
    )
    .await;
    assert_eq!(back.status(), 303);
    assert_eq!(location(&back), "/platform");
    assert_eq!(
        cookie_set(&set_cookies(&back), "wfo_session").as_deref(),
        Some(admin.token.as_str())
    );
    let (status, _) = page(&app, "/platform", &cookies(&admin.token, None)).await;
    assert_eq!(status, 200);
    // A stale page's button once back: nothing to end, the admin's session stays.
    let again = post_form(
        &app,
        "/platform/impersonation/end",
        &cookies(&admin.token, None),
        &[("csrf", &admin_csrf)],
    )
    .await;
    assert_eq!(again.status(), 303);
    assert_eq!(location(&again), "/platform");
    assert!(cookie_set(&set_cookies(&again), "wfo_session").is_none());
    // Without the admin's cookie, there is nothing to return to: signed out.
    let (_, html) = page(&app, "/login", &cookies(&token, None)).await;
    assert!(!html.contains("id=\"restore\""));
}

// PLAT-006: signing out of an impersonation ends it and signs the admin out too.
#[tokio::test]
async fn signing_out_while_impersonating_ends_it_and_signs_the_admin_out() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let developer = app.member(&acme, Role::Developer).await;
    let started = impersonate(
        &app,
        &admin,
        acme.id,
        developer.user_id.unwrap_or_default(),
        "ticket SUP-9: export fails",
    )
    .await;
    let token = cookie_set(&set_cookies(&started), "wfo_session").unwrap_or_default();
    let out = post_form(
        &app,
        "/logout",
        &cookies(&token, Some(&admin.token)),
        &[("csrf", &api::auth::csrf_token(&token))],
    )
    .await;
    assert_eq!(out.status(), 303);
    assert_eq!(location(&out), "/login");
    let set = set_cookies(&out);
    for name in ["wfo_session", "wfo_admin_session"] {
        assert_eq!(cookie_set(&set, name).as_deref(), Some(""), "{set:?}");
    }
    for t in [&token, &admin.token] {
        let me = client()
            .get(app.url("/api/v1/me"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(me.status(), 401);
    }
    let ended: (Option<String>, bool) = sqlx::query_as(
        "select ended_by, ended_at is not null from impersonations where tenant_id = $1",
    )
    .bind(acme.id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ended, (Some("logout".to_owned()), true));
}

// PLAT-013 in real headless Chromium: the Impersonate button opens the form asking why, the
// banner's button ends it, and the admin is back on the console.
#[cfg(feature = "browser")]
#[tokio::test]
async fn in_a_browser_impersonate_asks_why_and_the_banner_ends_it() {
    use thirtyfour::prelude::*;
    use workflowops_tests::browser::Browser;

    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let developer = app.member(&acme, Role::Developer).await;
    let dev_id = developer.user_id.unwrap_or_default();
    let b = Browser::signed_in(&app, &admin.email)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let steps = async {
        b.driver.find(By::Id("nav-platform")).await?.click().await?;
        b.until("the console", || async { b.text("n-tenants").await == "2" })
            .await?;
        b.screenshot("platform").await?;
        b.driver
            .goto(app.url(&format!("/platform/tenants/{}", acme.id)))
            .await?;
        b.driver
            .find(By::Css(format!("button[data-impersonate='{dev_id}']")))
            .await?
            .click()
            .await?;
        let dialog = b.driver.find(By::Id("impersonate-dialog")).await?;
        b.until("the form to open", || async {
            dialog.is_displayed().await.unwrap_or(false)
        })
        .await?;
        assert!(dialog.text().await?.contains(&developer.email));
        b.screenshot("platform-tenant").await?;
        dialog
            .find(By::Name("reason"))
            .await?
            .send_keys("ticket SUP-10: checking the UI")
            .await?;
        dialog
            .find(By::Id("start-impersonation"))
            .await?
            .click()
            .await?;
        b.until("the banner", || async {
            let banner = b.text("impersonation-banner").await;
            banner.contains(&developer.email) && banner.contains(&admin.email)
        })
        .await?;
        assert!(b.text("who").await.contains(&developer.email));
        b.screenshot("impersonating").await?;
        b.driver
            .find(By::Id("end-impersonation"))
            .await?
            .click()
            .await?;
        b.until("the admin back on the console", || async {
            b.text("who").await.contains(&admin.email)
                && b.driver
                    .current_url()
                    .await
                    .is_ok_and(|u| u.path() == "/platform")
        })
        .await?;
        assert!(b.text("impersonation-banner").await.is_empty());
        anyhow::Ok(())
    };
    let steps = steps.await;
    b.finish("console", steps).await;
}

/// A kept-session cookie someone planted (a session not of the impersonating admin, or not a
/// platform admin's) is never swapped in; a browser in a live session of its own keeps it.
#[tokio::test]
async fn a_planted_admin_cookie_is_never_swapped_in() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let victim = app.member(&acme, Role::Developer).await;
    let attacker = app.member(&acme, Role::Viewer).await;
    // The victim's own live session, with the attacker's token planted as the kept cookie.
    let browser = cookies(&victim.token, Some(&attacker.token));
    let res = post_form(
        &app,
        "/platform/impersonation/end",
        &browser,
        &[("csrf", &api::auth::csrf_token(&attacker.token))],
    )
    .await;
    assert_eq!(res.status(), 303);
    let set = set_cookies(&res);
    assert!(
        cookie_set(&set, "wfo_session").is_none(),
        "the victim's session stays: {set:?}"
    );
    assert_eq!(cookie_set(&set, "wfo_admin_session").as_deref(), Some(""));

    // An impersonation started by the admin, with another platform admin's token planted: the
    // impersonation ends, the planted session is not taken up.
    let other = app.tenant("ops2").await.admin;
    domain::tenancy::add_platform_admin(&app.db.pool, other.user_id.unwrap_or_default(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = app
        .post(
            "/api/v1/platform/impersonations",
            &admin,
            &serde_json::json!({"tenant_id": acme.id, "user_id": victim.user_id,
                "reason": "ticket SUP-77: a planted cookie"}),
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.body);
    let token = started.body["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let res = post_form(
        &app,
        "/platform/impersonation/end",
        &cookies(&token, Some(&other.token)),
        &[("csrf", &api::auth::csrf_token(&token))],
    )
    .await;
    assert_eq!(location(&res), "/login");
    assert_eq!(
        cookie_set(&set_cookies(&res), "wfo_session").as_deref(),
        Some("")
    );
}

// ADMIN-016: the console shows the retention in force and saves changes through the API.
#[tokio::test]
async fn the_console_shows_and_sets_data_retention() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let (status, html) = page(&app, "/platform", &cookies(&admin.token, None)).await;
    assert_eq!(status, 200);
    let form = section(&html, "retention");
    assert!(
        form.contains("data-api=\"PUT /api/v1/platform/retention\"")
            && form.contains("name=\"runs_days\"")
            && form.contains("placeholder=\"30\""),
        "{form}"
    );
    let saved = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/platform/retention",
            Some(&admin.token),
            Some(&serde_json::json!({"runs_days": 7})),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let (_, html) = page(&app, "/platform", &cookies(&admin.token, None)).await;
    assert!(
        section(&html, "retention").contains("value=\"7\""),
        "the override is shown"
    );
}

/// The ids of the rows (`<tr id="{prefix}…">`) of the table with id `table`, in order.
fn row_ids(html: &str, table: &str, prefix: &str) -> Vec<String> {
    let marker = format!("<tr id=\"{prefix}");
    let table = html
        .find(&format!("id=\"{table}\""))
        .map_or("", |at| &html[at..])
        .split("</table>")
        .next()
        .unwrap_or_default();
    table
        .split(&marker)
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_owned))
        .collect()
}

/// The `<tr>` of the row with `id`.
fn row<'a>(html: &'a str, id: &str) -> &'a str {
    html.find(&format!("<tr id=\"{id}\""))
        .map_or("", |at| &html[at..])
        .split("</tr>")
        .next()
        .unwrap_or_default()
}

/// Where the page's "Next page" link goes, if it has one.
fn next_page(html: &str) -> Option<String> {
    let at = html.find("id=\"next-page\" href=\"")?;
    let rest = &html[at + "id=\"next-page\" href=\"".len()..];
    rest.split('"').next().map(|h| h.replace("&amp;", "&"))
}

/// A run of `namespace` as enqueued (no worker takes it); with `failed`, marked failed with that
/// error message.
async fn seed_run(
    app: &TestApp,
    namespace: &str,
    kind: &str,
    input: Value,
    failed: Option<&str>,
) -> Uuid {
    let id = workflowops_tests::engine_support::enqueue(
        &app.db.pool,
        &engine::NewRun::new(namespace.to_owned(), kind, input),
    )
    .await;
    if let Some(message) = failed {
        sqlx::query(
            "update engine_runs set status = 'failed', attempt = 1, started_at = now(), \
             finished_at = now(), error = $2 where id = $1",
        )
        .bind(id)
        .bind(json!({"message": message, "kind": "permanent"}))
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    id
}

/// The run ids listed at `path`, by a platform admin's browser `cookie`.
async fn runs_at(app: &TestApp, path: &str, cookie: &str) -> (String, Vec<String>) {
    let (status, html) = page(app, path, cookie).await;
    assert_eq!(status, 200, "{path}: {html}");
    let ids = row_ids(&html, "run-list", "run-");
    (html, ids)
}

fn ids_of(runs: &[Uuid]) -> Vec<String> {
    runs.iter().map(|r| format!("{r}")).collect()
}

// PLAT-004: the console's runs of every tenant, newest first, filtered by tenant (slug or id),
// status and kind, paged; names and error messages escaped, inputs never shown.
#[tokio::test]
async fn a_platform_admin_sees_the_runs_of_every_tenant_filtered_and_paged() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    sqlx::query("update tenants set name = '<b>Globex</b> Inc' where id = $1")
        .bind(globex.id)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (acme_ns, globex_ns) = (acme.id.to_string(), globex.id.to_string());
    let acme_sync = seed_run(
        &app,
        &acme_ns,
        "environment.sync",
        json!({"api_key": "sk-live-never-shown"}),
        None,
    )
    .await;
    let acme_failed = seed_run(
        &app,
        &acme_ns,
        "diagnostics.ledger",
        json!({}),
        Some("<script>alert(1)</script> the peer refused"),
    )
    .await;
    let globex_sync = seed_run(&app, &globex_ns, "environment.sync", json!({}), None).await;
    let platform_own = seed_run(&app, "system", "maintenance.prune", json!({}), None).await;
    let cookie = cookies(&admin.token, None);

    let (_, html) = page(&app, "/platform", &cookie).await;
    assert!(
        section(&html, "platform-nav").contains("href=\"/platform/runs\""),
        "the console links the runs: {html}"
    );
    let (html, listed) = runs_at(&app, "/platform/runs", &cookie).await;
    let ours: Vec<String> = listed
        .iter()
        .filter(|id| ids_of(&[acme_sync, acme_failed, globex_sync, platform_own]).contains(id))
        .cloned()
        .collect();
    assert_eq!(
        ours,
        ids_of(&[platform_own, globex_sync, acme_failed, acme_sync]),
        "every tenant's runs, newest first"
    );
    let globex_row = row(&html, &format!("run-{globex_sync}"));
    assert!(
        globex_row.contains(&format!("href=\"/platform/tenants/{}\"", globex.id))
            && globex_row.contains("&#60;b&#62;Globex&#60;/b&#62; Inc")
            && globex_row.contains("<span class=\"status queued\">queued</span>"),
        "{globex_row}"
    );
    let failed_row = row(&html, &format!("run-{acme_failed}"));
    assert!(
        failed_row.contains(&format!("href=\"/platform/tenants/{}\"", acme.id))
            && failed_row.contains("<span class=\"status failed\">failed</span>")
            && failed_row.contains("<td>1/")
            && failed_row.contains("&#60;script&#62;alert(1)&#60;/script&#62; the peer refused"),
        "{failed_row}"
    );
    let own_row = row(&html, &format!("run-{platform_own}"));
    assert!(
        own_row.contains("system") && !own_row.contains("/platform/tenants/"),
        "the platform's own run is no tenant's: {own_row}"
    );
    assert!(!html.contains("<script>alert(1)"), "an error not escaped");
    assert!(!html.contains("sk-live-never-shown"), "a run's input shown");

    // Filters, alone and together; the form keeps them.
    for (query, wanted) in [
        ("tenant=acme", vec![acme_failed, acme_sync]),
        (&*format!("tenant={}", globex.id), vec![globex_sync]),
        ("status=failed", vec![acme_failed]),
        ("kind=environment.sync", vec![globex_sync, acme_sync]),
        ("tenant=acme&kind=environment.sync", vec![acme_sync]),
        ("tenant=globex&status=failed", vec![]),
    ] {
        let (html, listed) = runs_at(&app, &format!("/platform/runs?{query}"), &cookie).await;
        assert_eq!(listed, ids_of(&wanted), "{query}");
        if wanted.is_empty() {
            assert!(html.contains("No run matches."), "{query}: {html}");
        }
    }
    let (html, _) = runs_at(&app, "/platform/runs?tenant=acme&status=failed", &cookie).await;
    let form = section(&html, "run-filters");
    assert!(
        form.contains("name=\"tenant\" value=\"acme\"")
            && form.contains("<option value=\"failed\" selected>"),
        "{form}"
    );
    let (html, listed) = runs_at(&app, "/platform/runs?tenant=nobody-here", &cookie).await;
    assert!(
        listed.is_empty() && html.contains("id=\"unknown-tenant\""),
        "{html}"
    );

    // One page at a time, the filters kept.
    let (html, first) = runs_at(
        &app,
        "/platform/runs?kind=environment.sync&limit=1",
        &cookie,
    )
    .await;
    assert_eq!(first, ids_of(&[globex_sync]));
    let next = next_page(&html).unwrap_or_else(|| panic!("no next page: {html}"));
    assert!(next.contains("kind=environment.sync"), "{next}");
    let (html, second) = runs_at(&app, &next, &cookie).await;
    assert_eq!(second, ids_of(&[acme_sync]));
    assert_eq!(next_page(&html), None, "the last page");
}

// PLAT-004: the console's environments of every tenant, filtered by tenant, provider and
// health, paged; neither their URLs nor their keys are shown.
#[tokio::test]
async fn a_platform_admin_sees_the_environments_of_every_tenant_filtered_and_paged() {
    use workflowops_tests::engine_support::TestWorker;
    use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};

    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    n8n.seed_workflows(2, 3);
    let acme_prod =
        super::canonical::environment(&app, &acme, "Acme prod", "production", &n8n).await;
    let acme_dev = super::canonical::environment(&app, &acme, "<i>Acme</i> dev", "dev", &n8n).await;
    let globex_prod =
        super::canonical::environment(&app, &globex, "Globex prod", "production", &n8n).await;
    let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
    super::canonical::sync(&app, &acme, acme_prod).await;
    sqlx::query("update environments set health_status = 'unreachable' where id = $1")
        .bind(globex_prod)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cookie = cookies(&admin.token, None);
    let envs_at = |path: String| {
        let (app, cookie) = (&app, &cookie);
        async move {
            let (status, html) = page(app, &path, cookie).await;
            assert_eq!(status, 200, "{path}: {html}");
            let ids = row_ids(&html, "environment-list", "environment-");
            (html, ids)
        }
    };

    let (_, html) = page(&app, "/platform", &cookie).await;
    assert!(section(&html, "platform-nav").contains("href=\"/platform/environments\""));
    let (html, listed) = envs_at("/platform/environments".into()).await;
    assert_eq!(listed, ids_of(&[globex_prod, acme_dev, acme_prod]));
    let synced = row(&html, &format!("environment-{acme_prod}"));
    assert!(
        synced.contains(&format!("href=\"/platform/tenants/{}\"", acme.id))
            && synced.contains("Tenant acme")
            && synced.contains("<td>n8n</td>")
            && synced.contains("<span class=\"badge production\">production</span>")
            && synced.contains("<span class=\"status succeeded\">succeeded</span>")
            && synced.contains(" UTC</span>")
            && synced.contains("<td>2</td>"),
        "the workflows as last synced: {synced}"
    );
    let never = row(&html, &format!("environment-{acme_dev}"));
    assert!(
        never.contains("&#60;i&#62;Acme&#60;/i&#62; dev") && never.contains(">never<"),
        "{never}"
    );
    assert!(
        row(&html, &format!("environment-{globex_prod}"))
            .contains("<span class=\"health unreachable\">unreachable</span>")
    );
    assert!(!html.contains("<i>Acme</i>"), "a name not escaped");
    assert!(
        !html.contains(&n8n.base_url()) && !html.contains(&n8n.api_key()),
        "an environment's URL or key shown"
    );

    for (query, wanted) in [
        ("tenant=globex", vec![globex_prod]),
        (&*format!("tenant={}", acme.id), vec![acme_dev, acme_prod]),
        ("health=unreachable", vec![globex_prod]),
        ("provider=n8n&tenant=acme", vec![acme_dev, acme_prod]),
        ("provider=make", vec![]),
    ] {
        let (html, listed) = envs_at(format!("/platform/environments?{query}")).await;
        assert_eq!(listed, ids_of(&wanted), "{query}");
        if wanted.is_empty() {
            assert!(html.contains("No environment matches."), "{query}: {html}");
        }
    }
    let (html, _) = envs_at("/platform/environments?health=unreachable&provider=n8n".into()).await;
    let form = section(&html, "environment-filters");
    assert!(
        form.contains("<option value=\"unreachable\" selected>")
            && form.contains("<option value=\"n8n\" selected>"),
        "{form}"
    );
    let (html, listed) = envs_at("/platform/environments?tenant=nobody-here".into()).await;
    assert!(listed.is_empty() && html.contains("id=\"unknown-tenant\""));

    let (html, first) = envs_at("/platform/environments?tenant=acme&limit=1".into()).await;
    assert_eq!(first, ids_of(&[acme_dev]));
    let next = next_page(&html).unwrap_or_else(|| panic!("no next page: {html}"));
    let (html, second) = envs_at(next).await;
    assert_eq!(second, ids_of(&[acme_prod]), "the tenant filter kept");
    assert_eq!(next_page(&html), None);
}

// PLAT-001: the lists across tenants are for platform admins only, as the rest of the console.
#[tokio::test]
async fn tenant_admins_are_refused_the_runs_and_environments_of_every_tenant() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let run = seed_run(
        &app,
        &acme.id.to_string(),
        "environment.sync",
        json!({}),
        None,
    )
    .await;
    let cookie = cookies(&acme.admin.token, None);
    for path in [
        "/platform/runs",
        "/platform/runs?tenant=acme",
        "/platform/environments",
    ] {
        let (status, html) = page(&app, path, &cookie).await;
        assert_eq!(status, 403, "{path}: {html}");
        assert!(html.contains("for platform administrators"), "{html}");
        assert!(
            !html.contains("run-list")
                && !html.contains("environment-list")
                && !html.contains(&run.to_string()),
            "{path}: {html}"
        );
        let (status, _) = page(&app, path, "").await;
        assert_eq!(status, 303, "strangers are sent to sign in");
    }
}

// PLAT-004 in real headless Chromium: from the console's nav to the runs of every tenant, then
// filtered by status with the form.
#[cfg(feature = "browser")]
#[tokio::test]
async fn in_a_browser_the_console_lists_every_tenants_runs_and_filters_them() {
    use thirtyfour::prelude::*;
    use workflowops_tests::browser::Browser;

    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let queued = seed_run(
        &app,
        &acme.id.to_string(),
        "environment.sync",
        json!({}),
        None,
    )
    .await;
    let failed = seed_run(
        &app,
        &globex.id.to_string(),
        "diagnostics.ledger",
        json!({}),
        Some("the peer refused"),
    )
    .await;
    let b = Browser::signed_in(&app, &admin.email)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let steps = async {
        b.driver.find(By::Id("nav-platform")).await?.click().await?;
        b.driver
            .find(By::Id("platform-runs-link"))
            .await?
            .click()
            .await?;
        b.until("both tenants' runs", || async {
            b.text(&format!("run-{queued}"))
                .await
                .contains("Tenant acme")
                && b.text(&format!("run-{failed}"))
                    .await
                    .contains("the peer refused")
        })
        .await?;
        b.screenshot("platform-runs").await?;
        let form = b.driver.find(By::Id("run-filters")).await?;
        form.find(By::Css("select[name='status'] option[value='failed']"))
            .await?
            .click()
            .await?;
        form.find(By::Css("button[type='submit']"))
            .await?
            .click()
            .await?;
        b.until("only the failed run", || async {
            b.driver
                .current_url()
                .await
                .is_ok_and(|u| u.query().is_some_and(|q| q.contains("status=failed")))
                && b.text(&format!("run-{queued}")).await.is_empty()
                && !b.text(&format!("run-{failed}")).await.is_empty()
        })
        .await?;
        b.driver
            .find(By::Id("platform-environments-link"))
            .await?
            .click()
            .await?;
        b.until("the environments page", || async {
            !b.text("environment-filters").await.is_empty()
        })
        .await?;
        anyhow::Ok(())
    };
    let steps = steps.await;
    b.finish("platform-runs", steps).await;
}
