//! The WorkflowOps job kinds as state machines on `engine`: sync, promotion, drift scan, backup,
//! restore, snapshot, bulk operations, health checks.
//!
//! Each uses `domain` for rules and storage and `adapters` for the outside world. [`registry`]
//! lists every kind a worker can run.

pub mod backup;
pub mod bulk;
pub mod canonical;
pub mod diagnostics;
pub mod drift;
pub mod github;
pub mod health;
pub mod maintenance;
pub mod notify;
pub mod promotion;
pub mod providers;
pub mod snapshot;
pub mod sync;
pub mod workflow_ops;

use engine::Registry;

pub use providers::Deps;

/// Every job kind this build can run.
pub fn registry(deps: &Deps) -> Registry {
    Registry::new()
        .register(diagnostics::Ledger)
        .register(diagnostics::Steps)
        .register(maintenance::Prune)
        .register(sync::Sync { deps: deps.clone() })
        .register(sync::BulkSync)
        .register(health::HealthCheck { deps: deps.clone() })
        .register(workflow_ops::BulkAction { deps: deps.clone() })
        .register(backup::Backup { deps: deps.clone() })
        .register(backup::BulkBackup)
        .register(backup::Restore { deps: deps.clone() })
        .register(snapshot::TakeSnapshot { deps: deps.clone() })
        .register(snapshot::BulkRestore)
        .register(canonical::GitSync { deps: deps.clone() })
        .register(canonical::Onboard { deps: deps.clone() })
        .register(promotion::Promote { deps: deps.clone() })
        .register(drift::DriftCheck { deps: deps.clone() })
        .register(drift::Reconcile { deps: deps.clone() })
        .register(drift::Sla)
        .register(notify::Deliver { deps: deps.clone() })
}
