/* Driving a request's generations: waiting, disconnect checks, collecting, SSE streaming. */
#include "server/gen_set.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

void ts_gen_set_init(ts_gen_set *s, ts_registry *reg, ts_served_model *m, ts_gen_params *params) {
    memset(s, 0, sizeof *s);
    s->reg = reg;
    s->model = m;
    s->params = *params;
    params->n_stops = 0; /* moved */
}

int ts_gen_set_start(ts_gen_set *s, int32_t *const *prompts, const int *n_prompts, int n, int copies, double arrival,
                     ts_api_error *e) {
    if (n * copies > TS_MAX_CHOICES)
        return ts_api_fail(e, 400, "n", "at most %d completions per request are supported (%d prompts x %d)",
                           TS_MAX_CHOICES, n, copies);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < copies; k++) {
            ts_gen_params p = s->params;
            if (p.sampling.has_seed) p.sampling.seed += (uint64_t)k;
            ts_gen *g = ts_gen_start(s->reg, s->model, prompts[i], n_prompts[i], &p, arrival, e);
            if (!g) {
                for (int j = 0; j < s->n; j++) ts_gen_free(s->gens[j]);
                s->n = 0;
                return -1;
            }
            s->gens[s->n++] = g;
        }
    }
    return 0;
}

/* Waits for progress of any unfinished generation (about 100 ms at most). Returns whether any chunk
 * was produced, or -1 when everything is finished. */
static int step(ts_gen_set *s, ts_chunk_fn on_chunk, void *ctx, ts_sbuf *out) {
    int unfinished = 0, progressed = 0, first = -1;
    for (int i = 0; i < s->n; i++) {
        if (s->finished[i]) continue;
        unfinished++;
        if (first < 0) first = i;
        if (s->n == 1) break;
        ts_gen_chunk c;
        if (ts_gen_next(s->gens[i], 0, &c)) {
            progressed = 1;
            if (c.finished) s->finished[i] = 1;
            on_chunk(ctx, i, &c, out);
        }
    }
    if (!unfinished) return -1;
    if (progressed) return 1;
    ts_gen_chunk c;
    if (ts_gen_next(s->gens[first], s->n == 1 ? 0.1 : 0.02, &c)) {
        if (c.finished) s->finished[first] = 1;
        on_chunk(ctx, first, &c, out);
        return 1;
    }
    return 0;
}

int ts_gen_set_collect(ts_gen_set *s, int client_fd, ts_chunk_fn on_chunk, void *ctx) {
    ts_sbuf scratch;
    ts_sbuf_init(&scratch);
    int rc = 0;
    double next_check = 0;
    for (;;) {
        int st = step(s, on_chunk, ctx, &scratch);
        if (st < 0) break;
        /* nothing is written until the end, so the socket is looked at every 100 ms however busy */
        double now = ts_now_seconds();
        if (now >= next_check) {
            next_check = now + 0.1;
            if (ts_http_stream_client_gone(client_fd)) {
                rc = -1;
                break;
            }
        }
    }
    ts_sbuf_free(&scratch);
    return rc;
}

typedef struct stream_ctx {
    ts_gen_set *set;
    ts_sbuf buf;
    int fd;
    int end_written;
    ts_chunk_fn on_chunk;
    ts_end_fn on_end;
    void (*free_ctx)(void *);
    void *ctx;
} stream_ctx;

static ssize_t stream_read(void *p, char *out, size_t cap) {
    stream_ctx *st = p;
    while (st->buf.len == 0) {
        if (st->end_written) return TS_HTTP_STREAM_END;
        int r = step(st->set, st->on_chunk, st->ctx, &st->buf);
        if (r < 0) {
            st->on_end(st->ctx, &st->buf);
            st->end_written = 1;
        } else if (r == 0 && ts_http_stream_client_gone(st->fd)) {
            return TS_HTTP_STREAM_ABORT;
        }
        if (!ts_sbuf_ok(&st->buf)) return TS_HTTP_STREAM_ABORT;
    }
    size_t n = st->buf.len < cap ? st->buf.len : cap;
    memcpy(out, st->buf.data, n);
    ts_sbuf_consume(&st->buf, n);
    return (ssize_t)n;
}

static void stream_done(void *p, int completed) {
    (void)completed;
    stream_ctx *st = p;
    ts_gen_set_free(st->set);
    free(st->set);
    ts_sbuf_free(&st->buf);
    if (st->free_ctx) st->free_ctx(st->ctx);
    free(st);
}

void ts_gen_set_stream(ts_http_request *r, ts_gen_set *s, ts_chunk_fn on_chunk, ts_end_fn on_end,
                       void (*free_ctx)(void *ctx), void *ctx) {
    stream_ctx *st = calloc(1, sizeof *st);
    if (!st) {
        ts_gen_set_free(s);
        free(s);
        if (free_ctx) free_ctx(ctx);
        static const char msg[] = "{\"error\":\"out of memory\"}";
        ts_http_respond(r, 500, "application/json", msg, sizeof msg - 1);
        return;
    }
    st->set = s;
    ts_sbuf_init(&st->buf);
    st->fd = ts_http_request_fd(r);
    st->on_chunk = on_chunk;
    st->on_end = on_end;
    st->free_ctx = free_ctx;
    st->ctx = ctx;
    ts_http_stream hs = {.read = stream_read, .done = stream_done, .ctx = st};
    ts_http_respond_stream(r, 200, "text/event-stream; charset=utf-8", &hs);
}

void ts_gen_set_free(ts_gen_set *s) {
    for (int i = 0; i < s->n; i++) ts_gen_free(s->gens[i]);
    s->n = 0;
    ts_gen_params_free(&s->params);
    if (s->model) ts_registry_release(s->reg, s->model);
    s->model = NULL;
}

void ts_sse_data(ts_sbuf *out, const json_t *value) {
    char *text = json_dumps(value, JSON_COMPACT);
    if (!text) {
        out->failed = 1;
        return;
    }
    ts_sbuf_puts(out, "data: ");
    ts_sbuf_puts(out, text);
    ts_sbuf_puts(out, "\n\n");
    free(text);
}

void ts_sse_done(ts_sbuf *out) { ts_sbuf_puts(out, "data: [DONE]\n\n"); }
