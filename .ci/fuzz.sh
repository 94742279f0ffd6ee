#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang 14, -fsanitize=fuzzer,address,undefined; a separate
# CMake project, so the release/asan presets need no clang) and runs each for a bounded time on a
# scratch copy of its seed corpus fuzz/corpus/<target>/ (the committed corpus is not modified).
# Fails on any finding (crash, sanitizer report, leak, timeout, allocation over the limit); the
# reproducer is kept in build/fuzz/artifacts/, the log in build/fuzz/logs/.
#   STOCHGRAD_FUZZ_SECONDS  seconds per target (default 20; e.g. 600 for a long run)
#   STOCHGRAD_FUZZ_JOBS     targets run at the same time (default 2)
#   STOCHGRAD_FUZZ_CXX      compiler (default clang++-14)
# Called by .ci/test.sh after the release and asan presets.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${STOCHGRAD_FUZZ_SECONDS:-20}"
jobs="${STOCHGRAD_FUZZ_JOBS:-2}"
cxx="${STOCHGRAD_FUZZ_CXX:-clang++-14}"
build=build/fuzz
targets=(state_zo state_first_order state_pg replay_log sampler_state pg_batch)

cmake -S fuzz -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=None > /dev/null
cmake --build "$build" -j "$jobs"
mkdir -p "$build/logs" "$build/artifacts"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

run_one() {
  local t="$1"
  mkdir -p "$work/$t"
  cp fuzz/corpus/"$t"/* "$work/$t/"
  "$build/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" "$work/$t" > "$build/logs/$t.log" 2>&1
}

failed=()
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
  pids=()
  batch=("${targets[@]:i:jobs}")
  for t in "${batch[@]}"; do
    run_one "$t" &
    pids+=($!)
  done
  for k in "${!pids[@]}"; do
    t="${batch[$k]}"
    if wait "${pids[$k]}"; then
      echo "stochgrad fuzz: $t: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$build/logs/$t.log" | grep -o '[0-9]*$') runs in ${secs} s, no finding"
    else
      failed+=("$t")
      echo "stochgrad fuzz: $t FAILED (log $build/logs/$t.log):" >&2
      tail -n 40 "$build/logs/$t.log" >&2
    fi
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "stochgrad fuzz: findings in ${failed[*]} (reproducers in $build/artifacts/)" >&2
  exit 1
fi
echo "stochgrad fuzz: all ${#targets[@]} targets ran ${secs} s each without a finding"
