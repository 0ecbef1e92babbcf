//! Automated updates of trust anchors (RFC 5011), as a state machine with
//! time as input. The caller fetches the anchor zone's DNSKEY RRset
//! (with RRSIGs) and hands it to [`AnchorSet::update`]; persistence is the
//! caller's.

use proto::{Name, Record, rtype};

use crate::verify::{AlgorithmPolicy, WorkBudget, verify_rrset};
use crate::{Bogus, Dnskey};

/// The add hold-down (RFC 5011 §2.4.1): 30 days.
pub const ADD_HOLD_DOWN: u64 = 30 * 86_400;
/// The DNSKEY flag bits: zone key, SEP, REVOKE.
const FLAG_REVOKE: u16 = 0x0080;
const FLAG_SEP: u16 = 0x0001;

/// A key's state (RFC 5011 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Seen, waiting out the add hold-down since the time given.
    AddPend,
    /// Trusted.
    Valid,
    /// Trusted, but absent from the last DNSKEY set.
    Missing,
    /// Revoked by its owner: never trusted again.
    Revoked,
}

impl KeyState {
    /// The name used in state files.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::AddPend => "addpend",
            KeyState::Valid => "valid",
            KeyState::Missing => "missing",
            KeyState::Revoked => "revoked",
        }
    }

    /// Parses [`KeyState::as_str`].
    pub fn parse(s: &str) -> Option<KeyState> {
        Some(match s {
            "addpend" => KeyState::AddPend,
            "valid" => KeyState::Valid,
            "missing" => KeyState::Missing,
            "revoked" => KeyState::Revoked,
            _ => return None,
        })
    }
}

/// One tracked key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedKey {
    /// DNSKEY rdata with the REVOKE bit cleared (a key keeps its identity
    /// when revoked).
    pub rdata: Box<[u8]>,
    /// State.
    pub state: KeyState,
    /// When it entered that state (Unix seconds).
    pub since: u64,
}

/// The managed anchors of one zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorSet {
    /// The zone (the root, usually).
    pub zone: Name,
    /// Its keys.
    pub keys: Vec<TrackedKey>,
}

/// A change made by [`AnchorSet::update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Key tag (of the key without its REVOKE bit).
    pub tag: u16,
    /// New state.
    pub state: KeyState,
}

fn without_revoke(rdata: &[u8]) -> Box<[u8]> {
    let mut r = rdata.to_vec();
    if r.len() >= 2 {
        r[1] &= !(FLAG_REVOKE as u8);
    }
    r.into()
}

impl AnchorSet {
    /// Anchors trusted from the start (configured DNSKEYs).
    pub fn new(zone: Name, trusted: &[Box<[u8]>], now: u64) -> AnchorSet {
        let keys =
            trusted.iter().map(|r| TrackedKey { rdata: r.clone(), state: KeyState::Valid, since: now }).collect();
        AnchorSet { zone, keys }
    }

    /// The DNSKEY records trusted now (Valid and Missing).
    pub fn trusted(&self) -> Vec<Record> {
        self.keys
            .iter()
            .filter(|k| matches!(k.state, KeyState::Valid | KeyState::Missing))
            .map(|k| Record { name: self.zone.clone(), rtype: rtype::DNSKEY, class: 1, ttl: 0, rdata: k.rdata.clone() })
            .collect()
    }

