//! The operator's edge CA: made once by `onedot keyserver init`, it signs
//! the key server's own certificate and one client certificate per edge
//! (`onedot keyserver issue-edge`). Its files live in the key server's
//! state directory, beside the edge registry:
//!
//! ```text
//! ca.pem ca.key           the edge CA (edges trust ca.pem for the key server too)
//! server.pem server.key   the key server's TLS identity
//! data.key                the master secret of the edges' data keys
//! edges.toml              the registry: name, region, certificate fingerprint, revoked
//! ```

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::KeylessError;
use crate::server::{EdgeRecord, Registry};

/// The CA certificate's file in a state directory.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// The key server's certificate and key in a state directory.
pub fn server_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("server.pem"), dir.join("server.key"))
}

/// The master secret edges' data keys are derived from.
fn data_master_path(dir: &Path) -> PathBuf {
    dir.join("data.key")
}

/// The master secret of the data keys (32 bytes), made on first use and
/// kept readable by its owner only.
pub fn data_master(dir: &Path) -> Result<[u8; 32], KeylessError> {
    use ring::rand::SecureRandom;
    let path = data_master_path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => {
            crate::pki::refuse_world_readable(&path)?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| KeylessError::Pki(format!("{}: not a 32-byte secret", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut secret)
                .map_err(|_| KeylessError::Pki("no randomness for the data-key secret".into()))?;
            write_file(&path, &secret, true)?;
            Ok(secret)
        }
        Err(e) => Err(KeylessError::Pki(format!("{}: {e}", path.display()))),
    }
}

/// The edge registry in a state directory.
pub fn registry_path(dir: &Path) -> PathBuf {
    dir.join("edges.toml")
}

fn rc(e: rcgen::Error) -> KeylessError {
    KeylessError::Pki(e.to_string())
}

/// The CA's parameters. Rebuilt identically whenever the CA signs, so the
/// issuer name and key identifier of what it signs match its certificate.
fn ca_params() -> Result<CertificateParams, KeylessError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "onedot edge CA");
    dn.push(DnType::OrganizationName, "onedot");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(p)
}

/// Writes `contents` to `path`, readable by its owner only when `secret`.
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), KeylessError> {
    seal::write_atomic(path, contents, if secret { 0o600 } else { 0o644 })
        .map_err(|e| KeylessError::Pki(format!("{}: {e}", path.display())))
}

/// Makes a state directory: the edge CA and the key server's certificate
/// for `names` (DNS names or IP addresses the edges connect to). Refuses to
/// overwrite an existing CA.
pub fn init(dir: &Path, names: &[String]) -> Result<(), KeylessError> {
    if ca_cert_path(dir).exists() {
        return Err(KeylessError::Pki(format!("{} already holds an edge CA", dir.display())));
    }
    std::fs::create_dir_all(dir).map_err(|e| KeylessError::Pki(format!("{}: {e}", dir.display())))?;
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rc)?;
    let ca_cert = ca_params()?.self_signed(&ca_key).map_err(rc)?;
    write_file(&ca_key_path(dir), ca_key.serialize_pem().as_bytes(), true)?;
    write_file(&ca_cert_path(dir), ca_cert.pem().as_bytes(), false)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rc)?;
    let mut p = CertificateParams::new(names.to_vec()).map_err(rc)?;
    p.distinguished_name.push(DnType::CommonName, "onedot key server");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &issuer).map_err(rc)?;
    let (cert_path, key_path) = server_paths(dir);
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(&cert_path, cert.pem().as_bytes(), false)?;
    data_master(dir)?;
    if !registry_path(dir).exists() {
        write_file(
            &registry_path(dir),
            b"# Edges of this key server (onedot keyserver issue-edge / revoke).\n",
            false,
        )?;
    }
    Ok(())
}

/// An edge's client certificate and key, in PEM.
#[derive(Debug, Clone)]
pub struct EdgeIdentity {
    /// Certificate.
    pub cert_pem: String,
    /// Private key (the edge's own, for the key server only).
    pub key_pem: String,
}

/// Issues a client certificate for edge `name` in `region` and records it
/// in the registry. A name already registered and not revoked is refused.
pub fn issue_edge(dir: &Path, name: &str, region: &str) -> Result<EdgeIdentity, KeylessError> {
    let valid = |s: &str| !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid(name) || !valid(region) {
        return Err(KeylessError::Pki("edge names and regions are 1-63 letters, digits and hyphens".into()));
    }
    let registry = Registry::open(registry_path(dir));
    if registry.load()?.iter().any(|e| e.name == name && !e.revoked) {
        return Err(KeylessError::Registry(format!("edge {name} is already registered (revoke it first)")));
    }
    let ca_key_pem = std::fs::read_to_string(ca_key_path(dir))
        .map_err(|e| KeylessError::Pki(format!("{}: {e}", ca_key_path(dir).display())))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(rc)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rc)?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.distinguished_name.push(DnType::OrganizationalUnitName, region);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &issuer).map_err(rc)?;
    registry.add(EdgeRecord {
        name: name.to_string(),
        region: region.to_string(),
        fingerprint: crate::pki::fingerprint(cert.der()),
        revoked: false,
    })?;
    Ok(EdgeIdentity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Revokes every certificate of edge `name`; a running key server refuses
/// its next operation. Returns how many were revoked.
pub fn revoke_edge(dir: &Path, name: &str) -> Result<usize, KeylessError> {
    Registry::open(registry_path(dir)).revoke(name)
}
