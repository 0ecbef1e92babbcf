//! Listening sockets that outlive a process. A door binding an address
//! first takes a socket inherited for it, from systemd's socket
//! activation (`LISTEN_FDS`) or from the process it takes over from; every
//! socket a door serves is also kept here (a duplicate of its descriptor)
//! so that it can be handed on to a successor. Handing on the very sockets,
//! not new ones on the same port, is what loses no datagram: what waits in
//! a socket's queue is read by whichever process reads next.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

/// A socket's kind, as doors bind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A UDP socket (Do53, DoQ, DoH over HTTP/3).
    Udp,
    /// A listening TCP socket (Do53, DoT, DoH, the web listener).
    Tcp,
}

impl Kind {
    /// `udp` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Udp => "udp",
            Kind::Tcp => "tcp",
        }
    }

    /// The inverse of [`Kind::as_str`].
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "udp" => Some(Kind::Udp),
            "tcp" => Some(Kind::Tcp),
            _ => None,
        }
    }
}

/// Why a descriptor could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum InheritError {
    /// Not a socket a door could serve (a Unix socket, a connected
    /// stream, a pipe...).
    #[error("descriptor {fd} is not a UDP or listening TCP socket on an IP address")]
    NotADoorSocket {
        /// The descriptor's number.
        fd: i32,
    },
    /// The system refused a call on it.
    #[error("descriptor {fd}: {source}")]
    Io {
        /// The descriptor's number.
        fd: i32,
        /// What the system said.
        source: std::io::Error,
    },
}

struct Held {
    kind: Kind,
    addr: SocketAddr,
    fd: OwnedFd,
}

static INHERITED: Mutex<Vec<Held>> = Mutex::new(Vec::new());
static SERVED: Mutex<Vec<Held>> = Mutex::new(Vec::new());

fn lock(m: &'static Mutex<Vec<Held>>) -> MutexGuard<'static, Vec<Held>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What kind of door socket `fd` is, and its address.
pub fn classify(fd: BorrowedFd<'_>) -> Result<(Kind, SocketAddr), InheritError> {
    use std::os::fd::AsRawFd;
    let raw = fd.as_raw_fd();
    let io = |source| InheritError::Io { fd: raw, source };
    let sock = socket2::SockRef::from(&fd);
    let kind = match sock.r#type().map_err(io)? {
        socket2::Type::DGRAM => Kind::Udp,
        socket2::Type::STREAM if sock.is_listener().map_err(io)? => Kind::Tcp,
        _ => return Err(InheritError::NotADoorSocket { fd: raw }),
    };
    let addr = sock.local_addr().map_err(io)?.as_socket().ok_or(InheritError::NotADoorSocket { fd: raw })?;
    Ok((kind, addr))
}

/// Takes `fd` as a socket for a door to serve instead of binding its
/// address. Returns its kind and address.
pub fn adopt(fd: OwnedFd) -> Result<(Kind, SocketAddr), InheritError> {
    use std::os::fd::AsRawFd;
    let (kind, addr) = classify(fd.as_fd())?;
    socket2::SockRef::from(&fd)
        .set_nonblocking(true)
        .map_err(|source| InheritError::Io { fd: fd.as_raw_fd(), source })?;
    lock(&INHERITED).push(Held { kind, addr, fd });
    Ok((kind, addr))
}

/// Adopts the sockets systemd passed (socket activation: `LISTEN_FDS` of
/// them from descriptor 3, when `LISTEN_PID` is this process). Returns
/// what was adopted; a descriptor that is not a door socket is an error
/// naming it.
pub fn from_systemd() -> Result<Vec<(Kind, SocketAddr)>, InheritError> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut adopted = Vec::new();
    for idx in 0..fds.len() {
        let fd = idx as i32 + 3;
        let io = |source| InheritError::Io { fd, source };
        let owned = match fds.take_tcp_listener(idx) {
            Ok(Some(l)) => OwnedFd::from(l),
            _ => match fds.take_udp_socket(idx).map_err(io)? {
                Some(s) => OwnedFd::from(s),
                None => continue,
            },
        };
        adopted.push(adopt(owned)?);
    }
    Ok(adopted)
}

/// Every inherited socket of `kind` on `addr` (none for port 0, which
/// asks for a fresh port).
pub(crate) fn take(kind: Kind, addr: SocketAddr) -> Vec<OwnedFd> {
    if addr.port() == 0 {
        return Vec::new();
    }
    let mut held = lock(&INHERITED);
    let (taken, kept): (Vec<Held>, Vec<Held>) = held.drain(..).partition(|h| h.kind == kind && h.addr == addr);
    *held = kept;
    taken.into_iter().map(|h| h.fd).collect()
}

/// Keeps a duplicate of a socket a door now serves, to hand on.
pub(crate) fn record(kind: Kind, addr: SocketAddr, fd: BorrowedFd<'_>) {
    match fd.try_clone_to_owned() {
        Ok(fd) => lock(&SERVED).push(Held { kind, addr, fd }),
        Err(e) => tracing::warn!(error = %e, %addr, "a served socket cannot be kept for a successor"),
    }
}

/// The sockets this process serves, to hand to a successor.
pub fn served() -> Vec<(Kind, SocketAddr, OwnedFd)> {
    lock(&SERVED).iter().filter_map(|h| h.fd.try_clone().ok().map(|fd| (h.kind, h.addr, fd))).collect()
}

/// Inherited sockets no door took (the configuration no longer listens
/// there); they are closed.
pub fn close_unclaimed() -> Vec<(Kind, SocketAddr)> {
    lock(&INHERITED).drain(..).map(|h| (h.kind, h.addr)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_classified_and_taken_once_for_their_address() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
        let (ua, ta) = (udp.local_addr().expect("addr"), tcp.local_addr().expect("addr"));
        assert_eq!(adopt(OwnedFd::from(udp)).expect("udp"), (Kind::Udp, ua));
        assert_eq!(adopt(OwnedFd::from(tcp)).expect("tcp"), (Kind::Tcp, ta));
        let stream = std::net::TcpStream::connect(ta).expect("connect");
        assert!(matches!(adopt(OwnedFd::from(stream)), Err(InheritError::NotADoorSocket { .. })));
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        assert!(adopt(OwnedFd::from(a)).is_err());
        assert!(take(Kind::Tcp, ua).is_empty(), "kind and address both match");
        assert_eq!(take(Kind::Udp, ua).len(), 1);
        assert!(take(Kind::Udp, ua).is_empty(), "taken once");
        assert!(take(Kind::Tcp, SocketAddr::new(ta.ip(), 0)).is_empty(), "port 0 asks for a fresh one");
        let left = close_unclaimed();
        assert!(left.contains(&(Kind::Tcp, ta)));
    }
}
