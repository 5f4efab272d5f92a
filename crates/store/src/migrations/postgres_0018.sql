-- Devices with hawkBit clients (DDI; see ARCHITECTURE.md, "Devices with hawkBit clients").
-- A row marks a device that joined through DDI: its attributes (configData, JSON object of
-- strings), the sequence number of the structure reports made from them, and when someone
-- asked for a report that its attributes have not answered yet.
CREATE TABLE ddi_devices (
    tenant_id   BIGINT NOT NULL,
    device_id   TEXT NOT NULL,
    attributes  TEXT NOT NULL DEFAULT '{}',
    seq         BIGINT NOT NULL DEFAULT 0,
    requested_at BIGINT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
-- What a DDI device did with a job as an action: when it fetched it, and when it answered a
-- cancellation (with what).
CREATE TABLE ddi_actions (
    tenant_id       BIGINT NOT NULL,
    job_id          BIGINT NOT NULL,
    device_id       TEXT NOT NULL,
    fetched_at      BIGINT,
    cancel_answer   TEXT,
    cancel_at       BIGINT,
    PRIMARY KEY (tenant_id, job_id)
);
-- A poll looks up its device's unanswered cancellations.
CREATE INDEX ddi_actions_by_device ON ddi_actions (tenant_id, device_id, job_id);
-- A tenant's gateway tokens (hashes): their holder acts as any controllerId of the tenant.
CREATE TABLE ddi_gateway_tokens (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
-- SHA-1 and MD5 of an artifact (content-addressed by SHA-256, shared by tenants), for DDI
-- clients that check them.
CREATE TABLE artifact_digests (
    sha256  TEXT PRIMARY KEY,
    sha1    TEXT NOT NULL,
    md5     TEXT NOT NULL
);
