#!/usr/bin/env bash
# Builds the release wasm of every canister into target/canisters/<name>.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_wasm_target

# canister name → crate
canisters=(
  "broker:async_flow_broker:async-flow-broker"
  "sender:async_flow_example_sender:async-flow-example-sender"
  "receiver:async_flow_example_receiver:async-flow-example-receiver"
)
packages=()
for entry in "${canisters[@]}"; do
  packages+=(-p "${entry##*:}")
done
cargo build --locked --release --target wasm32-unknown-unknown "${packages[@]}"
mkdir -p target/canisters
for entry in "${canisters[@]}"; do
  name=${entry%%:*}
  rest=${entry#*:}
  lib=${rest%%:*}
  cp "target/wasm32-unknown-unknown/release/${lib}.wasm" "target/canisters/${name}.wasm"
  echo "built target/canisters/${name}.wasm ($(wc -c < "target/canisters/${name}.wasm") bytes)"
done
