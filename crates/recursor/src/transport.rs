//! Upstream I/O: one query to one server over UDP or TCP.
//!
//! Every UDP query uses a fresh socket on a random source port and a random
//! ID; a reply is accepted only from the server's address and port (the
//! socket is connected), with the same ID and the same question. Anything
//! else is dropped and the wait goes on until the timeout.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use proto::{Message, Name, build::build_query_ecs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Receive buffer of one upstream UDP query: room for any reply to the
/// EDNS size we advertise (1232) and then some.
const UDP_RECV_BUFFER: usize = 4096;

/// One question for one server.
#[derive(Debug, Clone)]
pub struct UpstreamQuery {
    /// The server.
    pub server: SocketAddr,
    /// Question name.
    pub qname: Name,
    /// Question type.
    pub qtype: u16,
    /// Set RD (forwarding).
    pub recursion_desired: bool,
    /// EDNS UDP size, or `None` to send no OPT.
    pub edns: Option<u16>,
    /// Set the DO bit.
    pub dnssec_ok: bool,
    /// Use TCP.
    pub tcp: bool,
    /// How long to wait.
    pub timeout: Duration,
    /// EDNS Client Subnet to send: the client's network and prefix length.
    pub ecs: Option<(IpAddr, u8)>,
    /// The COOKIE option to send (RFC 7873): our client cookie for this
    /// server, then its server cookie when we know one. A reply whose
    /// cookie carries another client cookie is not the server's: it is
    /// dropped like one with a wrong ID.
    pub cookie: Option<Vec<u8>>,
}

impl UpstreamQuery {
    /// The query message with ID `id`, as it goes on the wire.
    pub fn wire(&self, id: u16) -> Vec<u8> {
        let mut wire = Vec::with_capacity(64);
        build_query_ecs(
            &mut wire,
            id,
            self.qname.as_wire(),
            self.qtype,
            self.recursion_desired,
            self.edns,
            self.dnssec_ok,
            self.ecs,
            self.cookie.as_deref(),
        );
        wire
    }
}

/// Why an upstream query produced no usable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No matching reply in time.
    #[error("timeout")]
    Timeout,
    /// The socket failed (unreachable, refused, reset).
    #[error("network: {0}")]
    Network(String),
    /// A stream reply could not be parsed or did not match.
    #[error("malformed reply")]
    Malformed,
}

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends one query and returns the matching, parsed reply.
pub trait Transport: Send + Sync + 'static {
    /// Performs the query.
    fn query(&self, q: UpstreamQuery) -> BoxFuture<'_, Result<Message, TransportError>>;
}

/// Sees every upstream query and the reply taken for it, as they are on
/// the wire (dnstap's RESOLVER_QUERY and RESOLVER_RESPONSE).
pub trait UpstreamTap: Send + Sync + 'static {
    /// A query sent to `server` at `sent` (`response` none), or the reply
    /// matched to it.
    fn exchange(
        &self,
        server: SocketAddr,
        tcp: bool,
        sent: std::time::SystemTime,
        query: &[u8],
        response: Option<&[u8]>,
    );
}

/// A shared [`UpstreamTap`].
#[derive(Clone)]
pub struct Tap(pub std::sync::Arc<dyn UpstreamTap>);

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tap")
    }
}

/// The real network transport.
#[derive(Debug, Clone, Default)]
pub struct NetTransport {
    /// Source address for IPv4.
    pub bind_v4: Option<IpAddr>,
    /// Source address for IPv6.
    pub bind_v6: Option<IpAddr>,
    /// Sees each exchange, when set.
    pub tap: Option<Tap>,
}

impl Transport for NetTransport {
    fn query(&self, q: UpstreamQuery) -> BoxFuture<'_, Result<Message, TransportError>> {
        Box::pin(async move {
            let id: u16 = rand::random();
            let wire = q.wire(id);
            let fut = async { if q.tcp { self.tcp(&q, id, &wire).await } else { self.udp(&q, id, &wire).await } };
            tokio::time::timeout(q.timeout, fut).await.map_err(|_| TransportError::Timeout)?
        })
    }
}

fn net(e: std::io::Error) -> TransportError {
    TransportError::Network(e.kind().to_string())
}

