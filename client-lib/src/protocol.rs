//! The records of the wire protocol: NEW, ACK, FIN and the sender callbacks.
//!
//! ```text
//! 1 sender   → broker   enqueue(EnqueueArgs) -> EnqueueResult                 (update, replies)
//! 2 broker   → receiver com_asyncFlow_newMessage(NewMessage)                  one-way
//! 3 receiver → broker   com_asyncFlow_ack(Ack)                                one-way
//! 4 broker   → receiver com_asyncFlow_ackack(AckAck)                          one-way (FIN)
//! 5 broker   → sender   com_asyncFlow_ack(SenderAck)                          bounded-wait call
//! 5' broker  → sender   com_asyncFlow_failed(SenderFailed)                    bounded-wait call
//! ```
//!
//! Field names and types are those of the original async-flow specification;
//! the fields it does not have are all `opt`, so a canister written to the
//! specification decodes our records, and ours decode its records.

use crate::MsgId;
use candid::{CandidType, Principal};
use serde::{Deserialize, Serialize};
pub use serde_bytes::ByteBuf;

/// Method names of the protocol, shared by the broker and the client.
pub mod method {
    /// Receiver endpoint for a NEW message (step 2).
    pub const NEW_MESSAGE: &str = "com_asyncFlow_newMessage";
    /// Broker endpoint for the receiver's ACK (step 3), and the sender's
    /// endpoint for the broker's confirmation (step 5).
    pub const ACK: &str = "com_asyncFlow_ack";
    /// Receiver endpoint for the FIN (step 4).
    pub const ACK_ACK: &str = "com_asyncFlow_ackack";
    /// Sender endpoint for a message that was given up or found corrupted (step 5').
    pub const FAILED: &str = "com_asyncFlow_failed";
    /// Broker endpoint a sender calls to send (step 1).
    pub const ENQUEUE: &str = "enqueue";
}

/// Step 2, broker → receiver: a message to process.
///
/// ```
/// use async_flow_client::{MsgId, NewMessage};
/// let new = NewMessage { msg_id: MsgId(1), payload: b"hi".to_vec(), sender: None, attempt: Some(1) };
/// let bytes = candid::encode_one(&new).unwrap();
/// assert_eq!(candid::decode_one::<NewMessage>(&bytes).unwrap(), new);
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// The broker's identifier of the message.
    pub msg_id: MsgId,
    /// The sender's bytes, usually Candid.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The principal that enqueued the message.
    pub sender: Option<Principal>,
    /// Which delivery attempt this is, from 1.
    pub attempt: Option<u32>,
}

/// Step 3, receiver → broker: the message was received and processed.
///
/// ```
/// use async_flow_client::{payload_hash, Ack, MsgId};
/// let ack = Ack { msg_id: MsgId(1), hash: Some(payload_hash(b"hi")), payload: vec![] };
/// # let _ = ack;
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The identifier from the NEW.
    pub msg_id: MsgId,
    /// [`crate::payload_hash`] of the NEW payload as received; `None` means "not checked".
    pub hash: Option<u32>,
    /// The receiver's reply, usually Candid; handed to the sender.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// Step 4, broker → receiver: the FIN ("ackack" in the specification).
///
/// ```
/// use async_flow_client::{AckAck, MsgId};
/// let fin = AckAck { msg_id: MsgId(1), hash: None };
/// # let _ = fin;
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AckAck {
    /// The identifier of the acknowledged message.
    pub msg_id: MsgId,
    /// The hash the ACK carried, echoed.
    pub hash: Option<u32>,
}

/// Step 5, broker → sender: the target acknowledged the message.
///
/// It is a superset of the specification's sender-side
/// `com_asyncFlow_ack({msg_id; hash; payload})`.
///
/// ```
/// use async_flow_client::{MsgId, SenderAck};
/// let ack = SenderAck { msg_id: MsgId(1), hash: Some(7), payload: vec![], target: None, sent_payload: None };
/// # let _ = ack;
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SenderAck {
    /// The identifier `enqueue` returned.
    pub msg_id: MsgId,
    /// The hash the receiver reported (already checked by the broker).
    pub hash: Option<u32>,
    /// The receiver's reply.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The target the message went to.
    pub target: Option<Principal>,
    /// The payload that was sent, when the sender asked for it in its options.
    pub sent_payload: Option<ByteBuf>,
}

/// Step 5', broker → sender: the message was given up or found corrupted.
///
/// ```
/// use async_flow_client::{FailureReason, MsgId, SenderFailed};
/// let failed = SenderFailed {
///     msg_id: MsgId(1),
///     target: candid::Principal::management_canister(),
///     reason: FailureReason::MaxAttemptsExceeded { last_error: None },
///     attempts: 10,
///     sent_payload: None,
/// };
/// # let _ = failed;
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SenderFailed {
    /// The identifier `enqueue` returned.
    pub msg_id: MsgId,
    /// The target the message was for.
    pub target: Principal,
    /// Why the broker stopped.
    pub reason: FailureReason,
    /// How many NEWs were sent.
    pub attempts: u32,
    /// The payload that was sent, when the sender asked for it in its options.
    pub sent_payload: Option<ByteBuf>,
}

