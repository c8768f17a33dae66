/* What this machine offers tessera: the CPU (vendor, model, cores we may run on, caches, ISA features
 * from backend/cpu/cpu_features), memory available to this process (MemAvailable and the cgroup
 * limit, whichever is smaller), NVIDIA GPUs found at run time through NVML (dlopen of
 * libnvidia-ml.so.1, so no CUDA is needed to build or run), and whether Metal exists (macOS only).
 *
 * TESSERA_HIDE_FEATURES (comma-separated) pretends features are absent so that every fallback path can
 * be exercised anywhere: CPU names as in cpu_features.h (amx, avx512, avx2, neon ...), plus "cuda"
 * (or "nvidia") for NVIDIA GPUs, "metal" (or "mps") for Metal, and "gpu" for both.
 * TESSERA_NVML_LIBRARY names another NVML library file (tests use a missing one). */
#ifndef TS_RUNTIME_DEVICES_H
#define TS_RUNTIME_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/cpu_features.h"
#include "base/error.h"

#define TS_DEVICES_MAX_GPUS 16

typedef struct ts_cpu_info {
    char arch[16];   /* "x86_64", "aarch64" */
    char vendor[64]; /* "GenuineIntel", "AuthenticAMD", "ARM", "Apple" ... */
    char model[128];
    int cores_online;
    int cores_usable;                       /* in this process's affinity mask */
    uint64_t l1d_bytes, l2_bytes, l3_bytes; /* 0 when unknown */
    ts_cpu_features features;
} ts_cpu_info;

typedef struct ts_memory_info {
    uint64_t total_bytes;        /* MemTotal */
    uint64_t available_bytes;    /* MemAvailable */
    uint64_t cgroup_limit_bytes; /* 0: no limit */
    uint64_t cgroup_usage_bytes;
    uint64_t cgroup_reclaimable_bytes; /* inactive file cache the kernel drops before it kills us */
    char cgroup_limit_file[512];       /* where the limit came from, for the report */
    uint64_t usable_bytes;             /* min(MemAvailable, limit - usage + reclaimable) */
} ts_memory_info;

typedef struct ts_gpu_info {
    int index; /* as CUDA numbers it (after CUDA_VISIBLE_DEVICES) */
    char name[96];
    uint64_t total_bytes, free_bytes;
    int utilization_gpu, utilization_memory; /* percent; -1 when NVML cannot say */
    int cc_major, cc_minor;                  /* compute capability; 0 when unknown */
} ts_gpu_info;

typedef struct ts_device_info {
    ts_cpu_info cpu;
    ts_memory_info memory;

    int num_gpus;
    ts_gpu_info gpus[TS_DEVICES_MAX_GPUS];
    char gpu_status[256]; /* why there is no GPU, e.g. "libnvidia-ml.so.1 not loadable" */
    int gpus_hidden;
    char nvidia_driver[32];

    int metal_available;
    char metal_status[128]; /* why Metal cannot be used, e.g. "Metal is not available on Linux" */
} ts_device_info;

typedef struct ts_detect_options {
    const char *fs_root;      /* prefix for /proc and /sys (tests build a fake tree); NULL or "" for / */
    const char *nvml_library; /* NULL: $TESSERA_NVML_LIBRARY or libnvidia-ml.so.1 */
} ts_detect_options;

/* Detects everything; never fails for a missing piece (that piece reads as unknown or absent).
 * Re-reads TESSERA_HIDE_FEATURES each time. */
int ts_devices_detect(ts_device_info *out, ts_error *err);
int ts_devices_detect_with(const ts_detect_options *opts, ts_device_info *out, ts_error *err);

/* The pieces, for tests and for `tessera info`. */
void ts_devices_detect_cpu(const char *fs_root, ts_cpu_info *out);
void ts_devices_detect_memory(const char *fs_root, ts_memory_info *out);
void ts_devices_detect_gpus(const char *nvml_library, ts_device_info *out);
/* Parses /proc/meminfo text: MemTotal and MemAvailable in bytes. Returns -1 when MemTotal is absent. */
int ts_devices_parse_meminfo(const char *text, size_t len, uint64_t *total, uint64_t *available);

/* Whether TESSERA_HIDE_FEATURES hides NVIDIA GPUs ("cuda", "nvidia", "gpu") or Metal ("metal", "mps",
 * "gpu"). */
int ts_devices_hide_cuda(void);
int ts_devices_hide_metal(void);

/* Human-readable byte counts: "23.2 GiB", "512.0 MiB", "980 B". */
const char *ts_format_bytes(uint64_t bytes, char *buf, size_t cap);

#endif
