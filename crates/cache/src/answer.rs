//! The answer cache: whole wire responses keyed by question.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::wire::{HEADER_LEN, OPT_EDE, Rcode, flags, rtype};
use proto::{QueryView, name::MAX_NAME_LEN};
use quick_cache::{DefaultHashBuilder, Weighter, sync::Cache};

use crate::{SLOT_COST, STALE_TTL, TtlPolicy, heap_cost};

/// Key: a keyed hash of the lower-cased qname and the class, with the type
/// and a variant byte (DO/CD bits and the filtering profile) beside it, so
/// answers with and without DNSSEC records never mix. The name itself is not
/// kept in the key (a lookup follows one pointer, to the answer, and an
/// entry carries no copy of its name): a hit checks the question inside the
/// stored answer, so a hash collision, by chance or aimed, is a miss, never
/// a wrong answer (the hash is seeded per process; it is fast, not
/// collision-proof, so the worst an aimed collision can do is evict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    name: u64,
    qtype: u16,
    variant: u8,
}

/// A cached response.
#[derive(Debug)]
pub struct CachedAnswer {
    /// The response without OPT, as first built (ID 0).
    wire: Box<[u8]>,
    /// Offsets of every record TTL in `wire`.
    ttl_offsets: Box<[u16]>,
    /// Unix time the answer was stored.
    stored_at: u64,
    /// Seconds the answer stays fresh (the smallest TTL in it).
    ttl: u32,
    /// Extended DNS Errors to repeat with the answer (code, text).
    ede: Option<(u16, Box<str>)>,
    /// The filtering generation the answer was decided under; an answer
    /// from another generation is not served.
    tag: u32,
    /// For blocked answers: the block counter each copy served adds to.
    hits: Option<Arc<AtomicU64>>,
    /// Set by the hit that asks for this answer to be refreshed ahead of
    /// its expiry, so only one does.
    prefetching: std::sync::atomic::AtomicBool,
}

/// Answers fresh for less than this are not refreshed ahead of expiry: a
/// short TTL is the zone asking to be asked again.
pub const PREFETCH_MIN_TTL: u32 = 10;

/// Whether a cached answer is still fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Within its TTL.
    Fresh,
    /// Expired, but within the stale window.
    Stale,
    /// Too old to use at all.
    Expired,
}

/// How to write a cached answer for one client.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Unix time now.
    pub now: u64,
    /// Largest response allowed (client's UDP size, or 65535 on streams).
    pub limit: usize,
    /// Serve as stale: TTLs become [`STALE_TTL`] and EDE 3 is added.
    pub stale: bool,
    /// Our EDNS UDP payload size to advertise.
    pub udp_size: u16,
    /// Pad the response to a multiple of this many octets (RFC 8467), when
    /// the client asked on an encrypted transport.
    pub pad_block: Option<usize>,
}

/// The block size RFC 8467 recommends for padded responses.
pub const RESPONSE_PAD_BLOCK: usize = 468;