/// Whether `reply` answers query `id` for (qname, qtype), and, when we sent
/// a cookie, does not carry somebody else's (RFC 7873 §5.3).
fn matches(reply: &Message, id: u16, q: &UpstreamQuery) -> bool {
    reply.id == id
        && reply.has_flag(proto::flags::QR)
        && reply.question.as_ref().is_some_and(|rq| rq.name == q.qname && rq.qtype == q.qtype)
        && cookie_matches(reply, q)
}

/// A reply's COOKIE option, if it has one: `Err` when it is malformed.
pub fn reply_cookie(reply: &Message) -> Option<Result<proto::cookie::CookieView<'_>, proto::cookie::MalformedCookie>> {
    let (_, data) = reply.edns.as_ref()?.options.iter().find(|(c, _)| *c == proto::wire::OPT_COOKIE)?;
    Some(proto::cookie::CookieView::parse(data))
}

/// No cookie in the reply, or one with our client cookie.
fn cookie_matches(reply: &Message, q: &UpstreamQuery) -> bool {
    let Some(sent) = q.cookie.as_deref().and_then(|c| c.get(..proto::cookie::CLIENT_LEN)) else { return true };
    match reply_cookie(reply) {
        None => true,
        Some(Ok(c)) => c.client == sent,
        Some(Err(_)) => false,
    }
}

impl NetTransport {
    fn source(&self, server: &SocketAddr) -> IpAddr {
        match server {
            SocketAddr::V4(_) => self.bind_v4.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            SocketAddr::V6(_) => self.bind_v6.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        }
    }

    async fn bind_random(&self, server: &SocketAddr) -> Result<UdpSocket, TransportError> {
        let ip = self.source(server);
        // A random port from the whole unprivileged range; the OS picks one
        // after a few collisions.
        for _ in 0..8 {
            let port: u16 = rand::random_range(1024..=65535);
            if let Ok(s) = UdpSocket::bind(SocketAddr::new(ip, port)).await {
                return Ok(s);
            }
        }
        UdpSocket::bind(SocketAddr::new(ip, 0)).await.map_err(net)
    }

    async fn udp(&self, q: &UpstreamQuery, id: u16, wire: &[u8]) -> Result<Message, TransportError> {
        let sock = self.bind_random(&q.server).await?;
        sock.connect(q.server).await.map_err(net)?;
        sock.send(wire).await.map_err(net)?;
        let sent = std::time::SystemTime::now();
        if let Some(t) = &self.tap {
            t.0.exchange(q.server, false, sent, wire, None);
        }
        // We advertise at most 1232 bytes (EDNS); a larger datagram is cut
        // here, fails to parse and is dropped like any other bad reply.
        let mut buf = vec![0u8; UDP_RECV_BUFFER];
        loop {
            let n = sock.recv(&mut buf).await.map_err(net)?;
            match Message::parse(&buf[..n]) {
                Ok(reply) if matches(&reply, id, q) => {
                    if let Some(t) = &self.tap {
                        t.0.exchange(q.server, false, sent, wire, Some(&buf[..n]));
                    }
                    return Ok(reply);
                }
                Ok(_) => tracing::debug!(server = %q.server, "dropped mismatched reply"),
                Err(e) => tracing::debug!(server = %q.server, error = %e, "dropped malformed reply"),
            }
        }
    }

    async fn tcp(&self, q: &UpstreamQuery, id: u16, wire: &[u8]) -> Result<Message, TransportError> {
        let sock = match q.server {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(net)?;
        sock.bind(SocketAddr::new(self.source(&q.server), 0)).map_err(net)?;
        let mut stream: TcpStream = sock.connect(q.server).await.map_err(net)?;
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
        framed.extend_from_slice(wire);
        stream.write_all(&framed).await.map_err(net)?;
        let sent = std::time::SystemTime::now();
        if let Some(t) = &self.tap {
            t.0.exchange(q.server, true, sent, wire, None);
        }
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(net)?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).await.map_err(net)?;
        match Message::parse(&buf) {
            Ok(reply) if matches(&reply, id, q) => {
                if let Some(t) = &self.tap {
                    t.0.exchange(q.server, true, sent, wire, Some(&buf));
                }
                Ok(reply)
            }
            _ => Err(TransportError::Malformed),
        }
    }
}
