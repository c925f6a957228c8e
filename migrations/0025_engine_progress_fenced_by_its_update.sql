-- engine_commit, as in 0023, with one change: a progress report's update of the run row is
-- fenced by the update's own condition. Ownership was tested by a read of the statement's
-- snapshot only, so an owner that lost its run while its commit waited for the row (the reaper
-- or a cancel held it) still wrote its last progress numbers over the new owner's: PostgreSQL
-- re-checks an update's own conditions against the newest row, not the conditions of the
-- statement's other parts. (Its log and progress event rows still land: they record what that
-- attempt did.)

create or replace function engine_commit(
    -- checkpoints: batch position, fence (run, attempt, worker), step
    c_pos integer[], c_run uuid[], c_attempt integer[], c_worker uuid[],
    c_name text[], c_output jsonb[], c_started timestamptz[],
    -- progress and log events, in submission order
    e_pos integer[], e_run uuid[], e_attempt integer[], e_worker uuid[],
    e_namespace text[], e_kind text[], e_data jsonb[], e_done bigint[], e_total bigint[],
    -- successes
    s_pos integer[], s_run uuid[], s_attempt integer[], s_worker uuid[], s_output jsonb[],
    -- the claim (p_limit 0: none)
    p_worker uuid, p_kinds text[], p_limit integer, p_lease interval, p_recent text[],
    out fenced integer[], out claimed json)
language plpgsql
-- As 0024 set it (a replaced function keeps no settings of its own).
set enable_seqscan = off
as $$
declare
    missed integer[];
    parents uuid[];
    parent uuid;
begin
    fenced := '{}';
    if cardinality(c_pos) > 0 then
        with u as (
            select * from unnest(c_pos, c_run, c_attempt, c_worker, c_name, c_output, c_started)
                as u(pos, run_id, attempt, worker_id, name, output, started_at)
        ), written as (
            insert into engine_steps (run_id, name, output, attempt, started_at)
            select u.run_id, u.name, u.output, u.attempt, u.started_at from u
            join engine_runs r on r.id = u.run_id and r.attempt = u.attempt and r.worker_id = u.worker_id
            on conflict (run_id, name) do nothing
            returning run_id, name
        )
        -- Fenced: not written and the run is not this attempt's. A step already checkpointed
        -- while the attempt still owns the run was written by an owner that lost it a moment
        -- ago (its statement saw the run before the reaper took it back); the step did run,
        -- and this attempt carries on.
        select array_agg(u.pos) into missed from u
        where not exists (select 1 from written w where w.run_id = u.run_id and w.name = u.name)
          and not exists (select 1 from engine_runs r where r.id = u.run_id and r.attempt = u.attempt
                          and r.worker_id = u.worker_id);
        fenced := fenced || coalesce(missed, '{}');
    end if;
    if cardinality(e_pos) > 0 then
        with u as (
            select * from unnest(e_pos, e_run, e_attempt, e_worker, e_namespace, e_kind, e_data, e_done, e_total)
                as u(pos, run_id, attempt, worker_id, namespace, kind, data, done, total)
        ), owned as (
            select u.* from u
            where exists (select 1 from engine_runs r where r.id = u.run_id and r.attempt = u.attempt
                          and r.worker_id = u.worker_id)
        ), progressed as (
            -- Fenced in the update itself: the owner test above reads the statement's snapshot,
            -- and a run taken back since is re-checked here against its newest row.
            update engine_runs r set progress_done = p.done, progress_total = p.total, updated_at = now()
            from (select distinct on (run_id) run_id, attempt, worker_id, done, total from owned
                  where kind = 'progress' order by run_id, pos desc) p
            where r.id = p.run_id and r.attempt = p.attempt and r.worker_id = p.worker_id
        ), inserted as (
            insert into engine_events (run_id, namespace, kind, data)
            select run_id, namespace, kind, data from owned order by pos
        )
        select array_agg(u.pos) into missed from u where u.pos not in (select pos from owned);
        fenced := fenced || coalesce(missed, '{}');
    end if;
    if cardinality(s_pos) > 0 then
        with u as (
            select * from unnest(s_pos, s_run, s_attempt, s_worker, s_output)
                as u(pos, id, attempt, worker_id, output)
        ), done as (
            update engine_runs r set status = 'succeeded', output = u.output, error = null,
                finished_at = now(), worker_id = null, lease_expires_at = null, updated_at = now()
            from u
            where r.id = u.id and r.attempt = u.attempt and r.worker_id = u.worker_id
            returning r.id, r.parent_id
        )
        select array_agg(u.pos) filter (where d.id is null),
               array_agg(distinct d.parent_id) filter (where d.parent_id is not null)
          into missed, parents
        from u left join done d on d.id = u.id;
        fenced := fenced || coalesce(missed, '{}');
        foreach parent in array coalesce(parents, '{}') loop
            perform engine_wake_parent(parent);
        end loop;
    end if;
    -- Last, so the slots and concurrency keys this batch's outcomes freed count.
    if p_limit > 0 then
        select json_agg(c) into claimed from engine_claim(p_worker, p_kinds, p_limit, p_lease, p_recent) c;
    end if;
end;
$$;
