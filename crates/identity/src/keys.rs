//! Loading the token signing keys from the store, creating the first on first start.

use rampart_crypto::{RootKey, SigningKey, TokenKeys};
use rampart_store::{now_ms, Store, StoredSigningKey};

use crate::IdentityError;

/// Opens every live key with the root key. With none stored yet, creates one; if another
/// node races us, both keys are kept and both verify.
pub(crate) async fn load(
    store: &Store,
    root: &RootKey,
    issuer: &str,
    audience: &str,
) -> Result<TokenKeys, IdentityError> {
    let mut stored = store.signing_keys().await?;
    if stored.is_empty() {
        let key = SigningKey::generate();
        let sealed = key
            .seal(root)
            .map_err(|e| IdentityError::Keys(e.to_string()))?;
        store
            .insert_signing_key(
                &StoredSigningKey {
                    kid: key.kid().to_string(),
                    alg: "ES256".into(),
                    sealed_private_key: sealed,
                    created_at: now_ms(),
                },
                rampart_audit::event(
                    rampart_store::Actor::System,
                    "signing_key.create",
                    "signing_key",
                    Default::default(),
                )
                .changes(serde_json::json!({ "alg": "ES256" }))
                .build(),
            )
            .await?;
        tracing::info!(
            kid = key.kid(),
            "created the first access-token signing key"
        );
        stored = store.signing_keys().await?;
    }
    let keys = stored
        .iter()
        .filter(|k| k.alg == "ES256")
        .map(|k| {
            SigningKey::open(root, &k.kid, &k.sealed_private_key).map_err(|_| {
                IdentityError::Keys(format!(
                    "signing key {} does not open with this root key: every node needs the \
                     root key the database was created with (crypto.root_key or \
                     <data_dir>/keys/root.key)",
                    k.kid
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    TokenKeys::new(&keys, issuer, audience).map_err(|e| IdentityError::Keys(e.to_string()))
}
