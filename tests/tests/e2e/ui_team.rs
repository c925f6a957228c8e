//! The web UI's team and approval flows, and its HTTP hygiene: an invitation made on the Team
//! page and accepted from its link in a fresh browser (a new account or an existing one), the
//! link's errors, revoking, role changes and API keys; a production action held for another
//! admin, decided on the Approvals page; `Cache-Control: no-store` on pages, an HTML 404 for
//! browsers, the favicon. Browser tests run headless Chromium (see `tests/src/browser.rs`);
//! the rest is plain HTTP.

use reqwest::StatusCode;
use serde_json::json;
use workflowops_tests::{Caller, TenantFixture, TestApp};

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `GET path` as a browser asks for a page (accepting HTML), signed in as `who` if given.
async fn browse(app: &TestApp, path: &str, who: Option<&Caller>) -> reqwest::Response {
    let mut req = client()
        .get(app.url(path))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
    if let Some(who) = who {
        req = req.header("cookie", format!("wfo_session={}", who.token));
    }
    req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Posts an HTML form the way a browser does, without a session.
async fn post_form(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    client()
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Invites `email` into `t` through the API; the accept link.
async fn invite(app: &TestApp, t: &TenantFixture, email: &str, role: &str) -> String {
    let res = app
        .post(
            "/api/v1/team/invitations",
            &t.admin,
            &json!({"email": email, "role": role}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body["accept_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn html_pages_are_never_stored_while_assets_keep_their_caching() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    for (path, who) in [
        ("/", Some(&acme.admin)),
        ("/team", Some(&acme.admin)),
        ("/approvals", Some(&acme.admin)),
        ("/workflows", Some(&acme.admin)),
        ("/login", None),
        ("/invitations/accept", None),
        ("/no-such-page", None),
    ] {
        let res = browse(&app, path, who).await;
        assert!(
            header(&res, "content-type").starts_with("text/html"),
            "{path}: {:?}",
            res.headers()
        );
        assert_eq!(header(&res, "cache-control"), "no-store", "{path}");
    }
    // A re-rendered form (a refused invitation) too.
    let refused = post_form(&app, "/invitations/accept", &[("token", "wfo_i_nothing")]).await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&refused, "cache-control"), "no-store");

    for path in ["/static/app.js", "/static/team.js", "/static/app.css"] {
        let res = browse(&app, path, None).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&res, "cache-control"), "no-cache", "{path}");
    }
    for path in ["/favicon.ico", "/static/favicon.svg"] {
        let res = browse(&app, path, None).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&res, "content-type"), "image/svg+xml", "{path}");
        assert!(
            header(&res, "cache-control").contains("max-age"),
            "{path}: an icon may be cached"
        );
        assert!(
            res.text().await.unwrap_or_default().starts_with("<svg"),
            "{path}"
        );
    }
    let dashboard = browse(&app, "/", Some(&acme.admin))
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(dashboard.contains("<link rel=\"icon\" href=\"/static/favicon.svg\""));
    assert!(dashboard.contains("id=\"nav-approvals\""), "the nav's link");
}

#[tokio::test]
async fn unknown_paths_get_an_html_page_in_browsers_and_json_from_the_api() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;

    let page = browse(&app, "/teams/<nope>", Some(&acme.admin)).await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let html = page.text().await.unwrap_or_default();
    assert!(
        html.contains("Page not found") && html.contains("href=\"/\""),
        "{html}"
    );
    assert!(
        html.contains("/teams/%3Cnope%3E") && !html.contains("<nope>"),
        "the path shown, escaped: {html}"
    );

    // The API's paths answer JSON, even to a browser.
    let api = browse(&app, "/api/v1/nope", Some(&acme.admin)).await;
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&api, "content-type"), "application/problem+json");
    let body: serde_json::Value = api.json().await.unwrap_or_default();
    assert_eq!(body["code"], "route_not_found", "{body}");
    // So does any path to a client that does not ask for HTML, or that is not reading a page.
    let plain = app
        .request(reqwest::Method::GET, "/no-such-page", None, None)
        .await;
    assert_eq!(
        (plain.status.as_u16(), plain.code()),
        (404, "route_not_found")
    );
    let posted = client()
        .post(app.url("/no-such-page"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(posted.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&posted, "content-type"), "application/problem+json");
    // Known paths are untouched: a wrong method is still the API's 405.
    let wrong = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/me",
            Some(&acme.admin.token),
            None,
        )
        .await;
    assert_eq!(wrong.status.as_u16(), 405);
}

