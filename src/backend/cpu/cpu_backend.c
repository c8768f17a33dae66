#include "backend/cpu/cpu_backend.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/threadpool.h"
#include "backend/moe_route.h"
#include "base/log.h"
#include "base/parallel.h"
#include "quant/dequantize.h"

/* Per-thread attention buffers, kept between calls and grown to the longest sequence seen. */
typedef struct {
    float *scores;                /* positions */
    const float **keys, **values; /* positions */
    float *tile;                  /* TS_ATTN_SCRATCH_FLOATS(head_dim) */
} attn_scratch;

typedef struct cpu_impl {
    ts_threadpool *pool;
    ts_cpu_matmul_ctx *mm;
    attn_scratch *attn; /* one per pool thread */
    int attn_positions, attn_head_dim;
    size_t buffer_bytes;
    size_t weight_bytes; /* repacked copies of weights */
    pthread_mutex_t stats_lock;
} cpu_impl;

struct ts_kv_store {
    ts_kv_layout layout;
    float *k; /* [layers][blocks][block_tokens][kv_heads][head_dim] */
    float *v;
    size_t layer_stride; /* floats per layer */
};

static cpu_impl *impl_of(ts_backend *be) { return be->impl; }

static void *cpu_alloc(ts_backend *be, size_t bytes, ts_error *err) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0) rounded = 64;
    if (posix_memalign(&p, 64, rounded) != 0) {
        ts_fail(err, "cpu: cannot allocate %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, rounded);
    cpu_impl *im = impl_of(be);
    pthread_mutex_lock(&im->stats_lock);
    im->buffer_bytes += rounded;
    pthread_mutex_unlock(&im->stats_lock);
    return p;
}

static void cpu_free(ts_backend *be, void *p) {
    (void)be;
    free(p);
}

static void cpu_copy(ts_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    memcpy(dst, src, bytes);
}

/* Weights are repacked once into the kernels' interleaved layout (see matmul.h). */
static int cpu_prepare_weight(ts_backend *be, ts_weight *w, ts_error *err) {
    cpu_impl *im = impl_of(be);
    if (ts_cpu_matmul_prepare(im->mm, w, err) != 0) return -1;
    w->prepared_by = be;
    w->host_unused = !ts_cpu_matmul_reads_host(w); /* every product reads the packed copy */
    pthread_mutex_lock(&im->stats_lock);
    im->weight_bytes += ts_cpu_matmul_prepared_bytes(w);
    pthread_mutex_unlock(&im->stats_lock);
    return 0;
}

static void cpu_release_weight(ts_backend *be, ts_weight *w) {
    cpu_impl *im = impl_of(be);
    pthread_mutex_lock(&im->stats_lock);
    im->weight_bytes -= ts_cpu_matmul_prepared_bytes(w);
    pthread_mutex_unlock(&im->stats_lock);
    ts_cpu_matmul_release(w);
    w->prepared_by = NULL;
}

static ts_kv_store *cpu_kv_create(ts_backend *be, const ts_kv_layout *l, ts_error *err) {
    ts_kv_store *kv = calloc(1, sizeof *kv);
    if (!kv) {
        ts_fail(err, "cpu: out of memory");
        return NULL;
    }
    kv->layout = *l;
    kv->layer_stride = (size_t)l->num_blocks * (size_t)l->block_tokens * (size_t)l->num_kv_heads * (size_t)l->head_dim;
    size_t bytes = kv->layer_stride * (size_t)l->num_layers * sizeof(float);
    kv->k = cpu_alloc(be, bytes, err);
    kv->v = kv->k ? cpu_alloc(be, bytes, err) : NULL;
    if (!kv->v) {
        free(kv->k);
        free(kv);
        ts_error_prefix(err, "KV cache of %d blocks x %d tokens: ", l->num_blocks, l->block_tokens);
        return NULL;
    }
    return kv;
}

static void cpu_kv_destroy(ts_backend *be, ts_kv_store *kv) {
    (void)be;
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

static void cpu_embed(ts_backend *be, const ts_weight *table, const int32_t *tokens, int n, float *out) {
    (void)be;
    for (int i = 0; i < n; i++) {
        int64_t id = tokens[i];
        float *dst = out + (size_t)i * (size_t)table->cols;
        if (id < 0 || id >= table->rows) { /* validated upstream; keep memory safe regardless */
            memset(dst, 0, (size_t)table->cols * sizeof(float));
            continue;
        }
        ts_dequantize_row(table->dtype, (const uint8_t *)table->host + (size_t)id * table->row_bytes, dst, table->cols);
    }
}

static void cpu_embed_add(ts_backend *be, const ts_weight *table, const int32_t *ids, int n, float *x) {
    (void)be;
    float *row = malloc((size_t)table->cols * sizeof(float));
    if (!row) return;
    for (int i = 0; i < n; i++) {
        int64_t id = ids[i];
        if (id < 0 || id >= table->rows) continue;
        ts_dequantize_row(table->dtype, (const uint8_t *)table->host + (size_t)id * table->row_bytes, row, table->cols);
        float *dst = x + (size_t)i * (size_t)table->cols;
        for (int64_t k = 0; k < table->cols; k++) dst[k] += row[k];
    }
    free(row);
}

static void cpu_matmul(ts_backend *be, const ts_weight *w, const float *x, int n, float *y, const float *bias) {
    ts_cpu_matmul(impl_of(be)->mm, w, x, n, y, bias);
}

static void cpu_rmsnorm(ts_backend *be, const float *x, const float *weight, int rows, int dim, float eps,
                        float *out) {
    (void)be;
    const ts_cpu_kernels *k = ts_cpu_kernels_active();
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * (size_t)dim;
        double ss = k->sum_squares_f32(xr, dim);
        float inv = (float)(1.0 / sqrt(ss / dim + (double)eps));
        k->rmsnorm_apply_f32(xr, weight, inv, out + (size_t)r * (size_t)dim, dim);
    }
}

static void cpu_layernorm(ts_backend *be, const float *x, const float *weight, const float *bias, int rows, int dim,
                          float eps, float *out) {
    (void)be;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * (size_t)dim;
        float *o = out + (size_t)r * (size_t)dim;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < dim; i++) mean += xr[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        var /= dim;
        float inv = (float)(1.0 / sqrt(var + (double)eps));
        for (int i = 0; i < dim; i++) o[i] = (float)((xr[i] - mean) * inv) * weight[i] + bias[i];
    }
}

