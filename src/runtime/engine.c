#include "runtime/engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "runtime/kv_cache.h"
#include "runtime/sequence.h"

typedef enum { SEQ_WAITING, SEQ_RUNNING, SEQ_DONE } seq_state;

struct ts_engine_seq {
    ts_engine_request req;
    int32_t *tokens; /* prompt followed by generated tokens */
    int n_tokens;
    int capacity;
    int n_generated;
    int n_computed; /* tokens whose keys and values are in the cache */
    int reserve_tokens;
    double admit_time;
    ts_kv_seq kv;
    ts_sampler *sampler;
    seq_state state;
    atomic_int cancel;
    int refs; /* the caller's handle and the engine's */
    struct ts_engine_seq *next;
};

struct ts_engine {
    ts_model *model;
    ts_engine_config cfg;
    ts_kv_cache cache;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop, draining;
    ts_engine_seq *wait_head, *wait_tail;
    int n_waiting;
    ts_engine_seq **running;
    int n_running;
    /* step buffers */
    int32_t *step_tokens, *step_positions, *logit_rows;
    ts_seq_view *views;
    ts_engine_seq **step_seqs;
    int *step_first_token;
    float *logits;
    int32_t *picked; /* token ids the model chose in all-greedy steps and steps drawn on the device */
    ts_draw *draws;  /* per logit row: the draw the device makes */
    ts_penalty *penalties; /* the step's penalty entries, draws[i].pen_first.. */
    uint8_t *host_rows;    /* per logit row of a drawn step: chosen on the host (log-probabilities wanted) */
    int penalties_cap;
    ts_token_logprobs *lp;
    ts_engine_stats stats;
    double files_checked_at;
    int files_warned;
    char failed[600]; /* set when the model cannot be used any more (its files changed in place) */
};

static int is_eos(const ts_engine *e, const ts_engine_seq *s, int32_t tok) {
    const ts_model_config *c = &e->model->cfg;
    if (!s->req.ignore_eos)
        for (int i = 0; i < c->num_eos; i++)
            if (c->eos_token_ids[i] == tok) return 1;
    for (int i = 0; i < s->req.n_stop_tokens; i++)
        if (s->req.stop_tokens[i] == tok) return 1;
    return 0;
}

void ts_engine_config_default(ts_engine_config *c, const ts_model *m) {
    memset(c, 0, sizeof *c);
    c->context_length = m->cfg.max_position_embeddings < 4096 ? m->cfg.max_position_embeddings : 4096;
    c->max_running = 32;
    c->max_waiting = 256;
    c->step_tokens = m->opt.max_step_tokens < 256 ? m->opt.max_step_tokens : 256;
    c->prefill_step_tokens = m->opt.max_step_tokens;
    c->block_tokens = 16;
    c->kv_blocks = (c->context_length + c->block_tokens - 1) / c->block_tokens * 8;
}

static void seq_unref(ts_engine_seq *s) {
    if (--s->refs > 0) return;
    free(s->tokens);
    free((void *)s->req.stop_tokens);
    free(s);
}

static void remove_running(ts_engine *e, int i) {
    e->running[i] = e->running[--e->n_running];
}

/* Takes a sequence out of the batch and frees its blocks and sampler; the handle stays valid. */
static void retire(ts_engine *e, ts_engine_seq *s) {
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i] == s) remove_running(e, i);
    s->state = SEQ_DONE;
    e->stats.requests_finished++;
    pthread_mutex_unlock(&e->lock);
    ts_kv_seq_release(&e->cache, &s->kv);
    ts_sampler_free(s->sampler);
    s->sampler = NULL;
}

/* Ends a sequence that produced no final token (cancelled, failed) and tells the caller. */
static void finish_seq(ts_engine *e, ts_engine_seq *s, ts_finish_reason why, const char *error) {
    retire(e, s);
    ts_token_event ev = {.token = -1, .index = s->n_generated, .finish = why, .time = ts_now_seconds(), .error = error,
                         .admit_time = s->admit_time};
    s->req.callback(s->req.ctx, &ev);
    pthread_mutex_lock(&e->lock);
    seq_unref(s);
    pthread_mutex_unlock(&e->lock);
}

/* Moves waiting requests into the running batch while their KV blocks are free (first come, first
 * served: a large request at the head is not overtaken, so it cannot starve). Lock held. */
