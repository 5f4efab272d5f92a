-- The dashboard's fleet-wide error rate counts a tenant's events by time: an index on it, so
-- the count reads the last day's entries, not the tenant's whole error log.
CREATE INDEX error_events_by_tenant_time ON error_events (tenant_id, at);
-- Fleet summaries (devices by model and state, findings by model and kind) read only these
-- narrow columns: indexes that cover them, so a summary never reads the wide device rows
-- (their structure). Model and id never change after enrollment, so reports do not update
-- these indexes.
DROP INDEX devices_by_model;
CREATE INDEX devices_by_model ON devices (tenant_id, model, device_id);
CREATE INDEX devices_model_of ON devices (tenant_id, device_id, model);
