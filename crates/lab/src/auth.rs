//! Authoritative answering: the pure function from (server, query) to reply.

use std::net::IpAddr;

use proto::build::Section;
use proto::wire::{flags, rtype};
use proto::{Message, MessageWriter, Name, Record};

use crate::zone::Zone;
use crate::{Behaviour, LabData};

/// What a lab server does with one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send nothing.
    Drop,
    /// Send these bytes, after `delay_ms`.
    Send {
        /// The reply.
        bytes: Vec<u8>,
        /// Delay before sending.
        delay_ms: u64,
    },
}

/// How many CNAME hops an authoritative answer follows inside one zone.
const MAX_IN_ZONE_CHASE: usize = 8;

/// Answers `query` as the lab server at `server` would, over UDP if `udp`.
pub fn answer(lab: &LabData, server: IpAddr, query: &[u8], udp: bool) -> Reply {
    let Some(spec) = lab.servers.get(&server) else { return Reply::Drop };
    let Ok(msg) = Message::parse(query) else { return Reply::Drop };
    if msg.has_flag(flags::QR) {
        return Reply::Drop;
    }
    let Some(q) = msg.question.clone() else { return Reply::Drop };
    let raw_qname = raw_question_name(query).unwrap_or_else(|| q.name.as_wire().to_vec());
    let limit = if udp { msg.edns.as_ref().map_or(512, |e| e.udp_size.max(512) as usize) } else { 65535 };
    let edns = msg.edns.as_ref().map(|e| e.dnssec_ok);
    let mut delay_ms = 0;
    let mut out = Vec::with_capacity(512);
    let base_flags = flags::QR | (msg.flags & flags::RD);
    let respond_rcode = |rcode: u16, out: &mut Vec<u8>| {
        let mut w = MessageWriter::new(out, msg.id, base_flags | rcode);
        w.question(&raw_qname, q.qtype, q.qclass);
        if let Some(d) = edns {
            w.opt(1232, d, 0, &[]);
        }
        w.finish();
    };
    match spec.behaviour {
        Behaviour::Dead => return Reply::Drop,
        Behaviour::Refused => respond_rcode(5, &mut out),
        Behaviour::ServFail => respond_rcode(2, &mut out),
        Behaviour::FormErrEdns if msg.edns.is_some() => {
            let mut w = MessageWriter::new(&mut out, msg.id, base_flags | 1);
            w.question(&raw_qname, q.qtype, q.qclass);
            w.finish();
        }
        Behaviour::Malformed => {
            out.extend_from_slice(&msg.id.to_be_bytes());
            out.extend_from_slice(&[0x84, 0x00, 0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00]);
            out.extend_from_slice(&raw_qname);
            out.extend_from_slice(&[0xc0, 0xff, 0x3f, 0x00, 0x01, 0xff]);
        }
        Behaviour::Lame => {
            let mut w = MessageWriter::new(&mut out, msg.id, base_flags);
            w.question(&raw_qname, q.qtype, q.qclass);
            for ns in ["a.root-servers.test", "b.root-servers.test"] {
                let target = Name::from_ascii(ns).map(|n| n.as_wire().to_vec()).unwrap_or_default();
                w.raw_record(Section::Authority, &[0], rtype::NS, 1, 3600, &target);
            }
            w.finish();
        }
        other => {
            if let Behaviour::Slow { delay_ms: d } = other {
                delay_ms = d;
            }
            let qname_for_answer = q.name.clone();
            let (bytes_qname, answer_name) = if other == Behaviour::WrongQuestion {
                let wrong = q.name.prepend(b"wrong").unwrap_or_else(|_| q.name.clone());
                (wrong.as_wire().to_vec(), wrong)
            } else {
                (raw_qname.clone(), qname_for_answer)
            };
            let id = if other == Behaviour::WrongId { msg.id ^ 0x5a5a } else { msg.id };
            let zones: Vec<&Zone> = spec.zones.iter().map(|&i| &lab.zones[i].1).collect();
            let resp = resolve_authoritative(&zones, &answer_name, q.qtype);
            write_response(
                &mut out,
                id,
                base_flags,
                &bytes_qname,
                q.qtype,
                q.qclass,
                &resp,
                edns,
                other == Behaviour::Poison,
            );
            let tc_always = other == Behaviour::TcAlways && udp;
            if out.len() > limit || tc_always {
                out.clear();
                let mut w = MessageWriter::new(&mut out, id, base_flags | flags::TC | resp.aa_flag());
                w.question(&bytes_qname, q.qtype, q.qclass);
                if let Some(d) = edns {
                    w.opt(1232, d, 0, &[]);
                }
                w.finish();
            }
        }
    }
    Reply::Send { bytes: out, delay_ms }
}

