//! Trust anchors kept up to date by RFC 5011, with their state on disk.
//!
//! The state file is plain text, one key per line:
//! `<zone> <state> <since-unix-seconds> <DNSKEY rdata in hex>`; it is
//! written atomically (a temporary file, fsync, rename). A file that cannot
//! be read or parsed is reported and the configured anchors are used.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use dnssec::rfc5011::{AnchorSet, Change, KeyState, TrackedKey};
use dnssec::{AlgorithmPolicy, Ds, WorkBudget, ds_matches};
use proto::{Name, Record, rtype};

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorStateError {
    /// The file is sealed and cannot be opened (no data key, another key,
    /// tampered with), or is in clear where it should be sealed.
    #[error("trust anchor state {path}: {why}")]
    Sealed {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Reading or writing failed.
    #[error("trust anchor state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not `zone state since hex`.
    #[error("trust anchor state {path}:{line}: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Line number.
        line: usize,
        /// What is wrong.
        why: &'static str,
    },
}

/// A configured anchor zone: its name, DS anchors and DNSKEY anchors.
type Configured = (Name, Vec<Ds>, Vec<Box<[u8]>>);

/// Anchors under RFC 5011 management.
#[derive(Debug)]
pub struct ManagedAnchors {
    path: PathBuf,
    /// Seals the state file (a keyless edge).
    vault: Option<seal::Vault>,
    /// The zones managed, with their configured DS anchors (for bootstrap).
    configured: Vec<Configured>,
    sets: Mutex<Vec<AnchorSet>>,
}

