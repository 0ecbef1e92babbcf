//! Clients for the encrypted transports: DNS over TLS, over HTTPS (HTTP/2
//! and HTTP/3) and over QUIC, with certificate and name checks, optional
//! SPKI pinning, and connection reuse per server. `onedot query` and
//! encrypted forward zones use them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full, Limited};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// An encrypted transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encrypted {
    /// DNS over TLS (RFC 7858), ALPN `dot`.
    Tls,
    /// DNS over HTTPS (RFC 8484) on HTTP/2.
    Https,
    /// DNS over HTTPS on HTTP/3.
    H3,
    /// DNS over QUIC (RFC 9250).
    Quic,
}

/// A server and how to check it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its address.
    pub addr: SocketAddr,
    /// The name its certificate must carry (also SNI and the HTTP host).
    pub name: String,
    /// The DoH path (`/dns-query`).
    pub path: String,
}

/// How certificates are checked.
#[derive(Debug, Clone, Default)]
pub struct Verify {
    /// Trusted roots in PEM (the system bundle in production).
    pub ca_pem: Option<Vec<u8>>,
    /// SHA-256 digests of acceptable SubjectPublicKeyInfos: with roots,
    /// the chain must also verify; without, the pin alone decides.
    pub spki_sha256: Vec<[u8; 32]>,
    /// Accept any certificate (only for `onedot query --insecure`).
    pub insecure: bool,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, the handshake or the exchange failed.
    #[error("{0}")]
    Io(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The certificate settings are unusable.
    #[error("TLS settings: {0}")]
    Config(String),
    /// The server answered with something that is not a DNS response.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

fn io(e: impl std::fmt::Display) -> ClientError {
    ClientError::Io(e.to_string())
}

/// The SubjectPublicKeyInfo (whole DER element) of an X.509 certificate.
pub fn spki_of(cert: &[u8]) -> Option<&[u8]> {
    // (tag, header length, content length) of the DER element at `pos`.
    fn element(d: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
        let tag = *d.get(pos)?;
        let first = *d.get(pos + 1)? as usize;
        if first < 0x80 {
            return Some((tag, 2, first));
        }
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = len << 8 | *d.get(pos + 2 + i)? as usize;
        }
        Some((tag, 2 + n, len))
    }
    let (_, h, _) = element(cert, 0)?; // Certificate SEQUENCE
    let tbs = h;
    let (_, th, _) = element(cert, tbs)?; // tbsCertificate SEQUENCE
    let mut pos = tbs + th;
    let (tag, hh, l) = element(cert, pos)?;
    if tag == 0xa0 {
        pos += hh + l; // [0] version
    }
    // serial, signature, issuer, validity, subject
    for _ in 0..5 {
        let (_, hh, l) = element(cert, pos)?;
        pos += hh + l;
    }
    let (tag, hh, l) = element(cert, pos)?;
    (tag == 0x30).then(|| cert.get(pos..pos + hh + l)).flatten()
}

/// Checks the chain (when roots are given) and then the pins.
#[derive(Debug)]
struct Checker {
    roots: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    pins: Vec<[u8; 32]>,
    insecure: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Checker {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        if let Some(v) = &self.roots {
            v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        }
        if !self.pins.is_empty() {
            let spki =
                spki_of(end_entity).ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
            let digest = ring::digest::digest(&ring::digest::SHA256, spki);
            if !self.pins.iter().any(|p| p[..] == *digest.as_ref()) {
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client configuration for `alpn` (TLS 1.3 only for QUIC).
pub fn client_config(verify: &Verify, alpn: &[u8], tls13_only: bool) -> Result<Arc<ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &verify.ca_pem {
        Some(pem) => {
            let mut store = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ClientError::Config(format!("CA certificates: {e}")))?;
                store.add(cert).map_err(|e| ClientError::Config(format!("CA certificate: {e}")))?;
            }
            let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| ClientError::Config(e.to_string()))?;
            Some(v)
        }
        None => None,
    };
    if roots.is_none() && verify.spki_sha256.is_empty() && !verify.insecure {
        return Err(ClientError::Config(
            "no CA certificates and no SPKI pins: nothing to check the server with".into(),
        ));
    }
    let checker = Arc::new(Checker {
        roots,
        pins: verify.spki_sha256.clone(),
        insecure: verify.insecure,
        provider: provider.clone(),
    });
    let builder = ClientConfig::builder_with_provider(provider);
    let builder = if tls13_only {
        builder.with_protocol_versions(&[&rustls::version::TLS13])
    } else {
        builder.with_safe_default_protocol_versions()
    }
    .map_err(|e| ClientError::Config(e.to_string()))?;
    let mut config = builder.dangerous().with_custom_certificate_verifier(checker).with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;
type H3Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// Exchanges DNS messages over the encrypted transports, reusing
/// connections per server.
pub struct EncryptedClient {
    dot: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
    quic_doq: quinn::ClientConfig,
    quic_h3: quinn::ClientConfig,
    endpoint: quinn::Endpoint,
    /// Local address to connect from (any when unset).
    source: Option<std::net::IpAddr>,
    dot_idle: Mutex<HashMap<SocketAddr, Vec<TlsStream<TcpStream>>>>,
    h2_senders: Mutex<HashMap<SocketAddr, H2Sender>>,
    quic_conns: Mutex<HashMap<(SocketAddr, Encrypted), quinn::Connection>>,
    h3_senders: Mutex<HashMap<SocketAddr, H3Sender>>,
}

impl std::fmt::Debug for EncryptedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedClient").finish()
    }
}

