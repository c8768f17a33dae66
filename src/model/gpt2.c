/* GPT-2 (DialoGPT): learned position embeddings, pre-LayerNorm blocks, fused q/k/v, GELU (tanh
 * approximation for gelu_new), tied output head. Hugging Face stores the Conv1D weights as
 * [in, out]; they are transposed on load. Tensor names appear with or without "transformer.".
 *   x = wte[tokens] + wpe[positions]                  [n, hidden]
 *   per layer: x += c_proj(attention(c_attn(ln_1(x))))  qkv [n, 3 * hidden]
 *              x += mlp.c_proj(gelu(mlp.c_fc(ln_2(x)))) [n, 4 * hidden]
 *   logits = wte . ln_f(x)                            [n, vocab]   */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/arch.h"
#include "model/weights.h"

/* The checkpoint's name for `suffix`, with the "transformer." prefix if the file uses it. */
static const char *gpt2_name(ts_model *m, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "transformer.%.200s", suffix);
    if (ts_tensor_table_find(&m->table, buf)) return buf;
    snprintf(buf, cap, "%.200s", suffix);
    return buf;
}

/* GGUF files from llama.cpp's converter already hold Conv1D weights as [out, in]; safetensors hold
 * [in, out]. The stored orientation is read off the tensor's shape when it is not square. */
static int conv1d_transposed(ts_model *m, const char *name, int64_t out_features, int64_t in_features) {
    const ts_tensor_desc *d = ts_tensor_table_find(&m->table, name);
    if (!d || d->ndim != 2) return 1;
    if (out_features != in_features) return d->shape[0] == in_features && d->shape[1] == out_features;
    return !m->table.gguf_layout;
}

static int bind_conv1d(ts_model *m, const char *suffix, ts_weight_role role, int layer, int64_t out_f, int64_t in_f,
                       ts_weight *w, float **bias, ts_error *err) {
    char name[256], bname[256], tmp[256];
    snprintf(name, sizeof name, "%s", gpt2_name(m, suffix, tmp, sizeof tmp));
    int transposed = conv1d_transposed(m, name, out_f, in_f);
    if (ts_bind_matrix(m, name, role, layer, out_f, in_f, transposed, w, err) != 0) return -1;
    snprintf(bname, sizeof bname, "%.*s.bias", (int)(strlen(name) - strlen(".weight")), name);
    return ts_bind_vector(m, bname, out_f, bias, err);
}

static int bind_norm(ts_model *m, const char *suffix, float **w, float **b, ts_error *err) {
    char name[256], tmp[256];
    snprintf(tmp, sizeof tmp, "%s.weight", suffix);
    gpt2_name(m, tmp, name, sizeof name);
    if (ts_bind_vector(m, name, m->cfg.hidden_size, w, err) != 0) return -1;
    snprintf(tmp, sizeof tmp, "%s.bias", suffix);
    gpt2_name(m, tmp, name, sizeof name);
    return ts_bind_vector(m, name, m->cfg.hidden_size, b, err);
}

