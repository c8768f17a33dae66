/* Every CUDA operation against a plain C reference on random inputs of awkward sizes: float32 paths
 * within a relative error of 1e-5, bf16/fp16 paths within 1e-2. Skipped (exit 77) without a GPU. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "backend/cpu/cpu_backend.h"
#include "quant/dequantize.h"
#include "quant/float16.h"
#include "runtime/planner.h"
#include "runtime/sampler.h"
#include "support/testlib.h"

static ts_backend *g_cpu, *g_gpu32, *g_gpu16, *g_gpu16d, *g_gpu16m; /* m: tensor-core 4-bit products at any width */
static ts_backend *g_gpuh, *g_gpu16i; /* fp16; bf16 with the int8 tensor-core batch kernel instead of the bf16 one */
/* bf16 with every batch product in 3 K parts, merged inside thread block clusters where the GPU has them (c) and
 * through global memory (g) */
static ts_backend *g_gpu16c, *g_gpu16g;
static ts_backend *g_gpu16a; /* bf16 with batches' decode attention on the float cores (attn_decode_gqa) */
static uint64_t g_rng = 12345;

static float *dev_from(ts_backend *be, const float *h, size_t n) {
    ts_error err = {{0}};
    float *d = be->ops->alloc(be, n * sizeof(float), &err);
    assert_non_null(d);
    be->ops->from_host(be, d, h, n * sizeof(float));
    return d;
}

static float *host_from(ts_backend *be, const float *d, size_t n) {
    float *h = malloc(n * sizeof(float));
    be->ops->to_host(be, h, d, n * sizeof(float));
    return h;
}

static float *rand_floats(size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = ts_test_randf(&g_rng) * scale;
    return x;
}

static uint16_t rand_scale(float lo, float hi) {
    float u = (ts_test_randf(&g_rng) + 1.0f) * 0.5f;
    return ts_f32_to_f16(lo + u * (hi - lo));
}

/* Random weight bytes of a type: random quants and finite, moderate scales. */
static void *rand_weight(ts_dtype t, int64_t rows, int64_t cols) {
    size_t rb = ts_dtype_row_bytes(t, cols), total = rb * (size_t)rows;
    uint8_t *w = malloc(total);
    for (size_t i = 0; i < total; i++) w[i] = (uint8_t)ts_test_rand(&g_rng);
    int64_t blocks = (int64_t)(total / (size_t)ts_dtype_get(t)->block_bytes);
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t *p = w + (size_t)b * ts_dtype_get(t)->block_bytes;
        switch (t) {
        case TS_DTYPE_F32: {
            float f = ts_test_randf(&g_rng);
            memcpy(p, &f, 4);
            break;
        }
        case TS_DTYPE_F16: {
            uint16_t h = ts_f32_to_f16(ts_test_randf(&g_rng));
            memcpy(p, &h, 2);
            break;
        }
        case TS_DTYPE_BF16: {
            uint16_t h = ts_f32_to_bf16(ts_test_randf(&g_rng));
            memcpy(p, &h, 2);
            break;
        }
        case TS_DTYPE_Q8_0: ((ts_block_q8_0 *)p)->d = rand_scale(0.001f, 0.02f); break;
        case TS_DTYPE_Q4_0:
        case TS_DTYPE_IQ4_NL: ((ts_block_q4_0 *)p)->d = rand_scale(0.01f, 0.2f); break;
        case TS_DTYPE_IQ4_XS: ((ts_block_iq4_xs *)p)->d = rand_scale(0.0005f, 0.01f); break;
        case TS_DTYPE_Q4_1:
            ((ts_block_q4_1 *)p)->d = rand_scale(0.01f, 0.2f);
            ((ts_block_q4_1 *)p)->m = rand_scale(-1.0f, 0.0f);
            break;
        case TS_DTYPE_Q4_K:
            ((ts_block_q4_k *)p)->d = rand_scale(0.001f, 0.01f);
            ((ts_block_q4_k *)p)->dmin = rand_scale(0.001f, 0.01f);
            break;
        case TS_DTYPE_Q5_K:
            ((ts_block_q5_k *)p)->d = rand_scale(0.001f, 0.01f);
            ((ts_block_q5_k *)p)->dmin = rand_scale(0.001f, 0.01f);
            break;
        case TS_DTYPE_Q6_K: ((ts_block_q6_k *)p)->d = rand_scale(0.0005f, 0.004f); break;
        default: break;
        }
    }
    return w;
}

/* A random weight of a type prepared on gpu; *bytes receives its host bytes (the caller frees them). */
static ts_weight prepared_rand_weight(ts_backend *gpu, ts_dtype t, int64_t rows, int64_t cols, void **bytes) {
    *bytes = rand_weight(t, rows, cols);
    ts_weight w = {.dtype = t, .rows = rows, .cols = cols, .host = *bytes, .row_bytes = ts_dtype_row_bytes(t, cols)};
    ts_error err = {{0}};
    if (gpu->ops->prepare_weight(gpu, &w, &err) != 0) fail_msg("%s", err.message);
    return w;
}

/* y[n][rows] in double from the dequantized weight. */
static double *ref_matmul(ts_dtype t, const void *w, int64_t rows, int64_t cols, const float *x, int n, const float *bias) {
    double *y = calloc((size_t)n * rows, sizeof(double));
    float *row = malloc((size_t)cols * sizeof(float));
    size_t rb = ts_dtype_row_bytes(t, cols);
    for (int64_t r = 0; r < rows; r++) {
        ts_dequantize_row(t, (const uint8_t *)w + (size_t)r * rb, row, cols);
        for (int i = 0; i < n; i++) {
            double acc = bias ? bias[r] : 0.0;
            for (int64_t k = 0; k < cols; k++) acc += (double)row[k] * (double)x[(size_t)i * cols + k];
            y[(size_t)i * rows + r] = acc;
        }
    }
    free(row);
    return y;
}

static double rel_err_d(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += b[i] * b[i];
    }
    return isnan(num) ? INFINITY : sqrt(num / (den > 0 ? den : 1));
}

/* y = w x (+ bias) on one backend, copied to the host; y starts as NaN, so rows the product skips show */
static float *matmul_on(ts_backend *gpu, ts_dtype t, const void *wbytes, int64_t rows, int64_t cols, const float *x, int n,
                        const float *bias) {
    ts_weight w = {.dtype = t, .rows = rows, .cols = cols, .host = wbytes, .row_bytes = ts_dtype_row_bytes(t, cols)};
    ts_error err = {{0}};
    if (gpu->ops->prepare_weight(gpu, &w, &err) != 0) fail_msg("%s", err.message);
    float *poison = malloc((size_t)n * rows * sizeof(float));
    for (size_t i = 0; i < (size_t)n * rows; i++) poison[i] = NAN;
    float *dx = dev_from(gpu, x, (size_t)n * cols), *dy = dev_from(gpu, poison, (size_t)n * rows);
    float *dbias = bias ? dev_from(gpu, bias, (size_t)rows) : NULL;
    gpu->ops->matmul(gpu, &w, dx, n, dy, dbias);
    float *y = host_from(gpu, dy, (size_t)n * rows);
    gpu->ops->release_weight(gpu, &w);
    gpu->ops->free(gpu, dx);
    gpu->ops->free(gpu, dy);
    if (dbias) gpu->ops->free(gpu, dbias);
    free(poison);
    return y;
}

static void check_matmul(ts_backend *gpu, ts_dtype t, int64_t rows, int64_t cols, int n, int with_bias, double tol) {
    void *wbytes = rand_weight(t, rows, cols);
    float *x = rand_floats((size_t)n * cols, 1.0f);
    float *bias = with_bias ? rand_floats((size_t)rows, 0.5f) : NULL;
    float *y = matmul_on(gpu, t, wbytes, rows, cols, x, n, bias);
    double *ref = ref_matmul(t, wbytes, rows, cols, x, n, bias);
    double e = rel_err_d(y, ref, (size_t)n * rows);
    if (!(e <= tol))
        fail_msg("%s matmul %lld x %lld with %d tokens%s: relative error %.3g > %g (%s)", ts_dtype_get(t)->name,
                 (long long)rows, (long long)cols, n, with_bias ? " + bias" : "", e, tol, gpu->description);
    free(wbytes);
    free(x);
    free(bias);
    free(y);
    free(ref);
}

static void test_matmul_every_type(void **state) {
    (void)state;
    const ts_dtype types[] = {TS_DTYPE_F32, TS_DTYPE_F16, TS_DTYPE_BF16, TS_DTYPE_Q8_0, TS_DTYPE_Q4_0,
                              TS_DTYPE_Q4_1, TS_DTYPE_Q4_K, TS_DTYPE_Q5_K, TS_DTYPE_Q6_K, TS_DTYPE_IQ4_NL,
                              TS_DTYPE_IQ4_XS};
    const int ns[] = {1, 3, 8, 9, 16, 25, 32, 33};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int64_t cols = ts_dtype_get(types[i])->block_size == 256 ? 768 : 96;
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++) {
            check_matmul(g_gpu32, types[i], 37, cols, ns[j], (int)(j % 2), 1e-5);
            check_matmul(g_gpu16, types[i], 37, cols, ns[j], (int)(j % 2), 1e-2);
            check_matmul(g_gpu16d, types[i], 37, cols, ns[j], (int)(j % 2), 1e-2);
        }
        int64_t wide = ts_dtype_get(types[i])->block_size == 256 ? 2048 : 1056;
        check_matmul(g_gpu32, types[i], 1031, wide, 2, 0, 1e-5);
        /* bf16 decode of 4- and 8-bit weights takes the integer kernel: rows of more groups than a
         * warp has lanes, an odd row count (the last warp's second row is missing), 1..8 tokens in one
         * pass, batches of up to 32 in passes of 16, 8 and the rest */
        for (int n = 1; n <= 8; n += 3) check_matmul(g_gpu16, types[i], 1031, wide, n, n == 4, 1e-2);
        check_matmul(g_gpu16, types[i], 1031, wide, 29, 1, 1e-2);
        for (int n = 1; n <= 32; n += 5) check_matmul(g_gpu16m, types[i], 1031, wide, n, n == 6, 1e-2);
        check_matmul(g_gpu16, types[i], 5, 4096, 1, 0, 1e-2);
        /* prefill-sized batches dequantize for cuBLAS: rows longer than one dequantizing block's run
         * of 1024 elements, ending part way into the next; float rows that are not runs of 8 */
        check_matmul(g_gpu32, types[i], 1031, wide, 40, 1, 1e-5);
        check_matmul(g_gpu16, types[i], 1031, wide, 40, 0, 1e-2);
        if (ts_dtype_get(types[i])->block_size == 1) {
            check_matmul(g_gpu32, types[i], 37, 100, 33, 1, 1e-5);
            check_matmul(g_gpu16, types[i], 37, 100, 33, 0, 1e-2);
        }
    }
}

/* Batches of 4-bit weights on the tensor cores (cuda_batch16.cu and the int8 kernel it replaced): one
 * chunk per K slice, a row count that leaves most of the last block empty, K split across blocks
 * (few rows, long rows), every token count of a tile, bf16 and fp16. */
/* One token and rows of 32 groups or fewer: one group a lane, 2 rows a warp, 4 from 32768 rows (the 0.6B's
 * head); odd row counts leave the last warp part empty. Last in the list, so that the random data of the
 * other tests stays as it was. */
static void test_matmul_narrow_rows(void **state) {
    (void)state;
    const ts_dtype types[] = {TS_DTYPE_Q8_0, TS_DTYPE_Q4_0, TS_DTYPE_Q4_1, TS_DTYPE_IQ4_NL};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        check_matmul(g_gpu16, types[i], 1031, 1024, 1, 1, 1e-2);
        check_matmul(g_gpu16, types[i], 32771, 480, 1, 0, 1e-2);
        check_matmul(g_gpu16, types[i], 37, 64, 1, 0, 1e-2);
    }
}

/* The head of one greedy token (matmul_argmax) on gpu: optionally after a fused output projection, so that
 * the head reads a due norm (x += in . o^T, xn = rmsnorm(x) * g); with pick, in one launch, otherwise as
 * the product and argmax_rows. Returns the logits (host) and the token. */
typedef struct {
    ts_weight *o;                  /* NULL: the head reads xh as it is */
    const float *in, *g;           /* o's input [o->cols], the norm's weight [head->cols] */
} head_input;

static float *greedy_head(ts_backend *gpu, const ts_weight *head, const float *xh, const head_input *via, int pick,
                          int32_t *tok) {
    const int64_t hidden = head->cols, vocab = head->rows;
    ts_error err = {{0}};
    float *dx = dev_from(gpu, xh, (size_t)hidden), *dy = gpu->ops->alloc(gpu, (size_t)vocab * sizeof(float), &err);
    float *din = NULL, *dg = NULL, *dxn = NULL, *dproj = NULL, *head_in = dx;
    assert_non_null(dy);
    if (via) {
        din = dev_from(gpu, via->in, (size_t)via->o->cols);
        dg = dev_from(gpu, via->g, (size_t)hidden);
        dxn = gpu->ops->alloc(gpu, (size_t)hidden * sizeof(float), &err);
        dproj = gpu->ops->alloc(gpu, (size_t)hidden * sizeof(float), &err);
        gpu->ops->matmul_add_rmsnorm(gpu, via->o, din, 1, NULL, dx, dg, 1e-6f, dxn, dproj);
        head_in = dxn;
    }
    if (pick) {
        gpu->ops->matmul_argmax(gpu, head, head_in, 1, dy, tok);
    } else {
        gpu->ops->matmul(gpu, head, head_in, 1, dy, NULL);
        gpu->ops->argmax_rows(gpu, dy, 1, (int)vocab, tok);
    }
    float *y = host_from(gpu, dy, (size_t)vocab);
    float *bufs[] = {dx, dy, din, dg, dxn, dproj};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) gpu->ops->free(gpu, bufs[i]);
    return y;
}

/* The picked head against the product and argmax_rows apart: the same logits bit for bit and the same
 * token, which is ts_argmax of them. */
static void check_greedy_head(const ts_weight *head, const float *xh, const head_input *via, const char *what,
                              int32_t *picked) {
    int32_t t_pick = -1, t_apart = -2;
    float *y_pick = greedy_head(g_gpu16, head, xh, via, 1, &t_pick);
    float *y_apart = greedy_head(g_gpu16, head, xh, via, 0, &t_apart);
    const char *name = ts_dtype_get(head->dtype)->name;
    if (memcmp(y_pick, y_apart, (size_t)head->rows * sizeof(float)) != 0)
        fail_msg("%s head %lld x %lld (%s): the picking product's logits differ from the plain product's", name,
                 (long long)head->rows, (long long)head->cols, what);
    const int32_t want = ts_argmax(y_apart, (int)head->rows);
    if (t_pick != want || t_apart != want)
        fail_msg("%s head %lld x %lld (%s): picked %d, apart %d, host %d", name, (long long)head->rows,
                 (long long)head->cols, what, t_pick, t_apart, want);
    *picked = t_pick;
    free(y_pick);
    free(y_apart);
}

