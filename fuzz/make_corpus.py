#!/usr/bin/env python3
"""Regenerates the seed corpora under fuzz/corpus/<target>/ from ../shared (test models, configs, the
seed document's configuration fragments), the repository's own tests and small hand-made inputs.

Each corpus stays small (well under 2 MB), since the repository travels with a size limit: safetensors
seeds are headers with tiny data sections, tokenizer seeds are cut-down vocabularies that keep every
structural feature of the real files, and GGUF seeds are either real files truncated to 64 KiB or tiny
models written here with llama.cpp's metadata keys. Run from anywhere:
    python3 fuzz/make_corpus.py [--shared ../shared]
Files that already exist are overwritten; inputs added by fuzzing campaigns are not touched."""
import argparse
import hashlib
import json
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


# ---- safetensors ----

def st_image(tensors, metadata=None, pad_to=8):
    """tensors: list of (name, dtype, shape, raw bytes). Returns a whole safetensors file image."""
    header, data, off = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % pad_to)
    return struct.pack("<Q", len(h)) + h + data


def seeds_safetensors(shared):
    models = [os.path.join(shared, "testdata", m) for m in sorted(os.listdir(os.path.join(shared, "testdata")))]
    models += [os.path.join(ROOT, "tests", "data", m) for m in sorted(os.listdir(os.path.join(ROOT, "tests", "data")))]
    for m in models:
        p = os.path.join(m, "model.safetensors")
        if not os.path.isfile(p):
            continue
        with open(p, "rb") as f:
            head = f.read(8)
            hlen = struct.unpack("<Q", head)[0]
            header = f.read(hlen)
        name = os.path.basename(m)
        # The header alone (every tensor then points past the end: the truncation path) ...
        put("safetensors", f"{name}-header-only.safetensors", head + header)
        # ... and the same tensors re-laid out with 1-element shapes, so that the whole file is valid.
        meta = json.loads(header)
        tensors = []
        for tname, t in meta.items():
            if tname == "__metadata__":
                continue
            size = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}.get(t["dtype"], 4)
            tensors.append((tname, t["dtype"], [1] * len(t["shape"]), bytes(size)))
        put("safetensors", f"{name}-tiny.safetensors", st_image(tensors, meta.get("__metadata__")))
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
    put("safetensors", "dtypes.safetensors", st_image([
        ("a.f32", "F32", [2, 2], f32),
        ("b.bf16", "BF16", [4], bytes(8)),
        ("c.f16", "F16", [1, 2, 2], bytes(8)),
        ("d.i64", "I64", [1], bytes(8)),
        ("e.u8", "U8", [3], b"abc"),
        ("f.bool", "BOOL", [1], b"\x01"),
        ("g.f8", "F8_E4M3", [2], b"\x10\x20"),
        ("h.scalar", "F32", [], f32[:4]),
        ("i.empty", "F32", [0, 4], b""),
        ("j.4d", "F64", [1, 1, 1, 1], bytes(8)),
    ], {"format": "pt", "note": "hand-made"}))
    put("safetensors", "empty-header.safetensors", st_image([]))
    put("safetensors", "metadata-only.safetensors", st_image([], {"format": "pt"}))


def seeds_safetensors_index(shared):
    models = [os.path.join(shared, "testdata", m) for m in sorted(os.listdir(os.path.join(shared, "testdata")))]
    for m in models:
        p = os.path.join(m, "model.safetensors")
        if not os.path.isfile(p):
            continue
        with open(p, "rb") as f:
            hlen = struct.unpack("<Q", f.read(8))[0]
            names = [n for n in json.loads(f.read(hlen)) if n != "__metadata__"]
        shards = 3
        wm = {n: "model-%05d-of-%05d.safetensors" % (1 + i % shards, shards) for i, n in enumerate(sorted(names))}
        doc = {"metadata": {"total_size": 123456, "total_parameters": 1000}, "weight_map": wm}
        put("safetensors_index", os.path.basename(m) + ".index.json", json.dumps(doc, indent=2))
    put("safetensors_index", "one-shard.index.json",
        json.dumps({"metadata": {}, "weight_map": {"lm_head.weight": "model.safetensors"}}))
    put("safetensors_index", "empty-map.index.json", '{"weight_map": {}}')


# ---- config.json ----

