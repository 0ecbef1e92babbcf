//! Sealed data at rest, for keyless edges: everything onedot writes to
//! disk there (the query log and sample rows, the research export, the
//! transparency state, the RFC 5011 state) is encrypted and authenticated
//! with AES-256-GCM (ring) under a data key that the edge gets from its key
//! server at start-up and holds only in memory. A seized disk, or one left
//! behind by a power cut, holds nothing readable.
//!
//! Data keys come in epochs (the key server rotates them): the newest one
//! seals, every one held opens, so data written before a rotation stays
//! readable while its epoch's key is still handed out (the key server keeps
//! enough epochs to cover the longest retention).
//!
//! A sealed blob is `epoch (u32, big-endian) || nonce (12 random bytes) ||
//! ciphertext || tag (16)`; a sealed file is [`FILE_MAGIC`] followed by one
//! blob whose associated data is the file's name, so one sealed file cannot
//! be passed off as another.

use std::path::Path;
use std::sync::{Arc, RwLock};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The first bytes of a sealed file.
pub const FILE_MAGIC: &[u8; 8] = b"ODSEAL1\n";
/// Bytes a blob adds to what it seals.
pub const OVERHEAD: usize = 4 + NONCE_LEN + 16;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// No data key yet (the key server has not answered).
    #[error("sealed, and no data key is held (the key server has not given one)")]
    Locked,
    /// The blob's epoch is not among the keys held.
    #[error("sealed under data key epoch {0}, which is not held")]
    UnknownEpoch(u32),
    /// Tampered with, truncated, or under another key.
    #[error("does not open: tampered with, truncated or under another key")]
    Corrupt,
    /// A file without the sealed header where one was expected.
    #[error("not sealed")]
    NotSealed,
    /// File I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One data key.
#[derive(Clone)]
pub struct DataKey {
    /// Its epoch.
    pub epoch: u32,
    /// The key.
    pub key: [u8; 32],
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

struct Keys {
    by_epoch: Vec<(u32, LessSafeKey)>,
}

/// The data keys held, replaced when the key server rotates them; empty
/// (locked) until the first ones arrive. Cheap to share.
#[derive(Clone)]
pub struct Vault {
    keys: Arc<RwLock<Option<Arc<Keys>>>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("epochs", &self.epochs()).finish()
    }
}

impl Default for Vault {
    fn default() -> Vault {
        Vault::locked()
    }
}

impl Vault {
    /// A vault with no key yet.
    pub fn locked() -> Vault {
        Vault { keys: Arc::new(RwLock::new(None)), rng: SystemRandom::new() }
    }

    /// A vault holding `keys`.
    pub fn with_keys(keys: &[DataKey]) -> Vault {
        let v = Vault::locked();
        v.replace(keys);
        v
    }

