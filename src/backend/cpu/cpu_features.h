/* What the CPU can execute, detected once (cpuid/xgetbv on x86-64, getauxval on aarch64), minus the
 * features hidden through TESSERA_HIDE_FEATURES (comma-separated names such as "amx,avx512"), which
 * lets every fallback path be exercised on any machine. On Linux, AMX tile data needs a permission
 * request (arch_prctl ARCH_REQ_XCOMP_PERM) before the first tile instruction; it is made here. */
#ifndef TS_BACKEND_CPU_CPU_FEATURES_H
#define TS_BACKEND_CPU_CPU_FEATURES_H

#include <stdint.h>

typedef enum ts_cpu_feature {
    TS_CPU_AVX2 = 1u << 0,     /* with FMA and F16C */
    TS_CPU_AVX512F = 1u << 1,  /* F, BW, VL, DQ together */
    TS_CPU_AVX512_VNNI = 1u << 2,
    TS_CPU_AVX512_BF16 = 1u << 3,
    TS_CPU_AVX_VNNI = 1u << 4,
    TS_CPU_AMX_TILE = 1u << 5, /* set only when the OS granted tile data permission */
    TS_CPU_AMX_INT8 = 1u << 6,
    TS_CPU_AMX_BF16 = 1u << 7,
    TS_CPU_NEON = 1u << 8,
    TS_CPU_DOTPROD = 1u << 9,
    TS_CPU_I8MM = 1u << 10,
    TS_CPU_SVE = 1u << 11,
    TS_CPU_SME = 1u << 12,
    TS_CPU_FP16 = 1u << 13,   /* ARM half-precision arithmetic */
} ts_cpu_feature;

typedef struct ts_cpu_features {
    uint32_t present;  /* detected and usable */
    uint32_t hidden;   /* detected but hidden by TESSERA_HIDE_FEATURES */
    uint32_t detected; /* what the hardware reports, before OS permission and hiding */
    char amx_denied_reason[128]; /* non-empty when the CPU has AMX but the OS refused it */
} ts_cpu_features;

/* Detected once and cached; thread-safe. */
const ts_cpu_features *ts_cpu_features_get(void);
/* Re-reads TESSERA_HIDE_FEATURES (tests use this after setenv). */
void ts_cpu_features_reload(void);
int ts_cpu_has(uint32_t feature_mask);
const char *ts_cpu_feature_name(ts_cpu_feature f);
/* Parses a name ("avx512", "amx", "neon", ...) into a mask; 0 when unknown. "avx512" covers all AVX-512
 * parts, "amx" all AMX parts. */
uint32_t ts_cpu_feature_mask_from_name(const char *name);
/* The CPU's vendor ("GenuineIntel", "AuthenticAMD") and brand string from cpuid, trimmed. Returns -1
 * where cpuid is not available (non-x86); runtime/devices then reads the OS's description instead. */
int ts_cpu_identity(char *vendor, int vendor_cap, char *model, int model_cap);

#endif
