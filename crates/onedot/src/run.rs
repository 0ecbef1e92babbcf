//! Wiring: a config becomes a service behind doors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use doors::{BoxFuture, Client, Fast, Framing, Handler, InFlight, TcpLimits};
use recursor::{FastPath, NetTransport, Recursor, Service, SystemClock, TransportKind};

use crate::observe::Observer;
use tokio::task::JoinSet;

use crate::config::Config;

/// The pipeline as the doors see it: the service under one filtering
/// profile, and what telemetry is told of each answer.
struct Pipeline {
    service: Arc<Service>,
    profile: u8,
    observer: Arc<Observer>,
    /// Hand the client's network to the recursor (EDNS Client Subnet on).
    ecs: bool,
}

/// The client's network for EDNS Client Subnet: /24 or /56.
fn ecs_network(addr: std::net::IpAddr) -> (std::net::IpAddr, u8) {
    let net = telemetry::truncate(addr);
    (net, if net.is_ipv4() { 24 } else { 56 })
}

/// A forwarder reached over an encrypted transport.
struct EncryptedUpstream {
    client: Arc<doors::client::EncryptedClient>,
    how: doors::client::Encrypted,
    target: doors::client::Target,
}

/// RESOLVER_QUERY and RESOLVER_RESPONSE to dnstap.
struct UpstreamTap(Arc<telemetry::dnstap::Dnstap>);

impl recursor::UpstreamTap for UpstreamTap {
    fn exchange(
        &self,
        server: SocketAddr,
        tcp: bool,
        sent: std::time::SystemTime,
        query: &[u8],
        response: Option<&[u8]>,
    ) {
        use telemetry::dnstap::{Event, Kind, Protocol};
        let kind = if response.is_some() { Kind::ResolverResponse } else { Kind::ResolverQuery };
        self.0.emit(&Event {
            kind,
            protocol: if tcp { Protocol::Tcp } else { Protocol::Udp },
            http: None,
            query_address: None,
            response_address: Some(server),
            query_time: sent,
            query: Some(query),
            response_time: response.map(|_| std::time::SystemTime::now()),
            response,
        });
    }
}

/// The recursor's transport: Do53, or the encrypted transport of a forward
/// zone's server; timed for the upstream latency histogram.
struct TimedTransport {
    inner: NetTransport,
    encrypted: std::collections::HashMap<SocketAddr, EncryptedUpstream>,
    observer: Arc<Observer>,
}

impl TimedTransport {
    async fn encrypted(
        &self,
        e: &EncryptedUpstream,
        q: &recursor::UpstreamQuery,
    ) -> Result<proto::Message, recursor::TransportError> {
        use recursor::TransportError;
        let id: u16 = rand::random();
        let mut wire = Vec::with_capacity(64);
        proto::build::build_query(&mut wire, id, q.qname.as_wire(), q.qtype, q.recursion_desired, q.edns, q.dnssec_ok);
        let resp = e.client.exchange(e.how, &e.target, &wire, q.timeout).await.map_err(|err| match err {
            doors::client::ClientError::Timeout => TransportError::Timeout,
            other => TransportError::Network(other.to_string()),
        })?;
        let msg = proto::Message::parse(&resp).map_err(|_| TransportError::Malformed)?;
        let same_question = msg.question.as_ref().is_some_and(|x| x.name == q.qname && x.qtype == q.qtype);
        if msg.id != id || !same_question {
            return Err(TransportError::Malformed);
        }
        Ok(msg)
    }
}

impl recursor::Transport for TimedTransport {
    fn query(&self, q: recursor::UpstreamQuery) -> BoxFuture<'_, Result<proto::Message, recursor::TransportError>> {
        Box::pin(async move {
            let start = std::time::Instant::now();
            let r = match self.encrypted.get(&q.server) {
                Some(e) => self.encrypted(e, &q).await,
                None => self.inner.query(q).await,
            };
            self.observer.metrics.upstream(start.elapsed().as_micros() as u64);
            r
        })
    }
}

