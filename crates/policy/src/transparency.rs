//! The transparency log: per source, what it is, how big, what changed and
//! when, and how many queries it blocked per day. Aggregates only: nothing
//! here knows who asked.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::source::{Format, Kind, Legal, LoadedSource, SourceSpec};

/// Changes kept per source.
const MAX_CHANGES: usize = 100;
/// Names listed per change (the counts are always complete).
const SAMPLE: usize = 50;
/// Days of block counts kept.
const MAX_DAYS: usize = 400;

/// One version of a source replacing the previous one.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// When, as Unix seconds.
    pub at: u64,
    /// When, in UTC.
    pub at_utc: String,
    /// Entries added.
    pub added: usize,
    /// Entries removed.
    pub removed: usize,
    /// Entries after the change.
    pub size: usize,
    /// Some of the entries added.
    pub added_sample: Vec<String>,
    /// Some of the entries removed.
    pub removed_sample: Vec<String>,
    /// A digest of the whole content (order-independent), to recognise the
    /// same version after a restart.
    #[serde(default)]
    pub digest: String,
    /// The first version read after a restart, different from the last one
    /// logged before it: `added` and `removed` are then the whole new and
    /// old sizes (the old content is not kept).
    #[serde(default)]
    pub after_restart: bool,
}

/// A reload that failed (the previous version kept serving).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// When, as Unix seconds.
    pub at: u64,
    /// When, in UTC.
    pub at_utc: String,
    /// The error, with file and line.
    pub error: String,
}

/// Blocks attributed to a source on one UTC day.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Queries answered blocked.
    pub blocks: u64,
}

/// A source as the log shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceReport {
    /// Its name.
    pub name: String,
    /// Its category.
    pub category: String,
    /// Block or allow.
    pub kind: Kind,
    /// Its syntax.
    pub format: Format,
    /// The order behind it, if any.
    pub legal_basis: Option<Legal>,
    /// The EDE code its blocks carry.
    pub ede: u16,
    /// Whether it applies to every profile.
    pub all_profiles: bool,
    /// Entries (names and prefixes) now.
    pub size: usize,
    /// Lines skipped as not DNS rules.
    pub unsupported_lines: usize,
    /// The last failed reload, if the last attempt failed.
    pub last_error: Option<Failure>,
    /// Versions, oldest first.
    pub changes: Vec<Change>,
    /// Blocks per UTC day, oldest first.
    pub blocks_per_day: Vec<DayCount>,
}

/// A profile as the log shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProfileReport {
    /// Its name.
    pub name: String,
    /// What a blocked answer is.
    pub answer: crate::BlockAnswer,
    /// Its sources in precedence order.
    pub sources: Vec<String>,
}

/// The whole log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// When it was made, in UTC.
    pub generated_at: String,
    /// Profiles.
    pub profiles: Vec<ProfileReport>,
    /// Sources.
    pub sources: Vec<SourceReport>,
}

/// Per-day counting over a monotonic counter.
#[derive(Debug, Default)]
pub(crate) struct Days {
    day: u64,
    base: u64,
    done: BTreeMap<u64, u64>,
}

impl Days {
    /// Closes finished days up to `now`.
    pub(crate) fn roll(&mut self, counter: &AtomicU64, now: u64) {
        let today = now / 86400;
        if today != self.day {
            let total = counter.load(Ordering::Relaxed);
            if self.day != 0 && total > self.base {
                self.done.insert(self.day, total - self.base);
            }
            self.day = today;
            self.base = total;
            while self.done.len() > MAX_DAYS {
                self.done.pop_first();
            }
        }
    }

    fn report(&self, counter: &AtomicU64) -> Vec<DayCount> {
        let today = counter.load(Ordering::Relaxed).saturating_sub(self.base);
        let mut out: Vec<DayCount> =
            self.done.iter().map(|(d, n)| DayCount { date: date(d * 86400), blocks: *n }).collect();
        if self.day != 0 {
            out.push(DayCount { date: date(self.day * 86400), blocks: today });
        }
        out
    }
}

/// What the log keeps about one source.
#[derive(Debug, Default)]
pub(crate) struct SourceLog {
    pub(crate) counter: Arc<AtomicU64>,
    pub(crate) changes: VecDeque<Change>,
    pub(crate) last_error: Option<Failure>,
    pub(crate) days: Days,
}

impl SourceLog {
    pub(crate) fn failed(&mut self, now: u64, error: String) {
        self.last_error = Some(Failure { at: now, at_utc: utc(now), error });
    }

