use super::*;

#[test]
fn should_deliver_everything_exactly_once_without_faults() {
    let scenario = Scenario {
        senders: 2,
        senders_without_endpoint: vec![],
        receivers: 3,
        messages: 30,
        enqueue_window_secs: 60,
        window: 2,
        cancels: 0,
        faults: FaultPlan::none(),
    };
    let outcome = run(1, &scenario);
    assert!(outcome.violations.is_empty(), "{:#?}", outcome.violations);
    assert_eq!(outcome.report.messages, 30);
    assert_eq!(outcome.report.delivered, 30);
    assert_eq!(outcome.report.retries, 0);
}

#[test]
fn should_keep_every_invariant_under_faults_for_the_ci_seeds() {
    let seeds: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let mut failures = Vec::new();
    let mut faulty_runs = 0;
    for seed in 0..seeds {
        let scenario = Scenario::for_seed(seed);
        let outcome = run(seed, &scenario);
        faulty_runs += usize::from(outcome.report.retries > 0);
        if !outcome.violations.is_empty() {
            failures
                .push(format!("seed {seed}: {:?}\n  replay: scripts/simulate.sh --seed {seed}", outcome.violations));
        }
    }
    assert!(failures.is_empty(), "{} of {seeds} seeds failed:\n{}", failures.len(), failures.join("\n"));
    assert!(faulty_runs as u64 > seeds / 2, "faults were actually injected ({faulty_runs} runs with retries)");
}

#[test]
fn should_print_the_same_run_for_the_same_seed() {
    let scenario = Scenario::for_seed(42);
    let trace = |seed| {
        let mut world = World::new(seed, &scenario, true);
        world.run();
        world.take_trace()
    };
    let first = trace(42);
    assert!(first.len() > 20);
    assert_eq!(first, trace(42));
    assert_ne!(first, trace(43));
}
