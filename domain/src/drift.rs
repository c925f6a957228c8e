//! Drift (DRIFT-001..007): checks and their history; incidents (INC-001..011) with a strict
//! lifecycle; the tenant's drift policy (POL-001..010); approvals for incident actions
//! (APPR-001..005); reconciliation artifacts; what blocks a promotion.
//!
//! A stored policy governs an environment only while the plan of the environment's provider
//! grants it (ENT-001, so a downgrade takes effect without anyone touching the policy): without
//! `drift_policies` the environment is handled as if no policy were set (the defaults of
//! [`Policy::default`]); without `drift_sla` its SLA part (the TTLs, SLA enforcement and the
//! expiration warning) is the default one. Detection itself is in every plan. See
//! [`policy_in_force`] for one environment and [`governed`] for the sweeps across tenants.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Acquire, FromRow, PgConnection, PgExecutor, Postgres};
use uuid::Uuid;

use crate::diff::RiskLevel;
use crate::entitlements::{self, Feature};
use crate::environments::{DriftMode, EnvironmentClass};
use crate::error::{Error, Result};
use crate::page::{Page, PageRequest};

text_enum! {
    /// INC-002.
    pub enum Severity { Critical = "critical", High = "high", Medium = "medium", Low = "low" }
}

impl Severity {
    /// Higher is more severe.
    pub fn rank(self) -> u8 {
        match self {
            Self::Low => 0,
            Self::Medium => 1,
            Self::High => 2,
            Self::Critical => 3,
        }
    }

    /// One level up (SLA escalation); critical stays critical.
    pub fn escalated(self) -> Self {
        match self {
            Self::Low => Self::Medium,
            Self::Medium => Self::High,
            Self::High | Self::Critical => Self::Critical,
        }
    }

    /// From the environment's class and the risk of what changed: production drift is one
    /// level above its risk, staging at its risk; untracked changes in production are high.
    pub fn of(class: EnvironmentClass, risk: RiskLevel) -> Self {
        let base = match risk {
            RiskLevel::High => Self::High,
            RiskLevel::Medium => Self::Medium,
            RiskLevel::Low => Self::Low,
        };
        if class == EnvironmentClass::Production {
            base.escalated()
        } else {
            base
        }
    }
}

text_enum! {
    /// `detected → acknowledged → stabilized → reconciled → closed` (PRD 3.6.2).
    pub enum IncidentStatus {
        Detected = "detected",
        Acknowledged = "acknowledged",
        Stabilized = "stabilized",
        Reconciled = "reconciled",
        Closed = "closed",
    }
}

impl IncidentStatus {
    /// The states a transition may go to from here. `acknowledged → closed` is the
    /// `acknowledge` resolution (the drift accepted as it is).
    pub fn next(self) -> &'static [IncidentStatus] {
        match self {
            Self::Detected => &[Self::Acknowledged],
            Self::Acknowledged => &[Self::Stabilized, Self::Closed],
            Self::Stabilized => &[Self::Reconciled],
            Self::Reconciled => &[Self::Closed],
            Self::Closed => &[],
        }
    }
}

text_enum! {
    pub enum Resolution { Promote = "promote", Revert = "revert", Replace = "replace", Acknowledge = "acknowledge" }
}

text_enum! {
    /// Incident actions that a policy can put behind an approval (APPR-002).
    pub enum ApprovalAction { Acknowledge = "acknowledge", ExtendTtl = "extend_ttl", Close = "close", Reconcile = "reconcile" }
}

// ---- policy ----------------------------------------------------------------------------------

/// The tenant's drift policy (POL-001..010); defaults until set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[schema(minimum = 1, maximum = 8760)]
    pub ttl_critical_hours: i32,
    #[schema(minimum = 1, maximum = 8760)]
    pub ttl_high_hours: i32,
    #[schema(minimum = 1, maximum = 8760)]
    pub ttl_medium_hours: i32,
    #[schema(minimum = 1, maximum = 8760)]
    pub ttl_low_hours: i32,
    /// Expired incidents are flagged and escalated.
    pub sla_enforcement: bool,
    pub auto_create_incidents: bool,
    /// Promotions into an environment with an expired open incident are blocked.
    pub block_on_expired: bool,
    /// Promotions into an environment with an unacknowledged incident are blocked.
    pub block_on_active_drift: bool,
    /// Incidents this severe or worse raise a notification event.
    #[schema(pattern = "^(low|medium|high|critical)$")]
    pub notify_min_severity: String,
    #[schema(minimum = 0, maximum = 720)]
    pub expiration_warning_hours: i32,
    #[schema(minimum = 1, maximum = 3650)]
    pub closed_retention_days: i32,
    #[schema(minimum = 1, maximum = 3650)]
    pub artifact_retention_days: i32,
    #[schema(minimum = 1, maximum = 3650)]
    pub approval_retention_days: i32,
    /// Actions that need an approval: acknowledge, extend_ttl, close, reconcile.
    #[schema(value_type = Vec<ApprovalAction>)]
    pub approval_required_for: Vec<String>,
    /// Who may approve: admin, developer, viewer.
    #[schema(min_items = 1, value_type = Vec<crate::Role>)]
    pub approver_roles: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            ttl_critical_hours: 24,
            ttl_high_hours: 48,
            ttl_medium_hours: 72,
            ttl_low_hours: 168,
            sla_enforcement: true,
            auto_create_incidents: true,
            block_on_expired: true,
            block_on_active_drift: false,
            notify_min_severity: "high".into(),
            expiration_warning_hours: 12,
            closed_retention_days: 365,
            artifact_retention_days: 365,
            approval_retention_days: 365,
            approval_required_for: Vec::new(),
            approver_roles: vec!["admin".into()],
        }
    }
}

