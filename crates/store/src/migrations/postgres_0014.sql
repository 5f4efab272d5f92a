-- Operating history (see ARCHITECTURE.md, "Operating life"), kept in the report's own row (so
-- it costs no statement and no page beyond the report's): `op_vals` is a JSON object of the
-- values that changed (a vanished name is null), or of every value when `op_keyframe` is 1 (the
-- device's first report of a UTC day); NULL when nothing changed, for a report that was not
-- the newest, and once its day is rolled up.
ALTER TABLE reports ADD COLUMN op_keyframe BIGINT;
ALTER TABLE reports ADD COLUMN op_vals TEXT;
-- The pruner's work list: one row per device-day with raw points (rolled = 0) or with a
-- daily rollup only (rolled = 1). Keyed by state and day, so the oldest days of each are
-- read without a scan.
CREATE TABLE operating_days (
    rolled     BIGINT NOT NULL,
    day        BIGINT NOT NULL,
    tenant_id  BIGINT NOT NULL,
    device_id  TEXT NOT NULL,
    PRIMARY KEY (rolled, day, tenant_id, device_id)
);
-- A device-day past `operating_raw_days`: per name `[first, last, min, max]`.
CREATE TABLE operating_daily (
    tenant_id  BIGINT NOT NULL,
    device_id  TEXT NOT NULL,
    day        BIGINT NOT NULL,
    vals       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, device_id, day)
);
