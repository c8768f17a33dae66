"""Continuous batching seen from the clients: 16 concurrent streaming requests on the tiny-code model all
complete, and with temperature 0 each one's text equals what the same request gives when it runs alone
(over both protocols). Afterwards the server is idle: nothing running or waiting, KV cache empty."""
# ctest-cost: 63
import sys
import threading

from server_harness import MODEL, Checks, Server

PROMPTS = [
    "def fibonacci(n):\n", "import numpy as np\n\n\ndef normalize(x):\n", "class Stack:\n    def __init__(self):\n",
    "def read_csv(path):\n", "import os\nimport sys\n\n", "def quicksort(items):\n", "# compute the mean\n",
    "def parse_args():\n    parser = ", "for i in range(10):\n", "def is_prime(n):\n", "with open(path) as f:\n",
    "class Config(object):\n", "def main():\n", "try:\n    import json\n", "def merge(a, b):\n",
    "if __name__ == '__main__':\n",
]


def openai_stream(srv, prompt, max_tokens):
    text, finish = [], None
    for ev in srv.stream("/v1/completions", {"model": "tiny-code", "prompt": prompt, "max_tokens": max_tokens,
                                             "temperature": 0, "stream": True}):
        if ev == "[DONE]":
            break
        if "error" in ev:
            raise RuntimeError(ev["error"])
        for ch in ev["choices"]:
            text.append(ch["text"])
            finish = ch["finish_reason"] or finish
    return "".join(text), finish


def kserve_stream(srv, prompt, max_tokens):
    text, finish = [], None
    for ev in srv.stream("/v2/models/tiny-code/generate_stream",
                         {"text_input": prompt, "parameters": {"max_tokens": max_tokens, "temperature": 0}}):
        if "error" in ev:
            raise RuntimeError(ev["error"])
        text.append(ev["text_output"])
        finish = ev.get("finish_reason") or finish
    return "".join(text), finish


def main():
    c = Checks()
    max_tokens = [24 + 4 * i for i in range(16)]  # different lengths so sequences leave the batch at different steps
    with Server("--model", MODEL, "--context", "512", "--kv-cache-mb", "64", "--max-running", "16") as srv:
        alone = [openai_stream(srv, p, n) for p, n in zip(PROMPTS, max_tokens)]
        steps_alone = srv.metrics()[("nv_inference_exec_count", "tiny-code")]
        together = [None] * 16
        errors = []

        def worker(i):
            try:
                fn = openai_stream if i % 2 == 0 else kserve_stream
                together[i] = fn(srv, PROMPTS[i], max_tokens[i])
            except Exception as e:  # reported below
                errors.append("request %d: %r" % (i, e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        c.check(not errors, "16 concurrent streams completed without error %s" % errors)
        c.check(all(t is not None for t in together), "every concurrent stream finished")
        for i in range(16):
            if together[i] is None:
                continue
            c.check(together[i][0] == alone[i][0], "stream %d (%s) equals the same request alone" % (
                i, "openai" if i % 2 == 0 else "kserve"))
            c.check(together[i][1] in ("length", "stop"), "stream %d has a finish reason" % i)
        m = srv.wait_idle()
        c.check(m[("nv_inference_request_success", "tiny-code")] == 32, "32 successful requests counted")
        c.check(m[("tessera_time_to_first_token_seconds_count", "tiny-code")] == 32, "32 first tokens timed")
        steps = m[("nv_inference_exec_count", "tiny-code")] - steps_alone
        c.check(steps < sum(max_tokens) / 2, "the concurrent requests shared engine steps (%d steps for %d tokens)" % (
            steps, sum(max_tokens)))
        c.check(srv.stop() == 0, "the server exits 0")
    c.done()


if __name__ == "__main__":
    sys.exit(main())
