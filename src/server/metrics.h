/* Serving metrics in the Prometheus text format. Per model version: Triton's request counters and
 * cumulative durations (nv_inference_*), and LLM serving figures under tessera_ names (histograms of
 * time to first token, inter-token latency and end-to-end latency; prompt and generated token
 * counters, running and waiting requests, KV cache usage, generated tokens per second over a recent
 * window). Server-wide: CPU utilization and memory (nv_cpu_*) and, when a GPU exists, its utilization
 * and memory (nv_gpu_*). Events are counted where they happen (the engine counts tokens and steps;
 * request handlers count requests and latencies); rendering only reads. */
#ifndef TS_SERVER_METRICS_H
#define TS_SERVER_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include "runtime/engine.h"
#include "server/strbuf.h"

#define TS_HIST_MAX_BOUNDS 24
#define TS_RATE_SAMPLES 16
#define TS_RATE_WINDOW_SECONDS 10.0

typedef struct ts_histogram {
    const double *bounds; /* upper bounds, ascending; +Inf is implicit */
    int num_bounds;
    uint64_t counts[TS_HIST_MAX_BOUNDS + 1]; /* per bucket, not cumulative */
    double sum;
    uint64_t count;
} ts_histogram;

typedef struct ts_model_metrics {
    pthread_mutex_t lock;
    uint64_t request_success, request_failure, inference_count;
    uint64_t request_duration_us, queue_duration_us, compute_infer_duration_us;
    ts_histogram ttft, itl, e2e;
    /* (time, generated tokens) samples for the tokens-per-second gauge */
    double rate_time[TS_RATE_SAMPLES];
    uint64_t rate_tokens[TS_RATE_SAMPLES];
    int rate_n, rate_head;
} ts_model_metrics;

void ts_histogram_init(ts_histogram *h, const double *bounds, int n);
void ts_histogram_observe(ts_histogram *h, double v);

void ts_model_metrics_init(ts_model_metrics *m);
void ts_model_metrics_destroy(ts_model_metrics *m);
void ts_metrics_first_token(ts_model_metrics *m, double seconds_since_arrival);
void ts_metrics_token_gap(ts_model_metrics *m, double seconds);
/* A request ended: ok or not, its end-to-end, queue and compute seconds. */
void ts_metrics_request_done(ts_model_metrics *m, int ok, double e2e, double queue, double compute);
/* A request refused before it reached the engine (bad input, queue full). */
void ts_metrics_request_refused(ts_model_metrics *m);
/* Records the engine's generated-token counter at `now` (called about once a second). */
void ts_metrics_rate_sample(ts_model_metrics *m, double now, uint64_t generated_tokens);

/* A consistent copy of one model version's figures, for rendering. */
typedef struct ts_metrics_view {
    char name[128];
    char version[32];
    ts_model_metrics m; /* copied (its lock is not used) */
    double tokens_per_second;
    ts_engine_stats engine;
} ts_metrics_view;

void ts_metrics_snapshot(ts_model_metrics *m, ts_metrics_view *out);

typedef struct ts_gpu_sample {
    int index;
    char name[96];
    double utilization; /* 0..1, < 0 when unknown */
    uint64_t memory_total, memory_used;
} ts_gpu_sample;

typedef struct ts_system_sample {
    double cpu_utilization; /* 0..1 over the last sampling interval; < 0 before the first interval */
    uint64_t memory_total, memory_used;
    ts_gpu_sample gpus[16];
    int num_gpus;
} ts_system_sample;

void ts_metrics_render(ts_sbuf *out, const ts_metrics_view *models, int n, const ts_system_sample *sys);

/* CPU time from the text of /proc/stat's first line: busy and total jiffies. -1 when malformed. */
int ts_metrics_parse_proc_stat(const char *text, size_t len, uint64_t *busy, uint64_t *total);

#endif
