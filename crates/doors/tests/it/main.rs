//! Door behaviour with a fake handler: UDP answers, TCP pipelining out of
//! order, idle timeout and connection limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use doors::{BoxFuture, Client, Fast, Handler, InFlight, ProxyTrust, TcpLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// Echoes the query with QR set; an ID with the low bit set is slow.
struct Echo;

impl Handler for Echo {
    fn try_fast(&self, query: &[u8], client: Client, out: &mut Vec<u8>) -> Fast {
        if query.len() < 12 || query[1] & 1 == 1 {
            return Fast::Miss;
        }
        // The doors say where the query came from.
        assert!(client.addr.is_loopback());
        out.clear();
        out.extend_from_slice(query);
        out[2] |= 0x80;
        Fast::Answered(out.len())
    }

    fn answer<'a>(&'a self, query: &'a [u8], _: Client, out: &'a mut Vec<u8>) -> BoxFuture<'a, Option<usize>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            out.clear();
            out.extend_from_slice(query);
            out[2] |= 0x80;
            Some(out.len())
        })
    }
}

fn query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1]);
    q
}

async fn start(limits: TcpLimits) -> (SocketAddr, JoinSet<()>) {
    let mut tasks = JoinSet::new();
    let h: Arc<dyn Handler> = Arc::new(Echo);
    let addr = "127.0.0.1:0".parse().expect("addr");
    let port = doors::serve_do53(addr, 2, limits, ProxyTrust::default(), h, InFlight::default(), &mut tasks)
        .await
        .expect("do53");
    (port, tasks)
}

async fn read_msg(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.ok()?;
    let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut m).await.ok()?;
    Some(m)
}

#[tokio::test]
async fn udp_fast_and_slow_paths_answer() {
    let (addr, _tasks) = start(TcpLimits::default()).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for id in [2u16, 3] {
        sock.send_to(&query(id), addr).await.expect("send");
        let mut buf = [0u8; 512];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
            .await
            .expect("answer")
            .expect("recv");
        assert_eq!(&buf[..2], &id.to_be_bytes());
        assert!(n >= 12 && buf[2] & 0x80 != 0);
    }
}

#[tokio::test]
async fn udp_bursts_are_answered_in_batches_to_each_sender() {
    // More queries than one batch queue up before the door runs: each is
    // answered once, to the socket that asked, with its own ID.
    let (addr, _tasks) = start(TcpLimits::default()).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    }
    for round in 0..25u16 {
        for (c, sock) in clients.iter().enumerate() {
            // Even IDs are fast; every fifth round one slow query joins in.
            let id = (round * 8 + c as u16 * 2) | u16::from(round % 5 == 0 && c == 0);
            sock.send_to(&query(id), addr).await.expect("send");
        }
    }
    for (c, sock) in clients.iter().enumerate() {
        let mut ids = Vec::new();
        let mut buf = [0u8; 512];
        while ids.len() < 25 {
            let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
                .await
                .expect("every query answered")
                .expect("recv");
            assert!(n == 17 && buf[2] & 0x80 != 0);
            ids.push(u16::from_be_bytes([buf[0], buf[1]]));
        }
        ids.sort_unstable();
        let want: Vec<u16> = (0..25u16).map(|r| (r * 8 + c as u16 * 2) | u16::from(r % 5 == 0 && c == 0)).collect();
        let mut want = want;
        want.sort_unstable();
        assert_eq!(ids, want, "client {c}");
    }
}

