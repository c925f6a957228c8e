//! The Make.com adapter against the loopback Make API peer (`workflowops_tests::make`): the
//! `Provider` contract, team isolation, and how failures are classified.

use std::sync::Arc;
use std::time::Duration;

use adapters::{
    Connection, ExecutionFilter, Limits, Provider, ProviderError, ProviderKind, ProviderResult,
};
use serde_json::{Value, json};
use workflowops_tests::make::{Fault, MakeConfig, MakePeer, Quirk};

fn connect(base_url: &str, api_key: &str, limits: Limits) -> ProviderResult<Arc<dyn Provider>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    adapters::connect(
        &jobs::providers::http_client(),
        Connection {
            kind: ProviderKind::Make,
            base_url: base_url.to_owned(),
            api_key: secrecy::SecretString::from(api_key.to_owned()),
            version: None,
            limits,
        },
    )
}

fn fast() -> Limits {
    Limits {
        per_second: 500.0,
        ..Limits::default()
    }
}

/// An adapter for one team of the peer, with the key that reaches every team.
fn adapter(make: &MakePeer, team: u64) -> Arc<dyn Provider> {
    connect(&make.base_url(team), &make.api_key(), fast()).unwrap_or_else(|e| panic!("{e}"))
}

/// One try per request, so a fault comes back as the adapter classified it.
fn single_try(make: &MakePeer, api_key: &str, timeout: Duration) -> Arc<dyn Provider> {
    let limits = Limits {
        tries: 1,
        timeout,
        ..fast()
    };
    connect(&make.base_url(make.team()), api_key, limits).unwrap_or_else(|e| panic!("{e}"))
}

fn ok<T>(r: ProviderResult<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e:?}"))
}

fn num(id: &Value) -> u64 {
    id.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a Make id: {id}"))
}

/// A blueprint as Make's editor exports it: a webhook, a router whose routes post to Slack
/// (filtered, with an error handler) and add a Sheets row, each through a team connection.
fn blueprint(name: &str, slack: u64, sheets: u64) -> Value {
    json!({
        "name": name,
        "flow": [
            {"id": 1, "module": "gateway:CustomWebHook", "version": 1,
             "parameters": {"hook": 812, "maxResults": 1}, "mapper": {},
             "metadata": {"designer": {"x": 0, "y": 0}}},
            {"id": 2, "module": "builtin:BasicRouter", "version": 1, "mapper": null,
             "metadata": {"designer": {"x": 300, "y": 0}},
             "routes": [
                {"flow": [{"id": 3, "module": "slack:CreateMessage", "version": 4,
                           "parameters": {"__IMTCONN__": slack},
                           "mapper": {"channel": "C0123", "text": "{{1.summary}}"},
                           "metadata": {"designer": {"x": 600, "y": -150}},
                           "filter": {"name": "Urgent only", "conditions":
                                      [[{"a": "{{1.priority}}", "o": "text:equal", "b": "high"}]]},
                           "onerror": [{"id": 5, "module": "builtin:Ignore", "version": 1,
                                        "metadata": {"designer": {"x": 900, "y": -150}}}]}]},
                {"flow": [{"id": 4, "module": "google-sheets:addRow", "version": 2,
                           "parameters": {"__IMTCONN__": sheets},
                           "mapper": {"spreadsheetId": "/orders", "sheetId": "Sheet1",
                                      "values": {"0": "{{1.id}}", "1": "{{1.total}}"}},
                           "metadata": {"designer": {"x": 600, "y": 150}}}]}
             ]}
        ],
        "metadata": {"instant": true, "version": 1,
                     "scenario": {"roundtrips": 1, "maxErrors": 3, "autoCommit": true,
                                  "autoCommitTriggerLast": true, "sequential": false,
                                  "confidential": false, "dataloss": false, "dlq": false},
                     "designer": {"orphans": []}, "zone": "eu1.make.com"}
    })
}

