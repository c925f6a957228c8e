-- Environments (provider instances a tenant manages) and what syncs copy from them: workflows,
-- credentials (metadata only), tags, the instance's users, executions; health checks.
-- Every row carries tenant_id; every query filters on it.

-- Tenant-configurable environment types (ENV-010): a label and the class that drives policy.
create table environment_types (
    id         uuid primary key,
    tenant_id  uuid not null references tenants (id) on delete cascade,
    key        text not null,
    label      text not null,
    class      text not null check (class in ('dev', 'staging', 'production')),
    sort_order integer not null default 0,
    created_at timestamptz not null default now(),
    unique (tenant_id, key)
);

create table environments (
    id                uuid primary key,
    tenant_id         uuid not null references tenants (id) on delete cascade,
    name              text not null,
    provider          text not null check (provider in ('n8n', 'make')),
    base_url          text not null,
    -- The API key, sealed in `secrets`.
    api_key_secret_id uuid not null,
    class             text not null check (class in ('dev', 'staging', 'production')),
    env_type          text,
    drift_mode        text not null default 'warn_only'
                      check (drift_mode in ('warn_only', 'manual_override', 'require_attestation')),
    provider_version  text,
    capabilities      jsonb not null default '{}',
    -- Requests per second and in flight against this instance.
    rate_limit        double precision not null default 100 check (rate_limit > 0),
    max_concurrency   integer not null default 4 check (max_concurrency between 1 and 64),
    last_sync_run_id  uuid,
    last_sync_at      timestamptz,
    last_sync_status  text,
    last_sync_error   text,
    -- Highest execution id synced so far (incremental execution sync).
    executions_high_water bigint,
    health_status     text not null default 'unknown'
                      check (health_status in ('unknown', 'healthy', 'unreachable', 'auth_failed', 'error')),
    last_heartbeat_at timestamptz,
    last_latency_ms   integer,
    created_by        uuid,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    unique (tenant_id, name)
);
create index environments_tenant on environments (tenant_id, name);

-- A workflow as last seen in an environment. `definition` is the provider's JSON as fetched;
-- `content_hash` is the hash of its normalised form (domain::workflow).
create table env_workflows (
    environment_id   uuid not null references environments (id) on delete cascade,
    tenant_id        uuid not null,
    provider_id      text not null,
    name             text not null,
    active           boolean not null default false,
    archived         boolean not null default false,
    tags             text[] not null default '{}',
    node_count       integer not null default 0,
    content_hash     text not null,
    -- lz4: definitions are large and rewritten at every sync; pglz costs several times more CPU.
    definition       jsonb compression lz4 not null,
    provider_updated_at timestamptz,
    -- The sync run that last saw it; one that did not see it at the end of a full walk marks it
    -- deleted in the provider.
    seen_by_run      uuid,
    deleted_at       timestamptz,
    synced_at        timestamptz not null default now(),
    primary key (environment_id, provider_id)
);
create index env_workflows_tenant_name on env_workflows (tenant_id, lower(name), environment_id, provider_id);
create index env_workflows_env_name on env_workflows (environment_id, lower(name), provider_id);

create table env_credentials (
    environment_id uuid not null references environments (id) on delete cascade,
    tenant_id      uuid not null,
    provider_id    text not null,
    name           text not null,
    type           text not null,
    -- `provider`: listed by the instance; `derived`: known only from workflows' references.
    source         text not null check (source in ('provider', 'derived')),
    provider_created_at timestamptz,
    provider_updated_at timestamptz,
    seen_by_run    uuid,
    deleted_at     timestamptz,
    synced_at      timestamptz not null default now(),
    primary key (environment_id, provider_id)
);

create table env_tags (
    environment_id uuid not null references environments (id) on delete cascade,
    tenant_id      uuid not null,
    provider_id    text not null,
    name           text not null,
    seen_by_run    uuid,
    deleted_at     timestamptz,
    synced_at      timestamptz not null default now(),
    primary key (environment_id, provider_id)
);

create table env_users (
    environment_id uuid not null references environments (id) on delete cascade,
    tenant_id      uuid not null,
    provider_id    text not null,
    email          text not null,
    first_name     text,
    last_name      text,
    role           text,
    is_pending     boolean not null default false,
    seen_by_run    uuid,
    deleted_at     timestamptz,
    synced_at      timestamptz not null default now(),
    primary key (environment_id, provider_id)
);

create table env_executions (
    environment_id uuid not null references environments (id) on delete cascade,
    tenant_id      uuid not null,
    provider_id    text not null,
    -- n8n's ids are numeric strings; kept as a number too for incremental sync and ordering.
    seq            bigint,
    workflow_id    text,
    status         text not null,
    mode           text,
    finished       boolean not null default false,
    started_at     timestamptz,
    stopped_at     timestamptz,
    error_message  text,
    synced_at      timestamptz not null default now(),
    primary key (environment_id, provider_id)
);
create index env_executions_tenant_time on env_executions (tenant_id, started_at desc, environment_id, provider_id);
create index env_executions_workflow on env_executions (environment_id, workflow_id, started_at desc);

create table environment_health_checks (
    id             bigserial primary key,
    environment_id uuid not null references environments (id) on delete cascade,
    tenant_id      uuid not null,
    checked_at     timestamptz not null default now(),
    status         text not null check (status in ('healthy', 'unreachable', 'auth_failed', 'error')),
    latency_ms     integer,
    version        text,
    error          text
);
create index environment_health_checks_env on environment_health_checks (environment_id, checked_at desc);

-- Which credential each workflow's nodes reference (CRED-002/003/005), rewritten with the
-- workflow at every sync.
create table env_workflow_credentials (
    environment_id uuid not null references environments (id) on delete cascade,
    tenant_id      uuid not null,
    workflow_id    text not null,
    node           text not null,
    cred_type      text not null,
    cred_name      text not null,
    cred_id        text,
    primary key (environment_id, workflow_id, node, cred_type)
);
create index env_workflow_credentials_cred on env_workflow_credentials (environment_id, cred_type, cred_name);
