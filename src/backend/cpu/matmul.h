/* Matrix products of weights (any ts_dtype) with float32 activations on the CPU.
 * y[n, rows] = x[n, cols] . W^T (+ bias). Work is split over the thread pool by rows of W;
 * which instruction set runs is chosen once at start-up (cpu_dispatch). */
#ifndef TS_BACKEND_CPU_MATMUL_H
#define TS_BACKEND_CPU_MATMUL_H

#include "backend/backend.h"
#include "backend/cpu/threadpool.h"

typedef struct ts_cpu_matmul_ctx ts_cpu_matmul_ctx;

ts_cpu_matmul_ctx *ts_cpu_matmul_ctx_create(ts_threadpool *pool);
void ts_cpu_matmul_ctx_destroy(ts_cpu_matmul_ctx *ctx);

void ts_cpu_matmul(ts_cpu_matmul_ctx *ctx, const ts_weight *w, const float *x, int n, float *y, const float *bias);

#endif
