-- The dashboard's fleet-wide error rate counts a tenant's events by time: an index on it, so
-- the count reads the last day's entries, not the tenant's whole error log.
CREATE INDEX error_events_by_tenant_time ON error_events (tenant_id, at);
