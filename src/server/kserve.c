/* KServe v2 / Triton HTTP: health, server and model metadata, model readiness and configuration,
 * inference with text_input -> text_output BYTES tensors (JSON or binary tensor data), Triton's
 * generate extension (/generate, /generate_stream as server-sent events) and its model repository
 * extension (index, load, unload). Errors are {"error": "..."}.
 *
 * Generation inputs follow Triton's LLM backends: sampling values come from the request's
 * `parameters`, from scalar input tensors of the same names (TensorRT-LLM style: max_tokens,
 * temperature, top_k, top_p, random_seed, stop_words ...), or from a `sampling_parameters` JSON string
 * (vLLM backend style). As in both backends, a non-streamed text_output starts with the prompt unless
 * exclude_input_in_output is true; streamed responses carry only generated text. max_tokens defaults
 * to 16, as in vLLM. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/gen_set.h"
#include "server/kserve_tensor.h"
#include "server/prompt.h"
#include "server/server_internal.h"

#define TESSERA_VERSION "0.1.0"
#define DEFAULT_MAX_TOKENS 16

void ts_kserve_error(ts_http_request *r, const ts_api_error *e) {
    json_t *body = json_object();
    json_object_set_new(body, "error", json_string(e->message));
    if (e->status == 503) ts_http_add_header(r, "Retry-After", "1");
    ts_respond_json(r, e->status, body);
}

static void fail(ts_http_request *r, int status, const char *fmt, const char *arg) {
    ts_api_error e;
    ts_api_fail(&e, status, NULL, fmt, arg);
    ts_kserve_error(r, &e);
}

static void server_metadata(ts_server *s, ts_http_request *r) {
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(s->name));
    json_object_set_new(o, "version", json_string(TESSERA_VERSION));
    json_t *ext = json_array();
    static const char *const names[] = {"binary_tensor_data", "parameters", "model_configuration", "model_repository",
                                        "generate"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) json_array_append_new(ext, json_string(names[i]));
    json_object_set_new(o, "extensions", ext);
    ts_respond_json(r, 200, o);
}

/* Triton's data_type names ("TYPE_STRING") to the protocol's datatypes ("BYTES"). */
static const char *datatype_of(const char *config_type) {
    if (!config_type) return "BYTES";
    if (!strcmp(config_type, "TYPE_STRING")) return "BYTES";
    if (!strncmp(config_type, "TYPE_", 5)) return config_type + 5;
    return config_type;
}

static json_t *tensor_metadata(const json_t *list, int batch) {
    json_t *out = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(list, i, t) {
        json_t *o = json_object();
        json_object_set(o, "name", json_object_get(t, "name"));
        json_object_set_new(o, "datatype", json_string(datatype_of(json_string_value(json_object_get(t, "data_type")))));
        json_t *shape = json_array();
        if (batch) json_array_append_new(shape, json_integer(-1));
        size_t k;
        const json_t *d;
        json_array_foreach(json_object_get(t, "dims"), k, d) json_array_append(shape, (json_t *)d);
        json_object_set_new(o, "shape", shape);
        json_array_append_new(out, o);
    }
    return out;
}

typedef struct versions_ctx {
    const char *name;
    json_t *list;
} versions_ctx;

static void collect_versions(void *p, ts_served_model *m) {
    versions_ctx *c = p;
    if (!strcmp(m->name, c->name)) json_array_append_new(c->list, json_string(m->inst.version));
}

static void model_metadata(ts_server *s, ts_http_request *r, ts_served_model *m) {
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(m->name));
    versions_ctx vc = {m->name, json_array()};
    ts_registry_foreach(s->reg, collect_versions, &vc);
    json_object_set_new(o, "versions", vc.list);
    json_object_set_new(o, "platform", json_string(m->inst.platform));
    const json_t *cfg = m->inst.config;
    int batch = json_integer_value(json_object_get(cfg, "max_batch_size")) > 0;
    json_object_set_new(o, "inputs", tensor_metadata(json_object_get(cfg, "input"), batch));
    json_object_set_new(o, "outputs", tensor_metadata(json_object_get(cfg, "output"), batch));
    ts_respond_json(r, 200, o);
}

