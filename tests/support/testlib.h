/* Helpers shared by the C tests: locating ../shared and the source tree, reading reference files,
 * comparing float vectors. */
#ifndef TS_TESTS_SUPPORT_TESTLIB_H
#define TS_TESTS_SUPPORT_TESTLIB_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Path under TESSERA_SHARED_DIR (the environment overrides the compiled-in location). */
const char *ts_test_shared_path(const char *rel, char *buf, size_t cap);
const char *ts_test_source_path(const char *rel, char *buf, size_t cap);
/* A temporary directory for the test, created on first use and removed at exit. */
const char *ts_test_tmpdir(void);
/* Reads a file or fails the test. */
void *ts_test_read_file(const char *path, size_t *len);
void ts_test_write_file(const char *path, const void *data, size_t len);
json_t *ts_test_load_json(const char *path);
/* ||a - b|| / ||b|| */
double ts_test_rel_l2(const float *a, const float *b, size_t n);
/* Converts a JSON array of integers. */
int32_t *ts_test_json_ids(const json_t *arr, int *n);
/* Deterministic pseudo-random numbers for property tests. */
uint64_t ts_test_rand(uint64_t *state);
float ts_test_randf(uint64_t *state); /* uniform in [-1, 1) */



#include "backend/cuda_module.h"
/* A CUDA backend for GPU tests, or NULL with the reason in why (tests then exit with
 * TS_TEST_SKIP so CTest reports them as skipped). */
#define TS_TEST_SKIP 77
#define TS_TEST_CUDA_GRAPHS 1
#define TS_TEST_CUDA_DENSE 2
ts_backend *ts_test_cuda_backend(ts_precision precision, int flags, ts_backend *cpu_fallback, char *why, size_t cap);

#endif
