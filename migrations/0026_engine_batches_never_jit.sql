-- Insurance for 0024. With sequential scans disabled, a scan the planner cannot do by index any
-- more (an index dropped or changed by a later migration) still plans as a sequential scan, at a
-- cost of ten billion: far above `jit_above_cost`, so PostgreSQL would compile the statement to
-- machine code on every call (tens of milliseconds each) without a word. The engine's batch
-- statements touch at most a few hundred rows by index; compiling them never pays.

alter function engine_claim(uuid, text[], integer, interval, text[]) set jit = off;
alter function engine_commit(
    integer[], uuid[], integer[], uuid[], text[], jsonb[], timestamptz[],
    integer[], uuid[], integer[], uuid[], text[], text[], jsonb[], bigint[], bigint[],
    integer[], uuid[], integer[], uuid[], jsonb[],
    uuid, text[], integer, interval, text[]) set jit = off;
