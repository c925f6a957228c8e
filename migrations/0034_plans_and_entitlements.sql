-- Plans, subscriptions and entitlements (PROV-003/006/007/009/010, ENT-001..011, ADMIN-005/008/013/014,
-- SEC-009) and the billing records Stripe feeds (BILL-001..010).
--
-- A tenant subscribes to one plan per provider. What a plan grants is a set of features: flags
-- (on/off) and limits (a number, null = unlimited). A tenant's effective value of a feature for a
-- provider is, first match wins: an unexpired override for that provider, an unexpired override for
-- every provider, the plan of its subscription to that provider (or the provider's default plan
-- when it has none). Tenant-wide features (members, alerting, audit logs) take the best value over
-- the tenant's subscriptions.

-- Providers the platform offers (ADMIN-013). Disabled providers cannot be chosen for new environments.
create table providers (
    key         text primary key check (key in ('n8n', 'make')),
    name        text not null,
    description text not null default '',
    enabled     boolean not null default true,
    sort        integer not null default 0,
    updated_at  timestamptz not null default now()
);
insert into providers (key, name, description, enabled, sort) values
    ('n8n', 'n8n', 'Self-hosted or cloud n8n instances', true, 1),
    ('make', 'Make.com', 'Make.com (formerly Integromat) organizations', true, 2);

-- The feature catalog. The code's catalog (domain::entitlements::Feature) must match these rows
-- (a test checks); descriptions are shown in the feature matrix.
create table features (
    key         text primary key,
    kind        text not null check (kind in ('flag', 'limit')),
    scope       text not null check (scope in ('provider', 'tenant')),
    name        text not null,
    description text not null,
    sort        integer not null
);
insert into features (key, kind, scope, name, description, sort) values
    ('environments',         'limit', 'provider', 'Environments',          'Environments that may be connected for the provider', 1),
    ('members',              'limit', 'tenant',   'Team members',          'Members plus open invitations', 2),
    ('audit_retention_days', 'limit', 'tenant',   'Audit log retention',   'Days the audit log is kept (null: forever)', 3),
    ('audit_logs',           'flag',  'tenant',   'Audit logs',            'Reading and exporting the audit log', 4),
    ('git_backup',           'flag',  'provider', 'Git backup and restore','Backing environments up to Git and restoring from it', 5),
    ('scheduled_backups',    'flag',  'provider', 'Scheduled backups',     'Backups run on a schedule', 6),
    ('promotions',           'flag',  'provider', 'Environment promotion', 'Pipelines and promotions between environments', 7),
    ('workflow_diff',        'flag',  'provider', 'Workflow diff',         'Comparing workflows and snapshots', 8),
    ('drift_full_diff',      'flag',  'provider', 'Full drift diff',       'The field-level diff of a drift incident', 9),
    ('drift_sla',            'flag',  'provider', 'Drift TTL/SLA',         'Incident expiry, SLA and extensions', 10),
    ('drift_policies',       'flag',  'provider', 'Drift policies',        'Drift handling policies and approvals', 11),
    ('execution_metrics',    'flag',  'provider', 'Execution metrics',     'Execution analytics and observability', 12),
    ('alerting',             'flag',  'tenant',   'Alerting',              'Notification channels and rules', 13),
    ('credential_remapping', 'flag',  'provider', 'Credential remapping',  'Credential mappings applied by promotions', 14);

-- Plans per provider (PROV-007, ADMIN-008/014). price_cents null: custom pricing (assigned by
-- platform admins). stripe_price_id null: not purchasable by checkout.
create table plans (
    id              uuid primary key,
    provider        text not null references providers (key),
    key             text not null check (key ~ '^[a-z][a-z0-9_-]{1,39}$'),
    name            text not null,
    description     text not null default '',
    price_cents     integer check (price_cents >= 0),
    currency        text not null default 'usd',
    billing_interval text not null default 'month' check (billing_interval in ('month', 'year')),
    stripe_price_id text unique,
    is_default      boolean not null default false,
    public          boolean not null default true,
    active          boolean not null default true,
    rank            integer not null default 0,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    unique (provider, key)
);
create unique index plans_one_default on plans (provider) where is_default;

create table plan_features (
    plan_id uuid not null references plans (id) on delete cascade,
    feature text not null references features (key),
    -- flags: true/false; limits: a number or null (unlimited)
    value   jsonb,
    primary key (plan_id, feature)
);

-- The PRD's tiers (3.13.2), for every provider.
insert into plans (id, provider, key, name, description, price_cents, is_default, rank)
select gen_random_uuid(), p.key, t.key, t.name, t.description, t.price, t.key = 'free', t.rank
from providers p,
     (values ('free', 'Free', 'For trying things out', 0, 0),
             ('pro', 'Pro', 'For teams promoting workflows to production', 29900, 10),
             ('agency', 'Agency', 'For agencies running many environments', null, 20),
             ('enterprise', 'Enterprise', 'Governance for large organisations', null, 30))
         as t (key, name, description, price, rank);

