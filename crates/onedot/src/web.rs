//! The web listener (127.0.0.1:8080 by default): health, Prometheus
//! metrics, the privacy commitments and the filtering transparency log,
//! as pages and as JSON. Plain HTTP/1.1; it is meant for loopback or an
//! operator network, behind a proxy if public.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::task::JoinSet;

/// What the pages show.
pub struct WebState {
    /// The filtering policy.
    pub policy: Arc<policy::Policy>,
    /// Telemetry (metrics).
    pub observer: Arc<crate::observe::Observer>,
    /// The answer service (validation counts).
    pub service: Arc<recursor::Service>,
    /// Admission (rate limits, cookies, shed resolutions), for metrics.
    pub admission: Arc<doors::Admission>,
    /// The privacy commitments of the running config.
    pub commitments: telemetry::Commitments,
    /// The keyless client of a keyless edge, for metrics.
    pub keyless: Option<keyless::KeylessClient>,
    /// The observatory's published view, when it is on.
    pub observatory: Option<crate::observatory_web::ObservatoryWeb>,
    /// /help, when it is on.
    pub help: Option<Arc<crate::help::Help>>,
}

/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 64;

/// Starts the web listener on `addr`; returns the bound address.
pub async fn serve(addr: SocketAddr, state: Arc<WebState>, tasks: &mut JoinSet<()>) -> anyhow::Result<SocketAddr> {
    serve_async(addr, tasks, move |req, peer| Box::pin(route(req, peer, state.clone()))).await
}

/// A page answering one request (owned) from a peer.
type Page = dyn Fn(Request<hyper::body::Incoming>, SocketAddr) -> doors::BoxFuture<'static, Response<Full<Bytes>>>
    + Send
    + Sync;

/// Serves HTTP/1.1 on `addr` with `page` answering every request (at most
/// [`MAX_CONNECTIONS`] at once, header and connection timeouts); returns
/// the bound address.
pub async fn serve_fn<F>(addr: SocketAddr, tasks: &mut JoinSet<()>, page: F) -> anyhow::Result<SocketAddr>
where
    F: Fn(&Request<hyper::body::Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    serve_async(addr, tasks, move |req, _| {
        let r = page(&req);
        Box::pin(async move { r })
    })
    .await
}

/// [`serve_fn`] with an asynchronous page that is given the peer.
pub async fn serve_async<F>(addr: SocketAddr, tasks: &mut JoinSet<()>, page: F) -> anyhow::Result<SocketAddr>
where
    F: Fn(Request<hyper::body::Incoming>, SocketAddr) -> doors::BoxFuture<'static, Response<Full<Bytes>>>
        + Send
        + Sync
        + 'static,
{
    let (listener, bound) = doors::listen(addr).with_context(|| format!("web listener {addr}"))?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let page: Arc<Page> = Arc::new(page);
    tasks.spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else { return };
            let Ok((stream, peer)) = listener.accept().await else { continue };
            let page = page.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |req| {
                    let page = page.clone();
                    async move { Ok::<_, Infallible>(page(req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
            });
        }
    });
    Ok(bound)
}

/// The most a form posted to /help may send.
const MAX_FORM: usize = 4096;

/// One request: /help here, everything else on a blocking thread (the
/// observatory's pages read SQLite and ClickHouse).
async fn route(req: Request<hyper::body::Incoming>, peer: SocketAddr, state: Arc<WebState>) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    if let Some(help) = state.help.clone()
        && parts.uri.path().starts_with("/help")
    {
        let body = match parts.method {
            Method::POST => match http_body_util::Limited::new(body, MAX_FORM).collect().await {
                Ok(b) => Some(b.to_bytes().to_vec()),
                Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "text/plain; charset=utf-8", "too large\n"),
            },
            _ => None,
        };
        let at = crate::help::Arrival { client: peer.ip(), encrypted: false, http: 1, door: "the web listener" };
        if let Some(r) = help.respond(&parts.method, parts.uri.path(), parts.uri.query(), body.as_deref(), at).await {
            return r;
        }
    }
    tokio::task::spawn_blocking(move || respond(&parts.method, &parts.uri, &state))
        .await
        .unwrap_or_else(|_| reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", "error\n"))
}

