/* The engine: a loaded model serving many sequences at once. Requests are submitted from any thread;
 * one engine thread runs the scheduler loop, which at every step admits waiting requests when their
 * KV blocks are free, builds a step of one decode token per running sequence plus prefill chunks of
 * newly admitted ones (long prompts are split so running streams keep flowing), runs the forward
 * pass, samples, and reports each token through the request's callback. A sequence finishes on EOS,
 * a stop token, its token limit, the context limit, or cancellation; its KV blocks are free at the
 * next step. The engine knows nothing of HTTP or text: stop strings and detokenization belong to the
 * caller, which can end a sequence by returning TS_EVENT_STOP from its callback.
 * While an engine exists it owns the model: nothing else may run forward passes on it. */
#ifndef TS_RUNTIME_ENGINE_H
#define TS_RUNTIME_ENGINE_H

#include <stdint.h>

#include "model/model.h"
#include "runtime/sampler.h"

typedef struct ts_engine ts_engine;
typedef struct ts_engine_seq ts_engine_seq;

typedef enum ts_finish_reason {
    TS_FINISH_NONE = 0, /* more tokens follow */
    TS_FINISH_LENGTH,   /* max_tokens or the context limit */
    TS_FINISH_EOS,      /* an end-of-sequence or stop token */
    TS_FINISH_STOP,     /* the caller asked to stop (a stop string matched) */
    TS_FINISH_CANCELLED,
    TS_FINISH_ERROR,
} ts_finish_reason;

typedef struct ts_token_event {
    int32_t token;   /* -1 when the event only reports the end */
    int index;       /* 0 for the first generated token */
    ts_finish_reason finish;
    const ts_token_logprobs *logprobs; /* NULL unless requested */
    double time;     /* ts_now_seconds() when the token was sampled */
    double admit_time; /* when the sequence entered the running batch; 0 if it never did */
    const char *error; /* for TS_FINISH_ERROR */
} ts_token_event;

/* Returned by the callback: continue, or end the sequence now (reported as TS_FINISH_STOP). */
#define TS_EVENT_CONTINUE 0
#define TS_EVENT_STOP 1

/* Called on the engine thread: keep it short. After an event with finish != NONE the callback is
 * never called again for that sequence, and the handle may be released. */
typedef int (*ts_token_callback)(void *ctx, const ts_token_event *ev);

typedef struct ts_engine_request {
    const int32_t *prompt;
    int n_prompt;
    int max_tokens;
    ts_sampling_params sampling;
    int ignore_eos;
    int logprobs; /* report the chosen token's log-probability (and sampling.top_logprobs alternatives) */
    const int32_t *stop_tokens; /* extra token ids that end generation */
    int n_stop_tokens;
    ts_token_callback callback;
    void *ctx;
} ts_engine_request;

typedef struct ts_engine_config {
    int context_length;   /* tokens per sequence, prompt + generation */
    int max_running;      /* sequences in the running batch */
    int max_waiting;      /* queued requests beyond which submissions are refused */
    int step_tokens;      /* token budget of one forward step (chunked prefill) */
    /* budget of a step in which no sequence decodes (prompts alone: nobody waits for a next token, and a
     * GPU prefills a longer chunk faster per token); from step_tokens to the model's largest step */
    int prefill_step_tokens;
    int block_tokens;     /* KV block size */
    int kv_blocks;        /* KV blocks in the cache */
} ts_engine_config;

typedef struct ts_engine_stats {
    int running;
    int waiting;
    int kv_blocks_total;
    int kv_blocks_used;
    uint64_t prompt_tokens;    /* counters since start */
    uint64_t generated_tokens;
    uint64_t steps;
    uint64_t requests_finished;
    double busy_seconds;       /* time spent in forward steps */
} ts_engine_stats;

typedef enum ts_submit_status {
    TS_SUBMIT_OK = 0,
    TS_SUBMIT_INVALID,    /* the request can never run (too long, bad ids): a client error */
    TS_SUBMIT_QUEUE_FULL, /* try again later */
    TS_SUBMIT_STOPPED,    /* the engine is shutting down */
} ts_submit_status;

void ts_engine_config_default(ts_engine_config *c, const ts_model *m);
int ts_engine_create(ts_model *m, const ts_engine_config *cfg, ts_engine **out, ts_error *err);
/* Cancels what is left (callbacks see TS_FINISH_CANCELLED), stops the thread, frees the engine. */
void ts_engine_destroy(ts_engine *e);

ts_submit_status ts_engine_submit(ts_engine *e, const ts_engine_request *req, ts_engine_seq **handle, ts_error *err);
/* Asks for the sequence to end; its callback gets a final TS_FINISH_CANCELLED event (unless it already
 * finished). Safe from any thread until the handle is released. */
void ts_engine_cancel(ts_engine *e, ts_engine_seq *seq);
/* Gives the handle back; call once, after the final event (or after cancel + final event). */
void ts_engine_release(ts_engine *e, ts_engine_seq *seq);

void ts_engine_get_stats(ts_engine *e, ts_engine_stats *out);
const ts_model *ts_engine_model(const ts_engine *e);
const ts_engine_config *ts_engine_get_config(const ts_engine *e);
/* Stops admitting new requests; running ones continue. */
void ts_engine_drain(ts_engine *e);

#endif