static void admit(ts_engine *e) {
    while (e->wait_head && e->n_running < e->cfg.max_running) {
        ts_engine_seq *s = e->wait_head;
        if (atomic_load(&s->cancel)) break; /* handled by the cancel sweep */
        ts_error err;
        if (ts_kv_seq_reserve(&e->cache, &s->kv, s->reserve_tokens, &err) != 0) break;
        e->wait_head = s->next;
        if (!e->wait_head) e->wait_tail = NULL;
        e->n_waiting--;
        s->next = NULL;
        s->state = SEQ_RUNNING;
        s->admit_time = ts_now_seconds();
        e->running[e->n_running++] = s;
    }
}

/* Collects cancelled sequences (waiting or running) into out; lock held. */
static int sweep_cancelled(ts_engine *e, ts_engine_seq **out, int cap) {
    int n = 0;
    for (int i = 0; i < e->n_running && n < cap;) {
        if (atomic_load(&e->running[i]->cancel) || e->stop) {
            out[n++] = e->running[i];
            remove_running(e, i);
        } else {
            i++;
        }
    }
    ts_engine_seq **link = &e->wait_head;
    while (*link && n < cap) {
        ts_engine_seq *s = *link;
        if (atomic_load(&s->cancel) || e->stop) {
            *link = s->next;
            e->n_waiting--;
            out[n++] = s;
        } else {
            link = &s->next;
        }
    }
    e->wait_tail = NULL;
    for (ts_engine_seq *s = e->wait_head; s; s = s->next) e->wait_tail = s;
    return n;
}

static int append_token(ts_engine_seq *s, int32_t tok) {
    if (s->n_tokens == s->capacity) {
        int cap = s->capacity * 2;
        int32_t *nt = realloc(s->tokens, (size_t)cap * sizeof(int32_t));
        if (!nt) return -1;
        s->tokens = nt;
        s->capacity = cap;
    }
    s->tokens[s->n_tokens++] = tok;
    return 0;
}

