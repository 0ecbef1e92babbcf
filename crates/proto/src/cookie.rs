//! DNS Cookies (RFC 7873) with interoperable server cookies (RFC 9018).
//!
//! A server cookie is 16 octets: version 1, three reserved octets, a 32-bit
//! Unix timestamp, and the first 8 octets of SipHash-2-4 keyed with the
//! server secret over the client cookie, version, reserved, timestamp and
//! the client's address. Any server holding the same secret (an anycast
//! fleet, whatever its software) accepts the cookies of the others.
//!
//! Everything here works on fixed arrays and borrowed slices: no allocation,
//! so cookies can be checked on the cache-hit path.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher24;

use crate::wire::{self, HEADER_LEN, read_u16, rtype};

/// The extended RCODE BADCOOKIE (RFC 7873 §8): 7 in the header, 1 in the
/// OPT record's extended bits.
pub const BADCOOKIE: u16 = 23;
/// Length of a client cookie.
pub const CLIENT_LEN: usize = 8;
/// Length of an RFC 9018 server cookie.
pub const SERVER_LEN: usize = 16;
/// A server cookie older than this is no longer accepted (RFC 9018 §4.3:
/// one hour).
pub const MAX_AGE: u32 = 3600;
/// A server cookie this far in the future is still accepted (clock skew
/// across a fleet, RFC 9018 §4.3: five minutes).
pub const MAX_SKEW: u32 = 300;
/// A valid server cookie older than this is replaced by a fresh one in the
/// response (RFC 9018 §4.3: half an hour).
pub const REFRESH_AFTER: u32 = 1800;

/// The COOKIE option of a message, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieView<'a> {
    /// The client cookie.
    pub client: [u8; CLIENT_LEN],
    /// The server cookie, empty when the client has none yet (8 to 32
    /// octets otherwise).
    pub server: &'a [u8],
}

/// Why a COOKIE option is unusable: answer FORMERR (RFC 7873 §5.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed COOKIE option")]
pub struct MalformedCookie;

impl<'a> CookieView<'a> {
    /// Reads the option's data: 8 octets (client cookie only) or 16 to 40
    /// (client and server cookie).
    pub fn parse(data: &'a [u8]) -> Result<CookieView<'a>, MalformedCookie> {
        let len = data.len();
        if len != CLIENT_LEN && !(16..=40).contains(&len) {
            return Err(MalformedCookie);
        }
        let (client, server) = data.split_first_chunk::<CLIENT_LEN>().ok_or(MalformedCookie)?;
        Ok(CookieView { client: *client, server })
    }
}

/// The 8-octet hash of RFC 9018 §4.4 over `head` (version, reserved,
/// timestamp: the cookie's first 8 octets).
fn hash(secret: &[u8; 16], client: &[u8; CLIENT_LEN], head: &[u8], ip: IpAddr) -> [u8; 8] {
    let mut h = SipHasher24::new_with_key(secret);
    h.write(client);
    h.write(head);
    match ip {
        IpAddr::V4(a) => h.write(&a.octets()),
        IpAddr::V6(a) => h.write(&a.octets()),
    }
    // RFC 9018's octet order of the SipHash output is little-endian.
    h.finish().to_le_bytes()
}

/// A fresh version 1 server cookie for `client` at `ip`, stamped `now`.
pub fn server_cookie(secret: &[u8; 16], client: &[u8; CLIENT_LEN], ip: IpAddr, now: u32) -> [u8; SERVER_LEN] {
    let mut out = [0u8; SERVER_LEN];
    out[0] = 1;
    out[4..8].copy_from_slice(&now.to_be_bytes());
    let h = hash(secret, client, &out[..8], ip);
    out[8..].copy_from_slice(&h);
    out
}

/// What a server cookie the client sent is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCookie {
    /// Made by us with one of the secrets, for this client, within its
    /// lifetime; `stamped` is its timestamp.
    Valid {
        /// The cookie's timestamp.
        stamped: u32,
    },
    /// Anything else: another version or length, another client or
    /// address, a secret we no longer hold, expired or from the future.
    Invalid,
}

