/* A generation's two halves: the engine callback, which only queues events, and the handler side,
 * which turns them into text chunks with stop strings applied. */
#include "server/gen.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "server/stop_match.h"

typedef struct gen_event {
    int32_t token;
    ts_finish_reason finish;
    double time, admit_time;
    int has_lp;
    ts_token_logprobs lp;
    char *error;
} gen_event;

struct ts_gen {
    ts_registry *reg;
    ts_served_model *model;
    ts_engine *engine;
    ts_engine_seq *seq;
    const ts_tokenizer *tok;
    ts_gen_params params;
    int n_prompt;
    double arrival;

    /* shared with the engine thread */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    gen_event *queue;
    size_t q_len, q_cap;
    int engine_final;   /* the engine sent its last event */
    char *cancel_reason; /* set by ts_gen_cancel */

    /* handler side */
    gen_event *batch;
    size_t b_cap;
    ts_detok_stream detok;
    char *text;
    size_t text_len, text_cap;
    size_t released; /* bytes handed out */
    size_t scan_from;
    ts_gen_token *tokens;
    size_t n_tokens, cap_tokens, tokens_settled;
    int n_generated;
    double first_time, last_time, admit_time, end_time;
    int finished, final_delivered, metrics_done;
    const char *finish_reason;
    char error[TS_ERROR_MAX];
    int error_status;
    ts_stop_list stops;
    size_t stop_lens[TS_GEN_MAX_STOPS];
};

static int on_engine_event(void *ctx, const ts_token_event *ev) {
    ts_gen *g = ctx;
    pthread_mutex_lock(&g->lock);
    if (g->q_len == g->q_cap) {
        size_t cap = g->q_cap ? g->q_cap * 2 : 16;
        gen_event *nq = realloc(g->queue, cap * sizeof *nq);
        if (!nq) {
            /* nothing can be queued: end the sequence; the final event still needs a slot, so it is
             * recorded in the flags alone */
            if (ev->finish != TS_FINISH_NONE) g->engine_final = 1;
            pthread_cond_broadcast(&g->cond);
            pthread_mutex_unlock(&g->lock);
            return TS_EVENT_STOP;
        }
        g->queue = nq;
        g->q_cap = cap;
    }
    gen_event *q = &g->queue[g->q_len++];
    memset(q, 0, sizeof *q);
    q->token = ev->token;
    q->finish = ev->finish;
    q->time = ev->time;
    q->admit_time = ev->admit_time;
    if (ev->logprobs) {
        q->has_lp = 1;
        q->lp = *ev->logprobs;
    }
    if (ev->error) q->error = strdup(ev->error);
    if (ev->finish != TS_FINISH_NONE) g->engine_final = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return TS_EVENT_CONTINUE;
}

ts_gen *ts_gen_start(ts_registry *reg, ts_served_model *m, const int32_t *prompt, int n_prompt,
                     const ts_gen_params *p, double arrival, ts_api_error *e) {
    ts_gen *g = calloc(1, sizeof *g);
    if (!g) {
        ts_api_fail(e, 503, NULL, "out of memory");
        return NULL;
    }
    g->reg = reg;
    g->model = m;
    g->engine = m->inst.engine;
    g->tok = m->inst.tokenizer;
    g->params = *p;
    g->n_prompt = n_prompt;
    g->arrival = arrival;
    /* the stop strings stay owned by the caller's params, which outlive the generation */
    for (int i = 0; i < p->n_stops; i++) g->stop_lens[i] = strlen(p->stops[i]);
    g->stops.strs = (const char *const *)g->params.stops;
    g->stops.lens = g->stop_lens;
    g->stops.n = p->n_stops;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    ts_detok_stream_init(&g->detok, p->skip_special);

    ts_engine_request req = {
        .prompt = prompt,
        .n_prompt = n_prompt,
        .max_tokens = p->max_tokens,
        .sampling = p->sampling,
        .ignore_eos = p->ignore_eos,
        .logprobs = p->logprobs,
        .stop_tokens = p->n_stop_token_ids > 0 ? p->stop_token_ids : NULL,
        .n_stop_tokens = p->n_stop_token_ids,
        .callback = on_engine_event,
        .ctx = g,
    };
    ts_error err = {{0}};
    ts_submit_status st = ts_engine_submit(g->engine, &req, &g->seq, &err);
    if (st != TS_SUBMIT_OK) {
        if (st == TS_SUBMIT_INVALID) {
            ts_api_fail(e, 400, NULL, "%s", err.message);
            if (strstr(err.message, "context")) ts_api_set_code(e, "context_length_exceeded");
        } else if (st == TS_SUBMIT_QUEUE_FULL) {
            ts_api_fail(e, 503, NULL, "the server is busy: %s; retry later", err.message);
            ts_api_set_code(e, "queue_full");
        } else {
            ts_api_fail(e, 503, NULL, "the server is shutting down");
            ts_api_set_code(e, "shutting_down");
        }
        ts_metrics_request_refused(&m->metrics);
        ts_detok_stream_free(&g->detok);
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->cond);
        free(g);
        return NULL;
    }
    ts_registry_track(reg, m, g);
    return g;
}

