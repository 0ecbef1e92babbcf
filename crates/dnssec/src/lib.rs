//! DNSSEC for onedot: the parts of validation that decide, without I/O.
//!
//! * [`records`] — DNSKEY, DS, RRSIG and NSEC record data, key tags;
//! * [`canonical`] — canonical name order and the RFC 4034 signed data;
//! * [`verify`] — RRSIG verification of an RRset against a DNSKEY set, DS
//!   matching, each attempt charged to a [`WorkBudget`] (the KeyTrap attacks
//!   of 2023/2024 made unbounded key × signature loops a DoS);
//! * [`anchorfile`] — trust-anchor files: master-file records, BIND's
//!   `trust-anchors`/`managed-keys`/`trusted-keys` blocks, mnemonics;
//! * `memo` — signatures that verified, remembered by a SHA-256
//!   fingerprint, so a wildcard's or an NSEC3 zone's signature is checked
//!   once, not for every name;
//! * [`nsec`] — NSEC proofs of NXDOMAIN, NODATA, wildcard expansion and of
//!   insecure delegations (no DS).
//!
//! Failures are [`Bogus`] values that carry the Extended DNS Error (RFC
//! 8914) a resolver should return. Cryptography is `domain`'s `PublicKey`
//! on `ring` (RSA/SHA-256 and SHA-512, ECDSA P-256 and P-384, Ed25519; the
//! SHA-1 algorithms only when a caller allows them).
//!
//! Invariants: no I/O, no clock (time is an argument), no panics on input,
//! and every loop over attacker data is bounded by the budget. The one
//! state kept is the process-wide memo of signatures that verified.

pub mod anchorfile;
pub mod canonical;
mod memo;
pub mod nsec;
pub mod nsec3;
pub mod records;
pub mod rfc5011;
pub mod verify;

pub use records::{Dnskey, Ds, Nsec, Rrsig, key_tag};
pub use verify::{
    AlgorithmPolicy, DEFAULT_MIN_RSA_BITS, Verified, WorkBudget, ds_matches, verify_rrset, verify_rrset_unexpanded,
};

use proto::ede::code;

/// Why data is bogus, with the Extended DNS Error it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Bogus {
    /// Signatures present, none verifies.
    #[error("no valid signature for {rrset} (key tags tried: {tags})")]
    BadSignature {
        /// The RRset, `name TYPE`.
        rrset: String,
        /// Key tags of the keys tried.
        tags: String,
    },
    /// Every signature has expired.
    #[error("signature for {rrset} by {zone} key {tag} expired")]
    SignatureExpired {
        /// The RRset.
        rrset: String,
        /// The signer.
        zone: String,
        /// Key tag.
        tag: u16,
    },
    /// Every signature is not yet valid.
    #[error("signature for {rrset} by {zone} key {tag} not yet valid")]
    SignatureNotYetValid {
        /// The RRset.
        rrset: String,
        /// The signer.
        zone: String,
        /// Key tag.
        tag: u16,
    },
    /// No DNSKEY matches the DS set or the signatures.
    #[error("no DNSKEY of {zone} matches {what}")]
    DnskeyMissing {
        /// The zone.
        zone: String,
        /// The DS set or the signature key tags.
        what: String,
    },
    /// The RRset has no signatures at all.
    #[error("RRSIGs missing for {rrset}")]
    RrsigsMissing {
        /// The RRset.
        rrset: String,
    },
    /// A key matched but has no zone key bit.
    #[error("DNSKEY {tag} of {zone} has no zone key bit")]
    NoZoneKeyBit {
        /// The zone.
        zone: String,
        /// Key tag.
        tag: u16,
    },
    /// A negative answer lacks the NSEC records that prove it.
    #[error("NSEC proof missing or wrong for {name}: {why}")]
    NsecMissing {
        /// The name.
        name: String,
        /// What is missing.
        why: &'static str,
    },
    /// Data that failed validation earlier, served from the cache.
    #[error("{rrset} failed validation earlier (cached)")]
    Cached {
        /// The RRset.
        rrset: String,
    },
    /// The work budget ran out before anything verified.
    #[error("validation work budget exhausted at {rrset}")]
    Budget {
        /// The RRset.
        rrset: String,
    },
}

impl Bogus {
    /// The EDE INFO-CODE for this failure.
    pub fn ede_code(&self) -> u16 {
        match self {
            Bogus::BadSignature { .. } => code::DNSSEC_BOGUS,
            Bogus::SignatureExpired { .. } => code::SIGNATURE_EXPIRED,
            Bogus::SignatureNotYetValid { .. } => code::SIGNATURE_NOT_YET_VALID,
            Bogus::DnskeyMissing { .. } => code::DNSKEY_MISSING,
            Bogus::RrsigsMissing { .. } => code::RRSIGS_MISSING,
            Bogus::NoZoneKeyBit { .. } => code::NO_ZONE_KEY_BIT,
            Bogus::NsecMissing { .. } => code::NSEC_MISSING,
            Bogus::Budget { .. } => code::DNSSEC_BOGUS,
            Bogus::Cached { .. } => code::DNSSEC_BOGUS,
        }
    }
}
