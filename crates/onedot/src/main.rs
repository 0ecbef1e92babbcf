//! onedot: a public recursive DNS resolver in one binary.
//!
//! The binary owns the command line, the configuration file and the wiring
//! of the libraries (`doors` → `recursor` → `cache`, with `proto` for the
//! wire format); the built-in `lab` internet backs `demo` and `lab`.

mod client;
mod control;
mod ddr;
mod demo;
mod feeds;
mod handover;
mod help;
mod keyserver;
mod observatory_web;
mod observe;
mod persist;
mod run;
mod web;

use onedot::config;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// onedot — a recursive DNS resolver.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the resolver with a config file (see examples/onedot.toml).
    Serve {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Take the listening sockets and the cache over from the onedot
        /// serving on this config's control socket, which then finishes
        /// what it has in flight and exits: a restart that loses no query.
        #[arg(long)]
        takeover: bool,
    },
    /// Run offline on the built-in lab internet and show it working.
    Demo {
        /// Listen address (repeatable; default `127.0.0.1:5353` and `[::1]:5353`).
        #[arg(long)]
        listen: Vec<SocketAddr>,
        /// Lab port (default 53 when possible, else a free port).
        #[arg(long)]
        lab_port: Option<u16>,
        /// DoT listen address (repeatable; default `127.0.0.1:8853`).
        #[arg(long)]
        dot_listen: Vec<SocketAddr>,
        /// DoH listen address (repeatable; default `127.0.0.1:8443`).
        #[arg(long)]
        doh_listen: Vec<SocketAddr>,
        /// DoQ listen address, UDP (repeatable; default `127.0.0.1:8853`).
        #[arg(long)]
        doq_listen: Vec<SocketAddr>,
        /// Port of the `security` (127.0.0.2) and `family` (127.0.0.3)
        /// listeners; 0 picks free ports.
        #[arg(long, default_value_t = 5353)]
        profiles_port: u16,
        /// Web listener (transparency log, health).
        #[arg(long, default_value = config::DEFAULT_WEB_LISTEN)]
        web_listen: SocketAddr,
        /// Exit after this many seconds instead of waiting for Ctrl-C.
        #[arg(long)]
        exit_after: Option<u64>,
    },
    /// Check a data directory and a config against the published privacy
    /// commitments; exits non-zero, naming each one broken.
    Audit {
        /// The data directory (`telemetry.data_dir`).
        #[arg(long)]
        data_dir: PathBuf,
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the privacy commitments and the data inventory (PRIVACY.md).
    Privacy {
        /// The config file (default: built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Load the filter sources of a config and report their size, load
    /// time and memory, or the first bad line of each broken one.
    Lists {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Ask a question: `onedot query NAME [TYPE] [@SERVER[:PORT]]`.
    Query {
        /// NAME, TYPE and @SERVER, in any order.
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
        /// Use TCP.
        #[arg(long)]
        tcp: bool,
        /// Set the DO bit.
        #[arg(long)]
        dnssec: bool,
        /// Clear the RD bit.
        #[arg(long)]
        norec: bool,
        /// Timeout in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// DNS over TLS (default port 8853).
        #[arg(long, group = "transport")]
        tls: bool,
        /// DNS over HTTPS, HTTP/2 (default port 8443).
        #[arg(long, group = "transport")]
        https: bool,
        /// DNS over HTTPS, HTTP/3 (default port 8443, UDP).
        #[arg(long, group = "transport")]
        h3: bool,
        /// DNS over QUIC (default port 8853, UDP).
        #[arg(long, group = "transport")]
        quic: bool,
        /// The DoH JSON API over HTTP/2 (default port 8443).
        #[arg(long, group = "transport")]
        json: bool,
        /// Oblivious DoH (RFC 9230) through the relay named by @SERVER to
        /// this target (`host:port`).
        #[arg(long, group = "transport", value_name = "HOST:PORT")]
        odoh: Option<String>,
        /// Local address to connect from.
        #[arg(long)]
        source: Option<std::net::IpAddr>,
        /// The DoH path.
        #[arg(long, default_value = "/dns-query")]
        path: String,
        /// The name the server's certificate must carry (default: the address).
        #[arg(long)]
        tls_name: Option<String>,
        /// PEM file of trusted roots (default: /etc/ssl/certs/ca-certificates.crt).
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Accept only this SubjectPublicKeyInfo SHA-256 (base64, as in HPKP).
        #[arg(long)]
        pin: Vec<String>,
        /// Accept any certificate (testing only).
        #[arg(long)]
        insecure: bool,
    },
    /// Serve the lab internet alone (for tests against other resolvers).
    Lab {
        /// Port for every lab server.
        #[arg(long, default_value_t = 53)]
        port: u16,
        /// Write the zone files and servers.json to DIR and exit.
        #[arg(long)]
        export: Option<PathBuf>,
        /// Write the lab's root key (its trust anchor) to FILE.
        #[arg(long)]
        trust_anchor_out: Option<PathBuf>,
        /// Keep FILE updated (every 100 ms) with the queries each lab server
        /// has received, as JSON: what benchmarks count at an authority.
        #[arg(long)]
        counts_out: Option<PathBuf>,
        /// Put the servers behind a real internet's delays (roots 20 ms,
        /// TLDs 10-60 ms, others 5-150 ms, some dead or slow): what the
        /// cold-resolution benchmark measures against.
        #[arg(long)]
        internet_delays: bool,
    },
    /// Run the key server of keyless edges (see docs/keyless.md), or
    /// manage its edge CA.
    Keyserver {
        /// The key server's config file (see examples/keyserver.toml).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<KeyserverAction>,
    },
    /// Talk to a running onedot over its control socket (`[control]
    /// socket`, or `tcp` with a key): status, stats, flush NAME [TYPE],
    /// flush-zone NAME, flush-all, flush-negative, flush-bogus,
    /// lists-reload, reload, log-level FILTER, inflight, nta
    /// add|remove|list, dump-cache and load-cache (`help` lists them).
    Ctl {
        /// The config whose `control.socket` to use.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The socket itself.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// The TCP control port instead (with --key-file).
        #[arg(long)]
        tcp: Option<SocketAddr>,
        /// The TCP control port's key file.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
        /// The command and its arguments (`help` lists them).
        #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// The disruption observatory's tools.
    Observatory {
        #[command(subcommand)]
        action: ObservatoryAction,
    },
    /// Write the man pages (onedot(1), onedot-serve(1)...) and the bash,
    /// zsh and fish completions into DIR/man and DIR/completions.
    #[command(hide = true)]
    Docs {
        /// Where to write them.
        dir: PathBuf,
    },
    /// Print the effective configuration (defaults filled in).
    Config {
        /// The config file (default: built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ObservatoryAction {
    /// Write the lab's MaxMind-format database: 127.(i+1).a.0/24 is the
    /// i-th country, AS 64512 + 100 (i+1) + a (for the demo, tests and
    /// benchmarks, which pose as clients from many countries on loopback).
    LabGeo {
        /// The file to write.
        out: PathBuf,
        /// Country codes, comma-separated.
        #[arg(long, default_value = "DE,FR,BR,IN,NG,US,JP,ID,IR,RU,EG,MM", value_delimiter = ',')]
        countries: Vec<String>,
        /// Networks (/24s) per country.
        #[arg(long, default_value_t = 16)]
        networks: u8,
    },
    /// Simulate a month of traffic from twelve countries with four
    /// injected events (shutdown, route hijack, censorship surge, TLD
    /// outage) and a quiet month, through the real aggregation, store and
    /// detector; print how the detector did, as JSON.
    Simulate {
        /// Where the two months' stores are written (made afresh).
        #[arg(long)]
        data_dir: PathBuf,
        /// Days in each month.
        #[arg(long, default_value_t = 30)]
        days: u64,
    },
}

#[derive(Debug, Subcommand)]
enum KeyserverAction {
    /// Make a state directory: a new edge CA and the key server's certificate.
    Init {
        /// The directory (the config's `state_dir`).
        #[arg(long)]
        state_dir: PathBuf,
        /// A DNS name or IP address edges reach the key server by (repeatable).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
    },
    /// Issue a client certificate for an edge and register it.
    IssueEdge {
        /// The edge's name.
        name: String,
        /// Its region (keys may be restricted to regions).
        #[arg(long)]
        region: String,
        /// Where to write NAME.pem and NAME.key.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Revoke an edge: its next operation is refused.
    Revoke {
        /// The edge's name.
        name: String,
    },
}

/// Writes the lab's per-server query counts to `path` as JSON (a
/// temporary file renamed over it, so readers never see half a file).
fn write_counts(lab: &lab::Lab, path: &std::path::Path) {
    let counts: serde_json::Map<String, serde_json::Value> =
        lab.counts().into_iter().map(|(a, n)| (a.to_string(), n.into())).collect();
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, serde_json::Value::Object(counts).to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
        let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colour for a terminal only: not for journald or a file.
                    .with_ansi(
                        std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none(),
                    ),
            )
            .init();
        control::set_log_filter(move |text| {
            let f = tracing_subscriber::EnvFilter::try_new(text).map_err(|e| e.to_string())?;
            handle.reload(f).map_err(|e| e.to_string())
        });
    }
    match cli.command {
        Command::Serve { config, takeover } => serve(&config, takeover),
        Command::Demo {
            listen,
            lab_port,
            dot_listen,
            doh_listen,
            doq_listen,
            profiles_port,
            web_listen,
            exit_after,
        } => {
            let opts = demo::DemoOptions {
                listen,
                lab_port,
                dot_listen,
                doh_listen,
                doq_listen,
                profiles_port,
                web_listen,
                exit_after: exit_after.map(Duration::from_secs),
            };
            runtime(0)?.block_on(demo::run(opts))
        }
        Command::Query {
            args,
            tcp,
            dnssec,
            norec,
            timeout_ms,
            tls,
            https,
            h3,
            quic,
            json,
            odoh,
            source,
            path,
            tls_name,
            ca,
            pin,
            insecure,
        } => {
            let port = if tls || quic {
                8853
            } else if https || h3 || json || odoh.is_some() {
                8443
            } else {
                5353
            };
            let default = SocketAddr::from(([127, 0, 0, 1], port));
            let (name, qtype, server) = client::parse_args(&args, default)?;
            let ask = client::Ask {
                name,
                qtype,
                server,
                tcp,
                dnssec,
                recurse: !norec,
                timeout: Duration::from_millis(timeout_ms),
            };
            use doors::client::Encrypted;
            let how = [(tls, Encrypted::Tls), (https, Encrypted::Https), (h3, Encrypted::H3), (quic, Encrypted::Quic)]
                .into_iter()
                .find_map(|(on, how)| on.then_some(how));
            if how.is_none() && !json && odoh.is_none() {
                return runtime(1)?.block_on(client::run(ask));
            }
            let verify = client_verify(ca, &pin, insecure)?;
            let secure = client::Secure { how, json, tls_name, path, verify, odoh_target: odoh, source };
            runtime(1)?.block_on(client::run_secure(ask, secure))
        }
        Command::Lab { port, export, trust_anchor_out, counts_out, internet_delays } => {
            let mut data = lab::LabData::builtin().context("loading the lab")?;
            if internet_delays {
                let (dead, slow) = data.with_internet_delays();
                println!("internet delays on: in {dead} zones a server is dead, in {slow} one is slow (800 ms)");
            }
            if let Some(dir) = export {
                data.export(&dir).with_context(|| format!("exporting to {}", dir.display()))?;
                println!("exported {} zones and servers.json to {}", data.zones.len(), dir.display());
                return Ok(());
            }
            if let (Some(path), Some(anchor)) = (&trust_anchor_out, &data.trust_anchor) {
                std::fs::write(path, format!("{}\n", demo::anchor_text(anchor)))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            runtime(0)?.block_on(async {
                let lab = lab::Lab::start(std::sync::Arc::new(data), port).await?;
                println!("lab ready");
                let hints: Vec<String> = lab.root_hints().iter().map(ToString::to_string).collect();
                eprintln!("lab: root servers {}", hints.join(" "));
                let lab = std::sync::Arc::new(lab);
                if let Some(path) = counts_out {
                    let lab = lab.clone();
                    tokio::spawn(async move {
                        loop {
                            write_counts(&lab, &path);
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    });
                }
                run::until_signal().await;
                drop(lab);
                anyhow::Ok(())
            })
        }
        Command::Audit { data_dir, config } => {
            let mut config = config::Config::load(&config)?;
            config.telemetry.data_dir = Some(data_dir.clone());
            audit(&data_dir, &config)
        }
        Command::Privacy { config } => {
            let c = match config {
                Some(p) => config::Config::load(&p)?,
                None => config::Config::default(),
            };
            print!("{}", telemetry::markdown(&c.telemetry.commitments()));
            Ok(())
        }
        Command::Lists { config } => {
            let config = config::Config::load(&config)?;
            lists(&config)
        }
        Command::Keyserver { config, action } => {
            let need = |c: Option<PathBuf>| c.context("--config KEYSERVER.toml is required");
            match action {
                None => {
                    let config = need(config)?;
                    runtime(0)?.block_on(keyserver::run(&config))
                }
                Some(KeyserverAction::Init { state_dir, names }) => keyserver::init(&state_dir, &names),
                Some(KeyserverAction::IssueEdge { name, region, out }) => {
                    keyserver::issue_edge(&need(config)?, &name, &region, &out)
                }
                Some(KeyserverAction::Revoke { name }) => keyserver::revoke(&need(config)?, &name),
            }
        }
        Command::Ctl { config, socket, tcp, key_file, json, command } => {
            if command[0] == "help" {
                for (c, what) in control::COMMANDS {
                    println!("  {c:<20} {what}");
                }
                return Ok(());
            }
            let target = match (socket, tcp, config) {
                (Some(s), _, _) => control::Target::Unix(s),
                (None, Some(addr), _) => {
                    let control = config::ControlConfig { tcp: Some(addr), key_file, ..Default::default() };
                    control::Target::Tcp(addr, control.key()?)
                }
                (None, None, Some(c)) => {
                    let control = config::Config::load(&c)?.control;
                    match (control.socket.clone(), control.tcp) {
                        (Some(s), _) => control::Target::Unix(s),
                        (None, Some(addr)) => control::Target::Tcp(addr, control.key()?),
                        (None, None) => anyhow::bail!("{} sets no [control] socket or tcp", c.display()),
                    }
                }
                (None, None, None) => {
                    anyhow::bail!("give --config FILE (with [control]), --socket PATH, or --tcp ADDR --key-file FILE")
                }
            };
            control::client(&target, &command[0], &command[1..], json)
        }
        Command::Observatory { action: ObservatoryAction::LabGeo { out, countries, networks } } => {
            if countries.len() > 250
                || countries.iter().any(|c| observatory::geo::country(c) == observatory::geo::UNKNOWN)
            {
                anyhow::bail!("--countries takes up to 250 two-letter codes");
            }
            let codes: Vec<&str> = countries.iter().map(String::as_str).collect();
            std::fs::write(&out, observatory::mmdb::lab_database(&codes, networks))
                .with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} ({} countries, {networks} networks each)", out.display(), codes.len());
            Ok(())
        }
        Command::Observatory { action: ObservatoryAction::Simulate { data_dir, days } } => {
            use observatory::simulate::{START, month, month_events};
            if !(14..=120).contains(&days) {
                anyhow::bail!("--days must be 14 to 120 (a week of baseline, then events from day 10 to 23)");
            }
            let truth = month_events(START);
            let events = month(&data_dir.join("events"), START, days, &truth, 7)?;
            let quiet = month(&data_dir.join("quiet"), START + days * 86_400, days, &[], 11)?;
            let per_day = |n: u64| n as f64 / days as f64;
            let report = serde_json::json!({
                "days": days,
                "truth": truth,
                "events_month": events,
                "quiet_month": quiet,
                "per_node_day": {
                    "minute_rows": per_day(events.minute_rows),
                    "hour_rows": per_day(events.hour_rows),
                    "sqlite_bytes": per_day(events.file_bytes),
                },
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Docs { dir } => write_docs(&dir),
        Command::Config { config } => {
            let c = match config {
                Some(p) => config::Config::load(&p)?,
                None => config::Config::default(),
            };
            print!("{}", toml::to_string(&c).context("printing the config")?);
            Ok(())
        }
    }
}

/// Certificate checks for the encrypted clients: roots from `ca` (or the
/// system bundle), SPKI pins (base64 SHA-256), or none at all.
pub fn client_verify(ca: Option<PathBuf>, pins: &[String], insecure: bool) -> anyhow::Result<doors::client::Verify> {
    let pins = pins
        .iter()
        .map(|p| {
            let raw = domain::utils::base64::decode::<Vec<u8>>(p).map_err(|e| anyhow::anyhow!("pin {p:?}: {e}"))?;
            <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| anyhow::anyhow!("pin {p:?} is not a SHA-256 digest"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let system = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    let ca_pem = match ca {
        Some(f) => Some(std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?),
        None if pins.is_empty() && !insecure => {
            Some(std::fs::read(&system).with_context(|| format!("reading {}", system.display()))?)
        }
        None => None,
    };
    Ok(doors::client::Verify { ca_pem, spki_sha256: pins, insecure })
}

/// `onedot audit`: the inventory, then every check; fails on any broken
/// commitment.
fn audit(data_dir: &std::path::Path, config: &config::Config) -> anyhow::Result<()> {
    println!("Data onedot keeps (the inventory):");
    for i in telemetry::INVENTORY {
        println!("  {:<26} {:<40} {}", i.id, i.location, i.lifetime);
    }
    println!();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let commitments = config.telemetry.commitments();
    let findings = match &config.server.keyless {
        // A keyless edge: its disk is sealed; the key server's data keys
        // (when it answers) let the audit open what is there.
        Some(k) => {
            let vault =
                keyless::KeylessClient::start(k.client_config()?).and_then(|c| c.data_keys()).map(|(_, keys)| {
                    let keys: Vec<seal::DataKey> =
                        keys.into_iter().map(|(epoch, key)| seal::DataKey { epoch, key }).collect();
                    seal::Vault::with_keys(&keys)
                });
            if let Err(e) = &vault {
                println!("NOTE  no data keys from the key servers ({e}): sealed records are not opened\n");
            }
            let mut sealed_files: Vec<std::path::PathBuf> = config.policy.state_file.iter().cloned().collect();
            sealed_files.extend(config.dnssec.trust_anchor_state.iter().cloned());
            telemetry::audit_sealed(data_dir, &commitments, now_ms, vault.as_ref().ok(), &sealed_files)
        }
        None => telemetry::audit(data_dir, &commitments, now_ms),
    };
    // The observatory's file: aggregates only (no column that could hold
    // an address), minute rows within their retention. In clear on a
    // keyless edge too: it is what is published.
    let mut findings = findings;
    let o = &config.observatory;
    findings.extend(
        observatory::store::audit(data_dir, o.retention_days * 86_400, now_ms / 1000, 11 * 60).into_iter().map(
            |(ok, check, detail)| telemetry::Finding {
                outcome: if ok { telemetry::Outcome::Pass } else { telemetry::Outcome::Fail },
                check,
                detail,
            },
        ),
    );
    let mut broken = Vec::new();
    for f in &findings {
        let tag = match f.outcome {
            telemetry::Outcome::Pass => "PASS",
            telemetry::Outcome::Fail => "FAIL",
            telemetry::Outcome::Note => "NOTE",
        };
        println!("{tag}  {}: {}", f.check, f.detail);
        if f.outcome == telemetry::Outcome::Fail {
            broken.push(f.check);
        }
    }
    if !broken.is_empty() {
        anyhow::bail!("{} commitment(s) broken: {}", broken.len(), broken.join("; "));
    }
    println!("\nAll commitments hold.");
    Ok(())
}

/// `onedot lists`: loads each source on its own and reports it.
fn lists(config: &config::Config) -> anyhow::Result<()> {
    let mut failed = 0;
    for spec in &config.policy.sources {
        let start = std::time::Instant::now();
        let rss_before = rss_kib();
        match policy::load(spec, Default::default()) {
            Ok(s) => {
                let ms = start.elapsed().as_secs_f64() * 1000.0;
                let rss = rss_kib().saturating_sub(rss_before) as f64 / 1024.0;
                println!(
                    "{}: {} entries, {} lines skipped (not DNS rules), loaded in {ms:.0} ms, tables {:.1} MiB, RSS +{rss:.1} MiB",
                    spec.name,
                    s.entries(),
                    s.unsupported,
                    s.heap_bytes() as f64 / (1 << 20) as f64
                );
            }
            Err(e) => {
                failed += 1;
                println!("{}: {e}", spec.name);
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} source(s) could not be loaded");
    }
    Ok(())
}

/// Resident set size of this process, KiB (0 where /proc is missing).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.enable_all().build().context("starting the async runtime")
}

/// `onedot serve`: sockets from systemd (socket activation) or from the
/// process taken over, then every door; READY, WATCHDOG and STOPPING to
/// systemd when it runs us as `Type=notify`.
fn serve(path: &std::path::Path, takeover: bool) -> anyhow::Result<()> {
    use sd_notify::NotifyState;
    let config = config::Config::load(path)?;
    let activated = doors::inherit::from_systemd().context("sockets passed by systemd (LISTEN_FDS)")?;
    for (kind, addr) in &activated {
        tracing::info!(kind = kind.as_str(), %addr, "socket from systemd");
    }
    let predecessor = match takeover {
        true => {
            let socket = config
                .control
                .socket
                .as_deref()
                .context("--takeover needs [control] socket, where the running onedot listens")?;
            let p = handover::take_over(socket)?;
            tracing::info!(pid = p.pid, sockets = p.sockets.len(), "taking over from the running onedot");
            Some(p)
        }
        false => None,
    };
    runtime(run::workers(&config))?.block_on(async {
        let snapshot = predecessor.as_ref().and_then(|p| p.snapshot.clone());
        let running = run::start_with(&config, snapshot.as_deref(), predecessor.is_some()).await?;
        if let Some(p) = predecessor {
            let pid = p.pid;
            p.ready()?;
            tracing::info!(old = pid, "serving; the old process finishes what it has in flight and exits");
            if let Some(s) = snapshot.filter(|s| Some(s) != config.cache.snapshot_file.as_ref()) {
                let _ = std::fs::remove_file(s);
            }
        }
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
        if let Some(every) = sd_notify::watchdog_enabled() {
            // Pinged from the runtime: a wedged runtime stops the pings and
            // systemd restarts the service.
            tokio::spawn(async move {
                loop {
                    let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                    tokio::time::sleep(every / 2).await;
                }
            });
        }
        let why = running.until_stopped().await;
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
        let grace = Duration::from_millis(config.resolver.resolution_timeout_ms.max(3000));
        match why {
            run::Stop::Signal => tracing::info!("shutting down"),
            run::Stop::HandedOver => tracing::info!("handed over; finishing what is in flight"),
        }
        running.shutdown(grace, why).await;
        anyhow::Ok(())
    })
}

/// `onedot docs DIR`: man pages from the CLI's own help (clap_mangen), one
/// for onedot and one per command, and shell completions (clap_complete).
fn write_docs(dir: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let cli = Cli::command();
    let render = |cmd: clap::Command, name: &str| -> anyhow::Result<()> {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).title(name.to_uppercase()).render(&mut page)?;
        let path = man.join(format!("{name}.1"));
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))
    };
    render(cli.clone(), "onedot")?;
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("onedot-{}", sub.get_name());
        let page = sub.clone().display_name(name.clone()).bin_name(name.clone()).version(env!("CARGO_PKG_VERSION"));
        render(page, &name)?;
    }
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "onedot", &completions)
            .with_context(|| format!("writing {shell} completions"))?;
    }
    Ok(())
}
