-- Archives of the audit log (see ARCHITECTURE.md, "Data lifecycle: retention"): the log stays
-- append-only, except that lines an archive holds may go. An archive is recorded (through
-- which line, how many, the file's SHA-256) before any of its lines is deleted.
CREATE TABLE audit_archives (
    through_id  BIGINT PRIMARY KEY,
    lines       BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    name        TEXT NOT NULL,
    at          BIGINT NOT NULL
);
DROP TRIGGER audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE FUNCTION audit_log_archived_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.id > COALESCE((SELECT MAX(through_id) FROM audit_archives), 0) THEN
        RAISE EXCEPTION 'the audit log is append-only: only archived lines may go';
    END IF;
    RETURN OLD;
END $$;
CREATE TRIGGER audit_log_archived_only BEFORE DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_archived_only();
