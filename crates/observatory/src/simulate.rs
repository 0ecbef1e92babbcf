//! A traffic simulator for the detector: synthetic minute counts for a
//! dozen countries and their networks, with daily and weekly cycles and
//! noise, optionally with injected events (a six-hour national shutdown, a
//! forty-minute route hijack of one network, a two-day censorship surge, a
//! two-hour TLD outage). The counts go through the real aggregation
//! ([`crate::Aggregator`]) and store ([`crate::store::Store`]) on a
//! simulated clock; [`score`] compares what [`crate::detect`] finds with
//! the truth.

use std::f64::consts::PI;

use serde::Serialize;

use crate::ObservatoryError;
use crate::aggregate::{Aggregator, CellKey, EdeClass};
use crate::detect::{Event, Kind, Thresholds};
use crate::geo::country;
use crate::store::Store;

/// A simulated country: its code, peak queries a minute, UTC offset and
/// networks with their shares.
#[derive(Debug, Clone)]
pub struct SimCountry {
    /// ISO code.
    pub code: &'static str,
    /// Queries a minute at the daily peak.
    pub peak: f64,
    /// Hours ahead of UTC.
    pub utc_offset: i64,
    /// (AS number, share of the country's traffic).
    pub networks: Vec<(u32, f64)>,
    /// Usual share on encrypted doors.
    pub encrypted: f64,
}

/// The simulated world: twelve countries, three networks each.
pub fn world() -> Vec<SimCountry> {
    let c = |code, peak, utc_offset, base: u32, encrypted| SimCountry {
        code,
        peak,
        utc_offset,
        networks: vec![(base, 0.5), (base + 1, 0.3), (base + 2, 0.2)],
        encrypted,
    };
    vec![
        c("DE", 900.0, 1, 64_600, 0.25),
        c("FR", 700.0, 1, 64_610, 0.22),
        c("BR", 1_200.0, -3, 64_620, 0.12),
        c("IN", 2_000.0, 5, 64_630, 0.10),
        c("NG", 400.0, 1, 64_640, 0.08),
        c("US", 2_500.0, -5, 64_650, 0.30),
        c("JP", 800.0, 9, 64_660, 0.18),
        c("ID", 900.0, 7, 64_670, 0.09),
        c("IR", 600.0, 3, 64_680, 0.15),
        c("RU", 1_000.0, 3, 64_690, 0.14),
        c("EG", 500.0, 2, 64_700, 0.07),
        c("MM", 300.0, 6, 64_710, 0.06),
    ]
}

/// TLDs whose names fail now and then (about one a minute each).
pub const TLDS: [&str; 6] = ["com", "net", "org", "de", "br", "test"];

/// An injected event: what the detector should find.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truth {
    /// The kind.
    pub kind: Kind,
    /// The country, if any.
    pub country: Option<String>,
    /// The network, if any.
    pub asn: Option<u32>,
    /// The TLD, if any.
    pub tld: Option<String>,
    /// Start, Unix seconds.
    pub start: u64,
    /// End, Unix seconds.
    pub end: u64,
}

/// The four events of the first month, relative to its start.
pub fn month_events(start: u64) -> Vec<Truth> {
    let at = |day: u64, h: u64, m: u64| start + day * 86_400 + h * 3600 + m * 60;
    vec![
        Truth {
            kind: Kind::Shutdown,
            country: Some("MM".into()),
            asn: None,
            tld: None,
            start: at(10, 5, 30),
            end: at(10, 11, 30),
        },
        Truth {
            kind: Kind::Route,
            country: Some("DE".into()),
            asn: Some(64_601),
            tld: None,
            start: at(14, 13, 20),
            end: at(14, 14, 0),
        },
        Truth {
            kind: Kind::Censorship,
            country: Some("IR".into()),
            asn: None,
            tld: None,
            start: at(18, 8, 0),
            end: at(20, 8, 0),
        },
        Truth {
            kind: Kind::UpstreamOutage,
            country: None,
            asn: None,
            tld: Some("test".into()),
            start: at(23, 9, 0),
            end: at(23, 11, 0),
        },
    ]
}

/// A small, seeded generator (xorshift64*), so a run is repeatable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (0 is replaced by a fixed seed).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-12);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }

    /// A count with mean `mean`: Poisson by its normal approximation
    /// (exact enough for the means here), never negative.
    pub fn count(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean < 20.0 {
            // Knuth's method for small means.
            let l = (-mean).exp();
            let (mut k, mut p) = (0u64, 1.0);
            loop {
                p *= self.uniform();
                if p <= l {
                    return k;
                }
                k += 1;
            }
        }
        (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64
    }
}

