//! # async-flow example: receiver
//!
//! A guest book that receives messages through the async-flow broker with
//! `async_flow_client::receiver`: each message (Candid `text`) is counted and
//! logged exactly once, however often the broker delivers it, and the reply
//! to the sender is the new count (Candid `nat64`).
//!
//! ```text
//! dfx deploy receiver --argument '(opt record { allowed_brokers = opt vec { principal "<broker id>" } })'
//! dfx canister call receiver state
//! ```
//!
//! Without `allowed_brokers` (or with an empty list) it accepts messages from
//! any broker: a demo default, not a production one.
//!
//! Stable memory: one `MemoryManager`; `MemoryId` 0 is the library's, 1 the
//! count, 2 the log, 3 the allowed brokers.
#![forbid(unsafe_code)]

use async_flow_client::receiver::{self, Delivery, ReceiverConfig};
use async_flow_client::{AckAck, MsgId, NewMessage};
use candid::{CandidType, Principal};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::{DefaultMemoryImpl, StableBTreeMap, StableCell};
use serde::Deserialize;
use std::cell::RefCell;

type Memory = VirtualMemory<DefaultMemoryImpl>;

const LIBRARY: MemoryId = MemoryId::new(0);
const COUNT: MemoryId = MemoryId::new(1);
const LOG: MemoryId = MemoryId::new(2);
const ALLOWED: MemoryId = MemoryId::new(3);
/// Log lines kept; older ones are dropped (the count keeps growing).
const MAX_LOG: u64 = 100;

thread_local! {
    static MEMORY: MemoryManager<DefaultMemoryImpl> = MemoryManager::init(DefaultMemoryImpl::default());
    static COUNT_CELL: RefCell<StableCell<u64, Memory>> =
        RefCell::new(StableCell::init(MEMORY.with(|m| m.get(COUNT)), 0));
    /// Message number → log line.
    static LOG_MAP: RefCell<StableBTreeMap<u64, String, Memory>> =
        RefCell::new(StableBTreeMap::init(MEMORY.with(|m| m.get(LOG))));
    static ALLOWED_MAP: RefCell<StableBTreeMap<Principal, (), Memory>> =
        RefCell::new(StableBTreeMap::init(MEMORY.with(|m| m.get(ALLOWED))));
}

/// The init and upgrade argument.
#[derive(CandidType, Deserialize, Clone, Debug, Default)]
pub struct InitArg {
    /// The brokers allowed to deliver; `null` keeps the current list, an
    /// empty list (the default) accepts any broker.
    pub allowed_brokers: Option<Vec<Principal>>,
}

/// What [`state`] shows.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// Messages processed.
    pub count: u64,
    /// The last (at most 100) log lines, newest first.
    pub recent: Vec<LogLine>,
    /// The allowed brokers; empty: any broker.
    pub allowed_brokers: Vec<Principal>,
}

/// One processed message.
#[derive(CandidType, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Its number, from 1.
    pub n: u64,
    /// `<sender>: <text>`.
    pub line: String,
}

fn open(arg: Option<InitArg>) {
    if let Some(list) = arg.and_then(|a| a.allowed_brokers) {
        ALLOWED_MAP.with(|m| {
            let mut m = m.borrow_mut();
            m.clear_new();
            for broker in list {
                m.insert(broker, ());
            }
        });
    }
    let allowed = allowed_brokers();
    let config = if allowed.is_empty() { ReceiverConfig::any_broker() } else { ReceiverConfig::for_brokers(allowed) };
    receiver::init(MEMORY.with(|m| m.get(LIBRARY)), config);
}

fn allowed_brokers() -> Vec<Principal> {
    ALLOWED_MAP.with(|m| m.borrow().keys().collect())
}

#[ic_cdk::init]
fn init(arg: Option<InitArg>) {
    open(arg);
}

#[ic_cdk::post_upgrade]
fn post_upgrade(arg: Option<InitArg>) {
    open(arg);
}

/// The application's handler: runs once per message. Returns the reply.
fn process(delivery: &Delivery) -> Vec<u8> {
    let text = delivery.decode::<String>().unwrap_or_else(|_| format!("<{} bytes, not text>", delivery.payload.len()));
    let from = delivery.sender.map(|p| p.to_text()).unwrap_or_else(|| "?".into());
    let n = COUNT_CELL.with(|c| {
        let mut c = c.borrow_mut();
        let n = c.get() + 1;
        c.set(n);
        n
    });
    LOG_MAP.with(|log| {
        let mut log = log.borrow_mut();
        log.insert(n, format!("{from}: {text}"));
        if n > MAX_LOG {
            log.remove(&(n - MAX_LOG));
        }
    });
    candid::encode_one(n).expect("a nat64 encodes")
}

/// Step 2: a message from the broker.
#[ic_cdk::update]
#[allow(non_snake_case)]
fn com_asyncFlow_newMessage(msg: NewMessage) {
    receiver::handle_new_message(msg, process);
}

/// Step 4: the broker's FIN.
#[ic_cdk::update]
#[allow(non_snake_case)]
fn com_asyncFlow_ackack(fin: AckAck) {
    receiver::handle_ackack(fin);
}

/// The count, the recent log and the allowed brokers.
#[ic_cdk::query]
fn state() -> State {
    State {
        count: COUNT_CELL.with(|c| *c.borrow().get()),
        recent: LOG_MAP.with(|log| {
            log.borrow()
                .iter()
                .rev()
                .map(|e| {
                    let (n, line) = e.into_pair();
                    LogLine { n, line }
                })
                .collect()
        }),
        allowed_brokers: allowed_brokers(),
    }
}

/// Whether the message `msg_id` of `broker` was processed (within the dedup window).
#[ic_cdk::query]
fn is_processed(broker: Principal, msg_id: MsgId) -> bool {
    receiver::is_processed(broker, msg_id)
}

ic_cdk::export_candid!();

#[cfg(test)]
mod tests {
    use super::*;
    use candid_parser::utils::{service_equal, CandidSource};
    use std::path::Path;

    #[test]
    fn should_match_checked_in_did() {
        let did = Path::new(env!("CARGO_MANIFEST_DIR")).join("receiver.did");
        let exported = __export_service();
        if let Err(e) = service_equal(CandidSource::Text(&exported), CandidSource::File(&did)) {
            panic!("receiver.did differs from the code: {e}\n--- exported ---\n{exported}");
        }
    }

    #[test]
    fn should_count_and_log_each_message_and_reply_with_the_count() {
        let delivery = |text: &str| Delivery {
            broker: Principal::anonymous(),
            msg_id: MsgId(1),
            sender: Some(Principal::management_canister()),
            attempt: Some(1),
            payload: candid::encode_one(text).unwrap(),
        };
        assert_eq!(candid::decode_one::<u64>(&process(&delivery("hello"))).unwrap(), 1);
        assert_eq!(candid::decode_one::<u64>(&process(&delivery("again"))).unwrap(), 2);
        let state = state();
        assert_eq!(state.count, 2);
        assert_eq!(state.recent[0], LogLine { n: 2, line: "aaaaa-aa: again".into() });
    }
}
