//! `onedot keyserver`: the key server of keyless edges (run in the
//! foreground like `serve`; SIGHUP reloads its keys), and the management
//! of its edge CA (`init`, `issue-edge`, `revoke`). The protocol and the
//! policy live in the `keyless` crate; this module is wiring.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use hyper::StatusCode;
use onedot::config::KeyserverConfig;

/// Runs the key server described by the config file at `path` until
/// SIGINT or SIGTERM.
pub async fn run(path: &Path) -> anyhow::Result<()> {
    let config = KeyserverConfig::load(path)?;
    let server = keyless::KeyServer::new(&config.state_dir, &config.policies())
        .with_context(|| format!("starting the key server from {}", path.display()))?;
    server.set_data_key_rotation(config.data_key_rotation_s, config.data_key_epochs);
    for (name, id) in server.keys().describe() {
        tracing::info!(key = %name, id = %id, "key loaded");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for addr in &config.listen {
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("key server listener {addr}"))?;
        let bound = listener.local_addr()?;
        eprintln!("keyserver: listening {bound}");
        tasks.spawn(server.clone().serve(listener));
    }
    if let Some(addr) = config.metrics_listen {
        let s = server.clone();
        let bound = crate::web::serve_fn(addr, &mut tasks, move |req| match req.uri().path() {
            "/metrics" => {
                crate::web::reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", s.render_metrics())
            }
            _ => crate::web::reply(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "/metrics only\n"),
        })
        .await?;
        eprintln!("keyserver: metrics {bound}");
    }
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let stop = crate::run::until_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(&server, path),
            () = &mut stop => break,
        }
    }
    tracing::info!("key server shutting down");
    tasks.abort_all();
    Ok(())
}

/// SIGHUP: the config's keys are read again; any failure keeps the old set.
fn reload(server: &Arc<keyless::KeyServer>, path: &Path) {
    let loaded = KeyserverConfig::load(path).and_then(|c| Ok(server.reload_keys(&c.policies())?));
    match loaded {
        Ok(n) => tracing::info!(keys = n, "keys reloaded"),
        Err(e) => tracing::error!(error = %format!("{e:#}"), "keys not reloaded; keeping the old ones"),
    }
}

/// `init`: the state directory with a new edge CA and the key server's
/// certificate for `names`.
pub fn init(state_dir: &Path, names: &[String]) -> anyhow::Result<()> {
    keyless::ca::init(state_dir, names)?;
    println!(
        "made the edge CA and the key server's certificate in {}\nedges trust {}",
        state_dir.display(),
        keyless::ca::ca_cert_path(state_dir).display()
    );
    Ok(())
}

/// `issue-edge`: a client certificate for edge `name` in `region`, written
/// to `out/NAME.pem` and `out/NAME.key`, and registered.
pub fn issue_edge(config: &Path, name: &str, region: &str, out: &Path) -> anyhow::Result<()> {
    let c = KeyserverConfig::load(config)?;
    let id = keyless::ca::issue_edge(&c.state_dir, name, region)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (cert, key): (PathBuf, PathBuf) = (out.join(format!("{name}.pem")), out.join(format!("{name}.key")));
    keyless::ca::write_file(&cert, id.cert_pem.as_bytes(), false)?;
    keyless::ca::write_file(&key, id.key_pem.as_bytes(), true)?;
    println!("edge {name} (region {region}): {} and {}", cert.display(), key.display());
    Ok(())
}

/// `revoke`: every certificate of edge `name` is refused from its next
/// operation on.
pub fn revoke(config: &Path, name: &str) -> anyhow::Result<()> {
    let c = KeyserverConfig::load(config)?;
    let n = keyless::ca::revoke_edge(&c.state_dir, name)?;
    println!("revoked {n} certificate(s) of edge {name}");
    Ok(())
}