def seeds_model_config(shared):
    paths = [os.path.join(shared, "configs", c) for c in sorted(os.listdir(os.path.join(shared, "configs")))]
    for base in (os.path.join(shared, "testdata"), os.path.join(ROOT, "tests", "data")):
        for m in sorted(os.listdir(base)):
            for f in ("config.json", "generation_config.json"):
                p = os.path.join(base, m, f)
                if os.path.isfile(p):
                    paths.append(p)
    p = os.path.join(shared, "models", "tiny-code", "model", "config.json")
    if os.path.isfile(p):
        paths.append(p)
    for p in paths:
        parent = os.path.basename(os.path.dirname(p))
        name = os.path.basename(p) if parent == "configs" else parent + "-" + os.path.basename(p)
        put("model_config", name, read(p))
    llama = {
        "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16",
        "rope_theta": 500000.0, "eos_token_id": [1, 2], "bos_token_id": 0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
    }
    put("model_config", "handmade-llama3-rope.json", json.dumps(llama))
    linear = dict(llama, model_type="mistral", rope_scaling={"type": "linear", "factor": 2.0}, eos_token_id=2)
    put("model_config", "handmade-linear-rope.json", json.dumps(linear))
    moe = {
        "model_type": "qwen3_moe", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 100,
        "num_local_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "norm_topk_prob": True,
        "decoder_sparse_step": 2, "mlp_only_layers": [0, 3], "dtype": "float16",
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "tie_word_embeddings": True,
    }
    put("model_config", "handmade-moe.json", json.dumps(moe))


# ---- text format / config.pbtxt ----

def seed_fragments(shared):
    text = read(os.path.join(shared, "seeds", "000_daab9e64cad81406.txt")).decode()
    return [m.group(1) for m in re.finditer(r"```[a-z]*\n(.*?)```", text, re.S) if "{" in m.group(1)]


PBTXT = [
    # a full Triton configuration with the parameters tessera reads
    '# Qwen3 served by tessera\nname: "qwen3"\nbackend: "tessera"\nmax_batch_size: 8\n'
    'model_transaction_policy { decoupled: true }\n'
    'input [\n  { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] },\n'
    '  { name: "stream" data_type: TYPE_BOOL dims: [ 1 ] optional: true }\n]\n'
    'output [ { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
    'instance_group [ { count: 1 kind: KIND_GPU gpus: [ 0, 1 ] } ]\n'
    'dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 2000 }\n'
    'version_policy: { specific: { versions: [ 1, 3 ] } }\n'
    'parameters: [\n'
    '  { key: "MODEL_QUANTIZATION" value: { string_value: "q4_k" } },\n'
    '  { key: "TESSERA_CONTEXT_LENGTH" value: { string_value: "32768" } },\n'
    '  { key: "TESSERA_KV_CACHE_BYTES" value: { string_value: "1.5GB" } },\n'
    '  { key: "TESSERA_THREADS" value: { string_value: "16" } },\n'
    '  { key: "TESSERA_MAX_SEQUENCES" value: { string_value: "4" } },\n'
    '  { key: "TESSERA_CPU_FALLBACK" value: { string_value: "on" } }\n]\n',
    'name: "m" platform: "pytorch_libtorch" max_batch_size: 0 default_model_filename: "model.gguf"\n'
    'version_policy { latest { num_versions: 2 } }\ninstance_group { kind: KIND_CPU count: 2 }\n'
    'parameters { key: "PYTORCH_ENABLE_MPS_FALLBACK" value { string_value: "yes" } }\n',
    'version_policy { all { } }\ninstance_group [ { kind: KIND_MODEL }, { name: "g" kind: KIND_AUTO } ]\n',
    # text-format grammar: angle brackets, separators, escapes, concatenation, numbers of every spelling
    'optimization < execution_accelerators < cpu_execution_accelerator < name: "openvino" ; '
    'parameters < key: "a" value: "b\\x41\\101\\n\\t\\"q\\\'" " concatenated" \'single\' > > > >\n'
    'max_batch_size: 0x10, dynamic_batching { max_queue_delay_microseconds: 0777; priority_levels: 2 '
    'default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 100 } }\n',
    'input { name: "x" data_type: TYPE_FP32 dims: [ -1, 3, 224, 224 ] reshape { shape: [ 1 ] } }\n'
    'response_cache { enable: True }\nmodel_warmup [ { name: "w" batch_size: 1 } ]\n',
    'sequence_batching { max_sequence_idle_microseconds: 5000000 state [ { input_name: "i" output_name: "o" '
    'data_type: TYPE_INT32 dims: [ 1 ] } ] }\n',
    'a: 1.5e-3f b: -inf c: nan d: 1e10 e: -0 f: 18446744073709551615 g: 99999999999999999999999 h: t\n',
    'm { n { o { p { q: [ 1, 2, 3 ] r: [ { s: 1 }, { s: 2 } ] } } } }\n',
    '# only a comment\n',
    '',
]