static void cpu_rope(ts_backend *be, float *x, int n, int heads, int stride, const int32_t *positions,
                     const ts_rope *rope) {
    (void)be;
    int half = rope->head_dim / 2;
    float cs[512], sn[512];
    for (int t = 0; t < n; t++) {
        for (int i = 0; i < half; i++) {
            float angle = (float)positions[t] * rope->inv_freq[i];
            cs[i] = (float)cos((double)angle) * rope->attention_factor;
            sn[i] = (float)sin((double)angle) * rope->attention_factor;
        }
        float *row = x + (size_t)t * (size_t)stride;
        for (int h = 0; h < heads; h++) {
            float *v = row + (size_t)h * (size_t)rope->head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - b * sn[i];
                v[i + half] = b * cs[i] + a * sn[i];
            }
        }
    }
}

static float *kv_row(const ts_kv_store *kv, float *base, int layer, const ts_seq_view *s, int pos) {
    const ts_kv_layout *l = &kv->layout;
    int block = s->blocks[pos / l->block_tokens];
    int off = pos % l->block_tokens;
    size_t idx = (size_t)layer * kv->layer_stride +
                 ((size_t)block * (size_t)l->block_tokens + (size_t)off) * (size_t)l->num_kv_heads * (size_t)l->head_dim;
    return base + idx;
}

