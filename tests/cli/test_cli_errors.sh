#!/usr/bin/env bash
# The CLI exits non-zero with a readable message on bad models and bad arguments, and never crashes
# (exit status >= 128 would mean a signal).
set -u
bin=${TESSERA_BINARY:?}
shared=${TESSERA_SHARED_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

expect() { # expect STATUS FRAGMENT -- command...
  local want=$1 frag=$2; shift 3
  local out status
  out=$("$@" 2>&1); status=$?
  if [ "$status" -ne "$want" ]; then echo "FAIL: '$*' exited $status, expected $want: $out"; fails=$((fails+1)); return; fi
  if ! grep -qF -- "$frag" <<<"$out"; then echo "FAIL: '$*' output lacks '$frag': $out"; fails=$((fails+1)); return; fi
  echo "ok: $*"
}

mkdir "$tmp/broken"
cp "$shared/testdata/qwen3-small/config.json" "$tmp/broken/"
head -c 100000 "$shared/testdata/qwen3-small/model.safetensors" > "$tmp/broken/model.safetensors"
expect 1 "out of bounds" -- "$bin" logits --model "$tmp/broken" --ids 1,2 --out "$tmp/x"
expect 1 "no such file" -- "$bin" run --model "$tmp/nothing" --prompt-ids 1
expect 2 "--prompt-ids must be" -- "$bin" run --model "$shared/testdata/qwen3-small" --prompt-ids "1,x"
expect 2 "unknown option" -- "$bin" run --model "$shared/testdata/qwen3-small" --prompt-idz 1
expect 2 "unknown command" -- "$bin" frobnicate
expect 2 "unknown quantization" -- "$bin" run --model "$shared/testdata/qwen3-small" --prompt-ids 1 --quant int3
expect 1 "outside the vocabulary" -- "$bin" logits --model "$shared/testdata/qwen3-small" --ids 1,999999 --out "$tmp/x"
expect 0 "" -- "$bin" logits --model "$shared/testdata/qwen3-small" --ids 1,2,3 --out "$tmp/x" --all-positions
size=$(stat -c %s "$tmp/x")
if [ "$size" -ne $((3 * 2048 * 4)) ]; then echo "FAIL: --all-positions wrote $size bytes"; fails=$((fails+1)); fi
[ "$fails" -eq 0 ] || { echo "$fails failures"; exit 1; }
