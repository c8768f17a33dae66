/* The OpenAI API: GET /v1/models, POST /v1/completions and /v1/chat/completions, streamed (server-sent
 * events ending in [DONE]) or not, with usage, finish reasons, stop strings and log-probabilities in
 * OpenAI's two formats (completions: tokens / token_logprobs / top_logprobs / text_offset; chat:
 * content[{token, logprob, bytes, top_logprobs}]). Unknown request fields are ignored, as OpenAI
 * does; fields of the wrong type are refused naming the field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/gen_set.h"
#include "server/prompt.h"
#include "server/server_internal.h"

#define MAX_PROMPTS TS_MAX_CHOICES

void ts_openai_error(ts_http_request *r, const ts_api_error *e) {
    json_t *err = json_object();
    json_object_set_new(err, "message", json_string(e->message));
    json_object_set_new(err, "type", json_string(ts_api_error_type(e->status)));
    json_object_set_new(err, "param", e->param[0] ? json_string(e->param) : json_null());
    json_object_set_new(err, "code", e->code[0] ? json_string(e->code) : json_null());
    json_t *body = json_object();
    json_object_set_new(body, "error", err);
    if (e->status == 503) ts_http_add_header(r, "Retry-After", "1");
    ts_respond_json(r, e->status, body);
}

static void list_model(void *ctx, ts_served_model *m) {
    json_t *data = ctx;
    /* one entry per name: the highest version answers requests without one */
    size_t i;
    json_t *v;
    json_array_foreach(data, i, v) if (!strcmp(json_string_value(json_object_get(v, "id")), m->name)) return;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(m->name));
    json_object_set_new(o, "object", json_string("model"));
    json_object_set_new(o, "created", json_integer((json_int_t)m->loaded_at));
    json_object_set_new(o, "owned_by", json_string("tessera"));
    const ts_engine_config *ec = ts_engine_get_config(m->inst.engine);
    json_object_set_new(o, "max_model_len", json_integer(ec->context_length));
    json_array_append_new(data, o);
}

static void handle_models(ts_server *s, ts_http_request *r) {
    json_t *data = json_array();
    ts_registry_foreach(s->reg, list_model, data);
    json_t *body = json_object();
    json_object_set_new(body, "object", json_string("list"));
    json_object_set_new(body, "data", data);
    ts_respond_json(r, 200, body);
}

static void only_model(void *ctx, ts_served_model *m) {
    char *name = ctx;
    if (!name[0]) snprintf(name, TS_MODEL_NAME_MAX, "%s", m->name);
    else if (strcmp(name, m->name) != 0) name[0] = 1; /* more than one: no default */
}

/* The model a request names; without one, the only model served. */
static ts_served_model *request_model(ts_server *s, const json_t *body, ts_api_error *e) {
    const char *name = NULL;
    int found = 0;
    if (ts_field_string(body, "model", "model", &name, &found, e)) return NULL;
    char only[TS_MODEL_NAME_MAX] = "";
    if (!found) {
        ts_registry_foreach(s->reg, only_model, only);
        if (!only[0] || only[0] == 1) {
            ts_api_fail(e, 400, "model", "'model' is required when more than one model is served");
            return NULL;
        }
        name = only;
    }
    ts_served_model *m = ts_registry_acquire(s->reg, name, NULL);
    if (!m) {
        ts_api_fail(e, 404, "model", "the model '%s' does not exist or is not loaded", name);
        ts_api_set_code(e, "model_not_found");
    }
    return m;
}

/* ---- one request's state, shared by the streaming and collecting paths ---- */

typedef struct oa_choice {
    ts_sbuf text;
    json_t *logprobs; /* chat: content list; completions: the four parallel lists */
    const char *finish_reason;
    int sent_role;
    size_t echo_len;
} oa_choice;

