//! Counters in fixed arrays of atomics, rendered in the Prometheus text
//! format. Counting a query is one relaxed `fetch_add` on a slot found by
//! arithmetic: no label hashing, no lock, no allocation on the hot path.
//! No label ever names a client.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Doors, in the order the doors crate lists them.
pub const DOORS: [&str; 5] = ["udp", "tcp", "dot", "doh", "doq"];
/// Query types with a label of their own; the rest count as `other`.
const QTYPES: [(u16, &str); 15] = [
    (1, "A"),
    (28, "AAAA"),
    (5, "CNAME"),
    (15, "MX"),
    (16, "TXT"),
    (2, "NS"),
    (6, "SOA"),
    (12, "PTR"),
    (33, "SRV"),
    (65, "HTTPS"),
    (64, "SVCB"),
    (43, "DS"),
    (48, "DNSKEY"),
    (255, "ANY"),
    (35, "NAPTR"),
];
const QTYPE_SLOTS: usize = QTYPES.len() + 1;
const RCODES: [&str; 16] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "DSOTYPENI",
    "RCODE12",
    "RCODE13",
    "RCODE14",
    "RCODE15",
];
/// Upper bounds of the upstream latency buckets, seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];
/// Validation outcomes.
pub const VALIDATION: [&str; 3] = ["secure", "insecure", "bogus"];
/// EDE codes counted (RFC 8914 registry, 0-31).
const EDE_SLOTS: usize = 32;

fn qtype_slot(qtype: u16) -> usize {
    QTYPES.iter().position(|(t, _)| *t == qtype).unwrap_or(QTYPES.len())
}

/// Every counter onedot exports.
pub struct Metrics {
    profiles: Vec<String>,
    /// [door][profile][qtype][rcode]
    queries: Box<[AtomicU64]>,
    /// [door] cache hits and misses.
    hits: [AtomicU64; DOORS.len()],
    misses: [AtomicU64; DOORS.len()],
    upstream_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    upstream_sum_us: AtomicU64,
    validation: [AtomicU64; 3],
    ede: [AtomicU64; EDE_SLOTS],
    /// [profile] blocked answers decided (misses; hits count in the
    /// transparency log).
    dropped_records: AtomicU64,
    /// Cache sizes: RRset entries and bytes, answer entries and bytes.
    caches: [AtomicU64; 4],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("profiles", &self.profiles).finish()
    }
}

impl Metrics {
    /// Counters for these profiles (by id).
    pub fn new(profiles: Vec<String>) -> Metrics {
        let n = DOORS.len() * profiles.len().max(1) * QTYPE_SLOTS * RCODES.len();
        Metrics {
            queries: (0..n).map(|_| AtomicU64::new(0)).collect(),
            profiles,
            hits: Default::default(),
            misses: Default::default(),
            upstream_buckets: Default::default(),
            upstream_sum_us: AtomicU64::new(0),
            validation: Default::default(),
            ede: Default::default(),
            dropped_records: AtomicU64::new(0),
            caches: Default::default(),
        }
    }

    fn slot(&self, door: usize, profile: usize, qtype: u16, rcode: u8) -> Option<&AtomicU64> {
        let profiles = self.profiles.len().max(1);
        if door >= DOORS.len() || profile >= profiles {
            return None;
        }
        let i = ((door * profiles + profile) * QTYPE_SLOTS + qtype_slot(qtype)) * RCODES.len() + (rcode & 15) as usize;
        self.queries.get(i)
    }

