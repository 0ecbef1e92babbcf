//! The doors: listeners (Do53 UDP and TCP, DoT, DoH) that turn network traffic
//! into calls on a
//! [`Handler`] and write back what it returns.
//!
//! A door knows nothing of caching or recursion: it only frames messages,
//! enforces admission limits (connection counts, in-flight queries, idle and
//! read timeouts, message sizes) and keeps the hot path synchronous — the
//! handler's [`Handler::try_fast`] is called inline on the receive loop, and
//! only misses are spawned as tasks.
//!
//! Invariant: no client address is stored beyond the lifetime of the query
//! that carried it. Admission keeps client *networks* in memory only: a
//! fingerprint per network in the rate-limit table, and the networks in
//! the kernel's drop filter (masked to /24 or /56) while they flood.

pub mod admission;
pub mod client;
mod doh;
mod doh3;
mod doq;
pub mod filter;
pub mod inherit;
pub mod odoh;
mod proxy;
pub mod rrl;
mod tcp;
mod tls;
mod udp;
pub mod xdp;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use admission::{Admission, AdmissionConfig, AdmissionStats};
#[doc(hidden)]
pub use doh::respond as doh_respond;
pub use doh::{DNS_JSON, DNS_MESSAGE, DohSite, PageRequest, Pages, base64url_decode, percent_decode, serve_doh};
pub use doh3::serve_doh3;
pub use doq::{error as doq_error, quic_server_config, serve_doq};
pub use proxy::{ProxyError, ProxyTrust, header as proxy_v2_header, read_header as read_proxy_header};
pub use tcp::{TcpLimits, listen, serve_do53, serve_tcp};
pub use tls::{CertStore, RemoteKey, serve_dot, tls_config, tls_config_from_store, tls13_config_from_store};
pub use udp::serve_udp;

/// Whether a response goes back over a datagram or a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// UDP: the handler truncates to the client's payload size.
    Datagram,
    /// TCP.
    Stream,
    /// TLS and other encrypted streams: responses are padded (RFC 8467)
    /// when the query was.
    EncryptedStream,
}

/// Which door a query came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    /// Do53 over UDP.
    Udp,
    /// Do53 over TCP.
    Tcp,
    /// DNS over TLS.
    Dot,
    /// DNS over HTTPS (and its JSON API).
    Doh,
    /// DNS over QUIC.
    Doq,
}

impl Door {
    /// Every door, in a fixed order (for counters indexed by door).
    pub const ALL: [Door; 5] = [Door::Udp, Door::Tcp, Door::Dot, Door::Doh, Door::Doq];

    /// How responses are framed on this door.
    pub fn framing(self) -> Framing {
        match self {
            Door::Udp => Framing::Datagram,
            Door::Tcp => Framing::Stream,
            Door::Dot | Door::Doh | Door::Doq => Framing::EncryptedStream,
        }
    }

    /// Its name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Udp => "udp",
            Door::Tcp => "tcp",
            Door::Dot => "dot",
            Door::Doh => "doh",
            Door::Doq => "doq",
        }
    }
}

/// Where a query came from: its door and the client's address. Lives only
/// as long as the query (the invariant above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The door.
    pub door: Door,
    /// The client's address (the peer of the socket).
    pub addr: std::net::IpAddr,
}

/// What the synchronous fast path did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fast {
    /// A response of this length is in the buffer.
    Answered(usize),
    /// Take the slow path.
    Miss,
    /// Send nothing.
    Drop,
}

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the doors call for each query.
pub trait Handler: Send + Sync + 'static {
    /// Answers from memory without blocking, or says [`Fast::Miss`].
    fn try_fast(&self, query: &[u8], client: Client, out: &mut Vec<u8>) -> Fast;
    /// Answers anything; `None` means send nothing.
    fn answer<'a>(&'a self, query: &'a [u8], client: Client, out: &'a mut Vec<u8>) -> BoxFuture<'a, Option<usize>>;
    /// A Do53 UDP socket about to be served with this handler (admission
    /// installs its kernel drop filter on it); nothing by default.
    fn register_udp(&self, sock: &Arc<tokio::net::UdpSocket>) {
        let _ = sock;
    }
}

/// Errors starting a door.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DoorError {
    /// Binding a socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate, key or settings are unusable.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Counts queries in flight across all doors, so shutdown can drain them,
/// and remembers when a UDP receive loop last found a full batch waiting
/// (the kernel's queue not drained): admission sheds cache misses from
/// heavy networks while that was less than [`BEHIND_HOLD_MS`] ago.
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>, Arc<std::sync::atomic::AtomicU32>, Arc<std::sync::atomic::AtomicU64>);

/// How long a server counts as behind after a receive loop last was.
pub const BEHIND_HOLD_MS: u32 = 1000;

impl InFlight {
    /// Whether a UDP receive loop was behind its socket's queue within the
    /// last [`BEHIND_HOLD_MS`].
    pub fn behind(&self) -> bool {
        let last = self.1.load(Ordering::Relaxed);
        last != 0 && admission::coarse_ms().wrapping_sub(last) < BEHIND_HOLD_MS
    }

    /// A receive loop found a full batch waiting.
    pub(crate) fn mark_behind(&self) {
        self.1.store(admission::coarse_ms().max(1), Ordering::Relaxed);
    }

    /// Marks one query in flight until the guard drops.
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    /// Datagrams the Do53 UDP receive loops have taken from their sockets
    /// (added a batch at a time).
    pub fn received(&self) -> u64 {
        self.2.load(Ordering::Relaxed)
    }

    pub(crate) fn add_received(&self, n: u64) {
        if n > 0 {
            self.2.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Queries in flight now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// Waits until nothing is in flight, at most `limit`.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// See [`InFlight::enter`].
#[derive(Debug)]
pub struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