typedef struct oa_req {
    int chat, stream, include_usage, logprobs, top_logprobs, echo, copies;
    char id[64];
    long long created;
    char model[TS_MODEL_NAME_MAX];
    const ts_tokenizer *tok;
    ts_gen_set *set;
    int n_choices;
    oa_choice choices[TS_MAX_CHOICES];
    char *echo_text[MAX_PROMPTS];
    ts_api_error error;
    int failed;
} oa_req;

static void oa_req_free(void *p) {
    oa_req *q = p;
    for (int i = 0; i < TS_MAX_CHOICES; i++) {
        ts_sbuf_free(&q->choices[i].text);
        json_decref(q->choices[i].logprobs);
    }
    for (int i = 0; i < MAX_PROMPTS; i++) free(q->echo_text[i]);
    free(q);
}

static json_t *token_bytes_json(const ts_tokenizer *tok, int32_t id) {
    const uint8_t *bytes = NULL;
    size_t len = 0;
    json_t *arr = json_array();
    if (tok && ts_tokenizer_token_bytes(tok, id, &bytes, &len) == 0)
        for (size_t i = 0; i < len; i++) json_array_append_new(arr, json_integer(bytes[i]));
    return arr;
}

static json_t *token_string(const ts_tokenizer *tok, int32_t id) {
    char *text = NULL;
    size_t len = 0;
    ts_error err = {{0}};
    if (!tok || ts_tokenizer_decode(tok, &id, 1, 0, &text, &len, &err) != 0) {
        char buf[32];
        snprintf(buf, sizeof buf, "token_id:%d", id);
        return json_string(buf);
    }
    json_t *s = json_stringn(text, len);
    free(text);
    return s ? s : json_string("\xef\xbf\xbd");
}

/* Appends the chunk's settled tokens to a log-probability object in the request's format. */
static void add_logprobs(oa_req *q, oa_choice *c, const ts_gen_chunk *ch, json_t **target) {
    if (!q->logprobs || ch->n_tokens == 0) return;
    if (!*target) {
        *target = json_object();
        if (q->chat) {
            json_object_set_new(*target, "content", json_array());
        } else {
            json_object_set_new(*target, "tokens", json_array());
            json_object_set_new(*target, "token_logprobs", json_array());
            json_object_set_new(*target, "top_logprobs", json_array());
            json_object_set_new(*target, "text_offset", json_array());
        }
    }
    for (int i = 0; i < ch->n_tokens; i++) {
        const ts_gen_token *t = &ch->tokens[i];
        int n_top = t->n_top < q->top_logprobs ? t->n_top : q->top_logprobs;
        if (q->chat) {
            json_t *e = json_object();
            json_object_set_new(e, "token", token_string(q->tok, t->id));
            json_object_set_new(e, "logprob", json_real(t->logprob));
            json_object_set_new(e, "bytes", token_bytes_json(q->tok, t->id));
            json_t *tops = json_array();
            for (int k = 0; k < n_top; k++) {
                json_t *te = json_object();
                json_object_set_new(te, "token", token_string(q->tok, t->top_ids[k]));
                json_object_set_new(te, "logprob", json_real(t->top_logprobs[k]));
                json_object_set_new(te, "bytes", token_bytes_json(q->tok, t->top_ids[k]));
                json_array_append_new(tops, te);
            }
            json_object_set_new(e, "top_logprobs", tops);
            json_array_append_new(json_object_get(*target, "content"), e);
        } else {
            json_array_append_new(json_object_get(*target, "tokens"), token_string(q->tok, t->id));
            json_array_append_new(json_object_get(*target, "token_logprobs"), json_real(t->logprob));
            json_t *tops = json_object();
            for (int k = 0; k < n_top; k++) {
                json_t *key = token_string(q->tok, t->top_ids[k]);
                json_object_set_new(tops, json_string_value(key), json_real(t->top_logprobs[k]));
                json_decref(key);
            }
            json_array_append_new(json_object_get(*target, "top_logprobs"), q->top_logprobs > 0 ? tops : json_null());
            if (q->top_logprobs <= 0) json_decref(tops);
            json_array_append_new(json_object_get(*target, "text_offset"),
                                  json_integer((json_int_t)(c->echo_len + t->text_start)));
        }
    }
}

