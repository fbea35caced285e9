//! What the canister needs from the IC, behind one trait. `IcRuntime` is the
//! only user of `ic_cdk` outside the endpoint shims; tests use a fake.

use async_flow_client::DeliveryError;
use candid::Principal;
use std::time::Duration;

/// Called with the outcome of a bounded-wait call.
pub type OnReply = Box<dyn FnOnce(Result<(), DeliveryError>)>;

pub trait CanisterRuntime {
    /// IC time, ns.
    fn time(&self) -> u64;
    fn self_id(&self) -> Principal;
    /// Instructions spent in this message execution.
    fn instruction_counter(&self) -> u64;
    /// A one-way call; `Err` when the IC refuses it synchronously.
    fn send_oneway(&self, target: Principal, method: &str, arg: &[u8]) -> Result<(), DeliveryError>;
    /// A bounded-wait call; `on_reply` runs in the execution that receives the outcome.
    fn call_bounded(&self, target: Principal, method: &'static str, arg: Vec<u8>, timeout_secs: u32, on_reply: OnReply);
    /// Arms the one timer to fire after `delay`, replacing the armed one.
    fn arm_timer(&self, delay: Duration);
    /// Asks the management canister for 32 random bytes (`raw_rand`).
    fn fetch_entropy(&self, on_bytes: Box<dyn FnOnce(Option<Vec<u8>>)>);
    /// One line of the canister log.
    fn log(&self, line: &str);
}

/// The real thing.
#[derive(Clone, Copy)]
pub struct IcRuntime;

thread_local! {
    static TIMER: std::cell::Cell<Option<ic_cdk_timers::TimerId>> = const { std::cell::Cell::new(None) };
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
    fn time(&self) -> u64 {
        ic_cdk::api::time()
    }

    fn self_id(&self) -> Principal {
        ic_cdk::api::canister_self()
    }

    fn instruction_counter(&self) -> u64 {
        ic_cdk::api::instruction_counter()
    }

    fn send_oneway(&self, target: Principal, method: &str, arg: &[u8]) -> Result<(), DeliveryError> {
        use ic_cdk::call::OnewayError;
        ic_cdk::call::Call::bounded_wait(target, method).with_raw_args(arg).oneway().map_err(|e| match e {
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

    fn arm_timer(&self, delay: Duration) {
        if let Some(old) = TIMER.with(|t| t.take()) {
            ic_cdk_timers::clear_timer(old);
        }
        let id = ic_cdk_timers::set_timer(delay, async {
            TIMER.with(|t| t.set(None));
            crate::driver::run_timer(&IcRuntime);
        });
        TIMER.with(|t| t.set(Some(id)));
    }

    fn fetch_entropy(&self, on_bytes: Box<dyn FnOnce(Option<Vec<u8>>)>) {
        ic_cdk::futures::spawn(async move {
            let reply = ic_cdk::call::Call::bounded_wait(Principal::management_canister(), "raw_rand").await;
            // Ids stay unique without it; on failure the next timer run asks again.
            on_bytes(reply.ok().and_then(|r| r.candid::<Vec<u8>>().ok()));
        });
    }

    fn log(&self, line: &str) {
        ic_cdk::println!("{line}");
    }
}
