//! `/help` (as 1.1.1.1/help does it): which door and profile the visitor
//! came through, encrypted or not, whether answers are validated, which
//! node answered; a resolution trace for a name, run from an empty cache
//! of its own so every server asked shows with its timing and the DNSSEC
//! status at the end, to paste into a support request (nothing of it is
//! logged or kept); and, when the operator turns it on, a public purge of
//! one name from the cache, rate-limited per network and never for a name
//! under a legal order. Served on the web listener and on the DoH
//! listeners (where the visitor's DNS-over-HTTPS door is the same).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};

use crate::web::reply;

/// How the visitor's request came.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// The client's address (rate limits only; never shown in full, never
    /// kept).
    pub client: IpAddr,
    /// Over TLS (a DoH listener) or plain HTTP (the web listener).
    pub encrypted: bool,
    /// The HTTP version (1, 2 or 3).
    pub http: u8,
    /// The listener's kind, as shown.
    pub door: &'static str,
}

/// Requests per network within a window, in a table that never grows
/// past its bound.
struct Limiter {
    window: Duration,
    per_network: u32,
    total: u32,
    state: Mutex<(Instant, u32, HashMap<IpAddr, u32>)>,
}

impl Limiter {
    fn new(window: Duration, per_network: u32, total: u32) -> Limiter {
        Limiter { window, per_network, total, state: Mutex::new((Instant::now(), 0, HashMap::new())) }
    }

    /// Takes one request from `client`'s network, if it has any left.
    fn take(&self, client: IpAddr) -> bool {
        let net = telemetry::truncate(client);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.0.elapsed() >= self.window || s.2.len() > 10_000 {
            *s = (Instant::now(), 0, HashMap::new());
        }
        if s.1 >= self.total {
            return false;
        }
        let n = s.2.entry(net).or_insert(0);
        if *n >= self.per_network {
            return false;
        }
        *n += 1;
        s.1 += 1;
        true
    }
}

/// What /help needs.
pub struct Help {
    node: String,
    dnssec: bool,
    purge: bool,
    default_profile: String,
    service: Arc<recursor::Service>,
    policy: Arc<policy::Policy>,
    /// Forward and stub zones: their servers are the operator's to know.
    private: Vec<proto::Name>,
    traces: Limiter,
    purges: Limiter,
    running: tokio::sync::Semaphore,
}

/// Longest a trace may run.
const TRACE_LIMIT: Duration = Duration::from_secs(15);

impl Help {
    /// /help for `service` as configured.
    pub fn new(config: &crate::config::Config, service: Arc<recursor::Service>, policy: Arc<policy::Policy>) -> Help {
        let node = config.web.node_name.clone().unwrap_or_else(crate::observe::host_name);
        Help {
            node,
            dnssec: config.dnssec.validate,
            purge: config.web.public_purge,
            default_profile: config.policy.default_profile.clone(),
            service,
            policy,
            private: config
                .forward_zones
                .iter()
                .chain(&config.stub_zones)
                .filter_map(|z| proto::Name::from_ascii(&z.name).ok())
                .collect(),
            traces: Limiter::new(Duration::from_secs(60), 6, 120),
            purges: Limiter::new(Duration::from_secs(60), 2, 30),
            running: tokio::sync::Semaphore::new(4),
        }
    }

