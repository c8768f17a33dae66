#!/usr/bin/env bash
# The GPU machine's suite, run from the repository root with a carried folder .gpu/ that holds bin/ (tessera,
# libtessera_cuda.so(.xz), backend_test_cuda_ops, model_test_reference_cuda built here for sm_90), lib/ (the
# Debian shared libraries the binaries need) and shared/ (the parts of ../shared the tests read): GPU kernel
# and model tests, the server suite on CUDA, GPU benchmarks, and the CPU benchmark with AMX and with AMX hidden.
# Output also goes to $OUT/log.txt. docs/cuda-notes.md has the numbers it produced.
set -u
root=$PWD
export TESSERA_DEFAULT_MODEL="$root/models/tiny-code"
cd .gpu
[ -f bin/libtessera_cuda.so ] || xz -dk bin/libtessera_cuda.so.xz
export LD_LIBRARY_PATH="$PWD/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export TESSERA_SHARED_DIR="$PWD/shared" TESSERA_CUDA_MODULE="$PWD/bin/libtessera_cuda.so" TESSERA_SOURCE_DIR="$root"
export TESSERA_BINARY="$PWD/bin/tessera" TESSERA_BUILD_DIR="$PWD/bin"
out=${OUT:-/tmp}
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
lscpu | grep -E "^Model name|^CPU\(s\)"
echo "=== GPU kernel tests"; timeout 120 bin/backend_test_cuda_ops 2>&1 | grep -E "GPU:|PASSED|FAILED|ERROR" | head
echo "=== GPU model tests (qwen3-tiny-tok and dialogpt-tiny are not carried here)"; timeout 120 bin/model_test_reference_cuda 2>&1 | grep -E "OK|FAILED|ERROR" | head -20
echo "=== server suite on CUDA"
export TESSERA_TEST_SERVE_ARGS="--device cuda --precision fp32"
for t in test_protocol.sh test_concurrency.py test_disconnect.py test_sampling.py test_shutdown.py test_repository.py; do
  case $t in *.sh) cmd=bash;; *) cmd=python3;; esac
  if timeout 150 $cmd "$root/tests/server/$t" > "$out/$t.log" 2>&1; then echo "PASS $t"; else echo "FAIL $t ($?)"; tail -5 "$out/$t.log"; fi
done
grep -h "on cuda" "$out"/test_protocol.sh.log 2>/dev/null | head -2
unset TESSERA_TEST_SERVE_ARGS
B="bin/tessera bench --device cuda --precision bf16"
echo "=== GPU 0.6B q4_0"; timeout 90 $B --synth shared/configs/qwen3-0.6b.json --synth-type q4_0 --prompt-tokens 512 --gen-tokens 128 --runs 3 2>&1 | tail -8
echo "=== GPU 8B q4_0 batch 1"; timeout 120 $B --synth shared/configs/qwen3-8b.json --synth-type q4_0 --prompt-tokens 512 --gen-tokens 128 --runs 3 2>&1 | tail -8
echo "=== GPU 8B q4_0 batch 32 (dense copies)"; timeout 120 $B --synth shared/configs/qwen3-8b.json --synth-type q4_0 --gpu-dense-cache --prompt-tokens 128 --gen-tokens 64 --batch 32 --runs 2 --no-roofline 2>&1 | tail -2
echo "=== GPU 8B TTFT 2048 (dense copies)"; timeout 120 $B --synth shared/configs/qwen3-8b.json --synth-type q4_0 --gpu-dense-cache --prompt-tokens 2048 --gen-tokens 1 --step-tokens 2048 --runs 2 --no-roofline 2>&1 | tail -2
echo "=== CPU 0.6B q4_0, 16 threads, AMX"; timeout 120 bin/tessera bench --synth shared/configs/qwen3-0.6b.json --synth-type q4_0 --threads 16 --prompt-tokens 512 --gen-tokens 64 --runs 3 2>&1 | tail -7
echo "=== CPU 0.6B q4_0, 16 threads, AVX-512 (AMX hidden)"; TESSERA_HIDE_FEATURES=amx timeout 120 bin/tessera bench --synth shared/configs/qwen3-0.6b.json --synth-type q4_0 --threads 16 --prompt-tokens 512 --gen-tokens 64 --runs 3 --no-roofline 2>&1 | tail -2
} 2>&1 | tee "$out/log.txt"
