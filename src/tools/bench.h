/* The inference benchmark behind `tessera bench`: timed runs of prefill then greedy decode over a
 * batch of sequences, with peak memory and the device, and the device's measured ceilings as the
 * reference for the same run. */
#ifndef TS_TOOLS_BENCH_H
#define TS_TOOLS_BENCH_H

#include "backend/backend.h"
#include "model/model.h"

typedef struct ts_bench_options {
    int prompt_tokens;
    int gen_tokens;
    int runs;
    int batch;        /* sequences decoded together */
    int roofline;     /* measure the device's bandwidth and matrix rate first */
    unsigned seed;
    /* decoding: greedy when temperature <= 0, else drawn (top_k, top_p as the sampler's) where the logits
     * are when the device can, on the host when it cannot or host_sampling is set */
    float temperature;
    int top_k;
    float top_p;
    int host_sampling;
} ts_bench_options;

typedef struct ts_bench_run {
    double seconds;       /* prefill + decode */
    double prefill_seconds, decode_seconds;
    double prefill_tps, decode_tps, overall_tps;
    double peak_host_bytes;
    double device_bytes;
} ts_bench_run;

typedef struct ts_bench_result {
    int n_runs;
    ts_bench_run runs[64];
    ts_bench_run median;
    ts_roofline roof;
    double decode_bytes_per_step; /* weights and cache read by one decode step (the batch at its mean length) */
    double decode_bound_tps;      /* tokens/s if a decode step only had to read those bytes at read_gbps */
    double prefill_flops_per_token;
    char device[256];
} ts_bench_result;

int ts_bench_run_all(ts_model *m, const ts_bench_options *opt, ts_bench_result *out, ts_error *err);
void ts_bench_print(const ts_bench_result *r, const ts_bench_options *opt, const ts_model *m, int json);

#endif
