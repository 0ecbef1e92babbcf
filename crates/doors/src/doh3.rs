//! DNS over HTTPS over HTTP/3 (RFC 9114 on QUIC): the same requests and
//! answers as the HTTP/1.1 and HTTP/2 door, on UDP at the same port.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use rustls::ServerConfig;
use tokio::task::JoinSet;

use crate::doh::{DohSite, MAX_MESSAGE, respond};
use crate::{Client, Door, DoorError, InFlight, TcpLimits};

/// Listens for DoH over HTTP/3 on UDP `addr` (`tls`: TLS 1.3, ALPN `h3`)
/// and answers each path of `routes` with its handler. Returns the bound
/// address.
pub async fn serve_doh3(
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    site: DohSite,
    limits: TcpLimits,
    inflight: InFlight,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, DoorError> {
    // Control, QPACK encoder and decoder, and room for a grease stream.
    let config = crate::doq::quic_server_config(tls, &limits, 4)?;
    let routes = Arc::new(site);
    crate::doq::quic_accept_each(addr, config, limits, tasks, move |conn| {
        let (routes, inflight) = (routes.clone(), inflight.clone());
        async move {
            let client = Client { door: Door::Doh, addr: conn.remote_address().ip() };
            let Ok(mut h3) = h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn)).await else {
                return;
            };
            loop {
                let resolver = match h3.accept().await {
                    Ok(Some(r)) => r,
                    Ok(None) | Err(_) => break,
                };
                let (routes, inflight) = (routes.clone(), inflight.clone());
                tokio::spawn(async move {
                    let Ok((req, mut stream)) = resolver.resolve_request().await else { return };
                    let (parts, ()) = req.into_parts();
                    let read = async || {
                        let mut body = Vec::new();
                        loop {
                            match tokio::time::timeout(limits.read_timeout, stream.recv_data()).await {
                                Ok(Ok(Some(mut chunk))) => {
                                    if body.len() + chunk.remaining() > MAX_MESSAGE {
                                        return None;
                                    }
                                    while chunk.has_remaining() {
                                        let c = chunk.chunk();
                                        body.extend_from_slice(c);
                                        let n = c.len();
                                        chunk.advance(n);
                                    }
                                }
                                Ok(Ok(None)) => return Some(Bytes::from(body)),
                                _ => return None,
                            }
                        }
                    };
                    let response = respond(&parts, read, &routes, client, inflight).await;
                    let (head, body) = response.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    if stream.send_response(http::Response::from_parts(head, ())).await.is_ok() {
                        let _ = stream.send_data(body).await;
                        let _ = stream.finish().await;
                    }
                });
            }
        }
    })
}
