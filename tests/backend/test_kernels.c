/* Every kernel table this CPU can run against the plain C reference table ("generic"), on random
 * inputs of awkward shapes (rows and tokens that are not multiples of the 16-row groups or token
 * tiles; columns a multiple of the block size):
 *  - activation quantization: byte-identical rows;
 *  - integer products with unit scales: the result is an exact integer sum in every table (all
 *    intermediate values are integers below 2^24, so float arithmetic is exact), which checks the
 *    integer dot products and offsets bit for bit;
 *  - integer products with random fp16 scales: |y - ref| <= (blocks + 8) * 2^-23 * M, where M is the
 *    sum over the row of |x| * (|w| + 2 |minimum term|): the first-order bound of any evaluation
 *    order of the float scale arithmetic (each block term is a product of at most three rounded
 *    factors and is added once into a chain no longer than the number of blocks plus a reduction);
 *  - float weights (F32, F16, BF16): |y - ref| <= 1e-6 * sum |w x| (normwise relative error);
 *  - the matmul driver (threads, prepared and unprepared weights, bias) and the vector helpers.
 * TESSERA_HIDE_FEATURES runs check that selection falls to the next table. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/act_quant.h"
#include "backend/cpu/cpu_features.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/pack.h"
#include "backend/cpu/threadpool.h"
#include "backend/kernel_test_shim.h"
#include "quant/dequantize.h"
#include "quant/float16.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static float rndf(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

static uint16_t rnd_f16_finite(void) {
    for (;;) {
        uint16_t h = (uint16_t)rnd();
        if (((h >> 10) & 0x1f) != 0x1f) return h;
    }
}

static void *xmalloc(size_t n) {
    void *p = NULL;
    assert_true(posix_memalign(&p, 64, n ? (n + 63) & ~(size_t)63 : 64) == 0);
    return p;
}

static const ts_dtype g_quant_types[] = {TS_DTYPE_Q8_0, TS_DTYPE_Q4_0, TS_DTYPE_Q4_1, TS_DTYPE_IQ4_NL,
                                         TS_DTYPE_Q4_K, TS_DTYPE_Q5_K, TS_DTYPE_Q6_K, TS_DTYPE_IQ4_XS};
#define N_QUANT (sizeof g_quant_types / sizeof g_quant_types[0])

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* Random quantized rows. unit: scales that keep everything integer (d = dmin = 1, Q4_1 minimum a
 * small integer); otherwise random finite fp16 scales. Other bytes (values, 6-bit and int8 sub-block
 * scales) are random. */
static uint8_t *make_quant_rows(ts_dtype t, int64_t rows, int64_t cols, int unit) {
    size_t rb = ts_dtype_row_bytes(t, cols);
    uint8_t *w = xmalloc(rb * (size_t)rows);
    for (size_t i = 0; i < rb * (size_t)rows; i++) w[i] = (uint8_t)rnd();
    const ts_dtype_info *in = ts_dtype_get(t);
    int64_t nb = cols / in->block_size;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = w + (size_t)r * rb + (size_t)b * (size_t)in->block_bytes;
            uint16_t one = 0x3c00;
            switch (t) {
            case TS_DTYPE_Q8_0:
            case TS_DTYPE_Q4_0:
            case TS_DTYPE_IQ4_NL:
            case TS_DTYPE_IQ4_XS: put16(blk, unit ? one : rnd_f16_finite()); break;
            case TS_DTYPE_Q4_1:
                put16(blk, unit ? one : rnd_f16_finite());
                put16(blk + 2, unit ? ts_f32_to_f16((float)((int)(rnd() % 17) - 8)) : rnd_f16_finite());
                break;
            case TS_DTYPE_Q4_K:
            case TS_DTYPE_Q5_K:
                put16(blk, unit ? one : rnd_f16_finite());
                put16(blk + 2, unit ? one : rnd_f16_finite());
                break;
            case TS_DTYPE_Q6_K: put16(blk + 208, unit ? one : rnd_f16_finite()); break;
            default: break;
            }
        }
    }
    return w;
}

/* Activations. unit: integers with one +-127 per 32-block, so the block scale is exactly 1 and the
 * quantized values equal the inputs. Otherwise random values with a random magnitude per block,
 * including all-zero blocks. */
static float *make_acts(int n, int64_t cols, int unit) {
    float *x = xmalloc((size_t)n * (size_t)cols * sizeof(float));
    for (int t = 0; t < n; t++) {
        for (int64_t b = 0; b < cols / 32; b++) {
            float *xb = x + (size_t)t * (size_t)cols + b * 32;
            if (unit) {
                for (int j = 0; j < 32; j++) xb[j] = (float)((int)(rnd() % 31) - 15);
                xb[rnd() % 32] = (rnd() & 1) ? 127.0f : -127.0f;
                continue;
            }
            int kind = (int)(rnd() % 16);
            float mag = kind == 0 ? 0.0f : kind == 1 ? 1e-3f : kind == 2 ? 300.0f : 1.0f;
            for (int j = 0; j < 32; j++) xb[j] = mag * rndf();
        }
        for (int64_t k = cols / 32 * 32; k < cols; k++) x[(size_t)t * (size_t)cols + k] = rndf();
    }
    return x;
}

