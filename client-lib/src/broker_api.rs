//! The Candid types of the broker's own methods (`enqueue`, `status`, …).
//!
//! They live here, not in the broker, so that a sender canister can call the
//! broker with the very types the broker decodes.

use crate::{CorruptionReport, DeliveryError, MsgId};
use candid::{CandidType, Principal};
use serde::{Deserialize, Serialize};

/// The argument of `enqueue`: where to send what, and how.
///
/// ```
/// use async_flow_client::{EnqueueArgs, EnqueueOptions};
/// let args = EnqueueArgs {
///     target: candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap(),
///     payload: candid::encode_one("hello").unwrap(),
///     options: Some(EnqueueOptions { idempotency_key: Some("order-17".into()), ..Default::default() }),
/// };
/// # let _ = args;
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct EnqueueArgs {
    /// The receiving canister.
    pub target: Principal,
    /// Opaque bytes, usually Candid, delivered as `NewMessage.payload`.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Per-message options; `None` takes the broker's defaults.
    pub options: Option<EnqueueOptions>,
}

/// Per-message options of `enqueue`. Every field is optional; `None` takes
/// the broker's configured default.
///
/// ```
/// use async_flow_client::EnqueueOptions;
/// let options = EnqueueOptions { max_attempts: Some(3), ..Default::default() };
/// assert_eq!(options.ack_timeout_seconds, None);
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// How many NEWs to send before giving up (1 ..= the broker's `max_attempts_limit`).
    pub max_attempts: Option<u32>,
    /// How long to wait for an ACK before sending NEW again (60 ..= 86,400 s).
    pub ack_timeout_seconds: Option<u32>,
    /// Whether the ack (or failure) callback carries the sent payload back.
    pub include_sent_payload: Option<bool>,
    /// Whether the broker calls the sender back (default: yes when the sender
    /// is a canister; users never get callbacks and poll `status`).
    pub notify_sender: Option<bool>,
    /// The same sender and key return the first `msg_id` while that message is
    /// retained, so a call that ended in doubt can be retried (at most 64 bytes).
    pub idempotency_key: Option<String>,
}

/// The result of `enqueue`.
pub type EnqueueResult = Result<MsgId, EnqueueError>;

/// Why `enqueue` refused a message. A refused message is not stored.
///
/// ```
/// use async_flow_client::EnqueueError;
/// let e = EnqueueError::PayloadTooLarge { size: 3_000_000, max: 2_000_000 };
/// assert!(matches!(e, EnqueueError::PayloadTooLarge { .. }));
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum EnqueueError {
    /// The anonymous principal may not send.
    AnonymousCaller,
    /// The caller is not on the broker's allow-list.
    NotAllowed,
    /// The target cannot receive messages (anonymous, the management canister, or the broker).
    InvalidTarget,
    /// The payload is larger than the broker accepts.
    PayloadTooLarge {
        /// The payload's size in bytes.
        size: u64,
        /// The broker's limit in bytes.
        max: u64,
    },
    /// An option is out of range.
    InvalidOption {
        /// The option's field name.
        field: String,
        /// What is allowed.
        reason: String,
    },
    /// The caller already has too many pending messages or bytes.
    SenderQuotaExceeded {
        /// The caller's pending messages.
        pending_messages: u64,
        /// The caller's pending payload bytes.
        pending_bytes: u64,
    },
    /// The broker holds as much as it is configured to; try again later.
    Busy,
    /// Fewer cycles were attached than the configured fee.
    InsufficientCycles {
        /// The fee per message.
        required: u128,
        /// What the call attached.
        attached: u128,
    },
}

/// Where a message is in its life.
///
/// ```text
/// Queued ─▶ AwaitingAck ─▶ Acked ─▶ Delivered
///   │           │ └──────▶ Corrupted
///   │           └────────▶ Failed   (max attempts: dead letter)
///   └───────────┴────────▶ Cancelled
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageState {
    /// Waiting for a place in the target's in-flight window.
    Queued,
    /// NEW sent; waiting for the target's ACK.
    AwaitingAck,
    /// ACK received and FIN sent; the sender's callback is pending.
    Acked,
    /// Acknowledged by the target, and the sender was told (or needs no callback).
    Delivered,
    /// Dead letter: no ACK after `max_attempts` NEWs.
    Failed,
    /// The target acknowledged a payload whose hash differs from what was sent.
    Corrupted,
    /// Cancelled by the sender or a controller.
    Cancelled,
}

impl MessageState {
    /// Every state, in declaration order.
    ///
    /// ```
    /// # use async_flow_client::MessageState;
    /// assert_eq!(MessageState::ALL.len(), 7);
    /// ```
    pub const ALL: [MessageState; 7] = [
        MessageState::Queued,
        MessageState::AwaitingAck,
        MessageState::Acked,
        MessageState::Delivered,
        MessageState::Failed,
        MessageState::Corrupted,
        MessageState::Cancelled,
    ];