impl Policy {
    pub fn ttl_hours(&self, s: Severity) -> i32 {
        match s {
            Severity::Critical => self.ttl_critical_hours,
            Severity::High => self.ttl_high_hours,
            Severity::Medium => self.ttl_medium_hours,
            Severity::Low => self.ttl_low_hours,
        }
    }

    /// The policy that governs where the plan grants drift policies (`policies`) and drift
    /// TTL/SLA (`sla`): this one; without `policies`, the defaults (as if none were set); without
    /// `sla`, this one with the defaults' SLA part (TTLs, SLA enforcement, expiration warning).
    #[must_use]
    pub fn as_granted(self, policies: bool, sla: bool) -> Self {
        let defaults = Self::default();
        match (policies, sla) {
            // Retention is kept: a downgrade must not delete history the tenant chose to keep
            // (nor keep longer what it chose to delete sooner).
            (false, _) => Self {
                closed_retention_days: self.closed_retention_days,
                artifact_retention_days: self.artifact_retention_days,
                approval_retention_days: self.approval_retention_days,
                ..defaults
            },
            (true, true) => self,
            (true, false) => Self {
                ttl_critical_hours: defaults.ttl_critical_hours,
                ttl_high_hours: defaults.ttl_high_hours,
                ttl_medium_hours: defaults.ttl_medium_hours,
                ttl_low_hours: defaults.ttl_low_hours,
                sla_enforcement: defaults.sla_enforcement,
                expiration_warning_hours: defaults.expiration_warning_hours,
                ..self
            },
        }
    }

    pub fn needs_approval(&self, action: ApprovalAction) -> bool {
        self.approval_required_for
            .iter()
            .any(|a| a == action.as_str())
    }

    /// What makes this policy invalid.
    pub fn check(&self) -> Result<()> {
        let mut v = crate::validate::Validator::new();
        for (f, h) in [
            ("ttl_critical_hours", self.ttl_critical_hours),
            ("ttl_high_hours", self.ttl_high_hours),
            ("ttl_medium_hours", self.ttl_medium_hours),
            ("ttl_low_hours", self.ttl_low_hours),
        ] {
            if !(1..=24 * 365).contains(&h) {
                v.error(f, "must be 1 to 8760 hours");
            }
        }
        for (f, d) in [
            ("closed_retention_days", self.closed_retention_days),
            ("artifact_retention_days", self.artifact_retention_days),
            ("approval_retention_days", self.approval_retention_days),
        ] {
            if !(1..=3650).contains(&d) {
                v.error(f, "must be 1 to 3650 days");
            }
        }
        if !(0..=720).contains(&self.expiration_warning_hours) {
            v.error("expiration_warning_hours", "must be 0 to 720");
        }
        if Severity::parse(&self.notify_min_severity).is_none() {
            v.error(
                "notify_min_severity",
                format!("must be one of {}", Severity::expected()),
            );
        }
        if self
            .approval_required_for
            .iter()
            .any(|a| ApprovalAction::parse(a).is_none())
        {
            v.error(
                "approval_required_for",
                format!("may hold {}", ApprovalAction::expected()),
            );
        }
        if self.approver_roles.is_empty()
            || self
                .approver_roles
                .iter()
                .any(|r| !["admin", "developer", "viewer"].contains(&r.as_str()))
        {
            v.error("approver_roles", "must name admin, developer or viewer");
        }
        v.finish()
    }
}

const POLICY_COLUMNS: &str = "ttl_critical_hours, ttl_high_hours, ttl_medium_hours, ttl_low_hours, sla_enforcement, \
     auto_create_incidents, block_on_expired, block_on_active_drift, notify_min_severity, expiration_warning_hours, \
     closed_retention_days, artifact_retention_days, approval_retention_days, approval_required_for, approver_roles";

