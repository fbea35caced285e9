//! How much of the stable memory is in use.
//!
//! Stable structures never shrink memory: `Memory::size()` is a high-water
//! mark (and the `MemoryManager` grows each structure in 8 MiB buckets). So
//! next to the page count this reads, for every `StableBTreeMap`, its chunk
//! allocator's header (layout v1 of ic-stable-structures' `btreemap/allocator.rs`,
//! at address 52 of the map's memory: magic "BTA", version, 4 bytes of
//! padding, `allocation_size: u64`, `num_allocated_chunks: u64`, little endian)
//! and reports allocated chunks × (allocation size + 16-byte chunk header).
//! That is what the maps hold right now: B-tree nodes and overflow pages, with
//! their slack. Freed chunks go to the allocator's free list and are reused.

use async_flow_broker::storage::memory_id;
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
use ic_stable_structures::{Memory, VectorMemory};

const WASM_PAGE: u64 = 65_536;
const ALLOCATOR_OFFSET: u64 = 52;
const CHUNK_HEADER: u64 = 16;

/// The broker's stable maps (every `MemoryId` but the two cells), named.
pub const BROKER_MAPS: [(&str, MemoryId); 12] = [
    ("messages", memory_id::MESSAGES),
    ("payloads", memory_id::PAYLOADS),
    ("replies", memory_id::REPLIES),
    ("schedule", memory_id::SCHEDULE),
    ("target_fifo", memory_id::TARGET_FIFO),
    ("targets", memory_id::TARGETS),
    ("by_sender", memory_id::BY_SENDER),
    ("by_target", memory_id::BY_TARGET),
    ("senders", memory_id::SENDERS),
    ("idempotency", memory_id::IDEMPOTENCY),
    ("idempotency_of", memory_id::IDEMPOTENCY_OF),
    ("pending", memory_id::PENDING),
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of allocated B-tree chunks, all maps.
    pub in_use: u64,
    pub chunks: u64,
    /// Size of the whole stable memory in 64 KiB pages.
    pub pages: u64,
}

impl Usage {
    pub fn memory_bytes(&self) -> u64 {
        self.pages * WASM_PAGE
    }
}

/// Reads the allocator headers of `maps` in the memory-managed `memory`.
pub fn usage(memory: &VectorMemory, maps: &[(&str, MemoryId)]) -> Usage {
    let mut u = Usage { pages: memory.size(), ..Usage::default() };
    for (_, chunks, bytes) in per_map(memory, maps) {
        u.chunks += chunks;
        u.in_use += bytes;
    }
    u
}

/// Allocated chunks and their bytes, map by map.
pub fn per_map<'a>(memory: &VectorMemory, maps: &[(&'a str, MemoryId)]) -> Vec<(&'a str, u64, u64)> {
    if memory.size() == 0 {
        return Vec::new();
    }
    // A second manager over the same bytes only reads its header.
    let mm = MemoryManager::init(memory.clone());
    let mut out = Vec::new();
    for &(name, id) in maps {
        let vm = mm.get(id);
        if vm.size() == 0 {
            continue;
        }
        let mut header = [0u8; 32];
        vm.read(ALLOCATOR_OFFSET, &mut header);
        if &header[..3] != b"BTA" {
            continue;
        }
        let allocation_size = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let chunks = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
        out.push((name, chunks, chunks * (allocation_size + CHUNK_HEADER)));
    }
    out
}
