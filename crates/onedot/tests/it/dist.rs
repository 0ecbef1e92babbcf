//! The operator's files in `dist/`: the Prometheus alert rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`),
//! the Grafana dashboard is a dashboard Grafana can import, and every
//! onedot metric either of them names, with every label it selects on, is
//! in a real scrape: a keyless edge with the observatory and a filtering
//! profile on, and its key server. A renamed metric or label cannot leave
//! a panel blank or an alert silent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use proto::rtype;
use serde_json::Value;

use crate::filtering::{Fixture, ask};
use crate::keyless::{KeyServerSetup, http_get, logged_port, start_key_server, stop};
use crate::onedot;

const RULES: &str = "prometheus/onedot-alerts.yml";
const RULE_TESTS: &str = "prometheus/onedot-alerts.test.yml";
const DASHBOARD: &str = "grafana/onedot.json";

/// Metric name → the label names its selectors match on (or its samples
/// carry).
type Labels = BTreeMap<String, BTreeSet<String>>;

fn dist(file: &str) -> PathBuf {
    crate::repo().join("dist").join(file)
}

fn read(file: &str) -> String {
    let path = dist(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `promtool`, from Debian's prometheus package, when installed
/// (scripts/test.sh installs it; on CI its absence fails the test).
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "promtool is not installed (scripts/test.sh installs Debian's prometheus package)"
        );
        eprintln!("skipped: promtool is not installed");
    }
    found.then_some("promtool")
}

/// A child process stopped on drop, so a failed assertion leaves nothing
/// running.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

/// The label names of the matchers in `s`, which follows a selector's `{`
/// (or a sample's), and how many bytes of `s` they take up to and
/// including the closing `}`.
fn matchers(s: &str) -> (Vec<String>, usize) {
    let mut labels = Vec::new();
    let mut name = String::new();
    let (mut quoted, mut escaped, mut in_name) = (false, false, true);
    for (i, c) in s.char_indices() {
        if quoted {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '}' => return (labels, i + 1),
            ',' => in_name = true,
            '=' | '!' | '~' => {
                if in_name && !name.trim().is_empty() {
                    labels.push(name.trim().to_string());
                }
                name.clear();
                in_name = false;
            }
            c if in_name => name.push(c),
            _ => {}
        }
    }
    (labels, s.len())
}

/// Adds the `onedot_*` metrics named in `text` (PromQL, or a rules file)
/// to `out`, each with the labels its selectors match on; `instance` and
/// `job` are left out, as Prometheus adds them. A name inside a longer
/// one (a recording rule's `level:onedot_x:rate5m`) does not count.
fn selectors(text: &str, out: &mut Labels) {
    const PREFIX: &str = "onedot_";
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find(PREFIX) {
        let start = i + at;
        let mut end = start + PREFIX.len();
        while end < b.len() && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_') {
            end += 1;
        }
        i = end;
        let in_a_word =
            start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_' || b[start - 1] == b':');
        if in_a_word || end == start + PREFIX.len() || b.get(end) == Some(&b':') {
            continue;
        }
        let labels = out.entry(text[start..end].to_string()).or_default();
        if b.get(end) == Some(&b'{') {
            let (names, taken) = matchers(&text[end + 1..]);
            labels.extend(names.into_iter().filter(|l| l != "instance" && l != "job"));
            i = end + 1 + taken;
        }
    }
}

/// Adds the samples of a Prometheus text exposition (HTTP headers and
/// comments skipped) to `out`: each metric with the label names its
/// samples carry.
fn samples(scrape: &str, out: &mut Labels) {
    for line in scrape.lines().filter(|l| l.starts_with("onedot_")) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            labels.extend(matchers(&line[end + 1..]).0);
        }
    }
}

