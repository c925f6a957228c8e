//! Pipelines (PIPE-001..007): named, provider-scoped promotion paths made of ordered stages
//! (source environment → target environment), each with its gates, policy flags, approval
//! requirements and an optional promotion window.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::diff::RiskLevel;
use crate::error::{Error, FieldError, Result};
use crate::page::{Page, PageRequest};
use crate::rbac::Role;

/// The checks a stage runs before promoting (PRD 3.5.1 gate types); all off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Gates {
    /// No workflow being promoted may be drifted in the target.
    pub require_clean_drift: bool,
    /// Validate each workflow's structure.
    pub run_pre_flight_validation: bool,
    /// Every credential the workflows use must exist in the target (or be mapped to one).
    pub credentials_exist_in_target: bool,
    /// Every community node type must be present on the target instance.
    pub nodes_supported_in_target: bool,
    /// No webhook path may collide with another workflow's in the target.
    pub webhooks_available: bool,
    /// The target must answer a live connection test.
    pub target_environment_healthy: bool,
    /// The highest risk allowed (low, medium, high); none = any.
    pub max_allowed_risk_level: Option<RiskLevel>,
}

/// Stage policy flags (PRD 3.5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StagePolicy {
    /// Missing credentials warn instead of blocking; the references are left as they are.
    pub allow_placeholder_credentials: bool,
    /// Workflows changed in the target since the last promotion (TARGET_HOTFIX) are overwritten.
    pub allow_overwriting_hotfixes: bool,
    /// A promotion requested with `force` overrides conflicts.
    pub allow_force_promotion_on_conflicts: bool,
}

/// Approval requirements (PIPE-004).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Approvals {
    /// How many distinct approvers (0: none needed; at most 5).
    #[schema(maximum = 5)]
    pub required: u32,
    /// Which roles may approve.
    pub roles: Vec<Role>,
    /// Whether the requester may approve their own promotion.
    pub allow_self_approval: bool,
}

impl Default for Approvals {
    fn default() -> Self {
        Self {
            required: 0,
            roles: vec![Role::Admin],
            allow_self_approval: false,
        }
    }
}

/// When promotions of a stage may run (PIPE-005): on these weekdays between `start` and `end`
/// (local time of `timezone`). A promotion approved outside waits for the next opening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// `mon` … `sun`.
    #[schema(min_items = 1)]
    pub days: Vec<String>,
    /// `HH:MM`.
    #[schema(pattern = "^([01]?[0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: String,
    /// `HH:MM`, after `start`.
    #[schema(pattern = "^([01]?[0-9]|2[0-3]):[0-5][0-9]$")]
    pub end: String,
    /// An IANA time zone (default UTC).
    #[serde(default = "utc")]
    pub timezone: String,
}

