//! Do53 over AF_XDP (Linux, opt-in, root or CAP_NET_ADMIN + CAP_BPF +
//! CAP_NET_RAW): beside a Do53 listener's sockets, an XDP program on one
//! interface steers UDP datagrams for the listener's port to an AF_XDP
//! socket per receive queue, each served by a thread of its own. A cache
//! hit is answered in the frame the query came in, without the kernel's
//! socket layer; a miss is handed to the normal pipeline and its answer
//! sent from the listener's UDP socket. Anything the program does not
//! steer (TCP, fragments, IPv4 options, IPv6 extension headers, other
//! ports) reaches the kernel as before. When XDP cannot be set up the
//! listener serves on sockets alone, and says why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::{Client, Door, Fast, Handler, InFlight};

pub use xdp::Mode as XdpMode;

/// Frames handled per batch.
const BATCH: u32 = 64;
/// Most misses in flight per queue; beyond it they are dropped (the client
/// retries), as on the socket path.
const MAX_PENDING: usize = 4096;

/// What the fast path has done since start, all queues together.
#[derive(Debug, Default)]
pub struct XdpStats {
    /// Answered in place from the cache.
    pub answered: AtomicU64,
    /// Handed to the pipeline.
    pub missed: AtomicU64,
    /// Dropped: not a datagram we take, refused by admission, an answer
    /// too big for its frame, a full transmit ring or too many misses.
    pub dropped: AtomicU64,
}

/// The fast path's counters.
pub static STATS: XdpStats =
    XdpStats { answered: AtomicU64::new(0), missed: AtomicU64::new(0), dropped: AtomicU64::new(0) };

/// The fast path of one listener: dropping it stops its threads and
/// detaches the program.
#[derive(Debug)]
pub struct XdpDoor {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Where the program runs.
    pub mode: XdpMode,
    /// AF_XDP sockets (receive queues) served.
    pub queues: u32,
}

impl Drop for XdpDoor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sets the fast path up on `interface` for the Do53 listeners on `port`
/// (already serving: their UDP sockets send the misses' answers, IPv4 or
/// IPv6 as the client), in `mode` (native, else generic, when `None`).
/// Must be called inside the runtime that runs the misses.
pub fn serve_xdp(
    interface: &str,
    mode: Option<XdpMode>,
    port: u16,
    handler: Arc<dyn Handler>,
    inflight: InFlight,
) -> Result<XdpDoor, xdp::XdpError> {
    let replies = Replies::find(port).map_err(|e| xdp::XdpError::Socket("the listener's UDP socket", e))?;
    let ifindex = xdp::ifindex(interface)?;
    let queues = xdp::rx_queues(interface);
    let steering = xdp::Steering::attach(ifindex, port, queues, mode)?;
    let mut sockets = Vec::with_capacity(queues as usize);
    for q in 0..queues {
        sockets.push(xdp::Socket::open(&steering, q)?);
    }
    let runtime = tokio::runtime::Handle::current();
    let stop = Arc::new(AtomicBool::new(false));
    let steering = Arc::new(steering);
    let mut threads = Vec::new();
    for (q, socket) in sockets.into_iter().enumerate() {
        let ctx = Queue {
            handler: handler.clone(),
            inflight: inflight.clone(),
            replies: replies.clone(),
            runtime: runtime.clone(),
            pending: Arc::new(Semaphore::new(MAX_PENDING)),
        };
        let (stop, steering) = (stop.clone(), steering.clone());
        let t = std::thread::Builder::new()
            .name(format!("onedot-xdp-{q}"))
            .spawn(move || {
                ctx.run(socket, &stop);
                drop(steering);
            })
            .map_err(|e| xdp::XdpError::Socket("starting a thread", e))?;
        threads.push(t);
    }
    Ok(XdpDoor { stop, threads, mode: steering.mode, queues })
}

