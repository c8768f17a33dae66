/* The llama family forward pass: Llama, Qwen2 (q/k/v biases) and Qwen3 (per-head q/k RMSNorm, head_dim
 * independent of hidden_size / heads). Pre-norm decoder layers:
 *   x = embed(tokens)                                  [n, hidden]
 *   per layer: x += attention(rmsnorm(x))              q [n, heads, hd], k/v [n, kv_heads, hd]
 *              x += down(silu(gate(xn)) * up(xn))      gate/up [n, intermediate]
 *   logits = lm_head(rmsnorm(x))                       [n, vocab]   */
#include <stdio.h>

#include "model/arch.h"
#include "model/blocks.h"
#include "model/fused.h"
#include "model/weights.h"

/* Binding goes to the backend that will run the part: the embedding where the first layer runs, the
 * layers on their side of a split, the final norm and the head where the last layer runs. */
void ts_bind_on(ts_model *m, int host) { m->be = host && m->host_be ? m->host_be : m->dev_be; }

int ts_bind_llama_common(ts_model *m, ts_error *err) {
    const ts_model_config *c = &m->cfg;
    int embed_on_host = m->split > 0, head_on_host = m->split == c->num_layers;
    ts_bind_on(m, embed_on_host);
    if (ts_bind_matrix(m, "model.embed_tokens.weight", TS_ROLE_EMBEDDING, -1, c->vocab_size, c->hidden_size, 0,
                       &m->tok_embed, err) != 0)
        return -1;
    ts_bind_on(m, head_on_host);
    if (ts_bind_vector(m, "model.norm.weight", c->hidden_size, &m->final_norm, err) != 0) return -1;
    int found = 0;
    if (!c->tie_word_embeddings &&
        ts_bind_matrix_opt(m, "lm_head.weight", TS_ROLE_OUTPUT, -1, c->vocab_size, c->hidden_size, 0, &m->output,
                           &found, err) != 0)
        return -1;
    if (!c->tie_word_embeddings && !found)
        return ts_fail(err, "%s: missing tensor \"lm_head.weight\" (expected shape [%d, %d]; the config says "
                            "tie_word_embeddings is false)", m->path, c->vocab_size, c->hidden_size);
    if (c->tie_word_embeddings) {
        m->output = m->tok_embed;
        if (head_on_host != embed_on_host) { /* the head needs its own copy on its side */
            m->output.prepared = NULL;
            m->output.prepared_by = NULL;
            if (m->be->ops->prepare_weight(m->be, &m->output, err) != 0) return -1;
        }
    }
    return 0;
}

static int llama_bind(ts_model *m, ts_error *err) {
    if (ts_bind_llama_common(m, err) != 0) return -1;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        char prefix[64], mlp[80];
        snprintf(prefix, sizeof prefix, "model.layers.%d.", l);
        snprintf(mlp, sizeof mlp, "%smlp.", prefix);
        ts_bind_on(m, l < m->split);
        if (ts_bind_rope_attention(m, &m->layers[l], l, prefix, err) != 0) return -1;
        if (ts_bind_swiglu(m, &m->layers[l], l, mlp, err) != 0) return -1;
    }
    return 0;
}

void ts_llama_final_norm(ts_model *m, const float *x, int rows, float *out) {
    m->be->ops->rmsnorm(m->be, x, m->final_norm, rows, m->cfg.hidden_size, (float)m->cfg.norm_eps, out);
}

/* Also Qwen3-MoE's: a layer whose MLP is a mixture of experts (L->is_moe) runs the backend's moe op. */
/* The residual stream moves to the device side of a split model (one copy of [n, hidden]), and the
 * device's step begins only then, so that a recorded graph holds device work alone. */
static void cross_to_device(ts_model *m, const ts_step *step) {
    size_t bytes = (size_t)step->n_tokens * (size_t)m->cfg.hidden_size * sizeof(float);
    m->dev_be->ops->from_host(m->dev_be, m->dev_scratch.x, m->host_scratch.x, bytes);
    ts_model_activate(m, 0);
    if (m->be->ops->begin_step) m->be->ops->begin_step(m->be, step);
}

void ts_llama_layers(ts_model *m, ts_kv_store *kv, const ts_step *step, ts_layer_probe probe, void *pctx) {
    const ts_model_config *c = &m->cfg;
    int n = step->n_tokens, d = c->hidden_size;
    float eps = (float)c->norm_eps;
    /* the first layer's norm comes with the embedding where the backend does both in one pass */
    const int first_normed = m->split == 0 && c->num_layers > 0 && m->be->ops->embed_rmsnorm;
    if (first_normed)
        m->be->ops->embed_rmsnorm(m->be, &m->tok_embed, step->tokens, n, m->layers[0].attn_norm, eps, m->s->x, m->s->xn);
    else
        m->be->ops->embed(m->be, &m->tok_embed, step->tokens, n, m->s->x);
    if (probe) probe(pctx, 0, m->s->x, n, d);
    for (int l = 0; l < c->num_layers; l++) {
        const ts_layer *L = &m->layers[l];
        if (l == m->split && l > 0) cross_to_device(m, step);
        ts_backend *be = m->be;
        /* each residual add is fused with the product before it and the norm after it, unless that
         * norm runs on the other side of the split */
        if ((l == 0 && !first_normed) || (l > 0 && l == m->split))
            be->ops->rmsnorm(be, m->s->x, L->attn_norm, n, d, eps, m->s->xn);
        int host_layer = l < m->split;
        ts_block_rope_attention(m, L, host_layer ? l : l - m->split, host_layer ? step->host_kv : kv, step, L->ffn_norm);
        /* the next layer's norm, unless that layer runs on the other side of the split; after the last
         * layer the final norm where the step asks for it (the head runs on the last layer's side) */
        const float *next_norm = l + 1 < c->num_layers && l + 1 != m->split ? m->layers[l + 1].attn_norm : NULL;
        if (l + 1 == c->num_layers && m->final_norm_wanted) {
            next_norm = m->final_norm;
            m->final_norm_done = 1;
        }
        if (L->is_moe) {
            be->ops->moe(be, &L->moe, m->s->xn, n, m->s->proj);
            if (next_norm) ts_fused_add_rmsnorm(be, m->s->x, m->s->proj, next_norm, n, d, eps, m->s->xn);
        } else {
            ts_block_swiglu(m, L, n, next_norm);
        }
        if (!next_norm) be->ops->add(be, m->s->x, m->s->proj, (size_t)n * d);
        if (probe && l + 1 < c->num_layers) probe(pctx, l + 1, m->s->x, n, d);
    }
}

const ts_arch_impl ts_llama_impl = {TS_ARCH_LLAMA, llama_bind, ts_llama_layers, ts_llama_final_norm};
