//! The receiver on the IC: state in a thread-local, endpoints, the timer.
//!
//! These functions call `ic_cdk` and only work inside a canister.

use super::{Delivery, ReceiverConfig, ReceiverCore, ReceiverEffect, ReceiverError};
use crate::protocol::method;
use crate::timer::{self, OneTimer};
use crate::{AckAck, MsgId, NewMessage};
use candid::Principal;
use ic_stable_structures::Memory;
use std::cell::RefCell;

/// The application's handler, boxed.
type Handler<'a> = Box<dyn FnOnce(&Delivery) -> Vec<u8> + 'a>;

/// [`ReceiverCore`] with its memory type erased, so it can live in a thread-local.
trait Receiver {
    fn on_new_message(
        &mut self,
        caller: Principal,
        msg: NewMessage,
        now: u64,
        handler: Handler<'_>,
    ) -> Result<Vec<ReceiverEffect>, ReceiverError>;
    fn on_ackack(&mut self, caller: Principal, fin: AckAck, now: u64) -> Result<(), ReceiverError>;
    fn on_timer(&mut self, now: u64) -> Vec<ReceiverEffect>;
    fn next_deadline(&self) -> Option<u64>;
    fn is_processed(&self, broker: Principal, msg_id: MsgId) -> bool;
}

impl<M: Memory> Receiver for ReceiverCore<M> {
    fn on_new_message(
        &mut self,
        caller: Principal,
        msg: NewMessage,
        now: u64,
        handler: Handler<'_>,
    ) -> Result<Vec<ReceiverEffect>, ReceiverError> {
        ReceiverCore::on_new_message(self, caller, msg, now, handler)
    }
    fn on_ackack(&mut self, caller: Principal, fin: AckAck, now: u64) -> Result<(), ReceiverError> {
        ReceiverCore::on_ackack(self, caller, fin, now)
    }
    fn on_timer(&mut self, now: u64) -> Vec<ReceiverEffect> {
        ReceiverCore::on_timer(self, now)
    }
    fn next_deadline(&self) -> Option<u64> {
        ReceiverCore::next_deadline(self)
    }
    fn is_processed(&self, broker: Principal, msg_id: MsgId) -> bool {
        ReceiverCore::is_processed(self, broker, msg_id)
    }
}

thread_local! {
    static CORE: RefCell<Option<Box<dyn Receiver>>> = RefCell::new(None);
    static TIMER: OneTimer = const { OneTimer::new() };
}

fn with_core<R>(f: impl FnOnce(&mut dyn Receiver) -> R) -> R {
    CORE.with(|c| match c.borrow_mut().as_mut() {
        Some(core) => f(core.as_mut()),
        None => ic_cdk::trap("async_flow_client::receiver::init was not called"),
    })
}

/// Opens the receiver state in `memory` and arms its timer. Call it from the
/// canister's `#[init]`, with a memory that belongs to the library alone
/// (for example `MemoryManager::get(MemoryId::new(n))` of the application).
///
/// ```no_run
/// use async_flow_client::receiver::{self, ReceiverConfig};
/// use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
/// use ic_stable_structures::DefaultMemoryImpl;
///
/// #[ic_cdk::init]
/// fn init() {
///     let mm = MemoryManager::init(DefaultMemoryImpl::default());
///     receiver::init(mm.get(MemoryId::new(0)), ReceiverConfig::any_broker());
/// }
/// ```
pub fn init<M: Memory + 'static>(memory: M, config: ReceiverConfig) {
    CORE.with(|c| *c.borrow_mut() = Some(Box::new(ReceiverCore::open(memory, config))));
    timer::reset(&TIMER);
    rearm();
}

