//! End-to-end tests of the `onedot` binary.

mod abuse;
mod cli;
mod control;
mod demo;
mod dist;
mod dnstap;
mod feeds;
mod filtering;
mod help;
mod keyless;
mod observatory;
mod peers;
mod privacy;
mod restart;
mod tidy;
mod xdp;

use std::path::{Path, PathBuf};

/// The built binary.
pub fn onedot() -> &'static str {
    env!("CARGO_BIN_EXE_onedot")
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts `onedot lab` on a free port (writing its trust anchor to
/// `anchor_out` if given); returns the process and the port. A lab that
/// exits without a port (every port it tried taken, say, with many tests
/// binding sockets at once) is started again, twice at most, and what it
/// printed is shown if none comes up.
pub fn start_lab(anchor_out: Option<&Path>) -> (std::process::Child, u16) {
    start_lab_in(None, anchor_out)
}

/// `command` run in the network namespace `netns` (`ip netns exec`), or
/// as it is.
pub fn in_netns(netns: Option<&str>, command: &str) -> std::process::Command {
    match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns, command]);
            c
        }
        None => std::process::Command::new(command),
    }
}

/// [`start_lab`] in the network namespace `netns`, if given.
pub fn start_lab_in(netns: Option<&str>, anchor_out: Option<&Path>) -> (std::process::Child, u16) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut failures = String::new();
    for attempt in 1..=3 {
        let mut cmd = in_netns(netns, onedot());
        cmd.args(["lab", "--port", "0"]);
        if let Some(a) = anchor_out {
            cmd.arg("--trust-anchor-out").arg(a);
        }
        let mut lab = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("lab starts");
        let mut seen = String::new();
        for line in BufReader::new(lab.stderr.take().expect("stderr")).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("lab: root servers 127.53.0.1:")
                && let Some(port) = rest.split_whitespace().next().and_then(|p| p.parse().ok())
            {
                return (lab, port);
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let status = lab.wait();
        failures.push_str(&format!("attempt {attempt} ({status:?}):\n{seen}\n"));
    }
    panic!("the lab did not start:\n{failures}");
}
