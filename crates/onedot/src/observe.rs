//! What the pipeline tells telemetry about each answered query: metrics
//! always, and, when the operator turned them on, a query-log line (client
//! network truncated or dropped here, before anything is queued), a
//! sampled exchange, and a research count.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use doors::{Client, Door};
use telemetry::{LogRecord, Metrics, Record, Research, SampleRecord, Writer, truncate};
use tokio::task::JoinSet;

use crate::config::{DnstapConfig, ObservatoryConfig, TelemetryConfig};

/// The telemetry side of the pipeline.
pub struct Observer {
    /// Counters for /metrics.
    pub metrics: Metrics,
    profiles: Vec<String>,
    writer: Option<Writer>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    log: bool,
    drop_client: bool,
    sample_rate: f64,
    research: Option<(Research, PathBuf)>,
    /// Seals what is written (a keyless edge).
    vault: Option<seal::Vault>,
    /// The disruption observatory, when on.
    pub observatory: Option<Arc<observatory::Observatory>>,
    /// The dnstap output, when on.
    pub dnstap: Option<Arc<telemetry::dnstap::Dnstap>>,
    observatory_writer: std::sync::Mutex<Option<observatory::Writer>>,
}

/// This host's name (dnstap's identity, /help's node), empty if unknown.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

fn door_index(d: Door) -> usize {
    Door::ALL.iter().position(|x| *x == d).unwrap_or(0)
}

fn now() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

impl Observer {
    /// Sets up telemetry as configured: the stores (purged once now) and
    /// the research aggregate, with a task that closes research days.
    pub fn start(
        config: &TelemetryConfig,
        obs: &ObservatoryConfig,
        tap: &DnstapConfig,
        profiles: Vec<String>,
        vault: Option<seal::Vault>,
    ) -> anyhow::Result<Observer> {
        let metrics = Metrics::new(profiles.clone());
        let c = config.commitments();
        let mut writer = None;
        let mut thread = None;
        let mut research = None;
        if let Some(dir) = &config.data_dir {
            if c.query_log || c.sample_rate > 0.0 {
                let (w, t) = telemetry::store::start(telemetry::StoreConfig {
                    data_dir: dir.clone(),
                    query_log: c.query_log,
                    query_log_retention: Duration::from_secs(config.query_log_retention_h * 3600),
                    sample: c.sample_rate > 0.0,
                    sample_retention: Duration::from_secs(config.sample_retention_h * 3600),
                    purge_interval: Duration::from_secs(config.purge_interval_s.max(1)),
                    vault: vault.clone(),
                })?;
                writer = Some(w);
                thread = Some(t);
            }
            if c.research_export {
                research = Some((Research::new(config.research_k, now().as_secs()), dir.join("research")));
            }
        }
        if config.ecs {
            tracing::warn!(
                allow = ?config.ecs_allow,
                "EDNS Client Subnet is on: client networks (/24, /56) go to these authorities, against the published commitments"
            );
        }
        let (observatory, observatory_writer) = match (&config.data_dir, obs.enabled) {
            (Some(dir), true) => {
                let (o, w) = start_observatory(obs, dir)?;
                (Some(o), Some(w))
            }
            _ => (None, None),
        };
        let dnstap = tap.target().map(|target| {
            let identity = tap.identity.clone().unwrap_or_else(host_name);
            tracing::info!(collector = %target, "dnstap on");
            Arc::new(telemetry::dnstap::Dnstap::start(target, tap.selection(), &identity))
        });
        Ok(Observer {
            observatory,
            dnstap,
            observatory_writer: std::sync::Mutex::new(observatory_writer),
            metrics,
            profiles,
            writer,
            thread: std::sync::Mutex::new(thread),
            log: c.query_log,
            drop_client: config.query_log_client == "drop",
            sample_rate: c.sample_rate,
            research,
            vault,
        })
    }

