-- A tenant's own environment limit (ADMIN-006), set by platform admins; null: the server's
-- WFO_MAX_ENVIRONMENTS.
alter table tenants add column environment_limit integer check (environment_limit > 0);
