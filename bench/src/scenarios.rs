//! The measurements. Each returns numbers; `main` prints them.

use crate::fixtures::{hash_of, payload, sender, target, BrokerBench, BACKLOG_ACK_TIMEOUT_SECS, NS, RETENTION_SECS};
use crate::floor::Floor;
use crate::naive::Naive;
use crate::stable_usage::{per_map, usage, Usage, BROKER_MAPS};
use crate::timing::{human, median, time};
use async_flow_broker::core::Unlimited;
use async_flow_client::MsgId;
use candid::Principal;

/// Payload sizes of the lifecycle benchmark, with the batch size for each.
pub const LIFECYCLE_SIZES: [(&str, usize, usize); 3] =
    [("100B", 100, 2000), ("1KiB", 1024, 2000), ("64KiB", 65_536, 200)];
/// Backlogs of the scaling benchmark.
pub const BACKLOGS: [(&str, usize); 3] = [("1k", 1_000), ("100k", 100_000), ("1M", 1_000_000)];
/// Lifecycles measured on top of each backlog, per round.
pub const SCALING_BATCH: usize = 1000;
/// Messages of the backlog whose ACK timeout comes first (the "due" set).
pub const DUE: usize = 10_000;
/// ACK timeout of the due set: 12 h, before any other backlog deadline.
pub const DUE_ACK_TIMEOUT_SECS: u32 = 43_200;
/// Payload of pending messages in the scaling, timer and memory benchmarks.
pub const BACKLOG_PAYLOAD: usize = 100;

/// Inputs of the floor for the same messages.
fn floor_inputs(n: usize, p: &[u8]) -> Vec<(Principal, Principal, Vec<u8>)> {
    (0..n as u32).map(|i| (sender(i), target(i), p.to_vec())).collect()
}

#[derive(Clone, Debug)]
pub struct LifecycleResult {
    pub label: &'static str,
    pub broker_ns: f64,
    pub floor_ns: f64,
}

impl LifecycleResult {
    pub fn ratio(&self) -> f64 {
        self.broker_ns / self.floor_ns
    }
}

/// One broker batch lifecycle of `n` messages; nanoseconds per message.
fn broker_round(b: &mut BrokerBench, n: usize, p: &[u8], hash: u32) -> f64 {
    let inputs = b.inputs(n, p, None);
    let ((), ns) = time(|| b.lifecycle(inputs, hash));
    ns / n as f64
}

fn floor_round(f: &mut Floor, n: usize, p: &[u8], now: u64) -> f64 {
    let inputs = floor_inputs(n, p);
    let ((), ns) = time(|| f.lifecycle(inputs, now));
    ns / n as f64
}

