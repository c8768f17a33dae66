/* Metric accumulation (counters, histograms, rate samples) and Prometheus text rendering. */
#include "server/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double k_ttft_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                       0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
static const double k_itl_bounds[] = {0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
                                      0.1,   0.15,  0.2,  0.3,   0.4,  0.5,   0.75, 1.0,  2.5,  5.0};
static const double k_e2e_bounds[] = {0.1,  0.25, 0.5,  1.0,  2.5,  5.0,   10.0,  15.0,  20.0,
                                      30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

void ts_histogram_init(ts_histogram *h, const double *bounds, int n) {
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->num_bounds = n > TS_HIST_MAX_BOUNDS ? TS_HIST_MAX_BOUNDS : n;
}

void ts_histogram_observe(ts_histogram *h, double v) {
    int i = 0;
    while (i < h->num_bounds && v > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

void ts_model_metrics_init(ts_model_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    ts_histogram_init(&m->ttft, k_ttft_bounds, COUNT(k_ttft_bounds));
    ts_histogram_init(&m->itl, k_itl_bounds, COUNT(k_itl_bounds));
    ts_histogram_init(&m->e2e, k_e2e_bounds, COUNT(k_e2e_bounds));
}

void ts_model_metrics_destroy(ts_model_metrics *m) { pthread_mutex_destroy(&m->lock); }

void ts_metrics_first_token(ts_model_metrics *m, double seconds) {
    pthread_mutex_lock(&m->lock);
    ts_histogram_observe(&m->ttft, seconds);
    pthread_mutex_unlock(&m->lock);
}

void ts_metrics_token_gap(ts_model_metrics *m, double seconds) {
    pthread_mutex_lock(&m->lock);
    ts_histogram_observe(&m->itl, seconds);
    pthread_mutex_unlock(&m->lock);
}

static uint64_t to_us(double s) { return s > 0 ? (uint64_t)(s * 1e6 + 0.5) : 0; }

void ts_metrics_request_done(ts_model_metrics *m, int ok, double e2e, double queue, double compute) {
    pthread_mutex_lock(&m->lock);
    if (ok) m->request_success++;
    else m->request_failure++;
    m->inference_count++;
    m->request_duration_us += to_us(e2e);
    m->queue_duration_us += to_us(queue);
    m->compute_infer_duration_us += to_us(compute);
    ts_histogram_observe(&m->e2e, e2e);
    pthread_mutex_unlock(&m->lock);
}

void ts_metrics_request_refused(ts_model_metrics *m) {
    pthread_mutex_lock(&m->lock);
    m->request_failure++;
    pthread_mutex_unlock(&m->lock);
}

void ts_metrics_rate_sample(ts_model_metrics *m, double now, uint64_t generated) {
    pthread_mutex_lock(&m->lock);
    m->rate_time[m->rate_head] = now;
    m->rate_tokens[m->rate_head] = generated;
    m->rate_head = (m->rate_head + 1) % TS_RATE_SAMPLES;
    if (m->rate_n < TS_RATE_SAMPLES) m->rate_n++;
    pthread_mutex_unlock(&m->lock);
}

/* Tokens per second between the newest sample and the oldest one inside the window. Lock held. */
static double rate_locked(const ts_model_metrics *m) {
    if (m->rate_n < 2) return 0;
    int newest = (m->rate_head + TS_RATE_SAMPLES - 1) % TS_RATE_SAMPLES;
    int oldest = newest;
    for (int k = 1; k < m->rate_n; k++) {
        int i = (newest + TS_RATE_SAMPLES - k) % TS_RATE_SAMPLES;
        if (m->rate_time[newest] - m->rate_time[i] > TS_RATE_WINDOW_SECONDS) break;
        oldest = i;
    }
    double dt = m->rate_time[newest] - m->rate_time[oldest];
    if (dt <= 0) return 0;
    return (double)(m->rate_tokens[newest] - m->rate_tokens[oldest]) / dt;
}

void ts_metrics_snapshot(ts_model_metrics *m, ts_metrics_view *out) {
    pthread_mutex_lock(&m->lock);
    out->m = *m;
    out->tokens_per_second = rate_locked(m);
    pthread_mutex_unlock(&m->lock);
    memset(&out->m.lock, 0, sizeof out->m.lock);
}

/* ---- rendering ---- */

static void label_value(ts_sbuf *b, const char *v) {
    for (const char *p = v; *p; p++) {
        if (*p == '\\') ts_sbuf_puts(b, "\\\\");
        else if (*p == '"') ts_sbuf_puts(b, "\\\"");
        else if (*p == '\n') ts_sbuf_puts(b, "\\n");
        else ts_sbuf_append(b, p, 1);
    }
}

static void model_labels(ts_sbuf *b, const ts_metrics_view *v) {
    ts_sbuf_puts(b, "model=\"");
    label_value(b, v->name);
    ts_sbuf_puts(b, "\",version=\"");
    label_value(b, v->version);
    ts_sbuf_puts(b, "\"");
}

static void family(ts_sbuf *b, const char *name, const char *type, const char *help) {
    ts_sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

typedef enum { F_SUCCESS, F_FAILURE, F_COUNT, F_EXEC, F_REQ_US, F_QUEUE_US, F_COMPUTE_US, F_PROMPT, F_GEN, F_RUNNING,
               F_WAITING, F_KV_RATIO, F_KV_USED, F_KV_TOTAL, F_TPS, F_BUSY } field_id;

static double field_value(const ts_metrics_view *v, field_id f) {
    switch (f) {
    case F_SUCCESS: return (double)v->m.request_success;
    case F_FAILURE: return (double)v->m.request_failure;
    case F_COUNT: return (double)v->m.inference_count;
    case F_EXEC: return (double)v->engine.steps;
    case F_REQ_US: return (double)v->m.request_duration_us;
    case F_QUEUE_US: return (double)v->m.queue_duration_us;
    case F_COMPUTE_US: return (double)v->m.compute_infer_duration_us;
    case F_PROMPT: return (double)v->engine.prompt_tokens;
    case F_GEN: return (double)v->engine.generated_tokens;
    case F_RUNNING: return v->engine.running;
    case F_WAITING: return v->engine.waiting;
    case F_KV_RATIO:
        return v->engine.kv_blocks_total > 0 ? (double)v->engine.kv_blocks_used / v->engine.kv_blocks_total : 0;
    case F_KV_USED: return v->engine.kv_blocks_used;
    case F_KV_TOTAL: return v->engine.kv_blocks_total;
    case F_TPS: return v->tokens_per_second;
    case F_BUSY: return v->engine.busy_seconds;
    }
    return 0;
}

static void per_model(ts_sbuf *b, const ts_metrics_view *models, int n, const char *name, const char *type,
                      const char *help, field_id f) {
    family(b, name, type, help);
    for (int i = 0; i < n; i++) {
        ts_sbuf_printf(b, "%s{", name);
        model_labels(b, &models[i]);
        double v = field_value(&models[i], f);
        if (f == F_KV_RATIO || f == F_TPS || f == F_BUSY) ts_sbuf_printf(b, "} %.6f\n", v);
        else ts_sbuf_printf(b, "} %.0f\n", v);
    }
}

static void histogram(ts_sbuf *b, const ts_metrics_view *models, int n, const char *name, const char *help, int which) {
    family(b, name, "histogram", help);
    for (int i = 0; i < n; i++) {
        const ts_histogram *h = which == 0 ? &models[i].m.ttft : which == 1 ? &models[i].m.itl : &models[i].m.e2e;
        uint64_t cum = 0;
        for (int k = 0; k <= h->num_bounds; k++) {
            cum += h->counts[k];
            ts_sbuf_printf(b, "%s_bucket{", name);
            model_labels(b, &models[i]);
            if (k < h->num_bounds) ts_sbuf_printf(b, ",le=\"%g\"} %llu\n", h->bounds[k], (unsigned long long)cum);
            else ts_sbuf_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        ts_sbuf_printf(b, "%s_sum{", name);
        model_labels(b, &models[i]);
        ts_sbuf_printf(b, "} %.6f\n%s_count{", h->sum, name);
        model_labels(b, &models[i]);
        ts_sbuf_printf(b, "} %llu\n", (unsigned long long)h->count);
    }
}

void ts_metrics_render(ts_sbuf *b, const ts_metrics_view *m, int n, const ts_system_sample *sys) {
    per_model(b, m, n, "nv_inference_request_success", "counter",
              "Number of successful inference requests, all batch sizes", F_SUCCESS);
    per_model(b, m, n, "nv_inference_request_failure", "counter",
              "Number of failed inference requests, all batch sizes", F_FAILURE);
    per_model(b, m, n, "nv_inference_count", "counter", "Number of inferences performed (one per request)", F_COUNT);
    per_model(b, m, n, "nv_inference_exec_count", "counter",
              "Number of model executions performed (engine steps over the running batch)", F_EXEC);
    per_model(b, m, n, "nv_inference_request_duration_us", "counter",
              "Cumulative inference request duration in microseconds (arrival to last response)", F_REQ_US);
    per_model(b, m, n, "nv_inference_queue_duration_us", "counter",
              "Cumulative inference queuing duration in microseconds (arrival to admission into the batch)",
              F_QUEUE_US);
    per_model(b, m, n, "nv_inference_compute_infer_duration_us", "counter",
              "Cumulative compute inference duration in microseconds (admission to last token)", F_COMPUTE_US);
    if (sys) {
        family(b, "nv_cpu_utilization", "gauge", "CPU utilization rate [0.0 - 1.0]");
        ts_sbuf_printf(b, "nv_cpu_utilization %.6f\n", sys->cpu_utilization < 0 ? 0.0 : sys->cpu_utilization);
        family(b, "nv_cpu_memory_total_bytes", "gauge", "CPU total memory (RAM), in bytes");
        ts_sbuf_printf(b, "nv_cpu_memory_total_bytes %llu\n", (unsigned long long)sys->memory_total);
        family(b, "nv_cpu_memory_used_bytes", "gauge", "CPU used memory (RAM), in bytes");
        ts_sbuf_printf(b, "nv_cpu_memory_used_bytes %llu\n", (unsigned long long)sys->memory_used);
        if (sys->num_gpus > 0) {
            family(b, "nv_gpu_utilization", "gauge", "GPU utilization rate [0.0 - 1.0)");
            for (int i = 0; i < sys->num_gpus; i++) {
                if (sys->gpus[i].utilization < 0) continue;
                ts_sbuf_printf(b, "nv_gpu_utilization{gpu=\"%d\",name=\"", sys->gpus[i].index);
                label_value(b, sys->gpus[i].name);
                ts_sbuf_printf(b, "\"} %.6f\n", sys->gpus[i].utilization);
            }
            family(b, "nv_gpu_memory_total_bytes", "gauge", "GPU total memory, in bytes");
            for (int i = 0; i < sys->num_gpus; i++) {
                ts_sbuf_printf(b, "nv_gpu_memory_total_bytes{gpu=\"%d\",name=\"", sys->gpus[i].index);
                label_value(b, sys->gpus[i].name);
                ts_sbuf_printf(b, "\"} %llu\n", (unsigned long long)sys->gpus[i].memory_total);
            }
            family(b, "nv_gpu_memory_used_bytes", "gauge", "GPU used memory, in bytes");
            for (int i = 0; i < sys->num_gpus; i++) {
                ts_sbuf_printf(b, "nv_gpu_memory_used_bytes{gpu=\"%d\",name=\"", sys->gpus[i].index);
                label_value(b, sys->gpus[i].name);
                ts_sbuf_printf(b, "\"} %llu\n", (unsigned long long)sys->gpus[i].memory_used);
            }
        }
    }
    histogram(b, m, n, "tessera_time_to_first_token_seconds", "Time from request arrival to the first generated token", 0);
    histogram(b, m, n, "tessera_inter_token_latency_seconds", "Time between consecutive generated tokens of a request", 1);
    histogram(b, m, n, "tessera_e2e_request_latency_seconds", "Time from request arrival to its last token", 2);
    per_model(b, m, n, "tessera_prompt_tokens_total", "counter", "Prompt tokens processed (prefilled)", F_PROMPT);
    per_model(b, m, n, "tessera_generation_tokens_total", "counter", "Tokens generated", F_GEN);
    per_model(b, m, n, "tessera_num_requests_running", "gauge", "Sequences in the running batch", F_RUNNING);
    per_model(b, m, n, "tessera_num_requests_waiting", "gauge", "Requests waiting for KV cache blocks or a batch slot",
              F_WAITING);
    per_model(b, m, n, "tessera_kv_cache_usage_ratio", "gauge", "Fraction of KV cache blocks in use [0.0 - 1.0]", F_KV_RATIO);
    per_model(b, m, n, "tessera_kv_cache_blocks_used", "gauge", "KV cache blocks in use", F_KV_USED);
    per_model(b, m, n, "tessera_kv_cache_blocks_total", "gauge", "KV cache blocks in all", F_KV_TOTAL);
    per_model(b, m, n, "tessera_generation_tokens_per_second", "gauge",
              "Generated tokens per second over the last 10 seconds", F_TPS);
    per_model(b, m, n, "tessera_engine_busy_seconds_total", "counter",
              "Seconds the engine spent in forward steps (divide by nv_inference_exec_count for the step time)", F_BUSY);
}

int ts_metrics_parse_proc_stat(const char *text, size_t len, uint64_t *busy, uint64_t *total) {
    /* "cpu  user nice system idle iowait irq softirq steal guest guest_nice" */
    if (len < 4 || strncmp(text, "cpu ", 4) != 0) return -1;
    uint64_t v[10] = {0};
    size_t pos = 4;
    int n = 0;
    while (n < 10 && pos < len && text[pos] != '\n') {
        while (pos < len && text[pos] == ' ') pos++;
        if (pos >= len || text[pos] < '0' || text[pos] > '9') break;
        uint64_t x = 0;
        while (pos < len && text[pos] >= '0' && text[pos] <= '9') {
            if (x > (UINT64_MAX - 9) / 10) return -1;
            x = x * 10 + (uint64_t)(text[pos] - '0');
            pos++;
        }
        v[n++] = x;
    }
    if (n < 4) return -1;
    uint64_t idle = v[3] + (n > 4 ? v[4] : 0);
    /* guest time is already inside user and nice */
    uint64_t all = 0;
    for (int i = 0; i < n && i < 8; i++) all += v[i];
    *total = all;
    *busy = all - idle;
    return 0;
}
