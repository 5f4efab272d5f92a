-- Tenancy: a service provider (a tenant without a parent) and its customer organizations
-- (tenants whose parent is the provider, named "<provider>/<customer>"). Sites live within
-- each tenant.
ALTER TABLE tenants ADD COLUMN parent_id BIGINT REFERENCES tenants(id);
CREATE INDEX tenants_by_parent ON tenants (parent_id, name);
