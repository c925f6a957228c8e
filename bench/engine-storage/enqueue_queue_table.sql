truncate engine_queue;
insert into engine_queue (run_id, namespace, kind, priority, run_at)
select id, namespace, kind, priority, run_at from engine_runs where status = 'queued';
