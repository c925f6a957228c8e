#!/bin/bash
# One measurement of the engine's SQL path, in one backend, without a worker process:
#   measure.sh DATABASE RUNS [queue]
# DATABASE must hold the migrated schema (`workflowops migrate`); `queue` means model_b.sql was
# applied to it (the queue moved out of the run table). Prints the backend's CPU time per run
# (utime+stime from /proc, so it needs a superuser on the same machine, and CLK_TCK = 100).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
db=$1; n=$2
psql="psql -q -h 127.0.0.1 -U postgres -d $db"
$psql -v n="$n" -f "$here/enqueue.sql" 2>/dev/null
if [ "${3:-}" = queue ]; then $psql -f "$here/enqueue_queue_table.sql"; fi
$psql -c "vacuum analyze engine_runs" -c "checkpoint"
$psql -At <<SQL
create or replace function pg_temp.cpu() returns bigint language sql as \$\$
  select (split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint)
  from pg_read_file('/proc/' || pg_backend_pid() || '/stat') s \$\$;
select pg_temp.cpu() as c0, extract(epoch from clock_timestamp()) as t0 \gset
\i $here/drive.sql
select format('%s %s n=%s backend_cpu_us_per_run=%s wall_s=%s unfinished=%s', '$db', '${3:-}', $n,
  round((pg_temp.cpu() - :c0) * 10000.0 / $n, 1),
  round((extract(epoch from clock_timestamp()) - :t0)::numeric, 2),
  (select count(*) from engine_runs where status <> 'succeeded'));
SQL
