-- Notifications (PRD 3.15, NOTIF-001..009): where a tenant's alerts go (channels), which events
-- go where (rules), what happened (alert events) and what became of each delivery.

-- A channel: a Slack incoming webhook, a list of email recipients, or a custom webhook. Slack and
-- webhook URLs (and a webhook's signing secret) are sealed in `secrets`; `config` holds only
-- what may be shown: recipients, and the target's host for display.
create table notification_channels (
    id              uuid primary key,
    tenant_id       uuid not null references tenants (id) on delete cascade,
    name            text not null,
    kind            text not null check (kind in ('slack', 'email', 'webhook')),
    enabled         boolean not null default true,
    config          jsonb not null default '{}',
    secret_id       uuid,
    last_tested_at  timestamptz,
    last_test_ok    boolean,
    last_test_error text,
    created_by      uuid,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    unique (tenant_id, name)
);

-- A rule: events of one type (optionally only those of one environment) go to its channels.
create table notification_rules (
    id             uuid primary key,
    tenant_id      uuid not null references tenants (id) on delete cascade,
    event_type     text not null,
    environment_id uuid references environments (id) on delete cascade,
    enabled        boolean not null default true,
    created_by     uuid,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);
create index notification_rules_event on notification_rules (tenant_id, event_type) where enabled;

create table notification_rule_channels (
    rule_id    uuid not null references notification_rules (id) on delete cascade,
    channel_id uuid not null references notification_channels (id) on delete cascade,
    primary key (rule_id, channel_id)
);
create index notification_rule_channels_channel on notification_rule_channels (channel_id);

-- Every alert raised, matched or not (the tenant's alert history); `run_id` is the delivery run
-- when some enabled rule sent it to an enabled channel.
create table alert_events (
    id             uuid primary key,
    tenant_id      uuid not null references tenants (id) on delete cascade,
    event_type     text not null,
    environment_id uuid,
    title          text not null,
    data           jsonb not null default '{}',
    run_id         uuid,
    created_at     timestamptz not null default now()
);
create index alert_events_tenant on alert_events (tenant_id, id desc);

-- What became of an alert on one channel.
create table notification_deliveries (
    event_id   uuid not null references alert_events (id) on delete cascade,
    channel_id uuid not null references notification_channels (id) on delete cascade,
    tenant_id  uuid not null,
    status     text not null check (status in ('sent', 'failed', 'retrying', 'skipped')),
    attempts   integer not null default 1,
    error      text,
    updated_at timestamptz not null default now(),
    primary key (event_id, channel_id)
);
create index notification_deliveries_channel on notification_deliveries (channel_id, updated_at desc);
