//! The receiver's half of the protocol: NEW → ACK, FIN, deduplication.
//!
//! A receiving canister exposes `com_asyncFlow_newMessage` and
//! `com_asyncFlow_ackack` and forwards them to [`handle_new_message`] and
//! [`handle_ackack`]; it calls [`init`] from its `#[init]` and
//! [`post_upgrade`] from its `#[post_upgrade]`. The library then:
//!
//! - rejects callers that are not allowed brokers ([`AllowedBrokers`]);
//! - runs the application's handler **at most once per (broker, msg_id)**;
//! - replies with `Ack { msg_id, hash: Some(payload_hash(payload)), payload: reply }`
//!   as a one-way call to the broker's `com_asyncFlow_ack`;
//! - re-sends the cached ACK on a duplicate NEW without running the handler,
//!   and on its own timer every [`ReceiverConfig::ack_resend_interval_ns`]
//!   until the FIN arrives, at most [`ReceiverConfig::max_ack_resends`] times;
//! - on FIN, shrinks the record to a tombstone (the cached reply is dropped),
//!   and forgets it [`ReceiverConfig::dedup_window_ns`] after processing.
//!
//! ```no_run
//! use async_flow_client::receiver::{self, Delivery, ReceiverConfig};
//! use async_flow_client::{AckAck, NewMessage};
//! use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
//! use ic_stable_structures::DefaultMemoryImpl;
//!
//! fn open() {
//!     let mm = MemoryManager::init(DefaultMemoryImpl::default());
//!     let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
//!     // MemoryId 0 belongs to the library; the application keeps the others.
//!     receiver::init(mm.get(MemoryId::new(0)), ReceiverConfig::for_brokers(vec![broker]));
//! }
//!
//! #[ic_cdk::init]
//! fn init() { open() }
//!
//! #[ic_cdk::post_upgrade]
//! fn post_upgrade() { open() }
//!
//! #[ic_cdk::update]
//! #[allow(non_snake_case)]
//! fn com_asyncFlow_newMessage(msg: NewMessage) {
//!     receiver::handle_new_message(msg, |delivery: &Delivery| {
//!         let text: String = delivery.decode().unwrap_or_default();
//!         candid::encode_one(text.len() as u64).unwrap() // the reply the sender gets
//!     });
//! }
//!
//! #[ic_cdk::update]
//! #[allow(non_snake_case)]
//! fn com_asyncFlow_ackack(fin: AckAck) {
//!     receiver::handle_ackack(fin);
//! }
//! ```
//!
//! # Handlers are synchronous
//!
//! The handler runs, its record is written and its ACK is sent in **one**
//! message execution, so there is no window in which a duplicate NEW could
//! run it again, and a trap in the handler rolls back everything (the broker
//! sends NEW again later). Asynchronous handlers are not offered: an
//! application that needs to make calls records the work in its own state
//! from the handler and does it afterwards (for example with
//! `ic_cdk::futures::spawn` or its own timer). The handler must not call back
//! into this module.
//!
//! # Timing
//!
//! The dedup window counts from processing and must be longer than the
//! broker's retry horizon (`max_attempts × ack_timeout`, 55 minutes by
//! default): a NEW that arrives after its record was forgotten runs the
//! handler again. A record is never forgotten while its ACK is still being
//! re-sent.
//!
//! The pure [`ReceiverCore`] holds the logic and the state; native tests and
//! the simulation drive it directly, the functions above drive it on the IC.

mod ic;
mod store;

pub use ic::{handle_ackack, handle_new_message, init, is_processed, post_upgrade};

use crate::storage::Blob;
use crate::{payload_hash, Ack, AckAck, MsgId, NewMessage};
use candid::Principal;
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::{Memory, StableBTreeMap};
use std::fmt;
use store::{memory_id, DedupRecord, MsgKey, ScheduleKey, Stage};

const NS: u64 = 1_000_000_000;
/// Bucket size of the library's own memory manager inside the application's
/// memory: 16 pages (1 MiB) rather than the default 8 MiB per structure.
pub(crate) const BUCKET_PAGES: u16 = 16;

