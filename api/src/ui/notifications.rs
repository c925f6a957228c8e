//! The notifications page (PRD 3.15): the tenant's channels, rules and recent alerts with what
//! became of each delivery. Every member reads (as the API's `ViewObservability`); admins
//! (`ManageNotifications`) get the controls, which act through the JSON API like every page's.
//! A plan without alerting gets the upgrade notice instead of the forms and channel tests,
//! which the API would refuse (ENT-005).

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use domain::Permission;
use domain::entitlements::Feature;
use domain::environments::{self, Environment};
use domain::notifications::{self as notif, AlertEvent, CatalogEntry, Channel, ChannelKind, Rule};
use domain::page::MAX_LIMIT;
use serde_json::Value;
use uuid::Uuid;

use super::{Nav, Viewer, page_of, render};
use crate::app::AppState;

/// How many of the newest alerts the page shows.
const RECENT_ALERTS: u32 = 50;

/// A channel as the page shows it: where it delivers, never its URL.
struct ChannelRow {
    id: Uuid,
    name: String,
    kind: &'static str,
    /// Email: its recipients; Slack and webhooks: the URL's host.
    target: String,
    enabled: bool,
    /// `ok`, `error` or `never`: the last connectivity test, as a status class.
    test_class: &'static str,
    /// "ok", the peer's error, or "never".
    test_text: String,
    tested_at: String,
}

impl ChannelRow {
    fn of(c: Channel) -> Self {
        let target = match c.kind {
            ChannelKind::Email => c
                .config
                .get("recipients")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
                .unwrap_or_default()
                .join(", "),
            ChannelKind::Slack | ChannelKind::Webhook => {
                let host = c
                    .config
                    .get("target")
                    .and_then(Value::as_str)
                    .unwrap_or("—");
                if c.config.get("signed").and_then(Value::as_bool) == Some(true) {
                    format!("{host} (signed)")
                } else {
                    host.to_owned()
                }
            }
        };
        let (test_class, test_text) = match (c.last_tested_at, c.last_test_ok) {
            (None, _) => ("never", "never".to_owned()),
            (Some(_), Some(true)) => ("ok", "ok".to_owned()),
            (Some(_), _) => (
                "error",
                c.last_test_error.unwrap_or_else(|| "failed".to_owned()),
            ),
        };
        Self {
            id: c.id,
            kind: c.kind.as_str(),
            target,
            enabled: c.enabled,
            test_class,
            test_text,
            tested_at: c
                .last_tested_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default(),
            name: c.name,
        }
    }
}

struct RuleRow {
    id: Uuid,
    event_type: &'static str,
    description: &'static str,
    /// The names of its channels (deleted channels leave a rule's list).
    channels: Vec<String>,
    /// The environment's name, or "all".
    environment: String,
    enabled: bool,
}

struct DeliveryRow {
    channel: String,
    status: &'static str,
    error: Option<String>,
    attempts: i32,
}

struct AlertRow {
    time: String,
    event_type: &'static str,
    title: String,
    run_id: Option<Uuid>,
    deliveries: Vec<DeliveryRow>,
}

/// Names by id, for the rows that refer to channels and environments.
struct Names {
    channels: HashMap<Uuid, String>,
    environments: HashMap<Uuid, String>,
}

