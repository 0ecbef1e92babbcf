//! Restarts without loss: `onedot serve --takeover` asks the running
//! onedot, over its control socket, for its listening sockets. The old
//! process writes its cache snapshot, sends a line naming each socket and
//! then the sockets themselves (SCM_RIGHTS, at most [`FDS_PER_MESSAGE`] a
//! message); the new one adopts them (`doors::inherit`), loads the
//! snapshot, starts every door, and says `ready`. Only then does the old
//! one stop reading and accepting, finish what it has in flight, and exit
//! 0. Both read the same sockets for a moment, so a datagram waiting in a
//! queue is answered by one of them: none is lost. When the new process
//! fails before `ready`, the old one serves on.

use std::io::{IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use serde_json::{Value, json};

/// Descriptors sent with one message (the kernel takes at most 253).
const FDS_PER_MESSAGE: usize = 64;

/// How long the old process waits for its successor's `ready`.
const READY_WAIT: Duration = Duration::from_secs(120);

/// The old process's side, on the connection that asked `takeover`: sends
/// the header line and the sockets, then waits for `ready`. Returns
/// whether the successor took over. Blocking.
pub fn give(stream: std::os::unix::net::UnixStream, snapshot: Option<&Path>) -> anyhow::Result<bool> {
    use std::io::BufRead;
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let served = doors::inherit::served();
    let sockets: Vec<Value> =
        served.iter().map(|(kind, addr, _)| json!({ "kind": kind.as_str(), "addr": addr.to_string() })).collect();
    let header = json!({ "ok": true, "result": {
        "pid": std::process::id(),
        "sockets": sockets,
        "snapshot": snapshot.map(|p| p.display().to_string()),
    }});
    let mut line = serde_json::to_vec(&header)?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    for chunk in served.chunks(FDS_PER_MESSAGE) {
        let fds: Vec<_> = chunk.iter().map(|(_, _, fd)| fd.as_fd()).collect();
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            anyhow::bail!("cannot attach {} sockets to one message", fds.len());
        }
        rustix::net::sendmsg(&stream, &[IoSlice::new(b"\0")], &mut control, SendFlags::empty())
            .context("sending the sockets")?;
    }
    drop(served);
    stream.set_read_timeout(Some(READY_WAIT))?;
    let mut reply = String::new();
    std::io::BufReader::new(&stream).read_line(&mut reply)?;
    Ok(reply.trim() == "ready")
}

/// The new process's hold on the old one, until it says `ready`.
pub struct Predecessor {
    stream: std::os::unix::net::UnixStream,
    /// The old process's id.
    pub pid: u32,
    /// The snapshot it wrote for us, if any.
    pub snapshot: Option<PathBuf>,
    /// The sockets adopted.
    pub sockets: Vec<(doors::inherit::Kind, SocketAddr)>,
}

impl Predecessor {
    /// Tells the old process that every door is up: it stops serving.
    pub fn ready(mut self) -> anyhow::Result<()> {
        self.stream.write_all(b"ready\n").context("telling the old process to stop")?;
        Ok(())
    }
}

/// Asks the onedot serving `socket` for its sockets and adopts them.
/// Blocking; run before the doors start.
pub fn take_over(socket: &Path) -> anyhow::Result<Predecessor> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!("--takeover: cannot reach the running onedot's control socket {}", socket.display())
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.write_all(b"{\"cmd\":\"takeover\",\"args\":[]}\n")?;
    let mut bytes = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut header: Option<Value> = None;
    loop {
        if let Some(h) = &header {
            let want = h["result"]["sockets"].as_array().map_or(0, Vec::len);
            if fds.len() >= want {
                break;
            }
        }
        let mut buf = [0u8; 4096];
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(FDS_PER_MESSAGE))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got =
            rustix::net::recvmsg(&stream, &mut [IoSliceMut::new(&mut buf)], &mut control, RecvFlags::CMSG_CLOEXEC)
                .context("--takeover: reading the old process's sockets")?;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = msg {
                fds.extend(received);
            }
        }
        if got.bytes == 0 {
            anyhow::bail!("--takeover: the old process closed the connection before sending its sockets");
        }
        bytes.extend_from_slice(&buf[..got.bytes]);
        if header.is_none()
            && let Some(end) = bytes.iter().position(|&b| b == b'\n')
        {
            let h: Value = serde_json::from_slice(&bytes[..end]).context("--takeover: the old process's answer")?;
            if h["ok"] != json!(true) {
                anyhow::bail!("--takeover refused: {}", h["error"].as_str().unwrap_or("no reason given"));
            }
            header = Some(h);
        }
    }
    let header = header.unwrap_or_default();
    let result = &header["result"];
    let described = result["sockets"].as_array().cloned().unwrap_or_default();
    let mut sockets = Vec::new();
    for (fd, d) in fds.into_iter().zip(&described) {
        let (kind, addr) = doors::inherit::adopt(fd).context("--takeover: a socket from the old process")?;
        let said = (d["kind"].as_str().and_then(doors::inherit::Kind::parse), d["addr"].as_str());
        if said != (Some(kind), Some(addr.to_string().as_str())) {
            anyhow::bail!("--takeover: the old process said {d} but sent a {} socket on {addr}", kind.as_str());
        }
        sockets.push((kind, addr));
    }
    Ok(Predecessor {
        stream,
        pid: result["pid"].as_u64().unwrap_or(0) as u32,
        snapshot: result["snapshot"].as_str().map(PathBuf::from),
        sockets,
    })
}