/// Which principals may call the receiver endpoints.
///
/// ```
/// use async_flow_client::receiver::AllowedBrokers;
/// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
/// assert!(AllowedBrokers::Only(vec![broker]).allows(&broker));
/// assert!(!AllowedBrokers::Only(vec![]).allows(&broker));
/// assert!(AllowedBrokers::Any.allows(&broker));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedBrokers {
    /// Only these brokers.
    Only(Vec<Principal>),
    /// Any caller except the anonymous principal: the application opts in to
    /// process messages from any broker (dedup is still per broker).
    Any,
}

impl AllowedBrokers {
    /// Whether `caller` may deliver messages.
    ///
    /// ```
    /// use async_flow_client::receiver::AllowedBrokers;
    /// assert!(!AllowedBrokers::Any.allows(&candid::Principal::anonymous()));
    /// ```
    pub fn allows(&self, caller: &Principal) -> bool {
        match self {
            AllowedBrokers::Only(list) => list.contains(caller),
            AllowedBrokers::Any => *caller != Principal::anonymous(),
        }
    }
}

/// The receiver's configuration. It is not stored: the application passes it
/// again to every [`ReceiverCore::open`] (on the IC: [`init`] and [`post_upgrade`]).
///
/// ```
/// use async_flow_client::receiver::ReceiverConfig;
/// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
/// let config = ReceiverConfig { max_ack_resends: 3, ..ReceiverConfig::for_brokers(vec![broker]) };
/// assert_eq!(config.ack_resend_interval_ns, 330_000_000_000);
/// assert_eq!(config.dedup_window_ns, 24 * 3600 * 1_000_000_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Who may call the receiver endpoints.
    pub allowed_brokers: AllowedBrokers,
    /// How long to wait for a FIN before re-sending the ACK (default 330 s,
    /// longer than the IC's 5-minute request timeout).
    pub ack_resend_interval_ns: u64,
    /// ACK re-sends by the timer before giving up on the FIN (default 10).
    /// Duplicate NEWs still get the cached ACK after that.
    pub max_ack_resends: u32,
    /// How long after processing a message its dedup record is kept (default 24 h).
    pub dedup_window_ns: u64,
    /// Schedule entries handled per timer run (default 100).
    pub timer_batch_limit: u32,
}

impl ReceiverConfig {
    /// The defaults, accepting only `brokers`.
    ///
    /// ```
    /// use async_flow_client::receiver::{AllowedBrokers, ReceiverConfig};
    /// assert_eq!(ReceiverConfig::for_brokers(vec![]).allowed_brokers, AllowedBrokers::Only(vec![]));
    /// ```
    pub fn for_brokers(brokers: Vec<Principal>) -> Self {
        Self {
            allowed_brokers: AllowedBrokers::Only(brokers),
            ack_resend_interval_ns: 330 * NS,
            max_ack_resends: 10,
            dedup_window_ns: 24 * 3600 * NS,
            timer_batch_limit: 100,
        }
    }

    /// The defaults, accepting any broker.
    ///
    /// ```
    /// use async_flow_client::receiver::{AllowedBrokers, ReceiverConfig};
    /// assert_eq!(ReceiverConfig::any_broker().allowed_brokers, AllowedBrokers::Any);
    /// ```
    pub fn any_broker() -> Self {
        Self { allowed_brokers: AllowedBrokers::Any, ..Self::for_brokers(vec![]) }
    }
}

/// One message handed to the application's handler.
///
/// ```
/// use async_flow_client::receiver::Delivery;
/// use async_flow_client::MsgId;
/// let delivery = Delivery {
///     broker: candid::Principal::anonymous(),
///     msg_id: MsgId(1),
///     sender: None,
///     attempt: Some(1),
///     payload: candid::encode_one("hello").unwrap(),
/// };
/// assert_eq!(delivery.decode::<String>().unwrap(), "hello");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The broker that delivered it (the caller).
    pub broker: Principal,
    /// The broker's identifier of the message.
    pub msg_id: MsgId,
    /// The principal that enqueued it, when the broker says.
    pub sender: Option<Principal>,
    /// Which delivery attempt this is, from 1, when the broker says.
    pub attempt: Option<u32>,
    /// The sender's bytes.
    pub payload: Vec<u8>,
}

