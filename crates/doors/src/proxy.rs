//! PROXY protocol version 2 (the HAProxy specification): a load balancer
//! in front of the stream doors prepends a binary header carrying the real
//! client address. It is read only from configured load balancers; from
//! them it is required, and from anyone else it is never looked for, so a
//! client cannot claim another address.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12-octet signature that starts every v2 header.
const SIGNATURE: [u8; 12] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/// The networks whose connections start with a PROXY v2 header.
#[derive(Debug, Clone, Default)]
pub struct ProxyTrust(Arc<[(IpAddr, u8)]>);

impl ProxyTrust {
    /// Trusts these networks (address, prefix length).
    pub fn new(networks: Vec<(IpAddr, u8)>) -> ProxyTrust {
        ProxyTrust(networks.into())
    }

    /// Whether `peer` is a trusted load balancer.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.0.iter().any(|(net, len)| contains(*net, *len, peer))
    }
}

fn contains(net: IpAddr, len: u8, addr: IpAddr) -> bool {
    let addr = match (net, addr) {
        (IpAddr::V4(_), IpAddr::V6(a)) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        _ => addr,
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len.min(32) as u32) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len.min(128) as u32) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Why a header was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// Not a v2 header (or the connection ended first).
    Missing,
    /// A v2 header that does not parse.
    Malformed,
    /// Too slow.
    Timeout,
}

/// Reads a PROXY v2 header from `stream` within `timeout`. Returns the
/// client's address for a PROXY command over TCP/UDP and IPv4/IPv6, and
/// `None` for a LOCAL command (the balancer's own health check) or an
/// address family we do not carry (the peer's address is used).
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyError> {
    let work = async {
        let mut head = [0u8; 16];
        stream.read_exact(&mut head).await.map_err(|_| ProxyError::Missing)?;
        if head[..12] != SIGNATURE || head[12] >> 4 != 2 {
            return Err(ProxyError::Missing);
        }
        let len = u16::from_be_bytes([head[14], head[15]]) as usize;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.map_err(|_| ProxyError::Malformed)?;
        parse(head[12] & 0x0f, head[13], &body)
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| ProxyError::Timeout)?
}

/// The client address of a v2 header's `command`, `family` and body.
fn parse(command: u8, family: u8, body: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    match command {
        0 => return Ok(None), // LOCAL
        1 => {}
        _ => return Err(ProxyError::Malformed),
    }
    let port = |at: usize| body.get(at..).and_then(<[u8]>::first_chunk).map(|p| u16::from_be_bytes(*p));
    match family >> 4 {
        // AF_INET: source, destination (4 each), then the ports.
        1 => {
            let src: [u8; 4] = body.get(..4).and_then(|s| s.try_into().ok()).ok_or(ProxyError::Malformed)?;
            Ok(Some(SocketAddr::new(IpAddr::from(src), port(8).ok_or(ProxyError::Malformed)?)))
        }
        // AF_INET6: 16 each.
        2 => {
            let src: [u8; 16] = body.get(..16).and_then(|s| s.try_into().ok()).ok_or(ProxyError::Malformed)?;
            Ok(Some(SocketAddr::new(IpAddr::from(src), port(32).ok_or(ProxyError::Malformed)?)))
        }
        // AF_UNSPEC or AF_UNIX: nothing to carry.
        0 | 3 => Ok(None),
        _ => Err(ProxyError::Malformed),
    }
}

/// A v2 PROXY header for `src` → `dst` over TCP (for tests and tools).
pub fn header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(0x21);
    let body: Vec<u8> = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            [&s.octets()[..], &d.octets()[..], &src.port().to_be_bytes(), &dst.port().to_be_bytes()].concat()
        }
        (s, d) => {
            out.push(0x21);
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            [&v6(s)[..], &v6(d)[..], &src.port().to_be_bytes(), &dst.port().to_be_bytes()].concat()
        }
    };
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_v4_v6_and_local_headers() {
        let src: SocketAddr = "192.0.2.99:5555".parse().expect("addr");
        let dst: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let h = header(src, dst);
        assert_eq!(read_header(&mut &h[..], Duration::from_secs(1)).await, Ok(Some(src)));
        let src6: SocketAddr = "[2001:db8::7]:4444".parse().expect("addr");
        let h = header(src6, "[::1]:53".parse().expect("addr"));
        assert_eq!(read_header(&mut &h[..], Duration::from_secs(1)).await, Ok(Some(src6)));
        let mut local = SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(read_header(&mut &local[..], Duration::from_secs(1)).await, Ok(None));
        // A DNS length prefix is not a header; truncated headers are refused.
        assert_eq!(read_header(&mut &[0u8, 29, 1, 2][..], Duration::from_secs(1)).await, Err(ProxyError::Missing));
        let h = header(src, dst);
        assert_eq!(read_header(&mut &h[..20], Duration::from_secs(1)).await, Err(ProxyError::Malformed));
    }

    #[test]
    fn trust_by_network() {
        let t = ProxyTrust::new(vec![("10.1.0.0".parse().expect("ip"), 16), ("::1".parse().expect("ip"), 128)]);
        assert!(t.trusts("10.1.2.3".parse().expect("ip")));
        assert!(!t.trusts("10.2.0.1".parse().expect("ip")));
        assert!(t.trusts("::1".parse().expect("ip")));
        assert!(t.trusts("::ffff:10.1.0.9".parse().expect("ip")));
        assert!(!ProxyTrust::default().trusts("10.1.2.3".parse().expect("ip")));
    }
}
