//! The simulated subnet: one virtual clock, a network with per-pair FIFO
//! order and seeded faults, and three kinds of canister:
//!
//! - the broker runs the real `async_flow_broker::driver` and core through
//!   [`SimBroker`], a `CanisterRuntime` for this world;
//! - receivers run the real `ReceiverCore` with the glue of client-lib's IC
//!   layer (send each ACK one-way, one timer at the earliest deadline);
//! - senders enqueue and answer callbacks with the real `SenderCore`.
//!
//! A trap restores the canister's stable memory to what it was before the
//! execution and reopens its core: the IC rolls back the whole execution.
//! An upgrade reopens the core from the same memory and drops all heap
//! state: armed timers and the continuations of calls in flight.

use crate::plan::{FaultPlan, Scenario};
use crate::report::{Report, Violations};
use crate::rng::Rng;
use async_flow_broker::core::{Broker, Event};
use async_flow_broker::driver;
use async_flow_broker::runtime::{CanisterRuntime, OnReply};
use async_flow_client::protocol::method;
use async_flow_client::receiver::{ReceiverConfig, ReceiverCore, ReceiverEffect};
use async_flow_client::sender::{SenderConfig, SenderCore};
use async_flow_client::{
    payload_hash, Ack, AckAck, DeliveryError, EnqueueArgs, EnqueueOptions, MsgId, NewMessage, SenderAck, SenderFailed,
};
use candid::Principal;
use ic_stable_structures::VectorMemory;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BinaryHeap};
use std::rc::Rc;

pub const NS: u64 = 1_000_000_000;
/// Virtual start time (2023-11-14).
pub const T0: u64 = 1_700_000_000 * NS;
/// A run that has not quiesced after this much virtual time is a violation.
const HORIZON: u64 = 20 * 24 * 3600 * NS;
const MAX_STEPS: u64 = 2_000_000;

fn canister(n: u16) -> Principal {
    let [hi, lo] = n.to_be_bytes();
    Principal::from_slice(&[0, 0, 0, 0, 0, hi, lo, 0, 1, 1])
}

enum Packet {
    New(NewMessage),
    Ack(Ack),
    Fin(AckAck),
    Call { call_id: u64, method: &'static str, arg: Vec<u8> },
}

enum Ev {
    Deliver { from: Principal, to: Principal, packet: Packet },
    CallReply { call_id: u64, result: Result<(), DeliveryError> },
    BrokerTimer { epoch: u64, generation: u64 },
    ReceiverTimer { idx: usize, epoch: u64, generation: u64 },
    SenderTimer { idx: usize, epoch: u64, generation: u64 },
    Enqueue { sender: usize, target: usize, payload: Vec<u8>, key: Option<String>, repeat_of: Option<MsgId> },
    Spoof,
    Cancel,
    UpgradeBroker,
    UpgradeReceiver(usize),
}

struct Scheduled {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Earliest first in a max-heap; ties in scheduling order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A bounded-wait call on its way.
struct Request {
    from: Principal,
    to: Principal,
    method: &'static str,
    arg: Vec<u8>,
}

struct PendingCall {
    epoch: u64,
    deadline: u64,
    on_reply: OnReply,
}

/// The network and the clock, shared by every canister.
pub struct Net {
    pub now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    pub rng: Rng,
    pub plan: FaultPlan,
    /// Last delivery time per (from, to): the IC keeps requests between two canisters in order.
    channels: BTreeMap<(Principal, Principal), u64>,
    calls: BTreeMap<u64, PendingCall>,
    next_call: u64,
    pub broker_events: Vec<(u64, Event)>,
    pub names: BTreeMap<Principal, String>,
    pub trace: Option<Vec<String>>,
    receiver_traps: u32,
}

impl Net {
    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Scheduled { at: at.max(self.now), seq: self.seq, ev });
    }

    fn name(&self, p: &Principal) -> String {
        self.names.get(p).cloned().unwrap_or_else(|| p.to_text())
    }

    pub fn log(&mut self, line: impl FnOnce(&Net) -> String) {
        if self.trace.is_none() {
            return;
        }
        let text = format!("[{:>10.3}s] {}", (self.now - T0) as f64 / NS as f64, line(self));
        if let Some(trace) = &mut self.trace {
            trace.push(text);
        }
    }

    fn arrival(&mut self, from: Principal, to: Principal) -> u64 {
        let latency = self.rng.between(NS / 2, 2 * NS) + self.rng.below(self.plan.max_delay_secs * NS + 1);
        let last = self.channels.get(&(from, to)).copied().unwrap_or(0);
        let at = (self.now + latency).max(last + 1);
        self.channels.insert((from, to), at);
        at
    }

