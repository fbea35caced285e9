//! # async-flow simulation
//!
//! A deterministic simulation of a subnet: the real broker (its driver and
//! core) and the real client-lib receiver and sender cores on one virtual
//! clock, under a seeded fault plan. After each run it checks the invariants
//! of DESIGN.md. The same seed always gives the same run.

pub mod plan;
pub mod report;
pub mod rng;
pub mod world;

pub use plan::{FaultPlan, Scenario};
pub use report::{Report, Violations};
pub use world::World;

/// The result of one seed.
pub struct Outcome {
    pub seed: u64,
    pub report: Report,
    pub violations: Vec<String>,
}

/// Runs one seed of `scenario` to quiescence and checks the invariants.
pub fn run(seed: u64, scenario: &Scenario) -> Outcome {
    let mut world = World::new(seed, scenario, false);
    world.run();
    let report = world.check();
    Outcome { seed, report, violations: std::mem::take(&mut world.violations.0) }
}

#[cfg(test)]
mod tests;
