"""Sampling through the server: the same seed gives the same text (alone, next to other requests, and over
either protocol), different seeds differ; stop strings cut the text exactly before their first
occurrence and are never emitted, not even in part, streamed or not (the streamed chunks join to the
cut text, and chunks are never taken back); a held-back prefix is released when no stop follows; a chat
with ignore_eos runs through the end-of-turn token."""
# ctest-cost: 140
import sys
import threading

from server_harness import MODEL, Checks, Server, reference


def complete(srv, **body):
    body.setdefault("model", "tiny-code")
    status, d, raw, _ = srv.post("/v1/completions", body)
    if status != 200:
        raise AssertionError("status %d: %s" % (status, raw[:300]))
    return d["choices"][0]["text"], d["choices"][0]["finish_reason"]


def complete_stream(srv, **body):
    body.setdefault("model", "tiny-code")
    body["stream"] = True
    chunks, finish = [], None
    for ev in srv.stream("/v1/completions", body):
        if ev == "[DONE]":
            break
        for ch in ev["choices"]:
            chunks.append(ch["text"])
            finish = ch["finish_reason"] or finish
    return chunks, finish


def kserve_stream(srv, prompt, **params):
    chunks, finish = [], None
    for ev in srv.stream("/v2/models/tiny-code/generate_stream", {"text_input": prompt, "parameters": params}):
        chunks.append(ev["text_output"])
        finish = ev.get("finish_reason") or finish
    return chunks, finish