    /// A one-way message, subject to loss, corruption, delay and duplication.
    fn send(&mut self, from: Principal, to: Principal, mut packet: Packet) {
        let what = describe(&packet);
        if self.rng.chance(self.plan.drop) {
            self.log(|n| format!("{what} {} → {} LOST", n.name(&from), n.name(&to)));
            return;
        }
        if let Packet::New(new) = &mut packet {
            if !new.payload.is_empty() && self.rng.chance(self.plan.corrupt) {
                new.payload[0] ^= 0xff;
                self.log(|_| format!("{what} payload CORRUPTED in transit"));
            }
        }
        let duplicate = match &packet {
            Packet::New(m) if self.rng.chance(self.plan.duplicate) => Some(Packet::New(m.clone())),
            Packet::Ack(a) if self.rng.chance(self.plan.duplicate) => Some(Packet::Ack(a.clone())),
            Packet::Fin(f) if self.rng.chance(self.plan.duplicate) => Some(Packet::Fin(f.clone())),
            _ => None,
        };
        let at = self.arrival(from, to);
        self.schedule(at, Ev::Deliver { from, to, packet });
        if let Some(copy) = duplicate {
            self.log(|_| format!("{what} DUPLICATED"));
            let at = self.arrival(from, to);
            self.schedule(at, Ev::Deliver { from, to, packet: copy });
        }
    }

    /// A bounded-wait call: its continuation runs when the outcome arrives.
    fn start_call(&mut self, epoch: u64, call: Request, timeout: u64, on_reply: OnReply) {
        let Request { from, to, method: m, arg } = call;
        self.next_call += 1;
        let call_id = self.next_call;
        let deadline = self.now + timeout;
        self.calls.insert(call_id, PendingCall { epoch, deadline, on_reply });
        if self.rng.chance(self.plan.call_transient) {
            let at = self.now + NS;
            self.schedule(at, Ev::CallReply { call_id, result: Err(DeliveryError::CallRejected { reject_code: 2 }) });
        } else if self.rng.chance(self.plan.drop) {
            self.log(|n| format!("call {m} {} → {} LOST (outcome unknown at timeout)", n.name(&from), n.name(&to)));
            self.schedule(
                deadline,
                Ev::CallReply { call_id, result: Err(DeliveryError::CallRejected { reject_code: 6 }) },
            );
        } else {
            let at = self.arrival(from, to);
            self.schedule(at, Ev::Deliver { from, to, packet: Packet::Call { call_id, method: m, arg } });
        }
    }

    /// The callee's outcome travels back; a lost or late reply is SYS_UNKNOWN at the call's deadline.
    fn reply(&mut self, call_id: u64, result: Result<(), DeliveryError>) {
        let Some(deadline) = self.calls.get(&call_id).map(|c| c.deadline) else { return };
        let at = self.now + self.rng.between(NS / 2, 2 * NS) + self.rng.below(self.plan.max_delay_secs * NS + 1);
        if self.rng.chance(self.plan.drop) || at > deadline {
            self.schedule(
                deadline,
                Ev::CallReply { call_id, result: Err(DeliveryError::CallRejected { reject_code: 6 }) },
            );
        } else {
            self.schedule(at, Ev::CallReply { call_id, result });
        }
    }
}

fn describe(p: &Packet) -> String {
    match p {
        Packet::New(m) => format!("msg={} NEW attempt={}", m.msg_id, m.attempt.unwrap_or(0)),
        Packet::Ack(a) => format!("msg={} ACK", a.msg_id),
        Packet::Fin(f) => format!("msg={} FIN", f.msg_id),
        Packet::Call { method, .. } => format!("call {method}"),
    }
}

// ----- the broker -----------------------------------------------------------------------

/// The broker canister of this world: a `CanisterRuntime` over the simulated network.
#[derive(Clone)]
pub struct SimBroker(Rc<BrokerShared>);

struct BrokerShared {
    id: Principal,
    epoch: u64,
    broker: RefCell<Broker<VectorMemory>>,
    net: Rc<RefCell<Net>>,
    armed: Cell<Option<u64>>,
    generation: Cell<u64>,
}

impl SimBroker {
    /// Install or upgrade: open the broker on `memory` and run the real post-upgrade logic.
    fn start(id: Principal, epoch: u64, memory: VectorMemory, net: Rc<RefCell<Net>>, window: u32) -> Self {
        let now = net.borrow().now;
        let update = (epoch == 0)
            .then(|| async_flow_client::ConfigUpdate { max_in_flight_per_target: Some(window), ..Default::default() });
        let broker = Broker::open(memory, id, update, now).expect("valid config");
        let rt = SimBroker(Rc::new(BrokerShared {
            id,
            epoch,
            broker: RefCell::new(broker),
            net,
            armed: Cell::new(None),
            generation: Cell::new(0),
        }));
        driver::rearm_after_upgrade(&rt);
        rt
    }

