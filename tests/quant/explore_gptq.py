#!/usr/bin/env python3
"""Calibrated GPTQ with tessera's int4 types (IQ4_NL groups of 32, Q4_K super-blocks of 256 for
down_proj) on tiny-code, measured before writing it in C (see README.md). Each linear layer's input
Hessian H = X^T X comes from a float forward pass over Python standard-library sources (never the
held-out file); each matrix is then quantized one input column at a time, the rounding error of a
column spread over the columns not yet quantized through the Cholesky factor of H^-1 (Frantar et al.,
"GPTQ", 2022). A group's scale (Q4_K: the super-block's scales and minimums) is chosen when its first
column comes up, from the weights as the updates have left them, so act-order needs no static groups.
Reuses measure_int4.py's forward pass and perplexity. Not a CTest test: a variant takes a minute or two.

    python3 tests/quant/explore_gptq.py VARIANT ...

VARIANT is comma-separated key=value settings over the defaults of DEFAULT below, e.g.
`gptq=0` (round to nearest with the same scale search), `act=1` (columns by decreasing H diagonal),
`damp=0.1`, `tokens=4096`, `scale=mag|diag|full` (weights of the scale search: the element magnitude
term tessera's quantizers use, that times H's diagonal, or the error in H's own metric),
`head=gptq|rtn` (tied embedding quantized as the output head with the final hidden states' Hessian,
or by round to nearest), `hdamp=1.0` (the head's own damping: between GPTQ and round to nearest, as
the same matrix is also the embedding, whose rows the lookups read unweighted), `seq=1` (each layer's
Hessians from a forward pass through the layers already quantized), `down=q4_k|iq4_nl`, `awq=0.5` (activation-aware scaling: the input channels of q/k/v, gate/up and down
are multiplied by rms(x_j)^awq before quantizing and divided after, which the preceding RMSNorm weights or
up_proj rows would absorb exactly; Lin et al., "AWQ", 2023)."""
import glob
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import measure_int4 as M  # noqa: E402  (loads tiny-code and its tokenizer)
from explore_int4_grids import LEVELS  # noqa: E402

DEFAULT = {"gptq": 1, "act": 0, "damp": 0.01, "tokens": 8192, "scale": "mag", "head": "gptq", "down": "q4_k",
           "seq": 0, "hdamp": 0.0, "awq": 0.0}
ROLE = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "o_proj": "o_in", "gate_proj": "mlp_in",
        "up_proj": "mlp_in", "down_proj": "down_in"}


def calibration_ids(n_tokens):
    """Standard-library sources in name order, as one text, cut to n_tokens."""
    files = sorted(glob.glob("/usr/lib/python3.11/*.py"))
    ids = []
    for f in files:
        ids += M.tok.encode(open(f, encoding="utf-8", errors="replace").read(), add_special_tokens=False).ids
        if len(ids) >= n_tokens:
            break
    return ids[:n_tokens]


class _Enough(Exception):
    pass


def hessians(n_tokens, weights=None, layer=None):
    """X^T X of every linear layer's input over the calibration tokens, in windows of 512; with `layer`,
    only that layer's inputs (or the head's when layer == L), from a forward pass over `weights`."""
    hs = {}
    want = None if layer is None else ("head_in" if layer == M.L else f"model.layers.{layer}.")

    def note(key, a):
        if want is not None and not key.startswith(want):
            if key.startswith(f"model.layers.{layer + 1}."):
                raise _Enough  # later layers are not needed: stop this window's forward pass here
            return
        a = a.astype(np.float64)
        hs[key] = hs.get(key, 0) + a.T @ a

    ids = calibration_ids(n_tokens)
    for s in range(0, len(ids), 512):
        try:
            M.forward(np.array(ids[s:s + 512]), weights or M.W, note)
        except _Enough:
            pass
    return hs


def f16(x):
    return x.astype(np.float16).astype(np.float64)


def magnitude_weights(g):
    return np.sqrt((g * g).mean(-1, keepdims=True)) + np.abs(g)


def nearest_level(v):
    return np.abs(v[..., None] - LEVELS).argmin(-1)


