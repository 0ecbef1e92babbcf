//! Validation through the signed lab, from the lab's root key.

use std::sync::Arc;

use proto::{Message, Name, build::build_query, flags, rtype};
use recursor::{Outcome, Security, Service, ServiceConfig, SystemClock, TransportKind, ValidationConfig};

use crate::{n, setup_with};

async fn validating() -> (lab::Lab, recursor::Recursor) {
    let anchor = lab::LabData::builtin().expect("lab").trust_anchor.expect("signed root");
    // The lab in setup_with is a fresh one with fresh keys: take its anchor.
    let (lab, _) = setup_with(|_| {}).await;
    let anchor = lab.data().trust_anchor.clone().unwrap_or(anchor);
    let (lab2, r) = crate::setup_on(lab, |c| c.validation = Some(ValidationConfig::with_anchors(vec![anchor]))).await;
    (lab2, r)
}

#[tokio::test]
async fn signed_answers_are_secure_from_a_cold_cache() {
    let (_lab, r) = validating().await;
    for (name, t) in [
        ("www.example.test", rtype::A),
        ("www.z150.lab", rtype::A),
        ("foo.wild.z005.test", rtype::A),
        ("c1.chain.test", rtype::A),
        ("www.l4.l3.l2.l1.deep.test", rtype::A),
        ("www.old.dname.test", rtype::A),
        ("www.glueless.test", rtype::A),
    ] {
        let res = r.resolve(&n(name), t).await.expect(name);
        assert_eq!(res.outcome, Outcome::Answer, "{name}");
        assert_eq!(res.security, Security::Secure, "{name}");
        assert!(res.answer.iter().any(|r| r.rtype == rtype::RRSIG), "{name} keeps its RRSIGs");
    }
}

#[tokio::test]
async fn denials_are_proven() {
    let (_lab, r) = validating().await;
    let res = r.resolve(&n("nope.example.test"), rtype::A).await.expect("nx");
    assert_eq!((res.outcome, res.security), (Outcome::NxDomain, Security::Secure));
    let res = r.resolve(&n("mail.example.test"), rtype::AAAA).await.expect("nodata");
    assert_eq!((res.outcome, res.security), (Outcome::NoData, Security::Secure));
    let res = r.resolve(&n("b.ent.z010.test"), rtype::A).await.expect("ent");
    assert_eq!((res.outcome, res.security), (Outcome::NoData, Security::Secure));
    let res = r.resolve(&n("dangling.chain.test"), rtype::A).await.expect("dangling");
    assert_eq!((res.outcome, res.security), (Outcome::NxDomain, Security::Secure));
}

#[tokio::test]
async fn insecure_and_bogus_are_told_apart() {
    let (_lab, r) = validating().await;
    let res = r.resolve(&n("www.unsigned.test"), rtype::A).await.expect("insecure");
    assert_eq!(res.security, Security::Insecure);
    let res = r.resolve(&n("www.bogus.test"), rtype::A).await.expect("bogus is a status");
    match res.security {
        Security::Bogus(b) => {
            assert_eq!(b.ede_code(), proto::ede::code::DNSSEC_BOGUS);
            assert!(b.to_string().contains("www.bogus.test"), "{b}");
        }
        other => panic!("expected bogus, got {other:?}"),
    }
    // The rest of bogus.test is fine.
    let res = r.resolve(&n("bogus.test"), rtype::A).await.expect("apex");
    assert_eq!(res.security, Security::Secure);
}

fn query(name: &str, qtype: u16, dnssec_ok: bool, cd: bool) -> Vec<u8> {
    let mut q = Vec::new();
    build_query(&mut q, 5, Name::from_ascii(name).expect("name").as_wire(), qtype, true, Some(1232), dnssec_ok);
    if cd {
        q[3] |= (flags::CD & 0xff) as u8;
    }
    q
}

