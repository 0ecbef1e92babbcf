//! Oblivious DNS over HTTPS (RFC 9230) on the DoH door.
//!
//! As a **target**, onedot publishes its HPKE configuration at
//! `/.well-known/odohconfigs` and answers `application/oblivious-dns-message`
//! POSTs on its DoH paths: it decrypts the query, answers it like any other
//! (the client it sees is the relay), and seals the answer to the client.
//! As a **relay**, it forwards sealed messages posted to `/proxy?targethost=
//! &targetpath=` to that target, only if the target is on its allow list;
//! it never holds a key, so it never sees a question or an answer.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use odoh_rs::{
    ObliviousDoHConfig, ObliviousDoHConfigs, ObliviousDoHKeyPair, ObliviousDoHMessage, ObliviousDoHMessagePlaintext,
    ResponseNonce,
};

use crate::client::{ClientError, EncryptedClient, Target, Verify};

/// The media type of sealed messages.
pub const ODOH_MESSAGE: &str = "application/oblivious-dns-message";
/// Where a target publishes its configurations.
pub const CONFIGS_PATH: &str = "/.well-known/odohconfigs";
/// The relay's path.
pub const PROXY_PATH: &str = "/proxy";

/// A target a relay may forward to.
#[derive(Debug, Clone)]
pub struct RelayTarget {
    /// The `targethost` clients name (`odoh.example.net` or `host:port`).
    pub host: String,
    /// Where it is.
    pub addr: SocketAddr,
    /// The name its certificate must carry.
    pub tls_name: String,
}

/// The ODoH roles of a DoH door.
pub struct Oblivious {
    target: Option<(ObliviousDoHKeyPair, Bytes)>,
    relay: Option<(HashMap<String, RelayTarget>, EncryptedClient)>,
}

impl std::fmt::Debug for Oblivious {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oblivious")
            .field("target", &self.target.is_some())
            .field("relay", &self.relay.is_some())
            .finish()
    }
}

/// Why an ODoH step failed.
#[derive(Debug, thiserror::Error)]
pub enum OdohError {
    /// Sealing or opening failed.
    #[error("ODoH: {0}")]
    Crypto(String),
    /// The relay could not reach the target.
    #[error("relay: {0}")]
    Relay(#[from] ClientError),
}

fn crypto(e: impl std::fmt::Display) -> OdohError {
    OdohError::Crypto(e.to_string())
}

impl Oblivious {
    /// A door that is a target (with a fresh key pair) when `target`, and a
    /// relay to `relay_targets` (checked with `verify`) when not empty.
    /// Must run inside a tokio runtime when relaying.
    pub fn new(target: bool, relay_targets: Vec<RelayTarget>, verify: &Verify) -> Result<Oblivious, OdohError> {
        let target = if target {
            let pair = ObliviousDoHKeyPair::new(&mut rand::rng());
            let configs: ObliviousDoHConfigs = vec![ObliviousDoHConfig::from(pair.public().clone())].into();
            let bytes = odoh_rs::compose(&configs).map_err(crypto)?.freeze();
            Some((pair, bytes))
        } else {
            None
        };
        let relay = if relay_targets.is_empty() {
            None
        } else {
            let client = EncryptedClient::new(verify)?;
            Some((relay_targets.into_iter().map(|t| (t.host.clone(), t)).collect(), client))
        };
        Ok(Oblivious { target, relay })
    }

    /// The published configurations, when a target.
    pub fn configs(&self) -> Option<Bytes> {
        self.target.as_ref().map(|(_, c)| c.clone())
    }

    /// Whether this door relays.
    pub fn relays(&self) -> bool {
        self.relay.is_some()
    }