#[tokio::test]
async fn tcp_answers_pipelined_queries_out_of_order() {
    let (addr, _tasks) = start(TcpLimits::default()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut both = Vec::new();
    for id in [1u16, 2] {
        let q = query(id);
        both.extend_from_slice(&(q.len() as u16).to_be_bytes());
        both.extend_from_slice(&q);
    }
    s.write_all(&both).await.expect("write");
    let first = read_msg(&mut s).await.expect("first answer");
    let second = read_msg(&mut s).await.expect("second answer");
    assert_eq!(&first[..2], &2u16.to_be_bytes(), "the fast answer overtakes the slow one");
    assert_eq!(&second[..2], &1u16.to_be_bytes());
}

#[tokio::test]
async fn tcp_idle_connections_are_closed() {
    let limits = TcpLimits { idle_timeout: Duration::from_millis(200), ..TcpLimits::default() };
    let (addr, _tasks) = start(limits).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("closed in time").unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn tcp_connection_limit_is_enforced() {
    let limits = TcpLimits { max_connections: 2, ..TcpLimits::default() };
    let (addr, _tasks) = start(limits).await;
    let _a = TcpStream::connect(addr).await.expect("a");
    let _b = TcpStream::connect(addr).await.expect("b");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(addr).await.expect("c connects at the TCP level");
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await.expect("closed in time").unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed at once");
}

#[tokio::test]
async fn tcp_garbage_length_closes_the_connection() {
    let (addr, _tasks) = start(TcpLimits::default()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&[0, 3, 1, 2, 3]).await.expect("write");
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("closed").unwrap_or(0);
    assert_eq!(n, 0);
}

/// DoH over HTTP/2: a hundred concurrent streams on one connection, fast
/// and slow mixed, run in the connection's task; each gets its own answer.
#[tokio::test]
async fn doh_streams_on_one_connection_each_get_their_answer() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let tls = doors::tls_config(cert_pem.as_bytes(), key_pem.as_bytes(), &[b"h2", b"http/1.1"]).expect("tls config");
    let mut tasks = JoinSet::new();
    let h: Arc<dyn Handler> = Arc::new(Echo);
    let site = doors::DohSite { routes: vec![("/dns-query".to_string(), h)], odoh: None, pages: None };
    let addr = doors::serve_doh(
        "127.0.0.1:0".parse().expect("addr"),
        tls,
        site,
        TcpLimits::default(),
        ProxyTrust::default(),
        false,
        InFlight::default(),
        &mut tasks,
    )
    .await
    .expect("doh");
    let verify = doors::client::Verify { ca_pem: Some(cert_pem.into_bytes()), ..Default::default() };
    let client = Arc::new(doors::client::EncryptedClient::new(&verify).expect("client"));
    let target = doors::client::Target { addr, name: "localhost".to_string(), path: "/dns-query".to_string() };
    // One exchange first, so that the others share its connection.
    client.exchange(doors::client::Encrypted::Https, &target, &query(0), Duration::from_secs(3)).await.expect("first");
    let mut asks = JoinSet::new();
    for id in 1..=100u16 {
        let (client, target) = (client.clone(), target.clone());
        asks.spawn(async move {
            let r = client.exchange(doors::client::Encrypted::Https, &target, &query(id), Duration::from_secs(5)).await;
            (id, r)
        });
    }
    let mut answered = 0;
    while let Some(done) = asks.join_next().await {
        let (id, r) = done.expect("task");
        let r = r.expect("answer");
        assert_eq!(&r[..2], &id.to_be_bytes());
        assert!(r[2] & 0x80 != 0);
        answered += 1;
    }
    assert_eq!(answered, 100);
}

/// DoT: a rustls client (trusting a self-signed certificate made here)
/// negotiates ALPN `dot` and gets pipelined answers out of order.
#[tokio::test]
async fn dot_answers_pipelined_queries_over_tls() {
    use rustls_pki_types::ServerName;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let tls = doors::tls_config(cert_pem.as_bytes(), key_pem.as_bytes(), &[b"dot"]).expect("tls config");
    let mut tasks = JoinSet::new();
    let h: Arc<dyn Handler> = Arc::new(Echo);
    let addr = doors::serve_dot(
        "127.0.0.1:0".parse().expect("addr"),
        tls,
        TcpLimits::default(),
        ProxyTrust::default(),
        h,
        InFlight::default(),
        &mut tasks,
    )
    .await
    .expect("dot");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"dot".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut s = connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("handshake");
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"dot"[..]));
    let mut both = Vec::new();
    for id in [1u16, 2] {
        let q = query(id);
        both.extend_from_slice(&(q.len() as u16).to_be_bytes());
        both.extend_from_slice(&q);
    }
    s.write_all(&both).await.expect("write");
    let mut read = async || {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.expect("len");
        let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut m).await.expect("msg");
        m
    };
    assert_eq!(&read().await[..2], &2u16.to_be_bytes(), "the fast answer first");
    assert_eq!(&read().await[..2], &1u16.to_be_bytes());
}

