"""`tessera serve --model-repository`: a Triton repository with a model configured by the seed's
optimization block and parameters (unchanged), a model without config.pbtxt and two version folders
(the latest one is served), and a broken configuration that must not stop the others. Checks the
repository index, per-version endpoints, the configuration as JSON, load/unload/reload through the
repository extension (the repository is rescanned, so a fixed configuration loads), and the accelerator
resolution in the log."""
import os
import shutil
import sys
import tempfile

from server_harness import MODEL, Checks, Server

CODER = """
name: "coder"
backend: "tessera"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "text_input" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] } ]
optimization {
  execution_accelerators {
    cpu_execution_accelerator: [{
      name: "amx"
      parameters { key: "tile_size" value: "32" }
    }],
    gpu_execution_accelerator: [{
      name: "mps"
      parameters { key: "use_unified_memory" value: "true" }
    }]
  }
}

parameters: [
  { key: "MODEL_QUANTIZATION" value: { string_value: "none" } },
  { key: "PYTORCH_ENABLE_MPS_FALLBACK" value: { string_value: "1" } },
  { key: "TESSERA_CONTEXT_LENGTH" value: { string_value: "512" } }
]
"""


def main():
    c = Checks()
    repo = tempfile.mkdtemp(prefix="tessera-repo-")
    try:
        os.makedirs(os.path.join(repo, "coder"))
        with open(os.path.join(repo, "coder", "config.pbtxt"), "w") as f:
            f.write(CODER)
        os.symlink(MODEL, os.path.join(repo, "coder", "1"))
        os.makedirs(os.path.join(repo, "plain"))
        for v in ("1", "2"):
            os.symlink(MODEL, os.path.join(repo, "plain", v))
        os.makedirs(os.path.join(repo, "broken"))
        os.symlink(MODEL, os.path.join(repo, "broken", "1"))
        with open(os.path.join(repo, "broken", "config.pbtxt"), "w") as f:
            f.write('name: "broken"\nmax_batch_size: [\n')

        with Server("--model-repository", repo, "--kv-cache-mb", "16") as srv:
            status, index, _, _ = srv.post("/v2/repository/index", {})
            by = {(e["name"], e.get("version")): e for e in index}
            c.check(by.get(("coder", "1"), {}).get("state") == "READY", "coder version 1 is ready")
            c.check(by.get(("plain", "2"), {}).get("state") == "READY" and ("plain", "1") not in by,
                    "plain: only the latest of two versions is loaded")
            broken = [e for e in index if e["name"] == "broken"]
            c.check(broken and broken[0]["state"] == "UNAVAILABLE" and "config.pbtxt:" in broken[0]["reason"],
                    "broken is unavailable with the parse error as its reason: %s" % (broken[0]["reason"] if broken else None))
            c.check(srv.request("GET", "/v2/health/ready")[0] == 200, "the server is ready although one model failed")
            c.check(srv.request("GET", "/v2/models/plain/versions/2/ready")[0] == 200, "plain version 2 ready")
            c.check(srv.request("GET", "/v2/models/plain/versions/1/ready")[0] == 404, "plain version 1 is not loaded")
            status, md, _, _ = srv.request("GET", "/v2/models/plain")
            c.check(status == 200 and md["versions"] == ["2"], "plain's metadata lists version 2")
            status, cfg, _, _ = srv.request("GET", "/v2/models/coder/config")
            params = cfg.get("parameters", {}) if status == 200 else {}
            c.check(params.get("MODEL_QUANTIZATION", {}).get("string_value") == "none"
                    and params.get("TESSERA_CONTEXT_LENGTH", {}).get("string_value") == "512"
                    and params.get("TESSERA_QUANTIZATION", {}).get("string_value") == "none"
                    and cfg.get("backend") == "tessera" and cfg.get("model_transaction_policy") == {"decoupled": True},
                    "coder's configuration comes back as JSON with its parameters honoured")
            status, d, _, _ = srv.post("/v2/models/coder/generate", {"text_input": "def add(a, b):\n",
                                                                     "parameters": {"max_tokens": 8}})
            c.check(status == 200 and len(d["text_output"]) > len("def add(a, b):\n"), "coder generates")
            status, d, _, _ = srv.post("/v2/models/plain/versions/2/infer", {
                "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["import os\n"]}]})
            c.check(status == 200 and d["model_version"] == "2", "infer by version answers from version 2")
            status, d, _, _ = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 2})
            c.check(status == 400 and d["error"]["param"] == "model", "OpenAI requests must name one of several models")
            status, d, _, _ = srv.request("GET", "/v1/models")
            c.check(sorted(m["id"] for m in d["data"]) == ["coder", "plain"], "OpenAI lists the loaded models")

            c.check(srv.post("/v2/repository/models/plain/unload", {})[0] == 200, "unload plain")
            status, index, _, _ = srv.post("/v2/repository/index", {})
            plain = [e for e in index if e["name"] == "plain"]
            c.check(all(e["state"] == "UNAVAILABLE" and e["reason"] == "unloaded" for e in plain) and plain,
                    "plain is unavailable after the unload")
            c.check(srv.post("/v2/repository/models/plain/load", {})[0] == 200, "load plain again")
            c.check(srv.request("GET", "/v2/models/plain/ready")[0] == 200, "plain is ready again")
            status, d, _, _ = srv.post("/v2/repository/models/broken/load", {})
            c.check(status == 400 and "config.pbtxt" in d["error"], "loading the broken model fails with the reason")
            with open(os.path.join(repo, "broken", "config.pbtxt"), "w") as f:
                f.write('name: "broken"\nmax_batch_size: 0\n')
            c.check(srv.post("/v2/repository/models/broken/load", {})[0] == 200, "once fixed on disk, it loads")
            c.check(srv.request("GET", "/v2/models/broken/ready")[0] == 200, "the fixed model is ready")
            status, d, _, _ = srv.post("/v2/repository/index", {"ready": True})
            c.check(sorted(e["name"] for e in d) == ["broken", "coder", "plain"], "the index of ready models")
            log = srv.log_text()
            c.check("mps" in log and "Metal" in log, "the log says why mps was passed over")
        c.check(True, "the server exited 0")
    finally:
        shutil.rmtree(repo)
    c.done()


if __name__ == "__main__":
    sys.exit(main())
