//! The configuration file: one typed tree, unknown keys rejected, every key
//! documented in `examples/onedot.toml`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The config format version this binary reads.
pub const CONFIG_VERSION: u32 = 1;
/// Default listeners (unprivileged; production configs use port 53).
pub const DEFAULT_LISTEN: &[&str] = &["127.0.0.1:5353", "[::1]:5353"];
/// Default DoT listener (production configs use port 853).
pub const DEFAULT_DOT_LISTEN: &[&str] = &["127.0.0.1:8853"];
/// Default DoQ listener, UDP (production configs use port 853).
pub const DEFAULT_DOQ_LISTEN: &[&str] = &["127.0.0.1:8853"];
/// Default DoH listener (production configs use port 443).
pub const DEFAULT_DOH_LISTEN: &[&str] = &["127.0.0.1:8443"];

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Format version; must be 1.
    pub version: u32,
    /// Listeners and admission.
    pub server: ServerConfig,
    /// Recursion.
    pub resolver: ResolverConfig,
    /// Caches.
    pub cache: CacheConfig,
    /// Local data.
    pub local: LocalConfig,
    /// DNSSEC validation.
    pub dnssec: DnssecConfig,
    /// Forward zones.
    #[serde(rename = "forward_zone")]
    pub forward_zones: Vec<ZoneServers>,
    /// Stub zones.
    #[serde(rename = "stub_zone")]
    pub stub_zones: Vec<ZoneServers>,
    /// Filtering profiles and their sources.
    pub policy: PolicyConfig,
    /// The web listener (health, transparency log).
    pub web: WebConfig,
    /// What is kept about queries: logs, sample, exports, metrics.
    pub telemetry: TelemetryConfig,
    /// Abuse and overload defence: rate limits, cookies, connection caps,
    /// resolution slots, upstream limits.
    pub limits: LimitsConfig,
    /// The disruption observatory: per-minute counts by country and
    /// network.
    pub observatory: ObservatoryConfig,
    /// The local control socket (`onedot ctl`).
    pub control: ControlConfig,
    /// The query stream in dnstap format, to a collector.
    pub dnstap: DnstapConfig,
    /// The file it was read from (for `onedot ctl reload`).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[dnstap]`: the query stream as Unbound, Knot and BIND emit it
/// (protobuf dnstap messages in Frame Streams), to a collector listening
/// on a Unix socket or TCP. Client addresses are truncated or dropped as
/// `telemetry.query_log_client` says; never full.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnstapConfig {
    /// The collector's Unix socket (e.g. fstrm_capture's `-u`).
    pub socket: Option<PathBuf>,
    /// Or its TCP address.
    pub tcp: Option<SocketAddr>,
    /// The identity in every message (default: the host name).
    pub identity: Option<String>,
    /// CLIENT_QUERY messages.
    pub client_query: bool,
    /// CLIENT_RESPONSE messages.
    pub client_response: bool,
    /// RESOLVER_QUERY messages (to authorities).
    pub resolver_query: bool,
    /// RESOLVER_RESPONSE messages.
    pub resolver_response: bool,
}

impl Default for DnstapConfig {
    fn default() -> Self {
        DnstapConfig {
            socket: None,
            tcp: None,
            identity: None,
            client_query: true,
            client_response: true,
            resolver_query: false,
            resolver_response: false,
        }
    }
}

impl DnstapConfig {
    /// The collector, if dnstap is on.
    pub fn target(&self) -> Option<telemetry::dnstap::Target> {
        match (&self.socket, self.tcp) {
            (Some(p), _) => Some(telemetry::dnstap::Target::Unix(p.clone())),
            (None, Some(a)) => Some(telemetry::dnstap::Target::Tcp(a)),
            (None, None) => None,
        }
    }

    /// Which messages are sent.
    pub fn selection(&self) -> telemetry::dnstap::Selection {
        telemetry::dnstap::Selection {
            client_query: self.client_query,
            client_response: self.client_response,
            resolver_query: self.resolver_query,
            resolver_response: self.resolver_response,
        }
    }
}

/// `[control]`: the local control socket of `onedot ctl`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// A Unix socket path (mode 0600); unset: no control socket.
    pub socket: Option<PathBuf>,
    /// A TCP address on loopback for the same protocol (for hosts where a
    /// Unix socket cannot be reached, e.g. from another container of the
    /// pod); every request must carry the key in `key_file`.
    pub tcp: Option<SocketAddr>,
    /// The shared key for `tcp` (at least 32 characters; readable by the
    /// owner only, as `unbound-control`'s keys are). `onedot ctl` reads the
    /// same file.
    pub key_file: Option<PathBuf>,
}

impl ControlConfig {
    /// The key for the TCP control port, checked: an error names the file.
    pub fn key(&self) -> anyhow::Result<Vec<u8>> {
        use std::os::unix::fs::MetadataExt;
        let path = self.key_file.as_ref().context("control.tcp needs control.key_file")?;
        let meta = std::fs::metadata(path).with_context(|| format!("control.key_file {}", path.display()))?;
        if meta.mode() & 0o077 != 0 {
            bail!("control.key_file {}: readable by others (chmod 600 it)", path.display());
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("control.key_file {}", path.display()))?;
        let key = text.trim();
        if key.len() < 32 {
            bail!("control.key_file {}: the key is shorter than 32 characters", path.display());
        }
        Ok(key.as_bytes().to_vec())
    }
}

/// `[observatory]`: client addresses turned into per-minute counts by
/// country and autonomous system before they are dropped.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservatoryConfig {
    /// Count (off by default; needs `telemetry.data_dir`).
    pub enabled: bool,
    /// A MaxMind-format database with `country.iso_code` (GeoLite2-Country)
    /// or `country_code` (ip-location-db).
    pub country_db: Option<PathBuf>,
    /// A MaxMind-format database with `autonomous_system_number`
    /// (GeoLite2-ASN, ip-location-db's ASN builds). May be the same file.
    pub asn_db: Option<PathBuf>,
    /// Queries a published group needs (country, network, minute...).
    pub k: u64,
    /// Days minute rows are kept.
    pub retention_days: u64,
    /// Days hourly roll-ups are kept.
    pub rollup_retention_days: u64,
    /// Cells in each minute's table (distinct country, network, door,
    /// rcode, EDE class a minute); beyond it queries count as overflow.
    pub cells: usize,
    /// What counts as an event (`[observatory.detect]`).
    pub detect: observatory::detect::Thresholds,
    /// Where the dashboard's chart library is (`uPlot.iife.min.js`,
    /// `uPlot.min.css`, from the npm package `uplot`: `scripts/assets.sh`
    /// fetches them); unset, the pages show tables and lists only.
    pub assets_dir: Option<PathBuf>,
    /// The fleet's ClickHouse (`[observatory.clickhouse]`): every node adds
    /// its minutes there, and the dashboard shows the fleet's sum.
    pub clickhouse: Option<ClickHouseConfig>,
}

/// `[observatory.clickhouse]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// `http://host:port` of ClickHouse's HTTP interface.
    pub url: String,
    /// The database (made if missing), table `minutes` in it.
    #[serde(default = "default_clickhouse_database")]
    pub database: String,
    /// This node's name in the fleet's rows.
    pub node: String,
    /// ClickHouse user, if not `default`.
    #[serde(default)]
    pub user: Option<String>,
    /// Its password.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_clickhouse_database() -> String {
    "onedot".into()
}

impl ClickHouseConfig {
    /// The client for this table.
    pub fn client(&self) -> anyhow::Result<observatory::clickhouse::ClickHouse> {
        observatory::clickhouse::ClickHouse::new(
            &self.url,
            &self.database,
            &self.node,
            self.user.clone(),
            self.password.clone(),
        )
        .map_err(|e| anyhow::anyhow!("observatory.clickhouse: {e}"))
    }
}

impl Default for ObservatoryConfig {
    fn default() -> Self {
        ObservatoryConfig {
            enabled: false,
            country_db: None,
            asn_db: None,
            k: 20,
            retention_days: 7,
            rollup_retention_days: 400,
            cells: 1 << 16,
            detect: observatory::detect::Thresholds::default(),
            assets_dir: None,
            clickhouse: None,
        }
    }
}

