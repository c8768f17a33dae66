# Shell helpers for the server tests: start `tessera serve` on free ports, wait until it listens, stop it,
# and check HTTP answers with curl. Sourced by tests/server/test_*.sh.

bin=${TESSERA_BINARY:?TESSERA_BINARY must name the tessera binary}
src=${TESSERA_SOURCE_DIR:?TESSERA_SOURCE_DIR must name the source tree}
tmp=$(mktemp -d)
server_pid=""
fails=0

stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    local code=0
    wait "$server_pid" 2>/dev/null || code=$?
    if [ "$code" -ne 0 ]; then
      # a sanitizer report or a crash shows here
      echo "FAIL: the server exited with $code; its log ends:"; tail -n 60 "$tmp/server.log"
      fails=$((fails + 1))
    fi
  fi
  server_pid=""
}
trap 'stop_server; rm -rf "$tmp"' EXIT

# start_server ARGS... : starts the server with --port 0 --metrics-port 0; sets PORT, MPORT, BASE, MBASE.
start_server() {
  : > "$tmp/server.log"
  # TESSERA_TEST_SERVE_ARGS adds options to every server the tests start (e.g. "--device cuda" on a GPU)
  # shellcheck disable=SC2086
  "$bin" serve --port 0 --metrics-port 0 "$@" ${TESSERA_TEST_SERVE_ARGS:-} > "$tmp/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 600); do
    if grep -q "serving on" "$tmp/server.log"; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then echo "FAIL: the server exited:"; cat "$tmp/server.log"; exit 1; fi
    sleep 0.1
  done
  line=$(grep "serving on" "$tmp/server.log") || { echo "FAIL: the server did not start:"; cat "$tmp/server.log"; exit 1; }
  PORT=$(sed -E 's|.*serving on http://[^ ]*:([0-9]+) .*|\1|' <<<"$line")
  MPORT=$(sed -E 's|.*metrics on http://[^ ]*:([0-9]+)/metrics.*|\1|' <<<"$line")
  BASE="http://127.0.0.1:$PORT"
  MBASE="http://127.0.0.1:$MPORT"
}

# req NAME WANT_STATUS CURL_ARGS... : runs curl, leaves the body in $tmp/body and headers in $tmp/headers.
req() {
  local name=$1 want=$2; shift 2
  local status
  status=$(curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --max-time 120 "$@")
  if [ "$status" != "$want" ]; then
    echo "FAIL: $name: status $status, expected $want: $(head -c 600 "$tmp/body")"
    fails=$((fails + 1))
    return 1
  fi
  echo "ok: $name ($status)"
  return 0
}

# check NAME PYTHON_EXPR : evaluates the expression with d = the JSON body (b = raw body text, h = headers,
# P and T = the reference prompt and greedy text when REF_JSON names reference.json).
check() {
  local name=$1 expr=$2
  if ! python3 - "$tmp/body" "$tmp/headers" "$expr" <<'EOF'
import json, os, sys
P = T = None
if os.environ.get("REF_JSON"):
    _ref = json.load(open(os.environ["REF_JSON"]))["greedy_48"][0]
    P, T = _ref["prompt"], _ref["text"]  # the reference prompt and its greedy text (prompt included)
b = open(sys.argv[1], encoding="utf-8", errors="replace").read()
h = open(sys.argv[2], encoding="utf-8", errors="replace").read().lower()
try:
    d = json.loads(b)
except ValueError:
    d = None
ok = eval(sys.argv[3])
if not ok:
    print("  body:", b[:800])
sys.exit(0 if ok else 1)
EOF
  then
    echo "FAIL: $name: $expr"
    fails=$((fails + 1))
  else
    echo "ok:   $name"
  fi
}

finish() {
  stop_server
  if [ "$fails" -ne 0 ]; then
    echo "$fails failure(s)"
    echo "--- server log ---"
    tail -n 40 "$tmp/server.log"
    exit 1
  fi
  echo "all passed"
}
