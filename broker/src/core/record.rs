//! The fixed-size record of one message: everything but its payload.

use crate::storage::{Writer, PRINCIPAL_BYTES};
use async_flow_client::fixed_storable;
use async_flow_client::{DeliveryError, MessageState, SenderNotification};
use candid::Principal;

/// The state of one message. About 140 bytes, rewritten on every transition;
/// the payload and the reply live in their own maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub state: MessageState,
    pub sender: Principal,
    pub target: Principal,
    /// NEWs handed to the IC in the current drive (a refused send is taken back).
    pub attempts: u32,
    pub max_attempts: u32,
    pub ack_timeout_secs: u32,
    /// Consecutive refused sends, for the backoff.
    pub send_refusals: u32,
    pub payload_len: u32,
    /// `payload_hash` of what was sent.
    pub sent_hash: u32,
    /// The hash the target reported, if it reported one.
    pub received_hash: Option<u32>,
    pub include_sent_payload: bool,
    pub notify_sender: bool,
    pub has_idempotency_key: bool,
    pub created_at: u64,
    pub updated_at: u64,
    /// The record's entry in the schedule, if any.
    pub deadline: Option<u64>,
    pub acked_at: Option<u64>,
    pub notification: SenderNotification,
    /// Callback attempts for the current notification.
    pub callback_attempts: u32,
    /// Increases with every callback ever sent for this record, so that a
    /// late result of an earlier callback is recognised and ignored.
    pub callback_serial: u32,
    /// A callback call is out and its result not yet seen.
    pub callback_in_flight: bool,
    pub last_error: Option<DeliveryError>,
}

const VERSION: u8 = 1;
const SIZE: usize = 2 + 2 * PRINCIPAL_BYTES + 4 * 6 + 5 + 1 + 8 * 4 + 1 + 4 + 4 + 5;

const FLAG_INCLUDE_SENT_PAYLOAD: u8 = 1;
const FLAG_NOTIFY_SENDER: u8 = 2;
const FLAG_HAS_IDEMPOTENCY_KEY: u8 = 4;
const FLAG_CALLBACK_IN_FLIGHT: u8 = 8;

fn state_code(s: MessageState) -> u8 {
    match s {
        MessageState::Queued => 0,
        MessageState::AwaitingAck => 1,
        MessageState::Acked => 2,
        MessageState::Delivered => 3,
        MessageState::Failed => 4,
        MessageState::Corrupted => 5,
        MessageState::Cancelled => 6,
    }
}

fn state_from(code: u8) -> MessageState {
    MessageState::ALL[code as usize]
}

fn notification_code(n: SenderNotification) -> u8 {
    match n {
        SenderNotification::NotRequested => 0,
        SenderNotification::NotYet => 1,
        SenderNotification::Pending => 2,
        SenderNotification::Confirmed => 3,
        SenderNotification::GaveUp => 4,
    }
}

fn notification_from(code: u8) -> SenderNotification {
    [
        SenderNotification::NotRequested,
        SenderNotification::NotYet,
        SenderNotification::Pending,
        SenderNotification::Confirmed,
        SenderNotification::GaveUp,
    ][code as usize]
}

fn error_code(e: Option<DeliveryError>) -> (u8, u32) {
    match e {
        None => (0, 0),
        Some(DeliveryError::SendRefused) => (1, 0),
        Some(DeliveryError::InsufficientCycles) => (2, 0),
        Some(DeliveryError::CallRejected { reject_code }) => (3, reject_code),
    }
}

fn error_from(tag: u8, code: u32) -> Option<DeliveryError> {
    match tag {
        0 => None,
        1 => Some(DeliveryError::SendRefused),
        2 => Some(DeliveryError::InsufficientCycles),
        _ => Some(DeliveryError::CallRejected { reject_code: code }),
    }
}

