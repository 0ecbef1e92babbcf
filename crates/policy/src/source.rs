//! Sources: list files (hosts, domain lists, AdBlock-style, RPZ) read into
//! name and address tables.
//!
//! Matching semantics (also in the README's filtering section):
//!
//! - **hosts** (`0.0.0.0 ads.example`): each name, and with `subdomains`
//!   (the default) every name below it. The address in the file is ignored:
//!   the profile's blocked answer is used. The usual `localhost` lines are
//!   skipped.
//! - **domains** (one name per line): the name and, with `subdomains`,
//!   everything below; `*.example.test` blocks only names below
//!   `example.test`.
//! - **adblock**: `||example.test^` blocks the name and everything below,
//!   `@@||example.test^` allows them (an exception, which beats every
//!   block of the profile); a bare `example.test` is read as
//!   `||example.test^`. Rules with `$` modifiers, cosmetic rules and regular
//!   expressions are not DNS rules: they are skipped and counted.
//! - **rpz** (a zone file, RFC-draft "DNS RPZ"): `name CNAME .` NXDOMAIN,
//!   `CNAME *.` NODATA, `CNAME rpz-passthru.` PASSTHRU (an allow),
//!   `CNAME rpz-drop.` no answer, `CNAME rpz-tcp-only.` TC over UDP, any
//!   other CNAME target or A/AAAA/TXT records local data. Owners match
//!   exactly; `*.name` matches names below only; `N.x.x.x.x.rpz-ip` owners
//!   match answer addresses in that prefix. NSDNAME, NSIP and client-IP
//!   triggers are skipped and counted.
//!
//! Any other malformed line rejects the whole file, reported as
//! `file:line: what`, so that a previous version keeps serving.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::ips::{IpTable, parse_rpz_ip};
use crate::names::{NameTable, RuleId, Scope, parse_host};

/// The syntax of a source's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `/etc/hosts` syntax.
    Hosts,
    /// One name per line.
    Domains,
    /// The AdBlock subset DNS blockers use.
    Adblock,
    /// A Response Policy Zone file.
    Rpz,
}

/// Whether a source blocks or allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Names in it are blocked (RPZ files and AdBlock exceptions may still
    /// allow).
    #[default]
    Block,
    /// Names in it are allowed whatever the block sources say.
    Allow,
}

/// The Extended DNS Error a block carries when no legal basis applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdeKind {
    /// EDE 15: blocked by the operator's security policy.
    Blocked,
    /// EDE 17: filtered because the client chose a filtering endpoint.
    Filtered,
}

impl EdeKind {
    /// The INFO-CODE.
    pub fn code(self) -> u16 {
        match self {
            EdeKind::Blocked => proto::ede::code::BLOCKED,
            EdeKind::Filtered => proto::ede::code::FILTERED,
        }
    }
}

/// The legal basis of a source: who ordered the block and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Legal {
    /// The authority that ordered it (a court, a regulator).
    pub authority: String,
    /// The order's reference (case number, decision id).
    pub reference: String,
    /// Where the order is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// What a source is, as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Unique name, shown in EDE texts and the transparency log.
    pub name: String,
    /// A file, or a directory whose files are read in name order.
    pub path: PathBuf,
    /// The files' syntax.
    pub format: Format,
    /// What kind of names it lists (`malware`, `adult`, `ads`, ...).
    #[serde(default)]
    pub category: String,
    /// Block or allow.
    #[serde(default)]
    pub kind: Kind,
    /// EDE 15 or 17 (else the profile's default). Sources with a legal
    /// basis always answer EDE 16 Censored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ede: Option<EdeKind>,
    /// The order behind a censorship source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<Legal>,
    /// Applies to every profile (court orders do), whether listed or not.
    #[serde(default)]
    pub all_profiles: bool,
    /// hosts and domain entries also cover the names below them.
    #[serde(default = "yes")]
    pub subdomains: bool,
    /// A feed: fetched from this URL on the reload interval into `path`
    /// (the last good copy, which serves while the feed fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The feed's content must hash to this SHA-256 (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Largest feed body accepted, bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Longest a feed fetch may take, seconds.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Trusted roots for the feed's TLS (default: the system bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl SourceSpec {
    /// A block list of `format` at `path` in category `category`, with
    /// every other setting at its default.
    pub fn new(name: &str, path: PathBuf, format: Format, category: &str) -> SourceSpec {
        SourceSpec {
            name: name.into(),
            path,
            format,
            category: category.into(),
            kind: Kind::Block,
            ede: None,
            legal_basis: None,
            all_profiles: false,
            subdomains: true,
            url: None,
            sha256: None,
            max_bytes: default_max_bytes(),
            timeout_s: default_timeout_s(),
            ca_file: None,
        }
    }
}

