//! Signatures that verified, remembered by a SHA-256 fingerprint of the
//! key, the signed data and the signature: the same check is not done
//! again. A wildcard's signature covers the same signed data for every
//! name it is expanded to (RFC 4035 §5.3.2 rebuilds the `*` owner), and an
//! NSEC3 zone's denial records are checked again for every name they
//! cover; each of those is one signature check the first time and a hash
//! after that.
//!
//! Only successes are remembered, and only of the exact (key, data,
//! signature) triple that verified, so a hit can never make other data
//! verify: forging one would need a SHA-256 collision. Validity dates are
//! checked before the memo is asked (they are in the signed data too). A
//! hit costs no work from the [`crate::WorkBudget`]: it does no
//! cryptography. The memo is bounded and emptied when full.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::Dnskey;

/// Most fingerprints kept (32 bytes each, about 1 MiB with the table).
const MAX_ENTRIES: usize = 16_384;

static VERIFIED: Mutex<Option<HashSet<[u8; 32]>>> = Mutex::new(None);

/// The fingerprint of checking `signature` over `data` with `key`: every
/// part length-prefixed, so no two triples run together the same way.
pub(crate) fn fingerprint(key: &Dnskey, data: &[u8], signature: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[key.algorithm]);
    for part in [&key.public_key[..], data, signature] {
        ctx.update(&(part.len() as u32).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Whether the check with this fingerprint verified before.
pub(crate) fn verified(fp: &[u8; 32]) -> bool {
    VERIFIED.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|s| s.contains(fp))
}

/// Remembers that the check with this fingerprint verified.
pub(crate) fn remember(fp: [u8; 32]) {
    let mut memo = VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
    let set = memo.get_or_insert_with(HashSet::new);
    if set.len() >= MAX_ENTRIES {
        set.clear();
    }
    set.insert(fp);
}
