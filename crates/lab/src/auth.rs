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
        Behaviour::EchoEcs if q.qtype == rtype::TXT => {
            // Says which client subnet the query carried: how tests see
            // what a resolver sends upstream.
            let ecs = msg.edns.as_ref().and_then(|e| e.options.iter().find(|(c, _)| *c == proto::wire::OPT_ECS));
            let parsed = ecs.and_then(|(_, d)| proto::build::parse_ecs(d));
            let text = match parsed {
                Some((addr, source, _)) => format!("ecs {addr}/{source}"),
                None => "no ecs".to_string(),
            };
            let mut w = MessageWriter::new(&mut out, msg.id, base_flags | flags::AA);
            w.question(&raw_qname, q.qtype, q.qclass);
            let mut rdata = vec![text.len() as u8];
            rdata.extend_from_slice(text.as_bytes());
            w.raw_record(Section::Answer, &raw_qname, rtype::TXT, 1, 300, &rdata);
            match (edns, ecs) {
                (Some(d), Some((_, data))) => {
                    // Echo with the scope equal to the source prefix.
                    let mut echo = data.to_vec();
                    if echo.len() > 3 {
                        echo[3] = echo[2];
                    }
                    w.opt_with(1232, d, &[(proto::wire::OPT_ECS, &echo)]);
                }
                (Some(d), None) => w.opt(1232, d, 0, &[]),
                _ => {}
            }
            w.finish();
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
            if other == Behaviour::Normal
                && let Some(zone) = zones
                    .iter()
                    .map(|z| z.apex())
                    .filter(|a| answer_name.is_subdomain_of(a))
                    .max_by_key(|a| a.label_count())
            {
                match lab.internet_delay(server, zone) {
                    Some(d) => delay_ms = d,
                    None => return Reply::Drop,
                }
            }
            let dnssec_ok = msg.edns.as_ref().is_some_and(|e| e.dnssec_ok);
            let resp = resolve_authoritative(&zones, &answer_name, q.qtype, dnssec_ok);
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
    /// Add DNSSEC records (the query had DO).
    dnssec: bool,
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
fn resolve_authoritative(zones: &[&Zone], qname: &Name, qtype: u16, dnssec_ok: bool) -> AuthResponse {
    // The deepest zone containing qname; for DS the parent side of a cut.
    let zone = zones
        .iter()
        .filter(|z| qname.is_subdomain_of(z.apex()))
        .filter(|z| !(qtype == rtype::DS && z.apex() == qname && !z.apex().is_root()))
        .max_by_key(|z| z.apex().label_count());
    let Some(zone) = zone else {
        return AuthResponse { rcode: 5, ..AuthResponse::default() };
    };
    let mut resp = AuthResponse { aa: true, dnssec: dnssec_ok, ..AuthResponse::default() };
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
        if resp.dnssec {
            let ds = zone.rrset(&cut, rtype::DS);
            resp.authority.extend(ns.iter().cloned());
            if ds.is_empty() {
                add_proof(zone, resp, denial(zone, Denial::NoDs(&cut)));
            } else {
                let sigs = signatures(zone, &cut, rtype::DS);
                resp.authority.extend(ds);
                resp.authority.extend(sigs);
            }
            for r in &ns {
                if let Some(target) = r.target_name() {
                    for t in [rtype::A, rtype::AAAA] {
                        resp.additional.extend(zone.rrset(&target, t));
                    }
                }
            }
            return None;
        }
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
            if resp.dnssec {
                resp.answer.extend(signatures(zone, &owner, rtype::DNAME));
            }
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
    let mut wildcard: Option<Name> = None;
    let (records, owner_exists) = if zone.exists(qname) {
        (
            zone.at(qname)
                .iter()
                .filter(|r| r.rtype != rtype::RRSIG || qtype == rtype::RRSIG)
                .cloned()
                .collect::<Vec<_>>(),
            true,
        )
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
                wildcard = Some(w);
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
        if resp.dnssec {
            add_proof(zone, resp, denial(zone, Denial::NxDomain(qname)));
        }
        return None;
    }
    // Signatures come from the wildcard owner, renamed, for expansions.
    let sig_owner = wildcard.clone().unwrap_or_else(|| qname.clone());
    let renamed = |t: u16| -> Vec<Record> {
        signatures(zone, &sig_owner, t).into_iter().map(|r| Record { name: qname.clone(), ..r }).collect()
    };
    let matching: Vec<Record> = records.iter().filter(|r| r.rtype == qtype || qtype == rtype::ANY).cloned().collect();
    if !matching.is_empty() {
        resp.answer.extend(matching);
        if resp.dnssec {
            resp.answer.extend(renamed(qtype));
            if let Some(w) = &wildcard {
                add_proof(zone, resp, denial(zone, Denial::WildcardAnswer { qname, wildcard: w }));
            }
        }
        return None;
    }
    if let Some(cname) = records.iter().find(|r| r.rtype == rtype::CNAME) {
        resp.answer.push(cname.clone());
        if resp.dnssec {
            resp.answer.extend(renamed(rtype::CNAME));
            if let Some(w) = &wildcard {
                add_proof(zone, resp, denial(zone, Denial::WildcardAnswer { qname, wildcard: w }));
            }
        }
        return cname.target_name();
    }
    resp.authority.extend(negative_soa(zone));
    if resp.dnssec {
        let proof = match &wildcard {
            Some(w) => denial(zone, Denial::WildcardNoData { qname, wildcard: w }),
            None => denial(zone, Denial::NoData(qname)),
        };
        add_proof(zone, resp, proof);
    }
    None
}

/// The RRSIGs at `owner` covering type `t`.
fn signatures(zone: &Zone, owner: &Name, t: u16) -> Vec<Record> {
    zone.rrset(owner, rtype::RRSIG).into_iter().filter(|r| r.rdata.get(..2) == Some(&t.to_be_bytes()[..])).collect()
}

/// What a negative (or wildcard) answer must prove.
enum Denial<'a> {
    /// The name does not exist.
    NxDomain(&'a Name),
    /// The name exists without the type (or is an empty non-terminal).
    NoData(&'a Name),
    /// The name is synthesised from `wildcard`, which lacks the type.
    WildcardNoData { qname: &'a Name, wildcard: &'a Name },
    /// The name was answered from `wildcard`: it does not exist itself.
    WildcardAnswer { qname: &'a Name, wildcard: &'a Name },
    /// The delegation at this name has no DS.
    NoDs(&'a Name),
}

/// The NSEC or NSEC3 records that prove `d` (RFC 4035 §3.1.3, RFC 5155 §7.2).
fn denial(zone: &Zone, d: Denial<'_>) -> Vec<Record> {
    if let Some(param) = zone.rrset(zone.apex(), rtype::NSEC3PARAM).first() {
        let iterations = u16::from_be_bytes([param.rdata[2], param.rdata[3]]);
        return nsec3_denial(zone, iterations, d);
    }
    match d {
        Denial::NxDomain(qname) => {
            let ce = closest_encloser(zone, qname);
            let wild = ce.prepend(b"*").ok().and_then(|w| covering_nsec(zone, &w));
            covering_nsec(zone, qname).into_iter().chain(wild).collect()
        }
        Denial::NoData(qname) | Denial::NoDs(qname) => {
            let at = zone.rrset(qname, rtype::NSEC);
            if at.is_empty() { covering_nsec(zone, qname).into_iter().collect() } else { at }
        }
        Denial::WildcardNoData { qname, wildcard } => {
            covering_nsec(zone, qname).into_iter().chain(zone.rrset(wildcard, rtype::NSEC)).collect()
        }
        Denial::WildcardAnswer { qname, .. } => covering_nsec(zone, qname).into_iter().collect(),
    }
}

/// The NSEC3 flavour of [`denial`].
fn nsec3_denial(zone: &Zone, iterations: u16, d: Denial<'_>) -> Vec<Record> {
    let owner_of = |name: &Name| -> Option<Name> {
        let h = dnssec::nsec3::hash(name, &[], iterations);
        zone.apex().prepend(dnssec::nsec3::base32hex(&h).as_bytes()).ok()
    };
    let matching =
        |name: &Name| -> Vec<Record> { owner_of(name).map(|o| zone.rrset(&o, rtype::NSEC3)).unwrap_or_default() };
    let covering = |name: &Name| -> Vec<Record> {
        let h = dnssec::nsec3::hash(name, &[], iterations);
        zone.records()
            .filter(|r| r.rtype == rtype::NSEC3)
            .find(|r| {
                let Some(owner) = r.name.labels().next().and_then(dnssec::nsec3::base32hex_decode) else {
                    return false;
                };
                let Ok(n) = dnssec::nsec3::Nsec3::parse(&r.rdata) else { return false };
                let next = &*n.next_hash;
                if owner.as_slice() < next {
                    owner.as_slice() < h.as_slice() && h.as_slice() < next
                } else {
                    h.as_slice() > owner.as_slice() || h.as_slice() < next
                }
            })
            .cloned()
            .into_iter()
            .collect()
    };
    // The closest provable encloser and the next closer name below it.
    let encloser_proof = |qname: &Name| -> (Name, Vec<Record>) {
        let mut next_closer = qname.clone();
        let mut ce = qname.parent();
        while let Some(c) = ce {
            let m = matching(&c);
            if !m.is_empty() || &c == zone.apex() {
                let mut out = m;
                out.extend(covering(&next_closer));
                return (c, out);
            }
            next_closer = c.clone();
            ce = c.parent();
        }
        (zone.apex().clone(), Vec::new())
    };
    match d {
        Denial::NxDomain(qname) => {
            let (ce, mut out) = encloser_proof(qname);
            if let Ok(w) = ce.prepend(b"*") {
                out.extend(covering(&w));
            }
            out
        }
        Denial::NoData(qname) | Denial::NoDs(qname) => {
            let m = matching(qname);
            if m.is_empty() { encloser_proof(qname).1 } else { m }
        }
        Denial::WildcardNoData { qname, wildcard } => {
            let (_, mut out) = encloser_proof(qname);
            out.extend(matching(wildcard));
            out
        }
        Denial::WildcardAnswer { qname, wildcard } => {
            let source = wildcard.label_count() - 1;
            covering(&qname.suffix(source + 1))
        }
    }
}

/// The NSEC whose span covers `name` (owner < name < next).
fn covering_nsec(zone: &Zone, name: &Name) -> Option<Record> {
    zone.records()
        .filter(|r| r.rtype == rtype::NSEC)
        .find(|r| dnssec::Nsec::parse(&r.rdata).is_ok_and(|n| dnssec::nsec::covers(&r.name, &n.next, name)))
        .cloned()
}

/// The deepest existing ancestor of `name` in the zone.
fn closest_encloser(zone: &Zone, name: &Name) -> Name {
    let mut n = name.parent();
    while let Some(p) = n {
        if zone.exists(&p) {
            return p;
        }
        n = p.parent();
    }
    zone.apex().clone()
}

/// Adds NSEC records and their signatures (and the SOA's, when an SOA is
/// there) to the authority
/// section, once each.
fn add_proof(zone: &Zone, resp: &mut AuthResponse, nsecs: Vec<Record>) {
    // The SOA's signature goes with the SOA (negative answers) only: a lone
    // RRSIG is an unsigned RRset of its own to a validator.
    if resp.authority.iter().any(|r| r.rtype == rtype::SOA) {
        for r in signatures(zone, zone.apex(), rtype::SOA) {
            if !resp.authority.contains(&r) {
                resp.authority.push(r);
            }
        }
    }
    for nsec in nsecs {
        if resp.authority.contains(&nsec) {
            continue;
        }
        let sigs = signatures(zone, &nsec.name, nsec.rtype);
        resp.authority.push(nsec);
        resp.authority.extend(sigs);
    }
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

#[cfg(test)]
mod dnssec_tests {
    use super::*;
    use dnssec::nsec::{parse_nsecs, prove_no_ds, prove_nodata, prove_nxdomain, prove_wildcard_expansion};
    use dnssec::{AlgorithmPolicy, Dnskey, WorkBudget, verify_rrset};

    fn n(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn ask_do(lab: &LabData, server: &str, qname: &str, qtype: u16) -> Message {
        let mut q = Vec::new();
        proto::build::build_query(&mut q, 7, n(qname).as_wire(), qtype, false, Some(4096), true);
        match answer(lab, server.parse().expect("ip"), &q, false) {
            Reply::Send { bytes, .. } => Message::parse(&bytes).expect("parses"),
            Reply::Drop => panic!("no reply"),
        }
    }

    /// Verifies every RRset of `records` (but RRSIGs) with the keys of `zone`.
    fn verify_all(lab: &LabData, zone: &str, records: &[Record], sigs: &[Record]) {
        let z = &lab.zones.iter().find(|(_, z)| z.apex() == &n(zone)).expect("zone").1;
        let keys: Vec<Dnskey> =
            z.rrset(z.apex(), rtype::DNSKEY).iter().map(|r| Dnskey::parse(&r.rdata).expect("key")).collect();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
        let budget = WorkBudget::new(1000);
        for r in records.iter().filter(|r| r.rtype != rtype::RRSIG && r.rtype != rtype::NS) {
            let set: Vec<Record> = records.iter().filter(|x| x.name == r.name && x.rtype == r.rtype).cloned().collect();
            verify_rrset(&set, sigs, &keys, z.apex(), now, &AlgorithmPolicy::default(), &budget)
                .unwrap_or_else(|e| panic!("{} {}: {e}", r.name, r.rtype));
        }
    }

    #[test]
    fn signed_answers_and_proofs_verify() {
        let lab = LabData::builtin().expect("lab");
        let m = ask_do(&lab, "127.53.2.1", "www.example.test", rtype::A);
        assert!(m.answer.iter().any(|r| r.rtype == rtype::RRSIG));
        verify_all(&lab, "example.test", &m.answer, &m.answer);

        let m = ask_do(&lab, "127.53.2.1", "nope.example.test", rtype::A);
        assert_eq!(m.rcode(), 3);
        verify_all(&lab, "example.test", &m.authority, &m.authority);
        prove_nxdomain(&n("nope.example.test"), &parse_nsecs(&m.authority)).expect("NXDOMAIN proof");

        let m = ask_do(&lab, "127.53.2.1", "mail.example.test", rtype::AAAA);
        prove_nodata(&n("mail.example.test"), rtype::AAAA, &parse_nsecs(&m.authority)).expect("NODATA proof");

        let srv = |zone: u32| format!("127.53.2.{}", (zone % 8) + 1);
        let m = ask_do(&lab, &srv(10), "b.ent.z010.test", rtype::A);
        prove_nodata(&n("b.ent.z010.test"), rtype::A, &parse_nsecs(&m.authority)).expect("ENT proof");

        let m = ask_do(&lab, &srv(5), "foo.wild.z005.test", rtype::A);
        verify_all(&lab, "z005.test", &m.answer, &m.answer);
        prove_wildcard_expansion(&n("foo.wild.z005.test"), 3, &parse_nsecs(&m.authority)).expect("wildcard proof");
        verify_all(&lab, "z005.test", &m.authority, &m.authority);
    }

    #[test]
    fn referrals_carry_ds_or_its_denial() {
        let lab = LabData::builtin().expect("lab");
        let m = ask_do(&lab, "127.53.1.1", "www.example.test", rtype::A);
        assert!(m.authority.iter().any(|r| r.rtype == rtype::DS));
        verify_all(&lab, "test", &m.authority, &m.authority);
        let m = ask_do(&lab, "127.53.1.1", "www.unsigned.test", rtype::A);
        assert!(!m.authority.iter().any(|r| r.rtype == rtype::DS));
        verify_all(&lab, "test", &m.authority, &m.authority);
        prove_no_ds(&n("unsigned.test"), &parse_nsecs(&m.authority)).expect("insecure delegation proof");
        // DS asked at the parent side of the cut.
        let m = ask_do(&lab, "127.53.1.1", "example.test", rtype::DS);
        assert!(m.has_flag(flags::AA) && m.answer.iter().any(|r| r.rtype == rtype::DS));
    }
}