fn utc() -> String {
    "UTC".into()
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Window {
    fn parsed(&self) -> Option<(HashSet<usize>, NaiveTime, NaiveTime, chrono_tz::Tz)> {
        let days = self
            .days
            .iter()
            .map(|d| DAYS.iter().position(|x| x.eq_ignore_ascii_case(d)))
            .collect::<Option<HashSet<usize>>>()?;
        let start = NaiveTime::parse_from_str(&self.start, "%H:%M").ok()?;
        let end = NaiveTime::parse_from_str(&self.end, "%H:%M").ok()?;
        let tz: chrono_tz::Tz = self.timezone.parse().ok()?;
        (!days.is_empty() && start < end).then_some((days, start, end, tz))
    }

    /// `at` if it falls inside the window, else the next opening (None if the window is invalid).
    pub fn next_open(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (days, start, end, tz) = self.parsed()?;
        let local = at.with_timezone(&tz);
        for offset in 0..8 {
            let date = local.date_naive() + chrono::Days::new(offset);
            if !days.contains(&(date.weekday().num_days_from_monday() as usize)) {
                continue;
            }
            let open = tz.from_local_datetime(&date.and_time(start)).earliest()?;
            let close = tz.from_local_datetime(&date.and_time(end)).earliest()?;
            if local < close {
                return Some(if local >= open {
                    at
                } else {
                    open.with_timezone(&Utc)
                });
            }
        }
        None
    }
}

/// One stage: promote from `source_environment_id` to `target_environment_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub source_environment_id: Uuid,
    pub target_environment_id: Uuid,
    #[serde(default)]
    pub gates: Gates,
    #[serde(default)]
    pub policy: StagePolicy,
    #[serde(default)]
    pub approvals: Approvals,
    #[serde(default)]
    pub window: Option<Window>,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Pipeline {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub provider: String,
    #[sqlx(json)]
    pub stages: Vec<Stage>,
    pub active: bool,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, name, description, provider, stages, active, created_by, created_at, updated_at";

/// What makes a pipeline impossible, checked against the tenant's environments (id → provider).
pub fn check(provider: &str, stages: &[Stage], environments: &HashMap<Uuid, String>) -> Result<()> {
    let mut errors = Vec::new();
    let mut err = |field: String, message: String| errors.push(FieldError { field, message });
    if stages.is_empty() || stages.len() > 10 {
        err("stages".into(), "must have 1 to 10 stages".into());
    }
    let mut edges = HashSet::new();
    for (i, stage) in stages.iter().enumerate() {
        for (field, id) in [
            ("source_environment_id", stage.source_environment_id),
            ("target_environment_id", stage.target_environment_id),
        ] {
            match environments.get(&id) {
                None => err(
                    format!("stages[{i}].{field}"),
                    format!("no environment {id}"),
                ),
                Some(p) if p != provider => err(
                    format!("stages[{i}].{field}"),
                    format!("is a {p} environment; this pipeline is for {provider}"),
                ),
                Some(_) => {}
            }
        }
        if stage.source_environment_id == stage.target_environment_id {
            err(
                format!("stages[{i}]"),
                "source and target must be different environments".into(),
            );
        }
        if !edges.insert((stage.source_environment_id, stage.target_environment_id)) {
            err(format!("stages[{i}]"), "repeats another stage".into());
        }
        if stage.approvals.required > 5 {
            err(
                format!("stages[{i}].approvals.required"),
                "must be 0 to 5".into(),
            );
        }
        if stage.approvals.required > 0 && stage.approvals.roles.is_empty() {
            err(
                format!("stages[{i}].approvals.roles"),
                "must name at least one role".into(),
            );
        }
        if let Some(w) = &stage.window
            && w.parsed().is_none()
        {
            err(
                format!("stages[{i}].window"),
                "needs days (mon…sun), start < end as HH:MM and a known time zone".into(),
            );
        }
    }
    if let Some(cycle) = find_cycle(stages) {
        err(
            "stages".into(),
            format!("form a cycle through environment {cycle}"),
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

/// An environment on a cycle of stages, if there is one. A stage from an environment to itself
/// is not a cycle: it is refused as a stage of its own.
fn find_cycle(stages: &[Stage]) -> Option<Uuid> {
    let mut next: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for s in stages
        .iter()
        .filter(|s| s.source_environment_id != s.target_environment_id)
    {
        next.entry(s.source_environment_id)
            .or_default()
            .push(s.target_environment_id);
    }
    // 0 = unseen, 1 = on the path, 2 = done.
    let mut state: HashMap<Uuid, u8> = HashMap::new();
    fn visit(
        n: Uuid,
        next: &HashMap<Uuid, Vec<Uuid>>,
        state: &mut HashMap<Uuid, u8>,
    ) -> Option<Uuid> {
        match state.get(&n) {
            Some(1) => return Some(n),
            Some(2) => return None,
            _ => {}
        }
        state.insert(n, 1);
        for &m in next.get(&n).into_iter().flatten() {
            if let Some(c) = visit(m, next, state) {
                return Some(c);
            }
        }
        state.insert(n, 2);
        None
    }
    let starts: Vec<Uuid> = next.keys().copied().collect();
    starts.into_iter().find_map(|n| visit(n, &next, &mut state))
}

pub struct NewPipeline<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub provider: &'a str,
    pub stages: &'a [Stage],
    pub active: bool,
}

fn name_taken(e: sqlx::Error) -> Error {
    match crate::error::unique_violation(&e) {
        Some(_) => Error::conflict("name_taken", "a pipeline with this name exists"),
        None => e.into(),
    }
}

pub async fn create(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    by: Option<Uuid>,
    new: &NewPipeline<'_>,
) -> Result<Pipeline> {
    sqlx::query_as(sqlf!(
        "insert into pipelines (id, tenant_id, name, description, provider, stages, active, created_by) \
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning {COLUMNS}"
    ))
    .bind(crate::ids::new_id())
    .bind(tenant_id)
    .bind(new.name.trim())
    .bind(new.description)
    .bind(new.provider)
    .bind(serde_json::to_value(new.stages).unwrap_or(Value::Null))
    .bind(new.active)
    .bind(by)
    .fetch_one(db)
    .await
    .map_err(name_taken)
}

pub async fn update(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
    new: &NewPipeline<'_>,
) -> Result<Pipeline> {
    sqlx::query_as(sqlf!(
        "update pipelines set name = $3, description = $4, provider = $5, stages = $6, active = $7, updated_at = now() \
         where tenant_id = $1 and id = $2 and deleted_at is null returning {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .bind(new.name.trim())
    .bind(new.description)
    .bind(new.provider)
    .bind(serde_json::to_value(new.stages).unwrap_or(Value::Null))
    .bind(new.active)
    .fetch_optional(db)
    .await
    .map_err(name_taken)?
    .ok_or(Error::not_found("pipeline"))
}

pub async fn get(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Pipeline> {
    sqlx::query_as(sqlf!(
        "select {COLUMNS} from pipelines where tenant_id = $1 and id = $2 and deleted_at is null"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("pipeline"))
}

pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    page: PageRequest,
) -> Result<Page<Pipeline>> {
    let rows = sqlx::query_as(sqlf!(
        "select {COLUMNS} from pipelines where tenant_id = $1 and deleted_at is null \
         and ($2::uuid is null or id < $2) order by id desc limit $3"
    ))
    .bind(tenant_id)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |p: &Pipeline| p.id))
}

/// Soft-deletes a pipeline (its promotions keep pointing at it).
pub async fn delete(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<()> {
    let done = sqlx::query(
        "update pipelines set deleted_at = now(), updated_at = now() where tenant_id = $1 and id = $2 and deleted_at is null",
    )
    .bind(tenant_id)
    .bind(id)
    .execute(db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("pipeline"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(a: Uuid, b: Uuid) -> Stage {
        Stage {
            source_environment_id: a,
            target_environment_id: b,
            gates: Gates::default(),
            policy: StagePolicy::default(),
            approvals: Approvals::default(),
            window: None,
        }
    }

    fn fields(r: Result<()>) -> Vec<String> {
        match r {
            Err(Error::Validation(e)) => e
                .into_iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn impossible_pipelines_are_refused_with_the_field() {
        let (dev, stg, prod, make) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let envs: HashMap<Uuid, String> =
            [(dev, "n8n"), (stg, "n8n"), (prod, "n8n"), (make, "make")]
                .into_iter()
                .map(|(k, v)| (k, v.to_owned()))
                .collect();
        assert!(check("n8n", &[stage(dev, stg), stage(stg, prod)], &envs).is_ok());
        let cycle = fields(check(
            "n8n",
            &[stage(dev, stg), stage(stg, prod), stage(prod, dev)],
            &envs,
        ));
        assert!(cycle.iter().any(|e| e.contains("cycle")), "{cycle:?}");
        let other = fields(check("n8n", &[stage(dev, make)], &envs));
        assert!(
            other
                .iter()
                .any(|e| e.starts_with("stages[0].target_environment_id") && e.contains("make")),
            "{other:?}"
        );
        let unknown = fields(check("n8n", &[stage(dev, Uuid::new_v4())], &envs));
        assert!(
            unknown.iter().any(|e| e.contains("no environment")),
            "{unknown:?}"
        );
        assert_eq!(
            fields(check("n8n", &[stage(dev, stg), stage(stg, stg)], &envs)),
            ["stages[1]: source and target must be different environments"],
            "its own error, not a cycle"
        );
        assert!(!fields(check("n8n", &[], &envs)).is_empty());
        let mut s = stage(dev, stg);
        s.window = Some(Window {
            days: vec!["funday".into()],
            start: "09:00".into(),
            end: "17:00".into(),
            timezone: "UTC".into(),
        });
        assert!(
            fields(check("n8n", &[s], &envs))
                .iter()
                .any(|e| e.contains("window"))
        );
    }

    #[test]
    fn windows_open_now_or_at_the_next_allowed_time() {
        let w = Window {
            days: vec!["mon".into(), "wed".into()],
            start: "09:00".into(),
            end: "17:00".into(),
            timezone: "Europe/Berlin".into(),
        };
        // Wednesday 2026-11-25 10:00 UTC = 11:00 Berlin: open.
        let inside = Utc
            .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(w.next_open(inside), Some(inside));
        // Wednesday 17:30 Berlin: closed until Monday 09:00 Berlin (08:00 UTC).
        let after = Utc
            .with_ymd_and_hms(2026, 11, 25, 16, 30, 0)
            .single()
            .unwrap_or_default();
        let monday = Utc
            .with_ymd_and_hms(2026, 11, 30, 8, 0, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(w.next_open(after), Some(monday));
    }
}
