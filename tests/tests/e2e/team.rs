use domain::Role;
use reqwest::Method;
use serde_json::json;
use workflowops_tests::TestApp;
use workflowops_tests::app::FIXTURE_PASSWORD;

// TEAM-001, TEAM-006
#[tokio::test]
async fn an_invitation_is_pending_until_accepted_once_which_creates_the_member() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let res = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": "New.Person@Acme.example", "role": "developer"}),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let token = res.body["token"].as_str().unwrap_or_default().to_owned();
    assert!(
        res.body["accept_url"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&token)
    );
    assert_eq!(res.body["invitation"]["status"], "pending");
    assert_eq!(res.body["invitation"]["email"], "new.person@acme.example");

    let pending = app
        .get("/api/v1/team/invitations?status=pending", &acme.admin)
        .await;
    assert_eq!(pending.body["items"].as_array().map(Vec::len), Some(1));

    let accept =
        json!({"token": token, "name": "New Person", "password": "a-long-enough-password"});
    let res = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&accept),
        )
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    assert_eq!(res.body["tenant"]["role"], "developer");
    let session = res.body["token"].as_str().unwrap_or_default().to_owned();
    let me = app
        .request(Method::GET, "/api/v1/me", Some(&session), None)
        .await;
    assert_eq!(me.body["tenant"]["slug"], "acme");

    // Single use.
    let again = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&accept),
        )
        .await;
    assert_eq!(
        (again.status.as_u16(), again.code()),
        (410, "invitation_used")
    );
    let accepted = app
        .get("/api/v1/team/invitations?status=accepted", &acme.admin)
        .await;
    assert_eq!(accepted.body["items"][0]["status"], "accepted");
    let members = app.get("/api/v1/team/members", &acme.admin).await;
    assert_eq!(members.body["items"].as_array().map(Vec::len), Some(2));
}

// TEAM-001
#[tokio::test]
async fn an_existing_account_accepts_with_its_own_password() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let res = app
        .post(
            "/api/v1/team/invitations",
            &globex.admin,
            &json!({"email": acme.admin.email, "role": "viewer"}),
        )
        .await;
    let token = res.body["token"].as_str().unwrap_or_default().to_owned();
    let wrong = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&json!({"token": token, "password": "wrong-password-here"})),
        )
        .await;
    assert_eq!(
        (wrong.status.as_u16(), wrong.code()),
        (401, "invalid_credentials")
    );
    let ok = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&json!({"token": token, "password": FIXTURE_PASSWORD})),
        )
        .await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    assert_eq!(ok.body["tenant"]["slug"], "globex");
}

// TEAM-006
#[tokio::test]
async fn revoked_and_expired_invitations_cannot_be_accepted() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let first = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": "a@acme.example", "role": "viewer"}),
        )
        .await;
    let id = first.body["invitation"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let dup = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": "A@acme.example", "role": "admin"}),
        )
        .await;
    assert_eq!(
        (dup.status.as_u16(), dup.code()),
        (409, "invitation_pending")
    );
    assert_eq!(
        app.delete(&format!("/api/v1/team/invitations/{id}"), &acme.admin)
            .await
            .status,
        204
    );
    let accept =
        json!({"token": first.body["token"], "name": "A", "password": "a-long-enough-password"});
    let res = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&accept),
        )
        .await;
    assert_eq!(
        (res.status.as_u16(), res.code()),
        (410, "invitation_revoked")
    );

    let second = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": "b@acme.example", "role": "viewer"}),
        )
        .await;
    sqlx::query("update invitations set expires_at = now() - interval '1 minute' where email = 'b@acme.example'")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let accept =
        json!({"token": second.body["token"], "name": "B", "password": "a-long-enough-password"});
    let res = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&accept),
        )
        .await;
    assert_eq!(
        (res.status.as_u16(), res.code()),
        (410, "invitation_expired")
    );
    let expired = app
        .get("/api/v1/team/invitations?status=expired", &acme.admin)
        .await;
    assert_eq!(expired.body["items"].as_array().map(Vec::len), Some(1));
    // An expired invitation does not block a new one.
    let again = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": "b@acme.example", "role": "viewer"}),
        )
        .await;
    assert_eq!(again.status, 201);
}

// TEAM-001
#[tokio::test]
async fn inviting_a_current_member_is_a_conflict() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let res = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": acme.admin.email, "role": "viewer"}),
        )
        .await;
    assert_eq!((res.status.as_u16(), res.code()), (409, "already_member"));
}