// PROV-001, PROV-002, ENV-002, WF-010: the Make adapter's contract, scenario by scenario
#[tokio::test]
async fn the_make_adapter_creates_reads_updates_starts_stops_and_deletes_scenarios() {
    let make = MakePeer::start(MakeConfig::default()).await;
    let team = make.team();
    let slack = make.add_connection(team, "Slack (ops)", "slack2", "oauth");
    let sheets = make.add_connection(team, "Google (ops)", "google", "oauth");
    let a = adapter(&make, team);
    assert_eq!(a.kind(), ProviderKind::Make);

    let info = ok(a.test_connection().await);
    assert_eq!(info.version, None);
    assert!(info.capabilities.list_credentials);
    assert!(!info.capabilities.archive);
    assert!(!info.capabilities.publish);

    let created = ok(a
        .create_workflow(&json!({"name": "Orders", "blueprint": blueprint("draft", slack, sheets)}))
        .await);
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        created["name"], "Orders",
        "the workflow's name names the scenario"
    );
    assert_eq!(created["active"], false);
    assert_eq!(created["teamId"], team);
    assert_eq!(
        created["scheduling"],
        json!({"type": "indefinitely", "interval": 900}),
        "Make's default schedule when the workflow has none"
    );
    assert_eq!(created["blueprint"]["name"], "Orders");
    assert!(created["createdAt"].is_string() && created["updatedAt"].is_string());
    assert_eq!(
        make.scenario(num(&created["id"]))
            .map(|s| s["name"].clone()),
        Some(json!("Orders"))
    );

    let read = ok(a.get_workflow(&id).await);
    assert_eq!(read, created, "what was created is what is read");

    let mut changed = read.clone();
    changed["name"] = json!("Orders v2");
    changed["blueprint"]["flow"][0]["parameters"]["maxResults"] = json!(5);
    changed["scheduling"] = json!({"type": "daily", "time": "08:00"});
    let updated = ok(a.update_workflow(&id, &changed).await);
    assert_eq!(updated["id"], id.as_str());
    assert_eq!(updated["name"], "Orders v2");
    assert_eq!(
        updated["blueprint"]["flow"][0]["parameters"]["maxResults"],
        5
    );
    assert_eq!(
        updated["scheduling"],
        json!({"type": "daily", "time": "08:00"})
    );
    assert!(updated["updatedAt"].as_str() > created["updatedAt"].as_str());

    let started = ok(a.set_active(&id, true).await);
    assert_eq!(started["active"], true);
    assert_eq!(
        make.scenario(num(&created["id"]))
            .map(|s| s["isActive"].clone()),
        Some(json!(true))
    );
    let stopped = ok(a.set_active(&id, false).await);
    assert_eq!(stopped["active"], false);
    assert_eq!(stopped["blueprint"], updated["blueprint"]);

    ok(a.delete_workflow(&id).await);
    assert_eq!(make.scenario_count(team), 0);
    let gone = a.get_workflow(&id).await;
    assert!(matches!(gone, Err(ProviderError::NotFound(_))), "{gone:?}");
    let again = a.delete_workflow(&id).await;
    assert!(
        matches!(again, Err(ProviderError::NotFound(_))),
        "{again:?}"
    );
}