/// `[limits]`: what keeps onedot serving its real users under attack.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Response rate limiting per client network on UDP.
    pub rate_limit: bool,
    /// Responses per second per client network.
    pub responses_per_second: u32,
    /// Error responses (NXDOMAIN, SERVFAIL, REFUSED, FORMERR, NOTIMP) per
    /// second per client network, on top of the above.
    pub errors_per_second: u32,
    /// Cache misses (queries that need a resolution) per second per client
    /// network, on top of the above: random-name floods are all misses.
    pub misses_per_second: u32,
    /// Seconds of traffic a network may save up and spend at once.
    pub burst_seconds: u32,
    /// Over the limit, every `slip`-th response is a minimal truncated one
    /// (the client retries over TCP) and the rest are dropped; 0 drops all.
    pub slip: u32,
    /// Client networks tracked (a fixed table; a flood of new networks
    /// replaces idle ones, it never grows).
    pub table_size: usize,
    /// Prefix length of an IPv4 client network.
    pub ipv4_prefix: u8,
    /// Prefix length of an IPv6 client network.
    pub ipv6_prefix: u8,
    /// Networks never rate limited (e.g. `["192.0.2.0/24"]`).
    pub exempt: Vec<String>,
    /// Queries from one network within one second (counting those the
    /// kernel's full queues dropped) that make it a flood, put in the
    /// kernel's drop filter; 0 never does.
    pub flood_per_second: u32,
    /// Seconds a flooding network stays in the kernel's drop filter (its
    /// datagrams dropped before they reach onedot); 0 turns it off.
    pub kernel_filter_seconds: u32,
    /// Most networks in the kernel's drop filter at once.
    pub kernel_filter_networks: usize,
    /// DNS Cookies (RFC 7873, RFC 9018 server cookies) on Do53.
    pub cookies: bool,
    /// Answer UDP queries without a valid server cookie with BADCOOKIE
    /// (or TC when they have no cookie at all).
    pub require_cookies: bool,
    /// The server cookie secret, 32 hex digits, shared by a fleet; unset:
    /// random, rotated every `cookie_rotation_s`.
    pub cookie_secret: Option<String>,
    /// The previous shared secret, still accepted during a rollover.
    pub cookie_secret_previous: Option<String>,
    /// Seconds between rotations of the random secret.
    pub cookie_rotation_s: u64,
    /// Most cache misses being resolved at once, over all doors.
    pub max_resolutions: usize,
    /// Most cache misses being resolved at once for one client network.
    pub max_resolutions_per_prefix: usize,
    /// Most open TCP, DoT, DoH and DoQ connections, per listener.
    pub max_connections: usize,
    /// Most open connections from one client network, per listener.
    pub connections_per_prefix: usize,
    /// Queries in flight on one stream connection; reading pauses beyond.
    pub max_in_flight_per_connection: usize,
    /// Close a connection with nothing in flight after this long.
    pub idle_timeout_ms: u64,
    /// Time allowed to read one message once its length has arrived.
    pub read_timeout_ms: u64,
    /// Time allowed for a TLS or QUIC handshake (and a PROXY header).
    pub handshake_timeout_ms: u64,
    /// Upstream queries per second to the servers of one zone below a
    /// TLD; more are not sent (the client gets stale data or SERVFAIL
    /// with EDE 22).
    pub zone_queries_per_second: u32,
    /// The same for the root and each TLD.
    pub tld_queries_per_second: u32,
    /// Upstream queries in flight to the servers of one zone.
    pub zone_queries_in_flight: u32,
    /// Upstream queries per second to one server address.
    pub server_queries_per_second: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let rrl = doors::rrl::RateLimits::default();
        let admission = doors::AdmissionConfig::default();
        let tcp = doors::TcpLimits::default();
        LimitsConfig {
            rate_limit: true,
            responses_per_second: rrl.responses_per_second,
            errors_per_second: rrl.errors_per_second,
            misses_per_second: rrl.misses_per_second,
            burst_seconds: rrl.burst_seconds,
            slip: rrl.slip,
            table_size: rrl.table_size,
            ipv4_prefix: admission.ipv4_prefix,
            ipv6_prefix: admission.ipv6_prefix,
            exempt: Vec::new(),
            flood_per_second: rrl.flood_per_second,
            kernel_filter_seconds: admission.kernel_filter_seconds,
            kernel_filter_networks: admission.kernel_filter_networks,
            cookies: admission.cookies,
            require_cookies: admission.require_cookies,
            cookie_secret: None,
            cookie_secret_previous: None,
            cookie_rotation_s: admission.cookie_rotation_s,
            max_resolutions: admission.max_resolutions,
            max_resolutions_per_prefix: admission.max_resolutions_per_prefix,
            max_connections: tcp.max_connections,
            connections_per_prefix: tcp.connections_per_prefix,
            max_in_flight_per_connection: tcp.max_in_flight,
            idle_timeout_ms: tcp.idle_timeout.as_millis() as u64,
            read_timeout_ms: tcp.read_timeout.as_millis() as u64,
            handshake_timeout_ms: tcp.handshake_timeout.as_millis() as u64,
            zone_queries_per_second: recursor::UpstreamLimits::default().zone_per_second,
            tld_queries_per_second: recursor::UpstreamLimits::default().tld_per_second,
            zone_queries_in_flight: recursor::UpstreamLimits::default().zone_in_flight,
            server_queries_per_second: recursor::UpstreamLimits::default().server_per_second,
        }
    }
}

