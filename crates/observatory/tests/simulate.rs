//! The detector on the simulator: a month with four injected events (a
//! six-hour national shutdown, a forty-minute route hijack of one
//! network, a two-day censorship surge, a two-hour TLD outage) and a quiet
//! month, through the real aggregation, store and detector on a simulated
//! clock. Every event must be found with its start and end within 15
//! minutes, and the quiet month must give none.

#![allow(missing_docs)]

use observatory::simulate::{self, START};

const DAYS: u64 = 30;

#[test]
fn every_injected_event_is_found_and_a_quiet_month_gives_none() {
    let dir = std::env::temp_dir().join(format!("onedot-sim-{}", std::process::id()));
    let truth = simulate::month_events(START);
    let r = simulate::month(&dir.join("events"), START, DAYS, &truth, 7).expect("month with events");
    eprintln!(
        "{} minutes in {:.1} s, judged in {:.1} s; {} minute rows, {} bytes",
        r.minutes, r.simulate_s, r.detect_s, r.minute_rows, r.file_bytes
    );
    for e in &r.events {
        eprintln!("{e:?}");
    }
    eprintln!("per event (start error, end error, delay in s): {:?}", r.score.per_event);
    assert_eq!(r.minutes, DAYS * 1440);
    assert_eq!(r.score.found, truth.len(), "missed: {:?}", r.score.per_event);
    assert_eq!(r.score.false_events, 0, "{:#?}", r.events);
    assert_eq!(r.events.len(), truth.len(), "one report per event: {:#?}", r.events);

    let quiet = simulate::month(&dir.join("quiet"), START + DAYS * 86_400, DAYS, &[], 11).expect("quiet month");
    assert!(quiet.events.is_empty(), "{:#?}", quiet.events);
    let _ = std::fs::remove_dir_all(&dir);
}
