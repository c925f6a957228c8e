-- engine_claim, same contract as in 0002: runs without a concurrency key (the common case) are
-- now locked together by one `for update skip locked` statement instead of one statement each;
-- runs with a key are still checked and locked one by one under their advisory lock. The
-- round-robin order between namespaces decides which runs are taken, as before.
create or replace function engine_claim(p_worker uuid, p_kinds text[], p_limit integer, p_lease interval, p_recent text[])
returns setof engine_runs
language plpgsql as $$
declare
    candidate record;
    picked uuid[] := '{}';
    keyless uuid[] := '{}';
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
        exit when cardinality(picked) + cardinality(keyless) >= p_limit;
        if candidate.concurrency_key is null then
            keyless := keyless || candidate.id;
            continue;
        end if;
        continue when not pg_try_advisory_xact_lock(hashtextextended('engine:' || candidate.concurrency_key, 0));
        select count(*) into busy from engine_runs
        where concurrency_key = candidate.concurrency_key and (status = 'running' or id = any (picked));
        continue when busy >= coalesce(candidate.concurrency_limit, 1);
        perform 1 from engine_runs where id = candidate.id and status = 'queued' for update skip locked;
        if found then
            picked := picked || candidate.id;
        end if;
    end loop;
    -- A keyless run another claimer holds is skipped: this claim takes fewer, the next takes more.
    if cardinality(keyless) > 0 then
        picked := picked || array(
            select e.id from engine_runs e
            where e.id = any (keyless) and e.status = 'queued'
            for update skip locked);
    end if;
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