    /// Records `new` replacing `old`; returns whether anything changed.
    pub(crate) fn changed(&mut self, now: u64, old: Option<&LoadedSource>, new: &LoadedSource) -> bool {
        self.last_error = None;
        let show = |(kind, key): &(u8, Vec<u8>)| match kind {
            0 => crate::names::wire_to_text(key),
            1 => format!("allow {}", crate::names::wire_to_text(key)),
            _ => String::from_utf8_lossy(key).into_owned(),
        };
        let (mut added, mut added_sample) = (0, Vec::new());
        let mut digest = 0u64;
        for k in new.keys() {
            digest = digest.wrapping_add(fnv1a(k.0, &k.1));
            if old.is_none_or(|o| !o.has_key(k.0, &k.1)) {
                added += 1;
                if added_sample.len() < SAMPLE {
                    added_sample.push(show(&k));
                }
            }
        }
        let (mut removed, mut removed_sample) = (0, Vec::new());
        if let Some(o) = old {
            for k in o.keys() {
                if !new.has_key(k.0, &k.1) {
                    removed += 1;
                    if removed_sample.len() < SAMPLE {
                        removed_sample.push(show(&k));
                    }
                }
            }
        }
        if old.is_some() && added == 0 && removed == 0 {
            return false;
        }
        let digest = format!("{digest:016x}");
        let mut after_restart = false;
        if old.is_none()
            && let Some(last) = self.changes.back()
        {
            // The log was restored from disk: compare with its last version.
            if last.digest == digest {
                return true;
            }
            after_restart = true;
            removed = last.size;
        }
        self.changes.push_back(Change {
            at: now,
            at_utc: utc(now),
            added,
            removed,
            size: new.entries(),
            added_sample,
            removed_sample,
            digest,
            after_restart,
        });
        while self.changes.len() > MAX_CHANGES {
            self.changes.pop_front();
        }
        true
    }

    /// The report of a source as loaded (`src`), or of one that never
    /// loaded (a feed not yet fetched): size 0, its last error.
    pub(crate) fn report(&self, spec: &SourceSpec, src: Option<&LoadedSource>, default_ede: u16) -> SourceReport {
        let ede = if spec.legal_basis.is_some() {
            proto::ede::code::CENSORED
        } else {
            spec.ede.map_or(default_ede, |e| e.code())
        };
        SourceReport {
            name: spec.name.clone(),
            category: spec.category.clone(),
            kind: spec.kind,
            format: spec.format,
            legal_basis: spec.legal_basis.clone(),
            ede,
            all_profiles: spec.all_profiles,
            size: src.map_or(0, LoadedSource::entries),
            unsupported_lines: src.map_or(0, |s| s.unsupported),
            last_error: self.last_error.clone(),
            changes: self.changes.iter().cloned().collect(),
            blocks_per_day: self.days.report(&self.counter),
        }
    }
}

/// FNV-1a of a key, stable across runs and builds.
fn fnv1a(kind: u8, key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::iter::once(kind).chain(key.iter().copied()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What is kept on disk about one source.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct SavedLog {
    changes: Vec<Change>,
    last_error: Option<Failure>,
    /// Finished days (days since 1970) and their block counts.
    days: BTreeMap<u64, u64>,
    /// The day in progress and its count so far.
    today: (u64, u64),
}

impl SourceLog {
    pub(crate) fn save(&self) -> SavedLog {
        let today = self.counter.load(Ordering::Relaxed).saturating_sub(self.days.base);
        SavedLog {
            changes: self.changes.iter().cloned().collect(),
            last_error: self.last_error.clone(),
            days: self.days.done.clone(),
            today: (self.days.day, today),
        }
    }

    /// Takes over a saved log (before the counter has counted anything).
    pub(crate) fn restore(&mut self, saved: SavedLog) {
        self.changes = saved.changes.into();
        while self.changes.len() > MAX_CHANGES {
            self.changes.pop_front();
        }
        self.last_error = saved.last_error;
        self.days.done = saved.days;
        let (day, count) = saved.today;
        self.counter.store(count, Ordering::Relaxed);
        self.days.day = day;
        self.days.base = 0;
    }
}

pub use proto::time::{date, utc};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_roll_over() {
        let c = AtomicU64::new(0);
        let mut d = Days::default();
        d.roll(&c, 86400 * 10 + 5);
        c.fetch_add(3, Ordering::Relaxed);
        d.roll(&c, 86400 * 10 + 500);
        c.fetch_add(2, Ordering::Relaxed);
        d.roll(&c, 86400 * 11 + 1);
        c.fetch_add(7, Ordering::Relaxed);
        let r = d.report(&c);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].date.as_str(), r[0].blocks), ("1970-01-11", 5));
        assert_eq!((r[1].date.as_str(), r[1].blocks), ("1970-01-12", 7));
    }
}
