//! The lab's sockets: one UDP and one TCP listener per server address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::auth::{Reply, answer};
use crate::{Behaviour, LabData, LabError};

/// A running lab: every server bound on one shared port.
#[derive(Debug)]
pub struct Lab {
    data: Arc<LabData>,
    port: u16,
    tasks: Vec<JoinHandle<()>>,
    counts: Counts,
}

/// Queries received, per server address (UDP and TCP), for benchmarks
/// that count what reaches an authority.
type Counts = Arc<std::collections::HashMap<IpAddr, AtomicU64>>;

impl Lab {
    /// Binds every (non-dead) lab server on `port`; port 0 picks one free
    /// port that is then used on every address. Must run inside a tokio
    /// runtime.
    pub async fn start(data: Arc<LabData>, port: u16) -> Result<Lab, LabError> {
        let mut last_err = None;
        for _ in 0..8 {
            match Lab::try_start(data.clone(), port).await {
                Ok(lab) => return Ok(lab),
                Err(e) if port == 0 => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or(LabError::Behaviours("no port".into())))
    }

    async fn try_start(data: Arc<LabData>, mut port: u16) -> Result<Lab, LabError> {
        let mut udps = Vec::new();
        let mut tcps = Vec::new();
        for (addr, spec) in &data.servers {
            if spec.behaviour == Behaviour::Dead {
                continue;
            }
            let sa = SocketAddr::new(*addr, port);
            let udp = UdpSocket::bind(sa).await.map_err(|source| LabError::Bind { addr: sa, source })?;
            if port == 0 {
                port = udp.local_addr().map_err(|source| LabError::Bind { addr: sa, source })?.port();
            }
            let sa = SocketAddr::new(*addr, port);
            let tcp = listen_tcp(sa).map_err(|source| LabError::Bind { addr: sa, source })?;
            udps.push((*addr, udp));
            tcps.push((*addr, tcp));
        }
        let counts: Counts = Arc::new(udps.iter().map(|(a, _)| (*a, AtomicU64::new(0))).collect());
        let mut tasks = Vec::new();
        for (addr, sock) in udps {
            tasks.push(tokio::spawn(serve_udp(data.clone(), addr, Arc::new(sock), counts.clone())));
        }
        for (addr, l) in tcps {
            tasks.push(tokio::spawn(serve_tcp(data.clone(), addr, l, counts.clone())));
        }
        tracing::debug!(port, servers = tasks.len() / 2, "lab started");
        Ok(Lab { data, port, tasks, counts })
    }

    /// The port every lab server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root servers' socket addresses.
    pub fn root_hints(&self) -> Vec<SocketAddr> {
        self.data.root_addresses().into_iter().map(|a| SocketAddr::new(a, self.port)).collect()
    }

    /// The lab's data.
    pub fn data(&self) -> &Arc<LabData> {
        &self.data
    }

    /// Queries each server address has received so far, sorted by address.
    pub fn counts(&self) -> Vec<(IpAddr, u64)> {
        let mut v: Vec<(IpAddr, u64)> = self.counts.iter().map(|(a, c)| (*a, c.load(Ordering::Relaxed))).collect();
        v.sort();
        v
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A TCP listener that may reuse an address still in TIME_WAIT from an
/// earlier run (tests start and stop labs on the same addresses).
fn listen_tcp(sa: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if sa.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    sock.bind(sa)?;
    sock.listen(256)
}

fn count(counts: &Counts, addr: IpAddr) {
    if let Some(c) = counts.get(&addr) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

async fn serve_udp(data: Arc<LabData>, addr: IpAddr, sock: Arc<UdpSocket>, counts: Counts) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else { continue };
        count(&counts, addr);
        match answer(&data, addr, &buf[..n], true) {
            Reply::Drop => {}
            Reply::Send { bytes, delay_ms: 0 } => {
                let _ = sock.send_to(&bytes, peer).await;
            }
            Reply::Send { bytes, delay_ms } => {
                let sock = sock.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    let _ = sock.send_to(&bytes, peer).await;
                });
            }
        }
    }
}

async fn serve_tcp(data: Arc<LabData>, addr: IpAddr, listener: TcpListener, counts: Counts) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let (data, counts) = (data.clone(), counts.clone());
        tokio::spawn(async move {
            let mut len = [0u8; 2];
            let idle = Duration::from_secs(5);
            while let Ok(Ok(_)) = tokio::time::timeout(idle, stream.read_exact(&mut len)).await {
                let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
                if stream.read_exact(&mut msg).await.is_err() {
                    return;
                }
                count(&counts, addr);
                if let Reply::Send { bytes, delay_ms } = answer(&data, addr, &msg, false) {
                    if delay_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    }
                    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&bytes);
                    if stream.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}
