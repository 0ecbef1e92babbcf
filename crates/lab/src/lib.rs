//! The lab internet: a simulated DNS hierarchy for tests and `onedot demo`.
//!
//! The lab serves the zone files in `crates/lab/zones/` (embedded at build
//! time) from in-process authoritative servers on 127.53.0.0/16. Which
//! address serves which zone follows from the data alone: a zone is served
//! by the addresses of its apex NS names, found as A records in any zone file
//! (the glue). `zones/lab.toml` makes some addresses faulty on purpose (dead,
//! slow, lame, REFUSED, malformed, wrong ID or question, poisoning, EDNS
//! intolerant, always truncating).
//!
//! Invariant: the lab only ever binds 127.53.0.0/16 addresses; nothing here
//! reaches outside the machine.

mod auth;
mod server;
mod sign;
mod zone;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

pub use auth::{Reply, answer};
pub use server::Lab;
pub use sign::Signing;
pub use zone::Zone;

use serde::Deserialize;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/files.rs"));
}

/// Errors loading or starting the lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// A zone file failed to parse.
    #[error("zone file {file}: {message}")]
    Zone {
        /// File name.
        file: String,
        /// What went wrong.
        message: String,
    },
    /// `lab.toml` is invalid.
    #[error("lab.toml: {0}")]
    Behaviours(String),
    /// A socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing exported files failed.
    #[error("export: {0}")]
    Io(#[from] std::io::Error),
}

/// How a lab server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// A correct authoritative server.
    #[default]
    Normal,
    /// Never answers (nothing is bound).
    Dead,
    /// Answers correctly after a delay.
    Slow {
        /// Delay in milliseconds.
        delay_ms: u64,
    },
    /// Upward referral to the root with AA clear.
    Lame,
    /// REFUSED.
    Refused,
    /// SERVFAIL.
    ServFail,
    /// Garbage bytes with the right ID.
    Malformed,
    /// A correct answer with the wrong ID.
    WrongId,
    /// An answer to a different question.
    WrongQuestion,
    /// A correct answer plus out-of-bailiwick records.
    Poison,
    /// FORMERR without OPT to any query carrying EDNS.
    FormErrEdns,
    /// TC on every UDP reply.
    TcAlways,
    /// Answers every TXT query with the EDNS Client Subnet it carried
    /// (`ecs 192.0.2.0/24` or `no ecs`), echoing the option (RFC 7871).
    EchoEcs,
}

impl Behaviour {
    /// The name used in `lab.toml` and `servers.json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Behaviour::Normal => "normal",
            Behaviour::Dead => "dead",
            Behaviour::Slow { .. } => "slow",
            Behaviour::Lame => "lame",
            Behaviour::Refused => "refused",
            Behaviour::ServFail => "servfail",
            Behaviour::Malformed => "malformed",
            Behaviour::WrongId => "wrong-id",
            Behaviour::WrongQuestion => "wrong-question",
            Behaviour::Poison => "poison",
            Behaviour::FormErrEdns => "formerr-edns",
            Behaviour::TcAlways => "tc-always",
            Behaviour::EchoEcs => "echo-ecs",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BehaviourFile {
    #[serde(default)]
    server: Vec<BehaviourEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BehaviourEntry {
    address: Ipv4Addr,
    behaviour: String,
    delay_ms: Option<u64>,
}

/// One lab server address: the zones it serves and how it behaves.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Indexes into [`LabData::zones`].
    pub zones: Vec<usize>,
    /// Its behaviour.
    pub behaviour: Behaviour,
}

/// Everything the lab serves.
#[derive(Debug)]
pub struct LabData {
    /// The zones, with the file each came from.
    pub zones: Vec<(String, Zone)>,
    /// Server addresses.
    pub servers: BTreeMap<IpAddr, ServerSpec>,
    /// The raw text of each zone file, for export.
    texts: Vec<(String, String)>,
    /// The question list for differential tests.
    pub questions: String,
    /// The root's DNSKEY: the lab's trust anchor (`None` if the root is
    /// unsigned).
    pub trust_anchor: Option<proto::Record>,
    /// The faults of the internet of [`LabData::with_internet_delays`],
    /// when it is on.
    internet: Option<HashMap<(IpAddr, proto::Name), Fault>>,
}

/// A server's fault for one zone on the lab's internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Dead,
    Slow,
}

impl LabData {
    /// The lab built into the binary.
    pub fn builtin() -> Result<LabData, LabError> {
        let files: Vec<(String, String)> =
            embedded::FILES.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        LabData::from_files(files)
    }

