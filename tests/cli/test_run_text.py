"""`tessera run` with text prompts: the tiny-code model reproduces its reference greedy continuations
(ids and text), and qwen3-tiny-tok reproduces its reference greedy ids when its prompts are given as
text (the reference ids decoded with Hugging Face tokenizers, re-encoded by tessera)."""
# ctest-cost: 27
import json
import os
import subprocess
import sys

BIN = os.environ["TESSERA_BINARY"]
SHARED = os.environ["TESSERA_SHARED_DIR"]
SOURCE = os.environ["TESSERA_SOURCE_DIR"]


def run(args):
    out = subprocess.run([BIN, "run", "--threads", "2"] + args, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"tessera run {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def main():
    failures = 0
    ref = json.load(open(os.path.join(SHARED, "models/tiny-code/reference.json")))
    model = os.path.join(SOURCE, "models/tiny-code")
    for case in ref["greedy_48"]:
        ids = run(["--model", model, "--prompt", case["prompt"], "--max-tokens", "48", "--output", "ids", "--ignore-eos"])
        got = [int(x) for x in ids.split()]
        if got != case["greedy_ids"]:
            print(f"FAIL ids for {case['prompt']!r}: {got} != {case['greedy_ids']}")
            failures += 1
        text = run(["--model", model, "--prompt", case["prompt"], "--max-tokens", "48", "--ignore-eos"])
        if case["prompt"] + text[:-1] != case["text"]:
            print(f"FAIL text for {case['prompt']!r}: {text!r}")
            failures += 1
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("skipped the qwen3-tiny-tok part: the PyPI package 'tokenizers' is not installed")
        sys.exit(1 if failures else 0)
    model = os.path.join(SHARED, "testdata/qwen3-tiny-tok")
    hf = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    cases = json.load(open(os.path.join(model, "reference/cases.json")))["cases"]
    checked = 0
    for case in cases:
        text = hf.decode(case["input_ids"], skip_special_tokens=False)
        if hf.encode(text, add_special_tokens=False).ids != case["input_ids"]:
            continue  # ids that no text produces (random ids) cannot be a text prompt
        got = [int(x) for x in run(["--model", model, "--prompt", text, "--max-tokens", "24", "--output", "ids", "--ignore-eos"]).split()]
        for step, (g, want) in enumerate(zip(got, case["greedy_24"])):
            if case["greedy_top1_minus_top2"][step] < 1e-3:
                break
            if g != want:
                print(f"FAIL qwen3-tiny-tok greedy step {step}: {g} != {want}")
                failures += 1
                break
        checked += 1
    print(f"qwen3-tiny-tok: {checked} of {len(cases)} reference prompts are text round trips and were checked")
    if checked == 0:
        print("FAIL: no qwen3-tiny-tok case could be checked")
        failures += 1
    sys.exit(1 if failures else 0)


main()
