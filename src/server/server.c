/* The server's front: routing by path prefix (/v2 KServe and Triton, /v1 OpenAI), the checks every
 * request passes first (body size, API key, shutting down), the metrics listener with its sampler
 * thread, and the orderly shutdown. */
#include "server/server.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "runtime/devices.h"
#include "server/server_internal.h"
#include "server/strbuf.h"

void ts_server_options_init(ts_server_options *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8000;
    o->metrics_port = 8002;
    o->max_body_bytes = 8u << 20;
    o->max_connections = 512;
    o->server_name = "tessera";
}

void ts_respond_json(ts_http_request *r, int status, json_t *body) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        static const char msg[] = "{\"error\":\"out of memory\"}";
        ts_http_respond(r, 500, "application/json", msg, sizeof msg - 1);
        return;
    }
    ts_http_respond(r, status, "application/json", text, strlen(text));
    free(text);
}

static unsigned g_id_salt;
static pthread_once_t g_id_once = PTHREAD_ONCE_INIT;

static void init_id_salt(void) {
    unsigned v = (unsigned)time(NULL) ^ (unsigned)getpid() * 2654435761u;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &v, sizeof v) != (ssize_t)sizeof v) v ^= 0x9e3779b9u;
        close(fd);
    }
    g_id_salt = v | 1u;
}

void ts_server_make_id(const char *prefix, char *out, size_t cap) {
    static atomic_uint counter;
    pthread_once(&g_id_once, init_id_salt);
    unsigned n = atomic_fetch_add(&counter, 1) + 1;
    snprintf(out, cap, "%s%08x%08x%08x", prefix, g_id_salt, (unsigned)time(NULL), n * 2654435761u);
}

/* Which protocol's error shape a path gets. */
static int is_openai(const char *path) { return !strncmp(path, "/v1/", 4) || !strcmp(path, "/v1"); }

static void reply_error(ts_http_request *r, int status, const char *code, const char *message) {
    ts_api_error e;
    ts_api_fail(&e, status, NULL, "%s", message);
    if (code) ts_api_set_code(&e, code);
    if (is_openai(ts_http_path(r))) ts_openai_error(r, &e);
    else ts_kserve_error(r, &e);
}

static int is_health(const char *path) {
    return !strcmp(path, "/v2/health/live") || !strcmp(path, "/v2/health/ready") || !strcmp(path, "/health");
}

/* Compares without an early exit, so the time taken does not tell how much of the key matched. */
static int same_secret(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++) diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return diff == 0;
}

static int authorized(ts_server *s, ts_http_request *r) {
    if (!s->api_key[0]) return 1;
    const char *h = ts_http_header(r, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    return same_secret(h, s->api_key);
}

static void handle(void *ctx, ts_http_request *r) {
    ts_server *s = ctx;
    const char *path = ts_http_path(r);
    if (ts_http_body_too_large(r)) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes", ts_http_max_body(r));
        reply_error(r, 413, "request_too_large", msg);
        return;
    }
    if (!is_health(path) && !authorized(s, r)) {
        ts_http_add_header(r, "WWW-Authenticate", "Bearer");
        reply_error(r, 401, "invalid_api_key", "a valid API key is required: send 'Authorization: Bearer <key>'");
        return;
    }
    if (atomic_load(&s->stopping) && !is_health(path)) {
        reply_error(r, 503, "shutting_down", "the server is shutting down");
        return;
    }
    if (!strcmp(path, "/v2") || !strncmp(path, "/v2/", 4)) {
        ts_kserve_route(s, r, path + 3);
    } else if (!strncmp(path, "/v1/", 4)) {
        ts_openai_route(s, r, path + 3);
    } else if (!strcmp(path, "/health")) {
        if (atomic_load(&s->stopping)) reply_error(r, 503, NULL, "the server is shutting down");
        else ts_http_respond(r, 200, "application/json", "", 0);
    } else {
        char msg[256];
        snprintf(msg, sizeof msg, "no such endpoint: %.200s", path);
        reply_error(r, 404, NULL, msg);
    }
}

/* ---- metrics ---- */

typedef struct view_list {
    ts_metrics_view *v;
    int n, cap;
} view_list;

