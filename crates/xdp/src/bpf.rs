//! The XDP program and its map, loaded and attached with the bpf(2) system
//! call: no libbpf, no compiler for the BPF target at build time.
//!
//! The program is 40 instructions, assembled here. It looks at each frame
//! arriving on the interface; an IPv4 (no options, not a fragment) or IPv6
//! (no extension header) UDP datagram to the resolver's port is redirected
//! to the AF_XDP socket of the receive queue it came in on, through an
//! XSKMAP; everything else — and such a datagram on a queue with no socket
//! — passes to the kernel's stack untouched.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::XdpError;

/// Where the XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In the driver (veth and most 10G+ NICs), before an skb is built.
    Native,
    /// After the kernel built an skb: works on any interface, slower.
    Generic,
}

// bpf(2) commands, map and program types, attach type and XDP flags
// (linux/bpf.h, linux/if_link.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;

/// `union bpf_attr`, as bytes: every command's fields are at fixed offsets
/// and the kernel wants what it does not read zeroed.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

/// bpf(`cmd`, `attr`): the descriptor or value it returns.
fn bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<i32> {
    // SAFETY: `attr` is a valid, writable 128-byte `bpf_attr` for the call's
    // duration, and its size is passed; every pointer stored in it (program,
    // licence, log, key, value) points to memory the caller keeps alive
    // across this call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len() as libc::c_uint) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r as i32) }
}

/// Takes ownership of a descriptor bpf(2) returned.
fn owned(fd: i32) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that
    // nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A BPF instruction (`struct bpf_insn`), little-endian as the kernel
/// reads it on every architecture we build for.
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

// Opcodes used below.
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const AND64_K: u8 = 0x57;
const JA: u8 = 0x05;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JGT_X: u8 = 0x2d;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;

/// Jump targets, resolved when the program is finished.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    V4,
    V6,
    Redirect,
    Pass,
}

struct Asm {
    insns: Vec<Insn>,
    fixups: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn op(&mut self, i: Insn) {
        self.insns.push(i);
    }
    /// A jump to `to`, patched by `finish`.
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.insns.push(insn(code, dst, src, 0, imm));
    }
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.insns.len()));
    }
    fn finish(mut self) -> Vec<u8> {
        for &(at, to) in &self.fixups {
            let target = self.labels.iter().find(|(l, _)| *l == to).map_or(at + 1, |&(_, i)| i);
            self.insns[at].off = (target as isize - at as isize - 1) as i16;
        }
        let mut out = Vec::with_capacity(self.insns.len() * 8);
        for i in &self.insns {
            out.push(i.code);
            out.push(i.regs);
            out.extend_from_slice(&i.off.to_le_bytes());
            out.extend_from_slice(&i.imm.to_le_bytes());
        }
        out
    }
}

/// The program's instructions for UDP port `port`, redirecting through the
/// XSKMAP `map_fd`.
pub(crate) fn program(port: u16, map_fd: i32) -> Vec<u8> {
    // A 16-bit load reads network order bytes as a little-endian number.
    let port = i32::from(port.swap_bytes());
    let (r0, r1, r2, r3, r4, r5, r6) = (0, 1, 2, 3, 4, 5, 6);
    let mut a = Asm { insns: Vec::new(), fixups: Vec::new(), labels: Vec::new() };
    a.op(insn(MOV64_X, r6, r1, 0, 0)); // r6 = ctx
    a.op(insn(LDX_W, r2, r1, 0, 0)); // r2 = data
    a.op(insn(LDX_W, r3, r1, 4, 0)); // r3 = data_end
    a.op(insn(MOV64_X, r4, r2, 0, 0));
    a.op(insn(ADD64_K, r4, 0, 0, 14));
    a.jump(JGT_X, r4, r3, 0, Label::Pass); // no Ethernet header
    a.op(insn(LDX_H, r5, r2, 12, 0)); // EtherType
    a.jump(JEQ_K, r5, 0, 0x0008, Label::V4);
    a.jump(JEQ_K, r5, 0, 0xdd86, Label::V6);
    a.jump(JA, 0, 0, 0, Label::Pass);

    a.label(Label::V4);
    a.op(insn(MOV64_X, r4, r2, 0, 0));
    a.op(insn(ADD64_K, r4, 0, 0, 14 + 20 + 8));
    a.jump(JGT_X, r4, r3, 0, Label::Pass);
    a.op(insn(LDX_B, r5, r2, 14, 0));
    a.jump(JNE_K, r5, 0, 0x45, Label::Pass); // IPv4 without options
    a.op(insn(LDX_B, r5, r2, 14 + 9, 0));
    a.jump(JNE_K, r5, 0, 17, Label::Pass); // UDP
    a.op(insn(LDX_H, r5, r2, 14 + 6, 0));
    a.op(insn(AND64_K, r5, 0, 0, 0xff3f)); // more-fragments or an offset
    a.jump(JNE_K, r5, 0, 0, Label::Pass);
    a.op(insn(LDX_H, r5, r2, 14 + 20 + 2, 0));
    a.jump(JNE_K, r5, 0, port, Label::Pass);
    a.jump(JA, 0, 0, 0, Label::Redirect);

    a.label(Label::V6);
    a.op(insn(MOV64_X, r4, r2, 0, 0));
    a.op(insn(ADD64_K, r4, 0, 0, 14 + 40 + 8));
    a.jump(JGT_X, r4, r3, 0, Label::Pass);
    a.op(insn(LDX_B, r5, r2, 14 + 6, 0));
    a.jump(JNE_K, r5, 0, 17, Label::Pass); // UDP, no extension header
    a.op(insn(LDX_H, r5, r2, 14 + 40 + 2, 0));
    a.jump(JNE_K, r5, 0, port, Label::Pass);

    a.label(Label::Redirect);
    a.op(insn(LDX_W, r2, r6, 16, 0)); // rx_queue_index
    a.op(insn(LD_IMM64, r1, PSEUDO_MAP_FD, 0, map_fd));
    a.op(insn(0, 0, 0, 0, 0));
    a.op(insn(MOV64_K, r3, 0, 0, XDP_PASS)); // no socket on the queue: pass
    a.op(insn(CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP));
    a.op(insn(EXIT, 0, 0, 0, 0));

    a.label(Label::Pass);
    a.op(insn(MOV64_K, r0, 0, 0, XDP_PASS));
    a.op(insn(EXIT, 0, 0, 0, 0));
    a.finish()
}

