//! Verifiable privacy: traffic from many client addresses with the query
//! log, the sample and the research export on; `onedot audit` and an
//! independent search of the data directory; purges on schedule and at
//! start-up; each broken commitment named by the audit; /metrics.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use proto::{Name, rtype};

use crate::filtering::{Fixture, unique_dir};
use crate::onedot;

const TELEMETRY: &str = r#"
[telemetry]
data_dir = "data"
query_log = true
sample_rate = 0.0005
research_export = true
research_k = 20
"#;

/// The client addresses of the test: 127.77.x.y, never the resolver's or
/// the lab's.
fn clients() -> Vec<String> {
    (0..200).map(|i| format!("127.77.{}.{}", i / 10, i % 10 + 11)).collect()
}

/// Sends `per_client` queries from each client address; returns how many
/// were answered.
fn traffic(server: SocketAddr, per_client: usize) -> usize {
    let names = ["www.example.test", "mail.example.test", "z001.test", "www.z002.test", "nope.example.test"];
    let mut answered = 0;
    for (i, c) in clients().iter().enumerate() {
        let sock = UdpSocket::bind(format!("{c}:0")).expect("bind a client address");
        sock.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        for j in 0..per_client {
            let name = Name::from_ascii(names[(i + j) % names.len()]).expect("name");
            let mut q = Vec::new();
            proto::build::build_query(&mut q, (i * 1000 + j) as u16, name.as_wire(), rtype::A, true, Some(1232), false);
            sock.send_to(&q, server).expect("send");
            let mut buf = [0u8; 2048];
            if sock.recv(&mut buf).is_ok() {
                answered += 1;
            }
        }
    }
    answered
}

fn audit(dir: &Path, config: &Path) -> (bool, String) {
    let out = Command::new(onedot())
        .args(["audit", "--data-dir"])
        .arg(dir)
        .arg("--config")
        .arg(config)
        .output()
        .expect("audit runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(files(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn client_addresses_stay_in_the_sample_and_the_audit_passes() {
    let mut f = Fixture::start("privacy", &[], TELEMETRY);
    let server = f.door("unfiltered");
    let answered = traffic(server, 100);
    assert!(answered >= 19_000, "answered {answered} of 20000");

    // Metrics (with curl, as an operator would): the counters, and no
    // client address.
    let out = Command::new("curl").args(["-s", &format!("http://{}/metrics", f.web)]).output().expect("curl runs");
    let metrics = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        metrics.contains("onedot_queries_total{door=\"udp\",profile=\"unfiltered\",qtype=\"A\",rcode=\"NOERROR\"}")
    );
    assert!(metrics.contains("rcode=\"NXDOMAIN\""));
    assert!(metrics.contains("onedot_cache_hits_total{door=\"udp\"}"));
    assert!(metrics.contains("onedot_upstream_duration_seconds_count"));
    assert!(metrics.contains("onedot_validation_total{outcome=\"insecure\"}"));
    assert!(
        metrics.contains("onedot_cache_entries{cache=\"rrset\"}")
            && metrics.contains("onedot_cache_bytes{cache=\"answer\"}")
    );
    assert!(!metrics.contains("127.77."), "a client address in /metrics");
    let privacy = f.get("/privacy.json");
    assert!(privacy.contains("\"sample_rate\": 0.0005") && privacy.contains("troubleshooting-sample"), "{privacy}");

    // A graceful stop flushes the writer and the research export.
    f.stop();
    let data = f.dir.join("data");
    let (ok, report) = audit(&data, &f.dir.join("onedot.toml"));
    assert!(ok, "audit failed:\n{report}");
    assert!(report.contains("PASS  no client address outside the troubleshooting sample"), "{report}");

    // Independently: no client address in any file but the sample.
    let mut sample_holds = 0;
    for file in files(&data) {
        let bytes = std::fs::read(&file).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        let is_sample = file.file_name().is_some_and(|n| n.to_string_lossy().starts_with("sample.sqlite"));
        for c in clients() {
            let found = text.contains(&c);
            if is_sample {
                sample_holds += found as usize;
            } else {
                assert!(!found, "{c} found in {}", file.display());
            }
        }
    }
    assert!(sample_holds > 0, "the 0.05 % sample of 20,000 queries kept nothing");
    // The query log has every query, with truncated networks only.
    let log = telemetry::store::open_query_log(&data.join("query-log.sqlite")).expect("query log");
    let rows: i64 = log.query_row("SELECT COUNT(*) FROM query_log", [], |r| r.get(0)).expect("count");
    assert!(rows >= answered as i64 - 10, "{rows} rows for {answered} answers");
    let nets: i64 = log
        .query_row("SELECT COUNT(DISTINCT client) FROM query_log WHERE client LIKE '127.77.%.0'", [], |r| r.get(0))
        .expect("nets");
    assert_eq!(nets, 20);
    // The research export: names asked by at least 20 networks, no addresses.
    let csv = files(&data.join("research")).into_iter().find(|p| p.extension().is_some_and(|e| e == "csv"));
    let csv = std::fs::read_to_string(csv.expect("a research CSV")).expect("read");
    assert!(csv.starts_with("name,count\n") && csv.contains("www.example.test.,4000"), "{csv}");
}

