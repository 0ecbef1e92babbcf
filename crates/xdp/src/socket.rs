//! An AF_XDP socket bound to one receive queue, with packet memory (the
//! UMEM) of its own and its four rings.
//!
//! Every frame is always in exactly one place: the fill ring (lent to the
//! kernel for receiving), the receive ring (received, ours to read), our
//! hands during a batch, the transmit ring (an answer being sent) or the
//! completion ring (sent, to go back to the fill ring). The fill ring has
//! room for every frame, so giving one back never fails; an answer that
//! finds the transmit ring full is dropped and its frame given back.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::XdpError;
use crate::bpf::{Mode, Steering};

/// Bytes per frame: an answer of up to 4096 - 256 (the kernel's headroom)
/// - 62 (Ethernet, IPv6, UDP) bytes fits in the frame it came in.
const FRAME: u32 = 4096;
/// Frames per socket (8 MiB), and the size of each ring.
const FRAMES: u32 = 2048;
/// The most `sendto` kicks per batch (the kernel sends 32 frames a kick in
/// copy mode).
const KICKS: usize = 16;

/// Memory from mmap(2), unmapped on drop.
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    /// Maps `len` bytes: anonymous memory when `fd` is `None`, else the
    /// ring of `fd` at `offset`.
    fn map(len: usize, fd: Option<i32>, offset: u64) -> Result<Region, XdpError> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE, -1),
        };
        // SAFETY: a new mapping chosen by the kernel (address hint null);
        // nothing else refers to it. Failure is checked below.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, fd, offset as libc::off_t)
        };
        if ptr == libc::MAP_FAILED {
            return Err(XdpError::Socket("mapping memory", std::io::Error::last_os_error()));
        }
        Ok(Region { ptr: ptr.cast(), len })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are the mapping made in `map`, unmapped
        // only here, and nothing borrowed from it outlives the region.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// One of the socket's shared rings of `T` (a frame address for the fill
/// and completion rings, an `xdp_desc` for the receive and transmit ones).
struct Ring<T> {
    _region: Region,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut T,
    mask: u32,
    /// Our copy of the index we advance (the producer's for the fill and
    /// transmit rings, the consumer's for the others), and of the other.
    prod: u32,
    cons: u32,
}

impl<T: Copy> Ring<T> {
    fn map(fd: i32, off: &libc::xdp_ring_offset, size: u32, pgoff: u64) -> Result<Ring<T>, XdpError> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let region = Region::map(len, Some(fd), pgoff)?;
        let at = |o: u64| region.ptr.wrapping_add(o as usize);
        let (producer, consumer, flags, desc) =
            (at(off.producer).cast(), at(off.consumer).cast(), at(off.flags).cast(), at(off.desc).cast());
        let mut ring = Ring { _region: region, producer, consumer, flags, desc, mask: size - 1, prod: 0, cons: 0 };
        ring.prod = ring.load_producer();
        ring.cons = ring.load_consumer();
        Ok(ring)
    }

    fn load_producer(&self) -> u32 {
        // SAFETY: `producer` points into the ring's mapping, 4-byte aligned
        // (the kernel's offsets), alive as long as `self`; the kernel writes
        // it concurrently, hence the atomic.
        unsafe { (*self.producer).load(Ordering::Acquire) }
    }

    fn load_consumer(&self) -> u32 {
        // SAFETY: as in `load_producer`.
        unsafe { (*self.consumer).load(Ordering::Acquire) }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as in `load_producer`.
        unsafe { (*self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0 }
    }

    /// Entries the kernel produced that we have not consumed.
    fn available(&mut self) -> u32 {
        self.prod = self.load_producer();
        self.prod.wrapping_sub(self.cons)
    }

    /// The `i`th entry not yet consumed (`i` below `available`).
    fn read(&self, i: u32) -> T {
        let slot = (self.cons.wrapping_add(i) & self.mask) as usize;
        // SAFETY: `slot` is within the ring's `mask + 1` entries, in the
        // mapping; the kernel wrote the entry before publishing `producer`,
        // which `available` read with Acquire.
        unsafe { self.desc.add(slot).read() }
    }

    /// Gives `n` read entries back to the kernel.
    fn release(&mut self, n: u32) {
        self.cons = self.cons.wrapping_add(n);
        // SAFETY: as in `load_producer`; we own the consumer index.
        unsafe { (*self.consumer).store(self.cons, Ordering::Release) };
    }

    /// Room for entries we may produce.
    fn free(&mut self) -> u32 {
        self.cons = self.load_consumer();
        (self.mask + 1) - self.prod.wrapping_sub(self.cons)
    }

    /// Writes the `i`th entry past those published (`i` below `free`).
    fn write(&mut self, i: u32, v: T) {
        let slot = (self.prod.wrapping_add(i) & self.mask) as usize;
        // SAFETY: `slot` is within the ring; the kernel does not read it
        // until `submit` publishes it.
        unsafe { self.desc.add(slot).write(v) };
    }

    /// Publishes `n` written entries.
    fn submit(&mut self, n: u32) {
        self.prod = self.prod.wrapping_add(n);
        // SAFETY: as in `load_producer`; we own the producer index. Release
        // orders the entries' writes before it.
        unsafe { (*self.producer).store(self.prod, Ordering::Release) };
    }
}

