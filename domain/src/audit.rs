//! The audit trail (SEC-004..010): who did what to which object, from where, with old and new
//! values (secrets redacted). Written in the same transaction as the change it records.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::error::Result;
use crate::ids::new_id;
use crate::page::{Page, PageRequest};

/// Who acted: a user (possibly impersonated by a platform admin) or an API key.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    /// Email or key prefix, kept verbatim so the trail outlives the actor.
    pub label: String,
    pub impersonator_user_id: Option<Uuid>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    /// The command line, for changes made with the `workflowops` admin subcommands.
    pub fn cli() -> Self {
        Self {
            label: "cli".into(),
            ..Self::default()
        }
    }

    /// The product itself, for changes its scheduled work makes (an override lapsing).
    pub fn system() -> Self {
        Self {
            label: "system".into(),
            ..Self::default()
        }
    }
}

/// One audited change. Build with [`Entry::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub tenant_id: Option<Uuid>,
    pub actor: &'a Actor,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Option<String>,
    pub provider: Option<&'a str>,
    pub old_value: Option<Value>,
    pub new_value: Option<Value>,
}

impl<'a> Entry<'a> {
    pub fn new(
        tenant_id: Option<Uuid>,
        actor: &'a Actor,
        action: &'a str,
        target_type: &'a str,
    ) -> Self {
        Self {
            tenant_id,
            actor,
            action,
            target_type,
            target_id: None,
            provider: None,
            old_value: None,
            new_value: None,
        }
    }

    pub fn target(mut self, id: impl std::fmt::Display) -> Self {
        self.target_id = Some(id.to_string());
        self
    }

    pub fn provider(mut self, provider: &'a str) -> Self {
        self.provider = Some(provider);
        self
    }

    pub fn old(mut self, value: &impl Serialize) -> Self {
        self.old_value = serde_json::to_value(value).ok().map(redact);
        self
    }

    pub fn new_value(mut self, value: &impl Serialize) -> Self {
        self.new_value = serde_json::to_value(value).ok().map(redact);
        self
    }

    pub async fn record(self, db: impl PgExecutor<'_>) -> Result<()> {
        sqlx::query(
            "insert into audit_logs (id, tenant_id, actor_user_id, actor_api_key_id, actor_label, \
             impersonator_user_id, ip, request_id, action, target_type, target_id, provider, old_value, new_value) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(new_id())
        .bind(self.tenant_id)
        .bind(self.actor.user_id)
        .bind(self.actor.api_key_id)
        .bind(&self.actor.label)
        .bind(self.actor.impersonator_user_id)
        .bind(self.actor.ip.as_deref())
        .bind(self.actor.request_id.as_deref())
        .bind(self.action)
        .bind(self.target_type)
        .bind(self.target_id)
        .bind(self.provider)
        .bind(self.old_value)
        .bind(self.new_value)
        .execute(db)
        .await?;
        Ok(())
    }
}

/// An entry taken at the moment of the call it records and written later, together with others,
/// by [`record_batch`]: for calls that change nothing (reads), so the caller never waits for the
/// insert. Its id and time are the call's, not the write's.
#[derive(Debug, Clone)]
pub struct Captured {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub tenant_id: Option<Uuid>,
    pub actor: Actor,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub new_value: Option<Value>,
}

impl Entry<'_> {
    /// This entry as of now, to be written by [`record_batch`]. Only for reads: old values and
    /// provider are not kept (a read has neither).
    pub fn capture(self) -> Captured {
        debug_assert!(
            self.old_value.is_none() && self.provider.is_none(),
            "a captured entry keeps neither old values nor a provider"
        );
        Captured {
            id: new_id(),
            occurred_at: Utc::now(),
            tenant_id: self.tenant_id,
            actor: self.actor.clone(),
            action: self.action.to_owned(),
            target_type: self.target_type.to_owned(),
            target_id: self.target_id,
            new_value: self.new_value,
        }
    }
}

/// Writes captured entries in one statement. Idempotent: an entry already written (a retry
/// after a lost acknowledgement) is left as it is.
pub async fn record_batch(db: impl PgExecutor<'_>, entries: &[Captured]) -> Result<()> {
    fn column<'e, T>(entries: &'e [Captured], f: impl Fn(&'e Captured) -> T) -> Vec<T> {
        entries.iter().map(f).collect()
    }
    sqlx::query(
        "insert into audit_logs (id, occurred_at, tenant_id, actor_user_id, actor_api_key_id, actor_label, \
         impersonator_user_id, ip, request_id, action, target_type, target_id, new_value) \
         select * from unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], \
                              $7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::jsonb[]) \
         on conflict (id) do nothing",
    )
    .bind(column(entries, |e| e.id))
    .bind(column(entries, |e| e.occurred_at))
    .bind(column(entries, |e| e.tenant_id))
    .bind(column(entries, |e| e.actor.user_id))
    .bind(column(entries, |e| e.actor.api_key_id))
    .bind(column(entries, |e| e.actor.label.as_str()))
    .bind(column(entries, |e| e.actor.impersonator_user_id))
    .bind(column(entries, |e| e.actor.ip.as_deref()))
    .bind(column(entries, |e| e.actor.request_id.as_deref()))
    .bind(column(entries, |e| e.action.as_str()))
    .bind(column(entries, |e| e.target_type.as_str()))
    .bind(column(entries, |e| e.target_id.as_deref()))
    .bind(column(entries, |e| e.new_value.as_ref().map(sqlx::types::Json)))
    .execute(db)
    .await?;
    Ok(())
}

