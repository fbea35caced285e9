//! Single scenarios for callgrind: the setup runs uninstrumented, only the
//! measured region is counted (see [`crate::callgrind`]). Each prints
//! `callgrind-ops <n>`: the number of operations the region performed, so
//! that `Ir / n` is the instruction count per operation.

use crate::callgrind::Region;
use crate::fixtures::{hash_of, payload, BrokerBench, BACKLOG_ACK_TIMEOUT_SECS};
use crate::floor::Floor;
use crate::naive::Naive;
use crate::scenarios::{BACKLOG_PAYLOAD, LIFECYCLE_SIZES, SCALING_BATCH};
use async_flow_broker::core::Unlimited;

/// Scenario names, one per measured region.
pub const SCENARIOS: [&str; 14] = [
    "lifecycle-broker-100B",
    "lifecycle-floor-100B",
    "lifecycle-broker-1KiB",
    "lifecycle-floor-1KiB",
    "lifecycle-broker-64KiB",
    "lifecycle-floor-64KiB",
    "scaling-1k",
    "scaling-100k",
    "scaling-1M",
    "timer-idle-broker-100k",
    "timer-idle-naive-100k",
    "timer-idle-broker-1M",
    "timer-idle-naive-1M",
    "noop",
];

fn count(label: &str) -> Option<usize> {
    match label {
        "1k" => Some(1_000),
        "100k" => Some(100_000),
        "1M" => Some(1_000_000),
        _ => None,
    }
}

/// Runs `name`; returns the operations counted, or `None` for an unknown name.
pub fn run(name: &str) -> Option<usize> {
    let parts: Vec<&str> = name.split('-').collect();
    let ops = match parts.as_slice() {
        ["noop"] => {
            let _region = Region::start();
            1
        }
        ["lifecycle", who, label] => {
            let &(_, size, batch) = LIFECYCLE_SIZES.iter().find(|(l, _, _)| l == label)?;
            let n = batch / 2;
            let p = payload(size);
            let hash = hash_of(&p);
            let mut b = BrokerBench::new();
            match *who {
                "broker" => {
                    let inputs = b.inputs(n, &p, None);
                    b.lifecycle(inputs, hash);
                    let inputs = b.inputs(n, &p, None);
                    let _region = Region::start();
                    b.lifecycle(inputs, hash);
                }
                "floor" => {
                    let mut f = Floor::new();
                    let make = |p: &[u8]| {
                        (0..n as u32)
                            .map(|i| (crate::fixtures::sender(i), crate::fixtures::target(i), p.to_vec()))
                            .collect::<Vec<_>>()
                    };
                    f.lifecycle(make(&p), b.now);
                    let inputs = make(&p);
                    let _region = Region::start();
                    f.lifecycle(inputs, b.now);
                }
                _ => return None,
            }
            n
        }
        ["scaling", label] => {
            let n = count(label)?;
            let p = payload(BACKLOG_PAYLOAD);
            let hash = hash_of(&p);
            let mut b = BrokerBench::new();
            b.add_backlog(n, &p, BACKLOG_ACK_TIMEOUT_SECS);
            let inputs = b.inputs(SCALING_BATCH, &p, None);
            b.lifecycle(inputs, hash);
            let inputs = b.inputs(SCALING_BATCH, &p, None);
            let _region = Region::start();
            b.lifecycle(inputs, hash);
            SCALING_BATCH
        }
        ["timer", "idle", who, label] => {
            let n = count(label)?;
            let p = payload(BACKLOG_PAYLOAD);
            let mut b = BrokerBench::new();
            match *who {
                "broker" => {
                    b.add_backlog(n, &p, BACKLOG_ACK_TIMEOUT_SECS);
                    let runs = 1000;
                    let now = b.now;
                    let _region = Region::start();
                    for _ in 0..runs {
                        assert!(b.broker.on_timer(now, &Unlimited).is_empty());
                    }
                    runs
                }
                "naive" => {
                    // The naive store holds records like the broker's: one real
                    // record as a template, copied under n ids.
                    let ids = b.add_backlog(1, &p, BACKLOG_ACK_TIMEOUT_SECS);
                    let template = b.broker.record(ids[0]).expect("record");
                    let mut naive = Naive::new();
                    for i in 0..n as u128 {
                        let mut rec = template.clone();
                        rec.target = crate::fixtures::target(i as u32);
                        naive.insert(async_flow_client::MsgId(ids[0].0 + i), rec, p.clone());
                    }
                    let now = b.now;
                    let _region = Region::start();
                    assert!(naive.tick(now).is_empty());
                    1
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(ops)
}
