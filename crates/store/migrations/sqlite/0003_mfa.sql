-- Multi-factor authentication: TOTP factors (secret sealed under the root key), hashed
-- single-use recovery codes, login challenges between password and code, and a mark on
-- each session saying whether it passed MFA.

CREATE TABLE mfa_factors (
    user_id       TEXT PRIMARY KEY REFERENCES users(id),
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    sealed_secret BLOB NOT NULL,
    created_at    BIGINT NOT NULL,
    -- NULL until the user proves the authenticator works with a first code.
    confirmed_at  BIGINT,
    -- The last 30-second step a code was accepted for; codes of that step or earlier
    -- are refused, so each code works once.
    last_step     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE mfa_recovery_codes (
    code_hash TEXT PRIMARY KEY,
    user_id   TEXT NOT NULL REFERENCES users(id),
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    used_at   BIGINT
);
CREATE INDEX mfa_recovery_codes_user ON mfa_recovery_codes (user_id);

CREATE TABLE mfa_challenges (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    attempts   BIGINT NOT NULL DEFAULT 0
);

ALTER TABLE sessions ADD COLUMN mfa_at BIGINT;