impl Names {
    fn channel(&self, id: Uuid) -> String {
        self.channels
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "a deleted channel".to_owned())
    }

    fn rule(&self, r: &Rule, catalog: &[CatalogEntry]) -> RuleRow {
        RuleRow {
            id: r.id,
            event_type: r.event_type.as_str(),
            description: catalog
                .iter()
                .find(|e| e.event_type == r.event_type)
                .map_or("", |e| e.description),
            channels: r.channel_ids.iter().map(|&c| self.channel(c)).collect(),
            environment: r.environment_id.map_or_else(
                || "all".to_owned(),
                |e| {
                    self.environments
                        .get(&e)
                        .cloned()
                        .unwrap_or_else(|| "a deleted environment".to_owned())
                },
            ),
            enabled: r.enabled,
        }
    }

    fn alert(&self, a: AlertEvent) -> AlertRow {
        AlertRow {
            time: a.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            event_type: a.event_type.as_str(),
            title: a.title,
            run_id: a.run_id,
            deliveries: a
                .deliveries
                .into_iter()
                .map(|d| DeliveryRow {
                    channel: self.channel(d.channel_id),
                    status: d.status.as_str(),
                    error: d.error,
                    attempts: d.attempts,
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    nav: Nav,
    allowed: bool,
    /// Shows the controls: toggles, tests, deletes and the forms.
    admin: bool,
    channels: Vec<ChannelRow>,
    /// More channels exist than the page lists.
    more_channels: bool,
    rules: Vec<RuleRow>,
    alerts: Vec<AlertRow>,
    /// The catalog by category, in catalog order, for the rule form.
    catalog: Vec<(&'static str, Vec<CatalogEntry>)>,
    environments: Vec<Environment>,
    /// The tenant's plan leaves alerting out: no new channels, rules or tests.
    upgrade: Option<super::billing::Upgrade>,
}

impl NotificationsPage {
    /// Shows what the plan must include: adding channels and rules, sending tests.
    fn can_alert(&self) -> bool {
        self.admin && self.upgrade.is_none()
    }
}

/// Channels, rules and the newest alerts, read like the API reads them.
pub async fn notifications(State(state): State<AppState>, v: Viewer) -> Response {
    let nav = v.nav("notifications");
    let admin = nav.can(Permission::ManageNotifications);
    if !nav.can(Permission::ViewObservability) {
        return render(&NotificationsPage {
            nav,
            allowed: false,
            admin,
            channels: Vec::new(),
            more_channels: false,
            rules: Vec::new(),
            alerts: Vec::new(),
            catalog: Vec::new(),
            environments: Vec::new(),
            upgrade: None,
        });
    }
    let loaded: Result<_, domain::Error> = async {
        let mut conn = state.db.acquire().await?;
        let ent = domain::entitlements::entitlements(&mut conn, v.tenant_id).await?;
        drop(conn);
        Ok((
            notif::list_channels(&state.db, v.tenant_id, page_of(None, MAX_LIMIT)).await?,
            notif::list_rules(&state.db, v.tenant_id, None, page_of(None, MAX_LIMIT)).await?,
            notif::list_alerts(&state.db, v.tenant_id, None, page_of(None, RECENT_ALERTS)).await?,
            environments::list(&state.db, v.tenant_id).await?,
            super::billing::upgrade(&state.db, &ent, Feature::Alerting).await?,
        ))
    }
    .await;
    let (channels, rules, alerts, environments, upgrade) = match loaded {
        Ok(l) => l,
        Err(e) => return super::pages::failed(&e),
    };
    let names = Names {
        channels: channels
            .items
            .iter()
            .map(|c| (c.id, c.name.clone()))
            .collect(),
        environments: environments
            .iter()
            .map(|e| (e.id, e.name.clone()))
            .collect(),
    };
    let catalog = notif::catalog();
    let rules = rules
        .items
        .iter()
        .map(|r| names.rule(r, &catalog))
        .collect();
    let mut by_category: Vec<(&'static str, Vec<CatalogEntry>)> = Vec::new();
    for entry in catalog {
        match by_category.last_mut() {
            Some((category, entries)) if *category == entry.category => entries.push(entry),
            _ => by_category.push((entry.category, vec![entry])),
        }
    }
    render(&NotificationsPage {
        nav,
        allowed: true,
        admin,
        more_channels: channels.next_cursor.is_some(),
        channels: channels.items.into_iter().map(ChannelRow::of).collect(),
        rules,
        alerts: alerts.items.into_iter().map(|a| names.alert(a)).collect(),
        catalog: by_category,
        environments,
        upgrade,
    })
}
