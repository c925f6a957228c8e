//! Reading runs for people and streams: filtered lists, steps, children, ordered events.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::model::RunStatus;
use crate::queue::{Result, Run};

/// Filters for [`list`]; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub kind: Option<String>,
    pub status: Option<RunStatus>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Runs whose labels contain this JSON object (e.g. `{"environment": "prod"}`).
    pub labels: Option<Value>,
    pub parent_id: Option<Uuid>,
}

/// Runs of a namespace, newest first, strictly older than `after`.
pub async fn list(
    db: impl PgExecutor<'_>,
    namespace: &str,
    filter: &RunFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Run>> {
    list_in(db, Some(namespace), filter, after, limit).await
}

/// [`list`] of one namespace, or of all of them (`None`: operators' views across tenants).
pub async fn list_in(
    db: impl PgExecutor<'_>,
    namespace: Option<&str>,
    filter: &RunFilter,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Run>> {
    // Run ids are UUIDv7, ordered by creation time: a time filter is also a range of the primary
    // key, so a list across every namespace reads only that range, not all history. The range is
    // widened by a margin (the id's clock is the enqueuing process's, `created_at` the
    // database's); `created_at` then filters exactly.
    let margin = chrono::Duration::minutes(10);
    // At the ends of chrono's range the margin would overflow: no key bound there (a time that
    // far out bounds nothing, and `created_at` still filters).
    let (low, high) = (
        filter
            .since
            .and_then(|t| t.checked_sub_signed(margin))
            .map(|t| time_bound(t, false)),
        filter
            .until
            .and_then(|t| t.checked_add_signed(margin))
            .map(|t| time_bound(t, true)),
    );
    let after = match (after, high) {
        (Some(a), Some(h)) => Some(a.min(h)),
        (a, h) => a.or(h),
    };
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {} from engine_runs where ($1::text is null or namespace = $1) and ($2::uuid is null or id < $2) \
           and ($10::uuid is null or id >= $10) \
           and ($3::text is null or kind = $3) and ($4::text is null or status = $4) \
           and ($5::timestamptz is null or created_at >= $5) and ($6::timestamptz is null or created_at < $6) \
           and ($7::jsonb is null or labels @> $7) and ($8::uuid is null or parent_id = $8) \
         order by id desc limit $9",
        crate::queue::RUN_COLUMNS
    )))
    .bind(namespace)
    .bind(after)
    .bind(&filter.kind)
    .bind(filter.status.map(RunStatus::as_str))
    .bind(filter.since)
    .bind(filter.until)
    .bind(&filter.labels)
    .bind(filter.parent_id)
    .bind(limit)
    .bind(low)
    .fetch_all(db)
    .await?)
}

