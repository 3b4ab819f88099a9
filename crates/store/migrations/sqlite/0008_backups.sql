-- Backups: one row per `rampart backup create`, complete or failed, with the manifest the
-- restore drill checks a restored copy against.

CREATE TABLE backups (
    id             TEXT PRIMARY KEY,
    created_at     BIGINT NOT NULL,
    -- complete or failed
    status         TEXT NOT NULL,
    backend        TEXT NOT NULL,
    schema_version BIGINT NOT NULL,
    -- Where the file is: file://<absolute path> (s3://bucket/key later).
    target         TEXT NOT NULL,
    size_bytes     BIGINT NOT NULL,
    -- SHA-256 (hex) of the whole backup file as written and read back.
    sha256         TEXT NOT NULL,
    key_name       TEXT NOT NULL,
    key_version    BIGINT NOT NULL,
    -- JSON: row counts per table, audit chain heads, the database snapshot's digest.
    manifest       TEXT NOT NULL,
    -- Why a failed backup failed (never a secret).
    error          TEXT
);
CREATE INDEX backups_created ON backups (created_at);
