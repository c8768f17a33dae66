#!/usr/bin/env python3
"""Serving benchmark: drives an already running `tessera serve` (or any OpenAI-compatible or Triton
generate_stream server) with N concurrent streaming clients, for N = 1, 2, 4, 8, 16, 32 by default, and
prints per N the aggregate generated tokens per second, time to first token and inter-token latency
(p50 and p99), and the throughput relative to one client. It starts nothing itself.

Each client runs a closed loop: it sends a streaming request, reads it to the end, and sends the next.
Generation lengths are fixed (ignore_eos) so that every N does the same work per request. Tokens are
counted from the usage the server reports; inter-token latency is measured between streamed chunks
(one token each unless a character spans tokens or a stop string holds text back).

Standard library only:  python3 bench/serving/bench_serving.py --url http://127.0.0.1:8000
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "def fibonacci(n):\n", "import numpy as np\n\n\ndef normalize(x):\n", "class Stack:\n    def __init__(self):\n",
    "def read_csv(path):\n", "import os\nimport sys\n\n", "def quicksort(items):\n", "def parse_args():\n",
    "for i in range(10):\n", "def is_prime(n):\n", "class Config(object):\n", "def main():\n", "def merge(a, b):\n",
]


def percentile(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Client:
    def __init__(self, url, api, model, max_tokens, api_key):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port or 80
        self.api, self.model, self.max_tokens = api, model, max_tokens
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = "Bearer " + api_key

    def one(self, prompt):
        """Returns (ttft, [chunk gaps], completion tokens, seconds)."""
        if self.api == "openai":
            path = "/v1/completions"
            body = {"model": self.model, "prompt": prompt, "max_tokens": self.max_tokens, "temperature": 0,
                    "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
        else:
            path = "/v2/models/%s/generate_stream" % self.model
            body = {"text_input": prompt, "parameters": {"max_tokens": self.max_tokens, "ignore_eos": True,
                                                         "temperature": 0}}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        t0 = time.perf_counter()
        conn.request("POST", path, body=json.dumps(body).encode(), headers=self.headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError("HTTP %d: %s" % (resp.status, resp.read()[:300]))
        first, last, gaps, tokens = None, None, [], 0
        for line in resp:
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].strip()
            if payload == b"[DONE]":
                break
            ev = json.loads(payload)
            if "error" in ev:
                raise RuntimeError(str(ev["error"]))
            if self.api == "openai":
                if ev.get("usage"):
                    tokens = ev["usage"]["completion_tokens"]
                has_text = any(ch.get("text") for ch in ev.get("choices", []))
            else:
                if "completion_tokens" in ev:
                    tokens = ev["completion_tokens"]
                has_text = bool(ev.get("text_output"))
            if has_text:
                now = time.perf_counter()
                if first is None:
                    first = now
                else:
                    gaps.append(now - last)
                last = now
        conn.close()
        end = time.perf_counter()
        return (first - t0 if first else float("nan")), gaps, tokens, end - t0


def engine_counters(metrics_url, model):
    """(steps, busy seconds, generated tokens) of the model from a tessera metrics endpoint, or None."""
    if not metrics_url:
        return None
    u = urllib.parse.urlparse(metrics_url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
    conn.request("GET", u.path or "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    want = {"nv_inference_exec_count": 0, "tessera_engine_busy_seconds_total": 1, "tessera_generation_tokens_total": 2}
    out = [0.0, 0.0, 0.0]
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name in want and 'model="%s"' % model in line:
            out[want[name]] = float(line.rsplit(" ", 1)[1])
    return out


def run_level(client, n, requests_per_client):
    results, errors = [], []
    lock = threading.Lock()

    def worker(w):
        for r in range(requests_per_client):
            try:
                out = client.one(PROMPTS[(w * requests_per_client + r) % len(PROMPTS)])
                with lock:
                    results.append(out)
            except Exception as e:  # counted and reported
                with lock:
                    errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r[2] for r in results)
    ttft = [r[0] for r in results]
    gaps = [g for r in results for g in r[1]]
    return {"clients": n, "requests": len(results), "errors": len(errors), "first_error": errors[0] if errors else None,
            "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall if wall > 0 else 0.0,
            "ttft_p50_ms": 1e3 * percentile(ttft, 0.5), "ttft_p99_ms": 1e3 * percentile(ttft, 0.99),
            "itl_p50_ms": 1e3 * percentile(gaps, 0.5), "itl_p99_ms": 1e3 * percentile(gaps, 0.99)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--api", choices=["openai", "kserve"], default="openai")
    ap.add_argument("--model", help="model name (default: the first of /v1/models)")
    ap.add_argument("--clients", default="1,2,4,8,16,32", help="comma-separated concurrency levels")
    ap.add_argument("--requests-per-client", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--api-key")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--metrics-url", help="tessera's metrics endpoint (e.g. http://127.0.0.1:8002/metrics): adds the "
                    "engine's steps, mean batch, step time and busy fraction per level")
    args = ap.parse_args()
    u = urllib.parse.urlparse(args.url)
    model = args.model
    if not model:
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
        headers = {"Authorization": "Bearer " + args.api_key} if args.api_key else {}
        conn.request("GET", "/v1/models", headers=headers)
        model = json.loads(conn.getresponse().read())["data"][0]["id"]
        conn.close()
    client = Client(args.url, args.api, model, args.max_tokens, args.api_key)
    client.one(PROMPTS[0])  # warm-up
    levels = [int(x) for x in args.clients.split(",")]
    print("model %s, %s API, %d tokens per request, %d requests per client" % (
        model, args.api, args.max_tokens, args.requests_per_client))
    extra = " %7s %9s %8s %6s" % ("steps", "batch", "step ms", "busy") if args.metrics_url else ""
    print("%7s %8s %8s %8s %10s %8s %10s %10s %10s %10s%s" % (
        "clients", "requests", "tokens", "wall s", "tokens/s", "speedup", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99",
        extra))
    rows, base = [], None
    for n in levels:
        before = engine_counters(args.metrics_url, model)
        row = run_level(client, n, args.requests_per_client)
        after = engine_counters(args.metrics_url, model)
        base = base or row["tokens_per_s"]
        row["speedup"] = row["tokens_per_s"] / base if base else float("nan")
        extra = ""
        if before and after:
            steps, busy, gen = (a - b for a, b in zip(after, before))
            row.update(engine_steps=steps, engine_busy_s=busy, mean_batch=gen / steps if steps else 0.0,
                       step_ms=1e3 * busy / steps if steps else 0.0, busy_fraction=busy / row["wall_s"])
            extra = " %7d %9.2f %8.2f %5.0f%%" % (steps, row["mean_batch"], row["step_ms"], 100 * row["busy_fraction"])
        rows.append(row)
        print("%7d %8d %8d %8.2f %10.1f %7.2fx %8.1fms %8.1fms %8.1fms %8.1fms%s%s" % (
            n, row["requests"], row["tokens"], row["wall_s"], row["tokens_per_s"], row["speedup"], row["ttft_p50_ms"],
            row["ttft_p99_ms"], row["itl_p50_ms"], row["itl_p99_ms"], extra,
            "  (%d errors: %s)" % (row["errors"], row["first_error"]) if row["errors"] else ""), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model, "api": args.api, "max_tokens": args.max_tokens, "levels": rows}, f, indent=1)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
