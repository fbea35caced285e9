//! The sender on the IC: state in a thread-local, the `enqueue` calls, the
//! callback endpoints and the GC timer.
//!
//! These functions call `ic_cdk` and only work inside a canister.

use super::enqueue::{enqueue_via, CallError, CallPolicy, SendError};
use super::{idempotency_key, Acknowledgement, SenderConfig, SenderCore, SenderError};
use crate::protocol::method;
use crate::timer::{self, OneTimer};
use crate::{EnqueueArgs, EnqueueResult, MsgId, SenderAck, SenderFailed};
use candid::{CandidType, Principal};
use ic_stable_structures::Memory;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// The application's callback handlers, registered once with [`init`].
///
/// `on_ack` gets each acknowledgement once; `on_failed` gets each dead
/// letter or corruption report once (see [`crate::FailureReason`]). Both run
/// inside the callback's update call: a trap in them rolls the call back
/// and the broker calls again later. They must not call back into this
/// module's callback functions.
///
/// ```
/// use async_flow_client::sender::{Acknowledgement, SenderHandlers};
/// use async_flow_client::{FailureReason, SenderFailed};
/// let handlers = SenderHandlers::new(
///     |ack: Acknowledgement| println!("{}: reply of {} bytes", ack.msg_id, ack.received_payload.len()),
///     |failed: SenderFailed| match failed.reason {
///         FailureReason::MaxAttemptsExceeded { .. } => println!("{} dead-lettered", failed.msg_id),
///         FailureReason::Corrupted(report) => println!("{} corrupted: {report:?}", failed.msg_id),
///     },
/// );
/// # let _ = handlers;
/// ```
pub struct SenderHandlers {
    on_ack: Box<dyn Fn(Acknowledgement)>,
    on_failed: Box<dyn Fn(SenderFailed)>,
}

impl SenderHandlers {
    /// Handlers from two closures.
    ///
    /// ```
    /// use async_flow_client::sender::SenderHandlers;
    /// let handlers = SenderHandlers::new(|_ack| {}, |_failed| {});
    /// # let _ = handlers;
    /// ```
    pub fn new(on_ack: impl Fn(Acknowledgement) + 'static, on_failed: impl Fn(SenderFailed) + 'static) -> Self {
        Self { on_ack: Box::new(on_ack), on_failed: Box::new(on_failed) }
    }
}

/// [`SenderCore`] with its memory type erased, so it can live in a thread-local.
trait Sender {
    fn on_ack(&mut self, caller: Principal, ack: SenderAck, now: u64) -> Result<Option<SenderAck>, SenderError>;
    fn on_failed(&mut self, caller: Principal, f: SenderFailed, now: u64) -> Result<Option<SenderFailed>, SenderError>;
    fn on_timer(&mut self, now: u64) -> u32;
    fn next_deadline(&self) -> Option<u64>;
    fn next_idempotency_key(&mut self, now: u64) -> String;
    fn broker(&self) -> Principal;
}

impl<M: Memory> Sender for SenderCore<M> {
    fn on_ack(&mut self, caller: Principal, ack: SenderAck, now: u64) -> Result<Option<SenderAck>, SenderError> {
        SenderCore::on_ack(self, caller, ack, now)
    }
    fn on_failed(&mut self, caller: Principal, f: SenderFailed, now: u64) -> Result<Option<SenderFailed>, SenderError> {
        SenderCore::on_failed(self, caller, f, now)
    }
    fn on_timer(&mut self, now: u64) -> u32 {
        SenderCore::on_timer(self, now)
    }
    fn next_deadline(&self) -> Option<u64> {
        SenderCore::next_deadline(self)
    }
    fn next_idempotency_key(&mut self, now: u64) -> String {
        SenderCore::next_idempotency_key(self, now)
    }
    fn broker(&self) -> Principal {
        self.config().broker
    }
}

struct Installed {
    core: Box<dyn Sender>,
    handlers: Rc<SenderHandlers>,
}

thread_local! {
    static STATE: RefCell<Option<Installed>> = const { RefCell::new(None) };
    static TIMER: OneTimer = const { OneTimer::new() };
    /// Idempotency keys when [`init`] was not called (heap only; `now` keeps them apart across upgrades).
    static HEAP_KEYS: Cell<u64> = const { Cell::new(0) };
}

fn with_state<R>(f: impl FnOnce(&mut Installed) -> R) -> R {
    STATE.with(|s| match s.borrow_mut().as_mut() {
        Some(installed) => f(installed),
        None => ic_cdk::trap("async_flow_client::sender::init was not called"),
    })
}