fn default_max_bytes() -> u64 {
    64 << 20
}

fn default_timeout_s() -> u64 {
    30
}

fn yes() -> bool {
    true
}

/// A record of RPZ local data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRecord {
    /// Its type (A, AAAA, TXT, or CNAME for a rewrite).
    pub rtype: u16,
    /// Its data in wire format.
    pub rdata: Box<[u8]>,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The profile's blocked answer.
    Default,
    /// NXDOMAIN.
    NxDomain,
    /// NOERROR with no records.
    NoData,
    /// No answer at all.
    Drop,
    /// Over UDP, an empty answer with TC set; over streams, no effect.
    TcpOnly,
    /// These records instead of the real ones.
    Local(Vec<LocalRecord>),
}

/// A source read into memory.
#[derive(Debug)]
pub struct LoadedSource {
    /// Its configuration.
    pub spec: SourceSpec,
    pub(crate) block: NameTable,
    pub(crate) allow: NameTable,
    pub(crate) ips: IpTable,
    /// Rule id - 1 → action.
    pub(crate) rules: Vec<Action>,
    /// Lines that are valid in their syntax but not DNS rules (skipped).
    pub unsupported: usize,
    /// Files, sizes and modification times, hashed.
    pub fingerprint: u64,
    /// Blocks attributed to this source since start (shared across
    /// reloads).
    pub(crate) counter: Arc<AtomicU64>,
}

impl LoadedSource {
    /// Names and prefixes it lists (blocks and allows).
    pub fn entries(&self) -> usize {
        self.block.len() + self.allow.len() + self.ips.len()
    }

    /// Heap bytes of its tables.
    pub fn heap_bytes(&self) -> usize {
        self.block.heap_bytes() + self.allow.heap_bytes() + self.rules.len() * std::mem::size_of::<Action>()
    }

    pub(crate) fn action(&self, rule: RuleId) -> &Action {
        // Rule ids are 1-based; 0 ("no rule") is the default action.
        (rule as usize).checked_sub(1).and_then(|i| self.rules.get(i)).unwrap_or(&Action::Default)
    }

    /// Every entry as text (`block example.test`, `allow x.test`,
    /// `ip 192.0.2.0/24`), for diffs between versions.
    pub(crate) fn keys(&self) -> impl Iterator<Item = (u8, Vec<u8>)> + '_ {
        let b = self.block.names().map(|n| (0u8, n.to_vec()));
        let a = self.allow.names().map(|n| (1u8, n.to_vec()));
        let i = self.ips.prefixes().map(|p| (2u8, p.into_bytes()));
        b.chain(a).chain(i)
    }

    pub(crate) fn has_key(&self, kind: u8, key: &[u8]) -> bool {
        match kind {
            0 => self.block.contains(key),
            1 => self.allow.contains(key),
            _ => std::str::from_utf8(key)
                .ok()
                .and_then(|k| k.split_once('/'))
                .and_then(|(a, b)| Some((a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?)))
                .is_some_and(|(a, bits)| self.ips.lookup(a).is_some_and(|(b, _)| b == bits)),
        }
    }
}

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or directory could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The path.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Lines that are not valid in the source's format.
    #[error("{file}:{line}: {message}{}", if *.more > 0 { format!(" (and {} more bad lines)", .more) } else { String::new() })]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The first bad line (1-based).
        line: usize,
        /// What is wrong with it.
        message: String,
        /// How many other lines were bad.
        more: usize,
    },
}