/* Rows padded to whole tiles of tokens with zeros, as ts_mm_args requires. */
static uint8_t *quantize_acts(const ts_cpu_kernels *k, const float *x, int n, int64_t cols) {
    size_t stride = ts_act_row_bytes(cols);
    size_t rows = (size_t)(n + TS_MM_ACT_ROW_PAD - 1) / TS_MM_ACT_ROW_PAD * TS_MM_ACT_ROW_PAD;
    uint8_t *a = xmalloc(stride * rows);
    memset(a, 0, stride * rows);
    for (int t = 0; t < n; t++) k->quantize_act(x + (size_t)t * (size_t)cols, cols, a + (size_t)t * stride);
    return a;
}

/* M[t][r] = sum_k |x'_k| (|w_k| + 2 |min_k|): x' the dequantized activation, w the dequantized weight
 * and min its minimum component (the weight dequantized with its scale d set to zero). */
static double *magnitudes(ts_dtype t, const uint8_t *w, int64_t rows, int64_t cols, const uint8_t *act, int n) {
    size_t rb = ts_dtype_row_bytes(t, cols), stride = ts_act_row_bytes(cols);
    const ts_dtype_info *in = ts_dtype_get(t);
    double *M = xmalloc(sizeof(double) * (size_t)rows * (size_t)n);
    float *wf = xmalloc(sizeof(float) * (size_t)cols), *mf = xmalloc(sizeof(float) * (size_t)cols);
    uint8_t *copy = xmalloc(rb);
    for (int64_t r = 0; r < rows; r++) {
        ts_dequantize_row(t, w + (size_t)r * rb, wf, cols);
        memcpy(copy, w + (size_t)r * rb, rb);
        int d_off = t == TS_DTYPE_Q6_K ? 208 : 0;
        for (int64_t b = 0; b < cols / in->block_size; b++) put16(copy + (size_t)b * (size_t)in->block_bytes + d_off, 0);
        ts_dequantize_row(t, copy, mf, cols);
        for (int i = 0; i < n; i++) {
            const uint8_t *row = act + (size_t)i * stride;
            const int8_t *q = ts_act_q(row);
            const float *d = ts_act_d(row, cols);
            double m = 0.0;
            for (int64_t k = 0; k < cols; k++)
                m += fabs((double)d[k / 32] * q[k]) * (fabs((double)wf[k]) + 2.0 * fabs((double)mf[k]));
            M[(size_t)i * (size_t)rows + (size_t)r] = m;
        }
    }
    free(wf);
    free(mf);
    free(copy);
    return M;
}

static void run_mm(const ts_cpu_kernels *k, ts_mm_fn fn, ts_dtype t, const uint8_t *w, size_t w_stride, int64_t rows,
                   int64_t cols, const uint8_t *act, size_t act_stride, int n, int64_t r0, float *y) {
    void *scratch = xmalloc(ts_cpu_mm_scratch_bytes(cols));
    ts_mm_args a = {.dtype = t,
                    .cols = cols,
                    .w = w,
                    .w_stride = w_stride,
                    .act = act,
                    .act_stride = act_stride,
                    .n_tok = n,
                    .r0 = r0,
                    .r1 = rows,
                    .y = y,
                    .y_stride = (size_t)rows,
                    .bias = NULL,
                    .scratch = scratch};
    (void)k;
    fn(&a);
    free(scratch);
}

static int usable_tables(const ts_cpu_kernels **out) {
    int n = 0;
    const ts_cpu_kernels *const *all = ts_cpu_kernels_all();
    for (int i = 0; all[i]; i++)
        if (ts_cpu_kernels_usable(all[i])) out[n++] = all[i];
    return n;
}

/* ---- activation quantization ---- */

static void test_act_quantize_identical(void **state) {
    (void)state;
    const ts_cpu_kernels *tables[16];
    int nt = usable_tables(tables);
    const int64_t widths[] = {32, 96, 1024, 3104};
    for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
        int64_t cols = widths[wi];
        int n = 5;
        float *x = make_acts(n, cols, 0);
        x[3] = 1e-35f; /* a tiny value in an otherwise normal block */
        for (int j = 0; j < 32; j++) x[cols + j] = 1e-31f * rndf(); /* a block below the tiny threshold */
        uint8_t *ref = quantize_acts(&ts_cpu_kernels_generic, x, n, cols);
        size_t used = (size_t)cols + (size_t)cols / 32 * 12, stride = ts_act_row_bytes(cols);
        for (int i = 0; i < nt; i++) {
            uint8_t *got = quantize_acts(tables[i], x, n, cols);
            for (int t = 0; t < n; t++)
                if (memcmp(got + (size_t)t * stride, ref + (size_t)t * stride, used) != 0)
                    fail_msg("%s: quantized activation row %d of %lld values differs from the reference",
                             tables[i]->name, t, (long long)cols);
            free(got);
        }
        free(ref);
        free(x);
    }
}

/* ---- integer products ---- */

