//! `async-flow-bench all [--quick]`: every benchmark, then one line per target.
//! `async-flow-bench callgrind <scenario>`: one scenario, for callgrind.
//! `async-flow-bench list`: the callgrind scenarios.

use async_flow_bench::callgrind::running_on_valgrind;
use async_flow_bench::callgrind_scenarios::{self, SCENARIOS};
use async_flow_bench::scenarios::{self, BACKLOG_PAYLOAD};
use async_flow_bench::timing::human;
use std::process::ExitCode;

const LIFECYCLE_GOAL: f64 = 3.0;
const SCALING_GOAL: f64 = 1.5;
const IDLE_TIMER_GOAL: f64 = 1000.0;
const OVERHEAD_GOAL: f64 = 300.0;

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "not met"
    }
}

fn all(quick: bool) {
    // --quick: a smoke run at 1/100 of the sizes (the targets mean little then).
    let (scale, rounds) = if quick { (0.01, 3) } else { (1.0, 7) };
    println!("== 1. lifecycle cost per message, broker vs floor");
    let lifecycle = scenarios::lifecycle(rounds, scale);
    println!("== 2-4. scaling, timer runs and stable memory, one broker grown to 1M pending");
    let big = scenarios::big(rounds.min(5), scale);
    println!("== 4. back to the baseline after GC");
    let gc = scenarios::gc_baseline(((100_000.0 * scale) as usize).max(100));

    let l100 = &lifecycle[0];
    let first = &big.points[0];
    let last = big.points.last().expect("points");
    let scaling = last.per_msg_ns / first.per_msg_ns;
    let idle = big.idle_naive_ns / big.idle_broker_ns;
    let (in_use, pages) = big.overhead_per_pending();
    let worst = in_use.max(pages);
    let in_use_back = gc.after_gc.in_use.max(gc.after_second_gc.in_use).saturating_sub(gc.baseline.in_use);
    // Pages never shrink; a second identical cycle must not need new ones.
    let refill_growth = gc.after_second_gc.pages as i64 - gc.after_gc.pages as i64;
    let baseline_met = gc.empty_after_gc && in_use_back == 0 && refill_growth <= 0;

    println!("== summary");
    for l in &lifecycle {
        println!("lifecycle {}: broker/floor {:.2}x", l.label, l.ratio());
    }
    println!(
        "timer with {} due at {} pending: naive/broker {:.1}x",
        big.due_effects,
        last.pending,
        big.due_naive_ns / big.due_broker_ns
    );
    println!("backlog build: {}/enqueue", human(big.build_ns_per_msg));
    println!(
        "target lifecycle-100B-vs-floor: measured {:.2}x (broker {}/msg, floor {}/msg) goal <= {LIFECYCLE_GOAL}x {}",
        l100.ratio(),
        human(l100.broker_ns),
        human(l100.floor_ns),
        verdict(l100.ratio() <= LIFECYCLE_GOAL)
    );
    println!(
        "target per-message-cost-{}-vs-{}-pending: measured {scaling:.2}x ({} vs {}/msg) goal <= {SCALING_GOAL}x {}",
        last.label,
        first.label,
        human(last.per_msg_ns),
        human(first.per_msg_ns),
        verdict(scaling <= SCALING_GOAL)
    );
    println!(
        "target idle-timer-run-at-{}-pending-vs-naive-scan: measured {idle:.0}x cheaper ({} vs {}) goal >= {IDLE_TIMER_GOAL}x {}",
        last.label,
        human(big.idle_broker_ns),
        human(big.idle_naive_ns),
        verdict(idle >= IDLE_TIMER_GOAL)
    );
    println!(
        "target stable-bytes-per-pending-message-beyond-{BACKLOG_PAYLOAD}B-payload: measured {worst:.0} B \
         ({in_use:.0} B in use, {pages:.0} B of pages, at {} pending) goal <= {OVERHEAD_GOAL} B {}",
        last.pending,
        verdict(worst <= OVERHEAD_GOAL)
    );
    println!(
        "target back-to-baseline-after-gc: measured {in_use_back} B in use above baseline, broker empty {}, \
         second cycle of {} grew {refill_growth} pages goal 0 B, empty, 0 pages {}",
        gc.empty_after_gc,
        gc.n,
        verdict(baseline_met)
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["all"] => all(false),
        ["all", "--quick"] => all(true),
        ["list"] => SCENARIOS.iter().for_each(|s| println!("{s}")),
        ["callgrind", name] => {
            if !running_on_valgrind() {
                eprintln!("note: not running under valgrind; the scenario runs but nothing is counted");
            }
            match callgrind_scenarios::run(name) {
                Some(ops) => println!("callgrind-ops {ops}"),
                None => {
                    eprintln!("unknown scenario {name}; see `list`");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => {
            eprintln!("usage: async-flow-bench all [--quick] | list | callgrind <scenario>");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
