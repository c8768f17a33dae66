/* The CPU implementation of ts_backend: host memory, a thread pool, and the ISA-dispatched kernels. */
#ifndef TS_BACKEND_CPU_CPU_BACKEND_H
#define TS_BACKEND_CPU_CPU_BACKEND_H

#include "backend/backend.h"

typedef struct ts_cpu_options {
    int threads; /* 0: one per available core */
} ts_cpu_options;

ts_backend *ts_cpu_backend_create(const ts_cpu_options *opt, ts_error *err);

#endif
