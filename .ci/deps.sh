#!/usr/bin/env bash
# Installs what stochgrad's build, tests and harness need on Debian 12 (bookworm), if missing.
# Sourced by .ci/test.sh and .ci/demo.sh. Runs apt-get as root, or through sudo.
# doxygen builds the API reference (test docs_api). zlib1g-dev and dataset-fashion-mnist give the
# shoot-out its Fashion-MNIST problems (skipped, with the reason, without them). libtorch-dev (1.13,
# CPU) enables the optional component stochgrad::torch and its tests (label torch); libopenmpi-dev +
# openmpi-bin (Open MPI 4.1) the optional component stochgrad::mpi (label mpi).
sg_packages=(cmake ninja-build g++ pkg-config libeigen3-dev libxsimd-dev catch2 libbenchmark-dev
             libfmt-dev nlohmann-json3-dev dieharder libtorch-dev
             zlib1g-dev dataset-fashion-mnist doxygen libopenmpi-dev openmpi-bin)
# chromium renders the shoot-out report in its browser test (smoke_shootout_report; SKIPPED without it).
sg_packages+=(chromium)
# clang-14 and libclang-rt-14-dev build the libFuzzer targets of fuzz/ (.ci/fuzz.sh).
sg_packages+=(clang-14 libclang-rt-14-dev)
# g++-aarch64-linux-gnu and qemu-user cross-build the noise known-answer test for ARM NEON and run it
# under emulation (test_isa_kat_neon; SKIPPED without them).
sg_packages+=(g++-aarch64-linux-gnu qemu-user)
sg_missing=()
for p in "${sg_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || sg_missing+=("$p")
done
if [ ${#sg_missing[@]} -gt 0 ]; then
  echo "stochgrad: installing ${sg_missing[*]}"
  if [ "$(id -u)" = 0 ]; then sg_sudo=(); elif command -v sudo >/dev/null; then sg_sudo=(sudo); else
    echo "stochgrad: missing packages ${sg_missing[*]}; run as root or install them" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  "${sg_sudo[@]}" apt-get update
  "${sg_sudo[@]}" apt-get install -y --no-install-recommends "${sg_missing[@]}"
fi
