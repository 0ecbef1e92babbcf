//! The PROXY protocol v2 header parser (crates/doors/src/proxy.rs).
//!
//! `mod proxy` is private, but its reader is re-exported:
//! `doors::read_proxy_header` (= `proxy::read_header`, async, over any
//! `AsyncRead`), which calls the private `proxy::parse`. It is driven here
//! over the input bytes on a current-thread tokio runtime. An in-memory
//! reader never blocks, so `ProxyError::Timeout` must never come back.
//!
//! Also: `doors::proxy_v2_header` round trip (a header built for two
//! addresses, followed by arbitrary bytes, reads back as the source
//! address), and `doors::ProxyTrust::{new, trusts}` with arbitrary
//! networks and prefix lengths.
//!
//! Input: mode octet, then bytes.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use doors::{ProxyError, ProxyTrust, proxy_v2_header, read_proxy_header};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static RT: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("tokio runtime");
}

fn read(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    RT.with(|rt| rt.block_on(read_proxy_header(&mut &bytes[..], Duration::from_secs(30))))
}

fn addr(b: &[u8], v6: bool) -> Option<SocketAddr> {
    if v6 {
        let ip: [u8; 16] = b.get(..16)?.try_into().ok()?;
        let port = u16::from_be_bytes([*b.get(16)?, *b.get(17)?]);
        Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
    } else {
        let ip: [u8; 4] = b.get(..4)?.try_into().ok()?;
        let port = u16::from_be_bytes([*b.get(4)?, *b.get(5)?]);
        Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };

    // 1. Arbitrary bytes as a connection's first octets. With the mode's
    //    top bit set, a valid signature is put in front so the command,
    //    family, length and body are what get fuzzed.
    let stream: Vec<u8> = if mode & 0x80 != 0 {
        let mut s = vec![0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
        s.extend_from_slice(rest);
        s
    } else {
        rest.to_vec()
    };
    let got = read(&stream);
    assert_ne!(got, Err(ProxyError::Timeout), "an in-memory header timed out");

    // 2. Round trip through the header writer.
    let (v6_src, v6_dst) = (mode & 1 != 0, mode & 2 != 0);
    let src_len: usize = if v6_src { 18 } else { 6 };
    let dst_len: usize = if v6_dst { 18 } else { 6 };
    if let (Some(src), Some(dst)) = (addr(rest, v6_src), addr(rest.get(src_len..).unwrap_or(&[]), v6_dst)) {
        let mut h = proxy_v2_header(src, dst);
        let tail = rest.get(src_len + dst_len..).unwrap_or(&[]);
        h.extend_from_slice(tail);
        let back = read(&h).expect("a header from proxy_v2_header does not read back");
        let back = back.expect("a PROXY TCP header carries an address");
        // Mixed families are written as IPv6 (v4-mapped).
        assert_eq!(back.ip().to_canonical(), src.ip().to_canonical());
        assert_eq!(back.port(), src.port());
    }

    // 3. Trust by network.
    let nets: Vec<(IpAddr, u8)> = rest
        .chunks(18)
        .take(8)
        .filter_map(|c| {
            let len = *c.first()?;
            let a = addr(&c[1..], len & 1 != 0).map(|a| a.ip())?;
            Some((a, len >> 1))
        })
        .collect();
    let trust = ProxyTrust::new(nets.clone());
    for (net, len) in &nets {
        if *len <= if net.is_ipv4() { 32 } else { 128 } {
            assert!(trust.trusts(*net), "a network does not contain its own address");
        }
    }
    if let Ok(Some(peer)) = got {
        let _ = trust.trusts(peer.ip());
    }
});
