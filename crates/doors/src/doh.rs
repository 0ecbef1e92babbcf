//! DNS over HTTPS (RFC 8484) over HTTP/1.1, HTTP/2 and HTTP/3: GET with
//! `?dns=` (base64url, no padding) and POST `application/dns-message` on
//! the configured paths; `Cache-Control: max-age` from the answer's
//! smallest TTL; `Alt-Svc` on HTTP/1.1 and HTTP/2 answers when HTTP/3
//! listens on the same port; malformed requests get the right HTTP
//! status, never a crash.
//!
//! An HTTP/2 connection runs its streams in its own task (`StreamQueue`
//! and `drive`) rather than one spawned task each: the answers of every
//! stream that is ready are then written together, one TLS write for many
//! answers instead of one each (the write was a third of a DoH query's
//! cost).

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use rustls::ServerConfig;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::odoh::{self, Oblivious};
use crate::tcp::{accept_each, listen};
use crate::{Client, Door, DoorError, Fast, Handler, InFlight, ProxyTrust, TcpLimits};

/// The media type of DNS messages over HTTP.
pub const DNS_MESSAGE: &str = "application/dns-message";
/// The media type of the JSON API.
pub const DNS_JSON: &str = "application/dns-json";
/// Largest request body or decoded `dns` parameter accepted.
pub(crate) const MAX_MESSAGE: usize = 65535;

/// Listens for DoH on `addr` (TLS with ALPN h2 and http/1.1) and answers
/// each URL path of `routes` with its handler (one per filtering profile).
/// Returns the bound address.
#[allow(clippy::too_many_arguments)] // the listener's whole configuration, each part distinct
pub async fn serve_doh(
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    site: DohSite,
    limits: TcpLimits,
    proxy: ProxyTrust,
    with_h3: bool,
    inflight: InFlight,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, DoorError> {
    let (listener, bound) = listen(addr)?;
    // HTTP/3 answers on the same port over UDP (RFC 9114 §3.1.1).
    let alt_svc =
        with_h3.then(|| header::HeaderValue::from_str(&format!("h3=\":{}\"; ma=86400", bound.port())).ok()).flatten();
    let routes = Arc::new(site);
    let acceptor = TlsAcceptor::from(tls);
    tasks.spawn(accept_each(listener, limits, proxy, "doh", move |stream, peer| {
        let (acceptor, routes, inflight, alt_svc) =
            (acceptor.clone(), routes.clone(), inflight.clone(), alt_svc.clone());
        let client = Client { door: Door::Doh, addr: peer.ip() };
        async move {
            let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                _ => return,
            };
            let service = service_fn(move |req| {
                let (routes, inflight, alt_svc) = (routes.clone(), inflight.clone(), alt_svc.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let read = async move || Limited::new(body, MAX_MESSAGE).collect().await.ok().map(|b| b.to_bytes());
                    let mut r = respond(&parts, read, &routes, client, inflight).await;
                    if let Some(v) = alt_svc {
                        r.headers_mut().insert(header::ALT_SVC, v);
                    }
                    Ok::<_, Infallible>(r)
                }
            });
            let streams = StreamQueue::default();
            let mut builder = Builder::new(streams.clone());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.read_timeout);
            builder.http2().max_concurrent_streams(limits.max_in_flight as u32);
            if let Err(e) = drive(builder.serve_connection(TokioIo::new(tls), service), &streams).await {
                tracing::debug!(error = %e, "doh connection ended");
            }
        }
    }));
    Ok(bound)
}

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// hyper's executor for one connection's HTTP/2 streams: it only queues
/// them, for [`drive`] to run in the connection's task.
#[derive(Clone, Default)]
struct StreamQueue(Arc<Mutex<Vec<StreamFuture>>>);

impl StreamQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StreamFuture>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<F: Future<Output = ()> + Send + 'static> hyper::rt::Executor<F> for StreamQueue {
    fn execute(&self, fut: F) {
        self.lock().push(Box::pin(fut));
    }
}

