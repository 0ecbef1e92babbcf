//! Arbitrary and mutated client queries through the whole service, and
//! arbitrary bytes into the lab's authoritative decoder: always a valid DNS
//! answer or nothing, never a panic or a hang.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proto::{Message, Name, build::build_query};
use recursor::{Service, ServiceConfig, SystemClock, TransportKind};

fn base_query() -> Vec<u8> {
    let mut q = Vec::new();
    let name = Name::from_ascii("www.example.test").expect("name");
    build_query(&mut q, 9, name.as_wire(), 1, true, Some(1232), false);
    q
}

#[test]
fn mutated_client_queries_get_an_answer_or_nothing() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (lab, service) = rt.block_on(async {
        let (lab, r) = crate::setup().await;
        (lab, Service::new(r, ServiceConfig::default(), Arc::new(SystemClock)))
    });
    let data = lab.data().clone();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(400));
    let strategy = (proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6), any::<usize>(), any::<bool>());
    runner
        .run(&strategy, |(flips, cut, stream)| {
            let mut q = base_query();
            for (at, v) in flips {
                let i = at % q.len();
                q[i] = v;
            }
            q.truncate(cut % (q.len() + 1));
            let kind = if stream { TransportKind::Stream } else { TransportKind::Datagram };
            let mut out = Vec::new();
            let answered = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), service.answer(&q, kind, &mut out)).await
            });
            let answered = answered.expect("answers within the budget");
            if let Some(n) = answered {
                let msg = Message::parse(&out[..n]).expect("every response parses");
                prop_assert!(msg.has_flag(proto::flags::QR));
                if !stream {
                    prop_assert!(n <= 1232);
                }
            }
            let _ = lab::answer(&data, "127.53.0.1".parse().expect("ip"), &q, true);
            Ok(())
        })
        .expect("property holds");
    drop(lab);
}

static LAB: std::sync::OnceLock<lab::LabData> = std::sync::OnceLock::new();

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    #[test]
    fn lab_decoder_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let data = LAB.get_or_init(|| lab::LabData::builtin().expect("lab"));
        let _ = lab::answer(data, "127.53.2.1".parse().expect("ip"), &bytes, true);
    }
}
