use reqwest::Method;
use workflowops_tests::TestApp;

#[tokio::test]
async fn the_openapi_document_is_3_1_and_every_operation_it_lists_is_routed() {
    let app = TestApp::spawn().await;
    let doc = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(doc.status, 200);
    assert!(
        doc.body["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1")
    );
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());
    let paths = doc.body["paths"].as_object().cloned().unwrap_or_default();
    assert!(paths.len() >= 15, "only {} paths documented", paths.len());
    for (template, item) in paths {
        let path = template
            .replace("{user_id}", "x")
            .replace("{key_id}", "x")
            .replace("{invitation_id}", "x")
            .replace("{tenant_id}", "x")
            .replace("{run_id}", "x");
        for (method, op) in item.as_object().cloned().unwrap_or_default() {
            assert!(
                op["responses"].is_object(),
                "{method} {template} documents no responses"
            );
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap_or(Method::GET);
            let res = app.request(m, &path, None, None).await;
            assert_ne!(
                res.code(),
                "route_not_found",
                "{method} {template} is documented but not routed"
            );
            assert_ne!(
                res.code(),
                "method_not_allowed",
                "{method} {template} is documented but not routed"
            );
        }
    }
}

// A client generator (or a fuzzer) given the document must find every schema it names.
#[tokio::test]
async fn every_reference_in_the_openapi_document_resolves() {
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r.to_owned());
                }
                map.values().for_each(|c| refs(c, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|c| refs(c, out)),
            _ => {}
        }
    }
    let app = TestApp::spawn().await;
    let doc = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let mut found = Vec::new();
    refs(&doc.body, &mut found);
    assert!(found.len() > 50, "only {} references", found.len());
    let dangling: Vec<&String> = found
        .iter()
        .filter(|r| doc.body.pointer(r.trim_start_matches('#')).is_none())
        .collect();
    assert!(dangling.is_empty(), "dangling references: {dangling:?}");
}

// The document keys schemas by name: two types with one name leave one of them documented with
// the other's shape (an onboarding preflight documented as a promotion's did). Every
// `ToSchema` type of the workspace needs its own name (`#[schema(as = ...)]` when two share one).
#[test]
fn no_two_documented_types_share_a_schema_name() {
    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| panic!("workspace root"))
        .to_path_buf();
    let mut files = Vec::new();
    for member in ["api", "domain", "engine", "jobs", "adapters"] {
        rust_files(&root.join(member), &mut files);
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut clashes = Vec::new();
    let mut documented = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let mut in_schema = false;
        let mut alias: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if line.starts_with("#[derive(") && line.contains("ToSchema") {
                in_schema = true;
                alias = None;
            } else if in_schema && line.starts_with("#[") {
                if let Some(rest) = line.split("as = ").nth(1) {
                    alias = Some(rest.trim_end_matches(")]").trim().to_owned());
                }
            } else if in_schema && !line.starts_with("//") {
                let name = line
                    .strip_prefix("pub struct ")
                    .or_else(|| line.strip_prefix("pub enum "))
                    .and_then(|rest| {
                        rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                            .next()
                    });
                if let Some(name) = name {
                    let name = alias.take().unwrap_or_else(|| name.to_owned());
                    documented += 1;
                    let here = file.display().to_string();
                    if let Some(there) = seen.insert(name.clone(), here.clone()) {
                        clashes.push(format!("{name}: {there} and {here}"));
                    }
                }
                in_schema = false;
            }
        }
    }
    assert!(documented > 50, "found only {documented} documented types");
    assert!(clashes.is_empty(), "schema names used twice: {clashes:#?}");
}

