#include "base/parallel.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

int ts_available_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void ts_run_jobs(void *(*fn)(void *), void *jobs, size_t job_size, int n) {
    if (n > TS_MAX_JOBS) n = TS_MAX_JOBS;
    pthread_t tids[TS_MAX_JOBS];
    int started[TS_MAX_JOBS] = {0};
    char *base = jobs;
    for (int i = 1; i < n; i++) started[i] = pthread_create(&tids[i], NULL, fn, base + (size_t)i * job_size) == 0;
    for (int i = 1; i < n; i++)
        if (!started[i]) fn(base + (size_t)i * job_size); /* could not start a thread: do its share here */
    if (n > 0) fn(base);
    for (int i = 1; i < n; i++)
        if (started[i]) pthread_join(tids[i], NULL);
}