    /// Applies a fetched DNSKEY RRset (RFC 5011 §4): it must be signed by a
    /// trusted key; new SEP keys start their hold-down; keys past it become
    /// trusted; self-signed revocations are honoured; absent trusted keys
    /// are marked missing.
    pub fn update(
        &mut self,
        dnskeys: &[Record],
        rrsigs: &[Record],
        now: u64,
        policy: &AlgorithmPolicy,
        budget: &WorkBudget,
    ) -> Result<Vec<Change>, Bogus> {
        let trusted: Vec<Dnskey> = self.trusted().iter().filter_map(|r| Dnskey::parse(&r.rdata).ok()).collect();
        crate::verify::verify_rrset_unexpanded(dnskeys, rrsigs, &trusted, &self.zone, now as u32, policy, budget)?;
        let mut changes = Vec::new();
        let set = |k: &mut TrackedKey, state: KeyState, changes: &mut Vec<Change>| {
            if k.state != state {
                k.state = state;
                k.since = now;
                changes.push(Change { tag: crate::key_tag(&k.rdata), state });
            }
        };
        let present: Vec<&Record> =
            dnskeys.iter().filter(|r| r.rtype == rtype::DNSKEY && r.name == self.zone).collect();
        for r in &present {
            let Ok(key) = Dnskey::parse(&r.rdata) else { continue };
            if key.flags & FLAG_SEP == 0 || !key.is_zone_key() {
                continue;
            }
            let base = without_revoke(&r.rdata);
            let revoked = key.flags & FLAG_REVOKE != 0;
            // A revocation counts only when the revoked key signed the set.
            // The verifier refuses revoked keys; for this one check use the
            // same public key without the flag, under the revoked key's tag
            // (which is what its RRSIG names).
            let as_signer = Dnskey { flags: key.flags & !FLAG_REVOKE, ..key.clone() };
            let self_signed = revoked
                && verify_rrset(
                    dnskeys,
                    rrsigs,
                    std::slice::from_ref(&as_signer),
                    &self.zone,
                    now as u32,
                    policy,
                    budget,
                )
                .is_ok();
            match self.keys.iter_mut().find(|k| k.rdata == base) {
                Some(k) if revoked && self_signed => set(k, KeyState::Revoked, &mut changes),
                Some(k) if k.state == KeyState::Revoked => {}
                Some(k) if k.state == KeyState::AddPend && now >= k.since + ADD_HOLD_DOWN => {
                    set(k, KeyState::Valid, &mut changes)
                }
                Some(k) if k.state == KeyState::Missing => set(k, KeyState::Valid, &mut changes),
                Some(_) => {}
                None if revoked => {}
                None => {
                    self.keys.push(TrackedKey { rdata: base, state: KeyState::AddPend, since: now });
                    changes.push(Change { tag: crate::key_tag(&r.rdata), state: KeyState::AddPend });
                }
            }
        }
        let present_bases: Vec<Box<[u8]>> = present.iter().map(|r| without_revoke(&r.rdata)).collect();
        for k in &mut self.keys {
            if k.state == KeyState::Valid && !present_bases.contains(&k.rdata) {
                set(k, KeyState::Missing, &mut changes);
            }
        }
        // Keys that vanished during their hold-down are forgotten (§4.2).
        self.keys.retain(|k| k.state != KeyState::AddPend || present_bases.contains(&k.rdata));
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::signing_input;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    struct Key {
        pair: EcdsaKeyPair,
        rdata: Vec<u8>,
    }

    fn key(rng: &SystemRandom) -> Key {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng).expect("keygen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), rng).expect("key");
        let mut rdata = vec![1, 1, 3, 13];
        rdata.extend_from_slice(&pair.public_key().as_ref()[1..]);
        Key { pair, rdata }
    }

    fn revoked(k: &Key) -> Vec<u8> {
        let mut r = k.rdata.clone();
        r[1] |= FLAG_REVOKE as u8;
        r
    }

    /// A DNSKEY RRset of `published` rdata, signed by `signers` (each with
    /// the rdata it is published under).
    fn rrset(
        published: &[Vec<u8>],
        signers: &[(&Key, &[u8])],
        now: u64,
        rng: &SystemRandom,
    ) -> (Vec<Record>, Vec<Record>) {
        let root = Name::root();
        let set: Vec<Record> = published
            .iter()
            .map(|r| Record { name: root.clone(), rtype: rtype::DNSKEY, class: 1, ttl: 3600, rdata: r.clone().into() })
            .collect();
        let sigs = signers
            .iter()
            .map(|(k, as_rdata)| {
                let mut rdata = rtype::DNSKEY.to_be_bytes().to_vec();
                rdata.extend_from_slice(&[13, 0]);
                rdata.extend_from_slice(&3600u32.to_be_bytes());
                rdata.extend_from_slice(&((now + 86_400) as u32).to_be_bytes());
                rdata.extend_from_slice(&((now - 3600) as u32).to_be_bytes());
                rdata.extend_from_slice(&crate::key_tag(as_rdata).to_be_bytes());
                rdata.push(0);
                let sig = k.pair.sign(rng, &signing_input(&rdata, &root, 3600, &set)).expect("sign");
                rdata.extend_from_slice(sig.as_ref());
                Record { name: root.clone(), rtype: rtype::RRSIG, class: 1, ttl: 3600, rdata: rdata.into() }
            })
            .collect();
        (set, sigs)
    }

    #[test]
    fn a_root_key_rollover_end_to_end() {
        let rng = SystemRandom::new();
        let (k1, k2, k3) = (key(&rng), key(&rng), key(&rng));
        let policy = AlgorithmPolicy::default();
        let budget = WorkBudget::new(10_000);
        let t0 = 1_800_000_000;
        let mut anchors = AnchorSet::new(Name::root(), &[k1.rdata.clone().into()], t0);
        let trusted = |a: &AnchorSet| a.trusted().iter().map(|r| r.rdata.to_vec()).collect::<Vec<_>>();

        // K2 appears: hold-down starts; not trusted yet.
        let (set, sigs) = rrset(&[k1.rdata.clone(), k2.rdata.clone()], &[(&k1, &k1.rdata)], t0, &rng);
        let changes = anchors.update(&set, &sigs, t0, &policy, &budget).expect("signed by K1");
        assert_eq!(changes[0].state, KeyState::AddPend);
        assert_eq!(trusted(&anchors), vec![k1.rdata.clone()]);
        // Ten days later: still pending. Thirty-one: trusted.
        let t = t0 + 10 * 86_400;
        let (set, sigs) = rrset(&[k1.rdata.clone(), k2.rdata.clone()], &[(&k1, &k1.rdata)], t, &rng);
        anchors.update(&set, &sigs, t, &policy, &budget).expect("update");
        assert_eq!(trusted(&anchors).len(), 1);
        let t = t0 + 31 * 86_400;
        let (set, sigs) = rrset(&[k1.rdata.clone(), k2.rdata.clone()], &[(&k1, &k1.rdata)], t, &rng);
        anchors.update(&set, &sigs, t, &policy, &budget).expect("update");
        assert_eq!(trusted(&anchors), vec![k1.rdata.clone(), k2.rdata.clone()]);

        // K1 is revoked, signing with its revoked self: only K2 is trusted.
        let t = t + 86_400;
        let r1 = revoked(&k1);
        let (set, sigs) = rrset(&[r1.clone(), k2.rdata.clone()], &[(&k1, &r1), (&k2, &k2.rdata)], t, &rng);
        let changes = anchors.update(&set, &sigs, t, &policy, &budget).expect("update");
        assert!(changes.iter().any(|c| c.state == KeyState::Revoked));
        assert_eq!(trusted(&anchors), vec![k2.rdata.clone()]);

        // A set signed only by an unknown key is refused; nothing changes.
        let before = anchors.clone();
        let (set, sigs) = rrset(std::slice::from_ref(&k3.rdata), &[(&k3, &k3.rdata)], t, &rng);
        assert!(anchors.update(&set, &sigs, t, &policy, &budget).is_err());
        assert_eq!(anchors, before);

        // A revocation not signed by the revoked key is ignored.
        let r2 = revoked(&k2);
        let (set, sigs) = rrset(&[r2, k3.rdata.clone()], &[(&k3, &k3.rdata)], t, &rng);
        assert!(anchors.update(&set, &sigs, t, &policy, &budget).is_err(), "K3 is not trusted");
        assert_eq!(trusted(&anchors), vec![k2.rdata.clone()]);
    }

    #[test]
    fn missing_keys_stay_trusted_and_vanished_pending_keys_are_forgotten() {
        let rng = SystemRandom::new();
        let (k1, k2, k3) = (key(&rng), key(&rng), key(&rng));
        let policy = AlgorithmPolicy::default();
        let budget = WorkBudget::new(10_000);
        let t0 = 1_800_000_000;
        let mut anchors = AnchorSet::new(Name::root(), &[k1.rdata.clone().into(), k2.rdata.clone().into()], t0);
        let (set, sigs) = rrset(&[k1.rdata.clone(), k3.rdata.clone()], &[(&k1, &k1.rdata)], t0, &rng);
        anchors.update(&set, &sigs, t0, &policy, &budget).expect("update");
        assert!(anchors.keys.iter().any(|k| k.state == KeyState::Missing));
        assert_eq!(anchors.trusted().len(), 2, "missing keys are still trusted");
        // K3 was pending; it disappears: forgotten.
        let (set, sigs) = rrset(std::slice::from_ref(&k1.rdata), &[(&k1, &k1.rdata)], t0 + 86_400, &rng);
        anchors.update(&set, &sigs, t0 + 86_400, &policy, &budget).expect("update");
        assert!(anchors.keys.iter().all(|k| k.state != KeyState::AddPend));
    }
}
