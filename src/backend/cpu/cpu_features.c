#include "backend/cpu/cpu_features.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP_SVE
#define HWCAP_SVE (1 << 22)
#endif
#ifndef HWCAP_FPHP
#define HWCAP_FPHP (1 << 9)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
#ifndef HWCAP2_SME
#define HWCAP2_SME (1 << 23)
#endif
#endif

static ts_cpu_features g_features;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct {
    const char *name;
    uint32_t mask;
} g_names[] = {
    {"avx2", TS_CPU_AVX2},
    {"avx512", TS_CPU_AVX512F | TS_CPU_AVX512_VNNI | TS_CPU_AVX512_BF16},
    {"avx512f", TS_CPU_AVX512F},
    {"avx512_vnni", TS_CPU_AVX512_VNNI},
    {"avx512_bf16", TS_CPU_AVX512_BF16},
    {"avx_vnni", TS_CPU_AVX_VNNI},
    {"amx", TS_CPU_AMX_TILE | TS_CPU_AMX_INT8 | TS_CPU_AMX_BF16},
    {"amx_tile", TS_CPU_AMX_TILE},
    {"amx_int8", TS_CPU_AMX_INT8},
    {"amx_bf16", TS_CPU_AMX_BF16},
    {"neon", TS_CPU_NEON},
    {"dotprod", TS_CPU_DOTPROD},
    {"i8mm", TS_CPU_I8MM},
    {"sve", TS_CPU_SVE},
    {"sme", TS_CPU_SME},
    {"fp16", TS_CPU_FP16},
};

uint32_t ts_cpu_feature_mask_from_name(const char *name) {
    for (size_t i = 0; i < sizeof g_names / sizeof g_names[0]; i++)
        if (!strcmp(name, g_names[i].name)) return g_names[i].mask;
    return 0;
}

const char *ts_cpu_feature_name(ts_cpu_feature f) {
    for (size_t i = 0; i < sizeof g_names / sizeof g_names[0]; i++)
        if (g_names[i].mask == (uint32_t)f) return g_names[i].name;
    return "?";
}

#if defined(__x86_64__)
static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect_x86(ts_cpu_features *f) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    int ymm_os = (xcr0 & 0x6) == 0x6, zmm_os = (xcr0 & 0xe6) == 0xe6;
    int amx_os = (xcr0 & (3ull << 17)) == (3ull << 17);
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    int vnni512 = (c >> 11) & 1;
    int amx_bf16 = (d >> 22) & 1, amx_tile = (d >> 24) & 1, amx_int8 = (d >> 25) & 1;
    unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
    __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
    int avx_vnni = (a1 >> 4) & 1, bf16_512 = (a1 >> 5) & 1;
    if (avx2 && fma && f16c && ymm_os) f->detected |= TS_CPU_AVX2;
    if (avx_vnni && ymm_os) f->detected |= TS_CPU_AVX_VNNI;
    if (avx512f && avx512dq && avx512bw && avx512vl && zmm_os) {
        f->detected |= TS_CPU_AVX512F;
        if (vnni512) f->detected |= TS_CPU_AVX512_VNNI;
        if (bf16_512) f->detected |= TS_CPU_AVX512_BF16;
    }
    if (amx_tile) f->detected |= TS_CPU_AMX_TILE;
    if (amx_int8) f->detected |= TS_CPU_AMX_INT8;
    if (amx_bf16) f->detected |= TS_CPU_AMX_BF16;
    f->present = f->detected;
    if (amx_tile) {
        if (!amx_os) {
            snprintf(f->amx_denied_reason, sizeof f->amx_denied_reason, "the OS does not enable AMX state (XCR0)");
        } else if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
            snprintf(f->amx_denied_reason, sizeof f->amx_denied_reason,
                     "the kernel refused the AMX tile-data permission request");
        }
        if (f->amx_denied_reason[0]) f->present &= ~(uint32_t)(TS_CPU_AMX_TILE | TS_CPU_AMX_INT8 | TS_CPU_AMX_BF16);
    }
}
#endif