def seeds_textproto(shared):
    for i, frag in enumerate(seed_fragments(shared)):
        put("textproto", f"seed-fragment-{i}.pbtxt", frag)
        put("triton_config", f"seed-fragment-{i}.pbtxt", frag)
    for i, t in enumerate(PBTXT):
        put("textproto", f"handmade-{i}.pbtxt", t)
        put("triton_config", f"handmade-{i}.pbtxt", t)


# ---- tokenizer.json ----

def shrink_tokenizer(tok, keep_merges):
    """Keeps the 256 byte tokens and the first keep_merges merges (with their results), renumbered densely,
    plus every added token; the file's structure (normalizer, pre-tokenizer, decoder) is unchanged."""
    vocab = tok["model"]["vocab"]
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    kept = [t for t, _ in by_id[:256]]
    have = set(kept)
    merges = []
    for m in tok["model"]["merges"]:
        a, b = (m.split(" ", 1) if isinstance(m, str) else m)
        if a in have and b in have and a + b in vocab:
            merges.append(m)
            if a + b not in have:
                have.add(a + b)
                kept.append(a + b)
            if len(merges) >= keep_merges:
                break
    new_vocab = {t: i for i, t in enumerate(kept)}
    added = []
    for a in tok["added_tokens"]:
        a = dict(a, id=len(new_vocab) + len(added))
        added.append(a)
    out = dict(tok)
    out["model"] = dict(tok["model"], vocab=new_vocab, merges=merges)
    out["added_tokens"] = added
    if out.get("post_processor"):
        out["post_processor"] = None
    return out


LLAMA3_PATTERN = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
SEPARATOR = "\n--- tokenizer_config.json ---\n"