/// The question name exactly as the client sent it (to echo its case).
fn raw_question_name(query: &[u8]) -> Option<Vec<u8>> {
    let len = proto::name::validate_wire(query.get(12..)?).ok()?;
    Some(query[12..12 + len].to_vec())
}

/// An authoritative server's answer, as sections.
#[derive(Debug, Default)]
struct AuthResponse {
    rcode: u16,
    aa: bool,
    answer: Vec<Record>,
    authority: Vec<Record>,
    additional: Vec<Record>,
}

impl AuthResponse {
    fn aa_flag(&self) -> u16 {
        if self.aa { flags::AA } else { 0 }
    }
}

#[allow(clippy::too_many_arguments)]
fn write_response(
    out: &mut Vec<u8>,
    id: u16,
    base_flags: u16,
    qname: &[u8],
    qtype: u16,
    qclass: u16,
    resp: &AuthResponse,
    edns: Option<bool>,
    poison: bool,
) {
    let mut w = MessageWriter::new(out, id, base_flags | resp.aa_flag() | resp.rcode);
    w.question(qname, qtype, qclass);
    for r in &resp.answer {
        w.record(Section::Answer, r);
    }
    for r in &resp.authority {
        w.record(Section::Authority, r);
    }
    if poison {
        // Out-of-bailiwick claims a careless resolver would cache.
        let example = Name::from_ascii("example.test").unwrap_or_else(|_| Name::root());
        let evil_ns = Name::from_ascii("ns.evil.poison.test").unwrap_or_else(|_| Name::root());
        w.raw_record(Section::Authority, example.as_wire(), rtype::NS, 1, 86400, evil_ns.as_wire());
    }
    for r in &resp.additional {
        w.record(Section::Additional, r);
    }
    if poison {
        let www = Name::from_ascii("www.example.test").unwrap_or_else(|_| Name::root());
        w.raw_record(Section::Additional, www.as_wire(), rtype::A, 1, 86400, &[203, 0, 113, 66]);
        let evil = Name::from_ascii("ns.evil.poison.test").unwrap_or_else(|_| Name::root());
        w.raw_record(Section::Additional, evil.as_wire(), rtype::A, 1, 86400, &[127, 53, 9, 10]);
    }
    if let Some(d) = edns {
        w.opt(1232, d, 0, &[]);
    }
    w.finish();
}

/// The answer of a server holding `zones` for (qname, qtype).
fn resolve_authoritative(zones: &[&Zone], qname: &Name, qtype: u16) -> AuthResponse {
    // The deepest zone containing qname; for DS the parent side of a cut.
    let zone = zones
        .iter()
        .filter(|z| qname.is_subdomain_of(z.apex()))
        .filter(|z| !(qtype == rtype::DS && z.apex() == qname && !z.apex().is_root()))
        .max_by_key(|z| z.apex().label_count());
    let Some(zone) = zone else {
        return AuthResponse { rcode: 5, ..AuthResponse::default() };
    };
    let mut resp = AuthResponse { aa: true, ..AuthResponse::default() };
    let mut name = qname.clone();
    for _ in 0..MAX_IN_ZONE_CHASE {
        match step(zone, &name, qtype, &mut resp) {
            Some(next) if next.is_subdomain_of(zone.apex()) => name = next,
            _ => break,
        }
    }
    resp
}

/// Answers one name inside `zone`, appending to `resp`. Returns a CNAME
/// target to keep chasing in the same zone.
fn step(zone: &Zone, qname: &Name, qtype: u16, resp: &mut AuthResponse) -> Option<Name> {
    let apex = zone.apex();
    // A zone cut between the apex and qname: refer (except DS at the cut).
    let depth = apex.label_count();
    for n in (depth + 1)..=qname.label_count() {
        let cut = qname.suffix(n);
        let ns = zone.rrset(&cut, rtype::NS);
        if ns.is_empty() || (cut == *qname && qtype == rtype::DS) {
            continue;
        }
        if !resp.answer.is_empty() {
            // A chased CNAME leads below a cut: the resolver follows it.
            return None;
        }
        resp.aa = false;
        for r in &ns {
            if let Some(target) = r.target_name() {
                for t in [rtype::A, rtype::AAAA] {
                    resp.additional.extend(zone.rrset(&target, t));
                }
            }
        }
        resp.authority = ns;
        return None;
    }
    // DNAME above qname (RFC 6672).
    for n in (depth..qname.label_count()).rev() {
        let owner = qname.suffix(n);
        if let Some(dname) = zone.rrset(&owner, rtype::DNAME).into_iter().next() {
            let target = dname.target_name()?;
            resp.answer.push(dname.clone());
            let Ok(new) = qname.replace_suffix(&owner, &target) else {
                resp.rcode = 6; // YXDOMAIN
                return None;
            };
            resp.answer.push(Record {
                name: qname.clone(),
                rtype: rtype::CNAME,
                class: 1,
                ttl: dname.ttl,
                rdata: new.as_wire().into(),
            });
            return Some(new);
        }
    }
    let (records, owner_exists) = if zone.exists(qname) {
        (zone.at(qname).to_vec(), true)
    } else {
        // Wildcard at the closest encloser.
        let mut encloser = qname.parent();
        while let Some(e) = &encloser {
            if zone.exists(e) {
                break;
            }
            encloser = e.parent();
        }
        let wild = encloser.and_then(|e| e.prepend(b"*").ok());
        match wild.filter(|w| zone.exists(w)) {
            Some(w) => {
                let synth = zone.at(&w).iter().map(|r| Record { name: qname.clone(), ..r.clone() }).collect();
                (synth, true)
            }
            None => (Vec::new(), false),
        }
    };
    if !owner_exists {
        if resp.answer.is_empty() {
            resp.rcode = 3;
        }
        resp.authority.extend(negative_soa(zone));
        return None;
    }
    let matching: Vec<Record> = records.iter().filter(|r| r.rtype == qtype || qtype == rtype::ANY).cloned().collect();
    if !matching.is_empty() {
        resp.answer.extend(matching);
        return None;
    }
    if let Some(cname) = records.iter().find(|r| r.rtype == rtype::CNAME) {
        resp.answer.push(cname.clone());
        return cname.target_name();
    }
    resp.authority.extend(negative_soa(zone));
    None
}

