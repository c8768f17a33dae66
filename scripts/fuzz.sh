#!/usr/bin/env bash
# Runs every libFuzzer target (fuzz/fuzz_<name>.c) for SECONDS each, one after the other:
#   scripts/fuzz.sh [SECONDS] [TARGET...]        (default 60 seconds, every target)
# Builds them first with clang in build-fuzz (TESSERA_FUZZ=ON: ASan, UBSan, coverage). Each target starts
# from its seeds (fuzz/corpus/<name>) and its regressions (fuzz/regressions/<name>) and keeps what it
# learns in fuzz/out/<name>/corpus (ignored by git), so that repeated runs go deeper. A crash, leak, UB
# report, timeout or out-of-memory leaves the input in fuzz/out/<name>/ and makes the script fail; copy
# it to fuzz/regressions/<name>/ once fixed, so that every build replays it (ctest -L fuzz).
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_NO_BUILD=1 to use an existing build,
# FUZZ_ARGS for extra libFuzzer flags, FUZZ_SUMMARY for the summary table (executions per target;
# default fuzz/out/summary.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
build=${FUZZ_BUILD_DIR:-build-fuzz}

if ! command -v clang >/dev/null; then
  echo "fuzz: clang is not installed (scripts/setup.sh --test installs it)" >&2
  exit 77
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    targets+=("${name#fuzz_}")
  done
fi

if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
  CC=clang cmake -S . -B "$build" -DTESSERA_FUZZ=ON -DTESSERA_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target fuzz_all
fi

# The sanitizers stop at the first report so that libFuzzer keeps the input; symbolized stacks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

mkdir -p fuzz/out
summary=${FUZZ_SUMMARY:-fuzz/out/summary.txt}
printf "%-20s %8s %12s %10s %8s  %s\n" target seconds executions exec/s corpus result > "$summary"
failed=0
for t in "${targets[@]}"; do
  src=fuzz/fuzz_$t.c
  bin=$build/fuzz_$t
  if [ ! -f "$src" ]; then
    echo "fuzz: no target $t ($src)" >&2
    exit 2
  fi
  if [ ! -x "$bin" ]; then
    # cmake leaves out a target whose parser is not in the tree yet ("fuzz-requires:" in its source).
    echo "fuzz: $t skipped: $bin was not built ($(grep -o 'fuzz-requires: [^ ]*' "$src" | tr '\n' ' '))"
    printf "%-20s %8s %12s %10s %8s  %s\n" "$t" - - - - "not built" >> "$summary"
    continue
  fi
  max_len=$(sed -n 's|.*fuzz-max-len: \([0-9]*\).*|\1|p' "$src" | head -1)
  dict=$(sed -n 's|.*fuzz-dict: \([^ ]*\).*|\1|p' "$src" | head -1)
  out=fuzz/out/$t
  mkdir -p "$out/corpus"
  args=(-max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10
        -print_final_stats=1 -artifact_prefix="$out/")
  [ -n "$max_len" ] && args+=(-max_len="$max_len")
  [ -n "$dict" ] && args+=(-dict="fuzz/dict/$dict")
  seeds=(fuzz/corpus/"$t")
  [ -d fuzz/regressions/"$t" ] && seeds+=(fuzz/regressions/"$t")
  echo "== fuzz_$t for ${seconds}s"
  # shellcheck disable=SC2086
  set +e
  "$bin" "${args[@]}" ${FUZZ_ARGS:-} "$out/corpus" "${seeds[@]}" > "$out/log.txt" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log.txt" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/log.txt" | tail -1)
  files=$(find "$out/corpus" -type f | wc -l)
  if [ $rc -eq 0 ]; then
    result=ok
  else
    result="FAILED (rc $rc, see $out/log.txt)"
    failed=1
    grep -E "^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)" "$out/log.txt" | head -8 >&2 || true
  fi
  printf "%-20s %8s %12s %10s %8s  %s\n" "$t" "$seconds" "${execs:-?}" "${rate:-?}" "$files" "$result" >> "$summary"
  tail -1 "$summary"
done
echo
cat "$summary"
exit $failed
