truncate engine_runs, engine_steps, engine_events cascade;
insert into engine_runs (id, namespace, kind, input, status, max_attempts)
select gen_random_uuid(), 'bench-' || (i % 8), 'diagnostics.steps', '{"steps":1,"step_ms":0}', 'queued', 3
from generate_series(1, :n) i;
