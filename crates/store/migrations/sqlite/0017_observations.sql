-- Amaturalist (seed 000): taxa and conservation statuses (shared by every community
-- tenant, like a checklist), and per tenant: observations, identifications, data-quality
-- and needs-ID votes, and the deleted-observation log that mobile clients sync from.
-- True coordinates are only ever in `private_location`, sealed; `latitude`/`longitude`
-- are the public point (obscured, or none when private).

CREATE TABLE taxa (
    id          INTEGER PRIMARY KEY,
    parent_id   INTEGER REFERENCES taxa(id),
    name        TEXT NOT NULL,
    rank        TEXT NOT NULL,
    rank_level  REAL NOT NULL,
    -- '/'-joined ids from the root to the taxon itself, with a trailing '/': '/1/47/…/42/'.
    -- A subtree is `path LIKE '<path>%'` (NOCASE, so SQLite's LIKE can use the index).
    path        TEXT NOT NULL COLLATE NOCASE,
    name_en     TEXT,
    name_id     TEXT,
    active      INTEGER NOT NULL DEFAULT 1,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX taxa_path ON taxa (path);
CREATE INDEX taxa_name ON taxa (name COLLATE NOCASE);
CREATE INDEX taxa_name_en ON taxa (name_en COLLATE NOCASE);
CREATE INDEX taxa_name_id ON taxa (name_id COLLATE NOCASE);

CREATE TABLE conservation_statuses (
    taxon_id    INTEGER NOT NULL REFERENCES taxa(id),
    authority   TEXT NOT NULL,
    status      TEXT NOT NULL,
    iucn        INTEGER NOT NULL,
    geoprivacy  TEXT NOT NULL,
    PRIMARY KEY (taxon_id, authority)
);

CREATE TABLE observations (
    id                         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id                  TEXT NOT NULL REFERENCES tenants(id),
    uuid                       TEXT NOT NULL UNIQUE,
    user_id                    TEXT NOT NULL REFERENCES users(id),
    observed_on                TEXT,
    time_observed_at           INTEGER,
    utc_offset_mins            INTEGER,
    latitude                   REAL,
    longitude                  REAL,
    positional_accuracy        INTEGER,
    public_positional_accuracy INTEGER,
    private_location           BLOB,
    geoprivacy                 TEXT NOT NULL,
    taxon_geoprivacy           TEXT NOT NULL,
    place_guess                TEXT,
    species_guess              TEXT,
    description                TEXT,
    license                    TEXT,
    captive                    INTEGER NOT NULL DEFAULT 0,
    tags                       TEXT NOT NULL,
    fields                     TEXT NOT NULL,
    prefers_community_taxon    INTEGER NOT NULL DEFAULT 1,
    taxon_id                   INTEGER REFERENCES taxa(id),
    community_taxon_id         INTEGER REFERENCES taxa(id),
    community_score            REAL,
    taxon_path                 TEXT COLLATE NOCASE,
    quality_grade              TEXT NOT NULL,
    agreements                 INTEGER NOT NULL DEFAULT 0,
    disagreements              INTEGER NOT NULL DEFAULT 0,
    photos_count               INTEGER NOT NULL DEFAULT 0,
    flagged                    INTEGER NOT NULL DEFAULT 0,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL
);
CREATE INDEX observations_tenant_id ON observations (tenant_id, id);
CREATE INDEX observations_user ON observations (tenant_id, user_id, id);
CREATE INDEX observations_taxon_path ON observations (tenant_id, taxon_path, id);
CREATE INDEX observations_grade ON observations (tenant_id, quality_grade, id);
CREATE INDEX observations_updated ON observations (tenant_id, updated_at);
CREATE INDEX observations_public_point ON observations (tenant_id, latitude, longitude);

CREATE TABLE identifications (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    uuid               TEXT NOT NULL UNIQUE,
    observation_id     INTEGER NOT NULL REFERENCES observations(id),
    user_id            TEXT NOT NULL REFERENCES users(id),
    taxon_id           INTEGER NOT NULL REFERENCES taxa(id),
    body               TEXT,
    is_current         INTEGER NOT NULL,
    hidden             INTEGER NOT NULL DEFAULT 0,
    disagreement       INTEGER,
    previous_taxon_id  INTEGER REFERENCES taxa(id),
    category           TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX identifications_observation ON identifications (observation_id, id);

-- One vote per user and metric; the system's own `wild = false` vote has user_id ''.
CREATE TABLE quality_votes (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    observation_id INTEGER NOT NULL REFERENCES observations(id),
    user_id        TEXT NOT NULL,
    metric         TEXT NOT NULL,
    agree          INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (observation_id, metric, user_id)
);

CREATE TABLE needs_id_votes (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    observation_id INTEGER NOT NULL REFERENCES observations(id),
    user_id        TEXT NOT NULL REFERENCES users(id),
    vote_up        INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (observation_id, user_id)
);

CREATE TABLE deleted_observations (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    observation_id INTEGER NOT NULL,
    uuid           TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    deleted_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, observation_id)
);
CREATE INDEX deleted_observations_at ON deleted_observations (tenant_id, deleted_at);
