#!/usr/bin/env bash
# tessera quantize and tessera synth end to end:
# - the tiny-code model quantized to int8 keeps its perplexity within +0.1 % (issue 4's aim); int4 (Q4_K where
#   rows fill 256, IQ4_NL elsewhere: +2.95 %) and iq4_nl everywhere (+2.84 %) both stay within +3.5 %, reported
#   with their bits per weight, and the iq4_nl GGUF file must read in gguf-py as IQ4_NL; iq4_xs (IQ4_XS where
#   rows fill 256, IQ4_NL elsewhere: +2.88 % at 4.463 bits) too, and gguf-py reads its IQ4_XS matrices;
# - --tensor-type rules give the named tensors their types (gguf-py cross-read) and a Q8_0 embedding helps;
#   the same rules on load (--quant int4:RULES) give the same perplexity;
# - a GGUF written from safetensors (f32) computes exactly the same logits, and a GGUF can be requantized;
# - synth writes a loadable GGUF (q4_k, with the tokenizer inside) and a loadable Hugging Face directory.
# ctest-labels: no_sanitizer
set -euo pipefail
bin=${TESSERA_BINARY:?}
shared=${TESSERA_SHARED_DIR:?}
src=${TESSERA_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
model="$src/models/tiny-code"
text="$shared/models/tiny-code/heldout.py.txt"

source "$src/tests/support/quantize_checks.sh"
base=$(ppl "$model")
"$bin" quantize "$model" "$tmp/int8.gguf" --type int8 | tee "$tmp/int8.log"
"$bin" quantize "$model" "$tmp/int4.gguf" --type int4 | tee "$tmp/int4.log"
"$bin" quantize "$model" "$tmp/iq4nl.gguf" --type iq4_nl | tee "$tmp/iq4nl.log"
p8=$(ppl "$tmp/int8.gguf")
p4=$(ppl "$tmp/int4.gguf")
pn=$(ppl "$tmp/iq4nl.gguf")
python3 - "$base" "$p8" "$p4" "$pn" "$(cat $tmp/int8.log)" "$(cat $tmp/int4.log)" "$(cat $tmp/iq4nl.log)" <<'PY'
import sys
base, p8, p4, pn = map(float, sys.argv[1:5])
d8, d4, dn = 100 * (p8 / base - 1), 100 * (p4 / base - 1), 100 * (pn / base - 1)
print(f"perplexity: float {base:.4f}; int8 {p8:.4f} ({d8:+.3f} %) [{sys.argv[5]}]; int4 {p4:.4f} ({d4:+.2f} %) [{sys.argv[6]}]; "
      f"iq4_nl {pn:.4f} ({dn:+.2f} %) [{sys.argv[7]}]")
assert d8 <= 0.1, "int8 loses more than 0.1 %"
assert d4 <= 3.5, "int4 regressed past +3.5 %"
assert dn <= 3.5, "iq4_nl regressed past +3.5 %"
PY
types=$(python3 "$src/tests/support/gguf_types.py" "$tmp/iq4nl.gguf")
if [ -n "$types" ]; then
    case " $types " in
    *" IQ4_NL "*) echo "gguf-py reads the iq4_nl file's matrices as $types" ;;
    *) echo "gguf-py reads no IQ4_NL matrices in the iq4_nl file: $types"; exit 1 ;;
    esac
fi
"$bin" quantize "$model" "$tmp/iq4xs.gguf" --type iq4_xs | tee "$tmp/iq4xs.log"
grep -q "4.463 bits/weight" "$tmp/iq4xs.log"
check_loss "$base" "$(ppl "$tmp/iq4xs.gguf")" 3.5 "iq4_xs (IQ4_XS for down_proj, IQ4_NL elsewhere)"
check_types "$tmp/iq4xs.gguf" "IQ4_NL IQ4_XS"

