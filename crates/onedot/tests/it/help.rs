//! /help in headless Chromium: how the visitor came, and a resolution
//! trace on a validating node; the same page over DoH (encrypted); the
//! public purge, its rate limit and its refusal for a name under a legal
//! order.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use proto::rtype;

use crate::filtering::{ask, unique_dir};
use crate::restart::Serve;

fn post(web: SocketAddr, path: &str, form: &str) -> String {
    let mut s = TcpStream::connect(web).expect("web connects");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .expect("request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn get(web: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(web).expect("web connects");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn field(log: &str, key: &str) -> SocketAddr {
    log.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the log: {log}"))
}

#[test]
fn help_shows_the_connection_and_traces_a_name_in_headless_chromium() {
    let dir = unique_dir("help");
    std::fs::create_dir_all(&dir).expect("dir");
    let anchor = dir.join("lab-root.key");
    let (mut lab, port) = crate::start_lab(Some(&anchor));
    let (tls, _) = crate::filtering::doh_only_tls(&dir);
    std::fs::write(dir.join("order.txt"), "censored.test\n").expect("order");
    std::fs::write(
        dir.join("onedot.toml"),
        format!(
            "version = 1\n[web]\nlisten = \"127.0.0.1:0\"\nnode_name = \"lab-node\"\npublic_purge = true\n\
             [server]\nlisten = [\"127.0.0.1:0\"]\n{tls}\n[resolver]\nroot_hints = [\"127.53.0.1\"]\nupstream_port = {port}\n\
             do_not_query_localhost = false\nanswer_special_use_locally = false\n[dnssec]\nbuiltin_root_anchor = false\n\
             trust_anchor_files = [{:?}]\n[policy]\n[[policy.source]]\nname = \"court\"\npath = \"order.txt\"\n\
             format = \"domains\"\ncategory = \"court order\"\nall_profiles = true\n\
             legal_basis = {{ authority = \"Test Court\", reference = \"case 7\" }}\n",
            anchor.display().to_string()
        ),
    )
    .expect("config");
    let serve = Serve::start(&dir.join("onedot.toml"), &[]);
    let log = serve.log();
    let (web, udp, doh) = (field(&log, "web="), field(&log, "udp="), field(&log, "doh="));

    // The page over plain HTTP, and its JSON.
    let page = get(web, "/help");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<td id=node>lab-node</td>") && page.contains("no (plain HTTP)"), "{page}");
    assert!(page.contains("on: answers are validated") && page.contains("id=purge"), "{page}");
    let json = get(web, "/help.json");
    assert!(json.contains("\"encrypted\": false") && json.contains("\"dnssec_validation\": true"), "{json}");

    // Over DoH: encrypted, HTTP/2, the same node.
    let out = Command::new("curl")
        .args(["-sk", "--http2", &format!("https://127.0.0.1:{}/help", doh.port())])
        .output()
        .expect("curl runs");
    let over_doh = String::from_utf8_lossy(&out.stdout);
    assert!(over_doh.contains("yes (TLS)") && over_doh.contains("DNS over HTTPS, HTTP/2"), "{over_doh}");

    // A trace in headless Chromium: every server asked, from the root down,
    // and the DNSSEC status; the page a user would paste from.
    let Some(chromium) = crate::observatory::chromium() else { return };
    let artefacts = crate::repo().join("target/test-artefacts");
    std::fs::create_dir_all(&artefacts).expect("artefacts");
    let png = artefacts.join("help-trace.png");
    let _ = std::fs::remove_file(&png);
    let url = format!("http://{web}/help/trace?name=www.example.test&type=A");
    let headless = |extra: &[&str]| crate::observatory::headless(chromium, &dir.join("chromium"), extra, &url);
    let out = headless(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(dom.contains("<pre id=\"result\">"), "no trace:\n{dom}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(dom.contains("trace of www.example.test. A from node lab-node"), "{dom}");
    assert!(dom.contains("127.53.0.1:"), "the root server asked first:\n{dom}");
    assert!(dom.contains("www.example.test. A") && dom.contains("NOERROR"), "{dom}");
    assert!(dom.contains("DNSSEC: secure"), "{dom}");
    headless(&[&format!("--screenshot={}", png.display())]);
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot {} is {size} bytes", png.display());
    eprintln!("screenshot: {}", png.display());
    let trace = get(web, "/help/trace?name=www.example.test&format=json");
    let body = &trace[trace.find("\r\n\r\n").expect("body") + 4..];
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    let steps = v["servers_asked"].as_array().expect("steps");
    assert!(steps.len() >= 2 && steps.iter().all(|s| s["ms"].is_u64() && s["server"].is_string()), "{v}");
    let bad = get(web, "/help/trace?name=a..b");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let meta = get(web, "/help/trace?name=example.test&type=AXFR");
    assert!(meta.starts_with("HTTP/1.1 400"), "{meta}");
    let ordered = get(web, "/help/trace?name=www.censored.test&format=json");
    assert!(ordered.starts_with("HTTP/1.1 403") && ordered.contains("legal order"), "{ordered}");

    // Purge: the cached name goes; a name under a legal order never does;
    // the third purge from one network within a minute is refused.
    assert!(ask(udp, "www.example.test", rtype::A, false).is_some());
    let purged = post(web, "/help/purge", "name=www.example.test");
    assert!(purged.starts_with("HTTP/1.1 200") && purged.contains("www.example.test.: 1 answers"), "{purged}");
    let refused = post(web, "/help/purge", "name=censored.test");
    assert!(refused.starts_with("HTTP/1.1 403") && refused.contains("legal order"), "{refused}");
    let second = post(web, "/help/purge", "name=mail.example.test");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    let third = post(web, "/help/purge", "name=www.example.test");
    assert!(third.starts_with("HTTP/1.1 429"), "{third}");
    // Traces are limited per network too (six a minute; three were run).
    let mut codes = Vec::new();
    for _ in 0..5 {
        let r = get(web, "/help/trace?name=www.example.test&format=json");
        codes.push(r[9..12].to_string());
    }
    assert_eq!(codes.last().map(String::as_str), Some("429"), "{codes:?}");
    drop(serve);
    let _ = lab.kill();
    let _ = lab.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
