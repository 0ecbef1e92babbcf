//! DoH request decoding (crates/doors/src/doh.rs): method, path, query
//! string (`?dns=` base64url, percent-decoding, the JSON API's `name`,
//! `type`, `do`, `cd`), content type and body, all the way to the DNS
//! query a handler receives, and the answer rendering (DNS message,
//! `Cache-Control` from the smallest TTL, the JSON API's body from a
//! fuzzed upstream answer).
//!
//! NEEDS AN EXPOSURE (feature `doh-respond`): the decoding lives in
//! `doors::doh::respond`, which is `pub(crate)` in a private module, and
//! its helpers `percent_decode` and `min_ttl` are private. This target is
//! written against
//!     `#[doc(hidden)] pub use doh::respond as doh_respond;` (doors/src/lib.rs)
//! with `respond` made `#[doc(hidden)] pub` in doh.rs. Every type in its
//! signature (`http::request::Parts`, `DohSite`, `Client`, `InFlight`,
//! `Response<Full<Bytes>>`) is already public.
//!
//! Also called directly: `doors::base64url_decode` (round trip against an
//! encoder written here).

#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use arbitrary::Arbitrary;
use doors::client::Verify;
use doors::odoh::Oblivious;
use doors::{BoxFuture, Client, DNS_JSON, DNS_MESSAGE, DohSite, Door, Fast, Handler, InFlight, base64url_decode};
use http::{Method, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use proto::QueryView;

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    path: u8,
    /// The URI's query string (after `?`).
    query: String,
    content_type: Option<String>,
    /// `None`: the body was over the size limit.
    body: Option<Vec<u8>>,
    /// Answer on the fast path (else the slow one).
    fast: bool,
    /// What the resolver behind the door answers (`None`: nothing).
    answer: Option<Vec<u8>>,
    /// The door is also an ODoH target.
    odoh: bool,
    /// Octets for the base64url round trip.
    octets: Vec<u8>,
}

const PATHS: [&str; 5] = ["/dns-query", "/family", "/.well-known/odohconfigs", "/proxy", "/elsewhere"];

/// A resolver stand-in: records the queries it is given, answers with the
/// fuzzed octets.
struct Resolver {
    fast: bool,
    answer: Option<Vec<u8>>,
    seen: Mutex<Vec<Vec<u8>>>,
}

impl Resolver {
    fn reply(&self, out: &mut Vec<u8>) -> Option<usize> {
        let a = self.answer.as_ref()?;
        out.clear();
        out.extend_from_slice(a);
        Some(a.len())
    }
}

impl Handler for Resolver {
    fn try_fast(&self, query: &[u8], _client: Client, out: &mut Vec<u8>) -> Fast {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).push(query.to_vec());
        if !self.fast {
            return Fast::Miss;
        }
        match self.reply(out) {
            Some(n) => Fast::Answered(n),
            None => Fast::Drop,
        }
    }

    fn answer<'a>(&'a self, _query: &'a [u8], _client: Client, out: &'a mut Vec<u8>) -> BoxFuture<'a, Option<usize>> {
        Box::pin(async move { self.reply(out) })
    }
}

thread_local! {
    static RT: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
}

fn odoh_target() -> Arc<Oblivious> {
    static T: OnceLock<Arc<Oblivious>> = OnceLock::new();
    T.get_or_init(|| Arc::new(Oblivious::new(true, Vec::new(), &Verify::default()).expect("ODoH target"))).clone()
}

fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    s
}

fuzz_target!(|input: Input| {
    // The decoder alone.
    assert_eq!(base64url_decode(&base64url(&input.octets)).as_deref(), Some(&input.octets[..]));
    let _ = base64url_decode(&input.query);

    let method = match input.method % 6 {
        0 | 1 => Method::GET,
        2 | 3 => Method::POST,
        4 => Method::PUT,
        _ => Method::HEAD,
    };
    let path = PATHS[usize::from(input.path) % PATHS.len()];
    let Ok(uri) = http::Uri::try_from(format!("{path}?{}", input.query)) else { return };
    let mut req = http::Request::builder().method(method).uri(uri);
    if let Some(ct) = &input.content_type
        && let Ok(v) = header::HeaderValue::from_str(ct)
    {
        req = req.header(header::CONTENT_TYPE, v);
    }
    let Ok(req) = req.body(()) else { return };
    let (parts, ()) = req.into_parts();

    let resolver = Arc::new(Resolver { fast: input.fast, answer: input.answer.clone(), seen: Mutex::new(Vec::new()) });
    let handler: Arc<dyn Handler> = resolver.clone();
    let site = DohSite {
        routes: vec![("/dns-query".to_string(), handler.clone()), ("/family".to_string(), handler)],
        odoh: input.odoh.then(odoh_target),
        pages: None,
    };
    let client = Client { door: Door::Doh, addr: std::net::Ipv4Addr::LOCALHOST.into() };
    let body = input.body.clone().filter(|b| b.len() <= 65535).map(bytes::Bytes::from);

    let (status, content_type, bytes) = RT.with(|rt| {
        rt.block_on(async {
            let resp =
                doors::doh_respond(&parts, move || std::future::ready(body), &site, client, InFlight::default()).await;
            let status = resp.status();
            let ct = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
            let bytes = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            (status, ct, bytes)
        })
    });

    let seen = resolver.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(seen.len() <= 1, "one request asked the resolver {} times", seen.len());
    // 500 is only for failing to seal an ODoH answer (502 is a resolver
    // that answered nothing or garbage, which the fuzzed resolver may do).
    assert!(status != http::StatusCode::INTERNAL_SERVER_ERROR || input.odoh, "500 without ODoH");
    match content_type.as_deref() {
        Some(DNS_JSON) => {
            // The JSON API built the query itself: it must be a valid one.
            let q = seen.first().expect("a JSON answer without a query");
            assert!(QueryView::parse(q).is_ok(), "JSON API built a bad query {q:02x?}");
            serde_json::from_slice::<serde_json::Value>(&bytes).expect("the JSON API answered invalid JSON");
        }
        Some(DNS_MESSAGE) => {
            // The answer is passed through unchanged.
            assert_eq!(Some(&bytes[..]), input.answer.as_deref());
        }
        _ => {}
    }
});