def fit_iq4_nl(g, w, hfull=None):
    """Per row of g (rows x 32): the fp16 scale of IQ4_NL levels with the least weighted error among
    tessera's 19 candidates (largest magnitude near -127, each refitted twice by least squares).
    hfull (32 x 32) replaces the element weights by the error's quadratic form."""
    big = g[np.arange(len(g)), np.abs(g).argmax(1)]
    best_err, best = np.full(len(g), np.inf), np.zeros(len(g))
    for step in range(-9, 10):
        s = big / (-127 + 0.1 * step)
        for _ in range(2):
            lv = LEVELS[nearest_level(g / np.where(s == 0, 1e-30, s)[:, None])]
            s = (w * lv * g).sum(1) / np.maximum((w * lv * lv).sum(1), 1e-30)
        s = f16(s)
        e = s[:, None] * LEVELS[nearest_level(g / np.where(s == 0, 1e-30, s)[:, None])] - g
        err = np.einsum("ri,ij,rj->r", e, hfull, e) if hfull is not None else (w * e * e).sum(1)
        better = err < best_err
        best_err[better], best[better] = err[better], s[better]
    return best


def fit_q4_k(g, w):
    """Per row of g (rows x 256): Q4_K's effective per-32 (scale, minimum), from weighted least-squares
    fits of levels 0..15 (three stretches of the min-max grid, one Lloyd step each) and 6-bit codes
    under fp16 super-block factors (tessera's search without its final +-1 nudges of the codes)."""
    R = len(g)
    x, w = g.reshape(R, 8, 32), w.reshape(R, 8, 32)
    lo, hi = np.minimum(x.min(-1), 0), x.max(-1)
    span = np.where(hi > lo, hi - lo, 1.0)
    sw, swx, swxx = w.sum(-1), (w * x).sum(-1), (w * x * x).sum(-1)
    best_e, best_a, best_o = np.full((R, 8), np.inf), span / 15, lo

    def solve(lv):
        swl, swll, swxl = (w * lv).sum(-1), (w * lv * lv).sum(-1), (w * x * lv).sum(-1)
        D = sw * swll - swl * swl
        a = np.where(D > 0, (sw * swxl - swx * swl) / np.where(D > 0, D, 1), 0)
        o = np.where(D > 0, (swll * swx - swl * swxl) / np.where(D > 0, D, 1), 0)
        pos = o > 0
        a = np.where(pos, swxl / np.maximum(swll, 1e-30), a)
        o = np.where(pos, 0, o)
        e = swxx - 2 * a * swxl - 2 * o * swx + a * a * swll + 2 * a * o * swl + o * o * sw
        return a, o, np.where(a > 0, e, np.inf)

    for st in (-0.5, 0.0, 0.5):
        lv = np.clip(np.round((x - lo[..., None]) * ((15 + st) / span)[..., None]), 0, 15)
        for it in range(2):
            a, o, e = solve(lv)
            better = e < best_e
            best_e, best_a, best_o = np.where(better, e, best_e), np.where(better, a, best_a), np.where(better, o, best_o)
            if it == 0:
                lv = np.clip(np.round((x - o[..., None]) / np.where(a > 0, a, 1)[..., None]), 0, 15)
    gw = sw

    def superblock(v):
        mx = v.max(1)
        best_f, best_err = np.zeros(R), np.full(R, np.inf)
        for k in range(-4, 7):
            f = f16(mx / (63 + 0.5 * k))
            c = np.clip(np.round(v / np.where(f > 0, f, 1)[:, None]), 0, 63)
            err = (gw * (v - f[:, None] * c) ** 2).sum(1)
            better = (err < best_err) & (f > 0)
            best_f, best_err = np.where(better, f, best_f), np.where(better, err, best_err)
        return best_f[:, None] * np.clip(np.round(v / np.where(best_f > 0, best_f, 1)[:, None]), 0, 63)

    return superblock(np.maximum(best_a, 0)), superblock(np.maximum(-best_o, 0))


