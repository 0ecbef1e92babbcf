//! Cross-check with an independent signer: ldns signs a lab zone with each
//! algorithm we support, and every signature, DS and NSEC proof must check
//! out with this crate. (ldnsutils is installed by scripts/test.sh.)

use std::path::Path;
use std::process::Command;

use dnssec::nsec::{parse_nsecs, prove_nodata, prove_nxdomain};
use dnssec::{AlgorithmPolicy, Dnskey, Ds, WorkBudget, ds_matches, verify_rrset};
use proto::{Name, Record, rtype};

fn n(s: &str) -> Name {
    Name::from_ascii(s).expect("name")
}

fn run(dir: &Path, cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} must be installed (scripts/test.sh installs ldnsutils): {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn now() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

#[test]
fn ldns_signed_zones_verify_for_every_supported_algorithm() {
    let zone_text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab/zones/example.test.zone"))
            .expect("lab zone");
    let policy = AlgorithmPolicy::default();
    for (alg, number, bits) in [
        ("RSASHA256", 8u8, Some("2048")),
        ("RSASHA512", 10, Some("2048")),
        ("ECDSAP256SHA256", 13, None),
        ("ECDSAP384SHA384", 14, None),
        ("ED25519", 15, None),
    ] {
        let dir = std::env::temp_dir().join(format!("onedot-ldns-{alg}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        std::fs::write(dir.join("zone"), &zone_text).expect("write zone");
        let mut args = vec!["-a", alg, "-k"];
        if let Some(b) = bits {
            args.extend(["-b", b]);
        }
        args.push("example.test");
        let key = run(&dir, "ldns-keygen", &args);
        run(&dir, "ldns-signzone", &["-o", "example.test", "zone", &key]);
        let signed = std::fs::read_to_string(dir.join("zone.signed")).expect("signed zone");
        let records = proto::zonefile::parse_records(&signed, None).expect("signed zone parses");
        let apex = n("example.test");
        let keys_rrset: Vec<Record> = records.iter().filter(|r| r.rtype == rtype::DNSKEY).cloned().collect();
        let keys: Vec<Dnskey> = keys_rrset.iter().map(|r| Dnskey::parse(&r.rdata).expect("key")).collect();
        assert!(keys.iter().all(|k| k.algorithm == number), "{alg}");
        // The DS that ldns wrote matches the key.
        let ds_text = std::fs::read_to_string(dir.join(format!("{key}.ds"))).expect("ds file");
        let ds_rec = proto::zonefile::parse_records(&ds_text, None).expect("ds parses");
        let ds = Ds::parse(&ds_rec[0].rdata).expect("ds");
        assert!(keys_rrset.iter().any(|k| ds_matches(&apex, &k.rdata, &ds, &policy)), "{alg}: DS matches");
        // Every RRset verifies.
        let sigs: Vec<Record> = records.iter().filter(|r| r.rtype == rtype::RRSIG).cloned().collect();
        let budget = WorkBudget::new(10_000);
        let mut verified = 0;
        for r in records.iter().filter(|r| r.rtype != rtype::RRSIG) {
            let set: Vec<Record> = records.iter().filter(|x| x.name == r.name && x.rtype == r.rtype).cloned().collect();
            verify_rrset(&set, &sigs, &keys, &apex, now(), &policy, &budget)
                .unwrap_or_else(|e| panic!("{alg}: {} {}: {e}", r.name, r.rtype));
            verified += 1;
        }
        assert!(verified >= 10, "{alg}: {verified}");
        // Checked again with no work left, each verifies: remembered.
        for r in records.iter().filter(|r| r.rtype != rtype::RRSIG) {
            let set: Vec<Record> = records.iter().filter(|x| x.name == r.name && x.rtype == r.rtype).cloned().collect();
            verify_rrset(&set, &sigs, &keys, &apex, now(), &policy, &WorkBudget::new(0))
                .unwrap_or_else(|e| panic!("{alg}: {} {} again: {e}", r.name, r.rtype));
        }
        // A tampered RRset does not verify, remembered signature or not.
        let mut www: Vec<Record> =
            records.iter().filter(|r| r.name == n("www.example.test") && r.rtype == rtype::A).cloned().collect();
        www[0].rdata = Box::new([192, 0, 2, 99]);
        let e = verify_rrset(&www, &sigs, &keys, &apex, now(), &policy, &budget).expect_err("tampered");
        assert_eq!(e.ede_code(), proto::ede::code::DNSSEC_BOGUS, "{alg}");
        // ldns's NSEC chain proves what our lab says.
        let nsecs = parse_nsecs(&records);
        prove_nxdomain(&n("nope.example.test"), &nsecs).expect("NXDOMAIN proof");
        prove_nodata(&n("mail.example.test"), rtype::AAAA, &nsecs).expect("NODATA proof");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn ldns_nsec3_chains_prove_what_they_should() {
    use dnssec::nsec3::{Nsec3Set, Proven};
    let zone_text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab/zones/z010.test.zone"))
        .expect("lab zone");
    let policy = AlgorithmPolicy::default();
    for opt_out in [false, true] {
        let dir = std::env::temp_dir().join(format!("onedot-ldns-nsec3-{opt_out}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        std::fs::write(dir.join("zone"), &zone_text).expect("write zone");
        let key = run(&dir, "ldns-keygen", &["-a", "ECDSAP256SHA256", "-k", "z010.test"]);
        let mut args = vec!["-n", "-s", "ab12", "-t", "3"];
        if opt_out {
            args.push("-p");
        }
        args.extend(["-o", "z010.test", "zone", &key]);
        run(&dir, "ldns-signzone", &args);
        let signed = std::fs::read_to_string(dir.join("zone.signed")).expect("signed zone");
        let records = proto::zonefile::parse_records(&signed, None).expect("parses");
        let apex = n("z010.test");
        let keys: Vec<Dnskey> = records
            .iter()
            .filter(|r| r.rtype == rtype::DNSKEY)
            .map(|r| Dnskey::parse(&r.rdata).expect("key"))
            .collect();
        let sigs: Vec<Record> = records.iter().filter(|r| r.rtype == rtype::RRSIG).cloned().collect();
        let budget = WorkBudget::new(100_000);
        for r in records.iter().filter(|r| r.rtype == rtype::NSEC3) {
            let set = vec![r.clone()];
            verify_rrset(&set, &sigs, &keys, &apex, now(), &policy, &budget).expect("NSEC3 verifies");
        }
        // Every owner hash is our hash of some name of the zone.
        let nsec3s: Vec<Record> = records.iter().filter(|r| r.rtype == rtype::NSEC3).cloned().collect();
        let set = Nsec3Set::new(&apex, &nsec3s);
        assert!(set.matching(&apex).is_some(), "the apex has its NSEC3");
        assert!(set.matching(&n("www.z010.test")).is_some());
        assert!(set.matching(&n("b.ent.z010.test")).is_some(), "empty non-terminals have NSEC3s");
        // Under an opt-out span a missing name may be an unsigned delegation:
        // only insecure (RFC 5155 §9.2).
        let expected = if opt_out { Proven::OptOut } else { Proven::Secure };
        assert_eq!(dnssec::nsec3::prove_nxdomain(&n("nope.z010.test"), &set), Ok(expected));
        assert_eq!(dnssec::nsec3::prove_nodata(&n("mail.z010.test"), rtype::AAAA, &set), Ok(Proven::Secure));
        assert_eq!(dnssec::nsec3::prove_nodata(&n("b.ent.z010.test"), rtype::A, &set), Ok(Proven::Secure));
        assert!(dnssec::nsec3::prove_nodata(&n("www.z010.test"), rtype::A, &set).is_err());
        assert!(dnssec::nsec3::prove_nxdomain(&n("www.z010.test"), &set).is_err(), "www exists");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
