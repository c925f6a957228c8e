-- The Git repository an environment is backed up to (ENV-003): URL, branch, a path prefix inside
-- the repository, and the credentials (sealed in `secrets`).
create table environment_git (
    environment_id uuid primary key references environments (id) on delete cascade,
    tenant_id      uuid not null references tenants (id) on delete cascade,
    url            text not null,
    branch         text not null default 'main',
    -- Where this environment's files go inside the repository.
    path           text not null,
    auth_kind      text not null check (auth_kind in ('none', 'token', 'ssh_key')),
    username       text,
    secret_id      uuid,
    last_backup_at timestamptz,
    last_commit    text,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);
