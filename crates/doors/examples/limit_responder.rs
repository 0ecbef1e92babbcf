//! The ceiling of the machine for `bench/run.sh`: a UDP responder with the
//! same socket strategy as onedot (one SO_REUSEPORT socket per worker, the
//! answer written synchronously on the receive loop) that answers every
//! query with a canned reply: the question echoed, one A record. Whatever
//! onedot does beyond this is the cost of being a resolver.
//!
//!     cargo run --release -p doors --example limit_responder -- 127.0.0.1:5499 [WORKERS]

use std::sync::Arc;

use doors::{BoxFuture, Client, Fast, Handler, InFlight};

struct Canned;

impl Handler for Canned {
    fn try_fast(&self, query: &[u8], _: Client, out: &mut Vec<u8>) -> Fast {
        // Header, the question as asked, one A record pointing at it.
        let Some(qend) = question_end(query) else { return Fast::Drop };
        out.clear();
        out.extend_from_slice(&query[..qend]);
        out[2] = 0x84 | (query[2] & 0x01); // QR, AA, RD as asked
        out[3] = 0x80; // RA, NOERROR
        out[4..12].copy_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0]);
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1]);
        Fast::Answered(out.len())
    }

    fn answer<'a>(&'a self, _: &'a [u8], _: Client, _: &'a mut Vec<u8>) -> BoxFuture<'a, Option<usize>> {
        Box::pin(async { None })
    }
}

/// The end of the question section (one question, uncompressed name).
fn question_end(q: &[u8]) -> Option<usize> {
    let mut pos = 12;
    loop {
        let len = *q.get(pos)? as usize;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        pos += 1 + len;
    }
    let end = pos + 1 + 4;
    (end <= q.len()).then_some(end)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().and_then(|a| a.parse().ok()).unwrap_or_else(|| "127.0.0.1:5499".parse().expect("addr"));
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(1);
    // The same runtime shape as `onedot serve` with `workers` workers.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        let bound = doors::serve_udp(addr, workers, Arc::new(Canned), InFlight::default(), &mut tasks).expect("bind");
        println!("limit responder on {bound}");
        let _ = tokio::signal::ctrl_c().await;
    });
}
