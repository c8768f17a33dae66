/* SplitMix64 (Steele, Lea and Flood, 2014): a 64-bit counter through a mixing function. Seeds other
 * generators (the sampler's xoshiro256**) and fills synthetic weights; the same seed gives the same
 * numbers on every machine. */
#ifndef TS_BASE_SPLITMIX_H
#define TS_BASE_SPLITMIX_H

#include <stdint.h>

static inline uint64_t ts_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#endif
