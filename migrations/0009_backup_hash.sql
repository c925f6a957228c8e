-- The content hash each workflow had at the environment's last backup: an incremental backup
-- reads and writes only the workflows whose hash moved since (reset when the repository changes).
alter table env_workflows add column backed_up_hash text;
