/* What the protocol handlers (kserve.c, openai.c) share with the router (server.c). Not a public API. */
#ifndef TS_SERVER_SERVER_INTERNAL_H
#define TS_SERVER_SERVER_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "server/api_error.h"
#include "server/http.h"
#include "server/metrics.h"
#include "server/registry.h"
#include "server/server.h"

struct ts_server {
    ts_server_options opt;
    char host[256];
    char api_key[256];
    char name[64];
    ts_registry *reg;
    ts_http_server *http;
    ts_http_server *metrics_http;
    atomic_int stopping;
    double started;

    /* system figures sampled about once a second by the sampler thread */
    pthread_t sampler;
    int sampler_running;
    pthread_mutex_t sample_lock;
    pthread_cond_t sample_wake;
    int sampler_stop;
    ts_system_sample system;
    unsigned long long cpu_busy, cpu_total;
    int have_gpus;
};

/* Sends a JSON body (the reference is stolen). */
void ts_respond_json(ts_http_request *r, int status, json_t *body);
/* Errors in each protocol's shape; 503 adds Retry-After. */
void ts_kserve_error(ts_http_request *r, const ts_api_error *e);
void ts_openai_error(ts_http_request *r, const ts_api_error *e);

/* Handlers. `rest` is the path after the protocol prefix. */
void ts_kserve_route(ts_server *s, ts_http_request *r, const char *rest);
void ts_openai_route(ts_server *s, ts_http_request *r, const char *rest);

/* A unique id for a response ("cmpl-...", "chatcmpl-..."). */
void ts_server_make_id(const char *prefix, char *out, size_t cap);

#endif
