//! An HTTP receiver on a loopback port, standing in for Slack incoming webhooks and for
//! customers' webhook endpoints in end-to-end tests of notifications.
//!
//! `POST /slack/{*rest}` answers as Slack's incoming webhooks do: 200 `ok` for a JSON body with a
//! non-empty `text` or `blocks`, 400 `invalid_payload` otherwise, and 404 `no_service` / 410
//! `channel_is_archived` for a hook whose last path segment is `revoked` / `archived`. Any other
//! request gets an empty 200, or the status set with [`HookPeer::set_default_status`]. Every
//! request is recorded (method, path, headers, raw body), and the next responses can be replaced
//! to exercise retry paths (429 with `Retry-After`, 5xx, 404).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::{Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bodies above this get 413 (and are recorded empty).
const BODY_LIMIT: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Public interface
// ---------------------------------------------------------------------------------------------

/// One request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// In arrival order, names lowercase, repeated headers kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// When the body is not JSON; the message shows it.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A running receiver. The server stops when this is dropped.
pub struct HookPeer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for HookPeer {
    fn drop(&mut self) {
        // Aborting the accept loop also closes open connections once their current request is
        // answered, so a pooled client cannot keep talking to a dropped receiver.
        self.server.abort();
    }
}

impl HookPeer {
    /// # Errors
    /// When the loopback port cannot be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("hook peer: bind")?;
        let addr = listener.local_addr().context("hook peer: local address")?;
        let shared = Arc::new(Shared {
            state: Mutex::new(Inner {
                requests: Vec::new(),
                canned: VecDeque::new(),
                default_status: StatusCode::OK,
            }),
            received: watch::Sender::new(0),
        });
        let app = router(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("hook peer stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// `http://127.0.0.1:PORT` followed by `path` (a missing leading `/` is added).
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://{}{slash}{path}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().requests.clone()
    }

    /// Waits until at least `n` requests arrived and returns all of them.
    ///
    /// # Panics
    /// When fewer than `n` arrived within `timeout`; the message says which did.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let mut received = self.shared.received.subscribe();
        let arrived = tokio::time::timeout(timeout, received.wait_for(|&count| count >= n)).await;
        let requests = self.requests();
        if !matches!(arrived, Ok(Ok(_))) {
            let seen: Vec<String> = requests
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect();
            panic!(
                "hook peer: waited {timeout:?} for {n} request(s), {} arrived: {seen:?}",
                requests.len()
            );
        }
        requests
    }

    /// Answers the next `times` requests, whatever their path, with `status`, `headers` and
    /// `body` instead of the normal response. They are still recorded. Responses queued by
    /// several calls are used in order.
    ///
    /// # Panics
    /// When the status, a header name or a header value is invalid.
    pub fn respond_next(&self, status: u16, headers: &[(&str, &str)], body: &str, times: usize) {
        let status = status_code(status);
        let headers = headers
            .iter()
            .map(|&(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .unwrap_or_else(|e| panic!("hook peer: header name {name:?}: {e}"));
                let value = HeaderValue::from_str(value)
                    .unwrap_or_else(|e| panic!("hook peer: header value {value:?}: {e}"));
                (name, value)
            })
            .collect();
        if times == 0 {
            return;
        }
        self.shared.lock().canned.push_back(Canned {
            status,
            headers,
            body: body.to_owned(),
            left: times,
        });
    }

