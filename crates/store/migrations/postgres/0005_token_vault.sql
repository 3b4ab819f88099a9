-- The card token vault. The card number is stored only sealed (envelope encryption
-- under the tenant's vault key, bound to tenant, table, column and token); BIN (first 6)
-- and last 4 are kept in clear, as PCI DSS truncation allows; the fingerprint is a keyed
-- hash. The CVC is never stored.

CREATE TABLE vault_tokens (
    token       TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    sealed_pan  BYTEA NOT NULL,
    bin         TEXT NOT NULL,
    last4       TEXT NOT NULL,
    brand       TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    exp_month   BIGINT NOT NULL,
    exp_year    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX vault_tokens_fingerprint ON vault_tokens (tenant_id, fingerprint);

ALTER TABLE vault_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vault_tokens
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');