/// Parses networks written `address/length` (a bare address is a host).
pub fn parse_networks(what: &str, nets: &[String]) -> anyhow::Result<Vec<(IpAddr, u8)>> {
    nets.iter()
        .map(|n| {
            let (addr, len) = n.split_once('/').unwrap_or((n, ""));
            let addr: IpAddr = addr.parse().map_err(|_| anyhow::anyhow!("{what}: {n:?} is not an address"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = if len.is_empty() { Ok(max) } else { len.parse::<u8>() };
            match len {
                Ok(l) if l <= max => Ok((addr, l)),
                _ => bail!("{what}: {n:?} has a bad prefix length"),
            }
        })
        .collect()
}

fn parse_secret(what: &str, hex: &Option<String>) -> anyhow::Result<Option<[u8; 16]>> {
    let Some(hex) = hex else { return Ok(None) };
    let bytes = hex.as_bytes();
    if bytes.len() != 32 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        bail!("{what} must be 32 hexadecimal digits (16 octets)");
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    Ok(Some(out))
}

impl LimitsConfig {
    /// The doors' admission settings.
    pub fn admission(&self, max_udp_payload: u16) -> anyhow::Result<doors::AdmissionConfig> {
        Ok(doors::AdmissionConfig {
            rate_limit: self.rate_limit.then_some(doors::rrl::RateLimits {
                responses_per_second: self.responses_per_second,
                errors_per_second: self.errors_per_second,
                misses_per_second: self.misses_per_second,
                burst_seconds: self.burst_seconds,
                slip: self.slip,
                table_size: self.table_size,
                flood_per_second: self.flood_per_second,
            }),
            ipv4_prefix: self.ipv4_prefix,
            ipv6_prefix: self.ipv6_prefix,
            exempt: parse_networks("limits.exempt", &self.exempt)?,
            cookies: self.cookies,
            require_cookies: self.require_cookies,
            cookie_secret: parse_secret("limits.cookie_secret", &self.cookie_secret)?,
            cookie_secret_previous: parse_secret("limits.cookie_secret_previous", &self.cookie_secret_previous)?,
            cookie_rotation_s: self.cookie_rotation_s,
            max_resolutions: self.max_resolutions,
            max_resolutions_per_prefix: self.max_resolutions_per_prefix,
            max_udp_payload,
            kernel_filter_seconds: self.kernel_filter_seconds,
            kernel_filter_networks: self.kernel_filter_networks,
        })
    }

    /// The stream doors' limits.
    pub fn tcp(&self) -> doors::TcpLimits {
        doors::TcpLimits {
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections,
            connections_per_prefix: self.connections_per_prefix,
            ipv4_prefix: self.ipv4_prefix,
            ipv6_prefix: self.ipv6_prefix,
            max_in_flight: self.max_in_flight_per_connection,
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
        }
    }

    /// The recursor's upstream limits.
    pub fn upstream(&self) -> recursor::UpstreamLimits {
        recursor::UpstreamLimits {
            zone_per_second: self.zone_queries_per_second,
            tld_per_second: self.tld_queries_per_second,
            zone_in_flight: self.zone_queries_in_flight,
            server_per_second: self.server_queries_per_second,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("responses_per_second", self.responses_per_second as u64),
            ("errors_per_second", self.errors_per_second as u64),
            ("misses_per_second", self.misses_per_second as u64),
            ("burst_seconds", self.burst_seconds as u64),
            ("table_size", self.table_size as u64),
            ("cookie_rotation_s", self.cookie_rotation_s),
            ("max_resolutions", self.max_resolutions as u64),
            ("max_resolutions_per_prefix", self.max_resolutions_per_prefix as u64),
            ("max_connections", self.max_connections as u64),
            ("connections_per_prefix", self.connections_per_prefix as u64),
            ("max_in_flight_per_connection", self.max_in_flight_per_connection as u64),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("read_timeout_ms", self.read_timeout_ms),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("zone_queries_per_second", self.zone_queries_per_second as u64),
            ("tld_queries_per_second", self.tld_queries_per_second as u64),
            ("zone_queries_in_flight", self.zone_queries_in_flight as u64),
            ("server_queries_per_second", self.server_queries_per_second as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                bail!("limits.{key} must be at least 1");
            }
        }
        if self.burst_seconds > 3600 || (self.responses_per_second as u64) * (self.burst_seconds as u64) > 4_000_000 {
            bail!(
                "limits.responses_per_second × limits.burst_seconds must be at most 4,000,000 (burst_seconds at most 3600)"
            );
        }
        if self.table_size > 16 << 20 {
            bail!("limits.table_size = {} is above 16,777,216 networks", self.table_size);
        }
        if self.ipv4_prefix > 32 || self.ipv6_prefix > 128 {
            bail!("limits.ipv4_prefix must be 0 to 32 and limits.ipv6_prefix 0 to 128");
        }
        if self.kernel_filter_seconds > 3600 {
            bail!("limits.kernel_filter_seconds must be at most 3600");
        }
        if self.kernel_filter_seconds > 0 && !(1..=doors::filter::MAX_NETWORKS).contains(&self.kernel_filter_networks) {
            bail!("limits.kernel_filter_networks must be 1 to {}", doors::filter::MAX_NETWORKS);
        }
        if self.max_resolutions_per_prefix > self.max_resolutions {
            bail!("limits.max_resolutions_per_prefix is above limits.max_resolutions");
        }
        if self.connections_per_prefix > self.max_connections {
            bail!("limits.connections_per_prefix is above limits.max_connections");
        }
        if self.require_cookies && !self.cookies {
            bail!("limits.require_cookies needs limits.cookies");
        }
        if self.cookie_secret_previous.is_some() && self.cookie_secret.is_none() {
            bail!("limits.cookie_secret_previous needs limits.cookie_secret");
        }
        self.admission(1232)?;
        Ok(())
    }
}

/// `[telemetry]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Directory of the query log, the sample and the research export;
    /// unset: nothing about queries is written to disk.
    pub data_dir: Option<PathBuf>,
    /// Keep the operator query log (off by default).
    pub query_log: bool,
    /// Client addresses in the query log: `truncate` (/24, /56) or `drop`.
    pub query_log_client: String,
    /// Hours the query log is kept.
    pub query_log_retention_h: u64,
    /// Fraction of queries kept with full addresses for troubleshooting
    /// (0.0005 = 0.05 %; 0 turns it off).
    pub sample_rate: f64,
    /// Hours the sample is kept.
    pub sample_retention_h: u64,
    /// Seconds between purges.
    pub purge_interval_s: u64,
    /// Send EDNS Client Subnet upstream (RFC 7871): the client's /24 or
    /// /56, only to the authorities of `ecs_allow`. Off by default, and
    /// against the published commitments (`onedot audit` fails).
    pub ecs: bool,
    /// Zones whose authorities receive ECS when it is on.
    pub ecs_allow: Vec<String>,
    /// Write the per-day research export (name counts, k-anonymous).
    pub research_export: bool,
    /// Distinct client networks a name needs to appear in the export.
    pub research_k: u32,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            data_dir: None,
            query_log: false,
            query_log_client: "truncate".into(),
            query_log_retention_h: 25,
            sample_rate: 0.0005,
            sample_retention_h: 25,
            purge_interval_s: 600,
            ecs: false,
            ecs_allow: Vec::new(),
            research_export: false,
            research_k: 20,
        }
    }
}

impl TelemetryConfig {
    /// The commitments this configuration makes (what is actually on:
    /// without a data directory nothing reaches disk).
    pub fn commitments(&self) -> telemetry::Commitments {
        let disk = self.data_dir.is_some();
        telemetry::Commitments {
            query_log: disk && self.query_log,
            query_log_client: self.query_log_client.clone(),
            query_log_retention_h: self.query_log_retention_h,
            sample_rate: if disk { self.sample_rate } else { 0.0 },
            sample_retention_h: self.sample_retention_h,
            ecs: self.ecs,
            research_export: disk && self.research_export,
            research_k: self.research_k,
        }
    }
}

/// Default web listener (metrics, health, transparency log).
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:8080";

/// `[web]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Address of the web listener; `""` turns it off.
    #[serde(deserialize_with = "empty_is_none")]
    pub listen: Option<SocketAddr>,
    /// `false` turns the web listener off.
    pub enabled: bool,
    /// The /help page (on this listener and the DoH listeners): how the
    /// visitor reached this node, and a resolution trace for a name.
    pub help: bool,
    /// A public button on /help that drops one name from the cache
    /// (rate-limited; never a name under a legal order).
    pub public_purge: bool,
    /// The node's name on /help (default: the host name).
    pub node_name: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: DEFAULT_WEB_LISTEN.parse().ok(),
            enabled: true,
            help: true,
            public_purge: false,
            node_name: None,
        }
    }
}

impl WebConfig {
    /// Where the web listener listens, if it is on.
    pub fn address(&self) -> Option<SocketAddr> {
        self.listen.filter(|_| self.enabled)
    }
}

/// An address, or an empty string for none (TOML has no null).
fn empty_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.trim().parse().map(Some).map_err(|_| serde::de::Error::custom(format!("{s:?} is not an address:port")))
}

/// `[policy]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The profile of `server.listen`, `server.dot_listen` and
    /// `server.doh_paths` (an empty one is made when not defined).
    pub default_profile: String,
    /// Seconds between checks of the source files for changes.
    pub watch_interval_s: u64,
    /// Seconds between full re-reads of every source, changed or not.
    pub reload_interval_s: u64,
    /// Where the transparency log's history (changes, failures, per-day
    /// block counts) is kept across restarts, written atomically; unset:
    /// in memory only.
    pub state_file: Option<PathBuf>,
    /// Profiles.
    #[serde(rename = "profile")]
    pub profiles: Vec<ProfileConfig>,
    /// Sources (block and allow lists).
    #[serde(rename = "source")]
    pub sources: Vec<policy::SourceSpec>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            default_profile: "unfiltered".into(),
            watch_interval_s: 5,
            reload_interval_s: 3600,
            state_file: None,
            profiles: Vec::new(),
            sources: Vec::new(),
        }
    }
}

