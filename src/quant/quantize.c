/* Row and tensor entry points of quantization: choosing between the reference and the searching
 * quantizers, converting any stored type to any other (dequantizing first when needed), and
 * spreading rows over threads. */
#include "quant/quantize.h"

#include <stdlib.h>
#include <string.h>

#include "base/parallel.h"
#include "quant/dequantize.h"
#include "quant/quantize_internal.h"

void ts_quantize_row_best(ts_dtype t, const float *src, void *dst, int64_t n, const float *importance) {
    int64_t nb = n / ts_dtype_get(t)->block_size;
    switch (t) {
    case TS_DTYPE_Q4_0: ts_search_q4_0(src, dst, nb, importance); break;
    case TS_DTYPE_Q4_1: ts_search_q4_1(src, dst, nb, importance); break;
    case TS_DTYPE_Q4_K: ts_search_q4_k(src, dst, nb, importance); break;
    case TS_DTYPE_Q5_K: ts_search_q5_k(src, dst, nb, importance); break;
    case TS_DTYPE_Q6_K: ts_search_q6_k(src, dst, nb, importance); break;
    case TS_DTYPE_IQ4_NL: ts_search_iq4_nl(src, dst, nb, importance); break;
    case TS_DTYPE_IQ4_XS: ts_search_iq4_xs(src, dst, nb, importance); break;
    default: ts_quantize_row(t, src, dst, n); break;
    }
}

double ts_quant_row_sq_error(ts_dtype t, const float *src, int64_t n, const float *importance) {
    size_t bytes = ts_dtype_row_bytes(t, n);
    void *q = malloc(bytes ? bytes : 1);
    float *back = malloc((size_t)n * sizeof(float));
    double e = -1.0;
    if (q && back) {
        ts_quantize_row_best(t, src, q, n, importance);
        ts_dequantize_row(t, q, back, n);
        e = 0.0;
        for (int64_t i = 0; i < n; i++) {
            double d = (double)back[i] - (double)src[i];
            e += (importance ? importance[i] : 1.0) * d * d;
        }
    }
    free(q);
    free(back);
    return e;
}

typedef struct convert_job {
    ts_dtype dst_type, src_type;
    const uint8_t *src;
    uint8_t *dst;
    int64_t row_begin, row_end, cols;
    size_t src_row_bytes, dst_row_bytes;
    const float *importance;
    int use_search;
    int failed;
} convert_job;

static void *convert_rows(void *arg) {
    convert_job *j = arg;
    float *row = NULL;
    if (j->src_type != TS_DTYPE_F32) {
        row = malloc((size_t)j->cols * sizeof(float));
        if (!row) {
            j->failed = 1;
            return NULL;
        }
    }
    for (int64_t r = j->row_begin; r < j->row_end; r++) {
        const uint8_t *s = j->src + (size_t)r * j->src_row_bytes;
        uint8_t *d = j->dst + (size_t)r * j->dst_row_bytes;
        if (j->src_type == j->dst_type) {
            memcpy(d, s, j->dst_row_bytes);
            continue;
        }
        const float *x = (const float *)s;
        if (row) {
            ts_dequantize_row(j->src_type, s, row, j->cols);
            x = row;
        }
        if (j->use_search) ts_quantize_row_best(j->dst_type, x, d, j->cols, j->importance);
        else ts_quantize_row(j->dst_type, x, d, j->cols);
    }
    free(row);
    return NULL;
}

static int convert(ts_dtype dst_type, const void *src, ts_dtype src_type, int64_t rows, int64_t cols, void *dst,
                   const float *importance, int use_search, int n_threads, ts_error *err) {
    const ts_dtype_info *di = ts_dtype_get(dst_type), *si = ts_dtype_get(src_type);
    if (!di || !si) return ts_fail(err, "quantize: unknown tensor type (source %d, target %d)", (int)src_type, (int)dst_type);
    if (rows < 0 || cols <= 0) return ts_fail(err, "quantize: bad tensor shape [%lld, %lld]", (long long)rows, (long long)cols);
    if (cols % di->block_size != 0)
        return ts_fail(err, "quantize: rows of %lld values do not fill whole %s blocks of %d", (long long)cols, di->name,
                       di->block_size);
    if (cols % si->block_size != 0)
        return ts_fail(err, "quantize: rows of %lld values do not fill whole %s blocks of %d (source)", (long long)cols,
                       si->name, si->block_size);
    if (n_threads < 1) n_threads = 1;
    if (n_threads > TS_MAX_JOBS) n_threads = TS_MAX_JOBS;
    if ((int64_t)n_threads > rows) n_threads = rows > 0 ? (int)rows : 1;
    convert_job jobs[TS_MAX_JOBS];
    for (int t = 0; t < n_threads; t++) {
        jobs[t] = (convert_job){
            .dst_type = dst_type,
            .src_type = src_type,
            .src = src,
            .dst = dst,
            .row_begin = rows * t / n_threads,
            .row_end = rows * (t + 1) / n_threads,
            .cols = cols,
            .src_row_bytes = ts_dtype_row_bytes(src_type, cols),
            .dst_row_bytes = ts_dtype_row_bytes(dst_type, cols),
            .importance = importance,
            .use_search = use_search,
        };
    }
    ts_run_jobs(convert_rows, jobs, sizeof jobs[0], n_threads);
    int failed = 0;
    for (int t = 0; t < n_threads; t++) failed |= jobs[t].failed;
    if (failed) return ts_fail(err, "quantize: out of memory for a row buffer of %lld values", (long long)cols);
    return 0;
}

int ts_quantize_tensor(ts_dtype dst_type, const void *src, ts_dtype src_type, int64_t rows, int64_t cols, void *dst,
                       const float *importance, int n_threads, ts_error *err) {
    return convert(dst_type, src, src_type, rows, cols, dst, importance, 1, n_threads, err);
}

int ts_quantize_tensor_ref(ts_dtype dst_type, const void *src, ts_dtype src_type, int64_t rows, int64_t cols,
                           void *dst, int n_threads, ts_error *err) {
    return convert(dst_type, src, src_type, rows, cols, dst, NULL, 0, n_threads, err);
}
