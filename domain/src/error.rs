//! The domain's error type: what went wrong in terms a caller can act on.
//!
//! The API maps each variant to an HTTP status and a stable machine-readable code; database
//! errors stay opaque to clients (they are logged, not returned).

use serde::Serialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One invalid field of a request, named by its JSON path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unknown id, or an id that belongs to another tenant (never distinguished).
    #[error("{entity} not found")]
    NotFound { entity: &'static str },
    /// The request conflicts with the current state (duplicate, last admin, ...).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request named something that existed but is no longer usable (expired invitation).
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// Input failed validation; one entry per field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Credentials were presented but are wrong, expired or revoked.
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: String },
    /// The caller is known but not allowed to do this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// Encryption or decryption of a stored secret failed (wrong key, tampered ciphertext).
    #[error("secret store: {0}")]
    Crypto(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
    pub fn not_found(entity: &'static str) -> Self {
        Self::NotFound { entity }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

/// The name of the unique constraint a database error violated, if that is what it is.
pub fn unique_violation(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Some(db.constraint().unwrap_or_default().to_owned())
        }
        _ => None,
    }
}