def seeds_tokenizer(shared):
    sources = {
        "qwen3": os.path.join(shared, "testdata", "qwen3-tiny-tok"),
        "gpt2": os.path.join(shared, "testdata", "dialogpt-tiny"),
        "tinycode": os.path.join(shared, "models", "tiny-code", "model"),
    }
    small = {}
    for name, d in sources.items():
        p = os.path.join(d, "tokenizer.json")
        if not os.path.isfile(p):
            continue
        tok = json.loads(read(p))
        small[name] = shrink_tokenizer(tok, 200)
        text = json.dumps(small[name], ensure_ascii=False, indent=1)
        put("tokenizer", f"{name}.json", text)
        cfg = os.path.join(d, "tokenizer_config.json")
        if os.path.isfile(cfg):
            put("tokenizer", f"{name}-with-config.json", text + SEPARATOR + read(cfg).decode())
    if "qwen3" in small:
        q = small["qwen3"]
        llama = dict(q, normalizer=None, pre_tokenizer={"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]})
        llama["model"] = dict(q["model"], ignore_merges=True)
        cfg = {"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<|im_end|>", "add_bos_token": True,
               "chat_template": [{"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"},
                                 {"name": "tool_use", "template": "{{ tools | tojson }}"}]}
        put("tokenizer", "llama3-style.json", json.dumps(llama, ensure_ascii=False) + SEPARATOR + json.dumps(cfg))
        smol = dict(q, normalizer={"type": "Sequence", "normalizers": [{"type": "NFC"}]}, pre_tokenizer={
            "type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                  {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}]})
        # merges as "a b" strings, the older spelling
        smol["model"] = dict(q["model"], merges=[" ".join(m) if isinstance(m, list) else m for m in q["model"]["merges"]])
        put("tokenizer", "smollm-style.json", json.dumps(smol, ensure_ascii=False))


# ---- Jinja ----

def c_string_literals(path):
    """Adjacent C string literals of a source file, joined, as bytes."""
    src = read(path).decode("utf-8")
    out, cur, last_end = [], None, -1
    for m in re.finditer(r'"((?:[^"\\\n]|\\.)*)"', src):
        gap = src[last_end:m.start()] if last_end >= 0 else "x"
        lit = m.group(1).encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1")
        if cur is not None and gap.strip() == "":
            cur += lit
        else:
            if cur is not None:
                out.append(cur)
            cur = lit
        last_end = m.end()
    if cur is not None:
        out.append(cur)
    return out


def seeds_jinja(shared):
    templates = {}
    for name, p in [("qwen3", os.path.join(shared, "testdata", "qwen3-tiny-tok", "chat_template.jinja")),
                    ("tinycode", os.path.join(shared, "models", "tiny-code", "model", "chat_template.jinja"))]:
        if os.path.isfile(p):
            templates[name] = read(p)
    cases = json.loads(read(os.path.join(shared, "testdata", "chat-template-cases.json")))
    if isinstance(cases.get("template"), str):
        templates["chat-template-cases"] = cases["template"].encode()
    for name, t in templates.items():
        put("jinja", f"{name}.jinja", t)
    test = os.path.join(ROOT, "tests", "tokenizer", "test_jinja.c")
    if os.path.isfile(test):
        seen = set()
        for lit in c_string_literals(test):
            if (b"{{" in lit or b"{%" in lit) and lit not in seen:
                seen.add(lit)
                put("jinja", "test-jinja-" + hashlib.sha1(lit).hexdigest()[:12] + ".jinja", lit)


# ---- GGUF ----

GGUF_TYPES = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8, "arr": 9,
              "u64": 10, "i64": 11, "f64": 12}
SCALAR_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_value(t, v):
    if t == 8:
        return gguf_str(v)
    if t == 9:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        for it in items:
            out += gguf_value(et, it) if et != 9 else gguf_value(9, it)
        return out
    return struct.pack(SCALAR_FMT[t], v)


def gguf_image(kvs, tensors, alignment=32, version=3):
    """kvs: list of (key, type, value); tensors: list of (name, ne list, ggml type, raw bytes)."""
    out = struct.pack("<IIQQ", 0x46554747, version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gguf_str(k) + struct.pack("<I", t) + gguf_value(t, v)
    off, blobs = 0, []
    for name, ne, gt, raw in tensors:
        out += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", gt, off)
        pad = (-len(raw)) % alignment
        blobs.append(raw + bytes(pad))
        off += len(raw) + pad
    out += bytes((-len(out)) % alignment)
    return out + b"".join(blobs)


def tiny_gguf(arch, vocab_tokens, merges):
    n_vocab, hidden, heads, kv_heads, hd, ff, layers = len(vocab_tokens), 16, 2, 1, 8, 32, 1
    kvs = [("general.architecture", 8, arch), ("general.name", 8, "tiny " + arch), ("general.file_type", 4, 0),
           ("general.alignment", 4, 32),
           (f"{arch}.context_length", 4, 64), (f"{arch}.embedding_length", 4, hidden),
           (f"{arch}.block_count", 4, layers), (f"{arch}.feed_forward_length", 4, ff),
           (f"{arch}.attention.head_count", 4, heads)]
    if arch == "gpt2":
        kvs.append((f"{arch}.attention.layer_norm_epsilon", 6, 1e-5))
    else:
        kvs += [(f"{arch}.attention.head_count_kv", 4, kv_heads), (f"{arch}.attention.key_length", 4, hd),
                (f"{arch}.attention.value_length", 4, hd), (f"{arch}.rope.dimension_count", 4, hd),
                (f"{arch}.attention.layer_norm_rms_epsilon", 6, 1e-6), (f"{arch}.rope.freq_base", 6, 1e6)]
    if arch == "qwen3moe":
        kvs += [(f"{arch}.expert_count", 4, 2), (f"{arch}.expert_used_count", 4, 1),
                (f"{arch}.expert_feed_forward_length", 4, 8)]
    if arch == "llama":
        kvs += [(f"{arch}.rope.scaling.type", 8, "linear"), (f"{arch}.rope.scaling.factor", 6, 2.0),
                (f"{arch}.vocab_size", 4, n_vocab)]
    types = [1] * n_vocab
    types[-1] = 3
    kvs += [("tokenizer.ggml.model", 8, "gpt2"), ("tokenizer.ggml.pre", 8, "qwen2" if arch != "gpt2" else "gpt-2"),
            ("tokenizer.ggml.tokens", 9, (8, vocab_tokens)), ("tokenizer.ggml.token_type", 9, (5, types)),
            ("tokenizer.ggml.merges", 9, (8, merges)), ("tokenizer.ggml.eos_token_id", 4, n_vocab - 1),
            ("tokenizer.ggml.bos_token_id", 4, n_vocab - 1), ("tokenizer.ggml.add_bos_token", 7, False),
            ("tokenizer.chat_template", 8, "{% for m in messages %}{{ m.content }}{% endfor %}"),
            ("nested.array", 9, (9, [(4, [1, 2]), (8, ["x"])]))]

    def t(name, *ne):
        n = 1
        for d in ne:
            n *= d
        return (name, list(ne), 0, struct.pack(f"<{n}f", *([0.01] * n)))

    tensors = [t("token_embd.weight", hidden, n_vocab), t("output_norm.weight", hidden)]
    if arch == "gpt2":
        tensors += [t("position_embd.weight", hidden, 64), t("output_norm.bias", hidden)]
    for layer in range(layers):
        b = f"blk.{layer}."
        if arch == "gpt2":
            tensors += [t(b + "attn_norm.weight", hidden), t(b + "attn_norm.bias", hidden),
                        t(b + "attn_qkv.weight", hidden, 3 * hidden), t(b + "attn_qkv.bias", 3 * hidden),
                        t(b + "attn_output.weight", hidden, hidden), t(b + "attn_output.bias", hidden),
                        t(b + "ffn_norm.weight", hidden), t(b + "ffn_norm.bias", hidden),
                        t(b + "ffn_up.weight", hidden, ff), t(b + "ffn_up.bias", ff),
                        t(b + "ffn_down.weight", ff, hidden), t(b + "ffn_down.bias", hidden)]
            continue
        tensors += [t(b + "attn_norm.weight", hidden), t(b + "attn_q.weight", hidden, heads * hd),
                    t(b + "attn_k.weight", hidden, kv_heads * hd), t(b + "attn_v.weight", hidden, kv_heads * hd),
                    t(b + "attn_output.weight", heads * hd, hidden), t(b + "ffn_norm.weight", hidden)]
        if arch in ("qwen3", "qwen3moe"):
            tensors += [t(b + "attn_q_norm.weight", hd), t(b + "attn_k_norm.weight", hd)]
        if arch == "qwen2":
            tensors += [t(b + "attn_q.bias", heads * hd), t(b + "attn_k.bias", kv_heads * hd),
                        t(b + "attn_v.bias", kv_heads * hd)]
        if arch == "qwen3moe":
            tensors += [t(b + "ffn_gate_inp.weight", hidden, 2), t(b + "ffn_gate_exps.weight", hidden, 8, 2),
                        t(b + "ffn_up_exps.weight", hidden, 8, 2), t(b + "ffn_down_exps.weight", 8, hidden, 2)]
        else:
            tensors += [t(b + "ffn_gate.weight", hidden, ff), t(b + "ffn_up.weight", hidden, ff),
                        t(b + "ffn_down.weight", ff, hidden)]
    if arch == "llama":
        tensors.append(t("output.weight", hidden, n_vocab))
    return gguf_image(kvs, tensors)


def seeds_gguf(shared):
    gdir = os.path.join(shared, "testdata", "gguf")
    for f in sorted(os.listdir(gdir)):
        with open(os.path.join(gdir, f), "rb") as fh:
            put("gguf", f.replace(".gguf", "-first64k.gguf"), fh.read(64 << 10))
    tok = json.loads(read(os.path.join(shared, "testdata", "dialogpt-tiny", "tokenizer.json")))
    small = shrink_tokenizer(tok, 40)
    tokens = sorted(small["model"]["vocab"], key=small["model"]["vocab"].get) + ["<|endoftext|>"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in small["model"]["merges"]]
    for arch in ("qwen3", "qwen2", "llama", "gpt2", "qwen3moe"):
        put("gguf", f"tiny-{arch}.gguf", tiny_gguf(arch, tokens, merges))
    put("gguf", "empty-v3.gguf", gguf_image([], []))
    put("gguf", "empty-v2.gguf", gguf_image([], [], version=2))
    put("gguf", "every-type.gguf", gguf_image(
        [("u8", 0, 1), ("i8", 1, -1), ("u16", 2, 2), ("i16", 3, -2), ("u32", 4, 3), ("i32", 5, -3), ("f32", 6, 0.5),
         ("bool", 7, True), ("str", 8, "héllo"), ("u64", 10, 1 << 40), ("i64", 11, -(1 << 40)), ("f64", 12, 0.25),
         ("arr.i32", 9, (5, [1, -2, 3])), ("arr.f32", 9, (6, [0.5, 1.5])), ("arr.str", 9, (8, ["a", "", "c"])),
         ("arr.arr", 9, (9, [(0, [1, 2]), (8, ["z"])])), ("arr.empty", 9, (0, [])),
         ("general.alignment", 4, 64)],
        [("q8", [32, 2], 8, bytes(34 * 2)), ("f16", [4], 1, bytes(8)), ("q4k", [256], 12, bytes(144))],
        alignment=64))


# ---- HTTP request bodies ----

def seeds_http():
    chat = [{"role": "system", "content": "You write Python."},
            {"role": "user", "content": "def add(a, b):"},
            {"role": "assistant", "content": [{"type": "text", "text": "return a + b"}]},
            {"role": "user", "content": None}]
    tools = [{"type": "function", "function": {"name": "run", "parameters": {"type": "object", "properties": {}}}}]
    openai = {
        "chat-full": {"model": "tiny-code", "messages": chat, "max_tokens": 8, "temperature": 0.7, "top_p": 0.9,
                      "top_k": 40, "min_p": 0.05, "seed": 3, "stop": ["\n\n", "###"], "presence_penalty": 0.5,
                      "frequency_penalty": 0.1, "repetition_penalty": 1.1, "logprobs": True, "top_logprobs": 3,
                      "stream": True, "stream_options": {"include_usage": True}, "tools": tools,
                      "chat_template_kwargs": {"enable_thinking": False}, "add_generation_prompt": True},
        "chat-minimal": {"messages": [{"role": "user", "content": "hi"}]},
        "completion-text": {"model": "tiny-code", "prompt": "import os\n", "max_tokens": 4, "echo": True,
                            "logprobs": 2, "stop": "\n", "ignore_eos": True, "skip_special_tokens": False},
        "completion-ids": {"prompt": [1, 2, 3, 8191], "max_completion_tokens": 2, "random_seed": 1},
        "completion-list": {"prompt": ["a", "b <|im_start|>", "\u00e9\ud83d\ude00"], "n": 1, "best_of": 1,
                            "stop_words": ["x"]},
    }
    for name, body in openai.items():
        put("openai_request", name + ".json", json.dumps(body))
    kserve = {
        "generate": {"text_input": "def f():", "parameters": {"max_tokens": 4, "temperature": 0, "stream": False}},
        "infer-json": {"id": "r1", "inputs": [
            {"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["def f():"]},
            {"name": "max_tokens", "datatype": "INT32", "shape": [1], "data": [4]},
            {"name": "temperature", "datatype": "FP32", "shape": [1, 1], "data": [[0.5]]},
            {"name": "stream", "datatype": "BOOL", "shape": [1], "data": [False]}],
            "outputs": [{"name": "text_output", "parameters": {"binary_data": False}}],
            "parameters": {"top_k": 5, "stop": ["\n"], "binary_data_output": False}},
    }
    for name, body in kserve.items():
        put("kserve_request", name + ".json", json.dumps(body))
    # Triton's binary tensor extension: the JSON header, then each input's bytes.
    text = b"print(1)"
    element = struct.pack("<I", len(text)) + text
    header = json.dumps({"inputs": [
        {"name": "text_input", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(element)}},
        {"name": "max_tokens", "datatype": "INT32", "shape": [1], "parameters": {"binary_data_size": 4}}],
        "parameters": {"binary_data_output": True}}).encode()
    body = header + element + struct.pack("<i", 3)
    put("kserve_request", "infer-binary.bin",
        b"Inference-Header-Content-Length: " + str(len(header)).encode() + b"\n" + body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    args = ap.parse_args()
    shared = os.path.abspath(args.shared)
    if not os.path.isdir(os.path.join(shared, "testdata")):
        sys.exit(f"make_corpus: {shared}/testdata not found (use --shared)")
    seeds_safetensors(shared)
    seeds_safetensors_index(shared)
    seeds_model_config(shared)
    seeds_textproto(shared)
    seeds_tokenizer(shared)
    seeds_jinja(shared)
    seeds_gguf(shared)
    seeds_http()
    for target in sorted(os.listdir(CORPUS)):
        d = os.path.join(CORPUS, target)
        files = os.listdir(d)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in files)
        print(f"{target}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()
