//! Block-list feeds by URL: a `[[policy.source]]` with `url` is fetched on
//! the reload interval (HTTP/1.1 over TLS, or plain HTTP where a `sha256`
//! pin or the operator's network vouches for it) with `If-None-Match` and
//! `If-Modified-Since`, within `max_bytes` and `timeout_s`, checked
//! against its `sha256` pin when it has one, and written atomically to the
//! source's `path`: the last good copy, which the policy reads like any
//! list file and which keeps serving while the feed fails. A failure is
//! logged and shown in the transparency log as the source's last error.
//! Host names are resolved by our own recursor, so a node whose
//! resolv.conf points at itself can fetch before its doors are up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde::{Deserialize, Serialize};

/// Longest wait for one address to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What is remembered about a feed between fetches (beside the copy, in
/// `PATH.feed.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeedState {
    /// The last `ETag`.
    pub etag: Option<String>,
    /// The last `Last-Modified`.
    pub last_modified: Option<String>,
    /// SHA-256 of the copy, hex.
    pub sha256: Option<String>,
    /// When it was last fetched (Unix seconds).
    pub fetched_at: u64,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The URL is not one we fetch.
    #[error("url {0:?}: {1}")]
    Url(String, String),
    /// The host name did not resolve.
    #[error("{0}: no address")]
    Resolve(String),
    /// Connecting, TLS or HTTP failed.
    #[error("{0}")]
    Transport(String),
    /// Not 200 or 304.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Larger than allowed.
    #[error("larger than max_bytes ({0} bytes)")]
    TooLarge(u64),
    /// Took longer than allowed.
    #[error("no complete answer within {0} s")]
    Timeout(u64),
    /// The content does not match the pin.
    #[error("sha256 {got} does not match the pinned {want}")]
    Pin {
        /// What the body hashes to.
        got: String,
        /// What was pinned.
        want: String,
    },
    /// The new content is empty, does not parse, or lists nothing: the
    /// copy is kept.
    #[error("the new content is not a usable list: {0}")]
    Unusable(String),
    /// The copy could not be written.
    #[error("writing {0}: {1}")]
    Write(PathBuf, String),
}

/// One fetch's outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// 304: the copy is current.
    NotModified,
    /// New content, written to the copy.
    Updated {
        /// Its size.
        bytes: usize,
    },
    /// 200 with the same content as the copy.
    Unchanged,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn state_path(copy: &Path) -> PathBuf {
    let mut name = copy.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".feed.json");
    copy.with_file_name(name)
}

/// Reads a feed's remembered state (empty when there is none).
pub fn load_state(copy: &Path) -> FeedState {
    std::fs::read(state_path(copy)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// A feed to fetch: a source with a `url`.
#[derive(Clone)]
pub struct Feed {
    /// The source as configured (its `path` is the last good copy).
    pub spec: policy::SourceSpec,
    /// Its URL.
    pub url: String,
    /// TLS configuration for an https URL (roots from `ca_file` or the
    /// system bundle).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Feed {
    /// The feed of `spec`, if it has a `url`; its TLS roots are read now.
    pub fn of(spec: &policy::SourceSpec) -> anyhow::Result<Option<Feed>> {
        use anyhow::Context;
        let Some(url) = &spec.url else { return Ok(None) };
        let tls = match url.starts_with("https://") {
            true => {
                let verify = crate::client_verify(spec.ca_file.clone(), &[], false)
                    .with_context(|| format!("policy source {}", spec.name))?;
                Some(
                    doors::client::client_config(&verify, b"http/1.1", false)
                        .with_context(|| format!("policy source {}: TLS", spec.name))?,
                )
            }
            false => None,
        };
        Ok(Some(Feed { spec: spec.clone(), url: url.clone(), tls }))
    }

    /// The last good copy.
    pub fn path(&self) -> &Path {
        &self.spec.path
    }

    /// Longest a fetch may take, connecting included.
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.spec.timeout_s.max(1))
    }
}

/// Resolves a host name to addresses (our recursor in production).
pub type Resolve = Arc<dyn Fn(String) -> doors::BoxFuture<'static, Vec<std::net::IpAddr>> + Send + Sync>;

