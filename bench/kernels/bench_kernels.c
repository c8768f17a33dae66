/* Kernel throughput per instruction-set table for Qwen3-0.6B-shaped matrices (hidden 1024,
 * intermediate 3072, q 2048, kv 1024, vocab 151936, 28 layers), with random weights:
 *  - a memory read-bandwidth probe (all threads streaming a buffer far larger than the caches): the
 *    roofline for decode;
 *  - decode: one token through every matrix of the model (28 layers x q, k, v, o, gate, up, down,
 *    then the output head), as GEMV; reported as tokens/s, GB/s of weights streamed and the fraction
 *    of the measured bandwidth;
 *  - prefill: the layer matrices on N tokens (the output head only for the last token, as a model
 *    does), reported as tokens/s and GOPS (2 ops per multiply-add);
 * medians of several runs. Usage:
 *   bench_kernels [--threads N] [--types q4_0,q8_0,q4_k,bf16] [--isas amx,avx512,...] [--runs R]
 *                 [--prefill N] [--no-decode] [--no-prefill] [--generic-layers L] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/threadpool.h"
#include "quant/dtype.h"
#include "quant/float16.h"

#define HIDDEN 1024
#define INTER 3072
#define QDIM 2048
#define KVDIM 1024
#define VOCAB 151936
#define LAYERS 28
#define PER_LAYER 7

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static uint64_t g_rng = 88172645463325252ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* ---- bandwidth probe ---- */

typedef struct {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} bw_job;

static void bw_task(void *arg, int task, int thread) {
    (void)thread;
    bw_job *j = arg;
    size_t per = j->n / 64, i0 = (size_t)task * per, i1 = i0 + per;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = i0; i < i1; i += 8) {
        s0 += j->p[i] ^ j->p[i + 4];
        s1 += j->p[i + 1] ^ j->p[i + 5];
        s2 += j->p[i + 2] ^ j->p[i + 6];
        s3 += j->p[i + 3] ^ j->p[i + 7];
    }
    __atomic_fetch_add(&j->sum, s0 + s1 + s2 + s3, __ATOMIC_RELAXED);
}

static double bandwidth_probe(ts_threadpool *pool, int runs) {
    size_t bytes = (size_t)1 << 30;
    uint64_t *p = NULL;
    if (posix_memalign((void **)&p, 64, bytes)) return 0;
    for (size_t i = 0; i < bytes / 8; i++) p[i] = i;
    double *t = calloc((size_t)runs, sizeof(double));
    bw_job j = {p, bytes / 8, 0};
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        ts_threadpool_run(pool, 64, bw_task, &j);
        t[r] = (double)bytes / (now() - t0) / 1e9;
    }
    double m = median(t, runs);
    printf("memory read bandwidth: %.1f GB/s (median of %d, 1 GiB, %d threads; sum %llu)\n", m, runs,
           ts_threadpool_size(pool), (unsigned long long)(j.sum & 1));
    free(t);
    free(p);
    return m;
}

/* ---- weights ---- */

static void fill_weight(ts_weight *w, ts_dtype t, int64_t rows, int64_t cols) {
    w->dtype = t;
    w->rows = rows;
    w->cols = cols;
    w->row_bytes = ts_dtype_row_bytes(t, cols);
    size_t bytes = w->row_bytes * (size_t)rows;
    uint8_t *h = malloc(bytes);
    const ts_dtype_info *in = ts_dtype_get(t);
    if (t == TS_DTYPE_BF16 || t == TS_DTYPE_F16) {
        uint16_t *v = (uint16_t *)h;
        for (size_t i = 0; i < bytes / 2; i++) {
            float f = (float)((int)(rnd() % 2001) - 1000) * 1e-4f;
            v[i] = t == TS_DTYPE_BF16 ? ts_f32_to_bf16(f) : ts_f32_to_f16(f);
        }
    } else {
        for (size_t i = 0; i < bytes; i++) h[i] = (uint8_t)rnd();
        /* Sensible scales so that the numbers stay finite. */
        size_t nb = bytes / (size_t)in->block_bytes;
        for (size_t b = 0; b < nb; b++) {
            uint8_t *blk = h + b * (size_t)in->block_bytes;
            uint16_t d = ts_f32_to_f16(0.01f);
            if (t == TS_DTYPE_Q6_K) memcpy(blk + 208, &d, 2);
            else memcpy(blk, &d, 2);
            if (t == TS_DTYPE_Q4_1 || t == TS_DTYPE_Q4_K || t == TS_DTYPE_Q5_K) memcpy(blk + 2, &d, 2);
        }
    }
    w->host = h;
    w->prepared = NULL;
}