/// The tenant's stored policy (the defaults until one is set), whatever its plan: what it
/// configured. What governs an environment is [`policy_in_force`].
pub async fn policy(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<Policy> {
    let row: Option<Policy> = sqlx::query_as(sqlf!(
        "select {POLICY_COLUMNS} from drift_policies where tenant_id = $1"
    ))
    .bind(tenant_id)
    .fetch_optional(db)
    .await?;
    Ok(row.unwrap_or_default())
}

pub async fn put_policy(db: impl PgExecutor<'_>, tenant_id: Uuid, p: &Policy) -> Result<Policy> {
    p.check()?;
    Ok(sqlx::query_as(sqlf!(
        "insert into drift_policies (tenant_id, {POLICY_COLUMNS}) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         on conflict (tenant_id) do update set ttl_critical_hours = excluded.ttl_critical_hours, \
             ttl_high_hours = excluded.ttl_high_hours, ttl_medium_hours = excluded.ttl_medium_hours, \
             ttl_low_hours = excluded.ttl_low_hours, sla_enforcement = excluded.sla_enforcement, \
             auto_create_incidents = excluded.auto_create_incidents, block_on_expired = excluded.block_on_expired, \
             block_on_active_drift = excluded.block_on_active_drift, notify_min_severity = excluded.notify_min_severity, \
             expiration_warning_hours = excluded.expiration_warning_hours, closed_retention_days = excluded.closed_retention_days, \
             artifact_retention_days = excluded.artifact_retention_days, approval_retention_days = excluded.approval_retention_days, \
             approval_required_for = excluded.approval_required_for, approver_roles = excluded.approver_roles, updated_at = now() \
         returning {POLICY_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(p.ttl_critical_hours)
    .bind(p.ttl_high_hours)
    .bind(p.ttl_medium_hours)
    .bind(p.ttl_low_hours)
    .bind(p.sla_enforcement)
    .bind(p.auto_create_incidents)
    .bind(p.block_on_expired)
    .bind(p.block_on_active_drift)
    .bind(&p.notify_min_severity)
    .bind(p.expiration_warning_hours)
    .bind(p.closed_retention_days)
    .bind(p.artifact_retention_days)
    .bind(p.approval_retention_days)
    .bind(&p.approval_required_for)
    .bind(&p.approver_roles)
    .fetch_one(db)
    .await?)
}

/// The policy that governs one environment, and what the plan kept from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInForce {
    pub policy: Policy,
    /// The feature whose absence from the plan set the tenant's stored policy (or its SLA part)
    /// aside, to log (ENT-011); `None` when it applies whole, or when none is stored.
    pub withheld: Option<Feature>,
}

/// The policy that governs an environment of `provider` in `tenant_id` (see the module's rule):
/// one query without a stored policy, five with one.
pub async fn policy_in_force(
    db: &mut PgConnection,
    tenant_id: Uuid,
    provider: &str,
) -> Result<PolicyInForce> {
    let stored: Option<Policy> = sqlx::query_as(sqlf!(
        "select {POLICY_COLUMNS} from drift_policies where tenant_id = $1"
    ))
    .bind(tenant_id)
    .fetch_optional(&mut *db)
    .await?;
    let Some(stored) = stored else {
        return Ok(PolicyInForce {
            policy: Policy::default(),
            withheld: None,
        });
    };
    let inputs = entitlements::load(&mut *db, tenant_id).await?;
    let ent = entitlements::resolve(tenant_id, &inputs, Utc::now());
    let policies = ent.allows(Feature::DriftPolicies, Some(provider));
    let sla = ent.allows(Feature::DriftSla, Some(provider));
    let withheld = if !policies {
        Some(Feature::DriftPolicies)
    } else if !sla {
        Some(Feature::DriftSla)
    } else {
        None
    };
    Ok(PolicyInForce {
        policy: stored.as_granted(policies, sla),
        withheld,
    })
}

/// Logs that a drift check of an environment of `provider` ran without the tenant's stored
/// policy (or its SLA part) because the plan leaves `feature` out (ENT-011): by the system, not
/// a person.
pub async fn record_withheld(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    feature: Feature,
    provider: &str,
) -> Result<()> {
    entitlements::record_denial(
        db,
        entitlements::Asker {
            tenant_id,
            user_id: None,
            action: "drift.check",
        },
        feature,
        Some(provider),
    )
    .await
}

/// Where stored policies apply, for the sweeps that span every tenant ([`sla_sweep`],
/// [`prune`]): the (tenant, provider) pairs whose plan grants drift policies, and those among
/// them whose plan grants drift TTL/SLA too. Everywhere else the defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Governed {
    policy: Pairs,
    sla: Pairs,
}

/// (tenant, provider) pairs as two arrays, to bind and `unnest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Pairs {
    tenants: Vec<Uuid>,
    providers: Vec<String>,
}

impl Pairs {
    fn push(&mut self, tenant: Uuid, provider: &str) {
        self.tenants.push(tenant);
        self.providers.push(provider.to_owned());
    }
}

/// Resolves [`Governed`]: the plans of every tenant with a stored policy (five queries however
/// many tenants), for the providers it has environments with.
pub async fn governed(db: &mut PgConnection) -> Result<Governed> {
    let pairs: Vec<(Uuid, String)> = sqlx::query_as(
        "select distinct p.tenant_id, e.provider from drift_policies p \
         join environments e on e.tenant_id = p.tenant_id order by 1, 2",
    )
    .fetch_all(&mut *db)
    .await?;
    let mut tenants: Vec<Uuid> = pairs.iter().map(|(t, _)| *t).collect();
    tenants.dedup();
    let inputs = entitlements::load_many(&mut *db, &tenants).await?;
    let now = Utc::now();
    let mut out = Governed::default();
    let mut resolved: Option<entitlements::Entitlements> = None;
    for (tenant, provider) in pairs {
        let ent = match resolved.take() {
            Some(ent) if ent.tenant_id == tenant => ent,
            _ => entitlements::resolve(tenant, &inputs[&tenant], now),
        };
        if ent.allows(Feature::DriftPolicies, Some(&provider)) {
            out.policy.push(tenant, &provider);
            if ent.allows(Feature::DriftSla, Some(&provider)) {
                out.sla.push(tenant, &provider);
            }
        }
        resolved = Some(ent);
    }
    Ok(out)
}

// ---- checks ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Check {
    pub id: Uuid,
    pub environment_id: Uuid,
    pub run_id: Uuid,
    /// `scheduled` or `manual`.
    pub trigger: String,
    /// `completed`, or `skipped` (dev environments).
    pub status: String,
    pub workflows: i32,
    pub in_sync: i32,
    pub drifted: i32,
    pub out_of_date: i32,
    pub missing: i32,
    pub untracked: i32,
    pub incidents_opened: i32,
    pub incidents_updated: i32,
    pub duration_ms: i32,
    /// Why a check was skipped, or why it opened no incident for what it found (POL-003).
    pub note: Option<String>,
    /// Per drifted or untracked workflow: id, name, canonical id, status, risk, summary.
    #[schema(value_type = Value)]
    pub details: Value,
    pub created_at: DateTime<Utc>,
}

const CHECK_COLUMNS: &str = "id, environment_id, run_id, trigger, status, workflows, in_sync, drifted, out_of_date, missing, \
     untracked, incidents_opened, incidents_updated, duration_ms, note, details, created_at";

