//! Sign-in throttling: failed password checks are counted in a sliding window under three keys
//! — the account from one client address, the client address, the account from anywhere — and
//! past a key's threshold every further failure locks that key for a growing time (30 s, 1 min,
//! 2 min, … at most 15 min). A locked attempt is refused before its password is checked, so a
//! guesser costs neither an argon2 hash nor an audit row. A success clears the account's keys
//! (not the address's: one good password does not buy an address more guesses at others).
//!
//! The thresholds are set so that one person mistyping is slowed only after five tries, an
//! office behind one address is not locked out by a few of them, and a guesser spreading tries
//! over many addresses still meets the account's own limit.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgExecutor;

use crate::error::Result;

/// Failures counted together: a key's count starts again once its window is this old.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
const FIRST_LOCK_SECS: u64 = 30;
const MAX_LOCK_SECS: u64 = 15 * 60;

/// Failures within the window before a key locks.
const PER_ACCOUNT_AND_ADDRESS: u32 = 5;
const PER_ADDRESS: u32 = 100;
const PER_ACCOUNT: u32 = 50;

/// The keys an attempt counts under, with their thresholds.
fn keys(email: &str, ip: Option<&str>) -> [(String, u32); 3] {
    let email: String = email.trim().to_lowercase().chars().take(320).collect();
    let ip = ip.unwrap_or("unknown");
    [
        (format!("pair:{email}|{ip}"), PER_ACCOUNT_AND_ADDRESS),
        (format!("addr:{ip}"), PER_ADDRESS),
        (format!("acct:{email}"), PER_ACCOUNT),
    ]
}

/// How long a key that has failed `failures` times is locked after its latest failure.
pub fn lock_for(failures: u32, threshold: u32) -> Option<Duration> {
    let over = failures.checked_sub(threshold)?;
    let secs = FIRST_LOCK_SECS.saturating_mul(1u64 << over.min(16));
    Some(Duration::from_secs(secs.min(MAX_LOCK_SECS)))
}

/// How long the attempt must still wait, if any of its keys is locked.
pub async fn locked(
    db: impl PgExecutor<'_>,
    email: &str,
    ip: Option<&str>,
) -> Result<Option<Duration>> {
    let keys: Vec<String> = keys(email, ip).into_iter().map(|(k, _)| k).collect();
    let until: Option<chrono::DateTime<Utc>> = sqlx::query_scalar(
        "select max(locked_until) from login_throttle where key = any($1) and locked_until > now()",
    )
    .bind(&keys)
    .fetch_one(db)
    .await?;
    Ok(until.map(|u| {
        (u - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(1))
    }))
}

/// Counts a failed attempt under each of its keys, locking those past their threshold.
pub async fn failed(db: &mut sqlx::PgConnection, email: &str, ip: Option<&str>) -> Result<()> {
    let keys = keys(email, ip);
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let window = chrono::Duration::from_std(WINDOW).unwrap_or_default();
    let counted: Vec<(String, i32)> = sqlx::query_as(
        "insert into login_throttle as t (key, failures, window_start) \
         select k, 1, now() from unnest($1::text[]) k \
         on conflict (key) do update set \
             failures = case when t.window_start < now() - $2 then 1 else t.failures + 1 end, \
             window_start = case when t.window_start < now() - $2 then now() else t.window_start end \
         returning key, failures",
    )
    .bind(&names)
    .bind(window)
    .fetch_all(&mut *db)
    .await?;
    for (key, failures) in counted {
        let threshold = keys
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(u32::MAX, |(_, t)| *t);
        if let Some(lock) = lock_for(u32::try_from(failures).unwrap_or(0), threshold) {
            sqlx::query("update login_throttle set locked_until = now() + $2 where key = $1")
                .bind(&key)
                .bind(chrono::Duration::from_std(lock).unwrap_or_default())
                .execute(&mut *db)
                .await?;
        }
    }
    Ok(())
}

/// A successful sign-in clears the account's keys.
pub async fn succeeded(db: impl PgExecutor<'_>, email: &str, ip: Option<&str>) -> Result<()> {
    let [(pair, _), _, (account, _)] = keys(email, ip);
    sqlx::query("delete from login_throttle where key = $1 or key = $2")
        .bind(pair)
        .bind(account)
        .execute(db)
        .await?;
    Ok(())
}

/// Forgets keys whose window has passed and that are not locked.
pub async fn prune(db: impl PgExecutor<'_>) -> Result<u64> {
    Ok(sqlx::query(
        "delete from login_throttle where window_start < now() - $1 \
         and (locked_until is null or locked_until < now())",
    )
    .bind(chrono::Duration::from_std(WINDOW).unwrap_or_default())
    .execute(db)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_start_at_the_threshold_double_and_stop_at_fifteen_minutes() {
        assert_eq!(lock_for(4, 5), None);
        assert_eq!(lock_for(5, 5), Some(Duration::from_secs(30)));
        assert_eq!(lock_for(6, 5), Some(Duration::from_secs(60)));
        assert_eq!(lock_for(9, 5), Some(Duration::from_secs(480)));
        assert_eq!(lock_for(10, 5), Some(Duration::from_secs(900)));
        assert_eq!(lock_for(u32::MAX, 5), Some(Duration::from_secs(900)));
    }

    #[test]
    fn an_account_is_one_key_however_its_email_is_typed() {
        let a = keys(" Admin@Example.COM ", Some("10.0.0.1"));
        let b = keys("admin@example.com", Some("10.0.0.1"));
        assert_eq!(a, b);
        assert_eq!(a[1].0, "addr:10.0.0.1");
        assert_ne!(keys("a@x", None)[0], keys("a@x", Some("10.0.0.1"))[0]);
    }
}