# --tensor-type: the named tensors take the named types (as gguf-py reads them), the rest int4's; the
# embedding at Q8_0 must score better than int4 alone; a layer the model lacks is refused before any work
"$bin" quantize "$model" "$tmp/mixed.gguf" --type int4 --tensor-type token_embd=q8_0,blk.0-1.ffn_down=q6_k | tee "$tmp/mixed.log"
grep -q "q8_0 20.0%" "$tmp/mixed.log"
pm=$(ppl "$tmp/mixed.gguf")
python3 - "$p4" "$pm" <<'PY'
import sys
p4, pm = map(float, sys.argv[1:3])
print(f"int4 {p4:.4f}; int4 with a Q8_0 embedding and Q6_K ffn_down in layers 0-1 {pm:.4f}")
assert pm < p4, "the Q8_0 embedding did not help: were the rules applied?"
PY
python3 - "$tmp/mixed.gguf" <<'PY'
import sys
try:
    import gguf
except ImportError:
    print("gguf-py not installed: the mixed file's types are not cross-read", file=sys.stderr)
    sys.exit(0)
types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(sys.argv[1]).tensors if len(t.shape) == 2}
want = {"token_embd.weight": "Q8_0", "blk.0.ffn_down.weight": "Q6_K", "blk.1.ffn_down.weight": "Q6_K",
        "blk.2.ffn_down.weight": "Q4_K", "blk.0.attn_v.weight": "IQ4_NL"}
for name, t in want.items():
    assert types[name] == t, f"{name}: {types[name]}, not {t}"
print("gguf-py reads the mixed file's types as asked")
PY
# the same rules on load (--quant int4:RULES): the same quantizers, so the same perplexity as the file
pl=$(ppl "$model" --quant int4:token_embd=q8_0,blk.0-1.ffn_down=q6_k)
[ "$pl" = "$pm" ] || { echo "--quant int4:RULES on load gives $pl, the quantized file $pm"; exit 1; }
if "$bin" perplexity --model "$model" --file "$text" --quant int4:blk.8.attn_v=q8_0 2> "$tmp/bad.err"; then
    echo "a rule for layer 8 of an 8-layer model was accepted on load"; exit 1
fi
grep -q "names layer 8, but the model has 8 layers" "$tmp/bad.err"
if "$bin" quantize "$model" "$tmp/bad.gguf" --type int4 --tensor-type blk.8.attn_v=q8_0 2> "$tmp/bad.err"; then
    echo "a rule for layer 8 of an 8-layer model was accepted"; exit 1
fi
grep -q "names layer 8, but the model has 8 layers" "$tmp/bad.err"
test ! -e "$tmp/bad.gguf"

# f32 GGUF from safetensors: the same numbers, so the same logits
"$bin" quantize "$shared/testdata/qwen2-small" "$tmp/qwen2.gguf" --type f32 >/dev/null
"$bin" logits --model "$shared/testdata/qwen2-small" --ids 1,2,3,400,5 --out "$tmp/a.f32"
"$bin" logits --model "$tmp/qwen2.gguf" --ids 1,2,3,400,5 --out "$tmp/b.f32"
cmp "$tmp/a.f32" "$tmp/b.f32"
# a GGUF requantized
"$bin" quantize "$tmp/int8.gguf" "$tmp/re.gguf" --type q4_0 >/dev/null
"$bin" run --model "$tmp/re.gguf" --prompt "def f(x):" --max-tokens 4 >/dev/null

# synth: random weights of the tiny-code shape, as GGUF with the tokenizer inside and as a directory
"$bin" synth --config "$model/config.json" --tokenizer "$model" --out "$tmp/synth.gguf" --type q4_k --seed 3
"$bin" run --model "$tmp/synth.gguf" --prompt "import os" --max-tokens 4 --output ids --ignore-eos >/dev/null
"$bin" synth --config "$model/config.json" --tokenizer "$model" --out "$tmp/synth-dir" --type bf16
"$bin" run --model "$tmp/synth-dir" --prompt "import os" --max-tokens 4 --output ids --ignore-eos >/dev/null
echo "quantize and synth ok"
