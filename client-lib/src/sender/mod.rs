//! The sender's side: `enqueue` through the broker, and the two callbacks.
//!
//! Sending is one call: [`enqueue`] (raw bytes), [`enqueue_candid`] (one
//! Candid value) or [`enqueue_with`] (every option). It makes a bounded-wait
//! call to the broker's `enqueue` with an idempotency key, and re-issues the
//! call with the **same** key when the outcome is in doubt (`SYS_UNKNOWN`) or
//! transient (`SYS_TRANSIENT`), a bounded number of times: a call that ended
//! in doubt can never send twice.
//!
//! The broker later calls the sender back: `com_asyncFlow_ack` when the
//! target acknowledged (with its reply), `com_asyncFlow_failed` when the
//! message was dead-lettered or found corrupted. The application forwards
//! them to [`handle_ack`] and [`handle_failed`] and registers its handlers
//! once with [`init`] ([`SenderHandlers`]). The library rejects callers other
//! than the configured broker and hands each callback over **at most once**
//! per (msg_id, kind). The broker may send `com_asyncFlow_failed` and, if the
//! target acknowledges after the dead letter, `com_asyncFlow_ack` later for
//! the same message; the application then sees both, failure first. It never
//! sees a failure after an acknowledgement.
//!
//! ```no_run
//! use async_flow_client::sender::{self, Acknowledgement, SendError, SenderConfig, SenderHandlers};
//! use async_flow_client::{MsgId, SenderAck, SenderFailed};
//! use candid::Principal;
//! use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
//! use ic_stable_structures::DefaultMemoryImpl;
//!
//! fn open(broker: Principal) {
//!     let mm = MemoryManager::init(DefaultMemoryImpl::default());
//!     let handlers = SenderHandlers::new(
//!         |ack: Acknowledgement| ic_cdk::println!("{} acknowledged by {:?}", ack.msg_id, ack.target),
//!         |failed: SenderFailed| ic_cdk::println!("{} failed: {:?}", failed.msg_id, failed.reason),
//!     );
//!     sender::init(mm.get(MemoryId::new(0)), SenderConfig::new(broker), handlers);
//! }
//!
//! #[ic_cdk::update]
//! async fn send(target: Principal, text: String) -> Result<MsgId, SendError> {
//!     let broker = sender::broker().expect("initialized");
//!     sender::enqueue_candid(broker, target, &text).await
//! }
//!
//! #[ic_cdk::update]
//! #[allow(non_snake_case)]
//! fn com_asyncFlow_ack(ack: SenderAck) {
//!     sender::handle_ack(ack);
//! }
//!
//! #[ic_cdk::update]
//! #[allow(non_snake_case)]
//! fn com_asyncFlow_failed(failed: SenderFailed) {
//!     sender::handle_failed(failed);
//! }
//! ```
//!
//! The pure [`SenderCore`] holds the dedup logic and state; the functions
//! above drive it on the IC. [`enqueue_via`] is the retry logic over any
//! transport, for tests and simulations.

mod enqueue;
mod ic;
mod store;

pub use enqueue::{enqueue_via, CallError, CallPolicy, SendError};
pub use ic::{
    broker, enqueue, enqueue_candid, enqueue_with, handle_ack, handle_failed, init, post_upgrade, SenderHandlers,
};

use crate::{MsgId, SenderAck, SenderFailed};
use candid::Principal;
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::{Memory, StableBTreeMap, StableCell};
use std::fmt;
use store::{memory_id, ExpiryKey, Kind, SeenKey};

const NS: u64 = 1_000_000_000;

/// The sender's configuration. It is not stored: the application passes it
/// again to every [`SenderCore::open`] (on the IC: [`init`] and [`post_upgrade`]).
///
/// ```
/// use async_flow_client::sender::SenderConfig;
/// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
/// let config = SenderConfig::new(broker);
/// assert_eq!(config.dedup_window_ns, 24 * 3600 * 1_000_000_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// The broker: the only principal whose callbacks are accepted.
    pub broker: Principal,
    /// How long a processed callback is remembered (default 24 h; longer
    /// than the broker's callback retries).
    pub dedup_window_ns: u64,
    /// Expired entries removed per timer run (default 100).
    pub gc_batch_limit: u32,
}

impl SenderConfig {
    /// The defaults for `broker`.
    ///
    /// ```
    /// # use async_flow_client::sender::SenderConfig;
    /// assert_eq!(SenderConfig::new(candid::Principal::anonymous()).gc_batch_limit, 100);
    /// ```
    pub fn new(broker: Principal) -> Self {
        Self { broker, dedup_window_ns: 24 * 3600 * NS, gc_batch_limit: 100 }
    }
}

