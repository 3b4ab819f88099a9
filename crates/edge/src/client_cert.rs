//! The client certificate a caller presented in the TLS handshake (mutual TLS), for
//! routes that authenticate payment partners by certificate.
//!
//! Invariant: only the TLS acceptor (`rampart::tls`) puts a [`ClientCertificate`] in a
//! request's extensions, and only after rustls verified its chain against
//! `tls.client_ca_file`. Nothing a client sends in HTTP (headers, body) can create one, so
//! a handler that extracts one knows the peer holds that certificate's private key.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use sha2::{Digest, Sha256};

use crate::ApiError;

/// The end-entity certificate of a verified client, as its DER bytes and their SHA-256
/// fingerprint. Pin partners by the fingerprint (or parse the DER where a route needs
/// more). The subject name is not parsed here: doing it well needs an X.509 parser this
/// workspace does not carry, and the fingerprint identifies a certificate more precisely
/// than a subject that the CA may issue again.
///
/// As an extractor it requires a certificate and rejects with 401
/// `client_certificate_required`; `Option<ClientCertificate>` never rejects.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    der: Arc<[u8]>,
    sha256_fingerprint: String,
}

impl ClientCertificate {
    /// For the TLS acceptor, which has verified the certificate (see the module's
    /// invariant).
    pub fn from_der(der: &[u8]) -> ClientCertificate {
        let digest = Sha256::digest(der);
        let sha256_fingerprint = digest.iter().map(|b| format!("{b:02x}")).collect();
        ClientCertificate {
            der: Arc::from(der),
            sha256_fingerprint,
        }
    }

    /// SHA-256 of the DER certificate, 64 lowercase hex digits, as
    /// `openssl x509 -noout -fingerprint -sha256` prints it without the colons.
    pub fn sha256_fingerprint(&self) -> &str {
        &self.sha256_fingerprint
    }

    /// The certificate as the client sent it (DER).
    pub fn der(&self) -> &[u8] {
        &self.der
    }
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("sha256_fingerprint", &self.sha256_fingerprint)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientCertificate {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ClientCertificate>()
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "client_certificate_required",
                    "this route needs a client certificate issued to you; present it in the \
                     TLS handshake",
                )
            })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ClientCertificate {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<ClientCertificate>().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_lowercase_hex_sha256_of_the_der() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let cert = ClientCertificate::from_der(b"abc");
        assert_eq!(
            cert.sha256_fingerprint(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(cert.der(), b"abc");
    }
}