#[tokio::test]
async fn dot_rejects_bad_pem_and_times_out_silent_handshakes() {
    assert!(doors::tls_config(b"not a pem", b"nor this", &[b"dot"]).is_err());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let tls = doors::tls_config(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes(), &[b"dot"])
        .expect("tls");
    let limits = TcpLimits { handshake_timeout: Duration::from_millis(200), ..TcpLimits::default() };
    let mut tasks = JoinSet::new();
    let addr = doors::serve_dot(
        "127.0.0.1:0".parse().expect("addr"),
        tls,
        limits,
        ProxyTrust::default(),
        Arc::new(Echo),
        InFlight::default(),
        &mut tasks,
    )
    .await
    .expect("dot");
    // A client that connects and says nothing is dropped after the timeout.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("closed in time").unwrap_or(0);
    assert_eq!(n, 0);
}

/// A new certificate is picked up by new handshakes while a connection made
/// with the old one keeps working; a bad pair is refused and the old kept.
#[tokio::test]
async fn dot_certificates_reload_without_dropping_connections() {
    use rustls_pki_types::ServerName;
    let first = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let second = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let store = doors::CertStore::from_pem(first.cert.pem().as_bytes(), first.signing_key.serialize_pem().as_bytes())
        .expect("store");
    let tls = doors::tls_config_from_store(store.clone(), &[b"dot"]).expect("tls");
    let mut tasks = JoinSet::new();
    let addr = doors::serve_dot(
        "127.0.0.1:0".parse().expect("addr"),
        tls,
        TcpLimits::default(),
        ProxyTrust::default(),
        Arc::new(Echo),
        InFlight::default(),
        &mut tasks,
    )
    .await
    .expect("dot");
    let connect = async |trust: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(trust.cert.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
    };
    let mut old = connect(&first).await.expect("first certificate");
    store.replace(second.cert.pem().as_bytes(), second.signing_key.serialize_pem().as_bytes()).expect("reload");
    assert!(connect(&first).await.is_err(), "new handshakes no longer get the old certificate");
    connect(&second).await.expect("new handshakes get the new certificate");
    // The connection made before the reload still answers.
    let q = query(2);
    old.write_all(&(q.len() as u16).to_be_bytes()).await.expect("write");
    old.write_all(&q).await.expect("write");
    let mut len = [0u8; 2];
    old.read_exact(&mut len).await.expect("answer on the old connection");
    // A broken pair is refused and the current one kept.
    assert!(store.replace(b"junk", b"junk").is_err());
    connect(&second).await.expect("still the second certificate");
}