/// The files of a source: the path itself, or a directory's regular files
/// (not hidden) in name order.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let io = |source| SourceError::Io { file: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type().map_err(io)?.is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// A cheap fingerprint of a source's files (names, sizes, modification
/// times): when it changes, the source is read again.
pub fn fingerprint(path: &Path) -> Result<u64, SourceError> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    for f in files(path)? {
        let meta = std::fs::metadata(&f).map_err(|source| SourceError::Io { file: f.clone(), source })?;
        f.hash(&mut h);
        meta.len().hash(&mut h);
        meta.modified().ok().hash(&mut h);
    }
    Ok(h.finish())
}

/// Collects what a parse found.
struct Sink {
    block: NameTable,
    allow: NameTable,
    ips: IpTable,
    rules: Vec<Action>,
    unsupported: usize,
    /// RPZ owners with local data → their rule, so records accumulate.
    local_rules: std::collections::HashMap<(Vec<u8>, bool), RuleId>,
    first_error: Option<(PathBuf, usize, String)>,
    errors: usize,
}

impl Sink {
    fn rule(&mut self, action: Action) -> RuleId {
        if action == Action::Default {
            return 1;
        }
        self.rules.push(action);
        self.rules.len() as RuleId
    }

    fn error(&mut self, file: &Path, line: usize, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some((file.to_path_buf(), line, message));
        }
    }
}

/// Reads a source from disk.
pub fn load(spec: &SourceSpec, counter: Arc<AtomicU64>) -> Result<LoadedSource, SourceError> {
    let fingerprint = fingerprint(&spec.path)?;
    let mut sink = Sink {
        block: NameTable::default(),
        allow: NameTable::default(),
        ips: IpTable::default(),
        rules: vec![Action::Default],
        unsupported: 0,
        local_rules: Default::default(),
        first_error: None,
        errors: 0,
    };
    for file in files(&spec.path)? {
        let f = std::fs::File::open(&file).map_err(|source| SourceError::Io { file: file.clone(), source })?;
        let mut reader = std::io::BufReader::with_capacity(1 << 16, f);
        let mut rpz = RpzState::default();
        let mut raw = Vec::new();
        let mut n = 0;
        loop {
            raw.clear();
            let got =
                reader.read_until(b'\n', &mut raw).map_err(|source| SourceError::Io { file: file.clone(), source })?;
            if got == 0 {
                break;
            }
            n += 1;
            let Ok(line) = std::str::from_utf8(&raw) else {
                sink.error(&file, n, "not UTF-8".into());
                continue;
            };
            let line = line.trim_end_matches(['\n', '\r']);
            let result = match spec.format {
                Format::Hosts => hosts_line(line, spec, &mut sink),
                Format::Domains => domains_line(line, spec, &mut sink),
                Format::Adblock => adblock_line(line, &mut sink),
                Format::Rpz => rpz.line(line, &mut sink),
            };
            if let Err(message) = result {
                sink.error(&file, n, message);
            }
        }
        if spec.format == Format::Rpz && rpz.depth > 0 {
            sink.error(&file, n, "unclosed parenthesis at the end of the file".into());
        }
    }
    if let Some((file, line, message)) = sink.first_error {
        return Err(SourceError::Syntax { file, line, message, more: sink.errors - 1 });
    }
    sink.block.shrink();
    sink.allow.shrink();
    Ok(LoadedSource {
        spec: spec.clone(),
        block: sink.block,
        allow: sink.allow,
        ips: sink.ips,
        rules: sink.rules,
        unsupported: sink.unsupported,
        fingerprint,
        counter,
    })
}