typedef struct {
    ts_weight layer[LAYERS][PER_LAYER];
    ts_weight head;
    double bytes_per_token; /* weight bytes read per decoded token */
    double macs_layers;     /* multiply-adds per token in the layers */
} model;

static const int64_t g_shape[PER_LAYER][2] = {
    {QDIM, HIDDEN}, {KVDIM, HIDDEN}, {KVDIM, HIDDEN}, {HIDDEN, QDIM}, {INTER, HIDDEN}, {INTER, HIDDEN}, {HIDDEN, INTER},
};

static void model_init(model *m, ts_dtype t, int layers) {
    memset(m, 0, sizeof *m);
    for (int l = 0; l < layers; l++)
        for (int i = 0; i < PER_LAYER; i++) {
            fill_weight(&m->layer[l][i], t, g_shape[i][0], g_shape[i][1]);
            m->bytes_per_token += (double)m->layer[l][i].row_bytes * (double)g_shape[i][0];
            m->macs_layers += (double)g_shape[i][0] * (double)g_shape[i][1];
        }
    fill_weight(&m->head, t, VOCAB, HIDDEN);
    m->bytes_per_token += (double)m->head.row_bytes * VOCAB;
}

static void model_prepare(model *m, ts_cpu_matmul_ctx *ctx, int layers) {
    ts_error err;
    for (int l = 0; l < layers; l++)
        for (int i = 0; i < PER_LAYER; i++)
            if (ts_cpu_matmul_prepare(ctx, &m->layer[l][i], &err)) fprintf(stderr, "%s\n", err.message);
    if (ts_cpu_matmul_prepare(ctx, &m->head, &err)) fprintf(stderr, "%s\n", err.message);
}

static void model_release(model *m, int layers) {
    for (int l = 0; l < layers; l++)
        for (int i = 0; i < PER_LAYER; i++) ts_cpu_matmul_release(&m->layer[l][i]);
    ts_cpu_matmul_release(&m->head);
}

static void model_free(model *m, int layers) {
    model_release(m, layers);
    for (int l = 0; l < layers; l++)
        for (int i = 0; i < PER_LAYER; i++) free((void *)m->layer[l][i].host);
    free((void *)m->head.host);
}

static const char *const g_shape_name[PER_LAYER + 1] = {"q", "k", "v", "o", "gate", "up", "down", "head"};
static int g_fused = 1;

/* One forward of n tokens through the matrices of `layers` layers (+ the head on the last token),
 * adding each matrix's time to shape_s. Fused: q, k, v and gate, up share their input, as a model
 * calls them (ts_cpu_matmul_multi). */