/// Opens the sender state in `memory`, registers the handlers and arms the
/// GC timer. Call it from the canister's `#[init]`, with a memory that
/// belongs to the library alone.
///
/// ```no_run
/// use async_flow_client::sender::{self, SenderConfig, SenderHandlers};
/// use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
/// use ic_stable_structures::DefaultMemoryImpl;
///
/// #[ic_cdk::init]
/// fn init(broker: candid::Principal) {
///     let mm = MemoryManager::init(DefaultMemoryImpl::default());
///     let handlers = SenderHandlers::new(|_ack| {}, |_failed| {});
///     sender::init(mm.get(MemoryId::new(0)), SenderConfig::new(broker), handlers);
/// }
/// ```
pub fn init<M: Memory + 'static>(memory: M, config: SenderConfig, handlers: SenderHandlers) {
    let installed = Installed { core: Box::new(SenderCore::open(memory, config)), handlers: Rc::new(handlers) };
    STATE.with(|s| *s.borrow_mut() = Some(installed));
    timer::reset(&TIMER);
    rearm();
}

/// Reopens the sender state after an upgrade and re-arms the timer (timers
/// do not survive upgrades). Same as [`init`]; pass the same memory.
///
/// ```no_run
/// use async_flow_client::sender::{self, SenderConfig, SenderHandlers};
/// use ic_stable_structures::memory_manager::{MemoryId, MemoryManager};
/// use ic_stable_structures::DefaultMemoryImpl;
///
/// #[ic_cdk::post_upgrade]
/// fn post_upgrade(broker: candid::Principal) {
///     let mm = MemoryManager::init(DefaultMemoryImpl::default());
///     let handlers = SenderHandlers::new(|_ack| {}, |_failed| {});
///     sender::post_upgrade(mm.get(MemoryId::new(0)), SenderConfig::new(broker), handlers);
/// }
/// ```
pub fn post_upgrade<M: Memory + 'static>(memory: M, config: SenderConfig, handlers: SenderHandlers) {
    init(memory, config, handlers)
}

/// The configured broker, if [`init`] was called.
///
/// ```no_run
/// let broker = async_flow_client::sender::broker();
/// # let _ = broker;
/// ```
pub fn broker() -> Option<Principal> {
    STATE.with(|s| s.borrow().as_ref().map(|i| i.core.broker()))
}

/// The body of the application's `com_asyncFlow_ack` update: rejects
/// (traps) unless the caller is the broker, and calls the `on_ack` handler
/// the first time a message's acknowledgement arrives. The update then
/// replies `()`, which confirms the callback to the broker.
///
/// ```no_run
/// use async_flow_client::{sender, SenderAck};
///
/// #[ic_cdk::update]
/// #[allow(non_snake_case)]
/// fn com_asyncFlow_ack(ack: SenderAck) {
///     sender::handle_ack(ack);
/// }
/// ```
pub fn handle_ack(ack: SenderAck) {
    let (caller, now) = (ic_cdk::api::msg_caller(), ic_cdk::api::time());
    let (result, handlers) = with_state(|s| (s.core.on_ack(caller, ack, now), s.handlers.clone()));
    rearm();
    match result {
        Ok(Some(ack)) => (handlers.on_ack)(ack.into()),
        Ok(None) => {}
        Err(e) => ic_cdk::trap(e.to_string()),
    }
}

/// The body of the application's `com_asyncFlow_failed` update: rejects
/// (traps) unless the caller is the broker, and calls the `on_failed`
/// handler the first time, unless the message was already acknowledged.
///
/// ```no_run
/// use async_flow_client::{sender, SenderFailed};
///
/// #[ic_cdk::update]
/// #[allow(non_snake_case)]
/// fn com_asyncFlow_failed(failed: SenderFailed) {
///     sender::handle_failed(failed);
/// }
/// ```
pub fn handle_failed(failed: SenderFailed) {
    let (caller, now) = (ic_cdk::api::msg_caller(), ic_cdk::api::time());
    let (result, handlers) = with_state(|s| (s.core.on_failed(caller, failed, now), s.handlers.clone()));
    rearm();
    match result {
        Ok(Some(failed)) => (handlers.on_failed)(failed),
        Ok(None) => {}
        Err(e) => ic_cdk::trap(e.to_string()),
    }
}

