-- A device's supplies with their levels, as its newest report said (JSON); their identities
-- (slot, kind, colour, part number, serial) are part of its structure.
ALTER TABLE devices ADD COLUMN supplies TEXT;
