/* The thread pool behind every parallel kernel: each task of a region runs exactly once, on a thread
 * index within the pool, for regions of any size in quick succession (workers spinning) and after
 * idle pauses (workers asleep), and a pool is destroyed cleanly in either state. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/threadpool.h"
#include "backend/kernel_test_shim.h"

#define MAX_TASKS 4096

typedef struct {
    atomic_int runs[MAX_TASKS];
    atomic_int bad_thread;
    int n_threads;
} tally;

static void count_task(void *ctx, int task, int thread) {
    tally *t = ctx;
    atomic_fetch_add(&t->runs[task], 1);
    if (thread < 0 || thread >= t->n_threads) atomic_store(&t->bad_thread, 1);
}

static void check_region(ts_threadpool *p, tally *t, int n_tasks) {
    for (int i = 0; i < n_tasks; i++) atomic_store(&t->runs[i], 0);
    ts_threadpool_run(p, n_tasks, count_task, t);
    for (int i = 0; i < n_tasks; i++)
        if (atomic_load(&t->runs[i]) != 1)
            fail_msg("task %d of %d ran %d times with %d threads", i, n_tasks, atomic_load(&t->runs[i]), t->n_threads);
    assert_int_equal(atomic_load(&t->bad_thread), 0);
}

static void pause_ms(int ms) {
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_every_task_once(void **state) {
    (void)state;
    tally *t = calloc(1, sizeof *t);
    assert_non_null(t);
    const int sizes[] = {1, 2, 3, 7, 16, 100, MAX_TASKS};
    for (int threads = 1; threads <= 5; threads += 2) {
        ts_threadpool *p = ts_threadpool_create(threads);
        assert_non_null(p);
        assert_int_equal(ts_threadpool_size(p), threads);
        t->n_threads = threads;
        for (int rep = 0; rep < 200; rep++) check_region(p, t, sizes[rep % 7]);
        pause_ms(5); /* long enough for the workers to fall asleep */
        check_region(p, t, 64);
        pause_ms(5);
        ts_threadpool_destroy(p);
    }
    free(t);
}

static void test_destroy_while_spinning(void **state) {
    (void)state;
    tally *t = calloc(1, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < 20; i++) {
        ts_threadpool *p = ts_threadpool_create(4);
        t->n_threads = 4;
        check_region(p, t, 9);
        ts_threadpool_destroy(p);
    }
    ts_threadpool_destroy(NULL);
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_task_once),
        cmocka_unit_test(test_destroy_while_spinning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
