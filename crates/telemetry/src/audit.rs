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
    let mut out = config_findings(c);
    check_query_log(&data_dir.join(QUERY_LOG_FILE), c, now_ms, &mut out);
    let sample_clients = check_sample(&data_dir.join(SAMPLE_FILE), c, now_ms, &mut out);
    scan_files(data_dir, &sample_clients, &mut out);
    out
}

/// The configuration `c` against the published limits.
fn config_findings(c: &Commitments) -> Vec<Finding> {
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
    out
}

/// The audit of a keyless edge, whose data directory is sealed: the
/// configuration checks; nothing readable without the key server (no
/// clear table holds a row, every other file under `data_dir` and every
/// file of `sealed_files` that exists starts sealed); retention from the
/// rows' times; and, with the data keys (`vault`), every row opened and the
/// query log's networks checked as in clear.
pub fn audit_sealed(
    data_dir: &Path,
    c: &Commitments,
    now_ms: u64,
    vault: Option<&seal::Vault>,
    sealed_files: &[PathBuf],
) -> Vec<Finding> {
    const CLEAR: &str = "on a keyless edge, nothing on disk is readable without the key server";
    let mut out = config_findings(c);
    let mut files = Vec::new();
    walk(data_dir, &mut files);
    files.extend(sealed_files.iter().filter(|f| f.exists()).cloned());
    let mut clear = Vec::new();
    for f in &files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with("-journal") || name.ends_with("-wal") || name.ends_with("-shm") {
            continue; // pages of the stores below: their rows are sealed blobs
        }
        if name.ends_with(".sqlite") {
            match clear_rows(f) {
                Ok(0) => {}
                Ok(n) => clear.push(format!("{n} rows in clear in {}", f.display())),
                Err(e) => clear.push(format!("{}: {e}", f.display())),
            }
            continue;
        }
        match std::fs::read(f) {
            Ok(bytes) if seal::is_sealed_file(&bytes) || bytes.is_empty() => {}
            Ok(_) => clear.push(format!("{} is not sealed", f.display())),
            Err(e) => clear.push(format!("{}: {e}", f.display())),
        }
    }
    if clear.is_empty() {
        out.push(finding(true, CLEAR, format!("{} file(s): sealed rows and sealed files only", files.len())));
    } else {
        let n = clear.len();
        clear.truncate(5);
        out.push(finding(false, CLEAR, format!("{n} found: {}", clear.join("; "))));
    }
    for (file, table, hours, check) in [
        (
            QUERY_LOG_FILE,
            crate::store::QUERY_LOG_SEALED,
            c.query_log_retention_h,
            "the query log holds nothing older than its retention",
        ),
        (
            SAMPLE_FILE,
            crate::store::SAMPLE_SEALED,
            c.sample_retention_h,
            "the sample holds nothing older than its retention",
        ),
    ] {
        let path = data_dir.join(file);
        if !path.exists() {
            out.push(Finding { outcome: Outcome::Note, check, detail: format!("no {file} on disk") });
            continue;
        }
        match rusqlite::Connection::open(&path) {
            Ok(conn) => {
                retention(&conn, table, check, hours, now_ms, &mut out);
                opened_rows(&conn, table, vault, &mut out);
            }
            Err(e) => out.push(finding(false, check, format!("{}: cannot be read: {e}", path.display()))),
        }
    }
    out
}

/// Rows in the clear tables of a store (0 when it has none).
fn clear_rows(path: &Path) -> rusqlite::Result<u64> {
    let conn = rusqlite::Connection::open(path)?;
    let mut rows = 0u64;
    for table in ["query_log", "sample"] {
        let exists: i64 =
            conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| {
                r.get(0)
            })?;
        if exists > 0 {
            let sql = if table == "sample" { "SELECT COUNT(*) FROM sample" } else { "SELECT COUNT(*) FROM query_log" };
            rows += conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64;
        }
    }
    Ok(rows)
}

/// With the data keys: every sealed row of `table` opened, and the query
/// log's client networks checked truncated.
fn opened_rows(conn: &rusqlite::Connection, table: &str, vault: Option<&seal::Vault>, out: &mut Vec<Finding>) {
    const CHECK: &str = "every sealed record opens with the edge's data keys, and holds what it should";
    let Some(vault) = vault else {
        out.push(Finding {
            outcome: Outcome::Note,
            check: CHECK,
            detail: format!("{table}: no data key (key server unreachable): records not opened"),
        });
        return;
    };
    let sql = if table == crate::store::SAMPLE_SEALED {
        "SELECT ts_ms, record FROM sample_sealed"
    } else {
        "SELECT ts_ms, record FROM query_log_sealed"
    };
    let (mut rows, mut broken, mut full) = (0u64, 0u64, Vec::new());
    let result = conn.prepare(sql).and_then(|mut st| {
        let mut q = st.query([])?;
        while let Some(r) = q.next()? {
            rows += 1;
            let (ts, blob): (i64, Vec<u8>) = (r.get(0)?, r.get(1)?);
            match vault.open(&crate::store::row_aad(table, ts as u64), &blob) {
                Ok(plain) if table == crate::store::QUERY_LOG_SEALED => {
                    let v: serde_json::Value = serde_json::from_slice(&plain).unwrap_or_default();
                    if let Some(client) = v.get("client").and_then(|c| c.as_str()) {
                        match client.parse::<IpAddr>() {
                            Ok(ip) if truncate(ip) == ip => {}
                            _ => full.push(client.to_string()),
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => broken += 1,
            }
        }
        Ok(())
    });
    match result {
        Err(e) => out.push(finding(false, CHECK, format!("{table}: {e}"))),
        Ok(()) if broken > 0 => {
            out.push(finding(false, CHECK, format!("{table}: {broken} of {rows} rows do not open")))
        }
        Ok(()) if !full.is_empty() => {
            out.push(finding(false, CHECK, format!("{table}: {} full client address(es)", full.len())))
        }
        Ok(()) => out.push(finding(true, CHECK, format!("{table}: {rows} rows open"))),
    }
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
