//! Stable storage: memory ids, key and record types, and their byte formats.
//!
//! Every structure lives in its own virtual memory of one `MemoryManager`:
//!
//! ```text
//! stable memory ─ MemoryManager
//!   ├─ 0  CONFIG          StableCell<Config>                 (Candid)
//!   ├─ 1  STATE           StableCell<BrokerState>            counters, ULID generator
//!   ├─ 2  MESSAGES        msg_id            → MessageRecord  fixed 136 bytes
//!   ├─ 3  PAYLOADS        msg_id            → payload blob   dropped when no longer needed
//!   ├─ 4  REPLIES         msg_id            → ACK reply blob until the sender has it
//!   ├─ 5  SCHEDULE        (deadline, msg_id)                 the one timer's agenda
//!   ├─ 6  TARGET_FIFO     (target, msg_id)                   messages waiting for the window
//!   ├─ 7  TARGETS         target            → TargetLoad     in flight / queued
//!   ├─ 8  BY_SENDER       (sender, msg_id)                   listing
//!   ├─ 9  BY_TARGET       (target, msg_id)                   listing
//!   ├─ 10 SENDERS         sender            → SenderUsage    quotas
//!   ├─ 11 IDEMPOTENCY     (sender, sha256(key)) → msg_id
//!   ├─ 12 IDEMPOTENCY_OF  msg_id            → sha256(key)    to forget the key with the message
//!   └─ 13 PENDING         msg_id                             not yet terminal, oldest first
//! ```
//!
//! Ids are never reused: a retired structure keeps its number. Records that
//! change often are small and fixed-size; payloads live apart, so a state
//! change rewrites about a hundred bytes, never the payload.

use async_flow_client::fixed_storable;
pub use async_flow_client::storage::Blob;
pub(crate) use async_flow_client::storage::{Reader, Writer, PRINCIPAL_BYTES};
use async_flow_client::MsgId;
use candid::Principal;

/// The ids of the virtual memories. Never reuse a number.
pub mod memory_id {
    use ic_stable_structures::memory_manager::MemoryId;
    pub const CONFIG: MemoryId = MemoryId::new(0);
    pub const STATE: MemoryId = MemoryId::new(1);
    pub const MESSAGES: MemoryId = MemoryId::new(2);
    pub const PAYLOADS: MemoryId = MemoryId::new(3);
    pub const REPLIES: MemoryId = MemoryId::new(4);
    pub const SCHEDULE: MemoryId = MemoryId::new(5);
    pub const TARGET_FIFO: MemoryId = MemoryId::new(6);
    pub const TARGETS: MemoryId = MemoryId::new(7);
    pub const BY_SENDER: MemoryId = MemoryId::new(8);
    pub const BY_TARGET: MemoryId = MemoryId::new(9);
    pub const SENDERS: MemoryId = MemoryId::new(10);
    pub const IDEMPOTENCY: MemoryId = MemoryId::new(11);
    pub const IDEMPOTENCY_OF: MemoryId = MemoryId::new(12);
    pub const PENDING: MemoryId = MemoryId::new(13);
}

/// A message id as a stable-map key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdKey(pub MsgId);

fixed_storable!(IdKey, 16, |s| Writer::with_capacity(16).u128(s.0 .0).finish(), |r| IdKey(MsgId(r.u128())));

/// A principal as a stable-map key (length byte + 29 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrincipalKey(pub Principal);

fixed_storable!(
    PrincipalKey,
    PRINCIPAL_BYTES as u32,
    |s| Writer::with_capacity(PRINCIPAL_BYTES).principal(&s.0).finish(),
    |r| PrincipalKey(r.principal())
);

/// `(principal, msg_id)`: per-sender and per-target indexes and FIFOs, in ULID (= time) order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrincipalMsgKey {
    pub principal: Principal,
    pub msg_id: MsgId,
}

