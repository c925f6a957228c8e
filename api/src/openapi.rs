//! The OpenAPI 3.1 document's frame: info, security scheme, tags. Paths and schemas are collected
//! from the route handlers' `#[utoipa::path]` annotations, so the document covers every route.

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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
