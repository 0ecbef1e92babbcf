//! The key server and a keyless edge in one process: TLS handshakes whose
//! signatures come from the key server, for every key type and both TLS
//! versions; the key server's refusals (region, edge list, revocation, a
//! foreign CA, a world-readable key); failover between key servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keyless::ca;
use keyless::{KeyPolicy, KeyServer, KeylessClient, KeylessConfig, KeylessKey};
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("onedot-keyless-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

/// A door certificate (from a door CA) for a key of `alg`, its key written
/// to `dir/NAME.key` (mode 600); returns the chain and the CA to trust.
struct Door {
    chain: Vec<CertificateDer<'static>>,
    ca: CertificateDer<'static>,
    key_path: PathBuf,
}

fn door(dir: &Path, name: &str, key: rcgen::KeyPair) -> Door {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "door CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = rcgen::CertificateParams::new(vec!["dns.example".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    let key_path = dir.join(format!("{name}.key"));
    ca::write_file(&key_path, key.serialize_pem().as_bytes(), true).expect("key file");
    Door { chain: vec![cert.der().clone()], ca: ca_cert.der().clone(), key_path }
}

fn rsa_key(dir: &Path) -> rcgen::KeyPair {
    let path = dir.join("rsa-gen.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&path)
        .status()
        .expect("openssl runs (scripts/test.sh installs it)");
    assert!(ok.success());
    rcgen::KeyPair::from_pem(&std::fs::read_to_string(&path).expect("pem")).expect("rsa key")
}

fn edge_config(state: &Path, servers: Vec<std::net::SocketAddr>, edge: &ca::EdgeIdentity) -> KeylessConfig {
    KeylessConfig {
        servers,
        server_name: None,
        ca_pem: std::fs::read(ca::ca_cert_path(state)).expect("ca"),
        edge_cert_pem: edge.cert_pem.clone().into_bytes(),
        edge_key_pem: edge.key_pem.clone().into_bytes(),
        deadline: Duration::from_millis(1500),
    }
}

async fn start_key_server(state: &Path, keys: &[KeyPolicy]) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let server = KeyServer::new(state, keys).expect("key server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (addr, tokio::spawn(server.serve(listener)))
}

#[derive(Debug)]
struct One(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for One {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A full handshake (no resumption) against a server whose certificate's
/// key is kept by the key server; `Err` with the client's error otherwise.
async fn handshake(client: &KeylessClient, door: &Door, tls12: bool) -> Result<(), String> {
    let key = KeylessKey::for_certificate(client, &door.chain[0]).map_err(|e| e.to_string())?;
    let certified = Arc::new(CertifiedKey::new(door.chain.clone(), key));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(One(certified)));
    // Every handshake is a full one: nothing to resume.
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(door.ca.clone()).expect("root");
    let versions: &[&rustls::SupportedProtocolVersion] =
        if tls12 { &[&rustls::version::TLS12] } else { &[&rustls::version::TLS13] };
    let client_cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let srv = tokio::spawn(async move { acceptor.accept(a).await.map(|_| ()) });
    let name = rustls_pki_types::ServerName::try_from("dns.example").expect("name");
    let cli = connector.connect(name, b).await.map(|_| ()).map_err(|e| e.to_string());
    let _ = srv.await;
    cli
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_are_signed_by_the_key_server_for_every_key_type() {
    let dir = tempdir("types");
    let state = dir.join("state");
    ca::init(&state, &["127.0.0.1".to_string()]).expect("init");
    let edge = ca::issue_edge(&state, "ams1", "eu").expect("edge");
    let doors = [
        door(&dir, "p256", rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key")),
        door(&dir, "p384", rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key")),
        door(&dir, "ed25519", rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key")),
        door(&dir, "rsa", rsa_key(&dir)),
    ];
    let policies: Vec<KeyPolicy> =
        doors.iter().map(|d| KeyPolicy { path: d.key_path.clone(), regions: vec![], edges: vec![] }).collect();
    let (addr, _server) = start_key_server(&state, &policies).await;
    let client = KeylessClient::start(edge_config(&state, vec![addr], &edge)).expect("client");
    for (d, name) in doors.iter().zip(["p256", "p384", "ed25519", "rsa"]) {
        handshake(&client, d, false).await.unwrap_or_else(|e| panic!("{name} TLS 1.3: {e}"));
        if name != "ed25519" {
            // rustls offers Ed25519 in TLS 1.2 too, but keep to what DoT clients use.
            handshake(&client, d, true).await.unwrap_or_else(|e| panic!("{name} TLS 1.2: {e}"));
        }
    }
    assert_eq!(client.stats().signed.load(std::sync::atomic::Ordering::Relaxed), 7);
    // A key the key server does not hold: the handshake fails.
    let stranger = door(&dir, "stranger", rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key"));
    assert!(handshake(&client, &stranger, false).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_edge_lists_revocation_and_foreign_cas_are_refused() {
    let dir = tempdir("policy");
    let state = dir.join("state");
    ca::init(&state, &["127.0.0.1".to_string()]).expect("init");
    let ams = ca::issue_edge(&state, "ams1", "eu").expect("edge");
    let nyc = ca::issue_edge(&state, "nyc1", "us").expect("edge");
    assert!(ca::issue_edge(&state, "ams1", "eu").is_err(), "a registered name is not issued twice");
    let eu_only = door(&dir, "eu", rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key"));
    let nyc_only = door(&dir, "nyc", rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key"));
    let policies = [
        KeyPolicy { path: eu_only.key_path.clone(), regions: vec!["eu".into()], edges: vec![] },
        KeyPolicy { path: nyc_only.key_path.clone(), regions: vec![], edges: vec!["nyc1".into()] },
    ];
    let (addr, _server) = start_key_server(&state, &policies).await;
    let ams_client = KeylessClient::start(edge_config(&state, vec![addr], &ams)).expect("client");
    let nyc_client = KeylessClient::start(edge_config(&state, vec![addr], &nyc)).expect("client");
    handshake(&ams_client, &eu_only, false).await.expect("an EU edge uses the EU key");
    assert!(handshake(&nyc_client, &eu_only, false).await.is_err(), "a US edge may not use the EU key");
    handshake(&nyc_client, &nyc_only, false).await.expect("nyc1 uses its own key");
    assert!(handshake(&ams_client, &nyc_only, false).await.is_err(), "ams1 is not on that key's edge list");

    // Revocation applies to the next operation on the open connection.
    assert_eq!(ca::revoke_edge(&state, "ams1").expect("revoke"), 1);
    assert!(handshake(&ams_client, &eu_only, false).await.is_err(), "a revoked edge is refused");
    handshake(&nyc_client, &nyc_only, false).await.expect("other edges go on");

    // An edge certificate from another operator's CA never gets in.
    let other = dir.join("other");
    ca::init(&other, &["127.0.0.1".to_string()]).expect("init");
    let foreign = ca::issue_edge(&other, "ams1", "eu").expect("edge");
    let mut cfg = edge_config(&state, vec![addr], &foreign);
    cfg.deadline = Duration::from_millis(500);
    let foreign_client = KeylessClient::start(cfg).expect("client");
    assert!(handshake(&foreign_client, &eu_only, false).await.is_err(), "a foreign CA's edge is refused");

    // A world-readable key is refused at load.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&eu_only.key_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = KeyServer::new(&state, &policies).expect_err("world-readable key");
    assert!(e.to_string().contains("readable by every user"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_fail_over_to_the_next_key_server_and_fail_closed_without_one() {
    let dir = tempdir("failover");
    let state = dir.join("state");
    ca::init(&state, &["127.0.0.1".to_string()]).expect("init");
    let edge = ca::issue_edge(&state, "ams1", "eu").expect("edge");
    let d = door(&dir, "p256", rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key"));
    let policy = [KeyPolicy { path: d.key_path.clone(), regions: vec![], edges: vec![] }];
    // The first listed server accepts TCP and never answers (hung).
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (second, _server) = start_key_server(&state, &policy).await;
    let mut cfg = edge_config(&state, vec![hung.local_addr().expect("addr"), second], &edge);
    cfg.deadline = Duration::from_millis(800);
    let client = KeylessClient::start(cfg.clone()).expect("client");
    handshake(&client, &d, false).await.expect("the second server signs");
    handshake(&client, &d, false).await.expect("and again, the hung one backing off");

    // Nothing listening anywhere: the handshake fails within the deadline.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    cfg.servers = vec![dead];
    let lonely = KeylessClient::start(cfg).expect("client");
    let t = std::time::Instant::now();
    assert!(handshake(&lonely, &d, false).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(3), "failed closed in {:?}", t.elapsed());
    assert!(lonely.stats().unavailable.load(std::sync::atomic::Ordering::Relaxed));
    drop(hung);
    let _ = std::fs::remove_dir_all(&dir);
}
