//! Discovery of Designated Resolvers (RFC 9462): `_dns.resolver.arpa SVCB`
//! records that point clients at our encrypted doors.

use std::net::SocketAddr;

use proto::{Name, Record, rtype};

/// The name clients ask (RFC 9462 §4).
pub const DDR_NAME: &str = "_dns.resolver.arpa";

/// SVCB record data (RFC 9460): priority, target, then the parameters in
/// ascending key order: alpn (1), port (3), dohpath (7).
fn svcb(priority: u16, target: &Name, alpn: &[&str], port: u16, dohpath: Option<&str>) -> Vec<u8> {
    let mut out = priority.to_be_bytes().to_vec();
    out.extend_from_slice(target.as_wire());
    let mut ids = Vec::new();
    for a in alpn {
        ids.push(a.len() as u8);
        ids.extend_from_slice(a.as_bytes());
    }
    for (key, value) in [(1u16, ids), (3, port.to_be_bytes().to_vec())] {
        out.extend_from_slice(&key.to_be_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(&value);
    }
    if let Some(path) = dohpath {
        out.extend_from_slice(&7u16.to_be_bytes());
        out.extend_from_slice(&(path.len() as u16).to_be_bytes());
        out.extend_from_slice(path.as_bytes());
    }
    out
}

/// The DDR records for the bound DoT, DoH and DoQ doors, naming `target`
/// (the name in their certificate).
pub fn records(
    target: &Name,
    dot: &[SocketAddr],
    doh: &[SocketAddr],
    doq: &[SocketAddr],
    doh_path: &str,
    doh3: bool,
) -> Vec<Record> {
    let Ok(owner) = Name::from_ascii(DDR_NAME) else { return Vec::new() };
    let mut out = Vec::new();
    let mut priority = 1;
    if let Some(a) = dot.first() {
        out.push((priority, svcb(priority, target, &["dot"], a.port(), None)));
        priority += 1;
    }
    if let Some(a) = doh.first() {
        let template = format!("{doh_path}{{?dns}}");
        let alpn: &[&str] = if doh3 { &["h2", "http/1.1", "h3"] } else { &["h2", "http/1.1"] };
        out.push((priority, svcb(priority, target, alpn, a.port(), Some(&template))));
        priority += 1;
    }
    if let Some(a) = doq.first() {
        out.push((priority, svcb(priority, target, &["doq"], a.port(), None)));
    }
    out.into_iter()
        .map(|(_, rdata)| Record { name: owner.clone(), rtype: rtype::SVCB, class: 1, ttl: 300, rdata: rdata.into() })
        .collect()
}
