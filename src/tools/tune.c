/* The tuner runs its own float32 forward and backward pass of a dense Llama-family decoder (it needs
 * every activation kept for the backward pass, which the inference path never stores), with all matrix
 * products on the CPU backend's float kernels: y = x W^T in every form, the transposes made explicit.
 *
 * Student matrices: W = sum over a block's scale slots of d_k * U_k (scale_slots below), U_k fixed by the
 * codes; d_k = d0_k * exp(s_k) with s_k the tuned parameter, so Adam's step is relative to each scale's
 * size. The forward pass sees d_k rounded to float16 (what the file will hold); the gradient passes that
 * rounding straight through. */
#include "tools/tune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/threadpool.h"
#include "base/parallel.h"
#include "model/rope.h"
#include "quant/dequantize.h"
#include "quant/float16.h"
#include "runtime/devices.h"

void ts_tune_options_init(ts_tune_options *o) {
    memset(o, 0, sizeof *o);
    o->steps = 200;
    o->windows_per_step = 4;
    o->ctx = 512;
    o->lr = 1e-3;
}

/* Where a block type keeps its float16 scales. Every type here dequantizes linearly in them jointly (w =
 * d * code for Q4_0, IQ4_NL and Q8_0; d * code + m for Q4_1; d * sc * q - dmin * m for Q4_K and Q5_K, whose
 * 6-bit sub-block scales stay; d * sc * q for Q6_K and IQ4_XS), so with U_k the block dequantized with slot k set to 1
 * and the other slots to 0, W = sum over k of d_k U_k. */
typedef struct scale_slots {
    ts_dtype type;
    int n;
    size_t offset[2];
} scale_slots;

static const scale_slots g_slots[] = {
    {TS_DTYPE_Q4_0, 1, {0}},    {TS_DTYPE_IQ4_NL, 1, {0}}, {TS_DTYPE_Q8_0, 1, {0}}, {TS_DTYPE_Q4_1, 2, {0, 2}},
    {TS_DTYPE_Q4_K, 2, {0, 2}}, {TS_DTYPE_Q5_K, 2, {0, 2}}, {TS_DTYPE_Q6_K, 1, {208}},
    {TS_DTYPE_IQ4_XS, 1, {0}},
};

static const scale_slots *slots_of(ts_dtype t) {
    for (size_t i = 0; i < sizeof g_slots / sizeof g_slots[0]; i++)
        if (g_slots[i].type == t) return &g_slots[i];
    return NULL;
}

/* A matrix of the student. */
typedef struct smat {
    ts_tune_tensor *t;
    int64_t rows, cols;
    const scale_slots *slots;   /* NULL: not tuned (float types, or a type without slots here) */
    int64_t bsize, blocks;      /* elements a block, blocks a row */
    float *w;                   /* [rows, cols] current values */
    float *wt;                  /* [cols, rows] their transpose, for the backward pass (made once a step) */
    float *unit[2];             /* [rows, cols] U_k */
    float *d0[2], *s[2];        /* [rows * blocks] scales as read, log multipliers */
    float *grad;                /* [rows, cols] dL/dW */
    float *teacher;             /* [rows, cols] the float original */
} smat;

typedef struct svec { /* a norm weight: float32 in the student file */
    ts_tune_tensor *t;
    int64_t n;
    float *v, *grad;
    const float *teacher_v;
    float *teacher_own;
} svec;

typedef struct layer_w {
    smat *q, *k, *v, *o, *gate, *up, *down;
    svec *attn_norm, *mlp_norm, *q_norm, *k_norm;
    float *bq, *bk, *bv; /* qwen2 biases (fixed, same for teacher and student) */
} layer_w;

/* Activations of one layer for one window, kept for the backward pass. */
typedef struct layer_act {
    float *x_in, *r1, *h1;      /* residual in, 1/rms, normed input */
    float *q_pre, *k_pre, *v;   /* projections (+ bias) */
    float *rq, *rk;             /* per (token, head) 1/rms of the q/k norms */
    float *q_rot, *k_rot;       /* after norm and RoPE: [T, heads, hd] */
    float *p;                   /* [heads][T][T] attention probabilities */
    float *o;                   /* [T, heads * hd] */
    float *x_mid, *r2, *h2;
    float *g, *u, *a;           /* gate, up, silu(gate) * up */
} layer_act;

typedef struct tuner {
    ts_model_config cfg;
    ts_threadpool *pool; /* the products' threads; the loops around them use them too */
    ts_cpu_matmul_ctx *mm;
    int T;                      /* window length */
    int H, NH, NKV, HD, I, V, L, QD, KD;
    smat *mats;
    int n_mats;
    svec *vecs;
    int n_vecs;
    layer_w *lw;
    smat *embed, *head;         /* head == embed when tied */
    svec *final_norm;
    float *bias_store[3 * TS_MAX_LAYERS];
    float *cos_t, *sin_t;       /* [T, hd / 2] */
    layer_act *act;
    float *x_out, *rf, *hf, *logits, *tlogp;
    double *row_kl;
    /* backward pass buffers */
    float *dx, *dh, *dtmp, *dO, *dv, *dS, *dP, *tTT, *bufs;
    float *scratch[8];
    size_t scratch_n[8];
    int exact_scales;
} tuner;

/* ---- small helpers ---- */

static void *zalloc(size_t n, int *oom) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) *oom = 1;
    return p;
}

static float *scratch(tuner *tn, int slot, size_t n) {
    if (tn->scratch_n[slot] < n) {
        free(tn->scratch[slot]);
        tn->scratch[slot] = malloc(n * sizeof(float));
        tn->scratch_n[slot] = tn->scratch[slot] ? n : 0;
    }
    return tn->scratch[slot];
}

/* Loops over rows (or elements) split over the pool. Every body writes only its own range, and sums
 * across the range are made afterwards in a fixed order, so results do not depend on the thread count. */
typedef void (*range_fn)(void *ctx, int64_t begin, int64_t end);
typedef struct range_job {
    range_fn body;
    void *ctx;
    int64_t n, chunk;
} range_job;

static void range_task(void *c, int task, int thread) {
    (void)thread;
    const range_job *j = c;
    const int64_t b = (int64_t)task * j->chunk, e = b + j->chunk < j->n ? b + j->chunk : j->n;
    j->body(j->ctx, b, e);
}

/* min_chunk: the fewest iterations worth a task (a task's hand-off costs about a microsecond) */
static void par_for(tuner *tn, int64_t n, int64_t min_chunk, range_fn body, void *ctx) {
    const int64_t want = 4 * (int64_t)ts_threadpool_size(tn->pool);
    int64_t chunk = (n + want - 1) / want;
    if (chunk < min_chunk) chunk = min_chunk;
    const int64_t tasks = n > 0 ? (n + chunk - 1) / chunk : 0;
    if (tasks <= 1) {
        if (n > 0) body(ctx, 0, n);
        return;
    }
    range_job j = {body, ctx, n, chunk};
    ts_threadpool_run(tn->pool, (int)tasks, range_task, &j);
}