static json_t *chunk_frame(const oa_req *q) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(q->id));
    json_object_set_new(o, "object", json_string(q->chat ? "chat.completion.chunk" : "text_completion"));
    json_object_set_new(o, "created", json_integer(q->created));
    json_object_set_new(o, "model", json_string(q->model));
    return o;
}

static void stream_choice(oa_req *q, ts_sbuf *out, int index, const char *text, size_t len, int with_role,
                          json_t *logprobs, const char *finish) {
    json_t *o = chunk_frame(q);
    json_t *choice = json_object();
    json_object_set_new(choice, "index", json_integer(index));
    if (q->chat) {
        json_t *delta = json_object();
        if (with_role) json_object_set_new(delta, "role", json_string("assistant"));
        if (text) json_object_set_new(delta, "content", json_stringn(text, len));
        json_object_set_new(choice, "delta", delta);
    } else {
        json_object_set_new(choice, "text", json_stringn(text ? text : "", text ? len : 0));
    }
    json_object_set_new(choice, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(o, "choices", choices);
    if (q->include_usage) json_object_set_new(o, "usage", json_null());
    ts_sse_data(out, o);
    json_decref(o);
}

static void stream_error(oa_req *q, ts_sbuf *out, const ts_gen_chunk *ch) {
    ts_api_error e;
    ts_api_fail(&e, ch->error_status ? ch->error_status : 500, NULL, "%s", ch->error);
    json_t *err = json_object();
    json_object_set_new(err, "message", json_string(e.message));
    json_object_set_new(err, "type", json_string(ts_api_error_type(e.status)));
    json_object_set_new(err, "param", json_null());
    json_object_set_new(err, "code", json_integer(e.status));
    json_t *o = json_object();
    json_object_set_new(o, "error", err);
    ts_sse_data(out, o);
    json_decref(o);
    q->failed = 1;
}

static void on_chunk(void *ctx, int index, const ts_gen_chunk *ch, ts_sbuf *out) {
    oa_req *q = ctx;
    oa_choice *c = &q->choices[index];
    if (q->stream) {
        if (q->chat && !c->sent_role) {
            stream_choice(q, out, index, "", 0, 1, NULL, NULL);
            c->sent_role = 1;
        }
        if (!q->chat && q->echo && !c->sent_role) {
            const char *echo = q->echo_text[index / q->copies];
            stream_choice(q, out, index, echo, strlen(echo), 0, NULL, NULL);
            c->sent_role = 1;
        }
        json_t *lp = NULL;
        add_logprobs(q, c, ch, &lp);
        if (ch->len > 0 || lp) stream_choice(q, out, index, ch->text, ch->len, 0, lp, NULL);
        if (ch->finished) {
            if (ch->error) stream_error(q, out, ch);
            else stream_choice(q, out, index, q->chat ? NULL : "", 0, 0, NULL, ch->finish_reason);
        }
        return;
    }
    ts_sbuf_append(&c->text, ch->text, ch->len);
    add_logprobs(q, c, ch, &c->logprobs);
    if (ch->finished) {
        if (ch->error && !q->failed) {
            q->failed = 1;
            ts_api_fail(&q->error, ch->error_status ? ch->error_status : 500, NULL, "%s", ch->error);
        }
        c->finish_reason = ch->finish_reason;
    }
}

static json_t *usage_json(oa_req *q) {
    long long prompt = 0, completion = 0;
    for (int i = 0; i < q->set->n; i++) {
        if (i % q->copies == 0) prompt += ts_gen_prompt_tokens(q->set->gens[i]);
        completion += ts_gen_completion_tokens(q->set->gens[i]);
    }
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(prompt));
    json_object_set_new(u, "completion_tokens", json_integer(completion));
    json_object_set_new(u, "total_tokens", json_integer(prompt + completion));
    return u;
}

