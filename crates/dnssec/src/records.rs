//! DNSSEC record data, parsed from uncompressed rdata.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use proto::{Name, WireError, name::validate_wire, wire::read_u16, wire::read_u32};

/// A DNSKEY (RFC 4034 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnskey {
    /// Flags (256 zone key, 257 zone key + SEP).
    pub flags: u16,
    /// Protocol, always 3.
    pub protocol: u8,
    /// Algorithm number.
    pub algorithm: u8,
    /// The public key.
    pub public_key: Box<[u8]>,
    /// Key tag of this key.
    pub tag: u16,
}

/// A DS (RFC 4034 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ds {
    /// Key tag of the key it points at.
    pub key_tag: u16,
    /// Algorithm of that key.
    pub algorithm: u8,
    /// Digest type (2 SHA-256, 4 SHA-384).
    pub digest_type: u8,
    /// The digest.
    pub digest: Box<[u8]>,
}

/// An RRSIG (RFC 4034 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rrsig {
    /// Type covered.
    pub type_covered: u16,
    /// Algorithm.
    pub algorithm: u8,
    /// Labels of the original owner (less than the owner's for wildcards).
    pub labels: u8,
    /// Original TTL.
    pub original_ttl: u32,
    /// Expiration, seconds (serial arithmetic).
    pub expiration: u32,
    /// Inception, seconds (serial arithmetic).
    pub inception: u32,
    /// Key tag of the signing key.
    pub key_tag: u16,
    /// Signer's name (the zone).
    pub signer: Name,
    /// The signature.
    pub signature: Box<[u8]>,
    /// Length of the rdata before the signature (what is signed).
    pub(crate) signed_prefix_len: usize,
}

/// An NSEC (RFC 4034 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nsec {
    /// The next owner name in canonical order.
    pub next: Name,
    /// The type bitmap, wire format.
    pub bitmap: Box<[u8]>,
}

impl Dnskey {
    /// Parses DNSKEY rdata.
    pub fn parse(rdata: &[u8]) -> Result<Dnskey, WireError> {
        let &[f0, f1, protocol, algorithm, ref public_key @ ..] = rdata else {
            return Err(WireError::BadRdata);
        };
        if public_key.is_empty() {
            return Err(WireError::BadRdata);
        }
        Ok(Dnskey {
            flags: u16::from_be_bytes([f0, f1]),
            protocol,
            algorithm,
            public_key: public_key.into(),
            tag: key_tag(rdata),
        })
    }

    /// Whether the zone key bit (7) is set.
    pub fn is_zone_key(&self) -> bool {
        self.flags & 0x0100 != 0
    }

    /// Whether the key is revoked (RFC 5011).
    pub fn is_revoked(&self) -> bool {
        self.flags & 0x0080 != 0
    }
}

impl Ds {
    /// Parses DS rdata.
    pub fn parse(rdata: &[u8]) -> Result<Ds, WireError> {
        let &[t0, t1, algorithm, digest_type, ref digest @ ..] = rdata else {
            return Err(WireError::BadRdata);
        };
        if digest.is_empty() {
            return Err(WireError::BadRdata);
        }
        Ok(Ds { key_tag: u16::from_be_bytes([t0, t1]), algorithm, digest_type, digest: digest.into() })
    }
}

impl Rrsig {
    /// Parses RRSIG rdata.
    pub fn parse(rdata: &[u8]) -> Result<Rrsig, WireError> {
        let t = read_u16(rdata, 0).ok_or(WireError::BadRdata)?;
        let (algorithm, labels) =
            (*rdata.get(2).ok_or(WireError::BadRdata)?, *rdata.get(3).ok_or(WireError::BadRdata)?);
        let original_ttl = read_u32(rdata, 4).ok_or(WireError::BadRdata)?;
        let expiration = read_u32(rdata, 8).ok_or(WireError::BadRdata)?;
        let inception = read_u32(rdata, 12).ok_or(WireError::BadRdata)?;
        let key_tag = read_u16(rdata, 16).ok_or(WireError::BadRdata)?;
        let name_bytes = rdata.get(18..).ok_or(WireError::BadRdata)?;
        let len = validate_wire(name_bytes)?;
        // `validate_wire` returns at most `name_bytes.len()`.
        let (signer, signature) = name_bytes.split_at_checked(len).ok_or(WireError::BadRdata)?;
        let signer = Name::from_wire(signer)?;
        let signature: Box<[u8]> = signature.into();
        if signature.is_empty() {
            return Err(WireError::BadRdata);
        }
        Ok(Rrsig {
            type_covered: t,
            algorithm,
            labels,
            original_ttl,
            expiration,
            inception,
            key_tag,
            signer,
            signature,
            signed_prefix_len: 18 + len,
        })
    }
}