// TEAM-001: an invitation is meant to be emailed; an address mail cannot reach is refused.
#[tokio::test]
async fn an_invitation_to_an_address_too_long_for_mail_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let long_domain = format!("{}.example", vec!["a".repeat(60); 4].join("."));
    for email in [
        // The audit's: 306 characters.
        format!(
            "{}@{}",
            "x".repeat(306 - 1 - long_domain.len()),
            long_domain
        ),
        format!("{}@acme.example", "x".repeat(65)),
    ] {
        let res = app
            .post(
                "/api/v1/team/invitations",
                &acme.admin,
                &json!({"email": email, "role": "viewer"}),
            )
            .await;
        assert_eq!(res.status, 422, "{}: {}", email.len(), res.body);
        assert_eq!(res.body["errors"][0]["field"], "email", "{}", res.body);
    }
    let longest = format!(
        "{}@{}",
        "x".repeat(254 - 1 - long_domain.len()),
        long_domain
    );
    assert_eq!(longest.len(), 254);
    let res = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": longest, "role": "viewer"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
}

// TEAM-001: the accept page's two posts over plain HTTP: the token opens the invitation, the
// credentials accept it and set the session cookie; the token never appears in a URL.
#[tokio::test]
async fn the_accept_page_opens_the_invitation_then_signs_in_with_a_cookie() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let link = invite(&app, &acme, "plain@acme.example", "viewer").await;
    let (path, token) = link
        .strip_prefix(&app.base)
        .and_then(|l| l.split_once('#'))
        .unwrap_or_else(|| panic!("{link}"));
    assert_eq!(path, "/invitations/accept");

    let first = browse(&app, path, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let html = first.text().await.unwrap_or_default();
    assert!(
        html.contains("id=\"open-invitation\"") && html.contains("method=\"post\""),
        "{html}"
    );

    let opened = post_form(&app, path, &[("token", token)]).await;
    assert_eq!(opened.status(), StatusCode::OK);
    let html = opened.text().await.unwrap_or_default();
    assert!(
        html.contains("Tenant acme") && html.contains("plain@acme.example"),
        "{html}"
    );
    assert!(html.contains("id=\"new-account\""), "{html}");

    let joined = post_form(
        &app,
        path,
        &[
            ("token", token),
            ("name", "Plain Person"),
            ("password", "a-long-enough-password"),
        ],
    )
    .await;
    assert_eq!(joined.status(), StatusCode::SEE_OTHER);
    assert_eq!(header(&joined, "location"), "/");
    let cookie = header(&joined, "set-cookie");
    assert!(
        cookie.starts_with("wfo_session=wfo_s_")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let session = cookie
        .split(';')
        .next()
        .and_then(|c| c.strip_prefix("wfo_session="))
        .unwrap_or_default();
    let me = app
        .request(reqwest::Method::GET, "/api/v1/me", Some(session), None)
        .await;
    assert_eq!(me.body["tenant"]["slug"], "acme", "{}", me.body);
    assert_eq!(me.body["tenant"]["role"], "viewer", "{}", me.body);
    let accepted: i64 = sqlx::query_scalar(
        "select count(*) from audit_logs where action = 'invitation.accepted' and tenant_id = $1",
    )
    .bind(acme.id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or(-1);
    assert_eq!(accepted, 1, "accepted through the API's own acceptance");
}

#[cfg(feature = "browser")]
mod browser {
    use domain::Role;
    use engine::RunStatus;
    use serde_json::json;
    use thirtyfour::components::SelectElement;
    use thirtyfour::prelude::*;
    use uuid::Uuid;
    use workflowops_tests::app::FIXTURE_PASSWORD;
    use workflowops_tests::browser::Browser;
    use workflowops_tests::engine_support::{TestWorker, wait_for};
    use workflowops_tests::n8n::{EmulatorConfig, N8nEmulator};
    use workflowops_tests::{Caller, TestApp};

    use super::invite;
    use crate::e2e::canonical::environment;

    async fn type_into(b: &Browser, id: &str, text: &str) -> anyhow::Result<()> {
        let el = b.driver.find(By::Id(id)).await?;
        el.clear().await?;
        el.send_keys(text).await?;
        Ok(())
    }

    async fn click(b: &Browser, id: &str) -> anyhow::Result<()> {
        let el = b.driver.find(By::Id(id)).await?;
        el.scroll_into_view().await?;
        el.click().await?;
        Ok(())
    }

    async fn path(b: &Browser) -> String {
        b.driver
            .current_url()
            .await
            .map(|u| u.path().to_owned())
            .unwrap_or_default()
    }

    async fn sign_out(b: &Browser) -> anyhow::Result<()> {
        b.driver
            .find(By::Css("form[action='/logout'] button"))
            .await?
            .click()
            .await?;
        b.until("the sign-in page", || async {
            b.driver.find(By::Id("sign-in")).await.is_ok()
        })
        .await
    }

    async fn role_in(app: &TestApp, tenant: Uuid, email: &str) -> Option<String> {
        sqlx::query_scalar(
            "select m.role::text from memberships m join users u on u.id = m.user_id \
             where m.tenant_id = $1 and u.email = $2",
        )
        .bind(tenant)
        .bind(email)
        .fetch_optional(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    // TEAM-001, TEAM-002, TEAM-006, SEC-001
    #[tokio::test]
    async fn an_admin_invites_on_the_team_page_and_the_invitee_joins_from_the_link() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let admin = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let mut link = String::new();
        let steps = async {
            admin.driver.goto(app.url("/team")).await?;
            assert!(
                admin
                    .text("invitations")
                    .await
                    .contains("No pending invitations"),
                "{}",
                admin.text("invitations").await
            );
            type_into(&admin, "invite-email", "newcomer@acme.example").await?;
            SelectElement::new(&admin.driver.find(By::Id("invite-role")).await?)
                .await?
                .select_by_value("developer")
                .await?;
            click(&admin, "send-invitation").await?;
            admin
                .until("the accept link", || async {
                    admin
                        .driver
                        .find(By::Id("invite-result"))
                        .await
                        .ok()
                        .is_some()
                        && admin
                            .driver
                            .find(By::Id("invite-link"))
                            .await
                            .ok()
                            .is_some()
                        && !admin.text("invited-email").await.is_empty()
                })
                .await?;
            link = admin
                .driver
                .find(By::Id("invite-link"))
                .await?
                .value()
                .await?
                .unwrap_or_default();
            assert!(
                link.starts_with(&format!("{}/invitations/accept#wfo_i_", app.base)),
                "{link}"
            );
            // No mail server here: the page says the link was not sent, and why.
            let mail = admin.text("invite-email-status").await;
            assert!(
                mail.contains("Not emailed") && mail.contains("WFO_SMTP_URL"),
                "{mail}"
            );
            // Listed as pending, with its role and who invited, without a reload.
            let pending = admin.text("invitations").await;
            assert!(
                pending.contains("newcomer@acme.example")
                    && pending.contains("developer")
                    && pending.contains(&acme.admin.email)
                    && !pending.contains("No pending invitations"),
                "{pending}"
            );
            click(&admin, "copy-invite-link").await?;
            admin.until_text("copy-status", "Cop").await?;
            admin.screenshot("team-invited").await?;
            anyhow::Ok(())
        };
        let steps = steps.await;
        if steps.is_err() {
            admin.finish("team-invite", steps).await;
            return;
        }

        // The invitee, in a browser of their own.
        let invitee = Browser::start().await.unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            invitee.driver.goto(&link).await?;
            invitee
                .until("the invitation opened", || async {
                    invitee
                        .driver
                        .find(By::Id("accept-invitation"))
                        .await
                        .is_ok()
                })
                .await?;
            assert_eq!(invitee.text("invited-email").await, "newcomer@acme.example");
            assert_eq!(invitee.text("invited-role").await, "developer");
            assert_eq!(invitee.text("invited-tenant").await, "Tenant acme");
            assert!(
                invitee.driver.find(By::Id("new-account")).await.is_ok(),
                "a new account is created"
            );
            invitee.screenshot("invitation-accept").await?;
            // A weak password is refused on the page; the name typed stays.
            type_into(&invitee, "name", "New Comer").await?;
            type_into(&invitee, "password", "short").await?;
            click(&invitee, "accept").await?;
            invitee
                .until_text("password-error", "at least 12 characters")
                .await?;
            let name = invitee
                .driver
                .find(By::Id("name"))
                .await?
                .value()
                .await?
                .unwrap_or_default();
            assert_eq!(name, "New Comer");
            assert_eq!(role_in(&app, acme.id, "newcomer@acme.example").await, None);
            type_into(&invitee, "password", "a-long-enough-password").await?;
            click(&invitee, "accept").await?;
            invitee.until_text("who", "newcomer@acme.example").await?;
            assert_eq!(path(&invitee).await, "/");
            let who = invitee.text("who").await;
            assert!(
                who.contains("Tenant acme") && who.contains("(developer)"),
                "{who}"
            );
            assert_eq!(
                role_in(&app, acme.id, "newcomer@acme.example")
                    .await
                    .as_deref(),
                Some("developer")
            );
            // The link works once.
            invitee.driver.goto(&link).await?;
            invitee
                .until_text("accept-error", "already been accepted")
                .await?;
            invitee.screenshot("invitation-used").await?;
            anyhow::Ok(())
        };
        let steps = steps.await;
        invitee.finish("invitation-accept", steps).await;

        // Back on the Team page: a member now, no longer pending; a role change is confirmed
        // and acknowledged; a new API key is listed at once.
        let steps = async {
            admin.driver.goto(app.url("/team")).await?;
            assert!(
                admin
                    .text("members")
                    .await
                    .contains("newcomer@acme.example")
            );
            assert!(
                !admin
                    .text("invitations")
                    .await
                    .contains("newcomer@acme.example"),
                "{}",
                admin.text("invitations").await
            );
            let select = admin
                .driver
                .find(By::Css("select[data-email='newcomer@acme.example']"))
                .await?;
            SelectElement::new(&select)
                .await?
                .select_by_value("viewer")
                .await?;
            let question = admin.driver.get_alert_text().await?;
            assert!(
                question.contains("newcomer@acme.example")
                    && question.contains("from developer to viewer"),
                "{question}"
            );
            admin.driver.dismiss_alert().await?;
            assert_eq!(
                select.value().await?.as_deref(),
                Some("developer"),
                "put back"
            );
            assert_eq!(
                role_in(&app, acme.id, "newcomer@acme.example")
                    .await
                    .as_deref(),
                Some("developer"),
                "nothing changed"
            );
            SelectElement::new(&select)
                .await?
                .select_by_value("viewer")
                .await?;
            admin.driver.accept_alert().await?;
            admin
                .until_text("role-status", "Saved: newcomer@acme.example is now viewer")
                .await?;
            assert_eq!(
                role_in(&app, acme.id, "newcomer@acme.example")
                    .await
                    .as_deref(),
                Some("viewer")
            );

            assert!(admin.text("keys").await.contains("No keys."));
            let form = admin.driver.find(By::Id("new-key")).await?;
            form.find(By::Name("name"))
                .await?
                .send_keys("CI pipeline")
                .await?;
            form.find(By::Css("button[type=submit]"))
                .await?
                .click()
                .await?;
            admin.until_text("secret-value", "wfo_k_").await?;
            let keys = admin.text("keys").await;
            assert!(
                keys.contains("CI pipeline") && !keys.contains("No keys."),
                "listed without a reload: {keys}"
            );
            admin.screenshot("team").await?;
            anyhow::Ok(())
        };
        let steps = steps.await;
        admin.finish("team-roles", steps).await;
    }

    // TEAM-001: an account that exists joins with its own password, into the tenant it joined.
    #[tokio::test]
    async fn an_existing_account_joins_with_its_password_and_lands_in_the_new_tenant() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let globex = app.tenant("globex").await;
        let link = invite(&app, &acme, &globex.admin.email, "viewer").await;
        let b = Browser::start().await.unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.driver.goto(&link).await?;
            b.until("the invitation opened", || async {
                b.driver.find(By::Id("existing-account")).await.is_ok()
            })
            .await?;
            assert!(
                b.driver.find(By::Id("name")).await.is_err(),
                "no name asked of an existing account"
            );
            type_into(&b, "password", "not-the-password").await?;
            click(&b, "accept").await?;
            b.until_text("accept-error", "give its current password")
                .await?;
            type_into(&b, "password", FIXTURE_PASSWORD).await?;
            click(&b, "accept").await?;
            b.until_text("who", &globex.admin.email).await?;
            let who = b.text("who").await;
            assert!(
                who.contains("Tenant acme") && who.contains("(viewer)"),
                "in the tenant joined, not the first one: {who}"
            );
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("invitation-existing-account", steps).await;
    }

    // TEAM-006: expired, revoked, unknown and incomplete links say why; admins revoke on the
    // Team page.
    #[tokio::test]
    async fn invitation_links_that_cannot_be_used_say_why_and_admins_revoke_them() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let expired = invite(&app, &acme, "late@acme.example", "viewer").await;
        sqlx::query(
            "update invitations set expires_at = now() - interval '1 hour' where email = $1",
        )
        .bind("late@acme.example")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let revoked = invite(&app, &acme, "changed-mind@acme.example", "developer").await;
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.driver.goto(app.url("/team")).await?;
            let pending = b.text("invitations").await;
            assert!(
                pending.contains("changed-mind@acme.example")
                    && !pending.contains("late@acme.example"),
                "only pending ones: {pending}"
            );
            b.driver
                .find(By::Css("#invitations button[data-revoke-invitation]"))
                .await?
                .click()
                .await?;
            b.driver.accept_alert().await?;
            b.until("the invitation gone from the list", || async {
                b.text("invitations")
                    .await
                    .contains("No pending invitations")
            })
            .await?;
            let revoked_at: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
                "select revoked_at from invitations where email = 'changed-mind@acme.example'",
            )
            .fetch_one(&app.db.pool)
            .await?;
            assert!(revoked_at.is_some());
            sign_out(&b).await?;

            for (link, why) in [
                (expired.as_str(), "This invitation has expired"),
                (revoked.as_str(), "This invitation was revoked"),
            ] {
                b.driver.goto(link).await?;
                b.until_text("accept-error", why).await?;
                assert!(b.driver.find(By::Id("password")).await.is_err(), "no form");
            }
            b.screenshot("invitation-revoked").await?;
            b.driver
                .goto(app.url("/invitations/accept#wfo_i_not-a-real-token"))
                .await?;
            b.until_text("accept-error", "No invitation has this link")
                .await?;
            // The link cut short before its fragment.
            b.driver.goto(app.url("/invitations/accept")).await?;
            b.until("the incomplete link noticed", || async {
                b.driver.find(By::Id("no-token")).await.ok().is_some()
                    && b.text("no-token").await.contains("no invitation in it")
            })
            .await?;
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("invitation-errors", steps).await;
    }

    /// The workflows of an environment as (id, name).
    async fn workflows(app: &TestApp, who: &Caller, env: Uuid) -> Vec<(String, String)> {
        let list = app
            .get(
                &format!("/api/v1/workflows?environment_id={env}&limit=10"),
                who,
            )
            .await;
        list.body["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|w| {
                        (
                            w["id"].as_str().unwrap_or_default().to_owned(),
                            w["name"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn active(n8n: &N8nEmulator, id: &str) -> bool {
        n8n.workflow(id).is_some_and(|w| w["active"] == json!(true))
    }

    // WF-007, PRD 3.1.3: a production activation held for another admin, decided in the UI.
    #[tokio::test]
    async fn a_production_activation_waits_for_another_admin_on_the_approvals_page() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let _worker = TestWorker::start(&app.db.pool, jobs::registry(&app.state.jobs), 2);
        let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
        n8n.seed_workflows(2, 3);
        let prod = environment(&app, &acme, "Prod", "production", &n8n).await;
        let run = app
            .post(
                &format!("/api/v1/environments/{prod}/sync"),
                &acme.admin,
                &json!({"scope": "workflows"}),
            )
            .await;
        let run: Uuid = run.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}", run.body));
        wait_for(&app.db.pool, run, RunStatus::Succeeded).await;
        let listed = workflows(&app, &acme.admin, prod).await;
        let [(id, name), (other, _)] = &listed[..] else {
            panic!("two workflows: {listed:?}")
        };
        assert!(!active(&n8n, id) && !active(&n8n, other));
        let developer = app.member(&acme, Role::Developer).await;
        let second_admin = app.member(&acme, Role::Admin).await;
        let page_of = |wid: &str| app.url(&format!("/environments/{prod}/workflows/{wid}"));

        let b = Browser::start().await.unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            // A developer asks: nothing happens yet, and the page says who decides.
            b.sign_in(&app, &developer.email).await?;
            b.driver.goto(page_of(id)).await?;
            type_into(&b, "action-reason", "go live").await?;
            click(&b, "action-activate").await?;
            let request = requested(&b).await?;
            assert!(!active(&n8n, id), "held, not done");
            b.screenshot("workflow-approval-requested").await?;
            b.until_text("pending-approvals", "1").await?;

            // The requester (a developer) cannot decide it, and is told why.
            click(&b, "approval-link").await?;
            b.until("the approvals page", || async {
                b.driver.find(By::Id(&request)).await.is_ok()
            })
            .await?;
            let card = b.text(&request).await;
            assert!(
                card.contains("activate")
                    && card.contains(name.as_str())
                    && card.contains("Prod")
                    && card.contains("go live")
                    && card.contains(&developer.email),
                "{card}"
            );
            assert!(
                !decidable(&b, &request).await?,
                "a developer cannot approve"
            );
            assert!(
                card.contains("your role (developer) cannot decide"),
                "{card}"
            );
            // The workflow page remembers it is waiting.
            b.driver.goto(page_of(id)).await?;
            b.until_text("pending-requests", "decide on the Approvals page")
                .await?;
            sign_out(&b).await?;

            // An admin's own request: "another admin must decide"; the developer's is theirs
            // to decide.
            b.sign_in(&app, &acme.admin.email).await?;
            b.driver.goto(page_of(other)).await?;
            click(&b, "action-activate").await?;
            let own = requested(&b).await?;
            b.driver.goto(app.url("/approvals")).await?;
            b.until_text(&own, "you requested this; another admin must decide")
                .await?;
            assert!(!decidable(&b, &own).await?);
            assert!(decidable(&b, &request).await?);
            sign_out(&b).await?;

            // Another admin approves the developer's (confirming) and rejects the other.
            b.sign_in(&app, &second_admin.email).await?;
            b.until_text("pending-approvals", "2").await?;
            b.driver.goto(app.url("/approvals")).await?;
            b.screenshot("approvals").await?;
            let comment = format!("comment-{}", request.trim_start_matches("request-"));
            type_into(&b, &comment, "ok for Monday").await?;
            b.driver
                .find(By::Css(format!("#{request} button[data-approve]")))
                .await?
                .click()
                .await?;
            b.driver.accept_alert().await?;
            b.until("the activation carried out", || async { active(&n8n, id) })
                .await?;
            b.until_text("decided", "ok for Monday").await?;
            let decided = b.text("decided").await;
            assert!(
                decided.contains("approved") && decided.contains(&second_admin.email),
                "{decided}"
            );
            b.driver
                .find(By::Css(format!("#{own} button[data-reject]")))
                .await?
                .click()
                .await?;
            b.until_text("decided", "rejected").await?;
            assert!(!active(&n8n, other), "a rejected request changes nothing");
            b.until_text("no-pending", "Nothing waits").await?;
            b.until("the nav's count gone", || async {
                b.driver.find(By::Id("pending-approvals")).await.is_ok()
                    && b.text("pending-approvals").await.is_empty()
            })
            .await?;
            // The workflow page shows it active.
            b.driver.goto(page_of(id)).await?;
            assert!(b.driver.find(By::Id("action-deactivate")).await.is_ok());
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("approvals", steps).await;
    }

    /// After a click on a held action: the page's notice, and the id of the request it links
    /// to (`request-<uuid>`, the card's id on the Approvals page).
    async fn requested(b: &Browser) -> anyhow::Result<String> {
        b.until_text(
            "approval-requested",
            "Approval requested from another admin",
        )
        .await?;
        let href = b
            .driver
            .find(By::Id("approval-link"))
            .await?
            .attr("href")
            .await?
            .unwrap_or_default();
        href.strip_prefix("/approvals#")
            .filter(|r| r.starts_with("request-"))
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("the link: {href}"))
    }

    /// Whether the viewer may approve the request whose card is `request`.
    async fn decidable(b: &Browser, request: &str) -> anyhow::Result<bool> {
        Ok(b.driver
            .find(By::Css(format!("#{request} button[data-approve]")))
            .await?
            .is_enabled()
            .await?)
    }

    // Back after signing out asks the server again instead of showing the page from the cache.
    #[tokio::test]
    async fn back_after_signing_out_shows_the_sign_in_page_not_the_cached_one() {
        let app = TestApp::spawn().await;
        let acme = app.tenant("acme").await;
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.driver.goto(app.url("/team")).await?;
            b.until("the team page", || async {
                b.driver.find(By::Id("members")).await.is_ok()
            })
            .await?;
            sign_out(&b).await?;
            b.driver.back().await?;
            b.until("the sign-in page", || async {
                b.driver.find(By::Id("sign-in")).await.is_ok()
            })
            .await?;
            assert!(b.driver.find(By::Id("members")).await.is_err());
            assert_eq!(path(&b).await, "/login");
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("back-after-sign-out", steps).await;
    }
}