/* The greedy head in one launch (matmul_argmax): heads of rows of 1024 (the narrow kernel, 4 rows a warp)
 * and 2048 (the wide one), of 4- and 8-bit weights and a row count that leaves the last block part empty;
 * reading activations as they are and a fused projection's due norm; launch after launch (the slots and
 * the count reset themselves), a tie across blocks (the lower index wins), and two tokens (the argmax
 * launch). Last in the list, so that the random data of the other tests stays as it was. */
static void test_matmul_argmax(void **state) {
    (void)state;
    const ts_dtype types[] = {TS_DTYPE_Q4_0, TS_DTYPE_Q8_0, TS_DTYPE_Q4_K};
    const int64_t widths[] = {1024, 2048};
    const int64_t vocab = 40003;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t wi = 0; wi < 2; wi++) {
            const int64_t hidden = widths[wi];
            void *hb = NULL, *ob = NULL;
            ts_weight head = prepared_rand_weight(g_gpu16, types[ti], vocab, hidden, &hb);
            ts_weight o = prepared_rand_weight(g_gpu16, types[ti] == TS_DTYPE_Q8_0 ? TS_DTYPE_Q8_0 : TS_DTYPE_Q4_0,
                                               hidden, hidden, &ob);
            float *g = rand_floats((size_t)hidden, 1.0f), *in = rand_floats((size_t)hidden, 1.0f);
            head_input via = {&o, in, g};
            int32_t tok = -1;
            for (int round = 0; round < 3; round++) {
                float *x = rand_floats((size_t)hidden, 1.0f);
                check_greedy_head(&head, x, NULL, "plain activations", &tok);
                check_greedy_head(&head, x, &via, "a due norm", &tok);
                free(x);
            }
            /* the best row copied to row 5: both give the same logit, row 5 (or the best, if lower) wins */
            float *x = rand_floats((size_t)hidden, 1.0f);
            check_greedy_head(&head, x, NULL, "before the tie", &tok);
            g_gpu16->ops->release_weight(g_gpu16, &head);
            memcpy((uint8_t *)hb + 5 * head.row_bytes, (uint8_t *)hb + (size_t)tok * head.row_bytes, head.row_bytes);
            ts_error err = {{0}};
            if (g_gpu16->ops->prepare_weight(g_gpu16, &head, &err) != 0) fail_msg("%s", err.message);
            int32_t tied = -1;
            check_greedy_head(&head, x, NULL, "a tie", &tied);
            assert_int_equal(tied, tok < 5 ? tok : 5);
            /* two tokens: the product, then the argmax launch */
            float *x2 = rand_floats((size_t)(2 * hidden), 1.0f);
            float *dx2 = dev_from(g_gpu16, x2, (size_t)(2 * hidden));
            float *dy2 = g_gpu16->ops->alloc(g_gpu16, (size_t)(2 * vocab) * sizeof(float), &err);
            int32_t two[2];
            g_gpu16->ops->matmul_argmax(g_gpu16, &head, dx2, 2, dy2, two);
            float *y2 = host_from(g_gpu16, dy2, (size_t)(2 * vocab));
            for (int r = 0; r < 2; r++) assert_int_equal(two[r], ts_argmax(y2 + (size_t)r * vocab, (int)vocab));
            g_gpu16->ops->free(g_gpu16, dx2);
            g_gpu16->ops->free(g_gpu16, dy2);
            free(x2);
            free(y2);
            free(x);
            free(g);
            free(in);
            g_gpu16->ops->release_weight(g_gpu16, &head);
            g_gpu16->ops->release_weight(g_gpu16, &o);
            free(hb);
            free(ob);
        }
}

/* The embedding, the first norm and a product reading the norm's output, on g_gpu16: in one launch
 * (embed_rmsnorm) or as the operations apart. x, out and y [n][rows of proj] to the host. */
static void embed_norm_product(const ts_weight *table, const ts_weight *proj, const int32_t *ids, int n,
                               const float *dg, int fused, float **x, float **out, float **y) {
    const size_t hidden = (size_t)table->cols;
    ts_error err = {{0}};
    float *dx = g_gpu16->ops->alloc(g_gpu16, (size_t)n * hidden * sizeof(float), &err);
    float *dxn = g_gpu16->ops->alloc(g_gpu16, (size_t)n * hidden * sizeof(float), &err);
    float *dy = g_gpu16->ops->alloc(g_gpu16, (size_t)n * (size_t)proj->rows * sizeof(float), &err);
    assert_true(dx && dxn && dy);
    if (fused) {
        g_gpu16->ops->embed_rmsnorm(g_gpu16, table, ids, n, dg, 1e-6f, dx, dxn);
    } else {
        g_gpu16->ops->embed(g_gpu16, table, ids, n, dx);
        g_gpu16->ops->rmsnorm(g_gpu16, dx, dg, n, (int)hidden, 1e-6f, dxn);
    }
    g_gpu16->ops->matmul(g_gpu16, proj, dxn, n, dy, NULL);
    *x = host_from(g_gpu16, dx, (size_t)n * hidden);
    *out = host_from(g_gpu16, dxn, (size_t)n * hidden);
    *y = host_from(g_gpu16, dy, (size_t)n * (size_t)proj->rows);
    g_gpu16->ops->free(g_gpu16, dx);
    g_gpu16->ops->free(g_gpu16, dxn);
    g_gpu16->ops->free(g_gpu16, dy);
}

/* The embedding and the first layer's norm in one launch (embed_rmsnorm) against the two operations: the
 * embeddings, the norm's output and a 4-bit product reading it (through the int8 form the launch leaves)
 * bit for bit; tables of float, bf16 and 4- and 8-bit rows 96, 1024 and 4096 wide, decode-sized steps and
 * a prefill-sized one (which takes the two operations). Last in the list, so that the random data of the
 * other tests stays as it was. */
static void test_embed_rmsnorm(void **state) {
    (void)state;
    const ts_dtype types[] = {TS_DTYPE_F32, TS_DTYPE_BF16, TS_DTYPE_Q4_0, TS_DTYPE_Q8_0, TS_DTYPE_Q4_K};
    const int64_t widths[] = {96, 1024, 4096};
    const int ns[] = {1, 3, 40};
    const int64_t vocab = 300;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t wi = 0; wi < 3; wi++) {
            const int64_t hidden = widths[wi];
            if (hidden % ts_dtype_get(types[ti])->block_size != 0) continue;
            void *tb = NULL, *pb = NULL;
            ts_weight table = prepared_rand_weight(g_gpu16, types[ti], vocab, hidden, &tb);
            ts_weight proj = prepared_rand_weight(g_gpu16, TS_DTYPE_Q4_0, 64, hidden, &pb);
            float *g = rand_floats((size_t)hidden, 1.0f), *dg = dev_from(g_gpu16, g, (size_t)hidden);
            for (size_t ni = 0; ni < 3; ni++) {
                const int n = ns[ni];
                int32_t ids[40];
                for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 37 + 5) % vocab);
                float *x[2], *out[2], *y[2];
                for (int fused = 0; fused < 2; fused++)
                    embed_norm_product(&table, &proj, ids, n, dg, fused, &x[fused], &out[fused], &y[fused]);
                const char *what = memcmp(x[0], x[1], (size_t)n * hidden * sizeof(float))        ? "embeddings"
                                   : memcmp(out[0], out[1], (size_t)n * hidden * sizeof(float))  ? "norm outputs"
                                   : memcmp(y[0], y[1], (size_t)n * 64 * sizeof(float))          ? "products of the norm's output"
                                                                                                  : NULL;
                if (what)
                    fail_msg("%s table %lld wide, %d tokens: the %s differ between one launch and two", ts_dtype_get(types[ti])->name,
                             (long long)hidden, n, what);
                for (int k = 0; k < 2; k++) {
                    free(x[k]);
                    free(out[k]);
                    free(y[k]);
                }
            }
            g_gpu16->ops->free(g_gpu16, dg);
            g_gpu16->ops->release_weight(g_gpu16, &table);
            g_gpu16->ops->release_weight(g_gpu16, &proj);
            free(g);
            free(tb);
            free(pb);
        }
}