/// The smallest UUIDv7 of a millisecond (or, `past`, the smallest of the next one, an exclusive
/// upper bound): every run created at or after `t` has an id at or above it.
fn time_bound(t: DateTime<Utc>, past: bool) -> Uuid {
    // A UUIDv7 holds 48 bits of milliseconds (until the year 10889): later times bound at its
    // end, earlier than 1970 at its start.
    let ms =
        (u64::try_from(t.timestamp_millis()).unwrap_or(0) + u64::from(past)).min((1 << 48) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct StepInfo {
    pub name: String,
    /// The attempt that completed it.
    pub attempt: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: DateTime<Utc>,
}

pub async fn steps(db: impl PgExecutor<'_>, run_id: Uuid) -> Result<Vec<StepInfo>> {
    Ok(sqlx::query_as(
        "select name, attempt, started_at, completed_at from engine_steps where run_id = $1 order by completed_at, name",
    )
    .bind(run_id)
    .fetch_all(db)
    .await?)
}

/// One attempt of a run, as its state changes tell it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptInfo {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    /// When it left `running` (None: still running).
    pub ended_at: Option<DateTime<Utc>>,
    /// `running`, `succeeded`, `failed`, `cancelled`; `retried` (it failed, or its worker was
    /// lost, and the run was queued again: see `error`); `parked` (the run waits for a signal,
    /// a time or its children); `released` (given back unfinished by a draining worker).
    pub outcome: String,
    pub error: Option<Value>,
}

/// A run's attempts, oldest first, from its state events.
pub async fn attempts(db: impl PgExecutor<'_>, run_id: Uuid) -> Result<Vec<AttemptInfo>> {
    let states: Vec<(Value, DateTime<Utc>)> = sqlx::query_as(
        "select data, created_at from engine_events where run_id = $1 and kind = 'state' order by tx_id, id",
    )
    .bind(run_id)
    .fetch_all(db)
    .await?;
    Ok(attempts_from(&states))
}

/// Folds a run's state changes (oldest first) into its attempts: each `running` opens one, the
/// next change closes it.
pub fn attempts_from(states: &[(Value, DateTime<Utc>)]) -> Vec<AttemptInfo> {
    let mut out: Vec<AttemptInfo> = Vec::new();
    for (data, at) in states {
        let status = data["status"].as_str().unwrap_or_default();
        if let Some(open) = out.last_mut().filter(|a| a.ended_at.is_none())
            && status != "running"
        {
            let error = data.get("error").filter(|e| !e.is_null()).cloned();
            open.outcome = match status {
                "succeeded" | "failed" | "cancelled" => status,
                _ if error.is_some() => "retried",
                "waiting" => "parked",
                _ => "released",
            }
            .to_owned();
            open.ended_at = Some(*at);
            open.error = error;
            continue;
        }
        if status == "running" {
            if let Some(open) = out.last_mut().filter(|a| a.ended_at.is_none()) {
                // Two starts in a row (an event lost to retention): the earlier one's end is unknown.
                open.outcome = "unknown".into();
            }
            out.push(AttemptInfo {
                attempt: data["attempt"]
                    .as_i64()
                    .and_then(|a| i32::try_from(a).ok())
                    .unwrap_or(0),
                started_at: *at,
                ended_at: None,
                outcome: "running".into(),
                error: None,
            });
        }
    }
    out
}

/// How many children a run has in each status.
pub async fn children(db: impl PgExecutor<'_>, run_id: Uuid) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as("select status, count(*) from engine_runs where parent_id = $1 group by status order by status")
        .bind(run_id)
        .fetch_all(db)
        .await?)
}

/// A position in an event stream: events are ordered by (transaction, id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub tx: i64,
    pub id: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.tx, self.id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (tx, id) = s.trim().split_once('-').ok_or(())?;
        let (tx, id) = (tx.parse().map_err(|_| ())?, id.parse().map_err(|_| ())?);
        if tx < 0 || id < 0 {
            return Err(());
        }
        Ok(Self { tx, id })
    }
}

/// One event of a run's ordered log.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Event {
    pub id: i64,
    pub tx_id: i64,
    pub run_id: Uuid,
    /// `state`, `progress` or `log`.
    pub kind: String,
    pub data: Value,
    pub created_at: DateTime<Utc>,
}

impl Event {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            tx: self.tx_id,
            id: self.id,
        }
    }
}

/// Events only below this horizon are final (see the migration's note on engine_events): every
/// transaction of this database with a lower id has ended, so no event can still commit below
/// it. A snapshot's own `xmin` would also wait for transactions of every other database on the
/// server (transaction ids are server-wide): a write transaction held open by another
/// application would hold every live stream back. Instead: the lowest id the statement's
/// snapshot sees running (its `xip`), leaving out only ids `pg_stat_activity` shows as the
/// current transaction of a backend connected to another database, or `pg_prepared_xacts` as a
/// transaction prepared in another database (a backend of ours, or one that has ended or moved
/// on since, stays in: when unsure, wait); without any, the snapshot's `xmax` (ids from there on
/// are invisible to the read anyway). A transaction prepared in this database holds streams back
/// until it is committed or rolled back.
const HORIZON: &str = "(select coalesce(min(x::text::bigint), pg_snapshot_xmax(pg_current_snapshot())::text::bigint) \
     from pg_snapshot_xip(pg_current_snapshot()) x \
     where not exists (select 1 from pg_stat_activity a \
                       where a.backend_xid = xid(x) and a.datname <> current_database()) \
       and not exists (select 1 from pg_prepared_xacts p \
                       where p.transaction = xid(x) and p.database <> current_database()))";