impl Delivery {
    /// Decodes the payload as one Candid value.
    ///
    /// ```
    /// # use async_flow_client::receiver::Delivery;
    /// # let delivery = Delivery { broker: candid::Principal::anonymous(), msg_id: async_flow_client::MsgId(1),
    /// #     sender: None, attempt: None, payload: candid::encode_one(7u64).unwrap() };
    /// let n: u64 = delivery.decode().unwrap();
    /// assert_eq!(n, 7);
    /// ```
    pub fn decode<T: candid::CandidType + for<'de> serde::Deserialize<'de>>(&self) -> Result<T, candid::Error> {
        candid::decode_one(&self.payload)
    }
}

/// What the receiver core asks its caller to do.
///
/// ```
/// use async_flow_client::receiver::ReceiverEffect;
/// use async_flow_client::{Ack, MsgId};
/// let effect = ReceiverEffect::SendAck {
///     broker: candid::Principal::anonymous(),
///     ack: Ack { msg_id: MsgId(1), hash: Some(0), payload: vec![] },
/// };
/// # let _ = effect;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiverEffect {
    /// One-way call `com_asyncFlow_ack(ack)` to `broker`. If the IC refuses
    /// it, do nothing: the timer (and the broker's next NEW) re-send it.
    SendAck {
        /// The broker to send the ACK to.
        broker: Principal,
        /// The ACK.
        ack: Ack,
    },
}

/// Why the receiver refused a call. Nothing changed.
///
/// ```
/// use async_flow_client::receiver::ReceiverError;
/// let e = ReceiverError::UnknownBroker { caller: candid::Principal::anonymous() };
/// assert!(e.to_string().contains("2vxsx-fae"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiverError {
    /// The caller is not an allowed broker.
    UnknownBroker {
        /// Who called.
        caller: Principal,
    },
}

impl fmt::Display for ReceiverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiverError::UnknownBroker { caller } => {
                write!(f, "async-flow receiver: {caller} is not an allowed broker")
            }
        }
    }
}

impl std::error::Error for ReceiverError {}

/// What the receiver remembers of one `(broker, msg_id)`, for tests,
/// monitoring and the simulation's invariant checks.
///
/// ```
/// use async_flow_client::receiver::ProcessedStatus;
/// let status = ProcessedStatus::AwaitingFin { ack_resends: 0 };
/// assert_ne!(status, ProcessedStatus::Finished);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessedStatus {
    /// The handler ran and the ACK was sent; no FIN yet.
    AwaitingFin {
        /// ACKs re-sent by the timer so far.
        ack_resends: u32,
    },
    /// No FIN came after the last timer re-send; duplicate NEWs still get the cached ACK.
    GaveUp,
    /// The FIN arrived; only a tombstone is kept until the dedup window ends.
    Finished,
}

type VM<M> = VirtualMemory<M>;

/// The receiver's pure state machine, over stable structures in one memory.
///
/// It never calls `ic_cdk`: every input carries `now` (ns) and the caller,
/// and every output is a [`ReceiverEffect`]. Reopening it on the same memory
/// (after an upgrade) restores everything.
///
/// ```
/// use async_flow_client::receiver::{ReceiverConfig, ReceiverCore, ReceiverEffect};
/// use async_flow_client::{payload_hash, AckAck, MsgId, NewMessage};
/// use ic_stable_structures::VectorMemory;
///
/// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
/// let mut core = ReceiverCore::open(VectorMemory::default(), ReceiverConfig::for_brokers(vec![broker]));
/// let new = NewMessage { msg_id: MsgId(1), payload: b"hi".to_vec(), sender: None, attempt: Some(1) };
/// let effects = core.on_new_message(broker, new.clone(), 0, |d| d.payload.len().to_be_bytes().to_vec()).unwrap();
/// let ReceiverEffect::SendAck { ack, .. } = &effects[0];
/// assert_eq!(ack.hash, Some(payload_hash(b"hi")));
/// // A duplicate gets the same ACK; the handler does not run again.
/// let again = core.on_new_message(broker, new, 1, |_| unreachable!()).unwrap();
/// assert_eq!(again, effects);
/// core.on_ackack(broker, AckAck { msg_id: MsgId(1), hash: ack.hash }, 2).unwrap();
/// assert!(core.is_processed(broker, MsgId(1)));
/// ```
pub struct ReceiverCore<M: Memory> {
    config: ReceiverConfig,
    records: StableBTreeMap<MsgKey, DedupRecord, VM<M>>,
    replies: StableBTreeMap<MsgKey, Blob, VM<M>>,
    schedule: StableBTreeMap<ScheduleKey, (), VM<M>>,
}