static void test_batch_tensor_cores(void **state) {
    (void)state;
    const ts_dtype types[] = {TS_DTYPE_Q4_0, TS_DTYPE_Q4_1, TS_DTYPE_Q4_K, TS_DTYPE_IQ4_NL, TS_DTYPE_IQ4_XS};
    const int64_t shapes[][2] = {{37, 512}, {1031, 2048}, {200, 12288}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        for (size_t s = 0; s < 3; s++)
            for (int n = 6; n <= 32; n += 4 + (int)s) {
                check_matmul(g_gpu16, types[i], shapes[s][0], shapes[s][1], n, n % 2, 1e-2);
                if (g_gpuh) check_matmul(g_gpuh, types[i], shapes[s][0], shapes[s][1], n, n % 2, 1e-2);
                if (g_gpu16i) check_matmul(g_gpu16i, types[i], shapes[s][0], shapes[s][1], n, n % 2, 1e-2);
            }
}

/* The batch kernel's K parts merged in a cluster's shared memory and through global memory add in the same
 * order: the results must be the same bits, and both within the batch kernel's tolerance. */
static void test_batch_kpart_merges(void **state) {
    (void)state;
    if (!g_gpu16c || !g_gpu16g) skip();
    const ts_dtype types[] = {TS_DTYPE_Q4_0, TS_DTYPE_Q4_1};
    const int64_t shapes[][2] = {{200, 12288}, {1031, 2048}, {37, 1536}};
    for (size_t i = 0; i < 2; i++)
        for (size_t s = 0; s < 3; s++)
            for (int n = 6; n <= 32; n += 5) {
                int64_t rows = shapes[s][0], cols = shapes[s][1];
                void *wb = rand_weight(types[i], rows, cols);
                float *x = rand_floats((size_t)n * cols, 1.0f);
                float *yc = matmul_on(g_gpu16c, types[i], wb, rows, cols, x, n, NULL);
                float *yg = matmul_on(g_gpu16g, types[i], wb, rows, cols, x, n, NULL);
                double *ref = ref_matmul(types[i], wb, rows, cols, x, n, NULL);
                double ec = rel_err_d(yc, ref, (size_t)n * rows), eg = rel_err_d(yg, ref, (size_t)n * rows);
                if (!(ec <= 1e-2) || !(eg <= 1e-2))
                    fail_msg("%s %lld x %lld, %d tokens, 3 K parts: relative error %.3g (cluster merge), %.3g (global)",
                             ts_dtype_get(types[i])->name, (long long)rows, (long long)cols, n, ec, eg);
                if (memcmp(yc, yg, (size_t)n * rows * sizeof(float)) != 0)
                    fail_msg("%s %lld x %lld, %d tokens: the cluster merge of 3 K parts differs from the global merge",
                             ts_dtype_get(types[i])->name, (long long)rows, (long long)cols, n);
                free(wb);
                free(x);
                free(yc);
                free(yg);
                free(ref);
            }
}

/* Draws on the device against the host's definition (ts_draw_candidates): for each setting, 96 draws
 * of one row with u spread evenly over [0, 1) must each pick the token the host's running weights pick,
 * unless u * total lies within 1e-5 (relative) of a boundary between two tokens (the device sums expf
 * in float, the host exp in double). Rows: random logits over a 152k vocabulary, a small vocabulary,
 * logits rounded to few values (ties at every cut), one with -inf entries, and a 152k row of few values,
 * whose z bins hold more than the kernel gathers (its radix passes and index bisection). */
static void check_draws(const float *raw, int vocab, ts_draw d, const ts_penalty *pen, int n_pen, const char *what) {
    enum { DRAWS = 96 };
    ts_draw draws[DRAWS];
    float *x = malloc((size_t)DRAWS * vocab * sizeof(float)), *z = malloc((size_t)vocab * sizeof(float));
    float *row = malloc((size_t)vocab * sizeof(float));
    int32_t *cand = malloc((size_t)vocab * sizeof(int32_t)), got[DRAWS];
    for (int k = 0; k < DRAWS; k++) {
        memcpy(x + (size_t)k * vocab, raw, (size_t)vocab * sizeof(float));
        draws[k] = d;
        draws[k].u = ((double)k + 0.37) / DRAWS;
        draws[k].pen_first = 0;
        draws[k].pen_count = n_pen;
    }
    /* the host's penalties (runtime/sampler.c apply_penalties) on the reference row */
    memcpy(row, raw, (size_t)vocab * sizeof(float));
    for (int i = 0; i < n_pen; i++) row[pen[i].token] = ts_penalized(row[pen[i].token], d.repetition_penalty, pen[i].sub);
    float *dx = dev_from(g_gpu16, x, (size_t)DRAWS * vocab);
    g_gpu16->ops->sample_rows(g_gpu16, dx, DRAWS, vocab, draws, pen, n_pen, got);
    int greedy = d.temperature <= 0.0f || d.top_k == 1;
    int n = greedy ? 1 : ts_draw_candidates(&d, row, vocab, cand, z);
    if (greedy) cand[0] = ts_argmax(row, vocab);
    double total = 0.0;
    for (int i = 0; i < n; i++) total += greedy ? 1.0 : exp((double)z[cand[i]]);
    for (int k = 0; k < DRAWS; k++) {
        double r = draws[k].u * total, acc = 0.0, near = INFINITY;
        int32_t want = cand[n - 1];
        for (int i = 0; i < n; i++) {
            acc += greedy ? 1.0 : exp((double)z[cand[i]]);
            near = fmin(near, fabs(acc - r));
            if (r < acc) {
                want = cand[i];
                break;
            }
        }
        if (got[k] != want && !(near <= 1e-5 * total))
            fail_msg("%s: draw u=%.4f picked token %d, the host's draw picks %d (%d candidates)", what, draws[k].u,
                     got[k], want, n);
    }
    g_gpu16->ops->free(g_gpu16, dx);
    free(x);
    free(z);
    free(row);
    free(cand);
}

static void test_draw_rows(void **state) {
    (void)state;
    const ts_draw settings[] = {
        {1.0f, 0, 1.0f, 0.0f, 0.0, 1.0f, 0, 0},   {0.7f, 20, 1.0f, 0.0f, 0.0, 1.0f, 0, 0},
        {0.6f, 20, 0.95f, 0.0f, 0.0, 1.0f, 0, 0}, {1.0f, 0, 0.9f, 0.0f, 0.0, 1.0f, 0, 0},
        {1.3f, 0, 1.0f, 0.05f, 0.0, 1.0f, 0, 0},  {0.8f, 200, 0.8f, 0.01f, 0.0, 1.0f, 0, 0},
        {0.0f, 0, 1.0f, 0.0f, 0.0, 1.0f, 0, 0},   {1.0f, 1, 1.0f, 0.0f, 0.0, 1.0f, 0, 0},
        {2.0f, 5000, 0.99f, 0.0f, 0.0, 1.0f, 0, 0},
    };
    /* penalties: 300 distinct tokens, some only in the prompt (sub 0), under a repetition penalty */
    ts_penalty pen[300];
    const int vocabs[5] = {151937, 1000, 4099, 4099, 151937};
    for (int v = 0; v < 5; v++) {
        int vocab = vocabs[v];
        float *row = rand_floats((size_t)vocab, 4.0f);
        if (v == 2 || v == 4)
            for (int i = 0; i < vocab; i++) row[i] = roundf(row[i]); /* 9 distinct values: ties everywhere */
        if (v == 3)
            for (int i = 0; i < vocab; i += 3) row[i] = -INFINITY; /* masked tokens */
        for (size_t s = 0; s < sizeof settings / sizeof settings[0]; s++) {
            char what[96];
            snprintf(what, sizeof what, "row %d (vocab %d), setting %zu", v, vocab, s);
            check_draws(row, vocab, settings[s], NULL, 0, what);
        }
        if (v < 2)
            for (int s = 0; s < 3; s++) {
                ts_draw d = settings[s == 0 ? 6 : s == 1 ? 2 : 0];
                d.repetition_penalty = 1.3f;
                for (int i = 0; i < 300; i++)
                    pen[i] = (ts_penalty){(int32_t)(((int64_t)i * 487) % vocab), i % 4 ? 0.4f + 0.25f * (float)(i % 4) : 0.0f};
                char what[96];
                snprintf(what, sizeof what, "row %d (vocab %d), penalties with setting %d", v, vocab, s);
                check_draws(row, vocab, d, pen, 300, what);
            }
        free(row);
    }
}

/* Device greedy choice against ts_argmax: random rows, rows with ties (the lowest index wins), rows
 * whose maximum sits first or last, and a vocabulary that is not a multiple of the block size. */
static void test_argmax_rows(void **state) {
    (void)state;
    const int rows = 7, dim = 151937;
    float *x = rand_floats((size_t)rows * dim, 10.0f);
    x[(size_t)1 * dim + 500] = 50.0f;
    x[(size_t)1 * dim + 90000] = 50.0f;
    x[(size_t)1 * dim + 7] = 50.0f;
    x[(size_t)2 * dim + 0] = 99.0f;
    x[(size_t)3 * dim + dim - 1] = 99.0f;
    for (int i = 0; i < dim; i++) x[(size_t)4 * dim + i] = -1.0f; /* all equal: index 0 */
    x[(size_t)5 * dim + 1023] = 70.0f;
    x[(size_t)5 * dim + 1024] = 70.0f;
    float *d = dev_from(g_gpu16, x, (size_t)rows * dim);
    int32_t got[7];
    g_gpu16->ops->argmax_rows(g_gpu16, d, rows, dim, got);
    for (int r = 0; r < rows; r++) {
        int32_t want = ts_argmax(x + (size_t)r * dim, dim);
        if (got[r] != want) fail_msg("argmax row %d: device %d, host %d", r, got[r], want);
    }
    assert_int_equal(got[1], 7);
    assert_int_equal(got[4], 0);
    assert_int_equal(got[5], 1023);
    g_gpu16->ops->free(g_gpu16, d);
    free(x);
    /* a batch wider than the host's stack buffer, all values negative */
    const int wide = 70, small = 1000;
    x = rand_floats((size_t)wide * small, 1.0f);
    for (size_t i = 0; i < (size_t)wide * small; i++) x[i] = -2.0f - fabsf(x[i]);
    d = dev_from(g_gpu16, x, (size_t)wide * small);
    int32_t many[70];
    g_gpu16->ops->argmax_rows(g_gpu16, d, wide, small, many);
    for (int r = 0; r < wide; r++)
        if (many[r] != ts_argmax(x + (size_t)r * small, small))
            fail_msg("argmax row %d of %d: device %d, host %d", r, wide, many[r], ts_argmax(x + (size_t)r * small, small));
    g_gpu16->ops->free(g_gpu16, d);
    free(x);
}

static void compare_vs_cpu(ts_backend *gpu, const char *what, const float *dgpu, const float *hcpu, size_t n, double tol) {
    float *g = host_from(gpu, dgpu, n);
    double e = ts_test_rel_l2(g, hcpu, n);
    if (!(e <= tol)) fail_msg("%s: relative error %.3g > %g", what, e, tol);
    free(g);
}

static void test_norms_and_activations(void **state) {
    (void)state;
    const int rows = 7, dim = 333;
    size_t n = (size_t)rows * dim;
    float *x = rand_floats(n, 2.0f), *w = rand_floats(dim, 1.0f), *b = rand_floats(dim, 1.0f);
    float *out = malloc(n * sizeof(float)), *y = rand_floats(n, 1.0f);
    ts_backend *gpu = g_gpu32;
    float *dx = dev_from(gpu, x, n), *dw = dev_from(gpu, w, dim), *db = dev_from(gpu, b, dim), *dout = dev_from(gpu, x, n);
    float *dy = dev_from(gpu, y, n);

    g_cpu->ops->rmsnorm(g_cpu, x, w, rows, dim, 1e-6f, out);
    gpu->ops->rmsnorm(gpu, dx, dw, rows, dim, 1e-6f, dout);
    compare_vs_cpu(gpu, "rmsnorm", dout, out, n, 1e-5);

    g_cpu->ops->layernorm(g_cpu, x, w, b, rows, dim, 1e-5f, out);
    gpu->ops->layernorm(gpu, dx, dw, db, rows, dim, 1e-5f, dout);
    compare_vs_cpu(gpu, "layernorm", dout, out, n, 1e-5);

    g_cpu->ops->silu_mul(g_cpu, x, y, rows, dim, dim, out);
    gpu->ops->silu_mul(gpu, dx, dy, rows, dim, dim, dout);
    compare_vs_cpu(gpu, "silu_mul", dout, out, n, 1e-5);

    for (int approx = 0; approx < 2; approx++) {
        memcpy(out, x, n * sizeof(float));
        g_cpu->ops->gelu(g_cpu, out, n, approx);
        gpu->ops->from_host(gpu, dout, x, n * sizeof(float));
        gpu->ops->gelu(gpu, dout, n, approx);
        compare_vs_cpu(gpu, approx ? "gelu (tanh)" : "gelu", dout, out, n, 1e-5);
    }

    memcpy(out, x, n * sizeof(float));
    g_cpu->ops->add(g_cpu, out, y, n);
    gpu->ops->from_host(gpu, dout, x, n * sizeof(float));
    gpu->ops->add(gpu, dout, dy, n);
    compare_vs_cpu(gpu, "add", dout, out, n, 1e-6);

    /* prefill-sized batches take the wide kernels: runs of 4, a last run part way into a block's
     * stride, and rows longer than a thread holds in registers */
    const int wide_dims[2] = {1028, 5000}, wide_rows = 40;
    for (int di = 0; di < 2; di++) {
        const int d = wide_dims[di];
        size_t wn = (size_t)wide_rows * d;
        float *wx = rand_floats(wn, 2.0f), *wy = rand_floats(wn, 1.0f), *ww = rand_floats((size_t)d, 1.0f);
        float *wout = malloc(wn * sizeof(float));
        ts_backend *gpus[2] = {g_gpu32, g_gpu16};
        for (int gi = 0; gi < 2; gi++) {
            ts_backend *g = gpus[gi];
            float *gx = dev_from(g, wx, wn), *gy = dev_from(g, wy, wn), *gw = dev_from(g, ww, (size_t)d), *go = dev_from(g, wx, wn);
            char what[64];
            g_cpu->ops->rmsnorm(g_cpu, wx, ww, wide_rows, d, 1e-6f, wout);
            g->ops->rmsnorm(g, gx, gw, wide_rows, d, 1e-6f, go);
            snprintf(what, sizeof what, "rmsnorm of %d rows of %d", wide_rows, d);
            compare_vs_cpu(g, what, go, wout, wn, 1e-5);
            g_cpu->ops->silu_mul(g_cpu, wx, wy, wide_rows, d, d, wout);
            g->ops->silu_mul(g, gx, gy, wide_rows, d, d, go);
            snprintf(what, sizeof what, "silu_mul of %d rows of %d", wide_rows, d);
            compare_vs_cpu(g, what, go, wout, wn, 1e-5);
            float *cx = malloc(wn * sizeof(float));
            memcpy(cx, wx, wn * sizeof(float));
            g_cpu->ops->add(g_cpu, cx, wy, wn); /* the CPU backend leaves add_rmsnorm to model/fused.c */
            g_cpu->ops->rmsnorm(g_cpu, cx, ww, wide_rows, d, 1e-6f, wout);
            g->ops->add_rmsnorm(g, gx, gy, gw, wide_rows, d, 1e-6f, go);
            snprintf(what, sizeof what, "add_rmsnorm of %d rows of %d", wide_rows, d);
            compare_vs_cpu(g, what, go, wout, wn, 1e-5);
            snprintf(what, sizeof what, "add_rmsnorm's residual, %d rows of %d", wide_rows, d);
            compare_vs_cpu(g, what, gx, cx, wn, 1e-6);
            free(cx);
            g->ops->free(g, gx);
            g->ops->free(g, gy);
            g->ops->free(g, gw);
            g->ops->free(g, go);
        }
        free(wx);
        free(wy);
        free(ww);
        free(wout);
    }

    int32_t rowsel[4] = {6, 0, 3, 3};
    g_cpu->ops->gather_rows(g_cpu, x, rowsel, 4, dim, out);
    gpu->ops->gather_rows(gpu, dx, rowsel, 4, dim, dout);
    compare_vs_cpu(gpu, "gather_rows", dout, out, 4 * (size_t)dim, 0);

    gpu->ops->free(gpu, dx);
    gpu->ops->free(gpu, dw);
    gpu->ops->free(gpu, db);
    gpu->ops->free(gpu, dout);
    gpu->ops->free(gpu, dy);
    free(x);
    free(w);
    free(b);
    free(out);
    free(y);
}

static void test_rope(void **state) {
    (void)state;
    const int n = 5, heads = 3, hd = 48, stride = heads * hd + 16;
    float inv[24];
    for (int i = 0; i < hd / 2; i++) inv[i] = 1.0f / powf(1e6f, (float)(2 * i) / hd);
    ts_rope rope = {hd, inv, 1.0f};
    int32_t pos[5] = {0, 1, 17, 999, 40000};
    float *x = rand_floats((size_t)n * stride, 1.0f);
    float *dx = dev_from(g_gpu32, x, (size_t)n * stride);
    g_cpu->ops->rope(g_cpu, x, n, heads, stride, pos, &rope);
    g_gpu32->ops->rope(g_gpu32, dx, n, heads, stride, pos, &rope);
    compare_vs_cpu(g_gpu32, "rope", dx, x, (size_t)n * stride, 1e-5);
    g_gpu32->ops->free(g_gpu32, dx);
    free(x);
}

/* The fused operations against the unfused CPU sequence they replace. */
static void check_matmul_many(ts_backend *gpu, const ts_dtype *types, const int64_t *rows, int count, int64_t cols, int n,
                              double tol) {
    void *wb[3];
    ts_weight w[3];
    const ts_weight *wp[3];
    float *dy[3], *db[3], *bias[3];
    ts_error err = {{0}};
    float *x = rand_floats((size_t)n * cols, 1.0f), *dx = dev_from(gpu, x, (size_t)n * cols);
    for (int k = 0; k < count; k++) {
        wb[k] = rand_weight(types[k], rows[k], cols);
        w[k] = (ts_weight){.dtype = types[k], .rows = rows[k], .cols = cols, .host = wb[k],
                           .row_bytes = ts_dtype_row_bytes(types[k], cols)};
        if (gpu->ops->prepare_weight(gpu, &w[k], &err) != 0) fail_msg("%s", err.message);
        wp[k] = &w[k];
        bias[k] = k == 1 ? NULL : rand_floats((size_t)rows[k], 0.5f);
        db[k] = bias[k] ? dev_from(gpu, bias[k], (size_t)rows[k]) : NULL;
        float *zero = calloc((size_t)n * rows[k], sizeof(float));
        dy[k] = dev_from(gpu, zero, (size_t)n * rows[k]);
        free(zero);
    }
    gpu->ops->matmul_many(gpu, count, wp, dx, n, dy, (const float *const *)db);
    for (int k = 0; k < count; k++) {
        float *y = host_from(gpu, dy[k], (size_t)n * rows[k]);
        double *ref = ref_matmul(types[k], wb[k], rows[k], cols, x, n, bias[k]);
        double e = rel_err_d(y, ref, (size_t)n * rows[k]);
        if (!(e <= tol))
            fail_msg("matmul_many weight %d of %d (%s, %lld x %lld, %d tokens): relative error %.3g > %g (%s)", k, count,
                     ts_dtype_get(types[k])->name, (long long)rows[k], (long long)cols, n, e, tol, gpu->description);
        free(y);
        free(ref);
        gpu->ops->release_weight(gpu, &w[k]);
        gpu->ops->free(gpu, dy[k]);
        if (db[k]) gpu->ops->free(gpu, db[k]);
        free(bias[k]);
        free(wb[k]);
    }
    gpu->ops->free(gpu, dx);
    free(x);
}

static void test_fused_ops(void **state) {
    (void)state;
    /* q, k, v shapes in one launch; a mixed-type group runs one product after another */
    const int64_t rows[3] = {1031, 64, 37};
    const ts_dtype same[3][3] = {{TS_DTYPE_Q4_0, TS_DTYPE_Q4_0, TS_DTYPE_Q4_0},
                                 {TS_DTYPE_Q4_K, TS_DTYPE_Q4_K, TS_DTYPE_Q4_K},
                                 {TS_DTYPE_Q8_0, TS_DTYPE_Q8_0, TS_DTYPE_Q8_0}};
    const ts_dtype mixed[3] = {TS_DTYPE_Q4_0, TS_DTYPE_Q8_0, TS_DTYPE_BF16};
    for (int t = 0; t < 3; t++)
        for (int n = 1; n <= 8; n += 7) {
            int64_t cols = t == 1 ? 1024 : 1056;
            check_matmul_many(g_gpu16, same[t], rows, 3, cols, n, 1e-2);
            check_matmul_many(g_gpu16, same[t], rows, 2, cols, n, 1e-2);
            check_matmul_many(g_gpu16m, same[t], rows, 3, cols, n, 1e-2);
            check_matmul_many(g_gpu32, same[t], rows, 3, cols, n, 1e-5);
        }
    check_matmul_many(g_gpu16, mixed, rows, 3, 1056, 2, 1e-2);
    check_matmul_many(g_gpu16, same[0], rows, 3, 1056, 12, 1e-2); /* a batch: passes of 8 and 4 */
    check_matmul_many(g_gpu16, same[0], rows, 3, 1056, 40, 1e-2); /* a wider batch: cuBLAS */

    /* residual add + RMSNorm and RMSNorm: both the updated residual and the normalized output, twice, rows
     * narrower than a block, of one and of several elements a thread */
    const int norm_shapes[4][2] = {{5, 1000}, {1, 4096}, {8, 1024}, {12, 1024}};
    for (int sh = 0; sh < 4; sh++) {
        const int r = norm_shapes[sh][0], dim = norm_shapes[sh][1];
        float *x = rand_floats((size_t)r * dim, 2.0f), *y = rand_floats((size_t)r * dim, 1.0f), *w = rand_floats(dim, 1.0f);
        float *out = malloc((size_t)r * dim * sizeof(float));
        float *dx = dev_from(g_gpu32, x, (size_t)r * dim), *dy = dev_from(g_gpu32, y, (size_t)r * dim);
        float *dw = dev_from(g_gpu32, w, dim), *dout = dev_from(g_gpu32, x, (size_t)r * dim);
        for (int rep = 0; rep < 2; rep++) {
            g_cpu->ops->add(g_cpu, x, y, (size_t)r * dim);
            g_cpu->ops->rmsnorm(g_cpu, x, w, r, dim, 1e-6f, out);
            g_gpu32->ops->add_rmsnorm(g_gpu32, dx, dy, dw, r, dim, 1e-6f, dout);
            compare_vs_cpu(g_gpu32, "add_rmsnorm residual", dx, x, (size_t)r * dim, 1e-6);
            compare_vs_cpu(g_gpu32, "add_rmsnorm output", dout, out, (size_t)r * dim, 1e-5);
            g_cpu->ops->rmsnorm(g_cpu, x, w, r, dim, 1e-6f, out);
            g_gpu32->ops->rmsnorm(g_gpu32, dx, dw, r, dim, 1e-6f, dout);
            compare_vs_cpu(g_gpu32, "rmsnorm output", dout, out, (size_t)r * dim, 1e-5);
        }
        g_gpu32->ops->free(g_gpu32, dx);
        g_gpu32->ops->free(g_gpu32, dy);
        g_gpu32->ops->free(g_gpu32, dw);
        g_gpu32->ops->free(g_gpu32, dout);
        free(x);
        free(y);
        free(w);
        free(out);
    }

    /* per-head norm + RoPE of q and k in one launch: 5 query heads (a partial block of warps) and 2 key
     * heads, rows of their own widths, head_dim 128 (two pairs per lane) and 48; rope alone */
    const int n = 3, heads = 5, kv_heads = 2;
    int32_t pos[3] = {0, 77, 4000};
    for (int with_norm = 0; with_norm < 2; with_norm++)
        for (int hd = 48; hd <= 128; hd += 80) {
            float inv[64];
            for (int i = 0; i < hd / 2; i++) inv[i] = 1.0f / powf(1e6f, (float)(2 * i) / (float)hd);
            ts_rope rope = {hd, inv, 1.0f};
            size_t cnt = (size_t)n * heads * hd, kcnt = (size_t)n * kv_heads * hd;
            float *q = rand_floats(cnt, 3.0f), *k = rand_floats(kcnt, 3.0f), *nw = rand_floats((size_t)hd, 1.0f),
                  *knw = rand_floats((size_t)hd, 1.0f);
            float *dq = dev_from(g_gpu32, q, cnt), *dk = dev_from(g_gpu32, k, kcnt), *dnw = dev_from(g_gpu32, nw, (size_t)hd),
                  *dknw = dev_from(g_gpu32, knw, (size_t)hd);
            if (with_norm) {
                g_cpu->ops->rmsnorm(g_cpu, q, nw, n * heads, hd, 1e-6f, q);
                g_cpu->ops->rmsnorm(g_cpu, k, knw, n * kv_heads, hd, 1e-6f, k);
            }
            g_cpu->ops->rope(g_cpu, q, n, heads, heads * hd, pos, &rope);
            g_cpu->ops->rope(g_cpu, k, n, kv_heads, kv_heads * hd, pos, &rope);
            const ts_rope_heads qh = {dq, heads, heads * hd, with_norm ? dnw : NULL},
                                kh = {dk, kv_heads, kv_heads * hd, with_norm ? dknw : NULL};
            g_gpu32->ops->qk_norm_rope(g_gpu32, &qh, &kh, n, 1e-6f, pos, &rope);
            compare_vs_cpu(g_gpu32, with_norm ? "qk_norm_rope q" : "qk_norm_rope q without a norm", dq, q, cnt, 1e-5);
            compare_vs_cpu(g_gpu32, with_norm ? "qk_norm_rope k" : "qk_norm_rope k without a norm", dk, k, kcnt, 1e-5);
            g_cpu->ops->rope(g_cpu, q, n, heads, heads * hd, pos, &rope);
            g_gpu32->ops->rope(g_gpu32, dq, n, heads, heads * hd, pos, &rope);
            compare_vs_cpu(g_gpu32, "rope", dq, q, cnt, 1e-5);
            g_gpu32->ops->free(g_gpu32, dq);
            g_gpu32->ops->free(g_gpu32, dk);
            g_gpu32->ops->free(g_gpu32, dnw);
            g_gpu32->ops->free(g_gpu32, dknw);
            free(q);
            free(k);
            free(nw);
            free(knw);
        }
}

/* Producers of activations (norms, SiLU-gate, attention) may leave their int8 form for the next integer
 * product (bf16/fp16 only). A probe multiplies the activations by a random weight right after the
 * producer, then again after an operation that forgets the int8 form: both must be bit-identical. */
typedef struct probe {
    ts_weight w;
    void *bytes;
    float *dy;
    size_t ny;
} probe;

static void probe_init(ts_backend *gpu, probe *p, ts_dtype t, int64_t cols, int n) {
    const int64_t rows = 40;
    p->bytes = rand_weight(t, rows, cols);
    p->w = (ts_weight){.dtype = t, .rows = rows, .cols = cols, .host = p->bytes, .row_bytes = ts_dtype_row_bytes(t, cols)};
    ts_error err = {{0}};
    if (gpu->ops->prepare_weight(gpu, &p->w, &err) != 0) fail_msg("%s", err.message);
    p->ny = (size_t)n * rows;
    float *zero = calloc(p->ny, sizeof(float));
    p->dy = dev_from(gpu, zero, p->ny);
    free(zero);
}

static void probe_check(ts_backend *gpu, probe *p, const float *dx, int n, const char *what) {
    gpu->ops->matmul(gpu, &p->w, dx, n, p->dy, NULL);
    float *first = host_from(gpu, p->dy, p->ny);
    float *nan = malloc(p->ny * sizeof(float));
    for (size_t i = 0; i < p->ny; i++) nan[i] = NAN;
    gpu->ops->from_host(gpu, p->dy, nan, p->ny * sizeof(float)); /* any operation forgets the int8 form */
    gpu->ops->matmul(gpu, &p->w, dx, n, p->dy, NULL);
    float *again = host_from(gpu, p->dy, p->ny);
    for (size_t i = 0; i < p->ny; i++)
        if (memcmp(&first[i], &again[i], sizeof(float)) != 0)
            fail_msg("%s then a %s product: element %zu is %.9g with the producer's int8 form, %.9g when requantized (%s)",
                     what, ts_dtype_get(p->w.dtype)->name, i, first[i], again[i], gpu->description);
    free(first);
    free(again);
    free(nan);
}

static void probe_free(ts_backend *gpu, probe *p) {
    gpu->ops->release_weight(gpu, &p->w);
    gpu->ops->free(gpu, p->dy);
    free(p->bytes);
}

/* One attention step's random queries, keys and values on the host and on the GPU, and the CPU's output. */
typedef struct attn_inputs {
    float *q, *k, *v, *out;     /* host */
    float *dq, *dk, *dv, *dout; /* device; dout starts as a copy of q */
} attn_inputs;

static void attn_inputs_init(ts_backend *gpu, attn_inputs *a, size_t qn, size_t kn) {
    a->q = rand_floats(qn, 1.0f);
    a->k = rand_floats(kn, 1.0f);
    a->v = rand_floats(kn, 1.0f);
    a->out = malloc(qn * sizeof(float));
    a->dq = dev_from(gpu, a->q, qn);
    a->dk = dev_from(gpu, a->k, kn);
    a->dv = dev_from(gpu, a->v, kn);
    a->dout = dev_from(gpu, a->q, qn);
}

static void attn_inputs_free(ts_backend *gpu, attn_inputs *a) {
    free(a->q);
    free(a->k);
    free(a->v);
    free(a->out);
    gpu->ops->free(gpu, a->dq);
    gpu->ops->free(gpu, a->dk);
    gpu->ops->free(gpu, a->dv);
    gpu->ops->free(gpu, a->dout);
}

/* The host's reference for rope_attention's first half, in place: q and k of n tokens normalized per head by
 * qn / kn where given, then rotated. */
static void cpu_qk_norm_rope(attn_inputs *a, int n, int n_heads, int n_kv, int hd, const float *qn, const float *kn,
                             const int32_t *positions, const ts_rope *rope) {
    if (qn) g_cpu->ops->rmsnorm(g_cpu, a->q, qn, n * n_heads, hd, 1e-6f, a->q);
    if (kn) g_cpu->ops->rmsnorm(g_cpu, a->k, kn, n * n_kv, hd, 1e-6f, a->k);
    g_cpu->ops->rope(g_cpu, a->q, n, n_heads, n_heads * hd, positions, rope);
    g_cpu->ops->rope(g_cpu, a->k, n, n_kv, n_kv * hd, positions, rope);
}

/* One step of na tokens of sequence a from position start_a, then nb of sequence b from start_b (with
 * nb 0, a step of sequence a alone), each with its block table of nblk blocks. step points into the
 * struct's arrays: the struct must outlive every use of step. */
typedef struct two_seq_step {
    ts_seq_view views[2];
    int32_t tokens[160], positions[160];
    ts_step step;
} two_seq_step;

static void two_seq_step_init(two_seq_step *s, int na, int nb, int start_a, int start_b, int nblk, int32_t *blocks_a,
                              int32_t *blocks_b) {
    int n = na + nb;
    assert_true(n <= 160);
    s->views[0] = (ts_seq_view){0, na, start_a, nblk, blocks_a};
    s->views[1] = (ts_seq_view){na, nb, start_b, nblk, blocks_b};
    for (int i = 0; i < n; i++) {
        s->tokens[i] = i;
        s->positions[i] = i < na ? start_a + i : start_b + i - na;
    }
    s->step = (ts_step){n, s->tokens, s->positions, nb > 0 ? 2 : 1, s->views, 0, NULL, NULL};
}

/* Attention over two sequences with shuffled block tables, against the CPU backend: a prefill long
 * enough for several split-K splits per decode token, pure decode steps (the kernel stores the step's
 * keys and values itself), a step that mixes a decode token with a prefill chunk, and single-token
 * steps of one sequence (on sm_90 their splits merge inside a thread block cluster). */
static void check_attention(ts_backend *gpu, int hd, double tol) {
    const int n_heads = 6, n_kv = 2, bt = 4, layers = 2, nblk = 48;
    ts_kv_layout l = {layers, n_kv, hd, bt, 2 * nblk + 4};
    ts_error err = {{0}};
    ts_kv_store *kc = g_cpu->ops->kv_create(g_cpu, &l, &err), *kg = gpu->ops->kv_create(gpu, &l, &err);
    assert_non_null(kc);
    assert_non_null(kg);
    int32_t blocks_a[48], blocks_b[48];
    for (int i = 0; i < nblk; i++) {
        blocks_a[i] = 2 * nblk + 3 - 2 * i;
        blocks_b[i] = 2 * i;
    }
    static const int plan[][2] = {{150, 6}, {1, 1}, {1, 5}, {1, 1}, {1, 1}, {1, 0}, {1, 0}};
    int start_a = 0, start_b = 0;
    for (int stepno = 0; stepno < (int)(sizeof plan / sizeof plan[0]); stepno++) {
        int na = plan[stepno][0], nb = plan[stepno][1], n = na + nb;
        two_seq_step seqs;
        two_seq_step_init(&seqs, na, nb, start_a, start_b, nblk, blocks_a, blocks_b);
        ts_step step = seqs.step;
        size_t qn = (size_t)n * n_heads * hd, kn = (size_t)n * n_kv * hd;
        attn_inputs a;
        attn_inputs_init(gpu, &a, qn, kn);
        for (int layer = 0; layer < layers; layer++) {
            probe pr;
            probe_init(gpu, &pr, layer ? TS_DTYPE_Q8_0 : TS_DTYPE_Q4_0, (int64_t)n_heads * hd, n);
            g_cpu->ops->attention(g_cpu, kc, layer, &step, a.q, n_heads * hd, a.k, a.v, n_kv * hd, n_heads, 0.158f, a.out);
            gpu->ops->begin_step(gpu, &step);
            gpu->ops->attention(gpu, kg, layer, &step, a.dq, n_heads * hd, a.dk, a.dv, n_kv * hd, n_heads, 0.158f, a.dout);
            char what[96];
            snprintf(what, sizeof what, "attention (head_dim %d) step %d layer %d", hd, stepno, layer);
            probe_check(gpu, &pr, a.dout, n, what); /* prefill steps: the bf16 copy the kernel writes */
            compare_vs_cpu(gpu, what, a.dout, a.out, qn, tol);
            gpu->ops->sync(gpu);
            probe_free(gpu, &pr);
        }
        start_a += na;
        start_b += nb;
        attn_inputs_free(gpu, &a);
    }
    g_cpu->ops->kv_destroy(g_cpu, kc);
    gpu->ops->kv_destroy(gpu, kg);
}

/* Decode attention for batches (the GQA kernels take 8 or more decode tokens): ten sequences prefilled
 * to different lengths in one step, then pure decode steps; long prefills give several split-K splits
 * per token, short ones a single split. Cache blocks of bt positions (a power of two or not: the kernels
 * find rows with a shift or a division). With rope (1: RoPE, 2: per-head norms and RoPE) the steps go
 * through rope_attention, whose decode steps the tensor-core kernel rotates itself. Against the CPU
 * backend. */
enum { NO_ROPE, ROPE, NORM_ROPE };
static void check_attention_batch(ts_backend *gpu, int hd, int group, int prefill_base, int bt, int rope, double tol) {
    enum { S = 10, NBLK = 64 };
    const int n_kv = 2, n_heads = n_kv * group;
    float inv[128];
    for (int i = 0; i < hd / 2; i++) inv[i] = 1.0f / powf(1e6f, (float)(2 * i) / (float)hd);
    const ts_rope rp = {hd, inv, 1.0f};
    /* (drawn only with rope: the other tests' random data stay those they were tuned on) */
    float *qn = rope != NO_ROPE ? rand_floats((size_t)hd, 1.0f) : NULL, *kn = rope != NO_ROPE ? rand_floats((size_t)hd, 1.0f) : NULL;
    float *dqn = qn ? dev_from(gpu, qn, (size_t)hd) : NULL, *dkn = kn ? dev_from(gpu, kn, (size_t)hd) : NULL;
    ts_kv_layout l = {1, n_kv, hd, bt, S * NBLK};
    ts_error err = {{0}};
    ts_kv_store *kc = g_cpu->ops->kv_create(g_cpu, &l, &err), *kg = gpu->ops->kv_create(gpu, &l, &err);
    assert_non_null(kc);
    assert_non_null(kg);
    static int32_t blocks[S][NBLK];
    for (int i = 0; i < S; i++)
        for (int j = 0; j < NBLK; j++) blocks[i][j] = (NBLK - 1 - j) * S + i; /* interleaved, reversed */
    int start[S] = {0};
    for (int stepno = 0; stepno < 4; stepno++) {
        ts_seq_view views[S];
        int n = 0;
        for (int i = 0; i < S; i++) {
            int len = stepno == 0 ? prefill_base + (prefill_base / 8 + 1) * i : 1;
            views[i] = (ts_seq_view){n, len, start[i], NBLK, blocks[i]};
            n += len;
        }
        int32_t *tokens = malloc((size_t)n * sizeof(int32_t)), *positions = malloc((size_t)n * sizeof(int32_t));
        for (int i = 0; i < S; i++)
            for (int j = 0; j < views[i].n_tokens; j++) {
                tokens[views[i].first_token + j] = j;
                positions[views[i].first_token + j] = start[i] + j;
            }
        ts_step step = {n, tokens, positions, S, views, 0, NULL, NULL};
        size_t qcount = (size_t)n * n_heads * hd, kcount = (size_t)n * n_kv * hd;
        attn_inputs a;
        attn_inputs_init(gpu, &a, qcount, kcount);
        if (rope != NO_ROPE)
            cpu_qk_norm_rope(&a, n, n_heads, n_kv, hd, rope == NORM_ROPE ? qn : NULL, rope == NORM_ROPE ? kn : NULL,
                             positions, &rp);
        g_cpu->ops->attention(g_cpu, kc, 0, &step, a.q, n_heads * hd, a.k, a.v, n_kv * hd, n_heads, 0.158f, a.out);
        probe pr; /* decode steps: the output's copy for the next product (int8, or the batch kernel's order) */
        if (n <= 32) probe_init(gpu, &pr, TS_DTYPE_Q4_0, (int64_t)n_heads * hd, n);
        gpu->ops->begin_step(gpu, &step);
        if (rope != NO_ROPE) {
            const ts_rope_heads qh = {a.dq, n_heads, n_heads * hd, rope == NORM_ROPE ? dqn : NULL},
                                kh = {a.dk, n_kv, n_kv * hd, rope == NORM_ROPE ? dkn : NULL};
            gpu->ops->rope_attention(gpu, kg, 0, &step, &qh, &kh, a.dv, n_heads, 0.158f, 1e-6f, positions, &rp, a.dout);
        } else {
            gpu->ops->attention(gpu, kg, 0, &step, a.dq, n_heads * hd, a.dk, a.dv, n_kv * hd, n_heads, 0.158f, a.dout);
        }
        char what[160];
        snprintf(what, sizeof what, "batch attention (head_dim %d, %d heads per KV head, prefill %d, blocks of %d%s) step %d",
                 hd, group, prefill_base, bt, rope == NORM_ROPE ? ", norms and RoPE" : rope == ROPE ? ", RoPE" : "", stepno);
        if (n <= 32) {
            probe_check(gpu, &pr, a.dout, n, what);
            probe_free(gpu, &pr);
        }
        compare_vs_cpu(gpu, what, a.dout, a.out, qcount, tol);
        gpu->ops->sync(gpu);
        for (int i = 0; i < S; i++) start[i] += views[i].n_tokens;
        free(tokens);
        free(positions);
        attn_inputs_free(gpu, &a);
    }
    if (dqn) gpu->ops->free(gpu, dqn);
    if (dkn) gpu->ops->free(gpu, dkn);
    free(qn);
    free(kn);
    g_cpu->ops->kv_destroy(g_cpu, kc);
    gpu->ops->kv_destroy(gpu, kg);
}

/* x += in . w^T + bias and out = rmsnorm(x) * nw (the fused output projection), then `reader` reads out:
 * a product of two weights of type reader_type, or (reader_type F32) the host, or a second product
 * that reads out after the first. Residual, norm output and the reader's results against double. */
enum { READ_BY_PRODUCT, READ_BY_HOST, READ_TWICE };
static void check_fused_projection(ts_backend *gpu, ts_dtype t, int64_t rows, int64_t cols, int n, ts_dtype reader_type,
                                   int reader, double tol) {
    ts_error err = {{0}};
    void *wb = rand_weight(t, rows, cols);
    ts_weight w = {.dtype = t, .rows = rows, .cols = cols, .host = wb, .row_bytes = ts_dtype_row_bytes(t, cols)};
    if (gpu->ops->prepare_weight(gpu, &w, &err) != 0) fail_msg("%s", err.message);
    const int64_t rrows[2] = {96, 40};
    void *rb[2];
    ts_weight rw[2];
    const ts_weight *rwp[2];
    for (int k = 0; k < 2; k++) {
        rb[k] = rand_weight(reader_type, rrows[k], rows);
        rw[k] = (ts_weight){.dtype = reader_type, .rows = rrows[k], .cols = rows, .host = rb[k],
                            .row_bytes = ts_dtype_row_bytes(reader_type, rows)};
        if (gpu->ops->prepare_weight(gpu, &rw[k], &err) != 0) fail_msg("%s", err.message);
        rwp[k] = &rw[k];
    }
    float *in = rand_floats((size_t)n * cols, 1.0f), *x = rand_floats((size_t)n * rows, 2.0f);
    float *bias = rand_floats((size_t)rows, 0.5f), *nw = rand_floats((size_t)rows, 1.0f);
    float *din = dev_from(gpu, in, (size_t)n * cols), *dx = dev_from(gpu, x, (size_t)n * rows);
    float *dbias = dev_from(gpu, bias, (size_t)rows), *dnw = dev_from(gpu, nw, (size_t)rows);
    float *dout = dev_from(gpu, x, (size_t)n * rows), *dproj = dev_from(gpu, x, (size_t)n * rows);
    float *dy0 = dev_from(gpu, in, (size_t)n * rrows[0]), *dy1 = dev_from(gpu, in, (size_t)n * rrows[1]);
    float *const dys[2] = {dy0, dy1};

    gpu->ops->matmul_add_rmsnorm(gpu, &w, din, n, dbias, dx, dnw, 1e-6f, dout, dproj);
    if (reader == READ_BY_PRODUCT || reader == READ_TWICE) gpu->ops->matmul_many(gpu, 2, rwp, dout, n, dys, NULL);
    if (reader == READ_TWICE) gpu->ops->matmul(gpu, &rw[1], dout, n, dy1, NULL);

    /* reference: the residual in double and its norm */
    double *proj = ref_matmul(t, wb, rows, cols, in, n, bias);
    double *xr = malloc((size_t)n * rows * sizeof(double)), *outr = malloc((size_t)n * rows * sizeof(double));
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int64_t r = 0; r < rows; r++) {
            size_t j = (size_t)i * rows + r;
            xr[j] = x[j] + proj[j];
            ss += xr[j] * xr[j];
        }
        double inv = 1.0 / sqrt(ss / (double)rows + 1e-6);
        for (int64_t r = 0; r < rows; r++) {
            size_t j = (size_t)i * rows + r;
            outr[j] = nw[r] * xr[j] * inv;
        }
    }
    char what[160];
    snprintf(what, sizeof what, "fused projection (%s %lld x %lld, %d tokens, read by %s%s)", ts_dtype_get(t)->name,
             (long long)rows, (long long)cols, n, reader == READ_BY_HOST ? "the host" : ts_dtype_get(reader_type)->name,
             reader == READ_TWICE ? " twice" : "");
    float *got = host_from(gpu, dout, (size_t)n * rows);
    double e = rel_err_d(got, outr, (size_t)n * rows);
    if (!(e <= tol)) fail_msg("%s: norm output relative error %.3g > %g (%s)", what, e, tol, gpu->description);
    free(got);
    got = host_from(gpu, dx, (size_t)n * rows);
    e = rel_err_d(got, xr, (size_t)n * rows);
    if (!(e <= tol)) fail_msg("%s: residual relative error %.3g > %g (%s)", what, e, tol, gpu->description);
    free(got);
    /* the reader's products against double from the norm output the device holds (checked above): so
     * each check measures one rounding, as the other product tests do */
    float *held = host_from(gpu, dout, (size_t)n * rows);
    for (int k = 0; reader != READ_BY_HOST && k < 2; k++) {
        double *yr = ref_matmul(reader_type, rb[k], rrows[k], rows, held, n, NULL);
        got = host_from(gpu, dys[k], (size_t)n * rrows[k]);
        e = rel_err_d(got, yr, (size_t)n * rrows[k]);
        if (!(e <= tol)) fail_msg("%s: reader's product %d relative error %.3g > %g (%s)", what, k, e, tol, gpu->description);
        free(got);
        free(yr);
    }
    free(held);
    gpu->ops->release_weight(gpu, &w);
    for (int k = 0; k < 2; k++) {
        gpu->ops->release_weight(gpu, &rw[k]);
        free(rb[k]);
    }
    float *dev[8] = {din, dx, dbias, dnw, dout, dproj, dy0, dy1};
    for (int i = 0; i < 8; i++) gpu->ops->free(gpu, dev[i]);
    free(wb);
    free(in);
    free(x);
    free(bias);
    free(nw);
    free(proj);
    free(xr);
    free(outr);
}

