//! The audit of reads (the runs API audits every call its handlers see, reads included): a
//! request takes a place in the queue of one writer task per process before it reads, hands
//! its entry over when it has answered, and goes on; the writer inserts whatever has gathered
//! in one statement, in arrival order, the way a group commit does. Idle, each entry is written
//! alone within a round trip; under load, batches grow instead of requests waiting for their
//! inserts. Entries keep the time and id of the call's start, not of the write.
//!
//! A request waits for its place only when the writer is `CAPACITY` entries behind (the
//! database is slow or gone): backpressure, not loss. A request dropped half-way (its client
//! went away, the request timeout struck) still leaves its entry, marked `cancelled`. An insert
//! that fails for a reason that may pass (connection, pool, I/O) is retried with backoff for
//! about a minute; a batch the database refuses for any other reason is written row by row,
//! so one bad row costs only itself. What is given up is logged and counted in
//! `workflowops_audit_reads_dropped_total`. On shutdown the server flushes what is left.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use domain::audit::{self, Captured};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

/// Entries waiting for the writer before a request has to wait for its place.
const CAPACITY: usize = 4096;
/// Most entries per insert.
const MAX_BATCH: usize = 512;
/// Longest string kept in an entry's details (query parameters are the caller's to choose).
const MAX_TEXT: usize = 256;

enum Message {
    Entry(Box<Captured>),
    /// Answered once every entry sent before it is written (or given up).
    Flush(oneshot::Sender<()>),
}

/// Hands read audit entries to this process's writer task (cheap to clone).
#[derive(Clone)]
pub struct ReadAudit {
    tx: mpsc::Sender<Message>,
}

/// A read being audited: its place in the writer's queue and its entry. [`Pending::finish`]
/// sends the entry; dropped unfinished, it sends the entry marked `"status": "cancelled"`.
pub struct Pending {
    slot: Option<(mpsc::OwnedPermit<Message>, Captured)>,
}

impl ReadAudit {
    /// Starts the writer (on the current Tokio runtime).
    pub fn start(db: PgPool) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(write(db, rx));
        Self { tx }
    }

    /// Takes a place in the writer's queue for `entry` (waits only while the writer is
    /// `CAPACITY` entries behind).
    pub async fn begin(&self, entry: Captured) -> Pending {
        match self.tx.clone().reserve_owned().await {
            Ok(permit) => Pending {
                slot: Some((permit, entry)),
            },
            Err(_) => {
                dropped(1, "the read audit writer has stopped");
                Pending { slot: None }
            }
        }
    }

    /// Returns once every entry sent before the call is written (or given up), or after
    /// `limit` (what is left is logged).
    pub async fn flush(&self, limit: Duration) {
        let (done, written) = oneshot::channel();
        let flushed = async {
            if self.tx.send(Message::Flush(done)).await.is_ok() {
                let _ = written.await;
            }
        };
        if tokio::time::timeout(limit, flushed).await.is_err() {
            tracing::error!(
                waiting = CAPACITY - self.tx.capacity(),
                "read audit entries not written before shutdown"
            );
        }
    }
}

impl Pending {
    /// Sends the entry, after `details` has added how the call ended.
    pub fn finish(mut self, details: impl FnOnce(&mut Value)) {
        self.send(details);
    }