static int append_text(ts_gen *g, const char *s, size_t n) {
    if (g->text_len + n + 1 > g->text_cap) {
        size_t cap = g->text_cap ? g->text_cap : 256;
        while (cap < g->text_len + n + 1) cap *= 2;
        char *nt = realloc(g->text, cap);
        if (!nt) return -1;
        g->text = nt;
        g->text_cap = cap;
    }
    memcpy(g->text + g->text_len, s, n);
    g->text_len += n;
    g->text[g->text_len] = 0;
    return 0;
}

static int add_token(ts_gen *g, const gen_event *ev, size_t start) {
    if (g->n_tokens == g->cap_tokens) {
        size_t cap = g->cap_tokens ? g->cap_tokens * 2 : 64;
        ts_gen_token *nt = realloc(g->tokens, cap * sizeof *nt);
        if (!nt) return -1;
        g->tokens = nt;
        g->cap_tokens = cap;
    }
    ts_gen_token *t = &g->tokens[g->n_tokens++];
    memset(t, 0, sizeof *t);
    t->id = ev->token;
    t->logprob = ev->has_lp ? ev->lp.logprob : 0;
    if (ev->has_lp) {
        t->n_top = ev->lp.n_top;
        memcpy(t->top_ids, ev->lp.top_tokens, sizeof t->top_ids);
        memcpy(t->top_logprobs, ev->lp.top_logprobs, sizeof t->top_logprobs);
    }
    t->text_start = start;
    t->text_end = g->text_len;
    return 0;
}

static void fail(ts_gen *g, int status, const char *msg) {
    if (g->finished) return;
    g->finished = 1;
    g->end_time = ts_now_seconds();
    g->error_status = status;
    snprintf(g->error, sizeof g->error, "%s", msg);
}

static void finish(ts_gen *g, const char *reason, double when) {
    if (g->finished) return;
    g->finished = 1;
    g->finish_reason = reason;
    g->end_time = when;
}

/* Applies one engine event on the handler's side. */
static void consume(ts_gen *g, gen_event *ev) {
    if (g->finished) return;
    if (ev->admit_time > 0) g->admit_time = ev->admit_time;
    if (ev->token >= 0) {
        g->n_generated++;
        if (g->n_generated == 1) {
            g->first_time = ev->time;
            ts_metrics_first_token(&g->model->metrics, ev->time - g->arrival);
        } else {
            ts_metrics_token_gap(&g->model->metrics, ev->time - g->last_time);
        }
        g->last_time = ev->time;
        /* the end-of-sequence token ends the text; it is not part of it */
        if (ev->finish != TS_FINISH_EOS) {
            const char *piece = NULL;
            size_t n = 0;
            ts_error err = {{0}};
            size_t start = g->text_len;
            if (ts_detok_stream_push(&g->detok, g->tok, ev->token, &piece, &n, &err) != 0) {
                fail(g, 500, err.message);
                return;
            }
            if ((n > 0 && append_text(g, piece, n) != 0) || (g->params.logprobs && add_token(g, ev, start) != 0)) {
                fail(g, 500, "out of memory");
                return;
            }
        }
    }
    switch (ev->finish) {
    case TS_FINISH_NONE: break;
    case TS_FINISH_EOS:
    case TS_FINISH_STOP: finish(g, "stop", ev->time); break;
    case TS_FINISH_LENGTH: finish(g, "length", ev->time); break;
    case TS_FINISH_CANCELLED:
        pthread_mutex_lock(&g->lock);
        fail(g, 503, g->cancel_reason ? g->cancel_reason : "the request was cancelled");
        pthread_mutex_unlock(&g->lock);
        break;
    case TS_FINISH_ERROR: fail(g, 500, ev->error ? ev->error : "the engine failed"); break;
    }
    if (g->finished && !g->error[0]) {
        /* the text of a character cut off by the end becomes U+FFFD, as a full decode would show it */
        const char *piece = NULL;
        size_t n = 0;
        ts_error err = {{0}};
        if (ts_detok_stream_finish(&g->detok, &piece, &n, &err) == 0 && n > 0) append_text(g, piece, n);
    }
}

static void record_metrics(ts_gen *g) {
    if (g->metrics_done) return;
    g->metrics_done = 1;
    double end = g->end_time > 0 ? g->end_time : ts_now_seconds();
    double e2e = end - g->arrival;
    double queue = g->admit_time > 0 ? g->admit_time - g->arrival : e2e;
    double compute = g->admit_time > 0 ? end - g->admit_time : 0;
    int ok = g->finished && !g->error[0];
    ts_metrics_request_done(&g->model->metrics, ok, e2e, queue < 0 ? 0 : queue, compute < 0 ? 0 : compute);
}

