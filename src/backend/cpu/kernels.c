/* Selection of the kernel table: the best one the CPU can run (cpu_features.h, which honours
 * TESSERA_HIDE_FEATURES), or one forced by name for tests and benchmarks. */
#include "backend/cpu/kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels_x86.h"
#include "backend/cpu/mm_unified.h"

#if defined(__aarch64__)
extern const ts_cpu_kernels ts_cpu_kernels_neon;
#endif

/* Best first. */
static const ts_cpu_kernels *const g_tables[] = {
#if defined(__x86_64__)
    &ts_cpu_kernels_amx,
    &ts_cpu_kernels_avx512,
    &ts_cpu_kernels_avx_vnni,
    &ts_cpu_kernels_avx2,
#endif
#if defined(__aarch64__)
    &ts_cpu_kernels_neon,
#endif
    &ts_cpu_kernels_generic,
    NULL,
};

static _Atomic(const ts_cpu_kernels *) g_active;

const ts_cpu_kernels *const *ts_cpu_kernels_all(void) { return g_tables; }

int ts_cpu_kernels_usable(const ts_cpu_kernels *k) { return k && ts_cpu_has(k->required); }

const ts_cpu_kernels *ts_cpu_kernels_best(void) {
    for (int i = 0; g_tables[i]; i++)
        if (ts_cpu_kernels_usable(g_tables[i])) return g_tables[i];
    return &ts_cpu_kernels_generic;
}

const ts_cpu_kernels *ts_cpu_kernels_by_name(const char *name) {
    for (int i = 0; name && g_tables[i]; i++)
        if (!strcmp(g_tables[i]->name, name)) return ts_cpu_kernels_usable(g_tables[i]) ? g_tables[i] : NULL;
    return NULL;
}

const ts_cpu_kernels *ts_cpu_kernels_active(void) {
    const ts_cpu_kernels *k = atomic_load_explicit(&g_active, memory_order_acquire);
    if (k) return k;
    k = ts_cpu_kernels_best();
    const ts_cpu_kernels *expected = NULL;
    if (!atomic_compare_exchange_strong(&g_active, &expected, k)) k = expected;
    return k;
}

int ts_cpu_kernels_select(const char *name) {
    if (!name || !*name || !strcmp(name, "auto")) {
        atomic_store(&g_active, ts_cpu_kernels_best());
        return 0;
    }
    const ts_cpu_kernels *k = ts_cpu_kernels_by_name(name);
    if (!k) return -1;
    atomic_store(&g_active, k);
    return 0;
}

size_t ts_cpu_mm_scratch_bytes(int64_t cols) { return ts_mm_unified_scratch_bytes(cols) + 4096; }
