//! Data answered without recursion: records from the config, and the
//! special-use names of RFC 6761 that a resolver answers itself.

use std::collections::HashMap;

use proto::{Name, Record, rtype};

/// Special-use domains answered locally (when enabled): `localhost.` with
/// loopback addresses; `test.`, `invalid.`, `onion.` (RFC 7686) and
/// `home.arpa.` (RFC 8375) as NXDOMAIN, as Unbound and Knot Resolver do.
const NXDOMAIN_ZONES: &[&str] = &["test", "invalid", "onion", "home.arpa"];

/// A local answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAnswer {
    /// NOERROR (0) or NXDOMAIN (3).
    pub rcode: u16,
    /// Answer records.
    pub answer: Vec<Record>,
}

/// Local records and special-use handling.
#[derive(Debug, Clone, Default)]
pub struct LocalData {
    by_name: HashMap<Name, Vec<Record>>,
    special_use: bool,
    nxdomain_zones: Vec<Name>,
}

impl LocalData {
    /// Local `records` (answered as given, names below them are resolved
    /// normally); `special_use` turns on the RFC 6761 answers.
    pub fn new(records: Vec<Record>, special_use: bool) -> LocalData {
        let mut by_name: HashMap<Name, Vec<Record>> = HashMap::new();
        for r in records {
            by_name.entry(r.name.clone()).or_default().push(r);
        }
        let nxdomain_zones = NXDOMAIN_ZONES.iter().filter_map(|z| Name::from_ascii(z).ok()).collect();
        LocalData { by_name, special_use, nxdomain_zones }
    }

    /// A copy with more records.
    pub fn with_records(&self, records: Vec<Record>) -> LocalData {
        let mut out = self.clone();
        for r in records {
            out.by_name.entry(r.name.clone()).or_default().push(r);
        }
        out
    }

    /// The local answer for (qname, qtype), or `None` to resolve it.
    pub fn answer(&self, qname: &Name, qtype: u16) -> Option<LocalAnswer> {
        if let Some(recs) = self.by_name.get(qname) {
            let mut answer: Vec<Record> =
                recs.iter().filter(|r| r.rtype == qtype || qtype == rtype::ANY).cloned().collect();
            if answer.is_empty() {
                answer = recs.iter().filter(|r| r.rtype == rtype::CNAME).cloned().collect();
                self.follow_cname(&mut answer, qtype);
            }
            return Some(LocalAnswer { rcode: 0, answer });
        }
        if !self.special_use {
            return None;
        }
        let localhost = Name::from_ascii("localhost").ok()?;
        if qname.is_subdomain_of(&localhost) {
            let rdata: Option<Box<[u8]>> = match qtype {
                rtype::A => Some(Box::new([127, 0, 0, 1])),
                rtype::AAAA => Some(std::net::Ipv6Addr::LOCALHOST.octets().into()),
                _ => None,
            };
            let answer = rdata
                .map(|rdata| Record { name: qname.clone(), rtype: qtype, class: 1, ttl: 86400, rdata })
                .into_iter()
                .collect();
            return Some(LocalAnswer { rcode: 0, answer });
        }
        if self.nxdomain_zones.iter().any(|z| qname.is_subdomain_of(z)) {
            return Some(LocalAnswer { rcode: 3, answer: Vec::new() });
        }
        None
    }
}

impl LocalData {
    /// A local CNAME whose target is local data too is followed here, as an
    /// authority follows a CNAME inside its own zone (RFC 1034 §4.3.2), at
    /// most [`MAX_LOCAL_CNAMES`] links and never round a loop; a target that
    /// is not local data ends the answer at the CNAME, and the client's stub
    /// asks for the target.
    fn follow_cname(&self, answer: &mut Vec<Record>, qtype: u16) {
        for _ in 0..MAX_LOCAL_CNAMES {
            let Some(target) =
                answer.last().filter(|r| r.rtype == rtype::CNAME).and_then(|r| Name::from_wire(&r.rdata).ok())
            else {
                return;
            };
            if answer.iter().any(|r| r.name == target) {
                return;
            }
            let Some(recs) = self.by_name.get(&target) else { return };
            let mut next: Vec<Record> = recs.iter().filter(|r| r.rtype == qtype).cloned().collect();
            if next.is_empty() {
                next = recs.iter().filter(|r| r.rtype == rtype::CNAME).cloned().collect();
            }
            if next.is_empty() {
                return;
            }
            answer.append(&mut next);
        }
    }
}

/// CNAME links followed inside local data.
const MAX_LOCAL_CNAMES: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_use_and_local_records() {
        let rec = proto::zonefile::parse_records("nas.home.arpa. 60 IN A 192.0.2.8", None).expect("record");
        let local = LocalData::new(rec, true);
        let nas = Name::from_ascii("nas.home.arpa").expect("name");
        assert_eq!(local.answer(&nas, rtype::A).map(|a| a.answer.len()), Some(1));
        assert_eq!(local.answer(&nas, rtype::AAAA).map(|a| a.answer.len()), Some(0));
        let other = Name::from_ascii("tv.home.arpa").expect("name");
        assert_eq!(local.answer(&other, rtype::A).map(|a| a.rcode), Some(3));
        let www = Name::from_ascii("www.example.test").expect("name");
        assert_eq!(local.answer(&www, rtype::A).map(|a| a.rcode), Some(3));
        let off = LocalData::new(Vec::new(), false);
        assert_eq!(off.answer(&www, rtype::A), None);
        let lh = Name::from_ascii("localhost").expect("name");
        assert_eq!(local.answer(&lh, rtype::A).map(|a| a.answer[0].rdata.to_vec()), Some(vec![127, 0, 0, 1]));
    }

    #[test]
    fn local_cnames_are_followed_inside_local_data_only() {
        let rec = proto::zonefile::parse_records(
            "alias.lan. 60 IN CNAME box.lan.\n\
             box.lan. 60 IN A 192.0.2.8\n\
             out.lan. 60 IN CNAME www.example.net.\n\
             loop1.lan. 60 IN CNAME loop2.lan.\n\
             loop2.lan. 60 IN CNAME loop1.lan.",
            None,
        )
        .expect("records");
        let local = LocalData::new(rec, false);
        let types = |name: &str, qtype| {
            let name = Name::from_ascii(name).expect("name");
            local.answer(&name, qtype).map(|a| a.answer.iter().map(|r| r.rtype).collect::<Vec<_>>())
        };
        assert_eq!(types("alias.lan", rtype::A), Some(vec![rtype::CNAME, rtype::A]));
        // No AAAA at the target: the CNAME alone, as an authority answers.
        assert_eq!(types("alias.lan", rtype::AAAA), Some(vec![rtype::CNAME]));
        assert_eq!(types("alias.lan", rtype::CNAME), Some(vec![rtype::CNAME]));
        assert_eq!(types("out.lan", rtype::A), Some(vec![rtype::CNAME]));
        assert_eq!(types("loop1.lan", rtype::A), Some(vec![rtype::CNAME, rtype::CNAME]));
    }
}