/// Records a check (DRIFT-007); a run records one (a retried run gets the first one back).
pub async fn record_check(db: impl PgExecutor<'_>, tenant_id: Uuid, c: &Check) -> Result<Check> {
    Ok(sqlx::query_as(sqlf!(
        "with ins as (insert into drift_checks (id, tenant_id, environment_id, run_id, trigger, status, workflows, in_sync, \
             drifted, out_of_date, missing, untracked, incidents_opened, incidents_updated, duration_ms, note, details) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         on conflict (run_id) do nothing returning {CHECK_COLUMNS}) \
         select {CHECK_COLUMNS} from ins union all select {CHECK_COLUMNS} from drift_checks where run_id = $4 limit 1"
    ))
    .bind(crate::ids::new_id())
    .bind(tenant_id)
    .bind(c.environment_id)
    .bind(c.run_id)
    .bind(&c.trigger)
    .bind(&c.status)
    .bind(c.workflows)
    .bind(c.in_sync)
    .bind(c.drifted)
    .bind(c.out_of_date)
    .bind(c.missing)
    .bind(c.untracked)
    .bind(c.incidents_opened)
    .bind(c.incidents_updated)
    .bind(c.duration_ms)
    .bind(&c.note)
    .bind(&c.details)
    .fetch_one(db)
    .await?)
}

pub async fn checks(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    environment_id: Uuid,
    page: PageRequest,
) -> Result<Page<Check>> {
    let rows = sqlx::query_as(sqlf!(
        "select {CHECK_COLUMNS} from drift_checks where tenant_id = $1 and environment_id = $2 \
         and ($3::uuid is null or id < $3) order by id desc limit $4"
    ))
    .bind(tenant_id)
    .bind(environment_id)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |c: &Check| c.id))
}

// ---- incidents -------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Incident {
    pub id: Uuid,
    pub environment_id: Uuid,
    pub status: String,
    pub severity: String,
    pub title: String,
    pub owner_user_id: Option<Uuid>,
    pub ticket_ref: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// Past its TTL while open (SLA breached).
    pub expired: bool,
    pub escalated_at: Option<DateTime<Utc>>,
    pub resolution_type: Option<String>,
    pub resolution_notes: Option<String>,
    #[schema(value_type = Object)]
    pub affected: Value,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub detected_by_check: Option<Uuid>,
    pub last_detected_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub stabilized_at: Option<DateTime<Utc>>,
    pub reconciled_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

const INCIDENT_COLUMNS: &str = "id, environment_id, status, severity, title, owner_user_id, ticket_ref, expires_at, expired, \
     escalated_at, resolution_type, resolution_notes, affected, payload, detected_by_check, last_detected_at, created_at, \
     updated_at, acknowledged_at, stabilized_at, reconciled_at, closed_at";

