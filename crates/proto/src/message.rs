//! Owned, fully parsed DNS messages (used on upstream replies and in tests).
//!
//! Names are decompressed with a budget: every pointer must point strictly
//! backwards and at most [`MAX_POINTERS`] pointers are followed per name, so a
//! message of `n` bytes costs `O(n)` work however it is crafted.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use crate::name::{MAX_LABEL_LEN, MAX_NAME_LEN, Name};
use crate::wire::{HEADER_LEN, read_u16, read_u32, rtype};
use crate::{WireError, wire};

/// How many compression pointers one name may follow.
pub const MAX_POINTERS: usize = 64;

/// One question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    /// The name asked for (lower-cased).
    pub name: Name,
    /// The type asked for.
    pub qtype: u16,
    /// The class asked for.
    pub qclass: u16,
}

/// One resource record with uncompressed record data.
///
/// Names inside the record data of the RFC 1035 types that may be compressed
/// (NS, CNAME, SOA, PTR, MX, ...) are decompressed and lower-cased, so
/// `rdata` is position-independent and can be cached and re-written anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// Owner name.
    pub name: Name,
    /// Record type.
    pub rtype: u16,
    /// Class.
    pub class: u16,
    /// Time to live, seconds.
    pub ttl: u32,
    /// Uncompressed record data.
    pub rdata: Box<[u8]>,
}

impl Record {
    /// The single domain name in the rdata of NS, CNAME, DNAME and PTR.
    pub fn target_name(&self) -> Option<Name> {
        match self.rtype {
            rtype::NS | rtype::CNAME | rtype::DNAME | rtype::PTR => Name::from_wire(&self.rdata).ok(),
            _ => None,
        }
    }

    /// An IPv4 or IPv6 address from A/AAAA rdata.
    pub fn address(&self) -> Option<std::net::IpAddr> {
        match (self.rtype, self.rdata.len()) {
            (rtype::A, 4) => {
                let b: [u8; 4] = self.rdata[..].try_into().ok()?;
                Some(std::net::IpAddr::from(b))
            }
            (rtype::AAAA, 16) => {
                let b: [u8; 16] = self.rdata[..].try_into().ok()?;
                Some(std::net::IpAddr::from(b))
            }
            _ => None,
        }
    }

    /// The negative-caching TTL of an SOA record: min(TTL, MINIMUM)
    /// (RFC 2308 §5).
    pub fn soa_negative_ttl(&self) -> Option<u32> {
        if self.rtype != rtype::SOA {
            return None;
        }
        let min = read_u32(&self.rdata, self.rdata.len().checked_sub(4)?)?;
        Some(self.ttl.min(min))
    }
}

/// The EDNS(0) OPT pseudo-record of a message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edns {
    /// Advertised UDP payload size.
    pub udp_size: u16,
    /// Upper eight bits of the extended RCODE.
    pub ext_rcode: u8,
    /// EDNS version.
    pub version: u8,
    /// The DNSSEC OK bit.
    pub dnssec_ok: bool,
    /// Options as (code, data).
    pub options: Vec<(u16, Box<[u8]>)>,
}

/// A parsed DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Message ID.
    pub id: u16,
    /// Header flags word (QR, opcode, AA, TC, RD, RA, AD, CD, RCODE).
    pub flags: u16,
    /// The question, if there is one.
    pub question: Option<Question>,
    /// Answer section.
    pub answer: Vec<Record>,
    /// Authority section.
    pub authority: Vec<Record>,
    /// Additional section, without the OPT record.
    pub additional: Vec<Record>,
    /// The OPT record, if present.
    pub edns: Option<Edns>,
}

