//! `onedot query`: a small dig-like client: UDP with TCP fallback, TCP,
//! DNS over TLS, over HTTPS (HTTP/2 and HTTP/3), over QUIC, and the DoH
//! JSON API.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use proto::{Name, build::build_query, rtype};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// What to ask and how.
#[derive(Debug, Clone)]
pub struct Ask {
    /// Question name.
    pub name: Name,
    /// Question type.
    pub qtype: u16,
    /// Server.
    pub server: SocketAddr,
    /// Use TCP from the start.
    pub tcp: bool,
    /// Set DO.
    pub dnssec: bool,
    /// Set RD.
    pub recurse: bool,
    /// Per-try timeout.
    pub timeout: Duration,
}

/// Parses `NAME [TYPE] [@SERVER[:PORT]]` in any order.
pub fn parse_args(args: &[String], default_server: SocketAddr) -> anyhow::Result<(Name, u16, SocketAddr)> {
    let mut name = None;
    let mut qtype = None;
    let mut server = default_server;
    for a in args {
        if let Some(s) = a.strip_prefix('@') {
            server = parse_server(s, default_server.port())?;
        } else if qtype.is_none() && name.is_some() && rtype::from_text(a).is_some() {
            qtype = rtype::from_text(a);
        } else if name.is_none() {
            name = Some(Name::from_ascii(a).map_err(|e| anyhow::anyhow!("{a:?} is not a domain name: {e}"))?);
        } else if let Some(t) = rtype::from_text(a) {
            qtype = Some(t);
        } else {
            bail!("unexpected argument {a:?}");
        }
    }
    let name = name.context("usage: onedot query NAME [TYPE] [@SERVER[:PORT]]")?;
    Ok((name, qtype.unwrap_or(rtype::A), server))
}

fn parse_server(s: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = s.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    bail!("{s:?} is not an address or address:port")
}

/// Sends the question and returns the raw response and whether TCP was used.
pub async fn ask(a: &Ask) -> anyhow::Result<(Vec<u8>, bool)> {
    let id: u16 = rand::random();
    let mut q = Vec::new();
    build_query(&mut q, id, a.name.as_wire(), a.qtype, a.recurse, Some(1232), a.dnssec);
    if !a.tcp {
        let bind: SocketAddr = if a.server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(a.server).await?;
        sock.send(&q).await?;
        let mut buf = vec![0u8; 65535];
        let deadline = tokio::time::Instant::now() + a.timeout;
        loop {
            let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
                .await
                .with_context(|| format!("no answer from {} within {:?}", a.server, a.timeout))??;
            if n >= 12 && buf[..2] == id.to_be_bytes() {
                let tc = buf[2] & 0x02 != 0;
                if !tc {
                    return Ok((buf[..n].to_vec(), false));
                }
                break;
            }
        }
    }
    let mut s =
        tokio::time::timeout(a.timeout, TcpStream::connect(a.server)).await.context("TCP connect timed out")??;
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await?;
    let mut len = [0u8; 2];
    tokio::time::timeout(a.timeout, s.read_exact(&mut len)).await.context("TCP answer timed out")??;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    tokio::time::timeout(a.timeout, s.read_exact(&mut buf)).await.context("TCP answer timed out")??;
    Ok((buf, true))
}

/// An encrypted transport for `onedot query`.
#[derive(Debug, Clone)]
pub struct Secure {
    /// Which one.
    pub how: Option<doors::client::Encrypted>,
    /// Use the DoH JSON API (`?name=&type=`) instead of DNS messages.
    pub json: bool,
    /// The name to check in the certificate (default: the address).
    pub tls_name: Option<String>,
    /// The DoH path.
    pub path: String,
    /// How to check the certificate.
    pub verify: doors::client::Verify,
    /// Oblivious DoH: the target (`host:port`) to reach through the relay
    /// named by the server address.
    pub odoh_target: Option<String>,
    /// Local address to connect from.
    pub source: Option<std::net::IpAddr>,
}

