//! What one run measured, and what it found wrong.

use crate::world::{Accepted, NS};
use async_flow_broker::core::Event;
use async_flow_client::{MsgId, Stats};
use std::collections::BTreeMap;

/// Invariant violations found in one run.
#[derive(Default, Debug)]
pub struct Violations(pub Vec<String>);

impl Violations {
    pub fn push(&mut self, v: String) {
        self.0.push(v);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The figures of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub messages: usize,
    pub delivered: usize,
    pub failed: usize,
    pub corrupted: usize,
    pub cancelled: usize,
    pub retries: u64,
    pub max_attempts_seen: u32,
    /// Enqueue → Delivered, virtual seconds.
    pub p50_secs: f64,
    pub p99_secs: f64,
}

impl Report {
    pub fn new(events: &[(u64, Event)], accepted: &BTreeMap<MsgId, Accepted>, stats: &Stats) -> Self {
        let mut enqueued_at = BTreeMap::new();
        let mut final_state: BTreeMap<MsgId, &Event> = BTreeMap::new();
        let mut latencies = Vec::new();
        let mut max_attempts_seen = 0;
        for (at, e) in events {
            match e {
                Event::Enqueued { msg_id, .. } => {
                    enqueued_at.insert(*msg_id, *at);
                }
                Event::NewSent { attempt, .. } => max_attempts_seen = max_attempts_seen.max(*attempt),
                Event::Delivered { msg_id } => {
                    final_state.insert(*msg_id, e);
                    if let Some(start) = enqueued_at.get(msg_id) {
                        latencies.push((at - start) as f64 / NS as f64);
                    }
                }
                Event::DeadLettered { msg_id, .. } | Event::Corrupted { msg_id, .. } | Event::Cancelled { msg_id } => {
                    final_state.insert(*msg_id, e);
                }
                _ => {}
            }
        }
        latencies.sort_by(|a, b| a.total_cmp(b));
        let count = |f: fn(&Event) -> bool| final_state.values().filter(|e| f(e)).count();
        Report {
            messages: accepted.len(),
            delivered: count(|e| matches!(e, Event::Delivered { .. })),
            failed: count(|e| matches!(e, Event::DeadLettered { .. })),
            corrupted: count(|e| matches!(e, Event::Corrupted { .. })),
            cancelled: count(|e| matches!(e, Event::Cancelled { .. })),
            retries: stats.totals.retries,
            max_attempts_seen,
            p50_secs: percentile(&latencies, 0.50),
            p99_secs: percentile(&latencies, 0.99),
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