typedef struct {
    int64_t rows, cols;
    int n;
} shape;

static int64_t cols_for(ts_dtype t, int64_t want) {
    int bs = ts_dtype_get(t)->block_size;
    return (want + bs - 1) / bs * bs;
}

/* Runs every usable table (raw and, where it has one, packed layout) on one problem and compares. */
static void check_quant_case(ts_dtype t, shape s, int unit) {
    const ts_cpu_kernels *tables[16];
    int nt = usable_tables(tables);
    /* Unit scales keep sums exact only while they stay below 2^24. */
    int64_t cols = cols_for(t, unit && s.cols > 512 ? 512 : s.cols), rows = s.rows;
    uint8_t *w = make_quant_rows(t, rows, cols, unit);
    float *x = make_acts(s.n, cols, unit);
    size_t rb = ts_dtype_row_bytes(t, cols), stride = ts_act_row_bytes(cols);
    uint8_t *act = quantize_acts(&ts_cpu_kernels_generic, x, s.n, cols);
    size_t ny = (size_t)rows * (size_t)s.n;
    float *ref = xmalloc(ny * sizeof(float)), *got = xmalloc(ny * sizeof(float));
    run_mm(&ts_cpu_kernels_generic, ts_cpu_kernels_generic.mm[t], t, w, rb, rows, cols, act, stride, s.n, 0, ref);
    double *M = magnitudes(t, w, rows, cols, act, s.n);
    if (unit)
        for (size_t i = 0; i < ny; i++)
            if (M[i] >= 16777216.0) fail_msg("test data too large for exact float sums: %g", M[i]);
    size_t pbytes = ts_pack_bytes(TS_PACK_I16, t, rows, cols);
    uint8_t *packed = xmalloc(pbytes);
    ts_pack_groups(TS_PACK_I16, t, w, rb, rows, cols, 0, (rows + 15) / 16, packed);
    size_t gbytes = ts_pack_group_bytes(TS_PACK_I16, t, cols);
    double blocks = (double)(cols / 32);
    for (int i = 0; i < nt; i++) {
        for (int layout = 0; layout < 2; layout++) {
            ts_mm_fn fn = layout ? tables[i]->mm_packed[t] : tables[i]->mm[t];
            if (!fn) continue;
            /* Packed layouts start at a group boundary; raw ones anywhere. */
            int64_t r0 = layout ? (rows > 16 ? 16 : 0) : (rows > 3 ? 3 : 0);
            for (size_t e = 0; e < ny; e++) got[e] = NAN;
            run_mm(tables[i], fn, t, layout ? packed : w, layout ? gbytes : rb, rows, cols, act, stride, s.n, r0, got);
            for (int tok = 0; tok < s.n; tok++) {
                for (int64_t r = r0; r < rows; r++) {
                    size_t e = (size_t)tok * (size_t)rows + (size_t)r;
                    double diff = fabs((double)got[e] - (double)ref[e]);
                    double tol = unit ? 0.0 : (blocks + 8.0) * ldexp(1.0, -23) * M[e];
                    if (!(diff <= tol))
                        fail_msg("%s %s %s (%s scales) rows %lld cols %lld tokens %d: y[%d][%lld] = %.9g, reference "
                                 "%.9g, |diff| %.3g > %.3g",
                                 tables[i]->name, layout ? "packed" : "raw", ts_dtype_get(t)->name,
                                 unit ? "unit" : "random", (long long)rows, (long long)cols, s.n, tok, (long long)r,
                                 got[e], ref[e], diff, tol);
                }
            }
        }
    }
    free(w);
    free(x);
    free(act);
    free(ref);
    free(got);
    free(M);
    free(packed);
}

static const shape g_shapes[] = {
    {37, 320, 1}, {37, 320, 3}, {5, 256, 2}, {37, 512, 8}, {21, 512, 11}, {37, 352, 37}, {16, 1024, 17}, {48, 256, 64}, {33, 96, 20},
};

static void test_integer_products_exact(void **state) {
    (void)state;
    for (size_t ti = 0; ti < N_QUANT; ti++)
        for (size_t si = 0; si < sizeof g_shapes / sizeof g_shapes[0]; si++) check_quant_case(g_quant_types[ti], g_shapes[si], 1);
}

static void test_integer_products_random_scales(void **state) {
    (void)state;
    for (size_t ti = 0; ti < N_QUANT; ti++)
        for (size_t si = 0; si < sizeof g_shapes / sizeof g_shapes[0]; si++) check_quant_case(g_quant_types[ti], g_shapes[si], 0);
}

/* ---- float weights ---- */

