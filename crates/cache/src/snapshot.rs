//! Cache snapshots: both caches written to bytes on the way down and read
//! back at start, so that a restart or an upgrade does not begin cold.
//!
//! Layout (integers big-endian): the magic `onedot-cache`, the version
//! (u16), the caller's fingerprint (32 bytes: what the cached data depends
//! on, such as the trust anchors), the time written (u64), the filtering
//! profiles' names (u16 count, then a u8 length and the name each), the
//! answers' and the RRsets' counts (u32 each), the answers, the RRsets,
//! and SHA-256 of everything before it.
//!
//! An answer: its profile's index in the table (u8), the DO/CD bits of
//! its variant (u8), stored at (u64), TTL (u32), an EDE flag (u8) with
//! code (u16) and text (u16 length) when set, the response (u16 length).
//! An RRset: its entry's bytes (u32 length).
//!
//! Times are absolute, so an entry read back has aged by the time the node
//! was down; what has expired past the stale window is left out. Every
//! answer and entry is checked as it is read ([`CachedAnswer::from_wire`],
//! [`RrsetEntry::from_bytes`]), after the checksum: a snapshot is never
//! trusted to be well formed.

use std::sync::Arc;

use crate::{AnswerCache, CachedAnswer, Freshness, RrsetCache, RrsetEntry};

const MAGIC: &[u8; 12] = b"onedot-cache";
/// The snapshot format this build writes and reads.
pub const VERSION: u16 = 1;
const DIGEST_LEN: usize = 32;

/// Why a snapshot was not loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a snapshot at all.
    #[error("not a onedot cache snapshot")]
    NotASnapshot,
    /// Written by a build with another format.
    #[error("snapshot format version {0}; this build reads version {VERSION}")]
    Version(u16),
    /// The checksum does not match: cut short or damaged.
    #[error("the snapshot's checksum does not match: it is damaged or cut short")]
    Checksum,
    /// Written under another fingerprint (another node, trust anchors or
    /// validation setting).
    #[error("the snapshot was written under another configuration (node, trust anchors or validation)")]
    Foreign,
    /// Well summed but not well formed.
    #[error("the snapshot is malformed at byte {0}")]
    Malformed(usize),
}

/// What a snapshot held, or what was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Answers written or loaded.
    pub answers: usize,
    /// RRset and negative entries written or loaded.
    pub rrsets: usize,
    /// Left out: expired, refused by the caller, or not well formed.
    pub skipped: usize,
}

/// Which entries may outlive the process.
pub struct Keep<A, R> {
    /// An answer under a profile id (one that depends on a block list
    /// should not).
    pub answer: A,
    /// An RRset or negative entry.
    pub rrset: R,
}