impl Message {
    /// Parses a whole message.
    pub fn parse(buf: &[u8]) -> Result<Message, WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let id = read_u16(buf, 0).ok_or(WireError::Truncated)?;
        let flags = read_u16(buf, 2).ok_or(WireError::Truncated)?;
        let qd = read_u16(buf, 4).ok_or(WireError::Truncated)?;
        let an = read_u16(buf, 6).ok_or(WireError::Truncated)? as usize;
        let ns = read_u16(buf, 8).ok_or(WireError::Truncated)? as usize;
        let ar = read_u16(buf, 10).ok_or(WireError::Truncated)? as usize;
        if qd > 1 {
            return Err(WireError::Malformed("more than one question"));
        }
        let mut pos = HEADER_LEN;
        let mut name_buf = [0u8; MAX_NAME_LEN];
        let question = if qd == 1 {
            let (len, next) = read_name(buf, pos, &mut name_buf)?;
            let qtype = read_u16(buf, next).ok_or(WireError::Truncated)?;
            let qclass = read_u16(buf, next + 2).ok_or(WireError::Truncated)?;
            pos = next + 4;
            let name = name_buf.get(..len).ok_or(WireError::NameTooLong)?;
            Some(Question { name: Name::from_wire(name)?, qtype, qclass })
        } else {
            None
        };
        // Every record is at least 11 bytes, so counts larger than the
        // remaining bytes allow are lies: refuse before allocating.
        let remaining = buf.len() - pos;
        if (an + ns + ar) * 11 > remaining {
            return Err(WireError::Truncated);
        }
        let mut answer = Vec::with_capacity(an);
        let mut authority = Vec::with_capacity(ns);
        let mut additional = Vec::with_capacity(ar);
        let mut edns = None;
        for (count, section) in [(an, 0u8), (ns, 1), (ar, 2)] {
            for _ in 0..count {
                let (raw, next) = read_record(buf, pos, &mut name_buf)?;
                pos = next;
                match (section, raw) {
                    (2, RawRecord::Opt(opt)) => {
                        if edns.is_some() {
                            return Err(WireError::Malformed("two OPT records"));
                        }
                        edns = Some(opt);
                    }
                    (_, RawRecord::Opt(_)) => {
                        return Err(WireError::Malformed("OPT outside the additional section"));
                    }
                    (0, RawRecord::Rr(r)) => answer.push(r),
                    (1, RawRecord::Rr(r)) => authority.push(r),
                    (_, RawRecord::Rr(r)) => additional.push(r),
                }
            }
        }
        Ok(Message { id, flags, question, answer, authority, additional, edns })
    }

    /// The 4-bit header RCODE combined with the EDNS extended bits.
    pub fn rcode(&self) -> u16 {
        let low = self.flags & wire::flags::RCODE_MASK;
        let high = self.edns.as_ref().map_or(0, |e| e.ext_rcode as u16);
        (high << 4) | low
    }

    /// Whether a header flag (from [`wire::flags`]) is set.
    pub fn has_flag(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Extended DNS Errors carried in the OPT record.
    pub fn ede(&self) -> Vec<(u16, String)> {
        let Some(edns) = &self.edns else { return Vec::new() };
        edns.options
            .iter()
            .filter(|(code, _)| *code == wire::OPT_EDE)
            .filter_map(|(_, data)| {
                let (&code, text) = data.split_first_chunk()?;
                Some((u16::from_be_bytes(code), String::from_utf8_lossy(text).into_owned()))
            })
            .collect()
    }
}

enum RawRecord {
    Rr(Record),
    Opt(Edns),
}

fn read_record(buf: &[u8], pos: usize, name_buf: &mut [u8; MAX_NAME_LEN]) -> Result<(RawRecord, usize), WireError> {
    let (len, p) = read_name(buf, pos, name_buf)?;
    let rtype = read_u16(buf, p).ok_or(WireError::Truncated)?;
    let class = read_u16(buf, p + 2).ok_or(WireError::Truncated)?;
    let raw_ttl = read_u32(buf, p + 4).ok_or(WireError::Truncated)?;
    // TTLs with the top bit set are read as zero (RFC 2181 §8); the OPT
    // record's TTL field holds flags and is taken raw.
    let ttl = if raw_ttl & 0x8000_0000 != 0 { 0 } else { raw_ttl };
    let rdlen = read_u16(buf, p + 8).ok_or(WireError::Truncated)? as usize;
    let start = p + 10;
    let end = start + rdlen;
    if end > buf.len() {
        return Err(WireError::Truncated);
    }
    if rtype == rtype::OPT {
        if len != 1 {
            return Err(WireError::Malformed("OPT owner is not the root"));
        }
        let mut options = Vec::new();
        let mut o = start;
        while o < end {
            let code = read_u16(buf, o).ok_or(WireError::Truncated)?;
            let olen = read_u16(buf, o + 2).ok_or(WireError::Truncated)? as usize;
            let data = buf.get(o + 4..o + 4 + olen).ok_or(WireError::Truncated)?;
            if o + 4 + olen > end {
                return Err(WireError::BadRdata);
            }
            options.push((code, data.into()));
            o += 4 + olen;
        }
        let edns = Edns {
            udp_size: class,
            ext_rcode: (raw_ttl >> 24) as u8,
            version: (raw_ttl >> 16) as u8,
            dnssec_ok: raw_ttl & wire::EDNS_DO != 0,
            options,
        };
        return Ok((RawRecord::Opt(edns), end));
    }
    let name = Name::from_wire(name_buf.get(..len).ok_or(WireError::NameTooLong)?)?;
    let rdata = read_rdata(buf, start, end, rtype)?;
    Ok((RawRecord::Rr(Record { name, rtype, class, ttl, rdata }), end))
}

/// Layout of record data: which parts are (possibly compressed) names.
#[derive(Clone, Copy)]
enum Layout {
    /// Opaque bytes.
    Opaque,
    /// `n` fixed bytes, then names, then the rest opaque.
    Names { fixed: usize, names: usize },
}

fn layout(rtype: u16) -> Layout {
    match rtype {
        rtype::NS | rtype::CNAME | rtype::PTR | rtype::DNAME => Layout::Names { fixed: 0, names: 1 },
        rtype::SOA | rtype::RP => Layout::Names { fixed: 0, names: 2 },
        rtype::MX | rtype::AFSDB | rtype::KX => Layout::Names { fixed: 2, names: 1 },
        rtype::SRV => Layout::Names { fixed: 6, names: 1 },
        _ => Layout::Opaque,
    }
}

