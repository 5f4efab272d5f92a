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
-- Every state a job went through after it was created (its creation is the job row itself).
CREATE TABLE job_events (
    tenant_id BIGINT NOT NULL,
    job_id    BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    state     TEXT NOT NULL,
    reason    TEXT,
    detail    TEXT
);
CREATE INDEX job_events_by_job ON job_events (tenant_id, job_id, at);
