//! The observatory on the web listener: `/observatory/api/minutes` and
//! `/observatory/api/hours` publish counts (JSON, or CSV with
//! `format=csv`) for a time range, one country or network, split by any of
//! country, asn, door, rcode, ede; groups of fewer than k queries are
//! never shown.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use observatory::store::{self, Dim, Query, Resolution};

use crate::web::{esc, reply};

/// Where the published view reads from.
#[derive(Debug, Clone)]
pub struct ObservatoryWeb {
    /// The data directory holding `observatory.sqlite`.
    pub data_dir: PathBuf,
    /// The k-anonymity threshold.
    pub k: u64,
    /// What counts as an event.
    pub thresholds: observatory::detect::Thresholds,
    /// Where the chart library is, if anywhere.
    pub assets_dir: Option<PathBuf>,
    /// The fleet's ClickHouse, for the fleet view.
    pub fleet: Option<observatory::clickhouse::ClickHouse>,
}

fn bad(why: String) -> Response<Full<Bytes>> {
    reply(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", why + "\n")
}

/// A `/observatory/...` request, `None` when the path is not one of ours.
pub fn respond(path: &str, query: Option<&str>, web: &ObservatoryWeb, now: u64) -> Option<Response<Full<Bytes>>> {
    match path {
        "/observatory" | "/observatory/" => return Some(front_page(web, now)),
        "/observatory/api/series" => return Some(series(query.unwrap_or(""), web, now)),
        "/observatory/api/fleet" => return Some(fleet(query.unwrap_or(""), web, now)),
        _ => {}
    }
    if let Some(code) = path.strip_prefix("/observatory/country/") {
        return Some(entity_page(web, now, &code.to_ascii_uppercase(), None));
    }
    if let Some(asn) = path.strip_prefix("/observatory/asn/") {
        return Some(match asn.parse::<u32>() {
            Ok(asn) => match country_of(web, asn, now) {
                Some(code) => entity_page(web, now, &code, Some(asn)),
                None => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    "no published traffic from this network\n",
                ),
            },
            Err(_) => bad(format!("{asn:?} is not an AS number")),
        });
    }
    if let Some(file) = path.strip_prefix("/observatory/assets/") {
        return Some(asset(web, file));
    }
    let resolution = match path {
        "/observatory/api/minutes" => Resolution::Minute,
        "/observatory/api/hours" => Resolution::Hour,
        "/observatory/api/events" => return Some(events(query.unwrap_or(""), web, now)),
        _ => return None,
    };
    Some(match parse(query.unwrap_or(""), resolution, now) {
        Ok((q, csv)) => serve(web, &q, csv),
        Err(why) => bad(why),
    })
}

fn parse(query: &str, resolution: Resolution, now: u64) -> Result<(Query, bool), String> {
    let span = match resolution {
        Resolution::Minute => 86_400,
        Resolution::Hour => 7 * 86_400,
    };
    let mut q = Query {
        from: now.saturating_sub(span),
        to: now + 60,
        country: None,
        asn: None,
        by: vec![Dim::Country],
        resolution,
    };
    let mut csv = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let number = |v: &str| v.parse::<u64>().map_err(|_| format!("{k}={v:?} is not a number"));
        match k {
            "from" => q.from = number(v)?,
            "to" => q.to = number(v)?,
            "country" => {
                if observatory::geo::country(v) == observatory::geo::UNKNOWN && v != "--" {
                    return Err(format!("country={v:?} is not a two-letter code"));
                }
                q.country = Some(v.to_ascii_uppercase());
            }
            "asn" => q.asn = Some(u32::try_from(number(v)?).map_err(|_| format!("asn={v} is too large"))?),
            "by" => {
                q.by = v
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(|d| Dim::parse(d).ok_or_else(|| format!("by={d:?}: use country, asn, door, rcode or ede")))
                    .collect::<Result<_, _>>()?;
            }
            "format" => match v {
                "csv" => csv = true,
                "json" => csv = false,
                _ => return Err(format!("format={v:?}: use json or csv")),
            },
            _ => return Err(format!("unknown parameter {k:?}")),
        }
    }
    if q.to <= q.from || q.to - q.from > 400 * 86_400 {
        return Err("from must be before to, at most 400 days apart".into());
    }
    Ok((q, csv))
}