    pub fn broker(&self) -> std::cell::Ref<'_, Broker<VectorMemory>> {
        self.0.broker.borrow()
    }
}

impl CanisterRuntime for SimBroker {
    type Memory = VectorMemory;

    fn with_broker<R>(&self, f: impl FnOnce(&mut Broker<VectorMemory>) -> R) -> R {
        f(&mut self.0.broker.borrow_mut())
    }

    fn time(&self) -> u64 {
        self.0.net.borrow().now
    }

    fn instruction_counter(&self) -> u64 {
        0
    }

    fn send_oneway(&self, target: Principal, m: &str, arg: Vec<u8>) -> Result<(), DeliveryError> {
        let mut net = self.0.net.borrow_mut();
        let refuse = net.plan.refuse;
        if net.rng.chance(refuse) {
            net.log(|n| format!("{m} → {} REFUSED synchronously", n.name(&target)));
            return Err(DeliveryError::SendRefused);
        }
        let packet = match m {
            method::NEW_MESSAGE => Packet::New(candid::decode_one(&arg).expect("NewMessage")),
            method::ACK_ACK => Packet::Fin(candid::decode_one(&arg).expect("AckAck")),
            other => panic!("the broker sends no one-way {other}"),
        };
        net.log(|n| format!("{} broker → {}", describe(&packet), n.name(&target)));
        net.send(self.0.id, target, packet);
        Ok(())
    }

    fn call_bounded(&self, target: Principal, m: &'static str, arg: Vec<u8>, timeout_secs: u32, on_reply: OnReply) {
        let mut net = self.0.net.borrow_mut();
        let call = Request { from: self.0.id, to: target, method: m, arg };
        net.start_call(self.0.epoch, call, timeout_secs as u64 * NS, on_reply);
    }

    fn arm_timer(&self, deadline: u64) {
        let generation = self.0.generation.get() + 1;
        self.0.generation.set(generation);
        self.0.armed.set(Some(deadline));
        self.0.net.borrow_mut().schedule(deadline, Ev::BrokerTimer { epoch: self.0.epoch, generation });
    }

    fn armed_deadline(&self) -> Option<u64> {
        self.0.armed.get()
    }

    fn fetch_entropy(&self, on_bytes: Box<dyn FnOnce(Vec<u8>)>) {
        let bytes: Vec<u8> = {
            let mut net = self.0.net.borrow_mut();
            (0..32).map(|_| net.rng.next_u64() as u8).collect()
        };
        on_bytes(bytes);
    }

    fn record_event(&self, event: Event) {
        let mut net = self.0.net.borrow_mut();
        net.log(|n| {
            let mut line = format!("broker: {event}");
            for (p, name) in &n.names {
                line = line.replace(&p.to_text(), name);
            }
            line
        });
        let now = net.now;
        net.broker_events.push((now, event));
    }
}

// ----- receivers and senders --------------------------------------------------------------

struct Timer {
    epoch: u64,
    generation: u64,
    armed: Option<u64>,
}

impl Timer {
    fn new() -> Self {
        Timer { epoch: 0, generation: 0, armed: None }
    }

    /// Arms for `next` unless an earlier deadline is armed; returns the event to schedule.
    fn arm(&mut self, next: Option<u64>) -> Option<(u64, u64, u64)> {
        let next = next?;
        if self.armed.is_some_and(|at| at <= next) {
            return None;
        }
        self.generation += 1;
        self.armed = Some(next);
        Some((next, self.epoch, self.generation))
    }

    fn fires(&mut self, epoch: u64, generation: u64) -> bool {
        let live = epoch == self.epoch && generation == self.generation;
        if live {
            self.armed = None;
        }
        live
    }

    /// Timers do not survive an upgrade.
    fn upgrade(&mut self) {
        self.epoch += 1;
        self.armed = None;
    }
}

/// Restores `memory` to `snapshot`: the IC rolls back a trapped execution.
fn roll_back(memory: &VectorMemory, snapshot: Vec<u8>) {
    *memory.borrow_mut() = snapshot;
}

struct ReceiverNode {
    id: Principal,
    idx: usize,
    memory: VectorMemory,
    config: ReceiverConfig,
    core: ReceiverCore<VectorMemory>,
    timer: Timer,
    /// Committed handler runs per (broker, msg_id), with the payload seen.
    runs: BTreeMap<(Principal, MsgId), (u32, Vec<u8>)>,
}

