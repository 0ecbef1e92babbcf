//! Recursor integration tests: every resolution goes through the lab.

mod faults;
mod fuzz;
mod resolve;
mod service;

use std::sync::Arc;
use std::time::Duration;

use lab::{Lab, LabData};
use proto::Name;
use recursor::{NetTransport, Recursor, RecursorConfig, SystemClock};

/// A lab on a random port and a recursor wired to it.
pub async fn setup_with(tweak: impl FnOnce(&mut RecursorConfig)) -> (Lab, Recursor) {
    let data = Arc::new(LabData::builtin().expect("lab data"));
    let lab = Lab::start(data, 0).await.expect("lab starts");
    let mut config = RecursorConfig {
        root_hints: lab.root_hints().iter().map(|s| s.ip()).collect(),
        upstream_port: lab.port(),
        do_not_query_localhost: false,
        initial_timeout: Duration::from_millis(500),
        max_timeout: Duration::from_millis(800),
        resolution_timeout: Duration::from_millis(3000),
        ..RecursorConfig::default()
    };
    tweak(&mut config);
    let recursor = Recursor::new(config, Arc::new(NetTransport::default()), Arc::new(SystemClock));
    (lab, recursor)
}

/// The default lab setup.
pub async fn setup() -> (Lab, Recursor) {
    setup_with(|_| {}).await
}

/// Parses a name.
pub fn n(s: &str) -> Name {
    Name::from_ascii(s).expect("valid name")
}
