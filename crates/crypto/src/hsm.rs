//! Keys held in a PKCS#11 token (an HSM, or SoftHSM2 in development and CI).
//!
//! Private keys are generated inside the token as non-extractable, sensitive token
//! objects: they sign there and never leave it. This module speaks PKCS#11 through the
//! `cryptoki` crate; the module path, token label and PIN come from configuration.
//!
//! What is here today: P-256 (ES256) key generation, lookup by label, signing, and the
//! public point for JWKS. The Crypto issue continues with the root key and the other
//! algorithms in the token.

use std::path::Path;
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256};

/// DER of the P-256 curve OID (1.2.840.10045.3.1.7), as CKA_EC_PARAMS wants it.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("PKCS#11: {0}")]
    Pkcs11(#[from] cryptoki::error::Error),
    #[error("no token labelled {0:?} in the PKCS#11 module")]
    NoToken(String),
    #[error("the token returned an unexpected {0}")]
    Unexpected(&'static str),
}

/// A P-256 key pair in the token.
#[derive(Debug, Clone)]
pub struct HsmKey {
    pub label: String,
    private: ObjectHandle,
    public: ObjectHandle,
    /// The uncompressed public point: `0x04 || x || y`.
    pub public_point: Vec<u8>,
}

/// A logged-in session on one token. PKCS#11 sessions are not shareable between
/// threads at once, so calls take turns.
pub struct Hsm {
    session: Mutex<Session>,
    _context: Pkcs11,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm").finish_non_exhaustive()
    }
}

impl Hsm {
    /// Loads the module, finds the token by label and logs in as its user.
    pub fn open(module: &Path, token_label: &str, pin: &str) -> Result<Hsm, HsmError> {
        let context = Pkcs11::new(module)?;
        context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
        let slot = context
            .get_slots_with_token()?
            .into_iter()
            .find(|slot| {
                context
                    .get_token_info(*slot)
                    .map(|info| info.label().trim() == token_label)
                    .unwrap_or(false)
            })
            .ok_or_else(|| HsmError::NoToken(token_label.to_string()))?;
        let session = context.open_rw_session(slot)?;
        session.login(UserType::User, Some(&AuthPin::from(pin)))?;
        Ok(Hsm {
            session: Mutex::new(session),
            _context: context,
        })
    }

    fn session(&self) -> Result<std::sync::MutexGuard<'_, Session>, HsmError> {
        self.session
            .lock()
            .map_err(|_| HsmError::Unexpected("poisoned session lock"))
    }

    /// Generates a P-256 key pair inside the token: the private half is a sensitive,
    /// non-extractable token object that can only sign.
    pub fn generate_p256(&self, label: &str) -> Result<HsmKey, HsmError> {
        let session = self.session()?;
        let id = label.as_bytes().to_vec();
        let public_template = [
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id),
        ];
        let (public, private) = session.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &public_template,
            &private_template,
        )?;
        let public_point = read_point(&session, public)?;
        Ok(HsmKey {
            label: label.to_string(),
            private,
            public,
            public_point,
        })
    }

    /// The key pair with this label, if the token has one.
    pub fn find_p256(&self, label: &str) -> Result<Option<HsmKey>, HsmError> {
        let session = self.session()?;
        let find = |class| {
            session.find_objects(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
        };
        let (Some(private), Some(public)) = (
            find(ObjectClass::PRIVATE_KEY)?.first().copied(),
            find(ObjectClass::PUBLIC_KEY)?.first().copied(),
        ) else {
            return Ok(None);
        };
        let public_point = read_point(&session, public)?;
        Ok(Some(HsmKey {
            label: label.to_string(),
            private,
            public,
            public_point,
        }))
    }

    /// ES256: ECDSA P-256 over SHA-256 of `message`, as `r || s` (64 bytes, the JWS form).
    pub fn sign_p256(&self, key: &HsmKey, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let digest = Sha256::digest(message);
        let signature = self
            .session()?
            .sign(&Mechanism::Ecdsa, key.private, &digest)?;
        if signature.len() != 64 {
            return Err(HsmError::Unexpected("signature length"));
        }
        Ok(signature)
    }

    /// Whether the token would let the private key out (it must not).
    pub fn private_key_extractable(&self, key: &HsmKey) -> Result<bool, HsmError> {
        let attributes = self
            .session()?
            .get_attributes(key.private, &[AttributeType::Extractable])?;
        match attributes.first() {
            Some(Attribute::Extractable(extractable)) => Ok(*extractable),
            _ => Err(HsmError::Unexpected("attribute set")),
        }
    }

    /// Whether `key`'s public half is the object this handle names (for tests and checks).
    pub fn public_handle_matches(&self, key: &HsmKey) -> Result<bool, HsmError> {
        Ok(read_point(&*self.session()?, key.public)? == key.public_point)
    }
}

