//! The AF_XDP fast path, end to end. Loopback has no XDP path, so the test
//! makes two network namespaces joined by a veth pair (198.18.0.1/2 and
//! 2001:2::1/2, benchmarking ranges, reachable only inside them; removed
//! when the test ends, passed or not): the lab and onedot run in one, dig
//! in the other. Needs root, as CI has; elsewhere it says so and passes
//! only when not under CI.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::filtering::unique_dir;
use crate::restart::Serve;
use crate::{in_netns, start_lab_in};

/// Two namespaces and the veth pair between them; dropped, they go.
struct Pair {
    client: String,
    resolver: String,
    /// The veth end in the resolver's namespace.
    veth: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).status().is_ok_and(|s| s.success())
}

impl Pair {
    fn new() -> Option<Pair> {
        let id = std::process::id();
        let p = Pair { client: format!("odt-c-{id}"), resolver: format!("odt-r-{id}"), veth: format!("otr{id}") };
        let veth_c = format!("otc{id}");
        let (c, r, vr) = (p.client.as_str(), p.resolver.as_str(), p.veth.as_str());
        let steps: [&[&str]; 13] = [
            &["netns", "add", c],
            &["netns", "add", r],
            &["link", "add", &veth_c, "type", "veth", "peer", "name", vr],
            &["link", "set", &veth_c, "netns", c],
            &["link", "set", vr, "netns", r],
            &["-n", c, "addr", "add", "198.18.0.1/24", "dev", &veth_c],
            &["-n", r, "addr", "add", "198.18.0.2/24", "dev", vr],
            &["-n", c, "-6", "addr", "add", "2001:2::1/64", "dev", &veth_c, "nodad"],
            &["-n", r, "-6", "addr", "add", "2001:2::2/64", "dev", vr, "nodad"],
            &["-n", c, "link", "set", "lo", "up"],
            &["-n", r, "link", "set", "lo", "up"],
            &["-n", c, "link", "set", &veth_c, "up"],
            &["-n", r, "link", "set", vr, "up"],
        ];
        for step in steps {
            if !ip(step) {
                return None;
            }
        }
        Some(p)
    }

    /// Whether an XDP program is attached to the resolver's veth.
    fn xdp_attached(&self) -> bool {
        let out = Command::new("ip").args(["-n", &self.resolver, "link", "show", &self.veth]).output();
        out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.client]);
        ip(&["netns", "del", &self.resolver]);
    }
}

