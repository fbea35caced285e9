//! The naive design the schedule index replaces: records and payloads in
//! stable maps (the broker's own `MessageRecord` and `Blob` formats, so that
//! decoding costs the same), and a timer that scans every record on each
//! tick to find what is due. What it does with a due message is what the
//! broker does: re-send NEW (read the payload, count the attempt, push the
//! effect, write the record back with its next deadline).

use async_flow_broker::core::{Effect, MessageRecord};
use async_flow_broker::storage::{memory_id, Blob, IdKey};
use async_flow_client::{MessageState, MsgId, NewMessage};
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::{StableBTreeMap, VectorMemory};

use crate::fixtures::NS;

type VM = VirtualMemory<VectorMemory>;

pub struct Naive {
    pub records: StableBTreeMap<IdKey, MessageRecord, VM>,
    pub payloads: StableBTreeMap<IdKey, Blob, VM>,
}

impl Default for Naive {
    fn default() -> Self {
        Self::new()
    }
}

impl Naive {
    pub fn new() -> Self {
        let mm = MemoryManager::init(VectorMemory::default());
        Naive {
            records: StableBTreeMap::init(mm.get(memory_id::MESSAGES)),
            payloads: StableBTreeMap::init(mm.get(memory_id::PAYLOADS)),
        }
    }

    pub fn insert(&mut self, msg_id: MsgId, record: MessageRecord, payload: Vec<u8>) {
        self.records.insert(IdKey(msg_id), record);
        self.payloads.insert(IdKey(msg_id), Blob(payload));
    }

    /// One tick: scan every record, re-send what is due.
    pub fn tick(&mut self, now: u64) -> Vec<Effect> {
        let due: Vec<(IdKey, MessageRecord)> = self
            .records
            .iter()
            .filter_map(|entry| {
                let (key, rec) = entry.into_pair();
                let is_due = rec.state == MessageState::AwaitingAck && rec.deadline.is_some_and(|d| d <= now);
                is_due.then_some((key, rec))
            })
            .collect();
        let mut effects = Vec::with_capacity(due.len());
        for (key, mut rec) in due {
            let payload = self.payloads.get(&key).expect("a pending message keeps its payload").0;
            rec.attempts += 1;
            rec.updated_at = now;
            rec.deadline = Some(now + rec.ack_timeout_secs as u64 * NS);
            effects.push(Effect::SendNew {
                target: rec.target,
                message: NewMessage { msg_id: key.0, payload, sender: Some(rec.sender), attempt: Some(rec.attempts) },
            });
            self.records.insert(key, rec);
        }
        effects
    }
}
