/* GPTQ over rows: every row of W is an independent problem once H is factored (the same factor serves
 * all rows), so rows are spread over threads and each row is worked in a private float copy: quantize
 * column j with its block's parameters, then subtract the scaled error times row j of the factor from
 * the columns after it. */
#include "quant/gptq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/parallel.h"
#include "quant/float16.h"
#include "quant/k_scales.h"
#include "quant/quantize.h"
#include "quant/quantize_internal.h"

void ts_gptq_options_init(ts_gptq_options *o) {
    o->damp = 0.01;
    o->act_order = 0;
}

int ts_gptq_supported(ts_dtype t) {
    return t == TS_DTYPE_IQ4_NL || t == TS_DTYPE_IQ4_XS || t == TS_DTYPE_Q4_0 || t == TS_DTYPE_Q4_K;
}

int ts_gptq_inverse_factor(const double *h, int64_t n, double damp, float *u, ts_error *err) {
    double *v = malloc((size_t)n * (size_t)n * sizeof *v), *acc = malloc((size_t)n * sizeof *acc);
    if (!v || !acc) {
        free(v);
        free(acc);
        return ts_fail(err, "gptq: out of memory for a %lld x %lld factor", (long long)n, (long long)n);
    }
    double mean = 0.0;
    for (int64_t i = 0; i < n; i++) mean += h[i * n + i];
    mean /= (double)n;
    /* v upper triangular with v v^T = A (A = h damped; an input that never varies gets a unit diagonal,
     * which decouples its column). Built from the last row up: the Cholesky factorization of A with
     * its indices reversed. Then u = v^-1 satisfies u^T u = v^-T v^-1 = A^-1, the factor GPTQ needs,
     * at a third of the work of inverting A and factoring the inverse. */
    for (int64_t j = n - 1; j >= 0; j--) {
        const double *vj = v + j * n;
        double d = h[j * n + j] > 0.0 ? h[j * n + j] + damp * mean : 1.0;
        for (int64_t k = j + 1; k < n; k++) d -= vj[k] * vj[k];
        if (!(d > 0.0)) {
            free(v);
            free(acc);
            return ts_fail(err, "gptq: the input Hessian is not positive definite at column %lld even with damping "
                                "%g; use more calibration text or a larger damping",
                           (long long)j, damp);
        }
        d = sqrt(d);
        v[j * n + j] = d;
        for (int64_t i = 0; i < j; i++) {
            double *vi = v + i * n;
            double s = h[i * n + j];
            if (h[j * n + j] <= 0.0 || h[i * n + i] <= 0.0) s = 0.0;
            for (int64_t k = j + 1; k < n; k++) s -= vi[k] * vj[k];
            vi[j] = s / d;
        }
    }
    /* Row i of u solves x^T v = e_i (x_k = 0 for k < i), by forward substitution along v's rows. */
    for (int64_t i = 0; i < n; i++) {
        memset(acc, 0, (size_t)n * sizeof *acc);
        float *ui = u + i * n;
        for (int64_t k = 0; k < i; k++) ui[k] = 0.0f;
        for (int64_t j = i; j < n; j++) {
            double x = ((j == i ? 1.0 : 0.0) - acc[j]) / v[j * n + j];
            ui[j] = (float)x;
            const double *vj = v + j * n;
            for (int64_t k = j + 1; k < n; k++) acc[k] += x * vj[k];
        }
    }
    free(v);
    free(acc);
    return 0;
}

void ts_gptq_feedback(float *x, const float *u, int64_t n, int64_t j, float q) {
    const float *uj = u + j * n;
    float e = (x[j] - q) / uj[j];
    x[j] = q;
    for (int64_t k = j + 1; k < n; k++) x[k] -= e * uj[k];
}

/* One block's decoding parameters, read back from the block the ordinary quantizer wrote. */
typedef struct block_params {
    float scale[8], offset[8]; /* per 32 values: value = scale * level - offset (Q4_K), scale * grid value
                                  (IQ4_XS); scale[0] only otherwise */
} block_params;

