//! A minimal Server-Sent Events reader for tests.

use std::time::Duration;

use futures::StreamExt;

#[derive(Debug, Clone, PartialEq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Reads events from an open SSE response until `stop` says so (inclusive), the stream ends, or
/// `timeout` passes.
pub async fn read_events(
    res: reqwest::Response,
    timeout: Duration,
    mut stop: impl FnMut(&SseMessage) -> bool,
) -> Vec<SseMessage> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut body = res.bytes_stream();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let chunk = tokio::select! {
            c = body.next() => c,
            () = tokio::time::sleep_until(deadline) => panic!("SSE: timed out after {} events", out.len()),
        };
        let Some(Ok(chunk)) = chunk else { return out };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut msg = SseMessage {
                id: None,
                event: "message".into(),
                data: String::new(),
            };
            let mut comment_only = true;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    msg.id = Some(v.trim().to_owned());
                    comment_only = false;
                } else if let Some(v) = line.strip_prefix("event:") {
                    msg.event = v.trim().to_owned();
                    comment_only = false;
                } else if let Some(v) = line.strip_prefix("data:") {
                    msg.data.push_str(v.trim_start());
                    comment_only = false;
                }
            }
            if comment_only {
                continue;
            }
            let done = stop(&msg);
            out.push(msg);
            if done {
                return out;
            }
        }
    }
}

impl SseMessage {
    /// The message's data as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_default()
    }
}

/// A run's whole event stream as `token` sees it, read from the start until its `end` event (the
/// run must finish within `timeout`).
pub async fn run_stream(
    app: &crate::TestApp,
    token: &str,
    run: uuid::Uuid,
    timeout: Duration,
) -> Vec<SseMessage> {
    let res = app
        .http
        .get(app.url(&format!("/api/v1/runs/{run}/events")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("opening the event stream of run {run}: {e}"));
    assert_eq!(res.status(), 200, "the event stream of run {run}");
    read_events(res, timeout, |m| m.event == "end").await
}

/// The statuses a run's stream reported, in order.
pub fn statuses(events: &[SseMessage]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.event == "state")
        .map(|e| {
            e.json()["data"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// The `(done, total)` progress a run's stream reported, in order.
pub fn progress(events: &[SseMessage]) -> Vec<(i64, i64)> {
    events
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| {
            let d = e.json();
            (
                d["data"]["done"].as_i64().unwrap_or(-1),
                d["data"]["total"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}
