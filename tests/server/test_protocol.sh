#!/usr/bin/env bash
# Every endpoint of `tessera serve` with curl: KServe v2 / Triton (health, metadata, readiness,
# configuration, infer, generate, generate_stream, repository index/load/unload), OpenAI (models,
# completions, chat, streaming), metrics, and the error answers: 413, 400 for malformed JSON and wrong
# types (naming the field), 400 for a prompt longer than the context, 404, 401, 405, 503 + Retry-After.
# Greedy outputs are compared with the reference continuations of the tiny-code model.
# ctest-cost: 50
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/server_lib.sh"
shared=${TESSERA_SHARED_DIR:?}
model="$src/models/tiny-code"
ref="$shared/models/tiny-code/reference.json"

export REF_JSON="$ref"
json_prompt=$(python3 -c 'import json,os; print(json.dumps(json.load(open(os.environ["REF_JSON"]))["greedy_48"][0]["prompt"]))')

start_server --model "$model" --context 512 --max-body-bytes 65536 --kv-cache-mb 32

# ---- KServe v2 / Triton ----
req "live" 200 "$BASE/v2/health/live"
req "ready" 200 "$BASE/v2/health/ready"
req "server metadata" 200 "$BASE/v2" && check "server metadata fields" \
  'd["name"] == "tessera" and d["version"] and "generate" in d["extensions"] and "model_repository" in d["extensions"]'
req "model metadata" 200 "$BASE/v2/models/tiny-code" && check "metadata tensors" \
  'd["name"] == "tiny-code" and d["versions"] == ["1"] and d["platform"] and {"name": "text_input", "datatype": "BYTES", "shape": [-1]} in d["inputs"] and d["outputs"] == [{"name": "text_output", "datatype": "BYTES", "shape": [-1]}]'
req "model metadata by version" 200 "$BASE/v2/models/tiny-code/versions/1" && check "version metadata" 'd["name"] == "tiny-code"'
req "unknown version" 404 "$BASE/v2/models/tiny-code/versions/7" && check "error shape" 'isinstance(d["error"], str)'
req "model ready" 200 "$BASE/v2/models/tiny-code/ready"
req "model ready by version" 200 "$BASE/v2/models/tiny-code/versions/1/ready"
req "model config" 200 "$BASE/v2/models/tiny-code/config" && check "config fields" \
  'd["name"] == "tiny-code" and d["input"][0]["name"] == "text_input" and d["input"][0]["data_type"] == "TYPE_STRING" and d["output"][0]["name"] == "text_output" and d["parameters"]["TESSERA_CONTEXT_LENGTH"]["string_value"] == "512"'

infer_body=$(python3 -c 'import json,sys; print(json.dumps({"id": "req-42", "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": [json.loads(sys.argv[1])]}], "parameters": {"max_tokens": 48, "temperature": 0}}))' "$json_prompt")
req "infer" 200 "$BASE/v2/models/tiny-code/infer" -d "$infer_body" && check "infer output equals the reference (prompt included, as Triton's LLM backends do)" \
  'd["id"] == "req-42" and d["model_name"] == "tiny-code" and d["model_version"] == "1" and d["outputs"][0]["name"] == "text_output" and d["outputs"][0]["datatype"] == "BYTES" and d["outputs"][0]["shape"] == [1] and d["outputs"][0]["data"][0] == T'
infer_tensors=$(python3 -c 'import json,sys; print(json.dumps({"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1, 1], "data": [[json.loads(sys.argv[1])]]}, {"name": "max_tokens", "datatype": "INT32", "shape": [1, 1], "data": [[10]]}, {"name": "exclude_input_in_output", "datatype": "BOOL", "shape": [1], "data": [True]}]}))' "$json_prompt")
req "infer with TensorRT-LLM style input tensors, by version" 200 "$BASE/v2/models/tiny-code/versions/1/infer" -d "$infer_tensors" && check "continuation only, shape kept" \
  'd["outputs"][0]["shape"] == [1, 1] and len(d["outputs"][0]["data"][0]) > 0 and T.startswith(P + d["outputs"][0]["data"][0])'
