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