/// Fetches `feed` once and, when the content is new and good, replaces
/// the copy (atomically) and its state.
pub async fn fetch(feed: &Feed, resolve: &Resolve, now: u64) -> Result<Fetched, FeedError> {
    let limit = feed.timeout().as_secs();
    tokio::time::timeout(feed.timeout(), fetch_inner(feed, resolve, now))
        .await
        .map_err(|_| FeedError::Timeout(limit))?
}

async fn fetch_inner(feed: &Feed, resolve: &Resolve, now: u64) -> Result<Fetched, FeedError> {
    let url_err = |why: &str| FeedError::Url(feed.url.clone(), why.to_string());
    let uri: hyper::Uri = feed.url.parse().map_err(|e: hyper::http::uri::InvalidUri| url_err(&e.to_string()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(url_err("only https:// and http:// are fetched")),
    };
    let host = uri.host().ok_or_else(|| url_err("no host"))?.trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let ips = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => resolve(host.clone()).await,
    };
    let transport = |e: &dyn std::fmt::Display| FeedError::Transport(e.to_string());
    let mut tcp = None;
    let mut last = String::from("no address");
    for ip in ips {
        // One silent address does not use up the whole budget.
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(SocketAddr::new(ip, port))).await {
            Ok(Ok(s)) => {
                tcp = Some(s);
                break;
            }
            Ok(Err(e)) => last = format!("{ip}:{port}: {e}"),
            Err(_) => last = format!("{ip}:{port}: no connection within {} s", CONNECT_TIMEOUT.as_secs()),
        }
    }
    let Some(tcp) = tcp else {
        return Err(if last == "no address" { FeedError::Resolve(host) } else { FeedError::Transport(last) });
    };
    let state = load_state(feed.path());
    let have_copy = feed.path().exists();
    let path_q = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut req = hyper::Request::get(path_q)
        .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
        .header(hyper::header::USER_AGENT, concat!("onedot/", env!("CARGO_PKG_VERSION")));
    if have_copy {
        if let Some(etag) = &state.etag {
            req = req.header(hyper::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &state.last_modified {
            req = req.header(hyper::header::IF_MODIFIED_SINCE, lm);
        }
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| transport(&e))?;
    let response = if https {
        let config = feed.tls.clone().ok_or_else(|| url_err("no TLS configuration"))?;
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| transport(&e))?;
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| transport(&e))?;
        send(hyper_util::rt::TokioIo::new(tls), req).await?
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), req).await?
    };
    let (parts, mut body) = response.into_parts();
    match parts.status.as_u16() {
        304 if have_copy => return Ok(Fetched::NotModified),
        200 => {}
        other => return Err(FeedError::Status(other)),
    }
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > feed.spec.max_bytes) {
        return Err(FeedError::TooLarge(feed.spec.max_bytes));
    }
    let mut content = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| transport(&e))?;
        if let Ok(data) = frame.into_data() {
            if content.len() as u64 + data.len() as u64 > feed.spec.max_bytes {
                return Err(FeedError::TooLarge(feed.spec.max_bytes));
            }
            content.extend_from_slice(&data);
        }
    }
    let digest = hex(ring::digest::digest(&ring::digest::SHA256, &content).as_ref());
    if let Some(want) = &feed.spec.sha256
        && !want.eq_ignore_ascii_case(&digest)
    {
        return Err(FeedError::Pin { got: digest, want: want.clone() });
    }
    let header = |h: hyper::header::HeaderName| parts.headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let new_state = FeedState {
        etag: header(hyper::header::ETAG),
        last_modified: header(hyper::header::LAST_MODIFIED),
        sha256: Some(digest.clone()),
        fetched_at: now,
    };
    let unchanged = have_copy && state.sha256.as_deref() == Some(digest.as_str());
    let write = |p: &Path, b: &[u8]| {
        seal::write_atomic(p, b, 0o644).map_err(|e| FeedError::Write(p.to_path_buf(), e.to_string()))
    };
    if !unchanged {
        if let Some(dir) = feed.path().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| FeedError::Write(dir.to_path_buf(), e.to_string()))?;
        }
        // Parsed before it replaces the copy: an empty page, an error page
        // served with 200 or a list of nothing never takes the place of
        // the last good copy.
        if content.is_empty() {
            return Err(FeedError::Unusable("empty".into()));
        }
        let mut name = feed.path().file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".new");
        let fresh = feed.path().with_file_name(name);
        write(&fresh, &content)?;
        let spec = policy::SourceSpec { path: fresh.clone(), url: None, ..feed.spec.clone() };
        let parsed = tokio::task::spawn_blocking(move || {
            policy::load(&spec, Arc::new(std::sync::atomic::AtomicU64::new(0))).map(|l| l.entries())
        })
        .await
        .map_err(|e| FeedError::Unusable(e.to_string()))?;
        match parsed {
            Ok(n) if n > 0 => {}
            Ok(_) => {
                let _ = std::fs::remove_file(&fresh);
                return Err(FeedError::Unusable("it lists no names".into()));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&fresh);
                return Err(FeedError::Unusable(e.to_string()));
            }
        }
        std::fs::rename(&fresh, feed.path()).map_err(|e| FeedError::Write(feed.path().to_path_buf(), e.to_string()))?;
    }
    write(&state_path(feed.path()), &serde_json::to_vec_pretty(&new_state).unwrap_or_default())?;
    Ok(if unchanged { Fetched::Unchanged } else { Fetched::Updated { bytes: content.len() } })
}

