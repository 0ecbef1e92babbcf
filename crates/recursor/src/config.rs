//! The recursor's settings.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proto::Name;

/// A subtree whose queries go, with RD set, to the given resolvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardZone {
    /// The zone.
    pub name: Name,
    /// Resolvers to forward to.
    pub servers: Vec<SocketAddr>,
}

/// A subtree resolved iteratively starting at the given authorities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubZone {
    /// The zone.
    pub name: Name,
    /// Its authoritative servers.
    pub servers: Vec<SocketAddr>,
}

/// Recursor settings. [`RecursorConfig::default`] is what `serve` uses.
#[derive(Debug, Clone)]
pub struct RecursorConfig {
    /// Root server addresses (the built-in IANA hints in production).
    pub root_hints: Vec<IpAddr>,
    /// Port used for every authority learnt from hints, glue or the cache
    /// (53; the lab runs unprivileged on another).
    pub upstream_port: u16,
    /// Send minimised QNAMEs (RFC 9156).
    pub qname_minimisation: bool,
    /// Never send queries to 127.0.0.0/8 or ::1 (except configured
    /// forwarders and stubs).
    pub do_not_query_localhost: bool,
    /// Use IPv4 upstream.
    pub ipv4: bool,
    /// Use IPv6 upstream.
    pub ipv6: bool,
    /// Source address for IPv4 upstream queries.
    pub outgoing_v4: Option<IpAddr>,
    /// Source address for IPv6 upstream queries.
    pub outgoing_v6: Option<IpAddr>,
    /// EDNS UDP payload size advertised upstream (1232, DNS Flag Day 2020).
    pub edns_udp_size: u16,
    /// Timeout of a query to a server we know nothing about.
    pub initial_timeout: Duration,
    /// Longest timeout of one upstream query.
    pub max_timeout: Duration,
    /// Time budget of one client query.
    pub resolution_timeout: Duration,
    /// Upstream queries one client query may cause.
    pub max_upstream_queries: u32,
    /// Nesting depth of sub-resolutions (glueless name servers).
    pub max_depth: u8,
    /// Longest CNAME/DNAME chain followed.
    pub max_cname_chain: usize,
    /// Forward zones.
    pub forward_zones: Vec<ForwardZone>,
    /// Stub zones.
    pub stub_zones: Vec<StubZone>,
    /// Authorities (zones and below) that receive EDNS Client Subnet for
    /// clients that come with a network; empty: ECS is never sent.
    pub ecs_allow: Vec<Name>,
    /// Cache bytes for RRsets.
    pub rrset_cache_bytes: u64,
    /// TTL policy.
    pub ttl: cache::TtlPolicy,
    /// DNSSEC validation, or `None` for none.
    pub validation: Option<crate::ValidationConfig>,
    /// Per-zone and per-server limits on upstream queries.
    pub upstream_limits: crate::UpstreamLimits,
    /// Send DNS Cookies (RFC 7873) to authorities, keep their server
    /// cookies, and drop replies carrying another client cookie.
    pub cookies: bool,
}

impl Default for RecursorConfig {
    fn default() -> Self {
        RecursorConfig {
            root_hints: Vec::new(),
            upstream_port: 53,
            qname_minimisation: true,
            do_not_query_localhost: true,
            ipv4: true,
            ipv6: true,
            outgoing_v4: None,
            outgoing_v6: None,
            edns_udp_size: 1232,
            initial_timeout: Duration::from_millis(800),
            max_timeout: Duration::from_millis(1500),
            resolution_timeout: Duration::from_millis(4000),
            max_upstream_queries: 64,
            max_depth: 6,
            max_cname_chain: 12,
            forward_zones: Vec::new(),
            stub_zones: Vec::new(),
            ecs_allow: Vec::new(),
            rrset_cache_bytes: 64 << 20,
            ttl: cache::TtlPolicy::default(),
            validation: None,
            upstream_limits: crate::UpstreamLimits::default(),
            cookies: true,
        }
    }
}
