//! What the core asks its caller to do, and what it reports happened.

use async_flow_client::{AckAck, DeliveryError, MsgId, NewMessage, SenderAck, SenderFailed};
use candid::Principal;
use std::fmt;

/// An action the caller must perform. The core never performs I/O itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// One-way call `com_asyncFlow_newMessage(message)` to `target`. If the IC
    /// refuses it synchronously, report that with [`super::Broker::on_new_refused`].
    SendNew { target: Principal, message: NewMessage },
    /// One-way call `com_asyncFlow_ackack(fin)` to `target`. A refusal only
    /// needs [`super::Broker::on_fin_refused`]: the receiver re-sends its ACK.
    SendFin { target: Principal, fin: AckAck },
    /// Bounded-wait call to the sender; report its outcome with
    /// [`super::Broker::on_callback_result`], passing `serial` back.
    Callback { sender: Principal, serial: u32, callback: Callback },
}

/// The two sender callbacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Callback {
    /// `com_asyncFlow_ack`: the target acknowledged.
    Ack(SenderAck),
    /// `com_asyncFlow_failed`: dead letter or corruption.
    Failed(SenderFailed),
}

impl Callback {
    pub fn msg_id(&self) -> MsgId {
        match self {
            Callback::Ack(a) => a.msg_id,
            Callback::Failed(f) => f.msg_id,
        }
    }

    pub fn method(&self) -> &'static str {
        match self {
            Callback::Ack(_) => async_flow_client::protocol::method::ACK,
            Callback::Failed(_) => async_flow_client::protocol::method::FAILED,
        }
    }

    /// The Candid-encoded argument.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Callback::Ack(a) => candid::encode_one(a),
            Callback::Failed(f) => candid::encode_one(f),
        }
        .expect("callback records encode")
    }
}

/// Something that happened to a message, for logs and the simulation's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Enqueued { msg_id: MsgId, sender: Principal, target: Principal, size: u32 },
    WaitingForWindow { msg_id: MsgId },
    NewSent { msg_id: MsgId, attempt: u32 },
    NewRefused { msg_id: MsgId, attempt: u32, error: DeliveryError },
    Acked { msg_id: MsgId },
    DuplicateAck { msg_id: MsgId },
    SpoofedAck { msg_id: MsgId, caller: Principal },
    UnknownAck { msg_id: MsgId, caller: Principal },
    Corrupted { msg_id: MsgId, expected_hash: u32, received_hash: u32 },
    DeadLettered { msg_id: MsgId, attempts: u32 },
    CallbackSent { msg_id: MsgId, attempt: u32 },
    CallbackFailed { msg_id: MsgId, attempt: u32, error: DeliveryError },
    CallbackConfirmed { msg_id: MsgId },
    CallbackGaveUp { msg_id: MsgId },
    Delivered { msg_id: MsgId },
    Cancelled { msg_id: MsgId },
    Retried { msg_id: MsgId },
    Collected { msg_id: MsgId },
}

impl Event {
    pub fn msg_id(&self) -> MsgId {
        use Event::*;
        match self {
            Enqueued { msg_id, .. }
            | WaitingForWindow { msg_id }
            | NewSent { msg_id, .. }
            | NewRefused { msg_id, .. }
            | Acked { msg_id }
            | DuplicateAck { msg_id }
            | SpoofedAck { msg_id, .. }
            | UnknownAck { msg_id, .. }
            | Corrupted { msg_id, .. }
            | DeadLettered { msg_id, .. }
            | CallbackSent { msg_id, .. }
            | CallbackFailed { msg_id, .. }
            | CallbackConfirmed { msg_id }
            | CallbackGaveUp { msg_id }
            | Delivered { msg_id }
            | Cancelled { msg_id }
            | Retried { msg_id }
            | Collected { msg_id } => *msg_id,
        }
    }
}

/// One greppable line: `msg=<ulid> event=<name> key=value…`.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Event::*;
        write!(f, "msg={} event=", self.msg_id())?;
        match self {
            Enqueued { sender, target, size, .. } => write!(f, "enqueued sender={sender} target={target} size={size}"),
            WaitingForWindow { .. } => write!(f, "queued_for_window"),
            NewSent { attempt, .. } => write!(f, "new_sent attempt={attempt}"),
            NewRefused { attempt, error, .. } => write!(f, "new_refused attempt={attempt} error={error:?}"),
            Acked { .. } => write!(f, "acked"),
            DuplicateAck { .. } => write!(f, "duplicate_ack fin_resent"),
            SpoofedAck { caller, .. } => write!(f, "spoofed_ack caller={caller}"),
            UnknownAck { caller, .. } => write!(f, "unknown_ack caller={caller}"),
            Corrupted { expected_hash, received_hash, .. } => {
                write!(f, "corrupted expected_hash={expected_hash:08x} received_hash={received_hash:08x}")
            }
            DeadLettered { attempts, .. } => write!(f, "failed attempts={attempts}"),
            CallbackSent { attempt, .. } => write!(f, "callback_sent attempt={attempt}"),
            CallbackFailed { attempt, error, .. } => write!(f, "callback_failed attempt={attempt} error={error:?}"),
            CallbackConfirmed { .. } => write!(f, "callback_confirmed"),
            CallbackGaveUp { .. } => write!(f, "callback_gave_up"),
            Delivered { .. } => write!(f, "delivered"),
            Cancelled { .. } => write!(f, "cancelled"),
            Retried { .. } => write!(f, "retried"),
            Collected { .. } => write!(f, "collected"),
        }
    }
}
