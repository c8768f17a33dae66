/* Monotonic time for latency measurements. */
#ifndef TS_BASE_CLOCK_H
#define TS_BASE_CLOCK_H

double ts_now_seconds(void);

#endif