/* One forward step over the running batch; returns 0 when there was nothing to do. */
static int run_step(ts_engine *e) {
    const int vocab = e->model->cfg.vocab_size;
    int decoding = 0;
    for (int i = 0; i < e->n_running && !decoding; i++)
        decoding = e->running[i]->n_tokens - e->running[i]->n_computed == 1;
    int budget = decoding ? e->cfg.step_tokens : e->cfg.prefill_step_tokens, n_tok = 0, n_views = 0, n_logits = 0;
    /* decode tokens first (one per sequence), then prefill chunks with what budget remains */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < e->n_running && budget > 0; i++) {
            ts_engine_seq *s = e->running[i];
            int remaining = s->n_tokens - s->n_computed;
            if (remaining <= 0 || (pass == 0) != (remaining == 1)) continue;
            int len = remaining < budget ? remaining : budget;
            ts_seq_view *v = &e->views[n_views];
            v->first_token = n_tok;
            v->n_tokens = len;
            v->start_pos = s->n_computed;
            v->n_blocks = s->kv.num_blocks;
            v->blocks = s->kv.blocks;
            for (int k = 0; k < len; k++) {
                e->step_tokens[n_tok + k] = s->tokens[s->n_computed + k];
                e->step_positions[n_tok + k] = s->n_computed + k;
            }
            e->step_seqs[n_views] = s;
            e->step_first_token[n_views] = -1;
            if (s->n_computed + len == s->n_tokens) {
                e->step_first_token[n_views] = n_logits;
                e->logit_rows[n_logits++] = n_tok + len - 1;
            }
            n_tok += len;
            budget -= len;
            n_views++;
        }
    }
    if (n_tok == 0) return 0;
    ts_step step = {.n_tokens = n_tok, .tokens = e->step_tokens, .positions = e->step_positions, .n_seqs = n_views,
                    .seqs = e->views, .n_logits = n_logits, .logit_rows = e->logit_rows,
                    .host_kv = e->cache.host_store};
    ts_error err = {{0}};
    double t0 = ts_now_seconds();
    /* When every sequence that gets a token this step decodes greedily without log-probabilities, the
     * model picks the tokens (on a GPU the logits then stay where they are). */
    int all_greedy = n_logits > 0;
    for (int v = 0; v < n_views && all_greedy; v++)
        if (e->step_first_token[v] >= 0)
            all_greedy = !e->step_seqs[v]->req.logprobs && ts_sampler_is_greedy(e->step_seqs[v]->sampler);
    /* Otherwise, when the device can draw, the tokens are drawn where the logits are, with the numbers each
     * sequence's own stream gives and its penalties (the host would copy every row of logits and sort its
     * candidates); only the rows of sequences that want log-probabilities come to the host */
    int on_device = n_logits > 0 && !all_greedy && ts_model_can_draw(e->model);
    int n_pen = 0, n_device = 0;
    for (int v = 0; v < n_views && on_device; v++)
        if (e->step_first_token[v] >= 0) {
            const int host = e->step_seqs[v]->req.logprobs != 0;
            e->host_rows[e->step_first_token[v]] = (uint8_t)host;
            n_device += !host;
            if (!host) n_pen += ts_sampler_penalty_count(e->step_seqs[v]->sampler);
        }
    if (n_device == 0) on_device = 0;
    if (on_device && n_pen > e->penalties_cap) {
        ts_penalty *grown = realloc(e->penalties, (size_t)n_pen * sizeof *grown);
        if (grown) {
            e->penalties = grown;
            e->penalties_cap = n_pen;
        } else {
            on_device = 0; /* the host samples this step */
        }
    }
    n_pen = 0;
    for (int v = 0; v < n_views && on_device; v++)
        if (e->step_first_token[v] >= 0) {
            ts_sampler *smp = e->step_seqs[v]->sampler;
            ts_draw *d = &e->draws[e->step_first_token[v]];
            if (e->host_rows[e->step_first_token[v]]) { /* the device's pick is not used: the cheapest draw */
                *d = (ts_draw){.temperature = 0.0f, .repetition_penalty = 1.0f};
                continue;
            }
            ts_sampler_device_draw(smp, d);
            d->pen_first = n_pen;
            d->pen_count = ts_sampler_penalties(smp, e->penalties + n_pen);
            n_pen += d->pen_count;
        }
    int rc = all_greedy  ? ts_model_forward_greedy(e->model, e->cache.store, &step, e->logits, e->picked, &err)
             : on_device ? ts_model_forward_draw(e->model, e->cache.store, &step, e->draws, e->penalties, n_pen, e->host_rows,
                                                 e->logits, e->picked, &err)
                         : ts_model_forward(e->model, e->cache.store, &step, e->logits, NULL, NULL, &err);
    double t1 = ts_now_seconds();
    pthread_mutex_lock(&e->lock);
    e->stats.busy_seconds += t1 - t0;
    e->stats.steps++;
    pthread_mutex_unlock(&e->lock);
    for (int v = 0; v < n_views; v++) {
        ts_engine_seq *s = e->step_seqs[v];
        if (rc != 0) {
            ts_log_error("forward step failed: %s", err.message);
            finish_seq(e, s, TS_FINISH_ERROR, err.message);
            continue;
        }
        if (s->n_computed < s->req.n_prompt) {
            int from_prompt = s->req.n_prompt - s->n_computed;
            if (from_prompt > e->views[v].n_tokens) from_prompt = e->views[v].n_tokens;
            pthread_mutex_lock(&e->lock);
            e->stats.prompt_tokens += (uint64_t)from_prompt;
            pthread_mutex_unlock(&e->lock);
        }
        s->n_computed += e->views[v].n_tokens;
        if (e->step_first_token[v] < 0) continue; /* prefill continues next step */
        float *lg = e->logits + (size_t)e->step_first_token[v] * (size_t)vocab;
        ts_token_logprobs *lp = s->req.logprobs ? &e->lp[v] : NULL;
        int32_t tok = all_greedy || (on_device && !e->host_rows[e->step_first_token[v]])
                          ? e->picked[e->step_first_token[v]]
                          : ts_sampler_sample(s->sampler, lg, vocab, lp);
        ts_sampler_accept(s->sampler, tok);
        s->n_generated++;
        ts_finish_reason why = TS_FINISH_NONE;
        if (is_eos(e, s, tok)) why = TS_FINISH_EOS;
        else if (s->n_generated >= s->req.max_tokens || s->n_tokens + 1 >= e->cfg.context_length) why = TS_FINISH_LENGTH;
        if (why == TS_FINISH_NONE && append_token(s, tok) != 0) why = TS_FINISH_ERROR;
        pthread_mutex_lock(&e->lock);
        e->stats.generated_tokens++;
        pthread_mutex_unlock(&e->lock);
        /* A finishing sequence gives its blocks back before the caller hears of the end, so that
         * whoever reacts to the final event sees the engine's counters already settled. */
        if (why != TS_FINISH_NONE) retire(e, s);
        ts_token_event ev = {.token = tok, .index = s->n_generated - 1, .finish = why, .logprobs = lp,
                             .time = ts_now_seconds(), .admit_time = s->admit_time};
        int verdict = s->req.callback(s->req.ctx, &ev);
        if (why == TS_FINISH_NONE && verdict == TS_EVENT_STOP) {
            retire(e, s);
            ts_token_event end = {.token = -1, .index = s->n_generated, .finish = TS_FINISH_STOP, .time = ts_now_seconds(),
                                  .admit_time = s->admit_time};
            s->req.callback(s->req.ctx, &end);
            why = TS_FINISH_STOP;
        }
        if (why != TS_FINISH_NONE) {
            pthread_mutex_lock(&e->lock);
            seq_unref(s);
            pthread_mutex_unlock(&e->lock);
        }
    }
    return 1;
}

