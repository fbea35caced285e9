//! The one timer of a library module (IC only).
//!
//! Each module (receiver, sender) arms at most one timer, at the earliest
//! deadline of its stable schedule. Timers do not survive upgrades, so the
//! modules' `post_upgrade` hooks [`reset`] and re-arm.

use std::cell::Cell;
use std::thread::LocalKey;
use std::time::Duration;

/// The armed timer and when it fires (heap only).
pub(crate) struct OneTimer {
    id: Cell<Option<ic_cdk_timers::TimerId>>,
    at: Cell<Option<u64>>,
}

impl OneTimer {
    pub const fn new() -> Self {
        Self { id: Cell::new(None), at: Cell::new(None) }
    }
}

/// Forgets the armed timer (after an upgrade there is none).
pub(crate) fn reset(slot: &'static LocalKey<OneTimer>) {
    slot.with(|t| {
        if let Some(id) = t.id.take() {
            ic_cdk_timers::clear_timer(id);
        }
        t.at.set(None);
    });
}

/// Makes sure the timer fires by `next`: keeps an armed timer that fires
/// earlier, replaces a later one. An armed time already in the past is not
/// trusted (the run may have trapped and been rolled back), so it is re-armed.
pub(crate) fn ensure_armed(slot: &'static LocalKey<OneTimer>, next: Option<u64>, now: u64, run: fn()) {
    let Some(next) = next else { return };
    slot.with(|t| {
        if t.at.get().is_some_and(|at| at <= next && at >= now) {
            return;
        }
        if let Some(old) = t.id.take() {
            ic_cdk_timers::clear_timer(old);
        }
        let id = ic_cdk_timers::set_timer(Duration::from_nanos(next.saturating_sub(now)), async move {
            slot.with(|t| {
                t.id.set(None);
                t.at.set(None);
            });
            run();
        });
        t.id.set(Some(id));
        t.at.set(Some(next));
    });
}