#if defined(__aarch64__)
static void detect_arm(ts_cpu_features *f) {
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    f->detected |= TS_CPU_NEON;
    if (hw & HWCAP_ASIMDDP) f->detected |= TS_CPU_DOTPROD;
    if (hw & HWCAP_SVE) f->detected |= TS_CPU_SVE;
    if (hw & HWCAP_FPHP) f->detected |= TS_CPU_FP16;
    if (hw2 & HWCAP2_I8MM) f->detected |= TS_CPU_I8MM;
    if (hw2 & HWCAP2_SME) f->detected |= TS_CPU_SME;
    f->present = f->detected;
}
#endif

static void apply_hiding(ts_cpu_features *f) {
    f->present |= f->hidden;
    f->hidden = 0;
    const char *env = getenv("TESSERA_HIDE_FEATURES");
    if (!env || !*env) return;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", env);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        uint32_t m = ts_cpu_feature_mask_from_name(tok);
        /* Hiding a base set hides what is built on it. */
        if (m & TS_CPU_AVX2) m |= TS_CPU_AVX512F | TS_CPU_AVX512_VNNI | TS_CPU_AVX512_BF16 | TS_CPU_AVX_VNNI |
                                 TS_CPU_AMX_TILE | TS_CPU_AMX_INT8 | TS_CPU_AMX_BF16;
        if (m & TS_CPU_AVX512F) m |= TS_CPU_AVX512_VNNI | TS_CPU_AVX512_BF16 | TS_CPU_AMX_TILE | TS_CPU_AMX_INT8 | TS_CPU_AMX_BF16;
        if (m & TS_CPU_NEON) m |= TS_CPU_DOTPROD | TS_CPU_I8MM | TS_CPU_SVE | TS_CPU_SME | TS_CPU_FP16;
        f->hidden |= f->present & m;
    }
    f->present &= ~f->hidden;
}

static void detect_once(void) {
    memset(&g_features, 0, sizeof g_features);
#if defined(__x86_64__)
    detect_x86(&g_features);
#elif defined(__aarch64__)
    detect_arm(&g_features);
#endif
    apply_hiding(&g_features);
}

const ts_cpu_features *ts_cpu_features_get(void) {
    pthread_once(&g_once, detect_once);
    return &g_features;
}

void ts_cpu_features_reload(void) {
    pthread_once(&g_once, detect_once);
    pthread_mutex_lock(&g_lock);
    apply_hiding(&g_features);
    pthread_mutex_unlock(&g_lock);
}

int ts_cpu_identity(char *vendor, int vendor_cap, char *model, int model_cap) {
#if defined(__x86_64__)
    unsigned regs[4];
    char v[13] = {0};
    if (!__get_cpuid(0, &regs[0], &regs[1], &regs[2], &regs[3])) return -1;
    memcpy(v, &regs[1], 4);
    memcpy(v + 4, &regs[3], 4);
    memcpy(v + 8, &regs[2], 4);
    snprintf(vendor, (size_t)vendor_cap, "%s", v);
    char brand[49] = {0};
    unsigned max_ext = __get_cpuid_max(0x80000000u, NULL);
    if (max_ext >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++) {
            __get_cpuid(0x80000002u + i, &regs[0], &regs[1], &regs[2], &regs[3]);
            memcpy(brand + 16 * i, regs, 16);
        }
    }
    const char *b = brand;
    while (*b == ' ') b++;
    snprintf(model, (size_t)model_cap, "%s", b);
    for (int n = (int)strlen(model); n > 0 && model[n - 1] == ' '; n--) model[n - 1] = '\0';
    return 0;
#else
    (void)vendor, (void)vendor_cap, (void)model, (void)model_cap;
    return -1;
#endif
}

int ts_cpu_has(uint32_t mask) { return (ts_cpu_features_get()->present & mask) == mask; }