/// Why a callback was refused. Nothing changed.
///
/// ```
/// use async_flow_client::sender::SenderError;
/// let e = SenderError::NotBroker { caller: candid::Principal::anonymous() };
/// assert!(e.to_string().contains("not the broker"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SenderError {
    /// The caller is not the configured broker.
    NotBroker {
        /// Who called.
        caller: Principal,
    },
}

impl fmt::Display for SenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenderError::NotBroker { caller } => write!(f, "async-flow sender: {caller} is not the broker"),
        }
    }
}

impl std::error::Error for SenderError {}

/// Which of the two callbacks.
///
/// ```
/// use async_flow_client::sender::CallbackKind;
/// assert_ne!(CallbackKind::Ack, CallbackKind::Failed);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackKind {
    /// `com_asyncFlow_ack`.
    Ack,
    /// `com_asyncFlow_failed`.
    Failed,
}

impl From<CallbackKind> for Kind {
    fn from(kind: CallbackKind) -> Self {
        match kind {
            CallbackKind::Ack => Kind::Ack,
            CallbackKind::Failed => Kind::Failed,
        }
    }
}

/// What the application's acknowledgement handler gets: the arguments of the
/// seed's `return_async(canister_id, sent_payload, received_payload, msg_id, hash)`.
///
/// ```
/// use async_flow_client::sender::Acknowledgement;
/// use async_flow_client::{MsgId, SenderAck};
/// let ack = SenderAck { msg_id: MsgId(1), hash: Some(7), payload: b"reply".to_vec(), target: None, sent_payload: None };
/// let ack = Acknowledgement::from(ack);
/// assert_eq!(ack.received_payload, b"reply");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    /// The target canister (the seed's `canister_id`), when the broker says.
    pub target: Option<Principal>,
    /// The payload that was sent, when `EnqueueOptions::include_sent_payload` asked for it.
    pub sent_payload: Option<Vec<u8>>,
    /// The target's reply.
    pub received_payload: Vec<u8>,
    /// The identifier `enqueue` returned.
    pub msg_id: MsgId,
    /// The payload hash the target reported (already checked by the broker).
    pub hash: Option<u32>,
}

impl From<SenderAck> for Acknowledgement {
    fn from(ack: SenderAck) -> Self {
        Self {
            target: ack.target,
            sent_payload: ack.sent_payload.map(|b| b.into_vec()),
            received_payload: ack.payload,
            msg_id: ack.msg_id,
            hash: ack.hash,
        }
    }
}

impl Acknowledgement {
    /// Decodes the target's reply as one Candid value.
    ///
    /// ```
    /// # use async_flow_client::sender::Acknowledgement;
    /// # use async_flow_client::MsgId;
    /// let ack = Acknowledgement { target: None, sent_payload: None, received_payload: candid::encode_one(3u64).unwrap(), msg_id: MsgId(1), hash: None };
    /// assert_eq!(ack.decode_reply::<u64>().unwrap(), 3);
    /// ```
    pub fn decode_reply<T: candid::CandidType + for<'de> serde::Deserialize<'de>>(&self) -> Result<T, candid::Error> {
        candid::decode_one(&self.received_payload)
    }
}

type VM<M> = VirtualMemory<M>;

/// The sender's pure state machine: callback dedup and the idempotency-key
/// counter, over stable structures in one memory.
///
/// It never calls `ic_cdk`; reopening it on the same memory (after an
/// upgrade) restores everything.
///
/// ```
/// use async_flow_client::sender::{SenderConfig, SenderCore};
/// use async_flow_client::{MsgId, SenderAck};
/// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
/// let mut core = SenderCore::open(ic_stable_structures::VectorMemory::default(), SenderConfig::new(broker));
/// let ack = SenderAck { msg_id: MsgId(1), hash: None, payload: vec![], target: None, sent_payload: None };
/// assert_eq!(core.on_ack(broker, ack.clone(), 0).unwrap(), Some(ack.clone())); // hand it to the application
/// assert_eq!(core.on_ack(broker, ack, 1).unwrap(), None); // a duplicate: reply OK, do nothing
/// ```
pub struct SenderCore<M: Memory> {
    config: SenderConfig,
    seen: StableBTreeMap<SeenKey, u64, VM<M>>,
    expiry: StableBTreeMap<ExpiryKey, (), VM<M>>,
    keys: StableCell<u64, VM<M>>,
}

