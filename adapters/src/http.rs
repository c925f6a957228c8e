//! What every HTTP provider adapter does alike: one call paced by the environment's limiter and
//! retried with backoff (Retry-After honoured, never a create sent twice), transport failures
//! classified, redirects and web pages refused unread, provider text quoted safely.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};

use crate::limiter::{Limiter, Limits};
use crate::provider::{ProviderError, ProviderResult};

/// The longest `Retry-After` waited out inside one call. A provider asking for more would hold
/// a worker's slot (and its run) for that long per try: the call ends at once with the
/// `RateLimited` error instead, and the engine sets the run's next attempt that much later.
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(120);

/// Sends the request `build` makes (a new one per attempt) through `limiter`, reads the answer
/// with `read`, and retries what may succeed later: transient failures and unreadable answers,
/// with exponential backoff and jitter for at most `limits.tries` attempts; a `Retry-After`
/// replaces the backoff's delay, never its end, and one longer than [`LONGEST_WAIT`] ends the
/// call. A `create` (not idempotent) is sent again only when it surely did not arrive: a refused
/// connection, or a 429.
pub(crate) async fn call<T, R, Fut>(
    limiter: &Limiter,
    limits: &Limits,
    provider: &'static str,
    url: &str,
    create: bool,
    build: impl Fn() -> reqwest::RequestBuilder,
    read: R,
) -> ProviderResult<T>
where
    R: Fn(reqwest::Response) -> Fut,
    Fut: Future<Output = ProviderResult<T>>,
{
    let maybe_sent = AtomicBool::new(false);
    let once = || async {
        let _slot = limiter.acquire().await;
        let response = build().timeout(limits.timeout).send().await.map_err(|e| {
            if !e.is_connect() {
                maybe_sent.store(true, Ordering::Relaxed);
            }
            transport(&e)
        })?;
        maybe_sent.store(true, Ordering::Relaxed);
        refuse_unfit(&response)?;
        read(response).await
    };
    once.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(limits.tries.saturating_sub(1) as usize)
            .with_jitter(),
    )
    .when(|e: &ProviderError| worth_retrying(e, create, maybe_sent.load(Ordering::Relaxed)))
    // `adjust` answering Some after the backoff ran out would retry a 429 forever.
    .adjust(|e: &ProviderError, delay| delay.map(|d| e.retry_after().unwrap_or(d)))
    .notify(|e: &ProviderError, delay| {
        tracing::debug!(error = %e, ?delay, url = %url, provider, "retrying a provider request");
    })
    .await
}

/// Whether a failed attempt is tried again within the call: what may succeed later (transient
/// failures, unreadable answers), unless the provider asked to wait longer than
/// [`LONGEST_WAIT`], or it was a create that may have arrived (`maybe_sent`; a 429 did not).
fn worth_retrying(e: &ProviderError, create: bool, maybe_sent: bool) -> bool {
    if e.retry_after().is_some_and(|wait| wait > LONGEST_WAIT) {
        return false;
    }
    let retriable = e.is_transient() || matches!(e, ProviderError::InvalidResponse(_));
    let unsent = !maybe_sent || matches!(e, ProviderError::RateLimited { .. });
    retriable && (!create || unsent)
}

/// Answers no provider API gives, refused before their body is read: a redirect (the client
/// follows none; the user is told where it pointed, to fix the URL) and a web page where JSON
/// was due (the URL names some other web server, whose page is not quoted back).
fn refuse_unfit(response: &reqwest::Response) -> ProviderResult<()> {
    let status = response.status();
    if status.is_redirection() && status != reqwest::StatusCode::NOT_MODIFIED {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| crate::net::redirect_target(response.url(), l));
        return Err(match location {
            Some(to) => ProviderError::Redirected(quote(&to, 300)),
            None => ProviderError::Permanent(format!(
                "HTTP {}: the server answered with a redirect that names no address",
                status.as_u16()
            )),
        });
    }
    let html = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"));
    if status.is_success() && html {
        return Err(ProviderError::InvalidResponse(format!(
            "HTTP {} with a web page where the API answers JSON; is the base URL the instance's \
             own address?",
            status.as_u16()
        )));
    }
    Ok(())
}

