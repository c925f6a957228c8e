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