/* y[n, rows] = x[n, cols] . W[rows, cols]^T on the CPU backend's float kernels */
static void mm(tuner *tn, const float *W, int64_t rows, int64_t cols, const float *x, int n, float *y) {
    ts_weight w = {.dtype = TS_DTYPE_F32, .rows = rows, .cols = cols, .host = W, .row_bytes = (size_t)cols * sizeof(float)};
    ts_cpu_matmul(tn->mm, &w, x, n, y, NULL);
}

typedef struct transpose_ctx {
    const float *src;
    int64_t rows, cols;
    float *dst;
} transpose_ctx;

static void transpose_rows(void *c, int64_t b, int64_t e) { /* b, e: blocks of 32 source rows */
    const transpose_ctx *t = c;
    for (int64_t r0 = b * 32; r0 < e * 32 && r0 < t->rows; r0 += 32)
        for (int64_t c0 = 0; c0 < t->cols; c0 += 32)
            for (int64_t r = r0; r < r0 + 32 && r < t->rows; r++)
                for (int64_t k = c0; k < c0 + 32 && k < t->cols; k++) t->dst[k * t->rows + r] = t->src[r * t->cols + k];
}

static void transpose(tuner *tn, const float *src, int64_t rows, int64_t cols, float *dst) {
    transpose_ctx t = {src, rows, cols, dst};
    par_for(tn, (rows + 31) / 32, 4096 / (cols + 1) + 1, transpose_rows, &t);
}

typedef struct add_ctx {
    float *acc;
    const float *x;
} add_ctx;

static void add_range(void *c, int64_t b, int64_t e) {
    const add_ctx *a = c;
    for (int64_t i = b; i < e; i++) a->acc[i] += a->x[i];
}

static void add_into(tuner *tn, float *acc, const float *x, int64_t n) {
    add_ctx a = {acc, x};
    par_for(tn, n, 16384, add_range, &a);
}

/* acc[rows, cols] += dY^T X for dY [n, rows], X [n, cols]: the weight gradient of y = x W^T */
static void mm_grad(tuner *tn, const float *dy, int64_t rows, const float *x, int64_t cols, int n, float *acc) {
    float *dyt = scratch(tn, 0, (size_t)rows * n), *xt = scratch(tn, 1, (size_t)cols * n),
          *out = scratch(tn, 2, (size_t)rows * cols);
    transpose(tn, dy, n, rows, dyt);
    transpose(tn, x, n, cols, xt);
    mm(tn, xt, cols, n, dyt, (int)rows, out);
    add_into(tn, acc, out, rows * cols);
}

/* dx[n, cols] (+)= dY[n, rows] . W[rows, cols], from W's transpose wt [cols, rows] */
static void mm_back(tuner *tn, const float *wt, int64_t rows, int64_t cols, const float *dy, int n, float *dx, int add) {
    float *out = add ? scratch(tn, 4, (size_t)n * cols) : dx;
    mm(tn, wt, cols, rows, dy, n, out);
    if (add) add_into(tn, dx, out, (int64_t)n * cols);
}

/* head h of x [T, heads, hd] as rows [T, hd] */
static void head_get(float *rows, const float *x, int T, int heads, int h, int hd) {
    for (int t = 0; t < T; t++) memcpy(rows + (size_t)t * hd, x + ((size_t)t * heads + h) * hd, (size_t)hd * sizeof(float));
}

/* rows [T, hd] into head h of x [T, heads, hd], or added to it */
static void head_put(float *x, const float *rows, int T, int heads, int h, int hd, int add) {
    for (int t = 0; t < T; t++) {
        float *dst = x + ((size_t)t * heads + h) * hd;
        const float *src = rows + (size_t)t * hd;
        for (int i = 0; i < hd; i++) dst[i] = add ? dst[i] + src[i] : src[i];
    }
}