/// What one socket has done, counted by the kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelStats {
    /// Frames dropped for any reason.
    pub rx_dropped: u64,
    /// Frames dropped because the receive ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was found empty.
    pub fill_ring_empty: u64,
}

/// An AF_XDP socket on one queue of an interface.
pub struct Socket {
    // Field order is drop order: the socket closes (the kernel lets go of
    // the UMEM) before the rings and the memory are unmapped.
    fd: OwnedFd,
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    umem: Region,
}

// SAFETY: the socket owns its mappings and descriptor; the raw pointers are
// into memory only it (and the kernel) touches, so moving it to another
// thread is sound. It is not `Sync`: the rings assume one user.
unsafe impl Send for Socket {}

fn setsockopt<T>(fd: i32, name: i32, v: &T, what: &'static str) -> Result<(), XdpError> {
    // SAFETY: `v` is a valid `T` for the call, and its size is passed.
    let r = unsafe {
        libc::setsockopt(fd, libc::SOL_XDP, name, std::ptr::from_ref(v).cast(), std::mem::size_of::<T>() as u32)
    };
    if r < 0 { Err(XdpError::Socket(what, std::io::Error::last_os_error())) } else { Ok(()) }
}

fn getsockopt<T: Copy>(fd: i32, name: i32, v: &mut T, what: &'static str) -> Result<(), XdpError> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` is writable for `len` bytes, and `len` says so.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_XDP, name, std::ptr::from_mut(v).cast(), &mut len) };
    if r < 0 { Err(XdpError::Socket(what, std::io::Error::last_os_error())) } else { Ok(()) }
}

