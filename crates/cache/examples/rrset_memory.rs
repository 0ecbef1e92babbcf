//! Measures what the RRset cache really costs: fills a cache with lab-shaped
//! A RRsets (optionally with an RRSIG each) and compares the resident memory
//! the process gained with the bytes the cache accounts.
//!
//! `cargo run --release -p cache --example rrset_memory [entries] [signed|plain] [bound MiB]`
//! (no bound: the cache never evicts)

use cache::{Rank, RrsetCache, Security, TtlPolicy};
use proto::{Name, Record, rtype};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500_000);
    let signed = args.next().is_some_and(|a| a == "signed");
    let bound: u64 = args.next().and_then(|a| a.parse::<u64>().ok()).map_or(u64::MAX >> 1, |m| m << 20);
    {
        let before = rss_bytes();
        let c = RrsetCache::new(bound.min(4 << 30), TtlPolicy::default());
        for i in 0..n {
            let name = Name::from_ascii(&format!("www.z{i:06}.test")).expect("name");
            let a =
                Record { name: name.clone(), rtype: rtype::A, class: 1, ttl: 3600, rdata: Box::new([127, 0, 0, 1]) };
            let sigs = if signed {
                // An ECDSA P-256 RRSIG: 18 fixed bytes, the signer (the
                // name's zone, as in the lab), 64 bytes.
                let mut rdata = vec![0u8; 18];
                rdata[..2].copy_from_slice(&rtype::A.to_be_bytes());
                rdata.extend_from_slice(&name.as_wire()[4..]);
                rdata.extend_from_slice(&[7; 64]);
                vec![Record { name, rtype: rtype::RRSIG, class: 1, ttl: 3600, rdata: rdata.into() }]
            } else {
                Vec::new()
            };
            c.insert_validated(vec![a], sigs, Security::Secure, Rank::Authoritative, 0);
        }
        let gained = rss_bytes().saturating_sub(before);
        let bound = if bound > 1 << 40 { "none".to_string() } else { format!("{} MiB", bound >> 20) };
        println!(
            "bound {bound}: {} entries of {n}, {} bytes accounted ({:.0} per entry), RSS +{:.1} MiB ({:.0} per entry)",
            c.len(),
            c.weight(),
            c.weight() as f64 / c.len() as f64,
            gained as f64 / (1 << 20) as f64,
            gained as f64 / c.len() as f64
        );
        drop(c);
    }
}