/// Where a read of events stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upto {
    /// At the settled horizon (below it, the set of events no longer changes).
    Settled,
    /// At this event, inclusive: for a stretch already known to be final (a live stream's
    /// source read past it under an earlier horizon).
    Cursor(Cursor),
}

impl Upto {
    fn condition(self) -> String {
        match self {
            Self::Settled => format!("tx_id < {HORIZON}"),
            Self::Cursor(c) => format!("(tx_id, id) <= ({}, {})", c.tx, c.id),
        }
    }
}

/// A run's events after `after`, in order, up to `upto`.
pub async fn run_events(
    db: impl PgExecutor<'_>,
    namespace: &str,
    run_id: Uuid,
    after: Cursor,
    upto: Upto,
    limit: i64,
) -> Result<Vec<Event>> {
    let upto = upto.condition();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select id, tx_id, run_id, kind, data, created_at from engine_events \
         where run_id = $1 and namespace = $2 and (tx_id, id) > ($3, $4) and {upto} \
         order by tx_id, id limit $5"
    )))
    .bind(run_id)
    .bind(namespace)
    .bind(after.tx)
    .bind(after.id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// A namespace's events after `after` (only state changes when `state_only`), in order, up to
/// `upto`.
pub async fn namespace_events(
    db: impl PgExecutor<'_>,
    namespace: &str,
    after: Cursor,
    upto: Upto,
    state_only: bool,
    limit: i64,
) -> Result<Vec<Event>> {
    let upto = upto.condition();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select id, tx_id, run_id, kind, data, created_at from engine_events \
         where namespace = $1 and (tx_id, id) > ($2, $3) and {upto} \
           and (not $4 or kind = 'state') \
         order by tx_id, id limit $5"
    )))
    .bind(namespace)
    .bind(after.tx)
    .bind(after.id)
    .bind(state_only)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Where a live stream of a namespace starts: its newest settled event.
pub async fn last_cursor(db: impl PgExecutor<'_>, namespace: &str) -> Result<Cursor> {
    let row: Option<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select tx_id, id from engine_events where namespace = $1 and tx_id < {HORIZON} \
         order by tx_id desc, id desc limit 1"
    )))
    .bind(namespace)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(tx, id)| Cursor { tx, id }).unwrap_or_default())
}

/// Unfinished runs of a namespace by status (for dashboard counters).
pub async fn active_counts(db: impl PgExecutor<'_>, namespace: &str) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "select status, count(*) from engine_runs where namespace = $1 and status in ('queued', 'running', 'waiting') \
         group by status order by status",
    )
    .bind(namespace)
    .fetch_all(db)
    .await?)
}

/// Whether events exist after `after` that are not settled yet (a transaction older than them is
/// still open): the reader should look again shortly rather than wait for the next notice.
pub async fn has_unsettled(
    db: impl PgExecutor<'_>,
    namespace: &str,
    run_id: Option<Uuid>,
    after: Cursor,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "select exists (select 1 from engine_events where namespace = $1 and ($2::uuid is null or run_id = $2) \
           and (tx_id, id) > ($3, $4))",
    )
    .bind(namespace)
    .bind(run_id)
    .bind(after.tx)
    .bind(after.id)
    .fetch_one(db)
    .await?)
}