/// The actions of audited reads (the runs API): kept for a retention period and pruned, while
/// changes are kept. Must match the predicate of the `audit_logs_reads` index (migration 0027).
pub const READ_ACTIONS: [&str; 4] = [
    "run.listed",
    "run.viewed",
    "run.events_opened",
    "run.feed_opened",
];

/// Deletes audited reads older than `keep`, a bounded batch per statement (no long lock, no
/// huge transaction); returns how many went.
pub async fn prune_reads(db: &sqlx::PgPool, keep: std::time::Duration) -> Result<u64> {
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let before = Utc::now()
        .checked_sub_signed(keep)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "delete from audit_logs where id in (select id from audit_logs \
             where action in ('run.listed', 'run.viewed', 'run.events_opened', 'run.feed_opened') \
               and occurred_at < $1 limit 10000)",
        )
        .bind(before)
        .execute(db)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < 10_000 {
            return Ok(total);
        }
    }
}

/// Keys whose values never enter the audit trail.
const SECRET_KEYS: [&str; 9] = [
    "password",
    "password_hash",
    "secret",
    "token",
    "api_key",
    "apikey",
    "secret_hash",
    "token_hash",
    "authorization",
];

/// Replaces the values of secret-looking keys, at any depth, with `"[redacted]"`.
pub fn redact(mut value: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    let key = k.to_ascii_lowercase();
                    if SECRET_KEYS
                        .iter()
                        .any(|s| key == *s || key.ends_with(&format!("_{s}")))
                    {
                        *child = Value::String("[redacted]".into());
                    } else {
                        walk(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Record {
    pub id: Uuid,
    /// Null for platform-level entries (platform admins, tenants created).
    pub tenant_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub actor_user_id: Option<Uuid>,
    pub actor_api_key_id: Option<Uuid>,
    pub actor_label: String,
    pub impersonator_user_id: Option<Uuid>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub provider: Option<String>,
    pub old_value: Option<Value>,
    pub new_value: Option<Value>,
}

/// Filters for the audit log query (SEC-010); every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub action: Option<String>,
    pub action_prefix: Option<String>,
    pub actor_user_id: Option<Uuid>,
    pub actor_api_key_id: Option<Uuid>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub provider: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub search: Option<String>,
}

/// A tenant's audit trail (SEC-010).
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page<Record>> {
    list_in(db, "tenant_id = $1", Some(tenant_id), filter, page).await
}

/// Every tenant's trail and the platform's own entries, or one tenant's (ADMIN-012): for
/// platform admins.
pub async fn list_platform(
    db: impl PgExecutor<'_>,
    tenant_id: Option<Uuid>,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page<Record>> {
    list_in(
        db,
        "($1::uuid is null or tenant_id = $1)",
        tenant_id,
        filter,
        page,
    )
    .await
}

async fn list_in(
    db: impl PgExecutor<'_>,
    scope: &'static str,
    tenant_id: Option<Uuid>,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page<Record>> {
    let prefix = filter
        .action_prefix
        .as_deref()
        .map(|p| format!("{}%", crate::tenancy::escape_like(p)));
    let search = filter
        .search
        .as_deref()
        .map(|s| format!("%{}%", crate::tenancy::escape_like(s)));
    let rows = sqlx::query_as(sqlf!(
        "select id, tenant_id, occurred_at, actor_user_id, actor_api_key_id, actor_label, impersonator_user_id, ip, \
                request_id, action, target_type, target_id, provider, old_value, new_value \
         from audit_logs where {scope} and ($2::uuid is null or id < $2) \
           and ($3::text is null or action = $3) and ($4::text is null or action like $4) \
           and ($5::uuid is null or actor_user_id = $5) and ($6::uuid is null or actor_api_key_id = $6) \
           and ($7::text is null or target_type = $7) and ($8::text is null or target_id = $8) \
           and ($9::text is null or provider = $9) \
           and ($10::timestamptz is null or occurred_at >= $10) and ($11::timestamptz is null or occurred_at < $11) \
           and ($12::text is null or actor_label ilike $12 or action ilike $12 or target_id ilike $12) \
         order by id desc limit $13"
    ))
    .bind(tenant_id)
    .bind(page.after)
    .bind(filter.action.as_deref())
    .bind(prefix)
    .bind(filter.actor_user_id)
    .bind(filter.actor_api_key_id)
    .bind(filter.target_type.as_deref())
    .bind(filter.target_id.as_deref())
    .bind(filter.provider.as_deref())
    .bind(filter.since)
    .bind(filter.until)
    .bind(search)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |r: &Record| r.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // SEC-007: old/new values never carry secrets.
    #[test]
    fn redacts_secret_keys_at_any_depth() {
        let v = redact(json!({
            "name": "prod",
            "api_key": "n8n-secret",
            "nested": {"git_token": "ghp_x", "list": [{"password": "p"}], "tokenizer": "kept"}
        }));
        assert_eq!(v["name"], "prod");
        assert_eq!(v["api_key"], "[redacted]");
        assert_eq!(v["nested"]["git_token"], "[redacted]");
        assert_eq!(v["nested"]["list"][0]["password"], "[redacted]");
        assert_eq!(v["nested"]["tokenizer"], "kept");
    }
}
