//! Live events: one LISTEN connection per API process fans run events out to every SSE
//! subscriber. Notifications only wake subscribers; each reads the events themselves from the
//! table after the last id it sent, so a lost or lagging notification delays, never loses.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// "Something happened in this namespace" (the engine folds a transaction's events into one
/// notice per namespace). An empty namespace means "re-read everything".
#[derive(Debug, Clone)]
pub struct Notice {
    pub ns: String,
}

impl Notice {
    /// Sent after the listener reconnected: everyone re-reads.
    fn resync() -> Self {
        Self { ns: String::new() }
    }

    pub fn is_resync(&self) -> bool {
        self.ns.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Notice>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(8192).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.tx.subscribe()
    }
}

/// Listens on `engine_events` until shutdown, reconnecting as needed.
pub async fn listen(db: PgPool, hub: EventHub, shutdown: CancellationToken) {
    loop {
        let mut listener = match PgListener::connect_with(&db).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "event listener cannot connect; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(e) = listener.listen("engine_events").await {
            tracing::warn!(error = %e, "event listener cannot subscribe; retrying");
            continue;
        }
        let _ = hub.tx.send(Notice::resync());
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                msg = listener.try_recv() => match msg {
                    Ok(Some(n)) => {
                        if !n.payload().is_empty() {
                            let _ = hub.tx.send(Notice { ns: n.payload().to_owned() });
                        }
                    }
                    Ok(None) => {
                        let _ = hub.tx.send(Notice::resync());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener failed; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}