/* Tokens [first, first + count) of one sequence, all query heads of one KV head: one call of the
 * table's tile kernel. */
typedef struct {
    int seq, kv_head, first, count;
} attn_tile_task;

typedef struct {
    ts_kv_store *kv;
    int layer;
    const ts_step *step;
    const int32_t *token_seq; /* sequence index of each token */
    const float *q;
    int q_stride;
    int n_heads;
    float scale;
    float *out;
    const ts_cpu_kernels *kern;
    const attn_tile_task *tiles;
    int n_tiles;
    const int32_t *single; /* tokens of one-token sequences (decode) */
    int single_heads;      /* query heads per task of such a token (1, or a whole GQA group) */
    attn_scratch *scratch; /* per thread */
} attn_job;

/* The parts of a kernel call every task shares: sizes, scratch, and the key and value rows of KV head
 * kv_head at positions 0..n_keys-1 of sequence s (paged, so by pointer). */
static void bind_keys(const attn_job *j, const ts_seq_view *s, int kv_head, int n_keys, attn_scratch *sc,
                      ts_attn_tile *at) {
    int hd = j->kv->layout.head_dim;
    for (int p = 0; p < n_keys; p++) {
        sc->keys[p] = kv_row(j->kv, j->kv->k, j->layer, s, p) + (size_t)kv_head * (size_t)hd;
        sc->values[p] = kv_row(j->kv, j->kv->v, j->layer, s, p) + (size_t)kv_head * (size_t)hd;
    }
    at->n_keys = n_keys;
    at->k = sc->keys;
    at->v = sc->values;
    at->head_dim = hd;
    at->scale = j->scale;
    at->scratch = sc->tile;
}

/* Query head h of token t as query i of the tile. */
static void bind_query(const attn_job *j, int t, int h, int pos, int i, ts_attn_tile *at) {
    size_t hd = (size_t)j->kv->layout.head_dim;
    at->q[i] = j->q + (size_t)t * (size_t)j->q_stride + (size_t)h * hd;
    at->out[i] = j->out + (size_t)t * (size_t)j->n_heads * hd + (size_t)h * hd;
    at->q_last[i] = pos;
}

static void attention_tile_task(const attn_job *j, const attn_tile_task *tt, attn_scratch *sc) {
    const ts_seq_view *s = &j->step->seqs[tt->seq];
    int group = j->n_heads / j->kv->layout.num_kv_heads;
    ts_attn_tile at;
    at.nq = tt->count * group;
    int last = 0;
    for (int c = 0; c < tt->count; c++) {
        int t = tt->first + c, pos = s->start_pos + (t - s->first_token);
        for (int g = 0; g < group; g++) bind_query(j, t, tt->kv_head * group + g, pos, c * group + g, &at);
        if (pos > last) last = pos;
    }
    bind_keys(j, s, tt->kv_head, last + 1, sc, &at);
    j->kern->attention_tile_f32(&at);
}

static void attention_single(const attn_job *j, int t, int h, float *sc) {
    const ts_kv_layout *l = &j->kv->layout;
    const ts_seq_view *s = &j->step->seqs[j->token_seq[t]];
    int pos = s->start_pos + (t - s->first_token);
    int hd = l->head_dim;
    int kvh = h / (j->n_heads / l->num_kv_heads);
    const float *q = j->q + (size_t)t * (size_t)j->q_stride + (size_t)h * (size_t)hd;
    const ts_cpu_kernels *kern = j->kern;
    float mx = -INFINITY;
    for (int p = 0; p <= pos; p++) {
        const float *k = kv_row(j->kv, j->kv->k, j->layer, s, p) + (size_t)kvh * (size_t)hd;
        float d = kern->dot_f32(q, k, hd) * j->scale;
        sc[p] = d;
        if (d > mx) mx = d;
    }
    float inv = 1.0f / kern->softmax_exp_f32(sc, pos + 1, mx);
    float *o = j->out + (size_t)t * (size_t)(j->n_heads * hd) + (size_t)h * (size_t)hd;
    memset(o, 0, (size_t)hd * sizeof(float));
    for (int p = 0; p <= pos; p++) {
        const float *v = kv_row(j->kv, j->kv->v, j->layer, s, p) + (size_t)kvh * (size_t)hd;
        kern->axpy_f32(sc[p] * inv, v, o, hd);
    }
}

