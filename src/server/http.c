/* libmicrohttpd glue: body collection with a size limit, one handler call per request, buffered and
 * streamed responses, and detection of clients that went away. */
#include "server/http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/clock.h"
#include "base/log.h"

struct ts_http_server {
    struct MHD_Daemon *daemon;
    atomic_int in_flight;
    ts_http_handler handler;
    void *ctx;
    size_t max_body;
    int port;
};

typedef struct http_header {
    char *name, *value;
} http_header;

struct ts_http_request {
    struct MHD_Connection *conn;
    ts_http_server *srv;
    char method[16];
    char *path;
    char *body;
    size_t body_len, body_cap;
    int too_large;
    int dispatched, responded;
    double arrival;
    http_header *headers;
    int num_headers;
};

typedef struct stream_state {
    ts_http_stream stream;
    int ended;
} stream_state;

static void free_request(ts_http_request *r) {
    if (!r) return;
    for (int i = 0; i < r->num_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->path);
    free(r->body);
    free(r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    ts_http_server *s = cls;
    (void)c;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) ts_log_debug("http: request ended early (code %d)", (int)toe);
    if (*con_cls) atomic_fetch_sub(&s->in_flight, 1);
    free_request(*con_cls);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
    ts_log_debug("http: %s", line);
}

static int append_body(ts_http_request *r, const char *data, size_t n) {
    if (r->too_large) return 0;
    if (r->body_len + n > r->srv->max_body) {
        r->too_large = 1;
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        return 0;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + n + 1) cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb) return -1;
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    return 0;
}

static void dispatch(ts_http_request *r) {
    r->dispatched = 1;
    r->srv->handler(r->srv->ctx, r);
    if (!r->responded) {
        static const char msg[] = "{\"error\":\"the server produced no response\"}";
        ts_http_respond(r, 500, "application/json", msg, sizeof msg - 1);
    }
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    ts_http_server *s = cls;
    ts_http_request *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->conn = c;
        r->srv = s;
        r->arrival = ts_now_seconds();
        snprintf(r->method, sizeof r->method, "%s", method);
        r->path = strdup(url);
        if (!r->path) {
            free(r);
            return MHD_NO;
        }
        *con_cls = r;
        atomic_fetch_add(&s->in_flight, 1);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno != 0 || end == cl || v > s->max_body) {
                /* answer before reading a byte of it: nothing of an oversized body is buffered */
                r->too_large = 1;
                dispatch(r);
            }
        }
        return MHD_YES;
    }
    if (r->dispatched) {
        *upload_size = 0; /* an early answer was queued: the rest of the body is dropped */
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (append_body(r, upload, *upload_size) != 0) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (!r->body && append_body(r, "", 0) != 0) return MHD_NO;
    dispatch(r);
    return MHD_YES;
}

int ts_http_start(const ts_http_options *opt, ts_http_handler handler, void *ctx, ts_http_server **out,
                  ts_error *err) {
    *out = NULL;
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", opt->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(opt->host, port_s, &hints, &ai);
    if (gai != 0 || !ai) return ts_fail(err, "cannot resolve listen address '%s': %s", opt->host, gai_strerror(gai));
    ts_http_server *s = calloc(1, sizeof *s);
    if (!s) {
        freeaddrinfo(ai);
        return ts_fail(err, "out of memory");
    }
    s->handler = handler;
    s->ctx = ctx;
    s->max_body = opt->max_body_bytes;
    unsigned int flags = MHD_USE_ERROR_LOG | MHD_USE_INTERNAL_POLLING_THREAD;
    flags |= opt->single_thread ? MHD_USE_POLL : MHD_USE_THREAD_PER_CONNECTION;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(flags, (uint16_t)opt->port, NULL, NULL, on_access, s,
                                 MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)(opt->max_connections > 0 ? opt->max_connections : 256),
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)600,
                                 MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
                                 MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->daemon) {
        free(s);
        return ts_fail(err, "cannot listen on %s:%d (is the port in use, or the address not local?)", opt->host,
                       opt->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : opt->port;
    *out = s;
    return 0;
}

int ts_http_port(const ts_http_server *s) { return s->port; }
int ts_http_in_flight(ts_http_server *s) { return atomic_load(&s->in_flight); }

void ts_http_stop(ts_http_server *s) {
    if (!s) return;
    MHD_stop_daemon(s->daemon);
    free(s);
}

const char *ts_http_method(const ts_http_request *r) { return r->method; }
const char *ts_http_path(const ts_http_request *r) { return r->path; }

const char *ts_http_header(const ts_http_request *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *ts_http_body(const ts_http_request *r, size_t *len) {
    *len = r->body_len;
    return r->body ? r->body : "";
}

int ts_http_body_too_large(const ts_http_request *r) { return r->too_large; }
size_t ts_http_max_body(const ts_http_request *r) { return r->srv->max_body; }
double ts_http_arrival(const ts_http_request *r) { return r->arrival; }

int ts_http_request_fd(const ts_http_request *r) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

/* A peer that shut down its sending side counts as gone: HTTP clients keep it open until they have
 * read the response. */
int ts_http_stream_client_gone(int fd) {
    if (fd < 0) return 0;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return 1; /* orderly shutdown by the peer */
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return 1;
    return 0;
}

int ts_http_client_gone(const ts_http_request *r) { return ts_http_stream_client_gone(ts_http_request_fd(r)); }

void ts_http_add_header(ts_http_request *r, const char *name, const char *value) {
    http_header *nh = realloc(r->headers, (size_t)(r->num_headers + 1) * sizeof *nh);
    if (!nh) return;
    r->headers = nh;
    nh[r->num_headers].name = strdup(name);
    nh[r->num_headers].value = strdup(value);
    if (!nh[r->num_headers].name || !nh[r->num_headers].value) {
        free(nh[r->num_headers].name);
        free(nh[r->num_headers].value);
        return;
    }
    r->num_headers++;
}

static void add_headers(ts_http_request *r, struct MHD_Response *resp, const char *content_type) {
    if (content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (int i = 0; i < r->num_headers; i++) MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
}

void ts_http_respond(ts_http_request *r, int status, const char *content_type, const char *body, size_t len) {
    if (r->responded) return;
    r->responded = 1;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return;
    add_headers(r, resp, content_type);
    if (r->too_large) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    MHD_queue_response(r->conn, (unsigned int)status, resp);
    MHD_destroy_response(resp);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_state *st = cls;
    ssize_t n = st->stream.read(st->stream.ctx, buf, max);
    if (n == TS_HTTP_STREAM_END) {
        st->ended = 1;
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (n < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    return n;
}

static void stream_free(void *cls) {
    stream_state *st = cls;
    st->stream.done(st->stream.ctx, st->ended);
    free(st);
}

void ts_http_respond_stream(ts_http_request *r, int status, const char *content_type, const ts_http_stream *stream) {
    if (r->responded) {
        stream->done(stream->ctx, 0);
        return;
    }
    r->responded = 1;
    stream_state *st = calloc(1, sizeof *st);
    if (!st) {
        stream->done(stream->ctx, 0);
        return;
    }
    st->stream = *stream;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st, stream_free);
    if (!resp) {
        stream->done(stream->ctx, 0);
        free(st);
        return;
    }
    add_headers(r, resp, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    MHD_queue_response(r->conn, (unsigned int)status, resp);
    MHD_destroy_response(resp); /* the stream lives on inside the connection; stream_free runs when it is done */
}
