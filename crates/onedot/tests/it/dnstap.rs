//! dnstap read back by the real tools: onedot streams to Frame Streams'
//! own collector (`fstrm_capture`, Debian's fstrm-bin), which writes a
//! file that `dnstap-ldns` (Debian's dnstap-ldns) decodes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::rtype;

use crate::filtering::{ask, unique_dir};
use crate::restart::Serve;

struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fstrm_capture_and_dnstap_ldns_read_the_stream_back() {
    let dir = unique_dir("dnstap");
    std::fs::create_dir_all(&dir).expect("dir");
    let (socket, file) = (dir.join("tap.sock"), dir.join("tap.fstrm"));
    let collector = Collector(
        Command::new("fstrm_capture")
            .args(["-t", "protobuf:dnstap.Dnstap", "-u"])
            .arg(&socket)
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fstrm_capture runs (Debian package fstrm-bin)"),
    );
    wait_for(&socket);
    let (mut lab, port) = crate::start_lab(None);
    let config = dir.join("onedot.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[web]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n[resolver]\n\
             root_hints = [\"127.53.0.1\"]\nupstream_port = {port}\ndo_not_query_localhost = false\n\
             answer_special_use_locally = false\n[dnssec]\nvalidate = false\n\
             [dnstap]\nsocket = \"tap.sock\"\nidentity = \"lab-node\"\nresolver_query = true\nresolver_response = true\n"
        ),
    )
    .expect("config");
    let mut serve = Serve::start(&config, &[]);
    let log = serve.log();
    let door: std::net::SocketAddr = log
        .split_whitespace()
        .find_map(|w| w.strip_prefix("udp="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no udp door: {log}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !serve.log().contains("dnstap collector connected") {
        assert!(Instant::now() < deadline, "{}", serve.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ask(door, "www.example.test", rtype::A, false).is_some());
    assert!(ask(door, "www.example.test", rtype::A, true).is_some(), "a cache hit, over TCP");
    assert!(ask(door, "nothere.example.test", rtype::AAAA, false).is_some());
    // SIGTERM: what is queued goes out, then STOP; the collector says FINISH.
    assert!(serve.stop().success());
    let mut collector = collector;
    let _ = Command::new("kill").args(["-INT", &collector.0.id().to_string()]).status();
    let _ = collector.0.wait();

    let out = Command::new("dnstap-ldns").arg("-y").arg("-r").arg(&file).output().expect("dnstap-ldns runs");
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "dnstap-ldns: {}\n{yaml}", String::from_utf8_lossy(&out.stderr));
    let count = |needle: &str| yaml.matches(needle).count();
    assert_eq!(count("type: CLIENT_QUERY"), 3, "{yaml}");
    assert_eq!(count("type: CLIENT_RESPONSE"), 3, "{yaml}");
    assert!(count("type: RESOLVER_QUERY") >= 2, "the first query was resolved: {yaml}");
    // A query retried after a lost reply has no response of its own.
    assert!(count("type: RESOLVER_RESPONSE") >= 2, "{yaml}");
    assert!(count("type: RESOLVER_QUERY") >= count("type: RESOLVER_RESPONSE"), "{yaml}");
    assert!(count("identity: \"lab-node\"") >= 8, "{yaml}");
    assert!(yaml.contains("socket_protocol: TCP") && yaml.contains("socket_protocol: UDP"), "{yaml}");
    assert!(yaml.contains("www.example.test.") && yaml.contains("nothere.example.test."), "{yaml}");
    assert!(yaml.contains("NXDOMAIN"), "the response's rcode decodes: {yaml}");
    // Client addresses truncated to their /24; the authorities' in full.
    assert_eq!(count("query_address: \"127.0.0.0\""), 6, "{yaml}");
    assert!(!yaml.contains("query_address: \"127.0.0.1\""), "a full client address in the stream: {yaml}");
    assert!(yaml.contains("response_address: \"127.53."), "{yaml}");
    assert!(!yaml.contains("query_port"), "no client port: {yaml}");
    let _ = lab.kill();
    let _ = lab.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