/* Query heads [h0, h0 + count) of token t (one KV head) through the table's decode kernel. */
static void attention_decode_task(const attn_job *j, int t, int h0, int count, attn_scratch *sc) {
    const ts_seq_view *s = &j->step->seqs[j->token_seq[t]];
    int pos = s->start_pos + (t - s->first_token);
    ts_attn_tile at;
    at.nq = count;
    for (int i = 0; i < count; i++) bind_query(j, t, h0 + i, pos, i, &at);
    bind_keys(j, s, h0 / (j->n_heads / j->kv->layout.num_kv_heads), pos + 1, sc, &at);
    j->kern->attention_decode_f32(&at);
}

static void attention_task(void *arg, int task, int thread) {
    attn_job *j = arg;
    if (task < j->n_tiles) {
        attention_tile_task(j, &j->tiles[task], &j->scratch[thread]);
        return;
    }
    int i = task - j->n_tiles, per_token = j->n_heads / j->single_heads;
    int t = j->single[i / per_token], h0 = (i % per_token) * j->single_heads;
    if (j->kern->attention_decode_f32) attention_decode_task(j, t, h0, j->single_heads, &j->scratch[thread]);
    else attention_single(j, t, h0, j->scratch[thread].scores);
}

static void free_attn_scratch(attn_scratch *sc, int n) {
    for (int i = 0; sc && i < n; i++) {
        free(sc[i].scores);
        free(sc[i].keys);
        free(sc[i].values);
        free(sc[i].tile);
    }
    free(sc);
}

static int ensure_attn_scratch(cpu_impl *im, int positions, int head_dim) {
    if (im->attn && positions <= im->attn_positions && head_dim <= im->attn_head_dim) return 0;
    int nthreads = ts_threadpool_size(im->pool);
    free_attn_scratch(im->attn, nthreads);
    im->attn_positions = im->attn_head_dim = 0;
    /* Grow by half again so that a sequence getting longer does not reallocate every step. */
    positions = positions + positions / 2 + 64;
    im->attn = calloc((size_t)nthreads, sizeof *im->attn);
    if (!im->attn) return -1;
    size_t tile_bytes = (TS_ATTN_SCRATCH_FLOATS(head_dim) * sizeof(float) + 63) & ~(size_t)63;
    for (int i = 0; i < nthreads; i++) {
        attn_scratch *sc = &im->attn[i];
        sc->scores = malloc((size_t)positions * sizeof(float));
        sc->keys = malloc((size_t)positions * sizeof(float *));
        sc->values = malloc((size_t)positions * sizeof(float *));
        sc->tile = aligned_alloc(64, tile_bytes);
        if (!sc->scores || !sc->keys || !sc->values || !sc->tile) {
            free_attn_scratch(im->attn, nthreads);
            im->attn = NULL;
            return -1;
        }
    }
    im->attn_positions = positions;
    im->attn_head_dim = head_dim;
    return 0;
}

/* Sequences with several tokens in the step (prefill chunks) go through the table's tile kernel,
 * TS_ATTN_LANES / group tokens per task so that all query heads of a KV head share every key and
 * value load; single tokens (decode) go query head by query head. Tile tasks are listed latest
 * tokens first: they have the most keys, and the pool hands tasks out in order. */
