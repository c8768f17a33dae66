/* GPTQ (quant/gptq.h) against plain references: the inverse factor satisfies u^T u H = I, the error
 * feedback leaves the unquantized columns where the closed-form constrained least-squares solution puts
 * them, and on correlated inputs the calibrated result has a smaller output error (W - Q) H (W - Q)^T
 * than the uncalibrated searching quantizer, for every type it writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quant/dequantize.h"
#include "quant/gptq.h"
#include "quant/quantize.h"

static uint64_t g_state;

static double uniform01(void) {
    g_state = g_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_state >> 11) * (1.0 / 9007199254740992.0);
}

static double gaussian(void) {
    double u = uniform01(), v = uniform01();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* H = X^T X of `tokens` correlated inputs: each input mixes a few shared factors, and a few inputs
 * carry much more energy than the rest (as activations feeding real layers do). */
static double *correlated_hessian(int64_t n, int tokens, uint64_t seed) {
    g_state = seed;
    int factors = 8;
    double *mix = malloc(sizeof(double) * (size_t)(factors * n)), *h = calloc((size_t)(n * n), sizeof(double));
    double *x = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < factors * n; i++) mix[i] = gaussian();
    for (int t = 0; t < tokens; t++) {
        double f[8];
        for (int k = 0; k < factors; k++) f[k] = gaussian();
        for (int64_t i = 0; i < n; i++) {
            double v = 0.3 * gaussian();
            for (int k = 0; k < factors; k++) v += 0.4 * f[k] * mix[k * n + i];
            x[i] = v * (i % 17 == 3 ? 6.0 : 1.0);
        }
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) h[i * n + j] += x[i] * x[j];
    }
    free(mix);
    free(x);
    return h;
}

/* Solves a x = b (a n x n, destroyed) by Gaussian elimination with partial pivoting. */
static void solve(double *a, double *b, int64_t n) {
    for (int64_t c = 0; c < n; c++) {
        int64_t p = c;
        for (int64_t r = c + 1; r < n; r++)
            if (fabs(a[r * n + c]) > fabs(a[p * n + c])) p = r;
        for (int64_t k = 0; k < n; k++) {
            double t = a[c * n + k];
            a[c * n + k] = a[p * n + k];
            a[p * n + k] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (int64_t r = c + 1; r < n; r++) {
            double f = a[r * n + c] / a[c * n + c];
            for (int64_t k = c; k < n; k++) a[r * n + k] -= f * a[c * n + k];
            b[r] -= f * b[c];
        }
    }
    for (int64_t c = n - 1; c >= 0; c--) {
        for (int64_t k = c + 1; k < n; k++) b[c] -= a[c * n + k] * b[k];
        b[c] /= a[c * n + c];
    }
}

static void test_inverse_factor(void **state) {
    (void)state;
    int64_t n = 48;
    double *h = correlated_hessian(n, 200, 7);
    float *u = malloc(sizeof(float) * (size_t)(n * n));
    ts_error err = {{0}};
    assert_int_equal(ts_gptq_inverse_factor(h, n, 0.0, u, &err), 0);
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            if (j < i) assert_true(u[i * n + j] == 0.0f); /* upper triangular */
            double s = 0.0;                               /* (u^T u h)[i][j] */
            for (int64_t k = 0; k < n; k++) {
                double utu = 0.0;
                for (int64_t m = 0; m < n; m++) utu += (double)u[m * n + i] * u[m * n + k];
                s += utu * h[k * n + j];
            }
            double d = fabs(s - (i == j ? 1.0 : 0.0));
            worst = d > worst ? d : worst;
        }
    assert_true(worst < 2e-3);
    /* a singular H without damping is refused with a reason */
    double *z = calloc((size_t)(n * n), sizeof(double));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) z[i * n + j] = 1.0; /* rank one, every input the same */
    assert_int_not_equal(ts_gptq_inverse_factor(z, n, 0.0, u, &err), 0);
    assert_non_null(strstr(err.message, "not positive definite"));
    assert_int_equal(ts_gptq_inverse_factor(z, n, 0.01, u, &err), 0);
    free(z);
    free(h);
    free(u);
}

/* After columns 0..k-1 are fixed at q (each chosen from the column as the earlier updates left it), the
 * others must be w_F + d_F with d_F = -H_FF^-1 H_FS (q_S - w_S): the least output error given q_S. */
