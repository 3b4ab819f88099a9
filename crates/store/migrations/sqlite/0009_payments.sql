-- Payments (seed 003). A payment refers to its card by vault token; only last 4, brand and
-- the keyed fingerprint are here. Amounts are integers of minor units. Booleans are 0/1.

CREATE TABLE payments (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants(id),
    status              TEXT NOT NULL,
    amount              BIGINT NOT NULL,
    currency            TEXT NOT NULL,
    capture             BIGINT NOT NULL,
    captured_amount     BIGINT NOT NULL DEFAULT 0,
    refunded_amount     BIGINT NOT NULL DEFAULT 0,
    card_token          TEXT NOT NULL,
    card_last4          TEXT NOT NULL,
    card_brand          TEXT NOT NULL,
    card_fingerprint    TEXT NOT NULL,
    card_country        TEXT,
    fraud_score         BIGINT NOT NULL,
    fraud_decision      TEXT NOT NULL,
    fraud_reasons       TEXT NOT NULL,
    processor           TEXT NOT NULL,
    processor_reference TEXT,
    decline_code        TEXT,
    simulated           BIGINT NOT NULL,
    description         TEXT,
    reference           TEXT,
    customer_email      TEXT,
    customer_ip         TEXT,
    customer_country    TEXT,
    metadata            TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX payments_tenant_created ON payments (tenant_id, created_at, id);
-- The fraud velocity windows count by these.
CREATE INDEX payments_card ON payments (tenant_id, card_fingerprint, created_at);
CREATE INDEX payments_ip ON payments (tenant_id, customer_ip, created_at);
CREATE INDEX payments_email ON payments (tenant_id, customer_email, created_at);

CREATE TABLE payment_refunds (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    payment_id TEXT NOT NULL REFERENCES payments(id),
    amount     BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX payment_refunds_payment ON payment_refunds (payment_id);

-- Idempotency-Key: the first response to a key is kept and replayed for 24 hours.
-- status 0: the first request is still running.
CREATE TABLE idempotency_keys (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       BIGINT NOT NULL,
    response     TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- A merchant's fraud rules (JSON; defaults for what it leaves out).
CREATE TABLE fraud_rules (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    rules      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