impl<M: Memory> ReceiverCore<M> {
    /// Opens the receiver state kept in `memory`: empty on a fresh memory,
    /// everything as it was when reopened after an upgrade.
    ///
    /// `memory` must be the library's alone, typically one `VirtualMemory` of
    /// the application's `MemoryManager`; the library nests its own manager in it.
    ///
    /// ```
    /// use async_flow_client::receiver::{ReceiverConfig, ReceiverCore};
    /// let core = ReceiverCore::open(ic_stable_structures::VectorMemory::default(), ReceiverConfig::any_broker());
    /// assert!(core.is_empty());
    /// ```
    pub fn open(memory: M, config: ReceiverConfig) -> Self {
        let mm = MemoryManager::init_with_bucket_size(memory, BUCKET_PAGES);
        Self {
            config,
            records: StableBTreeMap::init(mm.get(memory_id::RECORDS)),
            replies: StableBTreeMap::init(mm.get(memory_id::REPLIES)),
            schedule: StableBTreeMap::init(mm.get(memory_id::SCHEDULE)),
        }
    }

    /// The configuration given to [`ReceiverCore::open`].
    ///
    /// ```
    /// # use async_flow_client::receiver::{ReceiverConfig, ReceiverCore};
    /// let core = ReceiverCore::open(ic_stable_structures::VectorMemory::default(), ReceiverConfig::any_broker());
    /// assert_eq!(core.config().max_ack_resends, 10);
    /// ```
    pub fn config(&self) -> &ReceiverConfig {
        &self.config
    }

    /// Step 2, a NEW from `caller`. The first time, runs `handler` and
    /// records the message; a duplicate gets the cached ACK without running
    /// `handler`. Either way the returned effect sends the ACK.
    ///
    /// `handler` runs **before** anything is written, so a trap (or, natively,
    /// a panic) in it leaves no trace. After the FIN, a late duplicate gets
    /// an ACK with the recorded hash and an empty reply: the broker only
    /// answers it with its FIN.
    ///
    /// ```
    /// use async_flow_client::receiver::{ReceiverConfig, ReceiverCore, ReceiverError};
    /// use async_flow_client::{MsgId, NewMessage};
    /// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
    /// let mut core = ReceiverCore::open(ic_stable_structures::VectorMemory::default(), ReceiverConfig::for_brokers(vec![broker]));
    /// let new = NewMessage { msg_id: MsgId(1), payload: vec![], sender: None, attempt: None };
    /// let spoofer = candid::Principal::management_canister();
    /// assert_eq!(core.on_new_message(spoofer, new, 0, |_| vec![]), Err(ReceiverError::UnknownBroker { caller: spoofer }));
    /// ```
    pub fn on_new_message(
        &mut self,
        caller: Principal,
        msg: NewMessage,
        now: u64,
        handler: impl FnOnce(&Delivery) -> Vec<u8>,
    ) -> Result<Vec<ReceiverEffect>, ReceiverError> {
        self.check_caller(caller)?;
        let key = MsgKey { broker: caller, msg_id: msg.msg_id };
        if let Some(record) = self.records.get(&key) {
            return Ok(vec![self.cached_ack(key, &record)]);
        }
        let hash = payload_hash(&msg.payload);
        let delivery = Delivery {
            broker: caller,
            msg_id: msg.msg_id,
            sender: msg.sender,
            attempt: msg.attempt,
            payload: msg.payload,
        };
        // Nothing is written before the handler returns.
        let reply = handler(&delivery);
        let deadline = now.saturating_add(self.config.ack_resend_interval_ns);
        let record = DedupRecord { stage: Stage::AwaitingFin, hash, ack_resends: 0, processed_at: now, deadline };
        self.records.insert(key, record);
        self.schedule.insert(ScheduleKey { deadline, key }, ());
        let ack = Ack { msg_id: msg.msg_id, hash: Some(hash), payload: reply.clone() };
        self.replies.insert(key, Blob(reply));
        Ok(vec![ReceiverEffect::SendAck { broker: caller, ack }])
    }

