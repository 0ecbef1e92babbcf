//! DNS over TLS (RFC 7858): TLS 1.3 and 1.2 with rustls on ring, ALPN
//! `dot`, session resumption by tickets, a handshake timeout, and then the
//! same framing, pipelining and limits as TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::tcp::connection;
use crate::{DoorError, Framing, Handler, InFlight, TcpLimits};

/// A TLS server configuration from PEM certificate chain and key, with the
/// given ALPN protocols (`dot` for DoT).
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8], alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, DoorError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| DoorError::Tls(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(DoorError::Tls("no certificate in the PEM file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| DoorError::Tls(format!("private key PEM: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DoorError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| DoorError::Tls(e.to_string()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| DoorError::Tls(e.to_string()))?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

/// Listens for DoT on `addr` and serves connections on `tasks`. Returns the
/// bound address.
pub async fn serve_dot(
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    limits: TcpLimits,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, DoorError> {
    let bind = |source| DoorError::Bind { addr, source };
    let sock =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }.map_err(bind)?;
    sock.set_reuseaddr(true).map_err(bind)?;
    sock.bind(addr).map_err(bind)?;
    let listener = sock.listen(1024).map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    tasks.spawn(accept_loop(listener, TlsAcceptor::from(tls), limits, handler, inflight));
    Ok(bound)
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: TcpLimits,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "dot accept error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!("dot connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, handler, inflight) = (acceptor.clone(), handler.clone(), inflight.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => connection(tls, Framing::EncryptedStream, limits, handler, inflight).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "dot handshake failed"),
                Err(_) => tracing::debug!("dot handshake timed out"),
            }
            drop(permit);
        });
    }
}
