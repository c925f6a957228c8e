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
