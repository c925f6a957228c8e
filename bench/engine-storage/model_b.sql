-- Model B: the queue out of the run table; run rows HOT-updatable.
drop index engine_runs_queued, engine_runs_running, engine_runs_concurrency, engine_runs_waiting;
alter table engine_runs set (fillfactor = 50);
create table engine_queue (
    run_id uuid primary key,
    namespace text not null,
    kind text not null,
    priority smallint not null default 0,
    run_at timestamptz not null default now()
);
create index engine_queue_claim on engine_queue (namespace, priority desc, run_at, run_id);

create or replace function engine_claim(p_worker uuid, p_kinds text[], p_limit integer, p_lease interval, p_recent text[])
returns setof engine_runs
language plpgsql set enable_seqscan = off set jit = off as $$
declare
    spaces text[];
    per_space integer;
    ids uuid[];
    taken uuid[];
begin
    if p_limit <= 0 then return; end if;
    with recursive namespaces(namespace) as (
        (select e.namespace from engine_queue e order by e.namespace limit 1)
        union all
        select (select e.namespace from engine_queue e where e.namespace > ns.namespace order by e.namespace limit 1)
        from namespaces ns where ns.namespace is not null
    )
    select array_agg(namespace) into spaces from namespaces where namespace is not null;
    if spaces is null then return; end if;
    per_space := (p_limit * 2 + cardinality(spaces) - 1) / cardinality(spaces) + 1;
    select array_agg(c.id order by c.rank, coalesce(array_position(p_recent, c.namespace), 0), c.priority desc, c.run_at, c.id)
      into ids
    from unnest(spaces) as ns(namespace)
    cross join lateral (
        select e.run_id as id, e.namespace, e.priority, e.run_at,
               row_number() over (order by e.priority desc, e.run_at, e.run_id) as rank
        from engine_queue e
        where e.namespace = ns.namespace and e.run_at <= now() and (p_kinds is null or e.kind = any (p_kinds))
        order by e.priority desc, e.run_at, e.run_id
        limit per_space
    ) c;
    if ids is null then return; end if;
    with locked as (
        select q.run_id from unnest(ids) with ordinality as u(id, ord)
        join engine_queue q on q.run_id = u.id
        order by u.ord limit p_limit
        for update of q skip locked
    ), gone as (
        delete from engine_queue q using locked where q.run_id = locked.run_id returning q.run_id
    )
    select array_agg(run_id) into taken from gone;
    return query
        update engine_runs r
        set status = 'running', attempt = r.attempt + 1, worker_id = p_worker,
            lease_expires_at = now() + p_lease, started_at = coalesce(r.started_at, now()), updated_at = now()
        where r.id = any (taken)
        returning r.*;
end;
$$;
