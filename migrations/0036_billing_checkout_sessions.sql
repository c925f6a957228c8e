-- The Checkout Sessions WorkflowOps opened (BILL-002), so that opening a new one for a tenant and
-- provider can expire the ones still open: two open sessions could otherwise both be paid,
-- making a second live subscription for one provider.
create table billing_checkout_sessions (
    -- Stripe's `cs_...`.
    id          text primary key,
    tenant_id   uuid not null references tenants (id) on delete cascade,
    provider    text not null references providers (key),
    -- The plan's key when the session was opened (what it sells).
    plan        text not null,
    -- As far as we know: `open` until it is paid (`complete`) or expires (`expired`).
    status      text not null default 'open' check (status in ('open', 'complete', 'expired')),
    created_by  uuid references users (id) on delete set null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
create index billing_checkout_sessions_open on billing_checkout_sessions (tenant_id, provider)
    where status = 'open';