/// The program attached to an interface, its XSKMAP, and the link that
/// holds it there: dropping it detaches the program (the link is not
/// pinned, so a crash detaches it too).
#[derive(Debug)]
pub struct Steering {
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
    /// The interface's index.
    pub ifindex: u32,
    /// Where the program runs.
    pub mode: Mode,
}

impl Steering {
    /// Loads the program for UDP `port` and attaches it to `ifindex`, in
    /// `mode` (native first, then generic, when `None`), with room for
    /// `queues` sockets.
    pub fn attach(ifindex: u32, port: u16, queues: u32, mode: Option<Mode>) -> Result<Steering, XdpError> {
        let mut attr = Attr::new();
        attr.u32(0, BPF_MAP_TYPE_XSKMAP).u32(4, 4).u32(8, 4).u32(12, queues.max(1));
        let map = owned(bpf(BPF_MAP_CREATE, &mut attr).map_err(|e| XdpError::Bpf("creating the XSKMAP", e))?);
        let prog = load(&program(port, map.as_raw_fd()))?;
        let modes: &[Mode] = match mode {
            Some(Mode::Native) => &[Mode::Native],
            Some(Mode::Generic) => &[Mode::Generic],
            None => &[Mode::Native, Mode::Generic],
        };
        let mut last = None;
        for &m in modes {
            let flags = match m {
                Mode::Native => XDP_FLAGS_DRV_MODE,
                Mode::Generic => XDP_FLAGS_SKB_MODE,
            };
            let mut attr = Attr::new();
            attr.u32(0, prog.as_raw_fd() as u32).u32(4, ifindex).u32(8, BPF_XDP).u32(12, flags);
            match bpf(BPF_LINK_CREATE, &mut attr) {
                Ok(fd) => return Ok(Steering { map, _prog: prog, _link: owned(fd), ifindex, mode: m }),
                Err(e) => last = Some(e),
            }
        }
        Err(XdpError::Bpf(
            "attaching the XDP program",
            last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::Unsupported)),
        ))
    }

    /// Steers `queue`'s datagrams to the AF_XDP socket `fd`.
    pub(crate) fn insert(&self, queue: u32, fd: i32) -> Result<(), XdpError> {
        let (key, value) = (queue, fd as u32);
        let mut attr = Attr::new();
        attr.u32(0, self.map.as_raw_fd() as u32)
            .u64(8, std::ptr::from_ref(&key) as u64)
            .u64(16, std::ptr::from_ref(&value) as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map_err(|e| XdpError::Bpf("adding a socket to the XSKMAP", e))?;
        Ok(())
    }
}

/// Loads an XDP program; on failure, loads it again with the verifier's
/// log and returns its last lines in the error.
fn load(prog: &[u8]) -> Result<OwnedFd, XdpError> {
    let license = c"GPL";
    let name = b"onedot_do53\0";
    let try_load = |log: Option<&mut Vec<u8>>| {
        let mut attr = Attr::new();
        attr.u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, (prog.len() / 8) as u32)
            .u64(8, prog.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(68, BPF_XDP);
        attr.0[48..48 + name.len()].copy_from_slice(name);
        if let Some(log) = log {
            attr.u32(24, 1).u32(28, log.len() as u32).u64(32, log.as_mut_ptr() as u64);
        }
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    match try_load(None) {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => {
            let mut log = vec![0u8; 1 << 16];
            let _ = try_load(Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = text.lines().rev().take(4).collect();
            Err(XdpError::Verifier(e, tail.into_iter().rev().collect::<Vec<_>>().join(" / ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        let p = program(53, 7);
        assert_eq!(p.len() % 8, 0);
        let n = p.len() / 8;
        // Every jump's target is inside the program, and the last two
        // instructions are `r0 = XDP_PASS; exit`.
        for i in 0..n {
            let code = p[i * 8];
            if matches!(code, JA | JEQ_K | JNE_K | JGT_X) {
                let off = i16::from_le_bytes([p[i * 8 + 2], p[i * 8 + 3]]);
                let target = i as isize + 1 + off as isize;
                assert!(target > i as isize && (target as usize) < n, "jump at {i} to {target}");
            }
        }
        assert_eq!(p[(n - 2) * 8], MOV64_K);
        assert_eq!(p[(n - 1) * 8], EXIT);
        // The port is compared in network order: 53 reads as 0x3500.
        assert!(p.chunks(8).any(|c| c[0] == JNE_K && i32::from_le_bytes([c[4], c[5], c[6], c[7]]) == 0x3500));
    }
}
