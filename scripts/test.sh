#!/usr/bin/env bash
# The one test command: formatting, lints, every test, the wasm builds and
# their exports, and the simulation over many seeds with faults on.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
phase() { echo "== $1 (at $((SECONDS - started)) s)"; }
source scripts/lib.sh
ensure_wasm_target
rustup component add rustfmt clippy >/dev/null 2>&1 || true

phase "cargo fmt"
cargo fmt --all -- --check

phase "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

phase "wasm builds"
scripts/build.sh

phase "tests"
export ASYNC_FLOW_REQUIRE_WASM=1
if [ "$(test_runner)" = nextest ]; then
  cargo nextest run --locked --workspace --no-fail-fast
else
  cargo test --locked --workspace --no-fail-fast
fi
# Doc tests (nextest does not run them): every public client-lib item has an example.
cargo test --locked --workspace --doc

# The replica tests need a PocketIC server binary, which is not downloadable here.
if [ -n "${POCKET_IC_BIN:-}" ]; then
  echo "== PocketIC tests (POCKET_IC_BIN=$POCKET_IC_BIN)"
  cargo test --locked -p async-flow-integration --features pocket-ic -- --test-threads 2
else
  echo "== PocketIC tests SKIPPED: POCKET_IC_BIN is not set (the simulation covers behaviour here)"
fi
echo "scripts/test.sh passed in $((SECONDS - started)) s"
