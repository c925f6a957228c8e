//! Live events: one LISTEN connection per API process, and one reader per namespace that fans
//! events out to every SSE subscriber of that namespace.
//!
//! When a namespace has subscribers, its notifications make the hub read the new events once
//! (in (transaction, id) order, below the settled horizon; see `engine::read`) and broadcast them
//! as a batch that says which range it covers. A subscriber whose own position is inside that
//! range takes what is new to it; one that finds a gap (it lagged, or joined between batches)
//! reads the table itself from its position. Nothing is lost when a notification is: the hub
//! also polls the namespaces it serves.
//!
//! Only namespaces the hub registers (`engine::read::watch`, renewed while they have subscribers)
//! send notifications at all: a commit that sends NOTIFY holds PostgreSQL's notification lock
//! until it is flushed, which runs nobody watches should not pay for.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use engine::read::{self, Cursor, Event};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// New events of one namespace, covering every event in `(from, to]`, with their SSE frames
/// built once for every subscriber (a delivery is then a reference-count increment, one channel
/// send and one socket write per subscriber).
#[derive(Debug)]
pub struct Batch {
    pub ns: String,
    pub from: Cursor,
    pub to: Cursor,
    pub events: Vec<Event>,
    /// Each event's SSE frame.
    pub frames: Vec<Bytes>,
    /// The `counts` frame (unfinished runs by status), when the batch has state changes.
    pub counts: Option<Bytes>,
    /// What the tenant stream sends a subscriber whose position is `from`: the state frames,
    /// then the counts; `None` when the batch has no state changes.
    pub tenant: Option<Bytes>,
}

#[derive(Debug, Clone)]
pub enum Message {
    Batch(Arc<Batch>),
    /// The hub lost track (reconnected): every subscriber re-reads from its position.
    Resync,
    /// The hub started following this namespace from its newest event: its subscribers, who
    /// started from theirs a moment earlier, re-read from their positions (what committed in
    /// between is in no batch).
    Reread(String),
}

#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Message>,
    interest: Arc<Mutex<HashMap<String, usize>>>,
    /// Signalled when a namespace gets its first subscriber, so the hub registers it at once.
    joined: Arc<tokio::sync::Notify>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

/// A subscriber's registration; the hub stops reading a namespace once its last one is dropped.
#[derive(Debug)]
pub struct Subscription {
    pub rx: broadcast::Receiver<Message>,
    ns: String,
    interest: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut map) = self.interest.lock()
            && let Some(n) = map.get_mut(&self.ns)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ns);
            }
        }
    }
}

