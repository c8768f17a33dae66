#!/usr/bin/env bash
# Brings a fresh Debian machine to a built tessera: system packages (apt-get), then a Release build in
# build/. With --test it also installs what the tests use (clang for fuzzing, valgrind, the aarch64
# cross toolchain and qemu for the NEON kernels, and the PyPI packages in tests/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
  esac
done

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi

packages="build-essential cmake pkg-config libjansson-dev libmicrohttpd-dev libutf8proc-dev libcmocka-dev curl"
if [ "$want_test" -eq 1 ]; then
  packages="$packages clang valgrind python3-pip gcc-aarch64-linux-gnu qemu-user"
fi
missing=""
for p in $packages; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

if [ "$want_test" -eq 1 ]; then
  python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${TESSERA_CUDA_ARCHITECTURES:+-DCMAKE_CUDA_ARCHITECTURES=$TESSERA_CUDA_ARCHITECTURES} >/dev/null
cmake --build build -j "$jobs"
echo "setup: built build/tessera"