    /// Whether the broker is done with delivery (the record is a tombstone
    /// kept for `retention_seconds`).
    ///
    /// ```
    /// # use async_flow_client::MessageState;
    /// assert!(MessageState::Delivered.is_terminal());
    /// assert!(!MessageState::Acked.is_terminal());
    /// ```
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            MessageState::Delivered | MessageState::Failed | MessageState::Corrupted | MessageState::Cancelled
        )
    }
}

/// Whether the sender has been told how its message ended.
///
/// ```
/// # use async_flow_client::SenderNotification;
/// assert_ne!(SenderNotification::Pending, SenderNotification::Confirmed);
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderNotification {
    /// No callback: the sender is not a canister, or opted out.
    NotRequested,
    /// Nothing to tell yet.
    NotYet,
    /// A callback is due or in flight.
    Pending,
    /// The sender replied to the callback.
    Confirmed,
    /// The callback was tried `max_callback_attempts` times without a reply.
    GaveUp,
}

/// The answer of `status`: everything the broker knows of one message.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MessageStatus {
    /// The identifier.
    pub msg_id: MsgId,
    /// Who enqueued it.
    pub sender: Principal,
    /// Where it goes.
    pub target: Principal,
    /// Where it is in its life.
    pub state: MessageState,
    /// NEWs sent so far (in the current drive, after a `retry`).
    pub attempts: u32,
    /// The attempt limit of this message.
    pub max_attempts: u32,
    /// The payload's size in bytes.
    pub payload_size: u64,
    /// When it was enqueued (IC time, ns).
    pub created_at_ns: u64,
    /// When its state last changed (ns).
    pub updated_at_ns: u64,
    /// When the broker will next act on it (resend, callback, or removal of the tombstone).
    pub next_action_at_ns: Option<u64>,
    /// When the valid ACK arrived.
    pub acked_at_ns: Option<u64>,
    /// Whether the sender has been told.
    pub sender_notification: SenderNotification,
    /// The most recent delivery problem.
    pub last_error: Option<DeliveryError>,
    /// For a corrupted message: what was expected and what came back.
    pub corruption: Option<CorruptionReport>,
}

/// The argument of `list_messages`. Non-controllers only see messages they sent
/// or that were sent to them: with neither `sender` nor `target` set, the
/// listing is of the caller's own sent messages.
///
/// ```
/// use async_flow_client::{ListFilter, MessageState};
/// let filter = ListFilter { state: Some(MessageState::Failed), limit: Some(50), ..Default::default() };
/// # let _ = filter;
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only messages from this sender.
    pub sender: Option<Principal>,
    /// Only messages to this target.
    pub target: Option<Principal>,
    /// Only messages in this state.
    pub state: Option<MessageState>,
    /// Continue after this `msg_id` (the previous page's `next_cursor`).
    pub start_after: Option<MsgId>,
    /// At most this many messages (default and cap: 100).
    pub limit: Option<u32>,
}

/// One page of `list_messages`, oldest first.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MessagePage {
    /// The messages of this page.
    pub messages: Vec<MessageStatus>,
    /// Pass as `start_after` for the next page; `None` at the end.
    pub next_cursor: Option<MsgId>,
}

/// Why `list_messages` refused.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ListError {
    /// Only controllers may list other principals' messages.
    NotAuthorized,
}

/// Why `cancel`, `retry` or `set_config` refused. Nothing changed.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum ManageError {
    /// The caller may not do this (only the sender or a controller; `set_config`: controllers).
    NotAuthorized,
    /// No such message (never enqueued, or already removed after retention).
    UnknownMessage,
    /// The message is in a state the operation does not apply to.
    InvalidState {
        /// Its current state.
        state: MessageState,
    },
    /// A configuration value is out of range.
    InvalidConfig {
        /// The field.
        field: String,
        /// What is allowed.
        reason: String,
    },
    /// Re-driving the message would exceed the sender's quota or the broker's capacity.
    Busy,
}

