-- Rejected deliveries to a tenant's GitHub push webhook (an endpoint anyone can call): at most
-- one `canonical.webhook_rejected` audit row per tenant a minute; the rejections in between are
-- counted here and reported in the next row's details. One small row per tenant.
create table webhook_rejections (
    tenant_id       uuid primary key references tenants (id) on delete cascade,
    last_audited_at timestamptz not null,
    suppressed      integer not null default 0
);