/// The daily and weekly cycle at local time: about 0.3 of the peak at
/// 04:00, the peak at 16:00; weekends 15 % lower.
fn cycle(unix_s: u64, utc_offset: i64) -> f64 {
    let local = unix_s as i64 + utc_offset * 3600;
    let hour = local.rem_euclid(86_400) as f64 / 3600.0;
    let day = (local.div_euclid(86_400) + 4).rem_euclid(7); // 0 = Sunday (1970-01-01 was a Thursday)
    let daily = 0.3 + 0.7 * (0.5 - 0.5 * (2.0 * PI * (hour - 4.0) / 24.0).cos());
    daily * if day == 0 || day == 6 { 0.85 } else { 1.0 }
}

/// Simulates minutes `[start, start + days)` into `store`, through `agg`
/// on a simulated clock, with `events` in force. Returns the minutes
/// written.
pub fn run(
    agg: &Aggregator,
    store: &mut Store,
    start: u64,
    days: u64,
    events: &[Truth],
    seed: u64,
) -> Result<u64, ObservatoryError> {
    let mut rng = Rng::new(seed);
    let world = world();
    let mut written = 0;
    // An hourly wobble of ±5 % per country, so no two days are the same.
    let mut wobble = vec![1.0; world.len()];
    let end = start + days * 86_400;
    let mut now = start;
    for m in agg.tick(now) {
        store.write(&m)?;
    }
    while now < end {
        if now.is_multiple_of(3600) {
            for w in &mut wobble {
                *w = 1.0 + 0.05 * rng.normal().clamp(-2.0, 2.0);
            }
        }
        for (ci, c) in world.iter().enumerate() {
            let mut level = c.peak * cycle(now, c.utc_offset) * wobble[ci];
            let mut encrypted = c.encrypted;
            let in_force = |e: &Truth| e.start <= now && now < e.end && e.country.as_deref() == Some(c.code);
            for e in events.iter().filter(|e| in_force(e)) {
                match e.kind {
                    Kind::Shutdown => level *= 0.02,
                    Kind::Censorship => {
                        level *= 4.0;
                        encrypted = 0.6;
                    }
                    _ => {}
                }
            }
            for (asn, share) in &c.networks {
                let mut n = level * share;
                if events.iter().any(|e| e.kind == Kind::Route && e.asn == Some(*asn) && in_force(e)) {
                    n *= 0.03;
                }
                for (door, part) in [(0u8, 1.0 - encrypted), (3u8, encrypted)] {
                    let q = rng.count(n * part);
                    let failed = rng.count(q as f64 * 0.002);
                    let key = |rcode| CellKey { country: country(c.code), asn: *asn, door, rcode, ede: EdeClass::None };
                    agg.add(key(0), q.saturating_sub(failed));
                    if failed > 0 {
                        agg.add(key(2), failed);
                    }
                }
            }
        }
        for tld in TLDS {
            let outage = events.iter().any(|e| {
                e.kind == Kind::UpstreamOutage && e.tld.as_deref() == Some(tld) && e.start <= now && now < e.end
            });
            let n = rng.count(if outage { 120.0 } else { 1.0 });
            if n > 0 {
                agg.add_failure(tld.as_bytes(), n);
            }
        }
        now += 60;
        for m in agg.tick(now) {
            store.write(&m)?;
            written += 1;
        }
        if now.is_multiple_of(86_400) {
            store.purge(now)?;
        }
    }
    Ok(written)
}

/// How the detector did against the truth.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    /// Injected events found (same kind and place, start and end within
    /// the tolerance).
    pub found: usize,
    /// Injected events.
    pub injected: usize,
    /// Events reported that match no injected event.
    pub false_events: usize,
    /// Events reported.
    pub reported: usize,
    /// found / injected.
    pub recall: f64,
    /// matching reports / reports.
    pub precision: f64,
    /// Per injected event, how it was found.
    pub per_event: Vec<Found>,
}

/// One injected event against the reports.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// Kind and place.
    pub event: String,
    /// Whether a report matched within the tolerance.
    pub found: bool,
    /// The report's start minus the truth's, seconds.
    pub start_error_s: Option<i64>,
    /// The report's end minus the truth's, seconds.
    pub end_error_s: Option<i64>,
    /// When the rule was met, after the truth's start, seconds.
    pub delay_s: Option<i64>,
}

