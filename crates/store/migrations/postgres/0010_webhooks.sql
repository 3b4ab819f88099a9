-- Webhooks: merchants' endpoints and every delivery of an event to one of them. The
-- signing secret is stored sealed (envelope encryption under the tenant's webhook key).

CREATE TABLE webhook_endpoints (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    url           TEXT NOT NULL,
    -- Comma-separated event names.
    events        TEXT NOT NULL,
    sealed_secret BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id),
    event            TEXT NOT NULL,
    payment_id       TEXT,
    -- The JSON body sent, fixed when the event happened.
    body             TEXT NOT NULL,
    -- pending, delivered or failed (no attempts left).
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_status_code BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant_id, created_at);

ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_endpoints
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');
