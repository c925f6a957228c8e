-- Promotions (PIPE-001..007, PROMO-001..009, DEP-001..008, CRED-007, credential remapping).

-- Pipelines: ordered stages (source → target) with gates, policy flags, approvals and windows,
-- kept as a JSON document validated by domain::pipelines (the stages live and die together).
create table pipelines (
    id          uuid primary key,
    tenant_id   uuid not null references tenants (id) on delete cascade,
    name        text not null,
    description text,
    provider    text not null check (provider in ('n8n', 'make')),
    stages      jsonb not null,
    active      boolean not null default true,
    created_by  uuid,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    deleted_at  timestamptz
);
create unique index pipelines_name on pipelines (tenant_id, lower(name)) where deleted_at is null;

-- Credential remapping per (source, target) environment pair: a source credential (by its
-- type and id) becomes this target credential at promotion.
create table credential_mappings (
    tenant_id             uuid not null references tenants (id) on delete cascade,
    source_environment_id uuid not null references environments (id) on delete cascade,
    target_environment_id uuid not null references environments (id) on delete cascade,
    credential_type       text not null,
    source_credential_id  text not null,
    source_name           text not null,
    target_credential_id  text not null,
    target_name           text not null,
    updated_by            uuid,
    updated_at            timestamptz not null default now(),
    primary key (source_environment_id, target_environment_id, credential_type, source_credential_id)
);
create index credential_mappings_tenant on credential_mappings (tenant_id, source_environment_id, target_environment_id);

create table promotions (
    id                    uuid primary key,
    tenant_id             uuid not null references tenants (id) on delete cascade,
    pipeline_id           uuid not null references pipelines (id),
    stage_index           integer not null,
    source_environment_id uuid not null references environments (id) on delete cascade,
    target_environment_id uuid not null references environments (id) on delete cascade,
    workflow_ids          text[] not null,
    status                text not null check (status in ('pending', 'pending_approval', 'approved', 'running',
                                                          'completed', 'failed', 'rejected', 'cancelled')),
    run_id                uuid,
    requested_by          uuid,
    requested_by_label    text not null,
    note                  text,
    force                 boolean not null default false,
    scheduled_at          timestamptz,
    -- Preflight: per-workflow diff status and risk, and each gate's result.
    diff                  jsonb,
    gates                 jsonb,
    risk                  text,
    -- Per-workflow results, and what a rollback put back.
    results               jsonb,
    rollback              jsonb,
    pre_snapshot_id       uuid,
    post_snapshot_id      uuid,
    error                 text,
    created_at            timestamptz not null default now(),
    updated_at            timestamptz not null default now(),
    started_at            timestamptz,
    finished_at           timestamptz,
    deleted_at            timestamptz
);
create index promotions_tenant on promotions (tenant_id, id desc) where deleted_at is null;

create table promotion_approvals (
    promotion_id uuid not null references promotions (id) on delete cascade,
    tenant_id    uuid not null,
    user_id      uuid not null,
    user_label   text not null,
    decision     text not null check (decision in ('approve', 'reject')),
    comment      text,
    created_at   timestamptz not null default now(),
    primary key (promotion_id, user_id)
);

-- What a promotion last deployed where: the source workflow's counterpart in the target, and
-- the content hash the copy had right after it, so a later difference is a change made in the
-- target (TARGET_HOTFIX).
create table deployed_workflows (
    tenant_id             uuid not null,
    source_environment_id uuid not null references environments (id) on delete cascade,
    source_workflow_id    text not null,
    target_environment_id uuid not null references environments (id) on delete cascade,
    target_workflow_id    text not null,
    -- Content hashes right after the deployment: the source's and the target copy's.
    source_hash           text not null,
    target_hash           text not null,
    promotion_id          uuid not null,
    deployed_at           timestamptz not null default now(),
    primary key (source_environment_id, source_workflow_id, target_environment_id)
);
create index deployed_workflows_target on deployed_workflows (target_environment_id, target_workflow_id);
