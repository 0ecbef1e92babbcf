//! Writing DNS messages: queries to authorities and responses to clients.
//!
//! [`MessageWriter`] appends to a caller-owned `Vec<u8>` (so a reused buffer
//! means no allocation once it has grown), compresses owner names and the
//! names inside compressible record data, and can record where each TTL sits
//! so a cached copy of the message can have its TTLs counted down in place.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use crate::ede::Ede;
use crate::message::{Record, read_name};
use crate::name::MAX_NAME_LEN;
use crate::wire::{self, HEADER_LEN, rtype};

/// The sections of a message, in the order they must be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Question section.
    Question = 0,
    /// Answer section.
    Answer = 1,
    /// Authority section.
    Authority = 2,
    /// Additional section.
    Additional = 3,
}

/// How many earlier names compression remembers. Bounding the table keeps
/// compression linear in the message size (a known DoS in DNS libraries).
const COMPRESSION_ENTRIES: usize = 64;

/// Appends one DNS message to a buffer.
#[derive(Debug)]
pub struct MessageWriter<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    counts: [u16; 4],
    section: Section,
    compress: bool,
    table: [(u64, u16); COMPRESSION_ENTRIES],
    table_len: usize,
    ttl_offsets: Option<Vec<u16>>,
}

impl<'a> MessageWriter<'a> {
    /// Starts a message with the given ID and flags word at the end of `buf`.
    pub fn new(buf: &'a mut Vec<u8>, id: u16, flags: u16) -> MessageWriter<'a> {
        let start = buf.len();
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&[0; 8]);
        MessageWriter {
            buf,
            start,
            counts: [0; 4],
            section: Section::Question,
            compress: true,
            table: [(0, 0); COMPRESSION_ENTRIES],
            table_len: 0,
            ttl_offsets: None,
        }
    }

    /// Turns name compression off (for example for queries, where it buys
    /// nothing).
    pub fn without_compression(mut self) -> Self {
        self.compress = false;
        self
    }

    /// Records the offset of every TTL written from now on; see
    /// [`MessageWriter::ttl_offsets`].
    pub fn track_ttls(mut self) -> Self {
        self.ttl_offsets = Some(Vec::new());
        self
    }

    /// Offsets (from the start of the message) of every record TTL written,
    /// excluding the OPT record.
    pub fn ttl_offsets(&mut self) -> Vec<u16> {
        self.ttl_offsets.take().unwrap_or_default()
    }

    /// Current length of the message.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether only the header has been written.
    pub fn is_empty(&self) -> bool {
        self.len() == HEADER_LEN
    }

    /// Sets bits in the header flags word.
    pub fn set_flags(&mut self, bits: u16) {
        if let Some(field) = self.u16_at(self.start + 2) {
            *field = (u16::from_be_bytes(*field) | bits).to_be_bytes();
        }
    }

    /// Writes the question. `qname` is uncompressed wire format and is
    /// written as given (so the client's case is preserved).
    pub fn question(&mut self, qname: &[u8], qtype: u16, qclass: u16) {
        debug_assert_eq!(self.section, Section::Question);
        self.write_name(qname);
        self.buf.extend_from_slice(&qtype.to_be_bytes());
        self.buf.extend_from_slice(&qclass.to_be_bytes());
        self.bump(Section::Question);
    }

    /// Writes a record into `section` (sections must come in order).
    pub fn record(&mut self, section: Section, rec: &Record) {
        self.raw_record(section, rec.name.as_wire(), rec.rtype, rec.class, rec.ttl, &rec.rdata);
    }

    /// Writes a record from its parts; `rdata` is uncompressed.
    pub fn raw_record(&mut self, section: Section, owner: &[u8], rtype: u16, class: u16, ttl: u32, rdata: &[u8]) {
        debug_assert!(section >= self.section && section != Section::Question);
        self.section = section;
        self.write_name(owner);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        if let Some(offsets) = self.ttl_offsets.as_mut() {
            offsets.push((self.buf.len() - self.start) as u16);
        }
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.write_rdata(rtype, rdata);
        let rdlen = (self.buf.len() - len_at - 2) as u16;
        if let Some(field) = self.u16_at(len_at) {
            *field = rdlen.to_be_bytes();
        }
        self.bump(section);
    }