fn opt_u64(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

fixed_storable!(
    MessageRecord,
    SIZE as u32,
    |s| {
        let flags = (s.include_sent_payload as u8 * FLAG_INCLUDE_SENT_PAYLOAD)
            | (s.notify_sender as u8 * FLAG_NOTIFY_SENDER)
            | (s.has_idempotency_key as u8 * FLAG_HAS_IDEMPOTENCY_KEY)
            | (s.callback_in_flight as u8 * FLAG_CALLBACK_IN_FLIGHT);
        let (err_tag, err_code) = error_code(s.last_error);
        Writer::with_capacity(SIZE)
            .u8(VERSION)
            .u8(state_code(s.state))
            .principal(&s.sender)
            .principal(&s.target)
            .u32(s.attempts)
            .u32(s.max_attempts)
            .u32(s.ack_timeout_secs)
            .u32(s.send_refusals)
            .u32(s.payload_len)
            .u32(s.sent_hash)
            .u8(s.received_hash.is_some() as u8)
            .u32(s.received_hash.unwrap_or(0))
            .u8(flags)
            .u64(s.created_at)
            .u64(s.updated_at)
            .u64(s.deadline.unwrap_or(0))
            .u64(s.acked_at.unwrap_or(0))
            .u8(notification_code(s.notification))
            .u32(s.callback_attempts)
            .u32(s.callback_serial)
            .u8(err_tag)
            .u32(err_code)
            .finish()
    },
    |r| {
        let version = r.u8();
        assert_eq!(version, VERSION, "unknown MessageRecord version");
        let state = state_from(r.u8());
        let sender = r.principal();
        let target = r.principal();
        let attempts = r.u32();
        let max_attempts = r.u32();
        let ack_timeout_secs = r.u32();
        let send_refusals = r.u32();
        let payload_len = r.u32();
        let sent_hash = r.u32();
        let has_received = r.u8() != 0;
        let received = r.u32();
        let flags = r.u8();
        let created_at = r.u64();
        let updated_at = r.u64();
        let deadline = opt_u64(r.u64());
        let acked_at = opt_u64(r.u64());
        let notification = notification_from(r.u8());
        let callback_attempts = r.u32();
        let callback_serial = r.u32();
        let err_tag = r.u8();
        let err_code = r.u32();
        MessageRecord {
            state,
            sender,
            target,
            attempts,
            max_attempts,
            ack_timeout_secs,
            send_refusals,
            payload_len,
            sent_hash,
            received_hash: has_received.then_some(received),
            include_sent_payload: flags & FLAG_INCLUDE_SENT_PAYLOAD != 0,
            notify_sender: flags & FLAG_NOTIFY_SENDER != 0,
            has_idempotency_key: flags & FLAG_HAS_IDEMPOTENCY_KEY != 0,
            created_at,
            updated_at,
            deadline,
            acked_at,
            notification,
            callback_attempts,
            callback_serial,
            callback_in_flight: flags & FLAG_CALLBACK_IN_FLIGHT != 0,
            last_error: error_from(err_tag, err_code),
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::golden::{assert_golden, principal};
    use ic_stable_structures::Storable;
    use std::borrow::Cow;

    fn sample() -> MessageRecord {
        MessageRecord {
            state: MessageState::AwaitingAck,
            sender: principal(),
            target: Principal::from_slice(&[1, 2, 3]),
            attempts: 2,
            max_attempts: 10,
            ack_timeout_secs: 330,
            send_refusals: 1,
            payload_len: 100,
            sent_hash: 0xdead_beef,
            received_hash: Some(7),
            include_sent_payload: true,
            notify_sender: true,
            has_idempotency_key: false,
            created_at: 1,
            updated_at: 2,
            deadline: Some(3),
            acked_at: None,
            notification: SenderNotification::NotYet,
            callback_attempts: 0,
            callback_serial: 5,
            callback_in_flight: false,
            last_error: Some(DeliveryError::CallRejected { reject_code: 2 }),
        }
    }

    #[test]
    fn should_keep_message_record_format() {
        let expected = concat!(
            "0101",
            "0a0000000000000002010100000000000000000000000000000000000000",
            "030102030000000000000000000000000000000000000000000000000000",
            "00000002",
            "0000000a",
            "0000014a",
            "00000001",
            "00000064",
            "deadbeef",
            "01",
            "00000007",
            "03",
            "0000000000000001",
            "0000000000000002",
            "0000000000000003",
            "0000000000000000",
            "01",
            "00000000",
            "00000005",
            "03",
            "00000002",
        );
        assert_golden(sample(), expected);
    }

    #[test]
    fn should_round_trip_every_state_notification_and_error() {
        for state in MessageState::ALL {
            for notification in [
                SenderNotification::NotRequested,
                SenderNotification::NotYet,
                SenderNotification::Pending,
                SenderNotification::Confirmed,
                SenderNotification::GaveUp,
            ] {
                for last_error in [
                    None,
                    Some(DeliveryError::SendRefused),
                    Some(DeliveryError::InsufficientCycles),
                    Some(DeliveryError::CallRejected { reject_code: 6 }),
                ] {
                    let record = MessageRecord { state, notification, last_error, received_hash: None, ..sample() };
                    let bytes = record.to_bytes().into_owned();
                    assert_eq!(MessageRecord::from_bytes(Cow::Owned(bytes)), record);
                }
            }
        }
    }
}
