"""Faults: a model file modified in place while the server runs (requests then fail with an error that
names the file, nothing crashes, SIGTERM still exits 0); a model file replaced by a new one (the loaded
version keeps serving); a quantized file that cannot be written completely (file size limit, as a full
disk would) leaves nothing in place."""
import os
import resource
import shutil
import subprocess
import tempfile

from server_harness import BINARY, MODEL, Checks, Server


def completion(srv):
    return srv.post("/v1/completions", {"model": "tiny-code", "prompt": "def f(x):", "max_tokens": 8, "temperature": 0})


def main():
    c = Checks()
    tmp = tempfile.mkdtemp()
    try:
        model = os.path.join(tmp, "tiny-code")
        shutil.copytree(MODEL, model)
        weights = os.path.join(model, "model.safetensors")

        # replaced: a new file under the same name; the mapping keeps the old one, serving goes on
        with Server("--model", model) as srv:
            c.check(completion(srv)[0] == 200, "served before the file was replaced")
            shutil.copy(weights, weights + ".new")
            os.replace(weights + ".new", weights)
            status, body, _, _ = completion(srv)
            c.check(status == 200, "still served after the file was replaced (%d)" % status)
        # modified in place: the same file rewritten; requests fail with the reason, no crash
        with Server("--model", model) as srv:
            c.check(completion(srv)[0] == 200, "served before the file was modified")
            with open(weights, "r+b") as f:
                f.seek(1000)
                f.write(b"\0" * 16)
            os.utime(weights, None)
            import time
            time.sleep(1.0)
            status, body, raw, _ = completion(srv)
            text = raw.decode(errors="replace")
            c.check(status >= 400 and "modified in place" in text, "a request after the change fails and says why (%d %s)"
                    % (status, text[:200]))
            status, body, raw, _ = completion(srv)
            c.check(status >= 400, "and so does the next one (%d)" % status)
        c.check(True, "the server exited 0 after the file changed under it")

        # disk full while writing a quantized file: nothing half-written is left in place
        out = os.path.join(tmp, "q.gguf")

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        r = subprocess.run([BINARY, "quantize", MODEL, out, "--type", "q8_0"], capture_output=True, text=True,
                           preexec_fn=limit, timeout=300)
        c.check(r.returncode != 0, "quantize fails when the file cannot be written (%d)" % r.returncode)
        c.check("q.gguf" in r.stderr and ("File too large" in r.stderr or "write" in r.stderr),
                "the error names the file and the failure: %s" % r.stderr.strip()[-200:])
        c.check(not os.path.exists(out), "no file is left at the destination")
        c.check(not [f for f in os.listdir(tmp) if f.startswith("q.gguf")], "no temporary file is left either")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    c.done()


main()
