//! The signed head of the audit chain: what the API hands out with every
//! page, what `audit export` keeps and `audit verify --against` checks.
//!
//! The head is signed with the private key of the controller's TLS
//! certificate, the certificate nodes pin by its SHA-256 fingerprint. A
//! verifier needs only that fingerprint: the signed head carries the
//! certificate, whose hash must be the fingerprint and whose public key
//! must verify the signature.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::AuditHead;

/// Domain separation: a head signature means nothing anywhere else (and
/// no TLS handshake signature can be passed off as one).
const DOMAIN: &[u8] = b"warren-audit-head-v1";

/// The schemes a head may be signed with, in order of preference, with the
/// names the API shows.
const SCHEMES: [(SignatureScheme, &str); 3] = [
    (SignatureScheme::ECDSA_NISTP256_SHA256, "ecdsa-p256-sha256"),
    (SignatureScheme::ED25519, "ed25519"),
    (SignatureScheme::ECDSA_NISTP384_SHA384, "ecdsa-p384-sha384"),
];

/// A head with the controller's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHead {
    /// The newest entry's id (0 for an empty log).
    pub id: i64,
    /// Its hash ([`crate::audit_chain::GENESIS`] for an empty log).
    pub hash: String,
    /// One of `ecdsa-p256-sha256`, `ed25519`, `ecdsa-p384-sha384`.
    pub algorithm: String,
    /// The signature, standard base64.
    pub signature: String,
    /// The signing certificate's DER, standard base64.
    pub certificate: String,
    /// SHA-256 of that DER, lowercase hex: the fingerprint nodes pin.
    pub fingerprint: String,
}

/// Why a head could not be signed or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("the certificate's key cannot sign audit heads (no supported scheme)")]
    UnsupportedKey,
    #[error("signing the audit head: {0}")]
    Sign(rustls::Error),
    #[error("the signed head's {field} is not valid base64")]
    BadBase64 { field: &'static str },
    #[error("the signed head names an unknown algorithm {0:?}")]
    UnknownAlgorithm(String),
    #[error("the head was signed by certificate {found}, not the expected {expected}")]
    WrongCertificate { expected: String, found: String },
    #[error("the signed head's certificate cannot be read: {0}")]
    BadCertificate(webpki::Error),
    #[error(
        "the head's signature does not verify: it was altered or not signed by this controller"
    )]
    BadSignature,
}

/// The bytes a head signature covers.
fn message(head: &AuditHead) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 8 + 8 + head.hash.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&head.id.to_be_bytes());
    m.extend_from_slice(&(head.hash.len() as u64).to_be_bytes());
    m.extend_from_slice(head.hash.as_bytes());
    m
}

/// Lowercase hex without separators, as `fingerprint` prints it.
fn normalize(fingerprint: &str) -> String {
    fingerprint.replace(':', "").to_ascii_lowercase()
}

/// Signs heads with the certificate's private key.
#[derive(Debug)]
pub struct HeadSigner {
    key: Arc<dyn SigningKey>,
    certificate: String,
    fingerprint: String,
}

