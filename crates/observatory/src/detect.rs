//! Detection: what traffic was expected each minute, and events where it
//! was not.
//!
//! The expected value for a minute comes from a seasonal baseline: for its
//! hour of the week, the median of the same hour over the last
//! [`Thresholds::weeks`] weeks (a median, so one earlier outage does not
//! lower it), scaled by the recent level (the median, over the last week,
//! of what came against what the baseline said: growth and decline follow
//! without an event moving it), and interpolated between hours so that the
//! daily ramps have no steps. Each minute is judged on a five-minute
//! centred window against that; runs of judged minutes become events:
//!
//! - **shutdown**: a country below a third of expected for ten minutes;
//! - **route**: one network below a third while the rest of its country
//!   holds (at least 80 % of expected);
//! - **censorship**: a country or network above three times expected, or
//!   its share of encrypted doors (DoT, DoH, DoQ) up by 20 points or more,
//!   for thirty minutes;
//! - **upstream outage**: SERVFAIL or EDE 22/23 under one TLD at ten times
//!   its usual rate, and at least 50 in ten minutes.
//!
//! Entities expected to send fewer than [`Thresholds::min_expected`]
//! queries in ten minutes are not judged. Confidence grows with how many
//! standard deviations (of a Poisson count) the event's total lies from
//! its expected total: 0 at 3, 1 at 10 or more.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// What counts as an event. Configurable per node.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Below this fraction of expected is a drop (1/3).
    pub drop_ratio: f64,
    /// A drop lasts at least this many minutes (10).
    pub drop_minutes: usize,
    /// Above this multiple of expected is a surge (3).
    pub surge_ratio: f64,
    /// A surge or an encrypted-share jump lasts at least this long (30).
    pub surge_minutes: usize,
    /// The encrypted doors' share up by this much is a jump (0.2).
    pub encrypted_jump: f64,
    /// The rest of the country holds at this fraction of expected (0.8).
    pub country_holds: f64,
    /// Expected queries in ten minutes an entity needs to be judged (100).
    pub min_expected: f64,
    /// Failures in ten minutes a TLD needs to be judged (50).
    pub min_failures: f64,
    /// Failures at this multiple of the usual rate are an outage (10).
    pub failure_factor: f64,
    /// Weeks of the seasonal baseline (4).
    pub weeks: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            drop_ratio: 1.0 / 3.0,
            drop_minutes: 10,
            surge_ratio: 3.0,
            surge_minutes: 30,
            encrypted_jump: 0.2,
            country_holds: 0.8,
            min_expected: 100.0,
            min_failures: 50.0,
            failure_factor: 10.0,
            weeks: 4,
        }
    }
}

/// The kind of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A country's traffic fell to almost nothing.
    Shutdown,
    /// One network's traffic fell while its country held.
    Route,
    /// Traffic surged, or moved to encrypted doors.
    Censorship,
    /// Resolution failures under one TLD spiked.
    UpstreamOutage,
}

impl Kind {
    /// The kind's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shutdown => "shutdown",
            Kind::Route => "route",
            Kind::Censorship => "censorship",
            Kind::UpstreamOutage => "upstream_outage",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// What happened.
    pub kind: Kind,
    /// The country (for every kind but upstream outages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The network, for route events and a network's censorship signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// The TLD, for upstream outages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tld: Option<String>,
    /// First minute, Unix seconds.
    pub start: u64,
    /// The minute after the last, Unix seconds; `None` while it lasts.
    pub end: Option<u64>,
    /// For drops, the fraction missing (0.9: a tenth of expected came);
    /// for surges and outages, the multiple of expected; for an encrypted
    /// shift, the share's rise.
    pub depth: f64,
    /// 0 to 1; see the module's text.
    pub confidence: f64,
    /// When the rule was first met (the minute the event could be known).
    pub detected_at: u64,
    /// What was seen, in words.
    pub detail: String,
}

/// Minute counts of one entity: minute (Unix minutes) → count.
pub type Minutes = BTreeMap<u64, f64>;
/// Hour counts of one entity: hour (Unix hours) → count.
pub type Hours = BTreeMap<u64, f64>;

/// The seasonal baseline of one entity from its hourly history.
#[derive(Debug, Clone)]
pub struct Baseline<'a> {
    hours: &'a Hours,
    weeks: u64,
    level: f64,
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

