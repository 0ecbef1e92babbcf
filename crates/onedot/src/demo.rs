//! `onedot demo`: the lab internet and a resolver wired to it, offline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lab::{Lab, LabData};
use proto::{Message, Name, rtype};

use crate::client::{Ask, ask};
use crate::config::Config;
use crate::run;

/// Options of `onedot demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Listen addresses (default: the standard listeners).
    pub listen: Vec<SocketAddr>,
    /// Lab port (53 when it can be bound, else a free port).
    pub lab_port: Option<u16>,
    /// DoT listen addresses (default: the standard DoT listener).
    pub dot_listen: Vec<SocketAddr>,
    /// DoH listen addresses (default: the standard DoH listener).
    pub doh_listen: Vec<SocketAddr>,
    /// DoQ listen addresses (default: the standard DoQ listener).
    pub doq_listen: Vec<SocketAddr>,
    /// Port of the `security` and `family` listeners (0: free ports).
    pub profiles_port: u16,
    /// The web listener.
    pub web_listen: SocketAddr,
    /// Exit after this long (for scripted runs); `None` runs until Ctrl-C.
    pub exit_after: Option<Duration>,
}

/// The demo's filter lists: (file, format, text).
const DEMO_LISTS: &[(&str, &str)] = &[
    ("malware.txt", "# demo security list: malware and phishing\nmalware.test\n"),
    ("adult.txt", "# demo family list: adult content\nadult.test\n"),
    ("legal-order.txt", "# demo court order: blocked on every profile\ncensored.test\n"),
];

/// Writes the demo's lists into `dir` and adds the demo profiles to
/// `config`: `unfiltered` (default; only the legal order applies),
/// `security` on 127.0.0.2 and `family` on 127.0.0.3, with their DoH paths.
pub fn add_demo_policy(config: &mut Config, dir: &std::path::Path, profiles_port: u16) -> anyhow::Result<()> {
    use crate::config::ProfileConfig;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (file, text) in DEMO_LISTS {
        std::fs::write(dir.join(file), text).with_context(|| format!("writing {file}"))?;
    }
    let source = |name: &str, file: &str, category: &str| {
        policy::SourceSpec::new(name, dir.join(file), policy::Format::Domains, category)
    };
    let malware =
        policy::SourceSpec { ede: Some(policy::EdeKind::Blocked), ..source("demo-malware", "malware.txt", "malware") };
    let order = policy::SourceSpec {
        legal_basis: Some(policy::Legal {
            authority: "Demo District Court".into(),
            reference: "case 2026-0042".into(),
            url: Some("https://example.org/orders/2026-0042".into()),
        }),
        all_profiles: true,
        ..source("demo-court-order", "legal-order.txt", "court order")
    };
    config.policy.sources = vec![malware, source("demo-adult", "adult.txt", "adult"), order];
    let profile = |name: &str, sources: &[&str], ip: [u8; 4]| ProfileConfig {
        name: name.into(),
        sources: sources.iter().map(|s| s.to_string()).collect(),
        answer: None,
        sinkhole_a: None,
        sinkhole_aaaa: None,
        ttl: None,
        ede: None,
        listen: vec![SocketAddr::from((ip, profiles_port))],
        dot_listen: Vec::new(),
        doh_paths: vec![format!("/{name}/dns-query")],
    };
    config.policy.profiles = vec![
        profile("security", &["demo-malware"], [127, 0, 0, 2]),
        profile("family", &["demo-malware", "demo-adult"], [127, 0, 0, 3]),
    ];
    Ok(())
}

/// The config the demo runs with, given a started lab.
pub fn demo_config(lab: &Lab, listen: Vec<SocketAddr>) -> Config {
    let mut c = Config::default();
    if !listen.is_empty() {
        c.server.listen = listen;
    }
    c.resolver.root_hints = lab.root_hints().iter().map(|s| s.ip().to_string()).collect();
    c.resolver.upstream_port = lab.port();
    c.resolver.do_not_query_localhost = false;
    c.resolver.answer_special_use_locally = false;
    c.resolver.resolution_timeout_ms = 3000;
    // Validate from the lab's root key (generated when the lab was signed).
    c.dnssec.validate = true;
    c.dnssec.builtin_root_anchor = false;
    c.dnssec.trust_anchors = lab.data().trust_anchor.iter().map(anchor_text).collect();
    c
}