static void test_fused_projection(void **state) {
    (void)state;
    /* the producer kernel for every integer layout at 1-8 tokens; rows not in groups of 32 and batches
     * beyond one pass take the unfused operations; readers in another element order (Q8_0 after 4-bit),
     * of another kernel (bf16), the host, and a second product after the first */
    const ts_dtype types[5] = {TS_DTYPE_Q4_0, TS_DTYPE_Q4_K, TS_DTYPE_IQ4_NL, TS_DTYPE_Q8_0, TS_DTYPE_IQ4_XS};
    const int tokens[4] = {1, 3, 8, 12};
    for (int ti = 0; ti < 5; ti++)
        for (int ni = 0; ni < 4; ni++) {
            ts_dtype reader = types[ti] == TS_DTYPE_Q8_0 ? TS_DTYPE_Q8_0 : TS_DTYPE_Q4_0;
            int64_t cols = ts_dtype_get(types[ti])->block_size == 256 ? 1024 : 1056;
            check_fused_projection(g_gpu16, types[ti], 1056, cols, tokens[ni], reader, READ_BY_PRODUCT, 1e-2);
            check_fused_projection(g_gpuh, types[ti], 1056, cols, tokens[ni], reader, READ_BY_PRODUCT, 1e-2);
        }
    /* rows of several passes a warp: an odd and an even number of passes, the last one partial */
    const int64_t long_cols[5] = {32 * (3 * 128 + 5), 256 * 33, 32 * (2 * 128 + 1), 32 * (2 * 64 + 3), 256 * 17};
    for (int ti = 0; ti < 5; ti++)
        for (int n = 1; n <= 2; n++) {
            ts_dtype reader = types[ti] == TS_DTYPE_Q8_0 ? TS_DTYPE_Q8_0 : TS_DTYPE_Q4_0;
            check_fused_projection(g_gpu16, types[ti], 160, long_cols[ti], n, reader, READ_BY_PRODUCT, 1e-2);
        }
    check_fused_projection(g_gpu16, TS_DTYPE_Q4_0, 1000, 1056, 2, TS_DTYPE_BF16, READ_BY_PRODUCT, 1e-2);
    check_fused_projection(g_gpu16, TS_DTYPE_Q4_0, 4096, 1056, 1, TS_DTYPE_Q8_0, READ_BY_PRODUCT, 1e-2);
    check_fused_projection(g_gpu16, TS_DTYPE_Q4_0, 1056, 1056, 1, TS_DTYPE_BF16, READ_BY_PRODUCT, 1e-2);
    check_fused_projection(g_gpu16, TS_DTYPE_Q4_0, 1056, 1056, 4, TS_DTYPE_Q4_0, READ_BY_HOST, 1e-2);
    check_fused_projection(g_gpu16, TS_DTYPE_IQ4_NL, 1056, 1056, 3, TS_DTYPE_IQ4_NL, READ_TWICE, 1e-2);
    check_fused_projection(g_gpu32, TS_DTYPE_Q4_0, 1056, 1056, 2, TS_DTYPE_Q4_0, READ_BY_PRODUCT, 1e-5);
}

