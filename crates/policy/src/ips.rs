//! Address prefixes with a rule each (RPZ `rpz-ip` triggers), matched
//! longest prefix first.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::IpAddr;

use crate::names::RuleId;

/// Prefix tables, one map per prefix length, longest first.
#[derive(Debug, Default)]
pub(crate) struct IpTable {
    v4: Vec<(u8, HashMap<u32, RuleId>)>,
    v6: Vec<(u8, HashMap<u128, RuleId>)>,
    len: usize,
}

fn mask4(bits: u8) -> u32 {
    if bits == 0 { 0 } else { u32::MAX << (32 - bits as u32) }
}

fn mask6(bits: u8) -> u128 {
    if bits == 0 { 0 } else { u128::MAX << (128 - bits as u32) }
}

fn slot<K>(list: &mut Vec<(u8, HashMap<K, RuleId>)>, bits: u8) -> &mut HashMap<K, RuleId> {
    let i = list.iter().position(|(b, _)| *b <= bits).unwrap_or(list.len());
    if list.get(i).is_none_or(|(b, _)| *b != bits) {
        list.insert(i, (bits, HashMap::new()));
    }
    // Cannot fail: `i` is an entry's position, or the one just inserted.
    #[allow(clippy::indexing_slicing)]
    let (_, map) = &mut list[i];
    map
}

impl IpTable {
    /// Prefixes stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `addr/bits` (the first rule for a prefix wins).
    pub(crate) fn insert(&mut self, addr: IpAddr, bits: u8, rule: RuleId) {
        let new = match addr {
            IpAddr::V4(a) => {
                let bits = bits.min(32);
                slot(&mut self.v4, bits).entry(u32::from(a) & mask4(bits)).or_insert(rule) == &rule
            }
            IpAddr::V6(a) => {
                let bits = bits.min(128);
                slot(&mut self.v6, bits).entry(u128::from(a) & mask6(bits)).or_insert(rule) == &rule
            }
        };
        self.len += new as usize;
    }

    /// The rule of the longest prefix containing `addr`, and that prefix's
    /// length.
    pub(crate) fn lookup(&self, addr: IpAddr) -> Option<(u8, RuleId)> {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().find_map(|(bits, m)| m.get(&(a & mask4(*bits))).map(|r| (*bits, *r)))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().find_map(|(bits, m)| m.get(&(a & mask6(*bits))).map(|r| (*bits, *r)))
            }
        }
    }

    /// Every prefix as text (`192.0.2.0/24`).
    pub(crate) fn prefixes(&self) -> impl Iterator<Item = String> + '_ {
        let v4 =
            self.v4.iter().flat_map(|(b, m)| m.keys().map(move |k| format!("{}/{b}", std::net::Ipv4Addr::from(*k))));
        let v6 =
            self.v6.iter().flat_map(|(b, m)| m.keys().map(move |k| format!("{}/{b}", std::net::Ipv6Addr::from(*k))));
        v4.chain(v6)
    }
}

/// Parses an RPZ `rpz-ip` trigger's labels (before `.rpz-ip`), e.g.
/// `24.0.2.0.192` or `128.1.zz.db8.2001`, into a prefix.
pub(crate) fn parse_rpz_ip(labels: &str) -> Result<(IpAddr, u8), String> {
    let mut parts = labels.split('.');
    let bits: u8 =
        parts.next().and_then(|b| b.parse().ok()).ok_or_else(|| format!("bad prefix length in {labels:?}"))?;
    let rest: Vec<&str> = parts.collect();
    if rest.len() == 4 && rest.iter().all(|p| p.parse::<u8>().is_ok()) {
        if bits > 32 {
            return Err(format!("IPv4 prefix length {bits} > 32"));
        }
        let text = rest.iter().rev().copied().collect::<Vec<_>>().join(".");
        let a: std::net::Ipv4Addr = text.parse().map_err(|_| format!("bad IPv4 address in {labels:?}"))?;
        return Ok((IpAddr::V4(a), bits));
    }
    if bits > 128 {
        return Err(format!("IPv6 prefix length {bits} > 128"));
    }
    let words: Vec<&str> = rest.iter().rev().map(|w| if *w == "zz" { "" } else { w }).collect();
    let mut text = words.join(":");
    if text.starts_with(':') {
        text.insert(0, ':');
    }
    if text.ends_with(':') {
        text.push(':');
    }
    let a: std::net::Ipv6Addr = text.parse().map_err(|_| format!("bad IPv6 address in {labels:?}"))?;
    Ok((IpAddr::V6(a), bits))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mut t = IpTable::default();
        t.insert("192.0.2.0".parse().expect("ip"), 24, 1);
        t.insert("192.0.2.66".parse().expect("ip"), 32, 2);
        t.insert("2001:db8::".parse().expect("ip"), 32, 3);
        assert_eq!(t.lookup("192.0.2.66".parse().expect("ip")), Some((32, 2)));
        assert_eq!(t.lookup("192.0.2.67".parse().expect("ip")), Some((24, 1)));
        assert_eq!(t.lookup("192.0.3.1".parse().expect("ip")), None);
        assert_eq!(t.lookup("2001:db8:bad::1".parse().expect("ip")), Some((32, 3)));
        assert_eq!(t.len(), 3);
        assert_eq!(t.prefixes().count(), 3);
    }

    #[test]
    fn rpz_ip_labels() {
        assert_eq!(parse_rpz_ip("32.1.2.0.192").expect("v4"), ("192.0.2.1".parse().expect("ip"), 32));
        assert_eq!(parse_rpz_ip("48.zz.bad.db8.2001").expect("v6"), ("2001:db8:bad::".parse().expect("ip"), 48));
        assert_eq!(parse_rpz_ip("128.1.zz.db8.2001").expect("v6"), ("2001:db8::1".parse().expect("ip"), 128));
        assert!(parse_rpz_ip("33.1.2.0.192").is_err());
        assert!(parse_rpz_ip("x.1.2.0.192").is_err());
    }
}
