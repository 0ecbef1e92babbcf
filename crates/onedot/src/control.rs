//! `onedot ctl`: the local control socket. A Unix socket (mode 0600, so
//! only the service's user and root reach it) taking one JSON line per
//! request, `{"cmd": "flush", "args": ["example.com", "A"]}`, and
//! answering one JSON line, `{"ok": true, "result": ...}` or
//! `{"ok": false, "error": "..."}`. Nothing it answers holds a client
//! address.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinSet;

/// The commands, as `onedot ctl help` lists them.
pub const COMMANDS: &[(&str, &str)] = &[
    ("status", "version, uptime, queries in flight, cache sizes, profiles"),
    ("stats", "every counter of /metrics (--json: name{labels} -> value)"),
    ("flush NAME [TYPE]", "drop NAME (one type, or all) from both caches"),
    ("flush-zone NAME", "drop NAME and everything below it"),
    ("flush-all", "empty both caches"),
    ("flush-negative", "drop NXDOMAIN and NODATA answers"),
    ("flush-bogus", "drop cached failures and RRsets that failed validation"),
    ("lists-reload", "re-read every filter source now"),
    ("log-level FILTER", "set the log filter (info, debug, onedot=debug,...)"),
    ("inflight", "queries in flight and the questions being resolved"),
    ("nta add|remove|list [NAME]", "negative trust anchors while running (the subtree is flushed)"),
    ("reload", "re-read the config file: lists and observatory databases now, the rest named (needs a restart)"),
    ("dump-cache [FILE]", "write both caches to FILE (default cache.snapshot_file)"),
    ("load-cache [FILE]", "read a snapshot into the caches (TTLs aged by the time passed)"),
];

/// Sets the process's log filter (installed by `main`).
type LogFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;
static LOG_FILTER: OnceLock<LogFilter> = OnceLock::new();

/// Installs the function `log-level` calls.
pub fn set_log_filter(f: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = LOG_FILTER.set(Box::new(f));
}

/// What the control socket acts on.
pub struct Control {
    /// The answer service (caches, recursor).
    pub service: Arc<recursor::Service>,
    /// The filtering policy.
    pub policy: Arc<policy::Policy>,
    /// Metrics.
    pub observer: Arc<crate::observe::Observer>,
    /// Queries in flight.
    pub inflight: doors::InFlight,
    /// When this process started serving.
    pub started: Instant,
    /// Cache snapshots.
    pub snapshots: Arc<crate::persist::Snapshots>,
    /// Told when a successor has taken the sockets over (`serve
    /// --takeover`): the process then stops serving.
    pub handed_over: Arc<tokio::sync::Notify>,
    /// The control socket's path.
    pub path: PathBuf,
    /// The configuration running (what `reload` compares against).
    pub config: std::sync::Mutex<crate::config::Config>,
}

/// A control socket bound beside its path, not yet in place.
pub struct Pending {
    bound: PathBuf,
    /// Where it goes.
    pub path: PathBuf,
}

impl Pending {
    /// Moves the socket to its path (replacing a predecessor's there, in
    /// one step); returns its inode, so that shutdown removes only its own.
    pub fn publish(self) -> anyhow::Result<(PathBuf, u64)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::rename(&self.bound, &self.path).with_context(|| format!("control.socket {}", self.path.display()))?;
        let ino = std::fs::symlink_metadata(&self.path).map_or(0, |m| m.ino());
        Ok((self.path, ino))
    }
}

