/* The matrix-product driver: prepares (repacks) weights, quantizes activations, splits rows over the
 * thread pool and calls the active kernel table. */
#include "backend/cpu/matmul.h"

#include <stdlib.h>
#include <string.h>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/pack.h"
#include "base/log.h"
#include "quant/float16.h"

#define PREPARED_MAGIC 0x4b505354u /* "TSPK" */
/* Tasks handed out per thread: enough to even out uneven progress, few enough to keep hand-outs cheap. */
#define TASKS_PER_THREAD 4

typedef struct ts_cpu_prepared {
    uint32_t magic;
    ts_pack_kind kind;
    size_t bytes;
    size_t group_bytes;
    uint8_t *data;
} ts_cpu_prepared;

struct ts_cpu_matmul_ctx {
    ts_threadpool *pool;
    int n_threads;
    uint8_t **scratch; /* per thread, 64-byte aligned */
    size_t scratch_bytes;
    uint8_t *act;
    size_t act_bytes;
    int bf16_activations;
    int decode_tasks_per_thread;
};

ts_cpu_matmul_ctx *ts_cpu_matmul_ctx_create(ts_threadpool *pool) {
    ts_cpu_matmul_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->pool = pool;
    c->n_threads = ts_threadpool_size(pool);
    c->decode_tasks_per_thread = 2;
    c->scratch = calloc((size_t)c->n_threads, sizeof(uint8_t *));
    if (!c->scratch) {
        free(c);
        return NULL;
    }
    return c;
}

void ts_cpu_matmul_ctx_destroy(ts_cpu_matmul_ctx *c) {
    if (!c) return;
    for (int i = 0; i < c->n_threads; i++) free(c->scratch[i]);
    free(c->scratch);
    free(c->act);
    free(c);
}

void ts_cpu_matmul_set_bf16_activations(ts_cpu_matmul_ctx *ctx, int on) { ctx->bf16_activations = on != 0; }

