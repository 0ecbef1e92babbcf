//! Zero-copy parsing of client queries: the first step of the hot path.
//!
//! [`QueryView::parse`] reads the header, the single question and the OPT
//! record without allocating; the question name stays a slice of the packet.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use crate::name::{MAX_LABEL_LEN, MAX_NAME_LEN};
use crate::wire::{self, HEADER_LEN, flags, read_u16, read_u32, rtype};

/// What the client said in its OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdnsView {
    /// Advertised UDP payload size (values under 512 count as 512).
    pub udp_size: u16,
    /// EDNS version.
    pub version: u8,
    /// The DNSSEC OK bit.
    pub dnssec_ok: bool,
    /// The query carried a Padding option (RFC 7830): pad the response on
    /// encrypted transports (RFC 8467).
    pub padding: bool,
}

/// A parsed client query that borrows the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryView<'a> {
    /// Message ID.
    pub id: u16,
    /// Header flags word.
    pub flags: u16,
    /// The question name, uncompressed wire format, case as sent.
    pub qname: &'a [u8],
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// The OPT record, if any.
    pub edns: Option<EdnsView>,
    /// Offset just past the question section.
    pub question_end: usize,
    /// The COOKIE option (RFC 7873), if any (a malformed one is FORMERR).
    pub cookie: Option<crate::cookie::CookieView<'a>>,
}

/// Why a query cannot be answered normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// Too short to have a header, or a response: drop it, send nothing.
    #[error("not a query; dropped")]
    Drop,
    /// Structurally invalid: answer FORMERR with the header's ID.
    #[error("malformed query")]
    FormErr {
        /// The ID to answer with.
        id: u16,
    },
    /// An opcode we do not implement: answer NOTIMP.
    #[error("opcode not implemented")]
    NotImp {
        /// The ID to answer with.
        id: u16,
    },
    /// EDNS version other than 0: answer BADVERS (RFC 6891 §6.1.3).
    #[error("unsupported EDNS version")]
    BadVers {
        /// The ID to answer with.
        id: u16,
    },
}

impl<'a> QueryView<'a> {
    /// Parses a client query. Never allocates.
    pub fn parse(buf: &'a [u8]) -> Result<QueryView<'a>, QueryError> {
        let Some(&[i0, i1, f0, f1, q0, q1, a0, a1, n0, n1, r0, r1]) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(QueryError::Drop);
        };
        let id = u16::from_be_bytes([i0, i1]);
        let fl = u16::from_be_bytes([f0, f1]);
        if fl & flags::QR != 0 {
            return Err(QueryError::Drop);
        }
        let formerr = QueryError::FormErr { id };
        if flags::opcode(fl) != 0 {
            return Err(QueryError::NotImp { id });
        }
        let qd = u16::from_be_bytes([q0, q1]);
        let an = u16::from_be_bytes([a0, a1]);
        let ns = u16::from_be_bytes([n0, n1]);
        let ar = u16::from_be_bytes([r0, r1]);
        if qd != 1 || an != 0 {
            return Err(formerr);
        }
        // The question name: no compression allowed (nothing precedes it).
        let mut pos = HEADER_LEN;
        loop {
            let l = *buf.get(pos).ok_or(formerr)? as usize;
            if l == 0 {
                pos += 1;
                break;
            }
            if l > MAX_LABEL_LEN {
                return Err(formerr);
            }
            pos += 1 + l;
            if pos - HEADER_LEN >= MAX_NAME_LEN {
                return Err(formerr);
            }
        }
        let qname = buf.get(HEADER_LEN..pos).ok_or(formerr)?;
        let qtype = read_u16(buf, pos).ok_or(formerr)?;
        let qclass = read_u16(buf, pos + 2).ok_or(formerr)?;
        let question_end = pos + 4;
        // Skip authority records, then look for OPT in additional.
        let mut p = question_end;
        let mut edns = None;
        let mut cookie = None;
        for i in 0..(ns as usize + ar as usize) {
            p = wire::skip_name(buf, p).ok_or(formerr)?;
            let t = read_u16(buf, p).ok_or(formerr)?;
            let class = read_u16(buf, p + 2).ok_or(formerr)?;
            let ttl = read_u32(buf, p + 4).ok_or(formerr)?;
            let rdlen = read_u16(buf, p + 8).ok_or(formerr)? as usize;
            let end = p + 10 + rdlen;
            if end > buf.len() {
                return Err(formerr);
            }
            if t == rtype::OPT {
                if i < ns as usize || edns.is_some() {
                    return Err(formerr);
                }
                let version = (ttl >> 16) as u8;
                // Look for the Padding option; the loop is bounded by rdlen.
                let mut padding = false;
                let mut o = p + 10;
                while o + 4 <= end {
                    // `o + 4 <= end <= buf.len()`, so these reads never fail.
                    let code = read_u16(buf, o).ok_or(formerr)?;
                    let len = read_u16(buf, o + 2).ok_or(formerr)? as usize;
                    padding |= code == wire::OPT_PADDING;
                    if code == wire::OPT_COOKIE && cookie.is_none() {
                        // A malformed cookie is FORMERR (RFC 7873 §5.2.2).
                        let data = buf.get(o + 4..o + 4 + len).filter(|d| d.len() + o + 4 <= end).ok_or(formerr)?;
                        cookie = Some(crate::cookie::CookieView::parse(data).map_err(|_| formerr)?);
                    }
                    o += 4 + len;
                }
                edns =
                    Some(EdnsView { udp_size: class.max(512), version, dnssec_ok: ttl & wire::EDNS_DO != 0, padding });
            }
            p = end;
        }
        if let Some(e) = edns
            && e.version != 0
        {
            return Err(QueryError::BadVers { id });
        }
        Ok(QueryView { id, flags: fl, qname, qtype, qclass, edns, question_end, cookie })
    }