static void forward(model *m, ts_cpu_matmul_ctx *ctx, int layers, int n, float *x, float *y, int head, double *shape_s) {
    for (int l = 0; l < layers; l++) {
        ts_weight *w = m->layer[l];
        if (g_fused) {
            const ts_weight *qkv[3] = {&w[0], &w[1], &w[2]}, *gu[2] = {&w[4], &w[5]};
            float *yq[3] = {y, y + (size_t)n * QDIM, y + (size_t)n * (QDIM + KVDIM)};
            float *yg[2] = {y, y + (size_t)n * INTER};
            double t0 = now();
            ts_cpu_matmul_multi(ctx, qkv, 3, x, n, yq, NULL);
            double t1 = now();
            ts_cpu_matmul(ctx, &w[3], x, n, y, NULL);
            double t2 = now();
            ts_cpu_matmul_multi(ctx, gu, 2, x, n, yg, NULL);
            double t3 = now();
            ts_cpu_matmul(ctx, &w[6], x, n, y, NULL);
            double t4 = now();
            /* Fused calls are shared out by rows. */
            shape_s[0] += (t1 - t0) * 2.0 / 4.0, shape_s[1] += (t1 - t0) / 4.0, shape_s[2] += (t1 - t0) / 4.0;
            shape_s[3] += t2 - t1;
            shape_s[4] += (t3 - t2) / 2.0, shape_s[5] += (t3 - t2) / 2.0;
            shape_s[6] += t4 - t3;
        } else {
            for (int i = 0; i < PER_LAYER; i++) {
                double t0 = now();
                ts_cpu_matmul(ctx, &w[i], x, n, y, NULL);
                shape_s[i] += now() - t0;
            }
        }
    }
    if (head) {
        double t0 = now();
        ts_cpu_matmul(ctx, &m->head, x + (size_t)(n - 1) * INTER, 1, y, NULL);
        shape_s[PER_LAYER] += now() - t0;
    }
}

static void print_shapes(const model *m, const double *shape_s, int runs, int layers, int n, int decode, int head) {
    printf("           ");
    for (int i = 0; i < PER_LAYER + head; i++) {
        int64_t rows = i < PER_LAYER ? g_shape[i][0] : VOCAB, cols = i < PER_LAYER ? g_shape[i][1] : HIDDEN;
        const ts_weight *w = i < PER_LAYER ? &m->layer[0][i] : &m->head;
        double per_call = shape_s[i] / runs / (i < PER_LAYER ? layers : 1);
        if (decode) printf(" %s %lldx%lld %.1f GB/s;", g_shape_name[i], (long long)rows, (long long)cols,
                           (double)w->row_bytes * (double)rows / per_call / 1e9);
        else if (i < PER_LAYER) printf(" %s %.0f GOPS;", g_shape_name[i], 2.0 * (double)rows * (double)cols * n / per_call / 1e9);
    }
    printf("\n");
}

/* ---- cache-resident figures: one thread, one small matrix, the kernels without memory stalls ---- */

static void empty_task(void *ctx, int task, int thread) {
    (void)task;
    (void)thread;
    __atomic_fetch_add((int *)ctx, 1, __ATOMIC_RELAXED);
}

static void region_latency(ts_threadpool *pool) {
    int count = 0, reps = 20000;
    double t0 = now();
    for (int r = 0; r < reps; r++) ts_threadpool_run(pool, ts_threadpool_size(pool), empty_task, &count);
    printf("parallel region (empty tasks, %d threads): %.2f us\n", ts_threadpool_size(pool), (now() - t0) / reps * 1e6);
}