impl Nsec {
    /// Parses NSEC rdata.
    pub fn parse(rdata: &[u8]) -> Result<Nsec, WireError> {
        let len = validate_wire(rdata)?;
        // `validate_wire` returns at most `rdata.len()`.
        let (next, bitmap) = rdata.split_at_checked(len).ok_or(WireError::BadRdata)?;
        Ok(Nsec { next: Name::from_wire(next)?, bitmap: bitmap.into() })
    }

    /// Whether the bitmap lists `rtype`.
    pub fn has_type(&self, rtype: u16) -> bool {
        bitmap_has(&self.bitmap, rtype)
    }
}

/// Whether a type bitmap (RFC 4034 §4.1.2) lists `rtype`. Malformed bitmaps
/// list nothing past the point where they break.
pub fn bitmap_has(bitmap: &[u8], rtype: u16) -> bool {
    let (window, bit) = ((rtype >> 8) as u8, (rtype & 0xff) as usize);
    let mut rest = bitmap;
    while let &[w, len, ref tail @ ..] = rest {
        let Some((bits, more)) = tail.split_at_checked(len as usize) else { return false };
        if w == window {
            return bits.get(bit / 8).is_some_and(|b| b & (0x80 >> (bit % 8)) != 0);
        }
        rest = more;
    }
    false
}

/// Builds a type bitmap from a list of types.
pub fn make_bitmap(types: &[u16]) -> Vec<u8> {
    let mut sorted = types.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    for group in sorted.chunk_by(|a, b| a >> 8 == b >> 8) {
        let Some(&first) = group.first() else { continue };
        let window = (first >> 8) as u8;
        let mut bits = [0u8; 32];
        let mut max = 0;
        for &t in group {
            let b = (t & 0xff) as usize;
            // `b / 8 < 32 == bits.len()`: always `Some`.
            if let Some(byte) = bits.get_mut(b / 8) {
                *byte |= 0x80 >> (b % 8);
            }
            max = max.max(b / 8 + 1);
        }
        out.push(window);
        out.push(max as u8);
        out.extend(bits.iter().take(max));
    }
    out
}

/// The key tag of DNSKEY rdata (RFC 4034 Appendix B).
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, &b) in rdata.iter().enumerate() {
        ac += if i & 1 == 1 { b as u32 } else { (b as u32) << 8 };
    }
    ac += (ac >> 16) & 0xffff;
    (ac & 0xffff) as u16
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_round_trip() {
        let types = [1u16, 2, 6, 46, 47, 48, 257];
        let bm = make_bitmap(&types);
        for t in types {
            assert!(bitmap_has(&bm, t), "{t}");
        }
        for t in [5u16, 28, 43, 256, 300] {
            assert!(!bitmap_has(&bm, t), "{t}");
        }
        assert!(!bitmap_has(&[0, 40], 1), "truncated bitmap lists nothing");
    }

    #[test]
    fn key_tag_of_rfc4034_example() {
        // RFC 4034 §5.4: the DNSKEY of dskey.example.com has key tag 60485.
        let key = "AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==";
        let mut rdata = vec![1, 0, 3, 5];
        rdata.extend(domain::utils::base64::decode::<Vec<u8>>(key).expect("base64"));
        assert_eq!(key_tag(&rdata), 60485);
    }
}