fn read_rdata(buf: &[u8], start: usize, end: usize, rtype: u16) -> Result<Box<[u8]>, WireError> {
    let rdata = buf.get(start..end).ok_or(WireError::Truncated)?;
    match layout(rtype) {
        Layout::Opaque => {
            let ok = match rtype {
                rtype::A => rdata.len() == 4,
                rtype::AAAA => rdata.len() == 16,
                _ => true,
            };
            if !ok {
                return Err(WireError::BadRdata);
            }
            Ok(rdata.into())
        }
        Layout::Names { fixed, names } => {
            let Some((head, _)) = rdata.split_at_checked(fixed) else {
                return Err(WireError::BadRdata);
            };
            let mut out = Vec::with_capacity(rdata.len() + 32);
            out.extend_from_slice(head);
            let mut pos = start + fixed;
            let mut name_buf = [0u8; MAX_NAME_LEN];
            for _ in 0..names {
                if pos >= end {
                    return Err(WireError::BadRdata);
                }
                let (len, next) = read_name(buf, pos, &mut name_buf)?;
                if next > end {
                    return Err(WireError::BadRdata);
                }
                let name = name_buf.get(..len).ok_or(WireError::NameTooLong)?;
                out.extend(name.iter().map(u8::to_ascii_lowercase));
                pos = next;
            }
            let rest = buf.get(pos..end).ok_or(WireError::BadRdata)?;
            if rtype == rtype::SOA && rest.len() != 20 {
                return Err(WireError::BadRdata);
            }
            if rtype != rtype::SOA && !rest.is_empty() {
                return Err(WireError::BadRdata);
            }
            out.extend_from_slice(rest);
            Ok(out.into_boxed_slice())
        }
    }
}

/// Reads a possibly compressed name at `pos` into `out` (uncompressed wire
/// format, case preserved). Returns its length and the position after the
/// name in the original message.
pub fn read_name(buf: &[u8], mut pos: usize, out: &mut [u8; MAX_NAME_LEN]) -> Result<(usize, usize), WireError> {
    let mut len = 0usize;
    let mut after: Option<usize> = None;
    let mut pointers = 0usize;
    // The lowest position a pointer may target: strictly before the pointer
    // itself, which rules out loops.
    loop {
        let b = *buf.get(pos).ok_or(WireError::Truncated)?;
        match b & 0xc0 {
            0x00 => {
                let l = b as usize;
                if l == 0 {
                    // `out` holds MAX_NAME_LEN octets: no room is NameTooLong.
                    let Some(root) = out.get_mut(len) else {
                        return Err(WireError::NameTooLong);
                    };
                    *root = 0;
                    len += 1;
                    return Ok((len, after.unwrap_or(pos + 1)));
                }
                if l > MAX_LABEL_LEN {
                    return Err(WireError::BadLabelType);
                }
                let label = buf.get(pos + 1..pos + 1 + l).ok_or(WireError::Truncated)?;
                if len + 1 + l + 1 > MAX_NAME_LEN {
                    return Err(WireError::NameTooLong);
                }
                let Some((len_octet, dst)) = out.get_mut(len..len + 1 + l).and_then(|s| s.split_first_mut()) else {
                    return Err(WireError::NameTooLong);
                };
                *len_octet = l as u8;
                dst.copy_from_slice(label);
                len += 1 + l;
                pos += 1 + l;
            }
            0xc0 => {
                let lo = *buf.get(pos + 1).ok_or(WireError::Truncated)?;
                let target = (((b & 0x3f) as usize) << 8) | lo as usize;
                if target >= pos {
                    return Err(WireError::BadPointer);
                }
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(WireError::PointerBudget);
                }
                if after.is_none() {
                    after = Some(pos + 2);
                }
                pos = target;
            }
            _ => return Err(WireError::BadLabelType),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn pointer_loops_are_rejected() {
        // Header, then a name that points at itself.
        let mut m = vec![0u8; 12];
        m[5] = 1; // qdcount = 1
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(Message::parse(&m), Err(WireError::BadPointer));
    }

    #[test]
    fn compressed_rdata_is_expanded() {
        // Question www.t. A, answer: www.t. CNAME (ptr to "t.") -> "x" + ptr
        let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(&[3, b'w', b'w', b'w', 1, b't', 0, 0, 1, 0, 1]);
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'X', 0xc0, 16]);
        let msg = Message::parse(&m).expect("parses");
        let rec = &msg.answer[0];
        assert_eq!(rec.target_name().map(|n| n.to_string()), Some("x.t.".to_string()));
        assert_eq!(rec.name.to_string(), "www.t.");
    }

    #[test]
    fn lying_counts_do_not_allocate_huge() {
        let m = [0u8, 1, 0x81, 0x80, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(Message::parse(&m), Err(WireError::Truncated));
    }
}
