//! Verifying the audit chains and signing checkpoints of them.
//!
//! Verification walks every tenant's chain from the first event: sequence numbers must be
//! contiguous, each event must name its predecessor's hash, and each stored hash must
//! equal the hash recomputed from the event's fields. The head must match the last event,
//! and each checkpoint must carry a valid signature and match the chain at its position.
//! The first break is reported with the tenant, the event and why: an altered event
//! fails its own hash, a removed one leaves a gap, a reordered one breaks the links, a
//! rewritten chain (all hashes recomputed) contradicts a signed checkpoint.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rampart_crypto::signing::{Purpose, SigningKeys};
use rampart_store::audit_events::{canonical_hash, Checkpoint, GENESIS_HASH};
use rampart_store::{new_id, now_ms, Store, StoreError};

const PAGE: i64 = 1000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub chains: usize,
    pub events: u64,
    pub checkpoints: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub tenant_id: String,
    /// The event at fault, when one can be named.
    pub event_id: Option<String>,
    pub seq: i64,
    pub reason: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.event_id {
            Some(id) => write!(
                f,
                "tenant {}: event {} (seq {}): {}",
                self.tenant_id, id, self.seq, self.reason
            ),
            None => write!(
                f,
                "tenant {}: at seq {}: {}",
                self.tenant_id, self.seq, self.reason
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("audit chain broken: {0}")]
    Broken(ChainBreak),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Signing(#[from] rampart_crypto::signing::SigningError),
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot sign a checkpoint: {0}")]
    Signing(#[from] rampart_crypto::signing::SigningError),
}

/// Verifies every tenant's chain and every checkpoint.
pub async fn verify_all(store: &Store, keys: &SigningKeys) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport::default();
    for head in store.audit_chain_heads().await? {
        verify_chain(store, keys, &head, &mut report).await?;
    }
    Ok(report)
}

/// Verifies one tenant's chain and its checkpoints (the console's "verify now"); a
/// tenant with no events yet has an empty, valid chain.
pub async fn verify_tenant(
    store: &Store,
    keys: &SigningKeys,
    tenant_id: &str,
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport::default();
    if let Some(head) = store
        .audit_chain_heads()
        .await?
        .into_iter()
        .find(|h| h.tenant_id == tenant_id)
    {
        verify_chain(store, keys, &head, &mut report).await?;
    }
    Ok(report)
}

async fn verify_chain(
    store: &Store,
    keys: &SigningKeys,
    head: &rampart_store::audit_events::ChainHead,
    report: &mut VerifyReport,
) -> Result<(), VerifyError> {
    let tenant = head.tenant_id.clone();
    let broken = |event_id: Option<String>, seq: i64, reason: String| {
        VerifyError::Broken(ChainBreak {
            tenant_id: tenant.clone(),
            event_id,
            seq,
            reason,
        })
    };
    if let Some(id) = store
        .unchained_audit_events(&tenant)
        .await?
        .into_iter()
        .next()
    {
        return Err(broken(
            Some(id),
            0,
            "event is outside the chain (no sequence number or hash)".into(),
        ));
    }
    let checkpoints = store.audit_checkpoints(&tenant).await?;
    let wanted: HashMap<i64, ()> = checkpoints.iter().map(|c| (c.seq, ())).collect();
    let mut hash_at: HashMap<i64, String> = HashMap::new();
    let mut expected_seq = 1;
    let mut prev = GENESIS_HASH.to_string();
    loop {
        let page = store
            .audit_chain_page(&tenant, expected_seq - 1, PAGE)
            .await?;
        if page.is_empty() {
            break;
        }
        for event in &page {
            if event.seq != expected_seq {
                return Err(broken(
                    Some(event.id.clone()),
                    event.seq,
                    format!("event seq {expected_seq} is missing before this one (removed)"),
                ));
            }
            if event.prev_hash != prev {
                return Err(broken(
                    Some(event.id.clone()),
                    event.seq,
                    "does not link to the event before it (reordered, or the one before was replaced)".into(),
                ));
            }
            if canonical_hash(event) != event.hash {
                return Err(broken(
                    Some(event.id.clone()),
                    event.seq,
                    "content does not match its hash (altered)".into(),
                ));
            }
            if wanted.contains_key(&event.seq) {
                hash_at.insert(event.seq, event.hash.clone());
            }
            prev = event.hash.clone();
            expected_seq += 1;
            report.events += 1;
        }
    }
    let last = expected_seq - 1;
    if head.seq != last || head.hash != prev {
        return Err(broken(
            None,
            head.seq,
            format!("the chain head says {} events but the chain has {last} (events removed from the end, or the head altered)", head.seq),
        ));
    }
    let kind = store.get_tenant(&tenant).await?.kind;
    // Either scope: the deployment may have switched between per-kind and per-tenant
    // keys since a checkpoint was signed.
    let scopes = [
        format!("kind:{}", kind.as_str()),
        format!("tenant:{tenant}"),
    ];
    for c in &checkpoints {
        let message = Checkpoint::signed_message(&c.tenant_id, c.seq, &c.head_hash, c.created_at);
        let key = keys.verifier(&c.kid).await?;
        let problem = match &key {
            None => Some("is signed by an unknown key"),
            Some(k) if !k.serves(Purpose::AuditCheckpoint) => {
                Some("is signed by a key that does not sign checkpoints")
            }
            Some(k) if k.purpose != Purpose::Legacy && !scopes.contains(&k.scope) => {
                Some("is signed by another tenant's key")
            }
            Some(k) => {
                let valid = URL_SAFE_NO_PAD
                    .decode(&c.signature)
                    .is_ok_and(|sig| k.verify(&message, &sig));
                (!valid).then_some("has an invalid signature")
            }
        };
        if let Some(problem) = problem {
            return Err(broken(
                None,
                c.seq,
                format!("checkpoint {} {problem}", c.id),
            ));
        }
        match hash_at.get(&c.seq) {
            Some(h) if *h == c.head_hash => {}
            _ => {
                return Err(broken(
                    None,
                    c.seq,
                    format!("checkpoint {} does not match the chain (events up to it were rewritten or removed)", c.id),
                ))
            }
        }
        report.checkpoints += 1;
    }
    report.chains += 1;
    Ok(())
}

/// Signs a checkpoint for each chain that has grown by `every_events` since its last
/// checkpoint, or has grown at all and whose last checkpoint is older than `every_ms`.
/// Returns how many were made. `every_events = 1, every_ms = 0` checkpoints every chain
/// that has anything new (`rampart audit checkpoint`).
pub async fn checkpoint_due(
    store: &Store,
    keys: &SigningKeys,
    every_events: i64,
    every_ms: i64,
) -> Result<usize, CheckpointError> {
    let now = now_ms();
    let mut made = 0;
    for head in store.audit_chain_heads().await? {
        let last_seq = head.last_checkpoint_seq.unwrap_or(0);
        let last_at = head.last_checkpoint_at.unwrap_or(0);
        let grown = head.seq - last_seq;
        if grown <= 0 || (grown < every_events && now - last_at < every_ms) {
            continue;
        }
        let message = Checkpoint::signed_message(&head.tenant_id, head.seq, &head.hash, now);
        let kind = store.get_tenant(&head.tenant_id).await?.kind;
        let scope = keys.policy().scope_for(&head.tenant_id, kind.as_str());
        let key = keys.signer(Purpose::AuditCheckpoint, &scope).await?;
        let signature = key.sign(&message)?;
        let (kid, signature) = (key.kid.clone(), URL_SAFE_NO_PAD.encode(signature));
        let checkpoint = Checkpoint {
            id: new_id(),
            tenant_id: head.tenant_id.clone(),
            seq: head.seq,
            head_hash: head.hash.clone(),
            created_at: now,
            kid,
            signature,
        };
        match store.insert_audit_checkpoint(&checkpoint).await {
            Ok(()) => made += 1,
            // Another node checkpointed the same head first.
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(made)
}