static void check_float_case(ts_dtype t, int64_t rows, int64_t cols, int n) {
    const ts_cpu_kernels *tables[16];
    int nt = usable_tables(tables);
    size_t rb = ts_dtype_row_bytes(t, cols);
    uint8_t *w = xmalloc(rb * (size_t)rows);
    float *wf = xmalloc(sizeof(float) * (size_t)rows * (size_t)cols);
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = rndf() * (float)(1 + rnd() % 4);
        if (t == TS_DTYPE_F32) memcpy(w + 4 * i, &v, 4);
        if (t == TS_DTYPE_F16) put16(w + 2 * i, ts_f32_to_f16(v));
        if (t == TS_DTYPE_BF16) put16(w + 2 * i, ts_f32_to_bf16(v));
    }
    for (int64_t r = 0; r < rows; r++) ts_dequantize_row(t, w + (size_t)r * rb, wf + (size_t)r * (size_t)cols, cols);
    float *x = xmalloc(sizeof(float) * (size_t)n * (size_t)cols);
    for (int64_t i = 0; i < (int64_t)n * cols; i++) x[i] = rndf();
    size_t ny = (size_t)rows * (size_t)n;
    float *ref = xmalloc(ny * sizeof(float)), *got = xmalloc(ny * sizeof(float));
    size_t xs = (size_t)cols * sizeof(float);
    run_mm(&ts_cpu_kernels_generic, ts_cpu_kernels_generic.mm[t], t, w, rb, rows, cols, (const uint8_t *)x, xs, n, 0, ref);
    for (int i = 0; i < nt; i++) {
        ts_mm_fn fn = tables[i]->mm[t];
        if (!fn) continue;
        for (size_t e = 0; e < ny; e++) got[e] = NAN;
        run_mm(tables[i], fn, t, w, rb, rows, cols, (const uint8_t *)x, xs, n, 1, got);
        for (int tok = 0; tok < n; tok++) {
            for (int64_t r = 1; r < rows; r++) {
                double s = 0.0;
                for (int64_t k = 0; k < cols; k++) s += fabs((double)wf[r * cols + k] * x[(size_t)tok * (size_t)cols + (size_t)k]);
                size_t e = (size_t)tok * (size_t)rows + (size_t)r;
                double diff = fabs((double)got[e] - ref[e]);
                if (!(diff <= 1e-6 * s))
                    fail_msg("%s %s rows %lld cols %lld tokens %d: y[%d][%lld] = %.9g, reference %.9g, relative %.3g",
                             tables[i]->name, ts_dtype_get(t)->name, (long long)rows, (long long)cols, n, tok,
                             (long long)r, got[e], ref[e], diff / s);
            }
        }
    }
    free(w);
    free(wf);
    free(x);
    free(ref);
    free(got);
}

static void test_float_products(void **state) {
    (void)state;
    const ts_dtype types[] = {TS_DTYPE_F32, TS_DTYPE_F16, TS_DTYPE_BF16};
    for (size_t i = 0; i < 3; i++) {
        check_float_case(types[i], 13, 67, 1);
        check_float_case(types[i], 37, 1027, 3);
        check_float_case(types[i], 9, 256, 9);
        check_float_case(types[i], 6, 5, 4);
    }
}

/* ---- the driver: threads, prepared weights, bias ---- */

static void check_driver(ts_dtype t, int64_t rows, int64_t cols, int n, int threads) {
    ts_threadpool *pool = ts_threadpool_create(threads);
    ts_cpu_matmul_ctx *ctx = ts_cpu_matmul_ctx_create(pool);
    assert_non_null(ctx);
    cols = cols_for(t, cols);
    int quant = ts_dtype_is_quantized(t);
    size_t rb = ts_dtype_row_bytes(t, cols);
    uint8_t *host;
    if (quant) {
        host = make_quant_rows(t, rows, cols, 0);
    } else {
        host = xmalloc(rb * (size_t)rows);
        for (int64_t i = 0; i < rows * cols; i++) put16(host + 2 * i, ts_f32_to_bf16(rndf()));
    }
    ts_weight w = {.dtype = t, .rows = rows, .cols = cols, .host = host, .row_bytes = rb};
    float *x = make_acts(n, cols, 0);
    float *bias = xmalloc(sizeof(float) * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) bias[r] = rndf();
    size_t ny = (size_t)rows * (size_t)n;
    float *ref = xmalloc(ny * sizeof(float)), *plain = xmalloc(ny * sizeof(float)), *prep = xmalloc(ny * sizeof(float));
    const uint8_t *act = quant ? quantize_acts(&ts_cpu_kernels_generic, x, n, cols) : (const uint8_t *)x;
    size_t stride = quant ? ts_act_row_bytes(cols) : (size_t)cols * sizeof(float);
    run_mm(&ts_cpu_kernels_generic, ts_cpu_kernels_generic.mm[t], t, host, rb, rows, cols, act, stride, n, 0, ref);
    double *M = quant ? magnitudes(t, host, rows, cols, act, n) : NULL;
    ts_cpu_matmul(ctx, &w, x, n, plain, bias);
    ts_error err;
    assert_int_equal(ts_cpu_matmul_prepare(ctx, &w, &err), 0);
    ts_cpu_matmul(ctx, &w, x, n, prep, bias);
    for (size_t e = 0; e < ny; e++) {
        size_t r = e % (size_t)rows;
        double tol;
        if (quant) {
            tol = ((double)(cols / 32) + 8.0) * ldexp(1.0, -23) * M[e] + 1e-6 * fabs(bias[r]);
        } else {
            double s = 0.0;
            for (int64_t k = 0; k < cols; k++)
                s += fabs((double)ts_bf16_to_f32(((const uint16_t *)host)[r * (size_t)cols + (size_t)k]) * x[(e / (size_t)rows) * (size_t)cols + (size_t)k]);
            tol = 1e-6 * s + 1e-6 * fabs(bias[r]);
        }
        double want = (double)ref[e] + bias[r];
        if (!(fabs(plain[e] - want) <= tol) || !(fabs(prep[e] - want) <= tol))
            fail_msg("%s driver (%d threads, %s) rows %lld cols %lld n %d: y[%zu] unprepared %.9g prepared %.9g want %.9g tol %.3g",
                     ts_dtype_get(t)->name, threads, ts_cpu_kernels_active()->name, (long long)rows, (long long)cols, n,
                     e, plain[e], prep[e], want, tol);
    }
    ts_cpu_matmul_release(&w);
    assert_true(w.prepared == NULL);
    if (quant) free((void *)act);
    free(M);
    free(host);
    free(x);
    free(bias);
    free(ref);
    free(plain);
    free(prep);
    ts_cpu_matmul_ctx_destroy(ctx);
    ts_threadpool_destroy(pool);
}

