-- Rollouts: sites (time zone, maintenance windows) and device labels (site, tags) that
-- rollouts select by; rollouts, their waves' counters (kept as devices move, so progress is
-- read without scanning jobs), and each selected device's place and state.
CREATE TABLE sites (
    tenant_id BIGINT NOT NULL,
    name      TEXT NOT NULL,
    timezone  TEXT NOT NULL,
    windows   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE device_labels (
    tenant_id BIGINT NOT NULL,
    device_id TEXT NOT NULL,
    site      TEXT,
    tags      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
CREATE TABLE rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        BIGINT NOT NULL,
    name             TEXT NOT NULL,
    spec             TEXT NOT NULL,
    thresholds       TEXT NOT NULL,
    state            TEXT NOT NULL,
    state_reason     TEXT,
    current_wave     BIGINT NOT NULL,
    wave_approved    BIGINT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    approved_by      TEXT,
    approved_at      BIGINT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX rollouts_by_state ON rollouts (state);
CREATE TABLE rollout_waves (
    tenant_id  BIGINT NOT NULL,
    rollout_id BIGINT NOT NULL,
    wave       BIGINT NOT NULL,
    devices    BIGINT NOT NULL DEFAULT 0,
    pending    BIGINT NOT NULL DEFAULT 0,
    ineligible BIGINT NOT NULL DEFAULT 0,
    running    BIGINT NOT NULL DEFAULT 0,
    succeeded  BIGINT NOT NULL DEFAULT 0,
    failed     BIGINT NOT NULL DEFAULT 0,
    skipped    BIGINT NOT NULL DEFAULT 0,
    started_at BIGINT,
    PRIMARY KEY (tenant_id, rollout_id, wave)
);
CREATE TABLE rollout_devices (
    tenant_id  BIGINT NOT NULL,
    rollout_id BIGINT NOT NULL,
    device_id  TEXT NOT NULL,
    wave       BIGINT NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT,
    job_id     BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, rollout_id, device_id)
) WITHOUT ROWID;
CREATE INDEX rollout_devices_work ON rollout_devices (tenant_id, rollout_id, state, wave, updated_at);