impl CachedAnswer {
    /// Wraps a response built by the resolver. `wire` must have no OPT
    /// record; `ttl_offsets` are the positions of its TTLs; `ttl` is how
    /// long it stays fresh; `ede` is repeated with every copy served.
    pub fn new(
        wire: Box<[u8]>,
        ttl_offsets: Box<[u16]>,
        stored_at: u64,
        ttl: u32,
        ede: Option<(u16, Box<str>)>,
    ) -> CachedAnswer {
        CachedAnswer {
            wire,
            ttl_offsets,
            stored_at,
            ttl,
            ede,
            tag: 0,
            hits: None,
            prefetching: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Marks the answer with the filtering generation it was decided under
    /// and, for a blocked answer, the counter its hits add to.
    pub fn with_policy(mut self, tag: u32, hits: Option<Arc<AtomicU64>>) -> CachedAnswer {
        self.tag = tag;
        self.hits = hits;
        self
    }

    /// Whether a hit at `now` should have the answer resolved again before
    /// it expires (Unbound's `prefetch`): in the last tenth of a TTL of
    /// `PREFETCH_MIN_TTL` (10 s) or more, not for failures or blocked answers,
    /// and only for the first hit that finds it so.
    pub fn claim_prefetch(&self, now: u64) -> bool {
        self.ttl >= PREFETCH_MIN_TTL
            && now + u64::from(self.ttl / 10) >= self.stored_at + u64::from(self.ttl)
            && self.hits.is_none()
            && !self.is_failure()
            && !self.prefetching.swap(true, Ordering::Relaxed)
    }

    /// The filtering generation it was decided under.
    #[inline]
    pub fn tag(&self) -> u32 {
        self.tag
    }

    /// Counts one copy served, for answers that carry a counter.
    #[inline]
    pub fn count_hit(&self) {
        if let Some(h) = &self.hits {
            h.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Seconds the answer stays fresh after it was stored.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// Unix time the answer was stored.
    pub fn stored_at(&self) -> u64 {
        self.stored_at
    }

    /// Freshness at `now` under `policy`. A cached resolution failure is
    /// never stale: once its time is up it is gone (RFC 9520).
    #[inline]
    pub fn freshness(&self, now: u64, policy: &TtlPolicy) -> Freshness {
        match crate::freshness(self.stored_at, self.ttl, now, policy) {
            Freshness::Stale if self.is_failure() => Freshness::Expired,
            f => f,
        }
    }

    /// The stored response's RCODE.
    pub fn rcode(&self) -> u8 {
        self.wire[3] & 0x0f
    }

    /// Whether this answers (`qname` in any case, `qtype`, `qclass`): the
    /// check that makes a key's hash collision a miss.
    #[inline]
    fn answers(&self, qname: &[u8], qtype: u16, qclass: u16) -> bool {
        let end = HEADER_LEN + qname.len();
        let [t0, t1] = qtype.to_be_bytes();
        let [c0, c1] = qclass.to_be_bytes();
        self.wire.get(HEADER_LEN..end).is_some_and(|n| n.eq_ignore_ascii_case(qname))
            && self.wire.get(end..end + 4) == Some(&[t0, t1, c0, c1][..])
    }

    /// The question's name (wire form, as first asked) and type.
    pub fn question(&self) -> Option<(&[u8], u16)> {
        let mut pos = HEADER_LEN;
        loop {
            let len = usize::from(*self.wire.get(pos)?);
            if len == 0 {
                break;
            }
            if len & 0xc0 != 0 {
                return None;
            }
            pos += 1 + len;
        }
        let name = self.wire.get(HEADER_LEN..=pos)?;
        let t = self.wire.get(pos + 1..pos + 3)?;
        Some((name, u16::from_be_bytes([t[0], t[1]])))
    }

    /// Records in the answer section.
    pub fn answer_count(&self) -> u16 {
        self.wire.get(6..8).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// Whether this is a cached resolution failure (SERVFAIL).
    pub fn is_failure(&self) -> bool {
        self.rcode() == Rcode::ServFail as u8
    }

    /// The response as stored (ID 0, no OPT), for a snapshot.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// The Extended DNS Error repeated with it.
    pub fn ede(&self) -> Option<(u16, &str)> {
        self.ede.as_ref().map(|(c, t)| (*c, &**t))
    }

    /// Whether each copy served adds to a block counter (a blocked answer).
    pub fn counts_hits(&self) -> bool {
        self.hits.is_some()
    }

    /// An answer from a snapshot: `wire` must be a response with its
    /// question and no OPT record, every record whole and nothing after
    /// the last; the TTL offsets are found again by walking it. `None`
    /// when it is not.
    pub fn from_wire(wire: &[u8], stored_at: u64, ttl: u32, ede: Option<(u16, Box<str>)>) -> Option<CachedAnswer> {
        // An EDE text as long as ours ever are: the OPT it goes into must fit.
        if ede.as_ref().is_some_and(|(_, t)| t.len() > MAX_EDE_TEXT) {
            return None;
        }
        let offsets = ttl_offsets(wire)?;
        let answer = CachedAnswer::new(wire.into(), offsets.into(), stored_at, ttl, ede);
        answer.question()?;
        Some(answer)
    }

    /// Writes the answer for `query` into `out` (cleared first). Allocation
    /// free when `out` already has room. Returns the response length.
    pub fn write(&self, query: &QueryView<'_>, opts: &WriteOptions, out: &mut Vec<u8>) -> usize {
        out.clear();
        out.extend_from_slice(&self.wire);
        out[0..2].copy_from_slice(&query.id.to_be_bytes());
        let stored = u16::from_be_bytes([out[2], out[3]]);
        let client = query.flags & (flags::RD | flags::CD);
        let mut fl = (stored & !(flags::RD | flags::CD)) | client;
        // AD only for clients that asked for it, with DO or AD (RFC 6840 §5.8).
        if query.flags & flags::AD == 0 && !query.edns.is_some_and(|e| e.dnssec_ok) {
            fl &= !flags::AD;
        }
        out[2..4].copy_from_slice(&fl.to_be_bytes());
        // The question keeps the client's case (0x20 mixing survives).
        let qend = HEADER_LEN + query.qname.len();
        if out.len() >= qend {
            out[HEADER_LEN..qend].copy_from_slice(query.qname);
        }
        let elapsed = opts.now.saturating_sub(self.stored_at).min(u32::MAX as u64) as u32;
        for &off in self.ttl_offsets.iter() {
            let at = off as usize;
            let orig = u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
            let ttl = if opts.stale { STALE_TTL.min(orig) } else { orig.saturating_sub(elapsed) };
            out[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
        }
        let stale_ede = opts.stale.then_some((proto::ede::code::STALE_ANSWER, ""));
        let ede = self.ede.as_ref().map(|(c, t)| (*c, &**t));
        if let Some(edns) = query.edns {
            append_opt(out, opts.udp_size, edns.dnssec_ok, ede.into_iter().chain(stale_ede), opts.pad_block);
        }
        if out.len() > opts.limit {
            truncate(out, query);
            if let Some(edns) = query.edns {
                append_opt(out, opts.udp_size, edns.dnssec_ok, std::iter::empty(), None);
            }
        }
        out.len()
    }
}

/// Appends an OPT record and bumps ARCOUNT.
fn append_opt<'a>(
    out: &mut Vec<u8>,
    udp_size: u16,
    dnssec_ok: bool,
    edes: impl Iterator<Item = (u16, &'a str)>,
    pad_block: Option<usize>,
) {
    out.push(0);
    out.extend_from_slice(&rtype::OPT.to_be_bytes());
    out.extend_from_slice(&udp_size.to_be_bytes());
    let ttl: u32 = if dnssec_ok { proto::wire::EDNS_DO } else { 0 };
    out.extend_from_slice(&ttl.to_be_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    for (code, text) in edes {
        out.extend_from_slice(&OPT_EDE.to_be_bytes());
        out.extend_from_slice(&((2 + text.len()) as u16).to_be_bytes());
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    if let Some(block) = pad_block.filter(|b| *b > 0) {
        let pad = (block - (out.len() + 4) % block) % block;
        out.extend_from_slice(&proto::wire::OPT_PADDING.to_be_bytes());
        out.extend_from_slice(&(pad as u16).to_be_bytes());
        out.resize(out.len() + pad, 0);
    }
    let rdlen = (out.len() - len_at - 2) as u16;
    out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    let ar = u16::from_be_bytes([out[10], out[11]]).saturating_add(1);
    out[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Cuts a response down to header and question with TC set.
fn truncate(out: &mut Vec<u8>, query: &QueryView<'_>) {
    out.truncate(query.question_end.min(out.len()));
    let fl = u16::from_be_bytes([out[2], out[3]]) | flags::TC;
    out[2..4].copy_from_slice(&fl.to_be_bytes());
    out[6..12].fill(0);
}

#[derive(Clone)]
struct ByteWeighter;

impl Weighter<Key, Arc<CachedAnswer>> for ByteWeighter {
    fn weight(&self, _key: &Key, val: &Arc<CachedAnswer>) -> u64 {
        // Every allocation the entry owns, at what malloc charges for it.
        let ede = val.ede.as_ref().map_or(0, |(_, t)| heap_cost(t.len()));
        (heap_cost(16 + std::mem::size_of::<CachedAnswer>())
            + heap_cost(val.wire.len())
            + heap_cost(2 * val.ttl_offsets.len())
            + ede
            + SLOT_COST) as u64
    }
}

/// The longest EDE text an answer from a snapshot may carry.
const MAX_EDE_TEXT: usize = 1024;

/// The position just past the (possibly compressed) name at `at`.
fn skip_name(wire: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *wire.get(at)?;
        match len & 0xc0 {
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(len),
            0xc0 => return wire.get(at + 1).map(|_| at + 2),
            _ => return None,
        }
    }
}

/// The offset of every record's TTL in a response with one question and
/// no OPT record; `None` unless the records end exactly at its end.
fn ttl_offsets(wire: &[u8]) -> Option<Vec<u16>> {
    if wire.len() < HEADER_LEN || wire.len() > usize::from(u16::MAX) || wire[4..6] != [0, 1] {
        return None;
    }
    let count = |i: usize| usize::from(u16::from_be_bytes([wire[i], wire[i + 1]]));
    let records = count(6) + count(8) + count(10);
    let mut at = skip_name(wire, HEADER_LEN)? + 4;
    let mut offsets = Vec::with_capacity(records);
    for _ in 0..records {
        at = skip_name(wire, at)?;
        let fixed = wire.get(at..at + 10)?;
        if u16::from_be_bytes([fixed[0], fixed[1]]) == rtype::OPT {
            return None;
        }
        offsets.push((at + 4) as u16);
        at += 10 + usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    }
    (at == wire.len()).then_some(offsets)
}

/// Whole responses keyed by question, bounded by bytes.
pub struct AnswerCache {
    entries: Cache<Key, Arc<CachedAnswer>, ByteWeighter>,
    names: DefaultHashBuilder,
    policy: TtlPolicy,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("entries", &self.entries.len())
            .field("bytes", &self.entries.weight())
            .finish()
    }
}

/// Variant byte for a query: DO and CD change what an answer contains,
/// and each filtering profile (id below 64) has answers of its own.
pub fn variant(dnssec_ok: bool, checking_disabled: bool, profile: u8) -> u8 {
    dnssec_ok as u8 | (checking_disabled as u8) << 1 | (profile & 0x3f) << 2
}

impl AnswerCache {
    /// A cache holding at most `max_bytes` of answers.
    pub fn new(max_bytes: u64, policy: TtlPolicy) -> AnswerCache {
        let items = (max_bytes / 256).max(16) as usize;
        AnswerCache {
            entries: Cache::with_weighter(items, max_bytes.max(4096), ByteWeighter),
            names: DefaultHashBuilder::default(),
            policy,
        }
    }

    /// The TTL policy.
    pub fn policy(&self) -> &TtlPolicy {
        &self.policy
    }

    fn key(&self, qname: &[u8], qtype: u16, qclass: u16, variant: u8) -> Key {
        let mut lower = [0u8; MAX_NAME_LEN];
        let mut h = self.names.build_hasher();
        h.write(proto::name::lower_into(qname, &mut lower));
        h.write_u16(qclass);
        Key { name: h.finish(), qtype, variant }
    }

    /// Looks up the answer for a client query under a filtering profile.
    pub fn get(&self, query: &QueryView<'_>, profile: u8) -> Option<Arc<CachedAnswer>> {
        let dnssec_ok = query.edns.is_some_and(|e| e.dnssec_ok);
        let v = variant(dnssec_ok, query.checking_disabled(), profile);
        let key = self.key(query.qname, query.qtype, query.qclass, v);
        self.entries.get(&key).filter(|a| a.answers(query.qname, query.qtype, query.qclass))
    }

    /// Stores an answer for (qname, qtype, qclass, variant); its question
    /// must be that one.
    pub fn insert(&self, qname: &[u8], qtype: u16, qclass: u16, variant: u8, answer: Arc<CachedAnswer>) {
        debug_assert!(answer.answers(qname, qtype, qclass), "an answer cached under another question");
        self.entries.insert(self.key(qname, qtype, qclass, variant), answer);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes accounted to entries.
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }

    /// The configured bound in bytes.
    pub fn capacity(&self) -> u64 {
        self.entries.capacity()
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Keeps only the answers `keep` says yes to (for `onedot ctl flush`);
    /// returns how many went.
    pub fn retain(&self, keep: impl Fn(&CachedAnswer) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, a| keep(a));
        before.saturating_sub(self.entries.len())
    }

    /// Calls `f` with every answer and its variant byte (for a snapshot;
    /// answers added or evicted meanwhile may be seen or missed).
    pub fn for_each(&self, mut f: impl FnMut(u8, &Arc<CachedAnswer>)) {
        for (key, answer) in self.entries.iter() {
            f(key.variant, &answer);
        }
    }

    /// Stores an answer from a snapshot under its own question.
    pub fn insert_answer(&self, variant: u8, answer: Arc<CachedAnswer>) {
        let Some((qname, qtype)) = answer.question() else { return };
        let end = HEADER_LEN + qname.len();
        let qclass = answer.wire.get(end + 2..end + 4).map_or(1, |c| u16::from_be_bytes([c[0], c[1]]));
        let key = self.key(qname, qtype, qclass, variant);
        self.entries.insert(key, answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::build::Section;
    use proto::{Message, MessageWriter, Name, Record};

    fn response(ttl: u32) -> (Vec<u8>, Vec<u16>) {
        response_for("www.example.test", ttl)
    }

    fn response_for(name: &str, ttl: u32) -> (Vec<u8>, Vec<u16>) {
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, 0, flags::QR | flags::RA).track_ttls();
        let name = Name::from_ascii(name).expect("name");
        w.question(name.as_wire(), rtype::A, 1);
        let rec = Record { name, rtype: rtype::A, class: 1, ttl, rdata: Box::new([192, 0, 2, 10]) };
        w.record(Section::Answer, &rec);
        let offs = w.ttl_offsets();
        w.finish();
        (buf, offs)
    }

    fn query() -> Vec<u8> {
        let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(b"\x03WwW\x07example\x04test\x00\x00\x01\x00\x01");
        q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        q
    }

    #[test]
    fn hit_patches_id_case_and_ttl() {
        let cache = AnswerCache::new(1 << 20, TtlPolicy::default());
        let (wire, offs) = response(300);
        cache.insert(
            b"\x03www\x07example\x04test\x00",
            1,
            1,
            0,
            Arc::new(CachedAnswer::new(wire.into(), offs.into(), 1000, 300, None)),
        );
        let q = query();
        let view = QueryView::parse(&q).expect("query");
        let hit = cache.get(&view, 0).expect("hit");
        assert_eq!(hit.freshness(1100, cache.policy()), Freshness::Fresh);
        let mut out = Vec::with_capacity(512);
        let opts = WriteOptions { now: 1100, limit: 1232, stale: false, udp_size: 1232, pad_block: None };
        hit.write(&view, &opts, &mut out);
        let msg = Message::parse(&out).expect("valid response");
        assert_eq!(msg.id, 0xbeef);
        assert!(msg.has_flag(flags::RD));
        assert_eq!(msg.answer[0].ttl, 200);
        assert_eq!(&out[12..16], b"\x03WwW");
        assert!(msg.edns.is_some());

        let stale = WriteOptions { now: 1400, stale: true, ..opts };
        assert_eq!(hit.freshness(1400, cache.policy()), Freshness::Stale);
        hit.write(&view, &stale, &mut out);
        let msg = Message::parse(&out).expect("valid response");
        assert_eq!(msg.answer[0].ttl, STALE_TTL);
        assert_eq!(msg.ede()[0].0, proto::ede::code::STALE_ANSWER);
        assert_eq!(hit.freshness(1000 + 300 + 86_400, cache.policy()), Freshness::Expired);
    }

    #[test]
    fn a_key_collision_is_a_miss_not_a_wrong_answer() {
        let cache = AnswerCache::new(1 << 20, TtlPolicy::default());
        let (wire, offs) = response(300);
        let www = Arc::new(CachedAnswer::new(wire.into(), offs.into(), 1000, 300, None));
        // Forge a collision: another question's key holds www's answer.
        let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x04evil\x07example\x04test\x00\x00\x01\x00\x01");
        let view = QueryView::parse(&q).expect("query");
        cache.entries.insert(cache.key(view.qname, 1, 1, 0), www.clone());
        assert!(cache.get(&view, 0).is_none());
        // The same name with another type or class is not answered either.
        assert!(!www.answers(b"\x03www\x07example\x04test\x00", rtype::AAAA, 1));
        assert!(!www.answers(b"\x03www\x07example\x04test\x00", 1, 3));
        assert!(www.answers(b"\x03WWW\x07example\x04TEST\x00", 1, 1));
        assert!(!www.answers(b"\x03www\x07example\x00", 1, 1));
    }

    #[test]
    fn truncates_to_limit() {
        let cache = AnswerCache::new(1 << 20, TtlPolicy::default());
        let (wire, offs) = response(300);
        cache.insert(
            b"\x03www\x07example\x04test\x00",
            1,
            1,
            0,
            Arc::new(CachedAnswer::new(wire.into(), offs.into(), 0, 300, None)),
        );
        let q = query();
        let view = QueryView::parse(&q).expect("query");
        let hit = cache.get(&view, 0).expect("hit");
        let mut out = Vec::new();
        let opts = WriteOptions { now: 0, limit: 40, stale: false, udp_size: 1232, pad_block: None };
        hit.write(&view, &opts, &mut out);
        let msg = Message::parse(&out).expect("valid");
        assert!(msg.has_flag(flags::TC));
        assert!(msg.answer.is_empty());
    }

    #[test]
    fn stays_within_byte_bound() {
        let cache = AnswerCache::new(64 * 1024, TtlPolicy::default());
        for i in 0..10_000u32 {
            let (wire, offs) = response_for(&format!("n{i}.example.test"), 300);
            let name = Name::from_ascii(&format!("n{i}.example.test")).expect("name");
            cache.insert(name.as_wire(), 1, 1, 0, Arc::new(CachedAnswer::new(wire.into(), offs.into(), 0, 300, None)));
        }
        assert!(cache.weight() <= 64 * 1024, "weight {}", cache.weight());
        assert!(cache.len() > 100);
    }
}