static void read_params(ts_dtype t, const void *blk, block_params *p) {
    memset(p, 0, sizeof *p);
    if (t == TS_DTYPE_Q4_K) {
        const ts_block_q4_k *b = blk;
        float d = ts_f16_to_f32(b->d), dmin = ts_f16_to_f32(b->dmin);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            ts_k_scale_min(j, b->scales, &sc, &m);
            p->scale[j] = d * (float)sc;
            p->offset[j] = dmin * (float)m;
        }
    } else if (t == TS_DTYPE_IQ4_XS) {
        const ts_block_iq4_xs *b = blk;
        for (int j = 0; j < 8; j++) p->scale[j] = ts_f16_to_f32(b->d) * (float)ts_iq4_xs_sub_scale(b, j);
    } else if (t == TS_DTYPE_Q4_0) {
        p->scale[0] = ts_f16_to_f32(((const ts_block_q4_0 *)blk)->d);
    } else {
        p->scale[0] = ts_f16_to_f32(((const ts_block_iq4_nl *)blk)->d);
    }
}

static inline int clamp15(int v) { return v < 0 ? 0 : v > 15 ? 15 : v; }

/* The level nearest x under fixed parameters (k: x's index in its block); *q gets its value. */
static uint8_t quantize_one(ts_dtype t, const block_params *p, int k, float x, float *q) {
    if (t == TS_DTYPE_Q4_K) {
        float a = p->scale[k / 32], b = p->offset[k / 32];
        int l = a > 0.0f ? clamp15(ts_nearest_int((x + b) / a)) : 0;
        *q = a * (float)l - b;
        return (uint8_t)l;
    }
    float d = p->scale[t == TS_DTYPE_IQ4_XS ? k / 32 : 0];
    if (t == TS_DTYPE_Q4_0) {
        int l = d != 0.0f ? clamp15(ts_nearest_int(x / d) + 8) : 8;
        *q = d * (float)(l - 8);
        return (uint8_t)l;
    }
    int l = d != 0.0f ? ts_iq4_nl_nearest(x / d) : 8; /* level 8 (value 1) is the one nearest zero */
    *q = d * (float)ts_iq4_nl_values[l];
    return (uint8_t)l;
}

static void pack_levels(ts_dtype t, const uint8_t *L, void *blk) {
    if (t == TS_DTYPE_Q4_K) {
        ts_pack_q4_k_levels(L, ((ts_block_q4_k *)blk)->qs);
        return;
    }
    if (t == TS_DTYPE_IQ4_XS) {
        for (int j = 0; j < 8; j++) ts_pack_q4_32_levels(L + 32 * j, ((ts_block_iq4_xs *)blk)->qs + 16 * j);
        return;
    }
    ts_pack_q4_32_levels(L, t == TS_DTYPE_Q4_0 ? ((ts_block_q4_0 *)blk)->qs : ((ts_block_iq4_nl *)blk)->qs);
}

typedef struct gptq_job {
    ts_dtype t;
    const float *w, *u;
    const int64_t *perm, *pos;
    int64_t row_begin, row_end, cols;
    int bs;
    size_t row_bytes, block_bytes;
    uint8_t *dst;
    int failed;
} gptq_job;

