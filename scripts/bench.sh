#!/usr/bin/env bash
# Benchmarks of the broker core, natively (see BENCHMARKS.md).
#
#   scripts/bench.sh            everything: wall-clock ratios, then callgrind instruction counts
#   BENCH_QUICK=1 scripts/bench.sh      a smoke run at 1/100 of the sizes (the targets mean little then)
#   BENCH_CALLGRIND=0 scripts/bench.sh  skip the callgrind part
#   BENCH_CALLGRIND_1M=1 scripts/bench.sh   also count instructions at 1M pending (adds ~15 minutes)
#
# Ends with one line per target: `target <name>: measured <x> goal <y> met|not met`.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/release/async-flow-bench"
out_dir="$target_dir/bench"
mkdir -p "$out_dir"
log="$out_dir/bench.log"

echo "== machine"
echo "nproc: $(nproc)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "rustc: $(rustc --version)"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"

echo "== build (release profile of the workspace: lto, opt-level s, codegen-units 1)"
cargo build --release -p async-flow-bench

args=(all)
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
  args+=(--quick)
fi
"$bin" "${args[@]}" | tee "$log"

callgrind_lines=()
if [[ "${BENCH_CALLGRIND:-1}" == 1 ]]; then
  if ! command -v valgrind >/dev/null; then
    echo "== installing valgrind"
    if [[ "$(id -u)" == 0 ]]; then
      apt-get update -qq && apt-get install -y -qq valgrind
    else
      sudo apt-get update -qq && sudo apt-get install -y -qq valgrind
    fi
  fi
  echo "== callgrind: instructions (Ir) of the native release build, measured region only"
  scenarios=(
    lifecycle-broker-100B lifecycle-floor-100B
    lifecycle-broker-1KiB lifecycle-floor-1KiB
    lifecycle-broker-64KiB lifecycle-floor-64KiB
    scaling-1k scaling-100k
    timer-idle-broker-100k timer-idle-naive-100k
  )
  if [[ "${BENCH_CALLGRIND_1M:-0}" == 1 ]]; then
    scenarios+=(scaling-1M timer-idle-broker-1M timer-idle-naive-1M)
  fi
  declare -A per_op
  for s in "${scenarios[@]}"; do
    file="$out_dir/callgrind.$s.out"
    ops=$(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$file" "$bin" callgrind "$s" 2>/dev/null \
      | awk '/^callgrind-ops/ {print $2}')
    total=$(awk '/^totals:/ {print $2}' "$file")
    per_op[$s]=$((total / ops))
    line="callgrind $s: ${per_op[$s]} Ir/op ($total Ir over $ops ops)"
    echo "$line"
    callgrind_lines+=("$line")
  done
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
  for size in 100B 1KiB 64KiB; do
    line="callgrind lifecycle $size: broker/floor $(ratio "${per_op[lifecycle-broker-$size]}" "${per_op[lifecycle-floor-$size]}")x"
    echo "$line"
    callgrind_lines+=("$line")
  done
  line="callgrind scaling: per message at 100k/1k pending $(ratio "${per_op[scaling-100k]}" "${per_op[scaling-1k]}")x"
  echo "$line"
  callgrind_lines+=("$line")
  line="callgrind idle timer run at 100k pending: naive/broker $(ratio "${per_op[timer-idle-naive-100k]}" "${per_op[timer-idle-broker-100k]}")x"
  echo "$line"
  callgrind_lines+=("$line")
  if [[ "${BENCH_CALLGRIND_1M:-0}" == 1 ]]; then
    line="callgrind scaling: per message at 1M/1k pending $(ratio "${per_op[scaling-1M]}" "${per_op[scaling-1k]}")x"
    echo "$line"
    callgrind_lines+=("$line")
  fi
fi

echo "== results (full log: $log)"
for line in "${callgrind_lines[@]}"; do
  echo "$line"
done
grep '^target ' "$log"
