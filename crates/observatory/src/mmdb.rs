//! A small writer of MaxMind DB files (format 2.0), for the tests, the
//! demo's lab internet and the simulator: networks mapped to a country
//! code and an autonomous system. Production databases (GeoLite2,
//! ip-location-db) are made elsewhere; this writes just enough of the
//! format for [`crate::geo`] and the `maxminddb` reader to take.
//!
//! The tree is an IPv6 one with 32-bit records; IPv4 networks live under
//! `::/96`, where readers look for them.

use std::net::IpAddr;

/// One network's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// ISO 3166-1 alpha-2 code, written as `country.iso_code`.
    pub country: Option<String>,
    /// Written as `autonomous_system_number`.
    pub asn: Option<u32>,
    /// Written as `autonomous_system_organization`.
    pub org: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Rec {
    Empty,
    Node(u32),
    Data(u32),
}

/// Builds a database in memory; [`Writer::finish`] gives its bytes.
#[derive(Debug)]
pub struct Writer {
    nodes: Vec<[Rec; 2]>,
    data: Vec<u8>,
    database_type: String,
}

impl Writer {
    /// An empty database of this type (`GeoLite2-Country`, `GeoLite2-ASN`...).
    pub fn new(database_type: &str) -> Writer {
        Writer { nodes: vec![[Rec::Empty, Rec::Empty]], data: Vec::new(), database_type: database_type.to_string() }
    }

    /// Maps `addr/prefix` to `entry`. A network inside one inserted before
    /// takes precedence over it for its own addresses.
    pub fn insert(&mut self, addr: IpAddr, prefix: u8, entry: &Entry) {
        let (bits, len) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 96 + prefix.min(32)),
            IpAddr::V6(a) => (u128::from(a), prefix.min(128)),
        };
        let offset = self.data.len() as u32;
        encode_entry(&mut self.data, entry);
        if len == 0 {
            self.nodes[0] = [Rec::Data(offset), Rec::Data(offset)];
            return;
        }
        let mut node = 0usize;
        for depth in 0..len {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth + 1 == len {
                self.nodes[node][bit] = Rec::Data(offset);
                break;
            }
            node = match self.nodes[node][bit] {
                Rec::Node(n) => n as usize,
                // A covering network is pushed down both sides.
                inherited @ (Rec::Empty | Rec::Data(_)) => {
                    let n = self.nodes.len();
                    self.nodes.push([inherited, inherited]);
                    self.nodes[node][bit] = Rec::Node(n as u32);
                    n
                }
            };
        }
    }

    /// The database file's bytes.
    pub fn finish(&self) -> Vec<u8> {
        let count = self.nodes.len() as u32;
        let value = |r: Rec| match r {
            Rec::Empty => count,
            Rec::Node(n) => n,
            Rec::Data(off) => count + 16 + off,
        };
        let mut out = Vec::with_capacity(self.nodes.len() * 8 + 16 + self.data.len() + 256);
        for [l, r] in &self.nodes {
            out.extend_from_slice(&value(*l).to_be_bytes());
            out.extend_from_slice(&value(*r).to_be_bytes());
        }
        out.extend_from_slice(&[0u8; 16]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
        map_header(&mut out, 9);
        string(&mut out, "node_count");
        uint(&mut out, 6, u64::from(count));
        string(&mut out, "record_size");
        uint(&mut out, 5, 32);
        string(&mut out, "ip_version");
        uint(&mut out, 5, 6);
        string(&mut out, "database_type");
        string(&mut out, &self.database_type);
        string(&mut out, "languages");
        control(&mut out, 11, 1);
        string(&mut out, "en");
        string(&mut out, "binary_format_major_version");
        uint(&mut out, 5, 2);
        string(&mut out, "binary_format_minor_version");
        uint(&mut out, 5, 0);
        string(&mut out, "build_epoch");
        uint(&mut out, 9, 1_700_000_000);
        string(&mut out, "description");
        map_header(&mut out, 1);
        string(&mut out, "en");
        string(&mut out, "onedot test database");
        out
    }
}

fn encode_entry(out: &mut Vec<u8>, e: &Entry) {
    let n = usize::from(e.country.is_some()) + usize::from(e.asn.is_some()) + usize::from(e.org.is_some());
    map_header(out, n);
    if let Some(c) = &e.country {
        string(out, "country");
        map_header(out, 1);
        string(out, "iso_code");
        string(out, c);
    }
    if let Some(a) = e.asn {
        string(out, "autonomous_system_number");
        uint(out, 6, u64::from(a));
    }
    if let Some(o) = &e.org {
        string(out, "autonomous_system_organization");
        string(out, o);
    }
}

/// A control byte (and its size extension) for `kind` (1..=15) and `size`.
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (low, ext): (u8, Vec<u8>) = match size {
        0..=28 => (size as u8, vec![]),
        29..=284 => (29, vec![(size - 29) as u8]),
        285..=65_820 => (30, ((size - 285) as u16).to_be_bytes().to_vec()),
        _ => (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec()),
    };
    if kind <= 7 {
        out.push((kind << 5) | low);
    } else {
        out.push(low);
        out.push(kind - 7);
    }
    out.extend_from_slice(&ext);
}

fn map_header(out: &mut Vec<u8>, pairs: usize) {
    control(out, 7, pairs);
}

fn string(out: &mut Vec<u8>, s: &str) {
    control(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// An unsigned integer of type `kind` (5 uint16, 6 uint32, 9 uint64) in
/// as few bytes as it needs.
fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

/// The lab's map: `127.(i+1).a.0/24` is country `countries[i]` and AS
/// `64512 + 100 × (i + 1) + a`, so tests and the demo can pose as clients from many
/// countries and networks on loopback. Returns the database's bytes (both
/// country and ASN in one file, which serves as either database).
pub fn lab_database(countries: &[&str], networks_per_country: u8) -> Vec<u8> {
    let mut w = Writer::new("onedot-lab-geo");
    for (c, code) in countries.iter().enumerate() {
        for a in 0..networks_per_country {
            let net = std::net::Ipv4Addr::new(127, c as u8 + 1, a, 0);
            let entry = Entry {
                country: Some((*code).to_string()),
                asn: Some(64_512 + u32::from(c as u8 + 1) * 100 + u32::from(a)),
                org: Some(format!("Lab network {code}-{a}")),
            };
            w.insert(IpAddr::V4(net), 24, &entry);
        }
    }
    w.finish()
}
