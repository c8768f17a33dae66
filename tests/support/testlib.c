#include "support/testlib.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

const char *ts_test_shared_path(const char *rel, char *buf, size_t cap) {
    const char *root = getenv("TESSERA_SHARED_DIR");
    snprintf(buf, cap, "%s/%s", root && *root ? root : TESSERA_SHARED_DIR, rel);
    return buf;
}

const char *ts_test_source_path(const char *rel, char *buf, size_t cap) {
    const char *root = getenv("TESSERA_SOURCE_DIR");
    snprintf(buf, cap, "%s/%s", root && *root ? root : TESSERA_TEST_SOURCE_DIR, rel);
    return buf;
}

static char g_tmpdir[256];

static void remove_tmpdir(void) {
    if (!g_tmpdir[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmpdir);
}

const char *ts_test_tmpdir(void) {
    if (!g_tmpdir[0]) {
        snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/tessera-test-XXXXXX");
        if (!mkdtemp(g_tmpdir)) fail_msg("cannot create a temporary directory");
        atexit(remove_tmpdir);
    }
    return g_tmpdir;
}

void *ts_test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) fail_msg("short read of %s", path);
    buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

void ts_test_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    if (fwrite(data, 1, len, f) != len) fail_msg("short write of %s", path);
    fclose(f);
}

json_t *ts_test_load_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fail_msg("%s:%d: %s", path, je.line, je.text);
    return j;
}

double ts_test_rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    if (isnan(num)) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

int32_t *ts_test_json_ids(const json_t *arr, int *n) {
    *n = (int)json_array_size(arr);
    int32_t *ids = malloc((size_t)(*n ? *n : 1) * sizeof(int32_t));
    assert_non_null(ids);
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return ids;
}

uint64_t ts_test_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float ts_test_randf(uint64_t *s) { return (float)((double)(ts_test_rand(s) >> 11) / 4503599627370496.0 - 1.0); }

#include "backend/cuda_loader.h"

ts_backend *ts_test_cuda_backend(ts_precision precision, int flags, ts_backend *cpu_fallback, char *why, size_t cap) {
    if (getenv("TESSERA_HIDE_FEATURES") && strstr(getenv("TESSERA_HIDE_FEATURES"), "cuda")) {
        snprintf(why, cap, "CUDA hidden by TESSERA_HIDE_FEATURES");
        return NULL;
    }
    ts_cuda_options o;
    memset(&o, 0, sizeof o);
    o.precision = precision;
    o.use_graphs = (flags & TS_TEST_CUDA_GRAPHS) != 0;
    o.dense_cache = (flags & TS_TEST_CUDA_DENSE) != 0;
    o.cpu_fallback = cpu_fallback;
    ts_error err = {{0}};
    ts_backend *be = ts_cuda_backend_create(&o, &err);
    if (!be) snprintf(why, cap, "%s", err.message);
    return be;
}
