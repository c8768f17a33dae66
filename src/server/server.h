/* The inference server: the KServe v2 / Triton HTTP protocol (with the generate and model-repository
 * extensions) and the OpenAI API on one port, Prometheus metrics on another, over a registry of
 * models supplied by a model source. Lifecycle: create (binds both ports), then stop on a signal:
 * new requests get 503 while in-flight ones may finish within a grace period, after which what is
 * left is cancelled with a clear error. */
#ifndef TS_SERVER_SERVER_H
#define TS_SERVER_SERVER_H

#include <stddef.h>

#include "base/error.h"
#include "server/registry.h"

typedef struct ts_server_options {
    const char *host;        /* default 127.0.0.1 */
    int port;                /* default 8000; 0 picks a free port */
    int metrics_port;        /* default 8002; 0 picks a free port; -1 disables the metrics listener */
    const char *api_key;     /* when set, every endpoint but health needs "Authorization: Bearer KEY" */
    size_t max_body_bytes;   /* default 8 MiB */
    int max_connections;     /* default 512 */
    const char *server_name; /* reported by GET /v2; default "tessera" */
} ts_server_options;

void ts_server_options_init(ts_server_options *o);

typedef struct ts_server ts_server;

/* The registry stays owned by the caller and must outlive the server. */
int ts_server_start(const ts_server_options *o, ts_registry *reg, ts_server **out, ts_error *err);
int ts_server_port(const ts_server *s);
int ts_server_metrics_port(const ts_server *s); /* -1 when disabled */
/* Stops accepting work (new requests get 503 with Retry-After), lets in-flight generations run for up
 * to grace_seconds, cancels the rest (their clients get an error event or response), then closes the
 * listeners. Returns how many generations had to be cancelled. */
int ts_server_shutdown(ts_server *s, double grace_seconds);
void ts_server_free(ts_server *s);

/* The Prometheus text of the metrics endpoint (heap string, caller frees). */
char *ts_server_metrics_text(ts_server *s);

#endif
