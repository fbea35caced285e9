use super::*;
use crate::AckAck;
use ic_stable_structures::memory_manager::MemoryId;
use ic_stable_structures::{DefaultMemoryImpl, VectorMemory};
use proptest::prelude::*;
use std::cell::Cell;

const SEC: u64 = 1_000_000_000;

fn broker() -> Principal {
    Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap()
}

fn other_broker() -> Principal {
    Principal::from_text("rrkah-fqaaa-aaaaa-aaaaq-cai").unwrap()
}

fn new(id: u128, payload: &[u8]) -> NewMessage {
    NewMessage { msg_id: MsgId(id), payload: payload.to_vec(), sender: Some(other_broker()), attempt: Some(1) }
}

fn fin(id: u128) -> AckAck {
    AckAck { msg_id: MsgId(id), hash: None }
}

fn open(memory: VectorMemory) -> ReceiverCore<VectorMemory> {
    ReceiverCore::open(memory, ReceiverConfig::for_brokers(vec![broker()]))
}

fn acks(effects: &[ReceiverEffect]) -> Vec<Ack> {
    effects.iter().map(|ReceiverEffect::SendAck { ack, .. }| ack.clone()).collect()
}

#[test]
fn should_run_the_handler_once_and_resend_the_same_ack_on_a_duplicate_new() {
    let mut core = open(VectorMemory::default());
    let runs = Cell::new(0);
    let handler = |d: &Delivery| {
        runs.set(runs.get() + 1);
        assert_eq!((d.broker, d.msg_id, d.sender), (broker(), MsgId(1), Some(other_broker())));
        [b"re: ".as_slice(), &d.payload].concat()
    };
    let first = core.on_new_message(broker(), new(1, b"hi"), 10, handler).unwrap();
    let expected = Ack { msg_id: MsgId(1), hash: Some(payload_hash(b"hi")), payload: b"re: hi".to_vec() };
    assert_eq!(first, vec![ReceiverEffect::SendAck { broker: broker(), ack: expected }]);
    for t in [11, 500 * SEC] {
        let again = core.on_new_message(broker(), new(1, b"hi"), t, handler).unwrap();
        assert_eq!(again, first);
    }
    assert_eq!(runs.get(), 1);
    assert_eq!(core.status(broker(), MsgId(1)), Some(ProcessedStatus::AwaitingFin { ack_resends: 0 }));
}

#[test]
fn should_reject_a_new_message_from_a_principal_that_is_not_an_allowed_broker() {
    let mut core = open(VectorMemory::default());
    for caller in [other_broker(), Principal::anonymous()] {
        let result = core.on_new_message(caller, new(1, b"x"), 0, |_| panic!("the handler must not run"));
        assert_eq!(result, Err(ReceiverError::UnknownBroker { caller }));
    }
    assert!(core.is_empty());
    // The spoofed NEW did not mark the id: the real broker's NEW still runs the handler.
    let runs = Cell::new(0);
    core.on_new_message(broker(), new(1, b"x"), 0, |_| {
        runs.set(runs.get() + 1);
        vec![]
    })
    .unwrap();
    assert_eq!(runs.get(), 1);
}

#[test]
fn should_reject_a_fin_from_a_principal_that_is_not_an_allowed_broker() {
    let mut core = open(VectorMemory::default());
    core.on_new_message(broker(), new(1, b"x"), 0, |_| b"reply".to_vec()).unwrap();
    assert_eq!(core.on_ackack(other_broker(), fin(1), 1), Err(ReceiverError::UnknownBroker { caller: other_broker() }));
    assert_eq!(core.status(broker(), MsgId(1)), Some(ProcessedStatus::AwaitingFin { ack_resends: 0 }));
    // The cached reply is intact.
    let again = core.on_new_message(broker(), new(1, b"x"), 2, |_| unreachable!()).unwrap();
    assert_eq!(acks(&again)[0].payload, b"reply");
}

#[test]
fn should_accept_any_broker_when_opted_in_and_dedup_per_broker() {
    let mut core = ReceiverCore::open(VectorMemory::default(), ReceiverConfig::any_broker());
    let runs = Cell::new(0);
    let handler = |_: &Delivery| {
        runs.set(runs.get() + 1);
        vec![]
    };
    // Two brokers may issue the same id: they are different messages.
    core.on_new_message(broker(), new(1, b"a"), 0, handler).unwrap();
    core.on_new_message(other_broker(), new(1, b"b"), 0, handler).unwrap();
    core.on_new_message(other_broker(), new(1, b"b"), 1, handler).unwrap();
    assert_eq!(runs.get(), 2);
    assert!(core.is_processed(broker(), MsgId(1)) && core.is_processed(other_broker(), MsgId(1)));
    assert_eq!(
        core.on_new_message(Principal::anonymous(), new(2, b""), 0, handler),
        Err(ReceiverError::UnknownBroker { caller: Principal::anonymous() })
    );
}

