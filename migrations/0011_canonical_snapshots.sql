-- Canonical workflows (CAN-001..019): the tenant's Git repository is the source of truth;
-- `workflow_env_map` links each canonical workflow to its copy in each environment.
-- Snapshots (SNAP-001..012): an environment's state as a Git commit, with per-workflow hashes
-- kept here so snapshots can be listed, compared and previewed without reading Git.

-- The tenant's canonical repository (one per tenant), its credentials and the GitHub settings
-- used for pull requests and push webhooks.
create table canonical_repos (
    tenant_id      uuid primary key references tenants (id) on delete cascade,
    url            text not null,
    branch         text not null default 'main',
    path           text not null default 'canonical',
    auth_kind      text not null check (auth_kind in ('none', 'token', 'ssh_key')),
    username       text,
    secret_id      uuid,
    -- The secret GitHub signs push webhooks with (X-Hub-Signature-256), sealed in `secrets`.
    webhook_secret_id uuid,
    -- GitHub's REST API for pull requests (https://api.github.com, or an Enterprise server).
    github_api_url text,
    last_sync_at   timestamptz,
    last_commit    text,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);

create table canonical_workflows (
    tenant_id    uuid not null references tenants (id) on delete cascade,
    -- The canonical id: the file's name in Git (`<path>/workflows/<id>.json`).
    id           text not null,
    provider     text not null check (provider in ('n8n', 'make')),
    name         text not null,
    -- Hash of the normalised content (domain::workflow::content_hash) of the Git version.
    content_hash text not null,
    -- The Git blob id of its file: an unchanged file is not parsed again.
    git_blob     text,
    git_commit   text,
    definition   jsonb compression lz4 not null,
    -- `committed` (on the canonical branch) or `pending` (on an onboarding branch whose pull
    -- request is not merged yet).
    git_state    text not null default 'committed' check (git_state in ('committed', 'pending')),
    created_by   uuid,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    -- Its file was removed from Git.
    deleted_at   timestamptz,
    primary key (tenant_id, id)
);
create index canonical_workflows_name on canonical_workflows (tenant_id, lower(name), id);
create index canonical_workflows_hash on canonical_workflows (tenant_id, provider, content_hash) where deleted_at is null;

create table workflow_env_map (
    tenant_id      uuid not null,
    canonical_id   text not null,
    environment_id uuid not null references environments (id) on delete cascade,
    -- The workflow's id in the environment.
    provider_id    text not null,
    -- The canonical content hash the environment's copy last matched (at linking, deployment
    -- or reconciliation): a later difference tells which side moved.
    linked_hash    text not null,
    linked_by      uuid,
    linked_at      timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    primary key (environment_id, provider_id),
    unique (tenant_id, canonical_id, environment_id),
    foreign key (tenant_id, canonical_id) references canonical_workflows (tenant_id, id) on delete cascade
);
create index workflow_env_map_canonical on workflow_env_map (tenant_id, canonical_id);

-- Onboarding pull requests (CAN-018).
create table onboarding_pulls (
    tenant_id   uuid not null references tenants (id) on delete cascade,
    run_id      uuid primary key,
    branch      text not null,
    number      bigint,
    url         text,
    canonical_ids text[] not null,
    merged      boolean not null default false,
    created_at  timestamptz not null default now()
);

create table snapshots (
    id             uuid primary key,
    tenant_id      uuid not null references tenants (id) on delete cascade,
    environment_id uuid not null references environments (id) on delete cascade,
    kind           text not null check (kind in ('manual_backup', 'auto_backup', 'pre_promotion', 'post_promotion', 'pre_restore')),
    reason         text,
    -- The run that took it (a retried run records each kind once; a promotion run takes a
    -- pre- and a post-promotion snapshot).
    run_id         uuid not null,
    created_by     uuid,
    triggered_by   text not null,
    promotion_id   uuid,
    git_commit     text not null,
    -- The repository folder the files are in at that commit.
    git_path       text not null,
    workflow_count integer not null,
    -- Per workflow: {"id", "name", "hash" (content), "storage_hash"}.
    workflows      jsonb not null,
    created_at     timestamptz not null default now(),
    unique (run_id, kind)
);
create index snapshots_environment on snapshots (tenant_id, environment_id, created_at desc, id desc);

-- Restores (SNAP-011): which snapshot was restored into which environment, by which run; the
-- run's status and output are the outcome.
create table restores (
    run_id         uuid primary key,
    tenant_id      uuid not null references tenants (id) on delete cascade,
    environment_id uuid not null references environments (id) on delete cascade,
    snapshot_id    uuid references snapshots (id) on delete set null,
    workflow_ids   text[],
    requested_by   uuid,
    created_at     timestamptz not null default now()
);
create index restores_environment on restores (tenant_id, environment_id, created_at desc);

-- Automatic (scheduled) snapshots older than this many days are pruned; null = the default.
alter table environment_git add column snapshot_retention_days integer check (snapshot_retention_days between 1 and 3650);