async fn send<S>(io: S, req: hyper::Request<Empty<Bytes>>) -> Result<hyper::Response<hyper::body::Incoming>, FeedError>
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let transport = |e: hyper::Error| FeedError::Transport(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(transport)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(transport)
}

/// Fetches `feeds` at once, each within its own timeout (so the slowest
/// bounds the whole); returns whether any copy changed. Failures go to the
/// log and to the transparency log.
pub async fn fetch_all(feeds: &[Feed], resolve: &Resolve, policy: &Arc<policy::Policy>, now: u64) -> bool {
    let mut set = tokio::task::JoinSet::new();
    for feed in feeds {
        let (feed, resolve, policy) = (feed.clone(), resolve.clone(), policy.clone());
        set.spawn(async move {
            match fetch(&feed, &resolve, now).await {
                Ok(Fetched::Updated { bytes }) => {
                    tracing::info!(source = %feed.spec.name, url = %feed.url, bytes, "list feed updated");
                    true
                }
                Ok(Fetched::NotModified | Fetched::Unchanged) => {
                    tracing::debug!(source = %feed.spec.name, "list feed unchanged");
                    false
                }
                Err(e) => {
                    let kept = if feed.path().exists() { "the last good copy serves" } else { "no copy yet" };
                    tracing::error!(source = %feed.spec.name, url = %feed.url, error = %e, "list feed not fetched; {kept}");
                    policy.note_failure(&feed.spec.name, now, format!("feed {}: {e}; {kept}", feed.url));
                    false
                }
            }
        });
    }
    let mut changed = false;
    while let Some(r) = set.join_next().await {
        changed |= r.unwrap_or(false);
    }
    changed
}

/// How soon a feed without a copy is tried again.
const RETRY_WITHOUT_COPY: Duration = Duration::from_secs(60);

/// Fetches the feeds on `interval` for ever (every minute while one has
/// no copy yet), reloading the policy when one changed.
pub fn spawn(
    feeds: Vec<Feed>,
    resolve: Resolve,
    policy: Arc<policy::Policy>,
    interval: Duration,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    if feeds.is_empty() {
        return;
    }
    tasks.spawn(async move {
        loop {
            let missing = feeds.iter().any(|f| !f.path().exists());
            tokio::time::sleep(if missing { interval.min(RETRY_WITHOUT_COPY) } else { interval }).await;
            let now = crate::run::unix_now();
            if fetch_all(&feeds, &resolve, &policy, now).await {
                let p = policy.clone();
                if let Ok(report) = tokio::task::spawn_blocking(move || p.reload(now, false)).await {
                    for (name, e) in &report.failed {
                        tracing::error!(source = %name, error = %e, "list feed's new copy not loaded; the previous version serves");
                    }
                }
            }
        }
    });
}