    /// Step 4, the FIN from `caller`: the record shrinks to a tombstone kept
    /// until the dedup window ends. A FIN for an unknown message is ignored.
    ///
    /// ```
    /// use async_flow_client::receiver::{ProcessedStatus, ReceiverConfig, ReceiverCore};
    /// use async_flow_client::{AckAck, MsgId, NewMessage};
    /// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
    /// let mut core = ReceiverCore::open(ic_stable_structures::VectorMemory::default(), ReceiverConfig::for_brokers(vec![broker]));
    /// let new = NewMessage { msg_id: MsgId(1), payload: vec![], sender: None, attempt: None };
    /// core.on_new_message(broker, new, 0, |_| b"reply".to_vec()).unwrap();
    /// core.on_ackack(broker, AckAck { msg_id: MsgId(1), hash: None }, 1).unwrap();
    /// assert_eq!(core.status(broker, MsgId(1)), Some(ProcessedStatus::Finished));
    /// ```
    pub fn on_ackack(&mut self, caller: Principal, fin: AckAck, now: u64) -> Result<(), ReceiverError> {
        self.check_caller(caller)?;
        let key = MsgKey { broker: caller, msg_id: fin.msg_id };
        let Some(mut record) = self.records.get(&key) else { return Ok(()) };
        if record.stage == Stage::Finished {
            return Ok(());
        }
        self.replies.remove(&key);
        record.stage = Stage::Finished;
        let expiry = self.expiry(&record, now);
        self.reschedule(key, &mut record, expiry);
        self.records.insert(key, record);
        Ok(())
    }

    /// Handles what is due at `now`, earliest first, at most
    /// [`ReceiverConfig::timer_batch_limit`] entries: re-sends ACKs still
    /// waiting for a FIN, gives up after the last re-send, and forgets
    /// records whose dedup window ended. If more is due,
    /// [`ReceiverCore::next_deadline`] is `<= now` afterwards.
    ///
    /// ```
    /// use async_flow_client::receiver::{ReceiverConfig, ReceiverCore};
    /// use async_flow_client::{MsgId, NewMessage};
    /// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
    /// let mut core = ReceiverCore::open(ic_stable_structures::VectorMemory::default(), ReceiverConfig::for_brokers(vec![broker]));
    /// core.on_new_message(broker, NewMessage { msg_id: MsgId(1), payload: vec![], sender: None, attempt: None }, 0, |_| vec![]).unwrap();
    /// let due = core.next_deadline().unwrap();
    /// assert!(core.on_timer(due - 1).is_empty());
    /// assert_eq!(core.on_timer(due).len(), 1); // the ACK again
    /// ```
    pub fn on_timer(&mut self, now: u64) -> Vec<ReceiverEffect> {
        let mut effects = Vec::new();
        for _ in 0..self.config.timer_batch_limit.max(1) {
            let Some((entry, ())) = self.schedule.first_key_value() else { break };
            if entry.deadline > now {
                break;
            }
            self.schedule.remove(&entry);
            let key = entry.key;
            let Some(mut record) = self.records.get(&key) else { continue };
            match record.stage {
                Stage::AwaitingFin if record.ack_resends < self.config.max_ack_resends => {
                    record.ack_resends += 1;
                    effects.push(self.cached_ack(key, &record));
                    self.reschedule(key, &mut record, now.saturating_add(self.config.ack_resend_interval_ns));
                    self.records.insert(key, record);
                }
                Stage::AwaitingFin => {
                    record.stage = Stage::GaveUp;
                    let expiry = self.expiry(&record, now);
                    self.reschedule(key, &mut record, expiry);
                    self.records.insert(key, record);
                }
                Stage::GaveUp | Stage::Finished => {
                    self.records.remove(&key);
                    self.replies.remove(&key);
                }
            }
        }
        effects
    }