/* ---- generation requests ---- */

typedef struct kv_req {
    int stream, binary_output, exclude_input, n;
    char model[TS_MODEL_NAME_MAX], version[32];
    char *id;
    ts_gen_set *set;
    ts_sbuf text[TS_MAX_CHOICES];
    char *prompt_text[TS_MAX_CHOICES];
    size_t prompt_len[TS_MAX_CHOICES];
    const char *finish_reason[TS_MAX_CHOICES];
    int64_t shape[TS_KSERVE_MAX_DIMS];
    int ndim;
    ts_api_error error;
    int failed;
} kv_req;

static void kv_req_free(void *p) {
    kv_req *q = p;
    for (int i = 0; i < TS_MAX_CHOICES; i++) {
        ts_sbuf_free(&q->text[i]);
        free(q->prompt_text[i]);
    }
    free(q->id);
    free(q);
}

static json_t *response_frame(const kv_req *q) {
    json_t *o = json_object();
    if (q->id) json_object_set_new(o, "id", json_string(q->id));
    json_object_set_new(o, "model_name", json_string(q->model));
    json_object_set_new(o, "model_version", json_string(q->version));
    return o;
}

static void on_chunk(void *ctx, int index, const ts_gen_chunk *ch, ts_sbuf *out) {
    kv_req *q = ctx;
    if (!q->stream) {
        ts_sbuf_append(&q->text[index], ch->text, ch->len);
        if (ch->finished) {
            q->finish_reason[index] = ch->finish_reason;
            if (ch->error && !q->failed) {
                q->failed = 1;
                ts_api_fail(&q->error, ch->error_status ? ch->error_status : 500, NULL, "%s", ch->error);
            }
        }
        return;
    }
    if (ch->len > 0) {
        json_t *o = response_frame(q);
        json_object_set_new(o, "text_output", json_stringn(ch->text, ch->len));
        ts_sse_data(out, o);
        json_decref(o);
    }
    if (ch->finished) {
        json_t *o;
        if (ch->error) {
            o = json_object();
            json_object_set_new(o, "error", json_string(ch->error));
        } else {
            o = response_frame(q);
            json_object_set_new(o, "text_output", json_string(""));
            json_object_set_new(o, "finish_reason", json_string(ch->finish_reason));
            json_object_set_new(o, "prompt_tokens", json_integer(ts_gen_prompt_tokens(q->set->gens[index])));
            json_object_set_new(o, "completion_tokens", json_integer(ts_gen_completion_tokens(q->set->gens[index])));
        }
        ts_sse_data(out, o);
        json_decref(o);
    }
}

static void on_end(void *ctx, ts_sbuf *out) {
    (void)ctx;
    (void)out;
}

/* The full text of choice i: the prompt first unless excluded. */
static json_t *output_text(const kv_req *q, int i) {
    ts_sbuf joined;
    ts_sbuf_init(&joined);
    if (!q->exclude_input) ts_sbuf_append(&joined, q->prompt_text[i], q->prompt_len[i]);
    ts_sbuf_append(&joined, ts_sbuf_str(&q->text[i]), q->text[i].len);
    json_t *s = json_stringn(ts_sbuf_str(&joined), joined.len);
    if (!s) s = json_string(""); /* a prompt that is not UTF-8 only reaches here through binary input */
    ts_sbuf_free(&joined);
    return s;
}

/* Sampling values from an object; `prefix` names the place in errors. Also exclude_input_in_output
 * and a vLLM-style sampling_parameters JSON string. */
