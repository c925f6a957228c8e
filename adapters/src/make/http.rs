//! Talking to Make's API v2: where an environment's team lives (its base URL), one paced and
//! retried call, and the classification of what comes back.
//!
//! Pacing, retries and transport failures are every adapter's ([`crate::http`]); what is Make's
//! own is the base URL and the error body (`{message, detail, code, suberrors}`).

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::http::retry_after;
use crate::limiter::{Limiter, Limits};
use crate::provider::{ProviderError, ProviderResult};

/// Longest provider text quoted back in an error.
const QUOTE: usize = 300;
/// The longest answer read: a scenario's blueprint is rarely more than a few MiB, and a longer
/// answer (a broken or hostile server) is refused rather than held in memory.
pub(super) const LONGEST_ANSWER: usize = 64 << 20;
/// The longest error body read for its message (beyond it, the status alone speaks).
const LONGEST_ERROR: usize = 64 << 10;

pub(super) fn quote(text: &str) -> String {
    crate::http::quote(text, QUOTE)
}

/// What a user is told when an environment's base URL cannot be used.
pub const EXPECTED_BASE_URL: &str = "a Make environment's base URL is its zone's address with \
     the team's id as `teamId`, e.g. `https://eu1.make.com?teamId=42` (the id is in the address of \
     the team's pages in Make)";

/// Where one environment's API is: `{origin}/api/v2` and the team everything is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub api_root: String,
    pub team_id: u64,
}

/// Reads `https://eu1.make.com?teamId=42`; `/api/v2` and a trailing slash are accepted too.
pub fn parse_base_url(base_url: &str) -> ProviderResult<Target> {
    let raw = base_url.trim();
    let invalid = |why: &str| {
        ProviderError::Validation(format!("{EXPECTED_BASE_URL}; {why} (got `{}`)", quote(raw)))
    };
    let url = Url::parse(raw).map_err(|_| invalid("this is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("it must start with https://"));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(invalid("it names no host"));
    };
    let team = url
        .query_pairs()
        .find(|(k, _)| k == "teamId")
        .map(|(_, v)| v.into_owned());
    let Some(team) = team else {
        return Err(invalid("it has no `?teamId=`"));
    };
    let team_id = team
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| invalid("`teamId` must be a number"))?;
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/api/v2").unwrap_or(path);
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(Target {
        api_root: format!("{}://{host}{port}{path}/api/v2", url.scheme()),
        team_id,
    })
}

/// One environment's API: paced by its limits, retried with backoff honouring `Retry-After`.
#[derive(Debug)]
pub(super) struct Api {
    http: reqwest::Client,
    root: String,
    api_key: SecretString,
    limits: Limits,
    limiter: Limiter,
}

impl Api {
    pub(super) fn new(
        http: reqwest::Client,
        root: String,
        api_key: SecretString,
        limits: Limits,
    ) -> Self {
        Self {
            http,
            root,
            api_key,
            limiter: Limiter::new(&limits),
            limits,
        }
    }

    /// How many requests may usefully be in flight at once.
    pub(super) fn concurrency(&self) -> usize {
        self.limits.concurrency.max(1) as usize
    }

    /// One API call; the parsed JSON body (Null when empty). Creating a scenario is not
    /// idempotent: once the POST may have reached Make (anything but a refused connection or a
    /// 429), it is not sent again.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> ProviderResult<Value> {
        let url = format!("{}{path}", self.root);
        let creates = method == Method::POST && path == "/scenarios";
        let mut token = HeaderValue::from_str(&format!("Token {}", self.api_key.expose_secret()))
            .map_err(|_| {
            ProviderError::Auth("the API key has characters no HTTP header can carry".into())
        })?;
        token.set_sensitive(true);
        crate::http::call(
            &self.limiter,
            &self.limits,
            "make",
            &url,
            creates,
            || {
                let request = self
                    .http
                    .request(method.clone(), &url)
                    .header(AUTHORIZATION, token.clone())
                    .header("accept", "application/json")
                    .query(query);
                match body {
                    Some(body) => request.json(body),
                    None => request,
                }
            },
            read,
        )
        .await
    }
}

