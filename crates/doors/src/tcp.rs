//! Do53 over TCP (RFC 7766): pipelined queries answered as they complete,
//! idle and read timeouts, a connection limit and a per-connection limit on
//! queries in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::proxy::ProxyTrust;
use crate::{Client, Door, DoorError, Fast, Handler, InFlight};

/// Admission limits of a stream door.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Close a connection with nothing in flight after this long.
    pub idle_timeout: Duration,
    /// Most open connections; more are closed at once.
    pub max_connections: usize,
    /// Most open connections from one client network; more are closed at
    /// once.
    pub connections_per_prefix: usize,
    /// Prefix length of an IPv4 client network.
    pub ipv4_prefix: u8,
    /// Prefix length of an IPv6 client network.
    pub ipv6_prefix: u8,
    /// Most queries in flight on one connection; reading pauses beyond it.
    pub max_in_flight: usize,
    /// Time allowed to read one message once its length has arrived.
    pub read_timeout: Duration,
    /// Time allowed for a TLS handshake (slowloris-safe).
    pub handshake_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            idle_timeout: Duration::from_secs(10),
            max_connections: 1000,
            connections_per_prefix: 100,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            max_in_flight: 64,
            read_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Listens on `addr` and serves connections on `tasks`. Returns the bound
/// address.
pub async fn serve_tcp(
    addr: SocketAddr,
    limits: TcpLimits,
    proxy: ProxyTrust,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, DoorError> {
    let (listener, bound) = listen(addr)?;
    spawn_listener(listener, limits, proxy, handler, inflight, tasks);
    Ok(bound)
}

/// Serves Do53 over TCP on a bound listener.
pub(crate) fn spawn_listener(
    listener: TcpListener,
    limits: TcpLimits,
    proxy: ProxyTrust,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
    tasks: &mut JoinSet<()>,
) {
    tasks.spawn(accept_each(listener, limits, proxy, "tcp", move |stream, peer| {
        let client = Client { door: Door::Tcp, addr: peer.ip() };
        connection(stream, client, limits, handler.clone(), inflight.clone())
    }));
}

/// Do53 over UDP and TCP on one port: binds both before serving either,
/// and with port 0 picks again when the UDP port's TCP twin is taken (on
/// a busy machine it often is). Returns the bound address.
pub async fn serve_do53(
    addr: SocketAddr,
    workers: usize,
    limits: TcpLimits,
    proxy: ProxyTrust,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, DoorError> {
    let mut attempts = 0;
    loop {
        let (sockets, bound) = crate::udp::bind_sockets(addr, workers)?;
        match listen(bound) {
            Ok((listener, _)) => {
                crate::udp::spawn_sockets(sockets, handler.clone(), inflight.clone(), tasks);
                spawn_listener(listener, limits, proxy, handler, inflight, tasks);
                return Ok(bound);
            }
            Err(DoorError::Bind { source, .. })
                if addr.port() == 0 && source.kind() == std::io::ErrorKind::AddrInUse && attempts < 16 =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A TCP listener on `addr` (address reuse on, so a restart finds the port
/// free; one inherited for it when there is one), and the address it is
/// bound to. It is kept to hand to a successor.
pub fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), DoorError> {
    let (listener, bound) = listen_or_inherit(addr)?;
    crate::inherit::record(crate::inherit::Kind::Tcp, bound, std::os::fd::AsFd::as_fd(&listener));
    Ok((listener, bound))
}

/// A listener inherited for `addr`, else a new one.
fn listen_or_inherit(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), DoorError> {
    let bind = |source| DoorError::Bind { addr, source };
    if let Some(fd) = crate::inherit::take(crate::inherit::Kind::Tcp, addr).into_iter().next() {
        let listener = TcpListener::from_std(fd.into()).map_err(bind)?;
        return Ok((listener, addr));
    }
    let sock =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }.map_err(bind)?;
    sock.set_reuseaddr(true).map_err(bind)?;
    sock.bind(addr).map_err(bind)?;
    let listener = sock.listen(1024).map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    Ok((listener, bound))
}

/// Accepts connections for ever, at most `max_connections` at a time (more
/// are closed at once), and runs `serve` on each in its own task. A
/// connection from a load balancer that `proxy` trusts must start with a
/// PROXY v2 header, whose client address replaces the peer's.
pub(crate) async fn accept_each<F, Fut>(
    listener: TcpListener,
    limits: TcpLimits,
    proxy: ProxyTrust,
    door: &'static str,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let max_connections = limits.max_connections;
    let connections = Arc::new(Semaphore::new(max_connections));
    let per_prefix = crate::admission::PrefixCounts::new(limits.ipv4_prefix, limits.ipv6_prefix);
    let per_network = limits.connections_per_prefix.max(1);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(door, error = %e, "accept error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(door, "connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        if !proxy.trusts(peer.ip()) {
            let Some(held) = per_prefix.enter(peer.ip(), per_network) else {
                tracing::debug!(door, "per-network connection limit reached; closing");
                continue;
            };
            let work = serve(stream, peer);
            tokio::spawn(async move {
                work.await;
                drop((permit, held));
            });
            continue;
        }
        let serve = serve.clone();
        let per_prefix = per_prefix.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let peer = match crate::proxy::read_header(&mut stream, limits.handshake_timeout).await {
                Ok(Some(client)) => client,
                Ok(None) => peer,
                Err(e) => {
                    tracing::debug!(door, %peer, error = ?e, "load balancer connection without a valid PROXY v2 header");
                    return;
                }
            };
            // The client behind the load balancer is the one counted.
            let Some(held) = per_prefix.enter(peer.ip(), per_network) else {
                tracing::debug!(door, "per-network connection limit reached; closing");
                return;
            };
            serve(stream, peer).await;
            drop((permit, held));
        });
    }
}

/// Serves DNS messages framed with a length (RFC 7766) on any byte stream:
/// TCP, or TLS over TCP.
pub(crate) async fn connection<S>(
    stream: S,
    client: Client,
    limits: TcpLimits,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(limits.max_in_flight.max(1));
    let writer_task = tokio::spawn(async move {
        while let Some(framed) = rx.recv().await {
            if writer.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let slots = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    let mut out = Vec::with_capacity(4096);
    loop {
        let mut len = [0u8; 2];
        // Idle: nothing in flight and nothing new within the idle timeout.
        match tokio::time::timeout(limits.idle_timeout, reader.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => break,
            Err(_) if slots.available_permits() == limits.max_in_flight.max(1) => break,
            Err(_) => continue,
        }
        let n = u16::from_be_bytes(len) as usize;
        if n < 12 {
            break;
        }
        let mut query = vec![0u8; n];
        match tokio::time::timeout(limits.read_timeout, reader.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        match handler.try_fast(&query, client, &mut out) {
            Fast::Answered(len) => {
                if tx.send(frame(&out[..len])).await.is_err() {
                    break;
                }
                drop(permit);
            }
            Fast::Drop => drop(permit),
            Fast::Miss => {
                let (tx, handler, guard) = (tx.clone(), handler.clone(), inflight.enter());
                tokio::spawn(async move {
                    let mut out = Vec::with_capacity(1232);
                    if let Some(len) = handler.answer(&query, client, &mut out).await {
                        let _ = tx.send(frame(&out[..len])).await;
                    }
                    drop((permit, guard));
                });
            }
        }
    }
    drop(tx);
    // In-flight answers still go out; the writer ends when they are sent.
    let _ = tokio::time::timeout(Duration::from_secs(5), writer_task).await;
}

fn frame(msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(msg.len() + 2);
    v.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    v.extend_from_slice(msg);
    v
}
