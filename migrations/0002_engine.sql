-- The durable run engine: runs, checkpointed steps, ordered events, signals, worker liveness.
--
-- Every run belongs to a namespace (WorkflowOps: the tenant id): fairness is shared between
-- namespaces, and callers scope their queries by it. Status is a checked text column mirrored by
-- engine::RunStatus.

alter table engine_workers
    add column lock_key integer,
    add column kinds text[];
create unique index engine_workers_lock_key on engine_workers (lock_key) where stopped_at is null;

create table engine_runs (
    id                  uuid primary key,
    namespace           text not null,
    kind                text not null,
    input               jsonb not null,
    output              jsonb,
    status              text not null check (status in ('queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
    -- Executions so far (each claim adds one; fences every state change).
    attempt             integer not null default 0,
    -- Failed attempts since the run was created or last retried by a user: the retry budget.
    failures            integer not null default 0,
    max_attempts        integer not null check (max_attempts > 0),
    priority            smallint not null default 0,
    run_at              timestamptz not null default now(),
    idempotency_key     text,
    concurrency_key     text,
    concurrency_limit   integer check (concurrency_limit > 0),
    parent_id           uuid references engine_runs (id) on delete cascade,
    labels              jsonb not null default '{}',
    progress_done       bigint,
    progress_total      bigint,
    error               jsonb,
    worker_id           uuid,
    lease_expires_at    timestamptz,
    cancel_requested_at timestamptz,
    -- What a waiting run waits for: a named signal, its children, or (neither) its run_at.
    wait_signal         text,
    wait_children       boolean not null default false,
    created_by          text,
    created_at          timestamptz not null default now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz not null default now()
);
create unique index engine_runs_idempotency on engine_runs (namespace, kind, idempotency_key)
    where idempotency_key is not null;
-- Claiming reads only queued rows: partial indexes keep it fast with millions of finished runs.
create index engine_runs_queued on engine_runs (namespace, priority desc, run_at, id) where status = 'queued';
create index engine_runs_running on engine_runs (worker_id) where status = 'running';
create index engine_runs_concurrency on engine_runs (concurrency_key) where status = 'running' and concurrency_key is not null;
create index engine_runs_waiting on engine_runs (run_at) where status = 'waiting';
create index engine_runs_parent on engine_runs (parent_id) where parent_id is not null;
create index engine_runs_namespace on engine_runs (namespace, id desc);

create table engine_steps (
    run_id       uuid not null references engine_runs (id) on delete cascade,
    name         text not null,
    output       jsonb not null,
    attempt      integer not null,
    started_at   timestamptz,
    completed_at timestamptz not null default now(),
    primary key (run_id, name)
);

-- Events are read in (tx_id, id) order and only below the oldest transaction still running
-- (pg_snapshot_xmin): ids alone can commit out of order, and a reader that went by id could
-- skip an event committed late with a lower id. Below the horizon the set no longer changes, so
-- a stream cursor (tx_id, id) never misses nor repeats an event.
create table engine_events (
    id         bigserial primary key,
    tx_id      bigint not null default pg_current_xact_id()::text::bigint,
    run_id     uuid not null references engine_runs (id) on delete cascade,
    namespace  text not null,
    kind       text not null check (kind in ('state', 'progress', 'log')),
    data       jsonb not null,
    created_at timestamptz not null default now()
);
create index engine_events_run on engine_events (run_id, tx_id, id);
create index engine_events_namespace on engine_events (namespace, tx_id, id);

-- Signals are stored, so one sent before the run waits for it is not lost.
create table engine_signals (
    id          bigserial primary key,
    run_id      uuid not null references engine_runs (id) on delete cascade,
    name        text not null,
    payload     jsonb not null default 'null',
    created_at  timestamptz not null default now(),
    consumed_at timestamptz
);
create index engine_signals_pending on engine_signals (run_id, name, id) where consumed_at is null;

-- Claims up to p_limit runnable runs for a worker, in one round trip:
--  * round-robin across namespaces (a namespace's k-th run comes after every other namespace's
--    first k-1; among equals, namespaces this worker served least recently go first: p_recent
--    lists what it served, oldest first), and within one by priority then due time, so one
--    namespace's backlog never starves another's run;
--  * a run with a concurrency key is skipped while `concurrency_limit` runs with that key are
--    running (checked under a transaction-scoped advisory lock, try-locked so claimers never wait
--    on each other or deadlock);
--  * rows are locked with `skip locked`, so concurrent claimers never take the same run.
create function engine_claim(p_worker uuid, p_kinds text[], p_limit integer, p_lease interval, p_recent text[])
returns setof engine_runs
language plpgsql as $$
declare
    candidate record;
    picked uuid[] := '{}';
    busy integer;
begin
    if p_limit <= 0 then
        return;
    end if;
    for candidate in
        with recursive namespaces(namespace) as (
            (select e.namespace from engine_runs e where e.status = 'queued' order by e.namespace limit 1)
            union all
            select (select e.namespace from engine_runs e
                    where e.status = 'queued' and e.namespace > ns.namespace
                    order by e.namespace limit 1)
            from namespaces ns where ns.namespace is not null
        )
        select c.id, c.concurrency_key, c.concurrency_limit, ns.namespace
        from namespaces ns
        cross join lateral (
            select e.id, e.concurrency_key, e.concurrency_limit, e.priority, e.run_at,
                   row_number() over (order by e.priority desc, e.run_at, e.id) as rank
            from engine_runs e
            where e.status = 'queued' and e.namespace = ns.namespace and e.run_at <= now()
              and (p_kinds is null or e.kind = any (p_kinds))
            order by e.priority desc, e.run_at, e.id
            limit p_limit * 2
        ) c
        where ns.namespace is not null
        order by c.rank, coalesce(array_position(p_recent, ns.namespace), 0), c.priority desc, c.run_at, c.id
        limit p_limit * 4
    loop
        exit when cardinality(picked) >= p_limit;
        if candidate.concurrency_key is not null then
            continue when not pg_try_advisory_xact_lock(hashtextextended('engine:' || candidate.concurrency_key, 0));
            select count(*) into busy from engine_runs
            where concurrency_key = candidate.concurrency_key and (status = 'running' or id = any (picked));
            continue when busy >= coalesce(candidate.concurrency_limit, 1);
        end if;
        perform 1 from engine_runs where id = candidate.id and status = 'queued' for update skip locked;
        if found then
            picked := picked || candidate.id;
        end if;
    end loop;
    -- One statement for the whole batch (and so one trigger firing for its events).
    return query
        update engine_runs r
        set status = 'running', attempt = r.attempt + 1, worker_id = p_worker,
            lease_expires_at = now() + p_lease, started_at = coalesce(r.started_at, now()),
            updated_at = now()
        where r.id = any (picked)
        returning r.*;
end;
$$;

-- Every state change of a run becomes an event, whatever code path made it. Statement-level
-- triggers with transition tables write one INSERT per statement however many runs it touched
-- (a worker's batched claims and completions), and wake workers once per kind.
create function engine_runs_inserted_events() returns trigger
language plpgsql as $$
begin
    insert into engine_events (run_id, namespace, kind, data)
    select n.id, n.namespace, 'state', jsonb_build_object(
        'status', n.status, 'attempt', n.attempt, 'error', n.error,
        'wait_signal', n.wait_signal, 'run_at', n.run_at)
    from new_rows n order by n.id;
    perform pg_notify('engine_wakeup', k.kind) from (select distinct kind from new_rows where status = 'queued') k;
    return null;
end;
$$;
create trigger engine_runs_inserted after insert on engine_runs
    referencing new table as new_rows
    for each statement execute function engine_runs_inserted_events();

create function engine_runs_updated_events() returns trigger
language plpgsql as $$
begin
    insert into engine_events (run_id, namespace, kind, data)
    select n.id, n.namespace, 'state', jsonb_build_object(
        'status', n.status, 'attempt', n.attempt, 'error', n.error,
        'wait_signal', n.wait_signal, 'run_at', n.run_at)
    from new_rows n join old_rows o on o.id = n.id
    where o.status is distinct from n.status
    order by n.id;
    perform pg_notify('engine_wakeup', k.kind)
    from (select distinct n.kind from new_rows n join old_rows o on o.id = n.id
          where n.status = 'queued' and o.status is distinct from n.status) k;
    return null;
end;
$$;
create trigger engine_runs_updated after update on engine_runs
    referencing old table as old_rows new table as new_rows
    for each statement execute function engine_runs_updated_events();

-- Events wake the API processes that stream them (one LISTEN each). The payload names only the
-- namespace, so PostgreSQL folds a transaction's notifications into one per namespace (every
-- listening backend reads every notification: they must stay few); subscribers read the events
-- themselves from the table, so a lost notification delays delivery but loses nothing.
create function engine_events_notify() returns trigger
language plpgsql as $$
begin
    perform pg_notify('engine_events', n.namespace) from (select distinct namespace from new_rows) n;
    return null;
end;
$$;
create trigger engine_events_inserted after insert on engine_events
    referencing new table as new_rows
    for each statement execute function engine_events_notify();
