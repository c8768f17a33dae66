#!/usr/bin/env bash
# tessera quantize --calibration end to end: tiny-code at int4 (Q4_K for down_proj, IQ4_NL elsewhere),
# GPTQ-calibrated on Python standard-library sources (never the held-out text), must lose at most
# +2.6 % perplexity on heldout.py.txt at ctx 512; the same types without calibration lose +2.95 %
# (tests/quant/README.md), so a calibration that does nothing fails here. The file keeps the ordinary
# GGUF types (gguf-py reads them where it is installed) and the same bits per weight.
# ctest-labels: no_sanitizer
set -euo pipefail
bin=${TESSERA_BINARY:?}
shared=${TESSERA_SHARED_DIR:?}
src=${TESSERA_SOURCE_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
model="$src/models/tiny-code"
text="$shared/models/tiny-code/heldout.py.txt"

python3 "$src/tests/support/calibration_text.py" "$tmp/calibration.py.txt"

source "$src/tests/support/quantize_checks.sh"
"$bin" quantize "$model" "$tmp/cal.gguf" --type int4 --calibration "$tmp/calibration.py.txt" | tee "$tmp/q.log"
grep -q "GPTQ quantized 56 matrices" "$tmp/q.log"
grep -q "4.513 bits/weight" "$tmp/q.log"
base=$(ppl "$model")
pc=$(ppl "$tmp/cal.gguf")
check_loss "$base" "$pc" 2.6 "int4 calibrated (uncalibrated int4 is +2.95 %)"
check_types "$tmp/cal.gguf" "IQ4_NL Q4_K"

# what calibration needs, it asks for by name
if "$bin" quantize "$model" "$tmp/x.gguf" --type int4 --calibration "$tmp/missing.txt" 2>"$tmp/err"; then exit 1; fi
grep -q "missing.txt" "$tmp/err"
head -c 200 "$tmp/calibration.py.txt" >"$tmp/short.txt"
if "$bin" quantize "$model" "$tmp/x.gguf" --type int4 --calibration "$tmp/short.txt" 2>"$tmp/err"; then exit 1; fi
grep -q "at least 512" "$tmp/err"
# GPTQ's settings are checked before any work
if "$bin" quantize "$model" "$tmp/x.gguf" --type int4 --calibration "$tmp/calibration.py.txt" --gptq-order sorted 2>"$tmp/err"; then exit 1; fi
grep -q "act or natural" "$tmp/err"
if "$bin" quantize "$model" "$tmp/x.gguf" --type int4 --calibration "$tmp/calibration.py.txt" --gptq-damp -1 2>"$tmp/err"; then exit 1; fi
grep -q "gptq-damp" "$tmp/err"