static int read_params(const json_t *obj, const char *prefix, ts_gen_params *p, kv_req *q, ts_api_error *e) {
    if (!obj) return 0;
    if (ts_gen_params_read(obj, prefix, p, e)) return -1;
    char name[96];
    int bv, found;
    snprintf(name, sizeof name, "%sexclude_input_in_output", prefix);
    if (ts_field_bool(obj, "exclude_input_in_output", name, &bv, &found, e)) return -1;
    if (found) q->exclude_input = bv;
    snprintf(name, sizeof name, "%sbeam_width", prefix);
    long long beams;
    if (ts_field_int(obj, "beam_width", name, 1, 1, &beams, &found, e)) return -1;
    const char *sp = NULL;
    snprintf(name, sizeof name, "%ssampling_parameters", prefix);
    if (ts_field_string(obj, "sampling_parameters", name, &sp, &found, e)) return -1;
    if (found) {
        json_t *inner = ts_api_parse_object(sp, strlen(sp), e);
        if (!inner) {
            char msg[TS_ERROR_MAX];
            snprintf(msg, sizeof msg, "%s", e->message);
            return ts_api_fail(e, 400, name, "'%s': %s", name, msg);
        }
        snprintf(name, sizeof name, "%ssampling_parameters.", prefix);
        int rc = read_params(inner, name, p, q, e);
        json_decref(inner);
        if (rc) return -1;
    }
    return 0;
}

/* Inputs other than text_input become parameters, as Triton's LLM backends define them. */
static int tensor_params(const ts_kserve_request *req, ts_gen_params *p, kv_req *q, ts_api_error *e) {
    static const char *const scalar_names[] = {
        "max_tokens", "temperature", "top_k", "top_p", "min_p", "seed", "random_seed", "repetition_penalty",
        "presence_penalty", "frequency_penalty", "stream", "exclude_input_in_output", "ignore_eos", "beam_width",
        "end_id", "pad_id", "return_log_probs", "return_context_logits", "return_generation_logits",
        "return_kv_cache_reuse_stats", "min_tokens", "min_length", "length_penalty", "len_penalty"};
    static const char *const string_names[] = {"stop", "stop_words", "bad_words", "sampling_parameters"};
    json_t *obj = json_object();
    for (int i = 0; i < req->num_inputs; i++) {
        const ts_kserve_tensor *t = &req->inputs[i];
        if (!strcmp(t->name, "text_input")) continue;
        int known = 0;
        for (size_t k = 0; k < sizeof scalar_names / sizeof scalar_names[0] && !known; k++) {
            if (strcmp(t->name, scalar_names[k]) != 0) continue;
            known = 1;
            json_t *v = ts_kserve_scalar(t, e);
            if (!v) goto fail;
            json_object_set_new(obj, t->name, v);
        }
        for (size_t k = 0; k < sizeof string_names / sizeof string_names[0] && !known; k++) {
            if (strcmp(t->name, string_names[k]) != 0) continue;
            known = 1;
            json_t *list = json_array();
            for (int64_t j = 0; j < t->count; j++) {
                const char *s;
                size_t len;
                if (ts_kserve_bytes_at(t, j, &s, &len, e)) {
                    json_decref(list);
                    goto fail;
                }
                json_t *str = json_stringn(s, len);
                if (!str) {
                    json_decref(list);
                    ts_api_fail(e, 400, t->name, "input '%s' is not UTF-8 text", t->name);
                    goto fail;
                }
                json_array_append_new(list, str);
            }
            if (!strcmp(t->name, "sampling_parameters")) {
                json_object_set(obj, t->name, json_array_size(list) ? json_array_get(list, 0) : json_string("{}"));
                json_decref(list);
            } else {
                json_object_set_new(obj, t->name, list);
            }
        }
        if (!known) {
            ts_api_fail(e, 400, t->name, "unexpected input '%s' (the model takes text_input and generation parameters)",
                        t->name);
            goto fail;
        }
    }
    const json_t *bad = json_object_get(obj, "bad_words");
    size_t bi;
    const json_t *bw;
    json_array_foreach(bad, bi, bw) if (json_string_length(bw) > 0) {
        ts_api_fail(e, 400, "bad_words", "bad_words is not supported");
        goto fail;
    }
    json_object_del(obj, "bad_words");
    if (json_is_true(json_object_get(obj, "stream"))) {
        ts_api_fail(e, 400, "stream", "streaming needs the generate_stream endpoint");
        goto fail;
    }
    if (read_params(obj, "", p, q, e)) goto fail;
    json_decref(obj);
    return 0;
fail:
    json_decref(obj);
    return -1;
}

