//! Cron schedules: stored (expression, timezone, kind, input, enabled), fired by every worker's
//! housekeeping loop, exactly once per tick.
//!
//! Missed ticks (all workers down over a tick) follow the schedule's policy: `fire_once` fires a
//! single run for the latest missed tick; `skip` fires nothing until the next tick. A tick is
//! "missed" when it is more than [`GRACE`] old by the time a scheduler sees it.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{FromRow, PgExecutor, PgPool};
use uuid::Uuid;

use crate::job::Registry;
use crate::queue::{self, NewRun};

/// How late a tick may be seen and still count as on time.
pub const GRACE: Duration = Duration::seconds(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    FireOnce,
    Skip,
}

impl Missed {
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::FireOnce => "fire_once",
            Missed::Skip => "skip",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a cron expression: {1}")]
    BadCron(String, String),
    #[error("`{0}` is not a time zone (use an IANA name such as Europe/Berlin)")]
    BadTimezone(String),
    #[error("the cron expression `{0}` never fires")]
    NeverFires(String),
    #[error("schedule not found")]
    NotFound,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("queue: {0}")]
    Queue(#[from] queue::Error),
}

/// A parsed, validated cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: Cron,
    tz: Tz,
}

impl Timetable {
    pub fn new(expression: &str, timezone: &str) -> Result<Self, Error> {
        let cron = Cron::from_str(expression)
            .map_err(|e| Error::BadCron(expression.to_owned(), e.to_string()))?;
        let tz = Tz::from_str(timezone).map_err(|_| Error::BadTimezone(timezone.to_owned()))?;
        let table = Self { cron, tz };
        table.next_after(Utc::now())?;
        Ok(table)
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| Error::NeverFires(self.cron.as_str().to_owned()))
    }

    /// The latest tick at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

/// What a scheduler does with a due schedule: which tick to fire (if any) and the next due time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub fire: Option<DateTime<Utc>>,
    pub next: DateTime<Utc>,
}

/// Plans a due schedule (pure).
pub fn plan(
    table: &Timetable,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    missed: Missed,
) -> Result<Plan, Error> {
    let next = table.next_after(now)?;
    if due > now {
        return Ok(Plan {
            fire: None,
            next: due,
        });
    }
    let latest = table.latest_at_or_before(now).unwrap_or(due).max(due);
    let on_time = now - latest <= GRACE;
    let fire = match missed {
        _ if on_time => Some(latest),
        Missed::FireOnce => Some(latest),
        Missed::Skip => None,
    };
    Ok(Plan { fire, next })
}

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Schedule {
    pub id: Uuid,
    pub namespace: String,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub kind: String,
    pub input: Value,
    pub enabled: bool,
    pub missed: String,
    pub next_fire_at: DateTime<Utc>,
    pub last_fired_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, namespace, name, cron, timezone, kind, input, enabled, missed, next_fire_at, last_fired_at";

pub struct NewSchedule<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub cron: &'a str,
    pub timezone: &'a str,
    pub kind: &'a str,
    pub input: Value,
    pub enabled: bool,
    pub missed: Missed,
}

/// Creates or replaces the schedule `name` of a namespace. A schedule that stays enabled with the
/// same timetable (cron and timezone) keeps its next tick, so replacing it on every start of a
/// process (as `serve` does with its own schedules) never loses a tick missed while nothing ran:
/// the missed-tick policy handles it. Otherwise the next tick is computed afresh from now.
pub async fn upsert(db: impl PgExecutor<'_>, new: NewSchedule<'_>) -> Result<Schedule, Error> {
    let next = Timetable::new(new.cron, new.timezone)?.next_after(Utc::now())?;
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into engine_schedules (id, namespace, name, cron, timezone, kind, input, enabled, missed, next_fire_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         on conflict (namespace, name) do update set cron = excluded.cron, timezone = excluded.timezone, \
           kind = excluded.kind, input = excluded.input, enabled = excluded.enabled, missed = excluded.missed, \
           next_fire_at = case when engine_schedules.enabled and excluded.enabled \
                                and engine_schedules.cron = excluded.cron \
                                and engine_schedules.timezone = excluded.timezone \
                               then engine_schedules.next_fire_at else excluded.next_fire_at end, \
           updated_at = now() \
         returning {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(new.namespace)
    .bind(new.name)
    .bind(new.cron)
    .bind(new.timezone)
    .bind(new.kind)
    .bind(&new.input)
    .bind(new.enabled)
    .bind(new.missed.as_str())
    .bind(next)
    .fetch_one(db)
    .await?)
}

pub async fn list(db: impl PgExecutor<'_>, namespace: &str) -> Result<Vec<Schedule>, Error> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from engine_schedules where namespace = $1 order by name"
    )))
    .bind(namespace)
    .fetch_all(db)
    .await?)
}