fn table(sink: &mut Sink, kind: Kind) -> &mut NameTable {
    match kind {
        Kind::Block => &mut sink.block,
        Kind::Allow => &mut sink.allow,
    }
}

fn strip_comment(line: &str, marker: char) -> &str {
    line.split_once(marker).map_or(line, |(a, _)| a).trim()
}

const HOSTS_SKIP: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

fn hosts_line(line: &str, spec: &SourceSpec, sink: &mut Sink) -> Result<(), String> {
    let line = strip_comment(line, '#');
    let mut words = line.split_whitespace();
    let Some(addr) = words.next() else { return Ok(()) };
    addr.parse::<IpAddr>().map_err(|_| format!("{addr:?} is not an IP address"))?;
    let scope = if spec.subdomains { Scope::Subtree } else { Scope::Exact };
    let mut any = false;
    let mut wire = Vec::with_capacity(64);
    for name in words {
        any = true;
        if HOSTS_SKIP.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        parse_host(name, &mut wire)?;
        table(sink, spec.kind).insert(&wire, scope, 1);
    }
    if !any {
        return Err(format!("no host name after {addr}"));
    }
    Ok(())
}

fn domains_line(line: &str, spec: &SourceSpec, sink: &mut Sink) -> Result<(), String> {
    let line = strip_comment(line, '#');
    if line.is_empty() {
        return Ok(());
    }
    if line.contains(char::is_whitespace) {
        return Err(format!("one name per line expected, got {line:?}"));
    }
    let mut wire = Vec::with_capacity(64);
    let (name, scope) = match line.strip_prefix("*.") {
        Some(rest) => (rest, Scope::Below),
        None => (line, if spec.subdomains { Scope::Subtree } else { Scope::Exact }),
    };
    parse_host(name, &mut wire)?;
    table(sink, spec.kind).insert(&wire, scope, 1);
    Ok(())
}

fn adblock_line(line: &str, sink: &mut Sink) -> Result<(), String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('!') || line.starts_with('[') || line.starts_with("# ") || line == "#" {
        return Ok(());
    }
    // Not DNS rules: modifiers, cosmetic filters, regular expressions,
    // URL paths and patterns.
    if line.contains('$')
        || line.contains("##")
        || line.contains("#@#")
        || line.contains("#?#")
        || line.starts_with('/')
        || line.contains('*')
    {
        sink.unsupported += 1;
        return Ok(());
    }
    let (allow, rest) = match line.strip_prefix("@@") {
        Some(r) => (true, r),
        None => (false, line),
    };
    let domain = match rest.strip_prefix("||") {
        Some(r) => r.strip_suffix("^|").or_else(|| r.strip_suffix('^')).unwrap_or(r),
        None if rest.starts_with('|') || rest.contains('/') || rest.contains('^') => {
            sink.unsupported += 1;
            return Ok(());
        }
        None => rest,
    };
    if domain.contains('/') {
        sink.unsupported += 1;
        return Ok(());
    }
    let mut wire = Vec::with_capacity(64);
    parse_host(domain, &mut wire)?;
    let t = if allow { &mut sink.allow } else { &mut sink.block };
    t.insert(&wire, Scope::Subtree, 1);
    Ok(())
}

/// The RPZ reader's state across lines.
#[derive(Default)]
struct RpzState {
    origin: String,
    owner: String,
    /// Open parentheses (an SOA over several lines).
    depth: usize,
}

/// Splits master-file text into fields, honouring quotes; strips `;`
/// comments.
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars();
    let mut in_field = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
                in_field = true;
            }
            '\\' if quoted => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ';' if !quoted => break,
            c if c.is_whitespace() && !quoted => {
                if in_field {
                    out.push(std::mem::take(&mut cur));
                    in_field = false;
                }
            }
            c => {
                cur.push(c);
                in_field = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quoted string".into());
    }
    if in_field {
        out.push(cur);
    }
    Ok(out)
}

