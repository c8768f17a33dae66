/* Template of the 256-bit integer micro-kernel, included by kernels_avx2.c once per dot-product
 * flavour: UK_PREFIX names the functions, UK_DOT(acc, w, x) adds the 4-byte dot products of unsigned
 * w and signed x to the 32-bit lanes of acc, UK_WIDE_DOT the same for w holding q + 128 of signed
 * weights (result without the +128), UK_ATTR the function attributes (target). A 16-row decoded block
 * is handled as two halves of 8 rows so that tokens x (int + float accumulators) fit the 16 registers. */

#define UK_CAT2(a, b) a##b
#define UK_CAT(a, b) UK_CAT2(a, b)
#define UK_FN(name) UK_CAT(UK_PREFIX, name)

UK_ATTR ALWAYS_INLINE void UK_FN(body)(const uint8_t *ub, int64_t nblk, int off, const uint8_t *act, size_t astride,
                                      int64_t cols, int64_t ub0, int t0, float *acc, const int T, const int B,
                                      const int has_min, const int wide) {
    const int8_t *xq[4];
    const float *xd[4];
    const int32_t *x32[4];
    const int16_t *x16[4];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        const uint8_t *row = act + (size_t)(t0 + t) * astride;
        xq[t] = ts_act_q(row);
        xd[t] = ts_act_d(row, cols);
        x32[t] = ts_act_sum32(row, cols);
        x16[t] = ts_act_sum16(row, cols);
    }
    const size_t ubytes = (size_t)B * 16 + 128;
    const int eff_off = wide ? 0 : off;
    for (int half = 0; half < 2; half++) {
        __m256 facc[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) facc[t] = _mm256_loadu_ps(acc + 16 * t + 8 * half);
        for (int64_t b = 0; b < nblk; b++) {
            const uint8_t *u = ub + (size_t)b * ubytes + 32 * half;
            int64_t g = ub0 + b;
            __m256i ia[4];
            int xs[4];
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                xs[t] = B == 32 ? x32[t][g] : x16[t][g];
                ia[t] = _mm256_set1_epi32(-eff_off * xs[t]);
            }
#pragma GCC unroll 8
            for (int s = 0; s < B / 4; s++) {
                __m256i w = _mm256_load_si256((const __m256i *)(u + 64 * s));
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    int32_t xv;
                    memcpy(&xv, xq[t] + g * B + 4 * s, 4);
                    __m256i x = _mm256_set1_epi32(xv);
                    if (wide)
                        ia[t] = UK_WIDE_DOT(ia[t], w, x);
                    else
                        ia[t] = UK_DOT(ia[t], w, x);
                }
            }
            const float *scp = (const float *)(ub + (size_t)b * ubytes + (size_t)B * 16) + 8 * half;
            __m256 sc = _mm256_load_ps(scp);
            __m256 mb = has_min ? _mm256_load_ps(scp + 16) : _mm256_setzero_ps();
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256 v = _mm256_cvtepi32_ps(ia[t]);
                v = has_min ? _mm256_fmadd_ps(v, sc, _mm256_mul_ps(mb, _mm256_set1_ps((float)xs[t]))) : _mm256_mul_ps(v, sc);
                float dx = B == 32 ? xd[t][g] : xd[t][g >> 1];
                facc[t] = _mm256_fmadd_ps(v, _mm256_set1_ps(dx), facc[t]);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) _mm256_storeu_ps(acc + 16 * t + 8 * half, facc[t]);
    }
}

#define UK_VARIANT(T, NAME, B, HAS_MIN, WIDE)                                                                           \
    UK_ATTR static void UK_FN(NAME##_##T)(const uint8_t *ub, int64_t n, int off, const uint8_t *a, size_t s,            \
                                          int64_t c, int64_t u0, int t0, float *acc) {                                  \
        UK_FN(body)(ub, n, off, a, s, c, u0, t0, acc, T, B, HAS_MIN, WIDE);                                           \
    }
#define UK_VARIANTS(T)                                                                                                 \
    UK_VARIANT(T, k32, 32, 0, 0)                                                                                       \
    UK_VARIANT(T, k32m, 32, 1, 0)                                                                                      \
    UK_VARIANT(T, k32w, 32, 0, 1)                                                                                      \
    UK_VARIANT(T, k16, 16, 0, 0)
UK_VARIANTS(1)
UK_VARIANTS(2)
UK_VARIANTS(3)
UK_VARIANTS(4)
#undef UK_VARIANTS
#undef UK_VARIANT

static const uk_fn UK_FN(set32)[4] = {UK_FN(k32_1), UK_FN(k32_2), UK_FN(k32_3), UK_FN(k32_4)};
static const uk_fn UK_FN(set32m)[4] = {UK_FN(k32m_1), UK_FN(k32m_2), UK_FN(k32m_3), UK_FN(k32m_4)};
static const uk_fn UK_FN(set32w)[4] = {UK_FN(k32w_1), UK_FN(k32w_2), UK_FN(k32w_3), UK_FN(k32w_4)};
static const uk_fn UK_FN(set16)[4] = {UK_FN(k16_1), UK_FN(k16_2), UK_FN(k16_3), UK_FN(k16_4)};

static void UK_FN(kernel)(const uint8_t *ub, int64_t nblk, const ts_unified_desc *ud, const uint8_t *act,
                          size_t astride, int64_t cols, int64_t ub0, int t0, int n_tok, float *acc) {
    const uk_fn *set = ud->block == 16            ? UK_FN(set16)
                       : ud->has_min              ? UK_FN(set32m)
                       : ud->off == 128 && UK_NEEDS_WIDE ? UK_FN(set32w)
                                                  : UK_FN(set32);
    for (int i = 0; i < n_tok; i += 4) {
        int nt = n_tok - i < 4 ? n_tok - i : 4;
        set[nt - 1](ub, nblk, ud->off, act, astride, cols, ub0, t0 + i, acc + 16 * i);
    }
}

#undef UK_FN
#undef UK_CAT
#undef UK_CAT2
