//! Filtering for onedot: profiles, block and allow lists (hosts, domain
//! lists, AdBlock-style, RPZ), the decision for a name or an answer address
//! with its Extended DNS Error, reload, and the transparency log.
//!
//! A [`Policy`] holds every profile (`unfiltered`, `security`, `family`,
//! ...) by a small numeric id that the doors carry; each profile is an
//! ordered list of loaded sources. Sources are re-read as a whole and
//! swapped in atomically: a query sees either the old or the new version,
//! and a source that fails to parse leaves the old one serving, with the
//! error (file and line) in the log and the transparency report.
//!
//! Each profile has a generation number that moves whenever one of its
//! sources changes. Answers cached for a profile carry the generation they
//! were decided under, so a reload makes them stale without touching the
//! cache, and the cache-hit path costs one atomic load more.
//!
//! Nothing here does network I/O or knows who asked.

mod ips;
mod names;
mod profile;
mod source;
pub mod transparency;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

pub use names::Scope;
pub use profile::{Block, BlockAnswer, Profile, ProfileSpec, Response, Verdict};
pub use source::{
    Action, EdeKind, Format, Kind, Legal, LoadedSource, LocalRecord, SourceError, SourceSpec, fingerprint, load,
};
use transparency::SourceLog;

/// At most this many profiles (the id shares a byte with cache flags).
pub const MAX_PROFILES: usize = 32;

/// A configuration the policy cannot use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Two profiles or two sources share a name.
    #[error("{0:?} is defined twice")]
    Duplicate(String),
    /// A profile names a source that is not defined.
    #[error("profile {profile:?} uses source {source_name:?}, which is not defined")]
    UnknownSource {
        /// The profile.
        profile: String,
        /// The missing source.
        source_name: String,
    },
    /// More than [`MAX_PROFILES`] profiles.
    #[error("at most {MAX_PROFILES} profiles")]
    TooManyProfiles,
    /// No profile at all.
    #[error("at least one profile is needed")]
    NoProfiles,
    /// Sources that could not be read at start-up.
    #[error("{}", .0.iter().map(|(n, e)| format!("source {n}: {e}")).collect::<Vec<_>>().join("; "))]
    Sources(Vec<(String, SourceError)>),
}

/// One source's current version and log.
#[derive(Debug)]
struct Slot {
    spec: SourceSpec,
    loaded: Option<Arc<LoadedSource>>,
    /// The fingerprint of files that failed to load, so they are not read
    /// (and reported) again until they change.
    failed: Option<u64>,
    log: SourceLog,
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Sources whose content changed.
    pub changed: Vec<String>,
    /// Sources that failed to load (their previous version still serves).
    pub failed: Vec<(String, SourceError)>,
}

/// Every profile and source, swappable at run time.
#[derive(Debug)]
pub struct Policy {
    specs: Vec<ProfileSpec>,
    profiles: ArcSwap<Vec<Arc<Profile>>>,
    generations: Box<[AtomicU32]>,
    slots: Mutex<Vec<Slot>>,
}

impl Policy {
    /// A policy with one profile, `unfiltered`, and no sources.
    pub fn unfiltered() -> Policy {
        Policy::new(vec![ProfileSpec::named("unfiltered")], Vec::new()).unwrap_or_else(|_| unreachable!())
    }

