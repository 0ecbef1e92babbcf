//! The disruption observatory: before a client's address is dropped, the
//! query path maps it to (country, autonomous system) and counts it per
//! minute by (country, AS, door, rcode, EDE class); a writer thread moves
//! each finished minute into SQLite; the published view shows groups of
//! at least k queries. No address, and no network smaller than what the
//! databases call one AS, is ever kept.
//!
//! - [`geo`]: MaxMind-format databases behind a per-network cache.
//! - [`aggregate`]: the per-minute tables of atomics.
//! - [`store`]: minute rows, hourly roll-ups, purges, the k-anonymous view.
//! - [`detect`]: the seasonal baseline and the events (shutdown, route,
//!   censorship, upstream outage).
//! - [`simulate`]: a month of synthetic traffic with injected events, fed
//!   through the real aggregation, store and detector.
//! - [`mmdb`]: a writer of small databases for tests and the lab.
//!
//! Time comes in as a parameter (a clock function), so the simulator can
//! drive the same code through a month in seconds.

pub mod aggregate;
pub mod clickhouse;
pub mod detect;
pub mod geo;
pub mod mmdb;
pub mod simulate;
pub mod store;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

pub use aggregate::{Aggregator, CellKey, EdeClass, MinuteCounts};
pub use geo::{GeoDb, Place};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ObservatoryError {
    /// A MaxMind database could not be used.
    #[error("observatory database {path}: {reason}")]
    Database {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// ClickHouse refused, or could not be reached.
    #[error("observatory ClickHouse: {0}")]
    ClickHouse(String),
    /// The SQLite store failed.
    #[error("observatory store {path}: {reason}")]
    Store {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Unix seconds, from whatever clock the caller runs on.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// The aggregation side: the databases and the minute tables.
pub struct Observatory {
    geo: ArcSwap<GeoDb>,
    agg: Aggregator,
    written: AtomicU64,
    write_errors: AtomicU64,
    fleet_written: AtomicU64,
    fleet_errors: AtomicU64,
    fleet_dropped: AtomicU64,
}

impl std::fmt::Debug for Observatory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observatory").field("agg", &self.agg).finish()
    }
}

impl Observatory {
    /// An observatory over `geo` with tables of `cells` cells, starting at
    /// `now_s`.
    pub fn new(geo: GeoDb, cells: usize, now_s: u64) -> Observatory {
        Observatory {
            geo: ArcSwap::from_pointee(geo),
            agg: Aggregator::new(cells, now_s),
            written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            fleet_written: AtomicU64::new(0),
            fleet_errors: AtomicU64::new(0),
            fleet_dropped: AtomicU64::new(0),
        }
    }

    /// Counts one answered query from `addr` (which is not kept) on door
    /// number `door`. Lock-free and allocation-free.
    #[inline]
    pub fn record(&self, addr: IpAddr, door: u8, rcode: u8, ede: Option<u16>) {
        let place = self.geo.load().place(addr);
        self.agg.record(CellKey { country: place.country, asn: place.asn, door, rcode, ede: EdeClass::of(ede) });
    }

    /// Counts a resolution failure (SERVFAIL, or EDE 22/23) for `qname`
    /// (wire format) under its TLD. Allocation-free.
    pub fn record_failure(&self, qname: &[u8]) {
        if let Some(tld) = tld_of(qname) {
            self.agg.add_failure(tld, 1);
        }
    }

    /// The minute tables (the simulator adds to them directly).
    pub fn aggregator(&self) -> &Aggregator {
        &self.agg
    }

    /// Replaces the databases (on reload); the caller keeps the old ones
    /// when opening the new ones failed.
    pub fn set_geo(&self, geo: GeoDb) {
        self.geo.store(Arc::new(geo));
    }

    /// Prometheus text for /metrics.
    pub fn render_metrics(&self) -> String {
        format!(
            "# HELP onedot_observatory_minutes_written_total Finished minutes written to the observatory store.\n\
             # TYPE onedot_observatory_minutes_written_total counter\n\
             onedot_observatory_minutes_written_total {}\n\
             # HELP onedot_observatory_write_errors_total Minutes the observatory store failed to take.\n\
             # TYPE onedot_observatory_write_errors_total counter\n\
             onedot_observatory_write_errors_total {}\n\
             # HELP onedot_observatory_late_total Queries not counted because the writer fell a minute behind.\n\
             # TYPE onedot_observatory_late_total counter\n\
             onedot_observatory_late_total {}\n\
             # HELP onedot_observatory_fleet_minutes_total Minutes written to the fleet's ClickHouse, failed, and dropped after an hour of failures.\n\
             # TYPE onedot_observatory_fleet_minutes_total counter\n\
             onedot_observatory_fleet_minutes_total{{result=\"written\"}} {}\n\
             onedot_observatory_fleet_minutes_total{{result=\"failed\"}} {}\n\
             onedot_observatory_fleet_minutes_total{{result=\"dropped\"}} {}\n",
            self.written.load(Ordering::Relaxed),
            self.write_errors.load(Ordering::Relaxed),
            self.agg.late(),
            self.fleet_written.load(Ordering::Relaxed),
            self.fleet_errors.load(Ordering::Relaxed),
            self.fleet_dropped.load(Ordering::Relaxed),
        )
    }
}

/// The last label of a wire-format name (none for the root or a
/// compressed or broken name).
fn tld_of(name: &[u8]) -> Option<&[u8]> {
    let (mut pos, mut last) = (0usize, None);
    loop {
        let len = usize::from(*name.get(pos)?);
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        last = Some(pos);
        pos += 1 + len;
    }
    let p = last?;
    name.get(p + 1..p + 1 + usize::from(name[p]))
}

/// Opens the configured databases: `Ok` with them, or the error and an
/// empty database (every address unknown), so the node serves either way.
pub fn open_geo(country: Option<&Path>, asn: Option<&Path>) -> (GeoDb, Option<ObservatoryError>) {
    match GeoDb::open(country, asn) {
        Ok(g) => (g, None),
        Err(e) => (GeoDb::empty(), Some(e)),
    }
}

/// The writer's side of the fleet's ClickHouse: minutes waiting to go (an
/// hour at most), and whether the table is known to exist.
struct Fleet {
    ch: clickhouse::ClickHouse,
    doors: Vec<String>,
    pending: std::collections::VecDeque<MinuteCounts>,
    schema: bool,
}

impl Fleet {
    fn new(ch: clickhouse::ClickHouse, doors: Vec<String>) -> Fleet {
        Fleet { ch, doors, pending: std::collections::VecDeque::new(), schema: false }
    }

    /// Queues a written minute; past an hour's worth the oldest is dropped.
    fn push(&mut self, m: MinuteCounts, obs: &Observatory) {
        if self.pending.len() >= 60 {
            self.pending.pop_front();
            obs.fleet_dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.pending.push_back(m);
    }

    /// Makes the table once; false (counted) while ClickHouse refuses.
    fn ensure_schema(&mut self, obs: &Observatory) -> bool {
        if !self.schema {
            match self.ch.ensure_schema() {
                Ok(()) => self.schema = true,
                Err(e) => {
                    tracing::warn!(error = %e, "observatory: ClickHouse schema not made; minutes kept");
                    obs.fleet_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.schema
    }

    /// Sends the queued minutes in order, stopping at the first failure.
    fn flush(&mut self, obs: &Observatory) {
        if self.pending.is_empty() || !self.ensure_schema(obs) {
            return;
        }
        while let Some(m) = self.pending.front() {
            if let Err(e) = self.ch.insert(m, &self.doors) {
                tracing::warn!(error = %e, kept = self.pending.len(), "observatory: ClickHouse insert failed; minutes kept");
                obs.fleet_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            obs.fleet_written.fetch_add(1, Ordering::Relaxed);
            self.pending.pop_front();
        }
    }

    /// Deletes this node's rows older than `before` (making the table
    /// first if need be: the first purge runs at start, so the table is
    /// there before the first minute ends).
    fn purge(&mut self, before: u64, obs: &Observatory) {
        if self.ensure_schema(obs)
            && let Err(e) = self.ch.purge(before)
        {
            tracing::warn!(error = %e, "observatory: ClickHouse purge failed");
        }
    }
}

/// The writer thread: every second it moves the minute on and writes the
/// minutes that ended; every ten minutes it purges. Stopped by
/// [`Writer::stop`], which writes the current minute's partial counts.
#[derive(Debug)]
pub struct Writer {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread over `obs` and `store`, on `clock`; with `fleet`,
    /// every finished minute also goes to ClickHouse (kept and retried for
    /// an hour while it cannot be reached).
    pub fn start(
        obs: Arc<Observatory>,
        mut store: store::Store,
        clock: Clock,
        fleet: Option<clickhouse::ClickHouse>,
    ) -> Writer {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("observatory".into())
            .spawn(move || {
                let mut fleet = fleet.map(|ch| Fleet::new(ch, store.doors().to_vec()));
                let write = |store: &mut store::Store, fleet: &mut Option<Fleet>, minutes: Vec<MinuteCounts>| {
                    for m in minutes {
                        match store.write(&m) {
                            Ok(()) => obs.written.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                tracing::error!(error = %e, minute = m.minute, "observatory minute not written");
                                obs.write_errors.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                        if let Some(f) = fleet.as_mut() {
                            f.push(m, &obs);
                        }
                    }
                    if let Some(f) = fleet.as_mut() {
                        f.flush(&obs);
                    }
                };
                let mut last_purge = 0u64;
                loop {
                    let now = clock();
                    write(&mut store, &mut fleet, obs.agg.tick(now));
                    if now >= last_purge + 600 {
                        last_purge = now;
                        if let Err(e) = store.purge(now) {
                            tracing::error!(error = %e, "observatory purge failed");
                        }
                        if let Some(f) = fleet.as_mut() {
                            f.purge(now.saturating_sub(store.minute_retention_s()), &obs);
                        }
                    }
                    match stopped.recv_timeout(Duration::from_secs(1)) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
                write(&mut store, &mut fleet, obs.agg.tick(clock()));
                write(&mut store, &mut fleet, obs.agg.drain_all());
            })
            .ok();
        if thread.is_none() {
            tracing::error!("observatory writer thread could not start");
        }
        Writer { stop, thread }
    }

    /// Writes what is counted so far and stops the thread.
    pub fn stop(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_allocates_nothing_once_networks_are_cached() {
        let db = mmdb::lab_database(&["DE", "FR"], 4);
        let obs = Observatory::new(GeoDb::from_bytes(Some(db.clone()), Some(db)).expect("db"), 1024, 0);
        let addrs: Vec<IpAddr> = (0..32u8)
            .map(|i| IpAddr::from([127, 1 + i % 2, i % 4, i]))
            .chain(["2001:db8::1".parse().expect("v6")])
            .collect();
        for a in &addrs {
            obs.record(*a, 0, 0, None);
        }
        let info = allocation_counter::measure(|| {
            for a in &addrs {
                obs.record(*a, 1, 2, Some(22));
            }
        });
        assert_eq!(info.count_total, 0);
        let total: u64 = obs.aggregator().drain_all().iter().flat_map(|m| m.cells.iter().map(|c| c.1)).sum();
        assert_eq!(total, 2 * addrs.len() as u64);
    }

    #[test]
    fn the_tld_is_the_last_label() {
        assert_eq!(tld_of(b"\x03www\x07example\x04test\x00"), Some(&b"test"[..]));
        assert_eq!(tld_of(b"\x00"), None);
        assert_eq!(tld_of(b"\x03www\xc0\x0c"), None);
        assert_eq!(tld_of(b"\x05ab"), None);
    }

    #[test]
    fn the_writer_writes_finished_minutes_and_the_rest_at_stop() {
        let dir = std::env::temp_dir().join(format!("onedot-obs-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = Arc::new(AtomicU64::new(6000));
        let clock: Clock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::Relaxed))
        };
        let db = mmdb::lab_database(&["DE"], 1);
        let obs = Arc::new(Observatory::new(GeoDb::from_bytes(Some(db.clone()), Some(db)).expect("db"), 64, 6000));
        let store = store::Store::open(&dir, vec!["udp".into()], 86_400, 86_400).expect("store");
        let mut w = Writer::start(obs.clone(), store, clock, None);
        for _ in 0..7 {
            obs.record(IpAddr::from([127, 1, 0, 9]), 0, 0, None);
        }
        now.store(6060, Ordering::Relaxed);
        // The writer moves the minute on within a second or so.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while obs.written.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(obs.written.load(Ordering::Relaxed), 1);
        obs.record(IpAddr::from([127, 1, 0, 10]), 0, 3, None);
        w.stop();
        let conn = store::open_reader(&dir).expect("reader");
        let q = store::Query {
            from: 0,
            to: 100_000,
            country: Some("DE".into()),
            asn: None,
            by: vec![store::Dim::Rcode],
            resolution: store::Resolution::Minute,
        };
        let points = store::publish(&conn, &q, 1).expect("publish");
        assert_eq!(
            points.iter().map(|p| (p.t, p.rcode, p.count)).collect::<Vec<_>>(),
            vec![(6000, Some(0), 7), (6060, Some(3), 1)]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