static int gpt2_bind(ts_model *m, ts_error *err) {
    const ts_model_config *c = &m->cfg;
    int64_t d = c->hidden_size, inner = c->intermediate_size;
    char name[256];
    if (ts_bind_matrix(m, gpt2_name(m, "wte.weight", name, sizeof name), TS_ROLE_EMBEDDING, -1, c->vocab_size, d, 0,
                       &m->tok_embed, err) != 0)
        return -1;
    if (ts_bind_matrix(m, gpt2_name(m, "wpe.weight", name, sizeof name), TS_ROLE_POSITION, -1,
                       c->max_position_embeddings, d, 0, &m->pos_embed, err) != 0)
        return -1;
    m->output = m->tok_embed;
    if (bind_norm(m, "ln_f", &m->final_norm, &m->final_norm_bias, err) != 0) return -1;
    for (int l = 0; l < c->num_layers; l++) {
        ts_layer *L = &m->layers[l];
        char s[128];
        snprintf(s, sizeof s, "h.%d.ln_1", l);
        if (bind_norm(m, s, &L->attn_norm, &L->attn_norm_bias, err) != 0) return -1;
        snprintf(s, sizeof s, "h.%d.ln_2", l);
        if (bind_norm(m, s, &L->ffn_norm, &L->ffn_norm_bias, err) != 0) return -1;
        snprintf(s, sizeof s, "h.%d.attn.c_attn.weight", l);
        if (bind_conv1d(m, s, TS_ROLE_ATTN_Q, l, 3 * d, d, &L->wqkv, &L->bqkv, err) != 0) return -1;
        snprintf(s, sizeof s, "h.%d.attn.c_proj.weight", l);
        if (bind_conv1d(m, s, TS_ROLE_ATTN_OUT, l, d, d, &L->wo, &L->bo, err) != 0) return -1;
        snprintf(s, sizeof s, "h.%d.mlp.c_fc.weight", l);
        if (bind_conv1d(m, s, TS_ROLE_FFN_UP, l, inner, d, &L->w_up, &L->b_up, err) != 0) return -1;
        snprintf(s, sizeof s, "h.%d.mlp.c_proj.weight", l);
        if (bind_conv1d(m, s, TS_ROLE_FFN_DOWN, l, d, inner, &L->w_down, &L->b_down, err) != 0) return -1;
    }
    return 0;
}

static void gpt2_final_norm(ts_model *m, const float *x, int rows, float *out) {
    m->be->ops->layernorm(m->be, x, m->final_norm, m->final_norm_bias, rows, m->cfg.hidden_size,
                          (float)m->cfg.norm_eps, out);
}

static void gpt2_layers(ts_model *m, ts_kv_store *kv, const ts_step *step, ts_layer_probe probe, void *pctx) {
    ts_backend *be = m->be;
    ts_scratch *s = m->s; /* GPT-2 runs on one device: the scratch never changes during the step */
    const ts_model_config *c = &m->cfg;
    int n = step->n_tokens, d = c->hidden_size, inner = c->intermediate_size;
    float eps = (float)c->norm_eps;
    be->ops->embed(be, &m->tok_embed, step->tokens, n, s->x);
    be->ops->embed_add(be, &m->pos_embed, step->positions, n, s->x);
    if (probe) probe(pctx, 0, s->x, n, d);
    for (int l = 0; l < c->num_layers; l++) {
        const ts_layer *L = &m->layers[l];
        be->ops->layernorm(be, s->x, L->attn_norm, L->attn_norm_bias, n, d, eps, s->xn);
        be->ops->matmul(be, &L->wqkv, s->xn, n, s->qkv, L->bqkv);
        be->ops->attention(be, kv, l, step, s->qkv, 3 * d, s->qkv + d, s->qkv + 2 * d, 3 * d, c->num_heads,
                           1.0f / sqrtf((float)c->head_dim), s->attn);
        be->ops->matmul(be, &L->wo, s->attn, n, s->proj, L->bo);
        be->ops->add(be, s->x, s->proj, (size_t)n * d);
        be->ops->layernorm(be, s->x, L->ffn_norm, L->ffn_norm_bias, n, d, eps, s->xn);
        be->ops->matmul(be, &L->w_up, s->xn, n, s->ffn_a, L->b_up);
        be->ops->gelu(be, s->ffn_a, (size_t)n * inner, c->activation == TS_ACT_GELU_TANH);
        be->ops->matmul(be, &L->w_down, s->ffn_a, n, s->proj, L->b_down);
        be->ops->add(be, s->x, s->proj, (size_t)n * d);
        if (probe && l + 1 < c->num_layers) probe(pctx, l + 1, s->x, n, d);
    }
}

const ts_arch_impl ts_gpt2_impl = {TS_ARCH_GPT2, gpt2_bind, gpt2_layers, gpt2_final_norm};
