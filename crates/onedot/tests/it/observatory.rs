//! The observatory end to end: queries over UDP and DoH from many
//! 127.0.0.0/8 addresses, mapped by a MaxMind-format database the test
//! writes, appear in the minute counts per country, network and door; no
//! address reaches the file; the published API leaves out small groups;
//! a broken database is a clear error and the node serves on.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::filtering::{Fixture, unique_dir};
use crate::onedot;

/// 127.(i+1).a.0/24 is country i of this list, AS 64512 + 100 (i+1) + a.
const COUNTRIES: [&str; 3] = ["DE", "FR", "BR"];

fn ask_from(source: &str, server: SocketAddr, name: &str) -> bool {
    let Ok(sock) = std::net::UdpSocket::bind((source, 0)) else { return false };
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut q = Vec::new();
    let qname = proto::Name::from_ascii(name).expect("name");
    proto::build::build_query(&mut q, 0x0b5e, qname.as_wire(), 1, true, Some(1232), false);
    let mut buf = [0u8; 1500];
    sock.send_to(&q, server).is_ok() && sock.recv(&mut buf).is_ok()
}

fn config(geo: &Path, data: &Path) -> String {
    format!(
        "[telemetry]\ndata_dir = {:?}\nsample_rate = 0.0\n[observatory]\nenabled = true\ncountry_db = {:?}\nasn_db = {:?}\nk = 5\n",
        data.display().to_string(),
        geo.display().to_string(),
        geo.display().to_string()
    )
}

