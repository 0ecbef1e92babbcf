//! The kernel's drop filter: client networks flooding far past their rate
//! limit are dropped by a classic BPF socket filter on every Do53 UDP
//! socket, before their datagrams reach the socket's queue.
//!
//! Response rate limiting ([`crate::rrl`]) decides in user space, so every
//! flooding datagram is still received, parsed and judged; at several
//! times the resolver's capacity that work alone fills the core, and the
//! socket's queue overflows, dropping the legitimate clients' queries with
//! the flood's. Networks the rate limiter sees flooding
//! ([`crate::rrl::RateLimiter::take_flooding`]) are therefore put in a
//! filter the kernel runs on each arriving datagram, for `hold_ms`; then
//! they are let in again and judged afresh, so a flood that goes on is
//! back in the filter within a second, and a network whose flood has
//! stopped gets answers again. The filter holds at most `max` networks;
//! more are left to the rate limiter. dnsdist's eBPF dynamic blocks are the model; a
//! classic BPF program needs no privileges and no eBPF loader.
//!
//! The program loads the source address through `SKF_NET_OFF` (the IP
//! header), masks it to the client network's length and compares it with
//! each blocked network in turn: two instructions a network for IPv4, at
//! most nine for IPv6, inside the kernel's 4,096-instruction limit at
//! [`MAX_NETWORKS`].

use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, Weak};

use socket2::{SockFilter, SockRef};

use crate::rrl::{key_network, mask32, mask128, prefix_key};
use tokio::net::UdpSocket;

/// The most networks a filter can hold.
pub const MAX_NETWORKS: usize = 400;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const LD_B_ABS: u16 = 0x30;
const ALU_AND_K: u16 = 0x54;
const ALU_RSH_K: u16 = 0x74;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;
/// `SKF_NET_OFF`: offsets from here are into the network (IP) header.
const NET: u32 = 0xfff0_0000;
const ACCEPT: u32 = u32::MAX;
const DROP: u32 = 0;

/// A blocked client network: its address masked to the network's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Blocked {
    net: IpAddr,
    /// Coarse milliseconds when it leaves the filter.
    until_ms: u32,
}

#[derive(Debug, Default)]
struct State {
    sockets: Vec<Weak<UdpSocket>>,
    blocked: Vec<Blocked>,
}

/// Networks dropped in the kernel, and the sockets that drop them.
#[derive(Debug)]
pub struct KernelFilter {
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    hold_ms: u32,
    max: usize,
    state: Mutex<State>,
}