pub async fn get(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Incident> {
    sqlx::query_as(sqlf!(
        "select {INCIDENT_COLUMNS} from drift_incidents where tenant_id = $1 and id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("incident"))
}

pub async fn lock(db: &mut PgConnection, tenant_id: Uuid, id: Uuid) -> Result<Incident> {
    sqlx::query_as(sqlf!(
        "select {INCIDENT_COLUMNS} from drift_incidents where tenant_id = $1 and id = $2 for update"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("incident"))
}

/// The open incident of an environment that already covers one of these workflows, if any.
pub async fn open_covering(
    db: impl PgExecutor<'_>,
    environment_id: Uuid,
    workflow_ids: &[String],
) -> Result<Option<Incident>> {
    Ok(sqlx::query_as(sqlf!(
        "select {INCIDENT_COLUMNS} from drift_incidents where environment_id = $1 and status <> 'closed' \
         and exists (select 1 from jsonb_array_elements(affected) a where a->>'workflow_id' = any ($2)) \
         order by created_at limit 1 for update"
    ))
    .bind(environment_id)
    .bind(workflow_ids)
    .fetch_optional(db)
    .await?)
}

pub struct NewIncident<'a> {
    pub environment_id: Uuid,
    pub severity: Severity,
    pub title: &'a str,
    pub ttl_hours: i32,
    pub affected: &'a Value,
    pub payload: &'a Value,
    pub check_id: Uuid,
}

pub async fn create_incident(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    n: &NewIncident<'_>,
) -> Result<Incident> {
    Ok(sqlx::query_as(sqlf!(
        "insert into drift_incidents (id, tenant_id, environment_id, status, severity, title, expires_at, affected, payload, detected_by_check) \
         values ($1, $2, $3, 'detected', $4, $5, now() + make_interval(hours => $6), $7, $8, $9) returning {INCIDENT_COLUMNS}"
    ))
    .bind(crate::ids::new_id())
    .bind(tenant_id)
    .bind(n.environment_id)
    .bind(n.severity.as_str())
    .bind(n.title)
    .bind(n.ttl_hours)
    .bind(n.affected)
    .bind(n.payload)
    .bind(n.check_id)
    .fetch_one(db)
    .await?)
}

/// An incident's title from what the check found: workflows changed outside WorkflowOps
/// (tracked ones whose version differs from the canonical one) and untracked production
/// workflows are counted apart, since only the first are changes to something governed.
pub fn incident_title(environment: &str, changed: usize, untracked: usize) -> String {
    match (changed, untracked) {
        (0, u) => format!("Drift in {environment}: {u} untracked workflow(s)"),
        (c, 0) => format!("Drift in {environment}: {c} workflow(s) changed outside WorkflowOps"),
        (c, u) => format!(
            "Drift in {environment}: {c} workflow(s) changed outside WorkflowOps, {u} untracked"
        ),
    }
}

/// A new detection on an open incident: the affected list, payload and title take the latest,
/// the severity never goes down.
pub async fn redetected(
    db: impl PgExecutor<'_>,
    id: Uuid,
    severity: Severity,
    title: &str,
    affected: &Value,
    payload: &Value,
    check_id: Uuid,
) -> Result<()> {
    sqlx::query(
        "update drift_incidents set affected = $2, payload = $3, detected_by_check = $4, last_detected_at = now(), updated_at = now(), \
             severity = case when array_position(array['low','medium','high','critical'], $5) > \
                                  array_position(array['low','medium','high','critical'], severity) then $5 else severity end, \
             title = $6 \
         where id = $1",
    )
    .bind(id)
    .bind(affected)
    .bind(payload)
    .bind(check_id)
    .bind(severity.as_str())
    .bind(title)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Default, Clone)]
pub struct IncidentFilter {
    pub status: Option<IncidentStatus>,
    /// Every state but closed.
    pub open: Option<bool>,
    pub severity: Option<Severity>,
    pub environment_id: Option<Uuid>,
    pub expired: Option<bool>,
    pub owner_user_id: Option<Uuid>,
}

/// INC-007: incidents, newest first, filtered.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    f: &IncidentFilter,
    page: PageRequest,
) -> Result<Page<Incident>> {
    let rows = sqlx::query_as(sqlf!(
        "select {INCIDENT_COLUMNS} from drift_incidents where tenant_id = $1 \
         and ($2::text is null or status = $2) and ($3::bool is null or (status <> 'closed') = $3) \
         and ($4::text is null or severity = $4) and ($5::uuid is null or environment_id = $5) \
         and ($6::bool is null or expired = $6) and ($7::uuid is null or owner_user_id = $7) \
         and ($8::uuid is null or id < $8) order by id desc limit $9"
    ))
    .bind(tenant_id)
    .bind(f.status.map(|s| s.as_str()))
    .bind(f.open)
    .bind(f.severity.map(|s| s.as_str()))
    .bind(f.environment_id)
    .bind(f.expired)
    .bind(f.owner_user_id)
    .bind(page.after)
    .bind(page.fetch_limit())
    .fetch_all(db)
    .await?;
    Ok(Page::from_rows(rows, page, |i: &Incident| i.id))
}

/// Moves an incident along its lifecycle (INC-003..006). An illegal move is a 409 naming the
/// allowed next states; closing needs a resolution type (and notes where attestation is required).
pub async fn transition(
    db: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    to: IncidentStatus,
    resolution: Option<Resolution>,
    notes: Option<&str>,
    drift_mode: DriftMode,
) -> Result<Incident> {
    let incident = lock(&mut *db, tenant_id, id).await?;
    let from = IncidentStatus::parse(&incident.status).unwrap_or(IncidentStatus::Closed);
    if let Some(refusal) = reconciled_only_by_reconciliation(from, to, id) {
        return Err(refusal);
    }
    if !from.next().contains(&to) {
        let allowed: Vec<&str> = from.next().iter().map(|s| s.as_str()).collect();
        return Err(Error::conflict(
            "illegal_transition",
            format!(
                "an incident that is {} can go to: {}",
                from.as_str(),
                if allowed.is_empty() {
                    "nothing (it is closed)".to_owned()
                } else {
                    allowed.join(", ")
                }
            ),
        ));
    }
    if to == IncidentStatus::Closed {
        let resolution = resolution.or_else(|| {
            incident
                .resolution_type
                .as_deref()
                .and_then(Resolution::parse)
        });
        if resolution.is_none() {
            return Err(Error::invalid(
                "resolution_type",
                "closing needs a resolution: promote, revert, replace or acknowledge",
            ));
        }
        if from == IncidentStatus::Acknowledged && resolution != Some(Resolution::Acknowledge) {
            return Err(Error::invalid(
                "resolution_type",
                "an incident closed without reconciliation can only be resolved as `acknowledge`",
            ));
        }
        if drift_mode == DriftMode::RequireAttestation && notes.is_none_or(|n| n.trim().is_empty())
        {
            return Err(Error::invalid(
                "resolution_notes",
                "this environment requires an attestation: say why",
            ));
        }
    }
    Ok(sqlx::query_as(sqlf!(
        "update drift_incidents set status = $2, updated_at = now(), \
             resolution_type = coalesce($3, resolution_type), resolution_notes = coalesce($4, resolution_notes), \
             acknowledged_at = case when $2 = 'acknowledged' then now() else acknowledged_at end, \
             stabilized_at = case when $2 = 'stabilized' then now() else stabilized_at end, \
             reconciled_at = case when $2 = 'reconciled' then now() else reconciled_at end, \
             closed_at = case when $2 = 'closed' then now() else closed_at end \
         where id = $1 returning {INCIDENT_COLUMNS}"
    ))
    .bind(id)
    .bind(to.as_str())
    .bind(resolution.map(|r| r.as_str()))
    .bind(notes)
    .fetch_one(&mut *db)
    .await?)
}

/// INC-004/INC-005: `reconciled` is reached only by a reconciliation run, which records the
/// artifact and goes through the policy's `reconcile` approval; a plain transition to it would
/// skip both (and let the incident then be closed with any resolution). From a state that can
/// be reconciled, the refusal names the endpoint to use instead.
pub fn reconciled_only_by_reconciliation(
    from: IncidentStatus,
    to: IncidentStatus,
    id: Uuid,
) -> Option<Error> {
    (to == IncidentStatus::Reconciled
        && matches!(
            from,
            IncidentStatus::Acknowledged | IncidentStatus::Stabilized
        ))
    .then(|| {
        Error::conflict(
            "reconcile_required",
            format!(
                "an incident becomes reconciled only by reconciling it: \
                 POST /api/v1/incidents/{id}/reconcile with a resolution \
                 (promote, revert, replace or acknowledge)"
            ),
        )
    })
}

/// The reconciliation run's move: from acknowledged or stabilized straight to reconciled.
pub async fn mark_reconciled(
    db: impl PgExecutor<'_>,
    id: Uuid,
    resolution: Resolution,
) -> Result<()> {
    sqlx::query(
        "update drift_incidents set status = 'reconciled', resolution_type = $2, reconciled_at = now(), updated_at = now() \
         where id = $1 and status in ('acknowledged', 'stabilized')",
    )
    .bind(id)
    .bind(resolution.as_str())
    .execute(db)
    .await?;
    Ok(())
}

/// INC-010/011: owner and ticket reference (None leaves a field as it is).
pub async fn update_details(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    id: Uuid,
    owner: Option<Option<Uuid>>,
    ticket_ref: Option<Option<&str>>,
) -> Result<Incident> {
    sqlx::query_as(sqlf!(
        "update drift_incidents set owner_user_id = case when $3 then $4 else owner_user_id end, \
             ticket_ref = case when $5 then $6 else ticket_ref end, updated_at = now() \
         where tenant_id = $1 and id = $2 returning {INCIDENT_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .bind(owner.is_some())
    .bind(owner.flatten())
    .bind(ticket_ref.is_some())
    .bind(ticket_ref.flatten())
    .fetch_optional(db)
    .await?
    .ok_or(Error::not_found("incident"))
}

/// APPR-004: pushes the deadline back (and clears the expired flag when it is in the future again).
pub async fn extend_ttl(db: impl PgExecutor<'_>, id: Uuid, hours: i32) -> Result<()> {
    sqlx::query(
        "update drift_incidents set expires_at = greatest(expires_at, now()) + make_interval(hours => $2), \
             expired = false, warned_at = null, updated_at = now() where id = $1 and status <> 'closed'",
    )
    .bind(id)
    .bind(hours)
    .execute(db)
    .await?;
    Ok(())
}

/// What SLA enforcement did in one sweep.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SlaSweep {
    /// Incidents that expired now: (tenant, incident, new severity).
    pub expired: Vec<(Uuid, Uuid, String)>,
    /// Incidents entering their expiration-warning window: (tenant, incident).
    pub warned: Vec<(Uuid, Uuid)>,
}

/// POL-002/007: open incidents past their TTL are flagged expired and escalated one severity
/// level (where the policy in force enforces SLAs); those within the warning window are marked
/// warned. Each happens once per incident. A stored policy counts only where `governed` says
/// the plan grants its SLA part; elsewhere the defaults do.
pub async fn sla_sweep(db: &mut PgConnection, governed: &Governed) -> Result<SlaSweep> {
    let expired: Vec<(Uuid, Uuid, String)> = sqlx::query_as(
        "update drift_incidents i set expired = true, escalated_at = now(), updated_at = now(), \
             severity = case i.severity when 'low' then 'medium' when 'medium' then 'high' else 'critical' end \
         from (select i2.id from drift_incidents i2 join environments e on e.id = i2.environment_id \
               left join drift_policies p on p.tenant_id = i2.tenant_id \
                 and (i2.tenant_id, e.provider) in (select * from unnest($1::uuid[], $2::text[])) \
               where i2.status not in ('reconciled', 'closed') and not i2.expired and i2.expires_at <= now() \
                 and coalesce(p.sla_enforcement, true) for update of i2) due \
         where i.id = due.id returning i.tenant_id, i.id, i.severity",
    )
    .bind(&governed.sla.tenants)
    .bind(&governed.sla.providers)
    .fetch_all(&mut *db)
    .await?;
    let warned: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "update drift_incidents i set warned_at = now() \
         from (select i2.id from drift_incidents i2 join environments e on e.id = i2.environment_id \
               left join drift_policies p on p.tenant_id = i2.tenant_id \
                 and (i2.tenant_id, e.provider) in (select * from unnest($1::uuid[], $2::text[])) \
               where i2.status not in ('reconciled', 'closed') and not i2.expired and i2.warned_at is null \
                 and i2.expires_at <= now() + make_interval(hours => coalesce(p.expiration_warning_hours, 12)) for update of i2) due \
         where i.id = due.id returning i.tenant_id, i.id",
    )
    .bind(&governed.sla.tenants)
    .bind(&governed.sla.providers)
    .fetch_all(&mut *db)
    .await?;
    Ok(SlaSweep { expired, warned })
}

/// POL-008..010: closed incidents, reconciliation artifacts and decided approvals older than
/// the tenant's stored retention (365 days without a policy) are deleted. Retention follows the
/// stored policy whatever the plan: a downgrade deletes nothing the tenant chose to keep.
/// Returns how many rows went.
pub async fn prune(db: &mut PgConnection) -> Result<u64> {
    let mut n = sqlx::query(
        "delete from reconciliation_artifacts a using drift_incidents i join environments e on e.id = i.environment_id \
             left join drift_policies p on p.tenant_id = i.tenant_id \
         where a.incident_id = i.id and a.created_at < now() - make_interval(days => coalesce(p.artifact_retention_days, 365))",
    )
    .execute(&mut *db)
    .await?
    .rows_affected();
    n += sqlx::query(
        "delete from drift_approvals a using drift_incidents i join environments e on e.id = i.environment_id \
             left join drift_policies p on p.tenant_id = i.tenant_id \
         where a.incident_id = i.id and a.status <> 'pending' \
           and a.decided_at < now() - make_interval(days => coalesce(p.approval_retention_days, 365))",
    )
    .execute(&mut *db)
    .await?
    .rows_affected();
    n += sqlx::query(
        "delete from drift_incidents i using drift_incidents x join environments e on e.id = x.environment_id \
             left join drift_policies p on p.tenant_id = x.tenant_id \
         where i.id = x.id and i.status = 'closed' \
           and i.closed_at < now() - make_interval(days => coalesce(p.closed_retention_days, 365))",
    )
    .execute(&mut *db)
    .await?
    .rows_affected();
    Ok(n)
}

/// Why promotions into this environment are blocked by drift right now (POL-004, POL-005,
/// DRIFT-006): empty when they are not. The blocking settings are those of the policy in
/// force ([`policy_in_force`]): a plan without drift policies blocks as the defaults do.
pub async fn blocking<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    tenant_id: Uuid,
    environment_id: Uuid,
) -> Result<Vec<String>> {
    let mut conn = db.acquire().await?;
    let rows: Vec<(Uuid, String, String, bool, String, String)> = sqlx::query_as(
        "select i.id, i.status, i.severity, i.expired, e.drift_mode, e.provider \
         from drift_incidents i join environments e on e.id = i.environment_id \
         where i.tenant_id = $1 and i.environment_id = $2 and i.status <> 'closed' order by i.created_at",
    )
    .bind(tenant_id)
    .bind(environment_id)
    .fetch_all(&mut *conn)
    .await?;
    let Some(provider) = rows.first().map(|r| r.5.clone()) else {
        return Ok(Vec::new());
    };
    let policy = policy_in_force(&mut conn, tenant_id, &provider)
        .await?
        .policy;
    let mut out = Vec::new();
    for (id, status, severity, expired, mode, _) in rows {
        // A reconciled incident's drift is gone: only an attestation still owed holds it.
        let reason = if status == "reconciled" && mode != "require_attestation" {
            None
        } else if expired && policy.block_on_expired {
            Some("is past its TTL")
        } else if status == "detected" && policy.block_on_active_drift {
            Some("is active (not acknowledged)")
        } else if mode == "require_attestation" {
            Some("is open and the environment requires an attestation to close it")
        } else if mode == "manual_override" && status == "detected" {
            Some("has not been acknowledged (manual override required)")
        } else {
            None
        };
        if let Some(r) = reason {
            out.push(format!("{severity} incident {id} ({status}) {r}"));
        }
    }
    Ok(out)
}

