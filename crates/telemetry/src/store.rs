//! The embedded stores: the operator query log and the troubleshooting
//! sample, two SQLite files that are never joined, each purged past its
//! retention on a schedule and at start-up.
//!
//! Records reach a writer thread through a bounded channel: the query path
//! only tries to send (a full channel drops the record and counts it), and
//! the writer batches inserts in transactions. Deleted rows are overwritten
//! (`secure_delete`), so a purged address does not linger in free pages.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

/// The query log's file in the data directory.
pub const QUERY_LOG_FILE: &str = "query-log.sqlite";
/// The sample's file in the data directory.
pub const SAMPLE_FILE: &str = "sample.sqlite";

/// Errors of the stores.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("{path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The directory could not be made.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A client network: the address with the host part cleared (/24 for IPv4,
/// /56 for IPv6).
pub fn truncate(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) & 0xffff_ff00).into()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => truncate(IpAddr::V4(v4)),
            None => IpAddr::V6((u128::from(a) & !((1u128 << 72) - 1)).into()),
        },
    }
}

/// One line of the operator query log.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Unix milliseconds.
    pub ts_ms: u64,
    /// The client network (already truncated), or nothing.
    pub client: Option<IpAddr>,
    /// The door.
    pub door: &'static str,
    /// The profile.
    pub profile: String,
    /// The query name, presentation format.
    pub qname: String,
    /// The query type.
    pub qtype: u16,
    /// The response code.
    pub rcode: u8,
    /// The first EDE of the response.
    pub ede: Option<u16>,
}

/// One sampled exchange, with the full client address.
#[derive(Debug, Clone)]
pub struct SampleRecord {
    /// Unix milliseconds.
    pub ts_ms: u64,
    /// The full client address.
    pub client: IpAddr,
    /// The door.
    pub door: &'static str,
    /// The query as received.
    pub query: Vec<u8>,
    /// The response as sent.
    pub response: Vec<u8>,
}

/// What the writer thread stores.
#[derive(Debug)]
pub enum Record {
    /// A query-log line.
    Log(LogRecord),
    /// A sampled exchange.
    Sample(SampleRecord),
    /// Write what is queued and stop (shutdown).
    Stop,
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite { path: path.to_path_buf(), source }
}

/// Opens (creating) the query log.
pub fn open_query_log(path: &Path) -> Result<Connection, StoreError> {
    let c = Connection::open(path).map_err(sqlite(path))?;
    c.execute_batch(
        "PRAGMA secure_delete = ON;
         CREATE TABLE IF NOT EXISTS query_log (
             ts_ms INTEGER NOT NULL, client TEXT, door TEXT NOT NULL, profile TEXT NOT NULL,
             qname TEXT NOT NULL, qtype INTEGER NOT NULL, rcode INTEGER NOT NULL, ede INTEGER);
         CREATE INDEX IF NOT EXISTS query_log_ts ON query_log (ts_ms);",
    )
    .map_err(sqlite(path))?;
    Ok(c)
}

/// Opens (creating) the sample store.
pub fn open_sample(path: &Path) -> Result<Connection, StoreError> {
    let c = Connection::open(path).map_err(sqlite(path))?;
    c.execute_batch(
        "PRAGMA secure_delete = ON;
         CREATE TABLE IF NOT EXISTS sample (
             ts_ms INTEGER NOT NULL, client TEXT NOT NULL, door TEXT NOT NULL, query BLOB NOT NULL, response BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS sample_ts ON sample (ts_ms);",
    )
    .map_err(sqlite(path))?;
    Ok(c)
}

/// Deletes records of `table` older than `cutoff_ms`; returns how many.
pub fn purge(conn: &Connection, table: &str, cutoff_ms: u64) -> rusqlite::Result<usize> {
    let sql = match table {
        "sample" => "DELETE FROM sample WHERE ts_ms < ?1",
        _ => "DELETE FROM query_log WHERE ts_ms < ?1",
    };
    conn.execute(sql, params![cutoff_ms as i64])
}

/// The oldest record's time in `table`, if any.
pub fn oldest(conn: &Connection, table: &str) -> rusqlite::Result<Option<u64>> {
    let sql = match table {
        "sample" => "SELECT MIN(ts_ms) FROM sample",
        _ => "SELECT MIN(ts_ms) FROM query_log",
    };
    conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).map(|v| v.map(|v| v as u64))
}

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Keep a query log.
    pub query_log: bool,
    /// Its retention.
    pub query_log_retention: Duration,
    /// Keep a sample.
    pub sample: bool,
    /// Its retention.
    pub sample_retention: Duration,
    /// How often the purge runs.
    pub purge_interval: Duration,
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: SyncSender<Record>,
}

