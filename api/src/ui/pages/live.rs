//! The run a page follows live (its `#live` element, see `watch()` in `app.js`). The page
//! refreshes the parts a run changes (`[data-refresh]`) when the run ends, or parks waiting
//! (a promotion's approval) — but only if the run was still going when the page was rendered:
//! a finished run's stream replays its history and ends at once, and a page that refreshed on
//! that would refresh forever.

use uuid::Uuid;

/// A run as a page follows it.
pub struct LiveRun {
    pub id: Uuid,
    /// Not finished when the page was rendered.
    pub going: bool,
    /// The cursor (`tx-id`) of its last event when the page was rendered: a state change after
    /// it is news; one before it is history the stream replays.
    pub since: String,
}

impl LiveRun {
    /// The `#live` element's attributes: the run to follow, and whether to refresh.
    pub fn attrs(&self) -> String {
        if self.going {
            format!(
                "data-run=\"{}\" data-refresh-on-end data-since=\"{}\"",
                self.id, self.since
            )
        } else {
            format!("data-run=\"{}\"", self.id)
        }
    }
}

/// The cursor (`tx-id`) of the run's last event so far ("" before its first). A page reads it
/// *before* what it shows of the run: a change in between then counts as news (one refresh too
/// many at worst), never as history (a refresh missed).
pub async fn last_event(
    db: impl sqlx::PgExecutor<'_>,
    namespace: &str,
    run_id: Uuid,
) -> Result<String, sqlx::Error> {
    let cursor: Option<String> = sqlx::query_scalar(
        "select tx_id::text || '-' || id::text from engine_events \
         where run_id = $1 and namespace = $2 order by tx_id desc, id desc limit 1",
    )
    .bind(run_id)
    .bind(namespace)
    .fetch_optional(db)
    .await?;
    Ok(cursor.unwrap_or_default())
}

impl LiveRun {
    /// The run `id` whose status, as the page shows it, is `status`; `since` from [`last_event`].
    pub fn new(id: Uuid, status: &str, since: String) -> Self {
        Self {
            id,
            going: !status
                .parse::<engine::RunStatus>()
                .is_ok_and(engine::RunStatus::is_terminal),
            since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_run_still_going_asks_the_page_to_refresh() {
        let id = Uuid::nil();
        let going = LiveRun::new(id, "waiting", "12-3".into());
        assert!(going.attrs().contains("data-refresh-on-end"));
        assert!(going.attrs().contains("data-since=\"12-3\""));
        let done = LiveRun::new(id, "succeeded", "12-3".into());
        assert_eq!(done.attrs(), format!("data-run=\"{id}\""));
    }
}
