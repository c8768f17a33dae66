/* Splitting a piece of CPU work (quantizing, synthesizing tensors) over a few threads. */
#ifndef TS_BASE_PARALLEL_H
#define TS_BASE_PARALLEL_H

#include <stddef.h>

#define TS_MAX_JOBS 64

/* The cores this process may run on (its affinity mask; the online cores where that is unknown). */
int ts_available_cores(void);

/* Runs fn on each of n (<= TS_MAX_JOBS) jobs stored job_size bytes apart from jobs: jobs 1..n-1 on threads
 * of their own (on the caller's thread where a thread cannot start), job 0 on the caller's. Returns when
 * every job has finished; results travel in the jobs themselves. */
void ts_run_jobs(void *(*fn)(void *), void *jobs, size_t job_size, int n);

#endif
