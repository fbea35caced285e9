//! Property test: random sequences of inputs (enqueues, genuine, corrupted and
//! spoofed ACKs, time, callback outcomes, refused sends, cancels, retries,
//! upgrades) against a reference model of what each message may do, with
//! every structural invariant of the stable indexes checked after each step.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug)]
enum Op {
    Enqueue { sender: u8, target: u8, len: u8, max_attempts: u32, key: Option<u8>, include: bool, refuse: bool },
    Ack { pick: usize, from_target: bool, hash: HashKind },
    Advance { secs: u64, refuse: bool },
    CallbackResult { pick: usize, ok: bool, code: u32 },
    Cancel { pick: usize, as_controller: bool },
    Retry { pick: usize },
    Upgrade,
}

#[derive(Clone, Copy, Debug)]
enum HashKind {
    Correct,
    Wrong,
    Unchecked,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..3u8, 0..40u8, 1..4u32, proptest::option::of(0..3u8), any::<bool>(), proptest::bool::weighted(0.2))
            .prop_map(|(sender, target, len, max_attempts, key, include, refuse)| Op::Enqueue { sender, target, len, max_attempts, key, include, refuse }),
        4 => (any::<usize>(), proptest::bool::weighted(0.85), prop_oneof![6 => Just(HashKind::Correct), 1 => Just(HashKind::Wrong), 1 => Just(HashKind::Unchecked)])
            .prop_map(|(pick, from_target, hash)| Op::Ack { pick, from_target, hash }),
        3 => (prop_oneof![Just(1u64), Just(60), Just(330), Just(400), Just(3600)], proptest::bool::weighted(0.2))
            .prop_map(|(secs, refuse)| Op::Advance { secs, refuse }),
        3 => (any::<usize>(), proptest::bool::weighted(0.7), prop_oneof![Just(2u32), Just(3), Just(5), Just(6)])
            .prop_map(|(pick, ok, code)| Op::CallbackResult { pick, ok, code }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, as_controller)| Op::Cancel { pick, as_controller }),
        1 => any::<usize>().prop_map(|pick| Op::Retry { pick }),
        1 => Just(Op::Upgrade),
    ]
}

/// What the reference model knows of one message.
#[derive(Debug)]
struct Expected {
    payload: Vec<u8>,
    target: Principal,
    max_attempts: u32,
    /// A genuine ACK (right hash or none) came from the target.
    genuinely_acked: bool,
    ack_callbacks: u32,
}

struct World {
    h: Harness,
    model: BTreeMap<MsgId, Expected>,
    /// Callbacks issued and not yet answered: (msg_id, serial).
    outstanding: Vec<(MsgId, u32)>,
}

impl World {
    fn apply(&mut self, effects: Vec<Effect>, refuse: bool) {
        for e in effects {
            match e {
                Effect::SendNew { target, message } => {
                    let expected = &self.model[&message.msg_id];
                    assert_eq!(target, expected.target, "NEW goes to the message's target");
                    assert_eq!(message.payload, expected.payload, "NEW carries the enqueued payload");
                    let attempt = message.attempt.unwrap();
                    assert!(attempt >= 1 && attempt <= expected.max_attempts, "attempt {attempt} within max_attempts");
                    if refuse {
                        self.h.broker.on_new_refused(message.msg_id, attempt, DeliveryError::SendRefused, self.h.now);
                    }
                }
                Effect::SendFin { fin, .. } => assert!(self.model.contains_key(&fin.msg_id)),
                Effect::Callback { serial, callback, sender } => {
                    let id = callback.msg_id();
                    assert_eq!(sender, self.h.broker.record(id).unwrap().sender);
                    if let Callback::Ack(ack) = &callback {
                        let expected = self.model.get_mut(&id).unwrap();
                        assert!(expected.genuinely_acked, "ack callback only after a genuine ACK");
                        assert_eq!(ack.target, Some(expected.target));
                        expected.ack_callbacks += 1;
                    }
                    self.outstanding.push((id, serial));
                }
            }
        }
    }

    fn pick(&self, pick: usize) -> Option<MsgId> {
        (!self.model.is_empty()).then(|| *self.model.keys().nth(pick % self.model.len()).unwrap())
    }