impl ReceiverNode {
    fn new(id: Principal, idx: usize, broker: Principal) -> Self {
        let memory = VectorMemory::default();
        let config = ReceiverConfig::for_brokers(vec![broker]);
        let core = ReceiverCore::open(memory.clone(), config.clone());
        ReceiverNode { id, idx, memory, config, core, timer: Timer::new(), runs: BTreeMap::new() }
    }

    fn send_acks(&mut self, net: &mut Net, effects: Vec<ReceiverEffect>) {
        for ReceiverEffect::SendAck { broker, ack } in effects {
            if net.rng.chance(net.plan.refuse) {
                net.log(|n| format!("msg={} ACK {} → broker REFUSED synchronously", ack.msg_id, n.name(&self.id)));
                continue;
            }
            net.log(|n| format!("msg={} ACK {} → broker", ack.msg_id, n.name(&self.id)));
            net.send(self.id, broker, Packet::Ack(ack));
        }
        self.rearm(net);
    }

    fn rearm(&mut self, net: &mut Net) {
        if let Some((at, epoch, generation)) = self.timer.arm(self.core.next_deadline()) {
            net.schedule(at, Ev::ReceiverTimer { idx: self.idx, epoch, generation });
        }
    }

    fn on_new(&mut self, net: &mut Net, from: Principal, msg: NewMessage) {
        let trap = net.receiver_traps < net.plan.max_receiver_traps && net.rng.chance(net.plan.receiver_trap);
        net.receiver_traps += u32::from(trap);
        let snapshot = trap.then(|| self.memory.borrow().clone());
        let msg_id = msg.msg_id;
        let mut ran = None;
        let result = self.core.on_new_message(from, msg, net.now, |d| {
            ran = Some(d.payload.clone());
            // The application: count what it got and reply with the payload's length.
            candid::encode_one(d.payload.len() as u64).expect("encodes")
        });
        if let Some(snapshot) = snapshot {
            roll_back(&self.memory, snapshot);
            self.core = ReceiverCore::open(self.memory.clone(), self.config.clone());
            net.log(|n| format!("msg={msg_id} {} TRAPPED in its handler: execution rolled back", n.name(&self.id)));
            return;
        }
        match result {
            Ok(effects) => {
                if let Some(payload) = ran {
                    net.log(|n| format!("msg={msg_id} {} processed it (handler ran)", n.name(&self.id)));
                    let entry = self.runs.entry((from, msg_id)).or_insert((0, payload));
                    entry.0 += 1;
                } else {
                    net.log(|n| format!("msg={msg_id} {} saw a duplicate NEW: cached ACK", n.name(&self.id)));
                }
                self.send_acks(net, effects);
            }
            Err(e) => net.log(|_| format!("msg={msg_id} refused: {e}")),
        }
    }

    fn on_fin(&mut self, net: &mut Net, from: Principal, fin: AckAck) {
        if self.core.on_ackack(from, fin, net.now).is_ok() {
            self.rearm(net);
        }
    }

    fn on_timer(&mut self, net: &mut Net) {
        let effects = self.core.on_timer(net.now);
        self.send_acks(net, effects);
    }

    fn upgrade(&mut self, net: &mut Net) {
        self.core = ReceiverCore::open(self.memory.clone(), self.config.clone());
        self.timer.upgrade();
        net.log(|n| format!("{} UPGRADED", n.name(&self.id)));
        self.rearm(net);
    }
}

struct SenderNode {
    id: Principal,
    idx: usize,
    memory: VectorMemory,
    config: SenderConfig,
    core: SenderCore<VectorMemory>,
    has_endpoint: bool,
    timer: Timer,
    acks: BTreeMap<MsgId, u32>,
    failures: BTreeMap<MsgId, u32>,
}

impl SenderNode {
    fn new(id: Principal, idx: usize, broker: Principal, has_endpoint: bool) -> Self {
        let memory = VectorMemory::default();
        let config = SenderConfig::new(broker);
        let core = SenderCore::open(memory.clone(), config.clone());
        SenderNode {
            id,
            idx,
            memory,
            config,
            core,
            has_endpoint,
            timer: Timer::new(),
            acks: BTreeMap::new(),
            failures: BTreeMap::new(),
        }
    }