#[test]
fn should_hash_the_payload_as_received() {
    let mut core = open(VectorMemory::default());
    let effects = core.on_new_message(broker(), new(1, b"tampered"), 0, |_| vec![]).unwrap();
    assert_eq!(acks(&effects)[0].hash, Some(payload_hash(b"tampered")));
}

#[test]
fn should_shrink_the_record_to_a_tombstone_on_fin() {
    let mut core = open(VectorMemory::default());
    core.on_new_message(broker(), new(1, b"x"), 0, |_| vec![7; 1000]).unwrap();
    assert_eq!(core.replies.len(), 1);
    core.on_ackack(broker(), fin(1), 5 * SEC).unwrap();
    assert_eq!(core.status(broker(), MsgId(1)), Some(ProcessedStatus::Finished));
    assert_eq!(core.replies.len(), 0, "the cached reply is dropped");
    assert!(core.is_processed(broker(), MsgId(1)));
    // A second FIN changes nothing.
    core.on_ackack(broker(), fin(1), 6 * SEC).unwrap();
    assert_eq!(core.schedule.len(), 1);
    // A late duplicate NEW does not run the handler; its ACK carries the hash and no reply.
    let late = core.on_new_message(broker(), new(1, b"x"), 7 * SEC, |_| unreachable!()).unwrap();
    assert_eq!(acks(&late), vec![Ack { msg_id: MsgId(1), hash: Some(payload_hash(b"x")), payload: vec![] }]);
    // No more ACK re-sends after the FIN.
    assert!(core.on_timer(3600 * SEC).is_empty());
}

#[test]
fn should_ignore_a_fin_for_an_unknown_message() {
    let mut core = open(VectorMemory::default());
    core.on_ackack(broker(), fin(42), 0).unwrap();
    assert!(core.is_empty());
}

#[test]
fn should_forget_everything_after_the_dedup_window() {
    let mut core = open(VectorMemory::default());
    let window = core.config().dedup_window_ns;
    core.on_new_message(broker(), new(1, b"x"), 0, |_| vec![1]).unwrap();
    core.on_new_message(broker(), new(2, b"y"), 0, |_| vec![2]).unwrap();
    core.on_ackack(broker(), fin(1), SEC).unwrap();
    // Message 2 never gets its FIN: resends, gives up, then expires too.
    let mut now = 0;
    while let Some(next) = core.next_deadline() {
        assert!(next <= window, "nothing is kept past the window");
        now = next.max(now);
        core.on_timer(now);
    }
    assert_eq!(now, window);
    assert!(core.is_empty());
    assert!(!core.is_processed(broker(), MsgId(1)));
    // Before the window ends, both were still remembered (checked on a fresh run).
    let mut core = open(VectorMemory::default());
    core.on_new_message(broker(), new(1, b"x"), 0, |_| vec![1]).unwrap();
    core.on_ackack(broker(), fin(1), SEC).unwrap();
    core.on_timer(window - 1);
    assert!(core.is_processed(broker(), MsgId(1)));
    core.on_timer(window);
    assert!(core.is_empty());
}

#[test]
fn should_resend_the_ack_on_the_timer_until_fin() {
    let mut core = open(VectorMemory::default());
    let interval = core.config().ack_resend_interval_ns;
    let first = core.on_new_message(broker(), new(1, b"x"), 0, |_| b"r".to_vec()).unwrap();
    assert_eq!(core.next_deadline(), Some(interval));
    assert!(core.on_timer(interval - 1).is_empty());
    assert_eq!(core.on_timer(interval), first);
    assert_eq!(core.on_timer(2 * interval), first);
    assert_eq!(core.status(broker(), MsgId(1)), Some(ProcessedStatus::AwaitingFin { ack_resends: 2 }));
    core.on_ackack(broker(), fin(1), 2 * interval + 1).unwrap();
    let mut resent = 0;
    while let Some(next) = core.next_deadline() {
        resent += core.on_timer(next).len();
    }
    assert_eq!(resent, 0, "no ACK after the FIN");
    assert!(core.is_empty());
}

