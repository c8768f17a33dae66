/* One generation in flight, between an HTTP handler and a model's engine. The handler tokenizes and
 * starts it; the engine's callback (on the engine thread) only queues each token event and wakes the
 * handler; the handler's thread takes the events, detokenizes them incrementally (whole UTF-8
 * characters only), applies stop strings (holding back text that may begin one, cutting at the first
 * match and then ending the sequence), and receives the text in chunks. Latency metrics are recorded
 * here, where the events are seen. A generation is freed by the handler on every path: finished,
 * failed, or abandoned because the client went away (which cancels the sequence, so its KV blocks are
 * free at the next engine step). */
#ifndef TS_SERVER_GEN_H
#define TS_SERVER_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "server/api_error.h"
#include "server/gen_params.h"
#include "server/registry.h"

typedef struct ts_gen_token {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_ids[TS_MAX_TOP_LOGPROBS];
    float top_logprobs[TS_MAX_TOP_LOGPROBS];
    size_t text_start, text_end; /* the token's text within the generated text */
} ts_gen_token;

typedef struct ts_gen_chunk {
    const char *text; /* text released by this call (valid until the next call) */
    size_t len;
    const ts_gen_token *tokens; /* tokens settled by this call, when log-probabilities were asked for */
    int n_tokens;
    int finished;              /* this is the last chunk */
    const char *finish_reason; /* "stop" or "length" when finished without error */
    const char *error;         /* the generation failed or the server cancelled it */
    int error_status;          /* the HTTP status that error would have had before streaming began */
} ts_gen_chunk;

/* Starts a generation of model m (a reference the caller holds until ts_gen_free). The prompt is
 * copied. On refusal returns NULL with e filled: 400 for a prompt that cannot run (too long for the
 * context, bad ids), 503 when the queue is full or the server is stopping. */
ts_gen *ts_gen_start(ts_registry *reg, ts_served_model *m, const int32_t *prompt, int n_prompt,
                     const ts_gen_params *p, double arrival, ts_api_error *e);
/* Waits up to timeout_s for progress. Returns 1 with a chunk (possibly with empty text when only
 * tokens settled), 0 when nothing happened in time, and keeps returning the final chunk's finished
 * state once it was delivered. */
int ts_gen_next(ts_gen *g, double timeout_s, ts_gen_chunk *out);
/* Cancels from another thread; the generation ends with `reason` as its error (503). */
void ts_gen_cancel(ts_gen *g, const char *reason);
/* Cancels the sequence if it still runs, waits for the engine to let go of it, records the request's
 * metrics, frees. Safe on every path. */
void ts_gen_free(ts_gen *g);

int ts_gen_prompt_tokens(const ts_gen *g);
int ts_gen_completion_tokens(const ts_gen *g);
/* Every generated text so far (what was released and what is held back). */
const char *ts_gen_text(const ts_gen *g, size_t *len);

#endif
