-- Impersonation (PRD 3.17.2, PLAT-005..010): a platform admin acts as a tenant user, for a
-- stated reason and a bounded time, through a session of its own that names the admin. Every
-- change made through it is audited with the admin as impersonator.

alter table sessions add column impersonator_user_id uuid references users (id) on delete cascade;

create table impersonations (
    id             uuid primary key,
    -- The session the admin acts through (revoked when the impersonation ends).
    session_id     uuid not null unique references sessions (id) on delete cascade,
    admin_user_id  uuid not null references users (id) on delete cascade,
    target_user_id uuid not null references users (id) on delete cascade,
    tenant_id      uuid not null references tenants (id) on delete cascade,
    reason         text not null,
    ip             text,
    user_agent     text,
    started_at     timestamptz not null default now(),
    expires_at     timestamptz not null,
    ended_at       timestamptz,
    -- Who ended it (the admin's or another admin's email, or `logout`); null while it runs or
    -- when it ran out.
    ended_by       text
);
create index impersonations_admin on impersonations (admin_user_id, id desc);
create index impersonations_target on impersonations (target_user_id, id desc);
create index impersonations_tenant on impersonations (tenant_id, id desc);