/* y = x / rms(x) * w over rows of n; r[row] = 1 / rms */
static void rmsnorm_fwd(const float *x, const float *w, int rows, int64_t n, double eps, float *r, float *y) {
    for (int t = 0; t < rows; t++) {
        const float *xr = x + (size_t)t * n;
        double ss = 0;
        for (int64_t i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
        r[t] = inv;
        for (int64_t i = 0; i < n; i++) y[(size_t)t * n + i] = xr[i] * inv * w[i];
    }
}

/* dx (+)= the gradient through y = x * r * w; dw += sum over rows of dy * x * r */
static void rmsnorm_back(const float *x, const float *w, const float *r, const float *dy, int rows, int64_t n, float *dx,
                         float *dw, int add) {
    for (int t = 0; t < rows; t++) {
        const float *xr = x + (size_t)t * n, *dyr = dy + (size_t)t * n;
        float *dxr = dx + (size_t)t * n;
        double dot = 0;
        for (int64_t i = 0; i < n; i++) dot += (double)dyr[i] * w[i] * xr[i];
        const float inv = r[t], c = (float)(dot * inv * inv * inv / (double)n);
        for (int64_t i = 0; i < n; i++) {
            float g = inv * w[i] * dyr[i] - c * xr[i];
            dxr[i] = add ? dxr[i] + g : g;
            if (dw) dw[i] += dyr[i] * xr[i] * inv;
        }
    }
}

/* rotate-half RoPE of `heads` heads of hd at each token; sign -1 applies the inverse rotation */
static void rope_apply(const tuner *tn, float *x, int T, int heads, float sign) {
    const int half = tn->HD / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < heads; h++) {
            float *v = x + ((size_t)t * heads + h) * tn->HD;
            for (int i = 0; i < half; i++) {
                const float c = tn->cos_t[t * half + i], s = sign * tn->sin_t[t * half + i];
                const float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
}

/* ---- the model ---- */

typedef struct weights_ctx {
    smat *m;
    int exact_scales;
} weights_ctx;

static void student_rows(void *c, int64_t rb, int64_t re) {
    const weights_ctx *x = c;
    smat *m = x->m;
    for (int64_t r = rb; r < re; r++)
        for (int64_t b = 0; b < m->blocks; b++) {
            float *w = m->w + r * m->cols + b * m->bsize;
            for (int k = 0; k < m->slots->n; k++) {
                float d = m->d0[k][r * m->blocks + b] * expf(m->s[k][r * m->blocks + b]);
                if (!x->exact_scales) d = ts_f16_to_f32(ts_f32_to_f16(d));
                const float *u = m->unit[k] + r * m->cols + b * m->bsize;
                for (int64_t j = 0; j < m->bsize; j++) w[j] = (k ? w[j] : 0.0f) + d * u[j];
            }
        }
}

static void student_weights(tuner *tn, smat *m) {
    if (!m->slots) return;
    weights_ctx x = {m, tn->exact_scales};
    par_for(tn, m->rows, 8, student_rows, &x);
    transpose(tn, m->w, m->rows, m->cols, m->wt);
}

typedef struct softmax_ctx {
    float *p;
    int T;
    float scale;
} softmax_ctx;

/* rows of scaled scores -> causal attention probabilities (zero past the diagonal) */
static void causal_softmax_rows(void *c, int64_t b, int64_t e) {
    const softmax_ctx *sc = c;
    for (int64_t t = b; t < e; t++) {
        float *row = sc->p + t * sc->T, mx = -INFINITY;
        for (int64_t j = 0; j <= t; j++) {
            row[j] *= sc->scale;
            if (row[j] > mx) mx = row[j];
        }
        double sum = 0;
        for (int64_t j = 0; j <= t; j++) sum += (row[j] = expf(row[j] - mx));
        const float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j <= t; j++) row[j] *= inv;
        for (int64_t j = t + 1; j < sc->T; j++) row[j] = 0.0f;
    }
}

typedef struct swiglu_ctx {
    const float *g, *u;
    float *a, *dg; /* forward: a = silu(g) * u. backward: a holds dL/da in, dL/du out; dg out */
} swiglu_ctx;

static void swiglu_fwd(void *c, int64_t b, int64_t e) {
    const swiglu_ctx *x = c;
    for (int64_t i = b; i < e; i++) x->a[i] = x->g[i] / (1.0f + expf(-x->g[i])) * x->u[i];
}

static void swiglu_back(void *c, int64_t b, int64_t e) {
    const swiglu_ctx *x = c;
    for (int64_t i = b; i < e; i++) {
        const float g = x->g[i], s = 1.0f / (1.0f + expf(-g)), d = x->a[i];
        x->dg[i] = d * x->u[i] * s * (1.0f + g * (1.0f - s));
        x->a[i] = d * g * s;
    }
}

/* One window through the model (teacher: the float weights) into tn->act / logits. */
static void forward(tuner *tn, const int32_t *ids, int T, int teacher) {
    const int H = tn->H, NH = tn->NH, NKV = tn->NKV, HD = tn->HD, I = tn->I, QD = tn->QD, KD = tn->KD;
    const double eps = tn->cfg.norm_eps;
    const float scale = 1.0f / sqrtf((float)HD);
#define W_OF(m) (teacher ? (m)->teacher : (m)->w)
#define V_OF(vv) (teacher ? (vv)->teacher_v : (vv)->v)
    float *x = tn->act[0].x_in;
    const smat *E = tn->embed;
    for (int t = 0; t < T; t++) memcpy(x + (size_t)t * H, W_OF(E) + (size_t)ids[t] * H, (size_t)H * sizeof(float));
    for (int l = 0; l < tn->L; l++) {
        layer_act *A = &tn->act[l];
        const layer_w *Lw = &tn->lw[l];
        rmsnorm_fwd(A->x_in, V_OF(Lw->attn_norm), T, H, eps, A->r1, A->h1);
        mm(tn, W_OF(Lw->q), QD, H, A->h1, T, A->q_pre);
        mm(tn, W_OF(Lw->k), KD, H, A->h1, T, A->k_pre);
        mm(tn, W_OF(Lw->v), KD, H, A->h1, T, A->v);
        if (Lw->bq)
            for (int t = 0; t < T; t++) {
                for (int i = 0; i < QD; i++) A->q_pre[(size_t)t * QD + i] += Lw->bq[i];
                for (int i = 0; i < KD; i++) A->k_pre[(size_t)t * KD + i] += Lw->bk[i];
                for (int i = 0; i < KD; i++) A->v[(size_t)t * KD + i] += Lw->bv[i];
            }
        if (Lw->q_norm) {
            rmsnorm_fwd(A->q_pre, V_OF(Lw->q_norm), T * NH, HD, eps, A->rq, A->q_rot);
            rmsnorm_fwd(A->k_pre, V_OF(Lw->k_norm), T * NKV, HD, eps, A->rk, A->k_rot);
        } else {
            memcpy(A->q_rot, A->q_pre, (size_t)T * QD * sizeof(float));
            memcpy(A->k_rot, A->k_pre, (size_t)T * KD * sizeof(float));
        }
        rope_apply(tn, A->q_rot, T, NH, 1.0f);
        rope_apply(tn, A->k_rot, T, NKV, 1.0f);
        float *qh = scratch(tn, 5, (size_t)T * HD), *kh = scratch(tn, 6, (size_t)T * HD), *vt = scratch(tn, 7, (size_t)T * HD);
        float *oh = scratch(tn, 4, (size_t)T * HD), *vh = scratch(tn, 3, (size_t)T * HD);
        for (int kvh = 0; kvh < NKV; kvh++) {
            head_get(kh, A->k_rot, T, NKV, kvh, HD);
            head_get(vh, A->v, T, NKV, kvh, HD);
            transpose(tn, vh, T, HD, vt);
            for (int h = kvh * (NH / NKV); h < (kvh + 1) * (NH / NKV); h++) {
                head_get(qh, A->q_rot, T, NH, h, HD);
                float *P = A->p + (size_t)h * T * T;
                mm(tn, kh, T, HD, qh, T, P);
                softmax_ctx sc = {P, T, scale};
                par_for(tn, T, 16, causal_softmax_rows, &sc);
                mm(tn, vt, HD, T, P, T, oh);
                head_put(A->o, oh, T, NH, h, HD, 0);
            }
        }
        mm(tn, W_OF(Lw->o), H, QD, A->o, T, A->x_mid);
        for (int64_t i = 0; i < (int64_t)T * H; i++) A->x_mid[i] += A->x_in[i];
        rmsnorm_fwd(A->x_mid, V_OF(Lw->mlp_norm), T, H, eps, A->r2, A->h2);
        mm(tn, W_OF(Lw->gate), I, H, A->h2, T, A->g);
        mm(tn, W_OF(Lw->up), I, H, A->h2, T, A->u);
        swiglu_ctx sw = {A->g, A->u, A->a, NULL};
        par_for(tn, (int64_t)T * I, 4096, swiglu_fwd, &sw);
        float *next = l + 1 < tn->L ? tn->act[l + 1].x_in : tn->x_out;
        mm(tn, W_OF(Lw->down), H, I, A->a, T, next);
        for (int64_t i = 0; i < (int64_t)T * H; i++) next[i] += A->x_mid[i];
        x = next;
    }
    rmsnorm_fwd(tn->x_out, V_OF(tn->final_norm), T, H, eps, tn->rf, tn->hf);
    mm(tn, W_OF(tn->head), tn->V, H, tn->hf, T, tn->logits);
#undef W_OF
#undef V_OF
}

static void log_softmax_row(float *r, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = r[i] > mx ? r[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)(r[i] - mx));
    const float lse = mx + (float)log(s);
    for (int i = 0; i < n; i++) r[i] -= lse;
}

typedef struct kl_ctx {
    float *tlogp, *logits; /* teacher's logits -> log-probabilities; student's logits -> dL/dlogits */
    double *row_kl;
    int V;
    double weight;
} kl_ctx;

static void kl_rows(void *c, int64_t b, int64_t e) {
    const kl_ctx *k = c;
    for (int64_t t = b; t < e; t++) {
        float *tp = k->tlogp + t * k->V, *lq = k->logits + t * k->V;
        log_softmax_row(tp, k->V);
        log_softmax_row(lq, k->V);
        double kl = 0;
        for (int i = 0; i < k->V; i++) {
            const float p = expf(tp[i]);
            kl += (double)p * (double)(tp[i] - lq[i]);
            lq[i] = (float)((expf(lq[i]) - p) * k->weight);
        }
        k->row_kl[t] = kl;
    }
}