req "infer: unknown input" 400 "$BASE/v2/models/tiny-code/infer" -d '{"inputs":[{"name":"text_input","datatype":"BYTES","shape":[1],"data":["x"]},{"name":"colour","datatype":"INT32","shape":[1],"data":[1]}]}' \
  && check "names the input" '"colour" in d["error"]'
req "infer: shape and data disagree" 400 "$BASE/v2/models/tiny-code/infer" -d '{"inputs":[{"name":"text_input","datatype":"BYTES","shape":[2],"data":["x"]}]}'
req "infer: missing text_input" 400 "$BASE/v2/models/tiny-code/infer" -d '{"inputs":[]}' && check "says what is missing" '"text_input" in d["error"]'

req "generate" 200 "$BASE/v2/models/tiny-code/generate" -d "{\"text_input\": $json_prompt, \"parameters\": {\"max_tokens\": 48, \"temperature\": 0, \"exclude_input_in_output\": true}}" \
  && check "generate output" 'd["model_name"] == "tiny-code" and d["model_version"] == "1" and P + d["text_output"] == T and d["finish_reason"] == "length"'
req "generate with top-level fields (TensorRT-LLM style)" 200 "$BASE/v2/models/tiny-code/generate" -d "{\"text_input\": $json_prompt, \"max_tokens\": 48, \"bad_words\": \"\", \"stop_words\": \"\"}" \
  && check "prompt included" 'd["text_output"] == T'
req "generate_stream" 200 -N "$BASE/v2/models/tiny-code/generate_stream" -d "{\"text_input\": $json_prompt, \"parameters\": {\"max_tokens\": 48, \"temperature\": 0}}" \
  && check "SSE events joined give the reference" \
  'all(l.startswith("data: ") for l in b.split("\n") if l) and "text/event-stream" in h and P + "".join(json.loads(l[6:])["text_output"] for l in b.split("\n") if l) == T and json.loads([l for l in b.split("\n") if l][-1][6:])["finish_reason"] == "length" and all(json.loads(l[6:])["model_name"] == "tiny-code" for l in b.split("\n") if l)'
req "generate: wrong type names the field" 400 "$BASE/v2/models/tiny-code/generate" -d '{"text_input": "x", "parameters": {"temperature": "hot"}}' \
  && check "field named" '"parameters.temperature" in d["error"]'
req "generate: text_input missing" 400 "$BASE/v2/models/tiny-code/generate" -d '{"parameters": {}}' && check "field named" '"text_input" in d["error"]'
req "generate: malformed JSON" 400 "$BASE/v2/models/tiny-code/generate" -d '{"text_input": "x",' && check "parser position" '"line 1" in d["error"]'
long_prompt=$(python3 -c 'import json; print(json.dumps({"text_input": "def f(x):\n    return x\n" * 200}))')
req "generate: prompt longer than the context" 400 "$BASE/v2/models/tiny-code/generate" -d "$long_prompt" && check "says so" '"context" in d["error"]'
req "generate: unknown model" 404 "$BASE/v2/models/nosuch/generate" -d '{"text_input": "x"}' && check "error shape" '"nosuch" in d["error"]'
req "infer: wrong method" 405 "$BASE/v2/models/tiny-code/infer" && check "Allow header" '"allow: post" in h'
req "metadata: wrong method" 405 -X POST "$BASE/v2/models/tiny-code"
req "unknown path" 404 "$BASE/v2/nothing/here"
req "unknown path outside the APIs" 404 "$BASE/nothing"

python3 -c 'print("{\"text_input\": \"" + "a" * 70000 + "\"}")' > "$tmp/big.json"
req "body too large" 413 "$BASE/v2/models/tiny-code/generate" --data-binary @"$tmp/big.json" && check "KServe error shape" 'isinstance(d["error"], str) and "limit" in d["error"]'

