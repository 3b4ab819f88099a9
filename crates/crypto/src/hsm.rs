//! Keys held in a PKCS#11 token (an HSM, or SoftHSM2 in development and CI).
//!
//! Private keys are generated inside the token as non-extractable, sensitive token
//! objects: they sign there and never leave it. The root key, when the token holds it, is
//! an AES-256 secret key object that only encrypts and decrypts there. This module speaks
//! PKCS#11 through the `cryptoki` crate; the module path, token label and PIN come from
//! configuration.
//!
//! Signing keys: ECDSA P-256 (ES256), Ed25519 (EdDSA) and RSA-PSS 2048 with SHA-256
//! (PS256). Objects are found again by their label, which the store records.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::{AuthPin, Ulong};
use sha2::{Digest, Sha256};

use crate::signing::Algorithm;

/// DER of the P-256 curve OID (1.2.840.10045.3.1.7), as CKA_EC_PARAMS wants it.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the Ed25519 OID (1.3.101.112, RFC 8410).
const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// RSA modulus size for PS256 keys: NIST's floor through 2030, and what the seeds name.
const RSA_BITS: u64 = 2048;
/// AES-GCM tag length in bits.
const GCM_TAG_BITS: u64 = 128;

#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("PKCS#11: {0}")]
    Pkcs11(#[from] cryptoki::error::Error),
    #[error("no token labelled {0:?} in the PKCS#11 module")]
    NoToken(String),
    #[error("this token is open in this process with a different PIN")]
    PinMismatch,
    #[error("the token returned an unexpected {0}")]
    Unexpected(&'static str),
}

/// A key pair in the token.
#[derive(Debug, Clone)]
pub struct HsmKey {
    pub label: String,
    pub alg: Algorithm,
    private: ObjectHandle,
    public_handle: ObjectHandle,
    /// The public key in the form its JWK needs: the uncompressed point `0x04 || x || y`
    /// (P-256), the 32-byte key (Ed25519), or `modulus` with `exponent` (RSA).
    pub public_key: PublicKeyBytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKeyBytes {
    EcPoint(Vec<u8>),
    Ed25519(Vec<u8>),
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
}

/// An AES-256 key in the token that never leaves it (the root key).
#[derive(Debug, Clone, Copy)]
pub struct HsmSecretKey(ObjectHandle);

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
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            // Another `Hsm` in this process (a test, a CLI command next to the server
            // state) initialised the module already; the library is shared.
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::CryptokiAlreadyInitialized,
                _,
            )) => {}
            Err(e) => return Err(e.into()),
        }
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

    /// One logged-in `Hsm` per module and token for the whole process. PKCS#11 login
    /// state belongs to the application, not the session, so a second login in the same
    /// process would fail; every part of Rampart (root key, signing keys) shares this one.
    /// A later call with a different PIN is refused rather than silently accepted.
    pub fn shared(module: &Path, token_label: &str, pin: &str) -> Result<Arc<Hsm>, HsmError> {
        /// (module, token label) → (the open token, SHA-256 of the PIN it was opened with).
        type Registry = HashMap<(PathBuf, String), (Arc<Hsm>, [u8; 32])>;
        static OPEN: OnceLock<Mutex<Registry>> = OnceLock::new();
        let pin_digest: [u8; 32] = Sha256::digest(pin.as_bytes()).into();
        let mut open = OPEN
            .get_or_init(Default::default)
            .lock()
            .map_err(|_| HsmError::Unexpected("poisoned token registry"))?;
        let key = (module.to_path_buf(), token_label.to_string());
        if let Some((hsm, digest)) = open.get(&key) {
            if *digest != pin_digest {
                return Err(HsmError::PinMismatch);
            }
            return Ok(hsm.clone());
        }
        let hsm = Arc::new(Hsm::open(module, token_label, pin)?);
        open.insert(key, (hsm.clone(), pin_digest));
        Ok(hsm)
    }

    fn session(&self) -> Result<std::sync::MutexGuard<'_, Session>, HsmError> {
        self.session
            .lock()
            .map_err(|_| HsmError::Unexpected("poisoned session lock"))
    }

    /// Generates a key pair inside the token: the private half is a sensitive,
    /// non-extractable token object that can only sign.
    pub fn generate(&self, alg: Algorithm, label: &str) -> Result<HsmKey, HsmError> {
        let session = self.session()?;
        let id = label.as_bytes().to_vec();
        let mut public_template = vec![
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let mechanism = match alg {
            Algorithm::Es256 => {
                public_template.push(Attribute::EcParams(P256_PARAMS.to_vec()));
                Mechanism::EccKeyPairGen
            }
            Algorithm::EdDsa => {
                public_template.push(Attribute::EcParams(ED25519_PARAMS.to_vec()));
                Mechanism::EccEdwardsKeyPairGen
            }
            Algorithm::Ps256 => {
                public_template.push(Attribute::ModulusBits(Ulong::from(RSA_BITS)));
                public_template.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id),
        ];
        let (public, private) =
            session.generate_key_pair(&mechanism, &public_template, &private_template)?;
        let public_bytes = read_public(&session, alg, public)?;
        Ok(HsmKey {
            label: label.to_string(),
            alg,
            private,
            public_handle: public,
            public_key: public_bytes,
        })
    }

    /// The key pair with this label, if the token has one.
    pub fn find(&self, alg: Algorithm, label: &str) -> Result<Option<HsmKey>, HsmError> {
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
        let public_bytes = read_public(&session, alg, public)?;
        Ok(Some(HsmKey {
            label: label.to_string(),
            alg,
            private,
            public_handle: public,
            public_key: public_bytes,
        }))
    }

    /// Signs `message` in the token, in the JWS form of the key's algorithm: `r || s`
    /// (64 bytes) for ES256, the 64-byte signature for EdDSA, the PSS signature for PS256.
    pub fn sign(&self, key: &HsmKey, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let session = self.session()?;
        let signature = match key.alg {
            Algorithm::Es256 => {
                let digest = Sha256::digest(message);
                let signature = session.sign(&Mechanism::Ecdsa, key.private, &digest)?;
                if signature.len() != 64 {
                    return Err(HsmError::Unexpected("signature length"));
                }
                signature
            }
            Algorithm::EdDsa => session.sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                key.private,
                message,
            )?,
            Algorithm::Ps256 => session.sign(
                &Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
                    hash_alg: MechanismType::SHA256,
                    mgf: PkcsMgfType::MGF1_SHA256,
                    s_len: Ulong::from(32u64),
                }),
                key.private,
                message,
            )?,
        };
        Ok(signature)
    }

    /// Whether the token would let the private key out (it must not).
    pub fn private_key_extractable(&self, key: &HsmKey) -> Result<bool, HsmError> {
        self.extractable(key.private)
    }

    fn extractable(&self, object: ObjectHandle) -> Result<bool, HsmError> {
        let attributes = self
            .session()?
            .get_attributes(object, &[AttributeType::Extractable])?;
        match attributes.first() {
            Some(Attribute::Extractable(extractable)) => Ok(*extractable),
            _ => Err(HsmError::Unexpected("attribute set")),
        }
    }

    /// Whether `key`'s public half is the object this handle names (for tests and checks).
    pub fn public_handle_matches(&self, key: &HsmKey) -> Result<bool, HsmError> {
        Ok(read_public(&*self.session()?, key.alg, key.public_handle)? == key.public_key)
    }

    /// The AES-256 key with this label, created in the token (sensitive, non-extractable,
    /// encrypt/decrypt only) if it has none yet.
    pub fn find_or_create_aes(&self, label: &str) -> Result<(HsmSecretKey, bool), HsmError> {
        let session = self.session()?;
        let found = session.find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?;
        if let Some(handle) = found.first() {
            return Ok((HsmSecretKey(*handle), false));
        }
        let handle = session.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(Ulong::from(32u64)),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )?;
        Ok((HsmSecretKey(handle), true))
    }

    /// AES-256-GCM inside the token with the caller's 96-bit nonce; returns
    /// `ciphertext || tag`.
    pub fn encrypt_gcm(
        &self,
        key: HsmSecretKey,
        nonce: &[u8; 12],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let mut iv = *nonce;
        let params = GcmParams::new(&mut iv, aad, Ulong::from(GCM_TAG_BITS))?;
        Ok(self
            .session()?
            .encrypt(&Mechanism::AesGcm(params), key.0, plaintext)?)
    }

    /// The inverse of [`Hsm::encrypt_gcm`]; fails when the tag does not verify.
    pub fn decrypt_gcm(
        &self,
        key: HsmSecretKey,
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let mut iv = nonce.to_vec();
        let params = GcmParams::new(&mut iv, aad, Ulong::from(GCM_TAG_BITS))?;
        Ok(self
            .session()?
            .decrypt(&Mechanism::AesGcm(params), key.0, ciphertext)?)
    }

    /// Whether the token would let this secret key out (it must not).
    pub fn secret_key_extractable(&self, key: HsmSecretKey) -> Result<bool, HsmError> {
        self.extractable(key.0)
    }
}