impl<'a> Baseline<'a> {
    /// The baseline from `hours`, its level taken over the week before
    /// hour `at`.
    pub fn new(hours: &'a Hours, weeks: u64, at: u64) -> Baseline<'a> {
        let mut b = Baseline { hours, weeks, level: 1.0 };
        let mut ratios: Vec<f64> = (at.saturating_sub(168)..at)
            .filter_map(|h| {
                let seen = *hours.get(&h)?;
                let s = b.seasonal(h)?;
                (s > 0.0).then_some(seen / s)
            })
            .collect();
        // At least a day of evidence before the level moves off 1.
        if ratios.len() >= 24 {
            b.level = median(&mut ratios).unwrap_or(1.0).clamp(0.25, 4.0);
        }
        b
    }

    /// The median of hour `h`'s counterparts in earlier weeks (missing
    /// hours count as zero once the history covers them: a node that was
    /// up and saw nothing saw nothing).
    fn seasonal(&self, h: u64) -> Option<f64> {
        let first = *self.hours.keys().next()?;
        let mut v: Vec<f64> = (1..=self.weeks)
            .filter_map(|k| h.checked_sub(168 * k))
            .filter(|&past| past >= first)
            .map(|past| self.hours.get(&past).copied().unwrap_or(0.0))
            .collect();
        median(&mut v)
    }

    /// The expected count of hour `h`, `None` without a week of history.
    pub fn hour(&self, h: u64) -> Option<f64> {
        self.seasonal(h).map(|s| s * self.level)
    }

    /// The expected count of minute `m`, interpolated between the centres
    /// of its hour and the nearer neighbour.
    pub fn minute(&self, m: u64) -> Option<f64> {
        let h = m / 60;
        let here = self.hour(h)?;
        let pos = ((m % 60) as f64 + 0.5) / 60.0;
        let (other, w) = if pos < 0.5 { (h.checked_sub(1), 0.5 - pos) } else { (Some(h + 1), pos - 0.5) };
        let there = other.and_then(|o| self.hour(o)).unwrap_or(here);
        Some(((1.0 - w) * here + w * there) / 60.0)
    }
}

/// A run of judged minutes `[first, last]` (indexes).
type Run = (usize, usize);

/// Runs of `true` at least `min` long; gaps of up to two minutes inside a
/// run are bridged.
fn runs(flags: &[bool], min: usize) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut start = None;
    for (i, &f) in flags.iter().enumerate() {
        match (f, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, flags.len() - 1));
    }
    let mut merged: Vec<Run> = Vec::new();
    for r in out {
        match merged.last_mut() {
            Some(last) if r.0 <= last.1 + 3 => last.1 = r.1,
            _ => merged.push(r),
        }
    }
    merged.retain(|r| r.1 + 1 - r.0 >= min);
    merged
}

/// Sums over a centred window of `half` minutes each side.
fn window(v: &[f64], half: usize) -> Vec<f64> {
    let mut prefix = vec![0.0; v.len() + 1];
    for (i, x) in v.iter().enumerate() {
        prefix[i + 1] = prefix[i] + x;
    }
    (0..v.len()).map(|i| prefix[(i + half + 1).min(v.len())] - prefix[i.saturating_sub(half)]).collect()
}

fn confidence(seen: f64, expected: f64) -> f64 {
    let z = (seen - expected).abs() / expected.max(1.0).sqrt();
    ((z - 3.0) / 7.0).clamp(0.0, 1.0)
}

/// One entity's minutes `[from, to)` against its baseline: (seen,
/// expected) per minute; expected `NaN` where there is no baseline.
fn series(minutes: &Minutes, base: &Baseline<'_>, from: u64, to: u64) -> (Vec<f64>, Vec<f64>) {
    (from..to).map(|m| (minutes.get(&m).copied().unwrap_or(0.0), base.minute(m).unwrap_or(f64::NAN))).unzip()
}