    /// Whether the client set RD.
    pub fn recursion_desired(&self) -> bool {
        self.flags & flags::RD != 0
    }

    /// Whether the client set CD.
    pub fn checking_disabled(&self) -> bool {
        self.flags & flags::CD != 0
    }

    /// The largest UDP response the client accepts.
    pub fn udp_limit(&self, server_max: u16) -> usize {
        match self.edns {
            Some(e) => e.udp_size.min(server_max).max(512) as usize,
            None => 512,
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn query(qname: &[u8], edns: bool) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, edns as u8];
        m.extend_from_slice(qname);
        m.extend_from_slice(&[0, 1, 0, 1]);
        if edns {
            m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
        }
        m
    }

    #[test]
    fn parses_plain_and_edns() {
        let q = query(b"\x03WWW\x04test\x00", true);
        let v = QueryView::parse(&q).expect("valid");
        assert_eq!(v.id, 0x1234);
        assert_eq!(v.qname, b"\x03WWW\x04test\x00");
        assert_eq!(v.qtype, 1);
        assert!(v.recursion_desired());
        assert_eq!(v.edns, Some(EdnsView { udp_size: 1232, version: 0, dnssec_ok: true, padding: false }));
        assert_eq!(v.udp_limit(1232), 1232);
        let root = query(b"\x00", false);
        let v = QueryView::parse(&root).expect("root query");
        assert_eq!(v.udp_limit(1232), 512);
    }

    #[test]
    fn rejects_bad_queries() {
        let mut q = query(b"\x03www\x00", false);
        q[2] |= 0x80;
        assert_eq!(QueryView::parse(&q), Err(QueryError::Drop));
        let mut q = query(b"\x03www\x00", false);
        q[5] = 2;
        assert_eq!(QueryView::parse(&q), Err(QueryError::FormErr { id: 0x1234 }));
        let q = query(b"\xc0\x0c", false);
        assert_eq!(QueryView::parse(&q), Err(QueryError::FormErr { id: 0x1234 }));
        let mut q = query(b"\x03www\x00", false);
        q[2] = 0x10; // opcode 2 (STATUS)
        assert_eq!(QueryView::parse(&q), Err(QueryError::NotImp { id: 0x1234 }));
    }
}