/// Writes both caches. `profiles` names the filtering profiles by id;
/// `keep` says which entries may outlive the process. Entries too old to
/// serve at `now` are left out.
pub fn write<A, R>(
    answers: &AnswerCache,
    rrsets: &RrsetCache,
    fingerprint: &[u8; 32],
    now: u64,
    profiles: &[String],
    keep: Keep<A, R>,
) -> (Vec<u8>, Counts)
where
    A: Fn(u8, &CachedAnswer) -> bool,
    R: Fn(&RrsetEntry) -> bool,
{
    let mut out = Vec::with_capacity(((answers.weight() + rrsets.weight()) / 2) as usize + 4096);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(fingerprint);
    out.extend_from_slice(&now.to_be_bytes());
    let profiles = &profiles[..profiles.len().min(64)];
    out.extend_from_slice(&(profiles.len() as u16).to_be_bytes());
    for name in profiles {
        // At most 255 bytes, cut at a character boundary.
        let end = (0..=name.len().min(255)).rev().find(|&i| name.is_char_boundary(i)).unwrap_or(0);
        let name = &name.as_bytes()[..end];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
    }
    let counts_at = out.len();
    out.extend_from_slice(&[0; 8]);
    let mut counts = Counts::default();
    answers.for_each(|variant, a| {
        let profile = variant >> 2;
        let usable = a.freshness(now, answers.policy()) != Freshness::Expired;
        if !usable || usize::from(profile) >= profiles.len() || !(keep.answer)(profile, a) {
            counts.skipped += 1;
            return;
        }
        out.push(profile);
        out.push(variant & 3);
        out.extend_from_slice(&a.stored_at().to_be_bytes());
        out.extend_from_slice(&a.ttl().to_be_bytes());
        match a.ede() {
            Some((code, text)) => {
                let text = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
                out.push(1);
                out.extend_from_slice(&code.to_be_bytes());
                out.extend_from_slice(&(text.len() as u16).to_be_bytes());
                out.extend_from_slice(text);
            }
            None => out.push(0),
        }
        // A stored response is at most 65535 bytes (its offsets are u16).
        out.extend_from_slice(&(a.wire().len() as u16).to_be_bytes());
        out.extend_from_slice(a.wire());
        counts.answers += 1;
    });
    rrsets.for_each(|e| {
        if e.freshness(now, rrsets.policy()) == Freshness::Expired || !(keep.rrset)(e) {
            counts.skipped += 1;
            return;
        }
        out.extend_from_slice(&(e.as_bytes().len() as u32).to_be_bytes());
        out.extend_from_slice(e.as_bytes());
        counts.rrsets += 1;
    });
    out[counts_at..counts_at + 4].copy_from_slice(&(counts.answers as u32).to_be_bytes());
    out[counts_at + 4..counts_at + 8].copy_from_slice(&(counts.rrsets as u32).to_be_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &out);
    out.extend_from_slice(digest.as_ref());
    (out, counts)
}

/// Reads through bytes, naming where they ran out.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        let s = self.b.get(self.at..self.at + n).ok_or(SnapshotError::Malformed(self.at))?;
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, SnapshotError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    }
}

/// Checks a snapshot's magic, version and checksum, and returns its
/// fingerprint and when it was written.
pub fn header(bytes: &[u8]) -> Result<([u8; 32], u64), SnapshotError> {
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let version = u16::from_be_bytes([bytes[MAGIC.len()], bytes[MAGIC.len() + 1]]);
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    let Some(body_len) = bytes.len().checked_sub(DIGEST_LEN) else { return Err(SnapshotError::Checksum) };
    let (body, digest) = bytes.split_at(body_len);
    if ring::digest::digest(&ring::digest::SHA256, body).as_ref() != digest {
        return Err(SnapshotError::Checksum);
    }
    let mut c = Cursor { b: body, at: MAGIC.len() + 2 };
    let fingerprint: [u8; 32] = c.take(32)?.try_into().map_err(|_| SnapshotError::Malformed(c.at))?;
    Ok((fingerprint, c.u64()?))
}

/// Slack for a clock stepped back a little between write and read.
const CLOCK_SLACK: u64 = 300;

/// Whether an entry could have been stored under `policy` by now: not in
/// the future (a clock that was ahead would keep it fresh for ever), and
/// with no TTL above what the policy stores.
fn plausible(stored_at: u64, ttl: u32, now: u64, policy: &crate::TtlPolicy) -> bool {
    stored_at <= now + CLOCK_SLACK && ttl <= policy.max_ttl.max(policy.max_negative_ttl)
}

