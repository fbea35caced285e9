//! The broker's protocol state machine.
//!
//! It never calls `ic_cdk`: every input carries `now` (IC time in
//! nanoseconds) and the caller's identity, and every output is a value: the
//! [`Effect`]s the caller must perform, and [`Event`]s for the log. Its state
//! lives in stable structures over any `Memory`, so native tests, the
//! simulation and the canister run the same code; an upgrade is
//! [`Broker::open`] on the same memory.
//!
//! Every message that is not terminal has exactly one entry in the schedule,
//! keyed by `(deadline, msg_id)`, except a `Queued` one, which waits in its
//! target's FIFO. Terminal records are scheduled for removal after the
//! retention period. The canister arms one timer at [`Broker::next_deadline`].

mod effects;
mod record;
mod state;

pub use effects::{Callback, Effect, Event};
pub use record::MessageRecord;
pub use state::{default_config, BrokerState, StoredConfig};

use crate::storage::{
    memory_id, Blob, Digest, IdKey, IdempotencyKey, PrincipalKey, PrincipalMsgKey, ScheduleKey, SenderUsage,
    TargetCounters,
};
use async_flow_client::{
    payload_hash, AckAck, Config, ConfigUpdate, CorruptionReport, DeliveryError, EnqueueArgs, EnqueueError,
    FailureReason, ListError, ListFilter, ManageError, MessagePage, MessageState, MessageStatus, MsgId, NewMessage,
    SenderAck, SenderFailed, SenderNotification, Stats, TargetLoad,
};
use candid::Principal;
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::{Memory, StableBTreeMap, StableCell};
use sha2::{Digest as _, Sha256};

const NS: u64 = 1_000_000_000;
/// Extra wait after a callback's own timeout before its result counts as lost.
const CALLBACK_GRACE_NS: u64 = 60 * NS;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 64;
/// Most messages in one `list_messages` page.
pub const MAX_PAGE: u32 = 100;
/// Bounds of a per-message `ack_timeout_seconds`.
pub const ACK_TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 60..=86_400;

type VM<M> = VirtualMemory<M>;

/// What a timer run may still do; the canister checks the instruction counter.
pub trait WorkBudget {
    /// Whether the run should stop and leave the rest to a new run.
    fn exhausted(&self) -> bool;
}

/// A budget limited only by `Config::timer_batch_limit`.
pub struct Unlimited;

impl WorkBudget for Unlimited {
    fn exhausted(&self) -> bool {
        false
    }
}

/// Why an ACK changed nothing. The ACK endpoint replies `()` either way, so
/// that the counters it bumps are not rolled back by a reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckRejected {
    /// No record of this msg_id (never sent, or removed after retention).
    UnknownMessage,
    /// The caller is not the message's target.
    NotTarget,
}

/// What `enqueue` accepted: the id, and the cycles to take from the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub msg_id: MsgId,
    pub fee_cycles: u128,
}

/// The broker: its stable structures plus a heap copy of the small cells.
pub struct Broker<M: Memory> {
    self_id: Principal,
    config: Config,
    config_cell: StableCell<StoredConfig, VM<M>>,
    state: BrokerState,
    state_cell: StableCell<BrokerState, VM<M>>,
    messages: StableBTreeMap<IdKey, MessageRecord, VM<M>>,
    payloads: StableBTreeMap<IdKey, Blob, VM<M>>,
    replies: StableBTreeMap<IdKey, Blob, VM<M>>,
    schedule: StableBTreeMap<ScheduleKey, (), VM<M>>,
    target_fifo: StableBTreeMap<PrincipalMsgKey, (), VM<M>>,
    targets: StableBTreeMap<PrincipalKey, TargetCounters, VM<M>>,
    by_sender: StableBTreeMap<PrincipalMsgKey, (), VM<M>>,
    by_target: StableBTreeMap<PrincipalMsgKey, (), VM<M>>,
    senders: StableBTreeMap<PrincipalKey, SenderUsage, VM<M>>,
    idempotency: StableBTreeMap<IdempotencyKey, IdKey, VM<M>>,
    idempotency_of: StableBTreeMap<IdKey, Digest, VM<M>>,
    pending: StableBTreeMap<IdKey, (), VM<M>>,
    events: Vec<Event>,
}

/// Whether `p` is a canister id (an opaque id, class byte 0x01), not a user.
pub fn is_canister(p: &Principal) -> bool {
    let raw = p.as_slice();
    raw.len() == 10 && raw.last() == Some(&1)
}

fn backoff_ns(failures: u32, cap_secs: u32) -> u64 {
    let exp = failures.saturating_sub(1).min(30);
    (1u64 << exp).min(cap_secs as u64) * NS
}

fn fifo_range(target: Principal) -> std::ops::RangeInclusive<PrincipalMsgKey> {
    PrincipalMsgKey { principal: target, msg_id: MsgId(0) }..=PrincipalMsgKey {
        principal: target,
        msg_id: MsgId(u128::MAX),
    }
}