/* Runs the prepared request: streams, or collects and answers in the endpoint's shape. */
static void run(ts_server *s, ts_http_request *r, ts_served_model *m, kv_req *q, ts_gen_params *p, int infer,
                int32_t **prompts, int *lens) {
    ts_api_error e = {0};
    ts_gen_set *set = calloc(1, sizeof *set);
    if (!set) {
        for (int i = 0; i < q->n; i++) free(prompts[i]);
        ts_gen_params_free(p);
        ts_registry_release(s->reg, m);
        kv_req_free(q);
        fail(r, 503, "%s", "out of memory");
        return;
    }
    ts_gen_set_init(set, s->reg, m, p);
    q->set = set;
    int rc = ts_gen_set_start(set, prompts, lens, q->n, 1, ts_http_arrival(r), &e);
    for (int i = 0; i < q->n; i++) free(prompts[i]);
    if (rc) {
        ts_gen_set_free(set);
        free(set);
        kv_req_free(q);
        ts_kserve_error(r, &e);
        return;
    }
    if (q->stream) {
        ts_gen_set_stream(r, set, on_chunk, on_end, kv_req_free, q);
        return;
    }
    if (ts_gen_set_collect(set, ts_http_request_fd(r), on_chunk, q) != 0) {
        fail(r, 400, "%s", "the client went away");
    } else if (q->failed) {
        ts_kserve_error(r, &q->error);
    } else if (!infer) {
        json_t *o = response_frame(q);
        json_object_set_new(o, "text_output", output_text(q, 0));
        json_object_set_new(o, "finish_reason", json_string(q->finish_reason[0] ? q->finish_reason[0] : "stop"));
        json_object_set_new(o, "prompt_tokens", json_integer(ts_gen_prompt_tokens(set->gens[0])));
        json_object_set_new(o, "completion_tokens", json_integer(ts_gen_completion_tokens(set->gens[0])));
        ts_respond_json(r, 200, o);
    } else {
        json_t *o = response_frame(q);
        json_t *out = json_object();
        json_object_set_new(out, "name", json_string("text_output"));
        json_object_set_new(out, "datatype", json_string("BYTES"));
        json_t *shape = json_array();
        for (int d = 0; d < q->ndim; d++) json_array_append_new(shape, json_integer(q->shape[d]));
        json_object_set_new(out, "shape", shape);
        ts_sbuf binary;
        ts_sbuf_init(&binary);
        json_t *data = json_array();
        for (int i = 0; i < q->n; i++) {
            json_t *text = output_text(q, i);
            if (q->binary_output) ts_kserve_append_bytes_element(&binary, json_string_value(text), json_string_length(text));
            json_array_append_new(data, text);
        }
        if (q->binary_output) {
            json_t *params = json_object();
            json_object_set_new(params, "binary_data_size", json_integer((json_int_t)binary.len));
            json_object_set_new(out, "parameters", params);
            json_decref(data);
        } else {
            json_object_set_new(out, "data", data);
        }
        json_t *outputs = json_array();
        json_array_append_new(outputs, out);
        json_object_set_new(o, "outputs", outputs);
        if (q->binary_output) {
            char *header = json_dumps(o, JSON_COMPACT);
            ts_sbuf body;
            ts_sbuf_init(&body);
            if (header) ts_sbuf_puts(&body, header);
            char hl[32];
            snprintf(hl, sizeof hl, "%zu", header ? strlen(header) : 0);
            ts_sbuf_append(&body, ts_sbuf_str(&binary), binary.len);
            ts_http_add_header(r, "Inference-Header-Content-Length", hl);
            if (header && ts_sbuf_ok(&body)) ts_http_respond(r, 200, "application/octet-stream", body.data, body.len);
            else fail(r, 500, "%s", "out of memory");
            free(header);
            ts_sbuf_free(&body);
            json_decref(o);
        } else {
            ts_respond_json(r, 200, o);
        }
        ts_sbuf_free(&binary);
    }
    ts_gen_set_free(set);
    free(set);
    kv_req_free(q);
}

