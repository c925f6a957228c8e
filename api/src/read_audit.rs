//! The audit of reads (the runs API audits every call, reads included): a request hands its
//! entry to one writer task per process and goes on; the writer inserts whatever has gathered
//! in one statement, in arrival order, the way a group commit does. Idle, each entry is written
//! alone within a round trip; under load, batches grow instead of requests waiting for their
//! inserts. Entries keep the time and id of the call, not of the write.
//!
//! A request waits only when the writer is `CAPACITY` entries behind (the database is slow or
//! gone): backpressure, not loss. An insert that fails is retried with backoff for about a
//! minute, then its entries are dropped with an error in the log and
//! `workflowops_audit_reads_dropped_total` (the API's database is down by then, and the reads
//! themselves fail). On shutdown the server flushes what is left.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use domain::audit::{self, Captured};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

/// Entries waiting for the writer before a request has to wait.
const CAPACITY: usize = 4096;
/// Most entries per insert.
const MAX_BATCH: usize = 512;

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

impl ReadAudit {
    /// Starts the writer (on the current Tokio runtime).
    pub fn start(db: PgPool) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(write(db, rx));
        Self { tx }
    }

    /// Queues an entry; waits only while the writer is `CAPACITY` entries behind.
    pub async fn record(&self, entry: Captured) {
        if self.tx.send(Message::Entry(Box::new(entry))).await.is_err() {
            metrics::counter!("workflowops_audit_reads_dropped_total").increment(1);
            tracing::error!("the read audit writer has stopped: an audit entry was dropped");
        }
    }

    /// Returns once every entry queued before the call is written (or given up).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
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
            let insert = || audit::record_batch(&db, &batch);
            let written = insert
                .retry(
                    ExponentialBuilder::default()
                        .with_min_delay(Duration::from_millis(100))
                        .with_max_delay(Duration::from_secs(10))
                        .with_max_times(10)
                        .with_jitter(),
                )
                .notify(|e, wait| {
                    tracing::warn!(error = %e, retry_in = ?wait, entries = batch.len(), "writing read audit entries failed");
                })
                .await;
            if let Err(e) = written {
                metrics::counter!("workflowops_audit_reads_dropped_total")
                    .increment(batch.len() as u64);
                tracing::error!(error = %e, entries = batch.len(), "read audit entries dropped after retries");
            }
            batch.clear();
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}
