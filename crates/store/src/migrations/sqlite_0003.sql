-- Devices' error logs: each (device, boot epoch, seq) once; tombstones for events the device
-- dropped; and per epoch the highest sequence up to which every event is held.
CREATE TABLE error_events (
    tenant_id   BIGINT NOT NULL,
    device_id   TEXT NOT NULL,
    boot_epoch  BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    slot        TEXT NOT NULL,
    code        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    counters    TEXT,
    detail      TEXT,
    alert       TEXT,
    dropped     BIGINT NOT NULL,
    upload_trigger TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, device_id, boot_epoch, seq)
);
CREATE INDEX error_events_by_time ON error_events (tenant_id, device_id, at);
CREATE TABLE error_watermarks (
    tenant_id  BIGINT NOT NULL,
    device_id  TEXT NOT NULL,
    boot_epoch BIGINT NOT NULL,
    acked_seq  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, device_id, boot_epoch)
);
-- The center's periodic requests for error logs: per device or per device model.
CREATE TABLE error_schedules (
    tenant_id  BIGINT NOT NULL,
    scope      TEXT NOT NULL,
    target     TEXT NOT NULL,
    interval_s BIGINT NOT NULL,
    next_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, scope, target)
);
CREATE INDEX error_schedules_due ON error_schedules (next_at);
CREATE INDEX devices_by_model ON devices (tenant_id, model);
