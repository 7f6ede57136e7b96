//! Accepting exactly one certificate, by the SHA-256 fingerprint of its
//! DER encoding: no CA and no name, since the controller's certificate is
//! self-signed. Nodes pin the control server with it (or, with no pin
//! yet, trust the first certificate and keep its fingerprint), and the
//! admin CLI pins the API over TLS.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The fingerprint of a certificate: SHA-256 of its DER, lowercase hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// Accepts exactly the pinned certificate (with no pin, any: trust on
/// first use), and notes the fingerprint of the one it saw, so a caller
/// can keep it or report a mismatch as one.
#[derive(Debug)]
pub struct PinnedVerifier {
    pinned: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    /// `pinned`: 64 lowercase hex digits
    /// ([`crate::control::normalise_fingerprint`]); `None` accepts the
    /// first certificate seen.
    pub fn new(pinned: Option<String>) -> Self {
        Self::noting_in(pinned, Arc::default())
    }

    /// [`PinnedVerifier::new`], noting what it sees in `seen` (shared with
    /// whoever keeps the fingerprint after the handshake).
    pub fn noting_in(pinned: Option<String>, seen: Arc<Mutex<Option<String>>>) -> Self {
        Self {
            pinned,
            seen,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    pub fn pinned(&self) -> Option<&str> {
        self.pinned.as_deref()
    }

    /// The fingerprint of the last certificate offered, if any.
    pub fn seen(&self) -> Option<String> {
        self.seen.lock().ok().and_then(|seen| seen.clone())
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = fingerprint(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(actual.clone());
        }
        match &self.pinned {
            Some(pinned) if *pinned != actual => Err(rustls::Error::General(format!(
                "certificate fingerprint {actual} does not match the pinned {pinned}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
