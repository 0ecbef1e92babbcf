//! The embedded stores: the operator query log and the troubleshooting
//! sample, two SQLite files that are never joined, each purged past its
//! retention on a schedule and at start-up.
//!
//! Records reach a writer thread through a bounded channel: the query path
//! only tries to send (a full channel drops the record and counts it), and
//! the writer batches inserts in transactions. Deleted rows are overwritten
//! (`secure_delete`), so a purged address does not linger in free pages.
//!
//! On a keyless edge the stores are sealed: each row is its time (in clear,
//! for the purge) and one AEAD blob of everything else (`seal::Vault`,
//! bound to its table and time), in the tables `query_log_sealed` and
//! `sample_sealed`. Until the key server has given a data key the stores
//! stay closed and records are dropped: the edge serves, it only cannot
//! write or read its own history.

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

/// The sealed query log's table.
pub const QUERY_LOG_SEALED: &str = "query_log_sealed";
/// The sealed sample's table.
pub const SAMPLE_SEALED: &str = "sample_sealed";

/// Opens (creating) a sealed store: `table` holds (time, sealed record).
pub fn open_sealed(path: &Path, table: &'static str) -> Result<Connection, StoreError> {
    let c = Connection::open(path).map_err(sqlite(path))?;
    let table = if table == SAMPLE_SEALED { SAMPLE_SEALED } else { QUERY_LOG_SEALED };
    c.execute_batch(&format!(
        "PRAGMA secure_delete = ON;
         CREATE TABLE IF NOT EXISTS {table} (ts_ms INTEGER NOT NULL, record BLOB NOT NULL);
         CREATE INDEX IF NOT EXISTS {table}_ts ON {table} (ts_ms);"
    ))
    .map_err(sqlite(path))?;
    Ok(c)
}

/// The associated data a sealed row is bound to: its table and time.
pub fn row_aad(table: &str, ts_ms: u64) -> Vec<u8> {
    let mut aad = table.as_bytes().to_vec();
    aad.extend_from_slice(&ts_ms.to_be_bytes());
    aad
}

/// A query-log record as sealed: JSON of what the clear table's columns hold.
pub fn log_plain(l: &LogRecord) -> Vec<u8> {
    serde_json::json!({
        "client": l.client.map(|c| c.to_string()), "door": l.door, "profile": l.profile,
        "qname": l.qname, "qtype": l.qtype, "rcode": l.rcode, "ede": l.ede,
    })
    .to_string()
    .into_bytes()
}

