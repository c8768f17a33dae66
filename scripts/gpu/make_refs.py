"""Runs on the GPU machine (transformers + torch there): builds tiny random-weight models of
architectures ../shared lacks and computes float32 references in the same format as
../shared/testdata/*/reference/cases.json."""
import json, os, sys
import torch
import transformers
from transformers import AutoModelForCausalLM

out_root = sys.argv[1]
torch.manual_seed(0)

def make(name, cfg_cls, **kw):
    cfg = cfg_cls(**kw)
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.08)
    model = model.to(torch.bfloat16)
    d = os.path.join(out_root, name)
    model.save_pretrained(d, safe_serialization=True)
    model = model.to(torch.float32).eval()
    ref = os.path.join(d, "reference")
    os.makedirs(ref, exist_ok=True)
    g = torch.Generator().manual_seed(1)
    cases = []
    for i, n in enumerate([1, 6, 17, 64, 200]):
        ids = torch.randint(0, kw["vocab_size"], (n,), generator=g).tolist()
        with torch.no_grad():
            o = model(torch.tensor([ids]), output_hidden_states=(i == 2))
        logits = o.logits[0]
        last = logits[-1].contiguous().numpy().astype("<f4")
        f = f"case{i}.last_logits.f32"
        last.tofile(os.path.join(ref, f))
        top8 = []
        for p in range(n):
            v, idx = torch.topk(logits[p], 8)
            top8.append([[int(a), float(b)] for a, b in zip(idx, v)])
        seq = list(ids)
        greedy, margins = [], []
        with torch.no_grad():
            for _ in range(24):
                lg = model(torch.tensor([seq])).logits[0, -1]
                v, idx = torch.topk(lg, 2)
                greedy.append(int(idx[0]))
                margins.append(float(v[0] - v[1]))
                seq.append(int(idx[0]))
        c = {"input_ids": ids, "last_logits_file": f, "vocab_size": kw["vocab_size"], "top8_per_position": top8,
             "greedy_24": greedy, "greedy_top1_minus_top2": margins}
        if i == 2:
            hs = torch.stack([h[0] for h in o.hidden_states]).contiguous().numpy().astype("<f4")
            hf = f"case{i}.hidden_states.f32"
            hs.tofile(os.path.join(ref, hf))
            c["hidden_states_file"] = hf
            c["hidden_states_shape"] = list(hs.shape)
        cases.append(c)
    json.dump({"compute": "float32 on CPU, eager attention, from the stored bf16 weights",
               "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
               "cases": cases}, open(os.path.join(ref, "cases.json"), "w"))
    print(name, "done", sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(d) for f in fs))

from transformers import LlamaConfig, Qwen3MoeConfig
make("llama-small", LlamaConfig, vocab_size=2048, hidden_size=128, intermediate_size=320, num_hidden_layers=3,
     num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=131072, rms_norm_eps=1e-5,
     rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
     "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, tie_word_embeddings=False,
     attn_implementation="eager")
make("qwen3moe-nonorm", Qwen3MoeConfig, vocab_size=2048, hidden_size=128, intermediate_size=256,
     moe_intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
     num_experts=8, num_experts_per_tok=2, norm_topk_prob=False, mlp_only_layers=[1], decoder_sparse_step=1,
     max_position_embeddings=4096, tie_word_embeddings=False, attn_implementation="eager")