static void *gptq_rows(void *arg) {
    gptq_job *j = arg;
    int64_t cols = j->cols, ngroups = cols / j->bs;
    float *x = malloc((size_t)cols * sizeof *x), *tmp = malloc((size_t)j->bs * sizeof *tmp);
    uint8_t *levels = malloc((size_t)cols), *fitted = malloc((size_t)ngroups);
    block_params *params = malloc((size_t)ngroups * sizeof *params);
    if (!x || !tmp || !levels || !fitted || !params) {
        j->failed = 1;
        goto done;
    }
    for (int64_t r = j->row_begin; r < j->row_end; r++) {
        const float *wr = j->w + r * cols;
        uint8_t *out = j->dst + (size_t)r * j->row_bytes;
        for (int64_t c = 0; c < cols; c++) x[c] = wr[j->perm[c]];
        memset(fitted, 0, (size_t)ngroups);
        for (int64_t c = 0; c < cols; c++) {
            int64_t orig = j->perm[c], g = orig / j->bs;
            uint8_t *blk = out + (size_t)g * j->block_bytes;
            if (!fitted[g]) {
                /* none of the block's columns is quantized yet: search its parameters on their values now */
                for (int k = 0; k < j->bs; k++) tmp[k] = x[j->pos[g * j->bs + k]];
                ts_quantize_row_best(j->t, tmp, blk, j->bs, NULL);
                read_params(j->t, blk, &params[g]);
                fitted[g] = 1;
            }
            float q;
            levels[orig] = quantize_one(j->t, &params[g], (int)(orig % j->bs), x[c], &q);
            ts_gptq_feedback(x, j->u, cols, c, q);
        }
        for (int64_t g = 0; g < ngroups; g++) pack_levels(j->t, levels + g * j->bs, out + (size_t)g * j->block_bytes);
    }
done:
    free(x);
    free(tmp);
    free(levels);
    free(fitted);
    free(params);
    return NULL;
}

int ts_gptq_quantize(ts_dtype t, const float *w, int64_t rows, int64_t cols, const double *h,
                     const ts_gptq_options *opt, void *dst, int n_threads, ts_error *err) {
    if (!ts_gptq_supported(t))
        return ts_fail(err, "gptq: calibrated quantization writes iq4_nl, iq4_xs, q4_0 or q4_k, not %s", ts_dtype_get(t)->name);
    int bs = ts_dtype_get(t)->block_size;
    if (rows <= 0 || cols <= 0 || cols % bs != 0)
        return ts_fail(err, "gptq: a [%lld, %lld] matrix does not fill whole %s blocks of %d", (long long)rows,
                       (long long)cols, ts_dtype_get(t)->name, bs);
    int64_t *perm = malloc((size_t)cols * sizeof *perm), *pos = malloc((size_t)cols * sizeof *pos);
    double *hp = malloc((size_t)cols * (size_t)cols * sizeof *hp);
    float *u = malloc((size_t)cols * (size_t)cols * sizeof *u);
    int rc = -1;
    if (!perm || !pos || !hp || !u) {
        ts_fail(err, "gptq: out of memory for a %lld-column Hessian", (long long)cols);
        goto done;
    }
    for (int64_t c = 0; c < cols; c++) perm[c] = c;
    if (opt->act_order) { /* insertion sort by decreasing diagonal, stable: ties keep column order */
        for (int64_t c = 1; c < cols; c++) {
            int64_t v = perm[c], k = c;
            while (k > 0 && h[perm[k - 1] * cols + perm[k - 1]] < h[v * cols + v]) {
                perm[k] = perm[k - 1];
                k--;
            }
            perm[k] = v;
        }
    }
    for (int64_t c = 0; c < cols; c++) pos[perm[c]] = c;
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = 0; b < cols; b++) hp[a * cols + b] = h[perm[a] * cols + perm[b]];
    if (ts_gptq_inverse_factor(hp, cols, opt->damp, u, err) != 0) goto done;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > TS_MAX_JOBS) n_threads = TS_MAX_JOBS;
    if ((int64_t)n_threads > rows) n_threads = (int)rows;
    gptq_job jobs[TS_MAX_JOBS];
    for (int i = 0; i < n_threads; i++)
        jobs[i] = (gptq_job){.t = t, .w = w, .u = u, .perm = perm, .pos = pos, .row_begin = rows * i / n_threads,
                             .row_end = rows * (i + 1) / n_threads, .cols = cols, .bs = bs,
                             .row_bytes = ts_dtype_row_bytes(t, cols), .block_bytes = ts_dtype_get(t)->block_bytes,
                             .dst = dst};
    ts_run_jobs(gptq_rows, jobs, sizeof jobs[0], n_threads);
    int failed = 0;
    for (int i = 0; i < n_threads; i++) failed |= jobs[i].failed;
    if (failed) ts_fail(err, "gptq: out of memory for row buffers of %lld values", (long long)cols);
    else rc = 0;
done:
    free(perm);
    free(pos);
    free(hp);
    free(u);
    return rc;
}