/// TXT character-strings from quoted or bare fields.
fn txt_rdata(fields: &[String]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for f in fields {
        let s = f.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(f);
        let mut bytes = Vec::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    bytes.extend(n.to_string().bytes());
                }
            } else {
                bytes.extend(c.to_string().bytes());
            }
        }
        if bytes.len() > 255 {
            return Err("TXT string longer than 255 octets".into());
        }
        out.push(bytes.len() as u8);
        out.extend(bytes);
    }
    if out.is_empty() {
        return Err("TXT without data".into());
    }
    Ok(out)
}

impl RpzState {
    /// The owner relative to the origin (`""` for the apex).
    fn relative(&self, owner: &str) -> Result<String, String> {
        if owner == "@" {
            return Ok(String::new());
        }
        let Some(abs) = owner.strip_suffix('.') else { return Ok(owner.to_ascii_lowercase()) };
        let abs = abs.to_ascii_lowercase();
        let origin = self.origin.trim_end_matches('.');
        if abs == origin {
            return Ok(String::new());
        }
        match abs.strip_suffix(&format!(".{origin}")) {
            Some(rel) if !origin.is_empty() => Ok(rel.to_string()),
            _ if origin.is_empty() => Ok(abs),
            _ => Err(format!("{owner} is outside the policy zone {}", self.origin)),
        }
    }

