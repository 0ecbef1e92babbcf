//! Per-minute counts by (country, AS, door, rcode, EDE class) in fixed
//! tables of atomics: the query path adds to a cell with no lock and no
//! allocation; a writer thread takes each finished minute out.
//!
//! Two tables alternate by the parity of the minute. The query path reads
//! the current minute from an atomic the writer thread sets (no clock read
//! per query) and adds to that minute's table; the writer, after moving
//! the current minute on, drains the table of the minute that ended and
//! stamps it with the next minute of the same parity. A table that is not
//! stamped with the current minute (the writer is more than a minute
//! behind) is not written to; such queries are counted as late.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::geo::Country;

/// What the first Extended DNS Error of an answer says, in classes the
/// detectors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum EdeClass {
    /// No EDE.
    None = 0,
    /// Blocked, Censored, Filtered, Prohibited (15–18): a policy said no.
    Filtered = 1,
    /// A DNSSEC failure (1, 2, 5–12).
    Dnssec = 2,
    /// A stale answer (3, 19).
    Stale = 3,
    /// No Reachable Authority, Network Error (22, 23): upstream is down.
    Unreachable = 4,
    /// Any other code.
    Other = 5,
}

impl EdeClass {
    /// Every class, by number.
    pub const ALL: [EdeClass; 6] =
        [EdeClass::None, EdeClass::Filtered, EdeClass::Dnssec, EdeClass::Stale, EdeClass::Unreachable, EdeClass::Other];

    /// The class of an answer's first EDE code.
    pub fn of(code: Option<u16>) -> EdeClass {
        match code {
            None => EdeClass::None,
            Some(15..=18) => EdeClass::Filtered,
            Some(1 | 2 | 5..=12) => EdeClass::Dnssec,
            Some(3 | 19) => EdeClass::Stale,
            Some(22 | 23) => EdeClass::Unreachable,
            Some(_) => EdeClass::Other,
        }
    }

    /// Its name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EdeClass::None => "none",
            EdeClass::Filtered => "filtered",
            EdeClass::Dnssec => "dnssec",
            EdeClass::Stale => "stale",
            EdeClass::Unreachable => "unreachable",
            EdeClass::Other => "other",
        }
    }

    /// The class for a name from [`EdeClass::as_str`].
    pub fn parse(s: &str) -> Option<EdeClass> {
        EdeClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// One cell's coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellKey {
    /// See [`crate::geo::Country`].
    pub country: Country,
    /// The autonomous system, 0 unknown.
    pub asn: u32,
    /// The door's index in the doors' list the observatory was made with.
    pub door: u8,
    /// The response code (low four bits).
    pub rcode: u8,
    /// The EDE class.
    pub ede: EdeClass,
}

const OCCUPIED: u64 = 1 << 63;

impl CellKey {
    /// Packed into 54 bits with a set top bit (so no key is 0, the empty
    /// cell).
    #[inline]
    fn pack(self) -> u64 {
        OCCUPIED
            | u64::from(self.country & 0x3ff)
            | (u64::from(self.door & 0xf) << 10)
            | (u64::from(self.rcode & 0xf) << 14)
            | ((self.ede as u64) << 18)
            | (u64::from(self.asn) << 21)
    }

    fn unpack(v: u64) -> CellKey {
        CellKey {
            country: (v & 0x3ff) as u16,
            door: ((v >> 10) & 0xf) as u8,
            rcode: ((v >> 14) & 0xf) as u8,
            ede: EdeClass::ALL.get(((v >> 18) & 0x7) as usize).copied().unwrap_or(EdeClass::Other),
            asn: (v >> 21) as u32,
        }
    }
}

struct Cell {
    key: AtomicU64,
    count: AtomicU64,
}

/// Failures under one TLD: the label (up to 32 bytes, lower case) kept in
/// four words beside its hash.
struct TldCell {
    key: AtomicU64,
    count: AtomicU64,
    name: [AtomicU64; 4],
}

/// TLD cells a minute: failures are rare, and a flood of made-up TLDs
/// ends in NXDOMAIN, not here.
const TLD_CELLS: usize = 256;

struct Table {
    minute: AtomicU64,
    cells: Box<[Cell]>,
    /// Adds that found no free cell within the probe limit.
    overflow: AtomicU64,
    tlds: Box<[TldCell]>,
}

/// How far a key looks for its cell before it counts as overflow.
const PROBES: usize = 64;

/// One finished minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteCounts {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// Non-zero cells, sorted by key.
    pub cells: Vec<(CellKey, u64)>,
    /// Queries that found no cell (the table was full).
    pub overflow: u64,
    /// Resolution failures (SERVFAIL, EDE 22/23) by TLD, sorted.
    pub failures: Vec<(String, u64)>,
}

/// The two tables and the current minute.
pub struct Aggregator {
    current: AtomicU64,
    tables: [Table; 2],
    mask: usize,
    late: AtomicU64,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator").field("current", &self.current).field("cells", &(self.mask + 1)).finish()
    }
}