    fn send(&mut self, details: impl FnOnce(&mut Value)) {
        if let Some((permit, mut entry)) = self.slot.take() {
            let value = entry
                .new_value
                .get_or_insert_with(|| Value::Object(serde_json::Map::new()));
            details(value);
            bounded(value);
            permit.send(Message::Entry(Box::new(entry)));
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.send(|value| value["status"] = "cancelled".into());
    }
}

/// Makes every string of `value` storable and short: NUL (which `jsonb` refuses) becomes
/// U+FFFD, and a string over `MAX_TEXT` bytes is cut there (at a character boundary) with `…`.
fn bounded(value: &mut Value) {
    match value {
        Value::String(s) => {
            if s.contains('\0') {
                *s = s.replace('\0', "\u{fffd}");
            }
            if s.len() > MAX_TEXT {
                let mut end = MAX_TEXT;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
                s.push('…');
            }
        }
        Value::Array(items) => items.iter_mut().for_each(bounded),
        Value::Object(map) => map.values_mut().for_each(bounded),
        _ => {}
    }
}

fn dropped(n: usize, why: &str) {
    metrics::counter!("workflowops_audit_reads_dropped_total").increment(n as u64);
    tracing::error!(entries = n, "{why}: read audit entries dropped");
}

/// Whether a failed insert may succeed when tried again.
fn transient(e: &domain::Error) -> bool {
    match e {
        domain::Error::Database(e) => matches!(
            e,
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
        ),
        _ => false,
    }
}

async fn insert(db: &PgPool, batch: &[Captured]) -> Result<(), domain::Error> {
    (|| audit::record_batch(db, batch))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(10)
                .with_jitter(),
        )
        .when(transient)
        .notify(|e, wait| {
            tracing::warn!(error = %e, retry_in = ?wait, entries = batch.len(), "writing read audit entries failed");
        })
        .await
}

async fn write(db: PgPool, mut rx: mpsc::Receiver<Message>) {
    let mut batch: Vec<Captured> = Vec::with_capacity(MAX_BATCH);
    let mut flushed: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Entry(e) => batch.push(*e),
                Message::Flush(done) => {
                    flushed.push(done);
                    break;
                }
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            match insert(&db, &batch).await {
                Ok(()) => {}
                Err(e) if transient(&e) => dropped(batch.len(), &e.to_string()),
                Err(e) => {
                    // Refused, not unreachable: one row may be at fault; the others go alone.
                    tracing::warn!(error = %e, entries = batch.len(), "a read audit batch was refused; writing it row by row");
                    for entry in &batch {
                        if let Err(e) = insert(&db, std::slice::from_ref(entry)).await {
                            dropped(1, &e.to_string());
                        }
                    }
                }
            }
            batch.clear();
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::audit::{Actor, Entry};
    use serde_json::json;

    fn entry() -> Captured {
        let actor = Actor::cli();
        Entry::new(None, &actor, "run.viewed", "run")
            .new_value(&json!({"asked": 1}))
            .capture()
    }

    async fn next(rx: &mut mpsc::Receiver<Message>) -> Value {
        match rx.recv().await {
            Some(Message::Entry(e)) => e.new_value.unwrap_or_default(),
            _ => panic!("expected an entry"),
        }
    }

    #[tokio::test]
    async fn a_read_dropped_half_way_still_leaves_its_entry_marked_cancelled() {
        let (tx, mut rx) = mpsc::channel(4);
        let audit = ReadAudit { tx };
        let done = audit.begin(entry()).await;
        done.finish(|d| d["status"] = 200.into());
        assert_eq!(next(&mut rx).await, json!({"asked": 1, "status": 200}));
        let abandoned = audit.begin(entry()).await;
        drop(abandoned);
        assert_eq!(
            next(&mut rx).await,
            json!({"asked": 1, "status": "cancelled"})
        );
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_next_read_wait_for_its_place() {
        let (tx, mut rx) = mpsc::channel(1);
        let audit = ReadAudit { tx };
        let first = audit.begin(entry()).await;
        let wait = Duration::from_millis(50);
        assert!(
            tokio::time::timeout(wait, audit.begin(entry()))
                .await
                .is_err(),
            "no place while the writer is a queue behind"
        );
        first.finish(|_| {});
        next(&mut rx).await;
        let second = tokio::time::timeout(Duration::from_secs(5), audit.begin(entry()))
            .await
            .unwrap_or_else(|_| panic!("a place once the writer took the first"));
        second.finish(|_| {});
        next(&mut rx).await;
    }

    #[test]
    fn stored_strings_carry_no_nul_and_are_cut_at_a_character_boundary() {
        let mut v = json!({"query": {"kind": "a\u{0}b", "label": "é".repeat(200)}, "n": 3});
        bounded(&mut v);
        assert_eq!(v["query"]["kind"], "a\u{fffd}b");
        let label = v["query"]["label"].as_str().unwrap_or_default();
        assert!(label.ends_with('…'));
        assert_eq!(label.len(), MAX_TEXT + '…'.len_utf8());
        assert_eq!(v["n"], 3);
    }
}