fn serve(web: &ObservatoryWeb, q: &Query, csv: bool) -> Response<Full<Bytes>> {
    let points = store::open_reader(&web.data_dir).and_then(|conn| store::publish(&conn, q, web.k));
    match points {
        Ok(points) if csv => reply(StatusCode::OK, "text/csv; charset=utf-8", store::csv(&points, &q.by)),
        Ok(points) => {
            let body = serde_json::json!({ "k": web.k, "from": q.from, "to": q.to, "points": points });
            reply(StatusCode::OK, "application/json", serde_json::to_vec(&body).unwrap_or_default())
        }
        Err(e) => {
            tracing::warn!(error = %e, "observatory view failed");
            reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "observatory data not available yet\n")
        }
    }
}

/// `from`, `to` (Unix seconds; default the last day) and `format=csv`
/// from a query string, at most `max_days` apart.
fn span(query: &str, now: u64, max_days: u64) -> Result<(u64, u64, bool), String> {
    let (mut from, mut to, mut csv) = (now.saturating_sub(86_400), now + 60, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if (k, v) == ("format", "csv") {
            csv = true;
            continue;
        }
        let Ok(n) = v.parse::<u64>() else { return Err(format!("{k}={v:?} is not a number")) };
        match k {
            "from" => from = n,
            "to" => to = n,
            _ => return Err(format!("unknown parameter {k:?}")),
        }
    }
    if to <= from || to - from > max_days * 86_400 {
        return Err(format!("from must be before to, at most {max_days} days apart"));
    }
    Ok((from, to, csv))
}

/// `/observatory/api/events?from=&to=` (Unix seconds, default the last
/// day, at most a week): the detector run over that span; every event is
/// about a whole country, network or TLD, never a small group.
fn events(query: &str, web: &ObservatoryWeb, now: u64) -> Response<Full<Bytes>> {
    let (from, to, csv) = match span(query, now, 7) {
        Ok(s) => s,
        Err(why) => return bad(why),
    };
    let (from_m, to_m) = (from / 60, to.div_ceil(60));
    let t = web.thresholds;
    let found = store::open_reader(&web.data_dir)
        .and_then(|conn| observatory::detect::load(&conn, from_m, to_m, t.weeks))
        .map(|input| observatory::detect::detect(&input, from_m, to_m, &t));
    match found {
        Ok(events) if csv => {
            let mut out = String::from("kind,country,asn,tld,start,end,depth,confidence,detail\n");
            for e in &events {
                out.push_str(&format!(
                    "{},{},{},{},{},{},{:.3},{:.3},\"{}\"\n",
                    e.kind.as_str(),
                    e.country.as_deref().unwrap_or(""),
                    e.asn.map(|a| a.to_string()).unwrap_or_default(),
                    e.tld.as_deref().unwrap_or(""),
                    e.start,
                    e.end.map(|x| x.to_string()).unwrap_or_default(),
                    e.depth,
                    e.confidence,
                    e.detail.replace('"', "'")
                ));
            }
            reply(StatusCode::OK, "text/csv; charset=utf-8", out)
        }
        Ok(events) => {
            let body = serde_json::json!({ "from": from, "to": to, "thresholds": t, "events": events });
            reply(StatusCode::OK, "application/json", serde_json::to_vec(&body).unwrap_or_default())
        }
        Err(e) => {
            tracing::warn!(error = %e, "observatory events failed");
            reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "observatory data not available yet\n")
        }
    }
}

/// The chart library's two files, from `observatory.assets_dir`.
fn asset(web: &ObservatoryWeb, file: &str) -> Response<Full<Bytes>> {
    let kind = match file {
        "uPlot.iife.min.js" => "text/javascript; charset=utf-8",
        "uPlot.min.css" => "text/css; charset=utf-8",
        _ => return reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n"),
    };
    match web.assets_dir.as_ref().map(|d| std::fs::read(d.join(file))) {
        Some(Ok(bytes)) => {
            let mut r = reply(StatusCode::OK, kind, bytes);
            r.headers_mut()
                .insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("max-age=3600"));
            r
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "the chart library is not installed (observatory.assets_dir)\n",
        ),
    }
}