/// A trust anchor record in master-file syntax.
pub fn anchor_text(r: &proto::Record) -> String {
    // DNSKEY rdata: flags, protocol, algorithm, then the key in base64.
    let flags = u16::from_be_bytes([r.rdata[0], r.rdata[1]]);
    format!(
        "{} IN DNSKEY {} {} {} {}",
        r.name,
        flags,
        r.rdata[2],
        r.rdata[3],
        domain::utils::base64::encode_string(&r.rdata[4..])
    )
}

/// Runs the demo.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let data = Arc::new(LabData::builtin().context("loading the lab")?);
    let lab = match opts.lab_port {
        Some(p) => Lab::start(data, p).await.context("starting the lab")?,
        None => match Lab::start(data.clone(), 53).await {
            Ok(l) => l,
            Err(_) => Lab::start(data, 0).await.context("starting the lab")?,
        },
    };
    let mut config = demo_config(&lab, opts.listen);
    // A self-signed certificate for the TLS doors, made now.
    let dir = std::env::temp_dir().join(format!("onedot-demo-{}", std::process::id()));
    let (cert_path, key_path) = self_signed(&dir)?;
    config.server.tls_certificate = Some(cert_path.clone());
    config.server.tls_private_key = Some(key_path);
    add_demo_policy(&mut config, &dir.join("lists"), opts.profiles_port)?;
    // The troubleshooting sample (0.05 %) and the store files live with
    // the demo's other files and go when it ends.
    config.telemetry.data_dir = Some(dir.join("data"));
    config.web.listen = Some(opts.web_listen);
    if !opts.dot_listen.is_empty() {
        config.server.dot_listen = opts.dot_listen;
    }
    if !opts.doh_listen.is_empty() {
        config.server.doh_listen = opts.doh_listen;
    }
    if !opts.doq_listen.is_empty() {
        config.server.doq_listen = opts.doq_listen;
    }
    // DDR: clients asking _dns.resolver.arpa learn the encrypted doors.
    config.server.ddr_target = Some("localhost.".to_string());
    let running = run::start(&config).await.context("starting the resolver (is another onedot running?)")?;
    let (udp, _) = running.bound[0];
    let servers = lab.data().servers.len();
    println!("onedot demo — a resolver on the built-in lab internet (offline)");
    println!();
    println!(
        "  lab: {servers} authoritative servers on 127.53.0.0/16 port {}, root at {}",
        lab.port(),
        lab.root_hints().iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
    );
    for (u, t) in &running.bound {
        println!("  resolver: udp {u}  tcp {t}");
    }
    for d in &running.dot {
        println!("  resolver: dot {d}  (self-signed certificate {})", cert_path.display());
    }
    for d in &running.doh {
        println!("  resolver: doh https://{d}/dns-query  (HTTP/1.1, HTTP/2, and HTTP/3 on UDP)");
    }
    for d in &running.doq {
        println!("  resolver: doq {d}  (DNS over QUIC, UDP)");
    }
    for p in &running.profiles {
        for (u, t) in &p.bound {
            println!("  profile {}: udp {u}  tcp {t}", p.name);
        }
        for (d, path) in running.doh.iter().flat_map(|d| p.doh_paths.iter().map(move |path| (d, path))) {
            println!("  profile {}: doh https://{d}{path}", p.name);
        }
    }
    if let Some(w) = running.web {
        println!(
            "  web: http://{w}/  (transparency log http://{w}/transparency, privacy http://{w}/privacy, metrics http://{w}/metrics)"
        );
    }
    println!();
    println!("Try:");
    let (ip, port) = (udp.ip(), udp.port());
    println!("  dig @{ip} -p {port} www.example.test");
    println!("  dig @{ip} -p {port} www.example.test +tcp");
    println!("  dig @{ip} -p {port} nope.example.test          # NXDOMAIN");
    println!("  kdig @{ip} -p {port} c1.chain.test             # a CNAME chain across five zones");
    println!("  onedot query txt.big.test TXT @{ip}:{port}     # too big for UDP: retried over TCP");
    println!("  dig @{ip} -p {port} www.example.test +dnssec    # validated: the ad flag");
    println!("  dig @{ip} -p {port} www.bogus.test +dnssec      # a broken signature: SERVFAIL, EDE 6");
    println!("  onedot query www.dead.test @{ip}:{port}        # SERVFAIL with an Extended DNS Error");
    println!("  dig @{ip} -p {port} censored.test               # a court order: NXDOMAIN, EDE 16 Censored");
    for p in &running.profiles {
        if let Some((u, _)) = p.bound.first() {
            let what = if p.name == "family" { "adult.test     " } else { "malware.test   " };
            println!(
                "  dig @{} -p {} {what}           # the {} profile: blocked, with its EDE",
                u.ip(),
                u.port(),
                p.name
            );
        }
    }
    if let Some(d) = running.doh.first() {
        println!("  dig @{} -p {} +https www.example.test       # DNS over HTTPS", d.ip(), d.port());
    }
    if let Some(d) = running.dot.first() {
        println!("  kdig @{} -p {} +tls www.example.test         # DNS over TLS", d.ip(), d.port());
        println!(
            "  kdig @{} -p {} +tls-ca={} +tls-hostname=localhost www.example.test   # ... checking the certificate",
            d.ip(),
            d.port(),
            cert_path.display()
        );
    }
    println!();
    for (name, t) in [
        ("www.example.test", rtype::A),
        ("www.example.test", rtype::AAAA),
        ("nope.example.test", rtype::A),
        ("www.unsigned.test", rtype::A),
        ("www.bogus.test", rtype::A),
        ("c1.chain.test", rtype::A),
        ("txt.big.test", rtype::TXT),
    ] {
        let a = Ask {
            name: Name::from_ascii(name)?,
            qtype: t,
            server: udp,
            tcp: false,
            dnssec: true,
            recurse: true,
            timeout: Duration::from_secs(5),
        };
        match ask(&a).await {
            Ok((resp, tcp)) => println!("  {}", summarise(name, t, &resp, tcp)),
            Err(e) => println!("  {name}: {e:#}"),
        }
    }
    // The same names through each profile's door.
    let mut doors = vec![("unfiltered".to_string(), udp)];
    doors.extend(running.profiles.iter().filter_map(|p| Some((p.name.clone(), p.bound.first()?.0))));
    for (profile, server) in doors {
        for name in ["malware.test", "adult.test", "censored.test"] {
            let a = Ask {
                name: Name::from_ascii(name)?,
                qtype: rtype::A,
                server,
                tcp: false,
                dnssec: false,
                recurse: true,
                timeout: Duration::from_secs(5),
            };
            match ask(&a).await {
                Ok((resp, tcp)) => println!("  [{profile}] {}", summarise(name, rtype::A, &resp, tcp)),
                Err(e) => println!("  [{profile}] {name}: {e:#}"),
            }
        }
    }
    println!();
    match opts.exit_after {
        Some(d) => {
            println!("Running for {d:?}.");
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = run::until_signal() => {}
            }
        }
        None => {
            println!("Running until Ctrl-C.");
            run::until_signal().await;
        }
    }
    running.shutdown(Duration::from_secs(2), run::Stop::Signal).await;
    drop(lab);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Writes a self-signed certificate for `localhost` and 127.0.0.1 (and its
/// key) into `dir`; returns their paths.
fn self_signed(dir: &std::path::Path) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let cert = rcgen::generate_simple_self_signed(names).context("making a self-signed certificate")?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
    std::fs::write(&key_path, cert.signing_key.serialize_pem())
        .with_context(|| format!("writing {}", key_path.display()))?;
    Ok((cert_path, key_path))
}

