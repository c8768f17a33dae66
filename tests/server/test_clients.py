"""The official clients against `tessera serve`: Triton's tritonclient (HTTP: health, metadata,
configuration, infer with text_input/text_output in JSON and in binary tensor form, the repository
index) and OpenAI's openai library (models, completions and chat, streamed and not). Greedy outputs are
compared with the tiny-code model's reference continuations."""
import sys

from server_harness import MODEL, Checks, Server, reference

try:
    import numpy as np
    import tritonclient.http as triton
except ImportError as e:
    triton = None
    triton_missing = str(e)
try:
    import openai
except ImportError as e:
    openai = None
    openai_missing = str(e)


def run_triton(srv, c, ref):
    client = triton.InferenceServerClient("127.0.0.1:%d" % srv.port)
    c.check(client.is_server_live(), "tritonclient: server live")
    c.check(client.is_server_ready(), "tritonclient: server ready")
    c.check(client.is_model_ready("tiny-code"), "tritonclient: model ready")
    c.check(not client.is_model_ready("nosuch"), "tritonclient: unknown model not ready")
    meta = client.get_server_metadata()
    c.check(meta["name"] == "tessera" and "generate" in meta["extensions"], "tritonclient: server metadata")
    md = client.get_model_metadata("tiny-code")
    c.check(md["name"] == "tiny-code" and md["inputs"][0] == {"name": "text_input", "datatype": "BYTES", "shape": [-1]}
            and md["outputs"][0]["name"] == "text_output", "tritonclient: model metadata")
    cfg = client.get_model_config("tiny-code")
    c.check(cfg["name"] == "tiny-code" and cfg["input"][0]["data_type"] == "TYPE_STRING", "tritonclient: model config")
    index = client.get_model_repository_index()
    c.check(index == [{"name": "tiny-code", "version": "1", "state": "READY", "reason": ""}], "tritonclient: repository index")

    case = ref[0]
    prompts = np.array([case["prompt"].encode()], dtype=np.object_)
    for binary in (True, False):
        text = triton.InferInput("text_input", [1], "BYTES")
        text.set_data_from_numpy(prompts, binary_data=binary)
        max_tokens = triton.InferInput("max_tokens", [1], "INT32")
        max_tokens.set_data_from_numpy(np.array([48], dtype=np.int32), binary_data=binary)
        out = triton.InferRequestedOutput("text_output", binary_data=binary)
        result = client.infer("tiny-code", [text, max_tokens], outputs=[out], request_id="r%d" % binary,
                              parameters={"temperature": 0})
        got = result.as_numpy("text_output")[0]
        got = got.decode() if isinstance(got, bytes) else got
        c.check(got == case["text"], "tritonclient: infer (%s tensors) gives the reference text" % (
            "binary" if binary else "JSON"))
        c.check(result.get_response()["id"] == "r%d" % binary, "tritonclient: request id echoed")
    # a batch of two prompts in one tensor, outputs in binary form without naming them
    two = triton.InferInput("text_input", [2], "BYTES")
    two.set_data_from_numpy(np.array([ref[0]["prompt"].encode(), ref[1]["prompt"].encode()], dtype=np.object_))
    result = client.infer("tiny-code", [two], parameters={"max_tokens": 48, "exclude_input_in_output": True})
    got = [x.decode() for x in result.as_numpy("text_output")]
    c.check(got == [ref[0]["text"][len(ref[0]["prompt"]):], ref[1]["text"][len(ref[1]["prompt"]):]],
            "tritonclient: two prompts in one request, each its reference continuation")
    try:
        client.infer("nosuch", [two])
        c.check(False, "tritonclient: unknown model raises")
    except Exception as e:  # InferenceServerException
        c.check("nosuch" in str(e), "tritonclient: unknown model raises with the name: %s" % e)


def run_openai(srv, c, ref):
    client = openai.OpenAI(base_url=srv.base + "/v1", api_key="unused", max_retries=0)
    models = client.models.list()
    c.check([m.id for m in models.data] == ["tiny-code"], "openai: models.list")
    case = ref[0]
    cont = case["text"][len(case["prompt"]):]
    r = client.completions.create(model="tiny-code", prompt=case["prompt"], max_tokens=48, temperature=0)
    c.check(r.choices[0].text == cont and r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 48,
            "openai: completions give the reference continuation")
    chunks = list(client.completions.create(model="tiny-code", prompt=case["prompt"], max_tokens=48, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    c.check(text == cont, "openai: streamed completions join to the reference continuation")
    c.check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 48, "openai: usage in the last chunk")
    c.check([ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length", "openai: finish_reason streamed")

    r = client.completions.create(model="tiny-code", prompt=[case["prompt"], ref[1]["prompt"]], max_tokens=48,
                                  temperature=0)
    c.check(sorted((ch.index, ch.text) for ch in r.choices) == [(0, cont), (1, ref[1]["text"][len(ref[1]["prompt"]):])],
            "openai: a list of prompts gives one choice each")

    messages = [{"role": "system", "content": "You write Python."}, {"role": "user", "content": "Parse a CSV file."}]
    r = client.chat.completions.create(model="tiny-code", messages=messages, max_tokens=24, temperature=0)
    full = r.choices[0].message.content
    c.check(r.choices[0].message.role == "assistant" and len(full) > 0 and r.choices[0].finish_reason in ("stop", "length"),
            "openai: chat completion")
    stream = client.chat.completions.create(model="tiny-code", messages=messages, max_tokens=24, temperature=0,
                                            stream=True, logprobs=True, top_logprobs=2)
    parts, lps, finish = [], [], None
    for ch in stream:
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        if d.content:
            parts.append(d.content)
        if ch.choices[0].logprobs and ch.choices[0].logprobs.content:
            lps.extend(ch.choices[0].logprobs.content)
        finish = ch.choices[0].finish_reason or finish
    c.check("".join(parts) == full, "openai: streamed chat equals the unstreamed one")
    c.check(finish == r.choices[0].finish_reason, "openai: streamed chat finish_reason")
    c.check(len(lps) == r.usage.completion_tokens - (1 if finish == "stop" else 0)
            and all(len(x.top_logprobs) == 2 and x.logprob <= 0 for x in lps)
            and "".join(x.token for x in lps) == full, "openai: chat logprobs cover the text token by token")
    try:
        client.completions.create(model="tiny-code", prompt="x", max_tokens="ten")
        c.check(False, "openai: a wrong type is refused")
    except openai.BadRequestError as e:
        c.check(e.status_code == 400 and "max_tokens" in str(e), "openai: a wrong type is a 400 naming the field")
    try:
        client.completions.create(model="nosuch", prompt="x")
        c.check(False, "openai: an unknown model is refused")
    except openai.NotFoundError as e:
        c.check(e.status_code == 404, "openai: an unknown model is a 404")


def main():
    c = Checks()
    ref = reference()
    if triton is None:
        print("SKIP: tritonclient cannot be imported (%s); pip install -r tests/requirements.txt" % triton_missing)
    if openai is None:
        print("SKIP: openai cannot be imported (%s); pip install -r tests/requirements.txt" % openai_missing)
    with Server("--model", MODEL, "--context", "1024", "--kv-cache-mb", "64") as srv:
        if triton is not None:
            run_triton(srv, c, ref)
        if openai is not None:
            run_openai(srv, c, ref)
        c.check(srv.stop() == 0, "the server exits 0 on SIGTERM")
    c.done()


if __name__ == "__main__":
    sys.exit(main())
