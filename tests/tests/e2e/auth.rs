use domain::Role;
use reqwest::Method;
use serde_json::json;
use workflowops_tests::TestApp;
use workflowops_tests::app::FIXTURE_PASSWORD;

// SEC-005
#[tokio::test]
async fn login_returns_a_session_token_that_resolves_to_tenant_user_and_role() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let dev = app.member(&acme, Role::Developer).await;
    let res = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&json!({"email": dev.email, "password": FIXTURE_PASSWORD})),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let token = res.body["token"].as_str().unwrap_or_default().to_owned();
    assert!(token.starts_with("wfo_s_"));
    assert_eq!(res.body["tenant"]["slug"], "acme");

    let me = app
        .request(Method::GET, "/api/v1/me", Some(&token), None)
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["kind"], "user");
    assert_eq!(me.body["user"]["email"], dev.email.as_str());
    assert_eq!(me.body["tenant"]["role"], "developer");
    let permissions = me.body["permissions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(permissions.contains(&json!("execute_promotions")));
    assert!(!permissions.contains(&json!("manage_team")));
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let wrong = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&json!({"email": acme.admin.email, "password": "not the password"})),
        )
        .await;
    let unknown = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&json!({"email": "nobody@acme.example", "password": "whatever-password"})),
        )
        .await;
    for res in [&wrong, &unknown] {
        assert_eq!(res.status, 401);
        assert_eq!(res.code(), "invalid_credentials");
    }
    assert_eq!(wrong.body["message"], unknown.body["message"]);
    // SEC-004: failed sign-ins are recorded, with where they came from.
    let failed: Vec<(String, Option<String>)> = sqlx::query_as(
        "select actor_label, ip from audit_logs where action = 'auth.login_failed' order by id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap_or_default();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].0, acme.admin.email);
    assert_eq!(failed[1].1.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn login_into_a_tenant_the_user_is_not_in_is_refused() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    app.tenant("globex").await;
    let res = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&json!({"email": acme.admin.email, "password": FIXTURE_PASSWORD, "tenant": "globex"})),
        )
        .await;
    assert_eq!(res.status, 403);
    assert_eq!(res.code(), "not_a_member");
}

#[tokio::test]
async fn logout_revokes_the_token_at_once() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    // Warm the auth cache first, so the test proves eviction, not a cold lookup.
    assert_eq!(app.get("/api/v1/me", &acme.admin).await.status, 200);
    let res = app
        .request(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&acme.admin.token),
            None,
        )
        .await;
    assert_eq!(res.status, 204);
    let after = app.get("/api/v1/me", &acme.admin).await;
    assert_eq!(after.status, 401);
    assert_eq!(after.code(), "token_revoked");
}

#[tokio::test]
async fn an_expired_session_is_refused_with_token_expired() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    sqlx::query("update sessions set expires_at = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let res = app.get("/api/v1/me", &acme.admin).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.code(), "token_expired");
}

