//! # async-flow example: sender
//!
//! A canister that sends text messages through the async-flow broker with
//! `async_flow_client::sender` and records how each one ended: acknowledged
//! (with the receiver's reply) or failed (dead letter or corruption).
//!
//! ```text
//! dfx deploy sender --argument '(opt record { broker = opt principal "<broker id>" })'
//! dfx canister call sender send '(principal "<receiver id>", "hello")'
//! dfx canister call sender outcomes
//! ```
//!
//! Stable memory: one `MemoryManager`; `MemoryId` 0 is the library's, 1 the
//! broker principal, 2 the recorded outcomes (Candid-encoded).
#![forbid(unsafe_code)]

use async_flow_client::sender::{self, Acknowledgement, SendError, SenderConfig, SenderHandlers};
use async_flow_client::{FailureReason, MsgId, SenderAck, SenderFailed};
use candid::{CandidType, Principal};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::{DefaultMemoryImpl, StableBTreeMap, StableCell};
use serde::Deserialize;
use std::cell::RefCell;

type Memory = VirtualMemory<DefaultMemoryImpl>;

const LIBRARY: MemoryId = MemoryId::new(0);
const BROKER: MemoryId = MemoryId::new(1);
const OUTCOMES: MemoryId = MemoryId::new(2);
/// Outcomes kept; older ones are dropped.
const MAX_OUTCOMES: u64 = 1000;

thread_local! {
    static MEMORY: MemoryManager<DefaultMemoryImpl> = MemoryManager::init(DefaultMemoryImpl::default());
    /// The broker; the anonymous principal means "not configured".
    static BROKER_CELL: RefCell<StableCell<Principal, Memory>> =
        RefCell::new(StableCell::init(MEMORY.with(|m| m.get(BROKER)), Principal::anonymous()));
    /// Sequence number → Candid-encoded [`Outcome`].
    static OUTCOME_LOG: RefCell<StableBTreeMap<u64, Vec<u8>, Memory>> =
        RefCell::new(StableBTreeMap::init(MEMORY.with(|m| m.get(OUTCOMES))));
}

/// The init and upgrade argument.
#[derive(CandidType, Deserialize, Clone, Debug, Default)]
pub struct InitArg {
    /// The broker to send through (kept across upgrades; `null` keeps the current one).
    pub broker: Option<Principal>,
}

/// How a sent message ended.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The target processed it and replied.
    Acknowledged {
        /// The id `send` returned.
        msg_id: MsgId,
        /// The target.
        target: Option<Principal>,
        /// The target's reply (Candid, as the target chose).
        #[serde(with = "serde_bytes")]
        reply: Vec<u8>,
        /// The payload hash the target reported.
        hash: Option<u32>,
    },
    /// The broker gave up, or the target reported a different payload hash.
    Failed {
        /// The id `send` returned.
        msg_id: MsgId,
        /// The target.
        target: Principal,
        /// Dead letter or corruption, with details.
        reason: FailureReason,
        /// NEWs the broker sent.
        attempts: u32,
    },
}

/// One line of [`outcomes`].
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OutcomeEntry {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// When the callback arrived (ns).
    pub at_ns: u64,
    /// What happened.
    pub outcome: Outcome,
}

fn record(outcome: Outcome) {
    let entry = OutcomeEntry { seq: 0, at_ns: ic_cdk::api::time(), outcome };
    OUTCOME_LOG.with(|log| {
        let mut log = log.borrow_mut();
        let seq = log.last_key_value().map(|(k, _)| k + 1).unwrap_or(1);
        let entry = OutcomeEntry { seq, ..entry };
        log.insert(seq, candid::encode_one(&entry).expect("outcomes encode"));
        if seq > MAX_OUTCOMES {
            log.remove(&(seq - MAX_OUTCOMES));
        }
    });
}

fn handlers() -> SenderHandlers {
    SenderHandlers::new(
        |ack: Acknowledgement| {
            record(Outcome::Acknowledged {
                msg_id: ack.msg_id,
                target: ack.target,
                reply: ack.received_payload,
                hash: ack.hash,
            })
        },
        |failed: SenderFailed| {
            record(Outcome::Failed {
                msg_id: failed.msg_id,
                target: failed.target,
                reason: failed.reason,
                attempts: failed.attempts,
            })
        },
    )
}

fn configured_broker() -> Option<Principal> {
    let broker = BROKER_CELL.with(|c| *c.borrow().get());
    (broker != Principal::anonymous()).then_some(broker)
}

fn open(arg: Option<InitArg>) {
    if let Some(broker) = arg.and_then(|a| a.broker) {
        BROKER_CELL.with(|c| c.borrow_mut().set(broker));
    }
    // Until a broker is configured, callbacks are rejected and `send` refuses.
    if let Some(broker) = configured_broker() {
        sender::init(MEMORY.with(|m| m.get(LIBRARY)), SenderConfig::new(broker), handlers());
    }
}

#[ic_cdk::init]
fn init(arg: Option<InitArg>) {
    open(arg);
}

#[ic_cdk::post_upgrade]
fn post_upgrade(arg: Option<InitArg>) {
    open(arg);
}

/// Sends `text` (as Candid `text`) to `target` through the broker. Returns
/// the message id; how it ended shows up in [`outcomes`].
#[ic_cdk::update]
async fn send(target: Principal, text: String) -> Result<MsgId, SendError> {
    let Some(broker) = configured_broker() else {
        return Err(SendError::Unavailable { reject_code: None, message: "no broker configured".into() });
    };
    sender::enqueue_candid(broker, target, &text).await
}

/// Step 5: the broker says the target acknowledged.
#[ic_cdk::update]
#[allow(non_snake_case)]
fn com_asyncFlow_ack(ack: SenderAck) {
    sender::handle_ack(ack);
}

/// Step 5': the broker gave up, or the ACK's hash did not match.
#[ic_cdk::update]
#[allow(non_snake_case)]
fn com_asyncFlow_failed(failed: SenderFailed) {
    sender::handle_failed(failed);
}

/// The last (at most 100) recorded acknowledgements and failures, newest first.
#[ic_cdk::query]
fn outcomes() -> Vec<OutcomeEntry> {
    OUTCOME_LOG.with(|log| {
        log.borrow()
            .iter()
            .rev()
            .take(100)
            .map(|entry| candid::decode_one(&entry.into_pair().1).expect("outcomes decode"))
            .collect()
    })
}

/// The configured broker.
#[ic_cdk::query]
fn broker() -> Option<Principal> {
    configured_broker()
}

ic_cdk::export_candid!();

#[cfg(test)]
mod tests {
    use super::*;
    use candid_parser::utils::{service_equal, CandidSource};
    use std::path::Path;

    #[test]
    fn should_match_checked_in_did() {
        let did = Path::new(env!("CARGO_MANIFEST_DIR")).join("sender.did");
        let exported = __export_service();
        if let Err(e) = service_equal(CandidSource::Text(&exported), CandidSource::File(&did)) {
            panic!("sender.did differs from the code: {e}\n--- exported ---\n{exported}");
        }
    }

    #[test]
    fn should_round_trip_an_outcome_entry() {
        let entry = OutcomeEntry {
            seq: 1,
            at_ns: 2,
            outcome: Outcome::Acknowledged { msg_id: MsgId(3), target: None, reply: vec![4], hash: Some(5) },
        };
        assert_eq!(candid::decode_one::<OutcomeEntry>(&candid::encode_one(&entry).unwrap()).unwrap(), entry);
    }
}