static void test_attention_batch(void **state) {
    (void)state;
    const int hds[3] = {32, 64, 128}, groups[3] = {2, 4, 8};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            check_attention_batch(g_gpu32, hds[i], groups[j], 100, 4, NO_ROPE, 1e-5);
            check_attention_batch(g_gpu16, hds[i], groups[j], 100, 4, NO_ROPE, 1e-2);  /* tensor cores */
            check_attention_batch(g_gpu16a, hds[i], groups[j], 100, 4, NO_ROPE, 1e-2); /* float cores, half cache */
        }
    check_attention_batch(g_gpu16, 128, 4, 2, 4, NO_ROPE, 1e-2); /* one split per token */
    check_attention_batch(g_gpu32, 64, 2, 2, 4, NO_ROPE, 1e-5);
    check_attention_batch(g_gpu16, 128, 4, 100, 6, NO_ROPE, 1e-2);
    check_attention_batch(g_gpu16, 64, 8, 2, 6, NO_ROPE, 1e-2);
    check_attention_batch(g_gpu16a, 128, 2, 100, 6, NO_ROPE, 1e-2);
    check_attention_batch(g_gpu32, 128, 4, 100, 6, NO_ROPE, 1e-5);
}

/* rope_attention of batches: the tensor-core kernel rotates q and the own keys itself (head_dim 64, 128);
 * head_dim 32, the float grouped kernel and float caches take the separate operations. Last in the list:
 * its random draws leave the other tests' data as they were. */
