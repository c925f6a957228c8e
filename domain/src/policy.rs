//! Action policies by environment class (PRD 3.1.3, WF-007): the one place that decides whether
//! a workflow action is allowed, allowed with a warning, needs an approval, is for admins only,
//! or is blocked.

use serde::Serialize;

use crate::environments::EnvironmentClass;
use crate::error::Error;
use crate::rbac::Role;

text_enum! {
    /// What a user can do to a workflow in an environment.
    pub enum Action {
        DirectEdit = "direct_edit",
        Activate = "activate",
        Deactivate = "deactivate",
        Delete = "delete",
        Upload = "upload",
        Archive = "archive",
        Unarchive = "unarchive",
        HardDelete = "hard_delete",
    }
}

/// The PRD's cell for an (action, class) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allowed,
    Warning,
    RequiresApproval,
    AdminOnly,
    Blocked,
}

/// PRD 3.1.3, row by row. Restoring from the archive follows archiving's row.
pub fn verdict(class: EnvironmentClass, action: Action) -> Verdict {
    use EnvironmentClass::{Dev, Production, Staging};
    use Verdict::{AdminOnly, Allowed, Blocked, RequiresApproval, Warning};
    match (action, class) {
        (Action::DirectEdit, Dev) => Allowed,
        (Action::DirectEdit, Staging) => Warning,
        (Action::DirectEdit, Production) => Blocked,
        (Action::Activate | Action::Deactivate, Dev | Staging) => Allowed,
        (Action::Activate | Action::Deactivate, Production) => RequiresApproval,
        (Action::Delete, Dev) => Allowed,
        (Action::Delete, Staging) => Warning,
        (Action::Delete, Production) => RequiresApproval,
        (Action::Upload, Dev | Staging) => Allowed,
        (Action::Upload, Production) => Blocked,
        (Action::Archive | Action::Unarchive, Dev | Staging) => Allowed,
        (Action::Archive | Action::Unarchive, Production) => AdminOnly,
        (Action::HardDelete, Dev | Staging) => Blocked,
        (Action::HardDelete, Production) => AdminOnly,
    }
}

/// What the caller may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead (with a warning to show, for `Warning` cells).
    Proceed { warning: Option<String> },
    /// Record a request; another admin's approval carries it out.
    NeedsApproval,
}

/// Decides `action` in an environment of `class` for a caller with `role`. Blocked and
/// admin-only refusals are errors with stable codes and the reason.
pub fn check(class: EnvironmentClass, action: Action, role: Role) -> Result<Gate, Error> {
    match verdict(class, action) {
        Verdict::Allowed => Ok(Gate::Proceed { warning: None }),
        Verdict::Warning => Ok(Gate::Proceed {
            warning: Some(format!(
                "`{action}` in a {class} environment: changes here should normally arrive through a promotion"
            )),
        }),
        Verdict::RequiresApproval => Ok(Gate::NeedsApproval),
        Verdict::AdminOnly if role == Role::Admin => Ok(Gate::Proceed { warning: None }),
        Verdict::AdminOnly => Err(Error::Forbidden {
            code: "admin_only",
            message: format!("only an admin may `{action}` workflows in a {class} environment"),
        }),
        Verdict::Blocked => Err(Error::Forbidden {
            code: "action_blocked",
            message: format!(
                "`{action}` is blocked in {class} environments by policy; promote changes through a pipeline instead"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // WF-007: the PRD 3.1.3 table, transcribed: (action, dev, staging, production).
    const TABLE: [(Action, Verdict, Verdict, Verdict); 6] = [
        (
            Action::DirectEdit,
            Verdict::Allowed,
            Verdict::Warning,
            Verdict::Blocked,
        ),
        (
            Action::Activate,
            Verdict::Allowed,
            Verdict::Allowed,
            Verdict::RequiresApproval,
        ),
        (
            Action::Delete,
            Verdict::Allowed,
            Verdict::Warning,
            Verdict::RequiresApproval,
        ),
        (
            Action::Upload,
            Verdict::Allowed,
            Verdict::Allowed,
            Verdict::Blocked,
        ),
        (
            Action::Archive,
            Verdict::Allowed,
            Verdict::Allowed,
            Verdict::AdminOnly,
        ),
        (
            Action::HardDelete,
            Verdict::Blocked,
            Verdict::Blocked,
            Verdict::AdminOnly,
        ),
    ];

    #[test]
    fn every_cell_matches_the_prd_table() {
        for (action, dev, staging, production) in TABLE {
            assert_eq!(verdict(EnvironmentClass::Dev, action), dev, "{action} dev");
            assert_eq!(
                verdict(EnvironmentClass::Staging, action),
                staging,
                "{action} staging"
            );
            assert_eq!(
                verdict(EnvironmentClass::Production, action),
                production,
                "{action} production"
            );
        }
        for class in EnvironmentClass::ALL {
            assert_eq!(
                verdict(*class, Action::Deactivate),
                verdict(*class, Action::Activate)
            );
            assert_eq!(
                verdict(*class, Action::Unarchive),
                verdict(*class, Action::Archive)
            );
        }
    }

    #[test]
    fn checks_turn_cells_into_decisions_by_role() {
        use EnvironmentClass::{Dev, Production, Staging};
        assert_eq!(
            check(Dev, Action::Upload, Role::Developer).ok(),
            Some(Gate::Proceed { warning: None })
        );
        assert!(matches!(
            check(Staging, Action::Delete, Role::Developer),
            Ok(Gate::Proceed { warning: Some(_) })
        ));
        assert_eq!(
            check(Production, Action::Activate, Role::Admin).ok(),
            Some(Gate::NeedsApproval)
        );
        assert!(matches!(
            check(Production, Action::Upload, Role::Admin),
            Err(Error::Forbidden {
                code: "action_blocked",
                ..
            })
        ));
        assert!(matches!(
            check(Production, Action::Archive, Role::Developer),
            Err(Error::Forbidden {
                code: "admin_only",
                ..
            })
        ));
        assert!(check(Production, Action::Archive, Role::Admin).is_ok());
        assert!(matches!(
            check(Dev, Action::HardDelete, Role::Admin),
            Err(Error::Forbidden {
                code: "action_blocked",
                ..
            })
        ));
    }
}