typedef struct softmax_back_ctx {
    const float *p, *dp;
    float *ds;
    int T;
    float scale;
} softmax_back_ctx;

/* dS = P * (dP - rowsum(P * dP)) times the score scale, zero past the diagonal */
static void softmax_back_rows(void *c, int64_t b, int64_t e) {
    const softmax_back_ctx *x = c;
    for (int64_t t = b; t < e; t++) {
        const float *pr = x->p + t * x->T, *dpr = x->dp + t * x->T;
        float *dsr = x->ds + t * x->T;
        double dot = 0;
        for (int64_t j = 0; j <= t; j++) dot += (double)pr[j] * dpr[j];
        for (int64_t j = 0; j <= t; j++) dsr[j] = pr[j] * (dpr[j] - (float)dot) * x->scale;
        for (int64_t j = t + 1; j < x->T; j++) dsr[j] = 0.0f;
    }
}

/* Teacher, then student over one window: returns the window's summed KL divergence (nats) and, with
 * want_grads, adds its gradient times `weight` into every smat.grad and svec.grad. */
static double window_loss(tuner *tn, const int32_t *ids, int T, double weight, int want_grads) {
    const int H = tn->H, NH = tn->NH, NKV = tn->NKV, HD = tn->HD, I = tn->I, QD = tn->QD, KD = tn->KD, V = tn->V;
    forward(tn, ids, T, 1);
    memcpy(tn->tlogp, tn->logits, (size_t)T * V * sizeof(float));
    forward(tn, ids, T, 0);
    float *dlog = tn->logits; /* becomes dL/dlogits in place */
    kl_ctx kc = {tn->tlogp, dlog, tn->row_kl, V, weight};
    par_for(tn, T, 1, kl_rows, &kc);
    double kl = 0;
    for (int t = 0; t < T; t++) kl += tn->row_kl[t];
    if (!want_grads) return kl;
    float *dx = tn->dx, *dh = tn->dh;
    mm_back(tn, tn->head->wt, V, H, dlog, T, dh, 0);
    mm_grad(tn, dlog, V, tn->hf, H, T, tn->head->grad);
    rmsnorm_back(tn->x_out, tn->final_norm->v, tn->rf, dh, T, H, dx, tn->final_norm->grad, 0);
    const float scale = 1.0f / sqrtf((float)HD);
    for (int l = tn->L - 1; l >= 0; l--) {
        layer_act *A = &tn->act[l];
        layer_w *Lw = &tn->lw[l];
        /* MLP: x_next = x_mid + a . Wd^T, a = silu(g) * u */
        float *da = tn->dtmp, *dg = tn->dtmp + (size_t)T * I;
        mm_back(tn, Lw->down->wt, H, I, dx, T, da, 0);
        mm_grad(tn, dx, H, A->a, I, T, Lw->down->grad);
        swiglu_ctx sw = {A->g, A->u, da, dg}; /* da becomes du */
        par_for(tn, (int64_t)T * I, 4096, swiglu_back, &sw);
        mm_back(tn, Lw->gate->wt, I, H, dg, T, dh, 0);
        mm_back(tn, Lw->up->wt, I, H, da, T, dh, 1);
        mm_grad(tn, dg, I, A->h2, H, T, Lw->gate->grad);
        mm_grad(tn, da, I, A->h2, H, T, Lw->up->grad);
        rmsnorm_back(A->x_mid, Lw->mlp_norm->v, A->r2, dh, T, H, dx, Lw->mlp_norm->grad, 1);
        /* attention: x_mid = x_in + o . Wo^T */
        float *dO = tn->dO, *dq = tn->dtmp, *dk = tn->dtmp + (size_t)T * QD, *dv = tn->dv;
        mm_back(tn, Lw->o->wt, H, QD, dx, T, dO, 0);
        mm_grad(tn, dx, H, A->o, QD, T, Lw->o->grad);
        memset(dk, 0, (size_t)T * KD * sizeof(float));
        memset(dv, 0, (size_t)T * KD * sizeof(float));
        float *qh = tn->bufs, *kh = qh + (size_t)T * HD, *vh = kh + (size_t)T * HD, *doh = vh + (size_t)T * HD,
              *tA = doh + (size_t)T * HD, *tB = tA + (size_t)T * HD, *kt = tB + (size_t)T * HD;
        for (int kvh = 0; kvh < NKV; kvh++) {
            head_get(kh, A->k_rot, T, NKV, kvh, HD);
            head_get(vh, A->v, T, NKV, kvh, HD);
            transpose(tn, kh, T, HD, kt); /* K^T, shared by the group's query heads */
            for (int h = kvh * (NH / NKV); h < (kvh + 1) * (NH / NKV); h++) {
                const float *P = A->p + (size_t)h * T * T;
                head_get(qh, A->q_rot, T, NH, h, HD);
                head_get(doh, dO, T, NH, h, HD);
                mm(tn, vh, T, HD, doh, T, tn->dP); /* dP = dO V^T */
                softmax_back_ctx sb = {P, tn->dP, tn->dS, T, scale};
                par_for(tn, T, 16, softmax_back_rows, &sb);
                mm(tn, kt, HD, T, tn->dS, T, tB); /* dQ = dS K */
                head_put(dq, tB, T, NH, h, HD, 0);
                transpose(tn, tn->dS, T, T, tn->tTT); /* dK += dS^T Q */
                transpose(tn, qh, T, HD, tA);
                mm(tn, tA, HD, T, tn->tTT, T, tB);
                head_put(dk, tB, T, NKV, kvh, HD, 1);
                transpose(tn, P, T, T, tn->tTT); /* dV += P^T dO */
                transpose(tn, doh, T, HD, tA);
                mm(tn, tA, HD, T, tn->tTT, T, tB);
                head_put(dv, tB, T, NKV, kvh, HD, 1);
            }
        }
        rope_apply(tn, dq, T, NH, -1.0f); /* a rotation's transpose is its inverse */
        rope_apply(tn, dk, T, NKV, -1.0f);
        if (Lw->q_norm) {
            memcpy(dO, dq, (size_t)T * QD * sizeof(float)); /* dO is free again */
            rmsnorm_back(A->q_pre, Lw->q_norm->v, A->rq, dO, T * NH, HD, dq, Lw->q_norm->grad, 0);
            memcpy(dO, dk, (size_t)T * KD * sizeof(float));
            rmsnorm_back(A->k_pre, Lw->k_norm->v, A->rk, dO, T * NKV, HD, dk, Lw->k_norm->grad, 0);
        }
        mm_back(tn, Lw->q->wt, QD, H, dq, T, dh, 0);
        mm_back(tn, Lw->k->wt, KD, H, dk, T, dh, 1);
        mm_back(tn, Lw->v->wt, KD, H, dv, T, dh, 1);
        mm_grad(tn, dq, QD, A->h1, H, T, Lw->q->grad);
        mm_grad(tn, dk, KD, A->h1, H, T, Lw->k->grad);
        mm_grad(tn, dv, KD, A->h1, H, T, Lw->v->grad);
        rmsnorm_back(A->x_in, Lw->attn_norm->v, A->r1, dh, T, H, dx, Lw->attn_norm->grad, 1);
    }
    for (int t = 0; t < T; t++) { /* the embedding lookups */
        float *g = tn->embed->grad + (size_t)ids[t] * H;
        for (int i = 0; i < H; i++) g[i] += dx[(size_t)t * H + i];
    }
    return kl;
}

