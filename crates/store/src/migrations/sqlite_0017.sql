-- Notifications to the people and systems who act (see ARCHITECTURE.md, "Notifications").
-- A tenant's subscriptions: a webhook or e-mail addresses, the events it wants, a device
-- filter and a lowest severity.
CREATE TABLE notify_subscriptions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       BIGINT NOT NULL,
    name            TEXT NOT NULL,
    channel         TEXT NOT NULL,
    target          TEXT NOT NULL,
    events          TEXT NOT NULL,
    filter          TEXT NOT NULL,
    min_severity    TEXT NOT NULL,
    digest_minutes  BIGINT NOT NULL,
    secret          TEXT NOT NULL,
    state           TEXT NOT NULL,
    state_reason    TEXT,
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_success_at BIGINT,
    last_mail_at    BIGINT
);
CREATE UNIQUE INDEX notify_subscriptions_name ON notify_subscriptions (tenant_id, name);
-- The outbox: one row per event, written in the transaction that caused it (by the triggers
-- below, or by the statement group that marks a device offline). The worker renders its body
-- once and fans it out to the matching subscriptions' deliveries.
CREATE TABLE notify_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    device_id   TEXT,
    subject_id  BIGINT,
    severity    TEXT,
    at          BIGINT NOT NULL,
    detail      TEXT,
    body        TEXT,
    fanned_out  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX notify_events_waiting ON notify_events (id) WHERE fanned_out = 0;
CREATE INDEX notify_events_at ON notify_events (at);
-- One event to one subscription: pending until delivered, or failed after retrying.
CREATE TABLE notify_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       BIGINT NOT NULL,
    subscription_id BIGINT NOT NULL,
    event_id        BIGINT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_at         BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX notify_deliveries_by_subscription ON notify_deliveries (subscription_id, id);
CREATE TABLE notify_settings (
    tenant_id       BIGINT PRIMARY KEY,
    offline_after_s BIGINT
);
-- When the center raised `device.offline` for a silent device (cleared by its next report).
ALTER TABLE devices ADD COLUMN offline_since BIGINT;
-- When the device counts as silent unless it reports again: its last report plus
-- `offline_after_s` of its tenant, or 3 × its report interval (3600 s, the agent's default,
-- when the center set none). Set by every report; the sweep reads this index alone.
ALTER TABLE devices ADD COLUMN silent_at BIGINT;
CREATE INDEX devices_silent ON devices (silent_at) WHERE offline_since IS NULL;

CREATE TRIGGER notify_trouble_opened AFTER INSERT ON troubles
WHEN EXISTS (SELECT 1 FROM notify_subscriptions s WHERE s.tenant_id = NEW.tenant_id)
BEGIN
    INSERT INTO notify_events (tenant_id, kind, device_id, subject_id, severity, at)
    VALUES (NEW.tenant_id,
        CASE WHEN NEW.rule_id LIKE 'supply-%' THEN 'supply.low'
             WHEN NEW.rule_id LIKE 'part-end-of-life:%' THEN 'part.end_of_life'
             ELSE 'trouble.opened' END,
        NEW.device_id, NEW.id, NEW.severity, NEW.opened_at);
END;
CREATE TRIGGER notify_trouble_resolved AFTER UPDATE OF state ON troubles
WHEN NEW.state = 'resolved' AND OLD.state <> 'resolved'
    AND EXISTS (SELECT 1 FROM notify_subscriptions s WHERE s.tenant_id = NEW.tenant_id)
BEGIN
    INSERT INTO notify_events (tenant_id, kind, device_id, subject_id, severity, at)
    VALUES (NEW.tenant_id, 'trouble.resolved', NEW.device_id, NEW.id, NEW.severity,
        COALESCE(NEW.resolved_at, NEW.last_event_at));
END;
CREATE TRIGGER notify_advice AFTER INSERT ON notifications
WHEN EXISTS (SELECT 1 FROM notify_subscriptions s WHERE s.tenant_id = NEW.tenant_id)
BEGIN
    INSERT INTO notify_events (tenant_id, kind, device_id, subject_id, severity, at)
    VALUES (NEW.tenant_id, 'advice.created', NEW.device_id, NEW.id, 'major', NEW.created_at);
END;
CREATE TRIGGER notify_rollout_paused AFTER UPDATE OF state ON rollouts
WHEN NEW.state = 'paused' AND OLD.state <> 'paused'
    AND EXISTS (SELECT 1 FROM notify_subscriptions s WHERE s.tenant_id = NEW.tenant_id)
BEGIN
    INSERT INTO notify_events (tenant_id, kind, device_id, subject_id, severity, at, detail)
    VALUES (NEW.tenant_id, 'rollout.paused', NULL, NEW.id, 'major', NEW.updated_at,
        NEW.state_reason);
END;
CREATE TRIGGER notify_job_failed AFTER UPDATE OF state ON jobs
WHEN NEW.state = 'failed' AND OLD.state <> 'failed' AND COALESCE(NEW.reason, '') <> 'cancelled'
    AND EXISTS (SELECT 1 FROM notify_subscriptions s WHERE s.tenant_id = NEW.tenant_id)
BEGIN
    INSERT INTO notify_events (tenant_id, kind, device_id, subject_id, severity, at, detail)
    VALUES (NEW.tenant_id, 'job.failed', NEW.device_id, NEW.id, 'major', NEW.updated_at,
        NEW.reason);
END;
CREATE TRIGGER notify_device_online AFTER UPDATE OF last_report_at ON devices
WHEN OLD.offline_since IS NOT NULL
BEGIN
    INSERT INTO notify_events (tenant_id, kind, device_id, subject_id, severity, at)
    SELECT NEW.tenant_id, 'device.online', NEW.device_id, NULL, 'info', NEW.last_report_at
    WHERE EXISTS (SELECT 1 FROM notify_subscriptions s WHERE s.tenant_id = NEW.tenant_id);
    UPDATE devices SET offline_since = NULL
    WHERE tenant_id = NEW.tenant_id AND device_id = NEW.device_id;
END;
