#!/usr/bin/env bash
# The CLI under valgrind memcheck: a generation from token ids, one from text through the tokenizer and
# chat template, and a model that fails to load, each with no invalid access and no leaked block
# (definitely or indirectly lost). Still-reachable memory (process-wide caches) is not a leak.
# Needs a plain build: valgrind cannot run a binary built with AddressSanitizer.
# ctest-labels: no_sanitizer
set -u
bin=${TESSERA_BINARY:?}
shared=${TESSERA_SHARED_DIR:?}
if ! command -v valgrind >/dev/null; then
  echo "SKIP: valgrind is not installed (scripts/setup.sh --test installs it)"
  exit 77
fi
if nm -an "$bin" 2>/dev/null | grep -q __asan_init; then
  echo "SKIP: $bin is built with AddressSanitizer; valgrind needs a plain build"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# memcheck STATUS NAME -- command...: runs the command under valgrind, expects its exit status and a
# clean memcheck report (valgrind's own error exit code is 99).
memcheck() {
  local want=$1 name=$2; shift 3
  local log="$tmp/$name.valgrind" status
  valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --track-origins=yes --log-file="$log" "$@" >"$tmp/$name.out" 2>&1
  status=$?
  if [ "$status" -ne "$want" ] || [ -s "$log" ]; then
    echo "FAIL: $name: exit status $status (expected $want): $*"
    head -60 "$log"
    tail -5 "$tmp/$name.out"
    fails=$((fails + 1))
  else
    echo "ok: $name ($(wc -c <"$tmp/$name.out") bytes of output)"
  fi
}

memcheck 0 run-ids -- "$bin" run --model "$shared/testdata/qwen3-small" --prompt-ids 1,2,3 --max-tokens 4 --threads 2
memcheck 0 run-moe -- "$bin" run --model "$shared/testdata/qwen3moe-small" --prompt-ids 5,6 --max-tokens 3 --threads 2 \
  --temperature 0.8 --top-k 5 --seed 1
memcheck 0 run-gpt2 -- "$bin" run --model "$shared/testdata/dialogpt-tiny" --prompt-ids 10,20 --max-tokens 3 --threads 1
tiny_code="$shared/models/tiny-code/model"
if [ -d "$tiny_code" ]; then
  memcheck 0 run-text -- "$bin" run --model "$tiny_code" --prompt "def add(a, b):" --max-tokens 4 --threads 2
fi

mkdir "$tmp/broken"
cp "$shared/testdata/qwen3-small/config.json" "$tmp/broken/"
head -c 100000 "$shared/testdata/qwen3-small/model.safetensors" >"$tmp/broken/model.safetensors"
memcheck 1 truncated-model -- "$bin" run --model "$tmp/broken" --prompt-ids 1 --max-tokens 2

[ "$fails" -eq 0 ] || { echo "$fails failures"; exit 1; }
echo "valgrind: no memory errors and no leaks"
