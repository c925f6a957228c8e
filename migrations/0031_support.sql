-- Support tickets (PRD 3.18, SUPP-001..006): a tenant's members report bugs, request features and
-- ask for help; platform admins answer from the support console.

create table support_tickets (
    id                uuid primary key,
    tenant_id         uuid not null references tenants (id) on delete cascade,
    kind              text not null check (kind in ('bug', 'feature', 'help')),
    title             text not null,
    status            text not null default 'open'
                      check (status in ('open', 'in_progress', 'waiting_on_customer', 'resolved', 'closed')),
    priority          text not null default 'normal' check (priority in ('low', 'normal', 'high', 'urgent')),
    requester_user_id uuid references users (id) on delete set null,
    -- Kept verbatim: replies are emailed here, and the ticket outlives the account.
    requester_email   text not null,
    assignee_user_id  uuid references users (id) on delete set null,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    closed_at         timestamptz
);
create index support_tickets_tenant on support_tickets (tenant_id, id desc);
create index support_tickets_open on support_tickets (status, id desc) where status not in ('resolved', 'closed');

-- The conversation: the first message is the ticket's description.
create table support_messages (
    id             uuid primary key,
    ticket_id      uuid not null references support_tickets (id) on delete cascade,
    author_user_id uuid references users (id) on delete set null,
    author_email   text not null,
    -- Written by platform support (true) or by the tenant's member (false).
    from_support   boolean not null,
    body           text not null,
    created_at     timestamptz not null default now()
);
create index support_messages_ticket on support_messages (ticket_id, id);

create table support_attachments (
    id           uuid primary key,
    ticket_id    uuid not null references support_tickets (id) on delete cascade,
    filename     text not null,
    content_type text not null,
    size         integer not null,
    sha256       text not null,
    data         bytea not null,
    uploaded_by  text not null,
    created_at   timestamptz not null default now()
);
create index support_attachments_ticket on support_attachments (ticket_id, id);