    fn line(&mut self, line: &str, sink: &mut Sink) -> Result<(), String> {
        let starts_blank = line.starts_with([' ', '\t']);
        let f = fields(line)?;
        // Parenthesised continuations (SOA) carry nothing we use.
        let opens = f.iter().map(|x| x.matches('(').count()).sum::<usize>();
        let closes = f.iter().map(|x| x.matches(')').count()).sum::<usize>();
        let was_open = self.depth > 0;
        self.depth = (self.depth + opens).checked_sub(closes).ok_or("unbalanced ')'")?;
        if was_open {
            return Ok(());
        }
        let Some((head, tail)) = f.split_first() else { return Ok(()) };
        match head.as_str() {
            "$ORIGIN" => {
                let o = f.get(1).ok_or("$ORIGIN without a name")?;
                if !o.ends_with('.') {
                    return Err("$ORIGIN must be absolute".into());
                }
                self.origin = o.to_ascii_lowercase();
                return Ok(());
            }
            "$TTL" => return Ok(()),
            d if d.starts_with('$') => return Err(format!("{d} is not supported")),
            _ => {}
        }
        let mut rest = &f[..];
        if !starts_blank {
            self.owner = self.relative(head)?;
            rest = tail;
        }
        // [ttl] [class] type rdata, TTL and class in either order.
        while let Some((first, after)) = rest.split_first() {
            if first.bytes().all(|b| b.is_ascii_digit()) || first.eq_ignore_ascii_case("IN") {
                rest = after;
            } else {
                break;
            }
        }
        let (rtype, rdata) = rest.split_first().ok_or("record without a type")?;
        let rtype = rtype.to_ascii_uppercase();
        let owner = self.owner.clone();
        if owner.is_empty() {
            // The zone's own SOA and NS.
            return match rtype.as_str() {
                "SOA" | "NS" => Ok(()),
                _ => Err(format!("{rtype} at the policy zone's apex is not a trigger")),
            };
        }
        for unsupported in [".rpz-nsdname", ".rpz-nsip", ".rpz-client-ip"] {
            if owner.ends_with(unsupported) || owner == unsupported[1..] {
                sink.unsupported += 1;
                return Ok(());
            }
        }
        let action = match rtype.as_str() {
            "CNAME" => {
                let target = rdata.first().ok_or("CNAME without a target")?.to_ascii_lowercase();
                match target.as_str() {
                    "." => Some(Action::NxDomain),
                    "*." => Some(Action::NoData),
                    "rpz-passthru." => None,
                    "rpz-drop." => Some(Action::Drop),
                    "rpz-tcp-only." => Some(Action::TcpOnly),
                    t if t.starts_with("*.") => return Err("wildcard CNAME rewrites are not supported".into()),
                    t => {
                        let abs = if t.ends_with('.') { t.to_string() } else { format!("{t}.{}", self.origin) };
                        let mut wire = Vec::new();
                        parse_host(&abs, &mut wire)?;
                        Some(Action::Local(vec![LocalRecord { rtype: proto::rtype::CNAME, rdata: wire.into() }]))
                    }
                }
            }
            "A" => {
                let a: std::net::Ipv4Addr =
                    rdata.first().and_then(|a| a.parse().ok()).ok_or("A needs an IPv4 address")?;
                Some(Action::Local(vec![LocalRecord { rtype: proto::rtype::A, rdata: a.octets().into() }]))
            }
            "AAAA" => {
                let a: std::net::Ipv6Addr =
                    rdata.first().and_then(|a| a.parse().ok()).ok_or("AAAA needs an IPv6 address")?;
                Some(Action::Local(vec![LocalRecord { rtype: proto::rtype::AAAA, rdata: a.octets().into() }]))
            }
            "TXT" => {
                Some(Action::Local(vec![LocalRecord { rtype: proto::rtype::TXT, rdata: txt_rdata(rdata)?.into() }]))
            }
            other => return Err(format!("{other} is not a supported RPZ action or local-data type")),
        };
        // The trigger: an address prefix, a wildcard or a name.
        enum Trigger {
            Ip(IpAddr, u8),
            Name(Vec<u8>, Scope),
        }
        let trigger = if let Some(labels) = owner.strip_suffix(".rpz-ip") {
            let (a, bits) = parse_rpz_ip(labels)?;
            Trigger::Ip(a, bits)
        } else if let Some(base) = owner.strip_prefix("*.") {
            let mut wire = Vec::new();
            parse_host(base, &mut wire)?;
            Trigger::Name(wire, Scope::Below)
        } else {
            let mut wire = Vec::new();
            parse_host(&owner, &mut wire)?;
            Trigger::Name(wire, Scope::Exact)
        };
        let Some(action) = action else {
            // PASSTHRU: an allow.
            match trigger {
                Trigger::Name(w, scope) => {
                    sink.allow.insert(&w, scope, 1);
                }
                Trigger::Ip(..) => sink.unsupported += 1,
            }
            return Ok(());
        };
        let rule = match action {
            Action::Local(mut recs) => {
                let key = (owner.into_bytes(), false);
                if let Some(&r) = sink.local_rules.get(&key) {
                    if let Some(Action::Local(existing)) =
                        (r as usize).checked_sub(1).and_then(|i| sink.rules.get_mut(i))
                    {
                        existing.append(&mut recs);
                    }
                    return Ok(());
                }
                let r = sink.rule(Action::Local(recs));
                sink.local_rules.insert(key, r);
                r
            }
            a => sink.rule(a),
        };
        match trigger {
            Trigger::Ip(a, bits) => sink.ips.insert(a, bits, rule),
            Trigger::Name(w, scope) => {
                sink.block.insert(&w, scope, rule);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec(format: Format, path: PathBuf) -> SourceSpec {
        SourceSpec::new("t", path, format, "test")
    }

    fn load_text(format: Format, text: &str) -> Result<LoadedSource, SourceError> {
        let dir = std::env::temp_dir().join(format!("onedot-policy-{}-{}", std::process::id(), rand_name()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("list");
        std::fs::write(&p, text).expect("write");
        let r = load(&spec(format, p), Arc::default());
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    fn rand_name() -> u64 {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(0u8)
    }

    fn w(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        parse_host(s, &mut v).expect("host");
        v
    }

    #[test]
    fn hosts_file() {
        let s = load_text(
            Format::Hosts,
            "# comment\n127.0.0.1 localhost\n0.0.0.0 ads.test tracker.test # x\n::1 ip6-localhost\n\n",
        )
        .expect("loads");
        assert_eq!(s.block.len(), 2);
        assert!(s.block.lookup(&w("x.ads.test")).is_some());
        let e = load_text(Format::Hosts, "0.0.0.0 ok.test\nnot-an-ip bad.test\n0.0.0.0\n").expect_err("bad");
        let msg = e.to_string();
        assert!(msg.ends_with(":2: \"not-an-ip\" is not an IP address (and 1 more bad lines)"), "{msg}");
    }

    #[test]
    fn domain_list() {
        let s = load_text(Format::Domains, "a.test\n*.b.test\n# c\n").expect("loads");
        assert_eq!(s.block.lookup(&w("a.test")), Some((0, 1)));
        assert_eq!(s.block.lookup(&w("b.test")), None);
        assert!(s.block.lookup(&w("x.b.test")).is_some());
        assert!(load_text(Format::Domains, "a b.test\n").is_err());
    }

    #[test]
    fn adblock_list() {
        let s = load_text(
            Format::Adblock,
            "[Adblock Plus 2.0]\n! title\n||ads.test^\n@@||good.ads.test^\n||x.test^$third-party\nexample.org##.banner\n/ad[0-9]/\nplain.test\n",
        )
        .expect("loads");
        assert_eq!(s.block.len(), 2);
        assert_eq!(s.allow.len(), 1);
        assert_eq!(s.unsupported, 3);
        assert!(load_text(Format::Adblock, "||bad domain^\n").is_err());
    }

    #[test]
    fn rpz_zone() {
        let text = "$TTL 300\n$ORIGIN rpz.test.\n@ SOA ns.rpz.test. h.rpz.test. (\n 1 3600 600\n 86400 60 )\n  NS ns.rpz.test.\n\
                    nx.test CNAME .\nnodata.test CNAME *.\n*.wild.test CNAME .\npass.nx.test CNAME rpz-passthru.\n\
                    drop.test CNAME rpz-drop.\ntcp.test CNAME rpz-tcp-only.\nlocal.test A 192.0.2.1\nlocal.test AAAA 2001:db8::1\n\
                    local.test TXT \"hello world\"\nredirect.test.rpz.test. CNAME walled.garden.test.\n\
                    32.66.2.0.192.rpz-ip CNAME .\nns.test.rpz-nsdname CNAME .\n";
        let s = load_text(Format::Rpz, text).expect("loads");
        let rule = |n: &str| s.block.lookup(&w(n)).map(|(_, r)| s.action(r).clone());
        assert_eq!(rule("nx.test"), Some(Action::NxDomain));
        assert_eq!(rule("a.nx.test"), None, "RPZ owners match exactly");
        assert_eq!(rule("nodata.test"), Some(Action::NoData));
        assert_eq!(rule("wild.test"), None);
        assert_eq!(rule("a.wild.test"), Some(Action::NxDomain));
        assert_eq!(rule("drop.test"), Some(Action::Drop));
        assert_eq!(rule("tcp.test"), Some(Action::TcpOnly));
        match rule("local.test") {
            Some(Action::Local(r)) => assert_eq!(r.len(), 3),
            other => panic!("{other:?}"),
        }
        match rule("redirect.test") {
            Some(Action::Local(r)) => assert_eq!(r[0].rtype, proto::rtype::CNAME),
            other => panic!("{other:?}"),
        }
        assert!(s.allow.contains(&w("pass.nx.test")));
        assert!(s.ips.lookup("192.0.2.66".parse().expect("ip")).is_some());
        assert_eq!(s.unsupported, 1);
        let e =
            load_text(Format::Rpz, "$ORIGIN rpz.test.\nok.test CNAME .\nbad.test MX 10 x.test.\n").expect_err("bad");
        assert!(e.to_string().contains(":3: MX is not a supported"), "{e}");
        assert!(load_text(Format::Rpz, "$ORIGIN rpz.test.\nx.other. CNAME .\n").is_err());
    }
}
