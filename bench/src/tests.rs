use crate::fixtures::{hash_of, payload, BrokerBench, BACKLOG_ACK_TIMEOUT_SECS, NS};
use crate::floor::Floor;
use crate::naive::Naive;
use crate::scenarios::gc_baseline;
use crate::stable_usage::{usage, BROKER_MAPS};

#[test]
fn should_leave_broker_and_floor_empty_after_lifecycles() {
    let p = payload(100);
    let mut b = BrokerBench::new();
    let mut f = Floor::new();
    for _ in 0..3 {
        let inputs = b.inputs(50, &p, None);
        b.lifecycle(inputs, hash_of(&p));
        f.lifecycle(
            (0..50).map(|i| (crate::fixtures::sender(i), crate::fixtures::target(i), p.clone())).collect(),
            b.now,
        );
    }
    assert!(b.broker.is_empty());
    assert_eq!(b.broker.stats(b.now).totals.delivered, 150);
    assert!(f.map.is_empty());
}

#[test]
fn should_resend_the_same_due_messages_as_the_naive_scan() {
    let p = payload(100);
    let mut b = BrokerBench::new();
    let mut ids = b.add_backlog(30, &p, 60);
    ids.extend(b.add_backlog(70, &p, BACKLOG_ACK_TIMEOUT_SECS));
    let mut naive = Naive::new();
    for id in &ids {
        naive.insert(*id, b.broker.record(*id).unwrap(), p.clone());
    }
    let at = b.now + 61 * NS;
    assert!(naive.tick(b.now).is_empty());
    assert_eq!(naive.tick(at).len(), 30);
    assert_eq!(b.run_timers(at).0, 30);
    assert_eq!(b.broker.next_deadline(), naive.records.iter().filter_map(|e| e.value().deadline).min());
}

#[test]
fn should_count_chunks_in_use_and_return_to_the_baseline() {
    let b = BrokerBench::new();
    assert_eq!(usage(&b.memory, &BROKER_MAPS).in_use, 0);
    let r = gc_baseline(300);
    assert!(r.pending.in_use > 300 * 100, "in use {} for 300 payloads of 100 B", r.pending.in_use);
    assert!(r.empty_after_gc);
    assert_eq!(r.after_gc.in_use, r.baseline.in_use);
    assert_eq!(r.after_second_gc.in_use, r.baseline.in_use);
    assert_eq!(r.after_second_gc.pages, r.after_gc.pages);
}