/* ---- building the tuner ---- */

static ts_tune_tensor *find_student(ts_tune_tensor *s, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].name, name)) return &s[i];
    return NULL;
}

/* the whole tensor as float32 (any storage type whose rows are whole blocks) */
static float *to_float(ts_dtype t, const void *data, int64_t rows, int64_t cols) {
    float *f = malloc((size_t)rows * (size_t)cols * sizeof *f);
    if (!f) return NULL;
    size_t rb = ts_dtype_row_bytes(t, cols);
    for (int64_t r = 0; r < rows; r++) ts_dequantize_row(t, (const uint8_t *)data + (size_t)r * rb, f + r * cols, cols);
    return f;
}

static int teacher_float(const ts_tensor_table *table, const char *name, int64_t rows, int64_t cols, float **out,
                         ts_error *err) {
    const ts_tensor_desc *d = ts_tensor_table_find(table, name);
    if (!d) return ts_fail(err, "tuning: the float model has no tensor \"%s\"", name);
    if (ts_tensor_numel(d) != rows * cols || d->dtype == TS_DTYPE_COUNT)
        return ts_fail(err, "tuning: tensor \"%s\" of the float model has %lld elements of type %s; the quantized one has %lld",
                       name, (long long)ts_tensor_numel(d), d->file_dtype, (long long)(rows * cols));
    *out = to_float(d->dtype, d->data, rows, cols);
    return *out ? 0 : ts_fail(err, "tuning: out of memory for \"%s\"", name);
}

static int add_matrix(tuner *tn, const ts_tensor_table *teacher, ts_tune_tensor *st, int n_st, const char *name,
                      int64_t rows, int64_t cols, smat **out, ts_error *err) {
    ts_tune_tensor *t = find_student(st, n_st, name);
    if (!t) return ts_fail(err, "tuning: the quantized model has no tensor \"%s\"", name);
    if (t->rows != rows || t->cols != cols)
        return ts_fail(err, "tuning: tensor \"%s\" is [%lld, %lld], expected [%lld, %lld]", name, (long long)t->rows,
                       (long long)t->cols, (long long)rows, (long long)cols);
    smat *m = &tn->mats[tn->n_mats++];
    *out = m;
    m->t = t;
    m->rows = rows;
    m->cols = cols;
    int oom = 0;
    m->w = to_float(t->dtype, t->data, rows, cols);
    m->wt = malloc((size_t)rows * cols * sizeof(float));
    m->grad = zalloc((size_t)rows * cols * sizeof(float), &oom);
    if (!m->w || !m->wt || oom) return ts_fail(err, "tuning: out of memory for \"%s\"", name);
    transpose(tn, m->w, rows, cols, m->wt);
    if (teacher_float(teacher, name, rows, cols, &m->teacher, err) != 0) return -1;
    const scale_slots *sl = slots_of(t->dtype);
    const int64_t bsize = ts_dtype_get(t->dtype)->block_size;
    if (!sl || cols % bsize) return 0;
    m->slots = sl;
    m->bsize = bsize;
    m->blocks = cols / bsize;
    const size_t rb = ts_dtype_row_bytes(t->dtype, cols), bb = rb / (size_t)m->blocks;
    uint8_t *row = malloc(rb);
    for (int k = 0; k < sl->n; k++) {
        m->unit[k] = malloc((size_t)rows * cols * sizeof(float));
        m->d0[k] = malloc((size_t)rows * m->blocks * sizeof(float));
        m->s[k] = zalloc((size_t)rows * m->blocks * sizeof(float), &oom);
        if (!m->unit[k] || !m->d0[k]) oom = 1;
    }
    if (!row || oom) {
        free(row);
        return ts_fail(err, "tuning: out of memory for \"%s\"", name);
    }
    const uint16_t one = ts_f32_to_f16(1.0f), zero = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int k = 0; k < sl->n; k++) {
            memcpy(row, (const uint8_t *)t->data + (size_t)r * rb, rb);
            for (int64_t b = 0; b < m->blocks; b++) {
                uint8_t *blk = row + b * bb;
                uint16_t h;
                memcpy(&h, blk + sl->offset[k], 2);
                m->d0[k][r * m->blocks + b] = ts_f16_to_f32(h);
                for (int j = 0; j < sl->n; j++) memcpy(blk + sl->offset[j], j == k ? &one : &zero, 2);
            }
            ts_dequantize_row(t->dtype, row, m->unit[k] + r * cols, cols);
        }
    free(row);
    return 0;
}

static int add_vector(tuner *tn, const ts_tensor_table *teacher, ts_tune_tensor *st, int n_st, const char *name, int64_t n,
                      svec **out, ts_error *err) {
    ts_tune_tensor *t = find_student(st, n_st, name);
    if (!t) return ts_fail(err, "tuning: the quantized model has no tensor \"%s\"", name);
    if (t->dtype != TS_DTYPE_F32 || t->rows * t->cols != n)
        return ts_fail(err, "tuning: norm \"%s\" should be %lld float32 values", name, (long long)n);
    svec *v = &tn->vecs[tn->n_vecs++];
    *out = v;
    v->t = t;
    v->n = n;
    int oom = 0;
    v->v = zalloc((size_t)n * sizeof(float), &oom);
    v->grad = zalloc((size_t)n * sizeof(float), &oom);
    if (oom) return ts_fail(err, "tuning: out of memory");
    memcpy(v->v, t->data, (size_t)n * sizeof(float));
    if (teacher_float(teacher, name, 1, n, &v->teacher_own, err) != 0) return -1;
    v->teacher_v = v->teacher_own;
    return 0;
}

static void tuner_free(tuner *tn) {
    if (!tn) return;
    for (int i = 0; i < tn->n_mats; i++) {
        smat *m = &tn->mats[i];
        for (int k = 0; k < 2; k++) free(m->unit[k]), free(m->d0[k]), free(m->s[k]);
        free(m->w), free(m->wt), free(m->grad), free(m->teacher);
    }
    for (int i = 0; i < tn->n_vecs; i++) free(tn->vecs[i].v), free(tn->vecs[i].grad), free(tn->vecs[i].teacher_own);
    free(tn->mats), free(tn->vecs), free(tn->lw);
    for (int i = 0; i < 3 * TS_MAX_LAYERS; i++) free(tn->bias_store[i]);
    if (tn->act) {
        for (int l = 0; l < tn->L; l++) {
            layer_act *A = &tn->act[l];
            float *ps[] = {A->x_in, A->r1,    A->h1, A->q_pre, A->k_pre, A->v, A->rq, A->rk, A->q_rot, A->k_rot,
                           A->p,    A->o,     A->x_mid, A->r2, A->h2, A->g, A->u, A->a};
            for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) free(ps[k]);
        }
        free(tn->act);
    }
    float *bs[] = {tn->cos_t, tn->sin_t, tn->x_out, tn->rf, tn->hf, tn->logits, tn->tlogp, tn->dx, tn->dh,
                   tn->dtmp,  tn->dO,    tn->dv,    tn->dS, tn->dP, tn->tTT,   tn->bufs};
    for (size_t k = 0; k < sizeof bs / sizeof bs[0]; k++) free(bs[k]);
    free(tn->row_kl);
    for (int i = 0; i < 8; i++) free(tn->scratch[i]);
    if (tn->mm) ts_cpu_matmul_ctx_destroy(tn->mm);
    if (tn->pool) ts_threadpool_destroy(tn->pool);
    free(tn);
}

