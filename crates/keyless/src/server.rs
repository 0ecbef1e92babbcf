//! The key server: private keys, the edge registry, and the signing loop.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::sign::SigningKey;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::KeylessError;
use crate::pki::{self, key_id, short_id};
use crate::wire::{self, ErrorCode, HEADER, Header, KEY_ID, SignRequest, op};

/// One private key and who may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// The PEM file.
    pub path: PathBuf,
    /// Regions whose edges may use it; empty: every region.
    pub regions: Vec<String>,
    /// Edges that may use it; empty: every edge.
    pub edges: Vec<String>,
}

struct StoredKey {
    key: Arc<dyn SigningKey>,
    name: String,
    policy: KeyPolicy,
}

/// The keys in force, by id.
pub struct KeyStore {
    keys: HashMap<[u8; KEY_ID], Arc<StoredKey>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").field("keys", &self.keys.len()).finish()
    }
}

impl KeyStore {
    /// Loads every key; any unreadable, world-readable or unsupported key
    /// fails the whole load (so a reload keeps the old store).
    pub fn load(policies: &[KeyPolicy]) -> Result<KeyStore, KeylessError> {
        let mut keys = HashMap::new();
        for p in policies {
            let der = pki::read_private_key(&p.path)?;
            let key = pki::signing_key(&der).map_err(|e| KeylessError::Pki(format!("{}: {e}", p.path.display())))?;
            let spki =
                key.public_key().ok_or_else(|| KeylessError::Pki(format!("{}: no public key", p.path.display())))?;
            let name = p.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            keys.insert(key_id(spki.as_ref()), Arc::new(StoredKey { key, name, policy: p.clone() }));
        }
        Ok(KeyStore { keys })
    }

    /// Key ids and names, for the start-up log.
    pub fn describe(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.keys.iter().map(|(id, k)| (k.name.clone(), short_id(id))).collect();
        v.sort();
        v
    }
}

/// An edge in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeRecord {
    /// Its name.
    pub name: String,
    /// Its region.
    pub region: String,
    /// SHA-256 of its client certificate, hex.
    pub fingerprint: String,
    /// Revoked: every operation refused.
    #[serde(default)]
    pub revoked: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RegistryFile {
    #[serde(default)]
    edge: Vec<EdgeRecord>,
}

/// A file's inode, modification time (seconds, nanoseconds) and size.
type FileStamp = (u64, i64, i64, u64);

/// Registered edges by certificate fingerprint.
type Edges = Arc<HashMap<String, EdgeRecord>>;

/// The edge registry file, re-read whenever it changes: a revocation
/// written by `onedot keyserver revoke` applies to the next operation.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    cached: Mutex<(Option<FileStamp>, Edges)>,
}

impl Registry {
    /// The registry at `path` (read lazily).
    pub fn open(path: PathBuf) -> Registry {
        Registry { path, cached: Mutex::new((None, Arc::new(HashMap::new()))) }
    }

    /// Every record in the file.
    pub fn load(&self) -> Result<Vec<EdgeRecord>, KeylessError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(KeylessError::Registry(format!("{}: {e}", self.path.display()))),
        };
        let file: RegistryFile =
            toml::from_str(&text).map_err(|e| KeylessError::Registry(format!("{}: {e}", self.path.display())))?;
        Ok(file.edge)
    }

    fn store(&self, edges: Vec<EdgeRecord>) -> Result<(), KeylessError> {
        let text = toml::to_string(&RegistryFile { edge: edges }).map_err(|e| KeylessError::Registry(e.to_string()))?;
        let text = format!("# Edges of this key server (onedot keyserver issue-edge / revoke).\n{text}");
        crate::ca::write_file(&self.path, text.as_bytes(), false)
    }

    /// Adds a record.
    pub fn add(&self, record: EdgeRecord) -> Result<(), KeylessError> {
        let mut all = self.load()?;
        all.push(record);
        self.store(all)
    }

    /// Marks every record of `name` revoked.
    pub fn revoke(&self, name: &str) -> Result<usize, KeylessError> {
        let mut all = self.load()?;
        let mut n = 0;
        for e in all.iter_mut().filter(|e| e.name == name && !e.revoked) {
            e.revoked = true;
            n += 1;
        }
        if n == 0 {
            return Err(KeylessError::Registry(format!("no registered edge named {name}")));
        }
        self.store(all)?;
        Ok(n)
    }

    /// The records by certificate fingerprint, re-read when the file's
    /// identity, size or modification time changed (one `stat` per call).
    /// A file that no longer parses keeps the last good records.
    pub fn current(&self) -> Edges {
        use std::os::unix::fs::MetadataExt;
        let stamp = std::fs::metadata(&self.path).ok().map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.size()));
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0 != stamp || stamp.is_none() {
            match self.load() {
                Ok(all) => {
                    let map = all.into_iter().map(|e| (e.fingerprint.clone(), e)).collect();
                    *cached = (stamp, Arc::new(map));
                }
                Err(e) => tracing::error!(error = %e, "edge registry not reloaded; keeping the last good one"),
            }
        }
        cached.1.clone()
    }
}

