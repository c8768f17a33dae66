/* The models being served. A model source (supplied by whoever assembles the server: it knows how to
 * turn a name into a loaded model, the server does not) lists what can be loaded and loads it; the
 * registry keeps each loaded version with its engine, tokenizer and metrics, hands out counted
 * references to request handlers, and unloads by draining: no new requests, in-flight ones finish
 * (or are cancelled after a grace period), then the engine and model are destroyed. */
#ifndef TS_SERVER_REGISTRY_H
#define TS_SERVER_REGISTRY_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "base/error.h"
#include "runtime/engine.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

#define TS_MODEL_NAME_MAX 128
#define TS_MODEL_MAX_END_TOKENS 8

typedef struct ts_gen ts_gen;

/* One loaded model version, as a source produces it. */
typedef struct ts_model_instance {
    char version[32];           /* "1" */
    ts_engine *engine;
    const ts_tokenizer *tokenizer;
    int32_t end_of_turn[TS_MODEL_MAX_END_TOKENS]; /* tokens that end a chat reply besides EOS */
    int num_end_of_turn;
    char platform[64];          /* what model metadata reports, e.g. "tessera" */
    char description[256];      /* for logs and the index: path and how it runs */
    json_t *config;             /* the model configuration in Triton's JSON form (owned) */
    /* Renders a chat into prompt text with the model's own template. `vars` holds what the template
     * reads: messages, add_generation_prompt, tools, enable_thinking and other chat_template_kwargs.
     * NULL when the model has no chat template. */
    int (*render_chat)(void *owner, const json_t *vars, char **text, size_t *len, ts_error *err);
    void *owner;                /* the source's state for this instance */
    void (*destroy)(void *owner); /* frees engine, model, tokenizer, backend; called once */
} ts_model_instance;

typedef struct ts_model_listing {
    char name[TS_MODEL_NAME_MAX];
    char versions[8][32]; /* selected versions, for the index */
    int num_versions;
    char error[TS_ERROR_MAX]; /* why it cannot be loaded, when known without trying */
} ts_model_listing;

typedef struct ts_model_source {
    void *ctx;
    /* Every model the source knows (heap array, caller frees). */
    int (*list)(void *ctx, ts_model_listing **out, int *n, ts_error *err);
    /* Loads the versions of `name` its policy selects into out[0..*n) (at most cap). */
    int (*load)(void *ctx, const char *name, ts_model_instance *out, int cap, int *n, ts_error *err);
} ts_model_source;

typedef struct ts_served_model {
    char name[TS_MODEL_NAME_MAX];
    ts_model_instance inst;
    ts_model_metrics metrics;
    double loaded_at; /* seconds since the epoch */
    /* registry-private */
    int refs;
    int unloading;
    ts_gen **active; /* generations in flight, for cancellation */
    int num_active, cap_active;
    struct ts_served_model *next;
} ts_served_model;

typedef struct ts_registry ts_registry;

ts_registry *ts_registry_create(const ts_model_source *src);
/* Unloads everything (cancelling what still runs) and frees the registry. */
void ts_registry_destroy(ts_registry *r);

/* Loads (or reloads) a model by name. A reload swaps in the new versions, then drains the old ones. */
int ts_registry_load(ts_registry *r, const char *name, ts_error *err);
/* Drains and frees every version of the model: waits up to grace_seconds for requests in flight, then
 * cancels them. Fails when the model is not loaded. */
int ts_registry_unload(ts_registry *r, const char *name, double grace_seconds, ts_error *err);

/* A counted reference to a ready model version (version NULL or "": the highest), or NULL when no such
 * model or version is loaded (or it is being unloaded). */
ts_served_model *ts_registry_acquire(ts_registry *r, const char *name, const char *version);
void ts_registry_release(ts_registry *r, ts_served_model *m);
/* Whether a model of that name is known to the source, loaded or not. */
int ts_registry_known(ts_registry *r, const char *name);

/* Calls fn for each loaded version (under the registry lock: fn must not call back into the registry). */
void ts_registry_foreach(ts_registry *r, void (*fn)(void *ctx, ts_served_model *m), void *ctx);
/* The repository index in Triton's form: [{"name", "version", "state", "reason"}]. */
json_t *ts_registry_index(ts_registry *r, int ready_only);
int ts_registry_num_ready(ts_registry *r);

/* Stops admitting new work on every engine; in-flight generations continue. */
void ts_registry_drain(ts_registry *r);
/* Generations still in flight across all models. */
int ts_registry_active(ts_registry *r);
/* Cancels every generation in flight; each ends with `reason` as its error. */
void ts_registry_cancel_all(ts_registry *r, const char *reason);

/* Used by gen.c: generations in flight are listed on their model so that they can be cancelled. */
void ts_registry_track(ts_registry *r, ts_served_model *m, ts_gen *g);
void ts_registry_untrack(ts_registry *r, ts_served_model *m, ts_gen *g);

#endif