/// DoQ (RFC 9250): one stream per query, answered with a length prefix and
/// FIN; a query with a non-zero Message ID closes the connection with
/// DOQ_PROTOCOL_ERROR; the door reports the client as DoQ.
#[tokio::test]
async fn doq_answers_streams_and_refuses_non_zero_ids() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let store = doors::CertStore::from_pem(cert.cert.pem().as_bytes(), cert.signing_key.serialize_pem().as_bytes())
        .expect("store");
    let tls = doors::tls13_config_from_store(store, &[b"doq"]).expect("tls");
    let mut tasks = JoinSet::new();
    let addr = doors::serve_doq(
        "127.0.0.1:0".parse().expect("addr"),
        tls,
        TcpLimits::default(),
        Arc::new(Echo),
        InFlight::default(),
        &mut tasks,
    )
    .await
    .expect("doq");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"doq".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(client).expect("quic client");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let conn = endpoint.connect(addr, "localhost").expect("connect").await.expect("handshake");

    // Two queries, each on its own stream (the second one slow: ID 0 is
    // even, so the Echo handler answers both on the fast path).
    for _ in 0..2 {
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        let q = query(0);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        send.write_all(&framed).await.expect("write");
        send.finish().expect("finish");
        let resp = recv.read_to_end(4096).await.expect("response");
        assert_eq!(u16::from_be_bytes([resp[0], resp[1]]) as usize, resp.len() - 2);
        assert_eq!(resp[2..4], [0, 0], "Message ID 0");
        assert_eq!(resp[4] & 0x80, 0x80, "a response");
    }

    // A non-zero ID breaks the protocol.
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    let q = query(7);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    send.write_all(&framed).await.expect("write");
    send.finish().expect("finish");
    let _ = recv.read_to_end(4096).await;
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(doors::doq_error::PROTOCOL_ERROR));
        }
        other => panic!("expected DOQ_PROTOCOL_ERROR, got {other:?}"),
    }
}

/// Remembers the client address of the last query.
struct Recorder(std::sync::Mutex<Option<std::net::IpAddr>>);

impl Handler for Recorder {
    fn try_fast(&self, query: &[u8], client: Client, out: &mut Vec<u8>) -> Fast {
        *self.0.lock().expect("lock") = Some(client.addr);
        out.clear();
        out.extend_from_slice(query);
        out[2] |= 0x80;
        Fast::Answered(out.len())
    }

    fn answer<'a>(&'a self, _: &'a [u8], _: Client, _: &'a mut Vec<u8>) -> BoxFuture<'a, Option<usize>> {
        Box::pin(async { None })
    }
}

/// PROXY v2: from a trusted load balancer the header's address is the
/// client; without a header such a connection is closed; from anyone else
/// no header is read.
#[tokio::test]
async fn proxy_v2_carries_the_client_address_from_trusted_balancers_only() {
    let serve = async |trust: &str| {
        let rec = Arc::new(Recorder(std::sync::Mutex::new(None)));
        let mut tasks = JoinSet::new();
        let proxy = ProxyTrust::new(vec![(trust.parse().expect("ip"), 32)]);
        let addr = doors::serve_tcp(
            "127.0.0.1:0".parse().expect("addr"),
            TcpLimits::default(),
            proxy,
            rec.clone(),
            InFlight::default(),
            &mut tasks,
        )
        .await
        .expect("tcp");
        (addr, rec, tasks)
    };
    let framed = |q: &[u8]| {
        let mut f = (q.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(q);
        f
    };
    // Trusted: the header's address is the client.
    let (addr, rec, _tasks) = serve("127.0.0.1").await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&doors::proxy_v2_header("192.0.2.99:5555".parse().expect("addr"), addr)).await.expect("header");
    s.write_all(&framed(&query(4))).await.expect("query");
    let m = read_msg(&mut s).await.expect("answer");
    assert_eq!(m[..2], [0, 4]);
    assert_eq!(*rec.0.lock().expect("lock"), Some("192.0.2.99".parse().expect("ip")));
    // Trusted but no header: closed without an answer.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&framed(&query(6))).await.expect("query");
    assert!(tokio::time::timeout(Duration::from_secs(3), read_msg(&mut s)).await.expect("closed").is_none());
    // Untrusted: the peer's own address, no header read.
    let (addr, rec, _tasks2) = serve("127.0.0.2").await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&framed(&query(8))).await.expect("query");
    assert!(read_msg(&mut s).await.is_some());
    assert_eq!(*rec.0.lock().expect("lock"), Some("127.0.0.1".parse().expect("ip")));
}