// PROV-001, ENV-013: listing walks every page (as many as Make allows per page), each scenario
// with its blueprint, and only the environment's team
#[tokio::test]
async fn listing_walks_every_page_with_each_scenarios_blueprint() {
    let make = MakePeer::start(MakeConfig {
        max_page: 10,
        ..MakeConfig::default()
    })
    .await;
    let team = make.team();
    let ids = make.seed_scenarios(team, 25);
    let other = make.add_team("Staging");
    make.seed_scenarios(other, 3);
    let a = adapter(&make, team);

    let before = make.requests();
    let mut cursor: Option<String> = None;
    let mut listed: Vec<Value> = Vec::new();
    let mut pages = 0;
    loop {
        let page = ok(a.list_workflows(cursor.as_deref()).await);
        pages += 1;
        listed.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        pages, 3,
        "Make cut pages to 10; the third, shorter one is the last"
    );
    let listed_ids: Vec<String> = listed
        .iter()
        .map(|w| w["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = ids.iter().map(u64::to_string).collect();
    assert_eq!(listed_ids, expected, "every scenario once, in order");
    assert!(listed.iter().all(|w| w["teamId"] == team));
    assert!(
        listed
            .iter()
            .all(|w| w["blueprint"]["flow"].as_array().map(Vec::len) == Some(3)),
        "each with its blueprint"
    );
    assert_eq!(
        make.requests() - before,
        3 + 25,
        "one list request per page and one blueprint per scenario"
    );
    let log = make.request_log();
    assert!(
        log.iter()
            .any(|l| l.contains("pg%5Boffset%5D=10") && l.contains("pg%5Blimit%5D=100")),
        "the cursor is the next offset, sent with encoded brackets: {log:?}"
    );

    // The raw listing (what syncs store) is the same workflows, as text.
    let mut cursor: Option<String> = None;
    let mut raw = Vec::new();
    loop {
        let page = ok(a.list_workflows_raw(cursor.as_deref()).await);
        for w in &page.items {
            raw.push(serde_json::from_str::<Value>(w.text.get()).unwrap_or_default());
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(raw, listed);

    let bad = a.list_workflows(Some("not-an-offset")).await;
    assert!(matches!(bad, Err(ProviderError::Validation(_))), "{bad:?}");
}

// PROV-001, PROV-004: a blueprint survives the round trip, connection references included
#[tokio::test]
async fn blueprints_round_trip_with_their_connection_references() {
    let make = MakePeer::start(MakeConfig::default()).await;
    let team = make.team();
    let slack = make.add_connection(team, "Slack (ops)", "slack2", "oauth");
    let sheets = make.add_connection(team, "Google (ops)", "google", "oauth");
    let bp = blueprint("Triage", slack, sheets);
    let a = adapter(&make, team);

    let created = ok(a
        .create_workflow(&json!({"name": "Triage", "blueprint": bp}))
        .await);
    assert_eq!(created["blueprint"], bp);
    let id = num(&created["id"]);
    assert_eq!(
        make.blueprint(id),
        Some(bp.clone()),
        "Make stored what was sent"
    );

    let read = ok(a.get_workflow(&id.to_string()).await);
    assert_eq!(read["blueprint"], bp);
    let route = &read["blueprint"]["flow"][1]["routes"];
    assert_eq!(route[0]["flow"][0]["parameters"]["__IMTCONN__"], slack);
    assert_eq!(route[1]["flow"][0]["parameters"]["__IMTCONN__"], sheets);
    assert_eq!(route[0]["flow"][0]["filter"]["name"], "Urgent only");
    assert_eq!(
        route[0]["flow"][0]["onerror"][0]["module"],
        "builtin:Ignore"
    );

    // Written back as read (what a promotion does), nothing changes.
    let again = ok(a.update_workflow(&id.to_string(), &read).await);
    assert_eq!(again["blueprint"], bp);
    assert_eq!(make.blueprint(id), Some(bp));
}

// PROV-001: a scenario read from one team is created in another: its id, team and folder stay
// behind, its blueprint and schedule travel
#[tokio::test]
async fn a_scenario_read_from_another_team_is_created_in_this_one() {
    let make = MakePeer::start(MakeConfig::default()).await;
    let production = make.team();
    let staging = make.add_team("Staging");
    let folder = make.add_folder(staging, "Ops");
    let slack = make.add_connection(staging, "Slack", "slack2", "oauth");
    let from = adapter(&make, staging);
    let source = ok(from
        .create_workflow(&json!({
            "name": "Nightly sync", "folderId": folder, "description": "Copies orders at night",
            "blueprint": blueprint("Nightly sync", slack, slack),
            "scheduling": {"type": "daily", "time": "06:00"},
        }))
        .await);
    assert_eq!(
        source["folderId"], folder,
        "a folder of the same team is kept"
    );

    let to = adapter(&make, production);
    let copy = ok(to.create_workflow(&source).await);
    assert_ne!(copy["id"], source["id"]);
    assert_eq!(copy["teamId"], production);
    assert_eq!(copy["folderId"], Value::Null);
    assert_eq!(copy["name"], "Nightly sync");
    assert_eq!(copy["description"], "Copies orders at night");
    assert_eq!(copy["scheduling"], source["scheduling"]);
    assert_eq!(copy["blueprint"], source["blueprint"]);
    assert_eq!(make.scenario_count(production), 1);
    assert_eq!(make.scenario_count(staging), 1);
}

// PROV-001: an environment is one team: another team's scenarios are not there for it
#[tokio::test]
async fn another_teams_scenario_is_not_found() {
    let make = MakePeer::start(MakeConfig::default()).await;
    let production = make.team();
    let staging = make.add_team("Staging");
    let theirs = make.seed_scenarios(staging, 1)[0];
    let id = theirs.to_string();
    let before = make.scenario(theirs);

    // The key reaches both teams; the adapter keeps to its own.
    let a = adapter(&make, production);
    let not_found = |r: &ProviderResult<Value>| matches!(r, Err(ProviderError::NotFound(_)));
    let got = a.get_workflow(&id).await;
    assert!(not_found(&got), "{got:?}");
    let updated = a.update_workflow(&id, &json!({"name": "Hijacked"})).await;
    assert!(not_found(&updated), "{updated:?}");
    let started = a.set_active(&id, true).await;
    assert!(not_found(&started), "{started:?}");
    let deleted = a.delete_workflow(&id).await;
    assert!(
        matches!(deleted, Err(ProviderError::NotFound(_))),
        "{deleted:?}"
    );
    let logs = a
        .list_executions(
            None,
            &ExecutionFilter {
                workflow_id: Some(id.clone()),
                ..ExecutionFilter::default()
            },
        )
        .await;
    assert!(matches!(logs, Err(ProviderError::NotFound(_))), "{logs:?}");
    assert_eq!(make.scenario(theirs), before, "their scenario is untouched");

    // A key that reaches only this team: Make itself answers 404.
    let key = make.add_token(&[production]);
    let narrow =
        connect(&make.base_url(production), &key, fast()).unwrap_or_else(|e| panic!("{e}"));
    let got = narrow.get_workflow(&id).await;
    assert!(not_found(&got), "{got:?}");
    // …and an environment set up with a team that key cannot reach is refused.
    let outside = connect(&make.base_url(staging), &key, fast()).unwrap_or_else(|e| panic!("{e}"));
    let refused = outside.test_connection().await;
    assert!(
        matches!(refused, Err(ProviderError::Auth(_))),
        "{refused:?}"
    );

    let bad = a.get_workflow("../teams/1").await;
    assert!(matches!(bad, Err(ProviderError::Validation(_))), "{bad:?}");
}

// PROV-004, ENV-013: connections, team members and scenario logs map to the catalog's rows;
// Make has no tags and no archive
#[tokio::test]
async fn connections_users_and_scenario_logs_are_listed_and_mapped() {
    let make = MakePeer::start(MakeConfig {
        max_page: 2,
        ..MakeConfig::default()
    })
    .await;
    let team = make.team();
    let other = make.add_team("Staging");
    let slack = make.add_connection(team, "Slack (ops)", "slack2", "oauth");
    make.add_connection(team, "Google (ops)", "google", "oauth");
    make.add_connection(team, "Basic HTTP", "http", "basic");
    make.add_connection(other, "Not ours", "slack2", "oauth");
    let ada = make.add_user(team, "Ada Lovelace", "ada@example.com", 11);
    make.add_user(team, "Grace Hopper", "grace@example.com", 12);
    make.add_user(other, "Not Ours", "other@example.com", 11);
    let a = adapter(&make, team);

    let mut credentials = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = ok(a.list_credentials(cursor.as_deref()).await);
        credentials.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let mut names: Vec<(&str, &str)> = credentials
        .iter()
        .map(|c| (c.name.as_str(), c.cred_type.as_str()))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            ("Basic HTTP", "http"),
            ("Google (ops)", "google"),
            ("Slack (ops)", "slack2")
        ]
    );
    assert!(credentials.iter().any(|c| c.id == slack.to_string()));

    let mut users = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = ok(a.list_users(cursor.as_deref()).await);
        users.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(users.len(), 2, "the team's members only");
    let first = users
        .iter()
        .find(|u| u.id == ada.to_string())
        .unwrap_or_else(|| panic!("{users:?}"));
    assert_eq!(first.email, "ada@example.com");
    assert_eq!(first.first_name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(first.role.as_deref(), Some("11"));
    assert!(!first.is_pending);

    let scenario = make.seed_scenarios(team, 1)[0];
    let success = make.add_log(scenario, 1);
    make.add_edit_log(scenario);
    let warning = make.add_log(scenario, 2);
    let error = make.add_log(scenario, 3);
    let filter = ExecutionFilter {
        workflow_id: Some(scenario.to_string()),
        ..ExecutionFilter::default()
    };
    let mut runs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = ok(a.list_executions(cursor.as_deref(), &filter).await);
        runs.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let seen: Vec<(&str, &str)> = runs
        .iter()
        .map(|e| (e.id.as_str(), e.status.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (error.as_str(), "error"),
            (warning.as_str(), "warning"),
            (success.as_str(), "success")
        ],
        "newest first, the edit left out"
    );
    assert!(runs.iter().all(|e| e.finished
        && e.workflow_id.as_deref() == Some(scenario.to_string().as_str())
        && e.mode.as_deref() == Some("auto")
        && e.started_at.is_some()
        && e.stopped_at > e.started_at));

    let errors = ok(a
        .list_executions(
            None,
            &ExecutionFilter {
                status: Some("error".into()),
                ..filter.clone()
            },
        )
        .await);
    assert_eq!(errors.items.len(), 1);
    assert_eq!(errors.items[0].id, error);
    let waiting = a
        .list_executions(
            None,
            &ExecutionFilter {
                status: Some("waiting".into()),
                ..filter.clone()
            },
        )
        .await;
    assert!(
        matches!(waiting, Err(ProviderError::Unsupported(_))),
        "{waiting:?}"
    );
    let everywhere = a.list_executions(None, &ExecutionFilter::default()).await;
    assert!(
        matches!(everywhere, Err(ProviderError::Unsupported(_))),
        "Make lists runs per scenario: {everywhere:?}"
    );

    let tags = ok(a.list_tags(None).await);
    assert!(tags.items.is_empty() && tags.next_cursor.is_none());
    assert!(matches!(
        a.create_tag("ops").await,
        Err(ProviderError::Unsupported(_))
    ));
    assert!(matches!(
        a.set_workflow_tags(&scenario.to_string(), &[]).await,
        Err(ProviderError::Unsupported(_))
    ));
    assert!(matches!(
        a.set_archived(&scenario.to_string(), true).await,
        Err(ProviderError::Unsupported(_))
    ));
}

// PROV-001: failures are classified at the boundary (one try each, so nothing is retried away)
#[tokio::test]
async fn faults_are_classified_at_the_boundary() {
    let make = MakePeer::start(MakeConfig::default()).await;
    make.seed_scenarios(make.team(), 2);
    let a = single_try(&make, &make.api_key(), Duration::from_secs(30));

    make.inject(Fault::RateLimited {
        times: 1,
        retry_after_secs: 7,
    });
    let e = a.list_workflows(None).await.err();
    assert_eq!(
        e,
        Some(ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        })
    );

    make.inject(Fault::ServerError { times: 1 });
    let e = a.list_workflows(None).await.err();
    assert!(
        matches!(e, Some(ProviderError::Transient(ref m)) if m.contains("500")),
        "{e:?}"
    );
    assert!(
        !format!("{e:?}").contains("<html"),
        "no provider HTML in our errors"
    );

    make.inject(Fault::DropConnection { times: 1 });
    let e = a.test_connection().await.err();
    assert!(matches!(e, Some(ProviderError::Transient(_))), "{e:?}");

    for fault in [
        Fault::Garbage { times: 1 },
        Fault::TruncatedJson { times: 1 },
    ] {
        make.inject(fault.clone());
        let e = a.list_workflows(None).await.err();
        assert!(
            matches!(e, Some(ProviderError::InvalidResponse(_))),
            "{fault:?}: {e:?}"
        );
    }

    let impatient = single_try(&make, &make.api_key(), Duration::from_millis(200));
    make.inject(Fault::Slow {
        times: 1,
        delay_ms: 5_000,
    });
    let e = impatient.test_connection().await.err();
    assert!(
        matches!(e, Some(ProviderError::Transient(ref m)) if m.contains("timed out")),
        "{e:?}"
    );

    let wrong = single_try(&make, "not-the-key", Duration::from_secs(30));
    let e = wrong.test_connection().await.err();
    assert!(
        matches!(e, Some(ProviderError::Auth(ref m)) if m.contains("Invalid access token")),
        "{e:?}"
    );

    let refused = a
        .create_workflow(&json!({"name": "Hourly", "blueprint": {"flow": []},
                                 "scheduling": {"type": "hourly"}}))
        .await;
    assert!(
        matches!(refused, Err(ProviderError::Validation(ref m)) if m.contains("scheduling.type must be one of")),
        "Make's message and suberrors: {refused:?}"
    );
    let no_blueprint = a.create_workflow(&json!({"name": "Empty"})).await;
    assert!(
        matches!(no_blueprint, Err(ProviderError::Validation(_))),
        "{no_blueprint:?}"
    );
}

// PROV-001: reads are retried past transient failures; a create that may have reached Make is
// never sent twice, one refused with a 429 is
#[tokio::test]
async fn reads_are_retried_but_a_create_is_never_sent_twice() {
    let make = MakePeer::start(MakeConfig::default()).await;
    let team = make.team();
    make.seed_scenarios(team, 2);
    let a = adapter(&make, team);

    make.inject(Fault::ServerError { times: 2 });
    let page = ok(a.list_workflows(None).await);
    assert_eq!(page.items.len(), 2, "retried past two 500s");
    make.inject(Fault::TruncatedJson { times: 1 });
    ok(a.test_connection().await);

    let wf = json!({"name": "Once", "blueprint": {"flow": []}});
    make.inject(Fault::ServerError { times: 1 });
    let before = make.requests();
    let e = a.create_workflow(&wf).await;
    assert!(matches!(e, Err(ProviderError::Transient(_))), "{e:?}");
    assert_eq!(make.requests() - before, 1, "the create was not sent again");
    assert_eq!(make.scenario_count(team), 2);

    make.inject(Fault::RateLimited {
        times: 1,
        retry_after_secs: 0,
    });
    let created = ok(a.create_workflow(&wf).await);
    assert_eq!(created["name"], "Once");
    assert_eq!(make.scenario_count(team), 3);

    // Retry-After sets the wait, not the number of tries: a 429 that persists ends the call.
    make.inject(Fault::RateLimited {
        times: 50,
        retry_after_secs: 0,
    });
    let before = make.requests();
    let e = a.test_connection().await;
    assert!(matches!(e, Err(ProviderError::RateLimited { .. })), "{e:?}");
    assert_eq!(make.requests() - before, u64::from(Limits::default().tries));
    make.clear_faults();
}

// ENV-001, ENV-009: a Make environment's base URL names its zone and its team
#[tokio::test]
async fn a_base_url_without_a_team_is_refused() {
    for base_url in [
        "https://eu1.make.com",
        "https://eu1.make.com/api/v2",
        "https://eu1.make.com?teamId=",
        "https://eu1.make.com?team=42",
    ] {
        match connect(base_url, "key", fast()) {
            Err(ProviderError::Validation(m)) => assert!(
                m.contains("https://eu1.make.com?teamId=42"),
                "the message shows the expected form: {m}"
            ),
            other => panic!("{base_url}: {:?}", other.map(|_| ())),
        }
    }

    let make = MakePeer::start(MakeConfig::default()).await;
    let team = make.team();
    for base_url in [
        format!("{}?teamId={team}", make.origin()),
        format!("{}/?teamId={team}", make.origin()),
        format!("{}/api/v2?teamId={team}", make.origin()),
        format!("{}/api/v2/?teamId={team}", make.origin()),
    ] {
        let a = connect(&base_url, &make.api_key(), fast()).unwrap_or_else(|e| panic!("{e}"));
        ok(a.test_connection().await);
    }
    let missing =
        connect(&make.base_url(999_999), &make.api_key(), fast()).unwrap_or_else(|e| panic!("{e}"));
    let e = missing.test_connection().await;
    assert!(matches!(e, Err(ProviderError::NotFound(_))), "{e:?}");
}

/// Every workflow of a listing, page by page; a walk longer than `max_pages` is a bug.
async fn walk(
    a: &dyn Provider,
    mut cursor: Option<String>,
    max_pages: usize,
) -> ProviderResult<Vec<Value>> {
    let mut listed = Vec::new();
    for _ in 0..max_pages {
        let page = a.list_workflows(cursor.as_deref()).await?;
        listed.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            return Ok(listed);
        }
    }
    panic!("the walk did not end within {max_pages} pages");
}

fn ids(workflows: &[Value]) -> Vec<u64> {
    workflows.iter().map(|w| num(&w["id"])).collect()
}

// PROV-001, ENV-013: lists are sorted by id, so a scenario renamed or created while a sync walks
// the pages moves nothing across the walk's offset (Make's default order is by name)
#[tokio::test]
async fn a_scenario_renamed_or_created_mid_walk_is_neither_skipped_nor_listed_twice() {
    let make = MakePeer::start(MakeConfig {
        max_page: 5,
        ..MakeConfig::default()
    })
    .await;
    let team = make.team();
    let seeded = make.seed_scenarios(team, 10);
    let a = adapter(&make, team);

    let first = ok(a.list_workflows(None).await);
    assert_eq!(ids(&first.items), seeded[..5]);
    make.rename_scenario(seeded[9], "A renamed one");
    let created = make.add_scenario(team, json!({"name": "A new one", "flow": []}));
    let rest = ok(walk(a.as_ref(), first.next_cursor, 10).await);

    let mut all = ids(&first.items);
    all.extend(ids(&rest));
    let mut expected = seeded.clone();
    expected.push(created);
    assert_eq!(all, expected, "every scenario once, in id order");

    let lists: Vec<String> = make
        .request_log()
        .into_iter()
        .filter(|l| l.starts_with("GET /api/v2/scenarios?"))
        .collect();
    assert!(
        lists
            .iter()
            .all(|l| l.contains("pg%5BsortBy%5D=id") && l.contains("pg%5BsortDir%5D=asc")),
        "{lists:?}"
    );
}

// PROV-004, ENV-013: connections and team members are walked in id order too; scenario logs
// keep Make's newest-first order
#[tokio::test]
async fn connections_and_members_are_walked_in_id_order_and_logs_newest_first() {
    let make = MakePeer::start(MakeConfig {
        max_page: 2,
        ..MakeConfig::default()
    })
    .await;
    let team = make.team();
    let zeta = make.add_connection(team, "Zeta", "slack2", "oauth");
    let alpha = make.add_connection(team, "Alpha", "google", "oauth");
    let mid = make.add_connection(team, "Mid", "http", "basic");
    let ada = make.add_user(team, "Ada", "ada@example.com", 11);
    let grace = make.add_user(team, "Grace", "grace@example.com", 12);
    let linus = make.add_user(team, "Linus", "linus@example.com", 12);
    let scenario = make.seed_scenarios(team, 1)[0];
    let old = make.add_log(scenario, 1);
    let new = make.add_log(scenario, 3);
    let a = adapter(&make, team);

    let mut connections = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = ok(a.list_credentials(cursor.as_deref()).await);
        connections.extend(page.items.into_iter().map(|c| c.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        connections,
        [zeta, alpha, mid].map(|i| i.to_string()),
        "by id, not by name"
    );
    let mut users = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = ok(a.list_users(cursor.as_deref()).await);
        users.extend(page.items.into_iter().map(|u| u.id));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        users,
        [ada, grace, linus].map(|i| i.to_string()),
        "oldest first, not newest"
    );
    let runs = ok(a
        .list_executions(
            None,
            &ExecutionFilter {
                workflow_id: Some(scenario.to_string()),
                ..ExecutionFilter::default()
            },
        )
        .await);
    let runs: Vec<String> = runs.items.into_iter().map(|e| e.id).collect();
    assert_eq!(runs, [new, old]);

    let log = make.request_log();
    let sorted = |l: &String| l.contains("pg%5BsortBy%5D=id") && l.contains("pg%5BsortDir%5D=asc");
    for list in ["GET /api/v2/connections?", "GET /api/v2/users?"] {
        let sent: Vec<&String> = log.iter().filter(|l| l.starts_with(list)).collect();
        assert!(
            !sent.is_empty() && sent.iter().all(|l| sorted(l)),
            "{sent:?}"
        );
    }
    assert!(
        log.iter()
            .filter(|l| l.contains("/logs"))
            .all(|l| !l.contains("sortBy")),
        "logs keep Make's order: {log:?}"
    );
}

// PROV-001: a listing that does not page (no `pg`, or the same items whatever the offset) is
// refused instead of walked forever; a cursor stored as a plain offset still works
#[tokio::test]
async fn a_listing_that_does_not_page_is_refused_instead_of_walked_forever() {
    let make = MakePeer::start(MakeConfig {
        max_page: 2,
        ..MakeConfig::default()
    })
    .await;
    let team = make.team();
    let seeded = make.seed_scenarios(team, 5);
    let a = adapter(&make, team);

    for quirks in [
        &[Quirk::ListsWithoutPg][..],
        &[Quirk::ListsIgnoreOffset],
        &[Quirk::ListsWithoutPg, Quirk::ListsIgnoreOffset],
    ] {
        make.clear_quirks();
        for q in quirks {
            make.set_quirk(*q);
        }
        let e = walk(a.as_ref(), None, 10).await;
        assert!(
            matches!(e, Err(ProviderError::InvalidResponse(_))),
            "{quirks:?}: {:?}",
            e.map(|w| ids(&w))
        );
        if quirks == [Quirk::ListsIgnoreOffset] {
            // An offset no page can follow, from a cursor stored as a plain number.
            let e = a.list_workflows(Some(&u64::MAX.to_string())).await;
            assert!(
                matches!(e, Err(ProviderError::InvalidResponse(_))),
                "{:?}",
                e.map(|p| p.next_cursor)
            );
        }
        let e = a.list_credentials(None).await;
        if quirks.contains(&Quirk::ListsWithoutPg) {
            assert!(
                matches!(e, Err(ProviderError::InvalidResponse(_))),
                "{quirks:?}: {e:?}"
            );
        }
    }
    make.clear_quirks();

    let from_stored = ok(walk(a.as_ref(), Some("2".into()), 10).await);
    assert_eq!(ids(&from_stored), seeded[2..]);
    let bad = a.list_workflows(Some("2:")).await;
    assert!(bad.is_ok(), "an offset with no id: {bad:?}");
    for bad in ["", "x:1", "-1", "18446744073709551616:1"] {
        let e = a.list_workflows(Some(bad)).await;
        assert!(
            matches!(e, Err(ProviderError::Validation(_))),
            "{bad}: {e:?}"
        );
    }
}

// PROV-001: ownership fails closed: a scenario or team answered without its id is refused, and
// nothing is written on the strength of it
#[tokio::test]
async fn a_scenario_or_team_answered_without_its_team_is_refused() {
    let make = MakePeer::start(MakeConfig::default()).await;
    let team = make.team();
    let id = make.seed_scenarios(team, 1)[0];
    make.add_log(id, 1);
    let key = id.to_string();
    let a = adapter(&make, team);
    make.set_quirk(Quirk::ScenariosWithoutTeam);

    let invalid = |r: &ProviderResult<Value>| matches!(r, Err(ProviderError::InvalidResponse(_)));
    let got = a.get_workflow(&key).await;
    assert!(invalid(&got), "{got:?}");
    let updated = a.update_workflow(&key, &json!({"name": "Changed"})).await;
    assert!(invalid(&updated), "{updated:?}");
    let started = a.set_active(&key, true).await;
    assert!(invalid(&started), "{started:?}");
    let deleted = a.delete_workflow(&key).await;
    assert!(
        matches!(deleted, Err(ProviderError::InvalidResponse(_))),
        "{deleted:?}"
    );
    let listed = a.list_workflows(None).await;
    assert!(
        matches!(listed, Err(ProviderError::InvalidResponse(_))),
        "{:?}",
        listed.map(|p| p.items)
    );
    let logs = a
        .list_executions(
            None,
            &ExecutionFilter {
                workflow_id: Some(key.clone()),
                ..ExecutionFilter::default()
            },
        )
        .await;
    assert!(
        matches!(logs, Err(ProviderError::InvalidResponse(_))),
        "{logs:?}"
    );
    make.clear_quirks();
    let scenario = make.scenario(id).unwrap_or_default();
    assert_eq!(scenario["name"], "Scenario 001", "not renamed");
    assert_eq!(scenario["isActive"], false, "not started");

    make.set_quirk(Quirk::TeamWithoutId);
    let e = a.test_connection().await;
    assert!(matches!(e, Err(ProviderError::InvalidResponse(_))), "{e:?}");
}

// PROV-001, ENV-013: a listing that answers another team's scenarios too (a server ignoring
// `teamId`) yields only this team's; theirs are left out unread
#[tokio::test]
async fn another_teams_scenarios_in_a_listing_are_left_out() {
    let make = MakePeer::start(MakeConfig {
        max_page: 2,
        ..MakeConfig::default()
    })
    .await;
    let production = make.team();
    let staging = make.add_team("Staging");
    let theirs = make.seed_scenarios(staging, 2);
    let ours = make.seed_scenarios(production, 3);
    make.set_quirk(Quirk::ListsIgnoreTeam);
    let a = adapter(&make, production);

    let listed = ok(walk(a.as_ref(), None, 10).await);
    assert_eq!(ids(&listed), ours);
    let log = make.request_log();
    for id in theirs {
        assert!(
            !log.iter().any(|l| l.contains(&format!("/scenarios/{id}"))),
            "{id} was not read: {log:?}"
        );
    }
}

// PROV-001: a scenario's logs are listed only when it is this team's, whatever cursor is given,
// and that is checked once per walk
#[tokio::test]
async fn another_teams_logs_are_not_listed_whatever_the_cursor() {
    let make = MakePeer::start(MakeConfig {
        max_page: 2,
        ..MakeConfig::default()
    })
    .await;
    let production = make.team();
    let staging = make.add_team("Staging");
    let theirs = make.seed_scenarios(staging, 1)[0];
    make.add_log(theirs, 1);
    let ours = make.seed_scenarios(production, 1)[0];
    for _ in 0..5 {
        make.add_log(ours, 1);
    }
    let filter = |id: u64| ExecutionFilter {
        workflow_id: Some(id.to_string()),
        ..ExecutionFilter::default()
    };
    let a = adapter(&make, production);

    for cursor in [None, Some("0"), Some("2"), Some("2:ffff")] {
        let e = a.list_executions(cursor, &filter(theirs)).await;
        assert!(
            matches!(e, Err(ProviderError::NotFound(_))),
            "{cursor:?}: {e:?}"
        );
    }

    let reads = |make: &MakePeer| {
        let read = format!("GET /api/v2/scenarios/{ours}");
        make.request_log().iter().filter(|l| **l == read).count()
    };
    let mut cursor: Option<String> = None;
    let mut runs = 0;
    let mut second_page = None;
    loop {
        let page = ok(a.list_executions(cursor.as_deref(), &filter(ours)).await);
        runs += page.items.len();
        cursor = page.next_cursor;
        second_page = second_page.or_else(|| cursor.clone());
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(runs, 5);
    assert_eq!(reads(&make), 1, "ownership is checked once for three pages");

    // A walk resumed by another adapter (a worker that restarted) checks it again, once.
    let b = adapter(&make, production);
    let mut cursor = second_page;
    while let Some(c) = cursor {
        cursor = ok(b.list_executions(Some(&c), &filter(ours)).await).next_cursor;
    }
    assert_eq!(reads(&make), 2);
}

// PROV-001: a 429 asking to wait longer than two minutes ends the call at once with that wait
// (the engine schedules the next attempt), instead of holding a worker for it
#[tokio::test]
async fn a_retry_after_longer_than_two_minutes_ends_the_call_at_once() {
    let make = MakePeer::start(MakeConfig::default()).await;
    let team = make.team();
    let a = adapter(&make, team);
    assert!(Limits::default().tries > 1);

    make.inject(Fault::RateLimited {
        times: 10,
        retry_after_secs: 600,
    });
    let before = make.requests();
    let e = a.test_connection().await.err();
    assert_eq!(
        e,
        Some(ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(600))
        })
    );
    assert_eq!(make.requests() - before, 1, "one request, no retry");
    let before = make.requests();
    let e = a
        .create_workflow(&json!({"name": "Later", "blueprint": {"flow": []}}))
        .await
        .err();
    assert!(
        matches!(e, Some(ProviderError::RateLimited { retry_after: Some(d) }) if d.as_secs() == 600),
        "{e:?}"
    );
    assert_eq!(make.requests() - before, 1);
    make.clear_faults();
    assert_eq!(make.scenario_count(team), 0);
}