/// Checks a server cookie against each secret in `secrets` (the current
/// one first, then the previous one) at time `now`. The reserved octets are
/// hashed as received (RFC 9018 §4.2).
pub fn check_server_cookie(
    secrets: &[[u8; 16]],
    client: &[u8; CLIENT_LEN],
    server: &[u8],
    ip: IpAddr,
    now: u32,
) -> ServerCookie {
    let Some((head, mac)) = server.split_first_chunk::<8>().filter(|_| server.len() == SERVER_LEN) else {
        return ServerCookie::Invalid;
    };
    let [version, _, _, _, t0, t1, t2, t3] = *head;
    if version != 1 {
        return ServerCookie::Invalid;
    }
    let stamped = u32::from_be_bytes([t0, t1, t2, t3]);
    // Serial-number arithmetic (RFC 1982), so 2106 is no cliff.
    let age = now.wrapping_sub(stamped);
    if age > MAX_AGE && stamped.wrapping_sub(now) > MAX_SKEW {
        return ServerCookie::Invalid;
    }
    if secrets.iter().any(|s| hash(s, client, head, ip) == mac) {
        ServerCookie::Valid { stamped }
    } else {
        ServerCookie::Invalid
    }
}

/// Whether a valid cookie stamped `stamped` should be replaced by a fresh
/// one in the response.
pub fn needs_refresh(stamped: u32, now: u32) -> bool {
    let age = now.wrapping_sub(stamped);
    age > REFRESH_AFTER && age <= MAX_AGE
}

/// Where the OPT record of a message is: the offset of its RDLENGTH and the
/// end of its data. `None` when the message has no OPT or cannot be walked.
/// The walk is bounded by the record counts and the message length.
pub fn find_opt(msg: &[u8]) -> Option<(usize, usize)> {
    let qd = read_u16(msg, 4)? as usize;
    let records = [6, 8, 10].iter().map(|&o| read_u16(msg, o).map(usize::from)).sum::<Option<usize>>()?;
    let mut p = HEADER_LEN;
    for _ in 0..qd {
        p = wire::skip_name(msg, p)? + 4;
    }
    for _ in 0..records {
        p = wire::skip_name(msg, p)?;
        let t = read_u16(msg, p)?;
        let rdlen = read_u16(msg, p + 8)? as usize;
        let end = p + 10 + rdlen;
        if end > msg.len() {
            return None;
        }
        if t == rtype::OPT {
            return Some((p + 8, end));
        }
        p = end;
    }
    None
}

