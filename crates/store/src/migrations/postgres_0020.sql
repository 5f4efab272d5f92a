-- Reports and error events partitioned by the day they were received (see ARCHITECTURE.md,
-- "PostgreSQL: partitions by time"). Plain declarative partitioning, no extension: the center
-- creates each day's partition ahead and drops a whole partition once every tenant's
-- retention has passed it. The default partition holds what no day's partition covers: the
-- rows this migration carries over, and the few rows kept when their day's partition goes
-- (a device's newest report, operating values still waiting for their rollup). The pruner
-- deletes those row by row, as before.
--
-- The primary keys include the partition key, as PostgreSQL requires: a report is still
-- stored once per (device, generation, seq) and an event once per (device, epoch, seq), but
-- the ingest statements check that themselves under the device's lock.
ALTER TABLE reports RENAME TO reports_before_0020;
ALTER INDEX reports_pkey RENAME TO reports_before_0020_pkey;
CREATE TABLE reports (LIKE reports_before_0020 INCLUDING DEFAULTS)
    PARTITION BY RANGE (received_at);
ALTER TABLE reports ADD PRIMARY KEY (tenant_id, device_id, generation, seq, received_at);
CREATE TABLE reports_default PARTITION OF reports DEFAULT;
INSERT INTO reports SELECT * FROM reports_before_0020;
DROP TABLE reports_before_0020;

ALTER TABLE error_events RENAME TO error_events_before_0020;
ALTER INDEX error_events_pkey RENAME TO error_events_before_0020_pkey;
DROP INDEX error_events_by_time;
DROP INDEX error_events_by_received;
DROP INDEX error_events_by_tenant_time;
CREATE TABLE error_events (LIKE error_events_before_0020 INCLUDING DEFAULTS)
    PARTITION BY RANGE (received_at);
ALTER TABLE error_events ADD PRIMARY KEY (tenant_id, device_id, boot_epoch, seq, received_at);
CREATE INDEX error_events_by_time ON error_events (tenant_id, device_id, at);
CREATE INDEX error_events_by_received ON error_events (received_at);
CREATE INDEX error_events_by_tenant_time ON error_events (tenant_id, at);
CREATE TABLE error_events_default PARTITION OF error_events DEFAULT;
INSERT INTO error_events SELECT * FROM error_events_before_0020;
DROP TABLE error_events_before_0020;