// ---- approvals -------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
#[schema(as = DriftApproval)]
pub struct Approval {
    pub id: Uuid,
    pub incident_id: Uuid,
    /// `acknowledge`, `extend_ttl`, `close` or `reconcile`.
    pub action: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    /// `pending`, `approved` or `rejected`.
    pub status: String,
    pub requested_by: Option<Uuid>,
    pub requested_by_label: String,
    pub decided_by: Option<Uuid>,
    pub decided_by_label: Option<String>,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

const APPROVAL_COLUMNS: &str = "id, incident_id, action, payload, status, requested_by, requested_by_label, decided_by, \
     decided_by_label, comment, created_at, decided_at";

pub async fn request_approval(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    incident_id: Uuid,
    action: ApprovalAction,
    payload: &Value,
    by: Option<Uuid>,
    by_label: &str,
) -> Result<Approval> {
    Ok(sqlx::query_as(sqlf!(
        "insert into drift_approvals (id, tenant_id, incident_id, action, payload, requested_by, requested_by_label) \
         values ($1, $2, $3, $4, $5, $6, $7) returning {APPROVAL_COLUMNS}"
    ))
    .bind(crate::ids::new_id())
    .bind(tenant_id)
    .bind(incident_id)
    .bind(action.as_str())
    .bind(payload)
    .bind(by)
    .bind(by_label)
    .fetch_one(db)
    .await?)
}

pub async fn approvals(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    incident_id: Uuid,
) -> Result<Vec<Approval>> {
    Ok(sqlx::query_as(sqlf!(
        "select {APPROVAL_COLUMNS} from drift_approvals where tenant_id = $1 and incident_id = $2 order by created_at"
    ))
    .bind(tenant_id)
    .bind(incident_id)
    .fetch_all(db)
    .await?)
}

/// Decides a pending approval (APPR-003); a decided one is a 409.
pub async fn decide_approval(
    db: &mut PgConnection,
    tenant_id: Uuid,
    id: Uuid,
    approve: bool,
    by: Uuid,
    by_label: &str,
    comment: Option<&str>,
) -> Result<Approval> {
    let current: Approval = sqlx::query_as(sqlf!(
        "select {APPROVAL_COLUMNS} from drift_approvals where tenant_id = $1 and id = $2 for update"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *db)
    .await?
    .ok_or(Error::not_found("approval"))?;
    if current.status != "pending" {
        return Err(Error::conflict(
            "already_decided",
            format!("the approval is already {}", current.status),
        ));
    }
    Ok(sqlx::query_as(sqlf!(
        "update drift_approvals set status = $2, decided_by = $3, decided_by_label = $4, comment = $5, decided_at = now() \
         where id = $1 returning {APPROVAL_COLUMNS}"
    ))
    .bind(id)
    .bind(if approve { "approved" } else { "rejected" })
    .bind(by)
    .bind(by_label)
    .bind(comment)
    .fetch_one(&mut *db)
    .await?)
}

// ---- reconciliation --------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, FromRow, utoipa::ToSchema)]
pub struct Artifact {
    pub id: Uuid,
    pub incident_id: Uuid,
    pub run_id: Uuid,
    pub resolution: String,
    #[schema(value_type = Object)]
    pub workflows: Value,
    pub created_at: DateTime<Utc>,
}

pub async fn record_artifact(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    incident_id: Uuid,
    run_id: Uuid,
    resolution: Resolution,
    workflows: &Value,
) -> Result<()> {
    sqlx::query(
        "insert into reconciliation_artifacts (id, tenant_id, incident_id, run_id, resolution, workflows) \
         values ($1, $2, $3, $4, $5, $6) on conflict (run_id) do nothing",
    )
    .bind(crate::ids::new_id())
    .bind(tenant_id)
    .bind(incident_id)
    .bind(run_id)
    .bind(resolution.as_str())
    .bind(workflows)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn artifacts(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    incident_id: Uuid,
) -> Result<Vec<Artifact>> {
    Ok(sqlx::query_as(
        "select id, incident_id, run_id, resolution, workflows, created_at from reconciliation_artifacts \
         where tenant_id = $1 and incident_id = $2 order by created_at",
    )
    .bind(tenant_id)
    .bind(incident_id)
    .fetch_all(db)
    .await?)
}

/// The `acknowledge` resolution: this content of this workflow is accepted, not drift.
pub async fn accept(
    db: impl PgExecutor<'_>,
    environment_id: Uuid,
    provider_id: &str,
    hash: &str,
    incident: Uuid,
) -> Result<()> {
    sqlx::query(
        "insert into drift_accepted (environment_id, provider_id, content_hash, incident_id) values ($1, $2, $3, $4) \
         on conflict (environment_id, provider_id) do update set content_hash = excluded.content_hash, \
             incident_id = excluded.incident_id, accepted_at = now()",
    )
    .bind(environment_id)
    .bind(provider_id)
    .bind(hash)
    .bind(incident)
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_titles_count_untracked_workflows_apart_from_changed_ones() {
        assert_eq!(
            incident_title("Prod", 1, 0),
            "Drift in Prod: 1 workflow(s) changed outside WorkflowOps"
        );
        assert_eq!(
            incident_title("Prod", 1, 39),
            "Drift in Prod: 1 workflow(s) changed outside WorkflowOps, 39 untracked"
        );
        assert_eq!(
            incident_title("Prod", 0, 39),
            "Drift in Prod: 39 untracked workflow(s)"
        );
    }

    #[test]
    fn the_lifecycle_only_moves_forward() {
        use IncidentStatus::*;
        assert_eq!(Detected.next(), [Acknowledged]);
        assert!(!Detected.next().contains(&Closed));
        assert_eq!(Acknowledged.next(), [Stabilized, Closed]);
        assert_eq!(Stabilized.next(), [Reconciled]);
        assert_eq!(Reconciled.next(), [Closed]);
        assert!(Closed.next().is_empty());
    }

    // INC-004, INC-005
    #[test]
    fn reconciled_is_reached_only_through_the_reconcile_endpoint() {
        use IncidentStatus::*;
        let id = Uuid::nil();
        for from in [Acknowledged, Stabilized] {
            let refusal = reconciled_only_by_reconciliation(from, Reconciled, id);
            assert!(
                matches!(&refusal, Some(Error::Conflict { code, message })
                    if *code == "reconcile_required" && message.contains("/reconcile")),
                "{from:?}: {refusal:?}"
            );
        }
        assert!(reconciled_only_by_reconciliation(Stabilized, Closed, id).is_none());
        assert!(reconciled_only_by_reconciliation(Acknowledged, Stabilized, id).is_none());
        // Elsewhere the lifecycle's own refusal (illegal_transition) answers.
        assert!(reconciled_only_by_reconciliation(Detected, Reconciled, id).is_none());
    }

    #[test]
    fn severity_follows_class_and_risk_and_escalates() {
        assert_eq!(
            Severity::of(EnvironmentClass::Production, RiskLevel::High),
            Severity::Critical
        );
        assert_eq!(
            Severity::of(EnvironmentClass::Production, RiskLevel::Low),
            Severity::Medium
        );
        assert_eq!(
            Severity::of(EnvironmentClass::Staging, RiskLevel::Medium),
            Severity::Medium
        );
        assert_eq!(Severity::Low.escalated(), Severity::Medium);
        assert_eq!(Severity::Critical.escalated(), Severity::Critical);
        let p = Policy::default();
        assert_eq!(
            [
                Severity::Critical,
                Severity::High,
                Severity::Medium,
                Severity::Low
            ]
            .map(|s| p.ttl_hours(s)),
            [24, 48, 72, 168],
            "POL-001 defaults"
        );
    }

    // ENT-001 after a downgrade: what the plan leaves out of a stored policy.
    #[test]
    fn a_stored_policy_governs_only_as_far_as_the_plan_grants_it() {
        let stored = Policy {
            ttl_high_hours: 2,
            sla_enforcement: false,
            expiration_warning_hours: 1,
            auto_create_incidents: false,
            block_on_active_drift: true,
            notify_min_severity: "critical".into(),
            closed_retention_days: 3000,
            ..Policy::default()
        };
        assert_eq!(stored.clone().as_granted(true, true), stored);
        let kept = Policy {
            closed_retention_days: 3000,
            ..Policy::default()
        };
        assert_eq!(
            stored.clone().as_granted(false, true),
            kept,
            "retention is kept"
        );
        assert_eq!(stored.clone().as_granted(false, false), kept);
        let without_sla = stored.clone().as_granted(true, false);
        assert_eq!(
            (
                without_sla.ttl_high_hours,
                without_sla.sla_enforcement,
                without_sla.expiration_warning_hours
            ),
            (48, true, 12),
            "the SLA part is the default one"
        );
        assert_eq!(
            Policy {
                ttl_high_hours: 2,
                sla_enforcement: false,
                expiration_warning_hours: 1,
                ..without_sla
            },
            stored,
            "the rest is the tenant's"
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        let p = Policy {
            ttl_high_hours: 0,
            approval_required_for: vec!["dance".into()],
            approver_roles: vec![],
            ..Policy::default()
        };
        let Err(Error::Validation(errors)) = p.check() else {
            panic!("accepted");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["ttl_high_hours", "approval_required_for", "approver_roles"]
        );
    }
}