/// Binds the control socket beside `path` and serves it; [`Pending::publish`]
/// moves it into place once every door is up, so a successor that fails
/// to start never takes the running process's socket away. A socket at
/// `path` that answers is another onedot's: an error, unless this process
/// takes over from it. A stale socket file is replaced; any other file
/// there is an error.
pub async fn serve(path: &Path, ctl: Arc<Control>, tasks: &mut JoinSet<()>, takeover: bool) -> anyhow::Result<Pending> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("control.socket {}: a file that is not a socket is there", path.display());
        }
        if !takeover && std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "control.socket {}: another onedot is serving there (stop it, or start this one with --takeover)",
                path.display()
            );
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("control.socket {}", path.display()))?;
    }
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.new", std::process::id()));
    let bound = path.with_file_name(name);
    let _ = std::fs::remove_file(&bound);
    let listener =
        tokio::net::UnixListener::bind(&bound).with_context(|| format!("control.socket {}", bound.display()))?;
    std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("control.socket {}", bound.display()))?;
    let listener = Arc::new(listener);
    let accept = move || {
        let l = listener.clone();
        Box::pin(async move { l.accept().await.map(|(s, _)| s) }) as doors::BoxFuture<'static, _>
    };
    spawn_accepting(accept, tasks, move |stream: tokio::net::UnixStream| {
        let ctl = ctl.clone();
        async move {
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
            let Some(req) = read_request(&mut reader).await else { return };
            if matches!(&req, Ok(r) if r["cmd"] == "takeover") {
                let Ok(stream) = reader.into_inner().into_inner().reunite(write) else { return };
                take_over(&ctl, stream).await;
                return;
            }
            reply(&mut write, &answer(&ctl, req, None).await).await;
        }
    });
    Ok(Pending { bound, path: path.to_path_buf() })
}

/// Serves the control protocol on TCP at `addr` (loopback): every request
/// carries `"key"`, compared in constant time with the key file's.
pub async fn serve_tcp(
    addr: std::net::SocketAddr,
    key: Arc<[u8]>,
    ctl: Arc<Control>,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<std::net::SocketAddr> {
    // Through the doors' listener, so that a successor takes it over too.
    let (listener, bound) = doors::listen(addr).with_context(|| format!("control.tcp {addr}"))?;
    let listener = Arc::new(listener);
    let accept = move || {
        let l = listener.clone();
        Box::pin(async move { l.accept().await.map(|(s, _)| s) }) as doors::BoxFuture<'static, _>
    };
    spawn_accepting(accept, tasks, move |stream: tokio::net::TcpStream| {
        let (ctl, key) = (ctl.clone(), key.clone());
        async move {
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
            let Some(req) = read_request(&mut reader).await else { return };
            reply(&mut write, &answer(&ctl, req, Some(&key)).await).await;
        }
    });
    Ok(bound)
}

/// Control connections served at once (on each listener); more wait.
const MAX_CONNECTIONS: usize = 16;

/// Accepts with `accept` for ever and serves each connection with `serve`
/// in a task of its own, at most [`MAX_CONNECTIONS`] at once; a failed
/// accept (out of descriptors, say) waits a little instead of spinning.
fn spawn_accepting<S, A, F, Fut>(accept: A, tasks: &mut JoinSet<()>, serve: F)
where
    S: Send + 'static,
    A: Fn() -> doors::BoxFuture<'static, std::io::Result<S>> + Send + 'static,
    F: Fn(S) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tasks.spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let Ok(stream) = accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let connection = serve(stream);
            tokio::spawn(async move {
                let _permit = permit;
                connection.await;
            });
        }
    });
}

/// The most one request may send.
const MAX_REQUEST: u64 = 64 * 1024;

/// One request line (within 10 s): `None` when the peer sent nothing.
async fn read_request<R: tokio::io::AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Option<Result<Value, String>> {
    let mut line = String::new();
    match tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => Some(serde_json::from_str(&line).map_err(|e| format!("not a JSON request: {e}"))),
        _ => None,
    }
}