/// Reopens the receiver state after an upgrade (everything is in `memory`)
/// and re-arms the timer, which does not survive upgrades. Same as [`init`];
/// pass the same memory.
///
/// ```no_run
/// use async_flow_client::receiver::{self, ReceiverConfig};
/// use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
/// use ic_stable_structures::DefaultMemoryImpl;
///
/// #[ic_cdk::post_upgrade]
/// fn post_upgrade() {
///     let mm = MemoryManager::init(DefaultMemoryImpl::default());
///     receiver::post_upgrade(mm.get(MemoryId::new(0)), ReceiverConfig::any_broker());
/// }
/// ```
pub fn post_upgrade<M: Memory + 'static>(memory: M, config: ReceiverConfig) {
    init(memory, config)
}

/// The body of the application's `com_asyncFlow_newMessage` update: checks
/// the caller, runs `handler` at most once per (broker, msg_id), records the
/// message and sends the ACK (one-way) with the handler's reply.
///
/// Traps (rejects the call) if the caller is not an allowed broker. A trap
/// in `handler` rolls everything back; the broker will send the NEW again.
/// `handler` must not call back into this module.
///
/// ```no_run
/// use async_flow_client::{receiver, NewMessage};
///
/// #[ic_cdk::update]
/// #[allow(non_snake_case)]
/// fn com_asyncFlow_newMessage(msg: NewMessage) {
///     receiver::handle_new_message(msg, |delivery| {
///         ic_cdk::println!("{} bytes from {:?}", delivery.payload.len(), delivery.sender);
///         candid::encode_one(()).unwrap()
///     });
/// }
/// ```
pub fn handle_new_message(msg: NewMessage, handler: impl FnOnce(&Delivery) -> Vec<u8>) {
    let caller = ic_cdk::api::msg_caller();
    let now = ic_cdk::api::time();
    match with_core(|core| core.on_new_message(caller, msg, now, Box::new(handler))) {
        Ok(effects) => execute(effects),
        Err(e) => ic_cdk::trap(e.to_string()),
    }
    rearm();
}

/// The body of the application's `com_asyncFlow_ackack` update: the FIN.
/// Traps if the caller is not an allowed broker.
///
/// ```no_run
/// use async_flow_client::{receiver, AckAck};
///
/// #[ic_cdk::update]
/// #[allow(non_snake_case)]
/// fn com_asyncFlow_ackack(fin: AckAck) {
///     receiver::handle_ackack(fin);
/// }
/// ```
pub fn handle_ackack(fin: AckAck) {
    let caller = ic_cdk::api::msg_caller();
    let now = ic_cdk::api::time();
    if let Err(e) = with_core(|core| core.on_ackack(caller, fin, now)) {
        ic_cdk::trap(e.to_string());
    }
    rearm();
}

/// Whether the handler ran for `(broker, msg_id)` within the dedup window.
///
/// ```no_run
/// use async_flow_client::{receiver, MsgId};
/// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
/// let done = receiver::is_processed(broker, MsgId(1));
/// # let _ = done;
/// ```
pub fn is_processed(broker: Principal, msg_id: MsgId) -> bool {
    with_core(|core| core.is_processed(broker, msg_id))
}

fn execute(effects: Vec<ReceiverEffect>) {
    for effect in effects {
        match effect {
            ReceiverEffect::SendAck { broker, ack } => {
                let arg = candid::encode_one(&ack).expect("Ack encodes");
                // A refusal needs no action: the timer and the broker's next NEW re-send it.
                if let Err(e) = ic_cdk::call::Call::bounded_wait(broker, method::ACK).with_raw_args(&arg).oneway() {
                    ic_cdk::println!("async-flow receiver: ACK of {} to {broker} not sent: {e:?}", ack.msg_id);
                }
            }
        }
    }
}

fn rearm() {
    let next = with_core(|core| core.next_deadline());
    timer::ensure_armed(&TIMER, next, ic_cdk::api::time(), run_timer);
}

fn run_timer() {
    let now = ic_cdk::api::time();
    let effects = with_core(|core| core.on_timer(now));
    execute(effects);
    rearm();
}