insert into plan_features (plan_id, feature, value)
select pl.id, v.feature, case pl.key when 'free' then v.free when 'pro' then v.pro
                                     when 'agency' then v.agency else v.enterprise end
from plans pl,
     (values ('environments',         '2'::jsonb, '10'::jsonb, 'null'::jsonb, 'null'::jsonb),
             ('members',              '3',        '10',        'null',        'null'),
             ('audit_retention_days', '30',       '90',        '180',         'null'),
             ('audit_logs',           'false',    'true',      'true',        'true'),
             ('git_backup',           'false',    'true',      'true',        'true'),
             ('scheduled_backups',    'false',    'true',      'true',        'true'),
             ('promotions',           'false',    'true',      'true',        'true'),
             ('workflow_diff',        'false',    'true',      'true',        'true'),
             ('drift_full_diff',      'false',    'false',     'true',        'true'),
             ('drift_sla',            'false',    'false',     'true',        'true'),
             ('drift_policies',       'false',    'false',     'false',       'true'),
             ('execution_metrics',    'false',    'true',      'true',        'true'),
             ('alerting',             'false',    'true',      'true',        'true'),
             ('credential_remapping', 'false',    'false',     'false',       'true'))
         as v (feature, free, pro, agency, enterprise);

-- A tenant's subscription to a provider (PROV-006, BILL-001). `source`: auto (the free plan at
-- sign-up, PROV-010), checkout (Stripe), manual (assigned by a platform admin), grandfathered
-- (tenants that existed before plans).
create table tenant_subscriptions (
    id                     uuid primary key,
    tenant_id              uuid not null references tenants (id) on delete cascade,
    provider               text not null references providers (key),
    plan_id                uuid not null references plans (id),
    status                 text not null check (status in ('active', 'trialing', 'past_due', 'canceled',
                                                           'incomplete', 'incomplete_expired', 'unpaid', 'paused')),
    source                 text not null check (source in ('auto', 'checkout', 'manual', 'grandfathered')),
    stripe_subscription_id text unique,
    stripe_item_id         text,
    current_period_end     timestamptz,
    cancel_at_period_end   boolean not null default false,
    created_at             timestamptz not null default now(),
    updated_at             timestamptz not null default now(),
    unique (tenant_id, provider)
);
create index tenant_subscriptions_plan on tenant_subscriptions (plan_id);

-- Tenants that existed before plans keep everything they had.
insert into tenant_subscriptions (id, tenant_id, provider, plan_id, status, source)
select gen_random_uuid(), t.id, pl.provider, pl.id, 'active', 'grandfathered'
from tenants t join plans pl on pl.key = 'enterprise';

-- Per-tenant overrides (ENT-008/009): provider null = every provider.
create table tenant_feature_overrides (
    id         uuid primary key,
    tenant_id  uuid not null references tenants (id) on delete cascade,
    provider   text references providers (key),
    feature    text not null references features (key),
    value      jsonb,
    reason     text not null,
    expires_at timestamptz,
    created_by uuid references users (id) on delete set null,
    created_at timestamptz not null default now()
);
create unique index tenant_feature_overrides_one
    on tenant_feature_overrides (tenant_id, coalesce(provider, ''), feature);

-- Refused feature access (ENT-011): who asked for what their plan does not include.
create table feature_denials (
    id        bigint generated always as identity primary key,
    tenant_id uuid not null references tenants (id) on delete cascade,
    user_id   uuid references users (id) on delete set null,
    feature   text not null,
    provider  text,
    action    text not null,
    at        timestamptz not null default now()
);
create index feature_denials_tenant on feature_denials (tenant_id, at desc);
create index feature_denials_at on feature_denials (at);

-- Billing (BILL-*): the tenant's Stripe customer, invoices as Stripe reports them, and the
-- webhook events processed (each exactly once).
create table billing_customers (
    tenant_id          uuid primary key references tenants (id) on delete cascade,
    stripe_customer_id text not null unique,
    created_at         timestamptz not null default now()
);

create table billing_invoices (
    stripe_invoice_id  text primary key,
    tenant_id          uuid not null references tenants (id) on delete cascade,
    number             text,
    status             text,
    currency           text not null,
    amount_due         bigint not null,
    amount_paid        bigint not null,
    hosted_invoice_url text,
    period_start       timestamptz,
    period_end         timestamptz,
    created            timestamptz not null,
    updated_at         timestamptz not null default now()
);
create index billing_invoices_tenant on billing_invoices (tenant_id, created desc);

create table stripe_events (
    id           text primary key,
    kind         text not null,
    tenant_id    uuid references tenants (id) on delete set null,
    outcome      text not null,
    received_at  timestamptz not null default now()
);
create index stripe_events_received on stripe_events (received_at);