static void test_matmul_driver(void **state) {
    (void)state;
    const ts_cpu_kernels *tables[16];
    int nt = usable_tables(tables);
    for (int i = 0; i < nt; i++) {
        assert_int_equal(ts_cpu_kernels_select(tables[i]->name), 0);
        check_driver(TS_DTYPE_Q4_0, 100, 256, 1, 3);
        check_driver(TS_DTYPE_Q4_K, 45, 512, 7, 2);
        check_driver(TS_DTYPE_Q6_K, 33, 256, 40, 3);
        check_driver(TS_DTYPE_IQ4_XS, 37, 768, 9, 2);
        check_driver(TS_DTYPE_Q8_0, 70, 128, 19, 1);
        check_driver(TS_DTYPE_BF16, 29, 200, 5, 3);
        check_driver(TS_DTYPE_BF16, 40, 96, 33, 2);
    }
    ts_cpu_kernels_select(NULL);
}

/* ---- vector helpers ---- */

static void test_vector_helpers(void **state) {
    (void)state;
    const ts_cpu_kernels *tables[16];
    int nt = usable_tables(tables);
    const ts_cpu_kernels *g = &ts_cpu_kernels_generic;
    const int64_t lens[] = {1, 7, 16, 33, 200, 1000};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int64_t n = lens[li];
        float *a = xmalloc(sizeof(float) * (size_t)n), *b = xmalloc(sizeof(float) * (size_t)n);
        float *r1 = xmalloc(sizeof(float) * (size_t)n), *r2 = xmalloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) {
            a[i] = rndf() * 8.0f;
            b[i] = rndf();
        }
        a[0] = -30.0f; /* far in the tails of exp and silu */
        for (int i = 0; i < nt; i++) {
            const ts_cpu_kernels *k = tables[i];
            double sab = 0.0, saa = 0.0;
            for (int64_t j = 0; j < n; j++) sab += fabs((double)a[j] * b[j]), saa += (double)a[j] * a[j];
            if (!(fabs(k->dot_f32(a, b, n) - g->dot_f32(a, b, n)) <= 1e-6 * sab)) fail_msg("%s dot_f32 n=%lld", k->name, (long long)n);
            if (!(fabs(k->sum_squares_f32(a, n) - g->sum_squares_f32(a, n)) <= 1e-6 * saa)) fail_msg("%s sum_squares n=%lld", k->name, (long long)n);
            memcpy(r1, b, sizeof(float) * (size_t)n);
            memcpy(r2, b, sizeof(float) * (size_t)n);
            k->axpy_f32(0.37f, a, r1, n);
            g->axpy_f32(0.37f, a, r2, n);
            for (int64_t j = 0; j < n; j++)
                if (!(fabs(r1[j] - r2[j]) <= 1e-6 * (fabs(0.37 * a[j]) + fabs(b[j])))) fail_msg("%s axpy at %lld", k->name, (long long)j);
            memcpy(r1, a, sizeof(float) * (size_t)n);
            memcpy(r2, a, sizeof(float) * (size_t)n);
            k->scale_f32(-1.5f, r1, n);
            g->scale_f32(-1.5f, r2, n);
            for (int64_t j = 0; j < n; j++)
                if (r1[j] != r2[j]) fail_msg("%s scale at %lld", k->name, (long long)j);
            memcpy(r1, a, sizeof(float) * (size_t)n);
            memcpy(r2, a, sizeof(float) * (size_t)n);
            float s1 = k->softmax_exp_f32(r1, n, 8.0f), s2 = g->softmax_exp_f32(r2, n, 8.0f);
            if (!(fabs(s1 - s2) <= 1e-6 * s2)) fail_msg("%s softmax sum %.9g vs %.9g", k->name, s1, s2);
            for (int64_t j = 0; j < n; j++)
                if (!(fabs(r1[j] - r2[j]) <= 1e-6 * r2[j] + 1e-37)) fail_msg("%s exp at %lld: %.9g vs %.9g", k->name, (long long)j, r1[j], r2[j]);
            k->rmsnorm_apply_f32(a, b, 0.25f, r1, n);
            g->rmsnorm_apply_f32(a, b, 0.25f, r2, n);
            for (int64_t j = 0; j < n; j++)
                if (r1[j] != r2[j]) fail_msg("%s rmsnorm_apply at %lld", k->name, (long long)j);
            k->silu_mul_f32(a, b, r1, n);
            g->silu_mul_f32(a, b, r2, n);
            for (int64_t j = 0; j < n; j++)
                if (!(fabs(r1[j] - r2[j]) <= 1e-6 * fabs(r2[j]) + 1e-30)) fail_msg("%s silu_mul at %lld: %.9g vs %.9g", k->name, (long long)j, r1[j], r2[j]);
        }
        free(a);
        free(b);
        free(r1);
        free(r2);
    }
}