static int set_prompt_text(kv_req *q, int i, const char *s, size_t len) {
    q->prompt_text[i] = malloc(len + 1);
    if (!q->prompt_text[i]) return -1;
    memcpy(q->prompt_text[i], s, len);
    q->prompt_text[i][len] = 0;
    q->prompt_len[i] = len;
    return 0;
}

static void handle_infer(ts_server *s, ts_http_request *r, ts_served_model *m) {
    ts_api_error e = {0};
    size_t len;
    const char *body = ts_http_body(r, &len);
    ts_kserve_request req;
    kv_req *q = calloc(1, sizeof *q);
    int32_t *prompts[TS_MAX_CHOICES] = {0};
    int lens[TS_MAX_CHOICES] = {0};
    ts_gen_params p;
    ts_gen_params_init(&p);
    p.max_tokens = DEFAULT_MAX_TOKENS;
    if (ts_kserve_parse_request(body, len, ts_http_header(r, "Inference-Header-Content-Length"), &req, &e) != 0) goto refuse;
    if (!q) {
        ts_api_fail(&e, 503, NULL, "out of memory");
        goto refuse;
    }
    snprintf(q->model, sizeof q->model, "%s", m->name);
    snprintf(q->version, sizeof q->version, "%s", m->inst.version);
    if (req.id) q->id = strdup(req.id);
    const ts_kserve_tensor *text = ts_kserve_input(&req, "text_input");
    if (!text) {
        ts_api_fail(&e, 400, "inputs", "the request has no 'text_input' input (BYTES)");
        goto refuse;
    }
    if (text->count < 1 || text->count > TS_MAX_CHOICES) {
        ts_api_fail(&e, 400, "text_input", "'text_input' must hold 1 to %d strings, found %lld", TS_MAX_CHOICES,
                    (long long)text->count);
        goto refuse;
    }
    q->ndim = text->ndim;
    memcpy(q->shape, text->shape, sizeof q->shape);
    for (int i = 0; i < req.num_outputs; i++) {
        if (strcmp(req.outputs[i].name, "text_output") != 0) {
            ts_api_fail(&e, 400, "outputs", "unknown output '%s' (the model produces text_output)", req.outputs[i].name);
            goto refuse;
        }
        q->binary_output = req.outputs[i].binary;
    }
    if (req.num_outputs == 0) q->binary_output = req.binary_output_default;
    if (read_params(req.parameters, "parameters.", &p, q, &e) || tensor_params(&req, &p, q, &e)) goto refuse;
    for (int64_t i = 0; i < text->count; i++) {
        const char *str;
        size_t sl;
        if (ts_kserve_bytes_at(text, i, &str, &sl, &e) || set_prompt_text(q, (int)i, str, sl) != 0 ||
            ts_prompt_encode_text(m, q->prompt_text[i], sl, &prompts[i], &lens[i], &e)) {
            if (!e.message[0]) ts_api_fail(&e, 503, NULL, "out of memory");
            goto refuse;
        }
        q->n++;
    }
    ts_kserve_request_free(&req);
    run(s, r, m, q, &p, 1, prompts, lens);
    return;
refuse:
    for (int i = 0; i < TS_MAX_CHOICES; i++) free(prompts[i]);
    ts_kserve_request_free(&req);
    ts_gen_params_free(&p);
    if (q) kv_req_free(q);
    ts_registry_release(s->reg, m);
    ts_kserve_error(r, &e);
}

