//! The OpenAPI 3.1 document's frame: info, security scheme, tags. Paths and schemas are collected
//! from the route handlers' `#[utoipa::path]` annotations, so the document covers every route.

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::content::{Content, ContentBuilder};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "WorkflowOps API",
        description = "Govern n8n and Make.com workflows across environments. Authenticate with \
`Authorization: Bearer <token>`: a session token from `POST /api/v1/auth/login`, or a tenant API key. \
Errors are `application/problem+json` with a stable `code`. Lists are cursor-paginated \
(`limit`, `cursor` → `next_cursor`). POSTs accept `Idempotency-Key`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "Sign in, sessions, the current caller"),
        (name = "team", description = "Members, roles and invitations"),
        (name = "api-keys", description = "Tenant API keys for machine clients"),
        (name = "audit", description = "The audit trail"),
        (name = "runs", description = "Background runs of the durable engine, and live event streams"),
        (name = "platform", description = "Platform administration (cross-tenant)"),
    )
)]
struct Base;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn base() -> Document {
    Base::openapi()
}

/// Finishes the collected document with what holds for every operation: error responses are
/// `application/problem+json` (the handlers' annotations say `body = Problem`, which utoipa
/// files under `application/json`), and any status an operation does not list (401 without
/// credentials, 403 for a role, 413 for a huge body, 503 when the database is down, ...) comes
/// as a problem document too (`default`).
pub fn conclude(doc: &mut Document) {
    let problem_ref = || RefOr::Ref(Ref::from_schema_name("Problem"));
    let is_problem = |content: &RefOr<Content>| {
        matches!(content, RefOr::T(Content { schema: Some(RefOr::Ref(r)), .. })
            if r.ref_location.ends_with("/Problem"))
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            for response in operation.responses.responses.values_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if response.content.get(JSON).is_some_and(is_problem)
                    && let Some(content) = response.content.shift_remove(JSON)
                {
                    response.content.insert(PROBLEM_JSON.to_owned(), content);
                }
            }
            operation
                .responses
                .responses
                .entry("default".to_owned())
                .or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(
                                "Any other outcome: an error, as a problem document with a stable `code`",
                            )
                            .content(
                                PROBLEM_JSON,
                                ContentBuilder::new().schema(Some(problem_ref())).build(),
                            )
                            .build(),
                    )
                });
        }
    }
}

const JSON: &str = "application/json";
const PROBLEM_JSON: &str = "application/problem+json";