/// dig in the client's namespace; its output.
fn dig(p: &Pair, args: &[&str]) -> String {
    let out = in_netns(Some(&p.client), "dig")
        .args(["+tries=1", "+time=3", "+nocookie"])
        .args(args)
        .output()
        .expect("dig runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The fast path's counter `result` from the resolver's /metrics.
fn counter(p: &Pair, web: u16, result: &str) -> u64 {
    let out = in_netns(Some(&p.resolver), "curl")
        .args(["-s", &format!("http://127.0.0.1:{web}/metrics")])
        .output()
        .expect("curl runs");
    let key = format!("onedot_xdp_queries_total{{result=\"{result}\"}} ");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&key).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {key} in /metrics"))
}

fn config(dir: &Path, lab_port: u16, web: u16, interface: &str) -> std::path::PathBuf {
    let path = dir.join(format!("onedot-{interface}.toml"));
    std::fs::write(
        &path,
        format!(
            "version = 1\n[web]\nlisten = \"127.0.0.1:{web}\"\n\
             [server]\nlisten = [\"198.18.0.2:53\", \"[2001:2::2]:53\"]\nworkers = 1\n\
             dot_listen = []\ndoh_listen = []\ndoq_listen = []\n\
             [server.xdp]\ninterface = \"{interface}\"\n\
             [resolver]\nroot_hints = [\"127.53.0.1\"]\nupstream_port = {lab_port}\ndo_not_query_localhost = false\n\
             answer_special_use_locally = false\n[dnssec]\nvalidate = false\n\
             [limits]\nrate_limit = false\nflood_per_second = 0\n"
        ),
    )
    .expect("config");
    path
}

#[test]
fn the_xdp_fast_path_answers_hits_in_place_and_hands_the_rest_on() {
    let Some(pair) = Pair::new() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs as root: the namespaces must be made");
        eprintln!("skipped: no network namespaces here (not root?)");
        return;
    };
    let dir = unique_dir("xdp");
    std::fs::create_dir_all(&dir).expect("dir");
    let (mut lab, lab_port) = start_lab_in(Some(&pair.resolver), None);
    let web = 8053;
    let mut serve = Serve::start_in(Some(&pair.resolver), &config(&dir, lab_port, web, &pair.veth), &[]);
    assert!(serve.log().contains("AF_XDP fast path on"), "{}", serve.log());
    assert!(pair.xdp_attached(), "no XDP program on the veth");

    // The first query of each is a miss (the pipeline answers it from the
    // listener's socket), the second a hit answered in its own frame.
    for _ in 0..2 {
        let a = dig(&pair, &["@198.18.0.2", "www.example.test", "A"]);
        assert!(a.contains("status: NOERROR") && a.contains("192.0.2.10"), "{a}");
        let aaaa = dig(&pair, &["@2001:2::2", "www.example.test", "AAAA"]);
        assert!(aaaa.contains("status: NOERROR") && aaaa.contains("2001:db8::10"), "{aaaa}");
    }
    let nx = dig(&pair, &["@198.18.0.2", "nope.example.test", "A"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let (answered, missed) = (counter(&pair, web, "answered"), counter(&pair, web, "missed"));
    assert!(answered >= 2, "hits answered in place: {answered}");
    assert!(missed >= 3, "misses handed on: {missed}");

    // TCP is not steered: the kernel's socket path answers it.
    let tcp = dig(&pair, &["+tcp", "@198.18.0.2", "www.example.test", "A"]);
    assert!(tcp.contains("status: NOERROR") && tcp.contains("192.0.2.10"), "{tcp}");
    assert_eq!(counter(&pair, web, "answered"), answered, "a TCP query went through XDP");

    // Garbage to the port (short, not DNS, a huge length, an empty
    // datagram) is dropped, and the resolver answers on.
    let junk = "import socket\n\
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                for p in [b'', b'\\x00', b'\\xff' * 11, b'\\x12\\x34\\x01\\x00\\x00\\x01' + b'\\x00' * 6 + b'\\x3f' * 300]:\n    \
                    s.sendto(p, ('198.18.0.2', 53))\n";
    let sent = in_netns(Some(&pair.client), "python3").args(["-c", junk]).status().expect("python3 runs");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&pair, web, "dropped") < 1 {
        assert!(Instant::now() < deadline, "hostile datagrams were not dropped");
        std::thread::sleep(Duration::from_millis(50));
    }
    let again = dig(&pair, &["@198.18.0.2", "www.example.test", "A"]);
    assert!(again.contains("192.0.2.10"), "{again}");
    assert_eq!(counter(&pair, web, "answered"), answered + 1);

    // Stopping detaches the program: the interface is as it was.
    assert!(serve.stop().success(), "{}", serve.log());
    assert!(!pair.xdp_attached(), "the XDP program outlived onedot");

    // An interface that does not exist: onedot says so and serves on
    // sockets.
    let mut plain = Serve::start_in(Some(&pair.resolver), &config(&dir, lab_port, web, "nosuch0"), &[]);
    assert!(plain.log().contains("AF_XDP fast path not set up"), "{}", plain.log());
    let a = dig(&pair, &["@198.18.0.2", "www.example.test", "A"]);
    assert!(a.contains("192.0.2.10"), "{a}");
    assert!(plain.stop().success());
    let _ = lab.kill();
    let _ = lab.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
