/* The HTTP layer: a libmicrohttpd daemon with one thread per connection, so that a handler may block
 * while a generation runs and a streaming body may wait for its next event. It reads request bodies up
 * to a limit (larger ones are reported to the handler as too large, never buffered), hands each
 * complete request to one handler, and sends exactly one response: a buffer, or a stream whose reader
 * is called on the connection's thread until it says the stream ended. It knows nothing of JSON or of
 * the protocols above it; routing, authentication and error shapes belong to the caller. */
#ifndef TS_SERVER_HTTP_H
#define TS_SERVER_HTTP_H

#include <stddef.h>
#include <sys/types.h>

#include "base/error.h"

typedef struct ts_http_server ts_http_server;
typedef struct ts_http_request ts_http_request;

/* Called once per request, on the connection's thread, after the whole body arrived (or as soon as it
 * is known to be too large). It must answer with ts_http_respond or ts_http_respond_stream; a handler
 * that answers nothing produces a 500. */
typedef void (*ts_http_handler)(void *ctx, ts_http_request *req);

typedef struct ts_http_options {
    const char *host;      /* address to bind: "127.0.0.1", "0.0.0.0", "::1", a host name */
    int port;              /* 0: any free port (see ts_http_port) */
    size_t max_body_bytes; /* larger bodies are refused (the handler sees ts_http_body_too_large) */
    int max_connections;
    int single_thread;     /* one polling thread for all connections: for light endpoints (metrics) */
} ts_http_options;

int ts_http_start(const ts_http_options *opt, ts_http_handler handler, void *ctx, ts_http_server **out,
                  ts_error *err);
/* The port actually bound. */
int ts_http_port(const ts_http_server *s);
/* Requests received and not yet completely answered (streams included). */
int ts_http_in_flight(ts_http_server *s);
/* Closes the listening socket and waits for every connection thread; handlers still running must be
 * ending (their streams ended or their clients gone) for this to return. */
void ts_http_stop(ts_http_server *s);

const char *ts_http_method(const ts_http_request *r);
const char *ts_http_path(const ts_http_request *r);
/* A request header (case-insensitive name), or NULL. */
const char *ts_http_header(const ts_http_request *r, const char *name);
/* The body, NUL-terminated for convenience (the length is exact; the body may contain NUL bytes). */
const char *ts_http_body(const ts_http_request *r, size_t *len);
int ts_http_body_too_large(const ts_http_request *r);
size_t ts_http_max_body(const ts_http_request *r);
/* ts_now_seconds() when the request line arrived. */
double ts_http_arrival(const ts_http_request *r);
/* Whether the client closed its end of the connection (checked without blocking). */
int ts_http_client_gone(const ts_http_request *r);

/* Adds a header to the coming response (before responding). */
void ts_http_add_header(ts_http_request *r, const char *name, const char *value);
/* Sends a complete response; body is copied. */
void ts_http_respond(ts_http_request *r, int status, const char *content_type, const char *body, size_t len);

/* A streaming body's reader: writes up to `cap` bytes and returns how many (at least one), or one of
 * the values below. It runs on the connection's thread and may block. `client_gone` tells it the peer
 * closed the connection (it should then return TS_HTTP_STREAM_ABORT). */
#define TS_HTTP_STREAM_END (-1)
#define TS_HTTP_STREAM_ABORT (-2)
typedef ssize_t (*ts_http_stream_read)(void *ctx, char *buf, size_t cap);
/* Called once when the stream is finished with: completed is 1 after TS_HTTP_STREAM_END was sent, 0 when
 * the connection failed or the client went away first. Frees ctx. */
typedef void (*ts_http_stream_done)(void *ctx, int completed);

typedef struct ts_http_stream {
    ts_http_stream_read read;
    ts_http_stream_done done;
    void *ctx;
} ts_http_stream;

/* Sends the status and headers now and the body as the reader produces it (chunked encoding). On
 * failure to start, done(ctx, 0) is called before returning. */
void ts_http_respond_stream(ts_http_request *r, int status, const char *content_type, const ts_http_stream *stream);
/* For a stream's reader: whether the peer of the connection that carries it has gone. */
int ts_http_stream_client_gone(int fd);
/* The connection's socket, to pass to ts_http_stream_client_gone from a reader. */
int ts_http_request_fd(const ts_http_request *r);

#endif