static void on_end(void *ctx, ts_sbuf *out) {
    oa_req *q = ctx;
    if (q->include_usage && !q->failed) {
        json_t *o = chunk_frame(q);
        json_object_set_new(o, "choices", json_array());
        json_object_set_new(o, "usage", usage_json(q));
        ts_sse_data(out, o);
        json_decref(o);
    }
    ts_sse_done(out);
}

static json_t *final_body(oa_req *q) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(q->id));
    json_object_set_new(o, "object", json_string(q->chat ? "chat.completion" : "text_completion"));
    json_object_set_new(o, "created", json_integer(q->created));
    json_object_set_new(o, "model", json_string(q->model));
    json_t *choices = json_array();
    for (int i = 0; i < q->set->n; i++) {
        oa_choice *c = &q->choices[i];
        json_t *choice = json_object();
        json_object_set_new(choice, "index", json_integer(i));
        json_t *text = json_stringn(ts_sbuf_str(&c->text), c->text.len);
        if (q->chat) {
            json_t *msg = json_object();
            json_object_set_new(msg, "role", json_string("assistant"));
            json_object_set_new(msg, "content", text);
            json_object_set_new(choice, "message", msg);
        } else {
            if (q->echo) {
                const char *echo = q->echo_text[i / q->copies];
                size_t el = strlen(echo);
                char *joined = malloc(el + c->text.len + 1);
                if (joined) {
                    memcpy(joined, echo, el);
                    memcpy(joined + el, ts_sbuf_str(&c->text), c->text.len);
                    json_decref(text);
                    text = json_stringn(joined, el + c->text.len);
                    free(joined);
                }
            }
            json_object_set_new(choice, "text", text);
        }
        json_object_set(choice, "logprobs", c->logprobs ? c->logprobs : json_null());
        json_object_set_new(choice, "finish_reason", c->finish_reason ? json_string(c->finish_reason) : json_null());
        json_array_append_new(choices, choice);
    }
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage_json(q));
    return o;
}

/* Reads the OpenAI-only fields (n, stream, stream_options, logprobs, echo) around the shared ones. */
static int read_request(oa_req *q, const json_t *body, ts_gen_params *p, ts_api_error *e) {
    if (ts_gen_params_read(body, NULL, p, e)) return -1;
    long long n = 1, iv;
    int found, bv;
    if (ts_field_int(body, "n", "n", 1, TS_MAX_CHOICES, &n, &found, e)) return -1;
    q->copies = (int)n;
    if (ts_field_int(body, "best_of", "best_of", 1, TS_MAX_CHOICES, &iv, &found, e)) return -1;
    if (found && iv != n) return ts_api_fail(e, 400, "best_of", "'best_of' different from 'n' is not supported");
    q->stream = 0;
    if (ts_field_bool(body, "stream", "stream", &q->stream, &found, e)) return -1;
    const json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return ts_api_fail(e, 400, "stream_options", "'stream_options' must be an object, found %s", ts_json_type_words(so));
        if (ts_field_bool(so, "include_usage", "stream_options.include_usage", &bv, &found, e)) return -1;
        if (found) q->include_usage = bv && q->stream;
    }
    if (q->chat) {
        if (ts_field_bool(body, "logprobs", "logprobs", &bv, &found, e)) return -1;
        q->logprobs = found && bv;
        if (ts_field_int(body, "top_logprobs", "top_logprobs", 0, TS_MAX_TOP_LOGPROBS, &iv, &found, e)) return -1;
        if (found) {
            if (!q->logprobs && iv > 0)
                return ts_api_fail(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
            q->top_logprobs = (int)iv;
        }
    } else {
        if (ts_field_int(body, "logprobs", "logprobs", 0, TS_MAX_TOP_LOGPROBS, &iv, &found, e)) return -1;
        if (found) {
            q->logprobs = 1;
            q->top_logprobs = (int)iv;
        }
        if (ts_field_bool(body, "echo", "echo", &q->echo, &found, e)) return -1;
    }
    p->logprobs = q->logprobs;
    p->sampling.top_logprobs = q->top_logprobs;
    return 0;
}