static tuner *tuner_create(const ts_model_config *cfg, const ts_tensor_table *teacher, ts_tune_tensor *st, int n_st,
                           const ts_tune_options *opt, ts_error *err) {
    if ((cfg->arch != TS_ARCH_LLAMA && cfg->arch != TS_ARCH_QWEN2 && cfg->arch != TS_ARCH_QWEN3) || cfg->num_experts > 0) {
        ts_fail(err, "tuning handles dense Llama, Qwen2 and Qwen3 models, not %s", ts_arch_name(cfg->arch));
        return NULL;
    }
    if (teacher->gguf_layout) {
        ts_fail(err, "tuning needs the float model as a Hugging Face checkpoint directory (a GGUF file's q/k rows are "
                     "permuted for llama.cpp)");
        return NULL;
    }
    if (cfg->activation != TS_ACT_SILU) {
        ts_fail(err, "tuning handles SiLU-gated MLPs only");
        return NULL;
    }
    if (opt->ctx < 2 || cfg->num_kv_heads < 1 || cfg->num_heads % cfg->num_kv_heads || cfg->head_dim % 2) {
        ts_fail(err, "tuning: windows of %d tokens, %d heads over %d KV heads of %d: not a shape this pass handles", opt->ctx,
                cfg->num_heads, cfg->num_kv_heads, cfg->head_dim);
        return NULL;
    }
    tuner *tn = calloc(1, sizeof *tn);
    if (!tn) {
        ts_fail(err, "out of memory");
        return NULL;
    }
    tn->cfg = *cfg;
    tn->T = opt->ctx;
    tn->H = cfg->hidden_size;
    tn->NH = cfg->num_heads;
    tn->NKV = cfg->num_kv_heads;
    tn->HD = cfg->head_dim;
    tn->I = cfg->intermediate_size;
    tn->V = cfg->vocab_size;
    tn->L = cfg->num_layers;
    tn->QD = tn->NH * tn->HD;
    tn->KD = tn->NKV * tn->HD;
    tn->exact_scales = opt->exact_scales;
    const int T = tn->T, H = tn->H, I = tn->I, QD = tn->QD, KD = tn->KD, L = tn->L;
    tn->pool = ts_threadpool_create(opt->threads > 0 ? opt->threads : ts_available_cores());
    tn->mm = tn->pool ? ts_cpu_matmul_ctx_create(tn->pool) : NULL;
    int oom = 0;
    tn->mats = zalloc((size_t)(7 * L + 2) * sizeof(smat), &oom);
    tn->vecs = zalloc((size_t)(4 * L + 1) * sizeof(svec), &oom);
    tn->lw = zalloc((size_t)L * sizeof(layer_w), &oom);
    tn->act = zalloc((size_t)L * sizeof(layer_act), &oom);
    if (!tn->mm || oom) {
        if (!tn->mm) ts_fail(err, "tuning: cannot start %d threads", opt->threads);
        else ts_fail(err, "out of memory");
        tuner_free(tn);
        return NULL;
    }
    char name[192];
    static const char *const mat_names[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                             "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    for (int l = 0; l < L; l++) {
        layer_w *Lw = &tn->lw[l];
        smat **slots[7] = {&Lw->q, &Lw->k, &Lw->v, &Lw->o, &Lw->gate, &Lw->up, &Lw->down};
        const int64_t shapes[7][2] = {{QD, H}, {KD, H}, {KD, H}, {H, QD}, {I, H}, {I, H}, {H, I}};
        for (int k = 0; k < 7; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, mat_names[k]);
            if (add_matrix(tn, teacher, st, n_st, name, shapes[k][0], shapes[k][1], slots[k], err) != 0) goto fail;
        }
    }
    if (add_matrix(tn, teacher, st, n_st, "model.embed_tokens.weight", tn->V, H, &tn->embed, err) != 0) goto fail;
    if (cfg->tie_word_embeddings) tn->head = tn->embed;
    else if (add_matrix(tn, teacher, st, n_st, "lm_head.weight", tn->V, H, &tn->head, err) != 0) goto fail;
    for (int l = 0; l < L; l++) {
        layer_w *Lw = &tn->lw[l];
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if (add_vector(tn, teacher, st, n_st, name, H, &Lw->attn_norm, err) != 0) goto fail;
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if (add_vector(tn, teacher, st, n_st, name, H, &Lw->mlp_norm, err) != 0) goto fail;
        if (cfg->qk_norm) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
            if (add_vector(tn, teacher, st, n_st, name, tn->HD, &Lw->q_norm, err) != 0) goto fail;
            snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
            if (add_vector(tn, teacher, st, n_st, name, tn->HD, &Lw->k_norm, err) != 0) goto fail;
        }
        if (cfg->attention_bias) {
            static const char *const b[3] = {"q_proj", "k_proj", "v_proj"};
            float **dst[3] = {&Lw->bq, &Lw->bk, &Lw->bv};
            for (int k = 0; k < 3; k++) {
                snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.bias", l, b[k]);
                if (teacher_float(teacher, name, 1, k == 0 ? QD : KD, dst[k], err) != 0) goto fail;
                tn->bias_store[3 * l + k] = *dst[k];
            }
        }
    }
    if (add_vector(tn, teacher, st, n_st, "model.norm.weight", H, &tn->final_norm, err) != 0) goto fail;
    const int half = tn->HD / 2;
    float *inv_freq = malloc((size_t)half * sizeof(float));
    tn->cos_t = malloc((size_t)T * half * sizeof(float));
    tn->sin_t = malloc((size_t)T * half * sizeof(float));
    if (!inv_freq || !tn->cos_t || !tn->sin_t) {
        free(inv_freq);
        ts_fail(err, "out of memory");
        goto fail;
    }
    ts_rope_inv_freq(cfg, inv_freq);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            const float a = (float)t * inv_freq[i];
            tn->cos_t[t * half + i] = cosf(a);
            tn->sin_t[t * half + i] = sinf(a);
        }
    free(inv_freq);
    const size_t tf = (size_t)T * sizeof(float);
    for (int l = 0; l < L; l++) {
        layer_act *A = &tn->act[l];
        A->x_in = zalloc(tf * H, &oom), A->r1 = zalloc(tf, &oom), A->h1 = zalloc(tf * H, &oom);
        A->q_pre = zalloc(tf * QD, &oom), A->k_pre = zalloc(tf * KD, &oom), A->v = zalloc(tf * KD, &oom);
        A->rq = zalloc(tf * tn->NH, &oom), A->rk = zalloc(tf * tn->NKV, &oom);
        A->q_rot = zalloc(tf * QD, &oom), A->k_rot = zalloc(tf * KD, &oom);
        A->p = zalloc(tf * T * tn->NH, &oom), A->o = zalloc(tf * QD, &oom);
        A->x_mid = zalloc(tf * H, &oom), A->r2 = zalloc(tf, &oom), A->h2 = zalloc(tf * H, &oom);
        A->g = zalloc(tf * I, &oom), A->u = zalloc(tf * I, &oom), A->a = zalloc(tf * I, &oom);
    }
    tn->x_out = zalloc(tf * H, &oom), tn->rf = zalloc(tf, &oom), tn->hf = zalloc(tf * H, &oom);
    tn->logits = zalloc(tf * tn->V, &oom), tn->tlogp = zalloc(tf * tn->V, &oom);
    tn->row_kl = zalloc((size_t)T * sizeof(double), &oom);
    tn->dx = zalloc(tf * H, &oom), tn->dh = zalloc(tf * H, &oom);
    tn->dtmp = zalloc(tf * (size_t)(2 * I > QD + KD ? 2 * I : QD + KD), &oom);
    tn->dO = zalloc(tf * QD, &oom), tn->dv = zalloc(tf * KD, &oom);
    tn->dS = zalloc(tf * T, &oom), tn->dP = zalloc(tf * T, &oom), tn->tTT = zalloc(tf * T, &oom);
    tn->bufs = zalloc(tf * tn->HD * 7, &oom);
    if (oom) {
        ts_fail(err, "tuning: out of memory for the activations of a %d-token window", T);
        goto fail;
    }
    return tn;
