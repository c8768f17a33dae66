"""Starts `tessera serve` for a test on free ports (it binds port 0 and reports what it got), reads its
metrics, streams server-sent events with the standard library only, and stops it."""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

BINARY = os.environ.get("TESSERA_BINARY")
SOURCE = os.environ.get("TESSERA_SOURCE_DIR")
SHARED = os.environ.get("TESSERA_SHARED_DIR")
MODEL = os.path.join(SOURCE, "models", "tiny-code") if SOURCE else None


def reference():
    """The tiny-code model's greedy continuations: [{prompt, greedy_ids, text}]."""
    with open(os.path.join(SHARED, "models", "tiny-code", "reference.json")) as f:
        return json.load(f)["greedy_48"]


class Server:
    def __init__(self, *args, start_timeout=120):
        if not BINARY:
            sys.exit("TESSERA_BINARY is not set")
        self.log = tempfile.NamedTemporaryFile(prefix="tessera-serve-", suffix=".log", delete=False)
        # TESSERA_TEST_SERVE_ARGS adds options to every server the tests start (e.g. "--device cuda" on a GPU)
        extra = os.environ.get("TESSERA_TEST_SERVE_ARGS", "").split()
        self.proc = subprocess.Popen([BINARY, "serve", "--port", "0", "--metrics-port", "0", *args, *extra],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + start_timeout
        line = None
        while time.time() < deadline:
            text = self.log_text()
            m = re.search(r"serving on http://([^ ]+):(\d+) .*metrics on http://[^ ]+:(\d+)/metrics", text)
            if m:
                line = m
                break
            if self.proc.poll() is not None:
                raise RuntimeError("the server exited with %d:\n%s" % (self.proc.returncode, text))
            time.sleep(0.05)
        if not line:
            self.proc.kill()
            raise RuntimeError("the server did not start:\n" + self.log_text())
        self.host = "127.0.0.1"
        self.port = int(line.group(2))
        self.metrics_port = int(line.group(3))
        self.base = "http://%s:%d" % (self.host, self.port)

    def log_text(self):
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("the server did not stop within %d s" % timeout)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            code = self.stop()
            if code != 0 and exc[0] is None:
                # a sanitizer report or a crash shows here
                raise AssertionError("the server exited with %s; its log ends:\n%s" % (code, self.log_text()[-6000:]))
        finally:
            os.unlink(self.log.name)
        return False

    # ---- requests ----
    def request(self, method, path, body=None, headers=None, timeout=300):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return resp.status, parsed, raw, dict(resp.getheaders())

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def stream(self, path, body, timeout=300):
        """POSTs and yields each SSE data payload (parsed JSON, or the string "[DONE]")."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError("status %d: %s" % (resp.status, resp.read()[:500]))
        try:
            for line in resp:
                line = line.rstrip(b"\r\n")
                if not line.startswith(b"data: "):
                    continue
                payload = line[6:].decode()
                yield payload if payload == "[DONE]" else json.loads(payload)
        finally:
            conn.close()

    # ---- metrics ----
    def metrics(self):
        """{(name, model): value} for every sample (labels other than model are dropped)."""
        conn = http.client.HTTPConnection(self.host, self.metrics_port, timeout=30)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$', line)
            if not m:
                raise AssertionError("malformed metrics line: %r" % line)
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if "le" in labels:
                continue
            out[(m.group(1), labels.get("model"))] = float(m.group(3))
        return out

    def gauge(self, name, model="tiny-code"):
        return self.metrics()[(name, model)]

    def wait_idle(self, timeout=60, model="tiny-code"):
        """Waits until nothing runs or waits and the KV cache is empty; returns the last metrics."""
        deadline = time.time() + timeout
        while True:
            m = self.metrics()
            if (m[("tessera_num_requests_running", model)] == 0 and m[("tessera_num_requests_waiting", model)] == 0
                    and m[("tessera_kv_cache_blocks_used", model)] == 0):
                return m
            if time.time() > deadline:
                raise AssertionError("not idle after %d s: running %g, waiting %g, KV blocks %g" % (
                    timeout, m[("tessera_num_requests_running", model)], m[("tessera_num_requests_waiting", model)],
                    m[("tessera_kv_cache_blocks_used", model)]))
            time.sleep(0.05)


class Checks:
    """Counts failures so that one run reports all of them."""

    def __init__(self):
        self.failures = 0

    def check(self, ok, what):
        print(("ok:   " if ok else "FAIL: ") + what, flush=True)
        if not ok:
            self.failures += 1
        return ok

    def done(self):
        if self.failures:
            print("%d failure(s)" % self.failures)
            sys.exit(1)
        print("all passed")
