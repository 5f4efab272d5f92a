-- Software delivery: release key lists, signed releases, content-addressed artifacts.
CREATE TABLE key_lists (
    tenant_id    BIGINT NOT NULL,
    version      BIGINT NOT NULL,
    envelope     TEXT NOT NULL,
    published_by TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
CREATE TABLE releases (
    tenant_id    BIGINT NOT NULL,
    product      TEXT NOT NULL,
    version      TEXT NOT NULL,
    maker        TEXT NOT NULL,
    counter      BIGINT NOT NULL,
    envelope     TEXT NOT NULL,
    artifacts    TEXT NOT NULL,
    published_by TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, product, version)
);
CREATE TABLE artifacts (
    tenant_id BIGINT NOT NULL,
    sha256    TEXT NOT NULL,
    size      BIGINT NOT NULL,
    stored_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
);
CREATE INDEX jobs_by_expiry ON jobs (state, expires_at);