/// CKA_EC_POINT is a DER OCTET STRING around the uncompressed point.
fn read_point(session: &Session, public: ObjectHandle) -> Result<Vec<u8>, HsmError> {
    match session
        .get_attributes(public, &[AttributeType::EcPoint])?
        .first()
    {
        Some(Attribute::EcPoint(der)) if der.len() == 67 && der[0] == 0x04 && der[1] == 65 => {
            Ok(der[2..].to_vec())
        }
        Some(Attribute::EcPoint(raw)) if raw.len() == 65 && raw[0] == 0x04 => Ok(raw.clone()),
        _ => Err(HsmError::Unexpected("public point")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A P-256 key made in a real SoftHSM2 token signs there, its private half is
    /// non-extractable, and Python's `cryptography` verifies the signature with the public
    /// point. Needs `RAMPART_TEST_PKCS11_MODULE` (`.ci/run` installs SoftHSM2 and sets it).
    #[test]
    fn softhsm_p256_key_signs_and_an_independent_library_verifies() {
        let Ok(module) = std::env::var("RAMPART_TEST_PKCS11_MODULE") else {
            eprintln!(
                "skipped: set RAMPART_TEST_PKCS11_MODULE (e.g. /usr/lib/softhsm/libsofthsm2.so)"
            );
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        // SoftHSM reads this at C_Initialize; this is the only test in the binary that
        // loads a PKCS#11 module.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let init = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                "rampart-test",
                "--pin",
                "1234",
                "--so-pin",
                "5678",
            ])
            .output()
            .expect("softhsm2-util is installed");
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );

        let hsm = Hsm::open(Path::new(&module), "rampart-test", "1234").unwrap();
        let key = hsm.generate_p256("jwt-es256-1").unwrap();
        assert_eq!(key.public_point.len(), 65);
        assert!(
            !hsm.private_key_extractable(&key).unwrap(),
            "private key must be non-extractable"
        );
        let found = hsm
            .find_p256("jwt-es256-1")
            .unwrap()
            .expect("found by label");
        assert_eq!(found.public_point, key.public_point);
        assert!(hsm.public_handle_matches(&found).unwrap());
        assert!(
            Hsm::open(Path::new(&module), "rampart-test", "0000").is_err(),
            "wrong PIN"
        );

        let message = b"rampart checkpoint";
        let signature = hsm.sign_p256(&key, message).unwrap();
        let verify = |msg: &[u8]| {
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            Command::new("python3")
                .args([
                    "-c",
                    "import sys\n\
                     from cryptography.hazmat.primitives import hashes\n\
                     from cryptography.hazmat.primitives.asymmetric import ec, utils\n\
                     point, sig, msg = (bytes.fromhex(a) for a in sys.argv[1:4])\n\
                     key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)\n\
                     r, s = int.from_bytes(sig[:32], 'big'), int.from_bytes(sig[32:], 'big')\n\
                     key.verify(utils.encode_dss_signature(r, s), msg, ec.ECDSA(hashes.SHA256()))\n",
                    &hex(&key.public_point),
                    &hex(&signature),
                    &hex(msg),
                ])
                .output()
                .expect("python3 with cryptography is installed")
        };
        let ok = verify(message);
        assert!(
            ok.status.success(),
            "python cryptography rejected: {}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(
            !verify(b"rampart checkpoinT").status.success(),
            "a changed message must not verify"
        );
    }
}