#[tokio::test]
async fn service_flags_follow_rfc_4035() {
    let (_lab, r) = validating().await;
    let cfg = ServiceConfig { local: recursor::LocalData::new(Vec::new(), false), ..ServiceConfig::default() };
    let s = Service::new(r, cfg, Arc::new(SystemClock));
    let mut out = Vec::new();
    let mut ask = async |name: &str, t: u16, dnssec_ok: bool, cd: bool| {
        s.answer(&query(name, t, dnssec_ok, cd), TransportKind::Stream, &mut out).await.expect("response");
        Message::parse(&out).expect("valid")
    };
    let m = ask("www.example.test", rtype::A, true, false).await;
    assert!(m.has_flag(flags::AD));
    assert!(m.answer.iter().any(|r| r.rtype == rtype::RRSIG), "DO gets RRSIGs");
    let m = ask("www.example.test", rtype::A, false, false).await;
    assert!(!m.has_flag(flags::AD), "no AD for a client that asked for neither DO nor AD");
    assert!(m.answer.iter().all(|r| r.rtype != rtype::RRSIG), "no RRSIGs without DO");
    let m = ask("www.unsigned.test", rtype::A, true, false).await;
    assert!(!m.has_flag(flags::AD));
    let m = ask("www.bogus.test", rtype::A, true, false).await;
    assert_eq!(m.rcode(), 2);
    assert_eq!(m.ede()[0].0, proto::ede::code::DNSSEC_BOGUS);
    let m = ask("www.bogus.test", rtype::A, true, true).await;
    assert_eq!(m.rcode(), 0, "CD returns the unvalidated data");
    assert!(!m.has_flag(flags::AD));
    let m = ask("nope.example.test", rtype::A, true, false).await;
    assert!(m.has_flag(flags::AD) && m.authority.iter().any(|r| r.rtype == rtype::NSEC));
}

#[tokio::test]
async fn each_broken_zone_fails_with_its_ede() {
    use proto::ede::code;
    let (_lab, r) = validating().await;
    for (name, want) in [
        ("www.expired.test", code::SIGNATURE_EXPIRED),
        ("www.notyet.test", code::SIGNATURE_NOT_YET_VALID),
        ("www.nokey.test", code::DNSKEY_MISSING),
        ("www.nosig.test", code::RRSIGS_MISSING),
        ("www.nozonebit.test", code::NO_ZONE_KEY_BIT),
        ("nothere.nonsec.test", code::NSEC_MISSING),
    ] {
        let res = r.resolve(&n(name), rtype::A).await.expect(name);
        match res.security {
            Security::Bogus(b) => {
                assert_eq!(b.ede_code(), want, "{name}: {b}");
                let zone = name.split_once('.').map_or(name, |(_, z)| z);
                assert!(b.to_string().contains(zone), "EXTRA-TEXT names the zone: {b}");
            }
            other => panic!("{name}: expected bogus, got {other:?}"),
        }
    }
    // Positive answers in the zone without NSEC still validate.
    assert_eq!(r.resolve(&n("www.nonsec.test"), rtype::A).await.expect("nonsec").security, Security::Secure);
    for (name, want) in [
        ("www.unsupported.test", code::UNSUPPORTED_DNSKEY_ALGORITHM),
        ("www.baddigest.test", code::UNSUPPORTED_DS_DIGEST),
    ] {
        let res = r.resolve(&n(name), rtype::A).await.expect(name);
        match res.security {
            Security::Unsupported(e) => assert_eq!(e.code, want, "{name}: {}", e.text),
            other => panic!("{name}: expected insecure (unsupported), got {other:?}"),
        }
        assert_eq!(res.outcome, Outcome::Answer);
    }
}

/// The KeyTrap-style zone (51 keys sharing a tag, 20 junk signatures per
/// RRset): validation gives up within its work budget, and while it runs
/// other clients keep getting answers from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keytrap_zone_is_bounded_and_the_cache_keeps_answering() {
    use std::time::{Duration, Instant};
    let (_lab, r) = validating().await;
    let cfg = ServiceConfig { local: recursor::LocalData::new(Vec::new(), false), ..ServiceConfig::default() };
    let s = Arc::new(Service::new(r, cfg, Arc::new(SystemClock)));
    let cached = query("www.example.test", rtype::A, true, false);
    let mut out = Vec::with_capacity(1232);
    s.answer(&cached, TransportKind::Datagram, &mut out).await.expect("warm");
    // The trapped query runs on a worker; this thread asks the cache until
    // it ends (at least once, right after it started): every ask must be
    // answered from the cache, whatever validation is doing meanwhile. How
    // many asks fit is printed, not asserted: on a loaded machine this
    // thread may not run at all during the 3 ms the validation takes.
    let started = Instant::now();
    let trapped = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            s.answer(&query("www.keytrap.test", rtype::A, true, false), TransportKind::Datagram, &mut out)
                .await
                .expect("answer");
            (out, started.elapsed())
        })
    };
    let (mut hits, mut worst) = (0u64, Duration::ZERO);
    loop {
        let t = Instant::now();
        let r = s.try_fast(&cached, TransportKind::Datagram, &mut out);
        worst = worst.max(t.elapsed());
        assert!(matches!(r, recursor::FastPath::Answered(_)), "the cache answers while validation runs");
        hits += 1;
        if trapped.is_finished() {
            break;
        }
        std::hint::spin_loop();
    }
    let (trapped, took) = trapped.await.expect("trapped query");
    let m = Message::parse(&trapped).expect("valid");
    println!("keytrap: SERVFAIL after {took:?}; {hits} cache hits meanwhile, slowest {worst:?}; EDE {:?}", m.ede());
    assert_eq!(m.rcode(), 2);
    assert_eq!(m.ede()[0].0, proto::ede::code::DNSSEC_BOGUS);
    assert!(took < Duration::from_secs(3), "bounded: {took:?}");
}