/// A response with `status`, `content_type` and `body`, never cached.
pub fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Admission and upstream-limit counters, by action (never by address).
fn keyless_metrics(o: &mut String, k: &keyless::KeylessStats) {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let signed = k.signed.load(Relaxed);
    let _ = write!(
        o,
        "# HELP onedot_keyless_signatures_total TLS handshake signatures by the key servers, by result.\n\
         # TYPE onedot_keyless_signatures_total counter\n\
         onedot_keyless_signatures_total{{result=\"ok\"}} {signed}\n\
         onedot_keyless_signatures_total{{result=\"failed\"}} {}\n\
         # HELP onedot_keyless_signature_seconds_sum Time spent waiting for key server signatures.\n\
         # TYPE onedot_keyless_signature_seconds_sum counter\n\
         onedot_keyless_signature_seconds_sum {}\n\
         # HELP onedot_keyless_servers_up Key servers with a live connection.\n\
         # TYPE onedot_keyless_servers_up gauge\n\
         onedot_keyless_servers_up {}\n\
         # HELP onedot_keyless_unavailable 1 while no key server answers (new TLS handshakes fail).\n\
         # TYPE onedot_keyless_unavailable gauge\n\
         onedot_keyless_unavailable {}\n",
        k.failed.load(Relaxed),
        k.sum_us.load(Relaxed) as f64 / 1e6,
        k.servers_up.load(Relaxed),
        u8::from(k.unavailable.load(Relaxed)),
    );
}

fn admission_metrics(o: &mut String, admission: &doors::Admission, (zone, server): (u64, u64)) {
    use std::fmt::Write;
    {
        use std::sync::atomic::Ordering::Relaxed;
        let x = &doors::xdp::STATS;
        o.push_str("# HELP onedot_xdp_queries_total Do53 queries that came through the AF_XDP fast path: answered in place, handed to the pipeline, or dropped.\n");
        o.push_str("# TYPE onedot_xdp_queries_total counter\n");
        for (result, v) in [("answered", &x.answered), ("missed", &x.missed), ("dropped", &x.dropped)] {
            let _ = writeln!(o, "onedot_xdp_queries_total{{result=\"{result}\"}} {}", v.load(Relaxed));
        }
    }
    o.push_str("# HELP onedot_admission_total What admission did: rate-limit slips and drops, cookies, BADCOOKIE, shed resolutions, networks put in the kernel's drop filter.\n");
    o.push_str("# TYPE onedot_admission_total counter\n");
    for (action, v) in admission.stats().snapshot() {
        let _ = writeln!(o, "onedot_admission_total{{action=\"{action}\"}} {v}");
    }
    o.push_str("# HELP onedot_upstream_limited_total Upstream queries not sent: over a zone's limit or a server's.\n");
    o.push_str("# TYPE onedot_upstream_limited_total counter\n");
    let _ = writeln!(o, "onedot_upstream_limited_total{{limit=\"zone\"}} {zone}");
    let _ = writeln!(o, "onedot_upstream_limited_total{{limit=\"server\"}} {server}");
    o.push_str("# HELP onedot_rate_limit_table_bytes Bytes of the rate-limit table (allocated at start).\n");
    o.push_str("# TYPE onedot_rate_limit_table_bytes gauge\n");
    let _ = writeln!(o, "onedot_rate_limit_table_bytes {}", admission.table_bytes());
    o.push_str("# HELP onedot_kernel_filter_networks Flooding client networks dropped by the kernel's filter now.\n");
    o.push_str("# TYPE onedot_kernel_filter_networks gauge\n");
    let _ = writeln!(o, "onedot_kernel_filter_networks {}", admission.kernel_filtered_networks());
}