/// Target 1: the whole lifecycle against the floor, rounds alternated.
pub fn lifecycle(rounds: usize, scale: f64) -> Vec<LifecycleResult> {
    LIFECYCLE_SIZES
        .iter()
        .map(|&(label, size, batch)| {
            let n = ((batch as f64 * scale) as usize).max(1);
            let p = payload(size);
            let hash = hash_of(&p);
            let mut b = BrokerBench::new();
            let mut f = Floor::new();
            // Warm up: the maps reach their working size and stay there.
            broker_round(&mut b, n, &p, hash);
            floor_round(&mut f, n, &p, b.now);
            let mut bs = Vec::new();
            let mut fs = Vec::new();
            for _ in 0..rounds {
                bs.push(broker_round(&mut b, n, &p, hash));
                fs.push(floor_round(&mut f, n, &p, b.now));
            }
            assert!(b.broker.is_empty(), "broker not empty after its lifecycles");
            assert!(f.map.is_empty(), "floor not empty after its lifecycles");
            let r = LifecycleResult { label, broker_ns: median(bs), floor_ns: median(fs) };
            println!(
                "lifecycle {label}: broker {}/msg, floor {}/msg, ratio {:.2}x ({n} msgs x {rounds} rounds, median)",
                human(r.broker_ns),
                human(r.floor_ns),
                r.ratio()
            );
            r
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct ScalingPoint {
    pub label: &'static str,
    pub pending: usize,
    pub per_msg_ns: f64,
    pub usage: Usage,
}

#[derive(Clone, Debug)]
pub struct BigResult {
    pub baseline: Usage,
    pub points: Vec<ScalingPoint>,
    pub build_ns_per_msg: f64,
    pub idle_broker_ns: f64,
    pub idle_naive_ns: f64,
    pub due_broker_ns: f64,
    pub due_broker_runs: usize,
    pub due_naive_ns: f64,
    pub due_effects: usize,
}

impl BigResult {
    /// Stable-memory overhead per pending message beyond its payload, from
    /// the in-use bytes (allocated chunks) and from the page count.
    pub fn overhead_per_pending(&self) -> (f64, f64) {
        let last = self.points.last().expect("scaling points");
        let n = last.pending as f64;
        let in_use = (last.usage.in_use - self.baseline.in_use) as f64 / n - BACKLOG_PAYLOAD as f64;
        let pages = (last.usage.memory_bytes() - self.baseline.memory_bytes()) as f64 / n - BACKLOG_PAYLOAD as f64;
        (in_use, pages)
    }
}

/// Lifecycles of `batch` fresh messages on top of the current backlog,
/// `rounds` times; median nanoseconds per message.
fn scaling_rounds(b: &mut BrokerBench, batch: usize, rounds: usize) -> f64 {
    let p = payload(BACKLOG_PAYLOAD);
    let hash = hash_of(&p);
    broker_round(b, batch, &p, hash);
    median((0..rounds).map(|_| broker_round(b, batch, &p, hash)).collect())
}

/// Grows a broker to `pending` backlog, the due set included once the
/// backlog passes it. Returns the ids added.
fn grow(b: &mut BrokerBench, from: usize, to: usize, due: usize, due_deadline: &mut Option<u64>) -> Vec<MsgId> {
    let p = payload(BACKLOG_PAYLOAD);
    let mut ids = Vec::with_capacity(to - from);
    let mut have = from;
    if due_deadline.is_none() && to >= 2 * due {
        *due_deadline = Some(b.now + DUE_ACK_TIMEOUT_SECS as u64 * NS);
        ids.extend(b.add_backlog(due, &p, DUE_ACK_TIMEOUT_SECS));
        have += due;
    }
    ids.extend(b.add_backlog(to - have, &p, BACKLOG_ACK_TIMEOUT_SECS));
    ids
}

/// Targets 2, 3 and 4 (per pending message) on one broker grown to a
/// million pending messages, and the naive design over the same records.
pub fn big(rounds: usize, scale: f64) -> BigResult {
    let mut b = BrokerBench::new();
    let baseline = usage(&b.memory, &BROKER_MAPS);
    let batch = ((SCALING_BATCH as f64 * scale) as usize).max(10);
    let mut ids: Vec<MsgId> = Vec::new();
    let due = ((DUE as f64 * scale) as usize).max(10);
    let mut due_deadline = None;
    let mut points = Vec::new();
    let mut build_ns = 0.0;
    for &(label, n) in &BACKLOGS {
        let n = ((n as f64 * scale) as usize).max(100);
        let from = ids.len();
        let (new_ids, ns) = time(|| grow(&mut b, from, n, due, &mut due_deadline));
        build_ns += ns;
        ids.extend(new_ids);
        let u = usage(&b.memory, &BROKER_MAPS);
        if n == ids.len() && n >= 100_000 {
            let parts: Vec<String> = per_map(&b.memory, &BROKER_MAPS)
                .into_iter()
                .filter(|&(_, _, bytes)| bytes > 0)
                .map(|(name, _, bytes)| format!("{name} {:.0}", bytes as f64 / n as f64))
                .collect();
            println!("stable bytes per pending message at {label}, by map: {}", parts.join(", "));
        }
        let per_msg_ns = scaling_rounds(&mut b, batch, rounds);
        assert_eq!(b.broker.message_count(), n as u64, "the batches left nothing behind");
        println!(
            "scaling {label} pending: {}/msg lifecycle ({batch} msgs x {rounds} rounds, median); \
             stable memory {} pages, {} B in {} chunks",
            human(per_msg_ns),
            u.pages,
            u.in_use,
            u.chunks
        );
        points.push(ScalingPoint { label, pending: n, per_msg_ns, usage: u });
    }
    let build_ns_per_msg = build_ns / ids.len() as f64;
    println!("backlog build: {}/msg enqueue", human(build_ns_per_msg));

    // Timer runs with nothing due.
    let now = b.now;
    let due_at = due_deadline.expect("backlog large enough for the due set");
    assert!(b.broker.next_deadline().is_some_and(|d| d > now) && due_at > now, "something is due too early");
    let idle_runs = 10_000;
    let ((), ns) = time(|| {
        for _ in 0..idle_runs {
            assert!(b.broker.on_timer(now, &Unlimited).is_empty());
        }
    });
    let idle_broker_ns = ns / idle_runs as f64;

    let mut naive = Naive::new();
    let p = payload(BACKLOG_PAYLOAD);
    for id in &ids {
        naive.insert(*id, b.broker.record(*id).expect("pending record"), p.clone());
    }
    let idle_naive_ns = median((0..3).map(|_| time(|| assert!(naive.tick(now).is_empty())).1).collect());
    println!(
        "timer run, {} pending, none due: broker {}, naive scan {}, ratio {:.0}x",
        ids.len(),
        human(idle_broker_ns),
        human(idle_naive_ns),
        idle_naive_ns / idle_broker_ns
    );

    // Timer runs with the due set due.
    let ((due_effects, due_broker_runs), due_broker_ns) = time(|| b.run_timers(due_at));
    let (naive_effects, due_naive_ns) = time(|| naive.tick(due_at).len());
    assert_eq!(due_effects, naive_effects, "broker and naive re-send the same messages");
    println!(
        "timer, {} pending, {due_effects} due: broker {} ({due_broker_runs} runs of <= 500), naive scan {}, ratio {:.1}x",
        ids.len(),
        human(due_broker_ns),
        human(due_naive_ns),
        due_naive_ns / due_broker_ns
    );
    let r = BigResult {
        baseline,
        points,
        build_ns_per_msg,
        idle_broker_ns,
        idle_naive_ns,
        due_broker_ns,
        due_broker_runs,
        due_naive_ns,
        due_effects,
    };
    let (in_use, pages) = r.overhead_per_pending();
    println!(
        "stable memory per pending message beyond its {BACKLOG_PAYLOAD} B payload: {in_use:.0} B in use, {pages:.0} B of pages"
    );
    r
}

#[derive(Clone, Debug)]
pub struct GcResult {
    pub n: usize,
    pub baseline: Usage,
    pub pending: Usage,
    pub after_gc: Usage,
    /// `n` pending again after the first GC.
    pub refilled: Usage,
    /// After the second cycle's completion and GC.
    pub after_second_gc: Usage,
    pub empty_after_gc: bool,
}

/// ACK, callback and GC of `msgs`; the broker must end empty.
fn complete(b: &mut BrokerBench, mut msgs: Vec<crate::fixtures::InFlight>, hash: u32) -> bool {
    b.now += NS;
    b.ack_all(&mut msgs, hash);
    b.confirm_all(&msgs);
    let gc_at = b.now + RETENTION_SECS * NS;
    b.run_timers(gc_at);
    b.now = gc_at + NS;
    b.broker.is_empty()
}

/// Target 4, second half: complete and collect `n` pending messages, twice.
/// In-use bytes must return to the baseline each time, and the second cycle
/// must reuse the freed chunks instead of growing the memory.
pub fn gc_baseline(n: usize) -> GcResult {
    let p = payload(BACKLOG_PAYLOAD);
    let hash = hash_of(&p);
    let mut b = BrokerBench::new();
    let baseline = usage(&b.memory, &BROKER_MAPS);
    let inputs = b.inputs(n, &p, None);
    let msgs = b.enqueue_all(inputs);
    let pending = usage(&b.memory, &BROKER_MAPS);
    let mut empty_after_gc = complete(&mut b, msgs, hash);
    let after_gc = usage(&b.memory, &BROKER_MAPS);
    let inputs = b.inputs(n, &p, None);
    let msgs = b.enqueue_all(inputs);
    let refilled = usage(&b.memory, &BROKER_MAPS);
    empty_after_gc &= complete(&mut b, msgs, hash);
    let after_second_gc = usage(&b.memory, &BROKER_MAPS);
    let r = GcResult { n, baseline, pending, after_gc, refilled, after_second_gc, empty_after_gc };
    println!(
        "gc: baseline {} B in use ({} pages); {n} pending {} B ({} pages); after completion and GC {} B ({} pages); \
         {n} pending again {} B ({} pages); after second GC {} B ({} pages); empty after each GC: {empty_after_gc}",
        baseline.in_use,
        baseline.pages,
        pending.in_use,
        pending.pages,
        after_gc.in_use,
        after_gc.pages,
        refilled.in_use,
        refilled.pages,
        after_second_gc.in_use,
        after_second_gc.pages,
    );
    r
}
