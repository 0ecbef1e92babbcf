//! The edge's side: a rustls signing key whose signatures come from the key
//! servers.
//!
//! rustls asks for a signature synchronously, in the middle of a handshake,
//! so [`KeylessClient::sign`] hands the operation to the client's own
//! thread (a single-threaded runtime that owns the connections) and waits
//! for its answer, up to the deadline: the first 2 ms on the worker thread
//! (a healthy key server answers well within them), the rest, on a
//! multi-threaded runtime, in `block_in_place`, so the worker's other tasks
//! move to another thread while a slow key server is waited for. Connections are pipelined (one per key server,
//! operations matched by id), reconnect with exponential backoff, and an
//! operation that finds one server dead, hung or without the key moves on
//! to the next listed one within its deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, SubjectPublicKeyInfoDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::KeylessError;
use crate::pki::{KeyKind, key_id, spki_of};
use crate::wire::{self, ErrorCode, HEADER, Header, KEY_ID, op};

/// Where the key servers are and how to prove who we are.
#[derive(Debug, Clone)]
pub struct KeylessConfig {
    /// Key servers, tried in this order.
    pub servers: Vec<SocketAddr>,
    /// The name in the key servers' certificate; `None`: their IP address.
    pub server_name: Option<String>,
    /// PEM of the CA that signed the key servers' certificate (the edge CA).
    pub ca_pem: Vec<u8>,
    /// PEM of this edge's client certificate.
    pub edge_cert_pem: Vec<u8>,
    /// PEM of this edge's client key (it authenticates the edge to the key
    /// server and nothing else; revoking the edge makes it worthless).
    pub edge_key_pem: Vec<u8>,
    /// Longest wait for one signature, failover included.
    pub deadline: Duration,
}

/// What the edge's keyless client did, for metrics.
#[derive(Debug, Default)]
pub struct KeylessStats {
    /// Signatures obtained.
    pub signed: AtomicU64,
    /// Operations that failed (each a handshake refused).
    pub failed: AtomicU64,
    /// Key servers with a live connection now.
    pub servers_up: AtomicU64,
    /// Set while no key server answers.
    pub unavailable: AtomicBool,
    /// Sum of signing round trips in microseconds (for an average).
    pub sum_us: AtomicU64,
}

struct Job {
    /// The whole request frame (its id is set by the connection's writer).
    frame: Vec<u8>,
    /// The response opcode that answers it.
    answer: u8,
    deadline: Instant,
    reply: std::sync::mpsc::SyncSender<Result<Vec<u8>, KeylessError>>,
}

/// A handle on the keyless client; cheap to clone.
#[derive(Clone)]
pub struct KeylessClient {
    jobs: mpsc::UnboundedSender<Job>,
    deadline: Duration,
    stats: Arc<KeylessStats>,
}

impl std::fmt::Debug for KeylessClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeylessClient").field("deadline", &self.deadline).finish()
    }
}