fn sums(data: &Path, sql: &str) -> Vec<(String, i64)> {
    let c = rusqlite::Connection::open(data.join("observatory.sqlite")).expect("open");
    let mut st = c.prepare(sql).expect("prepare");
    st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn queries_from_many_countries_and_networks_are_counted_without_their_addresses() {
    let side = unique_dir("observatory");
    std::fs::create_dir_all(&side).expect("dir");
    let geo = side.join("geo.mmdb");
    std::fs::write(&geo, observatory::mmdb::lab_database(&COUNTRIES, 4)).expect("geo");
    let data = side.join("data");
    let (server, ca) = crate::filtering::doh_only_tls(&side);
    let mut f = Fixture::start_with("observatory", &[], &server, &config(&geo, &data));
    let udp = f.door("unfiltered");
    let doh = f.doh.expect("DoH door");

    let mut clients = Vec::new();
    let mut answered = 0;
    // DE: 4 networks × 5 addresses × 5 queries; FR: 2 networks × 5 × 3.
    for (c, networks, per) in [(1u8, 4u8, 5usize), (2, 2, 3)] {
        for a in 0..networks {
            for h in 10..15 {
                let source = format!("127.{c}.{a}.{h}");
                for i in 0..per {
                    answered += usize::from(ask_from(
                        &source,
                        udp,
                        if i % 2 == 0 { "www.example.test" } else { "nope.example.test" },
                    ));
                }
                clients.push(source);
            }
        }
    }
    // No network in the database: unknown.
    for h in 10..13 {
        let source = format!("127.9.0.{h}");
        answered += usize::from(ask_from(&source, udp, "www.example.test"));
        clients.push(source);
    }
    assert_eq!(answered, 100 + 30 + 3);
    // BR over DoH (HTTP/2), from six addresses of one network.
    for h in 20..26 {
        let source = format!("127.3.1.{h}");
        let out = Command::new(onedot())
            .args(["query", "www.example.test", "--https", &format!("@127.0.0.1:{}", doh.port())])
            .args(["--ca", &ca.display().to_string(), "--tls-name", "localhost", "--source", &source])
            .output()
            .expect("query runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        clients.push(source);
    }
    assert!(f.get("/metrics").contains("onedot_observatory_late_total 0"));
    // A graceful stop writes the minute so far.
    f.stop();
    drop(f);

    let by_country = sums(&data, "SELECT country, SUM(count) FROM minutes GROUP BY country ORDER BY country");
    assert_eq!(by_country, vec![("--".into(), 3), ("BR".into(), 6), ("DE".into(), 100), ("FR".into(), 30)]);
    let de_networks =
        sums(&data, "SELECT CAST(asn AS TEXT), SUM(count) FROM minutes WHERE country = 'DE' GROUP BY asn ORDER BY asn");
    assert_eq!(de_networks, (0..4).map(|a| ((64_612 + a).to_string(), 25)).collect::<Vec<_>>());
    let doors = sums(&data, "SELECT country || '/' || door, SUM(count) FROM minutes GROUP BY 1 ORDER BY 1");
    assert_eq!(doors, vec![("--/udp".into(), 3), ("BR/doh".into(), 6), ("DE/udp".into(), 100), ("FR/udp".into(), 30)]);
    let nx = sums(&data, "SELECT country, SUM(count) FROM minutes WHERE rcode = 3 GROUP BY country ORDER BY country");
    assert_eq!(nx, vec![("DE".into(), 40), ("FR".into(), 10)], "NXDOMAIN for every second name");
    let hours = sums(&data, "SELECT 'all', SUM(count) FROM hours");
    assert_eq!(hours, vec![("all".into(), 139)], "the hourly roll-up holds every query");

    // No client address in any file of the data directory.
    for file in std::fs::read_dir(&data).expect("data").flatten() {
        let text = String::from_utf8_lossy(&std::fs::read(file.path()).expect("read")).into_owned();
        for c in &clients {
            assert!(!text.contains(c.as_str()), "{c} in {}", file.path().display());
        }
        assert!(!text.contains("127."), "an address-like string in {}", file.path().display());
    }

    // A restart on the same data: the API publishes groups of at least
    // k = 5 queries (the unknown country's 3 stay out), as JSON and CSV.
    let f = Fixture::start_with("observatory-again", &[], &server, &config(&geo, &data));
    let json = f.get("/observatory/api/minutes?by=country");
    assert!(json.contains("{\"count\":100,\"country\":\"DE\""), "{json}");
    assert!(json.contains("{\"count\":6,\"country\":\"BR\"") && !json.contains("\"--\""), "{json}");
    let csv = f.get("/observatory/api/hours?by=country,door&format=csv");
    assert!(csv.contains("t,country,door,count\r\n") || csv.contains("t,country,door,count\n"), "{csv}");
    assert!(csv.contains(",FR,udp,30"), "{csv}");
    let networks = f.get("/observatory/api/minutes?country=de&by=asn");
    assert_eq!(networks.matches("\"asn\":").count(), 4, "{networks}");
    assert!(f.get("/observatory/api/minutes?by=address").contains("400 Bad Request"));
    // The detector has no week of history here: no events, and it says so
    // with an empty list, not an error.
    let events = f.get("/observatory/api/events");
    assert!(events.contains("200 OK") && events.contains("\"events\":[]"), "{events}");
    drop(f);

    // The audit: aggregates only, within retention.
    let audit_config = side.join("audit.toml");
    std::fs::write(&audit_config, format!("version = 1\n{}", config(&geo, &data))).expect("config");
    let out = Command::new(onedot())
        .args(["audit", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&audit_config)
        .output()
        .expect("audit");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("PASS  observatory holds only aggregates"), "{report}");
    let _ = std::fs::remove_dir_all(&side);
}

#[test]
fn a_broken_database_is_named_and_the_node_serves_on() {
    let side = unique_dir("observatory-broken");
    std::fs::create_dir_all(&side).expect("dir");
    let geo = side.join("geo.mmdb");
    std::fs::write(&geo, b"this is not a MaxMind database").expect("geo");
    let data = side.join("data");
    let mut f = Fixture::start("observatory-broken", &[], &config(&geo, &data));
    assert!(ask_from("127.1.0.1", f.door("unfiltered"), "www.example.test"));
    assert!(f.log.lock().expect("log").contains(&geo.display().to_string()), "the error names the file");
    f.stop();
    drop(f);
    let all = sums(&data, "SELECT country, SUM(count) FROM minutes GROUP BY country");
    assert_eq!(all, vec![("--".into(), 1)], "counted as unknown");
    let _ = std::fs::remove_dir_all(&side);
}

/// Headless Chromium, when installed (scripts/test.sh installs it; on CI
/// its absence fails the test).
pub(crate) fn chromium() -> Option<&'static str> {
    let found = Command::new("chromium").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").is_err(), "chromium is not installed (scripts/test.sh installs it)");
        eprintln!("skipped: chromium is not installed");
    }
    found.then_some("chromium")
}

/// Runs headless Chromium on `url` with `extra` (`--dump-dom`,
/// `--screenshot=FILE`), its profile in `profile`.
pub(crate) fn headless(chromium: &str, profile: &std::path::Path, extra: &[&str], url: &str) -> std::process::Output {
    Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,900"])
        .args(["--disable-background-networking", "--disable-component-update", "--no-first-run"])
        .arg("--virtual-time-budget=10000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs")
}

