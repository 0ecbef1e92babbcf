//! Client address → (country, autonomous system), from MaxMind-format
//! databases, behind a lock-free cache per client network (/24, /48) so
//! that a query from a network seen before costs a hash and one atomic
//! load, and no query allocates.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use maxminddb::{PathElement, Reader};

use crate::ObservatoryError;

/// A country as a small number: 0 is unknown, else `26 × a + b + 1` for
/// the ISO 3166-1 alpha-2 letters `a`, `b` (each 0..26).
pub type Country = u16;

/// The unknown country.
pub const UNKNOWN: Country = 0;

/// The number for a two-letter code (any case); [`UNKNOWN`] for anything
/// else.
pub fn country(code: &str) -> Country {
    match code.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            let (a, b) = (a.to_ascii_uppercase() - b'A', b.to_ascii_uppercase() - b'A');
            u16::from(a) * 26 + u16::from(b) + 1
        }
        _ => UNKNOWN,
    }
}

/// The code for a country number, `--` for unknown.
pub fn country_code(c: Country) -> String {
    if c == UNKNOWN || c > 26 * 26 {
        return "--".to_string();
    }
    let n = c - 1;
    let letters = [b'A' + (n / 26) as u8, b'A' + (n % 26) as u8];
    String::from_utf8_lossy(&letters).into_owned()
}

/// Where an address is: country number and AS number (0 unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Place {
    /// See [`Country`].
    pub country: Country,
    /// The autonomous system, 0 when unknown.
    pub asn: u32,
}

const CACHE_SLOTS: usize = 1 << 16;
const VALID: u64 = 1 << 63;
const TAG_SHIFT: u32 = 42;
const TAG_MASK: u64 = (1 << 21) - 1;

/// The databases and their cache.
pub struct GeoDb {
    country: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
    /// Packed: valid bit, 21-bit tag of the network's hash, 10-bit country,
    /// 32-bit AS number.
    cache: Box<[AtomicU64]>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("country", &self.country.as_ref().map(|r| r.metadata().database_type.clone()))
            .field("asn", &self.asn.as_ref().map(|r| r.metadata().database_type.clone()))
            .finish()
    }
}