# repository extension
req "repository index" 200 -X POST "$BASE/v2/repository/index" && check "index" 'd == [{"name": "tiny-code", "version": "1", "state": "READY", "reason": ""}]'
req "repository index, ready only" 200 "$BASE/v2/repository/index" -d '{"ready": true}' && check "index" 'len(d) == 1'
req "unload" 200 -X POST "$BASE/v2/repository/models/tiny-code/unload"
req "not ready after unload" 400 "$BASE/v2/models/tiny-code/ready"
req "infer after unload" 404 "$BASE/v2/models/tiny-code/generate" -d '{"text_input": "x"}'
req "index after unload" 200 -X POST "$BASE/v2/repository/index" && check "unavailable" 'd[0]["name"] == "tiny-code" and d[0]["state"] == "UNAVAILABLE" and d[0]["reason"] == "unloaded"'
req "server not ready without models" 503 "$BASE/v2/health/ready"
req "load" 200 -X POST "$BASE/v2/repository/models/tiny-code/load"
req "ready after load" 200 "$BASE/v2/models/tiny-code/ready"
req "load unknown model" 404 -X POST "$BASE/v2/repository/models/nosuch/load"
req "unload unknown model" 404 -X POST "$BASE/v2/repository/models/nosuch/unload"
req "repository: wrong method" 405 "$BASE/v2/repository/index"

# ---- OpenAI ----
req "models" 200 "$BASE/v1/models" && check "list" 'd["object"] == "list" and d["data"][0]["id"] == "tiny-code" and d["data"][0]["object"] == "model"'
req "model" 200 "$BASE/v1/models/tiny-code" && check "one model" 'd["id"] == "tiny-code"'
req "completions" 200 "$BASE/v1/completions" -H 'Content-Type: application/json' \
  -d "{\"model\": \"tiny-code\", \"prompt\": $json_prompt, \"max_tokens\": 48, \"temperature\": 0}" \
  && check "completion equals the reference" \
  'd["object"] == "text_completion" and d["choices"][0]["text"] == T[len(P):] and d["choices"][0]["finish_reason"] == "length" and d["usage"]["completion_tokens"] == 48 and d["usage"]["total_tokens"] == d["usage"]["prompt_tokens"] + 48'
req "completions from token ids, with echo and logprobs" 200 "$BASE/v1/completions" \
  -d '{"model": "tiny-code", "prompt": [1052, 9, 10], "max_tokens": 5, "temperature": 0, "echo": true, "logprobs": 2}' \
  && check "logprobs in the completions format" \
  'len(d["choices"][0]["logprobs"]["tokens"]) == 5 and len(d["choices"][0]["logprobs"]["token_logprobs"]) == 5 and all(len(t) <= 2 for t in d["choices"][0]["logprobs"]["top_logprobs"]) and all(x <= 0 for x in d["choices"][0]["logprobs"]["token_logprobs"]) and d["usage"]["prompt_tokens"] == 3'
req "completions, streamed" 200 -N "$BASE/v1/completions" \
  -d "{\"model\": \"tiny-code\", \"prompt\": $json_prompt, \"max_tokens\": 48, \"temperature\": 0, \"stream\": true, \"stream_options\": {\"include_usage\": true}}" \
  && check "chunks join to the reference and end in [DONE]" \
  '[l for l in b.split("\n") if l][-1] == "data: [DONE]" and "".join(c["text"] for c in (json.loads(l[6:]) for l in b.split("\n") if l.startswith("data: {")) for c in c["choices"]) == T[len(P):] and json.loads([l for l in b.split("\n") if l][-2][6:])["usage"]["completion_tokens"] == 48'
req "chat" 200 "$BASE/v1/chat/completions" \
  -d '{"model": "tiny-code", "messages": [{"role": "system", "content": "You write Python."}, {"role": "user", "content": [{"type": "text", "text": "Sort a list"}]}], "max_tokens": 12, "temperature": 0, "logprobs": true, "top_logprobs": 3}' \
  && check "chat completion" \
  'd["object"] == "chat.completion" and d["choices"][0]["message"]["role"] == "assistant" and isinstance(d["choices"][0]["message"]["content"], str) and d["choices"][0]["finish_reason"] in ("stop", "length") and len(d["choices"][0]["logprobs"]["content"]) >= 1 and len(d["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 3 and d["usage"]["prompt_tokens"] > 5'
