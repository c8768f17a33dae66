"""Encode throughput of tessera's tokenizer against Hugging Face `tokenizers` on one thread.

Builds a large mixed text (Python code, English prose, CJK, Cyrillic/Arabic, emoji), then times
`tessera tokenize --bench N` and HF's Tokenizer.encode on the same text and tokenizer.json, best of N,
and checks that both give the same ids. A benchmark, not a test: the numbers depend on the machine.

usage: python3 bench/tokenizer/bench_tokenizer.py [--binary build/tessera] [--model DIR] [--mb 8] [--reps 5]
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.environ.get("TESSERA_SHARED_DIR", os.path.join(ROOT, "..", "shared"))


def mixed_text(target_bytes, seed=7):
    with open(os.path.join(SHARED, "models/tiny-code/heldout.py.txt"), encoding="utf-8") as f:
        code = f.read()
    seeds = os.path.join(SHARED, "seeds")
    prose = "".join(open(os.path.join(seeds, n), encoding="utf-8").read() for n in sorted(os.listdir(seeds)))
    cjk = ("東京は日本の首都です。我们今天学习自然语言处理，模型的分词器需要又快又准确。"
           "한국어 텍스트도 포함됩니다. Привет, как дела? مرحبا بالعالم. ")
    emoji = "emoji: 🦙🚀👨‍👩‍👧 flags 🇫🇷🇯🇵 👍🏽 ❤️ ok! "
    rng = random.Random(seed)
    parts, size = [], 0
    while size < target_bytes:
        kind = rng.random()
        if kind < 0.4:
            start = rng.randrange(0, len(code) - 4000)
            piece = code[start:start + 4000]
        elif kind < 0.8:
            start = rng.randrange(0, max(1, len(prose) - 4000))
            piece = prose[start:start + 4000]
        elif kind < 0.95:
            piece = cjk * 8
        else:
            piece = emoji * 8
        parts.append(piece)
        size += len(piece.encode("utf-8"))
    return "".join(parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "tessera"))
    ap.add_argument("--model", default=os.path.join(SHARED, "testdata/qwen3-tiny-tok"))
    ap.add_argument("--mb", type=float, default=8)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    text = mixed_text(int(args.mb * 1e6))
    data = text.encode("utf-8")
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(data)
        path = f.name
    try:
        out = subprocess.run([args.binary, "tokenize", "--model", args.model, "--file", path,
                              "--bench", str(args.reps)], check=True, capture_output=True, text=True).stdout
        ours = dict(kv.split("=") for kv in out.split())
        ids = subprocess.run([args.binary, "tokenize", "--model", args.model, "--file", path, "--ids-only"],
                             check=True, capture_output=True, text=True).stdout.split()
    finally:
        os.unlink(path)
    print(f"text: {len(data) / 1e6:.2f} MB mixed (code, English, CJK, emoji); model {args.model}")
    print(f"tessera:             {float(ours['MB_per_s']):8.2f} MB/s  ({ours['tokens']} tokens, best of {args.reps})")

    try:
        os.environ["RAYON_NUM_THREADS"] = "1"
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        from tokenizers import Tokenizer
    except ImportError:
        print("HF tokenizers:       not installed (pip install tokenizers)")
        return
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    best = 1e30
    for _ in range(args.reps):
        t0 = time.perf_counter()
        enc = tok.encode(text, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
    hf_ids = enc.ids
    print(f"HF tokenizers {__import__('tokenizers').__version__}: {len(data) / best / 1e6:8.2f} MB/s  "
          f"({len(hf_ids)} tokens, best of {args.reps}, one thread, encode of the whole text)")
    # HF is often used on many short texts; give it that chance too (RAYON_NUM_THREADS=1 keeps it on one core)
    lines = text.split("\n")
    best_batch = 1e30
    for _ in range(args.reps):
        t0 = time.perf_counter()
        tok.encode_batch(lines, add_special_tokens=False)
        best_batch = min(best_batch, time.perf_counter() - t0)
    print(f"HF tokenizers:       {len(data) / best_batch / 1e6:8.2f} MB/s  (encode_batch of the {len(lines)} lines, one thread)")
    same = [int(x) for x in ids] == hf_ids
    print(f"same ids: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
