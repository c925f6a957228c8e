-- Foundation: tenancy, identity, sessions, API keys, invitations, audit, secrets, idempotency,
-- and the engine's worker registry.
--
-- Every tenant-owned table carries tenant_id, and every store query filters on it.
-- Roles are checked text columns mirrored by the Rust enum domain::Role.

create table tenants (
    id           uuid primary key,
    name         text not null check (length(name) between 1 and 200),
    slug         text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    -- Seat limit (TEAM-005); null = unlimited. The entitlements issue drives it from the plan.
    member_limit integer check (member_limit > 0),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);

create table users (
    id            uuid primary key,
    email         text not null check (length(email) between 3 and 320),
    name          text not null check (length(name) between 1 and 200),
    password_hash text not null,
    disabled_at   timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create unique index users_email_key on users (lower(email));

create table platform_admins (
    user_id    uuid primary key references users (id) on delete cascade,
    granted_by uuid references users (id) on delete set null,
    created_at timestamptz not null default now()
);

create table memberships (
    tenant_id  uuid not null references tenants (id) on delete cascade,
    user_id    uuid not null references users (id) on delete cascade,
    role       text not null check (role in ('viewer', 'developer', 'admin')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, user_id)
);
create index memberships_user on memberships (user_id);

create table invitations (
    id          uuid primary key,
    tenant_id   uuid not null references tenants (id) on delete cascade,
    email       text not null,
    role        text not null check (role in ('viewer', 'developer', 'admin')),
    token_hash  bytea not null unique,
    invited_by  uuid references users (id) on delete set null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    accepted_at timestamptz,
    accepted_by uuid references users (id) on delete set null,
    revoked_at  timestamptz
);
-- At most one open invitation per (tenant, email).
create unique index invitations_open on invitations (tenant_id, lower(email))
    where accepted_at is null and revoked_at is null;
create index invitations_tenant on invitations (tenant_id, id desc);

create table sessions (
    id         uuid primary key,
    user_id    uuid not null references users (id) on delete cascade,
    -- The tenant this session acts in; null for a platform admin without memberships.
    tenant_id  uuid references tenants (id) on delete set null,
    token_hash bytea not null unique,
    ip         text,
    user_agent text,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz
);
create index sessions_user on sessions (user_id);

create table api_keys (
    id           uuid primary key,
    tenant_id    uuid not null references tenants (id) on delete cascade,
    name         text not null check (length(name) between 1 and 200),
    prefix       text not null unique,
    secret_hash  bytea not null unique,
    role         text not null check (role in ('viewer', 'developer', 'admin')),
    created_by   uuid references users (id) on delete set null,
    rotated_from uuid references api_keys (id) on delete set null,
    created_at   timestamptz not null default now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
create index api_keys_tenant on api_keys (tenant_id, id desc);

create table audit_logs (
    id                   uuid primary key,
    -- null for platform-level actions (tenant creation, platform admins).
    tenant_id            uuid references tenants (id) on delete cascade,
    occurred_at          timestamptz not null default now(),
    actor_user_id        uuid,
    actor_api_key_id     uuid,
    -- Kept verbatim so the trail survives the actor's deletion.
    actor_label          text not null,
    impersonator_user_id uuid,
    ip                   text,
    request_id           text,
    action               text not null,
    target_type          text not null,
    target_id            text,
    provider             text,
    old_value            jsonb,
    new_value            jsonb
);
create index audit_logs_tenant on audit_logs (tenant_id, id desc);
create index audit_logs_tenant_action on audit_logs (tenant_id, action, id desc);

-- Every secret the product stores (provider API keys, git tokens, SMTP passwords, webhook URLs)
-- lives here, AES-256-GCM encrypted under the master key named by key_id; other tables reference
-- a secret by id. One table makes key rotation one pass.
create table secrets (
    id         uuid primary key,
    tenant_id  uuid references tenants (id) on delete cascade,
    purpose    text not null,
    key_id     text not null,
    ciphertext bytea not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index secrets_key_id on secrets (key_id);

-- Idempotency-Key records for POSTs that create things. scope = who sent it (tenant + principal).
create table idempotency_keys (
    scope          text not null,
    key            text not null,
    request_hash   bytea not null,
    status_code    integer,
    content_type   text,
    -- The response body, sealed (it may hold a secret such as a new API key).
    response_key_id text,
    response_body  bytea,
    created_at     timestamptz not null default now(),
    completed_at   timestamptz,
    primary key (scope, key)
);
create index idempotency_keys_created on idempotency_keys (created_at);

-- Engine: the worker registry (the engine issue builds the queue on top).
create table engine_workers (
    id           uuid primary key,
    name         text not null,
    host         text not null,
    pid          integer not null,
    version      text not null,
    concurrency  integer not null check (concurrency > 0),
    busy_slots   integer not null default 0,
    started_at   timestamptz not null default now(),
    heartbeat_at timestamptz not null default now(),
    stopped_at   timestamptz
);
