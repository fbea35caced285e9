//! Native benchmarks of the async-flow broker core (`async-flow-bench`).
//!
//! The broker's pure core runs over ic-stable-structures' `VectorMemory`
//! (what `DefaultMemoryImpl` is off the IC), driven through the four steps of
//! a message's life. It is compared with a floor (the least stable-structure
//! work a durable broker cannot avoid, [`floor`]) and with a naive design whose
//! timer scans every pending message ([`naive`]). `scripts/bench.sh` runs it
//! all and prints one line per target; `BENCHMARKS.md` has the results.

pub mod callgrind;
pub mod callgrind_scenarios;
pub mod fixtures;
pub mod floor;
pub mod naive;
pub mod scenarios;
pub mod stable_usage;
pub mod timing;

#[cfg(test)]
mod tests;