req "chat, streamed" 200 -N "$BASE/v1/chat/completions" \
  -d '{"model": "tiny-code", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8, "temperature": 0, "stream": true}' \
  && check "role first, finish_reason last, then [DONE]" \
  '[l for l in b.split("\n") if l][-1] == "data: [DONE]" and json.loads([l for l in b.split("\n") if l][0][6:])["choices"][0]["delta"]["role"] == "assistant" and json.loads([l for l in b.split("\n") if l][-2][6:])["choices"][0]["finish_reason"] in ("stop", "length") and all(json.loads(l[6:])["object"] == "chat.completion.chunk" for l in b.split("\n") if l.startswith("data: {"))'
req "chat with the thinking switch" 200 "$BASE/v1/chat/completions" \
  -d '{"model": "tiny-code", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "chat_template_kwargs": {"enable_thinking": false}, "enable_thinking": false}'
req "completions: wrong type names the field" 400 "$BASE/v1/completions" -d '{"model": "tiny-code", "prompt": "x", "max_tokens": "ten"}' \
  && check "OpenAI error shape" 'd["error"]["param"] == "max_tokens" and d["error"]["type"] == "invalid_request_error" and "max_tokens" in d["error"]["message"] and "code" in d["error"]'
req "completions: nested wrong type" 400 "$BASE/v1/completions" -d '{"model": "tiny-code", "prompt": "x", "stream": true, "stream_options": {"include_usage": 1}}' \
  && check "nested field named" 'd["error"]["param"] == "stream_options.include_usage"'
req "chat: messages of the wrong type" 400 "$BASE/v1/chat/completions" -d '{"model": "tiny-code", "messages": "hello"}' && check "field named" 'd["error"]["param"] == "messages"'
req "chat: a message without a role" 400 "$BASE/v1/chat/completions" -d '{"model": "tiny-code", "messages": [{"content": "hello"}]}' && check "field named" 'd["error"]["param"] == "messages[0].role"'
req "completions: malformed JSON" 400 "$BASE/v1/completions" -d '{"model": "tiny-code", "prompt": ' && check "OpenAI error shape" '"not valid JSON" in d["error"]["message"]'
req "completions: not an object" 400 "$BASE/v1/completions" -d '[1, 2]'
req "completions: token id outside the vocabulary" 400 "$BASE/v1/completions" -d '{"model": "tiny-code", "prompt": [5, 999999]}' && check "field named" 'd["error"]["param"] == "prompt"'
req "completions: prompt longer than the context" 400 "$BASE/v1/completions" -d "$(python3 -c 'import json; print(json.dumps({"model": "tiny-code", "prompt": "def f(x):\n    return x\n" * 200}))')" \
  && check "context_length_exceeded" 'd["error"]["code"] == "context_length_exceeded" and d["error"]["param"] == "prompt"'
req "completions: n too large" 400 "$BASE/v1/completions" -d '{"model": "tiny-code", "prompt": "x", "n": 100}' && check "field named" 'd["error"]["param"] == "n"'
req "completions: unknown model" 404 "$BASE/v1/completions" -d '{"model": "gpt-nothing", "prompt": "x"}' && check "model_not_found" 'd["error"]["code"] == "model_not_found"'
req "completions: unknown fields are ignored" 200 "$BASE/v1/completions" -d '{"model": "tiny-code", "prompt": "x", "max_tokens": 1, "user": "u1", "frobnicate": {"a": 1}}'
req "completions: wrong method" 405 "$BASE/v1/completions" && check "OpenAI error shape" 'd["error"]["type"] == "invalid_request_error"'
req "OpenAI: unknown path" 404 "$BASE/v1/nothing" && check "OpenAI error shape" 'isinstance(d["error"], dict)'
req "OpenAI: body too large" 413 "$BASE/v1/completions" --data-binary @"$tmp/big.json" && check "OpenAI error shape" 'd["error"]["code"] == "request_too_large"'

