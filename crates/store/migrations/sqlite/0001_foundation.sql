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
    sealed_private_key BLOB NOT NULL,
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
