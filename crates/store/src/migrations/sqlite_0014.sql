-- Operating history (see ARCHITECTURE.md, "Operating life"). One row per stored report whose
-- counters or gauges changed: `vals` is a JSON object of the changed values (a vanished name
-- is null), or of every value on a keyframe (the device's first report of a UTC day).
CREATE TABLE operating_points (
    tenant_id  BIGINT NOT NULL,
    device_id  TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    keyframe   BIGINT NOT NULL,
    vals       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, device_id, at_ms, seq)
) WITHOUT ROWID;
-- The pruner's work list: one row per device-day with raw points (rolled = 0) or with a
-- daily rollup only (rolled = 1). Keyed by state and day, so the oldest days of each are
-- read without a scan.
CREATE TABLE operating_days (
    rolled     BIGINT NOT NULL,
    day        BIGINT NOT NULL,
    tenant_id  BIGINT NOT NULL,
    device_id  TEXT NOT NULL,
    PRIMARY KEY (rolled, day, tenant_id, device_id)
) WITHOUT ROWID;
-- A device-day past `operating_raw_days`: per name `[first, last, min, max]`.
CREATE TABLE operating_daily (
    tenant_id  BIGINT NOT NULL,
    device_id  TEXT NOT NULL,
    day        BIGINT NOT NULL,
    vals       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, device_id, day)
) WITHOUT ROWID;