static void collect_view(void *ctx, ts_served_model *m) {
    view_list *l = ctx;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 8;
        ts_metrics_view *nv = realloc(l->v, (size_t)cap * sizeof *nv);
        if (!nv) return;
        l->v = nv;
        l->cap = cap;
    }
    ts_metrics_view *v = &l->v[l->n++];
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", m->name);
    snprintf(v->version, sizeof v->version, "%s", m->inst.version);
    ts_metrics_snapshot(&m->metrics, v);
    ts_engine_get_stats(m->inst.engine, &v->engine);
}

char *ts_server_metrics_text(ts_server *s) {
    view_list l = {0};
    ts_registry_foreach(s->reg, collect_view, &l);
    ts_system_sample sys;
    pthread_mutex_lock(&s->sample_lock);
    sys = s->system;
    pthread_mutex_unlock(&s->sample_lock);
    ts_sbuf b;
    ts_sbuf_init(&b);
    ts_metrics_render(&b, l.v, l.n, &sys);
    free(l.v);
    if (!ts_sbuf_ok(&b)) {
        ts_sbuf_free(&b);
        return NULL;
    }
    return b.data ? b.data : strdup("");
}

static void handle_metrics(void *ctx, ts_http_request *r) {
    ts_server *s = ctx;
    if (strcmp(ts_http_path(r), "/metrics") != 0) {
        static const char msg[] = "{\"error\":\"no such endpoint; metrics are at /metrics\"}";
        ts_http_respond(r, 404, "application/json", msg, sizeof msg - 1);
        return;
    }
    if (strcmp(ts_http_method(r), "GET") != 0 && strcmp(ts_http_method(r), "HEAD") != 0) {
        ts_http_add_header(r, "Allow", "GET");
        static const char msg[] = "{\"error\":\"method not allowed\"}";
        ts_http_respond(r, 405, "application/json", msg, sizeof msg - 1);
        return;
    }
    char *text = ts_server_metrics_text(s);
    if (!text) {
        static const char msg[] = "{\"error\":\"out of memory\"}";
        ts_http_respond(r, 500, "application/json", msg, sizeof msg - 1);
        return;
    }
    ts_http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
}

static int read_small_file(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = 0;
    return (int)n;
}

static void sample_rates(void *ctx, ts_served_model *m) {
    double now = *(double *)ctx;
    ts_engine_stats st;
    ts_engine_get_stats(m->inst.engine, &st);
    ts_metrics_rate_sample(&m->metrics, now, st.generated_tokens);
}

static void sample_system(ts_server *s) {
    char buf[8192];
    ts_system_sample sys;
    pthread_mutex_lock(&s->sample_lock);
    sys = s->system;
    pthread_mutex_unlock(&s->sample_lock);
    int n = read_small_file("/proc/stat", buf, sizeof buf);
    uint64_t busy, total;
    if (n > 0 && ts_metrics_parse_proc_stat(buf, (size_t)n, &busy, &total) == 0) {
        if (s->cpu_total && total > s->cpu_total)
            sys.cpu_utilization = (double)(busy - s->cpu_busy) / (double)(total - s->cpu_total);
        s->cpu_busy = busy;
        s->cpu_total = total;
    }
    n = read_small_file("/proc/meminfo", buf, sizeof buf);
    uint64_t mt, ma;
    if (n > 0 && ts_devices_parse_meminfo(buf, (size_t)n, &mt, &ma) == 0) {
        sys.memory_total = mt;
        sys.memory_used = mt > ma ? mt - ma : 0;
    }
    if (s->have_gpus) {
        ts_device_info *dev = calloc(1, sizeof *dev);
        if (dev) {
            ts_devices_detect_gpus(NULL, dev);
            sys.num_gpus = dev->num_gpus < 16 ? dev->num_gpus : 16;
            for (int i = 0; i < sys.num_gpus; i++) {
                ts_gpu_sample *g = &sys.gpus[i];
                g->index = dev->gpus[i].index;
                snprintf(g->name, sizeof g->name, "%s", dev->gpus[i].name);
                g->utilization = dev->gpus[i].utilization_gpu < 0 ? -1 : dev->gpus[i].utilization_gpu / 100.0;
                g->memory_total = dev->gpus[i].total_bytes;
                g->memory_used = dev->gpus[i].total_bytes - dev->gpus[i].free_bytes;
            }
            free(dev);
        }
    }
    pthread_mutex_lock(&s->sample_lock);
    s->system = sys;
    pthread_mutex_unlock(&s->sample_lock);
    double now = ts_now_seconds();
    ts_registry_foreach(s->reg, sample_rates, &now);
}