/// The ODoH roles of the DoH doors, if any.
fn oblivious(config: &Config) -> anyhow::Result<Option<Arc<doors::odoh::Oblivious>>> {
    let s = &config.server;
    if !s.odoh_target && s.odoh_relay_targets.is_empty() {
        return Ok(None);
    }
    let targets = s
        .odoh_relay_targets
        .iter()
        .map(|t| doors::odoh::RelayTarget {
            host: t.host.clone(),
            addr: t.address,
            tls_name: t
                .tls_name
                .clone()
                .unwrap_or_else(|| t.host.rsplit_once(':').map_or(&*t.host, |(h, _)| h).to_string()),
        })
        .collect::<Vec<_>>();
    let verify = if targets.is_empty() {
        doors::client::Verify::default()
    } else {
        crate::client_verify(s.odoh_relay_ca_file.clone(), &[], false).context("ODoH relay")?
    };
    Ok(Some(Arc::new(doors::odoh::Oblivious::new(s.odoh_target, targets, &verify).context("ODoH")?)))
}

/// The encrypted forwarders of `config`, by address.
fn encrypted_upstreams(config: &Config) -> anyhow::Result<std::collections::HashMap<SocketAddr, EncryptedUpstream>> {
    let mut out = std::collections::HashMap::new();
    for z in &config.forward_zones {
        let Some(how) = z.encrypted()? else { continue };
        let verify = crate::client_verify(z.ca_file.clone(), &z.spki_pins, false)
            .with_context(|| format!("forward zone {:?}", z.name))?;
        let client = Arc::new(
            doors::client::EncryptedClient::new(&verify).with_context(|| format!("forward zone {:?}", z.name))?,
        );
        for server in &z.servers {
            let target = doors::client::Target {
                addr: *server,
                name: z.tls_name.clone().unwrap_or_else(|| server.ip().to_string()),
                path: z.path.clone().unwrap_or_else(|| "/dns-query".to_string()),
            };
            out.insert(*server, EncryptedUpstream { client: client.clone(), how, target });
        }
    }
    Ok(out)
}

fn kind(f: Framing) -> TransportKind {
    match f {
        Framing::Datagram => TransportKind::Datagram,
        Framing::Stream => TransportKind::Stream,
        Framing::EncryptedStream => TransportKind::EncryptedStream,
    }
}

impl Handler for Pipeline {
    fn try_fast(&self, query: &[u8], client: Client, out: &mut Vec<u8>) -> Fast {
        match self.service.try_fast_in(query, kind(client.door.framing()), self.profile, out) {
            FastPath::Answered(n) => {
                self.observer.observe(client, self.profile, query, &out[..n], true);
                Fast::Answered(n)
            }
            FastPath::Miss => Fast::Miss,
            FastPath::Drop => Fast::Drop,
        }
    }

    fn answer<'a>(&'a self, query: &'a [u8], client: Client, out: &'a mut Vec<u8>) -> BoxFuture<'a, Option<usize>> {
        let framing = client.door.framing();
        Box::pin(async move {
            // A panic while answering one query is contained to that query:
            // it is counted in the log and answered with nothing (the client
            // retries), never taking the process down.
            let (svc, profile) = (self.service.clone(), self.profile);
            let ecs = self.ecs.then(|| ecs_network(client.addr));
            let q = query.to_vec();
            let task = tokio::spawn(async move {
                let mut buf = Vec::with_capacity(1232);
                let n = svc.answer_for(&q, kind(framing), profile, ecs, &mut buf).await;
                n.map(|n| {
                    buf.truncate(n);
                    buf
                })
            });
            match task.await {
                Ok(Some(bytes)) => {
                    self.observer.observe(client, profile, query, &bytes, false);
                    out.clear();
                    out.extend_from_slice(&bytes);
                    Some(bytes.len())
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "query task failed; answering SERVFAIL");
                    servfail_for(query, out)
                }
            }
        })
    }
}

/// A bare SERVFAIL echoing the question, for a query whose task died.
fn servfail_for(query: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let view = proto::QueryView::parse(query).ok()?;
    out.clear();
    let fl = proto::flags::QR | proto::flags::RA | (view.flags & proto::flags::RD) | proto::Rcode::ServFail as u16;
    let mut w = proto::MessageWriter::new(out, view.id, fl);
    w.question(view.qname, view.qtype, view.qclass);
    Some(w.finish())
}