#[inline]
fn spread(k: u64) -> u64 {
    let k = (k ^ (k >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    k ^ (k >> 29)
}

impl Aggregator {
    /// Tables of `cells` cells each (rounded up to a power of two, at
    /// least 64), starting at `now_s` (Unix seconds).
    pub fn new(cells: usize, now_s: u64) -> Aggregator {
        let n = cells.max(64).next_power_of_two();
        let m = now_s / 60;
        let table = |parity: u64| Table {
            minute: AtomicU64::new(if m % 2 == parity { m } else { m + 1 }),
            cells: (0..n).map(|_| Cell { key: AtomicU64::new(0), count: AtomicU64::new(0) }).collect(),
            overflow: AtomicU64::new(0),
            tlds: (0..TLD_CELLS)
                .map(|_| TldCell {
                    key: AtomicU64::new(0),
                    count: AtomicU64::new(0),
                    name: [const { AtomicU64::new(0) }; 4],
                })
                .collect(),
        };
        Aggregator { current: AtomicU64::new(m), tables: [table(0), table(1)], mask: n - 1, late: AtomicU64::new(0) }
    }

    /// Counts one query in the current minute. Lock-free, allocation-free.
    #[inline]
    pub fn record(&self, key: CellKey) {
        self.add(key, 1);
    }

    /// The current minute's table, or `None` (and `n` counted as late)
    /// while the writer is more than a minute behind.
    #[inline]
    fn current_table(&self, n: u64) -> Option<&Table> {
        let m = self.current.load(Ordering::Relaxed);
        let t = &self.tables[(m & 1) as usize];
        if t.minute.load(Ordering::Acquire) != m {
            self.late.fetch_add(n, Ordering::Relaxed);
            return None;
        }
        Some(t)
    }

    /// Adds `n` to a cell of the current minute.
    pub fn add(&self, key: CellKey, n: u64) {
        let Some(t) = self.current_table(n) else { return };
        let k = key.pack();
        let start = spread(k) as usize & self.mask;
        for i in start..start + PROBES.min(self.mask + 1) {
            let cell = &t.cells[i & self.mask];
            let found = cell.key.load(Ordering::Relaxed);
            if found == k
                || (found == 0
                    && match cell.key.compare_exchange(0, k, Ordering::Relaxed, Ordering::Relaxed) {
                        Ok(_) => true,
                        Err(other) => other == k,
                    })
            {
                cell.count.fetch_add(n, Ordering::Relaxed);
                return;
            }
        }
        t.overflow.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` resolution failures under `tld` (a label as on the wire,
    /// any case) in the current minute. Allocation-free.
    pub fn add_failure(&self, tld: &[u8], n: u64) {
        let Some(t) = self.current_table(n) else { return };
        let mut label = [0u8; 32];
        for (d, s) in label.iter_mut().zip(tld) {
            *d = s.to_ascii_lowercase();
        }
        // FNV-1a over the kept bytes.
        let h = label.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        let k = h | OCCUPIED;
        let start = h as usize & (TLD_CELLS - 1);
        for i in start..start + TLD_CELLS.min(PROBES) {
            let cell = &t.tlds[i & (TLD_CELLS - 1)];
            let found = cell.key.load(Ordering::Acquire);
            let mine = found == k
                || (found == 0
                    && match cell.key.compare_exchange(0, k, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => {
                            for (w, chunk) in cell.name.iter().zip(label.chunks(8)) {
                                let mut b = [0u8; 8];
                                b.copy_from_slice(chunk);
                                w.store(u64::from_le_bytes(b), Ordering::Release);
                            }
                            true
                        }
                        Err(other) => other == k,
                    });
            if mine {
                cell.count.fetch_add(n, Ordering::Relaxed);
                return;
            }
        }
        t.overflow.fetch_add(n, Ordering::Relaxed);
    }

    /// Queries not counted because the writer fell more than a minute
    /// behind.
    pub fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// The current minute.
    pub fn minute(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }

    /// Moves the current minute to `now_s`'s and takes out every minute
    /// that has ended (none, one, or two after a long stall), oldest
    /// first. A clock that went back leaves the minute where it was.
    pub fn tick(&self, now_s: u64) -> Vec<MinuteCounts> {
        let m = now_s / 60;
        if m > self.current.load(Ordering::Relaxed) {
            self.current.store(m, Ordering::Release);
        }
        let m = self.current.load(Ordering::Relaxed);
        let mut out: Vec<MinuteCounts> = self
            .tables
            .iter()
            .filter(|t| t.minute.load(Ordering::Acquire) < m)
            .map(|t| {
                let counts = drain(t);
                let parity = counts.minute & 1;
                t.minute.store(if m & 1 == parity { m } else { m + 1 }, Ordering::Release);
                counts
            })
            .collect();
        out.sort_by_key(|c| c.minute);
        out.retain(|c| !c.cells.is_empty() || c.overflow > 0 || !c.failures.is_empty());
        out
    }

    /// Takes out both tables, the current minute's partial counts
    /// included (at shutdown).
    pub fn drain_all(&self) -> Vec<MinuteCounts> {
        let mut out: Vec<MinuteCounts> = self.tables.iter().map(drain).collect();
        out.sort_by_key(|c| c.minute);
        out.retain(|c| !c.cells.is_empty() || c.overflow > 0 || !c.failures.is_empty());
        out
    }
}

fn drain(t: &Table) -> MinuteCounts {
    let mut cells = Vec::new();
    for c in t.cells.iter() {
        if c.key.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let k = c.key.swap(0, Ordering::AcqRel);
        let n = c.count.swap(0, Ordering::AcqRel);
        if k != 0 && n > 0 {
            cells.push((CellKey::unpack(k), n));
        }
    }
    cells.sort_unstable();
    let mut failures = Vec::new();
    for c in t.tlds.iter() {
        if c.key.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let mut bytes = Vec::with_capacity(32);
        for w in &c.name {
            bytes.extend_from_slice(&w.swap(0, Ordering::AcqRel).to_le_bytes());
        }
        let k = c.key.swap(0, Ordering::AcqRel);
        let n = c.count.swap(0, Ordering::AcqRel);
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        // Whatever a hostile name carried, only letters, digits and '-'
        // are kept as they are.
        let name: String = bytes[..end]
            .iter()
            .map(|b| if b.is_ascii_alphanumeric() || *b == b'-' { *b as char } else { '?' })
            .collect();
        if k != 0 && n > 0 && !name.is_empty() {
            failures.push((name, n));
        }
    }
    failures.sort();
    MinuteCounts {
        minute: t.minute.load(Ordering::Acquire),
        cells,
        overflow: t.overflow.swap(0, Ordering::AcqRel),
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(country: u16, asn: u32, door: u8) -> CellKey {
        CellKey { country, asn, door, rcode: 0, ede: EdeClass::None }
    }

    #[test]
    fn keys_round_trip() {
        let k = CellKey { country: 676, asn: u32::MAX, door: 15, rcode: 15, ede: EdeClass::Other };
        assert_eq!(CellKey::unpack(k.pack()), k);
        let k = key(0, 0, 0);
        assert_ne!(k.pack(), 0);
        assert_eq!(CellKey::unpack(k.pack()), k);
    }

    #[test]
    fn minutes_are_counted_and_taken_out_once_they_end() {
        let a = Aggregator::new(64, 600);
        a.record(key(1, 10, 0));
        a.record(key(1, 10, 0));
        a.record(key(2, 20, 1));
        assert!(a.tick(659).is_empty(), "minute 10 has not ended");
        let done = a.tick(660);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].minute, 10);
        assert_eq!(done[0].cells, vec![(key(1, 10, 0), 2), (key(2, 20, 1), 1)]);
        a.record(key(1, 10, 0));
        // A long stall: minute 11 ends and minute 12 had nothing.
        let done = a.tick(60 * 20);
        assert_eq!(done.iter().map(|c| c.minute).collect::<Vec<_>>(), vec![11]);
        a.record(key(3, 30, 2));
        assert_eq!(a.late(), 0);
        let all = a.drain_all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].minute, 20);
        assert_eq!(all[0].cells, vec![(key(3, 30, 2), 1)]);
    }

    #[test]
    fn a_full_table_counts_overflow_and_keeps_the_total() {
        let a = Aggregator::new(64, 0);
        for asn in 0..100 {
            a.record(key(1, asn, 0));
        }
        let done = a.tick(60);
        let counted: u64 = done[0].cells.iter().map(|c| c.1).sum();
        assert_eq!(counted + done[0].overflow, 100);
        assert_eq!(done[0].cells.len(), 64);
    }

    #[test]
    fn failures_are_counted_per_tld_in_lower_case() {
        let a = Aggregator::new(64, 0);
        a.add_failure(b"TEST", 2);
        a.add_failure(b"test", 1);
        a.add_failure(b"de", 4);
        a.add_failure(b"x\x00y.z", 1);
        let done = a.tick(60);
        assert_eq!(done[0].failures, vec![("de".to_string(), 4), ("test".to_string(), 3), ("x".to_string(), 1)]);
        assert!(a.tick(120).is_empty());
    }

    #[test]
    fn ede_classes() {
        assert_eq!(EdeClass::of(Some(15)), EdeClass::Filtered);
        assert_eq!(EdeClass::of(Some(6)), EdeClass::Dnssec);
        assert_eq!(EdeClass::of(Some(22)), EdeClass::Unreachable);
        assert_eq!(EdeClass::of(Some(3)), EdeClass::Stale);
        assert_eq!(EdeClass::of(Some(0)), EdeClass::Other);
        assert_eq!(EdeClass::of(None), EdeClass::None);
        for c in EdeClass::ALL {
            assert_eq!(EdeClass::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn concurrent_adds_lose_nothing() {
        let a = std::sync::Arc::new(Aggregator::new(1024, 0));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let a = a.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u32 {
                        a.record(key(1 + (i % 7) as u16, i % 13, t));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let total: u64 = a.drain_all().iter().flat_map(|m| m.cells.iter().map(|c| c.1)).sum();
        assert_eq!(total, 40_000);
    }
}