#[test]
fn should_stop_resending_after_the_bound_but_keep_dedup() {
    let config = ReceiverConfig { max_ack_resends: 3, ..ReceiverConfig::for_brokers(vec![broker()]) };
    let mut core = ReceiverCore::open(VectorMemory::default(), config);
    let first = core.on_new_message(broker(), new(1, b"x"), 0, |_| b"r".to_vec()).unwrap();
    let mut resent = Vec::new();
    let mut now = 0;
    while core.status(broker(), MsgId(1)) != Some(ProcessedStatus::GaveUp) {
        now = core.next_deadline().unwrap();
        resent.extend(core.on_timer(now));
    }
    assert_eq!(resent, vec![first[0].clone(); 3]);
    // Dedup is kept: a duplicate NEW still gets the cached ACK, without the handler.
    assert_eq!(core.on_new_message(broker(), new(1, b"x"), now + 1, |_| unreachable!()).unwrap(), first);
    // The record waits for the end of the window, then goes.
    assert_eq!(core.next_deadline(), Some(core.config().dedup_window_ns));
    assert!(core.on_timer(core.config().dedup_window_ns).is_empty());
    assert!(core.is_empty());
}

#[test]
fn should_keep_resending_past_a_short_window_until_the_bound() {
    let config = ReceiverConfig {
        dedup_window_ns: SEC,
        max_ack_resends: 2,
        ack_resend_interval_ns: 10 * SEC,
        ..ReceiverConfig::for_brokers(vec![broker()])
    };
    let mut core = ReceiverCore::open(VectorMemory::default(), config);
    core.on_new_message(broker(), new(1, b"x"), 0, |_| vec![]).unwrap();
    assert_eq!(core.on_timer(10 * SEC).len(), 1);
    assert_eq!(core.on_timer(20 * SEC).len(), 1);
    assert!(core.is_processed(broker(), MsgId(1)));
    // Gives up; the window is over, so the removal is due at once (same run).
    assert!(core.on_timer(30 * SEC).is_empty());
    assert!(core.is_empty());
}

#[test]
fn should_keep_the_dedup_state_across_an_upgrade() {
    let memory = VectorMemory::default();
    let mut core = open(memory.clone());
    core.on_new_message(broker(), new(1, b"x"), 0, |_| b"one".to_vec()).unwrap();
    core.on_new_message(broker(), new(2, b"y"), 0, |_| b"two".to_vec()).unwrap();
    core.on_ackack(broker(), fin(2), SEC).unwrap();
    let deadline = core.next_deadline();
    drop(core); // the heap is gone; only stable memory remains

    let mut core = open(memory);
    assert_eq!(core.next_deadline(), deadline);
    assert_eq!(core.status(broker(), MsgId(1)), Some(ProcessedStatus::AwaitingFin { ack_resends: 0 }));
    assert_eq!(core.status(broker(), MsgId(2)), Some(ProcessedStatus::Finished));
    let again = core.on_new_message(broker(), new(1, b"x"), 2 * SEC, |_| unreachable!()).unwrap();
    assert_eq!(acks(&again)[0].payload, b"one");
    core.on_new_message(broker(), new(2, b"y"), 2 * SEC, |_| unreachable!()).unwrap();
}

#[test]
fn should_keep_the_dedup_state_across_an_upgrade_beside_the_application_structures() {
    // What a canister does: one MemoryManager over stable memory, one
    // virtual memory for the library, others for the application.
    let stable = DefaultMemoryImpl::default();
    {
        let mm = ic_stable_structures::memory_manager::MemoryManager::init(stable.clone());
        let mut app: StableBTreeMap<u64, u64, _> = StableBTreeMap::init(mm.get(MemoryId::new(1)));
        let mut core = ReceiverCore::open(mm.get(MemoryId::new(0)), ReceiverConfig::for_brokers(vec![broker()]));
        for id in 0..50u64 {
            core.on_new_message(broker(), new(id as u128, b"x"), 0, |_| vec![0; 100]).unwrap();
            app.insert(id, id * 2);
        }
    }
    let mm = ic_stable_structures::memory_manager::MemoryManager::init(stable);
    let app: StableBTreeMap<u64, u64, _> = StableBTreeMap::init(mm.get(MemoryId::new(1)));
    let core = ReceiverCore::open(mm.get(MemoryId::new(0)), ReceiverConfig::for_brokers(vec![broker()]));
    assert_eq!(core.len(), 50);
    assert_eq!(app.get(&49), Some(98));
    assert!((0..50).all(|id| core.is_processed(broker(), MsgId(id))));
}