/// `[[policy.profile]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Its name.
    pub name: String,
    /// Its sources, in precedence order.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Blocked answer: `nxdomain` (default), `nodata`, `null` or `sinkhole`.
    #[serde(default)]
    pub answer: Option<policy::BlockAnswer>,
    /// Sinkhole address for A.
    #[serde(default)]
    pub sinkhole_a: Option<std::net::Ipv4Addr>,
    /// Sinkhole address for AAAA.
    #[serde(default)]
    pub sinkhole_aaaa: Option<std::net::Ipv6Addr>,
    /// TTL of blocked answers (60).
    #[serde(default)]
    pub ttl: Option<u32>,
    /// EDE of its blocks when the source does not say: `blocked` (15) or
    /// `filtered` (17, default).
    #[serde(default)]
    pub ede: Option<policy::EdeKind>,
    /// Do53 (UDP and TCP) addresses answering with this profile.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// DoT addresses answering with this profile.
    #[serde(default)]
    pub dot_listen: Vec<SocketAddr>,
    /// Paths on the DoH listeners answering with this profile.
    #[serde(default)]
    pub doh_paths: Vec<String>,
}

impl ProfileConfig {
    /// The profile as the policy sees it.
    pub fn spec(&self) -> policy::ProfileSpec {
        let base = policy::ProfileSpec::named(&self.name);
        policy::ProfileSpec {
            sources: self.sources.clone(),
            answer: self.answer.unwrap_or(base.answer),
            sinkhole_a: self.sinkhole_a,
            sinkhole_aaaa: self.sinkhole_aaaa,
            ttl: self.ttl.unwrap_or(base.ttl),
            ede: self.ede.unwrap_or(base.ede),
            ..base
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses for Do53 over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// Worker threads and UDP sockets per address (0: one per core).
    pub workers: usize,
    /// Largest UDP response sent.
    pub max_udp_payload: u16,
    /// Addresses for DNS over TLS (RFC 7858); needs a certificate.
    pub dot_listen: Vec<SocketAddr>,
    /// Addresses for DNS over HTTPS (RFC 8484, HTTP/1.1 and HTTP/2).
    pub doh_listen: Vec<SocketAddr>,
    /// UDP addresses for DNS over QUIC (RFC 9250); needs a certificate.
    pub doq_listen: Vec<SocketAddr>,
    /// DoH over HTTP/3 on UDP at each DoH address, advertised by Alt-Svc.
    pub doh3: bool,
    /// Be an Oblivious DoH target (RFC 9230) on the DoH doors: publish
    /// `/.well-known/odohconfigs`, answer sealed queries.
    pub odoh_target: bool,
    /// Be an ODoH relay to these targets (and only these), on `/proxy`.
    pub odoh_relay_targets: Vec<OdohRelayTarget>,
    /// Trusted roots for the relay's connections to targets (default: the
    /// system bundle).
    pub odoh_relay_ca_file: Option<PathBuf>,
    /// Load balancers (networks, `10.0.0.0/8`, `::1/128`) whose TCP, DoT
    /// and DoH connections start with a PROXY v2 header carrying the
    /// client's address; required from them, never read from others.
    pub proxy_protocol_from: Vec<String>,
    /// URL paths answered on the DoH listeners.
    pub doh_paths: Vec<String>,
    /// The name the TLS certificate is for; when set, DDR (RFC 9462)
    /// advertises the encrypted doors under `_dns.resolver.arpa`.
    pub ddr_target: Option<String>,
    /// PEM certificate chain for the TLS doors.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for the TLS doors.
    pub tls_private_key: Option<PathBuf>,
    /// A keyless edge: the certificate's private key is at these key
    /// servers, never here (`tls_private_key` must be unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyless: Option<KeylessEdgeConfig>,
    /// The AF_XDP fast path for Do53 over UDP (Linux; root, or
    /// CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW): off unless set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpConfig>,
}

/// `server.xdp`: which interface's Do53 datagrams skip the kernel's
/// socket layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XdpConfig {
    /// The interface the XDP program is attached to (its every receive
    /// queue gets an AF_XDP socket and a thread).
    pub interface: String,
    /// `auto` (native, else generic), `native` (in the driver) or
    /// `generic` (any interface, slower).
    #[serde(default = "default_xdp_mode")]
    pub mode: String,
    /// The UDP port steered; the first `listen` address's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

fn default_xdp_mode() -> String {
    "auto".into()
}

impl XdpConfig {
    /// The mode asked for; `None` for auto.
    pub fn mode(&self) -> anyhow::Result<Option<doors::xdp::XdpMode>> {
        match self.mode.as_str() {
            "auto" => Ok(None),
            "native" => Ok(Some(doors::xdp::XdpMode::Native)),
            "generic" => Ok(Some(doors::xdp::XdpMode::Generic)),
            m => bail!("server.xdp.mode: {m:?} is not auto, native or generic"),
        }
    }
}

/// `server.keyless`: where the key servers are and how this edge proves
/// who it is to them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeylessEdgeConfig {
    /// Key servers, tried in this order.
    pub servers: Vec<SocketAddr>,
    /// The edge CA's certificate (`ca.pem` of the key server's state
    /// directory): the key servers' certificates must chain to it.
    pub ca_file: PathBuf,
    /// This edge's client certificate (`onedot keyserver issue-edge`).
    pub edge_certificate: PathBuf,
    /// This edge's client key: it only authenticates the edge to the key
    /// servers, and revoking the edge makes it worthless.
    pub edge_key: PathBuf,
    /// The name in the key servers' certificates; unset: their addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Longest wait for one signature, failover included; a handshake
    /// fails (closed) after it.
    #[serde(default = "default_keyless_deadline_ms")]
    pub deadline_ms: u64,
}

fn default_keyless_deadline_ms() -> u64 {
    1000
}

impl KeylessEdgeConfig {
    /// The client's settings, with the PEM files read.
    pub fn client_config(&self) -> anyhow::Result<keyless::KeylessConfig> {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("server.keyless: reading {}", p.display()));
        Ok(keyless::KeylessConfig {
            servers: self.servers.clone(),
            server_name: self.server_name.clone(),
            ca_pem: read(&self.ca_file)?,
            edge_cert_pem: read(&self.edge_certificate)?,
            edge_key_pem: read(&self.edge_key)?,
            deadline: std::time::Duration::from_millis(self.deadline_ms),
        })
    }
}

/// The key server's configuration file (`onedot keyserver --config F`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyserverConfig {
    /// Addresses edges connect to (mutual TLS 1.3).
    pub listen: Vec<SocketAddr>,
    /// Prometheus metrics over plain HTTP (`/metrics`); unset: none.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The state directory made by `onedot keyserver init`: the edge CA,
    /// the key server's certificate, the edge registry.
    pub state_dir: PathBuf,
    /// The private keys it holds.
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyserverKey>,
    /// A new data-key epoch (for edges' sealed disks) every this many
    /// seconds.
    #[serde(default = "default_data_key_rotation_s")]
    pub data_key_rotation_s: u32,
    /// Epochs handed out, the newest first: what an edge sealed stays
    /// readable for `data_key_rotation_s × (data_key_epochs − 1)` at least,
    /// which must cover the longest retention (25 hours).
    #[serde(default = "default_data_key_epochs")]
    pub data_key_epochs: u32,
}

fn default_data_key_rotation_s() -> u32 {
    86_400
}

fn default_data_key_epochs() -> u32 {
    3
}

/// `[[key]]` of the key server's configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyserverKey {
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); must not be world-readable.
    pub path: PathBuf,
    /// Regions whose edges may use it; empty: all.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Edges that may use it; empty: all.
    #[serde(default)]
    pub edges: Vec<String>,
}

impl KeyserverConfig {
    /// Reads and checks a key server configuration file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<KeyserverConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let c: KeyserverConfig = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if c.listen.is_empty() {
            bail!("{}: listen is empty", path.display());
        }
        if c.data_key_rotation_s < 60 || !(1..=64).contains(&c.data_key_epochs) {
            bail!("{}: data_key_rotation_s must be at least 60 and data_key_epochs 1 to 64", path.display());
        }
        let covered = u64::from(c.data_key_rotation_s) * u64::from(c.data_key_epochs - 1);
        if covered < 25 * 3600 {
            tracing::warn!(
                hours = covered / 3600,
                "data keys cover less than the 25-hour retention: edges lose the oldest sealed records early"
            );
        }
        Ok(c)
    }

    /// The keys with their policies.
    pub fn policies(&self) -> Vec<keyless::KeyPolicy> {
        self.keys
            .iter()
            .map(|k| keyless::KeyPolicy { path: k.path.clone(), regions: k.regions.clone(), edges: k.edges.clone() })
            .collect()
    }
}

