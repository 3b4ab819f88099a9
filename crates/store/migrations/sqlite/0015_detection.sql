-- Security events in the database, so every node's are read in one place (the API, the
-- detector); the JSON-lines file each node writes stays as the local copy. `seq` orders
-- them for the detector's cursor; `occurred_at` is when the node recorded the event.
CREATE TABLE security_events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    occurred_at  INTEGER NOT NULL,
    event        TEXT NOT NULL,
    severity     TEXT NOT NULL,
    tenant_id    TEXT,
    user_id      TEXT,
    api_key_id   TEXT,
    source_ip    TEXT,
    request_id   TEXT,
    -- JSON; never a secret (the security log's rule).
    detail       TEXT NOT NULL
);
CREATE INDEX security_events_time ON security_events (occurred_at);
CREATE INDEX security_events_type ON security_events (event, occurred_at);

-- What the detection rules raised. `tenant_id` is the tenant the alert is about (NULL: the
-- platform's, such as one address spraying every tenant); `group_key` the rule's group-by
-- values as JSON. An alert stays one row while its group keeps matching: a later match
-- of the same rule and group within the rule's window adds to it.
CREATE TABLE alerts (
    id               TEXT PRIMARY KEY,
    rule_id          TEXT NOT NULL,
    title            TEXT NOT NULL,
    level            TEXT NOT NULL,
    tenant_id        TEXT,
    group_key        TEXT NOT NULL,
    techniques       TEXT NOT NULL,
    event_count      INTEGER NOT NULL,
    event_ids        TEXT NOT NULL,
    first_event_at   INTEGER NOT NULL,
    last_event_at    INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX alerts_tenant ON alerts (tenant_id, created_at);
CREATE INDEX alerts_created ON alerts (created_at);
CREATE INDEX alerts_group ON alerts (rule_id, group_key, last_event_at);

-- The detector's cursor and lease: one node evaluates at a time; another takes over when
-- the lease lapses and replays from the cursor.
CREATE TABLE detection_state (
    name         TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    lease_until  INTEGER NOT NULL,
    last_seq     INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
INSERT INTO detection_state (name, holder, lease_until, last_seq, updated_at)
    VALUES ('detector', '', 0, 0, 0);
