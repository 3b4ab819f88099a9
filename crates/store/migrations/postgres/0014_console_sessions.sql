-- Browser sessions of the console (/console/). Each is bound to one identity session
-- (`sessions`), so logout, revocation and a disabled user end it through the same check
-- every API request makes; `role` is the user's role at sign-in, and a page finding
-- another one ends the browser session (a new grant means signing in again). The cookie holds a random secret; only its
-- digest is stored. `last_seen_at` drives the idle timeout, `expires_at` the absolute one.
CREATE TABLE console_sessions (
    token_hash    TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES sessions(id),
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    user_id       TEXT NOT NULL REFERENCES users(id),
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX console_sessions_session ON console_sessions (session_id);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- One object's history (a payment's page shows its audit trail): without this, finding
-- the few events of one target walks the tenant's whole chain.
CREATE INDEX audit_events_target ON audit_events (tenant_id, target_id, seq);

ALTER TABLE console_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON console_sessions
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');
