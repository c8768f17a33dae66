#!/bin/bash
# `tessera tokenize` end to end: ids on one line with --ids-only, llama-tokenize style "id -> 'piece'"
# lines otherwise, --no-special, --file, --jsonl, and clear failures (bad UTF-8, missing model, usage).
set -u
BIN=${TESSERA_BINARY:-build/tessera}
SHARED=${TESSERA_SHARED_DIR:-../shared}
QWEN=$SHARED/testdata/qwen3-tiny-tok
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
check() { # name expected actual
    if [ "$2" != "$3" ]; then echo "FAIL $1: expected [$2] got [$3]"; fail=1; else echo "ok $1"; fi
}

check ids-only "151644 872 198 3838 374 220 17 10 17 30 151645" \
    "$("$BIN" tokenize --model "$QWEN" --text $'<|im_start|>user\nWhat is 2+2?<|im_end|>' --ids-only)"
check pieces "  9707 -> 'Hello'
  1879 -> ' world'" "$("$BIN" tokenize --model "$QWEN" --text 'Hello world')"
# with --no-special the marker is text: no id of a special token appears
out=$("$BIN" tokenize --model "$QWEN" --text '<|im_start|>' --ids-only --no-special)
check no-special "27 91 318 4906 91 29" "$out"
printf 'I'"'"'m here' > "$TMP/in.txt"
check file "40 2776 1588" "$("$BIN" tokenize --model "$QWEN" --file "$TMP/in.txt" --ids-only)"
printf '"Hello world"\n"\\u00e9"\n""\n' > "$TMP/in.jsonl"
check jsonl "9707 1879
963" "$("$BIN" tokenize --model "$QWEN" --file "$TMP/in.jsonl" --jsonl)"
check jsonl-lines 3 "$("$BIN" tokenize --model "$QWEN" --file "$TMP/in.jsonl" --jsonl | wc -l)"
check gpt2-dir "15496 995" "$("$BIN" tokenize --model "$SHARED/testdata/dialogpt-tiny" --text 'Hello world' --ids-only)"

printf 'ok\xff' > "$TMP/bad.txt"
err=$("$BIN" tokenize --model "$QWEN" --file "$TMP/bad.txt" --ids-only 2>&1); rc=$?
check bad-utf8-status 1 "$rc"
case "$err" in *"invalid UTF-8 at byte offset 2"*) echo "ok bad-utf8-message";; *) echo "FAIL bad-utf8-message: $err"; fail=1;; esac
err=$("$BIN" tokenize --model "$TMP/nowhere" --text x 2>&1); rc=$?
check missing-model-status 1 "$rc"
case "$err" in *"not found (expected a model directory with tokenizer.json"*) echo "ok missing-model-message";; *) echo "FAIL missing-model-message: $err"; fail=1;; esac
"$BIN" tokenize --model "$QWEN" > /dev/null 2>&1; check usage-status 2 "$?"
"$BIN" tokenize --model "$QWEN" --text a --bogus > /dev/null 2>&1; check unknown-option-status 2 "$?"
out=$("$BIN" tokenize --model "$QWEN" --text 'benchmark text' --bench 2)
case "$out" in *"MB_per_s="*) echo "ok bench";; *) echo "FAIL bench: $out"; fail=1;; esac
exit $fail
