//! Roles and permissions: the PRD 3.12.2 matrix, in one place.
//!
//! Every API route names the permission it needs; `Role::allows` is the only place that decides.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A member's role within one tenant. Ordered: viewer < developer < admin.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Developer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Developer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Admin => "admin",
        }
    }

    /// Whether this role holds `permission` (PRD 3.12.2).
    pub fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        match permission {
            P::ViewWorkflows
            | P::ViewExecutions
            | P::ViewObservability
            | P::ViewTeam
            | P::UseSupport => true,
            P::UploadWorkflows | P::ExecutePromotions | P::OperateRuns | P::SyncEnvironments => {
                self >= Role::Developer
            }
            P::ConfigurePipelines
            | P::ManageTeam
            | P::AccessBilling
            | P::ViewAuditLogs
            | P::ConfigureDriftPolicies
            | P::HardDeleteWorkflows
            | P::ManageApiKeys
            | P::ManageEnvironments
            | P::ManageNotifications => self == Role::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "developer" => Ok(Role::Developer),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role `{0}` (expected viewer, developer or admin)")]
pub struct UnknownRole(pub String);

impl sqlx::Type<sqlx::Postgres> for Role {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <String as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Role {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let s = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(s.parse()?)
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Role {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
    }
}

/// What a caller may do inside a tenant. The first eleven are the PRD 3.12.2 rows; `ViewTeam`
/// (every member sees who is in the team, TEAM-004), `ManageApiKeys` (machine credentials are
/// an admin's business, SEC-001) and `OperateRuns` (cancel, retry and signal background runs,
/// as whoever may start them: developers and admins), `ManageEnvironments` (connect, change and
/// delete environments, which hold provider API keys: admins) and `SyncEnvironments` (start
/// syncs: developers and admins) and `ManageNotifications` (channels, which hold webhook URLs,
/// and rules: admins) and `UseSupport` (open and follow support tickets: every member) complete
/// it for routes the matrix does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    ViewWorkflows,
    ViewExecutions,
    ViewObservability,
    UploadWorkflows,
    ExecutePromotions,
    ConfigurePipelines,
    ManageTeam,
    AccessBilling,
    ViewAuditLogs,
    ConfigureDriftPolicies,
    HardDeleteWorkflows,
    ViewTeam,
    ManageApiKeys,
    OperateRuns,
    ManageEnvironments,
    SyncEnvironments,
    ManageNotifications,
    UseSupport,
}

impl Permission {
    pub const ALL: [Permission; 18] = [
        Permission::ViewWorkflows,
        Permission::ViewExecutions,
        Permission::ViewObservability,
        Permission::UploadWorkflows,
        Permission::ExecutePromotions,
        Permission::ConfigurePipelines,
        Permission::ManageTeam,
        Permission::AccessBilling,
        Permission::ViewAuditLogs,
        Permission::ConfigureDriftPolicies,
        Permission::HardDeleteWorkflows,
        Permission::ViewTeam,
        Permission::ManageApiKeys,
        Permission::OperateRuns,
        Permission::ManageEnvironments,
        Permission::SyncEnvironments,
        Permission::ManageNotifications,
        Permission::UseSupport,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PRD 3.12.2 matrix, transcribed row by row: (permission, viewer, developer, admin).
    const MATRIX: [(Permission, bool, bool, bool); 18] = [
        (Permission::ViewWorkflows, true, true, true),
        (Permission::ViewExecutions, true, true, true),
        (Permission::ViewObservability, true, true, true),
        (Permission::UploadWorkflows, false, true, true),
        (Permission::ExecutePromotions, false, true, true),
        (Permission::ConfigurePipelines, false, false, true),
        (Permission::ManageTeam, false, false, true),
        (Permission::AccessBilling, false, false, true),
        (Permission::ViewAuditLogs, false, false, true),
        (Permission::ConfigureDriftPolicies, false, false, true),
        (Permission::HardDeleteWorkflows, false, false, true),
        (Permission::ViewTeam, true, true, true),
        (Permission::ManageApiKeys, false, false, true),
        (Permission::OperateRuns, false, true, true),
        (Permission::ManageEnvironments, false, false, true),
        (Permission::SyncEnvironments, false, true, true),
        (Permission::ManageNotifications, false, false, true),
        (Permission::UseSupport, true, true, true),
    ];

    // TEAM-002: every (role × permission) pair.
    #[test]
    fn every_role_permission_pair_matches_the_prd_matrix() {
        assert_eq!(MATRIX.len(), Permission::ALL.len());
        for permission in Permission::ALL {
            let row = MATRIX
                .iter()
                .find(|row| row.0 == permission)
                .unwrap_or_else(|| panic!("{permission:?} missing from the matrix"));
            for (role, expected) in [
                (Role::Viewer, row.1),
                (Role::Developer, row.2),
                (Role::Admin, row.3),
            ] {
                assert_eq!(
                    role.allows(permission),
                    expected,
                    "{role} × {permission:?} should be {expected}"
                );
            }
        }
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
        }
        assert!("owner".parse::<Role>().is_err());
    }
}