// PROV-001: a provider's answer is read up to 64 MiB; a longer one is refused, whether its
// length is declared or streamed
#[tokio::test]
async fn an_answer_longer_than_64_mib_is_refused() {
    let make = MakePeer::start(MakeConfig::default()).await;
    let id = make.seed_scenarios(make.team(), 1)[0].to_string();
    let a = single_try(&make, &make.api_key(), Duration::from_secs(30));
    for declared in [true, false] {
        make.clear_quirks();
        make.set_quirk(Quirk::HugeBlueprints { declared });
        let e = a.get_workflow(&id).await;
        assert!(
            matches!(e, Err(ProviderError::InvalidResponse(ref m)) if m.contains("64 MiB")),
            "declared: {declared}: {:?}",
            e.map(|w| w["id"].clone())
        );
    }
    make.clear_quirks();
    ok(a.get_workflow(&id).await);
}

/// Two Google Sheets modules as a scenario built through Make's API saves them: no designer
/// cache, so the blueprint does not say that their connections are `google` ones, nor their
/// names.
fn uncached_sheets(name: &str, sales: u64, ops: u64) -> Value {
    json!({
        "name": name,
        "flow": [
            {"id": 1, "module": "google-sheets:addRow", "version": 2,
             "parameters": {"__IMTCONN__": sales},
             "mapper": {"spreadsheetId": "sales", "values": {"0": "x"}},
             "metadata": {"designer": {"x": 0, "y": 0}}},
            {"id": 2, "module": "google-sheets:updateRow", "version": 2,
             "parameters": {"__IMTCONN__": ops},
             "mapper": {"spreadsheetId": "ops", "rowNumber": "1", "values": {"0": "x"}},
             "metadata": {"designer": {"x": 300, "y": 0}}}
        ],
        "metadata": {"instant": false, "version": 1,
                     "scenario": {"roundtrips": 1, "maxErrors": 3, "autoCommit": true},
                     "designer": {"orphans": []}, "zone": "eu1.make.com"}
    })
}

