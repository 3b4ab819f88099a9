-- Amaturalist (seed 000): taxa and conservation statuses (shared by every community
-- tenant, like a checklist), and per tenant: observations, identifications, data-quality
-- and needs-ID votes, and the deleted-observation log that mobile clients sync from.
-- True coordinates are only ever in `private_location`, sealed; `latitude`/`longitude`
-- are the public point (obscured, or none when private).

CREATE TABLE taxa (
    id          BIGINT PRIMARY KEY,
    parent_id   BIGINT REFERENCES taxa(id),
    name        TEXT NOT NULL,
    rank        TEXT NOT NULL,
    rank_level  DOUBLE PRECISION NOT NULL,
    -- '/'-joined ids from the root to the taxon itself, with a trailing '/': '/1/47/…/42/'.
    -- A subtree is `path LIKE '<path>%'` (text_pattern_ops indexes).
    path        TEXT NOT NULL,
    name_en     TEXT,
    name_id     TEXT,
    active      BIGINT NOT NULL DEFAULT 1,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX taxa_path ON taxa (path text_pattern_ops);
CREATE INDEX taxa_name ON taxa (lower(name) text_pattern_ops);
CREATE INDEX taxa_name_en ON taxa (lower(name_en) text_pattern_ops);
CREATE INDEX taxa_name_id ON taxa (lower(name_id) text_pattern_ops);

CREATE TABLE conservation_statuses (
    taxon_id    BIGINT NOT NULL REFERENCES taxa(id),
    authority   TEXT NOT NULL,
    status      TEXT NOT NULL,
    iucn        BIGINT NOT NULL,
    geoprivacy  TEXT NOT NULL,
    PRIMARY KEY (taxon_id, authority)
);

CREATE TABLE observations (
    id                         BIGSERIAL PRIMARY KEY,
    tenant_id                  TEXT NOT NULL REFERENCES tenants(id),
    uuid                       TEXT NOT NULL UNIQUE,
    user_id                    TEXT NOT NULL REFERENCES users(id),
    observed_on                TEXT,
    time_observed_at           BIGINT,
    utc_offset_mins            BIGINT,
    latitude                   DOUBLE PRECISION,
    longitude                  DOUBLE PRECISION,
    positional_accuracy        BIGINT,
    public_positional_accuracy BIGINT,
    private_location           BYTEA,
    geoprivacy                 TEXT NOT NULL,
    taxon_geoprivacy           TEXT NOT NULL,
    place_guess                TEXT,
    species_guess              TEXT,
    description                TEXT,
    license                    TEXT,
    captive                    BIGINT NOT NULL DEFAULT 0,
    tags                       TEXT NOT NULL,
    fields                     TEXT NOT NULL,
    prefers_community_taxon    BIGINT NOT NULL DEFAULT 1,
    taxon_id                   BIGINT REFERENCES taxa(id),
    community_taxon_id         BIGINT REFERENCES taxa(id),
    community_score            DOUBLE PRECISION,
    taxon_path                 TEXT,
    quality_grade              TEXT NOT NULL,
    agreements                 BIGINT NOT NULL DEFAULT 0,
    disagreements              BIGINT NOT NULL DEFAULT 0,
    photos_count               BIGINT NOT NULL DEFAULT 0,
    flagged                    BIGINT NOT NULL DEFAULT 0,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);
CREATE INDEX observations_tenant_id ON observations (tenant_id, id);
CREATE INDEX observations_user ON observations (tenant_id, user_id, id);
CREATE INDEX observations_taxon_path ON observations (tenant_id, taxon_path text_pattern_ops, id);
CREATE INDEX observations_grade ON observations (tenant_id, quality_grade, id);
CREATE INDEX observations_updated ON observations (tenant_id, updated_at);
CREATE INDEX observations_public_point ON observations (tenant_id, latitude, longitude);

CREATE TABLE identifications (
    id                 BIGSERIAL PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    uuid               TEXT NOT NULL UNIQUE,
    observation_id     BIGINT NOT NULL REFERENCES observations(id),
    user_id            TEXT NOT NULL REFERENCES users(id),
    taxon_id           BIGINT NOT NULL REFERENCES taxa(id),
    body               TEXT,
    is_current         BIGINT NOT NULL,
    hidden             BIGINT NOT NULL DEFAULT 0,
    disagreement       BIGINT,
    previous_taxon_id  BIGINT REFERENCES taxa(id),
    category           TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX identifications_observation ON identifications (observation_id, id);

-- One vote per user and metric; the system's own `wild = false` vote has user_id ''.
CREATE TABLE quality_votes (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    observation_id BIGINT NOT NULL REFERENCES observations(id),
    user_id        TEXT NOT NULL,
    metric         TEXT NOT NULL,
    agree          BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (observation_id, metric, user_id)
);

CREATE TABLE needs_id_votes (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    observation_id BIGINT NOT NULL REFERENCES observations(id),
    user_id        TEXT NOT NULL REFERENCES users(id),
    vote_up        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (observation_id, user_id)
);

CREATE TABLE deleted_observations (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    observation_id BIGINT NOT NULL,
    uuid           TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    deleted_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, observation_id)
);
CREATE INDEX deleted_observations_at ON deleted_observations (tenant_id, deleted_at);

-- Taxa and statuses are shared reference data; every other table is a tenant's.

ALTER TABLE observations ENABLE ROW LEVEL SECURITY;
ALTER TABLE observations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON observations
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

ALTER TABLE identifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE identifications FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON identifications
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

ALTER TABLE quality_votes ENABLE ROW LEVEL SECURITY;
ALTER TABLE quality_votes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON quality_votes
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

ALTER TABLE needs_id_votes ENABLE ROW LEVEL SECURITY;
ALTER TABLE needs_id_votes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON needs_id_votes
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');

ALTER TABLE deleted_observations ENABLE ROW LEVEL SECURITY;
ALTER TABLE deleted_observations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON deleted_observations
    USING (tenant_id = current_setting('rampart.tenant_id', true)
           OR current_setting('rampart.system', true) = 'on');