fail:
    tuner_free(tn);
    return NULL;
}

/* ---- parameters: log-scales of tuned matrices, then norm weights ---- */

static int64_t param_count(const tuner *tn) {
    int64_t n = 0;
    for (int i = 0; i < tn->n_mats; i++)
        if (tn->mats[i].slots) n += tn->mats[i].rows * tn->mats[i].blocks * tn->mats[i].slots->n;
    for (int i = 0; i < tn->n_vecs; i++) n += tn->vecs[i].n;
    return n;
}

static void params_get(const tuner *tn, float *p) {
    for (int i = 0; i < tn->n_mats; i++)
        if (tn->mats[i].slots)
            for (int k = 0; k < tn->mats[i].slots->n; k++) {
                const int64_t n = tn->mats[i].rows * tn->mats[i].blocks;
                memcpy(p, tn->mats[i].s[k], (size_t)n * sizeof(float));
                p += n;
            }
    for (int i = 0; i < tn->n_vecs; i++) {
        memcpy(p, tn->vecs[i].v, (size_t)tn->vecs[i].n * sizeof(float));
        p += tn->vecs[i].n;
    }
}

static void params_set(tuner *tn, const float *p) {
    for (int i = 0; i < tn->n_mats; i++)
        if (tn->mats[i].slots) {
            for (int k = 0; k < tn->mats[i].slots->n; k++) {
                const int64_t n = tn->mats[i].rows * tn->mats[i].blocks;
                memcpy(tn->mats[i].s[k], p, (size_t)n * sizeof(float));
                p += n;
            }
            student_weights(tn, &tn->mats[i]);
        }
    for (int i = 0; i < tn->n_vecs; i++) {
        memcpy(tn->vecs[i].v, p, (size_t)tn->vecs[i].n * sizeof(float));
        p += tn->vecs[i].n;
    }
}

static void zero_grads(tuner *tn) {
    for (int i = 0; i < tn->n_mats; i++) memset(tn->mats[i].grad, 0, (size_t)(tn->mats[i].rows * tn->mats[i].cols) * sizeof(float));
    for (int i = 0; i < tn->n_vecs; i++) memset(tn->vecs[i].grad, 0, (size_t)tn->vecs[i].n * sizeof(float));
}

/* dL/ds for s the log multiplier of slot k of block (r, b): d_k * sum_j dL/dW[r, j] * U_k[r, j] over the
 * block's elements j */
typedef struct grads_ctx {
    const smat *m;
    int k;
    float *g; /* this slot's [rows * blocks] */
} grads_ctx;

static void grads_rows(void *c, int64_t rb, int64_t re) {
    const grads_ctx *x = c;
    const smat *m = x->m;
    for (int64_t r = rb; r < re; r++)
        for (int64_t b = 0; b < m->blocks; b++) {
            const float *gw = m->grad + r * m->cols + b * m->bsize, *u = m->unit[x->k] + r * m->cols + b * m->bsize;
            double sum = 0;
            for (int64_t j = 0; j < m->bsize; j++) sum += (double)gw[j] * u[j];
            const int64_t at = r * m->blocks + b;
            x->g[at] = (float)(sum * m->d0[x->k][at] * exp(m->s[x->k][at]));
        }
}

static void grads_get(tuner *tn, float *g) {
    for (int i = 0; i < tn->n_mats; i++) {
        const smat *m = &tn->mats[i];
        if (!m->slots) continue;
        for (int k = 0; k < m->slots->n; k++) {
            grads_ctx x = {m, k, g};
            par_for(tn, m->rows, 8, grads_rows, &x);
            g += m->rows * m->blocks;
        }
    }
    for (int i = 0; i < tn->n_vecs; i++) {
        memcpy(g, tn->vecs[i].grad, (size_t)tn->vecs[i].n * sizeof(float));
        g += tn->vecs[i].n;
    }
}

static void write_back(tuner *tn, ts_tune_report *rep) {
    for (int i = 0; i < tn->n_mats; i++) {
        smat *m = &tn->mats[i];
        if (!m->slots) {
            if (ts_dtype_get(m->t->dtype)->block_size > 1) rep->fixed_matrices++;
            continue;
        }
        const size_t rb = ts_dtype_row_bytes(m->t->dtype, m->cols), bb = rb / (size_t)m->blocks;
        for (int k = 0; k < m->slots->n; k++)
            for (int64_t r = 0; r < m->rows; r++)
                for (int64_t b = 0; b < m->blocks; b++) {
                    const int64_t at = r * m->blocks + b;
                    const uint16_t h = ts_f32_to_f16(m->d0[k][at] * expf(m->s[k][at]));
                    memcpy((uint8_t *)m->t->data + (size_t)r * rb + b * bb + m->slots->offset[k], &h, 2);
                }
        rep->tuned_matrices++;
    }
    for (int i = 0; i < tn->n_vecs; i++) {
        memcpy(tn->vecs[i].t->data, tn->vecs[i].v, (size_t)tn->vecs[i].n * sizeof(float));
        rep->tuned_norms++;
    }
}

static int check_ids(const tuner *tn, const int32_t *ids, int64_t n, ts_error *err) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tn->V)
            return ts_fail(err, "tuning: token %lld is id %d, outside the vocabulary of %d", (long long)i, ids[i], tn->V);
    return 0;
}