def quantize_matrix(W, H, kind, opt):
    """GPTQ (or round to nearest when opt gptq=0) of W (rows x cols) against input Hessian H; returns the
    dequantized matrix."""
    W = W.astype(np.float64).copy()
    rows, cols = W.shape
    gsize = 256 if kind == "q4_k" else 32
    H = H.copy()
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += opt["damp"] * np.mean(np.diag(H)) * np.eye(cols)
    perm = np.argsort(-np.diag(H), kind="stable") if opt["act"] else np.arange(cols)
    pos = np.empty(cols, int)
    pos[perm] = np.arange(cols)
    Hp = H[perm][:, perm]
    U = np.linalg.cholesky(np.linalg.inv(Hp)).T  # upper: U^T U = Hp^-1
    Wp = W[:, perm]
    Q = np.zeros_like(Wp)
    params = {}
    hd = np.diag(H) / np.mean(np.diag(H))
    for j in range(cols):
        c = perm[j]
        g = c // gsize
        if g not in params:
            cur = Wp[:, pos[g * gsize:(g + 1) * gsize]]  # this group's columns, as updated so far
            w = magnitude_weights(cur)
            if opt["scale"] in ("diag", "full"):
                w = w * hd[g * gsize:(g + 1) * gsize]
            if kind == "q4_k":
                params[g] = fit_q4_k(cur, w)
            else:
                hf = H[g * gsize:(g + 1) * gsize, g * gsize:(g + 1) * gsize] if opt["scale"] == "full" else None
                params[g] = fit_iq4_nl(cur, w, hf)
        x = Wp[:, j]
        if kind == "q4_k":
            a, b = params[g][0][:, (c % 256) // 32], params[g][1][:, (c % 256) // 32]
            q = a * np.clip(np.round((x + b) / np.where(a > 0, a, 1)), 0, 15) - b
        else:
            s = params[g]
            q = s * LEVELS[nearest_level(x / np.where(s == 0, 1e-30, s))]
        Q[:, j] = q
        if opt["gptq"]:
            err = (x - q) / U[j, j]
            Wp[:, j + 1:] -= np.outer(err, U[j, j + 1:])
    return Q[:, pos].astype(np.float32)


def run(spec, ids, cache):
    opt = dict(DEFAULT)
    for kv in filter(None, spec.split(",")):
        k, v = kv.split("=")
        opt[k] = type(DEFAULT[k])(v)
    t0 = time.time()
    if opt["tokens"] not in cache:
        cache[opt["tokens"]] = hessians(opt["tokens"])
    hs = cache[opt["tokens"]]
    wq, bits, count, se, herr = dict(M.W), 0.0, 0, 0.0, 0.0
    # layers in order, the embedding (as the head) last, so that sequential Hessians can see quantized inputs
    order = sorted(M.W, key=lambda n: (M.L, n) if "embed" in n else (int(n.split(".")[2]), n) if ".layers." in n else (-1, n))
    seen = -1
    for name in order:
        w = M.W[name]
        lay = M.L if "embed" in name else int(name.split(".")[2]) if ".layers." in name else None
        if opt["seq"] and w.ndim == 2 and lay != seen:
            hs = hessians(opt["tokens"], wq, lay)
            seen = lay
        count += w.size
        if w.ndim != 2:
            bits += 32 * w.size
            continue
        bits += 4.5 * w.size
        if "embed" in name:
            H = hs["head_in"] if opt["head"] == "gptq" else np.eye(w.shape[1])
            o = dict(opt, gptq=opt["gptq"] if opt["head"] == "gptq" else 0, act=opt["act"] if opt["head"] == "gptq" else 0,
                     damp=opt["hdamp"] or opt["damp"])
            wq[name] = quantize_matrix(w, H, "iq4_nl", o)
            Hm = hs["head_in"]
        else:
            role = next(r for r in ROLE if r in name)
            Hm = hs[".".join(name.split(".")[:3]) + "." + ROLE[role]]
            kind = opt["down"] if role == "down_proj" else "iq4_nl"
            if opt["awq"] > 0 and role != "o_proj":
                sc = np.sqrt(np.maximum(np.diag(Hm), 1e-12)) ** opt["awq"]
                sc /= np.sqrt(sc.max() * sc.min())
                wq[name] = (quantize_matrix(w * sc[None, :], Hm / np.outer(sc, sc), kind, opt) / sc[None, :]).astype(np.float32)
            else:
                wq[name] = quantize_matrix(w, Hm, kind, opt)
        d = (wq[name] - w).astype(np.float64)
        se += float((d * d).sum())
        herr += float(np.einsum("ri,ij,rj->", d, Hm, d) / np.trace(Hm))
    tq = time.time() - t0
    p = M.perplexity(wq, ids)
    print(json.dumps({"variant": spec or "default", "opt": opt, "bits_per_weight": round(bits / count, 4),
                      "weight_rmse": (se / count) ** 0.5, "h_weighted_err": herr, "perplexity": p,
                      "vs_f32_percent": 100 * (p / 7.3262 - 1), "quantize_s": round(tq, 1)}), flush=True)


def main(specs):
    text = open(os.path.join(M.SHARED, "models/tiny-code/heldout.py.txt")).read()
    ids = M.tok.encode(text, add_special_tokens=False).ids
    cache = {}
    for spec in specs or [""]:
        run(spec, ids, cache)


if __name__ == "__main__":
    main(sys.argv[1:])