static void handle_generate(ts_server *s, ts_http_request *r, ts_served_model *m, int stream) {
    ts_api_error e = {0};
    size_t len;
    const char *text = ts_http_body(r, &len);
    json_t *body = ts_api_parse_object(text, len, &e);
    kv_req *q = calloc(1, sizeof *q);
    int32_t *prompt = NULL;
    int n_prompt = 0;
    ts_gen_params p;
    ts_gen_params_init(&p);
    p.max_tokens = DEFAULT_MAX_TOKENS;
    if (!body) goto refuse;
    if (!q) {
        ts_api_fail(&e, 503, NULL, "out of memory");
        goto refuse;
    }
    q->stream = stream;
    q->n = 1;
    snprintf(q->model, sizeof q->model, "%s", m->name);
    snprintf(q->version, sizeof q->version, "%s", m->inst.version);
    const char *input = NULL, *id = NULL;
    int found;
    if (ts_field_string(body, "text_input", "text_input", &input, &found, &e)) goto refuse;
    if (!found) {
        ts_api_fail(&e, 400, "text_input", "'text_input' is required");
        goto refuse;
    }
    if (ts_field_string(body, "id", "id", &id, &found, &e)) goto refuse;
    if (id) q->id = strdup(id);
    const json_t *params = json_object_get(body, "parameters");
    if (params && !json_is_null(params) && !json_is_object(params)) {
        ts_api_fail(&e, 400, "parameters", "'parameters' must be an object, found %s", ts_json_type_words(params));
        goto refuse;
    }
    /* other top-level fields are the model's inputs, which for us are generation parameters */
    if (read_params(json_is_object(params) ? params : NULL, "parameters.", &p, q, &e) || read_params(body, "", &p, q, &e))
        goto refuse;
    size_t in_len = json_string_length(json_object_get(body, "text_input"));
    if (set_prompt_text(q, 0, input, in_len) != 0) {
        ts_api_fail(&e, 503, NULL, "out of memory");
        goto refuse;
    }
    if (ts_prompt_encode_text(m, input, in_len, &prompt, &n_prompt, &e)) goto refuse;
    json_decref(body);
    q->ndim = 1;
    q->shape[0] = 1;
    run(s, r, m, q, &p, 0, &prompt, &n_prompt);
    return;
refuse:
    free(prompt);
    json_decref(body);
    ts_gen_params_free(&p);
    if (q) kv_req_free(q);
    ts_registry_release(s->reg, m);
    ts_kserve_error(r, &e);
}

/* ---- repository extension ---- */

static void repository_index(ts_server *s, ts_http_request *r) {
    ts_api_error e = {0};
    size_t len;
    const char *text = ts_http_body(r, &len);
    int ready = 0;
    if (len > 0) {
        json_t *body = ts_api_parse_object(text, len, &e);
        if (!body || ts_field_bool(body, "ready", "ready", &ready, NULL, &e)) {
            json_decref(body);
            ts_kserve_error(r, &e);
            return;
        }
        json_decref(body);
    }
    ts_respond_json(r, 200, ts_registry_index(s->reg, ready));
}

static void repository_action(ts_server *s, ts_http_request *r, const char *name, const char *action) {
    ts_api_error e = {0};
    size_t len;
    const char *text = ts_http_body(r, &len);
    if (len > 0) {
        json_t *body = ts_api_parse_object(text, len, &e);
        const json_t *params = body ? json_object_get(body, "parameters") : NULL;
        if (body && params && !json_is_null(params) && !json_is_object(params))
            ts_api_fail(&e, 400, "parameters", "'parameters' must be an object, found %s", ts_json_type_words(params));
        else if (body && json_is_object(params) && json_object_get(params, "config"))
            ts_api_fail(&e, 400, "parameters.config", "loading with an override configuration is not supported");
        json_decref(body);
        if (e.status) {
            ts_kserve_error(r, &e);
            return;
        }
    }
    ts_error err = {{0}};
    if (!strcmp(action, "load")) {
        if (!ts_registry_known(s->reg, name)) {
            fail(r, 404, "no model named '%s' in the model repository", name);
            return;
        }
        if (ts_registry_load(s->reg, name, &err) != 0) {
            fail(r, 400, "%s", err.message);
            return;
        }
    } else if (ts_registry_unload(s->reg, name, 30.0, &err) != 0) {
        fail(r, ts_registry_known(s->reg, name) ? 400 : 404, "%s", err.message);
        return;
    }
    ts_respond_json(r, 200, json_object());
}

/* ---- routing ---- */

static int method_is(ts_http_request *r, const char *want) {
    if (!strcmp(ts_http_method(r), want)) return 1;
    ts_http_add_header(r, "Allow", want);
    ts_api_error e;
    ts_api_fail(&e, 405, NULL, "method %s is not allowed on %s", ts_http_method(r), ts_http_path(r));
    ts_kserve_error(r, &e);
    return 0;
}