/* The prompts of /v1/completions: a string, a list of strings, a list of ids, or a list of id lists. */
static int read_prompts(const ts_served_model *m, const json_t *body, int32_t **prompts, int *lens, int *n,
                        ts_api_error *e) {
    *n = 0;
    const json_t *pr = json_object_get(body, "prompt");
    if (!pr || json_is_null(pr)) return ts_api_fail(e, 400, "prompt", "'prompt' is required");
    if (json_is_string(pr)) {
        if (ts_prompt_encode_text(m, json_string_value(pr), json_string_length(pr), &prompts[0], &lens[0], e)) return -1;
        *n = 1;
        return 0;
    }
    if (!json_is_array(pr))
        return ts_api_fail(e, 400, "prompt", "'prompt' must be a string, a list of strings or a list of token ids, found %s",
                           ts_json_type_words(pr));
    if (json_array_size(pr) == 0) return ts_api_fail(e, 400, "prompt", "'prompt' must not be empty");
    if (json_is_integer(json_array_get(pr, 0))) {
        if (ts_prompt_ids(m, pr, "prompt", &prompts[0], &lens[0], e)) return -1;
        *n = 1;
        return 0;
    }
    if (json_array_size(pr) > MAX_PROMPTS)
        return ts_api_fail(e, 400, "prompt", "at most %d prompts per request are supported", MAX_PROMPTS);
    size_t i;
    const json_t *item;
    json_array_foreach(pr, i, item) {
        char name[32];
        snprintf(name, sizeof name, "prompt[%zu]", i);
        int rc;
        if (json_is_string(item)) rc = ts_prompt_encode_text(m, json_string_value(item), json_string_length(item),
                                                             &prompts[*n], &lens[*n], e);
        else if (json_is_array(item)) rc = ts_prompt_ids(m, item, name, &prompts[*n], &lens[*n], e);
        else rc = ts_api_fail(e, 400, name, "'%s' must be a string or a list of token ids, found %s", name,
                              ts_json_type_words(item));
        if (rc) return -1;
        (*n)++;
    }
    return 0;
}

