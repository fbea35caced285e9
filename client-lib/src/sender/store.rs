//! The sender's stable records.
//!
//! ```text
//! application memory ─ MemoryManager (1 MiB buckets)
//!   ├─ 0 SEEN      (msg_id, kind)             → expires_at (u64)   callbacks already handed over
//!   ├─ 1 EXPIRY    (expires_at, msg_id, kind)                      GC agenda, earliest first
//!   └─ 2 KEYS      StableCell<u64>                                 idempotency-key counter
//! ```
//!
//! Memory ids are never reused.

use crate::fixed_storable;
use crate::storage::Writer;
use crate::MsgId;

/// The ids of the sender's virtual memories. Never reuse a number.
pub(crate) mod memory_id {
    use ic_stable_structures::memory_manager::MemoryId;
    pub const SEEN: MemoryId = MemoryId::new(0);
    pub const EXPIRY: MemoryId = MemoryId::new(1);
    pub const KEYS: MemoryId = MemoryId::new(2);
}

/// Which callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Ack = 1,
    Failed = 2,
}

impl Kind {
    fn from_code(code: u8) -> Self {
        match code {
            1 => Kind::Ack,
            2 => Kind::Failed,
            other => panic!("corrupt sender record: unknown callback kind {other}"),
        }
    }
}

/// `(msg_id, kind)`: one processed callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SeenKey {
    pub msg_id: MsgId,
    pub kind: Kind,
}

fixed_storable!(SeenKey, 17, |s| Writer::with_capacity(17).u128(s.msg_id.0).u8(s.kind as u8).finish(), |r| {
    SeenKey { msg_id: MsgId(r.u128()), kind: Kind::from_code(r.u8()) }
});

/// `(expires_at_ns, msg_id, kind)`: when a [`SeenKey`] is forgotten.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ExpiryKey {
    pub expires_at: u64,
    pub seen: SeenKey,
}

fixed_storable!(
    ExpiryKey,
    25,
    |s| Writer::with_capacity(25).u64(s.expires_at).u128(s.seen.msg_id.0).u8(s.seen.kind as u8).finish(),
    |r| ExpiryKey { expires_at: r.u64(), seen: SeenKey { msg_id: MsgId(r.u128()), kind: Kind::from_code(r.u8()) } }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::golden::assert_golden;

    #[test]
    fn should_keep_the_key_formats() {
        let ack = SeenKey { msg_id: MsgId(0x0102), kind: Kind::Ack };
        assert_golden(ack, "0000000000000000000000000000010201");
        assert_golden(SeenKey { kind: Kind::Failed, ..ack }, "0000000000000000000000000000010202");
        assert_golden(ExpiryKey { expires_at: 5, seen: ack }, "00000000000000050000000000000000000000000000010201");
    }

    #[test]
    fn should_keep_the_counter_format() {
        // The key counter is ic-stable-structures' own u64: 8 bytes, big-endian.
        assert_golden(0x0102u64, "0000000000000102");
    }
}
