-- Drift (DRIFT-001..007), incidents (INC-001..011), policies (POL-001..010), approvals
-- (APPR-001..005) and reconciliation artifacts.

create table drift_policies (
    tenant_id                 uuid primary key references tenants (id) on delete cascade,
    ttl_critical_hours        integer not null default 24 check (ttl_critical_hours > 0),
    ttl_high_hours            integer not null default 48 check (ttl_high_hours > 0),
    ttl_medium_hours          integer not null default 72 check (ttl_medium_hours > 0),
    ttl_low_hours             integer not null default 168 check (ttl_low_hours > 0),
    sla_enforcement           boolean not null default true,
    auto_create_incidents     boolean not null default true,
    block_on_expired          boolean not null default true,
    block_on_active_drift     boolean not null default false,
    notify_min_severity       text not null default 'high' check (notify_min_severity in ('critical', 'high', 'medium', 'low')),
    expiration_warning_hours  integer not null default 12 check (expiration_warning_hours >= 0),
    closed_retention_days     integer not null default 365 check (closed_retention_days > 0),
    artifact_retention_days   integer not null default 365 check (artifact_retention_days > 0),
    approval_retention_days   integer not null default 365 check (approval_retention_days > 0),
    -- Incident actions that need an approval first: acknowledge, extend_ttl, close, reconcile.
    approval_required_for     text[] not null default '{}',
    approver_roles            text[] not null default '{admin}',
    updated_at                timestamptz not null default now()
);

create table drift_checks (
    id                 uuid primary key,
    tenant_id          uuid not null references tenants (id) on delete cascade,
    environment_id     uuid not null references environments (id) on delete cascade,
    run_id             uuid not null unique,
    trigger            text not null check (trigger in ('scheduled', 'manual')),
    status             text not null check (status in ('completed', 'skipped')),
    workflows          integer not null default 0,
    in_sync            integer not null default 0,
    drifted            integer not null default 0,
    out_of_date        integer not null default 0,
    missing            integer not null default 0,
    untracked          integer not null default 0,
    incidents_opened   integer not null default 0,
    incidents_updated  integer not null default 0,
    duration_ms        integer not null default 0,
    note               text,
    details            jsonb not null default '[]',
    created_at         timestamptz not null default now()
);
create index drift_checks_environment on drift_checks (tenant_id, environment_id, id desc);

create table drift_incidents (
    id                uuid primary key,
    tenant_id         uuid not null references tenants (id) on delete cascade,
    environment_id    uuid not null references environments (id) on delete cascade,
    status            text not null check (status in ('detected', 'acknowledged', 'stabilized', 'reconciled', 'closed')),
    severity          text not null check (severity in ('critical', 'high', 'medium', 'low')),
    title             text not null,
    owner_user_id     uuid,
    ticket_ref        text,
    expires_at        timestamptz not null,
    expired           boolean not null default false,
    escalated_at      timestamptz,
    warned_at         timestamptz,
    resolution_type   text check (resolution_type in ('promote', 'revert', 'replace', 'acknowledge')),
    resolution_notes  text,
    -- Per affected workflow: id, name, canonical id, kind (drift | untracked), risk, summary.
    affected          jsonb not null default '[]',
    -- The drift as found: per workflow its hashes and structural diff.
    payload           jsonb not null default '{}',
    detected_by_check uuid,
    last_detected_at  timestamptz not null default now(),
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    acknowledged_at   timestamptz,
    stabilized_at     timestamptz,
    reconciled_at     timestamptz,
    closed_at         timestamptz
);
create index drift_incidents_tenant on drift_incidents (tenant_id, id desc);
create index drift_incidents_open on drift_incidents (environment_id) where status <> 'closed';

create table drift_approvals (
    id                 uuid primary key,
    tenant_id          uuid not null references tenants (id) on delete cascade,
    incident_id        uuid not null references drift_incidents (id) on delete cascade,
    action             text not null check (action in ('acknowledge', 'extend_ttl', 'close', 'reconcile')),
    payload            jsonb not null default '{}',
    status             text not null default 'pending' check (status in ('pending', 'approved', 'rejected')),
    requested_by       uuid,
    requested_by_label text not null,
    decided_by         uuid,
    decided_by_label   text,
    comment            text,
    created_at         timestamptz not null default now(),
    decided_at         timestamptz
);
create index drift_approvals_incident on drift_approvals (incident_id, created_at);

create table reconciliation_artifacts (
    id          uuid primary key,
    tenant_id   uuid not null references tenants (id) on delete cascade,
    incident_id uuid not null references drift_incidents (id) on delete cascade,
    run_id      uuid not null unique,
    resolution  text not null,
    workflows   jsonb not null,
    created_at  timestamptz not null default now()
);

-- Drift accepted as-is (the `acknowledge` resolution): this content of this workflow is not
-- drift any more.
create table drift_accepted (
    environment_id uuid not null references environments (id) on delete cascade,
    provider_id    text not null,
    content_hash   text not null,
    incident_id    uuid,
    accepted_at    timestamptz not null default now(),
    primary key (environment_id, provider_id)
);

-- Scheduled drift checks for environments that exist already (new ones get theirs when created).
insert into engine_schedules (id, namespace, name, cron, timezone, kind, input, enabled, missed, next_fire_at)
select gen_random_uuid(), e.tenant_id::text, 'environment:' || e.id || ':drift', '*/30 * * * *', 'UTC', 'drift.check',
       jsonb_build_object('tenant_id', e.tenant_id, 'environment_id', e.id, 'trigger', 'scheduled', 'refresh', true),
       true, 'skip', now() + interval '30 minutes'
from environments e
on conflict (namespace, name) do nothing;
