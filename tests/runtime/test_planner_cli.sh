#!/usr/bin/env bash
# `tessera plan` and `tessera info` end to end: the plan of Qwen3-235B-A22B from its config.json (with
# a fixed "available" figure so the result does not depend on this machine), JSON output, the GPU +
# CPU split, planning from a Hugging Face directory, a GGUF file and a Triton model folder whose
# config.pbtxt is the seed document's template, and the accelerator report of `tessera info`.
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
  echo "ok: $* [$frag]"
}

big="$shared/configs/qwen3-235b-a22b.json"
expect 0 "all weights                                   235,093,634,560    437.9 GiB" -- "$bin" plan --config "$big" --available 23GiB
# the KV cache stores float32 unless told otherwise: 2 x 94 x 4 x 128 x 4 bytes per token
expect 0 "376.0 KiB per token (2 x 94 layers x 4 KV heads x 128 x 4 bytes) x 40960 x 1" -- "$bin" plan --config "$big" --available 23GiB
expect 0 "total            445.7 GiB  of 23.0 GiB available: DOES NOT FIT" -- "$bin" plan --config "$big" --available 23GiB --kv-dtype f16
expect 0 "nothing tried fits: even int4 needs 131.0 GiB" -- "$bin" plan --config "$big" --available 23GiB --kv-dtype f16
expect 0 "int4   weights  123.2 GiB" -- "$bin" plan --config "$big" --available 23GiB
expect 3 "DOES NOT FIT" -- "$bin" plan --config "$big" --available 23GiB --check
expect 0 "split: int4 with the last 55 of 94 layers on the GPU" -- \
  "$bin" plan --config "$big" --device cuda --available 80GiB --host-available 512GiB --quant int4 --kv-dtype f16
# --gpu-layers as asked: the GPU side of that split must fit (55 does, 56 does not: the GPU holds Q4_K at 4.625
# bits a weight, as the module repacks it), and the CPU side too
split="--config $big --device cuda --available 80GiB --host-available 512GiB --quant int4 --kv-dtype f16"
expect 0 "the last 55 of 94 layers, their KV cache and the output head on the GPU, of 80.0 GiB available: fits" -- \
  "$bin" plan $split --gpu-layers 55 --check
expect 3 "with the last 56 of 94 layers on the GPU, the GPU side needs 80.9 GiB" -- "$bin" plan $split --gpu-layers 56 --check
expect 3 "the embedding and layers 0..38 on the CPU, of 40.0 GiB: DOES NOT FIT" -- \
  "$bin" plan $split --gpu-layers 55 --host-available 40GiB --check
expect 0 "at int4: up to" -- "$bin" plan --config "$big" --quant int4 --ctx 8192 --available 200GiB
# works without --available too (whatever this machine has)
expect 0 "437.9 GiB" -- "$bin" plan --config "$big"

out=$("$bin" plan --config "$big" --quant int8 --ctx 4096 --batch 2 --available 300GiB --json)
python3 - "$out" <<'EOF' || fails=$((fails+1))
import json, sys
p = json.loads(sys.argv[1])
assert p["quantization"] == "int8", p["quantization"]
assert p["bytes"]["weights"] == 249789331456, p["bytes"]["weights"]
assert p["bytes"]["kv_cache"] == 2 * 94 * 4 * 128 * 4 * 4096 * 2, p["bytes"]["kv_cache"]
assert p["kv_element_bytes"] == 4
assert p["fits"] is True
assert sum(r["bytes"] for r in p["weights"]) == p["bytes"]["weights"]
assert sum(r["parameters"] for r in p["weights"]) == 235093634560
print("ok: plan --json")
EOF

# a Hugging Face directory and a GGUF file (its weights' own type when --quant is not given)
expect 0 "qwen3, 4 layers" -- "$bin" plan --model "$shared/testdata/qwen3-small" --ctx 128
expect 0 "quantization  q8_0" -- "$bin" plan --model "$shared/testdata/gguf/qwen3-tiny-tok-q8_0.gguf" --ctx 128

# a Triton model folder: the seed's template sets MODEL_QUANTIZATION int4
mkdir -p "$tmp/repo/qwen3/1"
ln -s "$shared/testdata/qwen3-small/config.json" "$tmp/repo/qwen3/1/config.json"
ln -s "$shared/testdata/qwen3-small/model.safetensors" "$tmp/repo/qwen3/1/model.safetensors"
python3 - "$shared/seeds/000_daab9e64cad81406.txt" "$tmp/repo/qwen3/config.pbtxt" <<'EOF'
import sys
text = open(sys.argv[1]).read()
start = text.index("```python\n") + len("```python\n")
open(sys.argv[2], "w").write(text[start:text.index("```", start)])
EOF
expect 0 "quantization  int4" -- "$bin" plan --model "$tmp/repo/qwen3" --ctx 256
expect 0 "(version 1)" -- "$bin" plan --model "$tmp/repo/qwen3" --ctx 256

# errors
expect 2 "unknown quantization" -- "$bin" plan --config "$big" --quant int3
expect 2 "give exactly one of --model or --config" -- "$bin" plan
expect 2 "--available expects a size" -- "$bin" plan --config "$big" --available lots
expect 1 "holds neither config.json" -- "$bin" plan --model "$tmp"
expect 2 "--device expects auto, cpu or cuda" -- "$bin" plan --config "$big" --device tpu

# tessera info: detection and what each name resolves to; the seed's configuration resolved
if [ "$(uname -s)" = Linux ]; then
  expect 0 "mps: Metal is not available on Linux; falling back to the CPU" -- "$bin" info
  expect 0 "cuda: NVIDIA GPUs are hidden by TESSERA_HIDE_FEATURES; falling back to the CPU" -- \
    env TESSERA_HIDE_FEATURES=cuda "$bin" info --config "$tmp/repo/qwen3/config.pbtxt"
  expect 0 "resolves to cpu (isa generic" -- env TESSERA_HIDE_FEATURES=avx2,neon,cuda "$bin" info --config "$tmp/repo/qwen3/config.pbtxt"
fi
out=$(TESSERA_HIDE_FEATURES=cuda "$bin" info --json --config "$tmp/repo/qwen3/config.pbtxt")
python3 - "$out" <<'EOF' || fails=$((fails+1))
import json, sys
info = json.loads(sys.argv[1])
assert info["cpu"]["cores_usable"] >= 1
assert info["memory"]["usable_bytes"] > 0
assert info["gpus"] == [] and "hidden" in info["gpu_status"]
assert info["accelerators"]["generic"]["cpu_isa"] == "generic"
assert info["config"]["device"] == "cpu"
assert any(m.startswith("mps: ") for m in info["config"]["fallbacks"])
print("ok: info --json")
EOF

if [ "$fails" -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "all passed"