/// Counters by (edge, key, result) and a latency histogram.
#[derive(Debug, Default)]
struct Metrics {
    ops: HashMap<(String, String, &'static str), u64>,
    /// Counts of signing latencies at or below each bound in [`BUCKETS_US`],
    /// then the total count and sum.
    buckets: [u64; BUCKETS_US.len()],
    count: u64,
    sum_us: u64,
}

const BUCKETS_US: [u64; 10] = [25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000];

/// How edges' data keys are made: derived from the state directory's
/// master secret for each (edge, epoch), an epoch lasting `rotation_s`.
struct DataKeyPolicy {
    master: [u8; 32],
    rotation_s: u32,
    epochs: u32,
}

/// The key server.
pub struct KeyServer {
    data: RwLock<DataKeyPolicy>,
    keys: RwLock<Arc<KeyStore>>,
    registry: Registry,
    tls: Arc<rustls::ServerConfig>,
    metrics: Mutex<Metrics>,
    connections: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for KeyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyServer").field("registry", &self.registry.path).finish()
    }
}

impl KeyServer {
    /// A key server for the state directory `dir` (made by
    /// [`crate::ca::init`]) and the given keys.
    pub fn new(dir: &Path, keys: &[KeyPolicy]) -> Result<Arc<KeyServer>, KeylessError> {
        let store = KeyStore::load(keys)?;
        let (cert_path, key_path) = crate::ca::server_paths(dir);
        let read = |p: &Path| std::fs::read(p).map_err(|e| KeylessError::Pki(format!("{}: {e}", p.display())));
        let chain = pki::certificates(&read(&cert_path)?)?;
        let key = pki::read_private_key(&key_path)?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in pki::certificates(&read(&crate::ca::ca_cert_path(dir))?)? {
            roots.add(ca).map_err(|e| KeylessError::Tls(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| KeylessError::Tls(e.to_string()))?;
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| KeylessError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| KeylessError::Tls(e.to_string()))?;
        let master = crate::ca::data_master(dir)?;
        Ok(Arc::new(KeyServer {
            data: RwLock::new(DataKeyPolicy { master, rotation_s: 86_400, epochs: 3 }),
            keys: RwLock::new(Arc::new(store)),
            registry: Registry::open(crate::ca::registry_path(dir)),
            tls: Arc::new(tls),
            metrics: Mutex::new(Metrics::default()),
            connections: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// Sets how data keys rotate: a new epoch every `rotation_s` seconds,
    /// and `epochs` of them handed out (the newest seals, the older ones
    /// still open what was sealed before: cover the longest retention).
    pub fn set_data_key_rotation(&self, rotation_s: u32, epochs: u32) {
        let mut d = self.data.write().unwrap_or_else(|e| e.into_inner());
        d.rotation_s = rotation_s.max(60);
        d.epochs = epochs.clamp(1, 64);
    }

    /// The data keys of `edge` at `now` (Unix seconds), newest first: one
    /// per epoch, each derived (HKDF-SHA256) from the master secret, the
    /// edge's name and the epoch, so each edge's keys are its own.
    pub fn data_keys(&self, edge: &str, now: u64) -> (u32, Vec<wire::DataKey>) {
        let d = self.data.read().unwrap_or_else(|e| e.into_inner());
        let current = u32::try_from(now / u64::from(d.rotation_s)).unwrap_or(u32::MAX);
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"onedot data key v1");
        let prk = salt.extract(&d.master);
        let keys = (0..d.epochs)
            .filter_map(|back| current.checked_sub(back))
            .filter_map(|epoch| {
                let epoch_bytes = epoch.to_be_bytes();
                let info: [&[u8]; 2] = [edge.as_bytes(), &epoch_bytes];
                let okm = prk.expand(&info, ring::hkdf::HKDF_SHA256).ok()?;
                let mut key = [0u8; 32];
                okm.fill(&mut key).ok()?;
                Some((epoch, key))
            })
            .collect();
        (d.rotation_s, keys)
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<KeyStore> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reloads the keys (SIGHUP); on error the old ones stay in force.
    pub fn reload_keys(&self, keys: &[KeyPolicy]) -> Result<usize, KeylessError> {
        let store = KeyStore::load(keys)?;
        let n = store.keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(store);
        Ok(n)
    }

    /// Accepts edges on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (server, acceptor) = (self.clone(), acceptor.clone());
            tokio::spawn(async move { server.connection(acceptor, stream, peer).await });
        }
    }

    async fn connection(self: Arc<Self>, acceptor: tokio_rustls::TlsAcceptor, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let tls = match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "edge handshake refused");
                return;
            }
            Err(_) => return,
        };
        let Some(fingerprint) = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c: &CertificateDer<'_>| pki::fingerprint(c))
        else {
            return;
        };
        let edge = self.registry.current().get(&fingerprint).cloned();
        match &edge {
            Some(e) if !e.revoked => tracing::info!(edge = %e.name, region = %e.region, %peer, "edge connected"),
            Some(e) => tracing::warn!(edge = %e.name, %peer, "revoked edge refused"),
            None => tracing::warn!(%peer, %fingerprint, "edge certificate not in the registry; refused"),
        }
        self.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (mut rd, wr) = tokio::io::split(tls);
        // Answers are written by whoever has one ready (the reader for
        // quick signatures, a signing task for RSA), under a lock: no
        // writer task, so no thread hand-off between signing and sending.
        let tx = Writer(Arc::new(tokio::sync::Mutex::new(wr)));
        let mut head = [0u8; HEADER];
        let mut body = Vec::with_capacity(512);
        loop {
            if rd.read_exact(&mut head).await.is_err() {
                break;
            }
            let h = match Header::decode(&head) {
                Ok(h) => h,
                Err(e) => {
                    let code = match e {
                        wire::FrameError::Version(_) => ErrorCode::Version,
                        wire::FrameError::TooLong(_) => ErrorCode::BadFrame,
                    };
                    let _ = tx.send(error_frame(0, code, &e.to_string())).await;
                    break;
                }
            };
            body.resize(h.length, 0);
            if rd.read_exact(&mut body).await.is_err() {
                break;
            }
            match h.opcode {
                op::PING => {
                    let mut f = Vec::with_capacity(HEADER + body.len());
                    wire::encode(&mut f, op::PONG, h.id, &[&body]);
                    if tx.send(f).await.is_err() {
                        break;
                    }
                }
                op::SIGN => {
                    // The registry is consulted for every operation: a
                    // revocation takes effect at the next one.
                    let Some(edge) = self.registry.current().get(&fingerprint).cloned().filter(|e| !e.revoked) else {
                        let _ = tx.send(error_frame(h.id, ErrorCode::Revoked, "edge revoked or unknown")).await;
                        break;
                    };
                    // RSA signing is CPU work (about a millisecond for
                    // 2048 bits): such an operation is its own task, so one
                    // connection's pipelined operations use every core.
                    // ECDSA and Ed25519 take tens of microseconds, less
                    // than handing them to another thread: signed here.
                    // The key is looked up once, here, for both choices.
                    let stored = SignRequest::parse(&body).and_then(|r| self.keys().keys.get(r.key_id).cloned());
                    if stored.as_ref().is_some_and(|k| k.key.algorithm() == rustls::SignatureAlgorithm::RSA) {
                        let (server, tx, body) = (self.clone(), tx.clone(), body.clone());
                        tokio::spawn(async move {
                            let frame = server.sign(&edge, h.id, &body, stored.as_deref());
                            let _ = tx.send(frame).await;
                        });
                    } else if tx.send(self.sign(&edge, h.id, &body, stored.as_deref())).await.is_err() {
                        break;
                    }
                }
                op::DATA_KEYS => {
                    let Some(edge) = self.registry.current().get(&fingerprint).cloned().filter(|e| !e.revoked) else {
                        let _ = tx.send(error_frame(h.id, ErrorCode::Revoked, "edge revoked or unknown")).await;
                        break;
                    };
                    let now =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    let (rotation, keys) = self.data_keys(&edge.name, now);
                    tracing::info!(edge = %edge.name, epochs = keys.len(), "data keys given");
                    let mut f = Vec::new();
                    wire::encode(&mut f, op::KEYS, h.id, &[&wire::encode_keys(rotation, &keys)]);
                    if tx.send(f).await.is_err() {
                        break;
                    }
                }
                other => {
                    let msg = format!("unknown opcode {other}");
                    if tx.send(error_frame(h.id, ErrorCode::UnknownOp, &msg)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.0.lock().await.shutdown().await;
    }

    /// One SIGN operation for `edge` with the key its body names (`stored`,
    /// `None` when there is no such key): the response frame.
    fn sign(&self, edge: &EdgeRecord, id: u32, body: &[u8], stored: Option<&StoredKey>) -> Vec<u8> {
        let started = Instant::now();
        let (frame, key_name, result) = self.sign_inner(edge, id, body, stored);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match result {
            Ok(scheme) => tracing::info!(edge = %edge.name, key = %key_name, ?scheme, micros, "signed"),
            Err(code) => tracing::warn!(edge = %edge.name, key = %key_name, error = code.name(), "refused"),
        }
        let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        let result = result.map(|_| "signed").unwrap_or_else(|c| c.name());
        *m.ops.entry((edge.name.clone(), key_name, result)).or_default() += 1;
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            if micros <= *bound {
                m.buckets[i] += 1;
            }
        }
        m.count += 1;
        m.sum_us += micros;
        frame
    }

    fn sign_inner(
        &self,
        edge: &EdgeRecord,
        id: u32,
        body: &[u8],
        stored: Option<&StoredKey>,
    ) -> (Vec<u8>, String, Result<rustls::SignatureScheme, ErrorCode>) {
        let refuse = |code: ErrorCode, why: &str, key: String| (error_frame(id, code, why), key, Err(code));
        let Some(req) = SignRequest::parse(body) else {
            return refuse(ErrorCode::BadFrame, "SIGN body too short", String::new());
        };
        let Some(stored) = stored else {
            return refuse(ErrorCode::KeyNotFound, "no such key here", short_id(req.key_id));
        };
        let name = stored.name.clone();
        let p = &stored.policy;
        if !p.edges.is_empty() && !p.edges.contains(&edge.name) {
            return refuse(ErrorCode::Forbidden, "this edge may not use this key", name);
        }
        if !p.regions.is_empty() && !p.regions.contains(&edge.region) {
            return refuse(ErrorCode::Forbidden, "this key is not used in the edge's region", name);
        }
        if !wire::is_handshake_input(req.message) {
            return refuse(ErrorCode::BadMessage, "not a TLS handshake signature input", name);
        }
        let scheme = rustls::SignatureScheme::from(req.scheme);
        let Some(signer) = stored.key.choose_scheme(&[scheme]) else {
            return refuse(ErrorCode::Scheme, "the key cannot sign with this scheme", name);
        };
        match signer.sign(req.message) {
            Ok(sig) => {
                let mut f = Vec::with_capacity(HEADER + sig.len());
                wire::encode(&mut f, op::SIGNATURE, id, &[&sig]);
                (f, name, Ok(scheme))
            }
            Err(e) => refuse(ErrorCode::Internal, &e.to_string(), name),
        }
    }

    /// The Prometheus text exposition of what this key server did.
    pub fn render_metrics(&self) -> String {
        let m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str("# HELP onedot_keyserver_operations_total Signing operations by edge, key and result.\n");
        out.push_str("# TYPE onedot_keyserver_operations_total counter\n");
        let mut ops: Vec<_> = m.ops.iter().collect();
        ops.sort();
        for ((edge, key, result), n) in ops {
            let _ = writeln!(
                out,
                "onedot_keyserver_operations_total{{edge=\"{edge}\",key=\"{key}\",result=\"{result}\"}} {n}"
            );
        }
        out.push_str("# HELP onedot_keyserver_sign_seconds Time to check and sign one operation.\n");
        out.push_str("# TYPE onedot_keyserver_sign_seconds histogram\n");
        for (bound, n) in BUCKETS_US.iter().zip(m.buckets.iter()) {
            let _ = writeln!(out, "onedot_keyserver_sign_seconds_bucket{{le=\"{}\"}} {n}", *bound as f64 / 1e6);
        }
        let _ = writeln!(out, "onedot_keyserver_sign_seconds_bucket{{le=\"+Inf\"}} {}", m.count);
        let _ = writeln!(out, "onedot_keyserver_sign_seconds_sum {}", m.sum_us as f64 / 1e6);
        let _ = writeln!(out, "onedot_keyserver_sign_seconds_count {}", m.count);
        out.push_str("# HELP onedot_keyserver_connections_total Edge connections accepted.\n");
        out.push_str("# TYPE onedot_keyserver_connections_total counter\n");
        let _ = writeln!(
            out,
            "onedot_keyserver_connections_total {}",
            self.connections.load(std::sync::atomic::Ordering::Relaxed)
        );
        let _ = writeln!(out, "onedot_keyserver_keys {}", self.keys().keys.len());
        out
    }
}

/// The write half of an edge's connection, shared.
#[derive(Clone)]
struct Writer(Arc<tokio::sync::Mutex<tokio::io::WriteHalf<tokio_rustls::server::TlsStream<TcpStream>>>>);

impl Writer {
    /// Writes one frame; `Err` when the connection is gone.
    async fn send(&self, frame: Vec<u8>) -> std::io::Result<()> {
        let mut w = self.0.lock().await;
        w.write_all(&frame).await?;
        w.flush().await
    }
}

fn error_frame(id: u32, code: ErrorCode, reason: &str) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + 1 + reason.len());
    wire::encode(&mut f, op::ERROR, id, &[&[code as u8], reason.as_bytes()]);
    f
}
