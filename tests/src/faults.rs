//! Fault injection shared by the loopback provider peers (the n8n emulator, the Make peer): a
//! queue of misbehaviours applied to the next requests in order, and what each one does to the
//! wire. Each peer says only what its own rate-limit answer looks like.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A misbehaviour applied to the next `times` requests of a peer's API, in injection order.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 500 with an HTML body.
    ServerError { times: u32 },
    /// 429 with `Retry-After` and the provider's rate-limit error.
    RateLimited { times: u32, retry_after_secs: u32 },
    /// Wait, then answer normally.
    Slow { times: u32, delay_ms: u64 },
    /// Close the connection without sending a response.
    DropConnection { times: u32 },
    /// Handle the request, then send only the first half of the JSON body.
    TruncatedJson { times: u32 },
    /// 200, `application/json`, body `<html>not json</html>`.
    Garbage { times: u32 },
}

impl Fault {
    fn times(&self) -> u32 {
        match self {
            Self::ServerError { times }
            | Self::RateLimited { times, .. }
            | Self::Slow { times, .. }
            | Self::DropConnection { times }
            | Self::TruncatedJson { times }
            | Self::Garbage { times } => *times,
        }
    }
}

/// The faults still to apply, each with the requests it has left.
#[derive(Debug, Default)]
pub struct Faults(VecDeque<(Fault, u32)>);

impl Faults {
    pub fn push(&mut self, fault: Fault) {
        let times = fault.times();
        self.0.push_back((fault, times));
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The fault for this request, if any is left.
    pub fn take(&mut self) -> Option<Fault> {
        loop {
            let front = self.0.front_mut()?;
            if front.1 == 0 {
                self.0.pop_front();
                continue;
            }
            front.1 -= 1;
            let fault = front.0.clone();
            if front.1 == 0 {
                self.0.pop_front();
            }
            return Some(fault);
        }
    }
}

/// What a fault does before the request is handled: `Err` is the response to send instead
/// (`rate_limited` builds the provider's 429 body; the `Retry-After` header is added here);
/// `Ok(true)` means handle it, then [`truncate`] the answer.
pub async fn apply(
    fault: Option<Fault>,
    rate_limited: impl FnOnce() -> Response,
) -> Result<bool, Response> {
    match fault {
        None => Ok(false),
        Some(Fault::ServerError { .. }) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><head><title>Error</title></head><body><pre>Internal Server Error</pre></body></html>",
        )
            .into_response()),
        Some(Fault::RateLimited {
            retry_after_secs, ..
        }) => {
            let mut resp = rate_limited();
            *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Err(resp)
        }
        Some(Fault::Slow { delay_ms, .. }) => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            Ok(false)
        }
        Some(Fault::DropConnection { .. }) => {
            // A body that fails before its first byte makes hyper abandon the connection with
            // the response head still unsent: the client sees a closed connection, no status.
            let stream = futures::stream::iter([Err::<Bytes, std::io::Error>(
                std::io::Error::other("connection dropped by fault injection"),
            )]);
            Err(Response::new(Body::from_stream(stream)))
        }
        Some(Fault::Garbage { .. }) => Err((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            "<html>not json</html>",
        )
            .into_response()),
        Some(Fault::TruncatedJson { .. }) => Ok(true),
    }
}

/// The first half of `resp`'s body, still labelled JSON.
pub async fn truncate(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Response::from_parts(parts, Body::from(half))
}