    /// A lab read from a directory laid out like `crates/lab/zones`.
    pub fn from_dir(dir: &Path) -> Result<LabData, LabError> {
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".zone") || name == "lab.toml" || name == "dnssec.toml" || name == "questions.txt" {
                files.push((name, std::fs::read_to_string(e.path())?));
            }
        }
        files.sort();
        LabData::from_files(files)
    }

    /// A lab from (file name, text) pairs named as in `crates/lab/zones`:
    /// `*.zone` files, and optionally `lab.toml`, `dnssec.toml` and
    /// `questions.txt` (how the recursor's scenario runner builds one lab
    /// per scenario).
    pub fn from_files(files: Vec<(String, String)>) -> Result<LabData, LabError> {
        let mut zones = Vec::new();
        let mut texts = Vec::new();
        let mut behaviours = BehaviourFile { server: Vec::new() };
        let mut questions = String::new();
        let mut policies = std::collections::HashMap::new();
        for (name, text) in files {
            if name == "dnssec.toml" {
                policies = sign::parse_policies(&text).map_err(LabError::Behaviours)?;
            } else if name == "lab.toml" {
                behaviours = toml::from_str(&text).map_err(|e| LabError::Behaviours(e.to_string()))?;
            } else if name == "questions.txt" {
                questions = text;
            } else {
                let zone = Zone::parse(&text).map_err(|message| LabError::Zone { file: name.clone(), message })?;
                zones.push((name.clone(), zone));
                texts.push((name, text));
            }
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
        let trust_anchor = sign::sign_lab(&mut zones, &policies, now).map_err(LabError::Behaviours)?;
        // Addresses of every name that has an A record anywhere.
        let mut addresses: BTreeMap<proto::Name, Vec<IpAddr>> = BTreeMap::new();
        for (_, z) in &zones {
            for r in z.records() {
                if let Some(a) = r.address() {
                    addresses.entry(r.name.clone()).or_default().push(a);
                }
            }
        }
        let mut servers: BTreeMap<IpAddr, ServerSpec> = BTreeMap::new();
        for (i, (_, z)) in zones.iter().enumerate() {
            for ns in z.apex_ns() {
                for a in addresses.get(&ns).into_iter().flatten() {
                    let spec = servers
                        .entry(*a)
                        .or_insert_with(|| ServerSpec { zones: Vec::new(), behaviour: Behaviour::Normal });
                    if !spec.zones.contains(&i) {
                        spec.zones.push(i);
                    }
                }
            }
        }
        for entry in behaviours.server {
            let b = match (entry.behaviour.as_str(), entry.delay_ms) {
                ("normal", _) => Behaviour::Normal,
                ("dead", _) => Behaviour::Dead,
                ("slow", Some(delay_ms)) => Behaviour::Slow { delay_ms },
                ("lame", _) => Behaviour::Lame,
                ("refused", _) => Behaviour::Refused,
                ("servfail", _) => Behaviour::ServFail,
                ("malformed", _) => Behaviour::Malformed,
                ("wrong-id", _) => Behaviour::WrongId,
                ("wrong-question", _) => Behaviour::WrongQuestion,
                ("poison", _) => Behaviour::Poison,
                ("formerr-edns", _) => Behaviour::FormErrEdns,
                ("tc-always", _) => Behaviour::TcAlways,
                ("echo-ecs", _) => Behaviour::EchoEcs,
                (other, _) => {
                    return Err(LabError::Behaviours(format!("unknown behaviour {other:?} (slow needs delay_ms)")));
                }
            };
            let addr = IpAddr::V4(entry.address);
            match servers.get_mut(&addr) {
                Some(s) => s.behaviour = b,
                None => return Err(LabError::Behaviours(format!("{addr} serves no zone"))),
            }
        }
        Ok(LabData { zones, servers, texts, questions, trust_anchor, internet: None })
    }

    /// The root servers' addresses (those serving the root zone).
    pub fn root_addresses(&self) -> Vec<IpAddr> {
        self.servers
            .iter()
            .filter(|(_, s)| s.zones.iter().any(|&i| self.zones[i].1.apex().is_root()))
            .map(|(a, _)| *a)
            .collect()
    }

    /// Puts the lab's servers behind the delays of a real internet, for
    /// cold-resolution benchmarks: the roots answer after 20 ms, TLD
    /// servers after 10 to 60 ms, the others after 5 to 150 ms (a delay
    /// for each address: the path to it); and in about one zone in three
    /// below the TLDs with more than one server, one of them is dead (never
    /// answers for it) or slow (800 ms), about as many of each. Faults
    /// and delays come from a fixed hash, so every run (and every resolver
    /// measured) sees the same internet. Servers that already misbehave
    /// keep their behaviour. Returns how many zones have a dead and a slow
    /// server.
    pub fn with_internet_delays(&mut self) -> (usize, usize) {
        let mut faults = HashMap::new();
        for (z, (_, zone)) in self.zones.iter().enumerate() {
            let apex = zone.apex();
            let mut normal: Vec<IpAddr> = self
                .servers
                .iter()
                .filter(|(_, s)| s.zones.contains(&z) && s.behaviour == Behaviour::Normal)
                .map(|(a, _)| *a)
                .collect();
            let h = fnv(apex.as_wire());
            if apex.label_count() < 2 || normal.len() < 2 || !h.is_multiple_of(3) {
                continue;
            }
            normal.sort_by_key(|a| fnv(&[apex.as_wire(), a.to_string().as_bytes()].concat()));
            let fault = if (h / 3).is_multiple_of(2) { Fault::Dead } else { Fault::Slow };
            faults.insert((normal[0], apex.clone()), fault);
        }
        let dead = faults.values().filter(|f| **f == Fault::Dead).count();
        let slow = faults.len() - dead;
        self.internet = Some(faults);
        (dead, slow)
    }

    /// The delay of `server`'s answers from `zone` on the internet of
    /// [`LabData::with_internet_delays`] (0 when it is off), or `None` when
    /// it does not answer for the zone.
    pub(crate) fn internet_delay(&self, server: IpAddr, zone: &proto::Name) -> Option<u64> {
        let Some(faults) = &self.internet else { return Some(0) };
        match faults.get(&(server, zone.clone())) {
            Some(Fault::Dead) => return None,
            Some(Fault::Slow) => return Some(800),
            None => {}
        }
        // The path to an address sets its round trip, whatever zone it is
        // asked about (anycast aside): what resolvers learn and rank by.
        let h = fnv(server.to_string().as_bytes()) >> 8;
        Some(match zone.label_count() {
            0 => 20,
            1 => 10 + h % 51,
            _ => 5 + h % 146,
        })
    }

    /// The questions of the differential test as (name, type).
    pub fn questions(&self) -> Vec<(String, String)> {
        self.questions
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.to_string(), it.next()?.to_string()))
            })
            .collect()
    }

    /// Writes every zone file and `servers.json` into `dir` (for running the
    /// lab hierarchy on a real authoritative server); with the internet's
    /// delays on, each server's zones say its delay for them.
    pub fn export(&self, dir: &Path) -> Result<(), LabError> {
        std::fs::create_dir_all(dir)?;
        for (name, text) in &self.texts {
            std::fs::write(dir.join(name), text)?;
        }
        let servers: Vec<serde_json::Value> = self
            .servers
            .iter()
            .map(|(addr, s)| {
                let zones: Vec<serde_json::Value> = s
                    .zones
                    .iter()
                    .map(|&i| {
                        let apex = self.zones[i].1.apex();
                        let mut z = serde_json::json!({"name": apex.to_string(), "file": self.zones[i].0});
                        if self.internet.is_some() {
                            // What this server takes to answer for the zone
                            // on the delayed internet; null: never.
                            z["delay_ms"] = serde_json::json!(self.internet_delay(*addr, apex));
                        }
                        z
                    })
                    .collect();
                serde_json::json!({"address": addr.to_string(), "behaviour": s.behaviour.as_str(), "zones": zones})
            })
            .collect();
        let json = serde_json::to_string_pretty(&servers).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("servers.json"), json)?;
        Ok(())
    }
}

