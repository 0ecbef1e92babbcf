//! dnstap: the query stream in the format Unbound, Knot and BIND emit
//! (protobuf `dnstap.Dnstap` messages in Frame Streams), to a collector on
//! a Unix socket or TCP. Client queries and responses and resolver
//! queries and responses, each selectable. Client addresses are truncated
//! (/24, /56) or dropped as `telemetry.query_log_client` says, before the
//! message is built: a full client address never enters the stream, and
//! client ports are never sent.
//!
//! The message is encoded by hand (eight field kinds; a protobuf crate
//! and its code generation would be most of the build for it). Frames go
//! through a bounded queue to a writer thread that connects, does the
//! Frame Streams handshake (READY, ACCEPT, START), writes, reconnects with
//! backoff when the collector goes away, and sends STOP at shutdown; when
//! the queue is full or no collector listens, frames are dropped and
//! counted, never waited for.

use std::io::{BufWriter, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

/// The Frame Streams content type of dnstap.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

/// Frames waiting for the writer at most.
const QUEUE: usize = 16 * 1024;

/// Largest control frame accepted from a collector.
const MAX_CONTROL: usize = 512;

/// dnstap `Message.Type` values onedot emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RESOLVER_QUERY: sent to an authority.
    ResolverQuery = 3,
    /// RESOLVER_RESPONSE: received from an authority.
    ResolverResponse = 4,
    /// CLIENT_QUERY: received from a client.
    ClientQuery = 5,
    /// CLIENT_RESPONSE: sent to a client.
    ClientResponse = 6,
}

/// dnstap `SocketProtocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// DNS over UDP.
    Udp = 1,
    /// DNS over TCP.
    Tcp = 2,
    /// DNS over TLS.
    Dot = 3,
    /// DNS over HTTPS.
    Doh = 4,
    /// DNS over QUIC.
    Doq = 7,
}

/// One event.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// Which end of which exchange.
    pub kind: Kind,
    /// The transport.
    pub protocol: Protocol,
    /// HTTP version for DoH (1, 2 or 3).
    pub http: Option<u8>,
    /// The initiator's address (the client's, already truncated; none for
    /// our own queries).
    pub query_address: Option<IpAddr>,
    /// The responder's address and port (the authority's).
    pub response_address: Option<SocketAddr>,
    /// When the query was sent or received.
    pub query_time: SystemTime,
    /// The query, verbatim.
    pub query: Option<&'a [u8]>,
    /// When the response was sent or received.
    pub response_time: Option<SystemTime>,
    /// The response, verbatim.
    pub response: Option<&'a [u8]>,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, u64::from(field) << 3 | u64::from(wire_type));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, 0);
    varint(out, v);
}

fn time_fields(out: &mut Vec<u8>, sec_field: u32, t: SystemTime) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    varint_field(out, sec_field, d.as_secs());
    tag(out, sec_field + 1, 5);
    out.extend_from_slice(&d.subsec_nanos().to_le_bytes());
}

fn address(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Encodes `event` as a `dnstap.Dnstap` protobuf message into `out`.
pub fn encode(event: &Event<'_>, identity: &[u8], version: &[u8], out: &mut Vec<u8>) {
    let mut m = Vec::with_capacity(64 + event.query.map_or(0, <[u8]>::len) + event.response.map_or(0, <[u8]>::len));
    varint_field(&mut m, 1, event.kind as u64);
    let v6 = event.query_address.map(|a| a.is_ipv6()).or(event.response_address.map(|a| a.is_ipv6()));
    if let Some(v6) = v6 {
        varint_field(&mut m, 2, if v6 { 2 } else { 1 });
    }
    varint_field(&mut m, 3, event.protocol as u64);
    if let Some(a) = event.query_address {
        bytes_field(&mut m, 4, &address(a));
    }
    if let Some(a) = event.response_address {
        bytes_field(&mut m, 5, &address(a.ip()));
        varint_field(&mut m, 7, u64::from(a.port()));
    }
    time_fields(&mut m, 8, event.query_time);
    if let Some(q) = event.query {
        bytes_field(&mut m, 10, q);
    }
    if let Some(t) = event.response_time {
        time_fields(&mut m, 12, t);
    }
    if let Some(r) = event.response {
        bytes_field(&mut m, 14, r);
    }
    if let (Protocol::Doh, Some(h)) = (event.protocol, event.http) {
        varint_field(&mut m, 16, u64::from(h));
    }
    if !identity.is_empty() {
        bytes_field(out, 1, identity);
    }
    bytes_field(out, 2, version);
    bytes_field(out, 14, &m);
    varint_field(out, 15, 1);
}

/// Where the collector listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Unix socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// Which messages are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selection {
    /// CLIENT_QUERY.
    pub client_query: bool,
    /// CLIENT_RESPONSE.
    pub client_response: bool,
    /// RESOLVER_QUERY.
    pub resolver_query: bool,
    /// RESOLVER_RESPONSE.
    pub resolver_response: bool,
}

