/* Accelerator resolution: the execution accelerators a configuration asks for, in order, against what
 * runtime/devices detected. The first available GPU accelerator decides the device (else the CPU),
 * the first available CPU accelerator decides the CPU instruction set (else the best one present).
 * Every accelerator passed over leaves a message naming the reason and what is used instead, e.g.
 *   "amx: this CPU has no AMX tiles; using avx512"
 *   "mps: Metal is not available on Linux; falling back to the CPU"
 *   "cuda: no NVIDIA GPU found (libnvidia-ml.so.1 not loadable); falling back to the CPU"
 * Unknown accelerator names or parameters, and malformed parameter values, are errors.
 *
 * Names and parameters:
 *   CPU  amx, avx512, avx2, neon, generic
 *        tile_size (matmul blocking in elements, 1..1024), quantization_support (as MODEL_QUANTIZATION),
 *        threads (1..4096)
 *   GPU  cuda, mps, metal (mps and metal are the same Metal device)
 *        precision (fp16, bf16, fp32), use_unified_memory (true/false, 1/0)
 * When no CPU accelerator in the list is available, the automatic choice keeps the parameters of the
 * first one listed (they still say what the user wants: threads, tile size, quantization). */
#ifndef TS_RUNTIME_DEVICES_RESOLVE_H
#define TS_RUNTIME_DEVICES_RESOLVE_H

#include "backend/backend.h"
#include "base/error.h"
#include "format/model_repo_config.h"
#include "quant/scheme.h"
#include "runtime/devices.h"

typedef enum ts_device_kind {
    TS_DEVICE_CPU = 0,
    TS_DEVICE_CUDA,
    TS_DEVICE_METAL,
} ts_device_kind;

/* Ordered from least to most capable. */
typedef enum ts_cpu_isa {
    TS_ISA_GENERIC = 0,
    TS_ISA_NEON,
    TS_ISA_AVX2,
    TS_ISA_AVX512,
    TS_ISA_AMX,
} ts_cpu_isa;

#define TS_RESOLVE_MAX_MESSAGES 24
#define TS_RESOLVE_MESSAGE_MAX 320

typedef struct ts_resolution {
    ts_device_kind device;    /* where the model's layers run */
    int gpu_index;            /* CUDA device index when device == TS_DEVICE_CUDA */
    char gpu_accelerator[32]; /* the GPU accelerator that won, "" when none */
    ts_cpu_isa cpu_isa;       /* kernels for the CPU side (all of it, or the fallback operations) */
    char cpu_accelerator[32]; /* the CPU accelerator that won, "" when chosen automatically */
    int threads;
    ts_precision precision; /* compute precision of the device (fp32 on the CPU) */
    int unified_memory;
    int tile_size;        /* 0: the kernels' default */
    int has_quantization; /* quantization_support was given */
    ts_quant_scheme quantization;
    int num_messages;
    char messages[TS_RESOLVE_MAX_MESSAGES][TS_RESOLVE_MESSAGE_MAX];
} ts_resolution;

typedef struct ts_resolve_request {
    const ts_triton_accelerator *cpu;
    int num_cpu;
    const ts_triton_accelerator *gpu;
    int num_gpu;
    ts_triton_kind kind; /* KIND_CPU: GPUs are not used; KIND_GPU: no GPU is an error */
    const int *gpus;     /* instance_group gpus; NULL or none: any */
    int num_gpus;
    int default_threads; /* 0: the cores this process may use */
    const char *source;  /* the configuration file, for error positions; NULL for the command line */
} ts_resolve_request;

int ts_devices_resolve(const ts_device_info *dev, const ts_resolve_request *req, ts_resolution *out, ts_error *err);

/* The request a ts_triton_config makes (accelerators, instance kind and gpus, TESSERA_THREADS). */
void ts_resolve_request_from_config(const ts_triton_config *cfg, ts_resolve_request *req);

/* Logs each fallback message as a warning and the outcome as one info line. */
void ts_resolution_log(const ts_resolution *r);
/* "cpu (isa amx, 2 threads, fp32)" or "cuda:0 NVIDIA H100 (bf16; cpu isa avx512, 16 threads)". */
const char *ts_resolution_summary(const ts_resolution *r, const ts_device_info *dev, char *buf, size_t cap);

ts_cpu_isa ts_devices_best_isa(const ts_device_info *dev);
/* 1 when the CPU accelerator `name` can run here; otherwise 0 with the reason (without the name). */
int ts_devices_cpu_accelerator_available(const ts_device_info *dev, const char *name, char *reason, size_t cap);

const char *ts_cpu_isa_name(ts_cpu_isa isa);
const char *ts_device_kind_name(ts_device_kind k);
const char *ts_precision_name(ts_precision p);

#endif