    /// Writes the OPT record (always last) with the DO bit, the upper RCODE
    /// bits and any Extended DNS Errors.
    pub fn opt(&mut self, udp_size: u16, dnssec_ok: bool, ext_rcode: u8, edes: &[Ede]) {
        self.opt_padded(udp_size, dnssec_ok, ext_rcode, edes, None);
    }

    /// As [`MessageWriter::opt`], adding a Padding option (RFC 7830) that
    /// makes the whole message a multiple of `block` octets (RFC 8467
    /// recommends 468 for responses).
    pub fn opt_padded(&mut self, udp_size: u16, dnssec_ok: bool, ext_rcode: u8, edes: &[Ede], block: Option<usize>) {
        self.section = Section::Additional;
        self.buf.push(0);
        self.buf.extend_from_slice(&rtype::OPT.to_be_bytes());
        self.buf.extend_from_slice(&udp_size.to_be_bytes());
        let ttl = ((ext_rcode as u32) << 24) | if dnssec_ok { wire::EDNS_DO } else { 0 };
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        for ede in edes {
            let text = ede.text.as_bytes();
            let text = text.get(..1024).unwrap_or(text);
            self.buf.extend_from_slice(&wire::OPT_EDE.to_be_bytes());
            self.buf.extend_from_slice(&((2 + text.len()) as u16).to_be_bytes());
            self.buf.extend_from_slice(&ede.code.to_be_bytes());
            self.buf.extend_from_slice(text);
        }
        if let Some(block) = block.filter(|b| *b > 0) {
            let here = self.buf.len() - self.start + 4;
            let pad = (block - here % block) % block;
            self.buf.extend_from_slice(&wire::OPT_PADDING.to_be_bytes());
            self.buf.extend_from_slice(&(pad as u16).to_be_bytes());
            self.buf.resize(self.buf.len() + pad, 0);
        }
        let rdlen = (self.buf.len() - len_at - 2) as u16;
        if let Some(field) = self.u16_at(len_at) {
            *field = rdlen.to_be_bytes();
        }
        self.bump(Section::Additional);
    }

    /// Writes an OPT record carrying raw `options` (code, data).
    pub fn opt_with(&mut self, udp_size: u16, dnssec_ok: bool, options: &[(u16, &[u8])]) {
        self.section = Section::Additional;
        self.buf.push(0);
        self.buf.extend_from_slice(&rtype::OPT.to_be_bytes());
        self.buf.extend_from_slice(&udp_size.to_be_bytes());
        let ttl = if dnssec_ok { wire::EDNS_DO } else { 0 };
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len: usize = options.iter().map(|(_, d)| 4 + d.len()).sum();
        self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        for (code, data) in options {
            self.buf.extend_from_slice(&code.to_be_bytes());
            self.buf.extend_from_slice(&(data.len() as u16).to_be_bytes());
            self.buf.extend_from_slice(data);
        }
        self.bump(Section::Additional);
    }

    /// Finishes the message and returns its length.
    pub fn finish(self) -> usize {
        self.buf.len() - self.start
    }

    fn bump(&mut self, section: Section) {
        let i = section as usize;
        // `Section` has four variants, one per entry of `counts`.
        let Some(count) = self.counts.get_mut(i) else { return };
        *count = count.saturating_add(1);
        let count = *count;
        if let Some(field) = self.u16_at(self.start + 4 + 2 * i) {
            *field = count.to_be_bytes();
        }
    }

    /// The two octets at `at` in the buffer. Callers pass only offsets of
    /// fields this writer has already written (the header, an RDLENGTH), so
    /// this is always `Some`.
    fn u16_at(&mut self, at: usize) -> Option<&mut [u8; 2]> {
        self.buf.get_mut(at..)?.first_chunk_mut()
    }

