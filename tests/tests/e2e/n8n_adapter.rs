//! The n8n adapter against the emulator — and against a real n8n when `N8N_URL` and
//! `N8N_API_KEY` are set (the tests not about faults; see the README).

use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters::{Connection, Limits, Provider, ProviderError, ProviderKind};
use serde_json::{Value, json};
use workflowops_tests::n8n::{EmulatorConfig, Fault, N8nEmulator, Peer};

async fn peer() -> Peer {
    Peer::real_or(EmulatorConfig::default()).await
}

fn adapter(base_url: &str, api_key: &str, version: Option<String>) -> Arc<dyn Provider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    adapters::connect(
        &jobs::providers::http_client(),
        Connection {
            kind: ProviderKind::N8n,
            base_url: base_url.to_owned(),
            api_key: secrecy::SecretString::from(api_key.to_owned()),
            version,
            limits: Limits {
                per_second: 200.0,
                ..Limits::default()
            },
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A workflow as a 2.x GET returns it: read-only fields, a 2.x-only setting, a DEFAULT value.
fn as_read_from_2x(name: &str) -> Value {
    json!({
        "id": "willBeIgnored", "name": name, "active": false, "isArchived": false,
        "description": "from a 2.x instance", "versionId": "abc", "versionCounter": 4,
        "tags": [{"id": "1", "name": "x"}], "meta": {"templateCredsSetupCompleted": true},
        "shared": [], "triggerCount": 1, "createdAt": "2026-01-01T00:00:00.000Z",
        "nodes": [
            {"id": "a1", "name": "Every hour", "type": "n8n-nodes-base.scheduleTrigger", "typeVersion": 1.2,
             "position": [0, 0], "parameters": {"rule": {"interval": [{"field": "hours"}]}}},
            {"id": "a2", "name": "Set", "type": "n8n-nodes-base.set", "typeVersion": 3.4,
             "position": [220, 0], "parameters": {}}
        ],
        "connections": {"Every hour": {"main": [[{"node": "Set", "type": "main", "index": 0}]]}},
        "settings": {"executionOrder": "v1", "binaryMode": "separate", "saveManualExecutions": "DEFAULT"},
        "staticData": null, "pinData": {}
    })
}

// PROV-001, PROV-002: the adapter's contract, on whatever instance is configured
#[tokio::test]
async fn the_adapter_reads_writes_activates_and_pages_workflows() {
    let peer = peer().await;
    let probe = adapter(&peer.base_url, &peer.api_key, None);
    let info = probe
        .test_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let n8n = adapter(&peer.base_url, &peer.api_key, info.version.clone());

    let name = format!("wfo-contract-{}", uuid::Uuid::now_v7().simple());
    let created = n8n
        .create_workflow(&as_read_from_2x(&name))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(created["name"], name.as_str());
    assert_eq!(created["active"], false, "created workflows are inactive");

    let mut changed = created.clone();
    changed["nodes"][1]["parameters"] = json!({"mode": "raw"});
    let updated = n8n
        .update_workflow(&id, &changed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        updated["versionId"], created["versionId"],
        "every write makes a new version"
    );

    let active = n8n
        .set_active(&id, true)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(active["active"], true);
    n8n.set_active(&id, false)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut cursor: Option<String> = None;
    let mut found = false;
    let mut listed = Vec::new();
    loop {
        let page = n8n
            .list_workflows(cursor.as_deref())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        found |= page.items.iter().any(|w| w["id"] == id.as_str());
        listed.extend(page.items);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert!(found, "the new workflow is listed");
    // The raw listing (what syncs store) is the same workflows, as text.
    let mut cursor: Option<String> = None;
    let mut raw = Vec::new();
    loop {
        let page = n8n
            .list_workflows_raw(cursor.as_deref())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for w in &page.items {
            let reparsed: serde_json::Value =
                serde_json::from_str(w.text.get()).unwrap_or_else(|e| panic!("{e}"));
            raw.push(reparsed);
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(raw, listed, "the raw listing is the parsed one");
    n8n.delete_workflow(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        n8n.get_workflow(&id).await,
        Err(ProviderError::NotFound(_))
    ));
}

// The version-aware write: a workflow read from 2.x written into a 1.x instance (the real
// instance when one is configured, whatever its version: the write must succeed there too)
#[tokio::test]
async fn a_workflow_read_from_2x_is_written_to_1x() {
    let v2 = N8nEmulator::start(EmulatorConfig::default()).await;
    let v1 = Peer::real_or(EmulatorConfig {
        version: "1.123.81".into(),
        ..EmulatorConfig::default()
    })
    .await;
    let emulated = v1.emulator.is_some();
    let id = v2.insert_workflow(as_read_from_2x("Nightly export"));
    let from = adapter(&v2.base_url(), &v2.api_key(), Some(v2.version()));
    let read = from
        .get_workflow(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Sent back verbatim, 1.x refuses it (the emulator enforces n8n's schema).
    let raw = reqwest::Client::new()
        .post(format!("{}/api/v1/workflows", v1.base_url))
        .header("X-N8N-API-KEY", &v1.api_key)
        .json(&read)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw.status(), 400);

    let probe = adapter(&v1.base_url, &v1.api_key, None);
    let info = probe
        .test_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if emulated {
        assert_eq!(info.version.as_deref(), Some("1.123.81"));
        assert!(!info.capabilities.list_credentials);
    }
    let lists_credentials = info.capabilities.list_credentials;
    let to = adapter(&v1.base_url, &v1.api_key, info.version);
    let written = to
        .create_workflow(&read)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(written["name"], "Nightly export");
    assert_eq!(
        domain::workflow::content_hash(
            &json!({"name": written["name"], "nodes": written["nodes"], "connections": written["connections"], "settings": {"executionOrder": "v1"}})
        ),
        domain::workflow::content_hash(
            &json!({"name": read["name"], "nodes": read["nodes"], "connections": read["connections"], "settings": {"executionOrder": "v1"}})
        ),
        "the workflow arrived unchanged apart from what 1.x cannot hold"
    );
    if !lists_credentials {
        assert!(matches!(
            to.list_credentials(None).await,
            Err(ProviderError::Unsupported(_))
        ));
    }
    let written_id = written["id"].as_str().unwrap_or_default();
    to.delete_workflow(written_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

// Faults: classified at the boundary, retried where that can help, Retry-After honoured
#[tokio::test]
async fn faults_are_retried_or_classified() {
    let n8n = N8nEmulator::start(EmulatorConfig::default()).await;
    n8n.seed_workflows(3, 2);
    let a = adapter(&n8n.base_url(), &n8n.api_key(), Some(n8n.version()));

    n8n.inject(Fault::RateLimited {
        times: 1,
        retry_after_secs: 1,
    });
    let started = Instant::now();
    let page = a
        .list_workflows(None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.items.len(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited for Retry-After: {:?}",
        started.elapsed()
    );

    // Retry-After sets the wait, not the number of tries: a 429 that persists ends the call.
    n8n.inject(Fault::RateLimited {
        times: 50,
        retry_after_secs: 0,
    });
    let before = n8n.requests();
    let e = a.list_workflows(None).await.err();
    assert!(
        matches!(e, Some(ProviderError::RateLimited { .. })),
        "{e:?}"
    );
    assert_eq!(n8n.requests() - before, u64::from(Limits::default().tries));
    n8n.clear_faults();

    for fault in [
        Fault::ServerError { times: 2 },
        Fault::DropConnection { times: 2 },
        Fault::TruncatedJson { times: 1 },
    ] {
        n8n.inject(fault.clone());
        let page = a
            .list_workflows(None)
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(page.items.len(), 3, "{fault:?} was retried");
    }

    n8n.inject(Fault::ServerError { times: 10 });
    let e = a.list_workflows(None).await.err();
    assert!(
        matches!(e, Some(ProviderError::Transient(ref m)) if m.contains("500")),
        "{e:?}"
    );
    assert!(
        !format!("{e:?}").contains("<html"),
        "no provider HTML in our errors"
    );
    n8n.clear_faults();

    n8n.inject(Fault::Garbage { times: 10 });
    let e = a.list_workflows(None).await.err();
    assert!(
        matches!(e, Some(ProviderError::InvalidResponse(_))),
        "{e:?}"
    );
    n8n.clear_faults();

    let wrong = adapter(&n8n.base_url(), "nope", None);
    assert!(matches!(
        wrong.test_connection().await,
        Err(ProviderError::Auth(_))
    ));
    let missing = a.get_workflow("doesNotExist1234").await;
    assert!(matches!(missing, Err(ProviderError::NotFound(_))));
    let invalid = a
        .create_workflow(&json!({"name": "x", "nodes": "not a list"}))
        .await;
    assert!(
        matches!(invalid, Err(ProviderError::Validation(_))),
        "{invalid:?}"
    );
    let bad_id = a.get_workflow("../etc/passwd").await;
    assert!(matches!(bad_id, Err(ProviderError::Validation(_))));
}
