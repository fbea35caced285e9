//! The receiver's stable records.
//!
//! ```text
//! application memory ─ MemoryManager (1 MiB buckets)
//!   ├─ 0 RECORDS   (broker, msg_id)           → DedupRecord   fixed 25 bytes
//!   ├─ 1 REPLIES   (broker, msg_id)           → reply blob    until FIN (or expiry)
//!   └─ 2 SCHEDULE  (deadline, broker, msg_id)                 the one timer's agenda
//! ```
//!
//! Memory ids are never reused.

use crate::fixed_storable;
use crate::storage::{Writer, PRINCIPAL_BYTES};
use crate::MsgId;
use candid::Principal;

/// The ids of the receiver's virtual memories. Never reuse a number.
pub(crate) mod memory_id {
    use ic_stable_structures::memory_manager::MemoryId;
    pub const RECORDS: MemoryId = MemoryId::new(0);
    pub const REPLIES: MemoryId = MemoryId::new(1);
    pub const SCHEDULE: MemoryId = MemoryId::new(2);
}

/// `(broker, msg_id)`: the dedup key. Two brokers may issue equal ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct MsgKey {
    pub broker: Principal,
    pub msg_id: MsgId,
}

const MSG_KEY_BYTES: usize = PRINCIPAL_BYTES + 16;

fixed_storable!(
    MsgKey,
    MSG_KEY_BYTES as u32,
    |s| Writer::with_capacity(MSG_KEY_BYTES).principal(&s.broker).u128(s.msg_id.0).finish(),
    |r| MsgKey { broker: r.principal(), msg_id: MsgId(r.u128()) }
);

/// `(deadline_ns, broker, msg_id)`: the schedule, earliest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ScheduleKey {
    pub deadline: u64,
    pub key: MsgKey,
}

fixed_storable!(
    ScheduleKey,
    (8 + MSG_KEY_BYTES) as u32,
    |s| Writer::with_capacity(8 + MSG_KEY_BYTES).u64(s.deadline).principal(&s.key.broker).u128(s.key.msg_id.0).finish(),
    |r| ScheduleKey { deadline: r.u64(), key: MsgKey { broker: r.principal(), msg_id: MsgId(r.u128()) } }
);

/// Where a processed message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// ACK sent, reply cached, waiting for the FIN; the ACK is re-sent on the timer.
    AwaitingFin = 1,
    /// No FIN after the last ACK re-send; the reply stays cached for duplicate NEWs.
    GaveUp = 2,
    /// FIN received: a tombstone without the reply.
    Finished = 3,
}

impl Stage {
    fn from_code(code: u8) -> Self {
        match code {
            1 => Stage::AwaitingFin,
            2 => Stage::GaveUp,
            3 => Stage::Finished,
            other => panic!("corrupt receiver record: unknown stage {other}"),
        }
    }
}

/// What the receiver remembers of one processed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DedupRecord {
    pub stage: Stage,
    /// `payload_hash` of the NEW payload as first received.
    pub hash: u32,
    /// ACKs re-sent by the timer so far.
    pub ack_resends: u32,
    /// When the handler ran (ns).
    pub processed_at: u64,
    /// The record's one entry in the schedule (ns).
    pub deadline: u64,
}

fixed_storable!(
    DedupRecord,
    25,
    |s| Writer::with_capacity(25)
        .u8(s.stage as u8)
        .u32(s.hash)
        .u32(s.ack_resends)
        .u64(s.processed_at)
        .u64(s.deadline)
        .finish(),
    |r| DedupRecord {
        stage: Stage::from_code(r.u8()),
        hash: r.u32(),
        ack_resends: r.u32(),
        processed_at: r.u64(),
        deadline: r.u64(),
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::golden::{assert_golden, principal, principal_hex};

    #[test]
    fn should_keep_the_key_formats() {
        let key = MsgKey { broker: principal(), msg_id: MsgId(0x0102) };
        let key_hex = format!("{}00000000000000000000000000000102", principal_hex());
        assert_golden(key, &key_hex);
        assert_golden(ScheduleKey { deadline: 5, key }, &format!("0000000000000005{key_hex}"));
    }

    #[test]
    fn should_keep_the_record_format() {
        let record =
            DedupRecord { stage: Stage::AwaitingFin, hash: 0xaabbccdd, ack_resends: 2, processed_at: 7, deadline: 9 };
        assert_golden(record, "01aabbccdd0000000200000000000000070000000000000009");
        assert_golden(
            DedupRecord { stage: Stage::GaveUp, ..record },
            "02aabbccdd0000000200000000000000070000000000000009",
        );
        assert_golden(
            DedupRecord { stage: Stage::Finished, ..record },
            "03aabbccdd0000000200000000000000070000000000000009",
        );
    }

    #[test]
    fn should_sort_the_schedule_by_deadline_first() {
        let early = ScheduleKey { deadline: 1, key: MsgKey { broker: principal(), msg_id: MsgId(u128::MAX) } };
        let late = ScheduleKey { deadline: 2, key: MsgKey { broker: Principal::from_slice(&[0]), msg_id: MsgId(0) } };
        use ic_stable_structures::Storable;
        assert!(early.to_bytes() < late.to_bytes());
        assert!(early < late);
    }
}
