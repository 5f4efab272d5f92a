-- TUF's roles (ARCHITECTURE.md, "Software delivery with TUF roles"): every version of every
-- role of a tenant's repository, as the envelope that was signed, and the center's online
-- keys (snapshot, timestamp) of each tenant.
CREATE TABLE tuf_metadata (
    tenant_id    BIGINT NOT NULL,
    role         TEXT NOT NULL,
    version      BIGINT NOT NULL,
    envelope     TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    published_by TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, role, version)
);
CREATE TABLE tuf_online_keys (
    tenant_id  BIGINT NOT NULL,
    role       TEXT NOT NULL,
    key_file   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, role)
);