#[test]
fn purges_run_at_start_up_and_on_schedule() {
    let old = |hours: u64| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as u64;
        (now - hours * 3_600_000) as i64
    };
    let seed = |data: &Path, hours: u64, tag: &str| {
        let log = telemetry::store::open_query_log(&data.join("query-log.sqlite")).expect("log");
        log.execute(
            "INSERT INTO query_log (ts_ms, client, door, profile, qname, qtype, rcode) VALUES (?1, '127.88.1.0', 'udp', 'unfiltered', ?2, 1, 0)",
            rusqlite::params![old(hours), tag],
        )
        .expect("insert");
        let sample = telemetry::store::open_sample(&data.join("sample.sqlite")).expect("sample");
        sample
            .execute(
                "INSERT INTO sample (ts_ms, client, door, query, response) VALUES (?1, '127.88.1.9', 'udp', x'00', x'00')",
                rusqlite::params![old(hours)],
            )
            .expect("insert");
    };
    let count = |data: &Path, table: &str| -> i64 {
        let c =
            rusqlite::Connection::open(data.join(if table == "sample" { "sample.sqlite" } else { "query-log.sqlite" }))
                .expect("open");
        c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).expect("count")
    };
    // Records 30 hours old are there before the start...
    let telemetry = "[telemetry]\ndata_dir = \"data\"\nquery_log = true\nsample_rate = 0.0005\npurge_interval_s = 1\n";
    let f = Fixture::start("purge", &[], telemetry);
    let data = f.dir.join("data");
    seed(&data, 30, "old.test");
    seed(&data, 1, "recent.test");
    // ...and are gone within a purge interval (the schedule), the recent
    // ones kept.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (count(&data, "query_log") > 1 || count(&data, "sample") > 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!((count(&data, "query_log"), count(&data, "sample")), (1, 1), "the scheduled purge");
    drop(f);

    // At start-up: seed a stopped server's files, start it, and the purge
    // runs before anything else (a long interval rules out the schedule).
    let mut g = Fixture::start(
        "purge-start",
        &[],
        "[telemetry]\ndata_dir = \"data\"\nquery_log = true\npurge_interval_s = 3600\n",
    );
    g.stop();
    let data = g.dir.join("data");
    seed(&data, 26, "old.test");
    assert_eq!(count(&data, "query_log"), 1);
    let cfg = g.dir.join("onedot.toml");
    let mut again = Command::new(onedot())
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&data, "query_log") > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = again.kill();
    let _ = again.wait();
    assert_eq!(count(&data, "query_log"), 0, "the start-up purge");
}

