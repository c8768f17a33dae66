/* Reference quantizers: one row of float32 into a GGUF block type, computing exactly what ggml's
 * quantize_row_<type>_ref computes (same search steps, same float operations in the same order), so
 * that a model quantized by tessera is byte-identical to one quantized by llama.cpp without an
 * importance matrix. Built without floating-point contraction (C11 mode), which the bit-exactness
 * relies on. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant/float16.h"
#include "quant/k_scales.h"
#include "quant/quantize.h"
#include "quant/quantize_internal.h"

/* Groups whose largest magnitude is below this are treated as all zero. */
#define TS_GROUP_EPS 1e-15f

static void ref_q8_0(const float *x, ts_block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += TS_QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < TS_QK8_0; j++) {
            float a = fabsf(x[j]);
            amax = amax > a ? amax : a;
        }
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = ts_f32_to_f16(d);
        for (int j = 0; j < TS_QK8_0; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

static void ref_q4_0(const float *x, ts_block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += TS_QK4_0) {
        float amax;
        const float max = ts_max_magnitude(x, TS_QK4_0, &amax);
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = ts_f32_to_f16(d);
        for (int j = 0; j < TS_QK4_0 / 2; j++) {
            int lo = (int8_t)(x[j] * id + 8.5f);
            int hi = (int8_t)(x[j + TS_QK4_0 / 2] * id + 8.5f);
            if (lo > 15) lo = 15;
            if (hi > 15) hi = 15;
            y[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void ref_q4_1(const float *x, ts_block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += TS_QK4_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < TS_QK4_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = ts_f32_to_f16(d);
        y[i].m = ts_f32_to_f16(min);
        for (int j = 0; j < TS_QK4_1 / 2; j++) {
            int lo = (int8_t)((x[j] - min) * id + 0.5f);
            int hi = (int8_t)((x[j + TS_QK4_1 / 2] - min) * id + 0.5f);
            if (lo > 15) lo = 15;
            if (hi > 15) hi = 15;
            y[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

/* Fits levels 0..nmax with a scale and a (non-positive) offset to 32 weighted values by trying
 * nstep+1 stretched grids around the min-max one and solving least squares on each. Returns the
 * scale; *neg_min receives minus the offset. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L, float *neg_min,
                           uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = ts_nearest_int(iscale * (x[i] - min));
        l = l < 0 ? 0 : l > nmax ? nmax : l;
        L[i] = (uint8_t)l;
        float diff = scale * L[i] + min - x[i];
        best_error += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = ts_nearest_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                cur_error += w[i] * (diff * diff);
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

/* Q4_K and Q5_K share the super-block scheme: 8 groups of 32, each with a 6-bit scale and a 6-bit
 * minimum relative to two fp16 super-block factors. */
static void ref_k_scales(const float *x, int nmax, float rmin, int nstep, uint16_t *d_out, uint16_t *dmin_out,
                         uint8_t scales_out[TS_K_SCALE_SIZE], uint8_t L[TS_QK_K]) {
    float scales[TS_QK_K / 32], mins[TS_QK_K / 32], weights[32];
    uint8_t Laux[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < TS_QK_K / 32; j++) {
        const float *g = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += g[l] * g[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(g[l]);
        scales[j] = fit_scale_min(32, nmax, g, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        int a = (uint8_t)ts_nearest_int(inv_scale * scales[j]);
        int b = (uint8_t)ts_nearest_int(inv_min * mins[j]);
        ls[j] = (uint8_t)(a < 63 ? a : 63);
        lm[j] = (uint8_t)(b < 63 ? b : 63);
    }
    ts_k_pack_scales(ls, lm, scales_out);
    *d_out = ts_f32_to_f16(max_scale / 63.f);
    *dmin_out = ts_f32_to_f16(max_min / 63.f);
    /* Requantize against the rounded scales that the decoder will see. */
    for (int j = 0; j < 8; j++) {
        int sc, m;
        ts_k_scale_min(j, scales_out, &sc, &m);
        const float d = ts_f16_to_f32(*d_out) * sc;
        if (d == 0.0f) continue;
        const float dm = ts_f16_to_f32(*dmin_out) * m;
        for (int ii = 0; ii < 32; ii++) {
            int l = ts_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        }
    }
}

static void ref_q4_k(const float *x, ts_block_q4_k *y, int64_t nb) {
    uint8_t L[TS_QK_K];
    for (int64_t i = 0; i < nb; i++, x += TS_QK_K) {
        ref_k_scales(x, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        ts_pack_q4_k_levels(L, y[i].qs);
    }
}

static void ref_q5_k(const float *x, ts_block_q5_k *y, int64_t nb) {
    uint8_t L[TS_QK_K];
    for (int64_t i = 0; i < nb; i++, x += TS_QK_K) {
        ref_k_scales(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        ts_pack_q5_k_levels(L, y[i].qh, y[i].qs);
    }
}

/* Symmetric fit of 16 values to levels -nmax..nmax-1 weighted by x^2, trying 18 grids around the
 * max-magnitude one. Returns the scale; L receives levels offset by nmax. */
static float fit_symmetric_x2(int n, int nmax, const float *x, int8_t *L) {
    float amax;
    const float max = ts_max_magnitude(x, n, &amax);
    if (amax < TS_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = ts_nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = ts_nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = ts_nearest_int(iscale * x[i]);
                l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static void ref_q6_k(const float *x, ts_block_q6_k *y, int64_t nb) {
    int8_t L[TS_QK_K];
    float scales[TS_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += TS_QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < TS_QK_K / 16; ib++) {
            const float scale = fit_symmetric_x2(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            if (fabsf(scale) > max_abs_scale) {
                max_abs_scale = fabsf(scale);
                max_scale = scale;
            }
        }
        if (max_abs_scale < TS_GROUP_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = ts_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < TS_QK_K / 16; ib++) {
            int s = ts_nearest_int(iscale * scales[ib]);
            y[i].scales[ib] = (int8_t)(s < 127 ? s : 127);
        }
        ts_q6_k_requantize(x, &y[i], L);
    }
}

static void ref_q8_k(const float *x, ts_block_q8_k *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += TS_QK_K) {
        float amax;
        const float max = ts_max_magnitude(x, TS_QK_K, &amax);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < TS_QK_K; j++) {
            int v = ts_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < TS_QK_K / 16; j++) {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* IQ4_NL without a search: the element of largest magnitude maps to the grid's end (-127), every other
 * element to its nearest level. */
static void ref_iq4_nl(const float *x, ts_block_iq4_nl *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += TS_QK4_NL) {
        float amax;
        const float max = ts_max_magnitude(x, TS_QK4_NL, &amax);
        uint16_t hd = ts_f32_to_f16(max / (float)ts_iq4_nl_values[0]);
        float d = ts_f16_to_f32(hd), id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = hd;
        for (int k = 0; k < TS_QK4_NL / 2; k++) {
            int lo = ts_iq4_nl_nearest(x[k] * id), hi = ts_iq4_nl_nearest(x[k + TS_QK4_NL / 2] * id);
            y[i].qs[k] = (uint8_t)(lo | (hi << 4));
        }
    }
}

/* IQ4_XS without a search: each sub-block's scale as IQ4_NL's reference takes it, the super-block's d
 * so that the sub-scale of largest magnitude is -32, every sub-scale rounded to its nearest multiple of
 * d, then every element to its nearest level under its sub-block's scale. */
static void ref_iq4_xs(const float *x, ts_block_iq4_xs *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += TS_QK_K) {
        float s[8], smax = 0.0f, amax = 0.0f;
        for (int j = 0; j < 8; j++) {
            float a;
            s[j] = ts_max_magnitude(x + 32 * j, 32, &a) / (float)ts_iq4_nl_values[0];
            if (fabsf(s[j]) > amax) {
                amax = fabsf(s[j]);
                smax = s[j];
            }
        }
        memset(&y[i], 0, sizeof y[i]);
        y[i].d = ts_f32_to_f16(smax / -32.0f);
        float d = ts_f16_to_f32(y[i].d), id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 8; j++) {
            int l = ts_nearest_int(s[j] * id);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            ts_iq4_xs_set_sub_scale(&y[i], j, l);
            float dl = d * (float)l, idl = dl != 0.0f ? 1.0f / dl : 0.0f;
            const float *xj = x + 32 * j;
            for (int k = 0; k < 16; k++) {
                int lo = ts_iq4_nl_nearest(xj[k] * idl), hi = ts_iq4_nl_nearest(xj[k + 16] * idl);
                y[i].qs[16 * j + k] = (uint8_t)(lo | (hi << 4));
            }
        }
    }
}

void ts_quantize_row(ts_dtype t, const float *src, void *dst, int64_t n) {
    int64_t nb = n / ts_dtype_get(t)->block_size;
    switch (t) {
    case TS_DTYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case TS_DTYPE_F16: {
        uint16_t *o = dst;
        for (int64_t i = 0; i < n; i++) o[i] = ts_f32_to_f16(src[i]);
        break;
    }
    case TS_DTYPE_BF16: {
        uint16_t *o = dst;
        for (int64_t i = 0; i < n; i++) o[i] = ts_f32_to_bf16(src[i]);
        break;
    }
    case TS_DTYPE_Q8_0: ref_q8_0(src, dst, nb); break;
    case TS_DTYPE_Q4_0: ref_q4_0(src, dst, nb); break;
    case TS_DTYPE_Q4_1: ref_q4_1(src, dst, nb); break;
    case TS_DTYPE_Q4_K: ref_q4_k(src, dst, nb); break;
    case TS_DTYPE_Q5_K: ref_q5_k(src, dst, nb); break;
    case TS_DTYPE_Q6_K: ref_q6_k(src, dst, nb); break;
    case TS_DTYPE_Q8_K: ref_q8_k(src, dst, nb); break;
    case TS_DTYPE_IQ4_NL: ref_iq4_nl(src, dst, nb); break;
    case TS_DTYPE_IQ4_XS: ref_iq4_xs(src, dst, nb); break;
    default: break;
    }
}