fn read_public(
    session: &Session,
    alg: Algorithm,
    public: ObjectHandle,
) -> Result<PublicKeyBytes, HsmError> {
    match alg {
        Algorithm::Es256 => read_point(session, public, 65).map(PublicKeyBytes::EcPoint),
        Algorithm::EdDsa => read_point(session, public, 32).map(PublicKeyBytes::Ed25519),
        Algorithm::Ps256 => {
            let attributes = session.get_attributes(
                public,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )?;
            match attributes.as_slice() {
                [Attribute::Modulus(modulus), Attribute::PublicExponent(exponent)] => {
                    Ok(PublicKeyBytes::Rsa {
                        modulus: modulus.clone(),
                        exponent: exponent.clone(),
                    })
                }
                _ => Err(HsmError::Unexpected("RSA public key")),
            }
        }
    }
}

/// CKA_EC_POINT is a DER OCTET STRING around the point (some tokens give it bare).
fn read_point(session: &Session, public: ObjectHandle, len: usize) -> Result<Vec<u8>, HsmError> {
    match session
        .get_attributes(public, &[AttributeType::EcPoint])?
        .first()
    {
        Some(Attribute::EcPoint(der))
            if der.len() == len + 2 && der[0] == 0x04 && usize::from(der[1]) == len =>
        {
            Ok(der[2..].to_vec())
        }
        Some(Attribute::EcPoint(raw)) if raw.len() == len => Ok(raw.clone()),
        _ => Err(HsmError::Unexpected("public point")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// P-256, Ed25519 and RSA-PSS keys made in a real SoftHSM2 token sign there, their
    /// private halves are non-extractable, and Python's `cryptography` verifies the
    /// signatures with the public keys; the root key as a token AES key seals and opens.
    /// Needs `RAMPART_TEST_PKCS11_MODULE` (`.ci/run` installs SoftHSM2 and sets it).
    #[test]
    fn softhsm_keys_sign_in_the_token_and_an_independent_library_verifies() {
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
        assert!(
            Hsm::open(Path::new(&module), "rampart-test", "0000").is_err(),
            "wrong PIN"
        );
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        // Python's `cryptography` checks each signature: an implementation that shares
        // no code with the token or with us.
        let python_verifies = |public: &PublicKeyBytes, signature: &[u8], msg: &[u8]| {
            let (kind, key) = match public {
                PublicKeyBytes::EcPoint(p) => ("ec", hex(p)),
                PublicKeyBytes::Ed25519(k) => ("ed", hex(k)),
                PublicKeyBytes::Rsa { modulus, exponent } => {
                    ("rsa", format!("{}:{}", hex(modulus), hex(exponent)))
                }
            };
            let out = Command::new("python3")
                .args([
                    "-c",
                    "import sys\n\
                     from cryptography.hazmat.primitives import hashes\n\
                     from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils\n\
                     kind, key, sig, msg = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])\n\
                     if kind == 'ec':\n\
                     \x20   pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(key))\n\
                     \x20   r, s = int.from_bytes(sig[:32], 'big'), int.from_bytes(sig[32:], 'big')\n\
                     \x20   pub.verify(utils.encode_dss_signature(r, s), msg, ec.ECDSA(hashes.SHA256()))\n\
                     elif kind == 'ed':\n\
                     \x20   ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)).verify(sig, msg)\n\
                     else:\n\
                     \x20   n, e = (int(x, 16) for x in key.split(':'))\n\
                     \x20   pub = rsa.RSAPublicNumbers(e, n).public_key()\n\
                     \x20   pub.verify(sig, msg, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())\n",
                    kind,
                    &key,
                    &hex(signature),
                    &hex(msg),
                ])
                .output()
                .expect("python3 with cryptography is installed");
            if !out.status.success() {
                eprintln!("python: {}", String::from_utf8_lossy(&out.stderr));
            }
            out.status.success()
        };

        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Ps256] {
            let label = format!("test-{alg}");
            let key = hsm.generate(alg, &label).unwrap();
            assert!(
                !hsm.private_key_extractable(&key).unwrap(),
                "{alg}: private key must be non-extractable"
            );
            let found = hsm.find(alg, &label).unwrap().expect("found by label");
            assert_eq!(found.public_key, key.public_key);
            assert!(hsm.public_handle_matches(&found).unwrap());

            let message = b"rampart checkpoint";
            let signature = hsm.sign(&key, message).unwrap();
            assert!(
                python_verifies(&key.public_key, &signature, message),
                "{alg}: python cryptography rejected the token's signature"
            );
            assert!(
                !python_verifies(&key.public_key, &signature, b"rampart checkpoinT"),
                "{alg}: a changed message must not verify"
            );
        }

        // The root key as an AES object in the token: created once, found again,
        // non-extractable, and sealing goes through the token.
        let (aes, created) = hsm.find_or_create_aes("root-test").unwrap();
        assert!(created);
        assert!(!hsm.secret_key_extractable(aes).unwrap());
        let (_, created_again) = hsm.find_or_create_aes("root-test").unwrap();
        assert!(!created_again);
        let hsm = Arc::new(hsm);
        let root = crate::RootKey::in_token(hsm.clone(), "root-test").unwrap();
        let sealed = root.seal(b"ctx", b"key material").unwrap();
        assert_eq!(root.open(b"ctx", &sealed).unwrap(), b"key material");
        assert!(root.open(b"other", &sealed).is_err());
        assert!(crate::RootKey::from_bytes([0; 32])
            .open(b"ctx", &sealed)
            .is_err());

        // Signing keys made through the service live in the token: the store gets a label
        // and a public key, no private bytes; another instance finds and uses them.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use crate::signing::{tests::policy, tests::MemoryBackend, Purpose, SigningKeys};
            let backend = Arc::new(MemoryBackend::default());
            let keys = SigningKeys::load(
                root.clone(),
                Some(hsm.clone()),
                backend.clone(),
                policy(Algorithm::EdDsa),
            )
            .await
            .unwrap();
            let signer = keys
                .signer(Purpose::AuditCheckpoint, "kind:government")
                .await
                .unwrap();
            assert!(signer.in_token);
            let record = backend.0.lock().unwrap()[0].clone();
            assert!(record.sealed_private_key.is_empty());
            assert!(record.token_label.is_some());
            let signature = signer.sign(b"head").unwrap();
            let again = SigningKeys::load(root, Some(hsm), backend, policy(Algorithm::EdDsa))
                .await
                .unwrap();
            let found = again
                .signer(Purpose::AuditCheckpoint, "kind:government")
                .await
                .unwrap();
            assert_eq!(found.kid, signer.kid);
            assert!(found.verify(b"head", &signature));
            assert!(found.verify(b"head", &found.sign(b"head").unwrap()));
        });
    }
}
