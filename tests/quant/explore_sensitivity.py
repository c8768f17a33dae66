"""Which tensors of a quantized tiny-code cost the most perplexity: held-out perplexity of the file's dequantized
weights with one group of matrices put back to float (every matrix of one kind, or every matrix of one layer),
and with the tied embedding put back in one of its two roles only (the lookup, or the output head). Guides
`tessera quantize --tensor-type` (see README.md). Not a CTest test: needs PyPI torch, tokenizers, gguf and
safetensors, and takes a minute or two on 2 cores.

    python3 tests/quant/explore_sensitivity.py FILE.gguf
"""
import os, sys
import numpy as np, torch, gguf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import explore_tune as E  # tiny-code's float weights, tokenizer, forward pass and perplexity

KINDS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
         "mlp.up_proj", "mlp.down_proj"]
EMB = "model.embed_tokens.weight"


def dequantized(path):
    W = {}
    for t in gguf.GGUFReader(path).tensors:
        n = E.G2H[t.name]
        W[n] = torch.tensor(np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(E.Wf[n].shape))
    return W


def ppl_roles(W, held, lookup, head):
    """Perplexity with the embedding table `lookup` for the token lookups and `head` for the output head."""
    W = dict(W)
    W[EMB] = lookup
    return E.ppl(W, held, head=head)


if __name__ == "__main__":
    torch.set_num_threads(os.cpu_count() or 2)
    Wq = dequantized(sys.argv[1])
    held = E.tok.encode(open(os.path.join(E.SHARED, "models/tiny-code/heldout.py.txt")).read(), add_special_tokens=False).ids
    pf, pq = E.ppl(E.Wf, held), E.ppl(Wq, held)
    print(f"float {pf:.4f}, quantized {pq:.4f} ({100 * (pq / pf - 1):+.2f} %)")
    print(f"{'put back to float':28s} {'weights':>8s}  perplexity          gain (points)  a million weights")

    def trial(label, names):
        W = dict(Wq)
        for n in names: W[n] = E.Wf[n]
        p = E.ppl(W, held)
        nw = sum(E.Wf[n].numel() for n in names)
        gain = 100 * (pq - p) / pf
        print(f"{label:28s} {nw / 1e6:7.3f}M  {p:.4f} ({100 * (p / pf - 1):+.2f} %)  {gain:6.3f}  {gain / (nw / 1e6):6.3f}", flush=True)

    trial("embedding (both roles)", [EMB])
    for k in KINDS: trial(k + " (all layers)", [f"model.layers.{l}.{k}.weight" for l in range(E.L)])
    for l in range(E.L): trial(f"layer {l}", [f"model.layers.{l}.{k}.weight" for k in KINDS])
    for label, lk, hd in [("embedding as lookup only", E.Wf[EMB], Wq[EMB]), ("embedding as head only", Wq[EMB], E.Wf[EMB])]:
        p = ppl_roles(Wq, held, lk, hd)
        print(f"{label:28s} {'':8s}  {p:.4f} ({100 * (p / pf - 1):+.2f} %)", flush=True)