fn hex(data: &[u8]) -> String {
    data.iter().fold(String::with_capacity(data.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl ManagedAnchors {
    /// Anchors from the state file at `path`, or from `configured` (DS or
    /// DNSKEY records) when the file does not exist yet. A broken file is
    /// returned as the error beside anchors built from `configured`, so the
    /// caller can report it and go on.
    pub fn load(path: &Path, configured: &[Record], now: u64) -> (ManagedAnchors, Option<AnchorStateError>) {
        ManagedAnchors::load_sealed(path, configured, now, None)
    }

    /// As [`ManagedAnchors::load`], the state file sealed under `vault`
    /// (read and written so; a file in clear or under an unknown key is
    /// reported and the configured anchors used).
    pub fn load_sealed(
        path: &Path,
        configured: &[Record],
        now: u64,
        vault: Option<seal::Vault>,
    ) -> (ManagedAnchors, Option<AnchorStateError>) {
        let mut zones: Vec<Name> = configured.iter().map(|r| r.name.clone()).collect();
        zones.dedup();
        let configured_by_zone: Vec<Configured> = zones
            .iter()
            .map(|z| {
                let ds = configured
                    .iter()
                    .filter(|r| &r.name == z && r.rtype == rtype::DS)
                    .filter_map(|r| Ds::parse(&r.rdata).ok())
                    .collect();
                let keys = configured
                    .iter()
                    .filter(|r| &r.name == z && r.rtype == rtype::DNSKEY)
                    .map(|r| r.rdata.clone())
                    .collect();
                (z.clone(), ds, keys)
            })
            .collect();
        let fresh = || -> Vec<AnchorSet> {
            configured_by_zone
                .iter()
                .filter(|(_, _, keys)| !keys.is_empty())
                .map(|(z, _, keys)| AnchorSet::new(z.clone(), keys, now))
                .collect()
        };
        let (sets, err) = match seal::read_file(path, vault.as_ref()) {
            Ok(bytes) => match parse_state(path, &String::from_utf8_lossy(&bytes)) {
                Ok(sets) => (sets, None),
                Err(e) => (fresh(), Some(e)),
            },
            Err(seal::SealError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => (fresh(), None),
            Err(seal::SealError::Io(source)) => {
                (fresh(), Some(AnchorStateError::Io { path: path.to_path_buf(), source }))
            }
            Err(e) => (fresh(), Some(AnchorStateError::Sealed { path: path.to_path_buf(), why: e.to_string() })),
        };
        let sets = Mutex::new(sets);
        (ManagedAnchors { path: path.to_path_buf(), vault, configured: configured_by_zone, sets }, err)
    }

    /// The anchors in force: managed DNSKEYs where a zone has them, the
    /// configured DS records otherwise.
    pub fn current(&self) -> Vec<Record> {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (zone, ds, _) in &self.configured {
            match sets.iter().find(|s| &s.zone == zone).map(AnchorSet::trusted).filter(|t| !t.is_empty()) {
                Some(keys) => out.extend(keys),
                None => out.extend(ds.iter().map(|d| {
                    let mut rdata = d.key_tag.to_be_bytes().to_vec();
                    rdata.extend_from_slice(&[d.algorithm, d.digest_type]);
                    rdata.extend_from_slice(&d.digest);
                    Record { name: zone.clone(), rtype: rtype::DS, class: 1, ttl: 0, rdata: rdata.into() }
                })),
            }
        }
        out
    }

    /// The zones managed.
    pub fn zones(&self) -> Vec<Name> {
        self.configured.iter().map(|(z, _, _)| z.clone()).collect()
    }

    /// Applies a validated DNSKEY RRset (with RRSIGs) of `zone`. The first
    /// time, keys matching the configured DS become the tracked anchors.
    pub fn apply(
        &self,
        zone: &Name,
        dnskeys: &[Record],
        sigs: &[Record],
        now: u64,
        policy: &AlgorithmPolicy,
    ) -> Result<Vec<Change>, dnssec::Bogus> {
        let budget = WorkBudget::new(64);
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if !sets.iter().any(|s| &s.zone == zone) {
            let Some((_, ds, _)) = self.configured.iter().find(|(z, _, _)| z == zone) else { return Ok(Vec::new()) };
            let matching: Vec<Box<[u8]>> = dnskeys
                .iter()
                .filter(|r| r.rtype == rtype::DNSKEY && ds.iter().any(|d| ds_matches(zone, &r.rdata, d, policy)))
                .map(|r| r.rdata.clone())
                .collect();
            if matching.is_empty() {
                return Err(dnssec::Bogus::DnskeyMissing { zone: zone.to_string(), what: "the configured DS".into() });
            }
            sets.push(AnchorSet::new(zone.clone(), &matching, now));
        }
        let set = sets
            .iter_mut()
            .find(|s| &s.zone == zone)
            .ok_or_else(|| dnssec::Bogus::DnskeyMissing { zone: zone.to_string(), what: "anchor set".into() })?;
        set.update(dnskeys, sigs, now, policy, &budget)
    }

    /// Writes the state atomically.
    pub fn save(&self) -> Result<(), AnchorStateError> {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut text = String::from("; onedot trust anchor state (RFC 5011): zone state since dnskey-rdata-hex\n");
        for set in &sets {
            for k in &set.keys {
                let _ = writeln!(text, "{} {} {} {}", set.zone, k.state.as_str(), k.since, hex(&k.rdata));
            }
        }
        seal::write_file(&self.path, text.as_bytes(), self.vault.as_ref()).map_err(|e| match e {
            seal::SealError::Io(source) => AnchorStateError::Io { path: self.path.clone(), source },
            e => AnchorStateError::Sealed { path: self.path.clone(), why: e.to_string() },
        })?;
        Ok(())
    }
}

fn parse_state(path: &Path, text: &str) -> Result<Vec<AnchorSet>, AnchorStateError> {
    let mut sets: Vec<AnchorSet> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let corrupt = |why| AnchorStateError::Corrupt { path: path.to_path_buf(), line: i + 1, why };
        let f: Vec<&str> = line.split_whitespace().collect();
        let [zone, state, since, rdata] = f.as_slice() else { return Err(corrupt("expected four fields")) };
        let zone = Name::from_ascii(zone).map_err(|_| corrupt("bad zone name"))?;
        let state = KeyState::parse(state).ok_or_else(|| corrupt("unknown state"))?;
        let since: u64 = since.parse().map_err(|_| corrupt("bad time"))?;
        let rdata = unhex(rdata).filter(|r| r.len() > 4).ok_or_else(|| corrupt("bad key data"))?;
        let key = TrackedKey { rdata: rdata.into(), state, since };
        match sets.iter_mut().find(|s| s.zone == zone) {
            Some(s) => s.keys.push(key),
            None => sets.push(AnchorSet { zone, keys: vec![key] }),
        }
    }
    if sets.iter().all(|s| s.trusted().is_empty()) {
        return Err(AnchorStateError::Corrupt { path: path.to_path_buf(), line: 0, why: "no trusted key" });
    }
    Ok(sets)
}
