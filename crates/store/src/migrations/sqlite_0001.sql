CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);
CREATE TABLE operator_tokens (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE TABLE enrollment_keys (
    key_hash    TEXT PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants(id),
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE TABLE devices (
    tenant_id            BIGINT NOT NULL REFERENCES tenants(id),
    device_id            TEXT NOT NULL,
    model                TEXT NOT NULL,
    credential_hash      TEXT NOT NULL UNIQUE,
    generation           BIGINT NOT NULL,
    enrolled_at          BIGINT NOT NULL,
    last_seq             BIGINT NOT NULL DEFAULT 0,
    last_trigger         TEXT,
    last_report_at       BIGINT,
    last_observed_at     BIGINT,
    structure            TEXT,
    structure_hash       TEXT,
    structure_changed_at BIGINT,
    unit_count           BIGINT NOT NULL DEFAULT 0,
    operating            TEXT,
    report_interval_s    BIGINT,
    -- set when an operator revoked the credential; cleared by a new enrollment
    revoked_at           BIGINT,
    -- an operator allowed a new enrollment of this id until then (single use)
    reenroll_until       BIGINT,
    PRIMARY KEY (tenant_id, device_id)
);
CREATE TABLE reports (
    tenant_id       BIGINT NOT NULL,
    device_id       TEXT NOT NULL,
    generation      BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    trigger         TEXT NOT NULL,
    observed_at     BIGINT NOT NULL,
    received_at     BIGINT NOT NULL,
    structure_hash  TEXT NOT NULL,
    changes         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, device_id, generation, seq)
);
CREATE TABLE structure_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    BIGINT NOT NULL,
    device_id    TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    trigger      TEXT NOT NULL,
    observed_at  BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    slot         TEXT NOT NULL,
    change       TEXT NOT NULL
);
CREATE INDEX structure_events_by_device ON structure_events (tenant_id, device_id, id);
