-- `devices.silent_at` becomes a lower bound of the device's deadline (ARCHITECTURE.md,
-- "Notifications"): reports no longer move it, so a report changes no indexed column of
-- `devices` and PostgreSQL can update the row in place (HOT). In-place updates need room on
-- the row's page: pages of `devices` are filled to 75 % from now on (existing pages as they
-- are rewritten). Values written before are exact deadlines, so already valid bounds.
ALTER TABLE devices SET (fillfactor = 75);
