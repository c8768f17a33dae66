#include "model/blocks.h"

#include <math.h>
#include <stdio.h>

#include "model/fused.h"
#include "model/weights.h"

/* The block's output projection: into proj, or added to the residual with the next norm (see blocks.h). */
static void block_output(ts_model *m, const ts_weight *w, const float *in, int n, const float *bias,
                         const float *next_norm) {
    ts_scratch *s = m->s;
    if (next_norm)
        ts_fused_matmul_add_rmsnorm(m->be, w, in, n, bias, s->x, next_norm, (float)m->cfg.norm_eps, s->xn, s->proj);
    else
        m->be->ops->matmul(m->be, w, in, n, s->proj, bias);
}

void ts_block_rope_attention(ts_model *m, const ts_layer *L, int layer, ts_kv_store *kv, const ts_step *step,
                             const float *next_norm) {
    ts_backend *be = m->be;
    ts_scratch *s = m->s;
    const ts_model_config *c = &m->cfg;
    int n = step->n_tokens, hd = c->head_dim;
    int q_dim = c->num_heads * hd, kv_dim = c->num_kv_heads * hd;
    /* [n, hidden] -> q [n, heads, hd], k and v [n, kv_heads, hd]: side by side in each row of s->qkv where
     * the backend multiplies the three weights as one, else each in its own buffer */
    const ts_weight *qkv[3] = {&L->wq, &L->wk, &L->wv};
    const float *const biases[3] = {L->bq, L->bk, L->bv};
    float *q_out = s->qkv, *k_out = s->qkv + q_dim, *v_out = k_out + kv_dim;
    int q_stride = q_dim + 2 * kv_dim, kv_stride = q_stride;
    if (!be->ops->matmul_concat || !be->ops->matmul_concat(be, 3, qkv, s->xn, n, s->qkv, biases)) {
        float *const outs[3] = {s->q, s->k, s->v};
        ts_fused_matmul_many(be, 3, qkv, s->xn, n, outs, biases);
        q_out = s->q;
        k_out = s->k;
        v_out = s->v;
        q_stride = q_dim;
        kv_stride = kv_dim;
    }
    if (be->ops->stage_products) {
        /* the products after the attention: a backend may ready their weights while it runs */
        const ts_weight *next[3] = {&L->wo, &L->w_gate, &L->w_up};
        be->ops->stage_products(be, L->is_moe || !L->w_gate.prepared ? 1 : 3, next, n);
    }
    /* Qwen3 normalizes each head of q and k (q_norm, k_norm) before rotating it */
    float eps = (float)c->norm_eps;
    const ts_rope_heads q = {q_out, c->num_heads, q_stride, L->q_norm}, k = {k_out, c->num_kv_heads, kv_stride, L->k_norm};
    ts_fused_rope_attention(be, kv, layer, step, &q, &k, v_out, c->num_heads, 1.0f / sqrtf((float)hd), eps, &m->rope,
                            s->attn);
    /* [n, heads * hd] -> [n, hidden] */
    block_output(m, &L->wo, s->attn, n, L->bo, next_norm);
}

void ts_block_swiglu(ts_model *m, const ts_layer *L, int n, const float *next_norm) {
    ts_backend *be = m->be;
    ts_scratch *s = m->s;
    ts_fused_gate_up_silu(be, &L->w_gate, &L->w_up, s->xn, n, s->ffn_a, s->ffn_b);
    block_output(m, &L->w_down, s->ffn_a, n, NULL, next_norm);
}

int ts_bind_rope_attention(ts_model *m, ts_layer *L, int layer, const char *prefix, ts_error *err) {
    const ts_model_config *c = &m->cfg;
    int64_t d = c->hidden_size, q_dim = (int64_t)c->num_heads * c->head_dim, kv_dim = (int64_t)c->num_kv_heads * c->head_dim;
    char name[512];
#define BIND_M(field, suffix, role, rows, cols)                                             \
    snprintf(name, sizeof name, "%sself_attn.%s.weight", prefix, suffix);                    \
    if (ts_bind_matrix(m, name, role, layer, rows, cols, 0, &L->field, err) != 0) return -1;
    BIND_M(wq, "q_proj", TS_ROLE_ATTN_Q, q_dim, d)
    BIND_M(wk, "k_proj", TS_ROLE_ATTN_K, kv_dim, d)
    BIND_M(wv, "v_proj", TS_ROLE_ATTN_V, kv_dim, d)
    BIND_M(wo, "o_proj", TS_ROLE_ATTN_OUT, d, q_dim)
#undef BIND_M
    if (c->attention_bias) {
        snprintf(name, sizeof name, "%sself_attn.q_proj.bias", prefix);
        if (ts_bind_vector(m, name, q_dim, &L->bq, err) != 0) return -1;
        snprintf(name, sizeof name, "%sself_attn.k_proj.bias", prefix);
        if (ts_bind_vector(m, name, kv_dim, &L->bk, err) != 0) return -1;
        snprintf(name, sizeof name, "%sself_attn.v_proj.bias", prefix);
        if (ts_bind_vector(m, name, kv_dim, &L->bv, err) != 0) return -1;
        snprintf(name, sizeof name, "%sself_attn.o_proj.bias", prefix);
        if (ts_bind_vector_opt(m, name, d, &L->bo, err) != 0) return -1;
    }
    if (c->qk_norm) {
        snprintf(name, sizeof name, "%sself_attn.q_norm.weight", prefix);
        if (ts_bind_vector(m, name, c->head_dim, &L->q_norm, err) != 0) return -1;
        snprintf(name, sizeof name, "%sself_attn.k_norm.weight", prefix);
        if (ts_bind_vector(m, name, c->head_dim, &L->k_norm, err) != 0) return -1;
    }
    snprintf(name, sizeof name, "%sinput_layernorm.weight", prefix);
    if (ts_bind_vector(m, name, d, &L->attn_norm, err) != 0) return -1;
    snprintf(name, sizeof name, "%spost_attention_layernorm.weight", prefix);
    return ts_bind_vector(m, name, d, &L->ffn_norm, err);
}

int ts_bind_swiglu(ts_model *m, ts_layer *L, int layer, const char *prefix, ts_error *err) {
    int64_t d = m->cfg.hidden_size, inner = m->cfg.intermediate_size;
    char name[512];
    snprintf(name, sizeof name, "%sgate_proj.weight", prefix);
    if (ts_bind_matrix(m, name, TS_ROLE_FFN_GATE, layer, inner, d, 0, &L->w_gate, err) != 0) return -1;
    snprintf(name, sizeof name, "%sup_proj.weight", prefix);
    if (ts_bind_matrix(m, name, TS_ROLE_FFN_UP, layer, inner, d, 0, &L->w_up, err) != 0) return -1;
    snprintf(name, sizeof name, "%sdown_proj.weight", prefix);
    return ts_bind_matrix(m, name, TS_ROLE_FFN_DOWN, layer, d, inner, 0, &L->w_down, err);
}