/// A sample record as sealed: four length-prefixed (u16) fields: client
/// (text), door, query, response.
pub fn sample_plain(s: &SampleRecord) -> Vec<u8> {
    let client = s.client.to_string();
    let mut out = Vec::with_capacity(8 + client.len() + s.door.len() + s.query.len() + s.response.len());
    for field in [client.as_bytes(), s.door.as_bytes(), &s.query, &s.response] {
        out.extend_from_slice(&u16::try_from(field.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(field.get(..usize::from(u16::MAX)).unwrap_or(field));
    }
    out
}

/// The client address of a sealed sample record, opened.
pub fn sample_client(plain: &[u8]) -> Option<String> {
    let (len, rest) = plain.split_first_chunk::<2>()?;
    let client = rest.get(..usize::from(u16::from_be_bytes(*len)))?;
    String::from_utf8(client.to_vec()).ok()
}

/// Deletes records of `table` older than `cutoff_ms`; returns how many.
pub fn purge(conn: &Connection, table: &str, cutoff_ms: u64) -> rusqlite::Result<usize> {
    let sql = match table {
        "sample" => "DELETE FROM sample WHERE ts_ms < ?1",
        QUERY_LOG_SEALED => "DELETE FROM query_log_sealed WHERE ts_ms < ?1",
        SAMPLE_SEALED => "DELETE FROM sample_sealed WHERE ts_ms < ?1",
        _ => "DELETE FROM query_log WHERE ts_ms < ?1",
    };
    conn.execute(sql, params![cutoff_ms as i64])
}

/// The oldest record's time in `table`, if any.
pub fn oldest(conn: &Connection, table: &str) -> rusqlite::Result<Option<u64>> {
    let sql = match table {
        "sample" => "SELECT MIN(ts_ms) FROM sample",
        QUERY_LOG_SEALED => "SELECT MIN(ts_ms) FROM query_log_sealed",
        SAMPLE_SEALED => "SELECT MIN(ts_ms) FROM sample_sealed",
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
    /// Seal every row under these data keys (a keyless edge); the stores
    /// open once the vault holds a key.
    pub vault: Option<seal::Vault>,
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
    let mut stores = Stores { config, log: None, sample: None, dropped_locked: 0 };
    stores.open()?;
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
    /// Records dropped while the sealed stores were locked.
    dropped_locked: u64,
}

impl Stores {
    /// Opens the stores. Sealed ones open without a key (their times are
    /// in clear, so retention is enforced even while locked); rows are
    /// written only once the vault holds a key.
    fn open(&mut self) -> Result<(), StoreError> {
        let c = &self.config;
        let (log_path, sample_path) = (c.data_dir.join(QUERY_LOG_FILE), c.data_dir.join(SAMPLE_FILE));
        let sealed = c.vault.is_some();
        if c.query_log {
            self.log =
                Some(if sealed { open_sealed(&log_path, QUERY_LOG_SEALED)? } else { open_query_log(&log_path)? });
        }
        if c.sample {
            self.sample =
                Some(if sealed { open_sealed(&sample_path, SAMPLE_SEALED)? } else { open_sample(&sample_path)? });
        }
        Ok(())
    }

    fn tables(&self) -> (&'static str, &'static str) {
        if self.config.vault.is_some() { (QUERY_LOG_SEALED, SAMPLE_SEALED) } else { ("query_log", "sample") }
    }

    fn purge(&self) {
        let now = now_ms();
        let (log_table, sample_table) = self.tables();
        for (conn, table, retention) in [
            (&self.log, log_table, self.config.query_log_retention),
            (&self.sample, sample_table, self.config.sample_retention),
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
        if let Some(v) = &self.config.vault {
            if !v.is_unlocked() {
                if self.dropped_locked == 0 {
                    tracing::warn!(
                        "no data key yet: query log and sample records are dropped until the key server gives one"
                    );
                }
                self.dropped_locked += batch.len() as u64;
                batch.clear();
                return;
            }
            if self.dropped_locked > 0 {
                tracing::info!(
                    dropped_while_locked = self.dropped_locked,
                    "data key held: sealed stores written again"
                );
                self.dropped_locked = 0;
            }
        }
        let vault = self.config.vault.clone();
        let stores =
            [(self.log.as_mut(), QUERY_LOG_SEALED, "query log"), (self.sample.as_mut(), SAMPLE_SEALED, "sample")];
        for (conn, sealed_table, what) in stores {
            let Some(c) = conn else { continue };
            let r = match &vault {
                Some(v) => insert_sealed(c, sealed_table, v, batch),
                None if sealed_table == QUERY_LOG_SEALED => insert_logs(c, batch),
                None => insert_samples(c, batch),
            };
            if let Err(e) = r {
                tracing::error!(error = %e, "{what} write failed");
            }
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

/// Seals each record of `batch` that belongs in `table` (a failure to
/// seal drops that record, never writes it in clear).
fn insert_sealed(c: &mut Connection, table: &str, vault: &seal::Vault, batch: &[Record]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    {
        let sql = if table == SAMPLE_SEALED {
            "INSERT INTO sample_sealed (ts_ms, record) VALUES (?1, ?2)"
        } else {
            "INSERT INTO query_log_sealed (ts_ms, record) VALUES (?1, ?2)"
        };
        let mut st = tx.prepare(sql)?;
        for r in batch {
            let (ts, plain) = match r {
                Record::Log(l) if table == QUERY_LOG_SEALED => (l.ts_ms, log_plain(l)),
                Record::Sample(s) if table == SAMPLE_SEALED => (s.ts_ms, sample_plain(s)),
                _ => continue,
            };
            if let Ok(blob) = vault.seal(&row_aad(table, ts), &plain) {
                st.execute(params![ts as i64, blob])?;
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
            vault: None,
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

    #[test]
    fn sealed_stores_drop_records_while_locked_and_seal_them_once_a_key_is_held() {
        let dir = std::env::temp_dir().join(format!("onedot-store-sealed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let vault = seal::Vault::locked();
        let config = StoreConfig {
            data_dir: dir.clone(),
            query_log: true,
            query_log_retention: Duration::from_secs(3600),
            sample: true,
            sample_retention: Duration::from_secs(3600),
            purge_interval: Duration::from_secs(600),
            vault: Some(vault.clone()),
        };
        let (w, handle) = start(config).expect("starts");
        let record = |ts_ms| {
            Record::Sample(SampleRecord {
                ts_ms,
                client: "192.0.2.77".parse().expect("ip"),
                door: "udp",
                query: b"secret-query".to_vec(),
                response: b"secret-response".to_vec(),
            })
        };
        let now = now_ms();
        assert!(w.send(record(now)));
        std::thread::sleep(Duration::from_millis(600));
        vault.replace(&[seal::DataKey { epoch: 3, key: [7; 32] }]);
        assert!(w.send(record(now + 1)));
        assert!(w.send(Record::Log(LogRecord {
            ts_ms: now + 1,
            client: Some(truncate("192.0.2.77".parse().expect("ip"))),
            door: "udp",
            profile: "unfiltered".into(),
            qname: "secret.example".into(),
            qtype: 1,
            rcode: 0,
            ede: None,
        })));
        drop(w);
        handle.join().expect("writer ends");
        for file in [SAMPLE_FILE, QUERY_LOG_FILE] {
            let bytes = std::fs::read(dir.join(file)).expect("store");
            for needle in [&b"192.0.2.7"[..], b"secret"] {
                assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{file} holds {needle:?} in clear");
            }
        }
        let c = open_sealed(&dir.join(SAMPLE_FILE), SAMPLE_SEALED).expect("opens");
        let rows: Vec<(i64, Vec<u8>)> = c
            .prepare("SELECT ts_ms, record FROM sample_sealed")
            .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("rows");
        assert_eq!(rows.len(), 1, "the record sent while locked was dropped");
        let (ts, blob) = &rows[0];
        let plain = vault.open(&row_aad(SAMPLE_SEALED, *ts as u64), blob).expect("opens");
        assert_eq!(sample_client(&plain).as_deref(), Some("192.0.2.77"));
        assert!(vault.open(&row_aad(SAMPLE_SEALED, *ts as u64 + 1), blob).is_err(), "bound to its time");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
