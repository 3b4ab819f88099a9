-- Access control and audit: API keys, and the audit log as one hash chain per tenant
-- with signed checkpoints.

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    name         TEXT NOT NULL,
    -- The first characters of the secret, so people can tell their keys apart.
    prefix       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    -- Space-separated permissions (`audit:read payments:write`).
    scopes       TEXT NOT NULL,
    created_by   TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE UNIQUE INDEX api_keys_secret ON api_keys (secret_hash);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

-- Each event carries its position in its tenant's chain, the previous event's hash and
-- its own (SHA-256 over a canonical encoding, see the store's audit_events module).
ALTER TABLE audit_events ADD COLUMN seq BIGINT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_events_chain ON audit_events (tenant_id, seq);

-- The head of each tenant's chain. Appending reads and moves it in the same transaction
-- as the event, so two writers cannot both extend the same head (no fork).
CREATE TABLE audit_heads (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
    seq       BIGINT NOT NULL,
    hash      TEXT NOT NULL
);

-- Signed statements "tenant T's chain had N events ending in hash H at time X".
CREATE TABLE audit_checkpoints (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    seq        BIGINT NOT NULL,
    head_hash  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    kid        TEXT NOT NULL,
    signature  TEXT NOT NULL
);
CREATE UNIQUE INDEX audit_checkpoints_seq ON audit_checkpoints (tenant_id, seq);