// Errors are problem documents, whatever the status: documented under their real media type,
// and every operation says so for statuses it does not list (401, 403, 413, 503, ...).
#[tokio::test]
async fn error_responses_are_documented_as_problem_documents() {
    let app = TestApp::spawn().await;
    let doc = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let problem = "#/components/schemas/Problem";
    let mut operations = 0;
    for (template, item) in doc.body["paths"].as_object().cloned().unwrap_or_default() {
        for (method, op) in item.as_object().cloned().unwrap_or_default() {
            operations += 1;
            let responses = op["responses"].as_object().cloned().unwrap_or_default();
            assert_eq!(
                responses["default"]["content"]["application/problem+json"]["schema"]["$ref"],
                problem,
                "{method} {template}: no default problem response"
            );
            for (status, response) in responses {
                assert_ne!(
                    response["content"]["application/json"]["schema"]["$ref"], problem,
                    "{method} {template} {status}: a problem documented as application/json"
                );
            }
        }
    }
    assert!(operations > 100, "only {operations} operations");
}

// Enumerations are documented with the texts the API reads and writes (`dev`), not the Rust
// variant names (`Dev`): a client generated from the document must send what the API accepts.
#[tokio::test]
async fn documented_enumerations_are_the_texts_the_api_uses() {
    let app = TestApp::spawn().await;
    let doc = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let schemas = doc.body["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        schemas["EnvironmentClass"]["enum"],
        serde_json::json!(["dev", "staging", "production"])
    );
    assert_eq!(schemas["DiffStatus"]["enum"][2], "TARGET_ONLY");
    let mut enums = 0;
    for (name, schema) in &schemas {
        for value in schema["enum"].as_array().into_iter().flatten() {
            enums += 1;
            let text = value.as_str().unwrap_or_default();
            // A Rust variant name is CamelCase; the API's texts are snake_case (or, where the
            // PRD says so, SCREAMING_CASE).
            let camel = text.starts_with(|c: char| c.is_ascii_uppercase())
                && text.contains(|c: char| c.is_ascii_lowercase());
            assert!(!camel, "{name} documents `{text}`, a Rust name");
        }
    }
    assert!(enums > 30, "only {enums} enumerated values");
}

// What the API validates is stated in the document (minLength, minItems, ranges, formats,
// patterns, enumerations), so a client or a fuzzer that honours it is not answered with a 422.
#[tokio::test]
async fn the_openapi_document_states_the_limits_the_api_validates() {
    let app = TestApp::spawn().await;
    let doc = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let schemas = &doc.body["components"]["schemas"];
    let prop = |schema: &str, field: &str| schemas[schema]["properties"][field].clone();

    for (schema, max) in [
        ("CreateEnvironmentRequest", 100),
        ("PipelineRequest", 200),
        ("CreateApiKeyRequest", 200),
        ("SignalRequest", 100),
    ] {
        assert_eq!(prop(schema, "name")["minLength"], 1, "{schema}.name");
        assert_eq!(prop(schema, "name")["maxLength"], max, "{schema}.name");
    }
    assert_eq!(prop("GitRequest", "url")["minLength"], 1);
    assert_eq!(prop("LinkRequest", "workflow_id")["minLength"], 1);
    assert_eq!(prop("AcceptInvitationRequest", "token")["minLength"], 1);
    assert_eq!(prop("SnapshotRequest", "reason")["minLength"], 1);
    assert_eq!(prop("IncidentPatch", "ticket_ref")["minLength"], 1);

    let ids = prop("PromotionRequest", "workflow_ids");
    assert_eq!(
        (ids["minItems"].clone(), ids["maxItems"].clone()),
        (1.into(), 1000.into())
    );
    assert_eq!(prop("RestoreRequest", "workflow_ids")["minItems"], 1);
    assert_eq!(prop("OnboardRequest", "items")["maxItems"], 1000);
    let envs = prop("BulkSyncRequest", "environment_ids");
    assert_eq!(
        (envs["minItems"].clone(), envs["maxItems"].clone()),
        (1.into(), 100.into())
    );

    assert_eq!(prop("CreateInvitationRequest", "email")["format"], "email");
    let hours = prop("ExtendRequest", "hours");
    assert_eq!(
        (hours["minimum"].clone(), hours["maximum"].clone()),
        (1.into(), 720.into())
    );
    assert_eq!(
        prop("CreateEnvironmentRequest", "provider")["pattern"],
        "^(n8n|make)$"
    );

    let param = |path: &str, name: &str| {
        doc.body["paths"][path]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"].clone())
            .unwrap_or_default()
    };
    // Enumerations and bounds the handlers check, stated in the document too (schemathesis).
    assert!(
        param("/api/v1/runs", "status")["pattern"]
            .as_str()
            .is_some_and(|p| p.contains("succeeded")),
        "{}",
        param("/api/v1/runs", "status")
    );
    assert_eq!(
        param("/api/v1/platform/environments", "provider")["pattern"],
        "^(n8n|make)$"
    );
    assert_eq!(
        prop("RotateApiKeyRequest", "overlap_seconds")["maximum"],
        604_800
    );
    assert_eq!(
        prop("Policy", "notify_min_severity")["pattern"],
        "^(low|medium|high|critical)$"
    );
    let action = &prop("ActionRequestBody", "action");
    let action = if action["$ref"].is_string() {
        schemas["RequestableAction"].clone()
    } else {
        action.clone()
    };
    assert_eq!(
        action["enum"],
        serde_json::json!(["activate", "deactivate", "archive", "unarchive", "delete"]),
        "{action}"
    );
    let range = param("/api/v1/executions/analytics", "range");
    assert!(
        range.to_string().contains("\"90d\""),
        "range documents no enumeration: {range}"
    );
    let status = param("/api/v1/executions", "status");
    assert!(
        status["pattern"]
            .as_str()
            .unwrap_or_default()
            .contains("canceled"),
        "status documents no pattern: {status}"
    );
}

