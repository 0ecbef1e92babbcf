//! Full TLS handshakes against a server, as fast as `CONCURRENCY` clients
//! can make them, for `SECONDS`: prints one JSON line with the count, the
//! rate and the latency percentiles. Used by `bench/keyless.sh` to compare
//! a local key with the key server.
//!
//!     cargo run --release -p onedot --example handshakes -- 127.0.0.1:853 10 8 dot
//!
//! Every handshake is a full one (resumption off), checks the server's
//! signature over the handshake (the certificate itself is not checked:
//! the bench's certificates are self-signed), and closes the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args.get(1).ok_or("usage: handshakes ADDR SECONDS CONCURRENCY [ALPN]")?.parse()?;
    let seconds: u64 = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let concurrency: usize = args.get(3).map_or(Ok(8), |s| s.parse())?;
    let alpn = args.get(4).cloned().unwrap_or_else(|| "dot".into());
    // Any certificate (the bench's are self-signed), but the handshake's
    // signature is checked as always.
    let verify = doors::client::Verify { insecure: true, ..Default::default() };
    let mut config = (*doors::client::client_config(&verify, alpn.as_bytes(), true)?).clone();
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (latencies, failures) = runtime.block_on(async move {
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let connector = connector.clone();
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut failed) = (Vec::new(), 0u64);
                let name = ServerName::IpAddress(addr.ip().into());
                while Instant::now() < end {
                    let t = Instant::now();
                    let ok = match tokio::net::TcpStream::connect(addr).await {
                        Ok(tcp) => tokio::time::timeout(Duration::from_secs(5), connector.connect(name.clone(), tcp))
                            .await
                            .is_ok_and(|r| r.is_ok()),
                        Err(_) => false,
                    };
                    if ok {
                        lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    } else {
                        failed += 1;
                    }
                }
                (lat, failed)
            }));
        }
        let (mut all, mut failures) = (Vec::new(), 0);
        for t in tasks {
            if let Ok((lat, failed)) = t.await {
                all.extend(lat);
                failures += failed;
            }
        }
        (all, failures)
    });
    let mut sorted = latencies;
    sorted.sort_unstable();
    let pct = |p: f64| {
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(i).copied().unwrap_or(0)
    };
    println!(
        "{{\"handshakes\": {}, \"failures\": {failures}, \"per_second\": {:.1}, \"p50_us\": {}, \"p99_us\": {}}}",
        sorted.len(),
        sorted.len() as f64 / seconds as f64,
        pct(0.5),
        pct(0.99)
    );
    Ok(())
}