/// A running resolver.
pub struct Running {
    /// Bound addresses: (udp, tcp) per listen address.
    pub bound: Vec<(SocketAddr, SocketAddr)>,
    /// Bound DoT addresses.
    pub dot: Vec<SocketAddr>,
    /// Bound DoH addresses.
    pub doh: Vec<SocketAddr>,
    /// Bound DoQ addresses (UDP).
    pub doq: Vec<SocketAddr>,
    /// Per filtering profile other than the default: its name, bound
    /// (udp, tcp) pairs, DoT addresses and DoH paths.
    pub profiles: Vec<ProfileDoors>,
    /// The bound web listener.
    pub web: Option<SocketAddr>,
    policy: Arc<policy::Policy>,
    policy_state: Option<StateFile>,
    observer: Arc<Observer>,
    tasks: JoinSet<()>,
    inflight: InFlight,
    /// The control socket (and its inode), removed at shutdown unless a
    /// successor has put its own there.
    pub control: Option<(std::path::PathBuf, u64)>,
    snapshots: Arc<crate::persist::Snapshots>,
    handed_over: Arc<tokio::sync::Notify>,
    /// The AF_XDP fast path, when `server.xdp` set it up.
    xdp: Option<doors::xdp::XdpDoor>,
}

/// Why serving stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM or SIGINT.
    Signal,
    /// A successor took the sockets over (`serve --takeover`).
    HandedOver,
}

impl Running {
    /// Serves until a signal or a successor's takeover.
    pub async fn until_stopped(&self) -> Stop {
        tokio::select! {
            _ = until_signal() => Stop::Signal,
            _ = self.handed_over.notified() => Stop::HandedOver,
        }
    }

