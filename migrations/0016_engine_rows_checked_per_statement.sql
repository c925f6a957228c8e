-- A run's steps and events are written in batches (one statement per commit for every run in
-- it), and a foreign key checks the run once per row with a query of its own: about half of what
-- a checkpoint insert cost. Every writer already checks the run in the same statement (steps and
-- progress/log events are fenced on the running attempt, state events come from the runs table's
-- own triggers, `queue::log` locks the run), so the keys go; deleting runs (the prune job, a
-- parent's children) deletes their steps and events here, as `on delete cascade` did.
alter table engine_steps drop constraint engine_steps_run_id_fkey;
alter table engine_events drop constraint engine_events_run_id_fkey;

create function engine_runs_deleted_rows() returns trigger
language plpgsql as $$
begin
    delete from engine_steps s using gone g where s.run_id = g.id;
    delete from engine_events e using gone g where e.run_id = g.id;
    return null;
end
$$;

create trigger engine_runs_deleted_rows after delete on engine_runs
    referencing old table as gone
    for each statement execute function engine_runs_deleted_rows();