#[tokio::test]
async fn negative_trust_anchors_make_a_zone_insecure() {
    let (lab, _) = setup_with(|_| {}).await;
    let anchor = lab.data().trust_anchor.clone().expect("anchor");
    let (_lab, r) = crate::setup_on(lab, |c| {
        let mut v = ValidationConfig::with_anchors(vec![anchor]);
        v.negative_trust_anchors.push(n("bogus.test"));
        c.validation = Some(v);
    })
    .await;
    let res = r.resolve(&n("www.bogus.test"), rtype::A).await.expect("nta");
    assert_eq!((res.outcome, res.security), (Outcome::Answer, Security::Insecure));
    let res = r.resolve(&n("www.example.test"), rtype::A).await.expect("elsewhere");
    assert_eq!(res.security, Security::Secure, "only below the NTA");
}

#[tokio::test]
async fn negative_trust_anchors_added_and_removed_while_running() {
    let (_lab, r) = validating().await;
    let bogus = r.resolve(&n("www.bogus.test"), rtype::A).await;
    assert!(
        bogus.is_err() || bogus.as_ref().is_ok_and(|x| matches!(x.security, Security::Bogus(_))),
        "bogus before: {bogus:?}"
    );
    let anchors = r.config().validation.as_ref().expect("validating").runtime_anchors.clone();
    assert!(anchors.add(n("bogus.test")));
    assert!(!anchors.add(n("bogus.test")), "added once");
    r.cache().clear();
    let res = r.resolve(&n("www.bogus.test"), rtype::A).await.expect("under the NTA");
    assert_eq!((res.outcome, res.security), (Outcome::Answer, Security::Insecure));
    assert_eq!(anchors.list(), vec![n("bogus.test")]);
    assert!(anchors.remove(&n("bogus.test")));
    r.cache().clear();
    let after = r.resolve(&n("www.bogus.test"), rtype::A).await;
    assert!(
        after.is_err() || after.as_ref().is_ok_and(|x| matches!(x.security, Security::Bogus(_))),
        "bogus again: {after:?}"
    );
}

#[tokio::test]
async fn nsec3_denials_opt_out_and_iteration_limits() {
    let (_lab, r) = validating().await;
    for (name, t, outcome) in [
        ("www.nsec3.test", rtype::A, Outcome::Answer),
        ("www.nsec3.test", rtype::AAAA, Outcome::NoData),
        ("nothere.nsec3.test", rtype::A, Outcome::NxDomain),
        ("foo.wild.nsec3.test", rtype::A, Outcome::Answer),
        ("foo.wild.nsec3.test", rtype::AAAA, Outcome::NoData),
        ("b.ent.nsec3.test", rtype::A, Outcome::NoData),
        ("www.optout.test", rtype::AAAA, Outcome::NoData),
    ] {
        let res = r.resolve(&n(name), t).await.expect(name);
        assert_eq!((res.outcome, res.security), (outcome, Security::Secure), "{name} {t}");
    }
    // Opt-out: the unsigned child and names under opt-out spans are insecure.
    let res = r.resolve(&n("www.child.optout.test"), rtype::A).await.expect("child");
    assert_eq!((res.outcome, res.security), (Outcome::Answer, Security::Insecure));
    let res = r.resolve(&n("nothere.optout.test"), rtype::A).await.expect("opt-out nx");
    assert_eq!((res.outcome, res.security), (Outcome::NxDomain, Security::Insecure));
    // 200 iterations: positive answers validate, denials are insecure (EDE 27).
    assert_eq!(r.resolve(&n("www.iter.test"), rtype::A).await.expect("iter").security, Security::Secure);
    let res = r.resolve(&n("nothere.iter.test"), rtype::A).await.expect("iter nx");
    match res.security {
        Security::Unsupported(e) => assert_eq!(e.code, proto::ede::code::UNSUPPORTED_NSEC3_ITERATIONS),
        other => panic!("expected EDE 27, got {other:?}"),
    }
}