/// A provider's text as it may appear in our messages: control characters blanked, at most
/// `max` characters.
pub(crate) fn quote(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() > max {
        format!("{}…", clean.chars().take(max).collect::<String>())
    } else {
        clean
    }
}

/// A request that got no answer: transient, naming the host but not the path or query (which
/// may carry ids); one the destination check stopped is refused for good, with its reason.
pub(crate) fn transport(e: &reqwest::Error) -> ProviderError {
    if let Some(refused) = crate::net::refusal(e) {
        return ProviderError::Refused(refused.to_string());
    }
    let what = if e.is_timeout() {
        "the request timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the connection failed"
    };
    let url = e
        .url()
        .map(|u| {
            format!(
                " ({}://{}{})",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    ProviderError::Transient(format!("{what}{url}"))
}

/// `Retry-After` in seconds or as an HTTP date, at most an hour.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds.min(3600)));
    }
    let at = DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let wait = at.with_timezone(&Utc) - Utc::now();
    Some(
        wait.to_std()
            .unwrap_or_default()
            .min(Duration::from_secs(3600)),
    )
}

/// A provider's answer read within its caps: a 2xx body of at most `answer` bytes (a longer one
/// is an invalid response, not read), an error body of at most `error` bytes (a longer one
/// reads as empty: the status still says what happened).
pub(crate) async fn capped_body(
    response: reqwest::Response,
    answer: usize,
    error: usize,
) -> ProviderResult<Vec<u8>> {
    let status = response.status();
    let max = if status.is_success() { answer } else { error };
    match body(response, max).await? {
        Some(bytes) => Ok(bytes),
        None if status.is_success() => Err(ProviderError::InvalidResponse(format!(
            "HTTP {} with an answer longer than {} MiB; not read",
            status.as_u16(),
            answer >> 20
        ))),
        None => Ok(Vec::new()),
    }
}

/// A response's body, or None when it is longer than `max` bytes (refused unread when its
/// declared length says so, else read no further than `max`).
pub(crate) async fn body(
    mut response: reqwest::Response,
    max: usize,
) -> ProviderResult<Option<Vec<u8>>> {
    if response
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > max))
    {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProviderError::Transient(format!("reading the response failed: {e}")))?
    {
        if chunk.len() > max - bytes.len() {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_text_is_quoted_short_and_on_one_line() {
        assert_eq!(quote("a\nb", 10), "a b");
        assert_eq!(quote("abcdef", 3), "abc…");
    }

    #[test]
    fn a_429_asking_to_wait_more_than_two_minutes_is_not_retried_within_the_call() {
        let limited = |secs: Option<u64>| ProviderError::RateLimited {
            retry_after: secs.map(Duration::from_secs),
        };
        for create in [false, true] {
            assert!(!worth_retrying(&limited(Some(600)), create, true));
            assert!(!worth_retrying(&limited(Some(121)), create, false));
            assert!(worth_retrying(&limited(Some(120)), create, true));
            assert!(worth_retrying(&limited(None), create, true));
        }
        let down = ProviderError::Transient("HTTP 503".into());
        assert!(worth_retrying(&down, false, true));
        assert!(
            !worth_retrying(&down, true, true),
            "a create that may have arrived"
        );
        assert!(
            worth_retrying(&down, true, false),
            "a create that surely did not"
        );
        assert!(worth_retrying(
            &ProviderError::InvalidResponse("half a body".into()),
            false,
            true
        ));
        assert!(!worth_retrying(
            &ProviderError::NotFound("gone".into()),
            false,
            true
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_caps_them() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::RETRY_AFTER,
            "7".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "99999".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past");
        h.insert(
            reqwest::header::RETRY_AFTER,
            "soon".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(retry_after(&h), None);
    }
}