impl Selection {
    /// Whether `kind` is selected.
    pub fn wants(&self, kind: Kind) -> bool {
        match kind {
            Kind::ClientQuery => self.client_query,
            Kind::ClientResponse => self.client_response,
            Kind::ResolverQuery => self.resolver_query,
            Kind::ResolverResponse => self.resolver_response,
        }
    }
}

/// Frames sent and dropped.
#[derive(Debug, Default)]
pub struct Counters {
    /// Written to a collector.
    pub sent: AtomicU64,
    /// Dropped: the queue was full or no collector was connected.
    pub dropped: AtomicU64,
    connected: AtomicBool,
}

impl Counters {
    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        format!(
            "# HELP onedot_dnstap_frames_total dnstap messages written to the collector, or dropped (queue full, no collector).\n\
             # TYPE onedot_dnstap_frames_total counter\n\
             onedot_dnstap_frames_total{{result=\"sent\"}} {}\n\
             onedot_dnstap_frames_total{{result=\"dropped\"}} {}\n\
             # HELP onedot_dnstap_connected 1 while a dnstap collector is connected.\n\
             # TYPE onedot_dnstap_connected gauge\n\
             onedot_dnstap_connected {}\n",
            self.sent.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            u8::from(self.connected()),
        )
    }

    /// Whether a collector is connected now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// The dnstap output: [`Dnstap::emit`] from any thread.
pub struct Dnstap {
    select: Selection,
    identity: Vec<u8>,
    version: Vec<u8>,
    tx: std::sync::Mutex<Option<SyncSender<Vec<u8>>>>,
    /// Sent and dropped frames.
    pub counters: Arc<Counters>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Dnstap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnstap").field("select", &self.select).finish()
    }
}

impl Dnstap {
    /// Starts the writer thread toward `target`.
    pub fn start(target: Target, select: Selection, identity: &str) -> Dnstap {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("dnstap".into())
            .spawn(move || run(target, rx, &c))
            .map_err(|e| tracing::error!(error = %e, "dnstap writer not started"))
            .ok();
        Dnstap {
            select,
            identity: identity.as_bytes().to_vec(),
            version: format!("onedot {}", env!("CARGO_PKG_VERSION")).into_bytes(),
            tx: std::sync::Mutex::new(Some(tx)),
            counters,
            thread: std::sync::Mutex::new(thread),
        }
    }

    /// Whether `kind` is sent (check before building an event).
    #[inline]
    pub fn wants(&self, kind: Kind) -> bool {
        self.select.wants(kind)
    }