#[tokio::test]
async fn wildcard_nodata_under_opt_out_is_insecure() {
    let (_lab, r) = validating().await;
    let res = r.resolve(&n("foo.wild.optout.test"), rtype::AAAA).await.expect("wildcard nodata");
    assert_eq!((res.outcome, res.security), (Outcome::NoData, Security::Insecure));
}

/// RFC 8198: after one validated NXDOMAIN, names in the same NSEC span are
/// denied without asking the authorities, and a random-subdomain flood costs
/// at most a query per NSEC span of the zone.
#[tokio::test]
async fn validated_nsec_stops_random_subdomain_floods() {
    use std::sync::atomic::Ordering;
    let (_lab, r, counting) = crate::setup_counting_with(|lab, c| {
        let anchor = lab.data().trust_anchor.clone().expect("anchor");
        c.validation = Some(ValidationConfig::with_anchors(vec![anchor]));
    })
    .await;
    let res = r.resolve(&n("nope.example.test"), rtype::A).await.expect("first");
    assert_eq!((res.outcome, res.security), (Outcome::NxDomain, Security::Secure));
    let before = counting.sent.load(Ordering::Relaxed);
    for i in 0..100 {
        let res = r.resolve(&n(&format!("nope{i}.example.test")), rtype::A).await.expect("synthesised");
        assert_eq!((res.outcome, res.security), (Outcome::NxDomain, Security::Secure));
        assert!(res.authority.iter().any(|r| r.rtype == rtype::NSEC), "the proof comes along");
    }
    assert_eq!(counting.sent.load(Ordering::Relaxed), before, "no upstream query for covered names");
    // A flood of random names under the zone: the example.test chain has 5
    // NSEC spans, so at most a few queries each to learn them.
    let before = counting.sent.load(Ordering::Relaxed);
    for i in 0..200u32 {
        let label = format!("{:08x}", i.wrapping_mul(2_654_435_761));
        let res = r.resolve(&n(&format!("{label}.example.test")), rtype::A).await.expect("flood");
        assert_eq!(res.outcome, Outcome::NxDomain);
    }
    let spent = counting.sent.load(Ordering::Relaxed) - before;
    println!("random-subdomain flood: 200 names, {spent} upstream queries");
    assert!(spent <= 10, "{spent} upstream queries for 200 random names");
    // A name that exists is still resolved, not denied.
    let res = r.resolve(&n("www.example.test"), rtype::A).await.expect("www");
    assert_eq!(res.outcome, Outcome::Answer);
}

