/* A fixed pool of workers for data-parallel loops (threadpool.h). Decode starts about two hundred
 * parallel regions per token, so starting one must cost well under a microsecond: the caller
 * publishes the job and bumps a generation counter that idle workers watch; completion is a counter
 * the caller watches. Both are lock-free while the workers are spinning. A worker that has seen no
 * job for SPIN_NS goes to sleep on a condition variable, and only then does a start pay for a wake-up.
 * Counters written by different threads sit on separate cache lines. */
#include "backend/cpu/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

/* How long an idle worker (or the waiting caller) spins before sleeping. */
#define SPIN_NS 200000
#define SPIN_PURE_NS 30000
#define CACHE_LINE 64

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

struct ts_threadpool {
    int n_threads;
    pthread_t *threads;
    /* The current job, written by the caller before it bumps `generation`. */
    ts_task_fn fn;
    void *ctx;
    int n_tasks;
    _Alignas(CACHE_LINE) atomic_uint generation;
    _Alignas(CACHE_LINE) atomic_int next_task;
    _Alignas(CACHE_LINE) atomic_int pending;  /* workers still in the current job */
    _Alignas(CACHE_LINE) atomic_int sleepers; /* workers asleep on `wake` */
    atomic_int caller_waiting;                /* the caller is asleep on `done` */
    atomic_int stop;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
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

static int job_absent(ts_threadpool *p, unsigned seen) {
    return atomic_load_explicit(&p->generation, memory_order_acquire) == seen &&
           !atomic_load_explicit(&p->stop, memory_order_relaxed);
}

static int workers_busy(ts_threadpool *p, unsigned unused) {
    (void)unused;
    return atomic_load_explicit(&p->pending, memory_order_acquire) > 0;
}

/* Spins while cond holds, for at most SPIN_NS; returns 1 if it stopped holding. After SPIN_PURE_NS
 * the spinning yields the processor between checks: on an oversubscribed machine the thread being
 * waited for may be queued behind the spinner. */
static int spin_while(int (*cond)(ts_threadpool *, unsigned), ts_threadpool *p, unsigned arg) {
    uint64_t start = 0;
    for (unsigned i = 0;; i++) {
        if (!cond(p, arg)) return 1;
        cpu_relax();
        if ((i & 63) == 63) {
            uint64_t t = now_ns();
            if (!start) start = t;
            else if (t - start > SPIN_NS) return 0;
            else if (t - start > SPIN_PURE_NS) sched_yield();
        }
    }
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    ts_threadpool *p = wa->pool;
    int index = wa->index;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        if (!spin_while(job_absent, p, seen)) {
            pthread_mutex_lock(&p->lock);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->lock);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        drain(p, index);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_waiting)) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

ts_threadpool *ts_threadpool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    ts_threadpool *p = NULL;
    if (posix_memalign((void **)&p, CACHE_LINE, sizeof *p) != 0) return NULL;
    *p = (ts_threadpool){0};
    p->n_threads = n_threads;
    atomic_init(&p->generation, 0);
    atomic_init(&p->next_task, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_waiting, 0);
    atomic_init(&p->stop, 0);
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
    atomic_store(&p->stop, 1);
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
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    /* Sequentially consistent: a worker registering as a sleeper either sees the new generation or
     * is seen here and woken. */
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    drain(p, 0);
    if (!spin_while(workers_busy, p, 0)) {
        pthread_mutex_lock(&p->lock);
        atomic_store(&p->caller_waiting, 1);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->lock);
        atomic_store(&p->caller_waiting, 0);
        pthread_mutex_unlock(&p->lock);
    }
    atomic_thread_fence(memory_order_acquire);
}