/// What the detector looks at, for minutes `[from, to)` (Unix minutes).
#[derive(Debug, Default, Clone)]
pub struct Input {
    /// Per country: minute counts.
    pub country_minutes: HashMap<String, Minutes>,
    /// Per country: hourly history (weeks back).
    pub country_hours: HashMap<String, Hours>,
    /// Per (country, network): minute counts.
    pub asn_minutes: HashMap<(String, u32), Minutes>,
    /// Per (country, network): hourly history.
    pub asn_hours: HashMap<(String, u32), Hours>,
    /// Per country: minute counts on encrypted doors.
    pub encrypted_minutes: HashMap<String, Minutes>,
    /// Per country: hourly counts on encrypted doors.
    pub encrypted_hours: HashMap<String, Hours>,
    /// Per TLD: failures a minute.
    pub failure_minutes: HashMap<String, Minutes>,
    /// Per TLD: failures an hour.
    pub failure_hours: HashMap<String, Hours>,
}

/// Judges minutes `[from, to)` and returns the events found in them,
/// oldest first. An event reaching `to` has no end yet.
pub fn detect(input: &Input, from: u64, to: u64, t: &Thresholds) -> Vec<Event> {
    let mut out = Vec::new();
    let at_hour = from / 60;
    let n = (to.saturating_sub(from)) as usize;
    let secs = |i: usize| (from + i as u64) * 60;
    let end_of = |r: Run| (r.1 + 1 < n).then(|| secs(r.1 + 1));
    let empty = Hours::new();
    // Countries: shutdowns and surges; keep each country's judged ratio for
    // the route rule.
    let mut country_series: HashMap<&str, (Vec<f64>, Vec<f64>)> = HashMap::new();
    let mut countries: Vec<&String> = input.country_minutes.keys().collect();
    countries.sort();
    for c in countries {
        let hours = input.country_hours.get(c).unwrap_or(&empty);
        let base = Baseline::new(hours, t.weeks, at_hour);
        let (seen, expected) = series(&input.country_minutes[c], &base, from, to);
        out.extend(drops_and_surges(&seen, &expected, t, |_| (Some(c.clone()), None), Kind::Shutdown, &secs, &end_of));
        // The encrypted doors' share against its usual share.
        if let (Some(enc), Some(enc_hours)) = (input.encrypted_minutes.get(c), input.encrypted_hours.get(c)) {
            let usual = {
                let mut shares: Vec<f64> = (at_hour.saturating_sub(168)..at_hour)
                    .filter_map(|h| {
                        let all = *hours.get(&h)?;
                        (all > 0.0).then(|| enc_hours.get(&h).copied().unwrap_or(0.0) / all)
                    })
                    .collect();
                median(&mut shares)
            };
            if let Some(usual) = usual {
                let enc: Vec<f64> = (from..to).map(|m| enc.get(&m).copied().unwrap_or(0.0)).collect();
                let (ew, sw, xw) = (window(&enc, 5), window(&seen, 5), window(&expected, 5));
                let flags: Vec<bool> = (0..n)
                    .map(|i| xw[i] >= t.min_expected * 1.1 && sw[i] > 0.0 && ew[i] / sw[i] - usual >= t.encrypted_jump)
                    .collect();
                for r in runs(&flags, t.surge_minutes) {
                    let (e, s): (f64, f64) = (enc[r.0..=r.1].iter().sum(), seen[r.0..=r.1].iter().sum());
                    let rise = e / s.max(1.0) - usual;
                    out.push(Event {
                        kind: Kind::Censorship,
                        country: Some(c.clone()),
                        asn: None,
                        tld: None,
                        start: secs(r.0),
                        end: end_of(r),
                        depth: rise,
                        confidence: (rise / t.encrypted_jump / 2.0).clamp(0.0, 1.0),
                        detected_at: secs(r.0 + t.surge_minutes),
                        detail: format!(
                            "encrypted doors' share {:.0} % against a usual {:.0} %",
                            100.0 * (usual + rise),
                            100.0 * usual
                        ),
                    });
                }
            }
        }
        country_series.insert(c.as_str(), (seen, expected));
    }
    // Networks: a drop while the rest of the country holds is a route
    // event; a surge is a censorship signal of its own.
    let mut networks: Vec<&(String, u32)> = input.asn_minutes.keys().collect();
    networks.sort();
    for key in networks {
        let (c, asn) = key;
        let hours = input.asn_hours.get(key).unwrap_or(&empty);
        let base = Baseline::new(hours, t.weeks, at_hour);
        let (seen, expected) = series(&input.asn_minutes[key], &base, from, to);
        let rest_holds: Vec<bool> = match country_series.get(c.as_str()) {
            Some((cs, ce)) => {
                let rest_seen: Vec<f64> = cs.iter().zip(&seen).map(|(a, b)| a - b).collect();
                let rest_exp: Vec<f64> = ce.iter().zip(&expected).map(|(a, b)| a - b).collect();
                let (rs, re) = (window(&rest_seen, 2), window(&rest_exp, 2));
                (0..n).map(|i| re[i] > 0.0 && rs[i] >= t.country_holds * re[i]).collect()
            }
            None => vec![true; n],
        };
        for mut e in
            drops_and_surges(&seen, &expected, t, |_| (Some(c.clone()), Some(*asn)), Kind::Route, &secs, &end_of)
        {
            if e.kind == Kind::Route {
                let (first, last) = (((e.start / 60) - from) as usize, e.end.map_or(n, |x| (x / 60 - from) as usize));
                let held = rest_holds[first..last].iter().filter(|h| **h).count();
                if held * 10 < (last - first) * 8 {
                    continue; // the country fell too: the shutdown says it
                }
                e.detail = format!("AS{asn} fell while the rest of {c} held; {}", e.detail);
            }
            out.push(e);
        }
    }
    // Failures under one TLD.
    let mut tlds: Vec<&String> = input.failure_minutes.keys().collect();
    tlds.sort();
    for tld in tlds {
        let hours = input.failure_hours.get(tld).unwrap_or(&empty);
        let mut usual: Vec<f64> =
            (at_hour.saturating_sub(168)..at_hour).map(|h| hours.get(&h).copied().unwrap_or(0.0) / 60.0).collect();
        let usual = median(&mut usual).unwrap_or(0.0);
        let seen: Vec<f64> = (from..to).map(|m| input.failure_minutes[tld].get(&m).copied().unwrap_or(0.0)).collect();
        let w = window(&seen, 5);
        let bar = (t.min_failures).max(t.failure_factor * usual * 11.0);
        let flags: Vec<bool> = w.iter().map(|x| *x >= bar).collect();
        for r in runs(&flags, t.drop_minutes) {
            let s: f64 = seen[r.0..=r.1].iter().sum();
            let expected = usual * (r.1 + 1 - r.0) as f64;
            out.push(Event {
                kind: Kind::UpstreamOutage,
                country: None,
                asn: None,
                tld: Some(tld.clone()),
                start: secs(r.0),
                end: end_of(r),
                depth: s / expected.max(1.0),
                confidence: confidence(s, expected.max(1.0)),
                detected_at: secs(r.0 + t.drop_minutes),
                detail: format!("{s:.0} failures (SERVFAIL, EDE 22/23) under .{tld}, usually {expected:.0}"),
            });
        }
    }
    out.sort_by(|a, b| (a.start, a.kind, &a.country, a.asn).cmp(&(b.start, b.kind, &b.country, b.asn)));
    merge_censorship(out)
}

