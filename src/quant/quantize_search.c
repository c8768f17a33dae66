/* Error-minimising quantizers. For every group: a few stretched level grids around the min-max one,
 * each rounded, solved for the least-squares scale (and minimum) and re-rounded once against the
 * solution (a Lloyd step); the error of a candidate comes from running sums in closed form, so each
 * costs two passes over the group. K-quants then pick the super-block factors and nudge each group's
 * 6-bit scale/minimum codes by one where that lowers the error the decoder will really produce.
 * Element weights are the caller's importance (activation statistics) times a magnitude term (rms of
 * the group + |x|), or the magnitude term alone. About a third of the reference quantizer's work. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "quant/float16.h"
#include "quant/quantize_internal.h"

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Weighted sums of a group that do not depend on the levels. */
typedef struct group_stats {
    double sw, swx, swxx;
} group_stats;

/* Weighted sums over the levels of one assignment. */
typedef struct level_sums {
    double swl, swll, swxl;
} level_sums;

static void group_weights(const float *x, const float *imp, int n, float *w, group_stats *st) {
    float s2 = 0;
    for (int i = 0; i < n; i++) s2 += x[i] * x[i];
    float rms = sqrtf(s2 / (float)n);
    double sw = 0, swx = 0, swxx = 0;
    for (int i = 0; i < n; i++) {
        w[i] = (imp ? imp[i] : 1.0f) * (rms + fabsf(x[i]));
        sw += w[i];
        swx += (double)w[i] * x[i];
        swxx += (double)w[i] * x[i] * x[i];
    }
    st->sw = sw;
    st->swx = swx;
    st->swxx = swxx;
}

/* Rounds (x - off) * inv to levels lo..hi (stored in L + bias unless L is NULL) and accumulates the
 * level sums. Written as four
 * independent float lanes with rounding by the 1.5 * 2^23 trick (round to nearest even, like
 * ts_nearest_int) so that the compiler can keep it in SIMD registers: this loop is most of the cost. */
static void round_pass(int n, const float *x, const float *w, float inv, float off, int lo, int hi, uint8_t *L,
                       int bias, level_sums *s) {
    const float magic = 12582912.0f, flo = (float)lo, fhi = (float)hi;
    float a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0}, c[4] = {0, 0, 0, 0}, r[4];
    for (int i = 0; i < n; i += 4) {
        for (int k = 0; k < 4; k++) {
            float v = (x[i + k] - off) * inv;
            v = v < flo ? flo : v;
            v = v > fhi ? fhi : v;
            r[k] = (v + magic) - magic;
        }
        for (int k = 0; k < 4; k++) {
            float wl = w[i + k] * r[k];
            a[k] += wl;
            b[k] += wl * r[k];
            c[k] += wl * x[i + k];
        }
        if (L)
            for (int k = 0; k < 4; k++) L[i + k] = (uint8_t)((int)r[k] + bias);
    }
    s->swl = (double)a[0] + a[1] + a[2] + a[3];
    s->swll = (double)b[0] + b[1] + b[2] + b[3];
    s->swxl = (double)c[0] + c[1] + c[2] + c[3];
}

static double affine_error(const group_stats *g, const level_sums *s, double scale, double off) {
    return g->swxx - 2 * scale * s->swxl - 2 * off * g->swx + scale * scale * s->swll + 2 * scale * off * s->swl +
           off * off * g->sw;
}

static int solve_affine(const group_stats *g, const level_sums *s, int off_nonpos, float *scale, float *off) {
    double D = g->sw * s->swll - s->swl * s->swl;
    if (!(D > 0)) return 0;
    double sc = (g->sw * s->swxl - g->swx * s->swl) / D;
    double o = (s->swll * g->swx - s->swl * s->swxl) / D;
    if (off_nonpos && o > 0) {
        o = 0;
        sc = s->swxl / s->swll;
    }
    if (!(sc > 0)) return 0;
    *scale = (float)sc;
    *off = (float)o;
    return 1;
}

