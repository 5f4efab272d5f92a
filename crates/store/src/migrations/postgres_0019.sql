-- Retention (see ARCHITECTURE.md, "Data lifecycle: retention"): a tenant's days per kind of
-- data, where it differs from the default (0: kept forever).
CREATE TABLE retention_settings (
    tenant_id  BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    days       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);
-- Error-log watermarks of a restored store (see ARCHITECTURE.md, "Data lifecycle: backup and
-- restore"): events a device sent after the backup were acknowledged and deleted by it, so
-- its next batch of that boot epoch starts past the watermark. The first batch after a
-- restore moves the watermark over that gap (and the mark goes).
CREATE TABLE restored_watermarks (
    tenant_id   BIGINT NOT NULL,
    device_id   TEXT NOT NULL,
    boot_epoch  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, device_id, boot_epoch)
);