    /// Opens a sealed query: the DNS query and what sealing the answer
    /// needs.
    pub fn open(&self, body: &[u8]) -> Result<(Vec<u8>, Sealer), OdohError> {
        let (pair, _) = self.target.as_ref().ok_or_else(|| crypto("not a target"))?;
        let msg: ObliviousDoHMessage = odoh_rs::parse(&mut Bytes::copy_from_slice(body)).map_err(crypto)?;
        let (plain, secret) = odoh_rs::decrypt_query(&msg, pair).map_err(crypto)?;
        let query = plain.clone().into_msg().to_vec();
        Ok((query, Sealer { query: plain, secret }))
    }

    /// Forwards a sealed message to an allowed target; `None` when the
    /// target is not on the list. Returns the target's HTTP status and body.
    pub async fn relay(
        &self,
        targethost: &str,
        targetpath: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Option<Result<(u16, Vec<u8>), OdohError>> {
        let (allowed, client) = self.relay.as_ref()?;
        let t = allowed.get(targethost)?;
        let target = Target { addr: t.addr, name: t.tls_name.clone(), path: targetpath.to_string() };
        Some(client.post(&target, ODOH_MESSAGE, body, timeout).await.map_err(OdohError::from))
    }
}

/// What is needed to seal the answer to one opened query.
pub struct Sealer {
    query: ObliviousDoHMessagePlaintext,
    secret: odoh_rs::OdohSecret,
}

impl Sealer {
    /// Seals `response` for the client.
    pub fn seal(self, response: &[u8]) -> Result<Vec<u8>, OdohError> {
        let mut nonce = ResponseNonce::default();
        rand::fill(&mut nonce[..]);
        let plain = ObliviousDoHMessagePlaintext::new(response, 0);
        let sealed = odoh_rs::encrypt_response(&self.query, &plain, self.secret, nonce).map_err(crypto)?;
        Ok(odoh_rs::compose(&sealed).map_err(crypto)?.to_vec())
    }
}

/// The client side: seals `query` for the target whose configurations are
/// `configs`; returns the sealed message and how to open the answer.
pub fn seal_query(configs: &[u8], query: &[u8]) -> Result<(Vec<u8>, Opener), OdohError> {
    let configs: ObliviousDoHConfigs = odoh_rs::parse(&mut Bytes::copy_from_slice(configs)).map_err(crypto)?;
    let config = configs.supported().into_iter().next().ok_or_else(|| crypto("no supported configuration"))?;
    let contents: odoh_rs::ObliviousDoHConfigContents = config.into();
    let plain = ObliviousDoHMessagePlaintext::new(query, 0);
    let (sealed, secret) = odoh_rs::encrypt_query(&plain, &contents, &mut rand::rng()).map_err(crypto)?;
    Ok((odoh_rs::compose(&sealed).map_err(crypto)?.to_vec(), Opener { query: plain, secret }))
}

/// Opens the target's sealed answer to one query.
pub struct Opener {
    query: ObliviousDoHMessagePlaintext,
    secret: odoh_rs::OdohSecret,
}

impl Opener {
    /// The DNS response inside `body`.
    pub fn open(self, body: &[u8]) -> Result<Vec<u8>, OdohError> {
        let msg: ObliviousDoHMessage = odoh_rs::parse(&mut Bytes::copy_from_slice(body)).map_err(crypto)?;
        let plain = odoh_rs::decrypt_response(&self.query, &msg, self.secret).map_err(crypto)?;
        Ok(plain.into_msg().to_vec())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_query_round_trips_sealed() {
        let target = Oblivious::new(true, Vec::new(), &Verify::default()).expect("target");
        let configs = target.configs().expect("configs");
        let query = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x04test\x00\x00\x01\x00\x01";
        let (sealed, opener) = seal_query(&configs, query).expect("seal");
        assert!(!sealed.windows(4).any(|w| w == b"test"), "the question is not visible in transit");
        let (opened, sealer) = target.open(&sealed).expect("open");
        assert_eq!(opened, query);
        let answer = sealer.seal(b"an answer of sorts").expect("seal answer");
        assert_eq!(opener.open(&answer).expect("open answer"), b"an answer of sorts");
        assert!(target.open(b"garbage").is_err());
    }
}