/// The answer to a request; with `key`, the request must carry it.
async fn answer(ctl: &Control, req: Result<Value, String>, key: Option<&[u8]>) -> Value {
    let req = match req {
        Ok(r) => r,
        Err(e) => return json!({ "ok": false, "error": e }),
    };
    if let Some(key) = key {
        // Digests compared, so the time taken says nothing about the key.
        let digest = |b: &[u8]| ring::digest::digest(&ring::digest::SHA256, b);
        if digest(req["key"].as_str().unwrap_or("").as_bytes()).as_ref() != digest(key).as_ref() {
            return json!({ "ok": false, "error": "wrong or missing control key" });
        }
        if req["cmd"] == "takeover" {
            return json!({ "ok": false, "error": "takeover needs the Unix control socket" });
        }
    }
    let cmd = req["cmd"].as_str().unwrap_or("").to_string();
    let args: Vec<String> = req["args"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    match handle(ctl, &cmd, &args).await {
        Ok(result) => json!({ "ok": true, "result": result }),
        Err(e) => json!({ "ok": false, "error": e }),
    }
}

async fn reply<W: tokio::io::AsyncWrite + Unpin>(write: &mut W, reply: &Value) {
    let mut out = serde_json::to_vec(reply).unwrap_or_default();
    out.push(b'\n');
    let _ = write.write_all(&out).await;
}

/// An error on one line: the frame of a TOML error's excerpt (the bare
/// `|` lines, the `^^^` marks) left out, the rest joined.
fn one_line(text: &str) -> String {
    let excerpt = |l: &str| l.trim_start_matches('|').chars().all(|c| c == '^' || c == ' ');
    text.lines().map(str::trim).filter(|l| !excerpt(l)).collect::<Vec<_>>().join(": ").replace(":: ", ": ")
}

/// Keys that `reload` applies without a restart.
const LIVE_KEYS: &[&str] = &["observatory.country_db", "observatory.asn_db"];

/// `reload`: the config file read again; a file that fails to load changes
/// nothing. Every filter source is re-read and the observatory's databases
/// re-opened; every other key whose value changed is named as needing a
/// restart (`serve --takeover` makes that lossless). TLS certificates are
/// re-read on their own when their files change.
async fn reload(ctl: &Control) -> Result<Value, String> {
    let running = ctl.config.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let path = running.source.clone().ok_or("this onedot was not started from a config file")?;
    let loaded = tokio::task::spawn_blocking(move || {
        crate::config::Config::load(&path).map_err(|e| one_line(&format!("{e:#}")))
    })
    .await
    .map_err(|e| e.to_string())?;
    let new = loaded.map_err(|e| format!("{e}; the running configuration is unchanged"))?;
    let changed = crate::config::changed_keys(&running, &new);
    let (live, restart): (Vec<String>, Vec<String>) =
        changed.into_iter().partition(|k| LIVE_KEYS.contains(&k.as_str()));
    let mut applied = Vec::new();
    if let Some(o) = ctl.observer.observatory.clone() {
        let c = new.observatory.clone();
        match tokio::task::spawn_blocking(move || crate::run::reopen_geo(&o, &c)).await {
            Ok(Ok(())) => {
                applied.push("observatory databases re-opened".to_string());
                let mut cfg = ctl.config.lock().unwrap_or_else(|e| e.into_inner());
                cfg.observatory.country_db = new.observatory.country_db.clone();
                cfg.observatory.asn_db = new.observatory.asn_db.clone();
            }
            Ok(Err(e)) => return Err(format!("observatory databases: {e}; the old ones count")),
            Err(e) => return Err(e.to_string()),
        }
    } else if !live.is_empty() {
        applied.push("observatory database paths noted (the observatory is off)".to_string());
    }
    let p = ctl.policy.clone();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let report = tokio::task::spawn_blocking(move || p.reload(now, true)).await.map_err(|e| e.to_string())?;
    applied.push(format!("filter sources re-read ({} changed, {} failed)", report.changed.len(), report.failed.len()));
    if !restart.is_empty() {
        tracing::warn!(keys = %restart.join(", "), "config reloaded; these changes need a restart");
    }
    Ok(json!({ "applied": applied, "needs_restart": restart }))
}

/// A successor asked for the sockets: the caches go to the snapshot file
/// (or a file beside the control socket), then the sockets go over this
/// connection; when the successor says it is ready, this process stops.
async fn take_over(ctl: &Arc<Control>, mut stream: tokio::net::UnixStream) {
    // Under systemd the successor would run outside the unit (its user,
    // sandbox and watchdog): systemctl restart is the way there.
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let no = json!({ "ok": false, "error": "this onedot runs under systemd: use systemctl restart onedot (with \
            onedot.socket the sockets stay open and queries wait in their queues for the new process)" });
        reply(&mut stream, &no).await;
        return;
    }
    let Ok(stream) = stream.into_std() else { return };
    let ctl2 = ctl.clone();
    let given = tokio::task::spawn_blocking(move || {
        let path = ctl2.snapshots.path.clone().unwrap_or_else(|| ctl2.path.with_extension("takeover-cache"));
        let snapshot = match ctl2.snapshots.dump(&path) {
            Ok(c) => {
                tracing::info!(answers = c.answers, rrsets = c.rrsets, "cache snapshot written for the successor");
                Some(path)
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "no cache snapshot for the successor");
                None
            }
        };
        let given = crate::handover::give(stream, snapshot.as_deref());
        // A successor that did not take over leaves no copy of the cache
        // behind (the configured snapshot file is the operator's).
        if !matches!(given, Ok(true))
            && let Some(s) = snapshot.filter(|s| Some(s) != ctl2.snapshots.path.as_ref())
        {
            let _ = std::fs::remove_file(s);
        }
        given
    })
    .await;
    match given {
        Ok(Ok(true)) => {
            tracing::info!("a successor took the sockets over; finishing what is in flight, then exiting");
            ctl.handed_over.notify_one();
        }
        Ok(Ok(false)) => tracing::warn!("the successor did not say ready; serving on"),
        Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "takeover failed; serving on"),
        Err(e) => tracing::warn!(error = %e, "takeover failed; serving on"),
    }
}

