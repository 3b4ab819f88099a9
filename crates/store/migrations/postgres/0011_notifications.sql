-- Notifications: one outbox for every channel (e-mail, SMS, webhooks). A row is written
-- in the transaction of the change that caused it, with the job that delivers it, so a
-- notification exists if and only if its change committed. Webhook deliveries, until now
-- their own table, become notifications of the `webhook` channel.

CREATE TABLE notifications (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    -- email, sms or webhook.
    channel          TEXT NOT NULL,
    -- email: the address; sms: the user id (the number is read, sealed, at send time);
    -- webhook: the endpoint id.
    recipient        TEXT NOT NULL,
    -- The template kind (email, sms) or the event type (webhook).
    template         TEXT NOT NULL,
    locale           TEXT NOT NULL,
    -- The template's data, sealed under the keyring key `notify` (it may hold a link token).
    sealed_data      BYTEA,
    -- webhook: the JSON body sent, fixed when the event happened.
    body             TEXT,
    -- What the notification is about (a payment id), for the log's filters.
    subject_id       TEXT,
    -- A second notification with the same key in the tenant is not written.
    dedupe_key       TEXT,
    -- queued, sent, failed (will be retried) or dead (no attempts left).
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_status_code BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    sent_at          BIGINT
);
CREATE INDEX notifications_tenant ON notifications (tenant_id, created_at);
CREATE UNIQUE INDEX notifications_dedupe ON notifications (tenant_id, dedupe_key);

INSERT INTO notifications (id, tenant_id, channel, recipient, template, locale, sealed_data,
    body, subject_id, dedupe_key, status, attempts, last_status_code, last_error, created_at,
    updated_at, sent_at)
SELECT id, tenant_id, 'webhook', endpoint_id, event, 'en', NULL, body, payment_id, NULL,
    CASE status WHEN 'delivered' THEN 'sent' WHEN 'failed' THEN 'dead' ELSE 'queued' END,
    attempts, last_status_code, last_error, created_at, updated_at,
    CASE status WHEN 'delivered' THEN updated_at ELSE NULL END
FROM webhook_deliveries;
DROP TABLE webhook_deliveries;

-- Queued deliveries keep their jobs: the new handler reads the old payload too.
UPDATE jobs SET kind = 'notify.deliver', queue = 'notify'
WHERE kind = 'webhook.deliver' AND state IN ('queued', 'running');

ALTER TABLE notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE notifications FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notifications
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

-- Account flows that send mail (identity): self-service sign-up (off unless the tenant
-- allows it), e-mail verification, password reset, e-mail change. Link tokens are stored
-- as SHA-256 digests, used once.
ALTER TABLE tenants ADD COLUMN allow_signup BIGINT NOT NULL DEFAULT 0;
-- `id` or `en`: the language of the user's mail.
ALTER TABLE users ADD COLUMN locale TEXT NOT NULL DEFAULT 'en';

CREATE TABLE account_tokens (
    token_hash TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    -- verify_email, reset_password or change_email.
    purpose    TEXT NOT NULL,
    -- change_email: the address to move to once confirmed.
    new_email  TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);

-- What a user chose to receive, by kind and channel; no row means the kind's default.
-- Security notices are not listed here: they cannot be turned off.
CREATE TABLE notification_preferences (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    kind       TEXT NOT NULL,
    channel    TEXT NOT NULL,
    enabled    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, kind, channel)
);

-- Devices a user has logged in from (user agent and IP prefix, digested), so a login
-- from a new one sends a security notice.
CREATE TABLE user_devices (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    device     TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (user_id, device)
);

ALTER TABLE account_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE account_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON account_tokens
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

ALTER TABLE notification_preferences ENABLE ROW LEVEL SECURITY;
ALTER TABLE notification_preferences FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notification_preferences
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

ALTER TABLE user_devices ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_devices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON user_devices
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');