    /// A callback from `from`; the outcome goes back to the caller.
    fn on_call(&mut self, net: &mut Net, from: Principal, m: &str, arg: &[u8]) -> Result<(), DeliveryError> {
        if !self.has_endpoint {
            return Err(DeliveryError::CallRejected { reject_code: 3 });
        }
        let trap = net.rng.chance(net.plan.callback_trap);
        let snapshot = trap.then(|| self.memory.borrow().clone());
        let now = net.now;
        let first = match m {
            method::ACK => {
                let ack: SenderAck = candid::decode_one(arg).expect("SenderAck");
                self.core.on_ack(from, ack, now).map(|a| a.map(|a| (a.msg_id, true)))
            }
            method::FAILED => {
                let failed: SenderFailed = candid::decode_one(arg).expect("SenderFailed");
                self.core.on_failed(from, failed, now).map(|f| f.map(|f| (f.msg_id, false)))
            }
            other => panic!("no sender method {other}"),
        };
        if let Some(snapshot) = snapshot {
            roll_back(&self.memory, snapshot);
            self.core = SenderCore::open(self.memory.clone(), self.config.clone());
            net.log(|n| format!("{m} at {} TRAPPED: rolled back", n.name(&self.id)));
            return Err(DeliveryError::CallRejected { reject_code: 5 });
        }
        match first {
            Ok(Some((msg_id, true))) => {
                *self.acks.entry(msg_id).or_default() += 1;
                net.log(|n| format!("msg={msg_id} {} handled the ack callback", n.name(&self.id)));
            }
            Ok(Some((msg_id, false))) => {
                *self.failures.entry(msg_id).or_default() += 1;
                net.log(|n| format!("msg={msg_id} {} handled the failure callback", n.name(&self.id)));
            }
            Ok(None) => net.log(|n| format!("{m} at {}: duplicate, ignored", n.name(&self.id))),
            Err(_) => return Err(DeliveryError::CallRejected { reject_code: 4 }),
        }
        if let Some((at, epoch, generation)) = self.timer.arm(self.core.next_deadline()) {
            net.schedule(at, Ev::SenderTimer { idx: self.idx, epoch, generation });
        }
        Ok(())
    }

    fn on_timer(&mut self, net: &mut Net) {
        self.core.on_timer(net.now);
        if let Some((at, epoch, generation)) = self.timer.arm(self.core.next_deadline()) {
            net.schedule(at, Ev::SenderTimer { idx: self.idx, epoch, generation });
        }
    }
}

/// What the world remembers of one accepted message.
pub struct Accepted {
    pub sender: usize,
    pub target: usize,
    pub payload: Vec<u8>,
    pub max_attempts: u32,
}

pub struct World {
    pub net: Rc<RefCell<Net>>,
    pub broker_id: Principal,
    broker_memory: VectorMemory,
    broker_epoch: u64,
    pub broker: SimBroker,
    window: u32,
    receivers: Vec<ReceiverNode>,
    senders: Vec<SenderNode>,
    spoofer: Principal,
    pub accepted: BTreeMap<MsgId, Accepted>,
    pub violations: Violations,
    steps: u64,
}

impl World {
    pub fn new(seed: u64, scenario: &Scenario, trace: bool) -> Self {
        let broker_id = canister(1000);
        let spoofer = canister(999);
        let mut names = BTreeMap::from([(broker_id, "broker".to_string()), (spoofer, "spoofer".to_string())]);
        let receivers: Vec<ReceiverNode> = (0..scenario.receivers)
            .map(|i| {
                let id = canister(100 + i as u16);
                names.insert(id, format!("receiver-{}", (b'a' + i as u8) as char));
                ReceiverNode::new(id, i, broker_id)
            })
            .collect();
        let senders: Vec<SenderNode> = (0..scenario.senders)
            .map(|i| {
                let id = canister(200 + i as u16);
                names.insert(id, format!("sender-{}", i + 1));
                SenderNode::new(id, i, broker_id, !scenario.senders_without_endpoint.contains(&i))
            })
            .collect();
        let net = Rc::new(RefCell::new(Net {
            now: T0,
            seq: 0,
            queue: BinaryHeap::new(),
            rng: Rng::new(seed),
            plan: scenario.faults.clone(),
            channels: BTreeMap::new(),
            calls: BTreeMap::new(),
            next_call: 0,
            broker_events: Vec::new(),
            names,
            trace: trace.then(Vec::new),
            receiver_traps: 0,
        }));
        let broker_memory = VectorMemory::default();
        let broker = SimBroker::start(broker_id, 0, broker_memory.clone(), net.clone(), scenario.window);
        let mut world = World {
            net,
            broker_id,
            broker_memory,
            broker_epoch: 0,
            broker,
            window: scenario.window,
            receivers,
            senders,
            spoofer,
            accepted: BTreeMap::new(),
            violations: Violations::default(),
            steps: 0,
        };
        world.plan_traffic(scenario);
        world
    }

