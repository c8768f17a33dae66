/* The walk of a float-weight product over tiles of 4 rows x 2 tokens (single rows where fewer than 4
 * remain), shared by the tables whose vector registers fit that tile (AVX2, NEON). Each table defines
 * mmf_tile(a, r, t0, R, T, dt) for its own registers before expanding TS_MMF_TILES_4X2; AVX-512's wider
 * registers take 4 tokens a tile and walk on their own. */
#ifndef TS_BACKEND_CPU_KERNELS_MMF_TILES_H
#define TS_BACKEND_CPU_KERNELS_MMF_TILES_H

#define TS_MMF_TILES_4X2(DT, NAME)                                              \
    static void NAME(const ts_mm_args *a) {                                     \
        for (int64_t r = a->r0; r < a->r1; r += 4) {                            \
            int full = a->r1 - r >= 4;                                          \
            for (int t0 = 0; t0 < a->n_tok; t0 += 2) {                          \
                int two = a->n_tok - t0 >= 2;                                   \
                if (full) {                                                     \
                    if (two) mmf_tile(a, r, t0, 4, 2, DT);                      \
                    else mmf_tile(a, r, t0, 4, 1, DT);                          \
                } else {                                                        \
                    for (int64_t rr = r; rr < a->r1; rr++) {                    \
                        if (two) mmf_tile(a, rr, t0, 1, 2, DT);                 \
                        else mmf_tile(a, rr, t0, 1, 1, DT);                     \
                    }                                                           \
                }                                                               \
            }                                                                   \
        }                                                                       \
    }

#endif
