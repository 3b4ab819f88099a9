//! Key storage for the crypto crate: its `KeyringBackend` and `SigningKeyBackend` over the
//! store, with an audit event for every new key, key version and retirement.

use rampart_crypto::keyring::{BoxFuture, KeyringBackend, StoredKey};
use rampart_crypto::signing::{SigningKeyBackend, SigningKeyRecord};
use rampart_store::{Actor, Store};

pub struct StoreKeyring(pub Store);

fn audit(action: &str, changes: serde_json::Value) -> rampart_store::NewAuditEvent {
    rampart_audit::event(Actor::System, action, "key", Default::default())
        .changes(changes)
        .build()
}

impl KeyringBackend for StoreKeyring {
    fn load<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<StoredKey>, String>> {
        Box::pin(async move {
            let loaded = self.0.keyring_load(name).await.map_err(|e| {
                tracing::error!(error = %e, key = name, "cannot load key");
                e.to_string()
            })?;
            Ok(loaded.map(|(min, versions)| StoredKey {
                min_version: min as u32,
                versions: versions.into_iter().map(|(v, w)| (v as u32, w)).collect(),
            }))
        })
    }

    fn add_version<'a>(
        &'a self,
        name: &'a str,
        version: u32,
        wrapped: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let event = audit(
                "key.version_create",
                serde_json::json!({ "name": name, "version": version }),
            );
            self.0
                .keyring_add_version(name, i64::from(version), wrapped, event)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn retire_below<'a>(
        &'a self,
        name: &'a str,
        min_version: u32,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let event = audit(
                "key.retire",
                serde_json::json!({ "name": name, "below": min_version }),
            );
            self.0
                .keyring_retire_below(name, i64::from(min_version), event)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

pub struct StoreSigningKeys(pub Store);

impl SigningKeyBackend for StoreSigningKeys {
    fn list(&self) -> BoxFuture<'_, Result<Vec<SigningKeyRecord>, String>> {
        Box::pin(async move {
            let keys = self.0.signing_keys().await.map_err(|e| {
                tracing::error!(error = %e, "cannot load signing keys");
                e.to_string()
            })?;
            Ok(keys
                .into_iter()
                .map(|k| SigningKeyRecord {
                    kid: k.kid,
                    purpose: k.purpose,
                    scope: k.scope,
                    alg: k.alg,
                    sealed_private_key: k.sealed_private_key,
                    token_label: k.token_label,
                    public_jwk: k.public_jwk,
                    created_at: k.created_at,
                })
                .collect())
        })
    }

    fn insert(&self, record: SigningKeyRecord) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let event = rampart_audit::event(
                Actor::System,
                "signing_key.create",
                "signing_key",
                Default::default(),
            )
            .changes(serde_json::json!({
                "purpose": record.purpose,
                "scope": record.scope,
                "alg": record.alg,
                "in_token": record.token_label.is_some(),
            }))
            .build();
            let stored = rampart_store::StoredSigningKey {
                kid: record.kid,
                purpose: record.purpose,
                scope: record.scope,
                alg: record.alg,
                sealed_private_key: record.sealed_private_key,
                token_label: record.token_label,
                public_jwk: record.public_jwk,
                created_at: record.created_at,
            };
            self.0
                .insert_signing_key(&stored, event)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot store a signing key");
                    e.to_string()
                })
        })
    }
}