impl<M: Memory> Broker<M> {
    /// Opens the broker kept in `memory` (fresh or from before an upgrade),
    /// then applies `update` to its configuration.
    pub fn open(memory: M, self_id: Principal, update: Option<ConfigUpdate>, now: u64) -> Result<Self, ManageError> {
        let mm = MemoryManager::init(memory);
        let config_cell = StableCell::init(mm.get(memory_id::CONFIG), StoredConfig(default_config()));
        let mut initial_state = BrokerState::default();
        // Until `raw_rand` answers, ids are unique (monotonic) but guessable.
        initial_state.mix_seed(&[self_id.as_slice(), &now.to_be_bytes()].concat());
        initial_state.seeded = false;
        let state_cell = StableCell::init(mm.get(memory_id::STATE), initial_state);
        let mut broker = Broker {
            self_id,
            config: config_cell.get().0.clone(),
            state: state_cell.get().clone(),
            config_cell,
            state_cell,
            messages: StableBTreeMap::init(mm.get(memory_id::MESSAGES)),
            payloads: StableBTreeMap::init(mm.get(memory_id::PAYLOADS)),
            replies: StableBTreeMap::init(mm.get(memory_id::REPLIES)),
            schedule: StableBTreeMap::init(mm.get(memory_id::SCHEDULE)),
            target_fifo: StableBTreeMap::init(mm.get(memory_id::TARGET_FIFO)),
            targets: StableBTreeMap::init(mm.get(memory_id::TARGETS)),
            by_sender: StableBTreeMap::init(mm.get(memory_id::BY_SENDER)),
            by_target: StableBTreeMap::init(mm.get(memory_id::BY_TARGET)),
            senders: StableBTreeMap::init(mm.get(memory_id::SENDERS)),
            idempotency: StableBTreeMap::init(mm.get(memory_id::IDEMPOTENCY)),
            idempotency_of: StableBTreeMap::init(mm.get(memory_id::IDEMPOTENCY_OF)),
            pending: StableBTreeMap::init(mm.get(memory_id::PENDING)),
            events: Vec::new(),
        };
        if let Some(update) = update {
            broker.set_config(update)?;
        }
        Ok(broker)
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Step 1: a sender asks for a message to be delivered.
    pub fn enqueue(
        &mut self,
        caller: Principal,
        args: EnqueueArgs,
        cycles_available: u128,
        now: u64,
    ) -> Result<(Accepted, Vec<Effect>), EnqueueError> {
        let result = self.try_enqueue(caller, args, cycles_available, now);
        if result.is_err() {
            self.state.totals.rejected_enqueues += 1;
        }
        self.flush();
        result
    }

    fn try_enqueue(
        &mut self,
        caller: Principal,
        args: EnqueueArgs,
        cycles_available: u128,
        now: u64,
    ) -> Result<(Accepted, Vec<Effect>), EnqueueError> {
        if caller == Principal::anonymous() {
            return Err(EnqueueError::AnonymousCaller);
        }
        if let Some(allowed) = &self.config.allowed_senders {
            if !allowed.contains(&caller) {
                return Err(EnqueueError::NotAllowed);
            }
        }
        let t = args.target;
        if t == self.self_id || t == Principal::management_canister() || !is_canister(&t) {
            return Err(EnqueueError::InvalidTarget);
        }
        let size = args.payload.len() as u64;
        if size > self.config.max_payload_bytes {
            return Err(EnqueueError::PayloadTooLarge { size, max: self.config.max_payload_bytes });
        }
        let options = args.options.unwrap_or_default();
        let invalid = |field: &str, reason: String| EnqueueError::InvalidOption { field: field.into(), reason };
        let max_attempts = options.max_attempts.unwrap_or(self.config.max_attempts);
        if max_attempts == 0 || max_attempts > self.config.max_attempts_limit {
            return Err(invalid("max_attempts", format!("must be 1..={}", self.config.max_attempts_limit)));
        }
        let ack_timeout_secs = options.ack_timeout_seconds.unwrap_or(self.config.ack_timeout_seconds);
        if !ACK_TIMEOUT_RANGE.contains(&ack_timeout_secs) {
            return Err(invalid("ack_timeout_seconds", format!("must be {ACK_TIMEOUT_RANGE:?}")));
        }
        let idempotency = match &options.idempotency_key {
            Some(key) if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES => {
                return Err(invalid("idempotency_key", format!("must be 1..={MAX_IDEMPOTENCY_KEY_BYTES} bytes")));
            }
            Some(key) => {
                let k = IdempotencyKey { sender: caller, key_digest: Sha256::digest(key.as_bytes()).into() };
                if let Some(IdKey(existing)) = self.idempotency.get(&k) {
                    self.state.totals.dedup_hits += 1;
                    return Ok((Accepted { msg_id: existing, fee_cycles: 0 }, vec![]));
                }
                Some(k)
            }
            None => None,
        };
        if let Some(usage) = self.quota_exceeded(caller, size) {
            return Err(EnqueueError::SenderQuotaExceeded {
                pending_messages: usage.pending_messages,
                pending_bytes: usage.pending_bytes,
            });
        }
        if self.messages.len() >= self.config.max_stored_messages
            || self.state.stored_bytes + size > self.config.max_stored_bytes
        {
            return Err(EnqueueError::Busy);
        }
        let fee = self.config.fee_cycles_per_message;
        if cycles_available < fee {
            return Err(EnqueueError::InsufficientCycles { required: fee, attached: cycles_available });
        }

        let msg_id = self.state.next_msg_id(now);
        let mut rec = MessageRecord {
            state: MessageState::Queued,
            sender: caller,
            target: t,
            attempts: 0,
            max_attempts,
            ack_timeout_secs,
            send_refusals: 0,
            payload_len: size as u32,
            sent_hash: payload_hash(&args.payload),
            received_hash: None,
            include_sent_payload: options.include_sent_payload.unwrap_or(false),
            notify_sender: options.notify_sender.unwrap_or(true) && is_canister(&caller),
            has_idempotency_key: idempotency.is_some(),
            created_at: now,
            updated_at: now,
            deadline: None,
            acked_at: None,
            notification: SenderNotification::NotYet,
            callback_attempts: 0,
            callback_serial: 0,
            callback_in_flight: false,
            last_error: None,
        };
        if !rec.notify_sender {
            rec.notification = SenderNotification::NotRequested;
        }
        // The first NEW usually goes at once: keep a copy rather than read it back.
        let first_new_payload = args.payload.clone();
        self.store_payload(msg_id, args.payload);
        self.by_sender.insert(PrincipalMsgKey { principal: caller, msg_id }, ());
        self.by_target.insert(PrincipalMsgKey { principal: t, msg_id }, ());
        if let Some(k) = idempotency {
            self.idempotency.insert(k, IdKey(msg_id));
            self.idempotency_of.insert(IdKey(msg_id), Digest(k.key_digest));
        }
        *self.state.count_mut(MessageState::Queued) += 1;
        self.enter_pending(msg_id, &rec);
        self.state.totals.enqueued += 1;
        self.events.push(Event::Enqueued { msg_id, sender: caller, target: t, size: size as u32 });

        let mut effects = Vec::new();
        self.admit(msg_id, rec, now, &mut effects, Some(first_new_payload));
        Ok((Accepted { msg_id, fee_cycles: fee }, effects))
    }

    /// Step 3: the ACK of a receiver. Only the message's target may ACK it.
    pub fn on_ack(
        &mut self,
        caller: Principal,
        ack: async_flow_client::Ack,
        now: u64,
    ) -> (Result<(), AckRejected>, Vec<Effect>) {
        let mut effects = Vec::new();
        let result = self.handle_ack(caller, ack, now, &mut effects);
        self.flush();
        (result, effects)
    }

    fn handle_ack(
        &mut self,
        caller: Principal,
        ack: async_flow_client::Ack,
        now: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), AckRejected> {
        let id = ack.msg_id;
        let Some(mut rec) = self.messages.get(&IdKey(id)) else {
            self.state.totals.unknown_acks += 1;
            self.events.push(Event::UnknownAck { msg_id: id, caller });
            return Err(AckRejected::UnknownMessage);
        };
        if caller != rec.target {
            self.state.totals.spoofed_acks += 1;
            self.events.push(Event::SpoofedAck { msg_id: id, caller });
            return Err(AckRejected::NotTarget);
        }
        let fin = |hash| Effect::SendFin { target: caller, fin: AckAck { msg_id: id, hash } };
        match rec.state {
            MessageState::Acked | MessageState::Delivered | MessageState::Corrupted => {
                // The FIN was lost (or is on its way): send it again.
                self.events.push(Event::DuplicateAck { msg_id: id });
                effects.push(fin(ack.hash));
                return Ok(());
            }
            MessageState::Queued | MessageState::AwaitingAck | MessageState::Failed | MessageState::Cancelled => {}
        }
        self.leave_window(id, &mut rec, now, effects);
        rec.received_hash = ack.hash;
        rec.send_refusals = 0;
        rec.callback_attempts = 0;
        rec.callback_in_flight = false;
        effects.push(fin(ack.hash));
        match ack.hash {
            Some(received) if received != rec.sent_hash => {
                self.state.totals.corrupted += 1;
                self.events.push(Event::Corrupted {
                    msg_id: id,
                    expected_hash: rec.sent_hash,
                    received_hash: received,
                });
                self.store_reply(id, ack.payload);
                self.set_state(id, &mut rec, MessageState::Corrupted, now);
            }
            _ => {
                rec.acked_at = Some(now);
                self.events.push(Event::Acked { msg_id: id });
                if rec.notify_sender {
                    self.store_reply(id, ack.payload);
                }
                if !(rec.notify_sender && rec.include_sent_payload) {
                    self.drop_payload(id);
                }
                self.set_state(id, &mut rec, MessageState::Acked, now);
            }
        }
        self.begin_notification(id, &mut rec, now, effects);
        self.messages.insert(IdKey(id), rec);
        Ok(())
    }

    /// The IC refused the NEW of `effect` synchronously: take the attempt
    /// back and try again after a backoff (1 s doubling, capped at the ACK timeout).
    pub fn on_new_refused(&mut self, msg_id: MsgId, attempt: u32, error: DeliveryError, now: u64) {
        if let Some(mut rec) = self.messages.get(&IdKey(msg_id)) {
            if rec.state == MessageState::AwaitingAck && rec.attempts == attempt {
                rec.attempts -= 1;
                rec.send_refusals += 1;
                rec.last_error = Some(error);
                self.state.totals.send_failures += 1;
                self.events.push(Event::NewRefused { msg_id, attempt, error });
                let at = now + backoff_ns(rec.send_refusals, rec.ack_timeout_secs);
                self.reschedule(msg_id, &mut rec, Some(at));
                self.messages.insert(IdKey(msg_id), rec);
            }
        }
        self.flush();
    }

    /// The IC refused a FIN synchronously. Nothing to redo: the receiver
    /// re-sends its ACK until a FIN arrives, and each ACK gets a FIN.
    pub fn on_fin_refused(&mut self) {
        self.state.totals.send_failures += 1;
        self.flush();
    }

    /// The outcome of the callback `serial` of `msg_id`. Stale outcomes
    /// (a later callback was issued, or the message moved on) are ignored.
    pub fn on_callback_result(&mut self, msg_id: MsgId, serial: u32, result: Result<(), DeliveryError>, now: u64) {
        if let Some(mut rec) = self.messages.get(&IdKey(msg_id)) {
            if rec.callback_in_flight
                && rec.callback_serial == serial
                && rec.notification == SenderNotification::Pending
            {
                self.settle_callback(msg_id, &mut rec, result, now);
                self.messages.insert(IdKey(msg_id), rec);
            }
        }
        self.flush();
    }

    /// Handles what is due at `now`, oldest deadline first, until
    /// `timer_batch_limit` items or the budget is spent. Returns the effects;
    /// if more is due, [`Broker::next_deadline`] is `<= now`.
    pub fn on_timer(&mut self, now: u64, budget: &dyn WorkBudget) -> Vec<Effect> {
        let mut effects = Vec::new();
        // Handling an item only schedules deadlines after `now`, so the due
        // keys can be read in one pass and handled afterwards.
        let due: Vec<ScheduleKey> = self
            .schedule
            .keys()
            .take_while(|k| k.deadline <= now)
            .take(self.config.timer_batch_limit as usize)
            .collect();
        for key in due {
            if budget.exhausted() {
                break;
            }
            // A key that handling an earlier item moved is stale: skip it.
            if self.schedule.remove(&key).is_none() {
                continue;
            }
            let Some(mut rec) = self.messages.get(&IdKey(key.msg_id)) else { continue };
            rec.deadline = None;
            self.on_due(key.msg_id, rec, now, &mut effects);
        }
        self.flush();
        effects
    }

    fn on_due(&mut self, id: MsgId, mut rec: MessageRecord, now: u64, effects: &mut Vec<Effect>) {
        if rec.state == MessageState::AwaitingAck {
            if rec.attempts >= rec.max_attempts {
                self.dead_letter(id, &mut rec, now, effects);
            } else {
                self.send_new(id, &mut rec, now, effects, None);
            }
        } else if rec.notification == SenderNotification::Pending {
            if rec.callback_in_flight {
                // The call's result never came back (for example, it was lost across an upgrade).
                self.settle_callback(id, &mut rec, Err(DeliveryError::CallRejected { reject_code: 6 }), now);
            } else {
                self.send_callback(id, &mut rec, now, effects);
            }
        } else if rec.state.is_terminal() {
            self.collect(id, &rec);
            return;
        }
        self.messages.insert(IdKey(id), rec);
    }

    /// Mixes `raw_rand` output into the id generator.
    pub fn seed_randomness(&mut self, entropy: &[u8]) {
        self.state.mix_seed(entropy);
        self.flush();
    }

    /// Whether `raw_rand` has been mixed in.
    pub fn is_seeded(&self) -> bool {
        self.state.seeded
    }

    /// Cancels a message that is `Queued` or `AwaitingAck` (the sender or a
    /// controller). A NEW already sent may still be processed by the target:
    /// a late valid ACK then moves the message to `Acked`.
    pub fn cancel(
        &mut self,
        caller: Principal,
        is_controller: bool,
        msg_id: MsgId,
        now: u64,
    ) -> Result<Vec<Effect>, ManageError> {
        let mut rec = self.authorized_record(caller, is_controller, msg_id)?;
        if !matches!(rec.state, MessageState::Queued | MessageState::AwaitingAck) {
            return Err(ManageError::InvalidState { state: rec.state });
        }
        // Leaving the window may let the next queued message of the target go.
        let mut effects = Vec::new();
        self.leave_window(msg_id, &mut rec, now, &mut effects);
        self.drop_payload(msg_id);
        rec.notification = SenderNotification::NotRequested;
        self.set_state(msg_id, &mut rec, MessageState::Cancelled, now);
        self.state.totals.cancelled += 1;
        self.events.push(Event::Cancelled { msg_id });
        self.schedule_collection(msg_id, &mut rec, now);
        self.messages.insert(IdKey(msg_id), rec);
        self.flush();
        Ok(effects)
    }

    /// Drives a `Failed` or `Corrupted` message again from attempt 1 (the
    /// sender or a controller), within the retention period.
    pub fn retry(
        &mut self,
        caller: Principal,
        is_controller: bool,
        msg_id: MsgId,
        now: u64,
    ) -> Result<Vec<Effect>, ManageError> {
        let mut rec = self.authorized_record(caller, is_controller, msg_id)?;
        // A message cancelled before its (late, corrupted) ACK has no payload left to send.
        if !matches!(rec.state, MessageState::Failed | MessageState::Corrupted)
            || !self.payloads.contains_key(&IdKey(msg_id))
        {
            return Err(ManageError::InvalidState { state: rec.state });
        }
        if self.quota_exceeded(rec.sender, rec.payload_len as u64).is_some() {
            return Err(ManageError::Busy);
        }
        self.drop_reply(msg_id);
        rec.attempts = 0;
        rec.send_refusals = 0;
        rec.received_hash = None;
        rec.acked_at = None;
        rec.last_error = None;
        rec.callback_attempts = 0;
        rec.callback_in_flight = false;
        rec.notification =
            if rec.notify_sender { SenderNotification::NotYet } else { SenderNotification::NotRequested };
        self.reschedule(msg_id, &mut rec, None);
        self.set_state(msg_id, &mut rec, MessageState::Queued, now);
        self.events.push(Event::Retried { msg_id });
        let mut effects = Vec::new();
        self.admit(msg_id, rec, now, &mut effects, None);
        self.flush();
        Ok(effects)
    }

    // ----- queries ------------------------------------------------------------------------

    /// The status of a message, for its sender, its target or a controller.
    pub fn status(&self, caller: Principal, is_controller: bool, msg_id: MsgId) -> Option<MessageStatus> {
        let rec = self.messages.get(&IdKey(msg_id))?;
        (is_controller || caller == rec.sender || caller == rec.target).then(|| self.to_status(msg_id, &rec))
    }

    /// A page of messages, oldest first. See [`ListFilter`] for who may see what.
    pub fn list_messages(
        &self,
        caller: Principal,
        is_controller: bool,
        filter: ListFilter,
    ) -> Result<MessagePage, ListError> {
        let mut filter = filter;
        if !is_controller {
            let own = filter.sender == Some(caller) || filter.target == Some(caller);
            if filter.sender.is_none() && filter.target.is_none() {
                filter.sender = Some(caller);
            } else if !own {
                return Err(ListError::NotAuthorized);
            }
        }
        let limit = filter.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE) as usize;
        // Bound the work of one query: examine at most this many index entries.
        let scan_budget = limit * 20;
        let after = filter.start_after.map(|id| id.0.saturating_add(1)).unwrap_or(0);
        let ids: Box<dyn Iterator<Item = MsgId> + '_> = match (filter.sender, filter.target) {
            (Some(p), _) => Box::new(self.by_sender.keys_range(Self::index_range(p, after)).map(|k| k.msg_id)),
            (None, Some(p)) => Box::new(self.by_target.keys_range(Self::index_range(p, after)).map(|k| k.msg_id)),
            (None, None) => Box::new(self.messages.keys_range(IdKey(MsgId(after))..).map(|k| k.0)),
        };
        let mut messages = Vec::new();
        let mut last_seen = None;
        let mut exhausted = true;
        for (examined, id) in ids.enumerate() {
            if examined == scan_budget || messages.len() == limit {
                exhausted = false;
                break;
            }
            last_seen = Some(id);
            let Some(rec) = self.messages.get(&IdKey(id)) else { continue };
            if filter.target.is_some_and(|t| t != rec.target) || filter.state.is_some_and(|s| s != rec.state) {
                continue;
            }
            messages.push(self.to_status(id, &rec));
        }
        Ok(MessagePage { messages, next_cursor: if exhausted { None } else { last_seen } })
    }

    fn index_range(p: Principal, after: u128) -> std::ops::RangeInclusive<PrincipalMsgKey> {
        PrincipalMsgKey { principal: p, msg_id: MsgId(after) }..=PrincipalMsgKey {
            principal: p,
            msg_id: MsgId(u128::MAX),
        }
    }

    /// Counters, per-state counts, load per target and the oldest pending message.
    pub fn stats(&self, now: u64) -> Stats {
        let mut targets: Vec<TargetLoad> = self
            .targets
            .iter()
            .take(1000)
            .map(|entry| {
                let (PrincipalKey(target), c) = entry.into_pair();
                TargetLoad { target, in_flight: c.in_flight, queued: c.queued }
            })
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.in_flight as u64 + t.queued));
        targets.truncate(100);
        Stats {
            messages_by_state: MessageState::ALL.iter().map(|s| (*s, self.state.count(*s))).collect(),
            targets,
            oldest_pending_age_seconds: self
                .pending
                .first_key_value()
                .map(|(IdKey(id), ())| (now / 1_000_000).saturating_sub(id.timestamp_ms()) / 1000),
            stored_bytes: self.state.stored_bytes,
            totals: self.state.totals.clone(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Validates and applies `update`; on error nothing changes.
    pub fn set_config(&mut self, update: ConfigUpdate) -> Result<(), ManageError> {
        let mut c = self.config.clone();
        fn check<T: PartialOrd + Copy + std::fmt::Debug>(
            field: &str,
            value: Option<T>,
            range: std::ops::RangeInclusive<T>,
            slot: &mut T,
        ) -> Result<(), ManageError> {
            if let Some(v) = value {
                if !range.contains(&v) {
                    return Err(ManageError::InvalidConfig {
                        field: field.into(),
                        reason: format!("must be in {range:?}"),
                    });
                }
                *slot = v;
            }
            Ok(())
        }
        check("ack_timeout_seconds", update.ack_timeout_seconds, ACK_TIMEOUT_RANGE, &mut c.ack_timeout_seconds)?;
        check("max_attempts_limit", update.max_attempts_limit, 1..=1000, &mut c.max_attempts_limit)?;
        check("max_attempts", update.max_attempts, 1..=c.max_attempts_limit, &mut c.max_attempts)?;
        // Under the IC's 500-message limit of a queue between two canisters.
        check("max_in_flight_per_target", update.max_in_flight_per_target, 1..=450, &mut c.max_in_flight_per_target)?;
        check("max_payload_bytes", update.max_payload_bytes, 0..=2_096_128, &mut c.max_payload_bytes)?;
        check("max_pending_per_sender", update.max_pending_per_sender, 1..=u64::MAX, &mut c.max_pending_per_sender)?;
        check(
            "max_pending_bytes_per_sender",
            update.max_pending_bytes_per_sender,
            1..=u64::MAX,
            &mut c.max_pending_bytes_per_sender,
        )?;
        check("max_stored_messages", update.max_stored_messages, 1..=u64::MAX, &mut c.max_stored_messages)?;
        check("max_stored_bytes", update.max_stored_bytes, 1..=u64::MAX, &mut c.max_stored_bytes)?;
        // Long enough for receivers' ACK retries to still find a tombstone and get their FIN.
        check("retention_seconds", update.retention_seconds, 600..=30 * 86_400, &mut c.retention_seconds)?;
        check("max_callback_attempts", update.max_callback_attempts, 1..=100, &mut c.max_callback_attempts)?;
        check("callback_timeout_seconds", update.callback_timeout_seconds, 1..=300, &mut c.callback_timeout_seconds)?;
        check("fee_cycles_per_message", update.fee_cycles_per_message, 0..=u128::MAX, &mut c.fee_cycles_per_message)?;
        check("timer_batch_limit", update.timer_batch_limit, 1..=10_000, &mut c.timer_batch_limit)?;
        if c.max_attempts > c.max_attempts_limit {
            return Err(ManageError::InvalidConfig {
                field: "max_attempts".into(),
                reason: "must not exceed max_attempts_limit".into(),
            });
        }
        if let Some(allowed) = update.allowed_senders {
            if allowed.as_ref().is_some_and(|a| a.len() > 1000) {
                return Err(ManageError::InvalidConfig {
                    field: "allowed_senders".into(),
                    reason: "at most 1000 principals".into(),
                });
            }
            c.allowed_senders = allowed;
        }
        self.config_cell.set(StoredConfig(c.clone()));
        self.config = c;
        Ok(())
    }

    /// The earliest deadline in the schedule: when the timer must fire next.
    pub fn next_deadline(&self) -> Option<u64> {
        self.schedule.first_key_value().map(|(k, ())| k.deadline)
    }

    /// What happened since the last call, oldest first.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The raw record, for tests and the simulation's invariant checks.
    pub fn record(&self, msg_id: MsgId) -> Option<MessageRecord> {
        self.messages.get(&IdKey(msg_id))
    }

    /// Number of message records (pending and tombstones).
    pub fn message_count(&self) -> u64 {
        self.messages.len()
    }

    /// Whether every structure is empty: what GC must return the broker to.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.payloads.is_empty()
            && self.replies.is_empty()
            && self.schedule.is_empty()
            && self.target_fifo.is_empty()
            && self.targets.is_empty()
            && self.by_sender.is_empty()
            && self.by_target.is_empty()
            && self.senders.is_empty()
            && self.idempotency.is_empty()
            && self.idempotency_of.is_empty()
            && self.pending.is_empty()
            && self.state.stored_bytes == 0
    }

    // ----- transitions --------------------------------------------------------------------

    /// A new or re-driven `Queued` message: send now if its target's window
    /// has room and nothing is queued before it, otherwise join the FIFO.
    fn admit(
        &mut self,
        id: MsgId,
        mut rec: MessageRecord,
        now: u64,
        effects: &mut Vec<Effect>,
        payload: Option<Vec<u8>>,
    ) {
        let key = PrincipalKey(rec.target);
        let mut load = self.targets.get(&key).unwrap_or_default();
        if load.queued == 0 && load.in_flight < self.config.max_in_flight_per_target {
            load.in_flight += 1;
            self.targets.insert(key, load);
            self.set_state(id, &mut rec, MessageState::AwaitingAck, now);
            self.send_new(id, &mut rec, now, effects, payload);
        } else {
            load.queued += 1;
            self.targets.insert(key, load);
            self.target_fifo.insert(PrincipalMsgKey { principal: rec.target, msg_id: id }, ());
            self.events.push(Event::WaitingForWindow { msg_id: id });
        }
        self.messages.insert(IdKey(id), rec);
    }

    /// Sends NEW with `payload`, read from the payloads map when not given.
    fn send_new(
        &mut self,
        id: MsgId,
        rec: &mut MessageRecord,
        now: u64,
        effects: &mut Vec<Effect>,
        payload: Option<Vec<u8>>,
    ) {
        let payload = payload
            .unwrap_or_else(|| self.payloads.get(&IdKey(id)).expect("an undelivered message keeps its payload").0);
        rec.attempts += 1;
        if rec.attempts > 1 || rec.send_refusals > 0 {
            self.state.totals.retries += 1;
        }
        rec.updated_at = now;
        self.events.push(Event::NewSent { msg_id: id, attempt: rec.attempts });
        effects.push(Effect::SendNew {
            target: rec.target,
            message: NewMessage { msg_id: id, payload, sender: Some(rec.sender), attempt: Some(rec.attempts) },
        });
        let at = now + rec.ack_timeout_secs as u64 * NS;
        self.reschedule(id, rec, Some(at));
    }

    /// Takes the message out of its target's window (or FIFO) and lets the
    /// next queued messages in.
    fn leave_window(&mut self, id: MsgId, rec: &mut MessageRecord, now: u64, effects: &mut Vec<Effect>) {
        let key = PrincipalKey(rec.target);
        let mut load = self.targets.get(&key).unwrap_or_default();
        match rec.state {
            MessageState::AwaitingAck => load.in_flight -= 1,
            MessageState::Queued => {
                self.target_fifo.remove(&PrincipalMsgKey { principal: rec.target, msg_id: id });
                load.queued -= 1;
            }
            _ => return,
        }
        self.reschedule(id, rec, None);
        while load.in_flight < self.config.max_in_flight_per_target && load.queued > 0 {
            let Some(next) = self.target_fifo.keys_range(fifo_range(rec.target)).next() else { break };
            self.target_fifo.remove(&next);
            load.queued -= 1;
            load.in_flight += 1;
            let mut next_rec = self.messages.get(&IdKey(next.msg_id)).expect("a queued message has a record");
            self.set_state(next.msg_id, &mut next_rec, MessageState::AwaitingAck, now);
            self.send_new(next.msg_id, &mut next_rec, now, effects, None);
            self.messages.insert(IdKey(next.msg_id), next_rec);
        }
        if load == TargetCounters::default() {
            self.targets.remove(&key);
        } else {
            self.targets.insert(key, load);
        }
    }

    fn dead_letter(&mut self, id: MsgId, rec: &mut MessageRecord, now: u64, effects: &mut Vec<Effect>) {
        self.leave_window(id, rec, now, effects);
        self.set_state(id, rec, MessageState::Failed, now);
        self.state.totals.dead_lettered += 1;
        self.events.push(Event::DeadLettered { msg_id: id, attempts: rec.attempts });
        self.begin_notification(id, rec, now, effects);
    }

    /// After `Acked`, `Failed` or `Corrupted`: call the sender back, or
    /// finish at once when it gets no callbacks.
    fn begin_notification(&mut self, id: MsgId, rec: &mut MessageRecord, now: u64, effects: &mut Vec<Effect>) {
        if rec.notify_sender {
            rec.notification = SenderNotification::Pending;
            self.send_callback(id, rec, now, effects);
        } else {
            self.finish_notification(id, rec, now);
        }
    }

    fn send_callback(&mut self, id: MsgId, rec: &mut MessageRecord, now: u64, effects: &mut Vec<Effect>) {
        rec.callback_attempts += 1;
        rec.callback_serial += 1;
        rec.callback_in_flight = true;
        let sent_payload = if rec.include_sent_payload {
            self.payloads.get(&IdKey(id)).map(|b| serde_bytes::ByteBuf::from(b.0))
        } else {
            None
        };
        let reply = self.replies.get(&IdKey(id)).map(|b| b.0).unwrap_or_default();
        let callback = match rec.state {
            MessageState::Acked => Callback::Ack(SenderAck {
                msg_id: id,
                hash: rec.received_hash,
                payload: reply,
                target: Some(rec.target),
                sent_payload,
            }),
            MessageState::Corrupted => Callback::Failed(SenderFailed {
                msg_id: id,
                target: rec.target,
                reason: FailureReason::Corrupted(CorruptionReport {
                    expected_hash: rec.sent_hash,
                    received_hash: rec.received_hash.unwrap_or_default(),
                    reply,
                }),
                attempts: rec.attempts,
                sent_payload,
            }),
            _ => Callback::Failed(SenderFailed {
                msg_id: id,
                target: rec.target,
                reason: FailureReason::MaxAttemptsExceeded { last_error: rec.last_error },
                attempts: rec.attempts,
                sent_payload,
            }),
        };
        self.events.push(Event::CallbackSent { msg_id: id, attempt: rec.callback_attempts });
        effects.push(Effect::Callback { sender: rec.sender, serial: rec.callback_serial, callback });
        let at = now + (self.config.callback_timeout_seconds as u64) * NS + CALLBACK_GRACE_NS;
        self.reschedule(id, rec, Some(at));
    }

    fn settle_callback(&mut self, id: MsgId, rec: &mut MessageRecord, result: Result<(), DeliveryError>, now: u64) {
        rec.callback_in_flight = false;
        match result {
            Ok(()) => {
                rec.notification = SenderNotification::Confirmed;
                self.events.push(Event::CallbackConfirmed { msg_id: id });
                self.finish_notification(id, rec, now);
            }
            Err(error) => {
                self.state.totals.callback_failures += 1;
                rec.last_error = Some(error);
                self.events.push(Event::CallbackFailed { msg_id: id, attempt: rec.callback_attempts, error });
                let destination_gone = error == DeliveryError::CallRejected { reject_code: 3 };
                if destination_gone || rec.callback_attempts >= self.config.max_callback_attempts {
                    rec.notification = SenderNotification::GaveUp;
                    self.events.push(Event::CallbackGaveUp { msg_id: id });
                    self.finish_notification(id, rec, now);
                } else {
                    let at = now + backoff_ns(rec.callback_attempts, self.config.ack_timeout_seconds);
                    self.reschedule(id, rec, Some(at));
                }
            }
        }
    }

    /// The sender has been told (or never will be): the message is done.
    fn finish_notification(&mut self, id: MsgId, rec: &mut MessageRecord, now: u64) {
        if rec.state == MessageState::Acked {
            // The payload stayed only to be echoed; the reply only for the callback.
            if rec.notify_sender && rec.include_sent_payload {
                self.drop_payload(id);
            }
            if rec.notify_sender {
                self.drop_reply(id);
            }
            self.set_state(id, rec, MessageState::Delivered, now);
            self.state.totals.delivered += 1;
            self.events.push(Event::Delivered { msg_id: id });
        }
        // Failed and Corrupted keep payload (for `retry`) and reply (the
        // corruption record) until the tombstone goes.
        self.schedule_collection(id, rec, now);
    }

    fn schedule_collection(&mut self, id: MsgId, rec: &mut MessageRecord, now: u64) {
        let at = now + self.config.retention_seconds * NS;
        self.reschedule(id, rec, Some(at));
    }

    /// Removes a tombstone and everything that points at it.
    fn collect(&mut self, id: MsgId, rec: &MessageRecord) {
        self.messages.remove(&IdKey(id));
        // Delivered and Cancelled records dropped their blobs already.
        if !matches!(rec.state, MessageState::Delivered | MessageState::Cancelled) {
            self.drop_payload(id);
            self.drop_reply(id);
        }
        self.by_sender.remove(&PrincipalMsgKey { principal: rec.sender, msg_id: id });
        self.by_target.remove(&PrincipalMsgKey { principal: rec.target, msg_id: id });
        if rec.has_idempotency_key {
            if let Some(Digest(key_digest)) = self.idempotency_of.remove(&IdKey(id)) {
                self.idempotency.remove(&IdempotencyKey { sender: rec.sender, key_digest });
            }
        }
        *self.state.count_mut(rec.state) -= 1;
        self.state.totals.garbage_collected += 1;
        self.events.push(Event::Collected { msg_id: id });
    }

    /// Moves `rec` to `new`, keeping per-state counts, the pending index and
    /// the sender's quota usage in step. The caller writes `rec` back.
    fn set_state(&mut self, id: MsgId, rec: &mut MessageRecord, new: MessageState, now: u64) {
        let old = rec.state;
        *self.state.count_mut(old) -= 1;
        *self.state.count_mut(new) += 1;
        rec.state = new;
        rec.updated_at = now;
        match (old.is_terminal(), new.is_terminal()) {
            (false, true) => self.leave_pending(id, rec),
            (true, false) => self.enter_pending(id, rec),
            _ => {}
        }
    }

    fn enter_pending(&mut self, id: MsgId, rec: &MessageRecord) {
        self.pending.insert(IdKey(id), ());
        let key = PrincipalKey(rec.sender);
        let mut usage = self.senders.get(&key).unwrap_or_default();
        usage.pending_messages += 1;
        usage.pending_bytes += rec.payload_len as u64;
        self.senders.insert(key, usage);
    }

    fn leave_pending(&mut self, id: MsgId, rec: &MessageRecord) {
        self.pending.remove(&IdKey(id));
        let key = PrincipalKey(rec.sender);
        let mut usage = self.senders.get(&key).unwrap_or_default();
        usage.pending_messages -= 1;
        usage.pending_bytes -= rec.payload_len as u64;
        if usage == SenderUsage::default() {
            self.senders.remove(&key);
        } else {
            self.senders.insert(key, usage);
        }
    }

    fn reschedule(&mut self, id: MsgId, rec: &mut MessageRecord, at: Option<u64>) {
        if let Some(old) = rec.deadline.take() {
            self.schedule.remove(&ScheduleKey { deadline: old, msg_id: id });
        }
        if let Some(deadline) = at {
            self.schedule.insert(ScheduleKey { deadline, msg_id: id }, ());
            rec.deadline = Some(deadline);
        }
    }

    fn store_payload(&mut self, id: MsgId, payload: Vec<u8>) {
        self.state.stored_bytes += payload.len() as u64;
        self.payloads.insert(IdKey(id), Blob(payload));
    }

    fn drop_payload(&mut self, id: MsgId) {
        if let Some(Blob(b)) = self.payloads.remove(&IdKey(id)) {
            self.state.stored_bytes -= b.len() as u64;
        }
    }

    fn store_reply(&mut self, id: MsgId, reply: Vec<u8>) {
        self.state.stored_bytes += reply.len() as u64;
        if let Some(Blob(old)) = self.replies.insert(IdKey(id), Blob(reply)) {
            self.state.stored_bytes -= old.len() as u64;
        }
    }

    fn drop_reply(&mut self, id: MsgId) {
        if let Some(Blob(b)) = self.replies.remove(&IdKey(id)) {
            self.state.stored_bytes -= b.len() as u64;
        }
    }

    /// The sender's usage, if one more pending message of `size` bytes would exceed its quota.
    fn quota_exceeded(&self, sender: Principal, size: u64) -> Option<SenderUsage> {
        let usage = self.senders.get(&PrincipalKey(sender)).unwrap_or_default();
        (usage.pending_messages >= self.config.max_pending_per_sender
            || usage.pending_bytes + size > self.config.max_pending_bytes_per_sender)
            .then_some(usage)
    }

    fn authorized_record(
        &self,
        caller: Principal,
        is_controller: bool,
        msg_id: MsgId,
    ) -> Result<MessageRecord, ManageError> {
        let rec = self.messages.get(&IdKey(msg_id)).ok_or(ManageError::UnknownMessage)?;
        if !is_controller && caller != rec.sender {
            return Err(ManageError::NotAuthorized);
        }
        Ok(rec)
    }

    fn to_status(&self, id: MsgId, rec: &MessageRecord) -> MessageStatus {
        let corruption = (rec.state == MessageState::Corrupted).then(|| CorruptionReport {
            expected_hash: rec.sent_hash,
            received_hash: rec.received_hash.unwrap_or_default(),
            reply: self.replies.get(&IdKey(id)).map(|b| b.0).unwrap_or_default(),
        });
        MessageStatus {
            msg_id: id,
            sender: rec.sender,
            target: rec.target,
            state: rec.state,
            attempts: rec.attempts,
            max_attempts: rec.max_attempts,
            payload_size: rec.payload_len as u64,
            created_at_ns: rec.created_at,
            updated_at_ns: rec.updated_at,
            next_action_at_ns: rec.deadline,
            acked_at_ns: rec.acked_at,
            sender_notification: rec.notification,
            last_error: rec.last_error,
            corruption,
        }
    }

    fn flush(&mut self) {
        if *self.state_cell.get() != self.state {
            self.state_cell.set(self.state.clone());
        }
    }
}

#[cfg(test)]
mod tests;