    /// Answers a request under /help, or `None` for another path.
    pub async fn respond(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: Option<&[u8]>,
        at: Arrival,
    ) -> Option<Response<Full<Bytes>>> {
        let params = |text: Option<&str>| -> Vec<(String, String)> {
            text.unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), doors::percent_decode(&v.replace('+', " "))))
                .collect()
        };
        let get = |ps: &[(String, String)], k: &str| ps.iter().find(|(n, _)| n == k).map(|(_, v)| v.trim().to_string());
        Some(match (method, path) {
            (&Method::GET | &Method::HEAD, "/help" | "/help/") => self.page(at, None),
            (&Method::GET, "/help.json") => {
                let v = serde_json::json!({
                    "node": self.node,
                    "version": env!("CARGO_PKG_VERSION"),
                    "door": at.door,
                    "encrypted": at.encrypted,
                    "http": at.http,
                    "profile": self.default_profile,
                    "dnssec_validation": self.dnssec,
                    "public_purge": self.purge,
                });
                reply(StatusCode::OK, "application/json", serde_json::to_vec_pretty(&v).unwrap_or_default())
            }
            (&Method::GET, "/help/trace") => {
                let ps = params(query);
                let json = get(&ps, "format").as_deref() == Some("json");
                let (status, trace) = self.trace(get(&ps, "name"), get(&ps, "type"), at.client).await;
                if json {
                    reply(status, "application/json", serde_json::to_vec_pretty(&trace).unwrap_or_default())
                } else {
                    let mut r = self.page(at, Some(Section::Trace(trace)));
                    *r.status_mut() = status;
                    r
                }
            }
            (&Method::POST, "/help/purge") => {
                let ps = params(body.map(|b| std::str::from_utf8(b).unwrap_or("")));
                let (status, outcome) = self.purge(get(&ps, "name"), at.client).await;
                let mut r = self.page(at, Some(Section::Purge(outcome)));
                *r.status_mut() = status;
                r
            }
            _ if path.starts_with("/help") => reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n"),
            _ => return None,
        })
    }

    async fn trace(
        &self,
        name: Option<String>,
        qtype: Option<String>,
        client: IpAddr,
    ) -> (StatusCode, serde_json::Value) {
        let fail = |status, why: &str| (status, serde_json::json!({ "error": why }));
        let Some(text) = name.filter(|n| !n.is_empty()) else {
            return fail(StatusCode::BAD_REQUEST, "give a name to trace");
        };
        let Ok(qname) = proto::Name::from_ascii(&text) else {
            return fail(StatusCode::BAD_REQUEST, "that is not a domain name");
        };
        let type_text = qtype.filter(|t| !t.is_empty()).unwrap_or_else(|| "A".into());
        let Some(t) = proto::rtype::from_text(&type_text) else {
            return fail(StatusCode::BAD_REQUEST, "unknown record type");
        };
        if proto::rtype::is_meta(t) {
            return fail(StatusCode::BAD_REQUEST, "that type is not one a resolver asks for");
        }
        if self.private.iter().any(|z| qname.is_subdomain_of(z)) {
            return fail(StatusCode::FORBIDDEN, "this name is resolved through the operator's own servers: no trace");
        }
        if let Some(order) = self.legal_order(&qname) {
            return fail(StatusCode::FORBIDDEN, &order);
        }
        if !self.traces.take(client) {
            return fail(StatusCode::TOO_MANY_REQUESTS, "too many traces from your network; wait a minute");
        }
        let Ok(_slot) = self.running.try_acquire() else {
            return fail(StatusCode::SERVICE_UNAVAILABLE, "this node is running other traces; try again shortly");
        };
        let started = Instant::now();
        let traced = tokio::time::timeout(TRACE_LIMIT, self.service.recursor().trace(&qname, t)).await;
        let Ok((result, steps)) = traced else {
            return fail(StatusCode::GATEWAY_TIMEOUT, "the trace took longer than 15 s");
        };
        let (outcome, security, answer) = match &result {
            Ok(r) => (
                format!("{:?}", r.outcome),
                security_text(&r.security),
                r.answer.iter().filter(|rec| rec.rtype != proto::rtype::RRSIG).map(record_text).collect(),
            ),
            Err(e) => ("failed".to_string(), e.to_string(), Vec::<String>::new()),
        };
        (
            StatusCode::OK,
            serde_json::json!({
                "node": self.node,
                "version": env!("CARGO_PKG_VERSION"),
                "question": format!("{qname} {}", proto::rtype::name(t).unwrap_or(&type_text)),
                "outcome": outcome,
                "dnssec": security,
                "answer": answer,
                "ms": started.elapsed().as_millis() as u64,
                "servers_asked": steps,
            }),
        )
    }

    /// Why `qname` may not be traced or purged here: it is under a legal
    /// order (which applies to every profile).
    fn legal_order(&self, qname: &proto::Name) -> Option<String> {
        let mut buf = [0u8; proto::name::MAX_NAME_LEN];
        let lower = proto::name::lower_into(qname.as_wire(), &mut buf);
        match self.policy.profile(0).check_name(lower) {
            policy::Verdict::Block(b) if b.ede.code == proto::ede::code::CENSORED => {
                Some(format!("{qname} is under a legal order: it cannot be traced or purged here"))
            }
            _ => None,
        }
    }

    async fn purge(&self, name: Option<String>, client: IpAddr) -> (StatusCode, String) {
        if !self.purge {
            return (StatusCode::FORBIDDEN, "public purge is off on this node".into());
        }
        let Some(qname) = name.as_deref().and_then(|n| proto::Name::from_ascii(n).ok()) else {
            return (StatusCode::BAD_REQUEST, "give a domain name to purge".into());
        };
        if let Some(order) = self.legal_order(&qname) {
            return (StatusCode::FORBIDDEN, order);
        }
        if !self.purges.take(client) {
            return (StatusCode::TOO_MANY_REQUESTS, "too many purges from your network; wait a minute".into());
        }
        // Both caches are walked: on a blocking thread, not a door's worker.
        let (service, name) = (self.service.clone(), qname.clone());
        let dropped = tokio::task::spawn_blocking(move || crate::control::flush_name(&service, &name, None)).await;
        let Ok((a, r)) = dropped else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "the purge failed".into());
        };
        tracing::info!(answers = a, rrsets = r, "a name was purged from /help");
        (StatusCode::OK, format!("{qname}: {a} answers and {r} record sets dropped; the next query resolves it afresh"))
    }

    fn page(&self, at: Arrival, section: Option<Section>) -> Response<Full<Bytes>> {
        let mut h = String::with_capacity(4096);
        h.push_str(
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>onedot: help</title>\
             <meta name=viewport content='width=device-width'><style>body{font:15px/1.5 system-ui,sans-serif;\
             max-width:52em;margin:2em auto;padding:0 1em}td{padding:.2em 1em .2em 0}th{text-align:left;\
             padding-right:1em}pre{background:#f4f4f4;padding:1em;overflow:auto}.yes{color:#070}.no{color:#a00}\
             </style></head><body><h1>onedot: help</h1>",
        );
        let yes_no = |b: bool, y: &str, n: &str| {
            if b { format!("<span class=yes>{y}</span>") } else { format!("<span class=no>{n}</span>") }
        };
        let _ = write!(
            h,
            "<table id=connection><tr><th>Node</th><td id=node>{node}</td></tr>\
             <tr><th>Version</th><td>onedot {version}</td></tr>\
             <tr><th>You came through</th><td id=door>{door}, HTTP/{http}</td></tr>\
             <tr><th>Encrypted</th><td id=encrypted>{enc}</td></tr>\
             <tr><th>Filtering profile</th><td id=profile>{profile}</td></tr>\
             <tr><th>DNSSEC validation</th><td id=dnssec>{dnssec}</td></tr></table>\
             <p>This page shows how your browser reached this node. Your DNS queries reach it the same way when \
             your device uses this node's address, or its DNS-over-HTTPS URL, as its resolver.</p>",
            node = esc(&self.node),
            version = env!("CARGO_PKG_VERSION"),
            door = at.door,
            http = at.http,
            enc = yes_no(at.encrypted, "yes (TLS)", "no (plain HTTP)"),
            profile = esc(&self.default_profile),
            dnssec = yes_no(self.dnssec, "on: answers are validated", "off"),
        );
        h.push_str(
            "<h2>Trace a name</h2><p>Resolves the name from an empty cache of its own, so you see every server \
             asked and how long each took, and the DNSSEC status. Nothing of it is logged or kept. Paste the \
             result into your support request.</p><form id=trace method=get action='/help/trace'>\
             <input name=name placeholder='example.com' required> <input name=type value=A size=6> \
             <button type=submit>Trace</button></form>",
        );
        if let Some(Section::Trace(t)) = &section {
            h.push_str("<pre id=result>");
            h.push_str(&esc(&trace_text(t)));
            h.push_str("</pre>");
        }
        if self.purge {
            h.push_str(
                "<h2>Purge a name</h2><p>Drops one name from this node's cache, so the next query fetches it \
                 afresh (after you changed its records, say). Limited per network.</p>\
                 <form id=purge method=post action='/help/purge'><input name=name placeholder='example.com' required> \
                 <button type=submit>Purge</button></form>",
            );
        }
        if let Some(Section::Purge(text)) = &section {
            let _ = write!(h, "<p id=purged>{}</p>", esc(text));
        }
        h.push_str("</body></html>");
        reply(StatusCode::OK, "text/html; charset=utf-8", h)
    }
}