// TEAM-002
#[tokio::test]
async fn a_role_change_takes_effect_on_the_next_request() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let viewer = app.member(&acme, Role::Viewer).await;
    let uid = viewer.user_id.unwrap_or_default();
    // Cached as a viewer: refused.
    assert_eq!(app.get("/api/v1/audit-logs", &viewer).await.status, 403);
    let res = app
        .patch(
            &format!("/api/v1/team/members/{uid}"),
            &acme.admin,
            &json!({"role": "admin"}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    assert_eq!(res.body["role"], "admin");
    assert_eq!(app.get("/api/v1/audit-logs", &viewer).await.status, 200);
}

// TEAM-002, TEAM-003
#[tokio::test]
async fn the_last_admin_cannot_be_demoted_or_removed() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let uid = acme.admin.user_id.unwrap_or_default();
    let res = app
        .patch(
            &format!("/api/v1/team/members/{uid}"),
            &acme.admin,
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!((res.status.as_u16(), res.code()), (409, "last_admin"));
    let res = app
        .delete(&format!("/api/v1/team/members/{uid}"), &acme.admin)
        .await;
    assert_eq!((res.status.as_u16(), res.code()), (409, "last_admin"));
    // With a second admin, stepping down works.
    app.member(&acme, Role::Admin).await;
    let res = app
        .patch(
            &format!("/api/v1/team/members/{uid}"),
            &acme.admin,
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(res.status, 200);
}

// TEAM-003
#[tokio::test]
async fn a_removed_member_loses_access_at_once() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let dev = app.member(&acme, Role::Developer).await;
    assert_eq!(app.get("/api/v1/team/members", &dev).await.status, 200);
    let uid = dev.user_id.unwrap_or_default();
    assert_eq!(
        app.delete(&format!("/api/v1/team/members/{uid}"), &acme.admin)
            .await
            .status,
        204
    );
    let res = app.get("/api/v1/team/members", &dev).await;
    assert_eq!((res.status.as_u16(), res.code()), (403, "no_tenant"));
    let res = app
        .get(&format!("/api/v1/team/members/{uid}"), &acme.admin)
        .await;
    assert_eq!(res.status, 404);
}

// TEAM-004
#[tokio::test]
async fn the_member_list_pages_with_a_cursor() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    for _ in 0..4 {
        app.member(&acme, Role::Viewer).await;
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/team/members?limit=2".to_owned();
    loop {
        let res = app.get(&path, &acme.admin).await;
        assert_eq!(res.status, 200, "{:?}", res.body);
        let items = res.body["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|m| m["user_id"].as_str().unwrap_or_default().to_owned()),
        );
        match res.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/team/members?limit=2&cursor={c}"),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(seen.len(), 5);
    assert_eq!(unique.len(), 5);
}

// TEAM-005
#[tokio::test]
async fn invitations_stop_at_the_member_limit() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    sqlx::query("update tenants set member_limit = 2 where id = $1")
        .bind(acme.id)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": "a@acme.example", "role": "viewer"}),
        )
        .await;
    assert_eq!(first.status, 201);
    let second = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": "b@acme.example", "role": "viewer"}),
        )
        .await;
    assert_eq!(
        (second.status.as_u16(), second.code()),
        (409, "member_limit_reached")
    );
}

