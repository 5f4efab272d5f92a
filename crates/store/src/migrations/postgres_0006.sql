-- The audit log: every state-changing operator action and every denial. Append-only: the
-- trigger refuses any change or removal of a row.
CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    tenant_id  BIGINT,
    at         BIGINT NOT NULL,
    actor      TEXT,
    role       TEXT,
    action     TEXT NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    status     BIGINT NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT
);
CREATE INDEX audit_by_tenant ON audit_log (tenant_id, id);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE INDEX operator_tokens_by_tenant ON operator_tokens (tenant_id, created_at);
