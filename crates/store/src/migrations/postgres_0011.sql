-- Several center instances on one database (issue 10). Each instance beats its heart in
-- `instances`; a device connected to an instance is in `presence` (last writer wins: the
-- instance it connected to most recently); a background engine runs where it holds its
-- lease; `catalog_judged` says which catalog revision a tenant's fleet was last judged
-- against in full, so a re-judgement cut short by an instance's death is taken up again.
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    addr TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL
);
CREATE TABLE presence (
    tenant_id BIGINT NOT NULL,
    device_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    via TEXT NOT NULL,
    since_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
CREATE INDEX presence_by_instance ON presence (instance_id);
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE TABLE catalog_judged (
    tenant_id BIGINT PRIMARY KEY,
    revision BIGINT NOT NULL,
    judged_ms BIGINT NOT NULL
);
