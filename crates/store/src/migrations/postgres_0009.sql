-- Operator accounts for the dashboard: a password hash (argon2id, PHC string), never the
-- password. Sessions are operator tokens with an expiry, marked as sessions.
CREATE TABLE operator_accounts (
    tenant_id      BIGINT NOT NULL REFERENCES tenants(id),
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    disabled_at    BIGINT,
    PRIMARY KEY (tenant_id, name)
);
ALTER TABLE operator_tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE operator_tokens ADD COLUMN session BIGINT NOT NULL DEFAULT 0;