static void *alloc64(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

static int ensure_scratch(ts_cpu_matmul_ctx *c, size_t bytes) {
    if (bytes <= c->scratch_bytes) return 0;
    for (int i = 0; i < c->n_threads; i++) {
        free(c->scratch[i]);
        c->scratch[i] = alloc64(bytes);
        if (!c->scratch[i]) {
            c->scratch_bytes = 0;
            return -1;
        }
    }
    c->scratch_bytes = bytes;
    return 0;
}

static int ensure_act(ts_cpu_matmul_ctx *c, size_t bytes) {
    if (bytes <= c->act_bytes) return 0;
    free(c->act);
    c->act = alloc64(bytes);
    c->act_bytes = c->act ? bytes : 0;
    return c->act ? 0 : -1;
}

/* ---- preparation ---- */

static const ts_cpu_prepared *prepared_of(const ts_weight *w) {
    const ts_cpu_prepared *p = w->prepared;
    return p && p->magic == PREPARED_MAGIC ? p : NULL;
}

typedef struct {
    const ts_weight *w;
    ts_cpu_prepared *p;
    int64_t groups_per_task;
} pack_job;

static void pack_task(void *arg, int task, int thread) {
    (void)thread;
    pack_job *j = arg;
    int64_t groups = (j->w->rows + 15) / 16;
    int64_t g0 = (int64_t)task * j->groups_per_task;
    int64_t g1 = g0 + j->groups_per_task < groups ? g0 + j->groups_per_task : groups;
    ts_pack_groups(j->p->kind, j->w->dtype, j->w->host, j->w->row_bytes, j->w->rows, j->w->cols, g0, g1, j->p->data);
}

int ts_cpu_matmul_prepare(ts_cpu_matmul_ctx *ctx, ts_weight *w, ts_error *err) {
    if (prepared_of(w)) return 0;
    const ts_cpu_kernels *k = ts_cpu_kernels_active();
    ts_pack_kind kind = TS_PACK_NONE;
    if (w->dtype == TS_DTYPE_BF16 && ctx->bf16_activations && k->mm_bf16_reduced && w->cols % 32 == 0)
        kind = TS_PACK_AMX_BF16;
    else if (k->mm_packed[w->dtype])
        kind = TS_PACK_I16;
    if (kind == TS_PACK_NONE || w->rows <= 0 || !w->host) return 0;
    ts_cpu_prepared *p = calloc(1, sizeof *p);
    size_t bytes = ts_pack_bytes(kind, w->dtype, w->rows, w->cols);
    if (p) p->data = alloc64(bytes);
    if (!p || !p->data) {
        free(p);
        return ts_fail(err, "cpu: cannot allocate %zu bytes to repack a %lld x %lld %s weight", bytes,
                       (long long)w->rows, (long long)w->cols, ts_dtype_get(w->dtype)->name);
    }
    p->magic = PREPARED_MAGIC;
    p->kind = kind;
    p->bytes = bytes;
    p->group_bytes = ts_pack_group_bytes(kind, w->dtype, w->cols);
    int64_t groups = (w->rows + 15) / 16;
    int64_t tasks = (int64_t)ctx->n_threads * TASKS_PER_THREAD;
    pack_job j = {w, p, (groups + tasks - 1) / tasks};
    ts_threadpool_run(ctx->pool, (int)((groups + j.groups_per_task - 1) / j.groups_per_task), pack_task, &j);
    w->prepared = p;
    return 0;
}

void ts_cpu_matmul_release(ts_weight *w) {
    ts_cpu_prepared *p = (ts_cpu_prepared *)prepared_of(w);
    if (!p) return;
    free(p->data);
    free(p);
    w->prepared = NULL;
}

int ts_cpu_matmul_reads_host(const ts_weight *w) {
    const ts_cpu_prepared *p = prepared_of(w);
    return !(p && p->kind == TS_PACK_I16); /* choose_kernel takes that layout whenever it exists */
}

size_t ts_cpu_matmul_prepared_bytes(const ts_weight *w) {
    const ts_cpu_prepared *p = prepared_of(w);
    return p ? p->bytes : 0;
}

/* ---- activation quantization ---- */

typedef struct {
    const ts_cpu_kernels *k;
    const float *x;
    int64_t cols;
    uint8_t *act;
    size_t stride;
    int rows_per_task;
    int n;
} quant_job;

static void quant_task(void *arg, int task, int thread) {
    (void)thread;
    quant_job *j = arg;
    int t0 = task * j->rows_per_task, t1 = t0 + j->rows_per_task < j->n ? t0 + j->rows_per_task : j->n;
    for (int t = t0; t < t1; t++) j->k->quantize_act(j->x + (size_t)t * (size_t)j->cols, j->cols, j->act + (size_t)t * j->stride);
}

typedef struct {
    const float *x;
    int64_t cols, cols_even;
    uint16_t *out;
    int n;
} bf16_job;

static void bf16_task(void *arg, int task, int thread) {
    (void)thread;
    bf16_job *j = arg;
    const float *x = j->x + (size_t)task * (size_t)j->cols;
    uint16_t *o = j->out + (size_t)task * (size_t)j->cols_even;
    for (int64_t k = 0; k < j->cols; k++) o[k] = ts_f32_to_bf16(x[k]);
    if (j->cols_even > j->cols) o[j->cols] = 0;
}

/* ---- the product ---- */

typedef struct {
    ts_mm_fn fn;
    ts_mm_args args;
    int64_t rows_per_task;
    int first_task; /* this weight's first task in the parallel region */
    int uses_bf16;  /* reads the bf16 copy of x rather than the quantized one */
} mm_part;

typedef struct {
    mm_part part[TS_CPU_MATMUL_MULTI_MAX];
    int count;
    uint8_t **scratch;
} mm_job;

static void mm_task(void *arg, int task, int thread) {
    mm_job *j = arg;
    int i = j->count - 1;
    while (task < j->part[i].first_task) i--;
    const mm_part *p = &j->part[i];
    ts_mm_args a = p->args;
    a.r0 = (int64_t)(task - p->first_task) * p->rows_per_task;
    a.r1 = a.r0 + p->rows_per_task < p->args.r1 ? a.r0 + p->rows_per_task : p->args.r1;
    a.scratch = j->scratch[thread];
    p->fn(&a);
}

/* Chooses the kernel and weight layout; returns the rows a task boundary must align to, 0 if none. */
static int64_t choose_kernel(const ts_cpu_matmul_ctx *ctx, const ts_cpu_kernels *k, const ts_weight *w, mm_part *part) {
    const ts_cpu_prepared *p = prepared_of(w);
    if (p && p->kind == TS_PACK_AMX_BF16 && k->mm_bf16_reduced && ctx->bf16_activations) {
        part->fn = k->mm_bf16_reduced;
        part->args.w = p->data;
        part->args.w_stride = p->group_bytes;
        part->uses_bf16 = 1;
        return 16;
    }
    if (p && p->kind == TS_PACK_I16 && k->mm_packed[w->dtype]) {
        part->fn = k->mm_packed[w->dtype];
        part->args.w = p->data;
        part->args.w_stride = p->group_bytes;
        return 16;
    }
    part->fn = k->mm[w->dtype] ? k->mm[w->dtype] : ts_cpu_kernels_generic.mm[w->dtype];
    part->args.w = w->host;
    part->args.w_stride = w->row_bytes;
    return part->fn ? (ts_dtype_is_quantized(w->dtype) ? 16 : 4) : 0;
}

static void zero_outputs(const ts_weight *const *ws, int count, int n, float *const *ys) {
    for (int i = 0; i < count; i++) memset(ys[i], 0, (size_t)n * (size_t)ws[i]->rows * sizeof(float));
}

void ts_cpu_matmul_multi(ts_cpu_matmul_ctx *ctx, const ts_weight *const *ws, int count, const float *x, int n,
                         float *const *ys, const float *const *biases) {
    if (n <= 0 || count <= 0) return;
    if (count > TS_CPU_MATMUL_MULTI_MAX) {
        for (int i = 0; i < count; i += TS_CPU_MATMUL_MULTI_MAX) {
            int c = count - i < TS_CPU_MATMUL_MULTI_MAX ? count - i : TS_CPU_MATMUL_MULTI_MAX;
            ts_cpu_matmul_multi(ctx, ws + i, c, x, n, ys + i, biases ? biases + i : NULL);
        }
        return;
    }
    const ts_cpu_kernels *k = ts_cpu_kernels_active();
    int64_t cols = ws[0]->cols, total_rows = 0;
    int need_quant = 0, need_bf16 = 0;
    mm_job j = {.count = count, .scratch = ctx->scratch};
    int64_t unit[TS_CPU_MATMUL_MULTI_MAX];
    for (int i = 0; i < count; i++) {
        const ts_weight *w = ws[i];
        mm_part *p = &j.part[i];
        p->args.dtype = w->dtype;
        p->args.cols = w->cols;
        p->args.n_tok = n;
        p->args.r1 = w->rows;
        p->args.y = ys[i];
        p->args.y_stride = (size_t)w->rows;
        p->args.bias = biases ? biases[i] : NULL;
        unit[i] = choose_kernel(ctx, k, w, p);
        if (w->cols != cols || !unit[i]) {
            ts_log_error("matmul: %s; outputs zeroed",
                         unit[i] ? "weights of one call must share their input width" : "no kernel for this weight type");
            zero_outputs(ws, count, n, ys);
            return;
        }
        if (p->uses_bf16) need_bf16 = 1;
        else if (ts_dtype_is_quantized(w->dtype)) need_quant = 1;
        total_rows += w->rows;
    }
    if (total_rows == 0) return;

    size_t qstride = ts_act_row_bytes(cols), padded = (size_t)(n + TS_MM_ACT_ROW_PAD - 1) / TS_MM_ACT_ROW_PAD * TS_MM_ACT_ROW_PAD;
    int64_t cols_even = (cols + 1) & ~(int64_t)1;
    size_t quant_bytes = need_quant ? padded * qstride : 0;
    size_t bf16_bytes = need_bf16 ? (size_t)n * (size_t)cols_even * 2 : 0;
    if (ensure_scratch(ctx, ts_cpu_mm_scratch_bytes(cols)) != 0 || ensure_act(ctx, quant_bytes + bf16_bytes + 64) != 0) {
        ts_log_error("matmul: out of memory for scratch of a %lld-wide product; outputs zeroed", (long long)cols);
        zero_outputs(ws, count, n, ys);
        return;
    }
    j.scratch = ctx->scratch;
    uint8_t *qact = ctx->act, *bact = ctx->act + ((quant_bytes + 63) & ~(size_t)63);
    if (need_quant) {
        /* Tile kernels read whole tiles of tokens: the rows past n must be initialized. */
        memset(qact + (size_t)n * qstride, 0, (padded - (size_t)n) * qstride);
        int per = n >= 4 * ctx->n_threads ? (n + 4 * ctx->n_threads - 1) / (4 * ctx->n_threads) : 1;
        quant_job qj = {k, x, cols, qact, qstride, per, n};
        ts_threadpool_run(ctx->pool, (n + per - 1) / per, quant_task, &qj);
    }
    if (need_bf16) {
        bf16_job bj = {x, cols, cols_even, (uint16_t *)bact, n};
        ts_threadpool_run(ctx->pool, n, bf16_task, &bj);
    }

    /* Tasks of about equal rows across all weights; decode (memory-bound, few tokens) takes one long
     * run per thread so that hardware prefetch streams stay long, prefill more for balance. */
    int64_t want = (int64_t)ctx->n_threads * (n <= 8 ? ctx->decode_tasks_per_thread : TASKS_PER_THREAD);
    int64_t target = (total_rows + want - 1) / want;
    int tasks = 0;
    for (int i = 0; i < count; i++) {
        mm_part *p = &j.part[i];
        if (p->uses_bf16) {
            p->args.act = bact;
            p->args.act_stride = (size_t)cols_even * 2;
        } else if (ts_dtype_is_quantized(p->args.dtype)) {
            p->args.act = qact;
            p->args.act_stride = qstride;
        } else {
            p->args.act = (const uint8_t *)x;
            p->args.act_stride = (size_t)cols * sizeof(float);
        }
        p->rows_per_task = (target + unit[i] - 1) / unit[i] * unit[i];
        p->first_task = tasks;
        tasks += (int)((p->args.r1 + p->rows_per_task - 1) / p->rows_per_task);
    }
    ts_threadpool_run(ctx->pool, tasks, mm_task, &j);
}

void ts_cpu_matmul(ts_cpu_matmul_ctx *ctx, const ts_weight *w, const float *x, int n, float *y, const float *bias) {
    if (w->rows <= 0) return;
    ts_cpu_matmul_multi(ctx, &w, 1, x, n, &y, bias ? &bias : NULL);
}

void ts_cpu_matmul_set_decode_tasks_per_thread(ts_cpu_matmul_ctx *ctx, int tasks) {
    ctx->decode_tasks_per_thread = tasks < 1 ? 1 : tasks;
}