/// The detector's input for the last day, and the events in it.
fn last_day(
    web: &ObservatoryWeb,
    now: u64,
) -> Result<(observatory::detect::Input, Vec<observatory::detect::Event>, u64, u64), observatory::ObservatoryError> {
    let (to, from) = (now / 60 + 1, now / 60 + 1 - 1440);
    let conn = store::open_reader(&web.data_dir)?;
    let input = observatory::detect::load(&conn, from, to, web.thresholds.weeks)?;
    let events = observatory::detect::detect(&input, from, to, &web.thresholds);
    Ok((input, events, from, to))
}

/// The country of the most traffic from `asn` in the last day.
fn country_of(web: &ObservatoryWeb, asn: u32, now: u64) -> Option<String> {
    let conn = store::open_reader(&web.data_dir).ok()?;
    let q = Query {
        from: now.saturating_sub(86_400),
        to: now + 60,
        country: None,
        asn: Some(asn),
        by: vec![Dim::Country],
        resolution: Resolution::Hour,
    };
    let mut points = store::publish(&conn, &q, web.k).ok()?;
    points.sort_by_key(|p| std::cmp::Reverse(p.count));
    points.into_iter().next().and_then(|p| p.country)
}

/// `YYYY-MM-DD HH:MM UTC`.
fn utc(t: u64) -> String {
    let s = t % 86_400;
    format!("{} {:02}:{:02} UTC", proto::time::date(t), s / 3600, s / 60 % 60)
}

const STYLE: &str = "body{font-family:sans-serif;max-width:70em;margin:1em auto;padding:0 1em}\
td,th{border-bottom:1px solid #ddd;padding:.2em .6em;text-align:left}table{border-collapse:collapse}\
.shutdown{color:#b71c1c}.route{color:#e65100}.censorship{color:#4a148c}.upstream_outage{color:#0d47a1}";

fn page(title: &str, body: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <link rel=\"stylesheet\" href=\"/observatory/assets/uPlot.min.css\"><style>{STYLE}</style></head>\
         <body><p><a href=\"/observatory\">observatory</a></p><h1>{t}</h1>{body}</body></html>\n",
        t = esc(title)
    );
    reply(StatusCode::OK, "text/html; charset=utf-8", html)
}

/// The events as an HTML list (no script needed).
fn events_list(events: &[&observatory::detect::Event]) -> String {
    if events.is_empty() {
        return "<p id=\"events\">No events in the last 24 hours.</p>".into();
    }
    let mut h = String::from("<ul id=\"events\">");
    for e in events {
        let place = match (&e.country, e.asn, &e.tld) {
            (Some(c), Some(a), _) => format!(
                "<a href=\"/observatory/asn/{a}\">AS{a}</a> in <a href=\"/observatory/country/{c}\">{c}</a>",
                c = esc(c)
            ),
            (Some(c), None, _) => format!("<a href=\"/observatory/country/{c}\">{c}</a>", c = esc(c)),
            (None, _, Some(t)) => format!(".{}", esc(t)),
            _ => String::new(),
        };
        let end = e.end.map_or_else(|| "ongoing".to_string(), utc);
        h.push_str(&format!(
            "<li class=\"{k}\"><b>{k}</b> {place}: {} to {end}, depth {:.2}, confidence {:.2}. {}</li>",
            utc(e.start),
            e.depth,
            e.confidence,
            esc(&e.detail),
            k = e.kind.as_str(),
        ));
    }
    h.push_str("</ul>");
    h
}

