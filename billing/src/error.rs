//! The one error type of billing, classified where Stripe answers: the caller's fault (never
//! retried), a passing fault (retry later), or something that will not get better by retrying.

use std::time::Duration;

/// What went wrong talking to Stripe or checking a webhook. The `Display` text is safe to log: it
/// never contains the secret key (Stripe's own messages are scrubbed of it too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    /// Stripe answered 4xx (other than 429): the request is wrong, the key is refused or the
    /// object does not exist. Retrying the same request cannot help.
    #[error("Stripe refused the request ({status}{}): {message}", code_suffix(code.as_deref()))]
    Refused {
        status: u16,
        /// Stripe's machine-readable `error.code` (`resource_missing`, `rate_limit`, ...).
        code: Option<String>,
        message: String,
    },
    /// 429, 5xx, a connection failure or a timeout: worth trying again later (with the same
    /// idempotency key, where the call takes one).
    #[error("Stripe is unavailable for now: {message}")]
    Transient {
        message: String,
        /// How long Stripe asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// Bad configuration, a webhook that fails verification, or an answer we cannot read.
    #[error("{0}")]
    Invalid(String),
}

fn code_suffix(code: Option<&str>) -> String {
    code.map(|code| format!(", {code}")).unwrap_or_default()
}

pub type Result<T, E = BillingError> = std::result::Result<T, E>;

impl BillingError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Stripe's `error.code`, when Stripe refused the request with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Classifies an async-stripe error. `secret` is removed from every message kept.
    pub(crate) fn from_stripe(err: stripe::StripeError, secret: &str) -> Self {
        match err {
            stripe::StripeError::Stripe(api, status) => {
                let code = api.code.as_ref().map(|code| code.as_str().to_owned());
                let message = redact(
                    api.message.as_deref().unwrap_or_else(|| api.type_.as_str()),
                    secret,
                );
                // Stripe documents `lock_timeout` (409) as "another request is using this object
                // right now": the same request goes through a moment later.
                if status == 429 || status >= 500 || code.as_deref() == Some("lock_timeout") {
                    Self::Transient {
                        message: format!("{status}: {message}"),
                        retry_after: None,
                    }
                } else {
                    Self::Refused {
                        status,
                        code,
                        message,
                    }
                }
            }
            // async-stripe 1.0.0-rc.10 says exactly this (and drops the status) when an error
            // status comes with a body that is not Stripe's error JSON: Stripe itself always
            // sends that JSON, so such an answer comes from a proxy or load balancer in between
            // (502/503 pages), which is a passing fault.
            stripe::StripeError::JSONDeserialize(message)
                if message == "error deserializing Stripe error" =>
            {
                Self::Transient {
                    message: "an error status without Stripe's error body (a proxy in between?)"
                        .to_owned(),
                    retry_after: None,
                }
            }
            stripe::StripeError::JSONDeserialize(message) => Self::Invalid(format!(
                "Stripe's answer could not be read: {}",
                redact(&message, secret)
            )),
            // Connection refused or reset, DNS, TLS, a broken body: the request may or may not
            // have arrived, which is what idempotency keys are for.
            stripe::StripeError::ClientError(message) => Self::Transient {
                message: format!("could not reach Stripe: {}", redact(&message, secret)),
                retry_after: None,
            },
            stripe::StripeError::Timeout => Self::Transient {
                message: "Stripe did not answer in time".to_owned(),
                retry_after: None,
            },
            stripe::StripeError::ConfigError(message) => Self::Invalid(format!(
                "Stripe client configuration: {}",
                redact(&message, secret)
            )),
        }
    }
}

/// `message` with every occurrence of `secret` replaced. Stripe masks keys in its own messages
/// (`sk_test_****abcd`); this guards against any text that echoes one whole.
pub(crate) fn redact(message: &str, secret: &str) -> String {
    if secret.is_empty() {
        message.to_owned()
    } else {
        message.replace(secret, "[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_display_names_status_code_and_message() {
        let err = BillingError::Refused {
            status: 400,
            code: Some("resource_missing".to_owned()),
            message: "No such price: 'price_x'".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "Stripe refused the request (400, resource_missing): No such price: 'price_x'"
        );
        assert_eq!(err.code(), Some("resource_missing"));
        assert!(!err.is_transient());
    }

    #[test]
    fn redact_removes_every_copy_of_the_secret() {
        assert_eq!(
            redact("key sk_test_abc and sk_test_abc", "sk_test_abc"),
            "key [redacted] and [redacted]"
        );
        assert_eq!(redact("nothing", ""), "nothing");
    }
}
