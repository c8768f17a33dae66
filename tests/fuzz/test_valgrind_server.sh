#!/usr/bin/env bash
# The server smoke test under valgrind memcheck: `tessera serve` with the embedded model answers health,
# a completion, a streamed chat and a KServe generate, a malformed body and an unknown model, then stops
# on SIGTERM with exit status 0, with no invalid access and no leaked block (definitely or indirectly
# lost). Needs a plain build: valgrind cannot run a binary built with AddressSanitizer.
# ctest-labels: no_sanitizer
set -u
bin=${TESSERA_BINARY:?}
if ! command -v valgrind >/dev/null; then
  echo "SKIP: valgrind is not installed (scripts/setup.sh --test installs it)"
  exit 77
fi
if nm -an "$bin" 2>/dev/null | grep -q __asan_init; then
  echo "SKIP: $bin is built with AddressSanitizer; valgrind needs a plain build"
  exit 77
fi
tmp=$(mktemp -d)
log="$tmp/valgrind.log"
valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect \
  --errors-for-leak-kinds=definite,indirect --log-file="$log" \
  "$bin" serve --port 0 --metrics-port 0 --threads 2 --max-running 4 --kv-cache-mb 32 > "$tmp/server.out" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 1200); do
  grep -q "serving on" "$tmp/server.out" && break
  kill -0 $pid 2>/dev/null || { echo "FAIL: the server exited:"; cat "$tmp/server.out" "$log"; exit 1; }
  sleep 0.1
done
port=$(sed -nE 's|.*serving on http://[^ ]*:([0-9]+) .*|\1|p' "$tmp/server.out")
[ -n "$port" ] || { echo "FAIL: the server did not start under valgrind"; cat "$tmp/server.out"; exit 1; }
base="http://127.0.0.1:$port"
fails=0
check() { # check NAME EXPECTED_STATUS curl-args...
  local name=$1 want=$2; shift 2
  local got
  got=$(curl -s -o "$tmp/$name.body" -w '%{http_code}' --max-time 300 "$@")
  if [ "$got" = "$want" ]; then echo "ok: $name ($got)"; else echo "FAIL: $name: $got, expected $want"; fails=$((fails+1)); fi
}
check health 200 "$base/v2/health/ready"
check completion 200 "$base/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model": "tiny-code", "prompt": "def f(x):", "max_tokens": 8, "temperature": 0}'
check chat-stream 200 "$base/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "tiny-code", "messages": [{"role": "user", "content": "sort a list"}], "max_tokens": 8, "stream": true}'
check generate 200 "$base/v2/models/tiny-code/generate" -d '{"text_input": "import os", "parameters": {"max_tokens": 6}}'
check malformed 400 "$base/v1/completions" -H 'Content-Type: application/json' -d '{"model": "tiny-code", "prompt": '
check unknown-model 404 "$base/v1/completions" -H 'Content-Type: application/json' -d '{"model": "nope", "prompt": "x"}'
kill -TERM $pid
wait $pid
status=$?
if [ "$status" -ne 0 ] || [ -s "$log" ]; then
  echo "FAIL: the server under valgrind exited $status; memcheck says:"; cat "$log"; fails=$((fails+1))
else
  echo "ok: clean memcheck report and exit status 0"
fi
[ "$fails" -eq 0 ]