impl HeadSigner {
    pub fn new(cert: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> Result<Self, AnchorError> {
        let key = rustls::crypto::ring::sign::any_supported_type(key).map_err(AnchorError::Sign)?;
        let signer = Self {
            key,
            certificate: STANDARD.encode(cert.as_ref()),
            fingerprint: hex::encode(Sha256::digest(cert.as_ref())),
        };
        // Fail at start, not on the first page someone reads.
        signer.sign(&AuditHead::empty())?;
        Ok(signer)
    }

    pub fn sign(&self, head: &AuditHead) -> Result<SignedHead, AnchorError> {
        let offered: Vec<SignatureScheme> = SCHEMES.iter().map(|(s, _)| *s).collect();
        let signer = self
            .key
            .choose_scheme(&offered)
            .ok_or(AnchorError::UnsupportedKey)?;
        let name = SCHEMES
            .iter()
            .find(|(s, _)| *s == signer.scheme())
            .map(|(_, n)| *n)
            .ok_or(AnchorError::UnsupportedKey)?;
        let signature = signer.sign(&message(head)).map_err(AnchorError::Sign)?;
        Ok(SignedHead {
            id: head.id,
            hash: head.hash.clone(),
            algorithm: name.to_string(),
            signature: STANDARD.encode(signature),
            certificate: self.certificate.clone(),
            fingerprint: self.fingerprint.clone(),
        })
    }
}

/// Checks that `signed` was signed by the certificate whose fingerprint is
/// `expected_fingerprint`, and returns the head it vouches for. The
/// `fingerprint` field inside `signed` is not trusted: the certificate's
/// hash is recomputed.
pub fn verify(signed: &SignedHead, expected_fingerprint: &str) -> Result<AuditHead, AnchorError> {
    let cert = STANDARD
        .decode(&signed.certificate)
        .map_err(|_| AnchorError::BadBase64 {
            field: "certificate",
        })?;
    let found = hex::encode(Sha256::digest(&cert));
    let expected = normalize(expected_fingerprint);
    if found != expected {
        return Err(AnchorError::WrongCertificate { expected, found });
    }
    let signature = STANDARD
        .decode(&signed.signature)
        .map_err(|_| AnchorError::BadBase64 { field: "signature" })?;
    let algorithm = match signed.algorithm.as_str() {
        "ecdsa-p256-sha256" => webpki::ring::ECDSA_P256_SHA256,
        "ed25519" => webpki::ring::ED25519,
        "ecdsa-p384-sha384" => webpki::ring::ECDSA_P384_SHA384,
        other => return Err(AnchorError::UnknownAlgorithm(other.to_string())),
    };
    let der = CertificateDer::from(cert);
    let cert = webpki::EndEntityCert::try_from(&der).map_err(AnchorError::BadCertificate)?;
    let head = AuditHead {
        id: signed.id,
        hash: signed.hash.clone(),
    };
    cert.verify_signature(algorithm, &message(&head), &signature)
        .map_err(|_| AnchorError::BadSignature)?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivatePkcs8KeyDer;

    fn new_signer() -> HeadSigner {
        let made = rcgen::generate_simple_self_signed(vec!["warren-controller".into()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        HeadSigner::new(made.cert.der(), &key).unwrap()
    }

    fn head(id: i64) -> AuditHead {
        AuditHead {
            id,
            hash: format!("{id:064x}"),
        }
    }

    #[test]
    fn a_signed_head_verifies_against_its_fingerprint_only() {
        let signer = new_signer();
        let signed = signer.sign(&head(7)).unwrap();
        assert_eq!(signed.algorithm, "ecdsa-p256-sha256");
        assert_eq!(verify(&signed, &signed.fingerprint).unwrap(), head(7));
        // Upper case and colons, as people copy fingerprints, still match.
        let colons = signed
            .fingerprint
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":");
        assert!(verify(&signed, &colons).is_ok());

        let other = new_signer();
        assert!(matches!(
            verify(&signed, &other.fingerprint),
            Err(AnchorError::WrongCertificate { .. })
        ));
    }

    #[test]
    fn an_altered_head_or_a_swapped_certificate_fails() {
        let signer = new_signer();
        let signed = signer.sign(&head(7)).unwrap();
        for altered in [
            SignedHead {
                id: 8,
                ..signed.clone()
            },
            SignedHead {
                hash: head(6).hash,
                ..signed.clone()
            },
        ] {
            assert!(matches!(
                verify(&altered, &signed.fingerprint),
                Err(AnchorError::BadSignature)
            ));
        }
        // Another controller's head, passed off with its own certificate,
        // fails on the fingerprint before any signature is looked at.
        let forged = signer_sign_with_other_key(&signed);
        assert!(matches!(
            verify(&forged, &signed.fingerprint),
            Err(AnchorError::WrongCertificate { .. })
        ));
    }

    fn signer_sign_with_other_key(original: &SignedHead) -> SignedHead {
        new_signer()
            .sign(&AuditHead {
                id: original.id,
                hash: original.hash.clone(),
            })
            .unwrap()
    }
}