/// FNV-1a of a string: a fixed hash, the same in every run.
fn fnv(s: &[u8]) -> u64 {
    s.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internet_delays_leave_every_zone_a_server_and_are_the_same_each_run() {
        let mut lab = LabData::builtin().expect("lab loads");
        let before: Vec<Behaviour> = lab.servers.values().map(|s| s.behaviour).collect();
        let (dead, slow) = lab.with_internet_delays();
        assert!(dead > 10 && slow > 10, "{dead} {slow}");
        let n = |s: &str| proto::Name::from_ascii(s).expect("name");
        for (z, (_, zone)) in lab.zones.iter().enumerate() {
            let serving: Vec<IpAddr> =
                lab.servers.iter().filter(|(_, s)| s.zones.contains(&z)).map(|(a, _)| *a).collect();
            let faulty = serving.iter().filter(|a| !matches!(lab.internet_delay(**a, zone.apex()), Some(d) if d < 800));
            assert!(faulty.count() <= 1, "{}: one faulty server at most", zone.apex());
        }
        let a: IpAddr = "127.53.2.3".parse().expect("ip");
        assert_eq!(lab.internet_delay(a, &proto::Name::root()), Some(20));
        assert!(lab.internet_delay(a, &n("test")).is_some_and(|d| (10..=60).contains(&d)));
        let sld = lab.internet_delay(a, &n("z001.test"));
        assert!(sld.is_none_or(|d| (5..=150).contains(&d) || d == 800), "{sld:?}");
        assert!(lab.servers.values().zip(&before).all(|(s, b)| s.behaviour == *b), "behaviours are kept");
        let mut again = LabData::builtin().expect("lab loads");
        again.with_internet_delays();
        assert_eq!(lab.internet, again.internet, "the same faults every run");
    }

    #[test]
    fn builtin_lab_loads_and_maps_servers() {
        let lab = LabData::builtin().expect("lab loads");
        assert!(lab.zones.len() > 300);
        let roots = lab.root_addresses();
        assert_eq!(roots.len(), 2);
        assert!(lab.servers.keys().all(|a| matches!(a, IpAddr::V4(v) if v.octets()[..2] == [127, 53])));
        let dead: IpAddr = "127.53.9.1".parse().expect("ip");
        assert_eq!(lab.servers[&dead].behaviour, Behaviour::Dead);
        assert!(lab.questions().len() >= 300);
    }
}