impl KernelFilter {
    /// A filter for networks of these lengths, each held `hold_ms`, at
    /// most `max` (bounded by [`MAX_NETWORKS`]) at once. Networks are
    /// those of the rate limiter's keys, where an IPv6 /128 is its /127.
    pub fn new(ipv4_prefix: u8, ipv6_prefix: u8, hold_ms: u32, max: usize) -> KernelFilter {
        KernelFilter {
            ipv4_prefix,
            ipv6_prefix: ipv6_prefix.min(127),
            hold_ms: hold_ms.max(1),
            max: max.min(MAX_NETWORKS),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a socket: it filters from now on (and is forgotten once
    /// dropped).
    pub fn register(&self, sock: &std::sync::Arc<UdpSocket>) {
        let mut st = self.state();
        st.sockets.retain(|s| s.strong_count() > 0);
        st.sockets.push(std::sync::Arc::downgrade(sock));
        if !st.blocked.is_empty() {
            let program = self.program(&st.blocked);
            if let Err(e) = SockRef::from(&**sock).attach_filter(&program) {
                tracing::warn!(error = %e, "cannot attach the kernel drop filter");
            }
        }
    }

    /// Networks in the filter now.
    pub fn len(&self) -> usize {
        self.state().blocked.len()
    }

    /// Whether the filter is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts the networks of the addresses in `flooding` in the filter (those already there
    /// keep their time), lets out those whose time is over at `now_ms`,
    /// and installs the result on every socket if it changed. Returns how
    /// many networks were added.
    pub fn update(&self, flooding: &[IpAddr], now_ms: u32) -> usize {
        let mut st = self.state();
        let before = st.blocked.len();
        st.blocked.retain(|b| (b.until_ms.wrapping_sub(now_ms) as i32) > 0);
        let mut changed = st.blocked.len() != before;
        let mut added = 0;
        for &ip in flooding {
            let net = key_network(prefix_key(ip, self.ipv4_prefix, self.ipv6_prefix));
            if st.blocked.len() >= self.max || st.blocked.iter().any(|b| b.net == net) {
                continue;
            }
            st.blocked.push(Blocked { net, until_ms: now_ms.wrapping_add(self.hold_ms).max(1) });
            added += 1;
            changed = true;
        }
        if changed {
            st.sockets.retain(|s| s.strong_count() > 0);
            let program = (!st.blocked.is_empty()).then(|| self.program(&st.blocked));
            for sock in st.sockets.iter().filter_map(Weak::upgrade) {
                let sock = SockRef::from(&*sock);
                let r = match &program {
                    Some(p) => sock.attach_filter(p),
                    None => sock.detach_filter(),
                };
                // Detaching a socket that has no filter says ENOENT.
                if let Err(e) = r
                    && program.is_some()
                {
                    tracing::warn!(error = %e, "cannot attach the kernel drop filter");
                }
            }
            tracing::info!(networks = st.blocked.len(), added, "kernel drop filter updated");
        }
        added
    }

    /// The BPF program dropping `blocked`.
    fn program(&self, blocked: &[Blocked]) -> Vec<SockFilter> {
        let f = |code, jt, jf, k| SockFilter::new(code, jt, jf, k);
        let mut v4 = vec![f(LD_W_ABS, 0, 0, NET + 12), f(ALU_AND_K, 0, 0, mask32(self.ipv4_prefix))];
        let mut v6 = Vec::new();
        for b in blocked {
            match b.net {
                IpAddr::V4(a) => {
                    v4.push(f(JMP_JEQ_K, 0, 1, u32::from(a)));
                    v4.push(f(RET_K, 0, 0, DROP));
                }
                IpAddr::V6(a) => v6.extend(v6_block(a, self.ipv6_prefix)),
            }
        }
        v4.push(f(RET_K, 0, 0, ACCEPT));
        v6.push(f(RET_K, 0, 0, ACCEPT));
        // The IP version, then IPv4's part or a jump to IPv6's.
        let mut p = vec![
            f(LD_B_ABS, 0, 0, NET),
            f(ALU_RSH_K, 0, 0, 4),
            f(JMP_JEQ_K, 0, 1, 6),
            f(JMP_JA, 0, 0, v4.len() as u32),
        ];
        p.extend(v4);
        p.extend(v6);
        p
    }
}

/// Instructions that drop an IPv6 datagram from `net`/`len` and fall
/// through for any other: per 32-bit word of the address that the mask
/// touches, a load, a mask when partial, and a compare that skips the
/// rest of the block when it differs.
fn v6_block(net: Ipv6Addr, len: u8) -> Vec<SockFilter> {
    let bits = u128::from(net);
    let mask = mask128(len);
    let words: Vec<(u32, u32, u32)> = (0..4u32)
        .filter_map(|j| {
            let shift = 96 - 32 * j;
            let m = (mask >> shift) as u32;
            (m != 0).then_some((8 + 4 * j, m, (bits >> shift) as u32 & m))
        })
        .collect();
    let mut out = Vec::new();
    // Instructions after each compare up to the block's end ("ret drop").
    let mut remaining: u32 = words.iter().map(|&(_, m, _)| if m == u32::MAX { 2 } else { 3 }).sum::<u32>() + 1;
    for (off, m, w) in words {
        out.push(SockFilter::new(LD_W_ABS, 0, 0, NET + off));
        remaining -= 1;
        if m != u32::MAX {
            out.push(SockFilter::new(ALU_AND_K, 0, 0, m));
            remaining -= 1;
        }
        remaining -= 1;
        // At most 7 instructions follow, well inside a jump's 255.
        out.push(SockFilter::new(JMP_JEQ_K, 0, remaining as u8, w));
    }
    out.push(SockFilter::new(RET_K, 0, 0, DROP));
    out
}

/// UDP datagrams the kernel has dropped because a socket's queue was
/// full (`RcvbufErrors` of IPv4 and IPv6 in `/proc/net/snmp` and
/// `/proc/net/snmp6`), for the whole network namespace: on a resolver's
/// host, its own listening sockets. Datagrams this filter drops are not
/// among them. `None` where the files cannot be read.
pub fn queue_overflows() -> Option<u64> {
    let v4 = std::fs::read_to_string("/proc/net/snmp").ok().and_then(|t| {
        // A line of names, then a line of values, both starting "Udp:".
        let mut lines = t.lines().filter(|l| l.starts_with("Udp:"));
        let (names, values) = (lines.next()?, lines.next()?);
        let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
        values.split_whitespace().nth(i)?.parse::<u64>().ok()
    });
    let v6 = std::fs::read_to_string("/proc/net/snmp6").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("Udp6RcvbufErrors"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    });
    match (v4, v6) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Arc;
    use std::time::Duration;

    async fn udp(addr: &str) -> Option<UdpSocket> {
        UdpSocket::bind(addr.parse::<SocketAddr>().ok()?).await.ok()
    }

    /// Which of `senders` got a datagram through to `rx`.
    async fn delivered(rx: &UdpSocket, senders: &[&UdpSocket]) -> Vec<bool> {
        let to = rx.local_addr().expect("bound");
        for (i, s) in senders.iter().enumerate() {
            s.send_to(&[i as u8], to).await.expect("send");
        }
        let mut got = vec![false; senders.len()];
        let mut buf = [0u8; 16];
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), rx.recv(&mut buf)).await {
            if n == 1
                && let Some(g) = got.get_mut(usize::from(buf[0]))
            {
                *g = true;
            }
        }
        got
    }

