//! The broker under test and the inputs that drive it: principals, payloads,
//! a configuration that lets one broker hold a million pending messages, and
//! the four steps of a message's life (enqueue, ACK, callback confirmed, GC).

use async_flow_broker::core::{Broker, Effect, Unlimited};
use async_flow_client::{payload_hash, Ack, ConfigUpdate, EnqueueArgs, EnqueueOptions, MsgId};
use candid::Principal;
use ic_stable_structures::VectorMemory;

pub const NS: u64 = 1_000_000_000;
/// Virtual time of the first input (2023-11-14), in nanoseconds.
pub const T0: u64 = 1_700_000_000 * NS;
/// Retention used by the benchmarks: the configuration's minimum (600 s), so
/// that GC comes due long before any ACK timeout of the backlog.
pub const RETENTION_SECS: u64 = 600;
/// ACK timeout of backlog messages (the per-message maximum, 24 h): they never
/// come due while a benchmark runs unless it says so.
pub const BACKLOG_ACK_TIMEOUT_SECS: u32 = 86_400;
/// Senders and targets the messages are spread over, round robin. With 4096
/// targets and a window of 450, a million messages are all `AwaitingAck`
/// (about 244 per target): every pending message has a schedule entry.
pub const SENDERS: u32 = 16;
pub const TARGETS: u32 = 4096;
/// What each receiver replies (Candid `()`).
pub const REPLY: &[u8] = b"DIDL\x00\x00";

/// A canister id (10 bytes, class byte 0x01).
fn canister(kind: u8, i: u32) -> Principal {
    let [_, b1, b2, b3] = i.to_be_bytes();
    Principal::from_slice(&[0, 0, 0, kind, b1, b2, b3, 0, 1, 1])
}

pub fn broker_id() -> Principal {
    Principal::from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
}

pub fn sender(i: u32) -> Principal {
    canister(1, i % SENDERS)
}

pub fn target(i: u32) -> Principal {
    canister(2, i % TARGETS)
}

/// `size` bytes of a fixed pattern.
pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3]).collect()
}

/// Limits opened wide enough for a million messages from few senders.
pub fn bench_config() -> ConfigUpdate {
    ConfigUpdate {
        max_in_flight_per_target: Some(450),
        max_pending_per_sender: Some(u64::MAX),
        max_pending_bytes_per_sender: Some(u64::MAX),
        max_stored_messages: Some(u64::MAX),
        max_stored_bytes: Some(u64::MAX),
        retention_seconds: Some(RETENTION_SECS),
        ..Default::default()
    }
}

/// One message on its way: what the later steps need.
#[derive(Clone, Copy, Debug)]
pub struct InFlight {
    pub msg_id: MsgId,
    pub target: Principal,
    pub serial: u32,
}

/// A broker over a `VectorMemory` (what `DefaultMemoryImpl` is natively), its
/// virtual clock and a round-robin counter for senders and targets.
pub struct BrokerBench {
    pub broker: Broker<VectorMemory>,
    pub memory: VectorMemory,
    pub now: u64,
    next: u32,
}

impl Default for BrokerBench {
    fn default() -> Self {
        Self::new()
    }
}

impl BrokerBench {
    pub fn new() -> Self {
        let memory = VectorMemory::default();
        let broker = Broker::open(memory.clone(), broker_id(), Some(bench_config()), T0).expect("valid config");
        BrokerBench { broker, memory, now: T0, next: 0 }
    }

    /// The inputs of `n` enqueues, built before a timed region.
    pub fn inputs(&mut self, n: usize, payload: &[u8], ack_timeout_secs: Option<u32>) -> Vec<(Principal, EnqueueArgs)> {
        (0..n)
            .map(|_| {
                let i = self.next;
                self.next = self.next.wrapping_add(1);
                let options =
                    ack_timeout_secs.map(|s| EnqueueOptions { ack_timeout_seconds: Some(s), ..Default::default() });
                (sender(i), EnqueueArgs { target: target(i), payload: payload.to_vec(), options })
            })
            .collect()
    }

    /// Step 1 for each input: returns the ids, the SendNew effects dropped
    /// (the canister would hand them to the IC).
    pub fn enqueue_all(&mut self, inputs: Vec<(Principal, EnqueueArgs)>) -> Vec<InFlight> {
        let now = self.now;
        let out = inputs
            .into_iter()
            .map(|(caller, args)| {
                let target = args.target;
                let (accepted, effects) = self.broker.enqueue(caller, args, 0, now).expect("enqueue accepted");
                debug_assert!(matches!(effects.first(), Some(Effect::SendNew { .. })));
                drop(effects);
                InFlight { msg_id: accepted.msg_id, target, serial: 0 }
            })
            .collect();
        self.broker.drain_events();
        out
    }

    /// Step 3 for each message: the target's valid ACK (FIN and callback out).
    pub fn ack_all(&mut self, msgs: &mut [InFlight], hash: u32) {
        let now = self.now;
        for m in msgs.iter_mut() {
            let ack = Ack { msg_id: m.msg_id, hash: Some(hash), payload: REPLY.to_vec() };
            let (result, effects) = self.broker.on_ack(m.target, ack, now);
            debug_assert!(result.is_ok());
            m.serial = effects
                .iter()
                .find_map(|e| match e {
                    Effect::Callback { serial, .. } => Some(*serial),
                    _ => None,
                })
                .expect("a canister sender gets a callback");
        }
        self.broker.drain_events();
    }

    /// Step 5: each sender confirmed its callback. The messages are `Delivered`.
    pub fn confirm_all(&mut self, msgs: &[InFlight]) {
        let now = self.now;
        for m in msgs {
            self.broker.on_callback_result(m.msg_id, m.serial, Ok(()), now);
        }
        self.broker.drain_events();
    }

    /// Timer runs at `at` until nothing more is due (each run handles at
    /// most `timer_batch_limit` items, as in the canister). Returns the number
    /// of effects and of runs.
    pub fn run_timers(&mut self, at: u64) -> (usize, usize) {
        let mut effects = 0;
        let mut runs = 0;
        loop {
            effects += self.broker.on_timer(at, &Unlimited).len();
            runs += 1;
            if self.broker.next_deadline().is_none_or(|d| d > at) {
                break;
            }
        }
        self.broker.drain_events();
        (effects, runs)
    }

    /// A whole batch lifecycle: enqueue, ACK, callback confirmed, then the GC
    /// timer after the retention period. The clock ends one second past it.
    pub fn lifecycle(&mut self, inputs: Vec<(Principal, EnqueueArgs)>, hash: u32) {
        let mut msgs = self.enqueue_all(inputs);
        self.now += NS / 1000;
        self.ack_all(&mut msgs, hash);
        self.now += NS / 1000;
        self.confirm_all(&msgs);
        let gc_at = self.now + RETENTION_SECS * NS;
        self.run_timers(gc_at);
        self.now = gc_at + NS;
    }

    /// `n` more pending messages (enqueued, not acked).
    pub fn add_backlog(&mut self, n: usize, payload: &[u8], ack_timeout_secs: u32) -> Vec<MsgId> {
        let mut ids = Vec::with_capacity(n);
        let chunk = 10_000;
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk);
            let inputs = self.inputs(k, payload, Some(ack_timeout_secs));
            ids.extend(self.enqueue_all(inputs).into_iter().map(|m| m.msg_id));
            left -= k;
        }
        ids
    }
}

/// The hash a receiver reports for `payload`.
pub fn hash_of(payload: &[u8]) -> u32 {
    payload_hash(payload)
}