/// One censorship event per country and time: a surge and an encrypted
/// shift that overlap become one event saying both, and a network's surge
/// inside its country's is left to the country's.
fn merge_censorship(events: Vec<Event>) -> Vec<Event> {
    let overlaps = |a: &Event, b: &Event| {
        a.country == b.country && a.start < b.end.unwrap_or(u64::MAX) && b.start < a.end.unwrap_or(u64::MAX)
    };
    let mut out: Vec<Event> = Vec::with_capacity(events.len());
    let (countries, networks): (Vec<Event>, Vec<Event>) =
        events.into_iter().partition(|e| e.kind != Kind::Censorship || e.asn.is_none());
    for e in countries {
        match out.iter_mut().find(|o| o.kind == Kind::Censorship && e.kind == Kind::Censorship && overlaps(o, &e)) {
            Some(o) => {
                o.start = o.start.min(e.start);
                o.end = o.end.zip(e.end).map(|(a, b)| a.max(b));
                o.detected_at = o.detected_at.min(e.detected_at);
                o.confidence = o.confidence.max(e.confidence);
                // The surge's multiple is the depth when there is one.
                if e.detail.contains('×') {
                    o.depth = e.depth;
                }
                o.detail = format!("{}; {}", o.detail, e.detail);
            }
            None => out.push(e),
        }
    }
    for e in networks {
        if !out.iter().any(|o| o.kind == Kind::Censorship && o.asn.is_none() && overlaps(o, &e)) {
            out.push(e);
        }
    }
    out.sort_by(|a, b| (a.start, a.kind, &a.country, a.asn).cmp(&(b.start, b.kind, &b.country, b.asn)));
    out
}