    /// A policy over `profiles` (the first is the default, id 0) and
    /// `sources`; nothing is loaded until [`Policy::reload`].
    pub fn new(profiles: Vec<ProfileSpec>, sources: Vec<SourceSpec>) -> Result<Policy, PolicyError> {
        if profiles.is_empty() {
            return Err(PolicyError::NoProfiles);
        }
        if profiles.len() > MAX_PROFILES {
            return Err(PolicyError::TooManyProfiles);
        }
        let (mut profile_names, mut source_names) =
            (std::collections::HashSet::new(), std::collections::HashSet::new());
        let dup = profiles.iter().map(|p| &p.name).find(|n| !profile_names.insert(*n));
        if let Some(n) = dup.or_else(|| sources.iter().map(|s| &s.name).find(|n| !source_names.insert(*n))) {
            return Err(PolicyError::Duplicate(n.clone()));
        }
        for p in &profiles {
            if let Some(s) = p.sources.iter().find(|s| !sources.iter().any(|x| &x.name == *s)) {
                return Err(PolicyError::UnknownSource { profile: p.name.clone(), source_name: s.clone() });
            }
        }
        let slots: Vec<Slot> = sources
            .into_iter()
            .map(|spec| Slot { spec, loaded: None, failed: None, log: SourceLog::default() })
            .collect();
        let generations = profiles.iter().map(|_| AtomicU32::new(1)).collect();
        let policy = Policy {
            specs: profiles,
            profiles: ArcSwap::from_pointee(Vec::new()),
            generations,
            slots: Mutex::new(slots),
        };
        let slots = policy.lock();
        policy.profiles.store(Arc::new(policy.build(&slots)));
        drop(slots);
        Ok(policy)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn build(&self, slots: &[Slot]) -> Vec<Arc<Profile>> {
        self.specs
            .iter()
            .map(|spec| {
                let everywhere = slots.iter().filter(|s| s.spec.all_profiles);
                let own = spec.sources.iter().filter_map(|n| slots.iter().find(|s| &s.spec.name == n));
                let mut sources: Vec<Arc<LoadedSource>> = Vec::new();
                for s in everywhere.chain(own) {
                    if let Some(l) = &s.loaded
                        && !sources.iter().any(|x| Arc::ptr_eq(x, l))
                    {
                        sources.push(l.clone());
                    }
                }
                Arc::new(Profile { spec: spec.clone(), sources })
            })
            .collect()
    }

    /// The id of the profile called `name`.
    pub fn profile_id(&self, name: &str) -> Option<u8> {
        self.specs.iter().position(|p| p.name == name).map(|i| i as u8)
    }

    /// Profile names, by id.
    pub fn profile_names(&self) -> Vec<String> {
        self.specs.iter().map(|p| p.name.clone()).collect()
    }

    /// The profile with id `id` as it is now (the default for an unknown
    /// id).
    pub fn profile(&self, id: u8) -> Arc<Profile> {
        let all = self.profiles.load();
        all.get(id as usize)
            .or_else(|| all.first())
            .cloned()
            .unwrap_or_else(|| Arc::new(Profile { spec: ProfileSpec::named("unfiltered"), sources: Vec::new() }))
    }

    /// The generation of profile `id`: read it before deciding, and keep it
    /// with what was decided.
    #[inline]
    pub fn generation(&self, id: u8) -> u32 {
        self.generations.get(id as usize).map_or(0, |g| g.load(Ordering::Acquire))
    }

    /// Reads sources from disk: every source when `force`, else only those
    /// whose files changed (or that never loaded). Each one that parses
    /// replaces its previous version; each one that fails is reported and
    /// the previous version keeps serving. `now` is Unix seconds.
    pub fn reload(&self, now: u64, force: bool) -> ReloadReport {
        let mut report = ReloadReport::default();
        // Read outside the lock (a big list takes a while); the lock only
        // serialises reloads and the swap.
        type Work = (usize, SourceSpec, Option<Arc<LoadedSource>>, Option<u64>, Arc<std::sync::atomic::AtomicU64>);
        let work: Vec<Work> = {
            let slots = self.lock();
            slots
                .iter()
                .enumerate()
                .map(|(i, s)| (i, s.spec.clone(), s.loaded.clone(), s.failed, s.log.counter.clone()))
                .collect()
        };
        let mut results = Vec::new();
        for (i, spec, old, failed, counter) in work {
            let fp = fingerprint(&spec.path).ok();
            let stale = match (&old, fp) {
                (_, Some(fp)) if failed == Some(fp) => false,
                (Some(o), Some(fp)) => fp != o.fingerprint,
                _ => true,
            };
            if !force && !stale {
                continue;
            }
            results.push((i, old, fp, load(&spec, counter)));
        }
        let mut slots = self.lock();
        let mut changed_names = Vec::new();
        for (i, old, fp, result) in results {
            let slot = &mut slots[i];
            slot.failed = result.as_ref().err().and(fp);
            match result {
                Ok(new) => {
                    let new = Arc::new(new);
                    if slot.log.changed(now, old.as_deref(), &new) {
                        changed_names.push(slot.spec.name.clone());
                    }
                    slot.loaded = Some(new);
                }
                Err(e) => {
                    slot.log.failed(now, e.to_string());
                    report.failed.push((slot.spec.name.clone(), e));
                }
            }
        }
        if !changed_names.is_empty() {
            let profiles = self.build(&slots);
            self.profiles.store(Arc::new(profiles));
            for (id, spec) in self.specs.iter().enumerate() {
                let affected = slots.iter().any(|s| {
                    changed_names.contains(&s.spec.name) && (s.spec.all_profiles || spec.sources.contains(&s.spec.name))
                });
                if affected {
                    self.generations[id].fetch_add(1, Ordering::AcqRel);
                }
            }
        }
        for s in slots.iter_mut() {
            s.log.days.roll(&s.log.counter, now);
        }
        report.changed = changed_names;
        report
    }

    /// Loads every source for start-up: fails if any source cannot be read,
    /// except a feed (a source with a `url`) that has no copy yet: it is
    /// reported, and serves once it has been fetched.
    pub fn load_all(&self, now: u64) -> Result<(), PolicyError> {
        let r = self.reload(now, true);
        let fatal: Vec<_> = {
            let slots = self.lock();
            r.failed
                .into_iter()
                .filter(|(name, _)| {
                    !slots.iter().any(|s| &s.spec.name == name && s.spec.url.is_some() && !s.spec.path.exists())
                })
                .collect()
        };
        if fatal.is_empty() { Ok(()) } else { Err(PolicyError::Sources(fatal)) }
    }

    /// Records a failure that happened outside a reload (a feed that could
    /// not be fetched) as the source's last error in the transparency log.
    pub fn note_failure(&self, source: &str, now: u64, error: String) {
        if let Some(s) = self.lock().iter_mut().find(|s| s.spec.name == source) {
            s.log.failed(now, error);
        }
    }

    /// Closes finished days in the per-day counts (call now and then).
    pub fn tick(&self, now: u64) {
        for s in self.lock().iter_mut() {
            s.log.days.roll(&s.log.counter, now);
        }
    }

    /// The transparency log's history (changes, failures, per-day counts)
    /// as JSON, for [`Policy::restore_state`] after a restart.
    pub fn save_state(&self, now: u64) -> String {
        let mut slots = self.lock();
        let mut sources = std::collections::BTreeMap::new();
        for s in slots.iter_mut() {
            s.log.days.roll(&s.log.counter, now);
            sources.insert(s.spec.name.clone(), s.log.save());
        }
        serde_json::json!({ "version": 1, "sources": sources }).to_string()
    }

    /// Restores what [`Policy::save_state`] wrote, for the sources still
    /// configured. Call before the first load.
    pub fn restore_state(&self, json: &str) -> Result<(), String> {
        #[derive(serde::Deserialize)]
        struct Saved {
            version: u32,
            sources: std::collections::BTreeMap<String, transparency::SavedLog>,
        }
        let saved: Saved = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if saved.version != 1 {
            return Err(format!("state version {} is not supported", saved.version));
        }
        let mut sources = saved.sources;
        for s in self.lock().iter_mut() {
            if let Some(log) = sources.remove(&s.spec.name) {
                s.log.restore(log);
            }
        }
        Ok(())
    }

    /// Heap bytes of every loaded source.
    pub fn heap_bytes(&self) -> usize {
        self.lock().iter().filter_map(|s| s.loaded.as_ref()).map(|l| l.heap_bytes()).sum()
    }

    /// The transparency log as of `now`.
    pub fn transparency(&self, now: u64) -> transparency::Report {
        let mut slots = self.lock();
        for s in slots.iter_mut() {
            s.log.days.roll(&s.log.counter, now);
        }
        let profiles = self.profiles.load();
        transparency::Report {
            generated_at: transparency::utc(now),
            profiles: profiles
                .iter()
                .map(|p| transparency::ProfileReport {
                    name: p.spec.name.clone(),
                    answer: p.spec.answer,
                    sources: p.sources.iter().map(|s| s.spec.name.clone()).collect(),
                })
                .collect(),
            sources: slots
                .iter()
                .filter(|s| s.loaded.is_some() || s.log.last_error.is_some())
                .map(|s| {
                    let default_ede = self
                        .specs
                        .iter()
                        .find(|p| p.sources.contains(&s.spec.name))
                        .map_or(EdeKind::Filtered.code(), |p| p.ede.code());
                    s.log.report(&s.spec, s.loaded.as_deref(), default_ede)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(dir: &std::path::Path, text: &str) -> Policy {
        std::fs::write(dir.join("list.txt"), text).expect("write");
        let source = SourceSpec::new("list", dir.join("list.txt"), Format::Domains, "test");
        let mut p = ProfileSpec::named("filtered");
        p.sources = vec!["list".into()];
        Policy::new(vec![p], vec![source]).expect("policy")
    }

    fn block(policy: &Policy, name: &str) {
        let wire = proto::Name::from_ascii(name).expect("name");
        match policy.profile(0).check_name(wire.as_wire()) {
            Verdict::Block(b) => b.count(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_log_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("onedot-policy-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let t0 = 1_795_574_828;
        let first = setup(&dir, "a.test\n");
        first.load_all(t0).expect("loads");
        block(&first, "a.test");
        block(&first, "www.a.test");
        let state = first.save_state(t0 + 5);

        // Same content after a restart: no new change; today's count goes on.
        let second = setup(&dir, "a.test\n");
        second.restore_state(&state).expect("restores");
        second.load_all(t0 + 10).expect("loads");
        block(&second, "a.test");
        let r = second.transparency(t0 + 20);
        assert_eq!(r.sources[0].changes.len(), 1);
        assert_eq!(r.sources[0].blocks_per_day.last().map(|d| d.blocks), Some(3));

        // Different content after a restart: logged as such; a day later the
        // count moves to a finished day.
        let state = second.save_state(t0 + 30);
        let third = setup(&dir, "a.test\nb.test\n");
        third.restore_state(&state).expect("restores");
        third.load_all(t0 + 40).expect("loads");
        let r = third.transparency(t0 + 86_400);
        let last = r.sources[0].changes.last().expect("change");
        assert!(last.after_restart && last.size == 2 && last.removed == 1, "{last:?}");
        let days: Vec<u64> = r.sources[0].blocks_per_day.iter().map(|d| d.blocks).collect();
        assert_eq!(days, [3, 0]);
        assert!(third.restore_state("{not json").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