impl KeylessClient {
    /// Starts the client's thread and connects to the first key server in
    /// the background. Fails only on unusable certificates or keys.
    pub fn start(config: KeylessConfig) -> Result<KeylessClient, KeylessError> {
        if config.servers.is_empty() {
            return Err(KeylessError::Pki("keyless: no key server listed".into()));
        }
        let tls = client_tls(&config)?;
        let stats = Arc::new(KeylessStats::default());
        let (jobs, rx) = mpsc::unbounded_channel();
        let pool = Arc::new(Pool {
            slots: config.servers.iter().map(|a| Slot::new(*a)).collect(),
            connector: tokio_rustls::TlsConnector::from(tls),
            server_name: config.server_name.clone(),
            stats: stats.clone(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name("keyless".into()).spawn(move || runtime.block_on(dispatch(pool, rx)))?;
        Ok(KeylessClient { jobs, deadline: config.deadline, stats })
    }

    /// Counters and gauges.
    pub fn stats(&self) -> &KeylessStats {
        &self.stats
    }

    /// Signs `message` with key `key_id` and `scheme` at a key server,
    /// blocking the calling thread until the answer or the deadline.
    pub fn sign(&self, key_id: [u8; KEY_ID], scheme: u16, message: &[u8]) -> Result<Vec<u8>, KeylessError> {
        let started = std::time::Instant::now();
        let mut frame = Vec::with_capacity(HEADER + KEY_ID + 2 + message.len());
        wire::encode(&mut frame, op::SIGN, 0, &[&key_id, &scheme.to_be_bytes(), message]);
        let result = self.call(frame, op::SIGNATURE);
        match &result {
            Ok(_) => {
                self.stats.signed.fetch_add(1, Ordering::Relaxed);
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.stats.sum_us.fetch_add(us, Ordering::Relaxed);
                if self.stats.unavailable.swap(false, Ordering::Relaxed) {
                    tracing::info!("a key server answers again: TLS handshakes resume");
                }
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let unavailable = matches!(e, KeylessError::NoServer | KeylessError::Deadline(_));
                if unavailable && !self.stats.unavailable.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "no key server answers: new TLS handshakes fail until one does (Do53 and resumed sessions are unaffected)");
                } else {
                    tracing::warn!(error = %e, "keyless signature failed; handshake refused");
                }
            }
        }
        result
    }
}

impl KeylessClient {
    /// This edge's data keys (for sealing its disk) and the rotation
    /// period in seconds, blocking until the answer or the deadline.
    pub fn data_keys(&self) -> Result<(u32, Vec<wire::DataKey>), KeylessError> {
        let mut frame = Vec::with_capacity(HEADER);
        wire::encode(&mut frame, op::DATA_KEYS, 0, &[]);
        let body = self.call(frame, op::KEYS)?;
        wire::decode_keys(&body)
            .ok_or_else(|| KeylessError::Refused { code: ErrorCode::BadFrame, reason: "malformed data keys".into() })
    }

    /// Sends `frame` to a key server and waits for the `answer` response's
    /// body: the first [`INLINE_WAIT`] on this thread, then (on a
    /// multi-threaded runtime) in `block_in_place`.
    fn call(&self, frame: Vec<u8>, answer: u8) -> Result<Vec<u8>, KeylessError> {
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        let job = Job { frame, answer, deadline: Instant::now() + self.deadline, reply };
        self.jobs.send(job).map_err(|_| KeylessError::NoServer)?;
        // A healthy key server answers in tens of microseconds: wait for
        // that on this thread. Only a slow answer moves the wait into
        // `block_in_place`, whose hand-off of the worker costs more than
        // the whole round trip (measured: 191 µs a signature with it, 61
        // without, on loopback), so that a hung key server holds no worker.
        let grace = self.deadline + Duration::from_millis(100);
        match rx.recv_timeout(INLINE_WAIT) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(KeylessError::NoServer),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let wait = || rx.recv_timeout(grace).unwrap_or(Err(KeylessError::Deadline(self.deadline)));
                match tokio::runtime::Handle::try_current() {
                    Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                        tokio::task::block_in_place(wait)
                    }
                    _ => wait(),
                }
            }
        }
    }
}

