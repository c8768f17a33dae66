# Checks shared by the quantize tests (sourced; expects $bin, $src and $text to be set).

# perplexity of model $1 on $text at ctx 512 (further arguments go to tessera perplexity)
ppl() { "$bin" perplexity --model "$1" --file "$text" --ctx 512 --json "${@:2}" | python3 -c "import json,sys; print(json.load(sys.stdin)['perplexity'])"; }

# check_loss BASE PPL LIMIT LABEL: fails when PPL loses more than LIMIT percent against BASE
check_loss() {
    python3 - "$1" "$2" "$3" "$4" <<'PY'
import sys
base, p, limit = map(float, sys.argv[1:4])
d = 100 * (p / base - 1)
print(f"perplexity: float {base:.4f}; {sys.argv[4]} {p:.4f} ({d:+.2f} %, bound +{limit:.2f} %)")
assert d <= limit, f"{sys.argv[4]} loses more than +{limit:.2f} %"
PY
}

# check_types FILE "TYPES": the matrix types gguf-py reads from FILE (skipped where gguf-py is missing)
check_types() {
    local types
    types=$(python3 "$src/tests/support/gguf_types.py" "$1")
    if [ -n "$types" ]; then
        if [ "$types" != "$2" ]; then echo "gguf-py reads the matrices as $types, not $2"; exit 1; fi
        echo "gguf-py reads the matrices as $types"
    fi
}