impl Socket {
    /// Opens a socket on `queue` of the interface `steering` is attached
    /// to, and steers that queue's datagrams to it.
    pub fn open(steering: &Steering, queue: u32) -> Result<Socket, XdpError> {
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(XdpError::Socket("creating an AF_XDP socket", std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Region::map((FRAME * FRAMES) as usize, None, 0)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr as u64,
            len: umem.len as u64,
            chunk_size: FRAME,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &reg, "registering packet memory")?;
        for ring in [libc::XDP_UMEM_FILL_RING, libc::XDP_UMEM_COMPLETION_RING, libc::XDP_RX_RING, libc::XDP_TX_RING] {
            setsockopt(raw, ring, &FRAMES, "sizing a ring")?;
        }
        // SAFETY: an all-zero `xdp_mmap_offsets` (plain integers) is valid.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        getsockopt(raw, libc::XDP_MMAP_OFFSETS, &mut off, "reading the ring offsets")?;
        let mut fill = Ring::map(raw, &off.fr, FRAMES, libc::XDP_UMEM_PGOFF_FILL_RING)?;
        let comp = Ring::map(raw, &off.cr, FRAMES, libc::XDP_UMEM_PGOFF_COMPLETION_RING)?;
        let rx = Ring::map(raw, &off.rx, FRAMES, libc::XDP_PGOFF_RX_RING as u64)?;
        let tx = Ring::map(raw, &off.tx, FRAMES, libc::XDP_PGOFF_TX_RING as u64)?;
        // Every frame is lent to the kernel to receive into.
        let n = fill.free().min(FRAMES);
        for i in 0..n {
            fill.write(i, u64::from(i * FRAME));
        }
        fill.submit(n);
        let flags = libc::XDP_USE_NEED_WAKEUP | if steering.mode == Mode::Generic { libc::XDP_COPY } else { 0 };
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: steering.ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sa` is a valid `sockaddr_xdp` and its size is passed.
        let r = unsafe {
            libc::bind(
                raw,
                std::ptr::from_ref(&sa).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(XdpError::Socket("binding to the queue", std::io::Error::last_os_error()));
        }
        steering.insert(queue, raw)?;
        Ok(Socket { fd, fill, comp, rx, tx, umem })
    }

    /// Waits up to `timeout_ms` for a frame to arrive (or a signal).
    pub fn wait(&self, timeout_ms: i32) {
        let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, count 1.
        unsafe { libc::poll(&mut p, 1, timeout_ms) };
    }

    /// Handles up to `max` received frames. `answer` gets each frame's
    /// memory (from the packet's first byte to the frame's end) and the
    /// packet's length; it rewrites the packet in place and returns the
    /// new length to send it back out, or `None` to let the frame go.
    /// Returns how many frames were received.
    pub fn serve(&mut self, max: u32, mut answer: impl FnMut(&mut [u8], usize) -> Option<usize>) -> u32 {
        self.reclaim();
        let n = self.rx.available().min(max);
        if n == 0 {
            self.kick();
            return 0;
        }
        let room = self.tx.free();
        let (mut sent, mut given) = (0, 0);
        for i in 0..n {
            let desc = self.rx.read(i);
            let reply = match self.frame(desc.addr) {
                Some(frame) if (desc.len as usize) <= frame.len() => answer(frame, desc.len as usize),
                _ => None,
            };
            match reply {
                Some(len) if sent < room => {
                    self.tx.write(sent, libc::xdp_desc { addr: desc.addr, len: len as u32, options: 0 });
                    sent += 1;
                }
                _ => {
                    self.fill.write(given, desc.addr);
                    given += 1;
                }
            }
        }
        self.rx.release(n);
        self.fill.submit(given);
        self.tx.submit(sent);
        self.kick();
        n
    }

    /// The memory of the frame holding `addr`, from `addr` to its end.
    fn frame(&mut self, addr: u64) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        let end = (start / FRAME as usize + 1) * FRAME as usize;
        if end > self.umem.len {
            return None;
        }
        // SAFETY: `start..end` lies within the UMEM mapping (checked above)
        // and inside one frame, which the kernel handed us through the
        // receive ring and does not touch until we give it back; `&mut
        // self` makes this the only reference to it.
        Some(unsafe { std::slice::from_raw_parts_mut(self.umem.ptr.add(start), end - start) })
    }

    /// Moves sent frames from the completion ring back to the fill ring.
    fn reclaim(&mut self) {
        let n = self.comp.available();
        for i in 0..n {
            let addr = self.comp.read(i);
            self.fill.write(i, addr);
        }
        self.comp.release(n);
        self.fill.submit(n);
    }

    /// Tells the kernel to send what the transmit ring holds (in copy mode
    /// it sends 32 frames a call).
    fn kick(&mut self) {
        for _ in 0..KICKS {
            if self.tx.load_consumer() == self.tx.prod || !self.tx.needs_wakeup() {
                return;
            }
            // SAFETY: sendto with no buffer and no address: the AF_XDP
            // "send what is queued" call.
            let r = unsafe {
                libc::sendto(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
            };
            if r < 0 {
                let e = std::io::Error::last_os_error().raw_os_error();
                if !matches!(e, Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR)) {
                    return;
                }
            }
        }
    }

    /// Whether answers wait in the transmit ring for the kernel.
    pub fn sending(&self) -> bool {
        self.tx.load_consumer() != self.tx.prod
    }

    /// The kernel's counters for this socket.
    pub fn stats(&self) -> KernelStats {
        // SAFETY: an all-zero `xdp_statistics` (plain integers) is valid.
        let mut s: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        if getsockopt(self.fd.as_raw_fd(), libc::XDP_STATISTICS, &mut s, "").is_err() {
            return KernelStats::default();
        }
        KernelStats {
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            fill_ring_empty: s.rx_fill_ring_empty_descs,
        }
    }
}
