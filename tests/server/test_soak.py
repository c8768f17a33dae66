"""Soak: the server under continuous concurrent streaming load for a bounded time (TESSERA_SOAK_SECONDS,
default 20; run with 600 for the ten-minute soak), with random client cancellations and malformed requests
mixed in. Asserts: no well-formed request failed, the server never crashed (it exits 0 on SIGTERM), its
resident memory after warm-up stays flat (within 5 % or 8 MiB, whichever is larger), and at the end
nothing runs or waits and the KV cache is back to its idle value. Prints requests served, errors, and
memory at the start and the end."""
# ctest-labels: no_sanitizer
import json
import os
import random
import socket
import threading
import time

from server_harness import MODEL, Checks, Server

SECONDS = float(os.environ.get("TESSERA_SOAK_SECONDS", "20"))
CLIENTS = 6
PROMPTS = ["def add(a, b):\n", "import os\n\n", "class Node:\n    def __init__(self", "for i in range(10):\n",
           "# compute the mean\n", "def parse(text):\n    \"\"\""]
MALFORMED = [b"{", b'{"prompt": 5, "model": "tiny-code"}', b'{"model": "tiny-code", "max_tokens": "many"}',
             b"\xff\xfe", b'{"messages": "hi", "model": "tiny-code"}', b"[]" * 1000, b'{"model": "nope", "prompt": "x"}']


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = self.cancelled = self.malformed = self.failed = 0
        self.failures = []

    def add(self, field, note=None):
        with self.lock:
            setattr(self, field, getattr(self, field) + 1)
            if note and len(self.failures) < 10:
                self.failures.append(note)


def raw_post(srv, path, body, read_events=None):
    """POST over a socket; with read_events, read that many SSE events then drop the connection."""
    s = socket.create_connection((srv.host, srv.port), timeout=120)
    try:
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                  % (path.encode(), len(body)) + body)
        buf = b""
        while read_events is None or buf.count(b"data: ") < read_events:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if read_events is None and b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                m = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if m and len(rest) >= int(m[0].split(b":")[1]):
                    break
        return buf
    finally:
        s.close()


def client(srv, seed, stop_at, stats):
    rnd = random.Random(seed)
    while time.time() < stop_at:
        r = rnd.random()
        prompt = rnd.choice(PROMPTS)
        try:
            if r < 0.15:
                out = raw_post(srv, rnd.choice(["/v1/completions", "/v1/chat/completions", "/v2/models/tiny-code/infer"]),
                               rnd.choice(MALFORMED))
                status = int(out.split(b" ")[1]) if out.startswith(b"HTTP/") else 0
                if 400 <= status < 500:
                    stats.add("malformed")
                else:
                    stats.add("failed", "malformed request answered %d" % status)
            elif r < 0.35:
                body = json.dumps({"model": "tiny-code", "prompt": prompt, "max_tokens": 200, "stream": True,
                                   "temperature": 0.8, "seed": seed}).encode()
                raw_post(srv, "/v1/completions", body, read_events=rnd.randint(1, 8))
                stats.add("cancelled")
            else:
                path = rnd.choice(["/v1/completions", "/v2/models/tiny-code/generate_stream"])
                if path.startswith("/v1"):
                    body = {"model": "tiny-code", "prompt": prompt, "max_tokens": rnd.randint(4, 40), "stream": True,
                            "temperature": rnd.choice([0, 0.7])}
                else:
                    body = {"text_input": prompt, "parameters": {"max_tokens": rnd.randint(4, 40)}}
                events = list(srv.stream(path, body, timeout=120))
                last = events[-1]
                good = (last == "[DONE]") if path.startswith("/v1") else isinstance(last, dict) and "error" not in last
                if good and not any(isinstance(e, dict) and "error" in e for e in events):
                    stats.add("ok")
                else:
                    stats.add("failed", "stream ended badly: %r" % (events[-2:],))
        except Exception as e:  # a well-formed request that failed, or a dropped server
            stats.add("failed", "%s: %s" % (type(e).__name__, e))


def main():
    c = Checks()
    with Server("--model", MODEL, "--context", "1024", "--max-running", "8", "--kv-cache-mb", "64") as srv:
        idle = srv.wait_idle()
        stats = Stats()
        warm = min(5.0, SECONDS / 4)
        start = time.time()
        threads = [threading.Thread(target=client, args=(srv, i, start + SECONDS, stats)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(warm)
        rss_start = rss_bytes(srv.proc.pid)
        samples = []
        while any(t.is_alive() for t in threads):
            samples.append(rss_bytes(srv.proc.pid))
            time.sleep(0.5)
        for t in threads:
            t.join()
        end = srv.wait_idle()
        rss_end = rss_bytes(srv.proc.pid)
        print("soak: %.0f s, %d clients: %d streams served, %d cancelled mid-stream, %d malformed rejected, %d failed"
              % (SECONDS, CLIENTS, stats.ok, stats.cancelled, stats.malformed, stats.failed))
        print("resident memory after warm-up %.1f MiB, at the end %.1f MiB, peak %.1f MiB" % (
            rss_start / 1048576, rss_end / 1048576, max(samples or [rss_end]) / 1048576))
        for f in stats.failures:
            print("  failure:", f)
        c.check(stats.failed == 0, "no well-formed request failed")
        c.check(stats.ok > 0 and stats.cancelled > 0 and stats.malformed > 0, "every kind of traffic happened")
        c.check(abs(rss_end - rss_start) <= max(0.05 * rss_start, 8 << 20), "resident memory stayed flat")
        c.check(end[("tessera_kv_cache_blocks_used", "tiny-code")] == idle[("tessera_kv_cache_blocks_used", "tiny-code")],
                "the KV cache is back to its idle value")
        c.check(srv.proc.poll() is None, "the server is still running")
    c.done()


main()
