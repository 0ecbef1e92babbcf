//! `onedot audit`: checks a data directory and a configuration against the
//! published commitments, and says which one is broken.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::inventory::{Commitments, published};
use crate::store::{QUERY_LOG_FILE, SAMPLE_FILE, oldest, truncate};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The commitment holds.
    Pass,
    /// The commitment is broken.
    Fail,
    /// Worth knowing; not a broken commitment.
    Note,
}

/// One check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// How it came out.
    pub outcome: Outcome,
    /// The commitment checked.
    pub check: &'static str,
    /// What was found.
    pub detail: String,
}

/// Slack on retention checks: a record may outlive its retention by one
/// purge interval plus a minute before the audit calls it a breach.
pub const RETENTION_SLACK_MS: u64 = 11 * 60 * 1000;

fn finding(ok: bool, check: &'static str, detail: String) -> Finding {
    Finding { outcome: if ok { Outcome::Pass } else { Outcome::Fail }, check, detail }
}

/// Runs every check: the configuration `c` against the published limits,
/// then the files under `data_dir` against `c`, at `now_ms`.
pub fn audit(data_dir: &Path, c: &Commitments, now_ms: u64) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(finding(
        !c.ecs,
        "EDNS Client Subnet is never sent upstream",
        if c.ecs { "telemetry.ecs is on".into() } else { "telemetry.ecs is off".into() },
    ));
    out.push(finding(
        c.sample_rate <= published::MAX_SAMPLE_RATE,
        "the troubleshooting sample is at most 0.05 % of queries",
        format!("telemetry.sample_rate = {} ({} %)", c.sample_rate, c.sample_rate * 100.0),
    ));
    out.push(finding(
        c.query_log_retention_h <= published::MAX_RETENTION_H,
        "the query log is kept at most 25 hours",
        format!("telemetry.query_log_retention_h = {}", c.query_log_retention_h),
    ));
    out.push(finding(
        c.sample_retention_h <= published::MAX_RETENTION_H,
        "the troubleshooting sample is kept at most 25 hours",
        format!("telemetry.sample_retention_h = {}", c.sample_retention_h),
    ));
    out.push(finding(
        c.query_log_client == "truncate" || c.query_log_client == "drop",
        "the query log never holds full client addresses",
        format!("telemetry.query_log_client = {:?}", c.query_log_client),
    ));
    if c.research_export {
        out.push(finding(
            c.research_k >= published::MIN_RESEARCH_K,
            "the research export lists a name only when at least 20 client networks asked",
            format!("telemetry.research_k = {}", c.research_k),
        ));
    }
    check_query_log(&data_dir.join(QUERY_LOG_FILE), c, now_ms, &mut out);
    let sample_clients = check_sample(&data_dir.join(SAMPLE_FILE), c, now_ms, &mut out);
    scan_files(data_dir, &sample_clients, &mut out);
    out
}

