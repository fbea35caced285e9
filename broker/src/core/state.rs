//! Small values kept in stable cells: the configuration, the counters and the
//! message-id generator.

use crate::storage::{Reader, Writer};
use async_flow_client::{Config, MessageState, MsgId, Totals};
use ic_stable_structures::storable::Bound;
use ic_stable_structures::Storable;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Defaults of DESIGN.md: 5.5-minute ACK timeout, 10 attempts, 24 h retention.
pub fn default_config() -> Config {
    Config {
        ack_timeout_seconds: 330,
        max_attempts: 10,
        max_attempts_limit: 100,
        max_in_flight_per_target: 100,
        // The IC's limit is 2 MiB for a whole cross-subnet request; leave room
        // for the Candid envelope of `NewMessage`.
        max_payload_bytes: 2_000_000,
        max_pending_per_sender: 10_000,
        max_pending_bytes_per_sender: 256 * 1024 * 1024,
        max_stored_messages: 5_000_000,
        max_stored_bytes: 16 * 1024 * 1024 * 1024,
        retention_seconds: 24 * 3600,
        max_callback_attempts: 10,
        callback_timeout_seconds: 300,
        fee_cycles_per_message: 0,
        allowed_senders: None,
        timer_batch_limit: 500,
    }
}

/// The configuration in its stable cell, Candid-encoded (it is small and rarely written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredConfig(pub Config);

impl Storable for StoredConfig {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(candid::encode_one(&self.0).expect("Config encodes"))
    }
    fn into_bytes(self) -> Vec<u8> {
        candid::encode_one(&self.0).expect("Config encodes")
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        StoredConfig(candid::decode_one(&bytes).expect("stored Config decodes"))
    }
    const BOUND: Bound = Bound::Unbounded;
}

/// Counters, per-state counts and the id generator: one small cell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerState {
    pub totals: Totals,
    /// Records in each state, indexed as `MessageState::ALL`.
    pub by_state: [u64; 7],
    pub stored_bytes: u64,
    pub last_msg_id: MsgId,
    pub rng_seed: [u8; 32],
    pub rng_counter: u64,
    /// `raw_rand` has been mixed into the seed.
    pub seeded: bool,
}

const STATE_VERSION: u8 = 1;
const TOTALS: usize = 13;
const STATE_SIZE: usize = 1 + 8 * TOTALS + 8 * 7 + 8 + 16 + 32 + 8 + 1;

impl BrokerState {
    fn totals_array(t: &Totals) -> [u64; TOTALS] {
        [
            t.enqueued,
            t.delivered,
            t.retries,
            t.dead_lettered,
            t.corrupted,
            t.spoofed_acks,
            t.unknown_acks,
            t.dedup_hits,
            t.rejected_enqueues,
            t.send_failures,
            t.callback_failures,
            t.cancelled,
            t.garbage_collected,
        ]
    }

    fn totals_from(a: [u64; TOTALS]) -> Totals {
        Totals {
            enqueued: a[0],
            delivered: a[1],
            retries: a[2],
            dead_lettered: a[3],
            corrupted: a[4],
            spoofed_acks: a[5],
            unknown_acks: a[6],
            dedup_hits: a[7],
            rejected_enqueues: a[8],
            send_failures: a[9],
            callback_failures: a[10],
            cancelled: a[11],
            garbage_collected: a[12],
        }
    }

    pub fn count(&self, state: MessageState) -> u64 {
        self.by_state[state as usize]
    }

    pub fn count_mut(&mut self, state: MessageState) -> &mut u64 {
        &mut self.by_state[state as usize]
    }

    /// 80 random bits: SHA-256(seed ‖ counter), so ids are unguessable once
    /// `raw_rand` has been mixed in, and reproducible in tests.
    pub fn next_random80(&mut self) -> u128 {
        self.rng_counter += 1;
        let digest = Sha256::new().chain_update(self.rng_seed).chain_update(self.rng_counter.to_be_bytes()).finalize();
        let mut bytes = [0u8; 16];
        bytes[6..].copy_from_slice(&digest[..10]);
        u128::from_be_bytes(bytes)
    }

    /// A ULID above every earlier one: a new random part in a new
    /// millisecond, the previous id plus one within the same millisecond (or
    /// if the clock seems to go back), as the ULID spec's monotonic mode.
    pub fn next_msg_id(&mut self, now_ns: u64) -> MsgId {
        let now_ms = now_ns / 1_000_000;
        let last = self.last_msg_id;
        let id = if last.0 != 0 && now_ms <= last.timestamp_ms() {
            MsgId(last.0.checked_add(1).expect("msg_id space exhausted"))
        } else {
            MsgId::from_parts(now_ms, self.next_random80())
        };
        self.last_msg_id = id;
        id
    }