#[test]
fn should_leave_no_trace_when_the_handler_traps() {
    let mut core = open(VectorMemory::default());
    let trapped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        core.on_new_message(broker(), new(1, b"x"), 0, |_| panic!("trap")).unwrap();
    }));
    assert!(trapped.is_err());
    assert!(core.is_empty());
    // The broker's next NEW runs the handler.
    let effects = core.on_new_message(broker(), new(1, b"x"), 1, |_| b"ok".to_vec()).unwrap();
    assert_eq!(acks(&effects)[0].payload, b"ok");
}

#[test]
fn should_bound_the_work_of_one_timer_run() {
    let config = ReceiverConfig { timer_batch_limit: 10, ..ReceiverConfig::for_brokers(vec![broker()]) };
    let mut core = ReceiverCore::open(VectorMemory::default(), config);
    for id in 0..25 {
        core.on_new_message(broker(), new(id, b"x"), 0, |_| vec![]).unwrap();
    }
    let due = core.next_deadline().unwrap();
    assert_eq!(core.on_timer(due).len(), 10);
    assert_eq!(core.next_deadline(), Some(due), "more is due: the timer must run again at once");
    assert_eq!(core.on_timer(due).len(), 10);
    assert_eq!(core.on_timer(due).len(), 5);
    assert!(core.next_deadline().unwrap() > due);
}

#[derive(Clone, Debug)]
enum Op {
    New { broker: bool, id: u8 },
    Fin { broker: bool, id: u8 },
    Spoof { id: u8 },
    Advance { secs: u16 },
    Upgrade,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0..6u8).prop_map(|(broker, id)| Op::New { broker, id }),
        2 => (any::<bool>(), 0..6u8).prop_map(|(broker, id)| Op::Fin { broker, id }),
        1 => (0..6u8).prop_map(|id| Op::Spoof { id }),
        // At most 80 × 1000 s in all: within the 24 h dedup window.
        2 => (0..1000u16).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Upgrade),
    ]
}

proptest! {
    /// Against a trivially correct model: within the dedup window the handler
    /// runs at most once per (broker, msg_id); every NEW from an allowed broker
    /// gets the ACK of the first run (or an empty reply after the FIN);
    /// spoofed calls never change anything; after the window all state is gone.
    #[test]
    fn should_behave_like_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let brokers = [broker(), other_broker()];
        let memory = VectorMemory::default();
        let config = ReceiverConfig { max_ack_resends: 3, ..ReceiverConfig::for_brokers(brokers.to_vec()) };
        let mut core = ReceiverCore::open(memory.clone(), config.clone());
        // (broker, id) -> (reply, finished)
        let mut model: std::collections::BTreeMap<(Principal, u8), (Vec<u8>, bool)> = Default::default();
        let mut runs: std::collections::BTreeMap<(Principal, u8), u32> = Default::default();
        let mut now = 0u64;
        let mut serial = 0u8;
        for op in ops {
            match op {
                Op::New { broker, id } => {
                    let b = brokers[broker as usize];
                    serial = serial.wrapping_add(1);
                    let reply = vec![serial];
                    let effects = core.on_new_message(b, new(id as u128, &[id]), now, |_| {
                        *runs.entry((b, id)).or_default() += 1;
                        reply.clone()
                    }).unwrap();
                    let (cached, finished) = model.entry((b, id)).or_insert((reply, false)).clone();
                    let expected = Ack { msg_id: MsgId(id as u128), hash: Some(payload_hash(&[id])), payload: if finished { vec![] } else { cached } };
                    prop_assert_eq!(effects, vec![ReceiverEffect::SendAck { broker: b, ack: expected }]);
                }
                Op::Fin { broker, id } => {
                    let b = brokers[broker as usize];
                    core.on_ackack(b, fin(id as u128), now).unwrap();
                    if let Some(entry) = model.get_mut(&(b, id)) { entry.1 = true; }
                }
                Op::Spoof { id } => {
                    prop_assert!(core.on_new_message(Principal::anonymous(), new(id as u128, b""), now, |_| unreachable!()).is_err());
                    prop_assert!(core.on_ackack(Principal::management_canister(), fin(id as u128), now).is_err());
                }
                Op::Advance { secs } => {
                    now += secs as u64 * SEC;
                    core.on_timer(now);
                }
                Op::Upgrade => core = ReceiverCore::open(memory.clone(), config.clone()),
            }
            prop_assert!(runs.values().all(|n| *n == 1));
            for (b, id) in model.keys() {
                prop_assert!(core.is_processed(*b, MsgId(*id as u128)));
            }
            prop_assert_eq!(core.len(), model.len() as u64);
        }
        prop_assert!(now < config.dedup_window_ns);
        while let Some(next) = core.next_deadline() {
            now = now.max(next);
            core.on_timer(now);
        }
        prop_assert!(core.is_empty());
    }
}
