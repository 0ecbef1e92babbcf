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
}

/// Binds the socket at `path` (a stale socket file is replaced; any other
/// file there is an error) and serves it.
pub async fn serve(path: &Path, ctl: Arc<Control>, tasks: &mut JoinSet<()>) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("control.socket {}: a file that is not a socket is there", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("control.socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("control.socket {}", path.display()))?;
    }
    let listener =
        tokio::net::UnixListener::bind(path).with_context(|| format!("control.socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("control.socket {}", path.display()))?;
    tasks.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let ctl = ctl.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut reader = BufReader::new(read.take_limit());
                let got = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await;
                let reply = match got {
                    Ok(Ok(n)) if n > 0 => match serde_json::from_str::<Value>(&line) {
                        Ok(req) => {
                            let cmd = req["cmd"].as_str().unwrap_or("").to_string();
                            let args: Vec<String> = req["args"]
                                .as_array()
                                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                                .unwrap_or_default();
                            match handle(&ctl, &cmd, &args).await {
                                Ok(result) => json!({ "ok": true, "result": result }),
                                Err(e) => json!({ "ok": false, "error": e }),
                            }
                        }
                        Err(e) => json!({ "ok": false, "error": format!("not a JSON request: {e}") }),
                    },
                    _ => return,
                };
                let mut out = serde_json::to_vec(&reply).unwrap_or_default();
                out.push(b'\n');
                let _ = write.write_all(&out).await;
            });
        }
    });
    Ok(path.to_path_buf())
}

/// Bounds what one request may send.
trait TakeLimit: Sized {
    fn take_limit(self) -> tokio::io::Take<Self>;
}

impl TakeLimit for tokio::net::unix::OwnedReadHalf {
    fn take_limit(self) -> tokio::io::Take<Self> {
        tokio::io::AsyncReadExt::take(self, 64 * 1024)
    }
}

fn name_arg(args: &[String], i: usize, cmd: &str) -> Result<proto::Name, String> {
    let text = args.get(i).ok_or_else(|| format!("{cmd} needs a NAME"))?;
    proto::Name::from_ascii(text).map_err(|e| format!("{text:?} is not a domain name: {e}"))
}

fn is_negative(a: &cache::CachedAnswer) -> bool {
    a.rcode() == 3 || (a.rcode() == 0 && a.answer_count() == 0)
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
    let wire_name = |w: &[u8]| proto::Name::from_wire(w).ok();
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
            let hit = |n: &[u8], t: u16| wire_name(n).is_some_and(|n| n == name) && rtype.is_none_or(|r| r == t);
            let a = answers.retain(|e| !e.question().is_some_and(|(n, t)| hit(n, t)));
            let r = rrsets.retain(|e| !hit(e.owner(), e.rtype()));
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
        "" => Err("no command".into()),
        other => Err(format!(
            "unknown command {other:?}; commands: {}",
            COMMANDS.iter().map(|(c, _)| c.split(' ').next().unwrap_or(c)).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// `onedot ctl`: sends one request to `socket`, prints the answer (as
/// JSON with `json`), and fails with the server's one-line error.
pub fn client(socket: &Path, cmd: &str, args: &[String], as_json: bool) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!("cannot reach the control socket {} (is onedot serving, with [control] socket set?)", socket.display())
    })?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = serde_json::to_vec(&json!({ "cmd": cmd, "args": args }))?;
    req.push(b'\n');
    s.write_all(&req)?;
    let mut line = String::new();
    std::io::BufReader::new(&s).read_line(&mut line)?;
    let reply: Value = serde_json::from_str(&line).context("the control socket's answer is not JSON")?;
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
