-- Platform-wide settings changed at run time by platform admins (ADMIN-016: data retention).
-- A missing key means the server's configuration applies.
create table platform_settings (
    key        text primary key,
    value      jsonb not null,
    updated_by text not null,
    updated_at timestamptz not null default now()
);