#[test]
fn the_dashboard_draws_a_country_with_an_event_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let assets = crate::repo().join("target/web-assets");
    let fetched = Command::new("bash").arg(crate::repo().join("scripts/assets.sh")).arg(&assets).status();
    assert!(fetched.is_ok_and(|s| s.success()), "scripts/assets.sh failed");

    // Four weeks of simulated traffic ending now, Myanmar shut down from
    // eight hours ago to three hours ago, through the real aggregation and
    // store.
    let side = unique_dir("observatory-dashboard");
    let data = side.join("data");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() / 60 * 60;
    let start = now - 28 * 86_400;
    let shutdown = observatory::simulate::Truth {
        kind: observatory::detect::Kind::Shutdown,
        country: Some("MM".into()),
        asn: None,
        tld: None,
        start: now - 8 * 3600,
        end: now - 3 * 3600,
    };
    {
        let doors = ["udp", "tcp", "dot", "doh", "doq"].map(String::from).to_vec();
        let mut store = observatory::store::Store::open(&data, doors, 40 * 86_400, 400 * 86_400).expect("store");
        let agg = observatory::Aggregator::new(256, start);
        observatory::simulate::run(&agg, &mut store, start, 28, &[shutdown], 3).expect("simulate");
    }
    let config = format!(
        "[telemetry]\ndata_dir = {:?}\nsample_rate = 0.0\n[observatory]\nenabled = true\nk = 5\nassets_dir = {:?}\n",
        data.display().to_string(),
        assets.display().to_string()
    );
    let f = Fixture::start("observatory-dashboard", &[], &config);
    let front = f.get("/observatory");
    assert!(front.contains("<b>shutdown</b> <a href=\"/observatory/country/MM\">MM</a>"), "{front}");
    let url = format!("http://{}/observatory/country/MM", f.web);
    let artefacts = crate::repo().join("target/test-artefacts");
    std::fs::create_dir_all(&artefacts).expect("artefacts");
    let png = artefacts.join("observatory-MM.png");
    let _ = std::fs::remove_file(&png);
    let headless = |extra: &[&str]| headless(chromium, &side.join("chromium"), extra, &url);
    let out = headless(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(dom.contains("<canvas"), "uPlot drew no chart:\n{dom}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(dom.contains("class=\"shutdown\""), "the event is not listed:\n{dom}");
    headless(&[&format!("--screenshot={}", png.display())]);
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "screenshot {} is {size} bytes", png.display());
    eprintln!("screenshot: {}", png.display());
    // Without JavaScript the events list is there in the HTML itself.
    let page = f.get("/observatory/country/MM");
    assert!(page.contains("<ul id=\"events\"><li class=\"shutdown\">"), "{page}");
    // The network's page, and the events as CSV.
    let network = f.get("/observatory/asn/64710");
    assert!(network.contains("<h1>AS64710 (MM)</h1>") && network.contains("class=\"shutdown\""), "{network}");
    let csv = f.get("/observatory/api/events?format=csv");
    assert!(
        csv.contains("kind,country,asn,tld,start,end,depth,confidence,detail") && csv.contains("\nshutdown,MM,,,"),
        "{csv}"
    );
    drop(f);
    let _ = std::fs::remove_dir_all(&side);
}