pub async fn delete(db: impl PgExecutor<'_>, namespace: &str, name: &str) -> Result<(), Error> {
    let done = sqlx::query("delete from engine_schedules where namespace = $1 and name = $2")
        .bind(namespace)
        .bind(name)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// Fires every due schedule once (up to `limit` per call). Safe to call from any number of
/// processes at once. Returns how many runs were enqueued. Runs get the attempts of their kind's
/// retry policy in `registry` (the default policy's for kinds it does not know).
pub async fn fire_due(pool: &PgPool, limit: i64, registry: &Registry) -> Result<usize, Error> {
    let mut tx = pool.begin().await?;
    let due: Vec<Schedule> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from engine_schedules where enabled and next_fire_at <= now() \
         order by next_fire_at limit $1 for update skip locked"
    )))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let now = Utc::now();
    let mut fired = 0;
    for s in due {
        let missed = if s.missed == "skip" {
            Missed::Skip
        } else {
            Missed::FireOnce
        };
        let planned = Timetable::new(&s.cron, &s.timezone)
            .and_then(|t| plan(&t, s.next_fire_at, now, missed));
        let Ok(p) = planned else {
            // An expression that no longer parses (or never fires again) disables its schedule.
            tracing::warn!(schedule = %s.name, namespace = %s.namespace, "disabling a schedule that cannot fire");
            sqlx::query(
                "update engine_schedules set enabled = false, updated_at = now() where id = $1",
            )
            .bind(s.id)
            .execute(&mut *tx)
            .await?;
            continue;
        };
        if let Some(tick) = p.fire {
            let run = NewRun::new(&s.namespace, &s.kind, s.input.clone())
                .idempotency_key(format!("schedule:{}:{}", s.id, tick.to_rfc3339()))
                .labels(json!({"schedule": s.name}))
                .created_by(format!("schedule:{}", s.name))
                .max_attempts(
                    i32::try_from(registry.policy(&s.kind).max_attempts).unwrap_or(i32::MAX),
                );
            if queue::enqueue(&mut tx, &run).await?.created {
                fired += 1;
            }
        }
        sqlx::query(
            "update engine_schedules set next_fire_at = $2, last_fired_at = coalesce($3, last_fired_at), updated_at = now() where id = $1",
        )
        .bind(s.id)
        .bind(p.next)
        .bind(p.fire)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(fired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, s)
            .single()
            .unwrap_or_default()
    }

    fn table(expr: &str) -> Timetable {
        Timetable::new(expr, "UTC").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_on_time_tick_fires_itself_and_schedules_the_next() {
        let p = plan(
            &table("*/5 * * * *"),
            at(10, 5, 0),
            at(10, 5, 2),
            Missed::Skip,
        )
        .ok();
        assert_eq!(
            p,
            Some(Plan {
                fire: Some(at(10, 5, 0)),
                next: at(10, 10, 0)
            })
        );
    }

    #[test]
    fn missed_ticks_fire_once_for_the_latest_or_are_skipped() {
        let t = table("*/5 * * * *");
        let once = plan(&t, at(8, 0, 0), at(10, 7, 0), Missed::FireOnce).ok();
        assert_eq!(
            once,
            Some(Plan {
                fire: Some(at(10, 5, 0)),
                next: at(10, 10, 0)
            })
        );
        let skip = plan(&t, at(8, 0, 0), at(10, 7, 0), Missed::Skip).ok();
        assert_eq!(
            skip,
            Some(Plan {
                fire: None,
                next: at(10, 10, 0)
            })
        );
    }

    #[test]
    fn a_schedule_not_yet_due_waits() {
        let p = plan(
            &table("0 * * * *"),
            at(11, 0, 0),
            at(10, 30, 0),
            Missed::FireOnce,
        )
        .ok();
        assert_eq!(
            p,
            Some(Plan {
                fire: None,
                next: at(11, 0, 0)
            })
        );
    }

    #[test]
    fn time_zones_shift_the_ticks() {
        let berlin = Timetable::new("0 9 * * *", "Europe/Berlin").unwrap_or_else(|e| panic!("{e}"));
        // 09:00 in Berlin on 1 March (CET, UTC+1) is 08:00 UTC.
        assert_eq!(berlin.next_after(at(7, 0, 0)).ok(), Some(at(8, 0, 0)));
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_with_a_reason() {
        assert!(matches!(
            Timetable::new("every day", "UTC"),
            Err(Error::BadCron(..))
        ));
        assert!(matches!(
            Timetable::new("* * * * *", "Mars/Olympus"),
            Err(Error::BadTimezone(_))
        ));
    }
}