    /// Mixes fresh randomness (from `raw_rand`) into the generator.
    pub fn mix_seed(&mut self, entropy: &[u8]) {
        self.rng_seed = Sha256::new().chain_update(self.rng_seed).chain_update(entropy).finalize().into();
        self.seeded = true;
    }
}

impl Storable for BrokerState {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.clone().into_bytes())
    }
    fn into_bytes(self) -> Vec<u8> {
        let mut w = Writer::with_capacity(STATE_SIZE).u8(STATE_VERSION);
        for v in Self::totals_array(&self.totals) {
            w = w.u64(v);
        }
        for v in self.by_state {
            w = w.u64(v);
        }
        w.u64(self.stored_bytes)
            .u128(self.last_msg_id.0)
            .bytes(&self.rng_seed)
            .u64(self.rng_counter)
            .u8(self.seeded as u8)
            .finish()
    }
    fn from_bytes(bytes: Cow<[u8]>) -> Self {
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), STATE_VERSION, "unknown BrokerState version");
        let totals = Self::totals_from(std::array::from_fn(|_| r.u64()));
        let by_state = std::array::from_fn(|_| r.u64());
        BrokerState {
            totals,
            by_state,
            stored_bytes: r.u64(),
            last_msg_id: MsgId(r.u128()),
            rng_seed: r.array(),
            rng_counter: r.u64(),
            seeded: r.u8() != 0,
        }
    }
    const BOUND: Bound = Bound::Bounded { max_size: STATE_SIZE as u32, is_fixed_size: true };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::golden::{assert_golden, hex};

    const CONFIG_GOLDEN_HEX: &str = "4449444c036c0fbae0dc4e788afe83e70278bdf086fc04798e86a2cb0678de89cbef0678cceaa7a7087d8d9faeb20878c7d38289090181b6f6920979eb92f1c00979a590b7d90a79c3898ed00b79e7d38af60b799fffab820e78fcad95bb0f796e026d68010010270000000000000000000004000000640000000000001000000000805101000000000000404b4c0000000000000a0000004a0100000a000000640000002c01000080841e0000000000f4010000";

    #[test]
    fn should_keep_broker_state_format() {
        let mut state =
            BrokerState { stored_bytes: 3, last_msg_id: MsgId(4), rng_counter: 5, seeded: true, ..Default::default() };
        state.totals.enqueued = 1;
        state.totals.garbage_collected = 2;
        state.by_state[6] = 9;
        let expected = format!(
            "01{}{}{}{}{}{}{}{}",
            "0000000000000001",
            "0000000000000000".repeat(11),
            "0000000000000002",
            "0000000000000000".repeat(6),
            "0000000000000009",
            "0000000000000003",
            "00000000000000000000000000000004",
            format_args!("{}{}01", "00".repeat(32), "0000000000000005"),
        );
        assert_golden(state, &expected);
    }

    #[test]
    fn should_keep_config_format() {
        // Candid: a later `opt` field still decodes these bytes; changing a
        // field's type would not, and fails here first.
        let bytes = StoredConfig(default_config()).to_bytes().into_owned();
        assert_eq!(hex(&bytes), CONFIG_GOLDEN_HEX, "format of the stored Config changed");
        assert_eq!(StoredConfig::from_bytes(Cow::Owned(bytes)).0, default_config());
    }

    #[test]
    fn should_generate_strictly_increasing_ids_within_and_across_milliseconds() {
        let mut state = BrokerState::default();
        let mut last = MsgId(0);
        for now in [5_000_000u64, 5_000_000, 5_000_001, 6_000_000, 4_000_000, 6_000_000, 7_500_000] {
            let id = state.next_msg_id(now);
            assert!(id > last, "{id:?} after {last:?}");
            last = id;
        }
        assert_eq!(MsgId::from_parts(7, 0).timestamp_ms(), last.timestamp_ms());
    }

    #[test]
    fn should_change_random_part_after_mixing_entropy() {
        let mut a = BrokerState::default();
        let mut b = BrokerState::default();
        b.mix_seed(&[1; 32]);
        assert!(b.seeded);
        assert_ne!(a.next_msg_id(1_000_000), b.next_msg_id(1_000_000));
    }
}