fn reader(path: &Path) -> Result<Reader<Vec<u8>>, ObservatoryError> {
    let bad = |reason: String| ObservatoryError::Database { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let r = Reader::from_source(bytes).map_err(|e| bad(e.to_string()))?;
    // A lookup that fails on the tree itself means a truncated or damaged
    // file: refused now rather than counted as unknown for ever.
    r.lookup(IpAddr::from([192, 0, 2, 1])).map_err(|e| bad(e.to_string()))?;
    Ok(r)
}

fn from_bytes(bytes: Vec<u8>) -> Result<Reader<Vec<u8>>, ObservatoryError> {
    Reader::from_source(bytes)
        .map_err(|e| ObservatoryError::Database { path: "<memory>".into(), reason: e.to_string() })
}

impl GeoDb {
    /// No databases: every address is unknown.
    pub fn empty() -> GeoDb {
        GeoDb::with(None, None)
    }

    fn with(country: Option<Reader<Vec<u8>>>, asn: Option<Reader<Vec<u8>>>) -> GeoDb {
        GeoDb { country, asn, cache: (0..CACHE_SLOTS).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Opens the databases the operator named (either may be absent; one
    /// file may serve as both). A file that is missing, truncated or not
    /// a MaxMind database is an error naming it.
    pub fn open(country: Option<&Path>, asn: Option<&Path>) -> Result<GeoDb, ObservatoryError> {
        Ok(GeoDb::with(country.map(reader).transpose()?, asn.map(reader).transpose()?))
    }

    /// The same from bytes in memory (tests, the lab).
    pub fn from_bytes(country: Option<Vec<u8>>, asn: Option<Vec<u8>>) -> Result<GeoDb, ObservatoryError> {
        Ok(GeoDb::with(country.map(from_bytes).transpose()?, asn.map(from_bytes).transpose()?))
    }

    /// Whether any database is loaded.
    pub fn is_empty(&self) -> bool {
        self.country.is_none() && self.asn.is_none()
    }

    /// Where `addr` is, through the cache (per /24 for IPv4, /48 for IPv6:
    /// the granularity of the databases' own records, near enough).
    /// Allocates nothing.
    #[inline]
    pub fn place(&self, addr: IpAddr) -> Place {
        if self.is_empty() {
            return Place::default();
        }
        let (key, net) = network_key(addr);
        let h = mix(key);
        let slot = &self.cache[(h as usize) & (CACHE_SLOTS - 1)];
        let tag = (h >> 43) & TAG_MASK;
        let v = slot.load(Ordering::Relaxed);
        if v & VALID != 0 && (v >> TAG_SHIFT) & TAG_MASK == tag {
            return Place { country: ((v >> 32) & 0x3ff) as u16, asn: v as u32 };
        }
        let p = self.lookup(net);
        slot.store(
            VALID | (tag << TAG_SHIFT) | (u64::from(p.country & 0x3ff) << 32) | u64::from(p.asn),
            Ordering::Relaxed,
        );
        p
    }

    /// Where `addr` is, from the databases (no cache). A lookup or decode
    /// error counts as unknown.
    pub fn lookup(&self, addr: IpAddr) -> Place {
        let mut p = Place::default();
        if let Some(r) = &self.country
            && let Ok(found) = r.lookup(addr)
        {
            const PATHS: [&[PathElement<'static>]; 3] = [
                &[PathElement::Key("country"), PathElement::Key("iso_code")],
                &[PathElement::Key("country_code")],
                &[PathElement::Key("registered_country"), PathElement::Key("iso_code")],
            ];
            for path in PATHS {
                if let Ok(Some(code)) = found.decode_path::<&str>(path) {
                    p.country = country(code);
                    break;
                }
            }
        }
        if let Some(r) = &self.asn
            && let Ok(found) = r.lookup(addr)
            && let Ok(Some(asn)) = found.decode_path::<u32>(&[PathElement::Key("autonomous_system_number")])
        {
            p.asn = asn;
        }
        p
    }
}

/// A 64-bit key for the client's network, and the network's first address
/// (what is looked up): IPv4 /24, IPv6 /48 (v4-mapped addresses as IPv4).
#[inline]
fn network_key(addr: IpAddr) -> (u64, IpAddr) {
    match addr.to_canonical() {
        IpAddr::V4(a) => {
            let net = u32::from(a) & 0xffff_ff00;
            (u64::from(net >> 8), IpAddr::from(net.to_be_bytes()))
        }
        IpAddr::V6(a) => {
            let net = u128::from(a) & !((1u128 << 80) - 1);
            ((net >> 80) as u64 | (1 << 62), IpAddr::from(net.to_be_bytes()))
        }
    }
}

/// A 64-bit finalizer (MurmurHash3's): spreads a network key over the
/// cache's slots and tag.
#[inline]
fn mix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmdb::{Entry, Writer, lab_database};

    #[test]
    fn country_codes_round_trip_and_junk_is_unknown() {
        assert_eq!(country_code(country("de")), "DE");
        assert_eq!(country_code(country("ZZ")), "ZZ");
        assert_eq!(country("A1x"), UNKNOWN);
        assert_eq!(country("é"), UNKNOWN);
        assert_eq!(country_code(UNKNOWN), "--");
    }

    #[test]
    fn written_databases_are_read_back_through_the_cache() {
        let db = GeoDb::from_bytes(Some(lab_database(&["DE", "FR"], 3)), Some(lab_database(&["DE", "FR"], 3)))
            .expect("lab database");
        let de = db.place("127.1.2.9".parse().expect("addr"));
        assert_eq!(de, Place { country: country("DE"), asn: 64_512 + 100 + 2 });
        // Second time from the cache, same answer.
        assert_eq!(db.place("127.1.2.200".parse().expect("addr")), de);
        assert_eq!(db.place("127.2.0.1".parse().expect("addr")).country, country("FR"));
        assert_eq!(db.place("127.0.0.1".parse().expect("addr")), Place::default());
        assert_eq!(db.place("::ffff:127.2.1.1".parse().expect("addr")).asn, 64_512 + 200 + 1);
        assert_eq!(db.place("2001:db8::1".parse().expect("addr")), Place::default());
    }

    #[test]
    fn ipv6_and_nested_networks() {
        let mut w = Writer::new("test");
        let e = |c: &str, a| Entry { country: Some(c.into()), asn: Some(a), org: None };
        w.insert("2001:db8::".parse().expect("net"), 32, &e("NL", 1));
        w.insert("2001:db8:5::".parse().expect("net"), 48, &e("BE", 2));
        w.insert("10.0.0.0".parse().expect("net"), 8, &e("US", 3));
        w.insert("10.1.0.0".parse().expect("net"), 16, &e("CA", 4));
        let db = GeoDb::from_bytes(Some(w.finish()), Some(w.finish())).expect("db");
        let at = |a: &str| db.place(a.parse().expect("addr"));
        assert_eq!(at("2001:db8:7::1"), Place { country: country("NL"), asn: 1 });
        assert_eq!(at("2001:db8:5::1"), Place { country: country("BE"), asn: 2 });
        assert_eq!(at("10.9.9.9"), Place { country: country("US"), asn: 3 });
        assert_eq!(at("10.1.9.9"), Place { country: country("CA"), asn: 4 });
    }

    #[test]
    fn broken_files_are_refused_with_their_name() {
        let dir = std::env::temp_dir().join(format!("onedot-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let junk = dir.join("junk.mmdb");
        std::fs::write(&junk, b"not a database").expect("write");
        let whole = lab_database(&["DE"], 1);
        let cut = dir.join("cut.mmdb");
        std::fs::write(&cut, &whole[..whole.len() / 2]).expect("write");
        for path in [junk.as_path(), cut.as_path(), dir.join("missing.mmdb").as_path()] {
            let e = GeoDb::open(Some(path), None).expect_err("must be refused");
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
