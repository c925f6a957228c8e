-- Cron schedules of the engine: each fires a run of `kind` with `input` at every tick of `cron`
-- (in `timezone`), exactly once per tick however many workers run the scheduler: due rows are
-- locked with `skip locked`, and each run's idempotency key is the schedule and its tick.
create table engine_schedules (
    id            uuid primary key,
    namespace     text not null,
    name          text not null,
    cron          text not null,
    timezone      text not null default 'UTC',
    kind          text not null,
    input         jsonb not null default '{}',
    enabled       boolean not null default true,
    -- What to do with ticks missed while nothing ran: fire once for the latest, or skip them.
    missed        text not null default 'fire_once' check (missed in ('fire_once', 'skip')),
    next_fire_at  timestamptz not null,
    last_fired_at timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    unique (namespace, name)
);
create index engine_schedules_due on engine_schedules (next_fire_at) where enabled;
