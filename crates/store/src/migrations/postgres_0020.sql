-- Reports and error events partitioned by the day they were received (see ARCHITECTURE.md,
-- "PostgreSQL: partitions by time"). Plain declarative partitioning, no extension: the center
-- creates each day's partition ahead and drops a whole partition once every tenant's
-- retention has passed it. The rows this migration carries over (if any) go to one partition
-- that ends where the center's first partition begins (`…_upto_…`), dropped like any
-- other once retention has passed its end. The default partition holds what no partition
-- covers: the few rows kept when their partition goes (a device's newest report, operating
-- values still waiting for their rollup). The pruner deletes those row by row, as before. (A
-- big default partition would be read whole each time a partition is attached: the carried
-- rows do not go there.)
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
DO $$
DECLARE
    width CONSTANT BIGINT := 86400000;
    upto BIGINT := (floor(extract(epoch FROM now()) * 1000 / width) + 1)::BIGINT * width;
BEGIN
    IF EXISTS (SELECT 1 FROM reports_before_0020) THEN
        EXECUTE format('CREATE TABLE reports_upto_%s PARTITION OF reports FOR VALUES FROM (MINVALUE) TO (%s)',
            to_char(to_timestamp(upto / 1000) AT TIME ZONE 'UTC', 'YYYYMMDD'), upto);
    END IF;
END $$;
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
DO $$
DECLARE
    width CONSTANT BIGINT := 7 * 86400000;
    upto BIGINT := (floor(extract(epoch FROM now()) * 1000 / width) + 1)::BIGINT * width;
BEGIN
    IF EXISTS (SELECT 1 FROM error_events_before_0020) THEN
        EXECUTE format('CREATE TABLE error_events_upto_%s PARTITION OF error_events FOR VALUES FROM (MINVALUE) TO (%s)',
            to_char(to_timestamp(upto / 1000) AT TIME ZONE 'UTC', 'YYYYMMDD'), upto);
    END IF;
END $$;
INSERT INTO error_events SELECT * FROM error_events_before_0020;
DROP TABLE error_events_before_0020;

-- The highest sequence stored per epoch, so that a batch learns whether anything is held
-- above the watermark (a gap) from this small table, without a statement over the
-- partitioned events, which PostgreSQL plans over every partition (NULL: not known yet, look).
ALTER TABLE error_watermarks ADD COLUMN max_seq BIGINT;
