//! The web UI of plans and billing: the tenant's Plans & billing page, the platform's plan matrix,
//! a tenant's subscriptions and overrides in the console, and pages of features a plan leaves out.

use domain::Role;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use workflowops_tests::stripe::{PeerPrice, StripePeer, StripePeerConfig};
use workflowops_tests::{Caller, TestApp};

const PRO: &str = "price_pro_monthly";

/// The app selling n8n Pro ($299 a month) through the Stripe peer, whose webhooks reach it.
/// Agency stays custom-priced (assigned by platform admins).
async fn selling_pro() -> (TestApp, StripePeer) {
    let stripe = StripePeer::start(StripePeerConfig {
        prices: vec![PeerPrice::new(PRO, 29_900, "usd", "month")],
        ..StripePeerConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("stripe peer: {e}"));
    let client = billing::Stripe::new(billing::StripeConfig {
        secret_key: SecretString::from(stripe.secret_key().to_owned()),
        api_base: Some(stripe.base_url()),
        webhook_secret: Some(SecretString::from(stripe.webhook_secret().to_owned())),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let app = TestApp::spawn_with(|c| c.stripe = Some(client)).await;
    stripe.set_webhook_url(&format!("{}/api/v1/billing/webhook", app.base));
    sqlx::query(
        "update plans set stripe_price_id = $1, price_cents = 29900 \
         where provider = 'n8n' and key = 'pro'",
    )
    .bind(PRO)
    .execute(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (app, stripe)
}

/// A page as the signed-in `who` gets it, without following redirects.
async fn page(app: &TestApp, path: &str, who: &Caller) -> (StatusCode, String) {
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .get(app.url(path))
        .header("cookie", format!("wfo_session={}", who.token))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (res.status(), res.text().await.unwrap_or_default())
}

/// The part of a page from the element with `id` to the end of its section.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    html.find(&marker)
        .map_or("", |at| &html[at..])
        .split("</section>")
        .next()
        .unwrap_or_default()
}

/// The start tag of the element with `id` (empty when absent).
fn tag<'a>(html: &'a str, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    let Some(at) = html.find(&marker) else {
        return "";
    };
    let start = html[..at].rfind('<').unwrap_or(at);
    let end = html[at..].find('>').map_or(html.len(), |e| at + e + 1);
    &html[start..end]
}

/// The page's own content, without the layout (whose sign-out button every page has).
fn main_of(html: &str) -> &str {
    let after = html.split("<main>").nth(1).unwrap_or_default();
    after.split("</main>").next().unwrap_or_default()
}

async fn n8n_plan_features(app: &TestApp, plan: &str) -> Value {
    sqlx::query_scalar(
        "select jsonb_object_agg(f.feature, f.value) from plan_features f \
         join plans p on p.id = f.plan_id where p.provider = 'n8n' and p.key = $1",
    )
    .bind(plan)
    .fetch_one(&app.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

// PROV-007, PROV-009, ENT-003, BILL-002
#[tokio::test]
async fn the_billing_page_shows_a_free_tenant_its_plan_and_pro_with_its_price_and_upgrade() {
    let (app, _stripe) = selling_pro().await;
    let acme = app.tenant_on("acme", "free").await;
    let (status, html) = page(&app, "/billing", &acme.admin).await;
    assert_eq!(status, 200, "{html}");
    let n8n = section(&html, "provider-n8n");
    assert!(n8n.contains(r#"<span id="plan-n8n">Free</span>"#), "{n8n}");
    assert!(
        n8n.contains(r#"id="price-n8n-pro">$299 / month</span>"#),
        "{n8n}"
    );
    assert!(
        n8n.contains(r#"id="checkout-n8n-pro" data-api="POST /api/v1/billing/checkout""#),
        "{n8n}"
    );
    assert!(n8n.contains(">Upgrade</button>"), "{n8n}");
    // Free is the plan in force; custom plans ask to be contacted.
    assert!(n8n.contains("Current plan"), "{n8n}");
    assert!(n8n.contains("Custom — contact us"), "{n8n}");
    assert!(n8n.contains(r#"id="contact-n8n-agency""#), "{n8n}");
    // Cheapest first.
    let (free, pro, agency) = (
        n8n.find(r#"id="plan-n8n-free""#),
        n8n.find(r#"id="plan-n8n-pro""#),
        n8n.find(r#"id="plan-n8n-agency""#),
    );
    assert!(free < pro && pro < agency, "{free:?} {pro:?} {agency:?}");
    // What Free grants, from the plan.
    let features = section(&html, "features-n8n");
    assert!(features.contains("Environment promotion"), "{features}");
    assert!(!features.contains("override"), "{features}");
    // A billing admin sees payment and invoices; nothing is billed yet.
    assert!(html.contains(r#"id="invoices""#));
    assert!(section(&html, "invoices").contains("No invoices yet."));
    assert!(!html.contains("Billing is not configured"));

    // Back from Stripe Checkout.
    let (_, html) = page(&app, "/billing?checkout=cancelled", &acme.admin).await;
    assert!(
        section(&html, "checkout-notice").contains("nothing was charged"),
        "{html}"
    );
}

// ENT-003, ENT-008: an override shows where a value comes from, and until when.
#[tokio::test]
async fn the_billing_page_says_which_features_come_from_an_override() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant_on("acme", "free").await;
    let set = app
        .post(
            &format!("/api/v1/platform/tenants/{}/overrides", acme.id),
            &admin,
            &json!({"feature": "promotions", "provider": "n8n", "value": true,
                "reason": "trial of promotions", "expires_at": "2099-01-02T03:04:00Z"}),
        )
        .await;
    assert_eq!(set.status, 201, "{}", set.body);
    let (status, html) = page(&app, "/billing", &acme.admin).await;
    assert_eq!(status, 200, "{html}");
    let features = section(&html, "features-n8n");
    let row = features
        .split("<tr>")
        .find(|r| r.contains("Environment promotion"))
        .unwrap_or_else(|| panic!("{features}"));
    assert!(row.contains("included"), "{row}");
    assert!(row.contains("override"), "{row}");
    assert!(row.contains("until 2099-01-02 03:04 UTC"), "{row}");
    // Without Stripe nothing paid can be bought here, and the page says why.
    assert!(html.contains("Billing is not configured on this server"));
    assert!(!html.contains("/api/v1/billing/checkout"), "{html}");
}

// BILL-002, TEAM-002: every member sees the plans; only billing admins act or see invoices.
#[tokio::test]
async fn a_viewer_sees_the_plans_but_no_billing_actions() {
    let (app, _stripe) = selling_pro().await;
    let acme = app.tenant_on("acme", "free").await;
    let viewer = app.member(&acme, Role::Viewer).await;
    let (status, html) = page(&app, "/billing", &viewer).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains(r#"id="nav-billing""#));
    let content = main_of(&html);
    assert!(content.contains(r#"<span id="plan-n8n">Free</span>"#));
    assert!(content.contains("$299 / month"));
    assert!(!content.contains("<button"), "{content}");
    assert!(!content.contains("data-api"), "{content}");
    assert!(!content.contains(r#"id="invoices""#), "{content}");
    assert!(content.contains("Your role (viewer) can see the plans"));
}

async fn denials(app: &TestApp, tenant: uuid::Uuid) -> Vec<(String, String)> {
    sqlx::query_as("select feature, action from feature_denials where tenant_id = $1 order by id")
        .bind(tenant)
        .fetch_all(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

// ENT-005, ENT-011, SEC-010: the audit log is a paid feature. Viewing the page is not a refusal:
// the notice is shown but only the API's refusal is logged.
#[tokio::test]
async fn the_audit_page_on_free_shows_the_upgrade_notice_and_on_pro_the_entries() {
    let app = TestApp::spawn().await;
    let free = app.tenant_on("free-co", "free").await;
    let (status, html) = page(&app, "/audit", &free.admin).await;
    assert_eq!(status, 200, "{html}");
    let (status, _) = page(&app, "/audit", &free.admin).await;
    assert_eq!(status, 200);
    let notice = section(&html, "upgrade-notice");
    assert!(
        notice.contains("Audit logs are not in your plan"),
        "{notice}"
    );
    assert!(notice.contains("(Free)"), "{notice}");
    assert!(
        notice.contains(r#"<strong id="upgrade-plan">Pro</strong>"#),
        "{notice}"
    );
    assert!(notice.contains(r#"href="/billing""#), "{notice}");
    assert!(!html.contains(r#"<table id="audit">"#));
    assert_eq!(
        denials(&app, free.id).await,
        [],
        "page views are not refusals"
    );
    let api = app.get("/api/v1/audit-logs", &free.admin).await;
    assert_eq!(
        (api.status.as_u16(), api.code()),
        (403, "feature_not_in_plan")
    );
    assert_eq!(
        denials(&app, free.id).await,
        [("audit_logs".to_owned(), "audit_log.list".to_owned())]
    );

    let pro = app.tenant_on("pro-co", "pro").await;
    let key = app
        .post("/api/v1/api-keys", &pro.admin, &json!({"name": "deploy"}))
        .await;
    assert_eq!(key.status, 201, "{}", key.body);
    let (status, html) = page(&app, "/audit", &pro.admin).await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("upgrade-notice"), "{html}");
    assert!(html.contains(r#"<table id="audit">"#), "{html}");
    assert!(html.contains("<code>api_key.created</code>"), "{html}");
}

// M6, ENT-005, OBS-001: the dashboard's metrics are the observability overview, gated by
// `execution_metrics` as the API is; without it the notice takes their place, and viewing the
// page logs no refusal.
#[tokio::test]
async fn the_dashboard_shows_the_upgrade_notice_instead_of_execution_metrics_on_free() {
    let app = TestApp::spawn().await;
    let free = app.tenant_on("free-co", "free").await;
    let (status, html) = page(&app, "/", &free.admin).await;
    assert_eq!(status, 200, "{html}");
    let notice = section(&html, "upgrade-notice");
    assert!(
        notice.contains("Execution metrics are not in your plan"),
        "{notice}"
    );
    assert!(
        notice.contains(r#"<strong id="upgrade-plan">Pro</strong>"#),
        "{notice}"
    );
    for metric in [
        r#"id="kpis""#,
        r#"id="system-status""#,
        r#"id="kpi-executions""#,
    ] {
        assert!(!html.contains(metric), "{metric} shown on Free");
    }
    // The rest of the dashboard is still there.
    assert!(html.contains("Recent runs"), "{html}");
    let (status, _) = page(&app, "/?range=7d", &free.admin).await;
    assert_eq!(status, 200);
    assert_eq!(
        denials(&app, free.id).await,
        [],
        "page views are not refusals"
    );
    let api = app.get("/api/v1/observability/overview", &free.admin).await;
    assert_eq!(
        (api.status.as_u16(), api.code()),
        (403, "feature_not_in_plan")
    );
    assert_eq!(
        denials(&app, free.id).await,
        [(
            "execution_metrics".to_owned(),
            "observability.overview".to_owned()
        )]
    );

    let pro = app.tenant_on("pro-co", "pro").await;
    let (status, html) = page(&app, "/", &pro.admin).await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("upgrade-notice"), "{html}");
    assert!(html.contains(r#"id="kpis""#), "{html}");
    assert!(html.contains(r#"id="system-status""#), "{html}");
}

// ENT-005, NOTIF-001: without alerting, no channels or rules can be added.
#[tokio::test]
async fn the_notifications_page_without_alerting_shows_the_notice_instead_of_the_forms() {
    let app = TestApp::spawn().await;
    let free = app.tenant_on("free-co", "free").await;
    let (status, html) = page(&app, "/notifications", &free.admin).await;
    assert_eq!(status, 200, "{html}");
    let notice = section(&html, "upgrade-notice");
    assert!(notice.contains("Alerting is not in your plan"), "{notice}");
    assert!(notice.contains(r#"id="upgrade-plan">Pro<"#), "{notice}");
    assert!(!html.contains(r#"id="new-channel""#));
    assert!(!html.contains(r#"id="new-rule""#));

    let pro = app.tenant_on("pro-co", "pro").await;
    let (_, html) = page(&app, "/notifications", &pro.admin).await;
    assert!(!html.contains("upgrade-notice"));
    assert!(html.contains(r#"id="new-channel""#));
}

// ENT-006, ADMIN-008, ADMIN-013, PLAT-003
#[tokio::test]
async fn the_plan_matrix_is_shown_to_platform_admins_only() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let (status, html) = page(&app, "/platform/plans", &admin).await;
    assert_eq!(status, 200, "{html}");
    let matrix = section(&html, "matrix");
    for id in [
        "group-n8n",
        "group-make",
        "plan-n8n-free",
        "plan-make-enterprise",
        "plan-n8n-free-promotions",
        "plan-n8n-pro-environments",
        "save-n8n-free",
        "form-plan-n8n-free",
    ] {
        assert!(matrix.contains(&format!("id=\"{id}\"")), "{id}: {matrix}");
    }
    // Free: promotions off, 2 environments; Agency: unlimited environments.
    let free_promotions = tag(matrix, "plan-n8n-free-promotions");
    assert!(
        free_promotions.contains(r#"type="checkbox""#),
        "{free_promotions}"
    );
    assert!(!free_promotions.contains("checked"), "{free_promotions}");
    assert!(tag(matrix, "plan-n8n-pro-promotions").contains("checked"));
    assert!(tag(matrix, "plan-n8n-free-environments").contains(r#"value="2""#));
    assert!(tag(matrix, "plan-n8n-agency-environments").contains(r#"value="""#));
    assert!(tag(matrix, "plan-n8n-pro-price").contains(r#"value="299.00""#));
    assert!(html.contains(r#"id="new-plan""#));
    assert!(section(&html, "providers").contains(r#"id="disable-make""#));
    // The console links to it.
    let (_, console) = page(&app, "/platform", &admin).await;
    assert!(console.contains(r#"href="/platform/plans""#));

    let acme = app.tenant("acme").await;
    let (status, html) = page(&app, "/platform/plans", &acme.admin).await;
    assert_eq!(status, 403);
    assert!(!html.contains("plan-matrix"));
}

// ADMIN-005, ADMIN-014, ENT-008, ENT-011, ADMIN-007
#[tokio::test]
async fn the_console_shows_a_tenants_plans_overrides_refusals_and_the_billing_summary() {
    let app = TestApp::spawn().await;
    let admin = app.platform_admin().await;
    let acme = app.tenant_on("acme", "free").await;
    let set = app
        .post(
            &format!("/api/v1/platform/tenants/{}/overrides", acme.id),
            &admin,
            &json!({"feature": "environments", "provider": "n8n", "value": 5,
                "reason": "a bigger trial"}),
        )
        .await;
    assert_eq!(set.status, 201, "{}", set.body);
    let refused = app.get("/api/v1/audit-logs", &acme.admin).await;
    assert_eq!(refused.code(), "feature_not_in_plan", "{}", refused.body);

    let (status, html) = page(&app, &format!("/platform/tenants/{}", acme.id), &admin).await;
    assert_eq!(status, 200, "{html}");
    let plans = section(&html, "plans");
    assert!(
        plans.contains(r#"<strong id="current-plan-n8n">Free</strong>"#),
        "{plans}"
    );
    assert!(
        plans.contains(&format!(
            r#"data-api="PUT /api/v1/platform/tenants/{}/subscriptions/n8n""#,
            acme.id
        )),
        "{plans}"
    );
    assert!(
        tag(plans, "assign-plan-n8n").contains(r#"name="plan""#),
        "{plans}"
    );
    assert!(plans.contains(">Agency</option>"), "{plans}");
    let overrides = section(&html, "overrides");
    assert!(overrides.contains("a bigger trial"), "{overrides}");
    assert!(
        overrides.contains("<td>Environments</td><td>n8n</td><td>5</td>"),
        "{overrides}"
    );
    assert!(overrides.contains("/overrides/"), "{overrides}");
    let denials = section(&html, "refused-features");
    assert!(denials.contains(&acme.admin.email), "{denials}");
    assert!(denials.contains("<code>audit_logs</code>"), "{denials}");

    let (_, console) = page(&app, "/platform", &admin).await;
    let summary = section(&console, "billing-summary");
    assert!(
        summary.contains("<td>n8n</td><td>Free</td><td>1</td>"),
        "{summary}"
    );
    assert!(summary.contains(r#"id="n-past-due">0<"#), "{summary}");
}

// Real headless Chromium.
#[cfg(feature = "browser")]
mod browser {
    use std::time::Duration;

    use serde_json::Value;
    use thirtyfour::prelude::*;
    use workflowops_tests::TestApp;
    use workflowops_tests::browser::Browser;

    use super::{n8n_plan_features, selling_pro};

    /// Waits (up to 20 s) until `check` holds for the database.
    async fn eventually<F, Fut>(what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..200 {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}");
    }

    // ENT-006, ENT-007, ADMIN-008: a feature ticked in the matrix is what the plan grants.
    #[tokio::test]
    async fn in_a_browser_a_platform_admin_ticks_a_feature_in_the_matrix_and_saves_the_plan() {
        let app = TestApp::spawn().await;
        let admin = app.platform_admin().await;
        assert_eq!(n8n_plan_features(&app, "free").await["promotions"], false);
        let b = Browser::signed_in(&app, &admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps = async {
            b.driver.goto(app.url("/platform")).await?;
            b.driver.find(By::Id("plans-link")).await?.click().await?;
            let tick = b.driver.find(By::Id("plan-n8n-free-promotions")).await?;
            tick.scroll_into_view().await?;
            tick.click().await?;
            // Unlimited environments: the limit emptied.
            b.driver
                .find(By::Id("plan-n8n-free-environments"))
                .await?
                .clear()
                .await?;
            b.screenshot("platform-plans").await?;
            let save = b.driver.find(By::Id("save-n8n-free")).await?;
            save.scroll_into_view().await?;
            save.click().await?;
            eventually("the plan saved", || async {
                n8n_plan_features(&app, "free").await["promotions"] == true
            })
            .await;
            let features = n8n_plan_features(&app, "free").await;
            assert_eq!(features["environments"], Value::Null, "{features}");
            assert_eq!(features["alerting"], false, "the others stay: {features}");
            // The page shows it after its reload.
            b.until("the reloaded matrix", || async {
                match b.driver.find(By::Id("plan-n8n-free-promotions")).await {
                    Ok(el) => el.is_selected().await.unwrap_or(false),
                    Err(_) => false,
                }
            })
            .await?;
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("platform-plans", steps).await;
        // The API says so too, and nothing else of the plan changed.
        let matrix = app.get("/api/v1/platform/plans", &admin).await;
        let free = matrix.body["plans"]
            .as_array()
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p["provider"] == "n8n" && p["key"] == "free")
            })
            .cloned()
            .unwrap_or_else(|| panic!("{}", matrix.body));
        assert_eq!(free["features"]["promotions"], true, "{free}");
        assert_eq!(
            (
                &free["name"],
                &free["price_cents"],
                &free["stripe_price_id"],
                &free["is_default"]
            ),
            (
                &Value::from("Free"),
                &Value::from(0),
                &Value::Null,
                &Value::Bool(true)
            ),
        );
    }

    // ADMIN-014, PROV-006, ENT-008, ENT-009: assigning a plan and adding (and removing) an
    // override from the tenant page.
    #[tokio::test]
    async fn in_a_browser_a_platform_admin_assigns_agency_and_adds_an_override() {
        let app = TestApp::spawn().await;
        let admin = app.platform_admin().await;
        let acme = app.tenant_on("acme", "free").await;
        let b = Browser::signed_in(&app, &admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let plan_of = || async {
            sqlx::query_as::<_, (String, String)>(
                "select p.key, s.source from tenant_subscriptions s join plans p on p.id = s.plan_id \
                 where s.tenant_id = $1 and s.provider = 'n8n'",
            )
            .bind(acme.id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let overrides = || async {
            sqlx::query_as::<_, (String, Option<String>, Option<Value>, String, bool)>(
                "select feature, provider, value, reason, \
                        expires_at between now() + interval '29 days' and now() + interval '31 days' \
                 from tenant_feature_overrides where tenant_id = $1",
            )
            .bind(acme.id)
            .fetch_all(&app.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let steps = async {
            b.driver
                .goto(app.url(&format!("/platform/tenants/{}", acme.id)))
                .await?;
            let select = b.driver.find(By::Id("assign-plan-n8n")).await?;
            select.scroll_into_view().await?;
            thirtyfour::components::SelectElement::new(&select)
                .await?
                .select_by_value("agency")
                .await?;
            b.driver
                .find(By::Id("assign-reason-n8n"))
                .await?
                .send_keys("contract AG-2024-17")
                .await?;
            b.driver
                .find(By::Id("assign-button-n8n"))
                .await?
                .click()
                .await?;
            eventually("Agency assigned", || async {
                plan_of().await == ("agency".to_owned(), "manual".to_owned())
            })
            .await;
            b.until("the page showing Agency", || async {
                b.text("current-plan-n8n").await == "Agency"
            })
            .await?;

            let feature = b.driver.find(By::Id("override-feature")).await?;
            feature.scroll_into_view().await?;
            thirtyfour::components::SelectElement::new(&feature)
                .await?
                .select_by_value("drift_policies")
                .await?;
            thirtyfour::components::SelectElement::new(
                &b.driver.find(By::Id("override-provider")).await?,
            )
            .await?
            .select_by_value("n8n")
            .await?;
            b.driver
                .find(By::Id("override-value"))
                .await?
                .send_keys("true")
                .await?;
            b.driver
                .find(By::Id("override-reason"))
                .await?
                .send_keys("pilot of drift policies")
                .await?;
            // A date-time field's value in the browser's local time, 30 days ahead.
            b.driver
                .execute(
                    "const d = new Date(Date.now() + 30 * 86400000); \
                     const pad = (n) => String(n).padStart(2, '0'); \
                     document.getElementById('override-expires').value = \
                       `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;",
                    vec![],
                )
                .await?;
            b.screenshot("platform-tenant-plans").await?;
            b.driver.find(By::Id("add-override")).await?.click().await?;
            eventually("the override", || async { !overrides().await.is_empty() }).await;
            assert_eq!(
                overrides().await,
                vec![(
                    "drift_policies".to_owned(),
                    Some("n8n".to_owned()),
                    Some(Value::Bool(true)),
                    "pilot of drift policies".to_owned(),
                    true
                )]
            );
            b.until("the override listed", || async {
                b.text("overrides")
                    .await
                    .contains("pilot of drift policies")
            })
            .await?;
            b.driver
                .find(By::Css("#override-list button.danger"))
                .await?
                .click()
                .await?;
            b.driver.accept_alert().await?;
            eventually("the override removed", || async {
                overrides().await.is_empty()
            })
            .await;
            anyhow::Ok(())
        };
        let steps = steps.await;
        b.finish("platform-tenant-plans", steps).await;
        let ent = app
            .get(
                &format!("/api/v1/platform/tenants/{}/entitlements", acme.id),
                &admin,
            )
            .await;
        assert_eq!(ent.status, 200, "{}", ent.body);
        let n8n = ent.body["entitlements"]["providers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["provider"] == "n8n"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(n8n["plan_key"], "agency", "{n8n}");
    }

    // BILL-002, BILL-006, BILL-007, PROV-008: Upgrade goes to Stripe Checkout; paying there comes
    // back to the page on Pro, which can then be cancelled at the end of the period.
    #[tokio::test]
    async fn in_a_browser_upgrade_goes_to_stripe_checkout_and_comes_back_on_pro() {
        let (app, stripe) = selling_pro().await;
        let acme = app.tenant_on("acme", "free").await;
        let b = Browser::signed_in(&app, &acme.admin.email)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let steps =
            async {
                b.driver.find(By::Id("nav-billing")).await?.click().await?;
                b.until("the billing page", || async {
                    b.text("plan-n8n").await == "Free"
                })
                .await?;
                b.screenshot("billing-free").await?;
                let upgrade = b.driver.find(By::Id("checkout-n8n-pro")).await?;
                upgrade.scroll_into_view().await?;
                upgrade.click().await?;
                let checkout = format!("{}/checkout/", stripe.base_url());
                b.until("Stripe's checkout page", || async {
                    b.driver
                        .current_url()
                        .await
                        .is_ok_and(|u| u.as_str().starts_with(&checkout))
                })
                .await?;
                assert!(b.text("total").await.contains("299.00"), "the price of Pro");
                b.driver.find(By::Id("pay")).await?.click().await?;
                b.until("the billing page on Pro", || async {
                    b.driver.current_url().await.is_ok_and(|u| {
                        u.path() == "/billing" && u.query() == Some("checkout=success")
                    }) && b.text("plan-n8n").await == "Pro"
                })
                .await?;
                assert!(
                    b.text("checkout-notice")
                        .await
                        .contains("payment went through")
                );
                b.screenshot("billing-pro").await?;
                // BILL-010: what Stripe will charge next, fetched when asked for.
                b.driver.find(By::Id("upcoming-n8n")).await?.click().await?;
                b.until("the upcoming invoice", || async {
                    match b
                        .driver
                        .find(By::Css("#provider-n8n .upcoming-invoice"))
                        .await
                    {
                        Ok(t) => t
                            .text()
                            .await
                            .is_ok_and(|t| t.contains("Total") && t.contains("299")),
                        Err(_) => false,
                    }
                })
                .await?;
                let cancel = b.driver.find(By::Id("cancel-n8n")).await?;
                cancel.scroll_into_view().await?;
                cancel.click().await?;
                b.driver.accept_alert().await?;
                b.until("the subscription cancelling", || async {
                    b.text("subscription-n8n").await.contains("Cancels on")
                })
                .await?;
                assert!(b.driver.find(By::Id("resume-n8n")).await.is_ok());
                anyhow::Ok(())
            };
        let steps = steps.await;
        b.finish("billing", steps).await;
        let canceling: bool = sqlx::query_scalar(
            "select cancel_at_period_end from tenant_subscriptions \
             where tenant_id = $1 and provider = 'n8n'",
        )
        .bind(acme.id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(canceling);
    }
}
