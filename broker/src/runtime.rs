//! What the canister needs from the IC, behind one trait. `IcRuntime` is the
//! only user of `ic_cdk` outside the endpoint shims; the simulation
//! implements the same trait for a simulated subnet.

use crate::core::{Broker, Event};
use async_flow_client::DeliveryError;
use candid::Principal;
use ic_stable_structures::Memory;

/// Called with the outcome of a bounded-wait call.
pub type OnReply = Box<dyn FnOnce(Result<(), DeliveryError>)>;

pub trait CanisterRuntime: Clone + 'static {
    type Memory: Memory;
    /// Runs `f` on this canister's broker (never re-entered).
    fn with_broker<R>(&self, f: impl FnOnce(&mut Broker<Self::Memory>) -> R) -> R;
    /// IC time, ns.
    fn time(&self) -> u64;
    /// Instructions spent in this message execution.
    fn instruction_counter(&self) -> u64;
    /// A one-way call; `Err` when the IC refuses it synchronously.
    fn send_oneway(&self, target: Principal, method: &str, arg: Vec<u8>) -> Result<(), DeliveryError>;
    /// A bounded-wait call; `on_reply` runs in the execution that receives the outcome.
    fn call_bounded(&self, target: Principal, method: &'static str, arg: Vec<u8>, timeout_secs: u32, on_reply: OnReply);
    /// Arms the one timer for `deadline` (ns), replacing any armed one.
    fn arm_timer(&self, deadline: u64);
    /// When the armed timer fires, if one is armed (heap state: gone after an upgrade).
    fn armed_deadline(&self) -> Option<u64>;
    /// Asks the management canister for random bytes (`raw_rand`), at most
    /// one request at a time; `on_bytes` runs only if it answers.
    fn fetch_entropy(&self, on_bytes: Box<dyn FnOnce(Vec<u8>)>);
    /// Something that happened to a message (the canister logs it as one greppable line).
    fn record_event(&self, event: Event);
}

/// The real thing.
#[derive(Clone, Copy)]
pub struct IcRuntime;

thread_local! {
    static ENTROPY_REQUESTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static TIMER: std::cell::Cell<Option<(ic_cdk_timers::TimerId, u64)>> = const { std::cell::Cell::new(None) };
}

fn delivery_error(e: ic_cdk::call::CallFailed) -> DeliveryError {
    use ic_cdk::call::CallFailed;
    match e {
        CallFailed::InsufficientLiquidCycleBalance(_) => DeliveryError::InsufficientCycles,
        CallFailed::CallPerformFailed(_) => DeliveryError::SendRefused,
        CallFailed::CallRejected(r) => DeliveryError::CallRejected { reject_code: r.raw_reject_code() },
    }
}

impl CanisterRuntime for IcRuntime {
    type Memory = crate::state::Memory;

    fn with_broker<R>(&self, f: impl FnOnce(&mut Broker<Self::Memory>) -> R) -> R {
        crate::state::mutate_state(f)
    }

    fn time(&self) -> u64 {
        ic_cdk::api::time()
    }

    fn instruction_counter(&self) -> u64 {
        ic_cdk::api::instruction_counter()
    }

    fn send_oneway(&self, target: Principal, method: &str, arg: Vec<u8>) -> Result<(), DeliveryError> {
        use ic_cdk::call::OnewayError;
        ic_cdk::call::Call::bounded_wait(target, method).take_raw_args(arg).oneway().map_err(|e| match e {
            OnewayError::InsufficientLiquidCycleBalance(_) => DeliveryError::InsufficientCycles,
            OnewayError::CallPerformFailed(_) => DeliveryError::SendRefused,
        })
    }

    fn call_bounded(
        &self,
        target: Principal,
        method: &'static str,
        arg: Vec<u8>,
        timeout_secs: u32,
        on_reply: OnReply,
    ) {
        let call = ic_cdk::call::Call::bounded_wait(target, method).take_raw_args(arg).change_timeout(timeout_secs);
        ic_cdk::futures::spawn(async move {
            let result = call.await.map(|_| ()).map_err(delivery_error);
            on_reply(result);
        });
    }

    fn arm_timer(&self, deadline: u64) {
        if let Some((old, _)) = TIMER.with(|t| t.take()) {
            ic_cdk_timers::clear_timer(old);
        }
        let delay = std::time::Duration::from_nanos(deadline.saturating_sub(self.time()));
        let id = ic_cdk_timers::set_timer(delay, async {
            TIMER.with(|t| t.set(None));
            crate::driver::run_timer(&IcRuntime);
        });
        TIMER.with(|t| t.set(Some((id, deadline))));
    }

    fn armed_deadline(&self) -> Option<u64> {
        TIMER.with(|t| t.get()).map(|(_, at)| at)
    }

    fn fetch_entropy(&self, on_bytes: Box<dyn FnOnce(Vec<u8>)>) {
        if ENTROPY_REQUESTED.with(|r| r.replace(true)) {
            return;
        }
        ic_cdk::futures::spawn(async move {
            let reply = ic_cdk::call::Call::bounded_wait(Principal::management_canister(), "raw_rand").await;
            ENTROPY_REQUESTED.with(|r| r.set(false));
            // Ids stay unique without it; on failure the next timer run asks again.
            if let Some(bytes) = reply.ok().and_then(|r| r.candid::<Vec<u8>>().ok()) {
                on_bytes(bytes);
            }
        });
    }

    fn record_event(&self, event: Event) {
        ic_cdk::println!("{event}");
    }
}