    /// Closes finished research days every minute (call once, with the
    /// shared observer).
    pub fn spawn_ticker(self: &Arc<Self>, tasks: &mut JoinSet<()>) {
        if self.research.is_none() {
            return;
        }
        let me = self.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                if let Some((r, dir)) = &me.research
                    && let Some(export) = r.tick(now().as_secs())
                {
                    let (dir, vault) = (dir.clone(), me.vault.clone());
                    let _ = tokio::task::spawn_blocking(move || write_export(&dir, &export, vault.as_ref())).await;
                }
            }
        });
    }

    /// At shutdown: writes what the stores have queued, waits for the
    /// writer, and writes the research export of the day so far.
    pub fn close(&self) {
        if let Some(t) = &self.dnstap {
            t.close();
        }
        if let Some(mut w) = self.observatory_writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.stop();
        }
        if let Some(w) = &self.writer {
            w.stop();
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        if let Some((r, dir)) = &self.research {
            write_export(dir, &r.snapshot(), self.vault.as_ref());
        }
    }

    /// CLIENT_QUERY and CLIENT_RESPONSE, the client's network truncated
    /// or dropped as the query log's is.
    fn tap_client(&self, tap: &telemetry::dnstap::Dnstap, client: Client, query: &[u8], response: &[u8]) {
        use telemetry::dnstap::{Event, Kind, Protocol};
        let now = std::time::SystemTime::now();
        let protocol = match client.door {
            Door::Udp => Protocol::Udp,
            Door::Tcp => Protocol::Tcp,
            Door::Dot => Protocol::Dot,
            Door::Doh => Protocol::Doh,
            Door::Doq => Protocol::Doq,
        };
        let query_address = if self.drop_client { None } else { Some(truncate(client.addr)) };
        let mut event = Event {
            kind: Kind::ClientQuery,
            protocol,
            // The door does not say which HTTP version a DoH query came by.
            http: None,
            query_address,
            response_address: None,
            query_time: now,
            query: Some(query),
            response_time: None,
            response: None,
        };
        tap.emit(&event);
        event.kind = Kind::ClientResponse;
        event.response_time = Some(now);
        event.response = Some(response);
        tap.emit(&event);
    }

    /// Records one answered query. `cached` says it came from the fast
    /// path.
    pub fn observe(&self, client: Client, profile: u8, query: &[u8], response: &[u8], cached: bool) {
        if let Some(tap) = &self.dnstap {
            self.tap_client(tap, client, query, response);
        }
        let rcode = response.get(3).map_or(0, |b| b & 0x0f);
        let question = telemetry::wire::question(response).or_else(|| telemetry::wire::question(query));
        let qtype = question.map_or(0, |q| q.1);
        self.metrics.query(door_index(client.door), profile, qtype, rcode, cached);
        // EDEs are counted on the slow path, where they are decided (cached
        // blocked answers count in the transparency log).
        let ede = if cached { None } else { telemetry::wire::first_ede(response) };
        if let Some(code) = ede {
            self.metrics.ede(code);
        }
        // The answer's first EDE for the observatory and the query log,
        // read once (a cached answer's was not read above).
        let answer_ede = match (cached, self.observatory.is_some() || (self.log && self.writer.is_some())) {
            (true, true) => telemetry::wire::first_ede(response),
            _ => ede,
        };
        if let Some(o) = &self.observatory {
            let ede = answer_ede;
            o.record(client.addr, door_index(client.door) as u8, rcode, ede);
            if (rcode == 2 || matches!(ede, Some(22 | 23)))
                && let Some((qname, _)) = question
            {
                o.record_failure(qname);
            }
        }
        let Some((qname, _)) = question else { return };
        if let Some(w) = &self.writer {
            let ts_ms = now().as_millis() as u64;
            if self.log {
                let rec = LogRecord {
                    ts_ms,
                    client: if self.drop_client { None } else { Some(truncate(client.addr)) },
                    door: client.door.as_str(),
                    profile: self.profiles.get(profile as usize).cloned().unwrap_or_default(),
                    qname: proto::Name::from_wire(qname).map(|n| n.to_string()).unwrap_or_default(),
                    qtype,
                    rcode,
                    ede: answer_ede,
                };
                if !w.send(Record::Log(rec)) {
                    self.metrics.dropped_record();
                }
            }
            if telemetry::sampled(self.sample_rate) {
                let rec = SampleRecord {
                    ts_ms,
                    client: client.addr,
                    door: client.door.as_str(),
                    query: query.to_vec(),
                    response: response.to_vec(),
                };
                if !w.send(Record::Sample(rec)) {
                    self.metrics.dropped_record();
                }
            }
        }
        if let Some((r, dir)) = &self.research
            && let Some(export) = r.record(now().as_secs(), qname, client.addr)
        {
            let (dir, vault) = (dir.clone(), self.vault.clone());
            std::thread::spawn(move || write_export(&dir, &export, vault.as_ref()));
        }
    }
}

/// Opens the observatory's databases (a broken one is logged and every
/// address counts as unknown: the node serves either way) and its store,
/// and starts its writer.
fn start_observatory(
    obs: &ObservatoryConfig,
    dir: &std::path::Path,
) -> anyhow::Result<(Arc<observatory::Observatory>, observatory::Writer)> {
    let (geo, err) = observatory::open_geo(obs.country_db.as_deref(), obs.asn_db.as_deref());
    match err {
        Some(e) => tracing::error!(error = %e, "observatory: every address counts as unknown until this is mended"),
        None if geo.is_empty() => {
            tracing::warn!("observatory: no country_db or asn_db, every address counts as unknown")
        }
        None => tracing::info!(?geo, "observatory databases loaded"),
    }
    let clock = observatory::system_clock();
    let o = Arc::new(observatory::Observatory::new(geo, obs.cells, clock()));
    let doors = Door::ALL.iter().map(|d| d.as_str().to_string()).collect();
    let store =
        observatory::store::Store::open(dir, doors, obs.retention_days * 86_400, obs.rollup_retention_days * 86_400)?;
    let fleet = obs.clickhouse.as_ref().map(|c| c.client()).transpose()?;
    let w = observatory::Writer::start(o.clone(), store, clock, fleet);
    Ok((o, w))
}

fn write_export(dir: &std::path::Path, export: &telemetry::research::DayExport, vault: Option<&seal::Vault>) {
    match telemetry::research::write(dir, export, vault) {
        Ok((csv, _)) => tracing::info!(file = %csv.display(), names = export.rows.len(), "research export written"),
        Err(e) => tracing::error!(dir = %dir.display(), error = %e, "research export not written"),
    }
}
