"""Chat requests are rendered with the model's own chat template: on a model with Qwen3's template and
tokenizer, the prompt of every reference conversation (with and without thinking, switched by the
top-level enable_thinking or by chat_template_kwargs) has exactly as many tokens as the Hugging Face
rendering in testdata/chat-template-cases.json."""
import json
import os
import sys

from server_harness import SHARED, Checks, Server


def main():
    c = Checks()
    with open(os.path.join(SHARED, "testdata", "chat-template-cases.json")) as f:
        cases = json.load(f)["cases"]
    model = os.path.join(SHARED, "testdata", "qwen3-tiny-tok")
    with Server("--model", model, "--context", "256", "--kv-cache-mb", "16") as srv:
        for i, case in enumerate(cases):
            body = {"model": "qwen3-tiny-tok", "messages": case["messages"], "max_tokens": 1, "temperature": 0}
            thinking = case.get("enable_thinking", True)
            if i % 2:
                body["chat_template_kwargs"] = {"enable_thinking": thinking}
            else:
                body["enable_thinking"] = thinking
            status, d, raw, _ = srv.post("/v1/chat/completions", body)
            got = d["usage"]["prompt_tokens"] if status == 200 else raw[:300]
            c.check(got == len(case["ids"]), "case %d (%s, thinking %s): %s prompt tokens, Hugging Face has %d" % (
                i, "/".join(m["role"] for m in case["messages"]), thinking, got, len(case["ids"])))
        # the same conversation as a completion of the rendered text gives the same count
        status, d, _, _ = srv.post("/v1/completions", {"model": "qwen3-tiny-tok", "prompt": cases[1]["text"],
                                                       "max_tokens": 1})
        c.check(status == 200 and d["usage"]["prompt_tokens"] == len(cases[1]["ids"]),
                "the rendered text, sent as a completion prompt, encodes to the reference ids' count")
    c.done()


if __name__ == "__main__":
    sys.exit(main())
