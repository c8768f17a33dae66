/* Matrix products of weights (any ts_dtype) with float32 activations on the CPU.
 * y[n, rows] = x[n, cols] . W^T (+ bias). Activations are quantized once per call for quantized
 * weights (act_quant.h), rows of W are split over the thread pool, and the kernel table chosen at
 * start-up (kernels.h) does the arithmetic. A weight may be prepared once (repacked into the layout
 * the active table streams fastest, pack.h); unprepared weights work too, more slowly. */
#ifndef TS_BACKEND_CPU_MATMUL_H
#define TS_BACKEND_CPU_MATMUL_H

#include "backend/backend.h"
#include "backend/cpu/threadpool.h"

typedef struct ts_cpu_matmul_ctx ts_cpu_matmul_ctx;

ts_cpu_matmul_ctx *ts_cpu_matmul_ctx_create(ts_threadpool *pool);
void ts_cpu_matmul_ctx_destroy(ts_cpu_matmul_ctx *ctx);

/* Opt-in reduced precision: BF16 weights prepared while this is on run on AMX BF16 tiles with the
 * activations rounded to bf16 (faster prefill, not bit-faithful to float32). Off by default. */
void ts_cpu_matmul_set_bf16_activations(ts_cpu_matmul_ctx *ctx, int on);

/* Repacks w for the active kernel table and stores the copy in w->prepared (w->host is kept and
 * still used by lookups such as embeddings). A no-op for layouts that need no repacking. */
int ts_cpu_matmul_prepare(ts_cpu_matmul_ctx *ctx, ts_weight *w, ts_error *err);
/* Frees what ts_cpu_matmul_prepare attached (w->prepared becomes NULL). */
void ts_cpu_matmul_release(ts_weight *w);
/* Whether products with w may still read w->host (not once it has an integer packed layout). */
int ts_cpu_matmul_reads_host(const ts_weight *w);
/* Bytes held by w's prepared copy (0 when none). */
size_t ts_cpu_matmul_prepared_bytes(const ts_weight *w);

void ts_cpu_matmul(ts_cpu_matmul_ctx *ctx, const ts_weight *w, const float *x, int n, float *y, const float *bias);

/* Several products of the same input (q, k and v; gate and up): the activations are quantized once
 * and all products share one parallel region. ws[i]->cols must be equal; ys[i] is [n, ws[i]->rows];
 * biases may be NULL, as may each biases[i]. */
#define TS_CPU_MATMUL_MULTI_MAX 8
void ts_cpu_matmul_multi(ts_cpu_matmul_ctx *ctx, const ts_weight *const *ws, int count, const float *x, int n,
                         float *const *ys, const float *const *biases);

/* Tuning for benchmarks: tasks per thread when streaming few tokens (default 2). */
void ts_cpu_matmul_set_decode_tasks_per_thread(ts_cpu_matmul_ctx *ctx, int tasks);

#endif