    /// The status of the empty response to requests outside `/slack/` (200 at start).
    ///
    /// # Panics
    /// When `status` is not a valid HTTP status code.
    pub fn set_default_status(&self, status: u16) {
        self.shared.lock().default_status = status_code(status);
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or_else(|e| panic!("hook peer: status {status}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

struct Shared {
    state: Mutex<Inner>,
    /// How many requests were recorded; wakes `wait_for`.
    received: watch::Sender<usize>,
}

struct Inner {
    requests: Vec<Received>,
    canned: VecDeque<Canned>,
    default_status: StatusCode,
}

/// A response queued by `respond_next`.
struct Canned {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: String,
    left: usize,
}

impl Canned {
    fn response(&self) -> Response {
        let mut response = (self.status, self.body.clone()).into_response();
        let headers = response.headers_mut();
        // Given headers replace the defaults (a given content-type wins over text/plain);
        // repeated names are all sent.
        for (name, _) in &self.headers {
            headers.remove(name);
        }
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        response
    }
}

impl Shared {
    /// A panicking test must not wedge every other request, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads and records the request. `Err` is the response to send instead of the route's
    /// own: a queued one, or 413 for a body over the limit.
    async fn receive(&self, req: Request) -> Result<(HeaderMap, Bytes), Response> {
        let (parts, body) = req.into_parts();
        let body = to_bytes(body, BODY_LIMIT).await;
        let received = Received {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.as_ref().map(|b| b.to_vec()).unwrap_or_default(),
        };
        let canned = {
            let mut state = self.lock();
            state.requests.push(received);
            take_canned(&mut state.canned)
        };
        // Counted up rather than set, so that concurrent requests cannot publish their counts
        // out of order.
        self.received.send_modify(|count| *count += 1);
        if let Some(response) = canned {
            return Err(response);
        }
        match body {
            Ok(body) => Ok((parts.headers, body)),
            // Over the limit, or the client went away mid-body (then nobody reads this).
            Err(_) => Err((StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response()),
        }
    }
}

fn take_canned(queue: &mut VecDeque<Canned>) -> Option<Response> {
    let canned = queue.front_mut()?;
    let response = canned.response();
    canned.left -= 1;
    if canned.left == 0 {
        queue.pop_front();
    }
    Some(response)
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/slack/{*rest}", post(slack))
        // Other methods on a Slack path are "anything else" too.
        .method_not_allowed_fallback(other)
        .fallback(other)
        .with_state(shared)
}

/// Slack's incoming webhook: the hook's state first, then the payload.
async fn slack(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    // The path is read from the request rather than extracted, so that no extractor can refuse
    // a request before it is recorded.
    let path = req.uri().path().to_owned();
    let (headers, body) = match shared.receive(req).await {
        Ok(received) => received,
        Err(response) => return response,
    };
    match path.rsplit('/').next() {
        Some("revoked") => return (StatusCode::NOT_FOUND, "no_service").into_response(),
        Some("archived") => return (StatusCode::GONE, "channel_is_archived").into_response(),
        _ => {}
    }
    if is_json(&headers) && is_slack_message(&body) {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::BAD_REQUEST, "invalid_payload").into_response()
    }
}

async fn other(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if let Err(response) = shared.receive(req).await {
        return response;
    }
    let status = shared.lock().default_status;
    status.into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON object with a non-empty string `text` or a non-empty array `blocks`.
fn is_slack_message(body: &[u8]) -> bool {
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let text = message
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|text| !text.is_empty());
    let blocks = message
        .get("blocks")
        .and_then(Value::as_array)
        .is_some_and(|blocks| !blocks.is_empty());
    text || blocks
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::StatusCode;
    use serde_json::json;

    use super::HookPeer;

    const WAIT: Duration = Duration::from_secs(5);
    const SLACK: &str = "/slack/T000/B000/XXXX";

    async fn start() -> HookPeer {
        HookPeer::start()
            .await
            .unwrap_or_else(|e| panic!("start hook peer: {e}"))
    }

    fn http() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    /// Sends the request and returns the status, the content-type and the body.
    async fn send(req: reqwest::RequestBuilder) -> (StatusCode, String, String) {
        let resp = req.send().await.unwrap_or_else(|e| panic!("request: {e}"));
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.text().await.unwrap_or_else(|e| panic!("body: {e}"));
        (status, content_type, body)
    }

    #[tokio::test]
    async fn slack_webhook_accepts_text_or_blocks() {
        let peer = start().await;
        assert_eq!(
            peer.url(SLACK),
            format!("http://127.0.0.1:{}{SLACK}", peer.addr.port())
        );
        let url = peer.url(SLACK);

        let (status, content_type, body) =
            send(http().post(&url).json(&json!({"text": "Run 42 failed"}))).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        assert!(content_type.starts_with("text/plain"), "{content_type}");

        let blocks =
            json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*x*"}}]});
        let (status, _, body) = send(http().post(&url).json(&blocks)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

        let requests = peer.wait_for(2, WAIT).await;
        assert_eq!(requests[0].json(), json!({"text": "Run 42 failed"}));
        assert_eq!(requests[1].json(), blocks);
    }

    #[tokio::test]
    async fn slack_webhook_refuses_an_invalid_payload() {
        let peer = start().await;
        let url = peer.url(SLACK);
        for payload in [
            json!({"text": ""}),
            json!({"blocks": []}),
            json!({"text": 42}),
            json!({"username": "bot"}),
            json!(["text"]),
        ] {
            let (status, content_type, body) = send(http().post(&url).json(&payload)).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::BAD_REQUEST, "invalid_payload"),
                "{payload}"
            );
            assert!(content_type.starts_with("text/plain"), "{content_type}");
        }
        // A valid message, but not sent as JSON.
        let (status, _, body) = send(
            http()
                .post(&url)
                .header("content-type", "text/plain")
                .body(r#"{"text":"hi"}"#),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_payload")
        );
        let (status, _, body) = send(
            http()
                .post(&url)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_payload")
        );
        assert_eq!(peer.requests().len(), 7);
    }

    #[tokio::test]
    async fn revoked_and_archived_slack_hooks_answer_like_slack() {
        let peer = start().await;
        let message = json!({"text": "hello"});
        let (status, _, body) = send(
            http()
                .post(peer.url("/slack/T000/B000/revoked"))
                .json(&message),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, "no_service")
        );
        let (status, _, body) = send(
            http()
                .post(peer.url("/slack/T000/B000/archived"))
                .json(&message),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::GONE, "channel_is_archived")
        );
    }

    #[tokio::test]
    async fn queued_429_answers_the_next_request_then_normal_service_resumes() {
        let peer = start().await;
        peer.respond_next(429, &[("Retry-After", "30")], "rate_limited", 1);
        let url = peer.url(SLACK);
        let message = json!({"text": "hello"});

        let resp = http()
            .post(&url)
            .json(&message)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request: {e}"));
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("30")
        );
        assert_eq!(resp.text().await.unwrap_or_default(), "rate_limited");

        let (status, _, body) = send(http().post(&url).json(&message)).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

        // Any path takes the queued responses, in order.
        peer.respond_next(500, &[], "", 1);
        peer.respond_next(404, &[], "gone", 1);
        let hook = peer.url("hook/abc");
        let (status, _, _) = send(http().post(&hook).body("{}")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let (status, _, body) = send(http().post(&hook).body("{}")).await;
        assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, "gone"));
        let (status, _, _) = send(http().post(&hook).body("{}")).await;
        assert_eq!(status, StatusCode::OK);

        let requests = peer.wait_for(5, WAIT).await;
        assert_eq!(requests.len(), 5, "faulted requests are recorded too");
        assert_eq!(requests[0].json(), message);
    }