    #[tokio::test]
    async fn blocked_ipv4_networks_are_dropped_in_the_kernel_until_their_time_is_over() {
        let rx = Arc::new(udp("127.0.0.1:0").await.expect("bind"));
        let a = udp("127.0.1.5:0").await.expect("bind a");
        let b = udp("127.0.2.5:0").await.expect("bind b");
        let c = udp("127.0.3.9:0").await.expect("bind c");
        let filter = KernelFilter::new(24, 56, 1000, 16);
        filter.register(&rx);
        assert_eq!(delivered(&rx, &[&a, &b, &c]).await, [true, true, true]);
        // A different address of a's /24 stands for the whole network.
        let added = filter.update(&["127.0.1.200".parse().expect("ip"), "127.0.3.1".parse().expect("ip")], 5000);
        assert_eq!((added, filter.len()), (2, 2));
        assert_eq!(delivered(&rx, &[&a, &b, &c]).await, [false, true, false]);
        // Again: nothing new, the time kept.
        assert_eq!(filter.update(&["127.0.1.1".parse().expect("ip")], 5500), 0);
        // A socket registered later gets the filter too.
        let rx2 = Arc::new(udp("127.0.0.2:0").await.expect("bind"));
        filter.register(&rx2);
        assert_eq!(delivered(&rx2, &[&a, &b]).await, [false, true]);
        // Time over: let in again, the filter taken off.
        filter.update(&[], 6001);
        assert!(filter.is_empty());
        assert_eq!(delivered(&rx, &[&a, &b, &c]).await, [true, true, true]);
    }

    #[tokio::test]
    async fn blocked_ipv6_networks_are_dropped_and_others_pass() {
        let Some(rx) = udp("[::1]:0").await else { return };
        let rx = Arc::new(rx);
        let tx = udp("[::1]:0").await.expect("bind");
        for len in [56, 64, 127, 128, 0] {
            let filter = KernelFilter::new(24, len, 1000, 16);
            filter.register(&rx);
            // Another network of that length passes, ::1's is dropped.
            filter.update(&["2001:db8::1".parse().expect("ip")], 1);
            assert_eq!(delivered(&rx, &[&tx]).await, [len != 0], "len {len}");
            filter.update(&["::1".parse().expect("ip")], 2);
            assert_eq!(delivered(&rx, &[&tx]).await, [false], "len {len}");
            filter.update(&[], 5000);
            assert_eq!(delivered(&rx, &[&tx]).await, [true], "len {len}");
        }
    }

    #[tokio::test]
    async fn a_full_queue_is_counted_and_the_filter_is_not() {
        let Some(before) = queue_overflows() else { return };
        let rx = Arc::new(udp("127.0.0.1:0").await.expect("bind"));
        SockRef::from(&*rx).set_recv_buffer_size(4096).expect("rcvbuf");
        let tx = udp("127.0.4.1:0").await.expect("bind");
        let to = rx.local_addr().expect("bound");
        for _ in 0..200 {
            tx.send_to(&[0; 512], to).await.expect("send");
        }
        let overflowed = queue_overflows().expect("readable") - before;
        assert!(overflowed >= 100, "{overflowed} counted of about 190 dropped");
        // What the filter drops is not a full queue.
        let filter = KernelFilter::new(24, 56, 1000, 16);
        let rx2 = Arc::new(udp("127.0.0.1:0").await.expect("bind"));
        filter.register(&rx2);
        filter.update(&["127.0.4.1".parse().expect("ip")], 1);
        let before = queue_overflows().expect("readable");
        for _ in 0..50 {
            tx.send_to(&[0; 8], rx2.local_addr().expect("bound")).await.expect("send");
        }
        // Other tests may overflow their own queues meanwhile; ours adds none.
        assert!(queue_overflows().expect("readable") - before < 50);
    }

    #[test]
    fn the_filter_holds_at_most_its_maximum() {
        let filter = KernelFilter::new(24, 56, 1000, 3);
        let ips: Vec<IpAddr> = (0..10).map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, i, 1))).collect();
        assert_eq!(filter.update(&ips, 1), 3);
        assert_eq!(filter.len(), 3);
        // The largest program fits the kernel's limit.
        let filter = KernelFilter::new(24, 128, 1000, MAX_NETWORKS);
        let ips: Vec<IpAddr> =
            (0..MAX_NETWORKS as u128).map(|i| IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | i))).collect();
        filter.update(&ips, 1);
        let st = filter.state();
        assert!(filter.program(&st.blocked).len() <= 4096);
    }
}