    fn step(&mut self, op: Op) {
        let now = self.h.now;
        match op {
            Op::Enqueue { sender, target, len, max_attempts, key, include, refuse } => {
                let payload = vec![len; len as usize];
                let options = EnqueueOptions {
                    max_attempts: Some(max_attempts),
                    include_sent_payload: Some(include),
                    idempotency_key: key.map(|k| format!("key-{k}")),
                    ..Default::default()
                };
                let args =
                    EnqueueArgs { target: canister(10 + target), payload: payload.clone(), options: Some(options) };
                let known = self.model.len();
                if let Ok((accepted, effects)) = self.h.broker.enqueue(canister(20 + sender), args, 0, now) {
                    let fresh = !self.model.contains_key(&accepted.msg_id);
                    if fresh {
                        assert_eq!(known + 1, self.model.len() + 1);
                        self.model.insert(
                            accepted.msg_id,
                            Expected {
                                payload,
                                target: canister(10 + target),
                                max_attempts,
                                genuinely_acked: false,
                                ack_callbacks: 0,
                            },
                        );
                    } else {
                        assert!(key.is_some() && effects.is_empty(), "only a repeated key returns a known id");
                    }
                    self.apply(effects, refuse);
                }
            }
            Op::Ack { pick, from_target, hash } => {
                let Some(id) = self.pick(pick) else { return };
                let Some(before) = self.h.broker.record(id) else { return };
                let expected = &self.model[&id];
                let hash_value = match hash {
                    HashKind::Correct => Some(payload_hash(&expected.payload)),
                    HashKind::Wrong => Some(payload_hash(&expected.payload).wrapping_add(1)),
                    HashKind::Unchecked => None,
                };
                let caller = if from_target { expected.target } else { canister(99) };
                let ack = Ack { msg_id: id, hash: hash_value, payload: b"reply".to_vec() };
                let (result, effects) = self.h.broker.on_ack(caller, ack, now);
                if !from_target {
                    assert_eq!(result, Err(AckRejected::NotTarget));
                    assert!(effects.is_empty());
                    assert_eq!(self.h.broker.record(id), Some(before), "a spoofed ACK never changes state");
                    return;
                }
                assert_eq!(result, Ok(()));
                let genuine = !matches!(hash, HashKind::Wrong);
                let open =
                    !matches!(before.state, MessageState::Acked | MessageState::Delivered | MessageState::Corrupted);
                if genuine && open {
                    self.model.get_mut(&id).unwrap().genuinely_acked = true;
                }
                if open {
                    // A superseded callback's result is stale from now on.
                    self.outstanding.retain(|(m, _)| *m != id);
                }
                self.apply(effects, false);
                let after = self.h.broker.record(id).unwrap().state;
                if open {
                    let expect = if genuine {
                        [MessageState::Acked, MessageState::Delivered]
                    } else {
                        [MessageState::Corrupted; 2]
                    };
                    assert!(expect.contains(&after), "{:?} + ACK({hash:?}) → {after:?}", before.state);
                } else {
                    assert_eq!(after, before.state, "a duplicate ACK only gets its FIN again");
                }
            }
            Op::Advance { secs, refuse } => {
                self.h.now += secs * NS;
                let effects = self.h.broker.on_timer(self.h.now, &Unlimited);
                self.apply(effects, refuse);
            }
            Op::CallbackResult { pick, ok, code } => {
                if self.outstanding.is_empty() {
                    return;
                }
                let (id, serial) = self.outstanding.remove(pick % self.outstanding.len());
                let result = if ok { Ok(()) } else { Err(DeliveryError::CallRejected { reject_code: code }) };
                self.h.broker.on_callback_result(id, serial, result, now);
            }
            Op::Cancel { pick, as_controller } => {
                let Some(id) = self.pick(pick) else { return };
                let Some(rec) = self.h.broker.record(id) else { return };
                let caller = if as_controller { canister(98) } else { rec.sender };
                if let Ok(effects) = self.h.broker.cancel(caller, as_controller, id, now) {
                    assert_eq!(self.h.broker.record(id).unwrap().state, MessageState::Cancelled);
                    self.apply(effects, false);
                }
            }
            Op::Retry { pick } => {
                let Some(id) = self.pick(pick) else { return };
                let Some(rec) = self.h.broker.record(id) else { return };
                if let Ok(effects) = self.h.broker.retry(rec.sender, false, id, now) {
                    self.outstanding.retain(|(m, _)| *m != id);
                    self.model.get_mut(&id).unwrap().genuinely_acked = false;
                    self.apply(effects, false);
                }
            }
            Op::Upgrade => {
                // Heap gone: callbacks in flight never report back.
                self.h.upgrade();
                self.outstanding.clear();
            }
        }
        check_invariants(&self.h.broker);
    }

    /// Every target acknowledges and every sender answers until nothing is left.
    fn quiesce(&mut self) {
        for _ in 0..200 {
            let pending: Vec<MsgId> = self.h.broker.pending.keys().map(|k| k.0).collect();
            for id in pending {
                let rec = self.h.broker.record(id).unwrap();
                if matches!(rec.state, MessageState::Queued | MessageState::AwaitingAck) {
                    self.step(Op::Ack {
                        pick: self.model.keys().position(|k| *k == id).unwrap(),
                        from_target: true,
                        hash: HashKind::Correct,
                    });
                }
            }
            while !self.outstanding.is_empty() {
                self.step(Op::CallbackResult { pick: 0, ok: true, code: 0 });
            }
            let Some(next) = self.h.broker.next_deadline() else { break };
            self.h.now = self.h.now.max(next);
            let effects = self.h.broker.on_timer(self.h.now, &Unlimited);
            self.apply(effects, false);
            check_invariants(&self.h.broker);
        }
    }
}