/* Copies the next path segment of *p (up to '/') into out; returns 0 when it does not fit or is empty. */
static int segment(const char **p, char *out, size_t cap) {
    const char *end = strchr(*p, '/');
    size_t n = end ? (size_t)(end - *p) : strlen(*p);
    if (n == 0 || n >= cap) return 0;
    memcpy(out, *p, n);
    out[n] = 0;
    *p += n;
    return 1;
}

static void model_route(ts_server *s, ts_http_request *r, const char *p) {
    char name[TS_MODEL_NAME_MAX], version[32] = "";
    if (!segment(&p, name, sizeof name)) {
        fail(r, 404, "no such endpoint: %s", ts_http_path(r));
        return;
    }
    if (!strncmp(p, "/versions/", 10)) {
        p += 10;
        if (!segment(&p, version, sizeof version)) {
            fail(r, 404, "no such endpoint: %s", ts_http_path(r));
            return;
        }
    }
    const char *action = *p == '/' ? p + 1 : p;
    static const char *const actions[] = {"", "ready", "config", "infer", "generate", "generate_stream"};
    int which = -1;
    for (int i = 0; i < 6; i++)
        if (!strcmp(action, actions[i])) which = i;
    if (which < 0) {
        fail(r, 404, "no such endpoint: %s", ts_http_path(r));
        return;
    }
    if (!method_is(r, which >= 3 ? "POST" : "GET")) return;
    ts_served_model *m = ts_registry_acquire(s->reg, name, version);
    if (!m) {
        ts_api_error e;
        if (version[0]) ts_api_fail(&e, 404, NULL, "model '%s' version %s is not loaded", name, version);
        else if (ts_registry_known(s->reg, name)) ts_api_fail(&e, which == 1 ? 400 : 404, NULL, "model '%s' is not ready", name);
        else ts_api_fail(&e, 404, NULL, "unknown model '%s'", name);
        ts_kserve_error(r, &e);
        return;
    }
    switch (which) {
    case 0: model_metadata(s, r, m); break;
    case 1: ts_http_respond(r, 200, "application/json", "", 0); break;
    case 2: ts_respond_json(r, 200, json_deep_copy(m->inst.config)); break;
    case 3: handle_infer(s, r, m); return; /* these release the model themselves */
    case 4: handle_generate(s, r, m, 0); return;
    case 5: handle_generate(s, r, m, 1); return;
    }
    ts_registry_release(s->reg, m);
}

void ts_kserve_route(ts_server *s, ts_http_request *r, const char *rest) {
    if (!strcmp(rest, "") || !strcmp(rest, "/")) {
        if (method_is(r, "GET")) server_metadata(s, r);
    } else if (!strcmp(rest, "/health/live")) {
        if (method_is(r, "GET")) ts_http_respond(r, 200, "application/json", "", 0);
    } else if (!strcmp(rest, "/health/ready")) {
        if (!method_is(r, "GET")) return;
        if (atomic_load(&s->stopping)) fail(r, 503, "%s", "the server is shutting down");
        else if (ts_registry_num_ready(s->reg) == 0) fail(r, 503, "%s", "no model is ready");
        else ts_http_respond(r, 200, "application/json", "", 0);
    } else if (!strncmp(rest, "/models/", 8)) {
        model_route(s, r, rest + 8);
    } else if (!strcmp(rest, "/repository/index")) {
        if (method_is(r, "POST")) repository_index(s, r);
    } else if (!strncmp(rest, "/repository/models/", 19)) {
        const char *p = rest + 19;
        char name[TS_MODEL_NAME_MAX];
        if (!segment(&p, name, sizeof name) || (strcmp(p, "/load") != 0 && strcmp(p, "/unload") != 0)) {
            fail(r, 404, "no such endpoint: %s", ts_http_path(r));
            return;
        }
        if (method_is(r, "POST")) repository_action(s, r, name, p + 1);
    } else {
        fail(r, 404, "no such endpoint: %s", ts_http_path(r));
    }
}