    /// The earliest deadline of the schedule: when the one timer must fire.
    ///
    /// ```
    /// # use async_flow_client::receiver::{ReceiverConfig, ReceiverCore};
    /// let core = ReceiverCore::open(ic_stable_structures::VectorMemory::default(), ReceiverConfig::any_broker());
    /// assert_eq!(core.next_deadline(), None);
    /// ```
    pub fn next_deadline(&self) -> Option<u64> {
        self.schedule.first_key_value().map(|(k, ())| k.deadline)
    }

    /// Whether the handler ran for `(broker, msg_id)` within the dedup window.
    ///
    /// ```
    /// # use async_flow_client::receiver::{ReceiverConfig, ReceiverCore};
    /// let core = ReceiverCore::open(ic_stable_structures::VectorMemory::default(), ReceiverConfig::any_broker());
    /// assert!(!core.is_processed(candid::Principal::anonymous(), async_flow_client::MsgId(1)));
    /// ```
    pub fn is_processed(&self, broker: Principal, msg_id: MsgId) -> bool {
        self.records.contains_key(&MsgKey { broker, msg_id })
    }

    /// What the receiver remembers of `(broker, msg_id)`, if anything.
    ///
    /// ```
    /// # use async_flow_client::receiver::{ReceiverConfig, ReceiverCore};
    /// let core = ReceiverCore::open(ic_stable_structures::VectorMemory::default(), ReceiverConfig::any_broker());
    /// assert_eq!(core.status(candid::Principal::anonymous(), async_flow_client::MsgId(1)), None);
    /// ```
    pub fn status(&self, broker: Principal, msg_id: MsgId) -> Option<ProcessedStatus> {
        self.records.get(&MsgKey { broker, msg_id }).map(|r| match r.stage {
            Stage::AwaitingFin => ProcessedStatus::AwaitingFin { ack_resends: r.ack_resends },
            Stage::GaveUp => ProcessedStatus::GaveUp,
            Stage::Finished => ProcessedStatus::Finished,
        })
    }

    /// Number of dedup records (awaiting FIN, given up, and tombstones).
    ///
    /// ```
    /// # use async_flow_client::receiver::{ReceiverConfig, ReceiverCore};
    /// let core = ReceiverCore::open(ic_stable_structures::VectorMemory::default(), ReceiverConfig::any_broker());
    /// assert_eq!(core.len(), 0);
    /// ```
    pub fn len(&self) -> u64 {
        self.records.len()
    }

    /// Whether every structure is empty: where the receiver returns to once
    /// all dedup windows have ended.
    ///
    /// ```
    /// # use async_flow_client::receiver::{ReceiverConfig, ReceiverCore};
    /// let core = ReceiverCore::open(ic_stable_structures::VectorMemory::default(), ReceiverConfig::any_broker());
    /// assert!(core.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.replies.is_empty() && self.schedule.is_empty()
    }

    fn check_caller(&self, caller: Principal) -> Result<(), ReceiverError> {
        if self.config.allowed_brokers.allows(&caller) {
            Ok(())
        } else {
            Err(ReceiverError::UnknownBroker { caller })
        }
    }

    fn cached_ack(&self, key: MsgKey, record: &DedupRecord) -> ReceiverEffect {
        let payload = self.replies.get(&key).map(|b| b.0).unwrap_or_default();
        ReceiverEffect::SendAck {
            broker: key.broker,
            ack: Ack { msg_id: key.msg_id, hash: Some(record.hash), payload },
        }
    }

    /// When a record that no longer waits for a FIN is forgotten.
    fn expiry(&self, record: &DedupRecord, now: u64) -> u64 {
        record.processed_at.saturating_add(self.config.dedup_window_ns).max(now)
    }

    fn reschedule(&mut self, key: MsgKey, record: &mut DedupRecord, deadline: u64) {
        self.schedule.remove(&ScheduleKey { deadline: record.deadline, key });
        record.deadline = deadline;
        self.schedule.insert(ScheduleKey { deadline, key }, ());
    }
}

#[cfg(test)]
mod tests;
