-- The durable job queue (crates/jobs). Platform data: no tenant column and no row-level
-- security; payloads carry references (ids), never secrets.
--
-- state: queued (waiting for run_at), running (leased by lease_owner until lease_until),
-- done (kept for jobs.retention, then purged), dead (failed max_attempts times or
-- permanently; listed by `rampart jobs dead`, re-queued by `rampart jobs retry`).
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    priority     BIGINT NOT NULL DEFAULT 0,
    run_at       BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),
    unique_key   TEXT,
    lease_owner  TEXT,
    lease_until  BIGINT,
    -- The handler's error message; handlers must not put secrets in it.
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
-- Claiming: the due jobs of one queue, highest priority first, then oldest.
CREATE INDEX jobs_claim ON jobs (queue, state, priority, run_at);
-- Reclaiming expired leases.
CREATE INDEX jobs_lease ON jobs (state, lease_until);
-- A unique key dedups only while a job with it is live; once done or dead, the key is free.
CREATE UNIQUE INDEX jobs_unique_live ON jobs (kind, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'running');

-- One row per cron slot that some node won: the primary key is what makes a slot run once
-- across all nodes.
CREATE TABLE cron_runs (
    name       TEXT NOT NULL,
    slot       BIGINT NOT NULL,
    job_id     TEXT NOT NULL,
    node       TEXT NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (name, slot)
);
