//! The data inventory: every kind of data onedot keeps beyond one query, in
//! memory or on disk, declared once. PRIVACY.md, the privacy page and
//! `onedot audit` are generated from this list, so they cannot drift from
//! the code: a test fails when PRIVACY.md differs from [`markdown`].

use std::fmt::Write;

/// Whether a kind of data can identify a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Identifies {
    /// Holds nothing about clients.
    No,
    /// Holds truncated client networks (/24, /56): a network, not a person.
    NetworkOnly,
    /// Holds full client addresses.
    Yes,
}

/// One kind of data.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Item {
    /// A short identifier.
    pub id: &'static str,
    /// What it is.
    pub what: &'static str,
    /// Where it lives (memory, or the file under the data directory).
    pub location: &'static str,
    /// How long it lives.
    pub lifetime: &'static str,
    /// Whether it can identify a person.
    pub identifies: Identifies,
    /// The setting that turns it on, if it is optional.
    pub setting: &'static str,
}

/// Everything onedot keeps.
pub const INVENTORY: &[Item] = &[
    Item {
        id: "client-address-in-flight",
        what: "The client's IP address and port, to send the response back",
        location: "memory",
        lifetime: "until the response is sent (the query's lifetime)",
        identifies: Identifies::Yes,
        setting: "",
    },
    Item {
        id: "ecs-upstream",
        what: "EDNS Client Subnet: the client network (/24, /56) sent to the authorities of listed zones; their answers are neither cached nor shared",
        location: "sent upstream; nothing kept",
        lifetime: "the query's lifetime",
        identifies: Identifies::NetworkOnly,
        setting: "telemetry.ecs (off)",
    },
    Item {
        id: "answer-cache",
        what: "Whole DNS answers keyed by question (name, type, class, DO/CD, profile)",
        location: "memory",
        lifetime: "the answer's TTL (at most cache.max_ttl), plus cache.stale_window when serve-stale is on",
        identifies: Identifies::No,
        setting: "",
    },
    Item {
        id: "rrset-cache",
        what: "Records, negative answers and delegations learned from authorities, with their DNSSEC status",
        location: "memory",
        lifetime: "the records' TTLs (at most cache.max_ttl)",
        identifies: Identifies::No,
        setting: "",
    },
    Item {
        id: "server-selection",
        what: "Round-trip times and failures of authoritative servers",
        location: "memory",
        lifetime: "until restart (entries age out)",
        identifies: Identifies::No,
        setting: "",
    },
    Item {
        id: "trust-anchor-state",
        what: "RFC 5011 states of the DNSSEC trust anchors",
        location: "dnssec.trust_anchor_state",
        lifetime: "kept; rewritten on change",
        identifies: Identifies::No,
        setting: "dnssec.trust_anchor_state",
    },
    Item {
        id: "filter-lists",
        what: "Block and allow lists of the filtering profiles, and the transparency log (sources, changes, blocks per day per source)",
        location: "memory; the log also in policy.state_file",
        lifetime: "the lists until replaced; the log's last 100 changes and 400 days per source",
        identifies: Identifies::No,
        setting: "policy.source",
    },
    Item {
        id: "metrics",
        what: "Counters: queries by door, profile, type and response code; cache hits; upstream latency; validation outcomes; EDE codes",
        location: "memory",
        lifetime: "until restart",
        identifies: Identifies::No,
        setting: "",
    },
    Item {
        id: "abuse-defence",
        what: "Rate-limit state per client network (a 32-bit fingerprint of the /24 or /56 and its token counts, in a table of fixed size), and the networks (/24, /56) in the kernel's drop filter while they flood",
        location: "memory",
        lifetime: "a fingerprint until another network takes its slot; a filtered network limits.kernel_filter_seconds (10 s) at a time",
        identifies: Identifies::NetworkOnly,
        setting: "limits.rate_limit",
    },
    Item {
        id: "query-log",
        what: "Operator query log: time, door, profile, name, type, response code, EDE, and the client network truncated to /24 (IPv4) or /56 (IPv6) at write time, or no address at all",
        location: "query-log.sqlite",
        lifetime: "telemetry.query_log_retention_h (25 h), purged every 10 minutes and at start-up",
        identifies: Identifies::NetworkOnly,
        setting: "telemetry.query_log",
    },
    Item {
        id: "troubleshooting-sample",
        what: "A uniformly random fraction of queries and their responses with full client addresses, never joined with the query log",
        location: "sample.sqlite",
        lifetime: "telemetry.sample_retention_h (25 h), purged every 10 minutes and at start-up",
        identifies: Identifies::Yes,
        setting: "telemetry.sample_rate",
    },
    Item {
        id: "research-aggregate",
        what: "Per-day counts of query names, each with up to k hashes of client networks (keyed by a random salt of the day, never stored)",
        location: "memory",
        lifetime: "until the end of the UTC day",
        identifies: Identifies::No,
        setting: "telemetry.research_k",
    },
    Item {
        id: "research-export",
        what: "Per-day query-name counts with no addresses, listing a name only if at least k distinct client networks asked for it",
        location: "research/YYYY-MM-DD.csv and .jsonl",
        lifetime: "kept for researchers; contains no client data",
        identifies: Identifies::No,
        setting: "telemetry.research_export",
    },
    Item {
        id: "cache-snapshot",
        what: "Both caches written at shutdown (and by onedot ctl dump-cache) so that a restart does not start cold: answers and RRsets keyed by question, no client address; answers that depend on a block list are left out",
        location: "cache.snapshot_file (mode 0600; sealed on a keyless edge)",
        lifetime: "until the next shutdown overwrites it; entries past their TTL and the stale window are dropped when it is read",
        identifies: Identifies::No,
        setting: "cache.snapshot_file (unset)",
    },
    Item {
        id: "dnstap-stream",
        what: "Client queries and responses (and, if chosen, the resolver's queries to authorities) as dnstap messages: the client network truncated to /24 or /56 (or dropped, as telemetry.query_log_client says), never the client's full address or port; the DNS messages verbatim, so with them whatever EDNS options the client itself sent and, when telemetry.ecs is on, the /24 or /56 onedot sends to allowed authorities",
        location: "sent to the operator's dnstap collector (dnstap.socket or dnstap.tcp); nothing kept here",
        lifetime: "queued in memory until sent (at most 16,384 messages; more are dropped and counted); the collector's retention is the operator's",
        identifies: Identifies::NetworkOnly,
        setting: "dnstap.socket or dnstap.tcp (unset)",
    },
    Item {
        id: "observatory-place-cache",
        what: "For the disruption observatory: per client network (/24, /48), a 21-bit hash tag with the country and autonomous system it maps to (the network itself is not stored)",
        location: "memory",
        lifetime: "until replaced by another network or a restart",
        identifies: Identifies::No,
        setting: "observatory.enabled (off)",
    },
    Item {
        id: "observatory-minutes",
        what: "Query counts per minute and per hour by country code, autonomous system number, door, response code and EDE class; addresses are mapped and dropped in memory, never stored; published (API, CSV) only for groups of at least k queries",
        location: "observatory.sqlite; with observatory.clickhouse, the minute rows also in the fleet's ClickHouse, tagged with the node's name",
        lifetime: "minute rows observatory.retention_days (7 days; the node purges its ClickHouse rows on the same schedule), hourly roll-ups observatory.rollup_retention_days (400 days)",
        identifies: Identifies::No,
        setting: "observatory.enabled (off), observatory.k",
    },
    Item {
        id: "process-log",
        what: "The log on stderr: start-up, reloads, errors; per-query detail only at debug level, never with client addresses",
        location: "stderr (the operator's log collector)",
        lifetime: "as the operator keeps it",
        identifies: Identifies::No,
        setting: "",
    },
];