    /// Replaces the keys held (the newest epoch seals from now on). An
    /// empty list leaves the vault as it was.
    pub fn replace(&self, keys: &[DataKey]) {
        let mut by_epoch: Vec<(u32, LessSafeKey)> = keys
            .iter()
            .filter_map(|k| UnboundKey::new(&AES_256_GCM, &k.key).ok().map(|u| (k.epoch, LessSafeKey::new(u))))
            .collect();
        if by_epoch.is_empty() {
            return;
        }
        by_epoch.sort_by_key(|(e, _)| std::cmp::Reverse(*e));
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(Keys { by_epoch }));
    }

    fn current(&self) -> Option<Arc<Keys>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether a key is held.
    pub fn is_unlocked(&self) -> bool {
        self.current().is_some()
    }

    /// The epochs held, newest first.
    pub fn epochs(&self) -> Vec<u32> {
        self.current().map(|k| k.by_epoch.iter().map(|(e, _)| *e).collect()).unwrap_or_default()
    }

    /// Seals `plain`, bound to `aad`, under the newest key.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let keys = self.current().ok_or(SealError::Locked)?;
        let (epoch, key) = keys.by_epoch.first().ok_or(SealError::Locked)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Corrupt)?;
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let mut body = out.split_off(start);
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            .map_err(|_| SealError::Corrupt)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a blob sealed with `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let keys = self.current().ok_or(SealError::Locked)?;
        let (epoch, rest) = sealed.split_first_chunk::<4>().ok_or(SealError::Corrupt)?;
        let (nonce, body) = rest.split_first_chunk::<NONCE_LEN>().ok_or(SealError::Corrupt)?;
        let epoch = u32::from_be_bytes(*epoch);
        let (_, key) = keys.by_epoch.iter().find(|(e, _)| *e == epoch).ok_or(SealError::UnknownEpoch(epoch))?;
        let mut body = body.to_vec();
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), &mut body)
            .map_err(|_| SealError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

/// Whether `bytes` (a file's contents) are sealed.
pub fn is_sealed_file(bytes: &[u8]) -> bool {
    bytes.starts_with(FILE_MAGIC)
}

fn file_aad(path: &Path) -> Vec<u8> {
    path.file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default()
}

/// Writes `bytes` to `path` atomically (a temporary file, fsync, rename,
/// the directory synced), sealed when a vault is given.
pub fn write_file(path: &Path, bytes: &[u8], vault: Option<&Vault>) -> Result<(), SealError> {
    write_file_mode(path, bytes, vault, 0o644)
}

/// [`write_file`] with the file's permissions.
pub fn write_file_mode(path: &Path, bytes: &[u8], vault: Option<&Vault>, mode: u32) -> Result<(), SealError> {
    match vault {
        Some(v) => {
            let mut out = FILE_MAGIC.to_vec();
            out.extend_from_slice(&v.seal(&file_aad(path), bytes)?);
            write_atomic(path, &out, mode)?;
        }
        None => write_atomic(path, bytes, mode)?,
    }
    Ok(())
}

/// Replaces `path` with `bytes` so that a crash leaves the old file or the
/// new one, never a torn one: written to a `.tmp` beside it with
/// permissions `mode`, synced, renamed over, and the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    // A name of its own for each write (two writers never share one), and
    // the mode set on the file itself (a leftover never lends its own).
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let tmp = path.with_file_name(name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads `path`: a sealed file is opened with the vault (an error without
/// one or without its key); with a vault, a file in clear is refused
/// ([`SealError::NotSealed`]), so a planted file is never trusted.
pub fn read_file(path: &Path, vault: Option<&Vault>) -> Result<Vec<u8>, SealError> {
    let bytes = std::fs::read(path)?;
    match (bytes.strip_prefix(FILE_MAGIC), vault) {
        (Some(blob), Some(v)) => v.open(&file_aad(path), blob),
        (Some(_), None) => Err(SealError::Locked),
        (None, Some(_)) => Err(SealError::NotSealed),
        (None, None) => Ok(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(epoch: u32, b: u8) -> DataKey {
        DataKey { epoch, key: [b; 32] }
    }

    #[test]
    fn blobs_open_under_any_held_epoch_and_nothing_else() {
        let v = Vault::locked();
        assert!(matches!(v.seal(b"", b"x"), Err(SealError::Locked)));
        v.replace(&[key(7, 1)]);
        let old = v.seal(b"row", b"192.0.2.1 www.example.test").expect("seal");
        assert_eq!(old.len(), 26 + OVERHEAD);
        assert!(!old.windows(9).any(|w| w == b"192.0.2.1"), "nothing in clear");
        v.replace(&[key(8, 2), key(7, 1)]);
        let new = v.seal(b"row", b"later").expect("seal");
        assert_eq!(&new[..4], &8u32.to_be_bytes(), "the newest epoch seals");
        assert_eq!(v.open(b"row", &old).expect("old epoch opens"), b"192.0.2.1 www.example.test");
        assert!(matches!(v.open(b"other", &old), Err(SealError::Corrupt)), "bound to its associated data");
        let mut flipped = new.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(v.open(b"row", &flipped), Err(SealError::Corrupt)));
        assert!(matches!(v.open(b"row", &new[..10]), Err(SealError::Corrupt)));
        v.replace(&[key(9, 3), key(8, 2)]);
        assert!(matches!(v.open(b"row", &old), Err(SealError::UnknownEpoch(7))), "a retired epoch");
        let other = Vault::with_keys(&[key(8, 9)]);
        assert!(matches!(other.open(b"row", &new), Err(SealError::Corrupt)), "another edge's key");
    }

    #[test]
    fn files_are_sealed_bound_to_their_name_and_clear_ones_refused_when_sealing() {
        let dir = std::env::temp_dir().join(format!("onedot-seal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let v = Vault::with_keys(&[key(1, 5)]);
        let a = dir.join("state.json");
        write_file(&a, b"{\"client\": \"192.0.2.1\"}", Some(&v)).expect("write");
        let raw = std::fs::read(&a).expect("raw");
        assert!(is_sealed_file(&raw) && !raw.windows(9).any(|w| w == b"192.0.2.1"));
        assert_eq!(read_file(&a, Some(&v)).expect("open"), b"{\"client\": \"192.0.2.1\"}");
        assert!(matches!(read_file(&a, None), Err(SealError::Locked)));
        let b = dir.join("other.json");
        std::fs::copy(&a, &b).expect("copy");
        assert!(matches!(read_file(&b, Some(&v)), Err(SealError::Corrupt)), "renamed: refused");
        write_file(&b, b"clear", None).expect("write");
        assert_eq!(read_file(&b, None).expect("clear"), b"clear");
        assert!(matches!(read_file(&b, Some(&v)), Err(SealError::NotSealed)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