/* Weights are memory-mapped: a file modified in place under the mapping would feed the model other
 * numbers (or fault, if truncated). Checked at most twice a second while busy; from then on every
 * sequence ends with an error that says what happened, and new requests are refused. */
static void check_model_files(ts_engine *e) {
    double now = ts_now_seconds();
    if (e->failed[0] || now - e->files_checked_at < 0.5) return;
    e->files_checked_at = now;
    char why[512];
    int r = ts_model_files_changed(e->model, why, sizeof why);
    if (r == 2 && !e->files_warned) {
        e->files_warned = 1;
        ts_log_warn("%s; still serving the version that was loaded", why);
    } else if (r == 1) {
        pthread_mutex_lock(&e->lock);
        snprintf(e->failed, sizeof e->failed, "%s; reload the model", why);
        pthread_mutex_unlock(&e->lock);
        ts_log_error("%s", e->failed);
    }
}

static void *engine_main(void *arg) {
    ts_engine *e = arg;
    ts_engine_seq *cancelled[64];
    for (;;) {
        pthread_mutex_lock(&e->lock);
        while (!e->stop && e->n_running == 0 && !e->wait_head) pthread_cond_wait(&e->wake, &e->lock);
        pthread_mutex_unlock(&e->lock);
        check_model_files(e);
        if (e->failed[0]) {
            /* the model cannot run: everything running or waiting ends with the reason */
            pthread_mutex_lock(&e->lock);
            int n_fail = 0;
            while (e->n_running > 0 && n_fail < 64) {
                cancelled[n_fail++] = e->running[0];
                remove_running(e, 0);
            }
            while (e->wait_head && n_fail < 64) {
                ts_engine_seq *s = e->wait_head;
                e->wait_head = s->next;
                if (!e->wait_head) e->wait_tail = NULL;
                e->n_waiting--;
                cancelled[n_fail++] = s;
            }
            int stopping = e->stop;
            pthread_mutex_unlock(&e->lock);
            for (int i = 0; i < n_fail; i++) finish_seq(e, cancelled[i], TS_FINISH_ERROR, e->failed);
            if (stopping) break;
            if (n_fail == 0) {
                pthread_mutex_lock(&e->lock);
                if (!e->stop && e->n_running == 0 && !e->wait_head) pthread_cond_wait(&e->wake, &e->lock);
                pthread_mutex_unlock(&e->lock);
            }
            continue;
        }
        pthread_mutex_lock(&e->lock);
        int n_cancel = sweep_cancelled(e, cancelled, 64);
        int stopping = e->stop && e->n_running == 0 && !e->wait_head;
        if (!e->stop) admit(e);
        pthread_mutex_unlock(&e->lock);
        for (int i = 0; i < n_cancel; i++) finish_seq(e, cancelled[i], TS_FINISH_CANCELLED, NULL);
        if (stopping && n_cancel == 0) break;
        if (n_cancel == 0 && !run_step(e)) {
            /* nothing runnable: wait for a submission, a cancellation or freed blocks */
            pthread_mutex_lock(&e->lock);
            if (!e->stop && e->n_running == 0) pthread_cond_wait(&e->wake, &e->lock);
            pthread_mutex_unlock(&e->lock);
        }
    }
    return NULL;
}

/* Everything an engine owns but its thread (joined by the caller, or never started). */
static void free_engine(ts_engine *e) {
    ts_kv_cache_destroy(&e->cache);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->wake);
    free(e->running);
    free(e->step_tokens);
    free(e->step_positions);
    free(e->logit_rows);
    free(e->views);
    free(e->step_seqs);
    free(e->step_first_token);
    free(e->logits);
    free(e->lp);
    free(e->picked);
    free(e->draws);
    free(e->penalties);
    free(e->host_rows);
    free(e);
}

