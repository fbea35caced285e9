//! Carries out the core's effects with a [`CanisterRuntime`], feeds the
//! outcomes back, logs the events and keeps the one timer armed.

use crate::core::{Effect, WorkBudget};
use crate::runtime::CanisterRuntime;
use crate::state::mutate_state;
use async_flow_client::protocol::method;
use std::cell::Cell;
use std::time::Duration;

/// Instructions a timer run may use before it yields to a new run (the IC's
/// limit for one execution is 40 billion).
pub const TIMER_INSTRUCTION_BUDGET: u64 = 4_000_000_000;

thread_local! {
    /// When the armed timer fires (heap only: timers do not survive upgrades).
    static ARMED_AT: Cell<Option<u64>> = const { Cell::new(None) };
    static ENTROPY_REQUESTED: Cell<bool> = const { Cell::new(false) };
}

struct InstructionBudget<'a, R>(&'a R);

impl<R: CanisterRuntime> WorkBudget for InstructionBudget<'_, R> {
    fn exhausted(&self) -> bool {
        self.0.instruction_counter() > TIMER_INSTRUCTION_BUDGET
    }
}

/// Performs `effects`, then logs and re-arms.
pub fn execute<R: CanisterRuntime + Clone + 'static>(rt: &R, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::SendNew { target, message } => {
                let arg = candid::encode_one(&message).expect("NewMessage encodes");
                if let Err(error) = rt.send_oneway(target, method::NEW_MESSAGE, &arg) {
                    let attempt = message.attempt.unwrap_or_default();
                    mutate_state(|b| b.on_new_refused(message.msg_id, attempt, error, rt.time()));
                }
            }
            Effect::SendFin { target, fin } => {
                let arg = candid::encode_one(&fin).expect("AckAck encodes");
                if rt.send_oneway(target, method::ACK_ACK, &arg).is_err() {
                    mutate_state(|b| b.on_fin_refused());
                }
            }
            Effect::Callback { sender, serial, callback } => {
                let msg_id = callback.msg_id();
                let timeout = mutate_state(|b| b.config().callback_timeout_seconds);
                let rt2 = rt.clone();
                let on_reply = Box::new(move |result| {
                    mutate_state(|b| b.on_callback_result(msg_id, serial, result, rt2.time()));
                    finish(&rt2);
                });
                rt.call_bounded(sender, callback.method(), callback.encode(), timeout, on_reply);
            }
        }
    }
    finish(rt);
}

/// Logs what happened and makes sure the timer fires by the next deadline.
fn finish<R: CanisterRuntime>(rt: &R) {
    for event in mutate_state(|b| b.drain_events()) {
        rt.log(&event.to_string());
    }
    let Some(next) = mutate_state(|b| b.next_deadline()) else { return };
    let armed = ARMED_AT.with(|a| a.get());
    if armed.is_none_or(|at| next < at) {
        let now = rt.time();
        rt.arm_timer(Duration::from_nanos(next.saturating_sub(now)));
        ARMED_AT.with(|a| a.set(Some(next)));
    }
}

/// The timer: handle what is due within the budget, then re-arm (for "now"
/// if more is due, so a backlog is worked off over several runs).
pub fn run_timer<R: CanisterRuntime + Clone + 'static>(rt: &R) {
    ARMED_AT.with(|a| a.set(None));
    request_entropy_once(rt);
    let effects = mutate_state(|b| b.on_timer(rt.time(), &InstructionBudget(rt)));
    execute(rt, effects);
}

/// Arms the timer from the stable schedule: after install and after every
/// upgrade, since timers do not survive upgrades.
pub fn rearm_after_upgrade<R: CanisterRuntime + Clone + 'static>(rt: &R) {
    ARMED_AT.with(|a| a.set(None));
    finish(rt);
    // Seeding needs a call, which init and post_upgrade cannot make: do it from a timer.
    if !mutate_state(|b| b.is_seeded()) {
        rt.arm_timer(Duration::ZERO);
        ARMED_AT.with(|a| a.set(Some(rt.time())));
    }
}

fn request_entropy_once<R: CanisterRuntime>(rt: &R) {
    if mutate_state(|b| b.is_seeded()) || ENTROPY_REQUESTED.with(|r| r.replace(true)) {
        return;
    }
    rt.fetch_entropy(Box::new(|bytes| match bytes {
        Some(bytes) => mutate_state(|b| b.seed_randomness(&bytes)),
        None => ENTROPY_REQUESTED.with(|r| r.set(false)),
    }));
}