    fn plan_traffic(&mut self, scenario: &Scenario) {
        let mut net = self.net.borrow_mut();
        let window = scenario.enqueue_window_secs * NS;
        for n in 0..scenario.messages {
            let at = T0 + net.rng.below(window + 1);
            let sender = net.rng.below(scenario.senders as u64) as usize;
            let target = net.rng.below(scenario.receivers as u64) as usize;
            let key = net.rng.chance(0.5).then(|| format!("order-{n}"));
            let payload = format!("message {n} from sender-{}", sender + 1).into_bytes();
            net.schedule(at, Ev::Enqueue { sender, target, payload, key, repeat_of: None });
        }
        let busy = window + 2 * 3600 * NS;
        // Upgrades also come in quiet times (say, during the 24 h retention),
        // when only the broker's own timer can move anything forward.
        let lifetime = window + 26 * 3600 * NS;
        for _ in 0..scenario.faults.broker_upgrades {
            let at = T0 + net.rng.below(lifetime);
            net.schedule(at, Ev::UpgradeBroker);
        }
        for secs in &scenario.faults.broker_upgrades_at_secs {
            net.schedule(T0 + secs * NS, Ev::UpgradeBroker);
        }
        for _ in 0..scenario.faults.receiver_upgrades {
            let at = T0 + net.rng.below(lifetime);
            let idx = net.rng.below(scenario.receivers as u64) as usize;
            net.schedule(at, Ev::UpgradeReceiver(idx));
        }
        for _ in 0..scenario.faults.spoofed_acks {
            let at = T0 + net.rng.below(busy);
            net.schedule(at, Ev::Spoof);
        }
        for _ in 0..scenario.cancels {
            let at = T0 + net.rng.below(busy);
            net.schedule(at, Ev::Cancel);
        }
    }

    /// Runs until nothing is left to happen (or the horizon): every timer has
    /// run dry once every message is collected everywhere.
    pub fn run(&mut self) {
        loop {
            let next = self.net.borrow_mut().queue.pop();
            let Some(Scheduled { at, ev, .. }) = next else { break };
            self.steps += 1;
            if at > T0 + HORIZON || self.steps > MAX_STEPS {
                self.violations.push(format!("did not quiesce: still busy at +{}s", (at - T0) / NS));
                break;
            }
            self.net.borrow_mut().now = at;
            self.dispatch(ev);
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { from, to, packet } => self.deliver(from, to, packet),
            Ev::CallReply { call_id, result } => {
                let call = self.net.borrow_mut().calls.remove(&call_id);
                if let Some(call) = call {
                    if call.epoch == self.broker_epoch {
                        (call.on_reply)(result);
                    } else {
                        self.net.borrow_mut().log(|_| "callback outcome lost: the broker was upgraded".into());
                    }
                }
            }
            Ev::BrokerTimer { epoch, generation } => {
                let b = &self.broker.0;
                if epoch == self.broker_epoch && generation == b.generation.get() {
                    b.armed.set(None);
                    driver::run_timer(&self.broker);
                }
            }
            Ev::ReceiverTimer { idx, epoch, generation } => {
                let mut net = self.net.borrow_mut();
                let r = &mut self.receivers[idx];
                if r.timer.fires(epoch, generation) {
                    r.on_timer(&mut net);
                }
            }
            Ev::SenderTimer { idx, epoch, generation } => {
                let mut net = self.net.borrow_mut();
                let s = &mut self.senders[idx];
                if s.timer.fires(epoch, generation) {
                    s.on_timer(&mut net);
                }
            }
            Ev::Enqueue { sender, target, payload, key, repeat_of } => {
                self.enqueue(sender, target, payload, key, repeat_of)
            }
            Ev::Spoof => self.spoof(),
            Ev::Cancel => self.cancel(),
            Ev::UpgradeBroker => {
                self.broker_epoch += 1;
                self.net.borrow_mut().log(|_| "broker UPGRADED: heap dropped, reopened from stable memory".into());
                self.broker = SimBroker::start(
                    self.broker_id,
                    self.broker_epoch,
                    self.broker_memory.clone(),
                    self.net.clone(),
                    self.window,
                );
            }
            Ev::UpgradeReceiver(idx) => {
                let mut net = self.net.borrow_mut();
                self.receivers[idx].upgrade(&mut net);
            }
        }
    }

