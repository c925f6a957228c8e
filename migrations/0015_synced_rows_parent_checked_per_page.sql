-- Synced rows arrive in pages of hundreds, and a foreign key checks (and key-share locks) the
-- environment once per row: about a fifth of the database's time on an executions sync. The
-- catalog's writers (domain::catalog::upsert_summarized / upsert_executions) lock the environment
-- once per statement instead and write nothing when it is gone, and deleting an environment
-- deletes its synced rows here, as the foreign keys' `on delete cascade` did.
alter table env_workflows drop constraint env_workflows_environment_id_fkey;
alter table env_workflow_credentials drop constraint env_workflow_credentials_environment_id_fkey;
alter table env_executions drop constraint env_executions_environment_id_fkey;

create function environments_deleted_synced_rows() returns trigger
language plpgsql as $$
begin
    delete from env_workflow_credentials c using gone g where c.environment_id = g.id;
    delete from env_workflows w using gone g where w.environment_id = g.id;
    delete from env_executions e using gone g where e.environment_id = g.id;
    return null;
end
$$;

create trigger environments_deleted_synced_rows after delete on environments
    referencing old table as gone
    for each statement execute function environments_deleted_synced_rows();
