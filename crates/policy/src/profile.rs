//! Profiles: an ordered set of sources and what a blocked answer looks
//! like, and the decision for one name or address.
//!
//! Precedence, in this order:
//!
//! 1. Sources with a legal basis block first, and nothing overrides them
//!    (EDE 16 Censored).
//! 2. Any allow (an allow source, an AdBlock `@@` exception, an RPZ
//!    PASSTHRU) anywhere in the profile lets the name through.
//! 3. Otherwise the most specific block wins (the match closest to the
//!    queried name); between equally specific matches, the source listed
//!    first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::Ede;

use crate::source::{Action, EdeKind, LoadedSource, LocalRecord};

/// How a profile answers for a blocked name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockAnswer {
    /// NXDOMAIN.
    Nxdomain,
    /// NOERROR, no records.
    Nodata,
    /// `0.0.0.0` for A, `::` for AAAA, NODATA for other types.
    Null,
    /// The configured sinkhole addresses for A and AAAA, NODATA otherwise.
    Sinkhole,
}

/// A profile as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProfileSpec {
    /// Its name (`unfiltered`, `security`, `family`, ...).
    pub name: String,
    /// The names of its sources, in precedence order.
    #[serde(default)]
    pub sources: Vec<String>,
    /// The blocked answer for hosts, domain and AdBlock sources (RPZ rules
    /// say their own).
    #[serde(default = "default_answer")]
    pub answer: BlockAnswer,
    /// Sinkhole address for A queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinkhole_a: Option<Ipv4Addr>,
    /// Sinkhole address for AAAA queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinkhole_aaaa: Option<Ipv6Addr>,
    /// TTL of blocked answers, in seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// EDE for sources that do not say (15 Blocked or 17 Filtered).
    #[serde(default = "default_ede")]
    pub ede: EdeKind,
}

fn default_answer() -> BlockAnswer {
    BlockAnswer::Nxdomain
}
fn default_ttl() -> u32 {
    60
}
fn default_ede() -> EdeKind {
    EdeKind::Filtered
}

impl ProfileSpec {
    /// A profile with no sources of its own.
    pub fn named(name: &str) -> ProfileSpec {
        ProfileSpec {
            name: name.into(),
            sources: Vec::new(),
            answer: default_answer(),
            sinkhole_a: None,
            sinkhole_aaaa: None,
            ttl: default_ttl(),
            ede: default_ede(),
        }
    }
}

/// A profile with its sources loaded.
#[derive(Debug)]
pub struct Profile {
    /// Its configuration.
    pub spec: ProfileSpec,
    /// Its sources: those applying to every profile first, then its own.
    pub(crate) sources: Vec<Arc<LoadedSource>>,
}

/// What to send instead of the real answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// NXDOMAIN.
    NxDomain,
    /// NOERROR with no records.
    NoData,
    /// These addresses for A and AAAA, NODATA for other types.
    Address(Ipv4Addr, Ipv6Addr),
    /// Nothing at all.
    Drop,
    /// Over UDP an empty truncated answer; over streams, the real answer.
    TcpOnly,
    /// These records (a CNAME is followed).
    Local(Vec<LocalRecord>),
}

/// A decision to block, with what to say about it.
#[derive(Debug, Clone)]
pub struct Block {
    /// The source that decided.
    pub source: String,
    /// What to answer.
    pub response: Response,
    /// The Extended DNS Error to attach (15, 16 or 17, with EXTRA-TEXT).
    pub ede: Ede,
    /// TTL of the synthesised answer.
    pub ttl: u32,
    counter: Arc<AtomicU64>,
}

impl Block {
    /// Counts one blocked query for the transparency log.
    pub fn count(&self) {
        self.counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counter this block is attributed to (kept with cached blocked
    /// answers, so hits count too).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.counter.clone()
    }
}

/// The decision for a name.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// No rule applies.
    Pass,
    /// An allow rule applies: later checks (CNAME targets, answer
    /// addresses) are skipped.
    Allowed,
    /// Blocked.
    Block(Block),
}

