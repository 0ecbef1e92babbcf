//! Keyless TLS for onedot's encrypted doors: edges that hold no private key.
//!
//! This crate owns both ends of the keyless protocol (its wire format is in
//! [`wire`] and `docs/keyless.md`):
//!
//! - [`server::KeyServer`], run by `onedot keyserver`: holds the private
//!   keys of the doors' certificates, accepts edges over mutual TLS 1.3
//!   (client certificates from the operator's edge CA, made by [`ca`]),
//!   checks each operation against the edge registry (revocation, effective
//!   at once) and each key's policy (which edges, which regions), signs
//!   handshake inputs and nothing else, and counts what it did.
//! - [`client::KeylessClient`] and [`client::KeylessKey`], used by an
//!   edge: a rustls `SigningKey` whose signatures come from the key
//!   servers, over pipelined connections with reconnection, backoff,
//!   failover and a deadline per operation. When no key server answers,
//!   new handshakes fail (closed); nothing falls back to a local key.
//!
//! Why our own protocol rather than Cloudflare's: the open keyless protocol
//! (`gokeyless`) carries many operations we do not need (RSA decryption
//! for TLS 1.2 RSA key exchange, certificate fetching) and no notion of an
//! edge registry; ours is one request type over a 12-byte header, small
//! enough to audit in a page.

pub mod ca;
pub mod client;
pub mod pki;
pub mod server;
pub mod wire;

pub use client::{KeylessClient, KeylessConfig, KeylessKey, KeylessStats};
pub use server::{KeyPolicy, KeyServer};

/// What can go wrong on either end.
#[derive(Debug, thiserror::Error)]
pub enum KeylessError {
    /// A key, certificate or PEM file is unusable.
    #[error("{0}")]
    Pki(String),
    /// A TLS setting or handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The edge registry could not be read or written.
    #[error("edge registry: {0}")]
    Registry(String),
    /// Socket I/O failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The key server refused the operation.
    #[error("key server refused: {} ({reason})", code.name())]
    Refused {
        /// Its code.
        code: wire::ErrorCode,
        /// Its reason.
        reason: String,
    },
    /// No key server answered before the operation's deadline.
    #[error("no key server answered within {0:?}")]
    Deadline(std::time::Duration),
    /// Every key server is down or backing off.
    #[error("no key server is reachable")]
    NoServer,
}