/// `[[server.odoh_relay_targets]]`: a target the relay may forward to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OdohRelayTarget {
    /// The `targethost` clients name (`odoh.example.net`, or `host:port`).
    pub host: String,
    /// Where it is.
    pub address: SocketAddr,
    /// The name its certificate must carry (default: `host` without port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_name: Option<String>,
}

impl ServerConfig {
    /// `proxy_protocol_from` parsed: (network, prefix length).
    pub fn proxy_networks(&self) -> anyhow::Result<Vec<(IpAddr, u8)>> {
        parse_networks("server.proxy_protocol_from", &self.proxy_protocol_from)
    }
}

/// `[resolver]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverConfig {
    /// Root server addresses (`"192.0.2.1"`, or with the server's name as
    /// named.root has them, `"a.root.example. 192.0.2.1"`); empty means the
    /// built-in IANA hints.
    pub root_hints: Vec<String>,
    /// A named.root-style file of root hints (its A/AAAA records are used).
    pub root_hints_file: Option<PathBuf>,
    /// Port of every authority (53; the lab may use another).
    pub upstream_port: u16,
    /// QNAME minimisation (RFC 9156).
    pub qname_minimisation: bool,
    /// Never query 127.0.0.0/8 or ::1.
    pub do_not_query_localhost: bool,
    /// Answer localhost., test., invalid., onion., home.arpa. locally.
    pub answer_special_use_locally: bool,
    /// Query authorities over IPv4.
    pub ipv4: bool,
    /// Query authorities over IPv6.
    pub ipv6: bool,
    /// Source address of IPv4 upstream queries.
    pub outgoing_address_v4: Option<IpAddr>,
    /// Source address of IPv6 upstream queries.
    pub outgoing_address_v6: Option<IpAddr>,
    /// EDNS UDP payload size advertised upstream.
    pub edns_udp_size: u16,
    /// First timeout for an unknown server, ms.
    pub initial_timeout_ms: u64,
    /// Largest timeout of one upstream query, ms.
    pub max_timeout_ms: u64,
    /// Time budget of one client query, ms.
    pub resolution_timeout_ms: u64,
    /// Upstream queries one client query may cause.
    pub max_upstream_queries: u32,
    /// DNS Cookies (RFC 7873) toward authorities: a client cookie per
    /// server, its server cookie kept, replies with another client cookie
    /// dropped.
    pub cookies: bool,
    /// Nesting of sub-resolutions.
    pub max_depth: u8,
    /// Longest CNAME chain.
    pub max_cname_chain: usize,
}

/// `[cache]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Bytes for whole answers.
    pub answer_max_bytes: u64,
    /// Bytes for RRsets.
    pub rrset_max_bytes: u64,
    /// Smallest TTL kept, seconds.
    pub min_ttl: u32,
    /// Largest TTL kept, seconds.
    pub max_ttl: u32,
    /// Largest negative TTL, seconds.
    pub max_negative_ttl: u32,
    /// Serve expired answers when authorities fail (RFC 8767).
    pub serve_stale: bool,
    /// Resolve a popular answer again shortly before it expires (a hit in
    /// its last tenth, TTLs of 10 s or more), so hits keep hitting.
    pub prefetch: bool,
    /// How long past expiry stale answers may be served, seconds.
    pub stale_window: u32,
    /// How long a resolution failure (SERVFAIL) is cached the first time,
    /// seconds (RFC 9520); doubled while it persists, at most 300; 0 turns
    /// failure caching off.
    pub failure_ttl: u32,
    /// Where both caches are written on the way down (SIGTERM, `onedot ctl
    /// dump-cache`) and read back at start, their TTLs aged by the time
    /// passed; unset: the cache starts cold. Sealed on a keyless edge.
    pub snapshot_file: Option<PathBuf>,
}

/// `[local]`
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LocalConfig {
    /// Records in master-file syntax, absolute names, e.g.
    /// `"nas.home.arpa. 3600 IN A 192.0.2.8"`.
    pub records: Vec<String>,
}

/// `[dnssec]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnssecConfig {
    /// Validate answers (RFC 4035): on by default, as public resolvers do.
    pub validate: bool,
    /// Trust the built-in IANA root anchors (KSK-2017 and KSK-2024).
    pub builtin_root_anchor: bool,
    /// Trust anchors in master-file syntax (DS or DNSKEY records).
    pub trust_anchors: Vec<String>,
    /// Files of trust anchors in master-file syntax.
    pub trust_anchor_files: Vec<PathBuf>,
    /// Accept the SHA-1 algorithms (5, 7) and DS digest 1 (RFC 8624: NOT
    /// RECOMMENDED for validation; RFC 9905 deprecates SHA-1 in DNSSEC).
    /// Off: zones signed only with them are insecure (EDE 1), not bogus.
    pub allow_sha1: bool,
    /// Smallest RSA key, in bits, validated with; zones signed only with
    /// smaller keys are insecure (EDE 1), not bogus. At least 1024 (the
    /// crypto library's floor).
    pub min_rsa_bits: u32,
    /// Signature checks one client query may cost (KeyTrap bound).
    pub max_verifications: u32,
    /// Negative trust anchors (RFC 7646): domains treated as insecure.
    pub negative_trust_anchors: Vec<String>,
    /// Keep the anchors up to date with RFC 5011, their state in this file
    /// (written atomically); unset: anchors are used as configured.
    pub trust_anchor_state: Option<PathBuf>,
    /// Seconds between RFC 5011 probes of the anchored zones' DNSKEYs.
    pub probe_interval_s: u64,
}

impl Default for DnssecConfig {
    fn default() -> Self {
        DnssecConfig {
            validate: true,
            builtin_root_anchor: true,
            trust_anchors: Vec::new(),
            trust_anchor_files: Vec::new(),
            allow_sha1: false,
            min_rsa_bits: dnssec::DEFAULT_MIN_RSA_BITS,
            max_verifications: 256,
            negative_trust_anchors: Vec::new(),
            trust_anchor_state: None,
            probe_interval_s: 43_200,
        }
    }
}

/// The IANA root trust anchors (root-anchors.xml): KSK-2017 and KSK-2024.
pub const IANA_ROOT_ANCHORS: &[&str] = &[
    ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
    ". IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
];

/// `[[forward_zone]]` and `[[stub_zone]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneServers {
    /// The zone.
    pub name: String,
    /// Servers, `address:port`, tried in order (the next when one fails).
    pub servers: Vec<SocketAddr>,
    /// Forward zones: `udp` (Do53, the default), `tls`, `https`, `h3` or
    /// `quic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// The name the servers' certificates must carry (default: their
    /// address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_name: Option<String>,
    /// The DoH path for `https` and `h3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Trusted roots in PEM (default: the system bundle, unless pins are
    /// given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// SHA-256 digests of the servers' SubjectPublicKeyInfo, base64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spki_pins: Vec<String>,
}

