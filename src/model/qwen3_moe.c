/* Qwen3-MoE: the Qwen3 attention block with a mixture-of-experts MLP in the layers that
 * decoder_sparse_step selects (dense SwiGLU in mlp_only_layers).
 *   router logits = gate(xn)                      [n, experts]
 *   p = softmax(logits); top-k experts per token (renormalised when norm_topk_prob)
 *   x += sum_k p_k * down_k(silu(gate_k(xn)) * up_k(xn))   */
#include <stdio.h>
#include <stdlib.h>

#include "model/arch.h"
#include "model/blocks.h"
#include "model/weights.h"

static int bind_experts(ts_model *m, ts_layer *L, int layer, const char *prefix, ts_error *err) {
    const ts_model_config *c = &m->cfg;
    int64_t d = c->hidden_size, inner = c->moe_intermediate_size;
    char name[512];
    snprintf(name, sizeof name, "%smlp.gate.weight", prefix);
    if (ts_bind_matrix(m, name, TS_ROLE_ROUTER, layer, c->num_experts, d, 0, &L->router, err) != 0) return -1;
    L->expert_gate = calloc((size_t)c->num_experts, sizeof(ts_weight));
    L->expert_up = calloc((size_t)c->num_experts, sizeof(ts_weight));
    L->expert_down = calloc((size_t)c->num_experts, sizeof(ts_weight));
    if (!L->expert_gate || !L->expert_up || !L->expert_down) return ts_fail(err, "out of memory");
    for (int e = 0; e < c->num_experts; e++) {
        snprintf(name, sizeof name, "%smlp.experts.%d.gate_proj.weight", prefix, e);
        if (ts_bind_matrix(m, name, TS_ROLE_FFN_GATE, layer, inner, d, 0, &L->expert_gate[e], err) != 0) return -1;
        snprintf(name, sizeof name, "%smlp.experts.%d.up_proj.weight", prefix, e);
        if (ts_bind_matrix(m, name, TS_ROLE_FFN_UP, layer, inner, d, 0, &L->expert_up[e], err) != 0) return -1;
        snprintf(name, sizeof name, "%smlp.experts.%d.down_proj.weight", prefix, e);
        if (ts_bind_matrix(m, name, TS_ROLE_FFN_DOWN, layer, d, inner, 0, &L->expert_down[e], err) != 0) return -1;
    }
    L->is_moe = 1;
    L->moe = (ts_moe){.router = &L->router,
                      .gate = L->expert_gate,
                      .up = L->expert_up,
                      .down = L->expert_down,
                      .num_experts = c->num_experts,
                      .top_k = c->num_experts_per_tok,
                      .norm_topk_prob = c->norm_topk_prob,
                      .hidden = c->hidden_size,
                      .inner = c->moe_intermediate_size};
    return 0;
}

static int moe_bind(ts_model *m, ts_error *err) {
    if (ts_bind_llama_common(m, err) != 0) return -1;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        char prefix[64], mlp[80];
        snprintf(prefix, sizeof prefix, "model.layers.%d.", l);
        snprintf(mlp, sizeof mlp, "%smlp.", prefix);
        if (ts_bind_rope_attention(m, &m->layers[l], l, prefix, err) != 0) return -1;
        int rc = ts_model_config_layer_is_moe(&m->cfg, l) ? bind_experts(m, &m->layers[l], l, prefix, err)
                                                           : ts_bind_swiglu(m, &m->layers[l], l, mlp, err);
        if (rc != 0) return -1;
    }
    return 0;
}

static void moe_layers(ts_model *m, ts_kv_store *kv, const ts_step *step, ts_layer_probe probe, void *pctx) {
    ts_backend *be = m->be;
    const ts_model_config *c = &m->cfg;
    int n = step->n_tokens, d = c->hidden_size;
    be->ops->embed(be, &m->tok_embed, step->tokens, n, m->x);
    if (probe) probe(pctx, 0, m->x, n, d);
    for (int l = 0; l < c->num_layers; l++) {
        const ts_layer *L = &m->layers[l];
        be->ops->rmsnorm(be, m->x, L->attn_norm, n, d, (float)c->norm_eps, m->xn);
        ts_block_rope_attention(m, L, l, kv, step);
        be->ops->add(be, m->x, m->proj, (size_t)n * d);
        be->ops->rmsnorm(be, m->x, L->ffn_norm, n, d, (float)c->norm_eps, m->xn);
        if (L->is_moe)
            be->ops->moe(be, &L->moe, m->xn, n, m->proj);
        else
            ts_block_swiglu(m, L, n);
        be->ops->add(be, m->x, m->proj, (size_t)n * d);
        if (probe && l + 1 < c->num_layers) probe(pctx, l + 1, m->x, n, d);
    }
}

const ts_arch_impl ts_qwen3_moe_impl = {TS_ARCH_QWEN3_MOE, moe_bind, moe_layers, ts_llama_final_norm};
