#!/usr/bin/env bash
# Cross-compiles the CPU kernels and their tests for aarch64 (the NEON + dot-product table) and runs
# them under qemu-aarch64: the NEON table must be the one selected and must match the C reference;
# a second run hides NEON and checks the generic fallback. Needs (Debian): gcc-aarch64-linux-gnu
# qemu-user. Usage: scripts/test-neon.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-neon}
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
  if ! command -v "$tool" >/dev/null; then
    echo "test-neon: $tool not found; install gcc-aarch64-linux-gnu and qemu-user" >&2
    exit 1
  fi
done
cmake -S "$root" -B "$build" -DTESSERA_KERNELS_ONLY=ON -DTESSERA_CUDA=OFF \
  -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target backend_test_kernels backend_test_kernels_threadpool
# Every kernel test through ctest (CMake runs them with qemu-aarch64), then the selection checks.
ctest --test-dir "$build" --output-on-failure
run() {
  local log
  log=$(env "$@" qemu-aarch64 "$build/backend_test_kernels" 2>&1) || {
    echo "$log"
    echo "test-neon: kernel tests failed under qemu ($*)" >&2
    exit 1
  }
  echo "$log" | grep -E "best table|tests|PASSED|FAILED" || true
  echo "$log"
}
out=$(run TESSERA_HIDE_FEATURES=)
echo "$out" | grep -q "best table: neon" || { echo "$out"; echo "test-neon: the neon table was not selected" >&2; exit 1; }
echo "$out" | tail -3
out=$(run TESSERA_HIDE_FEATURES=neon)
echo "$out" | grep -q "best table: generic" || { echo "$out"; echo "test-neon: hiding neon did not fall back to generic" >&2; exit 1; }
echo "$out" | tail -3
echo "test-neon: NEON kernels match the reference under qemu-aarch64"
