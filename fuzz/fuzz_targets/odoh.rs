//! Oblivious DoH (crates/doors/src/odoh.rs, `pub mod odoh`) on arbitrary
//! bytes: `Oblivious::open` (a target opening a sealed query),
//! `odoh::seal_query` (a client reading a target's configurations),
//! `Opener::open` (a client opening a sealed answer), plus a round trip of
//! arbitrary query and answer octets through seal/open.
//!
//! Input: mode octet, then bytes.

#![no_main]

use doors::client::Verify;
use doors::odoh::{Oblivious, seal_query};
use libfuzzer_sys::fuzz_target;

thread_local! {
    /// A target with a fresh key pair (made once: key generation is slow).
    static TARGET: (Oblivious, Vec<u8>) = {
        let t = Oblivious::new(true, Vec::new(), &Verify::default()).expect("ODoH target");
        let configs = t.configs().expect("a target publishes configurations").to_vec();
        (t, configs)
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if rest.len() > 60_000 {
        return; // ODoH lengths are u16; the round trip below needs room
    }
    TARGET.with(|(target, configs)| {
        assert!(!target.relays());
        match mode % 4 {
            // Arbitrary bytes as a sealed query: must be refused, or open.
            0 => {
                if let Ok((query, sealer)) = target.open(rest) {
                    let _ = sealer.seal(&query);
                }
            }
            // Arbitrary bytes as a target's configurations.
            1 => {
                let query = b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01";
                if let Ok((sealed, _opener)) = seal_query(rest, query) {
                    let _ = target.open(&sealed);
                }
            }
            // Arbitrary bytes as a sealed answer.
            2 => {
                let (_, opener) = seal_query(configs, b"query").expect("sealing to our own target");
                let _ = opener.open(rest);
            }
            // Round trip of arbitrary query and answer octets.
            _ => {
                let split = rest.first().map_or(0, |&b| usize::from(b)).min(rest.len());
                let (query, answer) = rest.split_at(split);
                let (sealed, opener) = seal_query(configs, query).expect("sealing to our own target");
                let (opened, sealer) = target.open(&sealed).expect("opening what was sealed to us");
                assert_eq!(opened, query);
                let sealed_answer = sealer.seal(answer).expect("sealing an answer");
                assert_eq!(opener.open(&sealed_answer).expect("opening our own answer"), answer);
            }
        }
    });
});
