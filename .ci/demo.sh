#!/usr/bin/env bash
# The README's main-job command: installs missing packages, builds the Release preset and runs
# the estimator shoot-out harness on its built-in problems (quick mode). Extra arguments are
# passed to the harness (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target shootout
exec ./build/release/bench/harness/shootout "$@"