static void test_rope_attention_batch(void **state) {
    (void)state;
    const int rope_hds[3] = {64, 128, 32};
    for (int i = 0; i < 3; i++)
        for (int r = ROPE; r <= NORM_ROPE; r++) {
            check_attention_batch(g_gpu16, rope_hds[i], 4, 100, 4, r, 1e-2);
            check_attention_batch(g_gpu16, rope_hds[i], 2, 2, 8, r, 1e-2);
            check_attention_batch(g_gpu16a, rope_hds[i], 4, 100, 4, r, 1e-2);
            check_attention_batch(g_gpu32, rope_hds[i], 8, 100, 4, r, 1e-5);
        }
}

/* The batch kernel's fused output projection (6-32 tokens, bf16 and fp16): the producer writes the
 * residual, the norm's partial sums and a 16-bit weight * residual; a batch product reading the norm's
 * output scales by each token's 1/rms and writes the output. K parts as chosen, forced to three (cluster
 * and global merges) and one (512 columns); readers of another kernel (Q8_0) and the host run the norm
 * instead; 1056 rows (not whole chunks of 64 for a reader) take the unfused operations. Last in the list, after test_rope_attention_batch: its random draws leave the
 * other tests' data as they were. */
static void test_fused_projection_batch(void **state) {
    (void)state;
    ts_backend *const bes[4] = {g_gpu16, g_gpuh, g_gpu16c, g_gpu16g};
    const ts_dtype types[2] = {TS_DTYPE_Q4_0, TS_DTYPE_Q4_1};
    const int tokens[4] = {6, 9, 16, 32};
    for (int b = 0; b < 4; b++)
        for (int ti = 0; ti < 2; ti++)
            for (int ni = 0; ni < 4; ni++)
                if (bes[b]) check_fused_projection(bes[b], types[ti], 1024, 1536, tokens[ni], TS_DTYPE_Q4_0, READ_BY_PRODUCT, 1e-2);
    check_fused_projection(g_gpu16, TS_DTYPE_Q4_0, 8192, 512, 32, TS_DTYPE_Q4_1, READ_BY_PRODUCT, 1e-2);
    check_fused_projection(g_gpu16, TS_DTYPE_Q4_0, 1024, 1536, 20, TS_DTYPE_Q4_0, READ_TWICE, 1e-2);
    check_fused_projection(g_gpu16, TS_DTYPE_Q4_1, 1024, 1536, 12, TS_DTYPE_Q8_0, READ_BY_PRODUCT, 1e-2);
    check_fused_projection(g_gpu16, TS_DTYPE_Q4_0, 1024, 1536, 32, TS_DTYPE_Q4_0, READ_BY_HOST, 1e-2);
    check_fused_projection(g_gpu16, TS_DTYPE_Q4_0, 1056, 1536, 16, TS_DTYPE_Q4_0, READ_BY_PRODUCT, 1e-2);
}

/* gate_up_silu against double products and silu, and against the unpaired products + silu_mul on the same
 * backend (bit for bit where both launches have the same row blocks: inner in blocks of 32); then a batch
 * product reads the output through the 16-bit form the launch registered. With due, x is the output of a
 * fused output projection (the paired launch reads the due norm). */