int ts_tune_loss_and_grads(const ts_model_config *cfg, const ts_tensor_table *teacher, ts_tune_tensor *student,
                           int n_student, const int32_t *ids, int n, const ts_tune_options *opt, const float *params,
                           float *params_out, double *loss, float *grads, int64_t *n_params, ts_error *err) {
    ts_tune_options o = *opt;
    o.ctx = n;
    tuner *tn = tuner_create(cfg, teacher, student, n_student, &o, err);
    if (!tn) return -1;
    if (check_ids(tn, ids, n, err) != 0) {
        tuner_free(tn);
        return -1;
    }
    *n_params = param_count(tn);
    if (params) params_set(tn, params);
    else
        for (int i = 0; i < tn->n_mats; i++) student_weights(tn, &tn->mats[i]);
    if (params_out) params_get(tn, params_out);
    zero_grads(tn);
    *loss = window_loss(tn, ids, n, 1.0 / n, grads != NULL) / n;
    if (grads) grads_get(tn, grads);
    tuner_free(tn);
    return 0;
}

/* What tuner_create and the Adam state hold, in bytes (an upper bound: two scale slots everywhere). */
static uint64_t tune_bytes(const ts_model_config *c, int T) {
    const uint64_t H = (uint64_t)c->hidden_size, I = (uint64_t)c->intermediate_size, V = (uint64_t)c->vocab_size;
    const uint64_t QD = (uint64_t)c->num_heads * (uint64_t)c->head_dim, KD = (uint64_t)c->num_kv_heads * (uint64_t)c->head_dim;
    const uint64_t weights = (uint64_t)c->num_layers * (H * (QD + 2 * KD) + QD * H + 3 * H * I) +
                             V * H * (c->tie_word_embeddings ? 1 : 2);
    /* w, its transpose, grad, teacher, two scale-1 copies; log-scales, their gradient and Adam's moments */
    uint64_t floats = weights * 6 + weights / 16 * 6;
    const uint64_t t = (uint64_t)T;
    floats += (uint64_t)c->num_layers * (t * (3 * H + 2 * QD + 3 * KD + QD + 3 * I + 2) + (uint64_t)c->num_heads * t * t);
    floats += t * (2 * H + 2 * V) + t * (2 * H + 2 * I + 2 * QD + 2 * KD + 3 * t) + t * (uint64_t)c->head_dim * 8;
    return floats * sizeof(float);
}

int64_t *ts_tune_window_order(int64_t windows, int shuffle) {
    int64_t *order = malloc((size_t)windows * sizeof *order);
    if (!order) return NULL;
    for (int64_t i = 0; i < windows; i++) order[i] = i;
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (int64_t i = windows - 1; shuffle && i > 0; i--) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        const int64_t j = (int64_t)((state >> 33) % (uint64_t)(i + 1));
        const int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    return order;
}

int ts_tune_quantized(const ts_model_config *cfg, const ts_tensor_table *teacher, ts_tune_tensor *student, int n_student,
                      const int32_t *ids, int64_t n, const ts_tune_options *opt, ts_tune_report *rep, ts_error *err) {
    memset(rep, 0, sizeof *rep);
    if (n < opt->ctx) return ts_fail(err, "tuning needs at least one window of %d tokens (got %lld)", opt->ctx, (long long)n);
    if (opt->steps < 1 || opt->windows_per_step < 1 || !(opt->lr > 0))
        return ts_fail(err, "tuning: %d steps of %d windows at rate %g: nothing to do", opt->steps, opt->windows_per_step, opt->lr);
    ts_memory_info mem;
    ts_devices_detect_memory(NULL, &mem);
    const uint64_t need = tune_bytes(cfg, opt->ctx);
    if (mem.usable_bytes && need > mem.usable_bytes) {
        char a[32], b[32];
        return ts_fail(err, "tuning needs about %s of memory (float32 copies of every matrix: the float model, the "
                            "student, its transpose, its gradient and its scale-1 values, and a %d-token window's activations); %s is "
                            "available. Quantize without --tune-steps, or on a machine with more memory",
                       ts_format_bytes(need, a, sizeof a), opt->ctx, ts_format_bytes(mem.usable_bytes, b, sizeof b));
    }
    tuner *tn = tuner_create(cfg, teacher, student, n_student, opt, err);
    if (!tn) return -1;
    if (check_ids(tn, ids, n, err) != 0) {
        tuner_free(tn);
        return -1;
    }
    const int64_t np = param_count(tn), windows = n / opt->ctx;
    float *p = malloc((size_t)np * sizeof *p), *g = malloc((size_t)np * sizeof *g);
    float *m1 = calloc((size_t)np, sizeof *m1), *m2 = calloc((size_t)np, sizeof *m2);
    if (!p || !g || !m1 || !m2) {
        free(p), free(g), free(m1), free(m2);
        tuner_free(tn);
        return ts_fail(err, "tuning: out of memory for %lld parameters", (long long)np);
    }
    params_get(tn, p);
    params_set(tn, p);
    const double b1 = 0.9, b2 = 0.999, adam_eps = 1e-8;
    const int T = opt->ctx, W = opt->windows_per_step;
    int64_t *order = ts_tune_window_order(windows, opt->shuffle);
    if (!order) {
        free(p), free(g), free(m1), free(m2);
        tuner_free(tn);
        return ts_fail(err, "tuning: out of memory for the order of %lld windows", (long long)windows);
    }
    int rc = 0;
    for (int step = 0; step < opt->steps; step++) {
        zero_grads(tn);
        double kl = 0;
        for (int k = 0; k < W; k++) {
            const int64_t win = order[((int64_t)step * W + k) % windows];
            kl += window_loss(tn, ids + win * T, T, 1.0 / ((double)T * W), 1);
        }
        kl /= (double)T * W;
        if (!isfinite(kl)) {
            rc = ts_fail(err, "tuning: the loss became %g at step %d (lower --tune-rate)", kl, step + 1);
            break;
        }
        if (step == 0) rep->kl_first = kl;
        rep->kl_last = kl;
        grads_get(tn, g);
        const double c1 = 1.0 - pow(b1, step + 1), c2 = 1.0 - pow(b2, step + 1);
        /* cosine decay to 0: the last steps settle instead of leaving the scales wherever one batch's
         * noise put them */
        const double lr = opt->lr * 0.5 * (1.0 + cos(3.141592653589793 * step / opt->steps));
        for (int64_t i = 0; i < np; i++) {
            m1[i] = (float)(b1 * m1[i] + (1 - b1) * g[i]);
            m2[i] = (float)(b2 * m2[i] + (1 - b2) * (double)g[i] * g[i]);
            p[i] -= (float)(lr * (m1[i] / c1) / (sqrt(m2[i] / c2) + adam_eps));
        }
        params_set(tn, p);
        if (!opt->quiet && (step == 0 || (step + 1) % 10 == 0 || step + 1 == opt->steps))
            printf("tune step %d/%d: KL %.5f nats a token\n", step + 1, opt->steps, kl);
        fflush(stdout);
    }
    if (rc == 0) write_back(tn, rep);
    free(order);
    free(p), free(g), free(m1), free(m2);
    tuner_free(tn);
    return rc;
}