    /// Counts one answered query.
    #[inline]
    pub fn query(&self, door: usize, profile: u8, qtype: u16, rcode: u8, cache_hit: bool) {
        if let Some(c) = self.slot(door, profile as usize, qtype, rcode) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let side = if cache_hit { &self.hits } else { &self.misses };
        if let Some(c) = side.get(door) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one upstream exchange that took `micros`.
    pub fn upstream(&self, micros: u64) {
        let secs = micros as f64 / 1e6;
        let b = LATENCY_BUCKETS.iter().position(|le| secs <= *le).unwrap_or(LATENCY_BUCKETS.len());
        self.upstream_buckets[b].fetch_add(1, Ordering::Relaxed);
        self.upstream_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// Sets the validation totals (kept by the answer service).
    pub fn set_validation(&self, counts: [u64; 3]) {
        for (c, v) in self.validation.iter().zip(counts) {
            c.store(v, Ordering::Relaxed);
        }
    }

    /// Sets the cache gauges: RRset entries and the bytes they are charged,
    /// whole-answer entries and theirs.
    pub fn set_caches(&self, rrsets: u64, rrset_bytes: u64, answers: u64, answer_bytes: u64) {
        for (c, v) in self.caches.iter().zip([rrsets, rrset_bytes, answers, answer_bytes]) {
            c.store(v, Ordering::Relaxed);
        }
    }

    /// Counts an Extended DNS Error sent.
    pub fn ede(&self, code: u16) {
        if let Some(c) = self.ede.get(code as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a log or sample record dropped because the writer was behind.
    pub fn dropped_record(&self) {
        self.dropped_records.fetch_add(1, Ordering::Relaxed);
    }

    /// Queries counted so far (all labels).
    pub fn total_queries(&self) -> u64 {
        self.queries.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8192);
        o.push_str("# HELP onedot_queries_total Queries answered, by door, profile, query type and response code.\n");
        o.push_str("# TYPE onedot_queries_total counter\n");
        let profiles = self.profiles.len().max(1);
        for (d, door) in DOORS.iter().enumerate() {
            for p in 0..profiles {
                let pname = self.profiles.get(p).map_or("default", String::as_str);
                for q in 0..QTYPE_SLOTS {
                    let qname = QTYPES.get(q).map_or("other", |(_, n)| n);
                    for (r, rname) in RCODES.iter().enumerate() {
                        let i = ((d * profiles + p) * QTYPE_SLOTS + q) * RCODES.len() + r;
                        let v = self.queries[i].load(Ordering::Relaxed);
                        if v > 0 {
                            let _ = writeln!(
                                o,
                                "onedot_queries_total{{door=\"{door}\",profile=\"{pname}\",qtype=\"{qname}\",rcode=\"{rname}\"}} {v}"
                            );
                        }
                    }
                }
            }
        }
        o.push_str(
            "# HELP onedot_cache_hits_total Queries answered from the answer cache without blocking, by door.\n",
        );
        o.push_str("# TYPE onedot_cache_hits_total counter\n");
        for (d, door) in DOORS.iter().enumerate() {
            let _ = writeln!(o, "onedot_cache_hits_total{{door=\"{door}\"}} {}", self.hits[d].load(Ordering::Relaxed));
        }
        o.push_str("# HELP onedot_cache_misses_total Queries that took the slow path, by door.\n");
        o.push_str("# TYPE onedot_cache_misses_total counter\n");
        for (d, door) in DOORS.iter().enumerate() {
            let _ =
                writeln!(o, "onedot_cache_misses_total{{door=\"{door}\"}} {}", self.misses[d].load(Ordering::Relaxed));
        }
        o.push_str("# HELP onedot_upstream_duration_seconds Time of each exchange with an authoritative server.\n");
        o.push_str("# TYPE onedot_upstream_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.upstream_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(o, "onedot_upstream_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.upstream_buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(o, "onedot_upstream_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.upstream_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(o, "onedot_upstream_duration_seconds_sum {sum}");
        let _ = writeln!(o, "onedot_upstream_duration_seconds_count {cumulative}");
        o.push_str("# HELP onedot_validation_total DNSSEC outcomes of resolved answers.\n");
        o.push_str("# TYPE onedot_validation_total counter\n");
        for (i, name) in VALIDATION.iter().enumerate() {
            let _ = writeln!(
                o,
                "onedot_validation_total{{outcome=\"{name}\"}} {}",
                self.validation[i].load(Ordering::Relaxed)
            );
        }
        o.push_str("# HELP onedot_ede_total Extended DNS Errors sent, by INFO-CODE (RFC 8914).\n");
        o.push_str("# TYPE onedot_ede_total counter\n");
        for (code, c) in self.ede.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v > 0 {
                let _ = writeln!(o, "onedot_ede_total{{code=\"{code}\"}} {v}");
            }
        }
        o.push_str("# HELP onedot_cache_entries Entries in the caches, by cache.\n");
        o.push_str("# TYPE onedot_cache_entries gauge\n");
        let c = |i: usize| self.caches[i].load(Ordering::Relaxed);
        let _ = writeln!(o, "onedot_cache_entries{{cache=\"rrset\"}} {}", c(0));
        let _ = writeln!(o, "onedot_cache_entries{{cache=\"answer\"}} {}", c(2));
        o.push_str("# HELP onedot_cache_bytes Bytes the caches are charged (every allocation at malloc's size, plus the table slot).\n");
        o.push_str("# TYPE onedot_cache_bytes gauge\n");
        let _ = writeln!(o, "onedot_cache_bytes{{cache=\"rrset\"}} {}", c(1));
        let _ = writeln!(o, "onedot_cache_bytes{{cache=\"answer\"}} {}", c(3));
        o.push_str("# HELP onedot_telemetry_dropped_total Query-log and sample records dropped because the writer was behind.\n");
        o.push_str("# TYPE onedot_telemetry_dropped_total counter\n");
        let _ = writeln!(o, "onedot_telemetry_dropped_total {}", self.dropped_records.load(Ordering::Relaxed));
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let m = Metrics::new(vec!["unfiltered".into(), "family".into()]);
        m.query(0, 0, 1, 0, true);
        m.query(0, 0, 1, 0, true);
        m.query(3, 1, 99, 3, false);
        m.upstream(1500);
        m.set_validation([4, 5, 6]);
        m.ede(15);
        let text = m.render();
        assert!(
            text.contains("onedot_queries_total{door=\"udp\",profile=\"unfiltered\",qtype=\"A\",rcode=\"NOERROR\"} 2")
        );
        assert!(
            text.contains("onedot_queries_total{door=\"doh\",profile=\"family\",qtype=\"other\",rcode=\"NXDOMAIN\"} 1")
        );
        assert!(text.contains("onedot_cache_hits_total{door=\"udp\"} 2"));
        assert!(text.contains("onedot_upstream_duration_seconds_bucket{le=\"0.002\"} 1"));
        assert!(text.contains("onedot_ede_total{code=\"15\"} 1"));
        assert!(text.contains("onedot_validation_total{outcome=\"bogus\"} 6"));
        assert_eq!(m.total_queries(), 3);
        // Out-of-range ids are ignored, never a panic.
        m.query(9, 200, 1, 0, false);
    }
}
