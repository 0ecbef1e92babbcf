//! Do53 over UDP: one SO_REUSEPORT socket per worker, cache hits answered on
//! the receive loop, misses spawned (bounded).

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{Client, Door, DoorError, Fast, Handler, InFlight};

/// Most slow-path queries in flight per socket; beyond it queries are
/// dropped (the client retries) rather than queued without bound.
const MAX_PENDING_PER_SOCKET: usize = 4096;

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    s.set_recv_buffer_size(4 << 20).ok();
    s.set_send_buffer_size(4 << 20).ok();
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Binds `workers` sockets on `addr` (port 0 picks one port for all) and
/// serves them on `tasks`. Returns the bound address.
pub fn serve_udp(
    addr: SocketAddr,
    workers: usize,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, DoorError> {
    let (sockets, bound) = bind_sockets(addr, workers)?;
    spawn_sockets(sockets, handler, inflight, tasks);
    Ok(bound)
}

/// Binds `workers` SO_REUSEPORT sockets on `addr` (port 0 picks one port
/// for all); returns them and the bound address.
pub(crate) fn bind_sockets(addr: SocketAddr, workers: usize) -> Result<(Vec<UdpSocket>, SocketAddr), DoorError> {
    let first = bind(addr).map_err(|source| DoorError::Bind { addr, source })?;
    let bound = first.local_addr().map_err(|source| DoorError::Bind { addr, source })?;
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(bind(bound).map_err(|source| DoorError::Bind { addr: bound, source })?);
    }
    Ok((sockets, bound))
}

/// Serves bound sockets on `tasks`, one receive loop each.
pub(crate) fn spawn_sockets(
    sockets: Vec<UdpSocket>,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
    tasks: &mut JoinSet<()>,
) {
    for sock in sockets {
        tasks.spawn(run(Arc::new(sock), handler.clone(), inflight.clone()));
    }
}

async fn run(sock: Arc<UdpSocket>, handler: Arc<dyn Handler>, inflight: InFlight) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_PER_SOCKET));
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(65535);
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        let query = &buf[..n];
        let client = Client { door: Door::Udp, addr: peer.ip() };
        match handler.try_fast(query, client, &mut out) {
            Fast::Answered(len) => {
                let _ = sock.send_to(&out[..len], peer).await;
            }
            Fast::Drop => {}
            Fast::Miss => {
                let Ok(permit) = pending.clone().try_acquire_owned() else {
                    tracing::debug!("udp slow path full; query dropped");
                    continue;
                };
                let query = query.to_vec();
                let (sock, handler, guard) = (sock.clone(), handler.clone(), inflight.enter());
                tokio::spawn(async move {
                    let mut out = Vec::with_capacity(1232);
                    if let Some(len) = handler.answer(&query, client, &mut out).await {
                        let _ = sock.send_to(&out[..len], peer).await;
                    }
                    drop((permit, guard));
                });
            }
        }
    }
}