impl ZoneServers {
    /// The encrypted transport of a forward zone, if any.
    pub fn encrypted(&self) -> anyhow::Result<Option<doors::client::Encrypted>> {
        use doors::client::Encrypted;
        Ok(match self.transport.as_deref() {
            None | Some("udp") => None,
            Some("tls") => Some(Encrypted::Tls),
            Some("https") => Some(Encrypted::Https),
            Some("h3") => Some(Encrypted::H3),
            Some("quic") => Some(Encrypted::Quic),
            Some(other) => bail!("zone {:?}: transport {other:?} is not udp, tls, https, h3 or quic", self.name),
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CONFIG_VERSION,
            server: ServerConfig::default(),
            resolver: ResolverConfig::default(),
            cache: CacheConfig::default(),
            local: LocalConfig::default(),
            dnssec: DnssecConfig::default(),
            forward_zones: Vec::new(),
            stub_zones: Vec::new(),
            policy: PolicyConfig::default(),
            web: WebConfig::default(),
            telemetry: TelemetryConfig::default(),
            limits: LimitsConfig::default(),
            observatory: ObservatoryConfig::default(),
            control: ControlConfig::default(),
            dnstap: DnstapConfig::default(),
            source: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.iter().filter_map(|s| s.parse().ok()).collect(),
            workers: 0,
            max_udp_payload: 1232,
            dot_listen: DEFAULT_DOT_LISTEN.iter().filter_map(|s| s.parse().ok()).collect(),
            doh_listen: DEFAULT_DOH_LISTEN.iter().filter_map(|s| s.parse().ok()).collect(),
            doq_listen: DEFAULT_DOQ_LISTEN.iter().filter_map(|s| s.parse().ok()).collect(),
            doh3: true,
            proxy_protocol_from: Vec::new(),
            odoh_target: true,
            odoh_relay_targets: Vec::new(),
            odoh_relay_ca_file: None,
            doh_paths: vec!["/dns-query".to_string()],
            ddr_target: None,
            tls_certificate: None,
            tls_private_key: None,
            keyless: None,
            xdp: None,
        }
    }
}

impl Default for ResolverConfig {
    fn default() -> Self {
        let r = recursor::RecursorConfig::default();
        ResolverConfig {
            root_hints: Vec::new(),
            root_hints_file: None,
            upstream_port: r.upstream_port,
            qname_minimisation: r.qname_minimisation,
            do_not_query_localhost: r.do_not_query_localhost,
            answer_special_use_locally: true,
            ipv4: r.ipv4,
            ipv6: r.ipv6,
            outgoing_address_v4: None,
            outgoing_address_v6: None,
            edns_udp_size: r.edns_udp_size,
            initial_timeout_ms: r.initial_timeout.as_millis() as u64,
            max_timeout_ms: r.max_timeout.as_millis() as u64,
            resolution_timeout_ms: r.resolution_timeout.as_millis() as u64,
            max_upstream_queries: r.max_upstream_queries,
            cookies: r.cookies,
            max_depth: r.max_depth,
            max_cname_chain: r.max_cname_chain,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        let t = cache::TtlPolicy::default();
        CacheConfig {
            answer_max_bytes: 64 << 20,
            rrset_max_bytes: 64 << 20,
            min_ttl: t.min_ttl,
            max_ttl: t.max_ttl,
            max_negative_ttl: t.max_negative_ttl,
            serve_stale: true,
            prefetch: true,
            stale_window: t.stale_window,
            failure_ttl: t.failure_ttl,
            snapshot_file: None,
        }
    }
}

impl Config {
    /// Parses and checks config text. Errors say where and why.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and checks a config file. Relative source paths are taken
    /// from the file's directory.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config = Config::parse(&text).with_context(|| format!("in {}", path.display()))?;
        config.source = Some(path.to_path_buf());
        let dir = path.parent().unwrap_or(Path::new("."));
        for s in &mut config.policy.sources {
            if s.path.is_relative() {
                s.path = dir.join(&s.path);
            }
            if let Some(f) = s.ca_file.as_mut().filter(|f| f.is_relative()) {
                *f = dir.join(&*f);
            }
        }
        if let Some(f) = config.policy.state_file.as_mut().filter(|f| f.is_relative()) {
            *f = dir.join(&*f);
        }
        for f in [
            &mut config.telemetry.data_dir,
            &mut config.observatory.country_db,
            &mut config.observatory.asn_db,
            &mut config.observatory.assets_dir,
            &mut config.control.socket,
            &mut config.control.key_file,
            &mut config.dnstap.socket,
            &mut config.cache.snapshot_file,
        ] {
            if let Some(f) = f.as_mut().filter(|f| f.is_relative()) {
                *f = dir.join(&*f);
            }
        }
        Ok(config)
    }

    /// The filtering policy (profile 0 is the default profile), sources not
    /// yet loaded.
    pub fn policy(&self) -> anyhow::Result<policy::Policy> {
        let p = &self.policy;
        let mut specs: Vec<policy::ProfileSpec> = Vec::new();
        match p.profiles.iter().find(|x| x.name == p.default_profile) {
            Some(d) => specs.push(d.spec()),
            None => specs.push(policy::ProfileSpec::named(&p.default_profile)),
        }
        specs.extend(p.profiles.iter().filter(|x| x.name != p.default_profile).map(ProfileConfig::spec));
        policy::Policy::new(specs, p.sources.clone()).map_err(|e| anyhow::anyhow!("policy: {e}"))
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.version != CONFIG_VERSION {
            bail!("version = {} is not supported (this onedot reads version {CONFIG_VERSION})", self.version);
        }
        if self.server.listen.is_empty() {
            bail!("server.listen is empty: nothing would answer");
        }
        if self.dnstap.socket.is_some() && self.dnstap.tcp.is_some() {
            bail!("dnstap: set socket or tcp, not both");
        }
        if let Some(addr) = self.control.tcp {
            if !addr.ip().is_loopback() {
                bail!("control.tcp = {addr}: the control port listens on loopback only");
            }
            if self.control.key_file.is_none() {
                bail!("control.tcp needs control.key_file (the key every request must carry)");
            }
        }
        if let Some(x) = &self.server.xdp {
            x.mode()?;
            if x.interface.is_empty() {
                bail!("server.xdp.interface is empty");
            }
            if x.port.is_none() && self.server.listen.is_empty() {
                bail!("server.xdp needs a port or a server.listen address");
            }
        }
        if let Some(k) = &self.server.keyless {
            if self.server.tls_private_key.is_some() {
                bail!("server.keyless: a keyless edge holds no private key; remove server.tls_private_key");
            }
            if self.server.tls_certificate.is_none() {
                bail!("server.keyless needs server.tls_certificate (the public chain)");
            }
            if k.servers.is_empty() {
                bail!("server.keyless.servers is empty");
            }
            if !(10..=30_000).contains(&k.deadline_ms) {
                bail!("server.keyless.deadline_ms must be between 10 and 30000");
            }
        } else if self.server.tls_certificate.is_some() != self.server.tls_private_key.is_some() {
            bail!("server.tls_certificate and server.tls_private_key go together");
        }
        if self.server.max_udp_payload < 512 {
            bail!("server.max_udp_payload must be at least 512");
        }
        if self.cache.min_ttl > self.cache.max_ttl {
            bail!("cache.min_ttl ({}) is above cache.max_ttl ({})", self.cache.min_ttl, self.cache.max_ttl);
        }
        if self.cache.failure_ttl > cache::MAX_FAILURE_TTL {
            bail!(
                "cache.failure_ttl = {} is above {}: RFC 9520 caps caching a resolution failure at five minutes",
                self.cache.failure_ttl,
                cache::MAX_FAILURE_TTL
            );
        }
        if !self.resolver.ipv4 && !self.resolver.ipv6 {
            bail!("resolver.ipv4 and resolver.ipv6 are both off");
        }
        for z in &self.forward_zones {
            z.encrypted()?;
        }
        if let Some(z) = self.stub_zones.iter().find(|z| z.transport.is_some()) {
            bail!(
                "stub zone {:?}: authorities are asked over Do53; encrypted transports are for forward zones",
                z.name
            );
        }
        for z in self.forward_zones.iter().chain(&self.stub_zones) {
            proto::Name::from_ascii(&z.name).map_err(|e| anyhow::anyhow!("zone name {:?}: {e}", z.name))?;
            if z.servers.is_empty() {
                bail!("zone {:?} has no servers", z.name);
            }
        }
        self.local_records()?;
        self.server.proxy_networks()?;
        self.limits.validate()?;
        self.root_hints()?;
        self.policy()?;
        let t = &self.telemetry;
        if t.query_log_client != "truncate" && t.query_log_client != "drop" {
            bail!(
                "telemetry.query_log_client = {:?}: use \"truncate\" or \"drop\" (full addresses are never logged)",
                t.query_log_client
            );
        }
        if !(0.0..=1.0).contains(&t.sample_rate) {
            bail!("telemetry.sample_rate = {} is not a fraction between 0 and 1", t.sample_rate);
        }
        let o = &self.observatory;
        if o.enabled && t.data_dir.is_none() {
            bail!("observatory.enabled needs telemetry.data_dir (where its minute rows are kept)");
        }
        if o.k < 2 {
            bail!("observatory.k = {} would publish single queries; use 2 or more (20 is the default)", o.k);
        }
        if o.retention_days == 0 || o.rollup_retention_days < o.retention_days {
            bail!("observatory.retention_days must be at least 1 and rollup_retention_days at least as long");
        }
        if !(64..=1 << 24).contains(&o.cells) {
            bail!("observatory.cells must be between 64 and 16777216");
        }
        if let Some(c) = &o.clickhouse {
            c.client()?;
        }
        let d = &o.detect;
        if !(d.drop_ratio > 0.0 && d.drop_ratio < 1.0 && d.surge_ratio > 1.0 && d.country_holds <= 1.0)
            || d.drop_minutes == 0
            || d.surge_minutes == 0
            || !(1..=12).contains(&d.weeks)
        {
            bail!(
                "observatory.detect: drop_ratio must be in (0, 1), surge_ratio above 1, country_holds at most 1, minutes at least 1, weeks 1 to 12"
            );
        }
        for p in &self.policy.profiles {
            if let Some(path) = p.doh_paths.iter().find(|x| !x.starts_with('/')) {
                bail!("policy.profile {:?}: DoH path {path:?} must start with '/'", p.name);
            }
            if p.answer == Some(policy::BlockAnswer::Sinkhole) && p.sinkhole_a.is_none() && p.sinkhole_aaaa.is_none() {
                bail!("policy.profile {:?}: answer = \"sinkhole\" needs sinkhole_a or sinkhole_aaaa", p.name);
            }
        }
        // Inline anchors are checked now; anchor files when the resolver
        // starts (a lab writes its own at start-up).
        self.inline_trust_anchors()?;
        if !(1024..=4096).contains(&self.dnssec.min_rsa_bits) {
            bail!("dnssec.min_rsa_bits must be between 1024 and 4096, not {}", self.dnssec.min_rsa_bits);
        }
        for n in &self.dnssec.negative_trust_anchors {
            proto::Name::from_ascii(n).map_err(|e| anyhow::anyhow!("dnssec.negative_trust_anchors {n:?}: {e}"))?;
        }
        Ok(())
    }