/// The broker's configuration, as `get_config` returns it.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Default wait for an ACK before re-sending NEW (330 s: longer than the IC's 5-minute queue timeout).
    pub ack_timeout_seconds: u32,
    /// Default number of NEWs before a message is dead-lettered.
    pub max_attempts: u32,
    /// The highest `max_attempts` a sender may ask for.
    pub max_attempts_limit: u32,
    /// NEWs awaiting ACK per target; the rest wait in a FIFO. 1 gives in-order delivery.
    pub max_in_flight_per_target: u32,
    /// Largest payload accepted, in bytes.
    pub max_payload_bytes: u64,
    /// Pending messages allowed per sender.
    pub max_pending_per_sender: u64,
    /// Pending payload bytes allowed per sender.
    pub max_pending_bytes_per_sender: u64,
    /// Message records kept in all (pending and tombstones); past it `enqueue` answers `Busy`.
    pub max_stored_messages: u64,
    /// Payload and reply bytes kept in all; past it `enqueue` answers `Busy`.
    pub max_stored_bytes: u64,
    /// How long terminal records (and idempotency keys) are kept.
    pub retention_seconds: u64,
    /// Sender callback attempts before giving up.
    pub max_callback_attempts: u32,
    /// Timeout of the bounded-wait sender callbacks.
    pub callback_timeout_seconds: u32,
    /// Cycles to attach to each `enqueue`d message (0: free).
    pub fee_cycles_per_message: u128,
    /// When set, only these principals may `enqueue`.
    pub allowed_senders: Option<Vec<Principal>>,
    /// Items handled per timer run before yielding to a new run.
    pub timer_batch_limit: u32,
}

/// The init and upgrade argument, and the argument of `set_config`: every field
/// is optional, and `None` keeps the current (or default) value.
///
/// ```
/// use async_flow_client::ConfigUpdate;
/// let update = ConfigUpdate { max_in_flight_per_target: Some(1), ..Default::default() };
/// # let _ = update;
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigUpdate {
    /// See [`Config::ack_timeout_seconds`].
    pub ack_timeout_seconds: Option<u32>,
    /// See [`Config::max_attempts`].
    pub max_attempts: Option<u32>,
    /// See [`Config::max_attempts_limit`].
    pub max_attempts_limit: Option<u32>,
    /// See [`Config::max_in_flight_per_target`].
    pub max_in_flight_per_target: Option<u32>,
    /// See [`Config::max_payload_bytes`].
    pub max_payload_bytes: Option<u64>,
    /// See [`Config::max_pending_per_sender`].
    pub max_pending_per_sender: Option<u64>,
    /// See [`Config::max_pending_bytes_per_sender`].
    pub max_pending_bytes_per_sender: Option<u64>,
    /// See [`Config::max_stored_messages`].
    pub max_stored_messages: Option<u64>,
    /// See [`Config::max_stored_bytes`].
    pub max_stored_bytes: Option<u64>,
    /// See [`Config::retention_seconds`].
    pub retention_seconds: Option<u64>,
    /// See [`Config::max_callback_attempts`].
    pub max_callback_attempts: Option<u32>,
    /// See [`Config::callback_timeout_seconds`].
    pub callback_timeout_seconds: Option<u32>,
    /// See [`Config::fee_cycles_per_message`].
    pub fee_cycles_per_message: Option<u128>,
    /// See [`Config::allowed_senders`]; `Some(None)` removes the allow-list.
    pub allowed_senders: Option<Option<Vec<Principal>>>,
    /// See [`Config::timer_batch_limit`].
    pub timer_batch_limit: Option<u32>,
}

/// The answer of `stats`.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages now in each state (tombstones included until removed).
    pub messages_by_state: Vec<(MessageState, u64)>,
    /// Targets with NEWs in flight or queued, at most 100, busiest first.
    pub targets: Vec<TargetLoad>,
    /// Age of the oldest message not yet terminal, in seconds.
    pub oldest_pending_age_seconds: Option<u64>,
    /// Payload and reply bytes stored.
    pub stored_bytes: u64,
    /// Counters since install.
    pub totals: Totals,
}

/// In-flight and queued NEWs of one target.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TargetLoad {
    /// The target.
    pub target: Principal,
    /// NEWs awaiting ACK.
    pub in_flight: u32,
    /// Messages waiting for a place in the window.
    pub queued: u64,
}

/// Counters since install; they survive upgrades.
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Messages accepted by `enqueue`.
    pub enqueued: u64,
    /// Messages that reached `Delivered`.
    pub delivered: u64,
    /// NEWs sent again after a timeout or a send failure.
    pub retries: u64,
    /// Messages dead-lettered (`Failed`).
    pub dead_lettered: u64,
    /// Messages whose ACK hash did not match.
    pub corrupted: u64,
    /// ACKs from a principal other than the message's target (ignored).
    pub spoofed_acks: u64,
    /// ACKs for unknown message ids (ignored).
    pub unknown_acks: u64,
    /// `enqueue` calls answered from the idempotency index.
    pub dedup_hits: u64,
    /// `enqueue` calls refused.
    pub rejected_enqueues: u64,
    /// Synchronous send failures (NEW or FIN).
    pub send_failures: u64,
    /// Sender callbacks that failed and will be (or were) retried.
    pub callback_failures: u64,
    /// Messages cancelled.
    pub cancelled: u64,
    /// Tombstones removed after retention.
    pub garbage_collected: u64,
}