/// Copies of the listeners' UDP sockets on the port (as recorded for a
/// successor), to send answers from their address and port.
#[derive(Clone)]
struct Replies {
    v4: Option<Arc<UdpSocket>>,
    v6: Option<Arc<UdpSocket>>,
}

impl Replies {
    fn find(port: u16) -> std::io::Result<Replies> {
        let mut r = Replies { v4: None, v6: None };
        for (kind, addr, fd) in crate::inherit::served() {
            if kind != crate::inherit::Kind::Udp || addr.port() != port {
                continue;
            }
            let slot = if addr.is_ipv4() { &mut r.v4 } else { &mut r.v6 };
            if slot.is_none() {
                *slot = Some(Arc::new(UdpSocket::from_std(std::net::UdpSocket::from(fd))?));
            }
        }
        if r.v4.is_none() && r.v6.is_none() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no Do53 listener on that port"));
        }
        Ok(r)
    }

    /// Sends `answer` to `to` from the listener of its family, if any.
    async fn send(&self, answer: &[u8], to: SocketAddr) {
        if let Some(sock) = if to.is_ipv4() { &self.v4 } else { &self.v6 } {
            let _ = sock.send_to(answer, to).await;
        }
    }
}

/// One queue's thread and what it needs.
struct Queue {
    handler: Arc<dyn Handler>,
    inflight: InFlight,
    replies: Replies,
    runtime: tokio::runtime::Handle,
    pending: Arc<Semaphore>,
}

impl Queue {
    fn run(&self, mut socket: xdp::Socket, stop: &AtomicBool) {
        let mut out = Vec::with_capacity(4096);
        while !stop.load(Ordering::Relaxed) {
            let n = socket.serve(BATCH, |frame, len| self.answer(frame, len, &mut out));
            if n == 0 {
                // Nothing arrived: sleep until something does, briefly
                // while answers wait to be sent.
                socket.wait(if socket.sending() { 1 } else { 100 });
            } else {
                self.inflight.add_received(u64::from(n));
            }
        }
    }

    /// The answer to the query in `frame`, turned around in place; `None`
    /// when there is none to send from here.
    fn answer(&self, frame: &mut [u8], len: usize, out: &mut Vec<u8>) -> Option<usize> {
        let Some(d) = xdp::packet::parse(&frame[..len]) else {
            STATS.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let query = &frame[d.payload..d.payload + d.len];
        let client = Client { door: Door::Udp, addr: d.source.ip() };
        match self.handler.try_fast(query, client, out) {
            Fast::Answered(n) if d.payload + n <= frame.len() => {
                frame[d.payload..d.payload + n].copy_from_slice(&out[..n]);
                STATS.answered.fetch_add(1, Ordering::Relaxed);
                Some(xdp::packet::turn_around(frame, &d, n))
            }
            Fast::Answered(n) => {
                // Larger than the frame (a max_udp_payload past ~3.7 kB):
                // sent from the socket instead.
                let (replies, answer) = (self.replies.clone(), out[..n].to_vec());
                self.runtime.spawn(async move { replies.send(&answer, d.source).await });
                STATS.answered.fetch_add(1, Ordering::Relaxed);
                None
            }
            Fast::Drop => {
                STATS.dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
            Fast::Miss => {
                let Ok(permit) = self.pending.clone().try_acquire_owned() else {
                    STATS.dropped.fetch_add(1, Ordering::Relaxed);
                    return None;
                };
                STATS.missed.fetch_add(1, Ordering::Relaxed);
                let query = query.to_vec();
                let (replies, handler, guard) = (self.replies.clone(), self.handler.clone(), self.inflight.enter());
                self.runtime.spawn(async move {
                    let mut out = Vec::with_capacity(1232);
                    if let Some(len) = handler.answer(&query, client, &mut out).await {
                        replies.send(&out[..len], d.source).await;
                    }
                    drop((permit, guard));
                });
                None
            }
        }
    }
}