/// Matches `reported` against `truth`: a report matches an injected event
/// of the same kind in the same place (a network's signal matches its
/// country's event), and it is found when some match starts and ends
/// within `tolerance_s` of the truth.
pub fn score(truth: &[Truth], reported: &[Event], tolerance_s: u64) -> Score {
    let same_place = |t: &Truth, e: &Event| {
        t.kind == e.kind
            && t.tld == e.tld
            && t.country == e.country
            && (t.asn.is_none() || t.asn == e.asn)
            && e.start < t.end + tolerance_s
            && e.end.is_none_or(|end| end + tolerance_s > t.start)
    };
    let mut per_event = Vec::new();
    let mut found = 0;
    for t in truth {
        let hit = reported.iter().filter(|e| same_place(t, e)).find_map(|e| {
            let end = e.end? as i64;
            let (ds, de) = (e.start as i64 - t.start as i64, end - t.end as i64);
            (ds.unsigned_abs() <= tolerance_s && de.unsigned_abs() <= tolerance_s).then_some((
                ds,
                de,
                e.detected_at as i64 - t.start as i64,
            ))
        });
        found += usize::from(hit.is_some());
        let place = t.country.clone().or(t.tld.clone()).unwrap_or_default();
        per_event.push(Found {
            event: format!("{} {place}{}", t.kind.as_str(), t.asn.map(|a| format!(" AS{a}")).unwrap_or_default()),
            found: hit.is_some(),
            start_error_s: hit.map(|h| h.0),
            end_error_s: hit.map(|h| h.1),
            delay_s: hit.map(|h| h.2),
        });
    }
    let matching = reported.iter().filter(|e| truth.iter().any(|t| same_place(t, e))).count();
    Score {
        found,
        injected: truth.len(),
        false_events: reported.len() - matching,
        reported: reported.len(),
        recall: if truth.is_empty() { 1.0 } else { found as f64 / truth.len() as f64 },
        precision: if reported.is_empty() { 1.0 } else { matching as f64 / reported.len() as f64 },
        per_event,
    }
}

/// Monday 2026-11-02 00:00 UTC: where the simulated months start.
pub const START: u64 = 1_793_577_600;

/// One simulated month, judged.
#[derive(Debug, Clone, Serialize)]
pub struct MonthReport {
    /// Minutes simulated.
    pub minutes: u64,
    /// What the detector reported (from day 7; the first week is the
    /// baseline's).
    pub events: Vec<Event>,
    /// Against the truth, with a 15-minute tolerance.
    pub score: Score,
    /// Minute rows in the store at the end (one node's month).
    pub minute_rows: u64,
    /// Hourly roll-up rows.
    pub hour_rows: u64,
    /// Bytes of `observatory.sqlite` at the end.
    pub file_bytes: u64,
    /// Seconds to simulate (aggregation and store included).
    pub simulate_s: f64,
    /// Seconds to load and judge the month.
    pub detect_s: f64,
}

/// Simulates `days` days from `start` with `events` into a store under
/// `dir` (made afresh), then runs the detector over them from day 7.
pub fn month(
    dir: &std::path::Path,
    start: u64,
    days: u64,
    events: &[Truth],
    seed: u64,
) -> Result<MonthReport, ObservatoryError> {
    let _ = std::fs::remove_dir_all(dir);
    let doors = ["udp", "tcp", "dot", "doh", "doq"].map(String::from).to_vec();
    let mut store = Store::open(dir, doors, (days + 10) * 86_400, 400 * 86_400)?;
    let agg = Aggregator::new(256, start);
    let t = std::time::Instant::now();
    let minutes = run(&agg, &mut store, start, days, events, seed)?;
    let simulate_s = t.elapsed().as_secs_f64();
    drop(store);
    let conn = crate::store::open_reader(dir)?;
    let (from, to) = (start / 60 + 7 * 1440, (start + days * 86_400) / 60);
    let t = std::time::Instant::now();
    let thresholds = Thresholds::default();
    let input = crate::detect::load(&conn, from, to, thresholds.weeks)?;
    let found = crate::detect::detect(&input, from, to, &thresholds);
    let detect_s = t.elapsed().as_secs_f64();
    let count = |table: &str| -> u64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).map_or(0, |n| n as u64)
    };
    let file_bytes = std::fs::metadata(dir.join(crate::store::FILE)).map_or(0, |m| m.len());
    Ok(MonthReport {
        minutes,
        score: score(events, &found, 15 * 60),
        events: found,
        minute_rows: count("minutes"),
        hour_rows: count("hours"),
        file_bytes,
        simulate_s,
        detect_s,
    })
}