/// Make's error body as one sentence: `message: detail`, then each suberror's text.
pub(super) fn error_text(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let field = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut parts = Vec::new();
    match (field(&v, "message"), field(&v, "detail")) {
        (Some(m), Some(d)) if m != d => parts.push(format!("{m}: {d}")),
        (Some(m), _) => parts.push(m),
        (None, Some(d)) => parts.push(d),
        (None, None) => {}
    }
    for sub in v
        .get("suberrors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let text = match sub {
            Value::String(s) => Some(s.trim().to_owned()),
            _ => match (field(sub, "message"), field(sub, "detail")) {
                (Some(m), Some(d)) if m != d => Some(format!("{m}: {d}")),
                (Some(m), _) | (None, Some(m)) => Some(m),
                (None, None) => None,
            },
        };
        parts.extend(text.filter(|t| !t.is_empty()));
    }
    (!parts.is_empty()).then(|| quote(&parts.join("; ")))
}

/// Classifies a response: 2xx parsed as JSON (at most [`LONGEST_ANSWER`] of it), everything
/// else an error with Make's message.
async fn read(response: reqwest::Response) -> ProviderResult<Value> {
    let status = response.status();
    let wait = retry_after(response.headers());
    let bytes = crate::http::capped_body(response, LONGEST_ANSWER, LONGEST_ERROR).await?;
    if status.is_success() {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        // Nothing of the body goes back to the caller (the URL may be anyone's): the log has it.
        return serde_json::from_slice(&bytes).map_err(|e| {
            tracing::warn!(status = status.as_u16(), error = %e, "a Make answer could not be read");
            ProviderError::InvalidResponse(format!(
                "HTTP {} with a body that is not valid JSON",
                status.as_u16()
            ))
        });
    }
    let message = error_text(&bytes)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let code = status.as_u16();
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ProviderError::Auth(message),
        StatusCode::NOT_FOUND => ProviderError::NotFound(message),
        StatusCode::TOO_MANY_REQUESTS => ProviderError::RateLimited { retry_after: wait },
        StatusCode::REQUEST_TIMEOUT => ProviderError::Transient(format!("HTTP {code}: {message}")),
        s if s.is_server_error() => ProviderError::Transient(format!("HTTP {code}: {message}")),
        StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {
            ProviderError::Validation(message)
        }
        _ => ProviderError::Permanent(format!("HTTP {code}: {message}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_name_the_zone_and_the_team() {
        let expect = |s: &str| parse_base_url(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        for form in [
            "https://eu1.make.com?teamId=42",
            "https://eu1.make.com/?teamId=42",
            "https://eu1.make.com/api/v2?teamId=42",
            "https://eu1.make.com/api/v2/?teamId=42",
            " https://eu1.make.com/api/v2/?teamId=42&x=1 ",
        ] {
            assert_eq!(
                expect(form),
                Target {
                    api_root: "https://eu1.make.com/api/v2".into(),
                    team_id: 42
                },
                "{form}"
            );
        }
        assert_eq!(
            expect("http://127.0.0.1:8080/make?teamId=7").api_root,
            "http://127.0.0.1:8080/make/api/v2"
        );
        for bad in [
            "https://eu1.make.com",
            "https://eu1.make.com/api/v2",
            "https://eu1.make.com?teamId=abc",
            "https://eu1.make.com?teamId=0",
            "ftp://eu1.make.com?teamId=1",
            "eu1.make.com?teamId=1",
        ] {
            match parse_base_url(bad) {
                Err(ProviderError::Validation(m)) => {
                    assert!(m.contains("?teamId=42"), "{bad}: {m}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn error_bodies_read_as_one_sentence() {
        let body = br#"{"message":"Validation failed","detail":"Invalid blueprint","code":"IM003",
            "suberrors":[{"message":"Module 2 is not valid"},"flow must be an array"]}"#;
        assert_eq!(
            error_text(body).as_deref(),
            Some(
                "Validation failed: Invalid blueprint; Module 2 is not valid; flow must be an array"
            )
        );
        assert_eq!(
            error_text(br#"{"message":"Permission denied","detail":"Permission denied"}"#)
                .as_deref(),
            Some("Permission denied")
        );
        assert_eq!(error_text(b"<html>oops</html>"), None);
        assert_eq!(error_text(b"{}"), None);
    }
}