/// Loads a snapshot into the caches. `profile` maps a profile's name to
/// its id now and the generation to tag its answers with, or `None` when
/// its answers must not be served (the profile is gone or now filters).
/// Entries too old to serve at `now` are left out; an answer or entry that
/// is not well formed is skipped.
pub fn read(
    bytes: &[u8],
    fingerprint: &[u8; 32],
    now: u64,
    answers: &AnswerCache,
    rrsets: &RrsetCache,
    profile: impl Fn(&str) -> Option<(u8, u32)>,
) -> Result<Counts, SnapshotError> {
    let (theirs, _) = header(bytes)?;
    if &theirs != fingerprint {
        return Err(SnapshotError::Foreign);
    }
    let body = &bytes[..bytes.len() - DIGEST_LEN];
    let mut c = Cursor { b: body, at: MAGIC.len() + 2 + 32 + 8 };
    let mut table = Vec::new();
    for _ in 0..c.u16()? {
        let n = usize::from(c.u8()?);
        let name = std::str::from_utf8(c.take(n)?).map_err(|_| SnapshotError::Malformed(c.at))?;
        table.push(profile(name));
    }
    let (n_answers, n_rrsets) = (c.u32()?, c.u32()?);
    let mut counts = Counts::default();
    for _ in 0..n_answers {
        let (p, bits, stored_at, ttl) = (c.u8()?, c.u8()?, c.u64()?, c.u32()?);
        let ede = match c.u8()? {
            0 => None,
            _ => {
                let code = c.u16()?;
                let n = usize::from(c.u16()?);
                let text = String::from_utf8_lossy(c.take(n)?);
                Some((code, text.into()))
            }
        };
        let n = usize::from(c.u16()?);
        let wire = c.take(n)?;
        let Some(Some((id, tag))) = table.get(usize::from(p)) else {
            counts.skipped += 1;
            continue;
        };
        let answer = CachedAnswer::from_wire(wire, stored_at, ttl, ede).map(|a| a.with_policy(*tag, None));
        match answer {
            Some(a)
                if bits < 4
                    && plausible(stored_at, ttl, now, answers.policy())
                    && a.freshness(now, answers.policy()) != Freshness::Expired =>
            {
                answers.insert_answer(bits | id << 2, Arc::new(a));
                counts.answers += 1;
            }
            _ => counts.skipped += 1,
        }
    }
    for _ in 0..n_rrsets {
        let n = c.u32()? as usize;
        match RrsetEntry::from_bytes(c.take(n)?) {
            Some(e)
                if plausible(e.stored_at(), e.ttl(), now, rrsets.policy())
                    && e.freshness(now, rrsets.policy()) != Freshness::Expired =>
            {
                rrsets.insert_entry(e, now);
                counts.rrsets += 1;
            }
            _ => counts.skipped += 1,
        }
    }
    if c.at != body.len() {
        return Err(SnapshotError::Malformed(c.at));
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Negative, Rank, Security, TtlPolicy, variant};
    use proto::build::Section;
    use proto::wire::{flags, rtype};
    use proto::{MessageWriter, Name, QueryView, Record};

    const NOW: u64 = 1_800_000_000;
    const FP: [u8; 32] = [7; 32];

    fn record(name: &str, rtype: u16, ttl: u32, rdata: &[u8]) -> Record {
        Record { name: Name::from_ascii(name).expect("name"), rtype, class: 1, ttl, rdata: rdata.into() }
    }

    /// A response with a compressed answer and an authority record.
    fn answer(name: &str, ttl: u32, stored_at: u64) -> CachedAnswer {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, 0, flags::QR | flags::RA).track_ttls();
        let n = Name::from_ascii(name).expect("name");
        w.question(n.as_wire(), rtype::A, 1);
        w.record(Section::Answer, &record(name, rtype::A, ttl, &[192, 0, 2, 10]));
        w.record(Section::Authority, &record("test", rtype::NS, ttl, b"\x02ns\x04test\x00"));
        let offs = w.ttl_offsets();
        w.finish();
        CachedAnswer::new(buf.into(), offs.into(), stored_at, ttl, Some((3, "stale".into())))
    }

    fn query(name: &str, dnssec_ok: bool) -> Vec<u8> {
        let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(Name::from_ascii(name).expect("name").as_wire());
        q.extend_from_slice(&[0, 1, 0, 1, 0, 0, 41, 0x04, 0xd0, 0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        q
    }

    fn caches() -> (AnswerCache, RrsetCache) {
        (AnswerCache::new(1 << 20, TtlPolicy::default()), RrsetCache::new(1 << 20, TtlPolicy::default()))
    }

    fn filled() -> (AnswerCache, RrsetCache) {
        let (answers, rrsets) = caches();
        let key = |name: &str| Name::from_ascii(name).expect("name").as_wire().to_vec();
        answers.insert(
            &key("www.example.test"),
            rtype::A,
            1,
            variant(false, false, 0),
            answer("www.example.test", 300, NOW - 100).into(),
        );
        answers.insert(
            &key("www.example.test"),
            rtype::A,
            1,
            variant(true, false, 0),
            answer("www.example.test", 300, NOW - 100).into(),
        );
        answers.insert(
            &key("kids.example.test"),
            rtype::A,
            1,
            variant(false, false, 1),
            answer("kids.example.test", 300, NOW).into(),
        );
        answers.insert(&key("old.example.test"), rtype::A, 1, 0, answer("old.example.test", 60, NOW - 100_000).into());
        let sig = record(
            "www.example.test",
            rtype::RRSIG,
            300,
            &[0u8; 18].iter().copied().chain(*b"\x07example\x04test\x00").chain([9; 64]).collect::<Vec<u8>>(),
        );
        rrsets.insert_validated(
            vec![record("www.example.test", rtype::A, 300, &[192, 0, 2, 1])],
            vec![sig],
            Security::Secure,
            Rank::Authoritative,
            NOW - 50,
        );
        let soa = record(
            "example.test",
            rtype::SOA,
            3600,
            b"\x02ns\x00\x05admin\x00\x00\x00\x00\x01\x00\x00\x0e\x10\x00\x00\x0e\x10\x00\x00\x0e\x10\x00\x00\x01\x2c",
        );
        rrsets.insert_negative(
            &Name::from_ascii("nx.example.test").expect("name"),
            rtype::A,
            Negative::NxDomain,
            Some(soa),
            Rank::Authoritative,
            NOW - 10,
        );
        rrsets.insert_rrset(
            vec![record("gone.example.test", rtype::A, 30, &[192, 0, 2, 9])],
            Rank::Authoritative,
            NOW - 100_000,
        );
        (answers, rrsets)
    }

    fn profiles() -> Vec<String> {
        vec!["unfiltered".into(), "family".into()]
    }

    fn all() -> Keep<impl Fn(u8, &CachedAnswer) -> bool, impl Fn(&RrsetEntry) -> bool> {
        Keep { answer: |_, _: &CachedAnswer| true, rrset: |_: &RrsetEntry| true }
    }

    fn unfiltered_only(name: &str) -> Option<(u8, u32)> {
        (name == "unfiltered").then_some((0, 5))
    }

    #[test]
    fn a_snapshot_carries_both_caches_aged_across_a_restart() {
        let (answers, rrsets) = filled();
        let (bytes, written) = write(
            &answers,
            &rrsets,
            &FP,
            NOW,
            &profiles(),
            Keep { answer: |_, a: &CachedAnswer| !a.counts_hits(), rrset: |_: &RrsetEntry| true },
        );
        assert_eq!(written, Counts { answers: 3, rrsets: 2, skipped: 2 }, "the expired ones are left out");
        assert_eq!(header(&bytes), Ok((FP, NOW)));

        let (a2, r2) = caches();
        let later = NOW + 60;
        let loaded = read(&bytes, &FP, later, &a2, &r2, unfiltered_only).expect("loads");
        assert_eq!(loaded, Counts { answers: 2, rrsets: 2, skipped: 1 }, "the family profile's answer is not served");
        for dnssec_ok in [false, true] {
            let q = query("WWW.example.test", dnssec_ok);
            let view = QueryView::parse(&q).expect("query");
            let hit = a2.get(&view, 0).expect("answer back under its variant");
            assert_eq!((hit.tag(), hit.stored_at(), hit.ttl()), (5, NOW - 100, 300));
            assert_eq!(hit.ede(), Some((3, "stale")));
            assert_eq!(hit.freshness(later, a2.policy()), Freshness::Fresh);
        }
        let www = r2.get(&Name::from_ascii("www.example.test").expect("name"), rtype::A, later).expect("rrset");
        assert_eq!((www.security(), www.rank(), www.remaining(later)), (Security::Secure, Rank::Authoritative, 190));
        assert_eq!(www.dnssec_at(later).len(), 1);
        let nx = r2.get(&Name::from_ascii("nx.example.test").expect("name"), rtype::AAAA, later).expect("nx");
        assert_eq!(nx.negative(), Some(Negative::NxDomain));
        assert!(nx.soa_at(later).is_some());
    }

    #[test]
    fn foreign_damaged_and_other_version_snapshots_are_refused_whole() {
        let (answers, rrsets) = filled();
        let (bytes, _) = write(&answers, &rrsets, &FP, NOW, &profiles(), all());
        let (a2, r2) = caches();
        assert_eq!(read(&bytes, &[8; 32], NOW, &a2, &r2, unfiltered_only), Err(SnapshotError::Foreign));
        let mut flipped = bytes.clone();
        flipped[100] ^= 1;
        assert_eq!(read(&flipped, &FP, NOW, &a2, &r2, unfiltered_only), Err(SnapshotError::Checksum));
        assert_eq!(read(&bytes[..bytes.len() - 1], &FP, NOW, &a2, &r2, unfiltered_only), Err(SnapshotError::Checksum));
        let mut v2 = bytes.clone();
        v2[13] = 2;
        assert_eq!(read(&v2, &FP, NOW, &a2, &r2, unfiltered_only), Err(SnapshotError::Version(2)));
        assert_eq!(read(b"{\"json\": true}", &FP, NOW, &a2, &r2, unfiltered_only), Err(SnapshotError::NotASnapshot));
        assert_eq!(read(b"", &FP, NOW, &a2, &r2, unfiltered_only), Err(SnapshotError::NotASnapshot));
        assert!(a2.is_empty() && r2.is_empty());
    }

    /// Re-sums a body after changing it, as a crafted file would.
    fn resum(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
        out
    }

    #[test]
    fn crafted_snapshots_with_a_good_checksum_never_panic_nor_load_garbage() {
        let (answers, rrsets) = filled();
        let (bytes, _) = write(&answers, &rrsets, &FP, NOW, &profiles(), all());
        let body = &bytes[..bytes.len() - DIGEST_LEN];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let header_len = MAGIC.len() + 2 + 32 + 8;
        for round in 0..20_000 {
            let mut b = body.to_vec();
            for _ in 0..1 + round % 4 {
                if b.len() <= header_len {
                    break;
                }
                let at = header_len + (next() as usize) % (b.len() - header_len);
                match next() % 3 {
                    0 => b[at] ^= 1 << (next() % 8),
                    1 => b[at] = next() as u8,
                    _ => {
                        b.truncate(at);
                    }
                }
            }
            let (a2, r2) = caches();
            // Whatever it says, what is loaded reads back without panicking.
            let _ = read(&resum(&b), &FP, NOW, &a2, &r2, |_| Some((0, 1)));
            r2.for_each(|e| {
                let _ = (e.records_at(NOW), e.soa_at(NOW), e.dnssec_at(NOW), e.owner());
            });
            a2.for_each(|_, a| {
                let _ = (a.question(), a.answer_count(), a.rcode());
            });
        }
    }

    #[test]
    fn entries_survive_their_bytes_and_refuse_any_change() {
        let (_, rrsets) = filled();
        let mut n = 0;
        rrsets.for_each(|e| {
            let b = e.as_bytes();
            assert_eq!(RrsetEntry::from_bytes(b).as_ref(), Some(e));
            let mut longer = b.to_vec();
            longer.push(0);
            assert_eq!(RrsetEntry::from_bytes(&longer), None, "trailing bytes");
            assert_eq!(RrsetEntry::from_bytes(&b[..b.len() - 1]), None, "cut short");
            n += 1;
        });
        assert_eq!(n, 3);
        let a = answer("www.example.test", 300, NOW);
        let back = CachedAnswer::from_wire(a.wire(), NOW, 300, None).expect("answer");
        assert_eq!(back.wire(), a.wire());
        assert_eq!(CachedAnswer::from_wire(&a.wire()[..a.wire().len() - 1], NOW, 300, None).map(|_| ()), None);
        let mut longer = a.wire().to_vec();
        longer.push(0);
        assert_eq!(CachedAnswer::from_wire(&longer, NOW, 300, None).map(|_| ()), None);
    }
}