    fn write_rdata(&mut self, rt: u16, rdata: &[u8]) {
        // Only the RFC 1035 types may be compressed inside rdata (RFC 3597).
        let (fixed, names) = match rt {
            rtype::NS | rtype::CNAME | rtype::PTR => (0, 1),
            rtype::SOA => (0, 2),
            rtype::MX => (2, 1),
            _ => (0, 0),
        };
        let Some((head, mut rest)) = rdata.split_at_checked(fixed).filter(|_| names != 0 && self.compress) else {
            self.buf.extend_from_slice(rdata);
            return;
        };
        self.buf.extend_from_slice(head);
        for _ in 0..names {
            // `validate_wire` returns at most `rest.len()`, so the split
            // only fails where validation does.
            let Some((name, tail)) = crate::name::validate_wire(rest).ok().and_then(|len| rest.split_at_checked(len))
            else {
                self.buf.extend_from_slice(rest);
                return;
            };
            self.write_name(name);
            rest = tail;
        }
        self.buf.extend_from_slice(rest);
    }

    /// Writes an uncompressed wire name, compressing against earlier names.
    fn write_name(&mut self, name: &[u8]) {
        if !self.compress {
            self.buf.extend_from_slice(name);
            return;
        }
        // Try each suffix from the longest; emit labels until a match.
        let mut suffix = name;
        while let Some(&l) = suffix.first()
            && l != 0
        {
            if let Some(target) = self.lookup(suffix) {
                self.buf.extend_from_slice(&(0xc000 | target).to_be_bytes());
                return;
            }
            let here = self.buf.len() - self.start;
            if here < 0x3fff
                && let Some(slot) = self.table.get_mut(self.table_len)
            {
                *slot = (suffix_hash(suffix), here as u16);
                self.table_len += 1;
            }
            // A label running past the end is copied as far as it goes.
            let (label, tail) = suffix.split_at_checked(1 + l as usize).unwrap_or((suffix, &[]));
            self.buf.extend_from_slice(label);
            suffix = tail;
        }
        self.buf.push(0);
    }

    fn lookup(&self, suffix: &[u8]) -> Option<u16> {
        let h = suffix_hash(suffix);
        let msg = self.buf.get(self.start..)?;
        let mut scratch = [0u8; MAX_NAME_LEN];
        for &(eh, off) in self.table.iter().take(self.table_len) {
            if eh != h {
                continue;
            }
            if let Ok((len, _)) = read_name(msg, off as usize, &mut scratch)
                && scratch.get(..len).is_some_and(|s| s.eq_ignore_ascii_case(suffix))
            {
                return Some(off);
            }
        }
        None
    }
}