    fn inline_trust_anchors(&self) -> anyhow::Result<Vec<proto::Record>> {
        let mut plain = self.clone();
        plain.dnssec.trust_anchor_files.clear();
        plain.trust_anchors()
    }

    /// The trust anchors in force (DS and DNSKEY records).
    pub fn trust_anchors(&self) -> anyhow::Result<Vec<proto::Record>> {
        let d = &self.dnssec;
        let mut texts: Vec<(String, String)> = Vec::new();
        if d.builtin_root_anchor {
            texts.extend(IANA_ROOT_ANCHORS.iter().map(|t| ("built-in root anchor".to_string(), t.to_string())));
        }
        texts
            .extend(d.trust_anchors.iter().enumerate().map(|(i, t)| (format!("dnssec.trust_anchors[{i}]"), t.clone())));
        for f in &d.trust_anchor_files {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            texts.push((f.display().to_string(), text));
        }
        let mut out = Vec::new();
        for (what, text) in texts {
            // Master-file records (class, TTL optional; mnemonics), or
            // BIND's trust-anchors / managed-keys / trusted-keys blocks.
            out.extend(dnssec::anchorfile::parse(&text).map_err(|e| anyhow::anyhow!("{what}: {e}"))?);
        }
        Ok(out)
    }

    /// The local records, parsed.
    pub fn local_records(&self) -> anyhow::Result<Vec<proto::Record>> {
        let mut out = Vec::new();
        for (i, line) in self.local.records.iter().enumerate() {
            let recs = proto::zonefile::parse_records(line, Some(&proto::Name::root()))
                .map_err(|e| anyhow::anyhow!("local.records[{i}] {line:?}: {e}"))?;
            out.extend(recs);
        }
        Ok(out)
    }

    /// The root hints in force.
    pub fn root_hints(&self) -> anyhow::Result<Vec<IpAddr>> {
        if let Some(file) = &self.resolver.root_hints_file {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let recs = proto::zonefile::parse_records(&text, Some(&proto::Name::root()))
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let addrs: Vec<IpAddr> = recs.iter().filter_map(proto::Record::address).collect();
            if addrs.is_empty() {
                bail!("{} has no A or AAAA records", file.display());
            }
            return Ok(addrs);
        }
        if self.resolver.root_hints.is_empty() {
            return Ok(crate::root_hints::builtin());
        }
        self.resolver
            .root_hints
            .iter()
            .map(|h| {
                let words: Vec<&str> = h.split_whitespace().collect();
                let addr = match words.as_slice() {
                    [a] | [_, a] => a.parse::<IpAddr>().ok(),
                    _ => None,
                };
                addr.ok_or_else(|| anyhow::anyhow!("resolver.root_hints: {h:?} is not an address or \"name address\""))
            })
            .collect()
    }

    /// The recursor settings.
    pub fn recursor(&self) -> anyhow::Result<recursor::RecursorConfig> {
        let r = &self.resolver;
        let zones = |list: &[ZoneServers]| -> Vec<(proto::Name, Vec<SocketAddr>)> {
            list.iter().filter_map(|z| Some((proto::Name::from_ascii(&z.name).ok()?, z.servers.clone()))).collect()
        };
        Ok(recursor::RecursorConfig {
            root_hints: self.root_hints()?,
            upstream_port: r.upstream_port,
            qname_minimisation: r.qname_minimisation,
            do_not_query_localhost: r.do_not_query_localhost,
            ipv4: r.ipv4,
            ipv6: r.ipv6,
            outgoing_v4: r.outgoing_address_v4,
            outgoing_v6: r.outgoing_address_v6,
            edns_udp_size: r.edns_udp_size,
            initial_timeout: Duration::from_millis(r.initial_timeout_ms),
            max_timeout: Duration::from_millis(r.max_timeout_ms),
            resolution_timeout: Duration::from_millis(r.resolution_timeout_ms),
            max_upstream_queries: r.max_upstream_queries,
            cookies: r.cookies,
            max_depth: r.max_depth,
            max_cname_chain: r.max_cname_chain,
            forward_zones: zones(&self.forward_zones)
                .into_iter()
                .map(|(name, servers)| recursor::ForwardZone { name, servers })
                .collect(),
            stub_zones: zones(&self.stub_zones)
                .into_iter()
                .map(|(name, servers)| recursor::StubZone { name, servers })
                .collect(),
            ecs_allow: if self.telemetry.ecs {
                self.telemetry
                    .ecs_allow
                    .iter()
                    .map(|n| proto::Name::from_ascii(n))
                    .collect::<Result<_, _>>()
                    .map_err(|e| anyhow::anyhow!("telemetry.ecs_allow: {e}"))?
            } else {
                Vec::new()
            },
            rrset_cache_bytes: self.cache.rrset_max_bytes,
            ttl: self.ttl_policy(),
            upstream_limits: self.limits.upstream(),
            validation: if self.dnssec.validate {
                Some(recursor::ValidationConfig {
                    trust_anchors: self.trust_anchors()?,
                    policy: dnssec::AlgorithmPolicy {
                        allow_sha1: self.dnssec.allow_sha1,
                        min_rsa_bits: self.dnssec.min_rsa_bits,
                    },
                    max_verifications: self.dnssec.max_verifications,
                    negative_trust_anchors: self
                        .dnssec
                        .negative_trust_anchors
                        .iter()
                        .map(|n| proto::Name::from_ascii(n))
                        .collect::<Result<_, _>>()
                        .map_err(|e| anyhow::anyhow!("dnssec.negative_trust_anchors: {e}"))?,
                    runtime_anchors: recursor::RuntimeAnchors::default(),
                })
            } else {
                None
            },
        })
    }