fn quic_client(verify: &Verify, alpn: &[u8]) -> Result<quinn::ClientConfig, ClientError> {
    let tls = client_config(verify, alpn, true)?;
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| ClientError::Config(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The idle TLS connections kept per server.
const IDLE_PER_SERVER: usize = 4;

impl EncryptedClient {
    /// A client checking servers as `verify` says. Must run in a tokio
    /// runtime (it opens a QUIC endpoint).
    pub fn new(verify: &Verify) -> Result<EncryptedClient, ClientError> {
        EncryptedClient::from_source(verify, None)
    }

    /// As [`EncryptedClient::new`], connecting from `source` when given.
    pub fn from_source(verify: &Verify, source: Option<std::net::IpAddr>) -> Result<EncryptedClient, ClientError> {
        let endpoint = match source {
            Some(ip) => quinn::Endpoint::client(SocketAddr::new(ip, 0)).map_err(io)?,
            None => {
                let any6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
                let any4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0));
                quinn::Endpoint::client(any6).or_else(|_| quinn::Endpoint::client(any4)).map_err(io)?
            }
        };
        Ok(EncryptedClient {
            dot: client_config(verify, b"dot", false)?,
            h2: client_config(verify, b"h2", false)?,
            quic_doq: quic_client(verify, b"doq")?,
            quic_h3: quic_client(verify, b"h3")?,
            endpoint,
            source,
            dot_idle: Mutex::new(HashMap::new()),
            h2_senders: Mutex::new(HashMap::new()),
            quic_conns: Mutex::new(HashMap::new()),
            h3_senders: Mutex::new(HashMap::new()),
        })
    }

    /// Sends `query` to `target` over `how` and returns the response.
    pub async fn exchange(
        &self,
        how: Encrypted,
        target: &Target,
        query: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let work = async {
            match how {
                Encrypted::Tls => self.dot(target, query).await,
                Encrypted::Https => self.doh2(target, query).await,
                Encrypted::H3 => self.doh3(target, query).await,
                Encrypted::Quic => self.doq(target, query).await,
            }
        };
        let resp = tokio::time::timeout(timeout, work).await.map_err(|_| ClientError::Timeout)??;
        if resp.len() < 12 {
            return Err(ClientError::BadAnswer(format!("{} bytes", resp.len())));
        }
        Ok(resp)
    }

    async fn tls_connect(
        &self,
        config: &Arc<ClientConfig>,
        target: &Target,
    ) -> Result<TlsStream<TcpStream>, ClientError> {
        let tcp = match self.source {
            Some(ip) => {
                let sock = if ip.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
                    .map_err(io)?;
                sock.bind(SocketAddr::new(ip, 0)).map_err(io)?;
                sock.connect(target.addr).await.map_err(io)?
            }
            None => TcpStream::connect(target.addr).await.map_err(io)?,
        };
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(target.name.clone()).map_err(|e| ClientError::Config(e.to_string()))?;
        TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(io)
    }

    async fn dot(&self, target: &Target, query: &[u8]) -> Result<Vec<u8>, ClientError> {
        let reused = lock(&self.dot_idle).get_mut(&target.addr).and_then(Vec::pop);
        let mut fresh = reused.is_none();
        let mut stream = match reused {
            Some(s) => s,
            None => self.tls_connect(&self.dot, target).await?,
        };
        loop {
            match framed_exchange(&mut stream, query).await {
                Ok(resp) => {
                    let mut idle = lock(&self.dot_idle);
                    let list = idle.entry(target.addr).or_default();
                    if list.len() < IDLE_PER_SERVER {
                        list.push(stream);
                    }
                    return Ok(resp);
                }
                // A reused connection the server has closed: once more on
                // a new one.
                Err(_) if !fresh => {
                    fresh = true;
                    stream = self.tls_connect(&self.dot, target).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn h2_sender(&self, target: &Target) -> Result<H2Sender, ClientError> {
        if let Some(s) = lock(&self.h2_senders).get(&target.addr).filter(|s| !s.is_closed()).cloned() {
            return Ok(s);
        }
        let tls = self.tls_connect(&self.h2, target).await?;
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .map_err(io)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        lock(&self.h2_senders).insert(target.addr, sender.clone());
        Ok(sender)
    }

    async fn doh2(&self, target: &Target, query: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut sender = self.h2_sender(target).await?;
        sender.ready().await.map_err(io)?;
        let req = doh_request(target, query)?.map(Full::new);
        let resp = sender.send_request(req).await.map_err(io)?;
        if resp.status() != http::StatusCode::OK {
            return Err(ClientError::BadAnswer(format!("HTTP {}", resp.status())));
        }
        let body = Limited::new(resp.into_body(), 65535).collect().await.map_err(io)?;
        Ok(body.to_bytes().to_vec())
    }

    /// A GET of `path_and_query` over HTTP/2: the status and the body.
    pub async fn get(
        &self,
        target: &Target,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let req = http::Request::builder()
            .uri(format!("https://{}{path_and_query}", target.name))
            .header(http::header::ACCEPT, "*/*")
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        self.h2_call(target, req, timeout).await
    }

    /// A POST of `body` as `content_type` to the target's path over HTTP/2:
    /// the status and the body.
    pub async fn post(
        &self,
        target: &Target,
        content_type: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let req = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("https://{}{}", target.name, target.path))
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::ACCEPT, content_type)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        self.h2_call(target, req, timeout).await
    }

    async fn h2_call(
        &self,
        target: &Target,
        req: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let work = async {
            let mut sender = self.h2_sender(target).await?;
            sender.ready().await.map_err(io)?;
            let resp = sender.send_request(req).await.map_err(io)?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), 1 << 20).collect().await.map_err(io)?;
            Ok((status, body.to_bytes().to_vec()))
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| ClientError::Timeout)?
    }

    /// A DoH JSON API GET (`?name=&type=`) over HTTP/2: the body.
    pub async fn get_json(&self, target: &Target, query: &str, timeout: Duration) -> Result<String, ClientError> {
        let (status, body) = self.get(target, &format!("{}?{query}", target.path), timeout).await?;
        if status != 200 {
            return Err(ClientError::BadAnswer(format!("HTTP {status}")));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    async fn quic_conn(&self, target: &Target, how: Encrypted) -> Result<quinn::Connection, ClientError> {
        let key = (target.addr, how);
        if let Some(c) = lock(&self.quic_conns).get(&key).filter(|c| c.close_reason().is_none()).cloned() {
            return Ok(c);
        }
        let config = if how == Encrypted::H3 { self.quic_h3.clone() } else { self.quic_doq.clone() };
        let conn = self.endpoint.connect_with(config, target.addr, &target.name).map_err(io)?.await.map_err(io)?;
        lock(&self.quic_conns).insert(key, conn.clone());
        Ok(conn)
    }

    async fn doq(&self, target: &Target, query: &[u8]) -> Result<Vec<u8>, ClientError> {
        let conn = self.quic_conn(target, Encrypted::Quic).await?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(io)?;
        // RFC 9250 §4.2.1: Message ID 0 on the wire; the caller's comes back.
        let id = [query[0], query[1]];
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&[0, 0]);
        framed.extend_from_slice(&query[2..]);
        send.write_all(&framed).await.map_err(io)?;
        send.finish().map_err(io)?;
        let data = recv.read_to_end(2 + 65535).await.map_err(io)?;
        let len = data.get(..2).map(|l| u16::from_be_bytes([l[0], l[1]]) as usize);
        if len != Some(data.len().saturating_sub(2)) || data.len() < 14 {
            return Err(ClientError::BadAnswer("bad DoQ framing".into()));
        }
        let mut resp = data[2..].to_vec();
        resp[..2].copy_from_slice(&id);
        Ok(resp)
    }

    async fn h3_sender(&self, target: &Target) -> Result<H3Sender, ClientError> {
        if let Some(s) = lock(&self.h3_senders).get(&target.addr).cloned() {
            let alive =
                lock(&self.quic_conns).get(&(target.addr, Encrypted::H3)).is_some_and(|c| c.close_reason().is_none());
            if alive {
                return Ok(s);
            }
        }
        let conn = self.quic_conn(target, Encrypted::H3).await?;
        let (mut driver, sender) = h3::client::new(h3_quinn::Connection::new(conn)).await.map_err(io)?;
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        lock(&self.h3_senders).insert(target.addr, sender.clone());
        Ok(sender)
    }

    async fn doh3(&self, target: &Target, query: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut sender = self.h3_sender(target).await?;
        let (head, body) = doh_request(target, query)?.into_parts();
        let mut stream = sender.send_request(http::Request::from_parts(head, ())).await.map_err(io)?;
        stream.send_data(body).await.map_err(io)?;
        stream.finish().await.map_err(io)?;
        let resp = stream.recv_response().await.map_err(io)?;
        if resp.status() != http::StatusCode::OK {
            return Err(ClientError::BadAnswer(format!("HTTP {}", resp.status())));
        }
        let mut out = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await.map_err(io)? {
            if out.len() + chunk.remaining() > 65535 {
                return Err(ClientError::BadAnswer("answer too large".into()));
            }
            while chunk.has_remaining() {
                let c = chunk.chunk();
                out.extend_from_slice(c);
                let n = c.len();
                chunk.advance(n);
            }
        }
        Ok(out)
    }
}

/// A DoH POST of `query` to `target`.
fn doh_request(target: &Target, query: &[u8]) -> Result<http::Request<Bytes>, ClientError> {
    let uri = format!("https://{}{}", target.name, target.path);
    http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, crate::DNS_MESSAGE)
        .header(http::header::ACCEPT, crate::DNS_MESSAGE)
        .body(Bytes::copy_from_slice(query))
        .map_err(|e| ClientError::Config(e.to_string()))
}

/// One length-prefixed exchange on a stream (RFC 7766 framing).
async fn framed_exchange<S>(s: &mut S, query: &[u8]) -> Result<Vec<u8>, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed).await.map_err(io)?;
    loop {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.map_err(io)?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.map_err(io)?;
        // Skip a late answer to an earlier query on a reused connection.
        if buf.len() >= 2 && buf[..2] == query[..2] {
            return Ok(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_is_found_in_a_generated_certificate() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let der = cert.cert.der();
        let spki = spki_of(der).expect("spki");
        assert_eq!(spki, rcgen::PublicKeyData::subject_public_key_info(&cert.signing_key).as_slice());
        assert_eq!(spki_of(&der[..20]), None);
        assert_eq!(spki_of(&[]), None);
    }
}