static void handle_generate(ts_server *s, ts_http_request *r, int chat) {
    ts_api_error e = {0};
    size_t len;
    const char *text = ts_http_body(r, &len);
    json_t *body = ts_api_parse_object(text, len, &e);
    if (!body) {
        ts_openai_error(r, &e);
        return;
    }
    ts_served_model *m = request_model(s, body, &e);
    if (!m) {
        json_decref(body);
        ts_openai_error(r, &e);
        return;
    }
    oa_req *q = calloc(1, sizeof *q);
    ts_gen_set *set = calloc(1, sizeof *set);
    int32_t *prompts[MAX_PROMPTS] = {0};
    int lens[MAX_PROMPTS] = {0}, n_prompts = 0;
    ts_gen_params p;
    ts_gen_params_init(&p);
    if (!q || !set) {
        ts_api_fail(&e, 503, NULL, "out of memory");
        goto refuse;
    }
    q->chat = chat;
    q->tok = m->inst.tokenizer;
    snprintf(q->model, sizeof q->model, "%s", m->name);
    ts_server_make_id(chat ? "chatcmpl-" : "cmpl-", q->id, sizeof q->id);
    q->created = (long long)time(NULL);
    p.sampling.temperature = 1.0f; /* OpenAI's default; greedy needs temperature 0 */
    if (read_request(q, body, &p, &e)) goto refuse;
    if (chat) {
        if (ts_prompt_chat(m, body, &prompts[0], &lens[0], NULL, &e)) goto refuse;
        n_prompts = 1;
        /* the end of the assistant's turn ends a chat like an EOS token; ignore_eos (vLLM's extension)
         * asks to generate through both, as it does for models whose end-of-turn token is their EOS */
        for (int i = 0; !p.ignore_eos && i < m->inst.num_end_of_turn && p.n_stop_token_ids < 8; i++)
            p.stop_token_ids[p.n_stop_token_ids++] = m->inst.end_of_turn[i];
    } else {
        if (!json_object_get(body, "max_tokens") && !json_object_get(body, "max_completion_tokens"))
            p.max_tokens = 16; /* OpenAI's default for completions */
        if (read_prompts(m, body, prompts, lens, &n_prompts, &e)) goto refuse;
        if (q->echo)
            for (int i = 0; i < n_prompts; i++) q->echo_text[i] = ts_prompt_decode(m, prompts[i], lens[i], 1);
    }
    ts_gen_set_init(set, s->reg, m, &p);
    m = NULL; /* the set holds the reference now */
    q->set = set;
    if (ts_gen_set_start(set, prompts, lens, n_prompts, q->copies, ts_http_arrival(r), &e)) {
        if (!e.param[0] && !strcmp(e.code, "context_length_exceeded"))
            snprintf(e.param, sizeof e.param, "%s", chat ? "messages" : "prompt");
        goto refuse;
    }
    for (int i = 0; i < n_prompts; i++) free(prompts[i]);
    json_decref(body);
    q->n_choices = set->n;
    if (q->stream) {
        ts_gen_set_stream(r, set, on_chunk, on_end, oa_req_free, q);
        return;
    }
    if (ts_gen_set_collect(set, ts_http_request_fd(r), on_chunk, q) != 0) {
        ts_api_fail(&e, 400, NULL, "the client went away");
        ts_openai_error(r, &e);
    } else if (q->failed) {
        ts_openai_error(r, &q->error);
    } else {
        ts_respond_json(r, 200, final_body(q));
    }
    ts_gen_set_free(set);
    free(set);
    oa_req_free(q);
    return;
refuse:
    for (int i = 0; i < n_prompts; i++) free(prompts[i]);
    if (set && set->model) {
        ts_gen_set_free(set);
    } else {
        ts_gen_params_free(&p);
        if (m) ts_registry_release(s->reg, m);
    }
    free(set);
    if (q) oa_req_free(q);
    json_decref(body);
    ts_openai_error(r, &e);
}

void ts_openai_route(ts_server *s, ts_http_request *r, const char *rest) {
    const char *method = ts_http_method(r);
    ts_api_error e = {0};
    int is_get = !strcmp(method, "GET"), is_post = !strcmp(method, "POST");
    if (!strcmp(rest, "/models")) {
        if (is_get) {
            handle_models(s, r);
            return;
        }
        ts_http_add_header(r, "Allow", "GET");
    } else if (!strcmp(rest, "/completions") || !strcmp(rest, "/chat/completions")) {
        if (is_post) {
            handle_generate(s, r, !strcmp(rest, "/chat/completions"));
            return;
        }
        ts_http_add_header(r, "Allow", "POST");
    } else if (!strncmp(rest, "/models/", 8)) {
        if (!is_get) {
            ts_http_add_header(r, "Allow", "GET");
        } else {
            ts_served_model *m = ts_registry_acquire(s->reg, rest + 8, NULL);
            if (!m) {
                ts_api_fail(&e, 404, "model", "the model '%s' does not exist or is not loaded", rest + 8);
                ts_api_set_code(&e, "model_not_found");
                ts_openai_error(r, &e);
                return;
            }
            json_t *data = json_array();
            list_model(data, m);
            ts_registry_release(s->reg, m);
            ts_respond_json(r, 200, json_incref(json_array_get(data, 0)));
            json_decref(data);
            return;
        }
    } else {
        ts_api_fail(&e, 404, NULL, "no such endpoint: %s %s", method, ts_http_path(r));
        ts_openai_error(r, &e);
        return;
    }
    ts_api_fail(&e, 405, NULL, "method %s is not allowed on %s", method, ts_http_path(r));
    ts_openai_error(r, &e);
}