static void *sampler_main(void *arg) {
    ts_server *s = arg;
    for (;;) {
        sample_system(s);
        pthread_mutex_lock(&s->sample_lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        if (!s->sampler_stop) pthread_cond_timedwait(&s->sample_wake, &s->sample_lock, &ts);
        int stop = s->sampler_stop;
        pthread_mutex_unlock(&s->sample_lock);
        if (stop) break;
    }
    return NULL;
}

/* ---- lifecycle ---- */

int ts_server_start(const ts_server_options *o, ts_registry *reg, ts_server **out, ts_error *err) {
    *out = NULL;
    ts_server *s = calloc(1, sizeof *s);
    if (!s) return ts_fail(err, "out of memory");
    s->opt = *o;
    snprintf(s->host, sizeof s->host, "%s", o->host ? o->host : "127.0.0.1");
    snprintf(s->api_key, sizeof s->api_key, "%s", o->api_key ? o->api_key : "");
    snprintf(s->name, sizeof s->name, "%s", o->server_name ? o->server_name : "tessera");
    s->opt.host = s->host;
    s->opt.api_key = s->api_key;
    s->reg = reg;
    s->started = ts_now_seconds();
    s->system.cpu_utilization = -1;
    pthread_mutex_init(&s->sample_lock, NULL);
    pthread_cond_init(&s->sample_wake, NULL);
    ts_device_info *dev = calloc(1, sizeof *dev);
    if (dev) {
        ts_devices_detect_gpus(NULL, dev);
        s->have_gpus = dev->num_gpus > 0;
        free(dev);
    }
    ts_http_options ho = {.host = s->host, .port = o->port, .max_body_bytes = o->max_body_bytes,
                          .max_connections = o->max_connections};
    if (ts_http_start(&ho, handle, s, &s->http, err) != 0) {
        ts_server_free(s);
        return -1;
    }
    if (o->metrics_port >= 0) {
        ts_http_options mo = {.host = s->host, .port = o->metrics_port, .max_body_bytes = 4096, .max_connections = 64,
                              .single_thread = 1};
        if (ts_http_start(&mo, handle_metrics, s, &s->metrics_http, err) != 0) {
            ts_error_prefix(err, "metrics: ");
            ts_server_free(s);
            return -1;
        }
    }
    if (pthread_create(&s->sampler, NULL, sampler_main, s) == 0) s->sampler_running = 1;
    *out = s;
    return 0;
}

int ts_server_port(const ts_server *s) { return ts_http_port(s->http); }
int ts_server_metrics_port(const ts_server *s) { return s->metrics_http ? ts_http_port(s->metrics_http) : -1; }

static void sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int ts_server_shutdown(ts_server *s, double grace) {
    atomic_store(&s->stopping, 1);
    ts_registry_drain(s->reg);
    double deadline = ts_now_seconds() + grace;
    int active = ts_registry_active(s->reg);
    if (active > 0) ts_log_info("shutting down: waiting up to %.0f s for %d request(s) in flight", grace, active);
    while ((active = ts_registry_active(s->reg)) > 0 && ts_now_seconds() < deadline) sleep_ms(20);
    int cancelled = active;
    if (active > 0) {
        ts_log_warn("shutting down: cancelling %d request(s) still running after %.0f s", active, grace);
        ts_registry_cancel_all(s->reg, "the server is shutting down");
        double until = ts_now_seconds() + 10.0;
        while (ts_registry_active(s->reg) > 0 && ts_now_seconds() < until) sleep_ms(20);
    }
    /* let the last responses reach their clients before the connections close */
    double until = ts_now_seconds() + 2.0;
    while (s->http && ts_http_in_flight(s->http) > 0 && ts_now_seconds() < until) sleep_ms(10);
    ts_http_stop(s->http);
    s->http = NULL;
    ts_http_stop(s->metrics_http);
    s->metrics_http = NULL;
    return cancelled;
}

void ts_server_free(ts_server *s) {
    if (!s) return;
    if (s->sampler_running) {
        pthread_mutex_lock(&s->sample_lock);
        s->sampler_stop = 1;
        pthread_cond_broadcast(&s->sample_wake);
        pthread_mutex_unlock(&s->sample_lock);
        pthread_join(s->sampler, NULL);
    }
    ts_http_stop(s->http);
    ts_http_stop(s->metrics_http);
    pthread_mutex_destroy(&s->sample_lock);
    pthread_cond_destroy(&s->sample_wake);
    free(s);
}
