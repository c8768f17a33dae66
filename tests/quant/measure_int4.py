#!/usr/bin/env python3
"""Measures quantization schemes on tiny-code (../shared/models/tiny-code): bits per weight, RMSE of
the weights and perplexity on heldout.py.txt (windows of 512 tokens, each scored from its start),
with a float32 numpy forward pass of the Qwen3 architecture and weights quantized and dequantized by
tessera's quantizers (quant_test_quantize --roundtrip). Not a CTest test: one scheme takes a minute or
two. Needs numpy and tokenizers (PyPI).

    python3 tests/quant/measure_int4.py BUILD_DIR [scheme ...]

Schemes: f32, q8_0, q4_0_ref (llama.cpp's reference Q4_0 everywhere), int4 (tessera's --quant int4:
Q4_K where rows fill 256-wide blocks, else Q4_0, searched), int4_imp (the same weighted by activation
statistics from Python standard-library sources), int4_emb_q8_0 (tied embedding at Q8_0),
q4_1_mix (Q4_K where it fits, else Q4_1)."""
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
from tokenizers import Tokenizer

SHARED = os.environ.get("TESSERA_SHARED_DIR", os.path.join(os.path.dirname(__file__), "../../../shared"))
MODEL = os.path.join(SHARED, "models/tiny-code/model")
BS = {"f32": (1, 4), "q8_0": (32, 34), "q4_0": (32, 18), "q4_1": (32, 20), "q4_k": (256, 144), "q5_k": (256, 176),
      "q6_k": (256, 210)}