fn check_query_log(path: &Path, c: &Commitments, now_ms: u64, out: &mut Vec<Finding>) {
    const CHECK: &str = "the query log holds only truncated client networks (/24, /56) or none";
    if !path.exists() {
        out.push(Finding { outcome: Outcome::Note, check: CHECK, detail: "no query log on disk".into() });
        return;
    }
    // Opened read-write only so that SQLite can roll back the journal of a
    // write cut short by a crash; the audit itself only reads.
    let conn = match rusqlite::Connection::open(path) {
        Ok(c) => c,
        Err(e) => return out.push(finding(false, CHECK, format!("{}: cannot be read: {e}", path.display()))),
    };
    let mut full = Vec::new();
    let mut rows = 0u64;
    let mut with_address = 0u64;
    let result = conn.prepare("SELECT client FROM query_log").and_then(|mut st| {
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            rows += 1;
            let v: Option<String> = r.get(0)?;
            if let Some(v) = v {
                with_address += 1;
                match v.parse::<IpAddr>() {
                    Ok(ip) if truncate(ip) == ip => {}
                    _ => full.push(v),
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        return out.push(finding(false, CHECK, format!("{}: {e}", path.display())));
    }
    if !full.is_empty() {
        full.sort();
        full.dedup();
        let examples: Vec<&str> = full.iter().take(3).map(String::as_str).collect();
        out.push(finding(
            false,
            CHECK,
            format!("{} holds {} full client address(es), e.g. {}", path.display(), full.len(), examples.join(", ")),
        ));
    } else if c.query_log_client == "drop" && with_address > 0 {
        out.push(finding(false, CHECK, format!("{with_address} rows keep a network though the log should drop it")));
    } else {
        out.push(finding(true, CHECK, format!("{rows} rows, {with_address} with a truncated network")));
    }
    retention(
        &conn,
        "query_log",
        "the query log holds nothing older than its retention",
        c.query_log_retention_h,
        now_ms,
        out,
    );
}

/// Returns the full addresses the sample holds (the ones to look for
/// anywhere else).
fn check_sample(path: &Path, c: &Commitments, now_ms: u64, out: &mut Vec<Finding>) -> Vec<String> {
    const CHECK: &str = "the sample holds nothing older than its retention";
    if !path.exists() {
        out.push(Finding { outcome: Outcome::Note, check: CHECK, detail: "no sample on disk".into() });
        return Vec::new();
    }
    let conn = match rusqlite::Connection::open(path) {
        Ok(c) => c,
        Err(e) => {
            out.push(finding(false, CHECK, format!("{}: cannot be read: {e}", path.display())));
            return Vec::new();
        }
    };
    retention(&conn, "sample", CHECK, c.sample_retention_h, now_ms, out);
    let mut clients = Vec::new();
    let _ = conn.prepare("SELECT DISTINCT client FROM sample").and_then(|mut st| {
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            clients.push(r.get::<_, String>(0)?);
        }
        Ok(())
    });
    clients
}

fn retention(
    conn: &rusqlite::Connection,
    table: &str,
    check: &'static str,
    hours: u64,
    now_ms: u64,
    out: &mut Vec<Finding>,
) {
    let limit = hours * 3_600_000 + RETENTION_SLACK_MS;
    match oldest(conn, table) {
        Ok(Some(t)) if now_ms.saturating_sub(t) > limit => out.push(finding(
            false,
            check,
            format!(
                "oldest record {} is {:.1} h old (retention {hours} h)",
                proto::time::utc(t / 1000),
                (now_ms - t) as f64 / 3.6e6
            ),
        )),
        Ok(Some(t)) => out.push(finding(
            true,
            check,
            format!("oldest record {:.1} h old (retention {hours} h)", now_ms.saturating_sub(t) as f64 / 3.6e6),
        )),
        Ok(None) => out.push(finding(true, check, "empty".into())),
        Err(e) => out.push(finding(false, check, format!("{table}: {e}"))),
    }
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Looks for the sample's client addresses (as text and as raw bytes) in
/// every file but the sample, and for anything shaped like an address in
/// the research export.
fn scan_files(data_dir: &Path, sample_clients: &[String], out: &mut Vec<Finding>) {
    const CHECK: &str = "no client address outside the troubleshooting sample";
    let mut files = Vec::new();
    walk(data_dir, &mut files);
    let needles: Vec<(String, Vec<Vec<u8>>)> = sample_clients
        .iter()
        .filter_map(|c| {
            let ip: IpAddr = c.parse().ok()?;
            let raw = match ip {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            // The binary form is only distinctive for IPv6.
            let mut forms = vec![c.as_bytes().to_vec()];
            if ip.is_ipv6() {
                forms.push(raw);
            }
            Some((c.clone(), forms))
        })
        .collect();
    let mut breaches = Vec::new();
    let mut scanned = 0;
    for f in &files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with(SAMPLE_FILE) {
            continue;
        }
        let Ok(bytes) = std::fs::read(f) else { continue };
        scanned += 1;
        for (addr, forms) in &needles {
            if forms.iter().any(|n| contains(&bytes, n)) {
                breaches.push(format!("{addr} in {}", f.display()));
            }
        }
        let research = f.parent().is_some_and(|p| p.ends_with("research"));
        if research && let Some(a) = address_like(&bytes) {
            breaches.push(format!("an address ({a}) in the research export {}", f.display()));
        }
    }
    if breaches.is_empty() {
        out.push(finding(
            true,
            CHECK,
            format!("{scanned} file(s) scanned for the {} address(es) the sample holds", needles.len()),
        ));
    } else {
        breaches.sort();
        breaches.dedup();
        let n = breaches.len();
        breaches.truncate(5);
        out.push(finding(false, CHECK, format!("{n} found: {}", breaches.join("; "))));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The first token of `text` that parses as an IP address.
fn address_like(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .filter(|t| t.contains('.') || t.matches(':').count() >= 2)
        .find(|t| t.parse::<IpAddr>().is_ok())
        .map(str::to_string)
}
