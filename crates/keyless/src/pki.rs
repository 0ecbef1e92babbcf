//! Keys and certificates: key ids, the algorithm a certificate's key is
//! for, private keys read from files that only their owner may read.

use std::path::Path;
use std::sync::Arc;

use rustls::SignatureAlgorithm;
use rustls::sign::SigningKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::KeylessError;
use crate::wire::KEY_ID;

/// A key's id: SHA-256 of its SubjectPublicKeyInfo (DER). The edge computes
/// it from its certificate, the key server from the private key.
pub fn key_id(spki: &[u8]) -> [u8; KEY_ID] {
    let d = ring::digest::digest(&ring::digest::SHA256, spki);
    let mut id = [0u8; KEY_ID];
    id.copy_from_slice(d.as_ref());
    id
}

/// A key id in hex, shortened to 16 digits for logs and metrics.
pub fn short_id(id: &[u8; KEY_ID]) -> String {
    id.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a certificate (DER), in hex: how the key server names an
/// edge's certificate in its registry.
pub fn fingerprint(cert: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, cert).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The kind of public key in a SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA (any size).
    Rsa,
    /// ECDSA over P-256.
    EcdsaP256,
    /// ECDSA over P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

// DER encodings of the object identifiers (tag, length, value).
const OID_RSA: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

impl KeyKind {
    /// The kind of key in `spki`, from the algorithm identifier at its
    /// start; `None` for anything else (DSA, P-521, Ed448...).
    pub fn of_spki(spki: &[u8]) -> Option<KeyKind> {
        // The AlgorithmIdentifier comes first, inside the outer SEQUENCE's
        // header and its own: 32 bytes hold it for every kind above.
        let head = spki.get(..spki.len().min(32))?;
        let has = |oid: &[u8]| head.windows(oid.len()).any(|w| w == oid);
        if has(OID_RSA) {
            Some(KeyKind::Rsa)
        } else if has(OID_EC) && has(OID_P256) {
            Some(KeyKind::EcdsaP256)
        } else if has(OID_EC) && has(OID_P384) {
            Some(KeyKind::EcdsaP384)
        } else if has(OID_ED25519) {
            Some(KeyKind::Ed25519)
        } else {
            None
        }
    }

    /// The rustls algorithm.
    pub fn algorithm(self) -> SignatureAlgorithm {
        match self {
            KeyKind::Rsa => SignatureAlgorithm::RSA,
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => SignatureAlgorithm::ECDSA,
            KeyKind::Ed25519 => SignatureAlgorithm::ED25519,
        }
    }

    /// The schemes this key signs with, preferred first (as rustls orders
    /// them for local keys).
    pub fn schemes(self) -> &'static [rustls::SignatureScheme] {
        use rustls::SignatureScheme as S;
        match self {
            KeyKind::Rsa => &[
                S::RSA_PSS_SHA512,
                S::RSA_PSS_SHA384,
                S::RSA_PSS_SHA256,
                S::RSA_PKCS1_SHA512,
                S::RSA_PKCS1_SHA384,
                S::RSA_PKCS1_SHA256,
            ],
            KeyKind::EcdsaP256 => &[S::ECDSA_NISTP256_SHA256],
            KeyKind::EcdsaP384 => &[S::ECDSA_NISTP384_SHA384],
            KeyKind::Ed25519 => &[S::ED25519],
        }
    }
}

/// The certificates in a PEM file's contents, end entity first.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, KeylessError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| KeylessError::Pki(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(KeylessError::Pki("no certificate in the PEM".into()));
    }
    Ok(certs)
}

/// The SubjectPublicKeyInfo of a certificate.
pub fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, KeylessError> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert)
        .map_err(|e| KeylessError::Pki(format!("certificate: {e}")))?;
    Ok(parsed.subject_public_key_info().as_ref().to_vec())
}

/// Reads a private key (PKCS#8, PKCS#1 or SEC1 PEM) from a file that its
/// owner alone may read: a key readable by every local user is refused.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, KeylessError> {
    refuse_world_readable(path)?;
    let pem = std::fs::read(path).map_err(|e| KeylessError::Pki(format!("{}: {e}", path.display())))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| KeylessError::Pki(format!("{}: private key PEM: {e}", path.display())))
}

/// Refuses a file that every local user may read.
pub fn refuse_world_readable(path: &Path) -> Result<(), KeylessError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| KeylessError::Pki(format!("{}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(KeylessError::Pki(format!(
            "{} is readable by every user (mode {:o}); a private key must not be (chmod 600)",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    Ok(())
}

/// A rustls signing key for a private key.
pub fn signing_key(key: &PrivateKeyDer<'_>) -> Result<Arc<dyn SigningKey>, KeylessError> {
    rustls::crypto::ring::sign::any_supported_type(key).map_err(|e| KeylessError::Pki(format!("private key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_kinds_from_certificates() {
        for (alg, kind) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, KeyKind::EcdsaP256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, KeyKind::EcdsaP384),
            (&rcgen::PKCS_ED25519, KeyKind::Ed25519),
        ] {
            let key = rcgen::KeyPair::generate_for(alg).expect("key");
            let cert = rcgen::CertificateParams::new(vec!["a.example".to_string()])
                .expect("params")
                .self_signed(&key)
                .expect("cert");
            let spki = spki_of(cert.der()).expect("spki");
            assert_eq!(KeyKind::of_spki(&spki), Some(kind));
            let der = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("pem");
            let local = signing_key(&der).expect("signing key");
            assert_eq!(local.public_key().map(|p| key_id(p.as_ref())), Some(key_id(&spki)), "the ids agree");
        }
        assert_eq!(KeyKind::of_spki(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
    }
}