#[test]
fn the_audit_names_each_broken_commitment() {
    let dir = unique_dir("audit");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("dir");
    let base = "version = 1\n[telemetry]\ndata_dir = \"data\"\nquery_log = true\n";
    let write = |name: &str, extra: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("{base}{extra}")).expect("config");
        p
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as i64;
    let log = telemetry::store::open_query_log(&data.join("query-log.sqlite")).expect("log");
    log.execute(
        "INSERT INTO query_log (ts_ms, client, door, profile, qname, qtype, rcode) VALUES (?1, '127.66.1.0', 'udp', 'unfiltered', 'a.test', 1, 0)",
        [now],
    )
    .expect("insert");
    let good = write("good.toml", "");
    let (ok, report) = audit(&data, &good);
    assert!(ok, "{report}");

    for (name, extra, check) in [
        ("ecs.toml", "ecs = true\n", "EDNS Client Subnet is never sent upstream"),
        ("rate.toml", "sample_rate = 0.01\n", "the troubleshooting sample is at most 0.05 % of queries"),
        ("retention.toml", "query_log_retention_h = 48\n", "the query log is kept at most 25 hours"),
        ("sample-retention.toml", "sample_retention_h = 72\n", "the troubleshooting sample is kept at most 25 hours"),
    ] {
        let (ok, report) = audit(&data, &write(name, extra));
        assert!(!ok, "{name}: the audit passed:\n{report}");
        assert!(report.contains(&format!("FAIL  {check}")), "{name}:\n{report}");
    }

    // Full addresses in the log.
    log.execute(
        "INSERT INTO query_log (ts_ms, client, door, profile, qname, qtype, rcode) VALUES (?1, '127.66.1.23', 'udp', 'unfiltered', 'a.test', 1, 0)",
        [now],
    )
    .expect("insert");
    let (ok, report) = audit(&data, &good);
    assert!(!ok);
    assert!(
        report.contains("FAIL  the query log holds only truncated client networks") && report.contains("127.66.1.23"),
        "{report}"
    );
    // Records past retention.
    log.execute("DELETE FROM query_log WHERE client = '127.66.1.23'", []).expect("delete");
    log.execute(
        "INSERT INTO query_log (ts_ms, client, door, profile, qname, qtype, rcode) VALUES (?1, NULL, 'udp', 'unfiltered', 'a.test', 1, 0)",
        [now - 30 * 3_600_000],
    )
    .expect("insert");
    let (ok, report) = audit(&data, &good);
    assert!(!ok);
    assert!(report.contains("FAIL  the query log holds nothing older than its retention"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The TXT answer of an ECS-echoing lab zone, asked from `client`.
fn whoami(server: SocketAddr, client: &str, name: &str) -> String {
    let sock = UdpSocket::bind(format!("{client}:0")).expect("bind a client address");
    sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut q = Vec::new();
    proto::build::build_query(
        &mut q,
        7,
        Name::from_ascii(name).expect("name").as_wire(),
        rtype::TXT,
        true,
        Some(1232),
        false,
    );
    sock.send_to(&q, server).expect("send");
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).expect("an answer");
    let m = proto::Message::parse(&buf[..n]).expect("parses");
    let txt = m.answer.iter().find(|r| r.rtype == rtype::TXT).expect("a TXT answer");
    String::from_utf8_lossy(&txt.rdata[1..]).into_owned()
}

/// EDNS Client Subnet: never sent by default; when an operator turns it
/// on, only the /24 goes, only to the listed zone's authorities, and what
/// they answer is not served to another network from the cache.
#[test]
fn ecs_is_off_by_default_and_truncated_and_allow_listed_when_on() {
    let off = Fixture::start("ecs-off", &[], "");
    assert_eq!(whoami(off.door("unfiltered"), "127.77.3.45", "whoami.ecs.test"), "no ecs");
    drop(off);

    let on = Fixture::start("ecs-on", &[], "[telemetry]\necs = true\necs_allow = [\"ecs.test.\"]\n");
    let door = on.door("unfiltered");
    assert_eq!(whoami(door, "127.77.3.45", "whoami.ecs.test"), "ecs 127.77.3.0/24");
    assert_eq!(whoami(door, "127.77.4.46", "whoami.ecs.test"), "ecs 127.77.4.0/24", "not another network's answer");
    assert_eq!(whoami(door, "127.77.3.99", "whoami.ecs.test"), "ecs 127.77.3.0/24");
    assert_eq!(whoami(door, "127.77.3.45", "whoami.noecs.test"), "no ecs", "only listed zones get ECS");
    let log = on.log.lock().expect("log").clone();
    assert!(log.contains("EDNS Client Subnet is on"), "{log}");
}

/// Oblivious DoH through onedot-as-relay to onedot-as-target: the answer
/// arrives; the relay's DNS pipeline never sees a question (its query log
/// and sample stay empty); the target's sees only the relay's address,
/// never the client's; the relay refuses targets not on its list.
#[test]
fn odoh_relay_and_target_each_see_only_their_half() {
    let certs = unique_dir("odoh-certs");
    std::fs::create_dir_all(&certs).expect("dir");
    let (tls, cert_path) = crate::filtering::doh_only_tls(&certs);
    let telemetry = "[telemetry]\ndata_dir = \"data\"\nquery_log = true\nsample_rate = 1.0\n";
    let mut target = Fixture::start_with("odoh-target", &[], &format!("{tls}odoh_target = true\n"), telemetry);
    let tport = target.doh.expect("target DoH").port();
    let relay_server = format!(
        "{tls}odoh_target = false\nodoh_relay_ca_file = {:?}\nodoh_relay_targets = [{{ host = \"localhost:{tport}\", address = \"127.0.0.1:{tport}\" }}]\n",
        cert_path.display().to_string()
    );
    let mut relay = Fixture::start_with("odoh-relay", &[], &relay_server, telemetry);
    let rport = relay.doh.expect("relay DoH").port();
    let query = |target_host: &str| {
        Command::new(onedot())
            .args(["query", "www.example.test", "--odoh", target_host, &format!("@127.0.0.1:{rport}")])
            .args(["--ca", &cert_path.display().to_string(), "--tls-name", "localhost", "--source", "127.0.0.88"])
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("query runs")
    };
    let out = query(&format!("localhost:{tport}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("192.0.2.10") && text.contains("(ODoH)"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same target under a name the relay does not list.
    let refused = query(&format!("127.0.0.1:{tport}"));
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("HTTP 403"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    target.stop();
    relay.stop();
    let rows = |dir: &Path, file: &str, table: &str| -> Vec<String> {
        let c = rusqlite::Connection::open(dir.join("data").join(file)).expect("open");
        let mut st = c.prepare(&format!("SELECT COALESCE(client, '') FROM {table}")).expect("prepare");
        st.query_map([], |r| r.get::<_, String>(0)).expect("rows").map(|r| r.expect("row")).collect()
    };
    // The relay's pipeline saw nothing.
    assert!(rows(&relay.dir, "query-log.sqlite", "query_log").is_empty(), "the relay logged a question");
    assert!(rows(&relay.dir, "sample.sqlite", "sample").is_empty(), "the relay sampled a question");
    // The target's saw the question, from the relay's address only.
    let seen = rows(&target.dir, "sample.sqlite", "sample");
    assert!(!seen.is_empty(), "the target answered nothing");
    assert!(seen.iter().all(|c| c == "127.0.0.1"), "{seen:?}");
    for file in files(&target.dir.join("data")) {
        let bytes = std::fs::read(&file).expect("read");
        assert!(!String::from_utf8_lossy(&bytes).contains("127.0.0.88"), "client address in {}", file.display());
    }
    let _ = std::fs::remove_dir_all(&certs);
}
