#include "backend/cpu/matmul.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "quant/dequantize.h"

/* Rows per task: small enough to balance threads, large enough to amortise the hand-out. */
#define ROWS_PER_TASK 16

struct ts_cpu_matmul_ctx {
    ts_threadpool *pool;
    float **row_scratch; /* one dequantized weight row per thread */
    int64_t scratch_cols;
};

typedef struct {
    ts_cpu_matmul_ctx *ctx;
    const ts_weight *w;
    const float *x;
    int n;
    float *y;
    const float *bias;
} matmul_job;

ts_cpu_matmul_ctx *ts_cpu_matmul_ctx_create(ts_threadpool *pool) {
    ts_cpu_matmul_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->pool = pool;
    c->row_scratch = calloc((size_t)ts_threadpool_size(pool), sizeof(float *));
    if (!c->row_scratch) {
        free(c);
        return NULL;
    }
    return c;
}

void ts_cpu_matmul_ctx_destroy(ts_cpu_matmul_ctx *c) {
    if (!c) return;
    for (int i = 0; i < ts_threadpool_size(c->pool); i++) free(c->row_scratch[i]);
    free(c->row_scratch);
    free(c);
}

static int ensure_scratch(ts_cpu_matmul_ctx *c, int64_t cols) {
    if (cols <= c->scratch_cols) return 0;
    for (int i = 0; i < ts_threadpool_size(c->pool); i++) {
        float *p = realloc(c->row_scratch[i], (size_t)cols * sizeof(float));
        if (!p) return -1;
        c->row_scratch[i] = p;
    }
    c->scratch_cols = cols;
    return 0;
}

static void matmul_task(void *arg, int task, int thread) {
    matmul_job *j = arg;
    const ts_weight *w = j->w;
    int64_t r0 = (int64_t)task * ROWS_PER_TASK;
    int64_t r1 = r0 + ROWS_PER_TASK < w->rows ? r0 + ROWS_PER_TASK : w->rows;
    float *row = j->ctx->row_scratch[thread];
    for (int64_t r = r0; r < r1; r++) {
        ts_dequantize_row(w->dtype, (const uint8_t *)w->host + (size_t)r * w->row_bytes, row, w->cols);
        float b = j->bias ? j->bias[r] : 0.0f;
        for (int t = 0; t < j->n; t++) {
            const float *xt = j->x + (size_t)t * (size_t)w->cols;
            float acc = 0.0f;
            for (int64_t k = 0; k < w->cols; k++) acc += row[k] * xt[k];
            j->y[(size_t)t * (size_t)w->rows + (size_t)r] = acc + b;
        }
    }
}

void ts_cpu_matmul(ts_cpu_matmul_ctx *ctx, const ts_weight *w, const float *x, int n, float *y, const float *bias) {
    if (n <= 0 || w->rows <= 0) return;
    if (ensure_scratch(ctx, w->cols) != 0) {
        ts_log_error("matmul: out of memory for a %lld-wide scratch row; output zeroed", (long long)w->cols);
        memset(y, 0, (size_t)n * (size_t)w->rows * sizeof(float));
        return;
    }
    matmul_job j = {ctx, w, x, n, y, bias};
    int tasks = (int)((w->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK);
    ts_threadpool_run(ctx->pool, tasks, matmul_task, &j);
}