/// One country's (or, with `asn`, one of its networks') minutes `[from,
/// to)`: what came and what the baseline expected (`None` without a week
/// of history), for the dashboard's overlay.
pub fn overlay(
    input: &Input,
    country: &str,
    asn: Option<u32>,
    from: u64,
    to: u64,
    weeks: u64,
) -> (Vec<f64>, Vec<Option<f64>>) {
    let empty_m = Minutes::new();
    let empty_h = Hours::new();
    let (minutes, hours) = match asn {
        Some(a) => {
            let key = (country.to_string(), a);
            (input.asn_minutes.get(&key).unwrap_or(&empty_m), input.asn_hours.get(&key).unwrap_or(&empty_h))
        }
        None => (
            input.country_minutes.get(country).unwrap_or(&empty_m),
            input.country_hours.get(country).unwrap_or(&empty_h),
        ),
    };
    let (seen, expected) = series(minutes, &Baseline::new(hours, weeks, from / 60), from, to);
    (seen, expected.into_iter().map(|x| x.is_finite().then_some(x)).collect())
}

/// The doors counted as encrypted.
pub const ENCRYPTED_DOORS: [&str; 3] = ["dot", "doh", "doq"];

/// Reads what [`detect`] needs for minutes `[from, to)` (Unix minutes)
/// from the store: minute series there, hourly history `weeks` weeks back.
pub fn load(conn: &rusqlite::Connection, from: u64, to: u64, weeks: u64) -> Result<Input, crate::ObservatoryError> {
    let path = conn.path().map(std::path::PathBuf::from).unwrap_or_default();
    let err = |e: rusqlite::Error| crate::ObservatoryError::Store { path: path.clone(), reason: e.to_string() };
    let (m_from, m_to) = ((from * 60) as i64, (to * 60) as i64);
    let h_from = ((from / 60).saturating_sub(weeks * 168 + 1) * 3600) as i64;
    let enc = ENCRYPTED_DOORS.iter().map(|d| format!("'{d}'")).collect::<Vec<_>>().join(", ");
    let mut input = Input::default();
    // (sql, bucket seconds, lower bound): rows of (bucket, country, asn, count).
    // One query per series: (table, extra condition, split by network).
    let counts = |table: &str, doors: &str, by_asn: bool| {
        let asn = if by_asn { "asn" } else { "0" };
        let group = if by_asn { "t, country, asn" } else { "t, country" };
        format!(
            "SELECT t, country, {asn}, SUM(count) FROM {table} WHERE t >= ?1 AND t < ?2 AND country != '--' {doors} GROUP BY {group}"
        )
    };
    let encrypted = format!("AND door IN ({enc})");
    let failure_hours_from = ((from / 60).saturating_sub(169) * 3600) as i64;
    // (sql, bucket seconds, lower bound, which series).
    let queries: [(String, u64, i64, u8); 8] = [
        (counts("minutes", "", false), 60, m_from, 0),
        (counts("minutes", "", true), 60, m_from, 1),
        (counts("minutes", &encrypted, false), 60, m_from, 2),
        (counts("hours", "", false), 3600, h_from, 3),
        (counts("hours", "", true), 3600, h_from, 4),
        (counts("hours", &encrypted, false), 3600, h_from, 5),
        ("SELECT t, tld, 0, count FROM failures WHERE t >= ?1 AND t < ?2".into(), 60, m_from, 6),
        (
            "SELECT t / 3600 * 3600, tld, 0, SUM(count) FROM failures WHERE t >= ?1 AND t < ?2 GROUP BY t / 3600, tld"
                .into(),
            3600,
            failure_hours_from,
            7,
        ),
    ];
    for (sql, bucket, lower, which) in queries {
        let mut st = conn.prepare(&sql).map_err(err)?;
        let rows = st
            .query_map(rusqlite::params![lower, m_to], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?))
            })
            .map_err(err)?;
        for row in rows {
            let (t, name, asn, n) = row.map_err(err)?;
            let (at, n) = (t as u64 / bucket, n as f64);
            let series = match which {
                0 => input.country_minutes.entry(name).or_default(),
                1 => input.asn_minutes.entry((name, asn as u32)).or_default(),
                2 => input.encrypted_minutes.entry(name).or_default(),
                3 => input.country_hours.entry(name).or_default(),
                4 => input.asn_hours.entry((name, asn as u32)).or_default(),
                5 => input.encrypted_hours.entry(name).or_default(),
                6 => input.failure_minutes.entry(name).or_default(),
                _ => input.failure_hours.entry(name).or_default(),
            };
            *series.entry(at).or_default() += n;
        }
    }
    Ok(input)
}