/// The SOA for a negative answer, its TTL lowered to MINIMUM (RFC 2308 §3).
fn negative_soa(zone: &Zone) -> Option<Record> {
    let soa = zone.soa()?;
    let ttl = soa.soa_negative_ttl().unwrap_or(soa.ttl);
    Some(Record { ttl, ..soa })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(lab: &LabData, server: &str, qname: &str, qtype: u16) -> Message {
        let mut q = Vec::new();
        let name = Name::from_ascii(qname).expect("name");
        proto::build::build_query(&mut q, 42, name.as_wire(), qtype, false, Some(1232), false);
        match answer(lab, server.parse().expect("ip"), &q, true) {
            Reply::Send { bytes, .. } => Message::parse(&bytes).expect("reply parses"),
            Reply::Drop => panic!("no reply"),
        }
    }

    #[test]
    fn root_refers_and_leaf_answers() {
        let lab = LabData::builtin().expect("lab");
        let r = ask(&lab, "127.53.0.1", "www.example.test", rtype::A);
        assert!(!r.has_flag(flags::AA));
        assert_eq!(r.authority[0].name.to_string(), "test.");
        assert!(!r.additional.is_empty(), "glue");
        let r = ask(&lab, "127.53.2.1", "www.example.test", rtype::A);
        assert!(r.has_flag(flags::AA));
        assert_eq!(r.answer[0].address(), Some("192.0.2.10".parse().expect("ip")));
        let r = ask(&lab, "127.53.2.1", "nope.example.test", rtype::A);
        assert_eq!(r.rcode(), 3);
        assert_eq!(r.authority[0].rtype, rtype::SOA);
    }

    #[test]
    fn wildcard_ent_dname_and_truncation() {
        let lab = LabData::builtin().expect("lab");
        let srv = |zone: u32| format!("127.53.2.{}", (zone % 8) + 1);
        let r = ask(&lab, &srv(5), "foo.wild.z005.test", rtype::A);
        assert_eq!(r.answer[0].name.to_string(), "foo.wild.z005.test.");
        let r = ask(&lab, &srv(10), "b.ent.z010.test", rtype::A);
        assert_eq!((r.rcode(), r.answer.len()), (0, 0));
        let r = ask(&lab, "127.53.2.6", "www.old.dname.test", rtype::A);
        assert_eq!(r.answer[0].rtype, rtype::DNAME);
        assert_eq!(r.answer[1].rtype, rtype::CNAME);
        let r = ask(&lab, "127.53.2.7", "txt.big.test", rtype::TXT);
        assert!(r.has_flag(flags::TC));
    }

    #[test]
    fn faulty_servers_misbehave() {
        let lab = LabData::builtin().expect("lab");
        let mut q = Vec::new();
        let name = Name::from_ascii("www.malformed.test").expect("name");
        proto::build::build_query(&mut q, 42, name.as_wire(), 1, false, Some(1232), false);
        let Reply::Send { bytes, .. } = answer(&lab, "127.53.9.7".parse().expect("ip"), &q, true) else {
            panic!("malformed server replies")
        };
        assert!(Message::parse(&bytes).is_err());
        let r = ask(&lab, "127.53.9.11", "www.formerr.test", rtype::A);
        assert_eq!(r.rcode(), 1);
        let r = ask(&lab, "127.53.9.5", "www.refused.test", rtype::A);
        assert_eq!(r.rcode(), 5);
    }
}
