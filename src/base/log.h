/* Leveled logging to stderr, safe to call from any thread. The level comes from TESSERA_LOG
 * (error, warn, info, debug) or from ts_log_set_level; info is the default. */
#ifndef TS_BASE_LOG_H
#define TS_BASE_LOG_H

typedef enum { TS_LOG_ERROR = 0, TS_LOG_WARN = 1, TS_LOG_INFO = 2, TS_LOG_DEBUG = 3 } ts_log_level;

void ts_log_set_level(ts_log_level level);
ts_log_level ts_log_get_level(void);
void ts_log(ts_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define ts_log_error(...) ts_log(TS_LOG_ERROR, __VA_ARGS__)
#define ts_log_warn(...) ts_log(TS_LOG_WARN, __VA_ARGS__)
#define ts_log_info(...) ts_log(TS_LOG_INFO, __VA_ARGS__)
#define ts_log_debug(...) ts_log(TS_LOG_DEBUG, __VA_ARGS__)

#endif
