-- Units taken out of service by the center (issue 20): by the compatibility policy or by
-- an operator, one row per slot while it lasts. The device is told at once when connected,
-- and learns the whole list again whenever it connects; the row goes when the unit is put
-- back in service (by hand, or because a compatible unit is now in the slot).
CREATE TABLE unit_service (
    tenant_id INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    slot TEXT NOT NULL,
    serial TEXT NOT NULL,
    -- 'policy' (the compatibility policy) or 'operator'
    origin TEXT NOT NULL,
    taken_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- the slot of the unit of the same kind that takes over, if the device has one
    switched_to TEXT,
    taken_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, device_id, slot)
);
-- Why the device cannot install software, as its newest report says (a printer behind a
-- LAN proxy, an agent without a root of trust); NULL: it can.
ALTER TABLE devices ADD COLUMN install_blocked TEXT;
