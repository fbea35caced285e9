#!/usr/bin/env bash
# Runs the deterministic simulation.
#   scripts/simulate.sh --seeds N [--from S]   N seeds, a summary, exit 1 on any invariant violation
#   scripts/simulate.sh --seed S [--trace]     replay one seed (the same seed prints the same run)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release -q -p async-flow-sim
exec target/release/simulate "$@"
