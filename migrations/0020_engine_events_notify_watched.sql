-- Event notifications only for namespaces someone is watching.
--
-- Every transaction that sends NOTIFY holds PostgreSQL's notification-queue lock from before its
-- commit until the commit is flushed, so notifying transactions commit one at a time: sampling
-- `pg_stat_activity` during `bench engine` showed commit lanes waiting on it (`Lock:object`) as
-- often as a third of the time they were busy. The engine's event trigger notified for every
-- statement that wrote events, watched or not. Now an API process that serves live streams of a
-- namespace registers it here (and keeps the registration fresh while it has subscribers), and
-- the trigger notifies only registered namespaces. A run nobody watches commits without NOTIFY;
-- streams lose nothing either way, because the API also polls the namespaces it serves (a
-- transaction that checked this table just before a registration committed is read at that
-- poll).

create table engine_watched_namespaces (
    namespace text primary key,
    -- The registration lapses at this time unless an API process renews it.
    until     timestamptz not null
);

create or replace function engine_events_notify() returns trigger
language plpgsql as $$
begin
    perform pg_notify('engine_events', n.namespace)
    from (select distinct namespace from new_rows) n
    where exists (select 1 from engine_watched_namespaces w
                  where w.namespace = n.namespace and w.until > now());
    return null;
end;
$$;