    /// Queues `event` if its kind is selected; drops it when the queue is
    /// full or no collector is connected.
    pub fn emit(&self, event: &Event<'_>) {
        if !self.wants(event.kind) {
            return;
        }
        if !self.counters.connected() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut frame = Vec::with_capacity(128);
        encode(event, &self.identity, &self.version, &mut frame);
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(frame) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends what is queued, STOP, and waits for the collector's FINISH
    /// (a second at most).
    pub fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// Frame Streams control frame types.
const ACCEPT: u32 = 1;
const START: u32 = 2;
const STOP: u32 = 3;
const READY: u32 = 4;
const FINISH: u32 = 5;
/// The content-type field of a control frame.
const FIELD_CONTENT_TYPE: u32 = 1;

/// A control frame (the escape, its length, its type, a content type).
fn control(kind: u32, content_type: bool) -> Vec<u8> {
    let mut body = kind.to_be_bytes().to_vec();
    if content_type {
        body.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        body.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        body.extend_from_slice(CONTENT_TYPE);
    }
    let mut out = vec![0, 0, 0, 0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads one control frame; returns its type.
fn read_control(r: &mut impl Read) -> std::io::Result<u32> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    if head[..4] != [0; 4] {
        return Err(bad("expected a control frame"));
    }
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if !(4..=MAX_CONTROL).contains(&len) {
        return Err(bad("control frame of a bad length"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(u32::from_be_bytes([body[0], body[1], body[2], body[3]]))
}

trait Stream: Read + Write + Send {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()>;
}

impl Stream for std::os::unix::net::UnixStream {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)?;
        self.set_write_timeout(t)
    }
}

impl Stream for std::net::TcpStream {
    fn set_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)?;
        self.set_write_timeout(t)
    }
}

/// Connects and does the bidirectional handshake: READY, the collector's
/// ACCEPT, START.
fn connect(target: &Target) -> std::io::Result<Box<dyn Stream>> {
    let mut s: Box<dyn Stream> = match target {
        Target::Unix(p) => Box::new(std::os::unix::net::UnixStream::connect(p)?),
        Target::Tcp(a) => Box::new(std::net::TcpStream::connect_timeout(a, Duration::from_secs(5))?),
    };
    s.set_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(&control(READY, true))?;
    if read_control(&mut s)? != ACCEPT {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the collector did not ACCEPT"));
    }
    s.write_all(&control(START, true))?;
    Ok(s)
}

/// The writer thread: connect, write frames, reconnect with backoff;
/// while disconnected, [`Dnstap::emit`] drops frames.
fn run(target: Target, rx: Receiver<Vec<u8>>, counters: &Counters) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let stream = match connect(&target) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(target = %target, error = %e, "dnstap collector not reachable");
                // Drain what was queued before the collector went away,
                // waiting out the backoff; a closed queue ends the thread.
                let until = std::time::Instant::now() + backoff;
                loop {
                    match rx.recv_timeout(until.saturating_duration_since(std::time::Instant::now())) {
                        Ok(_) => {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        tracing::info!(target = %target, "dnstap collector connected");
        counters.connected.store(true, Ordering::Relaxed);
        backoff = Duration::from_millis(250);
        let mut w = BufWriter::with_capacity(64 * 1024, stream);
        // A burst is written as it comes, then flushed once the queue is
        // empty.
        let closed = 'conn: loop {
            let mut next = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(f) => Some(f),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break true,
            };
            while let Some(frame) = next {
                let len = (frame.len() as u32).to_be_bytes();
                if w.write_all(&len).and_then(|_| w.write_all(&frame)).is_err() {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    break 'conn false;
                }
                counters.sent.fetch_add(1, Ordering::Relaxed);
                next = rx.try_recv().ok();
            }
            if w.flush().is_err() {
                break false;
            }
        };
        counters.connected.store(false, Ordering::Relaxed);
        if closed {
            let _ = w.write_all(&control(STOP, false)).and_then(|_| w.flush());
            if let Ok(mut s) = w.into_inner().map_err(|e| e.into_error()) {
                let _ = s.set_timeout(Some(Duration::from_secs(1)));
                let _ = read_control(&mut s).map(|k| k == FINISH);
            }
            return;
        }
        tracing::warn!(target = %target, "dnstap collector went away; reconnecting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a protobuf message's fields: (number, wire type, value bytes
    /// or the varint).
    fn fields(mut b: &[u8]) -> Vec<(u32, u8, Vec<u8>, u64)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let (field, wt) = ((key >> 3) as u32, (key & 7) as u8);
            match wt {
                0 => out.push((field, wt, Vec::new(), varint(&mut b))),
                2 => {
                    let n = varint(&mut b) as usize;
                    out.push((field, wt, b[..n].to_vec(), 0));
                    b = &b[n..];
                }
                5 => {
                    out.push((field, wt, b[..4].to_vec(), 0));
                    b = &b[4..];
                }
                _ => panic!("wire type {wt}"),
            }
        }
        out
    }

    #[test]
    fn a_client_response_encodes_every_field_dnstap_names() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_800_000_000, 123_456_789);
        let event = Event {
            kind: Kind::ClientResponse,
            protocol: Protocol::Doh,
            http: Some(2),
            query_address: Some("192.0.2.0".parse().expect("ip")),
            response_address: None,
            query_time: t,
            query: Some(b"q"),
            response_time: Some(t + Duration::from_millis(1)),
            response: Some(b"resp"),
        };
        let mut out = Vec::new();
        encode(&event, b"ams1", b"onedot 0.1.0", &mut out);
        let top = fields(&out);
        assert_eq!(top[0].0, 1);
        assert_eq!(top[0].2, b"ams1");
        assert_eq!((top[1].0, &top[1].2[..]), (2, &b"onedot 0.1.0"[..]));
        assert_eq!((top[3].0, top[3].3), (15, 1), "type MESSAGE");
        let m = fields(&top[2].2);
        let get = |n: u32| m.iter().find(|f| f.0 == n).unwrap_or_else(|| panic!("field {n}: {m:?}"));
        assert_eq!(get(1).3, 6, "CLIENT_RESPONSE");
        assert_eq!(get(2).3, 1, "INET");
        assert_eq!(get(3).3, 4, "DOH");
        assert_eq!(get(4).2, [192, 0, 2, 0]);
        assert_eq!(get(8).3, 1_800_000_000);
        assert_eq!((get(9).1, u32::from_le_bytes(get(9).2[..4].try_into().expect("4"))), (5, 123_456_789));
        assert_eq!(get(10).2, b"q");
        assert_eq!(get(13).1, 5);
        assert_eq!(get(14).2, b"resp");
        assert_eq!(get(16).3, 2, "HTTP2");
        assert!(m.iter().all(|f| f.0 != 6), "no client port");
    }

    #[test]
    fn the_writer_does_the_frame_streams_handshake_and_stops_cleanly() {
        let dir = std::env::temp_dir().join(format!("onedot-dnstap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("tap.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        let collector = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            assert_eq!(read_control(&mut s).expect("ready"), READY);
            s.write_all(&control(ACCEPT, true)).expect("accept");
            assert_eq!(read_control(&mut s).expect("start"), START);
            let mut frames = Vec::new();
            loop {
                let mut len = [0u8; 4];
                s.read_exact(&mut len).expect("len");
                let n = u32::from_be_bytes(len) as usize;
                if n == 0 {
                    let mut l = [0u8; 4];
                    s.read_exact(&mut l).expect("control len");
                    let mut body = vec![0u8; u32::from_be_bytes(l) as usize];
                    s.read_exact(&mut body).expect("control");
                    assert_eq!(u32::from_be_bytes([body[0], body[1], body[2], body[3]]), STOP);
                    s.write_all(&control(FINISH, false)).expect("finish");
                    return frames;
                }
                let mut f = vec![0u8; n];
                s.read_exact(&mut f).expect("frame");
                frames.push(f);
            }
        });
        let select = Selection { client_query: true, ..Selection::default() };
        let tap = Dnstap::start(Target::Unix(path), select, "test");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !tap.counters.connected() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let event = |kind| Event {
            kind,
            protocol: Protocol::Udp,
            http: None,
            query_address: None,
            response_address: None,
            query_time: SystemTime::now(),
            query: Some(b"x"),
            response_time: None,
            response: None,
        };
        for _ in 0..3 {
            tap.emit(&event(Kind::ClientQuery));
            tap.emit(&event(Kind::ClientResponse));
        }
        tap.close();
        let frames = collector.join().expect("collector");
        assert_eq!(frames.len(), 3, "only the selected kind");
        assert_eq!(tap.counters.sent.load(Ordering::Relaxed), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