impl Writer {
    /// Hands a record to the writer thread; false when it is behind (the
    /// record is dropped) or gone.
    pub fn send(&self, r: Record) -> bool {
        match self.tx.try_send(r) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Asks the writer thread to write what is queued and stop (waits for
    /// room in the queue, never for the thread).
    pub fn stop(&self) {
        let _ = self.tx.send(Record::Stop);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Opens the stores, purges them once (start-up), and starts the writer
/// thread, which also purges every `purge_interval`. The thread ends when
/// every [`Writer`] is dropped.
pub fn start(config: StoreConfig) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StoreError::Io { path: config.data_dir.clone(), source })?;
    let log_path = config.data_dir.join(QUERY_LOG_FILE);
    let sample_path = config.data_dir.join(SAMPLE_FILE);
    let log = if config.query_log { Some(open_query_log(&log_path)?) } else { None };
    let sample = if config.sample { Some(open_sample(&sample_path)?) } else { None };
    let stores = Stores { config, log, sample };
    stores.purge();
    let (tx, rx) = std::sync::mpsc::sync_channel(16_384);
    let handle = std::thread::Builder::new()
        .name("onedot-telemetry".into())
        .spawn(move || stores.run(rx))
        .map_err(|source| StoreError::Io { path: PathBuf::from("writer thread"), source })?;
    Ok((Writer { tx }, handle))
}

struct Stores {
    config: StoreConfig,
    log: Option<Connection>,
    sample: Option<Connection>,
}

impl Stores {
    fn purge(&self) {
        let now = now_ms();
        for (conn, table, retention) in [
            (&self.log, "query_log", self.config.query_log_retention),
            (&self.sample, "sample", self.config.sample_retention),
        ] {
            if let Some(c) = conn {
                match purge(c, table, now.saturating_sub(retention.as_millis() as u64)) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(table, removed = n, "purged records past retention"),
                    Err(e) => tracing::error!(table, error = %e, "purge failed"),
                }
            }
        }
    }

    fn write(&mut self, batch: &mut Vec<Record>) {
        if batch.is_empty() {
            return;
        }
        if let Some(c) = self.log.as_mut()
            && let Err(e) = insert_logs(c, batch)
        {
            tracing::error!(error = %e, "query log write failed");
        }
        if let Some(c) = self.sample.as_mut()
            && let Err(e) = insert_samples(c, batch)
        {
            tracing::error!(error = %e, "sample write failed");
        }
        batch.clear();
    }

    fn run(mut self, rx: Receiver<Record>) {
        let mut batch = Vec::with_capacity(1024);
        let mut last_flush = Instant::now();
        let mut last_purge = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Record::Stop) => {
                    self.write(&mut batch);
                    return;
                }
                Ok(r) => batch.push(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.write(&mut batch);
                    return;
                }
            }
            if batch.len() >= 1000 || last_flush.elapsed() >= Duration::from_millis(200) {
                self.write(&mut batch);
                last_flush = Instant::now();
            }
            if last_purge.elapsed() >= self.config.purge_interval {
                self.purge();
                last_purge = Instant::now();
            }
        }
    }
}

fn insert_logs(c: &mut Connection, batch: &[Record]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut st = tx.prepare(
            "INSERT INTO query_log (ts_ms, client, door, profile, qname, qtype, rcode, ede) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for r in batch {
            if let Record::Log(l) = r {
                st.execute(params![
                    l.ts_ms as i64,
                    l.client.map(|c| c.to_string()),
                    l.door,
                    l.profile,
                    l.qname,
                    l.qtype,
                    l.rcode,
                    l.ede
                ])?;
            }
        }
    }
    tx.commit()
}

fn insert_samples(c: &mut Connection, batch: &[Record]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let mut st =
            tx.prepare("INSERT INTO sample (ts_ms, client, door, query, response) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for r in batch {
            if let Record::Sample(s) = r {
                st.execute(params![s.ts_ms as i64, s.client.to_string(), s.door, s.query, s.response])?;
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation() {
        let t = |s: &str| truncate(s.parse().expect("ip")).to_string();
        assert_eq!(t("192.0.2.77"), "192.0.2.0");
        assert_eq!(t("2001:db8:1:2ff:ffff::1"), "2001:db8:1:200::");
        assert_eq!(t("::ffff:192.0.2.77"), "192.0.2.0");
    }

    #[test]
    fn writes_batches_and_purges() {
        let dir = std::env::temp_dir().join(format!("onedot-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = StoreConfig {
            data_dir: dir.clone(),
            query_log: true,
            query_log_retention: Duration::from_secs(3600),
            sample: true,
            sample_retention: Duration::from_secs(3600),
            purge_interval: Duration::from_secs(600),
        };
        let (w, handle) = start(config.clone()).expect("starts");
        let now = now_ms();
        for (i, ts) in [now, now - 2 * 3600 * 1000].into_iter().enumerate() {
            assert!(w.send(Record::Log(LogRecord {
                ts_ms: ts,
                client: Some(truncate("192.0.2.9".parse().expect("ip"))),
                door: "udp",
                profile: "unfiltered".into(),
                qname: format!("n{i}.test"),
                qtype: 1,
                rcode: 0,
                ede: None,
            })));
        }
        drop(w);
        handle.join().expect("writer ends");
        let c = open_query_log(&dir.join(QUERY_LOG_FILE)).expect("opens");
        let n: i64 = c.query_row("SELECT COUNT(*) FROM query_log", [], |r| r.get(0)).expect("count");
        assert_eq!(n, 2);
        drop(c);
        // The next start purges the old one.
        let (w, handle) = start(config).expect("starts");
        drop(w);
        handle.join().expect("writer ends");
        let c = open_query_log(&dir.join(QUERY_LOG_FILE)).expect("opens");
        let n: i64 = c.query_row("SELECT COUNT(*) FROM query_log", [], |r| r.get(0)).expect("count");
        assert_eq!(n, 1);
        assert!(oldest(&c, "query_log").expect("oldest").is_some_and(|t| t >= now - 1000));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