fn client_tls(config: &KeylessConfig) -> Result<Arc<rustls::ClientConfig>, KeylessError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in crate::pki::certificates(&config.ca_pem)? {
        roots.add(ca).map_err(|e| KeylessError::Tls(format!("edge CA: {e}")))?;
    }
    let chain = crate::pki::certificates(&config.edge_cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(&config.edge_key_pem)
        .map_err(|e| KeylessError::Pki(format!("edge key PEM: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| KeylessError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| KeylessError::Tls(format!("edge certificate: {e}")))?;
    Ok(Arc::new(tls))
}

/// One operation on a connection: the frame (its id is set by the writer)
/// and where its answer goes.
struct Call {
    frame: Vec<u8>,
    reply: oneshot::Sender<(u8, Vec<u8>)>,
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<(u8, Vec<u8>)>>>>;

#[derive(Clone)]
struct Conn {
    calls: mpsc::UnboundedSender<Call>,
    alive: Arc<AtomicBool>,
}

#[derive(Default)]
struct SlotState {
    conn: Option<Conn>,
    failures: u32,
    retry_at: Option<Instant>,
}

struct Slot {
    addr: SocketAddr,
    state: Mutex<SlotState>,
    connecting: tokio::sync::Mutex<()>,
}

/// How long a signature is waited for on the handshake's own worker thread
/// before the wait moves into `block_in_place`.
const INLINE_WAIT: Duration = Duration::from_millis(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

impl Slot {
    fn new(addr: SocketAddr) -> Slot {
        Slot { addr, state: Mutex::new(SlotState::default()), connecting: tokio::sync::Mutex::new(()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live connection, if there is one; `Err` while backing off.
    fn live(&self) -> Result<Option<Conn>, ()> {
        let st = self.lock();
        match &st.conn {
            Some(c) if c.alive.load(Ordering::Relaxed) => Ok(Some(c.clone())),
            _ if st.retry_at.is_some_and(|t| Instant::now() < t) => Err(()),
            _ => Ok(None),
        }
    }

    /// Forgets a connection that failed or hung, and backs off.
    fn failed(&self) {
        let mut st = self.lock();
        if let Some(c) = st.conn.take() {
            c.alive.store(false, Ordering::Relaxed);
        }
        st.failures = st.failures.saturating_add(1);
        let exp = st.failures.saturating_sub(1).min(16);
        st.retry_at = Some(Instant::now() + BACKOFF_FIRST.saturating_mul(1 << exp).min(BACKOFF_MAX));
    }
}

struct Pool {
    slots: Vec<Slot>,
    connector: tokio_rustls::TlsConnector,
    server_name: Option<String>,
    stats: Arc<KeylessStats>,
}

impl Pool {
    async fn conn(&self, slot: &Slot) -> Result<Conn, ()> {
        if let Some(c) = slot.live()? {
            return Ok(c);
        }
        let _one = slot.connecting.lock().await;
        if let Some(c) = slot.live()? {
            return Ok(c);
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect(slot.addr)).await {
            Ok(Ok(conn)) => {
                let mut st = slot.lock();
                st.conn = Some(conn.clone());
                st.failures = 0;
                st.retry_at = None;
                tracing::info!(server = %slot.addr, "connected to key server");
                Ok(conn)
            }
            Ok(Err(e)) => {
                tracing::warn!(server = %slot.addr, error = %e, "key server unreachable");
                slot.failed();
                Err(())
            }
            Err(_) => {
                tracing::warn!(server = %slot.addr, "key server connection timed out");
                slot.failed();
                Err(())
            }
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Conn, KeylessError> {
        let name = match &self.server_name {
            Some(n) => ServerName::try_from(n.clone()).map_err(|e| KeylessError::Tls(e.to_string()))?,
            None => ServerName::IpAddress(addr.ip().into()),
        };
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let tls = self.connector.connect(name, tcp).await?;
        let (mut rd, mut wr) = tokio::io::split(tls);
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let alive = Arc::new(AtomicBool::new(true));
        let (calls, mut rx) = mpsc::unbounded_channel::<Call>();
        let (p, a, stats) = (pending.clone(), alive.clone(), self.stats.clone());
        stats.servers_up.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut head = [0u8; HEADER];
            loop {
                if rd.read_exact(&mut head).await.is_err() {
                    break;
                }
                let Ok(h) = Header::decode(&head) else { break };
                let mut body = vec![0u8; h.length];
                if rd.read_exact(&mut body).await.is_err() {
                    break;
                }
                let waiter = p.lock().unwrap_or_else(|e| e.into_inner()).remove(&h.id);
                if let Some(w) = waiter {
                    let _ = w.send((h.opcode, body));
                }
            }
            a.store(false, Ordering::Relaxed);
            // Every operation still waiting learns the connection is gone.
            p.lock().unwrap_or_else(|e| e.into_inner()).clear();
            stats.servers_up.fetch_sub(1, Ordering::Relaxed);
        });
        let (p, a) = (pending, alive.clone());
        tokio::spawn(async move {
            let mut next: u32 = 1;
            let mut buf = Vec::with_capacity(4096);
            while let Some(first) = rx.recv().await {
                buf.clear();
                let mut call = Some(first);
                while let Some(Call { mut frame, reply }) = call.take() {
                    let id = next;
                    next = next.wrapping_add(1);
                    if let Some(slot) = frame.get_mut(4..8) {
                        slot.copy_from_slice(&id.to_be_bytes());
                    }
                    if !a.load(Ordering::Relaxed) {
                        continue;
                    }
                    p.lock().unwrap_or_else(|e| e.into_inner()).insert(id, reply);
                    buf.extend_from_slice(&frame);
                    call = rx.try_recv().ok();
                }
                if buf.is_empty() {
                    continue;
                }
                if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                    a.store(false, Ordering::Relaxed);
                    p.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        Ok(Conn { calls, alive })
    }

    /// One operation: each server in order until one answers, within the
    /// deadline. A dead, hung or keyless server passes the operation on; a
    /// refusal on policy (forbidden, revoked) is final.
    async fn run(&self, job: Job) {
        let frame = &job.frame;
        let mut outcome = Err(KeylessError::NoServer);
        for (i, slot) in self.slots.iter().enumerate() {
            let now = Instant::now();
            if now >= job.deadline {
                outcome = Err(KeylessError::Deadline(Duration::ZERO));
                break;
            }
            // The last server gets all the time left, the others half.
            let left = job.deadline - now;
            let budget = if i + 1 == self.slots.len() { left } else { left / 2 };
            let attempt = async {
                let conn = self.conn(slot).await.map_err(|()| None)?;
                let (reply, answer) = oneshot::channel();
                conn.calls.send(Call { frame: frame.clone(), reply }).map_err(|_| Some(()))?;
                answer.await.map_err(|_| Some(()))
            };
            match tokio::time::timeout(budget, attempt).await {
                Ok(Ok((code, body))) if code == job.answer => {
                    outcome = Ok(body);
                    break;
                }
                Ok(Ok((op::ERROR, body))) => {
                    let code = ErrorCode::from_u8(body.first().copied().unwrap_or(0));
                    let reason = String::from_utf8_lossy(body.get(1..).unwrap_or_default()).into_owned();
                    outcome = Err(KeylessError::Refused { code, reason });
                    if !matches!(code, ErrorCode::KeyNotFound | ErrorCode::Internal) {
                        break;
                    }
                }
                Ok(Ok(_)) => {}
                // Backing off, or the connection failed: the next server.
                Ok(Err(None)) => {}
                Ok(Err(Some(()))) => slot.failed(),
                Err(_) => {
                    tracing::warn!(server = %slot.addr, "key server did not answer in time");
                    slot.failed();
                    outcome = Err(KeylessError::Deadline(budget));
                }
            }
        }
        let _ = job.reply.send(outcome);
    }
}

async fn dispatch(pool: Arc<Pool>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    // Connect to the first server before the first handshake needs it.
    let warm = pool.clone();
    tokio::spawn(async move {
        if let Some(first) = warm.slots.first() {
            let _ = warm.conn(first).await;
        }
    });
    while let Some(job) = jobs.recv().await {
        let pool = pool.clone();
        tokio::spawn(async move { pool.run(job).await });
    }
}

/// The signing key of one certificate, kept by the key servers.
#[derive(Debug)]
pub struct KeylessKey {
    client: KeylessClient,
    key_id: [u8; KEY_ID],
    kind: KeyKind,
    spki: Vec<u8>,
}

impl KeylessKey {
    /// The key of `cert` (an end-entity certificate), signing through `client`.
    pub fn for_certificate(client: &KeylessClient, cert: &CertificateDer<'_>) -> Result<Arc<KeylessKey>, KeylessError> {
        let spki = spki_of(cert)?;
        let kind = KeyKind::of_spki(&spki).ok_or_else(|| {
            KeylessError::Pki("the certificate's key is not RSA, ECDSA P-256/P-384 or Ed25519".into())
        })?;
        Ok(Arc::new(KeylessKey { client: client.clone(), key_id: key_id(&spki), kind, spki }))
    }
}

impl SigningKey for KeylessKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = *self.kind.schemes().iter().find(|s| offered.contains(s))?;
        Some(Box::new(KeylessSigner { client: self.client.clone(), key_id: self.key_id, scheme }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.kind.algorithm()
    }
}

#[derive(Debug)]
struct KeylessSigner {
    client: KeylessClient,
    key_id: [u8; KEY_ID],
    scheme: SignatureScheme,
}

impl Signer for KeylessSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.client
            .sign(self.key_id, u16::from(self.scheme), message)
            .map_err(|e| rustls::Error::General(format!("keyless: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}
