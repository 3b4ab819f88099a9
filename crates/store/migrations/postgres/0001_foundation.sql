-- Foundation: tenants, users, sessions with rotating refresh tokens, token signing keys,
-- and audit events. Ids are UUIDv7 text, times are Unix milliseconds (BIGINT): the
-- portable subset shared with the PostgreSQL migration beside this one.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active',
    created_at  BIGINT NOT NULL
);

-- The platform's own tenant: platform admins belong to it, so every user and every
-- token has a tenant.
INSERT INTO tenants (id, name, kind, status, created_at)
VALUES ('00000000-0000-0000-0000-000000000000', 'Platform', 'platform', 'active', 0);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    email         TEXT NOT NULL,
    name          TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active',
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);
CREATE INDEX users_tenant ON users (tenant_id, id);

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    user_id        TEXT NOT NULL REFERENCES users(id),
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    revoked_reason TEXT,
    source_ip      TEXT,
    user_agent     TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

-- One row per refresh token ever issued; a session's tokens form one rotation family.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id),
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE signing_keys (
    kid                TEXT PRIMARY KEY,
    alg                TEXT NOT NULL,
    sealed_private_key BYTEA NOT NULL,
    created_at         BIGINT NOT NULL,
    retired_at         BIGINT
);

CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    occurred_at BIGINT NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    actor_type  TEXT NOT NULL,
    actor_id    TEXT,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT,
    outcome     TEXT NOT NULL,
    request_id  TEXT,
    source_ip   TEXT,
    user_agent  TEXT,
    changes     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at);

-- Row-level security. Every transaction the store opens sets, with set_config(..., true)
-- (transaction-local, safe behind connection poolers), either `rampart.tenant_id` to the
-- tenant it acts for, or `rampart.system` to 'on' for the few cross-tenant operations
-- (login by e-mail, refresh-token lookup, platform admin work). FORCE makes the policies
-- bind the table owner too; only superusers and BYPASSRLS roles escape them, and the
-- store never runs requests as one (see database.app_role).
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sessions
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

ALTER TABLE refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE refresh_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refresh_tokens
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

-- Signing keys belong to no tenant: only system transactions see them.
ALTER TABLE signing_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE signing_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY system_only ON signing_keys
    USING (current_setting('rampart.system', true) = 'on');