static void cpu_attention(ts_backend *be, ts_kv_store *kv, int layer, const ts_step *step, const float *q,
                          int q_stride, const float *k, const float *v, int kv_stride, int n_heads, float scale,
                          float *out) {
    cpu_impl *im = impl_of(be);
    const ts_kv_layout *l = &kv->layout;
    const ts_cpu_kernels *kern = ts_cpu_kernels_active();
    size_t row = (size_t)l->num_kv_heads * (size_t)l->head_dim;
    int group = n_heads / l->num_kv_heads;
    int per_tile = kern->attention_tile_f32 && group <= TS_ATTN_LANES ? TS_ATTN_LANES / group : 0;
    int32_t *token_seq = malloc((size_t)step->n_tokens * sizeof(int32_t));
    int32_t *single = malloc((size_t)step->n_tokens * sizeof(int32_t));
    attn_tile_task *tiles = malloc((size_t)(step->n_tokens + step->n_seqs) * (size_t)l->num_kv_heads * sizeof *tiles);
    int max_pos = 0, n_single = 0, n_tiles = 0;
    int ok = token_seq && single && tiles;
    for (int si = 0; ok && si < step->n_seqs; si++) {
        const ts_seq_view *s = &step->seqs[si];
        for (int i = 0; i < s->n_tokens; i++) {
            int t = s->first_token + i, pos = s->start_pos + i;
            token_seq[t] = si;
            memcpy(kv_row(kv, kv->k, layer, s, pos), k + (size_t)t * (size_t)kv_stride, row * sizeof(float));
            memcpy(kv_row(kv, kv->v, layer, s, pos), v + (size_t)t * (size_t)kv_stride, row * sizeof(float));
            if (pos + 1 > max_pos) max_pos = pos + 1;
        }
        if (per_tile && s->n_tokens > 1) {
            for (int end = s->n_tokens; end > 0; end -= per_tile) {
                int first = end - per_tile > 0 ? end - per_tile : 0;
                for (int h = 0; h < l->num_kv_heads; h++)
                    tiles[n_tiles++] = (attn_tile_task){si, h, s->first_token + first, end - first};
            }
        } else {
            for (int i = 0; i < s->n_tokens; i++) single[n_single++] = s->first_token + i;
        }
    }
    ok = ok && ensure_attn_scratch(im, max_pos, l->head_dim) == 0;
    /* A decode task takes a whole GQA group (its heads share each key and value row while it is in L1)
     * when that still leaves every thread two tasks, else one head. */
    int single_heads = 1;
    if (kern->attention_decode_f32 && group <= TS_ATTN_LANES && n_single * l->num_kv_heads >= 2 * ts_threadpool_size(im->pool))
        single_heads = group;
    if (ok) {
        attn_job j = {kv,    layer, step,  token_seq, q,      q_stride,     n_heads, scale,
                      out,   kern,  tiles, n_tiles,   single, single_heads, im->attn};
        ts_threadpool_run(im->pool, n_tiles + n_single * (n_heads / single_heads), attention_task, &j);
    } else {
        ts_log_error("cpu attention: out of memory for %d positions; outputs zeroed", max_pos);
        memset(out, 0, (size_t)step->n_tokens * (size_t)n_heads * (size_t)l->head_dim * sizeof(float));
    }
    free(tiles);
    free(single);
    free(token_seq);
}

static void cpu_silu_mul(ts_backend *be, const float *gate, const float *up, int rows, int inner, int in_stride,
                         float *out) {
    (void)be;
    for (int r = 0; r < rows; r++) {
        const float *g = gate + (size_t)r * (size_t)in_stride, *u = up + (size_t)r * (size_t)in_stride;
        ts_cpu_kernels_active()->silu_mul_f32(g, u, out + (size_t)r * (size_t)inner, inner);
    }
}

