//! Protocol constants: record types, classes, header flags and RCODEs.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

/// Record types (RFC 1035 and later; IANA "Resource Record (RR) TYPEs").
pub mod rtype {
    #![allow(missing_docs)]
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const HINFO: u16 = 13;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const RP: u16 = 17;
    pub const AFSDB: u16 = 18;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const NAPTR: u16 = 35;
    pub const KX: u16 = 36;
    pub const DNAME: u16 = 39;
    pub const OPT: u16 = 41;
    pub const DS: u16 = 43;
    pub const SSHFP: u16 = 44;
    pub const RRSIG: u16 = 46;
    pub const NSEC: u16 = 47;
    pub const DNSKEY: u16 = 48;
    pub const NSEC3: u16 = 50;
    pub const NSEC3PARAM: u16 = 51;
    pub const TLSA: u16 = 52;
    pub const CDS: u16 = 59;
    pub const CDNSKEY: u16 = 60;
    pub const SVCB: u16 = 64;
    pub const HTTPS: u16 = 65;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
    pub const CAA: u16 = 257;

    const NAMES: &[(u16, &str)] = &[
        (A, "A"),
        (NS, "NS"),
        (CNAME, "CNAME"),
        (SOA, "SOA"),
        (PTR, "PTR"),
        (HINFO, "HINFO"),
        (MX, "MX"),
        (TXT, "TXT"),
        (RP, "RP"),
        (AFSDB, "AFSDB"),
        (AAAA, "AAAA"),
        (SRV, "SRV"),
        (NAPTR, "NAPTR"),
        (KX, "KX"),
        (DNAME, "DNAME"),
        (OPT, "OPT"),
        (DS, "DS"),
        (SSHFP, "SSHFP"),
        (RRSIG, "RRSIG"),
        (NSEC, "NSEC"),
        (DNSKEY, "DNSKEY"),
        (NSEC3, "NSEC3"),
        (NSEC3PARAM, "NSEC3PARAM"),
        (TLSA, "TLSA"),
        (CDS, "CDS"),
        (CDNSKEY, "CDNSKEY"),
        (SVCB, "SVCB"),
        (HTTPS, "HTTPS"),
        (IXFR, "IXFR"),
        (AXFR, "AXFR"),
        (ANY, "ANY"),
        (CAA, "CAA"),
    ];

    /// The mnemonic of a type, if it has one we know.
    pub fn name(t: u16) -> Option<&'static str> {
        NAMES.iter().find(|(v, _)| *v == t).map(|(_, n)| *n)
    }

    /// Parses a mnemonic (`AAAA`) or the RFC 3597 form (`TYPE28`).
    pub fn from_text(s: &str) -> Option<u16> {
        let upper = s.to_ascii_uppercase();
        if let Some(n) = upper.strip_prefix("TYPE") {
            return n.parse().ok();
        }
        NAMES.iter().find(|(_, n)| *n == upper).map(|(v, _)| *v)
    }

    /// Meta and question-only types that never appear in a cache or zone.
    pub fn is_meta(t: u16) -> bool {
        matches!(t, OPT | IXFR | AXFR | ANY) || (128..=255).contains(&t)
    }
}

/// Classes.
pub mod class {
    #![allow(missing_docs)]
    pub const IN: u16 = 1;
    pub const CH: u16 = 3;
    pub const ANY: u16 = 255;
}

/// Header flag bits as they sit in the 16-bit flags word.
pub mod flags {
    #![allow(missing_docs)]
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
    pub const OPCODE_MASK: u16 = 0x7800;
    pub const RCODE_MASK: u16 = 0x000f;

    /// The opcode field of a flags word.
    pub fn opcode(flags: u16) -> u8 {
        ((flags & OPCODE_MASK) >> 11) as u8
    }
}

/// Response codes (the 4-bit header part; extended RCODEs need EDNS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

impl Rcode {
    /// The RCODE in a header flags word, or `None` for codes we do not name.
    pub fn from_flags(flags: u16) -> Option<Rcode> {
        Some(match flags & flags::RCODE_MASK {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            _ => return None,
        })
    }

    /// The mnemonic used by dig and the RFCs.
    pub fn as_str(self) -> &'static str {
        match self {
            Rcode::NoError => "NOERROR",
            Rcode::FormErr => "FORMERR",
            Rcode::ServFail => "SERVFAIL",
            Rcode::NxDomain => "NXDOMAIN",
            Rcode::NotImp => "NOTIMP",
            Rcode::Refused => "REFUSED",
        }
    }
}

/// The EDNS(0) option code of Extended DNS Errors (RFC 8914).
pub const OPT_EDE: u16 = 15;
/// The EDNS(0) option code of DNS cookies (RFC 7873).
pub const OPT_COOKIE: u16 = 10;
/// The EDNS(0) option code of Client Subnet (RFC 7871).
pub const OPT_ECS: u16 = 8;
/// The EDNS(0) option code of padding (RFC 7830).
pub const OPT_PADDING: u16 = 12;
/// The DO bit in the OPT record's TTL field (RFC 3225).
pub const EDNS_DO: u32 = 0x8000;

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;

/// Reads a big-endian `u16` at `pos`, if the buffer is long enough.
#[inline]
pub fn read_u16(buf: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*buf.get(pos..)?.first_chunk()?))
}

/// Reads a big-endian `u32` at `pos`, if the buffer is long enough.
#[inline]
pub fn read_u32(buf: &[u8], pos: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*buf.get(pos..)?.first_chunk()?))
}

/// Skips a (possibly compressed) name, returning the position after it.
pub fn skip_name(buf: &[u8], mut pos: usize) -> Option<usize> {
    // A name can have at most 128 labels; a pointer ends it.
    for _ in 0..=128 {
        let b = *buf.get(pos)?;
        match b & 0xc0 {
            0x00 if b == 0 => return Some(pos + 1),
            0x00 => pos += 1 + b as usize,
            0xc0 => return Some(pos + 2).filter(|&p| p <= buf.len()),
            _ => return None,
        }
    }
    None
}