/// One line describing a response.
pub fn summarise(name: &str, qtype: u16, resp: &[u8], tcp: bool) -> String {
    let t = rtype::name(qtype).unwrap_or("?");
    let Ok(m) = Message::parse(resp) else { return format!("{name} {t}: unparseable response") };
    let rcode = proto::Rcode::from_flags(m.flags).map_or("?", |r| r.as_str());
    let data: Vec<String> = m
        .answer
        .iter()
        .filter(|r| r.rtype == qtype)
        .map(|r| r.address().map_or_else(|| format!("{} bytes", r.rdata.len()), |a| a.to_string()))
        .collect();
    let via = if tcp { " (over TCP)" } else { "" };
    let ad = if m.has_flag(proto::flags::AD) { " [AD: validated]" } else { "" };
    let ede = m.ede().first().map(|(c, t)| format!(" [EDE {c}: {t}]")).unwrap_or_default();
    let chain = m.answer.iter().filter(|r| r.rtype == rtype::CNAME).count();
    let chain = if chain > 0 { format!(" after {chain} CNAME(s)") } else { String::new() };
    match data.len() {
        0 => format!("{name} {t}: {rcode}{via}{ad}{ede}"),
        n if n > 3 => format!("{name} {t}: {rcode}, {n} records{chain}{via}{ad}"),
        _ => format!("{name} {t}: {rcode} {}{chain}{via}{ad}", data.join(", ")),
    }
}
