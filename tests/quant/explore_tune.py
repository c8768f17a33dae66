"""End-to-end tuning of a quantized tiny-code against its float model, measured in PyTorch before
tools/tune.c was written (see README.md). Reads a GGUF file from `tessera quantize` (IQ4_NL matrices:
codes and float16 scales; other types dequantized and kept fixed), then Adam on the log of every IQ4_NL
block scale (float16-rounded in the forward pass, straight through in the backward) and on the norm
weights, minimizing the KL divergence from the float model's next-token distributions over windows of
Python standard-library source; with qat=1 also latent weights whose rounding to the IQ4_NL grid passes
gradients straight through (the rounding tuned as well). Prints held-out perplexity every `eval` steps.
Not a CTest test: needs PyPI torch, tokenizers, gguf and safetensors, and takes minutes.

    python3 tests/quant/explore_tune.py q=FILE.gguf cal=TEXT [steps=200] [lr=1e-3] [tokens=65536] [qat=1 lrw=1e-4]
"""
import json, os, sys, time, math
import numpy as np, torch, torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
import gguf

torch.manual_seed(0)
HERE = os.path.dirname(os.path.abspath(__file__))
MD = os.path.join(HERE, "../../models/tiny-code")
SHARED = os.environ.get("TESSERA_SHARED_DIR", os.path.join(HERE, "../../../shared"))
cfg = json.load(open(f"{MD}/config.json"))
H, NH, NKV, HD, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["num_hidden_layers"]
EPS = cfg["rms_norm_eps"]
Wf = {k: v.float() for k, v in load_file(f"{MD}/model.safetensors").items()}
tok = Tokenizer.from_file(f"{MD}/tokenizer.json")
inv = 1e6 ** (-torch.arange(0, HD, 2, dtype=torch.float64) / HD)
ang = torch.arange(4096, dtype=torch.float64)[:, None] * inv[None]
COS = torch.cat([ang.cos()] * 2, -1).float(); SIN = torch.cat([ang.sin()] * 2, -1).float()
LEV = torch.tensor([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=torch.float32)

def rms(x, w): return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + EPS) * w
def rope(x, T):
    c, s = COS[:T, None, :], SIN[:T, None, :]
    return x * c + torch.cat([-x[..., HD // 2:], x[..., :HD // 2]], -1) * s

def forward(ids, W, head=None):  # ids [B, T]; head: another table for the output head than the lookups' (tied)
    B, T = ids.shape
    x = W["model.embed_tokens.weight"][ids]
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(B, T, NH, HD)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(B, T, NKV, HD)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(B, T, NKV, HD)
        q = rope(rms(q, W[p + "self_attn.q_norm.weight"]), T).transpose(1, 2)
        k = rope(rms(k, W[p + "self_attn.k_norm.weight"]), T).transpose(1, 2).repeat_interleave(NH // NKV, 1)
        v = v.transpose(1, 2).repeat_interleave(NH // NKV, 1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, NH * HD)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        x = x + (F.silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    return x @ (W["model.embed_tokens.weight"] if head is None else head).T

def ppl(W, ids, ctx=512, head=None):
    nll, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids), ctx):
            w = ids[s:s + ctx]
            if len(w) < 2: continue
            lg = forward(torch.tensor([w]), W, head)[0, :-1].double()
            nll -= F.log_softmax(lg, -1)[torch.arange(len(w) - 1), torch.tensor(w[1:])].sum().item()
            n += len(w) - 1
    return math.exp(nll / n)

# GGUF names -> HF names
G2H = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
for l in range(L):
    for g, h in [("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"),
                 ("attn_output", "self_attn.o_proj"), ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"),
                 ("ffn_down", "mlp.down_proj"), ("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm"),
                 ("attn_q_norm", "self_attn.q_norm"), ("attn_k_norm", "self_attn.k_norm")]:
        G2H[f"blk.{l}.{g}.weight"] = f"model.layers.{l}.{h}.weight"

def load_quant(path):
    r = gguf.GGUFReader(path)
    codes, scales, fixed = {}, {}, {}
    for t in r.tensors:
        name = G2H[t.name]
        if t.tensor_type == gguf.GGMLQuantizationType.IQ4_NL:
            raw = np.asarray(t.data).reshape(-1, 18)
            d = raw[:, :2].copy().view(np.float16).astype(np.float32).reshape(-1)
            qs = raw[:, 2:]
            c = np.concatenate([qs & 15, qs >> 4], 1).astype(np.int64)  # element j low, j+16 high
            rows = int(t.shape[1]); cols = int(t.shape[0])
            codes[name] = torch.tensor(c.reshape(rows, cols))
            scales[name] = torch.tensor(d.reshape(rows, cols // 32))
        else:
            deq = gguf.quants.dequantize(t.data, t.tensor_type)
            fixed[name] = torch.tensor(np.asarray(deq, dtype=np.float32).reshape(Wf[name].shape))
    return codes, scales, fixed

def cal_ids(path, n):
    ids = tok.encode(open(path).read(), add_special_tokens=False).ids
    return ids[:n]

if __name__ == "__main__":
    opts = dict(a.split("=") for a in sys.argv[1:])
    qpath = opts["q"]
    steps = int(opts.get("steps", 200)); lr = float(opts.get("lr", 1e-3)); bs = int(opts.get("bs", 4))
    ntok = int(opts.get("tokens", 65536)); train_norm = int(opts.get("norm", 1))
    held = tok.encode(open(os.path.join(SHARED, "models/tiny-code/heldout.py.txt")).read(), add_special_tokens=False).ids
    codes, scales, fixed = load_quant(qpath)
    print("quantized matrices", len(codes), "fixed", list(fixed)[:3], flush=True)
    qat = int(opts.get("qat", 0))
    lat = {n: (scales[n].repeat_interleave(32, 1) * LEV[codes[n]]).clone().requires_grad_(True) for n in codes} if qat else {}
    mids = (LEV[1:] + LEV[:-1]) / 2
    def student(logs, norms):
        W = dict(fixed)
        for n in codes:
            d = scales[n] * torch.exp(logs[n])
            d = d + (d.half().float() - d).detach()  # fp16 store, straight-through
            dd = d.repeat_interleave(32, 1)
            if qat:
                c = torch.bucketize((lat[n] / dd).detach(), mids)
                q = LEV[c]
                W[n] = dd * q + (lat[n] - lat[n].detach())
            else:
                W[n] = (dd * LEV[codes[n]])
        for n in norms: W[n] = norms[n]
        return W
    logs = {n: torch.zeros_like(scales[n], requires_grad=True) for n in codes}
    norms = {n: Wf[n].clone().requires_grad_(True) for n in Wf if "norm" in n}
    print("float ppl", ppl(Wf, held), flush=True)
    with torch.no_grad(): base_q = ppl(student(logs, norms), held)
    print("quant ppl", base_q, flush=True)
    ids = cal_ids(opts["cal"], ntok)
    wins = torch.tensor(ids[:len(ids) // 512 * 512]).view(-1, 512)
    print("windows", wins.shape[0], flush=True)
    with torch.no_grad():
        teach = [F.log_softmax(forward(wins[i:i + bs], Wf), -1) for i in range(0, wins.shape[0], bs)]
    params = list(logs.values()) + (list(norms.values()) if train_norm else [])
    groups = [{"params": params, "lr": lr}]
    if qat: groups.append({"params": list(lat.values()), "lr": float(opts.get("lrw", 2e-5))})
    opt = torch.optim.Adam(groups)
    t0 = time.time(); nb = len(teach)
    for st in range(steps):
        i = st % nb
        lp = F.log_softmax(forward(wins[i * bs:(i + 1) * bs], student(logs, norms)), -1)
        loss = F.kl_div(lp, teach[i], log_target=True, reduction="none").sum(-1).mean()
        opt.zero_grad(); loss.backward(); opt.step()
        if st % 25 == 0 or st == steps - 1:
            print(f"step {st} kl {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
        if (st + 1) % int(opts.get("eval", 100)) == 0:
            with torch.no_grad(): print("  held ppl", ppl(student(logs, norms), held), flush=True)
    with torch.no_grad(): print("final held ppl", ppl(student(logs, norms), held), flush=True)