/// The stable indexes agree with the records, always.
fn check_invariants<M: Memory>(b: &Broker<M>) {
    let mut by_state = [0u64; 7];
    let mut in_flight: BTreeMap<Principal, u32> = BTreeMap::new();
    let mut queued: BTreeMap<Principal, u64> = BTreeMap::new();
    let mut usage: BTreeMap<Principal, SenderUsage> = BTreeMap::new();
    let mut pending = BTreeSet::new();
    let mut scheduled = BTreeSet::new();
    let mut bytes = 0u64;
    for entry in b.messages.iter() {
        let (IdKey(id), rec) = entry.into_pair();
        by_state[rec.state as usize] += 1;
        assert!(rec.attempts <= rec.max_attempts, "{id:?}: attempts never exceed max_attempts");
        if let Some(d) = rec.deadline {
            scheduled.insert(ScheduleKey { deadline: d, msg_id: id });
        }
        match rec.state {
            MessageState::Queued => {
                *queued.entry(rec.target).or_default() += 1;
                assert!(
                    rec.deadline.is_none()
                        && b.target_fifo.contains_key(&PrincipalMsgKey { principal: rec.target, msg_id: id })
                );
            }
            MessageState::AwaitingAck => *in_flight.entry(rec.target).or_default() += 1,
            _ => {}
        }
        if rec.state != MessageState::Queued {
            assert!(rec.deadline.is_some(), "{id:?} in {:?} has a deadline", rec.state);
        }
        if !rec.state.is_terminal() {
            pending.insert(id);
            let u = usage.entry(rec.sender).or_default();
            u.pending_messages += 1;
            u.pending_bytes += rec.payload_len as u64;
        }
        let payload = b.payloads.get(&IdKey(id));
        if matches!(rec.state, MessageState::Queued | MessageState::AwaitingAck) {
            assert_eq!(payload.as_ref().map(|p| p.0.len() as u32), Some(rec.payload_len), "{id:?} keeps its payload");
        }
        if matches!(rec.state, MessageState::Delivered | MessageState::Cancelled) {
            assert!(payload.is_none(), "{id:?}: payload dropped when no longer needed");
        }
        bytes += payload.map_or(0, |p| p.0.len() as u64) + b.replies.get(&IdKey(id)).map_or(0, |r| r.0.len() as u64);
        assert!(b.by_sender.contains_key(&PrincipalMsgKey { principal: rec.sender, msg_id: id }));
        assert!(b.by_target.contains_key(&PrincipalMsgKey { principal: rec.target, msg_id: id }));
    }
    assert_eq!(by_state, b.state.by_state, "per-state counts");
    assert_eq!(b.schedule.keys().collect::<BTreeSet<_>>(), scheduled, "schedule = record deadlines");
    assert_eq!(b.pending.keys().map(|k| k.0).collect::<BTreeSet<_>>(), pending, "pending index");
    assert_eq!(b.state.stored_bytes, bytes, "stored bytes");
    assert_eq!(b.target_fifo.len(), queued.values().sum::<u64>());
    let loads: BTreeMap<Principal, TargetCounters> = b
        .targets
        .iter()
        .map(|e| {
            let (k, v) = e.into_pair();
            (k.0, v)
        })
        .collect();
    let mut expected_loads = BTreeMap::new();
    for (t, n) in &in_flight {
        expected_loads.entry(*t).or_insert(TargetCounters::default()).in_flight = *n;
    }
    for (t, n) in &queued {
        expected_loads.entry(*t).or_insert(TargetCounters::default()).queued = *n;
    }
    assert_eq!(loads, expected_loads, "per-target load");
    assert!(in_flight.values().all(|n| *n <= b.config.max_in_flight_per_target), "window respected");
    let senders: BTreeMap<Principal, SenderUsage> = b
        .senders
        .iter()
        .map(|e| {
            let (k, v) = e.into_pair();
            (k.0, v)
        })
        .collect();
    assert_eq!(senders, usage, "sender quotas");
    assert_eq!(b.by_sender.len(), b.messages.len());
    assert_eq!(b.by_target.len(), b.messages.len());
    assert_eq!(b.idempotency.len(), b.idempotency_of.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn should_keep_every_invariant_and_return_to_empty(ops in proptest::collection::vec(op(), 1..120)) {
        let mut world = World {
            h: Harness::with_config(ConfigUpdate { max_in_flight_per_target: Some(2), max_callback_attempts: Some(3), ..Default::default() }),
            model: BTreeMap::new(),
            outstanding: Vec::new(),
        };
        for op in ops {
            world.step(op);
        }
        world.quiesce();
        for (id, expected) in &world.model {
            prop_assert!(expected.ack_callbacks <= 3 * 2, "{id:?}: bounded ack callbacks");
        }
        world.h.now += 25 * 3600 * NS;
        let effects = world.h.broker.on_timer(world.h.now, &Unlimited);
        world.apply(effects, false);
        while world.h.broker.next_deadline().is_some_and(|d| d <= world.h.now) {
            let effects = world.h.broker.on_timer(world.h.now, &Unlimited);
            world.apply(effects, false);
        }
        check_invariants(&world.h.broker);
        prop_assert!(world.h.broker.is_empty(), "after retention the broker is empty");
    }
}