/* Runs kernel on t into out (rows of head_dim), then compares with the reference rows in ref. */
static void check_attention(const char *table, const char *what, void (*kernel)(const ts_attn_tile *), ts_attn_tile *t,
                            float *out, const float *ref, float tol) {
    size_t hd = (size_t)t->head_dim;
    for (int i = 0; i < t->nq; i++) t->out[i] = out + (size_t)i * hd;
    kernel(t);
    for (int i = 0; i < t->nq; i++)
        for (size_t d = 0; d < hd; d++) {
            float a = out[(size_t)i * hd + d], b = ref[(size_t)i * hd + d];
            if (!(fabsf(a - b) <= tol))
                fail_msg("%s %s attention hd=%zu nq=%d keys=%d query %d (last %d) dim %zu: %.9g vs %.9g", table, what, hd,
                         t->nq, t->n_keys, i, t->q_last[i], d, a, b);
        }
}

/* The tile attention kernels against the generic one (query by query, in double): awkward head
 * sizes, query counts and key counts that do not fill the 16-key tiles, queries at different
 * positions (causal), and large scores that need the running maximum. */
static void test_attention_tile(void **state) {
    (void)state;
    const ts_cpu_kernels *tables[16];
    int nt = usable_tables(tables);
    const ts_cpu_kernels *g = &ts_cpu_kernels_generic;
    const int hds[] = {40, 64, 128, 7};
    const int nqs[] = {1, 3, 16, 10};
    const int nkeys[] = {1, 17, 100, 33};
    for (int c = 0; c < 16; c++) {
        int hd = hds[c % 4], nq = nqs[(c / 4) % 4], nk = nkeys[(c + c / 4) % 4];
        float amp = c % 3 == 2 ? 8.0f : 1.0f;
        float *q = xmalloc(sizeof(float) * (size_t)nq * (size_t)hd), *kv = xmalloc(sizeof(float) * 2 * (size_t)nk * (size_t)hd);
        float *o1 = xmalloc(sizeof(float) * (size_t)nq * (size_t)hd), *o2 = xmalloc(sizeof(float) * (size_t)nq * (size_t)hd);
        const float **kp = xmalloc(sizeof(float *) * (size_t)nk), **vp = xmalloc(sizeof(float *) * (size_t)nk);
        float *scratch = aligned_alloc(64, TS_ATTN_SCRATCH_FLOATS(hd) * sizeof(float) + 64);
        assert_non_null(scratch);
        for (size_t i = 0; i < (size_t)nq * (size_t)hd; i++) q[i] = rndf() * amp;
        for (size_t i = 0; i < 2 * (size_t)nk * (size_t)hd; i++) kv[i] = rndf() * amp;
        /* Rows in reverse order in memory: the kernels must follow the pointers. */
        for (int p = 0; p < nk; p++) {
            kp[p] = kv + (size_t)(nk - 1 - p) * (size_t)hd;
            vp[p] = kv + (size_t)(nk + p) * (size_t)hd;
        }
        ts_attn_tile t;
        memset(&t, 0, sizeof t);
        t.nq = nq;
        t.n_keys = nk;
        t.k = kp;
        t.v = vp;
        t.head_dim = hd;
        t.scale = 1.0f / sqrtf((float)hd);
        t.scratch = scratch;
        for (int i = 0; i < nq; i++) {
            t.q[i] = q + (size_t)i * (size_t)hd;
            t.q_last[i] = nk - 1 - (int)(rnd() % (uint64_t)(i % 2 ? nk : 1));
        }
        for (int i = 0; i < nq; i++) t.out[i] = o2 + (size_t)i * (size_t)hd;
        g->attention_tile_f32(&t);
        /* Scores are float32 in the kernels: their rounding (relative 6e-8, times a few for the sum)
         * moves each weight by about that much times the score's size. */
        double smax = 0.0;
        for (int i = 0; i < nq; i++)
            for (int p = 0; p < nk; p++) {
                double sd = 0.0;
                for (int d = 0; d < hd; d++) sd += (double)t.q[i][d] * kp[p][d];
                if (fabs(sd * t.scale) > smax) smax = fabs(sd * t.scale);
            }
        float tol = amp * (float)(2e-6 + 4e-7 * smax);
        for (int ti = 0; ti < nt; ti++)
            if (tables[ti]->attention_tile_f32 && tables[ti] != g)
                check_attention(tables[ti]->name, "prefill", tables[ti]->attention_tile_f32, &t, o1, o2, tol);
        /* decode: every query of one token at the same position, the reference computed again */
        int common = nk - 1 - (int)(rnd() % (uint64_t)nk);
        for (int i = 0; i < nq; i++) {
            t.q_last[i] = common;
            t.out[i] = o2 + (size_t)i * (size_t)hd;
        }
        g->attention_decode_f32(&t);
        for (int ti = 0; ti < nt; ti++)
            if (tables[ti]->attention_decode_f32 && tables[ti] != g)
                check_attention(tables[ti]->name, "decode", tables[ti]->attention_decode_f32, &t, o1, o2, tol);
        free(q);
        free(kv);
        free(o1);
        free(o2);
        free(kp);
        free(vp);
        free(scratch);
    }
}