int ts_engine_create(ts_model *m, const ts_engine_config *cfg, ts_engine **out, ts_error *err) {
    *out = NULL;
    if (cfg->context_length < 2 || cfg->max_running < 1 || cfg->step_tokens < cfg->max_running ||
        cfg->step_tokens > m->opt.max_step_tokens || cfg->prefill_step_tokens > m->opt.max_step_tokens ||
        cfg->block_tokens < 1 || cfg->kv_blocks < 1)
        return ts_fail(err, "engine configuration out of range: context %d, running %d, step tokens %d (prompts alone "
                            "%d; model allows %d), blocks %d x %d tokens", cfg->context_length, cfg->max_running,
                       cfg->step_tokens, cfg->prefill_step_tokens, m->opt.max_step_tokens, cfg->kv_blocks,
                       cfg->block_tokens);
    ts_engine *e = calloc(1, sizeof *e);
    if (!e) return ts_fail(err, "out of memory");
    e->model = m;
    e->cfg = *cfg;
    if (e->cfg.prefill_step_tokens < e->cfg.step_tokens) e->cfg.prefill_step_tokens = e->cfg.step_tokens;
    if (ts_kv_cache_init_model(&e->cache, m, cfg->block_tokens, cfg->kv_blocks, err) != 0) {
        free(e);
        return -1;
    }
    int R = cfg->max_running, T = e->cfg.prefill_step_tokens;
    e->running = calloc((size_t)R, sizeof *e->running);
    e->step_tokens = calloc((size_t)T, sizeof(int32_t));
    e->step_positions = calloc((size_t)T, sizeof(int32_t));
    e->logit_rows = calloc((size_t)R, sizeof(int32_t));
    e->views = calloc((size_t)R, sizeof(ts_seq_view));
    e->step_seqs = calloc((size_t)R, sizeof(ts_engine_seq *));
    e->step_first_token = calloc((size_t)R, sizeof(int));
    e->logits = malloc((size_t)R * (size_t)m->cfg.vocab_size * sizeof(float));
    e->lp = calloc((size_t)R, sizeof(ts_token_logprobs));
    e->picked = calloc((size_t)R, sizeof(int32_t));
    e->draws = calloc((size_t)R, sizeof(ts_draw));
    e->host_rows = calloc((size_t)R, 1);
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->wake, NULL);
    e->stats.kv_blocks_total = cfg->kv_blocks; /* set before the engine thread, which updates the stats, starts */
    if (!e->running || !e->step_tokens || !e->step_positions || !e->logit_rows || !e->views || !e->step_seqs ||
        !e->step_first_token || !e->logits || !e->lp || !e->picked || !e->draws || !e->host_rows ||
        pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        ts_fail(err, "engine: out of memory or cannot start its thread");
        free_engine(e); /* no thread runs here: the condition stops before pthread_create or at its failure */
        return -1;
    }
    *out = e;
    return 0;
}

void ts_engine_destroy(ts_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->lock);
    e->stop = 1;
    pthread_cond_broadcast(&e->wake);
    pthread_mutex_unlock(&e->lock);
    pthread_join(e->thread, NULL);
    free_engine(e);
}