# ---- metrics ----
req "metrics" 200 "$MBASE/metrics" && check "Triton and LLM metrics" \
  'all(k in b for k in ["nv_inference_request_success{model=\"tiny-code\",version=\"1\"}", "nv_inference_request_failure{", "nv_inference_count{", "nv_inference_exec_count{", "nv_inference_request_duration_us{", "nv_inference_queue_duration_us{", "nv_inference_compute_infer_duration_us{", "nv_cpu_utilization ", "nv_cpu_memory_used_bytes ", "nv_cpu_memory_total_bytes ", "tessera_time_to_first_token_seconds_bucket{", "tessera_inter_token_latency_seconds_bucket{", "tessera_e2e_request_latency_seconds_count{", "tessera_prompt_tokens_total{", "tessera_generation_tokens_total{", "tessera_num_requests_running{", "tessera_num_requests_waiting{", "tessera_kv_cache_usage_ratio{", "tessera_kv_cache_blocks_used{", "tessera_generation_tokens_per_second{"]) and "text/plain" in h'
check "request counters count what happened since the reload" \
  '[float(l.split()[-1]) for l in b.splitlines() if l.startswith("nv_inference_request_success{")][0] >= 7 and [float(l.split()[-1]) for l in b.splitlines() if l.startswith("nv_inference_request_failure{")][0] >= 1 and [float(l.split()[-1]) for l in b.splitlines() if l.startswith("tessera_generation_tokens_total{")][0] >= 100'
req "metrics: wrong method" 405 -X POST "$MBASE/metrics"
req "metrics: unknown path" 404 "$MBASE/other"
stop_server

# ---- API key ----
start_server --model "$model" --model-name coder --context 256 --kv-cache-mb 16 --api-key s3cret
req "no key" 401 "$BASE/v1/models" && check "OpenAI error shape" 'd["error"]["type"] == "authentication_error"' && check "WWW-Authenticate" '"www-authenticate: bearer" in h'
req "wrong key" 401 -H "Authorization: Bearer nope" "$BASE/v2/models/coder" && check "KServe error shape" 'isinstance(d["error"], str)'
req "right key" 200 -H "Authorization: Bearer s3cret" "$BASE/v2/models/coder" && check "served under --model-name" 'd["name"] == "coder"'
req "right key, OpenAI" 200 -H "Authorization: Bearer s3cret" "$BASE/v1/completions" -d '{"prompt": "x", "max_tokens": 2}'
req "health needs no key" 200 "$BASE/v2/health/live"
req "readiness needs no key" 200 "$BASE/v2/health/ready"
stop_server

# ---- queue full: one running, one waiting, the rest refused ----
start_server --context 256 --kv-cache-mb 16 --max-running 1 --max-queue 1
long='{"text_input": "def main():\n", "parameters": {"max_tokens": 200, "ignore_eos": true}}'
curls=""
for i in 1 2 3 4 5; do
  curl -s -o "$tmp/q$i.body" -D "$tmp/q$i.headers" -w '%{http_code}' --max-time 300 "$BASE/v2/models/tiny-code/generate" -d "$long" > "$tmp/q$i.status" &
  curls="$curls $!"
done
wait $curls
n503=0; n200=0
for i in 1 2 3 4 5; do
  s=$(cat "$tmp/q$i.status")
  if [ "$s" = 503 ]; then
    n503=$((n503 + 1))
    grep -qi '^retry-after: ' "$tmp/q$i.headers" || { echo "FAIL: 503 without Retry-After"; fails=$((fails + 1)); }
    grep -q 'busy' "$tmp/q$i.body" || { echo "FAIL: 503 body: $(cat "$tmp/q$i.body")"; fails=$((fails + 1)); }
  elif [ "$s" = 200 ]; then n200=$((n200 + 1)); fi
done
if [ "$n503" -ge 1 ] && [ "$n200" -ge 1 ] && [ $((n503 + n200)) -eq 5 ]; then echo "ok: queue full: $n200 served, $n503 refused with 503 + Retry-After"
else echo "FAIL: queue full: $n200 served, $n503 refused"; fails=$((fails + 1)); fi

finish
