#!/usr/bin/env python3
"""Two ideas for 4-bit weights at 4.5 bits, measured on tiny-code before writing kernels for them (see
README.md): a non-uniform 16-level grid per group of 32 with an fp16 scale (the levels of GGUF's IQ4_NL)
and a block-diagonal randomized Hadamard rotation of each matrix's input dimension (the rotation is
applied to the weights here and undone after dequantization, which is what rotating the activations at
run time would compute). Reuses measure_int4.py's forward pass and perplexity. Not a CTest test.

    python3 tests/quant/explore_int4_grids.py BUILD_DIR NAME:ROTATION_BLOCK:GRID ...

GRID is q4_0 (tessera's searched Q4_0, via quant_test_quantize), int4 (tessera's --quant int4 types),
iq4nl (the non-uniform grid, scale searched here in numpy) or int4_iq (Q4_K where rows fill 256-wide
blocks, the non-uniform grid elsewhere). ROTATION_BLOCK 0 means no rotation."""
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
import measure_int4 as M  # noqa: E402  (loads tiny-code and its tokenizer)

LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float64)


def hadamard(n):
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


def rotation(cols, block, seed=0):
    rng = np.random.default_rng(seed)
    r = np.zeros((cols, cols))
    for i in range(0, cols, block):
        r[i:i + block, i:i + block] = hadamard(block) * rng.choice([-1.0, 1.0], size=block)[None, :]
    return r.astype(np.float32)


def nonuniform(w):
    """Groups of 32 on LEVELS * scale: candidate scales around the one that maps the largest magnitude to
    the end of the grid, each refined by one least-squares step, weighted like tessera's quantizers."""
    g = w.reshape(-1, 32).astype(np.float64)
    weight = np.sqrt(g.var(1, keepdims=True)) + np.abs(g)
    big = g[np.arange(len(g)), np.argmax(np.abs(g), 1)]
    best_err, best = np.full(len(g), np.inf), np.zeros_like(g)

    def nearest(scale):
        scale = np.where(scale == 0, 1e-30, scale)
        return LEVELS[np.abs(g[:, :, None] / scale[:, None, None] - LEVELS[None, None, :]).argmin(-1)]

    for step in range(-9, 10):
        lv = nearest(big / (-127 + 0.1 * step))
        scale = (weight * lv * g).sum(1) / np.maximum((weight * lv * lv).sum(1), 1e-30)
        lv = nearest(scale)
        scale = (weight * lv * g).sum(1) / np.maximum((weight * lv * lv).sum(1), 1e-30)
        scale = scale.astype(np.float16).astype(np.float64)
        q = scale[:, None] * lv
        err = (weight * (q - g) ** 2).sum(1)
        better = err < best_err
        best_err[better], best[better] = err[better], q[better]
    return best.reshape(w.shape).astype(np.float32)


def run(name, block, grid, ids):
    helper = os.path.join(BUILD, "quant_test_quantize")
    wq, se, count = dict(M.W), 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for tname, w in M.W.items():
            if w.ndim != 2:
                continue
            cols = w.shape[1]
            r = rotation(cols, block if cols % block == 0 else 128) if block else None
            wr = w @ r if r is not None else w
            if grid == "iq4nl" or (grid == "int4_iq" and cols % 256):
                q = nonuniform(wr)
            else:
                t = "q4_0" if grid == "q4_0" else M.int4_type(tname, cols)
                q = M.roundtrip(helper, tmp, wr, t, True, None)
            wq[tname] = q @ r.T if r is not None else q
            se += float(((wq[tname] - w).astype(np.float64) ** 2).sum())
            count += w.size
    p = M.perplexity(wq, ids)
    print(json.dumps({"scheme": name, "weight_rmse": (se / count) ** 0.5, "perplexity": p}), flush=True)


def main(specs):
    text = open(os.path.join(M.SHARED, "models/tiny-code/heldout.py.txt")).read()
    ids = M.tok.encode(text, add_special_tokens=False).ids
    for spec in specs:
        name, block, grid = spec.split(":")
        run(name, int(block), grid, ids)


if __name__ == "__main__":
    main(sys.argv[2:] if len(sys.argv) > 2 else [])
