#!/usr/bin/env bash
# The demo: the life of a few messages through the real broker and client
# cores, in a simulated subnet that loses 10% of messages, traps a receiver
# once and upgrades the broker mid-flight. Deterministic: virtual time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --release -q -p async-flow-sim
exec target/release/simulate --demo