static void test_feedback_closed_form(void **state) {
    (void)state;
    int64_t n = 40, k = 13;
    double *h = correlated_hessian(n, 160, 11);
    float *u = malloc(sizeof(float) * (size_t)(n * n)), *x = malloc(sizeof(float) * (size_t)n);
    double *w = malloc(sizeof(double) * (size_t)n);
    ts_error err = {{0}};
    assert_int_equal(ts_gptq_inverse_factor(h, n, 0.0, u, &err), 0);
    g_state = 99;
    for (int64_t i = 0; i < n; i++) x[i] = (float)(w[i] = gaussian());
    for (int64_t j = 0; j < k; j++) ts_gptq_feedback(x, u, n, j, roundf(x[j] * 2.0f) / 2.0f);
    int64_t f = n - k;
    double *a = malloc(sizeof(double) * (size_t)(f * f)), *b = malloc(sizeof(double) * (size_t)f);
    for (int64_t i = 0; i < f; i++) {
        for (int64_t j = 0; j < f; j++) a[i * f + j] = h[(k + i) * n + k + j];
        b[i] = 0.0;
        for (int64_t j = 0; j < k; j++) b[i] -= h[(k + i) * n + j] * ((double)x[j] - w[j]);
    }
    solve(a, b, f);
    double worst = 0.0, scale = 0.0;
    for (int64_t i = 0; i < f; i++) {
        double want = w[k + i] + b[i];
        worst = fmax(worst, fabs((double)x[k + i] - want));
        scale = fmax(scale, fabs(b[i]));
    }
    assert_true(scale > 0.1); /* the feedback moved something */
    assert_true(worst < 1e-3 * (1.0 + scale));
    free(a);
    free(b);
    free(h);
    free(u);
    free(x);
    free(w);
}

static double output_error(const float *w, const float *q, int64_t rows, int64_t cols, const double *h) {
    double total = 0.0;
    double *e = malloc(sizeof(double) * (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) e[c] = (double)q[r * cols + c] - w[r * cols + c];
        for (int64_t i = 0; i < cols; i++) {
            double s = 0.0;
            for (int64_t j = 0; j < cols; j++) s += h[i * cols + j] * e[j];
            total += e[i] * s;
        }
    }
    free(e);
    return total;
}

static void dequantize_matrix(ts_dtype t, const void *src, int64_t rows, int64_t cols, float *out) {
    size_t rb = ts_dtype_row_bytes(t, cols);
    for (int64_t r = 0; r < rows; r++) ts_dequantize_row(t, (const uint8_t *)src + (size_t)r * rb, out + r * cols, cols);
}

static void test_beats_uncalibrated(void **state) {
    (void)state;
    const ts_dtype types[] = {TS_DTYPE_IQ4_NL, TS_DTYPE_Q4_0, TS_DTYPE_Q4_K, TS_DTYPE_IQ4_XS};
    int64_t rows = 24, cols = 256;
    double *h = correlated_hessian(cols, 1024, 5);
    float *w = malloc(sizeof(float) * (size_t)(rows * cols)), *q = malloc(sizeof(float) * (size_t)(rows * cols));
    g_state = 1234;
    for (int64_t i = 0; i < rows * cols; i++) w[i] = (float)(0.02 * gaussian() * (i % 97 == 5 ? 4.0 : 1.0));
    ts_error err = {{0}};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        ts_dtype t = types[ti];
        size_t bytes = ts_dtype_row_bytes(t, cols) * (size_t)rows;
        void *buf = malloc(bytes);
        assert_int_equal(ts_quantize_tensor(t, w, TS_DTYPE_F32, rows, cols, buf, NULL, 1, &err), 0);
        dequantize_matrix(t, buf, rows, cols, q);
        double plain = output_error(w, q, rows, cols, h);
        for (int act = 0; act <= 1; act++) {
            ts_gptq_options o;
            ts_gptq_options_init(&o);
            o.act_order = act;
            assert_int_equal(ts_gptq_quantize(t, w, rows, cols, h, &o, buf, 2, &err), 0);
            dequantize_matrix(t, buf, rows, cols, q);
            double cal = output_error(w, q, rows, cols, h);
            print_message("%s act_order %d: output error %.4g, uncalibrated %.4g (%.2fx)\n", ts_dtype_get(t)->name, act,
                          cal, plain, plain / cal);
            assert_true(cal < 0.8 * plain);
        }
        free(buf);
    }
    /* what it cannot write, it refuses with the reason */
    void *buf = malloc(ts_dtype_row_bytes(TS_DTYPE_Q8_0, cols) * (size_t)rows);
    ts_gptq_options o;
    ts_gptq_options_init(&o);
    assert_int_not_equal(ts_gptq_quantize(TS_DTYPE_Q8_0, w, rows, cols, h, &o, buf, 1, &err), 0);
    assert_non_null(strstr(err.message, "q8_0"));
    assert_int_not_equal(ts_gptq_quantize(TS_DTYPE_Q4_K, w, rows, 96, h, &o, buf, 1, &err), 0);
    assert_non_null(strstr(err.message, "blocks of 256"));
    free(buf);
    free(h);
    free(w);
    free(q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inverse_factor),
        cmocka_unit_test(test_feedback_closed_form),
        cmocka_unit_test(test_beats_uncalibrated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
