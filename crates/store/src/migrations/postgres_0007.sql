-- Where an audited request came from (the client's address as the center believes it).
ALTER TABLE audit_log ADD COLUMN source TEXT;
-- Credential rotation: the credential a device held before its newest one stays valid until
-- the device first uses the new one, or until previous_valid_until, whichever comes first.
ALTER TABLE devices ADD COLUMN previous_credential_hash TEXT;
ALTER TABLE devices ADD COLUMN previous_valid_until BIGINT;
ALTER TABLE devices ADD COLUMN credential_issued_at BIGINT;
CREATE UNIQUE INDEX devices_by_previous_credential ON devices (previous_credential_hash);