fn name_arg(args: &[String], i: usize, cmd: &str) -> Result<proto::Name, String> {
    let text = args.get(i).ok_or_else(|| format!("{cmd} needs a NAME"))?;
    proto::Name::from_ascii(text).map_err(|e| format!("{text:?} is not a domain name: {e}"))
}

fn is_negative(a: &cache::CachedAnswer) -> bool {
    a.rcode() == 3 || (a.rcode() == 0 && a.answer_count() == 0)
}

/// Drops `name` (one type, or all) from both caches; returns the answers
/// and RRsets dropped. Walks both caches: call off the async workers
/// when they are large.
pub fn flush_name(service: &recursor::Service, name: &proto::Name, rtype: Option<u16>) -> (usize, usize) {
    let hit = |n: &[u8], t: u16| proto::Name::from_wire(n).is_ok_and(|n| n == *name) && rtype.is_none_or(|r| r == t);
    let a = service.answers().retain(|e| !e.question().is_some_and(|(n, t)| hit(n, t)));
    let r = service.recursor().cache().retain(|e| !hit(e.owner(), e.rtype()));
    (a, r)
}

/// Drops `zone` and every name below it from both caches; returns the
/// answers and RRsets dropped.
fn flush_below(service: &recursor::Service, zone: &proto::Name) -> (usize, usize) {
    let below = |n: &[u8]| proto::Name::from_wire(n).is_ok_and(|n| n.is_subdomain_of(zone));
    let a = service.answers().retain(|e| !e.question().is_some_and(|(n, _)| below(n)));
    let r = service.recursor().cache().retain(|e| !below(e.owner()));
    (a, r)
}