impl<M: Memory> SenderCore<M> {
    /// Opens the sender state kept in `memory`: empty on a fresh memory,
    /// everything as it was when reopened after an upgrade. `memory` must be
    /// the library's alone; the library nests its own memory manager in it.
    ///
    /// ```
    /// use async_flow_client::sender::{SenderConfig, SenderCore};
    /// let core = SenderCore::open(ic_stable_structures::VectorMemory::default(), SenderConfig::new(candid::Principal::anonymous()));
    /// assert!(core.is_empty());
    /// ```
    pub fn open(memory: M, config: SenderConfig) -> Self {
        let mm = MemoryManager::init_with_bucket_size(memory, crate::receiver::BUCKET_PAGES);
        Self {
            config,
            seen: StableBTreeMap::init(mm.get(memory_id::SEEN)),
            expiry: StableBTreeMap::init(mm.get(memory_id::EXPIRY)),
            keys: StableCell::init(mm.get(memory_id::KEYS), 0),
        }
    }

    /// The configuration given to [`SenderCore::open`].
    ///
    /// ```
    /// # use async_flow_client::sender::{SenderConfig, SenderCore};
    /// let broker = candid::Principal::anonymous();
    /// let core = SenderCore::open(ic_stable_structures::VectorMemory::default(), SenderConfig::new(broker));
    /// assert_eq!(core.config().broker, broker);
    /// ```
    pub fn config(&self) -> &SenderConfig {
        &self.config
    }

    /// Step 5, `com_asyncFlow_ack` from `caller`. `Ok(Some(ack))` the first
    /// time: hand it to the application. `Ok(None)` for a duplicate: reply
    /// OK and do nothing. `Err` when the caller is not the broker.
    ///
    /// ```
    /// use async_flow_client::sender::{SenderConfig, SenderCore, SenderError};
    /// use async_flow_client::{MsgId, SenderAck};
    /// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
    /// let mut core = SenderCore::open(ic_stable_structures::VectorMemory::default(), SenderConfig::new(broker));
    /// let ack = SenderAck { msg_id: MsgId(1), hash: None, payload: vec![], target: None, sent_payload: None };
    /// let spoofer = candid::Principal::anonymous();
    /// assert_eq!(core.on_ack(spoofer, ack, 0), Err(SenderError::NotBroker { caller: spoofer }));
    /// ```
    pub fn on_ack(&mut self, caller: Principal, ack: SenderAck, now: u64) -> Result<Option<SenderAck>, SenderError> {
        self.check_caller(caller)?;
        Ok(self.first_time(ack.msg_id, Kind::Ack, now).then_some(ack))
    }

    /// Step 5', `com_asyncFlow_failed` from `caller`. `Ok(Some(failed))` the
    /// first time, unless the message was already acknowledged (a failure
    /// never follows an acknowledgement); `Ok(None)` otherwise.
    ///
    /// ```
    /// use async_flow_client::sender::{SenderConfig, SenderCore};
    /// use async_flow_client::{FailureReason, MsgId, SenderAck, SenderFailed};
    /// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
    /// let mut core = SenderCore::open(ic_stable_structures::VectorMemory::default(), SenderConfig::new(broker));
    /// let failed = SenderFailed { msg_id: MsgId(1), target: broker, attempts: 10, sent_payload: None,
    ///     reason: FailureReason::MaxAttemptsExceeded { last_error: None } };
    /// assert!(core.on_failed(broker, failed.clone(), 0).unwrap().is_some());
    /// // The target acknowledged after the dead letter: the application hears of it too.
    /// let ack = SenderAck { msg_id: MsgId(1), hash: None, payload: vec![], target: None, sent_payload: None };
    /// assert!(core.on_ack(broker, ack, 1).unwrap().is_some());
    /// assert!(core.on_failed(broker, failed, 2).unwrap().is_none());
    /// ```
    pub fn on_failed(
        &mut self,
        caller: Principal,
        failed: SenderFailed,
        now: u64,
    ) -> Result<Option<SenderFailed>, SenderError> {
        self.check_caller(caller)?;
        if self.seen.contains_key(&SeenKey { msg_id: failed.msg_id, kind: Kind::Ack }) {
            return Ok(None);
        }
        Ok(self.first_time(failed.msg_id, Kind::Failed, now).then_some(failed))
    }