    #[tokio::test]
    async fn requests_are_recorded_with_lowercase_headers_and_raw_body() {
        let peer = start().await;
        let body = r#"{"event":"run.failed","run":{"id":"r1"}}"#;
        let (status, _, answer) = send(
            http()
                .post(peer.url("/hook/customer-1?attempt=2"))
                .header("Content-Type", "application/json")
                .header("X-WorkflowOps-Signature", "sha256=abc")
                .body(body),
        )
        .await;
        assert_eq!((status, answer.as_str()), (StatusCode::OK, ""));

        peer.set_default_status(503);
        let (status, _, _) = send(http().get(peer.url("/health"))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        // A Slack path with another method is "anything else".
        let (status, _, _) = send(http().get(peer.url(SLACK))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

        let requests = peer.wait_for(3, WAIT).await;
        let hook = &requests[0];
        assert_eq!(hook.method, "POST");
        assert_eq!(hook.path, "/hook/customer-1");
        assert_eq!(hook.body, body.as_bytes());
        assert_eq!(hook.json()["run"]["id"], "r1");
        assert_eq!(hook.header("x-workflowops-signature"), Some("sha256=abc"));
        assert_eq!(hook.header("X-WorkflowOps-Signature"), Some("sha256=abc"));
        assert!(
            hook.headers
                .contains(&("content-type".to_owned(), "application/json".to_owned())),
            "{:?}",
            hook.headers
        );
        assert!(
            hook.headers
                .iter()
                .all(|(name, _)| *name == name.to_ascii_lowercase())
        );
        assert_eq!(hook.header("x-missing"), None);
        assert_eq!(
            (requests[1].method.as_str(), requests[1].path.as_str()),
            ("GET", "/health")
        );
        assert_eq!(
            (requests[2].method.as_str(), requests[2].body.len()),
            ("GET", 0)
        );
    }

    #[tokio::test]
    async fn bodies_up_to_one_mebibyte_are_accepted() {
        let peer = start().await;
        let url = peer.url("/hook/big");
        let (status, _, _) = send(http().post(&url).body(vec![b'a'; super::BODY_LIMIT])).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = send(http().post(&url).body(vec![b'a'; super::BODY_LIMIT + 1])).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let requests = peer.wait_for(2, WAIT).await;
        assert_eq!(requests[0].body.len(), super::BODY_LIMIT);
        assert!(requests[1].body.is_empty());
    }

    #[tokio::test]
    #[should_panic(expected = "for 1 request(s), 0 arrived")]
    async fn waiting_for_a_request_that_never_comes_panics() {
        let peer = start().await;
        peer.wait_for(1, Duration::from_millis(50)).await;
    }
}
