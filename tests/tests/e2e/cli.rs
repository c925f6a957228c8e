//! The command line, run in-process: help, configuration errors, admin commands, and `dev`.

use std::time::Duration;

use api::cli;
use api::config::Cli;
use clap::Parser;
use reqwest::Method;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use workflowops_tests::TestDb;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"))
}

async fn run(args: &[&str]) -> anyhow::Result<()> {
    cli::run(parse(args), CancellationToken::new()).await
}

#[test]
fn help_lists_every_command() {
    let help = Cli::try_parse_from(["workflowops", "--help"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    for command in [
        "serve",
        "worker",
        "migrate",
        "dev",
        "keygen",
        "tenant",
        "user",
        "platform-admin",
        "secrets",
    ] {
        assert!(help.contains(command), "--help does not mention {command}");
    }
    let serve = Cli::try_parse_from(["workflowops", "serve", "--help"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    for setting in [
        "WFO_BIND",
        "WFO_MASTER_KEY",
        "DATABASE_URL",
        "WFO_SESSION_TTL",
    ] {
        assert!(
            serve.contains(setting),
            "serve --help does not mention {setting}"
        );
    }
}

#[tokio::test]
async fn bad_configuration_fails_with_one_line_naming_the_setting() {
    let missing = run(&["workflowops", "serve"])
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(missing.contains("WFO_MASTER_KEY is required"), "{missing}");
    assert_eq!(missing.lines().count(), 1);

    let secret_looking = "bm90LWEtdmFsaWQta2V5";
    let short = run(&["workflowops", "serve", "--master-key", secret_looking])
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        short.contains("WFO_MASTER_KEY") && short.contains("32 bytes"),
        "{short}"
    );
    assert!(
        !short.contains(secret_looking),
        "the error must not echo the key"
    );

    let ttl = Cli::try_parse_from(["workflowops", "serve", "--session-ttl", "soon"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(ttl.contains("--session-ttl"), "{ttl}");
    let url = run(&["workflowops", "migrate", "--database-url", "mysql://nope"])
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(url.contains("DATABASE_URL"), "{url}");
}

/// A database no one can write to (a standby in recovery fails the same check) is refused at
/// start-up with one line, before any command runs.
#[tokio::test]
async fn a_read_only_database_is_refused_at_start_up() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e:#}"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database \"{}\" set default_transaction_read_only = on",
        db.name
    )))
    .execute(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let refused = run(&["workflowops", "migrate", "--database-url", &db.url])
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        refused.contains("read-only") && refused.contains("DATABASE_URL"),
        "{refused}"
    );
    assert_eq!(refused.lines().count(), 1, "{refused}");
}

// PLAT-001, PLAT-002
#[tokio::test]
async fn admin_commands_create_tenants_users_and_platform_admins() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e:#}"));
    let url = db.url.clone();
    let u = url.as_str();
    run(&[
        "workflowops",
        "tenant",
        "create",
        "--name",
        "Acme",
        "--slug",
        "acme",
        "--database-url",
        u,
    ])
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    run(&[
        "workflowops",
        "user",
        "create",
        "--email",
        "ops@acme.example",
        "--name",
        "Ops",
        "--password",
        "a-long-enough-password",
        "--tenant",
        "acme",
        "--role",
        "admin",
        "--database-url",
        u,
    ])
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    run(&[
        "workflowops",
        "platform-admin",
        "add",
        "--email",
        "ops@acme.example",
        "--database-url",
        u,
    ])
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let dup = run(&[
        "workflowops",
        "tenant",
        "create",
        "--name",
        "Acme",
        "--slug",
        "acme",
        "--database-url",
        u,
    ])
    .await;
    assert!(
        dup.err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("already exists")
    );
    let weak = run(&[
        "workflowops",
        "user",
        "create",
        "--email",
        "w@acme.example",
        "--name",
        "W",
        "--password",
        "short",
        "--database-url",
        u,
    ])
    .await;
    assert!(weak.is_err());

    let user = domain::tenancy::user_with_password(&db.pool, "ops@acme.example")
        .await
        .unwrap_or_default()
        .unwrap_or_else(|| panic!("user not created"));
    assert!(domain::password::verify("a-long-enough-password", &user.1));
    assert!(
        domain::tenancy::is_platform_admin(&db.pool, user.0.id)
            .await
            .unwrap_or(false)
    );
    let tenant = domain::tenancy::tenant_by_slug(&db.pool, "acme")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let member = domain::tenancy::member(&db.pool, tenant.id, user.0.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(member.role, domain::Role::Admin);
    let audited: i64 =
        sqlx::query_scalar("select count(*) from audit_logs where actor_label = 'cli'")
            .fetch_one(&db.pool)
            .await
            .unwrap_or_default();
    assert!(audited >= 4, "CLI changes are audited ({audited})");
}

// HEALTH-001
#[tokio::test]
async fn dev_creates_the_database_and_a_demo_login_that_works() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let name = format!(
        "{}dev_{}",
        workflowops_tests::db::PREFIX,
        uuid::Uuid::now_v7().simple()
    );
    let url = workflowops_tests::db::url_for(&name).unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(&name);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let bind = format!("127.0.0.1:{port}");
    let shutdown = CancellationToken::new();
    let args = parse(&[
        "workflowops",
        "dev",
        "--bind",
        &bind,
        "--dir",
        dir.to_str().unwrap_or_default(),
        "--database-url",
        &url,
    ]);
    let dev = tokio::spawn(cli::run(args, shutdown.clone()));

    let client = reqwest::Client::new();
    let base = format!("http://{bind}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await
            && res.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "dev never became ready");
    let password = std::fs::read_to_string(dir.join("demo-login.txt")).unwrap_or_default();
    let login = client
        .request(Method::POST, format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": api::dev::DEMO_ADMIN_EMAIL, "password": password.trim()}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(login.status(), 200);
    let body: serde_json::Value = login.json().await.unwrap_or_default();
    let me: serde_json::Value = client
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(body["token"].as_str().unwrap_or_default())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(me["tenant"]["slug"], "demo");
    assert_eq!(me["tenant"]["role"], "admin");

    shutdown.cancel();
    let finished = tokio::time::timeout(Duration::from_secs(10), dev).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "dev did not shut down cleanly: {finished:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    workflowops_tests::db::drop_database(&name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
