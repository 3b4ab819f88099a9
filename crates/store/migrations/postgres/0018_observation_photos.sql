-- Photos of observations (seed 000). The files are sealed objects in the object store
-- (`photos/<tenant>/<uuid>/<size>.jpg`); a row is written only after every size is stored.
-- `prefill` is the photo's EXIF location and time, sealed (only its observer sees it).
CREATE TABLE observation_photos (
    id             BIGSERIAL PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    uuid           TEXT NOT NULL UNIQUE,
    observation_id BIGINT NOT NULL REFERENCES observations(id),
    user_id        TEXT NOT NULL REFERENCES users(id),
    position       BIGINT NOT NULL,
    license        TEXT,
    format         TEXT NOT NULL,
    width          BIGINT NOT NULL,
    height         BIGINT NOT NULL,
    sha256         TEXT NOT NULL,
    prefill        BYTEA,
    created_at     BIGINT NOT NULL
);
CREATE INDEX observation_photos_of ON observation_photos (observation_id, position, id);

ALTER TABLE observation_photos ENABLE ROW LEVEL SECURITY;
ALTER TABLE observation_photos FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON observation_photos
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');