/// FNV-1a over the lower-cased bytes of a wire name suffix.
fn suffix_hash(s: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s {
        h ^= b.to_ascii_lowercase() as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Builds a query for an authority: RD clear (or set for forwarding), a
/// random ID chosen by the caller, and EDNS(0) with `udp_size` if given.
pub fn build_query(
    buf: &mut Vec<u8>,
    id: u16,
    qname: &[u8],
    qtype: u16,
    recursion_desired: bool,
    edns_udp_size: Option<u16>,
    dnssec_ok: bool,
) {
    build_query_ecs(buf, id, qname, qtype, recursion_desired, edns_udp_size, dnssec_ok, None, None);
}

/// As [`build_query`], with an EDNS Client Subnet option for `ecs` (a
/// network and its prefix length) and a COOKIE option with `cookie` (RFC
/// 7873: the client cookie and the server cookie, if one is known) when
/// EDNS is on.
#[allow(clippy::too_many_arguments)]
pub fn build_query_ecs(
    buf: &mut Vec<u8>,
    id: u16,
    qname: &[u8],
    qtype: u16,
    recursion_desired: bool,
    edns_udp_size: Option<u16>,
    dnssec_ok: bool,
    ecs: Option<(std::net::IpAddr, u8)>,
    cookie: Option<&[u8]>,
) {
    let flags = if recursion_desired { wire::flags::RD } else { 0 };
    let mut w = MessageWriter::new(buf, id, flags).without_compression();
    w.question(qname, qtype, crate::class::IN);
    if let Some(size) = edns_udp_size {
        let ecs = ecs.map(|(addr, len)| ecs_option(addr, len));
        let options: Vec<(u16, &[u8])> = ecs
            .as_deref()
            .map(|e| (wire::OPT_ECS, e))
            .into_iter()
            .chain(cookie.map(|c| (wire::OPT_COOKIE, c)))
            .collect();
        if options.is_empty() {
            w.opt(size, dnssec_ok, 0, &[]);
        } else {
            w.opt_with(size, dnssec_ok, &options);
        }
    }
    w.finish();
}

/// The data of an EDNS Client Subnet option (RFC 7871 §6): family, source
/// prefix length, scope 0, and only the address octets the prefix covers
/// (bits past it cleared).
pub fn ecs_option(addr: std::net::IpAddr, source: u8) -> Vec<u8> {
    let (family, octets): (u16, Vec<u8>) = match addr {
        std::net::IpAddr::V4(a) => (1, a.octets().to_vec()),
        std::net::IpAddr::V6(a) => (2, a.octets().to_vec()),
    };
    let source = source.min(octets.len() as u8 * 8);
    let n = source.div_ceil(8) as usize;
    let mut out = family.to_be_bytes().to_vec();
    out.extend_from_slice(&[source, 0]);
    out.extend(octets.iter().take(n));
    if !source.is_multiple_of(8)
        && let Some(last) = out.last_mut()
    {
        *last &= 0xffu8 << (8 - source % 8);
    }
    out
}

/// Reads an EDNS Client Subnet option: (address, source prefix length,
/// scope prefix length).
pub fn parse_ecs(data: &[u8]) -> Option<(std::net::IpAddr, u8, u8)> {
    let family = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
    let (source, scope) = (*data.get(2)?, *data.get(3)?);
    let addr = data.get(4..)?;
    match family {
        1 if addr.len() <= 4 && source <= 32 => {
            let mut o = [0u8; 4];
            o.get_mut(..addr.len())?.copy_from_slice(addr);
            Some((std::net::IpAddr::from(o), source, scope))
        }
        2 if addr.len() <= 16 && source <= 128 => {
            let mut o = [0u8; 16];
            o.get_mut(..addr.len())?.copy_from_slice(addr);
            Some((std::net::IpAddr::from(o), source, scope))
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::name::Name;

    #[test]
    fn ecs_options_carry_only_the_prefix() {
        let o = ecs_option("192.0.2.77".parse().expect("ip"), 24);
        assert_eq!(o, [0, 1, 24, 0, 192, 0, 2]);
        assert_eq!(parse_ecs(&o), Some(("192.0.2.0".parse().expect("ip"), 24, 0)));
        let o = ecs_option("2001:db8:1:2ff::1".parse().expect("ip"), 56);
        assert_eq!(o.len(), 4 + 7);
        assert_eq!(parse_ecs(&o), Some(("2001:db8:1:200::".parse().expect("ip"), 56, 0)));
        assert_eq!(ecs_option("192.0.2.77".parse().expect("ip"), 20)[6], 0);
        assert_eq!(parse_ecs(&[0, 3, 0, 0]), None);
    }

    #[test]
    fn round_trip_with_compression_and_ede() {
        let mut buf = Vec::new();
        let www = Name::from_ascii("www.example.test").expect("name");
        let mut w = MessageWriter::new(&mut buf, 7, wire::flags::QR | wire::flags::RD).track_ttls();
        w.question(b"\x03WWW\x07example\x04test\x00", rtype::CNAME, 1);
        let cname = Record {
            name: www.clone(),
            rtype: rtype::CNAME,
            class: 1,
            ttl: 300,
            rdata: Name::from_ascii("web.example.test").expect("name").as_wire().into(),
        };
        w.record(Section::Answer, &cname);
        w.opt(1232, true, 0, &[Ede::new(22, "no reachable authority")]);
        let offsets = w.ttl_offsets();
        let len = w.finish();
        assert_eq!(len, buf.len());
        assert_eq!(offsets.len(), 1);
        // Owner name compressed to a pointer to the question.
        assert!(buf.len() < 12 + 22 + 2 + 10 + 20 + 11 + 30);
        let msg = Message::parse(&buf).expect("parses");
        assert_eq!(msg.answer[0], cname);
        assert_eq!(msg.ede(), vec![(22, "no reachable authority".to_string())]);
        assert!(msg.edns.expect("opt").dnssec_ok);
    }
}
