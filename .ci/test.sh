#!/usr/bin/env bash
# The README's test command: installs missing packages, then builds and runs the whole default
# test suite twice: a Release build (-Werror, -march=native) and an ASan+UBSan build, then runs
# the libFuzzer targets for a bounded time (.ci/fuzz.sh; STOCHGRAD_FUZZ_SECONDS, default 20 s each).
# Long statistical runs are excluded here; run them with `ctest --preset long` after this.
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/deps.sh
cmake --workflow --preset release
cmake --workflow --preset asan
.ci/fuzz.sh
echo "stochgrad: all tests passed (release + asan/ubsan + fuzz)"
