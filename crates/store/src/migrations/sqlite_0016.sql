-- Meter reads (see ARCHITECTURE.md, "Meter reads for billing"). The billing meters of each
-- reading near a month's edge (within 14 hours of midnight UTC of a 1st, so every time zone's
-- edge is covered) and of its neighbour on the other side: a read finds a device's edge in one
-- indexed step, whatever its report interval.
CREATE TABLE meter_edge_reads (
    tenant_id  BIGINT NOT NULL,
    device_id  TEXT NOT NULL,
    at         BIGINT NOT NULL,
    vals       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, device_id, at)
);
-- A billing meter that went backwards (a controller replaced): its value before and after
-- (page counts, whole numbers).
CREATE TABLE meter_resets (
    tenant_id  BIGINT NOT NULL,
    device_id  TEXT NOT NULL,
    at         BIGINT NOT NULL,
    name       TEXT NOT NULL,
    before     BIGINT NOT NULL,
    after      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, device_id, at, name)
);
-- A tenant's meter-read schedule (no row: the default, on): whether the center asks the
-- connected devices of each site for a report when a month starts in the site's time zone.
CREATE TABLE meter_read_schedules (
    tenant_id  BIGINT PRIMARY KEY,
    enabled    BIGINT NOT NULL
);
