//! Carries out the core's effects with a [`CanisterRuntime`], feeds the
//! outcomes back, logs the events and keeps the one timer armed. The
//! canister and the simulation both run this code.

use crate::core::{Effect, WorkBudget};
use crate::runtime::CanisterRuntime;
use async_flow_client::protocol::method;

/// Instructions a timer run may use before it yields to a new run (the IC's
/// limit for one execution is 40 billion).
pub const TIMER_INSTRUCTION_BUDGET: u64 = 4_000_000_000;

struct InstructionBudget<'a, R>(&'a R);

impl<R: CanisterRuntime> WorkBudget for InstructionBudget<'_, R> {
    fn exhausted(&self) -> bool {
        self.0.instruction_counter() > TIMER_INSTRUCTION_BUDGET
    }
}

/// Performs `effects`, then logs and re-arms.
pub fn execute<R: CanisterRuntime>(rt: &R, effects: Vec<Effect>) {
    // What led to the effects is logged before what they cause.
    record_events(rt);
    for effect in effects {
        match effect {
            Effect::SendNew { target, message } => {
                let (msg_id, attempt) = (message.msg_id, message.attempt.unwrap_or_default());
                let arg = candid::encode_one(&message).expect("NewMessage encodes");
                if let Err(error) = rt.send_oneway(target, method::NEW_MESSAGE, arg) {
                    rt.with_broker(|b| b.on_new_refused(msg_id, attempt, error, rt.time()));
                }
            }
            Effect::SendFin { target, fin } => {
                let arg = candid::encode_one(&fin).expect("AckAck encodes");
                if rt.send_oneway(target, method::ACK_ACK, arg).is_err() {
                    rt.with_broker(|b| b.on_fin_refused());
                }
            }
            Effect::Callback { sender, serial, callback } => {
                let msg_id = callback.msg_id();
                let timeout = rt.with_broker(|b| b.config().callback_timeout_seconds);
                let on_reply_rt = rt.clone();
                let on_reply = Box::new(move |result| {
                    let rt = on_reply_rt;
                    rt.with_broker(|b| b.on_callback_result(msg_id, serial, result, rt.time()));
                    finish(&rt);
                });
                rt.call_bounded(sender, callback.method(), callback.encode(), timeout, on_reply);
            }
        }
    }
    finish(rt);
}

fn record_events<R: CanisterRuntime>(rt: &R) {
    for event in rt.with_broker(|b| b.drain_events()) {
        rt.record_event(event);
    }
}

/// Logs what happened and makes sure the timer fires by the next deadline.
fn finish<R: CanisterRuntime>(rt: &R) {
    record_events(rt);
    let Some(next) = rt.with_broker(|b| b.next_deadline()) else { return };
    if rt.armed_deadline().is_none_or(|at| next < at) {
        rt.arm_timer(next);
    }
}

/// The timer: handle what is due within the budget, then re-arm (for "now"
/// if more is due, so a backlog is worked off over several runs).
pub fn run_timer<R: CanisterRuntime>(rt: &R) {
    request_entropy_once(rt);
    let effects = rt.with_broker(|b| b.on_timer(rt.time(), &InstructionBudget(rt)));
    execute(rt, effects);
}

/// After install and after every upgrade: timers do not survive upgrades,
/// so arm the one timer from the stable schedule.
pub fn rearm_after_upgrade<R: CanisterRuntime>(rt: &R) {
    finish(rt);
    // Seeding needs a call, which init and post_upgrade cannot make: do it from a timer.
    if !rt.with_broker(|b| b.is_seeded()) && rt.armed_deadline().is_none() {
        rt.arm_timer(rt.time());
    }
}

/// Until `raw_rand` has answered once, every timer run asks for it (the
/// runtime keeps at most one request in flight).
fn request_entropy_once<R: CanisterRuntime>(rt: &R) {
    if rt.with_broker(|b| b.is_seeded()) {
        return;
    }
    let on_bytes_rt = rt.clone();
    rt.fetch_entropy(Box::new(move |bytes| on_bytes_rt.with_broker(|b| b.seed_randomness(&bytes))));
}