fn respond(method: &Method, uri: &hyper::Uri, state: &WebState) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "GET only\n");
    }
    if let Some(web) = &state.observatory
        && let Some(r) = crate::observatory_web::respond(uri.path(), uri.query(), web, now())
    {
        return r;
    }
    match uri.path() {
        "/health" => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/metrics" => {
            let m = &state.observer.metrics;
            m.set_validation(state.service.validation_counts());
            let (rrsets, answers) = (state.service.recursor().cache(), state.service.answers());
            m.set_caches(rrsets.len() as u64, rrsets.weight(), answers.len() as u64, answers.weight());
            let mut text = m.render();
            admission_metrics(&mut text, &state.admission, state.service.recursor().upstream_refused());
            {
                use std::fmt::Write;
                let (started, answered) = state.service.prefetch_stats();
                text.push_str("# HELP onedot_prefetch_total Cached answers resolved again before they expired: started, and those that got an answer.\n");
                text.push_str("# TYPE onedot_prefetch_total counter\n");
                let _ = writeln!(text, "onedot_prefetch_total{{result=\"started\"}} {started}");
                let _ = writeln!(text, "onedot_prefetch_total{{result=\"answered\"}} {answered}");
            }
            if let Some(k) = &state.keyless {
                keyless_metrics(&mut text, k.stats());
            }
            if let Some(o) = &state.observer.observatory {
                text.push_str(&o.render_metrics());
            }
            if let Some(t) = &state.observer.dnstap {
                text.push_str(&t.counters.render());
            }
            reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", text)
        }
        "/privacy.json" => {
            let body = serde_json::json!({
                "commitments": state.commitments,
                "inventory": telemetry::INVENTORY,
            });
            reply(StatusCode::OK, "application/json", serde_json::to_vec_pretty(&body).unwrap_or_default())
        }
        "/privacy" => reply(StatusCode::OK, "text/html; charset=utf-8", privacy_page(&state.commitments)),
        "/transparency.json" | "/api/transparency" => {
            let report = state.policy.transparency(now());
            match serde_json::to_vec_pretty(&report) {
                Ok(body) => reply(StatusCode::OK, "application/json", body),
                Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", "error\n"),
            }
        }
        "/transparency" => {
            reply(StatusCode::OK, "text/html; charset=utf-8", transparency_page(&state.policy.transparency(now())))
        }
        "/" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            "<!doctype html><title>onedot</title><h1>onedot</h1><ul><li><a href=\"/transparency\">transparency log</a> \
             (<a href=\"/transparency.json\">JSON</a>)</li><li><a href=\"/privacy\">privacy</a> \
             (<a href=\"/privacy.json\">JSON</a>)</li><li><a href=\"/help\">help</a></li><li><a href=\"/metrics\">metrics</a></li>\
             <li><a href=\"/health\">health</a></li></ul>\n",
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n"),
    }
}

/// The privacy commitments and inventory as a page: PRIVACY.md's text,
/// with the Markdown table turned into HTML.
fn privacy_page(c: &telemetry::Commitments) -> String {
    let md = telemetry::markdown(c);
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>onedot privacy</title>\
         <style>body{font-family:sans-serif;max-width:60em;margin:auto}td,th{border:1px solid #ccc;padding:.2em .5em}\
         table{border-collapse:collapse}</style></head><body>",
    );
    let mut in_list = false;
    let mut in_table = false;
    for line in md.lines() {
        if let Some(item) = line.strip_prefix("- ") {
            if !in_list {
                h.push_str("<ul>");
                in_list = true;
            }
            h.push_str(&format!("<li>{}</li>", esc(item).replace('`', "")));
            continue;
        }
        if in_list {
            h.push_str("</ul>");
            in_list = false;
        }
        if line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            let cells: Vec<String> =
                line.trim_matches('|').split(" | ").map(|c| esc(c.trim()).replace('`', "")).collect();
            if !in_table {
                h.push_str("<table><tr>");
                h.extend(cells.iter().map(|c| format!("<th>{c}</th>")));
                h.push_str("</tr>");
                in_table = true;
            } else {
                h.push_str("<tr>");
                h.extend(cells.iter().map(|c| format!("<td>{c}</td>")));
                h.push_str("</tr>");
            }
            continue;
        }
        if in_table {
            h.push_str("</table>");
            in_table = false;
        }
        if let Some(t) = line.strip_prefix("## ") {
            h.push_str(&format!("<h2>{}</h2>", esc(t)));
        } else if let Some(t) = line.strip_prefix("# ") {
            h.push_str(&format!("<h1>{}</h1>", esc(t)));
        }
    }
    if in_table {
        h.push_str("</table>");
    }
    h.push_str("<p><a href=\"/privacy.json\">JSON</a></p></body></html>\n");
    h
}

