-- The keyring: named key-encryption keys with versions. Each version's material is
-- stored sealed under the root key; versions below a name's min_version are retired.

CREATE TABLE keyring_names (
    name        TEXT PRIMARY KEY,
    min_version BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL
);

CREATE TABLE keyring_versions (
    name             TEXT NOT NULL REFERENCES keyring_names(name),
    version          BIGINT NOT NULL,
    wrapped_material BLOB NOT NULL,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);