/// The commitments as running: what the privacy page and PRIVACY.md state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Commitments {
    /// Whether the operator query log is on.
    pub query_log: bool,
    /// How its client addresses are written (`truncate` or `drop`).
    pub query_log_client: String,
    /// Its retention in hours.
    pub query_log_retention_h: u64,
    /// The sampled fraction of queries (0.0005 is 0.05 %).
    pub sample_rate: f64,
    /// The sample's retention in hours.
    pub sample_retention_h: u64,
    /// Whether EDNS Client Subnet is sent upstream.
    pub ecs: bool,
    /// Whether the research export is on, and its k.
    pub research_export: bool,
    /// Distinct client networks a name needs to appear in the export.
    pub research_k: u32,
}

/// The published limits that `onedot audit` holds a configuration to.
pub mod published {
    /// Longest retention of any log or sample, hours.
    pub const MAX_RETENTION_H: u64 = 25;
    /// Largest troubleshooting sample.
    pub const MAX_SAMPLE_RATE: f64 = 0.0005;
    /// Smallest k for the research export.
    pub const MIN_RESEARCH_K: u32 = 20;
}

/// PRIVACY.md: the commitments and the inventory, for `c`.
pub fn markdown(c: &Commitments) -> String {
    let mut m = String::from(
        "# Privacy\n\n<!-- Generated by `onedot privacy` from crates/telemetry/src/inventory.rs; do not edit. -->\n\n",
    );
    m.push_str("## Commitments\n\n");
    let _ = writeln!(
        m,
        "- Client addresses never reach disk, except in the troubleshooting sample: {}.",
        if c.sample_rate > 0.0 {
            format!(
                "a uniformly random {} % of queries, kept {} hours, in a store of its own",
                trim_float(c.sample_rate * 100.0),
                c.sample_retention_h
            )
        } else {
            "off".to_string()
        }
    );
    let _ = writeln!(
        m,
        "- The operator query log is {}.",
        if c.query_log {
            format!(
                "on, with client addresses {} at write time, kept {} hours",
                if c.query_log_client == "drop" { "dropped" } else { "truncated to /24 (IPv4) and /56 (IPv6)" },
                c.query_log_retention_h
            )
        } else {
            "off".to_string()
        }
    );
    let _ = writeln!(
        m,
        "- Nothing is kept longer than {} hours; a purge runs every 10 minutes and at start-up.",
        c.query_log_retention_h.max(c.sample_retention_h)
    );
    let _ = writeln!(
        m,
        "- EDNS Client Subnet is {}.",
        if c.ecs {
            "ON: client networks truncated to /24 and /56 go to the authorities of telemetry.ecs_allow only"
        } else {
            "never sent upstream"
        }
    );
    let _ = writeln!(
        m,
        "- Research export: {}.",
        if c.research_export {
            format!(
                "per-day name counts, a name only when at least {} client networks asked, no addresses",
                c.research_k
            )
        } else {
            "off".to_string()
        }
    );
    m.push_str("- Metrics are aggregates: no label names a client.\n");
    m.push_str("- `onedot audit --data-dir DIR --config FILE` checks all of this on a running system's files.\n\n");
    m.push_str(
        "## What onedot keeps\n\n| data | where | how long | identifies a person | setting |\n|---|---|---|---|---|\n",
    );
    for i in INVENTORY {
        let ident = match i.identifies {
            Identifies::No => "no",
            Identifies::NetworkOnly => "a network (/24, /56), not a person",
            Identifies::Yes => "yes",
        };
        let setting = if i.setting.is_empty() { "always".to_string() } else { format!("`{}`", i.setting) };
        let _ = writeln!(m, "| {} | {} | {} | {} | {} |", i.what, i.location, i.lifetime, ident, setting);
    }
    m
}

/// A float without trailing zeros (0.05, not 0.050000).
fn trim_float(x: f64) -> String {
    let s = format!("{x:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
