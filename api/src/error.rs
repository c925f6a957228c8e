//! The HTTP error type: every failure becomes `application/problem+json` with a stable
//! machine-readable `code` and a human `message`. 5xx bodies never carry internals; the detail
//! goes to the log, inside the request's span (which carries the request id).

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::FieldError;
use serde::Serialize;

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    pub errors: Vec<FieldError>,
    /// Logged, never sent.
    internal: Option<String>,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

/// The body of every error response (RFC 9457 problem details, plus `code` and `errors`).
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// HTTP status, repeated for clients that only see the body.
    pub status: u16,
    /// Short, human summary of the status.
    pub title: String,
    /// Stable, machine-readable error code (e.g. `validation_failed`, `not_found`).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// Per-field problems, for validation errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<ProblemField>,
}

#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ProblemField {
    pub field: String,
    pub message: String,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            errors: Vec::new(),
            internal: None,
            retry_after: None,
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self {
            internal: Some(detail.to_string()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; it has been logged with this request's id (x-request-id)",
            )
        }
    }

    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        Self {
            internal: Some(detail.to_string()),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the service is temporarily unavailable; retry shortly",
            )
        }
    }

    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// A 429 with a `Retry-After` of `wait` (rounded up to whole seconds).
    pub fn too_many(
        code: &'static str,
        message: impl Into<String>,
        wait: std::time::Duration,
    ) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 422 `destination_refused`: an address the server may not call (`WFO_OUTBOUND_NETWORKS`);
    /// `message` names the address, its class and the setting.
    pub fn destination_refused(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "destination_refused",
            message,
        )
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let summary = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("the request is invalid: {summary}"),
            )
        }
    }
}

impl From<domain::Error> for ApiError {
    fn from(err: domain::Error) -> Self {
        use domain::Error as E;
        match err {
            E::NotFound { entity } => Self::not_found(format!("{entity} not found")),
            E::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            E::Gone { code, message } => Self::new(StatusCode::GONE, code, message),
            E::Validation(errors) => Self::validation(errors),
            E::Unauthenticated { code, message } => Self::unauthenticated(code, message),
            E::Forbidden { code, message } => Self::forbidden(code, message),
            E::Crypto(detail) => Self::internal(detail),
            E::Database(db) => db.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::unavailable(err)
            }
            sqlx::Error::Database(db) if db.is_unique_violation() => Self {
                internal: Some(err.to_string()),
                ..Self::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "this conflicts with something that already exists",
                )
            },
            // A value the request carried that PostgreSQL cannot store or compare: a date
            // before 4713 BC or after 294276 AD, a number past its column's range.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("22008" | "22003")) =>
            {
                let what = if db.code().as_deref() == Some("22008") {
                    "a date or time in the request is outside the range this service stores (4713 BC to 294276 AD)"
                } else {
                    "a number in the request is outside the range this service stores"
                };
                Self {
                    internal: Some(err.to_string()),
                    ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "out_of_range", what)
                }
            }
            _ => Self::internal(err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after;
        if let Some(detail) = &self.internal {
            if self.status.is_server_error() {
                tracing::error!(status = self.status.as_u16(), code = %self.code, error = %detail, "request failed");
            } else {
                tracing::info!(status = self.status.as_u16(), code = %self.code, error = %detail, "request refused");
            }
        }
        let body = Problem {
            status: self.status.as_u16(),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            code: self.code.into_owned(),
            message: self.message,
            errors: self
                .errors
                .into_iter()
                .map(|e| ProblemField {
                    field: e.field,
                    message: e.message,
                })
                .collect(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