/// Runs `onedot query` over an encrypted transport (or the JSON API).
pub async fn run_secure(a: Ask, s: Secure) -> anyhow::Result<()> {
    let client = doors::client::EncryptedClient::from_source(&s.verify, s.source)?;
    let target = doors::client::Target {
        addr: a.server,
        name: s.tls_name.clone().unwrap_or_else(|| a.server.ip().to_string()),
        path: s.path.clone(),
    };
    if s.json {
        let t = rtype::name(a.qtype).map_or_else(|| a.qtype.to_string(), str::to_string);
        let mut q = format!("name={}&type={t}", a.name);
        if a.dnssec {
            q.push_str("&do=1");
        }
        let body = client.get_json(&target, &q, a.timeout).await?;
        println!("{body}");
        return Ok(());
    }
    if let Some(host) = &s.odoh_target {
        return run_odoh(&a, &s, &client, target, host).await;
    }
    let how = s.how.context("no transport")?;
    let id: u16 = rand::random();
    let mut q = Vec::new();
    build_query(&mut q, id, a.name.as_wire(), a.qtype, a.recurse, Some(1232), a.dnssec);
    let started = Instant::now();
    let resp = client.exchange(how, &target, &q, a.timeout).await?;
    let label = match how {
        doors::client::Encrypted::Tls => "TLS",
        doors::client::Encrypted::Https => "HTTPS",
        doors::client::Encrypted::H3 => "HTTP/3",
        doors::client::Encrypted::Quic => "QUIC",
    };
    print_answer(&a, &resp, started.elapsed(), label)
}

/// Oblivious DoH: the target's configurations (fetched from it once, like
/// a key directory), then the sealed query through the relay, which sees
/// neither the question nor the answer.
async fn run_odoh(
    a: &Ask,
    s: &Secure,
    client: &doors::client::EncryptedClient,
    relay: doors::client::Target,
    target_host: &str,
) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let (name, port) = target_host.rsplit_once(':').context("--odoh-target wants host:port")?;
    let addrs: Vec<SocketAddr> = (name, port.parse::<u16>()?).to_socket_addrs()?.collect();
    let addr = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().context("target address")?;
    let keys = doors::client::EncryptedClient::from_source(&s.verify, None)?;
    let directory = doors::client::Target { addr, name: name.to_string(), path: String::new() };
    let (status, configs) = keys.get(&directory, doors::odoh::CONFIGS_PATH, a.timeout).await?;
    if status != 200 {
        bail!("{target_host}{}: HTTP {status}", doors::odoh::CONFIGS_PATH);
    }
    let id: u16 = rand::random();
    let mut q = Vec::new();
    build_query(&mut q, id, a.name.as_wire(), a.qtype, a.recurse, Some(1232), a.dnssec);
    let (sealed, opener) = doors::odoh::seal_query(&configs, &q)?;
    let relay = doors::client::Target {
        path: format!("{}?targethost={target_host}&targetpath={}", doors::odoh::PROXY_PATH, s.path),
        ..relay
    };
    let started = Instant::now();
    let (status, body) = client.post(&relay, doors::odoh::ODOH_MESSAGE, &sealed, a.timeout).await?;
    if status != 200 {
        bail!("relay answered HTTP {status}");
    }
    let resp = opener.open(&body)?;
    print_answer(a, &resp, started.elapsed(), "ODoH")
}

/// Runs `onedot query` and prints the answer dig-style.
pub async fn run(a: Ask) -> anyhow::Result<()> {
    let started = Instant::now();
    let (resp, tcp) = ask(&a).await?;
    print_answer(&a, &resp, started.elapsed(), if tcp { "TCP" } else { "UDP" })
}

fn print_answer(a: &Ask, resp: &[u8], elapsed: std::time::Duration, via: &str) -> anyhow::Result<()> {
    let resp = resp.to_vec();
    match domain::base::Message::from_octets(resp.clone()) {
        Ok(msg) => print!("{}", msg.display_dig_style()),
        Err(e) => bail!("unparseable response ({} bytes): {e}", resp.len()),
    }
    println!(";; Query time: {} msec", elapsed.as_millis());
    println!(";; SERVER: {}#{}({via})", a.server.ip(), a.server.port());
    println!(";; MSG SIZE  rcvd: {}", resp.len());
    Ok(())
}
