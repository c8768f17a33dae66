/* The few cmocka calls the kernel tests use. Normally this is cmocka itself; cross builds run under
 * qemu where no cmocka for the target exists (TS_TEST_NO_CMOCKA), and get this minimal runner with
 * the same spelling: a failed assertion ends the current test and the run reports every failure. */
#ifndef TS_TESTS_BACKEND_KERNEL_TEST_SHIM_H
#define TS_TESTS_BACKEND_KERNEL_TEST_SHIM_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef TS_TEST_NO_CMOCKA
#include <cmocka.h>
#else

struct CMUnitTest {
    const char *name;
    void (*fn)(void **state);
};

static jmp_buf ts_shim_jump;
static int ts_shim_skipped;

static inline void ts_shim_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    longjmp(ts_shim_jump, 1);
}

#define fail_msg(...) ts_shim_fail(__FILE__, __LINE__, __VA_ARGS__)
#define assert_true(c)                                                                                                 \
    do {                                                                                                               \
        if (!(c)) fail_msg("assertion failed: %s", #c);                                                                \
    } while (0)
#define assert_false(c) assert_true(!(c))
#define assert_non_null(p) assert_true((p) != NULL)
#define assert_int_equal(a, b)                                                                                         \
    do {                                                                                                               \
        long long ts_a_ = (long long)(a), ts_b_ = (long long)(b);                                                      \
        if (ts_a_ != ts_b_) fail_msg("%lld != %lld (%s vs %s)", ts_a_, ts_b_, #a, #b);                                  \
    } while (0)
#define print_message(...) printf(__VA_ARGS__)
#define skip()                                                                                                         \
    do {                                                                                                               \
        ts_shim_skipped = 1;                                                                                           \
        longjmp(ts_shim_jump, 2);                                                                                      \
    } while (0)
#define cmocka_unit_test(f) {#f, f}

static inline int ts_shim_run(const struct CMUnitTest *tests, size_t n) {
    volatile int failed = 0;
    for (volatile size_t i = 0; i < n; i++) {
        printf("[ RUN      ] %s\n", tests[i].name);
        fflush(stdout);
        ts_shim_skipped = 0;
        int r = setjmp(ts_shim_jump);
        if (r == 0) {
            tests[i].fn(NULL);
            printf("[       OK ] %s\n", tests[i].name);
        } else if (r == 2) {
            printf("[  SKIPPED ] %s\n", tests[i].name);
        } else {
            printf("[  FAILED  ] %s\n", tests[i].name);
            failed++;
        }
    }
    printf("%zu tests, %d failed\n", n, failed);
    return failed;
}

#define cmocka_run_group_tests(tests, setup, teardown) ts_shim_run(tests, sizeof(tests) / sizeof((tests)[0]))
#endif

#endif