def load_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        s, e = v["data_offsets"]
        buf = raw[8 + n + s:8 + n + e]
        if v["dtype"] == "BF16":
            a = (np.frombuffer(buf, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(buf, np.float32)
        out[name] = a.reshape(v["shape"]).astype(np.float32)
    return out


cfg = json.load(open(os.path.join(MODEL, "config.json")))
W = load_safetensors(os.path.join(MODEL, "model.safetensors"))
tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
H, NH, NKV, HD, L = (cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"],
                     cfg["num_hidden_layers"])
EPS = cfg["rms_norm_eps"]
THETA = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
INV_FREQ = THETA ** (-np.arange(0, HD, 2, dtype=np.float64) / HD)


def rms(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * w


def rope(x, T):
    ang = np.arange(T)[:, None] * INV_FREQ[None, :]
    c = np.concatenate([np.cos(ang)] * 2, -1).astype(np.float32)[:, None, :]
    s = np.concatenate([np.sin(ang)] * 2, -1).astype(np.float32)[:, None, :]
    return x * c + np.concatenate([-x[..., HD // 2:], x[..., :HD // 2]], -1) * s


def forward(ids, Wt, stats=None):
    T = len(ids)
    x = Wt["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)

    def note(key, a):
        if callable(stats):
            stats(key, a)
        elif stats is not None:
            stats[key] = stats.get(key, 0) + (a * a).sum(0)

    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, Wt[p + "input_layernorm.weight"])
        note(p + "attn_in", h)
        q = (h @ Wt[p + "self_attn.q_proj.weight"].T).reshape(T, NH, HD)
        k = (h @ Wt[p + "self_attn.k_proj.weight"].T).reshape(T, NKV, HD)
        v = (h @ Wt[p + "self_attn.v_proj.weight"].T).reshape(T, NKV, HD)
        q = rope(rms(q, Wt[p + "self_attn.q_norm.weight"]), T)
        k = np.repeat(rope(rms(k, Wt[p + "self_attn.k_norm.weight"]), T), NH // NKV, axis=1)
        v = np.repeat(v, NH // NKV, axis=1)
        att = (q.transpose(1, 0, 2) @ k.transpose(1, 2, 0)) * np.float32(1 / np.sqrt(HD)) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = (att @ v.transpose(1, 0, 2)).transpose(1, 0, 2).reshape(T, NH * HD)
        note(p + "o_in", o)
        x = x + o @ Wt[p + "self_attn.o_proj.weight"].T
        h = rms(x, Wt[p + "post_attention_layernorm.weight"])
        note(p + "mlp_in", h)
        g = h @ Wt[p + "mlp.gate_proj.weight"].T
        a = g / (1 + np.exp(-g)) * (h @ Wt[p + "mlp.up_proj.weight"].T)
        note(p + "down_in", a)
        x = x + a @ Wt[p + "mlp.down_proj.weight"].T
    x = rms(x, Wt["model.norm.weight"])
    note("head_in", x)
    return x @ Wt.get("lm_head.weight", Wt["model.embed_tokens.weight"]).T


def perplexity(Wt, ids, ctx=512):
    nll, n = 0.0, 0
    for s in range(0, len(ids), ctx):
        w = ids[s:s + ctx]
        if len(w) < 2:
            continue
        lg = forward(np.array(w), Wt)[:-1]
        m = lg.max(-1, keepdims=True)
        lse = (np.log(np.exp(lg - m).sum(-1, keepdims=True, dtype=np.float64)) + m).reshape(-1)
        nll -= float((lg[np.arange(len(w) - 1), w[1:]] - lse).sum())
        n += len(w) - 1
    return float(np.exp(nll / n))


ROLE_INPUT = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "o_proj": "o_in", "gate_proj": "mlp_in",
              "up_proj": "mlp_in", "down_proj": "down_in"}


def int4_type(name, cols):
    return "q4_k" if cols % 256 == 0 else "q4_0"


SCHEMES = {
    "f32": (lambda n, c: "f32", False, False),
    "q8_0": (lambda n, c: "q8_0", False, False),
    "q4_0_ref": (lambda n, c: "q4_0", False, False),
    "int4": (int4_type, True, False),
    "int4_imp": (int4_type, True, True),
    "int4_emb_q8_0": (lambda n, c: "q8_0" if "embed" in n else int4_type(n, c), True, False),
    "q4_1_mix": (lambda n, c: "q4_k" if c % 256 == 0 else "q4_1", True, False),
}


def roundtrip(helper, tmp, w, t, search, imp):
    src, dst = os.path.join(tmp, "w.f32"), os.path.join(tmp, "o.f32")
    w.astype(np.float32).tofile(src)
    if search:
        args = [helper, "--roundtrip", t, str(w.shape[1]), src, dst]
        if imp is not None:
            imp.astype(np.float32).tofile(os.path.join(tmp, "imp.f32"))
            args.append(os.path.join(tmp, "imp.f32"))
        subprocess.run(args, check=True)
        return np.fromfile(dst, np.float32).reshape(w.shape)
    subprocess.run([helper, "--quantize", t, src, dst], check=True)
    subprocess.run([helper, "--dequantize", t, dst, src], check=True)
    return np.fromfile(src, np.float32).reshape(w.shape)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    helper = os.path.join(build, "quant_test_quantize")
    names = sys.argv[2:] or list(SCHEMES)
    text = open(os.path.join(SHARED, "models/tiny-code/heldout.py.txt")).read()
    ids = tok.encode(text, add_special_tokens=False).ids
    stats = None
    if any(SCHEMES[n][2] for n in names):
        libdir = os.path.dirname(os.__file__)
        files = sorted(glob.glob(os.path.join(libdir, "json/*.py"))) + sorted(glob.glob(os.path.join(libdir, "collections/*.py")))
        cal = tok.encode("\n".join(open(f).read() for f in files), add_special_tokens=False).ids[:8 * 512]
        stats = {}
        for s in range(0, len(cal), 512):
            forward(np.array(cal[s:s + 512]), W, stats)
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            pick, search, use_imp = SCHEMES[name]
            Wq, bits, count, se = dict(W), 0.0, 0, 0.0
            for tname, w in W.items():
                if w.ndim != 2:
                    bits += 32 * w.size
                    count += w.size
                    continue
                t = pick(tname, w.shape[1])
                imp = None
                if use_imp:
                    role = next((r for r in ROLE_INPUT if r in tname), None)
                    if role:
                        imp = stats[".".join(tname.split(".")[:3]) + "." + ROLE_INPUT[role]]
                Wq[tname] = w if t == "f32" else roundtrip(helper, tmp, w, t, search, imp)
                bs, bb = BS[t]
                bits += w.size / bs * bb * 8
                count += w.size
                se += float(((Wq[tname] - w).astype(np.float64) ** 2).sum())
            p = perplexity(Wq, ids)
            if name == "f32":
                base = p
            print(json.dumps({"scheme": name, "bits_per_weight": round(bits / count, 4),
                              "weight_rmse": (se / count) ** 0.5, "perplexity": p,
                              "vs_f32_percent": None if base is None else 100 * (p / base - 1)}), flush=True)


if __name__ == "__main__":
    main()