// Limits that were only in descriptions are in the schemas: enumerations as patterns, ranges,
// id lists the API refuses to see twice as `uniqueItems`, and the upload's items as objects
// with a name and nodes.
#[tokio::test]
async fn the_openapi_document_states_uniqueness_ranges_and_upload_items() {
    let app = TestApp::spawn().await;
    let doc = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let schemas = &doc.body["components"]["schemas"];
    let prop = |schema: &str, field: &str| schemas[schema]["properties"][field].clone();

    assert_eq!(
        prop("GitRequest", "auth")["pattern"],
        "^(none|token|ssh_key)$"
    );
    let days = prop("GitRequest", "snapshot_retention_days");
    assert_eq!(
        (days["minimum"].clone(), days["maximum"].clone()),
        (1.into(), 3650.into())
    );
    for (schema, field) in [
        ("BulkBackupRequest", "environment_ids"),
        ("PromotionRequest", "workflow_ids"),
        ("BulkActionBody", "workflow_ids"),
    ] {
        assert_eq!(
            prop(schema, field)["uniqueItems"],
            true,
            "{schema}.{field}: {}",
            prop(schema, field)
        );
    }
    for schema in ["CreatePlanRequest", "PlanPatch"] {
        let price = prop(schema, "stripe_price_id");
        assert_eq!(price["pattern"], "^price_[A-Za-z0-9_]+$", "{schema}");
        assert_eq!(price["maxLength"], 255, "{schema}");
        assert_eq!(prop(schema, "rank")["maximum"], 1000, "{schema}");
    }
    let stages = prop("PipelineRequest", "stages");
    assert_eq!(
        (stages["minItems"].clone(), stages["maxItems"].clone()),
        (1.into(), 10.into())
    );
    assert_eq!(prop("Approvals", "required")["maximum"], 5);

    let upload = prop("UploadRequest", "workflows");
    assert_eq!(
        (upload["minItems"].clone(), upload["maxItems"].clone()),
        (1.into(), 100.into())
    );
    let item = &upload["items"];
    assert_eq!(item["type"], "object", "{upload}");
    assert_eq!(item["required"], serde_json::json!(["name", "nodes"]));
    assert_eq!(item["properties"]["name"]["maxLength"], 200);
    assert_eq!(item["properties"]["nodes"]["type"], "array");
}