/// Escapes text for HTML.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The transparency log as a self-contained page.
fn transparency_page(r: &policy::transparency::Report) -> String {
    use std::fmt::Write;
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>onedot transparency log</title>\
         <style>body{font-family:sans-serif;max-width:60em;margin:auto}td,th{border:1px solid #ccc;padding:.2em .5em}\
         table{border-collapse:collapse}</style></head><body><h1>What this resolver blocks</h1>",
    );
    let _ = write!(
        h,
        "<p>Generated {}. Every blocked answer carries an Extended DNS Error (15 Blocked, 16 Censored, 17 Filtered) \
         naming its source. Counts are aggregates; no client data is kept. <a href=\"/transparency.json\">JSON</a></p>",
        esc(&r.generated_at)
    );
    h.push_str("<h2>Profiles</h2><table><tr><th>profile</th><th>blocked answer</th><th>sources</th></tr>");
    for p in &r.profiles {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:?}</td><td>{}</td></tr>",
            esc(&p.name),
            p.answer,
            esc(&p.sources.join(", "))
        );
    }
    h.push_str("</table><h2>Sources</h2>");
    for s in &r.sources {
        let _ = write!(
            h,
            "<h3 id=\"{0}\">{0}</h3><p>category {1}, {2:?} list ({3:?}), {4} entries, EDE {5}{6}</p>",
            esc(&s.name),
            esc(&s.category),
            s.kind,
            s.format,
            s.size,
            s.ede,
            if s.all_profiles { ", applies to every profile" } else { "" }
        );
        if let Some(l) = &s.legal_basis {
            let _ = write!(
                h,
                "<p><b>Legal basis:</b> {}, {}{}</p>",
                esc(&l.authority),
                esc(&l.reference),
                l.url.as_deref().map(|u| format!(", {}", esc(u))).unwrap_or_default()
            );
        }
        if let Some(e) = &s.last_error {
            let _ = write!(
                h,
                "<p><b>Last reload failed</b> {}: {} (the previous version serves)</p>",
                esc(&e.at_utc),
                esc(&e.error)
            );
        }
        h.push_str("<table><tr><th>changed</th><th>added</th><th>removed</th><th>size</th><th>examples</th></tr>");
        for c in s.changes.iter().rev() {
            let mut ex: Vec<String> = c.added_sample.iter().take(5).map(|n| format!("+{}", esc(n))).collect();
            ex.extend(c.removed_sample.iter().take(5).map(|n| format!("&minus;{}", esc(n))));
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.at_utc),
                c.added,
                c.removed,
                c.size,
                ex.join(" ")
            );
        }
        h.push_str("</table><p>Blocks per day: ");
        let days: Vec<String> = s.blocks_per_day.iter().map(|d| format!("{} {}", esc(&d.date), d.blocks)).collect();
        h.push_str(&if days.is_empty() { "none yet".to_string() } else { days.join(", ") });
        h.push_str("</p>");
    }
    h.push_str("</body></html>\n");
    h
}