impl EventHub {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(4096).0,
            interest: Arc::default(),
            joined: Arc::default(),
        }
    }

    pub fn subscribe(&self, ns: &str) -> Subscription {
        if let Ok(mut map) = self.interest.lock() {
            let n = map.entry(ns.to_owned()).or_default();
            *n += 1;
            if *n == 1 {
                self.joined.notify_one();
            }
        }
        Subscription {
            rx: self.tx.subscribe(),
            ns: ns.to_owned(),
            interest: Arc::clone(&self.interest),
        }
    }

    fn interested(&self) -> HashSet<String> {
        self.interest
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// How long a namespace stays registered for notifications (`engine::read::watch`) without
/// renewal, and how often the hub renews the namespaces it serves.
const WATCH: Duration = Duration::from_secs(30);
const RENEW: Duration = Duration::from_secs(10);
const SETTLE: Duration = Duration::from_millis(10);
const BATCH: i64 = 2000;

/// Listens on `engine_events` and feeds subscribers until shutdown; reads the namespaces it
/// serves every `poll` even without a notification (a safety net).
pub async fn listen(db: PgPool, hub: EventHub, poll: Duration, shutdown: CancellationToken) {
    let mut cursors: HashMap<String, Cursor> = HashMap::new();
    // Namespaces registered for notifications, and when.
    let mut watched: HashMap<String, std::time::Instant> = HashMap::new();
    // Newly registered namespaces, with the horizon the reads must pass before no transaction
    // that missed the registration (and so did not notify) can still commit: read again at the
    // settle interval until then, not at the next poll.
    let mut fresh: Vec<(String, i64)> = Vec::new();
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
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        let _ = hub.tx.send(Message::Resync);
        let mut pending: HashSet<String> = HashSet::new();
        let mut unsettled = false;
        // While events wait for an older transaction, re-read soon, then less and less often
        // (a long transaction would otherwise cost reads every 10 ms for as long as it lives).
        let mut settle = SETTLE;
        loop {
            let wait = if unsettled {
                let wait = settle;
                settle = (settle * 2).min(poll);
                wait
            } else {
                settle = SETTLE;
                poll
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                msg = listener.try_recv() => match msg {
                    Ok(Some(n)) => {
                        pending.insert(n.payload().to_owned());
                        // Gather what else is already waiting before reading.
                        while let Ok(Some(Some(n))) = tokio::time::timeout(Duration::ZERO, listener.try_recv()).await.map(Result::ok) {
                            pending.insert(n.payload().to_owned());
                        }
                    }
                    Ok(None) => {
                        let _ = hub.tx.send(Message::Resync);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener failed; reconnecting");
                        break;
                    }
                },
                () = tokio::time::sleep(wait) => {
                    pending.extend(hub.interested());
                }
                () = hub.joined.notified() => {}
            }
            let interested = hub.interested();
            cursors.retain(|ns, _| interested.contains(ns));
            watched.retain(|ns, _| interested.contains(ns));
            fresh.retain(|(ns, _)| interested.contains(ns));
            let due: Vec<String> = interested
                .iter()
                .filter(|ns| watched.get(*ns).is_none_or(|at| at.elapsed() >= RENEW))
                .cloned()
                .collect();
            if !due.is_empty() {
                // Only a first registration needs the horizon (taking one uses a transaction id).
                let registered = match read::watch(&db, &due, WATCH).await {
                    Ok(()) if due.iter().any(|ns| !watched.contains_key(ns)) => {
                        read::registered_below(&db).await.map(Some)
                    }
                    renewed => renewed.map(|()| None),
                };
                match registered {
                    Ok(horizon) => {
                        for ns in due {
                            // Newly watched: read it now (it was not notified until now), and
                            // again until the transactions that missed it have ended.
                            if watched
                                .insert(ns.clone(), std::time::Instant::now())
                                .is_none()
                            {
                                pending.insert(ns.clone());
                                fresh.extend(horizon.map(|h| (ns, h)));
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "registering watched namespaces failed"),
                }
            }
            // Checked before the reads: a registration whose horizon has passed now is read
            // below with every transaction that missed it ended.
            if !fresh.is_empty() {
                match read::settled(&db).await {
                    Ok(settled) => fresh.retain(|(_, horizon)| *horizon > settled),
                    Err(e) => tracing::warn!(error = %e, "reading the settled horizon failed"),
                }
                pending.extend(fresh.iter().map(|(ns, _)| ns.clone()));
            }
            unsettled = !fresh.is_empty();
            for ns in pending.drain().filter(|ns| interested.contains(ns)) {
                match read_namespace(&db, &hub, &ns, &mut cursors).await {
                    Ok(more) => unsettled |= more,
                    Err(e) => tracing::warn!(error = %e, namespace = %ns, "reading events failed"),
                }
            }
        }
    }
}

/// Reads a namespace's new settled events once and broadcasts them. Returns whether newer events
/// are waiting on an older open transaction.
async fn read_namespace(
    db: &PgPool,
    hub: &EventHub,
    ns: &str,
    cursors: &mut HashMap<String, Cursor>,
) -> Result<bool, engine::queue::Error> {
    let from = match cursors.get(ns) {
        Some(c) => *c,
        None => {
            let from = read::last_cursor(db, ns).await?;
            cursors.insert(ns.to_owned(), from);
            let _ = hub.tx.send(Message::Reread(ns.to_owned()));
            from
        }
    };
    let mut to = from;
    let mut events = Vec::new();
    loop {
        let batch = read::namespace_events(db, ns, to, read::Upto::Settled, false, BATCH).await?;
        let full = i64::try_from(batch.len()).unwrap_or(0) == BATCH;
        if let Some(last) = batch.last() {
            to = last.cursor();
        }
        events.extend(batch);
        if !full {
            break;
        }
    }
    cursors.insert(ns.to_owned(), to);
    let counts = if events.iter().any(|e| e.kind == "state") {
        Some(counts_frame(
            &read::active_counts(db, ns).await?.into_iter().collect(),
        ))
    } else {
        None
    };
    if !events.is_empty() {
        let frames: Vec<Bytes> = events.iter().map(frame).collect();
        let tenant = counts.as_ref().map(|counts| {
            let mut chunk = Vec::new();
            for (e, f) in events.iter().zip(&frames) {
                if e.kind == "state" {
                    chunk.extend_from_slice(f);
                }
            }
            chunk.extend_from_slice(counts);
            Bytes::from(chunk)
        });
        let _ = hub.tx.send(Message::Batch(Arc::new(Batch {
            ns: ns.to_owned(),
            from,
            to,
            events,
            frames,
            counts,
            tenant,
        })));
    }
    read::has_unsettled(db, ns, None, to).await
}

/// An event's SSE payload.
pub fn render(e: &Event) -> String {
    serde_json::json!({"run_id": e.run_id, "event": e.id, "data": e.data, "at": e.created_at})
        .to_string()
}

/// An event's SSE frame: its id (the stream position), kind and payload. The payload is one line
/// of JSON (serde escapes line breaks inside strings).
pub fn frame(e: &Event) -> Bytes {
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        e.cursor(),
        e.kind,
        render(e)
    ))
}

/// The tenant stream's `counts` frame: unfinished runs by status.
pub fn counts_frame(counts: &BTreeMap<String, i64>) -> Bytes {
    Bytes::from(format!(
        "event: counts\ndata: {}\n\n",
        serde_json::json!(counts)
    ))
}
