//! The floor: the least stable-structure work any durable broker must do per
//! message. One `StableBTreeMap` holds a small record (sender, target, state,
//! deadline: 69 bytes) together with the payload. A message costs exactly
//! three map operations: the insert that makes it durable, one update when it
//! is acknowledged (the record rewritten without its payload, which is no
//! longer needed), and the remove that collects it. No index, no schedule, no
//! counters, no hashing, no effects.

use async_flow_broker::storage::memory_id;
use candid::Principal;
use ic_stable_structures::memory_manager::{MemoryManager, VirtualMemory};
use ic_stable_structures::storable::Bound;
use ic_stable_structures::{StableBTreeMap, Storable, VectorMemory};
use std::borrow::Cow;

const HEADER: usize = 2 * 30 + 1 + 8;

/// The record and (until ACK) the payload, in one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloorEntry {
    pub sender: Principal,
    pub target: Principal,
    pub state: u8,
    pub deadline: u64,
    pub payload: Vec<u8>,
}

fn put_principal(out: &mut Vec<u8>, p: &Principal) {
    let raw = p.as_slice();
    out.push(raw.len() as u8);
    out.extend_from_slice(raw);
    out.resize(out.len() + 29 - raw.len(), 0);
}

fn get_principal(b: &[u8]) -> Principal {
    Principal::from_slice(&b[1..1 + b[0] as usize])
}

impl Storable for FloorEntry {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.clone().into_bytes())
    }
    fn into_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.payload.len());
        put_principal(&mut out, &self.sender);
        put_principal(&mut out, &self.target);
        out.push(self.state);
        out.extend_from_slice(&self.deadline.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        let b = bytes.as_ref();
        FloorEntry {
            sender: get_principal(&b[..30]),
            target: get_principal(&b[30..60]),
            state: b[60],
            deadline: u64::from_be_bytes(b[61..69].try_into().expect("8 bytes")),
            payload: b[HEADER..].to_vec(),
        }
    }
    const BOUND: Bound = Bound::Unbounded;
}

/// The floor store, in a virtual memory of its own like each broker map.
pub struct Floor {
    pub map: StableBTreeMap<u128, FloorEntry, VirtualMemory<VectorMemory>>,
    pub memory: VectorMemory,
    next_id: u128,
}

impl Default for Floor {
    fn default() -> Self {
        Self::new()
    }
}

impl Floor {
    pub fn new() -> Self {
        let memory = VectorMemory::default();
        let mm = MemoryManager::init(memory.clone());
        Floor { map: StableBTreeMap::init(mm.get(memory_id::MESSAGES)), memory, next_id: 1 }
    }

    /// Insert: the message is durable.
    pub fn store(&mut self, sender: Principal, target: Principal, payload: Vec<u8>, deadline: u64) -> u128 {
        let id = self.next_id;
        self.next_id += 1;
        self.map.insert(id, FloorEntry { sender, target, state: 1, deadline, payload });
        id
    }

    /// Update: acknowledged; the payload is dropped with the rewrite.
    pub fn acked(&mut self, id: u128, sender: Principal, target: Principal, deadline: u64) {
        self.map.insert(id, FloorEntry { sender, target, state: 2, deadline, payload: Vec::new() });
    }

    /// Remove: collected.
    pub fn collect(&mut self, id: u128) {
        self.map.remove(&id);
    }

    /// A whole batch lifecycle, stage by stage like the broker's.
    pub fn lifecycle(&mut self, inputs: Vec<(Principal, Principal, Vec<u8>)>, now: u64) {
        let ids: Vec<(u128, Principal, Principal)> =
            inputs.into_iter().map(|(s, t, p)| (self.store(s, t, p, now + 1), s, t)).collect();
        for &(id, s, t) in &ids {
            self.acked(id, s, t, now + 2);
        }
        for &(id, _, _) in &ids {
            self.collect(id);
        }
    }
}