    fn deliver(&mut self, from: Principal, to: Principal, packet: Packet) {
        if to == self.broker_id {
            let Packet::Ack(ack) = packet else { panic!("the broker only receives ACKs here") };
            let now = self.net.borrow().now;
            let (_, effects) = self.broker.with_broker(|b| b.on_ack(from, ack, now));
            driver::execute(&self.broker, effects);
            return;
        }
        let mut net = self.net.borrow_mut();
        if let Some(r) = self.receivers.iter_mut().find(|r| r.id == to) {
            match packet {
                Packet::New(new) => r.on_new(&mut net, from, new),
                Packet::Fin(fin) => r.on_fin(&mut net, from, fin),
                _ => panic!("receivers get NEW and FIN"),
            }
        } else if let Some(s) = self.senders.iter_mut().find(|s| s.id == to) {
            let Packet::Call { call_id, method: m, arg } = packet else { panic!("senders get callbacks") };
            let result = s.on_call(&mut net, from, m, &arg);
            net.reply(call_id, result);
        }
    }

    fn enqueue(
        &mut self,
        sender: usize,
        target: usize,
        payload: Vec<u8>,
        key: Option<String>,
        repeat_of: Option<MsgId>,
    ) {
        let (now, include, max_attempts) = {
            let mut net = self.net.borrow_mut();
            let short = net.rng.chance(0.3).then(|| net.rng.between(1, 3) as u32);
            (net.now, net.rng.chance(0.3), short)
        };
        let options = EnqueueOptions {
            idempotency_key: key.clone(),
            include_sent_payload: Some(include),
            max_attempts,
            ..Default::default()
        };
        let args = EnqueueArgs { target: self.receivers[target].id, payload: payload.clone(), options: Some(options) };
        let caller = self.senders[sender].id;
        let result = self.broker.with_broker(|b| b.enqueue(caller, args, 0, now));
        let (accepted, effects) = match result {
            Ok(ok) => ok,
            Err(e) => {
                self.violations.push(format!("enqueue refused: {e:?}"));
                return;
            }
        };
        let id = accepted.msg_id;
        match repeat_of {
            Some(first) if first != id => {
                self.violations.push(format!("repeated idempotency key gave {id}, first call gave {first}"))
            }
            Some(_) => self.net.borrow_mut().log(|_| format!("msg={id} enqueue repeated with its key: same msg_id")),
            None => {
                let max_attempts = max_attempts.unwrap_or(self.broker.broker().config().max_attempts);
                self.accepted.insert(id, Accepted { sender, target, payload: payload.clone(), max_attempts });
                let mut net = self.net.borrow_mut();
                let repeat = net.plan.repeated_enqueues;
                if key.is_some() && net.rng.chance(repeat) {
                    let at = now + net.rng.between(NS, 600 * NS);
                    net.schedule(at, Ev::Enqueue { sender, target, payload, key, repeat_of: Some(id) });
                }
            }
        }
        driver::execute(&self.broker, effects);
    }

    /// A canister that is not the target sends a well-formed ACK with the
    /// right hash: it must change nothing.
    fn spoof(&mut self) {
        let pick = {
            let mut net = self.net.borrow_mut();
            (!self.accepted.is_empty()).then(|| net.rng.below(self.accepted.len() as u64) as usize)
        };
        let Some(pick) = pick else { return };
        let (id, accepted) = self.accepted.iter().nth(pick).expect("in range");
        let ack = Ack { msg_id: *id, hash: Some(payload_hash(&accepted.payload)), payload: b"forged".to_vec() };
        let (id, now) = (*id, self.net.borrow().now);
        let before = self.broker.broker().record(id);
        let (result, effects) = self.broker.with_broker(|b| b.on_ack(self.spoofer, ack, now));
        self.net.borrow_mut().log(|_| format!("msg={id} spoofed ACK from spoofer: {result:?}"));
        if result.is_ok() || !effects.is_empty() || self.broker.broker().record(id) != before {
            self.violations.push(format!("msg={id}: a spoofed ACK changed state"));
        }
        driver::execute(&self.broker, effects);
    }

    /// The sender cancels one of its messages (only Queued or AwaitingAck ones can be).
    fn cancel(&mut self) {
        let pick = {
            let mut net = self.net.borrow_mut();
            (!self.accepted.is_empty()).then(|| net.rng.below(self.accepted.len() as u64) as usize)
        };
        let Some(pick) = pick else { return };
        let (id, a) = self.accepted.iter().nth(pick).expect("in range");
        let (id, caller, now) = (*id, self.senders[a.sender].id, self.net.borrow().now);
        let result = self.broker.with_broker(|b| b.cancel(caller, false, id, now));
        self.net.borrow_mut().log(|_| format!("msg={id} cancel by its sender: {:?}", result.as_ref().map(|_| ())));
        if let Ok(effects) = result {
            driver::execute(&self.broker, effects);
        }
    }

