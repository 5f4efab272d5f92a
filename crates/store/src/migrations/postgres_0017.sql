-- Notifications to the people and systems who act (see ARCHITECTURE.md, "Notifications").
CREATE TABLE notify_subscriptions (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
-- The outbox: one row per event, written in the transaction that caused it.
CREATE TABLE notify_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
CREATE TABLE notify_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
ALTER TABLE devices ADD COLUMN offline_since BIGINT;
-- When the device counts as silent unless it reports again: its last report plus
-- `offline_after_s` of its tenant, or 3 × its report interval (3600 s, the agent's default,
-- when the center set none). Set by every report; the sweep reads this index alone.
ALTER TABLE devices ADD COLUMN silent_at BIGINT;
CREATE INDEX devices_silent ON devices (silent_at) WHERE offline_since IS NULL;

-- Every trigger below appends to the outbox in the causing transaction and wakes the
-- instances' workers at commit (NOTIFY is transactional).
CREATE FUNCTION fleetcare_outbox(t BIGINT, k TEXT, d TEXT, s BIGINT, sev TEXT, at BIGINT, detail TEXT)
RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM notify_subscriptions WHERE tenant_id = t) THEN
        INSERT INTO notify_events (tenant_id, kind, device_id, subject_id, severity, at, detail)
        VALUES (t, k, d, s, sev, at, detail);
        PERFORM pg_notify('fleetcare_outbox', '');
    END IF;
END $$;

CREATE FUNCTION fleetcare_trouble_opened() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fleetcare_outbox(NEW.tenant_id,
        CASE WHEN NEW.rule_id LIKE 'supply-%' THEN 'supply.low'
             WHEN NEW.rule_id LIKE 'part-end-of-life:%' THEN 'part.end_of_life'
             ELSE 'trouble.opened' END,
        NEW.device_id, NEW.id, NEW.severity, NEW.opened_at, NULL);
    RETURN NULL;
END $$;
CREATE TRIGGER notify_trouble_opened AFTER INSERT ON troubles
FOR EACH ROW EXECUTE FUNCTION fleetcare_trouble_opened();

CREATE FUNCTION fleetcare_trouble_resolved() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fleetcare_outbox(NEW.tenant_id, 'trouble.resolved', NEW.device_id, NEW.id,
        NEW.severity, COALESCE(NEW.resolved_at, NEW.last_event_at), NULL);
    RETURN NULL;
END $$;
CREATE TRIGGER notify_trouble_resolved AFTER UPDATE OF state ON troubles
FOR EACH ROW WHEN (NEW.state = 'resolved' AND OLD.state <> 'resolved')
EXECUTE FUNCTION fleetcare_trouble_resolved();

CREATE FUNCTION fleetcare_advice() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fleetcare_outbox(NEW.tenant_id, 'advice.created', NEW.device_id, NEW.id, 'major',
        NEW.created_at, NULL);
    RETURN NULL;
END $$;
CREATE TRIGGER notify_advice AFTER INSERT ON notifications
FOR EACH ROW EXECUTE FUNCTION fleetcare_advice();

CREATE FUNCTION fleetcare_rollout_paused() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fleetcare_outbox(NEW.tenant_id, 'rollout.paused', NULL, NEW.id, 'major',
        NEW.updated_at, NEW.state_reason);
    RETURN NULL;
END $$;
CREATE TRIGGER notify_rollout_paused AFTER UPDATE OF state ON rollouts
FOR EACH ROW WHEN (NEW.state = 'paused' AND OLD.state <> 'paused')
EXECUTE FUNCTION fleetcare_rollout_paused();

CREATE FUNCTION fleetcare_job_failed() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    PERFORM fleetcare_outbox(NEW.tenant_id, 'job.failed', NEW.device_id, NEW.id, 'major',
        NEW.updated_at, NEW.reason);
    RETURN NULL;
END $$;
CREATE TRIGGER notify_job_failed AFTER UPDATE OF state ON jobs
FOR EACH ROW WHEN (NEW.state = 'failed' AND OLD.state <> 'failed'
    AND COALESCE(NEW.reason, '') <> 'cancelled')
EXECUTE FUNCTION fleetcare_job_failed();

-- A report from a device marked offline: `device.online`, and the mark goes.
CREATE FUNCTION fleetcare_device_online() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.last_report_at IS DISTINCT FROM OLD.last_report_at THEN
        PERFORM fleetcare_outbox(NEW.tenant_id, 'device.online', NEW.device_id, NULL, 'info',
            NEW.last_report_at, NULL);
        NEW.offline_since := NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER notify_device_online BEFORE UPDATE OF last_report_at ON devices
FOR EACH ROW WHEN (OLD.offline_since IS NOT NULL)
EXECUTE FUNCTION fleetcare_device_online();