    /// The TTL policy.
    pub fn ttl_policy(&self) -> cache::TtlPolicy {
        let c = &self.cache;
        cache::TtlPolicy {
            min_ttl: c.min_ttl,
            max_ttl: c.max_ttl,
            max_negative_ttl: c.max_negative_ttl,
            stale_window: if c.serve_stale { c.stale_window } else { 0 },
            failure_ttl: c.failure_ttl,
        }
    }

    /// The answer-service settings.
    pub fn service(&self) -> anyhow::Result<recursor::ServiceConfig> {
        Ok(recursor::ServiceConfig {
            max_udp_payload: self.server.max_udp_payload,
            answer_cache_bytes: self.cache.answer_max_bytes,
            ttl: self.ttl_policy(),
            local: recursor::LocalData::new(self.local_records()?, self.resolver.answer_special_use_locally),
        })
    }
}

/// The dotted keys whose values differ between two configurations
/// (`server.listen`, `policy.sources`...): lists and scalars compare
/// whole, tables key by key.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                let null = serde_json::Value::Null;
                for k in keys {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
                }
            }
            _ if a != b => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    match (serde_json::to_value(old), serde_json::to_value(new)) {
        (Ok(a), Ok(b)) => walk("", &a, &b, &mut out),
        _ => out.push("(the configuration)".into()),
    }
    out
}

#[cfg(test)]
mod tests {
    /// Issue 18 item 1: the anchor files other resolvers use load as they are.
    #[test]
    fn trust_anchor_files_in_other_resolvers_syntaxes() {
        let dir = std::env::temp_dir().join(format!("onedot-anchor-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ds = "20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D";
        let files = [
            ("unbound.key", format!(";; autotrust\n;;state=2 [ VALID ]\n. 172800 IN DS {ds} ;{{id = 20326}}\n")),
            (
                "classless.key",
                ". DS 20326 RSASHA256 2 (\n  E06D44B80B8F1D39A95C0B0D7C65D084\n  58E880409BBC683457104237C7F8EC8D )\n"
                    .to_string(),
            ),
            ("bind.conf", format!("// BIND\ntrust-anchors {{\n  . initial-ds 20326 8 2 \"{}\";\n}};\n", &ds[10..])),
        ];
        for (file, text) in files {
            let path = dir.join(file);
            std::fs::write(&path, text).expect("write");
            let mut c = Config::default();
            c.dnssec.builtin_root_anchor = false;
            c.dnssec.trust_anchor_files = vec![path];
            let anchors = c.trust_anchors().unwrap_or_else(|e| panic!("{file}: {e:#}"));
            assert_eq!(anchors.len(), 1, "{file}");
            assert_eq!(anchors[0].rtype, proto::rtype::DS, "{file}");
        }
        let bad = dir.join("bad.key");
        std::fs::write(&bad, format!(". DS {ds}\nwww. A 192.0.2.1\n")).expect("write");
        let mut c = Config::default();
        c.dnssec.trust_anchor_files = vec![bad];
        let e = format!("{:#}", c.trust_anchors().expect_err("not an anchor"));
        assert!(e.contains("bad.key") && e.contains("line 2"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    use super::*;

    #[test]
    fn every_example_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).expect("examples dir") {
            let path = e.expect("entry").path();
            // keyserver.toml configures `onedot keyserver`, checked below.
            let keyserver = path.file_stem().is_some_and(|s| s == "keyserver");
            if path.extension().is_some_and(|x| x == "toml") && !keyserver {
                let c = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                if c.dnssec.trust_anchor_files.iter().all(|f| f.exists()) {
                    c.recursor().expect("recursor config");
                }
                c.service().expect("service config");
                seen += 1;
            }
        }
        assert!(seen >= 2, "found {seen} example configs");
    }

    #[test]
    fn the_web_listener_can_be_turned_off_and_root_hints_carry_names() {
        let off = Config::parse("version = 1\n[web]\nlisten = \"\"\n").expect("parses");
        assert_eq!(off.web.address(), None);
        let off = Config::parse("version = 1\n[web]\nenabled = false\n").expect("parses");
        assert_eq!(off.web.address(), None);
        let on = Config::parse("version = 1\n[web]\nlisten = \"127.0.0.1:9\"\n").expect("parses");
        assert_eq!(on.web.address(), "127.0.0.1:9".parse().ok());
        assert!(Config::parse("version = 1\n[web]\nlisten = \"nowhere\"\n").is_err());
        let c = Config::parse(
            "version = 1\n[resolver]\nroot_hints = [\"a.root.example. 192.0.2.1\", \"2001:db8::1\", \"b.root.example 192.0.2.2\"]\n",
        )
        .expect("parses");
        let want: Vec<IpAddr> =
            ["192.0.2.1", "2001:db8::1", "192.0.2.2"].iter().map(|a| a.parse().expect("ip")).collect();
        assert_eq!(c.root_hints().expect("hints"), want);
        let bad = Config::parse("version = 1\n[resolver]\nroot_hints = [\"a.root.example.\"]\n");
        assert!(format!("{:#}", bad.expect_err("refused")).contains("a.root.example."));
    }

    #[test]
    fn errors_say_where_and_why() {
        let e =
            Config::parse("version = 1\n[server]\nlisten = [\"127.0.0.1:53\"]\nbogus = 3\n").expect_err("unknown key");
        let msg = format!("{e:#}");
        assert!(msg.contains("bogus") && msg.contains("line 4"), "{msg}");
        let e = Config::parse("version = 2").expect_err("version");
        assert!(format!("{e:#}").contains("version"));
        let e = Config::parse("[local]\nrecords = [\"x. IN A not-an-ip\"]").expect_err("bad record");
        assert!(format!("{e:#}").contains("local.records[0]"));
        let e = Config::parse("[cache]\nmin_ttl = 10\nmax_ttl = 5").expect_err("ttl");
        assert!(format!("{e:#}").contains("min_ttl"));
        let e = Config::parse("[cache]\nfailure_ttl = 301").expect_err("failure ttl");
        assert!(format!("{e:#}").contains("RFC 9520"));
        assert_eq!(Config::parse("[cache]\nfailure_ttl = 0").expect("off").ttl_policy().failure_ttl, 0);
    }

    #[test]
    fn defaults_are_unprivileged_and_use_iana_hints() {
        let c = Config::default();
        assert!(c.server.listen.iter().all(|a| a.port() == 5353 && a.ip().is_loopback()));
        assert_eq!(c.root_hints().expect("hints").len(), crate::root_hints::IANA_ROOT_SERVERS.len());
        assert!(c.resolver.do_not_query_localhost);
        let anchors = c.trust_anchors().expect("anchors");
        let tags: Vec<u16> = anchors.iter().map(|r| u16::from_be_bytes([r.rdata[0], r.rdata[1]])).collect();
        assert_eq!(tags, [20326, 38696]);
    }

    #[test]
    fn keyless_edges_hold_no_key_and_the_key_server_example_loads() {
        let keyless = "keyless = { servers = [\"127.0.0.1:2407\"], ca_file = \"ca.pem\", \
                       edge_certificate = \"e.pem\", edge_key = \"e.key\" }";
        let c = Config::parse(&format!("[server]\ntls_certificate = \"c.pem\"\n{keyless}")).expect("keyless edge");
        assert_eq!(c.server.keyless.as_ref().map(|k| k.deadline_ms), Some(1000));
        let e =
            Config::parse(&format!("[server]\ntls_certificate = \"c.pem\"\ntls_private_key = \"k.pem\"\n{keyless}"))
                .expect_err("a key on a keyless edge");
        assert!(format!("{e:#}").contains("holds no private key"), "{e:#}");
        let e = Config::parse(&format!("[server]\n{keyless}")).expect_err("no chain");
        assert!(format!("{e:#}").contains("needs server.tls_certificate"), "{e:#}");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/keyserver.toml");
        let ks = KeyserverConfig::load(&example).expect("examples/keyserver.toml");
        assert_eq!((ks.listen.len(), ks.keys.len()), (1, 1));
        assert_eq!(ks.policies()[0].regions, ["eu", "us"]);
    }
}
