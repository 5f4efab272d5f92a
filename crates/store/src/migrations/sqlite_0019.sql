-- Retention (see ARCHITECTURE.md, "Data lifecycle: retention"): a tenant's days per kind of
-- data, where it differs from the default (0: kept forever).
CREATE TABLE retention_settings (
    tenant_id  BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    days       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind)
);