int ts_gen_next(ts_gen *g, double timeout_s, ts_gen_chunk *out) {
    memset(out, 0, sizeof *out);
    if (g->final_delivered) {
        out->finished = 1;
        out->finish_reason = g->finish_reason;
        out->error = g->error[0] ? g->error : NULL;
        out->error_status = g->error_status;
        out->text = "";
        return 1;
    }
    size_t n_batch = 0;
    if (!g->finished) {
        pthread_mutex_lock(&g->lock);
        if (g->q_len == 0 && !g->engine_final && timeout_s > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double whole = floor(timeout_s);
            ts.tv_sec += (time_t)whole;
            ts.tv_nsec += (long)((timeout_s - whole) * 1e9);
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            while (g->q_len == 0 && !g->engine_final)
                if (pthread_cond_timedwait(&g->cond, &g->lock, &ts) == ETIMEDOUT) break;
        }
        if (g->q_len == 0 && g->engine_final) {
            /* the final event could not be queued (out of memory) */
            pthread_mutex_unlock(&g->lock);
            fail(g, 500, "out of memory while queueing tokens");
        } else {
            /* swap the queue out so that the engine can keep appending while this thread works */
            gen_event *q = g->queue;
            size_t qc = g->q_cap;
            n_batch = g->q_len;
            g->queue = g->batch;
            g->q_cap = g->b_cap;
            g->q_len = 0;
            g->batch = q;
            g->b_cap = qc;
            pthread_mutex_unlock(&g->lock);
        }
        if (n_batch == 0 && !g->finished) return 0;
    }
    size_t end = g->text_len, safe = g->text_len;
    for (size_t i = 0; i < n_batch; i++) {
        consume(g, &g->batch[i]);
        free(g->batch[i].error);
        g->batch[i].error = NULL;
        /* scanned after every token, so that tokens after a stop string are neither shown nor counted */
        end = safe = g->text_len;
        if (g->stops.n > 0 && !g->error[0] && g->released <= g->text_len) {
            long at = ts_stop_scan(&g->stops, g->text, g->text_len, g->scan_from, &safe);
            if (at >= 0) {
                end = safe = (size_t)at;
                g->text_len = end;
                g->text[end] = 0;
                if (!g->finished) {
                    finish(g, "stop", ts_now_seconds());
                    ts_engine_cancel(g->engine, g->seq); /* the rest of the sequence is not wanted */
                } else {
                    g->finish_reason = "stop";
                }
            } else {
                g->scan_from = safe;
            }
        }
        if (g->finished) {
            for (size_t j = i + 1; j < n_batch; j++) {
                free(g->batch[j].error);
                g->batch[j].error = NULL;
            }
            break;
        }
    }
    if (n_batch == 0 && g->stops.n > 0 && !g->finished) safe = g->scan_from;
    if (g->finished) safe = g->error[0] ? g->released : end; /* nothing is held back at the end */
    if (safe < g->released) safe = g->released;
    out->text = g->text ? g->text + g->released : "";
    out->len = safe - g->released;
    g->released = safe;

    if (g->params.logprobs) {
        size_t first = g->tokens_settled, k = first;
        while (k < g->n_tokens) {
            const ts_gen_token *t = &g->tokens[k];
            if (g->finished ? t->text_start >= safe && !(t->text_start == t->text_end && t->text_end <= safe)
                            : t->text_end > safe)
                break;
            k++;
        }
        out->tokens = g->tokens + first;
        out->n_tokens = (int)(k - first);
        g->tokens_settled = k;
    }
    if (g->finished) {
        g->final_delivered = 1;
        out->finished = 1;
        out->finish_reason = g->error[0] ? NULL : g->finish_reason;
        out->error = g->error[0] ? g->error : NULL;
        out->error_status = g->error_status;
        record_metrics(g);
    }
    return 1;
}

void ts_gen_cancel(ts_gen *g, const char *reason) {
    pthread_mutex_lock(&g->lock);
    if (!g->cancel_reason) g->cancel_reason = strdup(reason);
    int final = g->engine_final;
    pthread_mutex_unlock(&g->lock);
    if (!final) ts_engine_cancel(g->engine, g->seq);
}

void ts_gen_free(ts_gen *g) {
    if (!g) return;
    ts_registry_untrack(g->reg, g->model, g);
    pthread_mutex_lock(&g->lock);
    if (!g->engine_final) {
        pthread_mutex_unlock(&g->lock);
        ts_engine_cancel(g->engine, g->seq);
        pthread_mutex_lock(&g->lock);
        while (!g->engine_final) pthread_cond_wait(&g->cond, &g->lock);
    }
    pthread_mutex_unlock(&g->lock);
    ts_engine_release(g->engine, g->seq);
    if (!g->finished) {
        /* the client went away first */
        g->end_time = ts_now_seconds();
        snprintf(g->error, sizeof g->error, "the client disconnected");
    }
    record_metrics(g);
    for (size_t i = 0; i < g->q_len; i++) free(g->queue[i].error);
    free(g->queue);
    free(g->batch);
    free(g->text);
    free(g->tokens);
    free(g->cancel_reason);
    ts_detok_stream_free(&g->detok);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
    free(g);
}

int ts_gen_prompt_tokens(const ts_gen *g) { return g->n_prompt; }
int ts_gen_completion_tokens(const ts_gen *g) { return g->n_generated; }

const char *ts_gen_text(const ts_gen *g, size_t *len) {
    *len = g->text_len;
    return g->text ? g->text : "";
}
