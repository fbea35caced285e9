//! `simulate`: run seeds of the deterministic simulation, or the demo.
//!
//! ```text
//! simulate --seeds N [--from S]   N seeds (S, S+1, …), a summary table, exit 1 on any violation
//! simulate --seed S               one seed, its figures and violations
//! simulate --seed S --trace       …and the life of every message
//! simulate --demo                 the README's demo scenario
//! ```

use async_flow_broker::core::Event;
use async_flow_sim::{run, FaultPlan, Scenario, World};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

fn usage() -> ExitCode {
    eprintln!("usage: simulate --seeds N [--from S] | --seed S [--trace] | --demo");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok())
    };
    if args.iter().any(|a| a == "--demo") {
        demo();
        ExitCode::SUCCESS
    } else if let Some(seed) = value("--seed") {
        single(seed, args.iter().any(|a| a == "--trace"))
    } else if let Some(n) = value("--seeds") {
        many(value("--from").unwrap_or(0), n)
    } else {
        usage()
    }
}

fn header() {
    println!(
        "{:>8} {:>5} {:>5} {:>9} {:>6} {:>9} {:>7} {:>8} {:>9} {:>9}  result",
        "seed", "send", "recv", "messages", "deliv", "failed", "corrupt", "retries", "p50(s)", "p99(s)"
    );
}

fn row(seed: u64, scenario: &Scenario, o: &async_flow_sim::Outcome) {
    let r = &o.report;
    println!(
        "{:>8} {:>5} {:>5} {:>9} {:>6} {:>9} {:>7} {:>8} {:>9.1} {:>9.1}  {}",
        seed,
        scenario.senders,
        scenario.receivers,
        r.messages,
        r.delivered,
        r.failed,
        r.corrupted,
        r.retries,
        r.p50_secs,
        r.p99_secs,
        if o.violations.is_empty() { "ok".to_string() } else { format!("{} VIOLATIONS", o.violations.len()) }
    );
}

fn single(seed: u64, trace: bool) -> ExitCode {
    let scenario = Scenario::for_seed(seed);
    println!("seed {seed}: {scenario:?}");
    if trace {
        let mut world = World::new(seed, &scenario, true);
        world.run();
        for line in world.take_trace() {
            println!("{line}");
        }
    }
    let outcome = run(seed, &scenario);
    header();
    row(seed, &scenario, &outcome);
    println!("most attempts for one message: {}", outcome.report.max_attempts_seen);
    for v in &outcome.violations {
        println!("VIOLATION: {v}");
    }
    if outcome.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn many(from: u64, n: u64) -> ExitCode {
    let started = Instant::now();
    let mut failed = Vec::new();
    let (mut messages, mut delivered, mut dead, mut corrupted, mut retries, mut most) = (0, 0, 0, 0, 0, 0);
    let mut p99_worst: f64 = 0.0;
    let show_rows = n <= 50;
    if show_rows {
        header();
    }
    for seed in from..from + n {
        let scenario = Scenario::for_seed(seed);
        let outcome = run(seed, &scenario);
        if show_rows {
            row(seed, &scenario, &outcome);
        }
        let r = &outcome.report;
        messages += r.messages;
        delivered += r.delivered;
        dead += r.failed;
        corrupted += r.corrupted;
        retries += r.retries;
        most = most.max(r.max_attempts_seen);
        p99_worst = p99_worst.max(r.p99_secs);
        if !outcome.violations.is_empty() {
            println!("seed {seed} FAILED: {:?}", outcome.violations);
            println!("  replay: scripts/simulate.sh --seed {seed} --trace");
            failed.push(seed);
        }
    }
    println!(
        "{n} seeds in {:.1}s: {messages} messages, {delivered} delivered, {dead} dead-lettered, {corrupted} corrupted, \
         {retries} retries, most attempts {most}, worst p99 {p99_worst:.0}s virtual",
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        println!("all invariants held");
        ExitCode::SUCCESS
    } else {
        println!("{} seeds violated invariants: {failed:?}", failed.len());
        ExitCode::FAILURE
    }
}

/// The README's demo: two senders, three receivers, 10% of messages lost,
/// one receiver trap, one broker upgrade mid-flight.
fn demo() {
    let scenario = Scenario {
        senders: 2,
        senders_without_endpoint: vec![],
        receivers: 3,
        messages: 6,
        enqueue_window_secs: 20,
        window: 10,
        cancels: 0,
        faults: FaultPlan {
            drop: 0.10,
            max_delay_secs: 3,
            receiver_trap: 0.2,
            max_receiver_traps: 1,
            broker_upgrades_at_secs: vec![120],
            ..FaultPlan::none()
        },
    };
    let seed = DEMO_SEED;
    println!("async-flow demo: 2 senders, 3 receivers, 10% of messages lost, one receiver trap, one broker upgrade");
    println!("(deterministic simulation, virtual time; seed {seed})\n");
    let mut world = World::new(seed, &scenario, true);
    world.run();
    for line in world.take_trace() {
        println!("{line}");
    }
    let report = world.check();
    let events = world.net.borrow().broker_events.clone();
    println!("\nfinal status");
    println!(
        "{:<28} {:<10} {:<12} {:<10} {:>8} {:>14}",
        "msg_id", "sender", "target", "outcome", "attempts", "delivered after"
    );
    let mut attempts: BTreeMap<_, u32> = BTreeMap::new();
    let mut outcome: BTreeMap<_, (String, Option<f64>)> = BTreeMap::new();
    let mut enqueued = BTreeMap::new();
    for (at, e) in &events {
        let id = e.msg_id();
        match e {
            Event::Enqueued { .. } => {
                enqueued.insert(id, *at);
            }
            Event::NewSent { attempt, .. } => {
                attempts.insert(id, *attempt);
            }
            Event::Delivered { .. } => {
                let after = (*at - enqueued[&id]) as f64 / 1e9;
                outcome.insert(id, ("Delivered".into(), Some(after)));
            }
            Event::DeadLettered { .. } => {
                outcome.insert(id, ("Failed".into(), None));
            }
            Event::Corrupted { .. } => {
                outcome.insert(id, ("Corrupted".into(), None));
            }
            _ => {}
        }
    }
    for (id, a) in &world.accepted {
        let (state, after) = outcome.get(id).cloned().unwrap_or(("lost".into(), None));
        println!(
            "{:<28} {:<10} {:<12} {:<10} {:>8} {:>14}",
            id.to_string(),
            world.sender_name(a.sender),
            world.receiver_name(a.target),
            state,
            attempts.get(id).copied().unwrap_or(0),
            after.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "-".into())
        );
    }
    println!(
        "\n{} messages, {} delivered, {} retries; every record collected after the 24 h retention; invariants: {}",
        report.messages,
        report.delivered,
        report.retries,
        if world.violations.is_empty() { "all held".to_string() } else { format!("{:?}", world.violations.0) }
    );
}

const DEMO_SEED: u64 = 7;