static void check_gate_up_silu(ts_backend *gpu, ts_dtype t, int64_t inner, int64_t cols, int n, int due) {
    ts_error err = {{0}};
    const ts_dtype dt = inner % 32 ? TS_DTYPE_BF16 : TS_DTYPE_Q4_0; /* the next product's weight: groups of 32 need whole groups */
    void *gb = rand_weight(t, inner, cols), *ub = rand_weight(t, inner, cols), *db = rand_weight(dt, 96, inner);
    ts_weight gw = {.dtype = t, .rows = inner, .cols = cols, .host = gb, .row_bytes = ts_dtype_row_bytes(t, cols)};
    ts_weight uw = {.dtype = t, .rows = inner, .cols = cols, .host = ub, .row_bytes = ts_dtype_row_bytes(t, cols)};
    ts_weight dw = {.dtype = dt, .rows = 96, .cols = inner, .host = db, .row_bytes = ts_dtype_row_bytes(dt, inner)};
    ts_weight *all[3] = {&gw, &uw, &dw};
    for (int k = 0; k < 3; k++)
        if (gpu->ops->prepare_weight(gpu, all[k], &err) != 0) fail_msg("%s", err.message);
    float *x = rand_floats((size_t)n * cols, 1.0f);
    float *dx = dev_from(gpu, x, (size_t)n * cols), *da = dev_from(gpu, x, (size_t)n * inner);
    float *db2 = dev_from(gpu, x, (size_t)n * inner), *dy = dev_from(gpu, x, (size_t)n * 96);
    void *pb = NULL;
    ts_weight pw = {0};
    float *dres = NULL, *dnw = NULL, *din = NULL, *dproj = NULL;
    if (due) { /* x = rmsnorm(residual + in . p^T) * nw, left due by the producer */
        pb = rand_weight(TS_DTYPE_Q4_0, cols, 1024);
        pw = (ts_weight){.dtype = TS_DTYPE_Q4_0, .rows = cols, .cols = 1024, .host = pb,
                         .row_bytes = ts_dtype_row_bytes(TS_DTYPE_Q4_0, 1024)};
        if (gpu->ops->prepare_weight(gpu, &pw, &err) != 0) fail_msg("%s", err.message);
        float *in = rand_floats((size_t)n * 1024, 1.0f), *res = rand_floats((size_t)n * cols, 2.0f);
        float *nw = rand_floats((size_t)cols, 1.0f);
        din = dev_from(gpu, in, (size_t)n * 1024);
        dres = dev_from(gpu, res, (size_t)n * cols);
        dnw = dev_from(gpu, nw, (size_t)cols);
        dproj = dev_from(gpu, res, (size_t)n * cols);
        gpu->ops->matmul_add_rmsnorm(gpu, &pw, din, n, NULL, dres, dnw, 1e-6f, dx, dproj);
        free(in);
        free(res);
        free(nw);
    }
    gpu->ops->gate_up_silu(gpu, &gw, &uw, dx, n, da, db2);
    gpu->ops->matmul(gpu, &dw, da, n, dy, NULL);
    float *xs = host_from(gpu, dx, (size_t)n * cols); /* the activations the products read (the due norm's output) */
    double *g = ref_matmul(t, gb, inner, cols, xs, n, NULL), *u = ref_matmul(t, ub, inner, cols, xs, n, NULL);
    for (size_t i = 0; i < (size_t)n * inner; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
    char what[160];
    snprintf(what, sizeof what, "gate_up_silu (%s %lld x %lld, %d tokens%s)", ts_dtype_get(t)->name, (long long)inner,
             (long long)cols, n, due ? ", x a due norm" : "");
    /* a second row first: a read from inside the rows gets their floats too (where only a copy was written) */
    float *row1 = host_from(gpu, da + inner, (size_t)inner);
    float *got = host_from(gpu, da, (size_t)n * inner);
    if (memcmp(row1, got + inner, (size_t)inner * sizeof(float)) != 0)
        fail_msg("%s: its second row read alone differs from the same row read with the rest (%s)", what, gpu->description);
    free(row1);
    double e = rel_err_d(got, g, (size_t)n * inner);
    if (!(e <= 1e-2)) fail_msg("%s: relative error %.3g > 1e-2 (%s)", what, e, gpu->description);
    double *yr = ref_matmul(dt, db, 96, inner, got, n, NULL);
    float *gy = host_from(gpu, dy, (size_t)n * 96);
    e = rel_err_d(gy, yr, (size_t)n * 96);
    if (!(e <= 1e-2)) fail_msg("%s: the next product's relative error %.3g > 1e-2 (%s)", what, e, gpu->description);
    if (!due && inner % 32 == 0 && n <= 32) { /* beyond 32 tokens bf16 takes products rounded to bf16 */
        const ts_weight *gu[2] = {&gw, &uw};
        float *const ys[2] = {da, db2};
        gpu->ops->matmul_many(gpu, 2, gu, dx, n, ys, NULL);
        gpu->ops->silu_mul(gpu, da, db2, n, (int)inner, (int)inner, da);
        float *apart = host_from(gpu, da, (size_t)n * inner);
        if (memcmp(apart, got, (size_t)n * inner * sizeof(float)) != 0)
            fail_msg("%s: differs from the unpaired products and silu_mul (%s)", what, gpu->description);
        free(apart);
    }
    free(gy);
    free(yr);
    free(got);
    free(g);
    free(u);
    free(xs);
    for (int k = 0; k < 3; k++) gpu->ops->release_weight(gpu, all[k]);
    float *dev[8] = {dx, da, db2, dy, dres, dnw, din, dproj};
    for (int i = 0; i < 8; i++)
        if (dev[i]) gpu->ops->free(gpu, dev[i]);
    if (due) gpu->ops->release_weight(gpu, &pw);
    free(pb);
    free(gb);
    free(ub);
    free(db);
    free(x);
}

/* The paired gate/up launch at 6-32 tokens in bf16 and fp16, with K parts as chosen, forced to three
 * (cluster and global merges) and one (512 columns); rows in blocks of 16 but not of 32; after a fused
 * output projection; shapes the batch kernel does not take (1056 columns: the unfused operations). Last
 * in the list with test_fused_projection_batch, for the same reason. */
static void test_gate_up_silu(void **state) {
    (void)state;
    ts_backend *const bes[4] = {g_gpu16, g_gpuh, g_gpu16c, g_gpu16g};
    const ts_dtype types[2] = {TS_DTYPE_Q4_0, TS_DTYPE_Q4_1};
    const int tokens[4] = {6, 9, 16, 32};
    for (int b = 0; b < 4; b++)
        for (int ti = 0; ti < 2; ti++)
            for (int ni = 0; ni < 4; ni++)
                if (bes[b]) check_gate_up_silu(bes[b], types[ti], 2048, 1536, tokens[ni], 0);
    check_gate_up_silu(g_gpu16, TS_DTYPE_Q4_0, 4096, 512, 32, 0);
    check_gate_up_silu(g_gpu16, TS_DTYPE_Q4_1, 1040, 1536, 20, 0);
    check_gate_up_silu(g_gpu16c, TS_DTYPE_Q4_0, 1040, 1536, 9, 0);
    for (int ni = 0; ni < 4; ni++) check_gate_up_silu(g_gpu16, TS_DTYPE_Q4_0, 2048, 1024, tokens[ni], 1);
    check_gate_up_silu(g_gpuh, TS_DTYPE_Q4_1, 2048, 1024, 32, 1);
    check_gate_up_silu(g_gpu16g, TS_DTYPE_Q4_0, 2048, 1024, 16, 1);
    check_gate_up_silu(g_gpu16, TS_DTYPE_Q4_0, 2048, 1056, 16, 0);
    check_gate_up_silu(g_gpu32, TS_DTYPE_Q4_0, 2048, 1024, 16, 0);
    /* prefill sizes: bf16 products and only the bf16 copy of a (read back through the copy), after a
     * residual norm too; fp16 and float32 and a width the bf16 kernel does not take (1060) as before */
    check_gate_up_silu(g_gpu16, TS_DTYPE_Q4_0, 2048, 1536, 40, 0);
    check_gate_up_silu(g_gpu16, TS_DTYPE_Q4_1, 1040, 512, 300, 0);
    check_gate_up_silu(g_gpu16, TS_DTYPE_Q4_0, 2048, 1024, 40, 1);
    check_gate_up_silu(g_gpu16, TS_DTYPE_Q4_0, 1060, 512, 40, 0);
    check_gate_up_silu(g_gpuh, TS_DTYPE_Q4_0, 2048, 1024, 40, 0);
    check_gate_up_silu(g_gpu32, TS_DTYPE_Q4_0, 2048, 1024, 40, 0);
}

/* q/k norm + RoPE + attention as one operation (rope_attention): a prefill (the separate operations) then
 * pure decode steps of two sequences, which the decode kernel rotates itself, storing the rotated keys
 * that later steps read; with and without the per-head norms; against the CPU's qk norm, RoPE and
 * attention, step after step. */
static void check_rope_attention(ts_backend *gpu, int hd, int with_norm, double tol) {
    const int n_heads = 4, n_kv = 2, bt = 8, nblk = 12;
    ts_kv_layout l = {1, n_kv, hd, bt, 2 * nblk};
    ts_error err = {{0}};
    ts_kv_store *kc = g_cpu->ops->kv_create(g_cpu, &l, &err), *kg = gpu->ops->kv_create(gpu, &l, &err);
    assert_non_null(kc);
    assert_non_null(kg);
    int32_t blocks_a[12], blocks_b[12];
    for (int i = 0; i < nblk; i++) {
        blocks_a[i] = 2 * i + 1;
        blocks_b[i] = 2 * nblk - 2 - 2 * i;
    }
    float inv[128];
    for (int i = 0; i < hd / 2; i++) inv[i] = 1.0f / powf(1e6f, (float)(2 * i) / (float)hd);
    ts_rope rope = {hd, inv, 1.0f};
    float *qn = rand_floats((size_t)hd, 1.0f), *kn = rand_floats((size_t)hd, 1.0f);
    float *dqn = dev_from(gpu, qn, (size_t)hd), *dkn = dev_from(gpu, kn, (size_t)hd);
    /* the single-token steps of one sequence at 80+ positions have several splits: a cluster on sm_90 */
    static const int plan[][2] = {{80, 9}, {1, 1}, {1, 1}, {1, 0}, {1, 0}};
    int start_a = 0, start_b = 0;
    for (int stepno = 0; stepno < (int)(sizeof plan / sizeof plan[0]); stepno++) {
        int na = plan[stepno][0], nb = plan[stepno][1], n = na + nb;
        two_seq_step seqs;
        two_seq_step_init(&seqs, na, nb, start_a, start_b, nblk, blocks_a, blocks_b);
        ts_step step = seqs.step;
        const int32_t *positions = seqs.positions;
        size_t qcount = (size_t)n * n_heads * hd, kcount = (size_t)n * n_kv * hd;
        attn_inputs a;
        attn_inputs_init(gpu, &a, qcount, kcount);
        /* the CPU: norms, RoPE, attention, each its own operation */
        cpu_qk_norm_rope(&a, n, n_heads, n_kv, hd, with_norm ? qn : NULL, with_norm ? kn : NULL, positions, &rope);
        g_cpu->ops->attention(g_cpu, kc, 0, &step, a.q, n_heads * hd, a.k, a.v, n_kv * hd, n_heads, 0.11f, a.out);
        const ts_rope_heads qh = {a.dq, n_heads, n_heads * hd, with_norm ? dqn : NULL},
                            kh = {a.dk, n_kv, n_kv * hd, with_norm ? dkn : NULL};
        gpu->ops->begin_step(gpu, &step);
        gpu->ops->rope_attention(gpu, kg, 0, &step, &qh, &kh, a.dv, n_heads, 0.11f, 1e-6f, positions, &rope, a.dout);
        char what[96];
        snprintf(what, sizeof what, "rope_attention (head_dim %d%s) step %d", hd, with_norm ? ", q/k norms" : "", stepno);
        compare_vs_cpu(gpu, what, a.dout, a.out, qcount, tol);
        gpu->ops->sync(gpu);
        start_a += na;
        start_b += nb;
        attn_inputs_free(gpu, &a);
    }
    gpu->ops->free(gpu, dqn);
    gpu->ops->free(gpu, dkn);
    free(qn);
    free(kn);
    g_cpu->ops->kv_destroy(g_cpu, kc);
    gpu->ops->kv_destroy(gpu, kg);
}

/* Weights dequantized ahead on the second stream (stage_products, cuda_stage.cu) give the products that
 * dequantize in line, bit for bit: staged and used; staged, left unused and staged again (the slot keeps
 * it); staged in another order (each to the smallest free slot that holds it); a staged weight released before its product
 * and its memory reused by another weight. bf16 and fp16. */
static void staged_check(ts_backend *gpu, const ts_weight *w, const float *dx, int n, const float *want, const char *what) {
    float *dy = dev_from(gpu, want, (size_t)n * w->rows);
    gpu->ops->matmul(gpu, w, dx, n, dy, NULL);
    float *got = host_from(gpu, dy, (size_t)n * w->rows);
    for (size_t i = 0; i < (size_t)n * w->rows; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("%s: element %zu is %.9g, %.9g dequantized in line (%s)", what, i, got[i], want[i], gpu->description);
    free(got);
    gpu->ops->free(gpu, dy);
}

static void test_staged_products(void **state) {
    (void)state;
    ts_backend *gpus[2] = {g_gpu16, g_gpuh};
    const ts_dtype types[3] = {TS_DTYPE_Q4_0, TS_DTYPE_Q4_K, TS_DTYPE_Q8_0};
    const int64_t rows[3] = {72, 300, 40}, cols = 512;
    const int n = 40;
    for (int gi = 0; gi < 2; gi++) {
        ts_backend *gpu = gpus[gi];
        assert_non_null(gpu->ops->stage_products);
        void *bytes[3];
        ts_weight ws[3];
        float *ref[3];
        float *x = rand_floats((size_t)n * cols, 1.0f), *dx = dev_from(gpu, x, (size_t)n * cols);
        for (int k = 0; k < 3; k++) {
            ws[k] = prepared_rand_weight(gpu, types[k], rows[k], cols, &bytes[k]);
            float *dy = dev_from(gpu, x, (size_t)n * rows[k]); /* any contents: overwritten */
            gpu->ops->matmul(gpu, &ws[k], dx, n, dy, NULL);
            ref[k] = host_from(gpu, dy, (size_t)n * rows[k]);
            gpu->ops->free(gpu, dy);
        }
        const ts_weight *list[3] = {&ws[0], &ws[1], &ws[2]};
        gpu->ops->stage_products(gpu, 3, list, n);
        for (int k = 0; k < 3; k++) staged_check(gpu, &ws[k], dx, n, ref[k], "staged product");
        /* the first used, the others left staged, then all staged again */
        gpu->ops->stage_products(gpu, 3, list, n);
        staged_check(gpu, &ws[0], dx, n, ref[0], "staged product");
        gpu->ops->stage_products(gpu, 3, list, n);
        for (int k = 0; k < 3; k++) staged_check(gpu, &ws[k], dx, n, ref[k], "restaged product");
        /* the largest weight first */
        const ts_weight *reversed[3] = {&ws[1], &ws[0], &ws[2]};
        gpu->ops->stage_products(gpu, 3, reversed, n);
        for (int k = 0; k < 3; k++) staged_check(gpu, &ws[k], dx, n, ref[k], "product staged in another order");
        /* released while staged; a new weight (perhaps at the same address) is not taken for it */
        gpu->ops->stage_products(gpu, 1, list, n);
        gpu->ops->release_weight(gpu, &ws[0]);
        free(bytes[0]);
        bytes[0] = rand_weight(types[0], rows[0], cols);
        ws[0] = (ts_weight){.dtype = types[0], .rows = rows[0], .cols = cols, .host = bytes[0],
                            .row_bytes = ts_dtype_row_bytes(types[0], cols)};
        ts_error err = {{0}};
        if (gpu->ops->prepare_weight(gpu, &ws[0], &err) != 0) fail_msg("%s", err.message);
        double *want = ref_matmul(types[0], bytes[0], rows[0], cols, x, n, NULL);
        float *dy = dev_from(gpu, x, (size_t)n * rows[0]);
        gpu->ops->matmul(gpu, &ws[0], dx, n, dy, NULL);
        float *got = host_from(gpu, dy, (size_t)n * rows[0]);
        double e = rel_err_d(got, want, (size_t)n * rows[0]);
        if (!(e <= 1e-2)) fail_msg("a weight prepared after a staged one was released: relative error %.3g (%s)", e, gpu->description);
        free(got);
        free(want);
        gpu->ops->free(gpu, dy);
        for (int k = 0; k < 3; k++) {
            gpu->ops->release_weight(gpu, &ws[k]);
            free(bytes[k]);
            free(ref[k]);
        }
        gpu->ops->free(gpu, dx);
        free(x);
    }
}

/* matmul_concat: three weights (mixed layouts, one width) as one product with biases, each weight's outputs
 * in its own columns of y; it declines small batches, 16-bit weights that cuBLAS reads as stored and
 * mismatched widths, leaving y untouched. */
static void test_matmul_concat(void **state) {
    (void)state;
    ts_backend *gpus[3] = {g_gpu32, g_gpu16, g_gpuh};
    const double tols[3] = {1e-5, 1e-2, 1e-2};
    const ts_dtype types[3] = {TS_DTYPE_Q4_0, TS_DTYPE_Q4_K, TS_DTYPE_Q8_0};
    const int64_t rows[3] = {72, 24, 40}, total = 136, cols = 512;
    for (int gi = 0; gi < 3; gi++) {
        ts_backend *gpu = gpus[gi];
        assert_non_null(gpu->ops->matmul_concat);
        void *bytes[3];
        ts_weight ws[3];
        float *bias[3], *dbias[3];
        for (int k = 0; k < 3; k++) {
            ws[k] = prepared_rand_weight(gpu, types[k], rows[k], cols, &bytes[k]);
            bias[k] = k == 1 ? NULL : rand_floats((size_t)rows[k], 0.5f);
            dbias[k] = bias[k] ? dev_from(gpu, bias[k], (size_t)rows[k]) : NULL;
        }
        const ts_weight *list[3] = {&ws[0], &ws[1], &ws[2]};
        const float *const biases[3] = {dbias[0], dbias[1], dbias[2]};
        const int ns[3] = {40, 9, 300};
        for (int ni = 0; ni < 3; ni++) {
            const int n = ns[ni];
            float *x = rand_floats((size_t)n * cols, 1.0f), *dx = dev_from(gpu, x, (size_t)n * cols);
            float *poison = malloc((size_t)n * total * sizeof(float));
            for (size_t i = 0; i < (size_t)n * total; i++) poison[i] = NAN;
            float *dy = dev_from(gpu, poison, (size_t)n * total);
            int taken = gpu->ops->matmul_concat(gpu, 3, list, dx, n, dy, biases);
            /* at 9 tokens the 16-bit backends take the integer kernels, which multiply weights one by one */
            assert_int_equal(taken, gi == 0 || n > 32);
            float *y = host_from(gpu, dy, (size_t)n * total);
            int64_t off = 0;
            for (int k = 0; k < 3; k++) {
                float *part = malloc((size_t)n * rows[k] * sizeof(float));
                for (int t = 0; t < n; t++) memcpy(part + (size_t)t * rows[k], y + (size_t)t * total + off, (size_t)rows[k] * sizeof(float));
                if (taken) {
                    double *ref = ref_matmul(types[k], bytes[k], rows[k], cols, x, n, bias[k]);
                    double e = rel_err_d(part, ref, (size_t)n * rows[k]);
                    if (!(e <= tols[gi]))
                        fail_msg("concatenated product %d (%s, %lld rows) with %d tokens: relative error %.3g > %g (%s)", k,
                                 ts_dtype_get(types[k])->name, (long long)rows[k], n, e, tols[gi], gpu->description);
                    free(ref);
                } else {
                    for (size_t i = 0; i < (size_t)n * rows[k]; i++)
                        if (!isnan(part[i])) fail_msg("a declined concatenated product wrote y (%s)", gpu->description);
                }
                free(part);
                off += rows[k];
            }
            free(y);
            free(x);
            free(poison);
            gpu->ops->free(gpu, dx);
            gpu->ops->free(gpu, dy);
        }
        /* declined: a width that differs, and (16-bit backends) a weight cuBLAS reads as stored */
        const int n = 40;
        const float one = 1.0f;
        float *dx = dev_from(gpu, &one, 1), *dy = dev_from(gpu, &one, 1); /* not touched: the op declines first */
        void *other;
        ts_weight narrow = prepared_rand_weight(gpu, TS_DTYPE_Q4_0, 8, 256, &other);
        const ts_weight *mixed[2] = {&ws[0], &narrow};
        assert_int_equal(gpu->ops->matmul_concat(gpu, 2, mixed, dx, n, dy, NULL), 0);
        gpu->ops->release_weight(gpu, &narrow);
        free(other);
        if (gi == 1) { /* weights with dense copies (--gpu-dense-cache): cuBLAS reads those as stored */
            ts_weight dense[2];
            for (int k = 0; k < 2; k++) {
                dense[k] = (ts_weight){.dtype = types[0], .rows = rows[0], .cols = cols, .host = bytes[0],
                                       .row_bytes = ts_dtype_row_bytes(types[0], cols)};
                ts_error err = {{0}};
                if (g_gpu16d->ops->prepare_weight(g_gpu16d, &dense[k], &err) != 0) fail_msg("%s", err.message);
            }
            const ts_weight *pair[2] = {&dense[0], &dense[1]};
            float *ddx = dev_from(g_gpu16d, &one, 1);
            assert_int_equal(g_gpu16d->ops->matmul_concat(g_gpu16d, 2, pair, ddx, n, ddx, NULL), 0);
            for (int k = 0; k < 2; k++) g_gpu16d->ops->release_weight(g_gpu16d, &dense[k]);
            g_gpu16d->ops->free(g_gpu16d, ddx);
        }
        if (gi > 0) {
            const ts_dtype t16 = gi == 1 ? TS_DTYPE_BF16 : TS_DTYPE_F16;
            void *b16;
            ts_weight stored = prepared_rand_weight(gpu, t16, 16, cols, &b16);
            const ts_weight *with16[2] = {&ws[0], &stored};
            assert_int_equal(gpu->ops->matmul_concat(gpu, 2, with16, dx, n, dy, NULL), 0);
            gpu->ops->release_weight(gpu, &stored);
            free(b16);
        }
        gpu->ops->free(gpu, dx);
        gpu->ops->free(gpu, dy);
        for (int k = 0; k < 3; k++) {
            gpu->ops->release_weight(gpu, &ws[k]);
            free(bytes[k]);
            free(bias[k]);
            if (dbias[k]) gpu->ops->free(gpu, dbias[k]);
        }
    }
}

static void test_rope_attention(void **state) {
    (void)state;
    /* 64 and 128: the decode kernel rotates; 40: the separate operations */
    const int hds[3] = {64, 128, 40};
    for (int i = 0; i < 3; i++)
        for (int with_norm = 0; with_norm < 2; with_norm++) {
            check_rope_attention(g_gpu32, hds[i], with_norm, 1e-5);
            check_rope_attention(g_gpu16, hds[i], with_norm, 1e-2);
        }
}

/* A backend's first prefill runs the kernels every later prefill runs (begin_step cuts the first step's
 * tiles before it knows the model's heads): the same step on two fresh caches of a fresh backend gives
 * the same bits. Before, the first took split-K and its logits differed from the same request's later. */
static void test_first_prefill(void **state) {
    (void)state;
    char why[512];
    for (int prec = 0; prec < 2; prec++) {
        ts_backend *gpu = ts_test_cuda_backend(prec ? TS_PRECISION_BF16 : TS_PRECISION_FP32, 0, g_cpu, why, sizeof why);
        assert_non_null(gpu);
        const int n_heads = 6, n_kv = 2, hd = 64, n = 37;
        ts_kv_layout l = {1, n_kv, hd, 16, 8};
        int32_t blocks[3] = {5, 2, 7}, tokens[37], positions[37];
        for (int i = 0; i < n; i++) tokens[i] = positions[i] = i;
        ts_seq_view view = {0, n, 0, 3, blocks};
        ts_step step = {n, tokens, positions, 1, &view, 0, NULL, NULL};
        size_t qn = (size_t)n * n_heads * hd, kn = (size_t)n * n_kv * hd;
        attn_inputs a;
        attn_inputs_init(gpu, &a, qn, kn);
        float *runs[2];
        for (int r = 0; r < 2; r++) {
            ts_error err = {{0}};
            ts_kv_store *kv = gpu->ops->kv_create(gpu, &l, &err);
            assert_non_null(kv);
            gpu->ops->begin_step(gpu, &step);
            gpu->ops->attention(gpu, kv, 0, &step, a.dq, n_heads * hd, a.dk, a.dv, n_kv * hd, n_heads, 0.125f, a.dout);
            runs[r] = host_from(gpu, a.dout, qn);
            gpu->ops->kv_destroy(gpu, kv);
        }
        for (size_t i = 0; i < qn; i++)
            if (memcmp(&runs[0][i], &runs[1][i], sizeof(float)) != 0)
                fail_msg("a fresh backend's first prefill differs from its second at element %zu: %.9g vs %.9g (%s)", i,
                         runs[0][i], runs[1][i], gpu->description);
        free(runs[0]);
        free(runs[1]);
        attn_inputs_free(gpu, &a);
        gpu->ops->destroy(gpu);
    }
}

static void test_attention(void **state) {
    (void)state;
    /* head_dim 40: float tiled prefill; 64 and 128: tensor-core prefill under bf16 (half cache) */
    const int hds[3] = {40, 64, 128};
    for (int i = 0; i < 3; i++) {
        check_attention(g_gpu32, hds[i], 1e-5);
        check_attention(g_gpu16, hds[i], 1e-2); /* half-precision KV cache */
        check_attention(g_gpuh, hds[i], 1e-2);  /* fp16: the prefill kernel's fp16 copy for the next product */
    }
}

/* RMSNorm, residual add + RMSNorm and SiLU-gate followed by products of 4- and 8-bit weights, each twice
 * so that the producer has seen the element order the integer kernels want; wide batches check the
 * bf16 copy producers write for cuBLAS. */
static void test_prequantized_activations(void **state) {
    (void)state;
    const int dim = 1024;
    const ts_dtype types[4] = {TS_DTYPE_Q4_0, TS_DTYPE_Q4_0, TS_DTYPE_Q8_0, TS_DTYPE_Q8_0};
    /* one pass; a batch (16-bit tensor cores); a batch; cuBLAS on a 16-bit copy; bf16 and fp16 */
    const int row_counts[4] = {3, 7, 20, 40};
    ts_backend *gpus[2] = {g_gpu16, g_gpuh};
    for (int gi = 0; gi < 2; gi++)
    for (int ri = 0; ri < 4; ri++) {
        ts_backend *gpu = gpus[gi];
        const int r = row_counts[ri];
        float *x = rand_floats((size_t)r * dim, 2.0f), *y = rand_floats((size_t)r * dim, 1.0f), *w = rand_floats(dim, 1.0f);
        float *dx = dev_from(gpu, x, (size_t)r * dim), *dy = dev_from(gpu, y, (size_t)r * dim);
        float *dw = dev_from(gpu, w, dim), *dout = dev_from(gpu, x, (size_t)r * dim);
        for (int i = 0; i < 4; i++) {
            probe pr;
            probe_init(gpu, &pr, types[i], dim, r);
            gpu->ops->rmsnorm(gpu, dx, dw, r, dim, 1e-6f, dout);
            probe_check(gpu, &pr, dout, r, "rmsnorm");
            gpu->ops->add_rmsnorm(gpu, dx, dy, dw, r, dim, 1e-6f, dout);
            probe_check(gpu, &pr, dout, r, "add_rmsnorm");
            probe_free(gpu, &pr);
            probe_init(gpu, &pr, types[i], dim / 2, r);
            gpu->ops->silu_mul(gpu, dx, dx + dim / 2, r, dim / 2, dim, dout);
            probe_check(gpu, &pr, dout, r, "silu_mul");
            probe_free(gpu, &pr);
        }
        gpu->ops->free(gpu, dx);
        gpu->ops->free(gpu, dy);
        gpu->ops->free(gpu, dw);
        gpu->ops->free(gpu, dout);
        free(x);
        free(y);
        free(w);
    }
}

/* The module holds each layout in the bytes the memory planner counts for it (ts_plan_row_bytes_on). */
static void test_weight_bytes_match_planner(void **state) {
    (void)state;
    const ts_dtype types[] = {TS_DTYPE_F32,  TS_DTYPE_F16,  TS_DTYPE_BF16, TS_DTYPE_Q8_0,   TS_DTYPE_Q4_0, TS_DTYPE_Q4_1,
                              TS_DTYPE_Q4_K, TS_DTYPE_Q5_K, TS_DTYPE_Q6_K, TS_DTYPE_IQ4_NL, TS_DTYPE_IQ4_XS};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        ts_backend_stats before, after;
        g_gpu32->ops->stats(g_gpu32, &before);
        void *bytes;
        ts_weight w = prepared_rand_weight(g_gpu32, types[i], 37, 768, &bytes);
        g_gpu32->ops->stats(g_gpu32, &after);
        if (after.weight_bytes - before.weight_bytes != 37 * ts_plan_row_bytes_on(TS_DEVICE_CUDA, types[i], 768))
            fail_msg("%s: the module holds %llu bytes, the planner counts %llu", ts_dtype_get(types[i])->name,
                     (unsigned long long)(after.weight_bytes - before.weight_bytes),
                     (unsigned long long)(37 * ts_plan_row_bytes_on(TS_DEVICE_CUDA, types[i], 768)));
        g_gpu32->ops->release_weight(g_gpu32, &w);
        free(bytes);
    }
}

static void test_embedding(void **state) {
    (void)state;
    const ts_dtype types[] = {TS_DTYPE_BF16, TS_DTYPE_Q4_0, TS_DTYPE_Q6_K, TS_DTYPE_F32};
    for (size_t i = 0; i < 4; i++) {
        int64_t rows = 50, cols = ts_dtype_get(types[i])->block_size == 256 ? 512 : 160;
        void *wb = rand_weight(types[i], rows, cols);
        ts_weight w = {.dtype = types[i], .rows = rows, .cols = cols, .host = wb, .row_bytes = ts_dtype_row_bytes(types[i], cols)};
        ts_error err = {{0}};
        assert_int_equal(g_gpu32->ops->prepare_weight(g_gpu32, &w, &err), 0);
        int32_t ids[6] = {0, 49, 7, 7, 23, 1};
        float *ref = malloc(6 * (size_t)cols * sizeof(float));
        ts_weight hw = w;
        hw.prepared = NULL;
        hw.prepared_by = NULL;
        g_cpu->ops->embed(g_cpu, &hw, ids, 6, ref);
        float *zeros = calloc(6 * (size_t)cols, sizeof(float));
        float *d = dev_from(g_gpu32, zeros, 6 * (size_t)cols);
        g_gpu32->ops->embed(g_gpu32, &w, ids, 6, d);
        compare_vs_cpu(g_gpu32, "embedding", d, ref, 6 * (size_t)cols, 1e-6);
        g_gpu32->ops->release_weight(g_gpu32, &w);
        g_gpu32->ops->free(g_gpu32, d);
        free(zeros);
        free(ref);
        free(wb);
    }
}

/* Not a test: with TESSERA_CUDA_MICROBENCH=1, times large products of 1, 16 and 32 tokens per weight type and
 * prints the weight bandwidth achieved (the number decode speed depends on). */
static void microbench(ts_backend *be, const char *kernel, int n, int n_types) {
    const ts_dtype types[] = {TS_DTYPE_Q4_0, TS_DTYPE_Q4_K, TS_DTYPE_Q8_0};
    const int64_t shapes[][2] = {{4096, 4096}, {6144, 4096}, {24576, 4096}, {4096, 12288}, {151936, 4096}};
    for (int i = 0; i < n_types; i++)
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            int64_t rows = shapes[k][0], cols = shapes[k][1];
            void *wb = rand_weight(types[i], rows, cols);
            ts_weight w = {.dtype = types[i], .rows = rows, .cols = cols, .host = wb, .row_bytes = ts_dtype_row_bytes(types[i], cols)};
            ts_error err = {{0}};
            if (be->ops->prepare_weight(be, &w, &err) != 0) continue;
            float *x = rand_floats((size_t)n * cols, 1.0f), *dx = dev_from(be, x, (size_t)n * cols);
            float *y0 = calloc((size_t)n * rows, sizeof(float));
            float *dy = dev_from(be, y0, (size_t)n * rows);
            free(y0);
            for (int r = 0; r < 3; r++) be->ops->matmul(be, &w, dx, n, dy, NULL);
            be->ops->sync(be);
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            const int reps = 50;
            for (int r = 0; r < reps; r++) be->ops->matmul(be, &w, dx, n, dy, NULL);
            be->ops->sync(be);
            clock_gettime(CLOCK_MONOTONIC, &b);
            double sec = ((double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec)) / reps;
            double bytes = (double)w.row_bytes * (double)rows;
            printf("%-8s n=%-2d %-5s %6lld x %-6lld %8.1f us  %7.1f GB/s of weights\n", kernel, n,
                   ts_dtype_get(types[i])->name, (long long)rows, (long long)cols, sec * 1e6, bytes / sec / 1e9);
            be->ops->release_weight(be, &w);
            be->ops->free(be, dx);
            be->ops->free(be, dy);
            free(x);
            free(wb);
        }
}

