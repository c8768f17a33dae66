/* The index of the largest value, shared by the sampler and the model's greedy path. */
#ifndef TS_BASE_ARGMAX_H
#define TS_BASE_ARGMAX_H

#include <stdint.h>

/* Index of the largest of x[0..n) (lowest index on ties). */
int32_t ts_argmax(const float *x, int n);

#endif