/// Registers namespaces whose events someone streams live, for `lease`: only these namespaces'
/// events send `NOTIFY engine_events` (a notifying commit holds PostgreSQL's notification lock
/// until it is flushed, so commits nobody listens to should not). Renew well before the lease
/// runs out while the namespaces still have subscribers; lapsed registrations cost nothing.
pub async fn watch(
    db: impl PgExecutor<'_>,
    namespaces: &[String],
    lease: std::time::Duration,
) -> Result<()> {
    sqlx::query(
        "insert into engine_watched_namespaces (namespace, until) \
         select ns, now() + make_interval(secs => $2) from unnest($1::text[]) ns \
         on conflict (namespace) do update \
         set until = greatest(engine_watched_namespaces.until, excluded.until)",
    )
    .bind(namespaces)
    .bind(lease.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

/// Called after a namespace's first registration (`watch`) committed: a transaction id every
/// transaction that may have missed it is below. One whose event trigger looked just before the
/// registration committed did not notify, and commits whenever it commits; a reader that reads
/// the namespace again until `settled` passes this id (and once after) has read all of them.
/// (An id assigned now is above every id assigned before; a snapshot's xmax is not: it can equal
/// the id of a transaction still running.)
pub async fn registered_below(db: impl PgExecutor<'_>) -> Result<i64> {
    Ok(
        sqlx::query_scalar("select pg_current_xact_id()::text::bigint")
            .fetch_one(db)
            .await?,
    )
}

/// The settled horizon now: every transaction of this database with a lower id has ended, and a
/// read of events from here on sees all they committed.
/// The first transaction id this server has not assigned yet: no event's position can be at or
/// above it (a position that is comes from another server: a database restored elsewhere).
pub async fn unassigned(db: impl PgExecutor<'_>) -> Result<i64> {
    Ok(
        sqlx::query_scalar("select pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            .fetch_one(db)
            .await?,
    )
}

pub async fn settled(db: impl PgExecutor<'_>) -> Result<i64> {
    Ok(
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select {HORIZON}")))
            .fetch_one(db)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    #[test]
    fn state_changes_fold_into_attempts_with_their_outcomes() {
        let lost = json!({"message": "the worker running this attempt was lost"});
        let busy = json!({"message": "busy"});
        let states = [
            (json!({"status": "queued", "attempt": 0}), at(0)),
            (json!({"status": "running", "attempt": 1}), at(1)),
            (
                json!({"status": "queued", "attempt": 1, "error": lost}),
                at(2),
            ),
            (json!({"status": "running", "attempt": 2}), at(3)),
            (
                json!({"status": "waiting", "attempt": 2, "error": busy}),
                at(4),
            ),
            (
                json!({"status": "queued", "attempt": 2, "error": busy}),
                at(5),
            ),
            (json!({"status": "running", "attempt": 3}), at(6)),
            (
                json!({"status": "waiting", "attempt": 3, "wait_signal": "approval"}),
                at(7),
            ),
            (json!({"status": "queued", "attempt": 3}), at(8)),
            (json!({"status": "running", "attempt": 4}), at(9)),
            (json!({"status": "queued", "attempt": 4}), at(10)),
            (json!({"status": "running", "attempt": 5}), at(11)),
            (json!({"status": "succeeded", "attempt": 5}), at(12)),
        ];
        let attempts = attempts_from(&states);
        let got: Vec<(i32, &str, Option<i64>)> = attempts
            .iter()
            .map(|a| {
                (
                    a.attempt,
                    a.outcome.as_str(),
                    a.ended_at.map(|t| t.timestamp() - 1_700_000_000),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, "retried", Some(2)),
                (2, "retried", Some(4)),
                (3, "parked", Some(7)),
                (4, "released", Some(10)),
                (5, "succeeded", Some(12)),
            ]
        );
        assert_eq!(attempts[0].error, Some(lost));
        assert_eq!(attempts[4].error, None);
        let running = attempts_from(&states[..4]);
        assert_eq!(
            (
                running.len(),
                running[1].outcome.as_str(),
                running[1].ended_at
            ),
            (2, "running", None)
        );
    }
}
