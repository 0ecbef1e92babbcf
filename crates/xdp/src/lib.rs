//! onedot's AF_XDP fast path (Linux): the XDP program that steers Do53
//! UDP datagrams for the resolver's port to user space before the kernel's
//! network stack sees them ([`Steering`]), the AF_XDP sockets they land in,
//! one per receive queue ([`Socket`]), and the turn-around of a query's
//! frame into its answer in place ([`packet`]).
//!
//! This is the one crate of the workspace with `unsafe`: the bpf(2)
//! system call, the rings shared with the kernel and the packet memory are
//! raw memory. It is kept small, each `unsafe` block says why it is sound,
//! and what does not need it (the BPF assembler, packet parsing and
//! checksums) is safe code with tests. No libbpf, libxdp or BPF compiler
//! is needed to build or run it: the program is assembled here.
//!
//! What the resolver does with a datagram is not here: `doors::xdp` calls
//! the handler's fast path on each and hands misses to the socket path.

mod bpf;
pub mod packet;
mod socket;

pub use bpf::{Mode, Steering};
pub use socket::{KernelStats, Socket};

/// What can go wrong setting the fast path up.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The interface does not exist.
    #[error("no interface named {0:?}")]
    NoInterface(String),
    /// A bpf(2) call failed (not root, no CAP_BPF and CAP_NET_ADMIN, an
    /// old kernel, another XDP program on the interface).
    #[error("{0}: {1}")]
    Bpf(&'static str, std::io::Error),
    /// The kernel's verifier refused the program.
    #[error("loading the XDP program: {0} (verifier: {1})")]
    Verifier(std::io::Error, String),
    /// Setting up an AF_XDP socket failed.
    #[error("AF_XDP socket: {0}: {1}")]
    Socket(&'static str, std::io::Error),
}

/// The index of the interface `name`.
pub fn ifindex(name: &str) -> Result<u32, XdpError> {
    let c = std::ffi::CString::new(name).map_err(|_| XdpError::NoInterface(name.to_owned()))?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(XdpError::NoInterface(name.to_owned())),
        i => Ok(i),
    }
}

/// How many receive queues the interface `name` has (one socket each).
pub fn rx_queues(name: &str) -> u32 {
    let dir = format!("/sys/class/net/{name}/queues");
    let n = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count())
        .unwrap_or(1);
    n.max(1) as u32
}