static void cpu_gelu(ts_backend *be, float *x, size_t count, int tanh_approx) {
    (void)be;
    for (size_t i = 0; i < count; i++) {
        double v = x[i];
        if (tanh_approx)
            x[i] = (float)(0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))));
        else
            x[i] = (float)(0.5 * v * (1.0 + erf(v * 0.7071067811865476)));
    }
}

static void cpu_add(ts_backend *be, float *x, const float *y, size_t count) {
    (void)be;
    for (size_t i = 0; i < count; i++) x[i] += y[i];
}

static void cpu_gather_rows(ts_backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst) {
    (void)be;
    for (int i = 0; i < n; i++)
        memmove(dst + (size_t)i * (size_t)dim, src + (size_t)rows[i] * (size_t)dim, (size_t)dim * sizeof(float));
}

/* Router softmax in float, top-k by descending probability (ties to the lower expert index, as torch.topk),
 * optional renormalisation; then each expert runs on the tokens routed to it. */
static void cpu_moe(ts_backend *be, const ts_moe *m, const float *x, int n, float *out) {
    int E = m->num_experts, K = m->top_k, H = m->hidden, I = m->inner;
    float *logits = malloc((size_t)n * (size_t)E * sizeof(float));
    int32_t *sel = malloc((size_t)n * (size_t)K * sizeof(int32_t));
    float *selw = malloc((size_t)n * (size_t)K * sizeof(float));
    int32_t *rows = malloc((size_t)n * sizeof(int32_t));
    float *roww = malloc((size_t)n * sizeof(float));
    float *xin = malloc((size_t)n * (size_t)H * sizeof(float));
    float *g = malloc((size_t)n * (size_t)I * sizeof(float));
    float *u = malloc((size_t)n * (size_t)I * sizeof(float));
    float *y = malloc((size_t)n * (size_t)H * sizeof(float));
    memset(out, 0, (size_t)n * (size_t)H * sizeof(float));
    if (!logits || !sel || !selw || !rows || !roww || !xin || !g || !u || !y) goto done;
    cpu_matmul(be, m->router, x, n, logits, NULL);
    ts_moe_route(logits, n, E, K, m->norm_topk_prob, sel, selw);
    for (int e = 0; e < E; e++) {
        int cnt = ts_moe_tokens_of(e, sel, selw, n, K, rows, roww);
        if (!cnt) continue;
        cpu_gather_rows(be, x, rows, cnt, H, xin);
        cpu_matmul(be, &m->gate[e], xin, cnt, g, NULL);
        cpu_matmul(be, &m->up[e], xin, cnt, u, NULL);
        cpu_silu_mul(be, g, u, cnt, I, I, g);
        cpu_matmul(be, &m->down[e], g, cnt, y, NULL);
        for (int i = 0; i < cnt; i++) {
            float *o = out + (size_t)rows[i] * (size_t)H;
            const float *yi = y + (size_t)i * (size_t)H;
            for (int d = 0; d < H; d++) o[d] += roww[i] * yi[d];
        }
    }
done:
    free(logits);
    free(sel);
    free(selw);
    free(rows);
    free(roww);
    free(xin);
    free(g);
    free(u);
    free(y);
}

static void cpu_sync(ts_backend *be) { (void)be; }

static void cpu_stats(ts_backend *be, ts_backend_stats *out) {
    cpu_impl *im = impl_of(be);
    pthread_mutex_lock(&im->stats_lock);
    out->weight_bytes = im->weight_bytes;
    out->buffer_bytes = im->buffer_bytes;
    pthread_mutex_unlock(&im->stats_lock);
}

static void cpu_destroy(ts_backend *be) {
    if (!be) return;
    cpu_impl *im = impl_of(be);
    ts_cpu_matmul_ctx_destroy(im->mm);
    free_attn_scratch(im->attn, ts_threadpool_size(im->pool));
    ts_threadpool_destroy(im->pool);
    pthread_mutex_destroy(&im->stats_lock);
    free(im);
    free(be);
}