/* Best (scale, offset) with levels 0..nmax for one group of n (a multiple of 4) values; callers round
 * the levels against the scale and offset they finally store. */
static float fit_affine(int n, int nmax, const float *x, const float *w, const group_stats *g, int off_nonpos,
                        float *off_out) {
    static const float stretch[] = {-0.5f, 0.0f, 0.5f};
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    if (off_nonpos && lo > 0) lo = 0;
    if (!(hi > lo)) {
        *off_out = lo;
        return 0.0f;
    }
    float best_s = (hi - lo) / (float)nmax, best_o = lo; /* the min-max grid, if nothing solves */
    double best = DBL_MAX;
    level_sums ls;
    for (int k = 0; k < 3; k++) {
        float inv = ((float)nmax + stretch[k]) / (hi - lo), s, o;
        round_pass(n, x, w, inv, lo, 0, nmax, NULL, 0, &ls);
        for (int step = 0; step < 2; step++) {
            if (!solve_affine(g, &ls, off_nonpos, &s, &o)) break;
            double e = affine_error(g, &ls, s, o);
            if (e < best) {
                best = e;
                best_s = s;
                best_o = o;
            }
            if (step == 0) round_pass(n, x, w, 1.0f / s, o, 0, nmax, NULL, 0, &ls); /* one Lloyd step */
        }
    }
    *off_out = best_o;
    return best_s;
}

/* Error of a group coded with a fixed scale and offset (levels re-rounded into L). */
static double coded_error(int n, int nmax, const float *x, const float *w, const group_stats *g, float scale,
                          float off, uint8_t *L) {
    level_sums ls;
    if (scale == 0.0f) {
        memset(L, 0, (size_t)n);
        memset(&ls, 0, sizeof ls);
        return affine_error(g, &ls, 0, off);
    }
    round_pass(n, x, w, 1.0f / scale, off, 0, nmax, L, 0, &ls);
    return affine_error(g, &ls, scale, off);
}

/* Super-block factor f (fp16) for 8 non-negative group values coded as round(v/f) in 0..63, chosen
 * for the least error weighted by each group's total weight. */
static float pick_superblock_factor(const float *v, const double *gw, uint8_t *codes) {
    float max = 0;
    for (int j = 0; j < 8; j++) max = v[j] > max ? v[j] : max;
    if (max <= 0) {
        memset(codes, 0, 8);
        return 0.0f;
    }
    float best_f = 0;
    double best_e = DBL_MAX;
    for (int k = -4; k <= 6; k++) {
        float f = ts_f16_to_f32(ts_f32_to_f16(max / (63.0f + 0.5f * (float)k)));
        if (!(f > 0)) continue;
        float inv = 1.0f / f;
        double e = 0;
        for (int j = 0; j < 8; j++) {
            int c = clampi(ts_nearest_int(v[j] * inv), 0, 63);
            double d = (double)v[j] - (double)f * c;
            e += gw[j] * d * d;
        }
        if (e < best_e) {
            best_e = e;
            best_f = f;
        }
    }
    if (!(best_f > 0)) { /* max below fp16's smallest step: nothing representable */
        memset(codes, 0, 8);
        return 0.0f;
    }
    for (int j = 0; j < 8; j++) codes[j] = (uint8_t)clampi(ts_nearest_int(v[j] / best_f), 0, 63);
    return best_f;
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31). */
static void search_k_block(const float *x, const float *imp, int nmax, uint16_t *d_out, uint16_t *dmin_out,
                           uint8_t scales[TS_K_SCALE_SIZE], uint8_t L[TS_QK_K]) {
    float w[TS_QK_K], sc[8], mn[8];
    group_stats gs[8];
    double gw[8];
    for (int j = 0; j < 8; j++) {
        group_weights(x + 32 * j, imp ? imp + 32 * j : NULL, 32, w + 32 * j, &gs[j]);
        float off;
        sc[j] = fit_affine(32, nmax, x + 32 * j, w + 32 * j, &gs[j], 1, &off);
        mn[j] = -off;
        gw[j] = gs[j].sw;
    }
    uint8_t ls[8], lm[8];
    float d = pick_superblock_factor(sc, gw, ls);
    float dmin = pick_superblock_factor(mn, gw, lm);
    uint8_t Lt[32];
    for (int j = 0; j < 8; j++) {
        const float *xg = x + 32 * j, *wg = w + 32 * j;
        double best = coded_error(32, nmax, xg, wg, &gs[j], d * ls[j], -dmin * lm[j], L + 32 * j);
        int bs = ls[j], bm = lm[j];
        static const int step[4][2] = {{-1, 0}, {1, 0}, {0, -1}, {0, 1}};
        for (int k = 0; k < 4; k++) {
            int s = ls[j] + step[k][0], m = lm[j] + step[k][1];
            if (s < 0 || s > 63 || m < 0 || m > 63) continue;
            double e = coded_error(32, nmax, xg, wg, &gs[j], d * (float)s, -dmin * (float)m, Lt);
            if (e < best) {
                best = e;
                bs = s;
                bm = m;
                memcpy(L + 32 * j, Lt, 32);
            }
        }
        ls[j] = (uint8_t)bs;
        lm[j] = (uint8_t)bm;
    }
    ts_k_pack_scales(ls, lm, scales);
    *d_out = ts_f32_to_f16(d);
    *dmin_out = ts_f32_to_f16(dmin);
}

