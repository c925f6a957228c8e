-- The engine's batch statements reach runs by primary key or through the partial indexes: a
-- claim locks and updates at most a few hundred runs by id, a commit joins its checkpoints and
-- outcomes to their runs by id. The planner does not always see it that way. On a table with
-- fresh or missing statistics (a busy queue that was just filled, a database after a restore, a
-- deployment whose autovacuum has not analyzed yet) it estimates a join with the whole table as
-- cheaper by sequential scan and hash, and PL/pgSQL keeps that plan for the connection's life:
-- every claim and every commit then read every run, live or finished, and every dead version
-- of one. Measured with 20,000 queued 1-step runs, two workers and an analyzed table: 10-18%
-- less PostgreSQL CPU per run (two pairs of runs); the cost grows with the table.
--
-- Within these functions (and the triggers they fire) a sequential scan is a last resort.

alter function engine_claim(uuid, text[], integer, interval, text[]) set enable_seqscan = off;
alter function engine_commit(
    integer[], uuid[], integer[], uuid[], text[], jsonb[], timestamptz[],
    integer[], uuid[], integer[], uuid[], text[], text[], jsonb[], bigint[], bigint[],
    integer[], uuid[], integer[], uuid[], jsonb[],
    uuid, text[], integer, interval, text[]) set enable_seqscan = off;