/// Every PromQL text of the dashboard: the panels' queries, in collapsed
/// rows too, and the variables' queries.
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (key, x) in map {
                match (key.as_str(), x) {
                    ("expr" | "definition" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(x, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| dashboard_queries(x, out)),
        _ => {}
    }
}

#[test]
fn promtool_accepts_the_alert_rules_and_their_unit_tests_pass() {
    let Some(promtool) = promtool() else { return };
    for (command, file) in [("check", RULES), ("test", RULE_TESTS)] {
        let out = Command::new(promtool)
            .args([command, "rules"])
            .arg(dist(file))
            .current_dir(crate::repo().join("dist/prometheus"))
            .output()
            .expect("promtool runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("SUCCESS"), "promtool {command} rules {file}:\n{text}");
    }
}

#[test]
fn the_dashboard_imports_with_a_data_source_input_and_rates_its_counters() {
    let d: Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS", "the data source is chosen at import");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion {}", d["schemaVersion"]);
    let variables: Vec<&str> =
        d["templating"]["list"].as_array().expect("variables").iter().filter_map(|v| v["name"].as_str()).collect();
    assert!(variables.contains(&"datasource") && variables.contains(&"instance"), "{variables:?}");

    // Every panel, in collapsed rows too, has an id of its own; every
    // query asks the chosen data source for the chosen nodes, and takes
    // the rate (or increase) of every counter it reads.
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    let mut panels: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = panels.pop() {
        let id = p["id"].as_u64().expect("a panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
        let title = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().into_iter().flatten() {
            queries += 1;
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().expect("a query");
            assert!(expr.contains("instance=~\"$instance\"") || expr.contains("instance=~\"$keyserver\""), "{title}");
            for (at, _) in expr.match_indices("onedot_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let counter = ["_total", "_bucket", "_count", "seconds_sum"].iter().any(|s| name.ends_with(s));
                let before = &expr[..at];
                assert!(
                    !counter || before.ends_with("rate(") || before.ends_with("increase("),
                    "{title}: {name} is a counter, to be read through rate() or increase(): {expr}"
                );
            }
        }
    }
    assert!(queries >= 40, "{queries} queries");
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_name_is_in_a_real_scrape() {
    // What the files name.
    let mut named = Labels::new();
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    for q in &queries {
        selectors(q, &mut named);
    }
    let from_dashboard = named.len();
    selectors(&read(RULES), &mut named);
    selectors(&read(RULE_TESTS), &mut named);
    assert!(from_dashboard >= 25, "only {from_dashboard} metrics found in the dashboard: {named:?}");

    // A keyless edge with the observatory and a filtering profile, and its
    // key server.
    let ks_setup = KeyServerSetup::new("dist");
    let (ks, ks_metrics) = start_key_server(&ks_setup.config);
    let ks = Running(ks);
    let config = format!(
        "[telemetry]\ndata_dir = {:?}\nsample_rate = 0.0\n[observatory]\nenabled = true\nk = 5\n\
         [[policy.source]]\nname = \"malware\"\npath = \"malware.txt\"\nformat = \"domains\"\n\
         category = \"malware\"\nede = \"blocked\"\n\
         [[policy.profile]]\nname = \"security\"\nsources = [\"malware\"]\nlisten = [\"127.0.0.1:0\"]\n",
        ks_setup.dir.join("data").display().to_string()
    );
    let f = Fixture::start_with("dist", &[("malware.txt", "malware.test\n")], &ks_setup.edge_server(), &config);

    // Answers, a cache hit, NXDOMAIN, a blocked answer (EDE 15).
    let udp = f.door("unfiltered");
    for name in ["www.example.test", "www.example.test", "mail.example.test", "nope.example.test"] {
        assert!(ask(udp, name, rtype::A, false).is_some(), "no answer for {name}");
    }
    let blocked = ask(f.door("security"), "malware.test", rtype::A, false).expect("an answer from the security door");
    assert_eq!(blocked.ede().into_iter().next().map(|e| e.0), Some(15), "blocked, with EDE 15");

    // A DoT handshake signed by the key server.
    let log = f.log.lock().expect("log").clone();
    let dot = logged_port(&log, "dot=");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = Command::new(onedot())
            .args(["query", "www.example.test", "--tls", &format!("@127.0.0.1:{dot}"), "--insecure"])
            .args(["--timeout-ms", "3000"])
            .output()
            .expect("onedot query runs");
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no DoT answer through the key server:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            f.log.lock().expect("log")
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // The scrapes: the edge's web listener and the key server's.
    let edge = f.get("/metrics");
    assert!(edge.starts_with("HTTP/1.1 200"), "{edge}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let keys = loop {
        let text = http_get(ks_metrics, "/metrics");
        if text.contains("onedot_keyserver_operations_total{") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(ks);
    drop(f);
    let _ = std::fs::remove_dir_all(&ks_setup.dir);

    let mut exported = Labels::new();
    samples(&edge, &mut exported);
    samples(&keys, &mut exported);
    let mut missing = Vec::new();
    for (name, labels) in &named {
        // A histogram's name stands for its _bucket, _sum and _count series.
        match exported.get(name).or_else(|| exported.get(&format!("{name}_bucket"))) {
            None => missing.push(format!("{name}: no sample")),
            Some(have) => missing.extend(labels.difference(have).map(|l| format!("{name}: no label {l}"))),
        }
    }
    assert!(
        missing.is_empty(),
        "dist/ names what onedot does not export:\n{}\n\nthe edge's scrape:\n{edge}\n\nthe key server's:\n{keys}",
        missing.join("\n")
    );
}