impl Profile {
    /// Whether it has any rule at all.
    pub fn is_empty(&self) -> bool {
        self.sources.iter().all(|s| s.entries() == 0)
    }

    fn block(&self, src: &LoadedSource, action: &Action) -> Block {
        let spec = &src.spec;
        let (code, text) = match &spec.legal_basis {
            Some(l) => {
                let url = l.url.as_deref().map(|u| format!(", {u}")).unwrap_or_default();
                (
                    proto::ede::code::CENSORED,
                    format!("ordered by {}, {}{url} (source {})", l.authority, l.reference, spec.name),
                )
            }
            None => {
                let code = spec.ede.unwrap_or(self.spec.ede).code();
                let cat =
                    if spec.category.is_empty() { String::new() } else { format!(", category {}", spec.category) };
                (code, format!("source {}{cat}", spec.name))
            }
        };
        let response = match action {
            Action::Default => match self.spec.answer {
                BlockAnswer::Nxdomain => Response::NxDomain,
                BlockAnswer::Nodata => Response::NoData,
                BlockAnswer::Null => Response::Address(Ipv4Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED),
                BlockAnswer::Sinkhole => Response::Address(
                    self.spec.sinkhole_a.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    self.spec.sinkhole_aaaa.unwrap_or(Ipv6Addr::UNSPECIFIED),
                ),
            },
            Action::NxDomain => Response::NxDomain,
            Action::NoData => Response::NoData,
            Action::Drop => Response::Drop,
            Action::TcpOnly => Response::TcpOnly,
            Action::Local(r) => Response::Local(r.clone()),
        };
        Block {
            source: spec.name.clone(),
            response,
            ede: Ede::new(code, text),
            ttl: self.spec.ttl,
            counter: src.counter.clone(),
        }
    }

    /// The decision for `qname` (lower-case wire format).
    pub fn check_name(&self, qname: &[u8]) -> Verdict {
        for s in self.sources.iter().filter(|s| s.spec.legal_basis.is_some()) {
            if let Some((_, rule)) = s.block.lookup(qname) {
                return Verdict::Block(self.block(s, s.action(rule)));
            }
        }
        if self.sources.iter().any(|s| s.allow.lookup(qname).is_some()) {
            return Verdict::Allowed;
        }
        let mut best: Option<(usize, &LoadedSource, u32)> = None;
        for s in self.sources.iter().filter(|s| s.spec.legal_basis.is_none()) {
            if let Some((depth, rule)) = s.block.lookup(qname)
                && best.is_none_or(|(d, _, _)| depth < d)
            {
                best = Some((depth, s, rule));
            }
        }
        match best {
            Some((_, s, rule)) => Verdict::Block(self.block(s, s.action(rule))),
            None => Verdict::Pass,
        }
    }

    /// The decision for an address in an answer (RPZ `rpz-ip` triggers).
    pub fn check_address(&self, addr: IpAddr) -> Option<Block> {
        let legal = self.sources.iter().filter(|s| s.spec.legal_basis.is_some());
        for s in legal {
            if let Some((_, rule)) = s.ips.lookup(addr) {
                return Some(self.block(s, s.action(rule)));
            }
        }
        let mut best: Option<(u8, &LoadedSource, u32)> = None;
        for s in self.sources.iter().filter(|s| s.spec.legal_basis.is_none()) {
            if let Some((bits, rule)) = s.ips.lookup(addr)
                && best.is_none_or(|(b, _, _)| bits > b)
            {
                best = Some((bits, s, rule));
            }
        }
        best.map(|(_, s, rule)| self.block(s, s.action(rule)))
    }

    /// Whether any source has address triggers.
    pub fn has_address_rules(&self) -> bool {
        self.sources.iter().any(|s| s.ips.len() > 0)
    }
}
