-- Workflow actions that policy puts behind an approval (PRD 3.1.3 "Requires Approval"): the
-- request waits here until another admin approves (then it is carried out) or rejects it.
create table workflow_action_requests (
    id                 uuid primary key,
    tenant_id          uuid not null references tenants (id) on delete cascade,
    environment_id     uuid not null references environments (id) on delete cascade,
    workflow_id        text not null,
    workflow_name      text not null,
    action             text not null,
    status             text not null default 'pending'
                       check (status in ('pending', 'approved', 'rejected', 'failed')),
    reason             text,
    requested_by       uuid,
    requested_by_label text not null,
    decided_by         uuid,
    decided_by_label   text,
    decided_at         timestamptz,
    comment            text,
    error              text,
    created_at         timestamptz not null default now()
);
create index workflow_action_requests_tenant on workflow_action_requests (tenant_id, status, created_at desc);