/// The front page: current events, and the countries seen in the last
/// hour (groups of at least k).
fn front_page(web: &ObservatoryWeb, now: u64) -> Response<Full<Bytes>> {
    let (events, countries) = match last_day(web, now) {
        Ok((_, events, _, _)) => {
            let conn = store::open_reader(&web.data_dir);
            let q = Query {
                from: now.saturating_sub(3600),
                to: now + 60,
                country: None,
                asn: None,
                by: vec![Dim::Country],
                resolution: Resolution::Hour,
            };
            let mut points = conn.and_then(|c| store::publish(&c, &q, web.k)).unwrap_or_default();
            points.sort_by_key(|p| std::cmp::Reverse(p.count));
            (events, points)
        }
        Err(e) => {
            tracing::warn!(error = %e, "observatory page");
            (Vec::new(), Vec::new())
        }
    };
    let mut body = String::from("<h2>Events, last 24 hours</h2>");
    body.push_str(&events_list(&events.iter().collect::<Vec<_>>()));
    body.push_str("<h2>Countries this hour</h2><table><tr><th>country</th><th>queries</th></tr>");
    for p in countries.iter().filter(|p| p.country.as_deref() != Some("--")) {
        let c = esc(p.country.as_deref().unwrap_or(""));
        body.push_str(&format!("<tr><td><a href=\"/observatory/country/{c}\">{c}</a></td><td>{}</td></tr>", p.count));
    }
    body.push_str("</table>");
    if web.fleet.is_some() {
        body.push_str("<h2>Fleet this hour (every node, from ClickHouse)</h2>");
        match fleet_hour(web, now) {
            Ok(rows) => {
                body.push_str("<table id=\"fleet\"><tr><th>country</th><th>queries</th><th>nodes</th></tr>");
                for (c, n, nodes) in rows {
                    let c = esc(&c);
                    body.push_str(&format!("<tr><td>{c}</td><td>{n}</td><td>{nodes}</td></tr>"));
                }
                body.push_str("</table>");
            }
            Err(e) => body.push_str(&format!("<p>ClickHouse did not answer: {}</p>", esc(&e.to_string()))),
        }
    }
    body.push_str(
        "<p>JSON: <a href=\"/observatory/api/events\">events</a>, \
        <a href=\"/observatory/api/hours?by=country\">hours by country</a> \
        (<a href=\"/observatory/api/hours?by=country&amp;format=csv\">CSV</a>).</p>",
    );
    page("onedot observatory", &body)
}

/// A country's (or a network's) page: the last 24 hours against the
/// expected curve, its events, and (for a country) its networks.
fn entity_page(web: &ObservatoryWeb, now: u64, country: &str, asn: Option<u32>) -> Response<Full<Bytes>> {
    if observatory::geo::country(country) == observatory::geo::UNKNOWN {
        return bad(format!("{country:?} is not a two-letter country code"));
    }
    let title = match asn {
        Some(a) => format!("AS{a} ({country})"),
        None => format!("Country {country}"),
    };
    let events = last_day(web, now).map(|(_, e, _, _)| e).unwrap_or_default();
    let mine: Vec<_> = events
        .iter()
        .filter(|e| e.country.as_deref() == Some(country) && (asn.is_none() || e.asn == asn || e.asn.is_none()))
        .collect();
    let api = match asn {
        Some(a) => format!("/observatory/api/series?country={country}&asn={a}"),
        None => format!("/observatory/api/series?country={country}"),
    };
    let mut body = format!(
        "<h2>Queries a minute, last 24 hours, against the expected</h2>\
         <div id=\"chart\"></div><noscript><p>The chart needs JavaScript; the data: <a href=\"{api}\">{api}</a>.</p></noscript>\
         <script src=\"/observatory/assets/uPlot.iife.min.js\"></script>\
         <script>\
         fetch('{api}').then(r => r.json()).then(d => {{\
           if (typeof uPlot === 'undefined') {{ document.getElementById('chart').textContent = 'The chart library is not installed.'; return; }}\
           new uPlot({{title: '{title}', width: Math.min(1000, window.innerWidth - 40), height: 360,\
             series: [{{}}, {{label: 'seen', stroke: '#1565c0', width: 1.5}}, {{label: 'expected', stroke: '#9e9e9e', dash: [6, 4], width: 1.5}}]}},\
             [d.t, d.seen, d.expected], document.getElementById('chart'));\
         }});\
         </script><h2>Events</h2>",
        title = esc(&title)
    );
    body.push_str(&events_list(&mine));
    if asn.is_none()
        && let Ok(conn) = store::open_reader(&web.data_dir)
    {
        let q = Query {
            from: now.saturating_sub(3600),
            to: now + 60,
            country: Some(country.to_string()),
            asn: None,
            by: vec![Dim::Asn],
            resolution: Resolution::Hour,
        };
        let mut points = store::publish(&conn, &q, web.k).unwrap_or_default();
        points.sort_by_key(|p| std::cmp::Reverse(p.count));
        body.push_str("<h2>Networks this hour</h2><table><tr><th>network</th><th>queries</th></tr>");
        for p in points {
            let a = p.asn.unwrap_or(0);
            body.push_str(&format!("<tr><td><a href=\"/observatory/asn/{a}\">AS{a}</a></td><td>{}</td></tr>", p.count));
        }
        body.push_str("</table>");
    }
    page(&title, &body)
}