static void micro(const char *types, const char *isas, int runs) {
    ts_threadpool *one = ts_threadpool_create(1);
    ts_cpu_matmul_ctx *ctx = ts_cpu_matmul_ctx_create(one);
    const int toks[] = {1, 8, 64, 256};
    char tbuf[256];
    snprintf(tbuf, sizeof tbuf, "%s", types);
    char *save = NULL;
    for (char *tn = strtok_r(tbuf, ",", &save); tn; tn = strtok_r(NULL, ",", &save)) {
        ts_dtype t;
        if (ts_dtype_from_name(tn, &t)) continue;
        ts_weight w;
        fill_weight(&w, t, 256, 1024);
        float *x = calloc((size_t)256 * 1024, sizeof(float)), *y = calloc((size_t)256 * 256, sizeof(float));
        for (size_t i = 0; i < (size_t)256 * 1024; i++) x[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;
        const ts_cpu_kernels *const *all = ts_cpu_kernels_all();
        for (int ki = 0; all[ki]; ki++) {
            const ts_cpu_kernels *k = all[ki];
            if (!ts_cpu_kernels_usable(k) || k == &ts_cpu_kernels_generic || (isas && !strstr(isas, k->name))) continue;
            ts_cpu_kernels_select(k->name);
            ts_error err;
            ts_cpu_matmul_prepare(ctx, &w, &err);
            printf("  %-8s %s 256x1024, 1 thread, in cache:", k->name, tn);
            for (size_t ti = 0; ti < sizeof toks / sizeof toks[0]; ti++) {
                int n = toks[ti];
                double *tm = calloc((size_t)runs, sizeof(double));
                int reps = 2048 / n;
                ts_cpu_matmul(ctx, &w, x, n, y, NULL);
                for (int r = 0; r < runs; r++) {
                    double t0 = now();
                    for (int i = 0; i < reps; i++) ts_cpu_matmul(ctx, &w, x, n, y, NULL);
                    tm[r] = (now() - t0) / reps;
                }
                printf(" n=%d %.0f GOPS;", n, 2.0 * 256 * 1024 * n / median(tm, runs) / 1e9);
                free(tm);
            }
            printf("\n");
            ts_cpu_matmul_release(&w);
        }
        free((void *)w.host);
        free(x);
        free(y);
    }
    ts_cpu_matmul_ctx_destroy(ctx);
    ts_threadpool_destroy(one);
}

int main(int argc, char **argv) {
    int threads = 0, runs = 5, prefill = 128, do_decode = 1, do_prefill = 1, generic_layers = 1, decode_tasks = 2;
    int show_shapes = 0, do_micro = 0;
    const char *types = "q4_0,q8_0,q4_k,bf16", *isas = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--isas") && i + 1 < argc) isas = argv[++i];
        else if (!strcmp(argv[i], "--prefill") && i + 1 < argc) prefill = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--generic-layers") && i + 1 < argc) generic_layers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-decode")) do_decode = 0;
        else if (!strcmp(argv[i], "--no-prefill")) do_prefill = 0;
        else if (!strcmp(argv[i], "--unfused")) g_fused = 0;
        else if (!strcmp(argv[i], "--decode-tasks") && i + 1 < argc) decode_tasks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shapes")) show_shapes = 1;
        else if (!strcmp(argv[i], "--micro")) do_micro = 1;
        else {
            fprintf(stderr, "usage: %s [--threads N] [--types LIST] [--isas LIST] [--runs R] [--prefill N] "
                            "[--no-decode] [--no-prefill] [--generic-layers L] [--unfused] [--decode-tasks N] [--shapes] [--micro]\n", argv[0]);
            return 2;
        }
    }
    if (threads <= 0) {
        cpu_set_t set;
        threads = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    }
    if (runs < 1) runs = 1;
    ts_threadpool *pool = ts_threadpool_create(threads);
    ts_cpu_matmul_ctx *ctx = ts_cpu_matmul_ctx_create(pool);
    ts_cpu_matmul_set_decode_tasks_per_thread(ctx, decode_tasks);
    printf("threads %d, best table %s, %d runs per figure\n", threads, ts_cpu_kernels_best()->name, runs);
    region_latency(pool);
    if (do_micro) micro(types, isas, runs);
    double bw = bandwidth_probe(pool, runs);

    float *x = calloc((size_t)(prefill > 8 ? prefill : 8) * INTER, sizeof(float));
    size_t ny = (size_t)(prefill > 8 ? prefill : 8) * (QDIM + 2 * KVDIM > 2 * INTER ? QDIM + 2 * KVDIM : 2 * INTER);
    float *y = calloc(ny > VOCAB ? ny : VOCAB, sizeof(float));
    for (size_t i = 0; i < (size_t)(prefill > 8 ? prefill : 8) * INTER; i++) x[i] = (float)((int)(rnd() % 2001) - 1000) * 1e-3f;

    char tbuf[256];
    snprintf(tbuf, sizeof tbuf, "%s", types);
    char *save = NULL;
    for (char *tn = strtok_r(tbuf, ",", &save); tn; tn = strtok_r(NULL, ",", &save)) {
        ts_dtype t;
        if (ts_dtype_from_name(tn, &t)) {
            fprintf(stderr, "unknown type %s\n", tn);
            continue;
        }
        model m;
        model_init(&m, t, LAYERS);
        printf("\n== %s: %.1f MB of weights per token (layers %.1f MB, head %.1f MB)\n", tn, m.bytes_per_token / 1e6,
               (m.bytes_per_token - (double)m.head.row_bytes * VOCAB) / 1e6, (double)m.head.row_bytes * VOCAB / 1e6);
        const ts_cpu_kernels *const *all = ts_cpu_kernels_all();
        for (int ki = 0; all[ki]; ki++) {
            const ts_cpu_kernels *k = all[ki];
            if (!ts_cpu_kernels_usable(k)) continue;
            if (isas && !strstr(isas, k->name)) continue;
            ts_cpu_kernels_select(k->name);
            int is_generic = k == &ts_cpu_kernels_generic;
            int layers = is_generic ? generic_layers : LAYERS;
            model_prepare(&m, ctx, layers);
            double *tm = calloc((size_t)runs, sizeof(double));
            if (do_decode) {
                double shape_s[PER_LAYER + 1] = {0};
                forward(&m, ctx, layers, 1, x, y, !is_generic, shape_s); /* warm-up */
                memset(shape_s, 0, sizeof shape_s);
                for (int r = 0; r < runs; r++) {
                    double t0 = now();
                    forward(&m, ctx, layers, 1, x, y, !is_generic, shape_s);
                    tm[r] = now() - t0;
                }
                if (show_shapes) print_shapes(&m, shape_s, runs, layers, 1, 1, !is_generic);
                double s = median(tm, runs);
                if (is_generic) {
                    double bytes = 0;
                    for (int l = 0; l < layers; l++)
                        for (int i = 0; i < PER_LAYER; i++) bytes += (double)m.layer[l][i].row_bytes * (double)g_shape[i][0];
                    printf("  %-8s decode  %d layer(s) only: %7.2f GB/s of weights (%.1f%% of bandwidth)\n", k->name,
                           layers, bytes / s / 1e9, 100.0 * bytes / s / 1e9 / bw);
                } else {
                    double gbs = m.bytes_per_token / s / 1e9;
                    printf("  %-8s decode: %7.1f tokens/s  %6.2f GB/s of weights  %5.1f%% of bandwidth (bound %.1f tokens/s)\n",
                           k->name, 1.0 / s, gbs, 100.0 * gbs / bw, bw * 1e9 / m.bytes_per_token);
                }
            }
            if (do_prefill) {
                int n = prefill;
                int prefill_runs = is_generic ? 1 : runs;
                double shape_s[PER_LAYER + 1] = {0};
                forward(&m, ctx, layers, n, x, y, !is_generic, shape_s);
                memset(shape_s, 0, sizeof shape_s);
                for (int r = 0; r < prefill_runs; r++) {
                    double t0 = now();
                    forward(&m, ctx, layers, n, x, y, !is_generic, shape_s);
                    tm[r] = now() - t0;
                }
                if (show_shapes) print_shapes(&m, shape_s, prefill_runs, layers, n, 0, 0);
                double s = median(tm, prefill_runs);
                double ops = 2.0 * m.macs_layers * (double)layers / LAYERS * n;
                if (is_generic)
                    printf("  %-8s prefill %d tokens, %d layer(s): %7.1f GOPS\n", k->name, n, layers, ops / s / 1e9);
                else
                    printf("  %-8s prefill %d tokens: %7.1f tokens/s  %7.1f GOPS (matrices only)\n", k->name, n, n / s,
                           ops / s / 1e9);
            }
            free(tm);
            model_release(&m, layers);
        }
        model_free(&m, LAYERS);
    }
    free(x);
    free(y);
    ts_cpu_matmul_ctx_destroy(ctx);
    ts_threadpool_destroy(pool);
    return 0;
}