/* Several weights on one input give exactly what separate calls give. */
static void test_matmul_multi(void **state) {
    (void)state;
    const ts_cpu_kernels *tables[16];
    int nt = usable_tables(tables);
    const ts_dtype types[] = {TS_DTYPE_Q4_K, TS_DTYPE_Q6_K, TS_DTYPE_BF16, TS_DTYPE_Q8_0, TS_DTYPE_F32};
    const int64_t rows[] = {48, 21, 37, 100, 9};
    const int64_t cols = 256;
    enum { NW = 5 };
    for (int ti = 0; ti < nt; ti++) {
        assert_int_equal(ts_cpu_kernels_select(tables[ti]->name), 0);
        for (int n = 1; n <= 19; n += 18) {
            ts_threadpool *pool = ts_threadpool_create(3);
            ts_cpu_matmul_ctx *ctx = ts_cpu_matmul_ctx_create(pool);
            ts_weight w[NW];
            const ts_weight *wp[NW];
            float *one[NW], *multi[NW], *bias[NW];
            for (int i = 0; i < NW; i++) {
                ts_dtype t = types[i];
                size_t rb = ts_dtype_row_bytes(t, cols);
                uint8_t *host;
                if (ts_dtype_is_quantized(t)) {
                    host = make_quant_rows(t, rows[i], cols, 0);
                } else {
                    host = xmalloc(rb * (size_t)rows[i]);
                    for (int64_t e = 0; e < rows[i] * cols; e++) {
                        float v = rndf();
                        if (t == TS_DTYPE_F32) memcpy(host + 4 * e, &v, 4);
                        else put16(host + 2 * e, ts_f32_to_bf16(v));
                    }
                }
                w[i] = (ts_weight){.dtype = t, .rows = rows[i], .cols = cols, .host = host, .row_bytes = rb};
                wp[i] = &w[i];
                one[i] = xmalloc(sizeof(float) * (size_t)n * (size_t)rows[i]);
                multi[i] = xmalloc(sizeof(float) * (size_t)n * (size_t)rows[i]);
                bias[i] = i == 2 ? NULL : xmalloc(sizeof(float) * (size_t)rows[i]);
                for (int64_t r = 0; bias[i] && r < rows[i]; r++) bias[i][r] = rndf();
                ts_error err;
                if (i % 2 == 0) assert_int_equal(ts_cpu_matmul_prepare(ctx, &w[i], &err), 0);
            }
            float *x = make_acts(n, cols, 0);
            for (int i = 0; i < NW; i++) ts_cpu_matmul(ctx, &w[i], x, n, one[i], bias[i]);
            ts_cpu_matmul_multi(ctx, wp, NW, x, n, multi, (const float *const *)bias);
            for (int i = 0; i < NW; i++) {
                if (memcmp(one[i], multi[i], sizeof(float) * (size_t)n * (size_t)rows[i]) != 0)
                    fail_msg("%s: matmul_multi differs from a single matmul for weight %d (%s), n %d", tables[ti]->name,
                             i, ts_dtype_get(types[i])->name, n);
                ts_cpu_matmul_release(&w[i]);
                free((void *)w[i].host);
                free(one[i]);
                free(multi[i]);
                free(bias[i]);
            }
            free(x);
            ts_cpu_matmul_ctx_destroy(ctx);
            ts_threadpool_destroy(pool);
        }
    }
    ts_cpu_kernels_select(NULL);
}

/* ---- opt-in reduced precision: bf16 activations on AMX BF16 tiles ---- */