ts_submit_status ts_engine_submit(ts_engine *e, const ts_engine_request *req, ts_engine_seq **handle, ts_error *err) {
    *handle = NULL;
    const ts_model *m = e->model;
    if (req->n_prompt < 1) {
        ts_fail(err, "the prompt is empty");
        return TS_SUBMIT_INVALID;
    }
    if (req->n_prompt >= e->cfg.context_length) {
        ts_fail(err, "the prompt has %d tokens; this model's context is %d tokens, so at most %d fit with room to generate",
                req->n_prompt, e->cfg.context_length, e->cfg.context_length - 1);
        return TS_SUBMIT_INVALID;
    }
    for (int i = 0; i < req->n_prompt; i++) {
        if (req->prompt[i] < 0 || req->prompt[i] >= m->cfg.vocab_size) {
            ts_fail(err, "prompt token %d at position %d is outside the vocabulary (0..%d)", req->prompt[i], i,
                    m->cfg.vocab_size - 1);
            return TS_SUBMIT_INVALID;
        }
    }
    ts_engine_seq *s = calloc(1, sizeof *s);
    if (!s) {
        ts_fail(err, "out of memory");
        return TS_SUBMIT_QUEUE_FULL;
    }
    s->req = *req;
    int max_new = e->cfg.context_length - req->n_prompt;
    if (s->req.max_tokens <= 0 || s->req.max_tokens > max_new) s->req.max_tokens = max_new;
    s->reserve_tokens = req->n_prompt + s->req.max_tokens;
    if (ts_kv_blocks_for(&e->cache, s->reserve_tokens) > e->cfg.kv_blocks) {
        /* the cache could never hold it: shrink the generation budget to what fits */
        s->reserve_tokens = e->cfg.kv_blocks * e->cfg.block_tokens;
        s->req.max_tokens = s->reserve_tokens - req->n_prompt;
        if (s->req.max_tokens < 1) {
            ts_fail(err, "the prompt has %d tokens; the KV cache holds %d", req->n_prompt, s->reserve_tokens);
            free(s);
            return TS_SUBMIT_INVALID;
        }
    }
    s->capacity = req->n_prompt + 16;
    s->tokens = malloc((size_t)s->capacity * sizeof(int32_t));
    int32_t *stops = req->n_stop_tokens > 0 ? malloc((size_t)req->n_stop_tokens * sizeof(int32_t)) : NULL;
    s->sampler = ts_sampler_create(&req->sampling, req->prompt, req->n_prompt);
    if (!s->tokens || (req->n_stop_tokens > 0 && !stops) || !s->sampler) {
        free(s->tokens);
        free(stops);
        ts_sampler_free(s->sampler);
        free(s);
        ts_fail(err, "out of memory");
        return TS_SUBMIT_QUEUE_FULL;
    }
    memcpy(s->tokens, req->prompt, (size_t)req->n_prompt * sizeof(int32_t));
    if (stops) memcpy(stops, req->stop_tokens, (size_t)req->n_stop_tokens * sizeof(int32_t));
    s->req.stop_tokens = stops;
    s->req.prompt = NULL;
    s->n_tokens = req->n_prompt;
    ts_kv_seq_init(&s->kv);
    s->refs = 2;
    pthread_mutex_lock(&e->lock);
    ts_submit_status st = TS_SUBMIT_OK;
    if (e->failed[0]) {
        st = TS_SUBMIT_STOPPED;
        ts_fail(err, "%s", e->failed);
    } else if (e->stop || e->draining) {
        st = TS_SUBMIT_STOPPED;
        ts_fail(err, "the server is shutting down");
    } else if (e->n_waiting >= e->cfg.max_waiting) {
        st = TS_SUBMIT_QUEUE_FULL;
        ts_fail(err, "the queue is full (%d requests waiting)", e->n_waiting);
    }
    if (st != TS_SUBMIT_OK) {
        pthread_mutex_unlock(&e->lock);
        ts_sampler_free(s->sampler);
        free(s->tokens);
        free(stops);
        free(s);
        return st;
    }
    s->state = SEQ_WAITING;
    if (e->wait_tail) e->wait_tail->next = s;
    else e->wait_head = s;
    e->wait_tail = s;
    e->n_waiting++;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->lock);
    *handle = s;
    return TS_SUBMIT_OK;
}

void ts_engine_cancel(ts_engine *e, ts_engine_seq *s) {
    atomic_store(&s->cancel, 1);
    pthread_mutex_lock(&e->lock);
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->lock);
}

void ts_engine_release(ts_engine *e, ts_engine_seq *s) {
    pthread_mutex_lock(&e->lock);
    seq_unref(s);
    pthread_mutex_unlock(&e->lock);
}

void ts_engine_get_stats(ts_engine *e, ts_engine_stats *out) {
    pthread_mutex_lock(&e->lock);
    *out = e->stats;
    out->running = e->n_running;
    out->waiting = e->n_waiting;
    pthread_mutex_unlock(&e->lock);
    out->kv_blocks_total = e->cfg.kv_blocks;
    out->kv_blocks_used = e->cfg.kv_blocks - ts_kv_cache_free_count(&e->cache);
}

const ts_model *ts_engine_model(const ts_engine *e) { return e->model; }
const ts_engine_config *ts_engine_get_config(const ts_engine *e) { return &e->cfg; }

void ts_engine_drain(ts_engine *e) {
    pthread_mutex_lock(&e->lock);
    e->draining = 1;
    pthread_mutex_unlock(&e->lock);
}
