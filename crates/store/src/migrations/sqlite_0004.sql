-- Diagnosis: each tenant's rules (every load a revision), the troubles judged from error events
-- (at most one live trouble per device and rule), abnormal units judged from operating info
-- (a row while the unit is abnormal), and settings the center set on devices.
CREATE TABLE rule_sets (
    tenant_id  BIGINT NOT NULL,
    revision   BIGINT NOT NULL,
    source     TEXT NOT NULL,
    loaded_at  BIGINT NOT NULL,
    loaded_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, revision)
);
CREATE TABLE troubles (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       BIGINT NOT NULL,
    device_id       TEXT NOT NULL,
    rule_id         TEXT NOT NULL,
    severity        TEXT NOT NULL,
    title           TEXT NOT NULL,
    action          TEXT NOT NULL,
    state           TEXT NOT NULL,
    note            TEXT,
    evidence        TEXT NOT NULL,
    occurrences     BIGINT NOT NULL,
    opened_at       BIGINT NOT NULL,
    last_event_at   BIGINT NOT NULL,
    quiet_until     BIGINT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at BIGINT,
    resolved_by     TEXT,
    resolved_at     BIGINT,
    fix             TEXT,
    fix_outcome     TEXT
);
CREATE UNIQUE INDEX troubles_one_live ON troubles (tenant_id, device_id, rule_id) WHERE state <> 'resolved';
CREATE INDEX troubles_quiet ON troubles (quiet_until) WHERE state <> 'resolved';
CREATE INDEX troubles_by_device ON troubles (tenant_id, device_id, id);
CREATE INDEX troubles_by_state ON troubles (tenant_id, state, id);
CREATE TABLE abnormal_units (
    tenant_id BIGINT NOT NULL,
    device_id TEXT NOT NULL,
    slot      TEXT NOT NULL,
    rule_id   TEXT NOT NULL,
    reason    TEXT NOT NULL,
    since     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, device_id, slot, rule_id)
);
CREATE TABLE device_settings (
    tenant_id BIGINT NOT NULL,
    device_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,
    set_by    TEXT NOT NULL,
    set_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, device_id, name)
);
-- A restart replays the events received within the rules' longest window.
CREATE INDEX error_events_by_received ON error_events (received_at);
