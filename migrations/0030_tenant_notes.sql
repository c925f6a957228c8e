-- Support notes on tenants (ADMIN-003): written and read by platform admins only.
create table tenant_notes (
    id             uuid primary key,
    tenant_id      uuid not null references tenants (id) on delete cascade,
    body           text not null,
    author_user_id uuid references users (id) on delete set null,
    -- Kept verbatim so the note outlives its author's account.
    author_email   text not null,
    created_at     timestamptz not null default now()
);
create index tenant_notes_tenant on tenant_notes (tenant_id, id desc);
