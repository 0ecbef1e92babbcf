//! DNS over QUIC (RFC 9250): ALPN `doq`, one bidirectional stream per
//! query (a 2-octet length, the message, then FIN), Message ID 0, and the
//! DoQ error codes on the connection or stream.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::VarInt;
use rustls::ServerConfig;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{Client, Door, DoorError, Fast, Handler, InFlight, TcpLimits};

/// RFC 9250 §8.4 error codes.
pub mod error {
    /// No error (closing an idle connection).
    pub const NO_ERROR: u32 = 0;
    /// The server could not answer.
    pub const INTERNAL_ERROR: u32 = 1;
    /// The peer broke the protocol (bad framing, a non-zero Message ID).
    pub const PROTOCOL_ERROR: u32 = 2;
    /// A query given up (nothing to send for it).
    pub const REQUEST_CANCELLED: u32 = 3;
    /// Too much load: a stream refused.
    pub const EXCESSIVE_LOAD: u32 = 4;
}

/// The QUIC server configuration for `tls` (TLS 1.3 only, ALPN set by the
/// caller) with the door's limits: request streams per connection, idle
/// time, and `uni_streams` unidirectional streams the client may open
/// (none for DoQ; HTTP/3 needs its control and QPACK streams).
pub fn quic_server_config(
    tls: Arc<ServerConfig>,
    limits: &TcpLimits,
    uni_streams: u32,
) -> Result<quinn::ServerConfig, DoorError> {
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| DoorError::Tls(format!("QUIC: {e}")))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(VarInt::from_u32(limits.max_in_flight.max(1) as u32));
    transport.max_concurrent_uni_streams(VarInt::from_u32(uni_streams));
    let idle = quinn::IdleTimeout::try_from(limits.idle_timeout).map_err(|e| DoorError::Tls(e.to_string()))?;
    transport.max_idle_timeout(Some(idle));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Listens for DoQ on UDP `addr` and serves connections on `tasks`.
/// Returns the bound address.
pub async fn serve_doq(
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    limits: TcpLimits,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, DoorError> {
    let config = quic_server_config(tls, &limits, 0)?;
    quic_accept_each(addr, config, limits, tasks, move |conn| {
        let (handler, inflight) = (handler.clone(), inflight.clone());
        async move {
            let client = Client { door: Door::Doq, addr: conn.remote_address().ip() };
            serve_connection(conn, client, limits, handler, inflight).await;
        }
    })
}

/// Binds a QUIC endpoint on `addr` and, on `tasks`, accepts connections
/// for ever: at most `max_connections` at a time (more are refused), each
/// handshake within its timeout, then `serve` in a task of its own.
/// Returns the bound address.
pub(crate) fn quic_accept_each<F, Fut>(
    addr: SocketAddr,
    config: quinn::ServerConfig,
    limits: TcpLimits,
    tasks: &mut JoinSet<()>,
    serve: F,
) -> Result<SocketAddr, DoorError>
where
    F: Fn(quinn::Connection) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let bind = |source| DoorError::Bind { addr, source };
    let socket: std::net::UdpSocket = match crate::inherit::take(crate::inherit::Kind::Udp, addr).into_iter().next() {
        Some(fd) => fd.into(),
        None => std::net::UdpSocket::bind(addr).map_err(bind)?,
    };
    let runtime = quinn::default_runtime().ok_or_else(|| bind(std::io::Error::other("no async runtime")))?;
    let local = socket.local_addr().map_err(bind)?;
    crate::inherit::record(crate::inherit::Kind::Udp, local, std::os::fd::AsFd::as_fd(&socket));
    let endpoint =
        quinn::Endpoint::new(quinn::EndpointConfig::default(), Some(config), socket, runtime).map_err(bind)?;
    let bound = endpoint.local_addr().map_err(|source| DoorError::Bind { addr, source })?;
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_prefix = crate::admission::PrefixCounts::new(limits.ipv4_prefix, limits.ipv6_prefix);
    tasks.spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                incoming.refuse();
                continue;
            };
            let Some(held) = per_prefix.enter(incoming.remote_address().ip(), limits.connections_per_prefix.max(1))
            else {
                incoming.refuse();
                continue;
            };
            // The handshake runs in the connection's task, so a slow one
            // never holds up the others.
            let serve = serve.clone();
            tokio::spawn(async move {
                let Ok(Ok(conn)) = tokio::time::timeout(limits.handshake_timeout, incoming).await else { return };
                serve(conn).await;
                drop((permit, held));
            });
        }
    });
    Ok(bound)
}

async fn serve_connection(
    conn: quinn::Connection,
    client: Client,
    limits: TcpLimits,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
) {
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(_) => return, // closed, timed out or reset
        };
        let (conn, handler, inflight) = (conn.clone(), handler.clone(), inflight.clone());
        tokio::spawn(async move {
            let read = tokio::time::timeout(limits.read_timeout, recv.read_to_end(2 + 65535)).await;
            let Ok(Ok(bytes)) = read else {
                let _ = send.reset(VarInt::from_u32(error::PROTOCOL_ERROR));
                return;
            };
            // RFC 9250 §4.2: a 2-octet length, exactly the message, ID 0.
            let len = bytes.get(..2).map(|l| u16::from_be_bytes([l[0], l[1]]) as usize);
            if len != Some(bytes.len().saturating_sub(2)) || bytes.len() < 2 + 12 || bytes[2..4] != [0, 0] {
                conn.close(VarInt::from_u32(error::PROTOCOL_ERROR), b"bad DoQ query");
                return;
            }
            let query = &bytes[2..];
            let mut out = Vec::with_capacity(1232);
            let n = match handler.try_fast(query, client, &mut out) {
                Fast::Answered(n) => Some(n),
                Fast::Drop => None,
                Fast::Miss => {
                    let _guard = inflight.enter();
                    handler.answer(query, client, &mut out).await
                }
            };
            let Some(n) = n else {
                let _ = send.reset(VarInt::from_u32(error::REQUEST_CANCELLED));
                return;
            };
            let mut framed = Vec::with_capacity(n + 2);
            framed.extend_from_slice(&(n as u16).to_be_bytes());
            framed.extend_from_slice(&out[..n]);
            if send.write_all(&framed).await.is_ok() {
                let _ = send.finish();
            }
        });
    }
}