void ts_search_q4_k(const float *x, ts_block_q4_k *y, int64_t nb, const float *imp) {
    uint8_t L[TS_QK_K];
    for (int64_t i = 0; i < nb; i++, x += TS_QK_K, imp = imp ? imp + TS_QK_K : NULL) {
        search_k_block(x, imp, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        ts_pack_q4_k_levels(L, y[i].qs);
    }
}

void ts_search_q5_k(const float *x, ts_block_q5_k *y, int64_t nb, const float *imp) {
    uint8_t L[TS_QK_K];
    for (int64_t i = 0; i < nb; i++, x += TS_QK_K, imp = imp ? imp + TS_QK_K : NULL) {
        search_k_block(x, imp, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
        ts_pack_q5_k_levels(L, y[i].qh, y[i].qs);
    }
}

void ts_search_q4_1(const float *x, ts_block_q4_1 *y, int64_t nb, const float *imp) {
    float w[TS_QK4_1];
    uint8_t L[TS_QK4_1];
    group_stats gs;
    for (int64_t i = 0; i < nb; i++, x += TS_QK4_1, imp = imp ? imp + TS_QK4_1 : NULL) {
        group_weights(x, imp, TS_QK4_1, w, &gs);
        float off;
        float s = fit_affine(TS_QK4_1, 15, x, w, &gs, 0, &off);
        /* The decoder sees fp16 scale and minimum: re-round the levels against those. */
        uint16_t hd = ts_f32_to_f16(s), hm = ts_f32_to_f16(off);
        coded_error(TS_QK4_1, 15, x, w, &gs, ts_f16_to_f32(hd), ts_f16_to_f32(hm), L);
        y[i].d = hd;
        y[i].m = hm;
        ts_pack_q4_32_levels(L, y[i].qs);
    }
}

/* Symmetric groups: x ~ scale * l with l in -zero..zero-1 (stored as l + zero). The extreme value
 * is tried at the level with the larger range (-zero) and at a few stretches around it. */
static float fit_symmetric(int n, int zero, const float *x, const float *w, const group_stats *g, uint8_t *L,
                           int n_stretch) {
    float amax;
    const float max = ts_max_magnitude(x, n, &amax);
    if (amax < 1e-30f) {
        memset(L, zero, (size_t)n);
        return 0.0f;
    }
    float best_s = -max / (float)zero;
    double best = DBL_MAX;
    level_sums ls;
    for (int k = 0; k < n_stretch; k++) {
        /* stretches of the extreme level: 0, +-0.25, +-0.5, +-0.75, +-1 */
        float st = 0.25f * (float)((k + 1) / 2) * (k % 2 ? 1.0f : -1.0f);
        float s = -max / ((float)zero + st);
        round_pass(n, x, w, 1.0f / s, 0.0f, -zero, zero - 1, NULL, zero, &ls);
        double e = affine_error(g, &ls, s, 0);
        if (e < best) {
            best = e;
            best_s = s;
        }
        if (!(ls.swll > 0)) continue;
        s = (float)(ls.swxl / ls.swll); /* least-squares scale for these levels */
        if (s == 0.0f) continue;
        round_pass(n, x, w, 1.0f / s, 0.0f, -zero, zero - 1, NULL, zero, &ls);
        e = affine_error(g, &ls, s, 0);
        if (e < best) {
            best = e;
            best_s = s;
        }
    }
    round_pass(n, x, w, 1.0f / best_s, 0.0f, -zero, zero - 1, L, zero, &ls);
    return best_s;
}

void ts_search_q6_k(const float *x, ts_block_q6_k *y, int64_t nb, const float *imp) {
    uint8_t L[TS_QK_K];
    float w[TS_QK_K], scales[TS_QK_K / 16];
    group_stats gs[TS_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += TS_QK_K, imp = imp ? imp + TS_QK_K : NULL) {
        float max_abs = 0, max_scale = 0;
        for (int g = 0; g < TS_QK_K / 16; g++) {
            group_weights(x + 16 * g, imp ? imp + 16 * g : NULL, 16, w + 16 * g, &gs[g]);
            scales[g] = fit_symmetric(16, 32, x + 16 * g, w + 16 * g, &gs[g], L + 16 * g, 5);
            if (fabsf(scales[g]) > max_abs) {
                max_abs = fabsf(scales[g]);
                max_scale = scales[g];
            }
        }
        if (max_abs < 1e-30f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* Super-block factor: the largest group scale near int8 code -128, a few choices tried. */
        double best_e = DBL_MAX;
        uint16_t best_d = 0;
        int8_t best_sc[16] = {0};
        for (int k = 0; k <= 4; k++) {
            float dd = ts_f16_to_f32(ts_f32_to_f16(max_scale / (-128.0f + 4.0f * (float)k)));
            if (dd == 0.0f) continue;
            double e = 0;
            int8_t scq[16];
            for (int g = 0; g < 16; g++) {
                scq[g] = (int8_t)clampi(ts_nearest_int(scales[g] / dd), -128, 127);
                float s = dd * scq[g];
                level_sums ls;
                if (s == 0.0f) {
                    e += gs[g].swxx;
                    continue;
                }
                round_pass(16, x + 16 * g, w + 16 * g, 1.0f / s, 0.0f, -32, 31, NULL, 32, &ls);
                e += affine_error(&gs[g], &ls, s, 0);
            }
            if (e < best_e) {
                best_e = e;
                best_d = ts_f32_to_f16(dd);
                memcpy(best_sc, scq, 16);
            }
        }
        y[i].d = best_d;
        memcpy(y[i].scales, best_sc, 16);
        ts_q6_k_requantize(x, &y[i], (int8_t *)L);
    }
}

void ts_search_q4_0(const float *x, ts_block_q4_0 *y, int64_t nb, const float *imp) {
    float w[TS_QK4_0];
    uint8_t L[TS_QK4_0];
    group_stats gs;
    for (int64_t i = 0; i < nb; i++, x += TS_QK4_0, imp = imp ? imp + TS_QK4_0 : NULL) {
        group_weights(x, imp, TS_QK4_0, w, &gs);
        float s = fit_symmetric(TS_QK4_0, 8, x, w, &gs, L, 9); /* cheap enough to try more grids */
        uint16_t hd = ts_f32_to_f16(s);
        float sd = ts_f16_to_f32(hd);
        level_sums ls;
        if (sd != 0.0f) round_pass(TS_QK4_0, x, w, 1.0f / sd, 0.0f, -8, 7, L, 8, &ls);
        else memset(L, 8, sizeof L);
        y[i].d = hd;
        ts_pack_q4_32_levels(L, y[i].qs);
    }
}

/* The grid index nearest v by comparisons against the midpoints between neighbouring levels: the choice
 * ts_iq4_nl_nearest makes for every finite v (at a midpoint both take the lower level; near one, the
 * distances it compares are exact), in four comparisons instead of sixteen. */
static inline int iq4_nearest_fast(float v) {
    static const float mid[15] = {-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                                  7.0f,    19.0f,  31.5f,  45.5f,  61.0f,  79.0f,  101.0f};
    int i = v > mid[7] ? 8 : 0;
    i += v > mid[i + 3] ? 4 : 0;
    i += v > mid[i + 1] ? 2 : 0;
    i += v > mid[i] ? 1 : 0;
    return i;
}

/* IQ4_NL: 19 candidate scales that map the largest-magnitude element near the grid's end (-127 +- 0.9),
 * each rounded to the nearest levels, refitted by weighted least squares, re-rounded and refitted once
 * more; the candidate with the least weighted error (at its fp16 scale) wins. */
static float iq4_nl_fit(const float *x, const float *w, float scale, uint8_t *L) {
    double num = 0.0, den = 0.0;
    float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    for (int k = 0; k < TS_QK4_NL; k++) {
        L[k] = (uint8_t)iq4_nearest_fast(x[k] * inv);
        double q = ts_iq4_nl_values[L[k]];
        num += (double)w[k] * q * x[k];
        den += (double)w[k] * q * q;
    }
    return den > 0.0 ? (float)(num / den) : 0.0f;
}

void ts_search_iq4_nl(const float *x, ts_block_iq4_nl *y, int64_t nb, const float *imp) {
    float w[TS_QK4_NL];
    uint8_t L[TS_QK4_NL], best_L[TS_QK4_NL];
    group_stats gs;
    for (int64_t i = 0; i < nb; i++, x += TS_QK4_NL, imp = imp ? imp + TS_QK4_NL : NULL) {
        group_weights(x, imp, TS_QK4_NL, w, &gs);
        float amax;
        const float max = ts_max_magnitude(x, TS_QK4_NL, &amax);
        double best_err = INFINITY;
        uint16_t best_d = 0;
        memset(best_L, 8, sizeof best_L); /* level 8 is the one nearest zero (1) */
        for (int step = -9; step <= 9 && amax > 0.0f; step++) {
            float s = iq4_nl_fit(x, w, max / (-127.0f + 0.1f * (float)step), L);
            s = iq4_nl_fit(x, w, s, L);
            uint16_t hd = ts_f32_to_f16(s);
            float d = ts_f16_to_f32(hd);
            double err = 0.0;
            for (int k = 0; k < TS_QK4_NL; k++) {
                double e = (double)d * ts_iq4_nl_values[L[k]] - x[k];
                err += (double)w[k] * e * e;
            }
            if (err < best_err) {
                best_err = err;
                best_d = hd;
                memcpy(best_L, L, sizeof L);
            }
        }
        y[i].d = best_d;
        ts_pack_q4_32_levels(best_L, y[i].qs);
    }
}

/* Weighted error of the n elements of x at scale d with their nearest levels (written to L). */
static double iq4_group_error(const float *x, const float *w, int n, float d, uint8_t *L) {
    float inv = d != 0.0f ? 1.0f / d : 0.0f;
    double err = 0.0;
    for (int k = 0; k < n; k++) {
        L[k] = (uint8_t)(d != 0.0f ? iq4_nearest_fast(x[k] * inv) : 8);
        double e = (double)d * ts_iq4_nl_values[L[k]] - x[k];
        err += (double)w[k] * e * e;
    }
    return err;
}

/* The least-squares scale of 32 elements on the grid: ts_search_iq4_nl's candidates and fits, each
 * candidate judged at its unrounded scale (IQ4_XS rounds its sub-block scales to multiples of d instead). */
static float iq4_best_scale(const float *x, const float *w) {
    float amax;
    const float max = ts_max_magnitude(x, 32, &amax);
    double best_err = INFINITY;
    float best = 0.0f;
    uint8_t L[32];
    for (int step = -9; step <= 9 && amax > 0.0f; step++) {
        float s = iq4_nl_fit(x, w, max / (-127.0f + 0.1f * (float)step), L);
        s = iq4_nl_fit(x, w, s, L);
        double err = iq4_group_error(x, w, 32, s, L);
        if (err < best_err) {
            best_err = err;
            best = s;
        }
    }
    return best;
}

/* IQ4_XS: each sub-block's best scale as for IQ4_NL; then candidate super-block scales d that put the
 * sub-scale of largest magnitude at -32 down to -28.5 (or at 31), rounded to fp16; under each, every
 * sub-block takes whichever of the two integer sub-scales around its own scale gives the smaller error
 * with nearest levels. The candidate with the least total weighted error wins. */
void ts_search_iq4_xs(const float *x, ts_block_iq4_xs *y, int64_t nb, const float *imp) {
    float w[TS_QK_K], s[8];
    uint8_t L[32], best_L[TS_QK_K], cand_L[TS_QK_K];
    int best_l[8], cand_l[8];
    group_stats gs;
    for (int64_t i = 0; i < nb; i++, x += TS_QK_K, imp = imp ? imp + TS_QK_K : NULL) {
        float smax = 0.0f;
        for (int j = 0; j < 8; j++) {
            group_weights(x + 32 * j, imp ? imp + 32 * j : NULL, 32, w + 32 * j, &gs);
            s[j] = iq4_best_scale(x + 32 * j, w + 32 * j);
            if (fabsf(s[j]) > fabsf(smax)) smax = s[j];
        }
        memset(&y[i], 0, sizeof y[i]);
        memset(best_L, 8, sizeof best_L);
        for (int j = 0; j < 8; j++) best_l[j] = 0;
        uint16_t best_d = 0;
        double best_err = INFINITY;
        for (int c = 0; c <= 8 && smax != 0.0f; c++) {
            uint16_t hd = ts_f32_to_f16(c < 8 ? smax / (-32.0f + 0.5f * (float)c) : smax / 31.0f);
            float d = ts_f16_to_f32(hd);
            if (d == 0.0f || !isfinite(d)) continue;
            double err = 0.0;
            for (int j = 0; j < 8 && err < best_err; j++) {
                int l0 = (int)floorf(s[j] / d);
                double ej = INFINITY;
                for (int l = l0; l <= l0 + 1; l++) {
                    int lc = clampi(l, -32, 31);
                    double e = iq4_group_error(x + 32 * j, w + 32 * j, 32, d * (float)lc, L);
                    if (e < ej) {
                        ej = e;
                        cand_l[j] = lc;
                        memcpy(cand_L + 32 * j, L, 32);
                    }
                }
                err += ej;
            }
            if (err < best_err) {
                best_err = err;
                best_d = hd;
                memcpy(best_l, cand_l, sizeof best_l);
                memcpy(best_L, cand_L, sizeof best_L);
            }
        }
        y[i].d = best_d;
        for (int j = 0; j < 8; j++) {
            ts_iq4_xs_set_sub_scale(&y[i], j, best_l[j]);
            ts_pack_q4_32_levels(best_L + 32 * j, y[i].qs + 16 * j);
        }
    }
}