// TEAM-001: with email configured, the invitee gets the link by email.
#[tokio::test]
async fn an_invitation_is_emailed_with_its_link_when_email_is_configured() {
    let smtp = workflowops_tests::mail::SmtpPeer::start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mailer = jobs::notify::Mailer::new(
        &format!("smtp://{}:{}", smtp.host(), smtp.port()),
        "WorkflowOps <invites@workflowops.test>",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::spawn_with(|c| {
        c.notify.mailer = Some(std::sync::Arc::new(mailer));
    })
    .await;
    let acme = app.tenant("acme").await;
    let res = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": "new.person@acme.example", "role": "viewer"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    assert_eq!(res.body["email_sent"], true, "{}", res.body);
    let mails = smtp.wait_for(1, std::time::Duration::from_secs(5)).await;
    assert_eq!(mails[0].to, vec!["new.person@acme.example"]);
    let url = res.body["accept_url"].as_str().unwrap_or_default();
    // Quoted-printable or not, the link is in the body unbroken only when short lines allow it:
    // compare without soft line breaks.
    let body = mails[0].data.replace("=\r\n", "");
    assert!(body.contains(url), "{body}");
    assert!(body.contains("Tenant acme"), "{body}");

    // A mail server that refuses: the invitation stands, the admin is told why.
    smtp.fail_next(
        workflowops_tests::mail::Stage::Rcpt,
        550,
        "5.1.1 no such user",
        1,
    );
    let res = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": "ghost@acme.example", "role": "viewer"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    assert_eq!(res.body["email_sent"], false);
    assert!(
        res.body["email_error"]
            .as_str()
            .unwrap_or_default()
            .contains("550"),
        "{}",
        res.body
    );

    // Without email configured: not sent, and said so.
    let plain = TestApp::spawn().await;
    let globex = plain.tenant("globex").await;
    let res = plain
        .post(
            "/api/v1/team/invitations",
            &globex.admin,
            &json!({"email": "someone@globex.example", "role": "viewer"}),
        )
        .await;
    assert_eq!(res.body["email_sent"], false);
    assert!(
        res.body["email_error"]
            .as_str()
            .unwrap_or_default()
            .contains("WFO_SMTP_URL")
    );
}

async fn invite_token(
    app: &TestApp,
    admin: &workflowops_tests::app::Caller,
    email: &str,
) -> String {
    let res = app
        .post(
            "/api/v1/team/invitations",
            admin,
            &json!({"email": email, "role": "viewer"}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    res.body["token"].as_str().unwrap_or_default().to_owned()
}

async fn set_member_limit(app: &TestApp, tenant: uuid::Uuid, limit: i32) {
    sqlx::query("update tenants set member_limit = $2 where id = $1")
        .bind(tenant)
        .bind(limit)
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

// TEAM-005: the seat limit holds when an invitation is accepted, not only when it is sent.
#[tokio::test]
async fn accepting_an_invitation_is_refused_when_the_seats_are_full_and_leaves_it_pending() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    set_member_limit(&app, acme.id, 3).await;
    // Two invitations fill the seats (the admin holds the third): one for a new account, one
    // for an existing one.
    let new_person = invite_token(&app, &acme.admin, "new.person@acme.example").await;
    let existing = invite_token(&app, &acme.admin, &globex.admin.email).await;
    // The plan shrinks: one seat for the admin only.
    set_member_limit(&app, acme.id, 1).await;

    let refused = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&json!({"token": new_person, "name": "New Person", "password": "a-long-enough-password"})),
        )
        .await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (409, "member_limit_reached"),
        "{}",
        refused.body
    );
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no seat left"),
        "{}",
        refused.body
    );
    let refused = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&json!({"token": existing, "password": FIXTURE_PASSWORD})),
        )
        .await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (409, "member_limit_reached"),
        "{}",
        refused.body
    );
    // Nothing written: no account, no member, both invitations still open.
    let users: i64 =
        sqlx::query_scalar("select count(*) from users where email = 'new.person@acme.example'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(users, 0);
    let members = app.get("/api/v1/team/members", &acme.admin).await;
    assert_eq!(members.body["items"].as_array().map(Vec::len), Some(1));
    let pending = app
        .get("/api/v1/team/invitations?status=pending", &acme.admin)
        .await;
    assert_eq!(
        pending.body["items"].as_array().map(Vec::len),
        Some(2),
        "{}",
        pending.body
    );
    // The refusal is logged as the plan's (ENT-011).
    let denials: i64 = sqlx::query_scalar(
        "select count(*) from feature_denials where tenant_id = $1 and action = 'invitation.accept'",
    )
    .bind(acme.id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(denials, 2);

    // A seat freed: the same invitation works, once; then the seats are full again.
    set_member_limit(&app, acme.id, 2).await;
    let accepted = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&json!({"token": new_person, "name": "New Person", "password": "a-long-enough-password"})),
        )
        .await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    assert_eq!(accepted.body["tenant"]["slug"], "acme");
    let refused = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&json!({"token": existing, "password": FIXTURE_PASSWORD})),
        )
        .await;
    assert_eq!(refused.code(), "member_limit_reached", "{}", refused.body);
    let members = app.get("/api/v1/team/members", &acme.admin).await;
    assert_eq!(members.body["items"].as_array().map(Vec::len), Some(2));
}

// TEAM-005: other open invitations do not stand in the way of one being accepted: it holds
// one of the seats they are all counted against.
#[tokio::test]
async fn an_invitation_is_accepted_while_seats_are_held_by_invitations() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    set_member_limit(&app, acme.id, 3).await;
    let first = invite_token(&app, &acme.admin, "first@acme.example").await;
    let _second = invite_token(&app, &acme.admin, "second@acme.example").await;
    let accepted = app
        .request(
            Method::POST,
            "/api/v1/invitations/accept",
            None,
            Some(&json!({"token": first, "name": "First", "password": "a-long-enough-password"})),
        )
        .await;
    assert_eq!(accepted.status, 201, "{}", accepted.body);
    let members = app.get("/api/v1/team/members", &acme.admin).await;
    assert_eq!(members.body["items"].as_array().map(Vec::len), Some(2));
}

