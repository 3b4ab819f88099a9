-- Photos of observations (seed 000). The files are sealed objects in the object store
-- (`photos/<tenant>/<uuid>/<size>.jpg`); a row is written only after every size is stored.
-- `prefill` is the photo's EXIF location and time, sealed (only its observer sees it).
CREATE TABLE observation_photos (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    uuid           TEXT NOT NULL UNIQUE,
    observation_id INTEGER NOT NULL REFERENCES observations(id),
    user_id        TEXT NOT NULL REFERENCES users(id),
    position       INTEGER NOT NULL,
    license        TEXT,
    format         TEXT NOT NULL,
    width          INTEGER NOT NULL,
    height         INTEGER NOT NULL,
    sha256         TEXT NOT NULL,
    prefill        BLOB,
    created_at     INTEGER NOT NULL
);
CREATE INDEX observation_photos_of ON observation_photos (observation_id, position, id);
