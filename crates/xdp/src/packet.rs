//! Ethernet + IPv4/IPv6 + UDP, read and turned around in place: a reply
//! goes back out in the frame its query came in, to the MAC, address and
//! port it came from (as Knot's XDP mode answers).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const ETH: usize = 14;
const V4: usize = ETH + 20;
const V6: usize = ETH + 40;
const UDP: usize = 8;

/// A UDP datagram found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Who sent it.
    pub source: SocketAddr,
    /// Where the UDP payload starts in the frame.
    pub payload: usize,
    /// The payload's length.
    pub len: usize,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The UDP datagram in `frame` (Ethernet, then IPv4 without options and
/// not a fragment, or IPv6 with no extension header), or `None`.
pub fn parse(frame: &[u8]) -> Option<Datagram> {
    if frame.len() < ETH {
        return None;
    }
    let (ip, udp) = match u16_at(frame, 12) {
        0x0800 if frame.len() >= V4 + UDP => {
            let h = &frame[ETH..V4];
            if h[0] != 0x45 || h[9] != 17 || u16_at(h, 6) & 0x3fff != 0 {
                return None;
            }
            if usize::from(u16_at(h, 2)) < 20 + UDP || usize::from(u16_at(h, 2)) > frame.len() - ETH {
                return None;
            }
            (IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])), V4)
        }
        0x86dd if frame.len() >= V6 + UDP => {
            let h = &frame[ETH..V6];
            if h[6] != 17 || usize::from(u16_at(h, 4)) > frame.len() - V6 {
                return None;
            }
            let mut a = [0u8; 16];
            a.copy_from_slice(&h[8..24]);
            (IpAddr::V6(Ipv6Addr::from(a)), V6)
        }
        _ => return None,
    };
    let ulen = usize::from(u16_at(frame, udp + 4));
    if ulen < UDP || udp + ulen > frame.len() {
        return None;
    }
    Some(Datagram { source: SocketAddr::new(ip, u16_at(frame, udp)), payload: udp + UDP, len: ulen - UDP })
}

/// Ones'-complement sum of `b` (an odd last byte padded with zero).
fn sum(b: &[u8], mut acc: u32) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Turns the datagram `d` in `frame` into a reply whose payload, `len`
/// bytes, is already at `d.payload`: MACs, addresses and ports swapped,
/// lengths, a hop limit of 64 and checksums set. Returns the frame's new
/// length. `frame` must be the one `parse` read `d` from.
pub fn turn_around(frame: &mut [u8], d: &Datagram, len: usize) -> usize {
    let (src, dst) = frame[..12].split_at_mut(6);
    src.swap_with_slice(dst);
    let udp = d.payload - UDP;
    let ulen = (UDP + len) as u16;
    // The pseudo-header's addresses are the same sum swapped or not.
    let pseudo = if udp == V4 {
        let h = &mut frame[ETH..V4];
        h[2..4].copy_from_slice(&(20 + ulen).to_be_bytes());
        h[4..8].copy_from_slice(&[0, 0, 0x40, 0]); // no ID, don't fragment
        h[8] = 64;
        h[10..12].copy_from_slice(&[0, 0]);
        let (s, d) = h[12..20].split_at_mut(4);
        s.swap_with_slice(d);
        let c = fold(sum(h, 0));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        sum(&h[12..20], 17 + u32::from(ulen))
    } else {
        let h = &mut frame[ETH..V6];
        h[4..6].copy_from_slice(&ulen.to_be_bytes());
        h[7] = 64;
        let (s, d) = h[8..40].split_at_mut(16);
        s.swap_with_slice(d);
        sum(&h[8..40], 17 + u32::from(ulen))
    };
    let u = &mut frame[udp..udp + UDP + len];
    let (s, d) = u[..4].split_at_mut(2);
    s.swap_with_slice(d);
    u[4..6].copy_from_slice(&ulen.to_be_bytes());
    u[6..8].copy_from_slice(&[0, 0]);
    let c = match fold(sum(u, pseudo)) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    udp + UDP + len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_query(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (20 + 8 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 63, 17, 0, 0]);
        f[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        f.extend_from_slice(&[0xc0, 0x01, 0, 53]);
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn an_ipv4_query_turns_into_a_reply_with_valid_checksums() {
        let f = v4_query(b"question");
        let d = parse(&f).expect("a datagram");
        assert_eq!(d.source, "198.18.0.1:49153".parse().expect("addr"));
        assert_eq!(&f[d.payload..d.payload + d.len], b"question");
        let mut frame = f.clone();
        frame.resize(256, 0);
        frame[d.payload..d.payload + 6].copy_from_slice(b"answer");
        let n = turn_around(&mut frame, &d, 6);
        let r = &frame[..n];
        assert_eq!(&r[..6], &f[6..12], "to the sender's MAC");
        assert_eq!(&r[ETH + 12..ETH + 16], &[198, 18, 0, 2]);
        assert_eq!(&r[ETH + 16..ETH + 20], &[198, 18, 0, 1]);
        assert_eq!(fold(sum(&r[ETH..V4], 0)), 0, "IPv4 header checksum");
        let back = parse(r).expect("the reply parses");
        assert_eq!(back.source, "198.18.0.2:53".parse().expect("addr"));
        assert_eq!(&r[back.payload..back.payload + back.len], b"answer");
        let pseudo = sum(&r[ETH + 12..ETH + 20], 17 + (8 + 6));
        assert_eq!(fold(sum(&r[V4..n], pseudo)), 0, "UDP checksum");
    }

    #[test]
    fn an_ipv6_reply_has_the_checksum_ipv6_requires() {
        let payload = b"q6";
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd, 0x60, 0, 0, 0];
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[17, 64]);
        let a: Ipv6Addr = "2001:2::1".parse().expect("addr");
        let b: Ipv6Addr = "2001:2::2".parse().expect("addr");
        f.extend_from_slice(&a.octets());
        f.extend_from_slice(&b.octets());
        f.extend_from_slice(&[0x12, 0x34, 0, 53, 0, 10, 0, 0]);
        f.extend_from_slice(payload);
        let d = parse(&f).expect("a datagram");
        assert_eq!(d.source, SocketAddr::new(IpAddr::V6(a), 0x1234));
        f.resize(200, 0);
        f[d.payload..d.payload + 3].copy_from_slice(b"odd");
        let n = turn_around(&mut f, &d, 3);
        let back = parse(&f[..n]).expect("parses");
        assert_eq!(back.source.ip(), IpAddr::V6(b));
        let pseudo = sum(&f[ETH + 8..V6], 17 + 11);
        assert_eq!(fold(sum(&f[V6..n], pseudo)), 0);
    }

    #[test]
    fn what_is_not_a_whole_udp_datagram_is_left_alone() {
        let f = v4_query(b"x");
        for cut in 0..f.len() {
            assert!(parse(&f[..cut]).is_none(), "cut at {cut}");
        }
        let mut frag = f.clone();
        frag[ETH + 6] = 0x20; // more fragments
        assert!(parse(&frag).is_none());
        let mut tcp = f.clone();
        tcp[ETH + 9] = 6;
        assert!(parse(&tcp).is_none());
        let mut long = f.clone();
        long[V4 + 5] = 200; // UDP length past the frame
        assert!(parse(&long).is_none());
    }
}