    /// Checks the invariants of DESIGN.md once the run has quiesced.
    pub fn check(&mut self) -> Report {
        let events = self.net.borrow().broker_events.clone();
        let report = Report::new(&events, &self.accepted, &self.broker.broker().stats(self.net.borrow().now));
        let v = &mut self.violations;

        // Terminal outcome, attempts and "sender told", from the broker's own events.
        let mut last_terminal: BTreeMap<MsgId, &Event> = BTreeMap::new();
        let mut collected: BTreeMap<MsgId, u32> = BTreeMap::new();
        let mut gave_up: BTreeMap<MsgId, bool> = BTreeMap::new();
        for (_, e) in &events {
            let id = e.msg_id();
            match e {
                Event::Delivered { .. }
                | Event::DeadLettered { .. }
                | Event::Corrupted { .. }
                | Event::Cancelled { .. } => {
                    last_terminal.insert(id, e);
                }
                Event::Collected { .. } => *collected.entry(id).or_default() += 1,
                Event::CallbackGaveUp { .. } => {
                    gave_up.insert(id, true);
                }
                Event::NewSent { attempt, .. } => {
                    if let Some(a) = self.accepted.get(&id) {
                        if *attempt > a.max_attempts {
                            v.push(format!("msg={id}: attempt {attempt} exceeds max_attempts {}", a.max_attempts));
                        }
                    }
                }
                _ => {}
            }
        }
        for (id, a) in &self.accepted {
            let sender = &self.senders[a.sender];
            let told = gave_up.contains_key(id);
            match last_terminal.get(id) {
                None => v.push(format!("msg={id}: lost, never reached a terminal state")),
                Some(Event::Delivered { .. }) => {
                    let target = &self.receivers[a.target];
                    match target.runs.get(&(self.broker_id, *id)) {
                        Some((1, seen)) if *seen == a.payload => {}
                        Some((1, _)) => {
                            v.push(format!("msg={id}: delivered although the receiver got an altered payload"))
                        }
                        other => {
                            v.push(format!("msg={id}: delivered but the handler ran {:?} times", other.map(|r| r.0)))
                        }
                    }
                    let acks = sender.acks.get(id).copied().unwrap_or(0);
                    if acks != 1 && !(acks == 0 && told) {
                        v.push(format!("msg={id}: delivered, sender's ack handler ran {acks} times"));
                    }
                }
                Some(Event::DeadLettered { .. }) | Some(Event::Corrupted { .. }) => {
                    if sender.failures.get(id).copied().unwrap_or(0) != 1 && !told {
                        v.push(format!("msg={id}: failed but the sender was never told"));
                    }
                }
                Some(_) => {}
            }
            if collected.get(id) != Some(&1) {
                v.push(format!("msg={id}: tombstone collected {:?} times", collected.get(id)));
            }
        }
        for (i, r) in self.receivers.iter().enumerate() {
            for ((broker, id), (runs, _)) in &r.runs {
                if *runs > 1 {
                    v.push(format!("msg={id}: receiver handler ran {runs} times for ({broker}, msg_id)"));
                }
                match self.accepted.get(id) {
                    None => v.push(format!("msg={id}: processed but never enqueued")),
                    Some(a) if a.target != i => {
                        v.push(format!("msg={id}: processed by a canister other than its target"))
                    }
                    _ => {}
                }
            }
            if !r.core.is_empty() {
                v.push(format!("receiver {i}: dedup state not empty after the window ({} records)", r.core.len()));
            }
        }
        for (i, s) in self.senders.iter().enumerate() {
            for (id, n) in s.acks.iter().chain(s.failures.iter()) {
                if *n > 1 {
                    v.push(format!("msg={id}: sender {i} handled the same callback {n} times"));
                }
            }
            if !s.core.is_empty() {
                v.push(format!("sender {i}: callback dedup state not empty after the window"));
            }
        }
        if !self.broker.broker().is_empty() {
            v.push(format!("broker not empty after retention: {} records", self.broker.broker().message_count()));
        }
        report
    }

    /// The trace of a traced run (the demo).
    pub fn take_trace(&mut self) -> Vec<String> {
        self.net.borrow_mut().trace.take().unwrap_or_default()
    }

    pub fn name(&self, p: &Principal) -> String {
        self.net.borrow().name(p)
    }

    pub fn receiver_name(&self, idx: usize) -> String {
        self.name(&self.receivers[idx].id)
    }

    pub fn sender_name(&self, idx: usize) -> String {
        self.name(&self.senders[idx].id)
    }
}