int main(void) {
    ts_error err = {{0}};
    ts_cpu_options co = {.threads = 2};
    g_cpu = ts_cpu_backend_create(&co, &err);
    /* the fused operations at every batch their kernels take (the default fuses single tokens only) */
    setenv("TESSERA_CUDA_FUSE_MAX_TOKENS", "8", 1);
    char why[512];
    g_gpu32 = ts_test_cuda_backend(TS_PRECISION_FP32, 0, g_cpu, why, sizeof why);
    if (!g_gpu32) {
        printf("skipped: no CUDA backend here: %s\n", why);
        g_cpu->ops->destroy(g_cpu);
        return TS_TEST_SKIP;
    }
    g_gpu16 = ts_test_cuda_backend(TS_PRECISION_BF16, 0, g_cpu, why, sizeof why);
    g_gpu16d = ts_test_cuda_backend(TS_PRECISION_BF16, TS_TEST_CUDA_DENSE, g_cpu, why, sizeof why);
    setenv("TESSERA_CUDA_MMA_MIN_TOKENS", "1", 1);
    g_gpu16m = ts_test_cuda_backend(TS_PRECISION_BF16, 0, g_cpu, why, sizeof why);
    unsetenv("TESSERA_CUDA_MMA_MIN_TOKENS");
    g_gpuh = ts_test_cuda_backend(TS_PRECISION_FP16, 0, g_cpu, why, sizeof why);
    setenv("TESSERA_CUDA_BATCH16", "0", 1);
    g_gpu16i = ts_test_cuda_backend(TS_PRECISION_BF16, 0, g_cpu, why, sizeof why);
    unsetenv("TESSERA_CUDA_BATCH16");
    setenv("TESSERA_CUDA_BW_KPARTS", "3", 1);
    g_gpu16c = ts_test_cuda_backend(TS_PRECISION_BF16, 0, g_cpu, why, sizeof why);
    setenv("TESSERA_CUDA_BW_CLUSTER", "0", 1);
    g_gpu16g = ts_test_cuda_backend(TS_PRECISION_BF16, 0, g_cpu, why, sizeof why);
    unsetenv("TESSERA_CUDA_BW_CLUSTER");
    unsetenv("TESSERA_CUDA_BW_KPARTS");
    setenv("TESSERA_CUDA_ATT_MMA", "0", 1);
    g_gpu16a = ts_test_cuda_backend(TS_PRECISION_BF16, 0, g_cpu, why, sizeof why);
    unsetenv("TESSERA_CUDA_ATT_MMA");
    printf("GPU: %s\n", g_gpu32->description);
    if (getenv("TESSERA_CUDA_MICROBENCH") && !strcmp(getenv("TESSERA_CUDA_MICROBENCH"), "batch")) {
        for (int n = 8; n <= 32; n *= 2) microbench(g_gpu16, "batch16", n, 1); /* Q4_0 only */
        return 0;
    }
    if (getenv("TESSERA_CUDA_MICROBENCH") && !strcmp(getenv("TESSERA_CUDA_MICROBENCH"), "gemv")) {
        microbench(g_gpu16, "int8", 1, 1); /* Q4_0 only */
        return 0;
    }
    if (getenv("TESSERA_CUDA_MICROBENCH")) {
        microbench(g_gpu16, "int8", 1, 3);
        for (int n = 16; n <= 32; n += 16) {
            microbench(g_gpu16, "batch16", n, 2);
            if (g_gpu16i) microbench(g_gpu16i, "mma-int8", n, 2);
        }
        setenv("TESSERA_CUDA_GEMV", "float", 1);
        ts_backend *f = ts_test_cuda_backend(TS_PRECISION_BF16, 0, g_cpu, why, sizeof why);
        unsetenv("TESSERA_CUDA_GEMV");
        if (f) {
            microbench(f, "float", 1, 3);
            f->ops->destroy(f);
        }
        if (!strcmp(getenv("TESSERA_CUDA_MICROBENCH"), "only")) return 0; /* measurements only, no tests */
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_every_type), cmocka_unit_test(test_batch_tensor_cores), cmocka_unit_test(test_batch_kpart_merges),
        cmocka_unit_test(test_norms_and_activations),
        cmocka_unit_test(test_rope), cmocka_unit_test(test_attention), cmocka_unit_test(test_first_prefill), cmocka_unit_test(test_attention_batch), cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_argmax_rows), cmocka_unit_test(test_draw_rows), cmocka_unit_test(test_fused_ops), cmocka_unit_test(test_fused_projection),
        cmocka_unit_test(test_prequantized_activations), cmocka_unit_test(test_rope_attention),
        cmocka_unit_test(test_rope_attention_batch), cmocka_unit_test(test_fused_projection_batch),
        cmocka_unit_test(test_gate_up_silu), cmocka_unit_test(test_staged_products), cmocka_unit_test(test_matmul_concat),
        cmocka_unit_test(test_weight_bytes_match_planner), cmocka_unit_test(test_matmul_narrow_rows),
        cmocka_unit_test(test_matmul_argmax), cmocka_unit_test(test_embed_rmsnorm),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    g_gpu32->ops->destroy(g_gpu32);
    g_gpu16->ops->destroy(g_gpu16);
    g_gpu16d->ops->destroy(g_gpu16d);
    g_gpu16m->ops->destroy(g_gpu16m);
    if (g_gpuh) g_gpuh->ops->destroy(g_gpuh);
    if (g_gpu16i) g_gpu16i->ops->destroy(g_gpu16i);
    if (g_gpu16c) g_gpu16c->ops->destroy(g_gpu16c);
    if (g_gpu16g) g_gpu16g->ops->destroy(g_gpu16g);
    if (g_gpu16a) g_gpu16a->ops->destroy(g_gpu16a);
    g_cpu->ops->destroy(g_cpu);
    return rc;
}