/// A browser-like post of the invitation page's form, with the headers a browser adds.
async fn post_accept_form(
    app: &TestApp,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut req = http
        .post(app.url("/invitations/accept"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish(),
        );
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap_or_else(|e| panic!("{e}"))
}

// TEAM-001, login CSRF: accepting signs the browser in, so another site cannot post the form.
#[tokio::test]
async fn the_invitation_form_refuses_posts_from_other_sites() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let token = invite_token(&app, &acme.admin, "new.person@acme.example").await;
    let fields = [
        ("token", token.as_str()),
        ("name", "New Person"),
        ("password", "a-long-enough-password"),
    ];
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
    ] {
        // Neither opening the invitation nor accepting it.
        for fields in [&fields[..1], &fields[..]] {
            let res = post_accept_form(&app, fields, &headers).await;
            assert_eq!(res.status(), 403, "{headers:?}");
            assert!(
                res.headers().get("set-cookie").is_none(),
                "{headers:?}: a cookie was set"
            );
            let html = res.text().await.unwrap_or_default();
            assert!(html.contains("another website"), "{headers:?}: {html}");
        }
    }
    let pending = app
        .get("/api/v1/team/invitations?status=pending", &acme.admin)
        .await;
    assert_eq!(pending.body["items"].as_array().map(Vec::len), Some(1));

    // From the server's own page: accepted and signed in. The page asks for no referrer, so
    // the browser sends `Origin: null` and says where the post comes from in Sec-Fetch-Site.
    let res = post_accept_form(
        &app,
        &fields,
        &[("origin", "null"), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(res.status(), 303);
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(cookie.starts_with("wfo_session=wfo_s_"), "{cookie}");
}

// Without an Origin (not a browser), the form works as before.
#[tokio::test]
async fn the_invitation_form_accepts_a_post_without_an_origin() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let token = invite_token(&app, &acme.admin, "new.person@acme.example").await;
    let res = post_accept_form(
        &app,
        &[
            ("token", token.as_str()),
            ("name", "New Person"),
            ("password", "a-long-enough-password"),
        ],
        &[],
    )
    .await;
    assert_eq!(res.status(), 303);
    let members = app.get("/api/v1/team/members", &acme.admin).await;
    assert_eq!(members.body["items"].as_array().map(Vec::len), Some(2));
}

// TEAM-002, ENT-001, PROV-007: the PRD's plan table has no role-based access on Free — every
// member a Free tenant adds is an admin. Viewer and developer roles need a paid plan; a member
// who already holds one keeps it, and refusals are logged like every missing feature.
#[tokio::test]
async fn roles_other_than_admin_need_a_plan_with_role_based_access() {
    let app = TestApp::spawn().await;
    let free = app.tenant_on("freeco", "free").await;
    let kept = app.member(&free, Role::Viewer).await;
    let kept_id = kept
        .user_id
        .unwrap_or_else(|| panic!("a member has a user id"));

    let refused = app
        .post(
            "/api/v1/team/invitations",
            &free.admin,
            &json!({"email": "dev@freeco.example", "role": "developer"}),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.body["code"], "feature_not_in_plan");
    let detail = refused.body["message"].as_str().unwrap_or_default();
    assert!(detail.contains("role-based access"), "{detail}");
    assert!(detail.contains("Pro plan includes it"), "{detail}");
    let admin_invite = app
        .post(
            "/api/v1/team/invitations",
            &free.admin,
            &json!({"email": "admin@freeco.example", "role": "admin"}),
        )
        .await;
    assert_eq!(admin_invite.status, 201, "{}", admin_invite.body);

    // The viewer stays a viewer (re-stating the role is no change), cannot become a developer,
    // and can become an admin.
    let path = format!("/api/v1/team/members/{kept_id}");
    let same = app
        .patch(&path, &free.admin, &json!({"role": "viewer"}))
        .await;
    assert_eq!(same.status, 200, "{}", same.body);
    let demote = app
        .patch(&path, &free.admin, &json!({"role": "developer"}))
        .await;
    assert_eq!(demote.status, 403, "{}", demote.body);
    assert_eq!(demote.body["code"], "feature_not_in_plan");
    let promote = app
        .patch(&path, &free.admin, &json!({"role": "admin"}))
        .await;
    assert_eq!(promote.status, 200, "{}", promote.body);
    assert_eq!(promote.body["role"], "admin");

    let denials: Vec<(String, String)> = sqlx::query_as(
        "select feature, action from feature_denials where tenant_id = $1 order by id",
    )
    .bind(free.id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        denials,
        [
            (
                "role_based_access".to_owned(),
                "invitation.create".to_owned()
            ),
            (
                "role_based_access".to_owned(),
                "member.role_change".to_owned()
            ),
        ]
    );

    // Pro includes it.
    let pro = app.tenant_on("proco", "pro").await;
    let dev = app
        .post(
            "/api/v1/team/invitations",
            &pro.admin,
            &json!({"email": "dev@proco.example", "role": "developer"}),
        )
        .await;
    assert_eq!(dev.status, 201, "{}", dev.body);
}