// CRED-007 on Make: the credential-mapping view types a connection the designer did not cache
// as promotion does (by the source team's synced connection of that id), so it is listed as a
// `google` connection with its name, matched to the target's connection of that type and name,
// and a user's mapping under that type shows as mapped
#[tokio::test]
async fn the_mapping_view_types_uncached_connections_by_the_source_teams_connections() {
    let app = workflowops_tests::TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let make = MakePeer::start(MakeConfig::default()).await;
    let dev_team = make.team();
    let prod_team = make.add_team("Production");
    let dev_sales = make.add_connection(dev_team, "Sales Google", "google", "oauth");
    let dev_ops = make.add_connection(dev_team, "Ops Google", "google", "oauth");
    let prod_sales = make.add_connection(prod_team, "Sales Google", "google", "oauth");
    let prod_shared = make.add_connection(prod_team, "Shared Google", "google", "oauth");
    make.add_scenario(dev_team, uncached_sheets("Orders", dev_sales, dev_ops));
    let _worker = workflowops_tests::engine_support::TestWorker::start(
        &app.db.pool,
        jobs::registry(&app.state.jobs),
        2,
    );
    let mut envs = Vec::new();
    for (name, team) in [("Dev", dev_team), ("Prod", prod_team)] {
        let res = app
            .post(
                "/api/v1/environments",
                &acme.admin,
                &json!({"name": name, "provider": "make", "base_url": make.base_url(team),
                        "api_key": make.api_key(), "class": "dev"}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
        let env = res.body["id"].as_str().unwrap_or_default().to_owned();
        super::git::run(
            &app,
            &acme,
            &format!("/api/v1/environments/{env}/sync"),
            Some(&json!({"scope": "full"})),
        )
        .await;
        envs.push(env);
    }
    let view_path = format!(
        "/api/v1/credential-mappings?source_environment_id={}&target_environment_id={}",
        envs[0], envs[1]
    );
    let view = app.get(&view_path, &acme.admin).await;
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!(
        view.body["credentials"],
        json!([
            {"credential_type": "google", "source_credential_id": dev_sales.to_string(),
             "source_name": "Sales Google", "workflows": 1, "state": "suggested",
             "target_credential_id": prod_sales.to_string(), "target_name": "Sales Google"},
            {"credential_type": "google", "source_credential_id": dev_ops.to_string(),
             "source_name": "Ops Google", "workflows": 1, "state": "missing",
             "target_credential_id": null, "target_name": null}
        ]),
        "{}",
        view.body
    );

    let put = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/credential-mappings",
            Some(&acme.admin.token),
            Some(
                &json!({"source_environment_id": envs[0], "target_environment_id": envs[1],
                         "credential_type": "google", "source_credential_id": dev_ops.to_string(),
                         "target_credential_id": prod_shared.to_string()}),
            ),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let view = app.get(&view_path, &acme.admin).await;
    assert_eq!(
        view.body["credentials"][1]["state"], "mapped",
        "{}",
        view.body
    );
    assert_eq!(
        view.body["credentials"][1]["target_credential_id"],
        prod_shared.to_string(),
        "{}",
        view.body
    );
}
