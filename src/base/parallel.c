#include "base/parallel.h"

#include <pthread.h>

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
