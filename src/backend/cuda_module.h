/* The contract between tessera and its separately built CUDA module (libtessera_cuda.so). The module
 * is loaded at run time (cuda_loader.c), so the tessera binary runs where no CUDA driver exists; it
 * depends on nothing of tessera but headers: logging and the CPU fallback come in through the options. */
#ifndef TS_BACKEND_CUDA_MODULE_H
#define TS_BACKEND_CUDA_MODULE_H

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TS_CUDA_MODULE_ABI 10 /* 10: ts_backend_ops.embed_rmsnorm (9: matmul_argmax) */
#define TS_CUDA_CREATE_SYMBOL "tessera_cuda_create"

typedef struct ts_cuda_options {
    int abi;                   /* TS_CUDA_MODULE_ABI */
    int device;                /* CUDA device ordinal */
    ts_precision precision;
    int unified_memory;        /* weights stay in pinned host memory mapped into the GPU's address space */
    int use_graphs;            /* capture decode steps as CUDA graphs */
    int dense_cache;           /* keep bf16/fp16 copies of quantized weights for prefill and batches */
    ts_backend *cpu_fallback;  /* runs operations the GPU does not implement (may be NULL) */
    void (*log)(int level, const char *message); /* levels as ts_log_level */
} ts_cuda_options;

typedef ts_backend *(*ts_cuda_create_fn)(const ts_cuda_options *opt, ts_error *err);

/* Kernel-level entry points the tests call directly against CPU references. */
typedef struct ts_cuda_device_info {
    char name[256];
    int sm_count;
    int cc_major, cc_minor;
    size_t total_bytes, free_bytes;
} ts_cuda_device_info;

#ifdef __cplusplus
}
#endif

#endif
