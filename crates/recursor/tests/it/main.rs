//! Recursor integration tests: every resolution goes through the lab.

mod abuse;
mod dnssec;
mod faults;
mod fuzz;
mod resolve;
mod scenario;
mod service;

use std::sync::Arc;
use std::time::Duration;

use lab::{Lab, LabData};
use proto::Name;
use recursor::{NetTransport, Recursor, RecursorConfig, SystemClock};

/// A lab on a random port and a recursor wired to it.
pub async fn setup_with(tweak: impl FnOnce(&mut RecursorConfig)) -> (Lab, Recursor) {
    setup_full(tweak, Arc::new(SystemClock)).await
}

/// The recursor settings that point at `lab`, with short test timeouts.
pub fn lab_config(lab: &Lab) -> RecursorConfig {
    RecursorConfig {
        root_hints: lab.root_hints().iter().map(|s| s.ip()).collect(),
        upstream_port: lab.port(),
        do_not_query_localhost: false,
        initial_timeout: Duration::from_millis(500),
        max_timeout: Duration::from_millis(800),
        resolution_timeout: Duration::from_millis(3000),
        ..RecursorConfig::default()
    }
}

/// A recursor wired to an already running lab.
pub async fn setup_on(lab: Lab, tweak: impl FnOnce(&mut RecursorConfig)) -> (Lab, Recursor) {
    let mut config = lab_config(&lab);
    tweak(&mut config);
    let recursor = Recursor::new(config, Arc::new(NetTransport::default()), Arc::new(SystemClock));
    (lab, recursor)
}

/// As [`setup_with`], with a given clock.
pub async fn setup_full(tweak: impl FnOnce(&mut RecursorConfig), clock: Arc<dyn recursor::Clock>) -> (Lab, Recursor) {
    let data = Arc::new(LabData::builtin().expect("lab data"));
    let lab = Lab::start(data, 0).await.expect("lab starts");
    let mut config = lab_config(&lab);
    tweak(&mut config);
    let recursor = Recursor::new(config, Arc::new(NetTransport::default()), clock);
    (lab, recursor)
}

/// Counts upstream queries on their way to the network.
pub struct Counting {
    /// Queries sent.
    pub sent: std::sync::atomic::AtomicUsize,
    inner: NetTransport,
}

impl recursor::Transport for Counting {
    fn query(
        &self,
        q: recursor::UpstreamQuery,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<proto::Message, recursor::TransportError>> + Send + '_>,
    > {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.query(q)
    }
}

/// A lab and a recursor whose upstream queries are counted.
pub async fn setup_counting() -> (Lab, Recursor, Arc<Counting>) {
    setup_counting_with(|_, _| {}).await
}

/// As [`setup_counting`], with a config tweak that sees the lab.
pub async fn setup_counting_with(tweak: impl FnOnce(&Lab, &mut RecursorConfig)) -> (Lab, Recursor, Arc<Counting>) {
    let (lab, plain) = setup().await;
    let mut config = plain.config().clone();
    tweak(&lab, &mut config);
    let plain = Recursor::new(config, Arc::new(NetTransport::default()), Arc::new(SystemClock));
    let counting = Arc::new(Counting { sent: Default::default(), inner: NetTransport::default() });
    let r = Recursor::new(plain.config().clone(), counting.clone(), Arc::new(SystemClock));
    (lab, r, counting)
}

/// The default lab setup.
pub async fn setup() -> (Lab, Recursor) {
    setup_with(|_| {}).await
}

/// Parses a name.
pub fn n(s: &str) -> Name {
    Name::from_ascii(s).expect("valid name")
}
