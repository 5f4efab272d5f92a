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

-- A device's compatibility summary, in a narrow table of its own: re-judging a fleet rewrites
-- these rows, not the devices' wide ones. structure_hash mirrors devices.structure_hash (kept in
-- the same transaction) so that a judgement of an older structure is never stored.
CREATE TABLE device_compat (
    tenant_id        BIGINT NOT NULL,
    device_id        TEXT NOT NULL,
    structure_hash   TEXT,
    -- the open findings' keys hashed ('' when none), and the catalog revision of the judgement
    findings_hash    TEXT,
    judged_revision  BIGINT,
    -- compatible, software, hardware, unknown
    compat_state     TEXT,
    PRIMARY KEY (tenant_id, device_id)
);

-- Each load of a tenant's catalog is a new, immutable revision.
CREATE TABLE catalog_revisions (
    tenant_id   BIGINT NOT NULL,
    revision    BIGINT NOT NULL,
    loaded_at   BIGINT NOT NULL,
    loaded_by   TEXT NOT NULL,
    digest      TEXT NOT NULL,
    stats       TEXT NOT NULL,
    source      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, revision)
);

-- Compatibility findings; one open row per (device, key); closed when it no longer holds.
CREATE TABLE findings (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        BIGINT NOT NULL,
    device_id        TEXT NOT NULL,
    finding_key      TEXT NOT NULL,
    kind             TEXT NOT NULL,
    rule             TEXT NOT NULL,
    subject          TEXT NOT NULL,
    explanation      TEXT NOT NULL,
    catalog_revision BIGINT NOT NULL,
    opened_at        BIGINT NOT NULL,
    closed_at        BIGINT
);
CREATE UNIQUE INDEX findings_open ON findings (tenant_id, device_id, finding_key) WHERE closed_at IS NULL;
CREATE INDEX findings_by_kind ON findings (tenant_id, kind) WHERE closed_at IS NULL;

-- What a tenant wants done about compatibility.
CREATE TABLE tenant_policies (
    tenant_id       BIGINT PRIMARY KEY,
    plan_policy     TEXT NOT NULL,
    fix_policy      TEXT NOT NULL,
    out_of_service  BIGINT NOT NULL,
    job_ttl_s       BIGINT NOT NULL
);

-- Notifications for devices (advice, units taken out of service, …); one open per key.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        BIGINT NOT NULL,
    device_id        TEXT NOT NULL,
    notice_key       TEXT NOT NULL,
    kind             TEXT NOT NULL,
    title            TEXT NOT NULL,
    body             TEXT NOT NULL,
    catalog_revision BIGINT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT,
    closed_at        BIGINT
);
CREATE UNIQUE INDEX notifications_open ON notifications (tenant_id, device_id, notice_key) WHERE closed_at IS NULL;
CREATE INDEX notifications_by_device ON notifications (tenant_id, device_id, id);

-- Jobs: instructions to one device (install or switch software on units, …).
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        BIGINT NOT NULL,
    device_id        TEXT NOT NULL,
    origin           TEXT NOT NULL,
    state            TEXT NOT NULL,
    reason           TEXT,
    detail           TEXT,
    steps            TEXT NOT NULL,
    catalog_revision BIGINT,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    approved_by      TEXT,
    approved_at      BIGINT,
    progress         TEXT
);
CREATE INDEX jobs_by_device ON jobs (tenant_id, device_id, id);
CREATE INDEX jobs_by_state ON jobs (tenant_id, state, id);
