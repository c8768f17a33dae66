#!/usr/bin/env bash
# Perplexity of the embedded tiny-code model on its held-out text at ctx 512 equals the float32
# reference of ../shared/models/tiny-code/reference.json (7.33) within 0.01.
# ctest-labels: no_sanitizer
set -euo pipefail
bin=${TESSERA_BINARY:?}
shared=${TESSERA_SHARED_DIR:?}
src=${TESSERA_SOURCE_DIR:?}
ref=$(python3 -c "import json; print(json.load(open('$shared/models/tiny-code/reference.json'))['heldout_perplexity_f32'])")
out=$("$bin" perplexity --model "$src/models/tiny-code" --file "$shared/models/tiny-code/heldout.py.txt" --ctx 512 --json)
echo "$out"
python3 - "$out" "$ref" <<'PY'
import json, sys
got = json.loads(sys.argv[1]); ref = float(sys.argv[2])
assert got["tokens_scored"] > 16000, got
diff = abs(got["perplexity"] - ref)
print(f"perplexity {got['perplexity']:.4f}, reference {ref:.4f}, difference {diff:.4f}")
sys.exit(0 if diff <= 0.01 else 1)
PY