    /// Forgets, earliest first, at most [`SenderConfig::gc_batch_limit`]
    /// callbacks whose dedup window ended by `now`; returns how many. If more
    /// are due, [`SenderCore::next_deadline`] is `<= now` afterwards.
    ///
    /// ```
    /// use async_flow_client::sender::{SenderConfig, SenderCore};
    /// use async_flow_client::{MsgId, SenderAck};
    /// let broker = candid::Principal::anonymous();
    /// let mut core = SenderCore::open(ic_stable_structures::VectorMemory::default(), SenderConfig::new(broker));
    /// let ack = SenderAck { msg_id: MsgId(1), hash: None, payload: vec![], target: None, sent_payload: None };
    /// core.on_ack(broker, ack, 0).unwrap();
    /// let due = core.next_deadline().unwrap();
    /// assert_eq!(core.on_timer(due), 1);
    /// assert!(core.is_empty());
    /// ```
    pub fn on_timer(&mut self, now: u64) -> u32 {
        let mut removed = 0;
        while removed < self.config.gc_batch_limit.max(1) {
            let Some((entry, ())) = self.expiry.first_key_value() else { break };
            if entry.expires_at > now {
                break;
            }
            self.expiry.remove(&entry);
            self.seen.remove(&entry.seen);
            removed += 1;
        }
        removed
    }

    /// When the next dedup entry expires: when the timer must fire.
    ///
    /// ```
    /// # use async_flow_client::sender::{SenderConfig, SenderCore};
    /// let core = SenderCore::open(ic_stable_structures::VectorMemory::default(), SenderConfig::new(candid::Principal::anonymous()));
    /// assert_eq!(core.next_deadline(), None);
    /// ```
    pub fn next_deadline(&self) -> Option<u64> {
        self.expiry.first_key_value().map(|(k, ())| k.expires_at)
    }

    /// Whether the callback `kind` of `msg_id` was handed over (within the dedup window).
    ///
    /// ```
    /// # use async_flow_client::sender::{CallbackKind, SenderConfig, SenderCore};
    /// let core = SenderCore::open(ic_stable_structures::VectorMemory::default(), SenderConfig::new(candid::Principal::anonymous()));
    /// assert!(!core.was_handled(async_flow_client::MsgId(1), CallbackKind::Ack));
    /// ```
    pub fn was_handled(&self, msg_id: MsgId, kind: CallbackKind) -> bool {
        self.seen.contains_key(&SeenKey { msg_id, kind: kind.into() })
    }

    /// Number of remembered callbacks.
    ///
    /// ```
    /// # use async_flow_client::sender::{SenderConfig, SenderCore};
    /// let core = SenderCore::open(ic_stable_structures::VectorMemory::default(), SenderConfig::new(candid::Principal::anonymous()));
    /// assert_eq!(core.len(), 0);
    /// ```
    pub fn len(&self) -> u64 {
        self.seen.len()
    }

    /// Whether no callback is remembered (the key counter does not count).
    ///
    /// ```
    /// # use async_flow_client::sender::{SenderConfig, SenderCore};
    /// let core = SenderCore::open(ic_stable_structures::VectorMemory::default(), SenderConfig::new(candid::Principal::anonymous()));
    /// assert!(core.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty() && self.expiry.is_empty()
    }

    /// A fresh idempotency key for one logical send: unique for this
    /// canister across upgrades (a stable counter) and reinstalls (`now`).
    ///
    /// ```
    /// # use async_flow_client::sender::{SenderConfig, SenderCore};
    /// let mut core = SenderCore::open(ic_stable_structures::VectorMemory::default(), SenderConfig::new(candid::Principal::anonymous()));
    /// let (a, b) = (core.next_idempotency_key(5), core.next_idempotency_key(5));
    /// assert_ne!(a, b);
    /// assert!(a.len() <= 64);
    /// ```
    pub fn next_idempotency_key(&mut self, now: u64) -> String {
        let n = self.keys.get() + 1;
        self.keys.set(n);
        idempotency_key(now, n)
    }

    fn check_caller(&self, caller: Principal) -> Result<(), SenderError> {
        if caller == self.config.broker {
            Ok(())
        } else {
            Err(SenderError::NotBroker { caller })
        }
    }

    /// Records `(msg_id, kind)`; false if it was already recorded.
    fn first_time(&mut self, msg_id: MsgId, kind: Kind, now: u64) -> bool {
        let seen = SeenKey { msg_id, kind };
        if self.seen.contains_key(&seen) {
            return false;
        }
        let expires_at = now.saturating_add(self.config.dedup_window_ns);
        self.seen.insert(seen, expires_at);
        self.expiry.insert(ExpiryKey { expires_at, seen }, ());
        true
    }
}

/// The format of generated idempotency keys (at most 52 bytes).
pub(crate) fn idempotency_key(now: u64, counter: u64) -> String {
    format!("async-flow:{now}:{counter}")
}

#[cfg(test)]
mod tests;
