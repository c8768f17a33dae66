#include "backend/cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

/* Workers spin briefly after a run before sleeping, because decode issues many small runs in a row
 * and a condition-variable wake-up costs more than the work of one of them. */
#define SPIN_ITERATIONS 20000

struct ts_threadpool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    atomic_int generation;
    atomic_int next_task;
    atomic_int remaining_workers;
    int n_tasks;
    ts_task_fn fn;
    void *ctx;
    int stop;
};

typedef struct {
    ts_threadpool *pool;
    int index;
} worker_arg;

static void drain(ts_threadpool *p, int thread) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (t >= p->n_tasks) break;
        p->fn(p->ctx, t, thread);
    }
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    ts_threadpool *p = wa->pool;
    int index = wa->index;
    free(wa);
    int seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&p->generation, memory_order_acquire) == seen && spins < SPIN_ITERATIONS) {
            spins++;
            if ((spins & 255) == 0) sched_yield();
        }
        pthread_mutex_lock(&p->lock);
        while (atomic_load_explicit(&p->generation, memory_order_acquire) == seen && !p->stop)
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->stop) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        seen = atomic_load(&p->generation);
        pthread_mutex_unlock(&p->lock);
        drain(p, index);
        if (atomic_fetch_sub_explicit(&p->remaining_workers, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

ts_threadpool *ts_threadpool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    ts_threadpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            p->n_threads = i;
            break;
        }
        wa->pool = p;
        wa->index = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n_threads = i;
            break;
        }
    }
    return p;
}

void ts_threadpool_destroy(ts_threadpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int ts_threadpool_size(const ts_threadpool *p) { return p ? p->n_threads : 1; }

void ts_threadpool_run(ts_threadpool *p, int n_tasks, ts_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next_task, 0);
    atomic_store(&p->remaining_workers, p->n_threads - 1);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    drain(p, 0);
    int spins = 0;
    while (atomic_load_explicit(&p->remaining_workers, memory_order_acquire) > 0 && spins < SPIN_ITERATIONS) spins++;
    if (atomic_load(&p->remaining_workers) > 0) {
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->remaining_workers) > 0) pthread_cond_wait(&p->done, &p->lock);
        pthread_mutex_unlock(&p->lock);
    }
}