#[tokio::test]
async fn garbage_and_malformed_authorization_headers_are_401_with_distinct_codes() {
    let app = TestApp::spawn().await;
    let res = app
        .request(
            Method::GET,
            "/api/v1/me",
            Some("wfo_s_not-a-real-token"),
            None,
        )
        .await;
    assert_eq!((res.status.as_u16(), res.code()), (401, "invalid_token"));
    let res = app.request(Method::GET, "/api/v1/me", None, None).await;
    assert_eq!((res.status.as_u16(), res.code()), (401, "unauthenticated"));
    let sent = app
        .http
        .get(app.url("/api/v1/me"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let res = TestApp::read(sent).await;
    assert_eq!(
        (res.status.as_u16(), res.code()),
        (401, "invalid_authorization")
    );
}

#[tokio::test]
async fn switching_tenant_changes_where_the_session_acts() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let user_id = acme.admin.user_id.unwrap_or_default();
    domain::tenancy::add_member(&app.db.pool, globex.id, user_id, Role::Viewer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let tenants = app.get("/api/v1/me/tenants", &acme.admin).await;
    assert_eq!(tenants.body.as_array().map(Vec::len), Some(2));

    let res = app
        .post(
            "/api/v1/auth/switch-tenant",
            &acme.admin,
            &json!({"tenant": "globex"}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let me = app.get("/api/v1/me", &acme.admin).await;
    assert_eq!(me.body["tenant"]["slug"], "globex");
    assert_eq!(me.body["tenant"]["role"], "viewer");
    // As a viewer in globex, team management is now forbidden.
    let res = app
        .post(
            "/api/v1/team/invitations",
            &acme.admin,
            &json!({"email": "x@y.example", "role": "viewer"}),
        )
        .await;
    assert_eq!(res.status, 403);

    let res = app
        .post(
            "/api/v1/auth/switch-tenant",
            &acme.admin,
            &json!({"tenant": "initech"}),
        )
        .await;
    assert_eq!(res.status, 404);
}

// SEC-005: repeated failed sign-ins lock the account from that address for a growing time; a
// locked attempt is refused before its password is checked, with Retry-After, and not audited
#[tokio::test]
async fn failed_sign_ins_are_throttled_and_a_success_clears_the_count() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let dev = app.member(&acme, Role::Developer).await;
    let login = |password: &'static str| {
        let body = json!({"email": dev.email.to_uppercase(), "password": password});
        let app = &app;
        async move {
            app.request(Method::POST, "/api/v1/auth/login", None, Some(&body))
                .await
        }
    };
    for _ in 0..4 {
        assert_eq!(login("wrong password!").await.status, 401);
    }
    // A success before the threshold clears the count.
    assert_eq!(login(FIXTURE_PASSWORD).await.status, 200);
    for _ in 0..5 {
        assert_eq!(login("wrong password!").await.status, 401);
    }
    let locked = login(FIXTURE_PASSWORD).await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert_eq!(locked.code(), "too_many_attempts");
    let wait: u64 = locked
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    // The other tenant members are not affected.
    let other = app
        .request(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(&json!({"email": acme.admin.email, "password": FIXTURE_PASSWORD})),
        )
        .await;
    assert_eq!(other.status, 200, "{}", other.body);
    let failures: i64 =
        sqlx::query_scalar("select count(*) from audit_logs where action = 'auth.login_failed'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or(-1);
    assert_eq!(
        failures, 9,
        "each checked failure is audited, the refused attempt is not"
    );

    // Once the lock has passed, the next failure locks for twice as long.
    sqlx::query("update login_throttle set locked_until = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(login("wrong password!").await.status, 401);
    let longer = login(FIXTURE_PASSWORD).await;
    assert_eq!(longer.status, 429);
    let wait: u64 = longer
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((31..=60).contains(&wait), "Retry-After {wait}");
    sqlx::query("update login_throttle set locked_until = null")
        .execute(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(login(FIXTURE_PASSWORD).await.status, 200);
}

/// A browser-like form post to one of the UI's sign-in forms, with the headers a browser adds.
async fn post_form(
    app: &TestApp,
    path: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut req = http
        .post(app.url(path))
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
    req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn session_cookie_set(res: &reqwest::Response) -> bool {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("wfo_session=") && !c.starts_with("wfo_session=;"))
}

// Login CSRF: another site cannot sign a visitor's browser in to an account of its choosing.
#[tokio::test]
async fn the_sign_in_form_refuses_posts_from_other_sites() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let fields = [
        ("email", acme.admin.email.as_str()),
        ("password", FIXTURE_PASSWORD),
    ];
    for headers in [
        vec![("origin", "https://evil.example")],
        // Same host, another port: another origin.
        vec![("origin", "http://127.0.0.1:1")],
        // A sandboxed frame or a redirect across sites.
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        // A sibling subdomain is another origin too.
        vec![
            ("origin", "https://sub.evil.example"),
            ("sec-fetch-site", "same-site"),
        ],
    ] {
        let res = post_form(&app, "/login", &fields, &headers).await;
        assert_eq!(res.status(), 403, "{headers:?}");
        assert!(!session_cookie_set(&res), "{headers:?}: signed in");
        let html = res.text().await.unwrap_or_default();
        assert!(
            html.contains("id=\"login-error\"") && html.contains("another website"),
            "{headers:?}: {html}"
        );
    }
    let sessions: i64 =
        sqlx::query_scalar("select count(*) from audit_logs where action = 'auth.login'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sessions, 0, "a refused post opened a session");
}

#[tokio::test]
async fn the_sign_in_form_accepts_same_origin_posts_and_posts_without_an_origin() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let fields = [
        ("email", acme.admin.email.as_str()),
        ("password", FIXTURE_PASSWORD),
    ];
    for headers in [
        // A browser on the server's own page.
        vec![
            ("origin", app.base.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![("origin", app.base.as_str())],
        // A page of ours with `Referrer-Policy: no-referrer`: the browser hides its origin.
        vec![("origin", "null"), ("sec-fetch-site", "same-origin")],
        // Typed into the address bar (no page sent it).
        vec![("sec-fetch-site", "none")],
        // Not a browser (curl, scripts): no Origin.
        vec![],
    ] {
        let res = post_form(&app, "/login", &fields, &headers).await;
        assert_eq!(res.status(), 303, "{headers:?}");
        assert!(session_cookie_set(&res), "{headers:?}: not signed in");
    }

    // Behind a proxy that rewrites Host: the configured public URL is this server's origin too.
    let proxied =
        TestApp::spawn_with(|c| c.public_url = "https://wfo.example.com".to_owned()).await;
    let globex = proxied.tenant("globex").await;
    let fields = [
        ("email", globex.admin.email.as_str()),
        ("password", FIXTURE_PASSWORD),
    ];
    let res = post_form(
        &proxied,
        "/login",
        &fields,
        &[("origin", "https://wfo.example.com")],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert!(session_cookie_set(&res));
    let res = post_form(
        &proxied,
        "/login",
        &fields,
        &[("origin", "https://other.example.com")],
    )
    .await;
    assert_eq!(res.status(), 403);
}
