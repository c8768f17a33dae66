"""tessera's tokenizer against Hugging Face `tokenizers` (PyPI) on thousands of strings: seeded random
Unicode (all planes, combining marks, emoji ZWJ sequences, whitespace runs, CRLF, contractions, digits,
special tokens), the lines and the whole of tiny-code's heldout.py.txt, for the Qwen3, GPT-2 (DialoGPT)
and tiny-code tokenizers, and for variants written here of the configurations the test data lacks:
Llama-3 (its split pattern, ignore_merges, no normalizer), SmolLM (Digits + ByteLevel) and ByteLevel
with add_prefix_space. Strings go to `tessera tokenize --jsonl` in one process per model.

Skips (exit 0 with a message) when the `tokenizers` package is not installed."""
import ctypes
import ctypes.util
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata

try:
    from tokenizers import Tokenizer, normalizers
except ImportError:
    print("SKIP: the PyPI package 'tokenizers' is not installed (pip install tokenizers)")
    sys.exit(0)

BINARY = os.environ.get("TESSERA_BINARY", "build/tessera")
SHARED = os.environ.get("TESSERA_SHARED_DIR", os.path.join(os.path.dirname(__file__), "../../../shared"))
MODELS = {
    "qwen3": os.path.join(SHARED, "testdata/qwen3-tiny-tok"),
    "gpt2": os.path.join(SHARED, "testdata/dialogpt-tiny"),
    "tiny-code": os.path.join(SHARED, "models/tiny-code/model"),
}

# The Unicode tables differ by version: utf8proc's (Unicode 15 on Debian 12), Hugging Face's regex
# engine's, and its NFC normalizer's, which is older (it does not know the combining classes of marks
# added since about Unicode 12, such as U+1ABF or U+1ACC, so it leaves them unordered). Random text keeps
# to code points on which these agree; their behaviour is otherwise defined by the version, not by us.
_utf8proc = ctypes.CDLL(ctypes.util.find_library("utf8proc") or "libutf8proc.so.2")
_utf8proc.utf8proc_category.restype = ctypes.c_int
_utf8proc.utf8proc_category.argtypes = [ctypes.c_int32]
_hf_nfc = normalizers.NFC().normalize_str


def assigned(cp):
    if _utf8proc.utf8proc_category(cp) == 0 or unicodedata.category(chr(cp)) == "Cn":
        return False
    c = chr(cp)
    return all(_hf_nfc(t) == unicodedata.normalize("NFC", t) for t in (c, "a\u035f" + c, "e" + c, c + "\u0301"))


PIECES = [
    " ", "  ", "\t", "\n", "\r\n", "\r", "   \n  \t\n   ", " \r\n ", "\t\t  ", "\n\n\n    ", "\n\n", " \n", "\u00a0", "\u3000", "\u2009", "\u0085", "\u200b", "\ufeff",
    "'s", "'S", "'re", "'LL", "'ve", "'d", "'m", "'t", "don't", "I'M", "x'ſ",
    "123", "4567", "٣٤", "Ⅻ", "½", "3.14",
    "hello", "World", "naïve", "e\u0301", "a\u0308\u0304", "\u1100\u1161\u11a8", "Å", "Ω", "ﬁ",
    "東京", "日本語", "한국어", "Привет", "مرحبا", "שלום", "ไทย", "हिन्दी",
    "👨\u200d👩\u200d👧", "🇫🇷", "👍🏽", "🦙", "❤️",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>",
    "def f(x):", "    return x", "# comment", "!=", "...", "—", "«»", "((", "))", "{}", "@@", "$$",
]


def random_string(rng):
    parts = []
    for _ in range(rng.randint(1, 12)):
        r = rng.random()
        if r < 0.45:
            parts.append(rng.choice(PIECES))
        elif r < 0.6:
            parts.append("".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randint(1, 8))))
        elif r < 0.7:
            parts.append(chr(rng.randint(0x300, 0x36F)))  # combining marks, also at odd places
        else:
            # any plane: BMP mostly, then the supplementary planes
            while True:
                hi = rng.choice([0xFFFF, 0xFFFF, 0x2FFFF, 0x10FFFF])
                cp = rng.randint(0, hi)
                if 0xD800 <= cp <= 0xDFFF or not assigned(cp):
                    continue
                break
            parts.append(chr(cp))
    return "".join(parts)


def tessera_ids(model_dir, strings):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for s in strings:
            f.write(json.dumps(s) + "\n")
        path = f.name
    try:
        out = subprocess.run([BINARY, "tokenize", "--model", model_dir, "--file", path, "--jsonl"],
                             check=True, capture_output=True).stdout.decode("utf-8")
    finally:
        os.unlink(path)
    lines = out.split("\n")[: len(strings)]
    return [[int(x) for x in line.split()] for line in lines]


LLAMA3_PATTERN = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def variants(tmp):
    """tokenizer.json variants: (name, directory)."""
    out = []
    with open(os.path.join(MODELS["qwen3"], "tokenizer.json"), encoding="utf-8") as f:
        qwen = json.load(f)
    llama = json.loads(json.dumps(qwen))
    llama["normalizer"] = None
    llama["model"]["ignore_merges"] = True
    llama["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = LLAMA3_PATTERN
    with open(os.path.join(MODELS["gpt2"], "tokenizer.json"), encoding="utf-8") as f:
        gpt2 = json.load(f)
    smollm = json.loads(json.dumps(gpt2))
    smollm["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    prefix = json.loads(json.dumps(gpt2))
    prefix["pre_tokenizer"]["add_prefix_space"] = True
    for name, tj in (("llama3-style", llama), ("smollm-style", smollm), ("prefix-space", prefix)):
        d = os.path.join(tmp, name)
        os.makedirs(d)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
        out.append((name, d))
    return out


def main():
    rng = random.Random(20260326)
    strings = [random_string(rng) for _ in range(3000)]
    with open(os.path.join(SHARED, "models/tiny-code/heldout.py.txt"), encoding="utf-8") as f:
        heldout = f.read()
    strings += heldout.split("\n")
    strings.append(heldout)
    strings.append("".join(strings[:3000]))  # one long text: exercises the per-call piece cache
    cases = json.load(open(os.path.join(SHARED, "testdata/tokenizer-cases.json"), encoding="utf-8"))
    for family in cases["cases"].values():
        strings += [c["text"] for c in family]

    tmp = tempfile.mkdtemp(prefix="tessera-tok-")
    models = list(MODELS.items()) + variants(tmp)
    failures = 0
    for name, model_dir in models:
        hf = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        ours = tessera_ids(model_dir, strings)
        bad = 0
        for s, got in zip(strings, ours):
            want = hf.encode(s, add_special_tokens=False).ids
            if got != want:
                bad += 1
                if bad <= 5:
                    print(f"[{name}] MISMATCH for {s[:120]!r}\n  hf   {want[:40]}\n  ours {got[:40]}")
        print(f"[{name}] {len(strings) - bad}/{len(strings)} strings give Hugging Face's ids")
        failures += bad
    subprocess.run(["rm", "-rf", tmp], check=False)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
