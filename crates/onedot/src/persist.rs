//! Cache snapshots on disk: both caches written on the way down (SIGTERM,
//! a takeover, `onedot ctl dump-cache`) and read back at start, so that a
//! restart or an upgrade does not start cold. The format is the cache
//! crate's ([`cache::snapshot`]: versioned, SHA-256 summed, every entry
//! checked as it is read); here it is given a fingerprint of what cached
//! data depends on, written 0600, and sealed on a keyless edge.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;

/// A snapshot larger than this many times the two caches' bounds is not
/// read (it cannot be one of ours).
const SIZE_FACTOR: u64 = 2;

/// Writes and reads one node's cache snapshots.
pub struct Snapshots {
    /// The configured file (`cache.snapshot_file`).
    pub path: Option<PathBuf>,
    fingerprint: [u8; 32],
    limit: u64,
    vault: Option<seal::Vault>,
    service: Arc<recursor::Service>,
    policy: Arc<policy::Policy>,
}

/// What cached data depends on beyond the entries themselves: the DNSSEC
/// settings and trust anchors (a Secure status is only as good as the
/// anchor it chains to), and which internet it was learnt from (the root
/// hints and authorities' port). A snapshot written under another
/// fingerprint is foreign and not read.
pub fn fingerprint(config: &Config) -> anyhow::Result<[u8; 32]> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"onedot cache fingerprint 1\n");
    ctx.update(&serde_json::to_vec(&config.dnssec)?);
    if config.dnssec.validate {
        for anchor in config.trust_anchors()? {
            ctx.update(anchor.name.as_wire());
            ctx.update(&anchor.rtype.to_be_bytes());
            ctx.update(&anchor.rdata);
        }
    }
    for hint in config.root_hints()? {
        ctx.update(hint.to_string().as_bytes());
    }
    ctx.update(&config.resolver.upstream_port.to_be_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Snapshots {
    /// Snapshots of `service`'s caches under `config`.
    pub fn new(
        config: &Config,
        service: Arc<recursor::Service>,
        policy: Arc<policy::Policy>,
        vault: Option<seal::Vault>,
    ) -> anyhow::Result<Snapshots> {
        Ok(Snapshots {
            path: config.cache.snapshot_file.clone(),
            fingerprint: fingerprint(config)?,
            limit: (config.cache.answer_max_bytes + config.cache.rrset_max_bytes) * SIZE_FACTOR + (16 << 20),
            vault,
            service,
            policy,
        })
    }

    /// Writes both caches to `path` (atomically, 0600). Answers that
    /// depend on a block list, blocked answers and answers decided under
    /// an older list are left out. Blocking: call off the async workers.
    pub fn dump(&self, path: &Path) -> anyhow::Result<cache::snapshot::Counts> {
        let policy = &self.policy;
        // Data learnt under a negative trust anchor added while running is
        // not validated, and the anchor does not outlive the process.
        let exceptions: Vec<proto::Name> =
            self.service.recursor().config().validation.as_ref().map(|v| v.runtime_anchors.list()).unwrap_or_default();
        let excepted = |w: &[u8]| {
            !exceptions.is_empty()
                && proto::Name::from_wire(w).is_ok_and(|n| exceptions.iter().any(|e| n.is_subdomain_of(e)))
        };
        let keep = cache::snapshot::Keep {
            answer: |profile: u8, a: &cache::CachedAnswer| {
                !a.counts_hits()
                    && a.tag() == policy.generation(profile)
                    && policy.profile(profile).is_empty()
                    && !a.question().is_some_and(|(n, _)| excepted(n))
            },
            rrset: |e: &cache::RrsetEntry| !excepted(e.owner()),
        };
        let (bytes, counts) = cache::snapshot::write(
            self.service.answers(),
            self.service.recursor().cache(),
            &self.fingerprint,
            unix_now(),
            &policy.profile_names(),
            keep,
        );
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cache snapshot {}", path.display()))?;
        }
        seal::write_file_mode(path, &bytes, self.vault.as_ref(), 0o600)
            .with_context(|| format!("cache snapshot {}", path.display()))?;
        Ok(counts)
    }

    /// Reads `path` into the caches. A missing file is `Ok(None)`; a
    /// damaged, foreign or other-version one is an error naming why, and
    /// nothing of it is used.
    pub fn load(&self, path: &Path) -> anyhow::Result<Option<cache::snapshot::Counts>> {
        let size = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cache snapshot {}", path.display())),
        };
        if size > self.limit {
            anyhow::bail!("cache snapshot {}: {size} bytes, more than the caches could hold", path.display());
        }
        let bytes =
            seal::read_file(path, self.vault.as_ref()).with_context(|| format!("cache snapshot {}", path.display()))?;
        let policy = &self.policy;
        let profile = |name: &str| {
            let id = policy.profile_id(name)?;
            policy.profile(id).is_empty().then(|| (id, policy.generation(id)))
        };
        let counts = cache::snapshot::read(
            &bytes,
            &self.fingerprint,
            unix_now(),
            self.service.answers(),
            self.service.recursor().cache(),
            profile,
        )
        .with_context(|| format!("cache snapshot {}", path.display()))?;
        Ok(Some(counts))
    }

    /// At start: loads the configured snapshot, if any; a bad one is a
    /// warning and the cache starts cold.
    pub fn load_at_start(&self, path: Option<&Path>) {
        let Some(path) = path.or(self.path.as_deref()) else { return };
        let started = std::time::Instant::now();
        match self.load(path) {
            Ok(Some(c)) => tracing::info!(
                answers = c.answers,
                rrsets = c.rrsets,
                skipped = c.skipped,
                ms = started.elapsed().as_millis() as u64,
                "cache snapshot loaded"
            ),
            Ok(None) => tracing::info!(file = %path.display(), "no cache snapshot yet; the cache starts cold"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cache snapshot ignored; the cache starts cold"),
        }
    }

    /// On the way down: writes the configured snapshot, if any.
    pub fn dump_at_exit(&self) {
        let Some(path) = &self.path else { return };
        let started = std::time::Instant::now();
        match self.dump(path) {
            Ok(c) => tracing::info!(
                answers = c.answers,
                rrsets = c.rrsets,
                ms = started.elapsed().as_millis() as u64,
                "cache snapshot written"
            ),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "cache snapshot not written"),
        }
    }
}