/// RFC 8198 §5.3: once one name under a signed wildcard has been answered
/// and validated, other names under it are answered from the validated
/// wildcard and the NSEC that denies them, with no upstream query (and no
/// signature check); names that exist, and other types, are still asked.
#[tokio::test]
async fn validated_wildcard_answers_other_names_without_asking() {
    use std::sync::atomic::Ordering;
    let (_lab, r, counting) = crate::setup_counting_with(|lab, c| {
        let anchor = lab.data().trust_anchor.clone().expect("anchor");
        c.validation = Some(ValidationConfig::with_anchors(vec![anchor]));
    })
    .await;
    let first = r.resolve(&n("first.wild.z005.test"), rtype::A).await.expect("first");
    assert_eq!((first.outcome, first.security), (Outcome::Answer, Security::Secure));
    let before = counting.sent.load(Ordering::Relaxed);
    for i in 0..100 {
        let name = n(&format!("u{i}.wild.z005.test"));
        let res = r.resolve(&name, rtype::A).await.expect("synthesised");
        assert_eq!((res.outcome, res.security), (Outcome::Answer, Security::Secure));
        let a: Vec<_> = res.answer.iter().filter(|r| r.rtype == rtype::A).collect();
        assert!(!a.is_empty() && a.iter().all(|r| r.name == name), "{:?}", res.answer);
        assert_eq!(
            a.iter().map(|r| &r.rdata).collect::<Vec<_>>(),
            first.answer.iter().filter(|r| r.rtype == rtype::A).map(|r| &r.rdata).collect::<Vec<_>>()
        );
        let sig = res.answer.iter().find(|r| r.rtype == rtype::RRSIG).expect("the RRSIG comes along");
        assert_eq!((&sig.name, sig.rdata[3]), (&name, 3), "owner is the name, labels the wildcard's");
        assert!(res.authority.iter().any(|r| r.rtype == rtype::NSEC), "the NSEC that denies the name comes along");
        // Deeper names take the same wildcard.
        let deep = r.resolve(&n(&format!("x.u{i}.wild.z005.test")), rtype::A).await.expect("deep");
        assert_eq!(deep.outcome, Outcome::Answer);
    }
    assert_eq!(counting.sent.load(Ordering::Relaxed), before, "no upstream query under the wildcard");
    // The wildcard's parent is an empty non-terminal, not an expansion.
    let ent = r.resolve(&n("wild.z005.test"), rtype::A).await.expect("ent");
    assert_eq!((ent.outcome, ent.security), (Outcome::NoData, Security::Secure));
    // A type not learnt from the wildcard is asked for.
    let before = counting.sent.load(Ordering::Relaxed);
    let txt = r.resolve(&n("u1.wild.z005.test"), rtype::TXT).await.expect("txt");
    assert_eq!(txt.security, Security::Secure);
    assert!(counting.sent.load(Ordering::Relaxed) > before, "TXT was asked");
}

/// A parent's NSEC at a delegation point covers the names below the cut in
/// canonical order, but must never deny them.
#[tokio::test]
async fn aggressive_nsec_never_denies_below_a_delegation() {
    let (_lab, r) = validating().await;
    // Learn test.'s NSEC spans, including the ones at delegation points.
    for name in ["nothere.test", "zzz.test", "nosig0.test", "z121a.lab", "nothere.lab"] {
        let _ = r.resolve(&n(name), rtype::A).await;
    }
    for name in ["www.nosig.test", "www.z121.lab", "ns1.nic.lab", "www.example.test"] {
        let res = r.resolve(&n(name), rtype::A).await.expect(name);
        assert_ne!(res.outcome, Outcome::NxDomain, "{name} exists");
    }
}

#[tokio::test]
async fn a_zone_in_the_middle_of_a_key_rollover_validates() {
    let (_lab, r) = validating().await;
    for (name, outcome) in [("www.rollover.test", Outcome::Answer), ("nothere.rollover.test", Outcome::NxDomain)] {
        let res = r.resolve(&n(name), rtype::A).await.expect(name);
        assert_eq!((res.outcome, res.security), (outcome, Security::Secure), "{name}");
    }
}