/// Sends `payload` to `target` through `broker` with the broker's default
/// options and [`CallPolicy::default`]. Returns the message's id; the
/// acknowledgement arrives later through [`handle_ack`].
///
/// ```no_run
/// # async fn example() {
/// use async_flow_client::sender;
/// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
/// let target = candid::Principal::from_text("rrkah-fqaaa-aaaaa-aaaaq-cai").unwrap();
/// let msg_id = sender::enqueue(broker, target, b"raw bytes".to_vec()).await;
/// # let _ = msg_id;
/// # }
/// ```
pub async fn enqueue(broker: Principal, target: Principal, payload: Vec<u8>) -> Result<MsgId, SendError> {
    enqueue_with(broker, EnqueueArgs { target, payload, options: None }, CallPolicy::default()).await
}

/// Like [`enqueue`], with `value` Candid-encoded as the payload.
///
/// ```no_run
/// # async fn example() {
/// use async_flow_client::sender;
/// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
/// let target = candid::Principal::from_text("rrkah-fqaaa-aaaaa-aaaaq-cai").unwrap();
/// let msg_id = sender::enqueue_candid(broker, target, &"hello".to_string()).await;
/// # let _ = msg_id;
/// # }
/// ```
pub async fn enqueue_candid<T: CandidType>(
    broker: Principal,
    target: Principal,
    value: &T,
) -> Result<MsgId, SendError> {
    let payload = candid::encode_one(value).map_err(|e| SendError::Encode { message: e.to_string() })?;
    enqueue(broker, target, payload).await
}

/// Sends with every option. Without `args.options.idempotency_key`, a fresh
/// key is generated (unique for this canister); with one (for example a
/// business key like an order number, or the key of a [`SendError::InDoubt`]),
/// that key is used. The call is re-issued with the same key on
/// `SYS_UNKNOWN` and `SYS_TRANSIENT`, at most `policy.max_attempts` times.
///
/// ```no_run
/// # async fn example() {
/// use async_flow_client::sender::{self, CallPolicy};
/// use async_flow_client::{EnqueueArgs, EnqueueOptions};
/// let broker = candid::Principal::from_text("ryjl3-tyaaa-aaaaa-aaaba-cai").unwrap();
/// let args = EnqueueArgs {
///     target: candid::Principal::from_text("rrkah-fqaaa-aaaaa-aaaaq-cai").unwrap(),
///     payload: candid::encode_one("hello").unwrap(),
///     options: Some(EnqueueOptions { include_sent_payload: Some(true), idempotency_key: Some("order-17".into()), ..Default::default() }),
/// };
/// let msg_id = sender::enqueue_with(broker, args, CallPolicy::default()).await;
/// # let _ = msg_id;
/// # }
/// ```
pub async fn enqueue_with(broker: Principal, args: EnqueueArgs, policy: CallPolicy) -> Result<MsgId, SendError> {
    let key = match args.options.as_ref().and_then(|o| o.idempotency_key.clone()) {
        Some(key) => key,
        None => fresh_key(),
    };
    let timeout = policy.timeout_seconds;
    enqueue_via(args, key, policy.max_attempts, |args| call_enqueue(broker, args, timeout)).await
}

fn fresh_key() -> String {
    let now = ic_cdk::api::time();
    let installed = STATE.with(|s| s.borrow_mut().as_mut().map(|i| i.core.next_idempotency_key(now)));
    installed.unwrap_or_else(|| {
        let n = HEAP_KEYS.with(|c| c.replace(c.get() + 1)) + 1;
        format!("{}h", idempotency_key(now, n))
    })
}

async fn call_enqueue(broker: Principal, args: EnqueueArgs, timeout_seconds: u32) -> Result<EnqueueResult, CallError> {
    use ic_cdk::call::{Call, CallFailed};
    match Call::bounded_wait(broker, method::ENQUEUE).with_arg(args).change_timeout(timeout_seconds).await {
        Ok(response) => {
            response.candid::<EnqueueResult>().map_err(|e| CallError::InvalidReply { message: e.to_string() })
        }
        Err(CallFailed::CallRejected(r)) => {
            Err(CallError::Rejected { reject_code: r.raw_reject_code(), message: r.reject_message().to_string() })
        }
        Err(other) => Err(CallError::NotSent { message: other.to_string() }),
    }
}

fn rearm() {
    let next = with_state(|s| s.core.next_deadline());
    timer::ensure_armed(&TIMER, next, ic_cdk::api::time(), run_timer);
}

fn run_timer() {
    let now = ic_cdk::api::time();
    with_state(|s| s.core.on_timer(now));
    rearm();
}