/// Drops (as `drop_kind`) and surges (as censorship signals) in one series.
fn drops_and_surges(
    seen: &[f64],
    expected: &[f64],
    t: &Thresholds,
    who: impl Fn(Run) -> (Option<String>, Option<u32>),
    drop_kind: Kind,
    secs: &impl Fn(usize) -> u64,
    end_of: &impl Fn(Run) -> Option<u64>,
) -> Vec<Event> {
    let n = seen.len();
    let (sw, xw) = (window(seen, 2), window(expected, 2));
    // Judged: a baseline exists and ten minutes of it would be enough.
    let judged: Vec<bool> = (0..n).map(|i| xw[i].is_finite() && xw[i] / 5.0 * 10.0 >= t.min_expected).collect();
    let low: Vec<bool> = (0..n).map(|i| judged[i] && sw[i] < t.drop_ratio * xw[i]).collect();
    let high: Vec<bool> = (0..n).map(|i| judged[i] && sw[i] > t.surge_ratio * xw[i]).collect();
    let mut out = Vec::new();
    for (flags, kind, min) in [(low, drop_kind, t.drop_minutes), (high, Kind::Censorship, t.surge_minutes)] {
        for r in runs(&flags, min) {
            let s: f64 = seen[r.0..=r.1].iter().sum();
            let x: f64 = expected[r.0..=r.1].iter().filter(|v| v.is_finite()).sum();
            let (country, asn) = who(r);
            let (depth, detail) = if kind == Kind::Censorship {
                (s / x.max(1.0), format!("{s:.0} queries against {x:.0} expected ({:.1} ×)", s / x.max(1.0)))
            } else {
                (
                    1.0 - s / x.max(1.0),
                    format!("{s:.0} queries against {x:.0} expected ({:.0} % missing)", 100.0 * (1.0 - s / x.max(1.0))),
                )
            };
            out.push(Event {
                kind,
                country,
                asn,
                tld: None,
                start: secs(r.0),
                end: end_of(r),
                depth,
                confidence: confidence(s, x),
                detected_at: secs(r.0 + min),
                detail,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_bridge_short_gaps_and_keep_long_ones() {
        let f = |s: &str| s.chars().map(|c| c == '1').collect::<Vec<_>>();
        assert_eq!(runs(&f("0011110000111"), 3), vec![(2, 5), (10, 12)]);
        assert_eq!(runs(&f("11101111"), 5), vec![(0, 7)]);
        assert_eq!(runs(&f("1100000011"), 3), Vec::<Run>::new());
    }

    #[test]
    fn the_baseline_is_the_median_of_the_same_hour_and_ignores_one_outage() {
        let mut hours = Hours::new();
        for week in 0..4u64 {
            for h in 0..168u64 {
                // An outage in week 1, hour 10.
                let v = if week == 1 && h == 10 { 0.0 } else { 600.0 + h as f64 };
                hours.insert(week * 168 + h, v);
            }
        }
        let b = Baseline::new(&hours, 4, 4 * 168);
        assert_eq!(b.hour(4 * 168 + 10), Some(610.0));
        let m = b.minute((4 * 168 + 10) * 60 + 30).expect("expected");
        assert!((m - 610.0 / 60.0).abs() < 0.2, "{m}");
        assert_eq!(Baseline::new(&hours, 4, 0).hour(3), None, "no earlier week");
    }
}