/// Why a message did not complete.
///
/// ```
/// use async_flow_client::{CorruptionReport, FailureReason};
/// let reason = FailureReason::Corrupted(CorruptionReport { expected_hash: 1, received_hash: 2, reply: vec![] });
/// assert!(matches!(reason, FailureReason::Corrupted(_)));
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// No valid ACK came back within `max_attempts` NEWs (dead letter).
    MaxAttemptsExceeded {
        /// The last synchronous send error, if the last attempt had one.
        last_error: Option<DeliveryError>,
    },
    /// The target acknowledged a payload whose hash differs from what was sent.
    Corrupted(CorruptionReport),
}

/// Everything the corruption handler needs: what was expected, what came back.
///
/// ```
/// use async_flow_client::CorruptionReport;
/// let report = CorruptionReport { expected_hash: 1, received_hash: 2, reply: b"reply".to_vec() };
/// assert_ne!(report.expected_hash, report.received_hash);
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CorruptionReport {
    /// Hash of the payload the broker sent.
    pub expected_hash: u32,
    /// Hash the receiver reported.
    pub received_hash: u32,
    /// The receiver's reply payload.
    #[serde(with = "serde_bytes")]
    pub reply: Vec<u8>,
}

/// A failure to hand a message to the IC, or a rejected callback.
///
/// ```
/// use async_flow_client::DeliveryError;
/// let e = DeliveryError::CallRejected { reject_code: 2 };
/// # let _ = e;
/// ```
#[derive(CandidType, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryError {
    /// `ic0.call_perform` refused the call (for example, the output queue is full).
    SendRefused,
    /// The broker's liquid cycle balance could not pay for the call.
    InsufficientCycles,
    /// A bounded-wait call came back rejected, with the IC reject code
    /// (2 `SYS_TRANSIENT`, 3 `DESTINATION_INVALID`, 4 `CANISTER_REJECT`, 5 `CANISTER_ERROR`, 6 `SYS_UNKNOWN`).
    CallRejected {
        /// The IC reject code.
        reject_code: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use candid::{decode_one, encode_one};

    /// The shapes of the original specification, field for field.
    mod seed {
        use super::*;
        #[derive(CandidType, Deserialize, Debug, PartialEq)]
        pub struct NewMessage {
            pub msg_id: candid::Nat,
            pub payload: Vec<u8>,
        }
        #[derive(CandidType, Deserialize, Debug, PartialEq)]
        pub struct Ack {
            pub msg_id: candid::Nat,
            pub hash: Option<u32>,
            pub payload: Vec<u8>,
        }
        #[derive(CandidType, Deserialize, Debug, PartialEq)]
        pub struct AckAck {
            pub msg_id: candid::Nat,
            pub hash: Option<u32>,
        }
    }

    #[test]
    fn should_decode_a_seed_new_message_with_only_msg_id_and_payload() {
        let bytes = encode_one(seed::NewMessage { msg_id: 7u8.into(), payload: b"x".to_vec() }).unwrap();
        let ours: NewMessage = decode_one(&bytes).unwrap();
        assert_eq!(ours.msg_id, MsgId(7));
        assert_eq!(ours.payload, b"x");
        assert_eq!((ours.sender, ours.attempt), (None, None));
    }

    #[test]
    fn should_decode_our_records_as_the_seed_shapes() {
        let new = NewMessage {
            msg_id: MsgId(9),
            payload: b"p".to_vec(),
            sender: Some(Principal::anonymous()),
            attempt: Some(3),
        };
        let seed_new: seed::NewMessage = decode_one(&encode_one(&new).unwrap()).unwrap();
        assert_eq!(seed_new.msg_id, candid::Nat::from(9u8));

        let sender_ack = SenderAck {
            msg_id: MsgId(9),
            hash: Some(1),
            payload: b"r".to_vec(),
            target: Some(Principal::anonymous()),
            sent_payload: Some(ByteBuf::from(b"p".to_vec())),
        };
        let seed_ack: seed::Ack = decode_one(&encode_one(&sender_ack).unwrap()).unwrap();
        assert_eq!(seed_ack, seed::Ack { msg_id: 9u8.into(), hash: Some(1), payload: b"r".to_vec() });

        let fin: seed::AckAck = decode_one(&encode_one(AckAck { msg_id: MsgId(9), hash: None }).unwrap()).unwrap();
        assert_eq!(fin.hash, None);
    }

    #[test]
    fn should_decode_a_seed_ack_as_ours_and_as_a_sender_ack() {
        let bytes = encode_one(seed::Ack { msg_id: 5u8.into(), hash: None, payload: vec![1] }).unwrap();
        assert_eq!(decode_one::<Ack>(&bytes).unwrap(), Ack { msg_id: MsgId(5), hash: None, payload: vec![1] });
        let sender_ack: SenderAck = decode_one(&bytes).unwrap();
        assert_eq!((sender_ack.target, sender_ack.sent_payload), (None, None));
    }
}
