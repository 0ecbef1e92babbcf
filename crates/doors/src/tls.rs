//! DNS over TLS (RFC 7858): TLS 1.3 and 1.2 with rustls on ring, ALPN
//! `dot`, session resumption by tickets, a handshake timeout, certificates
//! reloaded when their files change, and then the
//! same framing, pipelining and limits as TCP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::tcp::{accept_each, connection, listen};
use crate::{Client, Door, DoorError, Handler, InFlight, ProxyTrust, TcpLimits};

/// A certified key from PEM certificate chain and private key.
fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, DoorError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| DoorError::Tls(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(DoorError::Tls("no certificate in the PEM file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| DoorError::Tls(format!("private key PEM: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider.key_provider.load_private_key(key).map_err(|e| DoorError::Tls(e.to_string()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| DoorError::Tls(format!("certificate and key do not match: {e}")))?;
    Ok(Arc::new(ck))
}

/// Makes the signing key for a certificate whose private key is kept
/// elsewhere (a keyless edge's key server): given the end-entity
/// certificate, the key that signs for it.
pub type RemoteKey =
    Arc<dyn Fn(&CertificateDer<'static>) -> Result<Arc<dyn rustls::sign::SigningKey>, String> + Send + Sync>;

/// A certified key from a PEM chain whose key is remote.
fn remote_certified_key(cert_pem: &[u8], key_for: &RemoteKey) -> Result<Arc<CertifiedKey>, DoorError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| DoorError::Tls(format!("certificate PEM: {e}")))?;
    let first = certs.first().ok_or_else(|| DoorError::Tls("no certificate in the PEM file".into()))?;
    let signing = key_for(first).map_err(DoorError::Tls)?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

/// The certificate the TLS doors present, swapped atomically when its files
/// change: new handshakes get the new one, open connections keep theirs.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    /// A store holding the certificate and key from PEM.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertStore>, DoorError> {
        Ok(Arc::new(CertStore { current: ArcSwap::new(certified_key(cert_pem, key_pem)?) }))
    }

    /// A store holding a certificate chain whose private key is not here:
    /// `key_for` makes the key that signs for it (keyless edges).
    pub fn remote(cert_pem: &[u8], key_for: &RemoteKey) -> Result<Arc<CertStore>, DoorError> {
        Ok(Arc::new(CertStore { current: ArcSwap::new(remote_certified_key(cert_pem, key_for)?) }))
    }

    /// Replaces the certificate; on error the old one stays in use.
    pub fn replace(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), DoorError> {
        self.current.store(certified_key(cert_pem, key_pem)?);
        Ok(())
    }

    /// Re-reads `cert` and `key` every `interval` and swaps them in when
    /// their contents change; a bad pair is logged and the old one kept.
    pub fn watch(self: &Arc<Self>, cert: PathBuf, key: PathBuf, interval: Duration, tasks: &mut JoinSet<()>) {
        let store = self.clone();
        self.watch_files(vec![cert, key], interval, tasks, move |files| match files {
            [c, k] => store.replace(c, k),
            _ => Err(DoorError::Tls("certificate and key expected".into())),
        });
    }

    /// As [`CertStore::watch`] for a chain whose key is remote: a new chain
    /// gets a new remote key, without a restart.
    pub fn watch_remote(
        self: &Arc<Self>,
        cert: PathBuf,
        key_for: RemoteKey,
        interval: Duration,
        tasks: &mut JoinSet<()>,
    ) {
        let store = self.clone();
        self.watch_files(vec![cert], interval, tasks, move |files| {
            let pem = files.first().ok_or_else(|| DoorError::Tls("certificate expected".into()))?;
            store.current.store(remote_certified_key(pem, &key_for)?);
            Ok(())
        });
    }

    fn watch_files(
        &self,
        paths: Vec<PathBuf>,
        interval: Duration,
        tasks: &mut JoinSet<()>,
        apply: impl Fn(&[Vec<u8>]) -> Result<(), DoorError> + Send + 'static,
    ) {
        tasks.spawn(async move {
            let read = || paths.iter().map(|p| std::fs::read(p).ok()).collect::<Option<Vec<Vec<u8>>>>();
            let mut last = read();
            let shown = paths.first().map(|p| p.display().to_string()).unwrap_or_default();
            loop {
                tokio::time::sleep(interval).await;
                let now = read();
                if now.is_none() || now == last {
                    continue;
                }
                if let Some(files) = &now {
                    match apply(files) {
                        Ok(()) => tracing::info!(cert = %shown, "TLS certificate reloaded"),
                        Err(e) => tracing::error!(cert = %shown, error = %e, "TLS certificate not reloaded; keeping the old one"),
                    }
                }
                last = now;
            }
        });
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A TLS server configuration from PEM certificate chain and key, with the
/// given ALPN protocols (`dot` for DoT).
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8], alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, DoorError> {
    tls_config_from_store(CertStore::from_pem(cert_pem, key_pem)?, alpn)
}

/// A TLS server configuration presenting whatever `store` holds.
pub fn tls_config_from_store(store: Arc<CertStore>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, DoorError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DoorError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| DoorError::Tls(e.to_string()))?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

/// A TLS 1.3-only server configuration presenting whatever `store` holds,
/// for QUIC (DoQ, HTTP/3), which cannot use TLS 1.2.
pub fn tls13_config_from_store(store: Arc<CertStore>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, DoorError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| DoorError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// Listens for DoT on `addr` and serves connections on `tasks`. Returns the
/// bound address.
pub async fn serve_dot(
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    limits: TcpLimits,
    proxy: ProxyTrust,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, DoorError> {
    let (listener, bound) = listen(addr)?;
    let acceptor = TlsAcceptor::from(tls);
    tasks.spawn(accept_each(listener, limits, proxy, "dot", move |stream, peer| {
        let (acceptor, handler, inflight) = (acceptor.clone(), handler.clone(), inflight.clone());
        let client = Client { door: Door::Dot, addr: peer.ip() };
        async move {
            match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => connection(tls, client, limits, handler, inflight).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "dot handshake failed"),
                Err(_) => tracing::debug!("dot handshake timed out"),
            }
        }
    }));
    Ok(bound)
}