/// Appends option `code` with `data` to the OPT record of the message in
/// `buf` (of length `len`), when the OPT is its last record and the result
/// fits in `limit` octets. Returns the new length, or `None` (message left
/// as it was).
pub fn append_option(buf: &mut Vec<u8>, len: usize, code: u16, data: &[u8], limit: usize) -> Option<usize> {
    let msg = buf.get(..len)?;
    let (rdlen_at, end) = find_opt(msg)?;
    let grown = len + 4 + data.len();
    if end != len || grown > limit {
        return None;
    }
    let rdlen = read_u16(msg, rdlen_at)? as usize + 4 + data.len();
    let rdlen = u16::try_from(rdlen).ok()?;
    buf.truncate(len);
    buf.extend_from_slice(&code.to_be_bytes());
    buf.extend_from_slice(&(data.len() as u16).to_be_bytes());
    buf.extend_from_slice(data);
    buf.get_mut(rdlen_at..rdlen_at + 2)?.copy_from_slice(&rdlen.to_be_bytes());
    Some(grown)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    fn client_of(option: &[u8]) -> [u8; 8] {
        CookieView::parse(option).expect("cookie").client
    }

    // The test vectors of RFC 9018, Appendix A.
    const SECRET: [u8; 16] =
        [0xe5, 0xe9, 0x73, 0xe5, 0xa6, 0xb2, 0xa4, 0x3f, 0x48, 0xe7, 0xdc, 0x84, 0x9e, 0x37, 0xbf, 0xcf];
    const CLIENT_1: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 100));
    const CLIENT_2: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 203));
    const CLIENT_6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x220, 0x1, 0x59de, 0xd0f4, 0x8769, 0x82b8));

    #[test]
    fn rfc9018_a1_learning_a_new_server_cookie() {
        let client = client_of(&hex("2464c4abcf10c957"));
        let server = server_cookie(&SECRET, &client, CLIENT_1, 1559731985);
        assert_eq!(server.to_vec(), hex("010000005cf79f111f8130c3eee29480"));
    }

    #[test]
    fn rfc9018_a2_the_same_client_renewing() {
        let option = hex("2464c4abcf10c957010000005cf79f111f8130c3eee29480");
        let c = CookieView::parse(&option).expect("cookie");
        let at = 1559731985 + 10;
        assert_eq!(
            check_server_cookie(&[SECRET], &c.client, c.server, CLIENT_1, at),
            ServerCookie::Valid { stamped: 1559731985 }
        );
        // 40 minutes later it is still valid but due for renewal.
        assert!(needs_refresh(1559731985, 1559734385));
        let renewed = server_cookie(&SECRET, &c.client, CLIENT_1, 1559734385);
        assert_eq!(renewed.to_vec(), hex("010000005cf7a871d4a564a1442aca77"));
    }

    #[test]
    fn rfc9018_a3_another_client_with_reserved_octets_set() {
        let option = hex("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5");
        let c = CookieView::parse(&option).expect("cookie");
        assert_eq!(
            check_server_cookie(&[SECRET], &c.client, c.server, CLIENT_2, 1559727985 + 60),
            ServerCookie::Valid { stamped: 1559727985 }
        );
        let renewed = server_cookie(&SECRET, &c.client, CLIENT_2, 1559734700);
        assert_eq!(renewed.to_vec(), hex("010000005cf7a9acf73a7810aca2381e"));
    }

    #[test]
    fn rfc9018_a4_ipv6_with_a_rolled_over_secret() {
        let old: [u8; 16] = hex("dd3bdf9344b678b185a6f5cb60fca715").try_into().expect("16");
        let new: [u8; 16] = hex("445536bcd2513298075a5d379663c962").try_into().expect("16");
        let option = hex("22681ab97d52c298010000005cf7c57926556bd0934c72f8");
        let c = CookieView::parse(&option).expect("cookie");
        let now = 1559741961;
        assert_eq!(check_server_cookie(&[new], &c.client, c.server, CLIENT_6, now), ServerCookie::Invalid);
        assert_eq!(
            check_server_cookie(&[new, old], &c.client, c.server, CLIENT_6, now),
            ServerCookie::Valid { stamped: 1559741817 }
        );
        let renewed = server_cookie(&new, &c.client, CLIENT_6, now);
        assert_eq!(renewed.to_vec(), hex("010000005cf7c609a6bb79d16625507a"));
    }

    #[test]
    fn cookies_expire_and_bind_to_the_address() {
        let client = [7u8; 8];
        let t = 2_000_000_000;
        let s = server_cookie(&SECRET, &client, CLIENT_1, t);
        let check = |ip, now| check_server_cookie(&[SECRET], &client, &s, ip, now);
        assert_eq!(check(CLIENT_1, t + MAX_AGE), ServerCookie::Valid { stamped: t });
        assert_eq!(check(CLIENT_1, t + MAX_AGE + 1), ServerCookie::Invalid);
        assert_eq!(check(CLIENT_1, t - MAX_SKEW), ServerCookie::Valid { stamped: t });
        assert_eq!(check(CLIENT_1, t - MAX_SKEW - 1), ServerCookie::Invalid);
        assert_eq!(check(CLIENT_2, t), ServerCookie::Invalid);
        let mut other = s;
        other[0] = 2;
        assert_eq!(check_server_cookie(&[SECRET], &client, &other, CLIENT_1, t), ServerCookie::Invalid);
        assert_eq!(check_server_cookie(&[SECRET], &client, &s[..12], CLIENT_1, t), ServerCookie::Invalid);
    }

    #[test]
    fn option_lengths() {
        assert!(CookieView::parse(&[0; 8]).is_ok());
        assert!(CookieView::parse(&[0; 24]).is_ok());
        assert!(CookieView::parse(&[0; 40]).is_ok());
        for bad in [0, 7, 9, 15, 41] {
            assert_eq!(CookieView::parse(&vec![0; bad]), Err(MalformedCookie), "length {bad}");
        }
    }

    #[test]
    fn appends_to_the_opt_record() {
        let mut buf = Vec::new();
        let mut w = crate::MessageWriter::new(&mut buf, 1, wire::flags::QR);
        w.question(b"\x03www\x04test\x00", 1, 1);
        w.opt(1232, false, 0, &[]);
        let len = w.finish();
        let grown = append_option(&mut buf, len, wire::OPT_COOKIE, &[9; 24], 1232).expect("fits");
        assert_eq!(grown, len + 28);
        let m = crate::Message::parse(&buf).expect("parses");
        assert!(m.edns.is_some());
        let (rdlen_at, end) = find_opt(&buf).expect("opt");
        assert_eq!(end, grown);
        assert_eq!(read_u16(&buf, rdlen_at), Some(28));
        // Too big for the limit: left alone.
        assert_eq!(append_option(&mut buf, grown, wire::OPT_COOKIE, &[9; 24], grown + 10), None);
        assert_eq!(buf.len(), grown);
    }
}