    /// Stops accepting, lets in-flight queries finish (at most `grace`),
    /// and, unless a successor has them, writes the cache snapshot.
    pub async fn shutdown(mut self, grace: Duration, why: Stop) {
        // The program is detached first: what is still in flight is
        // answered from the sockets.
        drop(self.xdp.take());
        self.tasks.abort_all();
        self.inflight.drain(grace).await;
        if why == Stop::Signal {
            let snapshots = self.snapshots.clone();
            let _ = tokio::task::spawn_blocking(move || snapshots.dump_at_exit()).await;
            // After a takeover the successor keeps the transparency log's
            // state; this process does not write over it.
            save_policy_state(&self.policy, self.policy_state.as_ref());
        }
        self.observer.close();
        if let Some((path, ino)) = &self.control {
            use std::os::unix::fs::MetadataExt;
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The doors of one filtering profile.
#[derive(Debug, Clone)]
pub struct ProfileDoors {
    /// The profile.
    pub name: String,
    /// Bound Do53 (udp, tcp) pairs.
    pub bound: Vec<(SocketAddr, SocketAddr)>,
    /// Bound DoT addresses.
    pub dot: Vec<SocketAddr>,
    /// Its paths on the DoH listeners.
    pub doh_paths: Vec<String>,
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The data keys of a keyless edge: asked for now (within the client's
/// deadline) and then kept fresh by a task: every five seconds while none
/// is held (the stores stay shut meanwhile), then every quarter of the
/// rotation period (at most an hour), so a new epoch is held before it
/// seals anything.
async fn unlock_vault(client: keyless::KeylessClient, tasks: &mut JoinSet<()>) -> seal::Vault {
    let vault = seal::Vault::locked();
    let fetch = {
        let (client, vault) = (client.clone(), vault.clone());
        move || -> Option<u32> {
            match client.data_keys() {
                Ok((rotation, keys)) => {
                    let keys: Vec<seal::DataKey> =
                        keys.into_iter().map(|(epoch, key)| seal::DataKey { epoch, key }).collect();
                    let first = !vault.is_unlocked();
                    vault.replace(&keys);
                    if first {
                        tracing::info!(epochs = ?vault.epochs(), "data keys held: the data directory is sealed under them");
                    }
                    Some(rotation)
                }
                Err(e) => {
                    if !vault.is_unlocked() {
                        tracing::error!(error = %e, "no data keys from the key servers: nothing is written to disk until they answer");
                    }
                    None
                }
            }
        }
    };
    let fetch = Arc::new(fetch);
    let f = fetch.clone();
    let mut rotation = tokio::task::spawn_blocking(move || f()).await.ok().flatten();
    tasks.spawn(async move {
        loop {
            let wait = match rotation {
                Some(r) => Duration::from_secs(u64::from(r / 4).clamp(60, 3600)),
                None => Duration::from_secs(5),
            };
            tokio::time::sleep(wait).await;
            let f = fetch.clone();
            if let Ok(r) = tokio::task::spawn_blocking(move || f()).await {
                rotation = r.or(rotation);
            }
        }
    });
    vault
}

/// The transparency log's state file, sealed on a keyless edge.
#[derive(Debug, Clone)]
struct StateFile {
    path: std::path::PathBuf,
    vault: Option<seal::Vault>,
}

/// Restores the transparency log from its state file; a file that cannot
/// be read is reported and moved aside (never overwritten unread). A sealed
/// file without its data key is left alone: the log starts afresh.
fn restore_policy_state(policy: &policy::Policy, state: &StateFile) {
    let path = &state.path;
    let text = match seal::read_file(path, state.vault.as_ref()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(seal::SealError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(seal::SealError::Locked) => {
            tracing::error!(file = %path.display(), "transparency state sealed and no data key yet; starting a new log");
            return;
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "transparency state unreadable");
            return;
        }
    };
    if let Err(e) = policy.restore_state(&text) {
        let aside = path.with_extension("corrupt");
        tracing::error!(file = %path.display(), error = %e, moved_to = %aside.display(), "transparency state unusable; starting a new log");
        let _ = std::fs::rename(path, &aside);
    }
}

fn save_policy_state(policy: &policy::Policy, state: Option<&StateFile>) {
    if let Some(s) = state
        && let Err(e) = seal::write_file(&s.path, policy.save_state(unix_now()).as_bytes(), s.vault.as_ref())
    {
        tracing::error!(file = %s.path.display(), error = %e, "transparency state not saved");
    }
}

/// Re-reads changed sources every `watch`, every source every `full`, and
/// every source on SIGHUP; logs what changed and what failed (the old
/// version keeps serving); saves the transparency log to `state` after
/// changes and every minute.
fn spawn_policy_reload(
    policy: Arc<policy::Policy>,
    watch: Duration,
    full: Duration,
    state: Option<StateFile>,
    tasks: &mut JoinSet<()>,
) {
    // Installed now, before the caller reports the server ready, so an
    // early SIGHUP is never the default (terminating) action.
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    tasks.spawn(async move {
        let mut last_save = tokio::time::Instant::now();
        let mut last_full = tokio::time::Instant::now();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let force = tokio::select! {
                _ = tokio::time::sleep(watch) => last_full.elapsed() >= full,
                _ = hangup => { tracing::info!("SIGHUP: re-reading every filter source"); true }
            };
            if force {
                last_full = tokio::time::Instant::now();
            }
            let p = policy.clone();
            let Ok(report) = tokio::task::spawn_blocking(move || p.reload(unix_now(), force)).await else { continue };
            for name in &report.changed {
                tracing::info!(source = %name, "filter source reloaded");
            }
            for (name, e) in &report.failed {
                tracing::error!(source = %name, error = %e, "filter source not reloaded; the previous version serves");
            }
            let changed = !report.changed.is_empty() || !report.failed.is_empty();
            if changed || last_save.elapsed() >= Duration::from_secs(60) {
                last_save = tokio::time::Instant::now();
                let (p, s) = (policy.clone(), state.clone());
                let _ = tokio::task::spawn_blocking(move || save_policy_state(&p, s.as_ref())).await;
            }
        }
    });
}

/// Re-opens the observatory's databases on SIGHUP (a new GeoLite2 or
/// ip-location-db release); a file that fails to open leaves the old
/// databases counting.
fn spawn_observatory_reload(
    o: Arc<observatory::Observatory>,
    config: crate::config::ObservatoryConfig,
    tasks: &mut JoinSet<()>,
) {
    #[cfg(unix)]
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
    #[cfg(unix)]
    tasks.spawn(async move {
        while hup.recv().await.is_some() {
            let (o, c) = (o.clone(), config.clone());
            let _ = tokio::task::spawn_blocking(move || reopen_geo(&o, &c)).await;
        }
    });
}

/// Re-opens the observatory's databases (blocking); a file that fails to
/// open leaves the old databases counting, and is the error.
pub(crate) fn reopen_geo(
    o: &observatory::Observatory,
    c: &crate::config::ObservatoryConfig,
) -> Result<(), observatory::ObservatoryError> {
    match observatory::GeoDb::open(c.country_db.as_deref(), c.asn_db.as_deref()) {
        Ok(geo) => {
            tracing::info!(?geo, "observatory databases reloaded");
            o.set_geo(geo);
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "observatory databases not reloaded; the old ones count");
            Err(e)
        }
    }
}

/// The feeds among the filter sources (those with a `url`).
fn feeds_of(config: &Config) -> anyhow::Result<Vec<crate::feeds::Feed>> {
    config.policy.sources.iter().filter_map(|s| crate::feeds::Feed::of(s).transpose()).collect()
}

/// Feed host names resolved by our own recursor (A and AAAA).
fn resolver_for_feeds(recursor: &Recursor) -> crate::feeds::Resolve {
    let r = recursor.clone();
    Arc::new(move |host: String| {
        let r = r.clone();
        Box::pin(async move {
            let Ok(name) = proto::Name::from_ascii(&host) else { return Vec::new() };
            let mut out = Vec::new();
            for t in [proto::rtype::A, proto::rtype::AAAA] {
                let Ok(res) = r.resolve(&name, t).await else { continue };
                for rec in res.answer.iter().filter(|rec| rec.rtype == t) {
                    match rec.rdata.len() {
                        4 => out.push(std::net::IpAddr::from(<[u8; 4]>::try_from(&rec.rdata[..]).unwrap_or_default())),
                        16 => {
                            out.push(std::net::IpAddr::from(<[u8; 16]>::try_from(&rec.rdata[..]).unwrap_or_default()))
                        }
                        _ => {}
                    }
                }
            }
            out
        })
    })
}

/// The number of workers a config asks for.
pub fn workers(config: &Config) -> usize {
    match config.server.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Starts the service and its doors. Must run inside a tokio runtime.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    start_with(config, None, false).await
}

/// [`start`] taking over from a running onedot (`takeover`): its cache
/// snapshot is read from `snapshot` instead of the configured file, and
/// its control socket is replaced once every door is up.
pub async fn start_with(
    config: &Config,
    snapshot: Option<&std::path::Path>,
    takeover: bool,
) -> anyhow::Result<Running> {
    let rc = config.recursor()?;
    let policy = Arc::new(config.policy()?);
    let mut tasks = JoinSet::new();
    // A keyless edge: the key servers sign its handshakes and give the data
    // keys that seal everything it writes.
    let keyless_client = match &config.server.keyless {
        Some(k) => Some(keyless::KeylessClient::start(k.client_config()?).context("server.keyless")?),
        None => None,
    };
    let vault = match &keyless_client {
        Some(client) => Some(unlock_vault(client.clone(), &mut tasks).await),
        None => None,
    };
    let state_file = config.policy.state_file.clone().map(|path| StateFile { path, vault: vault.clone() });
    let observer = Arc::new(
        Observer::start(&config.telemetry, &config.observatory, &config.dnstap, policy.profile_names(), vault.clone())
            .context("telemetry")?,
    );
    observer.spawn_ticker(&mut tasks);
    if let Some(o) = &observer.observatory {
        spawn_observatory_reload(o.clone(), config.observatory.clone(), &mut tasks);
    }
    let transport = TimedTransport {
        inner: NetTransport {
            bind_v4: rc.outgoing_v4,
            bind_v6: rc.outgoing_v6,
            tap: observer.dnstap.clone().map(|t| recursor::Tap(Arc::new(UpstreamTap(t)))),
        },
        encrypted: encrypted_upstreams(config)?,
        observer: observer.clone(),
    };
    let clock = Arc::new(SystemClock);
    let anchors = rc.validation.as_ref().map(|v| v.trust_anchors.clone());
    let recursor = Recursor::new(rc, Arc::new(transport), clock.clone());
    let loaded = std::time::Instant::now();
    if let Some(state) = &state_file {
        restore_policy_state(&policy, state);
    }
    // List feeds: one without a copy yet is fetched before the lists load.
    let list_feeds = feeds_of(config)?;
    let resolve = resolver_for_feeds(&recursor);
    let first: Vec<crate::feeds::Feed> = list_feeds.iter().filter(|f| !f.path().exists()).cloned().collect();
    crate::feeds::fetch_all(&first, &resolve, &policy, unix_now()).await;
    policy.load_all(unix_now()).context("loading the filter sources")?;
    save_policy_state(&policy, state_file.as_ref());
    if !config.policy.sources.is_empty() {
        tracing::info!(
            sources = config.policy.sources.len(),
            bytes = policy.heap_bytes(),
            ms = loaded.elapsed().as_millis() as u64,
            "filter sources loaded"
        );
    }
    let service =
        Arc::new(Service::new(recursor.clone(), config.service()?, clock.clone()).with_policy(policy.clone()));
    if config.cache.prefetch {
        tasks.spawn(service.clone().run_prefetch());
    }
    let snapshots = Arc::new(crate::persist::Snapshots::new(config, service.clone(), policy.clone(), vault.clone())?);
    {
        let (snapshots, snapshot) = (snapshots.clone(), snapshot.map(std::path::Path::to_path_buf));
        tokio::task::spawn_blocking(move || snapshots.load_at_start(snapshot.as_deref())).await?;
    }
    let handed_over = Arc::new(tokio::sync::Notify::new());
    let inflight = InFlight::default();
    let admission = doors::Admission::new(config.limits.admission(config.server.max_udp_payload)?, inflight.clone());
    let handler_for = |profile: &str| -> Arc<dyn Handler> {
        admission.wrap(Arc::new(Pipeline {
            service: service.clone(),
            profile: policy.profile_id(profile).unwrap_or(0),
            observer: observer.clone(),
            ecs: config.telemetry.ecs,
        }))
    };
    let handler = handler_for(&config.policy.default_profile);
    let proxy = doors::ProxyTrust::new(config.server.proxy_networks()?);
    let limits: TcpLimits = config.limits.tcp();
    // RFC 5011: anchors from the state file (or as configured), probed on
    // an interval.
    if let (Some(path), Some(configured)) = (&config.dnssec.trust_anchor_state, anchors) {
        use recursor::Clock;
        let (managed, err) = recursor::ManagedAnchors::load_sealed(path, &configured, clock.now_unix(), vault.clone());
        if let Some(e) = err {
            tracing::error!(error = %e, "trust anchor state unusable; using the configured anchors");
        }
        recursor.set_trust_anchors(managed.current());
        let interval = Duration::from_secs(config.dnssec.probe_interval_s.max(60));
        let r = recursor.clone();
        tasks.spawn(async move {
            loop {
                match r.probe_trust_anchors(&managed).await {
                    Ok(changes) => {
                        for c in changes {
                            tracing::info!(key_tag = c.tag, state = c.state.as_str(), "trust anchor changed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "trust anchor state not saved"),
                }
                tokio::time::sleep(interval).await;
            }
        });
    }
    let mut bound = Vec::new();
    for addr in &config.server.listen {
        let port = doors::serve_do53(
            *addr,
            workers(config),
            limits,
            proxy.clone(),
            handler.clone(),
            inflight.clone(),
            &mut tasks,
        )
        .await
        .with_context(|| format!("Do53 listener {addr}"))?;
        tracing::info!(udp = %port, tcp = %port, "listening");
        bound.push((port, port));
    }
    let xdp = config.server.xdp.as_ref().and_then(|x| {
        let port = x.port.or_else(|| bound.first().map(|(u, _)| u.port()))?;
        let mode = x.mode().ok()?;
        match doors::xdp::serve_xdp(&x.interface, mode, port, handler.clone(), inflight.clone()) {
            Ok(door) => {
                tracing::info!(interface = %x.interface, port, mode = ?door.mode, queues = door.queues, "AF_XDP fast path on");
                Some(door)
            }
            Err(e) => {
                tracing::warn!(interface = %x.interface, error = %e, "AF_XDP fast path not set up; Do53 is served on sockets alone");
                None
            }
        }
    });
    let mut profiles = Vec::new();
    for p in &config.policy.profiles {
        let h = handler_for(&p.name);
        let mut doors =
            ProfileDoors { name: p.name.clone(), bound: Vec::new(), dot: Vec::new(), doh_paths: p.doh_paths.clone() };
        for addr in &p.listen {
            let port = doors::serve_do53(
                *addr,
                workers(config),
                limits,
                proxy.clone(),
                h.clone(),
                inflight.clone(),
                &mut tasks,
            )
            .await
            .with_context(|| format!("Do53 listener {addr} (profile {})", p.name))?;
            tracing::info!(udp = %port, tcp = %port, profile = %p.name, "listening");
            doors.bound.push((port, port));
        }
        profiles.push(doors);
    }
    crate::feeds::spawn(
        list_feeds,
        resolve,
        policy.clone(),
        Duration::from_secs(config.policy.reload_interval_s.max(1)),
        &mut tasks,
    );
    spawn_policy_reload(
        policy.clone(),
        Duration::from_secs(config.policy.watch_interval_s.max(1)),
        Duration::from_secs(config.policy.reload_interval_s.max(1)),
        state_file.clone(),
        &mut tasks,
    );
    let help = config.web.help.then(|| Arc::new(crate::help::Help::new(config, service.clone(), policy.clone())));
    let (mut dot, mut doh, mut doq) = (Vec::new(), Vec::new(), Vec::new());
    let wants_tls = !config.server.dot_listen.is_empty()
        || !config.server.doh_listen.is_empty()
        || !config.server.doq_listen.is_empty();
    let identity = match (&config.server.tls_certificate, &config.server.tls_private_key, &keyless_client) {
        (Some(cert), _, Some(client)) if wants_tls => {
            // A keyless edge: the chain is here, its key at the key servers.
            let key_for: doors::RemoteKey = {
                let client = client.clone();
                Arc::new(move |cert| {
                    keyless::KeylessKey::for_certificate(&client, cert)
                        .map(|k| k as Arc<dyn rustls::sign::SigningKey>)
                        .map_err(|e| e.to_string())
                })
            };
            let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let store = doors::CertStore::remote(&cert_pem, &key_for)
                .with_context(|| format!("TLS certificate {} (keyless)", cert.display()))?;
            store.watch_remote(cert.clone(), key_for, Duration::from_secs(5), &mut tasks);
            tracing::info!("keyless edge: TLS signatures come from the key servers");
            Some(store)
        }
        (Some(cert), Some(key), None) if wants_tls => {
            let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key_pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            let store = doors::CertStore::from_pem(&cert_pem, &key_pem)
                .with_context(|| format!("TLS identity {} / {}", cert.display(), key.display()))?;
            store.watch(cert.clone(), key.clone(), Duration::from_secs(5), &mut tasks);
            Some(store)
        }
        _ => None,
    };
    match identity {
        Some(store) => {
            let dot_tls = doors::tls_config_from_store(store.clone(), &[b"dot"])?;
            for addr in &config.server.dot_listen {
                let bound = doors::serve_dot(
                    *addr,
                    dot_tls.clone(),
                    limits,
                    proxy.clone(),
                    handler.clone(),
                    inflight.clone(),
                    &mut tasks,
                )
                .await
                .with_context(|| format!("DoT listener {addr}"))?;
                tracing::info!(dot = %bound, "listening");
                dot.push(bound);
            }
            for (p, doors) in config.policy.profiles.iter().zip(profiles.iter_mut()) {
                for addr in &p.dot_listen {
                    let h = handler_for(&p.name);
                    let bound = doors::serve_dot(
                        *addr,
                        dot_tls.clone(),
                        limits,
                        proxy.clone(),
                        h,
                        inflight.clone(),
                        &mut tasks,
                    )
                    .await
                    .with_context(|| format!("DoT listener {addr} (profile {})", p.name))?;
                    tracing::info!(dot = %bound, profile = %p.name, "listening");
                    doors.dot.push(bound);
                }
            }
            let doq_tls = doors::tls13_config_from_store(store.clone(), &[b"doq"])?;
            for addr in &config.server.doq_listen {
                let bound =
                    doors::serve_doq(*addr, doq_tls.clone(), limits, handler.clone(), inflight.clone(), &mut tasks)
                        .await
                        .with_context(|| format!("DoQ listener {addr}"))?;
                tracing::info!(doq = %bound, "listening");
                doq.push(bound);
            }
            let doh_tls = doors::tls_config_from_store(store.clone(), &[b"h2", b"http/1.1"])?;
            // One path per profile on the same listeners.
            let mut routes: Vec<(String, Arc<dyn Handler>)> =
                config.server.doh_paths.iter().map(|p| (p.clone(), handler.clone())).collect();
            for p in &config.policy.profiles {
                routes.extend(p.doh_paths.iter().map(|path| (path.clone(), handler_for(&p.name))));
            }
            let pages = help.clone().map(|help| -> doors::Pages {
                Arc::new(move |page: doors::PageRequest| {
                    let help = help.clone();
                    Box::pin(async move {
                        let at = crate::help::Arrival {
                            client: page.client.addr,
                            encrypted: true,
                            http: page.http,
                            door: if page.http == 3 { "DNS over HTTPS (HTTP/3)" } else { "DNS over HTTPS" },
                        };
                        help.respond(&page.method, &page.path, page.query.as_deref(), page.body.as_deref(), at).await
                    })
                })
            });
            let routes = doors::DohSite { routes, odoh: oblivious(config)?, pages };
            let h3_tls = doors::tls13_config_from_store(store.clone(), &[b"h3"])?;
            let h3 = config.server.doh3;
            for addr in &config.server.doh_listen {
                let bound = doors::serve_doh(
                    *addr,
                    doh_tls.clone(),
                    routes.clone(),
                    limits,
                    proxy.clone(),
                    h3,
                    inflight.clone(),
                    &mut tasks,
                )
                .await
                .with_context(|| format!("DoH listener {addr}"))?;
                tracing::info!(doh = %bound, "listening");
                doh.push(bound);
                if h3 {
                    // HTTP/3 on the same port over UDP, advertised by Alt-Svc.
                    let udp =
                        doors::serve_doh3(bound, h3_tls.clone(), routes.clone(), limits, inflight.clone(), &mut tasks)
                            .await
                            .with_context(|| format!("DoH over HTTP/3 listener {bound}"))?;
                    tracing::info!(doh3 = %udp, "listening");
                }
            }
        }
        None if wants_tls => {
            tracing::info!(
                "DoT, DoH and DoQ are off: set server.tls_certificate and server.tls_private_key (or server.keyless) to turn them on"
            );
        }
        None => {}
    }
    let ctl = Arc::new(crate::control::Control {
        service: service.clone(),
        policy: policy.clone(),
        observer: observer.clone(),
        inflight: inflight.clone(),
        started: std::time::Instant::now(),
        snapshots: snapshots.clone(),
        handed_over: handed_over.clone(),
        path: config.control.socket.clone().unwrap_or_default(),
        config: std::sync::Mutex::new(config.clone()),
    });
    let pending_control = match &config.control.socket {
        Some(path) => Some(crate::control::serve(path, ctl.clone(), &mut tasks, takeover).await?),
        None => None,
    };
    if let Some(addr) = config.control.tcp {
        let key: Arc<[u8]> = config.control.key()?.into();
        let bound = crate::control::serve_tcp(addr, key, ctl, &mut tasks).await?;
        tracing::info!(control_tcp = %bound, "listening");
    }
    // Last, so that a ready web listener means every door is up.
    let web = match config.web.address() {
        Some(addr) => {
            let state = Arc::new(crate::web::WebState {
                policy: policy.clone(),
                observer: observer.clone(),
                service: service.clone(),
                admission: admission.clone(),
                commitments: config.telemetry.commitments(),
                keyless: keyless_client.clone(),
                help: help.clone(),
                observatory: match (&config.telemetry.data_dir, &observer.observatory) {
                    (Some(dir), Some(_)) => Some(crate::observatory_web::ObservatoryWeb {
                        data_dir: dir.clone(),
                        k: config.observatory.k,
                        thresholds: config.observatory.detect,
                        assets_dir: config.observatory.assets_dir.clone(),
                        fleet: config.observatory.clickhouse.as_ref().map(|c| c.client()).transpose()?,
                    }),
                    _ => None,
                },
            });
            let bound = crate::web::serve(addr, state, &mut tasks).await?;
            Some(bound)
        }
        None => None,
    };
    if let Some(target) = &config.server.ddr_target
        && (!dot.is_empty() || !doh.is_empty() || !doq.is_empty())
    {
        let target = proto::Name::from_ascii(target).map_err(|e| anyhow::anyhow!("server.ddr_target: {e}"))?;
        let path = config.server.doh_paths.first().map_or("/dns-query", String::as_str);
        service.add_local_records(crate::ddr::records(&target, &dot, &doh, &doq, path, config.server.doh3));
    }
    let policy_state = state_file;
    // The control socket moves into place once every door is up (a
    // predecessor's is replaced only now); then the web listener is
    // announced, the line that says this node is ready.
    let control = match pending_control {
        Some(p) => {
            let (path, ino) = p.publish()?;
            tracing::info!(control = %path.display(), "listening");
            Some((path, ino))
        }
        None => None,
    };
    if let Some(bound) = web {
        tracing::info!(web = %bound, "listening");
    }
    for (kind, addr) in doors::inherit::close_unclaimed() {
        tracing::warn!(kind = kind.as_str(), %addr, "an inherited socket the configuration no longer listens on is closed");
    }
    Ok(Running {
        bound,
        dot,
        doh,
        doq,
        profiles,
        web,
        policy,
        policy_state,
        observer,
        tasks,
        inflight,
        control,
        snapshots,
        handed_over,
        xdp,
    })
}

/// Waits for SIGINT or SIGTERM.
pub async fn until_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
