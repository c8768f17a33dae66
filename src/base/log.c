#include "base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_level = -1;
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;

static int level_from_env(void) {
    const char *s = getenv("TESSERA_LOG");
    if (!s) return TS_LOG_INFO;
    if (!strcmp(s, "error")) return TS_LOG_ERROR;
    if (!strcmp(s, "warn")) return TS_LOG_WARN;
    if (!strcmp(s, "debug")) return TS_LOG_DEBUG;
    return TS_LOG_INFO;
}

void ts_log_set_level(ts_log_level level) { g_level = (int)level; }

ts_log_level ts_log_get_level(void) {
    if (g_level < 0) g_level = level_from_env();
    return (ts_log_level)g_level;
}

void ts_log(ts_log_level level, const char *fmt, ...) {
    if ((int)level > (int)ts_log_get_level()) return;
    static const char *names[] = {"error", "warn", "info", "debug"};
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    pthread_mutex_lock(&g_log_lock);
    fprintf(stderr, "%02d:%02d:%02d.%03ld tessera %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, names[level], line);
    pthread_mutex_unlock(&g_log_lock);
}
