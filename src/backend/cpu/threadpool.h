/* A fixed pool of worker threads for data-parallel loops. The calling thread takes part, so a pool of
 * n threads starts n - 1 workers. Tasks of one run are handed out through an atomic counter. */
#ifndef TS_BACKEND_CPU_THREADPOOL_H
#define TS_BACKEND_CPU_THREADPOOL_H

typedef struct ts_threadpool ts_threadpool;

/* task runs for every index in [0, n_tasks); thread is in [0, pool threads). */
typedef void (*ts_task_fn)(void *ctx, int task, int thread);

ts_threadpool *ts_threadpool_create(int n_threads);
void ts_threadpool_destroy(ts_threadpool *pool);
int ts_threadpool_size(const ts_threadpool *pool);
/* Runs all tasks and returns when every one has finished. Not reentrant: one run at a time per pool. */
void ts_threadpool_run(ts_threadpool *pool, int n_tasks, ts_task_fn fn, void *ctx);

#endif
