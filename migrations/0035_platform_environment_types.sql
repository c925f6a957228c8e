-- Platform-wide environment types (ADMIN-015): platform admins define the types every new tenant
-- starts with (copied at creation, so a tenant can then change its own), and can add one to
-- every existing tenant.
create table platform_environment_types (
    key        text primary key,
    label      text not null,
    class      text not null check (class in ('dev', 'staging', 'production')),
    sort_order integer not null default 0,
    created_at timestamptz not null default now()
);
