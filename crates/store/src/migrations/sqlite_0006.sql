-- The audit log: every state-changing operator action and every denial. Append-only: the
-- triggers refuse any change or removal of a row.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE INDEX operator_tokens_by_tenant ON operator_tokens (tenant_id, created_at);