def main():
    c = Checks()
    ref = reference()
    with Server("--model", MODEL, "--context", "1024", "--kv-cache-mb", "64") as srv:
        # ---- seeds ----
        prompt = ref[0]["prompt"]
        sampled = dict(prompt=prompt, max_tokens=40, temperature=0.9, top_p=0.95, top_k=50)
        a = complete(srv, seed=1234, **sampled)[0]
        b = complete(srv, seed=1234, **sampled)[0]
        c.check(a == b, "the same seed gives the same text")
        others = [complete(srv, seed=s, **sampled)[0] for s in (1, 2, 3)]
        c.check(any(o != a for o in others), "different seeds give different texts")
        c.check("".join(complete_stream(srv, seed=1234, **sampled)[0]) == a, "the same seed streamed gives the same text")
        k = "".join(kserve_stream(srv, prompt, max_tokens=40, temperature=0.9, top_p=0.95, top_k=50, seed=1234)[0])
        c.check(k == a, "the same seed over KServe generate_stream gives the same text")
        status, d, _, _ = srv.post("/v2/models/tiny-code/infer", {
            "inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": [prompt]},
                       {"name": "random_seed", "datatype": "UINT64", "shape": [1], "data": [1234]},
                       {"name": "temperature", "datatype": "FP32", "shape": [1], "data": [0.9]},
                       {"name": "top_p", "datatype": "FP32", "shape": [1], "data": [0.95]},
                       {"name": "top_k", "datatype": "INT32", "shape": [1], "data": [50]},
                       {"name": "max_tokens", "datatype": "INT32", "shape": [1], "data": [40]}]})
        c.check(status == 200 and d["outputs"][0]["data"][0] == prompt + a,
                "the same seed as TensorRT-LLM style tensors (random_seed) gives the same text")
        # the seeded request next to eight other sampled ones
        results, threads = {}, []
        for i in range(8):
            t = threading.Thread(target=lambda i=i: results.__setitem__(i, complete(
                srv, prompt=ref[i % len(ref)]["prompt"], max_tokens=40, temperature=1.0, seed=i)))
            threads.append(t)
        seeded = threading.Thread(target=lambda: results.__setitem__("seeded", complete(srv, seed=1234, **sampled)))
        threads.insert(4, seeded)
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        c.check(results.get("seeded", ("",))[0] == a, "the same seed in a busy batch gives the same text")
        # a request that wants log-probabilities next to the seeded one (on a GPU only its row of logits goes to
        # the host; the other is drawn on the device): each gives what it gives alone
        lp_body = {"model": "tiny-code", "prompt": prompt, "max_tokens": 40, "temperature": 0.9, "logprobs": 2,
                   "seed": 7}
        solo = srv.post("/v1/completions", lp_body)[1]["choices"][0]
        pair = {}
        threads = [threading.Thread(target=lambda: pair.__setitem__("seeded", complete(srv, seed=1234, **sampled))),
                   threading.Thread(target=lambda: pair.__setitem__("lp", srv.post("/v1/completions", lp_body)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        status, d = pair.get("lp", (None, None))[:2]
        lp = d["choices"][0].get("logprobs") if status == 200 else None
        c.check(pair.get("seeded", ("",))[0] == a and lp is not None and d["choices"][0]["text"] == solo["text"]
                and len(lp["token_logprobs"]) == len(solo["logprobs"]["token_logprobs"]) > 0
                and all(abs(x - y) <= 1e-4 for x, y in zip(lp["token_logprobs"], solo["logprobs"]["token_logprobs"]))
                and all(x <= 0 for x in lp["token_logprobs"]) and all(len(t) == 2 for t in lp["top_logprobs"]),
                "log-probabilities next to a seeded request: both as alone")
        status, _, raw, _ = srv.post("/v1/completions", {"model": "tiny-code", "prompt": prompt, "max_tokens": 8,
                                                         "repetition_penalty": 1.3, "presence_penalty": 0.5,
                                                         "frequency_penalty": 0.5, "min_p": 0.05})
        c.check(status == 200, "penalties and min_p are accepted")

        # ---- stop strings ----
        cases = 0
        for case in ref[:4]:
            p, cont = case["prompt"], case["text"][len(case["prompt"]):]
            # stop strings that begin inside tokens and span token boundaries, at several places
            for start, length in ((0, 3), (5, 4), (11, 7), (len(cont) // 2, 5), (len(cont) - 6, 6)):
                stop = cont[start:start + length]
                if not stop.strip():
                    continue
                want = cont[:cont.find(stop)]
                text, finish = complete(srv, prompt=p, max_tokens=48, temperature=0, stop=stop)
                chunks, sfinish = complete_stream(srv, prompt=p, max_tokens=48, temperature=0, stop=[stop, "\x02never"])
                kchunks, kfinish = kserve_stream(srv, p, max_tokens=48, temperature=0, stop=[stop])
                ok = (text == want and finish == "stop" and "".join(chunks) == want and sfinish == "stop"
                      and "".join(kchunks) == want and kfinish == "stop")
                c.check(ok, "stop %r: cut exactly before it, streamed or not (got %r / %r)" % (stop, text, "".join(chunks)))
                cases += 1
            # a stop string whose beginning ends the text is held back, then released at the end
            tail = cont[-3:] + "\x01never"
            chunks, finish = complete_stream(srv, prompt=p, max_tokens=48, temperature=0, stop=tail)
            c.check("".join(chunks) == cont and finish == "length", "a held-back prefix is released when no stop follows")
            # the earliest of several stop strings wins
            s1, s2 = cont[20:24], cont[8:12]
            if s1.strip() and s2.strip():
                text, _ = complete(srv, prompt=p, max_tokens=48, temperature=0, stop=[s1, s2])
                c.check(text == cont[:min(cont.find(s1), cont.find(s2))], "the earliest of several stop strings wins")
        c.check(cases >= 12, "%d stop-string cases ran" % cases)
        status, d, _, _ = srv.post("/v1/completions", {"model": "tiny-code", "prompt": "x", "stop": ["a"] * 17})
        c.check(status == 400 and d["error"]["param"] == "stop", "too many stop strings are refused naming 'stop'")
        status, d, _, _ = srv.post("/v1/completions", {"model": "tiny-code", "prompt": "x", "stop": [1]})
        c.check(status == 400 and d["error"]["param"] == "stop", "a stop that is not a string is refused naming 'stop'")

        # ---- ignore_eos in a chat: the end-of-turn token does not end it either. Seeded chats that end
        # at their end of turn (seeds 2 and 27 do within 60 tokens on the CPU) run to max_tokens with it ----
        ended = []
        for seed in range(1, 41):
            chat = {"model": "tiny-code", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 60, "seed": seed}
            status, d, _, _ = srv.post("/v1/chat/completions", chat)
            if status == 200 and d["choices"][0]["finish_reason"] == "stop":
                ended.append(chat)
        c.check(len(ended) > 0, "%d of 40 seeded chats end at their end of turn" % len(ended))
        for chat in ended[:4]:
            status, d, _, _ = srv.post("/v1/chat/completions", dict(chat, ignore_eos=True))
            c.check(status == 200 and d["choices"][0]["finish_reason"] == "length" and d["usage"]["completion_tokens"] == 60,
                    "seed %d: with ignore_eos the same chat runs to max_tokens (%s)" % (chat["seed"], d["choices"][0]["finish_reason"]))
        srv.wait_idle()
    c.done()


if __name__ == "__main__":
    sys.exit(main())
