-- Handling alerts: snooze (hidden from the open list until a time; a new match adds to it
-- quietly), how each alert's mail and webhook went out (at once, or in a digest: lower
-- levels, and anything past a channel's hourly limit), and suppressions (a rule and group
-- whose new matches raise nothing until an expiry, with the reason; audited).
ALTER TABLE alerts ADD COLUMN snoozed_until INTEGER;
-- 'none' (nothing to send), 'immediate' (sent with the alert), 'digest' (waiting for the
-- next digest), 'digested' (sent in one).
ALTER TABLE alerts ADD COLUMN mail_delivery TEXT NOT NULL DEFAULT 'none';
ALTER TABLE alerts ADD COLUMN webhook_delivery TEXT NOT NULL DEFAULT 'none';
CREATE INDEX alerts_mail_delivery ON alerts (mail_delivery, created_at);
CREATE INDEX alerts_webhook_delivery ON alerts (webhook_delivery, created_at);

CREATE TABLE alert_suppressions (
    id                  TEXT PRIMARY KEY,
    -- NULL: a suppression of platform alerts (platform admins only).
    tenant_id           TEXT,
    rule_id             TEXT NOT NULL,
    group_key           TEXT NOT NULL,
    reason              TEXT NOT NULL,
    created_by          TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    lifted_at           INTEGER,
    -- Matches it kept quiet, and the newest one's time: still visible, never silent.
    suppressed_count    INTEGER NOT NULL DEFAULT 0,
    last_suppressed_at  INTEGER
);
CREATE INDEX alert_suppressions_rule ON alert_suppressions (rule_id, group_key, expires_at);
CREATE INDEX alert_suppressions_tenant ON alert_suppressions (tenant_id, created_at);


-- The `traceparent` of the request that enqueued a job (when traces are exported), so the
-- job's span, and a webhook it delivers, continue that request's trace.
ALTER TABLE jobs ADD COLUMN trace_parent TEXT;
