-- engine_claim, same contract as in 0017, but runs whose concurrency key is saturated are no
-- longer read as candidates. Candidates are read a fair share per namespace at a time; when a
-- namespace's first runs all waited on one busy key (a hundred promotions to one environment,
-- one at a time), they filled its share, the claim skipped them all under their key's lock, and
-- the namespace's later runs with other keys (or none) waited until that backlog drained. The
-- saturation test is a look-up in the partial index of running keyed runs, made only for keyed
-- runs: the keyless path costs what it did.

create or replace function engine_claim(p_worker uuid, p_kinds text[], p_limit integer, p_lease interval, p_recent text[])
returns setof engine_runs
language plpgsql as $$
declare
    spaces text[];
    per_space integer;
    ids uuid[];
    keyed boolean;
    capped boolean;
    got integer := 0;
    took integer;
    candidate record;
    picked uuid[] := '{}';
    keyless uuid[] := '{}';
    busy integer;
begin
    if p_limit <= 0 then
        return;
    end if;
    with recursive namespaces(namespace) as (
        (select e.namespace from engine_runs e where e.status = 'queued' order by e.namespace limit 1)
        union all
        select (select e.namespace from engine_runs e
                where e.status = 'queued' and e.namespace > ns.namespace
                order by e.namespace limit 1)
        from namespaces ns where ns.namespace is not null
    )
    select array_agg(namespace) into spaces from namespaces where namespace is not null;
    if spaces is null then
        return;
    end if;
    per_space := (p_limit * 2 + cardinality(spaces) - 1) / cardinality(spaces) + 1;
    loop
        -- Candidates in fairness order: a namespace's k-th run after every other namespace's
        -- first k-1; among equals, namespaces this worker served least recently first.
        select array_agg(c.id order by c.rank, coalesce(array_position(p_recent, c.namespace), 0),
                                       c.priority desc, c.run_at, c.id),
               bool_or(c.concurrency_key is not null),
               bool_or(c.rank = per_space)
          into ids, keyed, capped
        from unnest(spaces) as ns(namespace)
        cross join lateral (
            select e.id, e.namespace, e.concurrency_key, e.priority, e.run_at,
                   row_number() over (order by e.priority desc, e.run_at, e.id) as rank
            from engine_runs e
            where e.status = 'queued' and e.namespace = ns.namespace and e.run_at <= now()
              and (p_kinds is null or e.kind = any (p_kinds))
              -- A run whose key is saturated cannot start: reading it would take a candidate's
              -- place (checked again under the key's lock below).
              and (e.concurrency_key is null or (
                  select count(*) from engine_runs k
                  where k.concurrency_key = e.concurrency_key and k.status = 'running'
                  ) < coalesce(e.concurrency_limit, 1))
            order by e.priority desc, e.run_at, e.id
            limit per_space
        ) c;
        if ids is null then
            return;
        end if;
        exit when keyed;
        -- No candidate has a concurrency key (the common case): lock and take them in one
        -- statement, in fairness order. Runs another claimer holds are skipped; when that leaves
        -- this claim short and some namespace had more than was read, read further.
        return query
            with taken as (
                select e.id from unnest(ids) with ordinality as u(id, ord)
                join engine_runs e on e.id = u.id
                where e.status = 'queued'
                order by u.ord
                limit p_limit - got
                for update of e skip locked
            )
            update engine_runs r
            set status = 'running', attempt = r.attempt + 1, worker_id = p_worker,
                lease_expires_at = now() + p_lease, started_at = coalesce(r.started_at, now()),
                updated_at = now()
            from taken where r.id = taken.id
            returning r.*;
        get diagnostics took = row_count;
        got := got + took;
        if got >= p_limit or not capped or per_space >= p_limit * 4 then
            return;
        end if;
        per_space := least(p_limit * 4, per_space * 2);
    end loop;
    -- Some candidate has a concurrency key: check and lock them one by one (what earlier rounds
    -- took is running now and left out).
    for candidate in
        select e.id, e.concurrency_key, e.concurrency_limit
        from unnest(ids) with ordinality as u(id, ord) join engine_runs e on e.id = u.id
        where e.status = 'queued'
        order by u.ord
    loop
        exit when got + cardinality(picked) + cardinality(keyless) >= p_limit;
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