/// A ClickHouse server of the tests' own on loopback (Debian's
/// `clickhouse-server`, which scripts/test.sh installs), stopped on drop.
struct ClickHouseServer {
    child: std::process::Child,
    http: u16,
    dir: std::path::PathBuf,
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn clickhouse_server() -> Option<ClickHouseServer> {
    if Command::new("clickhouse-server").arg("--help").output().is_err() {
        assert!(std::env::var("CI").is_err(), "clickhouse-server is not installed (scripts/test.sh installs it)");
        eprintln!("skipped: clickhouse-server is not installed");
        return None;
    }
    let dir = unique_dir("clickhouse");
    std::fs::create_dir_all(dir.join("data")).expect("dir");
    let (http, tcp) = (free_port(), free_port());
    let d = dir.display();
    std::fs::write(
        dir.join("config.xml"),
        format!(
            "<yandex><logger><level>warning</level><console>1</console></logger>\
             <http_port>{http}</http_port><tcp_port>{tcp}</tcp_port><listen_host>127.0.0.1</listen_host>\
             <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path><user_files_path>{d}/user_files/</user_files_path>\
             <format_schema_path>{d}/format_schemas/</format_schema_path>\
             <users_config>{d}/users.xml</users_config><default_profile>default</default_profile>\
             <default_database>default</default_database><mark_cache_size>67108864</mark_cache_size></yandex>"
        ),
    )
    .expect("config");
    std::fs::write(
        dir.join("users.xml"),
        "<yandex><profiles><default></default></profiles><quotas><default></default></quotas>\
         <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>\
         <profile>default</profile><quota>default</quota></default></users></yandex>",
    )
    .expect("users");
    let log = std::fs::File::create(dir.join("server.log")).expect("log");
    let child = Command::new("clickhouse-server")
        .arg(format!("--config-file={}", dir.join("config.xml").display()))
        .current_dir(&dir)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("clickhouse-server starts");
    let server = ClickHouseServer { child, http, dir };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Ok(out) = Command::new("curl").args(["-s", &format!("http://127.0.0.1:{http}/ping")]).output()
            && String::from_utf8_lossy(&out.stdout).starts_with("Ok.")
        {
            return Some(server);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
    panic!("clickhouse-server did not answer on {http}:\n{log}");
}

#[test]
fn two_nodes_write_to_one_clickhouse_and_the_fleet_view_shows_the_sum() {
    let Some(ch) = clickhouse_server() else { return };
    let side = unique_dir("observatory-fleet");
    std::fs::create_dir_all(&side).expect("dir");
    let geo = side.join("geo.mmdb");
    std::fs::write(&geo, observatory::mmdb::lab_database(&COUNTRIES, 4)).expect("geo");
    let node = |name: &str| {
        format!(
            "{}[observatory.clickhouse]\nurl = \"http://127.0.0.1:{}\"\nnode = \"{name}\"\n",
            config(&geo, &side.join(name)).replace("k = 5", "k = 2"),
            ch.http
        )
    };
    // Node ams1: 30 queries from Germany; node fra1: 20 from Germany and
    // 10 from France. Each writes its minutes when it stops.
    for (name, de, fr) in [("ams1", 30, 0), ("fra1", 20, 10)] {
        let mut f = Fixture::start(name, &[], &node(name));
        let udp = f.door("unfiltered");
        for i in 0..de {
            assert!(ask_from(&format!("127.1.{}.{}", i % 4, 10 + i / 4), udp, "www.example.test"));
        }
        for i in 0..fr {
            assert!(ask_from(&format!("127.2.0.{}", 10 + i), udp, "www.example.test"));
        }
        f.stop();
        let log = f.log.lock().expect("log").clone();
        assert!(!log.contains("ClickHouse insert failed") && !log.contains("ClickHouse purge failed"), "{log}");
    }
    // A third node reads the fleet's sum.
    let f = Fixture::start("viewer", &[], &node("viewer"));
    let front = f.get("/observatory");
    assert!(front.contains("<tr><td>DE</td><td>50</td><td>2</td></tr>"), "{front}");
    assert!(front.contains("<tr><td>FR</td><td>10</td><td>1</td></tr>"), "{front}");
    let api = f.get("/observatory/api/fleet");
    let body = api.split("\r\n\r\n").nth(1).unwrap_or("");
    let json: serde_json::Value = serde_json::from_str(body).expect("fleet JSON");
    let de: u64 = json["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter(|p| p["country"] == "DE")
        .map(|p| p["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(de, 50, "{api}");
    drop(f);
    // No address in ClickHouse either.
    let rows = Command::new("curl")
        .args(["-s", "--data-binary", "SELECT * FROM onedot.minutes FORMAT TabSeparated"])
        .arg(format!("http://127.0.0.1:{}/", ch.http))
        .output()
        .expect("curl");
    let rows = String::from_utf8_lossy(&rows.stdout);
    assert!(rows.contains("ams1") && rows.contains("fra1") && !rows.contains("127."), "{rows}");
    // A node's purge removes its own rows past retention, and only its own
    // (ClickHouse applies the delete in the background).
    let ams1 = observatory::clickhouse::ClickHouse::new(
        &format!("http://127.0.0.1:{}", ch.http),
        "onedot",
        "ams1",
        None,
        None,
    )
    .expect("client");
    ams1.purge(u64::from(u32::MAX)).expect("purge");
    let nodes = || {
        ams1.post(None, b"SELECT node, sum(count) FROM onedot.minutes GROUP BY node ORDER BY node FORMAT TabSeparated")
            .expect("query")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while nodes().contains("ams1") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(nodes(), "fra1\t30\n");
    let _ = std::fs::remove_dir_all(&side);
}