/// Runs a connection and the streams it starts in one task: streams are
/// polled first, so the answers that are ready are all queued before the
/// connection writes, and it writes them together. The streams end with
/// the connection.
async fn drive<C: Future>(conn: C, queue: &StreamQueue) -> C::Output {
    let mut conn = std::pin::pin!(conn);
    let mut streams = FuturesUnordered::new();
    std::future::poll_fn(|cx| {
        // A few rounds (the connection reads, the new streams answer, the
        // connection writes), then a yield to the other tasks.
        for _ in 0..8 {
            streams.extend(queue.lock().drain(..));
            while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
            if let Poll::Ready(out) = conn.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if queue.lock().is_empty() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// One DNS query through the handler: the cache-hit path first, the full
/// answer (counted as in flight) otherwise.
async fn ask(
    handler: &dyn Handler,
    client: Client,
    inflight: &InFlight,
    query: &[u8],
    out: &mut Vec<u8>,
) -> Option<usize> {
    match handler.try_fast(query, client, out) {
        Fast::Answered(n) => Some(n),
        Fast::Drop => None,
        Fast::Miss => {
            let _guard = inflight.enter();
            handler.answer(query, client, out).await
        }
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// Answers one DoH request whatever the HTTP version: `read_body` reads the
/// body (at most `MAX_MESSAGE` octets; `None` when larger), and is called
/// only for POST. Public (hidden) for the fuzz target that feeds it
/// hostile requests; the doors call it.
#[doc(hidden)]
pub async fn respond<F, Fut>(
    req: &http::request::Parts,
    read_body: F,
    site: &DohSite,
    client: Client,
    inflight: InFlight,
) -> Response<Full<Bytes>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Option<Bytes>>,
{
    let params: Vec<(String, String)> = req
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect();
    // The media type, parameters left out; compared without regard to case.
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map_or("", str::trim);
    if let Some(o) = &site.odoh {
        let path = req.uri.path();
        if path == odoh::CONFIGS_PATH && req.method == Method::GET {
            return match o.configs() {
                Some(c) => with_type(Response::new(Full::new(c)), "application/octet-stream"),
                None => status(StatusCode::NOT_FOUND),
            };
        }
        if path == odoh::PROXY_PATH && o.relays() {
            // Boxed: the relay's client future is large, and every DoH
            // request would otherwise carry (and move) its space.
            return Box::pin(relay(req, read_body, o, &params, content_type)).await;
        }
    }
    if let Some(pages) = &site.pages
        && req.uri.path().starts_with(PAGE_PREFIX)
    {
        let body = match req.method {
            Method::POST => match read_body().await {
                Some(b) => Some(b.to_vec()),
                None => return status(StatusCode::PAYLOAD_TOO_LARGE),
            },
            _ => None,
        };
        let http = match req.version {
            http::Version::HTTP_2 => 2,
            http::Version::HTTP_3 => 3,
            _ => 1,
        };
        let page = PageRequest {
            method: req.method.clone(),
            path: req.uri.path().to_string(),
            query: req.uri.query().map(str::to_string),
            body,
            client,
            http,
        };
        return pages(page).await.unwrap_or_else(|| status(StatusCode::NOT_FOUND));
    }
    // Each path is a profile's door.
    let Some(handler) = site.routes.iter().find(|(p, _)| p == req.uri.path()).map(|(_, h)| h.clone()) else {
        return status(StatusCode::NOT_FOUND);
    };
    if req.method == Method::POST
        && content_type.eq_ignore_ascii_case(odoh::ODOH_MESSAGE)
        && let Some(o) = site.odoh.as_ref().filter(|o| o.configs().is_some())
    {
        let Some(body) = read_body().await else { return status(StatusCode::PAYLOAD_TOO_LARGE) };
        return Box::pin(oblivious(o, &body, handler, client, inflight)).await;
    }
    if req.method == Method::GET && params.iter().any(|(k, _)| k == "name") {
        return Box::pin(json_api(&params, handler, client, inflight)).await;
    }
    let query = match req.method {
        Method::GET => {
            let param = req.uri.query().unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("dns="));
            match param.and_then(base64url_decode) {
                Some(q) if q.len() <= MAX_MESSAGE => Bytes::from(q),
                _ => return status(StatusCode::BAD_REQUEST),
            }
        }
        Method::POST => {
            let ok_type = content_type.eq_ignore_ascii_case(DNS_MESSAGE);
            // The (bounded) body is read before answering even a refusal, so
            // the client is not cut off mid-upload.
            let Some(body) = read_body().await else { return status(StatusCode::PAYLOAD_TOO_LARGE) };
            if !ok_type {
                return status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
            }
            body
        }
        _ => {
            let mut r = status(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
            return r;
        }
    };
    let mut out = Vec::with_capacity(1232);
    let len = ask(&*handler, client, &inflight, &query, &mut out).await;
    let Some(len) = len else { return status(StatusCode::BAD_REQUEST) };
    out.truncate(len);
    let max_age = min_ttl(&out);
    let mut r = Response::new(Full::new(Bytes::from(out)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(DNS_MESSAGE));
    h.insert(header::CACHE_CONTROL, cache_control(max_age));
    r
}

/// `max-age=SECS`, written without a `String` in between.
fn cache_control(secs: u32) -> header::HeaderValue {
    use std::io::Write;
    let mut buf = [0u8; 18];
    let mut w = std::io::Cursor::new(buf.as_mut_slice());
    let _ = write!(w, "max-age={secs}");
    let len = w.position() as usize;
    buf.get(..len)
        .and_then(|b| header::HeaderValue::from_bytes(b).ok())
        .unwrap_or_else(|| header::HeaderValue::from_static("max-age=0"))
}

fn with_type(mut r: Response<Full<Bytes>>, content_type: &'static str) -> Response<Full<Bytes>> {
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    r
}

/// ODoH target: opens the sealed query, answers it (the client is whoever
/// posted it: the relay), and seals the answer.
async fn oblivious(
    o: &Oblivious,
    body: &[u8],
    handler: Arc<dyn Handler>,
    client: Client,
    inflight: InFlight,
) -> Response<Full<Bytes>> {
    let Ok((query, sealer)) = o.open(body) else { return status(StatusCode::BAD_REQUEST) };
    let mut out = Vec::with_capacity(1232);
    let Some(len) = ask(&*handler, client, &inflight, &query, &mut out).await else {
        return status(StatusCode::BAD_REQUEST);
    };
    // The handler's length is within `out`; a wrong one is our bug, not a
    // client's, and is answered as such rather than panicking.
    let Some(answer) = out.get(..len) else { return status(StatusCode::INTERNAL_SERVER_ERROR) };
    match sealer.seal(answer) {
        Ok(sealed) => {
            let mut r = with_type(Response::new(Full::new(Bytes::from(sealed))), odoh::ODOH_MESSAGE);
            r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            r
        }
        Err(_) => status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// ODoH relay: forwards the sealed body to an allowed target, unopened.
async fn relay<F, Fut>(
    req: &http::request::Parts,
    read_body: F,
    o: &Oblivious,
    params: &[(String, String)],
    content_type: &str,
) -> Response<Full<Bytes>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Option<Bytes>>,
{
    if req.method != Method::POST {
        let mut r = status(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return r;
    }
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let Some(body) = read_body().await else { return status(StatusCode::PAYLOAD_TOO_LARGE) };
    if !content_type.eq_ignore_ascii_case(odoh::ODOH_MESSAGE) {
        return status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let (Some(host), Some(path)) = (get("targethost"), get("targetpath")) else {
        return status(StatusCode::BAD_REQUEST);
    };
    if !path.starts_with('/') {
        return status(StatusCode::BAD_REQUEST);
    }
    match o.relay(host, path, &body, std::time::Duration::from_secs(5)).await {
        None => status(StatusCode::FORBIDDEN),
        Some(Err(e)) => {
            tracing::debug!(target = host, error = %e, "odoh relay failed");
            status(StatusCode::BAD_GATEWAY)
        }
        Some(Ok((code, body))) => {
            let mut r = with_type(Response::new(Full::new(Bytes::from(body))), odoh::ODOH_MESSAGE);
            *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
            r
        }
    }
}

/// What a DoH door serves: one path per filtering profile, and its ODoH
/// roles.
#[derive(Clone, Default)]
pub struct DohSite {
    /// Path → the handler of its profile.
    pub routes: Vec<(String, Arc<dyn Handler>)>,
    /// ODoH target and relay, when configured.
    pub odoh: Option<Arc<Oblivious>>,
    /// Pages served beside the DNS paths (`/help`), when configured.
    pub pages: Option<Pages>,
}

/// A request for a page on a DoH listener.
#[derive(Debug)]
pub struct PageRequest {
    /// GET, POST...
    pub method: Method,
    /// The path.
    pub path: String,
    /// The query string.
    pub query: Option<String>,
    /// A POST's body.
    pub body: Option<Vec<u8>>,
    /// Who asked, through which door.
    pub client: Client,
    /// The HTTP version (1, 2 or 3).
    pub http: u8,
}

/// Pages on the DoH listeners: `None` for a path they do not serve.
pub type Pages = Arc<dyn Fn(PageRequest) -> crate::BoxFuture<'static, Option<Response<Full<Bytes>>>> + Send + Sync>;

/// The paths handed to [`DohSite::pages`].
const PAGE_PREFIX: &str = "/help";

/// The JSON API (`?name=&type=&do=&cd=`), field-compatible with the JSON
/// APIs of the big public resolvers: Status, TC, RD, RA, AD, CD, Question,
/// Answer, Authority, and Extended DNS Errors as Comment and EDE.
async fn json_api(
    params: &[(String, String)],
    handler: Arc<dyn Handler>,
    client: Client,
    inflight: InFlight,
) -> Response<Full<Bytes>> {
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let flag = |k: &str| get(k).is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let Some(name) = get("name").and_then(|n| proto::Name::from_ascii(n).ok()) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let qtype = match get("type") {
        None => proto::rtype::A,
        Some(t) => match t.parse::<u16>().ok().or_else(|| proto::rtype::from_text(t)) {
            Some(t) => t,
            None => return status(StatusCode::BAD_REQUEST),
        },
    };
    let mut query = Vec::new();
    proto::build::build_query(&mut query, 0, name.as_wire(), qtype, true, Some(1232), flag("do"));
    // Ask with AD (RFC 6840 §5.7): JSON clients want the validation status.
    // `build_query` always writes the 12-octet header, so octet 3 exists.
    if let Some(low_flags) = query.get_mut(3) {
        *low_flags |= (proto::flags::AD & 0xff) as u8;
        if flag("cd") {
            *low_flags |= (proto::flags::CD & 0xff) as u8;
        }
    }
    let mut out = Vec::with_capacity(1232);
    let len = ask(&*handler, client, &inflight, &query, &mut out).await;
    let Some(len) = len else { return status(StatusCode::BAD_GATEWAY) };
    out.truncate(len);
    let Ok(msg) = domain::base::Message::from_octets(out.clone()) else { return status(StatusCode::BAD_GATEWAY) };
    let Ok(parsed) = proto::Message::parse(&out) else { return status(StatusCode::BAD_GATEWAY) };
    let section = |records: Result<domain::base::message::RecordSection<'_, Vec<u8>>, _>| -> Vec<serde_json::Value> {
        let Ok(records) = records else { return Vec::new() };
        records
            .limit_to::<domain::rdata::AllRecordData<_, domain::base::ParsedName<_>>>()
            .filter_map(Result::ok)
            .map(|r| {
                serde_json::json!({
                    "name": r.owner().to_string() + ".",
                    "type": r.rtype().to_int(),
                    "TTL": r.ttl().as_secs(),
                    "data": r.data().to_string(),
                })
            })
            .collect()
    };
    let has = |f: u16| parsed.has_flag(f);
    let edes = parsed.ede();
    let mut body = serde_json::json!({
        "Status": parsed.rcode(),
        "TC": has(proto::flags::TC),
        "RD": has(proto::flags::RD),
        "RA": has(proto::flags::RA),
        "AD": has(proto::flags::AD),
        "CD": has(proto::flags::CD),
        "Question": [{"name": name.to_string(), "type": qtype}],
        "Answer": section(msg.answer()),
        "Authority": section(msg.authority()),
    });
    // `body` is the object literal above, so `as_object_mut` is `Some`.
    if !edes.is_empty()
        && let Some(fields) = body.as_object_mut()
    {
        let comment = edes.iter().map(|(c, t)| format!("EDE {c}: {t}")).collect::<Vec<_>>();
        fields.insert("Comment".into(), serde_json::json!(comment));
        let ede = edes.iter().map(|(c, t)| serde_json::json!({"code": c, "text": t})).collect::<Vec<_>>();
        fields.insert("EDE".into(), serde_json::json!(ede));
    }
    let max_age = min_ttl(&out);
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(DNS_JSON));
    h.insert(header::CACHE_CONTROL, cache_control(max_age));
    r
}

/// Decodes `%XX` escapes (and `+` as space) in a query parameter; a stray
/// `%` is kept as it is.
pub fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match (c, b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The smallest TTL of a response's answer and authority records (RFC
/// 8484 §5.1), 0 if none or if the message does not parse: a walk over
/// the wire form, allocating nothing (every DoH answer pays for it).
fn min_ttl(msg: &[u8]) -> u32 {
    use proto::wire::{read_u16, read_u32, skip_name};
    let walk = || -> Option<u32> {
        let questions = read_u16(msg, 4)?;
        let records = u32::from(read_u16(msg, 6)?) + u32::from(read_u16(msg, 8)?);
        let mut pos = proto::wire::HEADER_LEN;
        for _ in 0..questions {
            pos = skip_name(msg, pos)? + 4;
        }
        let mut least: Option<u32> = None;
        for _ in 0..records {
            pos = skip_name(msg, pos)?;
            let ttl = read_u32(msg, pos + 4)?;
            let len = usize::from(read_u16(msg, pos + 8)?);
            pos += 10 + len;
            if pos > msg.len() {
                return None;
            }
            least = Some(least.map_or(ttl, |l| l.min(ttl)));
        }
        Some(least.unwrap_or(0))
    };
    walk().unwrap_or(0)
}

/// Decodes unpadded base64url (RFC 4648 §5), as the `dns` parameter is.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len() - 1;
        out.extend([(acc >> 16) as u8, (acc >> 8) as u8, acc as u8].into_iter().take(n));
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    #[test]
    fn base64url_of_rfc8484_example() {
        // RFC 8484 §4.1.1: the query for www.example.com A.
        let q = super::base64url_decode("AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB").expect("decodes");
        assert_eq!(q.len(), 33);
        assert_eq!(&q[12..17], b"\x03www\x07");
        assert!(super::base64url_decode("a").is_none());
        assert!(super::base64url_decode("AA*A").is_none());
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod size {
    /// The wire walk gives what a full parse gives, and 0 for garbage.
    #[test]
    fn cache_control_says_max_age() {
        for (secs, text) in [(0, "max-age=0"), (7, "max-age=7"), (300, "max-age=300"), (u32::MAX, "max-age=4294967295")]
        {
            assert_eq!(super::cache_control(secs).to_str().expect("ascii"), text);
        }
    }

    #[test]
    fn min_ttl_walks_answer_and_authority() {
        let mut out = Vec::new();
        let mut w = proto::MessageWriter::new(&mut out, 7, proto::wire::flags::QR);
        let name = proto::Name::from_ascii("www.example.test").expect("name");
        w.question(name.as_wire(), proto::rtype::A, 1);
        w.raw_record(proto::build::Section::Answer, name.as_wire(), proto::rtype::A, 1, 300, &[192, 0, 2, 1]);
        w.raw_record(proto::build::Section::Answer, name.as_wire(), proto::rtype::A, 1, 120, &[192, 0, 2, 2]);
        w.raw_record(proto::build::Section::Authority, &[0], proto::rtype::NS, 1, 3600, name.as_wire());
        w.opt(1232, false, 0, &[]);
        let len = w.finish();
        let msg = &out[..len];
        let parsed = proto::Message::parse(msg).expect("parses");
        let least = parsed.answer.iter().chain(&parsed.authority).map(|r| r.ttl).min();
        assert_eq!(Some(super::min_ttl(msg)), least);
        assert_eq!(least, Some(120));
        assert_eq!(super::min_ttl(&msg[..msg.len() - 20]), 0, "truncated");
        assert_eq!(super::min_ttl(&[0xff; 7]), 0);
    }

    /// The request future hyper spawns per HTTP/2 stream stays small (it
    /// is moved on every spawn; the ODoH relay once made it kilobytes).
    #[test]
    fn the_respond_future_is_small() {
        let routes = super::DohSite::default();
        let (parts, ()) = http::Request::new(()).into_parts();
        let client = crate::Client { door: crate::Door::Doh, addr: std::net::Ipv4Addr::LOCALHOST.into() };
        let fut = super::respond(&parts, async || None, &routes, client, crate::InFlight::default());
        let size = std::mem::size_of_val(&fut);
        assert!(size < 1024, "{size} bytes");
    }
}
