/* The generations of one request (one per prompt and choice, at most TS_MAX_CHOICES) driven to the
 * client: collected for a single response, or streamed as server-sent events. A protocol supplies how
 * a chunk of one generation is written and what ends the stream; this file owns the waiting, the
 * client-disconnect checks (a client that goes away cancels every generation of the request), and
 * the cleanup on every path. */
#ifndef TS_SERVER_GEN_SET_H
#define TS_SERVER_GEN_SET_H

#include "server/gen.h"
#include "server/http.h"
#include "server/strbuf.h"

#define TS_MAX_CHOICES 16

typedef struct ts_gen_set {
    ts_registry *reg;
    ts_served_model *model; /* a reference, released by ts_gen_set_free */
    ts_gen_params params;   /* shared by the generations (their stop strings point here) */
    ts_gen *gens[TS_MAX_CHOICES];
    int finished[TS_MAX_CHOICES];
    int n;
} ts_gen_set;

/* Writes what chunk c of generation `index` means to the client (SSE events, or into the protocol's
 * own accumulator when collecting). */
typedef void (*ts_chunk_fn)(void *ctx, int index, const ts_gen_chunk *c, ts_sbuf *out);
/* Writes what follows the last chunk (usage, "data: [DONE]"). */
typedef void (*ts_end_fn)(void *ctx, ts_sbuf *out);

/* Prepares a set on a model reference the caller acquired (the set now owns it) with params (moved in:
 * the caller must not free them). */
void ts_gen_set_init(ts_gen_set *s, ts_registry *reg, ts_served_model *m, ts_gen_params *params);
/* Starts one generation per prompt, `copies` times each (copy k of a seeded request uses seed + k).
 * On failure nothing is left running and e says why. */
int ts_gen_set_start(ts_gen_set *s, int32_t *const *prompts, const int *n_prompts, int n, int copies,
                     double arrival, ts_api_error *e);
/* Runs every generation to its end, passing chunks to on_chunk. Returns -1 when the client went away
 * (the generations are cancelled). */
int ts_gen_set_collect(ts_gen_set *s, int client_fd, ts_chunk_fn on_chunk, void *ctx);
/* Answers 200 with a text/event-stream body. The stream owns s (allocated by the caller with malloc)
 * and ctx (freed with free_ctx) from here on. */
void ts_gen_set_stream(ts_http_request *r, ts_gen_set *s, ts_chunk_fn on_chunk, ts_end_fn on_end,
                       void (*free_ctx)(void *ctx), void *ctx);
/* Cancels what still runs, frees the generations and the params, releases the model. */
void ts_gen_set_free(ts_gen_set *s);

/* Appends "data: <json>\n\n" (the value is not consumed). */
void ts_sse_data(ts_sbuf *out, const json_t *value);
void ts_sse_done(ts_sbuf *out);

#endif
