#!/usr/bin/env python3
"""Regenerates ggml_ref_digests.txt: digests of what ggml's reference quantizers (quantize_row_*_ref,
ggml_fp32_to_fp16_row, ggml_fp32_to_bf16_row_ref) produce on deterministic inputs, which
test_quantize.c reproduces and compares against. Not run by CTest: it needs a libggml-base.so built
from llama.cpp without -march=native (so that no FMA contraction changes the bits), e.g.

    cmake -S llama.cpp -B build -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=ON -DCMAKE_C_FLAGS=-ffp-contract=off
    python3 gen_ggml_ref_digests.py build/bin/libggml-base.so > ggml_ref_digests.txt

The input generator must stay identical to make_case() in test_quantize.c."""
import ctypes
import sys

import numpy as np

MASK = (1 << 64) - 1


class SplitMix:
    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 40) * (1.0 / 16777216.0)


N_KINDS = 9


def make_case(kind, n, block):
    r = SplitMix(1000 + kind)
    out = np.zeros(n, dtype=np.float32)
    for i in range(n):
        u = r.uniform()
        if kind == 0:
            v = 2 * u - 1
        elif kind == 1:
            v = (u + r.uniform() + r.uniform() + r.uniform() - 2) * 0.05
        elif kind == 2:
            v = (2 * u - 1) * 3e4
        elif kind == 3:
            v = (2 * u - 1) * 1e-6
        elif kind == 4:
            v = 0.0
        elif kind == 5:
            b = i // block
            v = 0.37 if b == 0 else -1.25 * (b + 1)
        elif kind == 6:
            v = (2 * u - 1) * 0.01
            if i % 37 == 0:
                v *= 50
        elif kind == 7:
            v = u
        else:
            v = 0.0 if r.uniform() < 0.5 else 2 * u - 1
        out[i] = v
    return out


def fnv1a(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & MASK
    return h


# name as in our dtype table, ggml function, block size, block bytes, elements per case
TYPES = [
    ("f16", "ggml_fp32_to_fp16_row", 1, 2, 1001),
    ("bf16", "ggml_fp32_to_bf16_row_ref", 1, 2, 1001),
    ("q8_0", "quantize_row_q8_0_ref", 32, 34, 32 * 37),
    ("q4_0", "quantize_row_q4_0_ref", 32, 18, 32 * 37),
    ("q4_1", "quantize_row_q4_1_ref", 32, 20, 32 * 37),
    ("q4_k", "quantize_row_q4_K_ref", 256, 144, 256 * 5),
    ("q5_k", "quantize_row_q5_K_ref", 256, 176, 256 * 5),
    ("q6_k", "quantize_row_q6_K_ref", 256, 210, 256 * 5),
    ("q8_k", "quantize_row_q8_K_ref", 256, 292, 256 * 5),
]


def main():
    lib = ctypes.CDLL(sys.argv[1])
    print("# type kind fnv1a64 (ggml reference quantizers; see gen_ggml_ref_digests.py)")
    for name, fn, block, bb, n in TYPES:
        f = getattr(lib, fn)
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        for kind in range(N_KINDS):
            x = make_case(kind, n, block)
            out = np.zeros(n // block * bb, dtype=np.uint8)
            f(x.ctypes.data, out.ctypes.data, n)
            print(f"{name} {kind} {fnv1a(out.tobytes()):016x}")


if __name__ == "__main__":
    main()