async fn handle(ctl: &Control, cmd: &str, args: &[String]) -> Result<Value, String> {
    let answers = ctl.service.answers();
    let rrsets = ctl.service.recursor().cache();
    match cmd {
        "status" => Ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": ctl.started.elapsed().as_secs(),
            "queries_in_flight": ctl.inflight.count(),
            "answer_cache": { "entries": answers.len(), "bytes": answers.weight() },
            "rrset_cache": { "entries": rrsets.len(), "bytes": rrsets.weight() },
            "profiles": ctl.policy.profile_names(),
        })),
        "stats" => {
            let text = ctl.observer.metrics.render();
            let mut map = serde_json::Map::new();
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                if let Some((k, v)) = line.rsplit_once(' ')
                    && let Ok(v) = v.parse::<f64>()
                {
                    map.insert(k.to_string(), json!(v));
                }
            }
            Ok(Value::Object(map))
        }
        "flush" => {
            let name = name_arg(args, 0, cmd)?;
            let rtype = match args.get(1) {
                Some(t) => Some(proto::rtype::from_text(t).ok_or_else(|| format!("{t:?} is not a record type"))?),
                None => None,
            };
            let (a, r) = flush_name(&ctl.service, &name, rtype);
            Ok(json!({ "answers": a, "rrsets": r }))
        }
        "flush-zone" => {
            let (a, r) = flush_below(&ctl.service, &name_arg(args, 0, cmd)?);
            Ok(json!({ "answers": a, "rrsets": r }))
        }
        "flush-all" => {
            let (a, r) = (answers.len(), rrsets.len());
            answers.clear();
            rrsets.clear();
            Ok(json!({ "answers": a, "rrsets": r }))
        }
        "flush-negative" => {
            let a = answers.retain(|e| !is_negative(e));
            let r = rrsets.retain(|e| e.negative().is_none());
            Ok(json!({ "answers": a, "rrsets": r }))
        }
        "flush-bogus" => {
            let a = answers.retain(|e| !e.is_failure());
            let r = rrsets.retain(|e| e.security() != cache::Security::Bogus);
            Ok(json!({ "answers": a, "rrsets": r }))
        }
        "lists-reload" => {
            let p = ctl.policy.clone();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let report = tokio::task::spawn_blocking(move || p.reload(now, true)).await.map_err(|e| e.to_string())?;
            let failed: Vec<Value> =
                report.failed.iter().map(|(n, e)| json!({ "source": n, "error": e.to_string() })).collect();
            Ok(json!({ "changed": report.changed, "failed": failed }))
        }
        "log-level" => {
            let filter = args.first().ok_or("log-level needs a FILTER (info, debug, onedot=debug,...)")?;
            let set = LOG_FILTER.get().ok_or("this process's log filter cannot be changed")?;
            set(filter).map_err(|e| format!("{filter:?}: {e}"))?;
            tracing::info!(filter = %filter, "log filter set by onedot ctl");
            Ok(json!({ "filter": filter }))
        }
        "inflight" => {
            let questions: Vec<Value> = ctl
                .service
                .recursor()
                .inflight()
                .into_iter()
                .map(|(n, t)| json!({ "name": n.to_string(), "type": proto::rtype::name(t).map_or(format!("TYPE{t}"), str::to_string) }))
                .collect();
            Ok(json!({ "queries_in_flight": ctl.inflight.count(), "resolving": questions }))
        }
        "nta" => {
            let anchors = ctl
                .service
                .recursor()
                .config()
                .validation
                .as_ref()
                .map(|v| v.runtime_anchors.clone())
                .ok_or("DNSSEC validation is off: there is nothing to make an exception to")?;
            let flush = |zone: &proto::Name| flush_below(&ctl.service, zone);
            match args.first().map(String::as_str) {
                Some("add") => {
                    let name = name_arg(args, 1, "nta add")?;
                    let added = anchors.add(name.clone());
                    let (a, r) = flush(&name);
                    tracing::warn!(nta = %name, "negative trust anchor added by onedot ctl: answers below it are not validated");
                    Ok(json!({ "added": added, "answers": a, "rrsets": r }))
                }
                Some("remove") => {
                    let name = name_arg(args, 1, "nta remove")?;
                    let removed = anchors.remove(&name);
                    let (a, r) = flush(&name);
                    tracing::info!(nta = %name, "negative trust anchor removed by onedot ctl");
                    Ok(json!({ "removed": removed, "answers": a, "rrsets": r }))
                }
                Some("list") | None => {
                    let configured = ctl
                        .service
                        .recursor()
                        .config()
                        .validation
                        .as_ref()
                        .map(|v| v.negative_trust_anchors.clone())
                        .unwrap_or_default();
                    Ok(json!({
                        "configured": configured.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "added": anchors.list().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    }))
                }
                Some(other) => Err(format!("nta {other:?}: use nta add NAME, nta remove NAME or nta list")),
            }
        }
        "reload" => reload(ctl).await,
        "dump-cache" | "load-cache" => {
            let path = match (args.first(), &ctl.snapshots.path) {
                (Some(p), _) => PathBuf::from(p),
                (None, Some(p)) => p.clone(),
                (None, None) => return Err(format!("{cmd} needs a FILE: cache.snapshot_file is not set")),
            };
            let (snapshots, dump) = (ctl.snapshots.clone(), cmd == "dump-cache");
            let started = Instant::now();
            let counts = tokio::task::spawn_blocking(move || {
                if dump { snapshots.dump(&path).map(Some) } else { snapshots.load(&path) }
                    .map_err(|e| format!("{e:#}"))?
                    .ok_or_else(|| format!("{}: no such file", path.display()))
            })
            .await
            .map_err(|e| e.to_string())??;
            Ok(json!({
                "answers": counts.answers,
                "rrsets": counts.rrsets,
                "skipped": counts.skipped,
                "ms": started.elapsed().as_millis() as u64,
            }))
        }
        "" => Err("no command".into()),
        other => Err(format!(
            "unknown command {other:?}; commands: {}",
            COMMANDS.iter().map(|(c, _)| c.split(' ').next().unwrap_or(c)).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Where `onedot ctl` sends its request.
pub enum Target {
    /// The Unix control socket.
    Unix(PathBuf),
    /// The TCP control port, and its key.
    Tcp(std::net::SocketAddr, Vec<u8>),
}

/// `onedot ctl`: sends one request, prints the answer (as JSON with
/// `json`), and fails with the server's one-line error.
pub fn client(target: &Target, cmd: &str, args: &[String], as_json: bool) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let mut req = json!({ "cmd": cmd, "args": args });
    let stream: Box<dyn ReadWrite> = match target {
        Target::Unix(socket) => Box::new(std::os::unix::net::UnixStream::connect(socket).with_context(|| {
            format!(
                "cannot reach the control socket {} (is onedot serving, with [control] socket set?)",
                socket.display()
            )
        })?),
        Target::Tcp(addr, key) => {
            req["key"] = json!(String::from_utf8_lossy(key));
            let s = std::net::TcpStream::connect_timeout(addr, Duration::from_secs(5)).with_context(|| {
                format!("cannot reach the control port {addr} (is onedot serving, with [control] tcp set?)")
            })?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            Box::new(s)
        }
    };
    let mut stream = stream;
    let mut line = serde_json::to_vec(&req)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(stream).read_line(&mut answer)?;
    let reply: Value = serde_json::from_str(&answer).context("the control socket's answer is not JSON")?;
    if reply["ok"] != json!(true) {
        anyhow::bail!("{}", reply["error"].as_str().unwrap_or("failed"));
    }
    let result = &reply["result"];
    if as_json {
        println!("{}", serde_json::to_string_pretty(result)?);
    } else {
        print_human("", result);
    }
    Ok(())
}

trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

/// `key: value` lines, nested keys joined with dots.
fn print_human(prefix: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                print_human(&key, v);
            }
        }
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            let items: Vec<String> =
                a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string)).collect();
            println!("{prefix}: {}", items.join(", "));
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                print_human(&format!("{prefix}[{i}]"), x);
            }
        }
        Value::String(s) => println!("{prefix}: {s}"),
        other => println!("{prefix}: {other}"),
    }
}
