#!/usr/bin/env bash
# The whole test suite: a Release build, then the same tests under AddressSanitizer and
# UndefinedBehaviorSanitizer, then the NEON kernels cross-compiled for aarch64 under qemu (where the
# cross toolchain is installed). Assumes scripts/setup.sh --test has run.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

echo "== release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${TESSERA_CUDA_ARCHITECTURES:+-DCMAKE_CUDA_ARCHITECTURES=$TESSERA_CUDA_ARCHITECTURES} >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== sanitizer build (ASan + UBSan) and tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTESSERA_SANITIZE=ON -DTESSERA_CUDA=OFF >/dev/null
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE no_sanitizer

if [ -x scripts/test-neon.sh ] && command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null; then
  echo "== NEON kernels under qemu-aarch64"
  scripts/test-neon.sh
fi
if command -v clang >/dev/null; then
  echo "== fuzz smoke (each libFuzzer target for a few seconds)"
  scripts/fuzz.sh 8
fi
echo "all tests passed"
