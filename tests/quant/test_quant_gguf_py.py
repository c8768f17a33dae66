"""tessera's quantizers and dequantizers against gguf-py (PyPI `gguf`, whose numpy code llama.cpp's
converter uses): bit-identical quantization for every type gguf-py can quantize (Q4_0, Q4_1, Q8_0,
BF16, F16) and bit-identical dequantization for every type it can dequantize (those plus Q4_K, Q5_K,
Q6_K, IQ4_NL, IQ4_XS), on random data of awkward sizes including all-zero blocks, constant blocks and huge and tiny
magnitudes. The C side runs through quant_test_quantize --quantize/--dequantize.

Skips (exit 0 with a message) when `gguf` or `numpy` is not installed."""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as Q
except ImportError:
    print("SKIP: the PyPI packages 'gguf' and 'numpy' are needed (pip install gguf numpy)")
    sys.exit(0)

BUILD = os.environ.get("TESSERA_BUILD_DIR", "build")
HELPER = os.path.join(BUILD, "quant_test_quantize")
NAMES = {Q.F16: "f16", Q.BF16: "bf16", Q.Q8_0: "q8_0", Q.Q4_0: "q4_0", Q.Q4_1: "q4_1", Q.Q4_K: "q4_k",
         Q.Q5_K: "q5_k", Q.Q6_K: "q6_k", Q.IQ4_NL: "iq4_nl", Q.IQ4_XS: "iq4_xs"}
# where the fp16 factors sit in each block (byte offsets), so random blocks can hold finite values
FP16_FIELDS = {Q.Q8_0: [0], Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
               Q.IQ4_NL: [0], Q.IQ4_XS: [0]}

rng = np.random.default_rng(20240611)
failures = []
checked = {"quantize": 0, "dequantize": 0}


def run(mode, qtype, data, tmp):
    src, dst = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    data.tofile(src)
    subprocess.run([HELPER, mode, NAMES[qtype], src, dst], check=True)
    return np.fromfile(dst, dtype=np.uint8)


def sample(kind, n, block):
    if kind == "uniform":
        x = rng.uniform(-1, 1, n)
    elif kind == "normal":
        x = rng.standard_normal(n) * 0.02
    elif kind == "huge":
        x = rng.uniform(-1, 1, n) * 6e4
    elif kind == "tiny":
        x = rng.uniform(-1, 1, n) * 1e-7
    elif kind == "outliers":
        x = rng.standard_normal(n) * 0.01
        x[rng.integers(0, n, max(1, n // 50))] *= 100
    elif kind == "positive":
        x = rng.uniform(0, 3, n)
    else:  # blocks: all-zero, constant and mixed blocks in one row
        x = rng.standard_normal(n)
        for b in range(0, n, block):
            r = rng.integers(0, 3)
            if r == 0:
                x[b:b + block] = 0
            elif r == 1:
                x[b:b + block] = rng.uniform(-5, 5)
    return x.astype(np.float32)


def test_quantize(tmp):
    for qtype in (Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.BF16, Q.F16):
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        for kind in ("uniform", "normal", "huge", "tiny", "outliers", "positive", "blocks"):
            for _ in range(4):
                n = block * int(rng.integers(1, 40)) if block > 1 else int(rng.integers(1, 3000))
                x = sample(kind, n, max(block, 32))
                ours = run("--quantize", qtype, x, tmp)
                theirs = gguf.quants.quantize(x.reshape(1, -1), qtype).view(np.uint8).reshape(-1)
                checked["quantize"] += 1
                if not np.array_equal(ours, theirs):
                    bad = np.nonzero(ours != theirs)[0]
                    failures.append(f"quantize {qtype.name} {kind} n={n}: {len(bad)} bytes differ, first at {bad[0]}")


def random_blocks(qtype, nblocks):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, nblocks * size, dtype=np.uint8).reshape(nblocks, size)
    if qtype in (Q.F16, Q.BF16):
        v = raw.view(np.uint16)
        exp_mask = 0x7C00 if qtype == Q.F16 else 0x7F80
        v[(v & exp_mask) == exp_mask] &= ~np.uint16(0x4000)  # no inf/NaN
        return raw.reshape(-1)
    for off in FP16_FIELDS[qtype]:
        f = (rng.standard_normal(nblocks) * rng.choice([1e-4, 1e-2, 1.0, 100.0], nblocks)).astype(np.float16)
        raw[:, off:off + 2] = f.view(np.uint8).reshape(nblocks, 2)
    return raw.reshape(-1)


def test_dequantize(tmp):
    for qtype in (Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_NL, Q.IQ4_XS, Q.BF16, Q.F16):
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        for _ in range(6):
            nb = int(rng.integers(1, 50)) if block > 1 else int(rng.integers(1, 3000))
            raw = random_blocks(qtype, nb)
            ours = run("--dequantize", qtype, raw, tmp).view(np.float32)
            theirs = gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(-1)
            checked["dequantize"] += 1
            if ours.shape != theirs.shape or not np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)):
                failures.append(f"dequantize {qtype.name} {nb} blocks: results differ")


def main():
    if not os.path.exists(HELPER):
        print(f"FAIL: helper {HELPER} not built")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        test_quantize(tmp)
        test_dequantize(tmp)
    for f in failures[:40]:
        print("FAIL:", f)
    print(f"{checked['quantize']} quantize and {checked['dequantize']} dequantize cases; {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
