-- Signing keys get a purpose (access-token, audit-checkpoint) and a scope (kind:<kind> or
-- tenant:<id>), and may live in a PKCS#11 token. Keys from before this migration signed
-- both tokens and checkpoints: they become 'legacy', verify both, and never sign again.
ALTER TABLE signing_keys ADD COLUMN purpose TEXT NOT NULL DEFAULT 'legacy';
ALTER TABLE signing_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'platform';
-- The token object's label when a token holds the private key; sealed_private_key is
-- then empty.
ALTER TABLE signing_keys ADD COLUMN token_label TEXT;
-- The public JWK, so every node can verify without opening (or holding) the private key.
ALTER TABLE signing_keys ADD COLUMN public_jwk TEXT;
CREATE INDEX signing_keys_set ON signing_keys (purpose, scope, created_at);

-- A user's phone number, sealed through the keyring (key "pii"), bound to the user's
-- tenant and id. NULL when none is set.
ALTER TABLE users ADD COLUMN sealed_phone BLOB;