typedef struct {
    const uint64_t *data;
    size_t words;
    int parts;
    uint64_t sums[64];
} read_job;

static void read_task(void *arg, int task, int thread) {
    (void)thread;
    read_job *j = arg;
    size_t lo = j->words * (size_t)task / (size_t)j->parts, hi = j->words * (size_t)(task + 1) / (size_t)j->parts;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = lo; i + 4 <= hi; i += 4) {
        a ^= j->data[i];
        b ^= j->data[i + 1];
        c ^= j->data[i + 2];
        d ^= j->data[i + 3];
    }
    j->sums[task] = a ^ b ^ c ^ d;
}

/* Read bandwidth: every thread streams its share of a buffer far larger than the caches; median of 5. */
static void cpu_roofline(ts_backend *be, ts_roofline *out) {
    cpu_impl *im = impl_of(be);
    memset(out, 0, sizeof *out);
    size_t bytes = (size_t)1 << 30;
    uint64_t *buf = malloc(bytes);
    if (!buf) return;
    memset(buf, 1, bytes);
    int threads = ts_threadpool_size(im->pool);
    read_job j = {buf, bytes / 8, threads < 64 ? threads : 64, {0}};
    double t[5];
    for (int r = 0; r < 5; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        ts_threadpool_run(im->pool, j.parts, read_task, &j);
        clock_gettime(CLOCK_MONOTONIC, &b);
        t[r] = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    }
    for (int i = 0; i < 5; i++)
        for (int k = i + 1; k < 5; k++)
            if (t[k] < t[i]) {
                double x = t[i];
                t[i] = t[k];
                t[k] = x;
            }
    uint64_t sink = 0;
    for (int i = 0; i < j.parts; i++) sink ^= j.sums[i];
    out->read_gbps = (double)bytes / t[2] / 1e9 + (double)(sink & 0) ;
    snprintf(out->method, sizeof out->method, "%d threads reading 1 GiB, median of 5", threads);
    free(buf);
}

static const ts_backend_ops g_cpu_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_host = cpu_copy,
    .from_host = cpu_copy,
    .prepare_weight = cpu_prepare_weight,
    .release_weight = cpu_release_weight,
    .kv_create = cpu_kv_create,
    .kv_destroy = cpu_kv_destroy,
    .embed = cpu_embed,
    .embed_add = cpu_embed_add,
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .layernorm = cpu_layernorm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .silu_mul = cpu_silu_mul,
    .gelu = cpu_gelu,
    .add = cpu_add,
    .gather_rows = cpu_gather_rows,
    .moe = cpu_moe,
    .sync = cpu_sync,
    .stats = cpu_stats,
    .destroy = cpu_destroy,
    .roofline = cpu_roofline,
};

ts_backend *ts_cpu_backend_create(const ts_cpu_options *opt, ts_error *err) {
    int threads = opt && opt->threads > 0 ? opt->threads : ts_available_cores();
    ts_backend *be = calloc(1, sizeof *be);
    cpu_impl *im = calloc(1, sizeof *im);
    if (!be || !im) {
        free(be);
        free(im);
        ts_fail(err, "cpu backend: out of memory");
        return NULL;
    }
    pthread_mutex_init(&im->stats_lock, NULL);
    im->pool = ts_threadpool_create(threads);
    im->mm = im->pool ? ts_cpu_matmul_ctx_create(im->pool) : NULL;
    if (!im->mm) {
        ts_threadpool_destroy(im->pool);
        free(im);
        free(be);
        ts_fail(err, "cpu backend: cannot start %d threads", threads);
        return NULL;
    }
    be->ops = &g_cpu_ops;
    be->impl = im;
    snprintf(be->name, sizeof be->name, "cpu");
    snprintf(be->description, sizeof be->description, "cpu %s (%d threads)", ts_cpu_kernels_active()->name,
             ts_threadpool_size(im->pool));
    return be;
}