fixed_storable!(
    PrincipalMsgKey,
    (PRINCIPAL_BYTES + 16) as u32,
    |s| Writer::with_capacity(PRINCIPAL_BYTES + 16).principal(&s.principal).u128(s.msg_id.0).finish(),
    |r| PrincipalMsgKey { principal: r.principal(), msg_id: MsgId(r.u128()) }
);

/// `(deadline_ns, msg_id)`: the schedule, earliest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScheduleKey {
    pub deadline: u64,
    pub msg_id: MsgId,
}

fixed_storable!(ScheduleKey, 24, |s| Writer::with_capacity(24).u64(s.deadline).u128(s.msg_id.0).finish(), |r| {
    ScheduleKey { deadline: r.u64(), msg_id: MsgId(r.u128()) }
});

/// `(sender, sha256(idempotency key))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdempotencyKey {
    pub sender: Principal,
    pub key_digest: [u8; 32],
}

fixed_storable!(
    IdempotencyKey,
    (PRINCIPAL_BYTES + 32) as u32,
    |s| Writer::with_capacity(PRINCIPAL_BYTES + 32).principal(&s.sender).bytes(&s.key_digest).finish(),
    |r| IdempotencyKey { sender: r.principal(), key_digest: r.array() }
);

/// A SHA-256 digest as a stable-map value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest(pub [u8; 32]);

fixed_storable!(Digest, 32, |s| s.0.to_vec(), |r| Digest(r.array()));

/// NEWs in flight and messages queued for one target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetCounters {
    pub in_flight: u32,
    pub queued: u64,
}

fixed_storable!(TargetCounters, 12, |s| Writer::with_capacity(12).u32(s.in_flight).u64(s.queued).finish(), |r| {
    TargetCounters { in_flight: r.u32(), queued: r.u64() }
});

/// What one sender has pending, for its quota.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderUsage {
    pub pending_messages: u64,
    pub pending_bytes: u64,
}

fixed_storable!(
    SenderUsage,
    16,
    |s| Writer::with_capacity(16).u64(s.pending_messages).u64(s.pending_bytes).finish(),
    |r| SenderUsage { pending_messages: r.u64(), pending_bytes: r.u64() }
);

/// A unit value for set-like maps (ic-stable-structures' own `()`: zero bytes).
pub type Present = ();

#[cfg(test)]
pub(crate) mod golden {
    //! Golden bytes freeze the storage formats: if one of these tests fails,
    //! a change would make existing stable memory unreadable. Add a new
    //! version instead of editing a format.
    use super::*;

    pub use async_flow_client::storage::assert_golden;

    pub fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn principal() -> Principal {
        Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap()
    }

    #[test]
    fn should_keep_key_formats() {
        let p = principal();
        let pad = "00".repeat(19);
        let praw = format!("0a{}{pad}", "00000000000000020101");
        assert_golden(IdKey(MsgId(0x0102)), "00000000000000000000000000000102");
        assert_golden(PrincipalKey(p), &praw);
        assert_golden(
            PrincipalMsgKey { principal: p, msg_id: MsgId(1) },
            &format!("{praw}00000000000000000000000000000001"),
        );
        assert_golden(
            ScheduleKey { deadline: 5, msg_id: MsgId(1) },
            "000000000000000500000000000000000000000000000001",
        );
        assert_golden(IdempotencyKey { sender: p, key_digest: [7; 32] }, &format!("{praw}{}", "07".repeat(32)));
        assert_golden(Digest([9; 32]), &"09".repeat(32));
    }

    #[test]
    fn should_keep_counter_formats() {
        assert_golden(TargetCounters { in_flight: 2, queued: 3 }, "000000020000000000000003");
        assert_golden(SenderUsage { pending_messages: 1, pending_bytes: 256 }, "00000000000000010000000000000100");
    }

    #[test]
    fn should_order_principal_keys_like_principals() {
        let a = PrincipalKey(Principal::from_slice(&[1]));
        let b = PrincipalKey(Principal::from_slice(&[1, 0]));
        assert_eq!(a.cmp(&b), a.0.cmp(&b.0));
    }
}