static void test_bf16_reduced_precision(void **state) {
    (void)state;
    if (!ts_cpu_kernels_active()->mm_bf16_reduced) {
        print_message("no reduced-precision BF16 kernel in table %s\n", ts_cpu_kernels_active()->name);
        skip();
    }
    const int64_t shapes[][3] = {{40, 64, 37}, {16, 96, 16}, {35, 1024, 5}, {64, 32, 50}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t rows = shapes[si][0], cols = shapes[si][1];
        int n = (int)shapes[si][2];
        ts_threadpool *pool = ts_threadpool_create(2);
        ts_cpu_matmul_ctx *ctx = ts_cpu_matmul_ctx_create(pool);
        ts_cpu_matmul_set_bf16_activations(ctx, 1);
        size_t rb = (size_t)cols * 2;
        uint16_t *host = xmalloc(rb * (size_t)rows);
        for (int64_t i = 0; i < rows * cols; i++) host[i] = ts_f32_to_bf16(rndf());
        ts_weight w = {.dtype = TS_DTYPE_BF16, .rows = rows, .cols = cols, .host = host, .row_bytes = rb};
        float *x = make_acts(n, cols, 0), *xr = xmalloc(sizeof(float) * (size_t)n * (size_t)cols);
        for (int64_t i = 0; i < (int64_t)n * cols; i++) xr[i] = ts_bf16_to_f32(ts_f32_to_bf16(x[i]));
        size_t ny = (size_t)rows * (size_t)n;
        float *ref = xmalloc(ny * sizeof(float)), *got = xmalloc(ny * sizeof(float));
        run_mm(&ts_cpu_kernels_generic, ts_cpu_kernels_generic.mm[TS_DTYPE_BF16], TS_DTYPE_BF16, (const uint8_t *)host,
               rb, rows, cols, (const uint8_t *)xr, (size_t)cols * 4, n, 0, ref);
        ts_error err;
        assert_int_equal(ts_cpu_matmul_prepare(ctx, &w, &err), 0);
        assert_true(ts_cpu_matmul_prepared_bytes(&w) > 0);
        ts_cpu_matmul(ctx, &w, x, n, got, NULL);
        for (size_t e = 0; e < ny; e++) {
            size_t r = e % (size_t)rows, t = e / (size_t)rows;
            double s = 0.0;
            for (int64_t k = 0; k < cols; k++) s += fabs((double)ts_bf16_to_f32(host[r * (size_t)cols + (size_t)k]) * xr[t * (size_t)cols + (size_t)k]);
            if (!(fabs((double)got[e] - ref[e]) <= 1e-6 * s))
                fail_msg("bf16 reduced rows %lld cols %lld n %d: y[%zu][%zu] = %.9g, reference with bf16 activations %.9g",
                         (long long)rows, (long long)cols, n, t, r, got[e], ref[e]);
        }
        ts_cpu_matmul_release(&w);
        free(host);
        free(x);
        free(xr);
        free(ref);
        free(got);
        ts_cpu_matmul_ctx_destroy(ctx);
        ts_threadpool_destroy(pool);
    }
}

/* ---- selection ---- */

static int hidden(const char *name) {
    const char *env = getenv("TESSERA_HIDE_FEATURES");
    if (!env) return 0;
    const char *p = strstr(env, name);
    return p != NULL;
}

static void test_selection_honours_hidden_features(void **state) {
    (void)state;
    const ts_cpu_kernels *best = ts_cpu_kernels_best();
    const ts_cpu_features *f = ts_cpu_features_get();
    print_message("best table: %s (hidden features 0x%x)\n", best->name, f->hidden);
    assert_true(ts_cpu_has(best->required));
    /* No usable table is better than the one chosen. */
    const ts_cpu_kernels *const *all = ts_cpu_kernels_all();
    for (int i = 0; all[i] && all[i] != best; i++) assert_false(ts_cpu_kernels_usable(all[i]));
    if (hidden("amx")) assert_true(strcmp(best->name, "amx") != 0);
    if (hidden("avx512")) assert_true(strcmp(best->name, "amx") != 0 && strcmp(best->name, "avx512") != 0);
    if (hidden("avx2")) assert_true(!strcmp(best->name, "generic"));
#if defined(__x86_64__)
    /* Each hidden level falls to the next one the hardware has. */
    uint32_t det = f->detected;
    if (hidden("amx") && !hidden("avx512") && (det & TS_CPU_AVX512_VNNI)) assert_true(!strcmp(best->name, "avx512"));
    if (hidden("avx512") && !hidden("avx2") && (det & TS_CPU_AVX2))
        assert_true(!strcmp(best->name, (det & TS_CPU_AVX_VNNI) && !hidden("avx_vnni") ? "avx_vnni" : "avx2"));
#endif
    assert_int_equal(ts_cpu_kernels_select("generic"), 0);
    assert_true(ts_cpu_kernels_active() == &ts_cpu_kernels_generic);
    assert_int_equal(ts_cpu_kernels_select("no-such-isa"), -1);
    assert_true(ts_cpu_kernels_active() == &ts_cpu_kernels_generic);
    assert_int_equal(ts_cpu_kernels_select(NULL), 0);
    assert_true(ts_cpu_kernels_active() == best);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selection_honours_hidden_features),
        cmocka_unit_test(test_act_quantize_identical),
        cmocka_unit_test(test_integer_products_exact),
        cmocka_unit_test(test_integer_products_random_scales),
        cmocka_unit_test(test_float_products),
        cmocka_unit_test(test_vector_helpers),
        cmocka_unit_test(test_attention_tile),
        cmocka_unit_test(test_matmul_driver),
        cmocka_unit_test(test_matmul_multi),
        cmocka_unit_test(test_bf16_reduced_precision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
