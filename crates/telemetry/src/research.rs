//! The research export: per UTC day, how often each query name was asked,
//! listing a name only if at least k distinct client networks asked for it.
//!
//! During the day each name keeps at most k hashes of client networks
//! (/24, /56), keyed by a random salt made for the day and never written;
//! once a name has k it keeps only its count. At the end of the day the
//! names that reached k are written as CSV and JSON Lines, and everything
//! else is forgotten.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::store::truncate;

/// Names tracked per day at most (more are counted as dropped).
const MAX_NAMES: usize = 1_000_000;

struct Entry {
    count: u64,
    /// Distinct network hashes, until there are k.
    nets: Vec<u64>,
}

struct Day {
    day: u64,
    salt: std::hash::RandomState,
    names: HashMap<Box<[u8]>, Entry>,
    dropped: u64,
}

impl Day {
    fn new(day: u64) -> Day {
        Day { day, salt: std::hash::RandomState::new(), names: HashMap::new(), dropped: 0 }
    }
}

/// One finished day.
#[derive(Debug, Clone)]
pub struct DayExport {
    /// Days since 1970-01-01.
    pub day: u64,
    /// (name, count) for names asked by at least k networks, most asked
    /// first.
    pub rows: Vec<(String, u64)>,
}

/// The day's aggregate.
pub struct Research {
    k: usize,
    day: Mutex<Day>,
}

impl std::fmt::Debug for Research {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Research").field("k", &self.k).finish()
    }
}

impl Research {
    /// An aggregate with threshold `k`.
    pub fn new(k: u32, now_s: u64) -> Research {
        Research { k: k.max(1) as usize, day: Mutex::new(Day::new(now_s / 86400)) }
    }

    /// Counts one query for `qname` (wire format, any case) from `client`.
    /// Returns the previous day's export when this call starts a new day.
    pub fn record(&self, now_s: u64, qname: &[u8], client: IpAddr) -> Option<DayExport> {
        let mut d = self.day.lock().unwrap_or_else(|e| e.into_inner());
        let finished = self.roll(&mut d, now_s);
        let net = d.salt.hash_one(truncate(client));
        let mut buf = [0u8; 255];
        let key = proto::name::lower_into(qname, &mut buf);
        let k = self.k;
        let tracked = d.names.len();
        match d.names.get_mut(key) {
            Some(e) => {
                e.count += 1;
                if e.nets.len() < k && !e.nets.contains(&net) {
                    e.nets.push(net);
                }
            }
            None if tracked < MAX_NAMES => {
                d.names.insert(key.into(), Entry { count: 1, nets: vec![net] });
            }
            None => d.dropped += 1,
        }
        finished
    }

    /// Ends the day if `now_s` is past it.
    pub fn tick(&self, now_s: u64) -> Option<DayExport> {
        let mut d = self.day.lock().unwrap_or_else(|e| e.into_inner());
        self.roll(&mut d, now_s)
    }

    /// The export of the day so far (what would be written now).
    pub fn snapshot(&self) -> DayExport {
        let d = self.day.lock().unwrap_or_else(|e| e.into_inner());
        self.export(&d)
    }

    fn roll(&self, d: &mut Day, now_s: u64) -> Option<DayExport> {
        let today = now_s / 86400;
        if today == d.day {
            return None;
        }
        let out = self.export(d);
        *d = Day::new(today);
        Some(out)
    }

    fn export(&self, d: &Day) -> DayExport {
        let mut rows: Vec<(String, u64)> =
            d.names.iter().filter(|(_, e)| e.nets.len() >= self.k).map(|(n, e)| (text(n), e.count)).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        DayExport { day: d.day, rows }
    }
}

/// A wire name as text, with characters outside `[a-z0-9_-]` escaped, so
/// CSV and JSON stay well-formed whatever was asked.
fn text(wire: &[u8]) -> String {
    let mut s = String::new();
    let mut pos = 0;
    while pos < wire.len() && wire[pos] != 0 {
        let n = wire[pos] as usize;
        for &b in wire.iter().skip(pos + 1).take(n) {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                s.push(b as char);
            } else {
                s.push_str(&format!("\\{b:03}"));
            }
        }
        s.push('.');
        pos += 1 + n;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// Writes `export` as `DIR/YYYY-MM-DD.csv` and `.jsonl` (atomically,
/// sealed under `vault` when given); returns the two paths.
pub fn write(dir: &Path, export: &DayExport, vault: Option<&seal::Vault>) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let date = crate::date(export.day * 86400);
    let mut csv = String::from("name,count\n");
    let mut jsonl = String::new();
    for (name, count) in &export.rows {
        csv.push_str(&format!("{name},{count}\n"));
        jsonl.push_str(&serde_json::json!({ "date": date, "name": name, "count": count }).to_string());
        jsonl.push('\n');
    }
    let csv_path = dir.join(format!("{date}.csv"));
    let jsonl_path = dir.join(format!("{date}.jsonl"));
    for (path, body) in [(&csv_path, csv), (&jsonl_path, jsonl)] {
        seal::write_file(path, body.as_bytes(), vault).map_err(|e| match e {
            seal::SealError::Io(e) => e,
            e => std::io::Error::other(e.to_string()),
        })?;
    }
    Ok((csv_path, jsonl_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(s: &str) -> Vec<u8> {
        proto::Name::from_ascii(s).expect("name").as_wire().to_vec()
    }

    #[test]
    fn only_names_asked_by_k_networks_are_exported() {
        let day0 = 20_000 * 86400;
        let r = Research::new(3, day0);
        for i in 0..5u8 {
            // Five networks ask popular.test; one network asks rare.test five times.
            r.record(day0 + 10, &wire("Popular.test"), IpAddr::from([10, 0, i, 1]));
            r.record(day0 + 10, &wire("rare.test"), IpAddr::from([10, 9, 9, i]));
        }
        assert_eq!(r.snapshot().rows, [("popular.test.".to_string(), 5)]);
        let done = r.record(day0 + 86400, &wire("x.test"), IpAddr::from([10, 0, 0, 1])).expect("day ends");
        assert_eq!(done.day, 20_000);
        assert_eq!(done.rows.len(), 1);
        assert!(r.snapshot().rows.is_empty(), "the new day starts empty");
        assert_eq!(text(&wire("a,b.test")), "a\\044b.test.");
    }
}