/// `/observatory/api/series?country=XX[&asn=N]`: the last 24 hours a
/// minute, seen and expected; a minute below k is `null`.
fn series(query: &str, web: &ObservatoryWeb, now: u64) -> Response<Full<Bytes>> {
    let (mut country, mut asn) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("country", v) if observatory::geo::country(v) != observatory::geo::UNKNOWN => {
                country = Some(v.to_ascii_uppercase())
            }
            ("asn", v) => match v.parse::<u32>() {
                Ok(a) => asn = Some(a),
                Err(_) => return bad(format!("asn={v:?} is not a number")),
            },
            (k, v) => return bad(format!("{k}={v:?}: use country=XX and optionally asn=N")),
        }
    }
    let Some(country) = country else { return bad("country=XX is required".into()) };
    let (to, from) = (now / 60 + 1, now / 60 + 1 - 1440);
    let input =
        store::open_reader(&web.data_dir).and_then(|c| observatory::detect::load(&c, from, to, web.thresholds.weeks));
    let Ok(input) = input else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "observatory data not available yet\n",
        );
    };
    let (seen, expected) = observatory::detect::overlay(&input, &country, asn, from, to, web.thresholds.weeks);
    let k = web.k as f64;
    let body = serde_json::json!({
        "country": country,
        "asn": asn,
        "k": web.k,
        "t": (from..to).map(|m| m * 60).collect::<Vec<_>>(),
        "seen": seen.iter().map(|v| (*v >= k).then_some(*v)).collect::<Vec<_>>(),
        "expected": expected.iter().map(|v| v.filter(|x| *x >= k).map(|x| (x * 10.0).round() / 10.0)).collect::<Vec<_>>(),
    });
    reply(StatusCode::OK, "application/json", serde_json::to_vec(&body).unwrap_or_default())
}

/// The fleet's last hour by country: (country, queries, nodes), most first.
fn fleet_hour(web: &ObservatoryWeb, now: u64) -> Result<Vec<(String, u64, u64)>, observatory::ObservatoryError> {
    match &web.fleet {
        Some(ch) => ch.fleet_totals(now.saturating_sub(3600), now + 60, web.k),
        None => Ok(Vec::new()),
    }
}

/// `/observatory/api/fleet?from=&to=` (default the last day): every
/// node's minutes from ClickHouse, summed by minute and country; groups
/// below k left out.
fn fleet(query: &str, web: &ObservatoryWeb, now: u64) -> Response<Full<Bytes>> {
    let Some(ch) = &web.fleet else {
        return reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "no observatory.clickhouse configured\n");
    };
    let (from, to) = match span(query, now, 31) {
        Ok((from, to, false)) => (from, to),
        Ok(_) => return bad("format=csv is not offered here".into()),
        Err(why) => return bad(why),
    };
    match ch.fleet_by_country(from, to, web.k) {
        Ok(rows) => {
            let points: Vec<_> = rows
                .into_iter()
                .map(|(t, c, n, nodes)| serde_json::json!({ "t": t, "country": c, "count": n, "nodes": nodes }))
                .collect();
            let body = serde_json::json!({ "k": web.k, "from": from, "to": to, "points": points });
            reply(StatusCode::OK, "application/json", serde_json::to_vec(&body).unwrap_or_default())
        }
        Err(e) => reply(StatusCode::BAD_GATEWAY, "text/plain; charset=utf-8", format!("{e}\n")),
    }
}
