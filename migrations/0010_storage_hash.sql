-- The hash of a workflow's storage form (what backups write: the content plus node ids,
-- positions and webhook ids, which a restore needs): incremental backups compare it.
alter table env_workflows add column storage_hash text;