enum Section {
    Trace(serde_json::Value),
    Purge(String),
}

/// A trace as plain text, for pasting.
fn trace_text(t: &serde_json::Value) -> String {
    if let Some(e) = t["error"].as_str() {
        return format!("error: {e}");
    }
    let mut out = String::new();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let _ = writeln!(out, ";; onedot {} trace of {} from node {}", s(&t["version"]), s(&t["question"]), s(&t["node"]));
    for step in t["servers_asked"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "+{:>5} ms  {:<22} {} {}{}  {} ms  {}",
            step["at_ms"],
            s(&step["server"]),
            s(&step["qname"]),
            s(&step["qtype"]),
            if step["tcp"] == true { " (TCP)" } else { "" },
            step["ms"],
            s(&step["outcome"]),
        );
    }
    let _ = writeln!(out, ";; outcome: {}, DNSSEC: {}, {} ms", s(&t["outcome"]), s(&t["dnssec"]), t["ms"]);
    for a in t["answer"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "{}", s(a));
    }
    out
}

/// A DNSSEC status as a user reads it.
fn security_text(s: &recursor::Security) -> String {
    match s {
        recursor::Security::Secure => "secure".into(),
        recursor::Security::Insecure => "insecure (the zone is not signed)".into(),
        recursor::Security::Bogus(b) => format!("bogus: {b}"),
        recursor::Security::Unsupported(e) => format!("insecure: {}", e.text),
        recursor::Security::Indeterminate => "not validated".into(),
    }
}

/// A record in presentation form, for the common types; others in the
/// generic form of RFC 3597.
fn record_text(r: &proto::Record) -> String {
    use proto::rtype;
    let name_at = |b: &[u8]| proto::Name::from_wire(b).map_or_else(|_| "?".into(), |n| n.to_string());
    let data = match (r.rtype, r.rdata.len()) {
        (rtype::A, 4) => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(&r.rdata[..]).unwrap_or_default()).to_string(),
        (rtype::AAAA, 16) => {
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&r.rdata[..]).unwrap_or_default()).to_string()
        }
        (rtype::CNAME | rtype::NS | rtype::PTR | rtype::DNAME, _) => name_at(&r.rdata),
        (rtype::MX, n) if n > 2 => {
            format!("{} {}", u16::from_be_bytes([r.rdata[0], r.rdata[1]]), name_at(&r.rdata[2..]))
        }
        _ => format!("\\# {} {}", r.rdata.len(), r.rdata.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    };
    let t = rtype::name(r.rtype).map_or(format!("TYPE{}", r.rtype), str::to_string);
    format!("{} {} IN {t} {data}", r.name, r.ttl)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}