/// RFC 5011 management against the lab: a DS-only anchor (like the IANA
/// ones) bootstraps into a tracked key on the first probe, the state is
/// written atomically and read back, and a corrupt file falls back to the
/// configured anchors with an error that says where.
#[tokio::test]
async fn trust_anchor_state_is_kept_on_disk() {
    let (lab, _) = setup_with(|_| {}).await;
    let key = lab.data().trust_anchor.clone().expect("anchor");
    let mut ds = dnssec::key_tag(&key.rdata).to_be_bytes().to_vec();
    ds.extend_from_slice(&[key.rdata[3], 2]);
    ds.extend_from_slice(&dnssec::verify::ds_sha256(&key.name, &key.rdata));
    let ds = proto::Record { name: key.name.clone(), rtype: rtype::DS, class: 1, ttl: 0, rdata: ds.into() };
    let (lab, r) =
        crate::setup_on(lab, |c| c.validation = Some(ValidationConfig::with_anchors(vec![ds.clone()]))).await;
    let dir = std::env::temp_dir().join(format!("onedot-5011-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("root.state");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
    let (managed, err) = recursor::ManagedAnchors::load(&path, std::slice::from_ref(&ds), now);
    assert!(err.is_none());
    r.probe_trust_anchors(&managed).await.expect("probe");
    let text = std::fs::read_to_string(&path).expect("state written");
    assert!(text.lines().any(|l| l.starts_with(". valid ")), "{text}");
    assert!(!dir.join("root.tmp").exists(), "no temporary file left behind");
    assert_eq!(r.trust_anchors().iter().map(|a| a.rtype).collect::<Vec<_>>(), [rtype::DNSKEY]);
    assert_eq!(r.resolve(&n("www.example.test"), rtype::A).await.expect("www").security, Security::Secure);

    // Read back: the tracked key is in force.
    let (again, err) = recursor::ManagedAnchors::load(&path, std::slice::from_ref(&ds), now);
    assert!(err.is_none());
    assert_eq!(again.current()[0].rdata, key.rdata);

    // Sealed (a keyless edge): written sealed, read back with the data key,
    // unreadable without it, and a planted file in clear refused.
    let vault = seal::Vault::with_keys(&[seal::DataKey { epoch: 1, key: [9; 32] }]);
    let sealed_path = dir.join("sealed.state");
    let (sealed, err) =
        recursor::ManagedAnchors::load_sealed(&sealed_path, std::slice::from_ref(&ds), now, Some(vault.clone()));
    assert!(err.is_none());
    r.probe_trust_anchors(&sealed).await.expect("probe");
    let raw = std::fs::read(&sealed_path).expect("sealed state written");
    assert!(seal::is_sealed_file(&raw) && !raw.windows(6).any(|w| w == b". vali"), "sealed on disk");
    let (again, err) =
        recursor::ManagedAnchors::load_sealed(&sealed_path, std::slice::from_ref(&ds), now, Some(vault.clone()));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(again.current()[0].rdata, key.rdata);
    let (_, err) = recursor::ManagedAnchors::load(&sealed_path, std::slice::from_ref(&ds), now);
    assert!(err.is_some_and(|e| e.to_string().contains("no data key")), "locked without the key");
    let (_, err) = recursor::ManagedAnchors::load_sealed(&path, std::slice::from_ref(&ds), now, Some(vault));
    assert!(err.is_some_and(|e| e.to_string().contains("not sealed")), "a clear file refused when sealing");

    // Corrupt: reported with file and line, configured anchors used.
    std::fs::write(&path, "; state\n. valid not-a-time abcd\n").expect("write");
    let (fallback, err) = recursor::ManagedAnchors::load(&path, std::slice::from_ref(&ds), now);
    let err = err.expect("corrupt state is reported");
    assert!(err.to_string().contains("root.state:2"), "{err}");
    assert_eq!(fallback.current()[0].rtype, rtype::DS);
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server authoritative for a parent and its child answers child names
/// directly: no referral shows the cut, yet the child's answers are signed
/// by the child. The validator must find the cut from the signer.
#[tokio::test]
async fn a_child_zone_on_its_parents_server_validates() {
    let (_lab, r) = validating().await;
    for (name, outcome) in [
        ("www.samehost.test", Outcome::Answer),
        ("www.child.samehost.test", Outcome::Answer),
        ("nothere.child.samehost.test", Outcome::NxDomain),
    ] {
        let res = r.resolve(&n(name), rtype::A).await.expect(name);
        assert_eq!((res.outcome, res.security), (outcome, Security::Secure), "{name}");
    }
}

/// DO clients get the NSEC proof of a wildcard expansion with the answer,
/// so their own validators can check it.
#[tokio::test]
async fn wildcard_answers_carry_their_proof_for_do_clients() {
    let (_lab, r) = validating().await;
    let cfg = ServiceConfig { local: recursor::LocalData::new(Vec::new(), false), ..ServiceConfig::default() };
    let s = Service::new(r, cfg, Arc::new(SystemClock));
    let mut out = Vec::new();
    for _ in 0..2 {
        s.answer(&query("foo.wild.z005.test", rtype::A, true, false), TransportKind::Stream, &mut out)
            .await
            .expect("answer");
        let m = Message::parse(&out).expect("valid");
        assert!(m.has_flag(flags::AD));
        assert!(m.authority.iter().any(|r| r.rtype == rtype::NSEC), "the proof is in the authority section");
    }
    s.answer(&query("foo.wild.z005.test", rtype::A, false, false), TransportKind::Stream, &mut out)
        .await
        .expect("answer");
    assert!(Message::parse(&out).expect("valid").authority.is_empty(), "not for clients without DO");
}
