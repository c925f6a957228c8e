//! The WorkflowOps job kinds as state machines on `engine`: sync, promotion, drift scan, backup,
//! restore, snapshot, bulk operations, health checks.
//!
//! Each uses `domain` for rules and storage and `adapters` for the outside world. Empty until the
//! engine issue gives them a queue to run on; the foundation only fixes where they live.
